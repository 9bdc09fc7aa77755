//! End-to-end tests of message-log backup sets on generated chat-server data.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chatvault_core::{
    AddSlotOptions, BlobId, ContentRef, InitOptions, KdfParams, KeySource, LocalBackend, Node,
    OpenOptions, Repository, Role, SnapshotId, SnapshotKind, SnapshotRecord, Summary, Tree,
};
use chatvault_msglog::{
    BackupOptions, BackupReport, BackupSession, Conversation, MessageRecord, MessageSource,
    NodeKind, NodeMeta, ParentChoice, Selection, SetReader, Tier, View,
};
use chatvault_workload::{Server, ServerOptions};

fn key() -> KeySource {
    KeySource::passphrase("correct horse battery staple")
}

struct Fixture {
    store: tempfile::TempDir,
    work: tempfile::TempDir,
    repo: Repository,
}

impl Fixture {
    fn new() -> Self {
        let store = tempfile::tempdir().unwrap();
        let backend = LocalBackend::create(store.path().join("repo")).unwrap();
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(store.path().join("cache")),
            ..InitOptions::default()
        };
        let repo = Repository::init(Box::new(backend), &key(), init).unwrap();
        Fixture {
            store,
            work: tempfile::tempdir().unwrap(),
            repo,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        fs::canonicalize(self.work.path()).unwrap().join(rel)
    }

    fn open_with(&self, key: &KeySource, cache: &str) -> Repository {
        let backend = LocalBackend::open(self.store.path().join("repo")).unwrap();
        let opts = OpenOptions {
            cache_dir: Some(self.store.path().join(cache)),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        };
        Repository::open(Box::new(backend), key, opts).unwrap()
    }

    fn backup_dir(&self, dir: &Path, full: bool) -> BackupReport {
        let opts = BackupOptions {
            name: "server".into(),
            host: Some("chat-1".into()),
            full,
            ..BackupOptions::default()
        };
        chatvault_msglog::backup_data_dir(&self.repo, dir, opts).unwrap()
    }
}

/// Every file below `root`, by relative path.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn assert_same_files(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (p, bytes) in a {
        assert!(bytes == &b[p], "{} differs", p.display());
    }
}

/// Every stream of a set: path → (chunks, meta), read with the core API only.
fn streams(repo: &Repository, snap: SnapshotId) -> BTreeMap<String, (Vec<ContentRef>, NodeMeta)> {
    fn walk(
        repo: &Repository,
        id: BlobId,
        path: &str,
        out: &mut BTreeMap<String, (Vec<ContentRef>, NodeMeta)>,
    ) {
        for n in repo.read_tree(id).unwrap().into_nodes() {
            let p = format!("{path}/{}", String::from_utf8_lossy(&n.name));
            let meta = NodeMeta::decode(&n.meta, &p).unwrap();
            match n.subtree {
                Some(sub) => walk(repo, sub, &p, out),
                None => {
                    out.insert(p, (n.content, meta));
                }
            }
        }
    }
    let root = repo
        .read_tree(repo.load_snapshot(snap).unwrap().record.root)
        .unwrap();
    let mut out = BTreeMap::new();
    if let Some(logs) = root.get(b"logs").and_then(|n| n.subtree) {
        walk(repo, logs, "", &mut out);
    }
    out
}

fn generate(dir: &Path, days: u32) {
    chatvault_workload::generate(dir, ServerOptions::tiny(), days).unwrap();
}

fn advance(dir: &Path, days: u32) {
    chatvault_workload::advance(dir, days).unwrap();
}

fn pause() {
    // Snapshot times are in ms; keep successive snapshots apart.
    std::thread::sleep(std::time::Duration::from_millis(5));
}

#[test]
fn daily_incrementals_append_only_and_restore_byte_for_byte() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 2);
    let first = f.backup_dir(&data, false);
    assert_eq!(first.kind, SnapshotKind::Full);
    assert!(first.logs.streams > 20);
    assert_eq!(first.logs.streams_new, first.logs.streams);

    let mut prev = streams(&f.repo, first.snapshot);
    let (mut appended, mut written) = (0, 0);
    let mut last = first;
    for _ in 0..8 {
        advance(&data, 1);
        pause();
        let r = f.backup_dir(&data, false);
        assert_eq!(r.kind, SnapshotKind::Incremental);
        assert_eq!(r.parent, Some(last.snapshot));
        assert!(r.logs.streams_unchanged > 0, "{:?}", r.logs);
        assert_eq!(r.logs.streams_rewritten, 0);
        // Only the appended bytes were chunked; unchanged logs were not even read.
        let now = streams(&f.repo, r.snapshot);
        for (path, (chunks, meta)) in &now {
            let Some((old_chunks, old_meta)) = prev.get(path) else {
                continue;
            };
            // Sealed segments are never rewritten: they stay, in place.
            let sealed = old_meta
                .segments
                .iter()
                .filter(|s| s.tier == Tier::Sealed)
                .count();
            assert_eq!(&chunks[..sealed], &old_chunks[..sealed], "{path}");
            assert!(meta.len >= old_meta.len);
            // Chunks beyond the old ones hold only new bytes or merged old tails.
            let tails = old_meta.segments.len() - sealed;
            assert!(meta.segments.len() + tails >= old_meta.segments.len());
        }
        appended += r.logs.bytes_appended;
        written += r.logs.bytes_written;
        prev = now;
        last = r;
    }
    assert!(appended > 0);
    assert!(
        written <= 2 * appended,
        "write amplification {written} bytes written for {appended} appended"
    );
    // Every stream stays bounded: at most 8 tail segments.
    for (path, (_, meta)) in &prev {
        let tails = meta
            .segments
            .iter()
            .filter(|s| s.tier == Tier::Tail)
            .count();
        assert!(tails <= 8, "{path} has {tails} tails");
    }

    let target = f.path("restored");
    let report = chatvault_msglog::restore(&f.repo, last.snapshot, &target).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_same_files(&files(&data), &files(&target));
}

