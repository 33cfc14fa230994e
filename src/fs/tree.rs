//! Safe copying and listing of configuration layer trees.
//!
//! A layer is a directory tree that mirrors the root (`/diskless/base/etc/fstab` → `/etc/fstab`).
//! Layers live on the shared NFS image and are untrusted input: they may hold symlinks pointing
//! anywhere, odd names (bytes, not UTF-8), deep nesting, device nodes, fifos and sockets.
//! The destination is the tmpfs/overlay `/etc` and `/var` of this client, written as root.
//!
//! # How the tree is walked
//! - Only directory fds: every entry is reached relative to its parent's fd, never by a full path.
//!   Every source entry's kind is first taken from the directory listing (`d_type`), or where the
//!   filesystem gives none from `fstatat` with `AT_SYMLINK_NOFOLLOW`; then it is opened with
//!   `O_NOFOLLOW`: regular files `O_RDONLY|O_NOCTTY|O_NONBLOCK`, directories `O_DIRECTORY`,
//!   everything else `O_PATH` (a fifo or a device is never opened for I/O). After the open, `fstat`
//!   checks the kind is still the one seen; an entry that changed kind is skipped
//!   (error `changed`, `ESTALE`).
//! - No symlink is ever followed, in the source or in the destination. A symlink is copied as a
//!   symlink with the same target bytes, wherever it points (the target is never read).
//! - Entries are visited sorted by name (bytes), `.` and `..` skipped. The root of the walk itself
//!   is neither listed nor copied (its metadata is left alone).
//! - Depth limit: an entry path has at most [`MAX_DEPTH`] components. A directory that would hold
//!   deeper entries (its own path already has `MAX_DEPTH` components) is neither listed, created
//!   nor entered: error `depth`, `ELOOP`.
//! - The filter sees each entry's path relative to the root and its source kind:
//!   [`Verdict::Refuse`] puts it in `refused` (a directory is not entered);
//!   [`Verdict::Descend`] enters a directory without copying the directory itself (its destination
//!   counterpart must already be a real directory, else error `descend`); `Descend` on a
//!   non-directory refuses it (there is nothing to walk into and the entry itself is not wanted).
//!   Sockets are always refused (they cannot be copied meaningfully), whatever the verdict.
//! - Errors never abort: each is recorded as a [`TreeError`] and the walk goes on with the next entry.
//!
//! # How the destination is written ("the source wins")
//! - Destination directories are opened `O_DIRECTORY|O_NOFOLLOW` relative to their parent.
//! - Source directory, destination non-directory (file, symlink, ...): the non-directory is
//!   unlinked and a directory is made. Missing directories are made with mode 0700 until their real
//!   mode is applied, after their children.
//! - Source non-directory, destination directory: refused with error `replace-dir`, `EISDIR`;
//!   a directory tree is never deleted.
//! - Source non-directory, destination non-directory: unlinked and created anew (`O_CREAT|O_EXCL`,
//!   `symlinkat`, `mknodat`), so nothing is ever written through an existing destination symlink.
//!   Regular files are created with mode 0600 until their real mode is applied.
//! - Existing destination directories are merged: entries the source does not have are kept, and
//!   extended attributes the source does not have are kept.
//! - A regular file whose data copy fails is removed again (no half-written config file is left).
//!   One that needs more than the destination filesystem's whole size (its size, or its data
//!   when the source can tell its holes) is refused unread: error `too-big`, `EFBIG`.
//! - Hard links in a layer are copied as independent files.
//!
//! # Metadata order
//! `chown` clears the setuid/setgid bits and `security.capability`, so per entry the order is:
//! create → data → owner (numeric uid/gid) → mode (full 07777, not for symlinks) → extended
//! attributes → access and modification times. Directories get their metadata after their children
//! are written (post-order), so their mtime sticks.
//!
//! Regular files and directories are handled through their open fds (`fchown`, `fchmod`,
//! `flistxattr`/`fgetxattr`/`fsetxattr`, `futimens`). Symlinks, devices and fifos cannot be opened
//! for I/O safely, so:
//! - owner and times are set by name in the parent fd with `AT_SYMLINK_NOFOLLOW`;
//! - their extended attributes are read and written through `/proc/self/fd/<n>`, where `<n>` is an
//!   `O_PATH|O_NOFOLLOW` fd of the node: the path-based (following) xattr calls resolve that magic
//!   link to the node itself, never to what a symlink points to. This is only done when
//!   `/proc/self/fd` is really a procfs (checked with `statfs`); otherwise their xattrs are skipped;
//! - the mode of devices and fifos is set through the same `/proc/self/fd/<n>` path, or, without
//!   procfs, by name in the parent fd (`fchmodat` follows a final symlink, but the node was created
//!   by `mknodat` an instant before in a directory only this process writes to at boot).
//!
//! Extended attribute failures (`EOPNOTSUPP`, `EPERM` for `trusted.`/`security.` names, ...) are
//! recorded one by one and the entry is still finished. A source that does not support xattrs at
//! all (`listxattr` gives `EOPNOTSUPP`) simply has none.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub use crate::model::entry::{Entry, Kind, TreeError};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags, SeekFrom, Stat, Timespec, Timestamps};
use rustix::io::{self, Errno};
use serde::Serialize;

/// Maximum number of path components of an entry below the walked root.
pub const MAX_DEPTH: usize = 64;

/// How often `openat2` is retried when it reports `EAGAIN`.
const OPENAT2_RETRIES: usize = 8;

/// How often an xattr list or value is re-read when it grew between size query and read.
const XATTR_RETRIES: usize = 4;

