//! Writing days to a server directory, and the state file that lets [`advance`] continue.
//!
//! Layout under the root:
//! - `logs/<tenant>/<conversation>/<YYYY-MM>.jsonl` (or, with
//!   [`DiskLayout::ConvFolders`](crate::DiskLayout), `<tenant>/conv/<conversation>/…`):
//!   each record one line, `\n`-terminated;
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

use super::Server;
use super::day::{Day, Renderer, log_path};
use super::layout::TenantId;
use super::options::{ServerOptions, field};

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
        let path = root.join(log_path(
            day.layout,
            TenantId(*tenant),
            day.naming.id(*conv),
            *ts_ms,
        ));
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
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    /// Every file under `root` by relative path, with its bytes.
    fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(root).unwrap().to_path_buf();
                    out.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
        out
    }

    /// A scratch directory, removed on drop. (Not the `tempfile` crate: adding a
    /// dependency would touch the workspace lock file, which this crate does not own.)
    pub(crate) struct ScratchDir(PathBuf);

    impl ScratchDir {
        pub(crate) fn new() -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("chatvault-workload-test-{}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tiny_dir(days: u32) -> ScratchDir {
        let dir = ScratchDir::new();
        generate(dir.path(), ServerOptions::tiny(), days).unwrap();
        dir
    }

    #[test]
    fn generate_then_advance_equals_generating_at_once() {
        let once = tiny_dir(6);
        let steps = tiny_dir(2);
        assert_eq!(advance(steps.path(), 3).unwrap().days, 3);
        assert_eq!(advance(steps.path(), 0).unwrap(), WriteStats::default());
        advance(steps.path(), 1).unwrap();
        assert_eq!(files(once.path()), files(steps.path()));
    }

    #[test]
    fn advance_only_appends_and_adds_files() {
        let dir = tiny_dir(3);
        let before = files(dir.path());
        let stats = advance(dir.path(), 3).unwrap();
        let after = files(dir.path());
        let mut new_logs = 0;
        for (path, bytes) in &before {
            if path.as_os_str() != STATE_FILE {
                assert!(
                    after[path].starts_with(bytes),
                    "{} rewritten",
                    path.display()
                );
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            new_logs += usize::from(path.starts_with("logs"));
        }
        assert!(new_logs > 0, "new conversations appear over time");
        let grown: u64 = after.values().map(|b| b.len() as u64).sum::<u64>()
            - before.values().map(|b| b.len() as u64).sum::<u64>();
        let state_growth =
            after[Path::new(STATE_FILE)].len() as u64 - before[Path::new(STATE_FILE)].len() as u64;
        assert_eq!(grown - state_growth, stats.log_bytes + stats.media_bytes);
    }

    #[test]
    fn disk_holds_exactly_the_records_and_media() {
        let dir = tiny_dir(3);
        let mut expected: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        let mut server = Server::new(ServerOptions::tiny());
        for _ in 0..3 {
            let day = server.next_day();
            for r in day.records() {
                let log = expected.entry(r.log_path()).or_default();
                log.extend_from_slice(&r.line);
                log.push(b'\n');
            }
            for m in day.media() {
                assert!(expected.insert(m.path(), m.bytes()).is_none());
            }
        }
        let mut on_disk = files(dir.path());
        let state = on_disk.remove(Path::new(STATE_FILE)).unwrap();
        assert!(on_disk == expected, "disk differs from the records");
        let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
        assert_eq!(state["days"], 3);
        assert_eq!(state["options"]["users_per_tenant"], 16);
    }

    #[test]
    fn logs_split_by_month_and_seq_continues() {
        let opts = ServerOptions {
            start_day: 20_482, // Thursday 2026-01-29
            ..ServerOptions::tiny()
        };
        let dir = ScratchDir::new();
        generate(dir.path(), opts, 6).unwrap();
        let logs = files(&dir.path().join("logs"));
        let mut split = 0;
        for (path, jan) in logs.iter().filter(|(p, _)| p.ends_with("2026-01.jsonl")) {
            let Some(feb) = logs.get(&path.with_file_name("2026-02.jsonl")) else {
                continue;
            };
            split += 1;
            let seqs = |bytes: &[u8]| -> Vec<u64> {
                bytes
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        serde_json::from_slice::<serde_json::Value>(l).unwrap()["seq"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect()
            };
            let (a, b) = (seqs(jan), seqs(feb));
            assert_eq!(b[0], a.last().unwrap() + 1, "{}", path.display());
        }
        assert!(split > 0, "some conversation spans both months");
        let names: Vec<&PathBuf> = logs.keys().collect();
        assert!(
            names
                .iter()
                .all(|p| p.extension().is_some_and(|e| e == "jsonl"))
        );
    }

    #[test]
    fn same_seed_same_directory() {
        let a = files(tiny_dir(2).path());
        assert_eq!(a, files(tiny_dir(2).path()));
        let other = ScratchDir::new();
        let opts = ServerOptions {
            seed: 9,
            ..ServerOptions::tiny()
        };
        generate(other.path(), opts, 2).unwrap();
        assert_ne!(a, files(other.path()));
    }

    #[test]
    fn inconsistent_directories_are_refused() {
        let dir = tiny_dir(1);
        let kind = |r: io::Result<WriteStats>| r.unwrap_err().kind();
        // Generating again, or with other options, or from another day count.
        assert_eq!(
            kind(generate(dir.path(), ServerOptions::tiny(), 1)),
            io::ErrorKind::InvalidInput
        );
        let other = ServerOptions {
            seed: 5,
            ..ServerOptions::tiny()
        };
        assert_eq!(
            kind(Server::resume(other, 1).write_days(dir.path(), 1)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(Server::resume(ServerOptions::tiny(), 2).write_days(dir.path(), 1)),
            io::ErrorKind::InvalidInput
        );
        // A write interrupted mid-day.
        let state = dir.path().join(STATE_FILE);
        let text = fs::read_to_string(&state).unwrap();
        fs::write(
            &state,
            text.replace("\"complete\": true", "\"complete\": false"),
        )
        .unwrap();
        assert_eq!(kind(advance(dir.path(), 1)), io::ErrorKind::InvalidInput);
        fs::write(&state, "{}").unwrap();
        assert_eq!(kind(advance(dir.path(), 1)), io::ErrorKind::InvalidData);
        // Nothing generated yet, or foreign data without a state file.
        let empty = ScratchDir::new();
        assert_eq!(kind(advance(empty.path(), 1)), io::ErrorKind::NotFound);
        fs::create_dir(empty.path().join("logs")).unwrap();
        assert_eq!(
            kind(generate(empty.path(), ServerOptions::tiny(), 1)),
            io::ErrorKind::InvalidInput
        );
    }
}
