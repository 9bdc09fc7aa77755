//! The most bytes a reader accepts for each kind of object it reads whole, before the
//! object has been verified.
//!
//! Storage write access alone can plant an object of any size under any name. Objects
//! that are read whole (and only then hashed, authenticated or decoded) are therefore
//! read through `repo::reader::read_bounded`, which asks for the size first and refuses
//! one over its kind's limit without reading it. Packs are never read whole: their
//! trailer, header and blobs have limits of their own (`pack::MAX_HEADER_LEN`,
//! `blob::MAX_SEALED_LEN`).
//!
//! Invariant: every limit is far above anything an honest writer of this format
//! produces (writers check the segment limit, the one an honest writer could approach),
//! so a limit never refuses a genuine object; it only bounds what a planted one costs.

/// A kind of object read whole, with its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectLimit {
    /// `config`: writers, revocations and grants grow with the key slots ever added; a
    /// writer entry is about 150 bytes.
    Config,
    /// `keys/<id>`: a header of at most 386 bytes and secrets of about 400 bytes plus 69
    /// per data key generation.
    KeySlot,
    /// `index/<id>`: at most 200 000 entries of 86 bytes (17.2 MB) and the list of
    /// superseded segments.
    Segment,
    /// `snapshots/<id>`: a record with tags, paths and cursors.
    Snapshot,
    /// `holds/<id>`: a record with a reason of at most 1 KiB.
    Hold,
    /// `locks/<id>`: 40 bytes and a host name of at most 255.
    Lock,
}

impl ObjectLimit {
    /// The largest object of this kind a reader reads.
    pub(crate) const fn max_len(self) -> u64 {
        match self {
            Self::Config => 16 << 20,
            Self::KeySlot => 64 << 10,
            Self::Segment => 64 << 20,
            Self::Snapshot => 16 << 20,
            Self::Hold => 64 << 10,
            Self::Lock => 4 << 10,
        }
    }

    /// The kind's name, for errors.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::KeySlot => "key slot",
            Self::Segment => "index segment",
            Self::Snapshot => "snapshot",
            Self::Hold => "hold",
            Self::Lock => "lock",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_what_honest_writers_write() {
        // A full segment: envelope (56 + 64), seal (40), body header (18), entries.
        let full_segment = 56 + 64 + 40 + 18 + 200_000 * 86;
        assert!(ObjectLimit::Segment.max_len() > 3 * full_segment);
        // A lock with the longest host name.
        assert!(ObjectLimit::Lock.max_len() >= 40 + 255);
        // A hold with the longest reason, in an envelope.
        assert!(ObjectLimit::Hold.max_len() > 56 + 64 + 1024 + 100);
        // A key slot with a thousand data key generations.
        assert!(ObjectLimit::KeySlot.max_len() > 386 + 40 + 400 + 69 * 800);
    }
}
