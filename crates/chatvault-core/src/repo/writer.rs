//! The write path: chunk → id → dedup → compress (parallel) → seal into packs → upload →
//! index segments.
//!
//! Threads: the caller's stream is chunked on a scoped reader thread; batches of chunks are
//! hashed, checked against the index and compressed on rayon's pool; a packer thread seals
//! them into the current pack; `U` uploader threads ([`OpenOptions::uploads`], 4 by
//! default) store finished packs, so a network store has `U` uploads in flight. Every
//! queue between them is bounded, so memory is flat whatever the input size. Worst case,
//! with `B` = [`BATCH`] and `M` = the maximum chunk size: `B × M` chunks queued from the
//! reader, `2 × B × M` in the batch being compressed (plaintext and output), `B × M`
//! queued for the packer, and `U + 2` packs (being filled, queued, `U` being uploaded):
//! `4 × B × M + (U + 2) × pack_size` (224 MiB with the defaults; typical chunks are 1 MiB,
//! so about 130 MiB in practice).
//!
//! [`OpenOptions::uploads`]: super::OpenOptions::uploads
//! Invariants: a blob is queued at most once per writer (the `pending` set, then the
//! index); index segments are written only for uploaded packs, and `finish` returns only
//! after every pack and segment is stored, so a snapshot saved afterwards names only
//! stored data.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use rayon::prelude::*;

use super::Repository;
use crate::backend::Backend;
use crate::blob::{self, BlobType, Codec};
use crate::chunker::{Chunk, Chunker};
use crate::crypto::wrap::{ObjectKind, WrapBinding};
use crate::crypto::{Key32, context};
use crate::error::{Error, Result};
use crate::id::{BlobId, RepoId};
use crate::index::{IndexEntry, Origin};
use crate::pack::{FinishedPack, PackBuilder};
use crate::progress::{Progress, ProgressEvent};
use crate::tree::{ContentRef, Tree};

/// Chunks hashed and compressed together.
const BATCH: usize = 8;
/// Index entries buffered before a segment is written mid-session.
const SEGMENT_FLUSH: usize = 50_000;
/// A pack is also closed at this many blobs: a 16 MiB pack of small files' chunks would
/// otherwise hold ~150k of them, and every structure that follows a pack (its header, the
/// pending set, the index batch) grows with its blob count, not its bytes.
const PACK_MAX_BLOBS: usize = 16_384;

/// Figures for one writer session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Plaintext bytes handed to the writer.
    pub bytes_in: u64,
    /// Blobs handed to the writer.
    pub blobs_in: u64,
    /// Blobs that were new and got stored.
    pub blobs_new: u64,
    /// Plaintext bytes of the new blobs.
    pub bytes_new: u64,
    /// Bytes of the new blobs after compression (before sealing).
    pub bytes_compressed: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Bytes of packs uploaded.
    pub pack_bytes: u64,
    /// Index segments written.
    pub segments: u64,
    /// Packs an earlier session of this key uploaded but did not index (it failed after
    /// the uploads), indexed by this one instead of storing their data again.
    pub packs_adopted: u64,
}

#[derive(Default)]
struct Counters {
    bytes_in: AtomicU64,
    blobs_in: AtomicU64,
    blobs_new: AtomicU64,
    bytes_new: AtomicU64,
    bytes_compressed: AtomicU64,
}

/// A blob ready for a pack.
struct Item {
    id: BlobId,
    blob_type: BlobType,
    codec: Codec,
    raw_len: u32,
    payload: Vec<u8>,
}

/// Writes blobs into a repository. Methods take `&self`, so several threads may write
/// through one writer (it is `Sync`); call [`finish`](Self::finish) once at the end.
pub struct BlobWriter<'r> {
    repo: &'r Repository,
    pending: Mutex<HashSet<BlobId>>,
    to_packer: Option<Sender<Item>>,
    done: Receiver<Result<Uploaded>>,
    threads: Vec<JoinHandle<()>>,
    unindexed: Mutex<Vec<IndexEntry>>,
    counters: Counters,
    packs: AtomicU64,
    pack_bytes: AtomicU64,
    segments: AtomicU64,
    /// Packs adopted when the session started ([`WriteStats::packs_adopted`]).
    adopted: AtomicU64,
    /// Whether this writer counts in the repository's writer session (its shared lock);
    /// cleared when `finish` hands the session on to `save_snapshot`.
    in_session: bool,
    /// Whether blobs the index already has are skipped. Off only for a prune's repack,
    /// which copies blobs the index places in packs about to be deleted.
    dedup: bool,
}

