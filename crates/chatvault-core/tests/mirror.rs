//! Integration tests of the keyless mirror: a full copy that restores, a copy interrupted
//! after any number of writes (DST valid at every step, nothing sent twice on resume), a
//! corrupt source pack refused, the config never rolled back, and deletion that waits for
//! its grace period, for dependents and for prune locks, also while prunes race it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod faults;

use faults::{FailAfter, ListHook};

use chatvault_core::{
    AddSlotOptions, Backend, BlobType, CheckOptions, ChunkerParams, ConfigOutcome, ContentRef,
    DeleteOptions, Deletion, Error, InitOptions, KdfParams, KeySource, LockKind, LockOptions,
    LockRecord, MemoryBackend, MirrorOptions, MirrorReport, MirrorState, Node, ObjectInfo,
    OpenOptions, PruneOptions, Repository, Role, SnapshotId, SnapshotKind, SnapshotRecord, Summary,
    Tree, mirror,
};

fn pass() -> KeySource {
    KeySource::passphrase("correct horse battery staple")
}

fn fast_locks() -> LockOptions {
    LockOptions {
        refresh: Duration::from_millis(50),
        stale_after: Duration::from_millis(300),
        wait: Duration::from_secs(20),
        poll: Duration::from_millis(20),
    }
}

fn init(backend: &MemoryBackend, cache: &Path) -> Repository {
    let init = InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(cache.to_owned()),
        chunker: ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
        pack_size: 1 << 20,
        ..InitOptions::default()
    };
    Repository::init(Box::new(backend.clone()), &pass(), init).unwrap()
}

fn open(backend: Box<dyn Backend>, cache: &Path) -> chatvault_core::Result<Repository> {
    let opts = OpenOptions {
        cache_dir: Some(cache.to_owned()),
        allow_weak_kdf: true,
        locks: fast_locks(),
        ..OpenOptions::default()
    };
    Repository::open(backend, &pass(), opts)
}

fn content(day: u64) -> Vec<u8> {
    (day * 3..day * 3 + 6)
        .flat_map(|b| chatvault_workload::media_bytes(b, 64 << 10))
        .collect()
}

/// Backs up `data` as one file in a one-level tree.
fn backup(repo: &Repository, data: &[u8], day: u64) -> SnapshotId {
    let w = repo.writer().unwrap();
    let refs = w.write_stream(data).unwrap();
    let file = Tree::new(vec![Node {
        name: b"log".to_vec(),
        subtree: None,
        content: refs,
        meta: Vec::new(),
    }])
    .unwrap();
    let root = w.write_tree(&file).unwrap();
    w.finish().unwrap();
    repo.save_snapshot(SnapshotRecord {
        time_unix_ms: 1_760_000_000_000 + day as i64 * 86_400_000,
        host: "node-1".into(),
        tags: Vec::new(),
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
    })
    .unwrap()
}

fn restore(repo: &Repository, id: SnapshotId) -> Vec<u8> {
    let snap = repo.load_snapshot(id).unwrap();
    let root = repo.read_tree(snap.record.root).unwrap();
    let refs: &[ContentRef] = &root.nodes()[0].content;
    refs.iter()
        .flat_map(|r| repo.read_blob(r.id, BlobType::Data).unwrap())
        .collect()
}

/// A source with three snapshots (days 0..3, their ids in that order) and a hold on the
/// first.
fn source(
    cache: &Path,
) -> (
    MemoryBackend,
    Repository,
    BTreeMap<SnapshotId, Vec<u8>>,
    Vec<SnapshotId>,
) {
    let src = MemoryBackend::new();
    let repo = init(&src, cache);
    let mut snaps = BTreeMap::new();
    let mut order = Vec::new();
    for day in 0..3 {
        let data = content(day);
        let id = backup(&repo, &data, day);
        snaps.insert(id, data);
        order.push(id);
    }
    repo.place_hold(order[0], "audit").unwrap();
    (src, repo, snaps, order)
}

