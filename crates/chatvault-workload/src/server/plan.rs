//! A day's plan for one tenant: when each record is sent, in which conversation, by whom,
//! whether it edits or deletes an earlier message, and which file it carries. The text is
//! not part of the plan (see `day.rs`), so replaying plans to resume a server is cheap.
//!
//! Invariants:
//! - The plan of tenant `t` for day `d` is a pure function of the options, the tenant's
//!   layout, and its [`TenantState`] after day `d - 1`, which is itself a pure function of
//!   the options and `d`: the generator state after `d` days is recomputable by replaying
//!   plans, with no file to trust.
//! - Per conversation, `seq` starts at 1 and grows by 1 per record, across days and
//!   months; timestamps never decrease and stay inside the day.
//! - An edit or delete targets a plain message (kind `msg`) of the same conversation
//!   with a smaller `seq` that no earlier record deleted.
//! - A forward references a file an earlier record of the same tenant created.

use super::calendar::{DAY_MS, weekday};
use super::layout::TenantLayout;
use super::media::{MediaFile, MediaKinds};
use super::options::ServerOptions;
use crate::chat_log::{HOUR_MS, WEEKDAY_ACTIVITY};
use crate::rng::{EXPONENTIAL_1024, Rng, derive_seed, share_threshold};

/// Edits and deletes target one of a conversation's last few plain messages.
const RECENT_TARGETS: usize = 4;
/// Forwards pick one of the tenant's last this many new files.
const FORWARD_POOL: usize = 256;
/// Mean number of records in a burst (a short exchange in one conversation).
const BURST_MEAN: u64 = 5;
/// Mean gap between the records of a burst.
const BURST_GAP_MEAN_MS: u64 = 25_000;

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A new message.
    Msg,
    /// A new text for an earlier message.
    Edit,
    /// Removes an earlier message.
    Delete,
}

/// One planned record.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) ts_ms: u64,
    pub(crate) seq: u64,
    /// The edited or deleted `seq`; 0 for messages.
    pub(crate) target: u64,
    pub(crate) tenant: u32,
    pub(crate) conv: u32,
    pub(crate) from: u32,
    pub(crate) kind: Kind,
    /// Index into the day's attachments, or [`Event::NO_MEDIA`].
    pub(crate) media: u32,
}

impl Event {
    pub(crate) const NO_MEDIA: u32 = u32::MAX;
}

/// A file attached to a record: new on this day, or a forward of an earlier one.
#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub(crate) file: MediaFile,
    pub(crate) forward: bool,
}

/// Options turned into thresholds and counts once.
#[derive(Debug, Clone)]
pub(crate) struct PlanParams {
    seed: u64,
    /// Working-day records per tenant, before the day's jitter.
    weekday_records: u64,
    weekend: u64,
    edit: u64,
    delete: u64,
    attachment: u64,
    forward: u64,
    start_day: u64,
    media: MediaKinds,
}

impl PlanParams {
    pub(crate) fn new(opts: &ServerOptions) -> Self {
        let users = u64::from(opts.users_per_tenant.max(1));
        let active = (users * share_threshold(opts.active_user_share)) >> 32;
        Self {
            seed: opts.seed,
            weekday_records: active * u64::from(opts.messages_per_active_user),
            weekend: share_threshold(opts.weekend_activity),
            edit: share_threshold(opts.edit_share),
            delete: share_threshold(opts.delete_share),
            attachment: share_threshold(opts.attachment_share),
            forward: share_threshold(opts.forward_share),
            start_day: u64::from(opts.start_day),
            media: MediaKinds::new(opts.media_size_percent),
        }
    }

    /// Days since 1970 of day `day`.
    pub(crate) fn unix_day(&self, day: u32) -> u64 {
        self.start_day + u64::from(day)
    }

    /// The seed of the text of tenant `tenant` on day `day`.
    pub(crate) fn text_seed(&self, tenant: u32, day: u32) -> u64 {
        derive_seed(self.seed, "server text", stream_index(tenant, day))
    }
}

