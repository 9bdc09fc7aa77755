//! Lock records in the repository: taking, refreshing, waiting for and clearing them.
//!
//! Three kinds (docs/ARCHITECTURE.md, "Concurrency and deletion"): a writer session holds a
//! `shared` lock from [`Repository::writer`] until its snapshot is saved, and a reader
//! holds one as a [`ReadLock`] for as long as it reads; a prune holds a
//! `prune` lock for its whole run (one prune at a time) and an `exclusive` lock only while
//! it deletes. A writer session starts only when no live exclusive lock exists; a prune
//! deletes only when no live shared lock exists. Each side first writes its own lock and
//! then lists the others', so at least one of two racing parties sees the other.
//!
//! Invariants: a held lock is refreshed (its counter grows) every `refresh` interval by a
//! background thread, which never re-creates a lock someone removed; a lock is stale only
//! if its holder's process is gone (same host) or its counter stood still for
//! `stale_after` while this process watched on its own monotonic clock: no step compares
//! clocks of two machines.

use super::reader::read_bounded;
use crate::limits::ObjectLimit;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Repository;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::format::now_unix_ms;
use crate::id::LockId;
use crate::lock::{LockKind, LockRecord};

/// Lock timing. The defaults suit backups over a network store; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How often a held lock is refreshed. By default 15 s.
    pub refresh: Duration,
    /// A lock of another host whose refresh counter does not move for this long while we
    /// watch is stale. By default 120 s (eight refreshes).
    pub stale_after: Duration,
    /// How long a writer session waits for a prune's deletion step (an exclusive lock)
    /// before failing with [`Error::Locked`]. By default 10 minutes.
    pub wait: Duration,
    /// How often a waiting process lists the locks again. By default 500 ms.
    pub poll: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(15),
            stale_after: Duration::from_secs(120),
            wait: Duration::from_secs(600),
            poll: Duration::from_millis(500),
        }
    }
}

/// A lock in the repository, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// Its id (`locks/<hex>`).
    pub id: LockId,
    /// Its content.
    pub record: LockRecord,
}

impl LockInfo {
    /// `kind host:pid`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} lock {} held by {} pid {}",
            self.record.kind.as_str(),
            self.id.short(),
            // Any bytes storage put there; this text reaches errors and terminals.
            crate::printable(&self.record.host),
            self.record.pid
        )
    }
}

/// This machine's host name, as lock records carry it.
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Whether a process with this id runs on this machine.
fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists but belongs to someone else.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

struct RefreshState {
    stop: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
}

/// A lock this process holds; refreshed in the background, removed on drop.
pub(crate) struct HeldLock {
    id: LockId,
    backend: Arc<dyn Backend>,
    state: Arc<RefreshState>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLock").field("id", &self.id).finish()
    }
}

impl HeldLock {
    /// Writes a new lock object and starts refreshing it.
    pub(crate) fn take(
        backend: Arc<dyn Backend>,
        kind: LockKind,
        opts: &LockOptions,
    ) -> Result<HeldLock> {
        let id = LockId::from_bytes(crate::crypto::random_array());
        let now = now_unix_ms();
        let record = LockRecord {
            kind,
            host: hostname(),
            pid: std::process::id(),
            refresh: 0,
            created_unix_ms: now,
            refreshed_unix_ms: now,
        };
        backend.put(&id.object_name(), &record.encode())?;
        let state = Arc::new(RefreshState {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
        });
        let thread = {
            let (backend, state, every) = (backend.clone(), state.clone(), opts.refresh);
            std::thread::Builder::new()
                .name("chatvault-lock".into())
                .spawn(move || refresh_loop(backend.as_ref(), id, record, &state, every))?
        };
        Ok(HeldLock {
            id,
            backend,
            state,
            thread: Some(thread),
        })
    }

    pub(crate) fn id(&self) -> LockId {
        self.id
    }

