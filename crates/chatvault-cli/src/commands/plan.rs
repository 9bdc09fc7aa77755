//! `chatvault run PLAN.toml`: what an operator schedules, in one file and one command —
//! a backup (incremental, or full every N days), a message-log backup set (`[msglog]`:
//! a data directory in any layout, or a PostgreSQL message table), forget with the
//! plan's retention policy,
//! a prune (every run, or every N days), a read-data subset check, and a restore drill
//! every N days, with metrics and hooks.
//!
//! Each step runs the same code as its command (`backup`, `forget`, `prune`, `check`,
//! `drill`),
//! so a plan behaves exactly like the commands it stands for. Steps run in that order and
//! each runs even when an earlier one failed (a failed backup is no reason to skip the
//! check). The exit code is the first non-zero exit code of a step.
//!
//! Invariants: the plan is parsed and validated in full before any step runs (unknown
//! keys are refused, so a misspelt retention rule fails loudly instead of keeping
//! nothing); the state (when the last full backup and the last successful drill ran) is
//! replaced atomically and advanced only by a step that succeeded.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::args::{
    BackupArgs, CheckArgs, DrillArgs, ForgetArgs, Global, LayoutArgs, MsglogBackupArgs,
    MsglogCommand, ParentArgs, PlanStep, PostgresArgs, PruneArgs, PruneFlags, RecordArgs, RunArgs,
    Secret, parse_size,
};
use crate::exit::Outcome;
use crate::monitor::{self, Record};
use crate::output::{self, Output};

const DAY_MS: i64 = 86_400_000;

/// A plan file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Repository location (a directory or a store URL, as `--repo` takes); default:
    /// `--repo` / `CHATVAULT_REPO`.
    pub repository: Option<String>,
    /// The store's settings, `KEY=VALUE` as `--option` takes them; default: the command
    /// line's.
    pub repository_options: Option<Vec<String>>,
    /// Key file; default: the global options.
    pub key_file: Option<PathBuf>,
    /// Passphrase file; default: the global options.
    pub password_file: Option<PathBuf>,
    /// Passphrase command; default: the global options.
    pub password_command: Option<String>,
    /// Local cache directory; default: the global options.
    pub cache_dir: Option<PathBuf>,
    /// Where the plan's state (last full backup, last drill) is kept; default:
    /// `<cache dir>/plans/<plan name>-<hash of its path>.json`.
    pub state_file: Option<PathBuf>,
    /// Metrics file or directory; default: `--metrics-file`.
    pub metrics_file: Option<PathBuf>,
    /// Hook run when every step succeeded; default: `--on-success`.
    pub on_success: Option<String>,
    /// Hook run when a step failed; default: `--on-failure`.
    pub on_failure: Option<String>,
    pub backup: Option<BackupStep>,
    pub msglog: Option<MsglogStep>,
    pub forget: Option<ForgetStep>,
    pub prune: Option<PruneStep>,
    pub check: Option<CheckStep>,
    pub drill: Option<DrillStep>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupStep {
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub exclude_files: Vec<PathBuf>,
    #[serde(default)]
    pub exclude_caches: bool,
    #[serde(default)]
    pub one_file_system: bool,
    pub host: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A full backup (every file read again) when the last one is this many days old;
    /// incremental otherwise. Default: never (always incremental).
    pub full_every_days: Option<u32>,
}

/// `[msglog]`: a message-log backup set, as `chatvault msglog backup` takes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsglogStep {
    /// The chat server's data directory (optional with `[msglog.postgres]`).
    pub dir: Option<PathBuf>,
    /// The set's name. Default: the directory's name, or the database's.
    pub name: Option<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `NAME=FILE` dumps to add.
    #[serde(default)]
    pub dumps: Vec<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A full run (every log re-read and verified) when the last is this many days old.
    pub full_every_days: Option<u32>,
    /// Path patterns of the logs (`logs/{tenant}/{conversation}/*.jsonl`); default: the
    /// generator's layout.
    #[serde(default)]
    pub layout: Vec<String>,
    pub seq_pointer: Option<String>,
    pub ts_pointer: Option<String>,
    pub ts_format: Option<String>,
    pub conversation_pointer: Option<String>,
    pub tenant_pointer: Option<String>,
    pub default_tenant: Option<String>,
    /// Fail instead of warning when a stream does not fit the layout.
    #[serde(default)]
    pub strict: bool,
    pub postgres: Option<PostgresStep>,
}

