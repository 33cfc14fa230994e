//! Disk signatures as `stateless.swap=` and `stateless.scratch=` read them, against what the
//! real tools write: mkswap and mkfs.ext4 (util-linux and e2fsprogs, on every Debian); the
//! scratch disk's cleanup on real trees.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::mount::MountFlags;
use stateless::fs::disks::{remove_trees, signature, Removal, Signature};

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
    let done = remove_trees(own.as_fd(), "old-", later());
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
    let none = remove_trees(own.as_fd(), "old-", Instant::now());
    assert_eq!(none, Removal { removed: 0, timed_out: true, kept: false }, "the deadline gone: nothing");
    // 5 ms a boot: each stops where its time ends, the next goes on from there.
    let mut boots = Vec::new();
    loop {
        let done = remove_trees(own.as_fd(), "old-", Instant::now() + Duration::from_millis(5));
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
    let done = remove_trees(own.as_fd(), "old-", later());
    assert_eq!(done, Removal { removed: 46, timed_out: false, kept: false });
    assert_eq!(names(&tmp.0.join("stateless")), ["boot"]);
    assert_eq!(common::fingerprint(&outside), before, "what the links led to is untouched");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn scratch_cleanup_leaves_mounts_below_alone() {
    common::require_root();
    let tmp = common::TempDir::new("disks-mounts");
    let own = scratch_dir(&tmp);
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
        let done = remove_trees(own.as_fd(), "old-", later());
        assert_eq!(done, Removal { removed: 4, timed_out: false, kept: true });
        assert_eq!(names(&old), ["a", "b"], "the dirs above a mount point stay");
        assert_eq!((names(&old.join("a")), names(&old.join("b"))), (vec!["tmpfs".to_owned()], vec!["bind".to_owned()]));
        assert_eq!(common::fingerprint(&old.join("a/tmpfs")), tmpfs, "another filesystem, never entered");
        assert_eq!(common::fingerprint(&outside), bind, "a bind mount, never entered");
        // At a later boot nothing is mounted there: the rest goes.
        rustix::mount::unmount(old.join("a/tmpfs"), rustix::mount::UnmountFlags::empty()).unwrap();
        rustix::mount::unmount(old.join("b/bind"), rustix::mount::UnmountFlags::empty()).unwrap();
        let rest = remove_trees(own.as_fd(), "old-", later());
        assert_eq!(rest, Removal { removed: 5, timed_out: false, kept: false });
        assert_eq!(names(&tmp.0.join("stateless")), ["boot"]);
        assert_eq!(common::fingerprint(&outside), bind);
    });
}
