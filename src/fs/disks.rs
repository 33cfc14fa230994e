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

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, Dir, FileType, Mode, RenameFlags, StatxFlags};
use rustix::io::Errno;

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

/// Dirs held open at once by [`remove_trees`]: a dir deeper than that is moved up beside the
/// trees being removed and removed from there, so any depth costs a bounded number of open
/// files and of memory (each open dir holds a read buffer of at most some 24 KiB).
const OPEN_DIRS: usize = 16;

/// What [`remove_trees`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Entries removed.
    pub removed: u64,
    /// Whether the deadline came first: the rest goes at a later call.
    pub timed_out: bool,
    /// Whether some entry stays for another reason: a mount point below (left alone, as the
    /// dirs above it), or an error.
    pub kept: bool,
}

/// Removes every entry of `dir` whose name starts with `prefix`, whole trees, until `deadline`:
/// each entry as it is read (no list of names is kept, so a dir of millions of entries costs no
/// memory), at any depth (a dir [`OPEN_DIRS`] levels down is renamed into `dir` as
/// `<prefix>i<inode>` and removed from there, now or at a later call), never following a
/// symlink (a link is removed, not what it leads to) nor entering another mount (a mount point
/// is left, with the dirs above it). What the deadline leaves stays for a later call.
pub fn remove_trees(dir: BorrowedFd<'_>, prefix: &str, deadline: Instant) -> Removal {
    let mut remover = Remover { top: dir, prefix, mount: 0, deadline, out: Removal::default(), moved: 0 };
    match place(dir, c"", AtFlags::EMPTY_PATH) {
        Ok(top) => remover.mount = top.mount,
        Err(_) => {
            remover.out.kept = true;
            return remover.out;
        }
    }
    // Removing while reading may make a listing skip names, and dirs moved up land in `dir`:
    // passes until one does nothing.
    loop {
        let done = (remover.out.removed, remover.moved);
        let Ok(mut listing) = Dir::read_from(dir) else {
            remover.out.kept = true;
            return remover.out;
        };
        while let Some(entry) = listing.read() {
            let Ok(entry) = entry else {
                remover.out.kept = true;
                break;
            };
            if entry.file_name().to_bytes().starts_with(prefix.as_bytes()) {
                remover.tree(entry.file_name());
            }
            if remover.expired() {
                return remover.out;
            }
        }
        if (remover.out.removed, remover.moved) == done {
            return remover.out;
        }
    }
}

/// Where an entry is: its kind and inode, and its mount (its mount id, or its device on a
/// kernel without one, before 5.8).
struct Place {
    dir: bool,
    ino: u64,
    mount: u64,
}

/// The [`Place`] of `name` in `dir` (with `EMPTY_PATH`, of `dir` itself), not following a symlink.
fn place(dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> rustix::io::Result<Place> {
    let flags = flags | AtFlags::SYMLINK_NOFOLLOW;
    match rustix::fs::statx(dir, name, flags, StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID) {
        Ok(st) => Ok(Place {
            dir: FileType::from_raw_mode(st.stx_mode.into()) == FileType::Directory,
            ino: st.stx_ino,
            mount: if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 {
                st.stx_mnt_id
            } else {
                rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor)
            },
        }),
        // Before 4.11.
        Err(Errno::NOSYS) => rustix::fs::statat(dir, name, flags).map(|st| Place {
            dir: FileType::from_raw_mode(st.st_mode) == FileType::Directory,
            ino: st.st_ino,
            mount: st.st_dev,
        }),
        Err(e) => Err(e),
    }
}

/// The state of [`remove_trees`]: the dir it empties, the mount it stays on, its deadline, what
/// it did so far.
struct Remover<'a> {
    top: BorrowedFd<'a>,
    prefix: &'a str,
    mount: u64,
    deadline: Instant,
    out: Removal,
    /// Dirs moved up into `top`.
    moved: u64,
}

/// A dir being emptied: its listing (which holds its fd), its name in the dir above, and whether
/// this pass over it removed or moved anything (then it is read again: see [`remove_trees`]).
struct Level {
    listing: Dir,
    name: CString,
    progress: bool,
}

/// What became of one entry: done with (whether it was removed or moved), or a dir to empty.
enum Step {
    Done(bool),
    Enter(Level),
}

