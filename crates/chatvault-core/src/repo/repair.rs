//! Repairing a damaged repository: index segments rebuilt from pack headers, and new
//! snapshots that leave out what can no longer be read.
//!
//! Invariants:
//! - Nothing is deleted before its replacement is stored: new segments are written
//!   before old ones are retired, and a repaired snapshot is saved before the original is
//!   forgotten (only on request).
//! - An index repair keeps what is intact: a segment that verifies stays (its writer's
//!   announcements keep their voucher, which readers and deduplication rank by); one that
//!   names packs that are gone is rewritten without them, keeping its origin; one that
//!   fails verification is retired. Only pack-header entries the remaining segments do not
//!   list are indexed anew, as read from pack headers (vouched by nobody: writers do not
//!   deduplicate against them). A segment naming a pack whose header is unreadable is kept,
//!   since its entries are the only record of where that pack's blobs are.
//! - Tree repair is generic: a node whose subtree cannot be read is dropped, and a node
//!   whose content names an unreadable blob is dropped or keeps its readable chunks, as
//!   the caller chooses. Node `meta` is never read or changed: it belongs to the
//!   frontend. Every loss is reported with the snapshot and the path.
//! - Memory is bounded by the packs (one id each), the trees walked (one id pair each)
//!   and the losses found, never by the number of blobs.

use std::collections::{HashMap, HashSet};

use super::Repository;
use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SegmentId, SnapshotId};
use crate::index::{IndexEntry, MAX_ENTRIES_PER_SEGMENT, Origin};
use crate::snapshot::SnapshotRecord;
use crate::tree::{Node, Tree};

/// Trees nested deeper than this are treated as unreadable (a guard for the stack).
const MAX_TREE_DEPTH: usize = 1024;

/// What [`Repository::repair_index`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRepairReport {
    /// Packs listed in the backend.
    pub packs: u64,
    /// Blobs listed by readable pack headers.
    pub blobs: u64,
    /// Of those, the ones no remaining segment listed at that location: indexed anew.
    pub blobs_reindexed: u64,
    /// New segments written (re-indexed entries, and rewritten segments).
    pub segments_written: u64,
    /// Old segments retired (deleted after their replacements were stored): unreadable
    /// ones, and ones rewritten without packs that are gone.
    pub segments_retired: u64,
    /// Old segments rewritten without the packs that are gone.
    pub segments_rewritten: u64,
    /// Old segments kept although they name blobs in packs whose header is unreadable.
    pub segments_kept: Vec<SegmentId>,
    /// Old segments that failed verification (all retired).
    pub segments_unreadable: u64,
    /// Packs whose trailer or header could not be read, with the reason.
    pub unreadable_packs: Vec<(String, String)>,
}

/// What to do with a node whose content names a blob that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DamagedContent {
    /// Drop the node (the whole file or stream is left out). The default.
    #[default]
    DropNode,
    /// Keep the node with only its readable chunks: the content is cut, and the node's
    /// frontend meta (sizes, digests) no longer matches it.
    KeepReadable,
}

/// Options for [`Repository::repair_snapshots`].
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// The snapshots to repair. By default (empty), every snapshot.
    pub snapshots: Vec<SnapshotId>,
    /// Read every referenced data blob to find corrupt ones, not only missing ones. By
    /// default disabled: a blob counts as lost when it is not indexed or its pack is gone
    /// (run `check --read-data` first to learn about corrupt blobs).
    pub read_data: bool,
    /// What to do with a node whose content is damaged. By default, drop it.
    pub damaged_content: DamagedContent,
    /// Compute and report, but write and delete nothing. By default disabled.
    pub dry_run: bool,
    /// Delete each original once its repaired replacement is saved (and an original
    /// whose root tree is lost, which has no replacement and restores nothing). By
    /// default disabled: the original stays (and keeps failing `check`) until forgotten.
    pub forget_originals: bool,
}

