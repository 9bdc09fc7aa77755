//! Turning the global options into a key source and an opened repository.
//!
//! Invariant: a passphrase or PIN is held zeroized (in `KeySource`, or the token store's
//! PIN) and never logged, printed or put in an error message; a failing password or PIN
//! command is reported by its exit status only.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use chatvault_backend::{Location, Mode, StoreOptions};
use chatvault_core::{
    Backend, InitOptions, KeySource, OpenOptions, ReadLock, Repository, Snapshot, SnapshotFilter,
    SnapshotId,
};
use chatvault_keystore::{CommandOptions, CommandStore, PinSource, Pkcs11Options, Pkcs11Store};

use zeroize::Zeroizing;

use crate::args::{FromArgs, Global};

/// The repository location, from `--repo` or `CHATVAULT_REPO` (parsed here, not by clap,
/// so that a refused location is never echoed: it may hold a credential).
pub fn location(g: &Global) -> Result<Location> {
    let text = g
        .repo
        .as_deref()
        .ok_or_else(|| anyhow!("no repository given: use --repo or CHATVAULT_REPO"))?;
    Ok(Location::parse(text)?)
}

/// The store of the repository the global options name: a local directory (created when
/// `mode` is `Create`) or a remote store with the `--option` settings.
pub fn connect(g: &Global, mode: Mode) -> Result<Box<dyn Backend>> {
    let location = location(g)?;
    let options = StoreOptions::parse(&g.options)?;
    Ok(chatvault_backend::connect(&location, &options, mode)?)
}

/// The secret that opens the repository, from the first source given: `--key-file`,
/// `--password-file`, `--password-command`, `--key-command` (a `command` slot),
/// `--pkcs11-module` (a `pkcs11` slot; the PIN is asked only when a token slot is
/// tried; see [`open`] for a repository without one), `CHATVAULT_PASSWORD`, or a prompt
/// on a terminal (asked twice when `confirm`).
pub fn key_source(g: &Global, confirm: bool) -> Result<KeySource> {
    if token_by_default(g) {
        return Ok(KeySource::External(Box::new(token_store(g, None, None)?)));
    }
    passphrase_source(g, confirm)
}

/// Whether the token opens the repository only because `--pkcs11-module` is set: no
/// option names another secret.
fn token_by_default(g: &Global) -> bool {
    g.pkcs11_module.is_some()
        && g.key_file.is_none()
        && g.password_file.is_none()
        && g.password_command.is_none()
        && g.key_command.is_none()
}

/// [`key_source`] without the token: what opens the repository when the module is set
/// only for a new token slot (`init --token-label` aside, `key add --kind pkcs11` on a
/// repository without a token slot).
pub fn passphrase_source(g: &Global, confirm: bool) -> Result<KeySource> {
    if let Some(f) = &g.key_file {
        return KeySource::read_key_file(f)
            .with_context(|| format!("reading key file {}", f.display()));
    }
    if let Some(f) = &g.password_file {
        return password_file(f);
    }
    if let Some(cmd) = &g.password_command {
        return password_command(cmd);
    }
    if let Some(cmd) = &g.key_command {
        let store = CommandStore::new(CommandOptions::new(cmd));
        return Ok(KeySource::External(Box::new(store)));
    }
    if let Ok(p) = std::env::var("CHATVAULT_PASSWORD") {
        return Ok(KeySource::passphrase(&p));
    }
    prompt("Repository passphrase: ", confirm)
}

/// The secret that opens the source repository of `copy` and `init --chunker-from`, from
/// the first source given: `--from-key-file`, `--from-password-file`,
/// `--from-password-command`, `CHATVAULT_FROM_PASSWORD`, or a prompt on a terminal.
pub fn source_key(f: &FromArgs) -> Result<KeySource> {
    if let Some(path) = &f.from_key_file {
        return KeySource::read_key_file(path)
            .with_context(|| format!("reading key file {}", path.display()));
    }
    if let Some(path) = &f.from_password_file {
        return password_file(path);
    }
    if let Some(cmd) = &f.from_password_command {
        return password_command(cmd);
    }
    if let Ok(p) = std::env::var("CHATVAULT_FROM_PASSWORD") {
        return Ok(KeySource::passphrase(&p));
    }
    prompt("Source repository passphrase: ", false).map_err(|_| {
        anyhow!(
            "no passphrase given for the source: use --from-password-file, \
             --from-password-command, --from-key-file or CHATVAULT_FROM_PASSWORD"
        )
    })
}

