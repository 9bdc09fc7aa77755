//! Log layouts: where in a data directory a chat server keeps its JSONL logs, and what a
//! record holds. A declarative description instead of our own generator's one layout.
//!
//! A [`LogLayout`] is a list of path patterns relative to the data directory, with named
//! captures (`logs/{tenant}/{conversation}/*.jsonl`, `{tenant}/conv/{conversation}/
//! {month}.jsonl`), and the [`RecordFields`] of the records. A capture is `{name}` and
//! matches one or more characters other than `/`; the rest of a pattern is a glob
//! (`globset` syntax with `/` literal: `*` and `?` stay within a component, `**` crosses
//! them, `[ab]` classes, `{a,b}` alternatives). `{tenant}` and `{conversation}` name the
//! stream's tenant and conversation; other captures are allowed and ignored.
//!
//! [`BackupSession::backup_logs_layout`] walks the data directory below the patterns'
//! common literal prefix (the *base*), takes each file that matches a pattern (the first
//! that matches) as a log stream, and leaves every other file to the files part
//! ([`LayoutReport::matched`] lists what to exclude from it). The stored logs tree
//! mirrors the files' paths below the base; each stream's meta names its tenant and
//! conversation and, when not the default, its record fields, so readers select and
//! parse it without knowing the layout; the `logs` node's meta records the base, so a
//! whole-set restore puts the logs back where they were.
//!
//! Invariants:
//! - A file matches at most one pattern, the first; a file that matches none is never a
//!   log stream and stays in the files part, so nothing is left out silently: the report
//!   counts the streams each pattern matched.
//! - A capture value is a valid single path component (`check_name`) in UTF-8; a file
//!   whose path is not UTF-8 or whose captures are not valid names matches no pattern.
//! - Validation never drops data: a stream whose seq or timestamp pointer does not
//!   resolve, whose timestamps go backwards or whose records name another conversation is
//!   stored all the same, with a [`StreamWarning`]; callers turn warnings into errors
//!   (`--strict`) before committing.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chatvault_core::{BlobId, Node, Tree};
use rayon::prelude::*;

use crate::backup::{BackupSession, LOGS, LogStats, LogsWalker};
use crate::error::{Error, Result};
use crate::fields::RecordFields;
use crate::meta::{NodeKind, NodeMeta};
use crate::records::Batch;

/// The tenant of streams whose layout names none (no `{tenant}` capture, no tenant
/// pointer), unless [`LayoutOptions::default_tenant`] says otherwise.
pub const DEFAULT_TENANT: &str = "default";

/// How many records at the start of what a run reads of a stream are checked for their
/// pointers.
const CHECKED_RECORDS: usize = 100;

/// What a layout is made of.
#[derive(Debug, Clone, Default)]
pub struct LayoutOptions {
    /// Path patterns relative to the data directory, tried in order. By default, our
    /// generator's `logs/{tenant}/{conversation}/**`.
    pub patterns: Vec<String>,
    /// Where records keep their seq, timestamp, conversation and tenant. By default, the
    /// top-level `seq` and `ts` (ms).
    pub fields: RecordFields,
    /// The tenant of streams the layout names none for. By default, [`DEFAULT_TENANT`].
    pub default_tenant: Option<String>,
}

/// One compiled pattern.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    regex: regex::bytes::Regex,
    has_conversation: bool,
}

/// A compiled layout (see the module documentation).
#[derive(Debug, Clone)]
pub struct LogLayout {
    patterns: Vec<Pattern>,
    fields: RecordFields,
    default_tenant: String,
    base: Vec<String>,
}

/// What a pattern captured from a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Captured {
    pub pattern: usize,
    pub tenant: Option<String>,
    pub conversation: Option<String>,
}

const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