/// How something in a snapshot was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossKind {
    /// A directory's (or other container's) tree could not be read: the node and
    /// everything below it is left out.
    Subtree,
    /// Content blobs could not be read: the node is left out.
    Content,
    /// Content blobs could not be read: the node is kept with its readable chunks only.
    ContentCut,
}

/// One loss: a node left out or cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The node's path from the snapshot's root, names joined with `/` (raw bytes).
    pub path: Vec<u8>,
    /// What was lost.
    pub kind: LossKind,
    /// Why (the first unreadable blob or tree and the error).
    pub reason: String,
}

/// The repair of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRepair {
    /// The damaged snapshot.
    pub original: SnapshotId,
    /// Its replacement (`None` on a dry run, or when the root tree itself is lost).
    pub repaired: Option<SnapshotId>,
    /// Whether the original was deleted.
    pub original_forgotten: bool,
    /// Everything left out or cut, by path.
    pub losses: Vec<Loss>,
}

/// What [`Repository::repair_snapshots`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRepairReport {
    /// Snapshots examined.
    pub snapshots: u64,
    /// Snapshots found intact (nothing written for them).
    pub intact: u64,
    /// Snapshots that do not load at all (nothing can be salvaged from them here), with
    /// the reason.
    pub unreadable: Vec<(SnapshotId, String)>,
    /// Damaged snapshots and what their repair lost.
    pub repaired: Vec<SnapshotRepair>,
}

/// The tag a repaired snapshot carries in addition to the original's.
pub const REPAIRED_TAG: &str = "repaired";

impl Repository {
    /// Rebuilds the index from pack headers: indexes what the readable packs hold and no
    /// remaining segment lists, rewrites segments that name packs which are gone, and
    /// retires segments that do not verify (see the module invariants). Needs a full or
    /// admin key. Holds a prune lock meanwhile: it deletes segments, as a prune does.
    pub fn repair_index(&self) -> Result<IndexRepairReport> {
        self.require_read("read pack headers")?;
        let _lock = self.take_prune_lock(&super::PruneOptions::default())?;
        self.rebuild_index()
    }

    /// [`repair_index`](Self::repair_index) for a caller that holds the prune lock.
    pub(crate) fn rebuild_index(&self) -> Result<IndexRepairReport> {
        // Segments first: a segment names only packs stored before it, so every pack an
        // old segment names is in the pack listing that follows. The sync applies every
        // segment that verifies, so the cache lists what they say.
        let old = self.listed_segments()?;
        self.sync_index()?;
        let packs = self.backend.list("data/")?;
        let mut report = IndexRepairReport {
            packs: packs.len() as u64,
            ..IndexRepairReport::default()
        };
        let mut listed: HashSet<PackId> = HashSet::with_capacity(packs.len());
        let mut readable: HashSet<PackId> = HashSet::with_capacity(packs.len());
        let mut batch: Vec<IndexEntry> = Vec::new();
        for obj in &packs {
            let id = obj
                .name
                .rsplit('/')
                .next()
                .and_then(|h| PackId::from_hex(h).ok());
            if let Some(id) = id {
                listed.insert(id);
            }
            match self.read_pack_entries(&obj.name, obj.size) {
                Ok(entries) => {
                    if let Some(id) = id {
                        readable.insert(id);
                    }
                    report.blobs += entries.len() as u64;
                    for e in entries {
                        if !self.indexed_at(&e)? {
                            batch.push(e);
                        }
                    }
                }
                Err(e @ (Error::Io(_) | Error::Cache(_) | Error::PermissionDenied { .. })) => {
                    return Err(e);
                }
                Err(e) => report
                    .unreadable_packs
                    .push((obj.name.clone(), e.to_string())),
            }
            if batch.len() >= MAX_ENTRIES_PER_SEGMENT {
                report.blobs_reindexed += batch.len() as u64;
                report.segments_written +=
                    self.write_segments(Origin::PackHeaders, &batch, &[])?.len() as u64;
                batch.clear();
            }
        }
        report.blobs_reindexed += batch.len() as u64;
        let retire = self.repair_old_segments(&old, &listed, &readable, &mut report)?;
        // The last batch names the segments it replaces (FORMAT.md, `supersedes`).
        report.segments_written += self
            .write_segments(Origin::PackHeaders, &batch, &retire)?
            .len() as u64;
        for seg in &retire {
            self.backend.delete(&seg.object_name())?;
            report.segments_retired += 1;
        }
        self.sync_index()?;
        Ok(report)
    }

