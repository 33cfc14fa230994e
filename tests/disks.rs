//! Disk signatures as `stateless.swap=` and `stateless.scratch=` read them, against what the
//! real tools write: mkswap and mkfs.ext4 (util-linux and e2fsprogs, on every Debian).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::process::Command;

use stateless::fs::disks::{signature, Signature};

/// A file of `mib` MiB made by `tool args... FILE`, read back as the boot reads a device.
fn made_by(tool: &str, args: &[&str], mib: u64) -> Option<Signature> {
    let tmp = common::TempDir::new("disks");
    let file = tmp.0.join("disk.img");
    std::fs::File::create(&file).unwrap().set_len(mib << 20).unwrap();
    let out = Command::new(tool).args(args).arg(&file).output();
    common::require(
        out.as_ref().is_ok_and(|o| o.status.success()),
        &format!("{tool} (util-linux, e2fsprogs): {out:?}"),
    );
    signature(&std::fs::read(&file).unwrap()[..70_000])
}

#[test]
fn mkswap_and_mkfs_labels_are_read() {
    let swap = |kind: &str, label: Option<&str>| Some(Signature { kind: kind.into(), label: label.map(str::to_owned) });
    assert_eq!(made_by("mkswap", &["-L", "lab-swap"], 8), swap("swap", Some("lab-swap")));
    assert_eq!(made_by("mkswap", &[], 8), swap("swap", None));
    assert_eq!(made_by("mkfs.ext4", &["-q", "-L", "scratch"], 8), swap("ext4", Some("scratch")));
    assert_eq!(made_by("mkfs.ext4", &["-q", "-t", "ext2", "-L", "old-disk"], 8), swap("ext4", Some("old-disk")));
    assert_eq!(made_by("mkfs.ext4", &["-q"], 8), swap("ext4", None));
    assert_eq!(made_by("true", &[], 1), None, "zeros: nothing");
}
