//! `fuzz/run` or `cargo fuzz run cmdline`: what it checks is `invariants::cmdline`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::cmdline(data));
