//! Local disks, found by reading their signatures (no blkid, no udev): swap areas for
//! `stateless.swap=`, and the filesystem labelled for `stateless.scratch=`. Only read here; the
//! boot writes nothing to a disk but the swap areas it turns on and the one filesystem that
//! carries the scratch label.
//!
//! Each signature read, by blkid's name, in libblkid's order (RAID and crypto first), at fixed
//! offsets from the start of the device or, for MD RAID, from its end:
//!
//! | signature | where | label |
//! |---|---|---|
//! | `linux_raid_member` | MD superblock, magic `0xa92b4efc`: version 0.90 in the last 64 KiB-aligned 64 KiB, 1.0 8 KiB before the 4 KiB-aligned end, 1.1 at 0, 1.2 at 4096 (1.x: major version 1, its own offset in sectors at 144) | |
//! | `LVM2_member` | `LABELONE` at the start of one of the first four sectors, `LVM2 001` 24 bytes on | |
//! | `crypto_LUKS` | `LUKS\xba\xbe` at 0 (or LUKS2's second header, `SKUL\xba\xbe` at 16, 32 or 64 KiB) | |
//! | `BitLocker` | `-FVE-FS-` at 3 | |
//! | `vfat` | `FAT12   `, `FAT16   `, `FAT     ` or `MSDOS` at 54, or `FAT32   ` or `MSWIN` at 82, and `0x55 0xAA` at 510 | |
//! | `swsuspend` | a hibernated system in a swap area: `S1SUSPEND`, `S2SUSPEND`, `ULSUSPEND` or `LINHIB0001` at 4086 | |
//! | `swap` (v1) | `SWAPSPACE2` at 4086 (the end of a 4 KiB page) | 16 bytes at 1052 |
//! | `xfs` | `XFSB` at 0 | 12 bytes at 108 |
//! | `ext4` (ext2/3/4) | magic `0xEF53` (little endian) at 1080 | 16 bytes at 1144 |
//! | `iso9660` | `CD001` at 32769 | |
//! | `ntfs` | `NTFS    ` at 3 | |
//! | `squashfs` | `hsqs` at 0 (`sqsh`: version 3, big endian) | |
//! | `btrfs` | `_BHRfS_M` at 65600 | 256 bytes at 65835 |
//! | `exfat` | `EXFAT   ` at 3 | |
//!
//! Labels are NUL-padded; a label that is not printable ASCII is taken as none. A whole disk
//! the kernel found partitions on carries a `partition-table` signature too.
//!
//! A device with more than one signature is *ambivalent*, as blkid calls it, and neither swap
//! nor scratch uses it: the other may be what the device really is (a RAID1 member, whose
//! array holds the swap area, written alone would corrupt the array; an ISO image or a
//! partitioned disk that mkswap wrote over without wiping it).

use std::ffi::{CStr, CString};
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::fs::{AtFlags, Dir, FileType, Mode, RenameFlags, StatxFlags};
use rustix::io::Errno;

use serde::{Deserialize, Serialize};

use crate::fs::root::ImageRoot;

/// How much of a device's start is read: up to the end of a Btrfs label.
const HEAD: u64 = 65835 + 256;
/// How much of its end: MD RAID 0.90's superblock is up to 128 KiB before it.
const TAIL: u64 = 128 << 10;

/// One signature a device carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// blkid's name of it (`swap`, `ext4`, `linux_raid_member`, ...: see the table above);
    /// `ext4` for ext2 and ext3 too (the kernel's ext4 driver mounts them all).
    pub kind: String,
    pub label: Option<String>,
}

/// A block device and its signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The kernel's name: `vdb`, `sda2`, `nvme0n1p3`.
    pub name: String,
    /// Its node below the running root's /dev.
    pub node: PathBuf,
    /// Every one found (none when it cannot be read).
    pub signatures: Vec<Signature>,
}

