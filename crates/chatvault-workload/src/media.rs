//! Synthetic media: incompressible pseudo-random bytes, as compressed photos and videos
//! look to a backup engine.
//!
//! Invariants: the bytes for a seed are the BLAKE3 XOF output of a key derived from the
//! seed alone, so `media_bytes(s, n)` is a prefix of `media_bytes(s, m)` for `n <= m`, and
//! [`MediaReader`] yields exactly `media_bytes(s, len)` whatever its read sizes.

use std::io::{self, Read};

/// Context string for the media key; changing it changes every media byte.
const MEDIA_CONTEXT: &str = "chatvault-workload 2026-11 media v1";

fn xof(seed: u64) -> blake3::OutputReader {
    let mut h = blake3::Hasher::new_derive_key(MEDIA_CONTEXT);
    h.update(&seed.to_le_bytes());
    h.finalize_xof()
}

/// `len` incompressible bytes determined by `seed`.
///
/// ```
/// let photo = chatvault_workload::media_bytes(7, 1000);
/// assert_eq!(photo.len(), 1000);
/// assert_eq!(photo, chatvault_workload::media_bytes(7, 1000));
/// ```
pub fn media_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    xof(seed).fill(&mut out);
    out
}

/// The streaming form of [`media_bytes`]: exactly `len` bytes, then end of stream.
pub struct MediaReader {
    xof: blake3::OutputReader,
    remaining: u64,
}

impl MediaReader {
    /// A reader of the `len` bytes `media_bytes(seed, len)` returns.
    pub fn new(seed: u64, len: u64) -> Self {
        Self {
            xof: xof(seed),
            remaining: len,
        }
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl std::fmt::Debug for MediaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaReader")
            .field("position", &self.xof.position())
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Read for MediaReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = u64::try_from(out.len()).map_or(self.remaining, |l| l.min(self.remaining));
        // `n <= out.len()`, so it fits in usize.
        let n = n as usize;
        self.xof.fill(&mut out[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_is_deterministic_and_seed_dependent() {
        let a = media_bytes(1, 64 * 1024);
        assert_eq!(a, media_bytes(1, 64 * 1024));
        assert_ne!(a, media_bytes(2, 64 * 1024));
        assert_eq!(media_bytes(1, 1000), a[..1000]);
        assert!(media_bytes(1, 0).is_empty());
    }

    #[test]
    fn reader_matches_media_bytes_whatever_the_read_sizes() {
        let len = 300_001;
        let expected = media_bytes(9, len);
        let mut reader = MediaReader::new(9, len as u64);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for step in [1usize, 63, 64, 65, 1024, 70_000].iter().cycle() {
            let n = reader.read(&mut buf[..*step]).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(reader.remaining(), 0);
        assert_eq!(got, expected);
    }

    #[test]
    fn media_is_incompressible() {
        let data = media_bytes(3, 4 << 20);
        let packed = zstd::bulk::compress(&data, 3).unwrap();
        assert!(packed.len() * 100 >= data.len() * 99, "{}", packed.len());
    }
}
