//! Progress bars on a terminal, fed by the frontends' progress callbacks.
//!
//! Invariant: nothing is drawn unless stderr is a terminal and neither `--json`, `--quiet`
//! nor `--no-progress` was given; warnings are printed above the bar (or plainly on stderr
//! without one), and never in JSON mode, whose report lists them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chatvault_fs::{FsEvent, FsProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::Global;

/// A progress display for one backup or restore.
pub struct Progress {
    bar: Option<ProgressBar>,
    callback: FsProgress,
}

impl Progress {
    /// A display for `verb` ("backup", "restore"); `total` is the byte count if known.
    pub fn new(g: &Global, verb: &'static str, total: Option<u64>) -> Self {
        let show = !g.json && !g.quiet && !g.no_progress;
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            bar.set_style(style(total.is_some()));
            bar.set_prefix(verb);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let quiet = g.quiet || g.json;
        let entries = Arc::new(AtomicU64::new(0));
        let b = bar.clone();
        let callback = FsProgress::new(move |e| match e {
            FsEvent::Bytes(n) | FsEvent::Skipped(n) => {
                if let Some(b) = &b {
                    b.inc(*n);
                }
            }
            FsEvent::Entry { .. } => {
                let n = entries.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(b) = b.as_ref().filter(|_| n.is_multiple_of(64)) {
                    b.set_message(format!("{n} entries"));
                }
            }
            FsEvent::Warning { path, message } if !quiet => {
                let line = format!(
                    "warning: {}: {}",
                    chatvault_core::printable(&path.display().to_string()),
                    chatvault_core::printable(message)
                );
                match &b {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            _ => {}
        });
        Self { bar, callback }
    }

    /// The callback to hand the frontend.
    pub fn callback(&self) -> FsProgress {
        self.callback.clone()
    }

    /// A thread-safe handle that sets the total once it is known, turning the spinner
    /// into a bar with an ETA.
    pub fn total_setter(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let bar = self.bar.clone();
        move |n| {
            if let Some(b) = &bar {
                b.set_length(n);
                b.set_style(style(true));
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Whether a bar is drawn (so an estimate is worth computing).
    pub fn visible(&self) -> bool {
        self.bar.as_ref().is_some_and(|b| !b.is_hidden())
    }
}

/// The bar's look: with a known total, a bar with an ETA; before, a spinner (a bar at
/// `0/0` would show as full).
fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{prefix} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{prefix} {elapsed_precise} {spinner} {bytes} {bytes_per_sec} {msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Counts the bytes of regular files below `paths` (no exclusions: an estimate for the
/// bar, not a figure anyone relies on). Runs beside the backup on its own thread.
pub fn estimate(paths: Vec<PathBuf>, done: impl FnOnce(u64) + Send + 'static) {
    std::thread::spawn(move || {
        let mut total = 0u64;
        let mut stack = paths;
        while let Some(p) = stack.pop() {
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_file() {
                total += md.len();
            } else if md.is_dir()
                && let Ok(rd) = std::fs::read_dir(&p)
            {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
        done(total);
    });
}
