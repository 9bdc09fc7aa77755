//! Integration tests of holds, locks and prune: what prune deletes and keeps, interrupted
//! prunes at every mutating step, and writers on threads running beside repeated prunes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod faults;

use faults::{FailAfter, ListHook};

use chatvault_core::{
    Backend, BlobType, CheckOptions, ChunkerParams, ContentRef, Error, InitOptions, KdfParams,
    KeepReason, KeySource, LockKind, LockOptions, LockRecord, MemoryBackend, Node, OpenOptions,
    PruneOptions, Repository, RetentionPolicy, Role, SnapshotId, SnapshotKind, SnapshotRecord,
    Summary, Tree,
};

fn pass() -> KeySource {
    KeySource::passphrase("correct horse battery staple")
}

/// Locks judged stale quickly, so that locks left by a failed run clear in tests.
fn fast_locks() -> LockOptions {
    LockOptions {
        refresh: Duration::from_millis(50),
        stale_after: Duration::from_millis(300),
        wait: Duration::from_secs(20),
        poll: Duration::from_millis(20),
    }
}

fn prune_opts() -> PruneOptions {
    PruneOptions {
        wait: Duration::from_secs(5),
        ..PruneOptions::default()
    }
}

struct Fixture {
    backend: MemoryBackend,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> (Self, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let backend = MemoryBackend::new();
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(dir.path().join("cache")),
            chunker: ChunkerParams {
                min_size: 4096,
                avg_size: 16384,
                max_size: 65536,
            },
            pack_size: 1 << 20,
            ..InitOptions::default()
        };
        let repo = Repository::init(Box::new(backend.clone()), &pass(), init).unwrap();
        (Self { backend, dir }, repo)
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn open_on(&self, backend: Box<dyn Backend>, cache: &Path) -> Repository {
        let opts = OpenOptions {
            cache_dir: Some(cache.to_owned()),
            allow_weak_kdf: true,
            locks: fast_locks(),
            ..OpenOptions::default()
        };
        Repository::open(backend, &pass(), opts).unwrap()
    }

    fn open(&self, cache: &str) -> Repository {
        self.open_on(Box::new(self.backend.clone()), &self.cache(cache))
    }
}

/// 64 KiB of incompressible data per block id: backups built from overlapping block sets
/// share chunks.
fn block(i: u64) -> Vec<u8> {
    chatvault_workload::media_bytes(i, 64 << 10)
}

fn content(blocks: &[u64]) -> Vec<u8> {
    blocks.iter().flat_map(|&b| block(b)).collect()
}

fn record(root: chatvault_core::BlobId, time: i64) -> SnapshotRecord {
    SnapshotRecord {
        time_unix_ms: time,
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
    }
}

/// Backs up `data` as one file in a one-level tree; returns the snapshot id.
fn backup(repo: &Repository, data: &[u8], time: i64) -> SnapshotId {
    let w = repo.writer().unwrap();
    let refs = w.write_stream(data).unwrap();
    let file = Tree::new(vec![Node {
        name: b"log".to_vec(),
        subtree: None,
        content: refs,
        meta: Vec::new(),
    }])
    .unwrap();
    let sub = w.write_tree(&file).unwrap();
    let root = Tree::new(vec![Node {
        name: b"dir".to_vec(),
        subtree: Some(sub),
        content: Vec::new(),
        meta: Vec::new(),
    }])
    .unwrap();
    let root = w.write_tree(&root).unwrap();
    w.finish().unwrap();
    repo.save_snapshot(record(root, time)).unwrap()
}

/// Reads a snapshot's one file back.
fn restore(repo: &Repository, id: SnapshotId) -> Vec<u8> {
    let snap = repo.load_snapshot(id).unwrap();
    let root = repo.read_tree(snap.record.root).unwrap();
    let sub = repo.read_tree(root.nodes()[0].subtree.unwrap()).unwrap();
    let refs: &[ContentRef] = &sub.nodes()[0].content;
    refs.iter()
        .flat_map(|r| repo.read_blob(r.id, BlobType::Data).unwrap())
        .collect()
}

