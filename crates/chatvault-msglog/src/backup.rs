//! Backup sets: one snapshot holding a chat server's message logs, its files (the media
//! store) and its database dumps, taken together.
//!
//! The snapshot's root tree has up to three nodes:
//!
//! - `logs`: the message-log tree ([`crate::meta`]): directories, and stream nodes whose
//!   chunks are segments. From a data directory it mirrors the logs folder
//!   (`TENANT/CONVERSATION/2026-01.jsonl`); from an embedding server it is
//!   `TENANT/CONVERSATION`, one framed stream per conversation;
//! - `files`: a directory tree in the `chatvault-fs` format (the media store);
//! - `db`: a `chatvault-fs` directory of dump files.
//!
//! Invariants:
//! - An incremental run reads, for each stream, only what was appended since the parent
//!   (plus, for a log file, its prefix to check it against the stored digest), and writes
//!   segments for the new records only; earlier chunks are referenced, never re-read from
//!   the repository or re-written, except tail segments merged once (see
//!   [`crate::Tiering`]).
//! - A full run re-reads every stream, recomputes the ids of its stored segments and
//!   keeps those that match, so it stores no history a second time; a stream whose
//!   source no longer matches is stored again from the first segment that differs.
//! - A stream's stored segments are reused only while every one of them is present in
//!   the repository ([`Repository::blobs_present`]); a stream with a lost segment is read
//!   whole, as in a full run, and the lost segments whose bytes the source still holds
//!   are stored again (so does every full run), so a lost pack is healed by the next run.
//! - [`BackupReport::problems`] lists only what was left out (a source that could not be
//!   read); what lost nothing (a log edited in place, a parent tree that could not be
//!   read) is a [`BackupReport::notices`] entry, so an edit never makes a run partial.
//! - The snapshot is saved only after the writer finished: it never names data that is
//!   not durable.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatvault_core::{
    BlobId, BlobWriter, Node, Repository, Snapshot, SnapshotId, SnapshotKind, SnapshotRecord,
    Summary, Tree,
};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::meta::{NodeKind, NodeMeta, Ranges, Stamp};
use crate::records::{Batch, MAX_RECORD};
use crate::segment::{self, AppendStats, Segments, Tiering};

/// The `source_kind` of message-log backup sets.
pub const SOURCE_KIND: &str = "msglog";

pub(crate) const LOGS: &[u8] = b"logs";
pub(crate) const FILES: &[u8] = b"files";
pub(crate) const DB: &[u8] = b"db";

/// Which snapshot an incremental run builds on (the same choice as for directory
/// backups): the latest set of the same name and host by default.
pub use chatvault_fs::ParentChoice;

/// Options for a backup set.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The set's name (a server's name or data directory), recorded as the snapshot's path:
    /// retention and parent selection group by host and name. Any non-empty text of at
    /// most [`MAX_SET_NAME`] bytes without control characters, an absolute path included
    /// (it is never used as a file name). By default, `chat`.
    pub name: String,
    /// The host recorded. By default, this machine's.
    pub host: Option<String>,
    /// Tags recorded. By default, none.
    pub tags: Vec<String>,
    /// Re-read every stream and verify it against the stored segment ids (stores nothing
    /// already stored). By default, disabled (incremental).
    pub full: bool,
    /// The snapshot to build on. By default, the latest of the same name and host.
    pub parent: ParentChoice,
    /// The tail-merge policy. By default, [`Tiering::default`].
    pub tiering: Tiering,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            name: "chat".into(),
            host: None,
            tags: Vec::new(),
            full: false,
            parent: ParentChoice::Latest,
            tiering: Tiering::default(),
        }
    }
}

/// What a run did to the message logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Streams in the set.
    pub streams: u64,
    /// Streams not in the parent.
    pub streams_new: u64,
    /// Streams that grew and got new segments.
    pub streams_appended: u64,
    /// Streams reused from the parent without reading them.
    pub streams_unchanged: u64,
    /// Streams whose stored prefix no longer matched the source: stored again.
    pub streams_rewritten: u64,
    /// Streams a full run re-read and found to hold what was stored (they may also have
    /// grown: then they count as appended too).
    pub streams_verified: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Source bytes appended since the parent.
    pub bytes_appended: u64,
    /// Plaintext bytes of the segments written (appended bytes plus merged tails).
    pub bytes_written: u64,
    /// Segments written.
    pub segments_written: u64,
    /// Tail merges.
    pub merges: u64,
    /// Stored segments a full run verified.
    pub segments_verified: u64,
    /// Stored segments that were missing from the repository (a lost pack) and were
    /// stored again from the source.
    pub segments_restored: u64,
}

