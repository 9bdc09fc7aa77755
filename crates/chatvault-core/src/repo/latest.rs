//! "The latest snapshot": one filter and one ranking for every caller that picks the
//! newest snapshot — a backup's parent (both frontends), a message-log set at a point in
//! time, `latest` on the command line, a restore drill's snapshot per group, and the order
//! in which retention counts a group's snapshots.
//!
//! # Ranking
//!
//! [`Recency`] orders snapshots, the most recent last:
//!
//! 1. by the record's time;
//! 2. at equal times, a repaired snapshot (tag [`REPAIRED_TAG`]) after one that is not: a
//!    repair keeps its original's time, and the repaired snapshot is the one that restores
//!    completely, so it must win over its damaged original;
//! 3. then by the writer sequence (the one saved later wins: a repair of a repair);
//! 4. then by the snapshot id, so that exact ties resolve the same way on every host and in
//!    every caller.
//!
//! Invariants:
//! - Every choice of "the newest" in the workspace goes through [`Recency`]; nothing else
//!   compares snapshot times to pick one.
//! - Selection never fails on a snapshot that does not load: it is skipped and reported in
//!   [`LatestSnapshots::unreadable`], and the caller decides (a backup builds on the next
//!   one, a drill fails, the command line warns).
//! - A `backup` key selects among its own snapshots, from its writer journal
//!   ([`Repository::load_parent_snapshot`]); every other snapshot is reported unreadable
//!   (`PermissionDenied`).

use std::collections::BTreeMap;

use super::{REPAIRED_TAG, Repository};
use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use crate::retention::GroupKey;
use crate::snapshot::{Snapshot, SnapshotRecord};

/// How recent a snapshot is: the one ranking behind every choice of "the latest" (see the
/// module documentation of `repo/latest.rs`). Greater is more recent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recency {
    time_unix_ms: i64,
    repaired: bool,
    writer_seq: u64,
    id: SnapshotId,
}

impl Recency {
    pub(crate) fn from_parts(
        time_unix_ms: i64,
        tags: &[String],
        writer_seq: u64,
        id: SnapshotId,
    ) -> Recency {
        Recency {
            time_unix_ms,
            repaired: tags.iter().any(|t| t == REPAIRED_TAG),
            writer_seq,
            id,
        }
    }

    /// The recency of a loaded snapshot.
    pub fn of(s: &Snapshot) -> Recency {
        Recency::of_record(s.id, &s.record)
    }

    /// The recency of snapshot `id` with this record.
    pub fn of_record(id: SnapshotId, r: &SnapshotRecord) -> Recency {
        Recency::from_parts(r.time_unix_ms, &r.tags, r.writer_seq, id)
    }
}

/// Which snapshots [`Repository::latest_snapshots`] considers. By default (every field
/// unset) all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Only snapshots of this host. By default, any host.
    pub host: Option<String>,
    /// Only snapshots of this source kind (`fs`, `msglog`, `stdin`, …). By default, any.
    pub source_kind: Option<String>,
    /// Only snapshots whose paths are exactly these, in this order (a message-log backup
    /// set's only path is its name). By default, any paths.
    pub paths: Option<Vec<String>>,
    /// Only snapshots carrying every one of these tags. By default, none is required.
    pub tags: Vec<String>,
    /// Only snapshots taken at or before this time (ms since the Unix epoch): the state
    /// at that point. By default, any time.
    pub at_or_before_unix_ms: Option<i64>,
    /// Only snapshots signed by this writer key. By default, any trusted writer.
    pub writer: Option<PublicKey>,
}

impl SnapshotFilter {
    /// Whether a snapshot passes every condition set.
    pub fn matches(&self, s: &Snapshot) -> bool {
        let r = &s.record;
        self.host.as_ref().is_none_or(|h| *h == r.host)
            && self
                .source_kind
                .as_ref()
                .is_none_or(|k| *k == r.source_kind)
            && self.paths.as_ref().is_none_or(|p| *p == r.paths)
            && self.tags.iter().all(|t| r.tags.contains(t))
            && self
                .at_or_before_unix_ms
                .is_none_or(|t| r.time_unix_ms <= t)
            && self.writer.is_none_or(|w| w == s.writer)
    }
}

/// What [`Repository::latest_snapshots`] found.
#[derive(Debug, Default)]
pub struct LatestSnapshots {
    /// The latest matching snapshot of each retention group ([`GroupKey`]: source kind,
    /// host, paths, and the writer if it is a `backup` key).
    pub by_group: BTreeMap<GroupKey, Snapshot>,
    /// Snapshots that did not load (damaged, untrusted, or not readable with this key),
    /// with the reason; whether they would have matched is unknown.
    pub unreadable: Vec<(SnapshotId, Error)>,
}

