//! Copying snapshots into a repository with its own keys (`chatvault copy`): every blob a
//! snapshot reaches is read from the source, re-sealed (and re-identified under the
//! destination's id key) by the destination's writer, trees are rewritten bottom-up with
//! the destination's ids, and a record naming its origin is saved.
//!
//! Core stays generic: the walk knows only tree nodes, subtree links and content
//! references. Node names and frontend `meta` are copied byte for byte, and each content
//! chunk becomes exactly one destination blob (never re-chunked), so a frontend's meta
//! that describes its chunks by position (the message-log segment table) stays true.
//!
//! Invariants:
//! - Idempotent: a source snapshot is copied only if the destination has no snapshot whose
//!   origin is (source repository, source snapshot). A destination key that can read finds
//!   them in the records; a `backup` key remembers its own copies in its pins (and forgets
//!   those whose snapshot has gone).
//! - The destination is valid at every point: one writer session per snapshot, finished
//!   (packs, then index segments) before its record is saved, so a killed copy leaves at
//!   most unreferenced packs, and a re-run deduplicates against what was indexed.
//! - A source snapshot whose data cannot be read is reported and not saved; a destination
//!   error stops the run.
//! - The source's index cache is synced after its snapshots are listed, so every listed
//!   snapshot's blobs are known (a concurrent backup into the source is copied whole, or
//!   not at all by this run).
//! - Trees already converted in this run are reused by id, but only once their snapshot's
//!   session has finished: a tree written by a session that failed is not indexed.
//! - A snapshot is read against a base that is already copied (its parent's copy, or the
//!   last copied snapshot of its group): the base's source and destination trees are
//!   walked side by side, and a source subtree is taken as converted (not read again) only
//!   if its copy has the same names, meta and chunk lengths all the way down and every
//!   chunk it names is present in the destination; in a tree that changed, each chunk of
//!   the base directory whose copy is present is taken as converted. So a daily copy
//!   reads what changed, not the whole snapshot, and never references data the
//!   destination lacks.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::{Repository, SnapshotFilter};
use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{BlobId, RepoId, SnapshotId};
use crate::snapshot::{Snapshot, SnapshotOrigin, SnapshotRecord};
use crate::tree::{ContentRef, Node, Tree};
use crate::{BlobWriter, Recency};

/// Chunks read from the source and re-written at once, each on its own thread and each
/// up to the maximum chunk size in memory (with its compressed copy).
const READERS: usize = 8;

/// Options for [`copy_snapshots`].
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Which source snapshots to copy. By default all of them.
    pub filter: SnapshotFilter,
    /// Only find what would be copied; write nothing. By default off.
    pub dry_run: bool,
}

/// One snapshot copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedSnapshot {
    /// Its id in the source.
    pub source: SnapshotId,
    /// Its id in the destination (`None` in a dry run).
    pub copy: Option<SnapshotId>,
    /// Blobs (chunks and trees) the destination did not have.
    pub blobs_added: u64,
    /// Their plaintext bytes.
    pub bytes_added: u64,
}

/// A source snapshot that could not be copied: its data (or a tree) did not read. Nothing
/// was saved for it; what it did store is unreferenced until a prune.
#[derive(Debug)]
pub struct CopyFailure {
    /// The source snapshot.
    pub source: SnapshotId,
    /// Why.
    pub error: Error,
}

/// What [`copy_snapshots`] did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// The source repository.
    pub source: Option<RepoId>,
    /// Snapshots copied (or, in a dry run, that would be), oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Source snapshots the filter selected that the destination already has a copy of,
    /// with the copy's id.
    pub skipped: Vec<(SnapshotId, SnapshotId)>,
    /// Source snapshots whose data could not be read.
    pub failed: Vec<CopyFailure>,
    /// Source snapshots that did not load (damaged, untrusted); whether the filter would
    /// have selected them is unknown.
    pub unreadable: Vec<(SnapshotId, Error)>,
    /// Destination snapshots that did not load, so their origin is unknown (a copy of one
    /// of the source's snapshots among them would be copied again).
    pub destination_unreadable: usize,
    /// Plaintext bytes read from the source.
    pub bytes_read: u64,
    /// Blobs added to the destination.
    pub blobs_added: u64,
    /// Their plaintext bytes.
    pub bytes_added: u64,
    /// Bytes of the packs uploaded to the destination.
    pub pack_bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

