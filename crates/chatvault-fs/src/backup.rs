//! Backing up paths: a parallel walk that reuses the parent snapshot's chunk lists for
//! files that look unchanged and writes one tree per directory, bottom-up.
//!
//! Invariants:
//! - A file is reused from the parent only when size, mtime, ctime and inode all match,
//!   the parent recorded a digest for it, and every chunk it names is still present in the
//!   repository ([`Repository::blobs_present`]); everything else is read and chunked again
//!   (and deduplicated by the engine, so unchanged bytes are never stored twice, and lost
//!   ones are stored again). A directory's tree is reused only if it is present too.
//! - The parent is the latest snapshot ([`chatvault_core::Recency`]) of the same paths
//!   and host signed by the same writer key: another writer's snapshot never supplies the
//!   chunk lists of this one.
//! - Local problems (a file vanished, permission denied, a socket) never stop the run:
//!   they become [`Problem`]s, and unreadable entries stay in the tree with their error
//!   recorded. Repository errors stop it.
//! - Memory is bounded by the directories being walked at once (their node lists), the
//!   engine's bounded queues, and one small file buffer per worker thread; never by the
//!   number of files or their size.
//! - The snapshot is saved only after the writer's `finish`, so it never references data
//!   that is not durable.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatvault_core::{
    BlobId, BlobWriter, Node, Repository, Snapshot, SnapshotFilter, SnapshotId, SnapshotKind,
    SnapshotRecord, Summary, Tree,
};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::meta::{EntryKind, FsMeta, Timestamp};
use crate::names;
use crate::pattern::{Patterns, read_pattern_file};
use crate::progress::{FsEvent, FsProgress};

/// The `source_kind` of snapshots of paths.
pub const SOURCE_KIND: &str = "fs";
/// The `source_kind` of snapshots of a single stream (`backup --stdin`).
pub const STDIN_SOURCE_KIND: &str = "stdin";

/// Files below this size are read whole and chunked on the worker thread; larger ones are
/// streamed through the engine's reader thread.
const SMALL_FILE: u64 = 1 << 20;

/// The signature line of a cache directory tag (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// Which snapshot an incremental backup compares against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The latest snapshot of the same paths from the same host.
    #[default]
    Latest,
    /// This snapshot.
    Snapshot(SnapshotId),
    /// None: every file is read.
    None,
}

/// Options for [`backup`].
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// The paths to back up. They are stored under their absolute path, so restoring puts
    /// `/srv/chat/media` at `TARGET/srv/chat/media`.
    pub paths: Vec<PathBuf>,
    /// Glob patterns of entries to leave out (see the crate docs for the syntax). By
    /// default, none.
    pub exclude: Vec<String>,
    /// Files holding more exclude patterns, one per line. By default, none.
    pub exclude_files: Vec<PathBuf>,
    /// Leave out directories holding a valid `CACHEDIR.TAG`. By default, disabled.
    pub exclude_caches: bool,
    /// Do not descend into directories on another filesystem than their source path (they
    /// are stored empty). By default, disabled.
    pub one_file_system: bool,
    /// The snapshot to compare against. By default, the latest of the same paths and host.
    pub parent: ParentChoice,
    /// Read and chunk every file even if the parent says it is unchanged; the snapshot
    /// is then recorded as full. Unchanged data is still stored only once. By default,
    /// disabled (incremental).
    pub full: bool,
    /// The host name recorded. By default, this machine's.
    pub host: Option<String>,
    /// Tags recorded with the snapshot. By default, none.
    pub tags: Vec<String>,
    /// Fail (and save no snapshot) if any file cannot be read. By default, disabled: the
    /// snapshot records the unreadable files and the run reports them.
    pub fail_on_error: bool,
    /// Progress callback. By default, none.
    pub progress: FsProgress,
}

/// What kind of problem an entry had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// It could not be read (or written, on restore); the run went on without it.
    Unreadable,
    /// It was skipped on purpose (a socket, FIFO or device; an entry already restored).
    Skipped,
    /// Restore refused it: it would escape the target or has a hostile name.
    Refused,
    /// Its stored data failed verification.
    Corrupt,
}

