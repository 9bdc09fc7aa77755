//! `chatvault repair index`, `repair snapshots` and `repair packs`.

use anyhow::Result;
use serde_json::{Value, json};

use anyhow::anyhow;
use chatvault_core::{DamagedContent, LossKind, PackId, PackRepairOptions, RepairOptions};

use crate::args::{Global, RepairCommand, RepairPacksArgs, RepairSnapshotsArgs};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn run(g: &Global, out: Output, c: &RepairCommand) -> Result<Outcome> {
    match c {
        RepairCommand::Index => index(g, out),
        RepairCommand::Snapshots(a) => snapshots(g, out, a),
        RepairCommand::Packs(a) => packs(g, out, a),
    }
}

/// A pack named by id or object name.
fn pack_id(spec: &str) -> Result<PackId> {
    let hex = spec.rsplit('/').next().unwrap_or(spec);
    PackId::from_hex(hex).map_err(|_| anyhow!("{spec:?} is not a pack id or pack object name"))
}

fn packs(g: &Global, out: Output, a: &RepairPacksArgs) -> Result<Outcome> {
    let ids = a
        .packs
        .iter()
        .map(|p| pack_id(p))
        .collect::<Result<Vec<_>>>()?;
    let repo = session::open(g)?;
    let mut opts = PackRepairOptions {
        packs: ids,
        dry_run: a.dry_run,
        ..PackRepairOptions::default()
    };
    if let Some(s) = g.lock_wait {
        opts.wait = std::time::Duration::from_secs(s);
    }
    let r = repo.repair_packs(&opts)?;
    out.line(format!(
        "{} packs read ({}): {} damaged",
        r.packs,
        crate::output::bytes(r.bytes_read),
        r.damaged.len()
    ));
    let mut damaged = Vec::new();
    for d in &r.damaged {
        let lost = match &d.lost {
            Some(l) => format!("{} blobs lost", l.len()),
            None => "every blob lost".to_owned(),
        };
        let action = match (d.missing, a.dry_run, d.deleted) {
            (true, _, _) => "missing",
            (false, true, _) => "would be replaced",
            (false, false, true) => "deleted",
            (false, false, false) => "kept",
        };
        out.line(format!(
            "  {}: {}; {} blobs salvaged, {lost}; {action}",
            d.pack.object_name(),
            d.reason,
            d.salvaged
        ));
        damaged.push(json!({
            "pack": d.pack.to_hex(),
            "reason": d.reason,
            "missing": d.missing,
            "salvaged": d.salvaged,
            "lost": d.lost.as_ref().map(|l| l.iter().map(|b| b.to_hex()).collect::<Vec<_>>()),
            "deleted": d.deleted,
        }));
    }
    if let Some(ix) = &r.index {
        out.line(format!(
            "index rebuilt: {} blobs in {} new segments, {} old segments retired",
            ix.blobs, ix.segments_written, ix.segments_retired
        ));
    }
    if r.lost_data() && !a.dry_run {
        out.line(
            "data was lost: the next backups store again what their sources still hold; \
             `chatvault repair snapshots --read-data` lists (and saves snapshots without) the rest",
        );
    }
    out.json(&json!({
        "dry_run": a.dry_run,
        "packs": r.packs,
        "bytes_read": r.bytes_read,
        "damaged": damaged,
        "index_rebuilt": r.index.is_some(),
    }));
    // Data lost for good: say so in the exit code even though the repair succeeded.
    Ok(if r.lost_data() {
        Outcome::Partial
    } else {
        Outcome::Complete
    })
}

