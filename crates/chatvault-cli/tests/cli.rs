//! End-to-end tests of the `chatvault` binary: real processes, a real repository on disk,
//! the exit codes and the JSON reports scripts rely on.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

/// README's and OPERATIONS.md's commands, run literally.
#[path = "cli/docs.rs"]
mod docs;

/// Key slots on a PKCS#11 token (SoftHSM2) and behind a KMS command.
#[path = "cli/keystores.rs"]
mod keystores;

const PASSWORD: &str = "correct horse battery staple";

/// A repository, a cache and a source tree in one temporary directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        env.ok(&["init"]);
        env
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("chatvault").unwrap();
        c.env_clear()
            .env("CHATVAULT_REPO", self.path("repo"))
            .env("CHATVAULT_CACHE_DIR", self.path("cache"))
            .env("CHATVAULT_PASSWORD", PASSWORD)
            .args(args);
        c
    }

    /// Runs a command that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs a command with `--json` that must succeed; returns the document.
    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_slice(&self.ok(&args)).unwrap()
    }

    /// Runs a command expected to fail with `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.cmd(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        stderr
    }
}

/// A source tree with what a media store and a config directory hold.
fn make_tree(root: &Path) {
    let write = |p: &str, data: &[u8]| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    for i in 0..120u64 {
        let data = chatvault_workload::media_bytes(i, (i as usize * 997) % 20_000 + 1);
        write(&format!("media/{:02x}/{i:04}.jpg", i % 7), &data);
    }
    write(
        "media/large.mp4",
        &chatvault_workload::media_bytes(99, 3 << 20),
    );
    write("config/chat.toml", b"[server]\nport = 5222\n");
    write("config/empty", b"");
    write("deep/a/b/c/d/e/leaf.txt", b"deep");
    let odd = root.join(OsStr::from_bytes(b"config/caf\xe9 \n.txt"));
    std::fs::write(odd, b"non-UTF-8 name").unwrap();
    std::os::unix::fs::symlink("chat.toml", root.join("config/current")).unwrap();
    std::os::unix::fs::symlink("../media/large.mp4", root.join("config/video")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::set_permissions(
        root.join("config/chat.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// Every entry below `root`: kind, permission bits, content or link target, mtime.
fn snapshot_of(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let content = if md.is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else if md.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            let mtime = if md.is_dir() { 0 } else { md.mtime() };
            out.insert(
                p.strip_prefix(root).unwrap().to_owned(),
                (md.mode(), content, mtime),
            );
        }
    }
    out
}

fn restored(env: &Env, target: &str, src: &Path) -> PathBuf {
    env.path(target).join(src.strip_prefix("/").unwrap())
}

#[test]
fn backup_restore_round_trip_is_byte_identical() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let report = env.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(report["kind"], "full");
    assert_eq!(report["files_new"], 125);
    assert_eq!(report["symlinks"], 2);
    let restore = env.json(&[
        "restore",
        "latest",
        "--target",
        env.path("out").to_str().unwrap(),
    ]);
    assert_eq!(restore["files"], 125);
    assert_eq!(restore["problems"], Value::Array(vec![]));
    assert_eq!(snapshot_of(&src), snapshot_of(&restored(&env, "out", &src)));
    assert!(!env.path("out").join(".chatvault-restore.partial").exists());
    // `cat` gives the same bytes as the file.
    let cat = env.ok(&[
        "cat",
        "latest",
        src.join("media/large.mp4").to_str().unwrap(),
    ]);
    assert_eq!(cat, std::fs::read(src.join("media/large.mp4")).unwrap());
}

#[test]
fn incremental_backup_reads_only_changed_files_and_full_adds_nothing() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let s = src.to_str().unwrap();
    let first = env.json(&["backup", s]);
    // Change about 1 % of the files.
    std::fs::write(src.join("media/00/0000.jpg"), b"edited").unwrap();
    std::fs::write(src.join("config/new.txt"), b"new file").unwrap();
    let second = env.json(&["backup", s]);
    assert_eq!(second["kind"], "incremental");
    assert_eq!(second["parent"], first["snapshot"]);
    assert_eq!(second["files_changed"], 1);
    assert_eq!(second["files_new"], 1);
    assert_eq!(second["files_unchanged"], 124);
    assert_eq!(second["bytes_read"], 6 + 8);
    assert!(
        second["bytes_added"].as_u64().unwrap() < 16 << 10,
        "{second}"
    );
    // --full reads everything again and stores no data twice.
    let full = env.json(&["backup", "--full", s]);
    assert_eq!(full["kind"], "full");
    assert_eq!(full["files_unchanged"], 0);
    assert_eq!(full["bytes_read"], full["bytes_total"]);
    // No data twice. The directories above the source (the temporary directory, /tmp)
    // are recorded with their times, and tests running alongside change /tmp's: so a new
    // root listing of a few dozen bytes may be stored, never a chunk (the tree holds MiBs).
    assert!(full["bytes_added"].as_u64().unwrap() < 1024, "{full}");
    let diff = env.json(&[
        "diff",
        first["snapshot"].as_str().unwrap(),
        second["snapshot"].as_str().unwrap(),
    ]);
    let changes: Vec<(String, String)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] != "metadata")
        .map(|c| {
            (
                c["change"].as_str().unwrap().into(),
                c["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("added".into(), format!("{s}/config/new.txt")),
            ("modified".into(), format!("{s}/media/00/0000.jpg")),
        ]
    );
}

#[test]
fn stdin_backup_and_cat() {
    let env = Env::new();
    let dump = chatvault_workload::media_bytes(5, 700_000);
    let out = env
        .cmd(&["backup", "--stdin", "--stdin-name", "chat.sql", "--json"])
        .write_stdin(dump.clone())
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bytes_read"], 700_000);
    assert_eq!(env.ok(&["cat", "latest", "/chat.sql"]), dump);
}

#[test]
fn ls_find_snapshots_stats_and_keys() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.ok(&["backup", "--tag", "daily", src.to_str().unwrap()]);
    let ls = env.json(&["ls", "latest", src.join("config").to_str().unwrap()]);
    let names: Vec<&str> = ls["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        names
            .iter()
            .any(|p| p.ends_with("/config/caf\\xe9 \\n.txt")),
        "{names:?}"
    );
    let found = env.json(&["find", "*.toml"]);
    assert_eq!(found.as_array().unwrap().len(), 1);
    let snaps = env.json(&["snapshots", "--tag", "daily"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(
        env.json(&["snapshots", "--tag", "other"]),
        Value::Array(vec![])
    );
    let stats = env.json(&["stats", "--per-snapshot"]);
    assert!(stats["logical_bytes"].as_u64().unwrap() > 3 << 20);
    assert_eq!(stats["per_snapshot"].as_array().unwrap().len(), 1);
    // A backup-only key writes but cannot read.
    let pw = env.path("backup-pw");
    std::fs::write(&pw, "backup passphrase\n").unwrap();
    env.ok(&[
        "key",
        "add",
        "--role",
        "backup",
        "--label",
        "node1",
        "--new-password-file",
        pw.to_str().unwrap(),
    ]);
    let keys = env.json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 2);
    // The node key writes for its own host only (its scope defaults to its label).
    let mut c = env.cmd(&[
        "--password-file",
        pw.to_str().unwrap(),
        "backup",
        "--host",
        "node2",
        src.to_str().unwrap(),
    ]);
    c.env_remove("CHATVAULT_PASSWORD");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(14), "out of scope: {out:?}");
    let mut c = env.cmd(&[
        "--password-file",
        pw.to_str().unwrap(),
        "backup",
        "--host",
        "node1",
        src.to_str().unwrap(),
        "--json",
    ]);
    c.env_remove("CHATVAULT_PASSWORD");
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = env.cmd(&["--password-file", pw.to_str().unwrap(), "ls", "latest"]);
    c.env_remove("CHATVAULT_PASSWORD");
    assert_eq!(c.output().unwrap().status.code(), Some(14));
    // Regression: `key add` without `--scope` gave an empty scope, so every snapshot the
    // new key wrote was refused as out of scope. The admin must see and trust it.
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    // A scoped key writes for its host only.
    let pw2 = env.path("scoped-pw");
    std::fs::write(&pw2, "scoped passphrase\n").unwrap();
    env.ok(&[
        "key",
        "add",
        "--role",
        "backup",
        "--scope",
        "node-9",
        "--new-password-file",
        pw2.to_str().unwrap(),
    ]);
    let mut c = env.cmd(&[
        "--password-file",
        pw2.to_str().unwrap(),
        "backup",
        "--host",
        "node-9",
        src.to_str().unwrap(),
    ]);
    c.env_remove("CHATVAULT_PASSWORD");
    assert!(c.output().unwrap().status.success());
    let mut c = env.cmd(&[
        "--password-file",
        pw2.to_str().unwrap(),
        "backup",
        "--host",
        "other",
        src.to_str().unwrap(),
    ]);
    c.env_remove("CHATVAULT_PASSWORD");
    let out = c.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(14),
        "an out-of-scope snapshot is refused when written: {out:?}"
    );
    let mut c = env.cmd(&["snapshots", "--json"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
}

/// A compromised node's key: `key revoke` keeps what it signed (endorsed), rotates the
/// keys, and the revoked key can do nothing more (exit 14); `key rotate` moves on again.
#[test]
fn key_revoke_endorses_rotates_and_shuts_the_node_out() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    let node_key = env.path("node.key");
    env.ok(&[
        "key",
        "add",
        "--role",
        "backup",
        "--label",
        "node1",
        "--new-key-file",
        node_key.to_str().unwrap(),
    ]);
    let node = |args: &[&str]| {
        let mut c = env.cmd(&["--key-file", node_key.to_str().unwrap()]);
        c.args(args);
        c.env_remove("CHATVAULT_PASSWORD");
        c.output().unwrap()
    };
    let out = node(&["backup", "--host", "node1", src.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let revoked = env.json(&["key", "revoke", "node1", "--trusted-until", "all"]);
    assert_eq!(revoked["endorsed_objects"], 2, "{revoked}");
    assert_eq!(revoked["generation"], 1, "{revoked}");
    // What it signed before stays readable; it can write nothing more.
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
    env.ok(&["check"]);
    let out = node(&["backup", "--host", "node1", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(14), "{out:?}");
    let rotated = env.json(&["key", "rotate"]);
    assert_eq!(rotated["generation"], 2);
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("out");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn errors_have_their_exit_codes_and_one_line() {
    let env = Env::new();
    let mut c = env.cmd(&["snapshots"]);
    c.env("CHATVAULT_PASSWORD", "wrong");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(11));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("wrong passphrase"));

    let mut c = env.cmd(&["snapshots"]);
    c.env("CHATVAULT_REPO", env.path("nowhere"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    env.fails(&["restore"], 2);
    env.fails(&["no-such-command"], 2);
    let stderr = env.fails(&["ls", "ffff"], 13);
    assert!(stderr.contains("not found"), "{stderr}");

    // --json turns the error into a document too.
    let mut c = env.cmd(&["snapshots", "--json"]);
    c.env("CHATVAULT_PASSWORD", "wrong");
    let out = c.output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], 11);
    assert_eq!(doc["error"]["kind"], "wrong_passphrase");
}

#[test]
fn corrupted_pack_gives_exit_13_and_restores_the_rest() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), chatvault_workload::media_bytes(1, 100_000)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("b"), chatvault_workload::media_bytes(2, 100_000)).unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    // The first backup's pack holds `a`'s chunk: flip a byte in its first blob.
    let mut packs: Vec<PathBuf> = walk_files(&env.path("repo/data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    bytes[100] ^= 1;
    let perms = std::fs::metadata(&packs[0]).unwrap().permissions();
    let mut writable = perms.clone();
    writable.set_mode(0o600);
    std::fs::set_permissions(&packs[0], writable).unwrap();
    std::fs::write(&packs[0], bytes).unwrap();
    let stderr = env.fails(
        &[
            "restore",
            "latest",
            "--target",
            env.path("out").to_str().unwrap(),
        ],
        13,
    );
    assert!(stderr.contains("1 entries not restored"), "{stderr}");
    let out = restored(&env, "out", &src);
    assert!(
        !out.join("a").exists(),
        "a corrupt file must not be put in place"
    );
    assert_eq!(
        std::fs::read(out.join("b")).unwrap(),
        std::fs::read(src.join("b")).unwrap()
    );
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
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
fn restore_refuses_a_non_empty_target_unless_overwrite() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src);
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep"), b"x").unwrap();
    env.fails(&["restore", "latest", "--target", out.to_str().unwrap()], 1);
    env.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--overwrite",
    ]);
    assert_eq!(snapshot_of(&src), snapshot_of(&restored(&env, "out", &src)));
    // A sub-path restore puts the directory's contents in the target; the link that
    // points out of it (`video -> ../media/large.mp4`) is refused unless allowed.
    let sub = env.path("sub");
    let cfg = src.join("config");
    let args = [
        "restore",
        "latest",
        "--target",
        sub.to_str().unwrap(),
        "--path",
        cfg.to_str().unwrap(),
    ];
    let out = env
        .cmd(&[&args[..], &["--json"]].concat())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["problems"][0]["kind"], "refused");
    assert!(
        report["problems"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/config/video")
    );
    assert!(!sub.join("video").exists());
    assert_eq!(
        std::fs::read(sub.join("chat.toml")).unwrap(),
        b"[server]\nport = 5222\n"
    );
    env.ok(&[&args[..], &["--overwrite", "--allow-outward-links"]].concat());
    assert_eq!(
        std::fs::read_link(sub.join("video")).unwrap(),
        Path::new("../media/large.mp4")
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    let env = Env::new();
    let bash = env.ok(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&bash).contains("chatvault"));
    let man = env.path("man");
    env.ok(&["man", "--out", man.to_str().unwrap()]);
    assert!(man.join("chatvault.1").exists());
    assert!(man.join("chatvault-backup.1").exists());
    let help = env.ok(&["--help"]);
    assert!(String::from_utf8_lossy(&help).contains("11  wrong passphrase"));
}

