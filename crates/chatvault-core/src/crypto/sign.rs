//! Ed25519 signatures over domain-separated messages.
//!
//! The signed message is `OBJECT_SIGNATURE context ‖ 0x00 ‖ repo_id ‖ bytes`, so a
//! signature from one repository never verifies in another.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::{context, random_array};
use crate::error::{Error, Result};
use crate::id::RepoId;

/// Length of a signature.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// A writer's (or admin's) Ed25519 public key. Public: shown in key listings and configs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Builds from 32 bytes (not yet checked to be a valid point; verification checks).
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex form.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for short human display (as ids have).
    pub fn short(self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0[..4]))
    }
}

/// An Ed25519 signing key. Zeroized on drop (dalek's `zeroize` feature); no `Debug`.
pub(crate) struct Signer(SigningKey);

impl Signer {
    pub fn random() -> Self {
        Self(SigningKey::from_bytes(&random_array()))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    pub fn seed(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, repo_id: &RepoId, bytes: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(&message(repo_id, bytes)).to_bytes()
    }
}

fn message(repo_id: &RepoId, bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context::OBJECT_SIGNATURE.len() + 33 + bytes.len());
    m.extend_from_slice(context::OBJECT_SIGNATURE.as_bytes());
    m.push(0);
    m.extend_from_slice(repo_id.as_bytes());
    m.extend_from_slice(bytes);
    m
}

/// Verifies a signature; `object` names the object in the error.
pub(crate) fn verify(
    object: &str,
    repo_id: &RepoId,
    key: &PublicKey,
    bytes: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<()> {
    let vk = VerifyingKey::from_bytes(key.as_bytes())
        .map_err(|_| Error::untrusted(object, "signer key is not a valid Ed25519 point"))?;
    vk.verify_strict(&message(repo_id, bytes), &Signature::from_bytes(signature))
        .map_err(|_| Error::untrusted(object, "bad signature"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_domain_separation() {
        let s = Signer::random();
        let repo = RepoId::from_bytes([1; 32]);
        let sig = s.sign(&repo, b"object");
        verify("x", &repo, &s.public(), b"object", &sig).unwrap();
        assert!(verify("x", &repo, &s.public(), b"objecT", &sig).is_err());
        let other = RepoId::from_bytes([2; 32]);
        assert!(verify("x", &other, &s.public(), b"object", &sig).is_err());
        assert!(verify("x", &repo, &Signer::random().public(), b"object", &sig).is_err());
        let again = Signer::from_seed(s.seed());
        assert_eq!(again.public(), s.public());
    }
}
