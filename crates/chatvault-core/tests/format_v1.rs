//! Compatibility: a small repository written by format version 1 is committed under
//! `tests/fixtures/repo-v1`, and every later build must read it. It pins, through the real
//! readers, the bytes of the config, both kinds of key slot, index segments, packs, trees
//! and snapshot records.
//!
//! To regenerate it (only when the format version changes, with a spec diff):
//! `CHATVAULT_WRITE_FIXTURE=1 cargo test -p chatvault-core --test format_v1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chatvault_core::{
    AddSlotOptions, BlobType, ChunkerParams, InitOptions, KdfParams, KeySource, LocalBackend, Node,
    OpenOptions, Repository, Role, SnapshotKind, SnapshotRecord, Summary, Tree,
};

const PASSPHRASE: &str = "chatvault fixture v1";
const KEY_FILE: [u8; 32] = [7; 32];
/// A full (reading) slot's key file: it receives the rotated generation through a grant.
const AUDITOR_KEY_FILE: [u8; 32] = [8; 32];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1")
}

/// The fixture's content: deterministic JSONL lines.
fn content(n: usize, salt: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        let x = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        out.extend_from_slice(
            format!(
                "{{\"seq\":{i},\"conv\":\"c{}\",\"text\":\"msg {x}\"}}\n",
                x % 13
            )
            .as_bytes(),
        );
    }
    out.truncate(n);
    out
}

fn record(root: chatvault_core::BlobId, host: &str, kind: SnapshotKind) -> SnapshotRecord {
    SnapshotRecord {
        time_unix_ms: 1_763_900_000_000,
        host: host.into(),
        tags: vec!["fixture".into()],
        source_kind: "test".into(),
        paths: vec!["/srv/chat/logs".into()],
        parent: None,
        kind,
        root,
        summary: Summary::default(),
        cursors: BTreeMap::from([("c1".to_string(), vec![1, 2, 3])]),
        writer_seq: 0,
        prev_writer_snapshot: None,
    }
}

fn write_snapshot(repo: &Repository, data: &[u8], host: &str, kind: SnapshotKind) {
    let w = repo.writer().unwrap();
    let refs = w.write_stream(data).unwrap();
    let root = w
        .write_tree(
            &Tree::new(vec![Node {
                name: b"log.jsonl".to_vec(),
                subtree: None,
                content: refs,
                meta: b"m".to_vec(),
            }])
            .unwrap(),
        )
        .unwrap();
    w.finish().unwrap();
    repo.save_snapshot(record(root, host, kind)).unwrap();
}

