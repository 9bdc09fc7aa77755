//! The server generator's days as changes to a Mattermost-shaped `posts` table: each
//! message a new post, each edit an update of its message (`editat`, `updateat`), each
//! deletion a soft delete (`deleteat`, `updateat`), as Mattermost does them.
//!
//! The table is Mattermost's PostgreSQL `posts`
//! (`server/channels/db/migrations/postgres/000020_create_posts.up.sql` in
//! mattermost/mattermost, with the columns later migrations added): [`POSTS_DDL`]. This
//! crate stays free of a database client: callers apply the [`PostChange`]s with theirs.
//!
//! Invariants:
//! - Ids are 26 lowercase base-32 characters, as Mattermost's, derived from the
//!   generator's names (`post_id(t1, dm15, 7)` is the same in every run), so a test can
//!   find a message's post without a lookup table.
//! - A day's changes are in the day's record order (timestamps never decrease); an edit
//!   or deletion names a post created by an earlier change.

use crate::server::{ConversationId, Day, TenantId};

/// Mattermost's `posts` table on PostgreSQL, with its indexes on channel and update time.
pub const POSTS_DDL: &str = "\
CREATE TABLE posts (
    id varchar(26) PRIMARY KEY,
    createat bigint,
    updateat bigint,
    deleteat bigint,
    userid varchar(26),
    channelid varchar(26),
    rootid varchar(26),
    originalid varchar(26),
    message varchar(65535),
    type varchar(26),
    props jsonb,
    hashtags varchar(1000),
    filenames varchar(4000),
    fileids varchar(300),
    hasreactions boolean,
    editat bigint,
    ispinned boolean,
    remoteid varchar(26)
);
CREATE INDEX idx_posts_update_at ON posts(updateat);
CREATE INDEX idx_posts_create_at ON posts(createat);
CREATE INDEX idx_posts_channel_id_update_at ON posts(channelid, updateat);
CREATE INDEX idx_posts_channel_id_delete_at_create_at ON posts(channelid, deleteat, createat);
";

/// A new post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// `id`.
    pub id: String,
    /// `channelid`: the generator's conversation.
    pub channel_id: String,
    /// `userid`.
    pub user_id: String,
    /// `createat` (= `updateat` on creation), ms.
    pub create_at: i64,
    /// `message`.
    pub message: String,
}

/// One change to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostChange {
    /// `INSERT` a post (`deleteat` and `editat` 0).
    Create(Post),
    /// `UPDATE posts SET message, editat = at, updateat = at WHERE id`.
    Edit {
        /// The post.
        id: String,
        /// Its new message.
        message: String,
        /// When, ms.
        at: i64,
    },
    /// `UPDATE posts SET deleteat = at, updateat = at WHERE id` (a soft delete).
    Delete {
        /// The post.
        id: String,
        /// When, ms.
        at: i64,
    },
}

/// A 26-character Mattermost-style id from a label.
fn id26(label: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let hash = blake3::hash(label.as_bytes());
    let mut bits: u128 = u128::from_le_bytes(hash.as_bytes()[..16].try_into().expect("16"));
    let mut out = String::with_capacity(26);
    for _ in 0..26 {
        out.push(char::from(ALPHABET[(bits & 31) as usize]));
        bits >>= 5;
        if out.len() == 25 {
            bits = u128::from(hash.as_bytes()[16]);
        }
    }
    out
}

/// The `channelid` of a conversation.
pub fn channel_id(tenant: TenantId, conv: ConversationId) -> String {
    id26(&format!("channel {tenant}/{conv}"))
}

/// The `id` of the post a conversation's record `seq` created.
pub fn post_id(tenant: TenantId, conv: ConversationId, seq: u64) -> String {
    id26(&format!("post {tenant}/{conv}/{seq}"))
}

/// The `userid` of a user of a tenant.
pub fn user_id(tenant: TenantId, user: u32) -> String {
    id26(&format!("user {tenant}/u{user}"))
}

/// The text of a generated line's `"text"` field, unescaped.
fn text_of(line: &[u8]) -> String {
    let line = String::from_utf8_lossy(line);
    let Some(start) = line.find("\"text\":\"").map(|i| i + 8) else {
        return String::new();
    };
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

impl Day {
    /// The day's records as changes to a Mattermost `posts` table (module documentation).
    pub fn post_changes(&self) -> Vec<PostChange> {
        use crate::server::plan_kind;
        self.events
            .iter()
            .zip(self.records())
            .map(|(e, r)| {
                let tenant = r.tenant;
                let at = r.ts_ms as i64;
                match plan_kind(e) {
                    0 => PostChange::Create(Post {
                        id: post_id(tenant, r.conversation, r.seq),
                        channel_id: channel_id(tenant, r.conversation),
                        user_id: user_id(tenant, e.from),
                        create_at: at,
                        message: text_of(&r.line),
                    }),
                    1 => PostChange::Edit {
                        id: post_id(tenant, r.conversation, e.target),
                        message: text_of(&r.line),
                        at,
                    },
                    _ => PostChange::Delete {
                        id: post_id(tenant, r.conversation, e.target),
                        at,
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Server, ServerOptions};

    #[test]
    fn ids_look_like_mattermost_ids_and_are_stable() {
        let c = ConversationId {
            kind: crate::ConversationKind::Channel,
            index: 0,
        };
        let id = post_id(TenantId(1), c, 7);
        assert_eq!(id.len(), 26);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(id, post_id(TenantId(1), c, 7));
        assert_ne!(id, post_id(TenantId(1), c, 8));
        assert_ne!(channel_id(TenantId(0), c), channel_id(TenantId(1), c));
    }

    #[test]
    fn edits_and_deletes_name_earlier_posts() {
        let mut server = Server::new(ServerOptions::tiny());
        let mut created = std::collections::HashSet::new();
        let (mut edits, mut deletes) = (0, 0);
        for _ in 0..3 {
            for ch in server.next_day().post_changes() {
                match ch {
                    PostChange::Create(p) => {
                        assert!(created.insert(p.id));
                        assert!(!p.message.contains("\\n"));
                    }
                    PostChange::Edit { id, .. } => {
                        assert!(created.contains(&id));
                        edits += 1;
                    }
                    PostChange::Delete { id, .. } => {
                        assert!(created.contains(&id));
                        deletes += 1;
                    }
                }
            }
        }
        assert!(edits > 0 && deletes > 0, "{edits} {deletes}");
        assert_eq!(
            text_of(br#"{"text":"a\nb \"c\"","target":3}"#),
            "a\nb \"c\""
        );
    }
}
