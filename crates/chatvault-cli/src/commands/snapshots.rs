//! `chatvault snapshots`.

use anyhow::Result;
use serde_json::Value;

use crate::args::{Global, SnapshotsArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn run(g: &Global, out: Output, a: &SnapshotsArgs) -> Result<Outcome> {
    let repo = session::open(g)?;
    let mut damaged = Vec::new();
    let mut list = Vec::new();
    for id in repo.snapshot_ids()? {
        match repo.load_snapshot(id) {
            Ok(s) => list.push(s),
            Err(e) => damaged.push((id, e)),
        }
    }
    list.retain(|s| {
        a.host.as_ref().is_none_or(|h| &s.record.host == h)
            && a.tag.as_ref().is_none_or(|t| s.record.tags.contains(t))
    });
    list.sort_by_key(|s| (s.record.time_unix_ms, s.id));
    out.line(format!(
        "{:<8}  {:<19}  {:<12}  {:<11}  {:>10}  {:>10}  paths",
        "id", "time (UTC)", "host", "kind", "files", "added"
    ));
    for s in &list {
        let r = &s.record;
        out.line(format!(
            "{:<8}  {:<19}  {:<12}  {:<11}  {:>10}  {:>10}  {}",
            s.id.short(),
            output::time(r.time_unix_ms),
            r.host,
            match r.kind {
                chatvault_core::SnapshotKind::Full => "full",
                chatvault_core::SnapshotKind::Incremental => "incremental",
            },
            r.summary.files,
            output::bytes(r.summary.bytes_added),
            r.paths.join(" ")
        ));
    }
    for (id, e) in &damaged {
        out.warn(format!("snapshot {} does not load: {e}", id.short()));
    }
    out.json(&Value::Array(
        list.iter().map(super::snapshot_json).collect(),
    ));
    Ok(if damaged.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Partial
    })
}
