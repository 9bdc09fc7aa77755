//! Where command output goes: JSON documents or human lines on stdout, warnings on stderr.
//!
//! Invariants: with `--json`, stdout carries exactly one JSON document per command and
//! nothing else, so a script can parse it; human text and progress go to stderr or are
//! suppressed. Every command's JSON document is also kept (whether printed or not) for
//! the metrics file and the hooks (`monitor.rs`), which report on it. Nothing printed
//! carries a terminal control or formatting character: lines and warnings go through
//! [`terminal_safe`] (core's [`printable`] on each line; commands also escape each field
//! from the repository, so that a newline in a label cannot forge a line), and JSON
//! documents escape the characters serde_json leaves raw ([`json_safe`]).

#![allow(clippy::print_stdout)]

use std::borrow::Cow;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub use chatvault_core::{printable, printable_bytes};

/// The last JSON document a command produced; taken by [`take_report`].
static REPORT: Mutex<Option<serde_json::Value>> = Mutex::new(None);

/// Set once stdout's reader has gone (`chatvault ls … | head`): later lines are dropped
/// and the command finishes normally (its locks released, its exit code kept) instead of
/// panicking on the broken pipe.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout; a closed pipe silences stdout for the rest of the run.
fn print_stdout(f: impl FnOnce(&mut std::io::StdoutLock<'_>) -> std::io::Result<()>) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = f(&mut out).and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

/// The output mode chosen on the command line.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// Print nothing on stdout (a step of `run`, which prints its own summary); the
    /// document is still kept.
    pub silent: bool,
}

impl Output {
    /// A line of human output (not in JSON mode).
    pub fn line(&self, s: impl AsRef<str>) {
        if !self.json && !self.silent {
            print_stdout(|out| writeln!(out, "{}", terminal_safe(s.as_ref())));
        }
    }

    /// The command's JSON document: printed in JSON mode, always kept for the report.
    pub fn json(&self, v: &serde_json::Value) {
        *REPORT.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
        if self.json && !self.silent {
            print_stdout(|out| writeln!(out, "{}", json_safe(&v.to_string())));
        }
    }

    /// The same mode, printing nothing on stdout.
    pub fn silenced(self) -> Self {
        Output {
            silent: true,
            ..self
        }
    }

    /// A warning on stderr (unless quiet).
    pub fn warn(&self, s: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("warning: {}", terminal_safe(s.as_ref()));
        }
    }
}

/// Text for a terminal: each line through [`printable`], the line breaks kept (a
/// command's own multi-line output). Fields from the repository are escaped whole, with
/// [`printable`], where they are formatted.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if s.split('\n')
        .all(|l| matches!(printable(l), Cow::Borrowed(_)))
    {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.split('\n').map(printable).collect::<Vec<_>>().join("\n"))
}

/// A serialized JSON document with the characters serde_json writes raw and a terminal
/// may act on (DEL, C1 controls, bidirectional and invisible formatting characters; it
/// already escapes C0) written as `\uXXXX` escapes: the same document for a parser.
/// Outside strings a JSON document is ASCII, so every such character is inside a string.
pub fn json_safe(doc: &str) -> Cow<'_, str> {
    // Whether core's rule escapes `c` (serde_json has already escaped C0 and quotes).
    let risky = |c: char| matches!(printable(c.encode_utf8(&mut [0; 4])), Cow::Owned(_));
    if !doc.chars().any(risky) {
        return Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len() + 16);
    for c in doc.chars() {
        if risky(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The JSON document the last command produced, if any (and forgets it).
pub fn take_report() -> Option<serde_json::Value> {
    REPORT.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Bytes in binary units, as people read them: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `N bytes in T s (R/s)`, as backup and restore report it.
pub fn throughput(n: u64, d: std::time::Duration) -> String {
    let secs = d.as_secs_f64().max(1e-3);
    format!(
        "{} in {secs:.2} s ({}/s)",
        bytes(n),
        bytes((n as f64 / secs) as u64)
    )
}

/// The first line of a backup's report: `snapshot ID saved (KIND[, parent ID])`.
pub fn saved(
    snapshot: chatvault_core::SnapshotId,
    kind: chatvault_core::SnapshotKind,
    parent: Option<chatvault_core::SnapshotId>,
) -> String {
    format!(
        "snapshot {} saved ({}{})",
        snapshot.short(),
        kind.as_str(),
        parent
            .map(|p| format!(", parent {}", p.short()))
            .unwrap_or_default()
    )
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(
            throughput(3 << 20, std::time::Duration::from_millis(500)),
            "3.0 MiB in 0.50 s (6.0 MiB/s)"
        );
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_767_571_200_000), "2026-01-05 00:00:00");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(time(-1000), "1969-12-31 23:59:59");
    }

    /// Regression: labels, hosts, tags and messages from the repository were printed as
    /// they are, so a planted escape sequence reached the operator's terminal.
    #[test]
    fn nothing_printed_carries_a_terminal_control() {
        let hostile = "node\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}x";
        assert_eq!(
            terminal_safe(&format!("host {hostile}\nnext line")),
            "host node\\u{1b}]0;pwned\\u{7}\\u{9b}2J\\u{202e}x\nnext line"
        );
        assert!(matches!(terminal_safe("plain\nlines"), Cow::Borrowed(_)));
        let doc = serde_json::json!({ "host": hostile, "tags": ["a\u{7f}b"] }).to_string();
        let safe = json_safe(&doc);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe}");
        assert!(!safe.contains('\u{202e}'));
        // The same document for a parser.
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["host"], hostile);
        assert_eq!(back["tags"][0], "a\u{7f}b");
        assert!(matches!(json_safe(r#"{"a":"b"}"#), Cow::Borrowed(_)));
    }
}
