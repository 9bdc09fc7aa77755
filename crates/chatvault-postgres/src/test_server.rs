//! A throw-away PostgreSQL server for tests and benches: `initdb` in a temporary
//! directory, `postgres` on a free 127.0.0.1 port, stopped and removed on drop (also when
//! a test panics).
//!
//! Not part of the supported API (`#[doc(hidden)]`): `tests/`, the CLI's tests and the
//! bench scripts use it. The binaries come from `$CHATVAULT_PG_BINDIR`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package, installed by
//! `scripts/install-postgres.sh`). PostgreSQL refuses to run as root, so as root the
//! server runs as the `postgres` system user the package creates (or `$CHATVAULT_PG_USER`),
//! through `setpriv`, which executes it in place: the child process *is* the server.
//!
//! Invariants: the server listens on 127.0.0.1 only, with trust authentication for local
//! connections (no password exists to leak); nothing outside its temporary directory is
//! written; `Drop` sends SIGQUIT (immediate shutdown), waits for the process and removes
//! the directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
#[derive(Debug)]
pub struct TestServer {
    dir: Option<tempfile::TempDir>,
    child: Child,
    port: u16,
}

fn bindir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("CHATVAULT_PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no PostgreSQL in /usr/lib/postgresql ({e}): run scripts/install-postgres.sh")
        })?
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no PostgreSQL server binaries: run scripts/install-postgres.sh".into())
}

/// `(uid, gid, name)` to run as when we are root.
fn run_as() -> Result<Option<(u32, u32, String)>, String> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let name = std::env::var("CHATVAULT_PG_USER").unwrap_or_else(|_| "postgres".into());
    let out = Command::new("id")
        .args(["-u", &name])
        .output()
        .map_err(|e| format!("id: {e}"))?;
    let uid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no system user {name:?}: run scripts/install-postgres.sh"))?;
    let out = Command::new("id")
        .args(["-g", &name])
        .output()
        .map_err(|e| format!("id: {e}"))?;
    let gid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no group of {name:?}"))?;
    Ok(Some((uid, gid, name)))
}

fn command(bin: &Path, user: &Option<(u32, u32, String)>) -> Command {
    match user {
        None => Command::new(bin),
        Some((uid, gid, _)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(bin);
            c
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl TestServer {
    /// Initialises and starts a server; fails with a message saying what is missing.
    pub fn start() -> Result<TestServer, String> {
        let bin = bindir()?;
        let user = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("chatvault-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        if let Some((uid, gid, _)) = &user {
            for p in [dir.path(), data.as_path()] {
                rustix::fs::chown(
                    p,
                    Some(rustix::fs::Uid::from_raw(*uid)),
                    Some(rustix::fs::Gid::from_raw(*gid)),
                )
                .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
        }
        let out = command(&bin.join("initdb"), &user)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "chatvault",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port()?;
        let log =
            std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?;
        let child = command(&bin.join("postgres"), &user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let mut server = TestServer {
            dir: Some(dir),
            child,
            port,
        };
        match server.wait_ready() {
            Ok(()) => Ok(server),
            Err(e) => {
                let _ = server.stop();
                Err(last_with_log(server, &e))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("postgres exited ({status})"));
            }
            if postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("postgres did not accept connections within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` as the superuser `chatvault` (trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://chatvault@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database; returns its URL.
    pub fn create_database(&self, db: &str) -> Result<String, postgres::Error> {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)?;
        c.batch_execute(&format!("CREATE DATABASE \"{db}\""))?;
        Ok(self.url(db))
    }

    /// The directory holding the server's binaries (for `pg_dump` in benches).
    pub fn bindir() -> Result<PathBuf, String> {
        bindir()
    }

    fn stop(&mut self) -> std::io::Result<()> {
        if let Ok(None) = self.child.try_wait() {
            let pid = rustix::process::Pid::from_child(&self.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.child.kill()?;
        }
        self.child.wait().map(|_| ())
    }
}

fn last_with_log(mut server: TestServer, e: &str) -> String {
    let log = server
        .dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.path().join("server.log")).ok())
        .unwrap_or_default();
    let _ = server.dir.take().map(tempfile::TempDir::close);
    format!("{e}; server log:\n{log}")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stop();
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}
