//! Blobs: the unit of deduplication. A blob is named by keyed BLAKE3 of its type and
//! plaintext, compressed with zstd when that helps, and sealed with XChaCha20-Poly1305.
//!
//! Invariants: opening a blob re-computes its id from the plaintext and refuses a mismatch;
//! decompression never writes past the room reserved for the recorded raw length (a reused
//! buffer may offer more; a longer result is refused); the associated data
//! binds repository, format version, type, key domain, key generation, id, raw length and
//! codec, so a sealed blob cannot be replayed under another identity; a sealed length is
//! at most its raw length plus the seal's overhead ([`check_sealed_len`]: a stored
//! payload is never longer than the plaintext), so no reader allocates more than
//! [`MAX_SEALED_LEN`] for one blob whatever an index entry or pack header claims.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::crypto::{Key32, aead};
use crate::error::{Error, Result};
use crate::format::FormatVersion;
use crate::id::{BlobId, RepoId};
use crate::pack::PackKey;

/// The largest plaintext a blob may have (64 MiB). Chunks are at most 16 MiB; frontends
/// split larger trees.
pub const MAX_BLOB_SIZE: usize = 64 << 20;

/// The longest a sealed blob may be: the largest plaintext stored raw, plus the seal.
pub(crate) const MAX_SEALED_LEN: usize = MAX_BLOB_SIZE + aead::OVERHEAD;

/// Whether `length` is a possible sealed length for a blob of `raw_len` plaintext bytes:
/// the raw length within [`MAX_BLOB_SIZE`], and the payload (sealed length minus the
/// seal's overhead) no longer than the plaintext, since writers store a zstd frame only
/// when it is strictly smaller and the raw bytes otherwise. Index entries and pack
/// headers are checked with it before any length in them is used.
pub(crate) fn check_sealed_len(raw_len: u32, length: u32) -> std::result::Result<(), &'static str> {
    if raw_len as usize > MAX_BLOB_SIZE {
        return Err("blob raw length over the format limit");
    }
    match (length as usize).checked_sub(aead::OVERHEAD) {
        None => Err("blob shorter than its seal"),
        Some(payload) if payload > raw_len as usize => {
            Err("sealed blob longer than its plaintext and seal")
        }
        Some(_) => Ok(()),
    }
}

/// What a blob holds. Part of its id: the same bytes as data and as a tree are two blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[non_exhaustive]
pub enum BlobType {
    /// File or stream content.
    Data = 0,
    /// An encoded [`Tree`](crate::Tree).
    Tree = 1,
}

impl BlobType {
    /// Decodes the on-disk byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Data),
            1 => Some(Self::Tree),
            _ => None,
        }
    }
}

/// How a blob's plaintext is stored before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is (compression did not shrink it).
    Raw = 0,
    /// zstd frame.
    Zstd = 1,
}

impl Codec {
    /// Decodes the on-disk byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Raw),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Everything about a stored blob except its bytes; the associated data is built from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobMeta {
    pub id: BlobId,
    pub blob_type: BlobType,
    pub codec: Codec,
    pub raw_len: u32,
    pub domain: u32,
    pub generation: u32,
}

/// Length of a blob's associated data.
pub(crate) const AAD_LEN: usize = 32 + 2 + 1 + 4 + 4 + 32 + 4 + 1;

/// `repo_id (32) ‖ format version u16 ‖ type u8 ‖ domain u32 ‖ generation u32 ‖ id (32) ‖
/// raw length u32 ‖ codec u8`, integers little-endian; the version is the format of the
/// pack the blob is sealed in.
pub(crate) fn aad(repo_id: &RepoId, version: FormatVersion, m: &BlobMeta) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..32].copy_from_slice(repo_id.as_bytes());
    a[32..34].copy_from_slice(&version.as_u16().to_le_bytes());
    a[34] = m.blob_type as u8;
    a[35..39].copy_from_slice(&m.domain.to_le_bytes());
    a[39..43].copy_from_slice(&m.generation.to_le_bytes());
    a[43..75].copy_from_slice(m.id.as_bytes());
    a[75..79].copy_from_slice(&m.raw_len.to_le_bytes());
    a[79] = m.codec as u8;
    a
}

