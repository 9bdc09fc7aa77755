//! `chatvault init`.

use anyhow::{Context, Result};
use chatvault_core::{KeySource, LocalBackend, Repository};
use serde_json::json;

use crate::args::{Global, InitArgs};
use crate::exit::Outcome;
use crate::output::Output;
use crate::session;

pub fn run(g: &Global, out: Output, a: &InitArgs) -> Result<Outcome> {
    let location = session::location(g)?;
    let key = match &a.new_key_file {
        Some(path) => KeySource::generate_key_file(path)
            .with_context(|| format!("creating key file {}", path.display()))?,
        None => session::key_source(g, true)?,
    };
    let mut opts = session::init_options(g);
    opts.compression_level = a.compression_level;
    opts.label = a.label.clone();
    let backend = LocalBackend::create(location)?;
    let repo = Repository::init(Box::new(backend), &key, opts)?;
    out.line(format!(
        "created repository {} at {}",
        repo.id(),
        location.display()
    ));
    out.line(format!(
        "admin key slot {} ({}): keep its passphrase or key file safe; without it the data \
         cannot be read",
        repo.slot_id().short(),
        a.label
    ));
    out.json(&json!({
        "repository": repo.id().to_hex(),
        "location": location.display().to_string(),
        "slot": repo.slot_id().to_hex(),
        "role": repo.role().as_str(),
    }));
    Ok(Outcome::Complete)
}
