//! The repository façade: init, open, and the operations frontends build on.
//!
//! Opening a repository unlocks a key slot, verifies the config against the admin key
//! sealed in that slot, refuses rollbacks against the local pins, and brings the local
//! index cache up to date with the repository's index segments.
//! Invariants: packs are uploaded before the index segments that name them, and segments
//! before any snapshot that needs them; a reader trusts a segment or snapshot only if its
//! signer is a writer the verified config trusts.

mod check;
mod copy;
mod holds;
mod index_sync;
mod journal;
mod latest;
mod locks;
mod pins;
mod presence;
mod prune;
mod reader;
mod repair;
mod salvage;
mod slots;
mod snapshots;
#[cfg(test)]
mod stolen_key_tests;
mod writer;

pub use check::{
    CheckOptions, CheckProblem, CheckReport, DataSubset, ProblemKind, ScrubReport, parse_size,
    scrub,
};
pub use copy::{CopiedSnapshot, CopyFailure, CopyOptions, CopyReport, copy_snapshots};
pub use latest::{LatestSnapshots, Recency, SnapshotFilter};
pub use locks::{LockInfo, LockOptions, ReadLock};
pub use prune::{PruneOptions, PruneReport};
pub use repair::{
    DamagedContent, IndexRepairReport, Loss, LossKind, REPAIRED_TAG, RepairOptions, SnapshotRepair,
    SnapshotRepairReport,
};
pub use salvage::{DamagedPack, PackRepairOptions, PackRepairReport};
pub use slots::AddSlotOptions;
pub use writer::{BlobWriter, WriteStats};

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::chunker::{ChunkerParams, GearTable};
use crate::config::{Config, WriterEntry};
use crate::error::{Error, Result};
use crate::format::now_unix_ms;
use crate::id::{RepoId, SlotId};
use crate::index::IndexCache;
use crate::keys::{self, KdfParams, KeySource, Role, Secrets};
use crate::limits::ObjectLimit;
use crate::progress::Progress;

use pins::Pins;
use reader::PackKeyCache;
pub(crate) use reader::read_bounded;

/// Options for [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Argon2id parameters for the first (admin) slot. By default 64 MiB, t = 3.
    pub kdf: KdfParams,
    /// Chunk sizes, fixed for the repository's life. By default 256 KiB / 1 MiB / 4 MiB.
    pub chunker: ChunkerParams,
    /// zstd level; 0 stores everything uncompressed. By default 3 (see docs/FORMAT.md,
    /// "Compression", for the measurement behind it).
    pub compression_level: i32,
    /// Target pack size in bytes. By default 16 MiB.
    pub pack_size: u32,
    /// Label of the first key slot. By default `admin`.
    pub label: String,
    /// Local cache directory. By default the user's cache directory + `chatvault`.
    pub cache_dir: Option<PathBuf>,
    /// Chunk like another repository ([`Repository::share_chunker`]): its secret gear-table
    /// key and its chunk sizes (which replace `chunker`), so the same content cuts into the
    /// same chunks in both and copies between them deduplicate against the new
    /// repository's own backups. The id key stays this repository's own, so ids and
    /// contents are not shared; chunk boundaries, hence ciphertext sizes, are. By default
    /// the repository gets its own random chunker key.
    pub chunker_from: Option<SharedChunker>,
}

/// A repository's chunking, to give a new repository ([`InitOptions::chunker_from`]): the
/// secret `chunker_key` and the chunk sizes. Its `Debug` shows the sizes and the source
/// repository only.
#[derive(Clone)]
pub struct SharedChunker {
    repo: RepoId,
    params: ChunkerParams,
    key: Arc<crate::crypto::Key32>,
}

impl SharedChunker {
    /// The repository whose chunking this is.
    pub fn repo(&self) -> RepoId {
        self.repo
    }

    /// Its chunk sizes.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }
}

impl std::fmt::Debug for SharedChunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedChunker")
            .field("repo", &self.repo)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 16 << 20,
            label: "admin".into(),
            cache_dir: None,
            chunker_from: None,
        }
    }
}

/// Options for [`Repository::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Local cache directory. By default the user's cache directory + `chatvault`.
    pub cache_dir: Option<PathBuf>,
    /// Try only this key slot. By default every slot is tried.
    pub slot: Option<SlotId>,
    /// Accept slots with Argon2 parameters below the floor. Only for tests; by default
    /// such slots are refused.
    pub allow_weak_kdf: bool,
    /// Progress callback for long operations. By default none.
    pub progress: Progress,
    /// Lock timing: refresh interval, staleness, how long writers wait for a prune's
    /// deletion step. By default [`LockOptions::default`].
    pub locks: LockOptions,
    /// Pack uploads a writer keeps in flight at once, each holding one pack in memory
    /// (16 MiB by default): over a network store several uploads hide each one's latency.
    /// By default the backend's [`Backend::uploads_in_flight`] (1 for a local directory,
    /// 4 for the remote stores of `chatvault-backend`).
    pub uploads: Option<std::num::NonZeroUsize>,
    /// Read every tree and pack trailer from the store, never from the local cache's
    /// copies of them (`index/cache/sealed.rs`): for a drill that must prove the store
    /// alone restores. By default false: a remote repository's trees are fetched once.
    pub storage_reads_only: bool,
}

