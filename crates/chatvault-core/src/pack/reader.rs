//! Reading packs: the trailer, the sealed header, then single blobs by range.
//!
//! Invariant: every length read from a pack is checked against the pack's real size before
//! anything is allocated or sliced.

use x25519_dalek::StaticSecret;

use super::{
    ENTRY_LEN, MAGIC, MAX_BLOBS_PER_PACK, MIN_HEADER_LEN, PackEntry, TRAILER_LEN, header_aad,
};
use crate::blob::{BlobType, Codec};
use crate::crypto::wrap::{self, WRAP_LEN, WrapBinding};
use crate::crypto::{Key32, aead};
use crate::error::{Error, Result};
use crate::format::ByteReader;
use crate::id::{BlobId, RepoId};

/// The parsed trailer of a pack.
#[derive(Debug)]
pub(crate) struct Trailer {
    pub wrap: [u8; WRAP_LEN],
    pub header_offset: u64,
    pub header_len: u32,
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
    ) -> Result<Key32> {
        wrap::unwrap(&self.wrap, data_sk, binding)
            .map_err(|_| Error::corrupt(object, "pack key does not unwrap (forged or damaged)"))
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
    if u32::from(version) != crate::FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            object: object.into(),
            found: u32::from(version),
            supported: crate::FORMAT_VERSION,
        });
    }
    let header_offset = (pack_len - TRAILER_LEN as u64)
        .checked_sub(u64::from(header_len))
        .filter(|_| header_len as usize >= MIN_HEADER_LEN)
        .ok_or_else(|| Error::corrupt(object, "header length out of range"))?;
    Ok(Trailer {
        wrap,
        header_offset,
        header_len,
    })
}

/// The opened header of a pack.
#[derive(Debug)]
pub(crate) struct PackHeader {
    pub entries: Vec<PackEntry>,
    pub generation: u32,
}

/// Opens a sealed header that starts at `header_offset` (= the length of the blob area).
pub(crate) fn open_header(
    sealed: &[u8],
    key: &Key32,
    repo_id: &RepoId,
    header_offset: u64,
    generation: u32,
    object: &str,
) -> Result<PackHeader> {
    let plain = aead::open(key, &header_aad(repo_id), sealed)
        .map_err(|_| Error::corrupt(object, "pack header failed authentication"))?;
    let mut r = ByteReader::new(&plain, object);
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
        if (length as usize) < aead::OVERHEAD {
            return Err(r.corrupt("blob shorter than its seal"));
        }
        entries.push(PackEntry {
            id,
            blob_type,
            codec,
            domain,
            raw_len,
            offset: offset as u32,
            length,
        });
        offset += u64::from(length);
    }
    if offset != header_offset {
        return Err(Error::corrupt(
            object,
            "pack entries do not tile the blob area",
        ));
    }
    Ok(PackHeader {
        entries,
        generation,
    })
}
