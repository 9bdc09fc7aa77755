//! Integration tests of the repository façade: everything through the public API, with
//! storage tampering done the way an attacker or a failing disk would, on the objects.

mod faults;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chatvault_core::{
    AddSlotOptions, Backend, BlobType, ContentRef, Error, InitOptions, KdfParams, KeySource,
    LocalBackend, MemoryBackend, Node, OpenOptions, Repository, Role, SnapshotKind, SnapshotRecord,
    Summary, Tree,
};

fn init_opts(cache: &Path) -> InitOptions {
    InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(cache.to_owned()),
        ..InitOptions::default()
    }
}

fn open_opts(cache: &Path) -> OpenOptions {
    OpenOptions {
        cache_dir: Some(cache.to_owned()),
        allow_weak_kdf: true,
        ..OpenOptions::default()
    }
}

fn pass() -> KeySource {
    KeySource::passphrase("correct horse battery staple")
}

struct Fixture {
    backend: MemoryBackend,
    _dir: tempfile::TempDir,
    cache: std::path::PathBuf,
}

impl Fixture {
    fn new() -> (Self, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let backend = MemoryBackend::new();
        let repo = Repository::init(Box::new(backend.clone()), &pass(), init_opts(&cache)).unwrap();
        (
            Self {
                backend,
                _dir: dir,
                cache,
            },
            repo,
        )
    }

    /// Opens with a brand-new cache directory (a second machine, or a lost cache).
    fn open_fresh(&self, key: &KeySource) -> chatvault_core::Result<Repository> {
        let fresh = self
            .cache
            .with_file_name(format!("cache-{}", rand_suffix()));
        Repository::open(Box::new(self.backend.clone()), key, open_opts(&fresh))
    }

