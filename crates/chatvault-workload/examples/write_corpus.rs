//! Writes `mixed_corpus(seed, MiB << 20)` to a file, so other tools (restic, borg) can be
//! measured on exactly the bytes chatvault's benches use.
//!
//! Usage: `cargo run --release -p chatvault-workload --example write_corpus -- OUT MIB [SEED]`
//! (`--chat` first for chat log text only).

use std::io::Write;

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let chat_only = args.first().is_some_and(|a| a == "--chat");
    if chat_only {
        args.remove(0);
    }
    let (Some(out), Some(mib)) = (
        args.first(),
        args.get(1).and_then(|m| m.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: write_corpus OUT MIB [SEED]");
        std::process::exit(2);
    };
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    if chat_only {
        let opts = chatvault_workload::ChatLogOptions {
            seed,
            ..Default::default()
        };
        let mut log = std::io::Read::take(chatvault_workload::ChatLog::new(opts), mib << 20);
        std::io::copy(&mut log, &mut file)?;
    } else {
        std::io::copy(
            &mut chatvault_workload::mixed_corpus(seed, mib << 20),
            &mut file,
        )?;
    }
    file.flush()
}
