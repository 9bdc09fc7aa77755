//! `chatvault init`.

use anyhow::{Context, Result};
use chatvault_backend::Mode;
use chatvault_core::{KeySource, Repository};
use serde_json::json;

use crate::args::{Global, InitArgs};
use crate::exit::Outcome;
use crate::output::Output;
use crate::session;

pub fn run(g: &Global, out: Output, a: &InitArgs) -> Result<Outcome> {
    let location = session::location(g)?;
    let key = match (&a.new_key_file, &a.token_label) {
        (Some(path), _) => KeySource::generate_key_file(path)
            .with_context(|| format!("creating key file {}", path.display()))?,
        (None, Some(token)) => KeySource::External(Box::new(session::token_store(
            g,
            Some(token),
            a.key_label.as_deref(),
        )?)),
        // The module alone does not put the admin slot on a token: that takes the labels.
        (None, None) => session::passphrase_source(g, true)?,
    };
    let mut opts = session::init_options(g);
    opts.compression_level = a.compression_level;
    opts.label = a.label.clone();
    if let Some(src) = &a.chunker_from {
        let src = session::open_source(g, src, &a.from).context("the --chunker-from repository")?;
        opts.chunker_from = Some(src.share_chunker()?);
    } else if a.from.from_key_file.is_some()
        || a.from.from_password_file.is_some()
        || a.from.from_password_command.is_some()
        || !a.from.from_options.is_empty()
    {
        anyhow::bail!("the --from-* options go with --chunker-from");
    }
    let backend = session::connect(g, Mode::Create)?;
    let guard = backend.create_guard();
    let opts_shared = opts.chunker_from.clone();
    let repo = Repository::init(backend, &key, opts)?;
    out.line(format!("created repository {} at {location}", repo.id()));
    if !location.is_local() {
        out.line(format!(
            "the store {} conditional creates (docs/FORMAT.md, \"What a store must give\")",
            match guard {
                chatvault_core::CreateGuard::Enforced => "enforces",
                chatvault_core::CreateGuard::NotEnforced => "does not enforce",
                chatvault_core::CreateGuard::Unknown => "may or may not enforce",
            }
        ));
    }
    if let Some(shared) = &opts_shared {
        out.line(format!(
            "chunking shared with repository {}: the same content cuts into the same chunks in \
             both, so copies between them deduplicate; this shares chunk boundaries (whoever \
             sees both repositories' stored sizes can tell which data they have in common), \
             not contents or ids",
            shared.repo()
        ));
    }
    out.line(format!(
        "admin key slot {} ({}): keep its passphrase or key file safe; without it the data \
         cannot be read",
        repo.slot_id().short(),
        a.label
    ));
    out.json(&json!({
        "repository": repo.id().to_hex(),
        "location": location.to_string(),
        "create_guard": guard.as_str(),
        "slot": repo.slot_id().to_hex(),
        "role": repo.role().as_str(),
        "chunker_from": opts_shared.as_ref().map(|s| s.repo().to_hex()),
    }));
    Ok(Outcome::Complete)
}
