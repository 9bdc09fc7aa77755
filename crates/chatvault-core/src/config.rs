//! The repository config: format parameters, data public keys, trusted writers and
//! revocations, signed by the repository's admin key.
//!
//! The object is a signed envelope (magic `CVCONFIG`, sequence = config sequence) whose
//! body is a CBOR map with integer keys (docs/FORMAT.md, "config"). Unknown keys are
//! skipped so later versions can add fields.
//! Invariants: a config is accepted only if signed by the admin key that the opened key
//! slot carries sealed inside it; its sequence never goes below what this client pinned;
//! a writer's object is trusted only if its key is listed and its sequence is within what
//! any revocation still trusts.

use crate::cbor::{Reader, Writer};
use crate::chunker::ChunkerParams;
use crate::crypto::sign::{PublicKey, Signer};
use crate::envelope::{self, magic};
use crate::error::{Error, Result};
use crate::id::RepoId;
use crate::keys::Role;

/// Algorithm identifiers of format v1 (recorded so a reader can refuse what it lacks).
pub(crate) const ALGORITHMS: [&str; 7] = [
    "fastcdc-v2020-keyed-gear",
    "blake3-keyed",
    "zstd",
    "xchacha20poly1305",
    "x25519",
    "ed25519",
    "argon2id",
];

/// A key allowed to sign snapshots and index segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterEntry {
    /// The writer's signing public key (its key slot's).
    pub key: PublicKey,
    /// The role of the slot it belongs to.
    pub role: Role,
    /// A label (host, person).
    pub label: String,
    /// What it may write for: `*` for anything, otherwise a host name (snapshots whose
    /// host differs are refused).
    pub scope: String,
    /// When it was added.
    pub added_unix_ms: i64,
    /// The slot's X25519 grant key, for roles that read: rotated data keys are wrapped to
    /// it. Listed here, in the admin-signed config, so that storage cannot substitute one.
    pub grant_key: Option<[u8; 32]>,
    /// Whether other writers may skip storing a blob because this writer's index segments
    /// list it (deduplicate against its announcements). A writer always trusts its own.
    /// By default true for admin and full keys, false for backup keys: a backup key can
    /// announce any blob id without storing its content.
    pub dedup_source: bool,
}

/// The secrets of a rotated key generation, wrapped to one writer's grant key.
///
/// Two forms: without `keys`, `wrapped` wraps the generation's data secret key itself
/// (a rotation of the data key alone, for a reading writer). With `keys`, `wrapped` wraps a
/// fresh grant key, and `keys` is sealed under it: the generation's `auth_key` and
/// `index_key`, preceded by its data secret key for a reading writer (docs/FORMAT.md,
/// section 6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyGrant {
    /// The key generation.
    pub generation: u32,
    /// The grant public key it is wrapped to.
    pub recipient: [u8; 32],
    /// The key wrap (docs/FORMAT.md, "Key wrap"), context `data-key-grant`.
    pub wrapped: Vec<u8>,
    /// The sealed keys of a generation that replaced `auth_key` and `index_key`.
    pub keys: Option<Vec<u8>>,
}

/// A revoked writer. Readers accept its objects only if the admin endorsed them when
/// revoking it: `endorsed` lists the content hashes (object ids) of the snapshots and index
/// segments it had signed then, up to `trusted_until_seq`; every other object it signs,
/// before or after, is refused. (A revocation written by an older version has no list,
/// and readers fall back to comparing the object's sequence with `trusted_until_seq`,
/// which the signer chooses: a revoked key could backdate.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked key.
    pub key: PublicKey,
    /// The last writer sequence the admin trusted when revoking (objects written before
    /// the compromise).
    pub trusted_until_seq: u64,
    /// When it was revoked.
    pub revoked_unix_ms: i64,
    /// The endorsed objects' ids, sorted, without repeats.
    pub endorsed: Option<Vec<[u8; 32]>>,
}

