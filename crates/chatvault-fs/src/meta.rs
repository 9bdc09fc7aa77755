//! What the filesystem frontend records about each entry: the `meta` bytes of a tree node.
//!
//! Encoding (docs/FORMAT.md, "Filesystem node meta"): a canonical CBOR map with small
//! integer keys, written with core's canonical writer.
//!
//! | key | field      | value                                         | when absent      |
//! |-----|------------|-----------------------------------------------|------------------|
//! | 0   | version    | unsigned, `1`                                 | never            |
//! | 1   | kind       | 0 file, 1 directory, 2 symbolic link          | never            |
//! | 2   | mode       | permission bits (`mode & 0o7777`)             | never            |
//! | 3   | uid        | unsigned                                      | never            |
//! | 4   | gid        | unsigned                                      | never            |
//! | 5   | size       | unsigned, bytes (files; 0 otherwise)          | never            |
//! | 6   | mtime      | signed seconds since the Unix epoch           | never            |
//! | 7   | mtime_ns   | unsigned nanoseconds, < 10⁹                   | 0                |
//! | 8   | ctime      | signed seconds (change detection only)        | 0                |
//! | 9   | ctime_ns   | unsigned nanoseconds                          | 0                |
//! | 10  | inode      | unsigned (change detection only)              | 0                |
//! | 11  | target     | byte string, a symbolic link's target         | not a link       |
//! | 12  | digest     | 32-byte BLAKE3 of the file's content          | not a file       |
//! | 13  | error      | text: why the entry could not be read         | read fine        |
//!
//! Invariants:
//! - **Canonical**: the same entry state always gives the same bytes (so an unchanged
//!   directory gives an unchanged tree id). Access times are not recorded for that reason.
//! - An entry with `error` set was seen but not read: it has no content and no subtree,
//!   and restore reports it instead of writing it.
//! - Unknown keys are skipped; an unknown version is refused.

use chatvault_core::cbor::{Reader, Writer};

const META_VERSION: u32 = 1;

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, stored as a link (never followed).
    Symlink,
}

impl EntryKind {
    fn code(self) -> u64 {
        match self {
            EntryKind::File => 0,
            EntryKind::Dir => 1,
            EntryKind::Symlink => 2,
        }
    }

    /// A short lowercase name (`file`, `dir`, `symlink`) for listings and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
        }
    }
}

/// A point in time: seconds since the Unix epoch and nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub secs: i64,
    /// Nanoseconds, below 10⁹.
    pub nanos: u32,
}

/// The recorded state of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsMeta {
    /// File, directory or link.
    pub kind: EntryKind,
    /// Permission bits, `mode & 0o7777`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Content length in bytes (files only).
    pub size: u64,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change; used only to decide whether a file changed.
    pub ctime: Timestamp,
    /// Inode number; used only to decide whether a file changed.
    pub inode: u64,
    /// A link's target bytes.
    pub link_target: Option<Vec<u8>>,
    /// BLAKE3 of a file's whole content, checked at restore.
    pub digest: Option<[u8; 32]>,
    /// Why the entry could not be read at backup time, if it could not.
    pub error: Option<String>,
}

