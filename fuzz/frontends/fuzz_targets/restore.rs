//! Fuzz target: restore itself. A structure-aware input (a tree of files, directories,
//! links and entries with raw meta, under hostile names and link targets, and a message
//! log tree with its segment tables) is written as a backup set into an in-memory
//! repository, then restored into a scratch directory twice: the `files` tree with
//! `chatvault_fs::restore`, the whole set with `chatvault_msglog::restore`.
//!
//! Asserted after each run, whatever the input and whatever the restores returned:
//! - nothing was written outside the restore targets: the scratch directory, where link
//!   targets point (`../outside`, its absolute path), is exactly as it was;
//! - every file written verifies: it is a file of the snapshot at the same path, with the
//!   snapshot's bytes, and its meta's size and digest (or, for a message-log stream, its
//!   chunks; a framed stream's bytes parse as framed records); every link written is a
//!   link of the snapshot with the same target, which stays inside the target; every
//!   directory is a directory of the snapshot.
//!
//! Runs as root on the fuzzing machines (restore then also sets owners); the scratch
//! directory is under the system temporary directory.
#![no_main]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use chatvault_core::{
    BlobWriter, InitOptions, KdfParams, KeySource, MemoryBackend, Node, Repository, SnapshotKind,
    SnapshotRecord, Summary, Tree,
};
use chatvault_fs::{EntryKind, FsMeta, PARTIAL_DIR, RestoreOptions};
use chatvault_msglog::{NodeKind, NodeMeta, Ranges, SegmentMeta, Tier};
use libfuzzer_sys::arbitrary::{self, Arbitrary};

/// Inputs per repository before a fresh one is made (the in-memory backend and the index
/// cache only grow).
const RUNS_PER_REPO: u32 = 2000;
/// Deepest tree built; deeper entries are left out.
const MAX_DEPTH: usize = 6;

#[derive(Arbitrary, Debug)]
struct Input {
    files: Vec<Entry>,
    logs: Vec<LogEntry>,
}

/// A name: mostly a few plain ones (so entries meet), and every hostile shape.
#[derive(Arbitrary, Debug)]
enum Name {
    Plain(u8),
    Dot,
    DotDot,
    Slash,
    Nul,
    Empty,
    Partial,
    Logs,
    Raw(Vec<u8>),
}

impl Name {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Name::Plain(n) => format!("n{}", n % 6).into_bytes(),
            Name::Dot => b".".to_vec(),
            Name::DotDot => b"..".to_vec(),
            Name::Slash => b"a/b".to_vec(),
            Name::Nul => b"a\0b".to_vec(),
            Name::Empty => Vec::new(),
            Name::Partial => PARTIAL_DIR.as_bytes().to_vec(),
            Name::Logs => b"logs".to_vec(),
            Name::Raw(b) => b.iter().take(24).copied().collect(),
        }
    }
}

/// A link target: inside, up and out, absolute into the watched scratch directory, or
/// anything.
#[derive(Arbitrary, Debug)]
enum LinkTarget {
    Sibling(u8),
    Up(u8),
    Outside,
    Absolute,
    ThroughLink,
    Raw(Vec<u8>),
}

impl LinkTarget {
    fn bytes(&self, scratch: &Path) -> Vec<u8> {
        match self {
            LinkTarget::Sibling(n) => format!("n{}", n % 6).into_bytes(),
            LinkTarget::Up(n) => {
                let mut t = "../".repeat(usize::from(n % 5));
                t.push_str("outside/x");
                t.into_bytes()
            }
            LinkTarget::Outside => b"../outside".to_vec(),
            LinkTarget::Absolute => scratch.join("outside/abs").as_os_str().as_bytes().to_vec(),
            LinkTarget::ThroughLink => b"n0/../../outside".to_vec(),
            LinkTarget::Raw(b) => b.iter().take(40).copied().collect(),
        }
    }
}

/// What a file's meta says about its content.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Claim {
    Truth,
    WrongSize,
    WrongDigest,
    NoDigest,
}

