//! The plaintext body of an index segment object (`index/<id>`): the segments it
//! supersedes and a sorted run of [`IndexEntry`]s. Sealing and signing wrap this body
//! elsewhere; this module only fixes its bytes.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic  b"CVIDXSEG"          8 bytes
//! version u16                 1 (origin: the signer) or 2
//! [version 2 only]
//!   origin u8                 1 = carried from another writer, 2 = read from pack headers
//!   [origin 1 only] writer    32-byte public key of the writer who announced the entries
//! supersedes count u32        n
//! supersedes                  n × 32-byte segment ids, strictly increasing
//! entry count u32             m ≤ MAX_ENTRIES_PER_SEGMENT
//! entries                     m × ENCODED_LEN bytes, strictly increasing by blob id
//! ```
//!
//! Invariants:
//! - The encoding is canonical: the same sets give the same bytes, so the same segment
//!   content always has the same id. Decoding accepts exactly what encoding produces
//!   (sorted, no duplicates, counts matching the length exactly, no trailing bytes), so
//!   `encode(decode(b)) == b` for every accepted `b`.
//! - Counts are checked against the input length before anything is allocated: a hostile
//!   count costs nothing. Memory for one segment is bounded by
//!   [`MAX_ENTRIES_PER_SEGMENT`] entries.

use super::IndexEntry;
use super::entry::ENCODED_LEN;
use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::id::SegmentId;

/// The magic that opens every segment body.
const MAGIC: &[u8; 8] = b"CVIDXSEG";

/// The body version of a segment whose entries its signer announces itself.
const VERSION: u16 = 1;
/// The body version that names another origin (a carried or pack-header segment).
const VERSION_ORIGIN: u16 = 2;

/// Bytes before the supersedes list: magic, version, supersedes count.
const HEADER_LEN: usize = 8 + 2 + 4;

/// The most entries one segment may hold (≈ 17 MiB of body). Writers split larger sets
/// (`entries.chunks(MAX_ENTRIES_PER_SEGMENT)`); readers refuse more, which bounds the
/// memory a single hostile segment can make a reader spend.
pub(crate) const MAX_ENTRIES_PER_SEGMENT: usize = 200_000;

/// Who announces a segment's entries. Readers rank copies and writers decide whether to
/// deduplicate against them by the announcing writer, so rewriting a segment (prune, repair)
/// must not turn one writer's announcements into another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The signer wrote (or verified) the blobs these entries locate.
    Signer,
    /// The signer copied these entries from a segment of this writer (prune rewriting a
    /// segment without the packs it deletes). Believed only from keys that read.
    Carried(PublicKey),
    /// The signer read these entries from pack headers (an index rebuild): the packs
    /// authenticate, but nobody vouches that the blobs are what their ids say.
    PackHeaders,
}

/// What an index segment says: the older segments it replaces and its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentBody {
    /// Who announces the entries.
    pub origin: Origin,
    /// Segments whose entries this one repeats (after a rebuild or repack); readers may
    /// ignore those once this one is applied.
    pub supersedes: Vec<SegmentId>,
    /// The entries, in any order here; the encoding sorts them by blob id.
    pub entries: Vec<IndexEntry>,
}

impl SegmentBody {
    /// The canonical body bytes.
    ///
    /// Entries are sorted by blob id; if one blob id appears twice the first occurrence is
    /// kept (the same blob in two packs is harmless, and this matches the cache's
    /// first-writer-wins rule). Superseded ids are sorted and deduplicated.
    ///
    /// Fails with `InvalidArgument` when there are more than
    /// [`MAX_ENTRIES_PER_SEGMENT`] distinct entries or an entry fails
    /// [`IndexEntry::check`], rather than write a segment no reader would accept.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut entries = self.entries.clone();
        // Stable sort, so dedup keeps the first occurrence of each id.
        entries.sort_by_key(|e| e.blob);
        entries.dedup_by(|later, earlier| later.blob == earlier.blob);
        let mut supersedes = self.supersedes.clone();
        supersedes.sort_unstable();
        supersedes.dedup();

        if entries.len() > MAX_ENTRIES_PER_SEGMENT {
            return Err(Error::invalid(
                "index segment",
                format!(
                    "{} entries, at most {MAX_ENTRIES_PER_SEGMENT} per segment",
                    entries.len()
                ),
            ));
        }
        if let Some((e, reason)) = entries.iter().find_map(|e| e.check().err().map(|r| (e, r))) {
            return Err(Error::invalid(
                "index entry",
                format!("{}: {reason}", e.blob),
            ));
        }
        let n_supersedes = u32::try_from(supersedes.len())
            .map_err(|_| Error::invalid("index segment", "too many superseded segments"))?;

