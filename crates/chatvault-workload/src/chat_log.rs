//! A synthetic chat-server message log: an endless, seeded stream of JSONL records.
//!
//! Invariants:
//! - Same options, same bytes, on every platform (see `rng.rs`).
//! - `seq` starts at 1 and grows by exactly 1 per record; `ts` grows strictly.
//! - Every record is one line of valid JSON with the fields `seq`, `ts`, `from`, `conv`,
//!   `text` in that order, and contains no raw newline (pastes use the `\n` escape).
//! - The `Read` bytes are exactly the records, each followed by `\n`.

use std::io::{self, Read};

use crate::rng::{EXPONENTIAL_1024, Rng, share_threshold};
use crate::text::{PASTE_MAX_BYTES, TextWriter, push_decimal};

/// 2026-01-05T08:00:00Z, a Monday morning, so a log starts in office hours.
const START_UNIX_MS: u64 = 1_767_571_200_000 + 8 * HOUR_MS;
pub(crate) const HOUR_MS: u64 = 3_600_000;
/// 1970-01-01 was a Thursday: day 0 is weekday 3 when Monday is 0.
pub(crate) const EPOCH_WEEKDAY: u64 = 3;

/// Activity per hour of day (UTC), in per mille of the peak: quiet nights, a lunch dip,
/// busy office hours.
pub(crate) const WEEKDAY_ACTIVITY: [u64; 24] = [
    20, 20, 20, 20, 20, 20, 40, 150, 400, 1000, 1000, 1000, 600, 700, 1000, 1000, 1000, 1000, 500,
    300, 300, 300, 120, 50,
];
/// Weekends run at this per mille of the weekday level.
pub(crate) const WEEKEND_FACTOR: u64 = 150;
/// At peak, each user sends a message about every two minutes.
const PEAK_MS_PER_USER_MESSAGE: u64 = 120_000;

/// Conversations recently active: most messages continue one of them, which makes
/// conversations bursty and interleaved as on a real server.
const RECENT: usize = 8;
/// Chance (per 2^32) that a message continues a recent conversation rather than another.
const CONTINUE_THRESHOLD: u64 = 3_006_477_107; // 0.7

/// The `Read` side generates whole lines into a buffer of at least this many bytes.
const READ_BUFFER: usize = 64 * 1024;

/// Options for [`ChatLog`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLogOptions {
    /// Seed of the whole stream. By default 1.
    pub seed: u64,
    /// Number of distinct senders (`user0` …); 0 is treated as 1. It also sets the message
    /// rate: busier servers have shorter gaps between messages. By default 200.
    pub users: u32,
    /// Share of messages written mostly in CJK characters, 0 to 1 (clamped). By default 0.2.
    pub cjk_share: f64,
    /// Share of messages that are long pastes of 1–8 KiB, 0 to 1 (clamped). By default 0.05.
    pub long_paste_share: f64,
}

impl Default for ChatLogOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            users: 200,
            cjk_share: 0.2,
            long_paste_share: 0.05,
        }
    }
}

/// The fields of a record that a consumer may want without parsing the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Timestamp, Unix milliseconds.
    pub ts_ms: u64,
    /// Sender, as in `"from":"user{from}"`.
    pub from: u32,
    /// Conversation, as in `"conv":"c{conv}"`.
    pub conv: u32,
}

/// An endless, deterministic stream of chat messages as JSONL records.
///
/// A record looks like
/// `{"seq":1,"ts":1767600000000,"from":"user42","conv":"c17","text":"ok see you at the meeting"}`.
/// Text lengths are log-normal (median about 25 characters) with a share of 1–8 KiB
/// pastes; timestamps follow office hours, and messages cluster in interleaved
/// conversations.
///
/// Two views of the same sequence: [`Read`] yields the records each followed by `\n`;
/// [`next_record`](Self::next_record), [`write_record`](Self::write_record) and
/// [`into_records`](Self::into_records) yield one record at a time, without the newline.
/// (The record iterator is a separate type because `Read` and `Iterator` on one type make
/// `take`, `by_ref` and `chain` ambiguous.) Use one view per `ChatLog`: `Read` generates
/// whole lines ahead into a buffer, and the record methods continue after them.
///
/// ```
/// use std::io::Read;
/// use chatvault_workload::{ChatLog, ChatLogOptions};
///
/// let first = ChatLog::new(ChatLogOptions::default()).next_record();
/// assert!(first.starts_with(br#"{"seq":1,"ts":"#));
///
/// let mut text = Vec::new();
/// ChatLog::new(ChatLogOptions::default()).take(1 << 20).read_to_end(&mut text).unwrap();
/// assert_eq!(text.len(), 1 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct ChatLog {
    records: RecordWriter,
    buf: Vec<u8>,
    pos: usize,
}

