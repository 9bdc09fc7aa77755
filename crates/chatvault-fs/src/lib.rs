//! Frontend for directory trees (media stores, configuration, database files): walks a
//! directory, hands file contents to `chatvault-core` as byte streams and tree nodes, and
//! restores snapshots to disk.
//!
//! Not implemented yet: this crate is an empty shell until the filesystem frontend issue
//! lands. It exists so the workspace layout matches docs/ARCHITECTURE.md.
#![deny(missing_docs)]
