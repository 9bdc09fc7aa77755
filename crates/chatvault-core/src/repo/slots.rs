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
use crate::crypto::{Key32, aead, context};
use crate::envelope;
use crate::error::{Error, Result};
use crate::format::now_unix_ms;
use crate::id::SlotId;
use crate::keys::{
    self, DataKeyPair, GenerationKeys, KdfParams, KeySource, Role, Secrets, SlotHeader, SlotInfo,
};
use crate::limits::ObjectLimit;

/// Adds the secrets of rotated generations that the config grants to this slot: data
/// secret keys (reading roles only), and the `auth_key` and `index_key` of generations that
/// replaced them. Every data secret must match the config's public key of its generation.
pub(super) fn accept_grants(secrets: &mut Secrets, config: &Config) -> Result<()> {
    let me = secrets.grant_public();
    let auth = secrets.auth_key.duplicate();
    let binding = WrapBinding {
        context: context::DATA_KEY_GRANT,
        repo_id: &config.repo_id,
        kind: ObjectKind::Grant,
        auth_key: &auth,
    };
    let mut mine: Vec<&DataKeyGrant> = config.grants.iter().filter(|g| g.recipient == me).collect();
    mine.sort_by_key(|g| g.generation);
    let bad = |why: &str| Error::corrupt("config", format!("key grant: {why}"));
    for g in mine {
        let has_data = !secrets.role.can_read() || secrets.data_secret(g.generation).is_some();
        let has_keys = g.keys.is_none() || secrets.generation_keys(g.generation).is_some();
        if has_data && has_keys {
            continue;
        }
        let wrapped: &[u8; wrap::WRAP_LEN] = g
            .wrapped
            .as_slice()
            .try_into()
            .map_err(|_| bad("wrong length"))?;
        let key =
            wrap::unwrap(wrapped, &secrets.grant, &binding).map_err(|_| bad("does not unwrap"))?;
        let data_secret = match &g.keys {
            // A rotation of the data key alone: the wrap holds its secret key.
            None => Some(*key.expose()),
            Some(sealed) => {
                let granted = open_granted_keys(&key, config, g, sealed)
                    .ok_or_else(|| bad("keys do not open"))?;
                secrets.add_rotated(granted.keys);
                granted.data_secret
            }
        };
        if let Some(sk) = data_secret.filter(|_| secrets.role.can_read()) {
            let secret = StaticSecret::from(sk);
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
    }
    Ok(())
}

/// What a grant of a rotated generation hands its recipient.
struct GrantedKeys {
    data_secret: Option<[u8; 32]>,
    keys: GenerationKeys,
}

/// The associated data of a grant's sealed keys: bound to the repository, the generation
/// and the recipient, so a grant cannot be moved to another slot or generation.
fn grant_keys_aad(config: &Config, generation: u32, recipient: &[u8; 32]) -> Vec<u8> {
    let mut aad = context::GRANT_KEYS.as_bytes().to_vec();
    aad.extend_from_slice(config.repo_id.as_bytes());
    aad.extend_from_slice(&generation.to_le_bytes());
    aad.extend_from_slice(recipient);
    aad
}

/// Seals a rotated generation's keys for one recipient: `flag u8 (1: a data secret key
/// follows) ‖ [data_sk (32)] ‖ auth_key (32) ‖ index_key (32)`.
fn seal_granted_keys(
    key: &Key32,
    config: &Config,
    generation: u32,
    recipient: &[u8; 32],
    data_secret: Option<&[u8; 32]>,
    keys: &GenerationKeys,
) -> Vec<u8> {
    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(97));
    plain.push(u8::from(data_secret.is_some()));
    if let Some(sk) = data_secret {
        plain.extend_from_slice(sk);
    }
    plain.extend_from_slice(keys.auth_key.expose());
    plain.extend_from_slice(keys.index_key.expose());
    aead::seal(key, &grant_keys_aad(config, generation, recipient), &plain)
}

