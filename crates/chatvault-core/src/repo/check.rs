//! Verifying a repository: snapshots, the trees they reach, the index against pack
//! headers, optionally every blob's bytes; and a keyless scrub of content-addressed names.
//!
//! Invariants: damage is reported as a [`CheckProblem`], never an abort; only local
//! failures (the index cache, local I/O) and a key that may not read stop a check. Memory
//! is bounded by the number of packs and trees and by the problems found, never by the
//! number of blobs: blob lookups go through the RocksDB index cache and the index is
//! streamed, never loaded. Packs are never read whole: `read_data` streams each one in
//! runs of at most [`READ_RUN`] bytes (or one blob, at most
//! [`MAX_SEALED_LEN`](crate::blob::MAX_SEALED_LEN)), whatever size storage claims.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::Repository;
use super::reader::read_bounded;
use crate::backend::Backend;
use crate::blob::{self, BlobType};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::index::IndexEntry;
use crate::limits::ObjectLimit;
use crate::pack::{PackKey, TRAILER_LEN};
use crate::tree::Tree;

/// Trees nested deeper than this are reported instead of walked (a guard for the stack).
const MAX_TREE_DEPTH: usize = 1024;
/// Tree plaintexts kept from the `read_data` pass for the tree walk, at most (beyond it,
/// the walk reads trees again). Saves reading, opening and hashing every tree twice.
const TREE_CACHE_BYTES: u64 = 64 << 20;
/// Bytes hashed per ranged read when scrubbing.
const SCRUB_CHUNK: u64 = 4 << 20;
/// Most bytes of consecutive blobs read at once by `read_data` (a longer blob is read
/// alone). Packs are checked in parallel, so this times the threads is the data pass's
/// buffer memory.
const READ_RUN: u64 = 8 << 20;

/// Options for [`Repository::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read every pack in full and authenticate every blob in it against its id. By
    /// default disabled: only pack trailers and headers are read.
    pub read_data: bool,
    /// Read and authenticate only part of the packs (implies reading data). By default
    /// none: `read_data` decides.
    pub read_data_subset: Option<DataSubset>,
}

/// Which packs a partial `--read-data` run reads.
///
/// `Part` splits the packs into `m` fixed parts by id, so running parts 1 to m reads
/// everything once. `Percent` and `Bytes` continue where this client's previous partial
/// run stopped (the position is kept in the cache directory's pins) and wrap around, so a
/// weekly job with a budget reads the whole repository over successive runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataSubset {
    /// Part `n` of `m` (1-based): the packs whose id, as a big-endian number, falls in the
    /// n-th of m equal ranges.
    Part {
        /// Which part, 1 to `m`.
        n: u32,
        /// How many parts.
        m: u32,
    },
    /// About this percentage of the pack bytes, continuing from the previous run.
    Percent(f64),
    /// About this many pack bytes, continuing from the previous run.
    Bytes(u64),
}

impl std::str::FromStr for DataSubset {
    type Err = Error;

    /// `n/m`, `P%` (0 < P ≤ 100), or a byte count with an optional `K`, `M`, `G` or `T`
    /// suffix (powers of 1024).
    fn from_str(s: &str) -> Result<DataSubset> {
        let bad = || {
            Error::invalid(
                "read-data subset",
                format!("{s:?}: expected n/m, a percentage like 10%, or a size like 5G"),
            )
        };
        if let Some((n, m)) = s.split_once('/') {
            let (n, m): (u32, u32) = (n.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            return if m > 0 && (1..=m).contains(&n) {
                Ok(DataSubset::Part { n, m })
            } else {
                Err(bad())
            };
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| bad())?;
            return if p > 0.0 && p <= 100.0 {
                Ok(DataSubset::Percent(p))
            } else {
                Err(bad())
            };
        }
        parse_size(s)
            .filter(|b| *b > 0)
            .map(DataSubset::Bytes)
            .ok_or_else(bad)
    }
}

/// A byte count with an optional `K`, `M`, `G` or `T` suffix (powers of 1024), as
/// operators write sizes (`500M`, `2G`); `None` if it is not one or overflows.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        Some('T' | 't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The pins key holding the last pack a budgeted partial read reached.
const SUBSET_CURSOR: &str = "check_read_data_cursor";