/// Flags to open a directory for reading without following a symlink.
pub(crate) const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Open `path` (relative, no leading '/') beneath `dir` without ever leaving it.
///
/// Uses `openat2` with `RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS`: symlinks inside `dir` are followed,
/// absolute ones or ones escaping `dir` fail with `EXDEV`. On kernels without `openat2`
/// (`ENOSYS`, before 5.6) it falls back to a component-wise `openat` walk where every component is
/// opened with `O_NOFOLLOW` and `..` or an absolute path fails with `EXDEV` (stricter: no symlink
/// is followed at all). `O_CLOEXEC` is always added; with `O_CREAT` a new file gets mode 0600.
///
/// # Errors
/// The errno of the failed open: `EXDEV` for a path leaving `dir`, `ELOOP` for a symlink in the
/// fallback walk, `ENOENT`, `EACCES`, ...
pub fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    openat2_confined(dir, path, flags, ResolveFlags::BENEATH)
}

/// Open `path` as the image under `root` sees it: absolute symlinks are resolved against `root`
/// (`/sbin/init -> /lib/systemd/systemd`), and nothing leads out of it (`RESOLVE_IN_ROOT`).
/// Without `openat2` (kernel < 5.6) it falls back to [`open_beneath`]'s stricter walk.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    openat2_confined(root, path, flags, ResolveFlags::IN_ROOT)
}

/// `openat2` with `confine` (`BENEATH` or `IN_ROOT`) and no magic links, `O_CLOEXEC` added;
/// the component-wise no-symlink walk when the kernel has no `openat2`.
fn openat2_confined(dir: BorrowedFd<'_>, path: &Path, flags: OFlags, confine: ResolveFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    let resolve = confine | ResolveFlags::NO_MAGICLINKS;
    for _ in 0..OPENAT2_RETRIES {
        match fs::openat2(dir, path, flags, create_mode(flags), resolve) {
            // openat2 gives EAGAIN when a concurrent rename may have let ".." escape; just retry.
            Err(Errno::AGAIN) => continue,
            Err(Errno::NOSYS) => return open_components(dir, path, flags),
            other => return other,
        }
    }
    Err(Errno::AGAIN)
}

/// Open a directory relative to `dir` following no symlink at all.
///
/// Walks `path` component by component, each opened `O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`.
/// A symlink anywhere gives `ELOOP` (or `ENOTDIR`), `..` or an absolute path gives `EXDEV`,
/// an empty path (or `.`) reopens `dir` itself.
///
/// # Errors
/// The errno of the first component that failed to open.
pub fn open_dir_nofollow(dir: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    open_components(dir, path, DIR_FLAGS)
}

/// The parent dir of `path` below `dir`, reached following no symlink, and the last name of
/// `path` in it: what the `*at` calls on one entry take.
///
/// # Errors
/// `EINVAL` for a path without a last name (empty, `..`); else as [`open_dir_nofollow`].
pub fn open_parent<'p>(dir: BorrowedFd<'_>, path: &'p Path) -> io::Result<(OwnedFd, &'p OsStr)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::INVAL);
    };
    Ok((open_dir_nofollow(dir, parent)?, name))
}

/// `lstat` of `path` below `dir`, its parents reached following no symlink.
///
/// # Errors
/// As [`open_parent`], or the `fstatat` error.
pub fn lstat_beneath(dir: BorrowedFd<'_>, path: &Path) -> io::Result<Stat> {
    let (parent, name) = open_parent(dir, path)?;
    fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// The mode `openat`/`openat2` needs: 0600 when a file may be created, else none
/// (`openat2` rejects a mode without `O_CREAT`/`O_TMPFILE`).
fn create_mode(flags: OFlags) -> Mode {
    // O_TMPFILE includes the O_DIRECTORY bit, so test it whole: `intersects` would match O_DIRECTORY.
    if flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE) {
        Mode::RUSR | Mode::WUSR
    } else {
        Mode::empty()
    }
}

/// Splits a relative path into its names, the check that keeps the component-wise walk inside
/// its tree: `.` is dropped, `..` and a root give `EXDEV`. Public for the fuzz targets.
///
/// # Errors
/// `EXDEV` when `path` has a `..` component or is absolute.
pub fn split_components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return Err(Errno::XDEV),
        }
    }
    Ok(names)
}

/// Opens `path` below `dir` one component at a time, each with `O_NOFOLLOW`.
fn open_components(dir: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let names = split_components(path)?;
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Some((last, parents)) = names.split_last() else {
        return fs::openat(dir, ".", flags, Mode::empty());
    };
    let mut current: Option<OwnedFd> = None;
    for name in parents {
        let base = current.as_ref().map_or(dir, |fd| fd.as_fd());
        current = Some(fs::openat(base, *name, DIR_FLAGS, Mode::empty())?);
    }
    let base = current.as_ref().map_or(dir, |fd| fd.as_fd());
    fs::openat(base, *last, flags, create_mode(flags))
}

/// What to do with an entry, decided by the caller from its path relative to the tree root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Copy the entry (a directory: with everything below it, subject to the filter).
    Copy,
    /// Ancestor of a copied area: walk into it, create nothing for the directory itself.
    Descend,
    /// Leave the entry (and, for a directory, everything below it) alone.
    Refuse,
}

/// The result of [`walk`]: what a copy would write and refuse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Walk {
    /// Entries a copy would write, in copy order (a directory before its children).
    pub copy: Vec<Entry>,
    /// Entries refused by the filter, sockets, and `Descend`ed non-directories.
    pub refused: Vec<Entry>,
    /// Entries that could not be examined.
    pub errors: Vec<TreeError>,
}

