//! One index entry: where a blob lives (pack, offset, sealed length) and what is needed to
//! open it (type, codec, raw length, key domain and generation), in a fixed-width encoding.
//!
//! Invariants:
//! - The full encoding is exactly [`ENCODED_LEN`] bytes and the value-only encoding (the
//!   same fields without the blob id, used as the cache's value) exactly [`VALUE_LEN`];
//!   integers are little-endian.
//! - Decoding accepts only what encoding could produce from a valid entry: known type and
//!   codec bytes, `offset + length` within `u32` (a pack is at most 4 GiB), a raw length
//!   within [`MAX_BLOB_SIZE`](crate::MAX_BLOB_SIZE), and a sealed length possible for that raw length
//!   ([`blob::check_sealed_len`]), so a reader never allocates more than
//!   [`blob::MAX_SEALED_LEN`](crate::blob::MAX_SEALED_LEN) for an entry. Anything else is
//!   `Corrupt`, never a panic.

use crate::blob::{self, BlobMeta, BlobType, Codec};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};

/// Length of an encoded entry: blob id, then the value encoding.
pub(crate) const ENCODED_LEN: usize = 32 + VALUE_LEN;

/// Length of the value-only encoding: pack id (32), offset, length, raw length (u32 each),
/// type and codec (u8 each), domain and generation (u32 each).
pub(crate) const VALUE_LEN: usize = 32 + 4 + 4 + 4 + 1 + 1 + 4 + 4;

/// Where a blob is stored and how to open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// The blob's id.
    pub blob: BlobId,
    /// The pack holding it.
    pub pack: PackId,
    /// Byte offset of the sealed blob inside the pack.
    pub offset: u32,
    /// Sealed length in the pack (nonce, ciphertext and tag).
    pub length: u32,
    /// Plaintext length, checked again when the blob is opened.
    pub raw_len: u32,
    /// What the blob holds (part of its id and its associated data).
    pub blob_type: BlobType,
    /// How the plaintext was stored before sealing.
    pub codec: Codec,
    /// Key domain (0 = the repository default).
    pub domain: u32,
    /// Generation of the data key pair the pack was sealed under.
    pub generation: u32,
}

impl IndexEntry {
    /// What a reader needs to open the blob this entry locates (its sealing's associated
    /// data).
    pub(crate) fn blob_meta(&self) -> BlobMeta {
        BlobMeta {
            id: self.blob,
            blob_type: self.blob_type,
            codec: self.codec,
            raw_len: self.raw_len,
            domain: self.domain,
            generation: self.generation,
        }
    }

    /// Appends the full encoding (`blob id ‖ value`) to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.blob.as_bytes());
        out.extend_from_slice(&self.encode_value());
    }

    /// The value-only encoding (everything but the blob id), for stores keyed by blob id.
    pub(crate) fn encode_value(&self) -> [u8; VALUE_LEN] {
        let mut v = [0u8; VALUE_LEN];
        let mut w = Writer {
            buf: &mut v,
            pos: 0,
        };
        w.put(self.pack.as_bytes());
        w.put(&self.offset.to_le_bytes());
        w.put(&self.length.to_le_bytes());
        w.put(&self.raw_len.to_le_bytes());
        w.put(&[self.blob_type as u8, self.codec as u8]);
        w.put(&self.domain.to_le_bytes());
        w.put(&self.generation.to_le_bytes());
        debug_assert_eq!(w.pos, VALUE_LEN);
        v
    }

    /// Decodes exactly [`ENCODED_LEN`] bytes; `object` names the container in errors.
    pub(crate) fn decode(b: &[u8], object: &str) -> Result<Self> {
        if b.len() != ENCODED_LEN {
            return Err(Error::corrupt(object, "index entry has the wrong length"));
        }
        let (id, value) = b.split_at(32);
        let blob = BlobId::from_slice(id).ok_or_else(|| Error::corrupt(object, "truncated"))?;
        Self::decode_value(blob, value, object)
    }

    /// Decodes the value-only encoding of the entry for `blob`.
    pub(crate) fn decode_value(blob: BlobId, b: &[u8], object: &str) -> Result<Self> {
        let b: &[u8; VALUE_LEN] = b
            .try_into()
            .map_err(|_| Error::corrupt(object, "index entry value has the wrong length"))?;
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let pack =
            PackId::from_slice(&b[..32]).ok_or_else(|| Error::corrupt(object, "truncated"))?;
        let entry = IndexEntry {
            blob,
            pack,
            offset: u32_at(32),
            length: u32_at(36),
            raw_len: u32_at(40),
            blob_type: BlobType::from_u8(b[44])
                .ok_or_else(|| Error::corrupt(object, format!("unknown blob type {}", b[44])))?,
            codec: Codec::from_u8(b[45])
                .ok_or_else(|| Error::corrupt(object, format!("unknown codec {}", b[45])))?,
            domain: u32_at(46),
            generation: u32_at(50),
        };
        entry
            .check()
            .map_err(|reason| Error::corrupt(object, reason))?;
        Ok(entry)
    }

    /// The range checks decoding applies; writers call it too so they never produce an
    /// entry that readers refuse.
    pub(crate) fn check(&self) -> std::result::Result<(), &'static str> {
        if self.offset.checked_add(self.length).is_none() {
            return Err("index entry reaches past 4 GiB in its pack");
        }
        blob::check_sealed_len(self.raw_len, self.length)
    }
}

