//! `fuzz/run` or `cargo fuzz run nbd_handshake`: what it checks is `invariants::nbd_handshake`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::nbd_handshake(data));