fn index(g: &Global, out: Output) -> Result<Outcome> {
    let repo = session::open(g)?;
    let r = repo.repair_index()?;
    out.line(format!(
        "read {} packs listing {} blobs: {} were not indexed and are now; {} new segments",
        r.packs, r.blobs, r.blobs_reindexed, r.segments_written
    ));
    out.line(format!(
        "retired {} old segments ({} unreadable, {} rewritten without packs that are gone)",
        r.segments_retired, r.segments_unreadable, r.segments_rewritten,
    ));
    for s in &r.segments_kept {
        out.line(format!(
            "  kept {}: it names blobs in a pack whose header is unreadable",
            s.object_name()
        ));
    }
    for (pack, why) in &r.unreadable_packs {
        out.line(format!("  unreadable pack {pack}: {why}"));
    }
    out.json(&json!({
        "packs": r.packs,
        "blobs": r.blobs,
        "blobs_reindexed": r.blobs_reindexed,
        "segments_written": r.segments_written,
        "segments_rewritten": r.segments_rewritten,
        "segments_retired": r.segments_retired,
        "segments_unreadable": r.segments_unreadable,
        "segments_kept": r.segments_kept.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
        "unreadable_packs": r.unreadable_packs.iter()
            .map(|(p, e)| json!({"pack": p, "error": e})).collect::<Value>(),
        "problems": r.unreadable_packs.iter()
            .map(|(p, e)| json!({"object": p, "message": e})).collect::<Value>(),
    }));
    // Unreadable packs are data lost for good: `repair snapshots` is the next step.
    Ok(Outcome::from_problems(r.unreadable_packs.len()))
}

fn snapshots(g: &Global, out: Output, a: &RepairSnapshotsArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let ids = a
        .snapshots
        .iter()
        .map(|s| Ok(session::resolve(&repo, s)?.id))
        .collect::<Result<Vec<_>>>()?;
    let r = repo.repair_snapshots(&RepairOptions {
        snapshots: ids,
        read_data: a.read_data,
        damaged_content: if a.keep_readable {
            DamagedContent::KeepReadable
        } else {
            DamagedContent::DropNode
        },
        dry_run: a.dry_run,
        forget_originals: a.forget,
    })?;
    out.line(format!(
        "{} snapshots examined: {} intact, {} damaged, {} unreadable",
        r.snapshots,
        r.intact,
        r.repaired.len(),
        r.unreadable.len()
    ));
    let mut repaired = Vec::new();
    for s in &r.repaired {
        let action = match (s.repaired, a.dry_run, s.original_forgotten) {
            (_, true, _) => "would be repaired".to_owned(),
            (Some(new), false, true) => format!("repaired as {} (original forgotten)", new.short()),
            (Some(new), false, false) => format!("repaired as {}", new.short()),
            (None, false, true) => {
                "nothing left to save (its root tree is lost); forgotten".to_owned()
            }
            (None, false, false) => "nothing left to save (its root tree is lost)".to_owned(),
        };
        out.line(format!("snapshot {}: {action}; lost:", s.original.short()));
        let mut losses = Vec::new();
        for l in &s.losses {
            let path = String::from_utf8_lossy(&l.path).into_owned();
            let kind = loss_kind(l.kind);
            out.line(format!(
                "  {} ({kind}): {}",
                output::printable_bytes(&l.path),
                output::printable(&l.reason)
            ));
            losses.push(json!({"path": path, "kind": kind, "reason": l.reason}));
        }
        repaired.push(json!({
            "original": s.original.to_hex(),
            "repaired": s.repaired.map(|id| id.to_hex()),
            "original_forgotten": s.original_forgotten,
            "losses": losses,
        }));
    }
    for (id, e) in &r.unreadable {
        out.line(format!(
            "snapshot {} does not load (nothing to salvage; forget it): {e}",
            id.short()
        ));
    }
    if !a.forget && !a.dry_run && r.repaired.iter().any(|s| s.repaired.is_some()) {
        out.line(
            "the originals are kept: forget them (or rerun with --forget) once the repaired \
             snapshots are checked",
        );
    }
    out.json(&json!({
        "dry_run": a.dry_run,
        "snapshots": r.snapshots,
        "intact": r.intact,
        "repaired": repaired,
        "unreadable": r.unreadable.iter()
            .map(|(id, e)| json!({"id": id.to_hex(), "error": e})).collect::<Value>(),
    }));
    // Data was lost: say so in the exit code even though the repair itself succeeded.
    Ok(if r.repaired.is_empty() && r.unreadable.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Partial
    })
}

fn loss_kind(k: LossKind) -> &'static str {
    match k {
        LossKind::Subtree => "subtree",
        LossKind::Content => "content",
        LossKind::ContentCut => "content_cut",
        _ => "other",
    }
}