impl LogStats {
    pub(crate) fn add(mut self, o: LogStats) -> LogStats {
        self.streams += o.streams;
        self.streams_new += o.streams_new;
        self.streams_appended += o.streams_appended;
        self.streams_unchanged += o.streams_unchanged;
        self.streams_rewritten += o.streams_rewritten;
        self.streams_verified += o.streams_verified;
        self.bytes_read += o.bytes_read;
        self.bytes_appended += o.bytes_appended;
        self.bytes_written += o.bytes_written;
        self.segments_written += o.segments_written;
        self.merges += o.merges;
        self.segments_verified += o.segments_verified;
        self.segments_restored += o.segments_restored;
        self
    }

    pub(crate) fn appended(mut self, a: AppendStats) -> LogStats {
        self.bytes_appended += a.appended;
        self.bytes_written += a.written;
        self.segments_written += a.segments;
        self.merges += a.merges;
        self
    }
}

/// What a run did to the files (media store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Files not in the parent.
    pub files_new: u64,
    /// Files read again because they changed.
    pub files_changed: u64,
    /// Files reused unread.
    pub files_unchanged: u64,
    /// Files that looked unchanged but were read again because their stored data is
    /// missing from the repository.
    pub files_reread: u64,
    /// Logical size of all files.
    pub bytes_total: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// Something left out of the set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The local path or `tenant/conversation`.
    pub path: String,
    /// One line.
    pub message: String,
}

/// What a backup run did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: SnapshotId,
    /// Full or incremental.
    pub kind: SnapshotKind,
    /// The snapshot built on.
    pub parent: Option<SnapshotId>,
    /// Message logs.
    pub logs: LogStats,
    /// Files (media store), if the set has them.
    pub files: Option<FileStats>,
    /// Database dumps stored.
    pub dumps: u64,
    /// Bytes of those dumps.
    pub dump_bytes: u64,
    /// Plaintext bytes of the blobs this run added to the repository.
    pub bytes_added: u64,
    /// Those bytes after compression.
    pub bytes_stored: u64,
    /// Blobs added.
    pub blobs_added: u64,
    /// Wall-clock time.
    pub duration: Duration,
    /// What was left out: sources that could not be read (the run is partial).
    pub problems: Vec<Problem>,
    /// What is worth knowing but lost nothing: logs edited in place (stored again from
    /// the edit), parent trees or entries that could not be read (read again), entries
    /// skipped on purpose.
    pub notices: Vec<Problem>,
}

/// A conversation an embedding server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Its tenant (organisation, workspace). A non-empty name without `/` or NUL, not
    /// `.` or `..`.
    pub tenant: String,
    /// Its id within the tenant, with the same rules.
    pub id: String,
    /// The highest seq it holds (records are numbered from 1 up).
    pub last_seq: u64,
}

/// One record a [`MessageSource`] hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRecord<'a> {
    /// Its number in its conversation, ascending, from 1.
    pub seq: u64,
    /// When it was sent, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The server's bytes for it (typically one JSON object), at most [`MAX_RECORD`].
    pub data: &'a [u8],
}

/// The records of an embedding server, read by a backup session.
///
/// The session asks for each conversation's records from the seq after the one it last
/// stored (its cursor), and, about once a week per busy conversation, for the records of
/// its unsealed tail again to merge them (see [`Tiering`]). A full run asks for all of
/// them. Called from several threads at once.
pub trait MessageSource: Sync {
    /// Every conversation, with its highest seq.
    fn conversations(&self) -> std::io::Result<Vec<Conversation>>;

    /// Calls `visit` with each record of the conversation whose seq is at least
    /// `from_seq`, in ascending seq order. Edits and deletions are records like any other.
    /// An error from `visit` must be returned as is.
    fn read(
        &self,
        conversation: &Conversation,
        from_seq: u64,
        visit: &mut dyn FnMut(MessageRecord<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()>;
}

/// One backup set being written: message logs, files and dumps, committed as one
/// snapshot.
///
/// Blocking, and `Send`: an async server runs it inside
/// `tokio::task::spawn_blocking`. The engine parallelises internally (rayon and its own
/// threads); nothing here holds a lock across a call into the caller's
/// [`MessageSource`].
pub struct BackupSession<'r> {
    pub(crate) repo: &'r Repository,
    pub(crate) writer: BlobWriter<'r>,
    pub(crate) opts: BackupOptions,
    host: String,
    start: Instant,
    parent: Option<Snapshot>,
    pub(crate) parent_root: Option<Tree>,
    pub(crate) logs: Option<(Node, LogStats)>,
    files: Option<(Node, FileStats)>,
    dumps: Vec<Node>,
    dump_bytes: u64,
    cursors: BTreeMap<String, Vec<u8>>,
    pub(crate) problems: Vec<Problem>,
    pub(crate) notices: Vec<Problem>,
}

impl std::fmt::Debug for BackupSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSession")
            .field("name", &self.opts.name)
            .field("parent", &self.parent.as_ref().map(|p| p.id))
            .finish_non_exhaustive()
    }
}