    fn open(&self, key: &KeySource) -> chatvault_core::Result<Repository> {
        Repository::open(Box::new(self.backend.clone()), key, open_opts(&self.cache))
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn record(root: chatvault_core::BlobId, host: &str) -> SnapshotRecord {
    SnapshotRecord {
        time_unix_ms: 1_760_000_000_000,
        host: host.into(),
        tags: vec!["daily".into()],
        source_kind: "test".into(),
        paths: vec!["/srv/chat".into()],
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

/// Writes `data` as a stream plus a one-node tree, saves a snapshot; returns refs and id.
fn backup(
    repo: &Repository,
    data: &[u8],
    host: &str,
) -> (Vec<ContentRef>, chatvault_core::SnapshotId) {
    let w = repo.writer().unwrap();
    let refs = w.write_stream(data).unwrap();
    let tree = Tree::new(vec![Node {
        name: b"file".to_vec(),
        subtree: None,
        content: refs.clone(),
        meta: Vec::new(),
    }])
    .unwrap();
    let root = w.write_tree(&tree).unwrap();
    w.finish().unwrap();
    (refs, repo.save_snapshot(record(root, host)).unwrap())
}

fn text(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        out.extend_from_slice(
            format!(
                "{{\"seq\":{i},\"text\":\"message number {}\"}}\n",
                i * 7919 % 10007
            )
            .as_bytes(),
        );
    }
    out.truncate(n);
    out
}

fn restore(repo: &Repository, refs: &[ContentRef]) -> Vec<u8> {
    refs.iter()
        .flat_map(|r| repo.read_blob(r.id, BlobType::Data).unwrap())
        .collect()
}

#[test]
fn init_write_reopen_with_fresh_cache_and_read_back() {
    let (fx, repo) = Fixture::new();
    let data = text(5 << 20);
    let (refs, snap) = backup(&repo, &data, "node-1");
    drop(repo);
    let repo = fx.open_fresh(&pass()).unwrap();
    assert_eq!(restore(&repo, &refs), data);
    let s = repo.load_snapshot(snap).unwrap();
    let tree = repo.read_tree(s.record.root).unwrap();
    assert_eq!(tree.nodes()[0].content, refs);
    assert_eq!(repo.list_snapshots().unwrap().len(), 1);
    assert!(repo.index_problems().is_empty());
}

/// Incompressible bytes (stored raw), from a fixed seed.
fn noise(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn read_blob_into_and_read_blob_with_agree_with_read_blob() {
    let (fx, repo) = Fixture::new();
    // Compressed and raw chunks of several sizes, so the buffer shrinks and grows.
    let mut data = text(3 << 20);
    data.extend(noise(3 << 20, 7));
    data.extend(text(100_000));
    let (refs, _) = backup(&repo, &data, "h");
    assert!(refs.len() >= 3, "{} chunks", refs.len());
    let mut buf = Vec::with_capacity(16 << 20);
    for r in refs.iter().rev().chain(&refs) {
        repo.read_blob_into(r.id, BlobType::Data, &mut buf).unwrap();
        assert_eq!(buf, repo.read_blob(r.id, BlobType::Data).unwrap());
        assert_eq!(buf.len(), r.len as usize);
        // The borrowed plaintext is the same, also with another read nested in the call.
        let nested = repo
            .read_blob_with(r.id, BlobType::Data, |plain| {
                assert_eq!(plain, &buf[..]);
                repo.read_blob_with(refs[0].id, BlobType::Data, <[u8]>::to_vec)
                    .unwrap()
            })
            .unwrap();
        assert_eq!(nested, repo.read_blob(refs[0].id, BlobType::Data).unwrap());
    }
    // A damaged blob is Corrupt and leaves nothing in the buffer.
    for obj in fx.backend.list("data/").unwrap() {
        fx.backend.corrupt_object(&obj.name, |b| b[30] ^= 1);
    }
    let repo = fx.open_fresh(&pass()).unwrap();
    buf.extend_from_slice(b"stale");
    let e = repo
        .read_blob_into(refs[0].id, BlobType::Data, &mut buf)
        .unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(buf.is_empty());
    // The callback never sees bytes that failed a check.
    let e = repo
        .read_blob_with(refs[0].id, BlobType::Data, |_| {
            panic!("called on a damaged blob")
        })
        .unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

/// A backup that failed after uploading its packs but before writing their segment (the
/// store went away; a killed process leaves the same) used to leave them unindexed: the
/// re-run stored the same data again, and the first packs waited for a prune. The next
/// session of the same cache now indexes them instead.
#[test]
fn a_backup_that_failed_after_its_uploads_is_indexed_by_the_next_not_stored_again() {
    let data = noise(3 << 20, 7);
    let (dir, failed) = (1..40)
        .find_map(|left| {
            let dir = tempfile::tempdir().unwrap();
            let cache = dir.path().join("cache");
            let mem = MemoryBackend::new();
            drop(Repository::init(Box::new(mem.clone()), &pass(), init_opts(&cache)).unwrap());
            let failing = Arc::new(faults::FailAfter::new(mem.clone(), left));
            let repo = Repository::open(Box::new(failing), &pass(), open_opts(&cache)).ok()?;
            let r = repo.writer().and_then(|w| {
                w.write_stream(&data[..])?;
                w.finish()
            });
            drop(repo);
            let packs = mem.list("data/").unwrap().len();
            assert!(
                r.is_err() || left > 1,
                "the first mutation cannot have succeeded"
            );
            (r.is_err() && packs > 0).then_some((dir, mem))
        })
        .expect("some failure point comes after a pack upload");
    let stored = failed.list("data/").unwrap();
    let cache = dir.path().join("cache");
    let repo = Repository::open(Box::new(failed.clone()), &pass(), open_opts(&cache)).unwrap();
    let w = repo.writer().unwrap();
    let refs = w.write_stream(&data[..]).unwrap();
    let stats = w.finish().unwrap();
    assert_eq!(stats.packs_adopted, stored.len() as u64, "{stats:?}");
    assert_eq!(stats.blobs_new, 0, "{stats:?}");
    assert_eq!(failed.list("data/").unwrap().len(), stored.len());
    assert_eq!(restore(&repo, &refs), data);
    let report = repo
        .check(&chatvault_core::CheckOptions::default())
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Adopted once: the next session finds nothing to adopt.
    let w = repo.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    assert_eq!(w.finish().unwrap().packs_adopted, 0);
}

#[test]
fn second_backup_of_same_data_adds_no_blobs() {
    let (_fx, repo) = Fixture::new();
    let data = text(3 << 20);
    let w = repo.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    let first = w.finish().unwrap();
    assert!(first.blobs_new > 0 && first.packs > 0 && first.segments > 0);
    let w = repo.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    let second = w.finish().unwrap();
    assert_eq!(second.blobs_new, 0);
    assert_eq!(second.packs, 0);
    assert_eq!(second.bytes_in, data.len() as u64);
}

#[test]
fn write_bytes_gives_the_chunks_write_stream_gives() {
    let (_fx, repo) = Fixture::new();
    let data = text(9 << 20);
    let min = repo.config().chunker.min_size as usize;
    let w = repo.writer().unwrap();
    for len in [0, 1, min - 1, min, min + 1, 3 << 20, data.len()] {
        let slice = &data[..len];
        let streamed = w.write_stream(slice).unwrap();
        let buffered = w.write_bytes(slice).unwrap();
        assert_eq!(buffered, streamed, "length {len}");
        let total: u64 = buffered.iter().map(|r| u64::from(r.len)).sum();
        assert_eq!(total, len as u64);
    }
    w.finish().unwrap();
}

#[test]
fn a_pack_holds_a_bounded_number_of_blobs() {
    // 20k tiny files' chunks are 2 MB: one pack by size, but packs close at 16384 blobs
    // so that what follows a pack (header, index batch) stays bounded.
    let (_fx, repo) = Fixture::new();
    let w = repo.writer().unwrap();
    for i in 0..20_000u32 {
        w.write_blob(BlobType::Data, format!("small file {i}").as_bytes())
            .unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.blobs_new, 20_000);
    assert_eq!(stats.packs, 2);
    assert_eq!(repo.stats().unwrap().blobs, 20_000);
}

#[test]
fn forget_applies_the_policy_per_group_and_dry_run_removes_nothing() {
    let (_fx, repo) = Fixture::new();
    let w = repo.writer().unwrap();
    let root = w.write_tree(&Tree::default()).unwrap();
    w.finish().unwrap();
    let day = 86_400_000;
    let mut ids = Vec::new();
    for (host, days) in [("node-1", 0..4), ("node-2", 0..2)] {
        for d in days {
            let mut r = record(root, host);
            r.time_unix_ms += d * day;
            ids.push((host, d, repo.save_snapshot(r).unwrap()));
        }
    }
    let policy = chatvault_core::RetentionPolicy {
        last: 1,
        ..Default::default()
    };
    let dry = repo.forget(&policy, true).unwrap();
    assert_eq!(dry.groups.len(), 2);
    assert!(dry.removed.is_empty());
    assert_eq!(repo.snapshot_ids().unwrap().len(), 6);
    let done = repo.forget(&policy, false).unwrap();
    assert_eq!(done.removed.len(), 4);
    let mut left = repo.snapshot_ids().unwrap();
    left.sort();
    let mut newest: Vec<_> = ids
        .iter()
        .filter(|(h, d, _)| (*h, *d) == ("node-1", 3) || (*h, *d) == ("node-2", 1))
        .map(|(_, _, id)| *id)
        .collect();
    newest.sort();
    assert_eq!(left, newest);
    // An empty policy is refused rather than forgetting everything.
    assert!(repo.forget(&Default::default(), false).is_err());
    assert_eq!(repo.snapshot_ids().unwrap().len(), 2);
}

#[test]
fn wrong_passphrase_and_missing_repository() {
    let (fx, _repo) = Fixture::new();
    assert!(matches!(
        fx.open(&KeySource::passphrase("nope")),
        Err(Error::WrongPassphrase)
    ));
    let dir = tempfile::tempdir().unwrap();
    let empty = MemoryBackend::new();
    let r = Repository::open(Box::new(empty), &pass(), open_opts(dir.path()));
    assert!(matches!(r, Err(Error::RepositoryMissing { .. })));
    // A second init on the same storage is refused.
    let r = Repository::init(Box::new(fx.backend.clone()), &pass(), init_opts(dir.path()));
    assert!(matches!(r, Err(Error::AlreadyExists { .. })));
}

#[test]
fn weak_slots_are_refused_unless_allowed() {
    let (fx, _repo) = Fixture::new();
    let opts = OpenOptions {
        cache_dir: Some(fx.cache.clone()),
        ..OpenOptions::default()
    };
    let r = Repository::open(Box::new(fx.backend.clone()), &pass(), opts);
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
}

#[test]
fn backup_only_key_writes_and_dedupes_but_cannot_read() {
    let (fx, mut admin) = Fixture::new();
    let node_key = KeySource::passphrase("node secret");
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    o.scope = "node-1".into();
    admin.add_slot(&node_key, &o).unwrap();
    let data = text(2 << 20);
    let (refs, _) = backup(&admin, &data, "node-1");

    let node = fx.open_fresh(&node_key).unwrap();
    assert_eq!(node.role(), Role::Backup);
    // Dedup works: the same data adds nothing.
    let w = node.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    assert_eq!(w.finish().unwrap().blobs_new, 0);
    // Reading anything is refused.
    for r in &refs {
        assert!(matches!(
            node.read_blob(r.id, BlobType::Data),
            Err(Error::PermissionDenied { .. })
        ));
    }
    let snap = node.snapshot_ids().unwrap()[0];
    assert!(matches!(
        node.load_snapshot(snap),
        Err(Error::PermissionDenied { .. })
    ));
    // Its own new snapshot is readable by the admin, and trusted (scope node-1).
    let (_, own) = backup(&node, &text(1000), "node-1");
    drop(admin);
    let admin = fx.open(&pass()).unwrap();
    assert_eq!(admin.load_snapshot(own).unwrap().writer, node.writer_key());
    // Out of scope: a snapshot claiming another host is refused by the writer itself
    // (readers refuse it too: `config::tests::writer_trust_rules`).
    let w = node.writer().unwrap();
    let root = w.write_tree(&Tree::new(Vec::new()).unwrap()).unwrap();
    w.finish().unwrap();
    assert!(matches!(
        node.save_snapshot(record(root, "node-2")),
        Err(Error::PermissionDenied { .. })
    ));
}

#[test]
fn a_backup_key_reads_back_only_its_own_latest_trees_and_snapshots() {
    let (fx, mut admin) = Fixture::new();
    let node_key = KeySource::passphrase("node secret");
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&node_key, &o).unwrap();
    let (_, admins) = backup(&admin, &text(1000), "node-1");
    let node = fx.open_fresh(&node_key).unwrap();

    let (_, first) = backup(&node, &text(3000), "node-1");
    let s = node.load_parent_snapshot(first).unwrap();
    // The read API proper stays closed to it, own snapshots included.
    assert!(matches!(
        node.load_snapshot(first),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        node.read_tree(s.record.root),
        Err(Error::PermissionDenied { .. })
    ));
    assert_eq!(s.writer, node.writer_key());
    let tree = node.read_parent_tree(s.record.root).unwrap();
    assert_eq!(tree.nodes()[0].name, b"file");
    // Another writer's snapshot and trees stay unreadable.
    assert!(matches!(
        node.load_parent_snapshot(admins),
        Err(Error::PermissionDenied { .. })
    ));
    let admin_root = admin.load_snapshot(admins).unwrap().record.root;
    assert!(matches!(
        node.read_parent_tree(admin_root),
        Err(Error::PermissionDenied { .. })
    ));

    // A newer snapshot of the same group replaces the older one in the journal.
    let (_, second) = backup(&node, &text(5000), "node-1");
    assert!(node.load_parent_snapshot(second).is_ok());
    assert!(matches!(
        node.load_parent_snapshot(first),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        node.read_parent_tree(s.record.root),
        Err(Error::PermissionDenied { .. })
    ));
    // A snapshot deleted from the repository is no parent any more.
    admin.delete_snapshot(second).unwrap();
    assert!(matches!(
        node.load_parent_snapshot(second),
        Err(Error::PermissionDenied { .. })
    ));
    // The journal is the node's own: a fresh cache (another machine) knows nothing.
    let (_, third) = backup(&node, &text(7000), "node-1");
    let elsewhere = fx.open_fresh(&node_key).unwrap();
    assert!(node.load_parent_snapshot(third).is_ok());
    assert!(matches!(
        elsewhere.load_parent_snapshot(third),
        Err(Error::PermissionDenied { .. })
    ));
}

#[test]
fn snapshot_by_unknown_or_revoked_writer_is_rejected() {
    let (fx, mut admin) = Fixture::new();
    let k = KeySource::passphrase("node");
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&k, &o).unwrap();
    let node = fx.open_fresh(&k).unwrap();
    let (_, before) = backup(&node, &text(5000), "node-1");
    let trusted_seq = admin.load_snapshot(before).unwrap().record.writer_seq;
    admin.revoke_writer(node.writer_key(), trusted_seq).unwrap();
    // The node still has its slot (a stolen key) and writes another snapshot.
    let (_, after) = backup(&node, &text(6000), "node-1");
    assert!(
        admin.load_snapshot(before).is_ok(),
        "objects before the revocation stay trusted"
    );
    assert!(matches!(
        admin.load_snapshot(after),
        Err(Error::Untrusted { .. })
    ));

    // A repository whose config never listed the writer: copy a snapshot made in another
    // repository's name is refused (other repo id / unknown key).
    let (fx2, repo2) = Fixture::new();
    let (_, foreign) = backup(&repo2, &text(100), "x");
    let name = foreign.object_name();
    fx.backend
        .put(&name, &fx2.backend.get(&name).unwrap())
        .unwrap();
    assert!(matches!(
        admin.load_snapshot(foreign),
        Err(Error::Untrusted { .. })
    ));
}

/// Before: each config change wrote `sequence + 1` of the handle's own copy of the config,
/// so a second admin (or a handle opened before another admin's change) wrote the same
/// sequence and silently dropped the first change, a revocation included.
#[test]
fn two_admins_changing_the_config_keep_both_changes() {
    let (fx, mut first) = Fixture::new();
    let mut second = fx.open_fresh(&pass()).unwrap();
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    first.add_slot(&KeySource::passphrase("n1"), &o).unwrap();
    let node = first.config().writers[1].key;
    first.revoke_writer(node, 0).unwrap();
    // `second` still holds the config from before both changes.
    let mut o = AddSlotOptions::new(Role::Backup, "node-2");
    o.kdf = KdfParams::insecure_for_tests();
    second.add_slot(&KeySource::passphrase("n2"), &o).unwrap();
    let fresh = fx.open_fresh(&pass()).unwrap();
    let c = fresh.config();
    assert_eq!(
        c.sequence, 5,
        "init, add, revoke, the rotation it makes, add"
    );
    assert!(
        c.revocations.iter().any(|r| r.key == node),
        "the revocation survived"
    );
    assert_eq!(
        c.writers
            .iter()
            .map(|w| w.label.as_str())
            .collect::<Vec<_>>(),
        ["admin", "node-1", "node-2"]
    );
    assert_eq!(
        c,
        second.config(),
        "the stale handle wrote on top of the newest config"
    );
}

/// A client that saw one config refuses another with the same sequence (a fork).
#[test]
fn a_different_config_with_a_seen_sequence_is_refused() {
    let (fx, mut admin) = Fixture::new();
    let before = fx.backend.get("config").unwrap();
    let mut o = AddSlotOptions::new(Role::Full, "ops");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&KeySource::passphrase("ops"), &o).unwrap();
    let one = fx.backend.get("config").unwrap();
    // Another change built on the same old config (sequence 2 as well), as a forked
    // admin would sign it: put back the old config, change it through a fresh handle.
    fx.backend.replace("config", &before).unwrap();
    let mut other = fx.open_fresh(&pass()).unwrap();
    let mut o = AddSlotOptions::new(Role::Full, "elsewhere");
    o.kdf = KdfParams::insecure_for_tests();
    other.add_slot(&KeySource::passphrase("else"), &o).unwrap();
    let two = fx.backend.get("config").unwrap();
    assert_ne!(one, two);
    drop(admin);
    // The first handle's cache pinned sequence 2 with the first config's hash.
    match fx.open(&pass()) {
        Err(Error::Untrusted { reason, .. }) => assert!(reason.contains("two configs"), "{reason}"),
        other => panic!("expected a fork to be refused, got {other:?}"),
    }
}

#[test]
fn a_new_keys_scope_defaults_to_its_label_and_out_of_scope_snapshots_are_refused_at_once() {
    let (fx, mut admin) = Fixture::new();
    let o = AddSlotOptions::new(Role::Backup, "node-1");
    assert_eq!(o.scope, "node-1");
    assert_eq!(AddSlotOptions::new(Role::Admin, "ops").scope, "*");
    let mut o = AddSlotOptions::new(Role::Backup, "");
    o.kdf = KdfParams::insecure_for_tests();
    assert!(matches!(
        admin.add_slot(&KeySource::passphrase("x"), &o),
        Err(Error::InvalidArgument { .. })
    ));
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&KeySource::passphrase("n1"), &o).unwrap();
    let node = fx.open_fresh(&KeySource::passphrase("n1")).unwrap();
    backup(&node, &text(100), "node-1");
    let w = node.writer().unwrap();
    let root = w.write_tree(&Tree::new(Vec::new()).unwrap()).unwrap();
    w.finish().unwrap();
    assert!(matches!(
        node.save_snapshot(record(root, "node-2")),
        Err(Error::PermissionDenied { .. })
    ));
}

#[test]
fn rolled_back_config_is_refused() {
    let (fx, mut admin) = Fixture::new();
    let old_config = fx.backend.get("config").unwrap();
    let mut o = AddSlotOptions::new(Role::Full, "ops");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&KeySource::passphrase("ops"), &o).unwrap();
    drop(admin);
    fx.open(&pass()).unwrap(); // pins the new sequence
    fx.backend.replace("config", &old_config).unwrap();
    match fx.open(&pass()) {
        Err(Error::Rollback { pinned, found, .. }) => assert!(found < pinned),
        other => panic!("expected a rollback error, got {other:?}"),
    }
}