impl ChatLog {
    /// Starts the stream described by `opts`.
    pub fn new(opts: ChatLogOptions) -> Self {
        Self {
            records: RecordWriter::new(&opts),
            buf: Vec::with_capacity(READ_BUFFER + 2 * PASTE_MAX_BYTES as usize),
            pos: 0,
        }
    }

    /// The next record, without a newline. The stream never ends.
    pub fn next_record(&mut self) -> Vec<u8> {
        let mut line = Vec::with_capacity(128);
        self.records.write(&mut line);
        line
    }

    /// Appends the next record to `out`, without a newline, and returns its fields.
    /// Cheaper than [`next_record`](Self::next_record) when the caller reuses one buffer.
    pub fn write_record(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        self.records.write(out)
    }

    /// The records as an endless iterator (each item as from
    /// [`next_record`](Self::next_record)).
    pub fn into_records(self) -> Records {
        Records(self)
    }
}

/// An endless iterator over a [`ChatLog`]'s records, from [`ChatLog::into_records`].
#[derive(Debug, Clone)]
pub struct Records(ChatLog);

impl Iterator for Records {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        Some(self.0.next_record())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

impl std::iter::FusedIterator for Records {}

impl Read for ChatLog {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            while self.buf.len() < READ_BUFFER {
                self.records.write(&mut self.buf);
                self.buf.push(b'\n');
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The record model: who writes when, in which conversation, and what.
#[derive(Debug, Clone)]
struct RecordWriter {
    rng: Rng,
    seq: u64,
    ts_ms: u64,
    users: u64,
    conversations: u64,
    /// Mean gap between messages at peak activity.
    peak_gap_ms: u64,
    text: TextWriter,
    recent: [u32; RECENT],
    next_recent: usize,
}

impl RecordWriter {
    fn new(opts: &ChatLogOptions) -> Self {
        let users = u64::from(opts.users.max(1));
        let mut w = Self {
            rng: Rng::new(opts.seed),
            seq: 0,
            ts_ms: START_UNIX_MS,
            users,
            // Many direct conversations and some groups: twice as many as users.
            conversations: (2 * users).min(u64::from(u32::MAX)),
            peak_gap_ms: (PEAK_MS_PER_USER_MESSAGE / users).max(1),
            text: TextWriter {
                cjk: share_threshold(opts.cjk_share),
                paste: share_threshold(opts.long_paste_share),
            },
            recent: [0; RECENT],
            next_recent: 0,
        };
        for i in 0..RECENT {
            w.recent[i] = w.popular_conversation();
        }
        w
    }

    fn write(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        self.seq += 1;
        self.ts_ms += self.next_gap_ms();
        let conv = self.next_conversation();
        let from = self.sender(conv);
        let meta = RecordMeta {
            seq: self.seq,
            ts_ms: self.ts_ms,
            from,
            conv,
        };
        out.extend_from_slice(b"{\"seq\":");
        push_decimal(out, meta.seq);
        out.extend_from_slice(b",\"ts\":");
        push_decimal(out, meta.ts_ms);
        out.extend_from_slice(b",\"from\":\"user");
        push_decimal(out, u64::from(from));
        out.extend_from_slice(b"\",\"conv\":\"c");
        push_decimal(out, u64::from(conv));
        out.extend_from_slice(b"\",\"text\":\"");
        self.text.write(&mut self.rng, out);
        out.extend_from_slice(b"\"}");
        meta
    }

    /// Exponential gaps whose mean follows the time of day and week; at least 1 ms so
    /// timestamps grow strictly.
    fn next_gap_ms(&mut self) -> u64 {
        let hours = self.ts_ms / HOUR_MS;
        let weekday = (hours / 24 + EPOCH_WEEKDAY) % 7;
        let mut activity = WEEKDAY_ACTIVITY[(hours % 24) as usize];
        if weekday >= 5 {
            activity = (activity * WEEKEND_FACTOR / 1000).max(1);
        }
        let mean_ms = self.peak_gap_ms * 1000 / activity;
        let unit = EXPONENTIAL_1024.sample(self.rng.next_u64());
        (mean_ms * unit / 1024).max(1)
    }