fn open_granted_keys(
    key: &Key32,
    config: &Config,
    g: &DataKeyGrant,
    sealed: &[u8],
) -> Option<GrantedKeys> {
    let plain = zeroize::Zeroizing::new(
        aead::open(
            key,
            &grant_keys_aad(config, g.generation, &g.recipient),
            sealed,
        )
        .ok()?,
    );
    let (flag, rest) = plain.split_first()?;
    let (data_secret, rest) = match (flag, rest.len()) {
        (1, 96) => (Some(<[u8; 32]>::try_from(&rest[..32]).ok()?), &rest[32..]),
        (0, 64) => (None, rest),
        _ => return None,
    };
    Some(GrantedKeys {
        data_secret,
        keys: GenerationKeys {
            generation: g.generation,
            auth_key: Key32::from_bytes(rest[..32].try_into().ok()?),
            index_key: Key32::from_bytes(rest[32..].try_into().ok()?),
        },
    })
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
    /// What its writer key may write for: a host name, or `*` for any host. By default
    /// the label for `backup` and `full` keys (a chat node's key writes for its own host
    /// only), `*` for admin keys.
    pub scope: String,
    /// Argon2id parameters for a passphrase slot. By default 64 MiB, t = 3.
    pub kdf: KdfParams,
    /// Whether other writers deduplicate against what this key's index segments announce
    /// ([`WriterEntry::dedup_source`]). By default true for admin and full keys and false
    /// for backup keys; set it for backup keys of nodes that trust each other (they share
    /// storage space, and a compromised one can then make the others skip storing data).
    pub dedup_source: bool,
}

