//! Helpers for the fixed-width, little-endian layouts of docs/FORMAT.md.
//!
//! Invariant: every read is bounds-checked and a short input is a `Corrupt` error naming
//! the object, never a panic.

use crate::error::{Error, Result};

/// A cursor over an object's bytes that fails with `Corrupt { object }` when input ends.
pub(crate) struct ByteReader<'a, 'o> {
    bytes: &'a [u8],
    pos: usize,
    object: &'o str,
}

impl<'a, 'o> ByteReader<'a, 'o> {
    pub fn new(bytes: &'a [u8], object: &'o str) -> Self {
        Self {
            bytes,
            pos: 0,
            object,
        }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Error::corrupt(self.object, "truncated"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(Error::corrupt(self.object, "trailing bytes"))
        }
    }

    pub fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.object, reason)
    }
}

/// A repository format version this build reads: the `u16` in every binary header
/// (pack trailer, key slot, envelope, lock record) and in the blob associated data.
///
/// Writers always write [`FormatVersion::CURRENT`]; readers accept every version from
/// [`FormatVersion::OLDEST`] up to it and branch on the version where a layout differs
/// (`v >= FormatVersion::V2`), so a later version is one more variant and the places
/// that read it. What changed in each version is in docs/FORMAT.md, section 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FormatVersion {
    /// The first format.
    V1 = 1,
    /// Pack headers bind the format version and the data key generation in their
    /// associated data, which authenticates the trailer's version.
    V2 = 2,
}

impl FormatVersion {
    /// What this build writes.
    pub const CURRENT: Self = Self::V2;
    /// The oldest version this build reads.
    pub const OLDEST: Self = Self::V1;

    /// The version with this number, if this build reads it.
    pub fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The number written on disk.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The version `found` in `object`, or `UnsupportedFormat` (no key is needed to find
    /// out).
    pub fn check(found: u16, object: &str) -> Result<Self> {
        Self::from_u16(found).ok_or_else(|| Error::UnsupportedFormat {
            object: object.into(),
            found: u32::from(found),
            supported: crate::FORMAT_VERSION,
        })
    }
}

/// Checks an object's 8-byte magic and returns its version; a version this build does
/// not read is `UnsupportedFormat`, which needs no key to find out.
pub(crate) fn check_magic_version(
    r: &mut ByteReader<'_, '_>,
    magic: &[u8; 8],
) -> Result<FormatVersion> {
    let m = r.take(8)?;
    if m != magic {
        return Err(r.corrupt("wrong magic bytes"));
    }
    let version = r.u16()?;
    FormatVersion::check(version, r.object)
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_corrupt_not_panics() {
        let mut r = ByteReader::new(&[1, 2, 3], "obj");
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert!(matches!(r.u32(), Err(Error::Corrupt { .. })));
        assert!(r.take(usize::MAX).is_err());
        assert_eq!(r.u8().unwrap(), 3);
        r.finish().unwrap();
    }

    #[test]
    fn magic_and_version() {
        let with = |v: u16| {
            let mut b = b"CVTESTMG".to_vec();
            b.extend_from_slice(&v.to_le_bytes());
            b
        };
        for (v, want) in [(1, FormatVersion::V1), (2, FormatVersion::V2)] {
            let got = check_magic_version(&mut ByteReader::new(&with(v), "o"), b"CVTESTMG");
            assert_eq!(got.unwrap(), want);
        }
        for newer_or_older in [0, 3, u16::MAX] {
            assert!(matches!(
                check_magic_version(&mut ByteReader::new(&with(newer_or_older), "o"), b"CVTESTMG"),
                Err(Error::UnsupportedFormat { found, supported: 2, .. })
                    if found == u32::from(newer_or_older)
            ));
        }
        assert!(check_magic_version(&mut ByteReader::new(&with(1), "o"), b"CVOTHER!").is_err());
    }

    #[test]
    fn the_current_version_is_the_crate_constant_and_the_newest() {
        assert_eq!(
            u32::from(FormatVersion::CURRENT.as_u16()),
            crate::FORMAT_VERSION
        );
        assert_eq!(
            FormatVersion::from_u16(FormatVersion::CURRENT.as_u16() + 1),
            None
        );
        assert!(FormatVersion::OLDEST <= FormatVersion::CURRENT);
    }
}
