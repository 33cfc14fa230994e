//! `fuzz/run` or `cargo fuzz run layer_path`: what it checks is `invariants::layer_path`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::layer_path(data));