#[test]
fn full_run_verifies_and_stores_no_history() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 3);
    f.backup_dir(&data, false);
    advance(&data, 2);
    pause();
    f.backup_dir(&data, false);
    pause();
    let full = f.backup_dir(&data, true);
    assert_eq!(full.kind, SnapshotKind::Full);
    assert_eq!(full.logs.bytes_written, 0, "{:?}", full.logs);
    assert_eq!(full.logs.streams_verified, full.logs.streams);
    let segments: usize = streams(&f.repo, full.snapshot)
        .values()
        .map(|s| s.0.len())
        .sum();
    assert_eq!(full.logs.segments_verified, segments as u64);
    // Only trees are new (the logs' stamps are the same, so even they mostly dedup).
    assert_eq!(full.files.unwrap().files_unchanged, 0);
}

#[test]
fn a_log_changed_in_place_is_stored_again() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 2);
    f.backup_dir(&data, false);
    let log = files(&data)
        .into_keys()
        .find(|p| p.starts_with("logs"))
        .unwrap();
    let path = data.join(&log);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 1; // a redaction, say
    bytes.extend_from_slice(b"{\"seq\":999999,\"ts\":1}\n");
    fs::write(&path, &bytes).unwrap();
    pause();
    let r = f.backup_dir(&data, false);
    assert_eq!(r.logs.streams_rewritten, 1);
    let target = f.path("restored");
    chatvault_msglog::restore(&f.repo, r.snapshot, &target).unwrap();
    assert_eq!(fs::read(target.join(&log)).unwrap(), bytes);
}

#[test]
fn an_edit_before_the_checked_window_is_caught_by_the_next_full_run() {
    let f = Fixture::new();
    let dir = f.path("server/logs/acme/general");
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("2026-01.jsonl");
    let mut bytes = Vec::new();
    for seq in 1..=8000u64 {
        bytes.extend_from_slice(
            format!(
                "{{\"seq\":{seq},\"ts\":{},\"text\":\"message {seq}\"}}\n",
                seq * 1000
            )
            .as_bytes(),
        );
    }
    assert!(bytes.len() > 3 * 65536);
    fs::write(&log, &bytes).unwrap();
    let data = f.path("server");
    f.backup_dir(&data, false);
    // Rewrite a record far from the end (same length), and append: same inode, grown.
    let at = bytes
        .windows(13)
        .position(|w| w == b"message 5000\"")
        .unwrap();
    bytes[at + 8] = b'9';
    bytes.extend_from_slice(b"{\"seq\":8001,\"ts\":8001000,\"text\":\"new\"}\n");
    fs::write(&log, &bytes).unwrap();
    pause();
    // The incremental run checks only the window before the old end: it appends.
    let incr = f.backup_dir(&data, false);
    assert_eq!(incr.logs.streams_appended, 1);
    assert_eq!(incr.logs.streams_rewritten, 0);
    pause();
    // The full run re-verifies every segment and stores the file again from the change.
    let full = f.backup_dir(&data, true);
    assert_eq!(full.logs.streams_rewritten, 1, "{:?}", full.logs);
    assert!(full.logs.bytes_written < bytes.len() as u64);
    let target = f.path("restored");
    chatvault_msglog::restore(&f.repo, full.snapshot, &target).unwrap();
    assert_eq!(
        fs::read(target.join("logs/acme/general/2026-01.jsonl")).unwrap(),
        bytes
    );
}

/// The conversation with the most segments, and its `(tenant, id)`.
fn busiest(all: &BTreeMap<String, (Vec<ContentRef>, NodeMeta)>) -> (String, String) {
    let (path, _) = all.iter().max_by_key(|(_, (c, _))| c.len()).unwrap();
    let mut parts = path.trim_start_matches('/').split('/');
    (parts.next().unwrap().into(), parts.next().unwrap().into())
}

