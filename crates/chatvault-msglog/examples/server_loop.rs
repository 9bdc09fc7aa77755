//! A chat server that backs itself up from inside its own process: a daily incremental
//! backup set and a weekly full one, written with a `backup` key that can never read
//! history back; then an operator with the admin key restores a conversation.
//!
//! ```text
//! cargo run --release -p chatvault-msglog --example server_loop [DAYS]
//! ```
//!
//! The "server" here keeps its conversations in memory (from the workload generator) and
//! serves them through [`MessageSource`]; a real one would read its database. Backups run
//! on their own thread, fed by the server's main loop through a channel, the way an async
//! server hands blocking work to `tokio::task::spawn_blocking`:
//!
//! ```ignore
//! let repo = repo.clone(); // Arc<Repository>
//! let store = store.clone(); // Arc<impl MessageSource + Send + Sync>
//! tokio::task::spawn_blocking(move || {
//!     let mut session = BackupSession::start(&repo, opts)?;
//!     session.backup_messages(&*store)?;
//!     session.commit()
//! })
//! .await??;
//! ```
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};

use chatvault_core::{
    AddSlotOptions, InitOptions, KdfParams, KeySource, LocalBackend, OpenOptions, Repository, Role,
    SnapshotId,
};
use chatvault_msglog::{
    BackupOptions, BackupSession, Conversation, MessageRecord, MessageSource, Selection, SetReader,
    View,
};
use chatvault_workload::{Server, ServerOptions};

/// A conversation's records: seq, timestamp, JSON bytes.
type Records = Vec<(u64, i64, Vec<u8>)>;

/// The server's message store: (tenant, conversation) → records.
#[derive(Default)]
struct Store {
    conversations: RwLock<BTreeMap<(String, String), Records>>,
}

