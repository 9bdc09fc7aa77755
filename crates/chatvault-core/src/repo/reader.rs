//! Reading blobs and trees: index lookup, pack key unwrap (cached), ranged read into a
//! per-thread buffer, open (decrypted in place, decompressed or copied once into the
//! caller's buffer).
//!
//! Invariants: every blob returned has been authenticated and its plaintext re-hashed to its
//! id; a blob of the wrong type is `Corrupt`, never returned; a copy that fails is never the end while another
//! copy of the blob verifies; nothing is allocated for a
//! blob before its index entry's range is checked against its pack's blob area (from the
//! trailer, cached with the pack's key) and its sealed length against its raw length, so
//! one read allocates at most [`MAX_SEALED_LEN`](crate::blob::MAX_SEALED_LEN); objects
//! read whole are read through [`read_bounded`], never beyond their kind's limit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Repository;
use crate::backend::Backend;
use crate::blob::{self, BlobType};
use crate::crypto::context;
use crate::crypto::wrap::{ObjectKind, WrapBinding};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::index::IndexEntry;
use crate::limits::ObjectLimit;
use crate::pack::{self, PackKey, TRAILER_LEN};
use crate::tree::Tree;

/// Most pack keys kept unwrapped in memory.
const PACK_KEY_CACHE: usize = 4096;

/// The largest per-thread read buffer kept between blob reads: room for a sealed chunk of
/// the largest default size (4 MiB) and its overhead. Larger blobs are read into a buffer
/// freed afterwards.
const SEALED_BUF_KEEP: usize = (4 << 20) + 4096;

thread_local! {
    /// Each thread's buffer for sealed blob bytes, decrypted in place, reused across reads.
    static SEALED_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Unwrapped pack data keys (zeroized when evicted or dropped), with each pack's format
/// version and blob area.
#[derive(Default)]
pub(crate) struct PackKeyCache {
    keys: Mutex<HashMap<PackId, Arc<PackKey>>>,
}

impl PackKeyCache {
    fn get(&self, id: &PackId) -> Option<Arc<PackKey>> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub(super) fn insert(&self, id: PackId, key: Arc<PackKey>) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PACK_KEY_CACHE {
            map.clear();
        }
        map.insert(id, key);
    }
}

/// A window of a pack fetched in one request: sealed bytes from `start`.
struct Window {
    pack: PackId,
    start: u64,
    bytes: Arc<Vec<u8>>,
}

/// Read-ahead for stores with per-request latency ([`Backend::reads_in_flight`] > 1): a
/// small blob is fetched with the [`WINDOW`] of its pack that follows it, and later reads
/// of blobs inside a kept window are served from memory. A restore walks files in backup
/// order, so the blobs of neighbouring small files lie in one window: one GET instead of
/// one per file (about 40 ms each on Garage). Bytes served from a window are opened and
/// verified like fetched ones.
///
/// Memory: at most [`WINDOWS`] windows of [`WINDOW`] bytes.
#[derive(Default)]
pub(crate) struct ReadAhead {
    windows: Mutex<std::collections::VecDeque<Window>>,
}

/// Bytes fetched ahead of a small blob.
const WINDOW: u64 = 4 << 20;
/// Windows kept: one and a half per read thread on a remote store (48 MiB).
const WINDOWS: usize = 12;
/// Blobs up to this sealed length are read through windows; larger ones are read alone.
const SMALL_BLOB: u32 = 256 << 10;
/// The most bytes [`Repository::read_blobs_into`] fetches in one ranged read.
const RUN_MAX: u64 = 16 << 20;

/// Blobs read with one ranged read, with their preferred copies (`None`: not indexed, or
/// not of the expected type; such a blob is a run of its own).
type Run = Vec<(BlobId, Option<IndexEntry>)>;

impl ReadAhead {
    /// Copies the bytes at `offset` of `pack` into `out` if a kept window holds them all.
    fn copy(&self, pack: &PackId, offset: u64, out: &mut [u8]) -> bool {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let end = offset + out.len() as u64;
        let Some(w) = windows.iter().find(|w| {
            w.pack == *pack && w.start <= offset && end <= w.start + w.bytes.len() as u64
        }) else {
            return false;
        };
        let from = (offset - w.start) as usize;
        out.copy_from_slice(&w.bytes[from..from + out.len()]);
        true
    }

    fn keep(&self, window: Window) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= WINDOWS {
            windows.pop_front();
        }
        windows.push_back(window);
    }
}

