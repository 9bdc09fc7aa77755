//! The server's media store: ids, kinds and sizes of attached files.
//!
//! Invariants:
//! - A file's id is derived from `(seed, tenant, day, index)` by BLAKE3, its bytes are
//!   [`media_bytes`] of a seed taken from the id, so the id names the
//!   content and the same id always means the same bytes (a forward re-uses the id).
//! - A file is stored at `media/<first two hex digits of the id>/<id>`.

use std::fmt;
use std::path::PathBuf;

use crate::media::{MediaReader, media_bytes};
use crate::rng::{MEDIA_SPREAD_1024, Rng};

/// Context string for media ids; changing it changes every id.
const MEDIA_ID_CONTEXT: &str = "chatvault-workload 2026-11 server media id v1";

/// The id of a file in the media store, 128 bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaId(pub [u8; 16]);

impl MediaId {
    fn derive(seed: u64, tenant: u32, day: u32, index: u64) -> Self {
        let mut h = blake3::Hasher::new_derive_key(MEDIA_ID_CONTEXT);
        h.update(&seed.to_le_bytes());
        h.update(&tenant.to_le_bytes());
        h.update(&day.to_le_bytes());
        h.update(&index.to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        Self(id)
    }

    /// The seed of this file's bytes: its first 8 bytes, little-endian.
    fn content_seed(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(first)
    }
}

impl fmt::Display for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for MediaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaId({self})")
    }
}

/// A file of the media store: its id, length and type, and a way to get its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// The file's id, also its name in the store.
    pub id: MediaId,
    /// Its length in bytes.
    pub len: u64,
    /// Its MIME type, e.g. `image/png`.
    pub mime: &'static str,
}

impl MediaFile {
    /// The file's path relative to the server root: `media/<2 hex>/<id>`.
    pub fn path(&self) -> PathBuf {
        let id = self.id.to_string();
        ["media", &id[..2], &id].iter().collect()
    }

    /// A reader of the file's bytes (incompressible, see [`media_bytes`]).
    pub fn reader(&self) -> MediaReader {
        MediaReader::new(self.id.content_seed(), self.len)
    }

    /// The file's bytes, in memory.
    pub fn bytes(&self) -> Vec<u8> {
        media_bytes(self.id.content_seed(), self.len as usize)
    }
}

/// A kind of attachment: its type, median size and share.
#[derive(Debug, Clone, Copy)]
struct Kind {
    mime: &'static str,
    median_bytes: u64,
    per_mille: u64,
}

/// Screenshots, photos, documents and some video. The shares sum to 1000.
const KINDS: [Kind; 4] = [
    Kind {
        mime: "image/png",
        median_bytes: 150_000,
        per_mille: 450,
    },
    Kind {
        mime: "image/jpeg",
        median_bytes: 2_000_000,
        per_mille: 300,
    },
    Kind {
        mime: "application/pdf",
        median_bytes: 300_000,
        per_mille: 200,
    },
    Kind {
        mime: "video/mp4",
        median_bytes: 8_000_000,
        per_mille: 50,
    },
];

/// Draws the kind and size of new files.
#[derive(Debug, Clone)]
pub(crate) struct MediaKinds {
    size_percent: u64,
}

impl MediaKinds {
    pub(crate) fn new(size_percent: u32) -> Self {
        Self {
            size_percent: u64::from(size_percent),
        }
    }

    /// The `index`th new file of `tenant` on `day`: a kind by share, a log-normal size
    /// around its median (at least 1 byte).
    pub(crate) fn new_file(
        &self,
        seed: u64,
        (tenant, day, index): (u32, u32, u64),
        rng: &mut Rng,
    ) -> MediaFile {
        let r = rng.next_u64();
        let mut x = (r >> 32) % 1000;
        let kind = KINDS
            .iter()
            .find(|k| {
                let hit = x < k.per_mille;
                x = x.saturating_sub(k.per_mille);
                hit
            })
            .unwrap_or(&KINDS[0]);
        let spread = MEDIA_SPREAD_1024.sample(r);
        let len = kind.median_bytes.saturating_mul(self.size_percent) / 100;
        let len = len.saturating_mul(spread) / 1024;
        MediaFile {
            id: MediaId::derive(seed, tenant, day, index),
            len: len.max(1),
            mime: kind.mime,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn kind_shares_sum_to_one() {
        assert_eq!(KINDS.iter().map(|k| k.per_mille).sum::<u64>(), 1000);
    }

    #[test]
    fn ids_are_hex_paths_and_name_the_bytes() {
        let kinds = MediaKinds::new(1);
        let mut rng = Rng::new(3);
        let a = kinds.new_file(1, (0, 0, 0), &mut rng);
        let b = kinds.new_file(1, (0, 0, 1), &mut rng);
        assert_ne!(a.id, b.id);
        let hex = a.id.to_string();
        assert_eq!(hex.len(), 32);
        assert!(
            hex.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(
            a.path(),
            PathBuf::from(format!("media/{}/{hex}", &hex[..2]))
        );
        let mut streamed = Vec::new();
        a.reader().read_to_end(&mut streamed).unwrap();
        assert_eq!(streamed, a.bytes());
        assert_eq!(streamed.len() as u64, a.len);
    }

    #[test]
    fn sizes_vary_around_the_kind_medians() {
        let kinds = MediaKinds::new(100);
        let mut rng = Rng::new(9);
        let files: Vec<MediaFile> = (0..4000)
            .map(|i| kinds.new_file(1, (0, 0, i), &mut rng))
            .collect();
        let pngs: Vec<u64> = files
            .iter()
            .filter(|f| f.mime == "image/png")
            .map(|f| f.len)
            .collect();
        let share = pngs.len() as f64 / files.len() as f64;
        assert!((0.42..0.48).contains(&share), "{share}");
        let mut sorted = pngs.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        assert!((130_000..170_000).contains(&median), "{median}");
        assert!(sorted[0] < 50_000 && *sorted.last().unwrap() > 500_000);
        assert!(files.iter().any(|f| f.mime == "video/mp4"));
    }
}
