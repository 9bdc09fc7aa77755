//! Integration tests of `Repository::check`, `scrub` and the repairs: a sound repository
//! checks clean; each kind of damage done to each kind of stored object (the corruption
//! matrix) is found and attributed, never panics and never yields a wrong byte; and
//! `repair_index` / `repair_snapshots` bring a damaged repository back to a clean check.

use std::collections::{BTreeMap, BTreeSet};

use chatvault_core::{
    AddSlotOptions, Backend, BlobId, CheckOptions, CheckReport, ContentRef, Error, InitOptions,
    KdfParams, KeySource, LossKind, MemoryBackend, Node, OpenOptions, ProblemKind, REPAIRED_TAG,
    RepairOptions, Repository, Role, SlotId, SnapshotId, SnapshotKind, SnapshotRecord, Summary,
    Tree, scrub,
};

fn pass() -> KeySource {
    KeySource::passphrase("correct horse battery staple")
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
            ..InitOptions::default()
        };
        let repo = Repository::init(Box::new(backend.clone()), &pass(), init).unwrap();
        (Self { backend, dir }, repo)
    }

    fn open(&self, key: &KeySource, cache: &str) -> chatvault_core::Result<Repository> {
        let opts = OpenOptions {
            cache_dir: Some(self.dir.path().join(cache)),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        };
        Repository::open(Box::new(self.backend.clone()), key, opts)
    }

    fn packs(&self) -> BTreeSet<String> {
        names(&self.backend, "data/")
    }
}

fn names(b: &MemoryBackend, prefix: &str) -> BTreeSet<String> {
    b.list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = seed;
    while out.len() < n {
        i += 1;
        out.extend_from_slice(
            format!("{{\"seq\":{i},\"text\":\"msg {}\"}}\n", i * 7919 % 10007).as_bytes(),
        );
    }
    out.truncate(n);
    out
}