    /// Whether the lock is still ours: not found missing by the refresher, and present
    /// now.
    pub(crate) fn check_held(&self) -> Result<()> {
        let gone = self.state.lost.load(Ordering::SeqCst)
            || match self.backend.stat(&self.id.object_name()) {
                Ok(_) => false,
                Err(e) if e.is_not_found() => true,
                Err(e) => return Err(e),
            };
        if gone {
            return Err(Error::Locked {
                reason: format!(
                    "this process's lock {} was removed (cleared as stale?)",
                    self.id.short()
                ),
            });
        }
        Ok(())
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        *self.state.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.state.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.backend.delete(&self.id.object_name());
    }
}

fn refresh_loop(
    backend: &dyn Backend,
    id: LockId,
    mut record: LockRecord,
    state: &RefreshState,
    every: Duration,
) {
    let name = id.object_name();
    let mut stop = state.stop.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        // Looks at `stop` before waiting: a release that came before this thread first
        // ran has already sent its wake-up (found twice: by the restore fuzz target, and
        // by short commands in the documented-commands test taking 15 s more).
        let (guard, _) = state
            .wake
            .wait_timeout_while(stop, every, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        stop = guard;
        if *stop {
            return;
        }
        // Never re-create a lock someone removed: its holder must learn it lost it.
        match backend.stat(&name) {
            Err(e) if e.is_not_found() => {
                state.lost.store(true, Ordering::SeqCst);
                return;
            }
            // A transient backend failure: try again at the next tick.
            Err(_) => continue,
            Ok(_) => {}
        }
        record.refresh += 1;
        record.refreshed_unix_ms = now_unix_ms();
        let _ = backend.replace(&name, &record.encode());
    }
}

/// Watches other processes' locks across polls, to judge staleness without clocks.
#[derive(Debug, Default)]
pub(crate) struct LockWatch {
    /// Per lock: the refresh counter last seen and when (our monotonic clock) it changed.
    seen: HashMap<LockId, (u64, Instant)>,
}

impl LockWatch {
    /// Whether a listed lock is stale now.
    fn is_stale(&mut self, lock: &LockInfo, opts: &LockOptions, host: &str) -> bool {
        if lock.record.host == host && !process_alive(lock.record.pid) {
            return true;
        }
        let now = Instant::now();
        let entry = self
            .seen
            .entry(lock.id)
            .or_insert((lock.record.refresh, now));
        if entry.0 != lock.record.refresh {
            *entry = (lock.record.refresh, now);
        }
        now.duration_since(entry.1) >= opts.stale_after
    }
}

