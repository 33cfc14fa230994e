//! The local disks, opt-in as the old `findlocal`/`uselocal` did: swap areas
//! (`stateless.swap=`) and a scratch filesystem (`stateless.scratch=`) for the writable dirs'
//! upper dirs and /tmp. Disks are found by their signatures ([`crate::fs::disks`]), and one with
//! more than one is used for neither; nothing is written to a disk but the swap areas used and
//! the filesystem that carries the scratch label, and there only below its `stateless` dir.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Instant;

use rustix::mount::MountFlags;

use crate::boot::execute::{Done, Executor};
use crate::boot::plan::SCRATCH_CLEAN_BOUND;
use crate::fs::disks::{self, Disk, Removal, Signature};
use crate::model::facts::Learned;
use crate::model::options::Swap;
use crate::model::outcome::{Failure, Op};
use crate::model::paths::{SCRATCH, SCRATCH_OWN, SCRATCH_TMP, SCRATCH_UPPERS};

/// `vdb1 (label lab-swap)`.
fn named(disk: &Disk) -> String {
    match disk.signatures.iter().find_map(|s| s.label.as_deref()) {
        Some(label) => format!("{} (label {label})", disk.name),
        None => disk.name.clone(),
    }
}

impl Executor<'_> {
    /// swapon on every swap area `wanted` names; a failed one is named, the others still used.
    /// One whose device carries another signature too is left alone, and named (for a label:
    /// degraded).
    pub(crate) fn enable_swap(&mut self, wanted: &Swap) -> Result<Done, Failure> {
        let found = disks::scan(&self.running);
        let label = match wanted {
            Swap::Auto => None,
            Swap::Label(label) => Some(label.as_str()),
        };
        let (areas, ambivalent): (Vec<&Disk>, Vec<&Disk>) =
            found.iter().filter(|d| d.holds(true, label).is_some()).partition(|d| !d.ambivalent());
        // Swap there could write over what the other signature stands for: a RAID member whose
        // array holds the swap area, an image or partitions mkswap wrote over without wiping.
        let refused = (!ambivalent.is_empty()).then(|| {
            let each: Vec<String> = ambivalent.iter().map(|d| format!("{} ({})", named(d), d.kinds())).collect();
            format!("more than one signature, left alone: {}", each.join(", "))
        });
        if let Some(refused) = &refused {
            log::warn!("swap: {refused}");
        }
        if areas.is_empty() {
            let none = refused.clone().unwrap_or_else(|| format!("none on the {} block devices", found.len()));
            return Ok(match wanted {
                Swap::Auto => Done::skipped(none),
                // Asked for by name: a missing driver or label, or an area refused, is worth a
                // warning.
                Swap::Label(label) => {
                    let why = refused.unwrap_or_else(|| format!("no swap area labelled {label}"));
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
        let mut detail = format!("on {}", on.join(", "));
        if let Some(refused) = refused {
            detail += &format!("; {refused}");
            if matches!(wanted, Swap::Label(_)) {
                failed = failed.or_else(|| Some(Failure::new(Op::Swapon, None, refused)));
            }
        }
        match failed {
            None => Ok(Done::ok(detail)),
            Some(e) if on.is_empty() => Err(e),
            Some(e) => Ok(Done::degraded(detail, e)),
        }
    }

    /// Mounts the filesystem labelled `label` on /run/stateless/scratch (`nosuid,nodev`), makes
    /// this boot's dir on it afresh ([`crate::model::paths::SCRATCH_OWN`]) and puts /tmp there (a
    /// bind mount); the writable dirs' upper dirs follow. No such filesystem, or two, or one
    /// whose device carries another signature too, or a failure after the mount (then it is
    /// taken off again): failed (degradable), the upper dirs stay in memory.
    pub(crate) fn mount_scratch(&mut self, label: &str) -> Result<Done, Failure> {
        let found = disks::scan(&self.running);
        let labelled: Vec<(&Disk, &Signature)> =
            found.iter().filter_map(|d| Some((d, d.holds(false, Some(label))?))).collect();
        let (disk, fs) = match labelled.as_slice() {
            // Mounted and written, it could corrupt what the other signature stands for.
            [(one, _)] if one.ambivalent() => {
                let why = format!("{} has more than one signature ({}): not used", named(one), one.kinds());
                return Err(Failure::new(Op::Mount, Some(&one.node), why));
            }
            [one] => *one,
            [] => {
                let why = format!("no filesystem labelled {label} on the {} block devices", found.len());
                return Err(Failure::new(Op::Mount, None, why));
            }
            many => {
                let names: Vec<String> = many.iter().map(|(d, _)| d.name.clone()).collect();
                let why = format!("{} filesystems labelled {label} ({}): none used", many.len(), names.join(", "));
                return Err(Failure::new(Op::Mount, None, why));
            }
        };
        let fstype = fs.kind.as_str();
        self.require_run_tmpfs()?;
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
                }
                .learned([Learned::UppersOnScratch]))
            }
            Err(e) => {
                self.unmount(&at.path);
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
        let deadline = Instant::now() + SCRATCH_CLEAN_BOUND;
        let removal = disks::remove_trees(own.fd.as_fd(), "old-", deadline, crate::sys::btrfs_subvolume_writable);
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

#[cfg(test)]
pub(crate) mod tests {
    use std::process::Command;

    use super::*;
    use crate::boot::execute::Context;
    use crate::fs::root::ImageRoot;
    use crate::model::outcome::Mode;
    use crate::sys::fake::{Call, Fake};

    /// A loop device on a disk image, detached on drop.
    pub(crate) struct Loop(String);

    impl Loop {
        fn new(file: &Path) -> Self {
            let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().unwrap();
            assert!(out.status.success(), "missing prerequisite: losetup (root): {out:?}");
            Loop(String::from_utf8(out.stdout).unwrap().trim().to_owned())
        }
    }

    impl Drop for Loop {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }

    /// A running root whose /sys/class/block and /dev show `disks`, each a disk image made by a
    /// shell command (`$1` the image) on a loop device under the given name.
    pub(crate) fn running(dir: &Path, disks: &[(&str, &str)]) -> Vec<Loop> {
        let mut loops = Vec::new();
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        for (name, make) in disks {
            std::fs::create_dir_all(dir.join("sys/class/block").join(name)).unwrap();
            let file = dir.join(format!("{name}.img"));
            std::fs::File::create(&file).unwrap().set_len(64 << 20).unwrap();
            let out = Command::new("sh").args(["-c", make, "sh"]).arg(&file).output().unwrap();
            assert!(out.status.success(), "missing prerequisite: `{make}`: {out:?}");
            let device = Loop::new(&file);
            let rdev = rustix::fs::stat(device.0.as_str()).unwrap().st_rdev;
            let node = dir.join("dev").join(name);
            rustix::fs::mknodat(rustix::fs::CWD, &node, rustix::fs::FileType::BlockDevice, 0o600.into(), rdev).unwrap();
            loops.push(device);
        }
        loops
    }

    #[test]
    #[ignore = "needs root: loop devices for the disks (tests/run runs it)"]
    fn swap_leaves_a_device_with_another_signature_alone() {
        let dir = std::env::temp_dir().join(format!("stateless-swap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // vdc: an ISO image with a partition table, then mkswap (which wiped nothing).
        let hybrid = "mkdir -p $1.d && genisoimage -quiet -o $1.iso $1.d && dd if=$1.iso of=$1 conv=notrunc \\
                      status=none && echo start=2048 | sfdisk -q --wipe never $1 && mkswap -L lab-swap $1 2>/dev/null";
        let loops = running(&dir, &[("vdb", "mkswap -q -L lab-swap $1"), ("vdc", hybrid)]);
        let sys = Fake::default();
        let open = || ImageRoot::open(&dir).unwrap();
        let mut executor = Executor::new(Context::new(&sys, open(), open(), Mode::Boot));
        let refused = "more than one signature, left alone: vdc (label lab-swap) (swap and iso9660)";
        let done = executor.enable_swap(&Swap::Auto).unwrap();
        assert_eq!(done, Done::ok(format!("on vdb (label lab-swap); {refused}")));
        let named = executor.enable_swap(&Swap::Label("lab-swap".into())).unwrap();
        let warning = Failure::new(Op::Swapon, None, refused);
        assert_eq!(named, Done::degraded(format!("on vdb (label lab-swap); {refused}"), warning.clone()));
        assert_eq!(sys.calls(), [Call::Swapon(dir.join("dev/vdb")), Call::Swapon(dir.join("dev/vdb"))]);
        // Only the one with two signatures there: none used.
        std::fs::remove_dir(dir.join("sys/class/block/vdb")).unwrap();
        assert_eq!(executor.enable_swap(&Swap::Auto).unwrap(), Done::skipped(refused));
        assert_eq!(executor.enable_swap(&Swap::Label("lab-swap".into())).unwrap(), Done::degraded(refused, warning));
        assert_eq!(sys.calls().len(), 2, "no more swapon");
        drop(loops);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[ignore = "needs root: loop devices for the disks (tests/run runs it)"]
    fn scratch_leaves_a_device_with_another_signature_alone() {
        let dir = std::env::temp_dir().join(format!("stateless-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let loops = running(&dir, &[("vdd", "mkfs.ext4 -q -L lab-scratch $1")]);
        // The kernel found a partition on it: the whole disk's ext4 is what is left of an older
        // life, or the partitions are.
        std::fs::create_dir_all(dir.join("sys/class/block/vdd/vdd1")).unwrap();
        std::fs::write(dir.join("sys/class/block/vdd/vdd1/partition"), "1\n").unwrap();
        let sys = Fake::default();
        let open = || ImageRoot::open(&dir).unwrap();
        let mut executor = Executor::new(Context::new(&sys, open(), open(), Mode::Boot));
        let why = "vdd (label lab-scratch) has more than one signature (ext4 and partition-table): not used";
        let failure = Failure::new(Op::Mount, Some(&dir.join("dev/vdd")), why);
        assert_eq!(executor.mount_scratch("lab-scratch").err(), Some(failure));
        assert_eq!(sys.calls(), [], "nothing mounted");
        drop(loops);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
