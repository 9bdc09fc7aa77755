//! The signed envelope around config, snapshot, index segment and hold objects.
//!
//! Layout (little-endian): `magic (8) ‖ version u16 ‖ flags u16 ‖ signer public key
//! (32) ‖ sequence u64 ‖ body_len u32 ‖ body ‖ signature (64)`. The Ed25519 signature
//! covers everything before it, prefixed with the signature context and the repository id.
//! Invariants: the version is readable before verification and is covered by the
//! signature; an envelope whose signature does not verify under its embedded key is
//! `Untrusted`; whether that key is trusted is the config's decision, not this module's.

use crate::crypto::sign::{self, PublicKey, SIGNATURE_LEN, Signer};
use crate::error::Result;
use crate::format::{ByteReader, check_magic_version};
use crate::id::RepoId;

const INDEX_MAGIC: &[u8; 8] = magic::INDEX;

/// Magic bytes per signed object kind.
pub(crate) mod magic {
    pub const CONFIG: &[u8; 8] = b"CVCONFIG";
    pub const SNAPSHOT: &[u8; 8] = b"CVSNAPSH";
    pub const INDEX: &[u8; 8] = b"CVINDEX1";
    pub const HOLD: &[u8; 8] = b"CVHOLDRC";
}

/// Bytes of header before the body.
pub(crate) const HEADER_LEN: usize = 8 + 2 + 2 + 32 + 8 + 4;

/// Flag of an index segment whose body starts with the key generation (`u32` LE) whose
/// `index_key` sealed it (a segment written after `auth_key` and `index_key` were rotated).
pub(crate) const FLAG_GENERATION: u16 = 1;

/// A verified envelope.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub flags: u16,
    pub signer: PublicKey,
    pub sequence: u64,
    pub body: &'a [u8],
    /// The header bytes (useful as associated data for a sealed body).
    pub header: &'a [u8],
}

/// The header that will precede a body of `body_len` bytes (for use as associated data
/// before the body exists).
pub(crate) fn header(
    magic: &[u8; 8],
    signer: &PublicKey,
    sequence: u64,
    body_len: usize,
) -> Vec<u8> {
    header_with_flags(magic, 0, signer, sequence, body_len)
}

/// [`header`] with flags (only [`FLAG_GENERATION`], on index segments).
pub(crate) fn header_with_flags(
    magic: &[u8; 8],
    flags: u16,
    signer: &PublicKey,
    sequence: u64,
    body_len: usize,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(magic);
    h.extend_from_slice(&crate::format::FormatVersion::CURRENT.as_u16().to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(signer.as_bytes());
    h.extend_from_slice(&sequence.to_le_bytes());
    h.extend_from_slice(&(body_len as u32).to_le_bytes());
    h
}

/// The signer and sequence an envelope's header claims, unverified (the header alone
/// cannot be verified); `None` if `head` is not an envelope header of this version.
pub(crate) fn peek_signer(head: &[u8]) -> Option<(PublicKey, u64)> {
    let head = head.get(..HEADER_LEN)?;
    let key: [u8; 32] = head[12..44].try_into().ok()?;
    let seq = u64::from_le_bytes(head[44..52].try_into().ok()?);
    Some((PublicKey::from_bytes(key), seq))
}

/// Builds and signs an envelope.
pub(crate) fn seal(
    magic: &[u8; 8],
    signer: &Signer,
    repo_id: &RepoId,
    sequence: u64,
    body: &[u8],
) -> Vec<u8> {
    seal_with_flags(magic, 0, signer, repo_id, sequence, body)
}

/// [`seal`] with flags (only [`FLAG_GENERATION`], on index segments).
pub(crate) fn seal_with_flags(
    magic: &[u8; 8],
    flags: u16,
    signer: &Signer,
    repo_id: &RepoId,
    sequence: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = header_with_flags(magic, flags, &signer.public(), sequence, body.len());
    out.reserve(body.len() + SIGNATURE_LEN);
    out.extend_from_slice(body);
    let sig = signer.sign(repo_id, &out);
    out.extend_from_slice(&sig);
    out
}

/// An envelope's fields, parsed but not verified.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub flags: u16,
    pub signer: PublicKey,
    pub sequence: u64,
    pub body: &'a [u8],
    /// Everything the signature covers.
    pub signed: &'a [u8],
    pub signature: [u8; SIGNATURE_LEN],
}

