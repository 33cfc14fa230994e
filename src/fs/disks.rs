//! Local disks, found by reading their signatures (no blkid, no udev): swap areas for
//! `stateless.swap=`, and the filesystem labelled for `stateless.scratch=`. Only read here; the
//! boot writes nothing to a disk but the one filesystem that carries the scratch label.
//!
//! | signature | where | label |
//! |---|---|---|
//! | Linux swap (v1) | `SWAPSPACE2` at 4086 (the end of a 4 KiB page) | 16 bytes at 1052 |
//! | ext2/3/4 | magic `0xEF53` (little endian) at 1080 | 16 bytes at 1144 |
//! | XFS | `XFSB` at 0 | 12 bytes at 108 |
//! | Btrfs | `_BHRfS_M` at 65600 | 256 bytes at 65835 |
//!
//! Labels are NUL-padded; a label that is not printable ASCII is taken as none.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use serde::{Deserialize, Serialize};

use crate::fs::root::ImageRoot;

/// How much of a device is read: up to the end of a Btrfs label.
const HEAD: usize = 65835 + 256;

/// What a device holds, by its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// `swap`, `ext4` (ext2, ext3 and ext4 alike: the kernel's ext4 driver mounts them all), `xfs`, `btrfs`.
    pub kind: String,
    pub label: Option<String>,
}

/// A block device and its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The kernel's name: `vdb`, `sda2`, `nvme0n1p3`.
    pub name: String,
    /// Its node below the running root's /dev.
    pub node: PathBuf,
    pub signature: Option<Signature>,
}

impl Disk {
    /// Whether it is a swap area (`swap`) or else a filesystem, with the label `label` (any with
    /// `None`).
    pub fn holds(&self, swap: bool, label: Option<&str>) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|s| (s.kind == "swap") == swap && label.is_none_or(|label| s.label.as_deref() == Some(label)))
    }
}

/// The label field at `at`, `len` bytes, NUL-padded: `None` when empty or not printable.
fn label(head: &[u8], at: usize, len: usize) -> Option<String> {
    let field = head.get(at..at.checked_add(len)?)?;
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = field.get(..end)?;
    (!text.is_empty() && text.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
        .then(|| String::from_utf8_lossy(text).into_owned())
}

/// The signature in the first bytes of a device (shorter when the device is).
pub fn signature(head: &[u8]) -> Option<Signature> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let found = |kind: &str, label| Some(Signature { kind: kind.into(), label });
    if at(4086, b"SWAPSPACE2") {
        return found("swap", label(head, 1052, 16));
    }
    if at(1080, &[0x53, 0xEF]) {
        return found("ext4", label(head, 1144, 16));
    }
    if at(0, b"XFSB") {
        return found("xfs", label(head, 108, 12));
    }
    if at(65600, b"_BHRfS_M") {
        return found("btrfs", label(head, 65835, 256));
    }
    None
}

/// Kernel names of devices not looked at: loop and RAM disks (no disk), CD and floppy drives (a
/// read may wait for a medium or a motor). Removable ones (USB sticks, card readers) are left
/// out by [`scan`] too: a stick carrying the label must not become a client's scratch disk.
fn skipped(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())))
}

/// Every block device of the running root's /sys/class/block with its signature, sorted by
/// name; a device that cannot be read has none.
pub fn scan(running: &ImageRoot) -> Vec<Disk> {
    let Ok(listing) = std::fs::read_dir(running.host_path("sys/class/block")) else { return Vec::new() };
    let mut names: Vec<String> =
        listing.filter_map(Result::ok).filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect();
    names.sort();
    names
        .into_iter()
        .filter(|name| !skipped(name) && !removable(running, name))
        .map(|name| {
            // sysfs writes the '/' of a name as '!' (cciss!c0d0 is /dev/cciss/c0d0).
            let node = Path::new("dev").join(name.replace('!', "/"));
            let signature = read_head(running, &node).as_deref().and_then(signature);
            Disk { name, node: running.host_path(&node), signature }
        })
        .collect()
}

/// Whether sysfs says the device (or, for a partition, its disk) has removable media.
fn removable(running: &ImageRoot, name: &str) -> bool {
    let class = running.host_path("sys/class/block").join(name);
    // A partition has no `removable` of its own: its disk is the dir above it in sysfs (the
    // kernel follows the class link before the `..`).
    std::fs::read_to_string(class.join("removable"))
        .or_else(|_| std::fs::read_to_string(class.join("../removable")))
        .is_ok_and(|v| v.trim() == "1")
}

/// What [`remove_bounded`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Entries removed.
    pub removed: u64,
    /// Whether some are left: the deadline, another filesystem, deeper than [`crate::fs::tree::MAX_DEPTH`], an error.
    pub left: bool,
}

/// Removes the tree `name` in `parent`, each entry as it is read (no list of names is kept, so a
/// dir of millions of entries costs no memory), never following a symlink nor entering another
/// filesystem, until `deadline`: what is left then stays.
pub fn remove_bounded(parent: BorrowedFd<'_>, name: &OsStr, deadline: Instant) -> Removal {
    match rustix::fs::fstat(parent) {
        Ok(st) => {
            let mut remover = Remover { dev: st.st_dev, deadline, out: Removal::default() };
            remover.entry(parent, name, 0);
            remover.out
        }
        Err(_) => Removal { removed: 0, left: true },
    }
}

/// The filesystem [`remove_bounded`] stays on, its deadline, and what it did so far.
struct Remover {
    dev: u64,
    deadline: Instant,
    out: Removal,
}

