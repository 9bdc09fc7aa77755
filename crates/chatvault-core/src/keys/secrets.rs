//! The repository secrets a key slot wraps, and their fixed-width plaintext encoding.
//!
//! Layout (inside the slot's AEAD, little-endian): `version u16 ‖ role u8 ‖ repo_id (32) ‖
//! id_key (32) ‖ chunker_key (32) ‖ index_key (32) ‖ auth_key (32) ‖ signing seed (32) ‖
//! admin public key (32) ‖ has_admin u8 ‖ [admin seed (32)] ‖ generations u32 ‖
//! generations × (generation u32 ‖ data public key (32) ‖ has_secret u8 ‖ [secret (32)]) ‖
//! grant secret (32)`, then, in version 2 only, `count u32 ‖ count × (generation u32 ‖
//! auth_key (32) ‖ index_key (32))`: the `auth_key` and `index_key` of the generations that
//! replaced them (a rotation after a revocation; the keys above are generation 0's).
//! Version 1 is written while there are none. The grant key is the slot's own X25519 key:
//! an admin who rotates keys wraps the new generation's secrets to it (config key 11).
//! Invariant: decoding refuses a secret set that does not match its role (a backup slot
//! with a data secret key, an admin slot without the admin key).

use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::Role;
use crate::crypto::Key32;
use crate::crypto::sign::{PublicKey, Signer};
use crate::error::Result;
use crate::format::ByteReader;
use crate::id::RepoId;

/// One generation of the X25519 data key pair.
pub(crate) struct DataKeyPair {
    pub generation: u32,
    pub public: [u8; 32],
    /// Present for `full` and `admin` roles only.
    pub secret: Option<StaticSecret>,
}

impl DataKeyPair {
    pub fn generate(generation: u32) -> Self {
        let secret = StaticSecret::from(crate::crypto::random_array::<32>());
        Self {
            generation,
            public: XPublicKey::from(&secret).to_bytes(),
            secret: Some(secret),
        }
    }

    fn duplicate(&self, with_secret: bool) -> Self {
        Self {
            generation: self.generation,
            public: self.public,
            secret: if with_secret {
                self.secret
                    .as_ref()
                    .map(|s| StaticSecret::from(s.to_bytes()))
            } else {
                None
            },
        }
    }
}

/// The `auth_key` and `index_key` that a key rotation introduced at `generation`. (Older
/// rotations changed only the data key pair; generation 0's keys are in [`Secrets`].)
pub(crate) struct GenerationKeys {
    pub generation: u32,
    pub auth_key: Key32,
    pub index_key: Key32,
}

impl GenerationKeys {
    pub fn generate(generation: u32) -> Self {
        Self {
            generation,
            auth_key: Key32::random(),
            index_key: Key32::random(),
        }
    }

    pub fn duplicate(&self) -> Self {
        Self {
            generation: self.generation,
            auth_key: self.auth_key.duplicate(),
            index_key: self.index_key.duplicate(),
        }
    }
}

/// The secrets an opened slot holds.
pub(crate) struct Secrets {
    pub repo_id: RepoId,
    pub role: Role,
    pub id_key: Key32,
    pub chunker_key: Key32,
    pub index_key: Key32,
    pub auth_key: Key32,
    pub signer: Signer,
    pub admin_pk: PublicKey,
    pub admin: Option<Signer>,
    pub data_keys: Vec<DataKeyPair>,
    /// This slot's X25519 key for receiving rotated data keys.
    pub grant: StaticSecret,
    /// The `auth_key` and `index_key` of later generations, by generation.
    pub rotated: Vec<GenerationKeys>,
}

const SECRETS_VERSION: u16 = 1;
/// The version that carries rotated `auth_key`s and `index_key`s.
const SECRETS_VERSION_ROTATED: u16 = 2;

impl Secrets {
    /// Fresh, independent secrets for a new repository, as held by its first admin slot.
    pub fn generate(repo_id: RepoId) -> Self {
        let admin = Signer::random();
        Self {
            repo_id,
            role: Role::Admin,
            id_key: Key32::random(),
            chunker_key: Key32::random(),
            index_key: Key32::random(),
            auth_key: Key32::random(),
            signer: Signer::random(),
            admin_pk: admin.public(),
            admin: Some(admin),
            data_keys: vec![DataKeyPair::generate(0)],
            grant: StaticSecret::from(crate::crypto::random_array::<32>()),
            rotated: Vec::new(),
        }
    }

    /// Adds a rotated generation's `auth_key` and `index_key`, unless present; keeps the
    /// list in generation order.
    pub fn add_rotated(&mut self, keys: GenerationKeys) {
        if let Err(at) = self
            .rotated
            .binary_search_by_key(&keys.generation, |g| g.generation)
        {
            self.rotated.insert(at, keys);
        }
    }

    /// The `auth_key` and `index_key` introduced at `keyed` (0: the original pair), if
    /// this slot holds them.
    pub fn generation_keys(&self, keyed: u32) -> Option<(&Key32, &Key32)> {
        if keyed == 0 {
            return Some((&self.auth_key, &self.index_key));
        }
        self.rotated
            .iter()
            .find(|g| g.generation == keyed)
            .map(|g| (&g.auth_key, &g.index_key))
    }

