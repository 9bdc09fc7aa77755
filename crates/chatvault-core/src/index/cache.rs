//! The local index cache: a RocksDB database mapping blob ids to [`IndexEntry`]s, plus the
//! set of index segments already applied and a few small metadata values; and copies of
//! the sealed tree blobs and pack trailers remote reads must not repeat (`cache/sealed.rs`),
//! and the writer's uploads that no segment names yet (`cache/uploaded.rs`).
//!
//! Invariants:
//! - The repository's `index/` segments are the truth; this database is a cache that can
//!   be cleared and rebuilt from them at any time. Everything it returns is decoded and
//!   range-checked; an undecodable value is `Corrupt` (the cure is [`IndexCache::clear`]
//!   and a rebuild), never a panic or a wrong answer.
//! - A segment's entries and its "applied" marker are written in one atomic `WriteBatch`:
//!   after a crash either both are there or neither, so "applied" always implies "present".
//!   (Writes are not fsynced: a crash may lose the last batches, markers included, and
//!   those segments are simply applied again.)
//! - Every copy is kept: a blob listed at several locations (two writers stored it, a
//!   repack copied it, or a writer announced a location that is not genuine) keeps every
//!   location, each with the [`Voucher`] of the writer whose segment lists it. One of them
//!   is the *preferred* copy that lookups answer: the least by (voucher, pack id, offset),
//!   a function of the set of copies alone, so the answer does not depend on the order in
//!   which segments were applied (an incrementally synced cache and a rebuilt one agree).
//!   The others are *surplus* copies, which readers fall back on when the preferred copy
//!   fails verification and which prune must not delete unless a verified copy remains.
//! - The cache records the trust epoch (`ensure_trust_epoch`) it was built under: vouchers
//!   depend on which writers the config trusts, so a cache built under other revocations
//!   is cleared and rebuilt.
//! - Memory is bounded whatever the repository size: one shared block cache holds data,
//!   index and filter blocks; iteration streams; nothing loads every entry.
//! - RocksDB's `LOCK` file allows one process at a time per cache directory: a second
//!   [`IndexCache::open`] of the same directory (in this or another process) fails with
//!   `Error::Cache` while the first is open. Callers that run several processes give each
//!   its own directory or serialise them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB,
    DBCompressionType, DataBlockIndexType, Options, ReadOptions, SliceTransform, WriteBatch,
    WriteOptions,
};

mod sealed;
mod uploaded;

use self::sealed::{CF_PACK_TRAILERS, CF_SEALED_TREES};
use self::uploaded::CF_UPLOADED;
use super::entry::VALUE_LEN;
use super::{IndexEntry, MAX_ENTRIES_PER_SEGMENT};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, SegmentId, SnapshotId};

/// Column family: blob id (32 bytes) → [`IndexEntry::encode_value`].
const CF_BLOBS: &str = "blobs";
/// Column family: blob id ‖ pack id ‖ offset (u32 big-endian) → [`IndexEntry::encode_value`]
/// ‖ voucher: every copy of a blob other than its preferred one.
const CF_COPIES: &str = "copies";
/// Column family: segment id (32 bytes) → empty; the segments already applied.
const CF_SEGMENTS: &str = "segments";
/// Column family: small key/value metadata (the cache's layout version). The rollback pins
/// are not here: they live in the `pins` file beside the cache (`repo/pins.rs`).
const CF_META: &str = "meta";

/// Column family: blob id → plaintext of a tree this writer wrote (the writer journal,
/// `repo/journal.rs`). Not a cache of the repository: a key that cannot read the
/// repository cannot rebuild it, so [`IndexCache::clear`] leaves it alone.
const CF_OWN_TREES: &str = "own_trees";
/// Column family: snapshot id → record (CBOR) of this writer's latest snapshots.
const CF_OWN_SNAPSHOTS: &str = "own_snapshots";

/// Meta key holding the layout of this cache's values, as a u32 LE. A cache written with
/// another layout is cleared on open (it is only a cache), never misread.
const LAYOUT_KEY: &[u8] = b"index_cache_layout";
/// The value layout this build writes: [`IndexEntry::encode_value`] ‖ voucher (u32 LE), and
/// the surplus copies in their own family. Layout 1 kept one copy per blob, first writer
/// wins.
const LAYOUT: u32 = 2;
/// Meta key holding the trust epoch the entries were vouched under.
const TRUST_EPOCH_KEY: &[u8] = b"trust_epoch";
/// Length of a cache value: the entry's value encoding and the voucher.
const CACHED_LEN: usize = VALUE_LEN + 4;
/// Length of a surplus copy's key: blob id, pack id, offset.
const COPY_KEY_LEN: usize = 32 + 32 + 4;

/// One LRU block cache shared by every column family: data, index and filter blocks all
/// count against it, so it is the cap on read memory. 32 MiB holds the filters of about
/// 25 million entries at 10 bits per key, which covers large repositories.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Memtable size for the blob column family: large enough that rebuilding a big index
/// does not produce a flood of tiny L0 files.
const BLOBS_WRITE_BUFFER: usize = 16 << 20;
/// Memtable size for the small column families.
const SMALL_WRITE_BUFFER: usize = 2 << 20;
/// Cap on all memtables together.
const TOTAL_WRITE_BUFFER: usize = 48 << 20;
/// Cap on the write-ahead log: the rarely written small column families would otherwise
/// keep old log files alive.
const MAX_WAL_BYTES: u64 = 64 << 20;