/// The result of [`copy_tree`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// Every created or replaced entry, including directories created or whose metadata was set,
    /// in copy order (a directory before its children).
    pub written: Vec<Entry>,
    /// Entries refused by the filter, sockets, and `Descend`ed non-directories.
    pub refused: Vec<Entry>,
    /// Every failed operation; an entry may have several (e.g. one per xattr).
    pub errors: Vec<TreeError>,
}

/// What the walker does with one classified entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Refuse,
    /// Copy a non-directory.
    Leaf,
    /// Copy a directory and walk into it.
    EnterCopy,
    /// Walk into a directory without copying it.
    EnterDescend,
    /// A directory too deep to be entered.
    TooDeep,
}

/// Decides the action for an entry of `kind` whose path has `depth` components.
fn action(kind: Kind, verdict: Verdict, depth: usize) -> Action {
    match (verdict, kind) {
        (Verdict::Refuse, _) | (_, Kind::Socket) => Action::Refuse,
        (_, Kind::Dir) if depth >= MAX_DEPTH => Action::TooDeep,
        (Verdict::Descend, Kind::Dir) => Action::EnterDescend,
        (Verdict::Descend, _) => Action::Refuse,
        (Verdict::Copy, Kind::Dir) => Action::EnterCopy,
        (Verdict::Copy, _) => Action::Leaf,
    }
}

/// Records the errors of one entry.
struct Errs<'a> {
    path: &'a Path,
    list: &'a mut Vec<TreeError>,
}

impl<'a> Errs<'a> {
    fn new(path: &'a Path, list: &'a mut Vec<TreeError>) -> Self {
        Errs { path, list }
    }

    fn push(&mut self, op: &'static str, errno: Errno) {
        self.list.push(TreeError::new(self.path, op, errno));
    }

    /// Records the error of `result` under `op`; the value on success.
    fn check<T>(&mut self, op: &'static str, result: io::Result<T>) -> Option<T> {
        result.map_err(|errno| self.push(op, errno)).ok()
    }
}

/// Sorted names of the directory `dir` with their kind when the directory listing says it
/// (`d_type`; `None` where the filesystem does not), without `.` and `..`. A read error is
/// recorded and ends the listing (the names read so far are kept).
fn read_names(dir: BorrowedFd<'_>, errs: &mut Errs<'_>) -> Vec<(OsString, Option<Kind>)> {
    // A duplicate read from the start: no second open (on NFS each open of a directory costs a
    // GETATTR). An O_PATH fd cannot be read: that one is opened again.
    let reader = match fs::fcntl_getfl(dir) {
        Ok(flags) if !flags.contains(OFlags::PATH) => {
            io::fcntl_dupfd_cloexec(dir, 0).and_then(fs::Dir::new).map(|mut d| {
                d.rewind();
                d
            })
        }
        _ => fs::openat(dir, ".", DIR_FLAGS, Mode::empty()).and_then(fs::Dir::new),
    };
    let Some(reader) = errs.check("opendir", reader) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for item in reader {
        match item {
            Ok(entry) => {
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push((OsStr::from_bytes(name).to_owned(), Kind::of_type(entry.file_type())));
                }
            }
            Err(errno) => {
                errs.push("readdir", errno);
                break;
            }
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    names
}

/// The kind of `name` in `dir` (from the listing, else `lstat`), and what the filter says of
/// it; `None` (error recorded) if it cannot be examined.
fn classify(
    dir: BorrowedFd<'_>,
    (name, listed): &(OsString, Option<Kind>),
    path: PathBuf,
    filter: &dyn Fn(&Path, Kind) -> Verdict,
    errors: &mut Vec<TreeError>,
) -> Option<(Entry, Verdict)> {
    let mut errs = Errs::new(&path, errors);
    let kind = match listed {
        Some(kind) => *kind,
        None => {
            let stat = errs.check("stat", fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW))?;
            let Some(kind) = Kind::of_mode(stat.st_mode) else {
                errs.push("type", Errno::INVAL);
                return None;
            };
            kind
        }
    };
    let verdict = filter(&path, kind);
    Some((Entry { path, kind }, verdict))
}

/// Lists a tree without writing anything (for the dry run).
///
/// Every entry is classified with `filter(path, kind)`: `copy` gets what [`copy_tree`] would write
/// (directories before their children), `refused` what it would refuse. A refused directory is
/// listed once and not entered; a `Descend`ed directory is entered but not itself listed.
/// Directories are opened (to be listed), files never are.
pub fn walk(src: BorrowedFd<'_>, filter: &dyn Fn(&Path, Kind) -> Verdict) -> Walk {
    walk_visiting(src, filter, &mut |_, _, _| {})
}

/// [`walk`], calling `visit(parent dir, name, entry)` for every entry a copy would write, as it
/// is listed: the parent's fd lets the caller look at the entry itself (`stateless check`)
/// without resolving its path again.
pub fn walk_visiting(
    src: BorrowedFd<'_>,
    filter: &dyn Fn(&Path, Kind) -> Verdict,
    visit: &mut dyn FnMut(BorrowedFd<'_>, &OsStr, &Entry),
) -> Walk {
    let mut out = Walk::default();
    walk_dir(src, Path::new(""), 0, &mut Walker { filter, visit, out: &mut out });
    out
}

/// What [`walk_dir`] carries down the tree.
struct Walker<'w> {
    filter: &'w dyn Fn(&Path, Kind) -> Verdict,
    visit: &'w mut dyn FnMut(BorrowedFd<'_>, &OsStr, &Entry),
    out: &'w mut Walk,
}

