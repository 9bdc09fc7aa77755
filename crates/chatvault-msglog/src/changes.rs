//! Change sources: messages kept in a database that edits and deletes them in place (a
//! chat server's message table), backed up as append-only streams anyway.
//!
//! A [`ChangeSource`] hands over, per conversation, what changed since the position it
//! gave last time (its *cursor*, opaque bytes the session keeps in the stream's meta): a
//! message seen for the first time, a new version of one already stored (an *edit*), or
//! a deletion (a *tombstone*). The session numbers them after the stream's last seq and
//! stores each as a framed record whose bytes are one JSON object:
//!
//! `{"seq":S,"ts":T,"kind":"msg"|"edit"|"delete","key":K,"row":ROW}`
//!
//! where `K` is the message's key (a JSON string) and `ROW` its row as JSON, as the source
//! gave it. Raw restore therefore yields each message's history as the backups saw it;
//! the applied view ([`crate::View::Applied`]) yields each message's state at the backup
//! time, matching edits and deletions to their message by `key`.
//!
//! Invariants:
//! - Seqs continue the stream's (the parent's last seq + 1, …); a conversation the source
//!   does not list is reused from the parent unread, with the cursor the source's
//!   [`ChangeSource::advance`] gives (no query: it had no change).
//! - The cursor stored with a stream is the one the source returned after handing over
//!   the records stored: a failed read stores nothing (the run fails).
//! - A source cannot give its past records again, so a tail merge reads the tail segments
//!   back from the repository (verified as every read); a key that cannot read seals the
//!   tails as they are instead (`segment::append_or_seal`). No byte is stored twice.

use std::collections::BTreeMap;
use std::io;

use chatvault_core::{BlobType, Node, Tree};
use rayon::prelude::*;

use crate::backup::{
    BackupSession, LogStats, LogsWalker, Previous, check_name, stream_meta, stream_node,
};
use crate::error::{Error, Result};
use crate::meta::{NodeKind, NodeMeta};
use crate::records::{Batch, MAX_RECORD, parse_framed};
use crate::segment::{self, Segments};

/// A conversation of a change source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeConversation {
    /// Its tenant: a non-empty name without `/` or NUL, not `.` or `..`.
    pub tenant: String,
    /// Its id within the tenant, with the same rules.
    pub id: String,
}

/// A conversation the previous set holds, with where the source stood then.
#[derive(Debug, Clone, Copy)]
pub struct KnownConversation<'a> {
    /// Its tenant.
    pub tenant: &'a str,
    /// Its id.
    pub id: &'a str,
    /// The cursor the source returned for it last time.
    pub cursor: &'a [u8],
}

/// What a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A message seen for the first time (in its current state).
    New,
    /// A new version of a message stored before.
    Edit,
    /// A message deleted (its row as the source still holds it, if it does).
    Delete,
}

impl ChangeKind {
    /// The record's `kind`: `msg`, `edit` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::New => "msg",
            ChangeKind::Edit => "edit",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One change a source hands over.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// New message, edit or deletion.
    pub kind: ChangeKind,
    /// The message's key (its primary key), the same in all its changes.
    pub key: &'a str,
    /// When: creation time for a new message, the change's time otherwise (ms since the
    /// epoch).
    pub ts_ms: i64,
    /// The row as one JSON value (an object, typically).
    pub row: &'a [u8],
}

/// Messages in a database: what changed in each conversation since a cursor.
///
/// Called from several threads at once (conversations are read in parallel); a source
/// that reads one database transaction serialises its queries itself.
pub trait ChangeSource: Sync {
    /// The conversations to read this run: every one with changes after its cursor
    /// (`known` lists the previous set's conversations and their cursors) and every one
    /// the previous set does not hold; every conversation when `all`. Conversations of
    /// the previous set not listed are kept as they were.
    fn conversations(
        &self,
        known: &[KnownConversation<'_>],
        all: bool,
    ) -> io::Result<Vec<ChangeConversation>>;

    /// Calls `visit` with each change of the conversation after `cursor` (from the
    /// beginning when `None`), in the order they are to be stored, and returns the cursor
    /// after them. An error from `visit` must be returned as is.
    fn changes(
        &self,
        conversation: &ChangeConversation,
        cursor: Option<&[u8]>,
        visit: &mut dyn FnMut(Change<'_>) -> io::Result<()>,
    ) -> io::Result<Vec<u8>>;

    /// The cursor of a conversation [`ChangeSource::conversations`] did not list (it has
    /// no change after `cursor`), moved on to this run, or `None` to keep it. Without
    /// this, an idle conversation's old cursor would keep the next runs' listing window
    /// wide. By default, `None`.
    fn advance(&self, cursor: &[u8]) -> Option<Vec<u8>> {
        let _ = cursor;
        None
    }
}

/// The record a change is stored as (module documentation).
fn render(seq: u64, c: &Change<'_>) -> io::Result<Vec<u8>> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(c.row).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the row of seq {seq} is not JSON"),
        ));
    }
    let key = serde_json::to_string(c.key).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(c.row.len() + key.len() + 64);
    out.extend_from_slice(
        format!(
            "{{\"seq\":{seq},\"ts\":{},\"kind\":\"{}\",\"key\":{key},\"row\":",
            c.ts_ms,
            c.kind.as_str()
        )
        .as_bytes(),
    );
    out.extend_from_slice(c.row);
    out.push(b'}');
    Ok(out)
}