/// Copies the snapshots of `src` that `opts.filter` selects and `dst` has no copy of into
/// `dst`, oldest first. `src` needs a key that can read (`full` or `admin`); `dst` any
/// key that can write. The two must be different repositories (a mirror of `src` is the
/// same repository: use `mirror`).
///
/// Fails on a destination error (storage, permission); a source snapshot that does not
/// load or whose data does not read is reported in the [`CopyReport`] and skipped.
pub fn copy_snapshots(
    src: &Repository,
    dst: &Repository,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let start = Instant::now();
    src.require_read("copy snapshots from the repository")?;
    if src.id() == dst.id() {
        return Err(Error::invalid(
            "copy",
            "the source and the destination are the same repository (a mirror of it is \
             the same repository too)",
        ));
    }
    let mut report = CopyReport {
        source: Some(src.id()),
        ..CopyReport::default()
    };
    let selected = select(src, &opts.filter, &mut report)?;
    let mut copies = dst.copies_of(src.id(), &mut report)?;
    let mut known: HashMap<BlobId, BlobId> = HashMap::new();
    // The last snapshot of each group (source kind, host, paths) seen, with its root.
    let mut last_of_group: HashMap<(String, String, Vec<String>), (SnapshotId, BlobId)> =
        HashMap::new();
    for s in selected {
        let origin = SnapshotOrigin {
            repo: src.id(),
            snapshot: s.id,
        };
        let group = (
            s.record.source_kind.clone(),
            s.record.host.clone(),
            s.record.paths.clone(),
        );
        let previous = last_of_group.insert(group, (s.id, s.record.root));
        if let Some(copy) = copies.get(&s.id) {
            report.skipped.push((s.id, *copy));
            continue;
        }
        if opts.dry_run {
            report.copied.push(CopiedSnapshot {
                source: s.id,
                copy: None,
                blobs_added: 0,
                bytes_added: 0,
            });
            continue;
        }
        let base = base_of(src, &s, &copies, previous).and_then(|(src_root, copy)| {
            let c = dst.load_parent_snapshot(copy).ok()?;
            Some((src_root, c.record.root))
        });
        let job = Job {
            snapshot: &s,
            origin,
            base,
        };
        match copy_one(src, dst, job, &copies, &mut known, &mut report)? {
            Some(copy) => {
                dst.remember_copy(&origin, copy)?;
                copies.insert(s.id, copy);
            }
            None => continue,
        }
    }
    report.duration = start.elapsed();
    Ok(report)
}

/// The source snapshots `filter` selects, oldest first (so a parent is copied before the
/// snapshots that name it); those that do not load go to the report.
fn select(
    src: &Repository,
    filter: &SnapshotFilter,
    report: &mut CopyReport,
) -> Result<Vec<Snapshot>> {
    let listed = src.snapshot_ids()?;
    // A snapshot is saved after the index segments naming its data: syncing after the
    // listing makes every listed snapshot's blobs known, even one a backup committed
    // since the source was opened.
    src.sync_index()?;
    let mut selected = Vec::new();
    for id in listed {
        match src.load_snapshot(id) {
            Ok(s) if filter.matches(&s) => selected.push(s),
            Ok(_) => {}
            Err(e) => report.unreadable.push((id, e)),
        }
    }
    selected.sort_by_key(Recency::of);
    Ok(selected)
}

/// The already-copied snapshot to read `s` against: its parent's copy, else the last
/// snapshot of its group before it, if that one has a copy. Returns the base's source
/// root and its copy's id.
fn base_of(
    src: &Repository,
    s: &Snapshot,
    copies: &BTreeMap<SnapshotId, SnapshotId>,
    last_of_group: Option<(SnapshotId, BlobId)>,
) -> Option<(BlobId, SnapshotId)> {
    if let Some(parent) = s.record.parent
        && let Some(copy) = copies.get(&parent)
        && let Ok(p) = src.load_snapshot(parent)
    {
        return Some((p.record.root, *copy));
    }
    let (last, root) = last_of_group?;
    copies.get(&last).map(|copy| (root, *copy))
}

