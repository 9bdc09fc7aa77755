//! [`PgSource`]: a message table read as a [`ChangeSource`], in one repeatable-read,
//! read-only transaction per backup set.
//!
//! **Cursors.** Rows are found by their change time (`GREATEST(updated, created)`, in
//! ms). A stream's cursor holds a *watermark* `W` and the rows recorded with a change
//! time after it (`seen`: key → change time). A run at database time `N` reads every row
//! of the conversation changed after `W`, skips those recorded at the same change time
//! (in `seen`), and stores the rest:
//! - as a new message (`msg`, and a `delete` after it if it is already deleted) when it
//!   was created after `W` and is not in `seen`: no earlier run can have seen it;
//! - as an edit (or a deletion) otherwise: an earlier run stored it.
//!
//! The new watermark is `max(W, N − settle)`: a change whose time is older than `settle`
//! (default 10 minutes) has committed by now, so every row changed at or before the new
//! watermark has been seen; rows changed after it are read again next time, and `seen`
//! keeps them from being stored twice. `settle` covers the time between a chat server
//! stamping a row and committing it, and the clock skew between the chat server and the
//! database.
//!
//! **What cannot be seen**: two changes of a row between two runs are one edit record
//! (the row's state at the second run); a row deleted from the table (not marked deleted)
//! leaves no tombstone; a change committed more than `settle` after its change time is
//! missed.
//!
//! Invariants: all reads of a set happen in one `REPEATABLE READ READ ONLY` transaction,
//! so the set is one consistent state of the table; a cursor names the mapping it was
//! taken with ([`Mapping::fingerprint`]) and a different one is refused, never applied.

use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

use chatvault_core::cbor::{Reader, Writer};
use chatvault_msglog::{Change, ChangeConversation, ChangeKind, ChangeSource, KnownConversation};

use crate::connect::PgConnect;
use crate::error::{Error, Result};
use crate::mapping::{Mapping, Sql};

const CURSOR_VERSION: u32 = 1;

/// Which clock the set's time `N` (and so the watermarks) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The database's `now()` at the transaction's start: a live chat server.
    #[default]
    Database,
    /// The latest change time in the table (never later than `now()`): a table filled
    /// with history after the fact (an import, a replayed test month), whose change times
    /// lie in the past of the database's clock.
    Table,
}

/// Options of a [`PgSource`].
#[derive(Debug, Clone)]
pub struct PgSourceOptions {
    /// The mapping (a preset's, or the operator's).
    pub mapping: Mapping,
    /// The tenant of every conversation when the mapping has no tenant column. By
    /// default, the database's name.
    pub tenant: Option<String>,
    /// How long a change may take to commit after its change time, plus the clock skew
    /// between the chat server and the database, in ms. By default, 10 minutes.
    pub settle_ms: i64,
    /// The set's clock. By default, the database's.
    pub clock: Clock,
}

impl PgSourceOptions {
    /// Options for a mapping, with the defaults.
    pub fn new(mapping: Mapping) -> Self {
        PgSourceOptions {
            mapping,
            tenant: None,
            settle_ms: 600_000,
            clock: Clock::Database,
        }
    }
}

/// A stream's position in the table (module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub mapping: [u8; 32],
    pub watermark: i64,
    pub seen: BTreeMap<String, i64>,
}

impl Cursor {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(CURSOR_VERSION.into()));
            f.field(1, |w| w.bytes(&self.mapping));
            f.field(2, |w| w.int(self.watermark));
            f.field(3, |w| {
                w.array_head(self.seen.len());
                for (k, t) in &self.seen {
                    w.array_head(2);
                    w.text(k);
                    w.int(*t);
                }
            });
        });
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8], conversation: &str) -> Result<Cursor> {
        let bad = |e: chatvault_core::Error| Error::Cursor {
            conversation: conversation.to_owned(),
            reason: e.to_string(),
        };
        let mut r = Reader::new(bytes, "cursor");
        let mut fields = r.fields().map_err(bad)?;
        r.version(&mut fields, CURSOR_VERSION).map_err(bad)?;
        let mut c = Cursor {
            mapping: [0; 32],
            watermark: i64::MIN,
            seen: BTreeMap::new(),
        };
        while let Some(key) = fields.next_key(&mut r).map_err(bad)? {
            match key {
                1 => c.mapping = r.id("mapping").map_err(bad)?,
                2 => c.watermark = r.i64("watermark").map_err(bad)?,
                3 => {
                    let n = r.array_len(3, "seen").map_err(bad)?;
                    for _ in 0..n {
                        if r.array_len(2, "seen entry").map_err(bad)? != 2 {
                            return Err(bad(r.corrupt("a seen entry is not 2 items")));
                        }
                        let k = r.text("key").map_err(bad)?.to_owned();
                        let t = r.i64("change time").map_err(bad)?;
                        c.seen.insert(k, t);
                    }
                }
                _ => r.skip().map_err(bad)?,
            }
        }
        r.finish().map_err(bad)?;
        Ok(c)
    }
}