impl Revocation {
    /// Whether readers still accept the revoked writer's object `id` with sequence `seq`.
    pub fn accepts(&self, id: &[u8; 32], seq: u64) -> bool {
        match &self.endorsed {
            Some(list) => list.binary_search(id).is_ok(),
            None => seq <= self.trusted_until_seq,
        }
    }
}

/// The repository's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The repository id.
    pub repo_id: RepoId,
    /// Grows by one with every change; clients refuse a lower one than they saw.
    pub sequence: u64,
    /// Chunk size parameters, fixed at init.
    pub chunker: ChunkerParams,
    /// zstd level (0 = store uncompressed).
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// The current data key generation (new data is sealed to it).
    pub key_generation: u32,
    /// X25519 data public keys by generation.
    pub data_public_keys: Vec<(u32, [u8; 32])>,
    /// Trusted writers.
    pub writers: Vec<WriterEntry>,
    /// Revoked writers.
    pub revocations: Vec<Revocation>,
    /// The admin public key that signs configs.
    pub admin_key: PublicKey,
    /// Secrets of rotated generations, wrapped to writers' grant keys.
    pub grants: Vec<DataKeyGrant>,
    /// The generations that replaced `auth_key` and `index_key` (a rotation after a
    /// revocation, or any rotation since they were introduced), ascending. Data of
    /// generation `g` is sealed with the keys of the greatest of these `≤ g` (0: the
    /// original keys).
    pub rekeyed_generations: Vec<u32>,
}

const OBJECT: &str = "config";

impl Config {
    /// Whether `key` may sign the object `id` (its content hash), with writer sequence
    /// `seq`, for `host`.
    pub(crate) fn check_writer(
        &self,
        object: &str,
        id: &[u8; 32],
        key: &PublicKey,
        seq: u64,
        host: Option<&str>,
    ) -> Result<&WriterEntry> {
        let w =
            self.writers.iter().find(|w| w.key == *key).ok_or_else(|| {
                Error::untrusted(object, format!("signed by unknown writer {key}"))
            })?;
        if let Some(r) = self.revocations.iter().find(|r| r.key == *key)
            && !r.accepts(id, seq)
        {
            return Err(Error::untrusted(
                object,
                format!("signed by revoked writer {key}, and not endorsed by the admin"),
            ));
        }
        if let Some(host) = host
            && w.scope != "*"
            && w.scope != host
        {
            return Err(Error::untrusted(
                object,
                format!("writer {key} may write for {:?}, not {host:?}", w.scope),
            ));
        }
        Ok(w)
    }

    /// A digest of what decides how far readers trust each writer's index segments (the
    /// revocations): a local index cache built under another epoch is rebuilt.
    pub(crate) fn trust_epoch(&self) -> [u8; 32] {
        let mut w = Writer::new();
        w.array_head(self.revocations.len());
        for r in &self.revocations {
            encode_revocation(&mut w, r);
        }
        *blake3::hash(&w.into_bytes()).as_bytes()
    }

    /// The generation whose `auth_key` and `index_key` seal data of `generation`.
    pub(crate) fn keyed_generation(&self, generation: u32) -> u32 {
        self.rekeyed_generations
            .iter()
            .rev()
            .find(|g| **g <= generation)
            .copied()
            .unwrap_or(0)
    }

    /// The data public key of the current generation.
    pub(crate) fn current_data_key(&self) -> Result<[u8; 32]> {
        self.data_public_keys
            .iter()
            .find(|(g, _)| *g == self.key_generation)
            .map(|(_, k)| *k)
            .ok_or_else(|| Error::corrupt(OBJECT, "no data key for the current generation"))
    }