/// The packs (by index into `packs`, sorted by name, i.e. by id) a subset selects, and the
/// new cursor to remember for budgeted subsets.
fn select_subset(
    packs: &[crate::backend::ObjectInfo],
    subset: DataSubset,
    cursor: Option<&str>,
) -> (Vec<bool>, Option<String>) {
    let mut chosen = vec![false; packs.len()];
    let budget = match subset {
        DataSubset::Part { n, m } => {
            for (i, p) in packs.iter().enumerate() {
                let hex = p.name.rsplit('/').next().unwrap_or("");
                let prefix = u64::from_str_radix(hex.get(..16).unwrap_or("0"), 16).unwrap_or(0);
                // The part of the id space this pack falls in: floor(prefix × m / 2^64).
                let part = ((u128::from(prefix) * u128::from(m)) >> 64) as u32;
                chosen[i] = part + 1 == n;
            }
            return (chosen, None);
        }
        DataSubset::Percent(p) => {
            let total: u64 = packs.iter().map(|p| p.size).sum();
            ((total as f64) * p / 100.0).ceil() as u64
        }
        DataSubset::Bytes(b) => b,
    };
    // Start after the remembered pack, wrapping around; stop once the budget is spent.
    let start = cursor.map_or(0, |c| packs.partition_point(|p| p.name.as_str() <= c));
    let mut spent = 0u64;
    let mut last = None;
    for k in 0..packs.len() {
        if spent >= budget {
            break;
        }
        let i = (start + k) % packs.len();
        chosen[i] = true;
        spent += packs[i].size;
        last = Some(packs[i].name.clone());
    }
    (chosen, last)
}

/// What a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A snapshot object does not load or verify.
    SnapshotUnreadable,
    /// A tree blob does not read or decode.
    TreeUnreadable,
    /// A blob a tree references is not in the index.
    BlobMissing,
    /// A referenced blob is indexed in a pack that is missing or unreadable.
    BlobInBadPack,
    /// A blob's bytes fail authentication or do not match its id.
    BlobCorrupt,
    /// A pack the index references is not in the backend.
    PackMissing,
    /// A pack's trailer or header does not read, open or parse.
    PackUnreadable,
    /// The index and a pack header disagree about a blob.
    IndexMismatch,
    /// An index segment failed verification and was not applied.
    SegmentUnreadable,
    /// An object's bytes do not hash to its name.
    ContentMismatch,
    /// A key slot's header does not decode: whoever holds that slot's passphrase or key
    /// file can no longer open the repository (its sealed part can only be checked by
    /// opening it). Affects access, not data.
    SlotUnreadable,
    /// A hold object does not verify (forget and prune refuse to run until it is fixed).
    HoldUnreadable,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckProblem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The object concerned: an object name, or `<pack name>#<blob id>` for a blob.
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// Snapshots that reach the object, where known (empty if none or unknown).
    pub snapshots: Vec<SnapshotId>,
}

/// What [`Repository::check`] looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Snapshot objects examined.
    pub snapshots: u64,
    /// Distinct trees walked.
    pub trees: u64,
    /// Pack objects examined.
    pub packs: u64,
    /// Blobs listed in pack headers and compared with the index.
    pub blobs_checked: u64,
    /// Packs read whole (all with `read_data`, some with a subset).
    pub packs_read: u64,
    /// Blobs whose bytes were authenticated (with `read_data`).
    pub blobs_read: u64,
    /// Blobs in pack headers that the index does not list (left by an interrupted backup;
    /// not a problem, a prune reclaims them).
    pub unindexed_blobs: u64,
    /// Bytes read from the backend for packs (trailers and headers, or whole packs).
    pub bytes_read: u64,
    /// Wall time.
    pub duration: Duration,
    /// Everything found wrong; empty when the repository is sound.
    pub problems: Vec<CheckProblem>,
}

/// What [`scrub`] looked at and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Content-addressed objects hashed.
    pub objects: u64,
    /// Bytes hashed.
    pub bytes_read: u64,
    /// Wall time.
    pub duration: Duration,
    /// Objects whose bytes do not hash to their name, or that could not be read.
    pub problems: Vec<CheckProblem>,
}