/// Opens the source repository at `location` (parsed as `--repo` is, never echoed) with
/// the `--from-*` options, sharing the global cache directory and lock settings.
pub fn open_source(g: &Global, location: &str, f: &FromArgs) -> Result<Repository> {
    let location = Location::parse(location)?;
    let options = StoreOptions::parse(&f.from_options)?;
    let backend = chatvault_backend::connect(&location, &options, Mode::Open)?;
    let key = source_key(f)?;
    Ok(Repository::open(backend, &key, open_options(g))?)
}

/// Reads a passphrase file's first line.
pub fn password_file(f: &Path) -> Result<KeySource> {
    Ok(KeySource::passphrase(&secret_file(f, "password")?))
}

/// A secret file's first line (a passphrase, a PIN), without its line ending.
fn secret_file(f: &Path, what: &str) -> Result<Zeroizing<String>> {
    let text = zeroizing(
        std::fs::read_to_string(f)
            .with_context(|| format!("reading {what} file {}", f.display()))?,
    );
    first_line(&text).ok_or_else(|| anyhow!("{what} file {} is empty", f.display()))
}

fn password_command(cmd: &str) -> Result<KeySource> {
    let line = command_line(cmd, "password")?;
    Ok(KeySource::passphrase(&line))
}

/// Runs a secret command (password or PIN) and returns its first output line.
fn command_line(cmd: &str, what: &str) -> Result<Zeroizing<String>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running the {what} command"))?;
    if !out.status.success() {
        bail!("the {what} command failed ({})", out.status);
    }
    let text = zeroizing(
        String::from_utf8(out.stdout)
            .map_err(|_| anyhow!("the {what} command printed something that is not UTF-8"))?,
    );
    first_line(&text).ok_or_else(|| anyhow!("the {what} command printed nothing"))
}

/// A PKCS#11 key store on `--pkcs11-module`, wrapping new slots with `token` and `key`
/// (labels). The PIN comes from `--pin-file`, `--pin-command`, `CHATVAULT_PIN` or a prompt
/// on a terminal, read only when a token first needs it.
pub fn token_store(g: &Global, token: Option<&str>, key: Option<&str>) -> Result<Pkcs11Store> {
    let module = g.pkcs11_module.clone().ok_or_else(|| {
        anyhow!("no PKCS#11 module: use --pkcs11-module or CHATVAULT_PKCS11_MODULE")
    })?;
    let opts = Pkcs11Options {
        module,
        token_label: token.map(str::to_owned),
        key_label: key.map(str::to_owned),
    };
    let (file, command) = (g.pin_file.clone(), g.pin_command.clone());
    let pin: PinSource = Box::new(move || {
        token_pin(file.as_deref(), command.as_deref()).map_err(|e| format!("{e:#}"))
    });
    Ok(Pkcs11Store::new(opts, pin))
}

fn token_pin(file: Option<&Path>, command: Option<&str>) -> Result<Zeroizing<String>> {
    if let Some(f) = file {
        return secret_file(f, "PIN");
    }
    if let Some(cmd) = command {
        return command_line(cmd, "PIN");
    }
    if let Ok(p) = std::env::var("CHATVAULT_PIN") {
        return Ok(zeroizing(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no PIN given: use --pin-file, --pin-command or CHATVAULT_PIN (there is no \
             terminal to ask on)"
        );
    }
    Ok(zeroizing(rpassword::prompt_password("Token PIN: ")?))
}

/// Asks on the terminal; refuses when there is none (a cron job must say where the
/// passphrase comes from rather than hang).
pub fn prompt(question: &str, confirm: bool) -> Result<KeySource> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase given: use --password-file, --password-command, --key-file or \
             CHATVAULT_PASSWORD (there is no terminal to ask on)"
        );
    }
    let first = zeroizing(rpassword::prompt_password(question)?);
    if confirm {
        let again = zeroizing(rpassword::prompt_password("Again: ")?);
        if *first != *again {
            bail!("the passphrases differ");
        }
    }
    if first.is_empty() {
        bail!("empty passphrase");
    }
    Ok(KeySource::passphrase(&first))
}

fn first_line(text: &str) -> Option<Zeroizing<String>> {
    let line = text.lines().next()?.trim_end_matches('\r');
    (!line.is_empty()).then(|| zeroizing(line.to_owned()))
}

/// A string wiped when dropped.
fn zeroizing(s: String) -> Zeroizing<String> {
    Zeroizing::new(s)
}

/// Options to create a repository with, from the global options.
pub fn init_options(g: &Global) -> InitOptions {
    InitOptions {
        cache_dir: g.cache_dir.clone(),
        ..InitOptions::default()
    }
}

/// Opens the repository the global options name.
pub fn open(g: &Global) -> Result<Repository> {
    open_with(g, open_options(g))
}

