//! `fuzz/run` or `cargo fuzz run manifest`: what it checks is `invariants::manifest`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::manifest(data));