    fn next_conversation(&mut self) -> u32 {
        let r = self.rng.next_u64();
        if (r >> 32) < CONTINUE_THRESHOLD {
            return self.recent[(r as usize) % RECENT];
        }
        let conv = self.popular_conversation();
        self.recent[self.next_recent] = conv;
        self.next_recent = (self.next_recent + 1) % RECENT;
        conv
    }

    /// A conversation, low numbers more often (the minimum of two uniform draws).
    fn popular_conversation(&mut self) -> u32 {
        let r = self.rng.next_u64();
        let skewed = (r & 0xffff_ffff).min(r >> 32);
        ((skewed * self.conversations) >> 32) as u32
    }

    /// A member of `conv`: a fixed run of users from a conversation-dependent base; two
    /// members for most conversations (direct messages), 3–15 for every third (groups).
    fn sender(&mut self, conv: u32) -> u32 {
        let conv = u64::from(conv);
        let members = if conv.is_multiple_of(3) {
            3 + conv % 13
        } else {
            2
        };
        let base = conv.wrapping_mul(2_654_435_761) % self.users;
        ((base + self.rng.below(members)) % self.users) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(opts: ChatLogOptions, n: usize) -> Vec<serde_json::Value> {
        ChatLog::new(opts)
            .into_records()
            .take(n)
            .map(|line| serde_json::from_slice(&line).expect("valid JSON"))
            .collect()
    }

    fn text_chars(v: &serde_json::Value) -> usize {
        v["text"]
            .as_str()
            .expect("text is a string")
            .chars()
            .count()
    }

    fn is_cjk(c: char) -> bool {
        ('\u{3040}'..='\u{30ff}').contains(&c) || ('\u{4e00}'..='\u{9fff}').contains(&c)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let read = |seed| {
            let mut v = Vec::new();
            let opts = ChatLogOptions {
                seed,
                ..ChatLogOptions::default()
            };
            ChatLog::new(opts)
                .take(1 << 20)
                .read_to_end(&mut v)
                .unwrap();
            v
        };
        let a = read(5);
        assert_eq!(a.len(), 1 << 20);
        assert_eq!(a, read(5));
        assert_ne!(a, read(6));
    }

    #[test]
    fn lines_are_json_records_with_growing_seq_and_ts() {
        let opts = ChatLogOptions::default();
        let users = u64::from(opts.users);
        let recs = records(opts, 20_000);
        let mut last_ts = 0;
        for (i, r) in recs.iter().enumerate() {
            let obj = r.as_object().expect("an object");
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 5, "{r}");
            assert_eq!(r["seq"].as_u64(), Some(i as u64 + 1));
            let ts = r["ts"].as_u64().expect("ts is an integer");
            assert!(ts > last_ts, "ts must grow strictly: {r}");
            last_ts = ts;
            let from = r["from"].as_str().unwrap().strip_prefix("user").unwrap();
            assert!(from.parse::<u64>().unwrap() < users);
            let conv = r["conv"].as_str().unwrap().strip_prefix('c').unwrap();
            assert!(conv.parse::<u64>().unwrap() < 2 * users);
            assert!(text_chars(r) > 0);
        }
    }

