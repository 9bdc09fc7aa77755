//! Restoring a snapshot (or part of it) to a directory.
//!
//! Invariants:
//! - **Nothing is written outside the target.** Every name is checked ([`check_name`])
//!   before it is joined to a path; every directory on the way down is one restore created
//!   or found to be a real directory (never a link); files and links are created new
//!   (`O_EXCL | O_NOFOLLOW`) in the partial folder and renamed into place, and a rename
//!   replaces a link rather than following it. Links pointing out of the target are
//!   refused unless allowed.
//! - **No half-written file in place.** A file is written and verified in
//!   `TARGET/.chatvault-restore.partial/` and only then renamed to its path, so an
//!   interrupted restore leaves incomplete files only in that folder, which a finished
//!   restore removes.
//! - **Verified bytes only.** Every chunk is checked against its id by the engine; a
//!   file's length and BLAKE3 digest are checked against the backup's before the file is
//!   put in place. A file that fails is reported and not restored.
//! - Entries are independent: one that fails (corrupt, refused) is reported and the rest
//!   are restored. Errors that would fail every entry (the target's disk is full, the
//!   repository is gone) stop the restore.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatvault_core::{BlobId, BlobType, ContentRef, Node, Repository, Tree};
use rayon::prelude::*;

use crate::backup::{Problem, ProblemKind};
use crate::browse::{self, Start};
use crate::error::{Error, Result};
use crate::meta::{EntryKind, FsMeta, Timestamp};
use crate::names::{self, check_name};
use crate::pattern::Patterns;
use crate::progress::{FsEvent, FsProgress};

/// The folder inside the target where files are written before they are complete.
pub const PARTIAL_DIR: &str = ".chatvault-restore.partial";

/// Chunks of one file fetched and verified in parallel before being written in order.
const READ_AHEAD: usize = 8;

/// Options for [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The directory to restore into; created if missing.
    pub target: PathBuf,
    /// Restore only this path of the snapshot (`/srv/chat/media`): a directory's contents
    /// go directly into the target, a file goes to `TARGET/NAME`. By default, everything.
    pub sub_path: Option<String>,
    /// Restore only entries matching one of these patterns (and everything below a
    /// matching directory). Patterns match snapshot paths, as for backup exclusion. By
    /// default, everything.
    pub include: Vec<String>,
    /// Leave out entries matching these patterns. By default, none.
    pub exclude: Vec<String>,
    /// Restore into a target that is not empty, replacing entries with the same paths.
    /// By default, disabled: a non-empty target is refused.
    pub overwrite: bool,
    /// Restore symbolic links whose target is absolute or leaves the restore target.
    /// By default, disabled: such links are refused and reported.
    pub allow_outward_links: bool,
    /// Restore owners (needs root). By default (`None`), when running as root.
    pub owners: Option<bool>,
    /// Progress callback. By default, none.
    pub progress: FsProgress,
    /// Verify only: read every selected entry and check every chunk, each file's length
    /// and digest and each name and link exactly as a restore would, but write nothing
    /// (`target` is not used). By default disabled. A restore drill uses it to prove that
    /// a snapshot restores without needing the disk space.
    pub verify_only: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Links restored.
    pub symlinks: u64,
    /// Bytes written (or, when verifying only, read and verified).
    pub bytes: u64,
    /// Wall-clock time.
    pub duration: Duration,
    /// Entries not restored, and why.
    pub problems: Vec<Problem>,
}

