//! `chatvault restore`.

use anyhow::Result;
use chatvault_fs::RestoreOptions;
use serde_json::json;

use crate::args::{Global, RestoreArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::progress::Progress;
use crate::session;

pub fn run(g: &Global, out: Output, a: &RestoreArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let snap = session::resolve(&repo, &a.snapshot)?;
    let progress = Progress::new(g, "restore", None);
    if progress.visible() {
        // Sizing the tree first costs a walk of tree blobs only, no file data.
        let size = chatvault_fs::tree_size(&repo, snap.record.root, &mut Default::default())?;
        (progress.total_setter())(size.bytes);
    }
    let opts = RestoreOptions {
        target: a.target.clone(),
        sub_path: a.path.clone(),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        overwrite: a.overwrite,
        allow_outward_links: a.allow_outward_links,
        owners: a.no_owners.then_some(false),
        progress: progress.callback(),
        verify_only: false,
    };
    let report = chatvault_fs::restore(&repo, snap.record.root, &opts);
    progress.finish();
    let r = report?;
    out.line(format!(
        "restored snapshot {} to {}: {} files, {} directories, {} links, {}",
        snap.id.short(),
        a.target.display(),
        r.files,
        r.dirs,
        r.symlinks,
        output::throughput(r.bytes, r.duration)
    ));
    if !r.problems.is_empty() {
        out.line(format!("{} entries were not restored:", r.problems.len()));
        for p in &r.problems {
            out.line(format!(
                "  {}: {}",
                output::printable(&p.path.display().to_string()),
                output::printable(&p.message)
            ));
        }
    }
    out.json(&json!({
        "snapshot": snap.id.to_hex(),
        "target": a.target.display().to_string(),
        "files": r.files,
        "dirs": r.dirs,
        "symlinks": r.symlinks,
        "bytes": r.bytes,
        "duration_ms": r.duration.as_millis() as u64,
        "problems": super::problems_json(&r.problems),
    }));
    let corrupt = r
        .problems
        .iter()
        .filter(|p| p.kind == chatvault_fs::ProblemKind::Corrupt)
        .count();
    if !r.is_complete() {
        eprintln!(
            "chatvault: restore incomplete: {} entries not restored ({corrupt} with corrupt or \
             missing data)",
            r.problems.len()
        );
    }
    Ok(match (r.is_complete(), corrupt) {
        (true, _) => Outcome::Complete,
        (false, 0) => Outcome::Partial,
        (false, _) => Outcome::Corrupt,
    })
}
