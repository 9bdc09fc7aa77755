//! Entry points for benchmarks and fuzz targets, which live outside this crate but must
//! exercise internal stages and decoders. Not part of the supported API.
//!
//! Invariant: nothing here weakens the library: every function builds its own throw-away
//! keys, and the decoders run exactly the code the repository runs on untrusted bytes.

/// A complete pack of raw `blobs`, built with fixed throw-away keys (repository `[4; 32]`,
/// id key `[2; 32]`, auth key `[5; 32]`, data key from secret `[6; 32]`).
fn pack_with_fixed_keys<'a>(blobs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    use crate::blob::{self, BlobType, Codec};
    use crate::crypto::wrap::{ObjectKind, WrapBinding};
    use crate::crypto::{Key32, context};
    use crate::id::RepoId;

    let repo = RepoId::from_bytes([4; 32]);
    let id_key = Key32::from_bytes([2; 32]);
    let auth = Key32::from_bytes([5; 32]);
    let pk = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([6u8; 32])).to_bytes();
    let mut b = crate::pack::PackBuilder::new(0);
    for data in blobs {
        let id = blob::blob_id(&id_key, BlobType::Data, data);
        b.add(
            &repo,
            id,
            BlobType::Data,
            Codec::Raw,
            data.len() as u32,
            data,
        );
    }
    let binding = WrapBinding {
        context: context::PACK_KEY_WRAP,
        repo_id: &repo,
        kind: ObjectKind::Pack,
        auth_key: &auth,
    };
    b.finish(&repo, &pk, &binding)
        .map(|p| p.bytes)
        .unwrap_or_default()
}

/// Per-stage operations for the benches in `benches/`.
#[cfg(feature = "repository")]
pub mod bench_support {
    use std::path::Path;
    use std::sync::Arc;

    use crate::blob::{self, BlobType};
    use crate::chunker::{Chunker, ChunkerParams, GearTable};
    use crate::crypto::{Key32, aead};
    use crate::id::{BlobId, PackId, SegmentId};
    use crate::index::{IndexCache, IndexEntry};

    fn fixed_key(b: u8) -> Key32 {
        Key32::from_bytes([b; 32])
    }

    /// Chunks `data` with a fixed chunker key; returns the number of chunks.
    pub fn chunk_all(data: &[u8], params: ChunkerParams) -> usize {
        let gear = Arc::new(GearTable::derive(&fixed_key(1)));
        Chunker::new(data, params, gear)
            .filter(|c| c.is_ok())
            .count()
    }

    /// The keyed BLAKE3 blob id of `data`.
    pub fn hash_blob(data: &[u8]) -> [u8; 32] {
        *blob::blob_id(&fixed_key(2), BlobType::Data, data).as_bytes()
    }

    /// zstd-compresses `data` as the write path does; returns the stored length.
    pub fn compress(level: i32, data: &[u8]) -> usize {
        blob::compress(level, data).1.len()
    }

    /// Seals `data` with XChaCha20-Poly1305; returns the sealed length.
    pub fn seal_blob(data: &[u8]) -> usize {
        aead::seal(&fixed_key(3), b"bench", data).len()
    }

    /// Builds a complete pack of `blobs` (stored raw); returns its length.
    pub fn build_pack(blobs: &[Vec<u8>]) -> usize {
        super::pack_with_fixed_keys(blobs.iter().map(Vec::as_slice)).len()
    }

    /// The local index cache with synthetic entries, for lookup benchmarks.
    #[derive(Debug)]
    pub struct IndexBench {
        cache: IndexCache,
    }

    fn synthetic_id(i: u64, salt: u8) -> BlobId {
        let mut h = blake3::Hasher::new();
        h.update(&[salt]);
        h.update(&i.to_le_bytes());
        BlobId::from_bytes(*h.finalize().as_bytes())
    }

    impl IndexBench {
        /// Opens (creates) a cache in `dir`.
        pub fn open(dir: &Path) -> Self {
            #[allow(clippy::expect_used)]
            let cache = IndexCache::open(dir).expect("open index cache");
            Self { cache }
        }

        /// Inserts `n` synthetic entries (ids `0..n` of `seed`), in segments of 100k.
        pub fn insert_random(&self, n: usize, seed: u64) {
            let mut start = 0u64;
            while (start as usize) < n {
                let end = (start + 100_000).min(n as u64);
                let entries: Vec<IndexEntry> = (start..end)
                    .map(|i| IndexEntry {
                        blob: synthetic_id(i ^ seed.rotate_left(32), 0),
                        pack: PackId::from_bytes([7; 32]),
                        offset: 0,
                        length: 64,
                        raw_len: 24,
                        blob_type: BlobType::Data,
                        codec: crate::blob::Codec::Raw,
                        domain: 0,
                        generation: 0,
                    })
                    .collect();
                let seg = SegmentId::from_bytes(
                    *blake3::hash(&[&seed.to_le_bytes()[..], &start.to_le_bytes()].concat())
                        .as_bytes(),
                );
                #[allow(clippy::expect_used)]
                self.cache
                    .apply_segment(&seg, &entries, crate::index::Voucher::new(0, 0))
                    .expect("apply segment");
                start = end;
            }
        }

        /// Compacts the cache, as a rebuild does after a bulk load.
        pub fn compact(&self) {
            #[allow(clippy::expect_used)]
            self.cache.compact().expect("compact");
        }

        /// Looks up id `i` of the inserted set (seed 0).
        pub fn lookup_present(&self, i: u64) -> bool {
            matches!(self.cache.contains(&synthetic_id(i, 0)), Ok(true))
        }

        /// Looks up an id that was never inserted.
        pub fn lookup_absent(&self, i: u64) -> bool {
            matches!(self.cache.contains(&synthetic_id(i, 1)), Ok(true))
        }
    }
}