fn problem(
    kind: ProblemKind,
    object: impl Into<String>,
    message: impl Into<String>,
) -> CheckProblem {
    CheckProblem {
        kind,
        object: object.into(),
        message: message.into(),
        snapshots: Vec::new(),
    }
}

/// The message for an error that is a finding about `object`; errors that end a check (the
/// local side or the key) are returned as errors instead.
fn finding(e: Error, object: &str) -> Result<String> {
    match e {
        Error::PermissionDenied { .. } | Error::Cache(_) | Error::Io(_) => Err(e),
        Error::Corrupt { object: o, reason } | Error::Untrusted { object: o, reason }
            if o.as_str() == object =>
        {
            Ok(reason)
        }
        e => Ok(e.to_string()),
    }
}

/// What checking one pack found.
#[derive(Default)]
struct PackOutcome {
    /// Header entries whose index entry points at this pack and agrees with it.
    confirmed: u64,
    blobs: u64,
    blobs_read: u64,
    unindexed: u64,
    bytes_read: u64,
    unreadable: bool,
    /// Blobs found corrupt, each with the index of its problem in `problems`.
    bad_blobs: Vec<(BlobId, usize)>,
    problems: Vec<CheckProblem>,
    /// Authenticated tree plaintexts, for the walk (within the cache budget).
    trees: Vec<(BlobId, Vec<u8>)>,
}

/// A pack's blobs, as `verify_blobs` needs them.
struct Blobs<'a> {
    entries: &'a [IndexEntry],
    /// Whether the index reads each blob from this pack.
    read_here: &'a [bool],
    /// Bytes of tree plaintext that may still be kept for the walk.
    tree_budget: &'a AtomicU64,
}

/// One blob checked by `verify_blobs`.
enum Verified {
    /// Sound; with its plaintext if it is a tree kept for the walk.
    Sound(Option<(BlobId, Vec<u8>)>),
    /// Corrupt: its id, whether the index reads it from this pack, and the problem.
    Corrupt(BlobId, bool, CheckProblem),
}

/// Mutable state of one check run.
struct Run {
    problems: Vec<CheckProblem>,
    /// Blobs already found bad, to the index of their problem. Bounded by the problems.
    bad_blobs: HashMap<BlobId, usize>,
    /// Packs missing or unreadable. Bounded by the number of packs.
    bad_packs: HashSet<PackId>,
    /// Trees already walked and found clean. One id per distinct tree: bounded by the
    /// number of trees, which is what "walk each tree once" costs.
    clean_trees: HashSet<BlobId>,
    /// Trees already walked with problems at or below them, to those problems (so a
    /// snapshot that reaches them again is named too). Bounded by problems × depth.
    tainted_trees: HashMap<BlobId, Vec<usize>>,
    /// Tree plaintexts authenticated by the data pass, taken by the walk. At most
    /// `TREE_CACHE_BYTES`.
    tree_cache: HashMap<BlobId, Vec<u8>>,
}

impl Run {
    fn push(&mut self, p: CheckProblem) -> usize {
        self.problems.push(p);
        self.problems.len() - 1
    }
}

impl Repository {
    /// Verifies the repository: every snapshot loads, every tree it reaches decodes and
    /// names only indexed blobs, the index agrees with every pack header, and with
    /// [`CheckOptions::read_data`] every blob's bytes authenticate. Damage is reported in
    /// [`CheckReport::problems`]. Needs a full or admin key.
    pub fn check(&self, opts: &CheckOptions) -> Result<CheckReport> {
        self.with_read_threads(|| self.check_in_pool(opts))
    }