/// One entry that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry (a local path on backup, a snapshot path on restore).
    pub path: PathBuf,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// A one-line description.
    pub message: String,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The snapshot written.
    pub snapshot: SnapshotId,
    /// Full (everything read) or incremental.
    pub kind: SnapshotKind,
    /// The snapshot compared against.
    pub parent: Option<SnapshotId>,
    /// Files not in the parent.
    pub files_new: u64,
    /// Files in the parent that were read again because they changed.
    pub files_changed: u64,
    /// Files reused from the parent without being read.
    pub files_unchanged: u64,
    /// Files that looked unchanged but were read and stored again because chunks the
    /// parent names are missing from the repository (a lost pack).
    pub files_reread: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Logical size of every file in the snapshot.
    pub bytes_total: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Plaintext bytes of the chunks this run added to the repository.
    pub bytes_added: u64,
    /// Compressed bytes of the chunks this run added.
    pub bytes_stored: u64,
    /// Chunks and trees this run added.
    pub blobs_added: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Packs an earlier backup from the same cache uploaded before it failed, indexed by
    /// this run instead of being uploaded again.
    pub packs_adopted: u64,
    /// Wall-clock time.
    pub duration: Duration,
    /// Entries left out or unreadable.
    pub problems: Vec<Problem>,
}

impl BackupReport {
    /// Entries that could not be read (the run is partial if there are any).
    pub fn unreadable(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Unreadable)
            .count()
    }
}

/// Backs up `opts.paths` into a new snapshot.
pub fn backup(repo: &Repository, opts: &BackupOptions) -> Result<BackupReport> {
    let start = Instant::now();
    let sources = sources(&opts.paths)?;
    let host = opts.host.clone().unwrap_or_else(hostname);
    let paths: Vec<String> = sources
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    // The writer session (and its shared lock) starts before the parent is chosen: the
    // parent's chunk lists are reused without re-reading, so a prune must not be able to
    // delete them between choosing the parent and saving this snapshot.
    let writer = repo.writer()?;
    let parent = match opts.parent {
        ParentChoice::None => None,
        ParentChoice::Snapshot(id) => Some(repo.load_parent_snapshot(id)?),
        // A backup key finds its own latest snapshot in its local journal.
        ParentChoice::Latest => latest_snapshot(repo, SOURCE_KIND, &host, &paths)?,
    };
    let mut exclude = opts.exclude.clone();
    for f in &opts.exclude_files {
        exclude.extend(read_pattern_file(f)?);
    }
    let walker = Walker {
        repo,
        writer: &writer,
        exclude: Patterns::new(&exclude)?,
        exclude_caches: opts.exclude_caches,
        one_file_system: opts.one_file_system,
        progress: opts.progress.clone(),
        counts: Counts::default(),
        problems: Mutex::new(Vec::new()),
    };
    let parent_root = match &parent {
        Some(p) if !opts.full => walker.parent_tree(
            Path::new("/"),
            Some(&Node {
                name: b"/".to_vec(),
                subtree: Some(p.record.root),
                content: Vec::new(),
                meta: Vec::new(),
            }),
        ),
        _ => None,
    };
    // Incremental only if the parent's tree could be read: otherwise every file was read.
    let reuse = parent_root.is_some();
    let root = walker.root(&sources, parent_root)?;
    let Walker {
        counts, problems, ..
    } = walker;
    let problems = problems.into_inner().unwrap_or_else(|p| p.into_inner());
    let stats = writer.finish()?;
    let unreadable: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unreadable)
        .collect();
    if opts.fail_on_error && !unreadable.is_empty() {
        return Err(Error::Unreadable {
            count: unreadable.len(),
            first: format!(
                "{}: {}",
                unreadable[0].path.display(),
                unreadable[0].message
            ),
        });
    }
    let kind = if reuse {
        SnapshotKind::Incremental
    } else {
        SnapshotKind::Full
    };
    commit(
        repo,
        Run {
            source_kind: SOURCE_KIND,
            host,
            tags: opts.tags.clone(),
            paths,
            parent: parent.map(|p| p.id),
            kind,
            root,
            counts: counts.snapshot(),
            stats,
            start,
            problems,
        },
    )
}

