//! A chat server's PostgreSQL message table as a message-log source, and restore back
//! into a table.
//!
//! [`PgSource`] implements `chatvault_msglog::ChangeSource`: one stream per
//! conversation, incremental from each conversation's cursor, edits and deletions
//! caught by the rows' update time and appended as edit records and tombstones, all read
//! in one repeatable-read transaction per backup set. [`Preset`] maps Mattermost's
//! `posts` and Matrix Synapse's `events`; any other table or query is a [`Mapping`].
//! [`restore_to_table`] loads a set's selected conversations and time range into a table.
//!
//! A crate of its own so that the `postgres` client (and the tokio runtime inside it)
//! is compiled only into what needs it: the CLI, not an embedding server that links
//! `chatvault-msglog` alone.
//!
//! ```no_run
//! use chatvault_core::{KeySource, LocalBackend, OpenOptions, Repository};
//! use chatvault_msglog::{BackupOptions, BackupSession};
//! use chatvault_postgres::{PgConnect, PgSource, PgSourceOptions, Preset};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let repo = Repository::open(
//!     Box::new(LocalBackend::open("/srv/backup/chatvault")?),
//!     &KeySource::read_key_file(std::path::Path::new("/etc/chatvault/node.key"))?,
//!     OpenOptions::default(),
//! )?;
//! let db = PgConnect::new("postgresql://chatvault_ro@localhost/mattermost", None)?;
//! let source = PgSource::open(&db, PgSourceOptions::new(Preset::Mattermost.mapping()))?;
//! let mut set = BackupSession::start(&repo, BackupOptions { name: "mattermost".into(), ..BackupOptions::default() })?;
//! set.backup_changes(&source)?; // only what changed since each channel's cursor
//! source.finish()?;
//! let report = set.commit()?;
//! # let _ = report; Ok(()) }
//! ```
#![deny(missing_docs)]

mod connect;
mod error;
mod mapping;
mod restore;
mod source;
#[doc(hidden)]
pub mod test_server;

pub use connect::PgConnect;
pub use error::{Error, Result};
pub use mapping::{Mapping, Preset, Relation};
pub use restore::{TableRestoreReport, restore_to_table};
pub use source::{Clock, PgSource, PgSourceOptions};
