//! `chatvault stats`: what the repository stores against what it protects.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::json;

use crate::args::{Global, StatsArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn run(g: &Global, out: Output, a: &StatsArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let s = repo.stats()?;
    let mut snapshots = repo.list_snapshots()?;
    snapshots.sort_by_key(|s| (s.record.time_unix_ms, s.id));
    out.line(format!("snapshots:        {}", snapshots.len()));
    out.line(format!(
        "packs:            {} ({})",
        s.packs,
        output::bytes(s.pack_bytes)
    ));
    out.line(format!(
        "blobs:            {} ({} trees)",
        s.blobs, s.tree_blobs
    ));
    out.line(format!(
        "unique data:      {} raw, {} stored (compression {:.2}x)",
        output::bytes(s.raw_bytes),
        output::bytes(s.stored_bytes),
        ratio(s.raw_bytes, s.stored_bytes)
    ));
    let mut per_snapshot = Vec::new();
    let mut logical = 0u64;
    if a.per_snapshot {
        let mut memo = HashMap::new();
        out.line(format!(
            "\n{:<8}  {:<19}  {:>10}  {:>12}  {:>12}",
            "id", "time (UTC)", "files", "logical", "added"
        ));
        for snap in &snapshots {
            let size = chatvault_fs::tree_size(&repo, snap.record.root, &mut memo)?;
            logical += size.bytes;
            out.line(format!(
                "{:<8}  {:<19}  {:>10}  {:>12}  {:>12}",
                snap.id.short(),
                output::time(snap.record.time_unix_ms),
                size.files,
                output::bytes(size.bytes),
                output::bytes(snap.record.summary.bytes_added)
            ));
            per_snapshot.push(json!({
                "id": snap.id.to_hex(),
                "time_unix_ms": snap.record.time_unix_ms,
                "files": size.files,
                "logical_bytes": size.bytes,
                "bytes_added": snap.record.summary.bytes_added,
            }));
        }
        out.line(format!(
            "\nlogical total:    {} across all snapshots; dedup + compression {:.1}x",
            output::bytes(logical),
            ratio(logical, s.pack_bytes)
        ));
    }
    out.json(&json!({
        "snapshots": snapshots.len(),
        "packs": s.packs,
        "pack_bytes": s.pack_bytes,
        "blobs": s.blobs,
        "tree_blobs": s.tree_blobs,
        "raw_bytes": s.raw_bytes,
        "stored_bytes": s.stored_bytes,
        "segments": s.segments,
        "logical_bytes": a.per_snapshot.then_some(logical),
        "dedup_ratio": a.per_snapshot.then(|| ratio(logical, s.pack_bytes)),
        "per_snapshot": per_snapshot,
    }));
    Ok(Outcome::Complete)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
