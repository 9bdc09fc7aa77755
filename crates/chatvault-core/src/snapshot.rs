//! Snapshot records: what one backup run stored, where its tree starts, and where each
//! source stream stood when it was taken.
//!
//! A record is plain data; sealing it and signing it with the writer's key happen where
//! snapshots are stored. [`Snapshot`] is a record as loaded, with its id and verified writer.
//!
//! # Encoding (docs/FORMAT.md, "Snapshot records")
//!
//! A CBOR map with small integer keys, in the same CBOR subset as trees (definite lengths,
//! shortest integer heads, keys ascending, absent/empty fields omitted):
//!
//! | key | field                  | value                                       | when absent   |
//! |-----|------------------------|---------------------------------------------|---------------|
//! | 0   | version                | unsigned, `1`                               | never         |
//! | 1   | time_unix_ms           | integer (may be negative)                   | never         |
//! | 2   | host                   | text                                        | empty         |
//! | 3   | tags                   | array of text, in the record's order        | empty         |
//! | 4   | source_kind            | text                                        | empty         |
//! | 5   | paths                  | array of text, in the record's order        | empty         |
//! | 6   | parent                 | byte string, 32-byte snapshot id            | `None`        |
//! | 7   | kind                   | unsigned: 0 = full, 1 = incremental         | never         |
//! | 8   | root                   | byte string, 32-byte blob id of the tree    | never         |
//! | 9   | summary                | map, below                                  | never         |
//! | 10  | cursors                | map text → byte string, keys ascending by   | empty         |
//! |     |                        | bytes, no key twice                         |               |
//! | 11  | writer_seq             | unsigned                                    | never         |
//! | 12  | prev_writer_snapshot   | byte string, 32-byte snapshot id            | `None`        |
//! | 13  | origin                 | map, below (a copy's source snapshot)       | `None`        |
//!
//! Summary map (every counter always written, zero included): 0 files, 1 bytes_read,
//! 2 bytes_added, 3 blobs_added, 4 duration_ms, 5 errors; all unsigned.
//!
//! Origin map (both always written): 0 repository id, 1 snapshot id, each a 32-byte byte
//! string: the snapshot of another repository this one is a copy of (`chatvault copy`).
//! Added after format 2 was first written; a reader that predates it skips key 13, and a
//! record without it reads as `None`, so no version changes.
//!
//! Cursor keys are ordered by their UTF-8 bytes (the order of `BTreeMap<String, _>`), not by
//! RFC 8949's length-first order: what matters is that one record has one encoding.
//!
//! Invariants:
//! - Canonical: the same record always encodes to the same bytes, so its id and signature
//!   are stable.
//! - Fields marked "never" absent are required when decoding: a record missing one is
//!   corrupt rather than silently read as zero, since a wrong root or sequence number would
//!   be wrong data. Unknown keys are skipped; an unknown version is refused before
//!   anything else is read.
//! - Decoding never panics and pre-allocates no more than the input can hold.

use std::collections::BTreeMap;

use crate::cbor::{Reader, Writer};
use crate::crypto::sign::PublicKey;
use crate::error::Result;
use crate::id::{BlobId, RepoId, SnapshotId};

/// The snapshot record encoding version this build writes and reads.
const RECORD_VERSION: u32 = 1;

/// Smallest encoding of a text or byte string (an empty one), for bounding array and map
/// lengths by the input.
const MIN_ITEM_LEN: usize = 1;

/// Whether a snapshot re-read and verified every source, or only appended what was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Every source was re-read and checked against the stored chunk ids.
    Full,
    /// Only what changed since the parent was read and stored.
    Incremental,
}

impl SnapshotKind {
    /// `full` or `incremental`, as reports and listings name it.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Full => "full",
            SnapshotKind::Incremental => "incremental",
        }
    }

    fn to_u64(self) -> u64 {
        match self {
            SnapshotKind::Full => 0,
            SnapshotKind::Incremental => 1,
        }
    }

    fn from_u64(n: u64) -> Option<Self> {
        match n {
            0 => Some(SnapshotKind::Full),
            1 => Some(SnapshotKind::Incremental),
            _ => None,
        }
    }
}

