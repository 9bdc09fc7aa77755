//! Keeping the local index cache in step with the repository's index segments, writing
//! new segments, and rebuilding segments from pack headers.
//!
//! Segment object: a signed envelope (magic `CVINDEX1`, sequence = writer sequence) whose
//! body is `nonce ‖ seal(index_key, aad = envelope header, segment body) ‖ tag`.
//! Invariants: a segment is applied only after its content hash, signature, writer trust
//! and seal all check out; a cache that has applied a segment the repository no longer
//! has is stale and is rebuilt from scratch; no step holds more than one segment in memory.

use std::collections::HashSet;
use std::path::Path;

use super::Repository;
use crate::crypto::aead;
use crate::envelope::{self, magic};
use crate::error::{Error, Result};
use crate::id::{PackId, SegmentId, content_hash};
use crate::index::{IndexCache, IndexEntry, MAX_ENTRIES_PER_SEGMENT, SegmentBody};
use crate::pack::{self, TRAILER_LEN};

/// Opens the cache under `dir/index`. If another process holds it (RocksDB's lock), a
/// private cache under `dir/index-<pid>-<random>` is used and rebuilt from segments.
pub(super) fn open_cache(dir: &Path) -> Result<(IndexCache, Option<std::path::PathBuf>)> {
    match IndexCache::open(&dir.join("index")) {
        Ok(c) => Ok((c, None)),
        Err(Error::Cache(msg)) if msg.to_ascii_lowercase().contains("lock") => {
            let private = dir.join(format!(
                "index-{}-{}",
                std::process::id(),
                hex::encode(crate::crypto::random_array::<4>())
            ));
            Ok((IndexCache::open(&private)?, Some(private)))
        }
        Err(e) => Err(e),
    }
}

/// More segments than this applied in one sync count as a bulk load.
const BULK_SEGMENTS: usize = 8;