/// A row as read.
#[derive(Debug)]
struct Row {
    key: String,
    created: i64,
    order: i64,
    changed: i64,
    deleted: bool,
    json: String,
}

/// A message table, read as a change source in one transaction (module documentation).
///
/// Blocking. Open one per backup set: the transaction's snapshot is the set's state.
pub struct PgSource {
    client: Mutex<postgres::Client>,
    sql: Sql,
    /// The two queries of a run, prepared once (thousands of conversations each run).
    changes: postgres::Statement,
    listing: postgres::Statement,
    opts: PgSourceOptions,
    tenant: String,
    fingerprint: [u8; 32],
    now_ms: i64,
    target: String,
}

impl std::fmt::Debug for PgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSource")
            .field("target", &self.target)
            .field("tenant", &self.tenant)
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

impl PgSource {
    /// Connects, checks the mapping against the table, and starts the set's
    /// repeatable-read, read-only transaction.
    pub fn open(connect: &PgConnect, opts: PgSourceOptions) -> Result<PgSource> {
        let mut client = connect.connect()?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(Error::query("starting the transaction"))?;
        let sql = opts.mapping.sql(&mut client)?;
        // now() is the transaction's start: no change after it is in the snapshot.
        let now = "(floor(extract(epoch from now()) * 1000))::bigint";
        let clock = match opts.clock {
            Clock::Database => format!("SELECT {now}"),
            Clock::Table => format!("SELECT LEAST({now}, {})", sql.latest_change()),
        };
        let now_ms: i64 = client
            .query_one(&clock, &[])
            .map_err(Error::query("reading the set's time"))?
            .get(0);
        let tenant = match &opts.tenant {
            Some(t) => t.clone(),
            None => connect.database(),
        };
        let changes = client
            .prepare(&sql.changes())
            .map_err(Error::query("preparing the changes query"))?;
        let listing = client
            .prepare(&sql.conversations())
            .map_err(Error::query("preparing the conversations query"))?;
        Ok(PgSource {
            client: Mutex::new(client),
            changes,
            listing,
            fingerprint: opts.mapping.fingerprint(),
            sql,
            opts,
            tenant,
            now_ms,
            target: connect.target(),
        })
    }

    /// The database's time when the set's transaction started (ms).
    pub fn snapshot_time_ms(&self) -> i64 {
        self.now_ms
    }

    /// Ends the transaction (read-only: nothing to commit).
    pub fn finish(self) -> Result<()> {
        let mut c = self.client.into_inner().unwrap_or_else(|p| p.into_inner());
        c.batch_execute("COMMIT")
            .map_err(Error::query("ending the transaction"))
    }

