//! Writing days to a server directory, and the state file that lets [`advance`] continue.
//!
//! Layout under the root:
//! - `logs/<tenant>/<conversation>/<YYYY-MM>.jsonl`: each record one line, `\n`-terminated;
//! - `media/<2 hex>/<media id>`: one file per new attachment;
//! - `.workload-state.json`: the options and the number of days written.
//!
//! Invariants:
//! - Writing only appends to log files, creates new log files, directories and media
//!   files (`create_new`: an existing media file is an error, never overwritten), and
//!   replaces the state file. The bytes of a log file after day `d` are a prefix of its
//!   bytes after any later day.
//! - The state file says `"complete": false` while a day is being written, so an
//!   interrupted write is detected instead of being appended to twice.
//! - The state file records the options and the day count only; the generator state is
//!   recomputed from them (see `plan.rs`), so [`advance`] equals generating in one go.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::day::{Day, Renderer, log_path};
use super::layout::TenantId;
use super::options::{ServerOptions, field};
use super::Server;

/// The state file's name under the root.
pub(crate) const STATE_FILE: &str = ".workload-state.json";
/// The first field of the state file; a different format is refused.
const STATE_FORMAT: &str = "chatvault-workload server state v1";

/// What a write produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Days written.
    pub days: u32,
    /// Records appended to logs.
    pub records: u64,
    /// Bytes appended to logs, newlines included.
    pub log_bytes: u64,
    /// Media files created.
    pub media_files: u64,
    /// Bytes of the media files created.
    pub media_bytes: u64,
}

/// Writes days `0..days` of the server `opts` describes into `root` (created if
/// missing). Fails if `root` already holds a generated server (use [`advance`]) or a
/// `logs` or `media` directory.
///
/// All I/O and state-file problems are `io::Error`s (a malformed state file is
/// `InvalidData`): the generator has no other failure, so the crate needs no error type.
pub fn generate(root: &Path, opts: ServerOptions, days: u32) -> io::Result<WriteStats> {
    Server::new(opts).write_days(root, days)
}

/// Continues the server directory at `root` by `days` more days, appending to its logs
/// and adding media files. The result is byte-identical to generating all the days at
/// once.
pub fn advance(root: &Path, days: u32) -> io::Result<WriteStats> {
    let state = read_state(root)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no {STATE_FILE}; generate first", root.display()),
        )
    })?;
    Server::resume(state.options, state.days).write_days(root, days)
}

impl Server {
    /// Writes the next `days` days into `root`. The directory must be the one this
    /// server's earlier days were written to (its state file must agree on the options
    /// and the day count), or a new one if no day is done yet.
    pub fn write_days(&mut self, root: &Path, days: u32) -> io::Result<WriteStats> {
        self.check_root(root)?;
        let mut stats = WriteStats::default();
        for _ in 0..days {
            write_state(root, &self.opts, self.days_done, false)?;
            let day = self.next_day();
            write_day(root, &day, &mut stats)?;
            write_state(root, &self.opts, self.days_done, true)?;
            stats.days += 1;
        }
        Ok(stats)
    }

    fn check_root(&self, root: &Path) -> io::Result<()> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let Some(state) = read_state(root)? else {
            if self.days_done != 0 {
                return Err(invalid(format!(
                    "{}: no {STATE_FILE}, but {} days are already generated",
                    root.display(),
                    self.days_done
                )));
            }
            if root.join("logs").exists() || root.join("media").exists() {
                return Err(invalid(format!(
                    "{}: holds logs or media but no {STATE_FILE}",
                    root.display()
                )));
            }
            return Ok(());
        };
        if !state.complete {
            return Err(invalid(format!(
                "{}: a write of day {} was interrupted; the directory is inconsistent",
                root.display(),
                state.days
            )));
        }
        if state.options.encode() != self.opts.encode() || state.days != self.days_done {
            return Err(invalid(format!(
                "{}: holds {} days of other options or another day count than this \
                 generator ({} days done)",
                root.display(),
                state.days,
                self.days_done
            )));
        }
        Ok(())
    }
}

/// Appends the day's records to their log files and creates its media files.
fn write_day(root: &Path, day: &Day, stats: &mut WriteStats) -> io::Result<()> {
    let mut logs: BTreeMap<(u32, u32), (u64, Vec<u8>)> = BTreeMap::new();
    let mut renderer = Renderer::new(day);
    for e in &day.events {
        let (_, buf) = logs
            .entry((e.tenant, e.conv))
            .or_insert_with(|| (e.ts_ms, Vec::new()));
        renderer.render(e, buf);
        buf.push(b'\n');
    }
    for ((tenant, conv), (ts_ms, buf)) in &logs {
        let path = root.join(log_path(TenantId(*tenant), day.naming.id(*conv), *ts_ms));
        create_parent(&path)?;
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(buf)?;
        stats.log_bytes += buf.len() as u64;
    }
    stats.records += day.events.len() as u64;
    let mut chunk = vec![0u8; 1 << 20];
    for media in day.media() {
        let path = root.join(media.path());
        create_parent(&path)?;
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        let mut reader = media.reader();
        loop {
            let n = reader.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            file.write_all(&chunk[..n])?;
        }
        stats.media_files += 1;
        stats.media_bytes += media.len;
    }
    Ok(())
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => fs::create_dir_all(dir),
        None => Ok(()),
    }
}

/// The state file's content.
#[derive(Debug)]
struct State {
    options: ServerOptions,
    days: u32,
    complete: bool,
}

fn read_state(root: &Path) -> io::Result<Option<State>> {
    let text = match fs::read_to_string(root.join(STATE_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if field::<String>(&text, "format")? != STATE_FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{STATE_FILE}: unknown format"),
        ));
    }
    Ok(Some(State {
        options: ServerOptions::decode(&text)?,
        days: field(&text, "days")?,
        complete: field(&text, "complete")?,
    }))
}

/// Replaces the state file (write to a temporary name, then rename).
fn write_state(root: &Path, opts: &ServerOptions, days: u32, complete: bool) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let text = format!(
        "{{\n  \"format\": \"{STATE_FORMAT}\",\n  \"days\": {days},\n  \"complete\": \
         {complete},\n  \"options\": {{\n{}\n  }}\n}}\n",
        opts.encode()
    );
    let tmp = root.join(format!("{STATE_FILE}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(tmp, root.join(STATE_FILE))
}
