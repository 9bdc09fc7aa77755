//! The servers the documented commands talk to, started for one test and stopped when it
//! ends (each handle stops its processes on drop): an S3 server (s3s-fs) standing for AWS,
//! a 3-node Garage cluster for OPERATIONS.md's Garage example, and PostgreSQL holding a
//! Mattermost database; and the substitution that points the documents' addresses,
//! placeholder credentials and example channel id at them (substitution 6 of `docs.rs`).
//!
//! A missing server binary fails the test naming the script that installs it, as the
//! remote-storage and PostgreSQL tests do: nothing is skipped.

use chatvault_backend::test_servers::{GarageCluster, S3sFs};
use chatvault_postgres::test_server::TestServer;
use chatvault_workload::mattermost::{POSTS_DDL, PostChange};

/// The bucket the documents' S3 locations name.
pub const BUCKET: &str = "chat-backups";
/// The AWS endpoints the documents name: the s3s-fs server answers for them.
const AWS_ENDPOINTS: [&str; 1] = ["https://s3.eu-central-1.amazonaws.com"];
/// The Garage node OPERATIONS.md's example talks to: the cluster's first node.
const GARAGE_ENDPOINT: &str = "http://garage-1.internal:3900";
/// The documents' example Mattermost channel ids: the generated channel with most posts.
const EXAMPLE_CHANNELS: [&str; 2] = ["4xp9nq1oi3fzbxj8kq5h6w7rcy", "CHANNELID"];
/// The password of the read-only role (in `/etc/chatvault/pg.pass`).
pub const PG_PASSWORD: &str = "documented read-only password";
/// Days of the generated Mattermost server in `posts`.
const POST_DAYS: u32 = 8;

/// The running servers of one test.
pub struct Servers {
    pub s3: S3sFs,
    pub garage: Option<GarageCluster>,
    pub pg: TestServer,
    /// The generated Mattermost channel with the most posts.
    pub channel: String,
}

impl Servers {
    /// Starts s3s-fs with the documents' bucket, Garage when `garage`, and PostgreSQL with
    /// the Mattermost database; `role_sql` is OPERATIONS.md's SQL creating the read-only
    /// role, run in that database as a superuser, as the runbook says.
    pub fn start(garage: bool, role_sql: &str) -> Servers {
        let s3 = S3sFs::start(BUCKET);
        let garage = garage.then(|| GarageCluster::start(3, &[]));
        let pg = TestServer::start()
            .unwrap_or_else(|e| panic!("PostgreSQL for the documented commands: {e}"));
        let channel = mattermost(&pg, role_sql);
        Servers {
            s3,
            garage,
            pg,
            channel,
        }
    }

    /// `text` with the documents' servers, placeholder credentials and example channel
    /// replaced by the test's (substitution 6).
    pub fn fill(&self, text: &str) -> String {
        let mut text = text.to_owned();
        // The key id and secret `garage key create NAME` printed, as the cluster reports them.
        if let Some(name) = garage_key_created(&text).map(str::to_owned) {
            for (var, placeholder, flag) in [
                ("AWS_ACCESS_KEY_ID", "GK…", "--key-id"),
                ("AWS_SECRET_ACCESS_KEY", "…", "--secret-key"),
            ] {
                text = text.replace(
                    &format!("{var}={placeholder}"),
                    &format!("{var}=\"$(garage key info {flag} {name})\""),
                );
            }
        }
        for (var, value) in [
            ("AWS_ACCESS_KEY_ID", &self.s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", &self.s3.secret_key),
        ] {
            text = text.replace(&format!("{var}=…"), &format!("{var}={value}"));
        }
        for endpoint in AWS_ENDPOINTS {
            text = text.replace(endpoint, &self.s3.endpoint());
        }
        if let Some(g) = &self.garage {
            text = text.replace(GARAGE_ENDPOINT, &g.endpoint(0));
        }
        let port = self.pg.port();
        text = text
            .replace("@localhost/", &format!("@127.0.0.1:{port}/"))
            .replace(
                "host=/run/postgresql",
                &format!("host=127.0.0.1 port={port}"),
            );
        for example in EXAMPLE_CHANNELS {
            text = text.replace(example, &self.channel);
        }
        text
    }

    /// The environment the documented commands need to find the servers: the `garage`
    /// CLI's configuration, and libpq's address of the database (`psql`).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGHOST".to_owned(), "127.0.0.1".to_owned()),
            ("PGPORT".to_owned(), self.pg.port().to_string()),
        ];
        if let Some(g) = &self.garage {
            let config = g.config_file(0).to_str().expect("a UTF-8 path").to_owned();
            env.push(("GARAGE_CONFIG_FILE".to_owned(), config));
        }
        env
    }

    /// How many rows the documented restores put into `mattermost.restored_posts`.
    pub fn restored_posts(&self) -> i64 {
        connect(&self.pg.url("mattermost"))
            .query_one("SELECT count(*) FROM restored_posts", &[])
            .unwrap()
            .get(0)
    }
}

