//! Snapshot records: sealed to the data public key, signed by the writer, stored as
//! `snapshots/<BLAKE3 of the object>`.
//!
//! Body of the signed envelope (magic `CVSNAPSH`, sequence = writer sequence):
//! `key wrap (108) ‖ nonce (24) ‖ seal(content key, aad = envelope header ‖ key wrap,
//! record CBOR) ‖ tag (16)`.
//! Invariants: a backup-only writer can create records but not read any; a record is
//! accepted only if its object hash, signature, writer trust (including scope and
//! revocation) and seal check out, its sequence equals the envelope's, and its time is not
//! beyond the reader's clock plus [`MAX_CLOCK_SKEW_MS`].

use std::collections::BTreeMap;

use super::Repository;
use super::reader::read_bounded;
use crate::crypto::wrap::{self, ObjectKind, WRAP_LEN, WrapBinding};
use crate::crypto::{Key32, aead, context};
use crate::envelope::{self, magic};
use crate::error::{Error, Result};
use crate::hold::Hold;
use crate::id::{SnapshotId, content_hash};
use crate::limits::ObjectLimit;
use crate::snapshot::{Snapshot, SnapshotRecord};

/// How far a snapshot's time may lie ahead of the reader's clock: a writer's clock may run
/// ahead, but a snapshot dated further in the future is refused. Its time decides which
/// snapshot is the latest and which periods retention counts, so a writer that could date
/// a snapshot years ahead could make `latest` restore its data and make `forget` drop the
/// others of its group.
pub(crate) const MAX_CLOCK_SKEW_MS: i64 = 60 * 60 * 1000;