fn is_capture_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn has_glob_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl Pattern {
    fn compile(text: &str) -> Result<Pattern> {
        let bad = |why: &str| Error::invalid("layout pattern", format!("{text:?}: {why}"));
        if text.is_empty() || text.starts_with('/') {
            return Err(bad("give a path relative to the data directory"));
        }
        if text.contains([OPEN, CLOSE]) {
            return Err(bad("private-use characters are not allowed"));
        }
        if text
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("empty, `.` and `..` components are not allowed"));
        }
        // Replace each `{name}` by a placeholder globset passes through as a literal, then
        // turn the placeholders of its regex into named groups.
        let mut glob = String::new();
        let mut names: Vec<String> = Vec::new();
        // Inside `[…]` or an alternation `{a,b}` a capture would not be one.
        let (mut in_class, mut alternation) = (false, 0usize);
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    glob.push(c);
                    if let Some((_, n)) = chars.next() {
                        glob.push(n);
                    }
                }
                '[' if !in_class => {
                    in_class = true;
                    glob.push(c);
                }
                ']' if in_class => {
                    in_class = false;
                    glob.push(c);
                }
                '{' => {
                    let after = &text[i + 1..];
                    match after.find('}') {
                        Some(close) if is_capture_name(&after[..close]) => {
                            let name = &after[..close];
                            if in_class || alternation > 0 {
                                return Err(bad(&format!(
                                    "{{{name}}} is inside a class or an alternation"
                                )));
                            }
                            if names.iter().any(|n| n == name) {
                                return Err(bad(&format!("{{{name}}} appears twice")));
                            }
                            glob.push(OPEN);
                            glob.push_str(&names.len().to_string());
                            glob.push(CLOSE);
                            names.push(name.to_owned());
                            for _ in 0..=close {
                                chars.next();
                            }
                        }
                        // An alternation such as `{jsonl,log}`: globset's.
                        _ => {
                            if !in_class {
                                alternation += 1;
                            }
                            glob.push(c);
                        }
                    }
                }
                '}' if !in_class && alternation > 0 => {
                    alternation -= 1;
                    glob.push(c);
                }
                c => glob.push(c),
            }
        }
        let g = globset::GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| bad(&e.kind().to_string()))?;
        let mut re = g.regex().to_owned();
        for (i, name) in names.iter().enumerate() {
            let placeholder = format!("{}{i}{}", escaped_literal(OPEN), escaped_literal(CLOSE));
            if !re.contains(&placeholder) {
                return Err(bad(&format!(
                    "{{{name}}} is inside a class or an alternation"
                )));
            }
            re = re.replacen(&placeholder, &format!("(?P<{name}>[^/]+)"), 1);
        }
        let regex = regex::bytes::Regex::new(&re).map_err(|e| bad(&e.to_string()))?;
        Ok(Pattern {
            text: text.to_owned(),
            regex,
            has_conversation: names.iter().any(|n| n == "conversation"),
        })
    }

    /// Its literal leading directories (before the first component with a glob or a
    /// capture, never the last component).
    fn base(&self) -> Vec<String> {
        let comps: Vec<&str> = self.text.split('/').collect();
        comps[..comps.len() - 1]
            .iter()
            .take_while(|c| !has_glob_meta(c))
            .map(|c| (*c).to_owned())
            .collect()
    }
}

/// How globset writes a literal character in its regex (bytes, `(?-u)` mode).
fn escaped_literal(c: char) -> String {
    let mut buf = [0; 4];
    c.encode_utf8(&mut buf)
        .bytes()
        .map(|b| format!("\\x{b:02x}"))
        .collect()
}

