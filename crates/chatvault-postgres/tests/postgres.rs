//! Against a real PostgreSQL server (started by the test itself, `test_server.rs`): a
//! Mattermost-shaped `posts` table filled day by day by the workload generator, with
//! daily incremental sets, edits and soft deletions between them; every set compared with
//! the table's state at its time, restored whole and as one channel's week into tables;
//! Synapse's events with a redaction; a table with timestamp columns on the database's
//! own clock.

use std::collections::BTreeMap;

use chatvault_core::{InitOptions, KdfParams, KeySource, MemoryBackend, Repository, SnapshotId};
use chatvault_msglog::{BackupOptions, BackupSession, Selection, SetReader, View};
use chatvault_postgres::test_server::TestServer;
use chatvault_postgres::{
    Clock, Mapping, PgConnect, PgSource, PgSourceOptions, Preset, Relation, restore_to_table,
};
use chatvault_workload::mattermost::{POSTS_DDL, PostChange};
use chatvault_workload::{Server, ServerOptions};
use postgres::{Client, NoTls};
use serde_json::Value;

fn repo(dir: &std::path::Path) -> Repository {
    let init = InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(dir.join("cache")),
        ..InitOptions::default()
    };
    Repository::init(
        Box::new(MemoryBackend::new()),
        &KeySource::passphrase("pg test"),
        init,
    )
    .unwrap()
}

