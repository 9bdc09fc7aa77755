//! Telling monitoring what a command did: a Prometheus text-format metrics file for
//! node_exporter's textfile collector (`--metrics-file`), and hook commands
//! (`--on-success`, `--on-failure`) that get the report in `CHATVAULT_*` variables and the
//! JSON document on standard input.
//!
//! Invariants:
//! - The metrics file is replaced atomically (a temporary file in the same directory,
//!   fsync, rename), so the collector never reads half a file.
//! - One file can serve many commands: a command replaces only the samples labelled with
//!   its own `command`, under an exclusive lock, and a failed run keeps its command's last
//!   success time. A directory instead gets one file per command (`chatvault-<command>.prom`).
//! - A hook's failure is reported on stderr and in the metrics, never changes the
//!   command's exit code, and a hook never sees the passphrase variables
//!   (`CHATVAULT_PASSWORD`, and `CHATVAULT_FROM_PASSWORD` of `copy`'s source).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::args::Global;

/// The repository a command ran against, as far as the global options name a valid one.
#[derive(Debug)]
pub struct Store {
    location: chatvault_backend::Location,
    options: chatvault_backend::StoreOptions,
}

fn repo_store(g: &Global) -> Option<Store> {
    Some(Store {
        location: crate::session::location(g).ok()?,
        options: chatvault_backend::StoreOptions::parse(&g.options).ok()?,
    })
}

/// What one command (or one step of a plan) did, for metrics and hooks.
#[derive(Debug, Clone)]
pub struct Record {
    /// The command's name (`backup`, `check`, …): the `command` label.
    pub command: String,
    /// The exit code the command ended with.
    pub exit_code: u8,
    /// When it started.
    pub started: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Its JSON document (`{}` when it printed none).
    pub report: Value,
    /// Whether a hook ran for it and succeeded (`None`: no hook ran; filled in by
    /// [`run_hook`]).
    pub hook_ok: Option<bool>,
}

impl Record {
    /// Whether the command succeeded (exit code 0).
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The problems the report lists, or 1 for an error without a list.
    fn errors(&self) -> u64 {
        match self.report.get("problems") {
            Some(Value::Array(a)) => a.len() as u64,
            _ => u64::from(self.report.get("error").is_some() || !self.success()),
        }
    }
}

/// Help text for every metric name, in output order. A metric not listed here is never
/// written; one read back from a file written by another version keeps a generic help.
const METRICS: &[(&str, &str)] = &[
    (
        "chatvault_last_run_timestamp_seconds",
        "When the command last finished (Unix time).",
    ),
    (
        "chatvault_last_success_timestamp_seconds",
        "When the command last finished successfully (Unix time); kept across failed runs.",
    ),
    (
        "chatvault_last_exit_code",
        "Exit code of the last run (0 success, 3 partial, 13 corrupt; see the runbook).",
    ),
    ("chatvault_success", "1 if the last run succeeded, else 0."),
    ("chatvault_duration_seconds", "Wall time of the last run."),
    (
        "chatvault_errors",
        "Problems the last run reported (unreadable files, damaged objects, failed entries).",
    ),
    (
        "chatvault_bytes_read",
        "Bytes the last run read (source files for backup, repository data for check).",
    ),
    (
        "chatvault_bytes_added",
        "Bytes of new data the last backup added (before compression).",
    ),
    (
        "chatvault_dedup_ratio",
        "Logical bytes of the last backup divided by the bytes it stored.",
    ),
    (
        "chatvault_repository_snapshots",
        "Snapshot objects in the repository after the last run.",
    ),
    (
        "chatvault_repository_size_bytes",
        "Total size of the repository's objects after the last run.",
    ),
    (
        "chatvault_drill_success",
        "1 if the last restore drill restored and verified everything, else 0.",
    ),
    (
        "chatvault_drill_rto_seconds",
        "Time the last restore drill took (the recovery time achieved).",
    ),
    (
        "chatvault_drill_rpo_seconds",
        "Age at drill time of the oldest snapshot the last drill restored: the worst recovery point over its groups.",
    ),
    (
        "chatvault_drill_bytes",
        "Bytes the last restore drill restored or verified.",
    ),
    (
        "chatvault_snapshots_removed",
        "Snapshot records the last forget removed.",
    ),
    (
        "chatvault_prune_bytes_freed",
        "Bytes the last prune freed (packs deleted, minus what repacking wrote).",
    ),
    (
        "chatvault_prune_packs_deleted",
        "Packs the last prune deleted (including those it repacked).",
    ),
    (
        "chatvault_hook_success",
        "1 if the last run's hook succeeded, 0 if it failed (absent without a hook).",
    ),
];