impl Repository {
    /// Every lock in the repository. Locks that do not decode are reported as errors:
    /// a waiting process must not ignore a lock it cannot read.
    pub fn list_locks(&self) -> Result<Vec<LockInfo>> {
        let mut out = Vec::new();
        for o in self.backend.list("locks/")? {
            let Some(id) = o
                .name
                .strip_prefix("locks/")
                .and_then(|h| LockId::from_hex(h).ok())
            else {
                continue;
            };
            match read_bounded(self.backend(), &o.name, ObjectLimit::Lock) {
                Ok(bytes) => out.push(LockInfo {
                    id,
                    record: LockRecord::decode(&bytes, &o.name)?,
                }),
                // Released since it was listed.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|l| l.id);
        Ok(out)
    }

    /// Removes stale locks: those of this host whose process is gone, and, when
    /// `watch` is given, those whose refresh counter stands still for that long while this
    /// call watches. With `all`, removes every lock (only when the operator knows that no
    /// chatvault process uses the repository). Returns the locks removed.
    pub fn unlock(&self, watch: Option<Duration>, all: bool) -> Result<Vec<LockInfo>> {
        let host = hostname();
        let locks = self.list_locks()?;
        let mut removed = Vec::new();
        if all {
            for l in locks {
                self.backend.delete(&l.id.object_name())?;
                removed.push(l);
            }
            return Ok(removed);
        }
        let opts = LockOptions {
            stale_after: watch.unwrap_or(Duration::MAX),
            ..self.lock_opts
        };
        let mut w = LockWatch::default();
        let deadline = watch.map(|d| Instant::now() + d);
        let mut pending = locks;
        loop {
            let mut still = Vec::new();
            for l in pending {
                if w.is_stale(&l, &opts, &host) {
                    self.backend.delete(&l.id.object_name())?;
                    removed.push(l);
                } else {
                    still.push(l);
                }
            }
            match deadline {
                Some(d) if !still.is_empty() && Instant::now() < d => {
                    std::thread::sleep(self.lock_opts.poll.min(d - Instant::now()));
                    // Re-read: counters that moved show a live holder.
                    let current = self.list_locks()?;
                    pending = current
                        .into_iter()
                        .filter(|l| still.iter().any(|s| s.id == l.id))
                        .collect();
                }
                _ => return Ok(removed),
            }
        }
    }

    /// Waits until no live lock of `kind` other than `ours` exists, removing stale ones,
    /// for at most `wait`. Returns the live locks that remain if the wait ran out.
    pub(crate) fn wait_for_no(
        &self,
        kind: LockKind,
        ours: Option<LockId>,
        wait: Duration,
    ) -> Result<Vec<LockInfo>> {
        let host = hostname();
        let deadline = Instant::now() + wait;
        let mut watch = LockWatch::default();
        loop {
            let mut live = Vec::new();
            for l in self.list_locks()? {
                if l.record.kind != kind || Some(l.id) == ours {
                    continue;
                }
                if watch.is_stale(&l, &self.lock_opts, &host) {
                    self.backend.delete(&l.id.object_name())?;
                } else {
                    live.push(l);
                }
            }
            if live.is_empty() || Instant::now() >= deadline {
                return Ok(live);
            }
            std::thread::sleep(self.lock_opts.poll.min(deadline - Instant::now()));
        }
    }

    /// Takes a shared lock for a writer session: first waits for any prune's deletion step
    /// to end. The lock is written before the exclusive locks are listed, so a prune that
    /// starts deleting concurrently sees it (and waits) or was seen by it.
    pub(crate) fn take_shared_lock(&self) -> Result<HeldLock> {
        let deadline = Instant::now() + self.lock_opts.wait;
        loop {
            let held = HeldLock::take(self.backend.clone(), LockKind::Shared, &self.lock_opts)?;
            let left = deadline.saturating_duration_since(Instant::now());
            let live = self.wait_for_no(LockKind::Exclusive, None, Duration::ZERO)?;
            if live.is_empty() {
                return Ok(held);
            }
            // Step aside while the prune deletes, so that it does not wait for us.
            drop(held);
            let live = self.wait_for_no(LockKind::Exclusive, None, left)?;
            if let Some(l) = live.first() {
                return Err(Error::Locked {
                    reason: l.describe(),
                });
            }
        }
    }
}

/// A reader's shared lock: while it lives, no prune deletes anything (a prune's deletion
/// step waits for it as for a writer session), so every pack and segment the reader's
/// index names stays readable. Removed from the repository when dropped.
#[derive(Debug)]
pub struct ReadLock {
    _held: HeldLock,
}

impl Repository {
    /// Takes a shared lock for reading (restore, check, a drill): waits, like a writer
    /// session, for a prune that is deleting (at most [`LockOptions::wait`], then
    /// [`Error::Locked`]), and then brings the index cache up to date, since that prune
    /// may have replaced segments and deleted packs the cache still named. Any key may take
    /// one; it needs write access to `locks/`.
    pub fn read_lock(&self) -> Result<ReadLock> {
        let held = self.take_shared_lock()?;
        self.sync_index()?;
        Ok(ReadLock { _held: held })
    }
}

/// The writer sessions of one repository handle and the shared lock they hold together.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    lock: Option<HeldLock>,
    /// Writers started and not yet saved (or dropped).
    active: usize,
    /// Of those, writers finished and waiting for their snapshot to be saved.
    awaiting: usize,
}

impl Repository {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins (or starts) this handle's writer session.
    pub(crate) fn enter_session(&self) -> Result<()> {
        let mut s = self.sessions();
        if s.active == 0 {
            let held = self.take_shared_lock()?;
            // A prune may have deleted packs since the cache was synced: the segments that
            // named them are gone, so a sync rebuilds the cache without them.
            self.sync_index()?;
            s.lock = Some(held);
        }
        s.active += 1;
        Ok(())
    }

