//! Node meta of the message-log tree: what a directory or a stream node carries beside its
//! chunk list (docs/FORMAT.md, "Message-log node meta").
//!
//! A stream node's `content` is its segments' chunks in stream order; its meta holds, for
//! each of those chunks in the same order, the segment's tier and the seq and timestamp
//! ranges of the records that start in it, plus the stream's cursor: how many source
//! bytes it covers and the digest of their last 64 KiB (so the next run can tell an append
//! from a rewrite by reading that window only), the source file's stamp (to skip an
//! unchanged file unread) and the last seq and timestamp.
//!
//! Canonical CBOR map with small integer keys, absent fields omitted:
//!
//! | key | field    | value                                                          |
//! |-----|----------|----------------------------------------------------------------|
//! | 0   | version  | `1`                                                            |
//! | 1   | kind     | 0 directory, 1 line stream (JSONL file), 2 framed record stream |
//! | 2   | len      | source bytes the segments hold                                  |
//! | 3   | digest   | BLAKE3 of the last 64 KiB of those bytes (line streams)         |
//! | 4   | segments | array of segment arrays, one per content chunk                  |
//! | 5   | stamp    | `[size, mtime_ns, ctime_ns, inode]` of the source file          |
//! | 6   | last_seq | highest seq backed up                                           |
//! | 7   | last_ts  | highest timestamp backed up (ms since the epoch)                |
//! | 8   | fields   | `[seq pointer, ts pointer, ts format]` when not the default      |
//! | 9   | tenant   | the stream's tenant, when its path does not name it              |
//! | 10  | conversation | the stream's conversation, when its path does not name it    |
//! | 11  | cursor   | a change source's position after the stream's last record        |
//! | 12  | base     | (the `logs` directory) where its paths start in the data directory |
//!
//! A segment array is `[tier, records, flags]` followed, when at least one record in it
//! has a seq and timestamp, by `seq_min, seq_max, ts_min, ts_max`. Flag bit 0: the
//! segment starts in the middle of a record (the previous segment ends without one).

use chatvault_core::cbor::{Reader, Writer};
use chatvault_core::{Error, Result};

use crate::fields::RecordFields;

const META_VERSION: u32 = 1;

/// What a node of the message-log tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory: a tenant, a conversation, or any folder of the logs directory.
    Dir,
    /// A JSONL log file: records are lines, with `seq` and `ts` read from each line.
    Lines,
    /// A stream of records handed over by an embedding server, framed (docs/FORMAT.md).
    Framed,
}

impl NodeKind {
    fn to_u64(self) -> u64 {
        match self {
            NodeKind::Dir => 0,
            NodeKind::Lines => 1,
            NodeKind::Framed => 2,
        }
    }

    fn from_u64(n: u64) -> Option<Self> {
        Some(match n {
            0 => NodeKind::Dir,
            1 => NodeKind::Lines,
            2 => NodeKind::Framed,
            _ => return None,
        })
    }
}

/// Inclusive seq and timestamp ranges of the records starting in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranges {
    /// Lowest seq.
    pub seq_min: u64,
    /// Highest seq.
    pub seq_max: u64,
    /// Earliest timestamp, ms since the Unix epoch.
    pub ts_min: i64,
    /// Latest timestamp.
    pub ts_max: i64,
}

impl Ranges {
    /// The ranges of a single record.
    pub fn of(seq: u64, ts: i64) -> Self {
        Ranges {
            seq_min: seq,
            seq_max: seq,
            ts_min: ts,
            ts_max: ts,
        }
    }

    /// Widens to include one more record.
    pub fn add(&mut self, seq: u64, ts: i64) {
        self.seq_min = self.seq_min.min(seq);
        self.seq_max = self.seq_max.max(seq);
        self.ts_min = self.ts_min.min(ts);
        self.ts_max = self.ts_max.max(ts);
    }

    /// Widens to include another range.
    pub fn merge(a: Option<Ranges>, b: Option<Ranges>) -> Option<Ranges> {
        match (a, b) {
            (Some(mut a), Some(b)) => {
                a.add(b.seq_min, b.ts_min);
                a.add(b.seq_max, b.ts_max);
                Some(a)
            }
            (a, b) => a.or(b),
        }
    }
}

