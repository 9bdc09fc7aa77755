//! Where a JSONL record keeps its seq, its timestamp and, when they are not in its path,
//! its conversation and tenant: JSON pointers (RFC 6901) and a timestamp format.
//!
//! The default is our own generator's record, `{"seq": 7, "ts": 1767225600000, …}`: a
//! top-level unsigned `seq` and a top-level `ts` in integer milliseconds. Other chat
//! servers write `"ts": "2026-01-05T09:00:00Z"` or Slack's `"ts": "1700000000.000200"`.
//!
//! Invariants:
//! - Every timestamp is turned into integer milliseconds since the Unix epoch, truncated
//!   towards negative infinity (a record at 999 µs is at 0 ms), so seq and time ranges
//!   mean the same thing whatever the source wrote.
//! - A record whose seq or timestamp does not resolve, or does not parse, has no head: it
//!   is still a record (stored, restored), it just has no place in the ranges.
//! - The encoding in node meta (`encode`/`decode`) names the format by a small number that
//!   never changes meaning.

use chatvault_core::cbor::{Reader, Writer};

use crate::error::{Error, Result};

/// How a record's timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TsFormat {
    /// An integer of seconds since the epoch.
    Seconds,
    /// An integer of milliseconds since the epoch (the default).
    #[default]
    Millis,
    /// An integer of microseconds since the epoch.
    Micros,
    /// An integer of nanoseconds since the epoch.
    Nanos,
    /// An RFC 3339 string (`2026-01-05T09:00:00.250Z`, any offset).
    Rfc3339,
    /// Decimal seconds, as a string or a number (Slack's `"1700000000.000200"`).
    DecimalSeconds,
}

impl TsFormat {
    /// Every format, with the name the CLI and plans use for it.
    pub const NAMES: [(&'static str, TsFormat); 6] = [
        ("s", TsFormat::Seconds),
        ("ms", TsFormat::Millis),
        ("us", TsFormat::Micros),
        ("ns", TsFormat::Nanos),
        ("rfc3339", TsFormat::Rfc3339),
        ("decimal-seconds", TsFormat::DecimalSeconds),
    ];

    /// The format a name (`s`, `ms`, `us`, `ns`, `rfc3339`, `decimal-seconds`) stands for.
    pub fn from_name(name: &str) -> Result<TsFormat> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                Error::invalid(
                    "timestamp format",
                    format!(
                        "{name:?}: expected one of {}",
                        Self::NAMES.map(|(n, _)| n).join(", ")
                    ),
                )
            })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("ms", |(n, _)| n)
    }

    fn code(self) -> u64 {
        match self {
            TsFormat::Seconds => 0,
            TsFormat::Millis => 1,
            TsFormat::Micros => 2,
            TsFormat::Nanos => 3,
            TsFormat::Rfc3339 => 4,
            TsFormat::DecimalSeconds => 5,
        }
    }

    fn from_code(c: u64) -> Option<TsFormat> {
        Some(match c {
            0 => TsFormat::Seconds,
            1 => TsFormat::Millis,
            2 => TsFormat::Micros,
            3 => TsFormat::Nanos,
            4 => TsFormat::Rfc3339,
            5 => TsFormat::DecimalSeconds,
            _ => return None,
        })
    }

    /// The value as milliseconds since the epoch, if it is written in this format.
    pub fn to_millis(self, v: &serde_json::Value) -> Option<i64> {
        use serde_json::Value;
        let int = |v: &Value| v.as_i64();
        match self {
            TsFormat::Seconds => int(v)?.checked_mul(1000),
            TsFormat::Millis => int(v),
            TsFormat::Micros => Some(int(v)?.div_euclid(1000)),
            TsFormat::Nanos => Some(int(v)?.div_euclid(1_000_000)),
            TsFormat::Rfc3339 => v
                .as_str()?
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_millisecond()),
            TsFormat::DecimalSeconds => match v {
                Value::String(s) => decimal_seconds(s),
                Value::Number(n) => decimal_seconds(&n.to_string()),
                _ => None,
            },
        }
    }
}