/// Parses an envelope's layout (magic, version, flags, lengths) without verifying it: the
/// plain decoder behind [`open`], fuzzed on its own.
pub(crate) fn parse<'a>(bytes: &'a [u8], magic: &[u8; 8], object: &str) -> Result<Parsed<'a>> {
    let mut r = ByteReader::new(bytes, object);
    check_magic_version(&mut r, magic)?;
    let flags = r.u16()?;
    let allowed = if magic == INDEX_MAGIC {
        FLAG_GENERATION
    } else {
        0
    };
    if flags & !allowed != 0 {
        return Err(r.corrupt("unknown flags"));
    }
    let signer = PublicKey::from_bytes(r.array()?);
    let sequence = r.u64()?;
    let body_len = r.u32()? as usize;
    let body = r.take(body_len)?;
    let signed_len = r.position();
    let signature: [u8; SIGNATURE_LEN] = r.array()?;
    r.finish()?;
    Ok(Parsed {
        flags,
        signer,
        sequence,
        body,
        signed: &bytes[..signed_len],
        signature,
    })
}

/// Parses an envelope and verifies its signature under the embedded key.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    object: &str,
    repo_id: &RepoId,
) -> Result<Envelope<'a>> {
    let p = parse(bytes, magic, object)?;
    sign::verify(object, repo_id, &p.signer, p.signed, &p.signature)?;
    Ok(Envelope {
        flags: p.flags,
        signer: p.signer,
        sequence: p.sequence,
        body: p.body,
        header: &bytes[..HEADER_LEN],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn seal_open_and_tamper() {
        let s = Signer::random();
        let repo = RepoId::from_bytes([2; 32]);
        let bytes = seal(magic::SNAPSHOT, &s, &repo, 42, b"body");
        let e = open(&bytes, magic::SNAPSHOT, "o", &repo).unwrap();
        assert_eq!(
            (e.signer, e.sequence, e.body),
            (s.public(), 42, &b"body"[..])
        );
        assert_eq!(e.header, &header(magic::SNAPSHOT, &s.public(), 42, 4)[..]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(open(&b, magic::SNAPSHOT, "o", &repo).is_err(), "byte {i}");
        }
        for n in 0..bytes.len() {
            assert!(open(&bytes[..n], magic::SNAPSHOT, "o", &repo).is_err());
        }
        assert!(matches!(
            open(&bytes, magic::SNAPSHOT, "o", &RepoId::from_bytes([3; 32])),
            Err(Error::Untrusted { .. })
        ));
        assert!(open(&bytes, magic::CONFIG, "o", &repo).is_err());
    }

    #[test]
    fn format_1_envelopes_still_open_and_unknown_versions_do_not() {
        let s = Signer::random();
        let repo = RepoId::from_bytes([2; 32]);
        let mut bytes = seal(magic::HOLD, &s, &repo, 3, b"body");
        assert_eq!(bytes[8..10], [2, 0], "written in the current format");
        // A format 1 envelope (signed as such) opens.
        bytes[8] = 1;
        let body_end = bytes.len() - SIGNATURE_LEN;
        let sig = s.sign(&repo, &bytes[..body_end]);
        bytes[body_end..].copy_from_slice(&sig);
        assert_eq!(open(&bytes, magic::HOLD, "o", &repo).unwrap().body, b"body");
        bytes[8] = 3;
        assert!(matches!(
            parse(&bytes, magic::HOLD, "o"),
            Err(Error::UnsupportedFormat { found: 3, .. })
        ));
    }

    #[test]
    fn resigned_by_another_key_verifies_but_names_that_key() {
        // Storage access alone can re-sign with its own key: the envelope verifies, but
        // names the forger's key, which the config does not trust.
        let s = Signer::random();
        let forger = Signer::random();
        let repo = RepoId::from_bytes([2; 32]);
        let bytes = seal(magic::SNAPSHOT, &forger, &repo, 1, b"x");
        let e = open(&bytes, magic::SNAPSHOT, "o", &repo).unwrap();
        assert_ne!(e.signer, s.public());
    }
}
