//! Packs: the objects that hold sealed blobs.
//!
//! Layout: `blob* ‖ sealed header ‖ trailer`. Each blob is `nonce (24) ‖ ciphertext ‖ tag`
//! sealed with the pack's random data key (associated data in `blob::aad`). The header is
//! `nonce ‖ seal(count u32 ‖ count × entry) ‖ tag`, with the same key and associated data
//! `"CVPACKHD" ‖ repo_id ‖ version u16 ‖ generation u32` (format 1: `"CVPACKHD" ‖
//! repo_id`, see [`header_aad`]); an entry is `type u8 ‖ codec u8 ‖ domain u32 ‖ raw_len u32 ‖
//! length u32 ‖ id (32)` and blob offsets are implied (blobs are contiguous from 0). The
//! trailer (fixed [`TRAILER_LEN`] bytes) is `key wrap (108) ‖ header_len u32 ‖ version u16
//! ‖ magic "CVPACK\0\x01"`: the data key sealed to the repository's X25519 data key.
//! Invariants: the pack id is BLAKE3 of all its bytes; a reader needs only the trailer,
//! the header and one blob's range to read one blob; entries must tile the blob area
//! exactly, or the pack is `Corrupt`; from format 2 on, every trailer field is
//! authenticated (the key wrap by its seal, the version and generation by the header's
//! associated data, the header length by the tiling); no length read from a pack is
//! trusted for an allocation beyond its per-kind limit ([`MAX_HEADER_LEN`],
//! [`blob::MAX_SEALED_LEN`](crate::blob::MAX_SEALED_LEN)).

pub(crate) mod reader;
mod writer;

pub(crate) use reader::{PackKey, decode_header, open_header, read_trailer};
pub(crate) use writer::{FinishedPack, PackBuilder};

use crate::blob::{BlobType, Codec};
use crate::crypto::aead;
use crate::crypto::wrap::WRAP_LEN;
use crate::format::FormatVersion;
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

/// Associated data of the header of a pack in format `version`, sealed to data key
/// `generation`: `"CVPACKHD" ‖ repo_id`, and from format 2 on `‖ version u16 ‖
/// generation u32`, so that the trailer's version (which says how to read everything
/// else) and generation are authenticated, not only its key wrap.
pub(crate) fn header_aad(repo_id: &RepoId, version: FormatVersion, generation: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(8 + 32 + 2 + 4);
    a.extend_from_slice(b"CVPACKHD");
    a.extend_from_slice(repo_id.as_bytes());
    if version >= FormatVersion::V2 {
        a.extend_from_slice(&version.as_u16().to_le_bytes());
        a.extend_from_slice(&generation.to_le_bytes());
    }
    a
}

/// Smallest possible sealed header (no entries).
pub(crate) const MIN_HEADER_LEN: usize = 4 + aead::OVERHEAD;

