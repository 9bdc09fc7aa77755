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

use minicbor::{Decoder, Encoder};

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
}

/// A rotated data secret key, wrapped to one reading slot's grant key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyGrant {
    /// The data key generation.
    pub generation: u32,
    /// The grant public key it is wrapped to.
    pub recipient: [u8; 32],
    /// The key wrap (docs/FORMAT.md, "Key wrap"), context `data-key-grant`.
    pub wrapped: Vec<u8>,
}

/// A revoked writer: its objects with a sequence above `trusted_until_seq` are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked key.
    pub key: PublicKey,
    /// The last writer sequence still trusted (objects written before the compromise).
    pub trusted_until_seq: u64,
    /// When it was revoked.
    pub revoked_unix_ms: i64,
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
    /// Data secret keys of rotated generations, wrapped to reading slots.
    pub grants: Vec<DataKeyGrant>,
}

const OBJECT: &str = "config";

fn enc_err<E: std::fmt::Display>(e: E) -> Error {
    // Encoding into a Vec cannot fail; keep the conversion total anyway.
    Error::invalid("config encoding", e.to_string())
}

fn dec_err(e: minicbor::decode::Error) -> Error {
    Error::corrupt(OBJECT, format!("config body does not decode: {e}"))
}

fn bytes32(d: &mut Decoder<'_>) -> Result<[u8; 32]> {
    d.bytes()
        .map_err(dec_err)?
        .try_into()
        .map_err(|_| Error::corrupt(OBJECT, "expected 32 bytes"))
}

/// Reads a definite-length array header, refusing counts the input cannot hold.
fn array_len(d: &mut Decoder<'_>) -> Result<usize> {
    let n = d
        .array()
        .map_err(dec_err)?
        .ok_or_else(|| Error::corrupt(OBJECT, "indefinite array"))?;
    if n as usize > d.input().len() - d.position() {
        return Err(Error::corrupt(OBJECT, "array longer than the object"));
    }
    Ok(n as usize)
}

fn map_len(d: &mut Decoder<'_>) -> Result<u64> {
    d.map()
        .map_err(dec_err)?
        .ok_or_else(|| Error::corrupt(OBJECT, "indefinite map"))
}

