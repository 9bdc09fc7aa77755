//! The chatvault engine: a content-addressed, deduplicating, compressed and encrypted
//! backup repository for chat servers.
//!
//! Frontends hand the engine byte streams and tree nodes; it chunks them (FastCDC with a
//! keyed gear table), names every chunk by keyed BLAKE3, stores each one once (zstd, then
//! XChaCha20-Poly1305) in packs on a [`Backend`], and records snapshots as signed, sealed
//! records pointing at a root [`Tree`]. It knows nothing of files or chats.
//!
//! The primary type is [`Repository`].
//!
//! ```
//! use chatvault_core::{BlobType, InitOptions, KeySource, MemoryBackend, OpenOptions, Repository};
//! # fn main() -> chatvault_core::Result<()> {
//! let backend = MemoryBackend::new();
//! let cache = tempfile::tempdir()?;
//! let key = KeySource::passphrase("correct horse battery staple");
//! let mut init = InitOptions::default();
//! init.kdf = chatvault_core::KdfParams::insecure_for_tests();
//! init.cache_dir = Some(cache.path().to_owned());
//! let repo = Repository::init(Box::new(backend.clone()), &key, init)?;
//!
//! let mut writer = repo.writer()?;
//! let refs = writer.write_stream(&mut &b"hello, chat"[..])?;
//! writer.finish()?;
//!
//! let mut opts = OpenOptions::default();
//! opts.cache_dir = Some(cache.path().to_owned());
//! opts.allow_weak_kdf = true; // only because the example used test parameters
//! let repo = Repository::open(Box::new(backend), &key, opts)?;
//! assert_eq!(repo.read_blob(refs[0].id, BlobType::Data)?, b"hello, chat");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
// Without the `repository` feature only the codecs are built, for the fuzz targets; the
// writer-side halves they do not call are expected to be unused there.
#![cfg_attr(not(feature = "repository"), allow(dead_code, unused_imports))]

mod backend;
mod blob;
pub mod cbor;
mod chunker;
mod config;
mod crypto;
mod envelope;
mod error;
mod format;
mod hold;
mod id;
mod index;
mod keys;
mod limits;
mod lock;
#[cfg(feature = "repository")]
mod mirror;
mod pack;
mod printable;
mod progress;
#[cfg(feature = "repository")]
mod repo;
#[cfg(feature = "repository")]
mod retention;
mod snapshot;
mod support;
mod tree;

/// The repository format version this build writes. It also reads every version from
/// [`OLDEST_FORMAT_VERSION`] up to this one (docs/FORMAT.md, section 1).
pub const FORMAT_VERSION: u32 = format::FormatVersion::CURRENT as u32;

/// The oldest repository format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = format::FormatVersion::OLDEST as u32;

#[doc(hidden)]
pub use backend::contract_tests as backend_contract;
pub use backend::{
    Backend, CreateGuard, LocalBackend, MemoryBackend, ObjectInfo, check_object_name,
};
pub use blob::{BlobType, Codec, MAX_BLOB_SIZE};
pub use chunker::{Chunk, Chunker, ChunkerParams};
pub use config::{Config, Revocation, WriterEntry};
pub use crypto::sign::PublicKey;
pub use error::{Error, ObjectName, Result};
pub use hold::{Hold, HoldRecord, MAX_HOLD_REASON};
pub use id::{BlobId, HoldId, LockId, PackId, RepoId, SegmentId, SlotId, SnapshotId};
pub use keys::{
    KdfParams, KeySource, KeyWrapper, Role, SeedWrap, SlotInfo, SlotKind, SlotSeed, TOKEN_IV_LEN,
};
pub use lock::{LockKind, LockRecord};
#[cfg(feature = "repository")]
pub use mirror::{
    ConfigOutcome, DeleteOptions, Deletion, KindReport, MirrorOptions, MirrorReport, MirrorState,
    mirror,
};
pub use printable::{printable, printable_bytes};
pub use progress::{Progress, ProgressEvent};
#[cfg(feature = "repository")]
pub use repo::{
    AddSlotOptions, BlobWriter, CheckOptions, CheckProblem, CheckReport, CopiedSnapshot,
    CopyFailure, CopyOptions, CopyReport, DamagedContent, DamagedPack, DataSubset,
    IndexRepairReport, InitOptions, LatestSnapshots, LockInfo, LockOptions, Loss, LossKind,
    OpenOptions, PackRepairOptions, PackRepairReport, ProblemKind, PruneOptions, PruneReport,
    REPAIRED_TAG, ReadLock, Recency, RepairOptions, RepoStats, Repository, ScrubReport,
    SharedChunker, SnapshotFilter, SnapshotRepair, SnapshotRepairReport, WriteStats,
    copy_snapshots, parse_size, scrub,
};
#[cfg(feature = "repository")]
pub use retention::{
    Candidate, ForgetReport, GroupKey, GroupVerdicts, KeepReason, Period, RetentionPolicy, Verdict,
};
pub use snapshot::{Snapshot, SnapshotKind, SnapshotOrigin, SnapshotRecord, Summary};
pub use tree::{ContentRef, Node, Tree};

#[cfg(feature = "repository")]
#[doc(hidden)]
pub use support::bench_support;
#[doc(hidden)]
pub use support::fuzzing;
