//! Disk signatures as `stateless.swap=` and `stateless.scratch=` read them, against what the
//! real tools write (util-linux, e2fsprogs, dosfstools, xfsprogs, btrfs-progs, cryptsetup-bin,
//! genisoimage, squashfs-tools, fdisk) and what libblkid makes of it; the scratch disk's cleanup
//! on real trees.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use stateless::fs::disks::{remove_trees, signatures, Removal, Sample, Signature};
use stateless::sys::btrfs_subvolume_writable;

/// A sparse disk image of `mib` MiB in `tmp` made by each of `steps` in turn: shell commands,
/// `$1` the image.
fn image(tmp: &common::TempDir, name: &str, mib: u64, steps: &[&str]) -> PathBuf {
    let file = tmp.0.join(name);
    std::fs::File::create(&file).unwrap().set_len(mib << 20).unwrap();
    for step in steps {
        let out = Command::new("sh").args(["-c", step, "sh"]).arg(&file).output();
        common::require(out.as_ref().is_ok_and(|o| o.status.success()), &format!("`{step}`: {out:?}"));
    }
    file
}

/// Its signatures, read as the boot reads a device.
fn read(file: &Path) -> Vec<Signature> {
    signatures(&Sample::read(&std::fs::File::open(file).unwrap()).unwrap())
}

fn kinds(file: &Path) -> Vec<String> {
    read(file).into_iter().map(|s| s.kind).collect()
}

/// What libblkid's low-level probe (`blkid -p`, as udev runs it) says the image is: its type,
/// `ambivalent`, or `` for nothing.
fn blkid(file: &Path) -> String {
    let out = Command::new("blkid").args(["-p", "-o", "value", "-s", "TYPE"]).arg(file).output().unwrap();
    match out.status.code() {
        Some(0) => String::from_utf8(out.stdout).unwrap().trim().replace("ext2", "ext4").replace("ext3", "ext4"),
        Some(2) => String::new(),
        Some(8) => "ambivalent".into(),
        other => panic!("blkid: {other:?} {out:?}"),
    }
}

fn sig(kind: &str, label: Option<&str>) -> Signature {
    Signature { kind: kind.into(), label: label.map(str::to_owned) }
}

#[test]
fn mkswap_and_mkfs_labels_are_read() {
    let tmp = common::TempDir::new("disks");
    let made = |steps: &[&str]| read(&image(&tmp, "disk.img", 8, steps));
    assert_eq!(made(&["mkswap -q -L lab-swap $1"]), [sig("swap", Some("lab-swap"))]);
    assert_eq!(made(&["mkswap -q $1"]), [sig("swap", None)]);
    assert_eq!(made(&["mkfs.ext4 -q -L scratch $1"]), [sig("ext4", Some("scratch"))]);
    assert_eq!(made(&["mkfs.ext4 -q -t ext2 -L old-disk $1"]), [sig("ext4", Some("old-disk"))]);
    assert_eq!(made(&["mkfs.ext4 -q $1"]), [sig("ext4", None)]);
    assert_eq!(made(&[]), [], "zeros: nothing");
}

/// LUKS2 with a cheap key derivation, over whatever is there.
const LUKS: &str =
    "printf pw | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - $1";
/// A small ISO 9660 image written at the start of the image.
const ISO: &str = "mkdir -p $1.d && echo hi > $1.d/f && genisoimage -quiet -o $1.iso $1.d && dd if=$1.iso of=$1 conv=notrunc status=none";

#[test]
#[ignore = "needs the tools qemu/lab build installs: dosfstools, xfsprogs, btrfs-progs, cryptsetup-bin, genisoimage, squashfs-tools, fdisk (tests/run)"]
fn one_signature_where_the_tools_wiped_the_last_one() {
    let tmp = common::TempDir::new("disks-one");
    // Each tool wipes what libblkid finds before it writes (mkswap: "wiping old ext4
    // signature"): what it made is all that is seen, by blkid and by the boot.
    let cases: [(&str, u64, &[&str]); 12] = [
        ("swap", 64, &["mkfs.ext4 -q $1", "mkswap -q $1"]),
        ("swap", 64, &["mkfs.vfat $1", "mkswap -q $1"]),
        ("swap", 64, &[LUKS, "mkswap -q $1"]),
        ("swap", 64, &[ISO, "mkswap -q $1"]),
        ("ext4", 64, &["mkswap -q $1", "mkfs.ext4 -q -F $1"]),
        ("vfat", 64, &["mkswap -q $1", "mkfs.vfat $1"]),
        ("crypto_LUKS", 64, &["mkswap -q $1", LUKS]),
        ("xfs", 320, &["mkswap -q $1", "mkfs.xfs -q -f $1"]),
        ("btrfs", 128, &["mkswap -q $1", "mkfs.btrfs -q -f $1 > /dev/null"]),
        ("iso9660", 8, &[ISO]),
        (
            "squashfs",
            8,
            &["mkdir -p $1.d && mksquashfs $1.d $1.sq -quiet -noappend && dd if=$1.sq of=$1 conv=notrunc status=none"],
        ),
        (
            "crypto_LUKS",
            64,
            &["printf pw | cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file - $1"],
        ),
    ];
    for (n, (kind, mib, steps)) in cases.into_iter().enumerate() {
        let file = image(&tmp, &format!("{n}.img"), mib, steps);
        assert_eq!((kinds(&file), blkid(&file)), (vec![kind.to_owned()], kind.to_owned()), "{steps:?}");
    }
}