/// What a backup run did, for listings and monitoring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Entries (files, streams) visited.
    pub files: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Plaintext bytes of the blobs this run added to the repository.
    pub bytes_added: u64,
    /// Blobs this run added (the rest were deduplicated).
    pub blobs_added: u64,
    /// Wall-clock duration of the run.
    pub duration_ms: u64,
    /// Entries that could not be read and are missing from the snapshot.
    pub errors: u64,
}

/// The immutable record of one snapshot, as its writer signs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub time_unix_ms: i64,
    /// The host it was taken on (checked against the writer's scope).
    pub host: String,
    /// Free-form labels for selecting snapshots.
    pub tags: Vec<String>,
    /// What the frontend backed up (e.g. a chat server's name), for selecting parents.
    pub source_kind: String,
    /// The source paths or names given to the run.
    pub paths: Vec<String>,
    /// The snapshot this one was compared against, if any.
    pub parent: Option<SnapshotId>,
    /// Full or incremental.
    pub kind: SnapshotKind,
    /// The root tree.
    pub root: BlobId,
    /// What the run did.
    pub summary: Summary,
    /// Where each source stream stood (opaque, frontend-defined positions), so the next
    /// incremental run starts from there.
    pub cursors: BTreeMap<String, Vec<u8>>,
    /// The writer's own sequence number, increasing with every object the writer signs, so
    /// a revocation can keep trusting what a key signed before it was compromised.
    pub writer_seq: u64,
    /// The writer's previous snapshot, so a withheld or reordered snapshot is noticed.
    pub prev_writer_snapshot: Option<SnapshotId>,
    /// The snapshot of another repository this one was copied from, if it is a copy.
    pub origin: Option<SnapshotOrigin>,
}

/// Where a copied snapshot came from: the source repository and snapshot, so a copy run
/// can tell what it has copied already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotOrigin {
    /// The source repository's id.
    pub repo: RepoId,
    /// The snapshot's id in the source repository.
    pub snapshot: SnapshotId,
}

/// A snapshot as loaded from the repository: its id, the writer whose signature was
/// verified, and its record.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The snapshot object's id.
    pub id: SnapshotId,
    /// The writer that signed it.
    pub writer: PublicKey,
    /// Its content.
    pub record: SnapshotRecord,
}

