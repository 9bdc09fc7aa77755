//! `chatvault drill`: a restore drill. Restores (or, with `--verify-only`, reads and
//! verifies without writing) the latest snapshot of every group, measures the time taken
//! (the recovery time achieved) and the age of the data (the recovery point), and writes
//! a JSON report. Any failure is a non-zero exit.
//!
//! Frontends plug in through [`DrillFrontend`], chosen by the snapshot's source kind:
//! the engine knows nothing about what a snapshot holds, so restoring one is the
//! frontend's job. The filesystem frontend is the one implemented; a frontend added later
//! (message logs) adds an implementation to [`frontends`] and nothing else changes.
//!
//! Invariant: a drill never writes outside its scratch directory, and with
//! `--verify-only` writes nothing at all (the JSON report file aside).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use chatvault_core::{Repository, Snapshot, SnapshotFilter};

use crate::args::{DrillArgs, Global};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::progress::Progress;
use crate::session;

/// Where a drill puts what it restores.
#[derive(Debug, Clone, Copy)]
pub enum DrillMode<'a> {
    /// Read and verify everything, write nothing.
    VerifyOnly,
    /// Restore into this directory (created by the frontend; it does not exist yet).
    Restore(&'a Path),
}

/// One entry a drill could not restore or verify.
#[derive(Debug, Clone)]
pub struct DrillProblem {
    /// The entry's path in the snapshot.
    pub path: String,
    /// What went wrong.
    pub message: String,
    /// Whether the cause is damaged or missing repository data (exit code 13).
    pub corrupt: bool,
}

/// What a frontend's drill of one snapshot did.
#[derive(Debug, Clone, Default)]
pub struct DrillOutcome {
    /// Entries restored or verified.
    pub entries: u64,
    /// Bytes restored or verified.
    pub bytes: u64,
    /// Entries that the backup itself recorded as unreadable (nothing to restore; not a
    /// drill failure, the backup reported them).
    pub skipped: u64,
    /// Entries that failed: the drill fails.
    pub problems: Vec<DrillProblem>,
}

/// A frontend's restore, as a drill runs it.
pub trait DrillFrontend {
    /// Whether this frontend restores snapshots of `source_kind`.
    fn handles(&self, source_kind: &str) -> bool;
    /// Restores or verifies the whole snapshot, checking everything a restore checks.
    /// Damage to individual entries is reported in the outcome; an error means the drill
    /// of this snapshot could not run at all.
    fn drill(
        &self,
        g: &Global,
        repo: &Repository,
        snap: &Snapshot,
        mode: DrillMode<'_>,
    ) -> Result<DrillOutcome>;
}

/// Every frontend a drill can use.
fn frontends() -> Vec<Box<dyn DrillFrontend>> {
    vec![Box::new(FsDrill), Box::new(MsglogDrill)]
}

/// The message-log frontend: a whole backup set (logs, files, dumps), restored with
/// `chatvault_msglog::restore` or read and verified with `chatvault_msglog::verify`.
struct MsglogDrill;

impl DrillFrontend for MsglogDrill {
    fn handles(&self, source_kind: &str) -> bool {
        source_kind == chatvault_msglog::SOURCE_KIND
    }

    fn drill(
        &self,
        _g: &Global,
        repo: &Repository,
        snap: &Snapshot,
        mode: DrillMode<'_>,
    ) -> Result<DrillOutcome> {
        let r = match mode {
            DrillMode::Restore(dir) => chatvault_msglog::restore(repo, snap.id, dir)?,
            DrillMode::VerifyOnly => chatvault_msglog::verify(repo, snap.id)?,
        };
        Ok(DrillOutcome {
            entries: r.files + r.logs.streams,
            bytes: r.file_bytes + r.logs.bytes_out,
            problems: r
                .problems
                .into_iter()
                .map(|p| DrillProblem {
                    path: p.path,
                    message: p.message,
                    corrupt: p.corrupt,
                })
                .collect(),
            ..Default::default()
        })
    }
}

/// The filesystem frontend: `chatvault_fs::restore`, with `verify_only` for a drill that
/// writes nothing.
struct FsDrill;

impl DrillFrontend for FsDrill {
    fn handles(&self, source_kind: &str) -> bool {
        source_kind == chatvault_fs::SOURCE_KIND || source_kind == chatvault_fs::STDIN_SOURCE_KIND
    }

