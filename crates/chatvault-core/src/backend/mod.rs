//! Where repository objects live: the [`Backend`] trait and its local and in-memory
//! implementations.
//!
//! Invariants every implementation keeps: objects are addressed by name (`config`,
//! `keys/<hex>`, `data/<2 hex>/<hex>`, …), never by filesystem path; [`Backend::put`] is
//! put-if-absent where the store can enforce it, and a reader never observes a partially
//! written object.
//!
//! **Invariant** (stores that do not enforce creates): correctness never depends on a
//! store refusing an overwrite. Every name `put` writes is either content-addressed (packs,
//! index segments: same name, same bytes) or a fresh random id (snapshots, key slots,
//! locks, holds), so a create that raced or was retried writes the same bytes or a name
//! nobody else uses; [`Backend::create_guard`] says what a store gives.

mod local;
mod memory;

pub use local::LocalBackend;
pub use memory::MemoryBackend;

use crate::error::{Error, Result};

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's full name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether a store refuses a `put` over an existing object by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateGuard {
    /// The store refuses it atomically (a local directory's `link`, S3 `If-None-Match: *`
    /// where the server honours it, Azure, GCS).
    Enforced,
    /// The store overwrites (Garage ignores `If-None-Match`; WebDAV and SFTP have no
    /// conditional create): `put` checks with a `stat` first, which leaves a window
    /// between the check and the write that only unique names close.
    NotEnforced,
    /// Not known: the probe could not write (read-only credentials); `put` behaves as for
    /// [`NotEnforced`](CreateGuard::NotEnforced).
    Unknown,
}

impl CreateGuard {
    /// `enforced`, `not-enforced` or `unknown`, for reports and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CreateGuard::Enforced => "enforced",
            CreateGuard::NotEnforced => "not-enforced",
            CreateGuard::Unknown => "unknown",
        }
    }
}

/// Storage for repository objects.
///
/// Contract:
/// - [`put`](Backend::put) stores a new object atomically and durably: when it returns
///   `Ok`, the object survives a crash; until then, no reader sees any of it. It never
///   overwrites: an existing name gives [`Error::AlreadyExists`].
/// - [`replace`](Backend::replace) atomically swaps an object's whole content (used only for
///   `config`, whose sequence number guards against rollback, and to refresh `locks/`
///   objects).
/// - [`get`](Backend::get) and [`get_range`](Backend::get_range) give
///   [`Error::NotFound`] for a missing object; a range past the end is an error, never
///   silently short.
/// - [`list`](Backend::list) returns every object whose name starts with the prefix.
/// - [`delete`](Backend::delete) of a missing object is `Ok` (deletion is idempotent).
/// - Storage failures are typed: [`Error::StorageDenied`] when the store refuses the
///   credentials (never retried), [`Error::StorageUnavailable`] when passing failures
///   outlasted the retries, [`Error::Backend`] for anything else.
///
/// Implementations must be safe to share between threads.
pub trait Backend: Send + Sync {
    /// A human-readable location (a path, a URL without credentials).
    fn location(&self) -> String;
    /// Stores a new object; fails with [`Error::AlreadyExists`] if the name is taken.
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Atomically creates or replaces an object (`config`, lock refreshes).
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()>;
    /// Reads a whole object.
    fn get(&self, name: &str) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Reads `buf.len()` bytes at `offset` into `buf`, as [`get_range`](Backend::get_range)
    /// does, for readers that reuse one buffer. By default, a `get_range` and a copy.
    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes = self.get_range(name, offset, buf.len() as u64)?;
        if bytes.len() != buf.len() {
            return Err(Error::backend(
                name,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short ranged read"),
            ));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }
    /// Lists objects whose names start with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Deletes an object (missing is fine).
    fn delete(&self, name: &str) -> Result<()>;
    /// The object's size, or [`Error::NotFound`].
    fn stat(&self, name: &str) -> Result<ObjectInfo>;
    /// Whether [`put`](Backend::put) over an existing object is refused by the store
    /// itself. By default, [`CreateGuard::Enforced`].
    fn create_guard(&self) -> CreateGuard {
        CreateGuard::Enforced
    }
    /// How many pack uploads a writer keeps in flight when `OpenOptions::uploads` does
    /// not say: each holds a pack in memory, so a store
    /// without per-request latency to hide (a local disk) gains nothing from more than
    /// one. By default 1.
    fn uploads_in_flight(&self) -> usize {
        1
    }
    /// How many object reads a reader (restore, check, prune, copy) keeps in flight. A
    /// store with per-request latency (an object store: tens of milliseconds before the
    /// first byte) is read faster by more requests at once than there are cores; a local
    /// disk gains nothing beyond the CPU pool's threads. By default 1, which means "as
    /// many as the CPU pool has threads".
    fn reads_in_flight(&self) -> usize {
        1
    }
}

