//! Reading snapshots without restoring them: listing, finding, printing one file,
//! comparing two snapshots, and sizing a tree.
//!
//! Invariants: every file's bytes come through the engine (each chunk checked against its
//! id) and `cat` checks the length and digest recorded at backup; trees are visited in
//! name order, so listings are stable; an unchanged subtree (same id) is never descended
//! twice by `diff` or `tree_size`.

use std::collections::HashMap;
use std::io::Write;

use chatvault_core::{BlobId, BlobType, Node, Repository, Tree};

use crate::error::{Error, Result};
use crate::meta::{EntryKind, FsMeta};
use crate::names;

/// Where a walk or restore starts: the snapshot root, or one node inside it.
pub(crate) enum Start {
    Root(Tree),
    Node { path: Vec<u8>, node: Node },
}

/// Finds `sub_path` (`/`-separated, `/` for the root) in the tree `root`.
pub(crate) fn locate(repo: &Repository, root: BlobId, sub_path: &str) -> Result<Start> {
    let comps = names::components(sub_path).map_err(|_| Error::NotInSnapshot {
        path: sub_path.into(),
    })?;
    let mut tree = repo.read_tree(root)?;
    let mut path = Vec::new();
    let last = comps.len();
    for (i, c) in comps.into_iter().enumerate() {
        path = names::join(&path, c);
        let node = tree.get(c).cloned().ok_or_else(|| Error::NotInSnapshot {
            path: sub_path.into(),
        })?;
        if i + 1 == last {
            return Ok(Start::Node { path, node });
        }
        let id = node.subtree.ok_or_else(|| Error::NotInSnapshot {
            path: sub_path.into(),
        })?;
        tree = repo.read_tree(id)?;
    }
    Ok(Start::Root(tree))
}

/// One entry of a snapshot, as [`walk`] shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its snapshot path (`/`-separated bytes, starting with `/`).
    pub path: Vec<u8>,
    /// What was recorded about it.
    pub meta: FsMeta,
    /// Its tree node (content chunks, subtree).
    pub node: Node,
}

impl Entry {
    /// The path for display (see [`names::display`](crate::display_path)).
    pub fn display_path(&self) -> String {
        names::display(&self.path)
    }
}

/// Calls `f` for every entry at or below `sub_path` (`/` for all), in path order;
/// `recursive: false` stops one level below `sub_path`.
pub fn walk(
    repo: &Repository,
    root: BlobId,
    sub_path: &str,
    recursive: bool,
    f: &mut dyn FnMut(&Entry) -> Result<()>,
) -> Result<()> {
    match locate(repo, root, sub_path)? {
        Start::Root(tree) => walk_tree(repo, &tree, b"/", recursive, f),
        Start::Node { path, node } => {
            let entry = entry(path, node)?;
            f(&entry)?;
            match entry.node.subtree {
                Some(id) if entry.meta.kind == EntryKind::Dir => {
                    walk_tree(repo, &repo.read_tree(id)?, &entry.path, recursive, f)
                }
                _ => Ok(()),
            }
        }
    }
}

fn entry(path: Vec<u8>, node: Node) -> Result<Entry> {
    let meta = FsMeta::decode(&node.meta).map_err(|e| Error::BadMeta {
        entry: names::display(&path),
        reason: e.to_string(),
    })?;
    Ok(Entry { path, meta, node })
}

fn walk_tree(
    repo: &Repository,
    tree: &Tree,
    path: &[u8],
    recursive: bool,
    f: &mut dyn FnMut(&Entry) -> Result<()>,
) -> Result<()> {
    for node in tree.nodes() {
        let e = entry(names::join(path, &node.name), node.clone())?;
        f(&e)?;
        if let (true, Some(id)) = (recursive, e.node.subtree) {
            walk_tree(repo, &repo.read_tree(id)?, &e.path, recursive, f)?;
        }
    }
    Ok(())
}

/// Writes one file's content to `out`, verifying every chunk, the length and the digest
/// recorded at backup; returns the bytes written. On a mismatch the error comes after the
/// bytes, which were each verified against their chunk id.
pub fn cat(repo: &Repository, root: BlobId, path: &str, out: &mut dyn Write) -> Result<u64> {
    let Start::Node { path: p, node } = locate(repo, root, path)? else {
        return Err(Error::NotAFile { path: path.into() });
    };
    let e = entry(p, node)?;
    if e.meta.kind != EntryKind::File || e.meta.error.is_some() {
        return Err(Error::NotAFile { path: path.into() });
    }
    let mut hasher = blake3::Hasher::new();
    let mut n = 0u64;
    for r in &e.node.content {
        let data = repo.read_blob(r.id, BlobType::Data)?;
        hasher.update(&data);
        out.write_all(&data)
            .map_err(|err| Error::io("<output>", err))?;
        n += data.len() as u64;
    }
    if n != e.meta.size
        || e.meta
            .digest
            .is_some_and(|d| d != *hasher.finalize().as_bytes())
    {
        return Err(Error::DigestMismatch {
            entry: e.display_path(),
        });
    }
    Ok(n)
}

/// How an entry differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// In both, with different content (or a different kind).
    Modified,
    /// Same content, different metadata (mode, owner, times).
    Metadata,
}

