//! `chatvault msglog backup|ls|export|restore`: message-log backup sets.

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use chatvault_core::{Repository, Snapshot};
use chatvault_msglog::{
    BackupOptions, BackupReport, BackupSession, ReadStats, SOURCE_KIND, Selection, SetReader, View,
};
use serde_json::json;

use crate::args::{
    Global, MsglogBackupArgs, MsglogCommand, MsglogExportArgs, MsglogRestoreArgs, MsglogSelectArgs,
};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn run(g: &Global, out: Output, c: &MsglogCommand) -> Result<Outcome> {
    match c {
        MsglogCommand::Backup(a) => backup(g, out, a),
        MsglogCommand::Ls(a) => ls(g, out, a),
        MsglogCommand::Export(a) => export(g, out, a),
        MsglogCommand::Restore(a) => restore(g, out, a),
    }
}

fn backup(g: &Global, out: Output, a: &MsglogBackupArgs) -> Result<Outcome> {
    // Another layout, or a database: msglog_sources.rs.
    if super::msglog_sources::wanted(a) {
        return super::msglog_sources::backup(g, out, a);
    }
    let Some(dir) = &a.dir else {
        bail!("give the data directory, or --postgres URL");
    };
    let repo = session::open(g)?;
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("data directory {}", dir.display()))?;
    let parent = session::parent_choice(&repo, &a.parent)?;
    let opts = BackupOptions {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| dir.to_string_lossy().into_owned()),
        host: a.record.host.clone(),
        tags: a.record.tags.clone(),
        full: a.full,
        parent,
        ..BackupOptions::default()
    };
    let mut s = BackupSession::start(&repo, opts)?;
    let logs = dir.join("logs");
    if logs.is_dir() {
        s.backup_logs_dir(&logs)?;
    }
    let mut exclude = a.exclude.clone();
    exclude.push(logs.to_string_lossy().into_owned());
    s.backup_files(&dir, &exclude)?;
    for spec in &a.dumps {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--dump {spec:?}: expected NAME=FILE"))?;
        let reader: Box<dyn Read + Send> = if file == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(file).with_context(|| format!("dump file {file}"))?)
        };
        s.backup_dump(name, reader, None)?;
    }
    let r = s.commit()?;
    print_backup(out, &r);
    Ok(if r.problems.is_empty() {
        Outcome::Complete
    } else {
        eprintln!(
            "chatvault: backup incomplete: {} entries could not be read",
            r.problems.len()
        );
        Outcome::Partial
    })
}

