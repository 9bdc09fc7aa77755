//! One generated day: its records, rendered to JSON lines on demand, and its new files.
//!
//! Invariants:
//! - Records come in timestamp order across the server (ties: lower tenant first, then
//!   plan order); per conversation that is `seq` order.
//! - Rendering is deterministic and repeatable: each call to [`Day::records`] starts the
//!   text generators afresh, so iterating twice yields the same bytes.
//! - A line is one JSON object without a trailing newline, its fields in the order
//!   `seq, ts, tenant, conv, from, kind, text[, target][, media]`, with no raw newline.

use std::path::PathBuf;

use super::calendar::{Month, rfc3339};
use super::layout::{ConversationId, Naming, TenantId};
use super::media::MediaFile;
use super::options::{DiskLayout, TsStyle};
use super::plan::{Attachment, Event, Kind};
use crate::rng::Rng;
use crate::text::{TextWriter, push_decimal};

/// One record of a conversation's log, as an embedding test feeds it to a backup API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The tenant.
    pub tenant: TenantId,
    /// The conversation within the tenant.
    pub conversation: ConversationId,
    /// Sequence number within the conversation, from 1.
    pub seq: u64,
    /// Timestamp, Unix milliseconds.
    pub ts_ms: u64,
    /// The JSON line, without its newline.
    pub line: Vec<u8>,
    /// Where its log file is (the server's [`DiskLayout`]).
    pub(crate) layout: DiskLayout,
}

impl Record {
    /// The log file this record is appended to, relative to the server root:
    /// `logs/<tenant>/<conversation>/<YYYY-MM>.jsonl`, or with
    /// [`DiskLayout::ConvFolders`] `<tenant>/conv/<conversation>/<YYYY-MM>.jsonl`.
    pub fn log_path(&self) -> PathBuf {
        log_path(self.layout, self.tenant, self.conversation, self.ts_ms)
    }
}

pub(crate) fn log_path(
    layout: DiskLayout,
    tenant: TenantId,
    conv: ConversationId,
    ts_ms: u64,
) -> PathBuf {
    let file = format!("{}.jsonl", Month::of_timestamp_ms(ts_ms));
    let (tenant, conv) = (tenant.to_string(), conv.to_string());
    match layout {
        DiskLayout::Generator => ["logs", &tenant, &conv, &file].iter().collect(),
        DiskLayout::ConvFolders => [tenant.as_str(), "conv", &conv, &file].iter().collect(),
    }
}

/// A generated day of the whole server, from [`Server::next_day`](crate::Server::next_day).
#[derive(Debug, Clone)]
pub struct Day {
    pub(crate) index: u32,
    pub(crate) events: Vec<Event>,
    pub(crate) attachments: Vec<Attachment>,
    /// The text seed of each tenant for this day.
    pub(crate) text_seeds: Vec<u64>,
    pub(crate) text: TextWriter,
    pub(crate) naming: Naming,
    pub(crate) layout: DiskLayout,
    pub(crate) ts_style: TsStyle,
}

impl Day {
    /// The day's number: 0 for the options' `start_day`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.events.len()
    }

    /// The day's records, in timestamp order, rendered as they are iterated.
    pub fn records(&self) -> DayRecords<'_> {
        DayRecords {
            renderer: Renderer::new(self),
            next: 0,
        }
    }

    /// The files created this day (forwards create none): tenant by tenant, each in its
    /// records' order.
    pub fn media(&self) -> impl Iterator<Item = &MediaFile> + '_ {
        self.attachments
            .iter()
            .filter(|a| !a.forward)
            .map(|a| &a.file)
    }
}

/// The records of a [`Day`], from [`Day::records`].
#[derive(Debug)]
pub struct DayRecords<'a> {
    renderer: Renderer<'a>,
    next: usize,
}

impl Iterator for DayRecords<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let e = self.renderer.day.events.get(self.next)?;
        self.next += 1;
        let mut line = Vec::with_capacity(160);
        self.renderer.render(e, &mut line);
        Some(Record {
            tenant: TenantId(e.tenant),
            conversation: self.renderer.day.naming.id(e.conv),
            seq: e.seq,
            ts_ms: e.ts_ms,
            line,
            layout: self.renderer.day.layout,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.renderer.day.events.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for DayRecords<'_> {}

/// Turns a day's events into JSON lines, with one text generator per tenant.
#[derive(Debug)]
pub(crate) struct Renderer<'a> {
    pub(crate) day: &'a Day,
    rngs: Vec<Rng>,
}

impl<'a> Renderer<'a> {
    pub(crate) fn new(day: &'a Day) -> Self {
        Self {
            day,
            rngs: day.text_seeds.iter().map(|&s| Rng::new(s)).collect(),
        }
    }

    /// Appends the line of `e` (which must be the tenant's next event) to `out`.
    pub(crate) fn render(&mut self, e: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"seq\":");
        push_decimal(out, e.seq);
        out.extend_from_slice(b",\"ts\":");
        match self.day.ts_style {
            TsStyle::Millis => push_decimal(out, e.ts_ms),
            TsStyle::Rfc3339 => {
                out.push(b'"');
                out.extend_from_slice(rfc3339(e.ts_ms).as_bytes());
                out.push(b'"');
            }
            TsStyle::DecimalSeconds => {
                out.push(b'"');
                push_decimal(out, e.ts_ms / 1000);
                out.extend_from_slice(format!(".{:03}000", e.ts_ms % 1000).as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b",\"tenant\":\"t");
        push_decimal(out, u64::from(e.tenant));
        let conv = self.day.naming.id(e.conv);
        out.extend_from_slice(b"\",\"conv\":\"");
        out.extend_from_slice(conv.kind.prefix().as_bytes());
        push_decimal(out, u64::from(conv.index));
        out.extend_from_slice(b"\",\"from\":\"u");
        push_decimal(out, u64::from(e.from));
        let kind: &[u8] = match e.kind {
            Kind::Msg => b"\",\"kind\":\"msg\",\"text\":\"",
            Kind::Edit => b"\",\"kind\":\"edit\",\"text\":\"",
            Kind::Delete => b"\",\"kind\":\"delete\",\"text\":\"",
        };
        out.extend_from_slice(kind);
        if e.kind != Kind::Delete {
            let rng = &mut self.rngs[e.tenant as usize];
            self.day.text.write(rng, out);
        }
        out.push(b'"');
        if e.target != 0 {
            out.extend_from_slice(b",\"target\":");
            push_decimal(out, e.target);
        }
        if e.media != Event::NO_MEDIA {
            self.render_media(&self.day.attachments[e.media as usize], out);
        }
        out.push(b'}');
    }

    fn render_media(&self, a: &Attachment, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"media\":{\"id\":\"");
        out.extend_from_slice(a.file.id.to_string().as_bytes());
        out.extend_from_slice(b"\",\"size\":");
        push_decimal(out, a.file.len);
        out.extend_from_slice(b",\"mime\":\"");
        out.extend_from_slice(a.file.mime.as_bytes());
        out.push(b'"');
        if a.forward {
            out.extend_from_slice(b",\"fwd\":true");
        }
        out.push(b'}');
    }
}
