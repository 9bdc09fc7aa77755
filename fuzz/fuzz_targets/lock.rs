//! Fuzz target: `chatvault_core::fuzzing::lock` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = chatvault_core::fuzzing::lock(data);
});