pub fn print_backup(out: Output, r: &BackupReport) {
    let l = &r.logs;
    out.line(output::saved(r.snapshot, r.kind, r.parent));
    out.line(format!(
        "logs: {} streams ({} new, {} appended, {} unchanged, {} rewritten, {} verified); \
         {} appended, {} written in {} segments ({} tail merges)",
        l.streams,
        l.streams_new,
        l.streams_appended,
        l.streams_unchanged,
        l.streams_rewritten,
        l.streams_verified,
        output::bytes(l.bytes_appended),
        output::bytes(l.bytes_written),
        l.segments_written,
        l.merges,
    ));
    if l.segments_restored > 0 {
        out.line(format!(
            "{} stored segments were missing from the repository and were stored again",
            l.segments_restored
        ));
    }
    if let Some(f) = &r.files {
        out.line(format!(
            "files: {} new, {} changed, {} unchanged, {} read again (stored data missing), {} in all",
            f.files_new,
            f.files_changed,
            f.files_unchanged,
            f.files_reread,
            output::bytes(f.bytes_total)
        ));
    }
    out.line(format!(
        "read {}; added {} ({} stored)",
        output::throughput(
            l.bytes_read + r.files.map_or(0, |f| f.bytes_read) + r.dump_bytes,
            r.duration
        ),
        output::bytes(r.bytes_added),
        output::bytes(r.bytes_stored),
    ));
    if !r.problems.is_empty() {
        out.line(format!(
            "{} entries could not be read (left out of the set):",
            r.problems.len()
        ));
    }
    for p in &r.problems {
        out.line(format!(
            "  {}: {}",
            output::printable(&p.path),
            output::printable(&p.message)
        ));
    }
    for p in &r.notices {
        out.line(format!("  note: {}: {}", p.path, p.message));
    }
    let files = r.files.map(|f| {
        json!({
            "files_new": f.files_new,
            "files_changed": f.files_changed,
            "files_unchanged": f.files_unchanged,
            "files_reread": f.files_reread,
            "bytes_total": f.bytes_total,
            "bytes_read": f.bytes_read,
        })
    });
    out.json(&json!({
        "snapshot": r.snapshot.to_hex(),
        "kind": r.kind.as_str(),
        "parent": r.parent.map(|p| p.to_hex()),
        "logs": {
            "streams": l.streams,
            "streams_new": l.streams_new,
            "streams_appended": l.streams_appended,
            "streams_unchanged": l.streams_unchanged,
            "streams_rewritten": l.streams_rewritten,
            "streams_verified": l.streams_verified,
            "bytes_read": l.bytes_read,
            "bytes_appended": l.bytes_appended,
            "bytes_written": l.bytes_written,
            "segments_written": l.segments_written,
            "merges": l.merges,
            "segments_verified": l.segments_verified,
            "segments_restored": l.segments_restored,
        },
        "files": files,
        "dumps": r.dumps,
        "dump_bytes": r.dump_bytes,
        "bytes_added": r.bytes_added,
        "bytes_stored": r.bytes_stored,
        "blobs_added": r.blobs_added,
        "duration_ms": r.duration.as_millis() as u64,
        "problems": r.problems.iter().map(|p| json!({"path": p.path, "message": p.message})).collect::<Vec<_>>(),
        "notices": r.notices.iter().map(|p| json!({"path": p.path, "message": p.message})).collect::<Vec<_>>(),
    }));
}

/// The backup set an argument names.
fn resolve(repo: &Repository, a: &MsglogSelectArgs) -> Result<Snapshot> {
    if let Some(at) = &a.at {
        let t = parse_time(at)?;
        return Ok(chatvault_msglog::snapshot_at(
            repo,
            a.name.as_deref(),
            a.host.as_deref(),
            t,
        )?);
    }
    if a.snapshot == "latest" {
        return chatvault_msglog::snapshot_at(repo, a.name.as_deref(), a.host.as_deref(), i64::MAX)
            .map_err(|_| anyhow!("the repository has no message-log backup set"));
    }
    let s = session::resolve(repo, &a.snapshot)?;
    if s.record.source_kind != SOURCE_KIND {
        bail!(
            "snapshot {} is a {:?} snapshot, not a message-log backup set",
            s.id.short(),
            s.record.source_kind
        );
    }
    Ok(s)
}

/// The selection the arguments describe (`--last` needs the set to find the newest
/// record).
fn selection(set: &SetReader<'_>, a: &MsglogSelectArgs) -> Result<Selection> {
    let mut sel = Selection {
        tenant: a.tenant.clone(),
        conversation: a.conversation.clone(),
        ..Selection::default()
    };
    if let Some(s) = &a.seq {
        sel.seq = Some(parse_seq(s)?);
    }
    if a.since.is_some() || a.until.is_some() {
        let lo = a.since.as_deref().map(parse_time).transpose()?;
        let hi = a.until.as_deref().map(parse_time).transpose()?;
        sel.time = Some((lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX)));
    }
    if let Some(last) = &a.last {
        let span = parse_span(last)?;
        let newest = set
            .streams(&sel)?
            .iter()
            .filter_map(|s| s.ranges.map(|r| r.ts_max))
            .max();
        if let Some(newest) = newest {
            sel.time = Some((newest.saturating_sub(span), newest));
        }
    }
    Ok(sel)
}

