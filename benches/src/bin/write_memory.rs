//! Writes N MiB (first argument, default 1024) of mixed corpus through `Repository` on a
//! `LocalBackend` in a temporary directory, then prints the throughput, the writer's
//! figures and the peak resident memory. Run it at two sizes: if the pipeline's queues
//! are bounded, as the design requires, peak RSS stays flat as N grows.
//!
//! Invariant: the corpus is generated while it is written (never held in memory), so the
//! process's peak RSS is the engine's working set plus a constant.
//!
//! Usage: `cargo run --release -p chatvault-benches --bin write_memory -- [MiB] [FILE]`
//! (with FILE, back up that file instead of the generated corpus).
#![allow(clippy::print_stdout, reason = "a report binary: printing is its job")]

use std::error::Error;
use std::time::Instant;

use chatvault_benches::{MIB, SEED, init_options, key, mb_per_s, proc_status_kib};
use chatvault_core::{LocalBackend, Repository};

const DEFAULT_MIB: u64 = 1024;

/// The `chatvault` binary's allocator, so that these figures are the CLI's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<(), Box<dyn Error>> {
    let mib = match std::env::args().nth(1) {
        None => DEFAULT_MIB,
        Some(a) => a
            .parse::<u64>()
            .map_err(|e| format!("usage: write_memory [MiB], not {a:?}: {e}"))?,
    };
    // An optional file to back up instead of the generated corpus (to compare with other
    // tools on identical bytes): `write_memory MIB FILE` reads FILE and ignores MIB.
    let file = std::env::args().nth(2);
    let total = match &file {
        Some(f) => std::fs::metadata(f)?.len(),
        None => mib * MIB as u64,
    };
    let dir = tempfile::tempdir()?;
    let backend = LocalBackend::create(dir.path().join("repo"))?;
    let repo = Repository::init(
        Box::new(backend),
        &key(),
        init_options(&dir.path().join("cache")),
    )?;
    let baseline = proc_status_kib("VmRSS");

    let start = Instant::now();
    let writer = repo.writer()?;
    let source: Box<dyn std::io::Read + Send> = match &file {
        Some(f) => Box::new(std::fs::File::open(f)?),
        None => Box::new(chatvault_workload::mixed_corpus(SEED, total)),
    };
    let refs = writer.write_stream(source)?;
    let stats = writer.finish()?;
    let seconds = start.elapsed().as_secs_f64();

    match &file {
        Some(f) => println!(
            "wrote {f} ({} MiB) to a LocalBackend in a temporary directory",
            total >> 20
        ),
        None => {
            println!("wrote {mib} MiB of mixed corpus to a LocalBackend in a temporary directory")
        }
    }
    println!("time            {seconds:.2} s");
    println!(
        "throughput      {:.1} MB/s {}",
        mb_per_s(total, seconds),
        if file.is_some() {
            "(read from the file)"
        } else {
            "(corpus generation included)"
        }
    );
    println!("chunks          {}", refs.len());
    println!("{stats:#?}");
    if stats.bytes_new > 0 {
        let ratio = stats.bytes_new as f64 / stats.bytes_compressed as f64;
        println!("compression     {ratio:.2}x on new data");
    }
    let show = |kib: Option<u64>| kib.map_or("unknown".to_owned(), |k| format!("{} MiB", k / 1024));
    println!("RSS before      {}", show(baseline));
    println!("peak RSS        {} (VmHWM)", show(proc_status_kib("VmHWM")));
    Ok(())
}
