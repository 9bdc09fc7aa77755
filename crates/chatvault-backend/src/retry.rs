//! Retries with backoff and jitter, and confirmation of creates whose response was lost,
//! over any [`Backend`] whose calls make one attempt each.
//!
//! What is retried is decided by the error's type alone: only
//! [`Error::StorageUnavailable`] (a server error, throttling, a timeout, a refused or reset
//! connection, a short read) is passing. `NotFound`, `AlreadyExists`,
//! [`Error::StorageDenied`] (credentials), `Corrupt` and every other error are returned at
//! once.
//!
//! Invariants:
//! - At most [`RetryPolicy::attempts`] requests per call; between two, a delay drawn
//!   uniformly from `[d/2, d]` where `d = min(base × 2^(n-1), max_delay)` ("equal
//!   jitter"), so many clients that failed together do not come back together.
//! - A `put` that failed with a passing error may have been stored (the response was lost,
//!   not the request). Before it is sent again, the name is `stat`ed: an object of the same
//!   size (and, up to [`READBACK_MAX`] bytes, the same bytes read back) is this client's
//!   own create and the `put` succeeds; anything else there is [`Error::AlreadyExists`].
//!   Chatvault's names are content addresses or fresh random ids, so an object of that
//!   name and size is the one this client wrote.
//! - On a store that does not enforce creates ([`CreateGuard::NotEnforced`] or
//!   `Unknown`), every `put` is preceded by that `stat`, so `put` still reports an
//!   existing name instead of overwriting it (except in the window between the two
//!   requests: docs/FORMAT.md, "What a store must give").
//! - A ranged read that returns a different length than asked is retried, never returned.

use std::time::Duration;

use chatvault_core::{Backend, CreateGuard, Error, ObjectInfo, Result};

/// Objects up to this size are read back to confirm a lost create; larger ones (packs,
/// named by the hash of their bytes) are confirmed by size.
pub const READBACK_MAX: u64 = 1 << 20;

/// How often and how patiently a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests per call, the first included. By default 6.
    pub attempts: u32,
    /// The delay before the second request. By default 250 ms.
    pub base: Duration,
    /// The longest delay between two requests. By default 8 s (so the default policy
    /// gives up after about 20 s of failures, plus the requests' own time).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay after the `n`th failed request (n ≥ 1), with jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX));
        let d = exp.min(self.max_delay);
        let half = d / 2;
        half + half.mul_f64(unit_random())
    }
}

/// A uniform random number in `[0, 1)`.
fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an error is worth another request.
pub fn is_transient(e: &Error) -> bool {
    matches!(e, Error::StorageUnavailable { .. })
}

/// A [`Backend`] that retries another's passing failures and confirms lost creates.
#[derive(Debug, Clone)]
pub struct Retrying<B> {
    inner: B,
    policy: RetryPolicy,
}

impl<B: Backend> Retrying<B> {
    /// Wraps `inner`, whose calls each make one request.
    pub fn new(inner: B, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Runs `f` until it succeeds, fails for good, or the attempts run out.
    fn retry<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut n = 1;
        loop {
            match f() {
                Err(e) if is_transient(&e) && n < self.policy.attempts => {
                    tracing::debug!(attempt = n, error = %e, "storage request failed, retrying");
                    std::thread::sleep(self.policy.delay(n));
                    n += 1;
                }
                Err(e) => return Err(with_attempts(e, n)),
                ok => return ok,
            }
        }
    }

    /// Whether the object stored under `name` is the one `bytes` would create.
    fn is_ours(&self, name: &str, found: &ObjectInfo, bytes: &[u8]) -> Result<bool> {
        if found.size != bytes.len() as u64 {
            return Ok(false);
        }
        if found.size > READBACK_MAX {
            return Ok(true);
        }
        Ok(self.retry(|| self.inner.get(name))? == bytes)
    }

    /// `AlreadyExists`, or `Ok` when what exists is this client's own earlier attempt.
    fn existing(&self, name: &str, bytes: &[u8], retried: bool) -> Result<()> {
        if retried {
            let found = self.retry(|| self.inner.stat(name))?;
            if self.is_ours(name, &found, bytes)? {
                tracing::debug!(
                    object = name,
                    "a create whose response was lost is confirmed"
                );
                return Ok(());
            }
        }
        Err(Error::AlreadyExists {
            object: name.into(),
        })
    }
}

/// The error with the number of requests made, when it is a storage-unavailable one.
fn with_attempts(e: Error, n: u32) -> Error {
    match e {
        Error::StorageUnavailable { object, reason, .. } => Error::StorageUnavailable {
            object,
            attempts: n,
            reason,
        },
        e => e,
    }
}

