//! Emptying the initramfs before the switch, for real, as root, in a private mount namespace:
//! a tmpfs plays the initramfs; the new root and a canary mount below it must survive, and
//! nothing is followed out through a symlink.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::fd::AsFd;
use std::path::Path;

use common::*;
use rustix::mount::{mount, MountFlags};

fn tmpfs(at: &Path) {
    std::fs::create_dir_all(at).unwrap();
    mount("tmpfs", at, "tmpfs", MountFlags::empty(), None).unwrap();
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn emptying_the_initramfs_never_crosses_into_another_mount() {
    let tmp = TempDir::new("switch-root");
    let (initramfs, outside) = (tmp.0.join("initramfs"), tmp.0.join("outside"));
    write(&outside.join("keep"), "outside\n");
    in_private_namespace(|| {
        tmpfs(&initramfs);
        write(&initramfs.join("init"), "binary\n");
        write(&initramfs.join("lib/modules/6.1.0/kernel/e1000.ko"), "module\n");
        std::os::unix::fs::symlink(&outside, initramfs.join("link-out")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep"), initramfs.join("file-link-out")).unwrap();
        // The new root, and a canary mount deep in the initramfs.
        tmpfs(&initramfs.join("root"));
        write(&initramfs.join("root/sbin/init"), "the image's init\n");
        tmpfs(&initramfs.join("deep/dir/canary"));
        write(&initramfs.join("deep/dir/canary/alive"), "canary\n");
        write(&initramfs.join("deep/dir/beside"), "goes\n");

        let dir = std::fs::File::open(&initramfs).unwrap();
        assert!(stateless::fs::initramfs::is_initramfs(&initramfs));
        let cleared = stateless::fs::initramfs::clear(dir.as_fd()).unwrap();
        assert!(cleared.failed.is_empty(), "{:?}", cleared.failed);
        assert_eq!(cleared.other_mounts, 2, "{cleared:?}");
        assert_eq!(read(&initramfs.join("root/sbin/init")), "the image's init\n");
        assert_eq!(read(&initramfs.join("deep/dir/canary/alive")), "canary\n");
        let mut left: Vec<String> = std::fs::read_dir(&initramfs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["deep", "root"], "only the dirs holding mount points stay");
        assert_eq!(std::fs::read_dir(initramfs.join("deep/dir")).unwrap().count(), 1);
        // init, the module tree (lib, modules, 6.1.0, kernel, e1000.ko), two symlinks, beside.
        assert_eq!(cleared.removed, 9, "{cleared:?}");
    });
    assert_eq!(read(&outside.join("keep")), "outside\n", "a symlink out is removed, not followed");
}