/// `"1700000000.000200"` → 1700000000000 ms (exact decimal arithmetic, truncated towards
/// negative infinity; no float on the way).
fn decimal_seconds(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ms: i64 = 0;
    for (i, b) in frac.bytes().take(3).enumerate() {
        ms += i64::from(b - b'0') * [100, 10, 1][i];
    }
    let below_ms = frac.bytes().skip(3).any(|b| b != b'0');
    let total = secs.checked_mul(1000)?.checked_add(ms)?;
    Some(if neg {
        -total - i64::from(below_ms)
    } else {
        total
    })
}

/// Where a JSONL record keeps its seq, timestamp, conversation and tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFields {
    /// JSON pointer to the seq: an unsigned integer, or a string of digits. By default,
    /// `/seq`.
    pub seq: String,
    /// JSON pointer to the timestamp. By default, `/ts`.
    pub ts: String,
    /// How the timestamp is written. By default, integer milliseconds.
    pub ts_format: TsFormat,
    /// JSON pointer to the conversation, for layouts whose paths do not name it. By
    /// default, none (the path names it).
    pub conversation: Option<String>,
    /// JSON pointer to the tenant, for layouts whose paths do not name it. By default, none.
    pub tenant: Option<String>,
}

impl Default for RecordFields {
    fn default() -> Self {
        RecordFields {
            seq: "/seq".into(),
            ts: "/ts".into(),
            ts_format: TsFormat::Millis,
            conversation: None,
            tenant: None,
        }
    }
}

/// What a record's head says, with what did not resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: Option<u64>,
    pub ts: Option<i64>,
    /// The line is a JSON object (or the fields are the default ones and the fast path
    /// did not need to know).
    pub json: bool,
    pub conversation: Option<String>,
    pub tenant: Option<String>,
}

impl RecordFields {
    /// Whether these are the default fields (top-level `seq`, `ts` in ms, nothing else):
    /// the fast path, and what a stream's meta omits.
    pub fn is_default(&self) -> bool {
        *self == RecordFields::default()
    }

    /// Checks the pointers' syntax (RFC 6901: empty, or starting with `/`).
    pub fn check(&self) -> Result<()> {
        let pointers = [
            ("seq pointer", Some(&self.seq)),
            ("timestamp pointer", Some(&self.ts)),
            ("conversation pointer", self.conversation.as_ref()),
            ("tenant pointer", self.tenant.as_ref()),
        ];
        for (what, p) in pointers {
            if let Some(p) = p
                && !p.is_empty()
                && !p.starts_with('/')
            {
                return Err(Error::invalid(
                    what,
                    format!("{p:?}: a JSON pointer starts with '/' (e.g. /ts or /meta/seq)"),
                ));
            }
        }
        Ok(())
    }

    /// The seq and timestamp of a line, if it has both.
    pub(crate) fn seq_ts(&self, line: &[u8]) -> Option<(u64, i64)> {
        if self.is_default() {
            return crate::records::line_head(line);
        }
        let h = self.head(line, false);
        Some((h.seq?, h.ts?))
    }

    /// Everything the fields point at in a line; `identity` also reads the conversation
    /// and tenant.
    pub(crate) fn head(&self, line: &[u8], identity: bool) -> Head {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            return Head::default();
        };
        if !v.is_object() {
            return Head::default();
        }
        let text = |p: &Option<String>| -> Option<String> {
            match v.pointer(p.as_deref()?)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        Head {
            seq: v.pointer(&self.seq).and_then(|s| match s {
                serde_json::Value::String(s) => s.parse().ok(),
                other => other.as_u64(),
            }),
            ts: v
                .pointer(&self.ts)
                .and_then(|t| self.ts_format.to_millis(t)),
            json: true,
            conversation: if identity {
                text(&self.conversation)
            } else {
                None
            },
            tenant: if identity { text(&self.tenant) } else { None },
        }
    }