/// Writes a snapshot whose root holds hostile entries next to one good file, the way a
/// tampering writer (or a bug) could; returns nothing, the snapshot is the latest.
fn write_hostile_snapshot(env: &Env) {
    use chatvault_core::{
        KeySource, LocalBackend, Node, OpenOptions, Repository, SnapshotKind, SnapshotRecord, Tree,
    };
    use chatvault_fs::{EntryKind, FsMeta};
    let opts = OpenOptions {
        cache_dir: Some(env.path("cache")),
        ..OpenOptions::default()
    };
    let backend = LocalBackend::open(env.path("repo")).unwrap();
    let repo = Repository::open(Box::new(backend), &KeySource::passphrase(PASSWORD), opts).unwrap();
    let w = repo.writer().unwrap();
    let file = |name: &[u8], data: &[u8]| {
        let mut meta = FsMeta::empty(EntryKind::File);
        meta.mode = 0o644;
        meta.size = data.len() as u64;
        meta.digest = Some(*blake3::hash(data).as_bytes());
        Node {
            name: name.to_vec(),
            subtree: None,
            content: w.write_bytes(data).unwrap(),
            meta: meta.encode(),
        }
    };
    let link = |name: &[u8], target: &[u8]| {
        let mut meta = FsMeta::empty(EntryKind::Symlink);
        meta.mode = 0o777;
        meta.link_target = Some(target.to_vec());
        Node {
            name: name.to_vec(),
            subtree: None,
            content: Vec::new(),
            meta: meta.encode(),
        }
    };
    let tree = Tree::new(vec![
        file(b"../escape", b"escaped"),
        file(b"/tmp/chatvault-absolute", b"absolute"),
        file(b"..", b"dotdot"),
        file(b"nul\0name", b"nul"),
        link(b"out", b"../../../../etc"),
        link(b"abs", b"/etc/passwd"),
        file(b"good", b"good"),
    ])
    .unwrap();
    let root = w.write_tree(&tree).unwrap();
    w.finish().unwrap();
    repo.save_snapshot(SnapshotRecord {
        time_unix_ms: 1_760_000_000_000,
        host: "evil".into(),
        tags: Vec::new(),
        source_kind: "fs".into(),
        paths: vec!["/".into()],
        parent: None,
        kind: SnapshotKind::Full,
        root,
        summary: Default::default(),
        cursors: Default::default(),
        writer_seq: 0,
        prev_writer_snapshot: None,
        origin: None,
    })
    .unwrap();
}

