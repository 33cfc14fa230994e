//! A root directory and the only ways to reach something inside it.
//!
//! `stateless` deals with two roots: the one it runs in (`/` at boot) and the target image (the
//! same `/` in on-root mode; the NFS root in initramfs mode; the `--root` dir of `apply`). Every
//! path inside either is reached through an [`ImageRoot`], by one of three rules:
//! - [`ImageRoot::dir`] and [`ImageRoot::create_dir_all`]: directories that get written to or
//!   mounted on (`dev`, `run`, `etc`, `run/stateless/rw/etc`) are reached following no symlink at
//!   all. A symlink there is refused, even one that stays inside the image.
//! - [`ImageRoot::open_file`]: files the image names by path (`/etc/stateless.conf`, `/sbin/init`,
//!   modules) are opened as the image itself sees them: an absolute symlink is resolved against
//!   the root, and nothing leads out of it (`RESOLVE_IN_ROOT`).
//! - Layers are opened beneath their layer root ([`crate::fs::layers`]).
//!
//! mount(2) and overlayfs take paths, not fds: an [`ImageDir`] carries the fd and the host path,
//! checked to lead to the same directory when it was opened.
//!
//! nixos-init passes every function a root prefix so its whole sequence runs against a temp
//! dir; here the root is an open fd, so that holds (`stateless apply --root`, tests/apply.rs)
//! and a symlink in the image cannot lead out of it either.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::fs::tree;

/// An open root directory and its path as this process sees it.
#[derive(Debug)]
pub struct ImageRoot {
    path: PathBuf,
    fd: OwnedFd,
}

/// A directory inside a root, opened following no symlink, with its host path.
#[derive(Debug)]
pub struct ImageDir {
    pub fd: OwnedFd,
    /// `<root>/<rel>`, checked to name `fd`'s directory.
    pub path: PathBuf,
}

/// An absolute (or relative) image path as a path relative to the root: `/etc/x` → `etc/x`.
/// `.` and `..` are dropped: `..` cannot lead out of a root anyway.
pub fn relative(path: impl AsRef<Path>) -> PathBuf {
    path.as_ref().components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

impl ImageRoot {
    /// Opens the root at `path`, which should be absolute and free of symlinks (`/`, or a
    /// canonicalized `--root`): the host paths of what is inside are built from it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(path, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Self { path: path.to_path_buf(), fd })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The host path of `rel` (for messages and for calls that take paths).
    pub fn host_path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(relative(rel))
    }

    /// The directory `rel`, every component a real directory (no symlink followed).
    pub fn dir(&self, rel: impl AsRef<Path>) -> io::Result<ImageDir> {
        let rel = relative(rel);
        let fd = tree::open_dir_nofollow(self.fd(), &rel).map_err(symlink_refused)?;
        self.checked(fd, &rel)
    }

    /// Like [`ImageRoot::dir`], making missing components (mode `mode`, owned by the caller).
    pub fn create_dir_all(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<ImageDir> {
        let rel = relative(rel);
        let mut fd = rustix::fs::openat(self.fd(), ".", tree::DIR_FLAGS, Mode::empty())?;
        for name in rel.iter() {
            match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            fd = rustix::fs::openat(&fd, name, tree::DIR_FLAGS, Mode::empty()).map_err(symlink_refused)?;
        }
        self.checked(fd, &rel)
    }

    /// The path of `fd` (opened at `rel`), after checking that path leads to the same directory:
    /// what mount(2) will resolve is what was opened.
    fn checked(&self, fd: OwnedFd, rel: &Path) -> io::Result<ImageDir> {
        let path = self.path.join(rel);
        let (opened, named) = (rustix::fs::fstat(&fd)?, rustix::fs::stat(&path)?);
        if (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino) {
            return Err(io::Error::other(format!("{} does not lead to the directory opened", path.display())));
        }
        Ok(ImageDir { fd, path })
    }

    /// Opens `path` as the image sees it: absolute symlinks resolve inside the root, nothing
    /// leads out (`RESOLVE_IN_ROOT`).
    pub fn open_file(&self, path: impl AsRef<Path>, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        tree::open_in_root(self.fd(), &relative(path), flags)
    }

    /// Reads a small regular file as the image sees it: `None` when missing, an error when it is
    /// not a regular file (never opened for reading then) or larger than `limit` bytes.
    pub fn read_file(&self, path: impl AsRef<Path>, limit: u64) -> io::Result<Option<Vec<u8>>> {
        read_regular(self.open_file(path, OFlags::PATH), limit)
    }

    /// True when `path` is an executable regular file as the image sees it
    /// (`/sbin/init -> /lib/systemd/systemd` resolves inside the root).
    pub fn executable(&self, path: &str) -> bool {
        self.open_file(path, OFlags::PATH)
            .and_then(|fd| rustix::fs::fstat(&fd))
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_mode & 0o111 != 0)
    }
}

