//! Key slot objects (`keys/<id>`): the secrets of one role, sealed under a key-encryption
//! key from Argon2id(passphrase) or from a raw key file.
//!
//! Layout (little-endian): `magic "CVKEYSLT" ‖ version u16 ‖ role u8 ‖ kdf u8 (1 argon2id,
//! 2 key file) ‖ m_kib u32 ‖ t_cost u32 ‖ p_cost u32 ‖ salt (32) ‖ repo_id (32) ‖
//! created_unix_ms i64 ‖ signing public key (32) ‖ label_len u16 ‖ label (UTF-8) ‖
//! nonce (24) ‖ sealed secrets ‖ tag (16)`. Everything before the nonce is the header and
//! is the AEAD's associated data, so role, parameters, repository id and label cannot be
//! changed without the slot failing to open.
//!
//! Invariants: no Argon2 runs for parameters above the ceilings
//! ([`KdfParams::check`]), whatever the caller allows; when several slots could open
//! with a secret, they are tried cheapest first ([`open_cheapest_first`]), so a slot
//! planted at the ceilings costs an opener nothing when a cheaper slot opens.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use super::{KdfParams, KeySource, Role, Secrets, SlotInfo};
use crate::crypto::sign::PublicKey;
use crate::crypto::{Key32, aead, context, derive_key, random_array};
use crate::error::{Error, Result};
use crate::format::{ByteReader, check_magic_version};
use crate::id::{RepoId, SlotId};

const MAGIC: &[u8; 8] = b"CVKEYSLT";
const KDF_ARGON2ID: u8 = 1;
const KDF_KEYFILE: u8 = 2;
/// Longest label accepted.
pub(crate) const MAX_LABEL: usize = 256;

/// The public header of a slot.
#[derive(Debug, Clone)]
pub(crate) struct SlotHeader {
    pub role: Role,
    pub kdf_kind: u8,
    pub kdf: KdfParams,
    pub salt: [u8; 32],
    pub repo_id: RepoId,
    pub created_unix_ms: i64,
    pub signing_key: PublicKey,
    pub label: String,
}

impl SlotHeader {
    fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(128 + self.label.len());
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&crate::format::FormatVersion::CURRENT.as_u16().to_le_bytes());
        h.push(self.role.to_u8());
        h.push(self.kdf_kind);
        for v in [self.kdf.m_kib, self.kdf.t_cost, self.kdf.p_cost] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&self.salt);
        h.extend_from_slice(self.repo_id.as_bytes());
        h.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        h.extend_from_slice(self.signing_key.as_bytes());
        h.extend_from_slice(&(self.label.len() as u16).to_le_bytes());
        h.extend_from_slice(self.label.as_bytes());
        h
    }

    /// Parses the header; returns it and the header's length (the AAD).
    pub fn decode(bytes: &[u8], object: &str) -> Result<(Self, usize)> {
        let mut r = ByteReader::new(bytes, object);
        check_magic_version(&mut r, MAGIC)?;
        let role = Role::from_u8(r.u8()?).ok_or_else(|| r.corrupt("unknown role"))?;
        let kdf_kind = r.u8()?;
        if kdf_kind != KDF_ARGON2ID && kdf_kind != KDF_KEYFILE {
            return Err(r.corrupt("unknown key derivation"));
        }
        let kdf = KdfParams::new(r.u32()?, r.u32()?, r.u32()?);
        let salt = r.array()?;
        let repo_id = RepoId::from_bytes(r.array()?);
        let created_unix_ms = r.i64()?;
        let signing_key = PublicKey::from_bytes(r.array()?);
        let label_len = r.u16()? as usize;
        if label_len > MAX_LABEL {
            return Err(r.corrupt("label too long"));
        }
        let label = std::str::from_utf8(r.take(label_len)?)
            .map_err(|_| r.corrupt("label is not UTF-8"))?
            .to_owned();
        let header = Self {
            role,
            kdf_kind,
            kdf,
            salt,
            repo_id,
            created_unix_ms,
            signing_key,
            label,
        };
        Ok((header, r.position()))
    }

    pub fn info(&self, id: SlotId) -> SlotInfo {
        SlotInfo {
            id,
            role: self.role,
            label: self.label.clone(),
            created_unix_ms: self.created_unix_ms,
            kdf: match self.kdf_kind {
                KDF_ARGON2ID => format!(
                    "argon2id m={}KiB t={} p={}",
                    self.kdf.m_kib, self.kdf.t_cost, self.kdf.p_cost
                ),
                _ => "key-file".into(),
            },
            signing_key: self.signing_key,
        }
    }
}