impl LatestSnapshots {
    /// The latest matching snapshot of all (the latest of its group, so the most recent
    /// of the groups' latest).
    pub fn newest(&self) -> Option<&Snapshot> {
        self.by_group.values().max_by_key(|s| Recency::of(s))
    }

    /// [`newest`](Self::newest), owned.
    pub fn into_newest(self) -> Option<Snapshot> {
        self.by_group.into_values().max_by_key(Recency::of)
    }
}

impl Repository {
    /// The latest snapshot matching `filter` in each retention group, ranked by
    /// [`Recency`], with the snapshots that did not load. A `backup` key sees only its
    /// own snapshots, through its writer journal.
    ///
    /// Loads every snapshot record (one read each); fails only when the listing or local
    /// state fails, never on a damaged snapshot.
    pub fn latest_snapshots(&self, filter: &SnapshotFilter) -> Result<LatestSnapshots> {
        let mut out = LatestSnapshots::default();
        for id in self.snapshot_ids()? {
            let s = match self.load_parent_snapshot(id) {
                Ok(s) => s,
                Err(e @ (Error::Io(_) | Error::Cache(_))) => return Err(e),
                Err(e) => {
                    out.unreadable.push((id, e));
                    continue;
                }
            };
            if !filter.matches(&s) {
                continue;
            }
            let slot = out.by_group.entry(GroupKey::of(&s, &self.config));
            match slot {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(s);
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    if Recency::of(o.get()) < Recency::of(&s) {
                        o.insert(s);
                    }
                }
            }
        }
        out.unreadable.sort_by_key(|(id, _)| *id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobId;
    use crate::snapshot::{SnapshotKind, Summary};

    fn snap(id: u8, time: i64, tags: &[&str], seq: u64) -> Snapshot {
        Snapshot {
            id: SnapshotId::from_bytes([id; 32]),
            writer: PublicKey::from_bytes([7; 32]),
            record: SnapshotRecord {
                time_unix_ms: time,
                host: "h".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                source_kind: "fs".into(),
                paths: vec!["/a".into()],
                parent: None,
                kind: SnapshotKind::Full,
                root: BlobId::from_bytes([0; 32]),
                summary: Summary::default(),
                cursors: Default::default(),
                writer_seq: seq,
                prev_writer_snapshot: None,
                origin: None,
            },
        }
    }

    #[test]
    fn time_first_then_repaired_then_sequence_then_id() {
        let newer = snap(1, 2000, &[], 1);
        let older_repaired = snap(9, 1000, &[REPAIRED_TAG], 9);
        assert!(Recency::of(&newer) > Recency::of(&older_repaired));
        // A repair keeps its original's time and wins over it, whatever the ids.
        let original = snap(9, 1000, &[], 5);
        let repaired = snap(1, 1000, &["daily", REPAIRED_TAG], 6);
        assert!(Recency::of(&repaired) > Recency::of(&original));
        // A repair of a repair: the one saved later.
        let again = snap(0, 1000, &[REPAIRED_TAG], 7);
        assert!(Recency::of(&again) > Recency::of(&repaired));
        // Exact ties: the greater id, the same way every time.
        assert!(Recency::of(&snap(2, 1000, &[], 5)) > Recency::of(&snap(1, 1000, &[], 5)));
    }

    #[test]
    fn a_filter_checks_every_condition_it_sets() {
        let s = snap(1, 1000, &["a", "b"], 1);
        assert!(SnapshotFilter::default().matches(&s));
        let only = |f: SnapshotFilter| f.matches(&s);
        assert!(only(SnapshotFilter {
            host: Some("h".into()),
            source_kind: Some("fs".into()),
            paths: Some(vec!["/a".into()]),
            tags: vec!["b".into()],
            at_or_before_unix_ms: Some(1000),
            writer: Some(PublicKey::from_bytes([7; 32])),
        }));
        assert!(!only(SnapshotFilter {
            host: Some("other".into()),
            ..Default::default()
        }));
        assert!(!only(SnapshotFilter {
            source_kind: Some("msglog".into()),
            ..Default::default()
        }));
        assert!(!only(SnapshotFilter {
            paths: Some(vec!["/a".into(), "/b".into()]),
            ..Default::default()
        }));
        assert!(!only(SnapshotFilter {
            tags: vec!["a".into(), "c".into()],
            ..Default::default()
        }));
        assert!(!only(SnapshotFilter {
            at_or_before_unix_ms: Some(999),
            ..Default::default()
        }));
        assert!(!only(SnapshotFilter {
            writer: Some(PublicKey::from_bytes([8; 32])),
            ..Default::default()
        }));
    }
}