impl AddSlotOptions {
    /// A slot of `role` labelled `label`, with the default scope (see
    /// [`scope`](Self::scope)) and KDF parameters.
    pub fn new(role: Role, label: &str) -> Self {
        let scope = if role.is_admin() || label.is_empty() {
            "*".to_owned()
        } else {
            label.to_owned()
        };
        Self {
            role,
            label: label.to_owned(),
            scope,
            kdf: KdfParams::default(),
            dedup_source: role.can_read(),
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
        // A chat node's key must not write for every host by accident.
        if opts.role == Role::Backup && opts.label.is_empty() && opts.scope == "*" {
            return Err(Error::invalid(
                "key slot",
                "a backup key needs a label (the host it backs up, its default scope) or a scope",
            ));
        }
        let secrets = self
            .secrets
            .for_new_slot(opts.role)
            .ok_or(Error::PermissionDenied {
                role: self.secrets.role.as_str(),
                operation: "create a slot with a higher role",
            })?;
        let (id, bytes) = keys::seal_slot(&secrets, key, opts.kdf, &opts.label)?;
        self.backend.put(&id.object_name(), &bytes)?;
        let entry = WriterEntry {
            key: secrets.signer.public(),
            role: opts.role,
            label: opts.label.clone(),
            scope: opts.scope.clone(),
            added_unix_ms: now_unix_ms(),
            // Every role receives rotated keys: backup keys need the new auth_key and
            // index_key to go on writing after a revocation.
            grant_key: Some(secrets.grant_public()),
            dedup_source: opts.dedup_source,
        };
        self.update_config(|config, _| {
            config.writers.push(entry);
            Ok(())
        })?;
        Ok(id)
    }

    /// Removes a key slot and revokes its writer key: everything it signed so far stays
    /// trusted (endorsed by id in the config), nothing it signs later is accepted, and a
    /// later data key rotation leaves it out. Use [`revoke_writer`](Self::revoke_writer)
    /// with an earlier sequence if the key may be compromised. Admin only; the last admin
    /// slot and the slot in use cannot be removed.
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
        let key = target.signing_key;
        // Another slot may share the writer key (a passphrase change keeps it): revoke
        // only when this is the last slot holding it.
        let shared = slots.iter().any(|s| s.id != id && s.signing_key == key);
        if !shared && self.config.writers.iter().any(|w| w.key == key) {
            self.revoke_writer(key, u64::MAX)?;
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

    /// Revokes a writer key. The snapshots and index segments it signed with a sequence up
    /// to `trusted_until_seq` (`u64::MAX` for all) that exist now are endorsed: the config
    /// lists their ids, and readers accept those and nothing else it signs, whatever
    /// sequence a later object claims. Use the sequence of its last snapshot you trust
    /// (`snapshots` shows it), or 0 to trust nothing. Then rotates the keys
    /// ([`rotate_keys`](Self::rotate_keys)), so the revoked key can read no new index
    /// segment and seal nothing readers accept. Admin only. Returns how many objects were
    /// endorsed.
    pub fn revoke_writer(&mut self, key: PublicKey, trusted_until_seq: u64) -> Result<usize> {
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
        let endorsed = self.objects_signed_by(&key, trusted_until_seq)?;
        let count = endorsed.len();
        self.update_config(|config, _| {
            config.revocations.retain(|r| r.key != key);
            config.revocations.push(Revocation {
                key,
                trusted_until_seq,
                revoked_unix_ms: now_unix_ms(),
                endorsed: Some(endorsed),
            });
            Ok(())
        })?;
        // What the revoked key holds (auth_key, index_key, the data key generation) is
        // replaced for everything written from now on.
        self.rotate_keys()?;
        Ok(count)
    }

    /// The ids of the snapshots and index segments that `key` signed with a sequence up to
    /// `until`, sorted. Reads only each object's envelope header; the signature is checked
    /// whenever the object is read, so a planted header that names `key` gains nothing.
    fn objects_signed_by(&self, key: &PublicKey, until: u64) -> Result<Vec<[u8; 32]>> {
        let mut ids = Vec::new();
        for prefix in ["snapshots/", "index/"] {
            for o in self.backend.list(prefix)? {
                let Some(id) = o
                    .name
                    .strip_prefix(prefix)
                    .and_then(|h| crate::id::SegmentId::from_hex(h).ok())
                else {
                    continue;
                };
                if o.size < envelope::HEADER_LEN as u64 {
                    continue;
                }
                let head = self
                    .backend
                    .get_range(&o.name, 0, envelope::HEADER_LEN as u64)?;
                if let Some((signer, seq)) = envelope::peek_signer(&head)
                    && signer == *key
                    && seq <= until
                {
                    ids.push(*id.as_bytes());
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Rotates the keys: a new key generation, with a fresh X25519 data key pair, `auth_key`
    /// and `index_key`, seals everything written from now on. Its secrets are wrapped, in
    /// the signed config, to the grant key of every writer the config does not revoke
    /// (reading writers receive the data secret key too). A revoked or removed key receives
    /// nothing: it cannot read data written after the rotation, nor new index segments, and
    /// the packs and snapshots it could still seal with its old keys are of a generation
    /// no current writer uses. Backup keys created before grants reached backup keys hold
    /// no grant key in the config and fail with [`Error::KeyNotGranted`] until replaced.
    /// Packs sealed to older generations stay readable with the older keys (each slot keeps
    /// them) until a repack re-seals them. Admin only. Returns the new generation.
    pub fn rotate_keys(&mut self) -> Result<u32> {
        self.require_admin("rotate the keys")?;
        let mut generated = None;
        self.update_config(|config, secrets| {
            let generation = config
                .data_public_keys
                .iter()
                .map(|(g, _)| *g)
                .max()
                .unwrap_or(0)
                + 1;
            let pair = DataKeyPair::generate(generation);
            let data_sk = pair
                .secret
                .as_ref()
                .map(|s| s.to_bytes())
                .ok_or_else(|| Error::invalid("data key", "generated without a secret"))?;
            let keys = GenerationKeys::generate(generation);
            let binding = WrapBinding {
                context: context::DATA_KEY_GRANT,
                repo_id: &config.repo_id,
                kind: ObjectKind::Grant,
                auth_key: &secrets.auth_key,
            };
            // Recipients come from the signed config alone.
            let recipients: Vec<([u8; 32], bool)> = config
                .writers
                .iter()
                .filter(|w| !config.revocations.iter().any(|r| r.key == w.key))
                .filter_map(|w| Some((w.grant_key?, w.role.can_read())))
                .collect();
            let mut grants = Vec::with_capacity(recipients.len());
            for (recipient, reads) in recipients {
                let key = Key32::random();
                let wrapped = wrap::wrap(&key, &recipient, generation, &binding)
                    .map_err(|_| Error::corrupt("config", "a grant key is a low-order point"))?;
                let sealed = seal_granted_keys(
                    &key,
                    config,
                    generation,
                    &recipient,
                    reads.then_some(&data_sk),
                    &keys,
                );
                grants.push(DataKeyGrant {
                    generation,
                    recipient,
                    wrapped: wrapped.to_vec(),
                    keys: Some(sealed),
                });
            }
            config.grants.extend(grants);
            config.data_public_keys.push((generation, pair.public));
            config.key_generation = generation;
            config.rekeyed_generations.push(generation);
            generated = Some((pair, keys));
            Ok(())
        })?;
        let (pair, keys) =
            generated.ok_or_else(|| Error::invalid("key rotation", "did not run"))?;
        let generation = pair.generation;
        // `update_config` accepted this slot's own grant; an admin whose writer entry
        // predates grant keys gets the new secrets directly.
        if self.secrets.data_secret(generation).is_none() {
            self.secrets.data_keys.push(pair);
        }
        self.secrets.add_rotated(keys);
        Ok(generation)
    }

    /// Writes a new config: `change` applied to the newest config in the repository, signed
    /// with the next sequence number.
    ///
    /// Two admins (or a handle opened before another admin's change) must never both
    /// write sequence n + 1 and so silently drop one change, such as a revocation. So the
    /// change runs under the maintenance lock (the prune lock: one prune, index repair or
    /// config change at a time), on the config re-read from storage after the lock is
    /// held, checked against the pins like any config; and the written config is read
    /// back, so a writer that raced past the lock is detected rather than lost.
    pub(crate) fn update_config(
        &mut self,
        change: impl FnOnce(&mut Config, &Secrets) -> Result<()>,
    ) -> Result<()> {
        let lock = self.take_prune_lock(&super::PruneOptions::default())?;
        let bytes = super::reader::read_bounded(self.backend(), CONFIG, ObjectLimit::Config)?;
        let current = Config::from_object(&bytes, &self.config.repo_id, &self.config.admin_key)?;
        self.lock_pins()
            .check_and_update(&current, &crate::id::content_hash(&bytes))?;
        let mut next = current.clone();
        change(&mut next, &self.secrets)?;
        next.sequence = current.sequence + 1;
        let admin = self.require_admin("sign the config")?;
        let object = next.to_object(admin)?;
        lock.check_held()?;
        self.backend.replace(CONFIG, &object)?;
        if super::reader::read_bounded(self.backend(), CONFIG, ObjectLimit::Config)? != object {
            return Err(Error::Locked {
                reason: "another admin changed the config at the same moment; nothing of \
                         this change was kept: run it again"
                    .into(),
            });
        }
        self.lock_pins()
            .check_and_update(&next, &crate::id::content_hash(&object))?;
        drop(lock);
        self.config = next;
        accept_grants(&mut self.secrets, &self.config)?;
        if self.index.ensure_trust_epoch(&self.config.trust_epoch())? {
            self.sync_index()?;
        }
        Ok(())
    }

    pub(crate) fn lock_pins(&self) -> std::sync::MutexGuard<'_, super::Pins> {
        // The pins are a small map; a panic mid-update leaves it usable.
        self.pins.lock().unwrap_or_else(|p| p.into_inner())
    }
}
