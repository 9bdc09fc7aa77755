//! The crate's one error type.
//!
//! Invariant: errors name the stream, file or snapshot entry they concern, never record
//! contents or key material.

use std::path::PathBuf;

/// Everything that can go wrong in `chatvault-msglog`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository failed (storage, corruption, keys, permissions).
    #[error(transparent)]
    Core(#[from] chatvault_core::Error),
    /// The directory-tree frontend failed (the media store, a dump).
    #[error(transparent)]
    Fs(#[from] chatvault_fs::Error),
    /// A local file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The embedding server's message source failed.
    #[error("message source, conversation {conversation}: {source}")]
    Source {
        /// `tenant/conversation`.
        conversation: String,
        /// What the source reported.
        #[source]
        source: std::io::Error,
    },
    /// A caller's argument is unusable (a hostile name, records out of order, …).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was wrong.
        what: String,
        /// Why.
        reason: String,
    },
    /// The snapshot is not a message-log backup set.
    #[error("snapshot {snapshot} is not a message-log backup set (source kind {kind:?})")]
    NotABackupSet {
        /// The snapshot's id (hex).
        snapshot: String,
        /// Its source kind.
        kind: String,
    },
    /// No snapshot matches (a point in time before the first backup, an unknown set).
    #[error("no message-log snapshot {0}")]
    NoSnapshot(String),
    /// A restore target exists and is not empty.
    #[error("restore target {} is not empty", path.display())]
    TargetNotEmpty {
        /// The target.
        path: PathBuf,
    },
    /// A snapshot entry would escape the restore target or is unsafe to write.
    #[error("refused entry {entry}: {reason}")]
    Refused {
        /// The entry, as a path inside the snapshot (unprintable bytes escaped).
        entry: String,
        /// Why.
        reason: &'static str,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether the error means repository data is damaged or missing (the CLI's exit 13).
    pub fn is_corrupt(&self) -> bool {
        match self {
            Error::Core(e) => matches!(
                e,
                chatvault_core::Error::Corrupt { .. } | chatvault_core::Error::NotFound { .. }
            ),
            _ => false,
        }
    }
}
