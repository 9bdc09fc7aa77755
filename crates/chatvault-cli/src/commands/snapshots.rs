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
    let mut damaged_holds = false;
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
    // A hold that does not verify is reported, not hidden: forget and prune refuse to run
    // until it is dealt with.
    let holds = match repo.holds_by_snapshot() {
        Ok(h) => h,
        Err(e) => {
            out.warn(format!("holds could not be read: {e}"));
            damaged_holds = true;
            Default::default()
        }
    };
    out.line(format!(
        "{:<8}  {:<19}  {:<12}  {:<8}  {:<11}  {:>10}  {:>10}  {:<4}  paths",
        "id", "time (UTC)", "host", "writer", "kind", "files", "added", "held"
    ));
    for s in &list {
        let r = &s.record;
        out.line(format!(
            "{:<8}  {:<19}  {:<12}  {:<8}  {:<11}  {:>10}  {:>10}  {:<4}  {}",
            s.id.short(),
            output::time(r.time_unix_ms),
            output::printable(&r.host),
            s.writer.short(),
            r.kind.as_str(),
            r.summary.files,
            output::bytes(r.summary.bytes_added),
            if holds.contains_key(&s.id) { "yes" } else { "" },
            output::printable(&r.paths.join(" "))
        ));
    }
    for (id, e) in &damaged {
        out.warn(format!("snapshot {} does not load: {e}", id.short()));
    }
    out.json(&Value::Array(
        list.iter()
            .map(|s| {
                let mut v = super::snapshot_json(s);
                v["holds"] = holds
                    .get(&s.id)
                    .map(|h| h.iter().map(super::hold::hold_json).collect())
                    .unwrap_or_else(|| Value::Array(Vec::new()));
                v
            })
            .collect(),
    ));
    Ok(if damaged.is_empty() && !damaged_holds {
        Outcome::Complete
    } else {
        Outcome::Partial
    })
}