impl LogLayout {
    /// Compiles a layout; refuses a pattern that does not parse, and one that names no
    /// conversation (no `{conversation}` capture) when the records do not either.
    pub fn new(opts: &LayoutOptions) -> Result<LogLayout> {
        opts.fields.check()?;
        let texts = if opts.patterns.is_empty() {
            vec!["logs/{tenant}/{conversation}/**".to_owned()]
        } else {
            opts.patterns.clone()
        };
        let patterns = texts
            .iter()
            .map(|t| Pattern::compile(t))
            .collect::<Result<Vec<_>>>()?;
        for p in &patterns {
            if !p.has_conversation && opts.fields.conversation.is_none() {
                return Err(Error::invalid(
                    "layout pattern",
                    format!(
                        "{:?} has no {{conversation}} capture, and no conversation pointer \
                         says where records name it",
                        p.text
                    ),
                ));
            }
        }
        let mut base = patterns[0].base();
        for p in &patterns[1..] {
            let b = p.base();
            let common = base.iter().zip(&b).take_while(|(a, b)| a == b).count();
            base.truncate(common);
        }
        let default_tenant = opts
            .default_tenant
            .clone()
            .unwrap_or_else(|| DEFAULT_TENANT.to_owned());
        crate::backup::check_name(&default_tenant, "default tenant")?;
        Ok(LogLayout {
            patterns,
            fields: opts.fields.clone(),
            default_tenant,
            base,
        })
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.text.as_str())
    }

    /// The directory of the data directory all patterns start in (`""`: the data
    /// directory itself).
    pub fn base(&self) -> String {
        self.base.join("/")
    }

    /// The record fields.
    pub fn fields(&self) -> &RecordFields {
        &self.fields
    }

    /// The first pattern a path (relative to the data directory) matches, with its
    /// captures.
    pub(crate) fn capture(&self, rel: &[u8]) -> Option<Captured> {
        std::str::from_utf8(rel).ok()?;
        for (i, p) in self.patterns.iter().enumerate() {
            let Some(caps) = p.regex.captures(rel) else {
                continue;
            };
            let name = |n: &str| -> Option<Option<String>> {
                match caps.name(n) {
                    None => Some(None),
                    Some(m) => {
                        let s = std::str::from_utf8(m.as_bytes()).ok()?;
                        crate::backup::check_name(s, n).ok()?;
                        Some(Some(s.to_owned()))
                    }
                }
            };
            let (Some(tenant), Some(conversation)) = (name("tenant"), name("conversation")) else {
                continue;
            };
            return Some(Captured {
                pattern: i,
                tenant,
                conversation,
            });
        }
        None
    }
}

/// Streams one pattern matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternCount {
    /// The pattern.
    pub pattern: String,
    /// Streams (files) it matched.
    pub streams: u64,
}

/// What validation found in one stream (counts over the records this run read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamWarning {
    /// The file.
    pub path: String,
    /// Records read by this run.
    pub records: u64,
    /// Of the first records read (up to 100), those without a resolvable seq.
    pub without_seq: u64,
    /// Of the first records read, those without a resolvable timestamp.
    pub without_ts: u64,
    /// Of the first records read, those that are not JSON objects.
    pub not_json: u64,
    /// How many of the first records were checked.
    pub checked: u64,
    /// Records whose timestamp is earlier than the one before.
    pub ts_backwards: u64,
    /// Records naming another conversation than the stream's first (when records name it).
    pub other_conversation: u64,
    /// One line saying what is wrong.
    pub message: String,
}

/// What a layout run found, beside the [`LogStats`].
#[derive(Debug, Clone, Default)]
pub struct LayoutReport {
    /// Streams per pattern, in the layout's order.
    pub patterns: Vec<PatternCount>,
    /// Streams with something wrong (stored all the same).
    pub warnings: Vec<StreamWarning>,
    /// The files taken as log streams (absolute), to leave out of the files part.
    pub matched: Vec<PathBuf>,
    /// The message-log figures.
    pub stats: LogStats,
}

impl LayoutReport {
    /// The matched files as `chatvault-fs` exclude patterns (exact absolute paths).
    pub fn exclude_patterns(&self) -> Vec<String> {
        self.matched
            .iter()
            .map(|p| escape_glob(&p.to_string_lossy()))
            .collect()
    }
}

/// A path as a glob that matches exactly it (`chatvault-fs` globs take `\` escapes).
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '?' | '*' | '[' | ']' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A stream's checks while a run reads it.
#[derive(Debug, Default)]
struct Check {
    records: u64,
    checked: u64,
    without_seq: u64,
    without_ts: u64,
    not_json: u64,
    ts_backwards: u64,
    other_conversation: u64,
    last_ts: Option<i64>,
    conversation: Option<String>,
    tenant: Option<String>,
}

