//! Lock records: which processes are writing to, or deleting from, a repository.
//!
//! Layout (docs/FORMAT.md, section 10.7), little-endian, neither signed nor sealed (a
//! lock coordinates honest clients; storage access can delete or forge one anyway):
//!
//! | offset | width | field |
//! |--------|-------|-------|
//! | 0 | 8 | magic `CVLOCKRC` |
//! | 8 | 2 | version, `u16` = 1 |
//! | 10 | 1 | kind: 1 shared (a writer session or a reader), 2 prune, 3 exclusive (prune deleting) |
//! | 11 | 4 | pid, `u32` |
//! | 15 | 8 | refresh counter, `u64`: 0 when taken, +1 per refresh |
//! | 23 | 8 | created_unix_ms, `i64` (the holder's clock; informational) |
//! | 31 | 8 | refreshed_unix_ms, `i64` (the holder's clock; informational) |
//! | 39 | 1 | host_len, at most 255 |
//! | 40 | host_len | host name, UTF-8 |
//!
//! Invariants: nothing follows the host name; an unknown kind or version is refused.
//! Staleness is never judged from the clock fields: it comes from the holder's process
//! being gone (same host) or from the refresh counter standing still while an observer
//! watches on its own monotonic clock (`repo/locks.rs`).

use crate::error::{Error, Result};
use crate::format::{ByteReader, check_magic_version};

const MAGIC: &[u8; 8] = b"CVLOCKRC";

/// What a lock holder is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKind {
    /// A writer session (backup) or a reader (restore, check, drill): deletion must wait
    /// until it ends.
    Shared,
    /// A prune that is marking and repacking: excludes other prunes only.
    Prune,
    /// A prune deleting: new writer sessions wait until it ends.
    Exclusive,
}

impl LockKind {
    fn to_u8(self) -> u8 {
        match self {
            LockKind::Shared => 1,
            LockKind::Prune => 2,
            LockKind::Exclusive => 3,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(LockKind::Shared),
            2 => Some(LockKind::Prune),
            3 => Some(LockKind::Exclusive),
            _ => None,
        }
    }

    /// `shared`, `prune` or `exclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Shared => "shared",
            LockKind::Prune => "prune",
            LockKind::Exclusive => "exclusive",
        }
    }
}

/// One lock object's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// What the holder does.
    pub kind: LockKind,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id on that host.
    pub pid: u32,
    /// How often the holder has refreshed the lock.
    pub refresh: u64,
    /// When it was taken, by the holder's clock (shown to operators, never trusted).
    pub created_unix_ms: i64,
    /// When it was last refreshed, by the holder's clock (shown, never trusted).
    pub refreshed_unix_ms: i64,
}

impl LockRecord {
    /// The fixed layout above. Host names longer than 255 bytes are cut at a character
    /// boundary.
    pub fn encode(&self) -> Vec<u8> {
        let mut host = self.host.as_str();
        while host.len() > 255 {
            let mut cut = 255;
            while !host.is_char_boundary(cut) {
                cut -= 1;
            }
            host = &host[..cut];
        }
        let mut out = Vec::with_capacity(40 + host.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crate::format::FormatVersion::CURRENT.as_u16().to_le_bytes());
        out.push(self.kind.to_u8());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.refresh.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.refreshed_unix_ms.to_le_bytes());
        out.push(host.len() as u8);
        out.extend_from_slice(host.as_bytes());
        out
    }

    /// Decodes a lock object; `object` names it in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<LockRecord> {
        let mut r = ByteReader::new(bytes, object);
        check_magic_version(&mut r, MAGIC)?;
        let kind = r.u8()?;
        let kind = LockKind::from_u8(kind)
            .ok_or_else(|| Error::corrupt(object, format!("unknown lock kind {kind}")))?;
        let pid = r.u32()?;
        let refresh = r.u64()?;
        let created_unix_ms = r.i64()?;
        let refreshed_unix_ms = r.i64()?;
        let host_len = r.u8()? as usize;
        let host = std::str::from_utf8(r.take(host_len)?)
            .map_err(|_| Error::corrupt(object, "host name is not UTF-8"))?
            .to_owned();
        r.finish()?;
        Ok(LockRecord {
            kind,
            host,
            pid,
            refresh,
            created_unix_ms,
            refreshed_unix_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LockRecord {
        LockRecord {
            kind: LockKind::Exclusive,
            host: "node-1".into(),
            pid: 0x0102_0304,
            refresh: 5,
            created_unix_ms: 1_767_225_600_000,
            refreshed_unix_ms: 1_767_225_630_000,
        }
    }

    #[test]
    fn golden_lock_record() {
        let b = sample().encode();
        assert_eq!(
            hex::encode(&b),
            concat!(
                "43564c4f434b5243", // CVLOCKRC
                "0200",             // version 2
                "03",               // exclusive
                "04030201",         // pid
                "0500000000000000", // refresh 5
                "00a8da769b010000", // created
                "301ddb769b010000", // refreshed
                "06",               // host_len
                "6e6f64652d31",     // node-1
            )
        );
        assert_eq!(LockRecord::decode(&b, "l").unwrap(), sample());
    }

    #[test]
    fn truncations_trailing_bytes_and_bad_fields_are_corrupt() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(LockRecord::decode(&b[..n], "l").is_err(), "length {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(LockRecord::decode(&long, "l").is_err());
        let mut kind = b.clone();
        kind[10] = 9;
        assert!(matches!(
            LockRecord::decode(&kind, "l"),
            Err(Error::Corrupt { .. })
        ));
        let mut version = b.clone();
        version[8] = 3;
        assert!(matches!(
            LockRecord::decode(&version, "l"),
            Err(Error::UnsupportedFormat { .. })
        ));
        let mut utf8 = b;
        utf8[40] = 0xff;
        assert!(LockRecord::decode(&utf8, "l").is_err());
    }

    #[test]
    fn long_host_names_are_cut_at_a_character_boundary() {
        let r = LockRecord {
            host: "é".repeat(200),
            ..sample()
        };
        let d = LockRecord::decode(&r.encode(), "l").unwrap();
        assert_eq!(d.host, "é".repeat(127));
    }
}
