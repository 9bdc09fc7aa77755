//! `chatvault key list|add|remove|revoke|rotate|passwd|token-keygen`.

use anyhow::{Context, Result, bail};
use chatvault_core::{AddSlotOptions, KdfParams, KeySource, Role, SlotId};
use chatvault_keystore::{CommandOptions, CommandStore};
use serde_json::{Value, json};

use crate::args::{
    Global, KeyAddArgs, KeyCommand, KeyRevokeArgs, NewSecret, RoleArg, SlotKindArg, TokenKeygenArgs,
};
use crate::exit::Outcome;
use crate::output::{self, Output};
use crate::session;

pub fn run(g: &Global, out: Output, cmd: &KeyCommand) -> Result<Outcome> {
    if let KeyCommand::TokenKeygen(a) = cmd {
        token_keygen(g, out, a)?;
        return Ok(Outcome::Complete);
    }
    let mut repo = session::open(g)?;
    match cmd {
        KeyCommand::TokenKeygen(_) => unreachable!("handled above"),
        KeyCommand::List => {
            let slots = repo.list_slots()?;
            out.line(format!(
                "key generation {} seals new data",
                repo.config().key_generation
            ));
            out.line(format!(
                "{:<8}  {:<10}  {:<6}  {:<19}  {:<24}  label",
                "slot", "kind", "role", "created (UTC)", "kdf"
            ));
            for s in &slots {
                let current = if s.id == repo.slot_id() {
                    " (this key)"
                } else {
                    ""
                };
                out.line(format!(
                    "{:<8}  {:<10}  {:<6}  {:<19}  {:<24}  {}{current}",
                    s.id.short(),
                    s.kind.as_str(),
                    s.role.as_str(),
                    output::time(s.created_unix_ms),
                    // A planted pkcs11 slot's token and key labels are in it.
                    output::printable(&s.kdf),
                    output::printable(&s.label)
                ));
            }
            out.json(&Value::Array(
                slots
                    .iter()
                    .map(|s| {
                        json!({
                            "id": s.id.to_hex(),
                            "role": s.role.as_str(),
                            "label": s.label,
                            "created_unix_ms": s.created_unix_ms,
                            "kind": s.kind.as_str(),
                            "kdf": s.kdf,
                            "writer_key": s.signing_key.to_hex(),
                            "current": s.id == repo.slot_id(),
                        })
                    })
                    .collect(),
            ));
        }
        KeyCommand::Add(a) => add(g, &mut repo, out, a)?,
        KeyCommand::Remove { slot } => {
            let id = find_slot(&repo, slot)?;
            repo.remove_slot(id)?;
            out.line(format!(
                "removed key slot {} (its writer key is revoked; what it signed so far stays trusted)",
                id.short()
            ));
            out.json(&json!({ "removed": id.to_hex() }));
        }
        KeyCommand::Revoke(a) => revoke(&mut repo, out, a)?,
        KeyCommand::Rotate => {
            let generation = repo.rotate_keys()?;
            out.line(format!(
                "rotated the keys: generation {generation} seals new data"
            ));
            out.json(&json!({ "generation": generation }));
        }
        KeyCommand::Passwd(secret) => {
            let key = new_secret(secret)?;
            let id = repo.change_passphrase(&key, KdfParams::default())?;
            out.line(format!(
                "passphrase changed: new slot {} replaces {}",
                id.short(),
                repo.slot_id().short()
            ));
            out.json(&json!({ "slot": id.to_hex() }));
        }
    }
    Ok(Outcome::Complete)
}

