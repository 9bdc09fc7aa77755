//! Exit codes: what a script or a configuration-management task can act on.
//!
//! Invariant: the code depends only on the kind of failure, found by walking the error
//! chain for the library error types, never on message text.

use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// Any other error.
pub const ERROR: u8 = 1;
/// The command finished, but some entries could not be read or restored.
pub const PARTIAL: u8 = 3;
/// No repository at the location.
pub const REPO_MISSING: u8 = 10;
/// No key slot opens with the passphrase or key file (or the repository has no slot of
/// the token's or KMS command's kind).
pub const WRONG_PASSPHRASE: u8 = 11;
/// Another process holds a lock this command waited for in vain (a backup behind a
/// deleting prune, a prune behind running backups or another prune).
pub const LOCKED: u8 = 12;
/// Repository objects are corrupt, missing or refused as untrusted.
pub const CORRUPT: u8 = 13;
/// The opened key's role does not allow the command.
pub const PERMISSION: u8 = 14;
/// The storage refused the credentials: none found, wrong or expired, or not allowed the
/// operation (a backup node's credentials that may not delete).
pub const STORAGE_DENIED: u8 = 15;
/// The storage kept failing (server errors, throttling, timeouts, unreachable) until the
/// retries ran out; running the command again later is safe.
pub const STORAGE_UNAVAILABLE: u8 = 16;
/// The snapshot is under a legal hold: it cannot be forgotten until an admin releases it.
pub const HELD: u8 = 17;
/// A hardware token refused the PIN (wrong, locked or expired). Not retried: a token
/// locks after a few wrong PINs.
pub const WRONG_PIN: u8 = 18;

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything done.
    Complete,
    /// Done, but some entries were left out (exit code 3).
    Partial,
    /// Done as far as possible, but repository data was found corrupt or missing (exit
    /// code 13): the entries it held were left out.
    Corrupt,
    /// Done, and the result is a failure for another reason (exit code 1): a drill that
    /// could not restore a snapshot, a plan step that failed.
    Failed,
}

impl Outcome {
    /// `Corrupt` when a verification found problems, else `Complete`.
    pub fn from_problems(problems: usize) -> Self {
        if problems == 0 {
            Outcome::Complete
        } else {
            Outcome::Corrupt
        }
    }
}

impl Outcome {
    /// The exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Complete => OK,
            Outcome::Partial => PARTIAL,
            Outcome::Corrupt => CORRUPT,
            Outcome::Failed => ERROR,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o.code())
    }
}

/// The exit code for an error, and a short machine-readable kind for `--json`.
pub fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<chatvault_core::Error>() {
            return core_code(c);
        }
        if let Some(b) = cause.downcast_ref::<chatvault_backend::Error>() {
            return match b {
                chatvault_backend::Error::Storage(c) => core_code(c),
                _ => (ERROR, "invalid_location"),
            };
        }
        if let Some(f) = cause.downcast_ref::<chatvault_fs::Error>()
            && let Some(code) = fs_code(f)
        {
            return code;
        }
        if let Some(m) = cause.downcast_ref::<chatvault_msglog::Error>() {
            match m {
                chatvault_msglog::Error::Core(c) => return core_code(c),
                chatvault_msglog::Error::Fs(f) => {
                    if let Some(code) = fs_code(f) {
                        return code;
                    }
                }
                _ => {}
            }
        }
    }
    (ERROR, "error")
}

fn fs_code(f: &chatvault_fs::Error) -> Option<(u8, &'static str)> {
    match f {
        chatvault_fs::Error::Core(c) => Some(core_code(c)),
        chatvault_fs::Error::DigestMismatch { .. } | chatvault_fs::Error::BadMeta { .. } => {
            Some((CORRUPT, "corrupt"))
        }
        _ => None,
    }
}

fn core_code(e: &chatvault_core::Error) -> (u8, &'static str) {
    use chatvault_core::Error as E;
    match e {
        E::RepositoryMissing { .. } => (REPO_MISSING, "repository_missing"),
        E::WrongPassphrase => (WRONG_PASSPHRASE, "wrong_passphrase"),
        E::NoSlotOfKind { .. } => (WRONG_PASSPHRASE, "no_slot_of_kind"),
        E::WrongPin { .. } => (WRONG_PIN, "wrong_pin"),
        E::KeyStore { .. } => (ERROR, "key_store"),
        E::Corrupt { .. } | E::NotFound { .. } | E::Untrusted { .. } | E::Rollback { .. } => {
            (CORRUPT, "corrupt")
        }
        E::PermissionDenied { .. } => (PERMISSION, "permission_denied"),
        E::KeyNotGranted { .. } => (PERMISSION, "key_not_granted"),
        E::Held { .. } => (HELD, "held"),
        E::Locked { .. } => (LOCKED, "locked"),
        E::UnsupportedFormat { .. } => (ERROR, "unsupported_format"),
        E::StorageDenied { .. } => (STORAGE_DENIED, "storage_denied"),
        E::StorageUnavailable { .. } => (STORAGE_UNAVAILABLE, "storage_unavailable"),
        _ => (ERROR, "error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_error_kind_through_context() {
        let e = anyhow::Error::from(chatvault_core::Error::WrongPassphrase).context("opening");
        assert_eq!(classify(&e).0, WRONG_PASSPHRASE);
        let e = anyhow::Error::from(chatvault_fs::Error::Core(
            chatvault_core::Error::RepositoryMissing {
                location: "x".into(),
            },
        ));
        assert_eq!(classify(&e).0, REPO_MISSING);
        assert_eq!(classify(&anyhow::anyhow!("other")).0, ERROR);
        let e = anyhow::Error::from(chatvault_core::Error::WrongPin {
            store: "token \"T\"".into(),
            reason: "the token refused it".into(),
        })
        .context("opening");
        assert_eq!(classify(&e), (WRONG_PIN, "wrong_pin"));
        let e = anyhow::Error::from(chatvault_core::Error::Locked { reason: "x".into() });
        assert_eq!(classify(&e), (LOCKED, "locked"));
        let denied = chatvault_core::Error::StorageDenied {
            object: "config".into(),
            reason: "InvalidAccessKeyId".into(),
        };
        let e = anyhow::Error::from(chatvault_backend::Error::Storage(denied)).context("opening");
        assert_eq!(classify(&e), (STORAGE_DENIED, "storage_denied"));
        let e = anyhow::Error::from(chatvault_core::Error::StorageUnavailable {
            object: "data/ab/cd".into(),
            attempts: 6,
            reason: "503".into(),
        });
        assert_eq!(classify(&e), (STORAGE_UNAVAILABLE, "storage_unavailable"));
        let e = anyhow::Error::from(chatvault_backend::Location::parse("s3x:y").unwrap_err());
        assert_eq!(classify(&e), (ERROR, "invalid_location"));
    }
}