/// The NAME of a `garage key create NAME` in `text`.
fn garage_key_created(text: &str) -> Option<&str> {
    let rest = &text[text.find("garage key create ")? + "garage key create ".len()..];
    rest.split_whitespace().next()
}

/// The Mattermost database as its installation sets it up (owned by `mmuser`), its
/// `posts` filled with [`POST_DAYS`] generated days, then `role_sql` as the superuser;
/// the id of the channel with the most posts.
fn mattermost(pg: &TestServer, role_sql: &str) -> String {
    let mut admin = connect(&pg.url("postgres"));
    for sql in [
        "CREATE ROLE mmuser LOGIN",
        "CREATE DATABASE mattermost OWNER mmuser",
    ] {
        admin.batch_execute(sql).unwrap();
    }
    let url = pg.url("mattermost");
    let mut owner = connect(&url.replacen("chatvault@", "mmuser@", 1));
    owner.batch_execute(POSTS_DDL).unwrap();
    fill_posts(&mut owner);
    let mut admin = connect(&url);
    admin
        .batch_execute(&role_sql.replace("'…'", &format!("'{PG_PASSWORD}'")))
        .unwrap_or_else(|e| panic!("OPERATIONS.md's read-only role: {e}\n{role_sql}"));
    admin
        .query_one(
            "SELECT channelid FROM posts GROUP BY channelid ORDER BY count(*) DESC, channelid \
             LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0)
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// The generated server's days as Mattermost writes them into `posts`, in one transaction.
fn fill_posts(c: &mut postgres::Client) {
    let mut server = chatvault_workload::Server::new(chatvault_workload::ServerOptions::tiny());
    let mut tx = c.transaction().unwrap();
    let insert = tx
        .prepare(
            "INSERT INTO posts (id, createat, updateat, deleteat, userid, channelid, message, \
             editat) VALUES ($1, $2, $2, 0, $3, $4, $5, 0)",
        )
        .unwrap();
    let edit = tx
        .prepare("UPDATE posts SET message = $2, editat = $3, updateat = $3 WHERE id = $1")
        .unwrap();
    let delete = tx
        .prepare("UPDATE posts SET deleteat = $2, updateat = $2 WHERE id = $1")
        .unwrap();
    for _ in 0..POST_DAYS {
        for change in server.next_day().post_changes() {
            match change {
                PostChange::Create(p) => tx.execute(
                    &insert,
                    &[&p.id, &p.create_at, &p.user_id, &p.channel_id, &p.message],
                ),
                PostChange::Edit { id, message, at } => tx.execute(&edit, &[&id, &message, &at]),
                PostChange::Delete { id, at } => tx.execute(&delete, &[&id, &at]),
            }
            .unwrap();
        }
    }
    tx.commit().unwrap();
}