fn apply(c: &mut Client, changes: &[PostChange]) {
    let mut tx = c.transaction().unwrap();
    let insert = tx
        .prepare(
            "INSERT INTO posts (id, createat, updateat, deleteat, userid, channelid, rootid, \
             originalid, message, type, props, hashtags, filenames, fileids, hasreactions, \
             editat, ispinned) VALUES ($1, $2, $2, 0, $3, $4, '', '', $5, '', '{}', '', '[]', \
             '[]', false, 0, false)",
        )
        .unwrap();
    let edit = tx
        .prepare("UPDATE posts SET message = $2, editat = $3, updateat = $3 WHERE id = $1")
        .unwrap();
    let delete = tx
        .prepare("UPDATE posts SET deleteat = $2, updateat = $2 WHERE id = $1")
        .unwrap();
    for ch in changes {
        match ch {
            PostChange::Create(p) => {
                tx.execute(
                    &insert,
                    &[&p.id, &p.create_at, &p.user_id, &p.channel_id, &p.message],
                )
                .unwrap();
            }
            PostChange::Edit { id, message, at } => {
                tx.execute(&edit, &[id, message, at]).unwrap();
            }
            PostChange::Delete { id, at } => {
                tx.execute(&delete, &[id, at]).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

/// Every row of a table by id, as `row_to_json` gives it.
fn state(c: &mut Client, table: &str) -> BTreeMap<String, Value> {
    c.query(
        &format!("SELECT id, row_to_json(t)::text FROM {table} t"),
        &[],
    )
    .unwrap()
    .into_iter()
    .map(|r| {
        let json: String = r.get(1);
        (r.get(0), serde_json::from_str(&json).unwrap())
    })
    .collect()
}

fn backup(repo: &Repository, url: &str, opts: PgSourceOptions) -> (SnapshotId, u64) {
    let db = PgConnect::new(url, None).unwrap();
    let source = PgSource::open(&db, opts).unwrap();
    let mut set = BackupSession::start(
        repo,
        BackupOptions {
            name: "mattermost".into(),
            ..BackupOptions::default()
        },
    )
    .unwrap();
    let stats = set.backup_changes(&source).unwrap();
    source.finish().unwrap();
    (set.commit().unwrap().snapshot, stats.bytes_appended)
}

/// The stored cursor of stream `tenant/conversation` of a set (core API only).
fn cursor_of(repo: &Repository, snap: SnapshotId, tenant: &str, conv: &str) -> Vec<u8> {
    let root = repo
        .read_tree(repo.load_snapshot(snap).unwrap().record.root)
        .unwrap();
    let logs = repo
        .read_tree(root.get(b"logs").unwrap().subtree.unwrap())
        .unwrap();
    let t = repo
        .read_tree(logs.get(tenant.as_bytes()).unwrap().subtree.unwrap())
        .unwrap();
    let node = t.get(conv.as_bytes()).unwrap();
    chatvault_msglog::NodeMeta::decode(&node.meta, conv)
        .unwrap()
        .cursor
        .unwrap()
}

fn mattermost_opts() -> PgSourceOptions {
    PgSourceOptions {
        clock: Clock::Table,
        ..PgSourceOptions::new(Preset::Mattermost.mapping())
    }
}

/// Rows by key from a set's records, in a view; `row` of each record.
fn rows_of(set: &SetReader<'_>, sel: &Selection, view: View) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    set.for_each_record(sel, view, &mut |_, _, r| {
        let v: Value = serde_json::from_slice(&r.data).unwrap();
        let key = v["key"].as_str().unwrap().to_owned();
        assert!(out.insert(key, v["row"].clone()).is_none(), "a key twice");
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn a_mattermost_month_backs_up_daily_and_restores_each_days_state() {
    let pg = TestServer::start().unwrap();
    let url = pg.create_database("mattermost").unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute(POSTS_DDL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let mut server = Server::new(ServerOptions::tiny());
    let mut sets = Vec::new();
    let mut day_end = Vec::new();
    for _ in 0..30 {
        let day = server.next_day();
        let changes = day.post_changes();
        apply(&mut c, &changes);
        let (snap, appended) = backup(&repo, &url, mattermost_opts());
        assert!(appended > 0, "every day adds records");
        let end = c
            .query_one("SELECT max(updateat) FROM posts", &[])
            .unwrap()
            .get::<_, i64>(0);
        sets.push((snap, state(&mut c, "posts")));
        day_end.push(end);
    }
    // A run with nothing new stores nothing: the rows re-read within the settle window
    // are recognised.
    let (_, appended) = backup(&repo, &url, mattermost_opts());
    assert_eq!(appended, 0, "an unchanged table appends nothing");

    // Each set holds exactly the table as it was: every row, soft-deleted ones included,
    // in its state at the backup time.
    for (i, (snap, st)) in sets.iter().enumerate() {
        let set = SetReader::open(&repo, *snap).unwrap();
        let latest = rows_of(&set, &Selection::default(), View::Latest);
        assert_eq!(latest.len(), st.len(), "day {i}: rows");
        assert!(latest == *st, "day {i}: the set differs from the table");
        let applied = rows_of(&set, &Selection::default(), View::Applied);
        let live: BTreeMap<_, _> = st
            .iter()
            .filter(|(_, r)| r["deleteat"] == 0)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(applied == live, "day {i}: applied view != live rows");
    }

    // The raw history: one `msg` per post, edits and tombstones after it.
    let (last, last_state) = sets.last().unwrap();
    let set = SetReader::open(&repo, *last).unwrap();
    let mut kinds: BTreeMap<String, Vec<String>> = BTreeMap::new();
    set.for_each_record(&Selection::default(), View::Raw, &mut |_, _, r| {
        let v: Value = serde_json::from_slice(&r.data).unwrap();
        kinds
            .entry(v["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(v["kind"].as_str().unwrap().to_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(kinds.len(), last_state.len());
    let (mut edits, mut deletes) = (0, 0);
    for (key, k) in &kinds {
        assert_eq!(k[0], "msg", "{key}: {k:?}");
        assert_eq!(k.iter().filter(|k| *k == "msg").count(), 1, "{key}: {k:?}");
        edits += k.iter().filter(|k| *k == "edit").count();
        deletes += k.iter().filter(|k| *k == "delete").count();
    }
    assert!(
        edits > 20 && deletes > 5,
        "edits {edits}, deletes {deletes}"
    );

    // The whole table at every backup time, into empty tables of the running database.
    for (i, (snap, st)) in sets.iter().enumerate() {
        let table = format!("restored_{i}");
        c.batch_execute(&format!("CREATE TABLE {table} (LIKE posts)"))
            .unwrap();
        let set = SetReader::open(&repo, *snap).unwrap();
        let db = PgConnect::new(&url, None).unwrap();
        let r = restore_to_table(&set, &Selection::default(), View::Latest, &db, &table).unwrap();
        assert!(!r.created);
        assert_eq!(r.rows as usize, st.len());
        assert!(state(&mut c, &table) == *st, "table restore of day {i}");
        if i == 0 {
            // A table that is not empty is refused, and left as it was.
            let e = restore_to_table(&set, &Selection::default(), View::Latest, &db, &table)
                .unwrap_err();
            assert!(e.to_string().contains("not empty"), "{e}");
            assert_eq!(state(&mut c, &table).len(), st.len());
        }
    }

    // One channel's last week, from the last set: the posts created in it, as they were.
    let mut per_channel: BTreeMap<String, usize> = BTreeMap::new();
    for r in last_state.values() {
        *per_channel
            .entry(r["channelid"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let channel = per_channel
        .iter()
        .max_by_key(|(_, n)| **n)
        .unwrap()
        .0
        .clone();
    let hi = *day_end.last().unwrap();
    let lo = hi - 7 * 86_400_000;
    let sel = Selection {
        tenant: Some("mattermost".into()),
        conversation: Some(channel.clone()),
        time: Some((lo, hi)),
        ..Selection::default()
    };
    c.batch_execute("CREATE TABLE week (LIKE posts)").unwrap();
    let db = PgConnect::new(&url, None).unwrap();
    let r = restore_to_table(&set, &sel, View::Latest, &db, "week").unwrap();
    let expected: BTreeMap<String, Value> = last_state
        .iter()
        .filter(|(_, v)| {
            v["channelid"] == channel.as_str()
                && (lo..=hi).contains(&v["createat"].as_i64().unwrap())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(r.rows as usize, expected.len());
    assert!(state(&mut c, "week") == expected, "the channel's week");
    let total_segments: u64 = set.streams(&sel).unwrap().iter().map(|s| s.segments).sum();
    assert!(
        r.segments_read < total_segments,
        "a week reads part of the stream ({} of {total_segments} segments)",
        r.segments_read
    );

    // A missing table is created with one row per record: the raw history.
    let r = restore_to_table(&set, &sel, View::Raw, &db, "week_history").unwrap();
    assert!(r.created);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM week_history WHERE conversation = $1",
            &[&channel],
        )
        .unwrap()
        .get(0);
    assert_eq!(n as u64, r.rows);
}

#[test]
fn two_edits_between_runs_are_one_edit_record() {
    let pg = TestServer::start().unwrap();
    let url = pg.create_database("mattermost").unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute(POSTS_DDL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let day = Server::new(ServerOptions::tiny()).next_day();
    let changes: Vec<PostChange> = day
        .post_changes()
        .into_iter()
        .filter(|c| matches!(c, PostChange::Create(_)))
        .take(5)
        .collect();
    apply(&mut c, &changes);
    let PostChange::Create(first) = &changes[0] else {
        unreachable!()
    };
    let t0 = changes
        .iter()
        .map(|c| match c {
            PostChange::Create(p) => p.create_at,
            _ => 0,
        })
        .max()
        .unwrap();
    let opts = || PgSourceOptions {
        settle_ms: 1000,
        ..mattermost_opts()
    };
    backup(&repo, &url, opts());
    for (i, text) in ["first edit", "second edit"].iter().enumerate() {
        apply(
            &mut c,
            &[PostChange::Edit {
                id: first.id.clone(),
                message: (*text).into(),
                at: t0 + 60_000 * (i as i64 + 1),
            }],
        );
    }
    let (snap, _) = backup(&repo, &url, opts());
    let set = SetReader::open(&repo, snap).unwrap();
    let mut history = Vec::new();
    set.for_each_record(&Selection::default(), View::Raw, &mut |_, _, r| {
        let v: Value = serde_json::from_slice(&r.data).unwrap();
        if v["key"] == first.id.as_str() {
            history.push((
                v["kind"].as_str().unwrap().to_owned(),
                v["row"]["message"].clone(),
            ));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        history,
        [
            ("msg".to_owned(), Value::String(first.message.clone())),
            ("edit".to_owned(), Value::String("second edit".into())),
        ],
        "the first edit is not seen: only the state at each run is"
    );
}

#[test]
fn synapse_events_with_a_redaction() {
    let pg = TestServer::start().unwrap();
    let url = pg.create_database("synapse").unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    // The columns of Synapse's schema that the preset reads.
    c.batch_execute(
        "CREATE TABLE events (topological_ordering bigint NOT NULL, event_id text NOT NULL, \
           type text NOT NULL, room_id text NOT NULL, content text, unrecognized_keys text, \
           processed boolean NOT NULL, outlier boolean NOT NULL, depth bigint DEFAULT 0 NOT NULL, \
           origin_server_ts bigint, received_ts bigint, sender text, contains_url boolean, \
           instance_name text, stream_ordering bigint, state_key text, rejection_reason text);
         CREATE TABLE event_json (event_id text NOT NULL, room_id text NOT NULL, \
           internal_metadata text NOT NULL, json text NOT NULL, format_version integer);
         CREATE TABLE redactions (event_id text NOT NULL, redacts text NOT NULL, \
           have_censored boolean DEFAULT false NOT NULL, received_ts bigint);",
    )
    .unwrap();
    let event =
        |c: &mut Client, so: i64, id: &str, room: &str, ty: &str, ts: i64, outlier: bool| {
            c.execute(
                "INSERT INTO events (topological_ordering, event_id, type, room_id, processed, \
             outlier, origin_server_ts, received_ts, sender, stream_ordering) \
             VALUES ($1, $2, $3, $4, true, $5, $6, $6, '@a:example.org', $1)",
                &[&so, &id, &ty, &room, &outlier, &ts],
            )
            .unwrap();
            c.execute(
                "INSERT INTO event_json VALUES ($1, $2, '{}', $3, 3)",
                &[
                    &id,
                    &room,
                    &format!("{{\"type\":\"{ty}\",\"content\":{{\"body\":\"hi {id}\"}}}}"),
                ],
            )
            .unwrap();
        };
    let t = 1_767_600_000_000_i64;
    event(
        &mut c,
        1,
        "$e1",
        "!a:example.org",
        "m.room.message",
        t,
        false,
    );
    event(
        &mut c,
        2,
        "$e2",
        "!a:example.org",
        "m.room.message",
        t + 1000,
        false,
    );
    event(
        &mut c,
        3,
        "$e3",
        "!b:example.org",
        "m.room.message",
        t + 2000,
        false,
    );
    event(
        &mut c,
        4,
        "$out",
        "!b:example.org",
        "m.room.member",
        t + 2500,
        true,
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let opts = || PgSourceOptions {
        clock: Clock::Table,
        settle_ms: 0,
        ..PgSourceOptions::new(Preset::Synapse.mapping())
    };
    backup(&repo, &url, opts());
    // $e1 is redacted an hour later by $r1.
    event(
        &mut c,
        5,
        "$r1",
        "!a:example.org",
        "m.room.redaction",
        t + 3_600_000,
        false,
    );
    c.execute(
        "INSERT INTO redactions VALUES ('$r1', '$e1', false, $1)",
        &[&(t + 3_600_000)],
    )
    .unwrap();
    let (snap, _) = backup(&repo, &url, opts());
    let set = SetReader::open(&repo, snap).unwrap();
    let streams: Vec<String> = set
        .streams(&Selection::default())
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect();
    assert_eq!(
        streams,
        ["synapse/!a:example.org", "synapse/!b:example.org"]
    );
    let mut raw = Vec::new();
    set.for_each_record(&Selection::default(), View::Raw, &mut |_, conv, r| {
        let v: Value = serde_json::from_slice(&r.data).unwrap();
        raw.push(format!(
            "{conv} {} {}",
            v["kind"].as_str().unwrap(),
            v["key"].as_str().unwrap()
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        raw,
        [
            "!a:example.org msg $e1",
            "!a:example.org msg $e2",
            "!a:example.org delete $e1",
            "!a:example.org msg $r1",
            "!b:example.org msg $e3",
        ],
        "outliers are not in a room's timeline"
    );
    let applied = rows_of(&set, &Selection::default(), View::Applied);
    assert!(!applied.contains_key("$e1") && applied.contains_key("$e2"));
}

#[test]
fn timestamp_columns_on_the_databases_clock() {
    let pg = TestServer::start().unwrap();
    let url = pg.create_database("chat").unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute(
        "CREATE TABLE msgs (id text PRIMARY KEY, team text, room text, body text, \
           created timestamptz NOT NULL DEFAULT clock_timestamp(), updated timestamptz, \
           gone boolean NOT NULL DEFAULT false);
         INSERT INTO msgs (id, team, room, body) VALUES ('m1', 'acme', 'general', 'hello'), \
           ('m2', 'acme', 'general', 'hi'), ('m3', 'globex', 'ops', 'up?');",
    )
    .unwrap();
    let mapping = Mapping {
        relation: Relation::Table("public.msgs".into()),
        key: "id".into(),
        conversation: "room".into(),
        tenant: Some("team".into()),
        created: "created".into(),
        order: None,
        updated: Some("updated".into()),
        deleted: Some("gone".into()),
    };
    let opts = || PgSourceOptions {
        settle_ms: 0,
        ..PgSourceOptions::new(mapping.clone())
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    backup(&repo, &url, opts());
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.batch_execute(
        "INSERT INTO msgs (id, team, room, body) VALUES ('m4', 'acme', 'general', 'new')",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    c.batch_execute(
        "UPDATE msgs SET body = 'hello, edited', updated = clock_timestamp() WHERE id = 'm1';
         UPDATE msgs SET gone = true, updated = clock_timestamp() WHERE id = 'm3';",
    )
    .unwrap();
    let (snap, _) = backup(&repo, &url, opts());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (again, appended) = backup(&repo, &url, opts());
    assert_eq!(appended, 0);
    // Regression: a conversation with no change is not queried, yet its cursor moves on
    // (an idle conversation's old watermark would keep every later listing wide).
    assert_ne!(
        cursor_of(&repo, snap, "globex", "ops"),
        cursor_of(&repo, again, "globex", "ops"),
        "the idle conversation's cursor advanced"
    );
    for s in [snap, again] {
        let set = SetReader::open(&repo, s).unwrap();
        let mut raw = Vec::new();
        set.for_each_record(&Selection::default(), View::Raw, &mut |t, conv, r| {
            let v: Value = serde_json::from_slice(&r.data).unwrap();
            raw.push(format!(
                "{t}/{conv} {} {}",
                v["kind"].as_str().unwrap(),
                v["key"].as_str().unwrap()
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            raw,
            [
                "acme/general msg m1",
                "acme/general msg m2",
                "acme/general msg m4",
                "acme/general edit m1",
                "globex/ops msg m3",
                "globex/ops delete m3",
            ]
        );
        let applied = rows_of(&set, &Selection::default(), View::Applied);
        assert_eq!(applied["m1"]["body"], "hello, edited");
        assert!(!applied.contains_key("m3"));
    }
    // A stream taken with another mapping is refused, not continued.
    let mut other = mapping.clone();
    other.order = Some("updated".into());
    let db = PgConnect::new(&url, None).unwrap();
    let source = PgSource::open(&db, PgSourceOptions::new(other)).unwrap();
    let mut set = BackupSession::start(
        &repo,
        BackupOptions {
            name: "mattermost".into(),
            ..BackupOptions::default()
        },
    )
    .unwrap();
    let e = set.backup_changes(&source).unwrap_err();
    assert!(format!("{e:?}").contains("another mapping"), "{e:?}");
}

#[test]
fn a_mapping_that_does_not_fit_the_table_is_a_clear_error() {
    let pg = TestServer::start().unwrap();
    let url = pg.create_database("chat").unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute("CREATE TABLE t (id text, room text, created text)")
        .unwrap();
    let db = PgConnect::new(&url, None).unwrap();
    let mut m = Mapping {
        relation: Relation::Table("t".into()),
        key: "id".into(),
        conversation: "room".into(),
        tenant: None,
        created: "created".into(),
        order: None,
        updated: None,
        deleted: None,
    };
    let e = PgSource::open(&db, PgSourceOptions::new(m.clone())).unwrap_err();
    assert!(e.to_string().contains("a time must be"), "{e}");
    m.created = "nope".into();
    let e = PgSource::open(&db, PgSourceOptions::new(m)).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}