fn write_fixture(dir: &Path, cache: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let mut repo = Repository::init(
        Box::new(LocalBackend::create(dir).unwrap()),
        &KeySource::passphrase(PASSPHRASE),
        InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            chunker: ChunkerParams {
                min_size: 256,
                avg_size: 1024,
                max_size: 4096,
            },
            pack_size: 1 << 20,
            cache_dir: Some(cache.to_owned()),
            ..InitOptions::default()
        },
    )
    .unwrap();
    write_snapshot(&repo, &content(20_000, 1), "node-1", SnapshotKind::Full);
    let key = KeySource::key_file_bytes(&KEY_FILE).unwrap();
    repo.add_slot(&key, &AddSlotOptions::new(Role::Backup, "node-2"))
        .unwrap();
    let node = Repository::open(
        Box::new(LocalBackend::open(dir).unwrap()),
        &key,
        OpenOptions {
            cache_dir: Some(cache.join("node")),
            ..OpenOptions::default()
        },
    )
    .unwrap();
    write_snapshot(
        &node,
        &content(25_000, 1),
        "node-2",
        SnapshotKind::Incremental,
    );
    drop(node);
    let auditor = KeySource::key_file_bytes(&AUDITOR_KEY_FILE).unwrap();
    repo.add_slot(&auditor, &AddSlotOptions::new(Role::Full, "auditor"))
        .unwrap();
    // Data key generation 1: the third snapshot is sealed to it.
    assert_eq!(repo.rotate_keys().unwrap(), 1);
    write_snapshot(&repo, &content(30_000, 2), "node-3", SnapshotKind::Full);
    drop(repo);
    let _ = std::fs::remove_dir_all(dir.join("tmp"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn reads_the_format_v1_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("CHATVAULT_WRITE_FIXTURE").is_some() {
        write_fixture(&fixture_dir(), &tmp.path().join("write-cache"));
    }
    // Work on a copy: opening creates a tmp/ directory in a local repository.
    let repo_dir = tmp.path().join("repo");
    copy_dir(&fixture_dir(), &repo_dir);
    let open = |key: &KeySource, cache: &str| {
        Repository::open(
            Box::new(LocalBackend::open(&repo_dir).unwrap()),
            key,
            OpenOptions {
                cache_dir: Some(tmp.path().join(cache)),
                allow_weak_kdf: true,
                ..OpenOptions::default()
            },
        )
    };
    let repo = open(&KeySource::passphrase(PASSPHRASE), "cache").unwrap();
    assert!(
        repo.index_problems().is_empty(),
        "{:?}",
        repo.index_problems()
    );
    assert_eq!(repo.role(), Role::Admin);
    assert_eq!(
        repo.config().chunker,
        ChunkerParams {
            min_size: 256,
            avg_size: 1024,
            max_size: 4096
        }
    );
    assert_eq!(repo.config().writers.len(), 3);
    assert_eq!(repo.config().key_generation, 1);
    assert_eq!(repo.config().grants.len(), 2, "admin and auditor");
    let snapshots = repo.list_snapshots().unwrap();
    assert_eq!(snapshots.len(), 3);
    let mut hosts: Vec<_> = snapshots.iter().map(|s| s.record.host.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["node-1", "node-2", "node-3"]);
    for s in &snapshots {
        let expected = match s.record.host.as_str() {
            "node-1" => content(20_000, 1),
            "node-2" => content(25_000, 1),
            _ => content(30_000, 2),
        };
        assert_eq!(s.record.cursors["c1"], vec![1, 2, 3]);
        let tree = repo.read_tree(s.record.root).unwrap();
        let node = &tree.nodes()[0];
        assert_eq!(
            (node.name.as_slice(), node.meta.as_slice()),
            (&b"log.jsonl"[..], &b"m"[..])
        );
        let restored: Vec<u8> = node
            .content
            .iter()
            .flat_map(|r| repo.read_blob(r.id, BlobType::Data).unwrap())
            .collect();
        assert_eq!(restored, expected, "snapshot of {}", s.record.host);
    }
    // The key-file slot opens as a backup key; the index can be rebuilt from pack headers.
    let node = open(&KeySource::key_file_bytes(&KEY_FILE).unwrap(), "node-cache").unwrap();
    assert_eq!(node.role(), Role::Backup);
    // The auditor's slot predates the rotation: it reads generation 1 through its grant.
    let auditor = open(
        &KeySource::key_file_bytes(&AUDITOR_KEY_FILE).unwrap(),
        "auditor-cache",
    )
    .unwrap();
    for s in auditor.list_snapshots().unwrap() {
        let tree = auditor.read_tree(s.record.root).unwrap();
        for r in &tree.nodes()[0].content {
            auditor.read_blob(r.id, BlobType::Data).unwrap();
        }
    }
    let report = repo.repair_index().unwrap();
    assert!(report.unreadable_packs.is_empty() && report.blobs > 0);
    // Data written before holds, locks and prune existed: forgetting one snapshot and
    // pruning keeps the others whole, and the repository checks clean.
    let node1 = snapshots
        .iter()
        .find(|s| s.record.host == "node-1")
        .unwrap();
    repo.place_hold(snapshots[0].id, "compatibility").unwrap();
    let victim = snapshots
        .iter()
        .find(|s| s.id != snapshots[0].id && s.id != node1.id)
        .unwrap();
    repo.delete_snapshot(victim.id).unwrap();
    repo.prune(&chatvault_core::PruneOptions::default())
        .unwrap();
    let check = repo
        .check(&chatvault_core::CheckOptions::default())
        .unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    for s in snapshots.iter().filter(|s| s.id != victim.id) {
        let tree = repo.read_tree(s.record.root).unwrap();
        for r in &tree.nodes()[0].content {
            repo.read_blob(r.id, BlobType::Data).unwrap();
        }
    }
}