/// Repository-wide figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoStats {
    /// Number of pack objects.
    pub packs: u64,
    /// Their total size.
    pub pack_bytes: u64,
    /// Blobs in the local index.
    pub blobs: u64,
    /// Tree blobs among them.
    pub tree_blobs: u64,
    /// Plaintext bytes of all indexed blobs (each stored once).
    pub raw_bytes: u64,
    /// Their sealed size in packs.
    pub stored_bytes: u64,
    /// Index segment objects.
    pub segments: u64,
    /// Snapshot objects.
    pub snapshots: u64,
}

/// An open repository. `Send + Sync`: share it between threads with `Arc`.
pub struct Repository {
    backend: Arc<dyn Backend>,
    secrets: Secrets,
    slot: SlotId,
    config: Config,
    index: IndexCache,
    gear: Arc<GearTable>,
    pins: Mutex<Pins>,
    pack_keys: PackKeyCache,
    /// Threads for reads when the backend wants more in flight than the CPU pool has
    /// ([`Repository::with_read_threads`]); built at first use.
    read_pool: std::sync::OnceLock<Option<rayon::ThreadPool>>,
    /// Whether trees and pack trailers are read from (and kept in) the local cache
    /// (not [`OpenOptions::storage_reads_only`]).
    cached_trees: bool,
    /// Pack windows read ahead for small blobs on a store with request latency.
    read_ahead: reader::ReadAhead,
    packs: presence::PackListing,
    progress: Progress,
    index_problems: Mutex<Vec<String>>,
    lock_opts: LockOptions,
    /// Pack uploads a writer keeps in flight ([`OpenOptions::uploads`]).
    uploads: usize,
    sessions: Mutex<locks::Sessions>,
    // Last: dropped after the index cache, so a private cache directory can be removed.
    cache_dir: CacheDir,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.backend.location())
            .field("repo_id", &self.config.repo_id)
            .field("role", &self.secrets.role)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

const CONFIG: &str = "config";

