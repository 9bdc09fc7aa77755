//! The local index cache (RocksDB) at one million entries (or
//! `CHATVAULT_BENCH_INDEX_ENTRIES`, e.g. 10000000 for the 10M target): lookups of present
//! and of absent ids (the dedup check every chunk makes), and insert throughput.
//!
//! Invariants:
//! - Lookups visit ids in a scrambled order over the whole key space, so the figures
//!   are not those of a hot cache line or a sequential scan.
//! - Set-up checks that "present" ids are found and "absent" ones are not, so a bench
//!   that silently measured misses (or hits) fails instead.

use std::hint::black_box;

use chatvault_core::bench_support::IndexBench;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// Entries in the index: one million unless `CHATVAULT_BENCH_INDEX_ENTRIES` says otherwise.
fn entries() -> u64 {
    std::env::var("CHATVAULT_BENCH_INDEX_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}
/// `IndexBench::lookup_present` looks up the ids inserted with seed 0.
const LOOKUP_SEED: u64 = 0;
const INSERT_BATCH: usize = 100_000;

/// The next of a sequence that visits `0..ENTRIES` in a scrambled order (an LCG, high
/// bits), cheap enough not to show in the lookup time.
fn scramble(state: &mut u64, entries: u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (*state >> 33) % entries
}

fn index_1m(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = IndexBench::open(dir.path());
    let n = entries();
    index.insert_random(n as usize, LOOKUP_SEED);
    // As after a rebuild from segments: the bulk load compacted into few levels.
    index.compact();
    assert!(index.lookup_present(0) && index.lookup_present(n - 1));
    assert!(!index.lookup_absent(0) && !index.lookup_absent(n - 1));
    let mut g = c.benchmark_group(format!("index_{n}"));

    g.throughput(Throughput::Elements(1));
    let mut state = 1;
    g.bench_function("lookup_present", |b| {
        b.iter(|| black_box(index.lookup_present(scramble(&mut state, n))))
    });
    g.bench_function("lookup_absent", |b| {
        b.iter(|| black_box(index.lookup_absent(scramble(&mut state, n))))
    });

    // Last, so the lookups above ran at exactly one million entries. Every batch gets a
    // seed of its own, so each one inserts new ids.
    g.throughput(Throughput::Elements(INSERT_BATCH as u64));
    let mut seed = LOOKUP_SEED;
    g.bench_function("insert_100k", |b| {
        b.iter_batched(
            || {
                seed += 1;
                seed
            },
            |s| index.insert_random(INSERT_BATCH, s),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = chatvault_benches::criterion_config(5);
    targets = index_1m
}
criterion_main!(benches);
