//! Content-defined chunking: splits a byte stream into chunks with FastCDC v2020 and a gear
//! table derived from the repository's secret `chunker_key`.
//!
//! Invariants:
//! - Boundaries depend only on the input bytes, the [`ChunkerParams`] and the chunker key,
//!   never on how the reader splits its data: streaming equals one-shot.
//! - Chunks are contiguous, non-empty, and concatenate back to the input; every chunk but
//!   the last is `min_size..=max_size` bytes long, the last is `1..=max_size`.
//! - Each cut is made with at least `max_size` bytes (or everything up to end of input)
//!   visible, which is what makes the streaming cut equal to the one-shot cut.
//! - A [`Chunker`] holds at most `2 × max_size` bytes of input, plus the chunk it returns.
//! - The gear table is secret (it would let an observer fingerprint content from chunk
//!   sizes): it is zeroized on drop and never printed.
//! - Changing the gear derivation, the normalisation level or the cut routine changes every
//!   chunk id in every repository; the golden vectors in the tests pin them.

use std::fmt;
use std::io::{ErrorKind, Read};
use std::sync::Arc;

use fastcdc::v2020::{
    AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN, Normalization,
    cut_gear, select_masks,
};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::crypto::{Key32, context};
use crate::error::{Error, Result};

/// Chunk size bounds, in bytes, fixed per repository at init.
///
/// By default, chunks are 256 KiB minimum, 1 MiB average and 4 MiB maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// No chunk but the last of a stream is shorter than this.
    pub min_size: u32,
    /// The size chunks cluster around (FastCDC normalisation level 1).
    pub avg_size: u32,
    /// No chunk is longer than this.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            min_size: 256 * 1024,
            avg_size: 1024 * 1024,
            max_size: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks that the sizes are within FastCDC's supported ranges, even, and ordered
    /// `min_size < avg_size < max_size`.
    pub fn validate(&self) -> Result<()> {
        check_size("chunker min_size", self.min_size, MINIMUM_MIN, MINIMUM_MAX)?;
        check_size("chunker avg_size", self.avg_size, AVERAGE_MIN, AVERAGE_MAX)?;
        check_size("chunker max_size", self.max_size, MAXIMUM_MIN, MAXIMUM_MAX)?;
        if !(self.min_size < self.avg_size && self.avg_size < self.max_size) {
            return Err(Error::invalid(
                "chunker sizes",
                format!(
                    "need min_size < avg_size < max_size, got {} / {} / {}",
                    self.min_size, self.avg_size, self.max_size
                ),
            ));
        }
        Ok(())
    }
}

/// Refuses a size outside `lo..=hi` or odd: FastCDC v2020 tests cut points in byte pairs,
/// so an odd bound would silently move boundaries by one byte.
fn check_size(what: &'static str, value: u32, lo: usize, hi: usize) -> Result<()> {
    if !(lo..=hi).contains(&(value as usize)) {
        let reason = format!("{value} is outside FastCDC's supported range {lo}..={hi}");
        return Err(Error::invalid(what, reason));
    }
    if !value.is_multiple_of(2) {
        let reason = format!("{value} is odd; FastCDC cuts in byte pairs and needs even sizes");
        return Err(Error::invalid(what, reason));
    }
    Ok(())
}

/// The 256-entry gear table and its left-shifted twin, derived from `chunker_key`.
///
/// Invariant: both vectors have exactly 256 entries and `gear_ls[i] == gear[i] << 1`.
/// The vectors live on the heap so that moving the table leaves no copies behind.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct GearTable {
    gear: Vec<u64>,
    gear_ls: Vec<u64>,
}

impl GearTable {
    /// Derives the table: BLAKE3 `derive_key` mode with context [`context::GEAR_TABLE`],
    /// fed the 32-byte key, read as a 2048-byte XOF, split into 256 little-endian `u64`s.
    pub(crate) fn derive(chunker_key: &Key32) -> GearTable {
        let mut hasher = blake3::Hasher::new_derive_key(context::GEAR_TABLE);
        hasher.update(chunker_key.expose());
        let mut xof = hasher.finalize_xof();
        let mut bytes = Zeroizing::new([0u8; 256 * 8]);
        xof.fill(&mut bytes[..]);
        hasher.zeroize();
        xof.zeroize();
        let gear: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        let gear_ls = gear.iter().map(|g| g << 1).collect();
        GearTable { gear, gear_ls }
    }
}

impl fmt::Debug for GearTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GearTable(..)")
    }
}

/// One content-defined chunk of a stream.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Where the chunk starts in the stream, in bytes.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
}

