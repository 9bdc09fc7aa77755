//! Typed 32-byte identifiers, one newtype per object kind.
//!
//! Invariant: ids are public values (names of objects), never secrets; they display as 64
//! lower-case hex digits and parse back from exactly that form.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Builds the id from its 32 bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The id's 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The id as 64 lower-case hex digits.
            pub fn to_hex(self) -> String {
                hex::encode(self.0)
            }

            /// Parses 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| {
                    Error::invalid(stringify!($name), format!("{s:?} is not 64 hex digits: {e}"))
                })?;
                Ok(Self(out))
            }

            /// Reads an id from the first 32 bytes of a slice, if there are that many.
            // Generated for every id type; only some decode ids from raw slices.
            #[allow(dead_code)]
            pub(crate) fn from_slice(b: &[u8]) -> Option<Self> {
                b.get(..32)?.try_into().ok().map(Self)
            }

            /// The first 8 hex digits, for short human display.
            pub fn short(self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::from_hex(s)
            }
        }
    };
}

id_type!(
    /// A blob: keyed BLAKE3 of its type and plaintext (data chunks and trees).
    BlobId
);
id_type!(
    /// A pack object: unkeyed BLAKE3 of the pack's bytes.
    PackId
);
id_type!(
    /// A snapshot record object: BLAKE3 of the object's bytes.
    SnapshotId
);
id_type!(
    /// An index segment object: BLAKE3 of the object's bytes.
    SegmentId
);
id_type!(
    /// A key slot object: random.
    SlotId
);
id_type!(
    /// A repository: random, fixed at init.
    RepoId
);
id_type!(
    /// A hold record object: BLAKE3 of the object's bytes.
    HoldId
);
id_type!(
    /// A lock record: random, chosen by the process that takes the lock.
    LockId
);

impl PackId {
    /// The name of the pack object: `data/<first 2 hex>/<64 hex>`.
    pub fn object_name(&self) -> String {
        let h = self.to_hex();
        format!("data/{}/{}", &h[..2], h)
    }

    /// Computes the pack id of pack bytes (unkeyed, so storage can be checked without keys).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
}

impl SnapshotId {
    /// The name of the snapshot object.
    pub fn object_name(&self) -> String {
        format!("snapshots/{}", self.to_hex())
    }
}

impl SegmentId {
    /// The name of the index segment object.
    pub fn object_name(&self) -> String {
        format!("index/{}", self.to_hex())
    }
}

impl HoldId {
    /// The name of the hold object.
    pub fn object_name(&self) -> String {
        format!("holds/{}", self.to_hex())
    }
}

impl LockId {
    /// The name of the lock object.
    pub fn object_name(&self) -> String {
        format!("locks/{}", self.to_hex())
    }
}

impl SlotId {
    /// The name of the key slot object.
    pub fn object_name(&self) -> String {
        format!("keys/{}", self.to_hex())
    }
}

/// Object id of a content-addressed object (pack, segment, snapshot): unkeyed BLAKE3.
pub(crate) fn content_hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// The hash a content-addressed object's name claims (packs, index segments, snapshots,
/// holds: docs/FORMAT.md, section 2), if the name has the right shape; `None` for every
/// other name (config, key slots, locks, probes) and for a malformed one. A pack's name
/// must also carry the right two-digit directory.
pub(crate) fn claimed_hash(name: &str) -> Option<[u8; 32]> {
    let id = if name.starts_with("data/") {
        PackId::from_hex(name.rsplit('/').next()?)
            .ok()
            .filter(|id| id.object_name() == name)?
    } else {
        let hex_id = name
            .strip_prefix("index/")
            .or_else(|| name.strip_prefix("snapshots/"))
            .or_else(|| name.strip_prefix("holds/"))?;
        PackId::from_hex(hex_id).ok()?
    };
    Some(*id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = BlobId::from_bytes([0xab; 32]);
        assert_eq!(id.to_hex().len(), 64);
        assert_eq!(BlobId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(format!("{id:?}"), "BlobId(abababab)");
        assert!(BlobId::from_hex("xyz").is_err());
        assert!(BlobId::from_hex(&"a".repeat(63)).is_err());
        assert!(BlobId::from_hex(&"a".repeat(66)).is_err());
    }

    #[test]
    fn pack_object_name_is_sharded() {
        let id = PackId::from_bytes([0x01; 32]);
        assert_eq!(id.object_name(), format!("data/01/{}", "01".repeat(32)));
    }
}
