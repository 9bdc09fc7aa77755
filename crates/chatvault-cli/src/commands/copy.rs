//! `chatvault copy --from SRC [filters] [--to DST]`: copies snapshots into a repository
//! with its own keys, over core's `copy_snapshots`.
//!
//! Invariants: SRC is read under a read lock (unless `--no-lock`), so a prune there cannot
//! delete what is being copied; DST is written through ordinary writer sessions, so it is
//! valid whenever the command is killed, and a re-run copies only what has no copy yet.

use anyhow::{Context, Result};
use chatvault_core::{CopyOptions, CopyReport, SnapshotFilter, copy_snapshots};
use serde_json::{Value, json};

use crate::args::{CopyArgs, Global};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn run(g: &Global, out: Output, a: &CopyArgs) -> Result<Outcome> {
    let mut dst_global = g.clone();
    if let Some(to) = &a.to {
        dst_global.repo = Some(to.clone());
    }
    let src = session::open_source(g, &a.from, &a.source).context("the source (--from)")?;
    let _src_lock = session::read_lock(g, &src).context("the source (--from)")?;
    let dst = session::open(&dst_global).context("the destination")?;
    let opts = CopyOptions {
        filter: SnapshotFilter {
            host: a.host.clone(),
            source_kind: a.source_kind.clone(),
            paths: (!a.paths.is_empty()).then(|| a.paths.clone()),
            tags: a.tags.clone(),
            ..SnapshotFilter::default()
        },
        dry_run: a.dry_run,
    };
    let r = copy_snapshots(&src, &dst, &opts)?;
    print(&out, &r, a.dry_run);
    out.json(&report_json(
        &r,
        src.id().to_hex(),
        dst.id().to_hex(),
        a.dry_run,
    ));
    Ok(if r.failed.is_empty() && r.unreadable.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Corrupt
    })
}

fn print(out: &Output, r: &CopyReport, dry_run: bool) {
    for c in &r.copied {
        match c.copy {
            Some(copy) => out.line(format!(
                "copied {} as {}: {} blobs, {} added",
                c.source.short(),
                copy.short(),
                c.blobs_added,
                output::bytes(c.bytes_added)
            )),
            None => out.line(format!("would copy {}", c.source.short())),
        }
    }
    for f in &r.failed {
        out.warn(format!(
            "snapshot {} was not copied, its data does not read: {}",
            f.source.short(),
            f.error
        ));
    }
    for (id, e) in &r.unreadable {
        out.warn(format!("source snapshot {} does not load: {e}", id.short()));
    }
    if r.destination_unreadable > 0 {
        out.warn(format!(
            "{} destination snapshots do not load: if any is a copy, its source snapshot was \
             copied again (run `chatvault check` on the destination)",
            r.destination_unreadable
        ));
    }
    let secs = r.duration.as_secs_f64();
    out.line(format!(
        "{} {} snapshots, {} already copied, {} failed; added {} blobs, {} ({} in packs); \
         read {} in {:.1}s ({}/s)",
        if dry_run { "would copy" } else { "copied" },
        r.copied.len(),
        r.skipped.len(),
        r.failed.len(),
        r.blobs_added,
        output::bytes(r.bytes_added),
        output::bytes(r.pack_bytes),
        output::bytes(r.bytes_read),
        secs,
        output::bytes(if secs > 0.0 {
            (r.bytes_read as f64 / secs) as u64
        } else {
            0
        })
    ));
}

fn report_json(r: &CopyReport, source: String, destination: String, dry_run: bool) -> Value {
    json!({
        "source": source,
        "destination": destination,
        "dry_run": dry_run,
        "copied": r.copied.iter().map(|c| json!({
            "source_snapshot": c.source.to_hex(),
            "snapshot": c.copy.map(|id| id.to_hex()),
            "blobs_added": c.blobs_added,
            "bytes_added": c.bytes_added,
        })).collect::<Vec<_>>(),
        "skipped": r.skipped.iter().map(|(from, copy)| json!({
            "source_snapshot": from.to_hex(),
            "snapshot": copy.to_hex(),
        })).collect::<Vec<_>>(),
        "failed": r.failed.iter().map(|f| json!({
            "source_snapshot": f.source.to_hex(),
            "error": f.error.to_string(),
        })).collect::<Vec<_>>(),
        "unreadable": r.unreadable.iter().map(|(id, e)| json!({
            "source_snapshot": id.to_hex(),
            "error": e.to_string(),
        })).collect::<Vec<_>>(),
        "destination_unreadable": r.destination_unreadable,
        "snapshots_copied": r.copied.len(),
        "snapshots_skipped": r.skipped.len(),
        "bytes_read": r.bytes_read,
        "blobs_added": r.blobs_added,
        "bytes_added": r.bytes_added,
        "pack_bytes": r.pack_bytes,
        "duration_ms": r.duration.as_millis() as u64,
    })
}
