//! Key slots whose key lives outside the repository: a PKCS#11 token or a KMS reached
//! through a command. Core defines the contract ([`KeyWrapper`]) and the encoding of what
//! the store returns ([`SeedWrap`]); the stores themselves live in `chatvault-keystore`,
//! so core knows no hardware and links no PKCS#11 library.
//!
//! A slot of such a kind holds a random 32-byte seed wrapped by the store; the slot's KEK
//! is `derive_key(EXTERNAL_SLOT_KEK, kind ‖ seed ‖ salt)`. The store binds its wrap to the
//! slot's binding (repository id, role, kind, salt, signing key), so a wrapped seed moved
//! into another slot does not unwrap.
//!
//! Invariants: the seed is zeroized on drop and never printed; the binding and the wrap
//! are public (they are in the slot's header, which is the AEAD's associated data of the
//! sealed secrets, so changing either makes the slot fail to open).

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::ByteReader;

/// How a key slot's key-encryption key is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotKind {
    /// Argon2id of a passphrase.
    Passphrase,
    /// A raw 256-bit key file.
    KeyFile,
    /// A seed wrapped by a non-extractable AES key on a PKCS#11 token.
    Pkcs11,
    /// A seed wrapped by an external command (a KMS client).
    Command,
}

impl SlotKind {
    /// The name `key list` shows and `key add --kind` takes.
    pub fn as_str(&self) -> &'static str {
        match self {
            SlotKind::Passphrase => "passphrase",
            SlotKind::KeyFile => "key-file",
            SlotKind::Pkcs11 => "pkcs11",
            SlotKind::Command => "command",
        }
    }

    /// The header's `kdf` byte.
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            SlotKind::Passphrase => 1,
            SlotKind::KeyFile => 2,
            SlotKind::Pkcs11 => 3,
            SlotKind::Command => 4,
        }
    }

    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(SlotKind::Passphrase),
            2 => Some(SlotKind::KeyFile),
            3 => Some(SlotKind::Pkcs11),
            4 => Some(SlotKind::Command),
            _ => None,
        }
    }

    /// Whether the slot's key comes from a [`KeyWrapper`].
    pub fn is_external(&self) -> bool {
        matches!(self, SlotKind::Pkcs11 | SlotKind::Command)
    }
}

impl fmt::Display for SlotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key slot's 32-byte seed, from which its KEK is derived. Zeroized on drop; `Debug`
/// shows nothing of it.
pub struct SlotSeed(Zeroizing<[u8; 32]>);

impl SlotSeed {
    /// A seed from its bytes (what a store's unwrap returns).
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    pub(crate) fn random() -> Self {
        Self(Zeroizing::new(crate::crypto::random_array()))
    }

    /// The seed's bytes, for the store to wrap.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SlotSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SlotSeed(<redacted>)")
    }
}

/// Length of the AES-GCM IV of a PKCS#11 wrap.
pub const TOKEN_IV_LEN: usize = 12;
/// Longest PKCS#11 token label (the standard's fixed field).
pub const MAX_TOKEN_LABEL: usize = 32;
/// Longest key label (`CKA_LABEL`) a slot records.
pub const MAX_KEY_LABEL: usize = 128;
/// Longest wrapped seed a slot stores (a token's ciphertext or a command's output).
pub const MAX_WRAPPED: usize = 4096;

/// What a store returned for a slot's seed, stored in the slot's header. Public: it is
/// useless without the store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeedWrap {
    /// AES-256-GCM inside a PKCS#11 token (`CKM_AES_GCM`, 96-bit IV, 128-bit tag, the
    /// slot's binding as associated data).
    Pkcs11 {
        /// The token's label (`CK_TOKEN_INFO.label`).
        token_label: String,
        /// The AES key's label (`CKA_LABEL`).
        key_label: String,
        /// The random IV.
        iv: [u8; TOKEN_IV_LEN],
        /// Ciphertext and tag, as the token returned them.
        ciphertext: Vec<u8>,
    },
    /// An external command's output for the seed: opaque to chatvault (a Vault transit
    /// `vault:v1:…` string, a cloud KMS blob).
    Command {
        /// What the wrap command printed, without trailing white space.
        ciphertext: Vec<u8>,
    },
}

/// The mechanism byte of a PKCS#11 wrap: AES-GCM as above.
const MECH_AES_GCM: u8 = 1;

impl SeedWrap {
    /// The slot kind this wrap belongs to.
    pub fn kind(&self) -> SlotKind {
        match self {
            SeedWrap::Pkcs11 { .. } => SlotKind::Pkcs11,
            SeedWrap::Command { .. } => SlotKind::Command,
        }
    }