/// `[msglog.postgres]`: the message table (the same settings as `--postgres`, `--pg-…`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStep {
    /// Connection URL; keep the password out of it (`password_file`). Never printed.
    pub url: Secret,
    pub password_file: Option<PathBuf>,
    pub preset: Option<String>,
    pub table: Option<String>,
    pub query: Option<String>,
    pub key: Option<String>,
    pub conversation: Option<String>,
    pub tenant: Option<String>,
    pub tenant_name: Option<String>,
    pub created: Option<String>,
    pub order: Option<String>,
    pub updated: Option<String>,
    pub deleted: Option<String>,
    pub settle_secs: Option<u64>,
    pub clock: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetStep {
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_hourly: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default)]
    pub keep_yearly: u32,
    pub keep_within: Option<String>,
    pub keep_within_hourly: Option<String>,
    pub keep_within_daily: Option<String>,
    pub keep_within_weekly: Option<String>,
    pub keep_within_monthly: Option<String>,
    pub keep_within_yearly: Option<String>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneStep {
    /// Prune when the last successful prune is this many days old. Default: every run.
    pub every_days: Option<u32>,
    /// Repack packs with more than this share unused, in percent. Default: 10.
    pub max_unused: Option<f64>,
    /// Repack at most this many bytes (`500M`, `2G`). Default: no limit.
    pub max_repack: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckStep {
    /// `n/m`, `P%` or a size; default: no data read (structure only).
    pub read_data_subset: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillStep {
    /// Run the drill when the last successful one is this many days old. Default: 7.
    pub every_days: Option<u32>,
    /// Verify without writing (default), or restore into `target`.
    #[serde(default = "yes")]
    pub verify_only: bool,
    /// Scratch directory for a restoring drill; default: the system's temporary directory.
    pub target: Option<PathBuf>,
    /// Also write the drill's JSON report here.
    pub report: Option<PathBuf>,
    /// Only snapshots of this host.
    pub host: Option<String>,
}

fn yes() -> bool {
    true
}

/// What the plan remembers between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    last_full_unix_ms: Option<i64>,
    #[serde(default)]
    last_msglog_full_unix_ms: Option<i64>,
    #[serde(default)]
    last_prune_unix_ms: Option<i64>,
    last_drill_unix_ms: Option<i64>,
}

/// A plan with everything checked: the steps as the commands' own arguments.
struct Steps {
    backup: Option<(BackupArgs, Option<u32>)>,
    msglog: Option<(MsglogBackupArgs, Option<u32>)>,
    forget: Option<ForgetArgs>,
    prune: Option<(PruneArgs, u32)>,
    check: Option<CheckArgs>,
    drill: Option<(DrillArgs, u32)>,
}

impl Steps {
    /// Drops every step not in `only` (nothing when `only` is empty).
    fn keep_only(&mut self, only: &[PlanStep]) {
        if only.is_empty() {
            return;
        }
        let drop = |s: PlanStep| !only.contains(&s);
        if drop(PlanStep::Backup) {
            self.backup = None;
        }
        if drop(PlanStep::Forget) {
            self.forget = None;
        }
        if drop(PlanStep::Prune) {
            self.prune = None;
        }
        if drop(PlanStep::Check) {
            self.check = None;
        }
        if drop(PlanStep::Drill) {
            self.drill = None;
        }
    }
}

/// Reads and validates a plan file.
pub fn load(path: &Path) -> Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let plan: Plan = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
    if let Some(r) = &plan.repository {
        chatvault_backend::Location::parse(r)
            .with_context(|| format!("repository in {}", path.display()))?;
    }
    if let Some(o) = &plan.repository_options {
        chatvault_backend::StoreOptions::parse(o)
            .with_context(|| format!("repository_options in {}", path.display()))?;
    }
    Ok(plan)
}

/// Parses a plan file's text and checks every step as `run` does before running any:
/// the fuzz target's entry (`chatvault_cli::fuzzing::plan`).
pub fn validate(text: &str) -> Result<()> {
    let plan: Plan = toml::from_str(text)?;
    steps(&plan).map(drop)
}