/// Backs up one stream (a database dump on stdin) as a snapshot holding a single file
/// called `name`. Always a full snapshot: a stream has no parent to compare against, but
/// chunks it shares with earlier dumps are stored only once.
pub fn backup_stream<R: Read + Send>(
    repo: &Repository,
    name: &str,
    reader: R,
    opts: &BackupOptions,
) -> Result<BackupReport> {
    let start = Instant::now();
    let writer = repo.writer()?;
    let (node, size) = stream_node(&writer, name, reader, &opts.progress)?;
    let root = writer.write_tree(&Tree::new(vec![node])?)?;
    let stats = writer.finish()?;
    commit(
        repo,
        Run {
            source_kind: STDIN_SOURCE_KIND,
            host: opts.host.clone().unwrap_or_else(hostname),
            tags: opts.tags.clone(),
            paths: vec![name.into()],
            parent: None,
            kind: SnapshotKind::Full,
            root,
            counts: CountsSnapshot {
                files_new: 1,
                bytes_total: size,
                bytes_read: size,
                ..CountsSnapshot::default()
            },
            stats,
            start,
            problems: Vec::new(),
        },
    )
}

/// Stores a stream (a database dump) as a file node called `name`, for a snapshot another
/// frontend assembles; returns the node and the stream's length. [`restore`](crate::restore)
/// restores the tree holding it like any file.
pub fn stream_node<R: Read + Send>(
    writer: &BlobWriter<'_>,
    name: &str,
    reader: R,
    progress: &FsProgress,
) -> Result<(Node, u64)> {
    if let Some(why) = names::check_name(name.as_bytes()) {
        return Err(Error::Refused {
            entry: name.into(),
            reason: why,
        });
    }
    let mut reader = HashingReader::new(reader, progress.clone());
    let content = writer.write_stream(&mut reader);
    let content = match (content, reader.failed.take()) {
        (_, Some(e)) => return Err(Error::io(format!("<stream:{name}>"), e)),
        (c, None) => c?,
    };
    let mut meta = FsMeta::empty(EntryKind::File);
    meta.mode = 0o600;
    meta.size = reader.count;
    meta.mtime = timestamp(SystemTime::now());
    meta.digest = Some(*reader.hasher.finalize().as_bytes());
    let node = Node {
        name: name.as_bytes().to_vec(),
        subtree: None,
        content,
        meta: meta.encode(),
    };
    Ok((node, reader.count))
}

/// Options for [`backup_dir`].
#[derive(Debug, Clone, Default)]
pub struct DirOptions {
    /// Glob patterns of entries to leave out (see the crate docs). By default, none.
    pub exclude: Vec<String>,
    /// The same directory's tree in an earlier snapshot, to reuse unchanged files from.
    /// By default, none: every file is read.
    pub parent: Option<BlobId>,
    /// Progress callback. By default, none.
    pub progress: FsProgress,
}

/// What [`backup_dir`] stored.
#[derive(Debug, Clone)]
pub struct DirBackup {
    /// The directory's tree: its contents, as [`restore`](crate::restore) restores them.
    pub tree: BlobId,
    /// The directory's own node meta ([`FsMeta`], encoded).
    pub meta: Vec<u8>,
    /// Files not in the parent.
    pub files_new: u64,
    /// Files read again because they changed.
    pub files_changed: u64,
    /// Files reused from the parent unread.
    pub files_unchanged: u64,
    /// Files that looked unchanged but were read again: chunks the parent names are
    /// missing from the repository.
    pub files_reread: u64,
    /// Logical size of every file.
    pub bytes_total: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Entries left out or unreadable.
    pub problems: Vec<Problem>,
}