/// The blob id: keyed BLAKE3 (`id_key`) of `type ‖ plaintext`.
pub(crate) fn blob_id(id_key: &Key32, blob_type: BlobType, plaintext: &[u8]) -> BlobId {
    let mut h = blake3::Hasher::new_keyed(id_key.expose());
    h.update(&[blob_type as u8]);
    h.update(plaintext);
    BlobId::from_bytes(*h.finalize().as_bytes())
}

/// Chunks at least this long are probed before being compressed whole.
const PROBE_MIN_LEN: usize = 128 << 10;
/// The probe: this many windows, spread evenly over the chunk, at zstd level 1.
const PROBE_WINDOWS: usize = 4;
/// Length of one probe window.
const PROBE_WINDOW_LEN: usize = 8 << 10;

/// Whether any of a few windows of `plaintext` shrinks by at least 3 % at zstd level 1.
/// Photos, video and archives (half of a chat server's bytes) do not, and compressing them
/// whole at the repository's level costs most of the write path's time for nothing.
/// Windows are spread over the chunk so that one that starts in media and ends in text
/// (a dump or archive stream) is still compressed.
fn looks_compressible(plaintext: &[u8]) -> bool {
    let step = (plaintext.len() - PROBE_WINDOW_LEN) / (PROBE_WINDOWS - 1);
    (0..PROBE_WINDOWS).any(|i| {
        let window = &plaintext[i * step..i * step + PROBE_WINDOW_LEN];
        match zstd_compress(window, 1) {
            Ok(z) => z.len() * 100 < window.len() * 97,
            Err(_) => true,
        }
    })
}

thread_local! {
    /// One zstd compression context per thread and level: creating a context costs more
    /// than compressing a small file (it was 11 % of a backup of 400k small files).
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// `zstd::bulk::compress` through this thread's context for `level` (same bytes out).
fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        let i = match c.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                c.push((level, zstd::bulk::Compressor::new(level)?));
                c.len() - 1
            }
        };
        c[i].1.compress(data)
    })
}

/// Compresses with zstd at `level` (0 = never compress); keeps the raw bytes when the
/// frame would not be smaller, or when a probe of a large chunk says it will not be.
pub(crate) fn compress(level: i32, plaintext: &[u8]) -> (Codec, Cow<'_, [u8]>) {
    if level == 0 || plaintext.is_empty() {
        return (Codec::Raw, Cow::Borrowed(plaintext));
    }
    if plaintext.len() >= PROBE_MIN_LEN && !looks_compressible(plaintext) {
        return (Codec::Raw, Cow::Borrowed(plaintext));
    }
    match zstd_compress(plaintext, level) {
        Ok(z) if z.len() < plaintext.len() => (Codec::Zstd, Cow::Owned(z)),
        _ => (Codec::Raw, Cow::Borrowed(plaintext)),
    }
}

/// Seals a (possibly compressed) payload for a pack in the current format, appending
/// `nonce ‖ ciphertext ‖ tag` to `out`.
pub(crate) fn seal(
    key: &Key32,
    repo_id: &RepoId,
    meta: &BlobMeta,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let aad = aad(repo_id, FormatVersion::CURRENT, meta);
    aead::seal_into(key, &aad, payload, out);
}

/// Opens a sealed blob and verifies it fully (decompression, length, id) like [`open`],
/// but returns the payload as stored (compressed or raw): a repack re-seals it unchanged.
pub(crate) fn open_payload(
    key: &PackKey,
    id_key: &Key32,
    repo_id: &RepoId,
    meta: &BlobMeta,
    sealed: &[u8],
    object: &str,
) -> Result<Vec<u8>> {
    let mut buf = sealed.to_vec();
    let n = authenticate(key, repo_id, meta, &mut buf, object)?.len();
    let payload = aead::NONCE_LEN..aead::NONCE_LEN + n;
    check_payload(id_key, meta, &buf[payload.clone()], object, |_| ())?;
    buf.copy_within(payload, 0);
    buf.truncate(n);
    Ok(buf)
}