fn period(s: &Option<String>) -> Result<Option<chatvault_core::Period>> {
    s.as_deref()
        .map(|p| {
            p.parse()
                .with_context(|| format!("keep_within period {p:?}"))
        })
        .transpose()
}

fn steps(plan: &Plan) -> Result<Steps> {
    let backup = plan.backup.as_ref().map(|b| {
        let args = BackupArgs {
            paths: b.paths.clone(),
            exclude: b.exclude.clone(),
            exclude_file: b.exclude_files.clone(),
            exclude_caches: b.exclude_caches,
            one_file_system: b.one_file_system,
            record: RecordArgs {
                host: b.host.clone(),
                tags: b.tags.clone(),
            },
            stdin_name: "stdin".into(),
            ..BackupArgs::default()
        };
        (args, b.full_every_days)
    });
    if backup.as_ref().is_some_and(|(a, _)| a.paths.is_empty()) {
        bail!("[backup] needs at least one path");
    }
    let msglog = plan.msglog.as_ref().map(msglog_args).transpose()?;
    let forget = match &plan.forget {
        None => None,
        Some(f) => Some(ForgetArgs {
            keep_last: f.keep_last,
            keep_hourly: f.keep_hourly,
            keep_daily: f.keep_daily,
            keep_weekly: f.keep_weekly,
            keep_monthly: f.keep_monthly,
            keep_yearly: f.keep_yearly,
            keep_within: period(&f.keep_within)?,
            keep_within_hourly: period(&f.keep_within_hourly)?,
            keep_within_daily: period(&f.keep_within_daily)?,
            keep_within_weekly: period(&f.keep_within_weekly)?,
            keep_within_monthly: period(&f.keep_within_monthly)?,
            keep_within_yearly: period(&f.keep_within_yearly)?,
            keep_tags: f.keep_tags.clone(),
            time_zone: f.time_zone.clone(),
            dry_run: false,
            ..ForgetArgs::default()
        }),
    };
    let prune = match &plan.prune {
        None => None,
        Some(p) => {
            let flags = PruneFlags {
                max_unused: p.max_unused.unwrap_or(PruneFlags::default().max_unused),
                max_repack: p
                    .max_repack
                    .as_deref()
                    .map(|s| parse_size(s).map_err(|e| anyhow!("[prune] max_repack: {e}")))
                    .transpose()?,
            };
            if !(0.0..=100.0).contains(&flags.max_unused) {
                bail!("[prune] max_unused must be a percentage from 0 to 100");
            }
            let args = PruneArgs {
                flags,
                dry_run: false,
            };
            Some((args, p.every_days.unwrap_or(0)))
        }
    };
    let check = match &plan.check {
        None => None,
        Some(c) => Some(CheckArgs {
            read_data: false,
            read_data_subset: c
                .read_data_subset
                .as_deref()
                .map(|s| s.parse().with_context(|| format!("read_data_subset {s:?}")))
                .transpose()?,
        }),
    };
    let drill = plan.drill.as_ref().map(|d| {
        let args = DrillArgs {
            verify_only: d.verify_only,
            target: if d.verify_only {
                None
            } else {
                d.target.clone()
            },
            report: d.report.clone(),
            host: d.host.clone(),
            ..DrillArgs::default()
        };
        (args, d.every_days.unwrap_or(7))
    });
    Ok(Steps {
        backup,
        msglog,
        forget,
        prune,
        check,
        drill,
    })
}

