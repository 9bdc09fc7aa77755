//! The `chatvault` binary: the command line is in the library (`lib.rs`); this file only
//! chooses the allocator.

use std::process::ExitCode;

/// jemalloc returns freed large buffers for reuse instead of keeping them in per-arena
/// heaps as glibc does once its mmap threshold has grown, which kept a prune's peak memory
/// from staying flat as the repository grows (Cargo.toml, `prune_memory`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    chatvault_cli::main()
}