#[test]
fn a_time_range_reads_only_the_segments_that_overlap_it() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 1);
    let mut last = f.backup_dir(&data, false);
    for _ in 0..12 {
        advance(&data, 1);
        pause();
        last = f.backup_dir(&data, false);
    }
    let all = streams(&f.repo, last.snapshot);
    let (tenant, conv) = busiest(&all);
    let conv_streams: Vec<_> = all
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("/{tenant}/{conv}/")))
        .collect();
    let max_ts = conv_streams
        .iter()
        .flat_map(|(_, (_, m))| m.segments.iter().filter_map(|s| s.ranges.map(|r| r.ts_max)))
        .max()
        .unwrap();
    let from = max_ts - 2 * 86_400_000;
    let sel = Selection {
        tenant: Some(tenant.clone()),
        conversation: Some(conv.clone()),
        time: Some((from, max_ts)),
        ..Selection::default()
    };
    let set = SetReader::open(&f.repo, last.snapshot).unwrap();
    let mut out = Vec::new();
    let stats = set.export(&sel, View::Raw, &mut out).unwrap();

    // Exactly the overlapping segments were fetched, and fewer than all of them.
    let overlapping: u64 = conv_streams
        .iter()
        .flat_map(|(_, (_, m))| &m.segments)
        .filter(|s| {
            s.ranges
                .is_some_and(|r| r.ts_min <= max_ts && r.ts_max >= from)
        })
        .count() as u64;
    let total: u64 = conv_streams.iter().map(|(_, (c, _))| c.len() as u64).sum();
    assert_eq!(stats.segments_read, overlapping);
    assert_eq!(stats.segments_total, total);
    assert!(overlapping < total, "{overlapping} of {total}");

    // And the records are exactly the generator's, read straight from its files.
    let mut expected = Vec::new();
    for (p, bytes) in files(&data.join("logs").join(&tenant).join(&conv)) {
        let _ = p;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let ts = v["ts"].as_i64().unwrap();
            if (from..=max_ts).contains(&ts) {
                expected.extend_from_slice(line);
            }
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[test]
fn a_seq_range_and_a_tenant_restore_as_files() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 4);
    let r = f.backup_dir(&data, false);
    let set = SetReader::open(&f.repo, r.snapshot).unwrap();
    // One tenant, everything: its files byte for byte.
    let target = f.path("t0");
    let sel = Selection {
        tenant: Some("t0".into()),
        ..Selection::default()
    };
    set.restore_logs(&sel, View::Raw, &target).unwrap();
    assert_same_files(&files(&data.join("logs/t0")), &files(&target.join("t0")));
    assert!(!target.join("t1").exists());
    // Seq 2..=4 of one conversation.
    let (tenant, conv) = busiest(&streams(&f.repo, r.snapshot));
    let sel = Selection {
        tenant: Some(tenant.clone()),
        conversation: Some(conv.clone()),
        seq: Some((2, 4)),
        ..Selection::default()
    };
    let target = f.path("range");
    let stats = set.restore_logs(&sel, View::Raw, &target).unwrap();
    assert_eq!(stats.records, 3);
    let got = files(&target);
    let text: String = got
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    for seq in 2..=4 {
        assert!(text.contains(&format!("{{\"seq\":{seq},")), "{text}");
    }
}

#[test]
fn point_in_time_restore_gives_that_days_state() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 2);
    let mut states = Vec::new();
    for day in 0..3 {
        if day > 0 {
            advance(&data, 1);
        }
        pause();
        let r = f.backup_dir(&data, false);
        let time = f
            .repo
            .load_snapshot(r.snapshot)
            .unwrap()
            .record
            .time_unix_ms;
        states.push((time, files(&data.join("logs"))));
        pause();
    }
    let (t1, day1) = &states[1];
    let snap = chatvault_msglog::snapshot_at(&f.repo, Some("server"), None, t1 + 1).unwrap();
    let target = f.path("pit");
    SetReader::open(&f.repo, snap.id)
        .unwrap()
        .restore_logs(&Selection::default(), View::Raw, &target)
        .unwrap();
    assert_same_files(day1, &files(&target));
    assert_ne!(day1, &states[2].1);
    let err = chatvault_msglog::snapshot_at(&f.repo, None, None, states[0].0 - 1000).unwrap_err();
    assert!(
        matches!(err, chatvault_msglog::Error::NoSnapshot(_)),
        "{err}"
    );
}

#[test]
fn applied_view_follows_edits_across_month_files() {
    let f = Fixture::new();
    let logs = f.path("server/logs/acme/general");
    fs::create_dir_all(&logs).unwrap();
    fs::write(
        logs.join("2026-01.jsonl"),
        "{\"seq\":1,\"ts\":100,\"kind\":\"msg\",\"text\":\"a\"}\n\
         {\"seq\":2,\"ts\":200,\"kind\":\"msg\",\"text\":\"b\"}\n",
    )
    .unwrap();
    fs::write(
        logs.join("2026-02.jsonl"),
        "{\"seq\":3,\"ts\":300,\"kind\":\"edit\",\"target\":1,\"text\":\"a2\"}\n\
         {\"seq\":4,\"ts\":400,\"kind\":\"delete\",\"target\":2,\"text\":\"\"}\n\
         {\"seq\":5,\"ts\":500,\"kind\":\"msg\",\"text\":\"c\"}\n",
    )
    .unwrap();
    let r = f.backup_dir(&f.path("server"), false);
    let set = SetReader::open(&f.repo, r.snapshot).unwrap();
    let mut out = Vec::new();
    let sel = Selection {
        time: Some((0, 250)),
        ..Selection::default()
    };
    set.export(&sel, View::Applied, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"seq\":1,\"ts\":100,\"kind\":\"msg\",\"text\":\"a2\",\"edited_ts\":300}\n"
    );
    let mut raw = Vec::new();
    set.export(&sel, View::Raw, &mut raw).unwrap();
    assert_eq!(String::from_utf8(raw).unwrap().lines().count(), 2);
    let target = f.path("applied");
    set.restore_logs(&Selection::default(), View::Applied, &target)
        .unwrap();
    assert_eq!(
        fs::read_to_string(target.join("acme/general/2026-02.jsonl")).unwrap(),
        "{\"seq\":5,\"ts\":500,\"kind\":\"msg\",\"text\":\"c\"}\n"
    );
}