impl SnapshotRecord {
    /// The canonical encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(RECORD_VERSION.into()));
            f.field(1, |w| w.int(self.time_unix_ms));
            if !self.host.is_empty() {
                f.field(2, |w| w.text(&self.host));
            }
            if !self.tags.is_empty() {
                f.field(3, |w| encode_texts(w, &self.tags));
            }
            if !self.source_kind.is_empty() {
                f.field(4, |w| w.text(&self.source_kind));
            }
            if !self.paths.is_empty() {
                f.field(5, |w| encode_texts(w, &self.paths));
            }
            if let Some(parent) = &self.parent {
                f.field(6, |w| w.bytes(parent.as_bytes()));
            }
            f.field(7, |w| w.uint(self.kind.to_u64()));
            f.field(8, |w| w.bytes(self.root.as_bytes()));
            f.field(9, |w| encode_summary(w, &self.summary));
            if !self.cursors.is_empty() {
                f.field(10, |w| encode_cursors(w, &self.cursors));
            }
            f.field(11, |w| w.uint(self.writer_seq));
            if let Some(prev) = &self.prev_writer_snapshot {
                f.field(12, |w| w.bytes(prev.as_bytes()));
            }
            if let Some(origin) = &self.origin {
                f.field(13, |w| encode_origin(w, origin));
            }
        });
        w.into_bytes()
    }

    /// Decodes a record; `object` names it in errors.
    ///
    /// Fails with [`crate::error::Error::UnsupportedFormat`] for an unknown version and
    /// [`crate::error::Error::Corrupt`] for anything else that is not a valid record.
    pub fn decode(bytes: &[u8], object: &str) -> Result<SnapshotRecord> {
        let mut r = Reader::new(bytes, object);
        let mut fields = r.fields()?;
        r.version(&mut fields, RECORD_VERSION)?;
        let mut p = Partial::default();
        while let Some(key) = fields.next_key(&mut r)? {
            match key {
                1 => p.time_unix_ms = Some(r.i64("time")?),
                2 => p.host = r.text("host")?.to_owned(),
                3 => p.tags = decode_texts(&mut r, "tags")?,
                4 => p.source_kind = r.text("source kind")?.to_owned(),
                5 => p.paths = decode_texts(&mut r, "paths")?,
                6 => p.parent = Some(SnapshotId::from_bytes(r.id("parent")?)),
                7 => p.kind = Some(decode_kind(&mut r)?),
                8 => p.root = Some(BlobId::from_bytes(r.id("root")?)),
                9 => p.summary = Some(decode_summary(&mut r)?),
                10 => p.cursors = decode_cursors(&mut r)?,
                11 => p.writer_seq = Some(r.u64("writer sequence")?),
                12 => p.prev_writer = Some(SnapshotId::from_bytes(r.id("previous snapshot")?)),
                13 => p.origin = Some(decode_origin(&mut r)?),
                _ => r.skip()?,
            }
        }
        r.finish()?;
        p.build(&r)
    }
}

/// A record being decoded: required fields stay `None` until seen.
#[derive(Default)]
struct Partial {
    time_unix_ms: Option<i64>,
    host: String,
    tags: Vec<String>,
    source_kind: String,
    paths: Vec<String>,
    parent: Option<SnapshotId>,
    kind: Option<SnapshotKind>,
    root: Option<BlobId>,
    summary: Option<Summary>,
    cursors: BTreeMap<String, Vec<u8>>,
    writer_seq: Option<u64>,
    prev_writer: Option<SnapshotId>,
    origin: Option<SnapshotOrigin>,
}

impl Partial {
    fn build(self, r: &Reader<'_>) -> Result<SnapshotRecord> {
        let missing = |field: &str| r.corrupt(format!("snapshot record without {field}"));
        Ok(SnapshotRecord {
            time_unix_ms: self.time_unix_ms.ok_or_else(|| missing("a time"))?,
            host: self.host,
            tags: self.tags,
            source_kind: self.source_kind,
            paths: self.paths,
            parent: self.parent,
            kind: self.kind.ok_or_else(|| missing("a kind"))?,
            root: self.root.ok_or_else(|| missing("a root tree"))?,
            summary: self.summary.ok_or_else(|| missing("a summary"))?,
            cursors: self.cursors,
            writer_seq: self
                .writer_seq
                .ok_or_else(|| missing("a writer sequence"))?,
            prev_writer_snapshot: self.prev_writer,
            origin: self.origin,
        })
    }
}

fn encode_texts(w: &mut Writer, texts: &[String]) {
    w.array_head(texts.len());
    for t in texts {
        w.text(t);
    }
}

fn decode_texts(r: &mut Reader<'_>, what: &str) -> Result<Vec<String>> {
    let n = r.array_len(MIN_ITEM_LEN, what)?;
    let mut texts = Vec::with_capacity(n);
    for _ in 0..n {
        texts.push(r.text(what)?.to_owned());
    }
    Ok(texts)
}

fn decode_kind(r: &mut Reader<'_>) -> Result<SnapshotKind> {
    let n = r.u64("snapshot kind")?;
    SnapshotKind::from_u64(n).ok_or_else(|| r.corrupt(format!("unknown snapshot kind {n}")))
}