/// A shared backend is a backend: a test keeps a handle on a store (to inject faults, or
/// to look at it) while a repository owns a box of the same store.
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        (**self).put(name, bytes)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        (**self).replace(name, bytes)
    }
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        (**self).get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        (**self).get_range(name, offset, len)
    }
    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).get_range_into(name, offset, buf)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        (**self).list(prefix)
    }
    fn delete(&self, name: &str) -> Result<()> {
        (**self).delete(name)
    }
    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        (**self).stat(name)
    }
    fn create_guard(&self) -> CreateGuard {
        (**self).create_guard()
    }
    fn uploads_in_flight(&self) -> usize {
        (**self).uploads_in_flight()
    }
    fn reads_in_flight(&self) -> usize {
        (**self).reads_in_flight()
    }
}

/// Checks that `name` is a plain object name (what [`Backend`] implementations outside
/// this crate use to filter listings and refuse bad names).
pub fn check_object_name(name: &str) -> Result<()> {
    check_name(name)
}

/// Refuses names that are not plain relative object names: only `[a-z0-9._-]` components
/// separated by `/`, no empty, `.` or `..` components.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("object name", format!("{name:?}")))
    }
}

/// The range check shared by implementations.
pub(crate) fn range_in(name: &str, size: u64, offset: u64, len: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::corrupt(
            name,
            format!("range {offset}+{len} is past the end of a {size}-byte object"),
        )),
    }
}

/// The trait contract, run against every implementation (here and in the remote-backend
/// crate). Panics on the first broken promise; for tests only.
#[doc(hidden)]
pub mod contract_tests {
    use super::*;

    /// Runs the contract against an empty store.
    #[allow(clippy::missing_panics_doc)]
    pub fn run(b: &dyn Backend) {
        b.put("data/ab/abcd", b"hello world").unwrap();
        assert!(matches!(
            b.put("data/ab/abcd", b"other"),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(b.get("data/ab/abcd").unwrap(), b"hello world");
        assert_eq!(b.get_range("data/ab/abcd", 6, 5).unwrap(), b"world");
        assert!(b.get_range("data/ab/abcd", 6, 6).is_err());
        assert!(b.get_range("data/ab/abcd", u64::MAX, 2).is_err());
        assert_eq!(b.stat("data/ab/abcd").unwrap().size, 11);
        assert!(b.get("data/ab/none").unwrap_err().is_not_found());
        assert!(b.stat("data/ab/none").unwrap_err().is_not_found());

        b.put("index/01", b"1").unwrap();
        b.put("index/02", b"22").unwrap();
        let mut l = b.list("index/").unwrap();
        l.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(
            l,
            vec![
                ObjectInfo {
                    name: "index/01".into(),
                    size: 1
                },
                ObjectInfo {
                    name: "index/02".into(),
                    size: 2
                },
            ]
        );
        assert_eq!(b.list("data/").unwrap().len(), 1);
        assert!(b.list("snapshots/").unwrap().is_empty());

        b.replace("config", b"v1").unwrap();
        b.replace("config", b"v2").unwrap();
        assert_eq!(b.get("config").unwrap(), b"v2");

        b.delete("index/01").unwrap();
        b.delete("index/01").unwrap();
        assert_eq!(b.list("index/").unwrap().len(), 1);

        for bad in [
            "",
            "/abs",
            "a/../b",
            "a//b",
            "A",
            "a/./b",
            "x\0y",
            "data/ab/c d",
        ] {
            assert!(b.put(bad, b"x").is_err(), "{bad:?} accepted");
            assert!(b.get(bad).is_err(), "{bad:?} accepted");
        }
    }
}
