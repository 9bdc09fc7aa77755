//! The local index cache: a RocksDB database mapping blob ids to [`IndexEntry`]s, plus the
//! set of index segments already applied and a few small metadata values.
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
//! - First writer wins: an entry already present for a blob id is never replaced. The same
//!   blob stored in two packs is harmless, and keeping the first answer stable means a
//!   lookup never flips between packs.
//! - Memory is bounded whatever the repository size: one shared block cache holds data,
//!   index and filter blocks; iteration streams; nothing loads every entry.
//! - RocksDB's `LOCK` file allows one process at a time per cache directory: a second
//!   [`IndexCache::open`] of the same directory (in this or another process) fails with
//!   `Error::Cache` while the first is open. Callers that run several processes give each
//!   its own directory or serialise them.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB,
    DBCompressionType, DataBlockIndexType, Options, ReadOptions, WriteBatch, WriteOptions,
};

use super::{IndexEntry, MAX_ENTRIES_PER_SEGMENT};
use crate::error::{Error, Result};
use crate::id::{BlobId, SegmentId, SnapshotId};

/// Column family: blob id (32 bytes) → [`IndexEntry::encode_value`].
const CF_BLOBS: &str = "blobs";
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
/// The value layout this build writes: [`IndexEntry::encode_value`] as of format v1.
const LAYOUT: u32 = 1;

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

/// The local RocksDB index cache. See the module documentation for its guarantees.
pub(crate) struct IndexCache {
    db: DB,
    path: PathBuf,
    /// Serialises [`apply_segment`](Self::apply_segment) and [`clear`](Self::clear): the
    /// first-writer-wins check reads before it writes, which is only sound if no other
    /// writer of this handle runs in between. (Other processes are kept out by `LOCK`.)
    write_lock: Mutex<()>,
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

        let cfs = [
            (CF_BLOBS, BLOBS_WRITE_BUFFER, true),
            (CF_SEGMENTS, SMALL_WRITE_BUFFER, false),
            (CF_META, SMALL_WRITE_BUFFER, false),
            (CF_OWN_TREES, SMALL_WRITE_BUFFER, true),
            (CF_OWN_SNAPSHOTS, SMALL_WRITE_BUFFER, false),
        ]
        .map(|(name, wb, bloom)| {
            ColumnFamilyDescriptor::new(name, cf_options(&block_cache, wb, bloom))
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(cache_err("cannot open the index cache"))?;
        let cache = IndexCache {
            db,
            path: path.to_owned(),
            write_lock: Mutex::new(()),
        };
        cache.check_layout()?;
        Ok(cache)
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

    /// The entry for `id`, or `None` if no applied segment lists it.
    pub(crate) fn get(&self, id: &BlobId) -> Result<Option<IndexEntry>> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, id.as_bytes())
            .map_err(cache_err("index cache lookup failed"))?;
        value
            .map(|v| IndexEntry::decode_value(*id, &v, &Self::entry_object(id)))
            .transpose()
    }

    /// The entries for `ids`, which must be sorted, in one batched lookup (RocksDB's
    /// `MultiGet`): `None` where absent. For checking many ids at once (blob presence).
    pub(crate) fn get_sorted(&self, ids: &[BlobId]) -> Result<Vec<Option<IndexEntry>>> {
        debug_assert!(ids.windows(2).all(|w| w[0] <= w[1]));
        let cf = self.cf(CF_BLOBS)?;
        self.db
            .batched_multi_get_cf(cf, ids.iter().map(|id| id.as_bytes()), true)
            .into_iter()
            .zip(ids)
            .map(|(v, id)| {
                let v = v.map_err(cache_err("index cache lookup failed"))?;
                v.map(|v| IndexEntry::decode_value(*id, &v, &Self::entry_object(id)))
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

    /// Records the entries of segment `seg` and marks it applied, atomically.
    ///
    /// Entries whose blob id is already present (from an earlier segment, or earlier in
    /// `entries`) are skipped: first writer wins. Applying a segment already marked is a
    /// no-op, so this is idempotent. Refuses (`InvalidArgument`) more than
    /// [`MAX_ENTRIES_PER_SEGMENT`] entries, which bounds the batch's memory, and entries
    /// that fail [`IndexEntry::check`], which could not be read back.
    pub(crate) fn apply_segment(&self, seg: &SegmentId, entries: &[IndexEntry]) -> Result<()> {
        self.apply_segment_replacing(seg, entries, |_, _| Ok(false))
    }

    /// [`apply_segment`](Self::apply_segment), except that an entry replaces the one
    /// already present for its blob when `replace(present, new)` says so: the repository
    /// passes "the present entry's pack is lost and the new one's is not", so a copy
    /// stored again after a pack was lost is the one read (repo/presence.rs).
    pub(crate) fn apply_segment_replacing(
        &self,
        seg: &SegmentId,
        entries: &[IndexEntry],
        replace: impl Fn(&IndexEntry, &IndexEntry) -> Result<bool>,
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
        let blobs = self.cf(CF_BLOBS)?;
        let mut batch = WriteBatch::default();
        let mut seen = HashSet::with_capacity(entries.len());
        for e in entries {
            if !seen.insert(e.blob) {
                continue;
            }
            if let Some(present) = self.get(&e.blob)?
                && !replace(&present, e)?
            {
                continue;
            }
            batch.put_cf(blobs, e.blob.as_bytes(), e.encode_value());
        }
        batch.put_cf(self.cf(CF_SEGMENTS)?, seg.as_bytes(), b"");
        self.db
            .write(batch)
            .map_err(cache_err("cannot write to the index cache"))
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

    /// Calls `f` with every entry, in blob-id order, streaming from disk (nothing is
    /// collected). Stops at and returns the first error, from `f` or from decoding.
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
            f(IndexEntry::decode_value(
                id,
                value,
                &Self::entry_object(&id),
            )?)?;
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
        let families = [self.cf(CF_BLOBS)?, self.cf(CF_SEGMENTS)?];
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
            length: 100,
            raw_len: i % 4096,
            ..sample(1)
        }
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
        cache.apply_segment(&seg(1), &entries).unwrap();
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
            cache.apply_segment(&seg(1), &entries).unwrap();
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
        cache.apply_segment(&seg(9), &[entry(1)]).unwrap();
        cache.apply_segment(&seg(3), &[]).unwrap();
        assert_eq!(cache.applied_segments().unwrap(), vec![seg(3), seg(9)]);
        assert!(cache.is_applied(&seg(3)).unwrap());
        assert!(cache.is_applied(&seg(9)).unwrap());
        assert!(!cache.is_applied(&seg(4)).unwrap());
    }

    #[test]
    fn clear_drops_entries_and_markers_but_keeps_meta() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..100).map(entry).collect();
        cache.apply_segment(&seg(1), &entries).unwrap();
        cache.apply_segment(&seg(2), &[entry(200)]).unwrap();
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
        cache.apply_segment(&seg(1), &entries[..3]).unwrap();
        assert_eq!(all_entries(&cache).len(), 3);
    }

