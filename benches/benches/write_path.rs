//! End-to-end write throughput: 256 MiB of mixed corpus through `Repository` on a
//! `MemoryBackend`, with the parallel writer (chunk, hash, index lookup, compress, seal,
//! pack, upload). Then the same data again into the same repository: the dedup path,
//! where every chunk is already stored and only chunking, hashing and lookups remain.
//!
//! Invariants:
//! - Only the write is timed: repository set-up (KDF, index cache) is outside.
//! - The input is generated once and read from memory, so generator speed is not measured.
//! - Each iteration checks the figures it claims to measure (all new, or all known).

use std::hint::black_box;
use std::time::{Duration, Instant};

use chatvault_benches::{MIB, corpus, init_options, key};
use chatvault_core::{MemoryBackend, Repository, WriteStats};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

const INPUT: usize = 256 * MIB;

fn write_all(repo: &Repository, data: &[u8]) -> WriteStats {
    let writer = repo.writer().expect("writer");
    let refs = writer.write_stream(data).expect("write_stream");
    black_box(refs);
    writer.finish().expect("finish")
}

fn fresh_repo(cache: &tempfile::TempDir) -> Repository {
    let opts = init_options(cache.path());
    Repository::init(Box::new(MemoryBackend::new()), &key(), opts).expect("init")
}

fn write_path(c: &mut Criterion) {
    let data = corpus(INPUT);
    let mut g = c.benchmark_group("write_path");
    g.throughput(Throughput::Bytes(INPUT as u64));
    // One iteration takes about a second: flat sampling runs one per sample instead of
    // criterion's default 1 + 2 + … + 10.
    g.sampling_mode(SamplingMode::Flat);

    g.bench_function("new_data_256MiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cache = tempfile::tempdir().expect("tempdir");
                let repo = fresh_repo(&cache);
                let start = Instant::now();
                let stats = write_all(&repo, &data);
                total += start.elapsed();
                assert_eq!(stats.bytes_in, INPUT as u64);
                assert_eq!(
                    stats.blobs_new, stats.blobs_in,
                    "a fresh repository stores all"
                );
            }
            total
        })
    });

    let cache = tempfile::tempdir().expect("tempdir");
    let repo = fresh_repo(&cache);
    write_all(&repo, &data);
    g.bench_function("dedup_rewrite_256MiB", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let stats = write_all(&repo, &data);
                assert_eq!(stats.blobs_new, 0, "a re-write stores nothing");
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = chatvault_benches::criterion_config(10);
    targets = write_path
}
criterion_main!(benches);
