//! Frontend for directory trees (media stores, configuration, database files): backs up
//! paths into a `chatvault-core` repository and restores snapshots to disk.
//!
//! The primary functions are [`backup`] and [`restore`]; [`walk`], [`cat`], [`diff`] and
//! [`tree_size`] read snapshots without restoring them.
//!
//! ```
//! use chatvault_core::{InitOptions, KdfParams, KeySource, MemoryBackend, Repository};
//! use chatvault_fs::{BackupOptions, RestoreOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir(dir.path().join("media"))?;
//! std::fs::write(dir.path().join("media/photo.jpg"), b"not really a photo")?;
//!
//! let init = InitOptions {
//!     kdf: KdfParams::insecure_for_tests(),
//!     cache_dir: Some(dir.path().join("cache")),
//!     ..InitOptions::default()
//! };
//! let key = KeySource::passphrase("correct horse battery staple");
//! let repo = Repository::init(Box::new(MemoryBackend::new()), &key, init)?;
//!
//! let media = dir.path().join("media");
//! let opts = BackupOptions { paths: vec![media.clone()], ..BackupOptions::default() };
//! let report = chatvault_fs::backup(&repo, &opts)?;
//! assert_eq!(report.files_new, 1);
//!
//! let snapshot = repo.load_snapshot(report.snapshot)?;
//! let target = dir.path().join("restored");
//! let opts = RestoreOptions { target: target.clone(), ..RestoreOptions::default() };
//! chatvault_fs::restore(&repo, snapshot.record.root, &opts)?;
//! let restored = target.join(media.strip_prefix("/")?).join("photo.jpg");
//! assert_eq!(std::fs::read(restored)?, b"not really a photo");
//! # Ok(()) }
//! ```
//!
//! # Patterns
//!
//! Exclusion and inclusion patterns are globs. A pattern without `/` matches an entry's
//! name anywhere (`*.tmp`, `cache`); a pattern with `/` matches the whole absolute path
//! (`/srv/chat/tmp`, `**/thumbnails`), where `*` stays within one path component and `**`
//! crosses them. A matching directory is left out (or taken) with everything below it.
//!
//! # What is recorded
//!
//! Each entry's node carries its kind, permission bits, owner ids, size, modification
//! time, change time and inode (for change detection), a link's target, and the BLAKE3
//! digest of a file's content ([`FsMeta`]; docs/FORMAT.md, "Filesystem node meta").
//! Sockets, FIFOs and devices are skipped with a warning. Hard links are stored as
//! separate files (their content is deduplicated). Extended attributes and ACLs are not
//! recorded yet.
#![deny(missing_docs)]

mod backup;
mod browse;
mod error;
mod meta;
mod names;
mod pattern;
mod progress;
mod restore;

pub use backup::{
    BackupOptions, BackupReport, DirBackup, DirOptions, ParentChoice, Problem, ProblemKind,
    SOURCE_KIND, STDIN_SOURCE_KIND, backup, backup_dir, backup_stream, hostname, latest_snapshot,
    stream_node,
};
pub use browse::{Change, Difference, Entry, TreeSize, cat, diff, tree_size, walk};
pub use error::{Error, Result};
pub use meta::{EntryKind, FsMeta, Timestamp};
pub use names::{check_name, display as display_path};
pub use pattern::Patterns;
pub use progress::{FsEvent, FsProgress};
pub use restore::{PARTIAL_DIR, RestoreOptions, RestoreReport, restore};