impl Remover<'_> {
    fn expired(&mut self) -> bool {
        self.out.timed_out |= Instant::now() >= self.deadline;
        self.out.timed_out
    }

    /// Removes the entry `name` of `top`, a whole tree: depth first, with at most
    /// [`OPEN_DIRS`] dirs open.
    fn tree(&mut self, name: &CStr) {
        let Step::Enter(first) = self.entry(self.top, name, FileType::Unknown, 0) else { return };
        let mut stack = vec![first];
        while !self.expired() {
            let depth = stack.len();
            let Some(level) = stack.last_mut() else { return };
            match level.listing.read() {
                Some(Ok(entry)) => {
                    let Ok(fd) = level.listing.fd() else { return };
                    match self.entry(fd, entry.file_name(), entry.file_type(), depth) {
                        Step::Enter(below) => stack.push(below),
                        Step::Done(progress) => level.progress |= progress,
                    }
                }
                Some(Err(_)) | None if level.progress => {
                    level.progress = false;
                    level.listing.rewind();
                }
                Some(Err(_)) | None => {
                    let Some(done) = stack.pop() else { return };
                    let parent = stack.last().map_or(Ok(self.top), |above| above.listing.fd());
                    let removed = parent.is_ok_and(|p| self.unlink(p, &done.name, AtFlags::REMOVEDIR));
                    if let Some(above) = stack.last_mut() {
                        above.progress |= removed;
                    }
                }
            }
        }
    }

    /// One entry of `dir`, `depth` dirs below `top`, of the kind its listing gives: a non-dir
    /// is removed, a dir on this mount entered (or moved up, [`OPEN_DIRS`] down), anything on
    /// another mount left.
    fn entry(&mut self, dir: BorrowedFd<'_>, name: &CStr, listed: FileType, depth: usize) -> Step {
        if name == c"." || name == c".." {
            return Step::Done(false);
        }
        // Unlinked at once when the listing tells (a dir after all refuses it).
        if listed != FileType::Directory && listed != FileType::Unknown {
            match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) => {
                    self.out.removed += 1;
                    return Step::Done(true);
                }
                Err(Errno::ISDIR) => {}
                Err(Errno::NOENT) => return Step::Done(false),
                Err(_) => {
                    self.out.kept = true;
                    return Step::Done(false);
                }
            }
        }
        let at = match place(dir, name, AtFlags::empty()) {
            Ok(at) => at,
            Err(Errno::NOENT) => return Step::Done(false),
            Err(_) => {
                self.out.kept = true;
                return Step::Done(false);
            }
        };
        if at.mount != self.mount {
            self.out.kept = true;
            return Step::Done(false);
        }
        if !at.dir {
            return Step::Done(self.unlink(dir, name, AtFlags::empty()));
        }
        if depth >= OPEN_DIRS {
            let moved = format!("{}i{}", self.prefix, at.ino);
            return match rustix::fs::renameat_with(dir, name, self.top, moved.as_str(), RenameFlags::NOREPLACE) {
                Ok(()) => {
                    self.moved += 1;
                    Step::Done(true)
                }
                Err(_) => {
                    self.out.kept = true;
                    Step::Done(false)
                }
            };
        }
        let opened = rustix::fs::openat(dir, name, crate::fs::tree::DIR_FLAGS, Mode::empty());
        // Checked again once open: a dir swapped for a mount point or a link in between is left.
        let same = opened.as_ref().is_ok_and(|fd| {
            place(fd.as_fd(), c"", AtFlags::EMPTY_PATH).is_ok_and(|p| (p.ino, p.mount) == (at.ino, at.mount))
        });
        match opened.and_then(Dir::new) {
            Ok(listing) if same => Step::Enter(Level { listing, name: name.to_owned(), progress: false }),
            _ => {
                self.out.kept = true;
                Step::Done(false)
            }
        }
    }

    /// `unlinkat`; whether the entry went (one already gone did not).
    fn unlink(&mut self, dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> bool {
        match rustix::fs::unlinkat(dir, name, flags) {
            Ok(()) => {
                self.out.removed += 1;
                true
            }
            Err(Errno::NOENT) => false,
            Err(_) => {
                self.out.kept = true;
                false
            }
        }
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
