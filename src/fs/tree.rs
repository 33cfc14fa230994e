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

pub use crate::model::entry::{Entry, Kind, TreeError, TreeOp};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags, SeekFrom, Stat, Timespec, Timestamps};
use rustix::io::{self, Errno};
use serde::Serialize;

use crate::fs::manifest::{of_stat, plain};
use crate::model::manifest::{Listed, Manifest, What};

/// Maximum number of path components of an entry below the walked root.
pub const MAX_DEPTH: usize = 64;

/// Flags to open a directory for reading without following a symlink.
pub(crate) const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

mod leaf;
mod meta;
mod open;

pub(crate) use leaf::*;
pub(crate) use meta::*;
pub use open::*;

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
    /// A checked copy's entries that are not as its manifest signed them, or not in it, and
    /// why: none of them was copied (nor, for a dir, anything below it).
    pub rejected: Vec<Rejected>,
}

/// An entry a checked copy did not copy, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub entry: Entry,
    pub why: String,
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

    fn push(&mut self, op: TreeOp, errno: Errno) {
        self.list.push(TreeError::new(self.path, op, errno));
    }

    /// Records the error of `result` under `op`; the value on success.
    fn check<T>(&mut self, op: TreeOp, result: io::Result<T>) -> Option<T> {
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
    let Some(reader) = errs.check(TreeOp::Opendir, reader) else {
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
                errs.push(TreeOp::Readdir, errno);
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
            let stat = errs.check(TreeOp::Stat, fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW))?;
            let Some(kind) = Kind::of_mode(stat.st_mode) else {
                errs.push(TreeOp::Type, Errno::INVAL);
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
            Action::TooDeep => w.out.errors.push(TreeError::new(&entry.path, TreeOp::Depth, Errno::LOOP)),
            Action::EnterCopy | Action::EnterDescend => {
                let opened = fs::openat(src, name, DIR_FLAGS, Mode::empty());
                let Some(dir) = Errs::new(&entry.path, &mut w.out.errors).check(TreeOp::Open, opened) else {
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
    copy_checked(src, targets, filter, None)
}

/// [`copy_into`], each entry held to `manifest` when there is one, as it is copied: one it does
/// not list is not copied (a dir not entered); a dir, symlink, device or fifo whose type, mode,
/// owner, target or numbers are not as listed is not made; a file whose metadata is not as
/// listed is not read, one whose bytes (hashed as they are copied) are not is removed again. Each
/// is in [`Copied::rejected`]. Extended attributes are not in a manifest: none is copied.
pub fn copy_checked(
    src: BorrowedFd<'_>,
    targets: &[Target<'_>],
    filter: &dyn Fn(&Path, Kind) -> Verdict,
    manifest: Option<&Manifest>,
) -> Copied {
    let umask = fs::Mode::from_raw_mode(0o022);
    let old = rustix::process::umask(umask);
    rustix::process::umask(old);
    let creator = Creator {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        umask: old.bits(),
    };
    let (proc_fd, xattrs) = (proc_fd_usable(), manifest.is_none());
    let mut copier = Copier { filter, targets, proc_fd, creator, xattrs, manifest, out: Copied::default() };
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
    /// What every entry is held to, in a checked copy.
    manifest: Option<&'f Manifest>,
    out: Copied,
}

impl Copier<'_> {
    /// The destination of the target at `path`, if one is there.
    fn target_place(&mut self, path: &Path) -> Option<Place> {
        let target = self.targets.iter().find(|t| t.path == path)?;
        let mut errs = Errs::new(path, &mut self.out.errors);
        // Duplicates, not new opens: opening a directory on NFS costs a GETATTR.
        let dst = errs.check(TreeOp::Dup, io::fcntl_dupfd_cloexec(target.dst, 0))?;
        let setgid = passes_group(&dst);
        let lower = match target.lower {
            Some(lower) => Some(Lower { fd: errs.check(TreeOp::Dup, io::fcntl_dupfd_cloexec(lower, 0))? }),
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
            let want = match self.manifest {
                Some(manifest) if matches!(step, Action::Leaf | Action::EnterCopy | Action::EnterDescend) => {
                    match manifest.entries.get(entry.path.as_os_str().as_bytes()) {
                        Some(want) => Some(want),
                        None => {
                            self.out.rejected.push(Rejected { entry, why: "not in the signed manifest".into() });
                            continue;
                        }
                    }
                }
                _ => None,
            };
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
                Action::TooDeep => self.error(&entry.path, TreeOp::Depth, Errno::LOOP),
                // A file in the upper dir would hide the image's directory below it.
                Action::Leaf if lower.is_some_and(|l| l.has_dir(at.name)) => {
                    self.error(&entry.path, TreeOp::ReplaceDir, Errno::ISDIR);
                }
                Action::Leaf => self.copy_leaf(at, entry, want),
                Action::EnterCopy => {
                    self.copy_subdir(at, entry, want, lower.and_then(|l| l.child(at.name)), depth + 1);
                }
                Action::EnterDescend => self.descend(at, &entry.path, lower.and_then(|l| l.child(at.name)), depth + 1),
            }
        }
    }

    /// Walks into `name`, a target's source dir.
    fn enter_target(&mut self, src: BorrowedFd<'_>, name: &OsStr, path: &Path, depth: usize) {
        let mut errs = Errs::new(path, &mut self.out.errors);
        let opened = fs::openat(src, name, DIR_FLAGS, Mode::empty());
        let Some(dir) = errs.check(TreeOp::Open, opened) else {
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
        if let Some(dir) = Errs::new(path, &mut self.out.errors).check(TreeOp::Open, opened) {
            self.copy_dir(dir.as_fd(), None, path, depth);
        }
    }

    fn error(&mut self, path: &Path, op: TreeOp, errno: Errno) {
        self.out.errors.push(TreeError::new(path, op, errno));
    }

    /// Copies one non-directory.
    fn copy_leaf(&mut self, at: At<'_>, entry: Entry, want: Option<&Listed>) {
        let (proc_fd, creator) = (self.proc_fd, self.creator);
        let mut errs = Errs::new(&entry.path, &mut self.out.errors);
        let written = match entry.kind {
            Kind::File => copy_file(at, creator, &mut self.xattrs, want, &mut errs),
            Kind::Symlink | Kind::Device | Kind::Fifo => copy_special(at, entry.kind, proc_fd, want, &mut errs),
            Kind::Dir | Kind::Socket => Ok(false), // never a leaf (see `action`)
        };
        match written {
            Ok(true) => self.out.written.push(entry),
            Ok(false) => {}
            Err(why) => self.out.rejected.push(Rejected { entry, why }),
        }
    }

    /// Copies a directory: makes its counterpart, copies the children, then the metadata.
    fn copy_subdir(&mut self, at: At<'_>, entry: Entry, want: Option<&Listed>, lower: Option<Lower>, depth: usize) {
        let mut errs = Errs::new(&entry.path, &mut self.out.errors);
        let Some((src, stat)) = open_source(at, Kind::Dir, &mut errs) else {
            return;
        };
        if let Some(why) = want.and_then(|want| of_stat(&stat, What::Dir).differs(want)) {
            self.out.rejected.push(Rejected { entry, why: format!("not as signed: {why}") });
            return;
        }
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
        let Some(dst) = errs.check(TreeOp::Descend, dst) else {
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
    let fd = errs.check(TreeOp::Open, fs::openat(at.src, at.name, source_flags(kind), Mode::empty()))?;
    let stat = errs.check(TreeOp::Fstat, fs::fstat(&fd))?;
    if Kind::of_mode(stat.st_mode) != Some(kind) {
        // Replaced between lstat and open (the NFS server changed the layer): skip it.
        errs.push(TreeOp::Changed, Errno::STALE);
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
            let fd = errs.check(TreeOp::Open, fs::openat(at.dst, at.name, DIR_FLAGS, Mode::empty()))?;
            return Some((fd, false));
        }
        Err(Errno::EXIST) => {}
        Err(errno) => {
            errs.push(TreeOp::Mkdir, errno);
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
            let ((), temp) = errs.check(TreeOp::Mkdir, made)?;
            let swapped = fs::renameat_with(at.dst, temp.as_str(), at.dst, at.name, fs::RenameFlags::EXCHANGE);
            if errs.check(TreeOp::Rename, swapped).is_none() {
                let _ = fs::unlinkat(at.dst, temp.as_str(), AtFlags::REMOVEDIR);
                return None;
            }
            errs.check(TreeOp::Unlink, fs::unlinkat(at.dst, temp.as_str(), AtFlags::empty()));
            let fd = errs.check(TreeOp::Open, fs::openat(at.dst, at.name, DIR_FLAGS, Mode::empty()))?;
            Some((fd, false))
        }
        Err(errno) => {
            errs.push(TreeOp::Open, errno);
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
                errs.check(TreeOp::Rename, renamed).is_some()
            }
        }
    }

    /// Removes a half-made entry again: a half-written config file is worse than the old one,
    /// or than none.
    fn abandon(&self, at: At<'_>, errs: &mut Errs<'_>) {
        errs.check(TreeOp::Unlink, fs::unlinkat(at.dst, self.name(&at), AtFlags::empty()));
    }
}

/// `create` at the entry's own name; when the name is taken, refused for a directory (a
/// directory tree is never replaced by a file: "replace-dir", `EISDIR`), else at a new temp
/// name beside it. Returns what `create` made and where.
fn create_in_slot<T>(
    at: At<'_>,
    errs: &mut Errs<'_>,
    op: TreeOp,
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
    let existing = errs.check(TreeOp::Stat, fs::statat(at.dst, at.name, AtFlags::SYMLINK_NOFOLLOW))?;
    if FileType::from_raw_mode(existing.st_mode) == FileType::Directory {
        errs.push(TreeOp::ReplaceDir, Errno::ISDIR);
        return None;
    }
    let (made, temp) = errs.check(op, crate::fs::root::create_beside(create))?;
    Some((made, Slot::Beside(temp)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