#[test]
fn restore_refuses_hostile_entries_and_writes_nothing_outside() {
    let env = Env::new();
    write_hostile_snapshot(&env);
    let before = snapshot_of(env.dir.path());
    let target = env.path("box/target");
    let out = env
        .cmd(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut refused: Vec<String> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|p| assert_eq!(p["kind"], "refused", "{p}"))
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert!(refused.iter().any(|p| p.contains("escape")));
    // Only the good file was written, and only inside the target.
    assert_eq!(std::fs::read(target.join("good")).unwrap(), b"good");
    let mut after = snapshot_of(env.dir.path());
    after.retain(|p, _| !p.starts_with("box") && !p.starts_with("cache"));
    let mut before = before;
    before.retain(|p, _| !p.starts_with("box") && !p.starts_with("cache"));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let in_box: Vec<_> = snapshot_of(&env.path("box")).into_keys().collect();
    assert_eq!(
        in_box,
        vec![PathBuf::from("target"), PathBuf::from("target/good")]
    );
    assert!(!Path::new("/tmp/chatvault-absolute").exists());
}

/// Flips a byte in the blob area of the repository's largest pack; returns its file name.
fn corrupt_largest_pack(env: &Env) -> String {
    let pack = walk_files(&env.path("repo/data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    let mut writable = std::fs::metadata(&pack).unwrap().permissions();
    writable.set_mode(0o600);
    std::fs::set_permissions(&pack, writable).unwrap();
    std::fs::write(&pack, bytes).unwrap();
    pack.file_name().unwrap().to_string_lossy().into_owned()
}

fn backed_up_env() -> Env {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("media")).unwrap();
    std::fs::write(
        src.join("media/a"),
        chatvault_workload::media_bytes(1, 200_000),
    )
    .unwrap();
    std::fs::write(src.join("b"), b"config = 1\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    env
}

/// `chatvault ls latest | head`, as OPERATIONS.md writes it: once the reader has gone,
/// the command used to panic on the broken pipe (exit 101) and leave its read lock.
#[test]
fn output_into_a_closed_pipe_ends_quietly_and_leaves_no_lock() {
    let env = backed_up_env();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chatvault"))
        .env_clear()
        .env("CHATVAULT_REPO", env.path("repo"))
        .env("CHATVAULT_CACHE_DIR", env.path("cache"))
        .env("CHATVAULT_PASSWORD", PASSWORD)
        .args(["ls", "latest"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the first line
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(env.path("repo/locks")).unwrap().count(),
        0
    );
}

#[test]
fn check_and_scrub_of_a_sound_repository_exit_0() {
    let env = backed_up_env();
    let doc = env.json(&["check", "--read-data"]);
    assert_eq!(doc["problems"], serde_json::json!([]), "{doc}");
    assert_eq!(doc["snapshots"], 1);
    assert!(doc["blobs_read"].as_u64().unwrap() >= 3, "{doc}");
    let human = String::from_utf8(env.ok(&["check"])).unwrap();
    assert!(human.contains("no problems found"), "{human}");
    let out = env
        .cmd(&["scrub", "--json"])
        .env_remove("CHATVAULT_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["problems"], serde_json::json!([]), "{doc}");
    assert!(doc["objects"].as_u64().unwrap() >= 3, "{doc}");
}

#[test]
fn check_read_data_and_scrub_exit_13_on_a_corrupted_pack_and_name_it() {
    let env = backed_up_env();
    let pack = corrupt_largest_pack(&env);
    let out = env.cmd(&["check", "--read-data"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{stdout}");
    assert!(
        stdout.contains("blob_corrupt") && stdout.contains(&pack),
        "{stdout}"
    );
    let out = env
        .cmd(&["scrub"])
        .env_remove("CHATVAULT_PASSWORD")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{stdout}");
    assert!(
        stdout.contains(&pack) && stdout.contains("1 problems"),
        "{stdout}"
    );
}

#[test]
fn mirror_needs_no_key_refuses_a_corrupt_pack_and_another_repository() {
    let env = backed_up_env();
    let (repo, copy) = (env.path("repo"), env.path("copy"));
    let (repo, copy) = (repo.to_str().unwrap(), copy.to_str().unwrap());
    let out = env
        .cmd(&["mirror", repo, copy, "--json"])
        .env_remove("CHATVAULT_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["complete"], true, "{doc}");
    assert_eq!(doc["config"]["outcome"], "copied", "{doc}");
    assert!(doc["packs"]["copied"].as_u64().unwrap() >= 1, "{doc}");
    // The copy opens with the same key (its own cache: same repository id).
    let restored = env.path("restored");
    let out = env
        .cmd(&["--repo", copy, "--cache-dir"])
        .arg(env.path("copy-cache"))
        .args(["restore", "latest", "--target"])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A corrupt pack in the source: refused, exit 13, named, not written.
    let pack = corrupt_largest_pack(&env);
    let fresh = env.path("fresh");
    let out = env
        .cmd(&["mirror", repo, fresh.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{stdout}");
    assert!(
        stdout.contains(&pack) && stdout.contains("content_mismatch"),
        "{stdout}"
    );
    let data = fresh.join("data");
    assert!(!data.exists() || !walk_files(&data).iter().any(|p| p.ends_with(&pack)));

    // Another repository as the destination: refused before anything is written.
    let other = Env::new();
    let err = env.fails(&["mirror", repo, other.path("repo").to_str().unwrap()], 1);
    assert!(err.contains("another repository"), "{err}");
    // A missing source: exit 10.
    env.fails(&["mirror", env.path("nothing").to_str().unwrap(), copy], 10);
}

/// `copy` between two local repositories with their own passphrases: a message-log set
/// and an incremental one copied, restored from DST identical to the source, a second
/// run copying nothing, `--dry-run`, `init --chunker-from`, and wrong passphrases for
/// either side (exit 11) naming the side.
#[test]
fn copy_msglog_sets_into_a_repository_with_its_own_keys() {
    let env = Env::new();
    let server = env.path("server");
    chatvault_workload::generate(&server, chatvault_workload::ServerOptions::tiny(), 2).unwrap();
    let server_s = server.to_str().unwrap();
    env.json(&["msglog", "backup", server_s, "--name", "chat"]);
    chatvault_workload::advance(&server, 1).unwrap();
    env.json(&["msglog", "backup", server_s, "--name", "chat"]);
    let src = env.path("repo");
    let src = src.to_str().unwrap();
    let dst = env.path("dst");
    let dst = dst.to_str().unwrap();
    let on_dst = |args: &[&str]| {
        let mut c = env.cmd(&["--repo", dst]);
        c.env("CHATVAULT_PASSWORD", "the destination's own")
            .env("CHATVAULT_FROM_PASSWORD", PASSWORD)
            .args(args);
        c
    };
    let json = |args: &[&str]| -> Value {
        let out = on_dst(args).arg("--json").output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let init = json(&["init", "--chunker-from", src]);
    assert!(init["chunker_from"].is_string(), "{init}");
    let dry = json(&["copy", "--from", src, "--dry-run"]);
    assert_eq!(dry["snapshots_copied"], 2, "{dry}");
    assert_eq!(json(&["snapshots"]).as_array().map(Vec::len), Some(0));
    let first = json(&["copy", "--from", src, "--source-kind", "msglog"]);
    assert_eq!(first["snapshots_copied"], 2, "{first}");
    assert!(first["bytes_added"].as_u64().unwrap() > 0);
    let again = json(&["copy", "--from", src]);
    assert_eq!(
        (
            again["snapshots_copied"].as_u64(),
            again["snapshots_skipped"].as_u64()
        ),
        (Some(0), Some(2)),
        "{again}"
    );
    assert_eq!(again["bytes_added"], 0);
    // A hook sees neither side's passphrase.
    let got = env.path("copy-hook.env");
    let hook = format!("env | grep '^CHATVAULT_' > {}", got.display());
    json(&["copy", "--from", src, "--on-success", &hook]);
    let vars = std::fs::read_to_string(&got).unwrap();
    assert!(vars.contains("CHATVAULT_COMMAND=copy"), "{vars}");
    assert!(!vars.contains("PASSWORD="), "{vars}");
    let snaps = json(&["snapshots"]);
    let latest = snaps
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|s| s["time_unix_ms"].as_i64())
        .unwrap();
    assert!(latest["origin"]["snapshot"].is_string(), "{latest}");
    assert_eq!(latest["kind"], "incremental");
    assert!(
        latest["parent"].is_string(),
        "the parent is the copy of the source's parent"
    );
    let whole = env.path("whole");
    let out = on_dst(&["msglog", "restore", "--target", whole.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(file_map(&whole), file_map(&server));
    let check = json(&["check", "--read-data"]);
    assert_eq!(
        check["problems"].as_array().map(Vec::len),
        Some(0),
        "{check}"
    );

    // Wrong passphrases: exit 11, and which side it was.
    let out = on_dst(&["copy", "--from", src])
        .env("CHATVAULT_FROM_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(String::from_utf8_lossy(&out.stderr).contains("source"));
    let out = on_dst(&["copy", "--from", src])
        .env("CHATVAULT_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(String::from_utf8_lossy(&out.stderr).contains("destination"));
    // The same repository on both sides is refused.
    env.fails(&["copy", "--from", src], 1);
}

#[test]
fn forget_dry_run_explains_and_forget_removes() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3 {
        std::fs::write(src.join("f"), format!("version {i}")).unwrap();
        env.ok(&[
            "backup",
            "--tag",
            if i == 0 { "audit" } else { "daily" },
            src.to_str().unwrap(),
        ]);
    }
    env.fails(&["forget"], 1); // no rule: refused, nothing removed
    let dry = env.json(&[
        "forget",
        "--keep-last",
        "1",
        "--keep-tag",
        "audit",
        "--dry-run",
    ]);
    let snaps = dry["groups"][0]["snapshots"].as_array().unwrap();
    let reasons: Vec<&Value> = snaps.iter().map(|s| &s["reasons"]).collect();
    assert_eq!(
        reasons,
        [
            &serde_json::json!(["last"]),
            &serde_json::json!([]),
            &serde_json::json!(["tag audit"])
        ]
    );
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 3);
    let done = env.json(&["forget", "--keep-last", "1", "--keep-tag", "audit"]);
    assert_eq!(done["removed"].as_array().unwrap().len(), 1);
    let left = env.json(&["snapshots"]);
    assert_eq!(left.as_array().unwrap().len(), 2);
    env.fails(&["forget", "--keep-within", "3x"], 2);
}

#[test]
fn forget_by_id_removes_an_unreadable_record_and_refuses_a_held_one() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3 {
        std::fs::write(src.join("f"), format!("version {i}")).unwrap();
        env.ok(&["backup", src.to_str().unwrap()]);
    }
    let list = env.json(&["snapshots"]);
    let id = |i: usize| list[i]["id"].as_str().unwrap().to_owned();
    let (oldest, damaged) = (id(0), id(1));
    // A damaged record: check and forget's policy name it and leave it alone.
    std::fs::write(env.path(&format!("repo/snapshots/{damaged}")), b"garbage").unwrap();
    assert_ne!(env.cmd(&["check"]).output().unwrap().status.code(), Some(0));
    let policy = env.cmd(&["forget", "--keep-last", "1"]).output().unwrap();
    assert!(policy.status.success());
    let stderr = String::from_utf8_lossy(&policy.stderr);
    assert!(
        stderr.contains(&format!("`chatvault forget {}` removes it", &damaged[..8])),
        "{stderr}"
    );
    assert!(env.path(&format!("repo/snapshots/{damaged}")).exists());
    // Named: a dry run removes nothing, a policy beside names is refused, then it goes.
    let dry = env.json(&["forget", &damaged[..8], "--dry-run"]);
    assert_eq!(dry["named"], serde_json::json!([damaged]));
    assert_eq!(dry["removed"], serde_json::json!([]));
    assert!(env.path(&format!("repo/snapshots/{damaged}")).exists());
    let both = env.fails(&["forget", &damaged[..8], "--keep-last", "1"], 1);
    assert!(both.contains("not both"), "{both}");
    let done = env.json(&["forget", &damaged[..8]]);
    assert_eq!(done["removed"], serde_json::json!([damaged]));
    env.ok(&["check", "--read-data"]);
    // The oldest one was removed by the policy run; a held one is refused by name.
    env.fails(&["forget", &oldest[..8]], 13);
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["hold", "latest", "--reason", "case 7"]);
    // Its own exit code, not 14 ("the key's role does not allow"): an admin key cannot
    // forget it either until the hold is released.
    let held = env.fails(&["forget", "latest"], 17);
    assert!(held.contains("is held"), "{held}");
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 2);
}

/// The samples of a metrics file, parsed by an independent Prometheus text-format parser:
/// (metric, command label) → value. Every sample must be a typed gauge with help text.
fn metrics(path: &Path) -> BTreeMap<(String, String), f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    assert!(!scrape.samples.is_empty(), "{text}");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        assert!(s.metric.starts_with("chatvault_"), "{}", s.metric);
        assert!(
            scrape.docs.contains_key(&s.metric),
            "no HELP for {}",
            s.metric
        );
        let prometheus_parse::Value::Gauge(v) = s.value else {
            panic!("{} is not a gauge: {text}", s.metric);
        };
        assert!(s.labels.get("host").is_some_and(|h| !h.is_empty()));
        let command = s.labels.get("command").unwrap().to_owned();
        assert!(
            out.insert((s.metric, command), v).is_none(),
            "duplicate: {text}"
        );
    }
    out
}

fn metric(m: &BTreeMap<(String, String), f64>, name: &str, command: &str) -> Option<f64> {
    m.get(&(name.to_owned(), command.to_owned())).copied()
}

#[test]
fn drill_verify_only_and_scratch_restore_pass_and_report_recovery_time_and_point() {
    let env = backed_up_env();
    let report = env.path("drill.json");
    let doc = env.json(&[
        "drill",
        "--verify-only",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(doc["success"], true, "{doc}");
    assert_eq!(doc["mode"], "verify_only");
    assert_eq!(doc["snapshots"].as_array().unwrap().len(), 1);
    assert_eq!(doc["bytes"], 200_000 + 11, "{doc}");
    assert!(doc["rpo_seconds"].as_f64().unwrap() >= 0.0);
    assert!(doc["rto_seconds"].as_f64().unwrap() > 0.0);
    let from_file: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(from_file, doc);
    // A scratch restore: into --target, removed afterwards unless --keep.
    let scratch = env.path("scratch");
    let doc = env.json(&["drill", "--target", scratch.to_str().unwrap()]);
    assert_eq!(doc["success"], true, "{doc}");
    assert_eq!(doc["mode"], "restore");
    assert!(
        !scratch.exists(),
        "the drill created the scratch directory and removes it"
    );
    let doc = env.json(&["drill", "--keep", "--target", scratch.to_str().unwrap()]);
    let short = doc["snapshots"][0]["short_id"].as_str().unwrap();
    let src = env.path("src");
    let back = scratch.join(short).join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("media/a")).unwrap(),
        std::fs::read(src.join("media/a")).unwrap()
    );
}

#[test]
fn drill_fails_when_one_chunk_is_corrupted_and_metrics_say_so() {
    let env = backed_up_env();
    let prom = env.path("chatvault.prom");
    let m = prom.to_str().unwrap();
    env.ok(&["drill", "--verify-only", "--metrics-file", m]);
    assert_eq!(
        metric(&metrics(&prom), "chatvault_drill_success", "drill"),
        Some(1.0)
    );
    corrupt_largest_pack(&env);
    let out = env
        .cmd(&["drill", "--verify-only", "--json", "--metrics-file", m])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(13));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["success"], false);
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{doc}");
    assert!(
        problems[0]["path"].as_str().unwrap().ends_with("media/a"),
        "{doc}"
    );
    let after = metrics(&prom);
    assert_eq!(
        metric(&after, "chatvault_drill_success", "drill"),
        Some(0.0)
    );
    assert_eq!(
        metric(&after, "chatvault_last_exit_code", "drill"),
        Some(13.0)
    );
    assert_eq!(metric(&after, "chatvault_errors", "drill"), Some(1.0));
    // The last success is kept for the stale-drill alert.
    assert!(metric(&after, "chatvault_last_success_timestamp_seconds", "drill").is_some());
}

#[test]
fn metrics_file_parses_and_several_commands_share_one_file_or_a_directory() {
    let env = backed_up_env();
    let prom = env.path("chatvault.prom");
    let m = prom.to_str().unwrap();
    let src = env.path("src");
    env.ok(&["backup", "--metrics-file", m, src.to_str().unwrap()]);
    env.ok(&["check", "--metrics-file", m]);
    env.fails(
        &[
            "restore",
            "nope",
            "--target",
            "/nonexistent",
            "--metrics-file",
            m,
        ],
        1,
    );
    let all = metrics(&prom);
    for command in ["backup", "check", "restore"] {
        assert!(
            metric(&all, "chatvault_last_run_timestamp_seconds", command).is_some(),
            "{command}: {all:?}"
        );
    }
    assert_eq!(metric(&all, "chatvault_success", "backup"), Some(1.0));
    assert_eq!(
        metric(&all, "chatvault_repository_snapshots", "backup"),
        Some(2.0)
    );
    assert!(metric(&all, "chatvault_repository_size_bytes", "check").unwrap() > 200_000.0);
    assert!(metric(&all, "chatvault_bytes_read", "backup").is_some());
    assert_eq!(metric(&all, "chatvault_success", "restore"), Some(0.0));
    assert_eq!(
        metric(&all, "chatvault_last_exit_code", "restore"),
        Some(1.0)
    );
    assert!(metric(&all, "chatvault_last_success_timestamp_seconds", "restore").is_none());
    // A directory: one file per command, so each can be collected on its own.
    let dir = env.path("textfile");
    std::fs::create_dir(&dir).unwrap();
    env.ok(&["check", "--metrics-file", dir.to_str().unwrap()]);
    env.ok(&["snapshots", "--metrics-file", dir.to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom"))
        .collect();
    files.sort();
    assert_eq!(files, ["chatvault-check.prom", "chatvault-snapshots.prom"]);
    assert_eq!(
        metric(
            &metrics(&dir.join("chatvault-check.prom")),
            "chatvault_success",
            "check"
        ),
        Some(1.0)
    );
}

#[test]
fn hooks_get_the_report_and_a_failing_hook_leaves_the_exit_code_alone() {
    let env = backed_up_env();
    let src = env.path("src");
    let got = env.path("hook");
    let hook = format!(
        "cat > {0}.json; env | grep '^CHATVAULT_' | sort > {0}.env; exit 4",
        got.display()
    );
    let out = env
        .cmd(&["backup", "--on-success", &hook, src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the hook's failure is not the backup's"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("hook failed"));
    let doc: Value =
        serde_json::from_slice(&std::fs::read(got.with_extension("json")).unwrap()).unwrap();
    let vars = std::fs::read_to_string(got.with_extension("env")).unwrap();
    let snapshot = doc["snapshot"].as_str().unwrap();
    assert!(
        vars.contains(&format!("CHATVAULT_SNAPSHOT={snapshot}\n")),
        "{vars}"
    );
    assert!(vars.contains("CHATVAULT_COMMAND=backup\n"), "{vars}");
    assert!(vars.contains("CHATVAULT_STATUS=success\n"), "{vars}");
    assert!(vars.contains("CHATVAULT_BYTES_READ="), "{vars}");
    assert!(
        !vars.contains("CHATVAULT_PASSWORD="),
        "the hook must not see the passphrase"
    );
    // A failure runs --on-failure (not --on-success), with the error.
    let fail_hook = format!("env | grep '^CHATVAULT_' | sort > {}.fail", got.display());
    env.cmd(&[
        "check",
        "--on-success",
        "exit 1",
        "--on-failure",
        &fail_hook,
    ])
    .env("CHATVAULT_PASSWORD", "wrong")
    .assert()
    .code(11);
    let vars = std::fs::read_to_string(got.with_extension("fail")).unwrap();
    assert!(vars.contains("CHATVAULT_EXIT_CODE=11\n"), "{vars}");
    assert!(vars.contains("CHATVAULT_STATUS=failure\n"), "{vars}");
    assert!(vars.contains("CHATVAULT_ERROR="), "{vars}");
}

#[test]
fn run_plan_does_a_full_backup_prune_and_drill_then_only_what_is_due() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"one").unwrap();
    let state = env.path("plan-state.json");
    let metrics_dir = env.path("textfile");
    std::fs::create_dir(&metrics_dir).unwrap();
    let plan = env.path("plan.toml");
    std::fs::write(
        &plan,
        format!(
            r#"state_file = "{}"
metrics_file = "{}"
[backup]
paths = ["{}"]
full_every_days = 7
tags = ["files"]
[forget]
keep_last = 1
[prune]
max_unused = 0
[check]
read_data_subset = "50%"
[drill]
every_days = 7
"#,
            state.display(),
            metrics_dir.display(),
            src.display()
        ),
    )
    .unwrap();
    let p = plan.to_str().unwrap();
    let first = env.json(&["run", p]);
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["full_backup"], true);
    let steps: Vec<&str> = first["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["command"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["backup", "forget", "prune", "check", "drill"]);
    assert_eq!(first["steps"][0]["report"]["kind"], "full");
    assert_eq!(first["drill"]["success"], true);
    std::fs::write(src.join("f"), b"two").unwrap();
    let second = env.json(&["run", p]);
    assert_eq!(second["full_backup"], false, "{second}");
    assert_eq!(second["steps"][0]["report"]["kind"], "incremental");
    assert_eq!(
        second["steps"].as_array().unwrap().len(),
        4,
        "the drill is not due"
    );
    assert_eq!(
        second["steps"][1]["report"]["removed"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The prune after forget frees the forgotten snapshot's data.
    let prune = &second["steps"][2];
    assert_eq!(prune["command"], "prune");
    assert!(
        prune["report"]["bytes_freed"].as_u64().unwrap() > 0,
        "{prune}"
    );
    env.ok(&["check", "--read-data"]);
    let st: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(st["last_full_unix_ms"].is_i64() && st["last_drill_unix_ms"].is_i64());
    assert!(st["last_prune_unix_ms"].is_i64());
    let prune_metrics = metrics(&metrics_dir.join("chatvault-prune.prom"));
    assert!(metric(&prune_metrics, "chatvault_prune_bytes_freed", "prune").unwrap() > 0.0);
    for command in ["backup", "forget", "prune", "check", "drill", "run"] {
        let file = metrics_dir.join(format!("chatvault-{command}.prom"));
        assert_eq!(
            metric(&metrics(&file), "chatvault_success", command),
            Some(1.0),
            "{command}"
        );
    }
    // A bad value is refused before anything runs, and the failed run is reported.
    std::fs::write(&plan, "[prune]\nmax_unused = 150\n").unwrap();
    let m = metrics_dir.to_str().unwrap();
    let stderr = env.fails(&["run", p, "--metrics-file", m], 1);
    assert!(stderr.contains("max_unused"), "{stderr}");
    let run = metrics(&metrics_dir.join("chatvault-run.prom"));
    assert_eq!(metric(&run, "chatvault_success", "run"), Some(0.0));
    assert!(metric(&run, "chatvault_last_success_timestamp_seconds", "run").is_some());
}

#[test]
fn repair_snapshots_lists_the_lost_file_and_the_repaired_snapshot_drills_clean() {
    let env = backed_up_env();
    corrupt_largest_pack(&env);
    let out = env
        .cmd(&["repair", "snapshots", "--read-data", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "data was lost: partial");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let repaired = &doc["repaired"][0];
    let losses = repaired["losses"].as_array().unwrap();
    assert_eq!(losses.len(), 1, "{doc}");
    assert!(
        losses[0]["path"].as_str().unwrap().ends_with("/media/a"),
        "{doc}"
    );
    assert_eq!(losses[0]["kind"], "content");
    assert_eq!(repaired["original_forgotten"], false);
    // The default drill picks the repaired snapshot of the group, which restores fully.
    let drill = env.json(&["drill", "--verify-only"]);
    assert_eq!(drill["success"], true, "{drill}");
    assert_eq!(drill["snapshots"][0]["id"], repaired["repaired"]);
    // repair index after losing every segment: the index comes back from pack headers.
    for seg in walk_files(&env.path("repo/index")) {
        std::fs::remove_file(seg).unwrap();
    }
    env.fails(&["check"], 13);
    let doc = env.json(&["repair", "index"]);
    assert!(doc["blobs"].as_u64().unwrap() >= 3, "{doc}");
    let check = env.cmd(&["check", "--json"]).output().unwrap();
    let check: Value = serde_json::from_slice(&check.stdout).unwrap();
    // Only the corrupt blob remains (until a prune), and no snapshot needs it any more
    // except the original, which is still there.
    for p in check["problems"].as_array().unwrap() {
        assert_ne!(p["kind"], "blob_missing", "{check}");
    }
}

/// Every file below `root`, by relative path.
fn file_map(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// README's quick start: `chatvault msglog backup DIR` without `--name` failed with
/// `invalid backup set name: "/srv/chat": name contains '/'`, because the documented
/// default (the directory's absolute path) broke the name rule for path components. And a
/// log edited in place, which the frontend stores again from the edit, made the run exit
/// 3 (partial) and recorded an error in the snapshot.
#[test]
fn msglog_backup_without_a_name_and_an_edited_log_exit_0() {
    let env = Env::new();
    let server = env.path("server");
    chatvault_workload::generate(&server, chatvault_workload::ServerOptions::tiny(), 2).unwrap();
    let server_s = server.to_str().unwrap();
    let first = env.json(&["msglog", "backup", server_s]);
    let snaps = env.json(&["snapshots"]);
    let canonical = std::fs::canonicalize(&server).unwrap();
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([canonical.to_str().unwrap()])
    );
    // An edit in place (a redaction) in one log.
    let log = walk_files(&server.join("logs"))[0].clone();
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[12] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let out = env
        .cmd(&["msglog", "backup", server_s, "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(second["parent"], first["snapshot"], "{second}");
    assert_eq!(second["logs"]["streams_rewritten"], 1);
    assert_eq!(second["problems"], serde_json::json!([]));
    assert_eq!(second["notices"].as_array().unwrap().len(), 1, "{second}");
    let snaps = env.json(&["snapshots"]);
    assert_eq!(snaps[1]["summary"]["errors"], 0);
}

/// `snapshots` shows which key signed each snapshot: its short form in the listing, in
/// full with `--json`.
#[test]
fn snapshots_show_the_signing_key() {
    let env = backed_up_env();
    let keys = env.json(&["key", "list"]);
    let writer = keys[0]["writer_key"].as_str().unwrap().to_owned();
    let human = String::from_utf8(env.ok(&["snapshots"])).unwrap();
    assert!(human.lines().next().unwrap().contains("writer"), "{human}");
    assert!(human.contains(&writer[..8]), "{human}");
    let json = env.json(&["snapshots"]);
    assert_eq!(json[0]["writer"], writer.as_str());
}

#[test]
fn msglog_backup_ls_export_and_restore() {
    let env = Env::new();
    let server = env.path("server");
    chatvault_workload::generate(&server, chatvault_workload::ServerOptions::tiny(), 3).unwrap();
    let server_s = server.to_str().unwrap();
    let dump = env.path("dump.sql");
    std::fs::write(&dump, b"CREATE TABLE users (id int);\n").unwrap();
    let dump_arg = format!("users.sql={}", dump.display());
    let first = env.json(&[
        "msglog", "backup", server_s, "--name", "chat", "--dump", &dump_arg,
    ]);
    assert_eq!(first["kind"], "full");
    let streams = first["logs"]["streams"].as_u64().unwrap();
    assert!(streams > 20);

    chatvault_workload::advance(&server, 1).unwrap();
    let second = env.json(&["msglog", "backup", server_s, "--name", "chat"]);
    assert_eq!(second["kind"], "incremental");
    assert_eq!(second["parent"], first["snapshot"]);
    assert!(second["logs"]["streams_unchanged"].as_u64().unwrap() > 0);
    assert!(
        second["logs"]["bytes_written"].as_u64().unwrap()
            <= 2 * second["logs"]["bytes_appended"].as_u64().unwrap()
    );

    // ls: the streams of one tenant, with their ranges.
    let ls = env.json(&["msglog", "ls", "--tenant", "t0"]);
    let rows = ls["streams"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["path"].as_str().unwrap().starts_with("t0/"))
    );
    let busiest = rows
        .iter()
        .max_by_key(|r| r["records"].as_u64().unwrap())
        .unwrap();
    let path = busiest["path"].as_str().unwrap().to_owned();
    let conv = path.split('/').nth(1).unwrap().to_owned();

    // export: a seq range of that conversation, exactly those records.
    let out = env.ok(&[
        "msglog",
        "export",
        "--tenant",
        "t0",
        "--conversation",
        &conv,
        "--seq",
        "3-5",
    ]);
    let lines: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
    env.fails(&["msglog", "export", "--json"], 1);

    // restore: the conversation's last day as files, then the whole server.
    let part = env.path("part");
    let r = env.json(&[
        "msglog",
        "restore",
        "--tenant",
        "t0",
        "--conversation",
        &conv,
        "--last",
        "1d",
        "--target",
        part.to_str().unwrap(),
    ]);
    let logs = &r["logs"];
    assert!(logs["records"].as_u64().unwrap() > 0);
    assert!(logs["segments_read"].as_u64().unwrap() <= logs["segments_total"].as_u64().unwrap());
    let whole = env.path("whole");
    env.ok(&["msglog", "restore", "--target", whole.to_str().unwrap()]);
    // The latest set has no dump (only the first one was given one).
    assert_eq!(file_map(&whole), file_map(&server));

    // Point in time: the first set, by --at.
    let snaps = env.json(&["snapshots"]);
    let first_time = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == first["snapshot"])
        .unwrap()["time_unix_ms"]
        .as_i64()
        .unwrap();
    let at = env.path("at");
    let r = env.json(&[
        "msglog",
        "restore",
        "--at",
        &first_time.to_string(),
        "--target",
        at.to_str().unwrap(),
    ]);
    assert_eq!(r["snapshot"], first["snapshot"]);
    assert_eq!(
        std::fs::read(at.join("db/users.sql")).unwrap(),
        b"CREATE TABLE users (id int);\n"
    );
    // A selection of a snapshot that is not a backup set is refused.
    env.ok(&["backup", env.path("dump.sql").to_str().unwrap()]);
    let fs_snap = env.json(&["snapshots"]).as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let err = env.fails(&["msglog", "ls", &fs_snap], 1);
    assert!(err.contains("not a message-log backup set"), "{err}");
}

#[test]
fn demo_runs_and_restores_equal_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("chatvault")
        .unwrap()
        .env_clear()
        .args([
            "demo",
            "--days",
            "2",
            "--incrementals",
            "2",
            "--json",
            "--dir",
        ])
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["restored_equal"], true);
    assert_eq!(v["snapshots"], 3);
    assert!(v["dedup_ratio"].as_f64().unwrap() > 1.0);
}

#[test]
fn drills_cover_message_log_sets() {
    let env = Env::new();
    let server = env.path("server");
    chatvault_workload::generate(&server, chatvault_workload::ServerOptions::tiny(), 2).unwrap();
    env.ok(&[
        "msglog",
        "backup",
        server.to_str().unwrap(),
        "--name",
        "chat",
    ]);
    let doc = env.json(&["drill", "--verify-only"]);
    assert_eq!(doc["success"], true, "{doc}");
    let logs_and_media: u64 = file_map(&server).values().map(|b| b.len() as u64).sum();
    assert_eq!(doc["bytes"].as_u64().unwrap(), logs_and_media, "{doc}");
    // A scratch restore gives the server back.
    let scratch = env.path("scratch");
    let doc = env.json(&["drill", "--keep", "--target", scratch.to_str().unwrap()]);
    assert_eq!(doc["success"], true, "{doc}");
    let short = doc["snapshots"][0]["short_id"].as_str().unwrap();
    assert_eq!(file_map(&scratch.join(short)), file_map(&server));
    // Damage: the drill fails with exit 13 and names what it could not restore.
    for e in std::fs::read_dir(env.path("repo/data")).unwrap() {
        for f in std::fs::read_dir(e.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n / 3] ^= 0x55;
            std::fs::write(&p, b).unwrap();
        }
    }
    let out = env
        .cmd(&["drill", "--verify-only", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(13),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hold_forget_prune_release_and_snapshots_show_holds() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3u64 {
        std::fs::write(
            src.join("media.bin"),
            chatvault_workload::media_bytes(i, 2 << 20),
        )
        .unwrap();
        env.ok(&["backup", src.to_str().unwrap()]);
    }
    let list = env.json(&["snapshots"]);
    let oldest = list[0]["id"].as_str().unwrap().to_owned();
    let hold = env.json(&["hold", &oldest[..8], "--reason", "case 42"]);
    assert_eq!(hold["snapshot"], oldest.as_str());
    let list = env.json(&["snapshots"]);
    assert_eq!(list[0]["holds"][0]["reason"], "case 42");
    assert_eq!(list[1]["holds"], serde_json::json!([]));
    let human = String::from_utf8(env.ok(&["snapshots"])).unwrap();
    assert!(human.lines().nth(1).unwrap().contains("yes"), "{human}");
    // The held snapshot survives forget --prune, and says why.
    let done = env.json(&["forget", "--keep-last", "1", "--prune"]);
    let snaps = done["groups"][0]["snapshots"].as_array().unwrap();
    assert_eq!(snaps[2]["reasons"], serde_json::json!(["held"]));
    assert_eq!(done["removed"].as_array().unwrap().len(), 1);
    assert!(done["prune"]["bytes_freed"].as_u64().unwrap() > 1 << 20);
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 2);
    env.ok(&["check", "--read-data"]);
    // Release, and the next forget --prune removes it and frees its data.
    let released = env.json(&["release", &oldest[..8]]);
    assert_eq!(released["released"].as_array().unwrap().len(), 1);
    let dry = env.json(&["prune", "--dry-run"]);
    assert_eq!(dry["packs_deleted"], 0);
    let done = env.json(&["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(done["removed"].as_array().unwrap().len(), 1);
    assert!(done["prune"]["bytes_freed"].as_u64().unwrap() > 1 << 20);
    env.ok(&["check", "--read-data"]);
    env.ok(&[
        "restore",
        "latest",
        "--target",
        env.path("out").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(restored(&env, "out", &src).join("media.bin")).unwrap(),
        chatvault_workload::media_bytes(2, 2 << 20)
    );
}

/// Writes a lock object into the repository as another process would.
fn put_lock(env: &Env, kind: chatvault_core::LockKind, host: &str, pid: u32) -> PathBuf {
    let bytes = chatvault_core::LockRecord {
        kind,
        host: host.into(),
        pid,
        refresh: 0,
        created_unix_ms: 0,
        refreshed_unix_ms: 0,
    }
    .encode();
    let dir = env.path("repo/locks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(blake3::hash(&bytes).to_hex().as_str());
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_live_lock_gives_exit_12_and_unlock_clears_stale_ones() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    // Another host's prune is deleting: a backup waits, then gives up with 12.
    let other = put_lock(&env, chatvault_core::LockKind::Exclusive, "elsewhere", 1);
    let err = env.fails(&["backup", "--lock-wait", "1", src.to_str().unwrap()], 12);
    assert!(err.contains("exclusive lock"), "{err}");
    env.fails(&["prune", "--lock-wait", "1"], 12);
    // A lock of a process on this host that is gone is stale: unlock removes it; the
    // other host's lock needs --all (or --watch).
    let host = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-n")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let dead = put_lock(
        &env,
        chatvault_core::LockKind::Shared,
        &host,
        i32::MAX as u32,
    );
    let report = env.json(&["unlock"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 1);
    assert_eq!(report["left"][0]["kind"], "exclusive");
    assert!(!dead.exists() && other.exists());
    let report = env.json(&["unlock", "--all"]);
    assert_eq!(report["removed"].as_array().unwrap().len(), 1);
    env.ok(&["backup", src.to_str().unwrap()]);
    env.ok(&["prune"]);
}

#[test]
fn readers_wait_for_a_deleting_prune_unless_no_lock_and_leave_no_lock_behind() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let out = env.path("out");
    let o = out.to_str().unwrap();
    let lock = put_lock(&env, chatvault_core::LockKind::Exclusive, "elsewhere", 1);
    for args in [
        &["restore", "latest", "--target", o][..],
        &["check"],
        &["ls", "latest"],
        &["drill", "--verify-only"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--lock-wait", "1"]);
        let err = env.fails(&args, 12);
        assert!(err.contains("read lock"), "{args:?}: {err}");
    }
    // Without a lock (read-only storage), they read beside it.
    env.ok(&["--no-lock", "restore", "latest", "--target", o]);
    env.ok(&["--no-lock", "check", "--read-data"]);
    std::fs::remove_file(&lock).unwrap();
    env.ok(&["drill", "--verify-only"]);
    let locks = std::fs::read_dir(env.path("repo/locks")).unwrap().count();
    assert_eq!(locks, 0, "every reader removed its lock");
}

/// The state of stress worker `w` at step `k`: a file shared by every worker, a window of
/// recent files, and a file cycling between three contents (so a backup often re-adds
/// content whose last snapshot was just forgotten).
fn stress_state(dir: &Path, w: u64, k: u64) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    let put = |name: String, seed: u64, len: usize| {
        std::fs::write(dir.join(name), chatvault_workload::media_bytes(seed, len)).unwrap();
    };
    put("shared.bin".into(), 7, 300_000);
    put("cycle.bin".into(), 500 + k % 3, 400_000);
    for i in k.saturating_sub(2)..=k {
        put(
            format!("f{i}.bin"),
            w * 1000 + i,
            100_000 + i as usize * 1000,
        );
    }
}

/// Several `backup` processes and repeated `forget --prune` runs overlap; afterwards every
/// remaining snapshot restores exactly and `check --read-data` passes. The long version:
/// `CHATVAULT_STRESS_STEPS=40 cargo test --release -p chatvault-cli --test cli stress`.
#[test]
fn stress_concurrent_backups_and_prunes_lose_nothing() {
    let env = Env::new();
    let steps: u64 = std::env::var("CHATVAULT_STRESS_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let workers = 3u64;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let env = std::sync::Arc::new(env);
    let mut handles = Vec::new();
    for w in 0..workers {
        let env = env.clone();
        handles.push(std::thread::spawn(move || {
            let dir = env.path(&format!("src-{w}"));
            for k in 0..steps {
                stress_state(&dir, w, k);
                let tag = format!("w{w}k{k}");
                env.ok(&["backup", "--tag", &tag, dir.to_str().unwrap()]);
            }
        }));
    }
    let pruner = {
        let (env, done) = (env.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut ran, mut locked) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let out = env
                    .cmd(&["forget", "--keep-last", "2", "--prune", "--lock-wait", "20"])
                    .output()
                    .unwrap();
                match out.status.code() {
                    Some(0) => ran += 1,
                    Some(12) => locked += 1,
                    c => panic!(
                        "forget --prune exited {c:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ),
                }
            }
            (ran, locked)
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ran, _locked) = pruner.join().unwrap();
    assert!(ran >= 1, "at least one prune completed beside the backups");
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    let snaps = env.json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert!(snaps.len() >= workers as usize);
    for s in snaps {
        let tag = s["tags"][0].as_str().unwrap();
        let (w, k) = tag[1..].split_once('k').unwrap();
        let (w, k): (u64, u64) = (w.parse().unwrap(), k.parse().unwrap());
        let expect = env.path(&format!("expect-{tag}"));
        stress_state(&expect, w, k);
        let target = format!("out-{tag}");
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            env.path(&target).to_str().unwrap(),
        ]);
        let src = env.path(&format!("src-{w}"));
        let got = snapshot_of(&restored(&env, &target, &src));
        let want = snapshot_of(&expect);
        let names = |m: &BTreeMap<PathBuf, (u32, Vec<u8>, i64)>| -> Vec<(PathBuf, Vec<u8>)> {
            m.iter()
                .map(|(p, (_, c, _))| (p.clone(), c.clone()))
                .collect()
        };
        assert_eq!(names(&got), names(&want), "snapshot {tag}");
    }
}

/// The seed of the random kill points: `CHATVAULT_KILL_SEED` to replay a failure, else the
/// clock; printed either way (the test harness shows it when the test fails).
fn kill_seed() -> u64 {
    let seed = match std::env::var("CHATVAULT_KILL_SEED") {
        Ok(s) => s.parse().expect("CHATVAULT_KILL_SEED is a number"),
        Err(_) => u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        ),
    };
    eprintln!("kill seed {seed} (CHATVAULT_KILL_SEED={seed} replays it)");
    seed
}

/// SIGKILLs `prune` at random points of its run, many times: after each kill `check`
/// passes and every snapshot restores; a final prune completes.
#[test]
fn a_prune_killed_at_random_points_leaves_a_valid_repository() {
    let env = Env::new();
    let src = env.path("src");
    let mut seed = kill_seed();
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n.max(1)
    };
    let mut timing = None;
    for round in 0..8u64 {
        // New garbage each round: two backups, the older forgotten.
        for k in 0..2 {
            stress_state(&src, 0, round * 2 + k);
            env.ok(&["backup", src.to_str().unwrap()]);
        }
        env.ok(&["forget", "--keep-last", "1"]);
        let full = *timing.get_or_insert_with(|| {
            // Measure one prune on a copy to learn how long a run takes.
            let copy = env.path("timing-repo");
            let status = std::process::Command::new("cp")
                .args([
                    "-a",
                    env.path("repo").to_str().unwrap(),
                    copy.to_str().unwrap(),
                ])
                .status()
                .unwrap();
            assert!(status.success());
            let start = std::time::Instant::now();
            let mut c = env.cmd(&["prune"]);
            c.env("CHATVAULT_REPO", &copy)
                .env("CHATVAULT_CACHE_DIR", env.path("timing-cache"));
            assert!(c.output().unwrap().status.success());
            start.elapsed().as_millis() as u64
        });
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chatvault"))
            .env_clear()
            .env("CHATVAULT_REPO", env.path("repo"))
            .env("CHATVAULT_CACHE_DIR", env.path("cache"))
            .env("CHATVAULT_PASSWORD", PASSWORD)
            .arg("prune")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(next(full)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        env.ok(&["check", "--read-data"]);
        let target = format!("out-{round}");
        env.ok(&[
            "restore",
            "latest",
            "--target",
            env.path(&target).to_str().unwrap(),
        ]);
        let names = |m: BTreeMap<PathBuf, (u32, Vec<u8>, i64)>| -> Vec<(PathBuf, Vec<u8>)> {
            m.into_iter().map(|(p, (_, c, _))| (p, c)).collect()
        };
        assert_eq!(
            names(snapshot_of(&restored(&env, &target, &src))),
            names(snapshot_of(&src)),
            "round {round}"
        );
    }
    let report = env.json(&["prune"]);
    assert!(report["snapshots"].as_u64().unwrap() >= 1);
    let again = env.json(&["prune"]);
    assert_eq!(
        (
            again["packs_deleted"].as_u64(),
            again["packs_repacked"].as_u64()
        ),
        (Some(0), Some(0)),
        "a second prune found work: {again}; the first reported {report}"
    );
    env.ok(&["check", "--read-data"]);
    assert!(std::fs::read_dir(env.path("repo/locks")).map_or(true, |d| d.count() == 0));
}

#[test]
fn msglog_from_another_layout_counts_streams_per_pattern_and_strict_fails() {
    let env = Env::new();
    let server = env.path("other");
    let opts = chatvault_workload::ServerOptions {
        layout: chatvault_workload::DiskLayout::ConvFolders,
        ts_style: chatvault_workload::TsStyle::Rfc3339,
        ..chatvault_workload::ServerOptions::tiny()
    };
    chatvault_workload::generate(&server, opts, 2).unwrap();
    let dir = server.to_str().unwrap();
    let pattern = "{tenant}/conv/{conversation}/*.jsonl";
    // The wrong timestamp format with --strict: refused, nothing stored.
    let err = env.fails(
        &["msglog", "backup", dir, "--layout", pattern, "--strict"],
        1,
    );
    assert!(err.contains("resolves in none of the first"), "{err}");
    assert!(err.contains("--strict"), "{err}");
    let r = env.json(&[
        "msglog",
        "backup",
        dir,
        "--name",
        "other",
        "--layout",
        pattern,
        "--layout",
        "logs/{tenant}/{conversation}/*.jsonl",
        "--ts-format",
        "rfc3339",
        "--strict",
    ]);
    let patterns = r["layout"]["patterns"].as_array().unwrap();
    assert_eq!(patterns[0]["pattern"], pattern);
    let streams = patterns[0]["streams"].as_u64().unwrap();
    assert!(streams > 20);
    assert_eq!(patterns[1]["streams"], 0);
    assert_eq!(r["logs"]["streams"].as_u64().unwrap(), streams);
    assert!(r["layout"]["warnings"].as_array().unwrap().is_empty());
    // Human output names each pattern's count.
    let out = String::from_utf8(env.ok(&[
        "msglog",
        "backup",
        dir,
        "--name",
        "other",
        "--layout",
        pattern,
        "--ts-format",
        "rfc3339",
    ]))
    .unwrap();
    assert!(
        out.contains(&format!("layout {pattern}: {streams} streams")),
        "{out}"
    );
    let ls = env.json(&["msglog", "ls", "--tenant", "t1"]);
    assert!(!ls["streams"].as_array().unwrap().is_empty());
}

#[test]
fn msglog_from_postgres_and_back_into_a_table() {
    use chatvault_workload::mattermost::{POSTS_DDL, PostChange};
    let pg = chatvault_postgres::test_server::TestServer::start().unwrap();
    let url = pg.create_database("mattermost").unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(POSTS_DDL).unwrap();
    let mut server = chatvault_workload::Server::new(chatvault_workload::ServerOptions::tiny());
    let env = Env::new();
    // A password in the URL (trust authentication ignores it) is never printed.
    let secret_url = url.replace("chatvault@", "chatvault:hunter2@");
    for _ in 0..3 {
        for ch in server.next_day().post_changes() {
            match ch {
                PostChange::Create(p) => c
                    .execute(
                        "INSERT INTO posts (id, createat, updateat, deleteat, userid, channelid, \
                         message, editat) VALUES ($1, $2, $2, 0, $3, $4, $5, 0)",
                        &[&p.id, &p.create_at, &p.user_id, &p.channel_id, &p.message],
                    )
                    .unwrap(),
                PostChange::Edit { id, message, at } => c
                    .execute(
                        "UPDATE posts SET message = $2, editat = $3, updateat = $3 WHERE id = $1",
                        &[&id, &message, &at],
                    )
                    .unwrap(),
                PostChange::Delete { id, at } => c
                    .execute(
                        "UPDATE posts SET deleteat = $2, updateat = $2 WHERE id = $1",
                        &[&id, &at],
                    )
                    .unwrap(),
            };
        }
        let out = env
            .cmd(&[
                "msglog",
                "backup",
                "--postgres",
                &secret_url,
                "--pg-preset",
                "mattermost",
                "--pg-clock",
                "table",
                "--json",
            ])
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{all}");
        assert!(!all.contains("hunter2"), "{all}");
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            r["postgres"]["database"],
            format!("chatvault@127.0.0.1:{}/mattermost", pg.port())
        );
        assert!(r["logs"]["streams"].as_u64().unwrap() > 10);
    }
    // The busiest channel's last week, into an empty table of the running database.
    let ls = env.json(&["msglog", "ls", "--tenant", "mattermost"]);
    let busiest = ls["streams"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|s| s["records"].as_u64().unwrap())
        .unwrap()
        .clone();
    let channel = busiest["path"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_owned();
    c.batch_execute("CREATE TABLE restored_posts (LIKE posts)")
        .unwrap();
    let r = env.json(&[
        "msglog",
        "restore",
        "--tenant",
        "mattermost",
        "--conversation",
        &channel,
        "--last",
        "7d",
        "--postgres",
        &url,
        "--table",
        "restored_posts",
    ]);
    let rows = r["rows"].as_u64().unwrap();
    assert!(rows > 0 && !r["created"].as_bool().unwrap());
    let (n, other): (i64, i64) = {
        let row = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE channelid <> $1) FROM restored_posts",
                &[&channel],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((n as u64, other), (rows, 0));
    let same: bool = c
        .query_one(
            "SELECT NOT EXISTS (SELECT * FROM restored_posts EXCEPT SELECT * FROM posts)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same, "every restored row is the table's row");
    // Into a table that is not empty: refused.
    let err = env.fails(
        &[
            "msglog",
            "restore",
            "--tenant",
            "mattermost",
            "--postgres",
            &url,
            "--table",
            "restored_posts",
        ],
        1,
    );
    assert!(err.contains("not empty"), "{err}");
}

/// Regression: labels, host names and tags from the repository (which a writer key or
/// storage access chooses) were printed as they are, so an escape sequence in them acted
/// on the operator's terminal and a newline forged an output line.
#[test]
fn repository_strings_reach_the_terminal_escaped() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let evil = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}1m\u{7f}\u{202e}\nforged line";
    let pw = env.path("pw");
    std::fs::write(&pw, "another passphrase\n").unwrap();
    env.ok(&[
        "key",
        "add",
        "--role",
        "backup",
        "--label",
        evil,
        "--new-password-file",
        pw.to_str().unwrap(),
    ]);
    env.ok(&[
        "backup",
        "--host",
        evil,
        "--tag",
        evil,
        src.to_str().unwrap(),
    ]);
    let risky = |c: char| (c.is_control() && c != '\n') || c == '\u{202e}';
    for args in [&["key", "list"][..], &["snapshots"]] {
        let out = String::from_utf8(env.ok(args)).unwrap();
        assert!(!out.chars().any(risky), "{args:?}: {out:?}");
        assert!(out.contains(r"evil\u{1b}]0;pwned\u{7}"), "{args:?}: {out}");
        assert!(!out.contains("\nforged line"), "{args:?}: {out}");
        let mut json_args = args.to_vec();
        json_args.push("--json");
        let doc = String::from_utf8(env.ok(&json_args)).unwrap();
        assert!(!doc.trim_end().chars().any(risky), "{doc:?}");
        // The same strings for a JSON parser.
        let v: Value = serde_json::from_str(&doc).unwrap();
        assert!(v.to_string().contains("pwned"));
        let found = v
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["label"] == evil || e["host"] == evil);
        assert!(found, "{v}");
    }
}
