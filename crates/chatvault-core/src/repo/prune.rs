//! Prune: delete the data no snapshot needs, and repack packs that are mostly unused.
//!
//! Steps (docs/ARCHITECTURE.md, "Concurrency and deletion", has the argument):
//! 1. Take a `prune` lock (one prune at a time; writers go on).
//! 2. Mark: walk every snapshot's trees, memoised by tree id, into an on-disk
//!    [`MarkSet`]; sum each pack's live bytes through the index cache's chosen copy of
//!    each blob.
//! 3. Plan from one pass over the index segments (each pack's blobs and bytes, and which
//!    segments name which packs): delete packs with no live blob; repack packs whose
//!    unused share exceeds `max_unused`, or small packs, within `max_repack`; delete packs
//!    no segment names (left by interrupted writers).
//! 4. Repack: copy the live blobs of those packs, verified, into new packs and segments.
//! 5. Delete, under an `exclusive` lock taken only when no writer session holds a
//!    `shared` lock: re-mark snapshots saved since step 2 (a pack holding a newly live
//!    blob is kept), write replacement segments without the doomed packs, delete the
//!    segments they replace, then the packs.
//!
//! Invariants: nothing is deleted before the new packs and segments that keep its live
//! blobs are stored; no segment ever names a deleted pack (segments go before packs); a
//! snapshot that fails to load, a live blob missing from the index, or a segment that
//! does not verify stops the prune before anything is deleted. Memory is bounded by the
//! number of packs and segments, never by the number of blobs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::Repository;
use super::locks::HeldLock;
use crate::blob::{self, BlobType};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SegmentId, SnapshotId};
use crate::index::{IndexEntry, MarkSet};
use crate::lock::LockKind;

/// Trees read in parallel while marking.
const TREE_BATCH: usize = 64;
/// Blobs to copy that are closer than this are read in one range (a seek costs more than
/// reading this much).
const READ_GAP: u64 = 256 << 10;
/// A read run stops growing at this many bytes (one blob may exceed it). A run is held in
/// memory twice (its bytes, then its verified payloads) beside the packs in the writer
/// pipeline; uncapped, a run was a whole pack.
const READ_MAX: u64 = 4 << 20;

/// Options for [`Repository::prune`].
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack a pack when more than this share of its bytes is unused (0.0 to 1.0). By
    /// default 0.10.
    pub max_unused: f64,
    /// Repack packs totalling at most this many bytes. By default unlimited.
    pub max_repack: Option<u64>,
    /// Packs smaller than this are merged by repacking (when there are at least two). By
    /// default a quarter of the repository's pack size.
    pub small_pack: Option<u64>,
    /// Plan and report, change nothing. By default disabled.
    pub dry_run: bool,
    /// How long to wait for running writer sessions (and another prune) before giving
    /// up with [`Error::Locked`]. By default 60 s.
    pub wait: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: 0.10,
            max_repack: None,
            small_pack: None,
            dry_run: false,
            wait: Duration::from_secs(60),
        }
    }
}

/// What a prune found and did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshots marked.
    pub snapshots: u64,
    /// Distinct blobs they reach.
    pub live_blobs: u64,
    /// Packs in the repository before the prune, and their bytes.
    pub packs_before: u64,
    /// Bytes of those packs.
    pub bytes_before: u64,
    /// Packs deleted because no live blob is in them (or no segment names them).
    pub packs_deleted: u64,
    /// Packs repacked (their live blobs copied, then the pack deleted).
    pub packs_repacked: u64,
    /// Of the deleted packs, those no index segment named (left by interrupted writers).
    pub packs_unindexed: u64,
    /// Packs kept although planned for deletion, because a snapshot saved during the
    /// prune needs them.
    pub packs_rescued: u64,
    /// Blobs copied by the repack.
    pub blobs_repacked: u64,
    /// Blob copies removed with their packs (unused blobs and superseded copies).
    pub blobs_removed: u64,
    /// Bytes of the new packs the repack wrote.
    pub bytes_repacked: u64,
    /// Bytes of the packs deleted.
    pub bytes_deleted: u64,
    /// Net space freed: bytes deleted minus bytes written by the repack (estimated on a
    /// dry run).
    pub bytes_freed: u64,
    /// Index segments replaced by segments without the deleted packs.
    pub segments_rewritten: u64,
    /// Index entries found to name bytes that are not the blob (a damaged copy, or a
    /// location a writer announced falsely) while another copy of the blob verified; they
    /// are dropped from the index, and the packs of the verified copies are kept.
    pub copies_refuted: u64,
    /// How long the prune took.
    pub duration: Duration,
}