/// One sample: a metric name, its labels (sorted) and its value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples describing one run.
fn samples(r: &Record, host: &str, repo: Option<&Store>) -> Vec<Sample> {
    let labels: BTreeMap<String, String> = [
        ("command".to_owned(), r.command.clone()),
        ("host".to_owned(), host.to_owned()),
    ]
    .into();
    let finished = unix_secs(r.started + r.duration);
    let mut out = Vec::new();
    let mut push = |name: &str, value: f64| {
        out.push(Sample {
            name: name.to_owned(),
            labels: labels.clone(),
            value,
        });
    };
    push("chatvault_last_run_timestamp_seconds", finished);
    if r.success() {
        push("chatvault_last_success_timestamp_seconds", finished);
    }
    push("chatvault_last_exit_code", f64::from(r.exit_code));
    push("chatvault_success", f64::from(u8::from(r.success())));
    push("chatvault_duration_seconds", r.duration.as_secs_f64());
    push("chatvault_errors", r.errors() as f64);
    let num = |k: &str| r.report.get(k).and_then(Value::as_f64);
    if let Some(v) = num("bytes_read") {
        push("chatvault_bytes_read", v);
    }
    if let Some(v) = num("bytes_added") {
        push("chatvault_bytes_added", v);
    }
    if let (Some(total), Some(stored)) = (num("bytes_total"), num("bytes_stored"))
        && stored > 0.0
    {
        push("chatvault_dedup_ratio", total / stored);
    }
    if r.command == "drill" {
        let drill = r.report.get("drill").unwrap_or(&r.report);
        let success = drill.get("success").and_then(Value::as_bool) == Some(true);
        push("chatvault_drill_success", f64::from(u8::from(success)));
        if let Some(v) = drill.get("rto_seconds").and_then(Value::as_f64) {
            push("chatvault_drill_rto_seconds", v);
        }
        if let Some(v) = drill.get("rpo_seconds").and_then(Value::as_f64) {
            push("chatvault_drill_rpo_seconds", v);
        }
        if let Some(v) = drill.get("bytes").and_then(Value::as_f64) {
            push("chatvault_drill_bytes", v);
        }
    }
    if let (true, Some(Value::Array(removed))) = (r.command == "forget", r.report.get("removed")) {
        push("chatvault_snapshots_removed", removed.len() as f64);
    }
    // `prune`'s own report, or the prune half of `forget --prune`.
    let prune = match r.report.get("prune") {
        Some(p) if p.is_object() => Some(p),
        _ if r.command == "prune" => Some(&r.report),
        _ => None,
    };
    if let Some(p) = prune.filter(|p| p.get("dry_run") == Some(&Value::Bool(false))) {
        let field = |k: &str| p.get(k).and_then(Value::as_f64);
        if let (Some(freed), Some(deleted)) = (field("bytes_freed"), field("packs_deleted")) {
            push("chatvault_prune_bytes_freed", freed);
            push("chatvault_prune_packs_deleted", deleted);
        }
    }
    if let Some(ok) = r.hook_ok {
        push("chatvault_hook_success", f64::from(u8::from(ok)));
    }
    if let Some((snapshots, size)) = repo.and_then(repository_figures) {
        push("chatvault_repository_snapshots", snapshots as f64);
        push("chatvault_repository_size_bytes", size as f64);
    }
    out
}