fn record(root: BlobId) -> SnapshotRecord {
    SnapshotRecord {
        time_unix_ms: 1_760_000_000_000,
        host: "h".into(),
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

/// Writes data in one writer session (its own packs), then a root tree naming it under
/// `name` plus a subtree, in another; saves a snapshot.
fn snapshot_of(repo: &Repository, refs: &[ContentRef], name: &str) -> SnapshotId {
    let w = repo.writer().unwrap();
    let file = |n: &str| Node {
        name: n.as_bytes().to_vec(),
        subtree: None,
        content: refs.to_vec(),
        meta: Vec::new(),
    };
    let sub = w
        .write_tree(&Tree::new(vec![file("inner")]).unwrap())
        .unwrap();
    let dir = Node {
        name: b"dir".to_vec(),
        subtree: Some(sub),
        content: Vec::new(),
        meta: Vec::new(),
    };
    let root = w
        .write_tree(&Tree::new(vec![dir, file(name)]).unwrap())
        .unwrap();
    w.finish().unwrap();
    repo.save_snapshot(record(root)).unwrap()
}

fn write_data(repo: &Repository, data: &[u8]) -> Vec<ContentRef> {
    let w = repo.writer().unwrap();
    let refs = w.write_stream(data).unwrap();
    w.finish().unwrap();
    refs
}

fn full() -> CheckOptions {
    CheckOptions {
        read_data: true,
        ..CheckOptions::default()
    }
}

fn kinds(r: &CheckReport) -> Vec<ProblemKind> {
    r.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn a_sound_repository_checks_clean() {
    let (fx, repo) = Fixture::new();
    let refs = write_data(&repo, &text(3 << 20, 0));
    snapshot_of(&repo, &refs, "a");
    snapshot_of(&repo, &refs, "b");
    for opts in [CheckOptions::default(), full()] {
        let r = repo.check(&opts).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.snapshots, 2);
        // Two roots; the shared subtree is walked once.
        assert_eq!(r.trees, 3);
        assert_eq!(r.packs, fx.packs().len() as u64);
        assert_eq!(r.blobs_checked, refs.len() as u64 + 3);
        assert_eq!(
            r.blobs_read,
            if opts.read_data { r.blobs_checked } else { 0 }
        );
    }
    let s = scrub(&fx.backend).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(
        s.objects,
        (fx.packs().len() + names(&fx.backend, "index/").len() + 2) as u64
    );
}

#[test]
fn a_flipped_byte_in_a_data_pack_is_found_by_read_data_with_its_blob() {
    let (fx, repo) = Fixture::new();
    let refs = write_data(&repo, &text(1 << 20, 0));
    let data_packs = fx.packs();
    let snap = snapshot_of(&repo, &refs, "a");
    drop(repo);
    let pack = data_packs.iter().next().unwrap();
    fx.backend.corrupt_object(pack, |b| b[100] ^= 1);
    let repo = fx.open(&pass(), "cache2").unwrap();
    let r = repo.check(&full()).unwrap();
    let bad: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::BlobCorrupt)
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", r.problems);
    assert!(bad[0].object.starts_with(pack.as_str()), "{:?}", bad[0]);
    assert!(
        refs.iter().any(|c| bad[0].object.ends_with(&c.id.to_hex())),
        "{:?}",
        bad[0]
    );
    assert_eq!(bad[0].snapshots, vec![snap]);
    let s = scrub(&fx.backend).unwrap();
    assert_eq!(s.problems.len(), 1);
    assert_eq!(&s.problems[0].object, pack);
}

#[test]
fn a_deleted_pack_names_its_blobs_and_the_snapshots_that_need_them() {
    let (fx, repo) = Fixture::new();
    let refs = write_data(&repo, &text(1 << 20, 0));
    let data_packs = fx.packs();
    assert_eq!(data_packs.len(), 1);
    let a = snapshot_of(&repo, &refs, "a");
    let b = snapshot_of(&repo, &refs, "b");
    let other = write_data(&repo, &text(1000, 99));
    let c = snapshot_of(&repo, &other, "c");
    let pack = data_packs.iter().next().unwrap();
    fx.backend.delete(pack).unwrap();
    let r = repo.check(&CheckOptions::default()).unwrap();
    let missing: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::PackMissing)
        .collect();
    assert_eq!(missing.len(), 1, "{:?}", r.problems);
    assert_eq!(&missing[0].object, pack);
    let blobs: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::BlobInBadPack)
        .collect();
    assert_eq!(blobs.len(), refs.len(), "{:?}", r.problems);
    for (p, c) in blobs.iter().zip(&refs) {
        assert!(p.object.ends_with(&c.id.to_hex()), "{p:?}");
        let mut snaps = p.snapshots.clone();
        snaps.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(snaps, want);
    }
    assert!(r.problems.iter().all(|p| !p.snapshots.contains(&c)));
}

#[test]
fn a_corrupted_snapshot_object_is_named_and_the_others_still_checked() {
    let (fx, repo) = Fixture::new();
    let refs = write_data(&repo, &text(1000, 0));
    let a = snapshot_of(&repo, &refs, "a");
    snapshot_of(&repo, &refs, "b");
    drop(repo);
    fx.backend.corrupt_object(&a.object_name(), |b| {
        let n = b.len();
        b[n - 10] ^= 4
    });
    let repo = fx.open(&pass(), "cache2").unwrap();
    let r = repo.check(&CheckOptions::default()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![ProblemKind::SnapshotUnreadable],
        "{:?}",
        r.problems
    );
    assert_eq!(r.problems[0].object, a.object_name());
    assert_eq!(r.problems[0].snapshots, vec![a]);
    assert_eq!(r.snapshots, 2);
    assert_eq!(r.trees, 2);
}

