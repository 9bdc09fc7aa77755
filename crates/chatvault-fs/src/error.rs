//! The crate's one error type.
//!
//! Invariant: errors name the file or snapshot entry they concern (the operator needs it to
//! act) but never contain file contents or key material.

use std::path::PathBuf;

/// Everything that can go wrong in `chatvault-fs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository failed (storage, corruption, keys, permissions).
    #[error(transparent)]
    Core(#[from] chatvault_core::Error),
    /// A local file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A path given to back up does not exist or cannot be examined.
    #[error("cannot back up {}: {source}", path.display())]
    Source {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The restore target exists and is not empty, and overwriting was not asked for.
    #[error("restore target {} is not empty (use overwrite to restore into it)", path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// The path asked for is not in the snapshot.
    #[error("{path} is not in the snapshot")]
    NotInSnapshot {
        /// The path asked for.
        path: String,
    },
    /// The entry asked for is not a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path asked for.
        path: String,
    },
    /// A snapshot entry would escape the restore target or is otherwise unsafe to write.
    #[error("refused entry {entry}: {reason}")]
    Refused {
        /// The entry, as a path inside the snapshot (unprintable bytes escaped).
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// A file's restored content does not match the digest recorded at backup time.
    #[error("{entry}: restored content does not match the digest recorded at backup")]
    DigestMismatch {
        /// The entry.
        entry: String,
    },
    /// A file's node meta in a tree does not decode.
    #[error("{entry}: {reason}")]
    BadMeta {
        /// The entry.
        entry: String,
        /// What was wrong.
        reason: String,
    },
    /// An exclusion or inclusion pattern does not parse.
    #[error("invalid pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// Files could not be read and the options asked to fail on that.
    #[error("{count} file(s) could not be read; first: {first}")]
    Unreadable {
        /// How many.
        count: usize,
        /// The first one, with its error.
        first: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