impl Remover {
    /// Removes one entry (a dir with everything in it); whether it is gone.
    fn entry(&mut self, parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> bool {
        let gone = self.remove(parent, name, depth);
        self.out.left |= !gone;
        gone
    }

    fn remove(&mut self, parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) else { return false };
        if st.st_dev != self.dev {
            return false;
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if depth >= crate::fs::tree::MAX_DEPTH {
                return false;
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let Ok(dir) = rustix::fs::openat(parent, name, flags, Mode::empty()) else { return false };
            if rustix::fs::fstat(&dir).map(|s| s.st_dev) != Ok(self.dev) {
                return false;
            }
            // Removing entries while reading the dir may make the listing skip some: again,
            // until a pass removes nothing.
            loop {
                let Ok(entries) = Dir::read_from(&dir) else { break };
                let mut progress = false;
                for entry in entries.filter_map(Result::ok) {
                    let child = OsStr::from_bytes(entry.file_name().to_bytes());
                    if child == "." || child == ".." {
                        continue;
                    }
                    progress |= self.entry(dir.as_fd(), child, depth + 1);
                    if Instant::now() >= self.deadline {
                        return false;
                    }
                }
                if !progress {
                    break;
                }
            }
            if rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).is_err() {
                return false;
            }
        } else if rustix::fs::unlinkat(parent, name, AtFlags::empty()).is_err() {
            return false;
        }
        self.out.removed = self.out.removed.saturating_add(1);
        true
    }
}

/// The first [`HEAD`] bytes of the device node `node` (relative to the running root).
fn read_head(running: &ImageRoot, node: &Path) -> Option<Vec<u8>> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = running.open_file(node, flags).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::BlockDevice {
        return None;
    }
    let mut head = Vec::with_capacity(HEAD);
    std::fs::File::from(fd).take(HEAD as u64).read_to_end(&mut head).ok()?;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(len: usize, parts: &[(usize, &[u8])]) -> Vec<u8> {
        let mut head = vec![0u8; len];
        for (at, bytes) in parts {
            head[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        head
    }

    #[test]
    fn signatures_and_labels() {
        let swap = with(4096, &[(4086, b"SWAPSPACE2"), (1052, b"lab-swap")]);
        assert_eq!(signature(&swap), Some(Signature { kind: "swap".into(), label: Some("lab-swap".into()) }));
        let unlabelled = with(4096, &[(4086, b"SWAPSPACE2")]);
        assert_eq!(signature(&unlabelled).unwrap().label, None);
        let ext = with(2048, &[(1080, &[0x53, 0xEF]), (1144, b"scratch\0\0\0\0\0\0\0\0\0")]);
        assert_eq!(signature(&ext), Some(Signature { kind: "ext4".into(), label: Some("scratch".into()) }));
        let xfs = with(512, &[(0, b"XFSB"), (108, b"twelve-bytes")]);
        assert_eq!(signature(&xfs).unwrap().label.as_deref(), Some("twelve-bytes"));
        let btrfs = with(HEAD, &[(65600, b"_BHRfS_M"), (65835, b"data")]);
        assert_eq!(signature(&btrfs), Some(Signature { kind: "btrfs".into(), label: Some("data".into()) }));
        let odd = with(2048, &[(1080, &[0x53, 0xEF]), (1144, b"a\x1bb")]);
        assert_eq!(signature(&odd).unwrap().label, None, "not printable: no label");
        assert_eq!(signature(&[0; 100]), None);
        assert_eq!(signature(&[]), None);
        assert_eq!(signature(&with(4090, &[(4086, b"SWAP")])), None, "a short device");
    }

    #[test]
    fn removal_stops_at_symlinks_depth_and_the_deadline() {
        let dir = std::env::temp_dir().join(format!("stateless-remove-{}", std::process::id()));
        let outside = dir.join("outside");
        std::fs::create_dir_all(outside.join("keep")).unwrap();
        let old = dir.join("old");
        std::fs::create_dir_all(old.join("a/b")).unwrap();
        for n in 0..300 {
            std::fs::write(old.join(format!("a/f{n}")), "x").unwrap();
        }
        std::os::unix::fs::symlink(&outside, old.join("a/b/link")).unwrap();
        let mut deep = old.join("deep");
        for _ in 0..70 {
            deep = deep.join("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let parent = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let past = remove_bounded(parent.as_fd(), OsStr::new("old"), Instant::now());
        assert_eq!(past, Removal { removed: 0, left: true }, "a deadline gone: nothing");
        let later = Instant::now() + std::time::Duration::from_secs(30);
        let done = remove_bounded(parent.as_fd(), OsStr::new("old"), later);
        assert!(done.left, "deeper than 64: left");
        assert!(done.removed >= 303, "{done:?}");
        assert!(!old.join("a").exists() && old.join("deep").exists());
        assert!(outside.join("keep").exists(), "the symlink removed, not followed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_a_disk_holds() {
        let disk = |kind: &str, label: Option<&str>| Disk {
            name: "vdb".into(),
            node: PathBuf::from("/dev/vdb"),
            signature: Some(Signature { kind: kind.into(), label: label.map(str::to_owned) }),
        };
        assert!(disk("swap", None).holds(true, None) && !disk("swap", None).holds(true, Some("x")));
        assert!(disk("swap", Some("x")).holds(true, Some("x")) && !disk("swap", Some("x")).holds(false, Some("x")));
        assert!(disk("ext4", Some("x")).holds(false, Some("x")) && !disk("ext4", Some("x")).holds(true, None));
        assert!(!Disk { signature: None, ..disk("ext4", None) }.holds(false, None));
    }

    #[test]
    fn devices_left_alone() {
        for name in ["loop0", "ram1", "zram0", "sr0", "fd0"] {
            assert!(skipped(name), "{name}");
        }
        for name in ["sda", "vdb1", "nvme0n1p2", "fdisk", "srv", "mmcblk0"] {
            assert!(!skipped(name), "{name}");
        }
    }
}
