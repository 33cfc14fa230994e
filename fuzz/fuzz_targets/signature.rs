//! `fuzz/run` or `cargo fuzz run signature`: what it checks is `invariants::signature`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::signature(data));