fn stream_index(tenant: u32, day: u32) -> u64 {
    (u64::from(tenant) << 32) | u64::from(day)
}

/// A conversation's last plain messages, the candidates for edits and deletes.
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    /// `(seq, sender)`, oldest first.
    items: [(u64, u32); RECENT_TARGETS],
    len: usize,
}

impl Recent {
    fn push(&mut self, seq: u64, from: u32) {
        if self.len == RECENT_TARGETS {
            self.items.copy_within(1.., 0);
            self.len -= 1;
        }
        self.items[self.len] = (seq, from);
        self.len += 1;
    }

    fn remove(&mut self, i: usize) {
        self.items.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }
}

/// What a tenant's plan for the next day depends on besides the options and the layout.
#[derive(Debug, Clone)]
pub(crate) struct TenantState {
    /// Last `seq` per conversation (0: none yet).
    last_seq: Vec<u64>,
    recent: Vec<Recent>,
    /// The last [`FORWARD_POOL`] new files, a ring.
    pool: Vec<MediaFile>,
    pool_next: usize,
}

impl TenantState {
    pub(crate) fn new(layout: &TenantLayout) -> Self {
        let n = layout.conversations() as usize;
        Self {
            last_seq: vec![0; n],
            recent: vec![Recent::default(); n],
            pool: Vec::new(),
            pool_next: 0,
        }
    }
}

/// Plans day `day` of tenant `tenant`: appends its events, sorted by time, to `events`
/// and its files to `attachments`, and moves `state` past the day.
pub(crate) fn plan_tenant_day(
    params: &PlanParams,
    layout: &TenantLayout,
    state: &mut TenantState,
    (tenant, day): (u32, u32),
    events: &mut Vec<Event>,
    attachments: &mut Vec<Attachment>,
) {
    let mut rng = Rng::new(derive_seed(
        params.seed,
        "server plan",
        stream_index(tenant, day),
    ));
    let first = events.len();
    if layout.conversations() > 0 {
        let n = record_count(params, &mut rng, day);
        let day_start = params.unix_day(day) * DAY_MS;
        schedule(&mut rng, layout, day_start, n, tenant, events);
    }
    let day_events = &mut events[first..];
    // The plan index (in `seq` until assigned) breaks timestamp ties deterministically.
    day_events.sort_unstable_by_key(|e| (e.ts_ms, e.seq));
    let mut new_files = 0;
    for e in day_events {
        decide(params, &mut rng, state, e, attachments, &mut new_files, day);
    }
}

/// The day's number of records: the weekday or weekend level, ±10 %.
fn record_count(params: &PlanParams, rng: &mut Rng, day: u32) -> u64 {
    let mut n = params.weekday_records;
    if weekday(params.unix_day(day)) >= 5 {
        n = (n * params.weekend) >> 32;
    }
    n * (900 + rng.below(201)) / 1000
}

/// Appends `n` records in bursts: a popular conversation, a start hour weighted by office
/// activity, a few records with exponential gaps, clipped to the day.
fn schedule(
    rng: &mut Rng,
    layout: &TenantLayout,
    day_start: u64,
    n: u64,
    tenant: u32,
    events: &mut Vec<Event>,
) {
    let total_activity: u64 = WEEKDAY_ACTIVITY.iter().sum();
    let day_end = day_start + DAY_MS - 1;
    let mut planned = 0;
    while planned < n {
        let conv = layout.popular(rng.next_u64());
        let mut ts = day_start + activity_hour(rng.below(total_activity)) * HOUR_MS;
        ts += rng.below(HOUR_MS);
        let len = 1 + EXPONENTIAL_1024.sample(rng.next_u64()) * (BURST_MEAN - 1) / 1024;
        for _ in 0..len.min(n - planned) {
            events.push(Event {
                ts_ms: ts.min(day_end),
                seq: planned,
                target: 0,
                tenant,
                conv,
                from: layout.sender(conv, rng.next_u64()),
                kind: Kind::Msg,
                media: Event::NO_MEDIA,
            });
            planned += 1;
            ts += EXPONENTIAL_1024.sample(rng.next_u64()) * BURST_GAP_MEAN_MS / 1024;
        }
    }
}

