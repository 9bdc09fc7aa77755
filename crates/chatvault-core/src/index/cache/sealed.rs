//! Copies of repository bytes that remote reads must not repeat: the sealed bytes of tree
//! blobs and the trailers of packs, kept in the index cache so that listing, browsing and
//! the parent walk of an incremental backup read no pack from the store.
//!
//! Invariants:
//! - Only bytes exactly as stored (ciphertext and the public trailer), never plaintext:
//!   the cache reveals nothing the storage does not.
//! - Nothing here is trusted: a cached tree is used only for the copy (pack, offset,
//!   length) the index names, and is opened (authenticated, re-hashed to its id) like
//!   bytes fetched from the store; a cached trailer is parsed and its key unwrapped like
//!   a fetched one. Bytes that fail are dropped and fetched again.
//! - Bounded by what the repository holds: prune drops the entries of the packs it
//!   deletes ([`IndexCache::retain_sealed`]).

use rocksdb::{ReadOptions, WriteBatch};

use super::{IndexCache, cache_err};
use crate::error::Result;
use crate::id::{BlobId, PackId};

/// Column family: blob id → pack id ‖ offset (u32 BE) ‖ sealed bytes of a tree blob.
pub(super) const CF_SEALED_TREES: &str = "sealed_trees";
/// Column family: pack id → pack size (u64 BE) ‖ trailer bytes.
pub(super) const CF_PACK_TRAILERS: &str = "pack_trailers";

/// Where a cached tree's bytes came from, before the bytes.
const TREE_PREFIX: usize = 32 + 4;