fn add(
    g: &Global,
    repo: &mut chatvault_core::Repository,
    out: Output,
    a: &KeyAddArgs,
) -> Result<()> {
    let role = match a.role {
        RoleArg::Backup => Role::Backup,
        RoleArg::Full => Role::Full,
        RoleArg::Admin => Role::Admin,
    };
    let key = match a.kind {
        Some(SlotKindArg::Pkcs11) => {
            let store = session::token_store(g, a.token_label.as_deref(), a.key_label.as_deref())?;
            KeySource::External(Box::new(store))
        }
        Some(SlotKindArg::Command) => {
            let (Some(wrap), Some(unwrap)) = (&a.wrap_command, &a.unwrap_command) else {
                bail!("--kind command needs --wrap-command and --unwrap-command");
            };
            let store = CommandStore::new(CommandOptions {
                wrap: Some(wrap.clone()),
                ..CommandOptions::new(unwrap)
            });
            KeySource::External(Box::new(store))
        }
        Some(SlotKindArg::KeyFile) if a.secret.new_key_file.is_none() => {
            bail!("--kind key-file needs --new-key-file PATH")
        }
        Some(SlotKindArg::Passphrase) if a.secret.new_key_file.is_some() => {
            bail!("--kind passphrase takes --new-password-file or a prompt, not --new-key-file")
        }
        _ => new_secret(&a.secret)?,
    };
    let mut opts = AddSlotOptions::new(role, &a.label);
    if let Some(scope) = &a.scope {
        opts.scope = scope.clone();
    }
    if a.dedup_source {
        opts.dedup_source = true;
    }
    let id = repo.add_slot(&key, &opts)?;
    let kind = repo
        .list_slots()?
        .into_iter()
        .find(|s| s.id == id)
        .map_or("", |s| s.kind.as_str());
    out.line(format!(
        "added {} {kind} key slot {}",
        role.as_str(),
        id.short()
    ));
    out.json(&json!({ "slot": id.to_hex(), "role": role.as_str(), "kind": kind }));
    Ok(())
}

fn token_keygen(g: &Global, out: Output, a: &TokenKeygenArgs) -> Result<()> {
    let store = session::token_store(g, None, None)?;
    store.generate_key(&a.token_label, &a.key_label)?;
    out.line(format!(
        "created AES-256 key {:?} on token {:?} (non-extractable)",
        a.key_label, a.token_label
    ));
    out.json(&json!({ "token_label": a.token_label, "key_label": a.key_label }));
    Ok(())
}

fn revoke(repo: &mut chatvault_core::Repository, out: Output, a: &KeyRevokeArgs) -> Result<()> {
    let until = match a.trusted_until.as_str() {
        "all" => u64::MAX,
        "none" => 0,
        n => n
            .parse()
            .with_context(|| format!("--trusted-until {n:?}: a sequence, `all` or `none`"))?,
    };
    let spec = a.key.to_ascii_lowercase();
    let mut keys: Vec<chatvault_core::PublicKey> = repo
        .config()
        .writers
        .iter()
        .filter(|w| w.label == a.key || w.key.to_hex().starts_with(&spec))
        .map(|w| w.key)
        .collect();
    keys.extend(
        repo.list_slots()?
            .into_iter()
            .filter(|s| s.id.to_hex().starts_with(&spec))
            .map(|s| s.signing_key),
    );
    keys.sort_by_key(|k| k.to_hex());
    keys.dedup();
    let key = match keys.as_slice() {
        [k] => *k,
        [] => bail!("no writer key or key slot {spec}"),
        _ => bail!("{spec} is ambiguous"),
    };
    let endorsed = repo.revoke_writer(key, until)?;
    let generation = repo.config().key_generation;
    out.line(format!(
        "revoked writer {}: {endorsed} of its snapshots and index segments stay trusted; \
         keys rotated to generation {generation}",
        &key.to_hex()[..16]
    ));
    out.json(&json!({
        "revoked": key.to_hex(),
        "endorsed_objects": endorsed,
        "generation": generation,
    }));
    Ok(())
}

/// The new secret of `key add` / `key passwd`.
fn new_secret(s: &NewSecret) -> Result<KeySource> {
    if let Some(path) = &s.new_key_file {
        return KeySource::generate_key_file(path)
            .with_context(|| format!("creating key file {}", path.display()));
    }
    if let Some(path) = &s.new_password_file {
        return session::password_file(path);
    }
    session::prompt("New passphrase: ", true)
}

fn find_slot(repo: &chatvault_core::Repository, spec: &str) -> Result<SlotId> {
    let spec = spec.to_ascii_lowercase();
    let matches: Vec<SlotId> = repo
        .list_slots()?
        .into_iter()
        .map(|s| s.id)
        .filter(|id| id.to_hex().starts_with(&spec))
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no key slot {spec}"),
        _ => bail!("key slot prefix {spec} is ambiguous"),
    }
}