/// Whether `dst_id` is the copy of `src_id` all the way down (names, meta, chunk lengths)
/// with every chunk present in the destination; records in `known` each subtree pair for
/// which that holds.
fn seed_tree(
    src: &Repository,
    dst: &Repository,
    src_id: BlobId,
    dst_id: BlobId,
    known: &mut HashMap<BlobId, BlobId>,
) -> Result<bool> {
    if let Some(copy) = known.get(&src_id) {
        return Ok(*copy == dst_id);
    }
    let Some(base) = BaseDir::read(src, dst, src_id, dst_id)? else {
        return Ok(false);
    };
    let mut whole = base.missing == 0;
    for (x, y) in base.src.nodes().iter().zip(base.dst.nodes()) {
        whole &= match (x.subtree, y.subtree) {
            (Some(sx), Some(sy)) => seed_tree(src, dst, sx, sy, known)?,
            _ => true,
        };
    }
    if whole {
        known.insert(src_id, dst_id);
    }
    Ok(whole)
}

/// A directory of the base snapshot: its source tree, its copy, and the copy's chunks
/// that the destination holds, by source chunk id.
struct BaseDir {
    src: Tree,
    dst: Tree,
    chunks: HashMap<BlobId, ContentRef>,
    /// Chunks of the copy the destination does not hold.
    missing: usize,
}

impl BaseDir {
    /// `None` when `dst_id` is not a copy of `src_id` (node for node: names, meta,
    /// subtree presence and chunk lengths).
    fn read(
        src: &Repository,
        dst: &Repository,
        src_id: BlobId,
        dst_id: BlobId,
    ) -> Result<Option<BaseDir>> {
        let (a, b) = (src.read_tree(src_id)?, dst.read_parent_tree(dst_id)?);
        if a.nodes().len() != b.nodes().len() {
            return Ok(None);
        }
        let mut pairs = Vec::new();
        for (x, y) in a.nodes().iter().zip(b.nodes()) {
            let lens = |n: &Node| n.content.iter().map(|c| c.len).collect::<Vec<_>>();
            if x.name != y.name
                || x.meta != y.meta
                || x.subtree.is_some() != y.subtree.is_some()
                || lens(x) != lens(y)
            {
                return Ok(None);
            }
            pairs.extend(
                x.content
                    .iter()
                    .map(|c| c.id)
                    .zip(y.content.iter().copied()),
            );
        }
        let missing = dst.missing_blobs(pairs.iter().map(|(_, c)| c.id))?;
        let chunks = pairs
            .into_iter()
            .filter(|(_, to)| missing.binary_search(&to.id).is_err())
            .collect();
        Ok(Some(BaseDir {
            src: a,
            dst: b,
            chunks,
            missing: missing.len(),
        }))
    }

    /// The base pair of the subtree named `name`, if both sides have it.
    fn subtree(&self, name: &[u8]) -> Option<(BlobId, BlobId)> {
        Some((self.src.get(name)?.subtree?, self.dst.get(name)?.subtree?))
    }
}

/// One snapshot to copy, with the already-copied base to read it against (source root,
/// destination root).
struct Job<'a> {
    snapshot: &'a Snapshot,
    origin: SnapshotOrigin,
    base: Option<(BlobId, BlobId)>,
}

/// A failure while copying one snapshot: the source's (that snapshot is skipped) or the
/// destination's (the run stops).
enum Failed {
    Source(Error),
    Destination(Error),
}

type Step<T> = std::result::Result<T, Failed>;

