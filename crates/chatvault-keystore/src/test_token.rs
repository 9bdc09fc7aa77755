//! SoftHSM2 tokens for tests (hidden; used by this crate's and the CLI's tests): the
//! module's path and a token directory per test, initialised with `softhsm2-util`. Both
//! are installed by `scripts/install-softhsm.sh` (which `.ci/run` calls); a missing one
//! fails the test with that instruction rather than skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's SoftHSM2 module, unless `CHATVAULT_PKCS11_MODULE` names another.
pub fn module() -> PathBuf {
    let path = std::env::var_os("CHATVAULT_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/softhsm/libsofthsm2.so".into());
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-softhsm.sh (or set CHATVAULT_PKCS11_MODULE)",
        path.display()
    );
    path
}

/// A SoftHSM2 configuration (`dir/softhsm2.conf`) whose tokens live in `dir/tokens`, with
/// token `label` initialised (user PIN 1234, SO PIN 5678); returns the file for
/// `SOFTHSM2_CONF`.
pub fn softhsm(dir: &Path, label: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("the token directory");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .expect("writing softhsm2.conf");
    softhsm2_util(
        &conf,
        &[
            "--init-token",
            "--free",
            "--label",
            label,
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
    );
    conf
}

/// Runs `softhsm2-util` with `args` on the tokens of `conf`; panics if it fails.
pub fn softhsm2_util(conf: &Path, args: &[&str]) {
    let out = Command::new("softhsm2-util")
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .expect("softhsm2-util (scripts/install-softhsm.sh installs it)");
    assert!(out.status.success(), "softhsm2-util {args:?}: {out:?}");
}
