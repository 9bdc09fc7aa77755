//! The crate's one error type.
//!
//! Invariant: no variant carries key material, passphrases or plaintext; object names and
//! short static reasons only, so errors can be logged and shown to operators as they are.

use std::fmt;

/// The name of a repository object an error is about (`config`, `keys/…`, `data/…/…`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ObjectName(String);

impl ObjectName {
    /// Wraps an object name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for ObjectName {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for ObjectName {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Everything that can go wrong in `chatvault-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object's bytes failed verification: bad magic, truncated, failed authentication,
    /// content that does not match its id, or an encoding that does not decode.
    #[error("{object} is corrupt: {reason}")]
    Corrupt {
        /// The object (or `object#blob`) that failed.
        object: ObjectName,
        /// What was wrong, for humans.
        reason: String,
    },
    /// No key slot opens with the given passphrase or key file.
    #[error("wrong passphrase or key file: no key slot of this repository opens with it")]
    WrongPassphrase,
    /// The key store outside the repository that a slot's key lives in (a PKCS#11 token)
    /// refused its PIN: wrong, or locked after too many wrong attempts. No other slot is
    /// tried after this, so that a wrong PIN is presented once, not once per slot.
    #[error("wrong PIN for {store}: {reason}")]
    WrongPin {
        /// The store, as `token "LABEL"` (never the PIN).
        store: String,
        /// Incorrect, or locked.
        reason: String,
    },
    /// The key source opens only slots of one kind (a PKCS#11 token, a KMS command) and
    /// the repository has none of that kind (or only damaged ones); nothing was asked of
    /// the store.
    #[error("the repository has no {kind} key slot (or only damaged ones)")]
    NoSlotOfKind {
        /// The kind the source opens.
        kind: crate::keys::SlotKind,
    },
    /// A key store outside the repository (a PKCS#11 token, a KMS command) could not wrap
    /// or unwrap a slot's seed: the token or its key is missing, the command failed, or
    /// the store does not hold the key that wrapped the slot.
    #[error("{store}: {reason}")]
    KeyStore {
        /// The store, as `token "LABEL"` or `the unwrap command`.
        store: String,
        /// What went wrong, for humans (never a PIN or a secret).
        reason: String,
    },
    /// The object was written by a format version this build does not read.
    #[error("{object} uses format version {found}, this build reads version {supported}")]
    UnsupportedFormat {
        /// The object.
        object: ObjectName,
        /// The version found.
        found: u32,
        /// The version this build supports.
        supported: u32,
    },
    /// An object that should exist does not.
    #[error("{object} not found")]
    NotFound {
        /// The missing object.
        object: ObjectName,
    },
    /// An object with that name already exists (write-once storage).
    #[error("{object} already exists")]
    AlreadyExists {
        /// The existing object.
        object: ObjectName,
    },
    /// There is no repository at the given location.
    #[error("no repository at {location}")]
    RepositoryMissing {
        /// Where we looked.
        location: String,
    },
    /// A signature is missing, invalid, by an unknown or revoked writer, or out of scope.
    #[error("{object} is not trusted: {reason}")]
    Untrusted {
        /// The object.
        object: ObjectName,
        /// Why it was refused.
        reason: String,
    },
    /// The repository presents an older state than this client has already seen.
    #[error("rollback refused: {what} went back from {pinned} to {found}")]
    Rollback {
        /// What went back (config sequence, key generation, repository id).
        what: &'static str,
        /// What the client remembered.
        pinned: u64,
        /// What the repository now shows.
        found: u64,
    },
    /// The opened key slot's role does not allow the operation.
    #[error("the {role} key cannot {operation}")]
    PermissionDenied {
        /// The role of the opened slot.
        role: &'static str,
        /// What was attempted.
        operation: &'static str,
    },
    /// The opened key slot lacks the keys of a key generation it needs: it was not granted
    /// a rotation (a backup slot created before grants reached backup keys, or one whose
    /// writer was revoked).
    #[error(
        "this key slot holds no keys of key generation {generation}: it was not granted \
         that rotation; an admin must create a new key slot for it"
    )]
    KeyNotGranted {
        /// The generation whose keys are missing.
        generation: u32,
    },
    /// The snapshot is under a legal hold: it cannot be deleted until an admin key
    /// releases every hold on it.
    #[error("snapshot {snapshot} is held: release its holds first (an admin key)")]
    Held {
        /// The held snapshot.
        snapshot: crate::id::SnapshotId,
    },
    /// Parameters that are out of range or unsafe (chunk sizes, weak KDF settings, …).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which parameter.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The storage backend failed.
    #[error("backend error on {object}: {source}")]
    Backend {
        /// The object being accessed.
        object: ObjectName,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Local I/O failed (reading input, the cache directory).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Another process holds a lock that this operation must wait for, and the wait ran
    /// out; or this session's own lock was removed as stale.
    #[error("repository is locked: {reason}")]
    Locked {
        /// Who holds the lock (kind, host, pid), or what happened to ours.
        reason: String,
    },
    /// The local index cache failed.
    #[error("index cache error: {0}")]
    Cache(String),
    /// The storage refused this client's credentials: none were found, they are wrong or
    /// expired, or they do not allow the operation (a backup node's credentials that may
    /// not delete). Never retried.
    #[error("storage refused the credentials for {object}: {reason}")]
    StorageDenied {
        /// The object being accessed (or the location, for a listing).
        object: ObjectName,
        /// What the store said (an error code, never a credential).
        reason: String,
    },
    /// The storage kept failing with errors that are usually passing (server errors,
    /// throttling, timeouts, refused or reset connections) until the retries ran out.
    #[error("storage unavailable for {object} after {attempts} attempts: {reason}")]
    StorageUnavailable {
        /// The object being accessed (or the location, for a listing).
        object: ObjectName,
        /// How many times the request was sent.
        attempts: u32,
        /// The last error, for humans.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::Corrupt`] naming `object`: for frontends that find their own data (node
    /// meta, record framing) damaged.
    pub fn corrupt(object: impl Into<ObjectName>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn untrusted(object: impl Into<ObjectName>, reason: impl Into<String>) -> Self {
        Error::Untrusted {
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn backend(object: impl Into<ObjectName>, source: std::io::Error) -> Self {
        Error::Backend {
            object: object.into(),
            source,
        }
    }

    /// True when the error means an object is absent (rather than damaged or unreachable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