/// The tier of a segment: fresh tail segments are merged once into sealed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Written by one run for the records it appended; will be merged.
    Tail,
    /// Merged or written large; never rewritten.
    Sealed,
}

/// One segment's description (its chunk reference is the node's content at the same
/// position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Tail or sealed.
    pub tier: Tier,
    /// Records starting in the segment.
    pub records: u32,
    /// The segment starts in the middle of a record.
    pub continues: bool,
    /// Ranges of the records starting in it that carry a seq and a timestamp.
    pub ranges: Option<Ranges>,
}

/// A source file's identity and state when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

/// A message-log node's meta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    /// Directory or stream.
    pub kind: NodeKind,
    /// Source bytes the segments hold (the sum of the chunk lengths).
    pub len: u64,
    /// BLAKE3 of the last 64 KiB of the source bytes `0..len` (all of them if fewer): line
    /// streams. A full run checks the whole prefix through the segment ids instead.
    pub digest: Option<[u8; 32]>,
    /// One per content chunk.
    pub segments: Vec<SegmentMeta>,
    /// The source file when it was read (line streams from a data directory).
    pub stamp: Option<Stamp>,
    /// Highest seq backed up.
    pub last_seq: Option<u64>,
    /// Highest timestamp backed up.
    pub last_ts: Option<i64>,
    /// Where the records of a line stream keep their seq and timestamp, when not at the
    /// top-level `seq` and `ts` (ms); only the pointers and the format are stored.
    pub fields: Option<RecordFields>,
    /// The stream's tenant, when it is not the first component of its path (a layout).
    pub tenant: Option<String>,
    /// The stream's conversation, when it is not the second component of its path.
    pub conversation: Option<String>,
    /// Where a change source (a database table) stood after the stream's last record;
    /// opaque to everything but that source.
    pub cursor: Option<Vec<u8>>,
    /// On the `logs` directory of a set taken with a layout: the directory of the data
    /// directory its paths are relative to (`""` for the data directory itself). Absent:
    /// `logs`.
    pub base: Option<String>,
}

impl NodeMeta {
    /// A directory's meta.
    pub fn dir() -> Self {
        Self::empty(NodeKind::Dir)
    }

    /// An empty stream or directory.
    pub fn empty(kind: NodeKind) -> Self {
        NodeMeta {
            kind,
            len: 0,
            digest: None,
            segments: Vec::new(),
            stamp: None,
            last_seq: None,
            last_ts: None,
            fields: None,
            tenant: None,
            conversation: None,
            cursor: None,
            base: None,
        }
    }