/// Decoders of untrusted bytes, for the cargo-fuzz targets in `fuzz/`. Each returns
/// whether the input decoded; none may panic.
pub mod fuzzing {
    use crate::crypto::Key32;
    use crate::id::RepoId;

    /// Parses a pack: trailer, then (with fixed keys) the header.
    pub fn pack(bytes: &[u8]) -> bool {
        use crate::pack::{TRAILER_LEN, open_header, read_trailer};
        let n = bytes.len();
        let Ok(t) = read_trailer(&bytes[n.saturating_sub(TRAILER_LEN)..], n as u64, "fuzz") else {
            return false;
        };
        let end = n - TRAILER_LEN;
        let Some(sealed) = bytes.get(t.header_offset as usize..end) else {
            return false;
        };
        let key = Key32::from_bytes([0; 32]);
        open_header(
            sealed,
            &key,
            &RepoId::from_bytes([0; 32]),
            t.header_offset,
            0,
            "fuzz",
        )
        .is_ok()
    }

    /// Decodes an index segment body (the plaintext inside the seal).
    pub fn index_segment(bytes: &[u8]) -> bool {
        crate::index::SegmentBody::decode(bytes, "fuzz").is_ok()
    }

    /// Decodes a tree.
    pub fn tree(bytes: &[u8]) -> bool {
        crate::tree::Tree::decode(bytes, "fuzz").is_ok()
    }

    /// Decodes a snapshot record.
    pub fn snapshot(bytes: &[u8]) -> bool {
        crate::snapshot::SnapshotRecord::decode(bytes, "fuzz").is_ok()
    }

    /// Parses a key slot header and tries to open it with a fixed key file (no Argon2:
    /// passphrase slots stop at the KDF-source mismatch).
    pub fn key_slot(bytes: &[u8]) -> bool {
        let key = crate::keys::KeySource::KeyFile(zeroize::Zeroizing::new([0; 32]));
        crate::keys::open_slot(bytes, "fuzz", &key, false).is_ok()
    }

    /// One well-formed sample of every object the targets decode, keyed by target name:
    /// the seed corpus (`cargo run -p chatvault-core --example fuzz_seeds`).
    pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        use crate::blob::{BlobType, Codec};
        use crate::crypto::sign::Signer;
        use crate::id::{BlobId, PackId, SegmentId};
        use crate::index::{IndexEntry, SegmentBody};
        use crate::tree::{ContentRef, Node, Tree};

        let repo = RepoId::from_bytes([0; 32]);
        let id = BlobId::from_bytes([0x11; 32]);
        let tree = Tree::new(vec![Node {
            name: b"media".to_vec(),
            subtree: Some(id),
            content: vec![ContentRef { id, len: 42 }],
            meta: b"m".to_vec(),
        }])
        .map(|t| t.encode())
        .unwrap_or_default();
        let record = crate::snapshot::SnapshotRecord {
            time_unix_ms: 1_760_000_000_000,
            host: "node-1".into(),
            tags: vec!["daily".into()],
            source_kind: "fs".into(),
            paths: vec!["/srv".into()],
            parent: None,
            kind: crate::snapshot::SnapshotKind::Full,
            root: id,
            summary: crate::snapshot::Summary::default(),
            cursors: Default::default(),
            writer_seq: 1,
            prev_writer_snapshot: None,
        }
        .encode();
        let segment = SegmentBody {
            origin: crate::index::Origin::Signer,
            supersedes: vec![SegmentId::from_bytes([3; 32])],
            entries: vec![IndexEntry {
                blob: id,
                pack: PackId::from_bytes([2; 32]),
                offset: 0,
                length: 80,
                raw_len: 40,
                blob_type: BlobType::Data,
                codec: Codec::Zstd,
                domain: 0,
                generation: 0,
            }],
        }
        .encode()
        .unwrap_or_default();
        // The target opens headers with an all-zero key, not this pack's: the seed covers
        // the trailer and the rejection of a header that does not authenticate.
        let pack = super::pack_with_fixed_keys([&b"hello hello hello hello"[..]]);
        let pk =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([6u8; 32])).to_bytes();
        let secrets = crate::keys::Secrets::generate(repo);
        let key = crate::keys::KeySource::KeyFile(zeroize::Zeroizing::new([0; 32]));
        let slot =
            crate::keys::seal_slot(&secrets, &key, crate::keys::KdfParams::default(), "seed")
                .map(|(_, b)| b)
                .unwrap_or_default();
        let admin = Signer::from_seed(&[5; 32]);
        let config = crate::config::Config {
            repo_id: repo,
            sequence: 1,
            chunker: crate::chunker::ChunkerParams::default(),
            compression_level: 3,
            pack_size: 16 << 20,
            key_generation: 0,
            data_public_keys: vec![(0, pk)],
            writers: Vec::new(),
            revocations: Vec::new(),
            admin_key: admin.public(),
            grants: Vec::new(),
            rekeyed_generations: Vec::new(),
        }
        .to_object(&admin)
        .unwrap_or_default();
        vec![
            ("tree", tree),
            ("snapshot", record),
            ("index_segment", segment),
            ("pack", pack),
            ("key_slot", slot),
            ("config", config),
        ]
    }

    /// Parses a signed envelope and a config body.
    pub fn config(bytes: &[u8]) -> bool {
        let repo = RepoId::from_bytes([0; 32]);
        match crate::envelope::open(bytes, crate::envelope::magic::CONFIG, "fuzz", &repo) {
            Ok(env) => crate::config::Config::decode_body(env.body).is_ok(),
            Err(_) => crate::config::Config::decode_body(bytes).is_ok(),
        }
    }
}