/// The shortest sealed secrets (a role without an admin key, one data key generation):
/// version, role, repo id, four keys, signing seed, admin public key, admin flag, count,
/// generation, public key, secret flag, grant public key (see `Secrets::encode`).
const MIN_SECRETS: usize = 2 + 1 + 32 + 4 * 32 + 32 + 32 + 1 + 4 + (4 + 32 + 1) + 32;

/// Checks what can be checked of a slot without its passphrase: the header decodes,
/// names this repository, and is followed by a nonce, sealed secrets and a tag of a
/// possible length. A damaged sealed part is only found by opening the slot.
pub(crate) fn check_shape(bytes: &[u8], object: &str, repo_id: &RepoId) -> Result<()> {
    let (header, header_len) = SlotHeader::decode(bytes, object)?;
    if header.repo_id != *repo_id {
        return Err(Error::corrupt(object, "slot belongs to another repository"));
    }
    if bytes.len() - header_len < aead::NONCE_LEN + MIN_SECRETS + aead::TAG_LEN {
        return Err(Error::corrupt(
            object,
            "sealed secrets are too short (truncated)",
        ));
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Argon2 derivations run on this thread (tests count them).
    static KDF_RUNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn kek(header: &SlotHeader, source: &KeySource, weak_allowed: bool) -> Result<Key32> {
    match (header.kdf_kind, source) {
        (KDF_ARGON2ID, KeySource::Passphrase(p)) => {
            header.kdf.check(weak_allowed)?;
            #[cfg(test)]
            KDF_RUNS.with(|n| n.set(n.get() + 1));
            let params = Params::new(
                header.kdf.m_kib,
                header.kdf.t_cost,
                header.kdf.p_cost,
                Some(32),
            )
            .map_err(|e| Error::invalid("KDF parameters", e.to_string()))?;
            let mut out = Zeroizing::new([0u8; 32]);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(p.as_bytes(), &header.salt, &mut out[..])
                .map_err(|e| Error::invalid("KDF parameters", e.to_string()))?;
            Ok(Key32::from_bytes(*out))
        }
        (KDF_KEYFILE, KeySource::KeyFile(k)) => {
            Ok(derive_key(context::KEYFILE_KEK, &[&k[..], &header.salt]))
        }
        _ => Err(Error::WrongPassphrase),
    }
}

/// Seals `secrets` into a new slot object. Returns the slot id and the object's bytes.
pub(crate) fn seal_slot(
    secrets: &Secrets,
    source: &KeySource,
    kdf: KdfParams,
    label: &str,
) -> Result<(SlotId, Vec<u8>)> {
    if label.len() > MAX_LABEL {
        return Err(Error::invalid(
            "label",
            format!("longer than {MAX_LABEL} bytes"),
        ));
    }
    let kdf_kind = match source {
        KeySource::Passphrase(p) => {
            kdf.check(kdf.weak_allowed())?;
            if p.is_empty() {
                return Err(Error::invalid("passphrase", "empty"));
            }
            KDF_ARGON2ID
        }
        KeySource::KeyFile(_) => KDF_KEYFILE,
    };
    let header = SlotHeader {
        role: secrets.role,
        kdf_kind,
        kdf: if kdf_kind == KDF_KEYFILE {
            KdfParams::new(0, 0, 0)
        } else {
            kdf
        },
        salt: random_array(),
        repo_id: secrets.repo_id,
        created_unix_ms: crate::format::now_unix_ms(),
        signing_key: secrets.signer.public(),
        label: label.to_owned(),
    };
    let kek = kek(&header, source, kdf.weak_allowed())?;
    let mut bytes = header.encode();
    let aad = bytes.clone();
    aead::seal_into(&kek, &aad, &secrets.encode(), &mut bytes);
    Ok((SlotId::from_bytes(random_array()), bytes))
}

impl SlotHeader {
    /// What opening this slot with `source` costs before its seal can be checked: the
    /// Argon2 work for a passphrase slot and a passphrase, nothing otherwise (a key-file
    /// derivation is one hash; a source of the other kind is refused without deriving).
    fn open_cost(&self, source: &KeySource) -> u64 {
        match (self.kdf_kind, source) {
            (KDF_ARGON2ID, KeySource::Passphrase(_)) => self.kdf.cost(),
            _ => 0,
        }
    }
}

/// Opens the first of `slots` (ids and object bytes) that opens with `source`, trying
/// them cheapest first (by the Argon2 work their headers ask for, then by id), so a slot
/// planted with costly parameters runs only when every cheaper slot failed.
///
/// A slot that does not open with `source` or is damaged is skipped, so one bad slot
/// does not lock everyone out; the error is then [`Error::WrongPassphrase`], or
/// `InvalidArgument` when a slot was refused for its KDF parameters (below the floor
/// without `weak_allowed`, or above the ceilings).
pub(crate) fn open_cheapest_first(
    slots: Vec<(SlotId, Vec<u8>)>,
    source: &KeySource,
    weak_allowed: bool,
) -> Result<(SlotId, SlotHeader, Secrets)> {
    let mut candidates: Vec<(u64, SlotId, Vec<u8>)> = slots
        .into_iter()
        .filter_map(|(id, bytes)| {
            let (header, _) = SlotHeader::decode(&bytes, &id.object_name()).ok()?;
            Some((header.open_cost(source), id, bytes))
        })
        .collect();
    candidates.sort_by_key(|c| (c.0, c.1));
    let mut refused_kdf = None;
    for (_, id, bytes) in candidates {
        match open_slot(&bytes, &id.object_name(), source, weak_allowed) {
            Ok((header, secrets)) => return Ok((id, header, secrets)),
            Err(Error::WrongPassphrase | Error::Corrupt { .. }) => {}
            Err(Error::InvalidArgument { reason, .. }) => refused_kdf = Some(reason),
            Err(e) => return Err(e),
        }
    }
    match refused_kdf {
        Some(reason) => Err(Error::invalid(
            "key slot",
            format!(
                "no slot opened, and a slot was refused for its KDF parameters \
                 (weak slots need the test-only setting): {reason}"
            ),
        )),
        None => Err(Error::WrongPassphrase),
    }
}

/// Opens a slot object. A key source of the other kind, or one that fails
/// authentication, is [`Error::WrongPassphrase`]; a malformed slot is `Corrupt`.
pub(crate) fn open_slot(
    bytes: &[u8],
    object: &str,
    source: &KeySource,
    weak_allowed: bool,
) -> Result<(SlotHeader, Secrets)> {
    let (header, header_len) = SlotHeader::decode(bytes, object)?;
    let kek = kek(&header, source, weak_allowed)?;
    let plain = Zeroizing::new(
        aead::open(&kek, &bytes[..header_len], &bytes[header_len..])
            .map_err(|_| Error::WrongPassphrase)?,
    );
    let secrets = Secrets::decode(&plain, object)?;
    if secrets.repo_id != header.repo_id
        || secrets.role != header.role
        || secrets.signer.public() != header.signing_key
    {
        return Err(Error::corrupt(
            object,
            "slot header disagrees with its sealed secrets",
        ));
    }
    Ok((header, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Secrets {
        Secrets::generate(RepoId::from_bytes([5; 32]))
    }

    #[test]
    fn every_role_passes_the_shape_check_and_a_slot_cut_in_half_fails_it() {
        let s = root();
        for role in [Role::Backup, Role::Full, Role::Admin] {
            let secrets = s.for_new_slot(role).unwrap();
            let key = KeySource::passphrase("pw");
            let (_, bytes) =
                seal_slot(&secrets, &key, KdfParams::insecure_for_tests(), "x").unwrap();
            check_shape(&bytes, "keys/x", &s.repo_id).unwrap();
            assert!(check_shape(&bytes[..bytes.len() / 2], "keys/x", &s.repo_id).is_err());
            let other = RepoId::from_bytes([6; 32]);
            assert!(check_shape(&bytes, "keys/x", &other).is_err());
        }
    }

    #[test]
    fn passphrase_slot_opens_only_with_its_passphrase() {
        let s = root();
        let pass = KeySource::passphrase("pw");
        let (_, bytes) = seal_slot(&s, &pass, KdfParams::insecure_for_tests(), "ops").unwrap();
        let (h, back) = open_slot(&bytes, "keys/x", &pass, true).unwrap();
        assert_eq!(h.label, "ops");
        assert_eq!(back.id_key.expose(), s.id_key.expose());
        assert!(matches!(
            open_slot(&bytes, "keys/x", &KeySource::passphrase("wrong"), true),
            Err(Error::WrongPassphrase)
        ));
        assert!(matches!(
            open_slot(
                &bytes,
                "keys/x",
                &KeySource::KeyFile(Zeroizing::new([1; 32])),
                true
            ),
            Err(Error::WrongPassphrase)
        ));
        // Weak parameters are refused when not explicitly allowed.
        assert!(matches!(
            open_slot(&bytes, "keys/x", &pass, false),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn key_file_slot() {
        let s = root().for_new_slot(Role::Backup).unwrap();
        let kf = KeySource::KeyFile(Zeroizing::new([3; 32]));
        let (_, bytes) = seal_slot(&s, &kf, KdfParams::default(), "node-1").unwrap();
        let (h, back) = open_slot(&bytes, "k", &kf, false).unwrap();
        assert_eq!(h.role, Role::Backup);
        assert!(back.data_secret(0).is_none());
        assert!(matches!(
            open_slot(
                &bytes,
                "k",
                &KeySource::KeyFile(Zeroizing::new([4; 32])),
                false
            ),
            Err(Error::WrongPassphrase)
        ));
    }

    #[test]
    fn header_tampering_and_truncation_fail() {
        let s = root();
        let pass = KeySource::passphrase("pw");
        let (_, bytes) = seal_slot(&s, &pass, KdfParams::insecure_for_tests(), "a").unwrap();
        // Flip the role byte: the AAD no longer matches.
        let mut b = bytes.clone();
        b[10] = Role::Backup.to_u8();
        assert!(open_slot(&b, "k", &pass, true).is_err());
        for n in 0..bytes.len() {
            assert!(open_slot(&bytes[..n], "k", &pass, true).is_err(), "len {n}");
        }
    }

    fn kdf_runs() -> u32 {
        KDF_RUNS.with(|n| n.get())
    }

    /// Regression: slots were tried in listing order, so a passphrase slot planted with
    /// costly parameters (and an id that lists first) ran its Argon2 on every open before
    /// the genuine, cheaper slot.
    #[test]
    fn a_planted_costly_slot_is_not_run_before_a_cheap_one() {
        let s = root();
        let pass = KeySource::passphrase("pw");
        let weak = KdfParams::insecure_for_tests();
        let (_, genuine) = seal_slot(&s, &pass, weak, "ops").unwrap();
        // Planted: its own secrets and passphrase, 64 times the genuine slot's work.
        let costly = KdfParams::new(64 * 64, 1, 1);
        let (_, planted) =
            seal_slot(&root(), &KeySource::passphrase("other"), weak, "ops").unwrap();
        let mut planted = planted;
        planted[12..16].copy_from_slice(&costly.m_kib.to_le_bytes());
        let first = SlotId::from_bytes([0; 32]);
        let last = SlotId::from_bytes([0xff; 32]);
        let before = kdf_runs();
        let (id, header, secrets) = open_cheapest_first(
            vec![(first, planted.clone()), (last, genuine.clone())],
            &pass,
            true,
        )
        .unwrap();
        assert_eq!((id, header.label.as_str()), (last, "ops"));
        assert_eq!(secrets.id_key.expose(), s.id_key.expose());
        assert_eq!(kdf_runs() - before, 1, "only the cheap slot's Argon2 ran");
        // With a wrong passphrase both run, the cheap one first; nothing opens.
        assert!(matches!(
            open_cheapest_first(
                vec![(first, planted), (last, genuine)],
                &KeySource::passphrase("wrong"),
                true
            ),
            Err(Error::WrongPassphrase)
        ));
    }

    /// Regression: a slot at the old ceilings (4 GiB, 64 passes) was derived on every
    /// open. Above the new ceilings a slot is refused without running Argon2, and the
    /// other slots still open.
    #[test]
    fn a_slot_above_the_ceilings_runs_no_argon2_and_locks_nobody_out() {
        let s = root();
        let pass = KeySource::passphrase("pw");
        let (_, genuine) = seal_slot(&s, &pass, KdfParams::insecure_for_tests(), "a").unwrap();
        let mut planted = genuine.clone();
        planted[12..16].copy_from_slice(&(4u32 << 20).to_le_bytes());
        planted[16..20].copy_from_slice(&64u32.to_le_bytes());
        let before = kdf_runs();
        let (id, _, _) = open_cheapest_first(
            vec![
                (SlotId::from_bytes([1; 32]), planted.clone()),
                (SlotId::from_bytes([2; 32]), genuine),
            ],
            &pass,
            true,
        )
        .unwrap();
        assert_eq!(id, SlotId::from_bytes([2; 32]));
        assert_eq!(kdf_runs() - before, 1);
        // Alone, it is refused for its parameters, without an Argon2 run.
        let before = kdf_runs();
        let Err(err) =
            open_cheapest_first(vec![(SlotId::from_bytes([1; 32]), planted)], &pass, true)
        else {
            panic!("a slot above the ceilings opened");
        };
        assert!(err.to_string().contains("above the limits"), "{err}");
        assert_eq!(kdf_runs(), before);
    }

    #[test]
    fn key_file_openers_never_run_argon2_and_damaged_slots_are_skipped() {
        let s = root();
        let kf = KeySource::KeyFile(Zeroizing::new([3; 32]));
        let (_, by_file) = seal_slot(&s, &kf, KdfParams::default(), "node").unwrap();
        let (_, by_pass) = seal_slot(
            &s,
            &KeySource::passphrase("pw"),
            KdfParams::insecure_for_tests(),
            "ops",
        )
        .unwrap();
        let before = kdf_runs();
        let (id, header, _) = open_cheapest_first(
            vec![
                (SlotId::from_bytes([1; 32]), by_pass),
                (SlotId::from_bytes([2; 32]), b"CVKEYSLT garbage".to_vec()),
                (SlotId::from_bytes([3; 32]), by_file),
            ],
            &kf,
            false,
        )
        .unwrap();
        assert_eq!(
            (id, header.label.as_str()),
            (SlotId::from_bytes([3; 32]), "node")
        );
        assert_eq!(kdf_runs(), before);
    }

    #[test]
    fn weak_kdf_refused_at_creation_unless_allowed() {
        let s = root();
        let r = seal_slot(
            &s,
            &KeySource::passphrase("pw"),
            KdfParams::new(1024, 1, 1),
            "a",
        );
        assert!(matches!(r, Err(Error::InvalidArgument { .. })));
    }
}