fn check_plaintext(id_key: &Key32, meta: &BlobMeta, plain: &[u8], object: &str) -> Result<()> {
    let name = || format!("{object}#{}", meta.id);
    if plain.len() != meta.raw_len as usize {
        return Err(Error::corrupt(name(), "blob length differs from the index"));
    }
    if blob_id(id_key, meta.blob_type, plain) != meta.id {
        return Err(Error::corrupt(name(), "blob content does not match its id"));
    }
    Ok(())
}

/// [`open_into`] on a copy of `sealed`, into a new buffer (tests).
#[cfg(test)]
pub(crate) fn open(
    key: &PackKey,
    id_key: &Key32,
    repo_id: &RepoId,
    meta: &BlobMeta,
    sealed: &[u8],
    object: &str,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open_into(
        key,
        id_key,
        repo_id,
        meta,
        &mut sealed.to_vec(),
        object,
        &mut out,
    )?;
    Ok(out)
}

/// The first step of opening: refuses a recorded length over the format limit or a
/// sealed length impossible for it, then decrypts `sealed` in place with the associated
/// data of the pack's format and returns the authenticated payload (still compressed when
/// the codec says so).
fn authenticate<'a>(
    key: &PackKey,
    repo_id: &RepoId,
    meta: &BlobMeta,
    sealed: &'a mut [u8],
    object: &str,
) -> Result<&'a [u8]> {
    let name = || format!("{object}#{}", meta.id);
    let length = u32::try_from(sealed.len()).unwrap_or(u32::MAX);
    check_sealed_len(meta.raw_len, length).map_err(|why| Error::corrupt(name(), why))?;
    aead::open_in_place(&key.key, &aad(repo_id, key.version, meta), sealed)
        .map_err(|_| Error::corrupt(name(), "blob failed authentication"))
}

/// Opens a sealed blob into `out` (replacing its contents, reusing its allocation),
/// decompresses it and checks the plaintext against its id. `object` names the pack in
/// errors. `sealed` is decrypted in place (its contents are then unspecified); the
/// plaintext is written to `out` once, straight from the decryptor or the decompressor,
/// so a caller that reuses `sealed` and `out` reads a blob without allocating. On an
/// error, `out` holds nothing the caller may use.
pub(crate) fn open_into(
    key: &PackKey,
    id_key: &Key32,
    repo_id: &RepoId,
    meta: &BlobMeta,
    sealed: &mut [u8],
    object: &str,
    out: &mut Vec<u8>,
) -> Result<()> {
    let name = || format!("{object}#{}", meta.id);
    out.clear();
    let payload = authenticate(key, repo_id, meta, sealed, object)?;
    match meta.codec {
        Codec::Raw => out.extend_from_slice(payload),
        Codec::Zstd => zstd_decompress_into(payload, meta.raw_len as usize, out)
            .map_err(|_| Error::corrupt(name(), "zstd frame does not decode"))?,
    }
    let checked = check_plaintext(id_key, meta, out, object);
    if checked.is_err() {
        out.clear();
    }
    checked
}