    /// Whether the index already lists this copy (same blob, pack and offset).
    fn indexed_at(&self, e: &IndexEntry) -> Result<bool> {
        Ok(self
            .index
            .copies(&e.blob)?
            .iter()
            .any(|c| c.entry.pack == e.pack && c.entry.offset == e.offset))
    }

    /// Decides the fate of each old segment: kept, rewritten without packs that are gone
    /// (the replacement is stored here, before the original is retired), or retired
    /// because it does not verify. Returns the segments to retire.
    fn repair_old_segments(
        &self,
        old: &[SegmentId],
        listed: &HashSet<PackId>,
        readable: &HashSet<PackId>,
        report: &mut IndexRepairReport,
    ) -> Result<Vec<SegmentId>> {
        let mut retire = Vec::new();
        for seg in old {
            match self.load_vouched_segment(seg) {
                Ok(loaded) => {
                    let entries = &loaded.body.entries;
                    if entries
                        .iter()
                        .any(|e| listed.contains(&e.pack) && !readable.contains(&e.pack))
                    {
                        report.segments_kept.push(*seg);
                    }
                    if entries.iter().all(|e| listed.contains(&e.pack)) {
                        continue;
                    }
                    let kept: Vec<IndexEntry> = entries
                        .iter()
                        .filter(|e| listed.contains(&e.pack))
                        .copied()
                        .collect();
                    if !kept.is_empty() {
                        report.segments_written +=
                            self.write_segments(loaded.origin, &kept, &[*seg])?.len() as u64;
                    }
                    report.segments_rewritten += 1;
                    retire.push(*seg);
                }
                Err(Error::Io(e)) => return Err(Error::Io(e)),
                Err(_) => {
                    report.segments_unreadable += 1;
                    retire.push(*seg);
                }
            }
        }
        Ok(retire)
    }

    /// Writes a new snapshot for every damaged one, leaving out (or cutting) the nodes
    /// whose data cannot be read, and reports exactly what was lost. Intact snapshots are
    /// left alone. Needs a full or admin key.
    pub fn repair_snapshots(&self, opts: &RepairOptions) -> Result<SnapshotRepairReport> {
        self.require_read("repair snapshots")?;
        let mut ids = if opts.snapshots.is_empty() {
            self.snapshot_ids()?
        } else {
            opts.snapshots.clone()
        };
        ids.sort();
        ids.dedup();
        let bad_packs = self.missing_packs()?;
        let mut walk = TreeRepair {
            repo: self,
            opts,
            bad_packs,
            memo: HashMap::new(),
            writer: None,
        };
        let mut report = SnapshotRepairReport::default();
        let mut pending: Vec<(SnapshotId, SnapshotRecord, Option<BlobId>, Vec<Loss>)> = Vec::new();
        for id in ids {
            report.snapshots += 1;
            let snap = match self.load_snapshot(id) {
                Ok(s) => s,
                Err(e @ (Error::Io(_) | Error::Cache(_))) => return Err(e),
                Err(e) => {
                    report.unreadable.push((id, e.to_string()));
                    continue;
                }
            };
            let outcome = walk.tree(snap.record.root, 0)?;
            match outcome {
                Walked::Same => report.intact += 1,
                Walked::Lost(reason) => pending.push((
                    id,
                    snap.record,
                    None,
                    vec![Loss {
                        path: b"/".to_vec(),
                        kind: LossKind::Subtree,
                        reason,
                    }],
                )),
                Walked::Changed(root, losses) => {
                    let losses = losses
                        .into_iter()
                        .map(|l| Loss {
                            path: [b"/".as_slice(), &l.path].concat(),
                            ..l
                        })
                        .collect();
                    pending.push((id, snap.record, Some(root), losses));
                }
            }
        }
        // Trees are stored (and their segments written) before any record names them.
        if let Some(w) = walk.writer.take() {
            w.finish()?;
        }
        for (id, record, root, losses) in pending {
            let mut repaired = None;
            let mut forgotten = false;
            if !opts.dry_run {
                if let Some(root) = root {
                    repaired = Some(self.save_snapshot(repaired_record(record, root))?);
                }
                // A snapshot whose root tree is lost restores nothing: with
                // `forget_originals` it goes too, or it would fail every check forever.
                if opts.forget_originals {
                    self.delete_snapshot(id)?;
                    forgotten = true;
                }
            }
            report.repaired.push(SnapshotRepair {
                original: id,
                repaired,
                original_forgotten: forgotten,
                losses,
            });
        }
        Ok(report)
    }