/// Reads a small regular file an admin named on this machine (`--report`, `--cmdline-file`;
/// symlinks followed, as any command follows them) as [`ImageRoot::read_file`] does: a device
/// or fifo is never opened, nothing larger than `limit` read.
pub fn read_named(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    read_regular(rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()), limit)
}

/// Reads a small regular file `path` below `dir` as [`ImageRoot::read_file`] does, but
/// [`tree::open_beneath`]: a symlink inside `dir` is followed, one leading out of it (absolute,
/// or `..` above `dir`) is an error (`EXDEV`).
pub fn read_beneath(dir: BorrowedFd<'_>, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    read_regular(tree::open_beneath(dir, path, OFlags::PATH), limit)
}

/// The content of the file `node` (an `O_PATH` fd): `None` when it is missing, an error when it
/// is not a regular file or larger than `limit` bytes. Only a regular file is opened for
/// reading: the mere open of a device may act (a watchdog starts), that of a fifo may block.
fn read_regular(node: rustix::io::Result<OwnedFd>, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let node = match node {
        Ok(node) => node,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(rustix::fs::fstat(&node)?.st_mode) != FileType::RegularFile {
        return Err(io::Error::other("not a regular file: left unopened"));
    }
    let mut data = Vec::new();
    std::fs::File::from(tree::open_regular(&node)?).take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(io::Error::other(format!("larger than {limit} bytes")));
    }
    Ok(Some(data))
}

/// ELOOP/ENOTDIR from a no-follow walk mean a symlink (or a file) stood where a dir must be.
fn symlink_refused(errno: Errno) -> io::Error {
    match errno {
        Errno::LOOP | Errno::NOTDIR => io::Error::new(
            io::ErrorKind::InvalidInput,
            "a symlink or non-directory on the way: refused, dirs to write or mount on are never reached through a symlink",
        ),
        e => e.into(),
    }
}