    /// The secrets a new slot of `role` receives: the shared keys, a fresh signing key,
    /// and only what the role may hold. Fails if this slot does not hold what `role`
    /// needs (a full slot cannot create an admin slot).
    pub fn for_new_slot(&self, role: Role) -> Option<Self> {
        if role > self.role {
            return None;
        }
        Some(Self {
            repo_id: self.repo_id,
            role,
            id_key: self.id_key.duplicate(),
            chunker_key: self.chunker_key.duplicate(),
            index_key: self.index_key.duplicate(),
            auth_key: self.auth_key.duplicate(),
            signer: Signer::random(),
            admin_pk: self.admin_pk,
            admin: if role.is_admin() {
                self.admin.as_ref().map(|a| Signer::from_seed(a.seed()))
            } else {
                None
            },
            data_keys: self
                .data_keys
                .iter()
                .map(|d| d.duplicate(role.can_read()))
                .collect(),
            grant: StaticSecret::from(crate::crypto::random_array::<32>()),
            rotated: self.rotated.iter().map(GenerationKeys::duplicate).collect(),
        })
    }

    /// The public half of this slot's grant key.
    pub fn grant_public(&self) -> [u8; 32] {
        XPublicKey::from(&self.grant).to_bytes()
    }

    /// The newest data key generation.
    pub fn current_data_key(&self) -> &DataKeyPair {
        // Invariant (checked in decode and generate): at least one generation exists.
        self.data_keys
            .iter()
            .max_by_key(|d| d.generation)
            .unwrap_or_else(|| unreachable!("secrets without a data key"))
    }

