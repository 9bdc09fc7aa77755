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
/// whether the input decoded; none may panic, except where a decoded value breaks an
/// invariant the format promises (a canonical encoding that does not re-encode to its
/// bytes), which is a bug the fuzzer must report.
///
/// These are the plain decoders the repository runs on bytes from storage, each reached
/// directly: a decoder that runs only after authentication (a pack header, a key slot's
/// secrets, a config or segment body) is fuzzed on its plaintext, because a fuzzer cannot
/// forge the seal in front of it.
pub mod fuzzing {
    use crate::format::FormatVersion;
    use crate::id::RepoId;

    /// The first 8 bytes as a little-endian `u64`, and the rest.
    fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
        let (head, rest) = bytes.split_first_chunk::<8>()?;
        Some((u64::from_le_bytes(*head), rest))
    }

    /// A pack trailer: the input is a pack length (8 bytes, LE) and the trailer bytes.
    pub fn pack_trailer(bytes: &[u8]) -> bool {
        let Some((pack_len, tail)) = split_u64(bytes) else {
            return false;
        };
        match crate::pack::read_trailer(tail, pack_len, "fuzz") {
            Ok(t) => {
                // What the reader then relies on: the header lies within the pack and
                // within the format's limit, the blob area within u32 offsets.
                assert!(t.header_offset + u64::from(t.header_len) <= pack_len);
                assert!(t.header_len as usize <= crate::pack::MAX_HEADER_LEN);
                assert!(t.header_offset <= u64::from(u32::MAX));
                true
            }
            Err(_) => false,
        }
    }

    /// A pack header's plaintext (what the sealed header opens to): the input is the
    /// length of the blob area (8 bytes, LE) and the plaintext.
    pub fn pack_header(bytes: &[u8]) -> bool {
        let Some((blob_area, plain)) = split_u64(bytes) else {
            return false;
        };
        match crate::pack::decode_header(plain, blob_area, "fuzz") {
            Ok(entries) => {
                // Entries tile the blob area, and each is a possible index entry.
                let mut at = 0u64;
                for e in &entries {
                    assert_eq!(u64::from(e.offset), at);
                    at += u64::from(e.length);
                    let ix = e.index_entry(crate::id::PackId::from_bytes([0; 32]), 0);
                    assert!(ix.check().is_ok());
                    assert!(e.length as usize <= crate::blob::MAX_SEALED_LEN);
                }
                assert_eq!(at, blob_area);
                true
            }
            Err(_) => false,
        }
    }

    /// Decodes an index segment body (the plaintext inside the seal); a body that
    /// decodes must re-encode to the same bytes (the encoding is canonical).
    pub fn index_segment(bytes: &[u8]) -> bool {
        match crate::index::SegmentBody::decode(bytes, "fuzz") {
            Ok(body) => {
                assert_eq!(body.encode().ok().as_deref(), Some(bytes));
                true
            }
            Err(_) => false,
        }
    }

    /// Decodes a tree.
    pub fn tree(bytes: &[u8]) -> bool {
        crate::tree::Tree::decode(bytes, "fuzz").is_ok()
    }

    /// Decodes a snapshot record.
    pub fn snapshot(bytes: &[u8]) -> bool {
        crate::snapshot::SnapshotRecord::decode(bytes, "fuzz").is_ok()
    }

    /// Parses a key slot's public header and checks its shape, as `list_slots`, `check`
    /// and every open do before any key derivation.
    pub fn key_slot(bytes: &[u8]) -> bool {
        match crate::keys::SlotHeader::decode(bytes, "fuzz") {
            Ok((header, len)) => {
                assert!(len <= bytes.len());
                let _ = header.info(crate::id::SlotId::from_bytes([0; 32]));
                crate::keys::check_shape(bytes, "fuzz", &header.repo_id).is_ok()
            }
            Err(_) => false,
        }
    }

    /// Decodes a key slot's sealed secrets (the plaintext inside the seal).
    pub fn key_secrets(bytes: &[u8]) -> bool {
        crate::keys::Secrets::decode(bytes, "fuzz").is_ok()
    }

    /// Parses a signed envelope's layout (not its signature): config, snapshot, segment or
    /// hold, by the input's magic.
    pub fn envelope(bytes: &[u8]) -> bool {
        use crate::envelope::magic;
        let m = [magic::CONFIG, magic::SNAPSHOT, magic::INDEX, magic::HOLD]
            .into_iter()
            .find(|m| bytes.starts_with(&m[..]))
            .unwrap_or(magic::CONFIG);
        match crate::envelope::parse(bytes, m, "fuzz") {
            Ok(p) => {
                assert_eq!(
                    p.signed.len() + crate::crypto::sign::SIGNATURE_LEN,
                    bytes.len()
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Decodes a config body (the CBOR the admin signs).
    pub fn config(bytes: &[u8]) -> bool {
        crate::config::Config::decode_body(bytes).is_ok()
    }

    /// Decodes a hold record.
    pub fn hold(bytes: &[u8]) -> bool {
        crate::hold::HoldRecord::decode(bytes, "fuzz").is_ok()
    }

    /// Decodes a lock record; one in the current format re-encodes to its bytes.
    pub fn lock(bytes: &[u8]) -> bool {
        match crate::lock::LockRecord::decode(bytes, "fuzz") {
            Ok(r) => {
                if bytes.get(8..10) == Some(&FormatVersion::CURRENT.as_u16().to_le_bytes()[..]) {
                    assert_eq!(r.encode(), bytes);
                }
                true
            }
            Err(_) => false,
        }
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
            origin: None,
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
        let pack = super::pack_with_fixed_keys([&b"hello hello hello hello"[..], b"chat"]);
        let mut trailer = (pack.len() as u64).to_le_bytes().to_vec();
        trailer.extend_from_slice(&pack[pack.len().saturating_sub(crate::pack::TRAILER_LEN)..]);
        // Two entries tiling a blob area of 63 + 44 bytes.
        let mut header = 107u64.to_le_bytes().to_vec();
        header.extend_from_slice(&2u32.to_le_bytes());
        for (codec, raw, sealed, b) in [(0u8, 23u32, 63u32, 0x21u8), (1, 9, 44, 0x22)] {
            header.extend_from_slice(&[0, codec]);
            header.extend_from_slice(&0u32.to_le_bytes());
            header.extend_from_slice(&raw.to_le_bytes());
            header.extend_from_slice(&sealed.to_le_bytes());
            header.extend_from_slice(&[b; 32]);
        }
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
        };
        let hold = crate::hold::HoldRecord {
            snapshot: crate::id::SnapshotId::from_bytes([0xab; 32]),
            time_unix_ms: 1_767_225_600_000,
            reason: "case 42".into(),
        }
        .encode();
        let lock = crate::lock::LockRecord {
            kind: crate::lock::LockKind::Shared,
            host: "node-1".into(),
            pid: 4242,
            refresh: 3,
            created_unix_ms: 1_767_225_600_000,
            refreshed_unix_ms: 1_767_225_645_000,
        }
        .encode();
        vec![
            ("tree", tree),
            ("snapshot", record),
            ("index_segment", segment),
            ("pack_trailer", trailer),
            ("pack_header", header),
            ("key_slot", slot),
            ("key_secrets", secrets.encode().to_vec()),
            ("envelope", config.to_object(&admin).unwrap_or_default()),
            ("config", config.encode_body()),
            ("hold", hold),
            ("lock", lock),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::fuzzing;

    /// A target's name and its decoder.
    type Target = (&'static str, fn(&[u8]) -> bool);

    /// Every seed decodes through its target's function: the seeds reach past the first
    /// checks, so the fuzzer starts from inputs that exercise the whole decoder.
    #[test]
    fn every_seed_decodes_through_its_target() {
        let targets: [Target; 11] = [
            ("tree", fuzzing::tree),
            ("snapshot", fuzzing::snapshot),
            ("index_segment", fuzzing::index_segment),
            ("pack_trailer", fuzzing::pack_trailer),
            ("pack_header", fuzzing::pack_header),
            ("key_slot", fuzzing::key_slot),
            ("key_secrets", fuzzing::key_secrets),
            ("envelope", fuzzing::envelope),
            ("config", fuzzing::config),
            ("hold", fuzzing::hold),
            ("lock", fuzzing::lock),
        ];
        let seeds = fuzzing::seeds();
        assert_eq!(seeds.len(), targets.len());
        for (name, bytes) in seeds {
            let (_, decode) = targets.iter().find(|(t, _)| *t == name).unwrap();
            assert!(decode(&bytes), "seed of {name} does not decode");
        }
    }
}
