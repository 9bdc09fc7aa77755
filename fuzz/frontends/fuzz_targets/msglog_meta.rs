//! Fuzz target: the message-log frontend's node meta and its segment table
//! (docs/FORMAT.md, section 10.5), which every restore and export of a stream decodes.
//! Never panics; what decodes re-encodes to a value that decodes to itself, and its
//! segment table is checked against a chunk list of the described shape.
#![no_main]

use chatvault_core::{BlobId, ContentRef};
use chatvault_msglog::NodeMeta;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(meta) = NodeMeta::decode(data, "fuzz") else {
        return;
    };
    let again = NodeMeta::decode(&meta.encode(), "fuzz").expect("re-encoded meta decodes");
    assert_eq!(again, meta);
    // A chunk list with one chunk per segment, lengths adding up to `len` when that fits.
    let n = meta.segments.len();
    let content: Vec<ContentRef> = (0..n)
        .map(|i| {
            let share = if n == 0 { 0 } else { meta.len / n as u64 };
            let len = if i + 1 == n {
                meta.len - share * (n as u64 - 1)
            } else {
                share
            };
            ContentRef {
                id: BlobId::from_bytes([i as u8; 32]),
                len: u32::try_from(len).unwrap_or(u32::MAX),
            }
        })
        .collect();
    let fits = content.iter().map(|c| u64::from(c.len)).sum::<u64>() == meta.len;
    let checked = meta.check_content(&content, "fuzz");
    if meta.is_stream() {
        assert_eq!(checked.is_ok(), fits, "{checked:?}");
    }
});