impl<'r> BackupSession<'r> {
    /// Starts a backup set, finding its parent.
    ///
    /// A key that cannot read snapshots (a `backup` key) builds on its own latest set of
    /// the same name, which its local journal remembers (the journal is in the cache
    /// directory: a node that loses it makes one run that reads everything).
    pub fn start(repo: &'r Repository, opts: BackupOptions) -> Result<Self> {
        check_set_name(&opts.name)?;
        let host = opts.host.clone().unwrap_or_else(chatvault_fs::hostname);
        let parent = match opts.parent {
            ParentChoice::None => None,
            ParentChoice::Snapshot(id) => {
                let s = repo.load_parent_snapshot(id)?;
                if s.record.source_kind != SOURCE_KIND {
                    return Err(Error::NotABackupSet {
                        snapshot: id.to_hex(),
                        kind: s.record.source_kind,
                    });
                }
                Some(s)
            }
            // A backup key finds its own latest set in its local journal.
            ParentChoice::Latest => chatvault_fs::latest_snapshot(
                repo,
                SOURCE_KIND,
                &host,
                std::slice::from_ref(&opts.name),
            )?,
        };
        // A parent whose tree cannot be read (a lost pack) costs reuse, not the backup.
        let mut notices = Vec::new();
        let parent_root = match &parent {
            Some(p) => match repo.read_parent_tree(p.record.root) {
                Ok(t) => Some(t),
                Err(e @ (chatvault_core::Error::Io(_) | chatvault_core::Error::Cache(_))) => {
                    return Err(e.into());
                }
                Err(e) => {
                    notices.push(Problem {
                        path: opts.name.clone(),
                        message: format!("parent set's tree unreadable, reading everything: {e}"),
                    });
                    None
                }
            },
            None => None,
        };
        Ok(BackupSession {
            repo,
            writer: repo.writer()?,
            opts,
            host,
            start: Instant::now(),
            parent,
            parent_root,
            logs: None,
            files: None,
            dumps: Vec::new(),
            dump_bytes: 0,
            cursors: BTreeMap::new(),
            problems: Vec::new(),
            notices,
        })
    }

    /// The snapshot this set builds on.
    pub fn parent(&self) -> Option<SnapshotId> {
        self.parent.as_ref().map(|p| p.id)
    }

    fn parent_part(&self, name: &[u8]) -> Option<BlobId> {
        self.parent_root.as_ref()?.get(name)?.subtree
    }

    pub(crate) fn parent_logs(&self) -> Result<Option<Tree>> {
        Ok(match self.parent_part(LOGS) {
            Some(id) => Some(self.repo.read_parent_tree(id)?),
            None => None,
        })
    }

    pub(crate) fn logs_walker(&self) -> LogsWalker<'_, 'r> {
        LogsWalker {
            repo: self.repo,
            writer: &self.writer,
            tiering: self.opts.tiering,
            full: self.opts.full,
            problems: Mutex::new(Vec::new()),
            notices: Mutex::new(Vec::new()),
            layout: None,
        }
    }

    pub(crate) fn set_logs(
        &mut self,
        lists: (Vec<Problem>, Vec<Problem>),
        tree: BlobId,
        stats: LogStats,
    ) {
        self.problems.extend(lists.0);
        self.notices.extend(lists.1);
        self.logs = Some((
            Node {
                name: LOGS.to_vec(),
                subtree: Some(tree),
                content: Vec::new(),
                meta: NodeMeta::dir().encode(),
            },
            stats,
        ));
    }

