//! The key hierarchy: roles, the repository secrets each role holds, and key slots that
//! wrap them under a passphrase (Argon2id), a raw key file, or a seed wrapped by a key
//! store outside the repository (PKCS#11 token, KMS command: [`KeyWrapper`]).
//!
//! Invariants: `id_key`, `chunker_key`, `index_key`, `auth_key`, the X25519 data key pairs
//! and every signing key are independent random values, never derived from one another;
//! a `backup` slot holds no data secret key, so a chat node with one can write and dedupe
//! but never read; secret types are zeroized on drop and have no `Debug`.

mod external;
mod secrets;
mod slot;

pub use external::{KeyWrapper, SeedWrap, SlotKind, SlotSeed, TOKEN_IV_LEN};
pub(crate) use secrets::{DataKeyPair, GenerationKeys, Secrets};
pub(crate) use slot::{SlotHeader, check_shape, open_cheapest_first, seal_slot};

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::sign::PublicKey;
use crate::error::{Error, Result};
use crate::id::SlotId;

/// What a key slot may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Write and deduplicate; cannot read any blob, tree or snapshot.
    Backup,
    /// Backup plus reading (holds the data secret keys).
    Full,
    /// Full plus signing the config: writers, revocations, holds, retention.
    Admin,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Backup => "backup",
            Role::Full => "full",
            Role::Admin => "admin",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Role::Backup => 1,
            Role::Full => 2,
            Role::Admin => 3,
        }
    }

    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Role::Backup),
            2 => Some(Role::Full),
            3 => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role can read data (holds the data secret keys).
    pub fn can_read(&self) -> bool {
        matches!(self, Role::Full | Role::Admin)
    }

    /// Whether this role can sign the config.
    pub fn is_admin(&self) -> bool {
        matches!(self, Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "backup" => Ok(Role::Backup),
            "full" => Ok(Role::Full),
            "admin" => Ok(Role::Admin),
            _ => Err(Error::invalid(
                "role",
                format!("{s:?} (expected backup, full or admin)"),
            )),
        }
    }
}

/// Argon2id parameters for passphrase slots.
///
/// By default: 64 MiB, 3 passes, 1 lane (the floor this build accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    weak_allowed: bool,
}

impl KdfParams {
    /// The minimum memory accepted: 64 MiB.
    pub const MIN_M_KIB: u32 = 64 * 1024;
    /// The minimum passes accepted.
    pub const MIN_T_COST: u32 = 3;
    /// The most memory accepted, when a slot is created and when it is opened: 1 GiB.
    /// With [`MAX_T_COST`](Self::MAX_T_COST) and [`MAX_COST`](Self::MAX_COST), the
    /// ceilings that keep a slot planted by someone with storage write access from making
    /// every open run minutes of Argon2 or exhaust a chat node's memory.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// The most passes accepted. See [`MAX_M_KIB`](Self::MAX_M_KIB).
    pub const MAX_T_COST: u32 = 16;
    /// The most work accepted, memory times passes, in KiB: 2 GiB × 1 pass, 1 GiB × 2,
    /// 512 MiB × 4 … (10 times the default). See [`MAX_M_KIB`](Self::MAX_M_KIB).
    pub const MAX_COST: u64 = 2 * 1024 * 1024;
    /// The most lanes accepted.
    pub const MAX_P_COST: u32 = 16;

    /// Explicit parameters; [`check`](Self::check) refuses weak ones.
    pub fn new(m_kib: u32, t_cost: u32, p_cost: u32) -> Self {
        Self {
            m_kib,
            t_cost,
            p_cost,
            weak_allowed: false,
        }
    }

    /// Fast, weak parameters. Only for tests: slots made with them fall to a brute-force
    /// attack, and repositories opened with them accept such slots.
    pub fn insecure_for_tests() -> Self {
        Self {
            m_kib: 64,
            t_cost: 1,
            p_cost: 1,
            weak_allowed: true,
        }
    }

