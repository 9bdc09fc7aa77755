//! A fault-injecting [`Backend`] wrapper, for tests of every layer above storage.
//!
//! [`Faulty`] passes each call to the wrapped backend and, as its [`FaultPlan`] says,
//! fails the Nth call, fails calls at random (seeded, so a failing run can be replayed),
//! fails every call while the store is "down", returns short or torn reads, delays calls,
//! loses the response of a put that succeeded, refuses the credentials, or overwrites on
//! `put` as a store without conditional creates does.
//!
//! Injected failures are the typed errors a real store gives after one attempt:
//! [`Error::StorageUnavailable`] (passing: the [`Retrying`](crate::Retrying) layer retries
//! them) or [`Error::StorageDenied`]. Placed below `Retrying` it tests the retries; placed
//! above, it tests that commands fail with a typed error and leave a repository `check`
//! accepts.
//!
//! Invariant: a fault never changes what the wrapped store holds, except that a lost put
//! response leaves the object stored (as on a real network) and `overwriting` replaces.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chatvault_core::{Backend, CreateGuard, Error, ObjectInfo, Result};

/// What to inject. `Default` injects nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Fail the call with this number (1-based, counting every call). By default none.
    pub fail_nth: Option<u64>,
    /// Fail every call from this number on (the store goes away). By default none.
    pub fail_from: Option<u64>,
    /// Fail each call with this probability. By default 0.
    pub fail_probability: f64,
    /// Fail this many calls, then let one through, over and over. By default 0.
    pub fail_cycle: u32,
    /// A ranged read returns fewer bytes than asked with this probability (a whole-object
    /// `get` is length-checked against a `stat` by the remote layer below the retries, so
    /// it is not shortened here). By default 0.
    pub short_reads: f64,
    /// A read returns its bytes with one bit flipped with this probability. By default 0.
    pub torn_reads: f64,
    /// A `put` or `replace` that succeeded reports a passing failure with this
    /// probability (the response was lost). By default 0.
    pub lose_put_responses: f64,
    /// Every call waits this long first. By default no delay.
    pub delay: Option<Duration>,
    /// Every call is refused as if the credentials were wrong. By default off.
    pub deny: bool,
    /// `put` overwrites an existing object (Garage, WebDAV), and the store reports
    /// [`CreateGuard::NotEnforced`]. By default off.
    pub overwrite: bool,
    /// The seed of the random draws. By default 0.
    pub seed: u64,
}

impl FaultPlan {
    /// Each call fails with probability `p`.
    pub fn failing(p: f64, seed: u64) -> Self {
        Self {
            fail_probability: p,
            seed,
            ..Self::default()
        }
    }

    /// `n` failures, then a success, repeated.
    pub fn fail_first_attempts(n: u32) -> Self {
        Self {
            fail_cycle: n,
            ..Self::default()
        }
    }

    /// Successful puts lose their response with probability `p`.
    pub fn lose_put_responses(p: f64, seed: u64) -> Self {
        Self {
            lose_put_responses: p,
            seed,
            ..Self::default()
        }
    }

    /// Reads come back short with probability `p`.
    pub fn short_reads(p: f64, seed: u64) -> Self {
        Self {
            short_reads: p,
            seed,
            ..Self::default()
        }
    }

    /// Every call is refused for bad credentials.
    pub fn denied() -> Self {
        Self {
            deny: true,
            ..Self::default()
        }
    }

    /// A store that overwrites on `put`.
    pub fn overwriting() -> Self {
        Self {
            overwrite: true,
            ..Self::default()
        }
    }
}

/// A backend with faults injected by plan.
#[derive(Debug)]
pub struct Faulty<B> {
    inner: B,
    plan: FaultPlan,
    calls: AtomicU64,
    down: AtomicBool,
    rng: Mutex<u64>,
}

