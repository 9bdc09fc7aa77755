//! Keyless mirroring: makes one store hold an exact copy of a repository's objects from
//! another, without any key (`chatvault mirror SRC DST`, docs/OPERATIONS.md, "Mirroring").
//!
//! Invariants:
//! - **Dependency order.** SRC is listed against dependency order (key slots, holds,
//!   snapshots, index segments, packs) and copied along it (packs, segments, snapshots,
//!   holds, key slots, then the config), and every object is fetched after every listing.
//!   Writers put packs before the segments naming them and segments before snapshots;
//!   prune deletes the other way round (docs/FORMAT.md, section 10.8). So a segment this
//!   run copies names only packs its listing saw, or it was deleted before it was fetched
//!   and is skipped as vanished: DST never gains an object whose dependencies it lacks.
//! - **Verified while copying.** A content-addressed object is hashed before it is
//!   written; one that does not match its name (or is over its kind's size limit) is
//!   refused and nothing of it is written. A phase that refused anything ends the run: no
//!   later phase runs.
//! - **The config only moves forward.** DST's config is replaced only by a config whose
//!   signature verifies under its own admin key, of the same repository and admin key as
//!   DST's, with a higher sequence, and only after everything else arrived. A DST without
//!   a config gets SRC's key slots and config first, so it opens (as an empty repository)
//!   at every moment.
//! - **Resumable.** DST is listed once; an object already there with SRC's size is not
//!   sent again. `Backend::put` never leaves a partial object, and a content-addressed
//!   object of the wrong size in DST is replaced by the verified bytes.
//! - **Bounded memory.** At most [`MirrorOptions::transfers`] objects are in flight, each
//!   read whole only after its listed size passed its kind's limit.
//! - **A source that changed under the run** (an object listed, then gone when fetched:
//!   a prune or forget ran meanwhile) ends the run after that phase: a snapshot copied
//!   after a vanished segment could lack the replacement segment the listing missed.
//! - **Deletion** (only with [`MirrorOptions::delete`]) removes from DST an object only
//!   after this mirror saw it missing from SRC for the whole grace period (recorded in a
//!   [`MirrorState`] the caller keeps), never while SRC holds a prune lock, only after a
//!   run that copied everything, and dependents first: while a hold, snapshot or segment
//!   waits out its grace period, no object of a kind it may need (snapshots, segments,
//!   packs) is deleted. A listing that still showed a segment prune was about to delete
//!   cannot make DST lose the pack it names: the segment is seen missing in a later run,
//!   and the pack waits for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::backend::{Backend, ObjectInfo};
use crate::blob::MAX_SEALED_LEN;
use crate::config::Config;
use crate::crypto::sign::PublicKey;
use crate::envelope::{self, magic};
use crate::error::{Error, Result};
use crate::format::now_unix_ms;
use crate::id::{RepoId, claimed_hash, content_hash};
use crate::limits::ObjectLimit;
use crate::lock::{LockKind, LockRecord};
use crate::pack::{MAX_HEADER_LEN, TRAILER_LEN};
use crate::repo::{CheckProblem, ProblemKind, read_bounded};

const CONFIG: &str = "config";

/// Options of [`mirror`].
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// Objects copied at once; each holds one object in memory (a pack is at most the
    /// repository's pack size plus one blob). By default 4.
    pub transfers: usize,
    /// Remove from DST what SRC no longer has. By default `None`: nothing is deleted.
    pub delete: Option<DeleteOptions>,
    /// The admin public key SRC's config (and DST's, if it has one) must be signed by.
    /// By default `None`: DST's config's admin key, or SRC's on a first copy.
    pub admin_key: Option<PublicKey>,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            transfers: 4,
            delete: None,
            admin_key: None,
        }
    }
}

/// How [`mirror`] deletes from DST what SRC no longer has.
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    /// How long the mirror must have seen an object missing from SRC before it deletes
    /// it from DST. By default 24 hours.
    pub grace: Duration,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            grace: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the mirror remembers between runs for deletion: since when it has seen each DST
/// object missing from SRC. Kept by the caller (the CLI, in its cache directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorState {
    missing_since: BTreeMap<String, i64>,
}

const STATE_HEADER: &str = "chatvault mirror state v1";