/// A bounds-known cursor for filling a fixed-size array (lengths are constants above, so
/// a mismatch is a bug caught by the debug assertion and the golden vectors).
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any entry that passes [`IndexEntry::check`].
    pub(crate) fn arb_entry() -> impl Strategy<Value = IndexEntry> {
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<u32>(),
            any::<u32>(),
            0..=crate::blob::MAX_BLOB_SIZE as u32,
            prop_oneof![Just(BlobType::Data), Just(BlobType::Tree)],
            prop_oneof![Just(Codec::Raw), Just(Codec::Zstd)],
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(blob, pack, offset, len, raw_len, blob_type, codec, domain, generation)| {
                    // A payload no longer than the plaintext, sealed.
                    let length = 40 + len % (raw_len + 1);
                    IndexEntry {
                        blob: BlobId::from_bytes(blob),
                        pack: PackId::from_bytes(pack),
                        // Keeps offset + length within u32, as a real pack would.
                        offset: offset.min(u32::MAX - length),
                        length,
                        raw_len,
                        blob_type,
                        codec,
                        domain,
                        generation,
                    }
                },
            )
    }

    pub(crate) fn sample(n: u8) -> IndexEntry {
        IndexEntry {
            blob: BlobId::from_bytes([n; 32]),
            pack: PackId::from_bytes([n.wrapping_add(0x80); 32]),
            offset: 0x0102_0304,
            length: 0x0000_1000,
            raw_len: 0x0000_2000,
            blob_type: BlobType::Tree,
            codec: Codec::Zstd,
            domain: 7,
            generation: 2,
        }
    }

    proptest! {
        #[test]
        fn entry_round_trip(e in arb_entry()) {
            let mut out = Vec::new();
            e.encode_into(&mut out);
            prop_assert_eq!(out.len(), ENCODED_LEN);
            prop_assert_eq!(IndexEntry::decode(&out, "t").unwrap(), e);
            let v = e.encode_value();
            prop_assert_eq!(&out[32..], &v[..]);
            prop_assert_eq!(IndexEntry::decode_value(e.blob, &v, "t").unwrap(), e);
        }

        #[test]
        fn entry_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = IndexEntry::decode(&bytes, "t");
            let _ = IndexEntry::decode_value(BlobId::from_bytes([0; 32]), &bytes, "t");
        }
    }

    #[test]
    fn value_golden_vector() {
        assert_eq!(
            hex::encode(sample(1).encode_value()),
            concat!(
                "8181818181818181818181818181818181818181818181818181818181818181",
                "04030201",
                "00100000",
                "00200000",
                "01",
                "01",
                "07000000",
                "02000000",
            )
        );
    }

    fn corrupt_reason(r: Result<IndexEntry>) -> String {
        match r {
            Err(Error::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn unknown_type_and_codec_are_corrupt() {
        let mut v = sample(1).encode_value();
        v[44] = 9;
        let r = corrupt_reason(IndexEntry::decode_value(sample(1).blob, &v, "t"));
        assert!(r.contains("blob type"), "{r}");
        let mut v = sample(1).encode_value();
        v[45] = 2;
        let r = corrupt_reason(IndexEntry::decode_value(sample(1).blob, &v, "t"));
        assert!(r.contains("codec"), "{r}");
    }

    #[test]
    fn out_of_range_fields_are_corrupt() {
        let mut e = sample(1);
        e.offset = u32::MAX - 50;
        e.length = 51;
        let r = corrupt_reason(IndexEntry::decode_value(e.blob, &e.encode_value(), "t"));
        assert!(r.contains("4 GiB"), "{r}");
        // Exactly reaching u32::MAX is still a valid pack position.
        e.length = 50;
        assert!(IndexEntry::decode_value(e.blob, &e.encode_value(), "t").is_ok());

        let mut e = sample(1);
        e.raw_len = crate::blob::MAX_BLOB_SIZE as u32 + 1;
        let r = corrupt_reason(IndexEntry::decode_value(e.blob, &e.encode_value(), "t"));
        assert!(r.contains("raw length"), "{r}");
    }

    /// Regression: an entry's sealed length was only checked to fit in its pack, so a
    /// planted entry made every read of its blob allocate up to 4 GiB before the range
    /// was fetched (and found past the pack's end).
    #[test]
    fn a_sealed_length_beyond_the_raw_length_is_corrupt() {
        let mut e = sample(1);
        e.offset = 0;
        e.raw_len = 100;
        e.length = u32::MAX;
        let r = corrupt_reason(IndexEntry::decode_value(e.blob, &e.encode_value(), "t"));
        assert!(r.contains("longer than its plaintext"), "{r}");
        e.length = 141;
        corrupt_reason(IndexEntry::decode_value(e.blob, &e.encode_value(), "t"));
        e.length = 39;
        let r = corrupt_reason(IndexEntry::decode_value(e.blob, &e.encode_value(), "t"));
        assert!(r.contains("shorter than its seal"), "{r}");
        for ok in [40, 100, 140] {
            e.length = ok;
            assert!(IndexEntry::decode_value(e.blob, &e.encode_value(), "t").is_ok());
        }
    }

    #[test]
    fn wrong_lengths_are_corrupt() {
        let mut full = Vec::new();
        sample(3).encode_into(&mut full);
        for n in [0, 1, ENCODED_LEN - 1] {
            corrupt_reason(IndexEntry::decode(&full[..n], "t"));
        }
        full.push(0);
        corrupt_reason(IndexEntry::decode(&full, "t"));
        corrupt_reason(IndexEntry::decode_value(sample(3).blob, &full[32..], "t"));
    }
}
