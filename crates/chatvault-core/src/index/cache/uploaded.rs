//! Packs this cache's writer uploaded whose index segment is not yet written: what a
//! backup that failed after its uploads (the store went away, the process was killed)
//! would otherwise leave unindexed, so that its re-run stored the same data again and the
//! first packs waited for a prune to be deleted.
//!
//! Invariants:
//! - A pack is recorded after its upload succeeded and before its entries can be part of
//!   a segment, and forgotten once a segment naming its entries is stored
//!   (repo/writer.rs); so after any failure the records name every uploaded pack no
//!   segment covers.
//! - Records are the writer's own statements about its own packs: the next writer session
//!   of the same key adopts them (`Repository::writer`, repo/writer.rs), after confirming each pack is stored with
//!   the recorded size; nothing else reads them.

use rocksdb::{ReadOptions, WriteBatch};

use super::{IndexCache, cache_err};
use crate::error::{Error, Result};
use crate::id::PackId;
use crate::index::IndexEntry;
use crate::index::entry::ENCODED_LEN;

/// Column family: pack id → pack size (u64 BE) ‖ the pack's index entries (each
/// [`IndexEntry::encode_into`]).
pub(super) const CF_UPLOADED: &str = "uploaded_unindexed";

/// A recorded upload: the pack, its size and its entries.
pub(crate) struct UploadedPack {
    pub pack: PackId,
    pub size: u64,
    pub entries: Vec<IndexEntry>,
}

impl IndexCache {
    /// Records an uploaded pack whose entries no segment names yet.
    pub(crate) fn record_upload(
        &self,
        pack: &PackId,
        size: u64,
        entries: &[IndexEntry],
    ) -> Result<()> {
        let mut value = Vec::with_capacity(8 + entries.len() * ENCODED_LEN);
        value.extend_from_slice(&size.to_be_bytes());
        for e in entries {
            e.encode_into(&mut value);
        }
        self.db
            .put_cf(self.cf(CF_UPLOADED)?, pack.as_bytes(), value)
            .map_err(cache_err("cannot record an upload"))
    }

    /// Forgets recorded uploads (a segment names their entries now, or they are gone).
    pub(crate) fn forget_uploads<'a>(
        &self,
        packs: impl IntoIterator<Item = &'a PackId>,
    ) -> Result<()> {
        let cf = self.cf(CF_UPLOADED)?;
        let mut batch = WriteBatch::default();
        for p in packs {
            batch.delete_cf(cf, p.as_bytes());
        }
        self.db
            .write(batch)
            .map_err(cache_err("cannot forget recorded uploads"))
    }

    /// Every recorded upload. A record that does not decode is `Corrupt` (the cure is to
    /// clear the cache directory; the packs are then left to prune).
    pub(crate) fn recorded_uploads(&self) -> Result<Vec<UploadedPack>> {
        let object = "index-cache/uploaded_unindexed";
        let mut out = Vec::new();
        let mut it = self
            .db
            .raw_iterator_cf_opt(self.cf(CF_UPLOADED)?, ReadOptions::default());
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let pack = PackId::from_slice(key).ok_or_else(|| Error::corrupt(object, "bad key"))?;
            let (size, list) = value
                .split_first_chunk::<8>()
                .ok_or_else(|| Error::corrupt(object, "truncated"))?;
            if list.len() % ENCODED_LEN != 0 {
                return Err(Error::corrupt(object, "truncated entry"));
            }
            let entries = list
                .chunks(ENCODED_LEN)
                .map(|e| IndexEntry::decode(e, object))
                .collect::<Result<Vec<_>>>()?;
            if entries.iter().any(|e| e.pack != pack) {
                return Err(Error::corrupt(object, "an entry names another pack"));
            }
            out.push(UploadedPack {
                pack,
                size: u64::from_be_bytes(*size),
                entries,
            });
            it.next();
        }
        it.status()
            .map_err(cache_err("cannot iterate recorded uploads"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::entry::tests::sample;

    #[test]
    fn uploads_are_recorded_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let c = IndexCache::open(dir.path()).unwrap();
        let a = sample(1);
        let b = IndexEntry {
            blob: sample(2).blob,
            ..a
        };
        c.record_upload(&a.pack, 1000, &[a, b]).unwrap();
        let other = sample(3);
        c.record_upload(&other.pack, 7, &[other]).unwrap();
        let mut got = c.recorded_uploads().unwrap();
        got.sort_by_key(|u| u.size);
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].pack, got[1].size), (a.pack, 1000));
        assert_eq!(got[1].entries, vec![a, b]);
        c.forget_uploads([&a.pack]).unwrap();
        let got = c.recorded_uploads().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].entries, vec![other]);
    }
}
