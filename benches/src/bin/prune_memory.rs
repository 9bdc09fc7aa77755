//! Peak memory and time of a prune as the number of blobs grows: builds a repository of N
//! small blobs (first argument, default 1000000) in two snapshots that share half their
//! blobs, forgets the first, and prunes it in a child process, which reports its own peak
//! resident memory. Run it at two sizes: the mark set lives on disk, so peak RSS should
//! stay flat as N grows.
//!
//! Invariant: the child process does only the prune (open, mark, plan, repack, delete),
//! so its VmHWM is the prune's working set.
//!
//! Like the `chatvault` binary it uses jemalloc: under glibc malloc, freed pack-sized
//! buffers stayed in malloc's arenas and the peak grew with N (README, the `prune_memory`
//! table). RocksDB's C++ allocations still go through glibc.
//!
//! Usage: `cargo run --release -p chatvault-benches --bin prune_memory -- [BLOBS]`
#![allow(clippy::print_stdout, reason = "a report binary: printing is its job")]

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use chatvault_benches::{init_options, key, proc_status_kib};
use chatvault_core::{
    BlobWriter, ContentRef, LocalBackend, Node, OpenOptions, PruneOptions, Repository,
    SnapshotKind, SnapshotRecord, Summary, Tree,
};

/// The `chatvault` binary's allocator, so that these figures are the CLI's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const DEFAULT_BLOBS: u64 = 1_000_000;
/// Bytes per blob: small, like message-log segments and thumbnails.
const BLOB_BYTES: usize = 512;
/// Files per directory tree.
const PER_DIR: u64 = 1000;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--prune") {
        return prune(Path::new(&args[1]));
    }
    let n = match args.first() {
        None => DEFAULT_BLOBS,
        Some(a) => a
            .parse::<u64>()
            .map_err(|e| format!("usage: prune_memory [BLOBS], not {a:?}: {e}"))?,
    };
    let dir = tempfile::tempdir()?;
    let start = Instant::now();
    build(dir.path(), n)?;
    println!(
        "built {n} blobs of {BLOB_BYTES} bytes in two snapshots in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--prune")
        .arg(dir.path())
        .status()?;
    if !status.success() {
        return Err(format!("the prune child failed: {status}").into());
    }
    Ok(())
}

/// Blob `i`'s bytes: distinct and incompressible.
fn blob(i: u64) -> Vec<u8> {
    let mut out = vec![0u8; BLOB_BYTES];
    let mut h = blake3::Hasher::new();
    h.update(&i.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// Blobs `range` as directories of `PER_DIR` files, one blob each; returns the root.
fn write_snapshot_tree(
    w: &BlobWriter<'_>,
    range: std::ops::Range<u64>,
) -> Result<chatvault_core::BlobId, Box<dyn Error>> {
    let mut dirs = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let end = (start + PER_DIR).min(range.end);
        let mut nodes = Vec::new();
        for i in start..end {
            let r: ContentRef = w.write_blob(chatvault_core::BlobType::Data, &blob(i))?;
            nodes.push(Node {
                name: format!("f{i:09}").into_bytes(),
                subtree: None,
                content: vec![r],
                meta: Vec::new(),
            });
        }
        dirs.push(Node {
            name: format!("d{start:09}").into_bytes(),
            subtree: Some(w.write_tree(&Tree::new(nodes)?)?),
            content: Vec::new(),
            meta: Vec::new(),
        });
        start = end;
    }
    Ok(w.write_tree(&Tree::new(dirs)?)?)
}

fn record(root: chatvault_core::BlobId, time: i64) -> SnapshotRecord {
    SnapshotRecord {
        time_unix_ms: time,
        host: "bench".into(),
        tags: Vec::new(),
        source_kind: "bench".into(),
        paths: vec!["/bench".into()],
        parent: None,
        kind: SnapshotKind::Full,
        root,
        summary: Summary::default(),
        cursors: Default::default(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    }
}

/// Snapshot A holds blobs [0, 2n/3), B holds [n/3, n): forgetting A leaves a third of the
/// blobs unused, spread over the packs written first.
fn build(dir: &Path, n: u64) -> Result<(), Box<dyn Error>> {
    let backend = LocalBackend::create(dir.join("repo"))?;
    let repo = Repository::init(Box::new(backend), &key(), init_options(&dir.join("cache")))?;
    let w = repo.writer()?;
    let a = write_snapshot_tree(&w, 0..2 * n / 3)?;
    w.finish()?;
    let a = repo.save_snapshot(record(a, 1))?;
    let w = repo.writer()?;
    let b = write_snapshot_tree(&w, n / 3..n)?;
    w.finish()?;
    repo.save_snapshot(record(b, 2))?;
    repo.delete_snapshot(a)?;
    Ok(())
}

/// Samples the process's anonymous resident memory (heap, stacks: what RocksDB's and
/// our buffers use) every 5 ms and keeps the peak. VmHWM also counts file pages mapped
/// by RocksDB's mmap reads, which the kernel reclaims under pressure.
fn anon_sampler() -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = peak.clone();
    std::thread::spawn(move || {
        loop {
            if let Some(kib) = proc_status_kib("RssAnon") {
                p.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    peak
}

fn prune(dir: &Path) -> Result<(), Box<dyn Error>> {
    let anon = anon_sampler();
    let start = Instant::now();
    let repo = Repository::open(
        Box::new(LocalBackend::open(dir.join("repo"))?),
        &key(),
        OpenOptions {
            cache_dir: Some(dir.join("cache")),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        },
    )?;
    let opened = start.elapsed().as_secs_f64();
    let r = repo.prune(&PruneOptions::default())?;
    let show = |kib: Option<u64>| kib.map_or("unknown".to_owned(), |k| format!("{} MiB", k / 1024));
    println!("open            {opened:.2} s");
    println!("prune           {:.2} s", r.duration.as_secs_f64());
    println!(
        "live blobs      {} (of {} packs, {} deleted, {} repacked, {} MiB freed)",
        r.live_blobs,
        r.packs_before,
        r.packs_deleted,
        r.packs_repacked,
        r.bytes_freed >> 20
    );
    println!(
        "peak RSS        {} (VmHWM of the prune process)",
        show(proc_status_kib("VmHWM"))
    );
    println!(
        "peak anonymous  {} (RssAnon sampled every 5 ms; the rest is mapped index files)",
        show(Some(anon.load(std::sync::atomic::Ordering::Relaxed)))
    );
    Ok(())
}