        let mut out = Vec::with_capacity(
            HEADER_LEN + 33 + supersedes.len() * 32 + 4 + entries.len() * ENCODED_LEN,
        );
        out.extend_from_slice(MAGIC);
        match self.origin {
            Origin::Signer => out.extend_from_slice(&VERSION.to_le_bytes()),
            Origin::Carried(writer) => {
                out.extend_from_slice(&VERSION_ORIGIN.to_le_bytes());
                out.push(1);
                out.extend_from_slice(writer.as_bytes());
            }
            Origin::PackHeaders => {
                out.extend_from_slice(&VERSION_ORIGIN.to_le_bytes());
                out.push(2);
            }
        }
        out.extend_from_slice(&n_supersedes.to_le_bytes());
        for s in &supersedes {
            out.extend_from_slice(s.as_bytes());
        }
        // Bounded by MAX_ENTRIES_PER_SEGMENT above, so the cast cannot truncate.
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in &entries {
            e.encode_into(&mut out);
        }
        Ok(out)
    }

    /// Decodes a body; `object` names the segment in errors (`index/<hex>`).
    ///
    /// Bad magic, wrong lengths, too many entries, unsorted or duplicate ids and trailing
    /// bytes are `Corrupt`; another version is `UnsupportedFormat`.
    pub(crate) fn decode(bytes: &[u8], object: &str) -> Result<SegmentBody> {
        let corrupt = |reason: &str| Error::corrupt(object, reason);
        let (magic, rest) = split(bytes, 8).ok_or_else(|| corrupt("truncated"))?;
        if magic != MAGIC {
            return Err(corrupt("not an index segment (bad magic)"));
        }
        let (version, rest) = split(rest, 2).ok_or_else(|| corrupt("truncated"))?;
        let version = u16::from_le_bytes([version[0], version[1]]);
        let (origin, rest) = match version {
            VERSION => (Origin::Signer, rest),
            VERSION_ORIGIN => decode_origin(rest).ok_or_else(|| corrupt("bad origin"))?,
            _ => {
                return Err(Error::UnsupportedFormat {
                    object: object.into(),
                    found: version.into(),
                    supported: VERSION_ORIGIN.into(),
                });
            }
        };

        let (n, rest) = read_u32(rest).ok_or_else(|| corrupt("truncated"))?;
        // The list and the entry count that follows must fit in what is left; checked
        // before allocating so a hostile count cannot reserve gigabytes.
        let list_len = (n as usize)
            .checked_mul(32)
            .filter(|&l| l.checked_add(4).is_some_and(|l4| l4 <= rest.len()))
            .ok_or_else(|| corrupt("supersedes count does not match the length"))?;
        let (list, rest) = rest.split_at(list_len);
        let supersedes = decode_supersedes(list, object)?;

        let (m, rest) = read_u32(rest).ok_or_else(|| corrupt("truncated"))?;
        let m = m as usize;
        if m > MAX_ENTRIES_PER_SEGMENT {
            return Err(corrupt("too many entries for one segment"));
        }
        // m ≤ MAX_ENTRIES_PER_SEGMENT, so this product cannot overflow.
        let expected = m * ENCODED_LEN;
        if rest.len() < expected {
            return Err(corrupt("entry count does not match the length"));
        }
        if rest.len() > expected {
            return Err(corrupt("trailing bytes after the last entry"));
        }
        let entries = decode_entries(rest, m, object)?;
        Ok(SegmentBody {
            origin,
            supersedes,
            entries,
        })
    }
}

/// The origin of a version-2 body: 1 and a writer key, or 2. (Version 1 is the signer's
/// own, so a version-2 body never names the signer: the encoding stays canonical.)
fn decode_origin(b: &[u8]) -> Option<(Origin, &[u8])> {
    let (kind, rest) = split(b, 1)?;
    match kind[0] {
        1 => {
            let (key, rest) = split(rest, 32)?;
            let key: [u8; 32] = key.try_into().ok()?;
            Some((Origin::Carried(PublicKey::from_bytes(key)), rest))
        }
        2 => Some((Origin::PackHeaders, rest)),
        _ => None,
    }
}

/// Splits off the first `n` bytes, or `None` when there are fewer.
fn split(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

fn read_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = split(b, 4)?;
    Some((
        u32::from_le_bytes([head[0], head[1], head[2], head[3]]),
        rest,
    ))
}

