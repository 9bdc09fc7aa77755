//! A mixed backup corpus: chat log text and media interleaved in pieces of a few MiB, as
//! a chat server's data directory looks to a chunker.
//!
//! Invariants:
//! - Exactly `total` bytes, the same for the same seed.
//! - Pieces alternate text, media, text, …; each is 1–4 MiB except the last, which is cut
//!   to make `total`. The text pieces are consecutive parts of one chat log; each media
//!   piece has its own seed, so no two pieces share content (nothing dedups by accident).

use std::io::{self, Read};

use crate::chat_log::{ChatLog, ChatLogOptions};
use crate::media::MediaReader;
use crate::rng::{Rng, derive_seed};

const MIB: u64 = 1024 * 1024;
const PIECE_MIN: u64 = MIB;
const PIECE_MAX: u64 = 4 * MIB;

/// About half chat log text, half media, interleaved in pieces of 1–4 MiB, exactly
/// `total` bytes long, determined by `seed`. Inputs under a few MiB are mostly text.
///
/// ```
/// use std::io::Read;
/// let mut bytes = Vec::new();
/// chatvault_workload::mixed_corpus(1, 5_000_000).read_to_end(&mut bytes).unwrap();
/// assert_eq!(bytes.len(), 5_000_000);
/// ```
pub fn mixed_corpus(seed: u64, total: u64) -> impl Read + Send {
    MixedCorpus {
        plan: PiecePlan::new(seed, total),
        chat: ChatLog::new(ChatLogOptions {
            seed: derive_seed(seed, "mixed-corpus chat", 0),
            ..ChatLogOptions::default()
        }),
        piece: None,
    }
}

/// The piece being read and the bytes left in it.
enum Piece {
    Text(u64),
    Media(MediaReader),
}

struct MixedCorpus {
    plan: PiecePlan,
    chat: ChatLog,
    piece: Option<Piece>,
}

impl Read for MixedCorpus {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let n = match &mut self.piece {
                None => match self.plan.next() {
                    None => return Ok(0),
                    Some(p) => {
                        self.piece = Some(p);
                        continue;
                    }
                },
                Some(Piece::Text(left)) => {
                    let want = (out.len() as u64).min(*left) as usize;
                    let n = self.chat.read(&mut out[..want])?;
                    *left -= n as u64;
                    n
                }
                Some(Piece::Media(m)) => m.read(out)?,
            };
            if n == 0 {
                // The piece is exhausted (generators never end early).
                self.piece = None;
                continue;
            }
            return Ok(n);
        }
    }
}

/// The sequence of pieces: kinds alternate, sizes are drawn from the seed.
struct PiecePlan {
    rng: Rng,
    seed: u64,
    left: u64,
    index: u64,
}

impl PiecePlan {
    fn new(seed: u64, total: u64) -> Self {
        Self {
            rng: Rng::new(derive_seed(seed, "mixed-corpus plan", 0)),
            seed,
            left: total,
            index: 0,
        }
    }
}

impl Iterator for PiecePlan {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        if self.left == 0 {
            return None;
        }
        let len = (PIECE_MIN + self.rng.below(PIECE_MAX - PIECE_MIN + 1)).min(self.left);
        self.left -= len;
        let piece = if self.index.is_multiple_of(2) {
            Piece::Text(len)
        } else {
            Piece::Media(MediaReader::new(
                derive_seed(self.seed, "mixed-corpus media", self.index),
                len,
            ))
        };
        self.index += 1;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(seed: u64, total: u64) -> Vec<u8> {
        let mut v = Vec::new();
        mixed_corpus(seed, total).read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn length_is_exactly_total() {
        for total in [0, 1, 4095, MIB + 3, 9 * MIB + 17] {
            assert_eq!(corpus(2, total).len() as u64, total);
        }
    }

    #[test]
    fn same_seed_same_corpus() {
        let a = corpus(4, 6 * MIB);
        assert_eq!(a, corpus(4, 6 * MIB));
        assert_ne!(a, corpus(5, 6 * MIB));
        // A shorter corpus is a prefix of a longer one except for its cut last piece.
        assert_eq!(corpus(4, MIB), a[..MIB as usize]);
    }

    #[test]
    fn plan_is_about_half_media_in_pieces_of_a_few_mib() {
        let total = 1024 * MIB;
        let mut media = 0;
        let mut sum = 0;
        let pieces: Vec<Piece> = PiecePlan::new(8, total).collect();
        for (i, p) in pieces.iter().enumerate() {
            let len = match p {
                Piece::Text(l) => *l,
                Piece::Media(m) => {
                    media += m.remaining();
                    m.remaining()
                }
            };
            assert!(len <= PIECE_MAX);
            assert!(
                len >= PIECE_MIN || i == pieces.len() - 1,
                "piece {i}: {len}"
            );
            sum += len;
        }
        assert_eq!(sum, total);
        let share = media as f64 / total as f64;
        assert!((0.4..0.6).contains(&share), "{share}");
    }

    #[test]
    fn text_and_media_pieces_alternate() {
        // zstd per 256 KiB window: text windows compress, media windows do not, and a
        // corpus of several pieces has both.
        let data = corpus(6, 16 * MIB);
        let (mut text, mut media) = (0, 0);
        for w in data.chunks(256 * 1024) {
            let packed = zstd::bulk::compress(w, 1).unwrap().len();
            if packed * 2 < w.len() {
                text += 1;
            } else if packed * 100 >= w.len() * 99 {
                media += 1;
            }
        }
        assert!(
            text >= 16 && media >= 16,
            "text {text}, media {media} of 64"
        );
        assert!(data.starts_with(br#"{"seq":1,"#));
    }
}