impl fmt::Debug for Chunk {
    /// Offset and length only: the data is user plaintext and does not belong in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.offset)
            .field("len", &self.data.len())
            .finish()
    }
}

/// The buffer's first allocation; it doubles from there up to `2 × max_size`, so a small
/// input never pays for a multi-MiB buffer.
const INITIAL_BUFFER: usize = 64 * 1024;

/// Splits any [`Read`] into content-defined [`Chunk`]s, holding at most `2 × max_size`
/// bytes of input at a time.
///
/// Yields `Err` once and then ends if the reader fails or the parameters are invalid;
/// reads that fail with [`ErrorKind::Interrupted`] are retried. An empty input yields no
/// chunks.
pub struct Chunker<R: Read> {
    reader: R,
    params: ChunkerParams,
    /// Refusal from [`ChunkerParams::validate`], reported by the first `next()`.
    invalid: Option<Error>,
    gear: Arc<GearTable>,
    mask_s: u64,
    mask_l: u64,
    /// Input read but not yet returned is `buf[start..end]`; `buf.len()` is the space
    /// allocated so far, at most `2 × max_size`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    bytes_read: u64,
    eof: bool,
    done: bool,
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader`. Invalid `params` are reported as the first item rather
    /// than panicking here.
    pub(crate) fn new(reader: R, params: ChunkerParams, gear: Arc<GearTable>) -> Self {
        let invalid = params.validate().err();
        let (mask_s, mask_l) = match invalid {
            None => select_masks(params.avg_size as usize, Normalization::Level1),
            // Unused: `next()` reports the error before any cut is made.
            Some(_) => (0, 0),
        };
        Self {
            reader,
            params,
            invalid,
            gear,
            mask_s,
            mask_l,
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            bytes_read: 0,
            eof: false,
            done: false,
        }
    }

    /// Bytes taken from the reader so far. While chunks remain this runs ahead of the
    /// chunks returned, by at most `2 × max_size`; at the end it is the input's length.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn max_size(&self) -> usize {
        self.params.max_size as usize
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        if let Some(e) = self.invalid.take() {
            return Err(e);
        }
        self.fill()?;
        let window = &self.buf[self.start..self.end];
        if window.is_empty() {
            return Ok(None);
        }
        let len = self.cut(window);
        let chunk = Chunk {
            offset: self.offset,
            data: window[..len].to_vec(),
        };
        self.start += len;
        self.offset += len as u64;
        Ok(Some(chunk))
    }

    /// Length of the chunk at the start of `window`. `window` is non-empty and holds at
    /// least `max_size` bytes unless it reaches end of input, so the result is in
    /// `1..=window.len()`.
    fn cut(&self, window: &[u8]) -> usize {
        let p = &self.params;
        let (_hash, len) = cut_gear(
            window,
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear.gear,
            &self.gear.gear_ls,
        );
        len
    }

    /// Reads until `max_size` bytes are buffered past `start`, or the input ends.
    fn fill(&mut self) -> Result<()> {
        while !self.eof && self.end - self.start < self.max_size() {
            self.make_room();
            let room = &mut self.buf[self.end..];
            let room_len = room.len();
            match self.reader.read(room) {
                Ok(0) => self.eof = true,
                // A reader claiming more than it was given would desynchronise offsets.
                Ok(n) if n > room_len => return Err(Error::Io(overlong_read(n, room_len))),
                Ok(n) => {
                    self.end += n;
                    self.bytes_read += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(())
    }

    /// Ensures free space after `end`. The unconsumed tail moves to the front only once
    /// `start` has passed `max_size`, so each input byte is copied at most once on top of
    /// the copy into its chunk (fastcdc's `StreamCDC` moves the whole buffer per chunk).
    fn make_room(&mut self) {
        if self.end < self.buf.len() {
            return;
        }
        let max = self.max_size();
        let cap = 2 * max;
        if self.start + max > cap {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Here end - start < max and start + max <= cap, so end < cap: growth is real.
            let new_len = (self.buf.len() * 2).clamp(INITIAL_BUFFER.min(cap), cap);
            // Exact, so that the allocation never exceeds the 2 × max_size bound.
            self.buf.reserve_exact(new_len - self.buf.len());
            self.buf.resize(new_len, 0);
        }
    }
}

fn overlong_read(n: usize, room: usize) -> std::io::Error {
    let msg = format!("reader returned {n} bytes into a {room}-byte buffer");
    std::io::Error::new(ErrorKind::InvalidData, msg)
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Result<Chunk>> {
        if self.done {
            return None;
        }
        let step = self.next_chunk();
        if !matches!(step, Ok(Some(_))) {
            // Fused after the end or an error; the buffer is no longer needed.
            self.done = true;
            self.buf = Vec::new();
        }
        step.transpose()
    }
}

impl<R: Read> fmt::Debug for Chunker<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunker")
            .field("offset", &self.offset)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io;

    use proptest::prelude::*;

    use super::*;

    const SMALL: ChunkerParams = ChunkerParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    const GOLDEN_KEY: [u8; 32] = [0x42; 32];

    fn gear(key: [u8; 32]) -> Arc<GearTable> {
        Arc::new(GearTable::derive(&Key32::from_bytes(key)))
    }

    /// Deterministic pseudo-random bytes: the first `len` bytes of the unkeyed BLAKE3 XOF
    /// of `seed`.
    fn xof(seed: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(seed)
            .finalize_xof()
            .fill(&mut out);
        out
    }

    fn chunk_all<R: Read>(r: R, params: ChunkerParams, g: &Arc<GearTable>) -> Result<Vec<Chunk>> {
        Chunker::new(r, params, Arc::clone(g)).collect()
    }

    fn lengths(chunks: &[Chunk]) -> Vec<usize> {
        chunks.iter().map(|c| c.data.len()).collect()
    }

    /// The reference: repeated cuts over the whole input held in memory.
    fn one_shot_lengths(data: &[u8], params: ChunkerParams, g: &Arc<GearTable>) -> Vec<usize> {
        let ch = Chunker::new(io::empty(), params, Arc::clone(g));
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let len = ch.cut(&data[pos..]);
            out.push(len);
            pos += len;
        }
        out
    }

    /// Hands out the data in the given piece sizes (cycled), with an `Interrupted` error
    /// before every third piece.
    struct PieceReader<'a> {
        data: &'a [u8],
        pieces: Vec<usize>,
        calls: usize,
    }

    impl Read for PieceReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::Error::from(ErrorKind::Interrupted));
            }
            let want = self.pieces[self.calls % self.pieces.len()];
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Random bytes, a two-symbol alphabet, or zeros: the last two reach `max_size` cuts.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..65536),
            prop::collection::vec(0u8..2, 0..65536),
            (0usize..8192).prop_map(|n| vec![0u8; n]),
        ]
    }

    proptest! {
        #[test]
        fn chunks_reassemble_contiguous_and_bounded(data in input(), key in any::<[u8; 32]>()) {
            let chunks = chunk_all(&data[..], SMALL, &gear(key)).map_err(|e| {
                TestCaseError::fail(e.to_string())
            })?;
            let mut offset = 0u64;
            for (i, c) in chunks.iter().enumerate() {
                prop_assert_eq!(c.offset, offset);
                prop_assert!(!c.data.is_empty() && c.data.len() <= SMALL.max_size as usize);
                if i + 1 < chunks.len() {
                    prop_assert!(c.data.len() >= SMALL.min_size as usize);
                }
                offset += c.data.len() as u64;
            }
            prop_assert_eq!(chunks.concat_data(), data);
        }

        #[test]
        fn streaming_equals_one_shot(
            data in input(),
            pieces in prop::collection::vec(1usize..300, 1..16),
        ) {
            let g = gear(GOLDEN_KEY);
            let whole = chunk_all(&data[..], SMALL, &g).map_err(|e| {
                TestCaseError::fail(e.to_string())
            })?;
            let reader = PieceReader { data: &data, pieces, calls: 0 };
            let streamed = chunk_all(reader, SMALL, &g).map_err(|e| {
                TestCaseError::fail(e.to_string())
            })?;
            prop_assert_eq!(&streamed, &whole);
            prop_assert_eq!(lengths(&whole), one_shot_lengths(&data, SMALL, &g));
        }
    }

    trait ConcatData {
        fn concat_data(&self) -> Vec<u8>;
    }

    impl ConcatData for Vec<Chunk> {
        fn concat_data(&self) -> Vec<u8> {
            self.iter().flat_map(|c| c.data.iter().copied()).collect()
        }
    }

    #[test]
    fn buffer_never_exceeds_twice_max_size() -> Result<()> {
        // 3000 is not a power of two: the doubling growth has to clamp exactly.
        let params = ChunkerParams {
            max_size: 3000,
            ..SMALL
        };
        let data = vec![0u8; 100_000];
        let mut ch = Chunker::new(&data[..], params, gear(GOLDEN_KEY));
        let mut total = 0;
        while let Some(c) = ch.next() {
            total += c?.data.len();
            assert!(ch.buf.capacity() <= 6000, "capacity {}", ch.buf.capacity());
        }
        assert_eq!(total, data.len());
        assert_eq!(ch.bytes_read(), data.len() as u64);
        Ok(())
    }

    #[test]
    fn insertion_near_start_keeps_most_chunks() -> Result<()> {
        let g = gear(GOLDEN_KEY);
        let data = xof(b"chatvault chunker shift test", 64 << 20);
        let ids = |r: &mut dyn Read| -> Result<Vec<blake3::Hash>> {
            Chunker::new(r, ChunkerParams::default(), Arc::clone(&g))
                .map(|c| Ok(blake3::hash(&c?.data)))
                .collect()
        };
        let original: HashSet<_> = ids(&mut &data[..])?.into_iter().collect();
        let inserted = [0xA5u8; 100];
        let mut modified = (&data[..1000]).chain(&inserted[..]).chain(&data[1000..]);
        let modified = ids(&mut modified)?;
        let shared = modified.iter().filter(|id| original.contains(id)).count();
        assert!(modified.len() > 30, "only {} chunks", modified.len());
        assert!(
            shared * 10 >= modified.len() * 9,
            "{shared} of {} chunks shared",
            modified.len()
        );
        Ok(())
    }

    #[test]
    fn chunker_key_decides_boundaries() -> Result<()> {
        let data = xof(b"chatvault chunker key test", 64 * 1024);
        let a = lengths(&chunk_all(&data[..], SMALL, &gear([1; 32]))?);
        let a_again = lengths(&chunk_all(&data[..], SMALL, &gear([1; 32]))?);
        let b = lengths(&chunk_all(&data[..], SMALL, &gear([2; 32]))?);
        assert_eq!(a, a_again);
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn gear_table_is_shifted_twin() {
        let g = gear(GOLDEN_KEY);
        assert_eq!(g.gear.len(), 256);
        assert_eq!(g.gear_ls.len(), 256);
        for (plain, shifted) in g.gear.iter().zip(&g.gear_ls) {
            assert_eq!(*shifted, plain << 1);
        }
    }

    // Golden vectors. The gear key is [0x42; 32]. Inputs are the first bytes of the
    // unkeyed BLAKE3 XOF of b"chatvault chunker golden v1" (see `xof`). If one of these
    // fails, chunk boundaries (and so every blob id) changed: that is a format change.

    #[test]
    fn golden_gear_table() {
        let g = gear(GOLDEN_KEY);
        assert_eq!(g.gear[..4], GOLDEN_GEAR_HEAD);
        assert_eq!(g.gear[255], GOLDEN_GEAR_LAST);
    }

    #[test]
    fn golden_boundaries_default_params() -> Result<()> {
        let data = xof(b"chatvault chunker golden v1", 8 << 20);
        let chunks = chunk_all(&data[..], ChunkerParams::default(), &gear(GOLDEN_KEY))?;
        assert_eq!(lengths(&chunks), GOLDEN_DEFAULT_LENGTHS);
        Ok(())
    }

    #[test]
    fn golden_boundaries_small_params() -> Result<()> {
        let data = xof(b"chatvault chunker golden v1", 4096);
        let chunks = chunk_all(&data[..], SMALL, &gear(GOLDEN_KEY))?;
        assert_eq!(lengths(&chunks), GOLDEN_SMALL_LENGTHS);
        Ok(())
    }

    const GOLDEN_GEAR_HEAD: [u64; 4] = [
        0xa5fb4ddae1fabde7,
        0xf9bc2a1c62a3b903,
        0x114422d8ed7edb3a,
        0x928ebeb924fbf638,
    ];
    const GOLDEN_GEAR_LAST: u64 = 0x4307fbd2212c1364;
    const GOLDEN_DEFAULT_LENGTHS: &[usize] =
        &[1568287, 608685, 2014673, 1472881, 1589832, 400472, 733778];
    const GOLDEN_SMALL_LENGTHS: &[usize] = &[
        299, 77, 321, 268, 222, 151, 160, 278, 260, 77, 286, 480, 375, 458, 71, 306, 7,
    ];

    #[test]
    fn validate_accepts_default_and_small() -> Result<()> {
        ChunkerParams::default().validate()?;
        SMALL.validate()?;
        let largest = ChunkerParams {
            min_size: MINIMUM_MAX as u32,
            avg_size: AVERAGE_MAX as u32,
            max_size: MAXIMUM_MAX as u32,
        };
        largest.validate()
    }

    #[test]
    fn validate_refuses_bad_params() {
        let p = |min_size, avg_size, max_size| ChunkerParams {
            min_size,
            avg_size,
            max_size,
        };
        let cases = [
            (p(62, 256, 1024), "chunker min_size", "outside"),
            (p(2 << 20, 4 << 20, 8 << 20), "chunker min_size", "outside"),
            (p(64, 254, 1024), "chunker avg_size", "outside"),
            (p(64, 8 << 20, 16 << 20), "chunker avg_size", "outside"),
            (p(64, 256, 1022), "chunker max_size", "outside"),
            (p(64, 256, (16 << 20) + 2), "chunker max_size", "outside"),
            (p(65, 256, 1024), "chunker min_size", "odd"),
            (p(64, 257, 1024), "chunker avg_size", "odd"),
            (p(64, 256, 1025), "chunker max_size", "odd"),
            (p(512, 256, 1024), "chunker sizes", "min_size < avg_size"),
            (p(256, 256, 1024), "chunker sizes", "min_size < avg_size"),
            (p(64, 2048, 1024), "chunker sizes", "min_size < avg_size"),
            (p(64, 2048, 2048), "chunker sizes", "min_size < avg_size"),
        ];
        for (params, want_what, want_reason) in cases {
            match params.validate() {
                Err(Error::InvalidArgument { what, reason }) => {
                    assert_eq!(what, want_what, "{params:?}");
                    assert!(reason.contains(want_reason), "{params:?}: {reason}");
                }
                other => panic!("{params:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_params_yield_one_error_not_panic() {
        let params = ChunkerParams {
            max_size: 0,
            ..SMALL
        };
        let mut ch = Chunker::new(&[1u8; 10][..], params, gear(GOLDEN_KEY));
        assert!(matches!(
            ch.next(),
            Some(Err(Error::InvalidArgument { .. }))
        ));
        assert!(ch.next().is_none());
    }

    #[test]
    fn empty_input_yields_no_chunks() {
        let mut ch = Chunker::new(io::empty(), SMALL, gear(GOLDEN_KEY));
        assert!(ch.next().is_none());
        assert!(ch.next().is_none());
        assert_eq!(ch.bytes_read(), 0);
    }

    #[test]
    fn all_zero_input_cuts_at_max_size() -> Result<()> {
        let params = ChunkerParams::default();
        let max = params.max_size as usize;
        let data = vec![0u8; 10 << 20];
        let chunks = chunk_all(&data[..], params, &gear(GOLDEN_KEY))?;
        assert_eq!(lengths(&chunks), [max, max, (10 << 20) - 2 * max]);
        assert_eq!(chunks[2].offset, 2 * max as u64);
        Ok(())
    }

    /// Yields `ok_bytes` of data, then fails.
    struct FailingReader {
        ok_bytes: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok_bytes == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.ok_bytes);
            buf[..n].fill(7);
            self.ok_bytes -= n;
            Ok(n)
        }
    }

    #[test]
    fn read_error_mid_stream_is_returned_then_iteration_ends() {
        let mut ch = Chunker::new(FailingReader { ok_bytes: 5000 }, SMALL, gear(GOLDEN_KEY));
        let mut chunks = 0;
        let err = loop {
            match ch.next() {
                Some(Ok(_)) => chunks += 1,
                Some(Err(e)) => break e,
                None => panic!("ended without reporting the read error"),
            }
        };
        assert!(matches!(&err, Error::Io(e) if e.to_string() == "disk on fire"));
        // Chunks whose full max_size window was read before the failure come out first.
        assert!(chunks >= 3, "{chunks} chunks before the error");
        assert!(ch.next().is_none());
    }

    #[test]
    fn overlong_read_is_an_error_not_a_panic() {
        struct Liar;
        impl Read for Liar {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                Ok(buf.len() + 1)
            }
        }
        let mut ch = Chunker::new(Liar, SMALL, gear(GOLDEN_KEY));
        assert!(matches!(ch.next(), Some(Err(Error::Io(_)))));
        assert!(ch.next().is_none());
    }

    #[test]
    fn debug_output_hides_secrets_and_data() {
        let g = gear(GOLDEN_KEY);
        assert_eq!(format!("{g:?}"), "GearTable(..)");
        let chunk = Chunk {
            offset: 7,
            data: b"secret plaintext".to_vec(),
        };
        assert_eq!(format!("{chunk:?}"), "Chunk { offset: 7, len: 16 }");
        let ch = Chunker::new(io::empty(), SMALL, g);
        let shown = format!("{ch:?}");
        assert!(
            shown.starts_with("Chunker { offset: 0, params: ChunkerParams {"),
            "{shown}"
        );
    }
}