/// What a layout adds to the log walker: the record fields, and the checks per stream.
#[derive(Debug)]
pub(crate) struct LayoutContext {
    fields: RecordFields,
    identity: bool,
    checks: Mutex<HashMap<String, Check>>,
}

impl LogsWalker<'_, '_> {
    /// The records of a stream's bytes as a batch: the hook where the layout's record
    /// fields replace the default ones. `shown` names the stream for the checks.
    pub(crate) fn lines(&self, shown: &str, bytes: Vec<u8>, continues: bool) -> Batch {
        let Some(ctx) = &self.layout else {
            return Batch::lines(bytes, continues);
        };
        let batch = Batch::lines_with(bytes, continues, &ctx.fields);
        let mut checks = ctx.checks.lock().unwrap_or_else(|p| p.into_inner());
        let c = checks.entry(shown.to_owned()).or_default();
        for (i, s) in batch.spans.iter().enumerate() {
            c.records += 1;
            if let Some((_, ts)) = s.head {
                if c.last_ts.is_some_and(|l| ts < l) {
                    c.ts_backwards += 1;
                }
                c.last_ts = Some(ts);
            }
            let wanted = c.checked < CHECKED_RECORDS as u64;
            if !wanted && (!ctx.identity || ctx.fields.conversation.is_none()) {
                continue;
            }
            let end = batch
                .spans
                .get(i + 1)
                .map_or(batch.bytes.len(), |n| n.start);
            let line = batch.bytes[s.start..end]
                .strip_suffix(b"\n")
                .unwrap_or(&batch.bytes[s.start..end]);
            let h = ctx.fields.head(line, ctx.identity);
            if wanted {
                c.checked += 1;
                c.not_json += u64::from(!h.json);
                c.without_seq += u64::from(h.seq.is_none());
                c.without_ts += u64::from(h.ts.is_none());
            }
            if let Some(conv) = h.conversation {
                match &c.conversation {
                    None => c.conversation = Some(conv),
                    Some(first) if *first != conv => c.other_conversation += 1,
                    Some(_) => {}
                }
            }
            if c.tenant.is_none() {
                c.tenant = h.tenant;
            }
        }
        batch
    }

    /// The tail of a stream read again for a merge: parsed like the rest, not checked.
    pub(crate) fn lines_again(&self, bytes: Vec<u8>, continues: bool) -> Batch {
        match &self.layout {
            Some(ctx) => Batch::lines_with(bytes, continues, &ctx.fields),
            None => Batch::lines(bytes, continues),
        }
    }
}

/// A matched file by its path components below the base.
type Entry = (Vec<Vec<u8>>, Found);

/// A matched file found by the walk.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    md: std::fs::Metadata,
    captured: Captured,
}

