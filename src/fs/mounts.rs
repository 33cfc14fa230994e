//! Mount tables and option strings: the early kernel filesystems, the per-dir tmpfs and overlay.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

pub use crate::model::mount::{EarlyMount, EARLY_MOUNTS, OVERLAYFS_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC};
use rustix::fs::FsWord;
use rustix::mount::MountFlags;

/// The writable dirs themselves (the overlay, or the copy-mode tmpfs) get no `nosuid`/`nodev`:
/// they stand in for the image dirs and behave as those do, in both modes alike (a setuid helper
/// or a device node a layer puts in /var works either way).
pub const WRITABLE_DIR_FLAGS: MountFlags = MountFlags::empty();

/// The private tmpfs holding an overlay's upper and work dirs: nothing is run or opened from
/// there directly.
pub const UPPER_TMPFS_FLAGS: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);

/// True when `path` is the root of a mount of the filesystem type `magic`: same type, and a
/// different device from its parent (a plain dir on a tmpfs root is not a mount).
pub fn is_mounted(path: &Path, magic: FsWord) -> bool {
    if path.parent().is_none() {
        return true;
    }
    let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC;
    rustix::fs::open(path, flags, rustix::fs::Mode::empty()).is_ok_and(|fd| is_mount_root(fd.as_fd(), magic))
}

/// [`is_mounted`] for the dir `dir` itself (an fd already opened, never its path again): the
/// root of a mount of type `magic`, on another device than its `..`.
pub fn is_mount_root(dir: BorrowedFd<'_>, magic: FsWord) -> bool {
    let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    let up = rustix::fs::openat(dir, "..", flags, rustix::fs::Mode::empty());
    match (rustix::fs::fstatfs(dir), rustix::fs::fstat(dir), up.and_then(|up| rustix::fs::fstat(&up))) {
        (Ok(fs), Ok(here), Ok(up)) => fs.f_type == magic && here.st_dev != up.st_dev,
        _ => false,
    }
}

/// Every mount point of this mount namespace, from `/proc/self/mountinfo` (its octal escapes
/// undone).
pub fn mount_points() -> std::io::Result<Vec<std::path::PathBuf>> {
    let table = std::fs::read("/proc/self/mountinfo")?;
    Ok(table.split(|&b| b == b'\n').filter_map(|line| line.split(|&b| b == b' ').nth(4)).map(unescape_octal).collect())
}

