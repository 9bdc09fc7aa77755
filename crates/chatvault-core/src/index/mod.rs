//! The blob index: which pack holds each blob, where, and how to open it.
//!
//! Three layers, one file each:
//! - [`entry`]: one [`IndexEntry`] and its fixed-width encoding.
//! - [`segment`]: the plaintext body of an `index/<id>` object ([`SegmentBody`]): the
//!   segments it supersedes and a sorted run of entries. Sealing and signing wrap it
//!   elsewhere (the repository), so this module never sees a key.
//! - [`cache`]: the local RocksDB [`IndexCache`] that answers lookups during backup and
//!   restore.
//!
//! Invariants:
//! - The repository's segments are the truth; the cache is derived from them and may be
//!   cleared and rebuilt at any time. A segment is marked applied in the same atomic write
//!   as its entries.
//! - Memory never grows with repository size: a segment holds at most
//!   [`MAX_ENTRIES_PER_SEGMENT`] entries, the cache's memory is capped by its block cache,
//!   and whole-index passes stream through [`IndexCache::for_each_entry`].
//! - Hostile bytes (a segment body, a damaged cache value) decode to a `Corrupt` or
//!   `UnsupportedFormat` error naming the object, never a panic.

#[cfg(feature = "repository")]
mod cache;
mod entry;
#[cfg(feature = "repository")]
mod mark;
mod segment;

#[cfg(feature = "repository")]
pub(crate) use cache::{BlobCopy, IndexCache, Voucher};
pub(crate) use entry::IndexEntry;
#[cfg(feature = "repository")]
pub(crate) use mark::MarkSet;
pub(crate) use segment::{MAX_ENTRIES_PER_SEGMENT, Origin, SegmentBody};
