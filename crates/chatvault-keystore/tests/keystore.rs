//! The key stores against real back ends: SoftHSM2 (Debian's `softhsm2`, a real PKCS#11
//! module; `scripts/install-softhsm.sh` installs it) and shell scripts standing in for a
//! KMS.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` when the module is initialised, and this workspace
//! forbids the `unsafe` that setting a variable in a running test process needs: the
//! PKCS#11 test makes a token directory, then runs itself again as a child process with
//! `SOFTHSM2_CONF` pointing at it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chatvault_core::{Error, KeyWrapper, SeedWrap, SlotSeed};
use chatvault_keystore::test_token::{module, softhsm};
use chatvault_keystore::{CommandOptions, CommandStore, Pkcs11Options, Pkcs11Store};
use zeroize::Zeroizing;

fn store(token: &str, key: &str, pin: &'static str) -> Pkcs11Store {
    Pkcs11Store::new(
        Pkcs11Options {
            module: module(),
            token_label: Some(token.into()),
            key_label: Some(key.into()),
        },
        Box::new(move || Ok(Zeroizing::new(pin.to_owned()))),
    )
}

fn seed(b: u8) -> SlotSeed {
    SlotSeed::from_bytes(Zeroizing::new([b; 32]))
}

/// Set in the child process that runs the PKCS#11 scenario.
const CHILD: &str = "CHATVAULT_KEYSTORE_TEST_SOFTHSM";

#[test]
fn pkcs11_wraps_inside_the_token_and_names_what_is_missing() {
    let name = "pkcs11_wraps_inside_the_token_and_names_what_is_missing";
    if std::env::var_os(CHILD).is_none() {
        let dir = tempfile::tempdir().unwrap();
        let conf = softhsm(dir.path(), "T");
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &conf)
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }

    let admin = store("T", "kek", "1234");
    admin.generate_key("T", "kek").unwrap();
    let err = admin.generate_key("T", "kek").unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // Round trip; the ciphertext is not the seed, and the binding is authenticated.
    let wrap = admin.wrap(&seed(7), b"binding").unwrap();
    let SeedWrap::Pkcs11 {
        token_label,
        key_label,
        ciphertext,
        ..
    } = &wrap
    else {
        panic!("not a pkcs11 wrap")
    };
    assert_eq!((token_label.as_str(), key_label.as_str()), ("T", "kek"));
    assert_eq!(ciphertext.len(), 32 + 16);
    assert_ne!(&ciphertext[..32], &[7u8; 32][..]);
    // Opening needs no labels: the wrap names its token and key.
    let opener = Pkcs11Store::new(
        Pkcs11Options {
            module: module(),
            token_label: None,
            key_label: None,
        },
        Box::new(|| Ok(Zeroizing::new("1234".to_owned()))),
    );
    assert_eq!(
        opener.unwrap(&wrap, b"binding").unwrap().expose(),
        &[7u8; 32]
    );
    let err = opener.unwrap(&wrap, b"another slot").unwrap_err();
    assert!(err.to_string().contains("did not decrypt"), "{err}");

    // A wrong PIN is its own error, and does not name the PIN. (PKCS#11 login state is
    // per process and token: while a session of this process is logged in, any login
    // succeeds, so the stores above close theirs first.)
    drop((admin, opener));
    let err = store("T", "kek", "9999")
        .unwrap(&wrap, b"binding")
        .unwrap_err();
    assert!(matches!(err, Error::WrongPin { .. }), "{err}");
    assert!(!err.to_string().contains("9999"), "{err}");

    // A key label the token does not have, a token the module does not have.
    let err = store("T", "other", "1234")
        .wrap(&seed(1), b"b")
        .unwrap_err();
    assert!(
        err.to_string().contains("no secret key labelled \"other\""),
        "{err}"
    );
    let err = store("U", "kek", "1234").wrap(&seed(1), b"b").unwrap_err();
    assert!(
        err.to_string().contains("no token with this label") && err.to_string().contains("\"T\""),
        "{err}"
    );

    // The key destroyed on the token (C_DestroyObject): the wrap no longer opens, and the
    // error says which key is missing.
    destroy_key("T", "kek");
    let err = store("T", "kek", "1234")
        .unwrap(&wrap, b"binding")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no secret key labelled \"kek\" on the token (deleted"),
        "{err}"
    );
}

