//! Message text: log-normal lengths, English or CJK words, a share of long pastes.
//!
//! Invariants:
//! - The text is a valid JSON string body: vocabulary entries need no escaping (see
//!   `words.rs`) and pastes break lines with the two-byte escape `\\n`, never a raw newline.
//! - For the same thresholds and generator state, the same bytes and the same number of
//!   draws: [`ChatLog`](crate::ChatLog)'s golden values pin this code.

use crate::rng::{MESSAGE_CHARS, Rng};
use crate::words::{
    CJK_BYTES, CJK_PUNCTUATION, ENGLISH_PADDED, ENGLISH_PUNCTUATION, MESSAGE_ENDINGS, Padded,
};

/// Pastes are 1–8 KiB of text.
const PASTE_MIN_BYTES: u64 = 1024;
pub(crate) const PASTE_MAX_BYTES: u64 = 8192;

/// Writes message texts with fixed shares of CJK messages and long pastes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TextWriter {
    /// Threshold (per 2^32) below which a message is mostly CJK.
    pub(crate) cjk: u64,
    /// Threshold (per 2^32) below which a message is a long paste.
    pub(crate) paste: u64,
}

impl TextWriter {
    pub(crate) fn write(&self, rng: &mut Rng, out: &mut Vec<u8>) {
        let r = rng.next_u64();
        let cjk = (r >> 32) < self.cjk;
        let paste = (r & 0xffff_ffff) < self.paste;
        let target_chars = if paste {
            let bytes = PASTE_MIN_BYTES + rng.below(PASTE_MAX_BYTES - PASTE_MIN_BYTES + 1);
            // CJK characters take 3 bytes in UTF-8; the paste size is meant in bytes.
            if cjk { bytes / 3 } else { bytes }
        } else {
            MESSAGE_CHARS.sample(rng.next_u64())
        };
        if cjk {
            Self::write_cjk(rng, out, target_chars, paste);
        } else {
            Self::write_english(rng, out, target_chars, paste);
        }
        let ending = MESSAGE_ENDINGS[rng.below(MESSAGE_ENDINGS.len() as u64) as usize];
        out.extend_from_slice(ending.as_bytes());
    }

    /// Words separated by spaces, sometimes punctuation, in pastes line breaks.
    fn write_english(rng: &mut Rng, out: &mut Vec<u8>, target_chars: u64, paste: bool) {
        let mut chars = 0u64;
        while chars < target_chars {
            let r = rng.next_u64();
            if chars > 0 {
                let sep: &str = if paste && (r >> 40) & 15 == 0 {
                    "\\n"
                } else if (r >> 44) & 15 == 0 {
                    ENGLISH_PUNCTUATION[((r >> 48) as usize) % ENGLISH_PUNCTUATION.len()]
                } else {
                    " "
                };
                out.extend_from_slice(sep.as_bytes());
                chars += sep.len() as u64;
            }
            chars += push_english(out, r) as u64;
        }
    }

    /// CJK characters, with full-width punctuation and the odd English word
    /// (code-switching: "PDF", "ok", product names).
    fn write_cjk(rng: &mut Rng, out: &mut Vec<u8>, target_chars: u64, paste: bool) {
        let mut chars = 0u64;
        while chars < target_chars {
            let r = rng.next_u64();
            if paste && (r >> 40) & 31 == 0 {
                out.extend_from_slice(b"\\n");
                chars += 1;
            } else if (r >> 45) & 15 == 0 {
                out.push(b' ');
                chars += push_english(out, r) as u64 + 2;
                out.push(b' ');
            } else if (r >> 49) & 15 == 0 {
                let p = CJK_PUNCTUATION[((r >> 53) as usize) % CJK_PUNCTUATION.len()];
                out.extend_from_slice(p.as_bytes());
                chars += 1;
            } else {
                out.extend_from_slice(&CJK_BYTES[frequent_index(r, CJK_BYTES.len())]);
                chars += 1;
            }
        }
    }
}

/// An index into a frequency-ordered list of `len` entries, from the low 32 bits of `r`:
/// the minimum of two 16-bit uniforms, so the first entries are about twice as common as
/// the average and the last ones rare.
#[inline]
fn frequent_index(r: u64, len: usize) -> usize {
    let skewed = (r & 0xffff).min((r >> 16) & 0xffff);
    ((skewed * len as u64) >> 16) as usize
}

/// Appends an English word chosen by the low 32 bits of `r`; returns its length.
#[inline]
fn push_english(out: &mut Vec<u8>, r: u64) -> usize {
    let Padded { bytes, len } = &ENGLISH_PADDED[frequent_index(r, ENGLISH_PADDED.len())];
    out.extend_from_slice(bytes);
    out.truncate(out.len() - bytes.len() + len);
    *len
}

/// Appends `n` in decimal. `write!` would do, at several times the cost per record.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_decimal_writes_every_width() {
        for n in [0, 7, 10, 99, 1_767_571_200_000, u64::MAX] {
            let mut v = Vec::new();
            push_decimal(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }
}
