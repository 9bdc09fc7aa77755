//! Reading backup sets back: listing streams, exporting records as JSONL, restoring log
//! files and whole servers, at any granularity.
//!
//! Invariants:
//! - A seq or time selection fetches only the segments whose recorded ranges overlap it
//!   (plus the segments that finish a record begun in one of them); [`ReadStats`] counts
//!   them. The applied view also fetches the segments after the range, since an edit or
//!   deletion arrives after the message it changes.
//! - Every segment is verified by the engine against its id before a byte of it is used;
//!   a damaged segment fails its stream with a typed error and no data from it.
//! - Restore writes only below its target: names are single, non-hostile components,
//!   directories are created fresh, files with `O_EXCL | O_NOFOLLOW`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chatvault_core::{BlobType, Node, Repository, Snapshot, SnapshotId, Tree};

use crate::backup::{DB, FILES, LOGS, SOURCE_KIND};
use crate::error::{Error, Result};
use crate::fields::RecordFields;
use crate::meta::{NodeKind, NodeMeta, Ranges};
use crate::records::{Record, parse_framed, parse_lines_with};

/// Which records to read. Empty fields select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only this tenant (the first level of the logs tree, or the tenant a layout named).
    pub tenant: Option<String>,
    /// Only this conversation (the second level, or the one a layout named); needs
    /// `tenant`.
    pub conversation: Option<String>,
    /// Only records with a seq in this inclusive range.
    pub seq: Option<(u64, u64)>,
    /// Only records with a timestamp (ms since the epoch) in this inclusive range.
    pub time: Option<(i64, i64)>,
}

impl Selection {
    fn filters_records(&self) -> bool {
        self.seq.is_some() || self.time.is_some()
    }

    fn overlaps(&self, r: &Ranges) -> bool {
        self.seq
            .is_none_or(|(lo, hi)| r.seq_min <= hi && r.seq_max >= lo)
            && self
                .time
                .is_none_or(|(lo, hi)| r.ts_min <= hi && r.ts_max >= lo)
    }

    fn keeps(&self, rec: &Record) -> bool {
        let seq_ok = match (self.seq, rec.seq) {
            (None, _) => true,
            (Some((lo, hi)), Some(s)) => (lo..=hi).contains(&s),
            (Some(_), None) => false,
        };
        let time_ok = match (self.time, rec.ts) {
            (None, _) => true,
            (Some((lo, hi)), Some(t)) => (lo..=hi).contains(&t),
            (Some(_), None) => false,
        };
        seq_ok && time_ok
    }
}

/// How edits and deletions are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    /// Every record as stored: messages, edits and deletions in arrival order.
    #[default]
    Raw,
    /// The conversation as its members see it: an edit replaces its target's `text` (and
    /// adds `"edited_ts"`), a deletion removes its target, and neither is shown itself.
    /// Records are JSON objects with `seq`, and `kind` (`msg`, `edit`, `delete`) and
    /// `target` (the seq changed) for edits and deletions; anything else shows as is.
    /// Records of a change source (a database table) name their message by `key`
    /// instead: an edit replaces its message's `row`.
    Applied,
    /// Each message's last recorded version, deletions included: as [`View::Applied`],
    /// but a deleted message stays, with `"deleted_ts"` added (and, for a change
    /// source's tombstone, the row it carried). A message table's state at the backup
    /// time, soft-deleted rows and all.
    Latest,
}

/// One stream of a set, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// `TENANT/CONVERSATION[/FILE…]`, as stored (unprintable bytes escaped).
    pub path: String,
    /// Line (JSONL file) or framed (embedding server) stream.
    pub kind: NodeKind,
    /// Bytes.
    pub bytes: u64,
    /// Records.
    pub records: u64,
    /// Segments (chunks).
    pub segments: u64,
    /// Sealed segments among them.
    pub sealed: u64,
    /// Seq and time ranges of its records.
    pub ranges: Option<Ranges>,
}

/// What a read fetched and produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Streams selected.
    pub streams: u64,
    /// Segments the selected streams have.
    pub segments_total: u64,
    /// Segments fetched from the repository.
    pub segments_read: u64,
    /// Bytes of those segments.
    pub bytes_read: u64,
    /// Records written out.
    pub records: u64,
    /// Bytes written out.
    pub bytes_out: u64,
}

