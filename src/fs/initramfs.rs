//! Emptying the initramfs before switching out of it (pivot_root does not work on the initial
//! rootfs, so its files would stay in memory for good): every entry on the initramfs's own
//! filesystem goes, nothing on another mount is touched, not even entered.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{openat, statfs, statx, unlinkat, AtFlags, Dir, FileType, FsWord, Mode, OFlags, StatxFlags};

/// statfs f_type of the kernel's initial rootfs: ramfs, or tmpfs with `rootfstype=tmpfs`.
pub const RAMFS_MAGIC: FsWord = 0x8584_58f6;

/// Deepest dir tree walked (an initramfs built by anyone else could be deep; we stop there).
const MAX_DEPTH: usize = 64;

/// What [`clear`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleared {
    /// Entries removed.
    pub removed: usize,
    /// Entries on another mount (mount points), left alone.
    pub other_mounts: usize,
    /// Entries that could not be removed (logged by the caller).
    pub failed: Vec<String>,
}

/// Whether `path` is on a ramfs or tmpfs, as the initial rootfs is.
pub fn is_initramfs(path: &std::path::Path) -> bool {
    statfs(path).is_ok_and(|s| {
        let magic = s.f_type as FsWord;
        magic == RAMFS_MAGIC || magic == crate::model::mount::TMPFS_MAGIC
    })
}

/// Removes everything below `dir` that is on `dir`'s own filesystem (same st_dev), never
/// descending into another mount nor following a symlink.
pub fn clear(dir: BorrowedFd<'_>) -> io::Result<Cleared> {
    let dev = rustix::fs::fstat(dir)?.st_dev;
    let mut cleared = Cleared::default();
    clear_dir(dir, dev, 0, "", &mut cleared)?;
    Ok(cleared)
}

fn clear_dir(dir: BorrowedFd<'_>, dev: u64, depth: usize, at: &str, cleared: &mut Cleared) -> io::Result<()> {
    let names: Vec<std::ffi::CString> = Dir::read_from(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let shown = format!("{at}/{}", name.to_string_lossy());
        if let Err(e) = clear_entry(dir, &name, dev, depth, &shown, cleared) {
            cleared.failed.push(format!("{shown}: {e}"));
        }
    }
    Ok(())
}

fn clear_entry(
    dir: BorrowedFd<'_>,
    name: &CStr,
    dev: u64,
    depth: usize,
    shown: &str,
    cleared: &mut Cleared,
) -> io::Result<()> {
    // The attributes cached, never asked of a server: a mount left on a dir of the initramfs
    // (an NFS try given up on that mounted late) may be one whose server is gone, and a GETATTR
    // on a hard mount would wait for ever.
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
    let st = statx(dir, name, flags, StatxFlags::TYPE)?;
    if rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor) != dev {
        cleared.other_mounts += 1;
        return Ok(());
    }
    if FileType::from_raw_mode(u32::from(st.stx_mode)) == FileType::Directory {
        if depth >= MAX_DEPTH {
            return Err(io::Error::other(format!("deeper than {MAX_DEPTH} dirs: left")));
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let sub = openat(dir, name, flags, Mode::empty())?;
        // Opened, then checked again: a dir swapped for a mount point in between is left.
        if rustix::fs::fstat(&sub)?.st_dev != dev {
            cleared.other_mounts += 1;
            return Ok(());
        }
        clear_dir(sub.as_fd(), dev, depth + 1, shown, cleared)?;
        match unlinkat(dir, name, AtFlags::REMOVEDIR) {
            // A dir holding a mount point stays, empty but for it.
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::BUSY) => return Ok(()),
            other => other?,
        }
    } else {
        unlinkat(dir, name, AtFlags::empty())?;
    }
    cleared.removed += 1;
    Ok(())
}
