//! Blob presence: whether a blob the index names is still stored, answered from the index
//! cache and one listing of the repository's packs per writer session — never by reading
//! a pack.
//!
//! A frontend reuses a parent's chunk references for an unchanged file or stream only when
//! every blob in them is present, and the writer skips storing a blob only when it is
//! present; so a pack lost from storage (a disk error, a pack deleted by mistake) costs
//! one backup that reads its sources again and stores what the pack held, instead of every
//! later snapshot silently depending on it.
//!
//! Invariants:
//! - A blob is present for this handle's writer when some copy of it in the index cache
//!   (a) is vouched for by a writer this one trusts for deduplication
//!   ([`Repository::trusted_for_dedup`]: its own copies, and those of deduplication
//!   sources) and (b) lies in a pack that was in the backend's listing of `data/`, or was
//!   uploaded by this handle after that listing. The writer skips storing exactly the
//!   blobs that are present, and frontends reuse exactly the chunk lists whose blobs all
//!   are, so one predicate decides both. Damage *inside* a listed pack (flipped or
//!   truncated bytes) is not seen here: `check --read-data` finds it, and repairing it
//!   takes the damaged pack out of the listing (docs/OPERATIONS.md, Repair).
//! - The listing is taken lazily, at the first question after a writer session starts
//!   ([`Repository::writer`] forgets the previous one), and so after the session synced
//!   the index cache: every pack a synced segment names was uploaded before its segment,
//!   hence before the listing, and is in it unless it was lost.
//! - Packs this handle uploads are added as their uploads complete, so a session never
//!   takes its own new packs for lost ones.
//! - A copy stored again sits beside the lost one in the index cache (every copy is
//!   kept, index/cache.rs); readers fall back to it when the preferred copy's pack is
//!   gone (repo/reader.rs), and prune keeps the copy that verifies (repo/prune.rs).
//! - Memory: one pack id per pack in the repository (about 50 bytes each), not per blob.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use super::Repository;
use crate::error::Result;
use crate::id::{BlobId, PackId};
use crate::index::BlobCopy;
use crate::tree::ContentRef;

/// Ids looked up in one batch by [`Repository::missing_blobs`].
const LOOKUP_BATCH: usize = 4096;

/// The packs a session may count on: the backend's listing, plus this handle's uploads.
#[derive(Default)]
pub(crate) struct PackListing {
    /// Read on every question (shared), written once per session and per upload.
    state: RwLock<ListingState>,
    /// Taken while listing, so that one thread lists and the others wait for it.
    listing: Mutex<()>,
}

#[derive(Default)]
struct ListingState {
    /// The backend's packs at the listing; `None` until needed in this session.
    listed: Option<Arc<HashSet<PackId>>>,
    /// Packs this handle uploaded since the listing was forgotten.
    uploaded: HashSet<PackId>,
}

impl PackListing {
    /// Forgets the listing (a new writer session starts): the next question lists again.
    /// Packs recorded as uploaded so far were stored before that listing, so they are
    /// forgotten too.
    pub(crate) fn forget(&self) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.listed = None;
        s.uploaded.clear();
    }

    /// Records a pack this handle uploaded (kept until the next session's `forget`, whose
    /// listing will include it).
    pub(crate) fn uploaded(&self, id: PackId) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.uploaded.insert(id);
    }
}

impl Repository {
    /// Whether a blob is present: indexed, in a pack the repository still lists (see the
    /// module documentation of `repo/presence.rs`). Costs an index-cache lookup; the
    /// first question of a writer session also lists the repository's packs once.
    pub fn blob_present(&self, id: &BlobId) -> Result<bool> {
        let first = self.index.preferred(id)?;
        self.present_copy(id, first)
    }

    /// Whether some copy of `id`, `first` (its preferred copy) or a surplus one, is vouched
    /// for by a writer this one trusts and lies in a pack still stored.
    fn present_copy(&self, id: &BlobId, first: Option<BlobCopy>) -> Result<bool> {
        self.index.any_copy(id, first, |c| {
            Ok(self.trusted_for_dedup(c.voucher) && self.pack_present(&c.entry.pack)?)
        })
    }

    /// Whether every blob of a chunk list is present ([`blob_present`](Self::blob_present)
    /// for each): the condition for reusing a parent's chunk list without reading its
    /// source again. An empty list is present.
    pub fn blobs_present(&self, refs: &[ContentRef]) -> Result<bool> {
        match refs {
            [] => Ok(true),
            [one] => self.blob_present(&one.id),
            _ => Ok(self.missing_blobs(refs.iter().map(|r| r.id))?.is_empty()),
        }
    }

    /// The blobs among `ids` that are not present ([`blob_present`](Self::blob_present)),
    /// sorted and without repeats, found with batched index lookups: for a frontend that
    /// checks a whole directory's chunk lists at once (a directory of a thousand unchanged
    /// files costs one batch, not a thousand lookups).
    pub fn missing_blobs(&self, ids: impl IntoIterator<Item = BlobId>) -> Result<Vec<BlobId>> {
        let mut ids: Vec<BlobId> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let listed = self.listed_packs()?;
        let mut missing = Vec::new();
        for batch in ids.chunks(LOOKUP_BATCH) {
            for (id, first) in batch.iter().zip(self.index.preferred_sorted(batch)?) {
                // The common case answered from the batch: the preferred copy will do.
                let quick = first.is_some_and(|c| {
                    self.trusted_for_dedup(c.voucher)
                        && (listed.contains(&c.entry.pack) || self.uploaded_pack(&c.entry.pack))
                });
                if !quick && !self.present_copy(id, first)? {
                    missing.push(*id);
                }
            }
        }
        Ok(missing)
    }

    /// Whether a pack is in the session's listing or was uploaded by this handle since.
    pub(crate) fn pack_present(&self, pack: &PackId) -> Result<bool> {
        Ok(self.listed_packs()?.contains(pack) || self.uploaded_pack(pack))
    }

    fn uploaded_pack(&self, pack: &PackId) -> bool {
        let s = self.packs.state.read().unwrap_or_else(|p| p.into_inner());
        s.uploaded.contains(pack)
    }

    /// The session's listing of `data/`, taken now if this is the session's first question.
    fn listed_packs(&self) -> Result<Arc<HashSet<PackId>>> {
        if let Some(l) = &self
            .packs
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .listed
        {
            return Ok(l.clone());
        }
        let _one = self.packs.listing.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have listed while this one waited.
        if let Some(l) = &self
            .packs
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .listed
        {
            return Ok(l.clone());
        }
        // An upload completed before this listing starts is in it; every upload is also
        // recorded in `uploaded` until the next session's `forget`.
        let listed: HashSet<PackId> = self
            .backend
            .list("data/")?
            .into_iter()
            .filter_map(|o| PackId::from_hex(o.name.rsplit('/').next()?).ok())
            .collect();
        let listed = Arc::new(listed);
        self.packs
            .state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .listed = Some(listed.clone());
        Ok(listed)
    }
}