/// The options the global options give for opening a repository.
pub fn open_options(g: &Global) -> OpenOptions {
    let mut locks = chatvault_core::LockOptions::default();
    if let Some(s) = g.lock_wait {
        locks.wait = std::time::Duration::from_secs(s);
    }
    OpenOptions {
        cache_dir: g.cache_dir.clone(),
        locks,
        uploads: g.uploads,
        ..OpenOptions::default()
    }
}

/// A read lock on `repo` unless `--no-lock`; keep it bound while reading.
pub fn read_lock(g: &Global, repo: &Repository) -> Result<Option<ReadLock>> {
    if g.no_lock {
        return Ok(None);
    }
    Ok(Some(repo.read_lock().context(
        "taking a read lock (on storage this process may not write to, use --no-lock)",
    )?))
}

/// Opens the repository the global options name, with `opts`. When the token would open
/// it only because `--pkcs11-module` is set and the repository has no token slot, the
/// passphrase (`CHATVAULT_PASSWORD` or a prompt) opens it instead: that is how the first
/// token slot is added (`key add --kind pkcs11` needs the module too); no PIN is asked
/// then.
fn open_with(g: &Global, opts: OpenOptions) -> Result<Repository> {
    let backend = connect(g, Mode::Open)?;
    let key = key_source(g, false)?;
    match Repository::open(backend, &key, opts.clone()) {
        Err(chatvault_core::Error::NoSlotOfKind { .. }) if token_by_default(g) => Ok(
            Repository::open(connect(g, Mode::Open)?, &passphrase_source(g, false)?, opts)?,
        ),
        other => Ok(other?),
    }
}

/// Opens the repository for a command that reads data, with a read lock held until the
/// returned lock is dropped (keep it bound for the whole command), unless `--no-lock`.
pub fn open_reading(g: &Global) -> Result<(Repository, Option<ReadLock>)> {
    open_reading_with(g, open_options(g))
}

/// [`open_reading`] with other options.
pub fn open_reading_with(g: &Global, opts: OpenOptions) -> Result<(Repository, Option<ReadLock>)> {
    let repo = open_with(g, opts)?;
    let lock = read_lock(g, &repo)?;
    Ok((repo, lock))
}

/// Finds a snapshot by full id, unique hex prefix (at least 4 digits) or `latest`.
pub fn resolve(repo: &Repository, spec: &str) -> Result<Snapshot> {
    if spec == "latest" {
        return latest(repo, &SnapshotFilter::default());
    }
    Ok(repo.load_snapshot(resolve_id(repo, spec)?)?)
}

/// The latest snapshot the filter lets through, by core's one ranking
/// ([`chatvault_core::Recency`]: time, then a repaired snapshot over its original).
/// Snapshots that do not load are passed over with a warning (`check` names them).
pub fn latest(repo: &Repository, filter: &SnapshotFilter) -> Result<Snapshot> {
    // A backup key selects only among its own snapshots, which it cannot read back.
    if !repo.role().can_read() {
        return Err(chatvault_core::Error::PermissionDenied {
            role: repo.role().as_str(),
            operation: "read snapshots",
        }
        .into());
    }
    let found = repo.latest_snapshots(filter)?;
    if !found.unreadable.is_empty() {
        tracing::warn!(
            "{} snapshots do not load and were passed over choosing the latest (run `chatvault check`)",
            found.unreadable.len()
        );
    }
    found
        .into_newest()
        .ok_or_else(|| anyhow!("the repository has no snapshots"))
}

/// Finds a snapshot id by full id or unique hex prefix (at least 4 digits) without
/// loading the record, so that a record which no longer loads can still be named.
pub fn resolve_id(repo: &Repository, spec: &str) -> Result<SnapshotId> {
    if spec.len() < 4 || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{spec:?} is not a snapshot id: give at least 4 hex digits or `latest`");
    }
    let spec = spec.to_ascii_lowercase();
    let matches: Vec<SnapshotId> = repo
        .snapshot_ids()?
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&spec))
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => Err(anyhow::Error::from(chatvault_core::Error::NotFound {
            object: format!("snapshot {spec}").into(),
        })),
        _ => bail!(
            "snapshot prefix {spec} is ambiguous ({} matches)",
            matches.len()
        ),
    }
}

/// The parent a backup builds on, from `--parent` / `--no-parent`.
pub fn parent_choice(
    repo: &Repository,
    a: &crate::args::ParentArgs,
) -> Result<chatvault_fs::ParentChoice> {
    use chatvault_fs::ParentChoice;
    Ok(match (&a.parent, a.no_parent) {
        (_, true) => ParentChoice::None,
        (Some(spec), false) => ParentChoice::Snapshot(resolve(repo, spec)?.id),
        (None, false) => ParentChoice::Latest,
    })
}

/// Resolves a path argument the way the shell user meant it.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