/// Opens DST with the key, if it has a config, and checks that it is valid: `check`
/// finds nothing, and every snapshot it lists restores to what the source backed up.
fn assert_valid(dst: &MemoryBackend, cache: &Path, expected: &BTreeMap<SnapshotId, Vec<u8>>) {
    if dst.stat("config").is_err() {
        // Before its config a store is no repository; only key slots come first.
        let early = dst.list("").unwrap();
        assert!(
            early.iter().all(|o| o.name.starts_with("keys/")),
            "{early:?} before the config"
        );
        return;
    }
    let _ = std::fs::remove_dir_all(cache);
    let repo = open(Box::new(dst.clone()), cache).expect("DST opens");
    let report = repo.check(&CheckOptions::default()).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    for id in repo.snapshot_ids().unwrap() {
        assert_eq!(&restore(&repo, id), &expected[&id], "snapshot {id}");
    }
}

fn run(src: &dyn Backend, dst: &dyn Backend) -> MirrorReport {
    mirror(
        src,
        dst,
        &MirrorOptions::default(),
        &mut MirrorState::default(),
    )
    .unwrap()
}

fn objects(b: &dyn Backend) -> Vec<ObjectInfo> {
    ["config", "keys/", "data/", "index/", "snapshots/", "holds/"]
        .iter()
        .flat_map(|p| b.list(p).unwrap())
        .collect()
}

#[test]
fn a_mirror_copies_every_object_and_a_second_run_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _repo, snaps, _) = source(&dir.path().join("src"));
    let dst = MemoryBackend::new();
    let r = run(&src, &dst);
    assert!(r.complete, "{r:#?}");
    assert_eq!(r.snapshots.copied, 3);
    assert_eq!(r.holds.copied, 1);
    assert_eq!(r.key_slots.copied, 1);
    assert!(r.packs.copied > 0 && r.segments.copied > 0);
    assert_eq!(
        r.packs.bytes_copied,
        src.list("data/")
            .unwrap()
            .iter()
            .map(|o| o.size)
            .sum::<u64>()
    );
    assert!(matches!(r.config, ConfigOutcome::Copied { from: None, .. }));
    assert_eq!(objects(&src), objects(&dst));
    for o in objects(&src) {
        assert_eq!(src.get(&o.name).unwrap(), dst.get(&o.name).unwrap());
    }
    assert_valid(&dst, &dir.path().join("dst"), &snaps);

    let again = run(&src, &dst);
    let copied: u64 = [
        &again.packs,
        &again.segments,
        &again.snapshots,
        &again.holds,
    ]
    .iter()
    .map(|k| k.copied + k.repaired)
    .sum();
    assert_eq!(copied + again.key_slots.copied, 0, "{again:#?}");
    assert!(matches!(again.config, ConfigOutcome::Unchanged { .. }));
}

#[test]
fn a_mirror_interrupted_after_any_number_of_writes_leaves_a_valid_copy_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _repo, snaps, _) = source(&dir.path().join("src"));
    let total = objects(&src).len() as i64;
    let one_at_a_time = MirrorOptions {
        transfers: 1,
        ..MirrorOptions::default()
    };
    for left in 0..total {
        let dst = MemoryBackend::new();
        let failing = FailAfter::new(dst.clone(), left);
        let err = mirror(&src, &failing, &one_at_a_time, &mut MirrorState::default());
        assert!(err.is_err(), "{left} writes were enough");
        let before = objects(&dst).len() as u64;
        assert_eq!(before, left as u64);
        assert_valid(&dst, &dir.path().join("dst"), &snaps);
        // Resuming sends exactly what is missing.
        let r = run(&src, &dst);
        assert!(r.complete);
        let sent: u64 = [&r.packs, &r.segments, &r.snapshots, &r.holds, &r.key_slots]
            .iter()
            .map(|k| k.copied + k.repaired)
            .sum::<u64>()
            + u64::from(matches!(r.config, ConfigOutcome::Copied { .. }));
        assert_eq!(sent + before, total as u64, "after {left} writes: {r:#?}");
        assert_eq!(objects(&src), objects(&dst));
        assert_valid(&dst, &dir.path().join("dst"), &snaps);
    }
}

#[test]
fn a_corrupt_source_pack_is_refused_and_nothing_that_may_need_it_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _repo, _, _) = source(&dir.path().join("src"));
    let bad = src.list("data/").unwrap()[0].name.clone();
    src.corrupt_object(&bad, |b| b[10] ^= 1);
    let dst = MemoryBackend::new();
    let r = run(&src, &dst);
    assert!(!r.complete);
    assert_eq!(r.refused.len(), 1, "{r:#?}");
    assert_eq!(r.refused[0].object, bad);
    assert!(
        dst.stat(&bad).is_err(),
        "nothing of a refused object is written"
    );
    assert!(dst.list("index/").unwrap().is_empty());
    assert!(dst.list("snapshots/").unwrap().is_empty());
    // DST is an empty repository meanwhile.
    assert_valid(&dst, &dir.path().join("dst"), &BTreeMap::new());
}

