//! Writes the fuzz seed corpus: one well-formed sample of every object kind into
//! `<dir>/<target>/seed-1` (default dir: `fuzz/corpus`).
#![allow(clippy::print_stdout)]

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    for (target, bytes) in chatvault_core::fuzzing::seeds() {
        let d = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("seed-1"), &bytes)?;
        println!("{target}: {} bytes", bytes.len());
    }
    Ok(())
}
