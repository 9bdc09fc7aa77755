//! `chatvault backup`: paths, or standard input.

use anyhow::Result;
use chatvault_fs::{BackupOptions, BackupReport, ProblemKind};
use serde_json::json;

use crate::args::{BackupArgs, Global};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::progress::{self, Progress};
use crate::session;

pub fn run(g: &Global, out: Output, a: &BackupArgs) -> Result<Outcome> {
    let repo = session::open(g)?;
    let progress = Progress::new(g, "backup", None);
    let parent = session::parent_choice(&repo, &a.parent)?;
    let opts = BackupOptions {
        paths: a.paths.clone(),
        exclude: a.exclude.clone(),
        exclude_files: a.exclude_file.clone(),
        exclude_caches: a.exclude_caches,
        one_file_system: a.one_file_system,
        parent,
        full: a.full,
        host: a.record.host.clone(),
        tags: a.record.tags.clone(),
        fail_on_error: a.fail_on_error,
        progress: progress.callback(),
    };
    if progress.visible() && !a.stdin {
        let paths = a.paths.iter().map(|p| session::absolute(p)).collect();
        progress::estimate(paths, progress.total_setter());
    }
    let report = if a.stdin {
        chatvault_fs::backup_stream(&repo, &a.stdin_name, std::io::stdin(), &opts)
    } else {
        chatvault_fs::backup(&repo, &opts)
    };
    progress.finish();
    let report = report?;
    print(out, &report);
    Ok(if report.unreadable() > 0 {
        eprintln!(
            "chatvault: backup incomplete: {} entries could not be read",
            report.unreadable()
        );
        Outcome::Partial
    } else {
        Outcome::Complete
    })
}

fn print(out: Output, r: &BackupReport) {
    out.line(output::saved(r.snapshot, r.kind, r.parent));
    out.line(format!(
        "files: {} new, {} changed, {} unchanged; {} directories, {} links",
        r.files_new, r.files_changed, r.files_unchanged, r.dirs, r.symlinks
    ));
    if r.files_reread > 0 {
        out.line(format!(
            "{} unchanged files read again: their stored data was missing from the repository",
            r.files_reread
        ));
    }
    out.line(format!(
        "read {} of {}; added {} ({} stored) in {} packs",
        output::throughput(r.bytes_read, r.duration),
        output::bytes(r.bytes_total),
        output::bytes(r.bytes_added),
        output::bytes(r.bytes_stored),
        r.packs
    ));
    let unreadable = r.unreadable();
    if unreadable > 0 {
        out.line(format!(
            "{unreadable} entries could not be read (recorded in the snapshot):"
        ));
        for p in r
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Unreadable)
        {
            out.line(format!(
                "  {}: {}",
                output::printable(&p.path.display().to_string()),
                output::printable(&p.message)
            ));
        }
    }
    out.json(&json!({
        "snapshot": r.snapshot.to_hex(),
        "kind": r.kind.as_str(),
        "parent": r.parent.map(|p| p.to_hex()),
        "files_new": r.files_new,
        "files_changed": r.files_changed,
        "files_unchanged": r.files_unchanged,
        "files_reread": r.files_reread,
        "dirs": r.dirs,
        "symlinks": r.symlinks,
        "bytes_total": r.bytes_total,
        "bytes_read": r.bytes_read,
        "bytes_added": r.bytes_added,
        "bytes_stored": r.bytes_stored,
        "blobs_added": r.blobs_added,
        "packs": r.packs,
        "packs_adopted": r.packs_adopted,
        "duration_ms": r.duration.as_millis() as u64,
        "problems": super::problems_json(&r.problems),
    }));
}