impl BackupSession<'_> {
    /// Backs up a change source's conversations: for each conversation with changes, its
    /// changes since the cursor stored with its stream become new records (see the
    /// module documentation); the others are kept from the parent unread.
    pub fn backup_changes(&mut self, source: &dyn ChangeSource) -> Result<LogStats> {
        if self.logs.is_some() {
            return Err(Error::invalid(
                "backup set",
                "message logs were already added",
            ));
        }
        let parent = self.parent_logs()?;
        let walker = self.logs_walker();
        // The previous set's conversations: tenant → its tree.
        let mut parent_tenants: BTreeMap<String, Tree> = BTreeMap::new();
        if let Some(p) = &parent {
            for n in p.nodes() {
                let Ok(name) = std::str::from_utf8(&n.name) else {
                    continue;
                };
                if let Some(t) = walker.parent_subtree(name, Some(n)) {
                    parent_tenants.insert(name.to_owned(), t);
                }
            }
        }
        let mut metas: Vec<(String, String, NodeMeta)> = Vec::new();
        for (tenant, tree) in &parent_tenants {
            for n in tree.nodes() {
                let (Ok(id), true) = (std::str::from_utf8(&n.name), n.subtree.is_none()) else {
                    continue;
                };
                if let Ok(m) = NodeMeta::decode(&n.meta, id)
                    && m.kind == NodeKind::Framed
                    && m.cursor.is_some()
                {
                    metas.push((tenant.clone(), id.to_owned(), m));
                }
            }
        }
        let known: Vec<KnownConversation<'_>> = metas
            .iter()
            .map(|(t, id, m)| KnownConversation {
                tenant: t,
                id,
                cursor: m.cursor.as_deref().unwrap_or_default(),
            })
            .collect();
        let mut listed =
            source
                .conversations(&known, self.opts.full)
                .map_err(|e| Error::Source {
                    conversation: "(listing)".into(),
                    source: e,
                })?;
        for c in &listed {
            check_name(&c.tenant, "tenant name")?;
            check_name(&c.id, "conversation id")?;
        }
        listed.sort();
        listed.dedup();
        // Every tenant of either side; per tenant, the conversations to read.
        let mut tenants: BTreeMap<String, Vec<&ChangeConversation>> = parent_tenants
            .keys()
            .map(|t| (t.clone(), Vec::new()))
            .collect();
        for c in &listed {
            tenants.entry(c.tenant.clone()).or_default().push(c);
        }
        let mut nodes = Vec::with_capacity(tenants.len());
        let mut stats = LogStats::default();
        for (tenant, to_read) in tenants {
            let prev_tree = parent_tenants.get(&tenant);
            let results = to_read
                .par_iter()
                .map(|c| {
                    let prev = prev_tree.and_then(|t| t.get(c.id.as_bytes()));
                    walker.changes(source, c, prev)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut by_name: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
            // Conversations not read this time are kept as they were, their cursors moved
            // on (the source's streams only: anything else in a parent of the same name
            // is not carried on).
            if let Some(t) = prev_tree {
                for n in t.nodes() {
                    let Some(mut meta) = NodeMeta::decode(&n.meta, &tenant).ok().filter(|m| {
                        n.subtree.is_none() && m.kind == NodeKind::Framed && m.cursor.is_some()
                    }) else {
                        continue;
                    };
                    let mut node = n.clone();
                    if let Some(next) = source.advance(meta.cursor.as_deref().unwrap_or_default())
                        && meta.cursor.as_deref() != Some(next.as_slice())
                    {
                        meta.cursor = Some(next);
                        node.meta = meta.encode();
                    }
                    by_name.insert(node.name.clone(), node);
                    stats.streams += 1;
                    stats.streams_unchanged += 1;
                }
            }
            for (node, s) in results {
                if by_name.insert(node.name.clone(), node).is_some() {
                    stats.streams -= 1;
                    stats.streams_unchanged -= 1;
                }
                stats = stats.add(s);
            }
            let id = self
                .writer
                .write_tree(&Tree::new(by_name.into_values().collect())?)?;
            nodes.push(Node {
                name: tenant.into_bytes(),
                subtree: Some(id),
                content: Vec::new(),
                meta: NodeMeta::dir().encode(),
            });
        }
        let tree = self.writer.write_tree(&Tree::new(nodes)?)?;
        let lists = walker.into_lists();
        self.set_logs(lists, tree, stats);
        Ok(stats)
    }
}

impl LogsWalker<'_, '_> {
    /// One conversation of a change source: its changes after the stored cursor.
    fn changes(
        &self,
        source: &dyn ChangeSource,
        c: &ChangeConversation,
        prev: Option<&Node>,
    ) -> Result<(Node, LogStats)> {
        let shown = format!("{}/{}", c.tenant, c.id);
        let prev: Option<Previous> = self.previous(&shown, prev, NodeKind::Framed);
        let mut stats = LogStats {
            streams: 1,
            ..LogStats::default()
        };
        let (old, last_seq, cursor) = match &prev {
            Some(p) => (p.segments.clone(), p.meta.last_seq, p.meta.cursor.clone()),
            None => {
                stats.streams_new = 1;
                (Segments::default(), None, None)
            }
        };
        let mut batch = Batch::default();
        let mut seq = last_seq.unwrap_or(0);
        let cursor = source
            .changes(c, cursor.as_deref(), &mut |ch: Change<'_>| {
                seq += 1;
                let data = render(seq, &ch)?;
                if data.len() > MAX_RECORD {
                    return Err(io::Error::other(format!(
                        "the record of key {:?} is {} bytes, over the {MAX_RECORD}-byte limit",
                        ch.key,
                        data.len()
                    )));
                }
                batch.push_framed(seq, ch.ts_ms, &data);
                Ok(())
            })
            .map_err(|e| Error::Source {
                conversation: shown.clone(),
                source: e,
            })?;
        stats.bytes_read = batch.bytes.len() as u64;
        if !batch.bytes.is_empty() && prev.is_some() {
            stats.streams_appended = 1;
        }
        if batch.bytes.is_empty()
            && let Some(p) = &prev
            && p.meta.cursor.as_deref() == Some(cursor.as_slice())
        {
            stats.streams_unchanged = 1;
            return Ok((p.node.clone(), stats));
        }
        let (segments, a) = segment::append_or_seal(self.writer, old, batch, &self.tiering, |n| {
            self.tail_from_repository(&shown, prev.as_ref(), n)
        })?;
        stats = stats.appended(a);
        let mut meta = stream_meta(NodeKind::Framed, &segments, None, None);
        meta.cursor = Some(cursor);
        Ok((stream_node(c.id.as_bytes(), segments, &meta), stats))
    }

    /// The stream's tail segments read back from the repository (each verified against
    /// its id), or `None` when this key may not read them.
    fn tail_from_repository(
        &self,
        shown: &str,
        prev: Option<&Previous>,
        n: u64,
    ) -> Result<Option<Batch>> {
        let Some(p) = prev else {
            return Ok(None);
        };
        let start = p.segments.tail_start();
        let mut bytes = Vec::with_capacity(n as usize);
        for c in &p.segments.content[start..] {
            match self.repo.read_blob(c.id, BlobType::Data) {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(chatvault_core::Error::PermissionDenied { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let records = parse_framed(&bytes).map_err(|r| chatvault_core::Error::corrupt(shown, r))?;
        let mut batch = Batch::default();
        for r in records {
            batch.push_framed(r.seq.unwrap_or(0), r.ts.unwrap_or(0), &r.data);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_objects_with_the_row_inside() {
        let c = Change {
            kind: ChangeKind::Edit,
            key: "ab\"c",
            ts_ms: 5,
            row: br#"{"id":"ab\"c","message":"hi"}"#,
        };
        let r = render(7, &c).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["ts"], 5);
        assert_eq!(v["kind"], "edit");
        assert_eq!(v["key"], "ab\"c");
        assert_eq!(v["row"]["message"], "hi");
        let bad = Change {
            row: b"{not json",
            ..c
        };
        assert_eq!(
            render(1, &bad).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
