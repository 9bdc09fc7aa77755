//! The remote backend against real S3 servers on 127.0.0.1 (s3s-fs, a 3-node Garage
//! cluster), and every repository operation under injected faults.

use std::time::{Duration, Instant};

use chatvault_backend::test_servers::{S3sFs, free_port};
use chatvault_backend::{
    Backend, Location, OpendalBackend, Retrying, S3Credentials, StoreOptions, connect_remote,
};
use chatvault_core::{CreateGuard, Error};

fn s3s(server: &S3sFs, prefix: &str, options: &[&str]) -> Retrying<OpendalBackend> {
    let location: Location = format!("s3:{}/chat/{prefix}", server.endpoint())
        .parse()
        .unwrap();
    let creds = S3Credentials::new(&server.access_key, &server.secret_key);
    connect_remote(
        &location,
        &StoreOptions::parse(options).unwrap(),
        Some(&creds),
    )
    .unwrap()
}

#[test]
fn s3s_fs_keeps_the_backend_contract_and_enforces_creates() {
    let server = S3sFs::start("chat");
    let b = s3s(&server, "contract", &[]);
    assert_eq!(b.create_guard(), CreateGuard::Enforced);
    assert_eq!(
        b.location(),
        format!("s3:{}/chat/contract", server.endpoint())
    );
    chatvault_core::backend_contract::run(&b);
    // The probe left nothing behind.
    assert!(b.list("probes/").unwrap().is_empty());
}

#[test]
fn listings_page_through_many_objects() {
    let server = S3sFs::start("chat");
    let b = s3s(&server, "pages", &["list_page=4"]);
    for i in 0..23 {
        b.put(&format!("index/{i:02}"), &[i as u8]).unwrap();
    }
    b.put("data/ab/x", b"pack").unwrap();
    let mut names: Vec<_> = b
        .list("index/")
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    names.sort();
    assert_eq!(names.len(), 23);
    assert_eq!(names[22], "index/22");
    assert_eq!(b.list("").unwrap().len(), 24);
    assert_eq!(b.list("index/1").unwrap().len(), 10);
}