impl RestoreReport {
    /// Whether every selected entry was restored.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Restores the tree `root` (a snapshot's root) as `opts` says.
pub fn restore(repo: &Repository, root: BlobId, opts: &RestoreOptions) -> Result<RestoreReport> {
    // Files and their chunks are read in parallel: as many at once as the storage wants
    // reads in flight.
    repo.with_read_threads(|| restore_in_pool(repo, root, opts))
}

fn restore_in_pool(
    repo: &Repository,
    root: BlobId,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let start_time = Instant::now();
    let start = browse::locate(repo, root, opts.sub_path.as_deref().unwrap_or("/"))?;
    let (target, partial) = if opts.verify_only {
        // Never touched: every write below is skipped when verifying only.
        (PathBuf::from("/"), PathBuf::from("/").join(PARTIAL_DIR))
    } else {
        prepare_target(&opts.target, opts.overwrite)?;
        // From here on the target is a real directory path with no link in it, so every
        // path restore builds is below it.
        let target = std::fs::canonicalize(&opts.target).map_err(|e| Error::io(&opts.target, e))?;
        let partial = target.join(PARTIAL_DIR);
        if std::fs::symlink_metadata(&partial).is_ok() {
            // Left by an interrupted restore: incomplete files, never anything else.
            std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        }
        std::fs::create_dir(&partial).map_err(|e| Error::io(&partial, e))?;
        (target, partial)
    };
    let r = Restorer {
        verify_only: opts.verify_only,
        repo,
        target: target.clone(),
        partial: partial.clone(),
        include: Patterns::new(&opts.include)?,
        exclude: Patterns::new(&opts.exclude)?,
        overwrite: opts.overwrite,
        allow_outward_links: opts.allow_outward_links,
        owners: opts
            .owners
            .unwrap_or_else(|| rustix::process::geteuid().is_root()),
        progress: opts.progress.clone(),
        next_temp: AtomicU64::new(0),
        counts: Counts::default(),
        problems: Mutex::new(Vec::new()),
        buffers: BufferPool::default(),
    };
    let selected = r.include.is_empty();
    match start {
        Start::Root(tree) => {
            r.dir_contents(&tree, b"/", &target, 0, selected)?;
        }
        // A directory's contents go into the target itself; its own mode and times stay
        // the target's.
        Start::Node { path, node } if r.decode(&node, &path)?.kind == EntryKind::Dir => {
            if let Some(id) = node.subtree {
                let tree = repo.read_tree(id)?;
                let selected = selected || r.include.matches(&path, &node.name);
                r.dir_contents(&tree, &path, &target, 0, selected)?;
            }
        }
        Start::Node { path, node } => {
            r.child(&node, &path, &target, 0, selected)?;
        }
    }
    if !opts.verify_only {
        std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    }
    let mut problems = r.problems.into_inner().unwrap_or_else(|p| p.into_inner());
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    let c = &r.counts;
    Ok(RestoreReport {
        files: c.files.load(Ordering::Relaxed),
        dirs: c.dirs.load(Ordering::Relaxed),
        symlinks: c.symlinks.load(Ordering::Relaxed),
        bytes: c.bytes.load(Ordering::Relaxed),
        duration: start_time.elapsed(),
        problems,
    })
}

/// Creates the target, or checks an existing one is a directory that is empty (apart
/// from a previous restore's partial folder) or may be overwritten.
fn prepare_target(target: &Path, overwrite: bool) -> Result<()> {
    match std::fs::metadata(target) {
        Ok(md) if !md.is_dir() => Err(Error::io(
            target,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        )),
        Ok(_) => {
            let mut entries = std::fs::read_dir(target).map_err(|e| Error::io(target, e))?;
            let busy = entries.any(|e| e.is_ok_and(|e| e.file_name() != PARTIAL_DIR));
            if busy && !overwrite {
                return Err(Error::TargetNotEmpty {
                    path: target.to_owned(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(target).map_err(|e| Error::io(target, e))
        }
        Err(e) => Err(Error::io(target, e)),
    }
}

#[derive(Default)]
struct Counts {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    bytes: AtomicU64,
}

struct Restorer<'a> {
    repo: &'a Repository,
    /// Read and check everything, write nothing.
    verify_only: bool,
    /// The canonical target: `ensure_dir` never goes above it.
    target: PathBuf,
    partial: PathBuf,
    include: Patterns,
    exclude: Patterns,
    overwrite: bool,
    allow_outward_links: bool,
    owners: bool,
    progress: FsProgress,
    next_temp: AtomicU64,
    counts: Counts,
    problems: Mutex<Vec<Problem>>,
    buffers: BufferPool,
}

/// Chunk buffers shared by the files being restored, so that reading a chunk allocates
/// and zeroes no memory (fresh multi-megabyte buffers cost page faults and a memset per
/// chunk). At most [`POOL_KEEP`] buffers are kept between files.
#[derive(Default)]
struct BufferPool {
    bufs: Mutex<Vec<Vec<u8>>>,
}

/// Buffers the pool keeps: two files' read-ahead.
const POOL_KEEP: usize = 2 * READ_AHEAD;

impl BufferPool {
    fn take(&self, n: usize) -> Vec<Vec<u8>> {
        let mut pool = self.bufs.lock().unwrap_or_else(|p| p.into_inner());
        let keep = pool.len().saturating_sub(n);
        let mut bufs = pool.split_off(keep);
        drop(pool);
        bufs.resize_with(n, Vec::new);
        bufs
    }

    fn put(&self, bufs: Vec<Vec<u8>>) {
        let mut pool = self.bufs.lock().unwrap_or_else(|p| p.into_inner());
        let room = POOL_KEEP.saturating_sub(pool.len());
        pool.extend(bufs.into_iter().take(room));
    }
}

/// Whether an entry failed on its own (reported, the restore goes on) or the restore must
/// stop.
enum Failure {
    Entry(ProblemKind, String),
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            // Damaged or missing repository objects affect the entries that use them.
            Error::Core(
                e
                @ (chatvault_core::Error::Corrupt { .. } | chatvault_core::Error::NotFound { .. }),
            ) => Failure::Entry(ProblemKind::Corrupt, e.to_string()),
            e => Failure::Fatal(e),
        }
    }
}

impl From<chatvault_core::Error> for Failure {
    fn from(e: chatvault_core::Error) -> Self {
        Failure::from(Error::from(e))
    }
}

impl Restorer<'_> {
    fn problem(&self, path: &[u8], kind: ProblemKind, message: String) {
        self.progress.emit(FsEvent::Warning {
            path: names::as_path(path),
            message: &message,
        });
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Problem {
                path: names::as_path(path).to_owned(),
                kind,
                message,
            });
    }

