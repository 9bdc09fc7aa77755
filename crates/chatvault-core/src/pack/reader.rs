//! Reading packs: the trailer, the sealed header, then single blobs by range.
//!
//! Invariant: every length read from a pack is checked against the pack's real size and
//! against its per-kind limit before anything is allocated or sliced: the header against
//! [`MAX_HEADER_LEN`], a blob against
//! [`blob::MAX_SEALED_LEN`](crate::blob::MAX_SEALED_LEN) and its raw length. The header's
//! plaintext decoder ([`decode_header`]) is separate from its authentication, so that it
//! can be fuzzed on its own.

use x25519_dalek::StaticSecret;

use super::{
    ENTRY_LEN, MAGIC, MAX_BLOBS_PER_PACK, MAX_HEADER_LEN, MIN_HEADER_LEN, PackEntry, TRAILER_LEN,
    header_aad,
};
use crate::blob::{self, BlobType, Codec};
use crate::crypto::wrap::{self, WRAP_LEN, WrapBinding};
use crate::crypto::{Key32, aead};
use crate::error::{Error, Result};
use crate::format::{ByteReader, FormatVersion};
use crate::id::{BlobId, RepoId};

/// The parsed trailer of a pack.
#[derive(Debug)]
pub(crate) struct Trailer {
    pub wrap: [u8; WRAP_LEN],
    pub header_offset: u64,
    pub header_len: u32,
    /// The format the pack was written in (authenticated from format 2 on, when the
    /// header opens).
    pub version: FormatVersion,
}

/// A pack's unwrapped data key, with what opening its blobs needs besides: the format
/// version the blobs' associated data carries, and the length of the blob area (every
/// blob range must end within it).
pub(crate) struct PackKey {
    pub key: Key32,
    pub version: FormatVersion,
    pub blob_area: u64,
}

impl Trailer {
    /// The data key generation the pack was sealed to.
    pub fn generation(&self) -> u32 {
        wrap::generation_of(&self.wrap)
    }

    /// Unwraps the pack's data key.
    pub fn unwrap_key(
        &self,
        data_sk: &StaticSecret,
        binding: &WrapBinding<'_>,
        object: &str,
    ) -> Result<PackKey> {
        let key = wrap::unwrap(&self.wrap, data_sk, binding)
            .map_err(|_| Error::corrupt(object, "pack key does not unwrap (forged or damaged)"))?;
        Ok(PackKey {
            key,
            version: self.version,
            blob_area: self.header_offset,
        })
    }
}

/// Parses the last [`TRAILER_LEN`] bytes of a pack of `pack_len` bytes.
pub(crate) fn read_trailer(tail: &[u8], pack_len: u64, object: &str) -> Result<Trailer> {
    if tail.len() != TRAILER_LEN || pack_len < (TRAILER_LEN + MIN_HEADER_LEN) as u64 {
        return Err(Error::corrupt(object, "too short to be a pack"));
    }
    let mut r = ByteReader::new(tail, object);
    let wrap = r.array()?;
    let header_len = r.u32()?;
    let version = r.u16()?;
    if r.array::<8>()? != *MAGIC {
        return Err(Error::corrupt(object, "wrong pack magic"));
    }
    let version = FormatVersion::check(version, object)?;
    if header_len as usize > MAX_HEADER_LEN {
        return Err(Error::corrupt(
            object,
            format!("header length {header_len} over the format limit of {MAX_HEADER_LEN}"),
        ));
    }
    let header_offset = (pack_len - TRAILER_LEN as u64)
        .checked_sub(u64::from(header_len))
        .filter(|_| header_len as usize >= MIN_HEADER_LEN)
        .ok_or_else(|| Error::corrupt(object, "header length out of range"))?;
    // Blob offsets are u32: a blob area of 4 GiB or more cannot be addressed.
    if header_offset > u64::from(u32::MAX) {
        return Err(Error::corrupt(object, "blob area of 4 GiB or more"));
    }
    Ok(Trailer {
        wrap,
        header_offset,
        header_len,
        version,
    })
}

/// The opened header of a pack.
#[derive(Debug)]
pub(crate) struct PackHeader {
    pub entries: Vec<PackEntry>,
    pub generation: u32,
}

/// Opens a sealed header with the pack's key (which knows the pack's version and the
/// length of its blob area) and decodes it; `generation` is the trailer's.
pub(crate) fn open_header(
    sealed: &[u8],
    key: &PackKey,
    repo_id: &RepoId,
    generation: u32,
    object: &str,
) -> Result<PackHeader> {
    let aad = header_aad(repo_id, key.version, generation);
    let plain = aead::open(&key.key, &aad, sealed)
        .map_err(|_| Error::corrupt(object, "pack header failed authentication"))?;
    Ok(PackHeader {
        entries: decode_header(&plain, key.blob_area, object)?,
        generation,
    })
}

/// Decodes a header's plaintext (`count u32 ‖ count × entry`) for a pack whose blob area
/// is `blob_area` bytes long: the count and every length are checked (known type and
/// codec, raw length within the format limit, sealed length possible for that raw
/// length and codec), and the entries must tile the blob area exactly.
pub(crate) fn decode_header(plain: &[u8], blob_area: u64, object: &str) -> Result<Vec<PackEntry>> {
    let mut r = ByteReader::new(plain, object);
    let count = r.u32()? as usize;
    if count > MAX_BLOBS_PER_PACK || count * ENTRY_LEN != r.remaining() {
        return Err(Error::corrupt(object, "pack header entry count"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut offset: u64 = 0;
    for _ in 0..count {
        let blob_type = BlobType::from_u8(r.u8()?).ok_or_else(|| r.corrupt("unknown blob type"))?;
        let codec = Codec::from_u8(r.u8()?).ok_or_else(|| r.corrupt("unknown codec"))?;
        let domain = r.u32()?;
        let raw_len = r.u32()?;
        let length = r.u32()?;
        let id = BlobId::from_bytes(r.array()?);
        blob::check_sealed_len(raw_len, length).map_err(|why| r.corrupt(why))?;
        let start = u32::try_from(offset).map_err(|_| r.corrupt("blob area of 4 GiB or more"))?;
        entries.push(PackEntry {
            id,
            blob_type,
            codec,
            domain,
            raw_len,
            offset: start,
            length,
        });
        offset += u64::from(length);
    }
    if offset != blob_area || offset > u64::from(u32::MAX) {
        return Err(Error::corrupt(
            object,
            "pack entries do not tile the blob area",
        ));
    }
    Ok(entries)
}
