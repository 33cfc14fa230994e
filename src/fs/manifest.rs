//! Layer manifests on disk ([`crate::model::manifest`]): what a layer dir holds now, every
//! entry as a manifest lists it, and the signed manifest beside a layer, verified.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self, Mode, Stat};
use rustix::io::Errno;

use crate::fs::tree::{self, Kind, Verdict};
use crate::model::manifest::{Listed, Manifest, What, ENTRIES_MAX, MANIFEST_MAX};
use crate::model::sign::{self, TrustedKey};
use crate::model::text::escape_path;

/// A layer's manifest beside it: `hosts/lab3-12` → `hosts/lab3-12.manifest`.
pub const SUFFIX: &str = ".manifest";
/// Its signature, in signify's format.
pub const SIGNATURE_SUFFIX: &str = ".manifest.sig";

/// Whether `name`, in the layer root or one of its category dirs, is a manifest or its
/// signature, not a layer.
pub fn is_sidecar(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.ends_with(SUFFIX.as_bytes()) || name.ends_with(SIGNATURE_SUFFIX.as_bytes())
}

/// The manifest of the layer dir `dir` (named `layer`) as it is now: every entry the walk of a
/// copy reaches (sockets, never copied, are left out), each file read and hashed. Errors:
/// every entry that could not be read, escaped.
pub fn of_layer(dir: BorrowedFd<'_>, layer: &str) -> Result<Manifest, Vec<String>> {
    let (mut entries, mut errors) = (BTreeMap::new(), Vec::new());
    let walk = tree::walk_visiting(dir, &|_, _| Verdict::Copy, &mut |parent, name, entry| match listed(
        parent, name, entry.kind,
    ) {
        Ok(found) => {
            entries.insert(entry.path.as_os_str().as_bytes().to_vec(), found);
        }
        Err(e) => errors.push(format!("{}: {e}", escape_path(&entry.path))),
    });
    errors.extend(walk.errors.iter().map(ToString::to_string));
    if entries.len() > ENTRIES_MAX {
        errors.push(format!("{} entries, more than a manifest lists ({ENTRIES_MAX})", entries.len()));
    }
    if errors.is_empty() {
        Ok(Manifest { layer: layer.to_owned(), entries })
    } else {
        Err(errors)
    }
}

/// The entry `name` of `parent`, of `kind` as the walk saw it, as a manifest lists it: opened
/// as the copy opens it (never followed; a file read, anything else `O_PATH`), its kind checked
/// again after the open (`ESTALE`: it changed meanwhile).
pub fn listed(parent: BorrowedFd<'_>, name: &OsStr, kind: Kind) -> std::io::Result<Listed> {
    let fd = fs::openat(parent, name, tree::source_flags(kind), Mode::empty())?;
    let stat = fs::fstat(&fd)?;
    if Kind::of_mode(stat.st_mode) != Some(kind) {
        return Err(Errno::STALE.into());
    }
    let what = match kind {
        Kind::File => {
            let file = std::fs::File::from(fd);
            let (size, sha256) = crate::fs::hashcopy::copy_hashed(&file, &mut std::io::sink(), |_| ())?;
            What::File { size, sha256 }
        }
        Kind::Symlink => What::Symlink { target: fs::readlinkat(fd.as_fd(), "", Vec::new())?.into_bytes() },
        _ => plain(&stat).ok_or(Errno::OPNOTSUPP)?,
    };
    Ok(of_stat(&stat, what))
}

/// What a dir, device node or fifo of `stat` is, as a manifest says it (`None`: another kind).
pub(crate) fn plain(stat: &Stat) -> Option<What> {
    match fs::FileType::from_raw_mode(stat.st_mode) {
        fs::FileType::Directory => Some(What::Dir),
        fs::FileType::Fifo => Some(What::Fifo),
        t @ (fs::FileType::BlockDevice | fs::FileType::CharacterDevice) => Some(What::Device {
            block: t == fs::FileType::BlockDevice,
            major: fs::major(stat.st_rdev),
            minor: fs::minor(stat.st_rdev),
        }),
        _ => None,
    }
}

/// An entry of `stat` holding `what`, as a manifest lists it: a symlink has no mode.
pub(crate) fn of_stat(stat: &Stat, what: What) -> Listed {
    let mode = if matches!(what, What::Symlink { .. }) { 0 } else { stat.st_mode & 0o7777 };
    Listed { what, mode, uid: stat.st_uid, gid: stat.st_gid }
}

/// The signed manifest of the layer `name` beside it under `layer_root`: read (bounded), its
/// signature verified with `keys`, then parsed, and the layer's identity (its SHA-256). An
/// error says why it is not to be trusted: missing, unreadable, a bad or untrusted signature,
/// malformed, another layer's.
pub fn signed(layer_root: BorrowedFd<'_>, name: &str, keys: &[TrustedKey]) -> Result<(Manifest, String), String> {
    let read = |suffix: &str, limit: usize| {
        let path = format!("{name}{suffix}");
        let shown = escape_path(Path::new(&path));
        crate::fs::root::read_beneath(layer_root, Path::new(&path), limit as u64)
            .map_err(|e| format!("{shown}: {e}"))?
            .ok_or_else(|| format!("{shown}: missing: the layer is not signed (stateless layers sign)"))
    };
    let text = read(SUFFIX, MANIFEST_MAX)?;
    let signature = read(SIGNATURE_SUFFIX, sign::SIGNATURE_MAX)?;
    let shown = escape_path(Path::new(&format!("{name}{SUFFIX}")));
    sign::verify(keys, &text, &signature).map_err(|e| format!("{shown}: {e}"))?;
    let manifest = Manifest::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
    if manifest.layer != name {
        return Err(format!("{shown}: the manifest of layer {}, not of this one", manifest.layer));
    }
    Ok((manifest, Manifest::identity(&text)))
}