impl FsMeta {
    /// The canonical encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(META_VERSION.into()));
            f.field(1, |w| w.uint(self.kind.code()));
            f.field(2, |w| w.uint(self.mode.into()));
            f.field(3, |w| w.uint(self.uid.into()));
            f.field(4, |w| w.uint(self.gid.into()));
            f.field(5, |w| w.uint(self.size));
            f.field(6, |w| w.int(self.mtime.secs));
            if self.mtime.nanos != 0 {
                f.field(7, |w| w.uint(self.mtime.nanos.into()));
            }
            if self.ctime.secs != 0 {
                f.field(8, |w| w.int(self.ctime.secs));
            }
            if self.ctime.nanos != 0 {
                f.field(9, |w| w.uint(self.ctime.nanos.into()));
            }
            if self.inode != 0 {
                f.field(10, |w| w.uint(self.inode));
            }
            if let Some(t) = &self.link_target {
                f.field(11, |w| w.bytes(t));
            }
            if let Some(d) = &self.digest {
                f.field(12, |w| w.bytes(d));
            }
            if let Some(e) = &self.error {
                f.field(13, |w| w.text(e));
            }
        });
        w.into_bytes()
    }

    /// Decodes node meta. Errors are core's `Corrupt` or `UnsupportedFormat`.
    pub fn decode(bytes: &[u8]) -> chatvault_core::Result<FsMeta> {
        let mut r = Reader::new(bytes, "file meta");
        let mut fields = r.fields()?;
        r.version(&mut fields, META_VERSION)?;
        let mut m = FsMeta::empty(EntryKind::File);
        let mut kind = None;
        while let Some(key) = fields.next_key(&mut r)? {
            match key {
                1 => kind = Some(r.u64("kind")?),
                2 => m.mode = r.u32("mode")?,
                3 => m.uid = r.u32("uid")?,
                4 => m.gid = r.u32("gid")?,
                5 => m.size = r.u64("size")?,
                6 => m.mtime.secs = r.i64("mtime")?,
                7 => m.mtime.nanos = nanos(&mut r, "mtime_ns")?,
                8 => m.ctime.secs = r.i64("ctime")?,
                9 => m.ctime.nanos = nanos(&mut r, "ctime_ns")?,
                10 => m.inode = r.u64("inode")?,
                11 => m.link_target = Some(r.bytes("target")?.to_vec()),
                12 => m.digest = Some(r.id("digest")?),
                13 => m.error = Some(r.text("error")?.to_owned()),
                _ => r.skip()?,
            }
        }
        r.finish()?;
        m.kind = match kind {
            Some(0) => EntryKind::File,
            Some(1) => EntryKind::Dir,
            Some(2) => EntryKind::Symlink,
            Some(k) => return Err(r.corrupt(format!("unknown entry kind {k}"))),
            None => return Err(r.corrupt("no entry kind")),
        };
        if m.mode > 0o7777 {
            return Err(r.corrupt("mode has bits beyond 0o7777"));
        }
        Ok(m)
    }

    /// A blank record of `kind`: mode 0, owner 0, epoch times.
    pub fn empty(kind: EntryKind) -> FsMeta {
        FsMeta {
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            link_target: None,
            digest: None,
            error: None,
        }
    }

    /// Whether a file looks unchanged since `self` was recorded: same size, modification
    /// and change times and inode. A file rewritten in place keeps its inode but changes
    /// its ctime, which no unprivileged process can set back.
    pub fn unchanged_since(&self, earlier: &FsMeta) -> bool {
        self.kind == EntryKind::File
            && earlier.kind == EntryKind::File
            && earlier.error.is_none()
            && earlier.digest.is_some()
            && self.size == earlier.size
            && self.mtime == earlier.mtime
            && self.ctime == earlier.ctime
            && self.inode == earlier.inode
    }
}