#[test]
fn the_config_moves_only_forward_and_only_within_one_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (src, mut repo, _, _) = source(&dir.path().join("src"));
    let dst = MemoryBackend::new();
    run(&src, &dst);
    // An admin change on SRC is mirrored.
    let mut slot = AddSlotOptions::new(Role::Backup, "node-2");
    slot.kdf = KdfParams::insecure_for_tests();
    repo.add_slot(&KeySource::passphrase("node two"), &slot)
        .unwrap();
    let r = run(&src, &dst);
    assert!(
        matches!(r.config, ConfigOutcome::Copied { from: Some(s), to } if to == s + 1),
        "{:?}",
        r.config
    );
    assert_eq!(r.key_slots.copied, 1);
    assert_eq!(src.get("config").unwrap(), dst.get("config").unwrap());

    // A newer config on DST is never replaced by SRC's older one.
    let mut on_dst = open(Box::new(dst.clone()), &dir.path().join("dst")).unwrap();
    on_dst.rotate_keys().unwrap();
    let newer = dst.get("config").unwrap();
    let r = run(&src, &dst);
    assert!(matches!(r.config, ConfigOutcome::DestinationNewer { .. }));
    assert_eq!(dst.get("config").unwrap(), newer);

    // Another repository is refused before anything is written.
    let other = MemoryBackend::new();
    init(&other, &dir.path().join("other"));
    let before = objects(&other);
    let err = mirror(
        &src,
        &other,
        &MirrorOptions::default(),
        &mut MirrorState::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert_eq!(objects(&other), before);

    // A pinned admin key that is not SRC's is refused.
    let pinned = MirrorOptions {
        admin_key: Some(
            open(Box::new(other.clone()), &dir.path().join("other"))
                .unwrap()
                .config()
                .admin_key,
        ),
        ..MirrorOptions::default()
    };
    let err = mirror(
        &src,
        &MemoryBackend::new(),
        &pinned,
        &mut MirrorState::default(),
    );
    assert!(matches!(err, Err(Error::Untrusted { .. })), "{err:?}");
}

fn deleting(grace: Duration) -> MirrorOptions {
    MirrorOptions {
        delete: Some(DeleteOptions { grace }),
        ..MirrorOptions::default()
    }
}

#[test]
fn delete_waits_for_its_grace_period_and_for_a_prune_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (src, repo, mut snaps, order) = source(&dir.path().join("src"));
    let dst = MemoryBackend::new();
    run(&src, &dst);
    // Forget the last snapshot and prune its data away on SRC.
    let last = order[2];
    snaps.remove(&last);
    repo.delete_snapshot(last).unwrap();
    repo.prune(&PruneOptions {
        wait: Duration::from_secs(5),
        ..PruneOptions::default()
    })
    .unwrap();
    let dst_before = objects(&dst);

    // Without --delete, and within the grace period, nothing goes.
    let r = run(&src, &dst);
    assert_eq!(r.deletion, Deletion::Off);
    let mut state = MirrorState::default();
    let r = mirror(&src, &dst, &deleting(Duration::from_secs(3600)), &mut state).unwrap();
    assert_eq!(r.deletion, Deletion::Ran);
    assert_eq!(r.snapshots.delete_pending, 1);
    assert!(r.packs.delete_pending > 0);
    assert_eq!(r.packs.deleted + r.snapshots.deleted, 0);
    assert!(objects(&dst).len() >= dst_before.len());
    assert!(
        state
            .missing_since(&format!("snapshots/{}", last.to_hex()))
            .is_some()
    );
    let encoded = state.encode();
    assert_eq!(MirrorState::decode(&encoded, "state").unwrap(), state);

    // A prune lock on SRC postpones deletion whatever the grace period.
    let lock = LockRecord {
        kind: LockKind::Prune,
        host: "elsewhere".into(),
        pid: 1,
        refresh: 0,
        created_unix_ms: 0,
        refreshed_unix_ms: 0,
    };
    src.put("locks/00", &lock.encode()).unwrap();
    let r = mirror(&src, &dst, &deleting(Duration::ZERO), &mut state).unwrap();
    assert!(
        matches!(r.deletion, Deletion::Postponed { .. }),
        "{:?}",
        r.deletion
    );
    assert!(objects(&dst).len() >= dst_before.len());
    src.delete("locks/00").unwrap();

    // Once the grace period has passed (here: a state from an hour ago), DST follows.
    let old: String = String::from_utf8(state.encode())
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                let (_, name) = l.split_once(' ').unwrap();
                format!("{} {name}\n", chatvault_now() - 3_700_000)
            }
        })
        .collect();
    let mut state = MirrorState::decode(old.as_bytes(), "state").unwrap();
    let r = mirror(&src, &dst, &deleting(Duration::from_secs(3600)), &mut state).unwrap();
    assert_eq!(r.snapshots.deleted, 1, "{r:#?}");
    assert!(r.packs.deleted > 0);
    assert!(state.is_empty());
    assert_eq!(objects(&src), objects(&dst));
    assert_valid(&dst, &dir.path().join("dst"), &snaps);
}

