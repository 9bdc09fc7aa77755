//! [`ServerOptions`]: every knob of the server data-directory generator, its presets, and
//! its encoding in the state file.
//!
//! Invariants:
//! - Options are plain data; the generator derives everything from them and the day number.
//! - [`ServerOptions::encode`] lists every field, and [`ServerOptions::decode`] reads back
//!   exactly the options encoded (floats print in Rust's shortest round-trip form).

use std::io;

/// Options for [`Server`](crate::Server). Shares are 0 to 1 (clamped; NaN is 0).
///
/// Scale: a tenant-day has about `users_per_tenant × active_user_share ×
/// messages_per_active_user` records on weekdays (about 360 bytes each, pastes included),
/// `weekend_activity` times that on weekends. Of the records, `attachment_share` carry a
/// file: screenshots (45 %, median 150 kB), photos (30 %, 2 MB), documents (20 %, 300 kB)
/// and videos (5 %, 8 MB), sizes log-normal around those medians (sigma 0.6) and scaled
/// by `media_size_percent`; `forward_share` of them forward an earlier file instead of
/// creating one. The presets: [`tiny`](Self::tiny) (a few MB a day, for tests and demos)
/// and [`thirty_day_bench`](Self::thirty_day_bench) (about 2.5 GB over 30 days, half media).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerOptions {
    /// Seed of the whole server. By default 1.
    pub seed: u64,
    /// Number of tenants (`t0` …), each with its own users and conversations. By default 2.
    pub tenants: u32,
    /// Users per tenant (`u0` …); 0 is treated as 1. By default 200.
    pub users_per_tenant: u32,
    /// Direct chats per tenant (`dm0` …), each between two users. By default 300.
    pub direct_chats: u32,
    /// Group chats per tenant (`g0` …). By default 40.
    pub groups: u32,
    /// Largest group, in members (at least 3, at most the tenant's users). By default 60.
    pub max_group_size: u32,
    /// Zipf exponent of group sizes 3, 4, … `max_group_size`. By default 1.3.
    pub group_size_exponent: f64,
    /// Channels per tenant (`ch0` …): every user is a member, few post. By default 4.
    pub channels: u32,
    /// Share of a tenant's users active on a working day. By default 0.7.
    pub active_user_share: f64,
    /// Messages per active user per working day. By default 30.
    pub messages_per_active_user: u32,
    /// Activity on Saturdays and Sundays relative to working days. By default 0.15.
    pub weekend_activity: f64,
    /// Zipf exponent of conversation popularity (a random order of a tenant's
    /// conversations is its popularity ranking). By default 1.1.
    pub popularity_exponent: f64,
    /// Share of messages written mostly in CJK characters. By default 0.2.
    pub cjk_share: f64,
    /// Share of messages that are long pastes of 1–8 KiB. By default 0.05.
    pub long_paste_share: f64,
    /// Share of records that edit an earlier message of their conversation. By default 0.03.
    pub edit_share: f64,
    /// Share of records that delete an earlier message of their conversation. By default
    /// 0.01.
    pub delete_share: f64,
    /// Share of messages with an attachment. By default 0.01.
    pub attachment_share: f64,
    /// Share of attachments that forward an earlier file of the same tenant (same media
    /// id, no new file). By default 0.15.
    pub forward_share: f64,
    /// Media sizes in percent of the realistic ones above. By default 100.
    pub media_size_percent: u32,
    /// Day 0 in days since 1970-01-01 (UTC). By default 20458, Monday 2026-01-05.
    pub start_day: u32,
    /// Where log files go on disk. By default [`DiskLayout::Generator`].
    pub layout: DiskLayout,
    /// How a record's `ts` is written. By default [`TsStyle::Millis`].
    pub ts_style: TsStyle,
}

/// Where [`generate`](crate::generate) writes a conversation's month of records,
/// relative to the server root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskLayout {
    /// `logs/<tenant>/<conversation>/<YYYY-MM>.jsonl` (chatvault's default layout).
    #[default]
    Generator,
    /// `<tenant>/conv/<conversation>/<YYYY-MM>.jsonl`: another server's folder structure.
    ConvFolders,
}

/// How a record's `ts` field is written (the record's [`Record::ts_ms`](crate::Record)
/// is the same instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TsStyle {
    /// An integer of milliseconds: `"ts":1767580716417`.
    #[default]
    Millis,
    /// An RFC 3339 string in UTC with milliseconds: `"ts":"2026-01-05T02:38:36.417Z"`.
    Rfc3339,
    /// Slack's decimal seconds as a string: `"ts":"1767580716.417000"`.
    DecimalSeconds,
}