#[test]
#[ignore = "needs the tools qemu/lab build installs: dosfstools, xfsprogs, btrfs-progs, cryptsetup-bin, genisoimage, squashfs-tools, fdisk (tests/run)"]
fn a_swap_area_with_another_signature_is_seen_with_both() {
    let tmp = common::TempDir::new("disks-two");
    // An ISO image with a partition table (as a hybrid ISO written to a disk has), then mkswap
    // on the whole disk: mkswap sees the partition table, so wipes nothing ("don't erase
    // bootbits sectors"), and the ISO's descriptor at 32 KiB stays.
    let hybrid = image(
        &tmp,
        "hybrid.img",
        64,
        &[ISO, "echo start=2048 | sfdisk -q --wipe never $1", "mkswap -L lab-swap $1 2>/dev/null"],
    );
    assert_eq!(read(&hybrid), [sig("swap", Some("lab-swap")), sig("iso9660", None)]);
    assert_eq!(blkid(&hybrid), "ambivalent");
    // The other way round: a swap area, then an ISO written past its first 32 KiB (its system
    // area, all zeros, left out).
    let under = image(&tmp, "under.img", 64, &["mkswap -q $1", "genisoimage -quiet -o $1.iso /etc/hostname && dd if=$1.iso of=$1 bs=2048 skip=16 seek=16 conv=notrunc status=none"]);
    assert_eq!(kinds(&under), ["swap", "iso9660"]);
    assert_eq!(blkid(&under), "ambivalent");
}

