//! Fills a Mattermost-shaped `posts` table with the workload generator's days, for the
//! benches (`benches/scripts/postgres_vs_restic.sh`) and for trying `msglog backup
//! --postgres` by hand.
//!
//! `cargo run --release -p chatvault-postgres --example mattermost_fill -- URL FROM DAYS [tiny|server3k]`
//! creates the table when FROM is 0, then applies days FROM..FROM+DAYS (new posts, edits,
//! soft deletions). `server3k` is a 3,000-user server: 3 teams of 1,000 users, about
//! 60,000 posts per working day. Prints one line: posts, edits, deletions applied.
#![allow(clippy::print_stdout)]

use chatvault_workload::mattermost::{POSTS_DDL, PostChange};
use chatvault_workload::{Server, ServerOptions};
use postgres::{Client, NoTls};

fn options(preset: &str) -> ServerOptions {
    match preset {
        "tiny" => ServerOptions::tiny(),
        "server3k" => ServerOptions {
            tenants: 3,
            users_per_tenant: 1000,
            direct_chats: 1500,
            groups: 100,
            channels: 10,
            attachment_share: 0.0,
            ..ServerOptions::default()
        },
        other => {
            eprintln!("unknown preset {other:?}: tiny or server3k");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(from), Some(days)) = (
        args.first(),
        args.get(1).and_then(|s| s.parse::<u32>().ok()),
        args.get(2).and_then(|s| s.parse::<u32>().ok()),
    ) else {
        eprintln!("usage: mattermost_fill URL FROM DAYS [tiny|server3k]");
        std::process::exit(2);
    };
    let opts = options(args.get(3).map_or("server3k", String::as_str));
    let mut c = Client::connect(url, NoTls).unwrap_or_else(|e| {
        eprintln!("mattermost_fill: {e}");
        std::process::exit(1);
    });
    if from == 0 {
        c.batch_execute(POSTS_DDL).expect("create posts");
    }
    let mut server = Server::resume(opts, from);
    let (mut posts, mut edits, mut deletes) = (0u64, 0u64, 0u64);
    for _ in 0..days {
        let changes = server.next_day().post_changes();
        let mut tx = c.transaction().expect("transaction");
        let insert = tx
            .prepare(
                "INSERT INTO posts (id, createat, updateat, deleteat, userid, channelid, rootid, \
                 originalid, message, type, props, hashtags, filenames, fileids, hasreactions, \
                 editat, ispinned) VALUES ($1, $2, $2, 0, $3, $4, '', '', $5, '', '{}', '', \
                 '[]', '[]', false, 0, false)",
            )
            .expect("prepare");
        let edit = tx
            .prepare("UPDATE posts SET message = $2, editat = $3, updateat = $3 WHERE id = $1")
            .expect("prepare");
        let delete = tx
            .prepare("UPDATE posts SET deleteat = $2, updateat = $2 WHERE id = $1")
            .expect("prepare");
        for ch in &changes {
            match ch {
                PostChange::Create(p) => {
                    tx.execute(
                        &insert,
                        &[&p.id, &p.create_at, &p.user_id, &p.channel_id, &p.message],
                    )
                    .expect("insert");
                    posts += 1;
                }
                PostChange::Edit { id, message, at } => {
                    tx.execute(&edit, &[id, message, at]).expect("edit");
                    edits += 1;
                }
                PostChange::Delete { id, at } => {
                    tx.execute(&delete, &[id, at]).expect("delete");
                    deletes += 1;
                }
            }
        }
        tx.commit().expect("commit");
    }
    println!("{posts} posts, {edits} edits, {deletes} deletions");
}
