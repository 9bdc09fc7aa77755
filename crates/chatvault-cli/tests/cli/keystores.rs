//! Key slots kept outside the repository, end to end: a `pkcs11` slot on a SoftHSM2 token
//! (Debian's `softhsm2`, a real PKCS#11 module; `scripts/install-softhsm.sh` installs it),
//! with a token directory of its own per test (`SOFTHSM2_CONF`, given to the `chatvault`
//! processes only), and a `command` slot whose "KMS" is openssl behind two scripts. The
//! commands are those of docs/OPERATIONS.md, "Keys on a hardware token or in a KMS".

use std::path::{Path, PathBuf};

use chatvault_keystore::test_token::{module, softhsm, softhsm2_util};

use super::{Env, PASSWORD};

/// A SoftHSM2 token directory in the test's directory, with token `label` (user PIN 1234)
/// initialised; returns the configuration file for `SOFTHSM2_CONF`.
fn init_token(env: &Env, label: &str) -> PathBuf {
    softhsm(&env.path(""), label)
}

/// `chatvault` with the token's configuration and module, the PIN from `pin_file`, and
/// no passphrase (so the repository is opened with the token slot).
fn token_cmd(env: &Env, conf: &Path, pin_file: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut c = env.cmd(args);
    c.env_remove("CHATVAULT_PASSWORD")
        .env("SOFTHSM2_CONF", conf)
        .env("CHATVAULT_PKCS11_MODULE", module())
        .env("CHATVAULT_PIN_FILE", pin_file);
    c
}

fn run(mut c: assert_cmd::Command) -> (Option<i32>, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_pkcs11_slot_opens_the_repository_with_the_token_and_pin_only() {
    let env = Env::new();
    let conf = init_token(&env, "chatvault");
    let pin = env.path("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let password = env.path("admin.pass");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();

    // The key on the token, then the slot (opened by the admin passphrase).
    let (code, out, err) = run(token_cmd(
        &env,
        &conf,
        &pin,
        &[
            "key",
            "token-keygen",
            "--token-label",
            "chatvault",
            "--key-label",
            "chatvault-kek",
        ],
    ));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("non-extractable"), "{out}");
    // Opened with --password-file, or with the passphrase the token falls back to while
    // the repository has no token slot (the module is set for the new slot).
    let add = |key_label: &str, explicit: bool| {
        let password = password.to_str().unwrap();
        let opener: &[&str] = if explicit {
            &["--password-file", password]
        } else {
            &[]
        };
        let mut c = token_cmd(
            &env,
            &conf,
            &pin,
            &[
                opener,
                &[
                    "key",
                    "add",
                    "--kind",
                    "pkcs11",
                    "--role",
                    "full",
                    "--label",
                    "hsm",
                    "--scope",
                    "*",
                    "--token-label",
                    "chatvault",
                    "--key-label",
                    key_label,
                ],
            ]
            .concat(),
        );
        if !explicit {
            c.env("CHATVAULT_PASSWORD", PASSWORD);
        }
        run(c)
    };
    // A key label the token does not have: named, and no slot is written.
    let (code, _, err) = add("no-such-key", true);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("token \"chatvault\"")
            && err.contains("no secret key labelled \"no-such-key\""),
        "{err}"
    );
    let (code, out, err) = add("chatvault-kek", false);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("added full pkcs11 key slot"), "{out}");

    // Backup and restore, opened with the token alone.
    let src = env.path("src");
    std::fs::create_dir_all(src.join("media")).unwrap();
    std::fs::write(src.join("media/a.jpg"), b"attachment").unwrap();
    std::fs::write(src.join("chat.toml"), b"[server]\n").unwrap();
    let src_arg = src.to_str().unwrap();
    let (code, _, err) = run(token_cmd(&env, &conf, &pin, &["backup", src_arg]));
    assert_eq!(code, Some(0), "{err}");
    let target = env.path("restored");
    let (code, _, err) = run(token_cmd(
        &env,
        &conf,
        &pin,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    ));
    assert_eq!(code, Some(0), "{err}");
    let back = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(back.join("media/a.jpg")).unwrap(),
        b"attachment"
    );
    let (code, out, err) = run(token_cmd(&env, &conf, &pin, &["key", "list", "--json"]));
    assert_eq!(code, Some(0), "{err}");
    let slots: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kinds: Vec<(&str, &str, bool)> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap(),
                s["role"].as_str().unwrap(),
                s["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("passphrase", "admin", false), ("pkcs11", "full", true)]
    );

    // The PIN from CHATVAULT_PIN works too; a wrong PIN has its own exit code and the
    // message names the token, not the PIN.
    let mut c = token_cmd(&env, &conf, &pin, &["snapshots"]);
    c.env_remove("CHATVAULT_PIN_FILE")
        .env("CHATVAULT_PIN", "1234");
    assert_eq!(run(c).0, Some(0));
    let wrong = env.path("wrong-pin");
    std::fs::write(&wrong, "987654\n").unwrap();
    let (code, _, err) = run(token_cmd(&env, &conf, &wrong, &["snapshots"]));
    assert_eq!(code, Some(18), "{err}");
    assert!(err.contains("wrong PIN for token \"chatvault\""), "{err}");
    assert!(!err.contains("987654"), "{err}");
    // No PIN at all and no terminal: said so, not a hang.
    let mut c = token_cmd(&env, &conf, &pin, &["snapshots"]);
    c.env_remove("CHATVAULT_PIN_FILE");
    let (code, _, err) = run(c);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no PIN given"), "{err}");

    // The token's key gone (the token reset, a new one with the same label): the slot
    // cannot be opened, and the error says which key is missing. The passphrase slot
    // still opens.
    softhsm2_util(&conf, &["--delete-token", "--token", "chatvault"]);
    init_token(&env, "chatvault");
    let (code, _, err) = run(token_cmd(&env, &conf, &pin, &["snapshots"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no secret key labelled \"chatvault-kek\"")
            && err.contains("cannot be opened without it"),
        "{err}"
    );
    env.ok(&["snapshots"]);
}

