//! The one tokio runtime this crate owns, and the blocking façade over it.
//!
//! Everything outside this crate is synchronous (threads, rayon). A store request is an
//! async future; [`run`] spawns it on the crate's runtime and the calling thread waits on
//! a channel for its result.
//!
//! **Invariant**: nothing here calls `Runtime::block_on` or `Handle::block_on`, which
//! panic on a thread that is already inside a runtime. So the façade works from a plain
//! thread, a rayon worker, `tokio::task::spawn_blocking`, and even directly from a task of
//! another runtime (an embedding server's), where it cannot panic; there it does block
//! that runtime's worker thread while the request runs, so async callers should wrap
//! chatvault calls in `spawn_blocking` (docs/OPERATIONS.md, "Embedding").
//!
//! The runtime is built on first use with 2 to 8 worker threads (the machine's
//! parallelism, clamped) named `chatvault-io`, and lives until the process ends.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime, String> {
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("chatvault-io")
                .enable_all()
                .build()
                .map_err(|e| format!("starting the storage runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Why [`run`] produced no result.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The runtime could not be started (no threads left?).
    NoRuntime(String),
    /// The future ran past `limit`.
    TimedOut(Duration),
    /// The task was dropped or panicked before it answered.
    Lost,
}

/// Runs `fut` on the crate's runtime, waiting at most `limit`; blocks the calling thread
/// until then. Never panics, whatever thread it is called from.
pub(crate) fn run<F>(fut: F, limit: Duration) -> Result<F::Output, RunError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime().map_err(RunError::NoRuntime)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let out = tokio::time::timeout(limit, fut).await;
        let _ = tx.send(out);
    });
    match rx.recv() {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_elapsed)) => Err(RunError::TimedOut(limit)),
        Err(_) => Err(RunError::Lost),
    }
}

/// Installs ring as rustls's process-wide crypto provider, once. reqwest is built with
/// `rustls-no-provider` so that aws-lc-sys (C) is never compiled; without a provider every
/// HTTPS connection would fail. A provider some other part of the process installed first
/// is kept.
pub(crate) fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_a_plain_thread_and_times_out() {
        assert_eq!(run(async { 7 }, Duration::from_secs(5)).unwrap(), 7);
        let slow = run(
            async { tokio::time::sleep(Duration::from_secs(5)).await },
            Duration::from_millis(20),
        );
        assert!(matches!(slow, Err(RunError::TimedOut(_))));
    }

    #[test]
    fn a_panicking_task_is_lost_not_a_panic_here() {
        let r = run(
            async {
                if std::hint::black_box(true) {
                    panic!("inside the task");
                }
            },
            Duration::from_secs(5),
        );
        assert!(matches!(r, Err(RunError::Lost)));
    }

    // The façade from inside another runtime: a plain `#[tokio::test]` (current-thread
    // runtime) calling it directly, and from `spawn_blocking`. `Handle::block_on` would
    // panic in the first with "Cannot start a runtime from within a runtime".
    #[tokio::test]
    async fn works_inside_a_current_thread_runtime() {
        assert_eq!(run(async { 1 + 1 }, Duration::from_secs(5)).unwrap(), 2);
        let v = tokio::task::spawn_blocking(|| run(async { 3 }, Duration::from_secs(5)).unwrap())
            .await
            .unwrap();
        assert_eq!(v, 3);
    }
}