    /// Refuses fields the encoding cannot hold.
    pub(crate) fn check(&self) -> Result<()> {
        let ciphertext = match self {
            SeedWrap::Pkcs11 {
                token_label,
                key_label,
                ciphertext,
                ..
            } => {
                if token_label.is_empty() || token_label.len() > MAX_TOKEN_LABEL {
                    return Err(Error::invalid("token label", "empty or over 32 bytes"));
                }
                if key_label.is_empty() || key_label.len() > MAX_KEY_LABEL {
                    return Err(Error::invalid("key label", "empty or over 128 bytes"));
                }
                ciphertext
            }
            SeedWrap::Command { ciphertext } => {
                // What a command slot hands to the unwrap command is one shell word: a
                // slot planted by someone with storage write access must not be able to
                // add arguments (`-address=https://elsewhere`) to a command that expands
                // its input unquoted.
                if !ciphertext.iter().all(|b| (0x21..=0x7e).contains(b)) {
                    return Err(Error::invalid(
                        "wrapped seed",
                        "a command's output must be printable ASCII without spaces \
                         (base64, a `vault:v1:` string)",
                    ));
                }
                ciphertext
            }
        };
        if ciphertext.is_empty() || ciphertext.len() > MAX_WRAPPED {
            return Err(Error::invalid(
                "wrapped seed",
                format!("empty or over {MAX_WRAPPED} bytes"),
            ));
        }
        Ok(())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SeedWrap::Pkcs11 {
                token_label,
                key_label,
                iv,
                ciphertext,
            } => {
                out.push(MECH_AES_GCM);
                out.push(token_label.len() as u8);
                out.extend_from_slice(token_label.as_bytes());
                out.push(key_label.len() as u8);
                out.extend_from_slice(key_label.as_bytes());
                out.extend_from_slice(iv);
                out.extend_from_slice(&(ciphertext.len() as u16).to_le_bytes());
                out.extend_from_slice(ciphertext);
            }
            SeedWrap::Command { ciphertext } => {
                out.extend_from_slice(&(ciphertext.len() as u16).to_le_bytes());
                out.extend_from_slice(ciphertext);
            }
        }
    }

    pub(crate) fn decode(kind: SlotKind, r: &mut ByteReader<'_, '_>) -> Result<Self> {
        let wrap = match kind {
            SlotKind::Pkcs11 => {
                if r.u8()? != MECH_AES_GCM {
                    return Err(r.corrupt("unknown token mechanism"));
                }
                let token_label = utf8(r, "token label")?;
                let key_label = utf8(r, "key label")?;
                let iv = r.array()?;
                let len = r.u16()? as usize;
                let ciphertext = r.take(len)?.to_vec();
                SeedWrap::Pkcs11 {
                    token_label,
                    key_label,
                    iv,
                    ciphertext,
                }
            }
            SlotKind::Command => {
                let len = r.u16()? as usize;
                SeedWrap::Command {
                    ciphertext: r.take(len)?.to_vec(),
                }
            }
            _ => return Err(r.corrupt("slot kind has no wrapped seed")),
        };
        wrap.check()
            .map_err(|e| r.corrupt(format!("wrapped seed: {e}")))?;
        Ok(wrap)
    }
}

fn utf8(r: &mut ByteReader<'_, '_>, what: &str) -> Result<String> {
    let len = r.u8()? as usize;
    let bytes = r.take(len)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| r.corrupt(format!("{what} is not UTF-8")))
}

/// A key store outside the repository that wraps and unwraps key slot seeds: a PKCS#11
/// token, a KMS command. Implemented in `chatvault-keystore`.
///
/// Contract: `wrap` returns a [`SeedWrap`] of [`kind`](Self::kind) that only this store
/// (or one holding the same key) can unwrap, authenticating `binding` with it where the
/// store can (a token's AES-GCM takes it as associated data; a command receives it in
/// `CHATVAULT_KEY_CONTEXT`); `unwrap` returns the seed or an error, never a wrong seed
/// knowingly. A refused PIN is [`Error::WrongPin`] (the opener then stops, so a token
/// counts one failed login, not one per slot); a missing token or key, a failed command
/// or a failed unwrap is [`Error::KeyStore`], naming the store and never a PIN or a
/// secret. A credential the store needs (a PIN) is asked for only in `wrap` and `unwrap`,
/// so a store is never asked anything while slots of other kinds are tried.
pub trait KeyWrapper: Send + Sync {
    /// The slot kind this store creates and opens.
    fn kind(&self) -> SlotKind;
    /// Wraps a new slot's seed.
    fn wrap(&self, seed: &SlotSeed, binding: &[u8]) -> Result<SeedWrap>;
    /// Unwraps a slot's seed.
    fn unwrap(&self, wrap: &SeedWrap, binding: &[u8]) -> Result<SlotSeed>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_seed_is_redacted() {
        for k in [
            SlotKind::Passphrase,
            SlotKind::KeyFile,
            SlotKind::Pkcs11,
            SlotKind::Command,
        ] {
            assert_eq!(SlotKind::from_u8(k.to_u8()), Some(k));
        }
        assert_eq!(SlotKind::from_u8(5), None);
        let seed = SlotSeed::from_bytes(Zeroizing::new([0xab; 32]));
        assert!(!format!("{seed:?}").contains("ab"));
    }

    #[test]
    fn wraps_out_of_range_are_refused() {
        let ok = SeedWrap::Pkcs11 {
            token_label: "T".into(),
            key_label: "K".into(),
            iv: [0; 12],
            ciphertext: vec![1; 48],
        };
        ok.check().unwrap();
        let long = SeedWrap::Pkcs11 {
            token_label: "T".repeat(33),
            key_label: "K".into(),
            iv: [0; 12],
            ciphertext: vec![1; 48],
        };
        assert!(long.check().is_err());
        assert!(
            SeedWrap::Command { ciphertext: vec![] }.check().is_err(),
            "empty"
        );
        SeedWrap::Command {
            ciphertext: b"vault:v1:AbC+/=".to_vec(),
        }
        .check()
        .unwrap();
        for planted in [
            &b"vault:v1:x -address=https://evil"[..],
            b"a\nb",
            b"a\tb",
            b"\xff",
        ] {
            let wrap = SeedWrap::Command {
                ciphertext: planted.to_vec(),
            };
            assert!(wrap.check().is_err(), "{planted:?}");
        }
    }
}
