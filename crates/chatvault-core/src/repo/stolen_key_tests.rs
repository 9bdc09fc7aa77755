//! Regression tests for what a stolen `backup` key (a compromised chat node) could do
//! before this version.
//!
//! A poisoned index: a writer with a stolen `backup` key publishes
//! signed index segments that point blob ids it learnt from the index (or predicted) at a
//! pack of its own holding garbage sealed under those ids. It can: it holds `auth_key`,
//! `index_key` and the data public key, and every blob's associated data is something it
//! knows. These tests need the crate's internals to play the attacker (a writer that
//! queues payloads of its choosing under ids of its choosing), so they live here.
//!
//! Before the fix: the index cache kept the first entry it met for a blob id, prune
//! counted live blobs only through that entry, and a routine prune deleted the genuine
//! packs; writers skipped storing a blob the attacker had announced; readers failed on
//! the garbage copy although a genuine one existed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::{AddSlotOptions, InitOptions, OpenOptions, PruneOptions, Repository};
use crate::backend::{Backend, MemoryBackend};
use crate::blob::{BlobType, Codec};
use crate::id::{BlobId, SnapshotId};
use crate::keys::{KdfParams, KeySource, Role};
use crate::snapshot::{SnapshotKind, SnapshotRecord, Summary};
use crate::tree::{ContentRef, Node, Tree};

struct Fixture {
    backend: MemoryBackend,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A repository with an admin, then an `evil` backup key added before an honest
    /// `node-1` backup key: the attacker is the older writer, so its copies rank first.
    fn new() -> (Self, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let backend = MemoryBackend::new();
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(dir.path().join("admin")),
            ..InitOptions::default()
        };
        let mut admin = Repository::init(Box::new(backend.clone()), &key("admin"), init).unwrap();
        for label in ["evil", "node-1"] {
            let mut o = AddSlotOptions::new(Role::Backup, label);
            o.kdf = KdfParams::insecure_for_tests();
            admin.add_slot(&key(label), &o).unwrap();
        }
        (Self { backend, dir }, admin)
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn open(&self, who: &str, cache: &Path) -> Repository {
        let opts = OpenOptions {
            cache_dir: Some(cache.to_owned()),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        };
        Repository::open(Box::new(self.backend.clone()), &key(who), opts).unwrap()
    }
}

fn key(who: &str) -> KeySource {
    KeySource::passphrase(&format!("{who} passphrase"))
}