#[derive(Arbitrary, Debug)]
enum Entry {
    File {
        name: Name,
        mode: u16,
        data: Vec<u8>,
        claim: Claim,
    },
    Dir {
        name: Name,
        mode: u16,
        children: Vec<Entry>,
    },
    Link {
        name: Name,
        target: LinkTarget,
    },
    /// A node whose meta is raw bytes (whatever they decode to), with content and
    /// possibly a subtree.
    Raw {
        name: Name,
        meta: Vec<u8>,
        data: Vec<u8>,
        children: Option<Vec<Entry>>,
    },
}

#[derive(Arbitrary, Debug)]
struct Segment {
    sealed: bool,
    records: u32,
    continues: bool,
    ranges: Option<(u64, u64, i64, i64)>,
}

#[derive(Arbitrary, Debug)]
enum LogEntry {
    Dir {
        name: Name,
        children: Vec<LogEntry>,
    },
    Stream {
        name: Name,
        framed: bool,
        chunks: Vec<Vec<u8>>,
        /// The segment table as written: one per chunk when `None`, else as given (a
        /// count or lengths that do not match must make restore refuse the stream).
        segments: Option<Vec<Segment>>,
        len_delta: i8,
    },
    Raw {
        name: Name,
        meta: Vec<u8>,
        chunks: Vec<Vec<u8>>,
        sub: Option<Vec<LogEntry>>,
    },
}

/// What the snapshot holds at a path (relative to a restore target).
#[derive(Debug)]
enum Model {
    /// A node of the `files` tree: its meta bytes and content.
    Fs { meta: Vec<u8>, data: Vec<u8> },
    /// A message-log node: its meta bytes and content.
    Log {
        meta: Vec<u8>,
        data: Vec<u8>,
        dir: bool,
    },
}

type Paths = BTreeMap<Vec<Vec<u8>>, Model>;

struct State {
    _dir: tempfile::TempDir,
    repo: Repository,
    runs: u32,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn fresh_state() -> State {
    let dir = tempfile::tempdir().expect("temporary directory");
    let init = InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(dir.path().join("cache")),
        ..InitOptions::default()
    };
    let repo = Repository::init(
        Box::new(MemoryBackend::new()),
        &KeySource::passphrase("fuzz"),
        init,
    )
    .expect("init");
    State {
        _dir: dir,
        repo,
        runs: 0,
    }
}

/// Sorts nodes by name and keeps the first of each name, as a tree must be.
fn tree_of(w: &BlobWriter<'_>, mut nodes: Vec<Node>) -> Option<chatvault_core::BlobId> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    w.write_tree(&Tree::new(nodes).ok()?).ok()
}

fn file_meta(kind: EntryKind, mode: u16) -> FsMeta {
    let mut m = FsMeta::empty(kind);
    m.mode = u32::from(mode) & 0o7777;
    m.mtime.secs = 1_700_000_000;
    m
}

/// Builds the `files` tree's nodes under `path`, recording what each path holds.
fn build_fs(
    w: &BlobWriter<'_>,
    entries: &[Entry],
    path: &[Vec<u8>],
    scratch: &Path,
    model: &mut Paths,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for e in entries {
        let (name, meta, data, subtree) = match e {
            Entry::File {
                name,
                mode,
                data,
                claim,
            } => {
                let mut m = file_meta(EntryKind::File, *mode);
                m.size = data.len() as u64;
                m.digest = Some(*blake3::hash(data).as_bytes());
                match claim {
                    Claim::Truth => {}
                    Claim::WrongSize => m.size += 1,
                    Claim::WrongDigest => m.digest = Some([7; 32]),
                    Claim::NoDigest => m.digest = None,
                }
                (name.bytes(), m.encode(), data.clone(), None)
            }
            Entry::Dir {
                name,
                mode,
                children,
            } => (
                name.bytes(),
                file_meta(EntryKind::Dir, *mode).encode(),
                Vec::new(),
                Some(children),
            ),
            Entry::Link { name, target } => {
                let mut m = file_meta(EntryKind::Symlink, 0o777);
                m.link_target = Some(target.bytes(scratch));
                (name.bytes(), m.encode(), Vec::new(), None)
            }
            Entry::Raw {
                name,
                meta,
                data,
                children,
            } => (name.bytes(), meta.clone(), data.clone(), children.as_ref()),
        };
        if name.is_empty() || model.contains_key(&child(path, &name)) {
            continue;
        }
        let here = child(path, &name);
        let subtree = match subtree {
            Some(children) if path.len() < MAX_DEPTH => {
                let nodes = build_fs(w, children, &here, scratch, model);
                match tree_of(w, nodes) {
                    Some(t) => Some(t),
                    None => continue,
                }
            }
            Some(_) => continue,
            None => None,
        };
        let Ok(content) = w.write_bytes(&data) else {
            continue;
        };
        model.insert(
            here,
            Model::Fs {
                meta: meta.clone(),
                data,
            },
        );
        nodes.push(Node {
            name,
            subtree,
            content,
            meta,
        });
    }
    nodes
}

