//! The writable dirs: a tmpfs or the scratch disk under each, then an overlay over the image
//! dir once the layers are in its upper dir, or copy mode's filled tmpfs.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{Done, Executor};
use crate::fs::mounts::{self, OVERLAYFS_MAGIC, TMPFS_MAGIC, UPPER_TMPFS_FLAGS, WRITABLE_DIR_FLAGS};
use crate::fs::root::ImageDir;
use crate::fs::tree;
use crate::model::facts::Learned;
use crate::model::options::OverlayMode;
use crate::model::outcome::{Failure, Op};
use crate::model::paths::RW_BASE;
use crate::model::writable::{DirName, DirState};

/// A dir being made writable: the image dir, opened before anything was mounted on it, and
/// the size of its tmpfs.
pub(super) struct Writable {
    dir: DirName,
    pub(super) lower: ImageDir,
    st: rustix::fs::Stat,
    size: Option<String>,
}

/// An overlay the writable-dirs phase prepared: mounted once the layers are in its upper dir.
pub(super) struct Pending {
    pub(super) writable: Writable,
    /// The tmpfs holding upper/ and work/ (none when they are on the scratch filesystem).
    rw: Option<PathBuf>,
    pub(super) upper: ImageDir,
    work: PathBuf,
}

/// What a writable dir keeps open: the overlay's upper dir while the overlay is to be mounted
/// ([`DirState::Prepared`]), or copy mode's tmpfs ([`DirState::Copy`]).
pub(super) enum Opened {
    Upper(Box<Pending>),
    Tmpfs(ImageDir),
}

