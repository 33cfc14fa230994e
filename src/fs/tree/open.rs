//! Opening a path below a directory fd without leaving it: `openat2` confined to it, or a
//! component-wise walk that follows no symlink where the kernel has no `openat2`.

use super::*;

/// How often `openat2` is retried when it reports `EAGAIN`.
pub(super) const OPENAT2_RETRIES: usize = 8;

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
pub(super) fn openat2_confined(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    confine: ResolveFlags,
) -> io::Result<OwnedFd> {
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
pub(super) fn create_mode(flags: OFlags) -> Mode {
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
pub(super) fn open_components(dir: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
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