    /// Packs the index names that the backend does not list. Bounded by the packs.
    fn missing_packs(&self) -> Result<HashSet<PackId>> {
        let listed: HashSet<PackId> = self
            .backend
            .list("data/")?
            .into_iter()
            .filter_map(|o| PackId::from_hex(o.name.rsplit('/').next()?).ok())
            .collect();
        let mut missing = HashSet::new();
        self.index.for_each_entry(|e| {
            if !listed.contains(&e.pack) {
                missing.insert(e.pack);
            }
            Ok(())
        })?;
        Ok(missing)
    }
}

/// The replacement record: the original's time, host, paths and source, so retention,
/// drills and data-age figures treat it as the same point in time, and a `repaired` tag.
fn repaired_record(mut record: SnapshotRecord, root: BlobId) -> SnapshotRecord {
    record.root = root;
    if !record.tags.iter().any(|t| t == REPAIRED_TAG) {
        record.tags.push(REPAIRED_TAG.to_owned());
    }
    record
}

/// A tree walked for repair.
#[derive(Clone)]
enum Walked {
    /// Nothing below is damaged: keep the tree id.
    Same,
    /// The tree itself cannot be read.
    Lost(String),
    /// A new tree with the damage left out, and the losses (paths relative to the tree).
    Changed(BlobId, Vec<Loss>),
}

struct TreeRepair<'r> {
    repo: &'r Repository,
    opts: &'r RepairOptions,
    bad_packs: HashSet<PackId>,
    /// Trees already walked, and what the walk found. Bounded by the trees walked (and
    /// the losses found below them).
    memo: HashMap<BlobId, Walked>,
    writer: Option<crate::repo::BlobWriter<'r>>,
}

impl<'r> TreeRepair<'r> {
    fn tree(&mut self, id: BlobId, depth: usize) -> Result<Walked> {
        if let Some(m) = self.memo.get(&id) {
            return Ok(m.clone());
        }
        let walked = self.walk(id, depth)?;
        self.memo.insert(id, walked.clone());
        Ok(walked)
    }

    fn walk(&mut self, id: BlobId, depth: usize) -> Result<Walked> {
        if depth >= MAX_TREE_DEPTH {
            return Ok(Walked::Lost(format!(
                "nested deeper than {MAX_TREE_DEPTH} trees"
            )));
        }
        let tree = match self
            .read(id, BlobType::Tree)
            .and_then(|b| Tree::decode(&b, &format!("tree {id}")))
        {
            Ok(t) => t,
            Err(e) => return lost(e, &format!("tree {id}")),
        };
        let mut losses = Vec::new();
        let mut changed = false;
        let mut nodes = Vec::with_capacity(tree.nodes().len());
        for node in tree.into_nodes() {
            match self.node(node, depth, &mut losses)? {
                Some((n, c)) => {
                    changed |= c;
                    nodes.push(n);
                }
                None => changed = true,
            }
        }
        if !changed {
            return Ok(Walked::Same);
        }
        let new = Tree::new(nodes)?;
        let new_id = match self.opts.dry_run {
            true => crate::blob::blob_id(&self.repo.secrets.id_key, BlobType::Tree, &new.encode()),
            false => self.writer()?.write_tree(&new)?,
        };
        Ok(Walked::Changed(new_id, losses))
    }