impl<B: Backend> Faulty<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, plan: FaultPlan) -> Self {
        let seed = plan.seed ^ 0x9e37_79b9_7f4a_7c15;
        Self {
            inner,
            plan,
            calls: AtomicU64::new(0),
            down: AtomicBool::new(false),
            rng: Mutex::new(seed),
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Takes the store down (every call fails) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// A uniform draw in `[0, 1)` (splitmix64).
    fn draw(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.draw() < p
    }

    /// Counts the call and decides whether it fails before reaching the store.
    fn enter(&self, name: &str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(d) = self.plan.delay {
            std::thread::sleep(d);
        }
        if self.plan.deny {
            return Err(Error::StorageDenied {
                object: name.into(),
                reason: "injected: InvalidAccessKeyId".into(),
            });
        }
        let cycle = self.plan.fail_cycle as u64;
        let fail = self.down.load(Ordering::SeqCst)
            || self.plan.fail_nth == Some(n)
            || self.plan.fail_from.is_some_and(|from| n >= from)
            || (cycle > 0 && (n - 1) % (cycle + 1) < cycle)
            || self.chance(self.plan.fail_probability);
        if fail {
            return Err(unavailable(name, "injected fault"));
        }
        Ok(())
    }

    /// A read's bytes, perhaps shortened (ranged reads only) or with a bit flipped.
    fn mangle(&self, mut bytes: Vec<u8>, ranged: bool) -> Vec<u8> {
        if ranged && !bytes.is_empty() && self.chance(self.plan.short_reads) {
            let keep = (self.draw() * bytes.len() as f64) as usize;
            bytes.truncate(keep);
        } else if !bytes.is_empty() && self.chance(self.plan.torn_reads) {
            let i = (self.draw() * bytes.len() as f64) as usize % bytes.len();
            bytes[i] ^= 0x10;
        }
        bytes
    }

    fn after_write(&self, name: &str) -> Result<()> {
        if self.chance(self.plan.lose_put_responses) {
            return Err(unavailable(name, "injected: response lost after the write"));
        }
        Ok(())
    }
}

fn unavailable(name: &str, reason: &str) -> Error {
    Error::StorageUnavailable {
        object: name.into(),
        attempts: 1,
        reason: reason.into(),
    }
}

impl<B: Backend> Backend for Faulty<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.enter(name)?;
        if self.plan.overwrite {
            self.inner.replace(name, bytes)?;
        } else {
            self.inner.put(name, bytes)?;
        }
        self.after_write(name)
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.enter(name)?;
        self.inner.replace(name, bytes)?;
        self.after_write(name)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.enter(name)?;
        Ok(self.mangle(self.inner.get(name)?, false))
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.enter(name)?;
        Ok(self.mangle(self.inner.get_range(name, offset, len)?, true))
    }

    fn get_range_into(&self, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let bytes = self.get_range(name, offset, buf.len() as u64)?;
        if bytes.len() != buf.len() {
            return Err(unavailable(name, "short read"));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.enter(prefix)?;
        self.inner.list(prefix)
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.enter(name)?;
        self.inner.delete(name)
    }

    fn stat(&self, name: &str) -> Result<ObjectInfo> {
        self.enter(name)?;
        self.inner.stat(name)
    }

    fn create_guard(&self) -> CreateGuard {
        if self.plan.overwrite {
            CreateGuard::NotEnforced
        } else {
            self.inner.create_guard()
        }
    }

    fn uploads_in_flight(&self) -> usize {
        self.inner.uploads_in_flight()
    }

    fn reads_in_flight(&self) -> usize {
        self.inner.reads_in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatvault_core::MemoryBackend;

    #[test]
    fn the_nth_call_fails_and_only_it() {
        let b = Faulty::new(
            MemoryBackend::new(),
            FaultPlan {
                fail_nth: Some(3),
                ..FaultPlan::default()
            },
        );
        b.put("index/a", b"1").unwrap();
        b.get("index/a").unwrap();
        assert!(matches!(
            b.get("index/a"),
            Err(Error::StorageUnavailable { .. })
        ));
        b.get("index/a").unwrap();
    }

    #[test]
    fn random_failures_follow_the_seed() {
        let run = |seed| {
            let store = MemoryBackend::new();
            store.put("config", b"c").unwrap();
            let b = Faulty::new(store, FaultPlan::failing(0.3, seed));
            (0..200)
                .map(|_| b.stat("config").is_ok())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let failures = run(1).iter().filter(|ok| !**ok).count();
        assert!((30..90).contains(&failures), "{failures} of 200 at p = 0.3");
    }

    #[test]
    fn down_fails_everything_until_it_comes_back() {
        let b = Faulty::new(MemoryBackend::new(), FaultPlan::default());
        b.put("config", b"c").unwrap();
        b.set_down(true);
        assert!(b.get("config").is_err());
        assert!(b.list("").is_err());
        b.set_down(false);
        assert_eq!(b.get("config").unwrap(), b"c");
    }

    #[test]
    fn torn_reads_flip_bits_and_lost_responses_still_store() {
        let store = MemoryBackend::new();
        let b = Faulty::new(
            store.clone(),
            FaultPlan {
                torn_reads: 1.0,
                lose_put_responses: 1.0,
                ..FaultPlan::default()
            },
        );
        assert!(b.put("data/ab/x", b"abcdef").is_err());
        assert_eq!(store.get("data/ab/x").unwrap(), b"abcdef");
        let torn = b.get("data/ab/x").unwrap();
        assert_eq!(torn.len(), 6);
        assert_ne!(torn, b"abcdef");
    }

    #[test]
    fn delays_are_applied() {
        let b = Faulty::new(
            MemoryBackend::new(),
            FaultPlan {
                delay: Some(Duration::from_millis(30)),
                ..FaultPlan::default()
            },
        );
        let t = std::time::Instant::now();
        assert!(b.stat("config").unwrap_err().is_not_found());
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