    fn check_in_pool(&self, opts: &CheckOptions) -> Result<CheckReport> {
        self.require_read("check trees and blobs")?;
        let start = Instant::now();
        self.sync_index()?;
        let mut report = CheckReport::default();
        let mut run = Run {
            problems: self
                .index_problems()
                .into_iter()
                .map(|m| problem(ProblemKind::SegmentUnreadable, "index/", m))
                .collect(),
            bad_blobs: HashMap::new(),
            bad_packs: HashSet::new(),
            clean_trees: HashSet::new(),
            tainted_trees: HashMap::new(),
            tree_cache: HashMap::new(),
        };
        self.check_slots(&mut run)?;
        self.check_packs(opts, &mut run, &mut report)?;
        self.check_snapshots(&mut run, &mut report)?;
        self.check_holds(&mut run)?;
        report.problems = run.problems;
        report.duration = start.elapsed();
        Ok(report)
    }

    /// Checks every key slot's shape (header, repository, length) without opening it.
    fn check_slots(&self, run: &mut Run) -> Result<()> {
        for o in self.backend.list("keys/")? {
            let res = read_bounded(self.backend(), &o.name, ObjectLimit::KeySlot)
                .and_then(|b| crate::keys::check_shape(&b, &o.name, &self.config.repo_id));
            if let Err(e) = res {
                let message = finding(e, &o.name)?;
                run.push(problem(ProblemKind::SlotUnreadable, o.name, message));
            }
        }
        Ok(())
    }

    /// Every hold must verify: a damaged one stops forget.
    fn check_holds(&self, run: &mut Run) -> Result<()> {
        for o in self.backend.list("holds/")? {
            let id = o
                .name
                .strip_prefix("holds/")
                .and_then(|h| crate::id::HoldId::from_hex(h).ok());
            let outcome = match id {
                Some(id) => self.load_hold(id).map(|_| ()),
                None => Err(Error::corrupt(&*o.name, "not a hold name")),
            };
            if let Err(e) = outcome {
                let message = finding(e, &o.name)?;
                run.push(problem(ProblemKind::HoldUnreadable, &*o.name, message));
            }
        }
        Ok(())
    }

