//! A copied entry's metadata: owner, mode, extended attributes and times, in that order
//! (see the parent module's "Metadata order").

use super::*;

/// How often an xattr list or value is re-read when it grew between size query and read.
pub(super) const XATTR_RETRIES: usize = 4;

/// How a destination inode is reached for its metadata.
pub(super) enum Node<'a> {
    /// A regular file or directory open for I/O: the f* calls.
    Open(BorrowedFd<'a>),
    /// A symlink, device or fifo `name` in `dir`, with an `O_PATH` fd when procfs is usable.
    Named { dir: BorrowedFd<'a>, name: &'a OsStr, opath: Option<BorrowedFd<'a>> },
}

impl Node<'_> {
    fn chown(&self, stat: &Stat) -> io::Result<()> {
        let uid = Some(fs::Uid::from_raw(stat.st_uid));
        let gid = Some(fs::Gid::from_raw(stat.st_gid));
        match self {
            Node::Open(fd) => fs::fchown(fd, uid, gid),
            Node::Named { dir, name, .. } => fs::chownat(dir, *name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        }
    }

    /// Not for symlinks (their mode is meaningless on Linux and cannot be changed).
    fn chmod(&self, mode: Mode) -> io::Result<()> {
        match self {
            Node::Open(fd) => fs::fchmod(fd, mode),
            // chmod through the magic link reaches the node of the O_PATH fd itself.
            Node::Named { opath: Some(fd), .. } => fs::chmodat(fs::CWD, proc_fd_path(*fd), mode, AtFlags::empty()),
            Node::Named { dir, name, opath: None } => fs::chmodat(dir, *name, mode, AtFlags::empty()),
        }
    }

    fn xattrs(&self) -> Option<Xattrs<'_>> {
        match self {
            Node::Open(fd) => Some(Xattrs::Fd(*fd)),
            Node::Named { opath, .. } => opath.map(Xattrs::proc),
        }
    }

    fn set_times(&self, times: &Timestamps) -> io::Result<()> {
        match self {
            Node::Open(fd) => fs::futimens(fd, times),
            Node::Named { dir, name, .. } => fs::utimensat(dir, *name, times, AtFlags::SYMLINK_NOFOLLOW),
        }
    }
}

/// `/proc/self/fd/<n>` for `fd`.
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Applies owner, mode, xattrs and times of `stat` (in that order: chown clears setuid bits and
/// `security.capability`), the owner and mode only where `needs` says. Every failure is
/// recorded and the next step still done. False when the source has no extended attributes
/// at all (`EOPNOTSUPP`).
pub(super) fn set_metadata(
    node: &Node<'_>,
    source: Option<&Xattrs<'_>>,
    stat: &Stat,
    needs: Needs,
    errs: &mut Errs<'_>,
) -> bool {
    if needs.owner {
        errs.check(TreeOp::Fchown, node.chown(stat));
    }
    if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink && (needs.mode || needs.owner) {
        errs.check(TreeOp::Fchmod, node.chmod(Mode::from_raw_mode(stat.st_mode)));
    }
    let supported = match (source, node.xattrs()) {
        (Some(source), Some(dest)) => copy_xattrs(source, &dest, needs.upper, errs),
        _ => true,
    };
    errs.check(TreeOp::Utimensat, node.set_times(&timestamps(stat)));
    supported
}

/// Access and modification times of `stat`.
pub(super) fn timestamps(stat: &Stat) -> Timestamps {
    let time = |sec: i64, nsec| Timespec { tv_sec: sec, tv_nsec: i64::try_from(nsec).unwrap_or(0) };
    Timestamps {
        last_access: time(stat.st_atime, stat.st_atime_nsec),
        last_modification: time(stat.st_mtime, stat.st_mtime_nsec),
    }
}

/// Where extended attributes are read or written.
pub(super) enum Xattrs<'a> {
    /// An fd open for I/O: `flistxattr`, `fgetxattr`, `fsetxattr`.
    Fd(BorrowedFd<'a>),
    /// `/proc/self/fd/<n>` of an `O_PATH` fd: the following path calls reach the node itself
    /// (`f*xattr` refuse `O_PATH` fds with `EBADF`).
    Proc(String),
}

impl Xattrs<'_> {
    pub(super) fn proc(fd: BorrowedFd<'_>) -> Xattrs<'static> {
        Xattrs::Proc(proc_fd_path(fd))
    }

    fn list(&self) -> io::Result<Vec<u8>> {
        match self {
            Xattrs::Fd(fd) => read_sized(|| fs::flistxattr_query(fd), |b| fs::flistxattr(fd, b)),
            Xattrs::Proc(p) => read_sized(|| fs::listxattr_query(p), |b| fs::listxattr(p, b)),
        }
    }

    fn get(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Xattrs::Fd(fd) => read_sized(|| fs::fgetxattr_query(fd, name), |buf| fs::fgetxattr(fd, name, buf)),
            Xattrs::Proc(p) => read_sized(|| fs::getxattr_query(p, name), |buf| fs::getxattr(p, name, buf)),
        }
    }

    fn set(&self, name: &[u8], value: &[u8]) -> io::Result<()> {
        let flags = fs::XattrFlags::empty();
        match self {
            Xattrs::Fd(fd) => fs::fsetxattr(fd, name, value, flags),
            Xattrs::Proc(path) => fs::setxattr(path, name, value, flags),
        }
    }
}

