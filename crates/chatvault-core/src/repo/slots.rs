//! Key slot management: unlocking, listing, adding, removing, changing a passphrase,
//! and revoking writers (which re-signs the config).
//!
//! Invariants: a slot is added to storage before the config that trusts its writer key, so
//! a crash in between leaves an unused slot rather than a trusted key without a slot; the
//! last admin slot cannot be removed; revocation keeps a writer's objects up to the
//! sequence the admin still trusts.

use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};

use super::reader::read_bounded;
use super::{CONFIG, OpenOptions, Repository};
use crate::backend::Backend;
use crate::config::{Config, DataKeyGrant, Revocation, WriterEntry};
use crate::crypto::sign::PublicKey;
use crate::crypto::wrap::{self, ObjectKind, WrapBinding};
use crate::crypto::{Key32, context};
use crate::error::{Error, Result};
use crate::format::now_unix_ms;
use crate::id::SlotId;
use crate::keys::{self, DataKeyPair, KdfParams, KeySource, Role, Secrets, SlotHeader, SlotInfo};
use crate::limits::ObjectLimit;

/// Adds the data keys of rotated generations that the config grants to this slot. Every
/// unwrapped secret must match the config's public key of its generation.
pub(super) fn accept_grants(secrets: &mut Secrets, config: &Config) -> Result<()> {
    if !secrets.role.can_read() {
        return Ok(());
    }
    let me = secrets.grant_public();
    let auth = secrets.auth_key.duplicate();
    let binding = WrapBinding {
        context: context::DATA_KEY_GRANT,
        repo_id: &config.repo_id,
        kind: ObjectKind::Grant,
        auth_key: &auth,
    };
    for g in config.grants.iter().filter(|g| g.recipient == me) {
        if secrets.data_secret(g.generation).is_some() {
            continue;
        }
        let bad = |why: &str| Error::corrupt("config", format!("data key grant: {why}"));
        let wrapped: &[u8; wrap::WRAP_LEN] = g
            .wrapped
            .as_slice()
            .try_into()
            .map_err(|_| bad("wrong length"))?;
        let key =
            wrap::unwrap(wrapped, &secrets.grant, &binding).map_err(|_| bad("does not unwrap"))?;
        let secret = StaticSecret::from(*key.expose());
        let public = XPublicKey::from(&secret).to_bytes();
        if !config.data_public_keys.contains(&(g.generation, public)) {
            return Err(bad("does not match the generation's public key"));
        }
        secrets.data_keys.retain(|d| d.generation != g.generation);
        secrets.data_keys.push(DataKeyPair {
            generation: g.generation,
            public,
            secret: Some(secret),
        });
    }
    Ok(())
}