    /// Backs up a folder of JSONL message logs (every regular file below it is a log; the
    /// first two levels are read as tenant and conversation when restoring by those).
    /// A log whose size grew and whose stored prefix still matches its digest gets
    /// segments for the appended bytes only; any other change stores it again.
    pub fn backup_logs_dir(&mut self, dir: &Path) -> Result<LogStats> {
        if self.logs.is_some() {
            return Err(Error::invalid(
                "backup set",
                "message logs were already added",
            ));
        }
        let parent = self.parent_logs()?;
        let walker = self.logs_walker();
        let md = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !md.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"),
            ));
        }
        let (tree, stats) = walker.dir(dir, parent.as_ref())?;
        let lists = walker.into_lists();
        self.set_logs(lists, tree, stats);
        Ok(stats)
    }

    /// Backs up an embedding server's conversations: for each, the records after its
    /// cursor become new segments.
    pub fn backup_messages(&mut self, source: &dyn MessageSource) -> Result<LogStats> {
        if self.logs.is_some() {
            return Err(Error::invalid(
                "backup set",
                "message logs were already added",
            ));
        }
        let mut convs = source.conversations().map_err(|e| Error::Source {
            conversation: "(listing)".into(),
            source: e,
        })?;
        for c in &convs {
            check_name(&c.tenant, "tenant name")?;
            check_name(&c.id, "conversation id")?;
        }
        convs.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
        if let Some(w) = convs
            .windows(2)
            .find(|w| (&w[0].tenant, &w[0].id) == (&w[1].tenant, &w[1].id))
        {
            return Err(Error::invalid(
                "conversation list",
                format!("{}/{} listed twice", w[0].tenant, w[0].id),
            ));
        }
        let parent = self.parent_logs()?;
        let walker = self.logs_walker();
        let mut tenants: BTreeMap<&str, Vec<&Conversation>> = BTreeMap::new();
        for c in &convs {
            tenants.entry(&c.tenant).or_default().push(c);
        }
        let mut nodes = Vec::with_capacity(tenants.len());
        let mut stats = LogStats::default();
        for (tenant, convs) in tenants {
            let parent_tenant = walker.parent_subtree(
                tenant,
                parent.as_ref().and_then(|t| t.get(tenant.as_bytes())),
            );
            let results = convs
                .par_iter()
                .map(|c| {
                    let prev = parent_tenant.as_ref().and_then(|t| t.get(c.id.as_bytes()));
                    walker.conversation(source, c, prev)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut tenant_nodes = Vec::with_capacity(results.len());
            for (node, s) in results {
                stats = stats.add(s);
                tenant_nodes.push(node);
            }
            let id = self.writer.write_tree(&Tree::new(tenant_nodes)?)?;
            nodes.push(Node {
                name: tenant.as_bytes().to_vec(),
                subtree: Some(id),
                content: Vec::new(),
                meta: NodeMeta::dir().encode(),
            });
        }
        let tree = self.writer.write_tree(&Tree::new(nodes)?)?;
        let lists = walker.into_lists();
        self.set_logs(lists, tree, stats);
        Ok(stats)
    }

    /// Backs up a directory of files (the media store) into the set; `exclude` takes
    /// `chatvault-fs` patterns. Files unchanged since the parent are reused unread.
    pub fn backup_files(&mut self, dir: &Path, exclude: &[String]) -> Result<FileStats> {
        if self.files.is_some() {
            return Err(Error::invalid("backup set", "files were already added"));
        }
        let opts = chatvault_fs::DirOptions {
            exclude: exclude.to_vec(),
            parent: if self.opts.full {
                None
            } else {
                self.parent_part(FILES)
            },
            progress: chatvault_fs::FsProgress::default(),
        };
        let d = chatvault_fs::backup_dir(self.repo, &self.writer, dir, &opts)?;
        // As for a directory backup: only files that could not be read are left out.
        for p in &d.problems {
            let list = match p.kind {
                chatvault_fs::ProblemKind::Unreadable => &mut self.problems,
                _ => &mut self.notices,
            };
            list.push(Problem {
                path: p.path.display().to_string(),
                message: p.message.clone(),
            });
        }
        let stats = FileStats {
            files_new: d.files_new,
            files_changed: d.files_changed,
            files_unchanged: d.files_unchanged,
            files_reread: d.files_reread,
            bytes_total: d.bytes_total,
            bytes_read: d.bytes_read,
        };
        self.files = Some((
            Node {
                name: FILES.to_vec(),
                subtree: Some(d.tree),
                content: Vec::new(),
                meta: d.meta,
            },
            stats,
        ));
        Ok(stats)
    }

    /// Stores a database dump (read to its end) as `db/NAME` in the set, with the
    /// server's position for it (a WAL position, a transaction id) recorded as the
    /// snapshot's cursor `db/NAME`. Chunks shared with earlier dumps are stored once.
    pub fn backup_dump<R: Read + Send>(
        &mut self,
        name: &str,
        reader: R,
        cursor: Option<Vec<u8>>,
    ) -> Result<u64> {
        check_name(name, "dump name")?;
        if self.dumps.iter().any(|n| n.name == name.as_bytes()) {
            return Err(Error::invalid("dump name", format!("{name} added twice")));
        }
        let (node, len) = chatvault_fs::stream_node(
            &self.writer,
            name,
            reader,
            &chatvault_fs::FsProgress::default(),
        )?;
        self.dumps.push(node);
        self.dump_bytes += len;
        if let Some(c) = cursor {
            self.cursors.insert(format!("db/{name}"), c);
        }
        Ok(len)
    }

    /// Finishes the writer (everything durable) and saves the set's snapshot.
    pub fn commit(self) -> Result<BackupReport> {
        let BackupSession {
            repo,
            writer,
            opts,
            host,
            start,
            parent,
            logs,
            files,
            dumps,
            dump_bytes,
            cursors,
            mut problems,
            mut notices,
            ..
        } = self;
        let mut nodes = Vec::new();
        let log_stats = logs.as_ref().map(|l| l.1).unwrap_or_default();
        let file_stats = files.as_ref().map(|f| f.1);
        nodes.extend(logs.map(|l| l.0));
        nodes.extend(files.map(|f| f.0));
        let n_dumps = dumps.len() as u64;
        if !dumps.is_empty() {
            let mut meta = chatvault_fs::FsMeta::empty(chatvault_fs::EntryKind::Dir);
            meta.mode = 0o700;
            nodes.push(Node {
                name: DB.to_vec(),
                subtree: Some(writer.write_tree(&Tree::new(dumps)?)?),
                content: Vec::new(),
                meta: meta.encode(),
            });
        }
        let root = writer.write_tree(&Tree::new(nodes)?)?;
        let stats = writer.finish()?;
        let kind = if opts.full || parent.is_none() {
            SnapshotKind::Full
        } else {
            SnapshotKind::Incremental
        };
        let fs = file_stats.unwrap_or_default();
        problems.sort_by(|a, b| a.path.cmp(&b.path));
        notices.sort_by(|a, b| a.path.cmp(&b.path));
        let record = SnapshotRecord {
            time_unix_ms: now_ms(),
            host,
            tags: opts.tags,
            source_kind: SOURCE_KIND.into(),
            paths: vec![opts.name],
            parent: parent.as_ref().map(|p| p.id),
            kind,
            root,
            summary: Summary {
                files: log_stats.streams
                    + fs.files_new
                    + fs.files_changed
                    + fs.files_unchanged
                    + fs.files_reread
                    + n_dumps,
                bytes_read: log_stats.bytes_read + fs.bytes_read + dump_bytes,
                bytes_added: stats.bytes_new,
                blobs_added: stats.blobs_new,
                duration_ms: start.elapsed().as_millis() as u64,
                errors: problems.len() as u64,
            },
            cursors,
            writer_seq: 0,
            prev_writer_snapshot: None,
            origin: None,
        };
        let snapshot = repo.save_snapshot(record)?;
        Ok(BackupReport {
            snapshot,
            kind,
            parent: parent.map(|p| p.id),
            logs: log_stats,
            files: file_stats,
            dumps: n_dumps,
            dump_bytes,
            bytes_added: stats.bytes_new,
            bytes_stored: stats.bytes_compressed,
            blobs_added: stats.blobs_new,
            duration: start.elapsed(),
            problems,
            notices,
        })
    }
}

/// Backs up a chat server's data directory as one set: `DIR/logs` as message logs, the
/// rest of `DIR` (the media store, configuration) as files.
pub fn backup_data_dir(repo: &Repository, dir: &Path, opts: BackupOptions) -> Result<BackupReport> {
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    let mut session = BackupSession::start(repo, opts)?;
    let logs = dir.join("logs");
    if logs.is_dir() {
        session.backup_logs_dir(&logs)?;
    }
    session.backup_files(&dir, &[logs.to_string_lossy().into_owned()])?;
    session.commit()
}

/// The longest backup set name accepted, in bytes.
pub const MAX_SET_NAME: usize = 1024;

/// Refuses set names that could not be shown or compared safely: empty, longer than
/// [`MAX_SET_NAME`], or holding control characters (NUL, newlines, escapes). A set name is
/// a label, never a path component, so `/` is fine: the command line's default is the
/// data directory's absolute path.
pub(crate) fn check_set_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_SET_NAME {
        Some("longer than 1024 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::invalid(
            "backup set name",
            format!("{name:?}: {why}"),
        )),
    }
}

