//! The mark set of a prune: the ids of every blob reachable from the snapshots, kept in a
//! scratch RocksDB database on disk rather than in memory.
//!
//! Invariants: memory is bounded by the database's fixed write buffers and block cache
//! (two 16 MiB memtables, an 8 MiB cache holding partitioned filters and indexes), whatever
//! the number of blobs; the database is private to one prune
//! (its own directory, removed on drop) and written without a write-ahead log, since a
//! crash loses nothing that a new prune does not recompute.

use std::path::{Path, PathBuf};

use rocksdb::{Cache, DB, WriteOptions};

use crate::error::{Error, Result};
use crate::id::BlobId;

const WRITE_BUFFER: usize = 16 << 20;
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
}
