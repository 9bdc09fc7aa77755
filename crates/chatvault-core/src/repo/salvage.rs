//! Salvaging damaged packs (`repair packs`): every blob of a damaged pack that still
//! authenticates is copied into a new pack, the damaged pack is deleted, and the index is
//! rebuilt, so the blobs that were lost are no longer indexed anywhere. The next backup
//! then stores again whatever its sources still hold (repo/presence.rs), and `check
//! --read-data` no longer finds the damaged pack.
//!
//! Invariants:
//! - A pack is damaged when its bytes no longer hash to its name (or it cannot be read at
//!   all); an intact pack is never touched. A damaged pack's blobs are copied only after
//!   they authenticate, decompress and hash to their ids, re-sealed unchanged (as a
//!   prune's repack does).
//! - Nothing is deleted before the salvaged copies and their index segments are stored,
//!   and deletion waits, under the exclusive lock, until no reader or writer session is
//!   open (as a prune's deletion step does), so no running restore loses a pack under it.
//! - Memory: one read run of a pack at a time (at most 8 MiB, or one blob), never a whole
//!   pack.

use std::time::Duration;

use super::Repository;
use super::locks::HeldLock;
use crate::blob;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::index::IndexEntry;
use crate::lock::LockKind;

use super::IndexRepairReport;

/// How much of a pack is read at once when hashing it.
const HASH_RUN: u64 = 8 << 20;

/// Options for [`Repository::repair_packs`].
#[derive(Debug, Clone)]
pub struct PackRepairOptions {
    /// The packs to examine. By default (empty), every pack: the whole repository is read,
    /// as by `check --read-data`.
    pub packs: Vec<PackId>,
    /// Examine and report, copy and delete nothing. By default disabled.
    pub dry_run: bool,
    /// How long to wait for open sessions (readers, writers) before deleting, and for a
    /// running prune. By default 60 s.
    pub wait: Duration,
}

impl Default for PackRepairOptions {
    fn default() -> Self {
        PackRepairOptions {
            packs: Vec::new(),
            dry_run: false,
            wait: Duration::from_secs(60),
        }
    }
}

/// One damaged pack and what became of its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedPack {
    /// The pack.
    pub pack: PackId,
    /// What is wrong with it.
    pub reason: String,
    /// It was not there at all (lost already): nothing to salvage or delete.
    pub missing: bool,
    /// Blobs copied into new packs (on a dry run: that would be).
    pub salvaged: u64,
    /// Blobs that failed verification, or every blob when the pack's header is
    /// unreadable (then unknown: `None`).
    pub lost: Option<Vec<BlobId>>,
    /// Whether the damaged pack was deleted.
    pub deleted: bool,
}

/// What [`Repository::repair_packs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackRepairReport {
    /// Packs examined.
    pub packs: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// The damaged ones.
    pub damaged: Vec<DamagedPack>,
    /// The index rebuild that followed the deletions (none on a dry run or when nothing
    /// was damaged).
    pub index: Option<IndexRepairReport>,
}

impl PackRepairReport {
    /// Whether data was lost for good (a blob failed verification, or a pack's header
    /// was unreadable).
    pub fn lost_data(&self) -> bool {
        self.damaged
            .iter()
            .any(|d| d.lost.as_ref().is_none_or(|l| !l.is_empty()))
    }
}

