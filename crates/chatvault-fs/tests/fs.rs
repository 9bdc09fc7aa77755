//! Integration tests of `chatvault-fs`: real directory trees backed up, restored and
//! compared byte for byte; snapshots built by hand with hostile names and links; damaged
//! repositories. Everything goes through the public API of both crates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use chatvault_core::{
    BlobId, BlobWriter, InitOptions, KdfParams, KeySource, LocalBackend, MemoryBackend, Node,
    OpenOptions, Repository, SnapshotId, SnapshotKind, SnapshotRecord, Summary, Tree,
};
use chatvault_fs::{
    BackupOptions, BackupReport, Change, EntryKind, Error, FsMeta, PARTIAL_DIR, ProblemKind,
    RestoreOptions, RestoreReport, Timestamp,
};
use proptest::prelude::*;

const HOST: &str = "test-host";

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn key() -> KeySource {
    KeySource::passphrase("correct horse battery staple")
}

/// A repository plus a work directory for sources and targets. The repository's cache
/// lives in a separate directory so listings of the work directory see only what the
/// code under test wrote there.
struct Fixture {
    work: tempfile::TempDir,
    store: tempfile::TempDir,
    repo: Repository,
}

impl Fixture {
    fn memory() -> Self {
        let store = tempfile::tempdir().unwrap();
        let backend = MemoryBackend::new();
        let repo = Repository::init(Box::new(backend), &key(), init_opts(store.path())).unwrap();
        Self::with(store, repo)
    }

    /// A repository in `store/repo`, so tests can damage its files.
    fn local() -> Self {
        let store = tempfile::tempdir().unwrap();
        let backend = LocalBackend::create(store.path().join("repo")).unwrap();
        let repo = Repository::init(Box::new(backend), &key(), init_opts(store.path())).unwrap();
        Self::with(store, repo)
    }

    fn with(store: tempfile::TempDir, repo: Repository) -> Self {
        Self {
            work: tempfile::tempdir().unwrap(),
            store,
            repo,
        }
    }

    /// The local repository opened again with a fresh cache (nothing remembered).
    fn reopen_local(&self, cache: &str) -> Repository {
        let backend = LocalBackend::open(self.store.path().join("repo")).unwrap();
        let opts = OpenOptions {
            cache_dir: Some(self.store.path().join(cache)),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        };
        Repository::open(Box::new(backend), &key(), opts).unwrap()
    }

    /// A path in the work directory, with no link in it (backups store canonical paths).
    fn path(&self, rel: &str) -> PathBuf {
        fs::canonicalize(self.work.path()).unwrap().join(rel)
    }

    fn backup(&self, paths: &[&Path], f: impl FnOnce(&mut BackupOptions)) -> BackupReport {
        self.try_backup(paths, f).unwrap()
    }

    fn try_backup(
        &self,
        paths: &[&Path],
        f: impl FnOnce(&mut BackupOptions),
    ) -> chatvault_fs::Result<BackupReport> {
        let mut opts = BackupOptions {
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            host: Some(HOST.into()),
            ..BackupOptions::default()
        };
        f(&mut opts);
        chatvault_fs::backup(&self.repo, &opts)
    }

    fn root(&self, snap: SnapshotId) -> BlobId {
        self.repo.load_snapshot(snap).unwrap().record.root
    }

    fn restore(
        &self,
        snap: SnapshotId,
        target: &Path,
        f: impl FnOnce(&mut RestoreOptions),
    ) -> RestoreReport {
        self.try_restore(snap, target, f).unwrap()
    }

    fn try_restore(
        &self,
        snap: SnapshotId,
        target: &Path,
        f: impl FnOnce(&mut RestoreOptions),
    ) -> chatvault_fs::Result<RestoreReport> {
        restore_root(&self.repo, self.root(snap), target, f)
    }
}

fn init_opts(store: &Path) -> InitOptions {
    InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(store.join("cache")),
        ..InitOptions::default()
    }
}

fn restore_root(
    repo: &Repository,
    root: BlobId,
    target: &Path,
    f: impl FnOnce(&mut RestoreOptions),
) -> chatvault_fs::Result<RestoreReport> {
    let mut opts = RestoreOptions {
        target: target.to_owned(),
        ..RestoreOptions::default()
    };
    f(&mut opts);
    chatvault_fs::restore(repo, root, &opts)
}

/// Where a backed-up absolute path lands in a full restore into `target`.
fn inside(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// A snapshot path (as `walk`, `cat` and `sub_path` take it) for a local path.
fn snap_path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Deterministic pseudo-random bytes (splitmix64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Varied content: runs of random bytes, text and zeros, so chunk boundaries fall in
/// different kinds of data.
fn varied(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let run = 4096 + rng.below(200_000) as usize;
        match rng.below(3) {
            0 => out.extend(rng.bytes(run)),
            1 => {
                let mut i = 0;
                while i < run {
                    let line = format!("{{\"seq\":{},\"text\":\"hello {}\"}}\n", i, rng.next());
                    i += line.len();
                    out.extend_from_slice(line.as_bytes());
                }
            }
            _ => out.extend(std::iter::repeat_n(0u8, run)),
        }
    }
    out.truncate(n);
    out
}

fn write(path: &Path, data: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, data).unwrap();
}

/// Sets a file's or directory's modification time (without following a final link).
fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: nanos.into(),
        },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
enum Content {
    File { len: u64, hash: [u8; 32] },
    Dir,
    Link(Vec<u8>),
    Other,
}

/// Everything restore promises to reproduce about one entry.
#[derive(Debug, PartialEq, Eq)]
struct Desc {
    content: Content,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
}

fn describe(p: &Path) -> Desc {
    let md = fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let content = if ft.is_file() {
        let data = fs::read(p).unwrap();
        Content::File {
            len: data.len() as u64,
            hash: *blake3::hash(&data).as_bytes(),
        }
    } else if ft.is_dir() {
        Content::Dir
    } else if ft.is_symlink() {
        Content::Link(fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec())
    } else {
        Content::Other
    };
    Desc {
        content,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
    }
}

/// Every entry below `root` (not `root` itself), keyed by its relative path bytes.
fn describe_tree(root: &Path) -> BTreeMap<Vec<u8>, Desc> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let d = describe(&p);
            if d.content == Content::Dir {
                stack.push(p);
            }
            out.insert(rel, d);
        }
    }
    out
}

fn show(p: &[u8]) -> String {
    chatvault_fs::display_path(p)
}

/// Asserts two description maps are equal, naming the first difference.
fn assert_same_descs(a: &BTreeMap<Vec<u8>, Desc>, b: &BTreeMap<Vec<u8>, Desc>) {
    let ka: BTreeSet<_> = a.keys().collect();
    let kb: BTreeSet<_> = b.keys().collect();
    let only_a: Vec<String> = ka.difference(&kb).map(|k| show(k)).collect();
    let only_b: Vec<String> = kb.difference(&ka).map(|k| show(k)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in source: {only_a:?}; only in restored: {only_b:?}"
    );
    for (k, da) in a {
        assert_eq!(da, &b[k], "entry {}", show(k));
    }
}

/// Same paths, kinds, contents, link targets, permission bits, owners and modification
/// times (links' own, via `lstat`) below `a` and `b`.
fn assert_same_tree(a: &Path, b: &Path) {
    assert_same_descs(&describe_tree(a), &describe_tree(b));
}