impl std::fmt::Debug for BlobWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").finish_non_exhaustive()
    }
}

/// What the packer thread needs, owned (the thread outlives no borrow).
struct PackerContext {
    repo_id: RepoId,
    data_pk: [u8; 32],
    generation: u32,
    auth_key: Key32,
    pack_size: usize,
}

impl Repository {
    /// Starts a writer session.
    ///
    /// The session holds the repository's shared lock (taken here, after waiting for any
    /// prune that is deleting) until the snapshot is saved with
    /// [`save_snapshot`](Repository::save_snapshot), the writer is dropped unfinished, or
    /// the repository handle is dropped; a prune deletes nothing while it is held. The
    /// index cache is brought up to date when the lock is taken, so blobs a prune deleted
    /// are never deduplicated against.
    pub fn writer(&self) -> Result<BlobWriter<'_>> {
        self.enter_session()?;
        // Blob presence lists the packs again, after the sync above (repo/presence.rs).
        self.packs.forget();
        let started = self.adopt_uploads().and_then(|adopted| {
            let w = self.start_writer(true)?;
            w.adopted.store(adopted, Ordering::Relaxed);
            Ok(w)
        });
        match started {
            Ok(w) => Ok(w),
            Err(e) => {
                self.leave_session();
                Err(e)
            }
        }
    }

    /// Indexes the packs an earlier session of this cache's writer uploaded but wrote no
    /// segment for (it failed or was killed after the uploads, index/cache/uploaded.rs):
    /// each pack still stored with its recorded size gets its entries into a segment, so
    /// this session finds its blobs present instead of storing them again. Runs inside
    /// the session (its shared lock held), so no prune deletes a pack meanwhile. Returns
    /// how many packs were adopted.
    fn adopt_uploads(&self) -> Result<u64> {
        let recorded = self.index.recorded_uploads()?;
        if recorded.is_empty() {
            return Ok(0);
        }
        let mut entries = Vec::new();
        let mut adopted = 0;
        for up in &recorded {
            match self.backend.stat(&up.pack.object_name()) {
                Ok(info) if info.size == up.size => {
                    entries.extend_from_slice(&up.entries);
                    adopted += 1;
                }
                // Gone (a prune took it) or not the pack recorded: nothing to adopt.
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if !entries.is_empty() {
            self.write_segments(Origin::Signer, &entries, &[])?;
        }
        self.index
            .forget_uploads(recorded.iter().map(|u| &u.pack))?;
        Ok(adopted)
    }

    /// A writer outside any session that stores every blob it is given (prune's repack).
    pub(crate) fn repack_writer(&self) -> Result<BlobWriter<'_>> {
        self.start_writer(false)
    }

    fn start_writer(&self, session: bool) -> Result<BlobWriter<'_>> {
        let ctx = PackerContext {
            repo_id: self.config.repo_id,
            data_pk: self.config.current_data_key()?,
            generation: self.config.key_generation,
            auth_key: self
                .generation_keys(self.config.key_generation)?
                .0
                .duplicate(),
            pack_size: self.config.pack_size as usize,
        };
        let (to_packer, from_main) = bounded::<Item>(BATCH);
        let (to_uploader, from_packer) = bounded::<Result<FinishedPack>>(1);
        let (to_main, done) = unbounded::<Result<Uploaded>>();
        let packer = std::thread::Builder::new()
            .name("chatvault-packer".into())
            .spawn(move || run_packer(ctx, from_main, to_uploader))?;
        let mut threads = vec![packer];
        // What the reader would otherwise fetch again (repo/reader.rs): kept for keys
        // that read; a `backup` key journals its trees' plaintext instead.
        let keep_sealed = self.cached_trees && self.secrets.role.can_read();
        for _ in 0..self.uploads.max(1) {
            let (backend, progress) = (self.backend.clone(), self.progress.clone());
            let (from_packer, to_main) = (from_packer.clone(), to_main.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("chatvault-upload".into())
                    .spawn(move || {
                        run_uploader(
                            backend.as_ref(),
                            &progress,
                            keep_sealed,
                            from_packer,
                            to_main,
                        )
                    })?,
            );
        }
        Ok(BlobWriter {
            repo: self,
            pending: Mutex::new(HashSet::new()),
            to_packer: Some(to_packer),
            done,
            threads,
            unindexed: Mutex::new(Vec::new()),
            counters: Counters::default(),
            packs: AtomicU64::new(0),
            pack_bytes: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            adopted: AtomicU64::new(0),
            in_session: session,
            dedup: session,
        })
    }
}

