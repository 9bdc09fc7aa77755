//! Retention: which snapshots of a group a policy keeps, and why.
//!
//! The rules follow restic's `forget`, which operators know: snapshots are taken newest
//! first; `last N` keeps the N newest; `daily N` keeps the newest snapshot of each of the
//! N most recent calendar days that have one (likewise hourly, ISO-weekly, monthly,
//! yearly); `within P` keeps everything taken within period P before the group's newest
//! snapshot; `within_daily P` keeps the newest of each day within P (and so on); `tags`
//! keeps every snapshot carrying one of them. A snapshot is kept if any rule keeps it,
//! and every rule that does is reported.
//!
//! Snapshots are grouped by [`GroupKey`]: source kind, host, paths, and — for snapshots
//! signed by a `backup`-role key — that writer key. A policy is applied to each group on
//! its own, so a chat node's snapshots (a compromised node's, however they are dated)
//! never decide which of another writer's are kept. Snapshots signed by `full` and `admin`
//! keys share groups: those keys may delete any snapshot anyway, and sharing lets an
//! operator's plan, the snapshots `repair snapshots` saves and those of a replaced
//! operator key age together. There is no option to group more coarsely (no `--group-by`,
//! and a plan's `[forget]` applies the same groups).
//!
//! Invariants:
//! - Pure: the verdict depends only on the policy and the snapshots' times, ids, tags and
//!   writer sequences, never on the clock, so a dry run shows exactly what a real run
//!   does, and periods are measured back from the newest snapshot, not from now (a server
//!   that stopped backing up does not lose its last backups to time passing).
//! - "Newest first" is [`Recency`](crate::Recency), the ranking every choice of the latest
//!   snapshot uses: at equal times a repaired snapshot counts as newer than its original.
//! - Group keys are typed: two groups are one only if every field is equal, however the
//!   paths are spelled (spaces included).
//! - Calendar buckets are taken in the policy's time zone (DST included), from a bundled
//!   time zone database: the same inputs give the same verdict on every host.
//! - An empty policy is refused: it would forget everything.

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

use crate::config::Config;
use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::repo::Recency;
use crate::snapshot::Snapshot;

/// A calendar period such as `7d`, `1y6m` or `36h`: years, months, days and hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl FromStr for Period {
    type Err = Error;

    /// Parses `<n>y`, `<n>m`, `<n>d`, `<n>h` parts in that order, e.g. `1y6m`, `30d`, `2d12h`.
    fn from_str(s: &str) -> Result<Period> {
        let bad = || Error::invalid("period", format!("{s:?}: expected e.g. 30d, 1y6m, 36h"));
        let mut p = Period::default();
        let mut rest = s.trim();
        let mut last_unit = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let n: u32 = rest[..digits].parse().map_err(|_| bad())?;
            let (slot, order) = match rest[digits..].chars().next() {
                Some('y') => (&mut p.years, 1),
                Some('m') => (&mut p.months, 2),
                Some('d') => (&mut p.days, 3),
                Some('h') => (&mut p.hours, 4),
                _ => return Err(bad()),
            };
            if order <= last_unit {
                return Err(bad());
            }
            last_unit = order;
            *slot = n;
            rest = &rest[digits + 1..];
        }
        Ok(p)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        let mut any = false;
        for (n, unit) in parts.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, "{n}{unit}")?;
            any = true;
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

/// Which snapshots to keep. By default every count is 0, every period absent and no tag
/// listed: an empty policy, which [`RetentionPolicy::apply`] refuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the N most recent hours that have one.
    pub hourly: u32,
    /// … of each of the N most recent days.
    pub daily: u32,
    /// … of each of the N most recent ISO weeks (Monday to Sunday).
    pub weekly: u32,
    /// … of each of the N most recent months.
    pub monthly: u32,
    /// … of each of the N most recent years.
    pub yearly: u32,
    /// Keep every snapshot taken within this period before the newest one.
    pub within: Option<Period>,
    /// Keep the newest snapshot of each hour within this period.
    pub within_hourly: Option<Period>,
    /// … of each day within this period.
    pub within_daily: Option<Period>,
    /// … of each ISO week within this period.
    pub within_weekly: Option<Period>,
    /// … of each month within this period.
    pub within_monthly: Option<Period>,
    /// … of each year within this period.
    pub within_yearly: Option<Period>,
    /// Keep every snapshot carrying one of these tags.
    pub tags: Vec<String>,
    /// IANA time zone for calendar buckets (`Europe/Berlin`). By default UTC.
    pub time_zone: Option<String>,
}

