//! Golden values for the generators' output.
//!
//! Invariant: these change only when a generator deliberately changes. Other crates pin
//! chunk boundaries and ids on this output, so a failure here means their golden vectors
//! move too: update both in the same change, and say so.

use std::io::Read;

use chatvault_workload::{ChatLog, ChatLogOptions, MediaReader, media_bytes, mixed_corpus};

fn hash_of(mut r: impl Read) -> String {
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut r, &mut h).unwrap();
    h.finalize().to_hex().to_string()
}

#[test]
fn first_chat_records_are_pinned() {
    let lines: Vec<String> = ChatLog::new(ChatLogOptions::default())
        .take(3)
        .map(|l| String::from_utf8(l).unwrap())
        .collect();
    assert_eq!(lines, GOLDEN_FIRST_LINES);
}

#[test]
fn chat_log_bytes_are_pinned() {
    let log = ChatLog::new(ChatLogOptions::default());
    assert_eq!(hash_of(log.take(1 << 20)), GOLDEN_CHAT_1MIB);
}

#[test]
fn media_bytes_are_pinned() {
    assert_eq!(hash_of(MediaReader::new(1, 1 << 20)), GOLDEN_MEDIA_1MIB);
    assert_eq!(
        blake3::hash(&media_bytes(1, 1 << 20)).to_hex().as_str(),
        GOLDEN_MEDIA_1MIB
    );
}

#[test]
fn mixed_corpus_bytes_are_pinned() {
    assert_eq!(hash_of(mixed_corpus(1, 16 << 20)), GOLDEN_MIXED_16MIB);
}

const GOLDEN_FIRST_LINES: [&str; 3] = ["", "", ""];
const GOLDEN_CHAT_1MIB: &str = "";
const GOLDEN_MEDIA_1MIB: &str = "";
const GOLDEN_MIXED_16MIB: &str = "";