impl Disk {
    /// Its signature of a swap area (`swap`) or else of a filesystem the scratch disk can be
    /// (ext2/3/4, XFS, Btrfs), with the label `label` (any with `None`), whatever else it carries.
    pub fn holds(&self, swap: bool, label: Option<&str>) -> Option<&Signature> {
        let kinds: &[&str] = if swap { &["swap"] } else { &["ext4", "xfs", "btrfs"] };
        self.signatures
            .iter()
            .find(|s| kinds.contains(&s.kind.as_str()) && label.is_none_or(|label| s.label.as_deref() == Some(label)))
    }

    /// Whether it carries more than one signature: then neither swap nor scratch uses it.
    pub fn ambivalent(&self) -> bool {
        self.signatures.len() > 1
    }

    /// Its signatures' kinds: `swap and iso9660`.
    pub fn kinds(&self) -> String {
        let kinds: Vec<&str> = self.signatures.iter().map(|s| s.kind.as_str()).collect();
        kinds.join(" and ")
    }
}

/// The bytes of a device its signatures live in: the first [`HEAD`] and the last [`TAIL`]
/// (all of it when it is smaller), and its size.
pub struct Sample {
    head: Vec<u8>,
    tail: Vec<u8>,
    size: u64,
}

impl Sample {
    /// Reads them from `file`: a block device, or an image of one.
    ///
    /// # Errors
    /// A failed seek or read.
    pub fn read(file: &std::fs::File) -> std::io::Result<Self> {
        let size = (&mut &*file).seek(SeekFrom::End(0))?;
        let read = |at: u64, len: u64| -> std::io::Result<Vec<u8>> {
            let mut buf = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
            file.read_exact_at(&mut buf, at)?;
            Ok(buf)
        };
        let tail_at = size.saturating_sub(TAIL);
        Ok(Sample { head: read(0, size.min(HEAD))?, tail: read(tail_at, size - tail_at)?, size })
    }

    /// `len` bytes at `at`, where they were read.
    fn bytes(&self, at: u64, len: usize) -> Option<&[u8]> {
        fn slice(buf: &[u8], from: u64, len: usize) -> Option<&[u8]> {
            let from = usize::try_from(from).ok()?;
            buf.get(from..from.checked_add(len)?)
        }
        let tail_at = self.size.saturating_sub(self.tail.len() as u64);
        slice(&self.head, at, len).or_else(|| slice(&self.tail, at.checked_sub(tail_at)?, len))
    }

    fn is(&self, at: u64, magic: &[u8]) -> bool {
        self.bytes(at, magic.len()) == Some(magic)
    }