impl ReadStats {
    fn add(&mut self, o: ReadStats) {
        self.streams += o.streams;
        self.segments_total += o.segments_total;
        self.segments_read += o.segments_read;
        self.bytes_read += o.bytes_read;
        self.records += o.records;
        self.bytes_out += o.bytes_out;
    }
}

/// A message-log backup set opened for reading (needs a full or admin key).
#[derive(Debug)]
pub struct SetReader<'r> {
    repo: &'r Repository,
    snapshot: Snapshot,
    root: Tree,
}

/// A stream found in the logs tree.
struct Found {
    /// Path components below `logs`.
    path: Vec<Vec<u8>>,
    node: Node,
    meta: NodeMeta,
    /// Tenant and conversation, when the meta names them (a layout's streams).
    identity: Option<[Vec<u8>; 2]>,
}

impl Found {
    fn shown(&self) -> String {
        self.path
            .iter()
            .map(|c| chatvault_fs::display_path(c))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The conversation it belongs to: the tenant and conversation its meta names, else
    /// its first two components.
    fn conversation(&self) -> &[Vec<u8>] {
        match &self.identity {
            Some(id) => id,
            None => &self.path[..self.path.len().min(2)],
        }
    }

    fn fields(&self) -> RecordFields {
        self.meta.fields.clone().unwrap_or_default()
    }
}

impl<'r> SetReader<'r> {
    /// Opens a backup set.
    pub fn open(repo: &'r Repository, id: SnapshotId) -> Result<Self> {
        let snapshot = repo.load_snapshot(id)?;
        if snapshot.record.source_kind != SOURCE_KIND {
            return Err(Error::NotABackupSet {
                snapshot: id.to_hex(),
                kind: snapshot.record.source_kind,
            });
        }
        let root = repo.read_tree(snapshot.record.root)?;
        Ok(SetReader {
            repo,
            snapshot,
            root,
        })
    }

    /// The set's snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The streams the selection names (its seq and time ranges do not narrow the list).
    pub fn streams(&self, sel: &Selection) -> Result<Vec<StreamInfo>> {
        Ok(self
            .find(sel)?
            .into_iter()
            .map(|f| StreamInfo {
                path: f.shown(),
                kind: f.meta.kind,
                bytes: f.meta.len,
                records: f.meta.segments.iter().map(|s| u64::from(s.records)).sum(),
                segments: f.meta.segments.len() as u64,
                sealed: f
                    .meta
                    .segments
                    .iter()
                    .filter(|s| s.tier == crate::meta::Tier::Sealed)
                    .count() as u64,
                ranges: f
                    .meta
                    .segments
                    .iter()
                    .fold(None, |a, s| Ranges::merge(a, s.ranges)),
            })
            .collect())
    }

    /// Writes the selected records as JSONL (one record per line) to `out`, conversation
    /// by conversation in name order.
    pub fn export(&self, sel: &Selection, view: View, out: &mut dyn Write) -> Result<ReadStats> {
        let mut stats = ReadStats::default();
        let found = self.find(sel)?;
        for conv in group_by_conversation(&found) {
            let (outputs, s) = self.read_conversation(conv, sel, view)?;
            stats.add(s);
            for records in outputs {
                for r in records {
                    write_line(out, &r, &mut stats).map_err(|e| Error::io("<output>", e))?;
                }
            }
        }
        out.flush().map_err(|e| Error::io("<output>", e))?;
        Ok(stats)
    }

    /// Calls `visit` with each selected record and the tenant and conversation of its
    /// stream, conversation by conversation in name order (what [`SetReader::export`]
    /// writes, with where each line comes from). An error from `visit` stops the read and
    /// is returned.
    pub fn for_each_record(
        &self,
        sel: &Selection,
        view: View,
        visit: &mut dyn FnMut(&str, &str, &Record) -> Result<()>,
    ) -> Result<ReadStats> {
        let mut stats = ReadStats::default();
        let found = self.find(sel)?;
        for conv in group_by_conversation(&found) {
            let (outputs, s) = self.read_conversation(conv, sel, view)?;
            stats.add(s);
            let id = conv[0].conversation();
            let name = |i: usize| id.get(i).map(|c| String::from_utf8_lossy(c).into_owned());
            let (tenant, conversation) = (name(0).unwrap_or_default(), name(1).unwrap_or_default());
            for records in outputs {
                for r in &records {
                    visit(&tenant, &conversation, r)?;
                    stats.records += 1;
                    stats.bytes_out += r.data.len() as u64 + 1;
                }
            }
        }
        Ok(stats)
    }