/// A conversation's records: seq, timestamp, bytes.
type Log = Vec<(u64, i64, Vec<u8>)>;

/// An embedding server's store: records per conversation, in memory.
#[derive(Default)]
struct Store {
    convs: BTreeMap<(String, String), Log>,
    reads: std::sync::atomic::AtomicU64,
}

impl Store {
    fn add_day(&mut self, server: &mut Server) {
        let day = server.next_day();
        for r in day.records() {
            self.convs
                .entry((r.tenant.to_string(), r.conversation.to_string()))
                .or_default()
                .push((r.seq, r.ts_ms as i64, r.line.clone()));
        }
        for v in self.convs.values_mut() {
            v.sort_by_key(|r| r.0);
        }
    }
}

impl MessageSource for Store {
    fn conversations(&self) -> std::io::Result<Vec<Conversation>> {
        Ok(self
            .convs
            .iter()
            .map(|((t, c), records)| Conversation {
                tenant: t.clone(),
                id: c.clone(),
                last_seq: records.last().map_or(0, |r| r.0),
            })
            .collect())
    }

    fn read(
        &self,
        c: &Conversation,
        from_seq: u64,
        visit: &mut dyn FnMut(MessageRecord<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let records = &self.convs[&(c.tenant.clone(), c.id.clone())];
        for (seq, ts, data) in records.iter().filter(|r| r.0 >= from_seq) {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            visit(MessageRecord {
                seq: *seq,
                ts_ms: *ts,
                data,
            })?;
        }
        Ok(())
    }
}

#[test]
fn an_embedding_server_backs_up_daily_and_weekly_full() {
    let f = Fixture::new();
    let mut server = Server::new(ServerOptions::tiny());
    let mut store = Store::default();
    let opts = |full| BackupOptions {
        name: "node-1".into(),
        host: Some("chat-1".into()),
        full,
        ..BackupOptions::default()
    };
    let mut last = None;
    for day in 0..8 {
        store.add_day(&mut server);
        store.reads.store(0, std::sync::atomic::Ordering::Relaxed);
        let mut s = BackupSession::start(&f.repo, opts(false)).unwrap();
        s.backup_messages(&store).unwrap();
        s.backup_dump(
            "chat.sql",
            &b"CREATE TABLE t;"[..],
            Some(format!("lsn-{day}").into_bytes()),
        )
        .unwrap();
        let r = s.commit().unwrap();
        if day > 0 {
            assert_eq!(r.kind, SnapshotKind::Incremental);
            assert!(r.logs.streams_unchanged > 0 || r.logs.streams_appended > 0);
        }
        last = Some(r);
        pause();
    }
    // A weekly full run reads everything and stores no record again.
    let mut s = BackupSession::start(&f.repo, opts(true)).unwrap();
    s.backup_messages(&store).unwrap();
    let full = s.commit().unwrap();
    assert_eq!(full.logs.bytes_written, 0, "{:?}", full.logs);
    assert_eq!(full.logs.streams_verified, full.logs.streams);
    let _ = last;

    // Every conversation exports exactly its records.
    let set = SetReader::open(&f.repo, full.snapshot).unwrap();
    for ((tenant, conv), records) in &store.convs {
        let sel = Selection {
            tenant: Some(tenant.clone()),
            conversation: Some(conv.clone()),
            ..Selection::default()
        };
        let mut out = Vec::new();
        set.export(&sel, View::Raw, &mut out).unwrap();
        let expected: Vec<u8> = records
            .iter()
            .flat_map(|r| r.2.iter().copied().chain([b'\n']))
            .collect();
        assert!(out == expected, "{tenant}/{conv}");
    }
    let snap = f.repo.load_snapshot(full.snapshot).unwrap();
    assert_eq!(snap.record.paths, ["node-1"]);
}

#[test]
fn a_backup_key_writes_sets_it_cannot_read() {
    let mut f = Fixture::new();
    let node_key = KeySource::passphrase("node secret");
    f.repo
        .add_slot(&node_key, &AddSlotOptions::new(Role::Backup, "node"))
        .unwrap();
    let node = f.open_with(&node_key, "node-cache");
    let data = f.path("server");
    generate(&data, 2);
    // The node key writes for its own host (its scope defaults to its label).
    let opts = BackupOptions {
        name: "server".into(),
        host: Some("node".into()),
        ..BackupOptions::default()
    };
    let first = chatvault_msglog::backup_data_dir(&node, &data, opts.clone()).unwrap();
    // Its next run builds on its own last set (from its local journal): incremental.
    advance(&data, 1);
    pause();
    let r = chatvault_msglog::backup_data_dir(&node, &data, opts).unwrap();
    assert_eq!(r.kind, SnapshotKind::Incremental);
    assert_eq!(r.parent, Some(first.snapshot));
    assert!(r.logs.streams_unchanged > 0);
    assert!(r.logs.bytes_written <= 2 * r.logs.bytes_appended);
    assert!(r.files.unwrap().files_unchanged > 0);
    // But it cannot read the history it wrote: at most the shape of its own latest set
    // (which its journal holds), never a record, nor any older set.
    let mut out = Vec::new();
    let err = SetReader::open(&node, r.snapshot)
        .and_then(|s| s.export(&Selection::default(), View::Raw, &mut out))
        .unwrap_err();
    assert!(err.to_string().contains("cannot"), "{err}");
    assert!(out.is_empty());
    let err = SetReader::open(&node, first.snapshot).unwrap_err();
    assert!(err.to_string().contains("cannot"), "{err}");
    let admin = f.open_with(&key(), "admin-cache");
    let target = f.path("restored");
    chatvault_msglog::restore(&admin, r.snapshot, &target).unwrap();
    assert_same_files(&files(&data), &files(&target));
}

#[test]
fn a_damaged_segment_is_a_typed_error_and_no_data() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 2);
    let mut s = BackupSession::start(&f.repo, BackupOptions::default()).unwrap();
    s.backup_logs_dir(&data.join("logs")).unwrap();
    let r = s.commit().unwrap();
    let set = SetReader::open(&f.repo, r.snapshot).unwrap();
    let mut good = Vec::new();
    set.export(&Selection::default(), View::Raw, &mut good)
        .unwrap();
    // A sound set verifies with no problem, every stream and record counted.
    let v = chatvault_msglog::verify(&f.repo, r.snapshot).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.logs.streams, r.logs.streams);
    assert_eq!(v.logs.bytes_out as usize, good.len());
    // Flip a byte in every KiB of every pack: every segment is damaged.
    let mut damaged = 0;
    for e in walk_files(&f.store.path().join("repo/data")) {
        let mut b = fs::read(&e).unwrap();
        for i in (512..b.len()).step_by(1024) {
            b[i] ^= 0x40;
        }
        fs::write(&e, b).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0);
    let fresh = f.open_with(&key(), "fresh-cache");
    // Verification reports the damage: as problems per stream, or as a corrupt error when
    // even the set's trees are gone; never as a sound set.
    match chatvault_msglog::verify(&fresh, r.snapshot) {
        Ok(v) => {
            assert!(!v.problems.is_empty());
            assert!(v.problems.iter().all(|p| p.corrupt), "{:?}", v.problems);
        }
        Err(e) => assert!(e.is_corrupt(), "{e}"),
    }
    let err = match SetReader::open(&fresh, r.snapshot) {
        Ok(set) => {
            let mut out = Vec::new();
            let err = set
                .export(&Selection::default(), View::Raw, &mut out)
                .unwrap_err();
            // Whatever came out before the error is a prefix of the true export.
            assert!(good.starts_with(&out));
            err
        }
        Err(e) => e,
    };
    assert!(err.is_corrupt(), "{err}");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn hostile_names_in_a_set_are_refused() {
    let f = Fixture::new();
    let w = f.repo.writer().unwrap();
    let stream = |name: &[u8]| Node {
        name: name.to_vec(),
        subtree: None,
        content: Vec::new(),
        meta: NodeMeta::empty(NodeKind::Lines).encode(),
    };
    let conv = w
        .write_tree(&Tree::new(vec![stream(b"..")]).unwrap())
        .unwrap();
    let dir = |name: &[u8], id| Node {
        name: name.to_vec(),
        subtree: Some(id),
        content: Vec::new(),
        meta: NodeMeta::dir().encode(),
    };
    let tenant = w
        .write_tree(&Tree::new(vec![dir(b"c", conv)]).unwrap())
        .unwrap();
    let logs = w
        .write_tree(&Tree::new(vec![dir(b"t", tenant)]).unwrap())
        .unwrap();
    let root = w
        .write_tree(&Tree::new(vec![dir(b"logs", logs)]).unwrap())
        .unwrap();
    w.finish().unwrap();
    let snap = f
        .repo
        .save_snapshot(SnapshotRecord {
            time_unix_ms: 1,
            host: "h".into(),
            tags: vec![],
            source_kind: chatvault_msglog::SOURCE_KIND.into(),
            paths: vec!["x".into()],
            parent: None,
            kind: SnapshotKind::Full,
            root,
            summary: Summary::default(),
            cursors: BTreeMap::new(),
            writer_seq: 0,
            prev_writer_snapshot: None,
            origin: None,
        })
        .unwrap();
    let target = f.path("out/inner");
    let err = SetReader::open(&f.repo, snap)
        .unwrap()
        .restore_logs(&Selection::default(), View::Raw, &target)
        .unwrap_err();
    assert!(
        matches!(err, chatvault_msglog::Error::Refused { .. }),
        "{err}"
    );
    // Nothing was written beside the target.
    let outer: Vec<_> = fs::read_dir(f.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outer, ["inner"]);
}

