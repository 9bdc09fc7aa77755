//! Writes a synthetic chat-server data directory (message logs and media), or continues
//! one, and reports size and speed.
//!
//! Usage (from the workspace root):
//! - `cargo run --release -p chatvault-workload --example write_server -- OUT DAYS [SEED] [PRESET]`
//!   writes days `0..DAYS` into `OUT`; `PRESET` is `tiny`, `default` or `bench` (the
//!   30-day benchmark server, about 2.5 GB for 30 days); by default `tiny`.
//! - `… --example write_server -- --advance OUT DAYS` appends `DAYS` more days to `OUT`,
//!   with the options recorded there.
//! - `… --example write_server -- --in-memory DAYS [SEED] [PRESET]` generates the records
//!   without writing them (and without media bytes), to measure the log text speed.

use std::path::PathBuf;
use std::time::Instant;

use chatvault_workload::{Server, ServerOptions, WriteStats, advance, generate};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--in-memory") {
        args[0] = String::new();
        return in_memory(&args);
    }
    let advancing = args.first().is_some_and(|a| a == "--advance");
    if advancing {
        args.remove(0);
    }
    let (Some(out), Some(days)) = (
        args.first().map(PathBuf::from),
        args.get(1).and_then(|d| d.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: write_server OUT DAYS [SEED] [tiny|default|bench]");
        eprintln!("       write_server --advance OUT DAYS");
        std::process::exit(2);
    };
    let start = Instant::now();
    let result = if advancing {
        advance(&out, days)
    } else {
        generate(&out, options(&args), days)
    };
    match result {
        Ok(stats) => report(&stats, start.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("write_server: {e}");
            std::process::exit(1);
        }
    }
}

fn report(s: &WriteStats, secs: f64) {
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "{} days, {} records, logs {:.1} MB, {} media files {:.1} MB, total {:.1} MB in \
         {secs:.2} s ({:.0} MB/s)",
        s.days,
        s.records,
        mb(s.log_bytes),
        s.media_files,
        mb(s.media_bytes),
        mb(s.log_bytes + s.media_bytes),
        mb(s.log_bytes + s.media_bytes) / secs.max(1e-9),
    );
}

/// The options from `[_, _, SEED, PRESET]`.
fn options(args: &[String]) -> ServerOptions {
    let mut opts = match args.get(3).map(String::as_str) {
        None | Some("tiny") => ServerOptions::tiny(),
        Some("default") => ServerOptions::default(),
        Some("bench") => ServerOptions::thirty_day_bench(),
        Some(other) => {
            eprintln!("unknown preset {other:?}: use tiny, default or bench");
            std::process::exit(2);
        }
    };
    opts.seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    opts
}

/// Renders every record of days `0..DAYS` in memory and reports the log text speed.
fn in_memory(args: &[String]) {
    let Some(days) = args.get(1).and_then(|d| d.parse::<u32>().ok()) else {
        eprintln!("usage: write_server --in-memory DAYS [SEED] [tiny|default|bench]");
        std::process::exit(2);
    };
    let start = Instant::now();
    let mut server = Server::new(options(args));
    let mut stats = WriteStats::default();
    for _ in 0..days {
        let day = server.next_day();
        for record in day.records() {
            stats.records += 1;
            stats.log_bytes += record.line.len() as u64 + 1;
        }
        for media in day.media() {
            stats.media_files += 1;
            stats.media_bytes += media.len;
        }
        stats.days += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    report(&stats, secs);
    eprintln!(
        "log text only: {:.0} MB/s",
        stats.log_bytes as f64 / 1e6 / secs.max(1e-9)
    );
}