    /// Reports an entry's failure; passes on a fatal one.
    fn settle(&self, path: &[u8], r: std::result::Result<bool, Failure>) -> Result<bool> {
        match r {
            Ok(done) => Ok(done),
            Err(Failure::Entry(kind, message)) => {
                self.problem(path, kind, message);
                Ok(false)
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    fn decode(&self, node: &Node, path: &[u8]) -> Result<FsMeta> {
        FsMeta::decode(&node.meta).map_err(|e| Error::BadMeta {
            entry: names::display(path),
            reason: e.to_string(),
        })
    }

    /// Restores a tree's entries into `dest` (which exists when `selected`); returns
    /// whether anything was restored.
    fn dir_contents(
        &self,
        tree: &Tree,
        path: &[u8],
        dest: &Path,
        depth: usize,
        selected: bool,
    ) -> Result<bool> {
        let done = tree
            .nodes()
            .par_iter()
            .map(|node| self.child(node, &names::join(path, &node.name), dest, depth, selected))
            .collect::<Result<Vec<bool>>>()?;
        Ok(done.into_iter().any(|d| d))
    }

    /// Restores one entry at snapshot path `path` into the directory `dest`.
    fn child(
        &self,
        node: &Node,
        path: &[u8],
        dest: &Path,
        depth: usize,
        selected: bool,
    ) -> Result<bool> {
        if let Some(why) = check_name(&node.name) {
            self.problem(path, ProblemKind::Refused, why.into());
            return Ok(false);
        }
        // Restoring into our own scratch folder would lose the entry when it is removed.
        if dest == self.target && node.name == PARTIAL_DIR.as_bytes() {
            self.problem(
                path,
                ProblemKind::Refused,
                "name is reserved for restore".into(),
            );
            return Ok(false);
        }
        let meta = match FsMeta::decode(&node.meta) {
            Ok(m) => m,
            Err(e) => {
                self.problem(path, ProblemKind::Corrupt, e.to_string());
                return Ok(false);
            }
        };
        if self.exclude.matches(path, &node.name) {
            return Ok(false);
        }
        // A selected parent was created before its children; otherwise (an include
        // pattern selecting something deeper) the way down is created on demand.
        let dest = Dest {
            dir: dest,
            ready: selected,
        };
        let selected = selected || self.include.matches(path, &node.name);
        let to = dest.dir.join(names::as_path(&node.name));
        let r = match meta.kind {
            EntryKind::Dir => self.dir(node, &meta, path, &to, depth, selected),
            _ if !selected => Ok(false),
            EntryKind::File => self.file(node, &meta, path, dest, &to),
            EntryKind::Symlink => self.symlink(&meta, dest, &to, depth),
        };
        let done = self.settle(path, r)?;
        if done {
            self.progress.emit(FsEvent::Entry {
                path: names::as_path(path),
                size: meta.size,
            });
        }
        Ok(done)
    }

    fn dir(
        &self,
        node: &Node,
        meta: &FsMeta,
        path: &[u8],
        to: &Path,
        depth: usize,
        selected: bool,
    ) -> std::result::Result<bool, Failure> {
        if selected && !self.verify_only {
            self.ensure_dir(to)?;
        }
        let mut any = false;
        if let Some(id) = node.subtree {
            let tree = self.repo.read_tree(id)?;
            any = self.dir_contents(&tree, path, to, depth + 1, selected)?;
        }
        if !(selected || any) {
            return Ok(false);
        }
        if let Some(e) = &meta.error {
            self.problem(
                path,
                ProblemKind::Unreadable,
                format!("directory was not readable at backup time: {e}"),
            );
        }
        if !self.verify_only {
            let dir = File::open(to).map_err(|e| Error::io(to, e))?;
            self.apply_meta(&dir, to, meta)?;
        }
        self.counts.dirs.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn file(
        &self,
        node: &Node,
        meta: &FsMeta,
        path: &[u8],
        dest: Dest<'_>,
        to: &Path,
    ) -> std::result::Result<bool, Failure> {
        if let Some(e) = &meta.error {
            return Err(Failure::Entry(
                ProblemKind::Unreadable,
                format!("was not readable at backup time: {e}"),
            ));
        }
        if self.verify_only {
            self.copy_content(&mut io::sink(), Path::new("-"), &node.content, meta, path)?;
            self.counts.files.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        dest.ensure(self)?;
        let temp = self.temp_path();
        let written = self.write_content(&temp, &node.content, meta, path);
        let file = match written {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        self.apply_meta(&file, &temp, meta)?;
        drop(file);
        self.put_in_place(&temp, to)?;
        self.counts.files.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Writes and verifies a file's content into a new temporary file.
    fn write_content(
        &self,
        temp: &Path,
        content: &[ContentRef],
        meta: &FsMeta,
        path: &[u8],
    ) -> std::result::Result<File, Failure> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(temp)
            .map_err(|e| Error::io(temp, e))?;
        self.copy_content(&mut file, temp, content, meta, path)?;
        Ok(file)
    }

    /// Reads a file's chunks in order (a few in parallel), checks each against the tree
    /// and the whole against the recorded length and digest, and writes them to `out`.
    fn copy_content(
        &self,
        out: &mut dyn Write,
        out_path: &Path,
        content: &[ContentRef],
        meta: &FsMeta,
        path: &[u8],
    ) -> std::result::Result<(), Failure> {
        // A one-chunk file reads without a buffer of its own.
        let need = if content.len() > 1 {
            content.len().min(READ_AHEAD)
        } else {
            0
        };
        let mut bufs = self.buffers.take(need);
        let copied = self.copy_chunks(out, out_path, content, &mut bufs);
        self.buffers.put(bufs);
        let (written, digest) = copied?;
        let digest_ok = meta.digest.is_none_or(|d| d == *digest.as_bytes());
        if written != meta.size || !digest_ok {
            return Err(Failure::Entry(
                ProblemKind::Corrupt,
                Error::DigestMismatch {
                    entry: names::display(path),
                }
                .to_string(),
            ));
        }
        Ok(())
    }

    /// Reads `content`, hashes and writes it in order: a batch of one chunk straight from
    /// the engine's per-thread buffers (no copy), larger ones `READ_AHEAD` chunks at a time
    /// in parallel through `bufs`. Returns the bytes written and their digest.
    fn copy_chunks(
        &self,
        out: &mut dyn Write,
        out_path: &Path,
        content: &[ContentRef],
        bufs: &mut [Vec<u8>],
    ) -> std::result::Result<(u64, blake3::Hash), Failure> {
        let mut sink = ChunkSink {
            r: self,
            out,
            out_path,
            hasher: blake3::Hasher::new(),
            written: 0,
        };
        for batch in content.chunks(READ_AHEAD) {
            if let [r] = batch {
                self.repo
                    .read_blob_with(r.id, BlobType::Data, |data| sink.take(r, data))??;
                continue;
            }
            let bufs = &mut bufs[..batch.len()];
            // A file's chunks usually lie back to back in one pack: one read each run.
            let ids: Vec<BlobId> = batch.iter().map(|r| r.id).collect();
            let read = self.repo.read_blobs_into(&ids, BlobType::Data, bufs);
            for ((r, res), data) in batch.iter().zip(read).zip(bufs.iter()) {
                res?;
                sink.take(r, data)?;
            }
        }
        Ok((sink.written, sink.hasher.finalize()))
    }

    fn symlink(
        &self,
        meta: &FsMeta,
        dest: Dest<'_>,
        to: &Path,
        depth: usize,
    ) -> std::result::Result<bool, Failure> {
        let Some(target) = &meta.link_target else {
            let why = meta.error.as_deref().unwrap_or("no target recorded");
            return Err(Failure::Entry(
                ProblemKind::Unreadable,
                format!("link was not readable at backup time: {why}"),
            ));
        };
        // The OS cannot create these; refusing them keeps one bad entry from stopping all.
        if target.is_empty() || target.contains(&0) {
            return Err(Failure::Entry(
                ProblemKind::Refused,
                "link target is empty or contains NUL".into(),
            ));
        }
        if !self.allow_outward_links && !names::link_stays_inside(depth, target) {
            return Err(Failure::Entry(
                ProblemKind::Refused,
                "link points outside the restore target (allow outward links to restore it)".into(),
            ));
        }
        if self.verify_only {
            self.counts.symlinks.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        dest.ensure(self)?;
        let temp = self.temp_path();
        std::os::unix::fs::symlink(names::as_path(target), &temp)
            .map_err(|e| Error::io(&temp, e))?;
        if self.owners {
            std::os::unix::fs::lchown(&temp, Some(meta.uid), Some(meta.gid))
                .map_err(|e| Error::io(&temp, e))?;
        }
        set_link_mtime(&temp, meta.mtime).map_err(|e| Error::io(&temp, e))?;
        self.put_in_place(&temp, to)?;
        self.counts.symlinks.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    fn temp_path(&self) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        self.partial.join(n.to_string())
    }

    /// Mode, owner and modification time, through the open handle (never a path that a
    /// link could redirect).
    fn apply_meta(&self, file: &File, path: &Path, meta: &FsMeta) -> Result<()> {
        if self.owners {
            std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid))
                .map_err(|e| Error::io(path, e))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(meta.mode))
            .map_err(|e| Error::io(path, e))?;
        file.set_modified(system_time(meta.mtime))
            .map_err(|e| Error::io(path, e))
    }

    /// Renames a finished temporary file or link to its place; an existing entry there
    /// (only possible when overwriting) is replaced.
    fn put_in_place(&self, temp: &Path, to: &Path) -> Result<()> {
        match std::fs::rename(temp, to) {
            Ok(()) => Ok(()),
            Err(_) if self.overwrite && is_real_dir(to) => {
                std::fs::remove_dir_all(to).map_err(|e| Error::io(to, e))?;
                std::fs::rename(temp, to).map_err(|e| Error::io(to, e))
            }
            Err(e) => Err(Error::io(to, e)),
        }
    }

    /// Makes sure `dir` (inside `dest`'s chain, which restore created) is a real directory:
    /// creates it, accepts an existing directory, and replaces anything else (a file, a
    /// link) only when overwriting.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir == self.target {
            return Ok(());
        }
        match std::fs::symlink_metadata(dir) {
            Ok(md) if md.is_dir() => return Ok(()),
            Ok(_) if self.overwrite => {
                std::fs::remove_file(dir).map_err(|e| Error::io(dir, e))?;
            }
            Ok(_) => {
                return Err(Error::io(
                    dir,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a directory",
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(dir, e)),
        }
        match dir.parent() {
            Some(parent) if parent.starts_with(&self.target) => self.ensure_dir(parent)?,
            _ => {
                return Err(Error::Refused {
                    entry: dir.display().to_string(),
                    reason: "outside the restore target",
                });
            }
        }
        match std::fs::create_dir(dir) {
            Ok(()) => Ok(()),
            // Another worker created it meanwhile.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_real_dir(dir) => Ok(()),
            Err(e) => Err(Error::io(dir, e)),
        }
    }
}

/// Where a file's verified chunks go, in order: its digest, its output, the counts.
struct ChunkSink<'a, 'r> {
    r: &'a Restorer<'r>,
    out: &'a mut dyn Write,
    out_path: &'a Path,
    hasher: blake3::Hasher,
    written: u64,
}

impl ChunkSink<'_, '_> {
    /// Takes the next chunk, `data`, which the engine checked against `r.id`.
    fn take(&mut self, r: &ContentRef, data: &[u8]) -> std::result::Result<(), Failure> {
        if data.len() != r.len as usize {
            return Err(Failure::Entry(
                ProblemKind::Corrupt,
                format!(
                    "chunk {} has {} bytes, the tree says {}",
                    r.id,
                    data.len(),
                    r.len
                ),
            ));
        }
        self.hasher.update(data);
        self.out
            .write_all(data)
            .map_err(|e| Error::io(self.out_path, e))?;
        self.written += data.len() as u64;
        let n = data.len() as u64;
        self.r.counts.bytes.fetch_add(n, Ordering::Relaxed);
        self.r.progress.emit(FsEvent::Bytes(n));
        Ok(())
    }
}

/// The directory an entry goes into, and whether it is known to exist already.
#[derive(Clone, Copy)]
struct Dest<'a> {
    dir: &'a Path,
    ready: bool,
}

impl Dest<'_> {
    /// Creates the directory (and the way down to it) unless it is known to exist: one
    /// `lstat` per directory rather than one per file.
    fn ensure(self, r: &Restorer<'_>) -> Result<()> {
        if self.ready {
            Ok(())
        } else {
            r.ensure_dir(self.dir)
        }
    }
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

fn system_time(t: Timestamp) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs())
            + Duration::from_nanos(t.nanos.into())
    }
}

fn set_link_mtime(path: &Path, mtime: Timestamp) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime.secs,
            tv_nsec: mtime.nanos.into(),
        },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}
