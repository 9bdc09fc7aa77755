//! Progress reporting: the engine calls a callback; frontends render it.
//!
//! Invariant: events carry counts and object ids only, never data or key material, and the
//! callback is called from the engine's worker threads, so it must be cheap and thread-safe.

use std::fmt;
use std::sync::Arc;

use crate::id::PackId;

/// Something that happened during a write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// Input bytes were read and chunked.
    BytesRead(u64),
    /// A chunk was already stored (deduplicated) and not written again.
    ChunkDeduplicated {
        /// Its plaintext length.
        raw_len: u64,
    },
    /// A new chunk was compressed and queued for a pack.
    ChunkStored {
        /// Its plaintext length.
        raw_len: u64,
        /// Its compressed length.
        stored_len: u64,
    },
    /// A pack was uploaded.
    PackUploaded {
        /// The pack.
        id: PackId,
        /// Its size.
        bytes: u64,
    },
}

/// A progress callback. Cloning shares the callback.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl Progress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A callback that ignores everything (the default).
    pub fn none() -> Self {
        Self::new(|_| {})
    }

    pub(crate) fn emit(&self, e: ProgressEvent) {
        (self.0)(&e)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::none()
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}
