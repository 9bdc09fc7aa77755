//! Fuzz target: a plan file (`chatvault run PLAN.toml`) is parsed and every step checked
//! before anything runs. Never panics, whatever the text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chatvault_cli::fuzzing::plan(text);
    }
});
