//! Image-file roots for real: a squashfs file attached to a loop device through the seam
//! (`LOOP_CONFIGURE`, read-only, let go at its last close) and mounted by its magic, in a
//! private mount namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use stateless::model::image::ImageFormat;
use stateless::sys::{Real, Sys};

#[test]
#[ignore = "needs root: a loop device and a mount in a private mount namespace (tests/run runs it)"]
fn a_squashfs_file_is_attached_read_only_mounted_by_its_magic_and_let_go() {
    common::require_root();
    let tmp = common::TempDir::new("image-root");
    let tree = tmp.0.join("tree");
    std::fs::create_dir_all(tree.join("sbin")).unwrap();
    std::fs::write(tree.join("sbin/init"), "the image's init\n").unwrap();
    let image = tmp.0.join("root.img");
    let made = Command::new("mksquashfs").arg(&tree).arg(&image).args(["-noappend", "-quiet"]).status();
    common::require(made.is_ok_and(|s| s.success()), "mksquashfs (squashfs-tools)");
    let file = std::fs::File::open(&image).unwrap();
    let mut head = vec![0; ImageFormat::HEAD];
    let read = Real.read_start(file.as_fd(), &image, &mut head).unwrap();
    let format = ImageFormat::of(&head[..read]).unwrap();
    assert_eq!(format, ImageFormat::Squashfs);
    let mnt = tmp.0.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    common::in_private_namespace(|| {
        let (device, handle) = Real.attach_loop(Path::new("/dev"), file.as_fd(), Path::new("root.img")).unwrap();
        let name = device.file_name().unwrap().to_str().unwrap().to_string();
        let sys = Path::new("/sys/block").join(&name);
        assert_eq!(std::fs::read_to_string(sys.join("ro")).unwrap().trim(), "1", "a read-only device");
        assert_eq!(std::fs::read_to_string(sys.join("loop/dio")).unwrap().trim(), "0", "through the page cache");
        assert_eq!(std::fs::read_to_string(sys.join("loop/autoclear")).unwrap().trim(), "1");
        let flags = rustix::mount::MountFlags::RDONLY;
        Real.mount(device.to_str().unwrap(), &mnt, format.fstype(), flags, "").unwrap();
        drop(handle);
        assert_eq!(std::fs::read_to_string(mnt.join("sbin/init")).unwrap(), "the image's init\n");
        Real.umount(&mnt).unwrap();
        // Let go once nothing holds it (the kernel may do it a moment later).
        let backing = sys.join("loop/backing_file");
        for _ in 0..50 {
            if !backing.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(!backing.exists(), "{name} still attached after the unmount");
    });
}