fn encode_summary(w: &mut Writer, s: &Summary) {
    w.fields(|f| {
        f.field(0, |w| w.uint(s.files));
        f.field(1, |w| w.uint(s.bytes_read));
        f.field(2, |w| w.uint(s.bytes_added));
        f.field(3, |w| w.uint(s.blobs_added));
        f.field(4, |w| w.uint(s.duration_ms));
        f.field(5, |w| w.uint(s.errors));
    });
}

fn decode_summary(r: &mut Reader<'_>) -> Result<Summary> {
    let mut fields = r.fields()?;
    let mut counters = [None; 6];
    while let Some(key) = fields.next_key(r)? {
        match usize::try_from(key).ok().and_then(|k| counters.get_mut(k)) {
            Some(slot) => *slot = Some(r.u64("summary counter")?),
            None => r.skip()?,
        }
    }
    match counters {
        [
            Some(files),
            Some(bytes_read),
            Some(bytes_added),
            Some(blobs_added),
            Some(duration_ms),
            Some(errors),
        ] => Ok(Summary {
            files,
            bytes_read,
            bytes_added,
            blobs_added,
            duration_ms,
            errors,
        }),
        _ => Err(r.corrupt("summary without every counter")),
    }
}

fn encode_origin(w: &mut Writer, o: &SnapshotOrigin) {
    w.fields(|f| {
        f.field(0, |w| w.bytes(o.repo.as_bytes()));
        f.field(1, |w| w.bytes(o.snapshot.as_bytes()));
    });
}

fn decode_origin(r: &mut Reader<'_>) -> Result<SnapshotOrigin> {
    let mut fields = r.fields()?;
    let (mut repo, mut snapshot) = (None, None);
    while let Some(key) = fields.next_key(r)? {
        match key {
            0 => repo = Some(RepoId::from_bytes(r.id("origin repository")?)),
            1 => snapshot = Some(SnapshotId::from_bytes(r.id("origin snapshot")?)),
            _ => r.skip()?,
        }
    }
    match (repo, snapshot) {
        (Some(repo), Some(snapshot)) => Ok(SnapshotOrigin { repo, snapshot }),
        _ => Err(r.corrupt("origin without a repository and a snapshot")),
    }
}

fn encode_cursors(w: &mut Writer, cursors: &BTreeMap<String, Vec<u8>>) {
    w.map_head(cursors.len());
    for (stream, position) in cursors {
        w.text(stream);
        w.bytes(position);
    }
}

fn decode_cursors(r: &mut Reader<'_>) -> Result<BTreeMap<String, Vec<u8>>> {
    // Each entry is a key and a value of at least one byte each.
    let n = r.map_len(2 * MIN_ITEM_LEN, "cursors")?;
    let mut cursors = BTreeMap::new();
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let stream = r.text("cursor stream")?;
        // Refused rather than re-sorted: a repeated key would drop a cursor silently.
        if last >= Some(stream) {
            return Err(r.corrupt("cursor keys repeated or out of order"));
        }
        last = Some(stream);
        cursors.insert(stream.to_owned(), r.bytes("cursor position")?.to_vec());
    }
    Ok(cursors)
}

#[cfg(test)]
mod tests {
    use minicbor::Encoder;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;
    use crate::error::Error;

    /// A small record exercising every field.
    fn sample() -> SnapshotRecord {
        SnapshotRecord {
            time_unix_ms: 1_767_225_600_000,
            host: "chat1".into(),
            tags: vec!["daily".into()],
            source_kind: "matrix".into(),
            paths: vec!["/var/lib/synapse".into()],
            parent: Some(SnapshotId::from_bytes([0xaa; 32])),
            kind: SnapshotKind::Incremental,
            root: BlobId::from_bytes([0xbb; 32]),
            summary: Summary {
                files: 3,
                bytes_read: 4096,
                bytes_added: 100,
                blobs_added: 2,
                duration_ms: 1500,
                errors: 0,
            },
            cursors: BTreeMap::from([("!room:x".to_owned(), vec![0x01, 0x02])]),
            writer_seq: 42,
            prev_writer_snapshot: Some(SnapshotId::from_bytes([0xcc; 32])),
            origin: None,
        }
    }