#[test]
fn a_corrupted_tree_blob_is_reported_with_its_snapshot() {
    let (fx, repo) = Fixture::new();
    let refs = write_data(&repo, &text(1000, 0));
    let before = fx.packs();
    let snap = snapshot_of(&repo, &refs, "a");
    drop(repo);
    let tree_pack = fx.packs().difference(&before).next().unwrap().clone();
    // The pack holds the subtree then the root; damage the first blob, the subtree.
    fx.backend.corrupt_object(&tree_pack, |b| b[30] ^= 1);
    let repo = fx.open(&pass(), "cache2").unwrap();
    let r = repo.check(&CheckOptions::default()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![ProblemKind::TreeUnreadable],
        "{:?}",
        r.problems
    );
    assert_eq!(r.problems[0].snapshots, vec![snap]);
    let r = repo.check(&full()).unwrap();
    // Reading the whole pack names the damaged blob itself (a pack's seals cover all of
    // its bytes, so no separate hash of the pack is needed: `scrub` compares names).
    assert_eq!(
        kinds(&r),
        vec![ProblemKind::BlobCorrupt],
        "{:?}",
        r.problems
    );
    assert_eq!(r.problems[0].message, "blob failed authentication");
    assert!(r.problems[0].object.starts_with(tree_pack.as_str()));
    assert_eq!(r.problems[0].snapshots, vec![snap]);
}

#[test]
fn scrub_finds_a_flipped_byte_in_any_content_addressed_object_without_a_key() {
    let (fx, repo) = Fixture::new();
    let refs = write_data(&repo, &text(1000, 0));
    snapshot_of(&repo, &refs, "a");
    drop(repo);
    for prefix in ["data/", "index/", "snapshots/"] {
        let name = names(&fx.backend, prefix).into_iter().next().unwrap();
        fx.backend.corrupt_object(&name, |b| b[7] ^= 0x80);
        let s = scrub(&fx.backend).unwrap();
        assert_eq!(s.problems.len(), 1, "{prefix}: {:?}", s.problems);
        assert_eq!(s.problems[0].object, name);
        assert_eq!(s.problems[0].kind, ProblemKind::ContentMismatch);
        fx.backend.corrupt_object(&name, |b| b[7] ^= 0x80);
        assert!(scrub(&fx.backend).unwrap().problems.is_empty());
    }
    assert!(matches!(
        scrub(&MemoryBackend::new()),
        Err(Error::RepositoryMissing { .. })
    ));
}

#[test]
fn a_backup_key_may_not_check() {
    let (fx, mut admin) = Fixture::new();
    let node_key = KeySource::passphrase("node secret");
    let mut o = AddSlotOptions::new(Role::Backup, "node-1");
    o.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&node_key, &o).unwrap();
    let node = fx.open(&node_key, "cache-node").unwrap();
    assert!(matches!(
        node.check(&CheckOptions::default()),
        Err(Error::PermissionDenied { .. })
    ));
}

#[test]
fn budgeted_read_data_subsets_continue_until_every_pack_is_read_and_find_damage() {
    let (fx, repo) = Fixture::new();
    // Eight separate writer sessions: eight data packs of similar size.
    let mut refs = Vec::new();
    for i in 0..8 {
        refs.extend(write_data(&repo, &text(300_000, i * 1_000_000)));
    }
    snapshot_of(&repo, &refs, "a");
    let packs: Vec<String> = fx.packs().into_iter().collect();
    assert!(packs.len() >= 9, "{packs:?}");
    let victim = packs[packs.len() / 2].clone();
    drop(repo);
    fx.backend.corrupt_object(&victim, |b| b[60] ^= 1);
    let repo = fx.open(&pass(), "cache2").unwrap();
    let subset = CheckOptions {
        read_data_subset: Some("30%".parse().unwrap()),
        ..CheckOptions::default()
    };
    let mut read = 0;
    let mut found = false;
    for _ in 0..4 {
        let r = repo.check(&subset).unwrap();
        assert!(r.packs_read >= 1 && r.packs_read < r.packs, "{r:?}");
        read += r.packs_read;
        found |= r.problems.iter().any(|p| p.object.starts_with(&victim));
    }
    // Four runs of 30 % cover every pack (the cursor is remembered between runs).
    assert!(read >= packs.len() as u64, "{read} of {}", packs.len());
    assert!(found, "the damaged pack was never read");
    // A fixed part n/m reads the same packs every time.
    let part = CheckOptions {
        read_data_subset: Some("1/3".parse().unwrap()),
        ..CheckOptions::default()
    };
    let a = repo.check(&part).unwrap().packs_read;
    assert_eq!(repo.check(&part).unwrap().packs_read, a);
}