/// Who vouches for a copy of a blob: the trust tier and config position of the writer whose
/// index segment lists it. Lower is preferred: admin keys before full keys before backup
/// keys before revoked (endorsed) writers, and among equals the writer the config added
/// first (the oldest trusted writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Voucher(u32);

impl Voucher {
    /// Writers beyond this position share the last rank (no repository has that many).
    const MAX_WRITER: u32 = 0x00ff_ffff;
    /// Tiers, most trusted first.
    pub(crate) const ADMIN: u8 = 0;
    pub(crate) const FULL: u8 = 1;
    pub(crate) const BACKUP: u8 = 2;
    /// A revoked writer whose segments the admin endorsed.
    pub(crate) const REVOKED: u8 = 3;
    /// Entries read from pack headers by an index rebuild.
    pub(crate) const UNVERIFIED: u8 = 4;
    /// A writer the config does not list.
    pub(crate) const UNKNOWN: u8 = 5;

    /// The voucher of the writer at `position` in the config's writer list, in `tier`
    /// (0 = most trusted).
    pub(crate) fn new(tier: u8, position: usize) -> Self {
        let pos = u32::try_from(position)
            .unwrap_or(Self::MAX_WRITER)
            .min(Self::MAX_WRITER);
        Self((u32::from(tier) << 24) | pos)
    }

    /// The position of the vouching writer in the config's writer list.
    pub(crate) fn writer(self) -> usize {
        (self.0 & Self::MAX_WRITER) as usize
    }

    /// The trust tier.
    pub(crate) fn tier(self) -> u8 {
        (self.0 >> 24) as u8
    }

    fn to_le_bytes(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }
}

/// One stored copy of a blob and who vouches for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobCopy {
    /// Where the copy is and how to open it.
    pub entry: IndexEntry,
    /// The writer whose segment lists it.
    pub voucher: Voucher,
}

impl BlobCopy {
    /// The preference order among copies of one blob: least first.
    fn rank(&self) -> (Voucher, PackId, u32) {
        (self.voucher, self.entry.pack, self.entry.offset)
    }

    /// Whether both name the same bytes (pack and offset).
    pub(crate) fn same_location(&self, other: &BlobCopy) -> bool {
        self.entry.pack == other.entry.pack && self.entry.offset == other.entry.offset
    }

    fn encode_value(&self) -> [u8; CACHED_LEN] {
        let mut v = [0u8; CACHED_LEN];
        v[..VALUE_LEN].copy_from_slice(&self.entry.encode_value());
        v[VALUE_LEN..].copy_from_slice(&self.voucher.to_le_bytes());
        v
    }

    fn decode_value(blob: BlobId, v: &[u8], object: &str) -> Result<Self> {
        if v.len() != CACHED_LEN {
            return Err(Error::corrupt(
                object,
                "index cache value has the wrong length",
            ));
        }
        let (entry, voucher) = v.split_at(VALUE_LEN);
        Ok(Self {
            entry: IndexEntry::decode_value(blob, entry, object)?,
            voucher: Voucher(u32::from_le_bytes([
                voucher[0], voucher[1], voucher[2], voucher[3],
            ])),
        })
    }

    fn copy_key(&self) -> [u8; COPY_KEY_LEN] {
        let mut k = [0u8; COPY_KEY_LEN];
        k[..32].copy_from_slice(self.entry.blob.as_bytes());
        k[32..64].copy_from_slice(self.entry.pack.as_bytes());
        k[64..].copy_from_slice(&self.entry.offset.to_be_bytes());
        k
    }
}

/// The local RocksDB index cache. See the module documentation for its guarantees.
pub(crate) struct IndexCache {
    db: DB,
    path: PathBuf,
    /// Serialises [`apply_segment`](Self::apply_segment) and [`clear`](Self::clear): the
    /// preferred-copy decision reads before it writes, which is only sound if no other
    /// writer of this handle runs in between. (Other processes are kept out by `LOCK`.)
    write_lock: Mutex<()>,
    /// The caller's lock on the cache directory, held as long as the database is open
    /// (`repo/index_sync.rs`, `open_cache`).
    dir_lock: Option<std::fs::File>,
}

impl fmt::Debug for IndexCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn cache_err(what: &'static str) -> impl FnOnce(rocksdb::Error) -> Error {
    move |e| Error::Cache(format!("{what}: {e}"))
}

/// Options shared by every column family.
pub(super) fn cf_options(block_cache: &Cache, write_buffer: usize, bloom: bool) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(block_cache);
    // Index and filter blocks go into the block cache rather than being held by every open
    // table outside it, so their memory is bounded by the cache instead of growing with the
    // database; L0's are pinned because every lookup touches them.
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    if bloom {
        // Most lookups during a backup are for new chunks, i.e. absent ids: a bloom filter
        // answers those with one probe per table, ~1% false positives.
        table.set_bloom_filter(10.0, false);
        // Partitioned: a table's filter and index are split into 4 KiB blocks behind a
        // small pinned top level, so a lookup loads one partition, not the whole filter of
        // a 64 MiB table (about 1 MB). With whole filters competing with data blocks for
        // the bounded block cache, random lookups re-read a filter each time (measured:
        // 138 µs per lookup at 1M entries, against ~µs with partitions).
        table.set_partition_filters(true);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_pin_top_level_index_and_filter(true);
        table.set_metadata_block_size(4096);
        // A hash index inside each data block: a point lookup finds its key without a
        // binary search over the block's restart points.
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    }
    let mut opts = Options::default();
    opts.set_block_based_table_factory(&table);
    // Keys are random ids and values mostly ids too: compression would cost CPU and save
    // nothing, and the build carries no compression libraries anyway.
    opts.set_compression_type(DBCompressionType::None);
    opts.set_bottommost_compression_type(DBCompressionType::None);
    opts.set_write_buffer_size(write_buffer);
    if bloom {
        // Most lookups are for absent ids (every new chunk, and the first-writer check
        // before each insert); without a memtable filter each walks a skip list of up to
        // a few hundred thousand entries (14 % of a backup of 400k small files).
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
    }
    opts
}