fn ls(g: &Global, out: Output, a: &MsglogSelectArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let snap = resolve(&repo, a)?;
    let set = SetReader::open(&repo, snap.id)?;
    let sel = selection(&set, a)?;
    let streams = set.streams(&sel)?;
    out.line(format!(
        "backup set {} ({}), {}",
        snap.id.short(),
        output::printable(&snap.record.paths.join(" ")),
        output::time(snap.record.time_unix_ms)
    ));
    let mut rows = Vec::new();
    for s in &streams {
        let (seq, ts) = match s.ranges {
            Some(r) => (
                format!("{}-{}", r.seq_min, r.seq_max),
                format!("{} .. {}", output::time(r.ts_min), output::time(r.ts_max)),
            ),
            None => ("-".into(), "-".into()),
        };
        out.line(format!(
            "{:<40} {:>8} records {:>10} {:>4} segments ({} sealed)  seq {seq}  {ts}",
            s.path,
            s.records,
            output::bytes(s.bytes),
            s.segments,
            s.sealed
        ));
        rows.push(json!({
            "path": s.path,
            "kind": format!("{:?}", s.kind).to_lowercase(),
            "records": s.records,
            "bytes": s.bytes,
            "segments": s.segments,
            "sealed": s.sealed,
            "seq": s.ranges.map(|r| [r.seq_min, r.seq_max]),
            "ts_ms": s.ranges.map(|r| [r.ts_min, r.ts_max]),
        }));
    }
    out.json(&json!({ "snapshot": snap.id.to_hex(), "streams": rows }));
    Ok(Outcome::Complete)
}

fn export(g: &Global, _out: Output, a: &MsglogExportArgs) -> Result<Outcome> {
    if g.json {
        bail!("export writes the records as JSONL on stdout; it has no --json report");
    }
    let (repo, _lock) = session::open_reading(g)?;
    let snap = resolve(&repo, &a.select)?;
    let set = SetReader::open(&repo, snap.id)?;
    let sel = selection(&set, &a.select)?;
    let view = if a.applied { View::Applied } else { View::Raw };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let stats = set.export(&sel, view, &mut w)?;
    drop(w);
    // The records are the output; figures go to stderr unless quiet.
    if !g.quiet {
        eprintln!("{}", read_summary(&stats));
    }
    Ok(Outcome::Complete)
}

fn restore(g: &Global, out: Output, a: &MsglogRestoreArgs) -> Result<Outcome> {
    let (repo, _lock) = session::open_reading(g)?;
    let snap = resolve(&repo, &a.select)?;
    let s = &a.select;
    let whole = a.postgres.is_none()
        && s.tenant.is_none()
        && s.seq.is_none()
        && s.since.is_none()
        && s.until.is_none()
        && s.last.is_none()
        && !a.applied;
    let start = std::time::Instant::now();
    let target = a.target.clone().unwrap_or_default();
    if whole {
        let r = chatvault_msglog::restore(&repo, snap.id, &target)?;
        out.line(format!(
            "restored backup set {} to {}: {} files ({}), logs: {}",
            snap.id.short(),
            target.display(),
            r.files,
            output::bytes(r.file_bytes),
            read_summary(&r.logs),
        ));
        for p in &r.problems {
            out.line(format!("  {}: {}", p.path, p.message));
        }
        out.json(&json!({
            "snapshot": snap.id.to_hex(),
            "target": target.display().to_string(),
            "files": r.files,
            "file_bytes": r.file_bytes,
            "logs": read_json(&r.logs),
            "duration_ms": r.duration.as_millis() as u64,
            "problems": r.problems.iter().map(|p| json!({
                "path": p.path, "message": p.message, "corrupt": p.corrupt,
            })).collect::<Vec<_>>(),
        }));
        if !r.problems.is_empty() {
            eprintln!(
                "chatvault: restore incomplete: {} entries not restored",
                r.problems.len()
            );
        }
        return Ok(if r.problems.is_empty() {
            Outcome::Complete
        } else if r.problems.iter().any(|p| p.corrupt) {
            Outcome::Corrupt
        } else {
            Outcome::Partial
        });
    }
    let set = SetReader::open(&repo, snap.id)?;
    let sel = selection(&set, s)?;
    if a.postgres.is_some() {
        return super::msglog_sources::restore(g, out, a, &set, &sel);
    }
    let view = if a.applied { View::Applied } else { View::Raw };
    let stats = set.restore_logs(&sel, view, &target)?;
    out.line(format!(
        "restored logs of backup set {} to {}: {} in {} ms",
        snap.id.short(),
        target.display(),
        read_summary(&stats),
        start.elapsed().as_millis()
    ));
    out.json(&json!({
        "snapshot": snap.id.to_hex(),
        "target": target.display().to_string(),
        "logs": read_json(&stats),
        "duration_ms": start.elapsed().as_millis() as u64,
    }));
    Ok(Outcome::Complete)
}