/// Copies one snapshot; `Ok(None)` when its source data did not read (reported).
fn copy_one(
    src: &Repository,
    dst: &Repository,
    job: Job<'_>,
    copies: &BTreeMap<SnapshotId, SnapshotId>,
    known: &mut HashMap<BlobId, BlobId>,
    report: &mut CopyReport,
) -> Result<Option<SnapshotId>> {
    let (s, origin) = (job.snapshot, job.origin);
    let started = Instant::now();
    let writer = dst.writer()?;
    let mut walk = Walk {
        src,
        dst,
        writer: &writer,
        known,
        new: HashMap::new(),
        bytes_read: 0,
    };
    let root = walk.tree(s.record.root, job.base);
    let (new_trees, bytes_read) = (walk.new, walk.bytes_read);
    report.bytes_read += bytes_read;
    let root = match root {
        Ok(root) => root,
        Err(Failed::Source(error)) => {
            // Dropping the writer ends its session; what it uploaded is unreferenced.
            drop(writer);
            report.failed.push(CopyFailure {
                source: s.id,
                error,
            });
            return Ok(None);
        }
        Err(Failed::Destination(e)) => return Err(e),
    };
    let stats = writer.finish()?;
    known.extend(new_trees);
    let record = SnapshotRecord {
        root,
        parent: s.record.parent.and_then(|p| copies.get(&p).copied()),
        summary: crate::Summary {
            bytes_added: stats.bytes_new,
            blobs_added: stats.blobs_new,
            duration_ms: started.elapsed().as_millis() as u64,
            ..s.record.summary.clone()
        },
        // Filled in by `save_snapshot` for this repository's writer.
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: Some(origin),
        ..s.record.clone()
    };
    let copy = dst.save_snapshot(record)?;
    report.blobs_added += stats.blobs_new;
    report.bytes_added += stats.bytes_new;
    report.pack_bytes += stats.pack_bytes;
    report.copied.push(CopiedSnapshot {
        source: s.id,
        copy: Some(copy),
        blobs_added: stats.blobs_new,
        bytes_added: stats.bytes_new,
    });
    Ok(Some(copy))
}

/// The bottom-up rewrite of one snapshot's trees.
struct Walk<'a, 'w> {
    src: &'a Repository,
    dst: &'a Repository,
    writer: &'a BlobWriter<'w>,
    /// Source tree id → destination tree id, for trees the destination holds from
    /// snapshots already saved (whole, every chunk present).
    known: &'a mut HashMap<BlobId, BlobId>,
    /// The same, for trees written by this snapshot's session (valid once it finishes).
    new: HashMap<BlobId, BlobId>,
    bytes_read: u64,
}

impl Walk<'_, '_> {
    /// Converts source tree `id`; `base` is the tree at the same path in the base snapshot
    /// and its copy.
    fn tree(&mut self, id: BlobId, base: Option<(BlobId, BlobId)>) -> Step<BlobId> {
        if let Some(copy) = self.known.get(&id).or_else(|| self.new.get(&id)) {
            return Ok(*copy);
        }
        // Unchanged since the base: its copy, if whole. Anything wrong with the base only
        // costs reading (its errors are not this snapshot's).
        if let Some((bs, bd)) = base
            && bs == id
            && seed_tree(self.src, self.dst, bs, bd, self.known).unwrap_or(false)
        {
            return Ok(bd);
        }
        let base =
            base.and_then(|(bs, bd)| BaseDir::read(self.src, self.dst, bs, bd).ok().flatten());
        let tree = self.src.read_tree(id).map_err(Failed::Source)?;
        // Every chunk of the tree's nodes in one list, so that small files are read
        // several at a time too, not one after the other.
        let chunks: Vec<ContentRef> = tree.data_refs().copied().collect();
        let mut chunks = self
            .content(&chunks, base.as_ref().map(|b| &b.chunks))?
            .into_iter();
        let mut nodes = Vec::with_capacity(tree.nodes().len());
        for node in tree.into_nodes() {
            let subtree = match node.subtree {
                Some(sub) => {
                    let sub_base = base.as_ref().and_then(|b| b.subtree(&node.name));
                    Some(self.tree(sub, sub_base)?)
                }
                None => None,
            };
            let content = chunks.by_ref().take(node.content.len()).collect();
            nodes.push(Node {
                subtree,
                content,
                ..node
            });
        }
        // Same names as a tree that decoded, so already sorted and unique.
        let tree = Tree::new(nodes).map_err(Failed::Source)?;
        let copy = self.writer.write_tree(&tree).map_err(Failed::Destination)?;
        self.new.insert(id, copy);
        Ok(copy)
    }