/// Builds the `logs` tree's nodes under `path`.
fn build_logs(
    w: &BlobWriter<'_>,
    entries: &[LogEntry],
    path: &[Vec<u8>],
    model: &mut Paths,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for e in entries {
        let (name, meta, chunks, sub) = match e {
            LogEntry::Dir { name, children } => (
                name.bytes(),
                NodeMeta::dir().encode(),
                Vec::new(),
                Some(children),
            ),
            LogEntry::Stream {
                name,
                framed,
                chunks,
                segments,
                len_delta,
            } => {
                let kind = if *framed {
                    NodeKind::Framed
                } else {
                    NodeKind::Lines
                };
                let mut m = NodeMeta::empty(kind);
                let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                m.len = len.saturating_add_signed(i64::from(*len_delta));
                m.segments = match segments {
                    None => chunks
                        .iter()
                        .map(|_| SegmentMeta {
                            tier: Tier::Sealed,
                            records: 1,
                            continues: false,
                            ranges: None,
                        })
                        .collect(),
                    Some(given) => given
                        .iter()
                        .map(|s| SegmentMeta {
                            tier: if s.sealed { Tier::Sealed } else { Tier::Tail },
                            records: s.records,
                            continues: s.continues,
                            ranges: s.ranges.map(|(a, b, c, d)| Ranges {
                                seq_min: a.min(b),
                                seq_max: a.max(b),
                                ts_min: c.min(d),
                                ts_max: c.max(d),
                            }),
                        })
                        .collect(),
                };
                (name.bytes(), m.encode(), chunks.clone(), None)
            }
            LogEntry::Raw {
                name,
                meta,
                chunks,
                sub,
            } => (name.bytes(), meta.clone(), chunks.clone(), sub.as_ref()),
        };
        if name.is_empty() || model.contains_key(&child(path, &name)) {
            continue;
        }
        let here = child(path, &name);
        let subtree = match sub {
            Some(children) if path.len() < MAX_DEPTH => {
                let nodes = build_logs(w, children, &here, model);
                match tree_of(w, nodes) {
                    Some(t) => Some(t),
                    None => continue,
                }
            }
            Some(_) => continue,
            None => None,
        };
        // One chunk per segment, each written as one blob (`write_bytes` may cut a
        // large one; keep them small enough not to be).
        let mut content = Vec::new();
        for c in &chunks {
            let Ok(refs) = w.write_bytes(c) else {
                return nodes;
            };
            content.extend(refs);
        }
        model.insert(
            here,
            Model::Log {
                meta: meta.clone(),
                data: chunks.concat(),
                dir: subtree.is_some(),
            },
        );
        nodes.push(Node {
            name,
            subtree,
            content,
            meta,
        });
    }
    nodes
}

fn child(path: &[Vec<u8>], name: &[u8]) -> Vec<Vec<u8>> {
    let mut p = path.to_vec();
    p.push(name.to_vec());
    p
}

/// Every entry below `root`, by path components, without following links.
fn listing(root: &Path) -> BTreeMap<Vec<Vec<u8>>, (std::fs::FileType, Vec<u8>)> {
    fn walk(
        dir: &Path,
        path: &mut Vec<Vec<u8>>,
        out: &mut BTreeMap<Vec<Vec<u8>>, (std::fs::FileType, Vec<u8>)>,
    ) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().as_bytes().to_vec();
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).expect("metadata of a listed entry");
            path.push(name);
            let what = if md.is_symlink() {
                std::fs::read_link(&p)
                    .expect("link")
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else if md.is_file() {
                std::fs::read(&p).expect("file content")
            } else {
                Vec::new()
            };
            out.insert(path.clone(), (md.file_type(), what));
            if md.is_dir() {
                walk(&p, path, out);
            }
            path.pop();
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &mut Vec::new(), &mut out);
    out
}

