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

/// Checks an object's 8-byte magic and returns its version; any version other than the
/// one this build reads is `UnsupportedFormat`, which needs no key to find out.
pub(crate) fn check_magic_version(r: &mut ByteReader<'_, '_>, magic: &[u8; 8]) -> Result<u16> {
    let m = r.take(8)?;
    if m != magic {
        return Err(r.corrupt("wrong magic bytes"));
    }
    let version = r.u16()?;
    if u32::from(version) != crate::FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            object: r.object.into(),
            found: u32::from(version),
            supported: crate::FORMAT_VERSION,
        });
    }
    Ok(version)
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
        let mut ok = b"CVTESTMG".to_vec();
        ok.extend_from_slice(&1u16.to_le_bytes());
        check_magic_version(&mut ByteReader::new(&ok, "o"), b"CVTESTMG").unwrap();
        let mut newer = b"CVTESTMG".to_vec();
        newer.extend_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            check_magic_version(&mut ByteReader::new(&newer, "o"), b"CVTESTMG"),
            Err(Error::UnsupportedFormat { found: 2, .. })
        ));
        assert!(check_magic_version(&mut ByteReader::new(&ok, "o"), b"CVOTHER!").is_err());
    }
}