impl Repository {
    /// Creates a repository on an empty backend, with one admin key slot opened by `key`.
    pub fn init(backend: Box<dyn Backend>, key: &KeySource, opts: InitOptions) -> Result<Self> {
        let backend: Arc<dyn Backend> = Arc::from(backend);
        check_init_options(&opts)?;
        match backend.stat(CONFIG) {
            Ok(_) => {
                return Err(Error::AlreadyExists {
                    object: CONFIG.into(),
                });
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let repo_id = RepoId::from_bytes(crate::crypto::random_array());
        let mut secrets = Secrets::generate(repo_id);
        let mut chunker = opts.chunker;
        if let Some(shared) = &opts.chunker_from {
            secrets.chunker_key = shared.key.duplicate();
            chunker = shared.params;
        }
        let data = secrets.current_data_key();
        let config = Config {
            repo_id,
            sequence: 1,
            chunker,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
            key_generation: data.generation,
            data_public_keys: vec![(data.generation, data.public)],
            writers: vec![WriterEntry {
                key: secrets.signer.public(),
                role: Role::Admin,
                label: opts.label.clone(),
                scope: "*".into(),
                added_unix_ms: now_unix_ms(),
                grant_key: Some(secrets.grant_public()),
                dedup_source: true,
            }],
            revocations: Vec::new(),
            admin_key: secrets.admin_pk,
            grants: Vec::new(),
            rekeyed_generations: Vec::new(),
        };
        let (slot, slot_bytes) = keys::seal_slot(&secrets, key, opts.kdf, &opts.label)?;
        backend.put(&slot.object_name(), &slot_bytes)?;
        let admin = secrets.admin.as_ref().ok_or(Error::PermissionDenied {
            role: "new",
            operation: "sign the config",
        })?;
        let config_object = config.to_object(admin)?;
        backend.put(CONFIG, &config_object)?;
        let open = OpenOptions {
            cache_dir: opts.cache_dir,
            allow_weak_kdf: opts.kdf.weak_allowed(),
            ..OpenOptions::default()
        };
        let hash = crate::id::content_hash(&config_object);
        Self::assemble(backend, secrets, slot, (config, hash), open)
    }

    /// Opens a repository with a passphrase, a key file or an external key store (a
    /// PKCS#11 token, a KMS command; see [`KeySource`]).
    pub fn open(backend: Box<dyn Backend>, key: &KeySource, opts: OpenOptions) -> Result<Self> {
        let backend: Arc<dyn Backend> = Arc::from(backend);
        let config_bytes = match reader::read_bounded(backend.as_ref(), CONFIG, ObjectLimit::Config)
        {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::RepositoryMissing {
                    location: backend.location(),
                });
            }
            Err(e) => return Err(e),
        };
        peek_version(&config_bytes)?;
        let (slot, secrets) = slots::unlock(backend.as_ref(), key, &opts)?;
        let config = Config::from_object(&config_bytes, &secrets.repo_id, &secrets.admin_pk)?;
        let hash = crate::id::content_hash(&config_bytes);
        Self::assemble(backend, secrets, slot, (config, hash), opts)
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        secrets: Secrets,
        slot: SlotId,
        (config, config_hash): (Config, [u8; 32]),
        opts: OpenOptions,
    ) -> Result<Self> {
        if opts.locks.stale_after < opts.locks.refresh * 3 {
            return Err(Error::invalid(
                "lock timing",
                "stale_after must be at least three refresh intervals",
            ));
        }
        let mut cache = CacheDir::for_repo(opts.cache_dir.as_deref(), &config.repo_id)?;
        let mut pins = Pins::load(cache.path(), &config.repo_id)?;
        pins.check_and_update(&config, &config_hash)?;
        let mut secrets = secrets;
        slots::accept_grants(&mut secrets, &config)?;
        let (index, private_index) = index_sync::open_cache(cache.path())?;
        cache.private_index = private_index;
        index.ensure_trust_epoch(&config.trust_epoch())?;
        let gear = Arc::new(GearTable::derive(&secrets.chunker_key));
        let uploads = opts
            .uploads
            .map_or_else(|| backend.uploads_in_flight(), std::num::NonZeroUsize::get);
        let repo = Self {
            backend,
            secrets,
            slot,
            config,
            index,
            gear,
            pins: Mutex::new(pins),
            pack_keys: PackKeyCache::default(),
            read_pool: std::sync::OnceLock::new(),
            cached_trees: !opts.storage_reads_only,
            read_ahead: reader::ReadAhead::default(),
            packs: presence::PackListing::default(),
            progress: opts.progress,
            index_problems: Mutex::new(Vec::new()),
            lock_opts: opts.locks,
            uploads,
            sessions: Mutex::new(locks::Sessions::default()),
            cache_dir: cache,
        };
        repo.sync_index()?;
        Ok(repo)
    }

    /// The repository id.
    pub fn id(&self) -> RepoId {
        self.config.repo_id
    }

    /// The verified config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The role of the opened key slot.
    pub fn role(&self) -> Role {
        self.secrets.role
    }

    /// The opened key slot.
    pub fn slot_id(&self) -> SlotId {
        self.slot
    }

    /// The opened slot's writer (signing) key.
    pub fn writer_key(&self) -> crate::PublicKey {
        self.secrets.signer.public()
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The `auth_key` and `index_key` that seal data of key generation `generation`, or
    /// [`Error::KeyNotGranted`] if this slot was never given them.
    pub(crate) fn generation_keys(
        &self,
        generation: u32,
    ) -> Result<(&crate::crypto::Key32, &crate::crypto::Key32)> {
        let keyed = self.config.keyed_generation(generation);
        self.secrets
            .generation_keys(keyed)
            .ok_or(Error::KeyNotGranted { generation: keyed })
    }

    /// This repository's chunking, for a new repository that should cut the same content
    /// into the same chunks ([`InitOptions::chunker_from`]). Needs a full or admin key:
    /// the chunker key is a secret a `backup` key holds only to use it.
    pub fn share_chunker(&self) -> Result<SharedChunker> {
        self.require_read("share the chunker key")?;
        Ok(SharedChunker {
            repo: self.config.repo_id,
            params: self.config.chunker,
            key: Arc::new(self.secrets.chunker_key.duplicate()),
        })
    }

    pub(crate) fn require_read(&self, operation: &'static str) -> Result<()> {
        if self.secrets.role.can_read() {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                role: self.secrets.role.as_str(),
                operation,
            })
        }
    }

    pub(crate) fn require_admin(
        &self,
        operation: &'static str,
    ) -> Result<&crate::crypto::sign::Signer> {
        self.secrets.admin.as_ref().ok_or(Error::PermissionDenied {
            role: self.secrets.role.as_str(),
            operation,
        })
    }

    /// Counts objects, and streams the index once for exact blob figures.
    pub fn stats(&self) -> Result<RepoStats> {
        let packs = self.backend.list("data/")?;
        let mut s = RepoStats {
            packs: packs.len() as u64,
            pack_bytes: packs.iter().map(|p| p.size).sum(),
            segments: self.backend.list("index/")?.len() as u64,
            snapshots: self.backend.list("snapshots/")?.len() as u64,
            ..RepoStats::default()
        };
        self.index.for_each_entry(|e| {
            s.blobs += 1;
            s.tree_blobs += u64::from(e.blob_type == crate::blob::BlobType::Tree);
            s.raw_bytes += u64::from(e.raw_len);
            s.stored_bytes += u64::from(e.length);
            Ok(())
        })?;
        Ok(s)
    }
}

