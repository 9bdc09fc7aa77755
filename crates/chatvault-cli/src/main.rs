//! The `chatvault` command-line tool.
//!
//! Not implemented yet: the subcommands (init, backup, restore, key, …) arrive with the
//! filesystem frontend and CLI issue. Until then the binary only reports its version, and
//! exits with the usage code (2) for anything else rather than pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => {
            #[allow(clippy::print_stdout)]
            {
                println!("chatvault {}", env!("CARGO_PKG_VERSION"));
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "chatvault {}: no subcommands yet; the engine is the chatvault-core library \
                 (see README.md)",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