    pub(crate) fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.bytes(self.repo_id.as_bytes()));
            f.field(1, |w| w.uint(self.sequence));
            f.field(2, |w| {
                w.array_head(3);
                for v in [
                    self.chunker.min_size,
                    self.chunker.avg_size,
                    self.chunker.max_size,
                ] {
                    w.uint(u64::from(v));
                }
            });
            f.field(3, |w| w.int(i64::from(self.compression_level)));
            f.field(4, |w| w.uint(u64::from(self.pack_size)));
            f.field(5, |w| {
                w.array_head(ALGORITHMS.len());
                ALGORITHMS.iter().for_each(|a| w.text(a));
            });
            f.field(6, |w| w.uint(u64::from(self.key_generation)));
            f.field(7, |w| {
                w.array_head(self.data_public_keys.len());
                for (g, k) in &self.data_public_keys {
                    w.array_head(2);
                    w.uint(u64::from(*g));
                    w.bytes(k);
                }
            });
            f.field(8, |w| {
                w.array_head(self.writers.len());
                self.writers.iter().for_each(|e| encode_writer(w, e));
            });
            f.field(9, |w| {
                w.array_head(self.revocations.len());
                for r in &self.revocations {
                    encode_revocation(w, r);
                }
            });
            f.field(10, |w| w.bytes(self.admin_key.as_bytes()));
            if !self.grants.is_empty() {
                f.field(11, |w| {
                    w.array_head(self.grants.len());
                    for g in &self.grants {
                        w.fields(|f| {
                            f.field(0, |w| w.uint(u64::from(g.generation)));
                            f.field(1, |w| w.bytes(&g.recipient));
                            f.field(2, |w| w.bytes(&g.wrapped));
                            if let Some(keys) = &g.keys {
                                f.field(3, |w| w.bytes(keys));
                            }
                        });
                    }
                });
            }
            if !self.rekeyed_generations.is_empty() {
                f.field(12, |w| {
                    w.array_head(self.rekeyed_generations.len());
                    self.rekeyed_generations
                        .iter()
                        .for_each(|g| w.uint(u64::from(*g)));
                });
            }
        });
        w.into_bytes()
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, OBJECT);
        let mut c = Config {
            repo_id: RepoId::from_bytes([0; 32]),
            sequence: 0,
            chunker: ChunkerParams::default(),
            compression_level: 0,
            pack_size: 0,
            key_generation: 0,
            data_public_keys: Vec::new(),
            writers: Vec::new(),
            revocations: Vec::new(),
            admin_key: PublicKey::from_bytes([0; 32]),
            grants: Vec::new(),
            rekeyed_generations: Vec::new(),
        };
        let mut seen = 0u32;
        let mut fields = r.fields()?;
        while let Some(key) = fields.next_key(&mut r)? {
            if key < 32 {
                seen |= 1 << key;
            }
            match key {
                0 => c.repo_id = RepoId::from_bytes(r.id("repo id")?),
                1 => c.sequence = r.u64("sequence")?,
                2 => {
                    if r.array_len(1, "chunker parameters")? != 3 {
                        return Err(r.corrupt("chunker parameters are not [min, avg, max]"));
                    }
                    c.chunker = ChunkerParams {
                        min_size: r.u32("chunker min")?,
                        avg_size: r.u32("chunker avg")?,
                        max_size: r.u32("chunker max")?,
                    };
                }
                3 => {
                    c.compression_level = i32::try_from(r.i64("compression level")?)
                        .map_err(|_| r.corrupt("compression level out of range"))?
                }
                4 => c.pack_size = r.u32("pack size")?,
                5 => {
                    let n = r.array_len(1, "algorithms")?;
                    let mut algs = Vec::with_capacity(n);
                    for _ in 0..n {
                        algs.push(r.text("algorithm")?.to_owned());
                    }
                    if algs != ALGORITHMS {
                        return Err(Error::UnsupportedFormat {
                            object: OBJECT.into(),
                            found: crate::FORMAT_VERSION,
                            supported: crate::FORMAT_VERSION,
                        });
                    }
                }
                6 => c.key_generation = r.u32("key generation")?,
                7 => {
                    for _ in 0..r.array_len(35, "data public keys")? {
                        if r.array_len(34, "data key entry")? != 2 {
                            return Err(r.corrupt("data key entry is not [generation, key]"));
                        }
                        let g = r.u32("data key generation")?;
                        let pk = r.id("data public key")?;
                        if !crate::crypto::wrap::is_strong_public_key(&pk) {
                            return Err(r.corrupt("a data public key is a low-order point"));
                        }
                        c.data_public_keys.push((g, pk));
                    }
                }
                8 => {
                    for _ in 0..r.array_len(1, "writers")? {
                        c.writers.push(decode_writer(&mut r)?);
                    }
                }
                9 => {
                    for _ in 0..r.array_len(1, "revocations")? {
                        c.revocations.push(decode_revocation(&mut r)?);
                    }
                }
                10 => c.admin_key = PublicKey::from_bytes(r.id("admin key")?),
                11 => {
                    for _ in 0..r.array_len(1, "grants")? {
                        c.grants.push(decode_grant(&mut r)?);
                    }
                }
                12 => {
                    for _ in 0..r.array_len(1, "rekeyed generations")? {
                        let g = r.u32("rekeyed generation")?;
                        if c.rekeyed_generations.last().is_some_and(|p| *p >= g) || g == 0 {
                            return Err(r.corrupt("rekeyed generations are not increasing"));
                        }
                        c.rekeyed_generations.push(g);
                    }
                }
                _ => r.skip()?,
            }
        }
        r.finish()?;
        if seen & 0x7ff != 0x7ff {
            return Err(r.corrupt("missing fields"));
        }
        c.chunker
            .validate()
            .map_err(|e| Error::corrupt(OBJECT, format!("chunker parameters: {e}")))?;
        c.current_data_key()?;
        Ok(c)
    }

    /// Signs and encodes the config object with the admin key.
    pub(crate) fn to_object(&self, admin: &Signer) -> Result<Vec<u8>> {
        Ok(envelope::seal(
            magic::CONFIG,
            admin,
            &self.repo_id,
            self.sequence,
            &self.encode_body(),
        ))
    }

    /// Verifies and decodes a config object against the trusted admin key and repo id.
    pub(crate) fn from_object(
        bytes: &[u8],
        repo_id: &RepoId,
        admin_key: &PublicKey,
    ) -> Result<Self> {
        let env = envelope::open(bytes, magic::CONFIG, OBJECT, repo_id)?;
        if env.signer != *admin_key {
            return Err(Error::untrusted(
                OBJECT,
                "not signed by this repository's admin key",
            ));
        }
        let c = Self::decode_body(env.body)?;
        if c.repo_id != *repo_id || c.sequence != env.sequence || c.admin_key != *admin_key {
            return Err(Error::corrupt(
                OBJECT,
                "signed header disagrees with the body",
            ));
        }
        Ok(c)
    }
}