fn chatvault_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn delete_racing_prunes_and_backups_on_the_source_keeps_every_copy_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (src, repo, snaps, order) = source(&dir.path().join("src"));
    let expected = Arc::new(std::sync::Mutex::new(snaps));
    let dst = MemoryBackend::new();
    run(&src, &dst);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, expected) = (stop.clone(), expected.clone());
        std::thread::spawn(move || {
            // The held first snapshot stays; the oldest of the others is forgotten.
            let mut live: std::collections::VecDeque<SnapshotId> =
                order[1..].iter().copied().collect();
            let mut day = 3;
            while !stop.load(Ordering::SeqCst) {
                let data = content(day);
                // Every snapshot ever made stays expected: DST may still list it. The
                // lock is held over the backup so that no check sees the snapshot first.
                let mut known = expected.lock().unwrap();
                let id = backup(&repo, &data, day);
                known.insert(id, data);
                drop(known);
                live.push_back(id);
                repo.delete_snapshot(live.pop_front().unwrap()).unwrap();
                repo.prune(&PruneOptions {
                    wait: Duration::from_secs(20),
                    ..PruneOptions::default()
                })
                .unwrap();
                day += 1;
            }
        })
    };
    let mut state = MirrorState::default();
    let mut deleted = 0;
    for i in 0..12 {
        let r = mirror(
            &src,
            &dst,
            &deleting(Duration::from_millis(150)),
            &mut state,
        )
        .unwrap();
        deleted += r.packs.deleted + r.snapshots.deleted;
        let known = expected.lock().unwrap().clone();
        assert_valid(&dst, &dir.path().join(format!("dst{i}")), &known);
        std::thread::sleep(Duration::from_millis(60));
    }
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    // On a loaded machine every racing run may have seen the source change under it
    // (and so postponed deletion); once the source is quiet, what it dropped goes, after
    // the grace period, and DST is still valid.
    for i in 0..3 {
        let r = mirror(
            &src,
            &dst,
            &deleting(Duration::from_millis(150)),
            &mut state,
        )
        .unwrap();
        deleted += r.packs.deleted + r.snapshots.deleted;
        let known = expected.lock().unwrap().clone();
        assert_valid(&dst, &dir.path().join(format!("quiet{i}")), &known);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(objects(&src), objects(&dst));
    assert!(
        deleted > 0,
        "the mirror never deleted anything: the test tested nothing"
    );
}

/// The run of a mirror with `--delete` during which a forget and a prune complete on the
/// source between its listings: with a grace period DST stays valid at every run; without
/// one (the control), DST loses the packs of a snapshot it still lists.
fn prune_between_listings(grace: Duration) -> (tempfile::TempDir, MemoryBackend, bool) {
    let dir = tempfile::tempdir().unwrap();
    let (src, repo, snaps, order) = source(&dir.path().join("src"));
    let dst = MemoryBackend::new();
    run(&src, &dst);
    // A prune that finishes between the mirror's listing of segments and of packs.
    let hooked = ListHook::before(src.clone(), "data/", move || {
        repo.delete_snapshot(order[2]).unwrap();
        repo.prune(&PruneOptions {
            wait: Duration::from_secs(5),
            ..PruneOptions::default()
        })
        .unwrap();
    });
    let mut state = MirrorState::default();
    let r = mirror(&hooked, &dst, &deleting(grace), &mut state).unwrap();
    assert_eq!(r.deletion, Deletion::Ran, "{r:#?}");
    let cache = dir.path().join("dst");
    let valid = {
        let repo = open(Box::new(dst.clone()), &cache).unwrap();
        repo.check(&CheckOptions::default())
            .unwrap()
            .problems
            .is_empty()
    };
    if grace > Duration::ZERO {
        assert!(valid, "DST broken by a prune between the listings");
        for _ in 0..3 {
            std::thread::sleep(grace + Duration::from_millis(50));
            mirror(&src, &dst, &deleting(grace), &mut state).unwrap();
            assert_valid(&dst, &cache, &snaps);
        }
        assert_eq!(objects(&src), objects(&dst), "DST followed in the end");
    }
    (dir, dst, valid)
}

