//! The `chatvault` binary against remote repositories: an S3 server (s3s-fs) and a 3-node
//! Garage cluster on 127.0.0.1, started and stopped by the tests; location parsing, the
//! storage exit codes, and credentials that never show.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chatvault_backend::test_servers::{GarageCluster, S3sFs, free_port};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";

/// A client of one remote repository: its location, the store's environment, a cache.
struct Client {
    dir: tempfile::TempDir,
    repo: String,
    env: Vec<(&'static str, String)>,
    options: Vec<String>,
}

impl Client {
    fn new(repo: String, env: Vec<(&'static str, String)>, options: &[&str]) -> Client {
        Client {
            dir: tempfile::tempdir().unwrap(),
            repo,
            env,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chatvault"));
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("CHATVAULT_REPO", &self.repo)
            .env("CHATVAULT_CACHE_DIR", self.path("cache"))
            .env("CHATVAULT_PASSWORD", PASSWORD)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(self.dir.path());
        for o in &self.options {
            c.arg("--option").arg(o);
        }
        c.args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_slice(&self.ok(&args)).unwrap()
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        stderr
    }
}

/// `n` files of mixed sizes under `root`, different for each `day`.
fn make_tree(root: &Path, n: u64, day: u64) {
    for i in 0..n {
        let p = root.join(format!("media/{:02x}/{i:04}-{}.bin", i % 7, i % (day + 2)));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = (i as usize * 7919 + day as usize * 31) % 300_000 + 1;
        std::fs::write(p, chatvault_workload::media_bytes(i + day * 1_000_000, len)).unwrap();
    }
}

/// Whether two directory trees hold the same files with the same bytes.
fn same_tree(a: &Path, b: &Path) {
    let mut files = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(a.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                stack.push(r);
            } else {
                assert_eq!(
                    std::fs::read(a.join(&r)).unwrap(),
                    std::fs::read(b.join(&r)).unwrap_or_else(|_| panic!("{} missing", r.display())),
                    "{}",
                    r.display()
                );
                files += 1;
            }
        }
    }
    assert!(files > 0);
}

fn s3s_client(server: &S3sFs, prefix: &str) -> Client {
    Client::new(
        format!("s3:{}/chat/{prefix}", server.endpoint()),
        server.env(),
        &[],
    )
}

#[test]
fn regression_an_unknown_scheme_is_refused_and_creates_no_directory() {
    // `--repo s3x:http://host/bucket/repo` once made a local directory `s3x:http:` and
    // reported success; every scheme chatvault does not know is now refused.
    let c = Client::new("s3x:http://127.0.0.1:9/bucket/repo".into(), vec![], &[]);
    let err = c.fails(&["init"], 1);
    assert!(err.contains("unknown location scheme"), "{err}");
    let left: Vec<_> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "cache")
        .collect();
    assert!(left.is_empty(), "init left {left:?}");
    // A directory whose name has a colon is still reachable, written ./NAME.
    let c = Client::new("./day:1".into(), vec![], &[]);
    c.ok(&["init"]);
    assert!(c.path("day:1/config").is_file());
}