/// The lexical rule restore applies to links (docs: chatvault-fs `names.rs`): relative,
/// never above the restore root, and no `..` after a normal component.
fn link_stays_inside(depth: usize, target: &[u8]) -> bool {
    if target.is_empty() || target.starts_with(b"/") || target.contains(&0) {
        return false;
    }
    let mut level = depth as i64;
    let mut descended = false;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if descended => return false,
            b".." => level -= 1,
            _ => {
                level += 1;
                descended = true;
            }
        }
        if level < 0 {
            return false;
        }
    }
    true
}

/// A framed stream's bytes parse as records (docs/FORMAT.md, section 10.5).
fn parses_framed(mut b: &[u8]) -> bool {
    let mut last: Option<u64> = None;
    while !b.is_empty() {
        if b.len() < 20 {
            return false;
        }
        let seq = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes")) as usize;
        if len > 4 << 20 || b.len() < 20 + len || last.is_some_and(|l| seq <= l) {
            return false;
        }
        last = Some(seq);
        b = &b[20 + len..];
    }
    true
}

/// Whether an entry a restore left at `path` (relative to its target) is what the
/// snapshot's `files` tree holds there, verified; why not otherwise.
fn fs_entry(path: &[Vec<u8>], kind: std::fs::FileType, what: &[u8], model: &Paths) -> Check {
    let Some(Model::Fs { meta, data }) = model.get(path) else {
        return Err("the files tree holds no such entry".into());
    };
    let meta =
        FsMeta::decode(meta).map_err(|e| format!("written from meta that does not decode: {e}"))?;
    let expect = |ok: bool, why: &str| if ok { Ok(()) } else { Err(why.to_owned()) };
    if kind.is_dir() {
        // Restore follows the meta: a directory node (with or without a subtree).
        expect(
            meta.kind == EntryKind::Dir,
            "a directory for a node that is none",
        )
    } else if kind.is_file() {
        expect(
            meta.kind == EntryKind::File,
            "a file for a node that is none",
        )?;
        expect(what == &data[..], "not the snapshot's bytes")?;
        expect(
            meta.size == data.len() as u64,
            "a size that does not match, unverified",
        )?;
        expect(
            meta.digest
                .is_none_or(|d| &d == blake3::hash(data).as_bytes()),
            "a digest that does not match, unverified",
        )
    } else if kind.is_symlink() {
        expect(
            meta.kind == EntryKind::Symlink,
            "a link for a node that is none",
        )?;
        expect(
            meta.link_target.as_deref() == Some(what),
            "another link target",
        )?;
        expect(link_stays_inside(path.len() - 1, what), "an outward link")
    } else {
        Err("a special file".into())
    }
}

/// Whether an entry at `path` below `logs/` is a message-log stream restored as it is:
/// a directory of the logs tree, a line stream of that name with exactly its bytes, or a
/// framed stream `NAME` restored as `NAME.jsonl` whose bytes parse as framed records.
fn log_entry(path: &[Vec<u8>], kind: std::fs::FileType, what: &[u8], model: &Paths) -> Check {
    if kind.is_dir() {
        return match model.get(path) {
            Some(Model::Log { dir: true, .. }) => Ok(()),
            _ => Err("a directory the logs tree does not hold".into()),
        };
    }
    if !kind.is_file() {
        return Err("not a file".into());
    }
    let stream_kind = |p: &[Vec<u8>]| match model.get(p) {
        Some(Model::Log {
            meta,
            data,
            dir: false,
        }) => NodeMeta::decode(meta, "fuzz").ok().map(|m| (m.kind, data)),
        _ => None,
    };
    let as_lines = matches!(stream_kind(path), Some((NodeKind::Lines, data)) if data == what);
    let mut framed = path.to_vec();
    let as_framed = match framed
        .last_mut()
        .and_then(|n| n.strip_suffix(b".jsonl").map(<[u8]>::to_vec))
    {
        Some(name) => {
            *framed.last_mut().expect("a name") = name;
            matches!(stream_kind(&framed), Some((NodeKind::Framed, data)) if parses_framed(data))
        }
        None => false,
    };
    if as_lines || as_framed {
        Ok(())
    } else {
        Err("not a stream of the snapshot restored as it is".into())
    }
}

