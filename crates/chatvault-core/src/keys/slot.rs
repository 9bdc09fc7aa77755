//! Key slot objects (`keys/<id>`): the secrets of one role, sealed under a key-encryption
//! key from Argon2id(passphrase), a raw key file, or a seed wrapped by a key store outside
//! the repository (a PKCS#11 token, a KMS command: `external.rs`).
//!
//! Layout (little-endian): `magic "CVKEYSLT" ‖ version u16 ‖ role u8 ‖ kdf u8 (1 argon2id,
//! 2 key file, 3 pkcs11, 4 command) ‖ m_kib u32 ‖ t_cost u32 ‖ p_cost u32 ‖ salt (32) ‖
//! repo_id (32) ‖ created_unix_ms i64 ‖ signing public key (32) ‖ label_len u16 ‖ label
//! (UTF-8) ‖ [wrapped seed, kinds 3 and 4] ‖ nonce (24) ‖ sealed secrets ‖ tag (16)`.
//! Everything before the nonce is the header and is the AEAD's associated data, so role,
//! parameters, repository id, label and wrapped seed cannot be changed without the slot
//! failing to open.
//!
//! Invariants: no Argon2 runs for parameters above the ceilings
//! ([`KdfParams::check`]), whatever the caller allows; when several slots could open
//! with a secret, they are tried cheapest first ([`open_cheapest_first`]), so a slot
//! planted at the ceilings costs an opener nothing when a cheaper slot opens.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use super::external::{SeedWrap, SlotKind, SlotSeed};
use super::{KdfParams, KeySource, Role, Secrets, SlotInfo};
use crate::crypto::sign::PublicKey;
use crate::crypto::{Key32, aead, context, derive_key, random_array};
use crate::error::{Error, Result};
use crate::format::{ByteReader, check_magic_version};
use crate::id::{RepoId, SlotId};

