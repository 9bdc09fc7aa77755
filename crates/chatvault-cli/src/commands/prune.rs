//! `chatvault prune` (and the prune half of `forget --prune`).

use anyhow::Result;
use chatvault_core::{PruneOptions, PruneReport, Repository};
use serde_json::{Value, json};

use crate::args::{Global, PruneArgs, PruneFlags};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

/// The library options for the shared prune flags.
pub fn options(g: &Global, f: &PruneFlags, dry_run: bool) -> Result<PruneOptions> {
    if !(0.0..=100.0).contains(&f.max_unused) {
        anyhow::bail!("--max-unused must be a percentage from 0 to 100");
    }
    let mut o = PruneOptions {
        max_unused: f.max_unused / 100.0,
        max_repack: f.max_repack,
        dry_run,
        ..PruneOptions::default()
    };
    if let Some(s) = g.lock_wait {
        o.wait = std::time::Duration::from_secs(s);
    }
    Ok(o)
}

/// Runs a prune and prints its figures; returns them as JSON.
pub fn prune(repo: &Repository, out: &Output, opts: &PruneOptions) -> Result<Value> {
    let r = repo.prune(opts)?;
    print(out, &r);
    Ok(report_json(&r))
}

fn print(out: &Output, r: &PruneReport) {
    let verb = if r.dry_run { "would be" } else { "were" };
    out.line(format!(
        "{} snapshots reach {} blobs; {} packs ({}) before",
        r.snapshots,
        r.live_blobs,
        r.packs_before,
        output::bytes(r.bytes_before)
    ));
    out.line(format!(
        "{} packs {verb} deleted ({} of them unindexed leftovers), {} repacked ({} blobs, {} written)",
        r.packs_deleted,
        r.packs_unindexed,
        r.packs_repacked,
        r.blobs_repacked,
        output::bytes(r.bytes_repacked)
    ));
    if r.packs_rescued > 0 {
        out.line(format!(
            "{} packs kept: snapshots saved during the prune need them",
            r.packs_rescued
        ));
    }
    out.line(format!(
        "{} unused blob copies {verb} removed; {} {verb} freed{}",
        r.blobs_removed,
        output::bytes(r.bytes_freed),
        if r.dry_run { " (estimate)" } else { "" }
    ));
}

fn report_json(r: &PruneReport) -> Value {
    json!({
        "dry_run": r.dry_run,
        "snapshots": r.snapshots,
        "live_blobs": r.live_blobs,
        "packs_before": r.packs_before,
        "bytes_before": r.bytes_before,
        "packs_deleted": r.packs_deleted,
        "packs_unindexed": r.packs_unindexed,
        "packs_repacked": r.packs_repacked,
        "packs_rescued": r.packs_rescued,
        "blobs_repacked": r.blobs_repacked,
        "blobs_removed": r.blobs_removed,
        "bytes_repacked": r.bytes_repacked,
        "bytes_deleted": r.bytes_deleted,
        "bytes_freed": r.bytes_freed,
        "segments_rewritten": r.segments_rewritten,
        "duration_ms": r.duration.as_millis() as u64,
    })
}

pub fn run(g: &Global, out: Output, a: &PruneArgs) -> Result<Outcome> {
    let opts = options(g, &a.flags, a.dry_run)?;
    let repo = session::open(g)?;
    let report = prune(&repo, &out, &opts)?;
    out.json(&report);
    Ok(Outcome::Complete)
}