impl Repository {
    /// What a pack's key wrap of key generation `generation` is bound to.
    pub(crate) fn pack_binding(&self, generation: u32) -> Result<WrapBinding<'_>> {
        Ok(WrapBinding {
            context: context::PACK_KEY_WRAP,
            repo_id: &self.config.repo_id,
            kind: ObjectKind::Pack,
            auth_key: self.generation_keys(generation)?.0,
        })
    }

    pub(crate) fn unwrap_pack_key(
        &self,
        trailer: &pack::reader::Trailer,
        name: &str,
    ) -> Result<PackKey> {
        self.require_read("read blobs")?;
        let sk = self
            .secrets
            .data_secret(trailer.generation())
            .ok_or_else(|| {
                Error::corrupt(
                    name,
                    format!("unknown data key generation {}", trailer.generation()),
                )
            })?;
        trailer.unwrap_key(sk, &self.pack_binding(trailer.generation())?, name)
    }

    /// A pack's key: from memory, else from its trailer (the local cache's copy, or the
    /// store's, which is then cached).
    pub(super) fn pack_key(&self, pack: &PackId) -> Result<Arc<PackKey>> {
        if let Some(k) = self.pack_keys.get(pack) {
            return Ok(k);
        }
        let name = pack.object_name();
        if !self.cached_trees {
            // Fetched below, and not kept.
        } else if let Some((size, tail)) = self.index.pack_trailer(pack)? {
            let key = pack::read_trailer(&tail, size, &name)
                .and_then(|t| self.unwrap_pack_key(&t, &name));
            match key {
                Ok(key) => return Ok(self.keep_pack_key(*pack, key)),
                // Not trusted: damaged or stale, it is fetched again.
                Err(_) => self.index.drop_pack_trailer(pack)?,
            }
        }
        let size = self.backend.stat(&name)?.size;
        if size < TRAILER_LEN as u64 {
            return Err(Error::corrupt(&*name, "too short to be a pack"));
        }
        let tail = self
            .backend
            .get_range(&name, size - TRAILER_LEN as u64, TRAILER_LEN as u64)?;
        let trailer = pack::read_trailer(&tail, size, &name)?;
        let key = self.unwrap_pack_key(&trailer, &name)?;
        if self.cached_trees {
            self.index.put_pack_trailer(pack, size, &tail)?;
        }
        Ok(self.keep_pack_key(*pack, key))
    }

    fn keep_pack_key(&self, pack: PackId, key: PackKey) -> Arc<PackKey> {
        let key = Arc::new(key);
        self.pack_keys.insert(pack, key.clone());
        key
    }

    /// The id a blob with these bytes has (or would have) in this repository: keyed
    /// BLAKE3, so a frontend can check stored chunks against a source without storing
    /// anything.
    pub fn blob_id(&self, blob_type: BlobType, data: &[u8]) -> BlobId {
        crate::blob::blob_id(&self.secrets.id_key, blob_type, data)
    }

    /// Runs `f` where blob reads have as many threads as the backend wants reads in
    /// flight ([`Backend::reads_in_flight`]): on rayon's global pool when that is enough
    /// (a local disk), otherwise on a pool of this repository's with that many threads, so
    /// that the parallel iterators inside `f` keep that many requests to an object store
    /// going while the cores open what arrives. Restore, check and prune run in it; a
    /// frontend that reads many blobs in parallel runs its whole job in it.
    pub fn with_read_threads<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let want = self.backend.reads_in_flight();
        if want <= rayon::current_num_threads() {
            return f();
        }
        let pool = self.read_pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(want)
                .thread_name(|i| format!("chatvault-read-{i}"))
                .build()
                .ok()
        });
        match pool {
            Some(pool) => pool.install(f),
            // No threads to be had: the global pool reads as well, only slower.
            None => f(),
        }
    }

    /// Whether the index knows a blob.
    pub fn contains_blob(&self, id: &BlobId) -> Result<bool> {
        self.index.contains(id)
    }

    /// Reads, authenticates and verifies one blob. Needs a full or admin key.
    pub fn read_blob(&self, id: BlobId, expected: BlobType) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_blob_into(id, expected, &mut out)?;
        Ok(out)
    }

    /// [`read_blob`](Self::read_blob) into `out`, replacing its contents and reusing its
    /// allocation: a caller that keeps a few buffers reads any number of blobs without
    /// allocating or zeroing memory per blob. On an error `out` holds nothing usable.
    pub fn read_blob_into(&self, id: BlobId, expected: BlobType, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        self.with_sealed(id, expected, |key, meta, sealed, name| {
            blob::open_into(
                key,
                &self.secrets.id_key,
                &self.config.repo_id,
                meta,
                sealed,
                name,
                out,
            )
        })
    }

    /// [`read_blob_into`](Self::read_blob_into) for several blobs, one buffer each (the
    /// results in the same order): blobs whose preferred copies lie back to back in one
    /// pack (a file's chunks, written in order) are fetched with one ranged read, and the
    /// runs in parallel. On a store with request latency and block-sized reads (Garage
    /// reads whole 1 MiB blocks) that is one request and one pass over the blocks instead
    /// of one each. A blob that does not open from its run is read alone, which tries its
    /// other copies; so the results are those `read_blob_into` gives.
    pub fn read_blobs_into(
        &self,
        ids: &[BlobId],
        expected: BlobType,
        bufs: &mut [Vec<u8>],
    ) -> Vec<Result<()>> {
        use rayon::prelude::*;
        assert_eq!(ids.len(), bufs.len(), "one buffer per blob");
        let Ok(runs) = self.runs(ids, expected) else {
            // The index cache failed: each read alone reports it.
            return ids
                .iter()
                .zip(bufs.iter_mut())
                .map(|(id, buf)| self.read_blob_into(*id, expected, buf))
                .collect();
        };
        // Each run with its own buffers, disjoint.
        let mut parts = Vec::with_capacity(runs.len());
        let mut rest = bufs;
        for run in &runs {
            let (head, tail) = rest.split_at_mut(run.len());
            parts.push(head);
            rest = tail;
        }
        let done: Vec<Vec<Result<()>>> = runs
            .par_iter()
            .zip(parts.into_par_iter())
            .map(|(run, bufs)| self.read_run(run, expected, bufs))
            .collect();
        done.into_iter().flatten().collect()
    }

    /// `ids` cut into runs: consecutive blobs whose preferred copies lie back to back in
    /// one pack, at most [`RUN_MAX`] bytes; a blob the index does not know is a run of
    /// its own (its read reports it).
    fn runs(&self, ids: &[BlobId], expected: BlobType) -> Result<Vec<Run>> {
        let mut runs: Vec<Run> = Vec::new();
        let mut run_bytes = 0u64;
        for id in ids {
            let entry = self.index.get(id)?.filter(|e| e.blob_type == expected);
            let joins = match (runs.last().and_then(|r| r.last()), &entry) {
                (Some((_, Some(prev))), Some(e)) => {
                    prev.pack == e.pack
                        && u64::from(prev.offset) + u64::from(prev.length) == u64::from(e.offset)
                        && run_bytes + u64::from(e.length) <= RUN_MAX
                }
                _ => false,
            };
            let len = entry.as_ref().map_or(0, |e| u64::from(e.length));
            if joins {
                run_bytes += len;
                runs.last_mut().expect("joined a run").push((*id, entry));
            } else {
                run_bytes = len;
                runs.push(vec![(*id, entry)]);
            }
        }
        Ok(runs)
    }

    /// Reads one run into `bufs`: one ranged read, each blob opened from it; a blob that
    /// fails (or a run of one) is read alone.
    fn read_run(
        &self,
        run: &[(BlobId, Option<IndexEntry>)],
        expected: BlobType,
        bufs: &mut [Vec<u8>],
    ) -> Vec<Result<()>> {
        use rayon::prelude::*;
        let alone = |id: &BlobId, buf: &mut Vec<u8>| self.read_blob_into(*id, expected, buf);
        let fetched = match run {
            [(_, Some(first)), .., (_, Some(last))] => self.fetch_run(first, last),
            _ => None,
        };
        let Some((key, start, mut sealed)) = fetched else {
            return run
                .iter()
                .zip(bufs.iter_mut())
                .map(|((id, _), buf)| alone(id, buf))
                .collect();
        };
        let name = run[0]
            .1
            .as_ref()
            .map(|e| e.pack.object_name())
            .unwrap_or_default();
        // Each blob's own bytes, disjoint (back to back from `start`), opened in parallel.
        let mut slices: Vec<&mut [u8]> = Vec::with_capacity(run.len());
        let mut rest = &mut sealed[..];
        let mut at = start;
        for (_, entry) in run {
            let e = entry
                .as_ref()
                .expect("a fetched run names only indexed blobs");
            let skip = (u64::from(e.offset) - at) as usize;
            let (own, tail) = std::mem::take(&mut rest)[skip..].split_at_mut(e.length as usize);
            slices.push(own);
            rest = tail;
            at = u64::from(e.offset) + u64::from(e.length);
        }
        run.par_iter()
            .zip(slices.into_par_iter())
            .zip(bufs.par_iter_mut())
            .map(|(((id, entry), bytes), buf)| {
                let Some(e) = entry else {
                    return alone(id, buf);
                };
                let opened = blob::open_into(
                    &key,
                    &self.secrets.id_key,
                    &self.config.repo_id,
                    &e.blob_meta(),
                    bytes,
                    &name,
                    buf,
                );
                // Damaged here: the blob's other copies may hold it.
                opened.or_else(|_| alone(id, buf))
            })
            .collect()
    }

    /// The pack key and the sealed bytes from `first` to the end of `last` (same pack,
    /// back to back), or `None` when the run is not to be read whole (a range outside the
    /// pack's blob area, a key domain, a failed read): its blobs are then read alone.
    fn fetch_run(
        &self,
        first: &IndexEntry,
        last: &IndexEntry,
    ) -> Option<(Arc<PackKey>, u64, Vec<u8>)> {
        if first.domain != 0 || last.domain != 0 || self.require_read("read blobs").is_err() {
            return None;
        }
        let key = self.pack_key(&first.pack).ok()?;
        let (start, end) = (
            u64::from(first.offset),
            u64::from(last.offset) + u64::from(last.length),
        );
        if end > key.blob_area || end <= start {
            return None;
        }
        let bytes = self
            .backend
            .get_range(&first.pack.object_name(), start, end - start)
            .ok()?;
        (bytes.len() as u64 == end - start).then_some((key, start, bytes))
    }

    /// [`read_blob`](Self::read_blob) without a copy: `f` gets the verified plaintext,
    /// which lives in per-thread buffers until `f` returns, and its result is returned.
    /// `f` runs only when every check passed.
    pub fn read_blob_with<R>(
        &self,
        id: BlobId,
        expected: BlobType,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        // `f` is called at most once, by the first copy that verifies; a copy that fails
        // leaves it for the next.
        let mut f = Some(f);
        self.with_sealed(id, expected, |key, meta, sealed, name| {
            self.open_sealed_with(key, meta, sealed, name, |plain| f.take().map(|f| f(plain)))?
                .ok_or_else(|| Error::corrupt(name, "a blob was opened twice"))
        })
    }

    /// Reads one given copy of a blob (not its other copies) and hands the verified
    /// plaintext to `f`: prune's check of a copy it is about to rely on.
    pub(super) fn read_copy_with<R>(
        &self,
        entry: &IndexEntry,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let mut f = Some(f);
        self.with_sealed_copy(entry, entry.blob_type, &mut |key, meta, sealed, name| {
            self.open_sealed_with(key, meta, sealed, name, |plain| f.take().map(|f| f(plain)))?
                .ok_or_else(|| Error::corrupt(name, "a blob was opened twice"))
        })
    }

    /// Opens sealed blob bytes in place (authenticate, decompress, re-hash to the id) and
    /// hands the plaintext to `f`.
    fn open_sealed_with<R>(
        &self,
        key: &PackKey,
        meta: &blob::BlobMeta,
        sealed: &mut [u8],
        name: &str,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        blob::open_in_place_with(
            key,
            &self.secrets.id_key,
            &self.config.repo_id,
            meta,
            sealed,
            name,
            f,
        )
    }

    /// Looks a blob up and hands its pack key, meta, sealed bytes (in this thread's read
    /// buffer) and pack name to `open`. When the preferred copy is missing or fails `open`
    /// (a damaged or lost pack, or an index entry that names bytes which are not this
    /// blob), the blob's other copies are tried in preference order; the first error is
    /// returned if none verifies.
    fn with_sealed<R>(
        &self,
        id: BlobId,
        expected: BlobType,
        mut open: impl FnMut(&PackKey, &blob::BlobMeta, &mut [u8], &str) -> Result<R>,
    ) -> Result<R> {
        self.require_read("read blobs")?;
        let first = self.index.get(&id)?.ok_or_else(|| Error::NotFound {
            object: format!("blob {id}").into(),
        })?;
        let err = match self.with_sealed_copy(&first, expected, &mut open) {
            Err(e) if matches!(e, Error::Corrupt { .. } | Error::NotFound { .. }) => e,
            done => return done,
        };
        for other in self.index.copies(&id)? {
            if other.entry.pack == first.pack && other.entry.offset == first.offset {
                continue;
            }
            if let Ok(r) = self.with_sealed_copy(&other.entry, expected, &mut open) {
                return Ok(r);
            }
        }
        Err(err)
    }

    /// [`with_sealed`](Self::with_sealed) for one copy.
    pub(super) fn with_sealed_copy<R>(
        &self,
        entry: &IndexEntry,
        expected: BlobType,
        open: &mut impl FnMut(&PackKey, &blob::BlobMeta, &mut [u8], &str) -> Result<R>,
    ) -> Result<R> {
        let id = entry.blob;
        let name = entry.pack.object_name();
        if entry.blob_type != expected {
            return Err(Error::corrupt(
                format!("{name}#{id}"),
                format!(
                    "expected a {expected:?} blob, the index says {:?}",
                    entry.blob_type
                ),
            ));
        }
        if entry.domain != 0 {
            return Err(Error::corrupt(
                format!("{name}#{id}"),
                "key domains other than 0 are not supported by this build",
            ));
        }
        let key = self.pack_key(&entry.pack)?;
        // The entry's sealed length is within MAX_SEALED_LEN (checked when it was
        // decoded); its range must also lie in the pack's blob area before a byte is
        // allocated or fetched for it.
        if u64::from(entry.offset) + u64::from(entry.length) > key.blob_area {
            return Err(Error::corrupt(
                format!("{name}#{id}"),
                "the index places the blob past its pack's blob area",
            ));
        }
        let meta = entry.blob_meta();
        // Taken out of the thread-local for the call, so that `open` may read blobs too
        // (such a nested read starts from an empty buffer).
        let mut buf = SEALED_BUF.take();
        let len = entry.length as usize;
        // Grown (and zeroed) only when a longer blob comes; the backend overwrites the
        // part it reads.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let sealed = &mut buf[..len];
        let r = if expected == BlobType::Tree {
            self.open_tree_copy(entry, &key, &meta, sealed, &name, open)
        } else {
            self.fetch_sealed(entry, key.blob_area, sealed, &name)
                .and_then(|()| open(&key, &meta, sealed, &name))
        };
        if buf.len() <= SEALED_BUF_KEEP {
            SEALED_BUF.set(buf);
        }
        r
    }

    /// Reads a blob's sealed bytes into `sealed`: a small one on a store with request
    /// latency from a read-ahead window ([`ReadAhead`]), fetching the window if none
    /// holds it; otherwise with one ranged read. `blob_area` bounds the window.
    fn fetch_sealed(
        &self,
        entry: &IndexEntry,
        blob_area: u64,
        sealed: &mut [u8],
        name: &str,
    ) -> Result<()> {
        let offset = u64::from(entry.offset);
        if entry.length > SMALL_BLOB || self.backend.reads_in_flight() <= 1 {
            return self.backend.get_range_into(name, offset, sealed);
        }
        if self.read_ahead.copy(&entry.pack, offset, sealed) {
            return Ok(());
        }
        // The blob lies in the blob area (checked by the caller), so the window holds it.
        let len = WINDOW.min(blob_area - offset).max(sealed.len() as u64);
        let bytes = self.backend.get_range(name, offset, len)?;
        let Some(own) = bytes.get(..sealed.len()) else {
            return Err(Error::backend(
                name,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short ranged read"),
            ));
        };
        sealed.copy_from_slice(own);
        self.read_ahead.keep(Window {
            pack: entry.pack,
            start: offset,
            bytes: Arc::new(bytes),
        });
        Ok(())
    }

    /// Opens a tree's copy from the local cache of sealed trees when it holds exactly this
    /// copy and it opens; otherwise from the store, caching the bytes once they opened
    /// (a key that cannot read never gets here). `sealed` is the buffer for the bytes.
    fn open_tree_copy<R>(
        &self,
        entry: &IndexEntry,
        key: &PackKey,
        meta: &blob::BlobMeta,
        sealed: &mut [u8],
        name: &str,
        open: &mut impl FnMut(&PackKey, &blob::BlobMeta, &mut [u8], &str) -> Result<R>,
    ) -> Result<R> {
        let id = entry.blob;
        if self.cached_trees
            && self
                .index
                .sealed_tree(&id, &entry.pack, entry.offset, sealed)?
        {
            match open(key, meta, sealed, name) {
                Err(Error::Corrupt { .. }) => self.index.drop_sealed_tree(&id)?,
                done => return done,
            }
        }
        self.backend
            .get_range_into(name, u64::from(entry.offset), sealed)?;
        if !self.cached_trees {
            return open(key, meta, sealed, name);
        }
        // Opening decrypts in place: the sealed bytes are kept first, for the cache.
        let copy = sealed.to_vec();
        let r = open(key, meta, sealed, name)?;
        self.index
            .put_sealed_tree(&id, &entry.pack, entry.offset, &copy)?;
        Ok(r)
    }

    /// Reads and decodes a tree.
    pub fn read_tree(&self, id: BlobId) -> Result<Tree> {
        let bytes = self.read_blob(id, BlobType::Tree)?;
        Tree::decode(&bytes, &format!("tree {id}"))
    }
}

