//! `chatvault completions` and `chatvault man`: generated from the clap definition, so
//! they never drift from the real options.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::args::Cli;
use crate::exit::Outcome;

pub fn completions(shell: clap_complete::Shell) -> Result<Outcome> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "chatvault", &mut std::io::stdout());
    Ok(Outcome::Complete)
}

pub fn man(out: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, out).with_context(|| format!("writing to {}", out.display()))?;
    Ok(Outcome::Complete)
}
