//! Holds (legal hold): placing, listing and releasing admin-signed hold records.
//!
//! A hold object is an envelope (magic `CVHOLDRC`) signed by the admin key, stored as
//! `holds/<BLAKE3 of the object>` (docs/FORMAT.md, section 10.6). Releasing a hold deletes
//! its object: the repository keeps the holds in force, not their history.
//! Invariants: only an admin key places or releases holds; a hold is accepted only if its
//! name matches its hash, its signature verifies and its signer is the admin key of the
//! verified config; a hold that fails any check is an error, never skipped, so retention
//! never forgets a held snapshot because its hold was damaged.

use super::reader::read_bounded;
use crate::limits::ObjectLimit;
use std::collections::BTreeMap;

use super::Repository;
use crate::envelope::{self, magic};
use crate::error::{Error, Result};
use crate::format::now_unix_ms;
use crate::hold::{Hold, HoldRecord, MAX_HOLD_REASON};
use crate::id::{HoldId, SnapshotId, content_hash};

impl Repository {
    /// Places a hold on a snapshot, which must exist and load. Needs an admin key.
    pub fn place_hold(&self, snapshot: SnapshotId, reason: &str) -> Result<Hold> {
        let admin = self.require_admin("place holds")?;
        if reason.len() > MAX_HOLD_REASON {
            return Err(Error::invalid("hold reason", "longer than 1024 bytes"));
        }
        self.load_snapshot(snapshot)?;
        let record = HoldRecord {
            snapshot,
            time_unix_ms: now_unix_ms(),
            reason: reason.to_owned(),
        };
        let seq = self.lock_pins().next_writer_seq(&admin.public())?;
        let bytes = envelope::seal(
            magic::HOLD,
            admin,
            &self.config.repo_id,
            seq,
            &record.encode(),
        );
        let id = HoldId::from_bytes(content_hash(&bytes));
        self.backend.put(&id.object_name(), &bytes)?;
        Ok(Hold {
            id,
            signer: admin.public(),
            record,
        })
    }

    /// Loads and verifies one hold.
    pub fn load_hold(&self, id: HoldId) -> Result<Hold> {
        let name = id.object_name();
        let bytes = read_bounded(self.backend(), &name, ObjectLimit::Hold)?;
        if content_hash(&bytes) != *id.as_bytes() {
            return Err(Error::corrupt(&*name, "content does not match its name"));
        }
        let env = envelope::open(&bytes, magic::HOLD, &name, &self.config.repo_id)?;
        if env.signer != self.config.admin_key {
            return Err(Error::untrusted(&*name, "not signed by the admin key"));
        }
        let record = HoldRecord::decode(env.body, &name)?;
        Ok(Hold {
            id,
            signer: env.signer,
            record,
        })
    }

    /// Every hold, sorted by snapshot then time. Fails on the first hold that does not
    /// verify: callers that decide what to delete must not go on without it.
    pub fn list_holds(&self) -> Result<Vec<Hold>> {
        let mut out = Vec::new();
        for o in self.backend.list("holds/")? {
            let id = o
                .name
                .strip_prefix("holds/")
                .and_then(|h| HoldId::from_hex(h).ok())
                .ok_or_else(|| Error::corrupt(&*o.name, "not a hold name"))?;
            out.push(self.load_hold(id)?);
        }
        out.sort_by_key(|h| (h.record.snapshot, h.record.time_unix_ms, h.id));
        Ok(out)
    }

    /// The holds per held snapshot.
    pub fn holds_by_snapshot(&self) -> Result<BTreeMap<SnapshotId, Vec<Hold>>> {
        let mut map: BTreeMap<SnapshotId, Vec<Hold>> = BTreeMap::new();
        for h in self.list_holds()? {
            map.entry(h.record.snapshot).or_default().push(h);
        }
        Ok(map)
    }

    /// Releases every hold on a snapshot by deleting the hold objects. Needs an admin
    /// key. Returns the holds released (none if the snapshot was not held).
    pub fn release_holds(&self, snapshot: SnapshotId) -> Result<Vec<Hold>> {
        self.require_admin("release holds")?;
        let released: Vec<Hold> = self
            .list_holds()?
            .into_iter()
            .filter(|h| h.record.snapshot == snapshot)
            .collect();
        for h in &released {
            self.backend.delete(&h.id.object_name())?;
        }
        Ok(released)
    }
}