fn run_packer(ctx: PackerContext, items: Receiver<Item>, out: Sender<Result<FinishedPack>>) {
    let binding = WrapBinding {
        context: context::PACK_KEY_WRAP,
        repo_id: &ctx.repo_id,
        kind: ObjectKind::Pack,
        auth_key: &ctx.auth_key,
    };
    let mut pack = PackBuilder::new(ctx.generation);
    for item in items {
        pack.add(
            &ctx.repo_id,
            item.id,
            item.blob_type,
            item.codec,
            item.raw_len,
            &item.payload,
        );
        if pack.len() >= ctx.pack_size || pack.count() >= PACK_MAX_BLOBS {
            let full = std::mem::replace(&mut pack, PackBuilder::new(ctx.generation));
            if out.send(seal_pack(full, &ctx, &binding)).is_err() {
                return; // the uploader stopped on an error it already reported
            }
        }
    }
    if pack.count() > 0 {
        let _ = out.send(seal_pack(pack, &ctx, &binding));
    }
}

fn seal_pack(
    pack: PackBuilder,
    ctx: &PackerContext,
    binding: &WrapBinding<'_>,
) -> Result<FinishedPack> {
    pack.finish(&ctx.repo_id, &ctx.data_pk, binding)
        .map_err(|_| Error::corrupt("config", "the data public key is a low-order point"))
}