/// Backs up a directory's contents into `writer` as a tree, without saving a snapshot:
/// for a frontend that stores a directory (a chat server's media store) inside its own
/// snapshot. Same walk, reuse and problem handling as [`backup`].
pub fn backup_dir(
    repo: &Repository,
    writer: &BlobWriter<'_>,
    dir: &Path,
    opts: &DirOptions,
) -> Result<DirBackup> {
    let md = std::fs::metadata(dir).map_err(|source| Error::Source {
        path: dir.to_owned(),
        source,
    })?;
    if !md.is_dir() {
        return Err(Error::Source {
            path: dir.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        });
    }
    let walker = Walker {
        repo,
        writer,
        exclude: Patterns::new(&opts.exclude)?,
        exclude_caches: false,
        one_file_system: false,
        progress: opts.progress.clone(),
        counts: Counts::default(),
        problems: Mutex::new(Vec::new()),
    };
    let parent = opts.parent.and_then(|id| {
        walker.parent_tree(
            dir,
            Some(&Node {
                name: b"parent".to_vec(),
                subtree: Some(id),
                content: Vec::new(),
                meta: Vec::new(),
            }),
        )
    });
    let node = walker.dir(dir, b"dir".to_vec(), &md, parent, md.dev())?;
    let Walker {
        counts, problems, ..
    } = walker;
    let node = node.expect("no cache-tag exclusion, so the directory is never skipped");
    let tree = match node.subtree {
        Some(id) => id,
        None => writer.write_tree(&Tree::default())?,
    };
    let c = counts.snapshot();
    let mut problems = problems.into_inner().unwrap_or_else(|p| p.into_inner());
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(DirBackup {
        tree,
        meta: node.meta,
        files_new: c.files_new,
        files_changed: c.files_changed,
        files_unchanged: c.files_unchanged,
        files_reread: c.files_reread,
        bytes_total: c.bytes_total,
        bytes_read: c.bytes_read,
        problems,
    })
}

/// A finished run, before its snapshot is saved.
struct Run {
    source_kind: &'static str,
    host: String,
    tags: Vec<String>,
    paths: Vec<String>,
    parent: Option<SnapshotId>,
    kind: SnapshotKind,
    root: BlobId,
    counts: CountsSnapshot,
    stats: chatvault_core::WriteStats,
    start: Instant,
    problems: Vec<Problem>,
}

/// Saves the run's snapshot record (only after the writer finished, so everything it
/// references is durable) and reports it.
fn commit(repo: &Repository, run: Run) -> Result<BackupReport> {
    let Run {
        counts: c, stats, ..
    } = run;
    let mut problems = run.problems;
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    let unreadable = problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unreadable)
        .count();
    let record = SnapshotRecord {
        time_unix_ms: now_ms(),
        host: run.host,
        tags: run.tags,
        source_kind: run.source_kind.into(),
        paths: run.paths,
        parent: run.parent,
        kind: run.kind,
        root: run.root,
        summary: Summary {
            files: c.files_new + c.files_changed + c.files_unchanged + c.files_reread,
            bytes_read: c.bytes_read,
            bytes_added: stats.bytes_new,
            blobs_added: stats.blobs_new,
            duration_ms: run.start.elapsed().as_millis() as u64,
            errors: unreadable as u64,
        },
        cursors: BTreeMap::new(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    };
    let snapshot = repo.save_snapshot(record)?;
    Ok(BackupReport {
        snapshot,
        kind: run.kind,
        parent: run.parent,
        files_new: c.files_new,
        files_changed: c.files_changed,
        files_unchanged: c.files_unchanged,
        files_reread: c.files_reread,
        dirs: c.dirs,
        symlinks: c.symlinks,
        bytes_total: c.bytes_total,
        bytes_read: c.bytes_read,
        bytes_added: stats.bytes_new,
        bytes_stored: stats.bytes_compressed,
        blobs_added: stats.blobs_new,
        packs: stats.packs,
        packs_adopted: stats.packs_adopted,
        duration: run.start.elapsed(),
        problems,
    })
}