impl Repository {
    fn snapshot_binding(&self, generation: u32) -> Result<WrapBinding<'_>> {
        Ok(WrapBinding {
            context: context::SNAPSHOT_KEY_WRAP,
            repo_id: &self.config.repo_id,
            kind: ObjectKind::Snapshot,
            auth_key: self.generation_keys(generation)?.0,
        })
    }

    /// Stores a snapshot record. The writer sequence and the link to this writer's previous
    /// snapshot are filled in here. Call it only after the [`BlobWriter`](crate::BlobWriter)
    /// that wrote its data has finished, so every blob it names is in a stored pack and
    /// index segment.
    pub fn save_snapshot(&self, record: SnapshotRecord) -> Result<SnapshotId> {
        let signer = &self.secrets.signer;
        // Refused here rather than stored and refused by every reader.
        if let Some(w) = self
            .config
            .writers
            .iter()
            .find(|w| w.key == signer.public())
            && w.scope != "*"
            && w.scope != record.host
        {
            return Err(Error::PermissionDenied {
                role: self.secrets.role.as_str(),
                operation: "save a snapshot for a host outside this key's scope",
            });
        }
        if record.time_unix_ms > crate::format::now_unix_ms() + MAX_CLOCK_SKEW_MS {
            return Err(Error::invalid(
                "snapshot time",
                "more than an hour ahead of this clock",
            ));
        }
        self.store_snapshot(record)
    }

    /// Seals, signs and stores a record, with no check of its host or time: what a writer
    /// with a wrong clock or a forger can do.
    pub(super) fn store_snapshot(&self, mut record: SnapshotRecord) -> Result<SnapshotId> {
        let signer = &self.secrets.signer;
        let prev_key = format!("last_snapshot.{}", signer.public().to_hex());
        let seq = {
            let mut pins = self.lock_pins();
            record.prev_writer_snapshot = pins
                .get(&prev_key)
                .and_then(|h| SnapshotId::from_hex(h).ok());
            pins.next_writer_seq(&signer.public())?
        };
        record.writer_seq = seq;
        let plain = record.encode();
        let content_key = Key32::random();
        let data_pk = self.config.current_data_key()?;
        let wrapped = wrap::wrap(
            &content_key,
            &data_pk,
            self.config.key_generation,
            &self.snapshot_binding(self.config.key_generation)?,
        )
        .map_err(|_| Error::corrupt("config", "the data public key is a low-order point"))?;
        let body_len = WRAP_LEN + plain.len() + aead::OVERHEAD;
        let mut aad = envelope::header(magic::SNAPSHOT, &signer.public(), seq, body_len);
        aad.extend_from_slice(&wrapped);
        let mut body = Vec::with_capacity(body_len);
        body.extend_from_slice(&wrapped);
        aead::seal_into(&content_key, &aad, &plain, &mut body);
        let bytes = envelope::seal(magic::SNAPSHOT, signer, &self.config.repo_id, seq, &body);
        let id = SnapshotId::from_bytes(content_hash(&bytes));
        self.put_in_session(&id.object_name(), &bytes)?;
        self.lock_pins().set(&prev_key, id.to_hex())?;
        self.journal_snapshot(id, &record)?;
        Ok(id)
    }

    /// Ids of every snapshot object (no key needed to list).
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        Ok(self
            .backend
            .list("snapshots/")?
            .into_iter()
            .filter_map(|o| SnapshotId::from_hex(o.name.strip_prefix("snapshots/")?).ok())
            .collect())
    }

    /// Loads and verifies one snapshot. Needs a full or admin key.
    pub fn load_snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        self.require_read("read snapshots")?;
        let name = id.object_name();
        let bytes = read_bounded(self.backend(), &name, ObjectLimit::Snapshot)?;
        if content_hash(&bytes) != *id.as_bytes() {
            return Err(Error::corrupt(&*name, "content does not match its name"));
        }
        let env = envelope::open(&bytes, magic::SNAPSHOT, &name, &self.config.repo_id)?;
        self.config
            .check_writer(&name, id.as_bytes(), &env.signer, env.sequence, None)?;
        if env.body.len() < WRAP_LEN {
            return Err(Error::corrupt(&*name, "body too short"));
        }
        let (wrapped, sealed) = env.body.split_at(WRAP_LEN);
        let wrapped: &[u8; WRAP_LEN] = wrapped
            .try_into()
            .map_err(|_| Error::corrupt(&*name, "key wrap"))?;
        let generation = wrap::generation_of(wrapped);
        let sk = self.secrets.data_secret(generation).ok_or_else(|| {
            Error::corrupt(&*name, format!("unknown data key generation {generation}"))
        })?;
        let key = wrap::unwrap(wrapped, sk, &self.snapshot_binding(generation)?).map_err(|_| {
            Error::corrupt(&*name, "snapshot key does not unwrap (forged or damaged)")
        })?;
        let mut aad = env.header.to_vec();
        aad.extend_from_slice(wrapped);
        let plain = aead::open(&key, &aad, sealed)
            .map_err(|_| Error::corrupt(&*name, "snapshot failed authentication"))?;
        let record = SnapshotRecord::decode(&plain, &name)?;
        if record.writer_seq != env.sequence {
            return Err(Error::corrupt(
                &*name,
                "record sequence differs from the signed one",
            ));
        }
        self.config.check_writer(
            &name,
            id.as_bytes(),
            &env.signer,
            env.sequence,
            Some(&record.host),
        )?;
        if record.time_unix_ms > crate::format::now_unix_ms() + MAX_CLOCK_SKEW_MS {
            return Err(Error::untrusted(
                &*name,
                format!(
                    "dated {} ms ahead of this clock (more than the {} ms allowed): \
                     its writer's clock is wrong or it was forged to win `latest`",
                    record.time_unix_ms - crate::format::now_unix_ms(),
                    MAX_CLOCK_SKEW_MS
                ),
            ));
        }
        Ok(Snapshot {
            id,
            writer: env.signer,
            record,
        })
    }

    /// Loads every snapshot, oldest first. Fails on the first one that does not verify;
    /// use [`snapshot_ids`](Self::snapshot_ids) and [`load_snapshot`](Self::load_snapshot)
    /// to go on past damage.
    pub fn list_snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut out = self
            .snapshot_ids()?
            .into_iter()
            .map(|id| self.load_snapshot(id))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|s| (s.record.time_unix_ms, s.id));
        Ok(out)
    }

    /// Deletes a snapshot record (its data stays until a prune). Needs a full or admin key.
    /// A held snapshot is refused ([`Error::Held`]) until its holds are released; so is
    /// any deletion while a hold does not verify.
    pub fn delete_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.require_read("delete snapshots")?;
        let held = self.holds_by_snapshot()?;
        self.delete_unless_held(id, &held)
    }

    /// Deletes several snapshot records, listing the holds once: if any of them is held,
    /// nothing is deleted ([`Error::Held`] names the first). Needs a full or admin key.
    pub fn delete_snapshots(&self, ids: &[SnapshotId]) -> Result<()> {
        self.require_read("delete snapshots")?;
        let held = self.holds_by_snapshot()?;
        if let Some(id) = ids.iter().find(|id| held.contains_key(id)) {
            return Err(Error::Held { snapshot: *id });
        }
        for id in ids {
            self.delete_unless_held(*id, &held)?;
        }
        Ok(())
    }

    /// [`delete_snapshot`](Self::delete_snapshot) against holds the caller has just listed
    /// (`forget` lists them once for the whole run, not once per snapshot).
    pub(crate) fn delete_unless_held(
        &self,
        id: SnapshotId,
        held: &BTreeMap<SnapshotId, Vec<Hold>>,
    ) -> Result<()> {
        self.require_read("delete snapshots")?;
        let name = id.object_name();
        self.backend.stat(&name)?;
        if held.contains_key(&id) {
            return Err(Error::Held { snapshot: id });
        }
        self.backend.delete(&name)
    }
}
