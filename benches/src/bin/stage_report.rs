//! Measures each write-path stage once, single-threaded, over 64 MiB of mixed corpus and
//! prints a table of MB/s with the theoretical pipeline ceiling on two cores:
//! `2 / Σ (1 / stage speed)` over the stages every new byte passes through.
//!
//! Invariants:
//! - Every stage's speed is per byte of the same input, so the reciprocals add up to the
//!   CPU time one input byte costs.
//! - Pack building includes blob ids and sealing (`bench_support::build_pack` builds a
//!   whole pack), so the ceiling uses its remainder ("pack assembly") rather than
//!   counting those stages twice.
//! - Sealing and packing run here on uncompressed bytes; in a real write they see the
//!   compressed (smaller) payload, so the ceiling is slightly pessimistic.
//!
//! Usage: `cargo run --release -p chatvault-benches --bin stage_report`
#![allow(clippy::print_stdout, reason = "a report binary: printing is its job")]

use std::hint::black_box;
use std::io::Read;
use std::time::Instant;

use chatvault_benches::{MIB, SEED, blobs, corpus, mb_per_s};
use chatvault_core::ChunkerParams;
use chatvault_core::bench_support;

const INPUT: usize = 64 * MIB;
/// Blobs per pack: 16 MiB, the default pack size.
const PACK_BLOBS: usize = 16;
const CORES: f64 = 2.0;

/// Seconds `f` takes to run once.
fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// Seconds to read `len` bytes from `r` through a 1 MiB buffer.
fn time_reader(mut r: impl Read, len: u64) -> f64 {
    let mut buf = vec![0u8; MIB];
    time(|| {
        let mut left = len;
        while left > 0 {
            let n = r.read(&mut buf).expect("generators do not fail");
            assert!(n > 0, "generator ended early");
            left = left.saturating_sub(n as u64);
        }
    })
}

fn main() {
    let bytes = INPUT as u64;
    let data = corpus(INPUT);
    let blobs = blobs(&data);
    let per_blob = |f: &dyn Fn(&[u8]) -> usize| {
        time(|| {
            for b in &blobs {
                black_box(f(black_box(b)));
            }
        })
    };

    let chunk = time(|| {
        black_box(bench_support::chunk_all(&data, ChunkerParams::default()));
    });
    let hash = per_blob(&|b| bench_support::hash_blob(b).len());
    let zstd1 = per_blob(&|b| bench_support::compress(1, b));
    let zstd3 = per_blob(&|b| bench_support::compress(3, b));
    let seal = per_blob(&|b| bench_support::seal_blob(b));
    let pack = time(|| {
        for group in blobs.chunks(PACK_BLOBS) {
            black_box(bench_support::build_pack(group));
        }
    });
    // What building a pack costs beyond the ids and sealing measured on their own:
    // header, trailer, key wrap, the pack id hash and copies. Floored so a noisy run
    // cannot make it negative.
    let assembly = (pack - hash - seal).max(pack * 0.01);

    println!(
        "stage speeds, one thread, {} MiB of mixed corpus (seed {SEED})",
        INPUT / MIB
    );
    println!("{:<28} {:>10}", "stage", "MB/s");
    let row = |name: &str, seconds: f64| println!("{name:<28} {:>10.1}", mb_per_s(bytes, seconds));
    row("chunking (FastCDC)", chunk);
    row("blob ids (keyed BLAKE3)", hash);
    row("zstd level 1", zstd1);
    row("zstd level 3 (default)", zstd3);
    row("sealing (XChaCha20-Poly1305)", seal);
    row("pack building (all of it)", pack);
    row("pack assembly (remainder)", assembly);

    // The stages every new byte passes through at the default settings.
    let per_byte = chunk + hash + zstd3 + seal + assembly;
    let ceiling = mb_per_s(bytes, per_byte) * CORES;
    println!();
    println!("pipeline ceiling, {CORES} cores, zstd 3: {ceiling:.1} MB/s");
    println!(
        "  (chunking is serial per stream: one stream cannot exceed {:.1} MB/s)",
        mb_per_s(bytes, chunk)
    );

    // Context: the input generators, which feed the streaming benches.
    println!();
    println!("{:<28} {:>10}", "generator", "MB/s");
    let chat = chatvault_workload::ChatLog::new(chatvault_workload::ChatLogOptions::default());
    row("chat log (JSONL)", time_reader(chat, bytes));
    row(
        "media (BLAKE3 XOF)",
        time_reader(chatvault_workload::MediaReader::new(SEED, bytes), bytes),
    );
    row(
        "mixed corpus",
        time_reader(chatvault_workload::mixed_corpus(SEED, bytes), bytes),
    );
}
