//! XChaCha20-Poly1305 with random 24-byte nonces.
//!
//! Sealed layout: `nonce (24) ‖ ciphertext ‖ tag (16)`. Invariant: a nonce is never chosen
//! by the caller, so it can never be reused by mistake.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::{Key32, random_array};

/// Nonce length in bytes.
pub(crate) const NONCE_LEN: usize = 24;
/// Authentication tag length in bytes.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes that sealing adds to a plaintext.
pub(crate) const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Authentication failed: wrong key, wrong associated data, or altered bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenFailed;

/// Seals `plaintext` under `key` with associated data `aad`, appending to `out`.
pub(crate) fn seal_into(key: &Key32, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let nonce: [u8; NONCE_LEN] = random_array();
    seal_with_nonce(key, &nonce, aad, plaintext, out);
}

/// Seals with a given nonce. Only for golden vectors and [`seal_into`].
pub(crate) fn seal_with_nonce(
    key: &Key32,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    #[allow(clippy::expect_used)]
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // The only failure is a plaintext over 256 GiB, which no caller can produce.
        .expect("XChaCha20-Poly1305 plaintext length limit");
    out.reserve(NONCE_LEN + ct.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
}

/// Seals into a fresh vector.
pub(crate) fn seal(key: &Key32, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    seal_into(key, aad, plaintext, &mut out);
    out
}

/// Opens `nonce ‖ ciphertext ‖ tag`.
pub(crate) fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenFailed> {
    if sealed.len() < OVERHEAD {
        return Err(OpenFailed);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| OpenFailed)
}

/// Opens `nonce ‖ ciphertext ‖ tag` in place: on success the ciphertext's bytes hold the
/// plaintext, which is returned. On failure the buffer's contents are unspecified (it may
/// hold partly decrypted bytes) and must not be used.
pub(crate) fn open_in_place<'a>(
    key: &Key32,
    aad: &[u8],
    sealed: &'a mut [u8],
) -> Result<&'a [u8], OpenFailed> {
    if sealed.len() < OVERHEAD {
        return Err(OpenFailed);
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let cipher = XChaCha20Poly1305::new(key.expose().into());
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            ct,
            chacha20poly1305::Tag::from_slice(tag),
        )
        .map_err(|_| OpenFailed)?;
    Ok(ct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn open_in_place_agrees_with_open(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                          flip in any::<Option<prop::sample::Index>>()) {
            let key = Key32::random();
            let mut sealed = seal(&key, b"ad", &data);
            if let Some(i) = flip {
                let i = i.index(sealed.len());
                sealed[i] ^= 1;
            }
            let whole = open(&key, b"ad", &sealed);
            let mut buf = sealed.clone();
            let in_place = open_in_place(&key, b"ad", &mut buf).map(<[u8]>::to_vec);
            prop_assert_eq!(whole.is_ok(), in_place.is_ok());
            prop_assert_eq!(in_place.is_ok(), flip.is_none());
            if let (Ok(a), Ok(b)) = (whole, in_place) {
                prop_assert_eq!(&a, &b);
                prop_assert_eq!(a, data);
            }
        }

        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                aad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let key = Key32::random();
            let sealed = seal(&key, &aad, &data);
            prop_assert_eq!(sealed.len(), data.len() + OVERHEAD);
            prop_assert_eq!(open(&key, &aad, &sealed).unwrap(), data);
        }

        #[test]
        fn any_flipped_bit_fails(data in proptest::collection::vec(any::<u8>(), 1..256),
                                 pos in any::<proptest::sample::Index>(), bit in 0u8..8) {
            let key = Key32::random();
            let mut sealed = seal(&key, b"aad", &data);
            let i = pos.index(sealed.len());
            sealed[i] ^= 1 << bit;
            prop_assert_eq!(open(&key, b"aad", &sealed), Err(OpenFailed));
        }
    }

    #[test]
    fn wrong_key_or_aad_or_short_input_fails() {
        let key = Key32::random();
        let sealed = seal(&key, b"a", b"hello");
        assert_eq!(open(&Key32::random(), b"a", &sealed), Err(OpenFailed));
        assert_eq!(open(&key, b"b", &sealed), Err(OpenFailed));
        assert_eq!(open(&key, b"a", &sealed[..OVERHEAD - 1]), Err(OpenFailed));
    }
}