    fn drill(
        &self,
        g: &Global,
        repo: &Repository,
        snap: &Snapshot,
        mode: DrillMode<'_>,
    ) -> Result<DrillOutcome> {
        let progress = Progress::new(g, "drill", None);
        if progress.visible() {
            let size = chatvault_fs::tree_size(repo, snap.record.root, &mut Default::default())?;
            (progress.total_setter())(size.bytes);
        }
        let opts = chatvault_fs::RestoreOptions {
            target: match mode {
                DrillMode::Restore(dir) => dir.to_owned(),
                DrillMode::VerifyOnly => PathBuf::new(),
            },
            verify_only: matches!(mode, DrillMode::VerifyOnly),
            // A scratch restore: links are only created, never followed, and owners are
            // the drill user's.
            allow_outward_links: true,
            owners: Some(false),
            progress: progress.callback(),
            ..Default::default()
        };
        let r = chatvault_fs::restore(repo, snap.record.root, &opts);
        progress.finish();
        let r = r?;
        let mut out = DrillOutcome {
            entries: r.files + r.dirs + r.symlinks,
            bytes: r.bytes,
            ..Default::default()
        };
        for p in r.problems {
            if p.kind == chatvault_fs::ProblemKind::Unreadable {
                out.skipped += 1;
                continue;
            }
            out.problems.push(DrillProblem {
                path: p.path.to_string_lossy().into_owned(),
                message: p.message,
                corrupt: p.kind == chatvault_fs::ProblemKind::Corrupt,
            });
        }
        Ok(out)
    }
}