/// Refuses names that could not be a single path component on restore (the directory
/// frontend's rule).
pub(crate) fn check_name(name: &str, what: &str) -> Result<()> {
    match chatvault_fs::check_name(name.as_bytes()) {
        None => Ok(()),
        Some(why) => Err(Error::invalid(what, format!("{name:?}: {why}"))),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stream's previous node, decoded and checked; `None` if there is none or it does not
/// decode (the stream is then stored anew, with a problem noted).
pub(crate) struct Previous {
    /// The node as the parent stored it, reused as is when nothing changed.
    pub(crate) node: Node,
    pub(crate) meta: NodeMeta,
    pub(crate) segments: Segments,
}

pub(crate) struct LogsWalker<'a, 'r> {
    pub(crate) repo: &'a Repository,
    pub(crate) writer: &'a BlobWriter<'r>,
    pub(crate) tiering: Tiering,
    pub(crate) full: bool,
    /// What was left out.
    pub(crate) problems: Mutex<Vec<Problem>>,
    /// What lost nothing.
    pub(crate) notices: Mutex<Vec<Problem>>,
    /// A layout's record fields and checks (`layout.rs`); `None`: the default records.
    pub(crate) layout: Option<crate::layout::LayoutContext>,
}

impl LogsWalker<'_, '_> {
    /// Something left out of the set: the run is partial.
    pub(crate) fn problem(&self, path: impl Into<String>, message: impl Into<String>) {
        Self::push(&self.problems, path.into(), message.into());
    }

    /// What was left out, and what lost nothing.
    pub(crate) fn into_lists(self) -> (Vec<Problem>, Vec<Problem>) {
        let take = |m: Mutex<Vec<Problem>>| m.into_inner().unwrap_or_else(|p| p.into_inner());
        (take(self.problems), take(self.notices))
    }

    /// Something that lost nothing.
    pub(crate) fn notice(&self, path: impl Into<String>, message: impl Into<String>) {
        Self::push(&self.notices, path.into(), message.into());
    }

    fn push(list: &Mutex<Vec<Problem>>, path: String, message: String) {
        list.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Problem { path, message });
    }

    pub(crate) fn parent_subtree(&self, path: &str, node: Option<&Node>) -> Option<Tree> {
        let id = node?.subtree?;
        match self.repo.read_parent_tree(id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.notice(
                    path,
                    format!("parent tree unreadable, reading everything: {e}"),
                );
                None
            }
        }
    }

    pub(crate) fn previous(
        &self,
        path: &str,
        node: Option<&Node>,
        kind: NodeKind,
    ) -> Option<Previous> {
        let node = node.filter(|n| n.subtree.is_none())?;
        let meta = match NodeMeta::decode(&node.meta, path) {
            Ok(m) if m.kind == kind => m,
            Ok(_) => return None,
            Err(e) => {
                self.notice(path, format!("parent entry unreadable, storing anew: {e}"));
                return None;
            }
        };
        if let Err(e) = meta.check_content(&node.content, path) {
            self.notice(path, format!("parent entry unreadable, storing anew: {e}"));
            return None;
        }
        let segments = Segments {
            content: node.content.clone(),
            meta: meta.segments.clone(),
        };
        Some(Previous {
            node: node.clone(),
            meta,
            segments,
        })
    }

    /// A directory of log files, recursively; returns its tree.
    fn dir(&self, path: &Path, parent: Option<&Tree>) -> Result<(BlobId, LogStats)> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            names.push(entry.file_name().as_bytes().to_vec());
        }
        names.sort_unstable();
        let results = names
            .into_par_iter()
            .map(|name| {
                let child = path.join(std::ffi::OsStr::from_bytes(&name));
                let prev = parent.and_then(|t| t.get(&name));
                self.child(&child, name, prev)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut nodes = Vec::new();
        let mut stats = LogStats::default();
        for (node, s) in results.into_iter().flatten() {
            nodes.push(node);
            stats = stats.add(s);
        }
        Ok((self.writer.write_tree(&Tree::new(nodes)?)?, stats))
    }

    fn child(
        &self,
        path: &Path,
        name: Vec<u8>,
        prev: Option<&Node>,
    ) -> Result<Option<(Node, LogStats)>> {
        let shown = path.display().to_string();
        let md = match std::fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) => {
                self.problem(shown, e.to_string());
                return Ok(None);
            }
        };
        if md.is_dir() {
            let parent = self.parent_subtree(&shown, prev);
            let (tree, stats) = self.dir(path, parent.as_ref())?;
            Ok(Some((
                Node {
                    name,
                    subtree: Some(tree),
                    content: Vec::new(),
                    meta: NodeMeta::dir().encode(),
                },
                stats,
            )))
        } else if md.is_file() {
            let prev_stream = self.previous(&shown, prev, NodeKind::Lines);
            self.log_file(path, &name, &md, prev_stream)
        } else {
            self.problem(shown, "not a regular file or directory: left out");
            Ok(None)
        }
    }

    /// One JSONL log file.
    pub(crate) fn log_file(
        &self,
        path: &Path,
        name: &[u8],
        md: &Metadata,
        prev: Option<Previous>,
    ) -> Result<Option<(Node, LogStats)>> {
        let shown = path.display().to_string();
        let stamp = Stamp {
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            inode: md.ino(),
        };
        let mut stats = LogStats {
            streams: 1,
            ..LogStats::default()
        };
        // A stream with a lost segment is read whole and verified, as in a full run.
        let verify = self.full || !self.all_present(prev.as_ref())?;
        if let Some(p) = &prev
            && !verify
            && p.meta.stamp == Some(stamp)
        {
            stats.streams_unchanged = 1;
            return Ok(Some((p.node.clone(), stats)));
        }
        // A log that only grew: read the window before its old end (to check it against
        // the stored digest), and what follows. Anything else is read whole.
        let grown = prev.as_ref().filter(|p| {
            !verify
                && p.meta.digest.is_some()
                && p.meta.stamp.is_some_and(|s| s.inode == stamp.inode)
                && stamp.size >= p.meta.len
        });
        let read = match grown {
            Some(p) => {
                let back = (WINDOW as u64).max(p.segments.tail_bytes());
                let from = p.meta.len.saturating_sub(back);
                read_from(path, from).map(|bytes| {
                    let at = (p.meta.len - from) as usize;
                    let ok =
                        bytes.len() >= at && Some(window_digest(&bytes[..at])) == p.meta.digest;
                    (from as usize, bytes, ok)
                })
            }
            None => read_from(path, 0).map(|bytes| (0, bytes, false)),
        };
        let (from, data, grown_ok) = match read {
            Ok(r) => r,
            Err(e) => {
                self.problem(&shown, format!("{e}; the previous backup of it is kept"));
                return Ok(prev.map(|p| (p.node, stats)));
            }
        };
        let (from, data) = if grown.is_some() && !grown_ok {
            // The window changed: the log was rewritten, not appended to. Read it whole.
            match read_from(path, 0) {
                Ok(d) => (0, d),
                Err(e) => {
                    self.problem(&shown, format!("{e}; the previous backup of it is kept"));
                    return Ok(prev.map(|p| (p.node, stats)));
                }
            }
        } else {
            (from, data)
        };
        stats.bytes_read = data.len() as u64;
        let old = match &prev {
            Some(p) if grown_ok => p.segments.clone(),
            // Read whole: keep the stored segments that still match (a full run's
            // verification, or a log copied or rotated with its history intact), and
            // store again those of them that are missing from the repository.
            Some(p) => {
                let kept = self.keep_matching(&shown, p.segments.clone(), &data, &mut stats)?;
                self.restore_missing(&kept, &data, &mut stats)?;
                kept
            }
            None => {
                stats.streams_new = 1;
                Segments::default()
            }
        };
        // Offsets from here on are in `data`, which starts at file offset `from`.
        let base = old.len() as usize - from;
        let continues_at = |at: usize| {
            if at > 0 {
                data[at - 1] != b'\n'
            } else {
                from > 0
            }
        };
        let new = self.lines(&shown, data[base..].to_vec(), continues_at(base));
        let kept = stats.streams_new == 0 && stats.streams_rewritten == 0;
        stats.streams_appended = u64::from(kept && !new.bytes.is_empty());
        stats.streams_verified = u64::from(kept && verify);
        let (segments, a) = segment::append(self.writer, old, new, &self.tiering, |n| {
            let at = base - n as usize;
            Ok(self.lines_again(data[at..base].to_vec(), continues_at(at)))
        })?;
        stats = stats.appended(a);
        let mut stamp = stamp;
        stamp.size = (from + data.len()) as u64;
        let meta = stream_meta(
            NodeKind::Lines,
            &segments,
            Some(window_digest(&data)),
            Some(stamp),
        );
        Ok(Some((stream_node(name, segments, &meta), stats)))
    }

    /// One conversation of an embedding server.
    fn conversation(
        &self,
        source: &dyn MessageSource,
        c: &Conversation,
        prev: Option<&Node>,
    ) -> Result<(Node, LogStats)> {
        let shown = format!("{}/{}", c.tenant, c.id);
        let prev = self.previous(&shown, prev, NodeKind::Framed);
        let mut stats = LogStats {
            streams: 1,
            ..LogStats::default()
        };
        let name = c.id.as_bytes();
        // A stream with a lost segment is read whole and verified, as in a full run.
        let verify = self.full || !self.all_present(prev.as_ref())?;
        if let Some(p) = &prev
            && !verify
            && p.meta.last_seq == Some(c.last_seq)
        {
            stats.streams_unchanged = 1;
            return Ok((p.node.clone(), stats));
        }
        let read = |from: u64, to: u64| -> Result<Batch> {
            let mut batch = Batch::default();
            let mut last: Option<u64> = None;
            source
                .read(c, from, &mut |r: MessageRecord<'_>| {
                    let (seq, ts, data) = (r.seq, r.ts_ms, r.data);
                    if seq < from || last.is_some_and(|l| seq <= l) {
                        return Err(std::io::Error::other(format!(
                            "record seq {seq} out of order (after {last:?}, from {from})"
                        )));
                    }
                    if data.len() > MAX_RECORD {
                        return Err(std::io::Error::other(format!(
                            "record seq {seq} is {} bytes, over the {MAX_RECORD}-byte limit",
                            data.len()
                        )));
                    }
                    last = Some(seq);
                    if seq <= to {
                        batch.push_framed(seq, ts, data);
                    }
                    Ok(())
                })
                .map_err(|e| Error::Source {
                    conversation: shown.clone(),
                    source: e,
                })?;
            Ok(batch)
        };
        let mut old = match &prev {
            Some(p) => p.segments.clone(),
            None => {
                stats.streams_new = 1;
                Segments::default()
            }
        };
        let prev_last = prev.as_ref().and_then(|p| p.meta.last_seq);
        let new = if verify {
            let all = read(0, u64::MAX)?;
            stats.bytes_read = all.bytes.len() as u64;
            old = self.keep_matching(&shown, old, &all.bytes, &mut stats)?;
            self.restore_missing(&old, &all.bytes, &mut stats)?;
            let base = old.len() as usize;
            let rest = all.split_off(base);
            let kept = stats.streams_rewritten == 0 && prev.is_some();
            stats.streams_verified = u64::from(kept);
            stats.streams_appended = u64::from(kept && !rest.bytes.is_empty());
            rest
        } else {
            let b = read(prev_last.map_or(0, |s| s + 1), u64::MAX)?;
            stats.bytes_read = b.bytes.len() as u64;
            if !b.bytes.is_empty() && prev.is_some() {
                stats.streams_appended = 1;
            }
            b
        };
        let tail_first = old.tail_first_seq();
        let tail_last = old.last_seq();
        let (segments, a) = segment::append(self.writer, old, new, &self.tiering, |_| {
            read(tail_first.unwrap_or(0), tail_last.unwrap_or(u64::MAX))
        })?;
        stats = stats.appended(a);
        let meta = stream_meta(NodeKind::Framed, &segments, None, None);
        Ok((stream_node(name, segments, &meta), stats))
    }
}