/// Blobs of one pack fetched with one ranged read: `start..end` covers every member.
#[derive(Debug)]
struct ReadRun {
    start: u64,
    end: u64,
    members: Vec<IndexEntry>,
}

/// Groups the blobs to copy from one pack into read runs: blobs in offset order, merged
/// across gaps under [`READ_GAP`], a run ending before it would pass [`READ_MAX`] bytes (a
/// run of one blob may be longer). Reads only what is copied, and bounds what the repack
/// holds per run whatever the pack's size.
fn read_runs(mut chosen: Vec<IndexEntry>) -> Vec<ReadRun> {
    chosen.sort_by_key(|e| e.offset);
    let mut runs: Vec<ReadRun> = Vec::new();
    for e in chosen {
        let start = u64::from(e.offset);
        let end = start + u64::from(e.length);
        match runs.last_mut() {
            Some(r) if start <= r.end + READ_GAP && end - r.start <= READ_MAX => {
                r.end = r.end.max(end);
                r.members.push(e);
            }
            _ => runs.push(ReadRun {
                start,
                end,
                members: vec![e],
            }),
        }
    }
    runs
}

/// One pack as the plan sees it.
#[derive(Debug, Clone, Copy, Default)]
struct PackStat {
    /// Object size, if listed.
    size: Option<u64>,
    /// Blob copies the segments place in it.
    blobs: u64,
    /// Live blobs whose chosen copy is here, and their sealed bytes.
    live_blobs: u64,
    live_bytes: u64,
    indexed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Delete,
    Repack,
    Unindexed,
}

/// The state a prune carries between its steps.
struct Run {
    marks: MarkSet,
    packs: HashMap<PackId, PackStat>,
    marked_snapshots: HashSet<SnapshotId>,
    /// Segments listed at planning time and the packs each names.
    segments: Vec<(SegmentId, Vec<PackId>)>,
    fates: HashMap<PackId, Fate>,
    /// Copies refuted by [`contest`](Repository::contest) (a verified copy of the same blob
    /// exists): blob, pack, offset.
    refuted: HashSet<(BlobId, PackId, u32)>,
}

