//! Test support: a temp image with a layer tree, a private mount namespace to run
//! `stateless apply` in, and a fingerprint of a tree to prove the image was not written.
#![allow(dead_code, unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub mod net;

pub const BIN: &str = env!("CARGO_BIN_EXE_stateless");

/// Why a test is `#[ignore]`d outside tests/run: it mounts in a private mount namespace.
pub const ROOT: &str = "needs root: mounts in a private mount namespace (tests/run runs it)";

/// A test that needs something runs only when asked for (`#[ignore = "why"]`; tests/run, which
/// CI runs as root, passes `--include-ignored`): then a missing prerequisite fails it, never
/// passes it unrun.
pub fn require(ok: bool, what: &str) {
    assert!(ok, "missing prerequisite: {what}");
}

/// [`require`]s root.
pub fn require_root() {
    require(rustix::process::geteuid().is_root(), "root (run it through tests/run, as root)");
}

/// A fresh empty dir under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "stateless-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn mknod(path: &Path, mode: u32, dev: u64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let kind =
        if mode & 0o170000 == 0o020000 { rustix::fs::FileType::CharacterDevice } else { rustix::fs::FileType::Fifo };
    rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), kind, rustix::fs::Mode::from_raw_mode(mode & 0o7777), dev)
        .unwrap();
}

/// An image like the one the lab exports: /etc, /var, mount points, an init, and a layer tree
/// with all five kinds of layer for lab3-12 at 10.0.2.15/24. Needs root (devices, owners).
pub fn image(dir: &Path) {
    for d in ["dev", "proc", "sys", "run", "tmp", "usr/bin", "sbin", "var/lib", "var/log", "etc/conf.d"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    write(&dir.join("etc/hosts"), "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n");
    write(&dir.join("etc/hostname"), "debian\n");
    write(&dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&dir.join("var/lib/image-state"), "from the image\n");
    write(&dir.join("sbin/init"), "#!/bin/sh\n");
    std::fs::set_permissions(dir.join("sbin/init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(&dir.join("outside"), "must never be read or written\n");

    let l = dir.join("diskless");
    for (layer, level) in [
        ("base", "base"),
        ("networks/10.0.2.255", "network"),
        ("labs/lab3", "lab"),
        ("hosts/lab3-12", "host"),
        ("hosts/10.0.2.15", "ip"),
    ] {
        write(&l.join(layer).join("etc/stateless-level"), &format!("{level}\n"));
        write(&l.join(layer).join(format!("etc/only-{level}")), level);
    }
    // The lab layer overrides base's motd, the host layer base's fstab.
    write(&l.join("base/etc/motd"), "base motd\n");
    write(&l.join("labs/lab3/etc/motd"), "lab3 motd\n");
    write(&l.join("base/etc/fstab"), "# base\n");
    write(&l.join("hosts/lab3-12/etc/fstab"), "# lab3-12\n");
    // Hostile and special entries.
    symlink("/etc/shadow", l.join("base/etc/abs-link")).unwrap();
    symlink("../../../../outside", l.join("base/etc/rel-link")).unwrap();
    write(&l.join("base/usr/bin/evil"), "outside the writable dirs\n");
    write(&l.join("base/var/lib/from-base"), "base var\n");
    mknod(&l.join("base/etc/null"), 0o020666, rustix::fs::makedev(1, 3));
    mknod(&l.join("base/etc/fifo"), 0o010600, 0);
    let suid = l.join("base/etc/suid");
    write(&suid, "#!/bin/sh\n");
    std::os::unix::fs::chown(&suid, Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // A network layer that is a symlink out of the layer root must be refused.
    symlink("../../..", l.join("networks/10.0.2.0_24")).unwrap();
}

/// A temp dir holding an [`image`] at `<dir>/image`. Needs root.
pub fn test_image(test: &str) -> (TempDir, PathBuf) {
    require_root();
    let tmp = TempDir::new(test);
    let root = tmp.0.join("image");
    image(&root);
    (tmp, root)
}

/// Everything about a tree that a write could change: type, mode, owner, size, mtime, content,
/// link target, per path. Not following symlinks.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mut line = format!(
            "{:o} {}:{} {} {}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.size(),
            meta.mtime_nsec() + meta.mtime() * 1_000_000_000
        );
        if meta.file_type().is_symlink() {
            line += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
        } else if meta.is_file() {
            line += &format!(" {:?}", std::fs::read(&path).unwrap());
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), line);
    }
    out
}

/// Runs `f` on a thread of its own in a new private mount namespace.
pub fn in_private_namespace<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: NEWNS only gives this thread (and the processes it spawns) a mount
            // namespace of its own; no file descriptor table is unshared.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
            let private = rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC;
            rustix::mount::mount_change("/", private).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// Runs `check` on a thread of its own in a new private mount namespace, after running
/// `stateless apply --root ROOT ARGS...` there; returns what `check` returns.
pub fn in_namespace<T: Send>(root: &Path, args: &[&str], check: impl FnOnce(&Output) -> T + Send) -> T {
    in_namespace_with(root, args, |_| {}, check)
}

/// [`in_namespace`], with `setup` run in the namespace before `stateless apply`.
pub fn in_namespace_with<T: Send>(
    root: &Path,
    args: &[&str],
    setup: impl FnOnce(&Path) + Send,
    check: impl FnOnce(&Output) -> T + Send,
) -> T {
    in_private_namespace(|| {
        setup(root);
        let output = Command::new(BIN).arg("apply").arg("--root").arg(root).args(args).output().unwrap();
        check(&output)
    })
}

/// The mount entry (fstype) for `path` in this thread's namespace, if it is a mount point.
pub fn fstype_of(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    info.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        (fields[4] == path).then(|| fields[sep + 1].to_string())
    })
}

/// The per-mount options (`rw,nosuid,...`) of the mount on `path` in this thread's namespace.
pub fn mount_options_of(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    info.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        (fields[4] == path).then(|| fields[5].to_string())
    })
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