/// Every path below `root` with its description, except those under `skip`.
fn listing(root: &Path, skip: &Path) -> BTreeMap<Vec<u8>, Desc> {
    let mut out = describe_tree(root);
    let skip = skip
        .strip_prefix(root)
        .unwrap()
        .as_os_str()
        .as_bytes()
        .to_vec();
    out.retain(|k, _| !(k == &skip || k.starts_with(&[skip.as_slice(), b"/"].concat())));
    out
}

fn walk_paths(repo: &Repository, root: BlobId, sub: &str) -> BTreeMap<Vec<u8>, FsMeta> {
    let mut out = BTreeMap::new();
    chatvault_fs::walk(repo, root, sub, true, &mut |e| {
        out.insert(e.path.clone(), e.meta.clone());
        Ok(())
    })
    .unwrap();
    out
}

/// Relative paths (below `base`) of the entries a walk found under it.
fn relative(found: &BTreeMap<Vec<u8>, FsMeta>, base: &Path) -> BTreeSet<String> {
    let prefix = [base.as_os_str().as_bytes(), b"/"].concat();
    found
        .keys()
        .filter_map(|k| k.strip_prefix(prefix.as_slice()))
        .map(show)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tree generators
// ---------------------------------------------------------------------------------------

/// What [`rich_tree`] made.
struct Facts {
    files: u64,
    bytes: u64,
    links: u64,
    dirs: u64,
}

/// A tree exercising everything restore must reproduce. Returns its counts.
fn rich_tree(src: &Path) -> Facts {
    let mut rng = Rng(7);
    let mut files = Vec::<(PathBuf, Vec<u8>)>::new();
    files.push((
        src.join("a/b/c/d/e/deep.txt"),
        b"five levels down\n".to_vec(),
    ));
    for i in 0..60 {
        let len = if i % 10 == 0 {
            0
        } else {
            rng.below(5000) as usize
        };
        files.push((
            src.join(format!("small/s{}/f{i:03}", i % 4)),
            rng.bytes(len),
        ));
    }
    files.push((src.join("empty"), Vec::new()));
    files.push((src.join("a/empty"), Vec::new()));
    // Several chunks (256 KiB min / 1 MiB avg / 4 MiB max), streamed (above 1 MiB).
    files.push((src.join("big.bin"), varied(1, 5 << 20)));
    files.push((src.join("a/b/mid.bin"), varied(2, (3 << 20) / 2)));
    // Below 1 MiB, read whole, still above the minimum chunk size.
    files.push((src.join("a/small.bin"), varied(3, 700 << 10)));
    files.push((src.join("caf\u{e9}.txt"), b"utf-8 name".to_vec()));
    files.push((src.join("with space"), b"space".to_vec()));
    files.push((src.join("new\nline"), b"newline".to_vec()));
    files.push((src.join("private/secret"), b"0600".to_vec()));
    files.push((src.join("script.sh"), b"#!/bin/sh\necho hi\n".to_vec()));
    files.push((src.join("old"), b"before 1970".to_vec()));
    let mut bytes = 0;
    for (p, d) in &files {
        write(p, d);
        bytes += d.len() as u64;
    }
    // A name that is not UTF-8.
    let latin1 = src.join(OsStr::from_bytes(b"caf\xe9"));
    write(&latin1, b"latin-1 name");
    bytes += 12;
    let nfiles = files.len() as u64 + 1;
    let sticky = src.join("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::create_dir_all(src.join("empty-dir/inner")).unwrap();

    let links: [(&str, &str); 5] = [
        ("rel", "a/b/c/d/e/deep.txt"),
        ("a/b/up", "../../big.bin"),
        ("dangling", "no/such/file"),
        ("abs", "/etc/passwd"),
        (
            "a/far",
            "../../../../../../../../../../../../../../../../etc",
        ),
    ];
    for (at, to) in links {
        symlink(to, src.join(at)).unwrap();
    }

    chmod(&src.join("private"), 0o700);
    chmod(&src.join("private/secret"), 0o600);
    chmod(&src.join("script.sh"), 0o755);
    chmod(&sticky, 0o1777);

    // Times: files and links first, then directories bottom-up (adding an entry changes
    // its directory's mtime).
    for (i, (p, _)) in files.iter().enumerate() {
        set_mtime(
            p,
            1_700_000_000 + i as i64 * 3600,
            (i as u32 * 7919) % 1_000_000_000,
        );
    }
    set_mtime(&src.join("old"), -86_401, 500_000_000);
    set_mtime(&latin1, 1_234_567_890, 123_456_789);
    for (i, (at, _)) in links.iter().enumerate() {
        set_mtime(&src.join(at), 1_600_000_000 + i as i64, 42 + i as u32);
    }
    let mut dirs: Vec<PathBuf> = describe_tree(src)
        .into_iter()
        .filter(|(_, d)| d.content == Content::Dir)
        .map(|(k, _)| src.join(OsStr::from_bytes(&k)))
        .collect();
    let ndirs = dirs.len() as u64 + 1;
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs.push(src.to_owned());
    for (i, d) in dirs.iter().enumerate() {
        set_mtime(d, 1_650_000_000 + i as i64 * 60, 1000 * i as u32);
    }
    Facts {
        files: nfiles,
        bytes,
        links: links.len() as u64,
        dirs: ndirs,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Round trip
// ---------------------------------------------------------------------------------------

#[test]
fn round_trip_reproduces_contents_links_modes_and_times() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    let facts = rich_tree(&src);
    let before = describe_tree(&src);

    let report = fx.backup(&[&src], |_| {});
    assert_eq!(report.kind, SnapshotKind::Full);
    assert_eq!(report.parent, None);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.files_new, facts.files);
    assert_eq!((report.files_changed, report.files_unchanged), (0, 0));
    assert_eq!(report.symlinks, facts.links);
    assert_eq!(report.bytes_total, facts.bytes);
    assert_eq!(report.bytes_read, facts.bytes);
    // Reading did not disturb the source.
    assert_same_descs(&before, &describe_tree(&src));

    let target = fx.path("restored");
    let r = fx.restore(report.snapshot, &target, |o| o.allow_outward_links = true);
    assert!(r.is_complete(), "{:?}", r.problems);
    assert_eq!((r.files, r.symlinks), (facts.files, facts.links));
    assert_eq!(r.bytes, facts.bytes);
    let restored = inside(&target, &src);
    assert_same_tree(&src, &restored);
    // The source directory itself is an entry of the snapshot too.
    assert_eq!(describe(&src), describe(&restored));
    assert!(!target.join(PARTIAL_DIR).exists());
    assert!(r.dirs >= facts.dirs);
}

#[test]
fn outward_links_are_refused_by_default_and_the_rest_restored() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    rich_tree(&src);
    let report = fx.backup(&[&src], |_| {});

    let target = fx.path("restored");
    let r = fx.restore(report.snapshot, &target, |_| {});
    let refused: BTreeSet<PathBuf> = r
        .problems
        .iter()
        .map(|p| {
            assert_eq!(p.kind, ProblemKind::Refused, "{p:?}");
            p.path.clone()
        })
        .collect();
    assert_eq!(
        refused,
        BTreeSet::from([src.join("a/far"), src.join("abs")]),
        "absolute and upward-escaping links"
    );
    let mut expected = describe_tree(&src);
    expected.remove(&b"abs"[..]);
    expected.remove(&b"a/far"[..]);
    let restored = inside(&target, &src);
    assert_same_descs(&expected, &describe_tree(&restored));
    assert_eq!(describe(&src), describe(&restored));
}

// ---------------------------------------------------------------------------------------
// 2, 3. Incremental and full re-backups
// ---------------------------------------------------------------------------------------

/// 200 small files in 10 directories and one 3 MiB file; returns the paths of the files.
fn many_files(src: &Path) -> Vec<PathBuf> {
    let mut rng = Rng(11);
    let mut out = Vec::new();
    for d in 0..10 {
        for f in 0..20 {
            let p = src.join(format!("d{d}/f{f:02}"));
            let len = 100 + rng.below(20_000) as usize;
            write(&p, &rng.bytes(len));
            set_mtime(&p, 1_700_000_000 + d * 100 + f, 0);
            out.push(p);
        }
    }
    let big = src.join("big.bin");
    write(&big, &varied(5, 3 << 20));
    out.push(big);
    out
}

fn size_of(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().len()
}

#[test]
fn incremental_backup_reads_only_changed_files() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    let files = many_files(&src);
    let first = fx.backup(&[&src], |_| {});
    assert_eq!(first.files_new, files.len() as u64);

    // ~1% of the files: two rewritten (one keeping its size), one only touched.
    let mut rng = Rng(99);
    let grown = src.join("d0/f00");
    write(&grown, &rng.bytes(30_000));
    let same_size = src.join("d3/f05");
    write(&same_size, &rng.bytes(size_of(&same_size) as usize));
    let touched = src.join("d5/f10");
    set_mtime(&touched, 1_800_000_000, 5);
    let added = src.join("d7/new");
    write(&added, &rng.bytes(4321));
    fs::remove_file(src.join("d9/f19")).unwrap();

    let second = fx.backup(&[&src], |_| {});
    assert_eq!(second.kind, SnapshotKind::Incremental);
    assert_eq!(second.parent, Some(first.snapshot));
    assert_eq!(second.files_changed, 3);
    assert_eq!(second.files_new, 1);
    assert_eq!(second.files_unchanged, files.len() as u64 - 3 - 1);
    let read: u64 = [&grown, &same_size, &touched, &added]
        .iter()
        .map(|p| size_of(p))
        .sum();
    assert_eq!(second.bytes_read, read);
    let new_content = size_of(&grown) + size_of(&same_size) + size_of(&added);
    assert!(
        second.bytes_added <= new_content + (64 << 10),
        "added {} bytes for {new_content} bytes of new content",
        second.bytes_added
    );
    assert!(second.bytes_added >= new_content);
    let total: u64 = files
        .iter()
        .filter(|p| p.exists())
        .map(|p| size_of(p))
        .sum();
    assert_eq!(second.bytes_total, total + size_of(&added));

    let target = fx.path("restored");
    let r = fx.restore(second.snapshot, &target, |_| {});
    assert!(r.is_complete(), "{:?}", r.problems);
    assert_same_tree(&src, &inside(&target, &src));
}