#[test]
fn tampered_packs_and_segments_are_detected() {
    let (fx, repo) = Fixture::new();
    let data = text(1 << 20);
    let (refs, snap) = backup(&repo, &data, "h");
    drop(repo);
    let packs = fx.backend.list("data/").unwrap();
    let segments = fx.backend.list("index/").unwrap();
    assert!(!packs.is_empty() && !segments.is_empty());

    // Flip one byte in every 997 of the pack: every read that touches it fails as Corrupt.
    for obj in &packs {
        let original = fx.backend.get(&obj.name).unwrap();
        for pos in (0..original.len()).step_by(997) {
            fx.backend.corrupt_object(&obj.name, |b| b[pos] ^= 0x20);
            let repo = fx.open_fresh(&pass()).unwrap();
            let results: Vec<_> = refs
                .iter()
                .map(|r| repo.read_blob(r.id, BlobType::Data))
                .collect();
            let tree = repo
                .load_snapshot(snap)
                .map(|s| repo.read_tree(s.record.root));
            // Reads never touch the sealed header (only the trailer and the blob's range),
            // so a flip there is for `check`, which compares every header with the index.
            let checked = repo
                .check(&chatvault_core::CheckOptions::default())
                .is_ok_and(|r| r.problems.is_empty());
            let all_ok = results.iter().all(|r| r.is_ok()) && matches!(tree, Ok(Ok(_))) && checked;
            assert!(!all_ok, "flip at {pos} of {} went unnoticed", obj.name);
            for r in results.into_iter().filter_map(|r| r.err()) {
                assert!(matches!(r, Error::Corrupt { .. }), "{r}");
            }
            fx.backend.corrupt_object(&obj.name, |b| b[pos] ^= 0x20);
        }
    }
    // A tampered segment is skipped and reported, never applied.
    let seg = &segments[0].name;
    fx.backend.corrupt_object(seg, |b| {
        let n = b.len();
        b[n / 2] ^= 1
    });
    let repo = fx.open_fresh(&pass()).unwrap();
    assert_eq!(
        repo.index_problems().len(),
        1,
        "{:?}",
        repo.index_problems()
    );
    assert!(matches!(
        repo.read_blob(refs[0].id, BlobType::Data),
        Err(Error::NotFound { .. })
    ));
    // Rebuilding from pack headers restores the index.
    let report = repo.repair_index().unwrap();
    assert!(report.unreadable_packs.is_empty());
    assert_eq!(restore(&repo, &refs), data);
}