impl Run {
    /// Packs a segment names that the backend does not list.
    fn missing_packs(&self) -> HashSet<PackId> {
        self.packs
            .iter()
            .filter(|(_, p)| p.size.is_none())
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Repository {
    /// Removes unreferenced data. Needs a full or admin key. See [`PruneOptions`] for the
    /// knobs and the module documentation of `repo/prune.rs` for the steps and their
    /// safety with concurrent writers.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        self.with_read_threads(|| self.prune_in_pool(opts))
    }

    fn prune_in_pool(&self, opts: &PruneOptions) -> Result<PruneReport> {
        self.require_read("prune")?;
        if !(0.0..=1.0).contains(&opts.max_unused) {
            return Err(Error::invalid("max unused", "must be between 0 and 1"));
        }
        let start = Instant::now();
        let prune_lock = self.take_prune_lock(opts)?;
        // Listed before the sync: a snapshot is saved after its segments, so every
        // listed snapshot's blobs are in the synced cache.
        let snapshots = self.snapshot_ids()?;
        self.sync_index()?;
        let mut run = Run {
            marks: MarkSet::create(&self.scratch_dir("prune"))?,
            packs: HashMap::new(),
            marked_snapshots: HashSet::new(),
            segments: Vec::new(),
            fates: HashMap::new(),
            refuted: HashSet::new(),
        };
        let mut report = PruneReport {
            dry_run: opts.dry_run,
            ..PruneReport::default()
        };
        self.mark_all(&mut run, snapshots, None)?;
        self.survey(&mut run)?;
        self.plan(&mut run, opts, &mut report);
        self.contest(&mut run, &mut report)?;
        self.check_missing(&run)?;
        if opts.dry_run {
            report.live_blobs = run.marks.len();
            report.snapshots = run.marked_snapshots.len() as u64;
            report.duration = start.elapsed();
            return Ok(report);
        }
        self.repack(&run, &mut report)?;
        self.delete_doomed(&mut run, opts, &prune_lock, &mut report)?;
        report.live_blobs = run.marks.len();
        report.snapshots = run.marked_snapshots.len() as u64;
        report.bytes_freed = report.bytes_deleted.saturating_sub(report.bytes_repacked);
        drop(prune_lock);
        report.duration = start.elapsed();
        Ok(report)
    }

    /// A fresh directory under the cache for scratch data.
    pub(crate) fn scratch_dir(&self, what: &str) -> std::path::PathBuf {
        self.cache_dir.path().join(format!(
            "{what}-{}-{}",
            std::process::id(),
            hex::encode(crate::crypto::random_array::<4>())
        ))
    }

    /// Takes the prune lock: one prune (or index rebuild) at a time. Two that start
    /// together both see the other; both withdraw and retry after a random pause, so one
    /// of them goes first.
    pub(crate) fn take_prune_lock(&self, opts: &PruneOptions) -> Result<HeldLock> {
        let deadline = Instant::now() + opts.wait;
        loop {
            let held = HeldLock::take(self.backend.clone(), LockKind::Prune, &self.lock_opts)?;
            let mut others = self.wait_for_no(LockKind::Prune, Some(held.id()), Duration::ZERO)?;
            others.extend(self.wait_for_no(LockKind::Exclusive, None, Duration::ZERO)?);
            let Some(first) = others.first() else {
                return Ok(held);
            };
            drop(held);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Locked {
                    reason: format!("another prune is running: {}", first.describe()),
                });
            }
            for kind in [LockKind::Prune, LockKind::Exclusive] {
                self.wait_for_no(kind, None, left)?;
            }
            let jitter = u64::from(crate::crypto::random_array::<1>()[0]);
            let pause = self.lock_opts.poll.mul_f64(jitter as f64 / 255.0);
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// Marks every snapshot not marked yet. With `doomed`, a newly live blob whose chosen
    /// copy is in a doomed pack rescues that pack (it is kept, not deleted).
    fn mark_all(
        &self,
        run: &mut Run,
        snapshots: Vec<SnapshotId>,
        mut doomed: Option<&mut HashSet<PackId>>,
    ) -> Result<u64> {
        let mut rescued = 0;
        for id in snapshots {
            if run.marked_snapshots.contains(&id) {
                continue;
            }
            let snap = match self.load_snapshot(id) {
                Ok(s) => s,
                // Forgotten since it was listed: nothing to keep for it.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let root = snap.record.root;
            let mut pending = Vec::new();
            if self.mark_blob(run, root, BlobType::Tree, &mut doomed, &mut rescued)? {
                pending.push(root);
            }
            // Trees are read (opened, decompressed, re-hashed) in parallel, a batch at a
            // time; marking stays on this thread. Memory: one batch of trees and the ids
            // of trees still to read.
            while !pending.is_empty() {
                let batch = pending.split_off(pending.len().saturating_sub(TREE_BATCH));
                let trees: Vec<Result<crate::tree::Tree>> =
                    batch.par_iter().map(|t| self.read_tree(*t)).collect();
                for tree in trees {
                    let tree = tree?;
                    for r in tree.data_refs() {
                        self.mark_blob(run, r.id, BlobType::Data, &mut doomed, &mut rescued)?;
                    }
                    for sub in tree.subtrees() {
                        if self.mark_blob(run, sub, BlobType::Tree, &mut doomed, &mut rescued)? {
                            pending.push(sub);
                        }
                    }
                }
            }
            run.marked_snapshots.insert(id);
        }
        Ok(rescued)
    }

    /// Marks one blob; returns whether it was new. Counts it towards its chosen copy's
    /// pack.
    fn mark_blob(
        &self,
        run: &mut Run,
        id: BlobId,
        expected: BlobType,
        doomed: &mut Option<&mut HashSet<PackId>>,
        rescued: &mut u64,
    ) -> Result<bool> {
        if !run.marks.insert(&id)? {
            return Ok(false);
        }
        let entry = self.index.get(&id)?.ok_or_else(|| {
            Error::corrupt(
                format!("blob {id}"),
                "a snapshot needs it but the index does not list it (prune stopped; run check)",
            )
        })?;
        if entry.blob_type != expected {
            return Err(Error::corrupt(
                format!("{}#{id}", entry.pack.object_name()),
                "the index gives this blob another type than the tree that names it",
            ));
        }
        let p = run.packs.entry(entry.pack).or_default();
        p.live_blobs += 1;
        p.live_bytes += u64::from(entry.length);
        // A blob that became live during the prune keeps every copy: the doomed packs
        // were planned without it, and which copy is genuine was not checked.
        if let Some(d) = doomed.as_deref_mut() {
            for c in self.index.copies(&id)? {
                if d.remove(&c.entry.pack) {
                    *rescued += 1;
                }
            }
        }
        Ok(true)
    }

    /// One pass over the segments and the pack listing.
    fn survey(&self, run: &mut Run) -> Result<()> {
        for o in self.backend.list("data/")? {
            let Some(id) = o
                .name
                .rsplit('/')
                .next()
                .and_then(|h| PackId::from_hex(h).ok())
                .filter(|id| id.object_name() == o.name)
            else {
                continue; // not a pack name: not ours to delete
            };
            run.packs.entry(id).or_default().size = Some(o.size);
        }
        for seg in self.listed_segments()? {
            let body = self.load_segment(&seg)?;
            let mut named: Vec<PackId> = Vec::new();
            for e in &body.entries {
                let p = run.packs.entry(e.pack).or_default();
                p.blobs += 1;
                p.indexed = true;
                if named.last() != Some(&e.pack) && !named.contains(&e.pack) {
                    named.push(e.pack);
                }
            }
            run.segments.push((seg, named));
        }
        Ok(())
    }

    /// Stops the prune if a pack that is gone still holds the only counted copy of a live
    /// blob (after [`contest`](Self::contest) moved what it could to other copies).
    fn check_missing(&self, run: &Run) -> Result<()> {
        for (id, p) in &run.packs {
            if p.size.is_none() && p.live_blobs > 0 {
                return Err(Error::NotFound {
                    object: format!(
                        "{} (holds {} blobs that snapshots need; prune stopped)",
                        id.object_name(),
                        p.live_blobs
                    )
                    .into(),
                });
            }
        }
        Ok(())
    }

    /// Makes sure the plan never deletes the last genuine copy of a live blob.
    ///
    /// Marking counts each live blob's preferred copy only, so a pack that holds other
    /// copies of live blobs can be planned for deletion. Those copies matter when the
    /// preferred one is not genuine: damaged, in a pack that is gone, or announced by a
    /// writer that lied about where the blob is (a backup key can publish index entries for
    /// any id, pointing at a pack of its own). So for every live blob with a copy in a
    /// doomed pack, or whose preferred copy's pack is gone, the preferred copy is verified
    /// (read, authenticated, re-hashed to its id). If it fails, the other copies are tried
    /// in preference order; the first that verifies is counted instead and its pack is
    /// kept, and the copies that failed are refuted: dropped from the index when the
    /// segments are rewritten. When no copy verifies, nothing changes (the blob is lost
    /// either way, and `check` reports it). Only blobs with several copies cost a read;
    /// streamed over the surplus copies, so memory does not grow with the blobs.
    fn contest(&self, run: &mut Run, report: &mut PruneReport) -> Result<()> {
        let doomed: HashSet<PackId> = run.fates.keys().copied().collect();
        let missing = run.missing_packs();
        let mut last: Option<BlobId> = None;
        self.index.for_each_surplus(|surplus| {
            let blob = surplus.entry.blob;
            if last == Some(blob) {
                return Ok(());
            }
            last = Some(blob);
            if !run.marks.contains(&blob)? {
                return Ok(());
            }
            let copies = self.index.copies(&blob)?;
            let Some(counted) = copies.first() else {
                return Ok(());
            };
            let at_risk = missing.contains(&counted.entry.pack)
                || copies.iter().any(|c| doomed.contains(&c.entry.pack));
            if !at_risk || self.copy_verifies(&counted.entry)? {
                return Ok(());
            }
            let mut failed = vec![counted.entry];
            for other in &copies[1..] {
                if !self.copy_verifies(&other.entry)? {
                    failed.push(other.entry);
                    continue;
                }
                let len = u64::from(counted.entry.length);
                if let Some(p) = run.packs.get_mut(&counted.entry.pack) {
                    p.live_blobs = p.live_blobs.saturating_sub(1);
                    p.live_bytes = p.live_bytes.saturating_sub(len);
                }
                let p = run.packs.entry(other.entry.pack).or_default();
                p.live_blobs += 1;
                p.live_bytes += u64::from(other.entry.length);
                if run.fates.remove(&other.entry.pack).is_some() {
                    report.packs_rescued += 1;
                }
                report.copies_refuted += failed.len() as u64;
                run.refuted
                    .extend(failed.iter().map(|e| (e.blob, e.pack, e.offset)));
                break;
            }
            Ok(())
        })
    }

    /// Whether one copy of a blob verifies. A copy that is damaged or whose pack is gone
    /// does not; failures of the local side or of the storage connection stop the prune.
    fn copy_verifies(&self, entry: &IndexEntry) -> Result<bool> {
        let verified = self.read_copy_with(entry, |_| ());
        match verified {
            Ok(()) => Ok(true),
            Err(Error::Corrupt { .. } | Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn listed_segments(&self) -> Result<Vec<SegmentId>> {
        let mut v: Vec<SegmentId> = self
            .backend
            .list("index/")?
            .into_iter()
            .filter_map(|o| SegmentId::from_hex(o.name.strip_prefix("index/")?).ok())
            .collect();
        v.sort();
        Ok(v)
    }

    fn plan(&self, run: &mut Run, opts: &PruneOptions, report: &mut PruneReport) {
        let small = opts
            .small_pack
            .unwrap_or(u64::from(self.config.pack_size) / 4);
        let mut candidates: Vec<(f64, PackId, u64)> = Vec::new();
        let mut smalls: Vec<(f64, PackId, u64)> = Vec::new();
        for (id, p) in &run.packs {
            let Some(size) = p.size else { continue };
            report.packs_before += 1;
            report.bytes_before += size;
            if !p.indexed {
                run.fates.insert(*id, Fate::Unindexed);
            } else if p.live_blobs == 0 {
                run.fates.insert(*id, Fate::Delete);
            } else {
                let unused = size.saturating_sub(p.live_bytes) as f64 / size.max(1) as f64;
                if unused > opts.max_unused {
                    candidates.push((unused, *id, size));
                } else if size < small {
                    smalls.push((unused, *id, size));
                }
            }
        }
        // Most unused first; small packs only when at least two can be merged.
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        smalls.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if smalls.len() >= 2 {
            candidates.extend(smalls);
        }
        let mut budget = opts.max_repack.unwrap_or(u64::MAX);
        for (_, id, size) in candidates {
            if size > budget {
                continue;
            }
            budget -= size;
            run.fates.insert(id, Fate::Repack);
        }
        for (id, fate) in &run.fates {
            let p = &run.packs[id];
            let size = p.size.unwrap_or(0);
            match fate {
                Fate::Delete => report.packs_deleted += 1,
                Fate::Unindexed => {
                    report.packs_deleted += 1;
                    report.packs_unindexed += 1;
                }
                Fate::Repack => {
                    report.packs_repacked += 1;
                    report.blobs_repacked += p.live_blobs;
                    report.bytes_repacked += p.live_bytes;
                }
            }
            report.bytes_deleted += size;
            report.blobs_removed += p.blobs - p.live_blobs;
        }
        report.bytes_freed = report.bytes_deleted.saturating_sub(report.bytes_repacked);
    }

    /// Copies the live blobs of the packs to repack into new packs and segments.
    fn repack(&self, run: &Run, report: &mut PruneReport) -> Result<()> {
        let mut to_repack: Vec<PackId> = run
            .fates
            .iter()
            .filter(|(_, f)| **f == Fate::Repack)
            .map(|(id, _)| *id)
            .collect();
        if to_repack.is_empty() {
            report.bytes_repacked = 0;
            return Ok(());
        }
        to_repack.sort();
        let writer = self.repack_writer()?;
        let mut copied = 0u64;
        for pack in to_repack {
            copied += self.repack_one(run, pack, &writer)?;
        }
        let stats = writer.finish()?;
        report.blobs_repacked = copied;
        report.bytes_repacked = stats.pack_bytes;
        Ok(())
    }

    fn repack_one(&self, run: &Run, pack: PackId, writer: &super::BlobWriter<'_>) -> Result<u64> {
        let name = pack.object_name();
        let size = run.packs[&pack].size.unwrap_or(0);
        let entries = self.read_pack_entries(&name, size)?;
        let key = self.pack_key(&pack)?;
        let mut chosen = Vec::new();
        for e in entries {
            // Only the counted copy: other copies of the blob are surplus, and a refuted
            // copy is not the blob.
            if run.marks.contains(&e.blob)?
                && self
                    .index
                    .get(&e.blob)?
                    .is_some_and(|ix| ix.pack == pack && ix.offset == e.offset)
                && !run.refuted.contains(&(e.blob, pack, e.offset))
            {
                chosen.push(e);
            }
        }
        let mut copied = 0;
        for r in read_runs(chosen) {
            let bytes = self.backend.get_range(&name, r.start, r.end - r.start)?;
            copied += self.copy_run(&name, &key, r.start, &bytes, &r.members, writer)?;
        }
        Ok(copied)
    }

    /// Verifies (in parallel) and queues the blobs of one read run.
    fn copy_run(
        &self,
        name: &str,
        key: &crate::pack::PackKey,
        start: u64,
        bytes: &[u8],
        chosen: &[IndexEntry],
        writer: &super::BlobWriter<'_>,
    ) -> Result<u64> {
        // Verification (authentication, decompression, id) is the costly part.
        let payloads: Vec<Result<Vec<u8>>> = chosen
            .par_iter()
            .map(|e| {
                let at = (u64::from(e.offset) - start) as usize;
                let sealed = bytes
                    .get(at..at + e.length as usize)
                    .ok_or_else(|| Error::corrupt(name, "blob past the end of the pack"))?;
                let meta = e.blob_meta();
                blob::open_payload(
                    key,
                    &self.secrets.id_key,
                    &self.config.repo_id,
                    &meta,
                    sealed,
                    name,
                )
            })
            .collect();
        let mut copied = 0;
        for (e, payload) in chosen.iter().zip(payloads) {
            writer.write_payload(e.blob, e.blob_type, e.codec, e.raw_len, payload?)?;
            copied += 1;
        }
        Ok(copied)
    }

    /// The deletion step, under the exclusive lock.
    fn delete_doomed(
        &self,
        run: &mut Run,
        opts: &PruneOptions,
        prune_lock: &HeldLock,
        report: &mut PruneReport,
    ) -> Result<()> {
        if run.fates.is_empty()
            && run.refuted.is_empty()
            && run.packs.values().all(|p| p.size.is_some())
        {
            return Ok(());
        }
        let exclusive = HeldLock::take(self.backend.clone(), LockKind::Exclusive, &self.lock_opts)?;
        let writers = self.wait_for_no(LockKind::Shared, None, opts.wait)?;
        if !writers.is_empty() {
            return Err(Error::Locked {
                reason: format!(
                    "{} writer session(s) still running ({}); packs and segments were \
                     written, nothing was deleted; the next prune finishes",
                    writers.len(),
                    writers[0].describe()
                ),
            });
        }
        prune_lock.check_held()?;
        // Writers that finished meanwhile wrote segments: their packs are indexed now.
        self.sync_index()?;
        let mut doomed: HashSet<PackId> = run.fates.keys().copied().collect();
        let known: HashSet<SegmentId> = run.segments.iter().map(|(s, _)| *s).collect();
        for seg in self.listed_segments()? {
            if known.contains(&seg) {
                continue;
            }
            for e in self.load_segment(&seg)?.entries {
                if doomed.remove(&e.pack) {
                    report.packs_rescued += 1;
                }
            }
        }
        // No writer session runs now, and the sync above came after the last one ended.
        let snapshots = self.snapshot_ids()?;
        report.packs_rescued += self.mark_all(run, snapshots, Some(&mut doomed))?;
        let missing = run.missing_packs();
        exclusive.check_held()?;
        // Segments first: no segment may name a pack that is gone. Segments listing a
        // refuted copy are rewritten without it. The rewritten entries keep their origin
        // (the writer who announced them), so a prune does not lend them its own trust.
        let refuted_packs: HashSet<PackId> = run.refuted.iter().map(|(_, p, _)| *p).collect();
        let mut superseded = Vec::new();
        for (seg, packs) in &run.segments {
            if !packs
                .iter()
                .any(|p| doomed.contains(p) || missing.contains(p) || refuted_packs.contains(p))
            {
                continue;
            }
            let mut loaded = self.load_vouched_segment(seg)?;
            let before = loaded.body.entries.len();
            loaded.body.entries.retain(|e| {
                !doomed.contains(&e.pack)
                    && !missing.contains(&e.pack)
                    && !run.refuted.contains(&(e.blob, e.pack, e.offset))
            });
            if loaded.body.entries.len() == before {
                continue;
            }
            if !loaded.body.entries.is_empty() {
                self.write_segments(loaded.origin, &loaded.body.entries, &[*seg])?;
            }
            superseded.push(*seg);
        }
        // Independent deletions, each with its own directory sync: in parallel.
        superseded
            .par_iter()
            .try_for_each(|seg| self.backend.delete(&seg.object_name()))?;
        report.segments_rewritten = superseded.len() as u64;
        let mut doomed: Vec<PackId> = doomed.into_iter().collect();
        doomed.sort();
        self.recount(run, &doomed, report);
        doomed
            .par_iter()
            .try_for_each(|pack| self.backend.delete(&pack.object_name()))?;
        // The local copies of what the deleted packs held go with them.
        let gone: HashSet<&PackId> = doomed.iter().chain(missing.iter()).collect();
        self.index.retain_sealed(|p| !gone.contains(p))?;
        self.sync_index()?;
        drop(exclusive);
        Ok(())
    }

    /// The report's deletion figures for the packs actually deleted.
    fn recount(&self, run: &Run, doomed: &[PackId], report: &mut PruneReport) {
        let (mut deleted, mut unindexed, mut repacked) = (0, 0, 0);
        let (mut bytes, mut removed) = (0, 0);
        for id in doomed {
            let p = &run.packs[id];
            match run.fates.get(id) {
                Some(Fate::Repack) => repacked += 1,
                Some(Fate::Unindexed) => {
                    unindexed += 1;
                    deleted += 1;
                }
                _ => deleted += 1,
            }
            bytes += p.size.unwrap_or(0);
            removed += p.blobs.saturating_sub(p.live_blobs);
        }
        report.packs_deleted = deleted;
        report.packs_unindexed = unindexed;
        report.packs_repacked = repacked;
        report.bytes_deleted = bytes;
        report.blobs_removed = removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, length: u64) -> IndexEntry {
        IndexEntry {
            blob: BlobId::from_bytes([1; 32]),
            pack: PackId::from_bytes([2; 32]),
            offset: offset as u32,
            length: length as u32,
            raw_len: length as u32,
            blob_type: BlobType::Data,
            codec: crate::blob::Codec::Raw,
            domain: 0,
            generation: 0,
        }
    }

    fn spans(runs: &[ReadRun]) -> Vec<(u64, u64, usize)> {
        runs.iter()
            .map(|r| (r.start, r.end, r.members.len()))
            .collect()
    }

    /// Before runs were capped, the live blobs of a pack of small blobs were read as one
    /// run the size of the pack, and held twice (bytes, then payloads) during its copy.
    #[test]
    fn repack_reads_runs_of_at_most_read_max_not_whole_packs() {
        let blob = 512;
        let pack: Vec<IndexEntry> = (0..(16 << 20) / blob).map(|i| at(i * blob, blob)).collect();
        let n = pack.len();
        let runs = read_runs(pack.into_iter().rev().collect());
        assert!(
            runs.iter().all(|r| r.end - r.start <= READ_MAX),
            "{:?}",
            spans(&runs)
        );
        assert_eq!(runs.len(), 4, "{:?}", spans(&runs));
        assert_eq!(runs.iter().map(|r| r.members.len()).sum::<usize>(), n);
        for r in &runs {
            assert!(r.members.windows(2).all(|w| w[0].offset < w[1].offset));
            assert_eq!(u64::from(r.members[0].offset), r.start);
        }
    }

    #[test]
    fn read_runs_merge_small_gaps_split_large_ones_and_keep_big_blobs_whole() {
        let big = READ_MAX + 1000;
        let runs = read_runs(vec![
            at(0, 100),
            at(100 + READ_GAP, 100),
            at(300 + 2 * READ_GAP, 100),
            at(1 << 30, big),
            at((1 << 30) + big, 10),
        ]);
        assert_eq!(
            spans(&runs),
            vec![
                (0, 200 + READ_GAP, 2),
                (300 + 2 * READ_GAP, 400 + 2 * READ_GAP, 1),
                (1 << 30, (1 << 30) + big, 1),
                ((1 << 30) + big, (1 << 30) + big + 10, 1),
            ]
        );
        assert!(read_runs(Vec::new()).is_empty());
    }
}
