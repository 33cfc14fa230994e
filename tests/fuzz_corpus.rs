//! The committed fuzz corpus (`fuzz/corpus/<target>/`) replayed through the fuzz targets'
//! invariants (`fuzz/fuzz_targets/invariants.rs`) as a plain test, on stable and without
//! libFuzzer: every input the fuzzers kept still passes. `fuzz/run` fuzzes for real.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "../fuzz/fuzz_targets/invariants.rs"]
mod invariants;

use std::path::Path;

/// Every file of `target`'s corpus through `check`; a failure names the file.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails (replay it: cargo fuzz run {target} {})", file.display(), file.display());
        }
    }
}

#[test]
fn cmdline() {
    replay("cmdline", invariants::cmdline);
}

#[test]
fn stateless_conf() {
    replay("stateless_conf", invariants::stateless_conf);
}

#[test]
fn dhcp_reply() {
    replay("dhcp_reply", invariants::dhcp_reply);
}

#[test]
fn kmod_index() {
    replay("kmod_index", invariants::kmod_index);
}

#[test]
fn modprobe_d() {
    replay("modprobe_d", invariants::modprobe_d);
}

#[test]
fn netlink_dump() {
    replay("netlink_dump", invariants::netlink_dump);
}

#[test]
fn layer_path() {
    replay("layer_path", invariants::layer_path);
}

#[test]
fn nbd_handshake() {
    replay("nbd_handshake", invariants::nbd_handshake);
}

#[test]
fn signature() {
    replay("signature", invariants::signature);
}

#[test]
fn manifest() {
    replay("manifest", invariants::manifest);
}