#[test]
fn full_backup_reads_everything_and_stores_no_data_twice() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    let files = many_files(&src);
    let total: u64 = files.iter().map(|p| size_of(p)).sum();
    let first = fx.backup(&[&src], |_| {});
    let stats = fx.repo.stats().unwrap();

    let full = fx.backup(&[&src], |o| o.full = true);
    assert_eq!(full.kind, SnapshotKind::Full);
    assert_eq!(full.parent, Some(first.snapshot));
    assert_eq!(full.bytes_read, total);
    assert_eq!(full.bytes_total, total);
    assert_eq!(full.files_unchanged, 0);
    assert_eq!(full.files_new + full.files_changed, files.len() as u64);
    // Only trees can be new (the directories above the source may have changed times);
    // not one data chunk.
    let after = fx.repo.stats().unwrap();
    assert_eq!(
        after.blobs - after.tree_blobs,
        stats.blobs - stats.tree_blobs,
        "new data chunks"
    );
    let above = src.components().count() as u64;
    assert!(full.blobs_added <= above, "{} blobs", full.blobs_added);
    assert!(full.bytes_added < 16 << 10, "{} bytes", full.bytes_added);
    let record = fx.repo.load_snapshot(full.snapshot).unwrap().record;
    assert_eq!(record.kind, SnapshotKind::Full);
    assert_eq!(record.summary.bytes_read, total);
}

// ---------------------------------------------------------------------------------------
// 4. Unreadable files and special files
// ---------------------------------------------------------------------------------------