    /// Whether weak parameters are tolerated (only after [`insecure_for_tests`](Self::insecure_for_tests)).
    pub fn weak_allowed(&self) -> bool {
        self.weak_allowed
    }

    /// The work one derivation costs: memory (KiB) times passes. Lanes share the memory
    /// and, without threads, add no time. Slots are tried cheapest first.
    pub fn cost(&self) -> u64 {
        u64::from(self.m_kib) * u64::from(self.t_cost)
    }

    /// Refuses weak (unless explicitly allowed) or excessive parameters (above the
    /// ceilings, whatever `weak_allowed` says).
    pub fn check(&self, weak_allowed: bool) -> Result<()> {
        if self.m_kib > Self::MAX_M_KIB
            || self.t_cost > Self::MAX_T_COST
            || self.cost() > Self::MAX_COST
            || self.p_cost > Self::MAX_P_COST
        {
            return Err(Error::invalid(
                "KDF parameters",
                format!(
                    "m={} KiB t={} p={} is above the limits this build accepts \
                     (m ≤ {} KiB, t ≤ {}, m × t ≤ {} KiB, p ≤ {})",
                    self.m_kib,
                    self.t_cost,
                    self.p_cost,
                    Self::MAX_M_KIB,
                    Self::MAX_T_COST,
                    Self::MAX_COST,
                    Self::MAX_P_COST,
                ),
            ));
        }
        if self.p_cost == 0 || self.t_cost == 0 || self.m_kib < 8 * self.p_cost {
            return Err(Error::invalid("KDF parameters", "out of Argon2's range"));
        }
        if !weak_allowed && (self.m_kib < Self::MIN_M_KIB || self.t_cost < Self::MIN_T_COST) {
            return Err(Error::invalid(
                "KDF parameters",
                format!(
                    "m={} KiB t={} is below the minimum of {} KiB and t={}",
                    self.m_kib,
                    self.t_cost,
                    Self::MIN_M_KIB,
                    Self::MIN_T_COST
                ),
            ));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::new(Self::MIN_M_KIB, Self::MIN_T_COST, 1)
    }
}

/// Where the secret that opens a key slot comes from.
///
/// No variant's content is ever printed: `Debug` shows only the kind.
#[non_exhaustive]
pub enum KeySource {
    /// A passphrase (from a prompt, a file, an environment variable or a command).
    Passphrase(Zeroizing<String>),
    /// A raw 256-bit key file, for unattended servers.
    KeyFile(Zeroizing<[u8; 32]>),
    /// A key store outside the repository (a PKCS#11 token, a KMS command): it creates
    /// and opens slots of its own kind only.
    External(Box<dyn KeyWrapper>),
}

impl KeySource {
    /// A passphrase source.
    pub fn passphrase(p: &str) -> Self {
        KeySource::Passphrase(Zeroizing::new(p.to_owned()))
    }

    /// A key file's content: 64 hex digits (surrounding white space ignored) or 32 raw
    /// bytes.
    pub fn key_file_bytes(content: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(content).ok().map(str::trim);
        let mut key = Zeroizing::new([0u8; 32]);
        match text {
            Some(t) if t.len() == 64 && hex::decode_to_slice(t, &mut key[..]).is_ok() => {}
            _ if content.len() == 32 => key.copy_from_slice(content),
            _ => {
                return Err(Error::invalid(
                    "key file",
                    "expected 64 hex digits or 32 raw bytes",
                ));
            }
        }
        Ok(KeySource::KeyFile(key))
    }

    /// Reads a key file.
    pub fn read_key_file(path: &Path) -> Result<Self> {
        let content = Zeroizing::new(std::fs::read(path)?);
        Self::key_file_bytes(&content)
    }

