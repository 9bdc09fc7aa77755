//! Real S3 servers on 127.0.0.1 for tests: one `s3s-fs` process, or a 3-node Garage
//! cluster. Started on free ports by the test that needs them and stopped when the
//! handle is dropped (each child process is killed and reaped).
//!
//! The binaries are installed by `scripts/install-test-servers.sh` (which `.ci/run`
//! calls) into `$CHATVAULT_TEST_BIN`, by default `$HOME/.cache/chatvault/bin`; a missing
//! binary fails the test with that instruction rather than skipping it.
//!
//! Invariant: every address is on 127.0.0.1; no server started here listens elsewhere or
//! is told of any other host.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test servers are installed.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CHATVAULT_TEST_BIN") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/chatvault/bin")
}

/// The path of an installed test server, or a panic saying how to install it.
fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-test-servers.sh (CI does) to install the S3 \
         servers the remote-storage tests start",
        path.display()
    );
    path
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port on 127.0.0.1");
    l.local_addr().expect("local address").port()
}

/// Waits until something accepts connections on the port.
fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on 127.0.0.1:{port}: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on 127.0.0.1:{port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One `s3s-fs` server on a directory, with one bucket.
#[derive(Debug)]
pub struct S3sFs {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// The access key the server accepts.
    pub access_key: String,
    /// The secret key the server accepts.
    pub secret_key: String,
}

impl S3sFs {
    /// Starts a server with an empty bucket named `bucket`.
    pub fn start(bucket: &str) -> S3sFs {
        let dir = tempfile::tempdir().expect("a directory for s3s-fs");
        std::fs::create_dir_all(dir.path().join(bucket)).expect("the bucket's directory");
        let access_key = "chatvault-test-key".to_owned();
        let secret_key = format!("chatvault-test-secret-{}", std::process::id());
        let port = free_port();
        let mut child = Command::new(binary("s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        wait_listening(port, &mut child, "s3s-fs");
        S3sFs {
            child,
            dir,
            port,
            access_key,
            secret_key,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory the server stores its buckets in.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a client needs (AWS variables), to pass to a child process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A Garage cluster on loopback: `nodes` processes, replication factor 3, one bucket and
/// one key allowed on it.
#[derive(Debug)]
pub struct GarageCluster {
    dir: tempfile::TempDir,
    nodes: Vec<GarageNode>,
    /// Each node's `id@127.0.0.1:port`.
    ids: Vec<String>,
    /// The key id clients use.
    pub access_key: String,
    /// The key's secret.
    pub secret_key: String,
    /// The S3 region the cluster answers to.
    pub region: String,
}

#[derive(Debug)]
struct GarageNode {
    config: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    child: Option<Child>,
}

/// The RPC secret of test clusters: a fixed value, for a cluster reachable only on
/// 127.0.0.1 and deleted after the test.
const TEST_RPC_SECRET: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

impl GarageCluster {
    /// Starts `nodes` nodes (3 for the replication factor), joins them, applies a layout,
    /// and creates a key and `buckets` allowed for it.
    pub fn start(nodes: usize, buckets: &[&str]) -> GarageCluster {
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        let mut cluster = GarageCluster {
            nodes: Vec::new(),
            ids: Vec::new(),
            access_key: String::new(),
            secret_key: String::new(),
            region: "garage".into(),
            dir,
        };
        for i in 0..nodes {
            let node = cluster.write_config(i);
            cluster.nodes.push(node);
            cluster.start_node(i);
        }
        cluster.form_layout();
        cluster.create_key_and_buckets(buckets);
        for i in 0..nodes {
            cluster.wait_s3(i);
        }
        cluster
    }

    fn write_config(&self, i: usize) -> GarageNode {
        let root = self.dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&root).expect("node directory");
        let (rpc, s3) = (free_port(), free_port());
        let config = root.join("garage.toml");
        let text = format!(
            "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"lmdb\"\n\
             replication_factor = 3\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{TEST_RPC_SECRET}\"\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n",
            meta = root.join("meta").display(),
            data = root.join("data").display(),
        );
        std::fs::write(&config, text).expect("writing the node's config");
        GarageNode {
            config,
            rpc_port: rpc,
            s3_port: s3,
            child: None,
        }
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(node.config.with_file_name("garage.log"))
            .expect("the node's log file");
        let mut child = Command::new(binary("garage"))
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("starting garage");
        wait_listening(node.rpc_port, &mut child, "garage");
        node.child = Some(child);
    }

    /// Waits until node `i` answers on its S3 port.
    fn wait_s3(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(child) = node.child.as_mut() {
            wait_listening(node.s3_port, child, "garage's S3 API");
        }
    }

    /// Runs the `garage` CLI against node `i`; its standard output.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let out = Command::new(binary("garage"))
                .arg("-c")
                .arg(&self.nodes[i].config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("running the garage CLI");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            // A node that just started may not answer RPC yet.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "garage {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn node_id(&self, i: usize) -> String {
        let out = self.cli(i, &["node", "id", "-q"]);
        out.trim().to_owned()
    }

    fn form_layout(&mut self) {
        let ids: Vec<String> = (0..self.nodes.len()).map(|i| self.node_id(i)).collect();
        for id in &ids[1..] {
            self.cli(0, &["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().unwrap_or(id);
            let zone = format!("z{i}");
            self.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", short]);
        }
        self.cli(0, &["layout", "apply", "--version", "1"]);
        self.ids = ids;
    }

    fn create_key_and_buckets(&mut self, buckets: &[&str]) {
        let out = self.cli(0, &["key", "create", "chatvault-test"]);
        let field = |label: &str| {
            out.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim().eq_ignore_ascii_case(label)).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("no {label} in `garage key create` output"))
        };
        self.access_key = field("Key ID");
        self.secret_key = field("Secret key");
        for b in buckets {
            self.cli(0, &["bucket", "create", b]);
            self.cli(
                0,
                &[
                    "bucket",
                    "allow",
                    "--read",
                    "--write",
                    "--owner",
                    b,
                    "--key",
                    "chatvault-test",
                ],
            );
        }
    }

    /// Node `i`'s configuration file (what the `garage` CLI takes as `-c` or
    /// `GARAGE_CONFIG_FILE` to administer the cluster through that node).
    pub fn config_file(&self, i: usize) -> &Path {
        &self.nodes[i].config
    }

    /// Node `i`'s S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// How many data block files node `i` holds (growing while a backup uploads).
    pub fn data_files(&self, i: usize) -> usize {
        let mut n = 0;
        let mut stack = vec![self.nodes[i].config.with_file_name("data")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(_) => n += 1,
                    Err(_) => {}
                }
            }
        }
        n
    }

    /// Stops node `i` (killed, as a crash or a power cut would).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            kill(&mut c);
        }
    }

    /// Starts node `i` again, with its data, waits until it serves S3, and connects it to
    /// its peers (call [`wait_healthy`](Self::wait_healthy) once every node is back).
    pub fn restart(&mut self, i: usize) {
        self.start_node(i);
        self.wait_s3(i);
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != i && self.nodes[j].child.is_some())
            .collect();
        for j in running {
            let id = self.ids[i].clone();
            self.cli(j, &["node", "connect", &id]);
        }
    }

    /// Waits until node 0 reports no failed node (at most 90 s).
    pub fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let status = self.cli(0, &["status"]);
            if !status.contains("FAILED NODES") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the cluster did not heal within 90 s:\n{status}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The environment a client needs (AWS variables), to pass to a child process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", self.region.clone()),
        ]
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                kill(&mut c);
            }
        }
    }
}