#[test]
fn forged_pack_with_public_key_and_storage_access_is_rejected() {
    // An attacker who can write storage and read the config (so knows data_pk and the
    // chunker/compression parameters) but holds no key slot: any pack they build is
    // sealed under a key-encryption key they cannot compute without auth_key.
    let (fx, repo) = Fixture::new();
    let data = text(100_000);
    let (refs, _) = backup(&repo, &data, "h");
    drop(repo);
    let pack = fx.backend.list("data/").unwrap().remove(0);
    let mut bytes = fx.backend.get(&pack.name).unwrap();
    // Replace the wrapped key with one for a key of the attacker's choosing: simulate by
    // scrambling the ephemeral public key in the trailer (first bytes after the header).
    let n = bytes.len();
    let wrap_start = n - 122;
    for b in &mut bytes[wrap_start + 4..wrap_start + 36] {
        *b ^= 0x55;
    }
    fx.backend
        .corrupt_object(&pack.name, |b| *b = bytes.clone());
    let repo = fx.open_fresh(&pass()).unwrap();
    let e = repo.read_blob(refs[0].id, BlobType::Data).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

#[test]
fn key_slot_management() {
    let (fx, mut admin) = Fixture::new();
    let mut o = AddSlotOptions::new(Role::Full, "auditor");
    o.kdf = KdfParams::insecure_for_tests();
    let auditor = admin.add_slot(&KeySource::passphrase("audit"), &o).unwrap();
    let slots = admin.list_slots().unwrap();
    assert_eq!(slots.len(), 2);
    assert!(
        slots
            .iter()
            .any(|s| s.id == auditor && s.role == Role::Full && s.label == "auditor")
    );
    // The last admin slot cannot be removed; the auditor slot can.
    let own = admin.slot_id();
    assert!(admin.remove_slot(own).is_err());
    admin.remove_slot(auditor).unwrap();
    assert!(matches!(
        fx.open(&KeySource::passphrase("audit")),
        Err(Error::WrongPassphrase)
    ));
    // Change passphrase: the old one stops working, the new one opens, same writer key.
    let writer = admin.writer_key();
    admin
        .change_passphrase(
            &KeySource::passphrase("new pass"),
            KdfParams::insecure_for_tests(),
        )
        .unwrap();
    drop(admin);
    assert!(matches!(fx.open(&pass()), Err(Error::WrongPassphrase)));
    let again = fx.open(&KeySource::passphrase("new pass")).unwrap();
    assert_eq!(again.writer_key(), writer);
    // A full key cannot add slots.
    let mut o = AddSlotOptions::new(Role::Full, "x");
    o.kdf = KdfParams::insecure_for_tests();
    let mut again = again;
    again.add_slot(&KeySource::passphrase("f"), &o).unwrap();
    let mut full = fx.open(&KeySource::passphrase("f")).unwrap();
    let r = full.add_slot(&KeySource::passphrase("g"), &o);
    assert!(matches!(r, Err(Error::PermissionDenied { .. })));
}

#[test]
fn key_file_slot_opens_unattended() {
    let (fx, mut admin) = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let kf = KeySource::generate_key_file(&dir.path().join("node.key")).unwrap();
    admin
        .add_slot(&kf, &AddSlotOptions::new(Role::Backup, "node-7"))
        .unwrap();
    let kf = KeySource::read_key_file(&dir.path().join("node.key")).unwrap();
    assert_eq!(fx.open_fresh(&kf).unwrap().role(), Role::Backup);
}

#[test]
fn local_backend_repository_and_concurrent_index_cache() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let cache = dir.path().join("cache");
    let repo = Repository::init(
        Box::new(LocalBackend::create(&repo_dir).unwrap()),
        &pass(),
        init_opts(&cache),
    )
    .unwrap();
    let data = text(2 << 20);
    let (refs, _) = backup(&repo, &data, "h");
    // A second handle on the same cache directory while the first is open falls back to
    // a private cache and still reads everything.
    let second = Repository::open(
        Box::new(LocalBackend::open(&repo_dir).unwrap()),
        &pass(),
        open_opts(&cache),
    )
    .unwrap();
    assert_eq!(restore(&second, &refs), data);
    drop(second);
    drop(repo);
    let leftovers: Vec<_> = std::fs::read_dir(cache.join(refs_repo_dir(&cache)))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("index-"))
        .collect();
    assert!(leftovers.is_empty(), "private caches are removed on drop");
}