/// A snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken.
    pub time_unix_ms: i64,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its writer sequence (orders snapshots of equal time, see [`Recency`]).
    pub writer_seq: u64,
}

impl Candidate {
    fn recency(&self) -> Recency {
        Recency::from_parts(self.time_unix_ms, &self.tags, self.writer_seq, self.id)
    }
}

impl From<&Snapshot> for Candidate {
    fn from(s: &Snapshot) -> Self {
        Candidate {
            id: s.id,
            time_unix_ms: s.record.time_unix_ms,
            tags: s.record.tags.clone(),
            writer_seq: s.record.writer_seq,
        }
    }
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// One of the newest N.
    Last,
    /// The newest of its calendar bucket under a counted rule (`hourly`, `daily`, …); the
    /// bucket is named (`2026-03-29`, `2026-W13`, …).
    Bucket(&'static str, String),
    /// Taken within the `within` period.
    Within(Period),
    /// The newest of its bucket within a `within_*` period.
    WithinBucket(&'static str, Period, String),
    /// Carries a kept tag.
    Tag(String),
    /// On hold (legal hold): kept whatever the policy says.
    Held,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Last => f.write_str("last"),
            KeepReason::Bucket(rule, b) => write!(f, "{rule} {b}"),
            KeepReason::Within(p) => write!(f, "within {p}"),
            KeepReason::WithinBucket(rule, p, b) => write!(f, "within-{rule} {p}: {b}"),
            KeepReason::Tag(t) => write!(f, "tag {t}"),
            KeepReason::Held => f.write_str("held"),
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The snapshot.
    pub id: SnapshotId,
    /// When it was taken.
    pub time_unix_ms: i64,
    /// Every rule that keeps it; empty means it is forgotten.
    pub reasons: Vec<KeepReason>,
}

impl Verdict {
    /// Whether any rule keeps it.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The calendar buckets, finest first.
#[derive(Clone, Copy)]
enum Bucket {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    const ALL: [Bucket; 5] = [
        Bucket::Hour,
        Bucket::Day,
        Bucket::Week,
        Bucket::Month,
        Bucket::Year,
    ];

    fn rule(self) -> &'static str {
        match self {
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
            Bucket::Week => "weekly",
            Bucket::Month => "monthly",
            Bucket::Year => "yearly",
        }
    }

    fn label(self, z: &Zoned) -> String {
        let d = z.date();
        match self {
            Bucket::Hour => format!("{d} {:02}h", z.hour()),
            Bucket::Day => d.to_string(),
            Bucket::Week => {
                let w = d.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            Bucket::Month => format!("{:04}-{:02}", d.year(), d.month()),
            Bucket::Year => format!("{:04}", d.year()),
        }
    }
}

impl RetentionPolicy {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        *self
            == RetentionPolicy {
                time_zone: self.time_zone.clone(),
                ..RetentionPolicy::default()
            }
    }

    fn counts(&self) -> [u32; 5] {
        [
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
    }

    fn within_buckets(&self) -> [Option<Period>; 5] {
        [
            self.within_hourly,
            self.within_daily,
            self.within_weekly,
            self.within_monthly,
            self.within_yearly,
        ]
    }

    fn zone(&self) -> Result<TimeZone> {
        match &self.time_zone {
            None => Ok(TimeZone::UTC),
            Some(name) => TimeZone::get(name)
                .map_err(|e| Error::invalid("time zone", format!("{name:?}: {e}"))),
        }
    }

    /// Decides, for the snapshots of one group, which to keep; verdicts come newest first.
    /// Fails on an empty policy, an unknown time zone or a time out of range.
    pub fn apply(&self, candidates: &[Candidate]) -> Result<Vec<Verdict>> {
        if self.is_empty() {
            return Err(Error::invalid(
                "retention policy",
                "no rule given: it would forget every snapshot",
            ));
        }
        let tz = self.zone()?;
        let mut sorted: Vec<&Candidate> = candidates.iter().collect();
        sorted.sort_by_key(|c| std::cmp::Reverse(c.recency()));
        let zoned = sorted
            .iter()
            .map(|c| {
                Timestamp::from_millisecond(c.time_unix_ms)
                    .map(|t| t.to_zoned(tz.clone()))
                    .map_err(|e| Error::invalid("snapshot time", e.to_string()))
            })
            .collect::<Result<Vec<Zoned>>>()?;
        let mut verdicts: Vec<Verdict> = sorted
            .iter()
            .map(|c| Verdict {
                id: c.id,
                time_unix_ms: c.time_unix_ms,
                reasons: Vec::new(),
            })
            .collect();
        let Some(newest) = zoned.first() else {
            return Ok(verdicts);
        };
        for v in verdicts.iter_mut().take(self.last as usize) {
            v.reasons.push(KeepReason::Last);
        }
        for (bucket, count) in Bucket::ALL.into_iter().zip(self.counts()) {
            keep_buckets(&mut verdicts, &zoned, bucket, count as usize, |label| {
                KeepReason::Bucket(bucket.rule(), label)
            });
        }
        if let Some(p) = self.within {
            let since = since(newest, p)?;
            for (v, z) in verdicts.iter_mut().zip(&zoned) {
                if z.timestamp() >= since {
                    v.reasons.push(KeepReason::Within(p));
                }
            }
        }
        for (bucket, period) in Bucket::ALL.into_iter().zip(self.within_buckets()) {
            let Some(p) = period else { continue };
            let since = since(newest, p)?;
            let inside = zoned.iter().take_while(|z| z.timestamp() >= since).count();
            keep_buckets(
                &mut verdicts[..inside],
                &zoned[..inside],
                bucket,
                usize::MAX,
                |l| KeepReason::WithinBucket(bucket.rule(), p, l),
            );
        }
        for (v, c) in verdicts.iter_mut().zip(&sorted) {
            for t in c.tags.iter().filter(|t| self.tags.contains(t)) {
                v.reasons.push(KeepReason::Tag(t.clone()));
            }
        }
        Ok(verdicts)
    }
}

/// Keeps the newest snapshot of each of the `count` most recent buckets (newest first).
fn keep_buckets(
    verdicts: &mut [Verdict],
    zoned: &[Zoned],
    bucket: Bucket,
    count: usize,
    reason: impl Fn(String) -> KeepReason,
) {
    let mut left = count;
    let mut last: Option<String> = None;
    for (v, z) in verdicts.iter_mut().zip(zoned) {
        if left == 0 {
            break;
        }
        let label = bucket.label(z);
        if last.as_ref() != Some(&label) {
            v.reasons.push(reason(label.clone()));
            last = Some(label);
            left -= 1;
        }
    }
}

/// The instant `p` before `newest`, in calendar terms in its time zone.
fn since(newest: &Zoned, p: Period) -> Result<Timestamp> {
    let span = Span::new()
        .try_years(i64::from(p.years))
        .and_then(|s| s.try_months(i64::from(p.months)))
        .and_then(|s| s.try_days(i64::from(p.days)))
        .and_then(|s| s.try_hours(i64::from(p.hours)))
        .map_err(|e| Error::invalid("period", e.to_string()))?;
    newest
        .checked_sub(span)
        .map(|z| z.timestamp())
        .map_err(|e| Error::invalid("period", e.to_string()))
}

/// The group a snapshot belongs to for retention, and for a restore drill's "latest of
/// each group": its source kind, host, paths (a message-log frontend's set name) and, for
/// a `backup`-role writer, its key (see the module documentation). Ordered field by
/// field, so groups list by source kind, then host, then paths, then writer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    /// The frontend's source kind (`fs`, `msglog`, `stdin`, …).
    pub source_kind: String,
    /// The host recorded.
    pub host: String,
    /// The paths recorded, in order.
    pub paths: Vec<String>,
    /// The `backup`-role writer that signed the snapshots; `None` for the snapshots of
    /// `full` and `admin` keys, which form one group.
    pub writer: Option<PublicKey>,
}

impl GroupKey {
    /// The group of a loaded snapshot; `config` says its writer's role. A writer the
    /// config does not list (which a verified snapshot never has) counts as a group of
    /// its own.
    pub fn of(s: &Snapshot, config: &Config) -> GroupKey {
        let trusted = config
            .writers
            .iter()
            .any(|w| w.key == s.writer && w.role.can_read());
        GroupKey {
            source_kind: s.record.source_kind.clone(),
            host: s.record.host.clone(),
            paths: s.record.paths.clone(),
            writer: (!trusted).then_some(s.writer),
        }
    }
}

impl fmt::Display for GroupKey {
    /// `"fs" host "chat-node-1" paths ["/srv/a b", "/etc"] writer 1a2b3c4d` (or `writer
    /// full/admin`): the strings quoted and escaped, so no two groups print alike and no
    /// control character reaches a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} host {:?} paths {:?} writer {}",
            self.source_kind,
            self.host,
            self.paths,
            self.writer
                .map_or_else(|| "full/admin".to_owned(), |w| w.short())
        )
    }
}

