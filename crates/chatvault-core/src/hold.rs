//! Hold records (legal hold): an admin's signed statement that a snapshot must be kept.
//!
//! A hold is an envelope (magic `CVHOLDRC`, signer = the admin key, sequence = the admin's
//! writer sequence) whose body is the CBOR map below, **not encrypted**: anyone with read
//! access to storage can see which snapshot is held and the reason text (docs/FORMAT.md,
//! section 10.6). Stored as `holds/<BLAKE3 of the object>`.
//!
//! | key | field        | value                                   | when absent |
//! |-----|--------------|-----------------------------------------|-------------|
//! | 0   | version      | unsigned, `1`                           | never       |
//! | 1   | snapshot     | byte string, 32-byte snapshot id        | never       |
//! | 2   | time_unix_ms | integer, when the hold was placed       | never       |
//! | 3   | reason       | text (a case number, a ticket)          | empty       |
//!
//! Invariants: canonical (the same hold encodes to the same bytes); required fields are
//! required; unknown keys are skipped and an unknown version is refused first; decoding
//! never panics. Whether a hold is trusted (signed by the config's admin key) is decided
//! where holds are loaded, not here.

use crate::cbor::{Reader, Writer};
use crate::crypto::sign::PublicKey;
use crate::error::Result;
use crate::id::{HoldId, SnapshotId};

/// The hold record encoding version this build writes and reads.
const HOLD_VERSION: u32 = 1;

/// Longest reason text accepted when placing a hold.
pub const MAX_HOLD_REASON: usize = 1024;

/// What a hold says: keep this snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    /// The snapshot that must be kept.
    pub snapshot: SnapshotId,
    /// When the hold was placed (milliseconds since the Unix epoch, the admin's clock;
    /// informational only).
    pub time_unix_ms: i64,
    /// Why (a case or ticket reference). Stored in the clear: never put secrets here.
    pub reason: String,
}

impl HoldRecord {
    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(HOLD_VERSION.into()));
            f.field(1, |w| w.bytes(self.snapshot.as_bytes()));
            f.field(2, |w| w.int(self.time_unix_ms));
            if !self.reason.is_empty() {
                f.field(3, |w| w.text(&self.reason));
            }
        });
        w.into_bytes()
    }

    /// Decodes a hold body; `object` names the hold in errors.
    pub fn decode(bytes: &[u8], object: &str) -> Result<HoldRecord> {
        let mut r = Reader::new(bytes, object);
        let mut fields = r.fields()?;
        r.version(&mut fields, HOLD_VERSION)?;
        let (mut snapshot, mut time, mut reason) = (None, None, String::new());
        while let Some(key) = fields.next_key(&mut r)? {
            match key {
                1 => snapshot = Some(SnapshotId::from_bytes(r.id("snapshot")?)),
                2 => time = Some(r.i64("time")?),
                3 => reason = r.text("reason")?.to_owned(),
                _ => r.skip()?,
            }
        }
        r.finish()?;
        Ok(HoldRecord {
            snapshot: snapshot.ok_or_else(|| r.corrupt("hold names no snapshot"))?,
            time_unix_ms: time.ok_or_else(|| r.corrupt("hold has no time"))?,
            reason,
        })
    }
}

/// A hold as loaded: verified, with its object id and signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The object id (`holds/<hex>`): BLAKE3 of the object.
    pub id: HoldId,
    /// The admin key that signed it.
    pub signer: PublicKey,
    /// What it says.
    pub record: HoldRecord,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::Signer;
    use crate::envelope::{self, magic};
    use crate::error::Error;
    use crate::id::RepoId;

    fn sample() -> HoldRecord {
        HoldRecord {
            snapshot: SnapshotId::from_bytes([0xab; 32]),
            time_unix_ms: 1_767_225_600_000,
            reason: "case 42".into(),
        }
    }

    #[test]
    fn golden_hold_body_and_object() {
        let body = sample().encode();
        assert_eq!(hex::encode(&body), GOLDEN_BODY);
        assert_eq!(HoldRecord::decode(&body, "h").unwrap(), sample());
        let admin = Signer::from_seed(&[1; 32]);
        let repo = RepoId::from_bytes([2; 32]);
        let obj = envelope::seal(magic::HOLD, &admin, &repo, 7, &body);
        assert_eq!(hex::encode(&obj), GOLDEN_OBJECT);
        let env = envelope::open(&obj, magic::HOLD, "h", &repo).unwrap();
        assert_eq!((env.signer, env.sequence), (admin.public(), 7));
        let minimal = HoldRecord {
            reason: String::new(),
            ..sample()
        };
        assert_eq!(hex::encode(minimal.encode()), GOLDEN_MINIMAL);
    }

    const GOLDEN_BODY: &str = concat!(
        "a40001015820abababababababababababababababababababababababababababababababab",
        "021b0000019b76daa800036763617365203432"
    );
    const GOLDEN_MINIMAL: &str = "a30001015820abababababababababababababababababababababababababababababababab021b0000019b76daa800";
    const GOLDEN_OBJECT: &str = concat!(
        "4356484f4c445243020000008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801",
        "b40f6f5c070000000000000039000000a40001015820abababababababababababababababababab",
        "abababababababababababababab021b0000019b76daa800036763617365203432454d77a68a6951",
        "154173a3e7aa0c6cf47f2c7b6363863d29a06beac6504d00dc64b5a4ed92dfc23aa8e11b1aa54d88",
        "bd90fd5dc41489705b2326380b45886608",
    );

    #[test]
    fn unknown_keys_are_skipped_and_versions_refused() {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(1));
            f.field(1, |w| w.bytes(&[0xab; 32]));
            f.field(2, |w| w.int(5));
            f.field(9, |w| w.text("later"));
        });
        let h = HoldRecord::decode(&w.into_bytes(), "h").unwrap();
        assert_eq!((h.time_unix_ms, h.reason.as_str()), (5, ""));
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(2));
            f.field(1, |w| w.bytes(&[0xab; 32]));
        });
        assert!(matches!(
            HoldRecord::decode(&w.into_bytes(), "h"),
            Err(Error::UnsupportedFormat { found: 2, .. })
        ));
    }

    #[test]
    fn missing_fields_truncations_and_flips_are_errors_never_panics() {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(1));
            f.field(2, |w| w.int(5));
        });
        assert!(matches!(
            HoldRecord::decode(&w.into_bytes(), "h"),
            Err(Error::Corrupt { .. })
        ));
        let body = sample().encode();
        for n in 0..body.len() {
            assert!(HoldRecord::decode(&body[..n], "h").is_err(), "length {n}");
        }
        for i in 0..body.len() {
            let mut b = body.clone();
            b[i] ^= 0x40;
            let _ = HoldRecord::decode(&b, "h"); // must not panic
        }
    }

    #[test]
    fn ids_print_and_parse() {
        let id = HoldId::from_bytes([0x1f; 32]);
        assert_eq!(HoldId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.object_name(), format!("holds/{}", "1f".repeat(32)));
        assert!(HoldId::from_hex("zz").is_err());
    }
}