impl<'r> BackupSession<'r> {
    /// Backs up the JSONL logs of a data directory that `layout` describes: every file
    /// below the layout's base that matches a pattern is a log stream (appended records
    /// only, as [`BackupSession::backup_logs_dir`] does); the report says how many streams
    /// each pattern matched, what validation found, and which files to leave out of the
    /// files part.
    pub fn backup_logs_layout(
        &mut self,
        data_dir: &Path,
        layout: &LogLayout,
    ) -> Result<LayoutReport> {
        if self.logs.is_some() {
            return Err(Error::invalid(
                "backup set",
                "message logs were already added",
            ));
        }
        let base = layout.base();
        let root = data_dir.join(&base);
        // A parent taken with another base (or the default layout) has other paths:
        // nothing of it is comparable, so every stream is read anew.
        let parent_base = self
            .parent_root
            .as_ref()
            .and_then(|t| t.get(LOGS))
            .and_then(|n| NodeMeta::decode(&n.meta, "logs").ok())
            .and_then(|m| m.base);
        let parent = if parent_base.as_deref() == Some(base.as_str()) {
            self.parent_logs()?
        } else {
            None
        };
        let mut found = BTreeMap::new();
        let mut report = LayoutReport::default();
        if root.is_dir() {
            let base_rel: Vec<u8> = if base.is_empty() {
                Vec::new()
            } else {
                format!("{base}/").into_bytes()
            };
            walk(&root, &mut Vec::new(), &base_rel, layout, &mut found)
                .map_err(|e| Error::io(&root, e))?;
        }
        report.patterns = layout
            .patterns()
            .map(|p| PatternCount {
                pattern: p.to_owned(),
                streams: 0,
            })
            .collect();
        for f in found.values() {
            report.patterns[f.captured.pattern].streams += 1;
            report.matched.push(f.path.clone());
        }
        let mut walker = self.logs_walker();
        walker.layout = Some(LayoutContext {
            fields: layout.fields.clone(),
            identity: layout.fields.conversation.is_some() || layout.fields.tenant.is_some(),
            checks: Mutex::new(HashMap::new()),
        });
        let entries: Vec<Entry> = found.into_iter().collect();
        let (tree, stats) = build(&walker, layout, &entries, 0, parent.as_ref())?;
        let LogsWalker {
            problems,
            notices,
            layout: ctx,
            ..
        } = walker;
        let checks = ctx
            .map(|c| c.checks.into_inner().unwrap_or_else(|p| p.into_inner()))
            .unwrap_or_default();
        report.warnings = warnings(checks, layout);
        let problems = problems.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut meta = NodeMeta::dir();
        meta.base = Some(base);
        self.problems.extend(problems);
        self.notices
            .extend(notices.into_inner().unwrap_or_else(|p| p.into_inner()));
        self.logs = Some((
            Node {
                name: LOGS.to_vec(),
                subtree: Some(tree),
                content: Vec::new(),
                meta: meta.encode(),
            },
            stats,
        ));
        report.stats = stats;
        Ok(report)
    }
}

/// Collects the files below `dir` that match the layout, by their components below the
/// base. Symbolic links and other non-regular files never match.
fn walk(
    dir: &Path,
    comps: &mut Vec<Vec<u8>>,
    base_rel: &[u8],
    layout: &LogLayout,
    out: &mut BTreeMap<Vec<Vec<u8>>, Found>,
) -> std::io::Result<()> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    names.sort_unstable();
    for name in names {
        let path = dir.join(&name);
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue; // gone since the listing: the files part reports it if it matters
        };
        comps.push(name.as_bytes().to_vec());
        if md.is_dir() {
            walk(&path, comps, base_rel, layout, out)?;
        } else if md.is_file() {
            let mut rel = base_rel.to_vec();
            rel.extend_from_slice(&comps.join(&b'/'));
            if let Some(captured) = layout.capture(&rel) {
                out.insert(comps.clone(), Found { path, md, captured });
            }
        }
        comps.pop();
    }
    Ok(())
}