    /// A writer ended without a snapshot (dropped unfinished).
    pub(crate) fn leave_session(&self) {
        let mut s = self.sessions();
        s.active = s.active.saturating_sub(1);
        s.awaiting = s.awaiting.min(s.active);
        if s.active == 0 {
            s.lock = None;
        }
    }

    /// A writer finished: its session ends when its snapshot is saved.
    pub(crate) fn session_awaits_snapshot(&self) {
        let mut s = self.sessions();
        s.awaiting = (s.awaiting + 1).min(s.active);
    }

    /// Stores a snapshot object inside the session of the writer that wrote its data:
    /// refuses if this handle's lock was removed meanwhile (a prune may then have deleted
    /// data the snapshot needs), and ends that writer's part of the session.
    pub(crate) fn put_in_session(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut s = self.sessions();
        let in_session = s.awaiting > 0;
        if let (true, Some(l)) = (in_session, &s.lock) {
            l.check_held()?;
        }
        self.backend.put(name, bytes)?;
        if in_session {
            s.awaiting -= 1;
            s.active -= 1;
            if s.active == 0 {
                s.lock = None;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_on_this_host_is_stale_at_once_a_live_one_is_not() {
        let opts = LockOptions::default();
        let host = hostname();
        let mk = |pid, host: &str| LockInfo {
            id: LockId::from_bytes(crate::crypto::random_array()),
            record: LockRecord {
                kind: LockKind::Shared,
                host: host.into(),
                pid,
                refresh: 0,
                created_unix_ms: 0,
                refreshed_unix_ms: 0,
            },
        };
        let mut w = LockWatch::default();
        assert!(!w.is_stale(&mk(std::process::id(), &host), &opts, &host));
        // pid 0 is never a user process; i32::MAX is above any pid_max.
        assert!(w.is_stale(&mk(i32::MAX as u32, &host), &opts, &host));
        // Another host's lock is judged only by watching it.
        assert!(!w.is_stale(&mk(i32::MAX as u32, "elsewhere"), &opts, &host));
    }

    #[test]
    fn regression_a_lock_released_at_once_does_not_wait_for_its_first_refresh() {
        // The refresher waited without looking at `stop` first: a lock released before
        // that thread first ran lost its wake-up, and the release waited a whole refresh
        // interval (15 s: short commands such as `cat` or `msglog ls` took 15 s more).
        let backend: Arc<dyn Backend> = Arc::new(crate::backend::MemoryBackend::new());
        let opts = LockOptions {
            refresh: Duration::from_secs(5),
            ..LockOptions::default()
        };
        for i in 0..50 {
            let lock = HeldLock::take(backend.clone(), LockKind::Shared, &opts).unwrap();
            let start = Instant::now();
            drop(lock);
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "release {i} took {:?}",
                start.elapsed()
            );
        }
        assert!(backend.list("locks/").unwrap().is_empty());
    }

    #[test]
    fn a_counter_that_stands_still_while_watched_is_stale_a_moving_one_is_not() {
        let opts = LockOptions {
            stale_after: Duration::from_millis(50),
            ..LockOptions::default()
        };
        let mut l = LockInfo {
            id: LockId::from_bytes([1; 32]),
            record: LockRecord {
                kind: LockKind::Shared,
                host: "elsewhere".into(),
                pid: 1,
                refresh: 0,
                created_unix_ms: 0,
                // A wildly wrong clock on the holder changes nothing.
                refreshed_unix_ms: i64::MIN,
            },
        };
        let mut w = LockWatch::default();
        assert!(!w.is_stale(&l, &opts, "here"));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(20));
            l.record.refresh += 1;
            assert!(!w.is_stale(&l, &opts, "here"));
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.is_stale(&l, &opts, "here"));
    }
}