#[test]
fn credentials_in_a_location_are_refused_and_never_echoed() {
    let c = Client::new(
        "s3:http://AKIAEXAMPLE:LEAK-CANARY-91@127.0.0.1:9/chat/x".into(),
        vec![],
        &[],
    );
    let err = c.fails(&["snapshots"], 1);
    assert!(!err.contains("LEAK-CANARY-91"), "{err}");
    assert!(err.contains("credentials"), "{err}");
    let out = c.run(&["snapshots", "--json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("LEAK-CANARY-91"));
}

#[test]
fn quick_start_on_an_s3_repository() {
    let server = S3sFs::start("chat");
    let c = s3s_client(&server, "quick");
    let init = c.json(&["init"]);
    assert_eq!(
        init["location"],
        format!("s3:{}/chat/quick", server.endpoint())
    );
    assert_eq!(init["create_guard"], "enforced");
    make_tree(&c.path("src"), 40, 0);
    c.ok(&["backup", "src"]);
    make_tree(&c.path("src"), 40, 1);
    let second = c.json(&["backup", "src"]);
    assert_eq!(second["kind"], "incremental", "{second}");
    let snaps = c.json(&["snapshots"]);
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");
    c.ok(&["restore", "latest", "--target", "restored"]);
    let src = c.path("src").canonicalize().unwrap();
    same_tree(
        &src,
        &c.path("restored").join(src.strip_prefix("/").unwrap()),
    );
    let check = c.json(&["check", "--read-data"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    c.ok(&["scrub"]);
}

#[test]
fn refused_credentials_exit_15_and_never_show() {
    let server = S3sFs::start("chat");
    let good = s3s_client(&server, "denied");
    good.ok(&["init"]);
    // A wrong secret.
    let mut env = server.env();
    env[1].1 = "LEAK-CANARY-wrong-secret".into();
    let wrong = Client::new(good.repo.clone(), env, &[]);
    let start = Instant::now();
    let err = wrong.fails(&["snapshots"], 15);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "retried? {:?}",
        start.elapsed()
    );
    assert!(err.contains("storage refused the credentials"), "{err}");
    let out = wrong.run(&["snapshots", "--json", "-vv"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!shown.contains("LEAK-CANARY"), "{shown}");
    assert!(!shown.contains(&server.secret_key), "{shown}");
    assert_eq!(out.status.code(), Some(15));
    // No credentials at all (no variables, an empty HOME).
    let none = Client::new(
        good.repo.clone(),
        vec![("AWS_REGION", "us-east-1".into())],
        &[],
    );
    let err = none.fails(&["snapshots"], 15);
    assert!(err.contains("storage refused the credentials"), "{err}");
}

#[test]
fn an_unreachable_store_exits_16_after_bounded_retries() {
    let c = Client::new(
        format!("s3:http://127.0.0.1:{}/chat/x", free_port()),
        vec![
            ("AWS_ACCESS_KEY_ID", "k".into()),
            ("AWS_SECRET_ACCESS_KEY", "s".into()),
        ],
        &["retries=2", "timeout=5"],
    );
    let start = Instant::now();
    let err = c.fails(&["snapshots"], 16);
    assert!(err.contains("storage unavailable"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let out = c.run(&["snapshots", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "storage_unavailable", "{doc}");
}

#[test]
fn unknown_options_are_refused() {
    let c = Client::new(
        "s3:http://127.0.0.1:9/chat/x".into(),
        vec![],
        &["regoin=eu"],
    );
    let err = c.fails(&["snapshots"], 1);
    assert!(err.contains("regoin"), "{err}");
    let local = Client::new("repo".into(), vec![], &["region=eu"]);
    local.fails(&["init"], 1);
}

#[test]
fn a_plan_runs_against_a_remote_repository() {
    let server = S3sFs::start("chat");
    let c = s3s_client(&server, "plan");
    c.ok(&["init"]);
    make_tree(&c.path("src"), 10, 0);
    let plan = format!(
        "repository = \"{}\"\nrepository_options = [\"retries=4\"]\n[backup]\npaths = [\"{}\"]\n",
        c.repo,
        c.path("src").display()
    );
    std::fs::write(c.path("plan.toml"), plan).unwrap();
    // The plan names the repository; the command line does not.
    let mut cmd = c.cmd(&["run", "plan.toml"]);
    cmd.env_remove("CHATVAULT_REPO");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.json(&["snapshots"]).as_array().map(Vec::len), Some(1));
    std::fs::write(c.path("bad.toml"), "repository = \"s3x:http://h/b\"\n").unwrap();
    let err = c.fails(&["run", "bad.toml"], 1);
    assert!(err.contains("unknown location scheme"), "{err}");
}

/// The Garage scenarios share one cluster (starting one takes seconds), each in its own
/// bucket.
mod garage {
    use super::*;

    fn client(cluster: &GarageCluster, node: usize, bucket: &str, prefix: &str) -> Client {
        Client::new(
            format!("s3:{}/{bucket}/{prefix}", cluster.endpoint(node)),
            cluster.env(),
            &["region=garage"],
        )
    }

    fn stored_pack_bytes(c: &Client) -> u64 {
        c.json(&["stats"])["pack_bytes"].as_u64().unwrap()
    }

    #[test]
    fn a_three_node_cluster_runs_every_command_and_survives_node_failures() {
        let mut cluster = GarageCluster::start(3, &["main", "outage", "quorum"]);

        // Backup, incremental, restore, check --read-data, two concurrent writers,
        // forget + prune.
        let c = client(&cluster, 0, "main", "repo");
        let init = c.json(&["init"]);
        assert_eq!(
            init["create_guard"], "not-enforced",
            "Garage ignores If-None-Match"
        );
        make_tree(&c.path("src"), 60, 0);
        c.ok(&["backup", "src"]);
        make_tree(&c.path("src"), 60, 1);
        let inc = c.json(&["backup", "src"]);
        assert_eq!(inc["kind"], "incremental");
        c.ok(&["restore", "latest", "--target", "restored"]);
        let src = c.path("src").canonicalize().unwrap();
        same_tree(
            &src,
            &c.path("restored").join(src.strip_prefix("/").unwrap()),
        );
        let second = client(&cluster, 1, "main", "repo");
        make_tree(&second.path("other"), 30, 5);
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| c.run(&["backup", "src", "--host", "node-a"]));
            let b = s.spawn(|| second.run(&["backup", "other", "--host", "node-b"]));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        c.ok(&["forget", "--keep-last", "1", "--prune"]);
        let check = c.json(&["check", "--read-data"]);
        assert_eq!(
            check["problems"].as_array().map(Vec::len),
            Some(0),
            "{check}"
        );

        eprintln!("garage: one node stopped mid-backup");
        // One node stopped in the middle of a backup: the write quorum (2 of 3) holds.
        let c = client(&cluster, 0, "outage", "repo");
        c.ok(&["init"]);
        make_tree(&c.path("src"), 400, 0);
        let blocks_before = cluster.data_files(0);
        let child = c
            .cmd(&["backup", "src", "--uploads", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Stop node 2 once packs are arriving, while the backup still runs.
        let mut child = child;
        let start = Instant::now();
        while cluster.data_files(0) <= blocks_before {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no data reached the cluster"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster.stop(2);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before the node was stopped"
        );
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        make_tree(&c.path("src"), 400, 1);
        c.ok(&["backup", "src"]);
        eprintln!("garage: node 2 returns");
        cluster.restart(2);
        cluster.wait_healthy();
        for snap in c.json(&["snapshots"]).as_array().unwrap() {
            let id = snap["id"].as_str().unwrap();
            c.ok(&["restore", id, "--target", &format!("r-{id}")]);
        }
        let check = c.json(&["check", "--read-data"]);
        assert_eq!(
            check["problems"].as_array().map(Vec::len),
            Some(0),
            "{check}"
        );

        eprintln!("garage: two nodes stopped");
        // Two nodes stopped: no quorum. A typed storage error and exit 16; nothing that
        // check rejects; after the nodes return a re-run completes and stores nothing
        // twice.
        let c = client(&cluster, 0, "quorum", "repo");
        c.ok(&["init"]);
        make_tree(&c.path("src"), 80, 0);
        cluster.stop(1);
        cluster.stop(2);
        let tight = Client::new(
            c.repo.clone(),
            cluster.env(),
            &["region=garage", "retries=3", "timeout=10"],
        );
        let err = tight.fails(&["backup", "src"], 16);
        assert!(err.contains("storage unavailable"), "{err}");
        eprintln!("garage: nodes 1 and 2 return");
        cluster.restart(1);
        cluster.restart(2);
        cluster.wait_healthy();
        let check = c.json(&["check", "--read-data"]);
        assert_eq!(
            check["problems"].as_array().map(Vec::len),
            Some(0),
            "{check}"
        );
        c.ok(&["backup", "src"]);
        let once = stored_pack_bytes(&c);
        let check = c.json(&["check", "--read-data"]);
        assert_eq!(
            check["problems"].as_array().map(Vec::len),
            Some(0),
            "{check}"
        );
        assert_eq!(check["unindexed_blobs"], 0, "{check}");
        // The same data again adds no data. The directories above the source (/tmp) are
        // recorded with their times, and tests running alongside change /tmp's: so a new
        // listing of a few dozen bytes may be stored, never a chunk.
        let again = c.json(&["backup", "src", "--full"]);
        assert!(again["bytes_added"].as_u64().unwrap() < 1024, "{again}");
        assert!(stored_pack_bytes(&c) < once + 4096, "{again}");

        eprintln!("garage: two nodes stopped in the middle of a backup");
        // Quorum lost after packs were stored: the backup fails typed; the re-run indexes
        // the packs the failed run stored instead of uploading them again, so a prune
        // finds nothing to remove.
        let c = Client::new(
            format!("s3:{}/quorum/mid", cluster.endpoint(0)),
            cluster.env(),
            &["region=garage", "retries=3", "timeout=10"],
        );
        c.ok(&["init"]);
        make_tree(&c.path("src"), 400, 3);
        let blocks_before = cluster.data_files(0);
        let child = c
            .cmd(&["backup", "src", "--uploads", "1", "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while cluster.data_files(0) <= blocks_before + 8 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no data reached the cluster"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster.stop(1);
        cluster.stop(2);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(16), "{stderr}");
        cluster.restart(1);
        cluster.restart(2);
        cluster.wait_healthy();
        let packs_before = c.json(&["stats"])["packs"].as_u64().unwrap();
        let rerun = c.json(&["backup", "src"]);
        assert_eq!(
            rerun["packs_adopted"].as_u64(),
            Some(packs_before),
            "every pack the failed run stored is adopted: {rerun}"
        );
        let dry = c.json(&["prune", "--dry-run"]);
        assert_eq!(dry["packs_unindexed"], 0, "{dry}");
        assert_eq!(dry["packs_deleted"], 0, "{dry}");
        let check = c.json(&["check", "--read-data"]);
        assert_eq!(
            check["problems"].as_array().map(Vec::len),
            Some(0),
            "{check}"
        );
    }
}

/// `chatvault mirror` from a local directory to an S3 store (s3s-fs): killed mid-way and
/// re-run (DST opens at every step, nothing sent twice), with a backup running into SRC
/// meanwhile, then `--delete` after a forget and prune on SRC; the S3 copy restores with
/// the key.
#[test]
fn mirror_a_local_repository_to_s3_resumes_after_kill_and_restores() {
    let server = S3sFs::start("chat");
    let repo_dir = tempfile::tempdir().unwrap();
    let src_repo = repo_dir.path().join("repo");
    let src = Client::new(src_repo.to_str().unwrap().to_owned(), server.env(), &[]);
    let dst = s3s_client(&server, "mirror");
    src.ok(&["init"]);
    for day in 0..6 {
        make_tree(&src.path("src"), 12, day);
        src.ok(&["backup", "src"]);
    }
    let mirror_args = |extra: &[&str]| {
        let mut v = vec![
            "mirror",
            src.repo.as_str(),
            dst.repo.as_str(),
            "--transfers",
            "1",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };

    // Killed as soon as the first pack reached the store.
    let dst_dir = server.data_dir().join("chat/mirror");
    let args = mirror_args(&[]);
    let mut child = src.cmd(&as_strs(&args)).spawn().unwrap();
    let start = Instant::now();
    while !dst_dir.join("data").exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Pack objects the store holds now (whole or not).
    let packs_before = walk_count(&dst_dir.join("data"));
    // The copy opens: config and key slots came first.
    let snaps = dst.json(&["snapshots"]);
    let partial = snaps.as_array().unwrap().len();
    assert!(
        partial < 6,
        "the mirror finished before it was killed: {snaps}"
    );
    let check = dst.json(&["check"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );

    // Re-run with a backup into SRC at the same time.
    make_tree(&src.path("src"), 12, 6);
    let mut backup = src.cmd(&["backup", "src"]).spawn().unwrap();
    let resumed = src.json(&as_strs(&args));
    assert!(backup.wait().unwrap().success());
    assert_eq!(resumed["complete"], true, "{resumed}");
    // What the killed run stored is not sent again (a pack cut off mid-upload, if the
    // store kept one, is replaced by the verified bytes). The kill may also come before
    // the first pack was complete: then there is nothing to skip.
    let packs = &resumed["packs"];
    let n = |k: &str| packs[k].as_u64().unwrap();
    assert!(n("present") + n("repaired") >= packs_before, "{resumed}");
    assert_eq!(
        n("present") + n("repaired") + n("copied"),
        n("listed"),
        "{resumed}"
    );
    assert_eq!(resumed["key_slots"]["copied"], 0, "{resumed}");
    let check = dst.json(&["check", "--read-data"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    // A last run catches up with the concurrent backup, then there is nothing to send.
    src.json(&as_strs(&args));
    let idle = src.json(&as_strs(&args));
    assert_eq!(idle["objects_copied"], 0, "{idle}");
    assert_eq!(idle["config"]["outcome"], "unchanged", "{idle}");
    assert_eq!(
        dst.json(&["snapshots"]).as_array().map(Vec::len),
        Some(7),
        "every snapshot reached the copy"
    );
    dst.ok(&["restore", "latest", "--target", "restored"]);
    let tree = src.path("src").canonicalize().unwrap();
    same_tree(
        &tree,
        &dst.path("restored").join(tree.strip_prefix("/").unwrap()),
    );

    // --delete: nothing goes within the grace period, then DST follows SRC.
    src.ok(&["forget", "--keep-last", "2", "--prune"]);
    let waiting = src.json(&as_strs(&mirror_args(&["--delete"])));
    assert_eq!(waiting["objects_deleted"], 0, "{waiting}");
    assert!(
        waiting["snapshots"]["delete_pending"].as_u64().unwrap() >= 5,
        "{waiting}"
    );
    let deleted = src.json(&as_strs(&mirror_args(&[
        "--delete",
        "--delete-after",
        "0s",
    ])));
    assert!(
        deleted["snapshots"]["deleted"].as_u64().unwrap() >= 5,
        "{deleted}"
    );
    assert_eq!(dst.json(&["snapshots"]).as_array().map(Vec::len), Some(2));
    let check = dst.json(&["check", "--read-data"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    // The output never shows a credential.
    let out = src.run(&as_strs(&mirror_args(&["-vv"])));
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!shown.contains(&server.secret_key), "{shown}");
}

/// `chatvault copy` from a local repository into an S3 repository (s3s-fs) with its own
/// passphrase: killed (SIGKILL) mid-way and re-run with a backup running into SRC
/// meanwhile, DST checking clean after the kill and after each run, nothing copied twice,
/// and the copy restoring the source's bytes with DST's key; then from S3 into a third,
/// local, repository.
#[test]
fn copy_a_local_repository_into_s3_with_its_own_keys_resumes_after_kill() {
    let server = S3sFs::start("chat");
    let repo_dir = tempfile::tempdir().unwrap();
    let src_repo = repo_dir.path().join("repo");
    let src = Client::new(src_repo.to_str().unwrap().to_owned(), server.env(), &[]);
    let mut dst_env = server.env();
    dst_env.push(("CHATVAULT_PASSWORD", "the copy's own passphrase".into()));
    dst_env.push(("CHATVAULT_FROM_PASSWORD", PASSWORD.into()));
    let dst = Client::new(format!("s3:{}/chat/copy", server.endpoint()), dst_env, &[]);
    src.ok(&["init"]);
    for day in 0..6 {
        make_tree(&src.path("src"), 12, day);
        src.ok(&["backup", "src"]);
    }
    dst.ok(&["init"]);
    let copy = ["copy", "--from", src.repo.as_str()];

    // Killed as soon as the first pack reached the store.
    let dst_dir = server.data_dir().join("chat/copy");
    let mut child = dst.cmd(&copy).spawn().unwrap();
    let start = Instant::now();
    while !dst_dir.join("data").exists() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = dst.json(&["snapshots"]).as_array().unwrap().len();
    assert!(partial < 6, "the copy finished before it was killed");
    let check = dst.json(&["check"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );

    // Re-run with a backup into SRC at the same time.
    make_tree(&src.path("src"), 12, 6);
    let mut backup = src.cmd(&["backup", "src"]).spawn().unwrap();
    let resumed = dst.json(&copy);
    assert!(backup.wait().unwrap().success());
    let copied = resumed["snapshots_copied"].as_u64().unwrap();
    assert_eq!(
        resumed["snapshots_skipped"].as_u64().unwrap(),
        partial as u64,
        "{resumed}"
    );
    assert!(copied + partial as u64 >= 6, "{resumed}");
    let secs = resumed["duration_ms"].as_f64().unwrap() / 1000.0;
    eprintln!(
        "resumed copy local -> s3s-fs: {} bytes read, {} added in {secs:.2}s ({:.1} MB/s)",
        resumed["bytes_read"],
        resumed["bytes_added"],
        resumed["bytes_read"].as_f64().unwrap() / secs / 1e6
    );
    let check = dst.json(&["check", "--read-data"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    // A last run catches up with the concurrent backup, then there is nothing to copy.
    dst.json(&copy);
    let idle = dst.json(&copy);
    assert_eq!(idle["snapshots_copied"], 0, "{idle}");
    assert_eq!(idle["snapshots_skipped"], 7, "{idle}");
    assert_eq!(idle["blobs_added"], 0, "{idle}");
    assert_eq!(dst.json(&["snapshots"]).as_array().map(Vec::len), Some(7));
    dst.ok(&["restore", "latest", "--target", "restored"]);
    let tree = src.path("src").canonicalize().unwrap();
    same_tree(
        &tree,
        &dst.path("restored").join(tree.strip_prefix("/").unwrap()),
    );
    let check = dst.json(&["check", "--read-data"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );
    // And back from S3 into a third local repository, with keys of its own again.
    let mut back_env = server.env();
    back_env.push((
        "CHATVAULT_FROM_PASSWORD",
        "the copy's own passphrase".into(),
    ));
    let back = Client::new(
        repo_dir.path().join("back").to_str().unwrap().to_owned(),
        back_env,
        &[],
    );
    back.ok(&["init"]);
    let r = back.json(&["copy", "--from", dst.repo.as_str()]);
    assert_eq!(r["snapshots_copied"], 7, "{r}");
    back.ok(&["restore", "latest", "--target", "restored"]);
    same_tree(
        &tree,
        &back.path("restored").join(tree.strip_prefix("/").unwrap()),
    );
    // The output never shows a credential.
    let out = dst.run(&["copy", "--from", src.repo.as_str(), "-vv"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!shown.contains(&server.secret_key), "{shown}");
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Regular files below `dir` (none if it does not exist).
fn walk_count(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_count(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}