fn nanos(r: &mut Reader<'_>, what: &str) -> chatvault_core::Result<u32> {
    let n = r.u32(what)?;
    if n >= 1_000_000_000 {
        return Err(r.corrupt(format!("{what} is not below 10^9")));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file() -> FsMeta {
        FsMeta {
            kind: EntryKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            size: 5,
            mtime: Timestamp {
                secs: 1_767_571_200,
                nanos: 5,
            },
            ctime: Timestamp {
                secs: 1_767_571_201,
                nanos: 0,
            },
            inode: 42,
            link_target: None,
            digest: Some(*blake3::hash(b"hello").as_bytes()),
            error: None,
        }
    }

    /// Golden vector: these bytes are the format. A change here is a format change.
    #[test]
    fn golden_file_meta() {
        let bytes = file().encode();
        assert_eq!(
            hex(&bytes),
            "ab00010100021901a4031903e80418640505061a695aff000705081a695aff010a182a0c5820\
             ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
        assert_eq!(FsMeta::decode(&bytes).unwrap(), file());
    }

    #[test]
    fn golden_symlink_and_unreadable() {
        let mut link = FsMeta::empty(EntryKind::Symlink);
        link.mode = 0o777;
        link.link_target = Some(b"../x".to_vec());
        assert_eq!(
            hex(&link.encode()),
            "a800010102021901ff03000400050006000b442e2e2f78"
        );
        let mut bad = FsMeta::empty(EntryKind::File);
        bad.error = Some("permission denied".into());
        let bytes = bad.encode();
        assert_eq!(FsMeta::decode(&bytes).unwrap(), bad);
    }

    #[test]
    fn unknown_keys_are_skipped_and_bad_values_refused() {
        // A newer writer's key 20 is skipped.
        let mut w = Writer::new();
        w.fields(|f| {
            f.field(0, |w| w.uint(1));
            f.field(1, |w| w.uint(1));
            f.field(20, |w| w.text("future"));
        });
        let m = FsMeta::decode(&w.into_bytes()).unwrap();
        assert_eq!(m.kind, EntryKind::Dir);
        for (key, value) in [(1u64, 7u64), (2, 0o17777), (7, 1_000_000_000)] {
            let mut w = Writer::new();
            w.fields(|f| {
                f.field(0, |w| w.uint(1));
                if key != 1 {
                    f.field(1, |w| w.uint(0));
                }
                f.field(key, |w| w.uint(value));
            });
            assert!(FsMeta::decode(&w.into_bytes()).is_err(), "key {key}");
        }
        assert!(FsMeta::decode(&[0xa1, 0x00, 0x02]).is_err(), "version 2");
        assert!(FsMeta::decode(b"").is_err());
    }

    #[test]
    fn change_detection() {
        let a = file();
        assert!(a.unchanged_since(&a));
        for change in [
            |m: &mut FsMeta| m.size += 1,
            |m: &mut FsMeta| m.mtime.nanos += 1,
            |m: &mut FsMeta| m.ctime.secs += 1,
            |m: &mut FsMeta| m.inode += 1,
            |m: &mut FsMeta| m.digest = None,
            |m: &mut FsMeta| m.error = Some("x".into()),
        ] {
            let mut b = file();
            change(&mut b);
            assert!(!a.unchanged_since(&b) || !b.unchanged_since(&a));
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    proptest! {
        /// Hostile meta from a tampered or buggy tree: an error, never a panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = FsMeta::decode(&bytes);
        }

        /// Valid meta with one byte flipped: decodes to something or errs, never panics.
        #[test]
        fn decoding_mutated_meta_never_panics(i in 0usize..1000, bit in 0u8..8) {
            let mut bytes = file().encode();
            let i = i % bytes.len();
            bytes[i] ^= 1 << bit;
            let _ = FsMeta::decode(&bytes);
        }

        #[test]
        fn round_trip(mode in 0u32..=0o7777, uid: u32, gid: u32, size: u64, secs: i64,
                      nanos in 0u32..1_000_000_000, inode: u64,
                      target in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
                      kind in 0u8..3) {
            let kind = [EntryKind::File, EntryKind::Dir, EntryKind::Symlink][kind as usize];
            let m = FsMeta { kind, mode, uid, gid, size, mtime: Timestamp { secs, nanos },
                ctime: Timestamp { secs: secs.wrapping_add(1), nanos }, inode,
                link_target: target, digest: Some([7; 32]), error: None };
            let bytes = m.encode();
            prop_assert_eq!(FsMeta::decode(&bytes).unwrap(), m.clone());
            prop_assert_eq!(FsMeta::decode(&bytes).unwrap().encode(), bytes);
        }
    }
}
