//! The `chatvault` command: back up a chat server's media store, configuration and
//! database dumps into an encrypted, deduplicating repository, and get them back. This is
//! its library half, so that the fuzz targets reach the plan file parser; `main.rs` only
//! chooses the allocator. Not an API: only the binary and `fuzz/` use it.
//!
//! Thin by design: arguments become library options (`chatvault-core`, `chatvault-fs`),
//! results become lines or one JSON document, errors become documented exit codes
//! (`exit.rs`). Nothing here decides anything the libraries decide.

mod args;
mod commands;
mod exit;
mod monitor;
mod output;
mod progress;
mod session;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use commands::{
    backup, browse, check, copy, demo, docs, drill, forget, hold, init, key, mirror, msglog, plan,
    prune, repair, restore, snapshots, stats,
};
use exit::Outcome;
use output::Output;

/// Runs the command line: parses the arguments, runs the command, reports, and returns
/// the exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; everything else is a usage error (2).
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_tracing(&cli.global);
    let out = Output {
        json: cli.global.json,
        quiet: cli.global.quiet,
        silent: false,
    };
    let started = std::time::SystemTime::now();
    let clock = std::time::Instant::now();
    let (code, failed) = match run(&cli, out) {
        Ok(outcome) => (outcome.code(), false),
        Err(e) => (report_error(out, &e), true),
    };
    // A plan that ran reports each step, and itself, on its own; one that could not start
    // (a bad plan file) is reported here like any other failed command.
    if failed || !matches!(cli.command, Command::Run(_)) {
        let mut record = monitor::Record {
            command: cli.command.name().to_owned(),
            exit_code: code,
            started,
            duration: clock.elapsed(),
            report: output::take_report().unwrap_or_else(|| serde_json::json!({})),
            hook_ok: None,
        };
        monitor::finish(&cli.global, &mut record);
    }
    ExitCode::from(code)
}

/// Prints an error (one line on stderr, and the JSON document) and returns its exit code.
fn report_error(out: Output, e: &anyhow::Error) -> u8 {
    let (code, kind) = exit::classify(e);
    // One line: the error and its causes, as "a: b: c", without a cause its error
    // already quotes (core's storage errors show their source, and name it as source).
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    // One line, whatever the repository put in the message (labels, hosts, reasons).
    eprintln!("chatvault: {}", output::printable(&message));
    out.json(&serde_json::json!({
        "error": { "code": code, "kind": kind, "message": message }
    }));
    code
}

fn run(cli: &Cli, out: Output) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, out, a),
        Command::Backup(a) => backup::run(g, out, a),
        Command::Snapshots(a) => snapshots::run(g, out, a),
        Command::Ls(a) => browse::ls(g, out, a),
        Command::Find(a) => browse::find(g, out, a),
        Command::Diff(a) => browse::diff(g, out, a),
        Command::Restore(a) => restore::run(g, out, a),
        Command::Cat(a) => browse::cat(g, a),
        Command::Key(a) => key::run(g, out, &a.command),
        Command::Stats(a) => stats::run(g, out, a),
        Command::Check(a) => check::check(g, out, a),
        Command::Forget(a) => forget::run(g, out, a),
        Command::Prune(a) => prune::run(g, out, a),
        Command::Hold(a) => hold::hold(g, out, a),
        Command::Release(a) => hold::release(g, out, a),
        Command::Unlock(a) => hold::unlock(g, out, a),
        Command::Scrub(_) => check::scrub(g, out),
        Command::Mirror(a) => mirror::run(g, out, a),
        Command::Copy(a) => copy::run(g, out, a),
        Command::Repair(a) => repair::run(g, out, &a.command),
        Command::Drill(a) => drill::run(g, out, a),
        Command::Run(a) => plan::run(g, out, a),
        Command::Msglog(a) => msglog::run(g, out, &a.command),
        Command::Demo(a) => demo::run(g, out, a),
        Command::Completions(a) => docs::completions(a.shell),
        Command::Man(a) => docs::man(&a.out),
    }
}

fn init_tracing(g: &args::Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, _) => tracing::Level::DEBUG,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Entry points for the fuzz targets in `fuzz/frontends`; not part of any API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses and validates a plan file's text as `chatvault run` does before any step
    /// runs; whether it is a valid plan. Never panics.
    pub fn plan(text: &str) -> bool {
        crate::commands::plan::validate(text).is_ok()
    }
}