    /// The node-meta encoding: `[seq pointer, ts pointer, format]`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.array_head(3);
        w.text(&self.seq);
        w.text(&self.ts);
        w.uint(self.ts_format.code());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> chatvault_core::Result<RecordFields> {
        // Two texts (an empty pointer is one byte) and an integer.
        if r.array_len(1, "record fields")? != 3 {
            return Err(r.corrupt("record fields are not 3 items"));
        }
        let seq = r.text("seq pointer")?.to_owned();
        let ts = r.text("ts pointer")?.to_owned();
        let code = r.u64("ts format")?;
        let ts_format = TsFormat::from_code(code)
            .ok_or_else(|| r.corrupt(format!("unknown ts format {code}")))?;
        Ok(RecordFields {
            seq,
            ts,
            ts_format,
            conversation: None,
            tenant: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(ts: &str, f: TsFormat) -> RecordFields {
        RecordFields {
            seq: "/meta/n".into(),
            ts: ts.into(),
            ts_format: f,
            conversation: Some("/channel".into()),
            tenant: None,
        }
    }

    #[test]
    fn every_timestamp_format_gives_milliseconds() {
        let cases = [
            (TsFormat::Seconds, r#"1700000000"#, 1_700_000_000_000),
            (TsFormat::Millis, r#"1700000000123"#, 1_700_000_000_123),
            (TsFormat::Micros, r#"1700000000123456"#, 1_700_000_000_123),
            (TsFormat::Nanos, r#"1700000000123456789"#, 1_700_000_000_123),
            (TsFormat::Micros, r#"-1"#, -1),
            (
                TsFormat::Rfc3339,
                r#""2023-11-14T22:13:20.123Z""#,
                1_700_000_000_123,
            ),
            (
                TsFormat::Rfc3339,
                r#""2023-11-15T00:13:20.5+02:00""#,
                1_700_000_000_500,
            ),
            (
                TsFormat::DecimalSeconds,
                r#""1700000000.000200""#,
                1_700_000_000_000,
            ),
            (
                TsFormat::DecimalSeconds,
                r#""1700000000.25""#,
                1_700_000_000_250,
            ),
            (
                TsFormat::DecimalSeconds,
                r#"1700000000.5"#,
                1_700_000_000_500,
            ),
            (TsFormat::DecimalSeconds, r#""-0.0005""#, -1),
            (TsFormat::DecimalSeconds, r#""12""#, 12_000),
        ];
        for (f, json, ms) in cases {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(f.to_millis(&v), Some(ms), "{f:?} {json}");
        }
        for (f, json) in [
            (TsFormat::Millis, r#""1700000000123""#),
            (TsFormat::Rfc3339, r#""yesterday""#),
            (TsFormat::Rfc3339, r#"1700000000"#),
            (TsFormat::DecimalSeconds, r#""1.2.3""#),
            (TsFormat::DecimalSeconds, r#"".""#),
            (TsFormat::DecimalSeconds, r#""1e5""#),
            (TsFormat::Seconds, r#"9223372036854775807"#),
        ] {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(f.to_millis(&v), None, "{f:?} {json}");
        }
    }

    #[test]
    fn pointers_reach_nested_fields() {
        let f = fields("/ts", TsFormat::Rfc3339);
        let h = f.head(
            br#"{"meta":{"n":"42"},"ts":"2026-01-05T00:00:00Z","channel":"general"}"#,
            true,
        );
        assert_eq!(h.seq, Some(42));
        assert_eq!(h.ts, Some(1_767_571_200_000));
        assert_eq!(h.conversation.as_deref(), Some("general"));
        assert_eq!(f.seq_ts(br#"{"meta":{"n":1}}"#), None);
        assert_eq!(f.seq_ts(b"not json"), None);
        // The default fields take the fast path and agree with the general one.
        let d = RecordFields::default();
        let line = br#"{"seq":7,"ts":1767698903285,"text":"x"}"#;
        assert_eq!(d.seq_ts(line), Some((7, 1_767_698_903_285)));
        let h = d.head(line, false);
        assert_eq!((h.seq, h.ts), (Some(7), Some(1_767_698_903_285)));
    }

    #[test]
    fn names_and_pointer_syntax() {
        for (name, f) in TsFormat::NAMES {
            assert_eq!(TsFormat::from_name(name).unwrap(), f);
            assert_eq!(f.name(), name);
            assert_eq!(TsFormat::from_code(f.code()), Some(f));
        }
        assert!(TsFormat::from_name("minutes").is_err());
        let mut f = RecordFields::default();
        f.check().unwrap();
        f.ts = "ts".into();
        assert!(f.check().is_err());
    }
}
