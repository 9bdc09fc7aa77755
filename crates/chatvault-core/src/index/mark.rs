//! The mark set of a prune: the ids of every blob reachable from the snapshots, kept in a
//! scratch RocksDB database on disk rather than in memory.
//!
//! Invariants: memory is bounded by the database's fixed write buffers and block cache
//! (two 4 MiB memtables, an 8 MiB cache holding partitioned filters and indexes), whatever
//! the number of blobs; the database is private to one prune
//! (its own directory, removed on drop) and written without a write-ahead log, since a
//! crash loses nothing that a new prune does not recompute.

use std::path::{Path, PathBuf};

use rocksdb::{Cache, DB, WriteOptions};

use crate::error::{Error, Result};
use crate::id::BlobId;

/// Memtable size. Lookups in the set are mostly for absent ids, answered by the memtable
/// bloom and one filter partition per table, so small memtables (more, smaller tables)
/// cost no measurable marking time, and they fill early: with 16 MiB, a prune's memory
/// still rose between 0.2M and 1M blobs while the memtables filled.
const WRITE_BUFFER: usize = 4 << 20;
const BLOCK_CACHE: usize = 8 << 20;

/// A set of blob ids on disk.
pub(crate) struct MarkSet {
    // Before `_dir`: fields drop in order, so the database closes before its directory
    // is removed.
    db: DB,
    _dir: RemoveOnDrop,
    write: WriteOptions,
    len: u64,
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for MarkSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarkSet").field("len", &self.len).finish()
    }
}

fn err(e: rocksdb::Error) -> Error {
    Error::Cache(format!("prune mark set: {e}"))
}

impl MarkSet {
    /// Creates an empty set in `dir`, which must not exist yet.
    pub(crate) fn create(dir: &Path) -> Result<Self> {
        // The index cache's table layout (partitioned bloom filters and indexes in a
        // bounded block cache): with whole filters, a lookup re-read a table's entire
        // filter once the cache was full (measured: a prune of 2M blobs spent most of its
        // time checksumming filter blocks).
        let mut opts =
            super::cache::cf_options(&Cache::new_lru_cache(BLOCK_CACHE), WRITE_BUFFER, true);
        opts.create_if_missing(true);
        opts.set_error_if_exists(true);
        opts.set_max_write_buffer_number(2);
        opts.set_keep_log_file_num(1);
        opts.set_max_open_files(64);
        let db = DB::open(&opts, dir).map_err(err)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self {
            db,
            _dir: RemoveOnDrop(dir.to_owned()),
            write,
            len: 0,
        })
    }

    /// Adds `id`; returns whether it was new.
    pub(crate) fn insert(&mut self, id: &BlobId) -> Result<bool> {
        if self.contains(id)? {
            return Ok(false);
        }
        self.db
            .put_opt(id.as_bytes(), [], &self.write)
            .map_err(err)?;
        self.len += 1;
        Ok(true)
    }

    /// Whether `id` is in the set.
    pub(crate) fn contains(&self, id: &BlobId) -> Result<bool> {
        Ok(self.db.get_pinned(id.as_bytes()).map_err(err)?.is_some())
    }

    /// Ids in the set.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_once_answers_membership_and_removes_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mark");
        let mut m = MarkSet::create(&path).unwrap();
        let ids: Vec<BlobId> = (0..5000u32)
            .map(|i| BlobId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes()))
            .collect();
        for id in &ids {
            assert!(m.insert(id).unwrap());
        }
        assert!(!m.insert(&ids[17]).unwrap());
        assert_eq!(m.len(), 5000);
        assert!(m.contains(&ids[4999]).unwrap());
        assert!(!m.contains(&BlobId::from_bytes([0; 32])).unwrap());
        assert!(
            MarkSet::create(&path).is_err(),
            "a second set may not share it"
        );
        drop(m);
        assert!(!path.exists());
    }

    fn property(m: &MarkSet, name: &str) -> u64 {
        m.db.property_int_value(name).unwrap().unwrap()
    }

    /// The set's memory is its memtables and its block cache, however many ids it holds:
    /// no more than two memtables at once, a cache of the fixed capacity, and table
    /// readers that hold almost nothing outside it (filter and index partitions live in
    /// the cache; whole per-table filters would show here).
    #[test]
    fn memory_stays_within_the_memtables_and_the_block_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MarkSet::create(&dir.path().join("mark")).unwrap();
        let mut peak_memtables = 0;
        for i in 0..400_000u32 {
            let id = BlobId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes());
            assert!(m.insert(&id).unwrap());
            if i % 10_000 == 0 {
                peak_memtables =
                    peak_memtables.max(property(&m, "rocksdb.cur-size-all-mem-tables"));
            }
        }
        let tables: u64 = (0..7)
            .map(|l| property(&m, &format!("rocksdb.num-files-at-level{l}")))
            .sum();
        assert!(
            tables >= 3,
            "{tables} tables: too few flushes to test anything"
        );
        let memtable_cap = 2 * (WRITE_BUFFER + WRITE_BUFFER / 8) as u64;
        assert!(
            peak_memtables <= memtable_cap,
            "{peak_memtables} > {memtable_cap}"
        );
        assert_eq!(
            property(&m, "rocksdb.block-cache-capacity"),
            BLOCK_CACHE as u64
        );
        let readers = property(&m, "rocksdb.estimate-table-readers-mem");
        assert!(readers < 64 << 10, "table readers hold {readers} bytes");
    }
}