fn refs_repo_dir(cache: &Path) -> std::path::PathBuf {
    std::fs::read_dir(cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// The acceptance test: 1 GiB of generated data through the façade, reopened with
/// a fresh cache (a second process would see the same), every blob read back and compared.
#[test]
fn one_gib_round_trip_through_a_fresh_handle() {
    const TOTAL: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = Repository::init(
        Box::new(LocalBackend::create(&repo_dir).unwrap()),
        &pass(),
        init_opts(&dir.path().join("cache-a")),
    )
    .unwrap();
    let w = repo.writer().unwrap();
    let refs = w
        .write_stream(chatvault_workload::mixed_corpus(7, TOTAL))
        .unwrap();
    let stats = w.finish().unwrap();
    assert_eq!(stats.bytes_in, TOTAL);
    drop(repo);

    let repo = Repository::open(
        Box::new(LocalBackend::open(&repo_dir).unwrap()),
        &pass(),
        open_opts(&dir.path().join("cache-b")),
    )
    .unwrap();
    let mut expected = chatvault_workload::mixed_corpus(7, TOTAL);
    let mut buf = Vec::new();
    let mut total = 0u64;
    for r in &refs {
        let got = repo.read_blob(r.id, BlobType::Data).unwrap();
        assert_eq!(got.len(), r.len as usize);
        buf.resize(got.len(), 0);
        expected.read_exact(&mut buf).unwrap();
        assert!(got == buf, "chunk at offset {total} differs");
        total += got.len() as u64;
    }
    assert_eq!(total, TOTAL);
    assert_eq!(expected.read(&mut [0u8; 1]).unwrap(), 0);
}

/// A backend that behaves like a disk that fills up: puts fail with ENOSPC once a byte
/// budget is spent; everything else passes through.
struct FullDisk {
    inner: MemoryBackend,
    budget: std::sync::atomic::AtomicI64,
}

impl Backend for FullDisk {
    fn location(&self) -> String {
        "full-disk".into()
    }
    fn put(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        use std::sync::atomic::Ordering;
        if self.budget.fetch_sub(bytes.len() as i64, Ordering::SeqCst) < bytes.len() as i64 {
            return Err(Error::Backend {
                object: name.into(),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.inner.put(name, bytes)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.inner.replace(name, bytes)
    }
    fn get(&self, name: &str) -> chatvault_core::Result<Vec<u8>> {
        self.inner.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> chatvault_core::Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> chatvault_core::Result<Vec<chatvault_core::ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, name: &str) -> chatvault_core::Result<()> {
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> chatvault_core::Result<chatvault_core::ObjectInfo> {
        self.inner.stat(name)
    }
}

#[test]
fn full_disk_fails_the_backup_cleanly_and_loses_nothing() {
    let (fx, repo) = Fixture::new();
    let first = text(2 << 20);
    let (refs, snap) = backup(&repo, &first, "h");
    drop(repo);
    // The disk has room for about one more pack of 1 MiB... of a 40 MiB backup.
    let disk = FullDisk {
        inner: fx.backend.clone(),
        budget: std::sync::atomic::AtomicI64::new(1 << 20),
    };
    let repo = Repository::open(Box::new(disk), &pass(), open_opts(&fx.cache)).unwrap();
    let w = repo.writer().unwrap();
    // Incompressible, like the media a chat server stores.
    let big = chatvault_workload::media_bytes(3, 40 << 20);
    let result = w
        .write_stream(&big[..])
        .and_then(|_| w.finish().map(|_| ()));
    match result {
        Err(Error::Backend { source, .. }) => assert_eq!(source.raw_os_error(), Some(28)),
        other => panic!("expected a backend error, got {other:?}"),
    }
    drop(repo);
    // Nothing earlier is lost: the repository opens, the old snapshot restores.
    let repo = fx.open_fresh(&pass()).unwrap();
    assert!(repo.index_problems().is_empty());
    assert_eq!(repo.snapshot_ids().unwrap(), vec![snap]);
    assert_eq!(restore(&repo, &refs), first);
    // With space again, the same backup completes.
    let (refs2, _) = backup(&repo, &big, "h");
    assert_eq!(restore(&repo, &refs2), big);
}

#[test]
fn interrupted_writer_leaves_a_consistent_repository() {
    let (fx, repo) = Fixture::new();
    let first = text(1 << 20);
    let (refs, _) = backup(&repo, &first, "h");
    // A second session is dropped without finish (the process "dies" mid-backup).
    {
        let w = repo.writer().unwrap();
        w.write_stream(&text(20 << 20)[..]).unwrap();
    }
    drop(repo);
    let repo = fx.open_fresh(&pass()).unwrap();
    assert!(repo.index_problems().is_empty());
    assert_eq!(repo.list_snapshots().unwrap().len(), 1);
    assert_eq!(restore(&repo, &refs), first);
    // Packs uploaded without a segment are unreferenced: a rebuild indexes them, and a
    // re-run of the backup completes either way.
    let (refs2, _) = backup(&repo, &text(20 << 20), "h");
    assert_eq!(restore(&repo, &refs2), text(20 << 20));
}

/// Regression: an error while the chunker thread was blocked on a full queue used to hang
/// `write_stream` forever (the queue's receiver outlived the error return).
#[test]
fn source_read_error_returns_an_error_without_hanging() {
    struct Failing(u64);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 > 48 << 20 {
                return Err(std::io::Error::other("disk read error"));
            }
            let n = buf.len().min(1 << 16);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((self.0 + i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 59) as u8;
            }
            self.0 += n as u64;
            Ok(n)
        }
    }
    let (_fx, repo) = Fixture::new();
    let w = repo.writer().unwrap();
    assert!(matches!(w.write_stream(Failing(0)), Err(Error::Io(_))));
    // The writer is still usable for what succeeded, and finishes.
    w.write_stream(&text(1000)[..]).unwrap();
    w.finish().unwrap();
}

#[test]
fn several_threads_write_through_one_writer() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Repository>();
    assert_send_sync::<chatvault_core::BlobWriter<'static>>();
    let (fx, repo) = Fixture::new();
    let w = repo.writer().unwrap();
    let streams: Vec<Vec<u8>> = (0..4)
        .map(|i| chatvault_workload::media_bytes(10 + i, 3 << 20))
        .collect();
    // Thread 3 writes the same bytes as thread 0: dedup across threads of one writer.
    let inputs = [&streams[0], &streams[1], &streams[2], &streams[0]];
    let refs: Vec<Vec<ContentRef>> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|d| s.spawn(|| w.write_stream(&d[..]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = w.finish().unwrap();
    assert_eq!(stats.bytes_in, 12 << 20);
    assert!(
        stats.bytes_new <= 9 << 20,
        "the repeated stream was stored again: {stats:?}"
    );
    drop(repo);
    let repo = fx.open_fresh(&pass()).unwrap();
    for (r, d) in refs.iter().zip(inputs) {
        assert_eq!(&restore(&repo, r), d);
    }
}

#[test]
fn data_key_rotation_reaches_live_readers_only() {
    let (fx, mut admin) = Fixture::new();
    let weak = |role, label: &str| {
        let mut o = AddSlotOptions::new(role, label);
        o.kdf = KdfParams::insecure_for_tests();
        o
    };
    admin
        .add_slot(&KeySource::passphrase("ops"), &weak(Role::Full, "ops"))
        .unwrap();
    let gone = admin
        .add_slot(&KeySource::passphrase("gone"), &weak(Role::Full, "gone"))
        .unwrap();
    admin
        .add_slot(
            &KeySource::passphrase("node"),
            &weak(Role::Backup, "node-1"),
        )
        .unwrap();
    let old = text(300_000);
    let (old_refs, _) = backup(&admin, &old, "node-1");

    // The "gone" slot is removed, but a copy of it was stolen before.
    let stolen = fx.backend.get(&gone.object_name()).unwrap();
    admin.remove_slot(gone).unwrap();
    assert_eq!(
        admin.config().key_generation,
        1,
        "removing a slot revokes its writer and rotates the keys"
    );

    // A backup node seals new data to generation 1 (read from the signed config).
    let node = fx.open_fresh(&KeySource::passphrase("node")).unwrap();
    let before: std::collections::HashSet<_> = fx
        .backend
        .list("data/")
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let new = chatvault_workload::media_bytes(9, 600_000);
    let (new_refs, _) = backup(&node, &new, "node-1");
    for p in fx
        .backend
        .list("data/")
        .unwrap()
        .into_iter()
        .filter(|o| !before.contains(&o.name))
    {
        let bytes = fx.backend.get(&p.name).unwrap();
        let g = &bytes[bytes.len() - 122..bytes.len() - 118];
        assert_eq!(
            u32::from_le_bytes(g.try_into().unwrap()),
            1,
            "{} not sealed to generation 1",
            p.name
        );
    }

    // A reading slot that existed at the rotation reads both generations.
    let ops = fx.open_fresh(&KeySource::passphrase("ops")).unwrap();
    assert_eq!(restore(&ops, &old_refs), old);
    assert_eq!(restore(&ops, &new_refs), new);

    // The stolen copy of the removed slot cannot even read the index written since: its
    // segments are sealed with an index_key of generation 1, which it was never granted.
    fx.backend.put(&gone.object_name(), &stolen).unwrap();
    match fx.open_fresh(&KeySource::passphrase("gone")) {
        Err(Error::KeyNotGranted { generation: 1 }) => {}
        other => panic!("expected KeyNotGranted, got {:?}", other.map(|_| ())),
    }
    // An explicit rotation moves every live key on again.
    let mut admin = admin;
    assert_eq!(admin.rotate_keys().unwrap(), 2);
    let ops = fx.open_fresh(&KeySource::passphrase("ops")).unwrap();
    assert_eq!(restore(&ops, &new_refs), new);

    // A config from before the rotation is now a rollback for clients that saw it.
    drop(admin);
    let reopened = fx.open(&pass()).unwrap();
    assert_eq!(restore(&reopened, &new_refs), new);
}

// ---------------------------------------------------------------------------------------
// Work before authentication: what storage write access alone can make a reader do.
// ---------------------------------------------------------------------------------------

/// A planted object's claimed size and its last bytes (the rest reads as zeros).
type Sparse = (u64, Vec<u8>);

/// A backend over a `MemoryBackend` that records every read and can make an object
/// look larger than it is: a "sparse" object of any claimed size whose last bytes are
/// given and whose other bytes read as zeros (a planted multi-gigabyte file, without the
/// test holding it). Whole reads (`get`) of objects under `data/` are recorded too.
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryBackend,
    /// Planted sparse objects: name to (claimed size, last bytes).
    sparse: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Sparse>>>,
    /// Every read: (name, bytes requested).
    reads: std::sync::Arc<std::sync::Mutex<Vec<(String, u64)>>>,
}

impl Recording {
    fn plant_sparse(&self, name: &str, size: u64, tail: Vec<u8>) {
        self.sparse
            .lock()
            .unwrap()
            .insert(name.to_owned(), (size, tail));
    }

    fn largest_read(&self, prefix: &str) -> u64 {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, len)| *len)
            .max()
            .unwrap_or(0)
    }

    fn record(&self, name: &str, len: u64) {
        self.reads.lock().unwrap().push((name.to_owned(), len));
    }
}

impl Backend for Recording {
    fn location(&self) -> String {
        "recording".into()
    }
    fn put(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.inner.put(name, bytes)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.inner.replace(name, bytes)
    }
    fn get(&self, name: &str) -> chatvault_core::Result<Vec<u8>> {
        let size = self.stat(name)?.size;
        self.record(name, size);
        assert!(
            size < 1 << 30,
            "a whole read of {name}, {size} bytes, before anything was verified"
        );
        self.get_range(name, 0, size)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> chatvault_core::Result<Vec<u8>> {
        self.record(name, len);
        let sparse = self.sparse.lock().unwrap().get(name).cloned();
        let Some((size, tail)) = sparse else {
            return self.inner.get_range(name, offset, len);
        };
        assert!(
            len < 1 << 30,
            "a read of {len} bytes of {name} before anything was verified"
        );
        if offset + len > size {
            return Err(Error::corrupt(name, "range past the end"));
        }
        let tail_start = size - tail.len() as u64;
        Ok((offset..offset + len)
            .map(|i| i.checked_sub(tail_start).map_or(0, |t| tail[t as usize]))
            .collect())
    }
    fn list(&self, prefix: &str) -> chatvault_core::Result<Vec<chatvault_core::ObjectInfo>> {
        let mut out = self.inner.list(prefix)?;
        for (name, (size, _)) in self.sparse.lock().unwrap().iter() {
            if name.starts_with(prefix) {
                out.push(chatvault_core::ObjectInfo {
                    name: name.clone(),
                    size: *size,
                });
            }
        }
        Ok(out)
    }
    fn delete(&self, name: &str) -> chatvault_core::Result<()> {
        self.sparse.lock().unwrap().remove(name);
        self.inner.delete(name)
    }
    fn stat(&self, name: &str) -> chatvault_core::Result<chatvault_core::ObjectInfo> {
        if let Some((size, _)) = self.sparse.lock().unwrap().get(name) {
            return Ok(chatvault_core::ObjectInfo {
                name: name.into(),
                size: *size,
            });
        }
        self.inner.stat(name)
    }
}

fn recording_repo(cache: &Path) -> (Recording, Repository) {
    let backend = Recording::default();
    let repo = Repository::init(Box::new(backend.clone()), &pass(), init_opts(cache)).unwrap();
    (backend, repo)
}

/// Regression: a planted pack whose trailer claims a 4 GiB header made `check` and
/// `repair index` fetch and allocate the claimed header before anything authenticated
/// it; `check --read-data` read the whole pack into memory.
#[test]
fn a_planted_pack_claiming_a_4_gib_header_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, repo) = recording_repo(&dir.path().join("cache"));
    let (refs, _) = backup(&repo, &text(300_000), "h");
    // A genuine trailer, with the header length changed to 4 GiB - 1, at the end of a
    // "pack" of 5 GiB.
    let genuine = backend.inner.list("data/").unwrap().remove(0);
    let bytes = backend.inner.get(&genuine.name).unwrap();
    let mut tail = bytes[bytes.len() - 122..].to_vec();
    tail[108..112].copy_from_slice(&u32::MAX.to_le_bytes());
    let planted = format!("data/ab/{}", "ab".repeat(32));
    backend.plant_sparse(&planted, 5 << 30, tail);

    for read_data in [false, true] {
        let report = repo
            .check(&chatvault_core::CheckOptions {
                read_data,
                ..Default::default()
            })
            .unwrap();
        let bad: Vec<_> = report.problems.iter().map(|p| p.object.as_str()).collect();
        assert_eq!(bad, [planted.as_str()], "{:?}", report.problems);
        assert!(report.problems[0].message.contains("over the format limit"));
    }
    let repair = repo.repair_index().unwrap();
    assert_eq!(repair.unreadable_packs.len(), 1);
    // Only the trailer of the planted pack was ever asked for.
    assert_eq!(backend.largest_read(&planted), 122);
    assert_eq!(restore(&repo, &refs), text(300_000));
}

/// Regression: `check --read-data` read every pack whole into memory (a planted or
/// simply large pack cost its size per thread); it now streams each pack in runs.
#[test]
fn check_read_data_streams_packs_in_bounded_runs() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Recording::default();
    let repo = Repository::init(
        Box::new(backend.clone()),
        &pass(),
        InitOptions {
            pack_size: 32 << 20,
            ..init_opts(&dir.path().join("cache"))
        },
    )
    .unwrap();
    // 24 MiB of incompressible chunks of at most 4 MiB: one pack larger than a run.
    let data = chatvault_workload::media_bytes(9, 24 << 20);
    let (refs, _) = backup(&repo, &data, "h");
    let packs = backend.inner.list("data/").unwrap();
    assert_eq!(packs.len(), 1);
    assert!(packs[0].size > 20 << 20);
    backend.reads.lock().unwrap().clear();
    let report = repo
        .check(&chatvault_core::CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.blobs_read as usize,
        refs.len() + 1,
        "chunks and the tree"
    );
    assert_eq!(report.bytes_read, packs[0].size);
    let largest = backend.largest_read("data/");
    assert!(largest <= 8 << 20, "read {largest} bytes of a pack at once");
    // A flipped byte in the middle of the pack is still found, and named.
    let mut bytes = backend.inner.get(&packs[0].name).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    backend.inner.delete(&packs[0].name).unwrap();
    backend.inner.put(&packs[0].name, &bytes).unwrap();
    let report = repo
        .check(&chatvault_core::CheckOptions {
            read_data: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        report.problems[0].kind,
        chatvault_core::ProblemKind::BlobCorrupt
    );
}

/// Regression: snapshots, segments, holds, locks, key slots and the config were read
/// whole with an unbounded read before their hash or signature was checked, so a
/// planted object of any size was read into memory. Each is now refused unread above its
/// kind's limit, and is damage like any other: the rest of the repository still reads.
#[test]
fn planted_oversized_objects_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, repo) = recording_repo(&dir.path().join("cache"));
    let (refs, snap) = backup(&repo, &text(50_000), "h");
    let big = 3u64 << 30;
    let planted = |prefix: &str| format!("{prefix}{}", "cd".repeat(32));
    for prefix in ["snapshots/", "index/", "holds/", "keys/"] {
        backend.plant_sparse(&planted(prefix), big, b"x".to_vec());
    }
    drop(repo);
    // Opening tries every key slot and syncs every segment.
    let repo = Repository::open(
        Box::new(backend.clone()),
        &pass(),
        open_opts(&dir.path().join("cache-2")),
    )
    .unwrap();
    assert_eq!(restore(&repo, &refs), text(50_000));
    let problems = repo.index_problems();
    assert!(
        problems.len() == 1 && problems[0].contains("more than the"),
        "{problems:?}"
    );
    let err = repo
        .load_snapshot(chatvault_core::SnapshotId::from_hex(&"cd".repeat(32)).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("more than the"), "{err}");
    let report = repo
        .check(&chatvault_core::CheckOptions::default())
        .unwrap();
    let mut bad: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.object.clone()))
        .collect();
    bad.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        bad,
        [
            (
                chatvault_core::ProblemKind::HoldUnreadable,
                planted("holds/")
            ),
            (
                chatvault_core::ProblemKind::SegmentUnreadable,
                "index/".to_owned()
            ),
            (
                chatvault_core::ProblemKind::SlotUnreadable,
                planted("keys/")
            ),
            (
                chatvault_core::ProblemKind::SnapshotUnreadable,
                planted("snapshots/")
            ),
        ]
    );
    assert!(repo.load_snapshot(snap).is_ok());
    // A planted lock makes lock listing fail (a lock that cannot be read is never
    // ignored), without reading it.
    backend.plant_sparse(&planted("locks/"), big, Vec::new());
    let err = repo.list_locks().unwrap_err();
    assert!(err.to_string().contains("more than the"), "{err}");
    for prefix in ["snapshots/", "index/", "holds/", "keys/", "locks/"] {
        assert_eq!(backend.largest_read(&planted(prefix)), 0, "{prefix}");
    }
    // A planted config stops every open (it is the repository's root of trust), with a
    // clear error and without being read.
    backend.plant_sparse("config", big, Vec::new());
    backend.reads.lock().unwrap().clear();
    let err = Repository::open(
        Box::new(backend.clone()),
        &pass(),
        open_opts(&dir.path().join("cache-3")),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { object, .. } if object.as_str() == "config"),
        "{err}"
    );
    assert_eq!(backend.largest_read("config"), 0);
}