    /// Restores the selected streams as files below `target` (created; must not exist or
    /// be empty): a log file to its path, an embedding server's conversation to
    /// `TENANT/CONVERSATION.jsonl`. With no record selection and the raw view, a file is
    /// restored byte for byte.
    pub fn restore_logs(&self, sel: &Selection, view: View, target: &Path) -> Result<ReadStats> {
        prepare_target(target)?;
        let mut stats = ReadStats::default();
        let found = self.find(sel)?;
        for conv in group_by_conversation(&found) {
            if !sel.filters_records() && view == View::Raw {
                for f in conv {
                    stats.add(self.stream_to(f, Some(target))?);
                }
                continue;
            }
            let (outputs, s) = self.read_conversation(conv, sel, view)?;
            stats.add(s);
            for (f, records) in conv.iter().zip(outputs) {
                if records.is_empty() {
                    continue;
                }
                let (path, mut w) = create_file(target, &f.path, f.meta.kind)?;
                for r in &records {
                    write_line(&mut w, r, &mut stats).map_err(|e| Error::io(&path, e))?;
                }
                w.flush().map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(stats)
    }

    /// Streams under the selection's tenant and conversation, in path order.
    fn find(&self, sel: &Selection) -> Result<Vec<Found>> {
        if sel.conversation.is_some() && sel.tenant.is_none() {
            return Err(Error::invalid(
                "selection",
                "a conversation needs its tenant",
            ));
        }
        let Some(logs) = self.root.get(LOGS).and_then(|n| n.subtree) else {
            return Ok(Vec::new());
        };
        let mut prefix: Vec<&[u8]> = Vec::new();
        if let Some(t) = &sel.tenant {
            prefix.push(t.as_bytes());
        }
        if let Some(c) = &sel.conversation {
            prefix.push(c.as_bytes());
        }
        if self.logs_base().is_some() {
            // A layout's streams name their tenant and conversation in their meta, at any
            // depth: read the whole tree, select by what the streams say.
            let mut out = Vec::new();
            self.collect(logs, &mut Vec::new(), &[], &mut out)?;
            out.retain(|f| {
                let id = f.conversation();
                prefix
                    .iter()
                    .enumerate()
                    .all(|(i, p)| id.get(i).map(Vec::as_slice) == Some(*p))
            });
            // Each conversation's streams together, in path order.
            out.sort_by(|a, b| (a.conversation(), &a.path).cmp(&(b.conversation(), &b.path)));
            return Ok(out);
        }
        let mut out = Vec::new();
        self.collect(logs, &mut Vec::new(), &prefix, &mut out)?;
        Ok(out)
    }

    /// Where a layout's logs start in the data directory (`None`: the default layout,
    /// `logs/`).
    fn logs_base(&self) -> Option<String> {
        let node = self.root.get(LOGS)?;
        NodeMeta::decode(&node.meta, "logs").ok()?.base
    }

    fn collect(
        &self,
        tree: chatvault_core::BlobId,
        path: &mut Vec<Vec<u8>>,
        prefix: &[&[u8]],
        out: &mut Vec<Found>,
    ) -> Result<()> {
        let tree = self.repo.read_tree(tree)?;
        for node in tree.into_nodes() {
            if let Some(want) = prefix.get(path.len())
                && node.name != *want
            {
                continue;
            }
            path.push(node.name.clone());
            let shown = path
                .iter()
                .map(|c| chatvault_fs::display_path(c))
                .collect::<Vec<_>>()
                .join("/");
            let meta = NodeMeta::decode(&node.meta, &shown)?;
            if let Some(sub) = node.subtree {
                self.collect(sub, path, prefix, out)?;
            } else if meta.is_stream() && path.len() >= prefix.len() {
                meta.check_content(&node.content, &shown)?;
                let identity = match (&meta.tenant, &meta.conversation) {
                    (Some(t), Some(c)) => Some([t.as_bytes().to_vec(), c.as_bytes().to_vec()]),
                    _ => None,
                };
                out.push(Found {
                    path: path.clone(),
                    node,
                    meta,
                    identity,
                });
            }
            path.pop();
        }
        Ok(())
    }

    fn fetch(&self, f: &Found, i: usize, stats: &mut ReadStats) -> Result<Vec<u8>> {
        let c = f.node.content[i];
        let data = self.repo.read_blob(c.id, BlobType::Data)?;
        if data.len() != c.len as usize {
            return Err(chatvault_core::Error::corrupt(
                f.shown(),
                format!(
                    "segment {i} is {} bytes, the tree says {}",
                    data.len(),
                    c.len
                ),
            )
            .into());
        }
        stats.segments_read += 1;
        stats.bytes_read += data.len() as u64;
        Ok(data)
    }

    fn read_whole(&self, f: &Found) -> Result<(Vec<u8>, ReadStats)> {
        let mut stats = ReadStats {
            streams: 1,
            segments_total: f.node.content.len() as u64,
            ..ReadStats::default()
        };
        let mut bytes = Vec::with_capacity(f.meta.len as usize);
        for i in 0..f.node.content.len() {
            bytes.extend_from_slice(&self.fetch(f, i, &mut stats)?);
        }
        Ok((bytes, stats))
    }

    /// The records of one stream that a selection needs: whole records starting in the
    /// segments whose ranges overlap it (all segments from there on when `to_end`).
    fn read_stream(
        &self,
        f: &Found,
        sel: &Selection,
        to_end: bool,
    ) -> Result<(Vec<Record>, ReadStats)> {
        let n = f.meta.segments.len();
        let mut stats = ReadStats {
            streams: 1,
            segments_total: n as u64,
            ..ReadStats::default()
        };
        let mut wanted = vec![!sel.filters_records(); n];
        if sel.filters_records() {
            for (i, s) in f.meta.segments.iter().enumerate() {
                wanted[i] = s.ranges.is_some_and(|r| sel.overlaps(&r));
            }
            if to_end && let Some(first) = wanted.iter().position(|&w| w) {
                wanted[first..].iter_mut().for_each(|w| *w = true);
            }
            // Finish records that run on into continuation segments.
            for i in 1..n {
                if wanted[i - 1] && f.meta.segments[i].continues {
                    wanted[i] = true;
                }
            }
        }
        let mut records = Vec::new();
        let mut i = 0;
        while i < n {
            if !wanted[i] {
                i += 1;
                continue;
            }
            // A run of wanted segments, read as one byte range.
            let start = i;
            let mut bytes = Vec::new();
            while i < n && wanted[i] {
                bytes.extend_from_slice(&self.fetch(f, i, &mut stats)?);
                i += 1;
            }
            let mut from = 0;
            if f.meta.segments[start].continues {
                // The run starts inside a record begun before it (not wanted): skip it.
                from = match f.meta.kind {
                    NodeKind::Lines => bytes
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |p| p + 1),
                    _ => {
                        return Err(chatvault_core::Error::corrupt(
                            f.shown(),
                            "framed segment continues a record",
                        )
                        .into());
                    }
                };
            }
            let mut run = match f.meta.kind {
                NodeKind::Framed => parse_framed(&bytes[from..])
                    .map_err(|r| chatvault_core::Error::corrupt(f.shown(), r))?,
                _ => parse_lines_with(&bytes[from..], &f.fields()),
            };
            records.append(&mut run);
        }
        Ok((records, stats))
    }

    /// The output records of each stream of one conversation.
    fn read_conversation(
        &self,
        conv: &[Found],
        sel: &Selection,
        view: View,
    ) -> Result<(Vec<Vec<Record>>, ReadStats)> {
        let mut stats = ReadStats::default();
        let mut per_stream = Vec::with_capacity(conv.len());
        for f in conv {
            // In the applied view an edit or deletion arrives after its message, maybe in
            // a later stream of the conversation (next month's file): from the first
            // selected segment on, everything is read.
            let started =
                view != View::Raw && per_stream.iter().any(|r: &Vec<Record>| !r.is_empty());
            let (records, s) = if started {
                self.read_stream(f, &Selection::default(), false)?
            } else {
                self.read_stream(f, sel, view != View::Raw)?
            };
            stats.add(s);
            per_stream.push(records);
        }
        let out = match view {
            View::Raw => per_stream
                .into_iter()
                .map(|rs| rs.into_iter().filter(|r| sel.keeps(r)).collect())
                .collect(),
            View::Applied => apply_edits(per_stream, sel, false),
            View::Latest => apply_edits(per_stream, sel, true),
        };
        Ok((out, stats))
    }
}

/// Groups streams (in path order) by conversation.
fn group_by_conversation(found: &[Found]) -> Vec<&[Found]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=found.len() {
        if i == found.len() || found[i].conversation() != found[start].conversation() {
            if i > start {
                out.push(&found[start..i]);
            }
            start = i;
        }
    }
    out
}

#[derive(serde::Deserialize)]
struct Change {
    kind: Option<String>,
    target: Option<u64>,
    key: Option<serde_json::Value>,
    text: Option<serde_json::Value>,
    row: Option<serde_json::Value>,
}

/// What an edit or deletion changes: a message by seq, or a change source's by key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Seq(u64),
    Key(String),
}