    fn rows(&self, conv: &ChangeConversation, since: i64) -> Result<Vec<Row>> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let rows = match &self.sql.tenant {
            Some(_) => client.query(&self.changes, &[&conv.id, &since, &conv.tenant]),
            None => client.query(&self.changes, &[&conv.id, &since]),
        }
        .map_err(Error::query(format!(
            "reading conversation {}/{}",
            conv.tenant, conv.id
        )))?;
        drop(client);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key: Option<String> = r.get(0);
            let (Some(key), Some(created), Some(changed)) =
                (key, r.get::<_, Option<i64>>(3), r.get::<_, Option<i64>>(5))
            else {
                return Err(Error::Mapping(format!(
                    "conversation {}/{}: a row without a key or a creation time",
                    conv.tenant, conv.id
                )));
            };
            out.push(Row {
                key,
                created,
                order: r.get::<_, Option<i64>>(4).unwrap_or(created),
                changed,
                deleted: r.get(6),
                json: r.get(7),
            });
        }
        Ok(out)
    }

    fn conversation_name(
        &self,
        conv: Option<String>,
        tenant: Option<String>,
    ) -> Option<ChangeConversation> {
        Some(ChangeConversation {
            tenant: tenant.unwrap_or_else(|| self.tenant.clone()),
            id: conv?,
        })
    }

    fn changes_inner(
        &self,
        conv: &ChangeConversation,
        cursor: Option<&[u8]>,
        visit: &mut dyn FnMut(Change<'_>) -> io::Result<()>,
    ) -> Result<std::result::Result<Vec<u8>, io::Error>> {
        let shown = format!("{}/{}", conv.tenant, conv.id);
        let prev = match cursor {
            Some(b) => {
                let c = Cursor::decode(b, &shown)?;
                if c.mapping != self.fingerprint {
                    return Err(another_mapping(shown));
                }
                Some(c)
            }
            None => None,
        };
        let since = prev.as_ref().map_or(i64::MIN, |c| c.watermark);
        let rows = self.rows(conv, since)?;
        let watermark = prev
            .as_ref()
            .map_or(i64::MIN, |c| c.watermark)
            .max(self.now_ms.saturating_sub(self.opts.settle_ms));
        // (ts, order, key, kind, row index) of what to store, then stored in that order.
        let mut out: Vec<(i64, i64, usize, ChangeKind)> = Vec::new();
        let mut seen: BTreeMap<String, i64> =
            prev.as_ref().map(|c| c.seen.clone()).unwrap_or_default();
        for (i, r) in rows.iter().enumerate() {
            if seen.get(&r.key) == Some(&r.changed) {
                continue; // stored by an earlier run at this very version
            }
            let known = prev
                .as_ref()
                .is_some_and(|c| c.seen.contains_key(&r.key) || r.created <= c.watermark);
            if known {
                let kind = if r.deleted {
                    ChangeKind::Delete
                } else {
                    ChangeKind::Edit
                };
                out.push((r.changed, r.order, i, kind));
            } else {
                out.push((r.created, r.order, i, ChangeKind::New));
                if r.deleted {
                    out.push((r.changed.max(r.created), r.order, i, ChangeKind::Delete));
                }
            }
            seen.insert(r.key.clone(), r.changed);
        }
        out.sort_by(|a, b| {
            (a.0, a.1, &rows[a.2].key, a.3 != ChangeKind::New).cmp(&(
                b.0,
                b.1,
                &rows[b.2].key,
                b.3 != ChangeKind::New,
            ))
        });
        for (ts, _, i, kind) in out {
            let r = &rows[i];
            let change = Change {
                kind,
                key: &r.key,
                ts_ms: ts,
                row: r.json.as_bytes(),
            };
            if let Err(e) = visit(change) {
                return Ok(Err(e));
            }
        }
        seen.retain(|_, t| *t > watermark);
        Ok(Ok(Cursor {
            mapping: self.fingerprint,
            watermark,
            seen,
        }
        .encode()))
    }
}

fn another_mapping(conversation: String) -> Error {
    Error::Cursor {
        conversation,
        reason: "the stream was taken with another mapping; back up under another set name \
                 (--name) or without a parent (--no-parent)"
            .into(),
    }
}

fn io_error(e: Error) -> io::Error {
    io::Error::other(e)
}

impl ChangeSource for PgSource {
    fn conversations(
        &self,
        known: &[KnownConversation<'_>],
        all: bool,
    ) -> io::Result<Vec<ChangeConversation>> {
        // Only conversations with a row changed after the oldest watermark; all of them
        // on a first or full run.
        let mut since = i64::MAX;
        for k in known {
            let shown = format!("{}/{}", k.tenant, k.id);
            let c = Cursor::decode(k.cursor, &shown).map_err(io_error)?;
            if c.mapping != self.fingerprint {
                return Err(io_error(another_mapping(shown)));
            }
            since = since.min(c.watermark);
        }
        if all || known.is_empty() {
            since = i64::MIN;
        }
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let rows = client
            .query(&self.listing, &[&since])
            .map_err(|e| io_error(Error::query("listing the conversations")(e)))?;
        drop(client);
        Ok(rows
            .into_iter()
            .filter_map(|r| self.conversation_name(r.get(0), r.get(1)))
            .collect())
    }

    fn changes(
        &self,
        conversation: &ChangeConversation,
        cursor: Option<&[u8]>,
        visit: &mut dyn FnMut(Change<'_>) -> io::Result<()>,
    ) -> io::Result<Vec<u8>> {
        match self.changes_inner(conversation, cursor, visit) {
            Ok(r) => r,
            Err(e) => Err(io_error(e)),
        }
    }

    /// An unlisted conversation has no row changed after the listing's window start,
    /// which is at or before its watermark: its watermark moves to this run's.
    fn advance(&self, cursor: &[u8]) -> Option<Vec<u8>> {
        let mut c = Cursor::decode(cursor, "").ok()?;
        if c.mapping != self.fingerprint {
            return None;
        }
        c.watermark = c
            .watermark
            .max(self.now_ms.saturating_sub(self.opts.settle_ms));
        let w = c.watermark;
        c.seen.retain(|_, t| *t > w);
        Some(c.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_damage() {
        let c = Cursor {
            mapping: [3; 32],
            watermark: 1_767_225_600_000,
            seen: [("abc".to_owned(), 5), ("x\"y".to_owned(), -1)]
                .into_iter()
                .collect(),
        };
        let bytes = c.encode();
        assert_eq!(Cursor::decode(&bytes, "t/c").unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(Cursor::decode(&bytes[..cut], "t/c").is_err(), "cut {cut}");
        }
    }
}
