//! Storage faults shared by the integration tests: a backend whose writes start failing
//! after a given number, as a process killed at that point would leave storage; and one
//! that runs another process's work (a prune) at a chosen moment of a listing.

#![allow(dead_code)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chatvault_core::{Backend, Error, MemoryBackend, ObjectInfo};

/// Fails every mutation (put, replace, delete) after the first `left`, as a process killed
/// at that point would leave storage; reads keep working.
pub struct FailAfter {
    pub inner: MemoryBackend,
    left: AtomicI64,
    pub mutations: AtomicU64,
}

impl FailAfter {
    pub fn new(inner: MemoryBackend, left: i64) -> Self {
        Self {
            inner,
            left: AtomicI64::new(left),
            mutations: AtomicU64::new(0),
        }
    }

    fn spend(&self, name: &str) -> chatvault_core::Result<()> {
        self.mutations.fetch_add(1, Ordering::SeqCst);
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(Error::Backend {
                object: name.into(),
                source: std::io::Error::other("injected failure"),
            });
        }
        Ok(())
    }
}

impl Backend for FailAfter {
    fn location(&self) -> String {
        "fail-after".into()
    }
    fn put(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.spend(name)?;
        self.inner.put(name, bytes)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.spend(name)?;
        self.inner.replace(name, bytes)
    }
    fn get(&self, name: &str) -> chatvault_core::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> chatvault_core::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> chatvault_core::Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> chatvault_core::Result<()> {
        self.spend(name)?;
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> chatvault_core::Result<ObjectInfo> {
        self.inner.stat(name)
    }
}

/// Runs `hook` once, at the first listing of `prefix`: before the listing is taken, or
/// right after it (then the caller gets the listing from before the hook ran).
pub struct ListHook {
    pub inner: MemoryBackend,
    prefix: &'static str,
    after: bool,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ListHook {
    /// The hook runs just before `prefix` is listed.
    pub fn before(
        inner: MemoryBackend,
        prefix: &'static str,
        hook: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self::new(inner, prefix, false, Box::new(hook))
    }

    /// The hook runs just after `prefix` was listed.
    pub fn after(
        inner: MemoryBackend,
        prefix: &'static str,
        hook: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self::new(inner, prefix, true, Box::new(hook))
    }

    fn new(
        inner: MemoryBackend,
        prefix: &'static str,
        after: bool,
        hook: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Self {
            inner,
            prefix,
            after,
            hook: Mutex::new(Some(hook)),
        }
    }

    fn run_hook(&self, prefix: &str) {
        if prefix == self.prefix
            && let Some(hook) = self.hook.lock().unwrap().take()
        {
            hook();
        }
    }
}

impl Backend for ListHook {
    fn location(&self) -> String {
        "list-hook".into()
    }
    fn put(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.inner.put(name, bytes)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.inner.replace(name, bytes)
    }
    fn get(&self, name: &str) -> chatvault_core::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> chatvault_core::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> chatvault_core::Result<Vec<ObjectInfo>> {
        if !self.after {
            self.run_hook(prefix);
        }
        let listed = self.inner.list(prefix)?;
        if self.after {
            self.run_hook(prefix);
        }
        Ok(listed)
    }
    fn delete(&self, name: &str) -> chatvault_core::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> chatvault_core::Result<ObjectInfo> {
        self.inner.stat(name)
    }
}
