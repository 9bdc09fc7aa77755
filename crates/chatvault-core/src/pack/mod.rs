//! Packs: the objects that hold sealed blobs.
//!
//! Layout: `blob* ‖ sealed header ‖ trailer`. Each blob is `nonce (24) ‖ ciphertext ‖ tag`
//! sealed with the pack's random data key (associated data in `blob::aad`). The header is
//! `nonce ‖ seal(count u32 ‖ count × entry) ‖ tag`, with the same key and associated data
//! `"CVPACKHD" ‖ repo_id`; an entry is `type u8 ‖ codec u8 ‖ domain u32 ‖ raw_len u32 ‖
//! length u32 ‖ id (32)` and blob offsets are implied (blobs are contiguous from 0). The
//! trailer (fixed [`TRAILER_LEN`] bytes) is `key wrap (108) ‖ header_len u32 ‖ version u16
//! ‖ magic "CVPACK\0\x01"`: the data key sealed to the repository's X25519 data key.
//! Invariants: the pack id is BLAKE3 of all its bytes; a reader needs only the trailer,
//! the header and one blob's range to read one blob; entries must tile the blob area
//! exactly, or the pack is `Corrupt`.

pub(crate) mod reader;
mod writer;

pub(crate) use reader::{open_header, read_trailer};
pub(crate) use writer::{FinishedPack, PackBuilder};

use crate::blob::{BlobType, Codec};
use crate::crypto::aead;
use crate::crypto::wrap::WRAP_LEN;
use crate::id::{BlobId, RepoId};

/// Magic bytes at the very end of a pack.
pub(crate) const MAGIC: &[u8; 8] = b"CVPACK\0\x01";
/// Length of the trailer.
pub(crate) const TRAILER_LEN: usize = WRAP_LEN + 4 + 2 + 8;
/// Length of one header entry.
pub(crate) const ENTRY_LEN: usize = 1 + 1 + 4 + 4 + 4 + 32;
/// Most blobs one pack may hold (bounds header allocation on hostile input).
pub(crate) const MAX_BLOBS_PER_PACK: usize = 1 << 20;

/// One blob in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackEntry {
    pub id: BlobId,
    pub blob_type: BlobType,
    pub codec: Codec,
    pub domain: u32,
    pub raw_len: u32,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length (nonce, ciphertext and tag).
    pub length: u32,
}

impl PackEntry {
    /// The index entry for this blob in pack `pack`, sealed to data key `generation`.
    pub(crate) fn index_entry(
        &self,
        pack: crate::id::PackId,
        generation: u32,
    ) -> crate::index::IndexEntry {
        crate::index::IndexEntry {
            blob: self.id,
            pack,
            offset: self.offset,
            length: self.length,
            raw_len: self.raw_len,
            blob_type: self.blob_type,
            codec: self.codec,
            domain: self.domain,
            generation,
        }
    }
}

/// Associated data of a pack header.
pub(crate) fn header_aad(repo_id: &RepoId) -> Vec<u8> {
    let mut a = Vec::with_capacity(8 + 32);
    a.extend_from_slice(b"CVPACKHD");
    a.extend_from_slice(repo_id.as_bytes());
    a
}

/// Smallest possible sealed header (no entries).
pub(crate) const MIN_HEADER_LEN: usize = 4 + aead::OVERHEAD;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob;
    use crate::crypto::wrap::{ObjectKind, WrapBinding};
    use crate::crypto::{Key32, context, random_array};
    use crate::error::Error;
    use crate::id::PackId;
    use proptest::prelude::*;
    use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};

    struct Keys {
        repo: RepoId,
        id_key: Key32,
        auth: Key32,
        sk: StaticSecret,
    }

    impl Keys {
        fn new() -> Self {
            Self {
                repo: RepoId::from_bytes([4; 32]),
                id_key: Key32::random(),
                auth: Key32::random(),
                sk: StaticSecret::from(random_array::<32>()),
            }
        }
        fn pk(&self) -> [u8; 32] {
            XPublicKey::from(&self.sk).to_bytes()
        }
        fn binding(&self) -> WrapBinding<'_> {
            WrapBinding {
                context: context::PACK_KEY_WRAP,
                repo_id: &self.repo,
                kind: ObjectKind::Pack,
                auth_key: &self.auth,
            }
        }
    }

    fn build(k: &Keys, blobs: &[Vec<u8>]) -> FinishedPack {
        let mut b = PackBuilder::new(0);
        for data in blobs {
            let id = blob::blob_id(&k.id_key, BlobType::Data, data);
            let (codec, payload) = blob::compress(3, data);
            b.add(
                &k.repo,
                id,
                BlobType::Data,
                codec,
                data.len() as u32,
                &payload,
            );
        }
        b.finish(&k.repo, &k.pk(), &k.binding()).unwrap()
    }

    fn read_all(k: &Keys, bytes: &[u8]) -> crate::error::Result<Vec<Vec<u8>>> {
        let t = read_trailer(
            &bytes[bytes.len().saturating_sub(TRAILER_LEN)..],
            bytes.len() as u64,
            "p",
        )?;
        let key = t.unwrap_key(&k.sk, &k.binding(), "p")?;
        let hdr = &bytes[t.header_offset as usize..bytes.len() - TRAILER_LEN];
        let header = open_header(hdr, &key, &k.repo, t.header_offset, 0, "p")?;
        header
            .entries
            .iter()
            .map(|e| {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                let meta = blob::BlobMeta {
                    id: e.id,
                    blob_type: e.blob_type,
                    codec: e.codec,
                    raw_len: e.raw_len,
                    domain: e.domain,
                    generation: header.generation,
                };
                blob::open(&key, &k.id_key, &k.repo, &meta, sealed, "p")
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn write_read_round_trip(blobs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..3000), 0..12)) {
            let k = Keys::new();
            let p = build(&k, &blobs);
            prop_assert_eq!(p.id, PackId::of_bytes(&p.bytes));
            prop_assert_eq!(p.entries.len(), blobs.len());
            prop_assert_eq!(read_all(&k, &p.bytes).unwrap(), blobs);
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let k = Keys::new();
        let p = build(&k, &[b"alpha".repeat(40), b"beta".to_vec(), vec![]]);
        for i in 0..p.bytes.len() {
            let mut b = p.bytes.clone();
            b[i] ^= 0x80;
            assert!(read_all(&k, &b).is_err(), "flip at {i} not detected");
        }
        for n in 0..p.bytes.len() {
            assert!(
                read_all(&k, &p.bytes[..n]).is_err(),
                "truncation to {n} not detected"
            );
        }
    }

    #[test]
    fn forged_with_public_key_only_is_rejected() {
        // An attacker with storage access and the data public key, but not auth_key,
        // builds a perfectly formed pack: readers refuse it.
        let k = Keys::new();
        let mut forger = Keys::new();
        forger.sk = StaticSecret::from(k.sk.to_bytes());
        forger.repo = k.repo;
        forger.id_key = Key32::from_bytes(*k.id_key.expose());
        let p = build(&forger, &[b"evil".to_vec()]);
        assert!(matches!(read_all(&k, &p.bytes), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn wrong_data_key_cannot_open() {
        let k = Keys::new();
        let p = build(&k, &[b"secret".to_vec()]);
        let mut other = Keys::new();
        other.repo = k.repo;
        other.auth = Key32::from_bytes(*k.auth.expose());
        assert!(read_all(&other, &p.bytes).is_err());
    }
}
