//! Shared set-up for chatvault's benchmarks: the criterion benches in `benches/` and the
//! report binaries in `src/bin/` (`write_memory`, `stage_report`).
//!
//! Invariants:
//! - Benches use only chatvault-core's public API, plus its `#[doc(hidden)]`
//!   `bench_support` module for stages the public API does not expose on their own.
//! - All input comes from `chatvault_workload` with the fixed [`SEED`], so every run
//!   measures the same bytes.
//! - Repositories use throw-away, insecure KDF parameters: key derivation is not what
//!   these benches measure.

use std::io::Read;
use std::path::Path;

use chatvault_core::{InitOptions, KdfParams, KeySource};

/// The criterion settings every bench uses: 10 samples (each iteration pushes hundreds
/// of MiB), 1 s of warm-up, `measure_secs` of measurement.
pub fn criterion_config(measure_secs: u64) -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(measure_secs))
}

/// Seed of all bench input.
pub const SEED: u64 = 2026;

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// Size of the blobs the per-blob stages work on: the chunker's default average chunk,
/// so per-call overheads weigh as they do in a real write.
pub const BLOB_SIZE: usize = MIB;

/// `len` bytes of the mixed corpus (half chat text, half media), in memory.
pub fn corpus(len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    chatvault_workload::mixed_corpus(SEED, len as u64)
        .read_to_end(&mut data)
        .expect("the corpus generator does not fail");
    data
}

/// `data` cut into blobs of [`BLOB_SIZE`] (the last may be shorter).
pub fn blobs(data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(BLOB_SIZE).map(<[u8]>::to_vec).collect()
}

/// The key every bench repository is created and opened with.
pub fn key() -> KeySource {
    KeySource::passphrase("chatvault bench")
}

/// Repository defaults, but with insecure KDF parameters and the cache in `cache_dir`.
pub fn init_options(cache_dir: &Path) -> InitOptions {
    InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(cache_dir.to_owned()),
        ..InitOptions::default()
    }
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

/// A `VmXxx:` figure of this process from `/proc/self/status`, in KiB; `None` where
/// there is no procfs (not Linux).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_has_the_requested_length_and_blobs_cover_it() {
        let data = corpus(3 * MIB + 5);
        assert_eq!(data.len(), 3 * MIB + 5);
        let b = blobs(&data);
        assert_eq!(b.len(), 4);
        assert_eq!(b.concat(), data);
    }

    #[test]
    fn proc_status_reads_peak_rss_on_linux() {
        assert_eq!(proc_status_kib("NoSuchField"), None);
        if !cfg!(target_os = "linux") {
            return;
        }
        // What the process holds now (not its peak so far, which another test on another
        // thread may have raised with memory that is free again and reused below).
        let before = proc_status_kib("VmRSS").expect("VmRSS on Linux");
        // Touch 64 MiB: the peak must then be well above it. Linux updates the counters
        // behind VmHWM in batches per thread, so a few MiB may not show yet (a run here
        // saw 58.4 of the 64).
        let block = vec![1u8; 64 * MIB];
        std::hint::black_box(&block);
        let after = proc_status_kib("VmHWM").expect("VmHWM on Linux");
        assert!(after >= before + 48 * 1024, "{before} KiB -> {after} KiB");
    }
}