/// Deletes every pack object, as a disk error or a mistaken `rm` would; returns how many.
fn lose_packs(b: &MemoryBackend) -> usize {
    let packs = b.list("data/").unwrap();
    for o in &packs {
        b.delete(&o.name).unwrap();
    }
    packs.len()
}

#[test]
fn a_lost_pack_makes_its_blobs_absent_and_the_next_writer_stores_them_again() {
    let (fx, repo) = Fixture::new();
    let data = text(3 << 20);
    let (refs, _) = backup(&repo, &data, "node-1");
    assert!(repo.blobs_present(&refs).unwrap());
    assert!(lose_packs(&fx.backend) > 0);
    // A new session lists the packs again: the index still names the blobs, but they are
    // no longer present.
    let w = repo.writer().unwrap();
    assert!(!repo.blobs_present(&refs).unwrap());
    assert!(!repo.blob_present(&refs[0].id).unwrap());
    let mut ids: Vec<_> = refs.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(repo.missing_blobs(refs.iter().map(|r| r.id)).unwrap(), ids);
    // Writing the same bytes stores them again instead of deduplicating against the lost
    // copies (before: 0 blobs stored, and every later snapshot depended on the lost pack).
    let again = w.write_stream(&data[..]).unwrap();
    assert_eq!(again, refs);
    let stats = w.finish().unwrap();
    assert_eq!(stats.blobs_new as usize, refs.len());
    assert!(repo.blobs_present(&refs).unwrap());
    assert!(repo.missing_blobs(ids).unwrap().is_empty());
    // And the new copies are the ones read, here and through a fresh cache, although the
    // old segments still name the lost pack.
    assert_eq!(restore(&repo, &refs), data);
    let fresh = fx.open_fresh(&pass()).unwrap();
    assert_eq!(restore(&fresh, &refs), data);
    assert!(fresh.blobs_present(&refs).unwrap());
    // A third session deduplicates against the new copies.
    let w = fresh.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    assert_eq!(w.finish().unwrap().blobs_new, 0);
}

