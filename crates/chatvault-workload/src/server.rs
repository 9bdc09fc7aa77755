//! The server data-directory generator: tenants, conversations and a day-by-day history of
//! message logs and media, as a chat server's data directory holds them.
//!
//! Invariants:
//! - The generator state after `d` days is a pure function of the options and `d`
//!   ([`Server::resume`] recomputes it by replaying the cheap part of each day, the plan),
//!   so generating days `0..a` then `a..b` yields exactly the days `0..b`.
//! - Tenants are independent streams (seeds derived by tenant and day): adding a tenant
//!   does not change the others' records.
//! - The disk output (`disk.rs`) is exactly [`Day::records`] and [`Day::media`].

mod calendar;
mod day;
mod disk;
mod layout;
mod media;
mod options;
mod plan;

pub use day::{Day, DayRecords, Record};
pub use disk::{WriteStats, advance, generate};
pub use layout::{ConversationId, ConversationKind, TenantId};
pub use media::{MediaFile, MediaId};
pub use options::{DiskLayout, ServerOptions, TsStyle};

use layout::{Naming, TenantLayout};
use plan::{PlanParams, TenantState, plan_tenant_day};

use crate::rng::share_threshold;
use crate::text::TextWriter;

/// What a planned record does: 0 a message, 1 an edit, 2 a deletion (for the Mattermost
/// view, `mattermost.rs`).
pub(crate) fn plan_kind(e: &plan::Event) -> u8 {
    match e.kind {
        plan::Kind::Msg => 0,
        plan::Kind::Edit => 1,
        plan::Kind::Delete => 2,
    }
}

/// A synthetic chat server that produces its history one day at a time.
///
/// ```
/// use chatvault_workload::{Server, ServerOptions};
///
/// let mut server = Server::new(ServerOptions::tiny());
/// let day = server.next_day();
/// let first = day.records().next().unwrap();
/// assert_eq!(first.seq, 1);
/// assert!(first.line.starts_with(b"{\"seq\":1,\"ts\":"));
/// // Resuming after one day continues where `server` is now.
/// let mut resumed = Server::resume(ServerOptions::tiny(), 1);
/// let a: Vec<_> = server.next_day().records().collect();
/// let b: Vec<_> = resumed.next_day().records().collect();
/// assert_eq!(a, b);
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    opts: ServerOptions,
    params: PlanParams,
    text: TextWriter,
    naming: Naming,
    layouts: Vec<TenantLayout>,
    states: Vec<TenantState>,
    days_done: u32,
}

impl Server {
    /// A server before its day 0.
    pub fn new(opts: ServerOptions) -> Self {
        let layouts: Vec<TenantLayout> = (0..opts.tenants)
            .map(|t| TenantLayout::new(&opts, t))
            .collect();
        Self {
            params: PlanParams::new(&opts),
            text: TextWriter {
                cjk: share_threshold(opts.cjk_share),
                paste: share_threshold(opts.long_paste_share),
            },
            naming: Naming::new(&opts),
            states: layouts.iter().map(TenantState::new).collect(),
            layouts,
            opts,
            days_done: 0,
        }
    }