/// The bytes before a log's end whose digest detects a rewrite on the next incremental run.
const WINDOW: usize = 64 << 10;

/// BLAKE3 of the last [`WINDOW`] bytes of `data` (all of it if shorter), which must end
/// where the stream ends.
fn window_digest(data: &[u8]) -> [u8; 32] {
    *blake3::hash(&data[data.len().saturating_sub(WINDOW)..]).as_bytes()
}

/// The rest of a file from `offset`.
fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

impl LogsWalker<'_, '_> {
    /// The stored segments, from the first, that still hold the bytes at their offsets in
    /// `data` (the whole stream as read now); the first that does not and all after it
    /// are dropped, to be stored again, and the stream counts as rewritten.
    fn keep_matching(
        &self,
        shown: &str,
        mut old: Segments,
        data: &[u8],
        stats: &mut LogStats,
    ) -> Result<Segments> {
        let verified = verify_prefix(self.repo, &old, data);
        stats.segments_verified = verified as u64;
        if verified < old.content.len() {
            // An edit in place, which the frontend handles: not an error.
            self.notice(
                shown,
                "stored segments differ from the source (edited in place): stored again \
                 from the first difference",
            );
            stats.streams_rewritten = 1;
            old.content.truncate(verified);
            old.meta.truncate(verified);
        }
        Ok(old)
    }
}