    fn u32le(&self, at: u64) -> Option<u32> {
        self.bytes(at, 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }

    fn u64le(&self, at: u64) -> Option<u64> {
        self.bytes(at, 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }

    /// The label field at `at`, `len` bytes, NUL-padded: `None` when empty or not printable.
    fn label(&self, at: u64, len: usize) -> Option<String> {
        let field = self.bytes(at, len)?;
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let text = field.get(..end)?;
        (!text.is_empty() && text.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
            .then(|| String::from_utf8_lossy(text).into_owned())
    }

    /// An MD RAID superblock (see the table above).
    fn md_raid(&self) -> bool {
        const MAGIC: u32 = 0xa92b_4efc;
        // 0.90: the magic and major version 0 in the host's byte order, either.
        let v0 = |at: u64| {
            let be = |at| self.bytes(at, 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
            (self.u32le(at) == Some(MAGIC) && self.u32le(at + 4) == Some(0))
                || (be(at) == Some(MAGIC) && be(at + 4) == Some(0))
        };
        let v1 = |at: u64| {
            self.u32le(at) == Some(MAGIC) && self.u32le(at + 4) == Some(1) && self.u64le(at + 144) == Some(at / 512)
        };
        let end = |align: u64, back: u64| (self.size & !(align - 1)).checked_sub(back);
        end(0x10000, 0x10000).is_some_and(v0) || end(0x1000, 0x2000).is_some_and(v1) || v1(0) || v1(0x1000)
    }
}

/// Every signature in `sample`, in libblkid's order.
pub fn signatures(sample: &Sample) -> Vec<Signature> {
    let s = sample;
    let any = |at: u64, magics: &[&[u8]]| magics.iter().any(|m| s.is(at, m));
    let lvm2 = (0..4)
        .any(|n: u64| s.is(n * 512, b"LABELONE") && s.is(n * 512 + 24, b"LVM2 001") && s.u64le(n * 512 + 8) == Some(n));
    let luks = s.is(0, b"LUKS\xba\xbe") || [0x4000, 0x8000, 0x10000].iter().any(|&at| s.is(at, b"SKUL\xba\xbe"));
    let fat = (any(54, &[b"FAT12   ", b"FAT16   ", b"FAT     ", b"MSDOS"]) || any(82, &[b"FAT32   ", b"MSWIN"]))
        && s.is(510, &[0x55, 0xAA]);
    let found: [(&str, bool, Option<String>); 14] = [
        ("linux_raid_member", s.md_raid(), None),
        ("LVM2_member", lvm2, None),
        ("crypto_LUKS", luks, None),
        ("BitLocker", s.is(3, b"-FVE-FS-"), None),
        ("vfat", fat, None),
        ("swsuspend", any(4086, &[b"S1SUSPEND", b"S2SUSPEND", b"ULSUSPEND", b"LINHIB0001"]), None),
        ("swap", s.is(4086, b"SWAPSPACE2"), s.label(1052, 16)),
        ("xfs", s.is(0, b"XFSB"), s.label(108, 12)),
        ("ext4", s.is(1080, &[0x53, 0xEF]), s.label(1144, 16)),
        ("iso9660", s.is(32769, b"CD001"), None),
        ("ntfs", s.is(3, b"NTFS    "), None),
        ("squashfs", any(0, &[b"hsqs", b"sqsh"]), None),
        ("btrfs", s.is(65600, b"_BHRfS_M"), s.label(65835, 256)),
        ("exfat", s.is(3, b"EXFAT   "), None),
    ];
    found
        .into_iter()
        .filter(|(_, yes, _)| *yes)
        .map(|(kind, _, label)| Signature { kind: kind.into(), label })
        .collect()
}

/// Kernel names of devices not looked at: loop and RAM disks (no disk), CD and floppy drives (a
/// read may wait for a medium or a motor). Removable ones (USB sticks, card readers) are left
/// out by [`scan`] too: a stick carrying the label must not become a client's scratch disk.
fn skipped(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())))
}

/// Every block device of the running root's /sys/class/block with its signatures, sorted by
/// name; a device that cannot be read has none (and is used for nothing).
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
            let mut signatures = read_sample(running, &node).as_ref().map(signatures).unwrap_or_default();
            if partitioned(running, &name) {
                signatures.push(Signature { kind: "partition-table".into(), label: None });
            }
            Disk { name, node: running.host_path(&node), signatures }
        })
        .collect()
}