fn check_init_options(o: &InitOptions) -> Result<()> {
    let chunker = o.chunker_from.as_ref().map_or(o.chunker, |s| s.params);
    chunker.validate()?;
    if !(0..=19).contains(&o.compression_level) {
        return Err(Error::invalid("compression level", "must be 0 (off) to 19"));
    }
    if !(1 << 20..=1 << 30).contains(&o.pack_size) {
        return Err(Error::invalid(
            "pack size",
            "must be between 1 MiB and 1 GiB",
        ));
    }
    if (o.pack_size as usize) < chunker.max_size as usize {
        return Err(Error::invalid(
            "pack size",
            "must hold at least one maximum-size chunk",
        ));
    }
    Ok(())
}

/// Reads the config's format version without any key, so an operator learns that a newer
/// build is needed before being asked for a passphrase.
fn peek_version(bytes: &[u8]) -> Result<()> {
    let mut r = crate::format::ByteReader::new(bytes, CONFIG);
    crate::format::check_magic_version(&mut r, crate::envelope::magic::CONFIG).map(|_| ())
}

/// The local cache directory of one repository (`<cache>/<repo id>/`).
#[derive(Debug)]
struct CacheDir {
    path: PathBuf,
    /// A per-process index cache used because another process holds the shared one.
    private_index: Option<PathBuf>,
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        if let Some(p) = &self.private_index {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl CacheDir {
    fn for_repo(base: Option<&Path>, repo: &RepoId) -> Result<Self> {
        let base = match base {
            Some(b) => b.to_owned(),
            // Never a shared temporary directory: the cache holds the rollback pins and
            // the writer journal, which others must not be able to replace.
            None => dirs::cache_dir()
                .ok_or_else(|| {
                    Error::invalid(
                        "cache directory",
                        "no user cache directory is known (set HOME or XDG_CACHE_HOME, or \
                         give one explicitly)",
                    )
                })?
                .join("chatvault"),
        };
        let path = base.join(repo.to_hex());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)?;
        // An existing directory keeps its mode unless it is open to others.
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.is_dir() {
            return Err(Error::invalid(
                "cache directory",
                format!("{} is not a directory", path.display()),
            ));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            path,
            private_index: None,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObjectInfo;
    use crate::{KdfParams, MemoryBackend};

    /// A store that asks for four uploads in flight, as the remote ones do.
    struct FourUploads(MemoryBackend);

    impl Backend for FourUploads {
        fn location(&self) -> String {
            self.0.location()
        }
        fn put(&self, name: &str, bytes: &[u8]) -> Result<()> {
            self.0.put(name, bytes)
        }
        fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
            self.0.replace(name, bytes)
        }
        fn get(&self, name: &str) -> Result<Vec<u8>> {
            self.0.get(name)
        }
        fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
            self.0.get_range(name, offset, len)
        }
        fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
            self.0.list(prefix)
        }
        fn delete(&self, name: &str) -> Result<()> {
            self.0.delete(name)
        }
        fn stat(&self, name: &str) -> Result<ObjectInfo> {
            self.0.stat(name)
        }
        fn uploads_in_flight(&self) -> usize {
            4
        }
    }

    /// A local store gets one upload in flight (each holds a pack in memory, and more
    /// only cost memory on a disk); a store that asks for more gets them; the option wins.
    #[test]
    fn uploads_in_flight_come_from_the_backend_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let backend = MemoryBackend::new();
        let pass = KeySource::passphrase("pw");
        let init = InitOptions {
            kdf: KdfParams::insecure_for_tests(),
            cache_dir: Some(dir.path().join("a")),
            ..InitOptions::default()
        };
        let repo = Repository::init(Box::new(backend.clone()), &pass, init).unwrap();
        assert_eq!(repo.uploads, 1);
        drop(repo);
        let open = |uploads, cache: &str| OpenOptions {
            cache_dir: Some(dir.path().join(cache)),
            allow_weak_kdf: true,
            uploads,
            ..OpenOptions::default()
        };
        let four = || Box::new(FourUploads(backend.clone()));
        let repo = Repository::open(four(), &pass, open(None, "b")).unwrap();
        assert_eq!(repo.uploads, 4);
        drop(repo);
        let two = std::num::NonZeroUsize::new(2);
        let repo = Repository::open(four(), &pass, open(two, "c")).unwrap();
        assert_eq!(repo.uploads, 2);
    }
}