fn walk_dir(src: BorrowedFd<'_>, rel: &Path, depth: usize, w: &mut Walker<'_>) {
    for listed in read_names(src, &mut Errs::new(rel, &mut w.out.errors)) {
        let name = &listed.0;
        let Some((entry, verdict)) = classify(src, &listed, rel.join(name), w.filter, &mut w.out.errors) else {
            continue;
        };
        let step = action(entry.kind, verdict, depth + 1);
        if matches!(step, Action::Leaf | Action::EnterCopy) {
            (w.visit)(src, name, &entry);
        }
        match step {
            Action::Refuse => w.out.refused.push(entry),
            Action::Leaf => w.out.copy.push(entry),
            Action::TooDeep => w.out.errors.push(TreeError::new(&entry.path, "depth", Errno::LOOP)),
            Action::EnterCopy | Action::EnterDescend => {
                let opened = fs::openat(src, name, DIR_FLAGS, Mode::empty());
                let Some(dir) = Errs::new(&entry.path, &mut w.out.errors).check("open", opened) else {
                    continue;
                };
                let path = entry.path.clone();
                if step == Action::EnterCopy {
                    w.out.copy.push(entry);
                }
                walk_dir(dir.as_fd(), &path, depth + 1, w);
            }
        }
    }
}

/// Copies the tree under `src` onto the tree under `dst` (both directory fds), merging: what the
/// source has wins. See the module documentation for the exact semantics. Never panics and never
/// stops early: every failure is in [`Copied::errors`].
pub fn copy_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, filter: &dyn Fn(&Path, Kind) -> Verdict) -> Copied {
    copy_into(src, &[Target { path: Path::new(""), dst, lower: None }], filter)
}

/// Where one part of a tree is copied to: the entries below `path` (relative to the source root;
/// empty for the whole tree) go into `dst`. When `dst` is the upper dir of an overlay not mounted
/// yet, `lower` is the dir it will lie over: there a non-directory never takes the place of one
/// of its directories (error `replace-dir`, as when writing through the overlay).
pub struct Target<'a> {
    pub path: &'a Path,
    pub dst: BorrowedFd<'a>,
    pub lower: Option<BorrowedFd<'a>>,
}

/// Copies the parts of the tree under `src` that `targets` name into their destinations, as
/// [`copy_tree`] does; a directory that leads to a target (`var` for `var/log`) is walked without
/// writing anything for it.
pub fn copy_into(src: BorrowedFd<'_>, targets: &[Target<'_>], filter: &dyn Fn(&Path, Kind) -> Verdict) -> Copied {
    let umask = fs::Mode::from_raw_mode(0o022);
    let old = rustix::process::umask(umask);
    rustix::process::umask(old);
    let creator = Creator {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        umask: old.bits(),
    };
    let mut copier =
        Copier { filter, targets, proc_fd: proc_fd_usable(), creator, xattrs: true, out: Copied::default() };
    let root = copier.target_place(Path::new(""));
    copier.copy_dir(src, root.as_ref(), Path::new(""), 0);
    copier.out
}

/// A destination directory being filled: its fd, whether it passes its group on to new entries
/// (setgid), and when it is an upper dir, the names of the directories of the dir below it.
struct Place {
    dst: OwnedFd,
    setgid: bool,
    /// Whether `dst` lies in an overlay's upper dir.
    upper: bool,
    /// The whole size of the target's filesystem in bytes (0: unknown), read once per target:
    /// nothing is mounted below a target's destination, a fresh tmpfs or upper dir.
    capacity: u64,
    lower: Option<Lower>,
}

/// The counterpart of an upper dir in the dir the overlay will lie over. Names are looked up
/// in it one by one (a layer writes a few files into a large /etc on NFS).
struct Lower {
    fd: OwnedFd,
}

impl Lower {
    fn has_dir(&self, name: &OsStr) -> bool {
        dir_below(self.fd.as_fd(), name)
    }

    /// The lower counterpart of subdirectory `name`, when it has one.
    fn child(&self, name: &OsStr) -> Option<Lower> {
        fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()).ok().map(|fd| Lower { fd })
    }
}

/// Whether `name` in `dir` is a real directory (not followed): a file from a layer never takes
/// the place of one of the image's.
pub(crate) fn dir_below(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Whether `/proc/self/fd` is a procfs, so its magic links reach the nodes of our `O_PATH` fds.
pub(crate) fn proc_fd_usable() -> bool {
    fs::statfs("/proc/self/fd").is_ok_and(|st| st.f_type == fs::PROC_SUPER_MAGIC)
}

/// One entry name within a source directory and its destination counterpart.
#[derive(Clone, Copy)]
struct At<'a> {
    src: BorrowedFd<'a>,
    dst: BorrowedFd<'a>,
    name: &'a OsStr,
    /// Whether `dst` is a setgid directory (new entries get its group).
    setgid: bool,
    /// Whether `dst` lies in an overlay's upper dir, not mounted yet.
    upper: bool,
    /// The whole size of the destination filesystem in bytes (0: unknown).
    capacity: u64,
}

/// Who creates files in this process, and with which umask: a file created with its final mode
/// and owner needs no chmod or chown.
#[derive(Clone, Copy)]
struct Creator {
    uid: u32,
    gid: u32,
    umask: u32,
}