    /// The data secret key of a generation, if this role holds it.
    pub fn data_secret(&self, generation: u32) -> Option<&StaticSecret> {
        self.data_keys
            .iter()
            .find(|d| d.generation == generation)
            .and_then(|d| d.secret.as_ref())
    }

    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(512));
        let version = if self.rotated.is_empty() {
            SECRETS_VERSION
        } else {
            SECRETS_VERSION_ROTATED
        };
        out.extend_from_slice(&version.to_le_bytes());
        out.push(self.role.to_u8());
        out.extend_from_slice(self.repo_id.as_bytes());
        for k in [
            &self.id_key,
            &self.chunker_key,
            &self.index_key,
            &self.auth_key,
        ] {
            out.extend_from_slice(k.expose());
        }
        out.extend_from_slice(self.signer.seed());
        out.extend_from_slice(self.admin_pk.as_bytes());
        match &self.admin {
            Some(a) => {
                out.push(1);
                out.extend_from_slice(a.seed());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.data_keys.len() as u32).to_le_bytes());
        for d in &self.data_keys {
            out.extend_from_slice(&d.generation.to_le_bytes());
            out.extend_from_slice(&d.public);
            match &d.secret {
                Some(s) => {
                    out.push(1);
                    out.extend_from_slice(&s.to_bytes());
                }
                None => out.push(0),
            }
        }
        out.extend_from_slice(&self.grant.to_bytes());
        if !self.rotated.is_empty() {
            out.extend_from_slice(&(self.rotated.len() as u32).to_le_bytes());
            for g in &self.rotated {
                out.extend_from_slice(&g.generation.to_le_bytes());
                out.extend_from_slice(g.auth_key.expose());
                out.extend_from_slice(g.index_key.expose());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8], object: &str) -> Result<Self> {
        let mut r = ByteReader::new(bytes, object);
        let version = r.u16()?;
        if version != SECRETS_VERSION && version != SECRETS_VERSION_ROTATED {
            return Err(r.corrupt("unknown secrets version"));
        }
        let role = Role::from_u8(r.u8()?).ok_or_else(|| r.corrupt("unknown role"))?;
        let repo_id = RepoId::from_bytes(r.array()?);
        let mut key = || -> Result<Key32> { Ok(Key32::from_bytes(r.array()?)) };
        let (id_key, chunker_key, index_key, auth_key) = (key()?, key()?, key()?, key()?);
        let signer = Signer::from_seed(&Zeroizing::new(r.array::<32>()?));
        let admin_pk = PublicKey::from_bytes(r.array()?);
        let admin = match r.u8()? {
            0 => None,
            1 => Some(Signer::from_seed(&Zeroizing::new(r.array::<32>()?))),
            _ => return Err(r.corrupt("bad admin flag")),
        };
        let n = r.u32()? as usize;
        if n == 0 || n > r.remaining().saturating_sub(32) / 37 {
            return Err(r.corrupt("bad data key count"));
        }
        let mut data_keys = Vec::with_capacity(n);
        for _ in 0..n {
            let generation = r.u32()?;
            let public = r.array()?;
            let secret = match r.u8()? {
                0 => None,
                1 => Some(StaticSecret::from(*Zeroizing::new(r.array::<32>()?))),
                _ => return Err(r.corrupt("bad data secret flag")),
            };
            data_keys.push(DataKeyPair {
                generation,
                public,
                secret,
            });
        }
        let grant = StaticSecret::from(*Zeroizing::new(r.array::<32>()?));
        let mut rotated = Vec::new();
        if version == SECRETS_VERSION_ROTATED {
            let n = r.u32()? as usize;
            if n == 0 || n > r.remaining() / 68 {
                return Err(r.corrupt("bad rotated key count"));
            }
            for _ in 0..n {
                let generation = r.u32()?;
                if rotated
                    .last()
                    .is_some_and(|g: &GenerationKeys| g.generation >= generation)
                {
                    return Err(r.corrupt("rotated keys are not in generation order"));
                }
                rotated.push(GenerationKeys {
                    generation,
                    auth_key: Key32::from_bytes(r.array()?),
                    index_key: Key32::from_bytes(r.array()?),
                });
            }
        }
        r.finish()?;
        let s = Self {
            repo_id,
            role,
            id_key,
            chunker_key,
            index_key,
            auth_key,
            signer,
            admin_pk,
            admin,
            data_keys,
            grant,
            rotated,
        };
        s.check_role(object)?;
        Ok(s)
    }

    fn check_role(&self, object: &str) -> Result<()> {
        let has_secrets = self.data_keys.iter().all(|d| d.secret.is_some());
        let no_secrets = self.data_keys.iter().all(|d| d.secret.is_none());
        let ok = match self.role {
            Role::Backup => no_secrets && self.admin.is_none(),
            Role::Full => has_secrets && self.admin.is_none(),
            Role::Admin => {
                has_secrets && self.admin.as_ref().map(|a| a.public()) == Some(self.admin_pk)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(crate::error::Error::corrupt(
                object,
                "secrets do not match the slot's role",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_per_role_and_role_limits() {
        let root = Secrets::generate(RepoId::from_bytes([9; 32]));
        for role in [Role::Backup, Role::Full, Role::Admin] {
            let s = root.for_new_slot(role).unwrap();
            let back = Secrets::decode(&s.encode(), "k").unwrap();
            assert_eq!(back.role, role);
            assert_eq!(back.id_key.expose(), root.id_key.expose());
            assert_eq!(back.admin_pk, root.admin_pk);
            assert_ne!(
                back.signer.public(),
                root.signer.public(),
                "fresh signing key"
            );
            assert_eq!(back.data_secret(0).is_some(), role.can_read());
            assert_eq!(back.admin.is_some(), role.is_admin());
            assert_eq!(back.grant_public(), s.grant_public());
            assert_ne!(
                s.grant_public(),
                root.grant_public(),
                "fresh grant key per slot"
            );
        }
        let full = root.for_new_slot(Role::Full).unwrap();
        assert!(full.for_new_slot(Role::Admin).is_none());
        assert!(full.for_new_slot(Role::Backup).is_some());
    }

    #[test]
    fn keys_are_independent() {
        let s = Secrets::generate(RepoId::from_bytes([1; 32]));
        let keys = [
            s.id_key.expose(),
            s.chunker_key.expose(),
            s.index_key.expose(),
            s.auth_key.expose(),
        ];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
    }

    #[test]
    fn rotated_keys_round_trip_and_are_handed_to_new_slots() {
        let mut root = Secrets::generate(RepoId::from_bytes([9; 32]));
        assert_eq!(root.encode()[..2], SECRETS_VERSION.to_le_bytes());
        root.rotated.push(GenerationKeys::generate(2));
        root.rotated.push(GenerationKeys::generate(5));
        let enc = root.encode();
        assert_eq!(enc[..2], SECRETS_VERSION_ROTATED.to_le_bytes());
        let back = Secrets::decode(&enc, "k").unwrap();
        for g in [0, 2, 5] {
            let (a, i) = back.generation_keys(g).unwrap();
            let (ra, ri) = root.generation_keys(g).unwrap();
            assert_eq!((a.expose(), i.expose()), (ra.expose(), ri.expose()));
        }
        assert!(back.generation_keys(3).is_none());
        let node = root.for_new_slot(Role::Backup).unwrap();
        assert!(node.generation_keys(5).is_some());
        for n in 0..enc.len() {
            assert!(Secrets::decode(&enc[..n], "k").is_err());
        }
        // Out of order generations are corrupt.
        root.rotated.swap(0, 1);
        assert!(Secrets::decode(&root.encode(), "k").is_err());
    }

    #[test]
    fn mismatched_role_and_truncation_are_corrupt() {
        let root = Secrets::generate(RepoId::from_bytes([9; 32]));
        let mut enc = root.for_new_slot(Role::Full).unwrap().encode().to_vec();
        enc[2] = Role::Backup.to_u8(); // claims backup but carries the data secret key
        assert!(Secrets::decode(&enc, "k").is_err());
        let enc = root.encode();
        for n in 0..enc.len() {
            assert!(Secrets::decode(&enc[..n], "k").is_err());
        }
    }
}