impl DiskLayout {
    fn name(self) -> &'static str {
        match self {
            DiskLayout::Generator => "generator",
            DiskLayout::ConvFolders => "conv-folders",
        }
    }

    /// The layout a name (`generator`, `conv-folders`) stands for.
    pub fn from_name(s: &str) -> Option<Self> {
        [DiskLayout::Generator, DiskLayout::ConvFolders]
            .into_iter()
            .find(|l| l.name() == s)
    }
}

impl TsStyle {
    fn name(self) -> &'static str {
        match self {
            TsStyle::Millis => "ms",
            TsStyle::Rfc3339 => "rfc3339",
            TsStyle::DecimalSeconds => "decimal-seconds",
        }
    }

    /// The style a name (`ms`, `rfc3339`, `decimal-seconds`) stands for.
    pub fn from_name(s: &str) -> Option<Self> {
        [TsStyle::Millis, TsStyle::Rfc3339, TsStyle::DecimalSeconds]
            .into_iter()
            .find(|t| t.name() == s)
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            tenants: 2,
            users_per_tenant: 200,
            direct_chats: 300,
            groups: 40,
            max_group_size: 60,
            group_size_exponent: 1.3,
            channels: 4,
            active_user_share: 0.7,
            messages_per_active_user: 30,
            weekend_activity: 0.15,
            popularity_exponent: 1.1,
            cjk_share: 0.2,
            long_paste_share: 0.05,
            edit_share: 0.03,
            delete_share: 0.01,
            attachment_share: 0.01,
            forward_share: 0.15,
            media_size_percent: 100,
            start_day: 20_458,
            layout: DiskLayout::Generator,
            ts_style: TsStyle::Millis,
        }
    }
}

impl ServerOptions {
    /// A tiny server for tests and demos: 2 tenants of 16 users, about 650 records
    /// (230 kB of logs) and 2–3 MB of media (at a tenth of realistic sizes) per working day.
    pub fn tiny() -> Self {
        Self {
            users_per_tenant: 16,
            direct_chats: 24,
            groups: 6,
            max_group_size: 12,
            channels: 2,
            attachment_share: 0.03,
            media_size_percent: 10,
            ..Self::default()
        }
    }

    /// About 2.5 GB over days 0..30, roughly half log text and half media: 8 tenants of
    /// 800 users, about 135 000 records (48 MB of logs) per working day; 30 days make
    /// 3.1 million records, 1.1 GB of logs in 22 000 files and 1.4 GB in 1 000 media files.
    ///
    /// Realistic attachment rates (the default 1 %) make a server's bytes overwhelmingly
    /// media; this preset lowers `attachment_share` to 0.04 % so the message logs, the
    /// part chatvault treats specially, weigh as much as the media.
    pub fn thirty_day_bench() -> Self {
        Self {
            tenants: 8,
            users_per_tenant: 800,
            direct_chats: 1600,
            groups: 120,
            channels: 10,
            attachment_share: 0.0004,
            ..Self::default()
        }
    }

    /// The options as a flat JSON object body, one `"field": value` per line.
    pub(crate) fn encode(&self) -> String {
        let f = |x: f64| {
            if x.is_finite() {
                format!("{x:?}")
            } else {
                format!("\"{x}\"")
            }
        };
        let fields = [
            ("seed", self.seed.to_string()),
            ("tenants", self.tenants.to_string()),
            ("users_per_tenant", self.users_per_tenant.to_string()),
            ("direct_chats", self.direct_chats.to_string()),
            ("groups", self.groups.to_string()),
            ("max_group_size", self.max_group_size.to_string()),
            ("group_size_exponent", f(self.group_size_exponent)),
            ("channels", self.channels.to_string()),
            ("active_user_share", f(self.active_user_share)),
            (
                "messages_per_active_user",
                self.messages_per_active_user.to_string(),
            ),
            ("weekend_activity", f(self.weekend_activity)),
            ("popularity_exponent", f(self.popularity_exponent)),
            ("cjk_share", f(self.cjk_share)),
            ("long_paste_share", f(self.long_paste_share)),
            ("edit_share", f(self.edit_share)),
            ("delete_share", f(self.delete_share)),
            ("attachment_share", f(self.attachment_share)),
            ("forward_share", f(self.forward_share)),
            ("media_size_percent", self.media_size_percent.to_string()),
            ("start_day", self.start_day.to_string()),
        ];
        let mut lines: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("    \"{k}\": {v}"))
            .collect();
        // Written only when not the default, so state files of the default output (and
        // the golden directory hash) do not change.
        if self.layout != DiskLayout::Generator {
            lines.push(format!("    \"layout\": \"{}\"", self.layout.name()));
        }
        if self.ts_style != TsStyle::Millis {
            lines.push(format!("    \"ts_style\": \"{}\"", self.ts_style.name()));
        }
        lines.join(",\n")
    }

    /// Reads options back from text containing [`encode`](Self::encode)'s output.
    pub(crate) fn decode(text: &str) -> io::Result<Self> {
        Ok(Self {
            seed: field(text, "seed")?,
            tenants: field(text, "tenants")?,
            users_per_tenant: field(text, "users_per_tenant")?,
            direct_chats: field(text, "direct_chats")?,
            groups: field(text, "groups")?,
            max_group_size: field(text, "max_group_size")?,
            group_size_exponent: field(text, "group_size_exponent")?,
            channels: field(text, "channels")?,
            active_user_share: field(text, "active_user_share")?,
            messages_per_active_user: field(text, "messages_per_active_user")?,
            weekend_activity: field(text, "weekend_activity")?,
            popularity_exponent: field(text, "popularity_exponent")?,
            cjk_share: field(text, "cjk_share")?,
            long_paste_share: field(text, "long_paste_share")?,
            edit_share: field(text, "edit_share")?,
            delete_share: field(text, "delete_share")?,
            attachment_share: field(text, "attachment_share")?,
            forward_share: field(text, "forward_share")?,
            media_size_percent: field(text, "media_size_percent")?,
            start_day: field(text, "start_day")?,
            layout: match optional_field::<String>(text, "layout")? {
                None => DiskLayout::Generator,
                Some(n) => DiskLayout::from_name(&n).ok_or_else(|| bad_value("layout"))?,
            },
            ts_style: match optional_field::<String>(text, "ts_style")? {
                None => TsStyle::Millis,
                Some(n) => TsStyle::from_name(&n).ok_or_else(|| bad_value("ts_style"))?,
            },
        })
    }
}