    /// A record with every optional field absent or empty.
    fn minimal() -> SnapshotRecord {
        SnapshotRecord {
            time_unix_ms: -1,
            host: String::new(),
            tags: Vec::new(),
            source_kind: String::new(),
            paths: Vec::new(),
            parent: None,
            kind: SnapshotKind::Full,
            root: BlobId::from_bytes([0x01; 32]),
            summary: Summary::default(),
            cursors: BTreeMap::new(),
            writer_seq: 0,
            prev_writer_snapshot: None,
            origin: None,
        }
    }

    fn is_corrupt(r: Result<SnapshotRecord>) -> bool {
        matches!(r, Err(Error::Corrupt { .. }))
    }

    /// The reason of a `Corrupt` error, so a test can check it failed for the right reason.
    fn corrupt_reason(r: Result<SnapshotRecord>) -> String {
        match r {
            Err(Error::Corrupt { object, reason }) => {
                assert_eq!(object.as_str(), "s");
                reason
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    // Pinned once from `sample()` and `minimal()`: a change here is a format change.
    const SAMPLE_HEX: &str = concat!(
        "ad",
        "00",
        "01", // {0: 1,
        "01",
        "1b0000019b76daa800", // 1: 1767225600000,
        "02",
        "656368617431", // 2: "chat1",
        "03",
        "81",
        "656461696c79", // 3: ["daily"],
        "04",
        "666d6174726978", // 4: "matrix",
        "05",
        "81",
        "702f7661722f6c69622f73796e61707365", // 5: ["/var/lib/synapse"],
        "06",
        "5820",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "07",
        "01", // 7: 1 (incremental),
        "08",
        "5820",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "09",
        "a6",
        "0003",
        "01191000",
        "021864",
        "0302",
        "041905dc",
        "0500", // 9: summary,
        "0a",
        "a1",
        "6721726f6f6d3a78",
        "420102", // 10: {"!room:x": h'0102'},
        "0b",
        "182a", // 11: 42,
        "0c",
        "5820",
        "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
    );

    /// Where the summary map's head sits in `MINIMAL_HEX`: after the map head, keys 0, 1
    /// and 7 (two bytes each), key 8 with its 34-byte id, and key 9.
    const MINIMAL_SUMMARY_AT: usize = 1 + 6 + 1 + 34 + 1;

    const MINIMAL_HEX: &str = concat!(
        "a6",
        "00",
        "01",
        "01",
        "20",
        "07",
        "00", // {0: 1, 1: -1, 7: 0 (full),
        "08",
        "5820",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "09",
        "a6",
        "0000",
        "0100",
        "0200",
        "0300",
        "0400",
        "0500", // 9: zero summary,
        "0b",
        "00", // 11: 0}
    );

    #[test]
    fn golden_record_encodings() {
        for (record, golden) in [(sample(), SAMPLE_HEX), (minimal(), MINIMAL_HEX)] {
            assert_eq!(hex::encode(record.encode()), golden);
            let decoded = SnapshotRecord::decode(&hex::decode(golden).unwrap(), "s").unwrap();
            assert_eq!(decoded, record);
        }
    }

    /// `minimal()` copied from another repository: key 13 after key 11.
    const COPIED_HEX: &str = concat!(
        "a7", // the minimal record's entries and one more
        "0001",
        "0120",
        "0700",
        "085820",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "09a6000001000200030004000500",
        "0b00",
        "0d",
        "a2", // 13: {
        "005820",
        "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd", // 0: repo,
        "015820",
        "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", // 1: snapshot}}
    );

    fn copied() -> SnapshotRecord {
        SnapshotRecord {
            origin: Some(SnapshotOrigin {
                repo: RepoId::from_bytes([0xdd; 32]),
                snapshot: SnapshotId::from_bytes([0xee; 32]),
            }),
            ..minimal()
        }
    }

    #[test]
    fn golden_copied_record() {
        assert_eq!(hex::encode(copied().encode()), COPIED_HEX);
        let decoded = SnapshotRecord::decode(&hex::decode(COPIED_HEX).unwrap(), "s").unwrap();
        assert_eq!(decoded, copied());
    }

    #[test]
    fn origin_without_both_ids_is_corrupt() {
        let mut bytes = hex::decode(COPIED_HEX).unwrap();
        // Drop the snapshot id: the origin map's last entry.
        bytes.truncate(bytes.len() - 35);
        let origin_at = bytes.len() - 35 - 1;
        assert_eq!(bytes[origin_at], 0xa2);
        bytes[origin_at] = 0xa1;
        assert!(corrupt_reason(SnapshotRecord::decode(&bytes, "s")).contains("origin"));
    }

    #[test]
    fn decode_skips_unknown_keys() {
        // The minimal record with a key 14 (a newer writer's field) and an unknown summary
        // key 6; both must sort after the known ones.
        let mut bytes = hex::decode(MINIMAL_HEX).unwrap();
        bytes[0] = 0xa7; // one more top-level entry
        let summary_at = MINIMAL_SUMMARY_AT;
        assert_eq!(bytes[summary_at], 0xa6);
        bytes[summary_at] = 0xa7;
        let summary_end = summary_at + 1 + 12;
        bytes.splice(summary_end..summary_end, [0x06, 0x63, b'n', b'e', b'w']);
        let mut e = Encoder::new(Vec::new());
        e.u8(14)
            .unwrap()
            .map(1)
            .unwrap()
            .u8(0)
            .unwrap()
            .array(0)
            .unwrap();
        bytes.extend_from_slice(&e.into_writer());
        assert_eq!(SnapshotRecord::decode(&bytes, "s").unwrap(), minimal());
    }

    #[test]
    fn unknown_version_is_unsupported_format() {
        let mut bytes = sample().encode();
        bytes[2] = 0x02;
        match SnapshotRecord::decode(&bytes, "snapshots/x") {
            Err(Error::UnsupportedFormat {
                object,
                found,
                supported,
            }) => assert_eq!((object.as_str(), found, supported), ("snapshots/x", 2, 1)),
            other => panic!("expected UnsupportedFormat, got {other:?}"),
        }
    }

    /// The minimal record, built independently of `encode`, with top-level key `drop` left
    /// out.
    fn minimal_without(drop: u8) -> Vec<u8> {
        let keys: Vec<u8> = [0, 1, 7, 8, 9, 11]
            .into_iter()
            .filter(|&k| k != drop)
            .collect();
        let mut e = Encoder::new(Vec::new());
        e.map(keys.len() as u64).unwrap();
        for key in keys {
            e.u8(key).unwrap();
            match key {
                0 => e.u8(1).unwrap(),
                1 => e.i64(-1).unwrap(),
                8 => e.bytes(&[0x01; 32]).unwrap(),
                9 => {
                    e.map(6).unwrap();
                    for counter in 0..6 {
                        e.u8(counter).unwrap().u8(0).unwrap();
                    }
                    &mut e
                }
                _ => e.u8(0).unwrap(), // kind (full) and writer sequence
            };
        }
        e.into_writer()
    }

    #[test]
    fn missing_required_fields_are_corrupt() {
        // The control: nothing left out (key 99 is not in the record) decodes.
        assert_eq!(
            SnapshotRecord::decode(&minimal_without(99), "s").unwrap(),
            minimal()
        );
        for key in [0, 1, 7, 8, 9, 11] {
            let reason = corrupt_reason(SnapshotRecord::decode(&minimal_without(key), "s"));
            let expected = if key == 0 {
                "no format version"
            } else {
                "record without"
            };
            assert!(reason.contains(expected), "key {key}: {reason}");
        }
        // A summary missing a counter.
        let mut bytes = hex::decode(MINIMAL_HEX).unwrap();
        let summary_at = MINIMAL_SUMMARY_AT;
        assert_eq!(bytes[summary_at], 0xa6);
        bytes[summary_at] = 0xa5;
        bytes.drain(summary_at + 1 + 10..summary_at + 1 + 12);
        let reason = corrupt_reason(SnapshotRecord::decode(&bytes, "s"));
        assert!(reason.contains("summary without"), "{reason}");
    }

    #[test]
    fn unknown_kind_is_corrupt() {
        let mut bytes = hex::decode(MINIMAL_HEX).unwrap();
        bytes[6] = 0x02; // the value of key 7
        let reason = corrupt_reason(SnapshotRecord::decode(&bytes, "s"));
        assert!(reason.contains("unknown snapshot kind 2"), "{reason}");
    }

    #[test]
    fn ids_of_wrong_length_are_corrupt() {
        for key in [6u8, 8, 12] {
            for len in [0, 31, 33] {
                let mut record = sample();
                let mut e = Encoder::new(Vec::new());
                e.bytes(&vec![0xee; len]).unwrap();
                let wrong = e.into_writer();
                // Replace the 34-byte encoded id that follows `key`.
                let id_byte = match key {
                    6 => 0xaa,
                    8 => 0xbb,
                    _ => 0xcc,
                };
                record.cursors.clear();
                let mut bytes = record.encode();
                let at = bytes
                    .windows(3)
                    .position(|w| w == [key, 0x58, 0x20])
                    .unwrap();
                assert_eq!(bytes[at + 3], id_byte);
                bytes.splice(at + 1..at + 35, wrong);
                let reason = corrupt_reason(SnapshotRecord::decode(&bytes, "s"));
                assert!(
                    reason.contains(&format!("is {len} bytes, not 32")),
                    "{reason}"
                );
            }
        }
    }

    #[test]
    fn unsorted_or_repeated_cursor_keys_are_corrupt() {
        for keys in [["b", "a"], ["a", "a"], ["ab", "a"]] {
            let mut bytes = hex::decode(MINIMAL_HEX).unwrap();
            bytes[0] = 0xa7;
            // Key 10 goes before key 11 (the last two bytes).
            let tail = bytes.split_off(bytes.len() - 2);
            let mut e = Encoder::new(Vec::new());
            e.u8(10).unwrap().map(2).unwrap();
            for k in keys {
                e.str(k).unwrap().bytes(b"").unwrap();
            }
            bytes.extend_from_slice(&e.into_writer());
            bytes.extend_from_slice(&tail);
            let reason = corrupt_reason(SnapshotRecord::decode(&bytes, "s"));
            assert!(reason.contains("cursor keys"), "{keys:?}: {reason}");
        }
    }

    #[test]
    fn repeated_keys_and_trailing_bytes_are_corrupt() {
        let mut repeated = hex::decode(MINIMAL_HEX).unwrap();
        repeated[0] = 0xa7;
        repeated.extend_from_slice(&[0x0b, 0x01]); // key 11 a second time
        let reason = corrupt_reason(SnapshotRecord::decode(&repeated, "s"));
        assert!(reason.contains("repeated or out of order"), "{reason}");
        let mut trailing = hex::decode(MINIMAL_HEX).unwrap();
        trailing.push(0x00);
        let reason = corrupt_reason(SnapshotRecord::decode(&trailing, "s"));
        assert!(reason.contains("after the end"), "{reason}");
    }

    #[test]
    fn invalid_utf8_text_is_corrupt() {
        let mut bytes = sample().encode();
        let at = bytes.windows(5).position(|w| w == b"chat1").unwrap();
        bytes[at] = 0xff;
        let reason = corrupt_reason(SnapshotRecord::decode(&bytes, "s"));
        assert!(reason.contains("host"), "{reason}");
    }

    #[test]
    fn truncated_encodings_are_corrupt_at_every_length() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            let r = SnapshotRecord::decode(&bytes[..len], "s");
            assert!(is_corrupt(r), "prefix of {len} bytes");
        }
    }

    #[test]
    fn huge_declared_lengths_fail_without_allocating() {
        // {0: 1, 3: array of 2^64 - 1 tags}, {0: 1, 10: map of 2^64 - 1 cursors},
        // {0: 1, 2: text of 2^63 - 1 bytes}.
        for hex_bytes in [
            "a20001039bffffffffffffffff",
            "a200010abbffffffffffffffff",
            "a20001027b7fffffffffffffff",
        ] {
            let bytes = hex::decode(hex_bytes).unwrap();
            let reason = corrupt_reason(SnapshotRecord::decode(&bytes, "s"));
            assert!(
                reason.contains("longer than the object") || reason.contains("end of input"),
                "{hex_bytes}: {reason}"
            );
        }
    }

    fn arb_snapshot_id() -> impl Strategy<Value = SnapshotId> {
        any::<[u8; 32]>().prop_map(SnapshotId::from_bytes)
    }

    fn arb_summary() -> impl Strategy<Value = Summary> {
        any::<[u64; 6]>().prop_map(|c| Summary {
            files: c[0],
            bytes_read: c[1],
            bytes_added: c[2],
            blobs_added: c[3],
            duration_ms: c[4],
            errors: c[5],
        })
    }

    fn arb_record() -> impl Strategy<Value = SnapshotRecord> {
        let text = ".{0,12}";
        (
            (any::<i64>(), text, vec(text, 0..4), text, vec(text, 0..4)),
            (
                proptest::option::of(arb_snapshot_id()),
                any::<bool>(),
                any::<[u8; 32]>(),
                arb_summary(),
            ),
            (
                btree_map(text, vec(any::<u8>(), 0..16), 0..5),
                any::<u64>(),
                proptest::option::of(arb_snapshot_id()),
                proptest::option::of((any::<[u8; 32]>(), arb_snapshot_id())),
            ),
        )
            .prop_map(
                |(
                    (time_unix_ms, host, tags, source_kind, paths),
                    (parent, incremental, root, summary),
                    (cursors, writer_seq, prev_writer_snapshot, origin),
                )| SnapshotRecord {
                    time_unix_ms,
                    host,
                    tags,
                    source_kind,
                    paths,
                    parent,
                    kind: if incremental {
                        SnapshotKind::Incremental
                    } else {
                        SnapshotKind::Full
                    },
                    root: BlobId::from_bytes(root),
                    summary,
                    cursors,
                    writer_seq,
                    prev_writer_snapshot,
                    origin: origin.map(|(repo, snapshot)| SnapshotOrigin {
                        repo: RepoId::from_bytes(repo),
                        snapshot,
                    }),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip_is_identity_and_canonical(record in arb_record()) {
            let bytes = record.encode();
            let decoded = SnapshotRecord::decode(&bytes, "s").unwrap();
            prop_assert_eq!(&decoded, &record);
            prop_assert_eq!(decoded.encode(), bytes);
        }

        #[test]
        fn decode_never_panics_on_random_bytes(bytes in vec(any::<u8>(), 0..256)) {
            let _ = SnapshotRecord::decode(&bytes, "s");
            // Behind a valid version, so the bytes reach the field decoders.
            let mut framed = hex::decode("ad0001").unwrap();
            framed.extend_from_slice(&bytes);
            let _ = SnapshotRecord::decode(&framed, "s");
        }

        #[test]
        fn decode_never_panics_on_mutated_encodings(
            record in arb_record(),
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = record.encode();
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            if let Ok(r) = SnapshotRecord::decode(&bytes, "s") {
                prop_assert_eq!(SnapshotRecord::decode(&r.encode(), "s").unwrap(), r);
            }
        }
    }
}