#[test]
fn an_explicit_parent_and_no_parent() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 2);
    let a = f.backup_dir(&data, false);
    pause();
    let opts = BackupOptions {
        name: "server".into(),
        host: Some("chat-1".into()),
        parent: ParentChoice::None,
        ..BackupOptions::default()
    };
    let b = chatvault_msglog::backup_data_dir(&f.repo, &data, opts.clone()).unwrap();
    assert_eq!(b.kind, SnapshotKind::Full);
    assert_eq!(b.logs.streams_new, b.logs.streams);
    // Stored again from scratch, with the same cuts: nothing new but trees.
    assert_eq!(b.logs.bytes_written, a.logs.bytes_written);
    let c = chatvault_msglog::backup_data_dir(
        &f.repo,
        &data,
        BackupOptions {
            parent: ParentChoice::Snapshot(a.snapshot),
            ..opts
        },
    )
    .unwrap();
    assert_eq!(c.parent, Some(a.snapshot));
    assert_eq!(c.logs.streams_unchanged, c.logs.streams);
}

#[test]
fn a_never_ending_stream_keeps_at_most_32_tails_and_writes_each_byte_at_most_twice() {
    let f = Fixture::new();
    let mut store = Store::default();
    let key = ("acme".to_string(), "quiet".to_string());
    let (mut appended, mut written, mut merges) = (0, 0, 0);
    for day in 0..70u64 {
        // A quiet conversation: a few small records a day, and one busy day.
        let n = if day == 40 { 400 } else { 3 };
        let log = store.convs.entry(key.clone()).or_default();
        for i in 0..n {
            let seq = log.last().map_or(1, |r| r.0 + 1);
            let line = format!(
                "{{\"seq\":{seq},\"ts\":{},\"text\":\"day {day} #{i}\"}}",
                day * 86_400_000 + i
            );
            log.push((seq, (day * 86_400_000 + i) as i64, line.into_bytes()));
        }
        let mut s = BackupSession::start(&f.repo, BackupOptions::default()).unwrap();
        let stats = s.backup_messages(&store).unwrap();
        let r = s.commit().unwrap();
        appended += stats.bytes_appended;
        written += stats.bytes_written;
        merges += stats.merges;
        let (_, meta) = streams(&f.repo, r.snapshot).remove("/acme/quiet").unwrap();
        let tails = meta
            .segments
            .iter()
            .filter(|s| s.tier == Tier::Tail)
            .count();
        assert!(tails <= 32, "day {day}: {tails} tails");
        pause();
    }
    assert!(merges >= 2, "{merges} merges");
    assert!(written <= 2 * appended, "{written} written for {appended}");
    // And the stream reads back whole, in order.
    let snap = chatvault_msglog::snapshot_at(&f.repo, None, None, i64::MAX).unwrap();
    let mut out = Vec::new();
    SetReader::open(&f.repo, snap.id)
        .unwrap()
        .export(&Selection::default(), View::Raw, &mut out)
        .unwrap();
    let expected: Vec<u8> = store.convs[&key]
        .iter()
        .flat_map(|r| r.2.iter().copied().chain([b'\n']))
        .collect();
    assert!(out == expected);
}

