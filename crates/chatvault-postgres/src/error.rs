//! The crate's one error type.
//!
//! Invariant: no variant carries a password, a connection URL or record contents; a
//! database error is kept as its SQLSTATE-bearing message (the server never echoes a
//! password), and connection targets are shown as `user@host:port/db`.

/// Everything that can go wrong in `chatvault-postgres`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection settings are unusable.
    #[error("invalid PostgreSQL connection settings: {0}")]
    Config(String),
    /// Connecting to the database failed.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `user@host:port/db`, without a password.
        target: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// A query failed.
    #[error("PostgreSQL {what}: {source}")]
    Query {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// The mapping does not fit the table (a missing column, a type that is not a time).
    #[error("mapping: {0}")]
    Mapping(String),
    /// A stream's stored cursor is unreadable, or was written by another mapping.
    #[error("cursor of {conversation}: {reason}")]
    Cursor {
        /// `tenant/conversation`.
        conversation: String,
        /// Why.
        reason: String,
    },
    /// A restore target table is unusable (not empty, …).
    #[error("restore into {table}: {reason}")]
    Target {
        /// The table.
        table: String,
        /// Why.
        reason: String,
    },
    /// Reading a local file (a password file) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The message-log frontend failed (reading a set to restore).
    #[error(transparent)]
    Msglog(#[from] chatvault_msglog::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn query(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> Error {
        let what = what.into();
        move |source| Error::Query { what, source }
    }
}
