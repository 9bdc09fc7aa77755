//! Fuzz target: the filesystem frontend's node meta (docs/FORMAT.md, section 10.4), which
//! restore decodes for every entry of a snapshot. Never panics; what decodes re-encodes
//! to a value that decodes to itself.
#![no_main]

use chatvault_fs::FsMeta;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = FsMeta::decode(data) {
        let again = FsMeta::decode(&meta.encode()).expect("re-encoded meta decodes");
        assert_eq!(again, meta);
    }
});