impl<B: Backend> Backend for Retrying<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let check_first = self.inner.create_guard() != CreateGuard::Enforced;
        let mut n = 1;
        loop {
            let retried = n > 1;
            let attempt = (|| {
                if check_first || retried {
                    match self.inner.stat(name) {
                        Ok(_) => return self.existing(name, bytes, retried),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                match self.inner.put(name, bytes) {
                    Err(Error::AlreadyExists { .. }) => self.existing(name, bytes, retried),
                    r => r,
                }
            })();
            match attempt {
                Err(e) if is_transient(&e) && n < self.policy.attempts => {
                    tracing::debug!(attempt = n, object = name, error = %e, "put failed, retrying");
                    std::thread::sleep(self.policy.delay(n));
                    n += 1;
                }
                Err(e) => return Err(with_attempts(e, n)),
                Ok(()) => return Ok(()),
            }
        }
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.retry(|| self.inner.replace(name, bytes))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.retry(|| self.inner.get(name))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.retry(|| {
            let bytes = self.inner.get_range(name, offset, len)?;
            if bytes.len() as u64 != len {
                return Err(short_read(name, len, bytes.len()));
            }
            Ok(bytes)
        })
    }

    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let want = buf.len();
        self.retry(|| {
            let bytes = self.inner.get_range(name, offset, want as u64)?;
            if bytes.len() != want {
                return Err(short_read(name, want as u64, bytes.len()));
            }
            buf.copy_from_slice(&bytes);
            Ok(())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.retry(|| self.inner.list(prefix))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.retry(|| self.inner.delete(name))
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.retry(|| self.inner.stat(name))
    }

    fn create_guard(&self) -> CreateGuard {
        self.inner.create_guard()
    }

    fn uploads_in_flight(&self) -> usize {
        self.inner.uploads_in_flight()
    }

    fn reads_in_flight(&self) -> usize {
        self.inner.reads_in_flight()
    }
}

fn short_read(name: &str, want: u64, got: usize) -> Error {
    Error::StorageUnavailable {
        object: name.into(),
        attempts: 1,
        reason: format!("short read: {got} of {want} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{FaultPlan, Faulty};
    use chatvault_core::MemoryBackend;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy::default();
        for n in 1..12 {
            let d = p.delay(n);
            let cap = p.base.saturating_mul(1 << (n - 1).min(20)).min(p.max_delay);
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {n}: {d:?} vs cap {cap:?}"
            );
        }
        // Jitter: not every draw is the same.
        let draws: std::collections::HashSet<_> = (0..20).map(|_| p.delay(3)).collect();
        assert!(draws.len() > 1);
        assert!(p.delay(u32::MAX) <= p.max_delay);
    }

    #[test]
    fn contract_holds_through_the_retrying_layer() {
        chatvault_core::backend_contract::run(&Retrying::new(MemoryBackend::new(), quick()));
    }

    #[test]
    fn passing_failures_are_retried_until_they_succeed() {
        let store = MemoryBackend::new();
        store.put("index/aa", b"segment").unwrap();
        // Every call fails twice, then succeeds.
        let faulty = Faulty::new(store, FaultPlan::fail_first_attempts(2));
        let b = Retrying::new(faulty, quick());
        assert_eq!(b.get("index/aa").unwrap(), b"segment");
        assert_eq!(b.get_range("index/aa", 1, 3).unwrap(), b"egm");
        assert_eq!(b.inner().calls(), 6);
    }

    #[test]
    fn retries_are_bounded_and_report_the_attempts() {
        let b = Retrying::new(
            Faulty::new(MemoryBackend::new(), FaultPlan::failing(1.0, 1)),
            quick(),
        );
        match b.get("config").unwrap_err() {
            Error::StorageUnavailable { attempts, .. } => assert_eq!(attempts, 5),
            e => panic!("{e}"),
        }
        assert_eq!(b.inner().calls(), 5);
    }

    #[test]
    fn not_found_denied_and_corrupt_are_never_retried() {
        let store = MemoryBackend::new();
        let b = Retrying::new(Faulty::new(store, FaultPlan::default()), quick());
        assert!(b.get("config").unwrap_err().is_not_found());
        assert_eq!(b.inner().calls(), 1);
        b.put("data/ab/x", b"0123").unwrap();
        let calls = b.inner().calls();
        assert!(b.get_range("data/ab/x", 2, 5).is_err());
        assert_eq!(
            b.inner().calls(),
            calls + 1,
            "a range past the end is not retried"
        );

        let denied = Retrying::new(
            Faulty::new(MemoryBackend::new(), FaultPlan::denied()),
            quick(),
        );
        assert!(matches!(
            denied.stat("config"),
            Err(Error::StorageDenied { .. })
        ));
        assert_eq!(denied.inner().calls(), 1);
    }

    #[test]
    fn a_put_whose_response_was_lost_is_confirmed_not_refused() {
        let store = MemoryBackend::new();
        // Every put is stored, then its response is lost.
        let b = Retrying::new(
            Faulty::new(store.clone(), FaultPlan::lose_put_responses(1.0, 7)),
            quick(),
        );
        b.put("snapshots/aa", b"record").unwrap();
        let big = vec![7u8; READBACK_MAX as usize + 1];
        b.put("data/ab/big", &big).unwrap();
        assert_eq!(store.get("snapshots/aa").unwrap(), b"record");
        // Someone else's object under the name is still refused.
        store.put("keys/bb", b"theirs").unwrap();
        assert!(matches!(
            b.put("keys/bb", b"mine!!"),
            Err(Error::AlreadyExists { .. })
        ));
    }

    #[test]
    fn short_reads_are_retried_never_returned() {
        let store = MemoryBackend::new();
        store.put("data/ab/x", b"0123456789").unwrap();
        let b = Retrying::new(Faulty::new(store, FaultPlan::short_reads(0.5, 3)), quick());
        for _ in 0..20 {
            assert_eq!(b.get_range("data/ab/x", 2, 6).unwrap(), b"234567");
            let mut buf = [0u8; 4];
            b.get_range_into("data/ab/x", 6, &mut buf).unwrap();
            assert_eq!(&buf, b"6789");
        }
    }

    #[test]
    fn puts_on_stores_without_create_guard_do_not_overwrite() {
        let store = MemoryBackend::new();
        let b = Retrying::new(
            Faulty::new(store.clone(), FaultPlan::overwriting()),
            quick(),
        );
        assert_eq!(b.create_guard(), CreateGuard::NotEnforced);
        b.put("locks/aa", b"mine").unwrap();
        assert!(matches!(
            b.put("locks/aa", b"other"),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(store.get("locks/aa").unwrap(), b"mine");
    }
}
