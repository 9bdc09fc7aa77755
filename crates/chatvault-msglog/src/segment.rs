//! Cutting appended records into segments, and the tiered merge of tail segments.
//!
//! A run that appends a little to a stream (less than [`Tiering::seal_bytes`]) writes one
//! *tail* segment holding exactly the new records. A run that appends more writes *sealed*
//! segments of about [`Tiering::target_bytes`], which are never rewritten, and merges the
//! stream's tail segments into them; so does a run that would leave more than
//! [`Tiering::max_tail`] tail segments. Every appended byte is therefore written at most
//! twice (once in a tail segment, once when sealed), and a stream holds at most
//! `max_tail` tail segments plus sealed ones: write amplification ≤ 2× and a bounded
//! number of chunks per stream.
//!
//! The defaults come from `examples/tiering.rs` on 30 days of the generated benchmark
//! server (1.1 GB of appended JSONL, monthly log files):
//!
//! | policy | written / appended | stored | chunks per stream |
//! |---|---|---|---|
//! | merge when tails reach 64 KiB or 8 (a sum-triggered LSM) | 1.28 | 640 MB | 3.7 |
//! | same, 16 KiB or 8 | 1.15 | 589 MB | 3.7 |
//! | never merge before 32 tails | 1.00 | 542 MB | 6.1 |
//! | seal appends ≥ 16 KiB, merge past 32 tails | 1.08 | 572 MB | 5.5 |
//! | **seal appends ≥ 4 KiB, merge past 32 tails** (default) | 1.05 | 545 MB | 4.1 |
//!
//! Rewriting tails costs more bytes than their better compression saves; sealing any
//! append of a few KiB at once keeps chunks per stream low without rewriting much (only
//! the small tails of quiet days, merged into the next busy day's segments). An embedding
//! server's streams never end: there a quiet conversation's tails are merged about once a
//! month.
//!
//! Cuts fall on record boundaries; only a record larger than
//! [`Tiering::max_segment_bytes`] is cut inside, and the segment after such a cut is
//! flagged as continuing a record.

use chatvault_core::{BlobType, BlobWriter, ContentRef};

use crate::error::Result;

use crate::meta::{Ranges, SegmentMeta, Tier};
use crate::records::Batch;

/// The merge policy (see the module documentation for how the defaults were chosen).
#[derive(Debug, Clone, Copy)]
pub struct Tiering {
    /// An append of at least this many bytes is sealed at once, with the tail segments
    /// merged into it; a smaller one becomes a tail segment.
    pub seal_bytes: usize,
    /// The tail segments are merged (with the new records) when there would be more than
    /// this many.
    pub max_tail: usize,
    /// Sealed segments are cut at the first record boundary past this size.
    pub target_bytes: usize,
    /// No segment is larger; a longer record is cut inside.
    pub max_segment_bytes: usize,
}

impl Default for Tiering {
    fn default() -> Self {
        Tiering {
            seal_bytes: 4 << 10,
            max_tail: 32,
            target_bytes: 128 << 10,
            max_segment_bytes: 4 << 20,
        }
    }
}

/// A stream's segments: chunk references with their descriptions, in stream order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Segments {
    pub content: Vec<ContentRef>,
    pub meta: Vec<SegmentMeta>,
}

impl Segments {
    /// Plaintext bytes the segments hold.
    pub fn len(&self) -> u64 {
        self.content.iter().map(|c| u64::from(c.len)).sum()
    }

    /// Index of the first tail segment (`len` if there is none).
    pub fn tail_start(&self) -> usize {
        self.meta
            .iter()
            .rposition(|m| m.tier == Tier::Sealed)
            .map_or(0, |i| i + 1)
    }

    /// Bytes held by the tail segments.
    pub fn tail_bytes(&self) -> u64 {
        self.content[self.tail_start()..]
            .iter()
            .map(|c| u64::from(c.len))
            .sum()
    }

    /// The lowest seq in the tail segments.
    pub fn tail_first_seq(&self) -> Option<u64> {
        self.meta[self.tail_start()..]
            .iter()
            .filter_map(|m| m.ranges.map(|r| r.seq_min))
            .min()
    }

    /// The highest seq in any segment.
    pub fn last_seq(&self) -> Option<u64> {
        self.meta
            .iter()
            .filter_map(|m| m.ranges.map(|r| r.seq_max))
            .max()
    }

    fn push(&mut self, c: ContentRef, m: SegmentMeta) {
        self.content.push(c);
        self.meta.push(m);
    }
}

/// What an append wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AppendStats {
    /// New bytes handed to the stream.
    pub appended: u64,
    /// Plaintext bytes of the segments written (appended bytes plus merged tails).
    pub written: u64,
    /// Segments written.
    pub segments: u64,
    /// Tail merges done.
    pub merges: u64,
}

/// Appends `new` to a stream. `tail` must return the bytes of the stream's current tail
/// segments (the last `n` bytes of the stream, `n` given), as a batch, when a merge is due;
/// it is called at most once.
pub(crate) fn append(
    writer: &BlobWriter<'_>,
    old: Segments,
    new: Batch,
    tiering: &Tiering,
    tail: impl FnOnce(u64) -> Result<Batch>,
) -> Result<(Segments, AppendStats)> {
    append_or_seal(writer, old, new, tiering, |n| tail(n).map(Some))
}