    /// Re-writes chunks, one destination blob per source chunk, in order, [`READERS`] at
    /// a time on their own threads (a remote store's latency is hidden by several reads in
    /// flight, which rayon's one thread per core would not give); a chunk the base
    /// directory's copy holds is taken from there, unread.
    fn content(
        &mut self,
        refs: &[ContentRef],
        held: Option<&HashMap<BlobId, ContentRef>>,
    ) -> Step<Vec<ContentRef>> {
        let mut out = Vec::with_capacity(refs.len());
        let mut todo = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            match held.and_then(|h| h.get(&r.id)) {
                Some(c) => out.push(Some(*c)),
                None => {
                    out.push(None);
                    todo.push(i);
                }
            }
        }
        let (src, writer) = (self.src, self.writer);
        for batch in todo.chunks(READERS) {
            let copied: Vec<Step<ContentRef>> = std::thread::scope(|s| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|&i| s.spawn(move || copy_chunk(src, writer, &refs[i])))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            for (&i, c) in batch.iter().zip(copied) {
                let c = c?;
                self.bytes_read += u64::from(c.len);
                out[i] = Some(c);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

fn copy_chunk(src: &Repository, writer: &BlobWriter<'_>, r: &ContentRef) -> Step<ContentRef> {
    let data = src
        .read_blob(r.id, BlobType::Data)
        .map_err(Failed::Source)?;
    if data.len() != r.len as usize {
        return Err(Failed::Source(Error::corrupt(
            format!("blob {}", r.id),
            "its length differs from the length its tree gives",
        )));
    }
    writer
        .write_blob(BlobType::Data, &data)
        .map_err(Failed::Destination)
}

/// The pins key under which a `backup` key remembers a copy it made.
fn pin_key(origin: &SnapshotOrigin) -> String {
    format!("copy.{}.{}", origin.repo.to_hex(), origin.snapshot.to_hex())
}

impl Repository {
    /// The copies this repository holds of `source`'s snapshots: source snapshot id →
    /// copy's id. Read from the records with a key that can read; otherwise from this
    /// client's pins, keeping only copies whose snapshot object is still listed.
    fn copies_of(
        &self,
        source: RepoId,
        report: &mut CopyReport,
    ) -> Result<BTreeMap<SnapshotId, SnapshotId>> {
        let mut copies = BTreeMap::new();
        if self.secrets.role.can_read() {
            for id in self.snapshot_ids()? {
                match self.load_snapshot(id) {
                    Ok(s) => {
                        if let Some(o) = s.record.origin
                            && o.repo == source
                        {
                            copies.insert(o.snapshot, s.id);
                        }
                    }
                    Err(_) => report.destination_unreadable += 1,
                }
            }
            return Ok(copies);
        }
        let listed: std::collections::HashSet<SnapshotId> =
            self.snapshot_ids()?.into_iter().collect();
        let prefix = format!("copy.{}.", source.to_hex());
        let mut pins = self.lock_pins();
        for (key, value) in pins.with_prefix(&prefix) {
            let (Some(from), Ok(copy)) = (
                key.strip_prefix(&prefix)
                    .and_then(|h| SnapshotId::from_hex(h).ok()),
                SnapshotId::from_hex(&value),
            ) else {
                return Err(Error::corrupt("pins", "a remembered copy does not parse"));
            };
            if listed.contains(&copy) {
                copies.insert(from, copy);
            } else {
                // Forgotten or pruned since: the pins stay as small as the repository.
                pins.remove(&key)?;
            }
        }
        Ok(copies)
    }

    /// Remembers a copy in the pins, for a key that cannot read the records back.
    fn remember_copy(&self, origin: &SnapshotOrigin, copy: SnapshotId) -> Result<()> {
        if self.secrets.role.can_read() {
            return Ok(());
        }
        self.lock_pins().set(&pin_key(origin), copy.to_hex())
    }
}
