//! `fuzz/run` or `cargo fuzz run modprobe_d`: what it checks is `invariants::modprobe_d`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::modprobe_d(data));