/// The hour whose cumulative activity first exceeds `x`.
fn activity_hour(mut x: u64) -> u64 {
    for (hour, &a) in WEEKDAY_ACTIVITY.iter().enumerate() {
        if x < a {
            return hour as u64;
        }
        x -= a;
    }
    23
}

/// Assigns the event's `seq` and decides whether it is a message (with or without a file),
/// an edit or a delete.
fn decide(
    params: &PlanParams,
    rng: &mut Rng,
    state: &mut TenantState,
    e: &mut Event,
    attachments: &mut Vec<Attachment>,
    new_files: &mut u64,
    day: u32,
) {
    let c = e.conv as usize;
    state.last_seq[c] += 1;
    e.seq = state.last_seq[c];
    let r = rng.next_u64();
    let (x, y) = (r >> 32, r & 0xffff_ffff);
    let recent = &mut state.recent[c];
    if recent.len > 0 && x < params.edit + params.delete {
        let i = rng.below(recent.len as u64) as usize;
        (e.target, e.from) = recent.items[i];
        e.kind = if x < params.edit {
            Kind::Edit
        } else {
            recent.remove(i);
            Kind::Delete
        };
        return;
    }
    recent.push(e.seq, e.from);
    if y < params.attachment {
        let attachment = attach(params, rng, state, (e.tenant, day), new_files);
        e.media = attachments.len() as u32;
        attachments.push(attachment);
    }
}

/// A forward of a recent file of the tenant, or a new file.
fn attach(
    params: &PlanParams,
    rng: &mut Rng,
    state: &mut TenantState,
    (tenant, day): (u32, u32),
    new_files: &mut u64,
) -> Attachment {
    let r = rng.next_u64();
    if !state.pool.is_empty() && (r >> 32) < params.forward {
        let file = state.pool[rng.below(state.pool.len() as u64) as usize].clone();
        return Attachment {
            file,
            forward: true,
        };
    }
    let file = params
        .media
        .new_file(params.seed, (tenant, day, *new_files), rng);
    *new_files += 1;
    if state.pool.len() < FORWARD_POOL {
        state.pool.push(file.clone());
    } else {
        state.pool[state.pool_next] = file.clone();
        state.pool_next = (state.pool_next + 1) % FORWARD_POOL;
    }
    Attachment {
        file,
        forward: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_hours_follow_the_table() {
        assert_eq!(activity_hour(0), 0);
        assert_eq!(activity_hour(WEEKDAY_ACTIVITY[0]), 1);
        let total: u64 = WEEKDAY_ACTIVITY.iter().sum();
        assert_eq!(activity_hour(total - 1), 23);
    }

    #[test]
    fn recent_keeps_the_last_messages_in_order() {
        let mut r = Recent::default();
        for seq in 1..=6 {
            r.push(seq, 0);
        }
        assert_eq!(r.len, RECENT_TARGETS);
        assert_eq!(r.items.map(|(s, _)| s), [3, 4, 5, 6]);
        r.remove(1);
        assert_eq!(&r.items[..r.len], &[(3, 0), (5, 0), (6, 0)]);
    }

    #[test]
    fn weekends_are_quieter() {
        let params = PlanParams::new(&ServerOptions::default());
        let mut rng = Rng::new(1);
        // Day 0 is a Monday, day 5 a Saturday.
        let monday = record_count(&params, &mut rng, 0);
        let saturday = record_count(&params, &mut rng, 5);
        assert!(monday > 4 * saturday && saturday > 0, "{monday} {saturday}");
    }
}