/// Largest possible sealed header ([`MAX_BLOBS_PER_PACK`] entries): a trailer claiming
/// more is refused before anything is read or allocated (about 48 MiB).
pub(crate) const MAX_HEADER_LEN: usize = 4 + MAX_BLOBS_PER_PACK * ENTRY_LEN + aead::OVERHEAD;

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
        let header = open_header(hdr, &key, &k.repo, t.generation(), "p")?;
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

    /// Regression: the trailer's version was covered by nothing, so storage could change
    /// it undetected. From format 2 on, the header's associated data carries it.
    #[test]
    fn the_trailers_version_is_authenticated() {
        let k = Keys::new();
        let p = build(&k, &[b"alpha".to_vec()]);
        assert_eq!(read_all(&k, &p.bytes).unwrap(), vec![b"alpha".to_vec()]);
        let version_at = p.bytes.len() - 8 - 2;
        assert_eq!(p.bytes[version_at..version_at + 2], [2, 0]);
        let mut as_v1 = p.bytes.clone();
        as_v1[version_at] = 1;
        let err = read_all(&k, &as_v1).unwrap_err();
        assert!(
            err.to_string().contains("header failed authentication"),
            "{err}"
        );
    }

    /// Regression: a planted trailer could claim a header of up to 4 GiB, which readers
    /// fetched and allocated before anything authenticated it.
    #[test]
    fn a_trailer_claiming_a_4_gib_header_is_refused_before_it_is_read() {
        let k = Keys::new();
        let p = build(&k, &[b"alpha".to_vec()]);
        let mut tail = p.bytes[p.bytes.len() - TRAILER_LEN..].to_vec();
        tail[WRAP_LEN..WRAP_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        // The pack claims to be large enough to hold such a header.
        let err = read_trailer(&tail, 5 << 30, "p").unwrap_err();
        assert!(err.to_string().contains("over the format limit"), "{err}");
        let just_over = (MAX_HEADER_LEN + 1) as u32;
        tail[WRAP_LEN..WRAP_LEN + 4].copy_from_slice(&just_over.to_le_bytes());
        assert!(read_trailer(&tail, 5 << 30, "p").is_err());
        // The largest legal header is accepted by the trailer check.
        let max = MAX_HEADER_LEN as u32;
        tail[WRAP_LEN..WRAP_LEN + 4].copy_from_slice(&max.to_le_bytes());
        let t = read_trailer(&tail, u64::from(max) + 1000, "p").unwrap();
        assert_eq!(t.header_len, max);
        // A blob area of 4 GiB cannot be addressed by u32 offsets.
        assert!(read_trailer(&tail, (4 << 30) + u64::from(max) + TRAILER_LEN as u64, "p").is_err());
    }

    /// Regression: header entries were accepted with any sealed length, so a header (or
    /// an index built from it) could make a reader allocate 4 GiB for one blob.
    #[test]
    fn header_entries_with_impossible_lengths_are_corrupt() {
        let entry = |raw_len: u32, length: u32| {
            let mut b = 1u32.to_le_bytes().to_vec();
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&raw_len.to_le_bytes());
            b.extend_from_slice(&length.to_le_bytes());
            b.extend_from_slice(&[9; 32]);
            b
        };
        let ok = decode_header(&entry(10, 50), 50, "p").unwrap();
        assert_eq!((ok[0].offset, ok[0].length, ok[0].raw_len), (0, 50, 10));
        for (raw, len) in [(10, 51), (10, 39), (0, u32::MAX), (u32::MAX, u32::MAX)] {
            let area = u64::from(len);
            assert!(
                matches!(
                    decode_header(&entry(raw, len), area, "p"),
                    Err(Error::Corrupt { .. })
                ),
                "raw {raw} sealed {len}"
            );
        }
        // The entries must tile the blob area exactly.
        assert!(decode_header(&entry(10, 50), 51, "p").is_err());
        assert!(decode_header(&entry(10, 50), 49, "p").is_err());
        // A count the bytes do not hold.
        let mut short = entry(10, 50);
        short[0] = 2;
        assert!(decode_header(&short, 50, "p").is_err());
        assert!(decode_header(&[], 0, "p").is_err());
        assert!(
            decode_header(&0u32.to_le_bytes(), 0, "p")
                .unwrap()
                .is_empty()
        );
    }

    /// The header's associated data, pinned for both formats (FORMAT.md, section 7.2).
    #[test]
    fn golden_header_aad() {
        let repo = RepoId::from_bytes([0x11; 32]);
        assert_eq!(
            hex::encode(header_aad(&repo, FormatVersion::V1, 7)),
            format!("{}{}", hex::encode(b"CVPACKHD"), "11".repeat(32))
        );
        assert_eq!(
            hex::encode(header_aad(&repo, FormatVersion::V2, 7)),
            format!(
                "{}{}020007000000",
                hex::encode(b"CVPACKHD"),
                "11".repeat(32)
            )
        );
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