/// Regression: after a lost pack's blobs were stored again, `check` still reported each of
/// them as stored in a missing pack, for every snapshot naming it, whenever the lost copy
/// ranked first (here: the admin's copy ranks before a full key's). Readers fall back to
/// the sound copy, so the snapshot is whole; only the lost pack itself is a problem (until
/// `repair index` drops the index's entries for it).
#[test]
fn check_counts_a_blob_stored_again_after_its_pack_was_lost_as_sound() {
    let (fx, mut admin) = Fixture::new();
    let data = text(3 << 20);
    let (refs, _) = backup(&admin, &data, "node-1");
    let ops_key = KeySource::passphrase("ops passphrase");
    let mut o = AddSlotOptions::new(Role::Full, "ops");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&ops_key, &o).unwrap();
    assert!(lose_packs(&fx.backend) > 0);
    // The next backup, by another key, stores the data and the tree again.
    let ops = fx.open_fresh(&ops_key).unwrap();
    let w = ops.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    let tree = Tree::new(vec![Node {
        name: b"file".to_vec(),
        subtree: None,
        content: refs.clone(),
        meta: Vec::new(),
    }])
    .unwrap();
    w.write_tree(&tree).unwrap();
    assert_eq!(w.finish().unwrap().blobs_new as usize, refs.len() + 1);
    let admin = fx.open_fresh(&pass()).unwrap();
    let report = admin
        .check(&chatvault_core::CheckOptions::default())
        .unwrap();
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert!(
        kinds.contains(&chatvault_core::ProblemKind::PackMissing),
        "{kinds:?}"
    );
    assert!(
        report.problems.iter().all(|p| p.snapshots.is_empty()),
        "no snapshot is damaged: {:?}",
        report.problems
    );
    assert!(!kinds.contains(&chatvault_core::ProblemKind::BlobInBadPack));
    assert_eq!(restore(&admin, &refs), data);
}

#[test]
fn forget_keeps_groups_apart_when_their_paths_contain_spaces() {
    let (_fx, repo) = Fixture::new();
    let w = repo.writer().unwrap();
    let root = w.write_tree(&Tree::default()).unwrap();
    w.finish().unwrap();
    // `a b` + `c` and `a` + `b c` joined with spaces were one group, so `last 1` kept only
    // the newer of the two and applied one group's policy to the other's snapshot.
    for (i, paths) in [vec!["a b", "c"], vec!["a", "b c"]].into_iter().enumerate() {
        let mut r = record(root, "node-1");
        r.paths = paths.into_iter().map(String::from).collect();
        r.time_unix_ms += i as i64;
        repo.save_snapshot(r).unwrap();
    }
    let policy = chatvault_core::RetentionPolicy {
        last: 1,
        ..Default::default()
    };
    let report = repo.forget(&policy, false).unwrap();
    assert_eq!(report.groups.len(), 2, "{:?}", report.groups);
    assert!(report.removed.is_empty());
    assert_eq!(repo.snapshot_ids().unwrap().len(), 2);
    assert_ne!(
        report.groups[0].group.to_string(),
        report.groups[1].group.to_string()
    );
}