impl MirrorState {
    /// Decodes [`encode`](MirrorState::encode)'s text: a header line, then one
    /// `<unix ms> <object name>` line per object. Anything else is `Corrupt`.
    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let bad = |why: &str| Error::corrupt(object, why.to_owned());
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some(STATE_HEADER) {
            return Err(bad("not a mirror state file"));
        }
        let mut missing_since = BTreeMap::new();
        for line in lines {
            let (ms, name) = line
                .split_once(' ')
                .ok_or_else(|| bad("a malformed line"))?;
            let ms: i64 = ms.parse().map_err(|_| bad("a malformed time"))?;
            crate::backend::check_object_name(name).map_err(|_| bad("a malformed object name"))?;
            missing_since.insert(name.to_owned(), ms);
        }
        Ok(MirrorState { missing_since })
    }

    /// The state as text.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("{STATE_HEADER}\n");
        for (name, ms) in &self.missing_since {
            s.push_str(&format!("{ms} {name}\n"));
        }
        s.into_bytes()
    }

    /// Since when (Unix ms) the mirror has seen `name` in DST but not in SRC.
    pub fn missing_since(&self, name: &str) -> Option<i64> {
        self.missing_since.get(name).copied()
    }

    /// How many objects are waiting out their grace period.
    pub fn len(&self) -> usize {
        self.missing_since.len()
    }

    /// Whether no object is waiting.
    pub fn is_empty(&self) -> bool {
        self.missing_since.is_empty()
    }
}

/// Counts for one kind of object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindReport {
    /// Objects SRC listed.
    pub listed: u64,
    /// Objects written to DST.
    pub copied: u64,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Objects DST already had with the right size (not sent).
    pub present: u64,
    /// Content-addressed objects DST had with a wrong size, replaced by verified bytes.
    pub repaired: u64,
    /// Objects SRC listed but no longer had when they were fetched (a prune or forget
    /// racing the mirror).
    pub vanished: u64,
    /// Objects deleted from DST (`delete`).
    pub deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// Objects missing from SRC whose grace period has not run out yet.
    pub delete_pending: u64,
}

/// What happened to the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// The run stopped before the config.
    NotReached,
    /// DST's config was replaced (or created, `from` = `None`).
    Copied {
        /// DST's sequence before, if it had a config.
        from: Option<u64>,
        /// The sequence written.
        to: u64,
    },
    /// Both sides have the same config.
    Unchanged {
        /// Its sequence.
        sequence: u64,
    },
    /// DST's config is newer than SRC's; it was kept (a mirror never rolls DST back).
    DestinationNewer {
        /// SRC's sequence.
        source: u64,
        /// DST's sequence.
        destination: u64,
    },
    /// Both sides have different configs with the same sequence: a fork, refused (DST's
    /// is kept, and the config is listed among the refused objects).
    Conflict {
        /// The sequence.
        sequence: u64,
    },
}

/// Whether deletion ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Not asked for.
    Off,
    /// Ran (the per-kind counts say what it removed and what waits).
    Ran,
    /// Asked for, but not run this time; the reason says why.
    Postponed {
        /// Why (a prune lock on SRC, an incomplete copy).
        reason: String,
    },
}

/// What [`mirror`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    /// Packs (`data/`).
    pub packs: KindReport,
    /// Index segments (`index/`).
    pub segments: KindReport,
    /// Snapshots (`snapshots/`).
    pub snapshots: KindReport,
    /// Holds (`holds/`).
    pub holds: KindReport,
    /// Key slots (`keys/`).
    pub key_slots: KindReport,
    /// The config.
    pub config: ConfigOutcome,
    /// Objects refused: content that does not match its name, an object over its kind's
    /// limit, a key slot or config that differs from DST's of the same name.
    pub refused: Vec<CheckProblem>,
    /// Whether every phase ran (false when a refusal stopped the run, or SRC changed
    /// under it).
    pub complete: bool,
    /// An object SRC listed was gone when fetched (a prune or forget ran meanwhile): the
    /// run stopped after that phase, since objects that depend on it may need
    /// replacements the listing did not see. Running the mirror again finishes the copy.
    pub changed_under_us: bool,
    /// Whether deletion ran.
    pub deletion: Deletion,
    /// How long it took.
    pub duration: Duration,
}

