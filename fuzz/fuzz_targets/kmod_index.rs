//! `fuzz/run` or `cargo fuzz run kmod_index`: what it checks is `invariants::kmod_index`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::kmod_index(data));