impl Repository {
    /// Finds damaged packs (every pack, or those named), copies the blobs of each that
    /// still verify into new packs, deletes the damaged packs and rebuilds the index.
    /// Needs a full or admin key. Holds the prune lock throughout, and the exclusive lock
    /// while deleting.
    pub fn repair_packs(&self, opts: &PackRepairOptions) -> Result<PackRepairReport> {
        self.require_read("repair packs")?;
        let prune_opts = super::PruneOptions {
            wait: opts.wait,
            ..super::PruneOptions::default()
        };
        let _prune = self.take_prune_lock(&prune_opts)?;
        let listed = self.backend.list("data/")?;
        let mut report = PackRepairReport::default();
        let mut chosen: Vec<(PackId, String, Option<u64>)> = Vec::new();
        for o in &listed {
            let Some(id) = o
                .name
                .rsplit('/')
                .next()
                .and_then(|h| PackId::from_hex(h).ok())
            else {
                continue;
            };
            if opts.packs.is_empty() || opts.packs.contains(&id) {
                chosen.push((id, o.name.clone(), Some(o.size)));
            }
        }
        // A named pack that is not listed is lost already: reported, nothing to salvage.
        for id in &opts.packs {
            if !chosen.iter().any(|c| c.0 == *id) {
                chosen.push((*id, id.object_name(), None));
            }
        }
        let writer = match opts.dry_run {
            true => None,
            false => Some(self.repack_writer()?),
        };
        for (id, name, size) in chosen {
            report.packs += 1;
            let Some(size) = size else {
                report.damaged.push(DamagedPack {
                    pack: id,
                    reason: "missing".into(),
                    missing: true,
                    salvaged: 0,
                    lost: None,
                    deleted: false,
                });
                continue;
            };
            report.bytes_read += size;
            if let Some(d) = self.salvage(id, &name, size, writer.as_ref())? {
                report.damaged.push(d);
            }
        }
        if let Some(w) = writer {
            w.finish()?;
        }
        if opts.dry_run || report.damaged.iter().all(|d| d.missing) {
            return Ok(report);
        }
        self.delete_damaged(&mut report, opts.wait)?;
        report.index = Some(self.rebuild_index()?);
        Ok(report)
    }

    /// Deletes the damaged packs that exist, under the exclusive lock once no session is
    /// open.
    fn delete_damaged(&self, report: &mut PackRepairReport, wait: Duration) -> Result<()> {
        let _exclusive =
            HeldLock::take(self.backend.clone(), LockKind::Exclusive, &self.lock_opts)?;
        let open = self.wait_for_no(LockKind::Shared, None, wait)?;
        if let Some(first) = open.first() {
            return Err(Error::Locked {
                reason: format!(
                    "{} session(s) still open ({}); the salvaged blobs are stored, no pack \
                     was deleted: run `repair packs` again",
                    open.len(),
                    first.describe()
                ),
            });
        }
        for d in report.damaged.iter_mut().filter(|d| !d.missing) {
            match self.backend.delete(&d.pack.object_name()) {
                Ok(()) => d.deleted = true,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Examines one pack; if it is damaged, queues its verified blobs to `writer` (none on a
    /// dry run) and says what was salvaged and lost.
    fn salvage(
        &self,
        id: PackId,
        name: &str,
        size: u64,
        writer: Option<&super::BlobWriter<'_>>,
    ) -> Result<Option<DamagedPack>> {
        let mut hasher = blake3::Hasher::new();
        let mut at = 0;
        while at < size {
            let n = HASH_RUN.min(size - at);
            hasher.update(&self.backend.get_range(name, at, n)?);
            at += n;
        }
        if hasher.finalize().as_bytes() == id.as_bytes() {
            return Ok(None);
        }
        let mut damaged = DamagedPack {
            pack: id,
            reason: "content does not match its name".into(),
            missing: false,
            salvaged: 0,
            lost: None,
            deleted: false,
        };
        let (entries, key) = match self
            .read_pack_entries(name, size)
            .and_then(|e| Ok((e, self.pack_key(&id)?)))
        {
            Ok(ok) => ok,
            Err(e @ (Error::Io(_) | Error::Cache(_) | Error::PermissionDenied { .. })) => {
                return Err(e);
            }
            Err(e) => {
                damaged.reason = format!("header unreadable, every blob lost: {e}");
                return Ok(Some(damaged));
            }
        };
        let mut lost = Vec::new();
        for e in entries {
            match self.verified_payload(&e, name, &key) {
                Ok(payload) => {
                    if let Some(w) = writer {
                        w.write_payload(e.blob, e.blob_type, e.codec, e.raw_len, payload)?;
                    }
                    damaged.salvaged += 1;
                }
                Err(err @ (Error::Io(_) | Error::Cache(_))) => return Err(err),
                Err(_) => lost.push(e.blob),
            }
        }
        damaged.lost = Some(lost);
        Ok(Some(damaged))
    }

    /// One blob of a pack, read and fully verified, as its stored payload.
    fn verified_payload(
        &self,
        e: &IndexEntry,
        name: &str,
        key: &crate::pack::PackKey,
    ) -> Result<Vec<u8>> {
        let sealed = self
            .backend
            .get_range(name, u64::from(e.offset), u64::from(e.length))?;
        blob::open_payload(
            key,
            &self.secrets.id_key,
            &self.config.repo_id,
            &e.blob_meta(),
            &sealed,
            name,
        )
    }
}