/// A name for a file being written beside its final name, unique in this process.
pub fn temp_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(".stateless-new-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Makes a new entry under a fresh temp name with `create` (which must fail with `EEXIST` when
/// the name is taken), to be renamed over its final name once complete: what `create` made and
/// the temp name. Retries when a stray temp name exists.
pub fn create_beside<T>(create: impl Fn(&OsStr) -> rustix::io::Result<T>) -> rustix::io::Result<(T, String)> {
    loop {
        let temp = temp_name();
        match create(OsStr::new(temp.as_str())) {
            Err(Errno::EXIST) => continue,
            other => return other.map(|made| (made, temp)),
        }
    }
}

/// Replaces `name` in `dir` with a file of `mode` holding `content`, all or nothing: written
/// beside it, then renamed over it. On any failure (a full tmpfs) the old file stays as it was.
/// An existing symlink at `name` is replaced, never followed.
pub fn replace_file(dir: BorrowedFd<'_>, name: &OsStr, content: &[u8], mode: u32) -> io::Result<()> {
    replace_with(dir, name, mode, |fd| tree::write_all(fd.as_fd(), content).map_err(io::Error::from))
}

/// [`replace_file`] with the content written by `write` into the new file's fd (a file of any
/// size, a child process's output). Whatever fails, `write` included, nothing is left beside
/// `name` and `name` is left as it was. The file is made unnamed (`O_TMPFILE`) and named beside
/// `name` only once complete, so that even a run killed while writing leaves nothing; where the
/// filesystem cannot (NFS) or /proc is not there to name it by, it has a temp name from the
/// start.
pub fn replace_with(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
    write: impl FnOnce(&OwnedFd) -> io::Result<()>,
) -> io::Result<()> {
    write_beside(dir, name, mode, true, write)
}

/// [`replace_with`] for a file that must be new: named `name` only once complete, by a link
/// that fails (`EEXIST`, nothing left beside) when `name` exists, which is never replaced.
pub fn create_with(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
    write: impl FnOnce(&OwnedFd) -> io::Result<()>,
) -> io::Result<()> {
    write_beside(dir, name, mode, false, write)
}

/// [`replace_with`] (`replace`), or [`create_with`].
fn write_beside(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
    replace: bool,
    write: impl FnOnce(&OwnedFd) -> io::Result<()>,
) -> io::Result<()> {
    let complete = |fd: &OwnedFd| rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(io::Error::from);
    let unnamed = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    let (fd, temp) = match rustix::fs::openat(dir, ".", unnamed, Mode::RUSR | Mode::WUSR) {
        Ok(fd) if tree::proc_fd_usable() => {
            write(&fd).and_then(|()| complete(&fd))?;
            let path = tree::proc_fd_path(fd.as_fd());
            let named =
                |at: &OsStr| rustix::fs::linkat(rustix::fs::CWD, path.as_str(), dir, at, AtFlags::SYMLINK_FOLLOW);
            if !replace {
                return named(name).map_err(io::Error::from);
            }
            let ((), temp) = create_beside(named)?;
            (fd, temp)
        }
        _ => {
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
            let (fd, temp) = create_beside(|temp| rustix::fs::openat(dir, temp, flags, Mode::RUSR | Mode::WUSR))?;
            if let Err(e) = write(&fd).and_then(|()| complete(&fd)) {
                let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
                return Err(e);
            }
            (fd, temp)
        }
    };
    drop(fd);
    // A link, not a rename, where `name` must be new: it fails when `name` exists (NFS has no
    // RENAME_NOREPLACE); the temp name goes either way.
    let named = if replace {
        rustix::fs::renameat(dir, temp.as_str(), dir, name)
    } else {
        rustix::fs::linkat(dir, temp.as_str(), dir, name, AtFlags::empty())
    };
    if named.is_err() || !replace {
        let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
    }
    named.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fs::Tmp;

    fn tmp(tag: &str) -> Tmp {
        Tmp::new(&format!("root-{tag}"))
    }

    #[test]
    fn dirs_to_mount_on_are_never_reached_through_a_symlink() {
        let t = tmp("dir");
        let outside = t.0.join("outside");
        let image = t.0.join("image");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::create_dir_all(image.join("real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, image.join("run")).unwrap();
        std::os::unix::fs::symlink("real", image.join("inside")).unwrap();
        let root = ImageRoot::open(&image).unwrap();
        assert_eq!(root.dir("/etc").unwrap().path, image.join("etc"));
        assert!(root.dir("run").is_err(), "a symlink out of the image");
        assert!(root.dir("inside").is_err(), "even one that stays inside");
        assert!(root.create_dir_all("run/stateless/rw", 0o755).is_err());
        assert!(!outside.join("stateless").exists(), "nothing was made outside");
        let made = root.create_dir_all("real/a/b", 0o700).unwrap();
        assert_eq!(made.path, image.join("real/a/b"));
        assert!(image.join("real/a/b").is_dir());
    }

    #[test]
    fn files_resolve_as_the_image_sees_them() {
        let t = tmp("open");
        let image = t.0.join("image");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::create_dir_all(image.join("lib")).unwrap();
        std::fs::write(t.0.join("secret"), "host").unwrap();
        std::fs::write(image.join("lib/conf"), "image").unwrap();
        std::os::unix::fs::symlink("/lib/conf", image.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", image.join("etc/up")).unwrap();
        let root = ImageRoot::open(&image).unwrap();
        assert_eq!(root.read_file("/etc/abs", 64).unwrap().unwrap(), b"image");
        // `..` stops at the image root: ../../secret is /secret of the image, which is missing.
        assert!(root.read_file("/etc/up", 64).unwrap().is_none());
        assert!(root.read_file("/lib/conf", 3).is_err(), "over the limit");
        assert!(root.read_file("/lib", 64).is_err(), "not a regular file");
    }

    #[test]
    fn only_a_regular_file_is_opened_for_reading() {
        use rustix::fs::inotify::{self, CreateFlags, Reader, WatchFlags};
        use std::mem::MaybeUninit;
        let t = tmp("fifo");
        let image = t.0.join("image");
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::fs::write(image.join("etc/file"), "x").unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, image.join("etc/fifo"), FileType::Fifo, Mode::from(0o644), 0).unwrap();
        // inotify sees every open for I/O (not an O_PATH one): the fifo's watch must stay silent.
        let watch = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
        let fifo = inotify::add_watch(&watch, image.join("etc/fifo"), WatchFlags::OPEN).unwrap();
        let file = inotify::add_watch(&watch, image.join("etc/file"), WatchFlags::OPEN).unwrap();
        let root = ImageRoot::open(&image).unwrap();
        let refused = "not a regular file: left unopened";
        assert_eq!(root.read_file("/etc/fifo", 64).unwrap_err().to_string(), refused);
        let etc = root.dir("etc").unwrap();
        assert_eq!(read_beneath(etc.fd.as_fd(), Path::new("fifo"), 64).unwrap_err().to_string(), refused);
        let dev = rustix::fs::open("/dev", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        assert_eq!(read_beneath(dev.as_fd(), Path::new("null"), 64).unwrap_err().to_string(), refused);
        assert_eq!(root.read_file("/etc/file", 64).unwrap().unwrap(), b"x");
        let mut buf = [MaybeUninit::uninit(); 4096];
        let mut events = Reader::new(&watch, &mut buf);
        let mut opened = Vec::new();
        while let Ok(event) = events.next() {
            opened.push(event.wd());
        }
        assert_eq!(opened, [file], "the regular file's open is seen, the fifo ({fifo}) was never opened");
    }

    #[test]
    fn replace_file_is_all_or_nothing_and_replaces_symlinks() {
        let t = tmp("replace");
        std::fs::write(t.0.join("outside"), "keep").unwrap();
        std::os::unix::fs::symlink(t.0.join("outside"), t.0.join("link")).unwrap();
        let dir = rustix::fs::open(&t.0, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        replace_file(dir.as_fd(), OsStr::new("link"), b"new\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(t.0.join("link")).unwrap(), "new\n");
        assert_eq!(std::fs::read_to_string(t.0.join("outside")).unwrap(), "keep");
        std::fs::create_dir(t.0.join("adir")).unwrap();
        assert!(replace_file(dir.as_fd(), OsStr::new("adir"), b"x", 0o644).is_err());
        let left: Vec<_> = std::fs::read_dir(&t.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "no temp file left behind: {left:?}");
    }

    #[test]
    fn create_with_makes_a_new_file_and_never_replaces_one() {
        let t = tmp("create");
        std::fs::write(t.0.join("taken"), "keep").unwrap();
        std::os::unix::fs::symlink("nowhere", t.0.join("dangling")).unwrap();
        let dir = rustix::fs::open(&t.0, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        let write = |fd: &OwnedFd| tree::write_all(fd.as_fd(), b"new\n").map_err(io::Error::from);
        create_with(dir.as_fd(), OsStr::new("fresh"), 0o644, write).unwrap();
        assert_eq!(std::fs::read_to_string(t.0.join("fresh")).unwrap(), "new\n");
        for name in ["taken", "dangling"] {
            let e = create_with(dir.as_fd(), OsStr::new(name), 0o644, write).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{name}");
        }
        assert_eq!(std::fs::read_to_string(t.0.join("taken")).unwrap(), "keep");
        assert_eq!(std::fs::read_link(t.0.join("dangling")).unwrap(), Path::new("nowhere"));
        let left: Vec<_> = std::fs::read_dir(&t.0).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 3, "no temp file left behind: {left:?}");
    }
}