    /// Whether the node is a stream (has segments).
    pub fn is_stream(&self) -> bool {
        self.kind != NodeKind::Dir
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(META_VERSION.into()));
            f.field(1, |w| w.uint(self.kind.to_u64()));
            if self.len != 0 {
                f.field(2, |w| w.uint(self.len));
            }
            if let Some(d) = &self.digest {
                f.field(3, |w| w.bytes(d));
            }
            if !self.segments.is_empty() {
                f.field(4, |w| {
                    w.array_head(self.segments.len());
                    for s in &self.segments {
                        encode_segment(w, s);
                    }
                });
            }
            if let Some(s) = &self.stamp {
                f.field(5, |w| {
                    w.array_head(4);
                    w.uint(s.size);
                    w.int(s.mtime_ns);
                    w.int(s.ctime_ns);
                    w.uint(s.inode);
                });
            }
            if let Some(seq) = self.last_seq {
                f.field(6, |w| w.uint(seq));
            }
            if let Some(ts) = self.last_ts {
                f.field(7, |w| w.int(ts));
            }
            if let Some(fields) = &self.fields {
                f.field(8, |w| fields.encode(w));
            }
            if let Some(t) = &self.tenant {
                f.field(9, |w| w.text(t));
            }
            if let Some(c) = &self.conversation {
                f.field(10, |w| w.text(c));
            }
            if let Some(c) = &self.cursor {
                f.field(11, |w| w.bytes(c));
            }
            if let Some(b) = &self.base {
                f.field(12, |w| w.text(b));
            }
        });
        w.into_bytes()
    }

    /// Decodes a node's meta; `object` names it in errors. Unknown keys are skipped.
    pub fn decode(bytes: &[u8], object: &str) -> Result<NodeMeta> {
        let mut r = Reader::new(bytes, object);
        let mut fields = r.fields()?;
        r.version(&mut fields, META_VERSION)?;
        let mut m = NodeMeta::dir();
        let mut kind = None;
        while let Some(key) = fields.next_key(&mut r)? {
            match key {
                1 => {
                    let k = r.u64("kind")?;
                    kind = Some(
                        NodeKind::from_u64(k)
                            .ok_or_else(|| r.corrupt(format!("unknown node kind {k}")))?,
                    );
                }
                2 => m.len = r.u64("len")?,
                3 => m.digest = Some(r.id("digest")?),
                4 => {
                    let n = r.array_len(4, "segments")?;
                    m.segments.reserve(n);
                    for _ in 0..n {
                        m.segments.push(decode_segment(&mut r)?);
                    }
                }
                5 => {
                    // Four integers of at least one byte each.
                    if r.array_len(1, "stamp")? != 4 {
                        return Err(r.corrupt("stamp is not 4 items"));
                    }
                    m.stamp = Some(Stamp {
                        size: r.u64("stamp size")?,
                        mtime_ns: r.i64("stamp mtime")?,
                        ctime_ns: r.i64("stamp ctime")?,
                        inode: r.u64("stamp inode")?,
                    });
                }
                6 => m.last_seq = Some(r.u64("last seq")?),
                7 => m.last_ts = Some(r.i64("last ts")?),
                8 => m.fields = Some(RecordFields::decode(&mut r)?),
                9 => m.tenant = Some(r.text("tenant")?.to_owned()),
                10 => m.conversation = Some(r.text("conversation")?.to_owned()),
                11 => m.cursor = Some(r.bytes("cursor")?.to_vec()),
                12 => m.base = Some(r.text("base")?.to_owned()),
                _ => r.skip()?,
            }
        }
        r.finish()?;
        m.kind = kind.ok_or_else(|| r.corrupt("no node kind"))?;
        if !m.is_stream()
            && (!m.segments.is_empty() || m.len != 0 || m.fields.is_some() || m.cursor.is_some())
        {
            return Err(r.corrupt("a directory with segments"));
        }
        Ok(m)
    }

    /// Checks the meta against the node's chunk list: one segment per chunk, lengths that
    /// add up to `len`.
    pub fn check_content(
        &self,
        content: &[chatvault_core::ContentRef],
        object: &str,
    ) -> Result<()> {
        if self.segments.len() != content.len() {
            return Err(Error::corrupt(
                object,
                format!(
                    "{} segments described for {} chunks",
                    self.segments.len(),
                    content.len()
                ),
            ));
        }
        let total: u64 = content.iter().map(|c| u64::from(c.len)).sum();
        if total != self.len {
            return Err(Error::corrupt(
                object,
                format!("chunks hold {total} bytes, the stream says {}", self.len),
            ));
        }
        Ok(())
    }
}

fn encode_segment(w: &mut Writer, s: &SegmentMeta) {
    w.array_head(if s.ranges.is_some() { 7 } else { 3 });
    w.uint(match s.tier {
        Tier::Tail => 0,
        Tier::Sealed => 1,
    });
    w.uint(s.records.into());
    w.uint(u64::from(s.continues));
    if let Some(r) = &s.ranges {
        w.uint(r.seq_min);
        w.uint(r.seq_max);
        w.int(r.ts_min);
        w.int(r.ts_max);
    }
}