/// `list` is a whole number of 32-byte ids (the caller sized it).
fn decode_supersedes(list: &[u8], object: &str) -> Result<Vec<SegmentId>> {
    let mut out: Vec<SegmentId> = Vec::with_capacity(list.len() / 32);
    for chunk in list.chunks_exact(32) {
        let id = SegmentId::from_slice(chunk).ok_or_else(|| Error::corrupt(object, "truncated"))?;
        if out.last().is_some_and(|prev| *prev >= id) {
            return Err(Error::corrupt(
                object,
                "superseded segment ids are not strictly increasing",
            ));
        }
        out.push(id);
    }
    Ok(out)
}

/// `body` is exactly `m` encoded entries (the caller checked the length).
fn decode_entries(body: &[u8], m: usize, object: &str) -> Result<Vec<IndexEntry>> {
    let mut out: Vec<IndexEntry> = Vec::with_capacity(m);
    for chunk in body.chunks_exact(ENCODED_LEN) {
        let e = IndexEntry::decode(chunk, object)?;
        if let Some(prev) = out.last() {
            if prev.blob == e.blob {
                return Err(Error::corrupt(object, "duplicate blob id"));
            }
            if prev.blob > e.blob {
                return Err(Error::corrupt(object, "entries are not sorted by blob id"));
            }
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobType, Codec};
    use crate::id::{BlobId, PackId};
    use crate::index::entry::tests::{arb_entry, sample};
    use proptest::prelude::*;

    const OBJ: &str = "index/test";

    fn golden_body() -> SegmentBody {
        let a = IndexEntry {
            blob: BlobId::from_bytes([0x11; 32]),
            pack: PackId::from_bytes([0xa1; 32]),
            offset: 0,
            length: 1_064,
            raw_len: 1_024,
            blob_type: BlobType::Data,
            codec: Codec::Raw,
            domain: 0,
            generation: 0,
        };
        let b = IndexEntry {
            blob: BlobId::from_bytes([0x22; 32]),
            pack: PackId::from_bytes([0xb2; 32]),
            offset: 0x0001_0000,
            length: 0x0203,
            raw_len: 0x0004_0506,
            blob_type: BlobType::Tree,
            codec: Codec::Zstd,
            domain: 0x0708_090a,
            generation: 3,
        };
        SegmentBody {
            origin: Origin::Signer,
            supersedes: vec![SegmentId::from_bytes([0x5e; 32])],
            // Out of order on purpose: encode sorts.
            entries: vec![b, a],
        }
    }

    const GOLDEN_HEX: &str = concat!(
        "4356494458534547", // b"CVIDXSEG"
        "0100",             // version 1
        "01000000",         // one superseded segment
        "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e",
        "02000000", // two entries
        // entry a
        "1111111111111111111111111111111111111111111111111111111111111111",
        "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "00000000",
        "28040000",
        "00040000",
        "00",
        "00",
        "00000000",
        "00000000",
        // entry b
        "2222222222222222222222222222222222222222222222222222222222222222",
        "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
        "00000100",
        "03020000",
        "06050400",
        "01",
        "01",
        "0a090807",
        "03000000",
    );

    #[test]
    fn golden_vector() {
        let bytes = golden_body().encode().unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_HEX);
        let back = SegmentBody::decode(&bytes, OBJ).unwrap();
        assert_eq!(back.entries[0], golden_body().entries[1]);
        assert_eq!(back.entries[1], golden_body().entries[0]);
        assert_eq!(back.supersedes, golden_body().supersedes);
    }

    /// Version 2 names the origin of entries that the signer did not announce itself.
    #[test]
    fn golden_vector_of_a_carried_and_a_pack_header_segment() {
        let mut body = golden_body();
        body.origin = Origin::Carried(PublicKey::from_bytes([0xc4; 32]));
        let bytes = body.encode().unwrap();
        let v1 = golden_body().encode().unwrap();
        let mut expected = b"CVIDXSEG\x02\x00\x01".to_vec();
        expected.extend_from_slice(&[0xc4; 32]);
        expected.extend_from_slice(&v1[10..]);
        assert_eq!(hex::encode(&bytes), hex::encode(&expected));
        assert_eq!(
            SegmentBody::decode(&bytes, OBJ).unwrap().origin,
            body.origin
        );

        body.origin = Origin::PackHeaders;
        let bytes = body.encode().unwrap();
        assert_eq!(&bytes[..11], b"CVIDXSEG\x02\x00\x02");
        assert_eq!(&bytes[11..], &v1[10..]);
        assert_eq!(
            SegmentBody::decode(&bytes, OBJ).unwrap().origin,
            Origin::PackHeaders
        );
        // A version-2 body must name another origin (kind 0 would duplicate version 1),
        // and a carried origin needs its whole key.
        let mut bad = bytes.clone();
        bad[10] = 0;
        assert_corrupt(&bad, "bad origin");
        let mut short = b"CVIDXSEG\x02\x00\x01".to_vec();
        short.extend_from_slice(&[1; 20]);
        assert_corrupt(&short, "bad origin");
    }

    fn encoded_sample(n: u8) -> Vec<u8> {
        SegmentBody {
            origin: Origin::Signer,
            supersedes: vec![
                SegmentId::from_bytes([0x01; 32]),
                SegmentId::from_bytes([0x02; 32]),
            ],
            entries: (1..=n).map(sample).collect(),
        }
        .encode()
        .unwrap()
    }

    fn assert_corrupt(bytes: &[u8], reason_part: &str) {
        match SegmentBody::decode(bytes, OBJ) {
            Err(Error::Corrupt { object, reason }) => {
                assert_eq!(object.as_str(), OBJ);
                assert!(
                    reason.contains(reason_part),
                    "{reason:?} lacks {reason_part:?}"
                );
            }
            other => panic!("expected Corrupt({reason_part}), got {other:?}"),
        }
    }

    /// Offset of the entry count in `encoded_sample` (two superseded ids).
    const ENTRY_COUNT_AT: usize = HEADER_LEN + 64;

    #[test]
    fn truncation_at_every_length_is_corrupt() {
        let bytes = encoded_sample(3);
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    SegmentBody::decode(&bytes[..n], OBJ),
                    Err(Error::Corrupt { .. })
                ),
                "prefix of {n} bytes"
            );
        }
        assert!(SegmentBody::decode(&bytes, OBJ).is_ok());
    }

    #[test]
    fn wrong_magic_is_corrupt() {
        let mut bytes = encoded_sample(1);
        bytes[0] ^= 0x20;
        assert_corrupt(&bytes, "magic");
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let mut bytes = encoded_sample(1);
        bytes[8..10].copy_from_slice(&3u16.to_le_bytes());
        match SegmentBody::decode(&bytes, OBJ) {
            Err(Error::UnsupportedFormat {
                object,
                found: 3,
                supported: 2,
            }) => assert_eq!(object.as_str(), OBJ),
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        let mut bytes = encoded_sample(2);
        bytes[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_corrupt(&bytes, "supersedes count");
        let mut bytes = encoded_sample(2);
        bytes[ENTRY_COUNT_AT..ENTRY_COUNT_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_corrupt(&bytes, "too many entries");
        let mut bytes = encoded_sample(2);
        bytes[ENTRY_COUNT_AT..ENTRY_COUNT_AT + 4].copy_from_slice(&3u32.to_le_bytes());
        assert_corrupt(&bytes, "entry count does not match");
    }

    #[test]
    fn more_than_max_entries_is_refused_even_when_the_length_matches() {
        let n = MAX_ENTRIES_PER_SEGMENT + 1;
        let mut bytes = Vec::with_capacity(HEADER_LEN + 4 + n * ENCODED_LEN);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(n as u32).to_le_bytes());
        for i in 0..n as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let mut e = sample(1);
            e.blob = BlobId::from_bytes(id);
            e.encode_into(&mut bytes);
        }
        assert_corrupt(&bytes, "too many entries");
    }

    #[test]
    fn unsorted_and_duplicate_entries_are_corrupt() {
        let bytes = encoded_sample(2);
        let first = ENTRY_COUNT_AT + 4;
        let second = first + ENCODED_LEN;
        let mut swapped = bytes.clone();
        swapped[first..second].copy_from_slice(&bytes[second..]);
        swapped[second..].copy_from_slice(&bytes[first..second]);
        assert_corrupt(&swapped, "not sorted");
        let mut dup = bytes.clone();
        dup[second..second + 32].copy_from_slice(&bytes[first..first + 32]);
        assert_corrupt(&dup, "duplicate");
    }

    #[test]
    fn unsorted_and_duplicate_supersedes_are_corrupt() {
        let bytes = encoded_sample(1);
        let mut swapped = bytes.clone();
        swapped[HEADER_LEN..HEADER_LEN + 32].fill(0x02);
        swapped[HEADER_LEN + 32..HEADER_LEN + 64].fill(0x01);
        assert_corrupt(&swapped, "superseded");
        let mut dup = bytes.clone();
        dup[HEADER_LEN + 32..HEADER_LEN + 64].fill(0x01);
        assert_corrupt(&dup, "superseded");
    }

    #[test]
    fn trailing_byte_is_corrupt() {
        let mut bytes = encoded_sample(2);
        bytes.push(0);
        assert_corrupt(&bytes, "trailing");
    }

    #[test]
    fn bad_entry_fields_are_corrupt() {
        let bytes = encoded_sample(1);
        let type_at = ENTRY_COUNT_AT + 4 + 32 + 44;
        let mut bad = bytes.clone();
        bad[type_at] = 0xff;
        assert_corrupt(&bad, "blob type");
        let mut bad = bytes.clone();
        bad[type_at + 1] = 0xff;
        assert_corrupt(&bad, "codec");
        let mut bad = bytes;
        // offset = u32::MAX with a non-zero length overflows.
        bad[ENTRY_COUNT_AT + 4 + 64..ENTRY_COUNT_AT + 4 + 68].fill(0xff);
        assert_corrupt(&bad, "4 GiB");
    }

    #[test]
    fn encode_sorts_and_keeps_the_first_duplicate() {
        let first = sample(5);
        let mut second = sample(5);
        second.offset = 99;
        let body = SegmentBody {
            origin: Origin::Signer,
            supersedes: vec![
                SegmentId::from_bytes([9; 32]),
                SegmentId::from_bytes([9; 32]),
            ],
            entries: vec![sample(7), first, sample(2), second],
        };
        let back = SegmentBody::decode(&body.encode().unwrap(), OBJ).unwrap();
        assert_eq!(back.entries, vec![sample(2), first, sample(7)]);
        assert_eq!(back.supersedes, vec![SegmentId::from_bytes([9; 32])]);
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        let mut bad = sample(1);
        bad.offset = u32::MAX;
        let body = SegmentBody {
            origin: Origin::Signer,
            supersedes: vec![],
            entries: vec![bad],
        };
        assert!(matches!(body.encode(), Err(Error::InvalidArgument { .. })));

        let entries = (0..=MAX_ENTRIES_PER_SEGMENT as u32)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_le_bytes());
                IndexEntry {
                    blob: BlobId::from_bytes(id),
                    ..sample(1)
                }
            })
            .collect();
        let body = SegmentBody {
            origin: Origin::Signer,
            supersedes: vec![],
            entries,
        };
        assert!(matches!(body.encode(), Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn empty_body_round_trips() {
        let body = SegmentBody {
            origin: Origin::Signer,
            supersedes: vec![],
            entries: vec![],
        };
        let bytes = body.encode().unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 4);
        assert_eq!(SegmentBody::decode(&bytes, OBJ).unwrap(), body);
    }

    fn arb_body() -> impl Strategy<Value = SegmentBody> {
        (
            proptest::collection::vec(any::<[u8; 32]>(), 0..4),
            proptest::collection::vec(arb_entry(), 0..40),
        )
            .prop_map(|(s, entries)| SegmentBody {
                origin: match s.len() % 3 {
                    0 => Origin::Signer,
                    1 => Origin::Carried(PublicKey::from_bytes([s.len() as u8; 32])),
                    _ => Origin::PackHeaders,
                },
                supersedes: s.into_iter().map(SegmentId::from_bytes).collect(),
                entries,
            })
    }

    /// What `decode(encode(body))` must give: the canonical form of `body`.
    fn canonical(mut body: SegmentBody) -> SegmentBody {
        body.entries.sort_by_key(|e| e.blob);
        body.entries.dedup_by(|l, e| l.blob == e.blob);
        body.supersedes.sort_unstable();
        body.supersedes.dedup();
        body
    }

    proptest! {
        #[test]
        fn segment_round_trip(body in arb_body()) {
            let bytes = body.encode().unwrap();
            let back = SegmentBody::decode(&bytes, OBJ).unwrap();
            prop_assert_eq!(back.encode().unwrap(), bytes);
            prop_assert_eq!(back, canonical(body));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SegmentBody::decode(&bytes, OBJ);
            // Also past the magic and version, where the counts are read.
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&VERSION.to_le_bytes());
            framed.extend_from_slice(&bytes);
            if let Ok(body) = SegmentBody::decode(&framed, OBJ) {
                prop_assert_eq!(body.encode().unwrap(), framed);
            }
        }

        #[test]
        fn mutated_bodies_are_refused_or_canonical(
            body in arb_body(),
            at in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            let mut bytes = body.encode().unwrap();
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
            if let Ok(back) = SegmentBody::decode(&bytes, OBJ) {
                // Whatever is accepted re-encodes to the same bytes: no second spelling.
                prop_assert_eq!(back.encode().unwrap(), bytes);
            }
        }
    }
}