#[test]
fn unreadable_file_is_recorded_and_fifo_skipped() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    write(&src.join("ok.txt"), b"fine");
    let fifo = src.join("pipe");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    // Root reads any file regardless of its mode; a process's own memory file fails at
    // offset 0 (nothing is mapped there) for everyone, so it stands in for a chmod 000
    // file when running as root.
    let (paths, unreadable) = if is_root() {
        let mem = PathBuf::from(format!("/proc/{}/mem", std::process::id()));
        (vec![src.clone(), mem.clone()], mem)
    } else {
        let secret = src.join("secret");
        write(&secret, b"hidden");
        chmod(&secret, 0o000);
        (vec![src.clone()], secret)
    };
    let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();

    let report = fx.backup(&paths, |_| {});
    let problems: Vec<(PathBuf, ProblemKind)> = report
        .problems
        .iter()
        .map(|p| (p.path.clone(), p.kind))
        .collect();
    let mut expected = vec![
        (unreadable.clone(), ProblemKind::Unreadable),
        (fifo.clone(), ProblemKind::Skipped),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(problems, expected);
    assert_eq!(report.unreadable(), 1);
    let record = fx.repo.load_snapshot(report.snapshot).unwrap().record;
    assert_eq!(record.summary.errors, 1);

    let found = walk_paths(&fx.repo, record.root, "/");
    let meta = &found[unreadable.as_os_str().as_bytes()];
    assert_eq!(meta.kind, EntryKind::File);
    assert!(meta.error.is_some(), "{meta:?}");
    assert_eq!(meta.digest, None);
    assert!(
        found[src.join("ok.txt").as_os_str().as_bytes()]
            .error
            .is_none()
    );
    assert!(!found.contains_key(fifo.as_os_str().as_bytes()));

    // Restore reports the entry instead of writing it.
    let target = fx.path("restored");
    let r = fx.restore(report.snapshot, &target, |_| {});
    let kinds: Vec<_> = r
        .problems
        .iter()
        .map(|p| (p.path.clone(), p.kind))
        .collect();
    assert_eq!(kinds, vec![(unreadable.clone(), ProblemKind::Unreadable)]);
    assert!(fs::symlink_metadata(inside(&target, &unreadable)).is_err());
    assert_eq!(
        fs::read(inside(&target, &src).join("ok.txt")).unwrap(),
        b"fine"
    );

    match fx.try_backup(&paths, |o| o.fail_on_error = true) {
        Err(Error::Unreadable { count: 1, first }) => {
            assert!(first.contains(&*unreadable.to_string_lossy()), "{first}")
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 5. Exclusions
// ---------------------------------------------------------------------------------------

#[test]
fn exclusions_by_name_path_file_and_cache_tag() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    for p in [
        "keep/a.txt",
        "keep/b.tmp",
        "keep/b.tmpl",
        "junk/x",
        "keep/junk/y",
        "secret-1",
        "keep/secret-2",
        "cache/data",
        "fake-cache/data",
    ] {
        write(&src.join(p), p.as_bytes());
    }
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write(&src.join("fake-cache/CACHEDIR.TAG"), b"Signature: nope\n");
    let exclude_file = fx.path("exclude.txt");
    write(&exclude_file, b"# comment\n\n  secret-*  \n");

    let report = fx.backup(&[&src], |o| {
        o.exclude = vec!["*.tmp".into(), format!("{}/junk", src.display())];
        o.exclude_files = vec![exclude_file.clone()];
        o.exclude_caches = true;
    });
    let found = relative(&walk_paths(&fx.repo, fx.root(report.snapshot), "/"), &src);
    let expected: BTreeSet<String> = [
        "keep",
        "keep/a.txt",
        "keep/b.tmpl",
        "keep/junk",
        "keep/junk/y",
        "fake-cache",
        "fake-cache/CACHEDIR.TAG",
        "fake-cache/data",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);

    // Without the options everything is there.
    let all = fx.backup(&[&src], |_| {});
    let found = relative(&walk_paths(&fx.repo, fx.root(all.snapshot), "/"), &src);
    assert_eq!(found.len(), 16, "{found:?}");
}

// ---------------------------------------------------------------------------------------
// 6. Restore options
// ---------------------------------------------------------------------------------------

fn media_tree(fx: &Fixture) -> (PathBuf, SnapshotId) {
    let src = fx.path("src");
    for p in [
        "media/a.jpg",
        "media/thumbs/t1.jpg",
        "media/x.tmp",
        "conf/app.toml",
        "top.txt",
    ] {
        write(&src.join(p), p.as_bytes());
    }
    let report = fx.backup(&[&src], |_| {});
    (src, report.snapshot)
}

fn files_below(root: &Path) -> BTreeSet<String> {
    describe_tree(root)
        .into_iter()
        .filter(|(_, d)| matches!(d.content, Content::File { .. }))
        .map(|(k, _)| show(&k))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn restore_sub_path_of_a_directory_and_of_a_file() {
    let fx = Fixture::memory();
    let (src, snap) = media_tree(&fx);

    let t = fx.path("t-dir");
    let r = fx.restore(snap, &t, |o| {
        o.sub_path = Some(snap_path(&src.join("media")))
    });
    assert!(r.is_complete(), "{:?}", r.problems);
    assert_same_tree(&src.join("media"), &t);

    let t = fx.path("t-file");
    let r = fx.restore(snap, &t, |o| {
        o.sub_path = Some(snap_path(&src.join("conf/app.toml")))
    });
    assert_eq!(r.files, 1);
    assert_eq!(files_below(&t), set(&["app.toml"]));
    assert_eq!(
        describe(&t.join("app.toml")),
        describe(&src.join("conf/app.toml"))
    );

    let t = fx.path("t-missing");
    assert!(matches!(
        fx.try_restore(snap, &t, |o| o.sub_path = Some("/no/such".into())),
        Err(Error::NotInSnapshot { .. })
    ));
}

#[test]
fn restore_include_and_exclude_patterns() {
    let fx = Fixture::memory();
    let (src, snap) = media_tree(&fx);
    let rel = |t: &Path| inside(t, &src);

    let t = fx.path("t-include");
    fx.restore(snap, &t, |o| o.include = vec!["*.jpg".into()]);
    assert_eq!(
        files_below(&rel(&t)),
        set(&["media/a.jpg", "media/thumbs/t1.jpg"])
    );

    let t = fx.path("t-include-dir");
    fx.restore(snap, &t, |o| {
        o.include = vec![format!("{}/conf", src.display())]
    });
    assert_eq!(files_below(&rel(&t)), set(&["conf/app.toml"]));
    assert_eq!(describe(&rel(&t).join("conf")), describe(&src.join("conf")));

    let t = fx.path("t-exclude");
    fx.restore(snap, &t, |o| {
        o.exclude = vec!["thumbs".into(), "*.toml".into()]
    });
    assert_eq!(
        files_below(&rel(&t)),
        set(&["media/a.jpg", "media/x.tmp", "top.txt"])
    );
}

#[test]
fn restore_refuses_non_empty_target_unless_overwriting() {
    let fx = Fixture::memory();
    let (src, snap) = media_tree(&fx);
    let target = fx.path("target");
    let dest = inside(&target, &src);
    write(
        &dest.join("top.txt"),
        b"stale content, longer than the original",
    );
    // A link where a directory must go, pointing outside the target.
    let outside = fx.path("outside");
    fs::create_dir(&outside).unwrap();
    symlink(&outside, dest.join("media")).unwrap();
    // A directory where a file must go.
    fs::create_dir_all(dest.join("conf/app.toml/inner")).unwrap();

    match fx.try_restore(snap, &target, |_| {}) {
        Err(Error::TargetNotEmpty { path }) => assert_eq!(path, target),
        other => panic!("expected TargetNotEmpty, got {other:?}"),
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    let r = fx.restore(snap, &target, |o| o.overwrite = true);
    assert!(r.is_complete(), "{:?}", r.problems);
    assert_same_tree(&src, &dest);
    assert!(fs::symlink_metadata(dest.join("media")).unwrap().is_dir());
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through a link"
    );
    assert!(!target.join(PARTIAL_DIR).exists());
}

#[test]
fn restore_cleans_a_stale_partial_folder() {
    let fx = Fixture::memory();
    let (src, snap) = media_tree(&fx);
    let target = fx.path("target");
    let partial = target.join(PARTIAL_DIR);
    write(&partial.join("17"), b"half a file from an interrupted run");
    write(&partial.join("sub/3"), b"more");
    let r = fx.restore(snap, &target, |_| {});
    assert!(r.is_complete(), "{:?}", r.problems);
    assert!(fs::symlink_metadata(&partial).is_err());
    assert_same_tree(&src, &inside(&target, &src));
    let top: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top.len(), 1, "{top:?}");
}

// ---------------------------------------------------------------------------------------
// 7. Hostile trees
// ---------------------------------------------------------------------------------------

fn file_meta(data: &[u8]) -> FsMeta {
    let mut m = FsMeta::empty(EntryKind::File);
    m.mode = 0o644;
    m.size = data.len() as u64;
    m.mtime = Timestamp {
        secs: 1_700_000_000,
        nanos: 0,
    };
    m.digest = Some(*blake3::hash(data).as_bytes());
    m
}

fn file_node(w: &BlobWriter<'_>, name: &[u8], data: &[u8]) -> Node {
    file_node_with(w, name, data, file_meta(data))
}

fn file_node_with(w: &BlobWriter<'_>, name: &[u8], data: &[u8], meta: FsMeta) -> Node {
    Node {
        name: name.to_vec(),
        subtree: None,
        content: w.write_bytes(data).unwrap(),
        meta: meta.encode(),
    }
}

fn link_node(name: &[u8], target: &[u8]) -> Node {
    let mut m = FsMeta::empty(EntryKind::Symlink);
    m.mode = 0o777;
    m.link_target = Some(target.to_vec());
    Node {
        name: name.to_vec(),
        subtree: None,
        content: Vec::new(),
        meta: m.encode(),
    }
}

fn dir_node(w: &BlobWriter<'_>, name: &[u8], children: Vec<Node>) -> Node {
    let mut m = FsMeta::empty(EntryKind::Dir);
    m.mode = 0o755;
    Node {
        name: name.to_vec(),
        subtree: Some(w.write_tree(&Tree::new(children).unwrap()).unwrap()),
        content: Vec::new(),
        meta: m.encode(),
    }
}

/// Writes the tree made by `build` as a snapshot; returns its root.
fn hand_snapshot(repo: &Repository, build: impl FnOnce(&BlobWriter<'_>) -> Vec<Node>) -> BlobId {
    let w = repo.writer().unwrap();
    let root = w.write_tree(&Tree::new(build(&w)).unwrap()).unwrap();
    w.finish().unwrap();
    let record = SnapshotRecord {
        time_unix_ms: 1_760_000_000_000,
        host: "attacker".into(),
        tags: Vec::new(),
        source_kind: chatvault_fs::SOURCE_KIND.into(),
        paths: vec!["/".into()],
        parent: None,
        kind: SnapshotKind::Full,
        root,
        summary: Summary::default(),
        cursors: BTreeMap::new(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    };
    let id = repo.save_snapshot(record).unwrap();
    assert_eq!(repo.load_snapshot(id).unwrap().record.root, root);
    root
}

/// A restore's problems by displayed snapshot path (readable in assertion messages).
fn problems_of(r: &RestoreReport) -> BTreeMap<String, ProblemKind> {
    r.problems
        .iter()
        .map(|p| (show(p.path.as_os_str().as_bytes()), p.kind))
        .collect()
}

#[test]
fn hostile_names_and_links_never_escape_the_target() {
    let fx = Fixture::memory();
    let root = hand_snapshot(&fx.repo, |w| {
        vec![
            file_node(w, b"good.txt", b"good"),
            file_node(w, b"..", b"dotdot"),
            file_node(w, b"../escape", b"escape"),
            file_node(w, b"a/b", b"slash"),
            file_node(w, b"/etc/x", b"absolute"),
            file_node(w, b"nul\0name", b"nul"),
            link_node(b"pw", b"/etc/passwd"),
            link_node(b"out", b"../../outside"),
            // Lexically inside (sub/up/..), but `sub/up` is itself a link to the target,
            // so this resolves to the target's parent.
            link_node(b"esc", b"sub/up/../outside"),
            link_node(b"nullink", b"a\0b"),
            link_node(b"emptylink", b""),
            dir_node(w, b"sub", vec![link_node(b"up", b"..")]),
            dir_node(
                w,
                b"evil",
                vec![link_node(b"link", b".."), file_node(w, b"ok.txt", b"ok")],
            ),
            dir_node(
                w,
                b"deep",
                vec![
                    file_node(w, b"..", b"deep dotdot"),
                    file_node(w, b"fine.txt", b"fine"),
                ],
            ),
            // The restore's own scratch folder: restoring into it would lose the entry
            // (and the folder's removal would take it away).
            dir_node(w, PARTIAL_DIR.as_bytes(), vec![file_node(w, b"0", b"x")]),
        ]
    });

    // The target is created first: making it changes its parent, which is outside.
    let target = fx.path("a/b/target");
    fs::create_dir_all(&target).unwrap();
    let work = fs::canonicalize(fx.work.path()).unwrap();
    let before = listing(&work, &target);
    let etc_x = Path::new("/etc/x").symlink_metadata().is_ok();

    let r = restore_root(&fx.repo, root, &target, |_| {}).unwrap();
    let refused = |p: &[u8]| (show(p), ProblemKind::Refused);
    let expected: BTreeMap<_, _> = [
        refused(b"/.."),
        refused(b"/../escape"),
        refused(b"/a/b"),
        refused(b"//etc/x"),
        refused(b"/nul\0name"),
        refused(b"/pw"),
        refused(b"/out"),
        refused(b"/esc"),
        refused(b"/nullink"),
        refused(b"/emptylink"),
        refused(b"/deep/.."),
        refused(format!("/{PARTIAL_DIR}").as_bytes()),
    ]
    .into_iter()
    .collect();
    assert_eq!(problems_of(&r), expected);

    assert_eq!(fs::read(target.join("good.txt")).unwrap(), b"good");
    assert_eq!(fs::read(target.join("evil/ok.txt")).unwrap(), b"ok");
    assert_eq!(fs::read(target.join("deep/fine.txt")).unwrap(), b"fine");
    assert_eq!(
        fs::read_link(target.join("evil/link")).unwrap(),
        Path::new("..")
    );
    assert_eq!(
        fs::read_link(target.join("sub/up")).unwrap(),
        Path::new("..")
    );
    let top: BTreeSet<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, set(&["deep", "evil", "good.txt", "sub"]));

    // A second snapshot where `evil/link` is a directory, restored over the first: the
    // link is replaced, nothing goes through it into the target's root.
    let root2 = hand_snapshot(&fx.repo, |w| {
        vec![dir_node(
            w,
            b"evil",
            vec![dir_node(w, b"link", vec![file_node(w, b"pwn", b"pwned")])],
        )]
    });
    let r = restore_root(&fx.repo, root2, &target, |o| o.overwrite = true).unwrap();
    assert!(r.is_complete(), "{:?}", r.problems);
    assert!(
        fs::symlink_metadata(target.join("evil/link"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(fs::read(target.join("evil/link/pwn")).unwrap(), b"pwned");
    assert!(fs::symlink_metadata(target.join("pwn")).is_err());

    assert_same_descs(&before, &listing(&work, &target));
    assert_eq!(Path::new("/etc/x").symlink_metadata().is_ok(), etc_x);
}

#[test]
fn hostile_meta_is_reported_per_entry() {
    let fx = Fixture::memory();
    let root = hand_snapshot(&fx.repo, |w| {
        let mut far = file_meta(b"far");
        far.mtime = Timestamp {
            secs: i64::MAX,
            nanos: 999_999_999,
        };
        let mut early = file_meta(b"early");
        early.mtime = Timestamp {
            secs: i64::MIN,
            nanos: 0,
        };
        vec![
            file_node(w, b"good.txt", b"good"),
            Node {
                name: b"garbage-meta".to_vec(),
                subtree: None,
                content: Vec::new(),
                meta: b"\xff\x00not cbor".to_vec(),
            },
            file_node_with(w, b"far-future", b"far", far),
            file_node_with(w, b"far-past", b"early", early),
        ]
    });
    let target = fx.path("target");
    // Times no filesystem can hold must not abort the restore (or panic).
    let r = restore_root(&fx.repo, root, &target, |_| {}).unwrap();
    let problems = problems_of(&r);
    assert_eq!(problems.get("/garbage-meta"), Some(&ProblemKind::Corrupt));
    assert_eq!(fs::read(target.join("good.txt")).unwrap(), b"good");
    for name in ["far-future", "far-past"] {
        let path = format!("/{name}");
        if !problems.contains_key(&path) {
            let data = fs::read(target.join(name)).unwrap();
            assert!(data == b"far" || data == b"early");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 8. Corruption
// ---------------------------------------------------------------------------------------

fn packs(repo_dir: &Path) -> BTreeSet<PathBuf> {
    let data = repo_dir.join("data");
    let mut out = BTreeSet::new();
    if data.exists() {
        for sub in fs::read_dir(&data).unwrap() {
            for f in fs::read_dir(sub.unwrap().path()).unwrap() {
                out.insert(f.unwrap().path());
            }
        }
    }
    out
}

fn only_new(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> PathBuf {
    let new: Vec<_> = after.difference(before).cloned().collect();
    assert_eq!(new.len(), 1, "expected exactly one new pack: {new:?}");
    new[0].clone()
}

fn flip_middle_byte(path: &Path) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mid = f.metadata().unwrap().len() / 2;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(mid)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(mid)).unwrap();
    f.write_all(&[!b[0]]).unwrap();
}

#[test]
fn damaged_and_missing_packs_fail_only_their_files() {
    let fx = Fixture::local();
    let repo_dir = fx.store.path().join("repo");
    let a = varied(21, 3 << 20);
    let d = Rng(22).bytes(400 << 10);
    let stream = |name: &str, data: &[u8]| {
        let before = packs(&repo_dir);
        chatvault_fs::backup_stream(&fx.repo, name, data, &BackupOptions::default()).unwrap();
        only_new(&before, &packs(&repo_dir))
    };
    // Each of these files' chunks goes into a pack of its own, in sessions of their own.
    let pack_d = stream("d", &d);
    let pack_a = stream("a", &a);

    let src = fx.path("src");
    write(&src.join("a.bin"), &a);
    write(&src.join("sub/d.bin"), &d);
    write(&src.join("b.bin"), &Rng(23).bytes(500 << 10));
    write(&src.join("sub/c.bin"), &varied(24, 2 << 20));
    write(&src.join("note.txt"), b"small");
    let report = fx.backup(&[&src], |_| {});

    flip_middle_byte(&pack_a);
    fs::remove_file(&pack_d).unwrap();

    let repo = fx.reopen_local("cache-after-damage");
    let root = repo.load_snapshot(report.snapshot).unwrap().record.root;
    let target = fx.path("restored");
    let r = restore_root(&repo, root, &target, |_| {}).unwrap();
    let corrupt: BTreeMap<String, ProblemKind> = [
        (src.join("a.bin"), ProblemKind::Corrupt),
        (src.join("sub/d.bin"), ProblemKind::Corrupt),
    ]
    .into_iter()
    .map(|(p, k)| (show(p.as_os_str().as_bytes()), k))
    .collect();
    assert_eq!(problems_of(&r), corrupt);
    // A verify-only pass (a restore drill) finds exactly the same and writes nothing.
    let nowhere = fx.path("never-created");
    let v = restore_root(&repo, root, &nowhere, |o| o.verify_only = true).unwrap();
    assert_eq!(problems_of(&v), corrupt);
    assert_eq!(
        (v.files, v.dirs, v.symlinks, v.bytes),
        (r.files, r.dirs, r.symlinks, r.bytes)
    );
    assert!(fs::symlink_metadata(&nowhere).is_err());

    let dest = inside(&target, &src);
    assert!(fs::symlink_metadata(dest.join("a.bin")).is_err());
    assert!(fs::symlink_metadata(dest.join("sub/d.bin")).is_err());
    // Everything else exactly, directories included (their times are set last).
    let mut expected = describe_tree(&src);
    expected.remove(&b"a.bin"[..]);
    expected.remove(&b"sub/d.bin"[..]);
    assert_same_descs(&expected, &describe_tree(&dest));
    assert_eq!(describe(&src), describe(&dest));
    assert!(!target.join(PARTIAL_DIR).exists());

    let mut out = Vec::new();
    assert!(chatvault_fs::cat(&repo, root, &snap_path(&src.join("a.bin")), &mut out).is_err());
    let mut out = Vec::new();
    chatvault_fs::cat(&repo, root, &snap_path(&src.join("b.bin")), &mut out).unwrap();
    assert_eq!(out, fs::read(src.join("b.bin")).unwrap());
}

/// Runs `f` on a rayon pool of `threads` threads (restore parallelises on the current
/// pool).
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn report_facts(r: &RestoreReport) -> (u64, u64, u64, u64, BTreeMap<String, ProblemKind>) {
    (r.files, r.dirs, r.symlinks, r.bytes, problems_of(r))
}

#[test]
fn a_damaged_chunk_shared_by_two_files_fails_both_on_any_number_of_threads() {
    let fx = Fixture::local();
    let repo_dir = fx.store.path().join("repo");
    // One incompressible chunk in a pack of its own, then used by two files.
    let shared = Rng(31).bytes(300 << 10);
    let before = packs(&repo_dir);
    chatvault_fs::backup_stream(&fx.repo, "shared", &shared[..], &BackupOptions::default())
        .unwrap();
    let pack = only_new(&before, &packs(&repo_dir));

    let src = fx.path("src");
    write(&src.join("one.bin"), &shared);
    write(&src.join("sub/two.bin"), &shared);
    // Files of many chunks (more than one read-ahead batch) and many small ones, so
    // that workers interleave chunks of different files.
    write(&src.join("big.bin"), &varied(32, 12 << 20));
    write(&src.join("sub/big2.bin"), &Rng(33).bytes(9 << 20));
    for i in 0..40 {
        write(
            &src.join(format!("small/{i}.txt")),
            &varied(100 + i, 1000 * i as usize),
        );
    }
    let report = fx.backup(&[&src], |_| {});
    flip_middle_byte(&pack);

    let repo = fx.reopen_local("cache-after-damage");
    let root = repo.load_snapshot(report.snapshot).unwrap().record.root;
    let expected: BTreeMap<String, ProblemKind> = [src.join("one.bin"), src.join("sub/two.bin")]
        .iter()
        .map(|p| (show(p.as_os_str().as_bytes()), ProblemKind::Corrupt))
        .collect();
    let nowhere = fx.path("never-created");
    let verify = |threads| {
        on_threads(threads, || {
            restore_root(&repo, root, &nowhere, |o| o.verify_only = true).unwrap()
        })
    };
    let sequential = report_facts(&verify(1));
    assert_eq!(sequential.4, expected);
    assert_eq!(report_facts(&verify(4)), sequential);
    assert!(fs::symlink_metadata(&nowhere).is_err());
    // A real restore reports the same, on one thread or several, and writes the rest.
    for (threads, dir) in [(1, "restored-1"), (4, "restored-4")] {
        let target = fx.path(dir);
        let r = on_threads(threads, || {
            restore_root(&repo, root, &target, |_| {}).unwrap()
        });
        assert_eq!(report_facts(&r), sequential);
        let dest = inside(&target, &src);
        assert!(fs::symlink_metadata(dest.join("one.bin")).is_err());
        assert_eq!(
            fs::read(dest.join("big.bin")).unwrap(),
            fs::read(src.join("big.bin")).unwrap()
        );
        assert_eq!(
            fs::read(dest.join("sub/big2.bin")).unwrap(),
            fs::read(src.join("sub/big2.bin")).unwrap()
        );
    }
}

#[test]
fn digest_or_size_mismatch_is_corrupt_and_not_written() {
    let fx = Fixture::memory();
    let root = hand_snapshot(&fx.repo, |w| {
        let mut wrong_digest = file_meta(b"hello");
        wrong_digest.digest = Some(*blake3::hash(b"world").as_bytes());
        let mut wrong_size = file_meta(b"hello");
        wrong_size.size = 99;
        vec![
            file_node(w, b"good.txt", b"hello"),
            file_node_with(w, b"bad-digest.txt", b"hello", wrong_digest),
            file_node_with(w, b"bad-size.txt", b"hello", wrong_size),
        ]
    });
    let target = fx.path("target");
    let r = restore_root(&fx.repo, root, &target, |_| {}).unwrap();
    let expected: BTreeMap<_, _> = [
        ("/bad-digest.txt".to_string(), ProblemKind::Corrupt),
        ("/bad-size.txt".to_string(), ProblemKind::Corrupt),
    ]
    .into_iter()
    .collect();
    assert_eq!(problems_of(&r), expected);
    let nowhere = fx.path("never-created");
    let v = restore_root(&fx.repo, root, &nowhere, |o| o.verify_only = true).unwrap();
    assert_eq!(problems_of(&v), expected);
    assert_eq!((v.files, v.bytes), (r.files, r.bytes));
    assert!(fs::symlink_metadata(&nowhere).is_err());
    assert_eq!(files_below(&target), set(&["good.txt"]));
    assert_eq!(fs::read_dir(&target).unwrap().count(), 1);

    let mut out = Vec::new();
    assert!(matches!(
        chatvault_fs::cat(&fx.repo, root, "/bad-digest.txt", &mut out),
        Err(Error::DigestMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// 9. cat, diff, tree_size, backup_stream
// ---------------------------------------------------------------------------------------

#[test]
fn cat_returns_exact_bytes_and_refuses_dirs_and_missing_paths() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    let big = varied(31, (5 << 20) / 2);
    write(&src.join("big.bin"), &big);
    write(&src.join("dir/small.txt"), b"small");
    write(&src.join("empty"), b"");
    symlink("big.bin", src.join("link")).unwrap();
    let root = fx.root(fx.backup(&[&src], |_| {}).snapshot);
    let cat = |p: &Path| {
        let mut out = Vec::new();
        chatvault_fs::cat(&fx.repo, root, &snap_path(p), &mut out).map(|n| (n, out))
    };
    assert_eq!(cat(&src.join("big.bin")).unwrap(), (big.len() as u64, big));
    assert_eq!(
        cat(&src.join("dir/small.txt")).unwrap(),
        (5, b"small".to_vec())
    );
    assert_eq!(cat(&src.join("empty")).unwrap(), (0, Vec::new()));
    assert!(matches!(cat(&src.join("dir")), Err(Error::NotAFile { .. })));
    assert!(matches!(
        cat(&src.join("link")),
        Err(Error::NotAFile { .. })
    ));
    assert!(matches!(cat(Path::new("/")), Err(Error::NotAFile { .. })));
    assert!(matches!(
        cat(&src.join("nope")),
        Err(Error::NotInSnapshot { .. })
    ));
    assert!(matches!(
        cat(&src.join("dir/small.txt/below")),
        Err(Error::NotInSnapshot { .. })
    ));
}

#[test]
fn diff_reports_exactly_the_changes() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    for p in [
        "keep.txt",
        "mod.txt",
        "gone.txt",
        "olddir/inner.txt",
        "d/deep/x.txt",
    ] {
        write(&src.join(p), p.as_bytes());
    }
    let first = fx.backup(&[&src], |_| {});
    write(&src.join("mod.txt"), b"modified content");
    fs::remove_file(src.join("gone.txt")).unwrap();
    fs::remove_dir_all(src.join("olddir")).unwrap();
    write(&src.join("d/deep/new.txt"), b"new");
    chmod(&src.join("keep.txt"), 0o600);
    let second = fx.backup(&[&src], |_| {});

    let mut seen: BTreeMap<char, BTreeSet<Vec<u8>>> = BTreeMap::new();
    chatvault_fs::diff(
        &fx.repo,
        fx.root(first.snapshot),
        fx.root(second.snapshot),
        &mut |d| {
            seen.entry(d.change.symbol())
                .or_default()
                .insert(d.path.clone());
            Ok(())
        },
    )
    .unwrap();
    let paths = |rels: &[&str]| -> BTreeSet<Vec<u8>> {
        rels.iter()
            .map(|r| src.join(r).as_os_str().as_bytes().to_vec())
            .collect()
    };
    assert_eq!(
        seen.remove(&Change::Added.symbol()),
        Some(paths(&["d/deep/new.txt"]))
    );
    assert_eq!(
        seen.remove(&Change::Removed.symbol()),
        Some(paths(&["gone.txt", "olddir", "olddir/inner.txt"]))
    );
    assert_eq!(
        seen.remove(&Change::Modified.symbol()),
        Some(paths(&["mod.txt"]))
    );
    // Metadata only: the chmod'ed file, and directories whose entries changed (the source,
    // `d/deep`, and possibly the directories above the source).
    let meta = seen.remove(&Change::Metadata.symbol()).unwrap();
    assert!(
        meta.contains(&paths(&["keep.txt"]).pop_first().unwrap()),
        "{meta:?}"
    );
    let allowed = paths(&["keep.txt", "d/deep"]);
    for m in &meta {
        assert!(
            allowed.contains(m) || src.starts_with(OsStr::from_bytes(m)),
            "unexpected metadata change {}",
            show(m)
        );
    }
    assert!(seen.is_empty(), "{seen:?}");

    // Identical snapshots: no difference at all.
    let root = fx.root(second.snapshot);
    let mut n = 0;
    chatvault_fs::diff(&fx.repo, root, root, &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn tree_size_counts_files_dirs_and_bytes() {
    let fx = Fixture::memory();
    let src = fx.path("src");
    let facts = rich_tree(&src);
    let root = fx.root(fx.backup(&[&src], |_| {}).snapshot);
    let mut memo = HashMap::new();
    let size = chatvault_fs::tree_size(&fx.repo, root, &mut memo).unwrap();
    assert_eq!(size.files, facts.files);
    assert_eq!(size.bytes, facts.bytes);
    // The directories above the source are stored too.
    let above = src.components().count() as u64 - 2;
    assert_eq!(size.dirs, facts.dirs + above);
    // Memoised: a second call gives the same from the memo.
    assert!(memo.len() as u64 > facts.dirs);
    assert_eq!(
        chatvault_fs::tree_size(&fx.repo, root, &mut memo).unwrap(),
        size
    );
}

#[test]
fn backup_stream_stores_one_file() {
    let fx = Fixture::memory();
    let data = varied(41, (5 << 20) / 2 + 17);
    let report =
        chatvault_fs::backup_stream(&fx.repo, "dump.sql", &data[..], &BackupOptions::default())
            .unwrap();
    assert_eq!(report.bytes_read, data.len() as u64);
    let record = fx.repo.load_snapshot(report.snapshot).unwrap().record;
    assert_eq!(record.source_kind, chatvault_fs::STDIN_SOURCE_KIND);
    let found = walk_paths(&fx.repo, record.root, "/");
    assert_eq!(
        found.keys().cloned().collect::<Vec<_>>(),
        vec![b"/dump.sql".to_vec()]
    );
    assert_eq!(found[&b"/dump.sql"[..]].size, data.len() as u64);
    let mut out = Vec::new();
    chatvault_fs::cat(&fx.repo, record.root, "/dump.sql", &mut out).unwrap();
    assert_eq!(out, data);

    assert!(matches!(
        chatvault_fs::backup_stream(&fx.repo, "../x", &b""[..], &BackupOptions::default()),
        Err(Error::Refused { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// 10. Random trees
// ---------------------------------------------------------------------------------------

const NAMES: &[&[u8]] = &[
    b"a",
    b"b c",
    b"caf\xe9",
    b"\xff\xfe",
    "日本".as_bytes(),
    b".hid",
    b"x\ny",
];

/// Builds entries (a path of name indices, a size, a seed); entries that collide with an
/// earlier one are left out. Every eighth becomes a relative link.
fn random_tree(src: &Path, entries: &[(Vec<usize>, usize, u64)]) {
    fs::create_dir_all(src).unwrap();
    for (comps, size, seed) in entries {
        let mut p = src.to_owned();
        for c in comps {
            p.push(OsStr::from_bytes(NAMES[*c]));
        }
        let parent = p.parent().unwrap();
        if fs::create_dir_all(parent).is_err() || fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        if seed % 8 == 0 {
            symlink(
                OsStr::from_bytes(NAMES[(*seed as usize / 8) % NAMES.len()]),
                &p,
            )
            .unwrap();
        } else {
            fs::write(&p, Rng(*seed).bytes(*size)).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(
        entries in proptest::collection::vec(
            (proptest::collection::vec(0..NAMES.len(), 1..4), 0usize..300 << 10, any::<u64>()),
            1..12,
        )
    ) {
        let fx = Fixture::memory();
        let src = fx.path("src");
        random_tree(&src, &entries);
        let report = fx.backup(&[&src], |_| {});
        prop_assert!(report.problems.is_empty());
        let target = fx.path("restored");
        let r = fx.restore(report.snapshot, &target, |_| {});
        prop_assert!(r.is_complete(), "{:?}", r.problems);
        assert_same_tree(&src, &inside(&target, &src));
        prop_assert_eq!(describe(&src), describe(&inside(&target, &src)));
    }
}

/// `/dev` holds other filesystems' mount points (`/dev/shm`, `/dev/pts`): with
/// `one_file_system` they are stored as empty directories, without it they are descended.
#[test]
fn one_file_system_stores_other_filesystems_mount_points_empty() {
    let fx = Fixture::memory();
    let dev = Path::new("/dev");
    let own = fs::metadata(dev).unwrap().dev();
    let mut crossing = BTreeSet::new();
    for e in fs::read_dir(dev).unwrap().flatten() {
        let md = fs::symlink_metadata(e.path()).unwrap();
        if md.is_dir() && md.dev() != own {
            crossing.insert(e.file_name().as_bytes().to_vec());
        }
    }
    assert!(
        !crossing.is_empty(),
        "needs a mount point below /dev, such as /dev/shm"
    );
    let stay = fx.backup(&[dev], |o| o.one_file_system = true);
    let found = walk_paths(&fx.repo, fx.root(stay.snapshot), "/dev");
    for name in &crossing {
        let path = [b"/dev/".as_slice(), name].concat();
        assert!(found.contains_key(&path), "{}", show(&path));
        let below = [path.as_slice(), b"/"].concat();
        assert!(
            !found.keys().any(|k| k.starts_with(&below)),
            "{} was descended",
            show(&path)
        );
    }
    // They are recorded without a subtree; without the option they get one (a tree of
    // whatever they hold, possibly nothing but skipped device nodes).
    let subtrees = |snap| {
        let mut out = BTreeMap::new();
        chatvault_fs::walk(&fx.repo, fx.root(snap), "/dev", false, &mut |e| {
            out.insert(e.node.name.clone(), e.node.subtree.is_some());
            Ok(())
        })
        .unwrap();
        out
    };
    let all = fx.backup(&[dev], |o| o.parent = chatvault_fs::ParentChoice::None);
    let (with, without) = (subtrees(stay.snapshot), subtrees(all.snapshot));
    for name in &crossing {
        assert_eq!(with.get(name), Some(&false), "{}", show(name));
        assert_eq!(without.get(name), Some(&true), "{}", show(name));
    }
}

// ---------------------------------------------------------------------------------------
// Lost packs: the next backup heals them
// ---------------------------------------------------------------------------------------

/// A pack lost from storage (a disk error, a mistaken `rm`): before, an unchanged file's
/// chunk list was reused from the parent whatever happened to its chunks, and the writer
/// skipped every chunk the index still named, so the next backup, even `--full`, stored
/// nothing and every later snapshot depended on the lost pack.
#[test]
fn a_lost_pack_is_stored_again_by_the_next_backup_and_its_snapshot_restores() {
    for full in [false, true] {
        let fx = Fixture::local();
        let repo_dir = fx.store.path().join("repo");
        let src = fx.path("src");
        let files = many_files(&src);
        let first = fx.backup(&[&src], |_| {});
        assert_eq!(first.files_new, files.len() as u64);
        // Lose the pack holding the big file's chunks (and every other pack but one).
        let all = packs(&repo_dir);
        assert!(!all.is_empty());
        for p in &all {
            fs::remove_file(p).unwrap();
        }

        let second = fx.backup(&[&src], |o| o.full = full);
        assert!(second.bytes_added > 3 << 20, "full={full}: {second:?}");
        if full {
            assert_eq!(second.kind, SnapshotKind::Full);
        } else {
            // The parent's trees were lost too: everything is read again, nothing reused.
            assert_eq!(second.files_unchanged, 0, "{second:?}");
        }
        let target = fx.path("restored");
        let repo = fx.reopen_local("cache-after-heal");
        let root = repo.load_snapshot(second.snapshot).unwrap().record.root;
        let r = restore_root(&repo, root, &target, |_| {}).unwrap();
        assert!(r.is_complete(), "full={full}: {:?}", r.problems);
        assert_same_tree(&src, &inside(&target, &src));
        // Healed: the next incremental run reuses everything and stores nothing.
        let third = fx.backup(&[&src], |_| {});
        assert_eq!(third.files_unchanged, files.len() as u64, "{third:?}");
        // Nothing read; only the trees of the directories above the source (whose times
        // the restore changed) are new.
        assert_eq!((third.files_reread, third.bytes_read), (0, 0));
        assert!(third.blobs_added <= src.components().count() as u64);
    }
}

/// Only a file's data pack is lost, its parent's trees survive: the file looks unchanged
/// but is read again (counted as `files_reread`), and the rest is reused.
#[test]
fn an_unchanged_file_whose_chunks_are_lost_is_read_again() {
    let fx = Fixture::local();
    let repo_dir = fx.store.path().join("repo");
    let big = varied(31, 3 << 20);
    let before = packs(&repo_dir);
    // The big file's chunks in a pack of their own, in a session of its own.
    chatvault_fs::backup_stream(&fx.repo, "big", &big[..], &BackupOptions::default()).unwrap();
    let pack_big = only_new(&before, &packs(&repo_dir));
    let src = fx.path("src");
    write(&src.join("big.bin"), &big);
    write(&src.join("small.txt"), b"small");
    let first = fx.backup(&[&src], |_| {});
    fs::remove_file(&pack_big).unwrap();

    let second = fx.backup(&[&src], |_| {});
    assert_eq!(second.kind, SnapshotKind::Incremental);
    assert_eq!(second.parent, Some(first.snapshot));
    assert_eq!(
        (
            second.files_reread,
            second.files_unchanged,
            second.files_changed
        ),
        (1, 1, 0),
        "{second:?}"
    );
    assert_eq!(second.bytes_read, big.len() as u64);
    assert!(second.bytes_added >= big.len() as u64);
    let repo = fx.reopen_local("cache-after-heal");
    let root = repo.load_snapshot(second.snapshot).unwrap().record.root;
    let mut out = Vec::new();
    chatvault_fs::cat(&repo, root, &snap_path(&src.join("big.bin")), &mut out).unwrap();
    assert_eq!(out, big);
}

/// The parent is the same writer's: a newer snapshot of the same paths and host signed by
/// another key never supplies this one's chunk lists (before, the newest of any writer
/// was the parent).
#[test]
fn the_parent_is_the_latest_snapshot_of_the_same_writer() {
    let mut fx = Fixture::local();
    let src = fx.path("src");
    write(&src.join("a.txt"), b"a");
    let mine = fx.backup(&[&src], |_| {});
    let other_key = KeySource::passphrase("other writer");
    fx.repo
        .add_slot(
            &other_key,
            &chatvault_core::AddSlotOptions {
                kdf: KdfParams::insecure_for_tests(),
                scope: HOST.into(),
                ..chatvault_core::AddSlotOptions::new(chatvault_core::Role::Full, "other")
            },
        )
        .unwrap();
    let other = Repository::open(
        Box::new(LocalBackend::open(fx.store.path().join("repo")).unwrap()),
        &other_key,
        OpenOptions {
            cache_dir: Some(fx.store.path().join("cache-other")),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    let opts = BackupOptions {
        paths: vec![src.clone()],
        host: Some(HOST.into()),
        ..BackupOptions::default()
    };
    let theirs = chatvault_fs::backup(&other, &opts).unwrap();
    assert_eq!(
        theirs.parent, None,
        "the other writer has no snapshot of its own"
    );
    let second = fx.backup(&[&src], |_| {});
    assert_eq!(second.parent, Some(mine.snapshot));
    assert_eq!(second.files_unchanged, 1);
}