/// The verdicts for one group of snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVerdicts {
    /// The group.
    pub group: GroupKey,
    /// Its snapshots, newest first.
    pub verdicts: Vec<Verdict>,
}

/// What [`Repository::forget`](crate::Repository::forget) decided and did.
#[derive(Debug, Clone, Default)]
pub struct ForgetReport {
    /// Every group, in group order.
    pub groups: Vec<GroupVerdicts>,
    /// Snapshots that did not load: left alone, since their group is unknown.
    pub unreadable: Vec<(SnapshotId, String)>,
    /// Snapshot records removed (empty on a dry run).
    pub removed: Vec<SnapshotId>,
}

impl crate::Repository {
    /// Applies `policy` to every group of snapshots and, unless `dry_run`, removes the
    /// snapshot records it does not keep. Their data stays until a prune. Needs a full or
    /// admin key. Snapshots that do not load are reported and never removed; held
    /// snapshots are always kept ([`KeepReason::Held`]), and a hold that does not verify
    /// stops the run before anything is removed.
    pub fn forget(&self, policy: &RetentionPolicy, dry_run: bool) -> Result<ForgetReport> {
        let held = self.holds_by_snapshot()?;
        let mut report = ForgetReport::default();
        let mut groups: std::collections::BTreeMap<GroupKey, Vec<Candidate>> = Default::default();
        for id in self.snapshot_ids()? {
            match self.load_snapshot(id) {
                Ok(s) => groups
                    .entry(GroupKey::of(&s, self.config()))
                    .or_default()
                    .push(Candidate::from(&s)),
                Err(e) => report.unreadable.push((id, e.to_string())),
            }
        }
        for (group, candidates) in groups {
            let mut verdicts = policy.apply(&candidates)?;
            for v in &mut verdicts {
                if held.contains_key(&v.id) {
                    v.reasons.push(KeepReason::Held);
                }
            }
            report.groups.push(GroupVerdicts { group, verdicts });
        }
        if !dry_run {
            for v in report.groups.iter().flat_map(|g| &g.verdicts) {
                if !v.keep() {
                    // The holds listed above: a held snapshot is never reached here, and
                    // the check stays as a guard without listing every hold again.
                    self.delete_unless_held(v.id, &held)?;
                    report.removed.push(v.id);
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots at the given UTC times (`YYYY-MM-DDTHH:MM`), id = their index + 1.
    fn at(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate {
                id: SnapshotId::from_bytes([i as u8 + 1; 32]),
                time_unix_ms: format!("{t}:00Z")
                    .parse::<Timestamp>()
                    .unwrap()
                    .as_millisecond(),
                tags: Vec::new(),
                writer_seq: 0,
            })
            .collect()
    }

    /// The kept snapshots' times, newest first, as given.
    fn kept(policy: &RetentionPolicy, c: &[Candidate], times: &[&str]) -> Vec<String> {
        let mut by_id = std::collections::HashMap::new();
        for (c, t) in c.iter().zip(times) {
            by_id.insert(c.id, t.to_string());
        }
        policy
            .apply(c)
            .unwrap()
            .into_iter()
            .filter(Verdict::keep)
            .map(|v| by_id[&v.id].clone())
            .collect()
    }

    #[test]
    fn periods_parse_and_print() {
        let p: Period = "1y6m".parse().unwrap();
        assert_eq!((p.years, p.months, p.days, p.hours), (1, 6, 0, 0));
        assert_eq!("2d12h".parse::<Period>().unwrap().to_string(), "2d12h");
        for bad in ["", "d", "5", "5x", "1d1y", "1d1d", "-1d"] {
            assert!(bad.parse::<Period>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let c = at(&["2026-01-01T00:00"]);
        assert!(RetentionPolicy::default().apply(&c).is_err());
        let tz_only = RetentionPolicy {
            time_zone: Some("UTC".into()),
            ..Default::default()
        };
        assert!(tz_only.apply(&c).is_err());
        let bad_zone = RetentionPolicy {
            last: 1,
            time_zone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        assert!(bad_zone.apply(&c).is_err());
    }

    /// Hand-computed: two snapshots a day over a month boundary.
    #[test]
    fn daily_and_last_across_a_month_boundary() {
        let times = [
            "2026-03-02T18:00",
            "2026-03-02T06:00",
            "2026-03-01T18:00",
            "2026-03-01T06:00",
            "2026-02-28T18:00",
            "2026-02-28T06:00",
            "2026-02-27T18:00",
        ];
        let c = at(&times);
        let daily3 = RetentionPolicy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&daily3, &c, &times),
            ["2026-03-02T18:00", "2026-03-01T18:00", "2026-02-28T18:00"]
        );
        let last2_monthly2 = RetentionPolicy {
            last: 2,
            monthly: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&last2_monthly2, &c, &times),
            ["2026-03-02T18:00", "2026-03-02T06:00", "2026-02-28T18:00"]
        );
    }

    /// Hand-computed: ISO weeks and years around New Year (2026-01-01 is a Thursday, so
    /// 2025-12-29 … 2026-01-04 is week 2026-W01).
    #[test]
    fn weekly_and_yearly_across_new_year() {
        let times = [
            "2026-01-05T10:00", // W02
            "2026-01-04T10:00", // W01
            "2026-01-01T10:00", // W01
            "2025-12-31T10:00", // W01 (ISO year 2026), calendar year 2025
            "2025-12-28T10:00", // 2025-W52
            "2024-06-01T10:00",
        ];
        let c = at(&times);
        let weekly3 = RetentionPolicy {
            weekly: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&weekly3, &c, &times),
            ["2026-01-05T10:00", "2026-01-04T10:00", "2025-12-28T10:00"]
        );
        let yearly5 = RetentionPolicy {
            yearly: 5,
            ..Default::default()
        };
        assert_eq!(
            kept(&yearly5, &c, &times),
            ["2026-01-05T10:00", "2025-12-31T10:00", "2024-06-01T10:00"]
        );
        let v = weekly3.apply(&c).unwrap();
        assert_eq!(
            v[1].reasons,
            [KeepReason::Bucket("weekly", "2026-W01".into())]
        );
    }

    /// Days are the operator's days: 23:30 UTC is already tomorrow in Berlin, and the
    /// spring-forward day (2026-03-29, 23 hours long) is still one day.
    #[test]
    fn daily_buckets_follow_the_time_zone() {
        let times = [
            "2026-03-29T21:00", // 23:00 CEST, 29th
            "2026-03-28T23:30", // 00:30 CET, 29th in Berlin; 28th in UTC
            "2026-03-28T12:00", // 28th both
        ];
        let c = at(&times);
        let utc = RetentionPolicy {
            daily: 7,
            ..Default::default()
        };
        // In UTC the 23:30 snapshot is the newest of the 28th.
        assert_eq!(
            kept(&utc, &c, &times),
            ["2026-03-29T21:00", "2026-03-28T23:30"]
        );
        let berlin = RetentionPolicy {
            daily: 7,
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        };
        assert_eq!(
            kept(&berlin, &c, &times),
            ["2026-03-29T21:00", "2026-03-28T12:00"]
        );
        let v = berlin.apply(&c).unwrap();
        assert_eq!(
            v[0].reasons,
            [KeepReason::Bucket("daily", "2026-03-29".into())]
        );
    }

    /// `within` counts back from the newest snapshot, in calendar months: from 31 March,
    /// one month back is 28 February (clamped), not "30 days".
    #[test]
    fn within_periods_are_calendar_periods_from_the_newest_snapshot() {
        let times = [
            "2026-03-31T12:00",
            "2026-03-01T12:00",
            "2026-02-28T12:00",
            "2026-02-28T11:59",
        ];
        let c = at(&times);
        let month = RetentionPolicy {
            within: Some("1m".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(kept(&month, &c, &times), &times[..3]);
        let v = month.apply(&c).unwrap();
        assert_eq!(v[0].reasons, [KeepReason::Within("1m".parse().unwrap())]);
    }

    #[test]
    fn within_daily_keeps_one_per_day_inside_the_period_only() {
        let times = [
            "2026-03-10T20:00",
            "2026-03-10T08:00",
            "2026-03-09T20:00",
            "2026-03-08T20:00",
            "2026-03-01T20:00",
        ];
        let c = at(&times);
        let p = RetentionPolicy {
            within_daily: Some("2d".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            kept(&p, &c, &times),
            ["2026-03-10T20:00", "2026-03-09T20:00", "2026-03-08T20:00"]
        );
    }

    #[test]
    fn tags_keep_and_every_reason_is_listed() {
        let mut c = at(&["2026-03-10T20:00", "2026-01-01T00:00"]);
        c[1].tags = vec!["audit".into(), "other".into()];
        let p = RetentionPolicy {
            last: 1,
            daily: 1,
            tags: vec!["audit".into()],
            ..Default::default()
        };
        let v = p.apply(&c).unwrap();
        assert_eq!(
            v[0].reasons,
            [
                KeepReason::Last,
                KeepReason::Bucket("daily", "2026-03-10".into())
            ]
        );
        assert_eq!(v[1].reasons, [KeepReason::Tag("audit".into())]);
        assert_eq!(v[0].reasons[1].to_string(), "daily 2026-03-10");
    }

    /// A repair keeps its original's time: `last 1` must keep the repaired snapshot (it
    /// restores completely), whatever the ids; before, the tie went to the greater id.
    #[test]
    fn a_repaired_snapshot_counts_as_newer_than_its_original() {
        let mut c = at(&["2026-03-10T20:00", "2026-03-10T20:00"]);
        c[0].tags = vec![crate::REPAIRED_TAG.into()]; // id 1, the smaller
        let p = RetentionPolicy {
            last: 1,
            ..Default::default()
        };
        let v = p.apply(&c).unwrap();
        assert_eq!(v[0].id, c[0].id);
        assert!(v[0].keep() && !v[1].keep());
    }

    #[test]
    fn order_of_input_does_not_matter_and_ties_break_by_id() {
        let times = ["2026-03-10T20:00", "2026-03-10T20:00", "2026-03-09T20:00"];
        let mut c = at(&times);
        let p = RetentionPolicy {
            last: 1,
            ..Default::default()
        };
        let a = p.apply(&c).unwrap();
        c.reverse();
        assert_eq!(p.apply(&c).unwrap(), a);
        assert_eq!(a[0].id, SnapshotId::from_bytes([2; 32]));
    }
}