/// The scratch disk's `stateless/` dir as the boot finds it: `old-*` trees of earlier boots and
/// a name of another kind that stays. Returns the dir's fd.
fn scratch_dir(tmp: &common::TempDir) -> rustix::fd::OwnedFd {
    let own = tmp.0.join("stateless");
    std::fs::create_dir_all(own.join("boot")).unwrap();
    std::fs::write(own.join("boot/current"), "this boot's").unwrap();
    rustix::fs::open(&own, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// A chain of `levels` dirs below `dir` (names of 20 bytes: the whole path is far longer than
/// PATH_MAX) with a file in each.
fn chain(dir: BorrowedFd<'_>, levels: usize) {
    let mut fd = rustix::fs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    for n in 0..levels {
        let name = format!("level-{n:014}");
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
        let file =
            rustix::fs::openat(&fd, "file", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644)).unwrap();
        drop(file);
        fd = rustix::fs::openat(&fd, name.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn later() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

#[test]
fn scratch_cleanup_removes_a_tree_1000_levels_deep() {
    let tmp = common::TempDir::new("disks-deep");
    let own = scratch_dir(&tmp);
    std::fs::create_dir(tmp.0.join("stateless/old-0000000000000001")).unwrap();
    let old = rustix::fs::open(tmp.0.join("stateless/old-0000000000000001"), OFlags::DIRECTORY, Mode::empty()).unwrap();
    chain(old.as_fd(), 1000);
    std::fs::write(tmp.0.join("stateless/old-file"), "a file left by hand").unwrap();
    let done = remove_trees(own.as_fd(), "old-", later(), btrfs_subvolume_writable);
    assert_eq!(done, Removal { removed: 2002, timed_out: false, kept: false });
    assert_eq!(names(&tmp.0.join("stateless")), ["boot"], "only this boot's dir stays");
    assert_eq!(names(&tmp.0.join("stateless/boot")), ["current"]);
}

#[test]
fn scratch_cleanup_stops_at_its_deadline_and_resumes() {
    let tmp = common::TempDir::new("disks-deadline");
    let own = scratch_dir(&tmp);
    for tree in ["old-a", "old-b"] {
        let dir = tmp.0.join("stateless").join(tree);
        for d in 0..20 {
            std::fs::create_dir_all(dir.join(format!("d{d}"))).unwrap();
            for f in 0..500 {
                std::fs::write(dir.join(format!("d{d}/f{f}")), "").unwrap();
            }
        }
        chain(rustix::fs::open(&dir, OFlags::DIRECTORY, Mode::empty()).unwrap().as_fd(), 100);
    }
    let none = remove_trees(own.as_fd(), "old-", Instant::now(), btrfs_subvolume_writable);
    assert_eq!(none, Removal { removed: 0, timed_out: true, kept: false }, "the deadline gone: nothing");
    // 5 ms a boot: each stops where its time ends, the next goes on from there.
    let mut boots = Vec::new();
    loop {
        let done =
            remove_trees(own.as_fd(), "old-", Instant::now() + Duration::from_millis(5), btrfs_subvolume_writable);
        boots.push(done);
        assert!(!done.kept && boots.len() < 100_000, "{done:?}");
        if !done.timed_out {
            break;
        }
    }
    assert!(boots.len() > 1, "not done in 5 ms: {boots:?}");
    assert_eq!(boots.iter().map(|b| b.removed).sum::<u64>(), 20_442);
    assert_eq!(names(&tmp.0.join("stateless")), ["boot"]);
}

#[test]
fn scratch_cleanup_removes_symlinks_not_their_targets() {
    let tmp = common::TempDir::new("disks-links");
    let own = scratch_dir(&tmp);
    let outside = tmp.0.join("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("dir/file"), "kept").unwrap();
    let before = common::fingerprint(&outside);
    let old = tmp.0.join("stateless/old-a");
    let mut deep = old.clone();
    for n in 0..40 {
        deep = deep.join(format!("d{n}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    symlink(&outside, old.join("to-outside")).unwrap();
    symlink(outside.join("dir"), deep.join("to-dir")).unwrap();
    symlink(outside.join("dir/file"), deep.join("to-file")).unwrap();
    symlink("../../../../../../../../../../../../../../../../../../../../outside", deep.join("relative")).unwrap();
    symlink(&outside, tmp.0.join("stateless/old-link")).unwrap();
    let done = remove_trees(own.as_fd(), "old-", later(), btrfs_subvolume_writable);
    assert_eq!(done, Removal { removed: 46, timed_out: false, kept: false });
    assert_eq!(names(&tmp.0.join("stateless")), ["boot"]);
    assert_eq!(common::fingerprint(&outside), before, "what the links led to is untouched");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn scratch_cleanup_leaves_mounts_below_alone() {
    common::require_root();
    let tmp = common::TempDir::new("disks-mounts");
    drop(scratch_dir(&tmp));
    let outside = tmp.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("file"), "on the same filesystem").unwrap();
    let old = tmp.0.join("stateless/old-a");
    for d in ["a/tmpfs", "a/x/y", "b/bind", "c"] {
        std::fs::create_dir_all(old.join(d)).unwrap();
    }
    std::fs::write(old.join("c/file"), "").unwrap();
    common::in_private_namespace(|| {
        rustix::mount::mount("tmpfs", old.join("a/tmpfs"), "tmpfs", MountFlags::empty(), None).unwrap();
        std::fs::write(old.join("a/tmpfs/file"), "on another filesystem").unwrap();
        // Another mount of the same filesystem: the same device, a mount all the same.
        rustix::mount::mount_bind(&outside, old.join("b/bind")).unwrap();
        let (tmpfs, bind) = (common::fingerprint(&old.join("a/tmpfs")), common::fingerprint(&outside));
        // Opened here: an fd from before the namespace would not see its mounts.
        let own = rustix::fs::open(tmp.0.join("stateless"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let done = remove_trees(own.as_fd(), "old-", later(), btrfs_subvolume_writable);
        assert_eq!(done, Removal { removed: 4, timed_out: false, kept: true });
        assert_eq!(names(&old), ["a", "b"], "the dirs above a mount point stay");
        assert_eq!((names(&old.join("a")), names(&old.join("b"))), (vec!["tmpfs".to_owned()], vec!["bind".to_owned()]));
        assert_eq!(common::fingerprint(&old.join("a/tmpfs")), tmpfs, "another filesystem, never entered");
        assert_eq!(common::fingerprint(&outside), bind, "a bind mount, never entered");
        // At a later boot nothing is mounted there: the rest goes.
        rustix::mount::unmount(old.join("a/tmpfs"), rustix::mount::UnmountFlags::empty()).unwrap();
        rustix::mount::unmount(old.join("b/bind"), rustix::mount::UnmountFlags::empty()).unwrap();
        let rest = remove_trees(own.as_fd(), "old-", later(), btrfs_subvolume_writable);
        assert_eq!(rest, Removal { removed: 5, timed_out: false, kept: false });
        assert_eq!(names(&tmp.0.join("stateless")), ["boot"]);
        assert_eq!(common::fingerprint(&outside), bind);
    });
}

/// `btrfs ARGS...`.
fn btrfs(args: &[&OsStr]) {
    let out = Command::new("btrfs").args(args).output();
    common::require(out.as_ref().is_ok_and(|o| o.status.success()), &format!("btrfs {args:?}: {out:?}"));
}

/// `btrfs subvolume create PATH`, as any user may where they may make a dir.
fn subvolume(path: &Path) -> rustix::fd::OwnedFd {
    btrfs(&["subvolume".as_ref(), "create".as_ref(), path.as_ref()]);
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// Earlier boots' trees on Btrfs below `own`, with subvolumes holding trees 40 levels deep: one
/// a few levels down, one 20 levels down in it (made read-only, as any user may), a read-only
/// snapshot of the first, and one 20 levels down in a plain tree.
fn subvolume_trees(own: &Path) {
    let deep = |dir: &Path, levels: usize| (0..levels).fold(dir.to_path_buf(), |p, n| p.join(format!("level-{n:014}")));
    std::fs::create_dir_all(own.join("old-x/a/b/c")).unwrap();
    let outer = own.join("old-x/a/b/c/subvol");
    chain(subvolume(&outer).as_fd(), 40);
    let nested = deep(&outer, 20).join("nested");
    chain(subvolume(&nested).as_fd(), 40);
    btrfs(&["property".as_ref(), "set".as_ref(), nested.as_ref(), "ro".as_ref(), "true".as_ref()]);
    let snapshot = own.join("old-x/a/snapshot");
    btrfs(&["subvolume".as_ref(), "snapshot".as_ref(), "-r".as_ref(), outer.as_ref(), snapshot.as_ref()]);
    let plain = own.join("old-y");
    std::fs::create_dir(&plain).unwrap();
    chain(rustix::fs::open(&plain, OFlags::DIRECTORY, Mode::empty()).unwrap().as_fd(), 20);
    chain(subvolume(&deep(&plain, 20).join("subvol")).as_fd(), 40);
}

#[test]
#[ignore = "needs root: mounts a Btrfs image on a loop device in a private mount namespace (tests/run runs it)"]
fn scratch_cleanup_removes_btrfs_subvolumes_at_any_depth() {
    common::require_root();
    let tmp = common::TempDir::new("disks-btrfs");
    let file = image(&tmp, "btrfs.img", 128, &["mkfs.btrfs -q -f $1 > /dev/null"]);
    let mnt = tmp.0.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    common::in_private_namespace(|| {
        let out = Command::new("mount").args(["-o", "loop"]).arg(&file).arg(&mnt).output();
        common::require(out.as_ref().is_ok_and(|o| o.status.success()), &format!("mount -o loop: {out:?}"));
        let own_path = mnt.join("stateless");
        std::fs::create_dir_all(own_path.join("boot")).unwrap();
        std::fs::write(own_path.join("boot/current"), "this boot's").unwrap();
        let own = rustix::fs::open(&own_path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let subvolumes = || {
            let out = Command::new("btrfs").args(["subvolume", "list"]).arg(&mnt).output().unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap().lines().count()
        };

        subvolume_trees(&own_path);
        assert_eq!(subvolumes(), 4);
        let done = remove_trees(own.as_fd(), "old-", later(), btrfs_subvolume_writable);
        // Four chains of 40 (the snapshot's its own) and one of 20, 4 subvolumes, 5 plain dirs
        // and the empty dir the snapshot shows for the subvolume that was in the first.
        let removed = 40 * 2 * 4 + 20 * 2 + 4 + 5 + 1;
        assert_eq!(done, Removal { removed, timed_out: false, kept: false });
        assert_eq!(names(&own_path), ["boot"], "every subvolume and its tree gone");
        assert_eq!(subvolumes(), 0);

        // A few entries a call: each goes on where the last stopped.
        subvolume_trees(&own_path);
        let mut boots = Vec::new();
        loop {
            let done = remove_trees(
                own.as_fd(),
                "old-",
                Instant::now() + Duration::from_micros(200),
                btrfs_subvolume_writable,
            );
            boots.push(done);
            assert!(!done.kept && boots.len() < 100_000, "{done:?}");
            if !done.timed_out {
                break;
            }
        }
        assert!(boots.len() > 1, "not done in 200 µs: {boots:?}");
        assert_eq!(names(&own_path), ["boot"]);
        assert_eq!(subvolumes(), 0);
        assert_eq!(names(&own_path.join("boot")), ["current"]);
    });
}