/// Snapshot count and total object size, listed without any key. `None` when the
/// location holds no repository (a failed `init`, a missing mount, an unreachable store).
fn repository_figures(store: &Store) -> Option<(u64, u64)> {
    let backend = chatvault_backend::connect(
        &store.location,
        &store.options,
        chatvault_backend::Mode::Open,
    )
    .ok()?;
    backend.stat("config").ok()?;
    let mut size = 0;
    let mut snapshots = 0;
    for prefix in ["config", "keys/", "data/", "index/", "snapshots/"] {
        let listed = backend.list(prefix).ok()?;
        if prefix == "snapshots/" {
            snapshots = listed.len() as u64;
        }
        size += listed.iter().map(|o| o.size).sum::<u64>();
    }
    Some((snapshots, size))
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// Writes the records' samples into the metrics file or directory `path`.
pub fn write_metrics(path: &Path, records: &[Record], repo: Option<&Store>) -> Result<()> {
    let host = chatvault_fs::hostname();
    if path.is_dir() {
        for r in records {
            let file = path.join(format!("chatvault-{}.prom", r.command));
            merge_into(&file, std::slice::from_ref(r), &host, repo)?;
        }
        Ok(())
    } else {
        merge_into(path, records, &host, repo)
    }
}

/// Replaces the records' commands' samples in `file`, keeping every other command's.
fn merge_into(file: &Path, records: &[Record], host: &str, repo: Option<&Store>) -> Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("the metrics file needs a file name")?;
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let old = match std::fs::read_to_string(file) {
        Ok(s) => parse(&s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let mut all: Vec<Sample> = Vec::new();
    for r in records {
        let mine = |s: &Sample| {
            s.labels.get("command") == Some(&r.command)
                && s.labels.get("host").map(String::as_str) == Some(host)
        };
        let mut new = samples(r, host, repo);
        if !r.success() {
            // The last success stays what it was: a stale-backup alert keys on it.
            new.extend(
                old.iter()
                    .filter(|s| s.name == "chatvault_last_success_timestamp_seconds" && mine(s))
                    .cloned(),
            );
        }
        all.retain(|s| !mine(s));
        all.extend(new);
    }
    for s in old {
        let replaced = records.iter().any(|r| {
            s.labels.get("command") == Some(&r.command)
                && s.labels.get("host").map(String::as_str) == Some(host)
        });
        if !replaced {
            all.push(s);
        }
    }
    let text = render(all);
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", file.display()));
    }
    Ok(())
}

/// The text format: samples grouped by metric, each group under its HELP and TYPE lines.
fn render(mut samples: Vec<Sample>) -> String {
    let order = |name: &str| {
        METRICS
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or(METRICS.len())
    };
    samples.sort_by(|a, b| {
        (order(&a.name), &a.name, &a.labels).cmp(&(order(&b.name), &b.name, &b.labels))
    });
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for s in &samples {
        if current != Some(s.name.as_str()) {
            let help = METRICS
                .iter()
                .find(|(n, _)| *n == s.name)
                .map_or("chatvault metric.", |(_, h)| h);
            let _ = writeln!(out, "# HELP {} {}", s.name, help);
            let _ = writeln!(out, "# TYPE {} gauge", s.name);
            current = Some(&s.name);
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(out, "{}{{{}}} {}", s.name, labels.join(","), value(s.value));
    }
    out
}

fn value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label value escaping of the text format: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads back the samples of a file this module wrote; lines it cannot read (comments,
/// another tool's lines) are dropped.
fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || !line.starts_with("chatvault_") {
        return None;
    }
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let name = line[..open].to_owned();
    let value: f64 = line[close + 1..].trim().parse().ok()?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[open + 1..close];
    while !rest.is_empty() {
        let eq = rest.find("=\"")?;
        let key = rest[..eq].to_owned();
        let body = &rest[eq + 2..];
        // The closing quote is the first one not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match (c, escaped) {
                ('\\', false) => escaped = true,
                ('"', false) => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        labels.insert(key, unescape(&body[..end]));
        rest = body[end + 1..].trim_start_matches(',');
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// After a command: runs its hook, then writes its metrics (which record the hook's
/// outcome). Failures of either are reported on stderr and leave the exit code alone.
pub fn finish(g: &Global, record: &mut Record) {
    run_hook(g, record);
    finish_metrics(g, std::slice::from_ref(record));
}

/// Writes the metrics of several records (a plan's steps), if a metrics file is given.
pub fn finish_metrics(g: &Global, records: &[Record]) {
    if let Some(path) = &g.metrics_file
        && let Err(e) = write_metrics(path, records, repo_store(g).as_ref())
    {
        eprintln!(
            "chatvault: could not write the metrics file: {}",
            crate::output::printable(&format!("{e:#}"))
        );
    }
}

/// How long a hook may run before it is stopped.
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the success or failure hook for a record, if one is given. Its outcome is
/// recorded in `r.hook_ok`; a failure is reported on stderr, never returned.
pub fn run_hook(g: &Global, r: &mut Record) {
    let cmd = if r.success() {
        g.on_success.as_deref()
    } else {
        g.on_failure.as_deref()
    };
    let Some(cmd) = cmd else {
        return;
    };
    let result = hook(g, cmd, r);
    if let Err(e) = &result {
        eprintln!(
            "chatvault: the {} hook failed: {}",
            status_word(r),
            crate::output::printable(&format!("{e:#}"))
        );
    }
    r.hook_ok = Some(result.is_ok());
}

fn status_word(r: &Record) -> &'static str {
    if r.success() { "success" } else { "failure" }
}

/// The environment a hook gets (besides the inherited one, less the passphrase).
fn hook_env(g: &Global, r: &Record) -> Vec<(String, String)> {
    let mut env = vec![
        ("CHATVAULT_COMMAND", r.command.clone()),
        ("CHATVAULT_STATUS", status_word(r).to_owned()),
        ("CHATVAULT_EXIT_CODE", r.exit_code.to_string()),
        ("CHATVAULT_STARTED", format!("{:.0}", unix_secs(r.started))),
        (
            "CHATVAULT_DURATION_SECONDS",
            format!("{:.3}", r.duration.as_secs_f64()),
        ),
        ("CHATVAULT_ERRORS", r.errors().to_string()),
        ("CHATVAULT_HOST", chatvault_fs::hostname()),
    ];
    if let Some(repo) = repo_store(g) {
        env.push(("CHATVAULT_REPOSITORY", repo.location.to_string()));
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    for (key, var) in [
        ("snapshot", "CHATVAULT_SNAPSHOT"),
        ("bytes_read", "CHATVAULT_BYTES_READ"),
        ("bytes_added", "CHATVAULT_BYTES_ADDED"),
    ] {
        if let Some(v) = r.report.get(key).and_then(text) {
            env.push((var, v));
        }
    }
    if let Some(m) = r
        .report
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
    {
        env.push(("CHATVAULT_ERROR", m.to_owned()));
    }
    let drill = r.report.get("drill").unwrap_or(&r.report);
    if r.command == "drill" || r.report.get("drill").is_some() {
        for (key, var) in [
            ("success", "CHATVAULT_DRILL_SUCCESS"),
            ("rto_seconds", "CHATVAULT_DRILL_RTO_SECONDS"),
            ("rpo_seconds", "CHATVAULT_DRILL_RPO_SECONDS"),
        ] {
            if let Some(v) = drill.get(key).and_then(text) {
                env.push((var, v));
            }
        }
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn hook(g: &Global, cmd: &str, r: &Record) -> Result<()> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env_remove("CHATVAULT_PASSWORD")
        .env_remove("CHATVAULT_FROM_PASSWORD")
        .envs(hook_env(g, r))
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the hook")?;
    let doc = serde_json::to_vec(&r.report)?;
    if let Some(mut stdin) = child.stdin.take() {
        // The hook may not read its input: a broken pipe is not a failure.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&doc);
        });
    }
    let deadline = Instant::now() + HOOK_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the hook")? {
            return if status.success() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("exited with {status}"))
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("stopped after {} s", HOOK_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a whole JSON document from a reader (used by tests of hooks).
#[cfg(test)]
fn read_json(mut r: impl std::io::Read) -> Value {
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    serde_json::from_str(&s).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(command: &str, exit_code: u8, report: Value) -> Record {
        Record {
            command: command.into(),
            exit_code,
            started: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_millis(1500),
            report,
            hook_ok: None,
        }
    }

    #[test]
    fn samples_round_trip_through_the_text_format() {
        let r = record(
            "backup",
            0,
            serde_json::json!({"bytes_read": 100, "bytes_added": 40, "bytes_total": 100, "bytes_stored": 25, "problems": []}),
        );
        let s = samples(&r, "node \"1\"\\x\n", None);
        let text = render(s.clone());
        let mut back = parse(&text);
        let mut s = s;
        let key = |x: &Sample| (x.name.clone(), x.labels.clone());
        back.sort_by_key(key);
        s.sort_by_key(key);
        assert_eq!(back, s);
        assert!(text.contains(
            "chatvault_dedup_ratio{command=\"backup\",host=\"node \\\"1\\\"\\\\x\\n\"} 4\n"
        ));
        assert_eq!(
            text.matches("# TYPE chatvault_success gauge").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn prune_figures_come_from_prune_and_from_forget_prune_but_not_from_dry_runs() {
        let get = |r: &Record, name: &str| {
            samples(r, "h", None)
                .into_iter()
                .find(|s| s.name == name)
                .map(|s| s.value)
        };
        let figures = |dry_run| serde_json::json!({"dry_run": dry_run, "bytes_freed": 900, "packs_deleted": 3});
        let prune = record("prune", 0, figures(false));
        assert_eq!(get(&prune, "chatvault_prune_bytes_freed"), Some(900.0));
        assert_eq!(get(&prune, "chatvault_prune_packs_deleted"), Some(3.0));
        assert_eq!(
            get(
                &record("prune", 0, figures(true)),
                "chatvault_prune_bytes_freed"
            ),
            None
        );
        let forget = record(
            "forget",
            0,
            serde_json::json!({"removed": ["a", "b"], "prune": figures(false)}),
        );
        assert_eq!(get(&forget, "chatvault_snapshots_removed"), Some(2.0));
        assert_eq!(get(&forget, "chatvault_prune_bytes_freed"), Some(900.0));
        let plain = record(
            "forget",
            0,
            serde_json::json!({"removed": [], "prune": null}),
        );
        assert_eq!(get(&plain, "chatvault_snapshots_removed"), Some(0.0));
        assert_eq!(get(&plain, "chatvault_prune_bytes_freed"), None);
        // unlock's "removed" lists locks, not snapshots.
        let unlock = record("unlock", 0, serde_json::json!({"removed": ["l"]}));
        assert_eq!(get(&unlock, "chatvault_snapshots_removed"), None);
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_other_commands() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chatvault.prom");
        write_metrics(&file, &[record("backup", 0, Value::Null)], None).unwrap();
        write_metrics(&file, &[record("check", 0, Value::Null)], None).unwrap();
        let mut failed = record("backup", 13, serde_json::json!({"problems": [1, 2]}));
        failed.started += Duration::from_secs(86_400);
        write_metrics(&file, &[failed], None).unwrap();
        let back = parse(&std::fs::read_to_string(&file).unwrap());
        let get = |name: &str, cmd: &str| {
            back.iter()
                .find(|s| s.name == name && s.labels["command"] == cmd)
                .map(|s| s.value)
        };
        assert_eq!(
            get("chatvault_last_success_timestamp_seconds", "backup"),
            Some(1_700_000_001.5)
        );
        assert_eq!(
            get("chatvault_last_run_timestamp_seconds", "backup"),
            Some(1_700_086_401.5)
        );
        assert_eq!(get("chatvault_errors", "backup"), Some(2.0));
        assert_eq!(get("chatvault_success", "check"), Some(1.0));
        // No temporary or lock file looks like a metrics file to the collector.
        let proms: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".prom"))
            .collect();
        assert_eq!(proms, ["chatvault.prom"]);
    }

    #[test]
    fn a_directory_gets_one_file_per_command() {
        let dir = tempfile::tempdir().unwrap();
        write_metrics(
            dir.path(),
            &[record(
                "drill",
                0,
                serde_json::json!({"success": true, "rto_seconds": 2.5, "rpo_seconds": 3600}),
            )],
            None,
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("chatvault-drill.prom")).unwrap();
        assert!(text.contains("chatvault_drill_rto_seconds{"), "{text}");
        assert!(text.contains("} 2.5\n"), "{text}");
        assert!(text.contains("chatvault_drill_success{"), "{text}");
    }

    #[test]
    fn hooks_get_the_report_and_cannot_see_the_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("hook.out");
        let g = Global {
            on_success: Some(format!(
                "cat > {0}.json; env | grep -E '^CHATVAULT_(COMMAND|STATUS|PASSWORD)=' | sort > {0}",
                out.display()
            )),
            ..Global::default()
        };
        let mut r = record("backup", 0, serde_json::json!({"snapshot": "ab"}));
        run_hook(&g, &mut r);
        assert_eq!(r.hook_ok, Some(true));
        let env = std::fs::read_to_string(&out).unwrap();
        assert_eq!(env, "CHATVAULT_COMMAND=backup\nCHATVAULT_STATUS=success\n");
        let doc = read_json(std::fs::File::open(out.with_extension("out.json")).unwrap());
        assert_eq!(doc["snapshot"], "ab");
        let g = Global {
            on_failure: Some("exit 7".into()),
            ..Global::default()
        };
        let mut r = record("backup", 13, Value::Null);
        run_hook(&g, &mut r);
        assert_eq!(r.hook_ok, Some(false));
    }
}