    /// The server after `days_done` days, ready to produce day `days_done`. Replays the
    /// days' plans (timing, kinds, files) but renders no text and touches no disk.
    pub fn resume(opts: ServerOptions, days_done: u32) -> Self {
        let mut server = Self::new(opts);
        for _ in 0..days_done {
            server.plan_next_day();
        }
        server
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// Days produced so far: the next day is day `days_done()`.
    pub fn days_done(&self) -> u32 {
        self.days_done
    }

    /// Produces the next day.
    pub fn next_day(&mut self) -> Day {
        let index = self.days_done;
        let (events, attachments) = self.plan_next_day();
        Day {
            index,
            events,
            attachments,
            text_seeds: (0..self.opts.tenants)
                .map(|t| self.params.text_seed(t, index))
                .collect(),
            text: self.text,
            naming: self.naming,
            layout: self.opts.layout,
            ts_style: self.opts.ts_style,
        }
    }

    /// Plans the next day of every tenant and merges their records by time.
    fn plan_next_day(&mut self) -> (Vec<plan::Event>, Vec<plan::Attachment>) {
        let day = self.days_done;
        let (mut events, mut attachments) = (Vec::new(), Vec::new());
        for (t, (layout, state)) in self.layouts.iter().zip(&mut self.states).enumerate() {
            let tenant = (t as u32, day);
            plan_tenant_day(
                &self.params,
                layout,
                state,
                tenant,
                &mut events,
                &mut attachments,
            );
        }
        // Stable: equal times keep tenant order, and each tenant's own plan order.
        events.sort_by_key(|e| e.ts_ms);
        self.days_done += 1;
        (events, attachments)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// A parsed record with the fields every line must have.
    struct Parsed {
        record: Record,
        json: serde_json::Value,
    }

    fn parse(record: Record) -> Parsed {
        let json: serde_json::Value = serde_json::from_slice(&record.line).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&record.line));
        });
        Parsed { record, json }
    }

    fn days(opts: &ServerOptions, n: u32) -> Vec<Vec<Parsed>> {
        let mut server = Server::new(opts.clone());
        (0..n)
            .map(|_| server.next_day().records().map(parse).collect())
            .collect()
    }

    fn key(r: &Record) -> (TenantId, ConversationId) {
        (r.tenant, r.conversation)
    }

    #[test]
    fn lines_are_json_with_the_documented_fields() {
        for p in days(&ServerOptions::tiny(), 4).iter().flatten() {
            let (j, r) = (&p.json, &p.record);
            let line = std::str::from_utf8(&r.line).unwrap();
            let mut at = 0;
            for k in ["seq", "ts", "tenant", "conv", "from", "kind", "text"] {
                let pos = line.find(&format!("\"{k}\":")).expect(k);
                assert!(pos >= at, "{k} out of order: {line}");
                at = pos;
            }
            assert_eq!(j["seq"].as_u64(), Some(r.seq));
            assert_eq!(j["ts"].as_u64(), Some(r.ts_ms));
            assert_eq!(j["tenant"], r.tenant.to_string());
            assert_eq!(j["conv"], r.conversation.to_string());
            assert!(j["from"].as_str().unwrap().starts_with('u'));
            let kind = j["kind"].as_str().unwrap();
            assert!(["msg", "edit", "delete"].contains(&kind));
            assert_eq!(j.get("target").is_some(), kind != "msg", "{j}");
            if let Some(m) = j.get("media") {
                assert_eq!(kind, "msg");
                assert_eq!(m["id"].as_str().unwrap().len(), 32);
                assert!(m["size"].as_u64().unwrap() > 0);
                assert!(m["mime"].as_str().unwrap().contains('/'));
            }
            assert!(!r.line.contains(&b'\n'));
        }
    }

    #[test]
    fn seq_is_contiguous_and_ts_monotonic_per_conversation() {
        let mut last: HashMap<(TenantId, ConversationId), (u64, u64)> = HashMap::new();
        let mut prev_ts = 0;
        for (d, day) in days(&ServerOptions::tiny(), 10).iter().enumerate() {
            let day_start = (20_458 + d as u64) * calendar::DAY_MS;
            for p in day {
                let r = &p.record;
                assert!(r.ts_ms >= prev_ts, "server-wide time order");
                prev_ts = r.ts_ms;
                assert!((day_start..day_start + calendar::DAY_MS).contains(&r.ts_ms));
                let (seq, ts) = last.get(&key(r)).copied().unwrap_or((0, 0));
                assert_eq!(r.seq, seq + 1, "{}", String::from_utf8_lossy(&r.line));
                assert!(r.ts_ms >= ts);
                last.insert(key(r), (r.seq, r.ts_ms));
            }
        }
    }

    #[test]
    fn edits_and_deletes_target_earlier_live_messages() {
        let opts = ServerOptions::tiny();
        let mut live: HashMap<(TenantId, ConversationId), HashSet<u64>> = HashMap::new();
        let (mut total, mut edits, mut deletes) = (0u32, 0u32, 0u32);
        for p in days(&opts, 10).iter().flatten() {
            let msgs = live.entry(key(&p.record)).or_default();
            total += 1;
            match p.json["kind"].as_str().unwrap() {
                "msg" => {
                    msgs.insert(p.record.seq);
                }
                kind => {
                    let target = p.json["target"].as_u64().unwrap();
                    assert!(target < p.record.seq);
                    assert!(
                        msgs.contains(&target),
                        "{kind} of a dead or non-message seq"
                    );
                    if kind == "delete" {
                        msgs.remove(&target);
                        deletes += 1;
                        assert_eq!(p.json["text"], "");
                    } else {
                        edits += 1;
                    }
                }
            }
        }
        let (e, d) = (f64::from(edits), f64::from(deletes));
        let t = f64::from(total);
        assert!((0.02..0.04).contains(&(e / t)), "edits {edits} of {total}");
        assert!(
            (0.005..0.016).contains(&(d / t)),
            "deletes {deletes} of {total}"
        );
    }

    #[test]
    fn a_share_of_attachments_forward_earlier_files() {
        let opts = ServerOptions {
            attachment_share: 0.3,
            media_size_percent: 1,
            ..ServerOptions::tiny()
        };
        let mut server = Server::new(opts);
        let mut created: HashMap<String, (u64, String)> = HashMap::new();
        let (mut attachments, mut forwards) = (0u32, 0u32);
        let mut cross_conversation = 0;
        let mut first_conv: HashMap<String, String> = HashMap::new();
        for _ in 0..5 {
            let day = server.next_day();
            for p in day.records().map(parse) {
                let Some(m) = p.json.get("media") else {
                    continue;
                };
                let id = m["id"].as_str().unwrap().to_string();
                let conv = format!("{}/{}", p.record.tenant, p.record.conversation);
                attachments += 1;
                if m.get("fwd").is_some() {
                    forwards += 1;
                    let (size, mime) = &created[&id];
                    assert_eq!(m["size"].as_u64(), Some(*size));
                    assert_eq!(m["mime"].as_str(), Some(mime.as_str()));
                    cross_conversation += usize::from(first_conv[&id] != conv);
                } else {
                    let meta = (m["size"].as_u64().unwrap(), m["mime"].to_string());
                    let meta = (meta.0, meta.1.trim_matches('"').to_string());
                    assert!(created.insert(id.clone(), meta).is_none(), "id reused");
                    first_conv.insert(id, conv);
                }
            }
            let new: Vec<_> = day.media().map(|f| f.id.to_string()).collect();
            assert!(new.iter().all(|id| created.contains_key(id)));
        }
        let share = f64::from(forwards) / f64::from(attachments);
        assert!((0.12..0.18).contains(&share), "{forwards} of {attachments}");
        assert!(cross_conversation > 0);
    }

    #[test]
    fn conversation_popularity_is_skewed() {
        let opts = ServerOptions::default();
        let mut counts: HashMap<(TenantId, ConversationId), u64> = HashMap::new();
        let mut server = Server::new(opts.clone());
        for _ in 0..3 {
            for r in server.next_day().records() {
                *counts.entry(key(&r)).or_default() += 1;
            }
        }
        let mut sorted: Vec<u64> = counts.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = sorted.iter().sum();
        let conversations = (opts.direct_chats + opts.groups + opts.channels) * opts.tenants;
        // Zipf(1.1) over 344 conversations: the top 10 % carry about 70 % of records.
        let top: u64 = sorted[..conversations as usize / 10].iter().sum();
        assert!(top * 100 > total * 55, "top 10 %: {top} of {total}");
        assert!(sorted[0] > 20 * sorted[sorted.len() / 2], "{sorted:?}");
    }

    #[test]
    fn working_hours_and_weekdays_are_busier() {
        let per_day: Vec<Vec<Parsed>> = days(&ServerOptions::tiny(), 7);
        let counts: Vec<usize> = per_day.iter().map(Vec::len).collect();
        // Day 0 is a Monday: days 5 and 6 are the weekend.
        assert!(
            counts[..5]
                .iter()
                .all(|&c| c > 4 * counts[5].max(counts[6])),
            "{counts:?}"
        );
        let hour = |p: &Parsed| (p.record.ts_ms / 3_600_000) % 24;
        let office = per_day[..5]
            .iter()
            .flatten()
            .filter(|p| (9..17).contains(&hour(p)));
        let night = per_day[..5].iter().flatten().filter(|p| hour(p) < 6);
        let (office, night) = (office.count(), night.count());
        assert!(office > 10 * night, "office {office}, night {night}");
    }

    #[test]
    fn texts_are_chat_like_in_length() {
        let mut lens: Vec<usize> = days(&ServerOptions::default(), 1)[0]
            .iter()
            .filter(|p| p.json["kind"] != "delete")
            .map(|p| p.json["text"].as_str().unwrap().chars().count())
            .collect();
        lens.sort_unstable();
        let n = lens.len() as f64;
        let median = lens[lens.len() / 2];
        assert!((15..=40).contains(&median), "median {median}");
        let pastes = lens.iter().filter(|&&l| l >= 300).count() as f64 / n;
        assert!((0.04..0.06).contains(&pastes), "{pastes}");
    }

    #[test]
    fn resume_equals_running_on() {
        let opts = ServerOptions::tiny();
        let mut straight = Server::new(opts.clone());
        for _ in 0..4 {
            straight.next_day();
        }
        let mut resumed = Server::resume(opts, 4);
        assert_eq!(resumed.days_done(), 4);
        for _ in 0..3 {
            let (a, b) = (straight.next_day(), resumed.next_day());
            assert_eq!(a.index(), b.index());
            assert!(a.records().eq(b.records()));
            assert!(a.media().eq(b.media()));
        }
    }

    #[test]
    fn same_seed_same_records_and_tenants_are_independent() {
        let lines = |opts: ServerOptions, tenant: u32| -> Vec<Vec<u8>> {
            let mut server = Server::new(opts);
            (0..2)
                .flat_map(|_| server.next_day().records().collect::<Vec<_>>())
                .filter(|r| r.tenant == TenantId(tenant))
                .map(|r| r.line)
                .collect()
        };
        let tiny = ServerOptions::tiny();
        let a = lines(tiny.clone(), 0);
        assert!(!a.is_empty());
        assert_eq!(a, lines(tiny.clone(), 0));
        let more_tenants = ServerOptions {
            tenants: 3,
            ..tiny.clone()
        };
        assert_eq!(a, lines(more_tenants, 0));
        assert_ne!(a, lines(ServerOptions { seed: 2, ..tiny }, 0));
    }

    #[test]
    fn records_iterate_repeatably() {
        let day = Server::new(ServerOptions::tiny()).next_day();
        assert_eq!(day.records().len(), day.record_count());
        assert!(day.records().eq(day.records()));
    }

    #[test]
    fn empty_server_produces_empty_days() {
        let opts = ServerOptions {
            tenants: 1,
            direct_chats: 0,
            groups: 0,
            channels: 0,
            ..ServerOptions::tiny()
        };
        let day = Server::new(opts).next_day();
        assert_eq!(day.record_count(), 0);
        assert_eq!(day.media().count(), 0);
    }
}