impl Change {
    /// `+`, `-`, `M` or `U`, as in restic's diff.
    pub fn symbol(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::Metadata => 'U',
        }
    }
}

/// One difference found by [`diff`].
#[derive(Debug, Clone)]
pub struct Difference {
    /// The entry's snapshot path.
    pub path: Vec<u8>,
    /// What changed.
    pub change: Change,
    /// Its size in the first snapshot (0 if absent or not a file).
    pub size_before: u64,
    /// Its size in the second snapshot (0 if absent or not a file).
    pub size_after: u64,
}

/// Calls `f` for every difference between the trees `a` and `b`, in path order. Subtrees
/// with the same id are skipped unvisited; added and removed directories are reported
/// with everything below them.
pub fn diff(
    repo: &Repository,
    a: BlobId,
    b: BlobId,
    f: &mut dyn FnMut(&Difference) -> Result<()>,
) -> Result<()> {
    diff_trees(repo, Some(a), Some(b), b"/", f)
}

fn diff_trees(
    repo: &Repository,
    a: Option<BlobId>,
    b: Option<BlobId>,
    path: &[u8],
    f: &mut dyn FnMut(&Difference) -> Result<()>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let load = |id: Option<BlobId>| id.map(|id| repo.read_tree(id)).transpose();
    let (ta, tb) = (load(a)?.unwrap_or_default(), load(b)?.unwrap_or_default());
    let (na, nb) = (ta.nodes(), tb.nodes());
    let (mut i, mut j) = (0, 0);
    while i < na.len() || j < nb.len() {
        let order = match (na.get(i), nb.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (x, y) = match order {
            std::cmp::Ordering::Less => (na.get(i), None),
            std::cmp::Ordering::Greater => (None, nb.get(j)),
            std::cmp::Ordering::Equal => (na.get(i), nb.get(j)),
        };
        i += usize::from(x.is_some());
        j += usize::from(y.is_some());
        let name = &x.or(y).expect("one side is present").name;
        diff_nodes(repo, x, y, &names::join(path, name), f)?;
    }
    Ok(())
}

fn diff_nodes(
    repo: &Repository,
    x: Option<&Node>,
    y: Option<&Node>,
    path: &[u8],
    f: &mut dyn FnMut(&Difference) -> Result<()>,
) -> Result<()> {
    let meta = |n: Option<&Node>| n.map(|n| entry(path.to_vec(), n.clone())).transpose();
    let (mx, my) = (meta(x)?, meta(y)?);
    let size = |e: &Option<Entry>| e.as_ref().map_or(0, |e| e.meta.size);
    let change = match (&mx, &my) {
        (None, Some(_)) => Some(Change::Added),
        (Some(_), None) => Some(Change::Removed),
        (Some(p), Some(q)) if p.meta.kind != q.meta.kind => Some(Change::Modified),
        (Some(p), Some(q))
            if p.meta.kind == EntryKind::File && p.node.content != q.node.content =>
        {
            Some(Change::Modified)
        }
        (Some(p), Some(q)) if p.meta.link_target != q.meta.link_target => Some(Change::Modified),
        (Some(p), Some(q)) if !same_metadata(&p.meta, &q.meta) => Some(Change::Metadata),
        _ => None,
    };
    if let Some(change) = change {
        f(&Difference {
            path: path.to_vec(),
            change,
            size_before: size(&mx),
            size_after: size(&my),
        })?;
    }
    let dir = |e: &Option<Entry>| {
        e.as_ref()
            .filter(|e| e.meta.kind == EntryKind::Dir)
            .and_then(|e| e.node.subtree)
    };
    let (da, db) = (dir(&mx), dir(&my));
    if da.is_some() || db.is_some() {
        diff_trees(repo, da, db, path, f)?;
    }
    Ok(())
}

/// Whether what restore would set is the same (change-detection fields aside).
fn same_metadata(a: &FsMeta, b: &FsMeta) -> bool {
    (a.mode, a.uid, a.gid, a.mtime) == (b.mode, b.uid, b.gid, b.mtime)
}

/// Files, directories and bytes in a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSize {
    /// Regular files.
    pub files: u64,
    /// Directories (not counting the root).
    pub dirs: u64,
    /// Sum of file sizes.
    pub bytes: u64,
}

/// Sizes a tree; `memo` remembers subtrees already sized, so sizing many snapshots that
/// share most of their trees costs about one walk plus the changes.
pub fn tree_size(
    repo: &Repository,
    root: BlobId,
    memo: &mut HashMap<BlobId, TreeSize>,
) -> Result<TreeSize> {
    if let Some(s) = memo.get(&root) {
        return Ok(*s);
    }
    let mut size = TreeSize::default();
    for node in repo.read_tree(root)?.nodes() {
        let m = FsMeta::decode(&node.meta)?;
        match (m.kind, node.subtree) {
            (EntryKind::File, _) => {
                size.files += 1;
                size.bytes += m.size;
            }
            (EntryKind::Dir, Some(id)) => {
                let sub = tree_size(repo, id, memo)?;
                size.files += sub.files;
                size.dirs += sub.dirs + 1;
                size.bytes += sub.bytes;
            }
            (EntryKind::Dir, None) => size.dirs += 1,
            (EntryKind::Symlink, _) => {}
        }
    }
    memo.insert(root, size);
    Ok(size)
}