/// The outcome of checking one entry written: why it is wrong, if it is.
type Check = Result<(), String>;

fn run(state: &mut State, input: &Input) {
    let scratch = tempfile::tempdir().expect("scratch");
    let scratch = std::fs::canonicalize(scratch.path())
        .map(|p| (scratch, p))
        .expect("canonical scratch");
    let (_guard, root) = scratch;
    std::fs::create_dir(root.join("outside")).expect("outside");
    std::fs::write(root.join("outside/keep"), b"keep").expect("keep");
    let before = listing(&root);

    let repo = &state.repo;
    let Ok(w) = repo.writer() else {
        return;
    };
    let mut files = Paths::new();
    let mut logs = Paths::new();
    let fs_nodes = build_fs(&w, &input.files, &[], &root, &mut files);
    let log_nodes = build_logs(&w, &input.logs, &[], &mut logs);
    let (Some(files_root), Some(logs_root)) = (tree_of(&w, fs_nodes), tree_of(&w, log_nodes))
    else {
        return;
    };
    let set_root = tree_of(
        &w,
        vec![
            Node {
                name: b"files".to_vec(),
                subtree: Some(files_root),
                content: Vec::new(),
                meta: file_meta(EntryKind::Dir, 0o755).encode(),
            },
            Node {
                name: b"logs".to_vec(),
                subtree: Some(logs_root),
                content: Vec::new(),
                meta: NodeMeta::dir().encode(),
            },
        ],
    );
    let Some(set_root) = set_root else {
        return;
    };
    if w.finish().is_err() {
        return;
    }
    let record = SnapshotRecord {
        time_unix_ms: 1_760_000_000_000,
        host: "fuzz".into(),
        tags: Vec::new(),
        source_kind: chatvault_msglog::SOURCE_KIND.into(),
        paths: vec!["fuzz".into()],
        parent: None,
        kind: SnapshotKind::Full,
        root: set_root,
        summary: Summary::default(),
        cursors: BTreeMap::new(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    };
    let Ok(id) = repo.save_snapshot(record) else {
        return;
    };

    let fs_target = root.join("fs");
    let opts = RestoreOptions {
        target: fs_target.clone(),
        ..RestoreOptions::default()
    };
    let fs_done = chatvault_fs::restore(repo, files_root, &opts).is_ok();
    let set_target = root.join("set");
    let _ = chatvault_msglog::restore(repo, id, &set_target);

    // Nothing outside the targets changed.
    let after: BTreeMap<_, _> = listing(&root)
        .into_iter()
        .filter(|(p, _)| p[0] != b"fs" && p[0] != b"set")
        .collect();
    let before: BTreeMap<_, _> = before.into_iter().collect();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "restore wrote outside its target"
    );
    assert_eq!(
        std::fs::read(root.join("outside/keep")).expect("keep"),
        b"keep"
    );

    // Every entry written verifies against the snapshot.
    for (path, (kind, what)) in listing(&fs_target) {
        if path[0] == PARTIAL_DIR.as_bytes() {
            assert!(!fs_done, "a finished restore left its partial folder");
            continue;
        }
        if let Err(why) = fs_entry(&path, kind, &what, &files) {
            panic!("fs restore wrote {path:?}: {why}");
        }
    }
    for (path, (kind, what)) in listing(&set_target) {
        if path[0] == PARTIAL_DIR.as_bytes() {
            continue;
        }
        let from_files = fs_entry(&path, kind, &what, &files);
        // `logs/` holds the message logs, unless the files tree restored an entry of
        // that name first (the message logs are then refused): either must hold.
        let from_logs = match path.split_first() {
            Some((first, [])) if first == b"logs" && kind.is_dir() => Ok(()),
            Some((first, rest)) if first == b"logs" => log_entry(rest, kind, &what, &logs),
            _ => Err("outside logs/".into()),
        };
        if let (Err(a), Err(b)) = (&from_files, &from_logs) {
            panic!("set restore wrote {path:?}: as a file: {a}; as a log: {b}");
        }
    }
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let state = guard.get_or_insert_with(fresh_state);
    state.runs += 1;
    if state.runs > RUNS_PER_REPO {
        *state = fresh_state();
    }
    run(state, &input);
});
