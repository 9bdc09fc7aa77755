//! The chatvault demo: what the engine does, end to end, on a local repository.
//!
//! Generates chat-server-like data (JSONL message logs and incompressible media), backs it
//! up into a fresh encrypted repository, backs it up again with new messages appended
//! (showing deduplication), shows that a backup-only key can write but not read, then
//! reopens the repository with a fresh index cache (as a second machine would), reads
//! every chunk back and compares it with the original, byte for byte.
//!
//! Usage: `cargo run --release -p chatvault-core --example demo -- [--size-mib N] [--keep DIR]`
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use chatvault_core::{
    AddSlotOptions, BlobType, ContentRef, Error, InitOptions, KdfParams, KeySource, LocalBackend,
    Node, OpenOptions, Repository, Role, SnapshotKind, SnapshotRecord, Summary, Tree,
};

struct Args {
    size_mib: u64,
    keep: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        size_mib: 256,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size-mib" => {
                let v = it.next().ok_or("--size-mib needs a number")?;
                args.size_mib = v.parse().map_err(|_| format!("bad size {v:?}"))?;
            }
            "--keep" => args.keep = Some(it.next().ok_or("--keep needs a directory")?.into()),
            "-h" | "--help" => return Err("usage: demo [--size-mib N] [--keep DIR]".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// One backup: the stream as one file node, a root tree, a signed snapshot record.
fn backup(
    repo: &Repository,
    data: impl Read + Send,
    kind: SnapshotKind,
) -> Result<(Vec<ContentRef>, chatvault_core::WriteStats), Error> {
    let started = Instant::now();
    let writer = repo.writer()?;
    let refs = writer.write_stream(data)?;
    let root = writer.write_tree(&Tree::new(vec![Node {
        name: b"server-data.bin".to_vec(),
        subtree: None,
        content: refs.clone(),
        meta: Vec::new(),
    }])?)?;
    let stats = writer.finish()?;
    repo.save_snapshot(SnapshotRecord {
        time_unix_ms: 0,
        host: "demo-host".into(),
        tags: vec!["demo".into()],
        source_kind: "demo".into(),
        paths: vec!["server-data.bin".into()],
        parent: None,
        kind,
        root,
        summary: Summary {
            files: 1,
            bytes_read: stats.bytes_in,
            bytes_added: stats.bytes_new,
            blobs_added: stats.blobs_new,
            duration_ms: started.elapsed().as_millis() as u64,
            errors: 0,
        },
        cursors: BTreeMap::new(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    })?;
    Ok((refs, stats))
}

fn report(step: &str, stats: &chatvault_core::WriteStats, secs: f64) {
    println!(
        "{step:<28} {:>9.1} MiB in  {:>9.1} MiB new  {:>9.1} MiB stored  {:>7.1} MB/s  {:>6.2} s",
        mib(stats.bytes_in),
        mib(stats.bytes_new),
        mib(stats.pack_bytes),
        stats.bytes_in as f64 / 1e6 / secs,
        secs
    );
}

fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let base = args.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let repo_dir = base.join("repo");
    let total = args.size_mib << 20;
    let key = KeySource::passphrase("demo passphrase: use a real one");
    println!(
        "chatvault demo: {} MiB of generated chat-server data, repository at {}",
        args.size_mib,
        repo_dir.display()
    );

    let t = Instant::now();
    let mut admin = Repository::init(
        Box::new(LocalBackend::create(&repo_dir)?),
        &key,
        InitOptions {
            cache_dir: Some(base.join("cache-server")),
            ..InitOptions::default()
        },
    )?;
    println!(
        "{:<28} argon2id 64 MiB t=3 key slot, {:.2} s",
        "init",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let (refs, first) = backup(
        &admin,
        chatvault_workload::mixed_corpus(1, total),
        SnapshotKind::Full,
    )?;
    report("full backup", &first, t.elapsed().as_secs_f64());

    // The next day: the same data plus 2 % new messages appended.
    let appended = total / 50;
    let t = Instant::now();
    let next = chatvault_workload::mixed_corpus(1, total)
        .chain(chatvault_workload::mixed_corpus(2, appended));
    let (_, second) = backup(&admin, next, SnapshotKind::Incremental)?;
    report(
        "same data + 2 % appended",
        &second,
        t.elapsed().as_secs_f64(),
    );

    // A chat node's key: writes and dedupes, reads nothing.
    let mut slot = AddSlotOptions::new(Role::Backup, "chat-node-1");
    slot.kdf = KdfParams::default();
    let node_key = KeySource::passphrase("chat node key");
    admin.add_slot(&node_key, &slot)?;
    drop(admin);
    let node = Repository::open(
        Box::new(LocalBackend::open(&repo_dir)?),
        &node_key,
        OpenOptions {
            cache_dir: Some(base.join("cache-node")),
            ..OpenOptions::default()
        },
    )?;
    let denied = matches!(
        node.read_blob(refs[0].id, BlobType::Data),
        Err(Error::PermissionDenied { .. })
    );
    println!(
        "{:<28} role {}, reading history refused: {denied}",
        "backup-only key",
        node.role()
    );
    drop(node);

    // Restore on "another machine": fresh index cache, rebuilt from the index segments.
    let t = Instant::now();
    let repo = Repository::open(
        Box::new(LocalBackend::open(&repo_dir)?),
        &key,
        OpenOptions {
            cache_dir: Some(base.join("cache-restore")),
            ..OpenOptions::default()
        },
    )?;
    let snapshots = repo.list_snapshots()?;
    let first_snapshot = &snapshots[0];
    let tree = repo.read_tree(first_snapshot.record.root)?;
    let mut original = chatvault_workload::mixed_corpus(1, total);
    let mut expected = Vec::new();
    let mut identical = true;
    let mut restored = 0u64;
    for r in &tree.nodes()[0].content {
        let got = repo.read_blob(r.id, BlobType::Data)?;
        expected.resize(got.len(), 0);
        original.read_exact(&mut expected)?;
        identical &= got == expected;
        restored += got.len() as u64;
    }
    identical &= restored == total;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<28} {:>9.1} MiB in {:.2} s ({:.1} MB/s), restored = original: {identical}",
        "restore (fresh cache)",
        mib(restored),
        secs,
        restored as f64 / 1e6 / secs
    );

    let stats = repo.stats()?;
    let logical = first.bytes_in + second.bytes_in;
    println!(
        "repository: {} snapshots, {} packs, {:.1} MiB stored for {:.1} MiB backed up (ratio {:.2})",
        stats.snapshots,
        stats.packs,
        mib(stats.pack_bytes),
        mib(logical),
        logical as f64 / stats.pack_bytes.max(1) as f64
    );
    Ok(identical && denied)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo FAILED: restored data differs or a backup key could read");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
