//! `fuzz/run` or `cargo fuzz run dhcp_reply`: what it checks is `invariants::dhcp_reply`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::dhcp_reply(data));