/// What a matrix case damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Pack,
    Segment,
    Snapshot,
    KeySlot,
    Config,
}

/// How it is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

/// Two snapshots with disjoint data: `a` (whose data pack, index segment, record and key
/// slot get damaged) and `b`, which must come through every case untouched.
struct Matrix {
    fx: Fixture,
    a: SnapshotId,
    b: SnapshotId,
    data_a: Vec<u8>,
    refs_a: Vec<ContentRef>,
    data_b: Vec<u8>,
    refs_b: Vec<ContentRef>,
    pack_a: String,
    segment_a: String,
    admin_slot: String,
}

fn second_key() -> KeySource {
    KeySource::passphrase("the second full key")
}

fn matrix_fixture() -> Matrix {
    let (fx, mut repo) = Fixture::new();
    let first: BTreeSet<String> = names(&fx.backend, "keys/");
    let mut o = AddSlotOptions::new(Role::Full, "second");
    o.kdf = KdfParams::insecure_for_tests();
    let second: SlotId = repo.add_slot(&second_key(), &o).unwrap();
    assert!(!first.contains(&second.object_name()));
    let (packs, segments) = (fx.packs(), names(&fx.backend, "index/"));
    let data_a = text(200_000, 1);
    let refs_a = write_data(&repo, &data_a);
    let new = |before: &BTreeSet<String>, now: BTreeSet<String>| {
        let v: Vec<String> = now.difference(before).cloned().collect();
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].clone()
    };
    let pack_a = new(&packs, fx.packs());
    let segment_a = new(&segments, names(&fx.backend, "index/"));
    let a = snapshot_of(&repo, &refs_a, "a");
    let data_b = text(200_000, 5_000_000);
    let refs_b = write_data(&repo, &data_b);
    let b = snapshot_of(&repo, &refs_b, "b");
    Matrix {
        fx,
        a,
        b,
        data_a,
        refs_a,
        data_b,
        refs_b,
        pack_a,
        segment_a,
        admin_slot: first.into_iter().next().unwrap(),
    }
}

fn damage(m: &Matrix, what: Object, how: Damage) {
    let name = match what {
        Object::Pack => m.pack_a.clone(),
        Object::Segment => m.segment_a.clone(),
        Object::Snapshot => m.a.object_name(),
        Object::KeySlot => m.admin_slot.clone(),
        Object::Config => "config".to_owned(),
    };
    match how {
        // Past the middle: the blob area of a pack, the sealed part of everything else.
        Damage::Flip => m.fx.backend.corrupt_object(&name, |b| {
            let i = b.len() * 2 / 3;
            b[i] ^= 0x10;
        }),
        Damage::Truncate => {
            m.fx.backend
                .corrupt_object(&name, |b| b.truncate(b.len() / 2))
        }
        Damage::Delete => m.fx.backend.delete(&name).unwrap(),
    }
}

/// Every blob read gives the exact bytes written or an error, never other bytes.
fn reads_exact_or_fail(repo: &Repository, refs: &[ContentRef], data: &[u8]) -> bool {
    let mut all_ok = true;
    let mut at = 0;
    for r in refs {
        let want = &data[at..at + r.len as usize];
        at += r.len as usize;
        match repo.read_blob(r.id, chatvault_core::BlobType::Data) {
            Ok(got) => assert_eq!(got, want, "a read returned wrong bytes"),
            Err(_) => all_ok = false,
        }
    }
    all_ok
}