impl Creator {
    /// What a new file of `stat` in a directory (`setgid`: the directory passes on its group)
    /// still needs after `openat(O_CREAT, mode & 0777)`.
    fn needs(self, stat: &Stat, at: &At<'_>) -> Needs {
        let owner = stat.st_uid != self.uid || stat.st_gid != self.gid || at.setgid;
        let mode = stat.st_mode & 0o7000 != 0 || stat.st_mode & 0o777 & self.umask != 0;
        Needs { owner, mode, upper: at.upper }
    }
}

/// The metadata calls an entry needs beyond its extended attributes and times.
#[derive(Clone, Copy)]
struct Needs {
    owner: bool,
    mode: bool,
    /// The entry lies in an overlay's upper dir: overlayfs's own attributes (`trusted.overlay.*`,
    /// `user.overlay.*`: opaque dirs, redirects) are refused there, as the mounted overlay
    /// refuses them.
    upper: bool,
}

impl Needs {
    /// Owner and mode set whatever creation did.
    fn all(at: &At<'_>) -> Needs {
        Needs { owner: true, mode: true, upper: at.upper }
    }
}

struct Copier<'f> {
    filter: &'f dyn Fn(&Path, Kind) -> Verdict,
    targets: &'f [Target<'f>],
    /// Whether `/proc/self/fd/<n>` may be used for nodes that cannot be opened for I/O.
    proc_fd: bool,
    creator: Creator,
    /// False once the source said it has no extended attributes at all (`EOPNOTSUPP`, NFSv3):
    /// no more listings are asked for.
    xattrs: bool,
    out: Copied,
}

impl Copier<'_> {
    /// The destination of the target at `path`, if one is there.
    fn target_place(&mut self, path: &Path) -> Option<Place> {
        let target = self.targets.iter().find(|t| t.path == path)?;
        let mut errs = Errs::new(path, &mut self.out.errors);
        // Duplicates, not new opens: opening a directory on NFS costs a GETATTR.
        let dst = errs.check("dup", io::fcntl_dupfd_cloexec(target.dst, 0))?;
        let setgid = passes_group(&dst);
        let lower = match target.lower {
            Some(lower) => Some(Lower { fd: errs.check("dup", io::fcntl_dupfd_cloexec(lower, 0))? }),
            None => None,
        };
        let capacity = fs::fstatvfs(&dst).map_or(0, |fs| fs.f_blocks.saturating_mul(fs.f_frsize));
        Some(Place { dst, setgid, upper: lower.is_some(), capacity, lower })
    }

    /// Copies the entries of `src` into `place` (none: a directory on the way to a target).
    fn copy_dir(&mut self, src: BorrowedFd<'_>, place: Option<&Place>, rel: &Path, depth: usize) {
        for listed in read_names(src, &mut Errs::new(rel, &mut self.out.errors)) {
            let path = rel.join(&listed.0);
            let classified = classify(src, &listed, path, self.filter, &mut self.out.errors);
            let Some((entry, verdict)) = classified else {
                continue;
            };
            let step = action(entry.kind, verdict, depth + 1);
            if step == Action::EnterDescend && self.targets.iter().any(|t| t.path == entry.path) {
                self.enter_target(src, &listed.0, &entry.path, depth + 1);
                continue;
            }
            let Some(place) = place else {
                if step == Action::EnterDescend {
                    self.enter_on_the_way(src, &listed.0, &entry.path, depth + 1);
                } else {
                    self.out.refused.push(entry);
                }
                continue;
            };
            let (setgid, upper, capacity) = (place.setgid, place.upper, place.capacity);
            let at = At { src, dst: place.dst.as_fd(), name: &listed.0, setgid, upper, capacity };
            let lower = place.lower.as_ref();
            match step {
                Action::Refuse => self.out.refused.push(entry),
                Action::TooDeep => self.error(&entry.path, "depth", Errno::LOOP),
                // A file in the upper dir would hide the image's directory below it.
                Action::Leaf if lower.is_some_and(|l| l.has_dir(at.name)) => {
                    self.error(&entry.path, "replace-dir", Errno::ISDIR);
                }
                Action::Leaf => self.copy_leaf(at, entry),
                Action::EnterCopy => self.copy_subdir(at, entry, lower.and_then(|l| l.child(at.name)), depth + 1),
                Action::EnterDescend => self.descend(at, &entry.path, lower.and_then(|l| l.child(at.name)), depth + 1),
            }
        }
    }

    /// Walks into `name`, a target's source dir.
    fn enter_target(&mut self, src: BorrowedFd<'_>, name: &OsStr, path: &Path, depth: usize) {
        let mut errs = Errs::new(path, &mut self.out.errors);
        let opened = fs::openat(src, name, DIR_FLAGS, Mode::empty());
        let Some(dir) = errs.check("open", opened) else {
            return;
        };
        let place = self.target_place(path);
        if place.is_some() {
            self.copy_dir(dir.as_fd(), place.as_ref(), path, depth);
        }
    }

    /// Walks into `name`, a dir that leads to a target, writing nothing for it.
    fn enter_on_the_way(&mut self, src: BorrowedFd<'_>, name: &OsStr, path: &Path, depth: usize) {
        let opened = fs::openat(src, name, DIR_FLAGS, Mode::empty());
        if let Some(dir) = Errs::new(path, &mut self.out.errors).check("open", opened) {
            self.copy_dir(dir.as_fd(), None, path, depth);
        }
    }

    fn error(&mut self, path: &Path, op: &'static str, errno: Errno) {
        self.out.errors.push(TreeError::new(path, op, errno));
    }

    /// Copies one non-directory.
    fn copy_leaf(&mut self, at: At<'_>, entry: Entry) {
        let (proc_fd, creator) = (self.proc_fd, self.creator);
        let mut errs = Errs::new(&entry.path, &mut self.out.errors);
        let written = match entry.kind {
            Kind::File => copy_file(at, creator, &mut self.xattrs, &mut errs),
            Kind::Symlink | Kind::Device | Kind::Fifo => copy_special(at, entry.kind, proc_fd, &mut errs),
            Kind::Dir | Kind::Socket => false, // never a leaf (see `action`)
        };
        if written {
            self.out.written.push(entry);
        }
    }

    /// Copies a directory: makes its counterpart, copies the children, then the metadata.
    fn copy_subdir(&mut self, at: At<'_>, entry: Entry, lower: Option<Lower>, depth: usize) {
        let mut errs = Errs::new(&entry.path, &mut self.out.errors);
        let Some((src, stat)) = open_source(at, Kind::Dir, &mut errs) else {
            return;
        };
        let Some((dst, setgid)) = make_dir(at, &mut errs) else {
            return;
        };
        let path = entry.path.clone();
        self.out.written.push(entry);
        let place = Place { dst, setgid, upper: at.upper, capacity: at.capacity, lower };
        self.copy_dir(src.as_fd(), Some(&place), &path, depth);
        let mut errs = Errs::new(&path, &mut self.out.errors);
        let source_xattrs = self.xattrs.then_some(Xattrs::Fd(src.as_fd()));
        set_metadata(&Node::Open(place.dst.as_fd()), source_xattrs.as_ref(), &stat, Needs::all(&at), &mut errs);
    }

    /// Walks into a directory whose destination counterpart must already be a real directory.
    fn descend(&mut self, at: At<'_>, path: &Path, lower: Option<Lower>, depth: usize) {
        let mut errs = Errs::new(path, &mut self.out.errors);
        let Some((src, _)) = open_source(at, Kind::Dir, &mut errs) else {
            return;
        };
        let dst = open_dir_nofollow(at.dst, Path::new(at.name));
        let Some(dst) = errs.check("descend", dst) else {
            return;
        };
        let setgid = passes_group(&dst);
        let place = Place { dst, setgid, upper: at.upper, capacity: at.capacity, lower };
        self.copy_dir(src.as_fd(), Some(&place), path, depth);
    }
}