impl Executor<'_> {
    /// Makes `dir` writable: in overlay mode a tmpfs with the upper and work dirs, the overlay
    /// itself mounted after the layers are in the upper dir ([`Step::Overlay`]); in copy mode
    /// (or when that tmpfs cannot be had) a tmpfs on the dir with a copy of the image dir.
    pub(super) fn make_writable(
        &mut self,
        dir: &DirName,
        mode: OverlayMode,
        size: Option<&str>,
    ) -> Result<Done, Failure> {
        let lower = self.target.dir(dir).map_err(|e| self.io(Op::Open, &self.target, dir, &e))?;
        let st = rustix::fs::fstat(&lower.fd).map_err(|e| Failure::io(Op::Open, Some(&lower.path), &e.into()))?;
        let writable = Writable { dir: dir.clone(), lower, st, size: size.map(str::to_string) };
        let mut why_copy = (mode == OverlayMode::Copy && self.options.mode == OverlayMode::Overlay)
            .then(|| Failure::new(Op::Mount, None, "overlayfs is not available"));
        if mode == OverlayMode::Overlay {
            match self.prepare_overlay(dir, &st, size) {
                Ok((rw, upper, work)) => {
                    self.opened.push((dir.clone(), Opened::Upper(Box::new(Pending { writable, rw, upper, work }))));
                    let detail = match self.facts.writable.scratch() {
                        Some(scratch) => format!("upper and work dirs at /{scratch}/{dir}, overlay after the layers"),
                        None => {
                            format!("upper and work dirs on the tmpfs at /{RW_BASE}/{dir}, overlay after the layers")
                        }
                    };
                    return Ok(Done::ok(detail).learned([Learned::Dir(dir.clone(), DirState::Prepared)]));
                }
                Err(e) => {
                    log::warn!("/{dir}: no tmpfs for the overlay ({e}); falling back to copy mode");
                    why_copy = Some(e);
                }
            }
        }
        let (entries, copied) = self.copy_mode(&writable, None)?;
        let detail = format!("tmpfs + copy of {entries} entries");
        Ok(match why_copy {
            None => Done::ok(detail),
            Some(e) => Done::degraded(format!("{detail} (overlayfs failed)"), e),
        }
        .learned([copied]))
    }

    /// A tmpfs at /run/stateless/rw/<dir> holding upper/ (with the image dir's owner and mode:
    /// the overlay root shows the upper's) and work/; with a scratch filesystem, a dir on it
    /// instead (`None` for the tmpfs).
    fn prepare_overlay(
        &mut self,
        dir: &DirName,
        st: &rustix::fs::Stat,
        size: Option<&str>,
    ) -> Result<(Option<PathBuf>, ImageDir, PathBuf), Failure> {
        self.require_run_tmpfs()?;
        let on_scratch = self.facts.writable.scratch().map(str::to_owned);
        let rw_rel = on_scratch.as_ref().map_or_else(|| Path::new(RW_BASE).join(dir), |s| Path::new(s).join(dir));
        let rw =
            self.target.create_dir_all(&rw_rel, 0o755).map_err(|e| self.io(Op::Mkdir, &self.target, &rw_rel, &e))?;
        if on_scratch.is_none() {
            let options = mounts::tmpfs_options(0o755, 0, 0, size);
            self.sys
                .mount("tmpfs", &rw.path, "tmpfs", UPPER_TMPFS_FLAGS, &options)
                .map_err(|e| Failure::io(Op::Mount, Some(&rw.path), &e))?;
        }
        let made = (|| {
            let make = |name: &str| {
                let rel = rw_rel.join(name);
                self.target.create_dir_all(&rel, 0o700).map_err(|e| self.io(Op::Mkdir, &self.target, &rel, &e))
            };
            let (upper, work) = (make("upper")?, make("work")?);
            let owner = |e: rustix::io::Errno| Failure::io(Op::Mkdir, Some(&upper.path), &e.into());
            let (uid, gid) = (rustix::fs::Uid::from_raw(st.st_uid), rustix::fs::Gid::from_raw(st.st_gid));
            rustix::fs::fchown(&upper.fd, Some(uid), Some(gid)).map_err(owner)?;
            rustix::fs::fchmod(&upper.fd, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(owner)?;
            Ok((upper, work.path))
        })();
        match made {
            Ok((upper, work)) => Ok((on_scratch.is_none().then_some(rw.path), upper, work)),
            Err(e) => {
                drop(rw);
                if on_scratch.is_none() {
                    self.unmount(&self.target.host_path(&rw_rel));
                }
                Err(e)
            }
        }
    }

    /// The overlay on `dir`, its upper dir filled by the layers: the image dir below, every path
    /// checked. When overlayfs refuses, copy mode: a tmpfs on the dir with the image dir's copy
    /// and the upper dir's on top (a degraded step), the upper's tmpfs taken off again.
    pub(super) fn mount_overlay(&mut self, dir: &DirName) -> Result<Done, Failure> {
        let i = self.opened.iter().position(|(d, o)| d == dir && matches!(o, Opened::Upper(_)));
        let Some((_, Opened::Upper(p))) = i.map(|i| self.opened.remove(i)) else {
            return Ok(Done::skipped("no upper dir was prepared"));
        };
        let p = *p;
        let lower = &p.writable.lower.path;
        let data =
            mounts::overlay_options(lower, &p.upper.path, &p.work).map_err(|e| Failure::new(Op::Mount, Some(lower), e));
        let mounted = data.and_then(|data| {
            self.sys
                .mount("overlay", lower, "overlay", WRITABLE_DIR_FLAGS, &data)
                .map_err(|e| Failure::io(Op::Mount, Some(lower), &e))?;
            // Only a verified overlay is written to later (the host files).
            match self.sys.is_mounted(lower, OVERLAYFS_MAGIC) {
                true => Ok(()),
                false => Err(Failure::new(Op::Mount, Some(lower), "mounted, but no overlay is there")),
            }
        });
        let why = match mounted {
            Ok(()) => {
                let mounted = Learned::Dir(dir.clone(), DirState::Overlay { mount: self.sys.mount_key(lower) });
                let marked = self.mark_extrinsic("overlay", dir);
                let detail = format!("mounted: the image dir below, the layers in the upper dir{marked}");
                return Ok(Done::ok(detail).learned([mounted]));
            }
            Err(why) => why,
        };
        log::warn!("/{dir}: overlayfs failed ({why}); falling back to copy mode");
        let copied = self.copy_mode(&p.writable, Some(&p.upper));
        drop(p.upper);
        if let Some(rw) = &p.rw {
            self.unmount(rw);
        }
        let (entries, copied) = copied?;
        let detail = format!("tmpfs + copy of {entries} entries, the layers' on top (overlayfs failed)");
        Ok(Done::degraded(detail, why).learned([copied]))
    }

    /// Appends `dir`'s mount of `source` to libmount's utab as `x-initrd.mount`
    /// ([`mounts::utab_extrinsic`]): systemd leaves it to systemd-shutdown. What the step's
    /// detail adds: where, or why not (logged; the boot goes on, only the shutdown is noisier).
    /// Only into a tmpfs /run: else the file would land in the image (on the server, for a
    /// root mounted read-write).
    pub(super) fn mark_extrinsic(&self, source: &str, dir: &DirName) -> String {
        let marked = match self.run_is_tmpfs() {
            Ok(true) => mounts::mark_extrinsic(&self.target, source, dir.as_str()).map_err(|e| e.to_string()),
            Ok(false) => Err("/run is not a tmpfs".to_string()),
            Err(failure) => Err(failure.to_string()),
        };
        match marked {
            Ok(()) => format!("; x-initrd.mount in /{}", mounts::UTAB),
            Err(e) => {
                log::warn!(
                    "/{dir}: not marked x-initrd.mount in /{}: {e} (systemd may fail to unmount it at shutdown)",
                    mounts::UTAB
                );
                String::new()
            }
        }
    }

    /// Whether the target's /run is a tmpfs: only then does what is written there stay out of
    /// the image (a read-write root's /run is on the server). Err: it cannot be opened.
    pub(super) fn run_is_tmpfs(&self) -> Result<bool, Failure> {
        let run = self.target.dir("run").map_err(|e| self.io(Op::Open, &self.target, "run", &e))?;
        Ok(self.sys.is_mounted(&run.path, TMPFS_MAGIC))
    }

    /// [`Self::run_is_tmpfs`] for a step that cannot go on without it.
    pub(crate) fn require_run_tmpfs(&self) -> Result<(), Failure> {
        match self.run_is_tmpfs()? {
            true => Ok(()),
            false => Err(Failure::new(Op::Mount, Some(&self.target.host_path("run")), "/run is not a tmpfs")),
        }
    }

    /// Unmounts what was mounted on `path`; false (logged) when it stays.
    pub(crate) fn unmount(&self, path: &Path) -> bool {
        match self.sys.umount(path) {
            Ok(()) => true,
            Err(e) => {
                log::error!("umount {}: {e}", path.display());
                false
            }
        }
    }

    /// tmpfs straight on the dir, filled from a handle on the image dir opened before the mount
    /// (and then from `upper`, when the layers are already in an overlay's upper dir).
    /// Anything not copied is a failure of the step: the tmpfs goes again, and the dir stays the
    /// complete read-only image dir rather than a writable half of it. The entries copied, and
    /// what the dir is now.
    fn copy_mode(&mut self, writable: &Writable, upper: Option<&ImageDir>) -> Result<(usize, Learned), Failure> {
        let entries = self.fill_tmpfs(writable, upper)?;
        let state = DirState::Copy { mount: self.sys.mount_key(&writable.lower.path) };
        let marked = self.mark_extrinsic("tmpfs", &writable.dir);
        if !marked.is_empty() {
            log::info!("/{}: tmpfs{marked}", writable.dir);
        }
        Ok((entries, Learned::Dir(writable.dir.clone(), state)))
    }

    fn fill_tmpfs(&mut self, writable: &Writable, upper: Option<&ImageDir>) -> Result<usize, Failure> {
        let Writable { dir, lower, st, size } = writable;
        let options = mounts::tmpfs_options(st.st_mode, st.st_uid, st.st_gid, size.as_deref());
        self.sys
            .mount("tmpfs", &lower.path, "tmpfs", WRITABLE_DIR_FLAGS, &options)
            .map_err(|e| Failure::io(Op::Mount, Some(&lower.path), &e))?;
        // From here on, a failure takes the tmpfs off again: an empty /etc is worse than the
        // image's read-only one.
        let opened = self.target.dir(dir).map_err(|e| self.io(Op::Open, &self.target, dir, &e)).and_then(|fresh| {
            let up = rustix::fs::fstat(&fresh.fd).map_err(|e| Failure::io(Op::Open, Some(&fresh.path), &e.into()))?;
            // Never copy into the image itself: the new tmpfs must be a different filesystem.
            if up.st_dev == st.st_dev {
                let message = "still the image dir after mounting tmpfs on it: nothing copied";
                return Err(Failure::new(Op::Mount, Some(&fresh.path), message));
            }
            Ok(fresh)
        });
        let fresh = match opened {
            Ok(fresh) => fresh,
            Err(e) => {
                self.unmount(&lower.path);
                return Err(e);
            }
        };
        let mut copied = tree::copy_tree(lower.fd.as_fd(), fresh.fd.as_fd(), &|_, _| tree::Verdict::Copy);
        if let Some(upper) = upper {
            let layers = tree::copy_tree(upper.fd.as_fd(), fresh.fd.as_fd(), &|_, _| tree::Verdict::Copy);
            copied.errors.extend(layers.errors);
        }
        for error in &copied.errors {
            log::warn!("copy mode /{dir}: {error}");
        }
        if let Some(lost) = copied.errors.iter().find(|e| e.is_loss()) {
            let path = fresh.path.clone();
            drop(fresh); // an open fd on the tmpfs would keep it busy
            let off = if self.unmount(&path) { "taken off again" } else { "left mounted: it could not be taken off" };
            let count = copied.errors.iter().filter(|e| e.is_loss()).count();
            let message = format!("{count} entries not copied, first {lost}; the tmpfs was {off}");
            return Err(Failure {
                errno: Some(lost.errno.raw_os_error()),
                ..Failure::new(Op::Copy, Some(&path), message)
            });
        }
        self.opened.push((dir.clone(), Opened::Tmpfs(fresh)));
        Ok(copied.written.len())
    }
}