    /// Creates a new random key file (64 hex digits, mode 0600 on Unix) that must not exist.
    pub fn generate_key_file(path: &Path) -> Result<Self> {
        use std::io::Write;
        let key = Zeroizing::new(crate::crypto::random_array::<32>());
        let text = Zeroizing::new(hex::encode(&key[..]));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        Ok(KeySource::KeyFile(key))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Passphrase(_) => f.write_str("KeySource::Passphrase(<redacted>)"),
            KeySource::KeyFile(_) => f.write_str("KeySource::KeyFile(<redacted>)"),
            KeySource::External(s) => write!(f, "KeySource::External({})", s.kind()),
        }
    }
}

/// Public facts about a key slot (readable without opening it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// The slot's id (object `keys/<id>`).
    pub id: SlotId,
    /// Its role.
    pub role: Role,
    /// How its key-encryption key is obtained.
    pub kind: SlotKind,
    /// A label (host name, person).
    pub label: String,
    /// Creation time.
    pub created_unix_ms: i64,
    /// `argon2id m=… t=… p=…`, `key-file`, `pkcs11 token=… key=…` or `command`.
    pub kdf: String,
    /// The slot's signing public key (the writer key its snapshots carry).
    pub signing_key: PublicKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_floor_and_limits() {
        KdfParams::default().check(false).unwrap();
        assert!(KdfParams::new(32 * 1024, 3, 1).check(false).is_err());
        assert!(KdfParams::new(64 * 1024, 2, 1).check(false).is_err());
        assert!(KdfParams::insecure_for_tests().check(false).is_err());
        KdfParams::insecure_for_tests().check(true).unwrap();
        assert!(KdfParams::new(u32::MAX, 3, 1).check(true).is_err());
        assert!(KdfParams::new(64 * 1024, 1000, 1).check(true).is_err());
    }

    /// Regression: the ceilings were 4 GiB and 64 passes, so one planted slot made every
    /// open of the repository run up to 256 GiB-passes of Argon2.
    #[test]
    fn kdf_ceilings_bound_the_work_of_one_slot() {
        let gib = 1024 * 1024;
        for ok in [(gib, 2), (gib / 2, 4), (gib / 8, 16), (64 * 1024, 3)] {
            KdfParams::new(ok.0, ok.1, 1).check(true).unwrap();
        }
        for over in [
            (4 * gib, 3),
            (gib + 1, 1),
            (gib, 3),
            (64 * 1024, 17),
            (gib / 4, 9),
        ] {
            let err = KdfParams::new(over.0, over.1, 1).check(true).unwrap_err();
            assert!(
                err.to_string().contains("above the limits"),
                "{over:?}: {err}"
            );
        }
        assert!(KdfParams::new(64 * 1024, 3, 17).check(true).is_err());
        assert_eq!(KdfParams::default().cost(), 3 * 64 * 1024);
        assert!(KdfParams::MAX_COST <= 12 * KdfParams::default().cost());
    }

    #[test]
    fn key_file_forms_and_redaction() {
        let hexkey = "ab".repeat(32);
        assert!(KeySource::key_file_bytes(format!("{hexkey}\n").as_bytes()).is_ok());
        assert!(KeySource::key_file_bytes(&[7u8; 32]).is_ok());
        assert!(KeySource::key_file_bytes(b"short").is_err());
        let dbg = format!("{:?}", KeySource::passphrase("hunter2"));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn generated_key_file_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let a = KeySource::generate_key_file(&p).unwrap();
        let b = KeySource::read_key_file(&p).unwrap();
        match (a, b) {
            (KeySource::KeyFile(x), KeySource::KeyFile(y)) => assert_eq!(*x, *y),
            _ => panic!("not key files"),
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(
            KeySource::generate_key_file(&p).is_err(),
            "must not overwrite"
        );
    }

    #[test]
    fn role_names() {
        for r in [Role::Backup, Role::Full, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(Role::from_u8(r.to_u8()), Some(r));
        }
        assert!("root".parse::<Role>().is_err());
        assert!(!Role::Backup.can_read());
    }
}