pub fn run(g: &Global, out: Output, a: &DrillArgs) -> Result<Outcome> {
    let started = SystemTime::now();
    let clock = Instant::now();
    // A drill proves that the store alone restores: no tree or pack trailer comes from
    // this host's cache.
    let opts = chatvault_core::OpenOptions {
        storage_reads_only: true,
        ..session::open_options(g)
    };
    let (repo, _lock) = session::open_reading_with(g, opts)?;
    let (snaps, mut failures) = select(&repo, a)?;
    if snaps.is_empty() && failures.is_empty() {
        bail!("no snapshots to drill");
    }
    let (scratch, created) = scratch_dir(a)?;
    let mut results = Vec::new();
    for snap in &snaps {
        let r = drill_one(g, &repo, snap, scratch.as_deref(), a.keep);
        results.push((snap, r));
    }
    if let (Some(dir), true, false) = (&scratch, created, a.keep) {
        let _ = std::fs::remove_dir(dir);
    }
    let rto = clock.elapsed();
    let now_ms = unix_ms(SystemTime::now());
    let mut docs = Vec::new();
    let (mut bytes, mut rpo_max, mut corrupt) = (0u64, 0f64, false);
    for (snap, r) in &results {
        let rpo = (now_ms - snap.record.time_unix_ms).max(0) as f64 / 1000.0;
        rpo_max = rpo_max.max(rpo);
        let doc = snapshot_doc(snap, r, rpo);
        match r {
            Ok((o, _)) => {
                bytes += o.bytes;
                corrupt |= o.problems.iter().any(|p| p.corrupt);
                for p in &o.problems {
                    failures.push(
                        json!({"snapshot": snap.id.to_hex(), "path": p.path, "message": p.message}),
                    );
                }
            }
            Err(e) => {
                corrupt |= crate::exit::classify(e).0 == crate::exit::CORRUPT;
                failures.push(json!({"snapshot": snap.id.to_hex(), "path": null, "message": format!("{e:#}")}));
            }
        }
        print_snapshot(out, snap, r, rpo);
        docs.push(doc);
    }
    let success = failures.is_empty();
    let doc = json!({
        "mode": if a.verify_only { "verify_only" } else { "restore" },
        "target": scratch.as_ref().map(|p| p.display().to_string()),
        "started_unix_ms": unix_ms(started),
        "success": success,
        "rto_seconds": rto.as_secs_f64(),
        "rpo_seconds": rpo_max,
        "bytes": bytes,
        "snapshots": docs,
        "problems": failures,
    });
    out.line(format!(
        "drill {}: {} snapshots, {}; oldest data {}",
        if success { "passed" } else { "FAILED" },
        results.len(),
        output::throughput(bytes, rto),
        age(rpo_max)
    ));
    if let Some(path) = &a.report {
        write_atomically(path, &serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing the drill report {}", path.display()))?;
    }
    out.json(&doc);
    Ok(match (success, corrupt) {
        (true, _) => Outcome::Complete,
        (false, true) => Outcome::Corrupt,
        (false, false) => Outcome::Failed,
    })
}

/// The snapshots to drill, and failures found choosing them (snapshots that do not load).
fn select(repo: &Repository, a: &DrillArgs) -> Result<(Vec<Snapshot>, Vec<Value>)> {
    if !a.snapshots.is_empty() {
        let snaps = a
            .snapshots
            .iter()
            .map(|s| session::resolve(repo, s))
            .collect::<Result<Vec<_>>>()?;
        return Ok((snaps, Vec::new()));
    }
    // The latest of every group (source kind, host, paths, writer), by core's one ranking:
    // a repaired snapshot wins over its original, which keeps the same time.
    let filter = SnapshotFilter {
        host: a.host.clone(),
        ..SnapshotFilter::default()
    };
    let found = repo.latest_snapshots(&filter)?;
    // A snapshot that does not load may have been the latest of its group: a drill cannot
    // pass without it.
    let failures = found
        .unreadable
        .iter()
        .map(|(id, e)| json!({"snapshot": id.to_hex(), "path": null, "message": format!("snapshot does not load: {e}")}))
        .collect();
    Ok((found.by_group.into_values().collect(), failures))
}

/// The scratch directory (none when verifying only), and whether the drill created it.
fn scratch_dir(a: &DrillArgs) -> Result<(Option<PathBuf>, bool)> {
    if a.verify_only {
        return Ok((None, false));
    }
    if let Some(t) = &a.target {
        let existed = t.exists();
        std::fs::create_dir_all(t).with_context(|| format!("creating {}", t.display()))?;
        return Ok((Some(session::absolute(t)), !existed));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "chatvault-drill-{}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((Some(dir), true))
}

/// Drills one snapshot: returns the frontend's outcome and the time it took.
fn drill_one(
    g: &Global,
    repo: &Repository,
    snap: &Snapshot,
    scratch: Option<&Path>,
    keep: bool,
) -> Result<(DrillOutcome, Duration)> {
    let kind = &snap.record.source_kind;
    let frontends = frontends();
    let Some(frontend) = frontends.iter().find(|f| f.handles(kind)) else {
        bail!("no frontend in this build restores snapshots of source kind {kind:?}");
    };
    let clock = Instant::now();
    let outcome = match scratch {
        None => frontend.drill(g, repo, snap, DrillMode::VerifyOnly),
        Some(dir) => {
            let target = dir.join(snap.id.short());
            let r = frontend.drill(g, repo, snap, DrillMode::Restore(&target));
            if !keep {
                let _ = std::fs::remove_dir_all(&target);
            }
            r
        }
    }?;
    Ok((outcome, clock.elapsed()))
}

fn snapshot_doc(snap: &Snapshot, r: &Result<(DrillOutcome, Duration)>, rpo: f64) -> Value {
    let rec = &snap.record;
    let mut doc = json!({
        "id": snap.id.to_hex(),
        "short_id": snap.id.short(),
        "source_kind": rec.source_kind,
        "host": rec.host,
        "paths": rec.paths,
        "time_unix_ms": rec.time_unix_ms,
        "rpo_seconds": rpo,
    });
    let extra = match r {
        Ok((o, d)) => json!({
            "success": o.problems.is_empty(),
            "rto_seconds": d.as_secs_f64(),
            "entries": o.entries,
            "bytes": o.bytes,
            "bytes_per_second": o.bytes as f64 / d.as_secs_f64().max(1e-3),
            "skipped_unreadable_at_backup": o.skipped,
            "problems": o.problems.iter()
                .map(|p| json!({"path": p.path, "message": p.message, "corrupt": p.corrupt}))
                .collect::<Value>(),
        }),
        Err(e) => json!({"success": false, "error": format!("{e:#}")}),
    };
    if let (Value::Object(d), Value::Object(x)) = (&mut doc, extra) {
        d.extend(x);
    }
    doc
}

fn print_snapshot(out: Output, snap: &Snapshot, r: &Result<(DrillOutcome, Duration)>, rpo: f64) {
    let head = format!(
        "snapshot {} ({} {} {}), data age {}",
        snap.id.short(),
        output::printable(&snap.record.source_kind),
        output::printable(&snap.record.host),
        output::printable(&snap.record.paths.join(" ")),
        age(rpo)
    );
    match r {
        Ok((o, d)) => {
            out.line(format!(
                "{head}: {} entries, {}{}",
                o.entries,
                output::throughput(o.bytes, *d),
                if o.problems.is_empty() {
                    ""
                } else {
                    " — FAILED"
                }
            ));
            for p in &o.problems {
                out.line(format!(
                    "  {}: {}",
                    output::printable(&p.path),
                    output::printable(&p.message)
                ));
            }
        }
        Err(e) => out.line(format!("{head}: FAILED: {e:#}")),
    }
}

fn age(secs: f64) -> String {
    match secs {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes a file through a temporary name in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}