/// A layout the default generator does not produce: `TENANT/conv/CONVERSATION/MONTH.jsonl`
/// with RFC 3339 timestamps, backed up with a layout, daily, and restored by time.
fn layout_set(
    f: &Fixture,
    dir: &Path,
    layout: &chatvault_msglog::LogLayout,
) -> (BackupReport, chatvault_msglog::LayoutReport) {
    let mut s = BackupSession::start(
        &f.repo,
        BackupOptions {
            name: "other".into(),
            host: Some("chat-1".into()),
            ..BackupOptions::default()
        },
    )
    .unwrap();
    let lr = s.backup_logs_layout(dir, layout).unwrap();
    s.backup_files(dir, &lr.exclude_patterns()).unwrap();
    (s.commit().unwrap(), lr)
}

fn conv_folders(ts: chatvault_workload::TsStyle) -> ServerOptions {
    ServerOptions {
        layout: chatvault_workload::DiskLayout::ConvFolders,
        ts_style: ts,
        ..ServerOptions::tiny()
    }
}

#[test]
fn another_layout_with_rfc3339_timestamps_is_backed_up_as_message_logs() {
    use chatvault_msglog::{LayoutOptions, LogLayout, RecordFields, TsFormat};
    let f = Fixture::new();
    let src = f.path("other");
    chatvault_workload::generate(&src, conv_folders(chatvault_workload::TsStyle::Rfc3339), 3)
        .unwrap();
    let layout = LogLayout::new(&LayoutOptions {
        patterns: vec![
            "{tenant}/conv/{conversation}/{month}.jsonl".into(),
            "logs/{tenant}/{conversation}/*.jsonl".into(),
        ],
        fields: RecordFields {
            ts_format: TsFormat::Rfc3339,
            ..RecordFields::default()
        },
        default_tenant: None,
    })
    .unwrap();
    let (r1, lr) = layout_set(&f, &src, &layout);
    let logs_on_disk = files(&src)
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .count() as u64;
    assert_eq!(lr.patterns[0].streams, logs_on_disk);
    assert_eq!(
        lr.patterns[1].streams, 0,
        "the second pattern matches nothing here"
    );
    assert!(lr.warnings.is_empty(), "{:?}", lr.warnings);
    assert_eq!(r1.logs.streams, logs_on_disk);
    // The files part holds the media and the state file, not the logs.
    let fs_files = r1.files.unwrap();
    assert_eq!(fs_files.files_new, files(&src).len() as u64 - logs_on_disk);

    // Daily incrementals append only.
    advance(&src, 1);
    pause();
    let (r2, lr2) = layout_set(&f, &src, &layout);
    assert!(lr2.warnings.is_empty());
    assert_eq!(r2.kind, SnapshotKind::Incremental);
    assert_eq!(r2.logs.streams_rewritten, 0);
    assert!(r2.logs.streams_appended > 0 && r2.logs.streams_unchanged > 0);

    // Streams carry their tenant and conversation; a time range reads only what overlaps.
    let set = SetReader::open(&f.repo, r2.snapshot).unwrap();
    let all = set.streams(&Selection::default()).unwrap();
    let busiest = all.iter().max_by_key(|s| s.bytes).unwrap();
    let parts: Vec<&str> = busiest.path.split('/').collect();
    assert_eq!(parts[1], "conv", "{}", busiest.path);
    let (tenant, conv) = (parts[0].to_owned(), parts[2].to_owned());
    let r = busiest.ranges.unwrap();
    let sel = Selection {
        tenant: Some(tenant.clone()),
        conversation: Some(conv.clone()),
        time: Some((r.ts_max - 86_400_000, r.ts_max)),
        ..Selection::default()
    };
    let mut out = Vec::new();
    let stats = set.export(&sel, View::Raw, &mut out).unwrap();
    assert!(stats.records > 0);
    assert!(stats.segments_read < stats.segments_total, "{stats:?}");
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let ts = v["ts"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap();
        assert!(ts.as_millisecond() >= r.ts_max - 86_400_000, "{}", v["ts"]);
        assert_eq!(v["conv"], conv.as_str());
    }

    // A whole-set restore gives the data directory back byte for byte.
    let target = f.path("restored");
    let rr = chatvault_msglog::restore(&f.repo, r2.snapshot, &target).unwrap();
    assert!(rr.problems.is_empty(), "{:?}", rr.problems);
    assert_same_files(&files(&src), &files(&target));
}

