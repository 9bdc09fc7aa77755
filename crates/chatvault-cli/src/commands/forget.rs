//! `chatvault forget`: retention policies, applied per group of snapshots.

use anyhow::Result;
use chatvault_core::{PruneOptions, Repository, RetentionPolicy, SnapshotId};
use serde_json::{Value, json};

use crate::args::{ForgetArgs, Global};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

fn policy(a: &ForgetArgs) -> RetentionPolicy {
    RetentionPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within,
        within_hourly: a.keep_within_hourly,
        within_daily: a.keep_within_daily,
        within_weekly: a.keep_within_weekly,
        within_monthly: a.keep_within_monthly,
        within_yearly: a.keep_within_yearly,
        tags: a.keep_tags.clone(),
        time_zone: a.time_zone.clone(),
    }
}

pub fn run(g: &Global, out: Output, a: &ForgetArgs) -> Result<Outcome> {
    let prune_opts = if a.prune {
        Some(super::prune::options(g, &a.prune_flags, a.dry_run)?)
    } else {
        None
    };
    let policy = policy(a);
    let repo = session::open(g)?;
    if !a.snapshots.is_empty() {
        if !policy.is_empty() {
            anyhow::bail!("give either snapshots to forget or a retention policy, not both");
        }
        return forget_named(&repo, out, a, prune_opts.as_ref());
    }
    let report = repo.forget(&policy, a.dry_run)?;
    let mut groups = Vec::new();
    for group in &report.groups {
        out.line(format!(
            "group: {}",
            output::printable(&group.group.to_string())
        ));
        let mut list = Vec::new();
        for v in &group.verdicts {
            let reasons: Vec<String> = v.reasons.iter().map(ToString::to_string).collect();
            let action = match (v.keep(), a.dry_run) {
                (true, _) => "keep",
                (false, true) => "would remove",
                (false, false) => "removed",
            };
            out.line(format!(
                "  {}  {}  {action:<12}  {}",
                v.id.short(),
                output::time(v.time_unix_ms),
                output::printable(&reasons.join(", "))
            ));
            list.push(json!({
                "id": v.id.to_hex(),
                "time_unix_ms": v.time_unix_ms,
                "keep": v.keep(),
                "reasons": reasons,
            }));
        }
        let g = &group.group;
        groups.push(json!({
            "group": {
                "source_kind": g.source_kind,
                "host": g.host,
                "paths": g.paths,
                "writer": g.writer.map(|w| w.to_hex()),
            },
            "snapshots": list,
        }));
    }
    for (id, e) in &report.unreadable {
        out.warn(format!(
            "snapshot {} does not load, left alone (`chatvault forget {}` removes it): {e}",
            id.short(),
            id.short()
        ));
    }
    let removed = report.removed.len();
    let would = report
        .groups
        .iter()
        .flat_map(|g| &g.verdicts)
        .filter(|v| !v.keep())
        .count();
    out.line(match (a.dry_run, a.prune) {
        (true, _) => format!("dry run: {would} snapshots would be removed"),
        (false, true) => format!("{removed} snapshots removed; pruning"),
        (false, false) => format!("{removed} snapshots removed; their data stays until a prune"),
    });
    // A dry run's prune cannot see the snapshots it would forget as gone: it shows what
    // a prune would free now.
    let prune = match &prune_opts {
        Some(o) => super::prune::prune(&repo, &out, o)?,
        None => Value::Null,
    };
    out.json(&json!({
        "prune": prune,
        "dry_run": a.dry_run,
        "groups": groups,
        "removed": report.removed.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "unreadable": report.unreadable.iter().map(|(id, e)| json!({"id": id.to_hex(), "error": e})).collect::<Value>(),
    }));
    Ok(Outcome::Complete)
}

/// `forget SNAPSHOT...`: removes the named snapshot records, loadable or not. Every name is
/// resolved, and every hold checked, before anything is removed.
fn forget_named(
    repo: &Repository,
    out: Output,
    a: &ForgetArgs,
    prune_opts: Option<&PruneOptions>,
) -> Result<Outcome> {
    let mut ids: Vec<SnapshotId> = Vec::new();
    for spec in &a.snapshots {
        let id = if spec == "latest" {
            session::resolve(repo, spec)?.id
        } else {
            session::resolve_id(repo, spec)?
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut removed = Vec::new();
    if a.dry_run {
        // Refused now as the real run would be: a held snapshot is never removed.
        let held = repo.holds_by_snapshot()?;
        if let Some(id) = ids.iter().find(|id| held.contains_key(id)) {
            return Err(chatvault_core::Error::Held { snapshot: *id }.into());
        }
        for id in &ids {
            out.line(format!("  {}  would remove", id.short()));
        }
    } else {
        // Every hold is checked (listed once) before anything is removed.
        repo.delete_snapshots(&ids)?;
        for id in &ids {
            out.line(format!("  {}  removed", id.short()));
            removed.push(*id);
        }
    }
    out.line(match (a.dry_run, a.prune) {
        (true, _) => format!("dry run: {} snapshots would be removed", ids.len()),
        (false, true) => format!("{} snapshots removed; pruning", removed.len()),
        (false, false) => format!(
            "{} snapshots removed; their data stays until a prune",
            removed.len()
        ),
    });
    let prune = match prune_opts {
        Some(o) => super::prune::prune(repo, &out, o)?,
        None => Value::Null,
    };
    out.json(&json!({
        "prune": prune,
        "dry_run": a.dry_run,
        "named": ids.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "removed": removed.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
    }));
    Ok(Outcome::Complete)
}