fn encode_revocation(w: &mut Writer, r: &Revocation) {
    w.fields(|f| {
        f.field(0, |w| w.bytes(r.key.as_bytes()));
        f.field(1, |w| w.uint(r.trusted_until_seq));
        f.field(2, |w| w.int(r.revoked_unix_ms));
        if let Some(list) = &r.endorsed {
            f.field(3, |w| {
                w.array_head(list.len());
                list.iter().for_each(|id| w.bytes(id));
            });
        }
    });
}

fn encode_writer(w: &mut Writer, e: &WriterEntry) {
    w.fields(|f| {
        f.field(0, |w| w.bytes(e.key.as_bytes()));
        f.field(1, |w| w.uint(u64::from(e.role.to_u8())));
        f.field(2, |w| w.text(&e.label));
        f.field(3, |w| w.text(&e.scope));
        f.field(4, |w| w.int(e.added_unix_ms));
        if let Some(g) = &e.grant_key {
            f.field(5, |w| w.bytes(g));
        }
        if e.dedup_source != e.role.can_read() {
            f.field(6, |w| w.uint(u64::from(e.dedup_source)));
        }
    });
}

fn decode_writer(r: &mut Reader<'_>) -> Result<WriterEntry> {
    let mut w = WriterEntry {
        key: PublicKey::from_bytes([0; 32]),
        role: Role::Backup,
        label: String::new(),
        scope: "*".into(),
        added_unix_ms: 0,
        grant_key: None,
        dedup_source: false,
    };
    let mut dedup_source = None;
    let mut fields = r.fields()?;
    while let Some(key) = fields.next_key(r)? {
        match key {
            0 => w.key = PublicKey::from_bytes(r.id("writer key")?),
            1 => {
                let role = u8::try_from(r.u64("writer role")?)
                    .ok()
                    .and_then(Role::from_u8);
                w.role = role.ok_or_else(|| r.corrupt("unknown writer role"))?;
            }
            2 => w.label = r.text("writer label")?.to_owned(),
            3 => w.scope = r.text("writer scope")?.to_owned(),
            4 => w.added_unix_ms = r.i64("writer time")?,
            5 => w.grant_key = Some(r.id("writer grant key")?),
            6 => match r.u64("writer dedup source")? {
                0 => dedup_source = Some(false),
                1 => dedup_source = Some(true),
                _ => return Err(r.corrupt("writer dedup source is not 0 or 1")),
            },
            _ => r.skip()?,
        }
    }
    // Absent: the default of the writer's role (configs written before the field existed).
    w.dedup_source = dedup_source.unwrap_or(w.role.can_read());
    Ok(w)
}

