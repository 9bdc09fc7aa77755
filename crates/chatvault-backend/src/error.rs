//! The crate's one error type.
//!
//! Invariant: no variant carries a credential or the text of a location the user gave
//! (that text may hold one): reasons are built from fixed words, option keys and parsed,
//! credential-free parts.

/// Everything that can go wrong in `chatvault-backend` outside the [`Backend`] calls
/// themselves (those return [`chatvault_core::Error`]).
///
/// [`Backend`]: chatvault_core::Backend
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The location string does not parse.
    #[error("invalid repository location: {reason}")]
    InvalidLocation {
        /// What is wrong with it.
        reason: String,
    },
    /// The location names a scheme this build does not know.
    #[error(
        "unknown location scheme {scheme:?} (known: {schemes}); a local directory whose name \
         has a colon is written ./NAME",
        schemes = crate::location::SCHEMES
    )]
    UnknownScheme {
        /// The scheme as given (printable characters only).
        scheme: String,
    },
    /// A `--option key=value` that the location's scheme does not take, or a bad value.
    #[error("invalid storage option {key}: {reason}")]
    InvalidOption {
        /// The key.
        key: String,
        /// Why it was refused.
        reason: String,
    },
    /// Connecting to the store failed (including a refused credential: see
    /// [`chatvault_core::Error::StorageDenied`]).
    #[error(transparent)]
    Storage(#[from] chatvault_core::Error),
}

impl Error {
    pub(crate) fn location(reason: impl Into<String>) -> Self {
        Error::InvalidLocation {
            reason: reason.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
