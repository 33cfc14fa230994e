//! The leaves of a copy: a regular file (created, its data sent by the kernel hole for hole,
//! then its metadata) and a symlink, device node or fifo (recreated, never opened for I/O).

use super::*;

/// Copies a regular file: open the source, create the copy (with its final permission bits,
/// at its name or beside it), data, metadata, then put it in place. Held to `want` (a checked
/// copy), one whose metadata is not as signed is not read, one whose bytes are not is removed
/// again: `Err` says why.
pub(super) fn copy_file(
    at: At<'_>,
    creator: Creator,
    xattrs: &mut bool,
    want: Option<&Listed>,
    errs: &mut Errs<'_>,
) -> Result<bool, String> {
    let Some((src, stat)) = open_source(at, Kind::File, errs) else {
        return Ok(false);
    };
    if let Some(want) = want {
        // The metadata first, the content as signed (it is checked as it is copied).
        let sha256 = if let What::File { sha256, .. } = &want.what { sha256.clone() } else { String::new() };
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        if let Some(why) = of_stat(&stat, What::File { size, sha256 }).differs(want) {
            return Err(format!("not as signed: {why}"));
        }
    }
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
            errs.push(TreeOp::TooBig, Errno::FBIG);
            return Ok(false);
        }
    }
    // O_CREAT|O_EXCL never follows a symlink, even one created in between.
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let mode = Mode::from_raw_mode(stat.st_mode & 0o777);
    let Some((dst, slot)) = create_in_slot(at, errs, TreeOp::Create, |name| fs::openat(at.dst, name, flags, mode))
    else {
        return Ok(false);
    };
    let copied = match want {
        Some(want) => copy_hashed(src.as_fd(), dst.as_fd(), want),
        None => copy_data(src.as_fd(), dst.as_fd(), &stat).map(|()| None),
    };
    match copied {
        Ok(None) => {}
        Ok(Some(why)) => {
            // Not as signed: removed before anything else sees it (beside its name, or at a
            // name that was free).
            slot.abandon(at, errs);
            return Err(format!("not as signed: {why}"));
        }
        Err((op, errno)) => {
            errs.push(op, errno);
            slot.abandon(at, errs);
            return Ok(false);
        }
    }
    let source = Xattrs::Fd(src.as_fd());
    let listed = if *xattrs { Some(&source) } else { None };
    if !set_metadata(&Node::Open(dst.as_fd()), listed, &stat, creator.needs(&stat, &at), errs) {
        *xattrs = false;
    }
    Ok(slot.commit(at, errs))
}

/// Copies all of `src` to the new, empty `dst` through [`crate::fs::hashcopy::copy_hashed`]: the
/// bytes hashed are the bytes written. Returns how their size and hash differ from `want`'s.
fn copy_hashed(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, want: &Listed) -> Result<Option<String>, (TreeOp, Errno)> {
    let dup = |fd| io::fcntl_dupfd_cloexec(fd, 0).map(std::fs::File::from).map_err(|e| (TreeOp::Dup, e));
    let (from, mut to) = (dup(src)?, dup(dst)?);
    let errno = |e: std::io::Error| (TreeOp::Write, Errno::from_io_error(&e).unwrap_or(Errno::IO));
    let (size, sha256) = crate::fs::hashcopy::copy_hashed(&from, &mut to, |_| ()).map_err(errno)?;
    Ok(Listed { what: What::File { size, sha256 }, ..want.clone() }.differs(want))
}

/// Copies the data of `src` (of `stat`) to the new, empty `dst` in the kernel (sendfile), hole
/// for hole where the file is sparse; the failing operation on error.
pub(super) fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, stat: &Stat) -> Result<(), (TreeOp, Errno)> {
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
            Err(errno) => return Err((TreeOp::Seek, errno)),
        };
        if data >= size {
            break; // the file grew since its fstat: its size then is what is copied
        }
        let hole = fs::seek(src, SeekFrom::Hole(data)).map_err(|e| (TreeOp::Seek, e))?.min(size);
        fs::seek(dst, SeekFrom::Start(data)).map_err(|e| (TreeOp::Seek, e))?;
        send(src, dst, data, hole.saturating_sub(data))?;
        at = hole.max(data + 1);
    }
    fs::ftruncate(dst, size).map_err(|e| (TreeOp::Truncate, e))
}

/// sendfile(2) of `len` bytes from `offset` of `src` to `dst`'s position; stops early when the
/// source got shorter meanwhile.
pub(super) fn send(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, mut offset: u64, len: u64) -> Result<(), (TreeOp, Errno)> {
    let end = offset.saturating_add(len);
    while offset < end {
        let chunk = usize::try_from(end - offset).unwrap_or(usize::MAX).min(1 << 30);
        match io::retry_on_intr(|| fs::sendfile(dst, src, Some(&mut offset), chunk)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(errno) => return Err((TreeOp::Write, errno)),
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
pub(super) fn copy_special(
    at: At<'_>,
    kind: Kind,
    proc_fd: bool,
    want: Option<&Listed>,
    errs: &mut Errs<'_>,
) -> Result<bool, String> {
    let Some((src, stat)) = open_source(at, kind, errs) else {
        return Ok(false);
    };
    let target = match kind {
        // readlinkat with an empty path reads the symlink of an O_PATH fd itself.
        Kind::Symlink => match errs.check(TreeOp::Readlink, fs::readlinkat(&src, "", Vec::new())) {
            Some(target) => Some(target),
            None => return Ok(false),
        },
        _ => None,
    };
    if let Some(want) = want {
        let found = match &target {
            Some(target) => Some(What::Symlink { target: target.as_bytes().to_vec() }),
            None => plain(&stat),
        };
        let why = found.map_or(Some("not a node a manifest lists".to_owned()), |f| of_stat(&stat, f).differs(want));
        if let Some(why) = why {
            return Err(format!("not as signed: {why}"));
        }
    }
    // A device node or fifo is made with mode 0600 until its real mode is set.
    let (file_type, rdev) = (FileType::from_raw_mode(stat.st_mode), stat.st_rdev);
    if at.upper && whiteout(&stat) {
        errs.push(TreeOp::Whiteout, Errno::PERM);
        return Ok(false);
    }
    let op = if target.is_some() { TreeOp::Symlink } else { TreeOp::Mknod };
    let create = |name: &OsStr| match &target {
        Some(target) => fs::symlinkat(target.as_c_str(), at.dst, name),
        None => fs::mknodat(at.dst, name, file_type, Mode::RUSR | Mode::WUSR, rdev),
    };
    let Some(((), slot)) = create_in_slot(at, errs, op, create) else {
        return Ok(false);
    };
    let name = slot.name(&at);
    let opath = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dst = if proc_fd { errs.check(TreeOp::Open, fs::openat(at.dst, name, opath, Mode::empty())) } else { None };
    let node = Node::Named { dir: at.dst, name, opath: dst.as_ref().map(|fd| fd.as_fd()) };
    // A manifest does not list extended attributes: a checked copy copies none.
    let source_xattrs = (proc_fd && want.is_none()).then(|| Xattrs::proc(src.as_fd()));
    set_metadata(&node, source_xattrs.as_ref(), &stat, Needs::all(&at), errs);
    Ok(slot.commit(at, errs))
}