impl LogsWalker<'_, '_> {
    /// Whether every segment of the parent's stream is present in the repository (true
    /// without a parent).
    fn all_present(&self, prev: Option<&Previous>) -> Result<bool> {
        Ok(match prev {
            Some(p) => self.repo.blobs_present(&p.segments.content)?,
            None => true,
        })
    }

    /// Stores again, from `data` (the whole stream as read now), every kept segment that is
    /// missing from the repository. `kept` holds exactly the bytes at its offsets in `data`
    /// ([`verify_prefix`]), so each is stored under its recorded id.
    fn restore_missing(&self, kept: &Segments, data: &[u8], stats: &mut LogStats) -> Result<()> {
        let mut off = 0usize;
        for c in &kept.content {
            let end = off + c.len as usize;
            if !self.repo.blob_present(&c.id)? {
                let stored = self
                    .writer
                    .write_blob(chatvault_core::BlobType::Data, &data[off..end])?;
                debug_assert_eq!(stored.id, c.id);
                stats.segments_restored += 1;
            }
            off = end;
        }
        Ok(())
    }
}

/// How many of the stored segments, from the first, hold exactly the bytes at their
/// offsets in `data` (their ids are recomputed; nothing is stored).
fn verify_prefix(repo: &Repository, old: &Segments, data: &[u8]) -> usize {
    let mut off = 0usize;
    for (i, c) in old.content.iter().enumerate() {
        let end = off + c.len as usize;
        if end > data.len() || repo.blob_id(chatvault_core::BlobType::Data, &data[off..end]) != c.id
        {
            return i;
        }
        off = end;
    }
    old.content.len()
}