/// [`append`] for a stream whose tail may be out of reach: when `tail` returns `None`
/// (a change source cannot give its past records again, and a key that cannot read
/// cannot fetch them), the tail segments are sealed as they are instead of merged: no
/// byte is written twice, the stream just keeps more small chunks.
pub(crate) fn append_or_seal(
    writer: &BlobWriter<'_>,
    old: Segments,
    new: Batch,
    tiering: &Tiering,
    tail: impl FnOnce(u64) -> Result<Option<Batch>>,
) -> Result<(Segments, AppendStats)> {
    let mut stats = AppendStats {
        appended: new.bytes.len() as u64,
        ..AppendStats::default()
    };
    if new.bytes.is_empty() {
        return Ok((old, stats));
    }
    let tail_start = old.tail_start();
    let tail_count = old.meta.len() - tail_start;
    let tail_bytes = old.tail_bytes();
    let merge = new.bytes.len() >= tiering.seal_bytes || tail_count + 1 > tiering.max_tail;
    let mut out = old;
    let (batch, tier) = if merge {
        let batch = if tail_count > 0 {
            match tail(tail_bytes)? {
                Some(mut t) => {
                    stats.merges = 1;
                    out.content.truncate(tail_start);
                    out.meta.truncate(tail_start);
                    t.extend(new);
                    t
                }
                None => {
                    for m in &mut out.meta[tail_start..] {
                        m.tier = Tier::Sealed;
                    }
                    new
                }
            }
        } else {
            new
        };
        (batch, Tier::Sealed)
    } else {
        (new, Tier::Tail)
    };
    let target = match tier {
        Tier::Sealed => tiering.target_bytes,
        Tier::Tail => usize::MAX,
    };
    for piece in cut(&batch, target, tiering.max_segment_bytes) {
        let bytes = &batch.bytes[piece.start..piece.end];
        let c = writer.write_blob(BlobType::Data, bytes)?;
        stats.written += bytes.len() as u64;
        stats.segments += 1;
        out.push(
            c,
            SegmentMeta {
                tier,
                records: piece.records,
                continues: piece.continues,
                ranges: piece.ranges,
            },
        );
    }
    Ok((out, stats))
}

/// One segment-to-be: a byte range of a batch and what starts in it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    pub start: usize,
    pub end: usize,
    pub records: u32,
    pub continues: bool,
    pub ranges: Option<Ranges>,
}

/// Cuts a batch at record boundaries into pieces of at least `target` bytes (the last may
/// be shorter), none longer than `max` (a longer record is cut inside).
pub(crate) fn cut(batch: &Batch, target: usize, max: usize) -> Vec<Piece> {
    let len = batch.bytes.len();
    let spans = &batch.spans;
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < len {
        let want = start.saturating_add(target);
        let end = if want >= len {
            len
        } else {
            // The first record boundary at or past the target size.
            let j = spans.partition_point(|s| s.start < want);
            match spans.get(j) {
                Some(s) if s.start <= start.saturating_add(max) => s.start,
                // No boundary between the target and the maximum: cut at the last one
                // before the target, or inside the record if there is none.
                _ => match j.checked_sub(1).map(|i| spans[i].start) {
                    Some(b) if b > start => b,
                    _ => len,
                },
            }
        };
        let end = end.min(start.saturating_add(max)).min(len);
        let first = spans.partition_point(|s| s.start < start);
        let last = spans.partition_point(|s| s.start < end);
        let continues = if start == 0 {
            batch.continues
        } else {
            spans.get(first).is_none_or(|s| s.start != start)
        };
        let mut ranges: Option<Ranges> = None;
        for (seq, ts) in spans[first..last].iter().filter_map(|s| s.head) {
            match &mut ranges {
                Some(r) => r.add(seq, ts),
                None => ranges = Some(Ranges::of(seq, ts)),
            }
        }
        pieces.push(Piece {
            start,
            end,
            records: (last - first) as u32,
            continues,
            ranges,
        });
        start = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, width: usize) -> Batch {
        let mut bytes = Vec::new();
        for seq in 1..=n {
            let head = format!("{{\"seq\":{seq},\"ts\":{}}}", 1000 + seq);
            bytes.extend_from_slice(head.as_bytes());
            bytes.resize(bytes.len() + width.saturating_sub(head.len() + 1), b' ');
            bytes.push(b'\n');
        }
        Batch::lines(bytes, false)
    }

    #[test]
    fn cuts_fall_on_records() {
        let b = lines(100, 50);
        let pieces = cut(&b, 1000, 1 << 20);
        assert_eq!(pieces.len(), 5);
        for p in &pieces {
            assert_eq!(p.end - p.start, 1000);
            assert_eq!(p.records, 20);
            assert!(!p.continues);
        }
        assert_eq!(pieces[1].ranges.unwrap().seq_min, 21);
        assert_eq!(pieces[1].ranges.unwrap().ts_max, 1040);
        // Everything is covered exactly once.
        assert_eq!(pieces.last().unwrap().end, b.bytes.len());
    }

    #[test]
    fn a_huge_record_is_cut_inside() {
        let mut bytes = b"{\"seq\":1,\"ts\":1}\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 10_000));
        bytes.extend_from_slice(b"\n{\"seq\":3,\"ts\":3}\n");
        let b = Batch::lines(bytes, false);
        let pieces = cut(&b, 100, 4000);
        let cont: Vec<bool> = pieces.iter().map(|p| p.continues).collect();
        assert_eq!(cont, [false, false, true, true, false]);
        assert_eq!(pieces.iter().map(|p| p.records).sum::<u32>(), 3);
        assert!(pieces.iter().all(|p| p.end - p.start <= 4000));
    }

    #[test]
    fn whole_batch_when_no_target() {
        let b = lines(10, 30);
        let pieces = cut(&b, usize::MAX, 1 << 20);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].records, 10);
    }
}