#[test]
fn ranged_reads_of_a_large_object() {
    let server = S3sFs::start("chat");
    let b = s3s(&server, "ranges", &[]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    b.put("data/cd/pack", &data).unwrap();
    assert_eq!(
        b.get_range("data/cd/pack", 1_000_000, 7).unwrap(),
        &data[1_000_000..1_000_007]
    );
    let mut buf = vec![0u8; 65_536];
    b.get_range_into("data/cd/pack", 2_900_000, &mut buf)
        .unwrap();
    assert_eq!(buf, &data[2_900_000..2_965_536]);
    assert!(b.get_range("data/cd/pack", 2_999_999, 2).is_err());
    assert!(
        b.get_range("data/cd/none", 0, 2)
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(b.get("data/cd/pack").unwrap(), data);
}

#[test]
fn a_wrong_secret_is_refused_at_once_and_never_shown() {
    let server = S3sFs::start("chat");
    let secret = "LEAK-CANARY-7d1e0f9a";
    let location: Location = format!("s3:{}/chat/denied", server.endpoint())
        .parse()
        .unwrap();
    let creds = S3Credentials::new(&server.access_key, secret);
    let start = Instant::now();
    let b = connect_remote(&location, &StoreOptions::default(), Some(&creds)).unwrap();
    // The probe could not write: nothing is known about creates.
    assert_eq!(b.create_guard(), CreateGuard::Unknown);
    let e = b.get("config").unwrap_err();
    assert!(matches!(e, Error::StorageDenied { .. }), "{e}");
    let put = b.put("keys/aa", b"slot").unwrap_err();
    assert!(matches!(put, Error::StorageDenied { .. }), "{put}");
    // Never retried: far below the retry policy's first delays summed.
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let shown = format!("{e} {e:?} {put} {put:?} {b:?} {creds:?} {location} {location:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(!shown.contains(&server.secret_key), "{shown}");
}

#[test]
fn an_unreachable_store_is_a_typed_unavailable_error_after_bounded_retries() {
    let port = free_port();
    let location: Location = format!("s3:http://127.0.0.1:{port}/chat/x")
        .parse()
        .unwrap();
    let creds = S3Credentials::new("key", "secret");
    let b = connect_remote(
        &location,
        &StoreOptions::parse(&["retries=3"]).unwrap(),
        Some(&creds),
    )
    .unwrap();
    let start = Instant::now();
    match b.stat("config").unwrap_err() {
        Error::StorageUnavailable { attempts, .. } => assert_eq!(attempts, 3),
        e => panic!("{e}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_repository_lives_on_s3s_fs() {
    use chatvault_core::{BlobType, InitOptions, KdfParams, KeySource, OpenOptions, Repository};
    let server = S3sFs::start("chat");
    let cache = tempfile::tempdir().unwrap();
    let key = KeySource::passphrase("correct horse battery staple");
    let init = InitOptions {
        kdf: KdfParams::insecure_for_tests(),
        cache_dir: Some(cache.path().to_owned()),
        ..InitOptions::default()
    };
    let repo = Repository::init(Box::new(s3s(&server, "repo", &[])), &key, init).unwrap();
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let w = repo.writer().unwrap();
    let refs = w.write_stream(&data[..]).unwrap();
    w.finish().unwrap();
    drop(repo);
    let open = OpenOptions {
        cache_dir: Some(tempfile::tempdir().unwrap().keep()),
        allow_weak_kdf: true,
        ..OpenOptions::default()
    };
    let repo = Repository::open(Box::new(s3s(&server, "repo", &[])), &key, open).unwrap();
    let mut back = Vec::new();
    for r in &refs {
        back.extend(repo.read_blob(r.id, BlobType::Data).unwrap());
    }
    assert_eq!(back, data);
    let report = repo
        .check(&chatvault_core::CheckOptions::default())
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

// The blocking façade called from inside an async runtime: directly from a
// `#[tokio::test]` task (a current-thread runtime, where `Handle::block_on` would panic)
// and from `spawn_blocking`, as docs/OPERATIONS.md tells embedding servers to.
#[tokio::test]
async fn the_facade_works_inside_an_async_runtime() {
    let server = S3sFs::start("chat");
    let b = s3s(&server, "async", &[]);
    b.put("index/aa", b"from a task").unwrap();
    let b = std::sync::Arc::new(b);
    let b2 = b.clone();
    let got = tokio::task::spawn_blocking(move || b2.get("index/aa").unwrap())
        .await
        .unwrap();
    assert_eq!(got, b"from a task");
}

/// Every repository operation under injected storage faults: each completes or fails with
/// a typed storage error, the repository passes `check --read-data` afterwards (read
/// without faults), and the operation run again without faults completes.
mod faults {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::Duration;

    use chatvault_backend::{FaultPlan, Faulty, RetryPolicy, Retrying};
    use chatvault_core::{
        Backend, CheckOptions, ChunkerParams, Error, InitOptions, KdfParams, KeySource,
        LockOptions, MemoryBackend, OpenOptions, PruneOptions, Repository,
    };

    fn key() -> KeySource {
        KeySource::passphrase("fault injection")
    }

    fn locks() -> LockOptions {
        LockOptions {
            refresh: Duration::from_millis(20),
            stale_after: Duration::from_millis(100),
            wait: Duration::from_secs(5),
            poll: Duration::from_millis(10),
        }
    }

    fn open(backend: Box<dyn Backend>, cache: &Path) -> chatvault_core::Result<Repository> {
        let opts = OpenOptions {
            cache_dir: Some(cache.to_owned()),
            allow_weak_kdf: true,
            locks: locks(),
            uploads: std::num::NonZeroUsize::new(3),
            ..OpenOptions::default()
        };
        Repository::open(backend, &key(), opts)
    }

    /// The error a command under faults may end with: the storage gave up, or (a lock
    /// left behind by an earlier failed command) a lock wait ran out.
    fn assert_typed(what: &str, e: &(dyn std::error::Error + 'static)) {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(core) = c.downcast_ref::<Error>() {
                assert!(
                    matches!(
                        core,
                        Error::StorageUnavailable { .. } | Error::Locked { .. }
                    ),
                    "{what} failed with an untyped or unexpected error: {core}"
                );
                return;
            }
            if let Some(chatvault_fs::Error::Core(core)) = c.downcast_ref::<chatvault_fs::Error>() {
                assert!(
                    matches!(
                        core,
                        Error::StorageUnavailable { .. } | Error::Locked { .. }
                    ),
                    "{what} failed with an unexpected error: {core}"
                );
                return;
            }
            cause = c.source();
        }
        panic!("{what} failed with an error that names no storage failure: {e}");
    }

    struct World {
        attempts: u32,
        store: MemoryBackend,
        faulty: Arc<Faulty<MemoryBackend>>,
        dir: tempfile::TempDir,
        source: PathBuf,
    }

    impl World {
        /// A repository on a memory store with `plan`'s faults, reached through a retry
        /// layer of `attempts` requests per call.
        fn new(plan: FaultPlan, attempts: u32) -> World {
            let dir = tempfile::tempdir().unwrap();
            let store = MemoryBackend::new();
            let init = InitOptions {
                kdf: KdfParams::insecure_for_tests(),
                cache_dir: Some(dir.path().join("init-cache")),
                chunker: ChunkerParams {
                    min_size: 4096,
                    avg_size: 16384,
                    max_size: 65536,
                },
                pack_size: 1 << 20,
                ..InitOptions::default()
            };
            Repository::init(Box::new(store.clone()), &key(), init).unwrap();
            let source = dir.path().join("src");
            std::fs::create_dir_all(&source).unwrap();
            let faulty = Arc::new(Faulty::new(store.clone(), plan));
            World {
                attempts,
                store,
                faulty,
                dir,
                source,
            }
        }

        fn write_files(&self, day: u32) {
            for i in 0..12u32 {
                let len = 20_000 + (i * 7919 + day * 104_729) as usize % 90_000;
                let bytes: Vec<u8> = (0..len)
                    .map(|j| ((j as u32).wrapping_mul(2_654_435_761) ^ (i + day * 31)) as u8)
                    .collect();
                std::fs::write(self.source.join(format!("f{i}-{}", i % (day + 1))), bytes).unwrap();
            }
        }

        /// The repository through the faults (cache `faulty`) or straight (cache `clean`).
        fn repo(&self, faults: bool) -> chatvault_core::Result<Repository> {
            let policy = RetryPolicy {
                attempts: self.attempts,
                base: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            };
            if faults {
                let b = Retrying::new(self.faulty.clone(), policy);
                open(Box::new(b), &self.dir.path().join("faulty"))
            } else {
                open(Box::new(self.store.clone()), &self.dir.path().join("clean"))
            }
        }

        /// Runs `op` under faults; then checks the repository without faults, and when
        /// the op failed, runs it again without faults.
        fn step(
            &self,
            what: &str,
            op: impl Fn(&Repository) -> Result<(), Box<dyn std::error::Error>>,
        ) -> bool {
            let under_faults = self
                .repo(true)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
                .and_then(|r| op(&r));
            let failed = under_faults.is_err();
            if let Err(e) = &under_faults {
                assert_typed(what, e.as_ref());
            }
            let clean = self.repo(false).unwrap();
            let report = clean
                .check(&CheckOptions {
                    read_data: true,
                    ..CheckOptions::default()
                })
                .unwrap();
            assert!(
                report.problems.is_empty(),
                "after {what}: {:?}",
                report.problems
            );
            if failed {
                // Locks a failed command could not delete are stale by now.
                std::thread::sleep(Duration::from_millis(150));
                clean
                    .unlock(Some(Duration::from_millis(120)), false)
                    .unwrap();
                op(&clean).unwrap_or_else(|e| panic!("{what} again, without faults: {e}"));
            }
            failed
        }
    }

    fn backup(r: &Repository, src: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let opts = chatvault_fs::BackupOptions {
            paths: vec![src.to_owned()],
            host: Some("node-1".into()),
            ..chatvault_fs::BackupOptions::default()
        };
        chatvault_fs::backup(r, &opts)?;
        Ok(())
    }

    fn run_all(plan: FaultPlan) -> usize {
        let w = World::new(plan, 3);
        let mut failures = 0;
        let src = w.source.clone();
        for day in 0..3 {
            w.write_files(day);
            failures += usize::from(w.step("backup", |r| backup(r, &src)));
        }
        let target = w.dir.path().join("restored");
        failures += usize::from(w.step("restore", |r| {
            let _ = std::fs::remove_dir_all(&target);
            let latest = r
                .list_snapshots()?
                .into_iter()
                .max_by_key(|s| s.record.time_unix_ms);
            let latest = latest.ok_or("no snapshot")?;
            let opts = chatvault_fs::RestoreOptions {
                target: target.clone(),
                ..chatvault_fs::RestoreOptions::default()
            };
            let report = chatvault_fs::restore(r, latest.record.root, &opts)?;
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            Ok(())
        }));
        failures += usize::from(w.step("check --read-data", |r| {
            r.check(&CheckOptions {
                read_data: true,
                ..CheckOptions::default()
            })?;
            Ok(())
        }));
        failures += usize::from(w.step("forget", |r| {
            let mut snaps = r.list_snapshots()?;
            snaps.sort_by_key(|s| s.record.time_unix_ms);
            if snaps.len() > 1 {
                r.delete_snapshot(snaps[0].id)?;
            }
            Ok(())
        }));
        failures += usize::from(w.step("prune", |r| {
            r.prune(&PruneOptions {
                wait: Duration::from_secs(2),
                ..PruneOptions::default()
            })?;
            Ok(())
        }));
        failures
    }

    #[test]
    fn every_operation_survives_random_failures_lost_responses_and_short_reads() {
        let mut failures = 0;
        for seed in 0..6 {
            failures += run_all(FaultPlan {
                fail_probability: 0.12,
                lose_put_responses: 0.1,
                short_reads: 0.1,
                seed,
                ..FaultPlan::default()
            });
        }
        // The plan is harsh enough that some operations run out of retries.
        assert!(
            failures > 0,
            "no operation failed: the faults were too mild"
        );
    }

    #[test]
    fn every_operation_survives_a_store_that_overwrites_and_loses_responses() {
        run_all(FaultPlan {
            overwrite: true,
            lose_put_responses: 0.3,
            seed: 11,
            ..FaultPlan::default()
        });
    }

    #[test]
    fn each_nth_call_failing_leaves_a_repository_check_accepts() {
        // Every single call of a whole backup + prune failing in turn, with no retries.
        for n in (1..400).step_by(7) {
            let w = World::new(
                FaultPlan {
                    fail_nth: Some(n),
                    ..FaultPlan::default()
                },
                1,
            );
            w.write_files(0);
            let src = w.source.clone();
            w.step("backup", |r| backup(r, &src));
            w.write_files(1);
            w.step("backup", |r| backup(r, &src));
        }
    }
}