fn bad_value(key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("workload state file: unreadable field {key:?}"),
    )
}

/// Like [`field`], for a field written only when it is not the default.
pub(crate) fn optional_field<T: std::str::FromStr>(text: &str, key: &str) -> io::Result<Option<T>> {
    if text.contains(&format!("\"{key}\":")) {
        field(text, key).map(Some)
    } else {
        Ok(None)
    }
}

/// The value of `"key": value` in `text`, as written by [`ServerOptions::encode`] and the
/// state file (keys are unique there, values are numbers or quoted non-finite floats).
pub(crate) fn field<T: std::str::FromStr>(text: &str, key: &str) -> io::Result<T> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("workload state file: {what} field {key:?}"),
        )
    };
    let pattern = format!("\"{key}\":");
    let start = text.find(&pattern).ok_or_else(|| bad("missing"))? + pattern.len();
    let rest = &text[start..];
    let end = rest.find([',', '}', '\n']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .trim_matches('"')
        .parse()
        .map_err(|_| bad("unreadable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trips_every_preset() {
        for opts in [
            ServerOptions::default(),
            ServerOptions::tiny(),
            ServerOptions::thirty_day_bench(),
        ] {
            let text = format!("{{\n{}\n}}", opts.encode());
            let back = ServerOptions::decode(&text).unwrap();
            assert_eq!(back, opts);
            let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            assert_eq!(json["seed"], opts.seed);
        }
    }

    #[test]
    fn layout_and_ts_style_round_trip_and_are_absent_by_default() {
        assert!(!ServerOptions::default().encode().contains("layout"));
        let opts = ServerOptions {
            layout: DiskLayout::ConvFolders,
            ts_style: TsStyle::DecimalSeconds,
            ..ServerOptions::tiny()
        };
        let text = format!("{{\n{}\n}}", opts.encode());
        assert_eq!(ServerOptions::decode(&text).unwrap(), opts);
        let bad = text.replace("conv-folders", "sideways");
        assert!(ServerOptions::decode(&bad).is_err());
    }

    #[test]
    fn odd_floats_round_trip() {
        let opts = ServerOptions {
            cjk_share: f64::NAN,
            edit_share: f64::INFINITY,
            delete_share: 1e-9,
            forward_share: 0.1 + 0.2,
            ..ServerOptions::default()
        };
        let back = ServerOptions::decode(&opts.encode()).unwrap();
        assert!(back.cjk_share.is_nan());
        assert_eq!(back.edit_share, f64::INFINITY);
        assert_eq!(back.delete_share, 1e-9);
        assert_eq!(back.forward_share, 0.1 + 0.2);
    }

    #[test]
    fn missing_or_bad_fields_are_invalid_data() {
        let err = ServerOptions::decode("{\"seed\": 1}").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let text = ServerOptions::default()
            .encode()
            .replace("\"tenants\": 2", "\"tenants\": -2");
        assert!(ServerOptions::decode(&text).is_err());
    }
}