/// Opens the source entry `at.name` of `kind` without following it and checks (with `fstat`) it
/// still is of that kind. Regular files are opened for reading (non-blocking, no controlling
/// tty), directories as directories, anything else `O_PATH` (never opened for I/O).
fn open_source(at: At<'_>, kind: Kind, errs: &mut Errs<'_>) -> Option<(OwnedFd, Stat)> {
    let fd = errs.check("open", fs::openat(at.src, at.name, source_flags(kind), Mode::empty()))?;
    let stat = errs.check("fstat", fs::fstat(&fd))?;
    if Kind::of_mode(stat.st_mode) != Some(kind) {
        // Replaced between lstat and open (the NFS server changed the layer): skip it.
        errs.push("changed", Errno::STALE);
        return None;
    }
    Some((fd, stat))
}

/// How a source entry of `kind` is opened: regular files for reading (non-blocking, no
/// controlling tty), directories as directories, anything else `O_PATH`; never followed.
pub(crate) fn source_flags(kind: Kind) -> OFlags {
    let flags = match kind {
        Kind::File => OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK,
        Kind::Dir => DIR_FLAGS,
        _ => OFlags::PATH,
    };
    flags | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Makes `at.name` in the destination a directory and opens it: an existing directory is kept,
/// a non-directory is replaced (the source wins), a missing one is made with mode 0700 (no
/// setgid yet: its real mode comes after its children). Also returns whether it is setgid.
fn make_dir(at: At<'_>, errs: &mut Errs<'_>) -> Option<(OwnedFd, bool)> {
    match fs::mkdirat(at.dst, at.name, Mode::RWXU) {
        Ok(()) => {
            // O_NOFOLLOW|O_DIRECTORY: if the name was swapped for a symlink meanwhile, this fails.
            let fd = errs.check("open", fs::openat(at.dst, at.name, DIR_FLAGS, Mode::empty()))?;
            return Some((fd, false));
        }
        Err(Errno::EXIST) => {}
        Err(errno) => {
            errs.push("mkdir", errno);
            return None;
        }
    }
    match fs::openat(at.dst, at.name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => {
            let setgid = passes_group(&fd);
            Some((fd, setgid))
        }
        // A file or symlink is in the way: the source's directory takes its place, made beside
        // it and swapped in, so a mkdir that fails (a full tmpfs) leaves the file.
        Err(Errno::NOTDIR | Errno::LOOP) => {
            let made = crate::fs::root::create_beside(|temp| fs::mkdirat(at.dst, temp, Mode::RWXU));
            let ((), temp) = errs.check("mkdir", made)?;
            let swapped = fs::renameat_with(at.dst, temp.as_str(), at.dst, at.name, fs::RenameFlags::EXCHANGE);
            if errs.check("rename", swapped).is_none() {
                let _ = fs::unlinkat(at.dst, temp.as_str(), AtFlags::REMOVEDIR);
                return None;
            }
            errs.check("unlink", fs::unlinkat(at.dst, temp.as_str(), AtFlags::empty()));
            let fd = errs.check("open", fs::openat(at.dst, at.name, DIR_FLAGS, Mode::empty()))?;
            Some((fd, false))
        }
        Err(errno) => {
            errs.push("open", errno);
            None
        }
    }
}

/// Whether the directory `dir` is setgid: new entries in it get its group, not the creator's.
fn passes_group(dir: &OwnedFd) -> bool {
    fs::fstat(dir).is_ok_and(|st| st.st_mode & 0o2000 != 0)
}

/// Where a new non-directory is made: at its own name when that was free, else beside it, to be
/// renamed over the old entry once complete, so a copy that fails halfway (a full tmpfs) leaves
/// what was there.
enum Slot {
    Free,
    Beside(String),
}

impl Slot {
    fn name<'a>(&'a self, at: &At<'a>) -> &'a OsStr {
        match self {
            Slot::Free => at.name,
            Slot::Beside(temp) => OsStr::new(temp.as_str()),
        }
    }

    /// Puts the complete entry in place (a rename over the old one).
    fn commit(&self, at: At<'_>, errs: &mut Errs<'_>) -> bool {
        match self {
            Slot::Free => true,
            Slot::Beside(temp) => {
                let renamed = fs::renameat(at.dst, temp.as_str(), at.dst, at.name);
                if renamed.is_err() {
                    let _ = fs::unlinkat(at.dst, temp.as_str(), AtFlags::empty());
                }
                errs.check("rename", renamed).is_some()
            }
        }
    }

    /// Removes a half-made entry again: a half-written config file is worse than the old one,
    /// or than none.
    fn abandon(&self, at: At<'_>, errs: &mut Errs<'_>) {
        errs.check("unlink", fs::unlinkat(at.dst, self.name(&at), AtFlags::empty()));
    }
}

/// `create` at the entry's own name; when the name is taken, refused for a directory (a
/// directory tree is never replaced by a file: "replace-dir", `EISDIR`), else at a new temp
/// name beside it. Returns what `create` made and where.
fn create_in_slot<T>(
    at: At<'_>,
    errs: &mut Errs<'_>,
    op: &'static str,
    create: impl Fn(&OsStr) -> io::Result<T>,
) -> Option<(T, Slot)> {
    match create(at.name) {
        Ok(made) => return Some((made, Slot::Free)),
        Err(Errno::EXIST) => {}
        Err(errno) => {
            errs.push(op, errno);
            return None;
        }
    }
    let existing = errs.check("stat", fs::statat(at.dst, at.name, AtFlags::SYMLINK_NOFOLLOW))?;
    if FileType::from_raw_mode(existing.st_mode) == FileType::Directory {
        errs.push("replace-dir", Errno::ISDIR);
        return None;
    }
    let (made, temp) = errs.check(op, crate::fs::root::create_beside(create))?;
    Some((made, Slot::Beside(temp)))
}

/// Copies a regular file: open the source, create the copy (with its final permission bits,
/// at its name or beside it), data, metadata, then put it in place.
fn copy_file(at: At<'_>, creator: Creator, xattrs: &mut bool, errs: &mut Errs<'_>) -> bool {
    let Some((src, stat)) = open_source(at, Kind::File, errs) else {
        return false;
    };
    // A file that needs more than the whole destination filesystem is refused before a byte is
    // read: its size, or for a sparse file whose holes the source can tell (SEEK_HOLE finds one
    // before the end) its data. Where the source cannot tell them (NFSv3 has no SEEK_DATA), a
    // 10 GB sparse file would otherwise be read in full over the network, filling the tmpfs,
    // to fail at the end all the same.
    if at.capacity > 0 {
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        let allocated = u64::try_from(stat.st_blocks).unwrap_or(u64::MAX).saturating_mul(512);
        let holes_known = allocated < size && fs::seek(&src, SeekFrom::Hole(0)).is_ok_and(|hole| hole < size);
        let needed = if holes_known { allocated } else { size };
        if needed > at.capacity {
            errs.push("too-big", Errno::FBIG);
            return false;
        }
    }
    // O_CREAT|O_EXCL never follows a symlink, even one created in between.
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let mode = Mode::from_raw_mode(stat.st_mode & 0o777);
    let Some((dst, slot)) = create_in_slot(at, errs, "create", |name| fs::openat(at.dst, name, flags, mode)) else {
        return false;
    };
    if let Err((op, errno)) = copy_data(src.as_fd(), dst.as_fd(), &stat) {
        errs.push(op, errno);
        slot.abandon(at, errs);
        return false;
    }
    let source = Xattrs::Fd(src.as_fd());
    let listed = if *xattrs { Some(&source) } else { None };
    if !set_metadata(&Node::Open(dst.as_fd()), listed, &stat, creator.needs(&stat, &at), errs) {
        *xattrs = false;
    }
    slot.commit(at, errs)
}

/// Copies the data of `src` (of `stat`) to the new, empty `dst` in the kernel (sendfile), hole
/// for hole where the file is sparse; the failing operation on error.
fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, stat: &Stat) -> Result<(), (&'static str, Errno)> {
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    let allocated = u64::try_from(stat.st_blocks).unwrap_or(u64::MAX).saturating_mul(512);
    if allocated >= size {
        return send(src, dst, 0, size);
    }
    // Sparse: only the data extents are copied, at their offsets; the rest stays a hole.
    let mut at = 0;
    while at < size {
        let data = match fs::seek(src, SeekFrom::Data(at)) {
            Ok(data) => data,
            Err(Errno::NXIO) => break, // no data after `at`
            Err(errno) => return Err(("seek", errno)),
        };
        if data >= size {
            break; // the file grew since its fstat: its size then is what is copied
        }
        let hole = fs::seek(src, SeekFrom::Hole(data)).map_err(|e| ("seek", e))?.min(size);
        fs::seek(dst, SeekFrom::Start(data)).map_err(|e| ("seek", e))?;
        send(src, dst, data, hole.saturating_sub(data))?;
        at = hole.max(data + 1);
    }
    fs::ftruncate(dst, size).map_err(|e| ("truncate", e))
}