#[test]
fn a_wrong_layout_is_visible_and_strict_fields_warn() {
    use chatvault_msglog::{LayoutOptions, LogLayout, RecordFields, TsFormat};
    let f = Fixture::new();
    let src = f.path("other");
    chatvault_workload::generate(
        &src,
        conv_folders(chatvault_workload::TsStyle::DecimalSeconds),
        1,
    )
    .unwrap();
    // Our default layout finds nothing in this directory: zero streams, all files kept.
    let default = LogLayout::new(&LayoutOptions::default()).unwrap();
    let (r, lr) = layout_set(&f, &src, &default);
    assert_eq!(lr.patterns[0].streams, 0);
    assert_eq!(r.logs.streams, 0);
    assert_eq!(r.files.unwrap().files_new, files(&src).len() as u64);

    // The right pattern with the wrong timestamp format: stored, with a warning per stream.
    let wrong = LogLayout::new(&LayoutOptions {
        patterns: vec!["{tenant}/conv/{conversation}/*.jsonl".into()],
        fields: RecordFields {
            ts_format: TsFormat::Rfc3339,
            ..RecordFields::default()
        },
        default_tenant: None,
    })
    .unwrap();
    pause();
    let (r, lr) = layout_set(&f, &src, &wrong);
    assert_eq!(lr.warnings.len() as u64, r.logs.streams);
    assert!(
        lr.warnings[0]
            .message
            .contains("timestamp pointer /ts (rfc3339)"),
        "{:?}",
        lr.warnings[0]
    );
    assert_eq!(lr.warnings[0].without_ts, lr.warnings[0].checked);
    assert_eq!(lr.warnings[0].without_seq, 0);

    // Decimal seconds read right: no warning, and time ranges in ms.
    let right = LogLayout::new(&LayoutOptions {
        patterns: vec!["{tenant}/conv/{conversation}/*.jsonl".into()],
        fields: RecordFields {
            ts_format: TsFormat::DecimalSeconds,
            ..RecordFields::default()
        },
        default_tenant: None,
    })
    .unwrap();
    pause();
    let (r, lr) = layout_set(&f, &src, &right);
    assert!(lr.warnings.is_empty(), "{:?}", lr.warnings);
    // Regression: the parent's streams were stored under other record fields (no
    // ranges); reusing them unread would leave this set without time ranges.
    assert_eq!(r.logs.streams_new, r.logs.streams, "stored anew");
    let set = SetReader::open(&f.repo, r.snapshot).unwrap();
    let day = Server::new(conv_folders(chatvault_workload::TsStyle::DecimalSeconds)).next_day();
    let first = day.records().next().unwrap();
    let found = set
        .streams(&Selection {
            tenant: Some(first.tenant.to_string()),
            conversation: Some(first.conversation.to_string()),
            ..Selection::default()
        })
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].ranges.unwrap().ts_min, first.ts_ms as i64);
}

#[test]
fn conversations_named_by_the_records_and_backwards_time() {
    use chatvault_msglog::{LayoutOptions, LogLayout, RecordFields};
    let f = Fixture::new();
    let src = f.path("export");
    fs::create_dir_all(src.join("export")).unwrap();
    fs::write(
        src.join("export/a.jsonl"),
        "{\"seq\":1,\"ts\":10,\"channel\":\"general\"}\n{\"seq\":2,\"ts\":5,\"channel\":\"general\"}\n{\"seq\":3,\"ts\":20,\"channel\":\"random\"}\n",
    )
    .unwrap();
    fs::write(src.join("export/notes.txt"), "not a log").unwrap();
    let layout = LogLayout::new(&LayoutOptions {
        patterns: vec!["export/*.jsonl".into()],
        fields: RecordFields {
            conversation: Some("/channel".into()),
            ..RecordFields::default()
        },
        default_tenant: Some("acme".into()),
    })
    .unwrap();
    let (r, lr) = layout_set(&f, &src, &layout);
    assert_eq!(r.logs.streams, 1);
    assert_eq!(lr.warnings.len(), 1);
    let w = &lr.warnings[0];
    assert_eq!((w.ts_backwards, w.other_conversation, w.records), (1, 1, 3));
    let set = SetReader::open(&f.repo, r.snapshot).unwrap();
    let sel = Selection {
        tenant: Some("acme".into()),
        conversation: Some("general".into()),
        ..Selection::default()
    };
    let s = set.streams(&sel).unwrap();
    assert_eq!(s.len(), 1, "the stream is the first record's conversation");
    assert_eq!(s[0].path, "a.jsonl");
}