/// A URL in a plan: read as a string, shown by no `Debug` output.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `[msglog]` as the arguments of `msglog backup`, checked as the command checks them.
fn msglog_args(m: &MsglogStep) -> Result<(MsglogBackupArgs, Option<u32>)> {
    let postgres = match &m.postgres {
        None => PostgresArgs::default(),
        Some(p) => PostgresArgs {
            postgres: Some(p.url.clone()),
            postgres_password_file: p.password_file.clone(),
            pg_preset: p.preset.clone(),
            pg_table: p.table.clone(),
            pg_query: p.query.clone(),
            pg_key: p.key.clone(),
            pg_conversation: p.conversation.clone(),
            pg_tenant: p.tenant.clone(),
            pg_tenant_name: p.tenant_name.clone(),
            pg_created: p.created.clone(),
            pg_order: p.order.clone(),
            pg_updated: p.updated.clone(),
            pg_deleted: p.deleted.clone(),
            pg_settle_secs: p.settle_secs,
            pg_clock: p.clock.clone(),
        },
    };
    let args = MsglogBackupArgs {
        dir: m.dir.clone(),
        name: m.name.clone(),
        full: false,
        parent: ParentArgs::default(),
        record: RecordArgs {
            host: m.host.clone(),
            tags: m.tags.clone(),
        },
        dumps: m.dumps.clone(),
        exclude: m.exclude.clone(),
        layout: LayoutArgs {
            patterns: m.layout.clone(),
            seq_pointer: m.seq_pointer.clone(),
            ts_pointer: m.ts_pointer.clone(),
            ts_format: m.ts_format.clone(),
            conversation_pointer: m.conversation_pointer.clone(),
            tenant_pointer: m.tenant_pointer.clone(),
            default_tenant: m.default_tenant.clone(),
            strict: m.strict,
        },
        postgres,
    };
    if args.dir.is_none() && args.postgres.postgres.is_none() {
        bail!("[msglog] needs dir, or a [msglog.postgres] table");
    }
    if args.postgres.postgres.is_some() {
        if args.layout.is_set() {
            bail!(
                "[msglog]: the layout keys describe log files; leave them out with [msglog.postgres]"
            );
        }
        super::msglog_sources::source_options(&args.postgres).context("[msglog.postgres]")?;
    } else if args.layout.is_set() {
        super::msglog_sources::layout(&args.layout).context("[msglog] layout")?;
    }
    Ok((args, m.full_every_days))
}

/// The global options with the plan's settings in place of the command line's.
fn plan_global(g: &Global, plan: &Plan) -> Global {
    let mut g = g.clone();
    let set = |slot: &mut Option<PathBuf>, v: &Option<PathBuf>| {
        if v.is_some() {
            slot.clone_from(v);
        }
    };
    if plan.repository.is_some() {
        g.repo.clone_from(&plan.repository);
    }
    if let Some(options) = &plan.repository_options {
        g.options.clone_from(options);
    }
    set(&mut g.cache_dir, &plan.cache_dir);
    set(&mut g.metrics_file, &plan.metrics_file);
    if plan.key_file.is_some() || plan.password_file.is_some() || plan.password_command.is_some() {
        g.key_file.clone_from(&plan.key_file);
        g.password_file.clone_from(&plan.password_file);
        g.password_command.clone_from(&plan.password_command);
    }
    if plan.on_success.is_some() {
        g.on_success.clone_from(&plan.on_success);
    }
    if plan.on_failure.is_some() {
        g.on_failure.clone_from(&plan.on_failure);
    }
    g
}

/// The state file: the plan's own, or one per plan path under the cache directory.
fn state_path(g: &Global, plan: &Plan, plan_path: &Path) -> PathBuf {
    if let Some(p) = &plan.state_file {
        return p.clone();
    }
    let base = g.cache_dir.clone().unwrap_or_else(|| {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("chatvault")
    });
    let canonical = std::fs::canonicalize(plan_path).unwrap_or_else(|_| plan_path.to_owned());
    let hash = blake3::hash(canonical.as_os_str().as_encoded_bytes()).to_hex();
    let stem = plan_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".into());
    base.join("plans")
        .join(format!("{stem}-{}.json", &hash[..16]))
}

fn read_state(path: &Path) -> Result<State> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("reading the plan state {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("reading the plan state {}", path.display())),
    }
}

fn write_state(path: &Path, s: &State) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    super::drill::write_atomically(path, &serde_json::to_vec_pretty(s)?)
        .with_context(|| format!("writing the plan state {}", path.display()))
}