    /// One node: `None` when it is left out, else the (possibly changed) node and whether
    /// it changed. Losses are appended with paths relative to the node's parent tree.
    fn node(
        &mut self,
        mut node: Node,
        depth: usize,
        losses: &mut Vec<Loss>,
    ) -> Result<Option<(Node, bool)>> {
        let mut changed = false;
        if let Some(sub) = node.subtree {
            match self.tree(sub, depth + 1)? {
                Walked::Same => {}
                Walked::Lost(reason) => {
                    losses.push(Loss {
                        path: node.name.clone(),
                        kind: LossKind::Subtree,
                        reason,
                    });
                    return Ok(None);
                }
                Walked::Changed(new, below) => {
                    losses.extend(below.into_iter().map(|l| Loss {
                        path: [node.name.as_slice(), b"/", &l.path].concat(),
                        ..l
                    }));
                    node.subtree = Some(new);
                    changed = true;
                }
            }
        }
        let mut first_bad: Option<String> = None;
        let mut kept = Vec::with_capacity(node.content.len());
        for r in &node.content {
            match self.data_problem(r.id)? {
                None => kept.push(*r),
                Some(why) => {
                    first_bad.get_or_insert(why);
                }
            }
        }
        if let Some(reason) = first_bad {
            let kind = match self.opts.damaged_content {
                DamagedContent::DropNode => LossKind::Content,
                DamagedContent::KeepReadable => LossKind::ContentCut,
            };
            losses.push(Loss {
                path: node.name.clone(),
                kind,
                reason,
            });
            if kind == LossKind::Content {
                return Ok(None);
            }
            node.content = kept;
            changed = true;
        }
        Ok(Some((node, changed)))
    }

    /// Why a data blob cannot be read, or `None` if it can.
    fn data_problem(&self, id: BlobId) -> Result<Option<String>> {
        let object = format!("blob {id}");
        match self.repo.index.get(&id)? {
            None => return Ok(Some(format!("{object}: not in the index"))),
            Some(e) if self.bad_packs.contains(&e.pack) => {
                return Ok(Some(format!(
                    "{object}: its pack {} is missing",
                    e.pack.object_name()
                )));
            }
            Some(_) if !self.opts.read_data => return Ok(None),
            Some(_) => {}
        }
        match self.read(id, BlobType::Data) {
            Ok(_) => Ok(None),
            Err(e) => match lost(e, &object)? {
                Walked::Lost(r) => Ok(Some(r)),
                _ => Ok(None),
            },
        }
    }

    fn read(&self, id: BlobId, t: BlobType) -> Result<Vec<u8>> {
        if let Some(e) = self.repo.index.get(&id)?
            && self.bad_packs.contains(&e.pack)
        {
            return Err(Error::NotFound {
                object: e.pack.object_name().into(),
            });
        }
        self.repo.read_blob(id, t)
    }

    fn writer(&mut self) -> Result<&crate::repo::BlobWriter<'r>> {
        let w = match self.writer.take() {
            Some(w) => w,
            None => self.repo.writer()?,
        };
        Ok(self.writer.insert(w))
    }
}

/// A read failure as a loss; failures of the local side end the repair.
fn lost(e: Error, object: &str) -> Result<Walked> {
    match e {
        Error::Io(_) | Error::Cache(_) | Error::PermissionDenied { .. } => Err(e),
        e => Ok(Walked::Lost(format!("{object}: {e}"))),
    }
}