impl IndexCache {
    /// Opens the cache in directory `path`, creating it (and any missing column family) if
    /// needed. Fails with `Error::Cache` if RocksDB cannot open it, notably when another
    /// handle already holds the directory's `LOCK`. A cache written with another value
    /// layout is cleared (entries and segment markers; meta values are kept).
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut db_opts = cf_options(&block_cache, SMALL_WRITE_BUFFER, false);
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        // Bounds file descriptors (and the table readers they carry) on servers that run
        // the cache beside a chat server with its own descriptor needs.
        db_opts.set_max_open_files(256);
        // Table files are read through mmap: a lookup that hits the page cache costs a
        // memory access instead of a pread syscall and a copy (the dominant cost of a
        // lookup otherwise). The mapping is file-backed, so the kernel reclaims it under
        // pressure; it does not count against the bounded block cache.
        db_opts.set_allow_mmap_reads(true);
        db_opts.set_db_write_buffer_size(TOTAL_WRITE_BUFFER);
        db_opts.set_max_total_wal_size(MAX_WAL_BYTES);
        // RocksDB's informational LOG files would otherwise accumulate in the directory.
        db_opts.set_keep_log_file_num(2);
        db_opts.set_max_log_file_size(1 << 20);

        let mut copies = cf_options(&block_cache, SMALL_WRITE_BUFFER, true);
        // Surplus copies are found by blob id: a prefix bloom answers "no other copy" (the
        // common case) without reading a data block.
        copies.set_prefix_extractor(SliceTransform::create_fixed_prefix(32));
        let mut cfs: Vec<ColumnFamilyDescriptor> = [
            (CF_BLOBS, BLOBS_WRITE_BUFFER, true),
            (CF_SEGMENTS, SMALL_WRITE_BUFFER, false),
            (CF_META, SMALL_WRITE_BUFFER, false),
            (CF_OWN_TREES, SMALL_WRITE_BUFFER, true),
            (CF_OWN_SNAPSHOTS, SMALL_WRITE_BUFFER, false),
            (CF_SEALED_TREES, SMALL_WRITE_BUFFER, true),
            (CF_PACK_TRAILERS, SMALL_WRITE_BUFFER, true),
            (CF_UPLOADED, SMALL_WRITE_BUFFER, false),
        ]
        .into_iter()
        .map(|(name, wb, bloom)| {
            ColumnFamilyDescriptor::new(name, cf_options(&block_cache, wb, bloom))
        })
        .collect();
        cfs.push(ColumnFamilyDescriptor::new(CF_COPIES, copies));
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(cache_err("cannot open the index cache"))?;
        let cache = IndexCache {
            db,
            path: path.to_owned(),
            write_lock: Mutex::new(()),
            dir_lock: None,
        };
        cache.check_layout()?;
        Ok(cache)
    }

    /// Keeps `lock` (an exclusive file lock the caller took before opening) until the
    /// cache is closed.
    pub(crate) fn hold(&mut self, lock: std::fs::File) {
        self.dir_lock = Some(lock);
    }

    fn check_layout(&self) -> Result<()> {
        let want = LAYOUT.to_le_bytes();
        match self.get_meta(LAYOUT_KEY)? {
            Some(found) if found == want => Ok(()),
            Some(_) => {
                self.clear()?;
                self.put_meta(LAYOUT_KEY, &want)
            }
            None => self.put_meta(LAYOUT_KEY, &want),
        }
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        // Always present: `open` creates every family. An error, not a panic, regardless.
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::Cache(format!("column family {name} is missing")))
    }

    fn entry_object(id: &BlobId) -> String {
        format!("index-cache/{CF_BLOBS}/{id}")
    }

    /// The preferred copy's entry for `id`, or `None` if no applied segment lists it.
    pub(crate) fn get(&self, id: &BlobId) -> Result<Option<IndexEntry>> {
        Ok(self.preferred(id)?.map(|c| c.entry))
    }

    /// The preferred copy of `id` with its voucher.
    pub(crate) fn preferred(&self, id: &BlobId) -> Result<Option<BlobCopy>> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.as_bytes())
            .map_err(cache_err("index cache lookup failed"))?;
        value
            .map(|v| BlobCopy::decode_value(*id, &v, &Self::entry_object(id)))
            .transpose()
    }

    /// Every copy of `id`, the preferred one first, the others in preference order.
    pub(crate) fn copies(&self, id: &BlobId) -> Result<Vec<BlobCopy>> {
        let Some(first) = self.preferred(id)? else {
            return Ok(Vec::new());
        };
        let mut out = vec![first];
        self.for_each_surplus_of(id, |c| {
            out.push(c);
            Ok(true)
        })?;
        out[1..].sort_by_key(BlobCopy::rank);
        Ok(out)
    }

    /// Whether some copy of `id` satisfies `accept`, asked of `first` (the preferred copy,
    /// when the caller already looked it up) and then of each surplus copy until one does:
    /// the presence check of a writer that trusts only some writers' announcements and
    /// only packs still stored (repo/presence.rs).
    pub(crate) fn any_copy(
        &self,
        id: &BlobId,
        first: Option<BlobCopy>,
        mut accept: impl FnMut(&BlobCopy) -> Result<bool>,
    ) -> Result<bool> {
        let Some(first) = first else {
            return Ok(false);
        };
        if accept(&first)? {
            return Ok(true);
        }
        let mut found = false;
        self.for_each_surplus_of(id, |c| {
            found = accept(&c)?;
            Ok(!found)
        })?;
        Ok(found)
    }

    /// Calls `f` with each surplus copy of `id` (in key order) while it returns `true`.
    fn for_each_surplus_of(
        &self,
        id: &BlobId,
        mut f: impl FnMut(BlobCopy) -> Result<bool>,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.set_prefix_same_as_start(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_COPIES)?, ro);
        it.seek(id.as_bytes());
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if !key.starts_with(id.as_bytes()) {
                break;
            }
            if !f(BlobCopy::decode_value(*id, value, &Self::entry_object(id))?)? {
                return Ok(());
            }
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot iterate the index cache"))
    }

    /// Calls `f` with every surplus copy in the cache, in blob-id order, streaming.
    pub(crate) fn for_each_surplus(&self, mut f: impl FnMut(BlobCopy) -> Result<()>) -> Result<()> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        ro.set_total_order_seek(true);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_COPIES)?, ro);
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let id = (key.len() == COPY_KEY_LEN)
                .then(|| BlobId::from_slice(&key[..32]))
                .flatten()
                .ok_or_else(|| {
                    Error::corrupt(format!("index-cache/{CF_COPIES}"), "key is not a copy key")
                })?;
            f(BlobCopy::decode_value(id, value, &Self::entry_object(&id))?)?;
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot iterate the index cache"))
    }

    /// The preferred copies of `ids`, which must be sorted, in one batched lookup
    /// (RocksDB's `MultiGet`): `None` where absent. For checking many ids at once (blob
    /// presence).
    pub(crate) fn preferred_sorted(&self, ids: &[BlobId]) -> Result<Vec<Option<BlobCopy>>> {
        debug_assert!(ids.windows(2).all(|w| w[0] <= w[1]));
        let cf = self.cf(CF_BLOBS)?;
        self.db
            .batched_multi_get_cf(cf, ids.iter().map(|id| id.as_bytes()), true)
            .into_iter()
            .zip(ids)
            .map(|(v, id)| {
                let v = v.map_err(cache_err("index cache lookup failed"))?;
                v.map(|v| BlobCopy::decode_value(*id, &v, &Self::entry_object(id)))
                    .transpose()
            })
            .collect()
    }

    /// Whether `id` has an entry. For an absent id this is usually one bloom-filter probe
    /// per table, without reading data blocks.
    pub(crate) fn contains(&self, id: &BlobId) -> Result<bool> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.as_bytes())
            .map_err(cache_err("index cache lookup failed"))?;
        Ok(value.is_some())
    }

    /// Records the entries of segment `seg`, vouched for by `voucher`, and marks it applied,
    /// atomically.
    ///
    /// Every location is kept. A copy at a location the cache already has keeps the better
    /// of the two vouchers; a new location becomes the preferred copy if it ranks before
    /// the current one (which becomes surplus), and surplus otherwise. Applying a segment
    /// already marked is a no-op, so this is idempotent, and the result does not depend on
    /// the order segments are applied in. Refuses (`InvalidArgument`) more than
    /// [`MAX_ENTRIES_PER_SEGMENT`] entries, which bounds the batch's memory, and entries
    /// that fail [`IndexEntry::check`], which could not be read back.
    pub(crate) fn apply_segment(
        &self,
        seg: &SegmentId,
        entries: &[IndexEntry],
        voucher: Voucher,
    ) -> Result<()> {
        if entries.len() > MAX_ENTRIES_PER_SEGMENT {
            return Err(Error::invalid(
                "index segment",
                format!(
                    "{} entries, at most {MAX_ENTRIES_PER_SEGMENT}",
                    entries.len()
                ),
            ));
        }
        if let Some((e, reason)) = entries.iter().find_map(|e| e.check().err().map(|r| (e, r))) {
            return Err(Error::invalid(
                "index entry",
                format!("{}: {reason}", e.blob),
            ));
        }
        // The guarded value is `()`, so a panic elsewhere cannot have left it inconsistent.
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_applied(seg)? {
            return Ok(());
        }
        let (blobs, copies) = (self.cf(CF_BLOBS)?, self.cf(CF_COPIES)?);
        let mut batch = WriteBatch::default();
        // Preferred copies decided in this batch (the database does not see the batch).
        let mut preferred: HashMap<BlobId, BlobCopy> = HashMap::new();
        for e in entries {
            let new = BlobCopy { entry: *e, voucher };
            let current = match preferred.get(&e.blob) {
                Some(c) => Some(*c),
                None => self.preferred(&e.blob)?,
            };
            match current {
                None => {
                    preferred.insert(e.blob, new);
                }
                Some(cur) if cur.same_location(&new) => {
                    if new.rank() < cur.rank() {
                        preferred.insert(e.blob, new);
                    }
                }
                Some(cur) if new.rank() < cur.rank() => {
                    batch.put_cf(copies, cur.copy_key(), cur.encode_value());
                    batch.delete_cf(copies, new.copy_key());
                    preferred.insert(e.blob, new);
                }
                Some(_) => {
                    let key = new.copy_key();
                    let kept = self
                        .db
                        .get_pinned_cf(copies, key)
                        .map_err(cache_err("index cache lookup failed"))?
                        .map(|v| BlobCopy::decode_value(e.blob, &v, &Self::entry_object(&e.blob)))
                        .transpose()?;
                    if kept.is_none_or(|k| new.rank() < k.rank()) {
                        batch.put_cf(copies, key, new.encode_value());
                    }
                }
            }
        }
        for (blob, c) in &preferred {
            batch.put_cf(blobs, blob.as_bytes(), c.encode_value());
        }
        batch.put_cf(self.cf(CF_SEGMENTS)?, seg.as_bytes(), b"");
        self.db
            .write(batch)
            .map_err(cache_err("cannot write to the index cache"))
    }

    /// Clears the cache if it was built under another trust epoch (a digest of what decides
    /// which writers' segments are applied and how their copies rank), then records
    /// `epoch`. Returns whether it cleared.
    pub(crate) fn ensure_trust_epoch(&self, epoch: &[u8; 32]) -> Result<bool> {
        if self.get_meta(TRUST_EPOCH_KEY)?.as_deref() == Some(&epoch[..]) {
            return Ok(false);
        }
        let had_entries = !self.applied_segments()?.is_empty();
        if had_entries {
            self.clear()?;
        }
        self.put_meta(TRUST_EPOCH_KEY, epoch)?;
        Ok(had_entries)
    }

    /// Whether segment `seg` has been applied.
    pub(crate) fn is_applied(&self, seg: &SegmentId) -> Result<bool> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_SEGMENTS)?, seg.as_bytes())
            .map_err(cache_err("index cache lookup failed"))?;
        Ok(value.is_some())
    }

    /// Every applied segment, in id order. One id per segment object in the repository,
    /// so this is small next to the entries.
    pub(crate) fn applied_segments(&self) -> Result<Vec<SegmentId>> {
        let mut out = Vec::new();
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(CF_SEGMENTS)?, ReadOptions::default());
        it.seek_to_first();
        while let Some(key) = it.key() {
            let id = (key.len() == 32)
                .then(|| SegmentId::from_slice(key))
                .flatten()
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("index-cache/{CF_SEGMENTS}"),
                        "key is not a segment id",
                    )
                })?;
            out.push(id);
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot list applied segments"))?;
        Ok(out)
    }

    /// Calls `f` with every blob's preferred copy, in blob-id order, streaming from disk
    /// (nothing is collected). Stops at and returns the first error, from `f` or from decoding.
    /// Entries applied while this runs may or may not be visited.
    pub(crate) fn for_each_entry(&self, mut f: impl FnMut(IndexEntry) -> Result<()>) -> Result<()> {
        let mut ro = ReadOptions::default();
        // A full scan would otherwise evict the hot filter and index blocks lookups need.
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_BLOBS)?, ro);
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let id = (key.len() == 32)
                .then(|| BlobId::from_slice(key))
                .flatten()
                .ok_or_else(|| {
                    Error::corrupt(format!("index-cache/{CF_BLOBS}"), "key is not a blob id")
                })?;
            f(BlobCopy::decode_value(id, value, &Self::entry_object(&id))?.entry)?;
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot iterate the index cache"))
    }

    /// Compacts the entries into as few levels as RocksDB will, so lookups probe fewer
    /// tables. Worth it after a bulk load (a rebuild from segments or packs).
    pub(crate) fn compact(&self) -> Result<()> {
        self.db
            .compact_range_cf(self.cf(CF_BLOBS)?, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Drops every entry and every applied-segment marker, atomically, then compacts so
    /// the space is returned. Meta values (the layout version) are kept.
    pub(crate) fn clear(&self) -> Result<()> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut batch = WriteBatch::default();
        let families = [
            self.cf(CF_BLOBS)?,
            self.cf(CF_COPIES)?,
            self.cf(CF_SEGMENTS)?,
        ];
        for cf in families {
            if let Some(end) = self.key_after_last(cf)? {
                batch.delete_range_cf(cf, &[][..], &end[..]);
            }
        }
        self.db
            .write(batch)
            .map_err(cache_err("cannot clear the index cache"))?;
        for cf in families {
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// The smallest key greater than every key in `cf` (the last key with a zero byte
    /// appended), or `None` when `cf` is empty: an exact end for a range delete whatever
    /// the keys' lengths.
    fn key_after_last(&self, cf: &ColumnFamily) -> Result<Option<Vec<u8>>> {
        let mut it = self.db.raw_iterator_cf_opt(cf, ReadOptions::default());
        it.seek_to_last();
        let end = it.key().map(|k| {
            let mut end = k.to_vec();
            end.push(0);
            end
        });
        it.status()
            .map_err(cache_err("cannot iterate the index cache"))?;
        Ok(end)
    }

    /// A metadata value, if set.
    pub(crate) fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_META)?, key)
            .map_err(cache_err("cannot read index cache metadata"))
    }

    /// Sets a metadata value, synced to disk before returning (metadata is rare and must
    /// not be lost to a crash the way an unsynced batch may be).
    pub(crate) fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_META)?, key, value, &wo)
            .map_err(cache_err("cannot write index cache metadata"))
    }
}