#[test]
fn regression_a_prune_between_the_listings_cannot_make_delete_lose_a_needed_pack() {
    prune_between_listings(Duration::from_millis(200));
    // The control: without the grace period the race is real, which is why it exists.
    let (_dir, _dst, valid) = prune_between_listings(Duration::ZERO);
    assert!(
        !valid,
        "the hook did not race the listings: the test tests nothing"
    );
}

/// A source whose index segments are all gone by the time they are fetched (deleted after
/// the listing).
struct SegmentsVanish(MemoryBackend);

impl Backend for SegmentsVanish {
    fn location(&self) -> String {
        "vanishing".into()
    }
    fn put(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.0.put(name, bytes)
    }
    fn replace(&self, name: &str, bytes: &[u8]) -> chatvault_core::Result<()> {
        self.0.replace(name, bytes)
    }
    fn get(&self, name: &str) -> chatvault_core::Result<Vec<u8>> {
        self.0.get(name)
    }
    fn get_range(&self, name: &str, offset: u64, len: u64) -> chatvault_core::Result<Vec<u8>> {
        if name.starts_with("index/") {
            return Err(Error::NotFound {
                object: name.into(),
            });
        }
        self.0.get_range(name, offset, len)
    }
    fn list(&self, prefix: &str) -> chatvault_core::Result<Vec<ObjectInfo>> {
        self.0.list(prefix)
    }
    fn delete(&self, name: &str) -> chatvault_core::Result<()> {
        self.0.delete(name)
    }
    fn stat(&self, name: &str) -> chatvault_core::Result<ObjectInfo> {
        self.0.stat(name)
    }
}

#[test]
fn a_segment_gone_between_listing_and_fetch_stops_the_run_before_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _repo, _, _) = source(&dir.path().join("src"));
    let dst = MemoryBackend::new();
    let r = mirror(
        &SegmentsVanish(src),
        &dst,
        &deleting(Duration::ZERO),
        &mut MirrorState::default(),
    )
    .unwrap();
    assert!(r.changed_under_us && !r.complete, "{r:#?}");
    assert!(r.segments.vanished > 0);
    assert!(dst.list("snapshots/").unwrap().is_empty());
    assert!(matches!(r.deletion, Deletion::Postponed { .. }));
    assert_valid(&dst, &dir.path().join("dst"), &BTreeMap::new());
}

#[test]
fn a_damaged_state_file_is_an_error_not_an_empty_state() {
    for bad in [
        &b""[..],
        b"something else\n",
        b"chatvault mirror state v1\nnot-a-time data/00/x\n",
        b"chatvault mirror state v1\n5 ../escape\n",
        b"chatvault mirror state v1\n5\n",
    ] {
        assert!(
            matches!(
                MirrorState::decode(bad, "state"),
                Err(Error::Corrupt { .. })
            ),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(
        MirrorState::decode(b"chatvault mirror state v1\n", "state")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_object_whose_name_is_not_its_hash_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _repo, _, _) = source(&dir.path().join("src"));
    src.put("snapshots/not-a-hash", b"planted").unwrap();
    let dst = MemoryBackend::new();
    let r = run(&src, &dst);
    assert_eq!(r.refused.len(), 1, "{r:#?}");
    assert_eq!(r.refused[0].object, "snapshots/not-a-hash");
    assert!(dst.stat("snapshots/not-a-hash").is_err());
    // The phase finished (the genuine snapshots arrived); the next one did not run.
    assert_eq!(r.snapshots.copied, 3);
    assert!(dst.list("holds/").unwrap().is_empty());
    assert!(!r.complete);
}