/// A mountinfo field with `\NNN` octal escapes (space, tab, newline, backslash) undone.
fn unescape_octal(field: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&first, tail)) = rest.split_first() {
        let octal = tail.get(..3).filter(|d| first == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                rest = tail.get(3..).unwrap_or_default();
            }
            None => {
                out.push(first);
                rest = tail;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

/// Which mount the dir `dir` is on: its mount id (statx, Linux 5.8 on) and device.
pub fn mount_key(dir: BorrowedFd<'_>) -> Option<crate::model::outcome::MountKey> {
    use rustix::fs::{AtFlags, StatxFlags};
    let st = rustix::fs::statx(dir, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    if st.stx_mask & StatxFlags::MNT_ID.bits() == 0 {
        return None;
    }
    let dev = rustix::fs::fstat(dir).ok()?.st_dev;
    Some(crate::model::outcome::MountKey { id: st.stx_mnt_id, dev })
}

/// tmpfs options for a per-dir tmpfs: mode and owner of the dir it stands for, and the size limit.
pub fn tmpfs_options(mode: u32, uid: u32, gid: u32, size: Option<&str>) -> String {
    let mut options = format!("mode={:o},uid={uid},gid={gid}", mode & 0o7777);
    if let Some(size) = size {
        options.push_str(",size=");
        options.push_str(size);
    }
    options
}

/// Rejects paths that cannot be written into a mount option string unambiguously.
pub fn option_safe(path: &Path) -> Result<&str, String> {
    let text = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    match text.chars().find(|c| matches!(c, ',' | ':' | '\\' | '=') || c.is_control()) {
        Some(c) => Err(format!("{text}: {c:?} cannot be used in overlay options")),
        None => Ok(text),
    }
}

/// libmount's table of what mount(8) adds to the kernel's mount table (userspace options),
/// relative to the root: systemd reads it with /proc/self/mountinfo.
pub const UTAB: &str = "run/mount/utab";

/// A line of [`UTAB`] giving the mount of `source` on `target` (absolute, as the booted system
/// sees it) the option `x-initrd.mount`: systemd then leaves it alone at shutdown, as it leaves
/// what an initramfs mounted (`fstab_is_extrinsic`), and systemd-shutdown unmounts it last,
/// after every process is gone. Without it, systemd unmounts /var while journald still has
/// its journal open there ("Failed unmounting var.mount"). Spaces, tabs, newlines and
/// backslashes are written as libmount writes them (`\040`).
pub fn utab_extrinsic(source: &str, target: &str) -> String {
    let mangle = |s: &str| {
        s.chars().fold(String::new(), |mut out, c| {
            match c {
                ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", u32::from(c))),
                c => out.push(c),
            }
            out
        })
    };
    format!("SRC={} TARGET={} ROOT=/ OPTS=x-initrd.mount\n", mangle(source), mangle(target))
}

/// Appends [`utab_extrinsic`] of `source` on `/dir` to `root`'s [`UTAB`] (made, 0644, when
/// missing; never through a symlink).
pub fn mark_extrinsic(root: &crate::fs::root::ImageRoot, source: &str, dir: &str) -> std::io::Result<()> {
    use std::io::Write;
    let line = utab_extrinsic(source, &format!("/{dir}"));
    let (parent, name) = UTAB.rsplit_once('/').unwrap_or(("run", UTAB));
    let run = root.create_dir_all(parent, 0o755)?;
    let flags = rustix::fs::OFlags::WRONLY
        | rustix::fs::OFlags::APPEND
        | rustix::fs::OFlags::CREATE
        | rustix::fs::OFlags::NOFOLLOW
        | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&run.fd, name, flags, rustix::fs::Mode::from_raw_mode(0o644))?;
    std::fs::File::from(fd).write_all(line.as_bytes())
}

/// overlayfs options with the image dir as the single lower layer.
pub fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> Result<String, String> {
    Ok(format!("lowerdir={},upperdir={},workdir={}", option_safe(lower)?, option_safe(upper)?, option_safe(work)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utab_lines_are_libmounts() {
        assert_eq!(utab_extrinsic("overlay", "/var"), "SRC=overlay TARGET=/var ROOT=/ OPTS=x-initrd.mount\n");
        assert_eq!(utab_extrinsic("tmpfs", "/a b\\c"), "SRC=tmpfs TARGET=/a\\040b\\134c ROOT=/ OPTS=x-initrd.mount\n");
    }

    #[test]
    fn dev_is_first_and_targets_are_relative() {
        assert_eq!(EARLY_MOUNTS[0].target, "dev");
        assert!(EARLY_MOUNTS.iter().all(|m| !m.target.starts_with('/')));
    }

    #[test]
    fn tmpfs_options_carry_owner_mode_and_size() {
        assert_eq!(tmpfs_options(0o40755, 0, 0, None), "mode=755,uid=0,gid=0");
        assert_eq!(tmpfs_options(0o1777, 5, 6, Some("25%")), "mode=1777,uid=5,gid=6,size=25%");
    }

    #[test]
    fn overlay_options_refuse_separators() {
        let ok = overlay_options(Path::new("/etc"), Path::new("/run/u"), Path::new("/run/w")).unwrap();
        assert_eq!(ok, "lowerdir=/etc,upperdir=/run/u,workdir=/run/w");
        assert!(overlay_options(Path::new("/a,b"), Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(Path::new("/a:b"), Path::new("/u"), Path::new("/w")).is_err());
    }

    #[test]
    fn a_plain_directory_is_not_a_mount() {
        let dir = std::env::temp_dir();
        assert!(!is_mounted(&dir.join("definitely-missing-stateless"), TMPFS_MAGIC));
        assert!(mount_points().unwrap().contains(&std::path::PathBuf::from("/proc")));
        assert_eq!(unescape_octal(b"/a\\040b\\134c\\011\\12"), std::path::PathBuf::from("/a b\\c\t\\12"));
        assert!(is_mounted(Path::new("/proc"), PROC_SUPER_MAGIC));
        assert!(!is_mounted(Path::new("/proc/self"), PROC_SUPER_MAGIC));
    }
}