fn due(last: Option<i64>, every_days: u32, now: i64) -> bool {
    last.is_none_or(|t| now - t >= i64::from(every_days) * DAY_MS)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs one step through its command, silently; returns its record.
fn step(name: &str, out: Output, f: impl FnOnce(Output) -> Result<Outcome>) -> Record {
    let started = SystemTime::now();
    let clock = Instant::now();
    let _ = output::take_report();
    let quiet = out.silenced();
    let code = match f(quiet) {
        Ok(o) => o.code(),
        Err(e) => {
            let (code, kind) = crate::exit::classify(&e);
            let message = e
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("chatvault: {name}: {}", output::printable(&message));
            quiet.json(&json!({"error": {"code": code, "kind": kind, "message": message}}));
            code
        }
    };
    let record = Record {
        command: name.to_owned(),
        exit_code: code,
        started,
        duration: clock.elapsed(),
        report: output::take_report().unwrap_or_else(|| json!({})),
        hook_ok: None,
    };
    out.line(format!(
        "{name}: {} in {:.1} s{}",
        if record.success() {
            "ok".to_owned()
        } else {
            format!("FAILED (exit code {code})")
        },
        record.duration.as_secs_f64(),
        summary(&record.report)
    ));
    record
}

/// A few words about a step's report for the human line.
fn summary(r: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(s) = r.get("snapshot").and_then(Value::as_str) {
        parts.push(format!("snapshot {}", &s[..s.len().min(8)]));
    }
    if let Some(Value::Array(p)) = r.get("problems")
        && !p.is_empty()
    {
        parts.push(format!("{} problems", p.len()));
    }
    if let Some(Value::Array(removed)) = r.get("removed") {
        parts.push(format!("{} snapshots removed", removed.len()));
    }
    if let Some(m) = r.pointer("/error/message").and_then(Value::as_str) {
        parts.push(m.to_owned());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

pub fn run(g: &Global, out: Output, a: &RunArgs) -> Result<Outcome> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let plan = load(&a.plan)?;
    let mut steps = steps(&plan)?;
    steps.keep_only(&a.only);
    let g = plan_global(g, &plan);
    let state_file = state_path(&g, &plan, &a.plan);
    let mut state = read_state(&state_file)?;
    let now = now_ms();
    let full = steps
        .backup
        .as_ref()
        .is_some_and(|(_, every)| every.is_some_and(|d| due(state.last_full_unix_ms, d, now)));
    let msglog_full = steps.msglog.as_ref().is_some_and(|(_, every)| {
        every.is_some_and(|d| due(state.last_msglog_full_unix_ms, d, now))
    });
    let prune_due = steps
        .prune
        .as_ref()
        .is_some_and(|(_, every)| due(state.last_prune_unix_ms, *every, now));
    let drill_due = steps
        .drill
        .as_ref()
        .is_some_and(|(_, every)| due(state.last_drill_unix_ms, *every, now));
    if a.dry_run {
        return Ok(dry_run(
            out,
            &steps,
            (full, msglog_full),
            prune_due,
            drill_due,
            &state_file,
        ));
    }
    let mut records = Vec::new();
    if let Some((args, _)) = &steps.backup {
        let args = BackupArgs {
            full,
            ..args.clone()
        };
        let r = step("backup", out, |o| super::backup::run(&g, o, &args));
        if r.success() && full {
            state.last_full_unix_ms = Some(now);
        }
        records.push(r);
    }
    if let Some((args, _)) = &steps.msglog {
        let args = MsglogBackupArgs {
            full: msglog_full,
            ..args.clone()
        };
        let command = MsglogCommand::Backup(Box::new(args));
        let r = step("msglog-backup", out, |o| {
            super::msglog::run(&g, o, &command)
        });
        if r.success() && msglog_full {
            state.last_msglog_full_unix_ms = Some(now);
        }
        records.push(r);
    }
    if let Some(args) = &steps.forget {
        records.push(step("forget", out, |o| super::forget::run(&g, o, args)));
    }
    if let (Some((args, _)), true) = (&steps.prune, prune_due) {
        let r = step("prune", out, |o| super::prune::run(&g, o, args));
        if r.success() {
            state.last_prune_unix_ms = Some(now);
        }
        records.push(r);
    }
    if let Some(args) = &steps.check {
        records.push(step("check", out, |o| super::check::check(&g, o, args)));
    }
    if let (Some((args, _)), true) = (&steps.drill, drill_due) {
        let r = step("drill", out, |o| super::drill::run(&g, o, args));
        if r.success() {
            state.last_drill_unix_ms = Some(now);
        }
        records.push(r);
    }
    let state_error = write_state(&state_file, &state).err();
    let code = records
        .iter()
        .map(|r| r.exit_code)
        .find(|c| *c != 0)
        .unwrap_or(if state_error.is_some() { 1 } else { 0 });
    let doc = json!({
        "plan": a.plan.display().to_string(),
        "success": code == 0,
        "full_backup": full,
        "full_msglog_backup": msglog_full,
        "prune_due": prune_due,
        "drill_due": drill_due,
        "state_file": state_file.display().to_string(),
        "state_error": state_error.as_ref().map(|e| format!("{e:#}")),
        "steps": records.iter().map(|r| json!({
            "command": r.command,
            "exit_code": r.exit_code,
            "duration_ms": r.duration.as_millis() as u64,
            "report": r.report,
        })).collect::<Vec<_>>(),
        // The drill's figures at the top, where hooks look for them.
        "drill": records.iter().find(|r| r.command == "drill").map(|r| r.report.clone()),
        "problems": records.iter().filter(|r| !r.success()).map(|r| json!({
            "step": r.command, "exit_code": r.exit_code,
        })).collect::<Vec<_>>(),
    });
    if let Some(e) = &state_error {
        eprintln!("chatvault: {}", output::printable(&format!("{e:#}")));
    }
    out.json(&doc);
    let mut run_record = Record {
        command: "run".into(),
        exit_code: code,
        started,
        duration: clock.elapsed(),
        report: doc,
        hook_ok: None,
    };
    monitor::run_hook(&g, &mut run_record);
    records.push(run_record);
    monitor::finish_metrics(&g, &records);
    Ok(match code {
        0 => Outcome::Complete,
        3 => Outcome::Partial,
        13 => Outcome::Corrupt,
        _ => Outcome::Failed,
    })
}

fn dry_run(
    out: Output,
    steps: &Steps,
    (full, msglog_full): (bool, bool),
    prune_due: bool,
    drill_due: bool,
    state: &Path,
) -> Outcome {
    let mut list = Vec::new();
    if steps.backup.is_some() {
        list.push(if full {
            "backup (full)"
        } else {
            "backup (incremental)"
        });
    }
    if steps.msglog.is_some() {
        list.push(if msglog_full {
            "msglog backup (full)"
        } else {
            "msglog backup (incremental)"
        });
    }
    if steps.forget.is_some() {
        list.push("forget");
    }
    if steps.prune.is_some() {
        list.push(if prune_due {
            "prune"
        } else {
            "prune (not due)"
        });
    }
    if steps.check.is_some() {
        list.push("check");
    }
    if steps.drill.is_some() {
        list.push(if drill_due {
            "drill"
        } else {
            "drill (not due)"
        });
    }
    out.line(format!("would run: {}", list.join(", ")));
    out.line(format!("state: {}", state.display()));
    out.json(&json!({"steps": list, "state_file": state.display().to_string()}));
    Outcome::Complete
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_plan_parses_and_unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.toml");
        std::fs::write(
            &p,
            r#"
repository = "/srv/backup/chatvault"
key_file = "/etc/chatvault/node.key"
metrics_file = "/var/lib/node_exporter/textfile"
[backup]
paths = ["/srv/chat/media"]
tags = ["files"]
full_every_days = 7
[forget]
keep_daily = 14
keep_within = "30d"
time_zone = "Europe/Berlin"
[prune]
every_days = 7
max_unused = 5
max_repack = "2G"
[check]
read_data_subset = "10%"
[drill]
every_days = 7
"#,
        )
        .unwrap();
        let plan = load(&p).unwrap();
        let s = steps(&plan).unwrap();
        assert_eq!(s.backup.as_ref().unwrap().1, Some(7));
        assert_eq!(s.forget.as_ref().unwrap().keep_daily, 14);
        assert!(s.forget.as_ref().unwrap().keep_within.is_some());
        let (prune, every) = s.prune.as_ref().unwrap();
        assert_eq!(*every, 7);
        assert!((prune.flags.max_unused - 5.0).abs() < f64::EPSILON);
        assert_eq!(prune.flags.max_repack, Some(2 << 30));
        assert!(!prune.dry_run);
        assert_eq!(
            s.check.unwrap().read_data_subset,
            Some(chatvault_core::DataSubset::Percent(10.0))
        );
        let (drill, every) = s.drill.unwrap();
        assert!(drill.verify_only);
        assert_eq!(every, 7);

        std::fs::write(&p, "[forget]\nkeep_dialy = 3\n").unwrap();
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(e.contains("keep_dialy"), "{e}");
        // A percentage is a number; a misspelt key or an impossible value is refused.
        std::fs::write(&p, "[prune]\nmax_unused = \"5%\"\n").unwrap();
        assert!(load(&p).is_err());
        std::fs::write(&p, "[prune]\nmax_unusd = 5\n").unwrap();
        assert!(format!("{:#}", load(&p).unwrap_err()).contains("max_unusd"));
        std::fs::write(&p, "[prune]\nmax_unused = 150\n").unwrap();
        assert!(steps(&load(&p).unwrap()).is_err());
        std::fs::write(&p, "[prune]\nmax_repack = \"lots\"\n").unwrap();
        let e = format!("{:#}", steps(&load(&p).unwrap()).err().unwrap());
        assert!(e.contains("max_repack"), "{e}");
        // Without every_days, the prune runs every time.
        std::fs::write(&p, "[prune]\n").unwrap();
        assert_eq!(steps(&load(&p).unwrap()).unwrap().prune.unwrap().1, 0);
        std::fs::write(&p, "[check]\nread_data_subset = \"abc\"\n").unwrap();
        assert!(steps(&load(&p).unwrap()).is_err());
    }

    #[test]
    fn a_msglog_table_parses_into_the_commands_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plan.toml");
        std::fs::write(
            &p,
            r#"
[msglog]
dir = "/srv/chat"
layout = ["{tenant}/conv/{conversation}/{month}.jsonl"]
ts_format = "rfc3339"
strict = true
full_every_days = 7
"#,
        )
        .unwrap();
        let s = steps(&load(&p).unwrap()).unwrap();
        let (args, every) = s.msglog.unwrap();
        assert_eq!(every, Some(7));
        assert_eq!(
            args.layout.patterns,
            ["{tenant}/conv/{conversation}/{month}.jsonl"]
        );
        assert!(args.layout.strict && args.layout.is_set());
        std::fs::write(
            &p,
            r#"
[msglog]
name = "mattermost"
[msglog.postgres]
url = "postgresql://chatvault_ro@localhost/mattermost"
password_file = "/etc/chatvault/pg.pass"
preset = "mattermost"
"#,
        )
        .unwrap();
        let s = steps(&load(&p).unwrap()).unwrap();
        let (args, _) = s.msglog.unwrap();
        assert_eq!(args.postgres.pg_preset.as_deref(), Some("mattermost"));
        assert!(args.dir.is_none());
        // The secret never shows in the arguments' Debug output.
        std::fs::write(
            &p,
            "[msglog]\n[msglog.postgres]\nurl = \"postgresql://u:hunter2@h/db\"\npreset = \"mattermost\"\n",
        )
        .unwrap();
        let plan = load(&p).unwrap();
        assert!(!format!("{plan:?}").contains("hunter2"));
        let s = steps(&plan).unwrap();
        assert!(!format!("{:?}", s.msglog.unwrap().0).contains("hunter2"));
        // Bad layouts, bad formats, unknown presets and keys fail before anything runs.
        for (bad, says) in [
            (
                "[msglog]\ndir = \"/x\"\nlayout = [\"logs/{tenant}/*.jsonl\"]\n",
                "conversation",
            ),
            (
                "[msglog]\ndir = \"/x\"\nts_format = \"minutes\"\n",
                "minutes",
            ),
            (
                "[msglog]\n[msglog.postgres]\nurl = \"postgresql://h/db\"\npreset = \"slack\"\n",
                "slack",
            ),
            ("[msglog]\n", "needs dir"),
            ("[msglog]\ndir = \"/x\"\nlayuot = []\n", "layuot"),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = match load(&p) {
                Err(e) => format!("{e:#}"),
                Ok(plan) => format!("{:#}", steps(&plan).err().expect(bad)),
            };
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn steps_fall_due_after_their_period() {
        assert!(due(None, 7, 0));
        assert!(!due(Some(0), 7, 7 * DAY_MS - 1));
        assert!(due(Some(0), 7, 7 * DAY_MS));
        assert!(due(Some(5), 0, 5));
    }
}
