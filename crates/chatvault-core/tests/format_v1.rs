//! Compatibility: a small repository written by format version 1 is committed under
//! `tests/fixtures/repo-v1`, and every later build must read it. It pins, through the real
//! readers, the bytes of the config, both kinds of key slot, index segments, packs, trees
//! and snapshot records as format 1 wrote them.
//!
//! This build writes format 2, so it cannot regenerate this fixture: it is the record of
//! what format 1 wrote (by the format 1 build's copy of `common::write_fixture`, before
//! holds existed, so it has none). `format_v2.rs` pins format 2 the same way.

mod common;

const PASSPHRASE: &str = "chatvault fixture v1";

#[test]
fn reads_the_format_v1_fixture() {
    common::assert_every_object_is_version(&common::fixture_dir(1), 1);
    assert_eq!(
        common::read_fixture(1, PASSPHRASE),
        0,
        "no holds in format 1"
    );
}