impl Repository {
    /// Applies every segment in the repository that the cache lacks. Segments that fail
    /// verification are skipped and reported by [`index_problems`](Self::index_problems).
    pub(crate) fn sync_index(&self) -> Result<()> {
        let listed: Vec<SegmentId> = self
            .backend
            .list("index/")?
            .into_iter()
            .filter_map(|o| SegmentId::from_hex(o.name.strip_prefix("index/")?).ok())
            .collect();
        let listed_set: HashSet<SegmentId> = listed.iter().copied().collect();
        let mut applied: HashSet<SegmentId> = self.index.applied_segments()?.into_iter().collect();
        if applied.iter().any(|s| !listed_set.contains(s)) {
            self.index.clear()?;
            applied.clear();
        }
        let mut problems = Vec::new();
        let mut newly_applied = 0usize;
        for seg in listed.into_iter().filter(|s| !applied.contains(s)) {
            match self.load_segment(&seg) {
                Ok(body) => {
                    self.apply_to_cache(&seg, &body.entries)?;
                    newly_applied += 1;
                }
                Err(
                    e @ (Error::Corrupt { .. }
                    | Error::Untrusted { .. }
                    | Error::UnsupportedFormat { .. }),
                ) => problems.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        // A bulk load (a fresh cache, a rebuild) leaves many overlapping tables; one
        // compaction brings lookups back to a few probes (see index/cache.rs).
        if newly_applied > BULK_SEGMENTS {
            self.index.compact()?;
        }
        *self
            .index_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = problems;
        Ok(())
    }

    /// Segments skipped by the last index sync because they failed verification.
    pub fn index_problems(&self) -> Vec<String> {
        self.index_problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads and verifies one segment.
    pub(crate) fn load_segment(&self, id: &SegmentId) -> Result<SegmentBody> {
        let name = id.object_name();
        let bytes = self.backend.get(&name)?;
        if content_hash(&bytes) != *id.as_bytes() {
            return Err(Error::corrupt(&*name, "content does not match its name"));
        }
        let env = envelope::open(&bytes, magic::INDEX, &name, &self.config.repo_id)?;
        self.config
            .check_writer(&name, &env.signer, env.sequence, None)?;
        let plain = aead::open(&self.secrets.index_key, env.header, env.body)
            .map_err(|_| Error::corrupt(&*name, "segment failed authentication"))?;
        SegmentBody::decode(&plain, &name)
    }

    /// Writes `entries` as one or more signed, sealed segments and applies them to the
    /// cache. Returns the new segment ids.
    pub(crate) fn write_segments(
        &self,
        entries: &[IndexEntry],
        supersedes: &[SegmentId],
    ) -> Result<Vec<SegmentId>> {
        let mut ids = Vec::new();
        for (i, part) in entries.chunks(MAX_ENTRIES_PER_SEGMENT).enumerate() {
            let body = SegmentBody {
                // The superseded list rides on the first segment only.
                supersedes: if i == 0 {
                    supersedes.to_vec()
                } else {
                    Vec::new()
                },
                entries: part.to_vec(),
            };
            ids.push(self.put_segment(&body)?);
        }
        Ok(ids)
    }

    fn put_segment(&self, body: &SegmentBody) -> Result<SegmentId> {
        let plain = body.encode()?;
        let signer = &self.secrets.signer;
        let seq = self.lock_pins().next_writer_seq(&signer.public())?;
        let header = envelope::header(
            magic::INDEX,
            &signer.public(),
            seq,
            plain.len() + aead::OVERHEAD,
        );
        let sealed = aead::seal(&self.secrets.index_key, &header, &plain);
        let bytes = envelope::seal(magic::INDEX, signer, &self.config.repo_id, seq, &sealed);
        let id = SegmentId::from_bytes(content_hash(&bytes));
        self.backend.put(&id.object_name(), &bytes)?;
        self.apply_to_cache(&id, &body.entries)?;
        Ok(id)
    }

    /// Applies a segment's entries to the cache. First writer wins, except that a copy
    /// in a pack that exists replaces one in a pack that is lost: a blob stored again
    /// after its pack was lost is read from the new copy (repo/presence.rs).
    fn apply_to_cache(&self, seg: &SegmentId, entries: &[IndexEntry]) -> Result<()> {
        self.index
            .apply_segment_replacing(seg, entries, |present, new| {
                Ok(present.pack != new.pack
                    && !self.pack_present(&present.pack)?
                    && self.pack_present(&new.pack)?)
            })
    }

    /// Reads a pack's trailer and header into index entries.
    pub(crate) fn read_pack_entries(&self, name: &str, size: u64) -> Result<Vec<IndexEntry>> {
        let pack_id = name
            .rsplit('/')
            .next()
            .and_then(|h| PackId::from_hex(h).ok())
            .ok_or_else(|| Error::corrupt(name, "not a pack name"))?;
        if size < TRAILER_LEN as u64 {
            return Err(Error::corrupt(name, "too short to be a pack"));
        }
        let tail = self
            .backend
            .get_range(name, size - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
        let trailer = pack::read_trailer(&tail, size, name)?;
        let sealed =
            self.backend
                .get_range(name, trailer.header_offset, u64::from(trailer.header_len))?;
        self.entries_from_header(pack_id, name, &trailer, &sealed)
    }

    /// A pack's index entries from its trailer and its sealed header's bytes. The pack's
    /// unwrapped key is kept in the pack key cache: `check --read-data` reads the blobs
    /// next, and would otherwise read the trailer and unwrap the key a second time.
    pub(crate) fn entries_from_header(
        &self,
        pack_id: PackId,
        name: &str,
        trailer: &pack::reader::Trailer,
        sealed_header: &[u8],
    ) -> Result<Vec<IndexEntry>> {
        let key = std::sync::Arc::new(self.unwrap_pack_key(trailer, name)?);
        self.pack_keys.insert(pack_id, key.clone());
        let header = pack::open_header(
            sealed_header,
            &key,
            &self.config.repo_id,
            trailer.header_offset,
            trailer.generation(),
            name,
        )?;
        Ok(header
            .entries
            .iter()
            .map(|e| e.index_entry(pack_id, header.generation))
            .collect())
    }
}