#[test]
fn another_writers_newer_snapshots_do_not_make_forget_drop_the_firsts() {
    let (fx, mut admin) = Fixture::new();
    let node_key = KeySource::passphrase("node secret");
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    o.scope = "node-1".into();
    admin.add_slot(&node_key, &o).unwrap();
    let node = fx.open_fresh(&node_key).unwrap();
    let w = admin.writer().unwrap();
    let root = w.write_tree(&Tree::default()).unwrap();
    w.finish().unwrap();
    let day = 86_400_000;
    let mut first = Vec::new();
    for d in 0..2 {
        let mut r = record(root, "node-1");
        r.time_unix_ms += d * day;
        first.push(admin.save_snapshot(r).unwrap());
    }
    // The second writer claims the same host and paths, dated a year later.
    let w = node.writer().unwrap();
    let root2 = w.write_tree(&Tree::default()).unwrap();
    w.finish().unwrap();
    for d in 0..3 {
        let mut r = record(root2, "node-1");
        r.time_unix_ms += 365 * day + d * day;
        node.save_snapshot(r).unwrap();
    }
    // A full key's snapshot joins the admin's group (both may delete snapshots anyway).
    let ops_key = KeySource::passphrase("ops secret");
    let mut o = AddSlotOptions::new(Role::Full, "ops");
    o.kdf = KdfParams::insecure_for_tests();
    o.scope = "*".into();
    admin.add_slot(&ops_key, &o).unwrap();
    let ops = fx.open_fresh(&ops_key).unwrap();
    let mut r = record(root, "node-1");
    r.time_unix_ms += 2 * day;
    let by_ops = ops.save_snapshot(r).unwrap();
    let policy = chatvault_core::RetentionPolicy {
        within: Some("7d".parse().unwrap()),
        ..Default::default()
    };
    let report = admin.forget(&policy, false).unwrap();
    assert_eq!(report.groups[0].verdicts.len(), 3, "{:?}", report.groups);
    assert_eq!(report.groups[0].verdicts[0].id, by_ops);
    // Each writer's snapshots are their own group: the first writer's are measured back
    // from its own newest, so both stay (before: all three groups were one, and the
    // "newest" was the other writer's, a year later, so both were forgotten).
    assert_eq!(report.groups.len(), 2);
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    let writers: Vec<_> = report.groups.iter().map(|g| g.group.writer).collect();
    assert_eq!(writers, [None, Some(node.writer_key())]);
    for id in first {
        assert!(admin.load_snapshot(id).is_ok());
    }
}

#[test]
fn a_held_snapshot_is_refused_with_its_own_error_not_permission_denied() {
    let (_fx, repo) = Fixture::new();
    let (_, id) = backup(&repo, &text(1000), "node-1");
    repo.place_hold(id, "case 1").unwrap();
    match repo.delete_snapshot(id) {
        Err(Error::Held { snapshot }) => assert_eq!(snapshot, id),
        other => panic!("expected Held, got {other:?}"),
    }
    // Several at once: one held one stops all of them before anything is deleted.
    let (_, other) = backup(&repo, &text(2000), "node-1");
    assert!(matches!(
        repo.delete_snapshots(&[other, id]),
        Err(Error::Held { snapshot }) if snapshot == id
    ));
    assert!(repo.load_snapshot(other).is_ok());
    // forget keeps it and removes nothing.
    let r = repo
        .forget(
            &chatvault_core::RetentionPolicy {
                last: 1,
                ..Default::default()
            },
            false,
        )
        .unwrap();
    assert!(r.removed.is_empty());
}

#[test]
fn latest_snapshots_rank_a_repaired_snapshot_over_its_original_and_filter() {
    let (_fx, repo) = Fixture::new();
    let w = repo.writer().unwrap();
    let root = w.write_tree(&Tree::default()).unwrap();
    w.finish().unwrap();
    let day = 86_400_000;
    let old = repo.save_snapshot(record(root, "node-1")).unwrap();
    let mut r = record(root, "node-1");
    r.time_unix_ms += day;
    let original = repo.save_snapshot(r.clone()).unwrap();
    // A repair keeps the original's time and adds the tag.
    r.tags.push(chatvault_core::REPAIRED_TAG.into());
    let repaired = repo.save_snapshot(r).unwrap();
    let mut other = record(root, "node-2");
    other.time_unix_ms -= day;
    let node2 = repo.save_snapshot(other).unwrap();
    let all = repo
        .latest_snapshots(&chatvault_core::SnapshotFilter::default())
        .unwrap();
    assert!(all.unreadable.is_empty());
    assert_eq!(all.by_group.len(), 2);
    assert_eq!(all.newest().unwrap().id, repaired);
    let _ = original;
    let host = |h: &str, before: Option<i64>| {
        repo.latest_snapshots(&chatvault_core::SnapshotFilter {
            host: Some(h.into()),
            at_or_before_unix_ms: before,
            ..Default::default()
        })
        .unwrap()
        .into_newest()
        .map(|s| s.id)
    };
    assert_eq!(host("node-2", None), Some(node2));
    assert_eq!(host("node-1", Some(1_760_000_000_000)), Some(old));
    assert_eq!(host("node-1", Some(1_760_000_000_000 - 1)), None);
}

/// A pack with a flipped byte: `repair_packs` copies out every blob that still verifies,
/// deletes the damaged pack and rebuilds the index, so the lost blobs are no longer
/// indexed and the next writer stores them again. Before, nothing took a damaged pack out
/// of service: every later backup deduplicated against its corrupt blobs, and `check
/// --read-data` failed on it until a prune happened to repack it.
#[test]
fn repair_packs_salvages_what_verifies_and_the_next_writer_stores_the_rest() {
    let (fx, repo) = Fixture::new();
    let full = chatvault_core::CheckOptions {
        read_data: true,
        ..Default::default()
    };
    // Several blobs in one pack.
    let data: Vec<u8> = (0..6u64).flat_map(|i| noise(300 << 10, i + 1)).collect();
    let (refs, snap) = backup(&repo, &data, "node-1");
    assert!(refs.len() >= 2, "{} chunks", refs.len());
    let packs = fx.backend.list("data/").unwrap();
    assert_eq!(packs.len(), 1);
    let name = &packs[0].name;
    let mut bytes = fx.backend.get(name).unwrap();
    bytes[100] ^= 0x40; // inside the first blob
    fx.backend.replace(name, &bytes).unwrap();
    assert!(!repo.check(&full).unwrap().problems.is_empty());

    let dry = repo
        .repair_packs(&chatvault_core::PackRepairOptions {
            dry_run: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(dry.damaged.len(), 1);
    assert!(!dry.damaged[0].deleted && fx.backend.stat(name).is_ok());

    let r = repo.repair_packs(&Default::default()).unwrap();
    assert_eq!(r.packs, 1);
    let d = &r.damaged[0];
    let lost = d.lost.clone().unwrap();
    assert_eq!(lost.len(), 1, "{d:?}");
    assert!(d.salvaged >= 2, "{d:?}"); // the other chunks and the tree
    assert!(d.deleted && fx.backend.stat(name).is_err());
    assert!(r.lost_data() && r.index.is_some());
    // The salvaged blobs read back; the lost one is not indexed any more.
    assert!(!repo.blob_present(&lost[0]).unwrap());
    for c in refs.iter().filter(|c| c.id != lost[0]) {
        assert!(repo.blob_present(&c.id).unwrap());
    }
    // The next writer stores only what was lost, and the old snapshot is whole again.
    let w = repo.writer().unwrap();
    w.write_stream(&data[..]).unwrap();
    assert_eq!(w.finish().unwrap().blobs_new, 1);
    assert_eq!(restore(&repo, &refs), data);
    assert!(repo.load_snapshot(snap).is_ok());
    // A second repair finds nothing damaged.
    let again = repo.repair_packs(&Default::default()).unwrap();
    assert!(again.damaged.is_empty() && !again.lost_data());
    let report = repo.check(&full).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