/// Reads a variable-size xattr list or value: asks its size, then reads; re-asks when it grew
/// in between (`ERANGE`). A size of 0 is returned directly: a zero-length read would be
/// taken by the kernel as another size query.
pub(super) fn read_sized(
    query: impl Fn() -> io::Result<usize>,
    read: impl Fn(&mut [u8]) -> io::Result<usize>,
) -> io::Result<Vec<u8>> {
    for _ in 0..XATTR_RETRIES {
        let size = query()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match read(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(errno) => return Err(errno),
        }
    }
    Err(Errno::RANGE)
}

/// Copies every extended attribute of `source` to `dest`, recording failures one by one; into
/// an overlay's `upper` dir none of overlayfs's own. False when the source filesystem has no
/// extended attributes at all.
pub(super) fn copy_xattrs(source: &Xattrs<'_>, dest: &Xattrs<'_>, upper: bool, errs: &mut Errs<'_>) -> bool {
    let names = match source.list() {
        Ok(names) => names,
        // The source filesystem has no xattrs at all (e.g. some NFS): nothing to copy.
        Err(Errno::OPNOTSUPP) => return false,
        Err(errno) => {
            errs.push(TreeOp::Listxattr, errno);
            return true;
        }
    };
    for name in xattr_names(&names) {
        if upper && overlay_own(name) {
            errs.push(TreeOp::Setxattr, Errno::PERM);
            continue;
        }
        let value = match source.get(name) {
            Ok(value) => value,
            // Removed since the listing: nothing to copy.
            Err(Errno::NODATA) => continue,
            Err(errno) => {
                errs.push(TreeOp::Getxattr, errno);
                continue;
            }
        };
        errs.check(TreeOp::Setxattr, dest.set(name, &value));
    }
    true
}

/// Whether an extended attribute is overlayfs's own (`trusted.overlay.*`, `user.overlay.*`:
/// opaque dirs, redirects), never copied into an upper dir: it would hide or redirect the
/// image's entries below. The mounted overlay refuses them too.
pub(crate) fn overlay_own(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Whether an entry of `stat` is a whiteout in an upper dir (a 0:0 character device): it would
/// delete the image's entry below it. Never copied into one; the mounted overlay refuses to
/// make one too.
pub(crate) fn whiteout(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// The extended attributes of `name` in `dir` (never followed), names and values, as the copy
/// reads those of a node it cannot open: through `/proc/self/fd` of an `O_PATH` fd. None when
/// that is no procfs, or the filesystem has none.
pub(crate) fn read_xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if !proc_fd_usable() {
        return Ok(Vec::new());
    }
    let fd = fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    let node = Xattrs::proc(fd.as_fd());
    let names = match node.list() {
        Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
        names => names?,
    };
    let values = xattr_names(&names).filter_map(|n| match node.get(n) {
        Err(Errno::NODATA) => None, // removed since the listing
        value => Some(value.map(|v| (n.to_vec(), v))),
    });
    values.collect()
}

/// The regular file of `node` (an `O_PATH` fd: nothing was opened for I/O) opened for reading,
/// through `/proc/self/fd`: the same inode, and never a device, whose mere open may act (a
/// watchdog starts, a tape rewinds) or a fifo. `EINVAL` for anything but a regular file.
pub(crate) fn open_regular(node: &OwnedFd) -> io::Result<OwnedFd> {
    if FileType::from_raw_mode(fs::fstat(node)?.st_mode) != FileType::RegularFile {
        return Err(Errno::INVAL);
    }
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    fs::open(proc_fd_path(node.as_fd()), flags, Mode::empty())
}

/// The names of a `listxattr` result (NUL-terminated, concatenated).
pub(super) fn xattr_names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|name| !name.is_empty())
}