/// The applied (or, with `keep_deleted`, the latest) view of one conversation's streams.
fn apply_edits(streams: Vec<Vec<Record>>, sel: &Selection, keep_deleted: bool) -> Vec<Vec<Record>> {
    // Where each message sits in the output (by seq and by key), and what changed it, in
    // record order.
    let mut out: Vec<Vec<(Record, bool)>> = streams.iter().map(|_| Vec::new()).collect();
    let mut at: HashMap<Target, (usize, usize)> = HashMap::new();
    let mut changes: Vec<(Target, bool, Change, Option<i64>)> = Vec::new();
    for (k, records) in streams.into_iter().enumerate() {
        for r in records {
            let change: Option<Change> = serde_json::from_slice(&r.data).ok();
            let key = change
                .as_ref()
                .and_then(|c| c.key.as_ref())
                .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_owned));
            let target = match (&change, &key) {
                (
                    Some(Change {
                        target: Some(t), ..
                    }),
                    _,
                ) => Some(Target::Seq(*t)),
                (_, Some(key)) => Some(Target::Key(key.clone())),
                _ => None,
            };
            let kind = change.as_ref().and_then(|c| c.kind.as_deref());
            match (kind, target) {
                (Some(kind @ ("edit" | "delete")), Some(target)) => {
                    let delete = kind == "delete";
                    let c = change.expect("parsed");
                    changes.push((target, delete, c, r.ts));
                }
                _ => {
                    if sel.keeps(&r) {
                        if let Some(seq) = r.seq {
                            at.insert(Target::Seq(seq), (k, out[k].len()));
                        }
                        if let Some(key) = key {
                            at.insert(Target::Key(key), (k, out[k].len()));
                        }
                        out[k].push((r, true));
                    }
                }
            }
        }
    }
    for (target, delete, c, ts) in changes {
        let Some(&(k, i)) = at.get(&target) else {
            continue; // a message outside the selection
        };
        let entry = &mut out[k][i];
        if delete && !keep_deleted {
            entry.1 = false;
            continue;
        }
        let r = &mut entry.0;
        let Ok(serde_json::Value::Object(mut obj)) =
            serde_json::from_slice::<serde_json::Value>(&r.data)
        else {
            continue;
        };
        match (&target, delete) {
            (Target::Seq(_), false) => {
                obj.insert("text".into(), c.text.unwrap_or(serde_json::Value::Null));
            }
            (Target::Key(_), _) => {
                if let Some(row) = c.row.filter(|r| !r.is_null()) {
                    obj.insert("row".into(), row);
                }
            }
            (Target::Seq(_), true) => {}
        }
        if let Some(ts) = ts {
            obj.insert(
                if delete { "deleted_ts" } else { "edited_ts" }.into(),
                ts.into(),
            );
        }
        if let Ok(bytes) = serde_json::to_vec(&obj) {
            r.data = bytes;
        }
    }
    out.into_iter()
        .map(|rs| rs.into_iter().filter(|r| r.1).map(|r| r.0).collect())
        .collect()
}

