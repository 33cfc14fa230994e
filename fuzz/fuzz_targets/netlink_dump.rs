//! `fuzz/run` or `cargo fuzz run netlink_dump`: what it checks is `invariants::netlink_dump`.
#![no_main]

mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::netlink_dump(data));