impl MirrorReport {
    fn new() -> Self {
        MirrorReport {
            packs: KindReport::default(),
            segments: KindReport::default(),
            snapshots: KindReport::default(),
            holds: KindReport::default(),
            key_slots: KindReport::default(),
            config: ConfigOutcome::NotReached,
            refused: Vec::new(),
            complete: false,
            changed_under_us: false,
            deletion: Deletion::Off,
            duration: Duration::ZERO,
        }
    }

    fn kind_mut(&mut self, kind: Kind) -> &mut KindReport {
        match kind {
            Kind::Pack => &mut self.packs,
            Kind::Segment => &mut self.segments,
            Kind::Snapshot => &mut self.snapshots,
            Kind::Hold => &mut self.holds,
            Kind::KeySlot => &mut self.key_slots,
        }
    }
}

/// The kinds of object a mirror copies (locks, probes and temporary files are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Pack,
    Segment,
    Snapshot,
    Hold,
    KeySlot,
}

impl Kind {
    /// The order SRC is listed in: against dependency order.
    const LISTING: [Kind; 5] = [
        Kind::KeySlot,
        Kind::Hold,
        Kind::Snapshot,
        Kind::Segment,
        Kind::Pack,
    ];
    /// The order objects are copied in: dependencies first.
    const COPYING: [Kind; 5] = [
        Kind::Pack,
        Kind::Segment,
        Kind::Snapshot,
        Kind::Hold,
        Kind::KeySlot,
    ];
    /// The order DST objects are deleted in: dependents first, as a prune does.
    const DELETING: [Kind; 5] = [
        Kind::Hold,
        Kind::Snapshot,
        Kind::Segment,
        Kind::Pack,
        Kind::KeySlot,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Kind::Pack => "data/",
            Kind::Segment => "index/",
            Kind::Snapshot => "snapshots/",
            Kind::Hold => "holds/",
            Kind::KeySlot => "keys/",
        }
    }

    fn content_addressed(self) -> bool {
        self != Kind::KeySlot
    }
}

/// A config object, verified under its own admin key.
struct ConfigObject {
    bytes: Vec<u8>,
    repo_id: RepoId,
    admin_key: PublicKey,
    sequence: u64,
    pack_size: u32,
}

/// Reads and verifies a store's config without a key: the envelope's signature under the
/// admin key it names, and the body's agreement with the header. `None` if there is none.
fn read_config(b: &dyn Backend) -> Result<Option<ConfigObject>> {
    let bytes = match read_bounded(b, CONFIG, ObjectLimit::Config) {
        Err(e) if e.is_not_found() => return Ok(None),
        r => r?,
    };
    let env = envelope::parse(&bytes, magic::CONFIG, CONFIG)?;
    let body = Config::decode_body(env.body)?;
    let c = Config::from_object(&bytes, &body.repo_id, &env.signer)?;
    Ok(Some(ConfigObject {
        repo_id: c.repo_id,
        admin_key: c.admin_key,
        sequence: c.sequence,
        pack_size: c.pack_size,
        bytes,
    }))
}

/// Refuses a SRC and DST that are not the same repository under the same admin key, or
/// an admin key other than the pinned one.
fn check_same_repository(
    src: &ConfigObject,
    dst: Option<&ConfigObject>,
    pinned: Option<&PublicKey>,
) -> Result<()> {
    for c in std::iter::once(src).chain(dst) {
        if let Some(pin) = pinned
            && c.admin_key != *pin
        {
            return Err(Error::untrusted(
                CONFIG,
                format!(
                    "signed by admin key {}, not the pinned {}",
                    c.admin_key.to_hex(),
                    pin.to_hex()
                ),
            ));
        }
    }
    if let Some(d) = dst {
        if d.repo_id != src.repo_id {
            return Err(Error::invalid(
                "mirror destination",
                format!(
                    "it holds another repository ({}, not {})",
                    d.repo_id.to_hex(),
                    src.repo_id.to_hex()
                ),
            ));
        }
        if d.admin_key != src.admin_key {
            return Err(Error::untrusted(
                CONFIG,
                "the source's config is signed by another admin key than the destination's",
            ));
        }
    }
    Ok(())
}

/// SRC's objects by kind, and DST's sizes by name.
struct Listing {
    src: HashMap<Kind, Vec<ObjectInfo>>,
    dst: HashMap<String, u64>,
}

