//! Progress reporting: the frontend calls a callback; the CLI renders it.
//!
//! Invariant: events carry counts and paths, never file contents; the callback is called
//! from worker threads, so it must be cheap and thread-safe.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Something that happened during a backup or restore.
#[derive(Debug)]
#[non_exhaustive]
pub enum FsEvent<'a> {
    /// Bytes were read from a source file (backup) or written to a target (restore).
    Bytes(u64),
    /// A file's bytes were not read because its parent snapshot's copy was reused.
    Skipped(u64),
    /// An entry is done.
    Entry {
        /// Its path.
        path: &'a Path,
        /// Its content length (0 for directories and links).
        size: u64,
    },
    /// Something was left out without failing the run (an unreadable file, a socket, an
    /// entry restore refused).
    Warning {
        /// The entry.
        path: &'a Path,
        /// What happened.
        message: &'a str,
    },
}

/// A progress callback. Cloning shares the callback.
#[derive(Clone)]
pub struct FsProgress(Arc<dyn Fn(&FsEvent<'_>) + Send + Sync>);

impl FsProgress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&FsEvent<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A callback that ignores everything (the default).
    pub fn none() -> Self {
        Self::new(|_| {})
    }

    pub(crate) fn emit(&self, e: FsEvent<'_>) {
        (self.0)(&e)
    }
}

impl Default for FsProgress {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for FsProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FsProgress(..)")
    }
}