/// The snapshot an incremental backup of `paths` on `host` builds on: the latest
/// ([`chatvault_core::Recency`]) with this source kind, host and paths, signed by this
/// repository handle's own writer key (for a `backup` key: its own, from its journal).
/// Snapshots that do not load are skipped: a damaged one must not stop the next backup.
pub fn latest_snapshot(
    repo: &Repository,
    source_kind: &str,
    host: &str,
    paths: &[String],
) -> Result<Option<Snapshot>> {
    let filter = SnapshotFilter {
        source_kind: Some(source_kind.to_owned()),
        host: Some(host.to_owned()),
        paths: Some(paths.to_vec()),
        writer: Some(repo.writer_key()),
        ..SnapshotFilter::default()
    };
    Ok(repo.latest_snapshots(&filter)?.into_newest())
}

/// This machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (secs, nanos) = (d.as_secs() as i64, d.subsec_nanos());
            if nanos == 0 {
                Timestamp { secs: -secs, nanos }
            } else {
                Timestamp {
                    secs: -secs - 1,
                    nanos: 1_000_000_000 - nanos,
                }
            }
        }
    }
}

/// The paths as absolute, normalised, de-duplicated sources (a path inside another is
/// covered by it), each checked to exist.
fn sources(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if paths.is_empty() {
        return Err(Error::Source {
            path: PathBuf::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no paths given"),
        });
    }
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let n = names::normalize(p).map_err(|source| Error::Source {
            path: p.clone(),
            source,
        })?;
        std::fs::symlink_metadata(&n).map_err(|source| Error::Source {
            path: p.clone(),
            source,
        })?;
        out.push(n);
    }
    out.sort();
    out.dedup();
    let mut kept: Vec<PathBuf> = Vec::with_capacity(out.len());
    for p in out {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    Ok(kept)
}

/// The record of an entry, from its `lstat`.
pub(crate) fn meta_from(md: &Metadata, kind: EntryKind) -> FsMeta {
    let mut m = FsMeta::empty(kind);
    m.mode = md.mode() & 0o7777;
    m.uid = md.uid();
    m.gid = md.gid();
    m.size = if kind == EntryKind::File {
        md.size()
    } else {
        0
    };
    m.mtime = Timestamp {
        secs: md.mtime(),
        nanos: md.mtime_nsec() as u32,
    };
    m.ctime = Timestamp {
        secs: md.ctime(),
        nanos: md.ctime_nsec() as u32,
    };
    m.inode = md.ino();
    m
}

#[derive(Default)]
struct Counts {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    files_reread: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    bytes_total: AtomicU64,
    bytes_read: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
struct CountsSnapshot {
    files_new: u64,
    files_changed: u64,
    files_unchanged: u64,
    files_reread: u64,
    dirs: u64,
    symlinks: u64,
    bytes_total: u64,
    bytes_read: u64,
}

impl Counts {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CountsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountsSnapshot {
            files_new: l(&self.files_new),
            files_changed: l(&self.files_changed),
            files_unchanged: l(&self.files_unchanged),
            files_reread: l(&self.files_reread),
            dirs: l(&self.dirs),
            symlinks: l(&self.symlinks),
            bytes_total: l(&self.bytes_total),
            bytes_read: l(&self.bytes_read),
        }
    }
}

/// The sources as a tree of path components: the directories above them are stored as
/// plain directories holding only the way down to each source.
#[derive(Default)]
struct Trie {
    children: BTreeMap<Vec<u8>, Trie>,
    is_source: bool,
}

impl Trie {
    fn new(sources: &[PathBuf]) -> Trie {
        let mut root = Trie::default();
        for s in sources {
            let mut t = &mut root;
            for c in s.components().skip(1) {
                t = t
                    .children
                    .entry(c.as_os_str().as_bytes().to_vec())
                    .or_default();
            }
            t.is_source = true;
        }
        root
    }
}

/// A directory's tree in the parent snapshot, with its id.
struct ParentTree {
    id: BlobId,
    tree: Tree,
}

struct Walker<'a> {
    repo: &'a Repository,
    writer: &'a BlobWriter<'a>,
    exclude: Patterns,
    exclude_caches: bool,
    one_file_system: bool,
    progress: FsProgress,
    counts: Counts,
    problems: Mutex<Vec<Problem>>,
}

