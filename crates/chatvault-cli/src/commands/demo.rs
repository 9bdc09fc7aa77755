//! `chatvault demo`: the whole job on generated data, end to end, with figures.
//!
//! Generates a chat server's data directory, initialises a local repository, takes a full
//! backup set, advances the server day by day with an incremental set each day, restores
//! one conversation's last two days and the whole server, and checks both against the
//! source byte for byte. Exits 1 if anything restored differs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chatvault_core::{InitOptions, KeySource, LocalBackend, Repository};
use chatvault_msglog::{BackupOptions, Selection, SetReader, View};
use chatvault_workload::ServerOptions;
use serde_json::json;

use crate::args::{DemoArgs, Global};
use crate::exit::Outcome;
use crate::output::{self, Output};

pub fn run(_g: &Global, out: Output, a: &DemoArgs) -> Result<Outcome> {
    let temp;
    let work = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("{}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("chatvault-demo")
                .tempdir()?;
            temp.path().to_owned()
        }
    };
    let server = work.join("server");
    let repo_dir = work.join("repo");
    for d in [&server, &repo_dir] {
        if d.exists() {
            bail!("{} exists: give --dir an empty directory", d.display());
        }
    }
    let mut steps = Vec::new();
    let mut step = |name: &str, secs: f64, detail: String| {
        out.line(format!("{name:<34} {secs:>7.2} s  {detail}"));
        steps.push(json!({"step": name, "seconds": secs, "detail": detail}));
    };
    out.line(format!("chatvault demo in {}", work.display()));

    let t = Instant::now();
    let w = chatvault_workload::generate(&server, ServerOptions::default(), a.days)?;
    step(
        &format!("generate {} days of chat", a.days),
        t.elapsed().as_secs_f64(),
        format!(
            "{} records, logs {}, {} media files {}",
            w.records,
            output::bytes(w.log_bytes),
            w.media_files,
            output::bytes(w.media_bytes)
        ),
    );

    let t = Instant::now();
    let key = KeySource::passphrase("chatvault demo passphrase");
    let init = InitOptions {
        cache_dir: Some(work.join("cache")),
        ..InitOptions::default()
    };
    let repo = Repository::init(Box::new(LocalBackend::create(&repo_dir)?), &key, init)?;
    step(
        "init repository (Argon2id key slot)",
        t.elapsed().as_secs_f64(),
        repo_dir.display().to_string(),
    );

    let opts = || BackupOptions {
        name: "demo-server".into(),
        host: Some("demo".into()),
        ..BackupOptions::default()
    };
    let mut bytes_in = dir_size(&server)?;
    let t = Instant::now();
    let first = chatvault_msglog::backup_data_dir(&repo, &server, opts())?;
    step(
        "full backup",
        t.elapsed().as_secs_f64(),
        format!(
            "{} read, {} stored (compressed)",
            output::bytes(bytes_in),
            output::bytes(first.bytes_stored)
        ),
    );
    let mut last = first;
    for day in 0..a.incrementals {
        let w = chatvault_workload::advance(&server, 1)?;
        bytes_in += dir_size(&server)?;
        let t = Instant::now();
        let r = chatvault_msglog::backup_data_dir(&repo, &server, opts())?;
        step(
            &format!("incremental backup, day +{}", day + 1),
            t.elapsed().as_secs_f64(),
            format!(
                "logs +{} appended, {} written; media +{}; {} stored",
                output::bytes(r.logs.bytes_appended),
                output::bytes(r.logs.bytes_written),
                output::bytes(w.media_bytes),
                output::bytes(r.bytes_stored)
            ),
        );
        last = r;
    }
    let stored = dir_size(&repo_dir)?;

    // One conversation, its last two days, against the source files.
    let set = SetReader::open(&repo, last.snapshot)?;
    let busiest = set
        .streams(&Selection::default())?
        .into_iter()
        .max_by_key(|s| s.records)
        .context("no message logs")?;
    let mut parts = busiest.path.split('/');
    let (tenant, conv) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let newest = busiest.ranges.map_or(0, |r| r.ts_max);
    let from = newest - 2 * 86_400_000;
    let sel = Selection {
        tenant: Some(tenant.clone()),
        conversation: Some(conv.clone()),
        time: Some((from, newest)),
        ..Selection::default()
    };
    let t = Instant::now();
    let mut got = Vec::new();
    let stats = set.export(&sel, View::Raw, &mut got)?;
    let secs = t.elapsed().as_secs_f64();
    let expected = lines_in_range(&server.join("logs").join(&tenant).join(&conv), from, newest)?;
    let conv_ok = got == expected;
    step(
        &format!("restore {tenant}/{conv}, last 2 days"),
        secs,
        format!(
            "{} records, {} of {} segments fetched; equal to source: {}",
            stats.records,
            stats.segments_read,
            stats.segments_total,
            yes(conv_ok)
        ),
    );

    let target = work.join("restored");
    let t = Instant::now();
    let r = chatvault_msglog::restore(&repo, last.snapshot, &target)?;
    let secs = t.elapsed().as_secs_f64();
    let all_ok = r.problems.is_empty() && same_tree(&server, &target)?;
    step(
        "restore whole server",
        secs,
        format!(
            "{} files + {} log streams; equal to source: {}",
            r.files,
            r.logs.streams,
            yes(all_ok)
        ),
    );

    let ratio = bytes_in as f64 / stored.max(1) as f64;
    out.line(String::new());
    out.line(format!(
        "{} snapshots of {} in all ({} of data each day on average); repository {} on disk: {:.1}x smaller",
        a.incrementals + 1,
        output::bytes(bytes_in),
        output::bytes(bytes_in / u64::from(a.incrementals + 1)),
        output::bytes(stored),
        ratio
    ));
    out.line(format!("restored = original: {}", yes(conv_ok && all_ok)));
    out.json(&json!({
        "work_dir": work.display().to_string(),
        "snapshots": a.incrementals + 1,
        "bytes_in": bytes_in,
        "repository_bytes": stored,
        "dedup_ratio": ratio,
        "restored_equal": conv_ok && all_ok,
        "steps": steps,
    }));
    if !(conv_ok && all_ok) {
        bail!("restored data differs from the source");
    }
    Ok(Outcome::Complete)
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

/// Total size of the files below `dir`.
fn dir_size(dir: &Path) -> Result<u64> {
    Ok(files(dir)?.values().map(|p| p.1).sum())
}

/// Relative path → (absolute path, size) of every file below `root`.
fn files(root: &Path) -> Result<BTreeMap<PathBuf, (PathBuf, u64)>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let e = e?;
            let md = e.metadata()?;
            if md.is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root)?.to_owned();
                out.insert(rel, (e.path(), md.len()));
            }
        }
    }
    Ok(out)
}

fn same_tree(a: &Path, b: &Path) -> Result<bool> {
    let (fa, fb) = (files(a)?, files(b)?);
    if fa.keys().ne(fb.keys()) {
        return Ok(false);
    }
    for (rel, (pa, _)) in &fa {
        if std::fs::read(pa)? != std::fs::read(&fb[rel].0)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The JSONL lines below `dir` whose `ts` is in `from..=to`, in file order.
fn lines_in_range(dir: &Path, from: i64, to: i64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (_, (path, _)) in files(dir)? {
        let data = std::fs::read(&path)?;
        for line in data.split_inclusive(|&b| b == b'\n') {
            let v: serde_json::Value = serde_json::from_slice(line)?;
            if v["ts"].as_i64().is_some_and(|ts| (from..=to).contains(&ts)) {
                out.extend_from_slice(line);
            }
        }
    }
    Ok(out)
}