    /// Compares every pack header with the index (in parallel), then streams the index
    /// once for entries that point at missing packs or past their pack's header.
    fn check_packs(
        &self,
        opts: &CheckOptions,
        run: &mut Run,
        report: &mut CheckReport,
    ) -> Result<()> {
        let mut listed = self.backend.list("data/")?;
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let read = self.packs_to_read(opts, &listed)?;
        report.packs_read = read.iter().filter(|r| **r).count() as u64;
        let tree_budget = AtomicU64::new(TREE_CACHE_BYTES);
        let outcomes: Vec<(Option<PackId>, PackOutcome)> = listed
            .par_iter()
            .zip(read.par_iter())
            .map(|(o, read)| self.check_pack(&o.name, o.size, *read, &tree_budget))
            .collect::<Result<_>>()?;
        // One entry per pack: bounded by the number of packs.
        let mut confirmed: HashMap<PackId, u64> = HashMap::new();
        for (id, out) in outcomes {
            report.packs += 1;
            report.blobs_checked += out.blobs;
            report.blobs_read += out.blobs_read;
            report.unindexed_blobs += out.unindexed;
            report.bytes_read += out.bytes_read;
            let first = run.problems.len();
            run.problems.extend(out.problems);
            run.tree_cache.extend(out.trees);
            for (b, i) in out.bad_blobs {
                run.bad_blobs.insert(b, first + i);
            }
            if let Some(id) = id {
                if out.unreadable {
                    run.bad_packs.insert(id);
                }
                confirmed.insert(id, out.confirmed);
            }
        }
        let mut indexed: HashMap<PackId, u64> = HashMap::new();
        self.index.for_each_entry(|e| {
            *indexed.entry(e.pack).or_default() += 1;
            Ok(())
        })?;
        let mut indexed: Vec<(PackId, u64)> = indexed.into_iter().collect();
        indexed.sort();
        for (pack, n) in indexed {
            let name = pack.object_name();
            match confirmed.get(&pack) {
                None => {
                    run.bad_packs.insert(pack);
                    run.push(problem(
                        ProblemKind::PackMissing,
                        name,
                        format!("{n} indexed blobs are stored in this pack, which is missing"),
                    ));
                }
                Some(&c) if c < n && !run.bad_packs.contains(&pack) => {
                    run.push(problem(
                        ProblemKind::IndexMismatch,
                        name,
                        format!(
                            "the index places {} blobs in this pack that its header does not list",
                            n - c
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Which packs to read whole; for a budgeted subset, remembers where this run stopped.
    fn packs_to_read(
        &self,
        opts: &CheckOptions,
        listed: &[crate::backend::ObjectInfo],
    ) -> Result<Vec<bool>> {
        let Some(subset) = opts.read_data_subset else {
            return Ok(vec![opts.read_data; listed.len()]);
        };
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        let (chosen, cursor) = select_subset(listed, subset, pins.get(SUBSET_CURSOR));
        if let Some(c) = cursor {
            pins.set(SUBSET_CURSOR, c)?;
        }
        Ok(chosen)
    }

    /// Checks one pack's header against the index and, with `read_data`, every blob in it.
    fn check_pack(
        &self,
        name: &str,
        size: u64,
        read_data: bool,
        tree_budget: &AtomicU64,
    ) -> Result<(Option<PackId>, PackOutcome)> {
        let mut out = PackOutcome::default();
        let id = name
            .rsplit('/')
            .next()
            .and_then(|h| PackId::from_hex(h).ok())
            .filter(|id| id.object_name() == name);
        let Some(id) = id else {
            out.problems.push(problem(
                ProblemKind::PackUnreadable,
                name,
                "not a pack name",
            ));
            return Ok((None, out));
        };
        // The trailer and header (each bounded by its format limit), then, with
        // `read_data`, the blobs in bounded runs: never the whole pack at once.
        let entries = match self.read_pack_entries(name, size) {
            Ok(r) => r,
            Err(e) => {
                let message = finding(e, name)?;
                out.unreadable = true;
                out.bytes_read += size.min(TRAILER_LEN as u64);
                out.problems
                    .push(problem(ProblemKind::PackUnreadable, name, message));
                return Ok((Some(id), out));
            }
        };
        let blob_area: u64 = entries.iter().map(|e| u64::from(e.length)).sum();
        out.bytes_read += size - blob_area;
        // Whether the index reads each blob from this pack (and not from another copy).
        let mut read_here = Vec::with_capacity(entries.len());
        for e in &entries {
            out.blobs += 1;
            let ix = self.index.get(&e.blob)?;
            let here = ix.is_some_and(|ix| ix.pack == id && ix.offset == e.offset);
            read_here.push(here);
            match ix {
                None => out.unindexed += 1,
                // Also stored elsewhere; the index prefers that copy.
                Some(_) if !here => {}
                Some(ix) if ix == *e => out.confirmed += 1,
                Some(_) => out.problems.push(problem(
                    ProblemKind::IndexMismatch,
                    format!("{name}#{}", e.blob),
                    "the index entry differs from the pack header",
                )),
            }
        }
        if read_data {
            let blobs = Blobs {
                entries: &entries,
                read_here: &read_here,
                tree_budget,
            };
            self.verify_blobs(id, name, &blobs, &mut out)?;
        }
        Ok((Some(id), out))
    }

    /// Authenticates every blob of a pack, streamed in runs of consecutive blobs of at
    /// most [`READ_RUN`] bytes (one blob when it is longer), each run read into one
    /// reused buffer and its blobs opened in parallel, in place.
    ///
    /// No hash of the whole pack is computed: the blobs' seals, the sealed header (whose
    /// entries tile the blob area exactly, and whose associated data carries the
    /// trailer's version and generation) and the trailer's key wrap cover every byte of
    /// the pack but the magic, so when they all check out the pack is byte for byte what
    /// its writer stored, and so matches its name (FORMAT.md, section 7.6). A pack that
    /// fails has a `BlobCorrupt` problem already; `scrub` compares names with contents
    /// without a key. A run that cannot be read makes the pack unreadable; the runs
    /// after it are not read.
    fn verify_blobs(
        &self,
        id: PackId,
        name: &str,
        blobs_of: &Blobs<'_>,
        out: &mut PackOutcome,
    ) -> Result<()> {
        let key = self.pack_key(&id)?;
        let mut buf = Vec::new();
        let mut first = 0;
        while first < blobs_of.entries.len() {
            // The entries tile the blob area from offset 0 in order (checked when the
            // header opened), so a run is one contiguous range.
            let start = u64::from(blobs_of.entries[first].offset);
            let mut end = first;
            let mut run_len = 0u64;
            while let Some(e) = blobs_of.entries.get(end) {
                if end > first && run_len + u64::from(e.length) > READ_RUN {
                    break;
                }
                run_len += u64::from(e.length);
                end += 1;
            }
            // At most READ_RUN, or one blob of at most MAX_SEALED_LEN.
            buf.resize(run_len as usize, 0);
            if let Err(e) = self.backend.get_range_into(name, start, &mut buf) {
                let message = finding(e, name)?;
                out.unreadable = true;
                out.problems
                    .push(problem(ProblemKind::PackUnreadable, name, message));
                return Ok(());
            }
            out.bytes_read += run_len;
            self.verify_run(&key, name, blobs_of, first..end, &mut buf, out)?;
            first = end;
        }
        Ok(())
    }

    /// Authenticates the blobs `range` of a pack, whose sealed bytes are `bytes`, in
    /// parallel, in place.
    fn verify_run(
        &self,
        key: &PackKey,
        name: &str,
        blobs_of: &Blobs<'_>,
        range: std::ops::Range<usize>,
        bytes: &mut [u8],
        out: &mut PackOutcome,
    ) -> Result<()> {
        let entries = &blobs_of.entries[range.clone()];
        let read_here = &blobs_of.read_here[range];
        let mut rest = bytes;
        let mut blobs = Vec::with_capacity(entries.len());
        for (e, &here) in entries.iter().zip(read_here) {
            let (sealed, tail) = std::mem::take(&mut rest).split_at_mut(e.length as usize);
            rest = tail;
            blobs.push((e, here, sealed));
        }
        let found: Vec<Verified> = blobs
            .into_par_iter()
            .map(|(e, here, sealed)| {
                let meta = e.blob_meta();
                let object = format!("{name}#{}", e.blob);
                // Keep a tree the walk will read (the copy the index names), if the
                // budget allows.
                let keep = here
                    && e.blob_type == BlobType::Tree
                    && blobs_of
                        .tree_budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                            left.checked_sub(u64::from(e.raw_len))
                        })
                        .is_ok();
                let res = blob::verify_in_place(
                    key,
                    &self.secrets.id_key,
                    &self.config.repo_id,
                    &meta,
                    sealed,
                    name,
                    keep,
                );
                match res {
                    Ok(plain) => Ok(Verified::Sound(plain.map(|p| (e.blob, p)))),
                    Err(err) => {
                        let message = finding(err, &object)?;
                        Ok(Verified::Corrupt(
                            e.blob,
                            here,
                            problem(ProblemKind::BlobCorrupt, object, message),
                        ))
                    }
                }
            })
            .collect::<Result<_>>()?;
        out.blobs_read += entries.len() as u64;
        for v in found {
            match v {
                Verified::Sound(tree) => out.trees.extend(tree),
                Verified::Corrupt(blob, here, p) => {
                    // A damaged spare copy is reported, but does not taint the trees
                    // naming the blob: their reads go to the copy the index names.
                    if here {
                        out.bad_blobs.push((blob, out.problems.len()));
                    }
                    out.problems.push(p);
                }
            }
        }
        Ok(())
    }

    /// Loads every snapshot and walks the trees it reaches.
    fn check_snapshots(&self, run: &mut Run, report: &mut CheckReport) -> Result<()> {
        let mut ids = self.snapshot_ids()?;
        ids.sort();
        for id in ids {
            report.snapshots += 1;
            let snap = match self.load_snapshot(id) {
                Ok(s) => s,
                Err(e) => {
                    let object = id.object_name();
                    let message = finding(e, &object)?;
                    run.push(CheckProblem {
                        snapshots: vec![id],
                        ..problem(ProblemKind::SnapshotUnreadable, object, message)
                    });
                    continue;
                }
            };
            for p in self.walk_tree(snap.record.root, 0, run, report)? {
                let affected = &mut run.problems[p].snapshots;
                if !affected.contains(&id) {
                    affected.push(id);
                }
            }
        }
        Ok(())
    }

    /// Walks a tree once; returns the problems at or below it (indices into the run's).
    fn walk_tree(
        &self,
        id: BlobId,
        depth: usize,
        run: &mut Run,
        report: &mut CheckReport,
    ) -> Result<Vec<usize>> {
        if run.clean_trees.contains(&id) {
            return Ok(Vec::new());
        }
        if let Some(p) = run.tainted_trees.get(&id) {
            return Ok(p.clone());
        }
        let mut found = Vec::new();
        if let Some(p) = self.blob_problem(id, BlobType::Tree, run)? {
            found.push(p);
        } else if depth >= MAX_TREE_DEPTH {
            found.push(run.push(problem(
                ProblemKind::TreeUnreadable,
                format!("tree {id}"),
                format!("nested deeper than {MAX_TREE_DEPTH} trees"),
            )));
        } else {
            report.trees += 1;
            let tree = match run.tree_cache.remove(&id) {
                Some(plain) => Tree::decode(&plain, &format!("tree {id}")),
                None => self.read_tree(id),
            };
            match tree {
                Err(e) => {
                    let object = format!("tree {id}");
                    let message = finding(e, &object)?;
                    found.push(run.push(problem(ProblemKind::TreeUnreadable, object, message)));
                }
                Ok(tree) => {
                    for r in tree.data_refs() {
                        found.extend(self.blob_problem(r.id, BlobType::Data, run)?);
                    }
                    for sub in tree.subtrees() {
                        found.extend(self.walk_tree(sub, depth + 1, run, report)?);
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            run.clean_trees.insert(id);
        } else {
            run.tainted_trees.insert(id, found.clone());
        }
        Ok(found)
    }

    /// The problem with a referenced blob, if any: not indexed, of the wrong type, in a
    /// missing or unreadable pack with no other copy in a sound one, or found corrupt by
    /// the data pass. Each is reported once.
    fn blob_problem(&self, id: BlobId, expected: BlobType, run: &mut Run) -> Result<Option<usize>> {
        if let Some(&p) = run.bad_blobs.get(&id) {
            return Ok(Some(p));
        }
        let new = match self.index.get(&id)? {
            None => problem(
                ProblemKind::BlobMissing,
                format!("blob {id}"),
                "referenced but not in the index",
            ),
            Some(e) if e.blob_type != expected => problem(
                ProblemKind::IndexMismatch,
                format!("{}#{id}", e.pack.object_name()),
                format!(
                    "referenced as a {expected:?} blob, the index says {:?}",
                    e.blob_type
                ),
            ),
            Some(e) if run.bad_packs.contains(&e.pack) => {
                // Another copy in a sound pack (a lost pack's blob stored again by a later
                // backup) is what readers fall back to: the snapshots naming the blob are
                // whole. The missing pack itself is still reported.
                let spare = self.index.copies(&id)?.iter().any(|c| {
                    c.entry.blob_type == expected && !run.bad_packs.contains(&c.entry.pack)
                });
                if spare {
                    return Ok(None);
                }
                problem(
                    ProblemKind::BlobInBadPack,
                    format!("{}#{id}", e.pack.object_name()),
                    "stored in a pack that is missing or unreadable",
                )
            }
            Some(_) => return Ok(None),
        };
        let p = run.push(new);
        run.bad_blobs.insert(id, p);
        Ok(Some(p))
    }
}

/// Hashes every content-addressed object (packs, index segments, snapshots) and compares
/// the hash with its name (docs/FORMAT.md, section 2). Needs no key: it checks storage, not
/// meaning. Each object is streamed in ranged reads; objects are hashed in parallel.
pub fn scrub(backend: &dyn Backend) -> Result<ScrubReport> {
    let start = Instant::now();
    match backend.stat(super::CONFIG) {
        Err(e) if e.is_not_found() => {
            return Err(Error::RepositoryMissing {
                location: backend.location(),
            });
        }
        r => r.map(|_| ())?,
    }
    let mut objects = Vec::new();
    for prefix in ["data/", "index/", "snapshots/", "holds/"] {
        objects.extend(backend.list(prefix)?);
    }
    let results: Vec<(u64, Option<CheckProblem>)> = objects
        .par_iter()
        .map(|o| scrub_object(backend, &o.name, o.size))
        .collect::<Result<_>>()?;
    let mut report = ScrubReport::default();
    for (bytes, p) in results {
        report.objects += 1;
        report.bytes_read += bytes;
        report.problems.extend(p);
    }
    report.duration = start.elapsed();
    Ok(report)
}

fn scrub_object(
    backend: &dyn Backend,
    name: &str,
    size: u64,
) -> Result<(u64, Option<CheckProblem>)> {
    let Some(claimed) = crate::id::claimed_hash(name) else {
        return Ok((
            0,
            Some(problem(
                ProblemKind::ContentMismatch,
                name,
                "name is not a content hash",
            )),
        ));
    };
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0;
    // One buffer per object, reused for every range: no fresh pages to fault in per read.
    let mut buf = vec![0u8; SCRUB_CHUNK.min(size) as usize];
    while offset < size {
        let len = SCRUB_CHUNK.min(size - offset) as usize;
        match backend.get_range_into(name, offset, &mut buf[..len]) {
            Ok(()) => hasher.update(&buf[..len]),
            Err(e) => {
                let message = finding(e, name)?;
                return Ok((
                    offset,
                    Some(problem(ProblemKind::ContentMismatch, name, message)),
                ));
            }
        };
        offset += len as u64;
    }
    let p = (*hasher.finalize().as_bytes() != claimed).then(|| {
        problem(
            ProblemKind::ContentMismatch,
            name,
            "content does not match its name",
        )
    });
    Ok((size, p))
}

#[cfg(test)]
mod subset_tests {
    use super::*;
    use crate::backend::ObjectInfo;

    fn packs(n: usize) -> Vec<ObjectInfo> {
        let mut v: Vec<ObjectInfo> = (0..n)
            .map(|i| {
                let id = PackId::of_bytes(&i.to_le_bytes());
                ObjectInfo {
                    name: id.object_name(),
                    size: 100,
                }
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    #[test]
    fn subsets_parse() {
        assert_eq!(
            "2/5".parse::<DataSubset>().unwrap(),
            DataSubset::Part { n: 2, m: 5 }
        );
        assert_eq!(
            "10%".parse::<DataSubset>().unwrap(),
            DataSubset::Percent(10.0)
        );
        assert_eq!(
            "5G".parse::<DataSubset>().unwrap(),
            DataSubset::Bytes(5 << 30)
        );
        assert_eq!(
            "1000".parse::<DataSubset>().unwrap(),
            DataSubset::Bytes(1000)
        );
        for bad in ["0/5", "6/5", "1/0", "0%", "101%", "x", "", "0", "5X", "-1"] {
            assert!(bad.parse::<DataSubset>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parts_cover_every_pack_exactly_once() {
        let p = packs(200);
        let mut seen = vec![0; p.len()];
        for n in 1..=7 {
            let (chosen, cursor) = select_subset(&p, DataSubset::Part { n, m: 7 }, None);
            assert!(cursor.is_none());
            for (s, c) in seen.iter_mut().zip(chosen) {
                *s += usize::from(c);
            }
        }
        assert!(seen.iter().all(|s| *s == 1));
    }

    #[test]
    fn budgeted_runs_continue_and_wrap_so_successive_runs_read_everything() {
        let p = packs(10);
        let mut cursor: Option<String> = None;
        let mut times_read = vec![0; p.len()];
        // 25 % of 1000 bytes is 250: three packs of 100 a run.
        for _ in 0..4 {
            let (chosen, next) = select_subset(&p, DataSubset::Percent(25.0), cursor.as_deref());
            assert_eq!(chosen.iter().filter(|c| **c).count(), 3);
            for (t, c) in times_read.iter_mut().zip(chosen) {
                *t += usize::from(c);
            }
            cursor = next;
        }
        // 4 runs × 3 packs = 12 reads over 10 packs: all read, two of them twice.
        assert!(times_read.iter().all(|t| *t >= 1));
        assert_eq!(times_read.iter().sum::<usize>(), 12);
        let (all, _) = select_subset(&p, DataSubset::Bytes(1 << 40), None);
        assert!(all.iter().all(|c| *c));
    }
}
