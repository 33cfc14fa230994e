//! The local disks, opt-in as the old `findlocal`/`uselocal` did: swap areas
//! (`stateless.swap=`) and a scratch filesystem (`stateless.scratch=`) for the writable dirs'
//! upper dirs and /tmp. Disks are found by their signatures ([`crate::fs::disks`]); nothing is
//! written to a disk but the filesystem that carries the scratch label, and there only below
//! its `stateless` dir.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use rustix::mount::MountFlags;

use crate::boot::execute::{Done, Executor};
use crate::boot::plan::{SCRATCH, SCRATCH_CLEAN_BOUND, SCRATCH_OWN, SCRATCH_TMP, SCRATCH_UPPERS};
use crate::fs::disks::{self, Disk, Removal};
use crate::fs::mounts::TMPFS_MAGIC;
use crate::model::options::Swap;
use crate::model::outcome::{Failure, Mode, Op};

/// `vdb1 (label lab-swap)`.
fn named(disk: &Disk) -> String {
    match disk.signature.as_ref().and_then(|s| s.label.as_deref()) {
        Some(label) => format!("{} (label {label})", disk.name),
        None => disk.name.clone(),
    }
}

impl Executor<'_> {
    /// swapon on every swap area `wanted` names; a failed one is named, the others still used.
    pub(crate) fn swap(&mut self, wanted: &Swap) -> Result<Done, Failure> {
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1: the host's swap is left alone"));
        }
        let found = disks::scan(&self.running);
        let label = match wanted {
            Swap::Auto => None,
            Swap::Label(label) => Some(label.as_str()),
        };
        let areas: Vec<&Disk> = found.iter().filter(|d| d.holds(true, label)).collect();
        if areas.is_empty() {
            let none = format!("none on the {} block devices", found.len());
            return Ok(match wanted {
                Swap::Auto => Done::skipped(none),
                // Asked for by name: a missing driver or label is worth a warning.
                Swap::Label(label) => {
                    let why = format!("no swap area labelled {label}");
                    Done::degraded(none, Failure::new(Op::Swapon, None, why))
                }
            });
        }
        let (mut on, mut failed) = (Vec::new(), None);
        for area in areas {
            match self.sys.swapon(&area.node) {
                Ok(()) => on.push(named(area)),
                Err(e) => {
                    log::warn!("swapon {}: {e}", area.node.display());
                    failed = Some(Failure::io(Op::Swapon, Some(&area.node), &e));
                }
            }
        }
        match failed {
            None => Ok(Done::ok(format!("on {}", on.join(", ")))),
            Some(e) if on.is_empty() => Err(e),
            Some(e) => Ok(Done::degraded(format!("on {}", on.join(", ")), e)),
        }
    }

    /// Mounts the filesystem labelled `label` on /run/stateless/scratch (`nosuid,nodev`), makes
    /// this boot's dir on it afresh ([`crate::boot::plan::SCRATCH_OWN`]) and puts /tmp there (a
    /// bind mount); the writable dirs' upper dirs follow. No such filesystem, or two, or a
    /// failure after the mount (then it is taken off again): failed (degradable), the upper
    /// dirs stay in memory.
    pub(crate) fn scratch(&mut self, label: &str) -> Result<Done, Failure> {
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1: no disk is mounted"));
        }
        let found = disks::scan(&self.running);
        let labelled: Vec<&Disk> = found.iter().filter(|d| d.holds(false, Some(label))).collect();
        let disk = match labelled.as_slice() {
            [one] => *one,
            [] => {
                let why = format!("no filesystem labelled {label} on the {} block devices", found.len());
                return Err(Failure::new(Op::Mount, None, why));
            }
            many => {
                let names: Vec<String> = many.iter().map(|d| d.name.clone()).collect();
                let why = format!("{} filesystems labelled {label} ({}): none used", many.len(), names.join(", "));
                return Err(Failure::new(Op::Mount, None, why));
            }
        };
        let fstype = disk.signature.as_ref().map_or("", |s| s.kind.as_str());
        let run = self.target.dir("run").map_err(|e| self.io(Op::Open, &self.target, "run", &e))?;
        if !self.sys.is_mounted(&run.path, TMPFS_MAGIC) {
            return Err(Failure::new(Op::Mount, Some(&run.path), "/run is not a tmpfs"));
        }
        let at =
            self.target.create_dir_all(SCRATCH, 0o755).map_err(|e| self.io(Op::Mkdir, &self.target, SCRATCH, &e))?;
        let source = disk.node.to_string_lossy().into_owned();
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        self.sys.mount(&source, &at.path, fstype, flags, "").map_err(|e| {
            let mut failure = Failure::io(Op::Mount, Some(&disk.node), &e);
            if e.raw_os_error() == Some(libc::ENODEV) {
                // Loaded before the writable dirs, from the root stateless runs in: the
                // initramfs in initramfs mode (`stateless initramfs --add-module`).
                failure.message += &format!(": the kernel has no {fstype} driver: name it in stateless.modules=");
            }
            failure
        })?;
        match self.fill_scratch() {
            Ok((removal, tmp)) => {
                let mut detail = format!(
                    "{} ({fstype}) on /{SCRATCH}; {} entries of earlier boots removed",
                    named(disk),
                    removal.removed
                );
                if removal.timed_out {
                    detail += " (the rest at the next boot: the time bound)";
                }
                if removal.kept {
                    detail += " (some kept: a mount point below, or an error)";
                }
                Ok(match tmp {
                    Ok(()) => Done::ok(format!("{detail}; /tmp on it")),
                    Err(e) => Done::degraded(format!("{detail}; /tmp stays in memory"), e),
                })
            }
            Err(e) => {
                self.take_off(&at.path);
                Err(e)
            }
        }
    }

    /// On the mounted scratch filesystem: its `stateless/` dir (root's, 0700), the last boot's
    /// `boot/` renamed away and the earlier ones removed within the bound, a fresh `boot/` with
    /// `dirs/` and `tmp/` (1777), bound onto /tmp (the result of that apart: a failure leaves
    /// /tmp in memory, the rest still used).
    fn fill_scratch(&self) -> Result<(Removal, Result<(), Failure>), Failure> {
        let mkdir = |rel: &str, mode| {
            self.target.create_dir_all(rel, mode).map_err(|e| self.io(Op::Mkdir, &self.target, rel, &e))
        };
        let own = mkdir(SCRATCH_OWN, 0o700)?;
        let fail = |e: rustix::io::Errno| Failure::io(Op::Write, Some(&own.path), &e.into());
        rustix::fs::fchown(&own.fd, Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT)).map_err(fail)?;
        rustix::fs::fchmod(&own.fd, rustix::fs::Mode::from_raw_mode(0o700)).map_err(fail)?;
        let old = format!("old-{:016x}", self.sys.random());
        match rustix::fs::renameat(&own.fd, "boot", &own.fd, old.as_str()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(fail(e)),
        }
        // Only `boot` and `old-*` are ever made here, in a dir only root may write.
        let removal = disks::remove_trees(own.fd.as_fd(), "old-", Instant::now() + SCRATCH_CLEAN_BOUND);
        mkdir(SCRATCH_UPPERS, 0o700)?;
        let tmp = mkdir(SCRATCH_TMP, 0o700)?;
        rustix::fs::fchmod(&tmp.fd, rustix::fs::Mode::from_raw_mode(0o1777))
            .map_err(|e| Failure::io(Op::Mkdir, Some(&tmp.path), &e.into()))?;
        let bound = self
            .target
            .dir("tmp")
            .and_then(|t| self.sys.mount(&tmp.path.to_string_lossy(), &t.path, "", MountFlags::BIND, ""))
            .map_err(|e| Failure::io(Op::Mount, Some(Path::new("/tmp")), &e));
        Ok((removal, bound))
    }
}