/// The tree of the entries whose first `depth` components are equal (and already walked).
fn build(
    walker: &LogsWalker<'_, '_>,
    layout: &LogLayout,
    entries: &[Entry],
    depth: usize,
    parent: Option<&Tree>,
) -> Result<(BlobId, LogStats)> {
    // Group by the component at `depth`.
    let mut groups: Vec<&[Entry]> = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || entries[i].0[depth] != entries[start].0[depth] {
            groups.push(&entries[start..i]);
            start = i;
        }
    }
    let results = groups
        .into_par_iter()
        .map(|g| {
            let name = g[0].0[depth].clone();
            let prev = parent.and_then(|t| t.get(&name));
            if g.len() == 1 && g[0].0.len() == depth + 1 {
                let f = &g[0].1;
                let shown = f.path.display().to_string();
                // Ranges stored under other record fields mean nothing under these: such
                // a stream is read and stored anew.
                let prev_stream = walker
                    .previous(&shown, prev, NodeKind::Lines)
                    .filter(|p| same_fields(p.meta.fields.as_ref(), &layout.fields));
                let Some((node, stats)) = walker.log_file(&f.path, &name, &f.md, prev_stream)?
                else {
                    return Ok(None);
                };
                Ok(Some((
                    identify(walker, layout, &shown, &f.captured, node)?,
                    stats,
                )))
            } else {
                let shown = g[0].1.path.display().to_string();
                let sub = walker.parent_subtree(&shown, prev);
                let (tree, stats) = build(walker, layout, g, depth + 1, sub.as_ref())?;
                Ok(Some((
                    Node {
                        name,
                        subtree: Some(tree),
                        content: Vec::new(),
                        meta: NodeMeta::dir().encode(),
                    },
                    stats,
                )))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mut nodes = Vec::new();
    let mut stats = LogStats::default();
    for (node, s) in results.into_iter().flatten() {
        nodes.push(node);
        stats = stats.add(s);
    }
    Ok((walker.writer.write_tree(&Tree::new(nodes)?)?, stats))
}

/// Whether a stream stored with `stored` fields (absent: the default) has its seq and
/// time ranges where `now` would put them.
fn same_fields(stored: Option<&RecordFields>, now: &RecordFields) -> bool {
    let d = RecordFields::default();
    let s = stored.unwrap_or(&d);
    (&s.seq, &s.ts, s.ts_format) == (&now.seq, &now.ts, now.ts_format)
}

/// Writes the stream's identity (tenant, conversation) and record fields into its meta:
/// from the path's captures, else from its records (this run's, or the parent's meta),
/// else the layout's default tenant.
fn identify(
    walker: &LogsWalker<'_, '_>,
    layout: &LogLayout,
    shown: &str,
    captured: &Captured,
    mut node: Node,
) -> Result<Node> {
    let mut meta = NodeMeta::decode(&node.meta, shown)?;
    let (from_records_tenant, from_records_conv) = walker
        .layout
        .as_ref()
        .map(|ctx| {
            let checks = ctx.checks.lock().unwrap_or_else(|p| p.into_inner());
            checks
                .get(shown)
                .map(|c| (c.tenant.clone(), c.conversation.clone()))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let valid = |s: Option<String>| s.filter(|s| crate::backup::check_name(s, "name").is_ok());
    meta.conversation = captured
        .conversation
        .clone()
        .or_else(|| valid(from_records_conv))
        .or(meta.conversation.take());
    meta.tenant = captured
        .tenant
        .clone()
        .or_else(|| valid(from_records_tenant))
        .or(meta.tenant.take())
        .or_else(|| Some(layout.default_tenant.clone()));
    meta.fields = (!layout.fields.is_default()).then(|| layout.fields.clone());
    node.meta = meta.encode();
    Ok(node)
}

/// A warning for each stream whose checks found something.
fn warnings(checks: HashMap<String, Check>, layout: &LogLayout) -> Vec<StreamWarning> {
    let mut out: Vec<StreamWarning> = checks
        .into_iter()
        .filter_map(|(path, c)| {
            let mut what = Vec::new();
            if c.checked > 0 && c.not_json == c.checked {
                what.push("no record is a JSON object".to_owned());
            } else {
                if c.checked > 0 && c.without_seq == c.checked {
                    what.push(format!(
                        "the seq pointer {} resolves in none of the first {} records",
                        layout.fields.seq, c.checked
                    ));
                }
                if c.checked > 0 && c.without_ts == c.checked {
                    what.push(format!(
                        "the timestamp pointer {} ({}) resolves in none of the first {} \
                         records",
                        layout.fields.ts,
                        layout.fields.ts_format.name(),
                        c.checked
                    ));
                }
            }
            if c.ts_backwards > 0 {
                what.push(format!(
                    "timestamps go backwards {} times in {} records",
                    c.ts_backwards, c.records
                ));
            }
            if c.other_conversation > 0 {
                what.push(format!(
                    "{} records name another conversation than the first",
                    c.other_conversation
                ));
            }
            if let Some(p) = &layout.fields.conversation
                && c.checked > 0
                && c.conversation.is_none()
            {
                what.push(format!(
                    "the conversation pointer {p} resolves in none of the first {} records",
                    c.checked
                ));
            }
            if what.is_empty() {
                return None;
            }
            Some(StreamWarning {
                path,
                records: c.records,
                without_seq: c.without_seq,
                without_ts: c.without_ts,
                not_json: c.not_json,
                checked: c.checked,
                ts_backwards: c.ts_backwards,
                other_conversation: c.other_conversation,
                message: what.join("; "),
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(patterns: &[&str]) -> LogLayout {
        LogLayout::new(&LayoutOptions {
            patterns: patterns.iter().map(|s| (*s).to_owned()).collect(),
            ..LayoutOptions::default()
        })
        .unwrap()
    }

    #[test]
    fn patterns_capture_tenant_and_conversation() {
        let l = layout(&[
            "logs/{tenant}/{conversation}/*.jsonl",
            "{tenant}/conv/{conversation}/{month}.jsonl",
        ]);
        assert_eq!(l.base(), "");
        let c = l.capture(b"logs/acme/general/2026-01.jsonl").unwrap();
        assert_eq!(c.pattern, 0);
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert_eq!(c.conversation.as_deref(), Some("general"));
        let c = l.capture(b"acme/conv/dm-7/2026-02.jsonl").unwrap();
        assert_eq!((c.pattern, c.conversation.as_deref()), (1, Some("dm-7")));
        for miss in [
            &b"logs/acme/general/2026-01.log"[..],
            b"logs/acme/general/sub/2026-01.jsonl",
            b"acme/conv/x/y/2026-01.jsonl",
            b"media/ab/cdef",
            b"logs/acme/\xff/2026-01.jsonl",
        ] {
            assert_eq!(l.capture(miss), None, "{}", String::from_utf8_lossy(miss));
        }
        let one = layout(&["logs/{tenant}/{conversation}/*.jsonl"]);
        assert_eq!(one.base(), "logs");
        let mixed = layout(&[
            "chat/{tenant}-{conversation}.{jsonl,log}",
            "chat/old/**/{conversation}.jsonl",
        ]);
        assert_eq!(mixed.base(), "chat");
        let c = mixed.capture(b"chat/acme-general.log").unwrap();
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert_eq!(c.conversation.as_deref(), Some("general"));
        let c = mixed.capture(b"chat/old/a/b/c.jsonl").unwrap();
        assert_eq!((c.pattern, c.tenant.as_deref()), (1, None));
        // The default layout is our generator's.
        let d = LogLayout::new(&LayoutOptions::default()).unwrap();
        assert_eq!(d.base(), "logs");
        assert!(d.capture(b"logs/t1/dm15/2026-01.jsonl").is_some());
    }

    #[test]
    fn bad_patterns_are_refused_clearly() {
        for (p, says) in [
            ("logs/{tenant}/*.jsonl", "no {conversation} capture"),
            ("/abs/{conversation}", "relative"),
            ("a/../{conversation}", "`..`"),
            ("{conversation}/{conversation}.jsonl", "twice"),
            ("[{conversation}]", "class"),
            ("logs/{conversation}/[", "unclosed"),
        ] {
            let e = LogLayout::new(&LayoutOptions {
                patterns: vec![p.into()],
                ..LayoutOptions::default()
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(says), "{p}: {e}");
        }
        // A conversation named by the records makes a capture-less pattern valid.
        let fields = RecordFields {
            conversation: Some("/channel".into()),
            ..RecordFields::default()
        };
        LogLayout::new(&LayoutOptions {
            patterns: vec!["export/*.jsonl".into()],
            fields,
            ..LayoutOptions::default()
        })
        .unwrap();
    }

    #[test]
    fn exclusions_match_exactly_the_matched_files() {
        let weird = "/srv/chat/logs/a[1]/b*{c}?/x\\y.jsonl";
        let p = chatvault_fs::Patterns::new(&[escape_glob(weird)]).unwrap();
        assert!(p.matches(weird.as_bytes(), b"x\\y.jsonl"));
        assert!(!p.matches(b"/srv/chat/logs/a1/bzc/x\\y.jsonl", b"x\\y.jsonl"));
    }
}