fn run_uploader(
    backend: &dyn Backend,
    progress: &Progress,
    keep_sealed: bool,
    packs: Receiver<Result<FinishedPack>>,
    out: Sender<Result<Uploaded>>,
) {
    for pack in packs {
        let pack = match pack {
            Ok(p) => p,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        let name = pack.id.object_name();
        match backend.put(&name, &pack.bytes) {
            // Same bytes, same name: an identical pack is already stored.
            Ok(()) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        }
        progress.emit(ProgressEvent::PackUploaded {
            id: pack.id,
            bytes: pack.bytes.len() as u64,
        });
        let sealed = keep_sealed.then(|| SealedCopies::of(&pack));
        let uploaded = Uploaded {
            size: pack.bytes.len() as u64,
            id: pack.id,
            generation: pack.generation,
            entries: pack.entries,
            sealed,
        };
        if out.send(Ok(uploaded)).is_err() {
            return;
        }
    }
}

/// An uploaded pack, as the main thread needs it for the index (the bytes are dropped).
struct Uploaded {
    id: crate::id::PackId,
    size: u64,
    generation: u32,
    entries: Vec<crate::pack::PackEntry>,
    /// What the local cache keeps of the pack, when it keeps anything.
    sealed: Option<SealedCopies>,
}

/// The bytes of a pack the local cache keeps (`index/cache/sealed.rs`): its trailer, and
/// the sealed bytes of its trees.
struct SealedCopies {
    trailer: Vec<u8>,
    trees: Vec<(BlobId, u32, Vec<u8>)>,
}

impl SealedCopies {
    fn of(pack: &FinishedPack) -> Self {
        let bytes = &pack.bytes;
        let trees = pack
            .entries
            .iter()
            .filter(|e| e.blob_type == BlobType::Tree)
            .filter_map(|e| {
                let range = e.offset as usize..e.offset as usize + e.length as usize;
                Some((e.id, e.offset, bytes.get(range)?.to_vec()))
            })
            .collect();
        SealedCopies {
            trailer: bytes[bytes.len().saturating_sub(crate::pack::TRAILER_LEN)..].to_vec(),
            trees,
        }
    }
}

/// Result of hashing and compressing one chunk.
enum Prepared {
    Known(BlobId, u32),
    New(Item),
}

impl<'r> BlobWriter<'r> {
    /// Chunks a stream and stores its new chunks; returns the chunk list in order.
    pub fn write_stream<R: Read + Send>(&self, reader: R) -> Result<Vec<ContentRef>> {
        let repo = self.repo;
        let (tx, rx) = bounded::<Result<Chunk>>(BATCH);
        std::thread::scope(|s| {
            // Owned by this closure, so an early error return drops it before the scope
            // joins the chunker thread, whose blocked `send` then fails instead of hanging.
            let rx = rx;
            s.spawn(move || {
                for c in Chunker::new(reader, repo.config.chunker, repo.gear.clone()) {
                    let stop = c.is_err();
                    if tx.send(c).is_err() || stop {
                        return;
                    }
                }
            });
            let mut refs = Vec::new();
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                batch.clear();
                for c in rx.iter().take(BATCH) {
                    batch.push(c?.data);
                }
                if batch.is_empty() {
                    break;
                }
                refs.extend(self.store_batch(BlobType::Data, std::mem::take(&mut batch))?);
            }
            Ok(refs)
        })
    }

    /// Chunks an in-memory buffer on the calling thread and stores its new chunks.
    ///
    /// Gives exactly the chunk list [`write_stream`](Self::write_stream) gives for the same
    /// bytes, without its reader thread: for the many small files of a media store, where
    /// a thread per file would cost more than the file.
    pub fn write_bytes(&self, data: &[u8]) -> Result<Vec<ContentRef>> {
        let repo = self.repo;
        if data.is_empty() {
            return Ok(Vec::new());
        }
        // Below the minimum chunk size the chunker makes one chunk of everything.
        if data.len() < repo.config.chunker.min_size as usize {
            return Ok(vec![self.write_blob(BlobType::Data, data)?]);
        }
        let mut refs = Vec::new();
        let mut batch = Vec::with_capacity(BATCH);
        for c in Chunker::new(data, repo.config.chunker, repo.gear.clone()) {
            batch.push(c?.data);
            if batch.len() == BATCH {
                refs.extend(self.store_batch(BlobType::Data, std::mem::take(&mut batch))?);
            }
        }
        if !batch.is_empty() {
            refs.extend(self.store_batch(BlobType::Data, batch)?);
        }
        Ok(refs)
    }

    /// Stores one blob (a small file, a tree, a record batch); returns its reference.
    pub fn write_blob(&self, blob_type: BlobType, data: &[u8]) -> Result<ContentRef> {
        if data.len() > blob::MAX_BLOB_SIZE {
            return Err(Error::invalid("blob", "larger than the 64 MiB blob limit"));
        }
        let prepared = self.prepare(blob_type, data)?;
        self.queue(prepared)
    }

    /// Queues a blob that is already compressed (a repack copying a verified blob).
    pub(crate) fn write_payload(
        &self,
        id: BlobId,
        blob_type: BlobType,
        codec: Codec,
        raw_len: u32,
        payload: Vec<u8>,
    ) -> Result<()> {
        self.queue(Prepared::New(Item {
            id,
            blob_type,
            codec,
            raw_len,
            payload,
        }))
        .map(|_| ())
    }

    /// Encodes and stores a tree; returns its id.
    ///
    /// A writer whose key cannot read also remembers it in its local journal (see
    /// `repo/journal.rs`), so its next run can build on it.
    pub fn write_tree(&self, tree: &Tree) -> Result<BlobId> {
        let bytes = tree.encode();
        let id = self.write_blob(BlobType::Tree, &bytes)?.id;
        self.repo.journal_tree(&id, &bytes)?;
        Ok(id)
    }

    fn store_batch(&self, blob_type: BlobType, chunks: Vec<Vec<u8>>) -> Result<Vec<ContentRef>> {
        let prepared: Vec<Result<Prepared>> = chunks
            .par_iter()
            .map(|data| self.prepare(blob_type, data))
            .collect();
        drop(chunks);
        prepared.into_iter().map(|p| self.queue(p?)).collect()
    }

    fn prepare(&self, blob_type: BlobType, data: &[u8]) -> Result<Prepared> {
        let repo = self.repo;
        let id = blob::blob_id(&repo.secrets.id_key, blob_type, data);
        let raw_len = data.len() as u32;
        self.counters
            .bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.counters.blobs_in.fetch_add(1, Ordering::Relaxed);
        repo.progress
            .emit(ProgressEvent::BytesRead(data.len() as u64));
        // A blob the index names in a pack that is gone is stored again (repo/presence.rs).
        if self.is_pending(&id) || (self.dedup && repo.blob_present(&id)?) {
            return Ok(Prepared::Known(id, raw_len));
        }
        let (codec, payload) = blob::compress(repo.config.compression_level, data);
        Ok(Prepared::New(Item {
            id,
            blob_type,
            codec,
            raw_len,
            payload: payload.into_owned(),
        }))
    }

    fn is_pending(&self, id: &BlobId) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    fn queue(&self, p: Prepared) -> Result<ContentRef> {
        let item = match p {
            Prepared::Known(id, len) => {
                self.repo.progress.emit(ProgressEvent::ChunkDeduplicated {
                    raw_len: u64::from(len),
                });
                return Ok(ContentRef { id, len });
            }
            Prepared::New(item) => item,
        };
        let r = ContentRef {
            id: item.id,
            len: item.raw_len,
        };
        // Two threads (or two chunks of one batch) may have prepared the same new blob.
        if !self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(item.id)
        {
            return Ok(r);
        }
        let c = &self.counters;
        c.blobs_new.fetch_add(1, Ordering::Relaxed);
        c.bytes_new
            .fetch_add(u64::from(item.raw_len), Ordering::Relaxed);
        c.bytes_compressed
            .fetch_add(item.payload.len() as u64, Ordering::Relaxed);
        self.repo.progress.emit(ProgressEvent::ChunkStored {
            raw_len: u64::from(item.raw_len),
            stored_len: item.payload.len() as u64,
        });
        let sender = self
            .to_packer
            .as_ref()
            .ok_or_else(|| Error::invalid("writer", "already finished"))?;
        if sender.send(item).is_err() {
            return Err(self.pipeline_error());
        }
        self.collect(false)?;
        Ok(r)
    }

    /// The error that stopped the packer or uploader.
    fn pipeline_error(&self) -> Error {
        for r in self.done.try_iter() {
            if let Err(e) = r {
                return e;
            }
        }
        Error::invalid("writer", "the pack pipeline stopped")
    }

    /// Takes uploaded packs' entries; writes a segment when enough have gathered (or all
    /// of them when `all`).
    fn collect(&self, all: bool) -> Result<()> {
        let mut unindexed = self.unindexed.lock().unwrap_or_else(|p| p.into_inner());
        for r in self.done.try_iter() {
            let pack = r?;
            self.repo.packs.uploaded(pack.id);
            if let Some(sealed) = &pack.sealed {
                let index = &self.repo.index;
                index.put_pack_trailer(&pack.id, pack.size, &sealed.trailer)?;
                for (id, offset, bytes) in &sealed.trees {
                    index.put_sealed_tree(id, &pack.id, *offset, bytes)?;
                }
            }
            self.packs.fetch_add(1, Ordering::Relaxed);
            self.pack_bytes.fetch_add(pack.size, Ordering::Relaxed);
            let entries: Vec<IndexEntry> = pack
                .entries
                .iter()
                .map(|e| e.index_entry(pack.id, pack.generation))
                .collect();
            // Until a segment names them: a failure from here on leaves the pack for the
            // next session to adopt rather than to store again.
            self.repo
                .index
                .record_upload(&pack.id, pack.size, &entries)?;
            unindexed.extend(entries);
        }
        if unindexed.is_empty() || (!all && unindexed.len() < SEGMENT_FLUSH) {
            return Ok(());
        }
        let written = self.repo.write_segments(Origin::Signer, &unindexed, &[])?;
        self.segments
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        // The cache has them now: they no longer need to be remembered as pending, nor
        // their packs as uploaded without a segment.
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut packs = HashSet::new();
        for e in unindexed.drain(..) {
            pending.remove(&e.blob);
            packs.insert(e.pack);
        }
        self.repo.index.forget_uploads(&packs)
    }

    /// Uploads the last pack, writes the remaining index segments and returns the figures.
    /// Only after this returns is the data safe to reference from a snapshot.
    pub fn finish(mut self) -> Result<WriteStats> {
        self.to_packer = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.collect(true)?;
        if std::mem::take(&mut self.in_session) {
            self.repo.session_awaits_snapshot();
        }
        let c = &self.counters;
        Ok(WriteStats {
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            blobs_in: c.blobs_in.load(Ordering::Relaxed),
            blobs_new: c.blobs_new.load(Ordering::Relaxed),
            bytes_new: c.bytes_new.load(Ordering::Relaxed),
            bytes_compressed: c.bytes_compressed.load(Ordering::Relaxed),
            packs: self.packs.load(Ordering::Relaxed),
            pack_bytes: self.pack_bytes.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            packs_adopted: self.adopted.load(Ordering::Relaxed),
        })
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Without `finish`, close the queue and let the threads end; packs they upload
        // without a segment are unreferenced and cost only space until a prune.
        self.to_packer = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if self.in_session {
            self.repo.leave_session();
        }
    }
}