/// Tries every slot (or the one asked for) with `key`, cheapest first
/// (`keys::open_cheapest_first`). A slot object over the size limit is skipped unread,
/// like a damaged one.
pub(super) fn unlock(
    backend: &dyn Backend,
    key: &KeySource,
    opts: &OpenOptions,
) -> Result<(SlotId, Secrets)> {
    let ids: Vec<SlotId> = match opts.slot {
        Some(s) => vec![s],
        None => slot_ids(backend)?,
    };
    if ids.is_empty() {
        return Err(Error::corrupt("keys/", "the repository has no key slots"));
    }
    let mut slots = Vec::with_capacity(ids.len());
    for id in ids {
        match read_bounded(backend, &id.object_name(), ObjectLimit::KeySlot) {
            Ok(bytes) => slots.push((id, bytes)),
            Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let (id, _, secrets) = keys::open_cheapest_first(slots, key, opts.allow_weak_kdf)?;
    Ok((id, secrets))
}

fn slot_ids(backend: &dyn Backend) -> Result<Vec<SlotId>> {
    Ok(backend
        .list("keys/")?
        .into_iter()
        .filter_map(|o| SlotId::from_hex(o.name.strip_prefix("keys/")?).ok())
        .collect())
}

/// Options for [`Repository::add_slot`].
#[derive(Debug, Clone)]
pub struct AddSlotOptions {
    /// The new slot's role.
    pub role: Role,
    /// Its label (host, person).
    pub label: String,
    /// What its writer key may write for: `*` (by default) or a host name.
    pub scope: String,
    /// Argon2id parameters for a passphrase slot. By default 64 MiB, t = 3.
    pub kdf: KdfParams,
}

impl AddSlotOptions {
    /// A slot of `role` labelled `label`, scope `*`, default KDF parameters.
    pub fn new(role: Role, label: &str) -> Self {
        Self {
            role,
            label: label.to_owned(),
            scope: "*".into(),
            kdf: KdfParams::default(),
        }
    }
}

impl Repository {
    /// Lists key slots (public headers only; no key needed beyond opening the repository).
    pub fn list_slots(&self) -> Result<Vec<SlotInfo>> {
        let mut out = Vec::new();
        for id in slot_ids(self.backend())? {
            let name = id.object_name();
            let bytes = read_bounded(self.backend(), &name, ObjectLimit::KeySlot)?;
            let (header, _) = SlotHeader::decode(&bytes, &name)?;
            out.push(header.info(id));
        }
        out.sort_by_key(|s| s.created_unix_ms);
        Ok(out)
    }

    /// Adds a key slot and trusts its writer key in the config. Admin only.
    pub fn add_slot(&mut self, key: &KeySource, opts: &AddSlotOptions) -> Result<SlotId> {
        self.require_admin("add key slots")?;
        let secrets = self
            .secrets
            .for_new_slot(opts.role)
            .ok_or(Error::PermissionDenied {
                role: self.secrets.role.as_str(),
                operation: "create a slot with a higher role",
            })?;
        let (id, bytes) = keys::seal_slot(&secrets, key, opts.kdf, &opts.label)?;
        self.backend.put(&id.object_name(), &bytes)?;
        let mut config = self.config.clone();
        config.writers.push(WriterEntry {
            key: secrets.signer.public(),
            role: opts.role,
            label: opts.label.clone(),
            scope: opts.scope.clone(),
            added_unix_ms: now_unix_ms(),
            grant_key: opts.role.can_read().then(|| secrets.grant_public()),
        });
        self.write_config(config)?;
        Ok(id)
    }

    /// Removes a key slot. Its writer key stays trusted for what it already wrote; revoke
    /// it with [`revoke_writer`](Self::revoke_writer) if the key may be compromised.
    /// Admin only; the last admin slot cannot be removed.
    pub fn remove_slot(&mut self, id: SlotId) -> Result<()> {
        self.require_admin("remove key slots")?;
        let slots = self.list_slots()?;
        let target = slots
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::NotFound {
                object: id.object_name().into(),
            })?;
        let admins = slots.iter().filter(|s| s.role == Role::Admin).count();
        if target.role == Role::Admin && admins <= 1 {
            return Err(Error::invalid(
                "key slot",
                "refusing to remove the last admin slot",
            ));
        }
        self.backend.delete(&id.object_name())
    }

    /// Re-seals this slot's secrets under a new passphrase or key file, then deletes the
    /// old slot. The writer key is unchanged. Returns the new slot's id.
    pub fn change_passphrase(&mut self, key: &KeySource, kdf: KdfParams) -> Result<SlotId> {
        let old = self.list_slots()?.into_iter().find(|s| s.id == self.slot);
        let label = old.map(|s| s.label).unwrap_or_default();
        let (id, bytes) = keys::seal_slot(&self.secrets, key, kdf, &label)?;
        self.backend.put(&id.object_name(), &bytes)?;
        self.backend.delete(&self.slot.object_name())?;
        self.slot = id;
        Ok(id)
    }

    /// Revokes a writer key: its objects with a sequence above `trusted_until_seq` are
    /// refused from now on (use the sequence of its last snapshot you trust, or 0).
    /// Admin only.
    pub fn revoke_writer(&mut self, key: PublicKey, trusted_until_seq: u64) -> Result<()> {
        self.require_admin("revoke writers")?;
        if !self.config.writers.iter().any(|w| w.key == key) {
            return Err(Error::NotFound {
                object: format!("writer {key}").into(),
            });
        }
        if key == self.secrets.signer.public() {
            return Err(Error::invalid(
                "writer",
                "refusing to revoke the key in use",
            ));
        }
        let mut config = self.config.clone();
        config.revocations.retain(|r| r.key != key);
        config.revocations.push(Revocation {
            key,
            trusted_until_seq,
            revoked_unix_ms: now_unix_ms(),
        });
        self.write_config(config)
    }

    /// Rotates the data key: a new X25519 generation seals everything written from now on.
    /// Its secret key is wrapped, in the signed config, to the grant key of every reading
    /// writer that still has a key slot and is not revoked; a reading slot removed or
    /// revoked before the rotation cannot read data written after it. Packs sealed to
    /// older generations stay readable with the older keys (each slot keeps them) until a
    /// repack re-seals them. Admin only. Returns the new generation.
    pub fn rotate_data_key(&mut self) -> Result<u32> {
        self.require_admin("rotate the data key")?;
        let generation = self
            .config
            .data_public_keys
            .iter()
            .map(|(g, _)| *g)
            .max()
            .unwrap_or(0)
            + 1;
        let pair = DataKeyPair::generate(generation);
        let secret = pair
            .secret
            .as_ref()
            .map(|s| Key32::from_bytes(s.to_bytes()))
            .ok_or_else(|| Error::invalid("data key", "generated without a secret"))?;
        let live: Vec<PublicKey> = self.list_slots()?.iter().map(|s| s.signing_key).collect();
        let binding = WrapBinding {
            context: context::DATA_KEY_GRANT,
            repo_id: &self.config.repo_id,
            kind: ObjectKind::Grant,
            auth_key: &self.secrets.auth_key,
        };
        let mut config = self.config.clone();
        for w in &self.config.writers {
            let revoked = self.config.revocations.iter().any(|r| r.key == w.key);
            let Some(recipient) = w.grant_key.filter(|_| live.contains(&w.key) && !revoked) else {
                continue;
            };
            let wrapped = wrap::wrap(&secret, &recipient, generation, &binding)
                .map_err(|_| Error::corrupt("config", "a grant key is a low-order point"))?;
            config.grants.push(DataKeyGrant {
                generation,
                recipient,
                wrapped: wrapped.to_vec(),
            });
        }
        config.data_public_keys.push((generation, pair.public));
        config.key_generation = generation;
        self.write_config(config)?;
        self.secrets.data_keys.push(pair);
        Ok(generation)
    }

    /// Signs and stores a new config with the next sequence number.
    fn write_config(&mut self, mut config: Config) -> Result<()> {
        let admin = self.require_admin("sign the config")?;
        config.sequence = self.config.sequence + 1;
        let bytes = config.to_object(admin)?;
        self.backend.replace(CONFIG, &bytes)?;
        self.lock_pins().check_and_update(&config)?;
        self.config = config;
        Ok(())
    }

    pub(crate) fn lock_pins(&self) -> std::sync::MutexGuard<'_, super::Pins> {
        // The pins are a small map; a panic mid-update leaves it usable.
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }
}
