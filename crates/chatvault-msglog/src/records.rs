//! Records inside a stream's bytes: JSONL lines or framed records, and the seq and
//! timestamp each one carries.
//!
//! A line stream is a JSONL file: a record is a line, its seq and timestamp are by default
//! the top-level `"seq"` and `"ts"` numbers of the line's JSON object, or wherever the
//! stream's [`RecordFields`] say (a line without them is still a record, it just has no
//! place in the seq and time ranges). A framed stream
//! holds what an embedding server handed over: `seq (u64 LE) ‖ ts (i64 LE) ‖ len (u32 LE)
//! ‖ bytes`, one after the other.

use serde::Deserialize;

use crate::fields::RecordFields;

/// Largest record a framed stream accepts (a chat message, not an attachment).
pub const MAX_RECORD: usize = 4 << 20;

/// Bytes of a framed record's header.
pub(crate) const FRAME_HEADER: usize = 20;

/// Where a record starts in a batch, and its seq and timestamp if it has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub head: Option<(u64, i64)>,
}

/// Bytes to append to a stream, with the records that start in them.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub spans: Vec<Span>,
    /// The bytes start inside a record begun before them.
    pub continues: bool,
}

impl Batch {
    /// A batch of JSONL bytes; `continues` if the stream so far does not end with a
    /// newline (the first bytes finish its last line).
    pub fn lines(bytes: Vec<u8>, continues: bool) -> Batch {
        Batch::lines_with(bytes, continues, &RecordFields::default())
    }

    /// A batch of JSONL bytes whose records keep their seq and timestamp where `fields`
    /// says.
    pub fn lines_with(bytes: Vec<u8>, continues: bool, fields: &RecordFields) -> Batch {
        let mut spans = Vec::new();
        let mut start = if continues {
            match memchr(b'\n', &bytes) {
                Some(i) => i + 1,
                None => bytes.len(),
            }
        } else {
            0
        };
        while start < bytes.len() {
            let end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            spans.push(Span {
                start,
                head: fields.seq_ts(&bytes[start..end]),
            });
            start = end + 1;
        }
        Batch {
            bytes,
            spans,
            continues,
        }
    }

    /// Appends another batch (the next bytes of the same stream).
    pub fn extend(&mut self, other: Batch) {
        let base = self.bytes.len();
        if self.bytes.is_empty() {
            self.continues = other.continues;
        }
        self.bytes.extend_from_slice(&other.bytes);
        self.spans.extend(other.spans.into_iter().map(|s| Span {
            start: s.start + base,
            head: s.head,
        }));
    }

    /// The bytes from `at` on, as their own batch (`at` must not exceed the length).
    pub fn split_off(mut self, at: usize) -> Batch {
        let first = self.spans.partition_point(|s| s.start < at);
        let continues = if at == 0 {
            self.continues
        } else {
            self.spans.get(first).is_none_or(|s| s.start != at)
        };
        let spans = self.spans[first..]
            .iter()
            .map(|s| Span {
                start: s.start - at,
                head: s.head,
            })
            .collect();
        Batch {
            bytes: self.bytes.split_off(at),
            spans,
            continues,
        }
    }

    /// Appends one framed record.
    pub fn push_framed(&mut self, seq: u64, ts: i64, data: &[u8]) {
        self.spans.push(Span {
            start: self.bytes.len(),
            head: Some((seq, ts)),
        });
        self.bytes.extend_from_slice(&seq.to_le_bytes());
        self.bytes.extend_from_slice(&ts.to_le_bytes());
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
    }
}

/// The `seq` and `ts` of a JSONL line, if it is a JSON object that has both.
pub(crate) fn line_head(line: &[u8]) -> Option<(u64, i64)> {
    #[derive(Deserialize)]
    struct Head {
        seq: Option<u64>,
        ts: Option<i64>,
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let head: Head = serde_json::from_slice(line).ok()?;
    Some((head.seq?, head.ts?))
}

/// One record read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its seq, if it has one.
    pub seq: Option<u64>,
    /// Its timestamp (ms since the epoch), if it has one.
    pub ts: Option<i64>,
    /// Its bytes: a line without its newline, or a framed record's payload.
    pub data: Vec<u8>,
}

/// Splits framed bytes into records. Fails (with a reason naming no content) on a
/// truncated or oversized frame.
pub(crate) fn parse_framed(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < FRAME_HEADER {
            return Err(format!("truncated record header ({} bytes)", bytes.len()));
        }
        let seq = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        let ts = i64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD || bytes.len() - FRAME_HEADER < len {
            return Err(format!("record of {len} bytes overruns its stream"));
        }
        out.push(Record {
            seq: Some(seq),
            ts: Some(ts),
            data: bytes[FRAME_HEADER..FRAME_HEADER + len].to_vec(),
        });
        bytes = &bytes[FRAME_HEADER + len..];
    }
    Ok(out)
}

/// Splits JSONL bytes into records; a last line without a newline is a record too.
#[cfg(test)]
pub(crate) fn parse_lines(bytes: &[u8]) -> Vec<Record> {
    parse_lines_with(bytes, &RecordFields::default())
}

/// Splits JSONL bytes into records whose heads are where `fields` says.
pub(crate) fn parse_lines_with(bytes: &[u8], fields: &RecordFields) -> Vec<Record> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let head = fields.seq_ts(line);
        out.push(Record {
            seq: head.map(|h| h.0),
            ts: head.map(|h| h.1),
            data: line.to_vec(),
        });
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    out
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_lines() {
        assert_eq!(
            line_head(br#"{"seq":7,"ts":1767698903285,"text":"hi \"seq\":9"}"#),
            Some((7, 1_767_698_903_285))
        );
        assert_eq!(line_head(br#"{"ts":1,"seq":2}"#), Some((2, 1)));
        assert_eq!(line_head(br#"{"seq":7}"#), None);
        assert_eq!(line_head(b"not json"), None);
        assert_eq!(line_head(br#"{"seq":-1,"ts":1}"#), None);
    }

    #[test]
    fn batch_spans_lines() {
        let b = Batch::lines(
            b"tail of last\n{\"seq\":1,\"ts\":5}\nxx\n{\"seq\":2".to_vec(),
            true,
        );
        assert_eq!(
            b.spans,
            vec![
                Span {
                    start: 13,
                    head: Some((1, 5))
                },
                Span {
                    start: 30,
                    head: None
                },
                Span {
                    start: 33,
                    head: None
                },
            ]
        );
        let b = Batch::lines(b"a\nb\n".to_vec(), false);
        assert_eq!(b.spans.iter().map(|s| s.start).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn framed_round_trip_and_damage() {
        let mut b = Batch::default();
        b.push_framed(1, -3, b"one");
        b.push_framed(2, 4, b"");
        let records = parse_framed(&b.bytes).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].data, b"one");
        assert_eq!((records[1].seq, records[1].ts), (Some(2), Some(4)));
        for cut in 1..b.bytes.len() {
            if cut == FRAME_HEADER + 3 {
                continue; // a whole first record
            }
            assert!(parse_framed(&b.bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lines_parse() {
        let r = parse_lines(b"{\"seq\":1,\"ts\":2}\nplain\nlast");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].seq, Some(1));
        assert_eq!(r[1].data, b"plain");
        assert_eq!(r[2].data, b"last");
    }
}
