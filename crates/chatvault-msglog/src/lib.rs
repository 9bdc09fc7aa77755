//! Frontend for per-conversation, append-only message logs, and the embedding API an IM
//! server links to back up from inside its own process.
//!
//! Not implemented yet: this crate is an empty shell until the message-log frontend issue
//! lands. It exists so the workspace layout matches docs/ARCHITECTURE.md.
#![deny(missing_docs)]
