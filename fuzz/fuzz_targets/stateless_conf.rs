//! `fuzz/run` or `cargo fuzz run stateless_conf`: what it checks is `invariants::stateless_conf`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::stateless_conf(data));
