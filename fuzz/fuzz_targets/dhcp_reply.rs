//! `cargo +nightly fuzz run dhcp_reply`: any bytes into the DHCP reply parser. Besides not
//! panicking, every string it lets through must pass its rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stateless::model::hostname;
use stateless::net::dhcp::codec::decode;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = decode(data) else { return };
    let lease = reply.lease;
    for name in lease.hostname.iter().chain(&lease.domain) {
        assert_eq!(hostname::validate(name).as_ref(), Ok(name));
    }
    for word in lease.root_path.iter().chain(&lease.tftp_server).chain(&lease.bootfile) {
        assert!(!word.is_empty() && word.bytes().all(|b| b.is_ascii_graphic()), "{word:?}");
    }
    assert!(lease.root_path.iter().all(|p| !p.split(['/', ':', ',']).any(|c| c == "..")));
    for line in lease.rejected.iter().chain(&reply.message) {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
});
