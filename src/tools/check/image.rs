//! An image file as the root to check (squashfs or EROFS, told by its magic): mounted read-only
//! for the check alone, on a read-only loop device let go with the mount, as a detached mount
//! (`fsmount`): it is in no mount namespace, so nothing shows anywhere, no mount point is made on
//! the server, and it is gone when the check ends. Its layer root is, by default, the
//! `diskless/` dir beside it, as at boot.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

use crate::config::nfsroot;
use crate::fs::root::{relative, ImageRoot};
use crate::fs::tree;
use crate::model::image::ImageFormat;
use crate::model::options::{Diagnostic, Options};
use crate::model::paths::EXPORT;
use crate::model::text::{escape, escape_path};
use crate::sys::{Real, Sys};

/// An image file named as the root.
pub(super) struct ImageToCheck {
    /// As named, its dir made absolute: `/srv/diskless/images/current`.
    pub(super) named: PathBuf,
    /// Where it led, when that is elsewhere (a symlink such as publish's `current`).
    pub(super) target: Option<PathBuf>,
    pub(super) format: ImageFormat,
    /// The dir it is named in, where its layers are.
    dir: OwnedFd,
    file: std::fs::File,
}

/// The image mounted: its root, and the detached mount that holds it while the check runs.
pub(super) struct MountedImage {
    pub(super) root: ImageRoot,
    _mount: OwnedFd,
}

impl ImageToCheck {
    /// `given` as an image file; `None` when it is a directory. Refused: anything else, and an
    /// image file when not root (mounting it needs root).
    pub(super) fn at(given: &Path) -> Result<Option<ImageToCheck>, String> {
        let shown = escape_path(given);
        let node = rustix::fs::open(given, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("{shown}: {e}"))?;
        let kind = rustix::fs::fstat(&node).map(|st| FileType::from_raw_mode(st.st_mode));
        if kind == Ok(FileType::Directory) {
            return Ok(None);
        }
        let neither = || format!("{shown}: neither a directory nor a squashfs or EROFS image file");
        // Only a regular file is opened for reading (a fifo would block, a device act).
        let file = std::fs::File::from(tree::open_regular(&node).map_err(|_| neither())?);
        let mut head = Vec::new();
        (&file).take(ImageFormat::HEAD as u64).read_to_end(&mut head).map_err(|e| format!("{shown}: {e}"))?;
        let format = ImageFormat::of(&head).ok_or_else(neither)?;
        if !rustix::process::geteuid().is_root() {
            return Err(format!(
                "{shown}: checking an image file needs root, to mount it (read-only, seen by no other process)"
            ));
        }
        let (parent, name) = (crate::tools::parent_of(given), given.file_name().ok_or_else(neither)?);
        let in_dir = |e: std::io::Error| format!("{}: {e}", escape_path(parent));
        let named = std::fs::canonicalize(parent).map_err(in_dir)?.join(name);
        let target = std::fs::canonicalize(given).map_err(|e| format!("{shown}: {e}"))?;
        let dir = rustix::fs::open(parent, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| in_dir(e.into()))?;
        Ok(Some(ImageToCheck { target: (target != named).then_some(target), named, format, dir, file }))
    }

    /// Mounts it read-only for this process alone; an error says why it cannot be (a damaged
    /// image: what the kernel said of it).
    pub(super) fn mount(&self) -> Result<MountedImage, String> {
        let fstype = self.format.fstype();
        let shown = escape_path(&self.named);
        let (device, held) = Real
            .attach_loop(Path::new("/dev"), self.file.as_fd(), &self.named)
            .map_err(|e| format!("{shown}: no loop device for it: {e}"))?;
        let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| format!("{shown}: {fstype}: {e} (no {fstype} in this kernel?)"))?;
        let created = rustix::mount::fsconfig_set_string(&fs, "source", &device)
            .and_then(|()| rustix::mount::fsconfig_set_flag(&fs, "ro"))
            .and_then(|()| rustix::mount::fsconfig_create(&fs));
        if let Err(e) = created {
            // The kernel's own words, when it left some (`e Can't find a SQUASHFS superblock...`).
            let mut said = [0u8; 256];
            let said = rustix::io::read(&fs, &mut said).ok().and_then(|n| said.get(..n)).unwrap_or_default();
            let said = said.strip_prefix(b"e ").unwrap_or(said).trim_ascii();
            let said = if said.is_empty() { String::new() } else { format!(": {}", escape(said)) };
            return Err(format!("{shown}: not mountable as {fstype} ({e}{said}): a damaged image?"));
        }
        let attrs = MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC;
        let mount = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| format!("{shown}: mount {fstype}: {e}"))?;
        drop(held); // the mount holds the device now; gone, it lets go of the file
        let root = ImageRoot::open(Path::new(&tree::proc_fd_path(mount.as_fd())))
            .map_err(|e| format!("{shown}: the mounted image: {e}"))?;
        Ok(MountedImage { root, _mount: mount })
    }

    /// The options its clients boot with, as the boot of an image root resolves them: when
    /// the command line names no image file, it is named one (`stateless.image=`), so a layer
    /// root that is not given is the one beside the image.
    pub(super) fn options(cmdline: &[u8], root: &ImageRoot) -> (Options, Vec<Diagnostic>) {
        let (options, diagnostics) = crate::boot::options(cmdline, root);
        if nfsroot::image_file(&options).is_some() {
            return (options, diagnostics);
        }
        crate::boot::options(&[cmdline, b" stateless.image=/image"].concat(), root)
    }

    /// Where the layer root of `options` is when it is beside the image on the export (the
    /// boot's default): the dir it opens and that dir's path, shown; `None`: in the image.
    pub(super) fn layers_beside(&self, options: &Options) -> Option<(Result<Option<OwnedFd>, String>, String)> {
        let file = nfsroot::image_file(options)?;
        let dir = Path::new("/").join(EXPORT).join(relative(Path::new(&file).parent()?));
        let rest = Path::new(&options.layers).strip_prefix(dir).ok()?.to_str()?;
        let shown = escape_path(&self.named.parent().unwrap_or(Path::new("/")).join(rest));
        Some((crate::fs::layers::open_root(self.dir.as_fd(), rest), shown))
    }
}