/// An edit in place (a redaction) is handled: the log is stored again from the edit. It
/// used to be counted as an entry that "could not be read", so the snapshot recorded an
/// error and the command line exited 3 (partial) on every day with an edit.
#[test]
fn a_log_edited_in_place_is_a_notice_not_a_problem() {
    let f = Fixture::new();
    let data = f.path("server");
    generate(&data, 2);
    f.backup_dir(&data, false);
    let log = files(&data)
        .into_keys()
        .find(|p| p.starts_with("logs"))
        .unwrap();
    let path = data.join(&log);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 1;
    fs::write(&path, &bytes).unwrap();
    pause();
    let r = f.backup_dir(&data, false);
    assert_eq!(r.logs.streams_rewritten, 1);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.notices.len(), 1, "{:?}", r.notices);
    assert!(r.notices[0].message.contains("edited in place"));
    let snap = f.repo.load_snapshot(r.snapshot).unwrap();
    assert_eq!(snap.record.summary.errors, 0);
}

/// Packs of this repository, by path.
fn pack_files(f: &Fixture) -> Vec<PathBuf> {
    walk_files(&f.store.path().join("repo/data"))
}

/// A pack lost after the first set (its segments, media and trees): before, a stream
/// whose stamp had not changed was reused, a grown one kept its stored segments, and a
/// full run kept every segment whose id matched the source, without asking whether the
/// blob was still stored: nothing was ever stored again.
#[test]
fn a_lost_pack_is_stored_again_by_the_next_incremental_or_full_run() {
    for full in [false, true] {
        let f = Fixture::new();
        let data = f.path("server");
        generate(&data, 3);
        f.backup_dir(&data, false);
        let first_packs = pack_files(&f);
        advance(&data, 1);
        pause();
        f.backup_dir(&data, false);
        for p in &first_packs {
            fs::remove_file(p).unwrap();
        }
        pause();
        let healed = f.backup_dir(&data, full);
        assert!(healed.problems.is_empty(), "{:?}", healed.problems);
        assert!(
            healed.logs.segments_restored > 0,
            "full={full}: {:?}",
            healed.logs
        );
        let files_part = healed.files.unwrap();
        assert!(files_part.files_reread + files_part.files_new + files_part.files_changed > 0);
        let target = f.path("restored");
        let fresh = f.open_with(&key(), "cache-fresh");
        chatvault_msglog::restore(&fresh, healed.snapshot, &target).unwrap();
        assert_same_files(&files(&data), &files(&target));
        // Healed: the next run finds everything and stores no segment again.
        pause();
        let next = f.backup_dir(&data, false);
        assert_eq!(next.logs.segments_restored, 0);
        assert_eq!(
            next.logs.streams_unchanged, next.logs.streams,
            "{:?}",
            next.logs
        );
    }
}

/// The same for an embedding server's conversations: a conversation whose last seq has
/// not moved is reused only while its segments are stored.
#[test]
fn an_embedding_servers_lost_segments_are_stored_again() {
    let f = Fixture::new();
    let mut server = Server::new(ServerOptions::tiny());
    let mut store = Store::default();
    let opts = || BackupOptions {
        name: "node-1".into(),
        host: Some("chat-1".into()),
        ..BackupOptions::default()
    };
    store.add_day(&mut server);
    let mut s = BackupSession::start(&f.repo, opts()).unwrap();
    s.backup_messages(&store).unwrap();
    s.commit().unwrap();
    let first_packs = pack_files(&f);
    pause();
    store.add_day(&mut server);
    let mut s = BackupSession::start(&f.repo, opts()).unwrap();
    s.backup_messages(&store).unwrap();
    s.commit().unwrap();
    for p in &first_packs {
        fs::remove_file(p).unwrap();
    }
    pause();
    let mut s = BackupSession::start(&f.repo, opts()).unwrap();
    s.backup_messages(&store).unwrap();
    let healed = s.commit().unwrap();
    assert!(healed.logs.segments_restored > 0, "{:?}", healed.logs);
    let fresh = f.open_with(&key(), "cache-fresh");
    let set = SetReader::open(&fresh, healed.snapshot).unwrap();
    for ((tenant, conv), records) in &store.convs {
        let sel = Selection {
            tenant: Some(tenant.clone()),
            conversation: Some(conv.clone()),
            ..Selection::default()
        };
        let mut out = Vec::new();
        set.export(&sel, View::Raw, &mut out).unwrap();
        let expected: Vec<u8> = records
            .iter()
            .flat_map(|r| r.2.iter().copied().chain([b'\n']))
            .collect();
        assert!(out == expected, "{tenant}/{conv}");
    }
}
