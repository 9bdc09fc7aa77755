//! Compares tail-merge policies on generated chat logs: what each stores over daily runs.
//!
//! ```text
//! cargo run --release -p chatvault-msglog --example tiering -- DAYS [PRESET] SEAL:TAILS...
//! ```
//!
//! Generates day 0 of the workload preset (`bench` by default: the 30-day benchmark's
//! server) in a temporary directory, then advances it a day at a time; after each day
//! every policy (`SEAL` bytes with suffix k/m, or `inf`; `TAILS` the tail count) backs the
//! logs up into its own repository. Prints, per policy, bytes appended, segment bytes
//! written (appended plus merged tails), bytes stored (compressed, trees included) and the
//! segments per stream at the end.
#![allow(clippy::print_stdout)]

use std::path::Path;

use chatvault_core::{InitOptions, KdfParams, KeySource, LocalBackend, Repository};
use chatvault_msglog::{BackupOptions, BackupSession, Selection, SetReader, Tiering};
use chatvault_workload::ServerOptions;

fn parse_size(s: &str) -> usize {
    if s == "inf" {
        return usize::MAX;
    }
    let (n, mul) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1 << 10),
        Some(b'm') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    n.parse::<usize>().expect("a size") * mul
}

struct Policy {
    name: String,
    tiering: Tiering,
    repo: Repository,
    appended: u64,
    written: u64,
    stored: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let days: u32 = args.first().and_then(|d| d.parse().ok()).unwrap_or(30);
    let mut rest = &args[1.min(args.len())..];
    let preset = match rest.first().map(String::as_str) {
        Some("tiny") => {
            rest = &rest[1..];
            ServerOptions::tiny()
        }
        Some("default") => {
            rest = &rest[1..];
            ServerOptions::default()
        }
        Some("bench") => {
            rest = &rest[1..];
            ServerOptions::thirty_day_bench()
        }
        _ => ServerOptions::thirty_day_bench(),
    };
    let specs: Vec<String> = if rest.is_empty() {
        vec!["64k:8".into()]
    } else {
        rest.to_vec()
    };
    let work = tempfile::tempdir()?;
    let server = work.path().join("server");
    chatvault_workload::generate(&server, preset, 1)?;
    let mut policies = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (seal, tails) = spec.split_once(':').expect("SEAL:TAILS");
        let tiering = Tiering {
            seal_bytes: parse_size(seal),
            max_tail: tails.parse()?,
            ..Tiering::default()
        };
        let dir = work.path().join(format!("repo-{i}"));
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(work.path().join(format!("cache-{i}"))),
            ..InitOptions::default()
        };
        let repo = Repository::init(
            Box::new(LocalBackend::create(&dir)?),
            &KeySource::passphrase("tiering"),
            init,
        )?;
        policies.push(Policy {
            name: spec.clone(),
            tiering,
            repo,
            appended: 0,
            written: 0,
            stored: 0,
        });
    }
    for day in 0..=days {
        if day > 0 {
            chatvault_workload::advance(&server, 1)?;
        }
        for p in &mut policies {
            let r = run(&p.repo, &server.join("logs"), p.tiering)?;
            if day > 0 {
                p.appended += r.0;
                p.written += r.1;
                p.stored += r.2;
            }
        }
    }
    println!(
        "{:<12} {:>14} {:>14} {:>8} {:>14} {:>10} {:>10}",
        "policy", "appended", "written", "ampl.", "stored", "seg/stream", "max"
    );
    for p in &policies {
        let set = SetReader::open(&p.repo, latest(&p.repo)?)?;
        let streams = set.streams(&Selection::default())?;
        let segs: u64 = streams.iter().map(|s| s.segments).sum();
        let max = streams.iter().map(|s| s.segments).max().unwrap_or(0);
        println!(
            "{:<12} {:>14} {:>14} {:>8.2} {:>14} {:>10.1} {:>10}",
            p.name,
            p.appended,
            p.written,
            p.written as f64 / p.appended.max(1) as f64,
            p.stored,
            segs as f64 / streams.len().max(1) as f64,
            max
        );
    }
    Ok(())
}

/// One daily run: (appended, written, stored).
fn run(
    repo: &Repository,
    logs: &Path,
    tiering: Tiering,
) -> Result<(u64, u64, u64), Box<dyn std::error::Error>> {
    let opts = BackupOptions {
        name: "logs".into(),
        host: Some("bench".into()),
        tiering,
        ..BackupOptions::default()
    };
    let mut s = BackupSession::start(repo, opts)?;
    s.backup_logs_dir(logs)?;
    let r = s.commit()?;
    Ok((r.logs.bytes_appended, r.logs.bytes_written, r.bytes_stored))
}

fn latest(repo: &Repository) -> Result<chatvault_core::SnapshotId, Box<dyn std::error::Error>> {
    Ok(chatvault_msglog::snapshot_at(repo, None, None, i64::MAX)?.id)
}