/// sendfile(2) of `len` bytes from `offset` of `src` to `dst`'s position; stops early when the
/// source got shorter meanwhile.
fn send(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, mut offset: u64, len: u64) -> Result<(), (&'static str, Errno)> {
    let end = offset.saturating_add(len);
    while offset < end {
        let chunk = usize::try_from(end - offset).unwrap_or(usize::MAX).min(1 << 30);
        match io::retry_on_intr(|| fs::sendfile(dst, src, Some(&mut offset), chunk)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(errno) => return Err(("write", errno)),
        }
    }
    Ok(())
}

/// Writes all of `data`, resuming after short writes and EINTR.
pub(crate) fn write_all(dst: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = io::retry_on_intr(|| io::write(dst, data))?;
        // A zero-length write for a non-empty buffer would loop forever: treat it as ENOSPC.
        data = match data.get(n..) {
            Some(rest) if n > 0 => rest,
            _ => return Err(Errno::NOSPC),
        };
    }
    Ok(())
}

/// Copies a symlink, device node or fifo: recreated with `symlinkat`/`mknodat` (at its name or
/// beside it), metadata, then put in place.
fn copy_special(at: At<'_>, kind: Kind, proc_fd: bool, errs: &mut Errs<'_>) -> bool {
    let Some((src, stat)) = open_source(at, kind, errs) else {
        return false;
    };
    let target = match kind {
        // readlinkat with an empty path reads the symlink of an O_PATH fd itself.
        Kind::Symlink => match errs.check("readlink", fs::readlinkat(&src, "", Vec::new())) {
            Some(target) => Some(target),
            None => return false,
        },
        _ => None,
    };
    // A device node or fifo is made with mode 0600 until its real mode is set.
    let (file_type, rdev) = (FileType::from_raw_mode(stat.st_mode), stat.st_rdev);
    if at.upper && whiteout(&stat) {
        errs.push("whiteout", Errno::PERM);
        return false;
    }
    let op = if target.is_some() { "symlink" } else { "mknod" };
    let create = |name: &OsStr| match &target {
        Some(target) => fs::symlinkat(target.as_c_str(), at.dst, name),
        None => fs::mknodat(at.dst, name, file_type, Mode::RUSR | Mode::WUSR, rdev),
    };
    let Some(((), slot)) = create_in_slot(at, errs, op, create) else {
        return false;
    };
    let name = slot.name(&at);
    let opath = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dst = if proc_fd { errs.check("open", fs::openat(at.dst, name, opath, Mode::empty())) } else { None };
    let node = Node::Named { dir: at.dst, name, opath: dst.as_ref().map(|fd| fd.as_fd()) };
    let source_xattrs = proc_fd.then(|| Xattrs::proc(src.as_fd()));
    set_metadata(&node, source_xattrs.as_ref(), &stat, Needs::all(&at), errs);
    slot.commit(at, errs)
}