fn record(root: BlobId, host: &str) -> SnapshotRecord {
    SnapshotRecord {
        time_unix_ms: 1_760_000_000_000,
        host: host.into(),
        tags: Vec::new(),
        source_kind: "test".into(),
        paths: vec!["/srv".into()],
        parent: None,
        kind: SnapshotKind::Full,
        root,
        summary: Summary::default(),
        cursors: BTreeMap::new(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    }
}

/// Stores `files` (incompressible, several chunks each) and a snapshot naming them, for the
/// host the key's scope allows.
fn backup(repo: &Repository, files: &[Vec<u8>]) -> (SnapshotId, Vec<ContentRef>) {
    let me = repo.writer_key();
    let host = repo
        .config()
        .writers
        .iter()
        .find(|w| w.key == me)
        .map(|w| {
            if w.scope == "*" {
                "node-1".to_owned()
            } else {
                w.scope.clone()
            }
        })
        .unwrap();
    let w = repo.writer().unwrap();
    let mut nodes = Vec::new();
    let mut all = Vec::new();
    for (i, data) in files.iter().enumerate() {
        let refs = w.write_bytes(data).unwrap();
        all.extend(refs.iter().cloned());
        nodes.push(Node {
            name: format!("f{i}").into_bytes(),
            subtree: None,
            content: refs,
            meta: Vec::new(),
        });
    }
    let root = w.write_tree(&Tree::new(nodes).unwrap()).unwrap();
    w.finish().unwrap();
    (repo.save_snapshot(record(root, &host)).unwrap(), all)
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    chatvault_workload::media_bytes(seed, len)
}

/// The attacker: for every blob id it names, queues garbage under that id (it cannot
/// know the content), so its pack's header and its signed segment claim the blob.
fn poison(evil: &Repository, ids: &[(BlobId, BlobType, u32)]) {
    let w = evil.repack_writer().unwrap();
    for (i, (id, t, raw_len)) in ids.iter().enumerate() {
        let garbage = data(1000 + i as u64, *raw_len as usize);
        w.write_payload(*id, *t, Codec::Raw, *raw_len, garbage)
            .unwrap();
    }
    w.finish().unwrap();
}

/// Every blob id the index lists, as the attacker reads it from the index segments.
fn announced(repo: &Repository) -> Vec<(BlobId, BlobType, u32)> {
    let mut v = Vec::new();
    repo.index
        .for_each_entry(|e| {
            v.push((e.blob, e.blob_type, e.raw_len));
            Ok(())
        })
        .unwrap();
    v
}

fn packs(backend: &MemoryBackend) -> HashSet<String> {
    backend
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

fn restores(repo: &Repository, refs: &[ContentRef], files: &[Vec<u8>]) {
    let whole: Vec<u8> = files.concat();
    let mut read = Vec::new();
    for r in refs {
        read.extend(repo.read_blob(r.id, BlobType::Data).unwrap());
    }
    assert!(read == whole, "restored bytes differ");
}

#[test]
fn prune_keeps_the_genuine_packs_when_a_backup_key_points_every_id_at_its_own_pack() {
    let (fx, admin) = Fixture::new();
    let node = fx.open("node-1", &fx.cache("node"));
    let files: Vec<Vec<u8>> = (0..4).map(|i| data(i, 300_000)).collect();
    let (snap, refs) = backup(&node, &files);
    let genuine = packs(&fx.backend);

    let evil = fx.open("evil", &fx.cache("evil"));
    poison(&evil, &announced(&evil));
    drop(evil);

    // A fresh client rebuilds its cache from every segment: the attacker, the older
    // writer, is preferred for every id.
    drop(admin);
    let admin = fx.open("admin", &fx.cache("admin-fresh"));
    let first = refs[0].id;
    let preferred = admin.index.get(&first).unwrap().unwrap().pack;
    assert!(
        !genuine.contains(&preferred.object_name()),
        "the test needs the poisoned copy to be preferred"
    );
    // Reads fall back to the genuine copy.
    restores(&admin, &refs, &files);

    let report = admin.prune(&PruneOptions::default()).unwrap();
    assert!(report.copies_refuted > 0, "{report:?}");
    let after = packs(&fx.backend);
    for p in &genuine {
        assert!(
            after.contains(p),
            "prune deleted genuine pack {p}: {report:?}"
        );
    }
    // The refuted entries are gone from the index: the genuine copies are preferred now,
    // and the next prune removes the attacker's pack, which no segment names any more.
    let admin = fx.open("admin", &fx.cache("admin-after"));
    assert!(genuine.contains(&admin.index.get(&first).unwrap().unwrap().pack.object_name()));
    let again = admin.prune(&PruneOptions::default()).unwrap();
    assert_eq!(again.copies_refuted, 0, "{again:?}");
    assert_eq!(packs(&fx.backend), genuine, "{again:?}");
    restores(&admin, &refs, &files);
    admin.load_snapshot(snap).unwrap();
    let check = admin
        .check(&super::CheckOptions {
            read_data: true,
            ..super::CheckOptions::default()
        })
        .unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

#[test]
fn an_announced_id_does_not_stop_another_writer_from_storing_the_blob() {
    let (fx, _admin) = Fixture::new();
    // The attacker predicts content the honest node will store (a well-known file) and
    // announces its id first, pointing at garbage.
    // Below the minimum chunk size: one chunk, whose id the attacker can compute.
    let files = vec![data(7, 200_000)];
    let evil = fx.open("evil", &fx.cache("evil"));
    let predicted = vec![(
        evil.blob_id(BlobType::Data, &files[0]),
        BlobType::Data,
        200_000,
    )];
    let before = packs(&fx.backend);
    poison(&evil, &predicted);
    assert_eq!(packs(&fx.backend).len(), before.len() + 1);

    let node = fx.open("node-1", &fx.cache("node"));
    let stats_before = packs(&fx.backend).len();
    let (_, refs) = backup(&node, &files);
    assert!(
        packs(&fx.backend).len() > stats_before,
        "the honest node deduplicated against the attacker's announcement"
    );
    let admin = fx.open("admin", &fx.cache("admin-fresh"));
    restores(&admin, &refs, &files);
}

#[test]
fn writers_deduplicate_against_dedup_sources_and_their_own_copies_only() {
    let (fx, admin) = Fixture::new();
    let files = vec![data(9, 300_000)];
    // The admin key is a deduplication source by default: the node skips what it stored.
    let (_, refs) = backup(&admin, &files);
    let node = fx.open("node-1", &fx.cache("node"));
    let n = packs(&fx.backend).len();
    backup(&node, &files);
    assert_eq!(
        packs(&fx.backend).len(),
        n,
        "the same data and tree: nothing new"
    );
    // Another backup key is not: `evil` stores its own copy of what node-1 stored.
    let other = vec![data(10, 300_000)];
    backup(&node, &other);
    let evil = fx.open("evil", &fx.cache("evil"));
    let n = packs(&fx.backend).len();
    backup(&evil, &other);
    assert_eq!(
        packs(&fx.backend).len(),
        n + 1,
        "its own copy of data and tree"
    );
    restores(&admin, &refs, &files);
}

/// Before: a snapshot dated years ahead became every reader's `latest` and made
/// `forget` count its group's periods from it.
#[test]
fn a_snapshot_dated_beyond_the_clock_skew_is_refused_by_writer_and_readers() {
    let (fx, admin) = Fixture::new();
    let node = fx.open("node-1", &fx.cache("node"));
    let (_, _) = backup(&node, &[data(1, 1000)]);
    let w = node.writer().unwrap();
    let root = w.write_tree(&Tree::new(Vec::new()).unwrap()).unwrap();
    w.finish().unwrap();
    let mut r = record(root, "node-1");
    r.time_unix_ms = crate::format::now_unix_ms() + super::snapshots::MAX_CLOCK_SKEW_MS + 60_000;
    assert!(matches!(
        node.save_snapshot(r.clone()),
        Err(crate::Error::InvalidArgument { .. })
    ));
    // A node whose clock is wrong, or a forger, stores it anyway: readers refuse it.
    let id = node.store_snapshot(r.clone()).unwrap();
    match admin.load_snapshot(id) {
        Err(crate::Error::Untrusted { reason, .. }) => {
            assert!(reason.contains("ahead"), "{reason}")
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    // Within the skew it is accepted.
    r.time_unix_ms = crate::format::now_unix_ms() + 60_000;
    let near = node.save_snapshot(r).unwrap();
    admin.load_snapshot(near).unwrap();
}

/// Before: revocation only added a `trusted_until_seq`, a number the revoked key chooses
/// for its own objects, and it kept `auth_key`, `index_key` and the data generation, so
/// it could go on reading new index segments and sealing packs readers accept.
#[test]
fn a_revoked_key_reads_no_new_segment_and_writes_nothing_readers_accept() {
    let (fx, mut admin) = Fixture::new();
    let node = fx.open("node-1", &fx.cache("node"));
    let before = vec![data(20, 200_000)];
    let (_, before_refs) = backup(&node, &before);
    let evil = fx.open("evil", &fx.cache("evil"));
    let (evil_snapshot, _) = backup(&evil, &[data(21, 1000)]);

    let evil_key = evil.writer_key();
    let endorsed = admin.revoke_writer(evil_key, u64::MAX).unwrap();
    assert_eq!(endorsed, 2, "its snapshot and its segment");
    assert_eq!(admin.config().key_generation, 1);
    assert_eq!(admin.config().rekeyed_generations, vec![1]);

    // The honest node received the new generation and writes with it.
    drop(node);
    let node = fx.open("node-1", &fx.cache("node"));
    let after = vec![data(22, 200_000)];
    let (_, after_refs) = backup(&node, &after);
    let admin = fx.open("admin", &fx.cache("admin-after"));
    restores(&admin, &before_refs, &before);
    restores(&admin, &after_refs, &after);
    admin.load_snapshot(evil_snapshot).unwrap();

    // The revoked key cannot open the repository any more: the new segments are sealed
    // with an index_key it was never given.
    let opts = OpenOptions {
        cache_dir: Some(fx.cache("evil-again")),
        allow_weak_kdf: true,
        ..OpenOptions::default()
    };
    match Repository::open(Box::new(fx.backend.clone()), &key("evil"), opts) {
        Err(crate::Error::KeyNotGranted { generation: 1 }) => {}
        other => panic!("expected KeyNotGranted, got {other:?}"),
    }
    // Its old handle (still on generation 0) seals a pack and a segment with its old
    // keys: readers refuse the segment (not endorsed), so they never use the pack.
    poison(&evil, &[(after_refs[0].id, BlobType::Data, 1000)]);
    let admin = fx.open("admin", &fx.cache("admin-last"));
    assert!(
        admin.index_problems().iter().any(|p| p.contains("revoked")),
        "{:?}",
        admin.index_problems()
    );
    assert_eq!(admin.index.copies(&after_refs[0].id).unwrap().len(), 1);
    restores(&admin, &after_refs, &after);
}

/// A backup key whose writer entry has no grant key (created by a version that gave
/// grant keys to reading roles only) fails with a clear error after a rotation, rather
/// than seal data with keys readers would refuse.
#[test]
fn a_key_without_a_grant_fails_closed_after_a_rotation() {
    let (fx, mut admin) = Fixture::new();
    let node_key = fx.open("node-1", &fx.cache("node")).writer_key();
    admin
        .update_config(|c, _| {
            for w in c.writers.iter_mut().filter(|w| w.key == node_key) {
                w.grant_key = None;
            }
            Ok(())
        })
        .unwrap();
    admin.rotate_keys().unwrap();
    let node = fx.open("node-1", &fx.cache("node"));
    match node.writer() {
        Err(crate::Error::KeyNotGranted { generation: 1 }) => {}
        other => panic!("expected KeyNotGranted, got {:?}", other.map(|_| ())),
    }
}
