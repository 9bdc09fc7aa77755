//! Reading blobs and trees: index lookup, pack key unwrap (cached), ranged read, open.
//!
//! Invariant: every blob returned has been authenticated and its plaintext re-hashed to its
//! id; a blob of the wrong type is `Corrupt`, never returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Repository;
use crate::blob::{self, BlobType};
use crate::crypto::Key32;
use crate::crypto::context;
use crate::crypto::wrap::{ObjectKind, WrapBinding};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::pack::{self, TRAILER_LEN};
use crate::tree::Tree;

/// Most pack keys kept unwrapped in memory.
const PACK_KEY_CACHE: usize = 4096;

/// Unwrapped pack data keys (zeroized when evicted or dropped).
#[derive(Default)]
pub(crate) struct PackKeyCache {
    keys: Mutex<HashMap<PackId, Arc<Key32>>>,
}

impl PackKeyCache {
    fn get(&self, id: &PackId) -> Option<Arc<Key32>> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub(super) fn insert(&self, id: PackId, key: Arc<Key32>) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PACK_KEY_CACHE {
            map.clear();
        }
        map.insert(id, key);
    }
}

impl Repository {
    pub(crate) fn pack_binding(&self) -> WrapBinding<'_> {
        WrapBinding {
            context: context::PACK_KEY_WRAP,
            repo_id: &self.config.repo_id,
            kind: ObjectKind::Pack,
            auth_key: &self.secrets.auth_key,
        }
    }

    pub(crate) fn unwrap_pack_key(
        &self,
        trailer: &pack::reader::Trailer,
        name: &str,
    ) -> Result<Key32> {
        self.require_read("read blobs")?;
        let sk = self
            .secrets
            .data_secret(trailer.generation())
            .ok_or_else(|| {
                Error::corrupt(
                    name,
                    format!("unknown data key generation {}", trailer.generation()),
                )
            })?;
        trailer.unwrap_key(sk, &self.pack_binding(), name)
    }

    pub(super) fn pack_key(&self, pack: &PackId) -> Result<Arc<Key32>> {
        if let Some(k) = self.pack_keys.get(pack) {
            return Ok(k);
        }
        let name = pack.object_name();
        let size = self.backend.stat(&name)?.size;
        if size < TRAILER_LEN as u64 {
            return Err(Error::corrupt(&*name, "too short to be a pack"));
        }
        let tail = self
            .backend
            .get_range(&name, size - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
        let trailer = pack::read_trailer(&tail, size, &name)?;
        let key = Arc::new(self.unwrap_pack_key(&trailer, &name)?);
        self.pack_keys.insert(*pack, key.clone());
        Ok(key)
    }

    /// The id a blob with these bytes has (or would have) in this repository: keyed
    /// BLAKE3, so a frontend can check stored chunks against a source without storing
    /// anything.
    pub fn blob_id(&self, blob_type: BlobType, data: &[u8]) -> BlobId {
        crate::blob::blob_id(&self.secrets.id_key, blob_type, data)
    }

    /// Whether the index knows a blob.
    pub fn contains_blob(&self, id: &BlobId) -> Result<bool> {
        self.index.contains(id)
    }

    /// Reads, authenticates and verifies one blob. Needs a full or admin key.
    pub fn read_blob(&self, id: BlobId, expected: BlobType) -> Result<Vec<u8>> {
        self.require_read("read blobs")?;
        let entry = self.index.get(&id)?.ok_or_else(|| Error::NotFound {
            object: format!("blob {id}").into(),
        })?;
        let name = entry.pack.object_name();
        if entry.blob_type != expected {
            return Err(Error::corrupt(
                format!("{name}#{id}"),
                format!(
                    "expected a {expected:?} blob, the index says {:?}",
                    entry.blob_type
                ),
            ));
        }
        if entry.domain != 0 {
            return Err(Error::corrupt(
                format!("{name}#{id}"),
                "key domains other than 0 are not supported by this build",
            ));
        }
        let key = self.pack_key(&entry.pack)?;
        let sealed =
            self.backend
                .get_range(&name, u64::from(entry.offset), u64::from(entry.length))?;
        let meta = entry.blob_meta();
        blob::open_owned(
            &key,
            &self.secrets.id_key,
            &self.config.repo_id,
            &meta,
            sealed,
            &name,
        )
    }

    /// Reads and decodes a tree.
    pub fn read_tree(&self, id: BlobId) -> Result<Tree> {
        let bytes = self.read_blob(id, BlobType::Tree)?;
        Tree::decode(&bytes, &format!("tree {id}"))
    }
}
