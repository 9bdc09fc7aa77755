//! Compatibility: a small repository written by format version 2 is committed under
//! `tests/fixtures/repo-v2`, and every later build must read it, as it reads
//! `repo-v1` (`format_v1.rs`). It pins, through the real readers, the bytes of the config,
//! both kinds of key slot, index segments, packs (whose header binds the format version
//! and data key generation), trees, snapshot records and a hold.
//!
//! To regenerate it (only while format 2 is the version this build writes, with a spec
//! diff): `CHATVAULT_WRITE_FIXTURE=1 cargo test --release -p chatvault-core --test
//! format_v2`.

mod common;

const PASSPHRASE: &str = "chatvault fixture v2";

#[test]
fn reads_the_format_v2_fixture() {
    if std::env::var_os("CHATVAULT_WRITE_FIXTURE").is_some() {
        assert_eq!(
            chatvault_core::FORMAT_VERSION,
            2,
            "format 2 is no longer written"
        );
        let cache = tempfile::tempdir().unwrap();
        common::write_fixture(&common::fixture_dir(2), cache.path(), PASSPHRASE);
    }
    common::assert_every_object_is_version(&common::fixture_dir(2), 2);
    assert_eq!(common::read_fixture(2, PASSPHRASE), 1, "the fixture's hold");
}
