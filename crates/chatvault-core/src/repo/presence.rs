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
//! - A blob is present when the index cache has an entry for it and that entry's pack was
//!   in the backend's listing of `data/`, or was uploaded by this handle after that
//!   listing. Damage *inside* a listed pack (flipped or truncated bytes) is not seen here:
//!   `check --read-data` finds it, and repairing it takes the damaged pack out of the
//!   listing (docs/OPERATIONS.md, Repair).
//! - The listing is taken lazily, at the first question after a writer session starts
//!   ([`Repository::writer`] forgets the previous one), and so after the session synced
//!   the index cache: every pack a synced segment names was uploaded before its segment,
//!   hence before the listing, and is in it unless it was lost.
//! - Packs this handle uploads are added as their uploads complete, so a session never
//!   takes its own new packs for lost ones.
//! - A copy stored again replaces the lost one in the index cache, here and in every
//!   cache that syncs its segment (`repo/index_sync.rs`: first writer wins, except over a
//!   copy whose pack is lost), so the snapshot that stored it again restores.
//! - Memory: one pack id per pack in the repository (about 50 bytes each), not per blob.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::Repository;
use crate::error::Result;
use crate::id::{BlobId, PackId};
use crate::tree::ContentRef;

/// The packs a session may count on: the backend's listing, plus this handle's uploads.
#[derive(Default)]
pub(crate) struct PackListing {
    state: Mutex<ListingState>,
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
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.listed = None;
        s.uploaded.clear();
    }

    /// Records a pack this handle uploaded.
    pub(crate) fn uploaded(&self, id: PackId) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.listed.is_some() {
            s.uploaded.insert(id);
        }
    }
}

impl Repository {
    /// Whether a blob is present: indexed, in a pack the repository still lists (see the
    /// module documentation of `repo/presence.rs`). Costs an index-cache lookup; the
    /// first question of a writer session also lists the repository's packs once.
    pub fn blob_present(&self, id: &BlobId) -> Result<bool> {
        let Some(entry) = self.index.get(id)? else {
            return Ok(false);
        };
        self.pack_present(&entry.pack)
    }

    /// Whether every blob of a chunk list is present ([`blob_present`](Self::blob_present)
    /// for each): the condition for reusing a parent's chunk list without reading its
    /// source again. An empty list is present.
    pub fn blobs_present(&self, refs: &[ContentRef]) -> Result<bool> {
        for r in refs {
            if !self.blob_present(&r.id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a pack is in the session's listing or was uploaded by this handle since.
    pub(crate) fn pack_present(&self, pack: &PackId) -> Result<bool> {
        let mut s = self.packs.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.uploaded.contains(pack) {
            return Ok(true);
        }
        let listed = match &s.listed {
            Some(l) => l.clone(),
            None => {
                // Listed under the lock: every thread of the session needs it, and an
                // upload recorded meanwhile waits, so none is lost between the two.
                let l: HashSet<PackId> = self
                    .backend
                    .list("data/")?
                    .into_iter()
                    .filter_map(|o| PackId::from_hex(o.name.rsplit('/').next()?).ok())
                    .collect();
                s.listed.insert(Arc::new(l)).clone()
            }
        };
        drop(s);
        Ok(listed.contains(pack))
    }
}
