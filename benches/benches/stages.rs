//! Per-stage throughput of the write path, each stage alone on one thread: chunking,
//! blob ids, zstd at levels 1 and 3, sealing, and pack building, over the same 16 MiB of
//! mixed corpus (half chat text, half media).
//!
//! Invariant: every stage sees the same input bytes and reports `Throughput::Bytes` of
//! that input, so the figures compare directly (and feed `stage_report`'s ceiling).
//! Per-blob stages run over 1 MiB blobs, the default average chunk size.

use std::hint::black_box;

use chatvault_benches::{MIB, blobs, corpus};
use chatvault_core::ChunkerParams;
use chatvault_core::bench_support;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const INPUT: usize = 16 * MIB;

fn stages(c: &mut Criterion) {
    let data = corpus(INPUT);
    let blobs = blobs(&data);
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(INPUT as u64));

    g.bench_function("chunking", |b| {
        b.iter(|| bench_support::chunk_all(black_box(&data), ChunkerParams::default()))
    });
    g.bench_function("hashing", |b| {
        b.iter(|| {
            for blob in &blobs {
                black_box(bench_support::hash_blob(black_box(blob)));
            }
        })
    });
    for level in [1, 3] {
        g.bench_function(format!("zstd_{level}"), |b| {
            b.iter(|| {
                for blob in &blobs {
                    black_box(bench_support::compress(level, black_box(blob)));
                }
            })
        });
    }
    g.bench_function("sealing", |b| {
        b.iter(|| {
            for blob in &blobs {
                black_box(bench_support::seal_blob(black_box(blob)));
            }
        })
    });
    // Includes the blob ids and sealing of its blobs (bench_support builds a complete
    // pack), so it is not additive with "hashing" and "sealing".
    g.bench_function("pack_building", |b| {
        b.iter(|| bench_support::build_pack(black_box(&blobs)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = chatvault_benches::criterion_config(5);
    targets = stages
}
criterion_main!(benches);
