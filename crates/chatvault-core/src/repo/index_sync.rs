//! Keeping the local index cache in step with the repository's index segments, writing
//! new segments, and rebuilding segments from pack headers.
//!
//! Segment object: a signed envelope (magic `CVINDEX1`, sequence = writer sequence) whose
//! body is `nonce ‖ seal(index_key, aad = envelope header, segment body) ‖ tag`.
//! Invariants: a segment is applied only after its content hash, signature, writer trust
//! and seal all check out, with the voucher of the writer who signed it; a cache that has applied a segment the repository no longer
//! has is stale and is rebuilt from scratch; no step holds more than one segment in memory.

use std::collections::HashSet;
use std::path::Path;

use super::Repository;
use super::reader::read_bounded;
use crate::crypto::aead;
use crate::crypto::sign::PublicKey;
use crate::envelope::{self, magic};
use crate::error::{Error, Result};
use crate::id::{PackId, SegmentId, content_hash};
use crate::index::{IndexCache, IndexEntry, MAX_ENTRIES_PER_SEGMENT, Origin, SegmentBody, Voucher};
use crate::keys::Role;
use crate::limits::ObjectLimit;
use crate::pack::{self, TRAILER_LEN};

/// Opens the cache under `dir/index`. If another process (or another handle of this one)
/// holds it, a private cache under `dir/index-<pid>-<random>` is used and rebuilt from
/// segments.
///
/// Who holds `index/` is decided by an exclusive lock on `dir/index.lock`, taken before
/// RocksDB opens the directory: RocksDB moves and deletes its info logs there before it
/// takes its own `LOCK`, so two processes opening one directory at once could fail with
/// an I/O error ("unlink … LOG.old…: No such file") that is not a lock error. RocksDB's
/// own lock error still leads to a private cache (a process that did not take ours).
pub(super) fn open_cache(dir: &Path) -> Result<(IndexCache, Option<std::path::PathBuf>)> {
    let lock_path = dir.join("index.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    match lock.try_lock() {
        Ok(()) => match IndexCache::open(&dir.join("index")) {
            Ok(mut c) => {
                c.hold(lock);
                return Ok((c, None));
            }
            Err(Error::Cache(msg)) if msg.to_ascii_lowercase().contains("lock") => {}
            Err(e) => return Err(e),
        },
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    let private = dir.join(format!(
        "index-{}-{}",
        std::process::id(),
        hex::encode(crate::crypto::random_array::<4>())
    ));
    Ok((IndexCache::open(&private)?, Some(private)))
}

/// The associated data of a segment's seal: the envelope header, and the key generation
/// when the envelope says the body starts with it.
fn segment_aad(header: &[u8], flags: u16, generation: u32) -> Vec<u8> {
    let mut aad = header.to_vec();
    if flags & envelope::FLAG_GENERATION != 0 {
        aad.extend_from_slice(&generation.to_le_bytes());
    }
    aad
}

/// A verified segment and who vouches for its entries.
pub(crate) struct LoadedSegment {
    pub body: SegmentBody,
    /// Who announced the entries, resolved: the signer itself appears as `Carried(signer)`,
    /// so a key that rewrites the segment records the same origin.
    pub origin: Origin,
    pub voucher: Voucher,
}

/// More segments than this applied in one sync count as a bulk load.
const BULK_SEGMENTS: usize = 8;

impl Repository {
    /// Applies every segment in the repository that the cache lacks. Segments that fail
    /// verification are skipped and reported by [`index_problems`](Self::index_problems).
    pub(crate) fn sync_index(&self) -> Result<()> {
        // A prune may replace segments between our listing and our reads. It writes the
        // replacements before it deletes what they supersede, so listing again finds them;
        // a segment that vanished is never an error of its own.
        let mut attempts = 0;
        loop {
            match self.sync_index_once() {
                Err(Error::NotFound { .. }) if attempts < 8 => attempts += 1,
                other => return other,
            }
        }
    }

    fn sync_index_once(&self) -> Result<()> {
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
            match self.load_vouched_segment(&seg) {
                Ok(s) => {
                    self.index.apply_segment(&seg, &s.body.entries, s.voucher)?;
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
        Ok(self.load_vouched_segment(id)?.body)
    }

    /// Reads and verifies one segment, and works out who vouches for its entries.
    pub(crate) fn load_vouched_segment(&self, id: &SegmentId) -> Result<LoadedSegment> {
        let name = id.object_name();
        let bytes = read_bounded(self.backend(), &name, ObjectLimit::Segment)?;
        if content_hash(&bytes) != *id.as_bytes() {
            return Err(Error::corrupt(&*name, "content does not match its name"));
        }
        let env = envelope::open(&bytes, magic::INDEX, &name, &self.config.repo_id)?;
        self.config
            .check_writer(&name, id.as_bytes(), &env.signer, env.sequence, None)?;
        let (generation, sealed) = if env.flags & envelope::FLAG_GENERATION != 0 {
            let (g, rest) = env
                .body
                .split_first_chunk::<4>()
                .ok_or_else(|| Error::corrupt(&*name, "truncated"))?;
            (u32::from_le_bytes(*g), rest)
        } else {
            (0, env.body)
        };
        let index_key = self.generation_keys(generation)?.1;
        let aad = segment_aad(env.header, env.flags, generation);
        let plain = aead::open(index_key, &aad, sealed)
            .map_err(|_| Error::corrupt(&*name, "segment failed authentication"))?;
        let body = SegmentBody::decode(&plain, &name)?;
        // Only keys that read (prune, repair: full and admin keys) may sign for another
        // origin; a backup key's claim is ignored, so it cannot borrow an admin's rank.
        let signer_voucher = self.voucher(&env.signer);
        let origin = match body.origin {
            Origin::Signer => Origin::Carried(env.signer),
            _ if signer_voucher.tier() > Voucher::FULL => Origin::Carried(env.signer),
            o => o,
        };
        let voucher = match origin {
            Origin::Carried(writer) => self.voucher(&writer),
            Origin::PackHeaders => Voucher::new(Voucher::UNVERIFIED, signer_voucher.writer()),
            Origin::Signer => signer_voucher,
        };
        Ok(LoadedSegment {
            body,
            origin,
            voucher,
        })
    }

    /// How much readers and prune trust copies a writer's segments list (see [`Voucher`]):
    /// admin keys first, then full keys, then backup keys, then revoked writers whose
    /// objects the admin endorsed; the oldest writer first within a tier.
    pub(crate) fn voucher(&self, signer: &PublicKey) -> Voucher {
        let Some(position) = self.config.writers.iter().position(|w| w.key == *signer) else {
            return Voucher::new(Voucher::UNKNOWN, usize::MAX);
        };
        let tier = if self.config.revocations.iter().any(|r| r.key == *signer) {
            Voucher::REVOKED
        } else {
            match self.config.writers[position].role {
                Role::Admin => Voucher::ADMIN,
                Role::Full => Voucher::FULL,
                Role::Backup => Voucher::BACKUP,
            }
        };
        Voucher::new(tier, position)
    }

    /// Whether this writer may skip storing a blob because of a copy vouched by `v`: its
    /// own copies, and those of writers the admin marked as deduplication sources (admin
    /// and full keys by default). A copy announced by any other writer may not be genuine
    /// (a backup key can publish entries for any id), and this writer cannot check it
    /// (it may hold no data key), so it stores its own copy instead.
    pub(crate) fn trusted_for_dedup(&self, v: Voucher) -> bool {
        if v.tier() > Voucher::BACKUP {
            return false;
        }
        let Some(w) = self.config.writers.get(v.writer()) else {
            return false;
        };
        w.key == self.secrets.signer.public()
            || (w.dedup_source && !self.config.revocations.iter().any(|r| r.key == w.key))
    }

    /// Writes `entries` as one or more signed, sealed segments announced by `origin` and
    /// applies them to the cache. Returns the new segment ids.
    pub(crate) fn write_segments(
        &self,
        origin: Origin,
        entries: &[IndexEntry],
        supersedes: &[SegmentId],
    ) -> Result<Vec<SegmentId>> {
        let mut ids = Vec::new();
        // Carrying one's own announcements is announcing them.
        let origin = match origin {
            Origin::Carried(k) if k == self.secrets.signer.public() => Origin::Signer,
            o => o,
        };
        for (i, part) in entries.chunks(MAX_ENTRIES_PER_SEGMENT).enumerate() {
            let body = SegmentBody {
                origin,
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
        let generation = self.config.key_generation;
        let index_key = self.generation_keys(generation)?.1;
        // Segments sealed with a rotated index_key say which; others keep the v1 bytes.
        let (flags, prefix) = if self.config.keyed_generation(generation) > 0 {
            (envelope::FLAG_GENERATION, 4)
        } else {
            (0, 0)
        };
        let seq = self.lock_pins().next_writer_seq(&signer.public())?;
        let header = envelope::header_with_flags(
            magic::INDEX,
            flags,
            &signer.public(),
            seq,
            prefix + plain.len() + aead::OVERHEAD,
        );
        let mut sealed = Vec::with_capacity(prefix + plain.len() + aead::OVERHEAD);
        if prefix > 0 {
            sealed.extend_from_slice(&generation.to_le_bytes());
        }
        let aad = segment_aad(&header, flags, generation);
        aead::seal_into(index_key, &aad, &plain, &mut sealed);
        let bytes = envelope::seal_with_flags(
            magic::INDEX,
            flags,
            signer,
            &self.config.repo_id,
            seq,
            &sealed,
        );
        if bytes.len() as u64 > ObjectLimit::Segment.max_len() {
            // Never written: readers would refuse it unread.
            return Err(Error::invalid(
                "index segment",
                "too large (too many superseded segments)",
            ));
        }
        let id = SegmentId::from_bytes(content_hash(&bytes));
        self.backend.put(&id.object_name(), &bytes)?;
        let voucher = match body.origin {
            Origin::Signer => self.voucher(&signer.public()),
            Origin::Carried(writer) => self.voucher(&writer),
            Origin::PackHeaders => {
                Voucher::new(Voucher::UNVERIFIED, self.voucher(&signer.public()).writer())
            }
        };
        self.index.apply_segment(&id, &body.entries, voucher)?;
        Ok(id)
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

#[cfg(test)]
mod tests {
    use super::open_cache;

    /// Regression: processes opening one cache directory at the same moment could fail
    /// with an I/O error from RocksDB's log housekeeping, which ran before its own lock
    /// (a `backup` beside a `prune`, in the CLI's stress test). Now exactly one opener of
    /// each round gets `index/` and the others a private cache; none fails.
    #[test]
    fn openers_racing_for_one_cache_directory_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, barrier) = (dir.path().to_owned(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        open_cache(&dir)
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            let caches: Vec<_> = opened
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| panic!("round {round}: {e}")))
                .collect();
            let shared = caches
                .iter()
                .filter(|(_, private)| private.is_none())
                .count();
            assert_eq!(shared, 1, "round {round}");
            for (cache, private) in caches {
                drop(cache);
                if let Some(p) = private {
                    std::fs::remove_dir_all(p).unwrap();
                }
            }
        }
    }
}
