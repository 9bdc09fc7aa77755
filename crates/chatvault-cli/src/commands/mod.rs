//! One module per subcommand: parse nothing, decide nothing the libraries decide; map
//! arguments to options, call the library, print the result.

pub mod backup;
pub mod browse;
pub mod check;
pub mod copy;
pub mod demo;
pub mod docs;
pub mod drill;
pub mod forget;
pub mod hold;
pub mod init;
pub mod key;
pub mod mirror;
pub mod msglog;
pub mod msglog_sources;
pub mod plan;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod snapshots;
pub mod stats;

use serde_json::{Value, json};

use chatvault_core::Snapshot;
use chatvault_fs::Problem;

/// A snapshot as JSON (the shape `snapshots --json` prints).
pub fn snapshot_json(s: &Snapshot) -> Value {
    let r = &s.record;
    json!({
        "id": s.id.to_hex(),
        "short_id": s.id.short(),
        "time_unix_ms": r.time_unix_ms,
        "host": r.host,
        "tags": r.tags,
        "source_kind": r.source_kind,
        "paths": r.paths,
        "parent": r.parent.map(|p| p.to_hex()),
        "kind": r.kind.as_str(),
        "writer": s.writer.to_hex(),
        "writer_seq": r.writer_seq,
        "origin": r.origin.map(|o| json!({
            "repository": o.repo.to_hex(),
            "snapshot": o.snapshot.to_hex(),
        })),
        "summary": {
            "files": r.summary.files,
            "bytes_read": r.summary.bytes_read,
            "bytes_added": r.summary.bytes_added,
            "blobs_added": r.summary.blobs_added,
            "duration_ms": r.summary.duration_ms,
            "errors": r.summary.errors,
        },
    })
}

/// Problems as JSON.
pub fn problems_json(problems: &[Problem]) -> Value {
    problems
        .iter()
        .map(|p| {
            json!({
                "path": p.path.to_string_lossy(),
                "kind": format!("{:?}", p.kind).to_lowercase(),
                "message": p.message,
            })
        })
        .collect()
}