/// Reads a whole object of a kind with a size limit: its size is asked first, and an
/// object over the limit is `Corrupt` without a byte of it being read; otherwise exactly
/// that many bytes are read (an object that grew meanwhile is read no further). For
/// everything read whole before it can be verified: the config, key slots, index
/// segments, snapshots, holds and locks.
pub(crate) fn read_bounded(
    backend: &dyn Backend,
    name: &str,
    kind: ObjectLimit,
) -> Result<Vec<u8>> {
    let size = backend.stat(name)?.size;
    let max = kind.max_len();
    if size > max {
        return Err(Error::corrupt(
            name,
            format!(
                "{size} bytes, more than the {max} a {} may have",
                kind.as_str()
            ),
        ));
    }
    backend.get_range(name, 0, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::id::SegmentId;
    use crate::keys::{KdfParams, KeySource};
    use crate::repo::InitOptions;

    fn repo(dir: &std::path::Path) -> (MemoryBackend, Repository) {
        let backend = MemoryBackend::new();
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(dir.to_owned()),
            ..InitOptions::default()
        };
        let repo = Repository::init(
            Box::new(backend.clone()),
            &KeySource::passphrase("pw"),
            init,
        )
        .unwrap();
        (backend, repo)
    }

    /// Regression: a read allocated (and fetched) whatever range its index entry named;
    /// an entry reaching past its pack's blob area (into the header and trailer, or past
    /// the end) is now refused before anything is read for it.
    #[test]
    fn an_index_entry_past_its_packs_blob_area_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let (_, repo) = repo(dir.path());
        let w = repo.writer().unwrap();
        let data = b"a line of chat history\n".repeat(100);
        let refs = w.write_stream(&data[..]).unwrap();
        w.finish().unwrap();
        let id = refs[0].id;
        assert_eq!(repo.read_blob(id, BlobType::Data).unwrap(), data);
        let genuine = repo.index.get(&id).unwrap().unwrap();
        // The same blob, placed one byte later: the range ends in the pack's header.
        let planted = crate::index::IndexEntry {
            offset: genuine.offset + 1,
            ..genuine
        };
        repo.index.clear().unwrap();
        repo.index
            .apply_segment(
                &SegmentId::from_bytes([9; 32]),
                &[planted],
                repo.voucher(&repo.secrets.signer.public()),
            )
            .unwrap();
        let err = repo.read_blob(id, BlobType::Data).unwrap_err();
        assert!(
            err.to_string().contains("past its pack's blob area"),
            "{err}"
        );
    }

    /// A store that counts the reads of packs (`data/`), stats included.
    #[derive(Clone, Default)]
    struct CountingPacks {
        inner: MemoryBackend,
        pack_reads: Arc<std::sync::atomic::AtomicU64>,
        /// Reads it wants in flight: more than 1 makes it a store with request latency.
        reads_in_flight: usize,
    }

    impl CountingPacks {
        fn count(&self, name: &str) {
            if name.starts_with("data/") {
                self.pack_reads
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        fn pack_reads(&self) -> u64 {
            self.pack_reads.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Backend for CountingPacks {
        fn location(&self) -> String {
            "counting".into()
        }
        fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
            self.inner.put(name, bytes)
        }
        fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
            self.inner.replace(name, bytes)
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.count(name);
            self.inner.get(name)
        }
        fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.count(name);
            self.inner.get_range(name, offset, len)
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::backend::ObjectInfo>> {
            self.inner.list(prefix)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.inner.delete(name)
        }
        fn stat(&self, name: &str) -> Result<crate::backend::ObjectInfo> {
            self.count(name);
            self.inner.stat(name)
        }
        fn reads_in_flight(&self) -> usize {
            self.reads_in_flight.max(1)
        }
    }

    fn open_counting(
        store: &CountingPacks,
        cache: &std::path::Path,
        storage_reads_only: bool,
    ) -> Repository {
        let opts = crate::repo::OpenOptions {
            cache_dir: Some(cache.to_owned()),
            storage_reads_only,
            allow_weak_kdf: true,
            ..crate::repo::OpenOptions::default()
        };
        Repository::open(Box::new(store.clone()), &KeySource::passphrase("pw"), opts).unwrap()
    }

    /// A new repository on `store`, its cache in `dir/cache`.
    fn init_counting(store: &CountingPacks, dir: &std::path::Path) -> Repository {
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(dir.join("cache")),
            ..InitOptions::default()
        };
        Repository::init(Box::new(store.clone()), &KeySource::passphrase("pw"), init).unwrap()
    }

    /// A remote `ls`, `snapshots` or incremental backup walks trees; each used to be a
    /// ranged GET (about 40 ms on Garage) plus a stat and a trailer read per pack. The
    /// writer now keeps its trees' sealed bytes and its packs' trailers in the local
    /// cache, and a reopened handle reads them from there without touching a pack;
    /// `storage_reads_only` (drills) reads the store.
    #[test]
    fn trees_written_here_are_read_back_without_reading_a_pack() {
        let dir = tempfile::tempdir().unwrap();
        let store = CountingPacks::default();
        let repo = init_counting(&store, dir.path());
        let w = repo.writer().unwrap();
        let refs = w
            .write_stream(&b"a line of chat history\n".repeat(50)[..])
            .unwrap();
        let tree = Tree::new(vec![crate::tree::Node {
            name: b"log".to_vec(),
            subtree: None,
            content: refs,
            meta: Vec::new(),
        }])
        .unwrap();
        let id = w.write_tree(&tree).unwrap();
        w.finish().unwrap();
        drop(repo);

        let repo = open_counting(&store, &dir.path().join("cache"), false);
        let before = store.pack_reads();
        assert_eq!(repo.read_tree(id).unwrap(), tree);
        assert_eq!(
            store.pack_reads(),
            before,
            "a pack was read for a cached tree"
        );
        drop(repo);

        // A drill reads the store, and leaves the cache as it was.
        let repo = open_counting(&store, &dir.path().join("cache"), true);
        let before = store.pack_reads();
        assert_eq!(repo.read_tree(id).unwrap(), tree);
        assert!(store.pack_reads() >= before + 3, "stat, trailer and blob");

        // Another host (an empty cache) fetches once, then has it.
        let repo = open_counting(&store, &dir.path().join("other"), false);
        assert_eq!(repo.read_tree(id).unwrap(), tree);
        drop(repo);
        let repo = open_counting(&store, &dir.path().join("other"), false);
        let before = store.pack_reads();
        assert_eq!(repo.read_tree(id).unwrap(), tree);
        assert_eq!(store.pack_reads(), before);
    }

    /// On a store with request latency, the small blobs of neighbouring files are read
    /// with one request per window, not one each; on a local disk each is read alone.
    #[test]
    fn small_blobs_on_a_remote_store_are_read_a_window_at_a_time() {
        for (reads_in_flight, most_reads) in [(8, 4), (1, 200)] {
            let dir = tempfile::tempdir().unwrap();
            let store = CountingPacks {
                reads_in_flight,
                ..CountingPacks::default()
            };
            let repo = init_counting(&store, dir.path());
            let w = repo.writer().unwrap();
            let files: Vec<Vec<u8>> = (0..200u32)
                .map(|i| {
                    format!("message {i} of a small file\n")
                        .repeat(20)
                        .into_bytes()
                })
                .collect();
            let refs: Vec<_> = files.iter().map(|f| w.write_bytes(f).unwrap()).collect();
            w.finish().unwrap();
            drop(repo);
            let repo = open_counting(&store, &dir.path().join("cache"), false);
            let before = store.pack_reads();
            for (f, r) in files.iter().zip(&refs) {
                assert_eq!(&repo.read_blob(r[0].id, BlobType::Data).unwrap(), f);
            }
            let reads = store.pack_reads() - before;
            assert!(
                reads <= most_reads && (reads_in_flight > 1 || reads >= 200),
                "{reads} pack reads with {reads_in_flight} reads in flight"
            );
        }
    }

    /// A file's chunks lie back to back in one pack: `read_blobs_into` fetches them with
    /// one ranged read and gives what `read_blob_into` gives for each; a damaged blob in a
    /// run fails alone (its own error), the others still read.
    #[test]
    fn back_to_back_blobs_are_read_with_one_request_and_a_damaged_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = CountingPacks::default();
        let repo = init_counting(&store, dir.path());
        let w = repo.writer().unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..6_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let refs = w.write_stream(&data[..]).unwrap();
        w.finish().unwrap();
        assert!(refs.len() >= 3, "{} chunks", refs.len());
        let ids: Vec<BlobId> = refs.iter().map(|r| r.id).collect();
        let expect: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| repo.read_blob(*id, BlobType::Data).unwrap())
            .collect();

        let mut bufs = vec![Vec::new(); ids.len()];
        let before = store.pack_reads();
        let results = repo.read_blobs_into(&ids, BlobType::Data, &mut bufs);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(bufs, expect);
        assert_eq!(
            store.pack_reads() - before,
            1,
            "one ranged read for the run"
        );

        // Damage the second blob's bytes in its pack.
        let e = repo.index.get(&ids[1]).unwrap().unwrap();
        let name = e.pack.object_name();
        let mut pack = store.inner.get(&name).unwrap();
        pack[e.offset as usize + 40] ^= 1;
        store.inner.delete(&name).unwrap();
        store.inner.put(&name, &pack).unwrap();
        let mut bufs = vec![Vec::new(); ids.len()];
        let results = repo.read_blobs_into(&ids, BlobType::Data, &mut bufs);
        for (i, r) in results.iter().enumerate() {
            if i == 1 {
                assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
            } else {
                assert!(r.is_ok(), "{r:?}");
                assert_eq!(bufs[i], expect[i]);
            }
        }
    }

    /// The cache is not trusted: bytes that do not open (damaged on the local disk, or
    /// planted) are dropped, the store's copy is read, and the cache is healed.
    #[test]
    fn a_damaged_cached_tree_or_trailer_is_refetched_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (_, repo) = repo(dir.path());
        let w = repo.writer().unwrap();
        let tree = Tree::new(vec![crate::tree::Node {
            name: b"f".to_vec(),
            subtree: None,
            content: Vec::new(),
            meta: b"some meta".to_vec(),
        }])
        .unwrap();
        let id = w.write_tree(&tree).unwrap();
        w.finish().unwrap();
        let entry = repo.index.get(&id).unwrap().unwrap();
        let mut sealed = vec![0; entry.length as usize];
        assert!(
            repo.index
                .sealed_tree(&id, &entry.pack, entry.offset, &mut sealed)
                .unwrap()
        );
        let genuine = sealed.clone();
        sealed[30] ^= 1;
        repo.index
            .put_sealed_tree(&id, &entry.pack, entry.offset, &sealed)
            .unwrap();
        let (size, mut trailer) = repo.index.pack_trailer(&entry.pack).unwrap().unwrap();
        trailer[5] ^= 1;
        repo.index
            .put_pack_trailer(&entry.pack, size, &trailer)
            .unwrap();
        // As a new process would: no pack key in memory.
        repo.pack_keys.keys.lock().unwrap().clear();
        assert_eq!(repo.read_tree(id).unwrap(), tree);
        let mut healed = vec![0; entry.length as usize];
        assert!(
            repo.index
                .sealed_tree(&id, &entry.pack, entry.offset, &mut healed)
                .unwrap()
        );
        assert_eq!(healed, genuine);
        assert_ne!(
            repo.index.pack_trailer(&entry.pack).unwrap().unwrap().1,
            trailer
        );
    }

    #[test]
    fn objects_over_their_kinds_limit_are_refused_unread() {
        let backend = MemoryBackend::new();
        let limit = ObjectLimit::Lock.max_len() as usize;
        backend.put("locks/big", &vec![0; limit + 1]).unwrap();
        backend.put("locks/ok", &vec![7; limit]).unwrap();
        let err = read_bounded(&backend, "locks/big", ObjectLimit::Lock).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { object, .. } if object.as_str() == "locks/big"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("more than the 4096 a lock may have"),
            "{err}"
        );
        assert_eq!(
            read_bounded(&backend, "locks/ok", ObjectLimit::Lock).unwrap(),
            vec![7; limit]
        );
        assert!(
            read_bounded(&backend, "locks/none", ObjectLimit::Lock)
                .unwrap_err()
                .is_not_found()
        );
    }
}