/// Decompresses one frame into `out` (cleared first) through this thread's context,
/// producing at most `capacity` bytes; `out`'s spare capacity is written, never zeroed
/// first.
fn zstd_decompress_into(data: &[u8], capacity: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    out.reserve(capacity);
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress_to_buffer(data, out).map(drop),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

/// The largest decompression buffer a thread keeps between blobs: a chunk of the largest
/// default size (4 MiB). A larger blob's buffer is freed after use, so a long-lived thread
/// of an embedding process does not hold on to the largest blob it ever read.
const VERIFY_BUF_KEEP: usize = 4 << 20;

thread_local! {
    /// The buffer [`check_payload`] decompresses into, reused across blobs.
    static VERIFY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Checks a sealed blob as [`open_into`] does (authenticate, decompress, length, id) without
/// keeping the plaintext unless `keep`. Used by `check --read-data`.
pub(crate) fn verify_in_place(
    key: &PackKey,
    id_key: &Key32,
    repo_id: &RepoId,
    meta: &BlobMeta,
    sealed: &mut [u8],
    object: &str,
    keep: bool,
) -> Result<Option<Vec<u8>>> {
    open_in_place_with(key, id_key, repo_id, meta, sealed, object, |plain| {
        keep.then(|| plain.to_vec())
    })
}

/// Opens a sealed blob as [`open_into`] does (authenticate, decompress, length, id) and
/// hands the checked plaintext to `f`, without copying it: it is decrypted in place in
/// `sealed` (whose contents are then unspecified) and a compressed blob is decompressed
/// into a reused per-thread buffer, so opening allocates and copies nothing per blob.
/// `f` runs only on a plaintext that passed every check.
pub(crate) fn open_in_place_with<R>(
    key: &PackKey,
    id_key: &Key32,
    repo_id: &RepoId,
    meta: &BlobMeta,
    sealed: &mut [u8],
    object: &str,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    let payload = authenticate(key, repo_id, meta, sealed, object)?;
    check_payload(id_key, meta, payload, object, f)
}

/// The second step of opening: decompresses an authenticated payload when its codec says
/// so (into a reused per-thread buffer), checks the plaintext's length and id, and hands
/// it to `f`, which runs only on a plaintext that passed every check.
fn check_payload<R>(
    id_key: &Key32,
    meta: &BlobMeta,
    payload: &[u8],
    object: &str,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R> {
    match meta.codec {
        Codec::Raw => {
            check_plaintext(id_key, meta, payload, object)?;
            Ok(f(payload))
        }
        Codec::Zstd => {
            // Taken out of the thread-local for the call, so that `f` may open blobs too.
            let mut buf = VERIFY_BUF.take();
            let r = zstd_decompress_into(payload, meta.raw_len as usize, &mut buf)
                .map_err(|_| {
                    Error::corrupt(
                        format!("{object}#{}", meta.id),
                        "zstd frame does not decode",
                    )
                })
                .and_then(|()| check_plaintext(id_key, meta, &buf, object))
                .map(|()| f(&buf));
            if buf.capacity() <= VERIFY_BUF_KEEP {
                VERIFY_BUF.set(buf);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack_key(version: FormatVersion) -> PackKey {
        PackKey {
            key: Key32::random(),
            version,
            blob_area: 0,
        }
    }

    fn sealed(data: &[u8], level: i32) -> (PackKey, Key32, RepoId, BlobMeta, Vec<u8>) {
        let key = pack_key(FormatVersion::CURRENT);
        let id_key = Key32::random();
        let repo = RepoId::from_bytes([3; 32]);
        let id = blob_id(&id_key, BlobType::Data, data);
        let (codec, payload) = compress(level, data);
        let meta = BlobMeta {
            id,
            blob_type: BlobType::Data,
            codec,
            raw_len: data.len() as u32,
            domain: 0,
            generation: 0,
        };
        let mut out = Vec::new();
        seal(&key.key, &repo, &meta, &payload, &mut out);
        (key, id_key, repo, meta, out)
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                level in prop_oneof![Just(0), Just(1), Just(3)]) {
            let (key, id_key, repo, meta, out) = sealed(&data, level);
            prop_assert_eq!(open(&key, &id_key, &repo, &meta, &out, "p").unwrap(), data);
        }

        #[test]
        fn verify_in_place_agrees_with_open(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                            level in prop_oneof![Just(0), Just(3)],
                                            flip in any::<Option<prop::sample::Index>>()) {
            let (key, id_key, repo, meta, mut out) = sealed(&data, level);
            if let Some(i) = flip {
                let i = i.index(out.len());
                out[i] ^= 0x40;
            }
            let opened = open(&key, &id_key, &repo, &meta, &out, "p").is_ok();
            let verified = verify_in_place(&key, &id_key, &repo, &meta, &mut out, "p", true);
            prop_assert_eq!(opened, verified.is_ok());
            prop_assert_eq!(verified.is_ok(), flip.is_none());
            if let Ok(kept) = verified {
                prop_assert_eq!(kept, Some(data));
            }
        }

        #[test]
        fn open_payload_returns_the_stored_payload_and_refuses_what_open_refuses(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            level in prop_oneof![Just(0), Just(3)],
            flip in any::<Option<prop::sample::Index>>(),
        ) {
            let (key, id_key, repo, meta, mut out) = sealed(&data, level);
            if let Some(i) = flip {
                let i = i.index(out.len());
                out[i] ^= 0x40;
            }
            let payload = open_payload(&key, &id_key, &repo, &meta, &out, "p");
            prop_assert_eq!(payload.is_ok(), flip.is_none());
            if let Ok(payload) = payload {
                // What a repack re-seals: the bytes compress() stored, opening to the data.
                prop_assert_eq!(&payload[..], &compress(level, &data).1[..]);
                let mut resealed = Vec::new();
                seal(&key.key, &repo, &meta, &payload, &mut resealed);
                prop_assert_eq!(open(&key, &id_key, &repo, &meta, &resealed, "p").unwrap(), data);
            }
        }
    }

    #[test]
    fn compressible_data_is_compressed_and_random_is_not() {
        let text = b"hello chat ".repeat(1000);
        assert_eq!(compress(3, &text).0, Codec::Zstd);
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (codec, _) = compress(3, &crate::crypto::random_array::<4096>());
        assert_eq!(codec, Codec::Raw);
        assert!(!random.is_empty());
    }

    #[test]
    fn incompressible_chunks_are_stored_raw_after_a_probe() {
        let media = chatvault_workload::media_bytes(1, 1 << 20);
        assert_eq!(compress(3, &media).0, Codec::Raw);
        // A chunk that starts in media and ends in text is compressed.
        let mut mixed = chatvault_workload::media_bytes(2, 512 << 10);
        mixed.extend(b"chat line\n".repeat(60_000));
        let (codec, z) = compress(3, &mixed);
        assert_eq!(codec, Codec::Zstd);
        assert!(z.len() < (512 << 10) + 100_000, "{}", z.len());
        // Large compressible chunks are compressed.
        let text = b"{\"seq\":1,\"text\":\"hello there\"}\n".repeat(40_000);
        let (codec, z) = compress(3, &text);
        assert_eq!(codec, Codec::Zstd);
        assert!(z.len() * 10 < text.len());
    }

    #[test]
    fn type_is_part_of_the_id() {
        let k = Key32::random();
        assert_ne!(
            blob_id(&k, BlobType::Data, b"x"),
            blob_id(&k, BlobType::Tree, b"x")
        );
        assert_ne!(
            blob_id(&k, BlobType::Data, b"x"),
            blob_id(&Key32::random(), BlobType::Data, b"x")
        );
    }

    #[test]
    fn changed_metadata_or_bytes_are_corrupt() {
        let data = b"some chat log line\n".repeat(50);
        let (key, id_key, repo, meta, out) = sealed(&data, 3);
        let mut m = meta;
        m.raw_len += 1;
        assert!(matches!(
            open(&key, &id_key, &repo, &m, &out, "p"),
            Err(Error::Corrupt { .. })
        ));
        let mut m = meta;
        m.blob_type = BlobType::Tree;
        assert!(open(&key, &id_key, &repo, &m, &out, "p").is_err());
        let mut bad = out.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&key, &id_key, &repo, &meta, &bad, "p").is_err());
        // Right key, wrong id key: authentication passes but the id check fails.
        let err = open(&key, &Key32::random(), &repo, &meta, &out, "p").unwrap_err();
        assert!(err.to_string().contains("does not match its id"), "{err}");
    }

    #[test]
    fn the_pack_format_version_is_authenticated() {
        let data = b"a line of chat\n".repeat(20);
        let (key, id_key, repo, meta, out) = sealed(&data, 3);
        // The same key, read as a pack of another format: the associated data differs.
        let as_v1 = PackKey {
            key: Key32::from_bytes(*key.key.expose()),
            version: FormatVersion::V1,
            blob_area: 0,
        };
        assert!(matches!(
            open(&as_v1, &id_key, &repo, &meta, &out, "p"),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(open(&key, &id_key, &repo, &meta, &out, "p").unwrap(), data);
        // A blob sealed in a format 1 pack opens as one.
        let mut v1 = Vec::new();
        let (_, payload) = compress(3, &data);
        aead::seal_into(
            &as_v1.key,
            &aad(&repo, FormatVersion::V1, &meta),
            &payload,
            &mut v1,
        );
        assert_eq!(open(&as_v1, &id_key, &repo, &meta, &v1, "p").unwrap(), data);
    }

    #[test]
    fn sealed_lengths_beyond_the_plaintext_and_seal_are_impossible() {
        let o = aead::OVERHEAD as u32;
        assert!(check_sealed_len(0, o).is_ok());
        assert!(check_sealed_len(100, o + 100).is_ok());
        assert!(check_sealed_len(100, o + 1).is_ok(), "a compressed payload");
        assert!(check_sealed_len(100, o + 101).is_err());
        assert!(check_sealed_len(100, o - 1).is_err());
        assert!(check_sealed_len(0, u32::MAX).is_err());
        let max = MAX_BLOB_SIZE as u32;
        assert!(check_sealed_len(max, max + o).is_ok());
        assert!(check_sealed_len(max + 1, max + 1 + o).is_err());
        assert_eq!(MAX_SEALED_LEN, MAX_BLOB_SIZE + 40);
    }

    /// Regression: a sealed buffer longer than its raw length allows (a planted index
    /// entry or pack header) is refused before it is decrypted.
    #[test]
    fn an_overlong_sealed_blob_is_refused_before_authentication() {
        let data = b"short".to_vec();
        let (key, id_key, repo, meta, mut out) = sealed(&data, 0);
        out.extend_from_slice(&[0; 64]);
        let err = open(&key, &id_key, &repo, &meta, &out, "p").unwrap_err();
        assert!(
            err.to_string().contains("longer than its plaintext"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// The 80-byte associated data of a blob, pinned for both format versions (only the
    /// version field differs).
    #[test]
    fn golden_blob_aad_and_id() {
        let meta = BlobMeta {
            id: BlobId::from_bytes([0xaa; 32]),
            blob_type: BlobType::Tree,
            codec: Codec::Zstd,
            raw_len: 0x0102_0304,
            domain: 5,
            generation: 6,
        };
        let repo = RepoId::from_bytes([0x11; 32]);
        let v1 = aad(&repo, FormatVersion::V1, &meta);
        assert_eq!(
            hex::encode(v1),
            format!(
                "{}0100010500000006000000{}0403020101",
                "11".repeat(32),
                "aa".repeat(32)
            )
        );
        let v2 = aad(&repo, FormatVersion::V2, &meta);
        assert_eq!(
            hex::encode(v2),
            format!(
                "{}0200010500000006000000{}0403020101",
                "11".repeat(32),
                "aa".repeat(32)
            )
        );
        let id = blob_id(&Key32::from_bytes([1; 32]), BlobType::Data, b"hello");
        assert_eq!(id.to_hex(), GOLDEN_ID);
    }

    const GOLDEN_ID: &str = "f1fa5105208eaf7ea337ed2b8ac9b023194ff8ae17f110330224658e3e34e1ec";
}
