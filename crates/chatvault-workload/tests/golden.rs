//! Golden values for the generators' output.
//!
//! Invariant: these change only when a generator deliberately changes. Other crates pin
//! chunk boundaries and ids on this output, so a failure here means their golden vectors
//! move too: update both in the same change, and say so.

use std::io::Read;

use std::path::Path;

use chatvault_workload::{
    ChatLog, ChatLogOptions, MediaReader, Server, ServerOptions, generate, media_bytes,
    mixed_corpus,
};

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

#[test]
fn first_server_records_are_pinned() {
    let day = Server::new(ServerOptions::tiny()).next_day();
    let lines: Vec<String> = day
        .records()
        .take(3)
        .map(|r| String::from_utf8(r.line).unwrap())
        .collect();
    assert_eq!(lines, GOLDEN_SERVER_FIRST_LINES);
}

#[test]
fn tiny_server_directory_is_pinned() {
    // A fresh directory of our own (no `tempfile`: this crate does not own the lock file).
    let dir = std::env::temp_dir().join(format!("chatvault-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stats = generate(&dir, ServerOptions::tiny(), 3).unwrap();
    let hash = directory_hash(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let stats = (
        stats.records,
        stats.log_bytes,
        stats.media_files,
        stats.media_bytes,
    );
    assert_eq!(stats, GOLDEN_TINY_3_DAYS_STATS);
    assert_eq!(hash, GOLDEN_TINY_3_DAYS_DIR);
}

#[test]
fn bench_server_first_day_is_pinned() {
    let day = Server::new(ServerOptions::thirty_day_bench()).next_day();
    let mut h = blake3::Hasher::new();
    for r in day.records() {
        h.update(&r.line);
        h.update(b"\n");
    }
    for m in day.media() {
        h.update(m.path().to_str().unwrap().as_bytes());
        h.update(&m.len.to_le_bytes());
    }
    assert_eq!(day.record_count(), GOLDEN_BENCH_DAY0_RECORDS);
    assert_eq!(h.finalize().to_hex().as_str(), GOLDEN_BENCH_DAY0);
}

#[test]
fn other_layouts_and_string_timestamps_are_pinned() {
    use chatvault_workload::{DiskLayout, TsStyle};
    let first = |ts_style| -> String {
        let opts = ServerOptions {
            ts_style,
            ..ServerOptions::tiny()
        };
        let r = Server::new(opts).next_day().records().next().unwrap();
        String::from_utf8(r.line).unwrap()
    };
    assert_eq!(first(TsStyle::Rfc3339), GOLDEN_FIRST_LINE_RFC3339);
    assert_eq!(first(TsStyle::DecimalSeconds), GOLDEN_FIRST_LINE_DECIMAL);
    // The same instants as the default output's.
    assert_eq!(
        first(TsStyle::Millis),
        GOLDEN_SERVER_FIRST_LINES[0],
        "the default output does not change"
    );
    let dir = std::env::temp_dir().join(format!("chatvault-golden-layout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = ServerOptions {
        layout: DiskLayout::ConvFolders,
        ts_style: TsStyle::Rfc3339,
        ..ServerOptions::tiny()
    };
    let stats = generate(&dir, opts, 2).unwrap();
    let hash = directory_hash(&dir);
    assert!(dir.join("t1/conv/dm15/2026-01.jsonl").is_file());
    assert!(!dir.join("logs").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        (stats.records, stats.log_bytes),
        GOLDEN_CONV_FOLDERS_2_DAYS_STATS
    );
    assert_eq!(hash, GOLDEN_CONV_FOLDERS_2_DAYS_DIR);
}

/// BLAKE3 over every file under `root`, in path order: the relative path with `/`
/// separators, a NUL, the length as 8 bytes little-endian, then the bytes.
fn directory_hash(root: &Path) -> String {
    let mut paths = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    let mut named: Vec<(String, std::path::PathBuf)> = paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap();
            let parts: Vec<&str> = rel.iter().map(|c| c.to_str().unwrap()).collect();
            (parts.join("/"), p)
        })
        .collect();
    named.sort();
    let mut h = blake3::Hasher::new();
    for (name, path) in named {
        let bytes = std::fs::read(path).unwrap();
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().to_hex().to_string()
}

const GOLDEN_SERVER_FIRST_LINES: [&str; 3] = [
    r#"{"seq":1,"ts":1767580716417,"tenant":"t1","conv":"dm15","from":"u2","kind":"msg","text":"if to! all? ok next you in was fix again start week what but same are for that commit"}"#,
    r#"{"seq":2,"ts":1767580777940,"tenant":"t1","conv":"dm15","from":"u8","kind":"msg","text":"please check us was me good, know been people had days do can it's is yeah know people? great days check"}"#,
    r#"{"seq":3,"ts":1767580848643,"tenant":"t1","conv":"dm15","from":"u2","kind":"msg","text":"you send can some about report sorry can good, yeah! a."}"#,
];
/// `(records, log bytes, media files, media bytes)` of `generate(tiny, 3 days)`.
const GOLDEN_TINY_3_DAYS_STATS: (u64, u64, u64, u64) = (1895, 692_523, 48, 8_123_542);
/// [`directory_hash`] of `generate(tiny, 3 days)`, state file included.
const GOLDEN_TINY_3_DAYS_DIR: &str =
    "462fd39d2aa513fbb6f841953f3d2802db63994816adcda525c4dcd812c98f23";
/// Records of day 0 of the 30-day bench preset.
const GOLDEN_BENCH_DAY0_RECORDS: usize = 136_738;
/// BLAKE3 of day 0 of the 30-day bench preset: its lines, then its media paths and sizes.
const GOLDEN_BENCH_DAY0: &str = "d60836ee78fde32d1fd9113e65f646c398e39e309f72bb0612642ec2c351c32c";
/// The first record of the tiny server with `ts` as RFC 3339 and as decimal seconds.
const GOLDEN_FIRST_LINE_RFC3339: &str = r#"{"seq":1,"ts":"2026-01-05T02:38:36.417Z","tenant":"t1","conv":"dm15","from":"u2","kind":"msg","text":"if to! all? ok next you in was fix again start week what but same are for that commit"}"#;
const GOLDEN_FIRST_LINE_DECIMAL: &str = r#"{"seq":1,"ts":"1767580716.417000","tenant":"t1","conv":"dm15","from":"u2","kind":"msg","text":"if to! all? ok next you in was fix again start week what but same are for that commit"}"#;
/// `(records, log bytes)` and [`directory_hash`] of `generate(tiny, conv-folders, rfc3339, 2 days)`.
const GOLDEN_CONV_FOLDERS_2_DAYS_STATS: (u64, u64) = (1271, 499_209);
const GOLDEN_CONV_FOLDERS_2_DAYS_DIR: &str =
    "d16186c4489d119615246e1923e52bcc0c33dbe89998e8d913c2e9ef322ce11c";
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
