//! Cryptographic building blocks: secret keys, AEAD sealing, X25519 key wrapping and
//! Ed25519 signatures.
//!
//! Invariants: secret material lives only in [`Key32`] (and the dalek key types), which are
//! zeroized on drop and implement neither `Debug`, `Clone`-by-accident-in-logs, `Copy` nor
//! serialization; every key derivation uses its own fixed context string from [`context`].

pub(crate) mod aead;
pub(crate) mod sign;
pub(crate) mod wrap;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Fixed BLAKE3 `derive_key` context strings, one per purpose. Changing any of them changes
/// the format (see docs/FORMAT.md, "Key derivations").
pub(crate) mod context {
    /// KEK wrapping a pack's data key to the repository's X25519 data key.
    pub const PACK_KEY_WRAP: &str = "chatvault 2026-11 pack-key-wrap v1";
    /// KEK wrapping a rotated data secret key to a reading slot's grant key.
    pub const DATA_KEY_GRANT: &str = "chatvault 2026-11 data-key-grant v1";
    /// Associated-data prefix of the keys a grant seals (a rotated generation's data secret
    /// key, `auth_key` and `index_key`).
    pub const GRANT_KEYS: &str = "chatvault 2026-12 grant-keys v1";
    /// KEK wrapping a snapshot record's content key to the data key.
    pub const SNAPSHOT_KEY_WRAP: &str = "chatvault 2026-11 snapshot-key-wrap v1";
    /// The chunker's 256-entry gear table from `chunker_key`.
    pub const GEAR_TABLE: &str = "chatvault 2026-11 fastcdc-gear-table v1";
    /// A raw key file's key-encryption key for a key slot.
    pub const KEYFILE_KEK: &str = "chatvault 2026-11 keyfile-kek v1";
    /// A pkcs11 or command key slot's key-encryption key from its unwrapped seed.
    pub const EXTERNAL_SLOT_KEK: &str = "chatvault 2026-12 external-slot-kek v1";
    /// Prefix of the binding an external key store authenticates with a slot's wrapped
    /// seed (the token's AES-GCM associated data; not a `derive_key` context).
    pub const EXTERNAL_SLOT_BINDING: &str = "chatvault 2026-12 external-slot-binding v1";
    /// Prefix of every signed message (config, snapshot, index segment, hold).
    pub const OBJECT_SIGNATURE: &str = "chatvault 2026-11 object-signature v1";
}

/// A 256-bit secret key. Zeroized on drop; no `Debug`, `Copy` or serialization.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct Key32([u8; 32]);

impl Key32 {
    /// A fresh key from the operating system's CSPRNG.
    pub fn random() -> Self {
        Self(random_array())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for feeding a cipher or hash. Never log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// An explicit copy (kept verbose so that duplicating a secret is visible in review).
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

/// Random bytes from the operating system's CSPRNG.
///
/// A machine whose CSPRNG fails cannot make keys or nonces safely; there is nothing to do
/// but stop, so this panics rather than returning weak bytes.
pub(crate) fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("operating system random number generator failed");
    out
}

/// BLAKE3 `derive_key` over several parts, without concatenating them in memory.
pub(crate) fn derive_key(context: &str, parts: &[&[u8]]) -> Key32 {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        h.update(p);
    }
    Key32(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors: any change to a context string or to how parts are fed changes the
    /// format (docs/FORMAT.md, "Key derivations").
    #[test]
    fn golden_key_derivations() {
        let k = derive_key(
            context::PACK_KEY_WRAP,
            &[
                &[1u8; 32],
                &[2u8; 32],
                &[3u8; 32],
                &[4u8; 32],
                &[1],
                &0u32.to_le_bytes(),
                &[5u8; 32],
            ],
        );
        assert_eq!(hex::encode(k.expose()), GOLDEN_PACK_KEK);
        let k = derive_key(context::KEYFILE_KEK, &[&[7u8; 32], &[8u8; 32]]);
        assert_eq!(hex::encode(k.expose()), GOLDEN_KEYFILE_KEK);
        // Parts are concatenated: splitting them differently gives the same key.
        let a = derive_key(context::SNAPSHOT_KEY_WRAP, &[b"ab", b"c"]);
        let b = derive_key(context::SNAPSHOT_KEY_WRAP, &[b"abc"]);
        assert_eq!(a.expose(), b.expose());
    }

    #[test]
    fn golden_sealed_blob() {
        let mut out = Vec::new();
        aead::seal_with_nonce(
            &Key32::from_bytes([9; 32]),
            &[6; 24],
            b"aad",
            b"hello chat",
            &mut out,
        );
        assert_eq!(hex::encode(&out), GOLDEN_SEALED);
        assert_eq!(
            aead::open(&Key32::from_bytes([9; 32]), b"aad", &out).unwrap(),
            b"hello chat"
        );
    }

    const GOLDEN_PACK_KEK: &str =
        "7487fb69f09ff3c6adc99db60fe145f78f5e73092d97ce2e05959aedd3278feb";
    const GOLDEN_KEYFILE_KEK: &str =
        "a1075af2a829e36467dcaad3dd833521412b9773a252510320162e38142d565c";
    const GOLDEN_SEALED: &str = "0606060606060606060606060606060606060606060606062b88358cde1a33dff843bc2bd1806bcc6bacfcd48617c3f51a1d";
}