#[test]
fn corruption_matrix_every_object_kind_flipped_truncated_and_deleted() {
    use Damage::*;
    use Object::*;
    for what in [Pack, Segment, Snapshot, KeySlot, Config] {
        for how in [Flip, Truncate, Delete] {
            let case = format!("{what:?} {how:?}");
            let m = matrix_fixture();
            damage(&m, what, how);
            let opened = m.fx.open(&pass(), "cache-after");
            let repo = match (what, opened) {
                (Config, Ok(_)) => panic!("{case}: a damaged config must not open"),
                (Config, Err(e)) => {
                    let typed = matches!(
                        e,
                        Error::Corrupt { .. }
                            | Error::RepositoryMissing { .. }
                            | Error::Untrusted { .. }
                            | Error::UnsupportedFormat { .. }
                    );
                    assert!(typed, "{case}: {e:?}");
                    continue;
                }
                (KeySlot, Ok(_)) => panic!("{case}: a damaged slot must not open"),
                (KeySlot, Err(e)) => {
                    assert!(
                        matches!(e, Error::Corrupt { .. } | Error::WrongPassphrase),
                        "{case}: {e:?}"
                    );
                    m.fx.open(&second_key(), "cache-second").unwrap()
                }
                (_, r) => r.unwrap_or_else(|e| panic!("{case}: {e:?}")),
            };
            let r = repo.check(&full()).unwrap();
            // Unaffected data restores; damaged data never reads as other bytes.
            assert!(reads_exact_or_fail(&repo, &m.refs_b, &m.data_b), "{case}");
            let a_ok = reads_exact_or_fail(&repo, &m.refs_a, &m.data_a);
            assert!(
                r.problems.iter().all(|p| !p.snapshots.contains(&m.b)),
                "{case}: {:?}",
                r.problems
            );
            let names_a = r.problems.iter().any(|p| p.snapshots == vec![m.a]);
            let k = kinds(&r);
            match (what, how) {
                (Pack, _) | (Segment, _) => {
                    assert!(names_a && !a_ok, "{case}: {:?}", r.problems);
                }
                (Snapshot, Delete) => {
                    // A deleted record cannot be told from a forgotten one.
                    assert!(r.problems.is_empty() && r.snapshots == 1, "{case}: {r:?}");
                }
                (Snapshot, _) => {
                    assert_eq!(k, vec![ProblemKind::SnapshotUnreadable], "{case}");
                    assert!(names_a && a_ok, "{case}");
                }
                (KeySlot, Truncate) => {
                    assert_eq!(k, vec![ProblemKind::SlotUnreadable], "{case}");
                    assert!(a_ok, "{case}");
                }
                (KeySlot, _) => {
                    // The sealed part is only checked by opening the slot (done above).
                    assert!(r.problems.is_empty() && a_ok, "{case}: {:?}", r.problems);
                }
                (Config, _) => unreachable!(),
            }
            if what == Segment {
                let k = kinds(&r);
                assert!(k.contains(&ProblemKind::BlobMissing), "{case}: {k:?}");
                if how != Delete {
                    assert!(k.contains(&ProblemKind::SegmentUnreadable), "{case}: {k:?}");
                }
            }
        }
    }
}

#[test]
fn repair_index_rebuilds_lost_and_damaged_segments_and_check_comes_back_clean() {
    for how in [Damage::Flip, Damage::Truncate, Damage::Delete] {
        let m = matrix_fixture();
        damage(&m, Object::Segment, how);
        let repo = m.fx.open(&pass(), "cache-after").unwrap();
        assert!(!repo.check(&full()).unwrap().problems.is_empty());
        let before = names(&m.fx.backend, "index/");
        let report = repo.repair_index().unwrap();
        assert!(report.unreadable_packs.is_empty(), "{report:?}");
        assert!(report.segments_kept.is_empty(), "{report:?}");
        // Only the damaged segment goes; the intact ones stay, so their writers'
        // announcements keep their vouchers. What the damaged one listed is re-indexed
        // from the pack headers.
        let damaged = u64::from(how != Damage::Delete);
        assert_eq!(report.segments_retired, damaged, "{how:?}");
        assert_eq!(report.segments_unreadable, damaged, "{how:?}");
        assert!(report.blobs_reindexed > 0, "{report:?}");
        let after = names(&m.fx.backend, "index/");
        let kept = before.iter().filter(|s| after.contains(*s)).count();
        assert_eq!(kept as u64, before.len() as u64 - damaged, "{how:?}");
        let r = repo.check(&full()).unwrap();
        assert!(r.problems.is_empty(), "{how:?}: {:?}", r.problems);
        assert!(reads_exact_or_fail(&repo, &m.refs_a, &m.data_a));
        // A fresh client agrees (the old segments are gone from the repository).
        let again = m.fx.open(&pass(), "cache-fresh").unwrap();
        assert!(again.check(&full()).unwrap().problems.is_empty());
    }
}

