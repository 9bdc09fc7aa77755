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
        .into_records()
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

const GOLDEN_FIRST_LINES: [&str; 3] = [
    r#"{"seq":1,"ts":1767600000455,"from":"user94","conv":"c13","text":"should minutes into?"}"#,
    r#"{"seq":2,"ts":1767600002948,"from":"user100","conv":"c100","text":"how just how help know of last. customer!"}"#,
    r#"{"seq":3,"ts":1767600005871,"from":"user197","conv":"c236","text":"call and yes day. their make see it yeah help did was yeah thanks if... have do of it then. for yes"}"#,
];
/// BLAKE3 of the first MiB of the default chat log.
const GOLDEN_CHAT_1MIB: &str = "e0023e39c42d523bd59f8c225d2fce5336a67f7277c08a1855bf580f2308da4a";
/// BLAKE3 of `media_bytes(1, 1 MiB)`.
const GOLDEN_MEDIA_1MIB: &str = "81b7b936862b57199661c3921f2c05ec35fe87a3cd524e5b95c2d35ac5668301";
/// BLAKE3 of `mixed_corpus(1, 16 MiB)`.
const GOLDEN_MIXED_16MIB: &str = "335b9f12ed7bee5ca01ece9699b49b22b38dc97d78d641633ed8d1c93cf3ad01";