impl MessageSource for Store {
    fn conversations(&self) -> std::io::Result<Vec<Conversation>> {
        let convs = self.conversations.read().expect("store lock");
        Ok(convs
            .iter()
            .map(|((tenant, id), records)| Conversation {
                tenant: tenant.clone(),
                id: id.clone(),
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
        // Copy out what is asked for, so the lock is not held while the backup works.
        let records: Vec<(u64, i64, Vec<u8>)> = {
            let convs = self.conversations.read().expect("store lock");
            let Some(all) = convs.get(&(c.tenant.clone(), c.id.clone())) else {
                return Ok(());
            };
            let start = all.partition_point(|r| r.0 < from_seq);
            all[start..]
                .iter()
                .take_while(|r| r.0 <= c.last_seq)
                .cloned()
                .collect()
        };
        for (seq, ts_ms, data) in &records {
            visit(MessageRecord {
                seq: *seq,
                ts_ms: *ts_ms,
                data,
            })?;
        }
        Ok(())
    }
}

/// The nightly job, and where to say it is done.
struct Job {
    day: u32,
    full: bool,
    done: mpsc::Sender<Result<SnapshotId, chatvault_msglog::Error>>,
}

/// One backup set: every conversation since its cursor, and a dump of the user table.
fn nightly(
    repo: &Repository,
    store: &Store,
    day: u32,
    full: bool,
) -> Result<SnapshotId, chatvault_msglog::Error> {
    let opts = BackupOptions {
        name: "chat-node-1".into(),
        host: Some("chat-node-1".into()),
        full,
        ..BackupOptions::default()
    };
    let mut session = BackupSession::start(repo, opts)?;
    session.backup_messages(store)?;
    let dump = format!("-- schema and user table of day {day}\n");
    let cursor = u64::from(day).to_le_bytes().to_vec();
    session.backup_dump("users.sql", dump.as_bytes(), Some(cursor))?;
    let r = session.commit()?;
    println!(
        "day {day:>2}: {:<11} set {}: {} conversations ({} appended, {} unchanged, {} verified), \
         {} KiB appended, {} KiB written, {} KiB stored, {} ms",
        r.kind.as_str(),
        r.snapshot.short(),
        r.logs.streams,
        r.logs.streams_appended,
        r.logs.streams_unchanged,
        r.logs.streams_verified,
        r.logs.bytes_appended >> 10,
        r.logs.bytes_written >> 10,
        r.bytes_stored >> 10,
        r.duration.as_millis()
    );
    Ok(r.snapshot)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let days: u32 = std::env::args()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .unwrap_or(14);
    let work = tempfile::tempdir()?;
    let repo_dir = work.path().join("repo");

    // The operator creates the repository and a key for the chat node that can only write.
    let admin_key = KeySource::passphrase("operator passphrase, kept offline");
    let node_key = KeySource::passphrase("the chat node's key");
    let mut admin = Repository::init(
        Box::new(LocalBackend::create(&repo_dir)?),
        &admin_key,
        InitOptions {
            kdf: KdfParams::insecure_for_tests(), // a real deployment keeps the default
            cache_dir: Some(work.path().join("admin-cache")),
            ..InitOptions::default()
        },
    )?;
    let mut slot = AddSlotOptions::new(Role::Backup, "chat-node-1");
    slot.kdf = KdfParams::insecure_for_tests();
    admin.add_slot(&node_key, &slot)?;
    drop(admin);

    // The chat node opens the repository with its backup key, once, at start-up.
    let node_opts = OpenOptions {
        cache_dir: Some(work.path().join("node-cache")),
        allow_weak_kdf: true,
        ..OpenOptions::default()
    };
    let repo = Arc::new(Repository::open(
        Box::new(LocalBackend::open(&repo_dir)?),
        &node_key,
        node_opts,
    )?);
    let store = Arc::new(Store::default());

    // The backup worker: blocking work off the server's main loop.
    let (jobs, inbox) = mpsc::channel::<Job>();
    let worker = {
        let (repo, store) = (repo.clone(), store.clone());
        std::thread::spawn(move || {
            for Job { day, full, done } in inbox {
                let _ = done.send(nightly(&repo, &store, day, full));
            }
        })
    };

    // The server's main loop: a day of chat, then the nightly job (full on Sundays).
    let mut server = Server::new(ServerOptions::tiny());
    let mut latest = None;
    for day in 0..days {
        let today = server.next_day();
        {
            let mut convs = store.conversations.write().expect("store lock");
            for r in today.records() {
                convs
                    .entry((r.tenant.to_string(), r.conversation.to_string()))
                    .or_default()
                    .push((r.seq, r.ts_ms as i64, r.line.clone()));
            }
            for records in convs.values_mut() {
                records.sort_by_key(|r| r.0);
            }
        }
        // A real server goes on serving while the job runs; this one waits for it.
        let (done, result) = mpsc::channel();
        jobs.send(Job {
            day,
            full: day % 7 == 6,
            done,
        })?;
        latest = Some(result.recv()??);
    }
    drop(jobs);
    worker.join().expect("backup worker");
    let latest = latest.expect("a backup set");

    // The node cannot read what it wrote.
    assert!(SetReader::open(&repo, latest).is_err());

    // The operator restores one conversation with the admin key and checks it.
    let admin = Repository::open(
        Box::new(LocalBackend::open(&repo_dir)?),
        &admin_key,
        OpenOptions {
            cache_dir: Some(work.path().join("admin-cache")),
            allow_weak_kdf: true,
            ..OpenOptions::default()
        },
    )?;
    let set = SetReader::open(&admin, latest)?;
    let convs = store.conversations.read().expect("store lock");
    let ((tenant, conv), records) = convs
        .iter()
        .max_by_key(|(_, r)| r.len())
        .expect("conversations");
    let mut out = Vec::new();
    let sel = Selection {
        tenant: Some(tenant.clone()),
        conversation: Some(conv.clone()),
        ..Selection::default()
    };
    let stats = set.export(&sel, View::Raw, &mut out)?;
    let expected: Vec<u8> = records
        .iter()
        .flat_map(|r| r.2.iter().copied().chain([b'\n']))
        .collect();
    assert_eq!(out, expected);
    println!(
        "operator: restored {tenant}/{conv}, {} records from {} segments, identical to the server's",
        stats.records, stats.segments_read
    );
    Ok(())
}