/// Whether the kernel found partitions on the device (sysfs lists them below it, each with a
/// `partition` file): swapon or a mount of the whole disk would write over them.
fn partitioned(running: &ImageRoot, name: &str) -> bool {
    let class = running.host_path("sys/class/block").join(name);
    std::fs::read_dir(&class).is_ok_and(|listing| {
        listing.filter_map(Result::ok).any(|e| {
            e.file_name().to_str().is_some_and(|n| n.starts_with(name)) && e.path().join("partition").is_file()
        })
    })
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

/// Dirs held open at once by [`remove_trees`]: a dir deeper than that is moved up and removed
/// from there, so any depth costs a bounded number of open files and of memory (each open dir
/// holds a read buffer of at most some 24 KiB).
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
/// memory), at any depth, never following a symlink (a link is removed, not what it leads to)
/// nor entering another mount (a mount point is left, with the dirs above it). What the
/// deadline leaves stays for a later call.
///
/// A dir [`OPEN_DIRS`] levels down is renamed `<prefix>d<device>i<inode>` (unique while it
/// lives) into `dir` and removed from there, now or at a later call. A Btrfs subvolume (a dir
/// on the same mount but another device, which any user may make) is entered too: renamed
/// into `dir` first when below a tree's top (only a subvolume's root may leave it), so its
/// deep dirs go up to its own root, and removed empty by `rmdir` (Linux 4.18 and later). Before
/// Linux 5.8 (no mount id) it is taken for another mount and kept. `writable` makes a
/// subvolume writable (the ioctl lives with the other unsafe calls: `sys::btrfs_subvolume_writable`).
pub fn remove_trees(dir: BorrowedFd<'_>, prefix: &str, deadline: Instant, writable: SubvolumeWritable) -> Removal {
    let mut remover =
        Remover { top: dir, prefix, mount: 0, dev: 0, deadline, out: Removal::default(), moved: 0, writable };
    match place(dir, c"", AtFlags::EMPTY_PATH) {
        Ok(top) => (remover.mount, remover.dev) = (top.mount, top.dev),
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

/// Where an entry is: its kind, inode and device (a Btrfs subvolume has one of its own), and
/// its mount (its mount id, or its device on a kernel without one, before 5.8).
struct Place {
    dir: bool,
    ino: u64,
    dev: u64,
    mount: u64,
}

/// The [`Place`] of `name` in `dir` (with `EMPTY_PATH`, of `dir` itself), not following a symlink.
fn place(dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> rustix::io::Result<Place> {
    let flags = flags | AtFlags::SYMLINK_NOFOLLOW;
    match rustix::fs::statx(dir, name, flags, StatxFlags::TYPE | StatxFlags::INO | StatxFlags::MNT_ID) {
        Ok(st) => {
            let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
            Ok(Place {
                dir: FileType::from_raw_mode(st.stx_mode.into()) == FileType::Directory,
                ino: st.stx_ino,
                dev,
                mount: if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 { st.stx_mnt_id } else { dev },
            })
        }
        // Before 4.11.
        Err(Errno::NOSYS) => rustix::fs::statat(dir, name, flags).map(|st| Place {
            dir: FileType::from_raw_mode(st.st_mode) == FileType::Directory,
            ino: st.st_ino,
            dev: st.st_dev,
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
    /// `top`'s device.
    dev: u64,
    deadline: Instant,
    out: Removal,
    /// Dirs moved up into `top`.
    moved: u64,
    writable: SubvolumeWritable,
}

/// Clears a Btrfs subvolume's read-only flag.
pub type SubvolumeWritable = fn(BorrowedFd<'_>) -> rustix::io::Result<()>;

/// A dir being emptied: its listing (which holds its fd), its name in the dir above, its device,
/// and whether this pass over it removed or moved anything (then it is read again: see
/// [`remove_trees`]).
struct Level {
    listing: Dir,
    name: CString,
    dev: u64,
    progress: bool,
}

/// What became of one entry: done with (whether it was removed), moved up (into `top`, or else
/// into the first level of the tree), or a dir to empty.
enum Visit {
    Done(bool),
    Moved { to_top: bool },
    Enter(Level),
}

impl Remover<'_> {
    fn expired(&mut self) -> bool {
        self.out.timed_out |= Instant::now() >= self.deadline;
        self.out.timed_out
    }

    /// Removes the entry `name` of `top`, a whole tree: depth first, with at most
    /// [`OPEN_DIRS`] dirs open, all on one device (a subvolume below is moved to `top`).
    fn tree(&mut self, name: &CStr) {
        let Visit::Enter(first) = self.entry(self.top, self.dev, None, name, FileType::Unknown, 0) else { return };
        let mut stack = vec![first];
        while !self.expired() {
            let depth = stack.len();
            let Some(read) = stack.last_mut().map(|level| level.listing.read()) else { return };
            match read {
                Some(Ok(entry)) => {
                    let (Some(level), Some(first)) = (stack.last(), stack.first()) else { return };
                    // Deep dirs go up to the root of the subvolume they are in, else to `top`.
                    let home = if first.dev == self.dev { Ok(None) } else { first.listing.fd().map(Some) };
                    let (Ok(fd), Ok(home)) = (level.listing.fd(), home) else { return };
                    match self.entry(fd, level.dev, home, entry.file_name(), entry.file_type(), depth) {
                        Visit::Enter(below) => stack.push(below),
                        Visit::Done(progress) => stack.last_mut().into_iter().for_each(|l| l.progress |= progress),
                        Visit::Moved { to_top } => {
                            // Read again: the dir it left, and the one it landed in.
                            self.moved += u64::from(to_top);
                            for (n, level) in stack.iter_mut().enumerate() {
                                level.progress |= n + 1 == depth || (n == 0 && !to_top);
                            }
                        }
                    }
                }
                Some(Err(_)) | None if stack.last().is_some_and(|l| l.progress) => {
                    stack.last_mut().into_iter().for_each(|l| {
                        l.progress = false;
                        l.listing.rewind();
                    });
                }
                Some(Err(_)) | None => {
                    let Some(done) = stack.pop() else { return };
                    let parent = stack.last().map_or(Ok(self.top), |above| above.listing.fd());
                    let removed = parent.is_ok_and(|p| self.unlink(p, &done.name, AtFlags::REMOVEDIR).unwrap_or(false));
                    if let Some(above) = stack.last_mut() {
                        above.progress |= removed;
                    }
                }
            }
        }
    }

    /// One entry of `dir` (on the device `dev`), `depth` dirs below `top`, of the kind its
    /// listing gives: a non-dir is removed, a dir on this mount entered or moved up (into
    /// `home`, or else `top`, [`OPEN_DIRS`] down; a subvolume's root into `top`), anything on
    /// another mount left.
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        dev: u64,
        home: Option<BorrowedFd<'_>>,
        name: &CStr,
        listed: FileType,
        depth: usize,
    ) -> Visit {
        if name == c"." || name == c".." {
            return Visit::Done(false);
        }
        // Unlinked at once when the listing tells (a dir after all refuses it).
        if listed != FileType::Directory && listed != FileType::Unknown {
            match self.unlink(dir, name, AtFlags::empty()) {
                Err(Errno::ISDIR) => {}
                gone => return Visit::Done(gone.unwrap_or(false)),
            }
        }
        let at = match place(dir, name, AtFlags::empty()) {
            Ok(at) => at,
            Err(Errno::NOENT) => return Visit::Done(false),
            Err(_) => {
                self.out.kept = true;
                return Visit::Done(false);
            }
        };
        if at.mount != self.mount {
            self.out.kept = true;
            return Visit::Done(false);
        }
        if !at.dir {
            return Visit::Done(self.unlink(dir, name, AtFlags::empty()).unwrap_or(false));
        }
        // Another device on this mount: a Btrfs subvolume's root, or the empty dir a snapshot
        // shows for one that was in it. An empty one just goes.
        if at.dev != dev && rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).is_ok() {
            self.out.removed += 1;
            return Visit::Done(true);
        }
        if depth >= OPEN_DIRS && at.dev == dev {
            return self.move_up(dir, name, home, &at);
        }
        let opened = rustix::fs::openat(dir, name, crate::fs::tree::DIR_FLAGS, Mode::empty());
        // Checked again once open: a dir swapped for a mount point or a link in between is left.
        let same = |fd: &OwnedFd| {
            place(fd.as_fd(), c"", AtFlags::EMPTY_PATH)
                .is_ok_and(|p| (p.ino, p.dev, p.mount) == (at.ino, at.dev, at.mount))
        };
        let Some(fd) = opened.ok().filter(same) else {
            self.out.kept = true;
            return Visit::Done(false);
        };
        // A subvolume's root (the same mount, another device). Any user may make their own
        // read-only: writable again, or nothing in it goes (nor it moves). Below a tree's top it
        // goes to `top`, the first level of a tree of its own.
        if at.dev != dev {
            let _ = (self.writable)(fd.as_fd());
            if depth > 0 {
                return self.move_up(dir, name, None, &at);
            }
        }
        match Dir::new(fd) {
            Ok(listing) => Visit::Enter(Level { listing, name: name.to_owned(), dev: at.dev, progress: false }),
            Err(_) => {
                self.out.kept = true;
                Visit::Done(false)
            }
        }
    }

    /// Renames the dir `name` of `dir` (at `at`) into `to`, or else `top`, by a name unique while
    /// it lives.
    fn move_up(&mut self, dir: BorrowedFd<'_>, name: &CStr, to: Option<BorrowedFd<'_>>, at: &Place) -> Visit {
        let moved = format!("{}d{}i{}", self.prefix, at.dev, at.ino);
        match rustix::fs::renameat_with(dir, name, to.unwrap_or(self.top), moved.as_str(), RenameFlags::NOREPLACE) {
            Ok(()) => Visit::Moved { to_top: to.is_none() },
            Err(_) => {
                self.out.kept = true;
                Visit::Done(false)
            }
        }
    }

    /// `unlinkat`; whether the entry went (one already gone did not). An error keeps it, but for
    /// `EISDIR`: a dir after all, for the caller to look at.
    fn unlink(&mut self, dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags) -> rustix::io::Result<bool> {
        match rustix::fs::unlinkat(dir, name, flags) {
            Ok(()) => {
                self.out.removed += 1;
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => {
                self.out.kept |= e != Errno::ISDIR;
                Err(e)
            }
        }
    }
}

/// The [`Sample`] of the device node `node` (relative to the running root).
fn read_sample(running: &ImageRoot, node: &Path) -> Option<Sample> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = running.open_file(node, flags).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::BlockDevice {
        return None;
    }
    Sample::read(&std::fs::File::from(fd)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(len: usize, parts: &[(usize, &[u8])]) -> Vec<u8> {
        let mut image = vec![0u8; len];
        for (at, bytes) in parts {
            image[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        image
    }

    /// The signatures of a device holding `image`, read as [`Sample::read`] reads one.
    fn of(image: &[u8]) -> Vec<Signature> {
        let size = image.len();
        let head = image[..size.min(HEAD as usize)].to_vec();
        let tail = image[size.saturating_sub(TAIL as usize)..].to_vec();
        signatures(&Sample { head, tail, size: size as u64 })
    }

    fn kinds(image: &[u8]) -> Vec<String> {
        of(image).into_iter().map(|s| s.kind).collect()
    }

    fn sig(kind: &str, label: Option<&str>) -> Signature {
        Signature { kind: kind.into(), label: label.map(str::to_owned) }
    }

    #[test]
    fn signatures_and_labels() {
        let swap = with(4096, &[(4086, b"SWAPSPACE2"), (1052, b"lab-swap")]);
        assert_eq!(of(&swap), [sig("swap", Some("lab-swap"))]);
        assert_eq!(of(&with(4096, &[(4086, b"SWAPSPACE2")])), [sig("swap", None)]);
        let ext = with(2048, &[(1080, &[0x53, 0xEF]), (1144, b"scratch\0\0\0\0\0\0\0\0\0")]);
        assert_eq!(of(&ext), [sig("ext4", Some("scratch"))]);
        assert_eq!(of(&with(512, &[(0, b"XFSB"), (108, b"twelve-bytes")])), [sig("xfs", Some("twelve-bytes"))]);
        let btrfs = with(HEAD as usize, &[(65600, b"_BHRfS_M"), (65835, b"data")]);
        assert_eq!(of(&btrfs), [sig("btrfs", Some("data"))]);
        let odd = with(2048, &[(1080, &[0x53, 0xEF]), (1144, b"a\x1bb")]);
        assert_eq!(of(&odd), [sig("ext4", None)], "not printable: no label");
        assert_eq!(of(&[0; 100]), []);
        assert_eq!(of(&[]), []);
        assert_eq!(of(&with(4090, &[(4086, b"SWAP")])), [], "a short device");
    }

    #[test]
    fn signatures_of_other_kinds() {
        let boot = |at: usize, name: &[u8]| with(4096, &[(at, name), (510, &[0x55, 0xAA])]);
        assert_eq!(kinds(&boot(54, b"FAT16   ")), ["vfat"]);
        assert_eq!(kinds(&boot(82, b"FAT32   ")), ["vfat"]);
        assert_eq!(kinds(&with(4096, &[(54, b"FAT16   ")])), [""; 0], "no boot sector signature: no FAT");
        assert_eq!(kinds(&boot(3, b"NTFS    ")), ["ntfs"]);
        assert_eq!(kinds(&boot(3, b"EXFAT   ")), ["exfat"]);
        assert_eq!(kinds(&boot(3, b"-FVE-FS-")), ["BitLocker"]);
        assert_eq!(kinds(&with(4096, &[(0, b"LUKS\xba\xbe")])), ["crypto_LUKS"]);
        assert_eq!(kinds(&with(HEAD as usize, &[(0x8000, b"SKUL\xba\xbe")])), ["crypto_LUKS"], "LUKS2's second header");
        assert_eq!(kinds(&with(4096, &[(0, b"hsqs")])), ["squashfs"]);
        assert_eq!(kinds(&with(40960, &[(32769, b"CD001")])), ["iso9660"]);
        assert_eq!(kinds(&with(4096, &[(4086, b"S1SUSPEND")])), ["swsuspend"], "hibernated: no swap");
        let lvm = |sector: u64| with(4096, &[(512, b"LABELONE"), (520, &sector.to_le_bytes()), (536, b"LVM2 001")]);
        assert_eq!(kinds(&lvm(1)), ["LVM2_member"]);
        assert_eq!(kinds(&lvm(2)), [""; 0], "a label that names another sector");
    }

    #[test]
    fn md_raid_superblocks_at_either_end() {
        const MAGIC: [u8; 4] = 0xa92b_4efcu32.to_le_bytes();
        let v1 = |size: usize, at: usize, offset: u64| {
            with(size, &[(at, &MAGIC), (at + 4, &1u32.to_le_bytes()), (at + 144, &offset.to_le_bytes())])
        };
        let size = (3 << 20) + 12345;
        let v1_0 = (size & !0xfff) - 0x2000;
        assert_eq!(kinds(&v1(size, v1_0, v1_0 as u64 / 512)), ["linux_raid_member"], "1.0, at the end");
        assert_eq!(kinds(&v1(size, v1_0, 7)), [""; 0], "not where it says it is");
        assert_eq!(kinds(&v1(size, 0, 0)), ["linux_raid_member"], "1.1");
        assert_eq!(kinds(&v1(size, 4096, 8)), ["linux_raid_member"], "1.2");
        let v0_90 = (size & !0xffff) - 0x10000;
        assert_eq!(kinds(&with(size, &[(v0_90, &MAGIC)])), ["linux_raid_member"], "0.90");
        let big_endian = 0xa92b_4efcu32.to_be_bytes();
        assert_eq!(kinds(&with(size, &[(v0_90, &big_endian)])), ["linux_raid_member"], "0.90, big endian");
        // A swap area in a RAID1 array with its superblock at the end: the member has both.
        let member = with(size, &[(4086, b"SWAPSPACE2"), (v0_90, &MAGIC)]);
        assert_eq!(kinds(&member), ["linux_raid_member", "swap"]);
    }

    #[test]
    fn what_a_disk_holds() {
        let disk =
            |signatures: Vec<Signature>| Disk { name: "vdb".into(), node: PathBuf::from("/dev/vdb"), signatures };
        let swap = |label| disk(vec![sig("swap", label)]);
        assert!(swap(None).holds(true, None).is_some() && swap(None).holds(true, Some("x")).is_none());
        assert!(swap(Some("x")).holds(true, Some("x")).is_some() && swap(Some("x")).holds(false, Some("x")).is_none());
        let ext = disk(vec![sig("ext4", Some("x"))]);
        assert!(ext.holds(false, Some("x")).is_some() && ext.holds(true, None).is_none() && !ext.ambivalent());
        assert!(disk(vec![]).holds(false, None).is_none());
        assert!(disk(vec![sig("vfat", None)]).holds(false, None).is_none(), "not a filesystem for scratch");
        let both = disk(vec![sig("linux_raid_member", None), sig("swap", Some("x"))]);
        assert!(both.holds(true, Some("x")).is_some() && both.ambivalent());
        assert_eq!(both.kinds(), "linux_raid_member and swap");
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