/// `init` can put the first admin slot on the token; the repository then opens with the
/// token alone.
#[test]
fn init_can_keep_the_admin_slot_on_a_token() {
    let env = Env::new();
    let conf = init_token(&env, "ops-token");
    let pin = env.path("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let keygen = [
        "key",
        "token-keygen",
        "--token-label",
        "ops-token",
        "--key-label",
        "admin-kek",
    ];
    assert_eq!(run(token_cmd(&env, &conf, &pin, &keygen)).0, Some(0));
    let mut c = token_cmd(
        &env,
        &conf,
        &pin,
        &[
            "init",
            "--token-label",
            "ops-token",
            "--key-label",
            "admin-kek",
        ],
    );
    c.env("CHATVAULT_REPO", env.path("token-repo"));
    let (code, _, err) = run(c);
    assert_eq!(code, Some(0), "{err}");
    let mut c = token_cmd(&env, &conf, &pin, &["key", "list", "--json"]);
    c.env("CHATVAULT_REPO", env.path("token-repo"));
    let (code, out, err) = run(c);
    assert_eq!(code, Some(0), "{err}");
    let slots: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(slots[0]["kind"], "pkcs11");
    assert_eq!(slots[0]["role"], "admin");
}

fn script(env: &Env, name: &str, body: &str) -> String {
    let path = env.path(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    format!("sh {}", path.display())
}

#[test]
fn a_command_slot_opens_through_the_kms_command_and_its_failure_is_reported() {
    let env = Env::new();
    // The "KMS": openssl with a key only it reads.
    let kms = env.path("kms.key");
    std::fs::write(&kms, "kms master secret\n").unwrap();
    let k = kms.display();
    let wrap = script(
        &env,
        "wrap",
        &format!("openssl enc -aes-256-cbc -pbkdf2 -a -A -pass file:{k}"),
    );
    let unwrap = script(
        &env,
        "unwrap",
        &format!("openssl enc -d -aes-256-cbc -pbkdf2 -a -A -pass file:{k}"),
    );
    let out = env.ok(&[
        "key",
        "add",
        "--kind",
        "command",
        "--role",
        "full",
        "--label",
        "kms",
        "--scope",
        "*",
        "--wrap-command",
        &wrap,
        "--unwrap-command",
        &unwrap,
    ]);
    assert!(String::from_utf8_lossy(&out).contains("added full command key slot"));

    let by_kms = |command: &str, args: &[&str]| {
        let mut c = env.cmd(args);
        c.env_remove("CHATVAULT_PASSWORD")
            .env("CHATVAULT_KEY_COMMAND", command);
        run(c)
    };
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("log.jsonl"), b"{\"seq\":1}\n").unwrap();
    let (code, _, err) = by_kms(&unwrap, &["backup", src.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = by_kms(&unwrap, &["key", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("command") && l.contains("(this key)")),
        "{out}"
    );

    // The KMS refuses: exit code 1, its standard error in the message.
    let denied = script(
        &env,
        "denied",
        "cat >/dev/null; echo 'Code: 403. Errors: permission denied' >&2; exit 2",
    );
    let (code, _, err) = by_kms(&denied, &["snapshots"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the unwrap command") && err.contains("permission denied"),
        "{err}"
    );
    // A wrap command whose output the unwrap command does not take: refused at creation.
    let (code, _, err) = {
        let mut c = env.cmd(&[
            "key",
            "add",
            "--kind",
            "command",
            "--role",
            "backup",
            "--label",
            "node-9",
            "--wrap-command",
            "cat >/dev/null; echo opaque",
            "--unwrap-command",
            &unwrap,
        ]);
        c.env("CHATVAULT_PASSWORD", PASSWORD);
        run(c)
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the unwrap command"), "{err}");
}

/// A pkcs11 slot planted by someone with storage write access: its token and key labels
/// reach `key list` escaped, it is never opened by a passphrase, and it locks nobody out.
#[test]
fn a_planted_pkcs11_slot_is_listed_escaped_and_locks_nobody_out() {
    let env = Env::new();
    let keys = env.path("repo/keys");
    let genuine = std::fs::read_dir(&keys).unwrap().next().unwrap().unwrap();
    let bytes = std::fs::read(genuine.path()).unwrap();
    // The genuine admin slot's header turned into kind 3 with hostile labels.
    let label_end = 130 + u16::from_le_bytes([bytes[128], bytes[129]]) as usize;
    let mut planted = bytes[..label_end].to_vec();
    planted[11] = 3;
    planted[12..24].fill(0);
    let evil = "tok\u{1b}]0;pwned\u{7}";
    planted.extend_from_slice(&[1, evil.len() as u8]);
    planted.extend_from_slice(evil.as_bytes());
    planted.extend_from_slice(&[3, b'k', b'\n', b'x']);
    planted.extend_from_slice(&[0; 12]);
    planted.extend_from_slice(&48u16.to_le_bytes());
    planted.extend_from_slice(&[0x55; 48]);
    planted.extend_from_slice(&bytes[label_end..]);
    std::fs::write(keys.join("00".repeat(32)), &planted).unwrap();

    let out = String::from_utf8(env.ok(&["key", "list"])).unwrap();
    assert!(out.contains("pkcs11"), "{out}");
    assert!(out.contains(r"tok\u{1b}]0;pwned\u{7}"), "{out}");
    assert!(out.contains(r"key=k\nx"), "{out}");
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    // The passphrase still opens the repository (the planted slot is not a candidate).
    env.ok(&["snapshots"]);
}