fn decode_grant(r: &mut Reader<'_>) -> Result<DataKeyGrant> {
    let mut g = DataKeyGrant {
        generation: 0,
        recipient: [0; 32],
        wrapped: Vec::new(),
        keys: None,
    };
    let mut fields = r.fields()?;
    while let Some(key) = fields.next_key(r)? {
        match key {
            0 => g.generation = r.u32("grant generation")?,
            1 => g.recipient = r.id("grant recipient")?,
            2 => g.wrapped = r.bytes("grant wrap")?.to_vec(),
            3 => g.keys = Some(r.bytes("grant keys")?.to_vec()),
            _ => r.skip()?,
        }
    }
    if g.wrapped.len() != crate::crypto::wrap::WRAP_LEN {
        return Err(r.corrupt("data key grant of the wrong length"));
    }
    Ok(g)
}

fn decode_revocation(r: &mut Reader<'_>) -> Result<Revocation> {
    let mut v = Revocation {
        key: PublicKey::from_bytes([0; 32]),
        trusted_until_seq: 0,
        revoked_unix_ms: 0,
        endorsed: None,
    };
    let mut fields = r.fields()?;
    while let Some(key) = fields.next_key(r)? {
        match key {
            0 => v.key = PublicKey::from_bytes(r.id("revoked key")?),
            1 => v.trusted_until_seq = r.u64("trusted until")?,
            2 => v.revoked_unix_ms = r.i64("revocation time")?,
            3 => {
                // Each id takes 34 encoded bytes, so the length is checked against the input.
                let n = r.array_len(34, "endorsed objects")?;
                let mut list: Vec<[u8; 32]> = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.id("endorsed object")?;
                    if list.last().is_some_and(|prev| *prev >= id) {
                        return Err(r.corrupt("endorsed objects are not strictly increasing"));
                    }
                    list.push(id);
                }
                v.endorsed = Some(list);
            }
            _ => r.skip()?,
        }
    }
    Ok(v)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use minicbor::Encoder;

    pub(crate) fn sample(admin: &Signer) -> Config {
        Config {
            repo_id: RepoId::from_bytes([1; 32]),
            sequence: 3,
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 16 << 20,
            key_generation: 0,
            data_public_keys: vec![(0, [9; 32])],
            writers: vec![WriterEntry {
                key: PublicKey::from_bytes([4; 32]),
                role: Role::Backup,
                label: "node-1".into(),
                scope: "node-1".into(),
                added_unix_ms: 1_700_000_000_000,
                grant_key: None,
                dedup_source: false,
            }],
            revocations: vec![Revocation {
                key: PublicKey::from_bytes([5; 32]),
                trusted_until_seq: 10,
                revoked_unix_ms: 1_700_000_000_001,
                endorsed: None,
            }],
            admin_key: admin.public(),
            grants: Vec::new(),
            rekeyed_generations: Vec::new(),
        }
    }

    #[test]
    fn round_trip_and_signature() {
        let admin = Signer::random();
        let c = sample(&admin);
        let obj = c.to_object(&admin).unwrap();
        assert_eq!(
            Config::from_object(&obj, &c.repo_id, &admin.public()).unwrap(),
            c
        );
        // Signed by anybody else: refused even if self-consistent.
        let forger = Signer::random();
        let mut f = c.clone();
        f.admin_key = forger.public();
        let forged = f.to_object(&forger).unwrap();
        assert!(matches!(
            Config::from_object(&forged, &c.repo_id, &admin.public()),
            Err(Error::Untrusted { .. })
        ));
        for n in 0..obj.len() {
            assert!(Config::from_object(&obj[..n], &c.repo_id, &admin.public()).is_err());
        }
    }

    #[test]
    fn writer_trust_rules() {
        let admin = Signer::random();
        let mut c = sample(&admin);
        let w = PublicKey::from_bytes([4; 32]);
        let id = [0x1d; 32];
        c.check_writer("o", &id, &w, 100, Some("node-1")).unwrap();
        assert!(
            c.check_writer("o", &id, &w, 100, Some("node-2")).is_err(),
            "out of scope"
        );
        assert!(
            c.check_writer("o", &id, &PublicKey::from_bytes([6; 32]), 1, None)
                .is_err()
        );
        c.writers.push(WriterEntry {
            key: PublicKey::from_bytes([5; 32]),
            role: Role::Full,
            label: "old".into(),
            scope: "*".into(),
            added_unix_ms: 0,
            grant_key: None,
            dedup_source: true,
        });
        let revoked = PublicKey::from_bytes([5; 32]);
        c.check_writer("o", &id, &revoked, 10, None).unwrap();
        assert!(matches!(
            c.check_writer("o", &id, &revoked, 11, None),
            Err(Error::Untrusted { .. })
        ));
    }

    /// Before: a revoked writer's objects were accepted up to `trusted_until_seq`, a number
    /// the signer itself chooses, so a revoked key could sign new objects with an old
    /// sequence. With an endorsement list, only the listed objects are accepted.
    #[test]
    fn a_revoked_writer_is_trusted_only_for_endorsed_objects_whatever_their_sequence() {
        let admin = Signer::random();
        let mut c = sample(&admin);
        let revoked = PublicKey::from_bytes([5; 32]);
        c.writers.push(WriterEntry {
            key: revoked,
            role: Role::Backup,
            label: "old".into(),
            scope: "*".into(),
            added_unix_ms: 0,
            grant_key: None,
            dedup_source: false,
        });
        c.revocations[0].endorsed = Some(vec![[1; 32], [7; 32]]);
        c.check_writer("o", &[7; 32], &revoked, 999, None).unwrap();
        assert!(matches!(
            c.check_writer("o", &[8; 32], &revoked, 1, None),
            Err(Error::Untrusted { .. })
        ));
        let obj = c.to_object(&admin).unwrap();
        let back = Config::from_object(&obj, &c.repo_id, &admin.public()).unwrap();
        assert_eq!(back, c);
        assert_ne!(back.trust_epoch(), sample(&admin).trust_epoch());
        // The list must be strictly increasing.
        c.revocations[0].endorsed = Some(vec![[7; 32], [1; 32]]);
        let e = Config::decode_body(&c.encode_body()).unwrap_err();
        assert!(e.to_string().contains("increasing"), "{e}");
    }

    #[test]
    fn unknown_keys_are_skipped() {
        let admin = Signer::random();
        let c = sample(&admin);
        let body = c.encode_body();
        // Rewrite the map header from 11 to 12 entries and append key 99 => "future".
        let mut b = body.clone();
        assert_eq!(b[0], 0xab);
        b[0] = 0xac;
        let mut e = Encoder::new(Vec::new());
        e.u8(99).unwrap().str("future").unwrap();
        b.extend_from_slice(&e.into_writer());
        assert_eq!(Config::decode_body(&b).unwrap(), c);
    }

    #[test]
    fn repeated_keys_and_low_order_data_keys_are_corrupt() {
        let admin = Signer::from_seed(&[1; 32]);
        let c = sample(&admin);
        let body = c.encode_body();
        // Duplicate the last entry (key 10, the admin key) and bump the map length.
        let mut b = body.clone();
        b[0] = 0xac;
        b.extend_from_slice(&body[body.len() - 35..]);
        assert!(matches!(
            Config::decode_body(&b),
            Err(Error::Corrupt { .. })
        ));
        let mut weak = c.clone();
        weak.data_public_keys = vec![(0, [0; 32])];
        let e = Config::decode_body(&weak.encode_body()).unwrap_err();
        assert!(e.to_string().contains("low-order"), "{e}");
    }

    #[test]
    fn grants_and_grant_keys_round_trip_and_bad_grants_are_corrupt() {
        let admin = Signer::from_seed(&[1; 32]);
        let mut c = sample(&admin);
        c.writers[0].grant_key = Some([7; 32]);
        c.grants.push(DataKeyGrant {
            generation: 1,
            recipient: [7; 32],
            wrapped: vec![3; crate::crypto::wrap::WRAP_LEN],
            keys: None,
        });
        c.grants.push(DataKeyGrant {
            generation: 2,
            recipient: [7; 32],
            wrapped: vec![4; crate::crypto::wrap::WRAP_LEN],
            keys: Some(vec![5; 80]),
        });
        c.rekeyed_generations = vec![2];
        assert_eq!(c.keyed_generation(1), 0);
        assert_eq!(c.keyed_generation(2), 2);
        assert_eq!(c.keyed_generation(7), 2);
        let obj = c.to_object(&admin).unwrap();
        assert_eq!(
            Config::from_object(&obj, &c.repo_id, &admin.public()).unwrap(),
            c
        );
        c.grants[0].wrapped.pop();
        let e = Config::decode_body(&c.encode_body()).unwrap_err();
        assert!(e.to_string().contains("grant"), "{e}");
    }

    /// Golden vector: the config body and its signed envelope are deterministic (Ed25519
    /// signatures are), so the whole object is pinned.
    #[test]
    fn golden_config_object() {
        let admin = Signer::from_seed(&[1; 32]);
        let c = sample(&admin);
        let obj = c.to_object(&admin).unwrap();
        assert_eq!(hex::encode(&obj), GOLDEN_CONFIG);
        assert_eq!(
            Config::from_object(&obj, &c.repo_id, &admin.public()).unwrap(),
            c
        );
    }

    const GOLDEN_CONFIG: &str = concat!(
        "4356434f4e464947020000008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801",
        "b40f6f5c030000000000000056010000ab0058200101010101010101010101010101010101010101",
        "010101010101010101010101010302831a000400001a001000001a004000000303041a0100000005",
        "877818666173746364632d76323032302d6b657965642d676561726c626c616b65332d6b65796564",
        "647a73746471786368616368613230706f6c79313330356678323535313967656432353531396861",
        "72676f6e326964060007818200582009090909090909090909090909090909090909090909090909",
        "090909090909090881a5005820040404040404040404040404040404040404040404040404040404",
        "0404040404010102666e6f64652d3103666e6f64652d31041b0000018bcfe568000981a300582005",
        "05050505050505050505050505050505050505050505050505050505050505010a021b0000018bcf",
        "e568010a58208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c5155",
        "1f6a2f347fd1f1a1324560228c9d055c85938d391a7c6b7476583df7a41b792bbcbfb79628f5c935",
        "912290191ee85e174ad175ded517a1eb73d1449b6b07",
    );
}
