//! The compatibility fixtures' generator and reader, shared by `format_v1.rs` and
//! `format_v2.rs`: a small repository with both kinds of key slot, three writers, a data
//! key rotation, three snapshots (and, from format 2 on, a hold), read back through the
//! real readers.
//!
//! `write_fixture` uses only the public API, so a later format version regenerates its
//! fixture by running its test with `CHATVAULT_WRITE_FIXTURE=1` (docs/FORMAT.md,
//! section 16). Keys, salts and nonces are random, so a regenerated fixture has other
//! bytes and the same content.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chatvault_core::{
    AddSlotOptions, BlobType, ChunkerParams, InitOptions, KdfParams, KeySource, LocalBackend, Node,
    OpenOptions, Repository, Role, SnapshotKind, SnapshotRecord, Summary, Tree,
};

/// A backup (key-file) slot's key.
pub const KEY_FILE: [u8; 32] = [7; 32];
/// A full (reading) slot's key file: it receives the rotated generation through a grant.
pub const AUDITOR_KEY_FILE: [u8; 32] = [8; 32];

/// `tests/fixtures/repo-v<version>`.
pub fn fixture_dir(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/repo-v{version}"))
}

/// The fixture's content: deterministic JSONL lines.
pub fn content(n: usize, salt: u64) -> Vec<u8> {
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

/// What each host's snapshot holds.
pub fn expected_content(host: &str) -> Vec<u8> {
    match host {
        "node-1" => content(20_000, 1),
        "node-2" => content(25_000, 1),
        _ => content(30_000, 2),
    }
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
        origin: None,
    }
}

fn write_snapshot(repo: &Repository, host: &str, kind: SnapshotKind) {
    let w = repo.writer().unwrap();
    let refs = w.write_stream(&expected_content(host)[..]).unwrap();
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

/// Writes the fixture repository into `dir` (replacing it) with this build's format.
pub fn write_fixture(dir: &Path, cache: &Path, passphrase: &str) {
    let _ = std::fs::remove_dir_all(dir);
    let mut repo = Repository::init(
        Box::new(LocalBackend::create(dir).unwrap()),
        &KeySource::passphrase(passphrase),
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
    write_snapshot(&repo, "node-1", SnapshotKind::Full);
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
    write_snapshot(&node, "node-2", SnapshotKind::Incremental);
    drop(node);
    let auditor = KeySource::key_file_bytes(&AUDITOR_KEY_FILE).unwrap();
    repo.add_slot(&auditor, &AddSlotOptions::new(Role::Full, "auditor"))
        .unwrap();
    // Data key generation 1: the third snapshot is sealed to it.
    assert_eq!(repo.rotate_keys().unwrap(), 1);
    write_snapshot(&repo, "node-3", SnapshotKind::Full);
    let first = repo
        .list_snapshots()
        .unwrap()
        .into_iter()
        .find(|s| s.record.host == "node-1")
        .unwrap();
    repo.place_hold(first.id, "fixture").unwrap();
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

/// The format version in an object's binary header (`u16` at offset 8: key slots, signed
/// envelopes) or, for a pack, in its trailer (10 bytes before the end).
fn header_version(name: &str, bytes: &[u8]) -> u16 {
    let at = if name.starts_with("data/") {
        bytes.len() - 10
    } else {
        8
    };
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Every object of the fixture carries `version` in its binary header. Reads the files
/// directly: opening a `LocalBackend` would create `tmp/` in the committed fixture.
pub fn assert_every_object_is_version(dir: &Path, version: u16) {
    fn walk(root: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                walk(root, &rel, out);
            } else {
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut objects = Vec::new();
    walk(dir, "", &mut objects);
    for (name, bytes) in &objects {
        assert_eq!(header_version(name, bytes), version, "{name}");
    }
    assert!(objects.len() > 10, "{} objects", objects.len());
}

/// Opens a copy of the fixture in `version`'s directory with every key, reads every
/// snapshot back, rebuilds the index from the packs, and runs the maintenance a newer
/// build runs on an older repository (hold, delete, prune, check). Returns the number of
/// holds the fixture had.
pub fn read_fixture(version: u16, passphrase: &str) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    // Work on a copy: opening creates a tmp/ directory in a local repository.
    let repo_dir = tmp.path().join("repo");
    copy_dir(&fixture_dir(version), &repo_dir);
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
    let repo = open(&KeySource::passphrase(passphrase), "cache").unwrap();
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
    // Format 1 granted a rotation to reading slots only; format 2 grants every writer
    // it does not revoke its generation's keys, the backup key's too.
    let grants = if version == 1 { 2 } else { 3 };
    assert_eq!(
        repo.config().grants.len(),
        grants,
        "admin, auditor (and node-2)"
    );
    let snapshots = repo.list_snapshots().unwrap();
    assert_eq!(snapshots.len(), 3);
    let mut hosts: Vec<_> = snapshots.iter().map(|s| s.record.host.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["node-1", "node-2", "node-3"]);
    for s in &snapshots {
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
        assert_eq!(
            restored,
            expected_content(&s.record.host),
            "snapshot of {}",
            s.record.host
        );
    }
    let holds = repo.list_holds().unwrap().len();
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
    let data = repo
        .check(&chatvault_core::CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .unwrap();
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    let report = repo.repair_index().unwrap();
    assert!(report.unreadable_packs.is_empty() && report.blobs > 0);
    // What a newer build does to an older repository: hold, forget one snapshot, prune
    // (which repacks older blobs into packs of this build's format); the others stay
    // whole, and the repository checks clean.
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
        .check(&chatvault_core::CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    for s in snapshots.iter().filter(|s| s.id != victim.id) {
        let tree = repo.read_tree(s.record.root).unwrap();
        for r in &tree.nodes()[0].content {
            repo.read_blob(r.id, BlobType::Data).unwrap();
        }
    }
    holds
}
