//! Frontend for a chat server's message logs, and the embedding API a chat server links to
//! back up from inside its own process.
//!
//! A chat server's history is many small append-only streams, one per conversation,
//! growing a little every day. A generic file backup stores each changed log again every
//! day; this crate stores each day's new records once, as *segments* (chunks cut on
//! record boundaries, with the seq and time range of their records), merges a stream's
//! small tail segments once into sealed ones ([`Tiering`], at most 2× write
//! amplification), and uses the ranges to restore a conversation, a seq range or a time
//! range by fetching only the segments that overlap it.
//!
//! A backup set ([`BackupSession`]) is one snapshot of the whole server: its message logs
//! (a folder of JSONL logs, or the records of a [`MessageSource`] the server implements),
//! its files (the media store, through `chatvault-fs`) and its database dumps.
//!
//! ```
//! use chatvault_core::{InitOptions, KdfParams, KeySource, MemoryBackend, Repository};
//! use chatvault_msglog::{BackupOptions, BackupSession, Selection, SetReader, View};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let logs = dir.path().join("logs/acme/general");
//! std::fs::create_dir_all(&logs)?;
//! std::fs::write(logs.join("2026-01.jsonl"), concat!(
//!     "{\"seq\":1,\"ts\":1767225600000,\"kind\":\"msg\",\"text\":\"hello\"}\n",
//!     "{\"seq\":2,\"ts\":1767225660000,\"kind\":\"edit\",\"target\":1,\"text\":\"hello all\"}\n",
//! ))?;
//!
//! let init = InitOptions {
//!     kdf: KdfParams::insecure_for_tests(),
//!     cache_dir: Some(dir.path().join("cache")),
//!     ..InitOptions::default()
//! };
//! let key = KeySource::passphrase("correct horse battery staple");
//! let repo = Repository::init(Box::new(MemoryBackend::new()), &key, init)?;
//!
//! let mut session = BackupSession::start(&repo, BackupOptions::default())?;
//! session.backup_logs_dir(&dir.path().join("logs"))?;
//! let report = session.commit()?;
//!
//! let set = SetReader::open(&repo, report.snapshot)?;
//! let sel = Selection { tenant: Some("acme".into()), ..Selection::default() };
//! let mut out = Vec::new();
//! set.export(&sel, View::Applied, &mut out)?;
//! assert_eq!(
//!     String::from_utf8(out)?,
//!     "{\"seq\":1,\"ts\":1767225600000,\"kind\":\"msg\",\"text\":\"hello all\",\"edited_ts\":1767225660000}\n",
//! );
//! # Ok(()) }
//! ```
//!
//! Other servers' data directories are described, not converted: a [`LogLayout`] names
//! where the logs are (path patterns with `{tenant}` and `{conversation}` captures) and
//! where a record keeps its seq and timestamp ([`RecordFields`], [`TsFormat`]);
//! [`BackupSession::backup_logs_layout`] backs them up and reports the streams each
//! pattern matched. Servers that keep their messages in a database and edit them in
//! place implement [`ChangeSource`] (`chatvault-postgres` does, for PostgreSQL tables):
//! [`BackupSession::backup_changes`] stores each change as an appended record, and
//! [`View::Applied`] / [`View::Latest`] give each message's state at the backup time.
//!
//! `examples/server_loop.rs` shows an embedding server: a daily incremental and a weekly
//! full run from a [`MessageSource`], with a `backup`-role key that cannot read history.
#![deny(missing_docs)]

mod backup;
mod changes;
mod error;
mod fields;
mod layout;
mod meta;
mod records;
mod restore;
mod segment;

pub use backup::{
    BackupOptions, BackupReport, BackupSession, Conversation, FileStats, LogStats, MAX_SET_NAME,
    MessageRecord, MessageSource, ParentChoice, Problem, SOURCE_KIND, backup_data_dir,
};
pub use changes::{Change, ChangeConversation, ChangeKind, ChangeSource, KnownConversation};
pub use error::{Error, Result};
pub use fields::{RecordFields, TsFormat};
pub use layout::{
    DEFAULT_TENANT, LayoutOptions, LayoutReport, LogLayout, PatternCount, StreamWarning,
};
pub use meta::{NodeKind, NodeMeta, Ranges, SegmentMeta, Stamp, Tier};
pub use records::{MAX_RECORD, Record};
pub use restore::{
    ReadStats, RestoreProblem, RestoreReport, Selection, SetReader, StreamInfo, View, restore,
    snapshot_at, verify,
};
pub use segment::Tiering;