fn decode_segment(r: &mut Reader<'_>) -> Result<SegmentMeta> {
    let n = r.array_len(1, "segment")?;
    if n != 3 && n != 7 {
        return Err(r.corrupt(format!("segment of {n} items")));
    }
    let tier = match r.u64("tier")? {
        0 => Tier::Tail,
        1 => Tier::Sealed,
        t => return Err(r.corrupt(format!("unknown segment tier {t}"))),
    };
    let records = r.u32("records")?;
    let flags = r.u64("segment flags")?;
    if flags > 1 {
        return Err(r.corrupt(format!("unknown segment flags {flags:#x}")));
    }
    let ranges = if n == 7 {
        let ranges = Ranges {
            seq_min: r.u64("seq min")?,
            seq_max: r.u64("seq max")?,
            ts_min: r.i64("ts min")?,
            ts_max: r.i64("ts max")?,
        };
        if ranges.seq_min > ranges.seq_max || ranges.ts_min > ranges.ts_max {
            return Err(r.corrupt("segment range with min above max"));
        }
        Some(ranges)
    } else {
        None
    };
    Ok(SegmentMeta {
        tier,
        records,
        continues: flags & 1 != 0,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by the `msglog_meta` fuzz target: a stamp of small integers as the last field
    /// re-encoded shorter than the decoder's bound for a stamp (4 bytes per item), so a
    /// meta that decoded did not decode again once re-encoded. (The input it found was
    /// written for an earlier field 8; these are the same shapes, built.)
    #[test]
    fn a_stamp_of_small_integers_at_the_end_round_trips() {
        let small = NodeMeta {
            stamp: Some(Stamp {
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 0,
            }),
            last_seq: None,
            last_ts: None,
            fields: None,
            tenant: None,
            conversation: None,
            cursor: None,
            base: None,
            ..sample()
        };
        assert_eq!(NodeMeta::decode(&small.encode(), "t").unwrap(), small);
        // The same for record fields with empty pointers as the last field.
        let fields_last = NodeMeta {
            fields: Some(RecordFields {
                seq: String::new(),
                ts: String::new(),
                ..RecordFields::default()
            }),
            tenant: None,
            conversation: None,
            cursor: None,
            base: None,
            ..sample()
        };
        let again = NodeMeta::decode(&fields_last.encode(), "t").unwrap();
        assert_eq!(again, fields_last);
    }

    fn sample() -> NodeMeta {
        NodeMeta {
            kind: NodeKind::Lines,
            len: 300,
            digest: Some([7; 32]),
            segments: vec![
                SegmentMeta {
                    tier: Tier::Sealed,
                    records: 2,
                    continues: false,
                    ranges: Some(Ranges {
                        seq_min: 1,
                        seq_max: 2,
                        ts_min: 1_767_698_903_285,
                        ts_max: 1_767_698_915_711,
                    }),
                },
                SegmentMeta {
                    tier: Tier::Tail,
                    records: 0,
                    continues: true,
                    ranges: None,
                },
            ],
            stamp: Some(Stamp {
                size: 300,
                mtime_ns: -5,
                ctime_ns: 1_700_000_000_000_000_000,
                inode: 42,
            }),
            last_seq: Some(2),
            last_ts: Some(1_767_698_915_711),
            fields: None,
            tenant: None,
            conversation: None,
            cursor: None,
            base: None,
        }
    }

    /// Golden vector: these bytes are the format (docs/FORMAT.md); a change here is a
    /// format change.
    #[test]
    fn golden_stream_meta() {
        let hex = "a8000101010219012c0358200707070707070707070707070707070707070707070707070707070707070707\
                   04828701020001021b0000019b9310b0f51b0000019b9310e17f8300000105841901\
                   2c241b17979cfe362a0000182a0602071b0000019b9310e17f";
        let expected = hex::decode(hex).unwrap();
        let bytes = sample().encode();
        assert_eq!(hex::encode(&bytes), hex::encode(&expected));
        assert_eq!(NodeMeta::decode(&bytes, "t").unwrap(), sample());
    }

    #[test]
    fn golden_dir_meta() {
        assert_eq!(NodeMeta::dir().encode(), [0xa2, 0x00, 0x01, 0x01, 0x00]);
        let mut with_base = NodeMeta::dir();
        with_base.base = Some(String::new());
        assert_eq!(
            hex::encode(with_base.encode()),
            "a3000101000c60",
            "a layout's logs directory: base = the data directory"
        );
    }

    /// Golden vector for the keys layouts and change sources add (8 to 11): a line stream
    /// with RFC 3339 timestamps whose conversation comes from its records, and a framed
    /// stream with a source cursor. Older readers skip these keys.
    #[test]
    fn golden_layout_and_cursor_meta() {
        let mut m = NodeMeta::empty(NodeKind::Lines);
        m.fields = Some(RecordFields {
            seq: "/n".into(),
            ts: "/ts".into(),
            ts_format: crate::fields::TsFormat::Rfc3339,
            conversation: None,
            tenant: None,
        });
        m.tenant = Some("acme".into());
        m.conversation = Some("general".into());
        let bytes = m.encode();
        assert_eq!(
            hex::encode(&bytes),
            "a5000101010883622f6e632f747304096461636d650a6767656e6572616c",
        );
        assert_eq!(NodeMeta::decode(&bytes, "t").unwrap(), m);
        let mut f = NodeMeta::empty(NodeKind::Framed);
        f.cursor = Some(vec![1, 2, 3]);
        let bytes = f.encode();
        assert_eq!(hex::encode(&bytes), "a3000101020b43010203");
        assert_eq!(NodeMeta::decode(&bytes, "t").unwrap(), f);
        // A directory never carries a cursor or record fields.
        let mut d = NodeMeta::dir();
        d.cursor = Some(vec![1]);
        assert!(NodeMeta::decode(&d.encode(), "t").is_err());
    }

    #[test]
    fn refuses_bad_meta() {
        for bad in [
            &[0xa1, 0x00, 0x01][..],                     // no kind
            &[0xa2, 0x00, 0x01, 0x01, 0x09],             // unknown kind
            &[0xa2, 0x00, 0x02, 0x01, 0x00],             // unknown version
            &[0xa3, 0x00, 0x01, 0x01, 0x00, 0x02, 0x05], // directory with a length
        ] {
            assert!(NodeMeta::decode(bad, "t").is_err(), "{bad:02x?}");
        }
        let mut m = sample();
        m.segments[0].ranges.as_mut().unwrap().seq_min = 9;
        assert!(NodeMeta::decode(&m.encode(), "t").is_err());
    }

    fn arb_meta() -> impl Strategy<Value = NodeMeta> {
        let seg = (
            any::<bool>(),
            any::<u32>(),
            any::<bool>(),
            proptest::option::of((any::<u64>(), any::<u64>(), any::<i64>(), any::<i64>())),
        )
            .prop_map(|(sealed, records, continues, r)| SegmentMeta {
                tier: if sealed { Tier::Sealed } else { Tier::Tail },
                records,
                continues,
                ranges: r.map(|(a, b, c, d)| Ranges {
                    seq_min: a.min(b),
                    seq_max: a.max(b),
                    ts_min: c.min(d),
                    ts_max: c.max(d),
                }),
            });
        (
            prop_oneof![Just(NodeKind::Lines), Just(NodeKind::Framed)],
            any::<u64>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::collection::vec(seg, 0..5),
            proptest::option::of((any::<u64>(), any::<i64>(), any::<i64>(), any::<u64>())),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(
                |(kind, len, digest, segments, stamp, last_seq, last_ts)| NodeMeta {
                    kind,
                    len,
                    digest,
                    segments,
                    stamp: stamp.map(|(size, mtime_ns, ctime_ns, inode)| Stamp {
                        size,
                        mtime_ns,
                        ctime_ns,
                        inode,
                    }),
                    last_seq,
                    last_ts,
                    fields: None,
                    tenant: None,
                    conversation: None,
                    cursor: None,
                    base: None,
                },
            )
    }

    proptest! {
        #[test]
        fn round_trips(m in arb_meta()) {
            let bytes = m.encode();
            prop_assert_eq!(NodeMeta::decode(&bytes, "t").unwrap(), m);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = NodeMeta::decode(&bytes, "t");
        }
    }
}
