//! `chatvault ls`, `find`, `diff` and `cat`: reading snapshots without restoring them.

use std::io::Write;

use anyhow::{Context, Result};
use chatvault_fs::{Entry, EntryKind};
use serde_json::{Value, json};

use crate::args::{CatArgs, DiffArgs, FindArgs, Global, LsArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

fn entry_json(e: &Entry) -> Value {
    json!({
        "path": e.display_path(),
        "type": e.meta.kind.as_str(),
        "mode": format!("{:04o}", e.meta.mode),
        "uid": e.meta.uid,
        "gid": e.meta.gid,
        "size": e.meta.size,
        "mtime": e.meta.mtime.secs,
        "link_target": e.meta.link_target.as_deref().map(chatvault_fs::display_path),
        "error": e.meta.error,
    })
}

fn long_line(e: &Entry) -> String {
    let kind = match e.meta.kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
    };
    let mut line = format!(
        "{kind}{:04o} {:>6} {:>6} {:>12} {}  {}",
        e.meta.mode,
        e.meta.uid,
        e.meta.gid,
        e.meta.size,
        output::time(e.meta.mtime.secs.saturating_mul(1000)),
        e.display_path()
    );
    if let Some(t) = &e.meta.link_target {
        line.push_str(&format!(" -> {}", chatvault_fs::display_path(t)));
    }
    if let Some(err) = &e.meta.error {
        line.push_str(&format!("  (unreadable at backup: {err})"));
    }
    line
}

pub fn ls(g: &Global, out: Output, a: &LsArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let snap = session::resolve(&repo, &a.snapshot)?;
    let mut entries = Vec::new();
    chatvault_fs::walk(
        &repo,
        snap.record.root,
        &a.path,
        !a.no_recursive,
        &mut |e| {
            if out.json {
                entries.push(entry_json(e));
            } else if a.long {
                out.line(long_line(e));
            } else {
                out.line(e.display_path());
            }
            Ok(())
        },
    )?;
    out.json(&json!({ "snapshot": snap.id.to_hex(), "entries": entries }));
    Ok(Outcome::Complete)
}

pub fn find(g: &Global, out: Output, a: &FindArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let patterns = chatvault_fs::Patterns::new(&a.patterns)?;
    let snapshots = if a.snapshots.is_empty() {
        let mut all = repo.list_snapshots()?;
        all.sort_by_key(|s| (s.record.time_unix_ms, s.id));
        all
    } else {
        a.snapshots
            .iter()
            .map(|s| session::resolve(&repo, s))
            .collect::<Result<_>>()?
    };
    let mut found = Vec::new();
    for snap in &snapshots {
        chatvault_fs::walk(&repo, snap.record.root, "/", true, &mut |e| {
            if patterns.matches(&e.path, &e.node.name) {
                out.line(format!("{}  {}", snap.id.short(), long_line(e)));
                let mut j = entry_json(e);
                j["snapshot"] = json!(snap.id.to_hex());
                found.push(j);
            }
            Ok(())
        })?;
    }
    out.json(&Value::Array(found));
    Ok(Outcome::Complete)
}

pub fn diff(g: &Global, out: Output, a: &DiffArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let first = session::resolve(&repo, &a.first)?;
    let second = session::resolve(&repo, &a.second)?;
    let mut changes = Vec::new();
    let (mut added, mut removed) = (0u64, 0u64);
    chatvault_fs::diff(&repo, first.record.root, second.record.root, &mut |d| {
        let path = chatvault_fs::display_path(&d.path);
        out.line(format!("{}  {path}", d.change.symbol()));
        added += d.size_after.saturating_sub(d.size_before);
        removed += d.size_before.saturating_sub(d.size_after);
        changes.push(json!({
            "path": path,
            "change": format!("{:?}", d.change).to_lowercase(),
            "size_before": d.size_before,
            "size_after": d.size_after,
        }));
        Ok(())
    })?;
    out.line(format!(
        "{} changes; {} more, {} less in changed files",
        changes.len(),
        output::bytes(added),
        output::bytes(removed)
    ));
    out.json(&json!({
        "first": first.id.to_hex(),
        "second": second.id.to_hex(),
        "changes": changes,
    }));
    Ok(Outcome::Complete)
}

pub fn cat(g: &Global, a: &CatArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let snap = session::resolve(&repo, &a.snapshot)?;
    let stdout = std::io::stdout();
    let mut lock = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    chatvault_fs::cat(&repo, snap.record.root, &a.path, &mut lock)?;
    lock.flush().context("writing to stdout")?;
    Ok(Outcome::Complete)
}