fn read_summary(s: &ReadStats) -> String {
    format!(
        "{} records ({}) from {} streams, {} of their {} segments fetched",
        s.records,
        output::bytes(s.bytes_out),
        s.streams,
        s.segments_read,
        s.segments_total
    )
}

fn read_json(s: &ReadStats) -> serde_json::Value {
    json!({
        "streams": s.streams,
        "segments_total": s.segments_total,
        "segments_read": s.segments_read,
        "bytes_read": s.bytes_read,
        "records": s.records,
        "bytes_out": s.bytes_out,
    })
}

/// A time: RFC 3339, a date (midnight UTC) or Unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        let t = d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| anyhow!("{s:?}: {e}"))?;
        return Ok(t.timestamp().as_millisecond());
    }
    bail!("{s:?} is not a time: give RFC 3339 (2026-01-05T09:00:00Z), a date or Unix milliseconds")
}

/// A span like `7d`, `36h`, `2w` in milliseconds.
fn parse_span(s: &str) -> Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a span: give e.g. 7d, 36h or 2w"))?;
    let unit_ms = match unit {
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => bail!("{s:?} is not a span: give e.g. 7d, 36h or 2w"),
    };
    Ok(n.saturating_mul(unit_ms))
}

/// `A-B`, `A-` or `-B` (inclusive), or a single seq.
fn parse_seq(s: &str) -> Result<(u64, u64)> {
    let bad = || anyhow!("--seq {s:?}: expected FIRST-LAST, FIRST-, -LAST or a number");
    let num = |x: &str, default: u64| -> Result<u64> {
        if x.is_empty() {
            Ok(default)
        } else {
            x.parse().map_err(|_| bad())
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let r = (num(a, 0)?, num(b, u64::MAX)?);
            if r.0 > r.1 {
                return Err(bad());
            }
            Ok(r)
        }
        None => {
            let n = num(s, 0)?;
            Ok((n, n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_spans_and_seq_ranges() {
        assert_eq!(parse_time("1767225600000").unwrap(), 1_767_225_600_000);
        assert_eq!(parse_time("2026-01-01").unwrap(), 1_767_225_600_000);
        assert_eq!(
            parse_time("2026-01-01T01:00:00+01:00").unwrap(),
            1_767_225_600_000
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_span("7d").unwrap(), 604_800_000);
        assert_eq!(parse_span("2w").unwrap(), 1_209_600_000);
        assert!(parse_span("7").is_err());
        assert_eq!(parse_seq("3-9").unwrap(), (3, 9));
        assert_eq!(parse_seq("5-").unwrap(), (5, u64::MAX));
        assert_eq!(parse_seq("-5").unwrap(), (0, 5));
        assert_eq!(parse_seq("4").unwrap(), (4, 4));
        assert!(parse_seq("9-3").is_err());
    }
}
