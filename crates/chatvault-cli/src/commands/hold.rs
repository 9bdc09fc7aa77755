//! `chatvault hold`, `release` and `unlock`: holds on snapshots, and stale locks.

use anyhow::Result;
use chatvault_core::{Hold, LockInfo};
use serde_json::{Value, json};

use crate::args::{Global, HoldArgs, ReleaseArgs, UnlockArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

/// A hold as JSON (the shape `snapshots --json` nests).
pub fn hold_json(h: &Hold) -> Value {
    json!({
        "id": h.id.to_hex(),
        "snapshot": h.record.snapshot.to_hex(),
        "time_unix_ms": h.record.time_unix_ms,
        "reason": h.record.reason,
    })
}

pub fn hold(g: &Global, out: Output, a: &HoldArgs) -> Result<Outcome> {
    let repo = session::open(g)?;
    let snap = session::resolve(&repo, &a.snapshot)?;
    let h = repo.place_hold(snap.id, &a.reason)?;
    out.line(format!(
        "snapshot {} is on hold (hold {}){}",
        snap.id.short(),
        h.id.short(),
        if a.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", a.reason)
        }
    ));
    out.json(&hold_json(&h));
    Ok(Outcome::Complete)
}

pub fn release(g: &Global, out: Output, a: &ReleaseArgs) -> Result<Outcome> {
    let repo = session::open(g)?;
    let snap = session::resolve(&repo, &a.snapshot)?;
    let released = repo.release_holds(snap.id)?;
    out.line(if released.is_empty() {
        format!("snapshot {} was not on hold", snap.id.short())
    } else {
        format!(
            "released {} hold(s) on snapshot {}",
            released.len(),
            snap.id.short()
        )
    });
    out.json(&json!({
        "snapshot": snap.id.to_hex(),
        "released": released.iter().map(hold_json).collect::<Vec<_>>(),
    }));
    Ok(Outcome::Complete)
}

fn lock_json(l: &LockInfo) -> Value {
    json!({
        "id": l.id.to_hex(),
        "kind": l.record.kind.as_str(),
        "host": l.record.host,
        "pid": l.record.pid,
        "refresh": l.record.refresh,
        "created_unix_ms": l.record.created_unix_ms,
    })
}

pub fn unlock(g: &Global, out: Output, a: &UnlockArgs) -> Result<Outcome> {
    let repo = session::open(g)?;
    let removed = repo.unlock(a.watch.map(std::time::Duration::from_secs), a.all)?;
    for l in &removed {
        out.line(format!(
            "removed {} (taken {})",
            l.describe(),
            output::time(l.record.created_unix_ms)
        ));
    }
    let left = repo.list_locks()?;
    for l in &left {
        out.line(format!("still held: {}", l.describe()));
    }
    out.line(format!(
        "{} lock(s) removed, {} left",
        removed.len(),
        left.len()
    ));
    out.json(&json!({
        "removed": removed.iter().map(lock_json).collect::<Vec<_>>(),
        "left": left.iter().map(lock_json).collect::<Vec<_>>(),
    }));
    Ok(Outcome::Complete)
}
