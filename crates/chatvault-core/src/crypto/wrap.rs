//! Sealing a random per-object key to the repository's X25519 data public key.
//!
//! Layout (108 bytes): `generation u32 LE ‖ ephemeral public key (32) ‖ nonce (24) ‖
//! sealed key (32 + 16)`. The key-encryption key is
//! `derive_key(context, dh ‖ eph_pk ‖ data_pk ‖ repo_id ‖ object_kind ‖ generation LE ‖
//! auth_key)`. Invariants: a non-contributory shared secret (low-order point) is refused on
//! both sides; mixing in `auth_key` means that storage access plus the public key cannot
//! produce a wrap a reader accepts.

use x25519_dalek::{PublicKey, StaticSecret};

use super::aead::{self, OpenFailed};
use super::{Key32, derive_key, random_array};
use crate::id::RepoId;

/// Length of a key wrap in bytes.
pub(crate) const WRAP_LEN: usize = 4 + 32 + aead::NONCE_LEN + 32 + aead::TAG_LEN;

/// Which object a wrap belongs to; bound into the key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ObjectKind {
    Pack = 1,
    Snapshot = 2,
    Grant = 3,
}

/// Everything besides the keys that a wrap is bound to.
pub(crate) struct WrapBinding<'a> {
    pub context: &'static str,
    pub repo_id: &'a RepoId,
    pub kind: ObjectKind,
    pub auth_key: &'a Key32,
}

fn kek(
    binding: &WrapBinding<'_>,
    dh: &[u8; 32],
    eph_pk: &[u8; 32],
    data_pk: &[u8; 32],
    generation: u32,
) -> Key32 {
    derive_key(
        binding.context,
        &[
            dh,
            eph_pk,
            data_pk,
            binding.repo_id.as_bytes(),
            &[binding.kind as u8],
            &generation.to_le_bytes(),
            binding.auth_key.expose(),
        ],
    )
}

/// A data public key that is a low-order point: every shared secret with it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WeakPublicKey;

/// Whether `pk` yields contributory shared secrets (is not a low-order point).
pub(crate) fn is_strong_public_key(pk: &[u8; 32]) -> bool {
    StaticSecret::from([0x5a; 32])
        .diffie_hellman(&PublicKey::from(*pk))
        .was_contributory()
}

/// Wraps `key` to `data_pk` of `generation`. A low-order `data_pk` is refused.
pub(crate) fn wrap(
    key: &Key32,
    data_pk: &[u8; 32],
    generation: u32,
    binding: &WrapBinding<'_>,
) -> Result<[u8; WRAP_LEN], WeakPublicKey> {
    let eph = StaticSecret::from(random_array::<32>());
    let eph_pk = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*data_pk));
    if !shared.was_contributory() {
        return Err(WeakPublicKey);
    }
    let kek = kek(binding, shared.as_bytes(), &eph_pk, data_pk, generation);
    let mut out = Vec::with_capacity(WRAP_LEN);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&eph_pk);
    aead::seal_into(&kek, binding.context.as_bytes(), key.expose(), &mut out);
    let mut arr = [0u8; WRAP_LEN];
    arr.copy_from_slice(&out);
    Ok(arr)
}

/// The key generation a wrap was made for.
pub(crate) fn generation_of(wrap: &[u8; WRAP_LEN]) -> u32 {
    u32::from_le_bytes([wrap[0], wrap[1], wrap[2], wrap[3]])
}

/// Unwraps with the data secret key of the wrap's generation.
pub(crate) fn unwrap(
    wrap: &[u8; WRAP_LEN],
    data_sk: &StaticSecret,
    binding: &WrapBinding<'_>,
) -> Result<Key32, OpenFailed> {
    let generation = generation_of(wrap);
    let mut eph_pk = [0u8; 32];
    eph_pk.copy_from_slice(&wrap[4..36]);
    let data_pk = PublicKey::from(data_sk).to_bytes();
    let shared = data_sk.diffie_hellman(&PublicKey::from(eph_pk));
    if !shared.was_contributory() {
        return Err(OpenFailed);
    }
    let kek = kek(binding, shared.as_bytes(), &eph_pk, &data_pk, generation);
    let mut plain = aead::open(&kek, binding.context.as_bytes(), &wrap[36..])?;
    let key = <[u8; 32]>::try_from(plain.as_slice()).map_err(|_| OpenFailed);
    zeroize::Zeroize::zeroize(&mut plain);
    key.map(Key32::from_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::context;

    fn binding<'a>(repo: &'a RepoId, auth: &'a Key32) -> WrapBinding<'a> {
        WrapBinding {
            context: context::PACK_KEY_WRAP,
            repo_id: repo,
            kind: ObjectKind::Pack,
            auth_key: auth,
        }
    }

    #[test]
    fn wrap_unwrap_and_bindings() {
        let sk = StaticSecret::from(random_array::<32>());
        let pk = PublicKey::from(&sk).to_bytes();
        let repo = RepoId::from_bytes([7; 32]);
        let auth = Key32::random();
        let key = Key32::random();
        let w = wrap(&key, &pk, 3, &binding(&repo, &auth)).unwrap();
        assert_eq!(generation_of(&w), 3);
        let back = unwrap(&w, &sk, &binding(&repo, &auth)).unwrap();
        assert_eq!(back.expose(), key.expose());

        // Another auth key (someone with storage access and the public key only) fails.
        let forged_auth = Key32::random();
        assert!(unwrap(&w, &sk, &binding(&repo, &forged_auth)).is_err());
        // Another repository, object kind or generation fails.
        let other_repo = RepoId::from_bytes([8; 32]);
        assert!(unwrap(&w, &sk, &binding(&other_repo, &auth)).is_err());
        let mut b = binding(&repo, &auth);
        b.kind = ObjectKind::Snapshot;
        assert!(unwrap(&w, &sk, &b).is_err());
        let mut w2 = w;
        w2[0] ^= 1;
        assert!(unwrap(&w2, &sk, &binding(&repo, &auth)).is_err());
    }

    #[test]
    fn low_order_data_key_is_refused_not_looped_on() {
        let repo = RepoId::from_bytes([7; 32]);
        let auth = Key32::random();
        assert!(!is_strong_public_key(&[0; 32]));
        assert!(is_strong_public_key(
            &PublicKey::from(&StaticSecret::from([3u8; 32])).to_bytes()
        ));
        assert_eq!(
            wrap(&Key32::random(), &[0; 32], 0, &binding(&repo, &auth)),
            Err(WeakPublicKey)
        );
    }

    #[test]
    fn low_order_ephemeral_is_refused() {
        let sk = StaticSecret::from(random_array::<32>());
        let repo = RepoId::from_bytes([7; 32]);
        let auth = Key32::random();
        let mut w = [0u8; WRAP_LEN];
        // The all-zero point is of low order: the shared secret is all zeroes.
        w[0] = 0;
        assert!(unwrap(&w, &sk, &binding(&repo, &auth)).is_err());
    }
}