const MAGIC: &[u8; 8] = b"CVKEYSLT";
const KDF_ARGON2ID: u8 = 1;
const KDF_KEYFILE: u8 = 2;
const KDF_PKCS11: u8 = 3;
const KDF_COMMAND: u8 = 4;
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
    /// The wrapped seed of a pkcs11 or command slot (kinds 3 and 4), else `None`.
    pub wrap: Option<SeedWrap>,
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
        if let Some(wrap) = &self.wrap {
            wrap.encode(&mut h);
        }
        h
    }

    /// What a key store authenticates with a slot's wrapped seed: the repository, role,
    /// kind, salt and signing key, so a wrapped seed copied into another slot (of this
    /// repository or another) does not unwrap. The salt is random per slot: it names the
    /// slot as its id does, and is in the bytes, unlike the id (the object's name).
    pub fn binding(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(context::EXTERNAL_SLOT_BINDING.len() + 99);
        b.extend_from_slice(context::EXTERNAL_SLOT_BINDING.as_bytes());
        b.push(0);
        b.extend_from_slice(self.repo_id.as_bytes());
        b.push(self.role.to_u8());
        b.push(self.kdf_kind);
        b.extend_from_slice(&self.salt);
        b.extend_from_slice(self.signing_key.as_bytes());
        b
    }

    /// Parses the header; returns it and the header's length (the AAD).
    pub fn decode(bytes: &[u8], object: &str) -> Result<(Self, usize)> {
        let mut r = ByteReader::new(bytes, object);
        check_magic_version(&mut r, MAGIC)?;
        let role = Role::from_u8(r.u8()?).ok_or_else(|| r.corrupt("unknown role"))?;
        let kdf_kind = r.u8()?;
        let kind =
            SlotKind::from_u8(kdf_kind).ok_or_else(|| r.corrupt("unknown key derivation"))?;
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
        let wrap = if kind.is_external() {
            Some(SeedWrap::decode(kind, &mut r)?)
        } else {
            None
        };
        let header = Self {
            role,
            kdf_kind,
            kdf,
            salt,
            repo_id,
            created_unix_ms,
            signing_key,
            label,
            wrap,
        };
        Ok((header, r.position()))
    }

    /// The slot's kind (its `kdf` byte, checked by `decode`).
    pub fn kind(&self) -> SlotKind {
        SlotKind::from_u8(self.kdf_kind).unwrap_or(SlotKind::Passphrase)
    }

    pub fn info(&self, id: SlotId) -> SlotInfo {
        SlotInfo {
            id,
            role: self.role,
            label: self.label.clone(),
            created_unix_ms: self.created_unix_ms,
            kind: self.kind(),
            kdf: match &self.wrap {
                _ if self.kdf_kind == KDF_ARGON2ID => format!(
                    "argon2id m={}KiB t={} p={}",
                    self.kdf.m_kib, self.kdf.t_cost, self.kdf.p_cost
                ),
                Some(SeedWrap::Pkcs11 {
                    token_label,
                    key_label,
                    ..
                }) => format!("pkcs11 token={token_label} key={key_label}"),
                Some(SeedWrap::Command { .. }) => "command".into(),
                None => "key-file".into(),
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
        (KDF_PKCS11 | KDF_COMMAND, KeySource::External(store))
            if store.kind().to_u8() == header.kdf_kind =>
        {
            let wrap = header.wrap.as_ref().ok_or(Error::WrongPassphrase)?;
            let seed = store.unwrap(wrap, &header.binding())?;
            Ok(external_kek(header, &seed))
        }
        _ => Err(Error::WrongPassphrase),
    }
}

/// The KEK of a pkcs11 or command slot: `derive_key(EXTERNAL_SLOT_KEK, kind ‖ seed ‖ salt)`.
fn external_kek(header: &SlotHeader, seed: &SlotSeed) -> Key32 {
    derive_key(
        context::EXTERNAL_SLOT_KEK,
        &[&[header.kdf_kind], &seed.expose()[..], &header.salt],
    )
}

/// Wraps a new seed with the store into `header`, checks that the store unwraps it again
/// (a key that may encrypt but not decrypt, or a wrap command whose output its unwrap
/// command does not take, is found now rather than at the first restore), and returns
/// the slot's KEK.
fn wrap_new_seed(header: &mut SlotHeader, store: &dyn super::KeyWrapper) -> Result<Key32> {
    let seed = SlotSeed::random();
    let binding = header.binding();
    let wrap = store.wrap(&seed, &binding)?;
    if wrap.kind() != store.kind() {
        return Err(Error::invalid(
            "key store",
            "returned a wrap of another kind",
        ));
    }
    wrap.check()?;
    let back = store.unwrap(&wrap, &binding)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &back.expose()[..],
        &seed.expose()[..],
    )) {
        return Err(Error::KeyStore {
            store: format!("the {} key store", store.kind()),
            reason: "unwrapping the new slot's seed did not give back the seed it wrapped".into(),
        });
    }
    header.wrap = Some(wrap);
    Ok(external_kek(header, &seed))
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
        KeySource::External(store) if store.kind().is_external() => store.kind().to_u8(),
        KeySource::External(_) => {
            return Err(Error::invalid("key store", "not of an external slot kind"));
        }
    };
    let mut header = SlotHeader {
        role: secrets.role,
        kdf_kind,
        kdf: if kdf_kind == KDF_ARGON2ID {
            kdf
        } else {
            KdfParams::new(0, 0, 0)
        },
        salt: random_array(),
        repo_id: secrets.repo_id,
        created_unix_ms: crate::format::now_unix_ms(),
        signing_key: secrets.signer.public(),
        label: label.to_owned(),
        wrap: None,
    };
    let kek = match source {
        KeySource::External(store) => wrap_new_seed(&mut header, store.as_ref())?,
        _ => kek(&header, source, kdf.weak_allowed())?,
    };
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
///
/// An external key store (`KeySource::External`) is asked only about slots of its own
/// kind, so a token is never asked for its PIN while other slots are tried. A refused PIN
/// ends the search at once ([`Error::WrongPin`]: a token locks after a few wrong logins);
/// a store that fails for one slot (its key missing) does not stop the others, and if
/// none opens, its last failure is the error, naming the store.
pub(crate) fn open_cheapest_first(
    slots: Vec<(SlotId, Vec<u8>)>,
    source: &KeySource,
    weak_allowed: bool,
) -> Result<(SlotId, SlotHeader, Secrets)> {
    let external = match source {
        KeySource::External(store) => Some(store.kind()),
        _ => None,
    };
    let mut candidates: Vec<(u64, SlotId, Vec<u8>)> = slots
        .into_iter()
        .filter_map(|(id, bytes)| {
            let (header, _) = SlotHeader::decode(&bytes, &id.object_name()).ok()?;
            if external.is_some_and(|kind| kind != header.kind()) {
                return None;
            }
            Some((header.open_cost(source), id, bytes))
        })
        .collect();
    if let Some(kind) = external
        && candidates.is_empty()
    {
        return Err(Error::NoSlotOfKind { kind });
    }
    candidates.sort_by_key(|c| (c.0, c.1));
    let mut refused_kdf = None;
    let mut store_failed = None;
    for (_, id, bytes) in candidates {
        match open_slot(&bytes, &id.object_name(), source, weak_allowed) {
            Ok((header, secrets)) => return Ok((id, header, secrets)),
            Err(Error::WrongPassphrase | Error::Corrupt { .. }) => {}
            Err(Error::InvalidArgument { reason, .. }) => refused_kdf = Some(reason),
            Err(e @ Error::KeyStore { .. }) => store_failed = Some(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = store_failed {
        return Err(e);
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

    /// A key store in memory standing in for a token: it "wraps" by XOR with a keystream
    /// from its key and the binding, and counts its logins. What a real token does is
    /// tested against SoftHSM2 in `chatvault-keystore` and the CLI tests.
    struct FakeStore {
        key: [u8; 32],
        kind: SlotKind,
        pin_ok: bool,
        missing_key: bool,
        logins: std::sync::atomic::AtomicU32,
    }

    impl FakeStore {
        fn new(key: u8) -> Self {
            Self {
                key: [key; 32],
                kind: SlotKind::Pkcs11,
                pin_ok: true,
                missing_key: false,
                logins: Default::default(),
            }
        }
        fn stream(&self, binding: &[u8]) -> [u8; 32] {
            *blake3::keyed_hash(&self.key, binding).as_bytes()
        }
        fn login(&self) -> Result<()> {
            self.logins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !self.pin_ok {
                return Err(Error::WrongPin {
                    store: "token \"T\"".into(),
                    reason: "incorrect".into(),
                });
            }
            if self.missing_key {
                return Err(Error::KeyStore {
                    store: "token \"T\"".into(),
                    reason: "no AES key labelled \"K\"".into(),
                });
            }
            Ok(())
        }
    }

    impl super::super::KeyWrapper for FakeStore {
        fn kind(&self) -> SlotKind {
            self.kind
        }
        fn wrap(&self, seed: &SlotSeed, binding: &[u8]) -> Result<SeedWrap> {
            self.login()?;
            let ks = self.stream(binding);
            let ciphertext: Vec<u8> = seed.expose().iter().zip(ks).map(|(a, b)| a ^ b).collect();
            Ok(match self.kind {
                SlotKind::Command => SeedWrap::Command { ciphertext },
                _ => SeedWrap::Pkcs11 {
                    token_label: "T".into(),
                    key_label: "K".into(),
                    iv: [9; 12],
                    ciphertext,
                },
            })
        }
        fn unwrap(&self, wrap: &SeedWrap, binding: &[u8]) -> Result<SlotSeed> {
            self.login()?;
            let (SeedWrap::Pkcs11 { ciphertext, .. } | SeedWrap::Command { ciphertext }) = wrap;
            let ks = self.stream(binding);
            let mut out = Zeroizing::new([0u8; 32]);
            for (o, (a, b)) in out.iter_mut().zip(ciphertext.iter().zip(ks)) {
                *o = a ^ b;
            }
            Ok(SlotSeed::from_bytes(out))
        }
    }

    fn external(store: FakeStore) -> KeySource {
        KeySource::External(Box::new(store))
    }

    #[test]
    fn external_slot_opens_only_through_its_store_and_holds_no_usable_seed() {
        let s = root();
        let token = external(FakeStore::new(1));
        let (_, bytes) = seal_slot(&s, &token, KdfParams::default(), "hsm").unwrap();
        let (h, back) = open_slot(&bytes, "k", &token, false).unwrap();
        assert_eq!(h.kind(), SlotKind::Pkcs11);
        assert_eq!(back.id_key.expose(), s.id_key.expose());
        assert_eq!(
            h.info(SlotId::from_bytes([0; 32])).kdf,
            "pkcs11 token=T key=K"
        );
        // The header holds the wrap, never the seed: the seed is what the store unwraps,
        // and it differs from the stored ciphertext.
        let Some(SeedWrap::Pkcs11 { ciphertext, .. }) = &h.wrap else {
            panic!("no wrap")
        };
        use super::super::KeyWrapper;
        let seed = FakeStore::new(1)
            .unwrap(h.wrap.as_ref().unwrap(), &h.binding())
            .unwrap();
        assert_ne!(&ciphertext[..], &seed.expose()[..]);
        assert!(!bytes.windows(32).any(|w| w == seed.expose()));
        // Another store's key, a passphrase, a key file: none opens it.
        assert!(open_slot(&bytes, "k", &external(FakeStore::new(2)), false).is_err());
        assert!(matches!(
            open_slot(&bytes, "k", &KeySource::passphrase("pw"), false),
            Err(Error::WrongPassphrase)
        ));
        // The wrap is in the AAD: a changed key label fails the seal.
        let mut b = bytes.clone();
        let at = b.windows(3).position(|w| w == [1, b'K', 9]).unwrap();
        b[at + 1] = b'L';
        assert!(open_slot(&b, "k", &token, false).is_err());
    }

    #[test]
    fn a_wrapped_seed_moved_into_another_slot_does_not_unwrap() {
        let s = root();
        let token = external(FakeStore::new(1));
        let (_, a) = seal_slot(&s, &token, KdfParams::default(), "a").unwrap();
        let (ha, la) = SlotHeader::decode(&a, "a").unwrap();
        let (_, b) = seal_slot(&s, &token, KdfParams::default(), "a").unwrap();
        let (hb, lb) = SlotHeader::decode(&b, "b").unwrap();
        // Slot b with a's wrap (same length): the binding (salt) differs, so b's KEK is
        // not recovered.
        let mut moved = hb.clone();
        moved.wrap = ha.wrap.clone();
        let mut bytes = moved.encode();
        assert_eq!(bytes.len(), lb);
        bytes.extend_from_slice(&b[lb..]);
        assert!(open_slot(&bytes, "b", &token, false).is_err());
        assert_eq!(la, lb);
    }

    #[test]
    fn a_wrong_pin_stops_the_search_and_a_missing_key_is_named() {
        let s = root();
        let token = FakeStore::new(1);
        let (_, one) =
            seal_slot(&s, &external(FakeStore::new(1)), KdfParams::default(), "a").unwrap();
        let (_, two) =
            seal_slot(&s, &external(FakeStore::new(1)), KdfParams::default(), "b").unwrap();
        let (_, pass) = seal_slot(
            &s,
            &KeySource::passphrase("pw"),
            KdfParams::insecure_for_tests(),
            "p",
        )
        .unwrap();
        let slots = || {
            vec![
                (SlotId::from_bytes([1; 32]), one.clone()),
                (SlotId::from_bytes([2; 32]), two.clone()),
                (SlotId::from_bytes([3; 32]), pass.clone()),
            ]
        };
        let (id, _, _) = open_cheapest_first(slots(), &external(token), false).unwrap();
        assert_eq!(id, SlotId::from_bytes([1; 32]));
        // A wrong PIN: one login attempt, whatever the number of token slots.
        let wrong = std::sync::Arc::new(FakeStore {
            pin_ok: false,
            ..FakeStore::new(1)
        });
        struct Shared(std::sync::Arc<FakeStore>);
        impl super::super::KeyWrapper for Shared {
            fn kind(&self) -> SlotKind {
                self.0.kind()
            }
            fn wrap(&self, seed: &SlotSeed, b: &[u8]) -> Result<SeedWrap> {
                self.0.wrap(seed, b)
            }
            fn unwrap(&self, w: &SeedWrap, b: &[u8]) -> Result<SlotSeed> {
                self.0.unwrap(w, b)
            }
        }
        let source = KeySource::External(Box::new(Shared(wrong.clone())));
        let r = open_cheapest_first(slots(), &source, false).map(|_| ());
        assert!(matches!(r, Err(Error::WrongPin { .. })), "{r:?}");
        assert_eq!(wrong.logins.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The token's key deleted: the error names it, not "wrong passphrase".
        let gone = FakeStore {
            missing_key: true,
            ..FakeStore::new(1)
        };
        let Err(err) = open_cheapest_first(slots(), &external(gone), false) else {
            panic!("opened without the token's key");
        };
        assert!(err.to_string().contains("no AES key labelled"), "{err}");
        // A passphrase opener never asks the store; a command store finds no slot of its
        // kind and says so.
        let before = kdf_runs();
        open_cheapest_first(slots(), &KeySource::passphrase("pw"), true).unwrap();
        assert_eq!(kdf_runs() - before, 1);
        let cmd = FakeStore {
            kind: SlotKind::Command,
            ..FakeStore::new(1)
        };
        let Err(err) = open_cheapest_first(slots(), &external(cmd), false) else {
            panic!("a command store opened a pkcs11 slot");
        };
        assert!(
            matches!(
                err,
                Error::NoSlotOfKind {
                    kind: SlotKind::Command
                }
            ),
            "{err}"
        );
    }

    /// Golden vector of a pkcs11 slot header (format 2, kind 3): every field at a fixed
    /// value, so an accidental change of the encoding fails here.
    #[test]
    fn golden_pkcs11_slot_header() {
        let header = SlotHeader {
            role: Role::Full,
            kdf_kind: KDF_PKCS11,
            kdf: KdfParams::new(0, 0, 0),
            salt: [0x11; 32],
            repo_id: RepoId::from_bytes([0x22; 32]),
            created_unix_ms: 0x0102_0304_0506,
            signing_key: PublicKey::from_bytes([0x33; 32]),
            label: "hsm".into(),
            wrap: Some(SeedWrap::Pkcs11 {
                token_label: "T".into(),
                key_label: "kek".into(),
                iv: [0x44; 12],
                ciphertext: vec![0x55; 48],
            }),
        };
        let bytes = header.encode();
        assert_eq!(hex::encode(&bytes), GOLDEN_PKCS11_HEADER);
        let (back, len) = SlotHeader::decode(&bytes, "k").unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(back.wrap, header.wrap);
        assert_eq!(back.kind(), SlotKind::Pkcs11);
        // The KEK from a seed, and the binding a store authenticates.
        let seed = SlotSeed::from_bytes(Zeroizing::new([7; 32]));
        assert_eq!(
            hex::encode(external_kek(&header, &seed).expose()),
            GOLDEN_PKCS11_KEK
        );
        assert_eq!(
            hex::encode(blake3::hash(&header.binding()).as_bytes()),
            GOLDEN_PKCS11_BINDING_HASH
        );
        // The fuzz seed `fuzz/corpus/key_slot/seed-pkcs11` is this header and room for the
        // shortest sealed secrets: it passes the shape check.
        let mut seed = bytes.clone();
        seed.resize(
            bytes.len() + aead::NONCE_LEN + MIN_SECRETS + aead::TAG_LEN,
            0,
        );
        check_shape(&seed, "k", &header.repo_id).unwrap();
        let corpus = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/key_slot/seed-pkcs11"
        );
        assert_eq!(std::fs::read(corpus).unwrap(), seed);
        let command = SlotHeader {
            kdf_kind: KDF_COMMAND,
            wrap: Some(SeedWrap::Command {
                ciphertext: b"vault:v1:abc".to_vec(),
            }),
            ..header
        };
        let bytes = command.encode();
        assert_eq!(hex::encode(&bytes[133..]), "0c007661756c743a76313a616263");
        assert_eq!(
            SlotHeader::decode(&bytes, "k").unwrap().0.wrap,
            command.wrap
        );
        // Truncated anywhere inside the wrap: corrupt, never a panic.
        for n in 133..bytes.len() {
            assert!(SlotHeader::decode(&bytes[..n], "k").is_err(), "{n}");
        }
    }

    // Computed from FORMAT.md's formulas with the Python `blake3` package, independently of
    // this code.
    const GOLDEN_PKCS11_KEK: &str =
        "0e14dbe8be9967ea197afbd021152e767f00985d9b7ce287a0c185346461f0aa";
    const GOLDEN_PKCS11_BINDING_HASH: &str =
        "580edc6c6965c462b0df4802c4a5b87d62408aa4117d7c78fe4c509453630500";
    const GOLDEN_PKCS11_HEADER: &str = concat!(
        "43564b4559534c54",                                                 // magic
        "02000203000000000000000000000000", // version, role 2, kdf 3, m/t/p 0
        "1111111111111111111111111111111111111111111111111111111111111111", // salt
        "2222222222222222222222222222222222222222222222222222222222222222", // repo_id
        "0605040302010000",                 // created
        "3333333333333333333333333333333333333333333333333333333333333333", // signing key
        "030068736d",                       // label "hsm"
        "01",                               // mechanism 1
        "0154",                             // token label "T"
        "036b656b",                         // key label "kek"
        "444444444444444444444444",         // iv
        "3000",                             // ciphertext length 48
        "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555", // ciphertext
    );

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