impl Listing {
    fn take(src: &dyn Backend, dst: &dyn Backend) -> Result<Listing> {
        let mut l = Listing {
            src: HashMap::new(),
            dst: HashMap::new(),
        };
        for kind in Kind::LISTING {
            l.src.insert(kind, src.list(kind.prefix())?);
        }
        for kind in Kind::LISTING {
            l.dst.extend(
                dst.list(kind.prefix())?
                    .into_iter()
                    .map(|o| (o.name, o.size)),
            );
        }
        Ok(l)
    }
}

/// What copying one object came to.
enum Transfer {
    Copied(u64),
    Repaired(u64),
    Present,
    Vanished,
    Refused(CheckProblem),
}

fn refusal(name: &str, message: impl Into<String>) -> Transfer {
    Transfer::Refused(CheckProblem {
        kind: ProblemKind::ContentMismatch,
        object: name.to_owned(),
        message: message.into(),
        snapshots: Vec::new(),
    })
}

struct Copier<'a> {
    src: &'a dyn Backend,
    dst: &'a dyn Backend,
    transfers: usize,
    pack_limit: u64,
}

impl Copier<'_> {
    fn limit(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Pack => self.pack_limit,
            Kind::Segment => ObjectLimit::Segment.max_len(),
            Kind::Snapshot => ObjectLimit::Snapshot.max_len(),
            Kind::Hold => ObjectLimit::Hold.max_len(),
            Kind::KeySlot => ObjectLimit::KeySlot.max_len(),
        }
    }

    /// Copies every object of `kind` DST lacks, `transfers` at a time; the first storage
    /// error stops the phase and is returned.
    fn phase(&self, kind: Kind, l: &mut Listing, report: &mut MirrorReport) -> Result<()> {
        let listed = l.src.get(&kind).map(Vec::as_slice).unwrap_or_default();
        let counts = report.kind_mut(kind);
        counts.listed = listed.len() as u64;
        let todo: Vec<(&ObjectInfo, Option<u64>)> = listed
            .iter()
            .map(|o| (o, l.dst.get(&o.name).copied()))
            .filter(|(o, d)| *d != Some(o.size))
            .collect();
        counts.present += (listed.len() - todo.len()) as u64;
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results = Mutex::new(Vec::with_capacity(todo.len()));
        std::thread::scope(|s| {
            for _ in 0..self.transfers.clamp(1, todo.len().max(1)) {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let Some(&(o, dst_size)) = todo.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            break;
                        };
                        let r = self.copy(kind, o, dst_size);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                        results.push((o, r));
                    }
                });
            }
        });
        let mut first_error = None;
        for (o, r) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let counts = report.kind_mut(kind);
            match r {
                Ok(Transfer::Copied(n)) => {
                    counts.copied += 1;
                    counts.bytes_copied += n;
                    l.dst.insert(o.name.clone(), n);
                }
                Ok(Transfer::Repaired(n)) => {
                    counts.repaired += 1;
                    counts.bytes_copied += n;
                    l.dst.insert(o.name.clone(), n);
                }
                Ok(Transfer::Present) => counts.present += 1,
                Ok(Transfer::Vanished) => counts.vanished += 1,
                Ok(Transfer::Refused(p)) => report.refused.push(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Copies one object: reads it whole (its listed size is within its kind's limit),
    /// verifies a content-addressed one against its name, and writes it to DST.
    fn copy(&self, kind: Kind, o: &ObjectInfo, dst_size: Option<u64>) -> Result<Transfer> {
        let limit = self.limit(kind);
        if o.size > limit {
            return Ok(refusal(
                &o.name,
                format!("{} bytes, more than the {limit} it may have", o.size),
            ));
        }
        // The name first: a listing may show anything a store holds under the prefix.
        let claimed = if kind.content_addressed() {
            match claimed_hash(&o.name) {
                None => return Ok(refusal(&o.name, "name is not a content hash")),
                h => h,
            }
        } else {
            if crate::backend::check_object_name(&o.name).is_err() {
                return Ok(refusal(&o.name, "not an object name"));
            }
            None
        };
        let bytes = match self.src.get_range(&o.name, 0, o.size) {
            Err(e) if e.is_not_found() => return Ok(Transfer::Vanished),
            r => r?,
        };
        if claimed.is_some_and(|h| h != content_hash(&bytes)) {
            return Ok(refusal(&o.name, "content does not match its name"));
        }
        let n = bytes.len() as u64;
        if dst_size.is_none() {
            match self.dst.put(&o.name, &bytes) {
                Ok(()) => return Ok(Transfer::Copied(n)),
                Err(Error::AlreadyExists { .. }) => {
                    if self.dst.stat(&o.name)?.size == n {
                        return Ok(Transfer::Present);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // DST has an object of that name with another size.
        if kind.content_addressed() {
            // The name fixes the content, and these bytes were verified against it.
            self.dst.replace(&o.name, &bytes)?;
            Ok(Transfer::Repaired(n))
        } else {
            Ok(refusal(
                &o.name,
                "the destination has a different key slot under this name; it was kept",
            ))
        }
    }
}

/// The largest pack a writer with this pack size produces: it closes a pack once it
/// reaches the pack size, so one blob, the header and the trailer may pass it.
fn pack_limit(pack_size: u32) -> u64 {
    u64::from(pack_size) + (MAX_SEALED_LEN + MAX_HEADER_LEN + TRAILER_LEN) as u64
}

/// Makes DST hold every object of the repository in SRC, without a key: see the module
/// documentation for the order, the checks and what deletion waits for. `state` is read
/// and updated only when deleting.
///
/// Errors: [`Error::RepositoryMissing`] when SRC has no config; [`Error::Untrusted`] or
/// [`Error::Corrupt`] when a config does not verify or is signed by another admin key
/// than DST's (or the pinned one); [`Error::InvalidArgument`] when DST holds another
/// repository; storage errors as they come. Refused objects are not errors: they are in
/// the report, and the run stops after the phase that refused them.
pub fn mirror(
    src: &dyn Backend,
    dst: &dyn Backend,
    opts: &MirrorOptions,
    state: &mut MirrorState,
) -> Result<MirrorReport> {
    let start = Instant::now();
    let src_config = read_config(src)?.ok_or_else(|| Error::RepositoryMissing {
        location: src.location(),
    })?;
    let mut dst_config = read_config(dst)?;
    check_same_repository(&src_config, dst_config.as_ref(), opts.admin_key.as_ref())?;
    let mut listing = Listing::take(src, dst)?;
    let copier = Copier {
        src,
        dst,
        transfers: opts.transfers,
        pack_limit: pack_limit(src_config.pack_size),
    };
    let mut report = MirrorReport::new();
    let bootstrap = dst_config.is_none();
    if bootstrap {
        // An empty repository is a valid one: slots and config first, so that DST opens
        // at every moment from here on.
        copier.phase(Kind::KeySlot, &mut listing, &mut report)?;
        if !report.refused.is_empty() {
            return Ok(finish(report, start, opts));
        }
        report.config = update_config(dst, &src_config, None, &mut report.refused)?;
    }
    for kind in Kind::COPYING {
        if bootstrap && kind == Kind::KeySlot {
            continue;
        }
        copier.phase(kind, &mut listing, &mut report)?;
        if !report.refused.is_empty() {
            return Ok(finish(report, start, opts));
        }
        if report.kind_mut(kind).vanished > 0 {
            // A prune or forget ran since the listing: what depends on the vanished
            // objects may need replacements this listing did not see.
            report.changed_under_us = true;
            return Ok(finish(report, start, opts));
        }
    }
    // The newest config SRC has, read after everything it may trust arrived.
    let latest = read_config(src)?.ok_or_else(|| Error::RepositoryMissing {
        location: src.location(),
    })?;
    // DST's config as it is now: another mirror (or an admin) may have moved it on.
    dst_config = read_config(dst)?;
    check_same_repository(&latest, dst_config.as_ref(), opts.admin_key.as_ref())?;
    report.config = match update_config(dst, &latest, dst_config.as_ref(), &mut report.refused)? {
        // A first copy reports the config it ended with, from nothing.
        ConfigOutcome::Copied { to, .. } if bootstrap => ConfigOutcome::Copied { from: None, to },
        _ if bootstrap => report.config,
        outcome => outcome,
    };
    report.complete = report.refused.is_empty();
    if let Some(d) = &opts.delete
        && report.complete
    {
        report.deletion = delete_unlisted(src, dst, &listing, state, d, &mut report)?;
    }
    Ok(finish(report, start, opts))
}

fn finish(mut report: MirrorReport, start: Instant, opts: &MirrorOptions) -> MirrorReport {
    if opts.delete.is_some() && !report.complete {
        report.deletion = Deletion::Postponed {
            reason: "the copy did not complete".into(),
        };
    }
    report.duration = start.elapsed();
    report
}

/// Replaces DST's config by `src` if it is newer; never by an older one.
fn update_config(
    dst: &dyn Backend,
    src: &ConfigObject,
    current: Option<&ConfigObject>,
    refused: &mut Vec<CheckProblem>,
) -> Result<ConfigOutcome> {
    if let Some(d) = current {
        if src.sequence < d.sequence {
            return Ok(ConfigOutcome::DestinationNewer {
                source: src.sequence,
                destination: d.sequence,
            });
        }
        if src.sequence == d.sequence {
            if src.bytes == d.bytes {
                return Ok(ConfigOutcome::Unchanged {
                    sequence: d.sequence,
                });
            }
            refused.push(CheckProblem {
                kind: ProblemKind::ContentMismatch,
                object: CONFIG.into(),
                message: format!(
                    "source and destination both have config sequence {} with different \
                     content; the destination's was kept",
                    d.sequence
                ),
                snapshots: Vec::new(),
            });
            return Ok(ConfigOutcome::Conflict {
                sequence: d.sequence,
            });
        }
    }
    dst.replace(CONFIG, &src.bytes)?;
    Ok(ConfigOutcome::Copied {
        from: current.map(|d| d.sequence),
        to: src.sequence,
    })
}

/// Why deletion must wait: a prune lock (or a lock that does not read) on SRC.
fn prune_running(src: &dyn Backend) -> Result<Option<String>> {
    for o in src.list("locks/")? {
        let bytes = match read_bounded(src, &o.name, ObjectLimit::Lock) {
            Err(e) if e.is_not_found() => continue,
            Err(Error::Corrupt { .. }) => return Ok(Some(format!("{} does not read", o.name))),
            r => r?,
        };
        match LockRecord::decode(&bytes, &o.name) {
            Ok(l) if l.kind == LockKind::Shared => {}
            Ok(l) => {
                return Ok(Some(format!(
                    "the source holds a {} lock ({}, pid {})",
                    l.kind.as_str(),
                    crate::printable(&l.host),
                    l.pid
                )));
            }
            Err(_) => return Ok(Some(format!("{} does not read", o.name))),
        }
    }
    Ok(None)
}

/// Deletes from DST the objects SRC has been without for the grace period, dependents
/// first; records since when the others are missing.
fn delete_unlisted(
    src: &dyn Backend,
    dst: &dyn Backend,
    l: &Listing,
    state: &mut MirrorState,
    opts: &DeleteOptions,
    report: &mut MirrorReport,
) -> Result<Deletion> {
    if let Some(reason) = prune_running(src)? {
        return Ok(Deletion::Postponed { reason });
    }
    let now = now_unix_ms();
    let grace = i64::try_from(opts.grace.as_millis()).unwrap_or(i64::MAX);
    let mut waiting = BTreeMap::new();
    // Whether a dependent kind still has objects waiting: then what they may need stays.
    let mut dependents_wait = false;
    for kind in Kind::DELETING {
        let gated = dependents_wait && kind != Kind::KeySlot;
        let in_src: HashSet<&str> = l.src[&kind].iter().map(|o| o.name.as_str()).collect();
        let mut gone: Vec<(&String, u64)> = l
            .dst
            .iter()
            .filter(|(name, _)| name.starts_with(kind.prefix()) && !in_src.contains(name.as_str()))
            .map(|(name, size)| (name, *size))
            .collect();
        gone.sort();
        for (name, size) in gone {
            let since = state.missing_since(name).unwrap_or(now);
            if gated || now.saturating_sub(since) < grace {
                waiting.insert(name.clone(), since);
                report.kind_mut(kind).delete_pending += 1;
                continue;
            }
            dst.delete(name)?;
            let counts = report.kind_mut(kind);
            counts.deleted += 1;
            counts.bytes_deleted += size;
        }
        dependents_wait |= report.kind_mut(kind).delete_pending > 0;
    }
    state.missing_since = waiting;
    Ok(Deletion::Ran)
}