    #[test]
    fn reader_yields_iterator_records_as_lines() {
        let mut expected = Vec::new();
        for line in ChatLog::new(ChatLogOptions::default())
            .into_records()
            .take(3000)
        {
            expected.extend_from_slice(&line);
            expected.push(b'\n');
        }
        let mut got = vec![0u8; expected.len()];
        // Odd read sizes cross line and buffer boundaries.
        let mut log = ChatLog::new(ChatLogOptions::default());
        let mut filled = 0;
        while filled < got.len() {
            let end = (filled + 777).min(got.len());
            filled += log.read(&mut got[filled..end]).unwrap();
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn write_record_reports_the_fields_it_wrote() {
        let mut log = ChatLog::new(ChatLogOptions::default());
        let mut line = Vec::new();
        for _ in 0..100 {
            line.clear();
            let meta = log.write_record(&mut line);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["seq"].as_u64(), Some(meta.seq));
            assert_eq!(v["ts"].as_u64(), Some(meta.ts_ms));
            assert_eq!(v["from"], format!("user{}", meta.from));
            assert_eq!(v["conv"], format!("c{}", meta.conv));
        }
    }

    #[test]
    fn text_lengths_are_chat_like_with_a_share_of_pastes() {
        let n = 20_000;
        let mut lens: Vec<usize> = records(ChatLogOptions::default(), n)
            .iter()
            .map(text_chars)
            .collect();
        lens.sort_unstable();
        let median = lens[n / 2];
        assert!((10..=60).contains(&median), "median {median}");
        // Pastes are the only texts of 300+ characters (short ones stop near 254).
        let pastes = lens.iter().filter(|&&l| l >= 300).count() as f64 / n as f64;
        assert!((0.04..0.06).contains(&pastes), "paste share {pastes}");
        assert!(
            *lens.last().unwrap() <= 8300,
            "longest {}",
            lens.last().unwrap()
        );
    }

    #[test]
    fn cjk_share_is_respected() {
        let share = |cjk_share| {
            let opts = ChatLogOptions {
                cjk_share,
                ..ChatLogOptions::default()
            };
            let recs = records(opts, 10_000);
            let cjk = recs.iter().filter(|r| {
                let t = r["text"].as_str().unwrap();
                // English messages never contain CJK; CJK ones are mostly CJK.
                t.chars().any(is_cjk)
            });
            cjk.count() as f64 / recs.len() as f64
        };
        assert_eq!(share(0.0), 0.0);
        let default = share(0.2);
        assert!((0.17..0.23).contains(&default), "{default}");
        assert!(share(1.0) > 0.95);
    }

    #[test]
    fn office_hours_are_busier_than_nights_and_weekends() {
        // Enough records to span more than a week at the default rate.
        let mut by_slot = [0u64; 3]; // weekday office hours, weekday night, weekend
        let mut log = ChatLog::new(ChatLogOptions::default());
        let mut line = Vec::new();
        let mut days = 0;
        while days < 8 {
            line.clear();
            let m = log.write_record(&mut line);
            let hours = m.ts_ms / HOUR_MS;
            days = (m.ts_ms - START_UNIX_MS) / (24 * HOUR_MS);
            let weekday = (hours / 24 + EPOCH_WEEKDAY) % 7;
            let hour = hours % 24;
            if weekday >= 5 {
                by_slot[2] += 1;
            } else if (9..17).contains(&hour) {
                by_slot[0] += 1;
            } else if hour < 6 {
                by_slot[1] += 1;
            }
        }
        // Per hour: 5 × 8 office hours, 5 × 6 night hours, 2 × 24 weekend hours.
        let office = by_slot[0] / 40;
        let night = by_slot[1] / 30;
        let weekend = by_slot[2] / 48;
        assert!(office > 20 * night, "{by_slot:?}");
        assert!(office > 3 * weekend, "{by_slot:?}");
        assert!(weekend > 0 && night > 0, "{by_slot:?}");
    }

    #[test]
    fn conversations_are_bursty() {
        // Most messages continue one of the few recently active conversations, so the
        // conversation of a message usually appeared among the 32 before it. Drawn
        // independently from the 400 conversations, that would happen about 10 % of the
        // time.
        let recs: Vec<RecordMeta> = {
            let mut log = ChatLog::new(ChatLogOptions::default());
            let mut line = Vec::new();
            (0..10_000).map(|_| log.write_record(&mut line)).collect()
        };
        let repeats = recs
            .windows(33)
            .filter(|w| w[..32].iter().any(|m| m.conv == w[32].conv))
            .count();
        assert!(repeats > 6_000, "{repeats}");
        let distinct: std::collections::HashSet<u32> = recs.iter().map(|m| m.conv).collect();
        assert!(
            distinct.len() > 200,
            "all conversations get used: {}",
            distinct.len()
        );
    }

    #[test]
    fn chat_text_compresses_well() {
        let mut text = Vec::new();
        ChatLog::new(ChatLogOptions::default())
            .take(4 << 20)
            .read_to_end(&mut text)
            .unwrap();
        let packed = zstd::bulk::compress(&text, 3).unwrap();
        let ratio = text.len() as f64 / packed.len() as f64;
        assert!(ratio >= 2.0, "ratio {ratio}");
    }

    #[test]
    fn degenerate_options_still_produce_valid_records() {
        let opts = ChatLogOptions {
            seed: 0,
            users: 0,
            cjk_share: f64::NAN,
            long_paste_share: 7.0,
        };
        for r in records(opts, 50) {
            assert_eq!(r["from"], "user0");
            assert!(text_chars(&r) >= 1000, "all pastes: {}", text_chars(&r));
        }
    }
}