#[test]
fn repair_index_keeps_a_segment_whose_pack_header_is_unreadable() {
    let m = matrix_fixture();
    // Damage the pack's trailer: its header (and so the rebuild) cannot read it.
    m.fx.backend.corrupt_object(&m.pack_a, |b| {
        let n = b.len();
        b[n - 3] ^= 1
    });
    let repo = m.fx.open(&pass(), "cache-after").unwrap();
    let report = repo.repair_index().unwrap();
    assert_eq!(report.unreadable_packs.len(), 1, "{report:?}");
    assert_eq!(
        report
            .segments_kept
            .iter()
            .map(|s| s.object_name())
            .collect::<Vec<_>>(),
        vec![m.segment_a.clone()]
    );
    assert!(names(&m.fx.backend, "index/").contains(&m.segment_a));
}

#[test]
fn repair_snapshots_leaves_out_exactly_the_lost_files_and_forgets_only_on_request() {
    for how in [Damage::Flip, Damage::Truncate, Damage::Delete] {
        let m = matrix_fixture();
        damage(&m, Object::Pack, how);
        let repo = m.fx.open(&pass(), "cache-after").unwrap();
        let opts = RepairOptions {
            read_data: true,
            dry_run: true,
            ..RepairOptions::default()
        };
        let dry = repo.repair_snapshots(&opts).unwrap();
        assert_eq!(dry.intact, 1, "{how:?}: {dry:?}");
        assert_eq!(dry.repaired.len(), 1);
        assert_eq!(dry.repaired[0].repaired, None);
        let snaps_before = names(&m.fx.backend, "snapshots/");
        let r = repo
            .repair_snapshots(&RepairOptions {
                dry_run: false,
                ..opts.clone()
            })
            .unwrap();
        let fixed = &r.repaired[0];
        assert_eq!(fixed.original, m.a);
        assert!(!fixed.original_forgotten);
        let mut lost: Vec<(String, LossKind)> = fixed
            .losses
            .iter()
            .map(|l| (String::from_utf8(l.path.clone()).unwrap(), l.kind))
            .collect();
        lost.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            lost,
            vec![
                ("/a".to_owned(), LossKind::Content),
                ("/dir/inner".to_owned(), LossKind::Content)
            ],
            "{how:?}"
        );
        // The original stays until forgotten; the new one holds everything else.
        let new_id = fixed.repaired.unwrap();
        let snaps: BTreeSet<String> = names(&m.fx.backend, "snapshots/");
        assert!(snaps.is_superset(&snaps_before) && snaps.len() == snaps_before.len() + 1);
        let new = repo.load_snapshot(new_id).unwrap();
        assert!(new.record.tags.contains(&REPAIRED_TAG.to_owned()));
        let old = repo.load_snapshot(m.a).unwrap();
        assert_eq!(new.record.time_unix_ms, old.record.time_unix_ms);
        let root = repo.read_tree(new.record.root).unwrap();
        let names_left: Vec<&[u8]> = root.nodes().iter().map(|n| n.name.as_slice()).collect();
        assert_eq!(names_left, vec![b"dir".as_slice()]);
        let dir = repo.read_tree(root.nodes()[0].subtree.unwrap()).unwrap();
        assert!(dir.nodes().is_empty());
        // Forgetting the original: the damage no longer affects any snapshot.
        let r = repo
            .repair_snapshots(&RepairOptions {
                snapshots: vec![m.a],
                forget_originals: true,
                dry_run: false,
                ..opts.clone()
            })
            .unwrap();
        assert!(r.repaired[0].original_forgotten && r.repaired[0].repaired.is_some());
        let check = repo.check(&full()).unwrap();
        assert!(
            check.problems.iter().all(|p| p.snapshots.is_empty()),
            "{how:?}: {:?}",
            check.problems
        );
        assert!(!names(&m.fx.backend, "snapshots/").contains(&m.a.object_name()));
    }
}