    #[test]
    fn apply_is_idempotent() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..20).map(entry).collect();
        cache.apply_segment(&seg(1), &entries).unwrap();
        let before = all_entries(&cache);
        cache.apply_segment(&seg(1), &entries).unwrap();
        // Same marker, different content: still a no-op, the segment was already applied.
        let other: Vec<_> = (100..110).map(entry).collect();
        cache.apply_segment(&seg(1), &other).unwrap();
        assert_eq!(all_entries(&cache), before);
        assert_eq!(cache.applied_segments().unwrap(), vec![seg(1)]);
    }

    #[test]
    fn first_writer_wins_across_segments_and_within_one() {
        let (_dir, cache) = open_temp();
        let first = entry(1);
        let mut later = first;
        later.pack = crate::id::PackId::from_bytes([0xee; 32]);
        later.offset = 777;
        cache.apply_segment(&seg(1), &[first]).unwrap();
        cache.apply_segment(&seg(2), &[later, entry(2)]).unwrap();
        assert_eq!(cache.get(&first.blob).unwrap(), Some(first));
        assert_eq!(cache.get(&entry(2).blob).unwrap(), Some(entry(2)));
        assert!(cache.is_applied(&seg(2)).unwrap());

        let a = entry(3);
        let mut b = a;
        b.offset = 5;
        cache.apply_segment(&seg(3), &[a, b]).unwrap();
        assert_eq!(cache.get(&a.blob).unwrap(), Some(a));
    }

    #[test]
    fn for_each_entry_visits_every_entry_once_in_id_order() {
        let (_dir, cache) = open_temp();
        let entries: Vec<_> = (0..500).map(entry).collect();
        for (i, chunk) in entries.chunks(120).enumerate() {
            cache.apply_segment(&seg(i as u8), chunk).unwrap();
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
            .apply_segment(&seg(1), &(0..10).map(entry).collect::<Vec<_>>())
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
        cache.apply_segment(&seg(1), &[e]).unwrap();
        let blobs = cache.cf(CF_BLOBS).unwrap();
        let mut bad = e.encode_value();
        bad[44] = 0xff; // unknown blob type
        cache.db.put_cf(blobs, e.blob.as_bytes(), bad).unwrap();
        assert!(matches!(cache.get(&e.blob), Err(Error::Corrupt { .. })));
        cache.db.put_cf(blobs, e.blob.as_bytes(), b"short").unwrap();
        assert!(matches!(cache.get(&e.blob), Err(Error::Corrupt { .. })));
        assert!(matches!(
            cache.for_each_entry(|_| Ok(())),
            Err(Error::Corrupt { .. })
        ));
        cache
            .db
            .put_cf(blobs, b"not a 32-byte key", e.encode_value())
            .unwrap();
        cache
            .db
            .put_cf(blobs, e.blob.as_bytes(), e.encode_value())
            .unwrap();
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
            cache.apply_segment(&seg(1), &[entry(1)]).unwrap();
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
        let r = cache.apply_segment(&seg(1), &[entry(2), bad]);
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
        let too_many = vec![entry(3); MAX_ENTRIES_PER_SEGMENT + 1];
        let r = cache.apply_segment(&seg(1), &too_many);
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
            cache.apply_segment(&seg(i as u8), chunk).unwrap();
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
