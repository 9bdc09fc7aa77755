//! Fuzz target: `chatvault_core::fuzzing::hold` must never panic on any input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = chatvault_core::fuzzing::hold(data);
});