fn write_line(out: &mut dyn Write, r: &Record, stats: &mut ReadStats) -> std::io::Result<()> {
    out.write_all(&r.data)?;
    out.write_all(b"\n")?;
    stats.records += 1;
    stats.bytes_out += r.data.len() as u64 + 1;
    Ok(())
}

/// Creates the target directory, or accepts an existing empty one.
fn prepare_target(target: &Path) -> Result<()> {
    match std::fs::create_dir_all(target) {
        Ok(()) => {}
        Err(e) => return Err(Error::io(target, e)),
    }
    let md = std::fs::symlink_metadata(target).map_err(|e| Error::io(target, e))?;
    if !md.is_dir() {
        return Err(Error::io(
            target,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut entries = std::fs::read_dir(target).map_err(|e| Error::io(target, e))?;
    if entries.next().is_some() {
        return Err(Error::TargetNotEmpty {
            path: target.to_owned(),
        });
    }
    Ok(())
}

/// Creates the file for a stream below `target`, with its directories; refuses hostile
/// names and never follows a link.
fn create_file(
    target: &Path,
    path: &[Vec<u8>],
    kind: NodeKind,
) -> Result<(PathBuf, BufWriter<std::fs::File>)> {
    let shown = path
        .iter()
        .map(|c| chatvault_fs::display_path(c))
        .collect::<Vec<_>>()
        .join("/");
    let mut p = target.to_path_buf();
    for (i, c) in path.iter().enumerate() {
        if let Some(reason) = chatvault_fs::check_name(c) {
            return Err(Error::Refused {
                entry: shown,
                reason,
            });
        }
        let last = i + 1 == path.len();
        if last {
            let mut name = c.clone();
            if kind == NodeKind::Framed {
                name.extend_from_slice(b".jsonl");
            }
            p.push(OsStr::from_bytes(&name));
        } else {
            p.push(OsStr::from_bytes(c));
            match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let md = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
                    if !md.is_dir() {
                        return Err(Error::Refused {
                            entry: shown,
                            reason: "a directory on its way is not a directory",
                        });
                    }
                }
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(&p)
        .map_err(|e| Error::io(&p, e))?;
    Ok((p, BufWriter::with_capacity(1 << 16, file)))
}

/// Something a whole-set restore or verification could not restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreProblem {
    /// The entry: `logs/TENANT/…`, or a files or dump path.
    pub path: String,
    /// One line.
    pub message: String,
    /// Its stored data is damaged or missing (rather than, say, unwritable).
    pub corrupt: bool,
}

/// What [`restore`] or [`verify`] did.
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// The message logs.
    pub logs: ReadStats,
    /// Files and dumps restored (or verified).
    pub files: u64,
    /// Bytes of those.
    pub file_bytes: u64,
    /// Entries not restored, and why; the rest was.
    pub problems: Vec<RestoreProblem>,
    /// Wall-clock time.
    pub duration: Duration,
}

/// Restores a whole backup set into `target` (must not exist or be empty): the files
/// (media store) as they were, the logs to `target/logs`, the dumps to `target/db`. A
/// stream or file whose data is damaged is reported and left out; the rest is restored.
pub fn restore(repo: &Repository, id: SnapshotId, target: &Path) -> Result<RestoreReport> {
    whole_set(repo, id, Some(target))
}

/// Reads and verifies a whole backup set as [`restore`] would, writing nothing: every
/// segment and chunk against its id, every file against its digest, every framed stream's
/// framing. For restore drills.
pub fn verify(repo: &Repository, id: SnapshotId) -> Result<RestoreReport> {
    whole_set(repo, id, None)
}

fn whole_set(repo: &Repository, id: SnapshotId, target: Option<&Path>) -> Result<RestoreReport> {
    let start = Instant::now();
    let set = SetReader::open(repo, id)?;
    if let Some(t) = target {
        prepare_target(t)?;
    }
    let mut report = RestoreReport::default();
    for (part, sub) in [(FILES, None), (DB, Some("db"))] {
        let Some(tree) = set.root.get(part).and_then(|n| n.subtree) else {
            continue;
        };
        let dir = match (target, sub) {
            (Some(t), Some(s)) => t.join(s),
            (Some(t), None) => t.to_owned(),
            (None, _) => PathBuf::new(),
        };
        let opts = chatvault_fs::RestoreOptions {
            target: dir,
            overwrite: part == FILES,
            verify_only: target.is_none(),
            ..chatvault_fs::RestoreOptions::default()
        };
        let r = chatvault_fs::restore(repo, tree, &opts)?;
        report.files += r.files;
        report.file_bytes += r.bytes;
        report
            .problems
            .extend(r.problems.iter().map(|p| RestoreProblem {
                path: p.path.display().to_string(),
                message: p.message.clone(),
                corrupt: p.kind == chatvault_fs::ProblemKind::Corrupt,
            }));
    }
    if set.root.get(LOGS).is_some() {
        // A layout's logs go back where they were in the data directory (their base),
        // among the files; the default layout's into `logs/`, which the files part never
        // holds.
        let base = set.logs_base();
        let logs = match &base {
            Some(_) => target.map(Path::to_path_buf),
            None => target.map(|t| t.join("logs")),
        };
        if let (Some(l), None) = (&logs, &base) {
            if std::fs::symlink_metadata(l).is_ok() {
                return Err(Error::Refused {
                    entry: "logs".into(),
                    reason: "the files part already holds a logs entry",
                });
            }
            std::fs::create_dir(l).map_err(|e| Error::io(l, e))?;
        }
        let base_path: Vec<Vec<u8>> = base
            .iter()
            .flat_map(|b| b.split('/'))
            .filter(|c| !c.is_empty())
            .map(|c| c.as_bytes().to_vec())
            .collect();
        for mut f in set.find(&Selection::default())? {
            let shown = f.shown();
            if !base_path.is_empty() {
                f.path.splice(0..0, base_path.iter().cloned());
            }
            match set.stream_to(&f, logs.as_deref()) {
                Ok(s) => report.logs.add(s),
                Err(e) if e.is_corrupt() => {
                    report.logs.streams += 1;
                    report.problems.push(RestoreProblem {
                        path: format!("logs/{shown}"),
                        message: e.to_string(),
                        corrupt: true,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    report.duration = start.elapsed();
    Ok(report)
}

impl SetReader<'_> {
    /// Reads one whole stream and writes it below `target` as `restore_logs` does, or,
    /// with no target, only verifies it.
    fn stream_to(&self, f: &Found, target: Option<&Path>) -> Result<ReadStats> {
        let (bytes, mut stats) = self.read_whole(f)?;
        let records = match f.meta.kind {
            NodeKind::Framed => Some(
                parse_framed(&bytes).map_err(|r| chatvault_core::Error::corrupt(f.shown(), r))?,
            ),
            _ => None,
        };
        let Some(target) = target else {
            stats.records += records.map_or_else(
                || f.meta.segments.iter().map(|s| u64::from(s.records)).sum(),
                |r| r.len() as u64,
            );
            stats.bytes_out += bytes.len() as u64;
            return Ok(stats);
        };
        let (path, mut w) = create_file(target, &f.path, f.meta.kind)?;
        match records {
            Some(records) => {
                for r in &records {
                    write_line(&mut w, r, &mut stats).map_err(|e| Error::io(&path, e))?;
                }
            }
            None => {
                w.write_all(&bytes).map_err(|e| Error::io(&path, e))?;
                stats.bytes_out += bytes.len() as u64;
                stats.records += f
                    .meta
                    .segments
                    .iter()
                    .map(|s| u64::from(s.records))
                    .sum::<u64>();
            }
        }
        w.flush().map_err(|e| Error::io(&path, e))?;
        Ok(stats)
    }
}

/// The latest backup set ([`chatvault_core::Recency`]) taken at or before `time_ms` (the
/// state at that point in time), of the set `name` if given, from `host` if given. Sets
/// that do not load are passed over.
pub fn snapshot_at(
    repo: &Repository,
    name: Option<&str>,
    host: Option<&str>,
    time_ms: i64,
) -> Result<Snapshot> {
    let filter = chatvault_core::SnapshotFilter {
        source_kind: Some(SOURCE_KIND.to_owned()),
        paths: name.map(|n| vec![n.to_owned()]),
        host: host.map(str::to_owned),
        at_or_before_unix_ms: Some(time_ms),
        ..Default::default()
    };
    repo.latest_snapshots(&filter)?
        .into_newest()
        .ok_or_else(|| Error::NoSnapshot(format!("at or before {time_ms} ms")))
}