/// Destroys the secret key labelled `key` on token `token`, as an operator's
/// `pkcs11-tool --delete-object` would.
fn destroy_key(token: &str, key: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    let module = Pkcs11::new(module()).unwrap();
    let _ = module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| module.get_token_info(*s).unwrap().label() == token)
        .unwrap();
    let session = module.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&"1234".into())).unwrap();
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(key.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    session.destroy_object(found[0]).unwrap();
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    format!("sh {}", path.display())
}

/// A KMS made of openssl: the wrap command encrypts the seed under a key file the "KMS"
/// keeps, the unwrap command decrypts it.
#[test]
fn command_round_trip_and_failures_name_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let kms_key = dir.path().join("kms.key");
    std::fs::write(&kms_key, "correct horse battery staple\n").unwrap();
    let k = kms_key.display();
    let wrap = script(
        dir.path(),
        "wrap",
        &format!("openssl enc -aes-256-cbc -pbkdf2 -a -A -pass file:{k}"),
    );
    let unwrap = script(
        dir.path(),
        "unwrap",
        &format!("openssl enc -d -aes-256-cbc -pbkdf2 -a -A -pass file:{k}"),
    );
    let store = CommandStore::new(CommandOptions {
        wrap: Some(wrap),
        ..CommandOptions::new(&unwrap)
    });
    let wrapped = store.wrap(&seed(9), b"ctx").unwrap();
    let SeedWrap::Command { ciphertext } = &wrapped else {
        panic!("not a command wrap")
    };
    assert!(
        ciphertext.starts_with(b"U2FsdGVk"),
        "openssl's salted format"
    );
    assert_eq!(store.unwrap(&wrapped, b"ctx").unwrap().expose(), &[9u8; 32]);

    // The binding reaches the command.
    let echo = script(
        dir.path(),
        "ctx",
        "printf '%s' \"$CHATVAULT_KEY_CONTEXT\" >&2; exit 3",
    );
    let err = CommandStore::new(CommandOptions::new(&echo))
        .unwrap(&wrapped, b"ctx")
        .unwrap_err();
    assert!(err.to_string().contains("Y3R4"), "base64 of ctx: {err}");

    // Failure: exit status and standard error, not standard output.
    let fails = script(
        dir.path(),
        "fails",
        "cat >/dev/null; echo SECRET-ON-STDOUT; echo 'permission denied: transit/decrypt' >&2; exit 2",
    );
    let err = CommandStore::new(CommandOptions::new(&fails))
        .unwrap(&wrapped, b"ctx")
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::KeyStore { .. }));
    assert!(
        text.contains("unwrap command") && text.contains("permission denied"),
        "{text}"
    );
    assert!(text.contains("exit status: 2"), "{text}");
    assert!(!text.contains("SECRET-ON-STDOUT"), "{text}");

    // Output that is not a seed; a command that hangs.
    let junk = script(dir.path(), "junk", "cat >/dev/null; echo not-base64!");
    let err = CommandStore::new(CommandOptions::new(&junk))
        .unwrap(&wrapped, b"ctx")
        .unwrap_err();
    assert!(
        err.to_string().contains("did not print a base64 seed"),
        "{err}"
    );
    let hangs = script(dir.path(), "hangs", "sleep 30");
    let err = CommandStore::new(CommandOptions {
        timeout: Duration::from_millis(300),
        ..CommandOptions::new(&hangs)
    })
    .unwrap(&wrapped, b"ctx")
    .unwrap_err();
    assert!(err.to_string().contains("was killed"), "{err}");
}