fn assert_clean(repo: &Repository) {
    let report = repo
        .check(&CheckOptions {
            read_data: true,
            ..CheckOptions::default()
        })
        .unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

fn pack_bytes(b: &dyn Backend) -> u64 {
    b.list("data/").unwrap().iter().map(|o| o.size).sum()
}

/// A repository with five snapshots over overlapping blocks, the three oldest removed.
fn garbage_fixture() -> (Fixture, Repository, Vec<(SnapshotId, Vec<u8>)>) {
    let (fx, repo) = Fixture::new();
    let mut kept = Vec::new();
    for day in 0..5u64 {
        let blocks: Vec<u64> = (day * 6..day * 6 + 12).collect();
        let data = content(&blocks);
        let id = backup(&repo, &data, 1_760_000_000_000 + day as i64 * 86_400_000);
        if day < 3 {
            repo.delete_snapshot(id).unwrap();
        } else {
            kept.push((id, data));
        }
    }
    (fx, repo, kept)
}

#[test]
fn prune_deletes_what_no_snapshot_needs_and_a_second_prune_finds_nothing() {
    let (fx, repo, kept) = garbage_fixture();
    let before = pack_bytes(&fx.backend);
    let dry = repo
        .prune(&PruneOptions {
            dry_run: true,
            ..prune_opts()
        })
        .unwrap();
    assert_eq!(pack_bytes(&fx.backend), before, "a dry run changes nothing");
    assert!(dry.dry_run && dry.packs_deleted + dry.packs_repacked > 0);
    let r = repo.prune(&prune_opts()).unwrap();
    assert_eq!(
        (r.packs_deleted, r.packs_repacked),
        (dry.packs_deleted, dry.packs_repacked),
        "the dry run announced what the real run did"
    );
    assert_eq!(r.snapshots, 2);
    let after = pack_bytes(&fx.backend);
    assert_eq!(before - after, r.bytes_freed);
    // Two snapshots of 12 blocks overlapping by 6: 18 of the 36 blocks stay.
    assert!(after < before * 2 / 3, "{after} of {before}");
    assert_clean(&repo);
    for (id, data) in &kept {
        assert_eq!(&restore(&repo, *id), data);
    }
    let fresh = fx.open("other-cache");
    assert_clean(&fresh);
    for (id, data) in &kept {
        assert_eq!(&restore(&fresh, *id), data);
    }
    let again = fresh.prune(&prune_opts()).unwrap();
    assert_eq!(
        (again.packs_deleted, again.packs_repacked, again.bytes_freed),
        (0, 0, 0)
    );
    assert!(fx.backend.list("locks/").unwrap().is_empty());
}

#[test]
fn segments_a_prune_replaces_while_a_repository_opens_are_found_again() {
    let (fx, repo, kept) = garbage_fixture();
    drop(repo);
    let segments_before: Vec<String> = fx
        .backend
        .list("index/")
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let pruned = Arc::new(AtomicBool::new(false));
    let hook = {
        let (backend, cache, pruned) = (fx.backend.clone(), fx.cache("pruner"), pruned.clone());
        move || {
            let opts = OpenOptions {
                cache_dir: Some(cache),
                allow_weak_kdf: true,
                locks: fast_locks(),
                ..OpenOptions::default()
            };
            let pruner = Repository::open(Box::new(backend), &pass(), opts).unwrap();
            let r = pruner.prune(&prune_opts()).unwrap();
            assert!(r.packs_deleted + r.packs_repacked > 0);
            pruned.store(true, Ordering::SeqCst);
        }
    };
    // What a prune in another process does between an opening repository's listing of
    // `index/` and its reads.
    let racing = ListHook::after(fx.backend.clone(), "index/", hook);
    // A fresh cache: the opening repository reads every segment it listed.
    let opened = fx.open_on(Box::new(racing), &fx.cache("opening"));
    assert!(
        pruned.load(Ordering::SeqCst),
        "the prune ran between list and read"
    );
    let gone = segments_before
        .iter()
        .filter(|s| fx.backend.stat(s).is_err())
        .count();
    assert!(
        gone > 0,
        "the prune replaced segments the opener had listed"
    );
    assert_clean(&opened);
    for (id, data) in &kept {
        assert_eq!(&restore(&opened, *id), data);
    }
    backup(&opened, &content(&[1, 2, 3]), 1_760_900_000_000);
}

#[test]
fn max_repack_limits_the_repack_and_max_unused_one_disables_it() {
    let (fx, repo, kept) = garbage_fixture();
    let none = repo
        .prune(&PruneOptions {
            max_unused: 1.0,
            small_pack: Some(0),
            ..prune_opts()
        })
        .unwrap();
    assert_eq!(none.packs_repacked, 0);
    let limited = repo
        .prune(&PruneOptions {
            max_repack: Some(0),
            ..prune_opts()
        })
        .unwrap();
    assert_eq!(limited.packs_repacked, 0);
    assert!(
        repo.prune(&PruneOptions {
            max_unused: 1.5,
            ..prune_opts()
        })
        .is_err()
    );
    assert_clean(&fx.open("c2"));
    for (id, data) in &kept {
        assert_eq!(&restore(&repo, *id), data);
    }
}

#[test]
fn holds_keep_snapshots_from_forget_and_delete_and_need_an_admin_key() {
    let (fx, repo) = Fixture::new();
    let old = backup(&repo, &content(&[1, 2]), 1_760_000_000_000);
    let new = backup(&repo, &content(&[3, 4]), 1_760_086_400_000);
    let hold = repo.place_hold(old, "case 42").unwrap();
    assert_eq!(repo.list_holds().unwrap(), vec![hold.clone()]);
    assert!(matches!(
        repo.delete_snapshot(old),
        Err(Error::Held { snapshot }) if snapshot == old
    ));
    let last1 = RetentionPolicy {
        last: 1,
        ..RetentionPolicy::default()
    };
    let r = repo.forget(&last1, false).unwrap();
    assert!(r.removed.is_empty());
    let v = &r.groups[0].verdicts;
    assert_eq!(v[1].id, old);
    assert_eq!(v[1].reasons, [KeepReason::Held]);
    assert_eq!(v[1].reasons[0].to_string(), "held");
    // Prune keeps the held snapshot's data.
    repo.prune(&prune_opts()).unwrap();
    assert_eq!(restore(&repo, old), content(&[1, 2]));
    // A full key may not place or release holds.
    let mut repo = repo;
    repo.add_slot(
        &KeySource::passphrase("full"),
        &chatvault_core::AddSlotOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..chatvault_core::AddSlotOptions::new(Role::Full, "full")
        },
    )
    .unwrap();
    let as_full = Repository::open(
        Box::new(fx.backend.clone()),
        &KeySource::passphrase("full"),
        OpenOptions {
            cache_dir: Some(fx.cache("full")),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        as_full.place_hold(new, "x"),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        as_full.release_holds(old),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        repo.place_hold(SnapshotId::from_bytes([9; 32]), "missing"),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(repo.release_holds(old).unwrap(), vec![hold]);
    let r = repo.forget(&last1, false).unwrap();
    assert_eq!(r.removed, vec![old]);
}

#[test]
fn a_damaged_hold_stops_forget_before_anything_is_removed() {
    let (fx, repo) = Fixture::new();
    let old = backup(&repo, &content(&[1]), 1_760_000_000_000);
    backup(&repo, &content(&[2]), 1_760_086_400_000);
    let hold = repo.place_hold(old, "").unwrap();
    let name = format!("holds/{}", hold.id.to_hex());
    fx.backend.corrupt_object(&name, |b| {
        let n = b.len();
        b[n - 1] ^= 1;
    });
    let last1 = RetentionPolicy {
        last: 1,
        ..RetentionPolicy::default()
    };
    assert!(matches!(
        repo.forget(&last1, false),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(repo.snapshot_ids().unwrap().len(), 2);
    let report = repo.check(&CheckOptions::default()).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(
        report.problems[0].kind,
        chatvault_core::ProblemKind::HoldUnreadable
    );
    assert_eq!(report.problems[0].object, name);
    // Bytes that are not a hold at all, under a name that matches their hash.
    fx.backend.delete(&name).unwrap();
    let junk = b"not a hold".to_vec();
    let junk_name = format!("holds/{}", blake3::hash(&junk).to_hex());
    fx.backend.put(&junk_name, &junk).unwrap();
    assert!(matches!(
        repo.forget(&last1, false),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(repo.snapshot_ids().unwrap().len(), 2);
}

#[test]
fn prune_stops_before_deleting_when_a_needed_pack_is_missing() {
    let (fx, repo, kept) = garbage_fixture();
    let snap = repo.load_snapshot(kept[0].0).unwrap();
    let root = repo.read_tree(snap.record.root).unwrap();
    let sub = repo.read_tree(root.nodes()[0].subtree.unwrap()).unwrap();
    let first = sub.nodes()[0].content[0].id;
    // Find the pack holding it by reading each pack's blobs through a fresh handle.
    let packs = fx.backend.list("data/").unwrap();
    let mut victim = None;
    for p in &packs {
        let copy = copy_of(&fx.backend);
        copy.delete(&p.name).unwrap();
        let probe = fx.open_on(
            Box::new(copy),
            &fx.cache(&format!("probe-{}", &p.name[8..16])),
        );
        if probe.read_blob(first, BlobType::Data).is_err() {
            victim = Some(p.name.clone());
            break;
        }
    }
    let victim = victim.expect("some pack holds the blob");
    fx.backend.delete(&victim).unwrap();
    let before = fx.backend.list("data/").unwrap().len();
    let segments = fx.backend.list("index/").unwrap();
    let repo = fx.open("after-loss");
    assert!(matches!(
        repo.prune(&prune_opts()),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(fx.backend.list("data/").unwrap().len(), before);
    assert_eq!(fx.backend.list("index/").unwrap(), segments);
}

#[test]
fn a_backup_key_cannot_prune_place_holds_or_forget() {
    let (fx, mut repo) = Fixture::new();
    let snap = backup(&repo, &content(&[1]), 1_760_000_000_000);
    repo.add_slot(
        &KeySource::passphrase("node"),
        &chatvault_core::AddSlotOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..chatvault_core::AddSlotOptions::new(Role::Backup, "node")
        },
    )
    .unwrap();
    let node = Repository::open(
        Box::new(fx.backend.clone()),
        &KeySource::passphrase("node"),
        OpenOptions {
            cache_dir: Some(fx.cache("node")),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert!(matches!(
        node.prune(&prune_opts()),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        node.place_hold(snap, ""),
        Err(Error::PermissionDenied { .. })
    ));
}

/// Copies every object into a new in-memory backend (a frozen state to replay from).
fn copy_of(b: &MemoryBackend) -> MemoryBackend {
    let c = MemoryBackend::new();
    for o in b.list("").unwrap() {
        c.put(&o.name, &b.get(&o.name).unwrap()).unwrap();
    }
    c
}

#[test]
fn a_prune_interrupted_after_any_number_of_writes_leaves_a_valid_repository() {
    let (fx, repo, kept) = garbage_fixture();
    drop(repo);
    // Count the mutations of a whole prune (lock refreshes aside: they are not counted
    // at the fast timings unless the prune is slow, and more steps only add cases).
    let counting = FailAfter::new(copy_of(&fx.backend), i64::MAX);
    let probe = Arc::new(counting);
    let full = fx.open_on(Box::new(probe.clone()), &fx.cache("count"));
    full.prune(&prune_opts()).unwrap();
    drop(full);
    let total = probe.mutations.load(Ordering::SeqCst) as i64;
    assert!(
        total > 5,
        "a prune of this fixture writes and deletes ({total})"
    );
    for n in 0..total {
        let state = copy_of(&fx.backend);
        let cache = fx.cache(&format!("crash-{n}"));
        let failing = fx.open_on(Box::new(FailAfter::new(state.clone(), n)), &cache);
        // Lock refreshes are mutations too, so a run may need fewer than counted: the
        // last few steps can succeed.
        let finished = failing.prune(&prune_opts()).is_ok();
        drop(failing);
        // Whatever was left: the repository checks clean and every snapshot restores...
        let after = fx.open_on(Box::new(state.clone()), &fx.cache(&format!("after-{n}")));
        assert_clean(&after);
        for (id, data) in &kept {
            assert_eq!(&restore(&after, *id), data, "step {n}");
        }
        // ...and a re-run finishes the job (clearing the failed run's stale locks).
        after.prune(&prune_opts()).unwrap();
        let again = after.prune(&prune_opts()).unwrap();
        assert_eq!(
            (again.packs_deleted, again.packs_repacked),
            (0, 0),
            "step {n}"
        );
        assert_clean(&after);
        for (id, data) in &kept {
            assert_eq!(&restore(&after, *id), data, "step {n}");
        }
        if finished {
            break;
        }
    }
}

/// Snapshots saved so far, with the data each holds.
type Saved = Vec<(SnapshotId, Vec<u8>)>;

#[test]
fn writers_on_threads_beside_repeated_prunes_lose_nothing() {
    let (fx, repo) = Fixture::new();
    drop(repo);
    let shared = Arc::new(fx.open("shared"));
    let stop = Arc::new(AtomicBool::new(false));
    let saved: Arc<std::sync::Mutex<Saved>> = Arc::default();
    let mut threads = Vec::new();
    for t in 0..3u64 {
        // Two threads share one handle (an embedding server); one has its own.
        let repo = if t < 2 {
            shared.clone()
        } else {
            Arc::new(fx.open("own"))
        };
        let saved = saved.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..8u64 {
                // Overlapping block sets: most chunks are already stored, some only in
                // snapshots the pruner has just forgotten.
                let blocks: Vec<u64> = (0..6).map(|k| (i + k + t * 2) % 20).collect();
                let data = content(&blocks);
                let id = backup(&repo, &data, 1_760_000_000_000 + (t * 100 + i) as i64);
                saved.lock().unwrap().push((id, data));
            }
        }));
    }
    let pruner = {
        let repo = fx.open("pruner");
        let (stop, saved) = (stop.clone(), saved.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::SeqCst) {
                // Forget all but the newest few, then prune.
                let victims: Vec<SnapshotId> = {
                    let mut s = saved.lock().unwrap();
                    let n = s.len().saturating_sub(4);
                    s.drain(..n).map(|(id, _)| id).collect()
                };
                for id in victims {
                    repo.delete_snapshot(id).unwrap();
                }
                match repo.prune(&PruneOptions {
                    wait: Duration::from_millis(500),
                    ..PruneOptions::default()
                }) {
                    Ok(_) => runs += 1,
                    Err(Error::Locked { .. }) => {}
                    Err(e) => panic!("prune failed: {e}"),
                }
            }
            runs
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let runs = pruner.join().unwrap();
    drop(shared);
    let repo = fx.open("final");
    repo.prune(&prune_opts()).unwrap();
    let fresh = fx.open("verify");
    assert_clean(&fresh);
    let saved = saved.lock().unwrap();
    assert!(!saved.is_empty());
    for (id, data) in saved.iter() {
        assert_eq!(&restore(&fresh, *id), data);
    }
    assert!(runs >= 1, "at least one prune ran beside the writers");
}

#[test]
fn writers_wait_for_a_deleting_prune_and_stale_locks_are_cleared() {
    let (fx, repo) = Fixture::new();
    drop(repo);
    let foreign = |kind, host: &str, pid| LockRecord {
        kind,
        host: host.into(),
        pid,
        refresh: 0,
        created_unix_ms: 0,
        refreshed_unix_ms: 0,
    };
    let put_lock = |r: &LockRecord| {
        let bytes = r.encode();
        let name = format!("locks/{}", blake3::hash(&bytes).to_hex());
        fx.backend.put(&name, &bytes).unwrap();
        name
    };
    // A live exclusive lock of another host: a writer waits, then gives up.
    let name = put_lock(&foreign(LockKind::Exclusive, "elsewhere", 1));
    let opts = |stale_after| OpenOptions {
        cache_dir: Some(fx.cache("w")),
        allow_weak_kdf: true,
        locks: LockOptions {
            wait: Duration::from_millis(300),
            stale_after,
            refresh: stale_after / 4,
            poll: Duration::from_millis(20),
        },
        ..OpenOptions::default()
    };
    let repo = Repository::open(
        Box::new(fx.backend.clone()),
        &pass(),
        opts(Duration::from_secs(60)),
    )
    .unwrap();
    assert!(matches!(repo.writer(), Err(Error::Locked { .. })));
    assert!(fx.backend.stat(&name).is_ok(), "a live lock is left alone");
    assert_eq!(
        repo.list_locks().unwrap().len(),
        1,
        "our own lock was withdrawn"
    );
    drop(repo);
    // Watched long enough without a refresh, it is stale and cleared.
    let repo = Repository::open(
        Box::new(fx.backend.clone()),
        &pass(),
        opts(Duration::from_millis(100)),
    )
    .unwrap();
    let w = repo.writer().unwrap();
    assert!(fx.backend.stat(&name).is_err());
    // While the writer session runs, a prune cannot delete: it gives up with Locked, or
    // succeeds having found nothing to delete. Either way every object stays.
    let pruner = fx.open("p");
    let data = content(&[1, 2, 3]);
    w.write_stream(&data[..]).unwrap();
    let objects = |prefix: &str| -> std::collections::BTreeSet<String> {
        fx.backend
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    };
    let (packs, segments) = (objects("data/"), objects("index/"));
    match pruner.prune(&PruneOptions {
        wait: Duration::from_millis(200),
        ..PruneOptions::default()
    }) {
        Ok(r) => assert_eq!((r.packs_deleted, r.segments_rewritten), (0, 0), "{r:?}"),
        Err(Error::Locked { .. }) => {}
        Err(e) => panic!("prune beside a live writer failed: {e}"),
    }
    assert!(objects("data/").is_superset(&packs), "a pack was deleted");
    assert!(
        objects("index/").is_superset(&segments),
        "a segment was deleted"
    );
    w.finish().unwrap();
    drop(repo);
    // unlock: a dead process on this host goes at once; another host's lock only when
    // watched or with `all`.
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let dead = put_lock(&foreign(LockKind::Shared, &host, i32::MAX as u32));
    let other = put_lock(&foreign(LockKind::Shared, "elsewhere", 7));
    let admin = fx.open("admin");
    let removed = admin.unlock(None, false).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(fx.backend.stat(&dead).is_err() && fx.backend.stat(&other).is_ok());
    let removed = admin
        .unlock(Some(Duration::from_millis(400)), false)
        .unwrap();
    assert_eq!(removed.len(), 1);
    put_lock(&foreign(LockKind::Prune, "elsewhere", 8));
    assert_eq!(admin.unlock(None, true).unwrap().len(), 1);
    assert!(fx.backend.list("locks/").unwrap().is_empty());
}

#[test]
fn two_prunes_started_together_take_turns() {
    let (fx, repo, kept) = garbage_fixture();
    drop(repo);
    let fx = Arc::new(fx);
    let runs: Vec<_> = (0..2)
        .map(|i| {
            let fx = fx.clone();
            std::thread::spawn(move || {
                let repo = fx.open(&format!("pruner-{i}"));
                repo.prune(&prune_opts())
                    .map(|r| r.packs_deleted + r.packs_repacked)
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let fresh = fx.open("verify");
    assert_clean(&fresh);
    for (id, data) in &kept {
        assert_eq!(&restore(&fresh, *id), data);
    }
    assert!(fx.backend.list("locks/").unwrap().is_empty());
}

#[test]
fn a_read_lock_holds_deletion_off_and_a_reader_locking_after_a_prune_sees_its_result() {
    let (fx, repo, kept) = garbage_fixture();
    drop(repo);
    let packs_before = fx.backend.list("data/").unwrap().len();
    // A reader opened before the prune, holding its lock: the prune repacks but deletes
    // nothing while it reads, and the reader's index (synced before) stays usable.
    let reader = fx.open("reader");
    let lock = reader.read_lock().unwrap();
    assert_eq!(reader.list_locks().unwrap().len(), 1);
    let pruner = fx.open("pruner");
    let gave_up = pruner.prune(&PruneOptions {
        wait: Duration::from_millis(300),
        ..PruneOptions::default()
    });
    assert!(matches!(gave_up, Err(Error::Locked { .. })), "{gave_up:?}");
    assert!(fx.backend.list("data/").unwrap().len() >= packs_before);
    for (id, data) in &kept {
        assert_eq!(&restore(&reader, *id), data);
    }
    drop(lock);
    assert!(fx.backend.list("locks/").unwrap().is_empty());
    // Unlocked, the prune deletes. A reader opened before it takes its lock afterwards:
    // the lock re-syncs its index, so it reads from the packs that remain.
    let late = fx.open("late");
    let report = pruner.prune(&prune_opts()).unwrap();
    assert!(report.packs_deleted > 0, "{report:?}");
    let _lock = late.read_lock().unwrap();
    for (id, data) in &kept {
        assert_eq!(&restore(&late, *id), data);
    }
    assert_clean(&late);
}
