//! XChaCha20-Poly1305 with random 24-byte nonces.
//!
//! Sealed layout: `nonce (24) ‖ ciphertext ‖ tag (16)`. Invariant: a nonce is never chosen
//! by the caller, so it can never be reused by mistake.
//!
//! Sealing uses `chacha20poly1305`. Opening computes the same construction in two steps,
//! HChaCha20 (`chacha20`) for the subkey, then ring's IETF ChaCha20-Poly1305 with nonce
//! `0⁴ ‖ nonce[16..24]` (draft-irtf-cfrg-xchacha, section 2.3), because ring's assembly
//! opens about twice as fast; the tests check that both agree on every input.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
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
    let (nonce, ct_tag) = sealed.split_at(NONCE_LEN);
    let mut buf = ct_tag.to_vec();
    let len = open_ietf(key, nonce, aad, &mut buf)?.len();
    buf.truncate(len);
    Ok(buf)
}

/// Opens `ciphertext ‖ tag` in place under the XChaCha20 subkey and nonce for the 24-byte
/// `nonce`; returns the plaintext (the buffer without the tag).
fn open_ietf<'a>(
    key: &Key32,
    nonce: &[u8],
    aad: &[u8],
    ct_tag: &'a mut [u8],
) -> Result<&'a mut [u8], OpenFailed> {
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let prefix: [u8; 16] = nonce[..16].try_into().map_err(|_| OpenFailed)?;
    let mut derived =
        chacha20::hchacha::<chacha20::cipher::consts::U10>(key.expose().into(), &prefix.into());
    let subkey = zeroize::Zeroizing::new(<[u8; 32]>::from(derived));
    zeroize::Zeroize::zeroize(derived.as_mut_slice());
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey[..]).map_err(|_| OpenFailed)?;
    let mut ietf = [0u8; 12];
    ietf[4..].copy_from_slice(&nonce[16..NONCE_LEN]);
    LessSafeKey::new(unbound)
        .open_in_place(Nonce::assume_unique_for_key(ietf), Aad::from(aad), ct_tag)
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
    let (nonce, ct_tag) = sealed.split_at_mut(NONCE_LEN);
    Ok(open_ietf(key, nonce, aad, ct_tag)?)
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
        fn open_agrees_with_the_reference_xchacha20poly1305(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            aad in proptest::collection::vec(any::<u8>(), 0..100),
            flip in any::<Option<prop::sample::Index>>(),
        ) {
            let key = Key32::random();
            let mut sealed = seal(&key, &aad, &data);
            if let Some(i) = flip {
                let i = i.index(sealed.len());
                sealed[i] ^= 0x80;
            }
            let cipher = XChaCha20Poly1305::new(key.expose().into());
            let (nonce, ct) = sealed.split_at(NONCE_LEN);
            let reference = cipher
                .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| OpenFailed);
            prop_assert_eq!(open(&key, &aad, &sealed), reference);
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