pub(crate) fn stream_node(name: &[u8], segments: Segments, meta: &NodeMeta) -> Node {
    Node {
        name: name.to_vec(),
        subtree: None,
        content: segments.content,
        meta: meta.encode(),
    }
}

pub(crate) fn stream_meta(
    kind: NodeKind,
    segments: &Segments,
    digest: Option<[u8; 32]>,
    stamp: Option<Stamp>,
) -> NodeMeta {
    let ranges = segments
        .meta
        .iter()
        .fold(None, |acc, s| Ranges::merge(acc, s.ranges));
    NodeMeta {
        kind,
        len: segments.len(),
        digest,
        segments: segments.meta.clone(),
        stamp,
        last_seq: ranges.map(|r| r.seq_max),
        last_ts: ranges.map(|r| r.ts_max),
        ..NodeMeta::empty(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_can_move_to_another_thread() {
        fn is_send<T: Send>() {}
        is_send::<BackupSession<'static>>();
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(check_name(bad, "t").is_err(), "{bad:?}");
        }
        check_name("dm22", "t").unwrap();
        check_name("二月", "t").unwrap();
    }

    /// README's quick start names no set: the command line then uses the data
    /// directory's absolute path, which the component rule above refused.
    #[test]
    fn a_set_name_may_be_an_absolute_path_but_not_empty_long_or_control() {
        for good in ["chat", "/srv/chat", "/srv/chat server/二月", "a/b"] {
            check_set_name(good).unwrap();
        }
        let long = "x".repeat(MAX_SET_NAME + 1);
        for bad in ["", "a\0b", "a\nb", "\u{1b}[2J", long.as_str()] {
            assert!(check_set_name(bad).is_err(), "{bad:?}");
        }
        check_set_name(&"x".repeat(MAX_SET_NAME)).unwrap();
    }
}