/// The writer journal's storage (see `repo/journal.rs` for what it is for).
impl IndexCache {
    /// Records a tree this writer wrote (not synced: a crash loses at worst the journal of
    /// the run that did not finish).
    pub(crate) fn put_own_tree(&self, id: &BlobId, plaintext: &[u8]) -> Result<()> {
        self.db
            .put_cf(self.cf(CF_OWN_TREES)?, id.as_bytes(), plaintext)
            .map_err(cache_err("cannot write the writer journal"))
    }

    /// A tree this writer wrote, if the journal still has it.
    pub(crate) fn own_tree(&self, id: &BlobId) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_OWN_TREES)?, id.as_bytes())
            .map_err(cache_err("cannot read the writer journal"))
    }

    /// Deletes every journaled tree not in `keep`; returns how many went.
    pub(crate) fn retain_own_trees(&self, keep: &HashSet<BlobId>) -> Result<u64> {
        let cf = self.cf(CF_OWN_TREES)?;
        let mut batch = WriteBatch::default();
        let mut dropped = 0;
        let mut it = self.db.raw_iterator_cf_opt(cf, ReadOptions::default());
        it.seek_to_first();
        while let Some(key) = it.key() {
            let id = BlobId::from_slice(key);
            if id.is_none_or(|id| !keep.contains(&id)) {
                batch.delete_cf(cf, key);
                dropped += 1;
            }
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot iterate the writer journal"))?;
        self.db
            .write(batch)
            .map_err(cache_err("cannot write the writer journal"))?;
        Ok(dropped)
    }

    /// Records one of this writer's snapshots (synced: it is what the next run builds on).
    pub(crate) fn put_own_snapshot(&self, id: &SnapshotId, record: &[u8]) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_OWN_SNAPSHOTS)?, id.as_bytes(), record, &wo)
            .map_err(cache_err("cannot write the writer journal"))
    }

    /// One of this writer's snapshots' record, if the journal has it.
    pub(crate) fn own_snapshot(&self, id: &SnapshotId) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_OWN_SNAPSHOTS)?, id.as_bytes())
            .map_err(cache_err("cannot read the writer journal"))
    }

    /// Forgets one of this writer's snapshots.
    pub(crate) fn delete_own_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.db
            .delete_cf(self.cf(CF_OWN_SNAPSHOTS)?, id.as_bytes())
            .map_err(cache_err("cannot write the writer journal"))
    }

    /// Every journaled snapshot: id and record bytes.
    pub(crate) fn own_snapshots(&self) -> Result<Vec<(SnapshotId, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(CF_OWN_SNAPSHOTS)?, ReadOptions::default());
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if let Some(id) = SnapshotId::from_slice(key) {
                out.push((id, value.to_vec()));
            }
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot iterate the writer journal"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::entry::tests::sample;

    fn entry(i: u32) -> IndexEntry {
        let mut id = [0u8; 32];
        // Spread ids over the key space like real hashes would be.
        id.copy_from_slice(blake3::hash(&i.to_le_bytes()).as_bytes());
        IndexEntry {
            blob: BlobId::from_bytes(id),
            offset: i,
            // A sealed length possible for the raw length (the payload stored raw).
            length: 40 + i % 4096,
            raw_len: i % 4096,
            ..sample(1)
        }
    }

    fn v(position: usize) -> Voucher {
        Voucher::new(2, position)
    }

    fn seg(n: u8) -> SegmentId {
        SegmentId::from_bytes([n; 32])
    }

    fn open_temp() -> (tempfile::TempDir, IndexCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::open(dir.path()).unwrap();
        (dir, cache)
    }

    fn all_entries(cache: &IndexCache) -> Vec<IndexEntry> {
        let mut v = Vec::new();
        cache
            .for_each_entry(|e| {
                v.push(e);
                Ok(())
            })
            .unwrap();
        v
    }

    #[test]
    fn apply_then_look_up_present_and_absent_ids() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..10).map(entry).collect();
        cache.apply_segment(&seg(1), &entries, v(0)).unwrap();
        for e in &entries {
            assert_eq!(cache.get(&e.blob).unwrap(), Some(*e));
            assert!(cache.contains(&e.blob).unwrap());
        }
        let absent = entry(10).blob;
        assert_eq!(cache.get(&absent).unwrap(), None);
        assert!(!cache.contains(&absent).unwrap());
    }

    #[test]
    fn data_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<_> = (0..5).map(entry).collect();
        {
            let cache = IndexCache::open(dir.path()).unwrap();
            cache.apply_segment(&seg(1), &entries, v(0)).unwrap();
            cache.put_meta(b"repo_id", b"r1").unwrap();
        }
        let cache = IndexCache::open(dir.path()).unwrap();
        assert_eq!(cache.get(&entries[3].blob).unwrap(), Some(entries[3]));
        assert_eq!(cache.applied_segments().unwrap(), vec![seg(1)]);
        assert_eq!(
            cache.get_meta(b"repo_id").unwrap().as_deref(),
            Some(&b"r1"[..])
        );
        assert_eq!(all_entries(&cache).len(), 5);
    }

    #[test]
    fn applied_segments_lists_every_applied_segment_in_order() {
        let (_dir, cache) = open_temp();
        assert!(cache.applied_segments().unwrap().is_empty());
        cache.apply_segment(&seg(9), &[entry(1)], v(0)).unwrap();
        cache.apply_segment(&seg(3), &[], v(0)).unwrap();
        assert_eq!(cache.applied_segments().unwrap(), vec![seg(3), seg(9)]);
        assert!(cache.is_applied(&seg(3)).unwrap());
        assert!(cache.is_applied(&seg(9)).unwrap());
        assert!(!cache.is_applied(&seg(4)).unwrap());
    }

    #[test]
    fn clear_drops_entries_and_markers_but_keeps_meta() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..100).map(entry).collect();
        cache.apply_segment(&seg(1), &entries, v(0)).unwrap();
        cache.apply_segment(&seg(2), &[entry(200)], v(0)).unwrap();
        cache.put_meta(b"format", b"1").unwrap();
        cache.clear().unwrap();
        assert!(all_entries(&cache).is_empty());
        assert!(cache.applied_segments().unwrap().is_empty());
        assert_eq!(cache.get(&entries[0].blob).unwrap(), None);
        assert!(!cache.is_applied(&seg(1)).unwrap());
        assert_eq!(
            cache.get_meta(b"format").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        // Clearing an empty cache is fine, and the cache is usable afterwards.
        cache.clear().unwrap();
        cache.apply_segment(&seg(1), &entries[..3], v(0)).unwrap();
        assert_eq!(all_entries(&cache).len(), 3);
    }

    #[test]
    fn apply_is_idempotent() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..20).map(entry).collect();
        cache.apply_segment(&seg(1), &entries, v(0)).unwrap();
        let before = all_entries(&cache);
        cache.apply_segment(&seg(1), &entries, v(0)).unwrap();
        // Same marker, different content: still a no-op, the segment was already applied.
        let other: Vec<_> = (100..110).map(entry).collect();
        cache.apply_segment(&seg(1), &other, v(0)).unwrap();
        assert_eq!(all_entries(&cache), before);
        assert_eq!(cache.applied_segments().unwrap(), vec![seg(1)]);
    }

    /// Before: the first segment applied won, so an incrementally synced cache and one
    /// rebuilt in listing order could prefer different copies of a duplicated blob, and a
    /// prune's decisions changed between two runs over the same repository.
    #[test]
    fn the_preferred_copy_does_not_depend_on_the_order_segments_are_applied() {
        let base = entry(1);
        let at = |pack: u8, offset: u32| IndexEntry {
            pack: PackId::from_bytes([pack; 32]),
            offset,
            ..base
        };
        let segments = [
            (seg(1), vec![at(0x30, 10), entry(2)], v(3)),
            (seg(2), vec![at(0x20, 99)], v(1)),
            (seg(3), vec![at(0x10, 5), at(0x20, 99)], v(2)),
            (seg(4), vec![at(0x20, 7)], v(1)),
        ];
        let mut answers = Vec::new();
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let (_dir, cache) = open_temp();
            for i in order {
                let (s, entries, voucher) = &segments[i];
                cache.apply_segment(s, entries, *voucher).unwrap();
            }
            let copies = cache.copies(&base.blob).unwrap();
            answers.push(copies.clone());
            // Every location once; the one vouched by the lowest voucher is preferred,
            // pack then offset breaking ties.
            let locations: Vec<(u8, u32, usize)> = copies
                .iter()
                .map(|c| {
                    (
                        c.entry.pack.as_bytes()[0],
                        c.entry.offset,
                        c.voucher.writer(),
                    )
                })
                .collect();
            assert_eq!(
                locations,
                vec![(0x20, 7, 1), (0x20, 99, 1), (0x10, 5, 2), (0x30, 10, 3)]
            );
            assert_eq!(cache.get(&base.blob).unwrap(), Some(at(0x20, 7)));
            assert_eq!(cache.copies(&entry(2).blob).unwrap().len(), 1);
        }
        assert!(answers.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn copies_within_one_segment_are_all_kept_and_dedup_trust_sees_each_voucher() {
        let (_dir, cache) = open_temp();
        let a = entry(3);
        let b = IndexEntry { offset: 5, ..a };
        cache.apply_segment(&seg(3), &[a, b], v(4)).unwrap();
        assert_eq!(
            cache.get(&a.blob).unwrap(),
            Some(a),
            "offset breaks the tie"
        );
        assert_eq!(cache.copies(&a.blob).unwrap().len(), 2);
        let c = IndexEntry {
            pack: PackId::from_bytes([0xee; 32]),
            ..a
        };
        cache.apply_segment(&seg(4), &[c], v(9)).unwrap();
        let vouched_by = |id: &BlobId, w: usize| {
            let first = cache.preferred(id).unwrap();
            cache
                .any_copy(
                    id,
                    first,
                    |c| Ok(w == usize::MAX || c.voucher.writer() == w),
                )
                .unwrap()
        };
        assert!(vouched_by(&a.blob, 9));
        assert!(vouched_by(&a.blob, 4));
        assert!(!vouched_by(&a.blob, 5));
        assert!(!vouched_by(&entry(4).blob, usize::MAX));
        let mut surplus = Vec::new();
        cache
            .for_each_surplus(|c| {
                surplus.push(c);
                Ok(())
            })
            .unwrap();
        assert_eq!(surplus.len(), 2);
        assert!(
            surplus
                .iter()
                .all(|s| s.entry.blob == a.blob && s.entry != a)
        );
    }

    #[test]
    fn a_cache_built_under_another_trust_epoch_is_cleared() {
        let (_dir, cache) = open_temp();
        assert!(
            !cache.ensure_trust_epoch(&[1; 32]).unwrap(),
            "empty: nothing to clear"
        );
        cache.apply_segment(&seg(1), &[entry(1)], v(0)).unwrap();
        assert!(!cache.ensure_trust_epoch(&[1; 32]).unwrap());
        assert!(cache.contains(&entry(1).blob).unwrap());
        assert!(cache.ensure_trust_epoch(&[2; 32]).unwrap());
        assert!(!cache.contains(&entry(1).blob).unwrap());
        assert!(cache.applied_segments().unwrap().is_empty());
    }

    #[test]
    fn for_each_entry_visits_every_entry_once_in_id_order() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..500).map(entry).collect();
        for (i, chunk) in entries.chunks(120).enumerate() {
            cache.apply_segment(&seg(i as u8), chunk, v(0)).unwrap();
        }
        let seen = all_entries(&cache);
        assert_eq!(seen.len(), entries.len());
        assert!(seen.windows(2).all(|w| w[0].blob < w[1].blob));
        let mut expected = entries.clone();
        expected.sort_by_key(|e| e.blob);
        assert_eq!(seen, expected);
    }

    #[test]
    fn for_each_entry_stops_at_the_callbacks_error() {
        let (_dir, cache) = open_temp();
        cache
            .apply_segment(&seg(1), &(0..10).map(entry).collect::<Vec<_>>(), v(0))
            .unwrap();
        let mut calls = 0;
        let r = cache.for_each_entry(|_| {
            calls += 1;
            if calls == 3 {
                Err(Error::invalid("test", "stop"))
            } else {
                Ok(())
            }
        });
        assert!(matches!(
            r,
            Err(Error::InvalidArgument { what: "test", .. })
        ));
        assert_eq!(calls, 3);
    }

    #[test]
    fn second_open_of_the_same_directory_fails_while_the_first_is_open() {
        let (dir, cache) = open_temp();
        match IndexCache::open(dir.path()) {
            Err(Error::Cache(msg)) => assert!(msg.contains("cannot open"), "{msg}"),
            other => panic!("expected a lock error, got {other:?}"),
        }
        drop(cache);
        IndexCache::open(dir.path()).unwrap();
    }

    #[test]
    fn undecodable_values_are_corrupt_not_panics() {
        let (_dir, cache) = open_temp();
        let e = entry(1);
        cache.apply_segment(&seg(1), &[e], v(0)).unwrap();
        let blobs = cache.cf(CF_BLOBS).unwrap();
        let mut bad = BlobCopy {
            entry: e,
            voucher: v(0),
        }
        .encode_value();
        bad[44] = 0xff; // unknown blob type
        cache.db.put_cf(blobs, e.blob.as_bytes(), bad).unwrap();
        assert!(matches!(cache.get(&e.blob), Err(Error::Corrupt { .. })));
        cache.db.put_cf(blobs, e.blob.as_bytes(), b"short").unwrap();
        assert!(matches!(cache.get(&e.blob), Err(Error::Corrupt { .. })));
        assert!(matches!(
            cache.for_each_entry(|_| Ok(())),
            Err(Error::Corrupt { .. })
        ));
        let good = BlobCopy {
            entry: e,
            voucher: v(0),
        }
        .encode_value();
        cache.db.put_cf(blobs, b"not a 32-byte key", good).unwrap();
        cache.db.put_cf(blobs, e.blob.as_bytes(), good).unwrap();
        assert!(matches!(
            cache.for_each_entry(|_| Ok(())),
            Err(Error::Corrupt { .. })
        ));
        // clear removes keys of any length.
        cache.clear().unwrap();
        assert!(all_entries(&cache).is_empty());
    }

    #[test]
    fn a_cache_with_another_layout_is_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cache = IndexCache::open(dir.path()).unwrap();
            cache.apply_segment(&seg(1), &[entry(1)], v(0)).unwrap();
            cache.put_meta(b"repo_id", b"r").unwrap();
            cache.put_meta(LAYOUT_KEY, &99u32.to_le_bytes()).unwrap();
        }
        let cache = IndexCache::open(dir.path()).unwrap();
        assert!(all_entries(&cache).is_empty());
        assert!(cache.applied_segments().unwrap().is_empty());
        assert_eq!(
            cache.get_meta(b"repo_id").unwrap().as_deref(),
            Some(&b"r"[..])
        );
        assert_eq!(
            cache.get_meta(LAYOUT_KEY).unwrap().as_deref(),
            Some(&LAYOUT.to_le_bytes()[..])
        );
    }

    #[test]
    fn apply_refuses_invalid_or_oversized_input_and_writes_nothing() {
        let (_dir, cache) = open_temp();
        let mut bad = entry(1);
        bad.offset = u32::MAX;
        let r = cache.apply_segment(&seg(1), &[entry(2), bad], v(0));
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
        let too_many = vec![entry(3); MAX_ENTRIES_PER_SEGMENT + 1];
        let r = cache.apply_segment(&seg(1), &too_many, v(0));
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
        assert!(!cache.is_applied(&seg(1)).unwrap());
        assert!(all_entries(&cache).is_empty());
    }

    #[test]
    fn hundred_thousand_entries_through_chunked_segments() {
        let (_dir, cache) = open_temp();
        const N: u32 = 100_000;
        let entries: Vec<_> = (0..N).map(entry).collect();
        for (i, chunk) in entries.chunks(10_000).enumerate() {
            cache.apply_segment(&seg(i as u8), chunk, v(0)).unwrap();
        }
        assert_eq!(cache.applied_segments().unwrap().len(), 10);
        for e in entries.iter().step_by(997) {
            assert_eq!(cache.get(&e.blob).unwrap(), Some(*e));
        }
        for i in N..N + 100 {
            assert!(!cache.contains(&entry(i).blob).unwrap());
        }
        let mut count = 0u32;
        cache
            .for_each_entry(|_| {
                count += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(count, N);
    }

    #[test]
    fn cache_is_shareable_and_debug_shows_only_the_path() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IndexCache>();
        let (dir, cache) = open_temp();
        let shown = format!("{cache:?}");
        assert!(shown.starts_with("IndexCache { path: "), "{shown}");
        assert!(shown.contains(&dir.path().display().to_string()), "{shown}");
    }
}