impl Config {
    /// Whether `key` may sign an object with writer sequence `seq` for `host`.
    pub(crate) fn check_writer(
        &self,
        object: &str,
        key: &PublicKey,
        seq: u64,
        host: Option<&str>,
    ) -> Result<&WriterEntry> {
        let w =
            self.writers.iter().find(|w| w.key == *key).ok_or_else(|| {
                Error::untrusted(object, format!("signed by unknown writer {key}"))
            })?;
        if let Some(r) = self.revocations.iter().find(|r| r.key == *key)
            && seq > r.trusted_until_seq
        {
            return Err(Error::untrusted(
                object,
                format!("signed by revoked writer {key}"),
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

    /// The data public key of the current generation.
    pub(crate) fn current_data_key(&self) -> Result<[u8; 32]> {
        self.data_public_keys
            .iter()
            .find(|(g, _)| *g == self.key_generation)
            .map(|(_, k)| *k)
            .ok_or_else(|| Error::corrupt(OBJECT, "no data key for the current generation"))
    }

    pub(crate) fn encode_body(&self) -> Result<Vec<u8>> {
        let mut e = Encoder::new(Vec::new());
        e.map(if self.grants.is_empty() { 11 } else { 12 })
            .map_err(enc_err)?;
        e.u8(0)
            .and_then(|e| e.bytes(self.repo_id.as_bytes()))
            .map_err(enc_err)?;
        e.u8(1)
            .and_then(|e| e.u64(self.sequence))
            .map_err(enc_err)?;
        e.u8(2)
            .and_then(|e| e.array(3))
            .and_then(|e| e.u32(self.chunker.min_size))
            .and_then(|e| e.u32(self.chunker.avg_size))
            .and_then(|e| e.u32(self.chunker.max_size))
            .map_err(enc_err)?;
        e.u8(3)
            .and_then(|e| e.i32(self.compression_level))
            .map_err(enc_err)?;
        e.u8(4)
            .and_then(|e| e.u32(self.pack_size))
            .map_err(enc_err)?;
        e.u8(5)
            .and_then(|e| e.array(ALGORITHMS.len() as u64))
            .map_err(enc_err)?;
        for a in ALGORITHMS {
            e.str(a).map_err(enc_err)?;
        }
        e.u8(6)
            .and_then(|e| e.u32(self.key_generation))
            .map_err(enc_err)?;
        e.u8(7)
            .and_then(|e| e.array(self.data_public_keys.len() as u64))
            .map_err(enc_err)?;
        for (g, k) in &self.data_public_keys {
            e.array(2)
                .and_then(|e| e.u32(*g))
                .and_then(|e| e.bytes(k))
                .map_err(enc_err)?;
        }
        e.u8(8)
            .and_then(|e| e.array(self.writers.len() as u64))
            .map_err(enc_err)?;
        for w in &self.writers {
            e.map(if w.grant_key.is_some() { 6 } else { 5 })
                .and_then(|e| e.u8(0))
                .and_then(|e| e.bytes(w.key.as_bytes()))
                .and_then(|e| e.u8(1))
                .and_then(|e| e.u8(w.role.to_u8()))
                .and_then(|e| e.u8(2))
                .and_then(|e| e.str(&w.label))
                .and_then(|e| e.u8(3))
                .and_then(|e| e.str(&w.scope))
                .and_then(|e| e.u8(4))
                .and_then(|e| e.i64(w.added_unix_ms))
                .map_err(enc_err)?;
            if let Some(g) = &w.grant_key {
                e.u8(5).and_then(|e| e.bytes(g)).map_err(enc_err)?;
            }
        }
        e.u8(9)
            .and_then(|e| e.array(self.revocations.len() as u64))
            .map_err(enc_err)?;
        for r in &self.revocations {
            e.map(3)
                .and_then(|e| e.u8(0))
                .and_then(|e| e.bytes(r.key.as_bytes()))
                .and_then(|e| e.u8(1))
                .and_then(|e| e.u64(r.trusted_until_seq))
                .and_then(|e| e.u8(2))
                .and_then(|e| e.i64(r.revoked_unix_ms))
                .map_err(enc_err)?;
        }
        e.u8(10)
            .and_then(|e| e.bytes(self.admin_key.as_bytes()))
            .map_err(enc_err)?;
        if !self.grants.is_empty() {
            e.u8(11)
                .and_then(|e| e.array(self.grants.len() as u64))
                .map_err(enc_err)?;
            for g in &self.grants {
                e.map(3)
                    .and_then(|e| e.u8(0))
                    .and_then(|e| e.u32(g.generation))
                    .and_then(|e| e.u8(1))
                    .and_then(|e| e.bytes(&g.recipient))
                    .and_then(|e| e.u8(2))
                    .and_then(|e| e.bytes(&g.wrapped))
                    .map_err(enc_err)?;
            }
        }
        Ok(e.into_writer())
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Self> {
        let mut d = Decoder::new(body);
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
        };
        let mut seen = 0u32;
        let mut last: Option<u32> = None;
        for _ in 0..map_len(&mut d)? {
            let key = d.u32().map_err(dec_err)?;
            // Canonical like every other map: keys strictly ascending, none repeated.
            if last.is_some_and(|l| key <= l) {
                return Err(Error::corrupt(OBJECT, "map keys out of order or repeated"));
            }
            last = Some(key);
            if key < 32 {
                seen |= 1 << key;
            }
            match key {
                0 => c.repo_id = RepoId::from_bytes(bytes32(&mut d)?),
                1 => c.sequence = d.u64().map_err(dec_err)?,
                2 => {
                    if array_len(&mut d)? != 3 {
                        return Err(Error::corrupt(OBJECT, "chunker parameters"));
                    }
                    c.chunker = ChunkerParams {
                        min_size: d.u32().map_err(dec_err)?,
                        avg_size: d.u32().map_err(dec_err)?,
                        max_size: d.u32().map_err(dec_err)?,
                    };
                }
                3 => c.compression_level = d.i32().map_err(dec_err)?,
                4 => c.pack_size = d.u32().map_err(dec_err)?,
                5 => {
                    let n = array_len(&mut d)?;
                    let mut algs = Vec::with_capacity(n);
                    for _ in 0..n {
                        algs.push(d.str().map_err(dec_err)?.to_owned());
                    }
                    if algs != ALGORITHMS {
                        return Err(Error::UnsupportedFormat {
                            object: OBJECT.into(),
                            found: crate::FORMAT_VERSION,
                            supported: crate::FORMAT_VERSION,
                        });
                    }
                }
                6 => c.key_generation = d.u32().map_err(dec_err)?,
                7 => {
                    for _ in 0..array_len(&mut d)? {
                        if array_len(&mut d)? != 2 {
                            return Err(Error::corrupt(OBJECT, "data key entry"));
                        }
                        let g = d.u32().map_err(dec_err)?;
                        let pk = bytes32(&mut d)?;
                        if !crate::crypto::wrap::is_strong_public_key(&pk) {
                            return Err(Error::corrupt(
                                OBJECT,
                                "a data public key is a low-order point",
                            ));
                        }
                        c.data_public_keys.push((g, pk));
                    }
                }
                8 => {
                    for _ in 0..array_len(&mut d)? {
                        c.writers.push(decode_writer(&mut d)?);
                    }
                }
                9 => {
                    for _ in 0..array_len(&mut d)? {
                        c.revocations.push(decode_revocation(&mut d)?);
                    }
                }
                10 => c.admin_key = PublicKey::from_bytes(bytes32(&mut d)?),
                11 => {
                    for _ in 0..array_len(&mut d)? {
                        c.grants.push(decode_grant(&mut d)?);
                    }
                }
                _ => d.skip().map_err(dec_err)?,
            }
        }
        if d.position() != body.len() {
            return Err(Error::corrupt(OBJECT, "trailing bytes"));
        }
        if seen & 0x7ff != 0x7ff {
            return Err(Error::corrupt(OBJECT, "missing fields"));
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
            &self.encode_body()?,
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

fn decode_writer(d: &mut Decoder<'_>) -> Result<WriterEntry> {
    let mut w = WriterEntry {
        key: PublicKey::from_bytes([0; 32]),
        role: Role::Backup,
        label: String::new(),
        scope: "*".into(),
        added_unix_ms: 0,
        grant_key: None,
    };
    for _ in 0..map_len(d)? {
        match d.u32().map_err(dec_err)? {
            0 => w.key = PublicKey::from_bytes(bytes32(d)?),
            1 => {
                w.role = Role::from_u8(d.u8().map_err(dec_err)?)
                    .ok_or_else(|| Error::corrupt(OBJECT, "unknown writer role"))?
            }
            2 => w.label = d.str().map_err(dec_err)?.to_owned(),
            3 => w.scope = d.str().map_err(dec_err)?.to_owned(),
            4 => w.added_unix_ms = d.i64().map_err(dec_err)?,
            5 => w.grant_key = Some(bytes32(d)?),
            _ => d.skip().map_err(dec_err)?,
        }
    }
    Ok(w)
}

fn decode_grant(d: &mut Decoder<'_>) -> Result<DataKeyGrant> {
    let mut g = DataKeyGrant {
        generation: 0,
        recipient: [0; 32],
        wrapped: Vec::new(),
    };
    for _ in 0..map_len(d)? {
        match d.u32().map_err(dec_err)? {
            0 => g.generation = d.u32().map_err(dec_err)?,
            1 => g.recipient = bytes32(d)?,
            2 => g.wrapped = d.bytes().map_err(dec_err)?.to_vec(),
            _ => d.skip().map_err(dec_err)?,
        }
    }
    if g.wrapped.len() != crate::crypto::wrap::WRAP_LEN {
        return Err(Error::corrupt(OBJECT, "data key grant of the wrong length"));
    }
    Ok(g)
}

fn decode_revocation(d: &mut Decoder<'_>) -> Result<Revocation> {
    let mut r = Revocation {
        key: PublicKey::from_bytes([0; 32]),
        trusted_until_seq: 0,
        revoked_unix_ms: 0,
    };
    for _ in 0..map_len(d)? {
        match d.u32().map_err(dec_err)? {
            0 => r.key = PublicKey::from_bytes(bytes32(d)?),
            1 => r.trusted_until_seq = d.u64().map_err(dec_err)?,
            2 => r.revoked_unix_ms = d.i64().map_err(dec_err)?,
            _ => d.skip().map_err(dec_err)?,
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            }],
            revocations: vec![Revocation {
                key: PublicKey::from_bytes([5; 32]),
                trusted_until_seq: 10,
                revoked_unix_ms: 1_700_000_000_001,
            }],
            admin_key: admin.public(),
            grants: Vec::new(),
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
        c.check_writer("o", &w, 100, Some("node-1")).unwrap();
        assert!(
            c.check_writer("o", &w, 100, Some("node-2")).is_err(),
            "out of scope"
        );
        assert!(
            c.check_writer("o", &PublicKey::from_bytes([6; 32]), 1, None)
                .is_err()
        );
        c.writers.push(WriterEntry {
            key: PublicKey::from_bytes([5; 32]),
            role: Role::Full,
            label: "old".into(),
            scope: "*".into(),
            added_unix_ms: 0,
            grant_key: None,
        });
        let revoked = PublicKey::from_bytes([5; 32]);
        c.check_writer("o", &revoked, 10, None).unwrap();
        assert!(matches!(
            c.check_writer("o", &revoked, 11, None),
            Err(Error::Untrusted { .. })
        ));
    }

    #[test]
    fn unknown_keys_are_skipped() {
        let admin = Signer::random();
        let c = sample(&admin);
        let body = c.encode_body().unwrap();
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
        let body = c.encode_body().unwrap();
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
        let e = Config::decode_body(&weak.encode_body().unwrap()).unwrap_err();
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
        });
        let obj = c.to_object(&admin).unwrap();
        assert_eq!(
            Config::from_object(&obj, &c.repo_id, &admin.public()).unwrap(),
            c
        );
        c.grants[0].wrapped.pop();
        let e = Config::decode_body(&c.encode_body().unwrap()).unwrap_err();
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
        "4356434f4e464947010000008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801",
        "b40f6f5c030000000000000056010000ab0058200101010101010101010101010101010101010101",
        "010101010101010101010101010302831a000400001a001000001a004000000303041a0100000005",
        "877818666173746364632d76323032302d6b657965642d676561726c626c616b65332d6b65796564",
        "647a73746471786368616368613230706f6c79313330356678323535313967656432353531396861",
        "72676f6e326964060007818200582009090909090909090909090909090909090909090909090909",
        "090909090909090881a5005820040404040404040404040404040404040404040404040404040404",
        "0404040404010102666e6f64652d3103666e6f64652d31041b0000018bcfe568000981a300582005",
        "05050505050505050505050505050505050505050505050505050505050505010a021b0000018bcf",
        "e568010a58208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8452",
        "91fa30ee13cb65750d4d78f87a4432038273a2c944cfab8f9ec018303a79deea43d897900b5ebad1",
        "a78003c212e9c31c663ed0818e07939e7200b08c170d",
    );
}