impl IndexCache {
    /// The cached sealed bytes of tree `id` at `pack`/`offset`, if exactly that copy of
    /// `len` bytes is cached, appended to `out`.
    pub(crate) fn sealed_tree(
        &self,
        id: &BlobId,
        pack: &PackId,
        offset: u32,
        out: &mut [u8],
    ) -> Result<bool> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_SEALED_TREES)?, id.as_bytes())
            .map_err(cache_err("cannot read the tree cache"))?;
        Ok(match value {
            Some(v)
                if v.len() == TREE_PREFIX + out.len()
                    && v[..32] == *pack.as_bytes()
                    && v[32..TREE_PREFIX] == offset.to_be_bytes() =>
            {
                out.copy_from_slice(&v[TREE_PREFIX..]);
                true
            }
            _ => false,
        })
    }

    /// Caches the sealed bytes of tree `id`, stored at `pack`/`offset`.
    pub(crate) fn put_sealed_tree(
        &self,
        id: &BlobId,
        pack: &PackId,
        offset: u32,
        sealed: &[u8],
    ) -> Result<()> {
        let mut value = Vec::with_capacity(TREE_PREFIX + sealed.len());
        value.extend_from_slice(pack.as_bytes());
        value.extend_from_slice(&offset.to_be_bytes());
        value.extend_from_slice(sealed);
        self.db
            .put_cf(self.cf(CF_SEALED_TREES)?, id.as_bytes(), value)
            .map_err(cache_err("cannot write the tree cache"))
    }

    /// Forgets a cached tree (its bytes failed to open).
    pub(crate) fn drop_sealed_tree(&self, id: &BlobId) -> Result<()> {
        self.db
            .delete_cf(self.cf(CF_SEALED_TREES)?, id.as_bytes())
            .map_err(cache_err("cannot write the tree cache"))
    }

    /// A pack's cached size and trailer.
    pub(crate) fn pack_trailer(&self, pack: &PackId) -> Result<Option<(u64, Vec<u8>)>> {
        let value = self
            .db
            .get_cf(self.cf(CF_PACK_TRAILERS)?, pack.as_bytes())
            .map_err(cache_err("cannot read the trailer cache"))?;
        Ok(value.and_then(|v| {
            let size = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
            Some((size, v[8..].to_vec()))
        }))
    }

    /// Caches a pack's size and trailer.
    pub(crate) fn put_pack_trailer(&self, pack: &PackId, size: u64, trailer: &[u8]) -> Result<()> {
        let mut value = Vec::with_capacity(8 + trailer.len());
        value.extend_from_slice(&size.to_be_bytes());
        value.extend_from_slice(trailer);
        self.db
            .put_cf(self.cf(CF_PACK_TRAILERS)?, pack.as_bytes(), value)
            .map_err(cache_err("cannot write the trailer cache"))
    }

    /// Forgets a pack's cached trailer (it failed to parse or unwrap).
    pub(crate) fn drop_pack_trailer(&self, pack: &PackId) -> Result<()> {
        self.db
            .delete_cf(self.cf(CF_PACK_TRAILERS)?, pack.as_bytes())
            .map_err(cache_err("cannot write the trailer cache"))
    }

    /// Drops every cached tree and trailer of a pack `keep` refuses (prune, after deleting
    /// packs); returns how many entries went.
    pub(crate) fn retain_sealed(&self, keep: impl Fn(&PackId) -> bool) -> Result<u64> {
        let mut batch = WriteBatch::default();
        let mut dropped = 0;
        for (name, pack_at) in [(CF_SEALED_TREES, true), (CF_PACK_TRAILERS, false)] {
            let cf = self.cf(name)?;
            let mut it = self.db.raw_iterator_cf_opt(cf, ReadOptions::default());
            it.seek_to_first();
            while let (Some(key), Some(value)) = (it.key(), it.value()) {
                let pack = if pack_at { value.get(..32) } else { Some(key) };
                let kept = pack.and_then(PackId::from_slice).is_some_and(|p| keep(&p));
                if !kept {
                    batch.delete_cf(cf, key);
                    dropped += 1;
                }
                it.next();
            }
            it.status()
                .map_err(cache_err("cannot iterate the tree cache"))?;
        }
        self.db
            .write(batch)
            .map_err(cache_err("cannot write the tree cache"))?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, IndexCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = IndexCache::open(dir.path()).unwrap();
        (dir, cache)
    }

    #[test]
    fn a_cached_tree_is_returned_only_for_the_copy_it_was_cached_as() {
        let (_d, c) = open();
        let (id, pack, other) = (
            BlobId::from_bytes([1; 32]),
            PackId::from_bytes([2; 32]),
            PackId::from_bytes([3; 32]),
        );
        c.put_sealed_tree(&id, &pack, 40, b"sealed bytes").unwrap();
        let mut out = [0u8; 12];
        assert!(c.sealed_tree(&id, &pack, 40, &mut out).unwrap());
        assert_eq!(&out, b"sealed bytes");
        // Another pack, another offset, another length: not this copy.
        assert!(!c.sealed_tree(&id, &other, 40, &mut out).unwrap());
        assert!(!c.sealed_tree(&id, &pack, 41, &mut out).unwrap());
        assert!(!c.sealed_tree(&id, &pack, 40, &mut [0u8; 11]).unwrap());
        c.drop_sealed_tree(&id).unwrap();
        assert!(!c.sealed_tree(&id, &pack, 40, &mut out).unwrap());
    }

    #[test]
    fn retain_drops_the_trees_and_trailers_of_deleted_packs() {
        let (_d, c) = open();
        let (kept, gone) = (PackId::from_bytes([2; 32]), PackId::from_bytes([3; 32]));
        let (a, b) = (BlobId::from_bytes([1; 32]), BlobId::from_bytes([4; 32]));
        c.put_sealed_tree(&a, &kept, 0, b"a").unwrap();
        c.put_sealed_tree(&b, &gone, 0, b"b").unwrap();
        c.put_pack_trailer(&kept, 100, b"trailer k").unwrap();
        c.put_pack_trailer(&gone, 200, b"trailer g").unwrap();
        assert_eq!(c.retain_sealed(|p| *p == kept).unwrap(), 2);
        let mut out = [0u8; 1];
        assert!(c.sealed_tree(&a, &kept, 0, &mut out).unwrap());
        assert!(!c.sealed_tree(&b, &gone, 0, &mut out).unwrap());
        assert_eq!(
            c.pack_trailer(&kept).unwrap(),
            Some((100, b"trailer k".to_vec()))
        );
        assert_eq!(c.pack_trailer(&gone).unwrap(), None);
    }
}
