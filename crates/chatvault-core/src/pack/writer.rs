//! Building a pack in memory from compressed blob payloads.
//!
//! Invariant: blobs are sealed with the pack's own fresh data key as they are added, so the
//! plaintext is never held longer than one `add` call.

use super::{ENTRY_LEN, MAGIC, PackEntry, TRAILER_LEN, header_aad};
use crate::blob::{self, BlobMeta, BlobType, Codec};
use crate::crypto::wrap::{self, WrapBinding};
use crate::crypto::{Key32, aead};
use crate::format::FormatVersion;
use crate::id::{BlobId, PackId, RepoId};

/// A pack being filled.
pub(crate) struct PackBuilder {
    key: Key32,
    generation: u32,
    bytes: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A complete pack, ready to upload.
#[derive(Debug)]
pub(crate) struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
    pub generation: u32,
}

impl PackBuilder {
    /// An empty pack sealed to data key `generation`.
    pub fn new(generation: u32) -> Self {
        Self {
            key: Key32::random(),
            generation,
            bytes: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Seals and appends one blob payload (already compressed per `codec`).
    pub fn add(
        &mut self,
        repo_id: &RepoId,
        id: BlobId,
        blob_type: BlobType,
        codec: Codec,
        raw_len: u32,
        payload: &[u8],
    ) {
        let meta = BlobMeta {
            id,
            blob_type,
            codec,
            raw_len,
            domain: 0,
            generation: self.generation,
        };
        let offset = self.bytes.len();
        blob::seal(&self.key, repo_id, &meta, payload, &mut self.bytes);
        self.entries.push(PackEntry {
            id,
            blob_type,
            codec,
            domain: 0,
            raw_len,
            offset: offset as u32,
            length: (self.bytes.len() - offset) as u32,
        });
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Number of blobs so far.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// Seals the header, wraps the data key to `data_pk` and returns the pack. Fails only
    /// for a low-order `data_pk`, which a verified config never carries.
    pub fn finish(
        self,
        repo_id: &RepoId,
        data_pk: &[u8; 32],
        binding: &WrapBinding<'_>,
    ) -> Result<FinishedPack, wrap::WeakPublicKey> {
        let Self {
            key,
            generation,
            mut bytes,
            entries,
        } = self;
        let mut header = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
        header.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in &entries {
            header.push(e.blob_type as u8);
            header.push(e.codec as u8);
            header.extend_from_slice(&e.domain.to_le_bytes());
            header.extend_from_slice(&e.raw_len.to_le_bytes());
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(e.id.as_bytes());
        }
        let header_start = bytes.len();
        let aad = header_aad(repo_id, FormatVersion::CURRENT, generation);
        aead::seal_into(&key, &aad, &header, &mut bytes);
        let header_len = (bytes.len() - header_start) as u32;
        bytes.reserve(TRAILER_LEN);
        bytes.extend_from_slice(&wrap::wrap(&key, data_pk, generation, binding)?);
        bytes.extend_from_slice(&header_len.to_le_bytes());
        bytes.extend_from_slice(&FormatVersion::CURRENT.as_u16().to_le_bytes());
        bytes.extend_from_slice(MAGIC);
        Ok(FinishedPack {
            id: PackId::of_bytes(&bytes),
            bytes,
            entries,
            generation,
        })
    }
}