/// How a destination inode is reached for its metadata.
enum Node<'a> {
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
fn set_metadata(node: &Node<'_>, source: Option<&Xattrs<'_>>, stat: &Stat, needs: Needs, errs: &mut Errs<'_>) -> bool {
    if needs.owner {
        errs.check("fchown", node.chown(stat));
    }
    if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink && (needs.mode || needs.owner) {
        errs.check("fchmod", node.chmod(Mode::from_raw_mode(stat.st_mode)));
    }
    let supported = match (source, node.xattrs()) {
        (Some(source), Some(dest)) => copy_xattrs(source, &dest, needs.upper, errs),
        _ => true,
    };
    errs.check("utimensat", node.set_times(&timestamps(stat)));
    supported
}

/// Access and modification times of `stat`.
fn timestamps(stat: &Stat) -> Timestamps {
    let time = |sec: i64, nsec| Timespec { tv_sec: sec, tv_nsec: i64::try_from(nsec).unwrap_or(0) };
    Timestamps {
        last_access: time(stat.st_atime, stat.st_atime_nsec),
        last_modification: time(stat.st_mtime, stat.st_mtime_nsec),
    }
}

/// Where extended attributes are read or written.
enum Xattrs<'a> {
    /// An fd open for I/O: `flistxattr`, `fgetxattr`, `fsetxattr`.
    Fd(BorrowedFd<'a>),
    /// `/proc/self/fd/<n>` of an `O_PATH` fd: the following path calls reach the node itself
    /// (`f*xattr` refuse `O_PATH` fds with `EBADF`).
    Proc(String),
}

impl Xattrs<'_> {
    fn proc(fd: BorrowedFd<'_>) -> Xattrs<'static> {
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
fn read_sized(
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
fn copy_xattrs(source: &Xattrs<'_>, dest: &Xattrs<'_>, upper: bool, errs: &mut Errs<'_>) -> bool {
    let names = match source.list() {
        Ok(names) => names,
        // The source filesystem has no xattrs at all (e.g. some NFS): nothing to copy.
        Err(Errno::OPNOTSUPP) => return false,
        Err(errno) => {
            errs.push("listxattr", errno);
            return true;
        }
    };
    for name in xattr_names(&names) {
        if upper && overlay_own(name) {
            errs.push("setxattr", Errno::PERM);
            continue;
        }
        let value = match source.get(name) {
            Ok(value) => value,
            // Removed since the listing: nothing to copy.
            Err(Errno::NODATA) => continue,
            Err(errno) => {
                errs.push("getxattr", errno);
                continue;
            }
        };
        errs.check("setxattr", dest.set(name, &value));
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
fn xattr_names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|name| !name.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