impl Walker<'_> {
    fn problem(&self, path: &Path, kind: ProblemKind, message: String) {
        self.progress.emit(FsEvent::Warning {
            path,
            message: &message,
        });
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Problem {
                path: path.to_owned(),
                kind,
                message,
            });
    }

    /// The root tree of the snapshot.
    fn root(&self, sources: &[PathBuf], parent: Option<ParentTree>) -> Result<BlobId> {
        let trie = Trie::new(sources);
        let root = Path::new("/");
        if trie.is_source {
            // Backing up `/` itself: its directory node's subtree is the root.
            let md = std::fs::symlink_metadata(root).map_err(|e| Error::io(root, e))?;
            let node = self.dir(root, b"/".to_vec(), &md, parent, md.dev())?;
            return match node.and_then(|n| n.subtree) {
                Some(id) => Ok(id),
                None => Ok(self.writer.write_tree(&Tree::default())?),
            };
        }
        let tree = self.virtual_dir(root, &trie, parent.as_ref().map(|p| &p.tree))?;
        self.store_tree(tree, parent.as_ref())
    }

    /// Writes a directory's tree; a tree equal to the parent's is the parent's blob, so it
    /// is not hashed again, only checked to be still present (else it is stored again).
    fn store_tree(&self, tree: Tree, parent: Option<&ParentTree>) -> Result<BlobId> {
        match parent {
            Some(p) if p.tree == tree && self.repo.blob_present(&p.id)? => Ok(p.id),
            _ => Ok(self.writer.write_tree(&tree)?),
        }
    }

    /// A directory above the sources: holds only the way down to them.
    fn virtual_dir(&self, path: &Path, trie: &Trie, parent: Option<&Tree>) -> Result<Tree> {
        let mut nodes = Vec::with_capacity(trie.children.len());
        for (name, sub) in &trie.children {
            let child = path.join(std::ffi::OsStr::from_bytes(name));
            let md = std::fs::symlink_metadata(&child).map_err(|source| Error::Source {
                path: child.clone(),
                source,
            })?;
            let parent_node = parent.and_then(|t| t.get(name));
            if sub.is_source {
                let node = self.entry(&child, name.clone(), &md, parent_node, None, md.dev())?;
                if let Some(node) = node {
                    nodes.push(node);
                }
                continue;
            }
            let parent_tree = self.parent_tree(&child, parent_node);
            let tree = self.virtual_dir(&child, sub, parent_tree.as_ref().map(|p| &p.tree))?;
            nodes.push(Node {
                name: name.clone(),
                subtree: Some(self.store_tree(tree, parent_tree.as_ref())?),
                content: Vec::new(),
                meta: meta_from(&md, EntryKind::Dir).encode(),
            });
        }
        Ok(Tree::new(nodes)?)
    }

    /// The parent's tree for a directory, if the parent had it; a parent tree that does
    /// not load only costs reuse (a warning), never the backup.
    fn parent_tree(&self, path: &Path, node: Option<&Node>) -> Option<ParentTree> {
        let id = node?.subtree?;
        match self.repo.read_parent_tree(id) {
            Ok(tree) => Some(ParentTree { id, tree }),
            Err(e) => {
                self.problem(
                    path,
                    ProblemKind::Corrupt,
                    format!("parent snapshot's tree unreadable, reading everything: {e}"),
                );
                None
            }
        }
    }

    /// Backs up one entry whose `lstat` is `md`; `None` when it is skipped.
    /// `missing`: the blobs of the parent directory's files that are not present, when
    /// the caller looked them up for the whole directory (else the file looks its own up).
    fn entry(
        &self,
        path: &Path,
        name: Vec<u8>,
        md: &Metadata,
        parent: Option<&Node>,
        missing: Option<&HashSet<BlobId>>,
        dev: u64,
    ) -> Result<Option<Node>> {
        let ft = md.file_type();
        let node = if ft.is_dir() {
            let parent_tree = self.parent_tree(path, parent);
            self.dir(path, name, md, parent_tree, dev)?
        } else if ft.is_file() {
            Some(self.file(path, name, md, parent, missing)?)
        } else if ft.is_symlink() {
            Some(self.symlink(path, name, md))
        } else {
            self.problem(
                path,
                ProblemKind::Skipped,
                "not a regular file, directory or link (socket, FIFO or device)".into(),
            );
            None
        };
        if let Some(n) = &node {
            let size = if n.subtree.is_none() { md.size() } else { 0 };
            self.progress.emit(FsEvent::Entry { path, size });
        }
        Ok(node)
    }

    fn symlink(&self, path: &Path, name: Vec<u8>, md: &Metadata) -> Node {
        let mut meta = meta_from(md, EntryKind::Symlink);
        match std::fs::read_link(path) {
            Ok(t) => meta.link_target = Some(t.as_os_str().as_bytes().to_vec()),
            Err(e) => {
                self.problem(path, ProblemKind::Unreadable, e.to_string());
                meta.error = Some(e.to_string());
            }
        }
        Counts::add(&self.counts.symlinks, 1);
        Node {
            name,
            subtree: None,
            content: Vec::new(),
            meta: meta.encode(),
        }
    }

    fn dir(
        &self,
        path: &Path,
        name: Vec<u8>,
        md: &Metadata,
        parent_tree: Option<ParentTree>,
        dev: u64,
    ) -> Result<Option<Node>> {
        if self.exclude_caches && is_cache_dir(path) {
            return Ok(None);
        }
        let mut meta = meta_from(md, EntryKind::Dir);
        Counts::add(&self.counts.dirs, 1);
        let empty = |meta: FsMeta| Node {
            name: name.clone(),
            subtree: None,
            content: Vec::new(),
            meta: meta.encode(),
        };
        if self.one_file_system && md.dev() != dev {
            return Ok(Some(empty(meta)));
        }
        let mut children = match list_dir(path) {
            Ok(c) => c,
            Err(e) => {
                self.problem(path, ProblemKind::Unreadable, e.to_string());
                meta.error = Some(e.to_string());
                return Ok(Some(empty(meta)));
            }
        };
        children.sort_unstable();
        // Whether the parent's chunks are still stored, for every file at once: one
        // batched lookup per directory instead of one per unchanged file.
        let missing: HashSet<BlobId> = match &parent_tree {
            Some(p) => self
                .repo
                .missing_blobs(
                    p.tree
                        .nodes()
                        .iter()
                        .filter(|n| n.subtree.is_none())
                        .flat_map(|n| n.content.iter().map(|c| c.id)),
                )?
                .into_iter()
                .collect(),
            None => HashSet::new(),
        };
        let nodes = children
            .into_par_iter()
            .map(|child| {
                let parent = parent_tree.as_ref().map(|p| &p.tree);
                self.child(path, child, parent, &missing, dev)
            })
            .collect::<Result<Vec<Option<Node>>>>()?;
        let tree = Tree::new(nodes.into_iter().flatten().collect())?;
        Ok(Some(Node {
            name,
            subtree: Some(self.store_tree(tree, parent_tree.as_ref())?),
            content: Vec::new(),
            meta: meta.encode(),
        }))
    }

    fn child(
        &self,
        dir: &Path,
        name: Vec<u8>,
        parent: Option<&Tree>,
        missing: &HashSet<BlobId>,
        dev: u64,
    ) -> Result<Option<Node>> {
        let path = dir.join(std::ffi::OsStr::from_bytes(&name));
        if self.exclude.matches(path.as_os_str().as_bytes(), &name) {
            return Ok(None);
        }
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Gone since the directory was listed: it was not there to back up.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                self.problem(&path, ProblemKind::Unreadable, e.to_string());
                return Ok(None);
            }
        };
        let parent_node = parent.and_then(|t| t.get(&name));
        self.entry(&path, name, &md, parent_node, Some(missing), dev)
    }

    fn file(
        &self,
        path: &Path,
        name: Vec<u8>,
        md: &Metadata,
        parent: Option<&Node>,
        missing: Option<&HashSet<BlobId>>,
    ) -> Result<Node> {
        let mut meta = meta_from(md, EntryKind::File);
        let node = |meta: &FsMeta, content| Node {
            name: name.clone(),
            subtree: None,
            content,
            meta: meta.encode(),
        };
        let previous = parent.and_then(|p| FsMeta::decode(&p.meta).ok().map(|m| (p, m)));
        let mut lost = false;
        if let Some((p, old)) = &previous
            && meta.unchanged_since(old)
        {
            // Reused only if every chunk is still stored: a lost pack is healed by
            // reading the file again, not inherited by every later snapshot.
            let present = match missing {
                Some(m) => p.content.iter().all(|c| !m.contains(&c.id)),
                None => self.repo.blobs_present(&p.content)?,
            };
            if present {
                meta.digest = old.digest;
                Counts::add(&self.counts.files_unchanged, 1);
                Counts::add(&self.counts.bytes_total, meta.size);
                self.progress.emit(FsEvent::Skipped(meta.size));
                return Ok(node(&meta, p.content.clone()));
            }
            lost = true;
        }
        let (content, size, digest) = match self.read_file(path, md.size()) {
            Ok(read) => read,
            Err(ReadError::Source(e)) => {
                self.problem(path, ProblemKind::Unreadable, e.to_string());
                meta.error = Some(e.to_string());
                meta.size = 0;
                return Ok(node(&meta, Vec::new()));
            }
            Err(ReadError::Repo(e)) => return Err(e),
        };
        // A file that grew or shrank while being read is recorded as read; its ctime
        // changed too, so the next run reads it again.
        meta.size = size;
        meta.digest = Some(digest);
        let counter = match (&previous, lost) {
            (_, true) => &self.counts.files_reread,
            (Some(_), false) => &self.counts.files_changed,
            (None, false) => &self.counts.files_new,
        };
        Counts::add(counter, 1);
        Counts::add(&self.counts.bytes_total, size);
        Counts::add(&self.counts.bytes_read, size);
        Ok(node(&meta, content))
    }

    /// Reads and stores a file's content: (chunks, bytes read, BLAKE3 digest).
    fn read_file(&self, path: &Path, size_hint: u64) -> std::result::Result<FileRead, ReadError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            // Never follow a link swapped in since the entry was examined.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(ReadError::Source)?;
        let mut reader = HashingReader::new(file, self.progress.clone());
        if size_hint < SMALL_FILE {
            let mut buf = Vec::with_capacity(size_hint as usize);
            reader.read_to_end(&mut buf).map_err(ReadError::Source)?;
            let content = self
                .writer
                .write_bytes(&buf)
                .map_err(|e| ReadError::Repo(e.into()))?;
            return Ok((content, reader.count, *reader.hasher.finalize().as_bytes()));
        }
        let content = self.writer.write_stream(&mut reader);
        if let Some(e) = reader.failed.take() {
            return Err(ReadError::Source(e));
        }
        let content = content.map_err(|e| ReadError::Repo(e.into()))?;
        Ok((content, reader.count, *reader.hasher.finalize().as_bytes()))
    }
}

/// A file's chunks, the bytes read and their BLAKE3 digest.
type FileRead = (Vec<chatvault_core::ContentRef>, u64, [u8; 32]);

enum ReadError {
    /// The source file failed: a problem, not a failure of the run.
    Source(io::Error),
    /// The repository failed.
    Repo(Error),
}

/// The names in a directory, as bytes.
fn list_dir(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect()
}

fn is_cache_dir(path: &Path) -> bool {
    let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
    File::open(path.join("CACHEDIR.TAG"))
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
}

/// A reader that hashes and counts what passes through it, reports progress, and keeps
/// its own I/O error so the caller can tell a failing source from a failing repository.
struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
    progress: FsProgress,
    failed: Option<io::Error>,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R, progress: FsProgress) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            count: 0,
            progress,
            failed: None,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                if n > 0 {
                    self.progress.emit(FsEvent::Bytes(n as u64));
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failed = Some(e);
                Err(copy)
            }
        }
    }
}
