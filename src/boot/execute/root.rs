//! Initramfs mode's root: mounting the image over NFS (stepping down versions), checking it,
//! switching into it.

use std::path::Path;
use std::time::{Duration, Instant};

use rustix::mount::MountFlags;

use super::{Done, Executor};
use crate::boot::plan::NEW_ROOT;
use crate::boot::rootcheck;
use crate::fs::root::{relative, ImageRoot};
use crate::model::facts::Learned;
use crate::model::image::{sha256_of_line, BootedImage, ImageFormat};
use crate::model::mount::EARLY_MOUNTS;
use crate::model::nfsroot::{self, Dropped, Mounted, NfsMount};
use crate::model::outcome::{Failure, Op};
use crate::model::paths::EXPORT;
use crate::sys::MountCall;

/// The versions given up on the way, for a failure's message: `; NFSv4.2 dropped: <why>`...
fn said_dropped(dropped: &[Dropped]) -> String {
    dropped.iter().map(|d| format!("; NFSv{} dropped: {}", d.version, d.reason)).collect()
}

/// Where `file` on `export` leads when it is a symlink (`current`: the link's text), and the
/// sha256 its `.sha256` beside it names (the target's, for a symlink, as `stateless image
/// publish` writes them); each `None` when there is none or it cannot be read.
fn image_names(export: &ImageRoot, file: &str) -> (Option<String>, Option<String>) {
    let rel = relative(file);
    let target = rustix::fs::readlinkat(export.fd(), &rel, Vec::new()).ok();
    let target = target.map(|t| t.to_string_lossy().into_owned());
    let named = match (&target, rel.parent()) {
        (Some(t), Some(dir)) => dir.join(t),
        _ => rel.clone(),
    };
    let mut sums = named.into_os_string();
    sums.push(".sha256");
    let line = export.read_file(&sums, 4096).ok().flatten();
    (target.map(|t| crate::model::text::escape(t.as_bytes())), line.and_then(|l| sha256_of_line(&l)))
}

/// What is read from an NFS mount before the boot goes on with it.
pub(super) enum Check<'a> {
    /// The root's tree ([`rootcheck`]): its stateless.conf, its init, its layer root.
    Tree,
    /// An image file on the export: its head, which tells its format.
    ImageHead(&'a str),
}

/// What the check of a root just mounted decided.
enum RootVerdict {
    /// The boot goes on with it; what was read, and an image file's head.
    Booting(String, Vec<u8>),
    /// Unmounted: to be mounted again with these older versions.
    SteppedDown(&'static [&'static str]),
}

impl Executor<'_> {
    /// Mounts the NFS root on /root of the initramfs: mount(2) with text options, each version
    /// of [`NfsMount::versions`] in order, its module loaded before its first try (the kernel's
    /// request_module would need a modprobe); all again with backoff (1 s doubling to 8 s, plus
    /// up to 1 s of jitter so that a lab's clients spread out) until `stateless.nfs.timeout=`. Each root
    /// mounted is checked ([`rootcheck`]); one that gives EIO with NFSv4.2 or 4.1 is unmounted
    /// and mounted again with the next older minor version.
    pub(super) fn mount_nfs_root(&mut self, root: &Result<NfsMount, String>) -> Result<Done, Failure> {
        // The command line's words are in `why` as given.
        let mount =
            root.as_ref().map_err(|why| Failure::new(Op::Mount, None, crate::model::text::escape(why.as_bytes())))?;
        let (detail, _) = self.mount_nfs(mount, NEW_ROOT, &Check::Tree)?;
        Ok(Done::ok(detail))
    }

    /// An image-file root: `export` mounted read-only at /run/stateless/export as the NFS root
    /// is (versions, backoff, EIO's step-down: here on the image's head, which must be a
    /// squashfs or EROFS magic), `file` on it attached to a loop device (read-only; direct I/O:
    /// the image's own filesystem caches what it reads) and mounted read-only on /root as the
    /// filesystem its magic names, `loop` and that module loaded first; then the root check,
    /// in the image, as on a tree.
    pub(super) fn mount_image_root(&mut self, export: &NfsMount, file: &str) -> Result<Done, Failure> {
        let export = NfsMount { read_only: true, ..export.clone() };
        let (mounted, head) = self.mount_nfs(&export, EXPORT, &Check::ImageHead(file))?;
        let path = self.running.host_path(EXPORT).join(relative(file));
        let format = ImageFormat::of(&head).ok_or_else(|| Failure::new(Op::Read, Some(&path), "no image magic"))?;
        for module in ["loop", format.fstype()] {
            if let Err(e) = self.load_module(module) {
                log::warn!("{module} for the image root: {e}; going on (built in?)");
            }
        }
        let on_export =
            ImageRoot::open(&self.running.host_path(EXPORT)).map_err(|e| Failure::io(Op::Open, Some(&path), &e))?;
        let opened = on_export.open_file(relative(file), rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC);
        let fd = opened.map_err(|e| Failure::io(Op::Open, Some(&path), &e.into()))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| Failure::io(Op::Open, Some(&path), &e.into()))?;
        let (target, sha256) = image_names(&on_export, file);
        self.record.image = Some(BootedImage {
            source: format!("{}:{}", export.server, Path::new(&export.path).join(relative(file)).display()),
            target,
            format,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            sha256,
        });
        let dev = self.running.host_path("dev");
        let (device, held) = self
            .sys
            .attach_loop(&dev, std::os::fd::AsFd::as_fd(&fd), Path::new(file), true)
            .map_err(|e| Failure::io(Op::Mount, Some(&path), &e))?;
        let root = self
            .running
            .create_dir_all(NEW_ROOT, 0o755)
            .map_err(|e| self.io(Op::Mkdir, &self.running, NEW_ROOT, &e))?;
        self.sys
            .mount(&device.to_string_lossy(), &root.path, format.fstype(), MountFlags::RDONLY, "")
            .map_err(|e| Failure::io(Op::Mount, Some(&device), &e))?;
        drop(held); // the mount holds the device now; unmounted, it lets go of the file
        let image = ImageRoot::open(&root.path).map_err(|e| Failure::io(Op::Open, Some(&root.path), &e))?;
        let checked = rootcheck::check(self.sys, &image, &self.running, &self.cmdline)
            .map_err(|f| Failure { message: format!("{} (in the image {})", f.message, path.display()), ..f })?;
        let read = format!("read {} bytes of {}", checked.bytes, crate::model::text::escape(checked.init.as_bytes()));
        if let Some(nfs) = &mut self.record.nfs_root {
            (nfs.init, nfs.init_bytes) = (checked.init, checked.bytes as u64);
        }
        Ok(Done::ok(format!("export {mounted}; {format} on {} on /root; {read}", device.display())))
    }

    /// The first [`ImageFormat::HEAD`] bytes of `file` on the export `export`, read from the
    /// server (EIO is the root check's), which must name squashfs or EROFS.
    fn read_image_head(&self, export: &ImageRoot, file: &str) -> Result<Vec<u8>, Failure> {
        let path = export.host_path(relative(file));
        let fd = export
            .open_file(relative(file), rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC)
            .map_err(|e| Failure::io(Op::Open, Some(&path), &e.into()))?;
        let mut head = vec![0; ImageFormat::HEAD];
        let read = self.sys.read_start(std::os::fd::AsFd::as_fd(&fd), &path, &mut head);
        head.truncate(read.map_err(|e| Failure::io(Op::Read, Some(&path), &e))?);
        match ImageFormat::of(&head) {
            Some(_) => Ok(head),
            None => Err(Failure::new(Op::Read, Some(&path), "not a squashfs or EROFS image: neither magic")),
        }
    }

    /// [`Executor::mount_nfs_root`]'s mount of `mount` on `at` (in the running root), checked
    /// as `check` says. What the step says of it, and the head read of an image file.
    fn mount_nfs(&mut self, mount: &NfsMount, at: &str, check: &Check<'_>) -> Result<(String, Vec<u8>), Failure> {
        let mut modules = Vec::new();
        let dir = self.running.create_dir_all(at, 0o755).map_err(|e| self.io(Op::Mkdir, &self.running, at, &e))?;
        let flags = if mount.read_only { MountFlags::RDONLY } else { MountFlags::empty() };
        let client = self.facts.address.map(|a| a.addr);
        let mut versions = mount.versions();
        let mut dropped: Vec<Dropped> = Vec::new();
        let bound = Duration::from_secs(u64::from(self.options.nfs_timeout));
        let (started, mut slept, mut delay, mut tries) = (Instant::now(), Duration::ZERO, Duration::from_secs(1), 0);
        let waited = |slept: Duration| started.elapsed().max(slept);
        let mut last = None;
        'rounds: loop {
            // Each try gets what is left of the bound: a server that drops packets can hold a
            // mount(2) for minutes.
            let mut to_v3 = false;
            for version in versions.clone() {
                if to_v3 && version.starts_with('4') {
                    continue;
                }
                let Some(left) = bound.checked_sub(waited(slept)).filter(|l| !l.is_zero()) else { break };
                let module = nfsroot::module_for(version);
                if !modules.contains(&module) {
                    modules.push(module);
                    if let Err(e) = self.load_module(module) {
                        log::warn!("{module} for the NFS root: {e}; mounting all the same (built in?)");
                    }
                }
                tries += 1;
                let (fstype, data) = mount.attempt(version, client);
                let call = MountCall { source: &mount.source(), target: &dir.path, fstype, flags, data: &data };
                let e = match self.sys.mount_bounded(&call, left) {
                    Ok(()) => match self.check_root(mount, &dir.path, check, version, &data, &mut dropped)? {
                        RootVerdict::Booting(read, head) => {
                            let ms = started.elapsed().as_millis();
                            return Ok((format!("mounted as {fstype} {data} ({tries} tries, {ms} ms); {read}"), head));
                        }
                        RootVerdict::SteppedDown(older) => {
                            versions = older.to_vec();
                            last = None; // what the give-up says is in `dropped`
                            continue 'rounds;
                        }
                    },
                    Err(e) => e,
                };
                log::warn!("nfs root {}: mount -t {fstype} -o {data}: {e}", mount.source());
                // The next version only when the server refuses this one, as mount.nfs:
                // EPROTONOSUPPORT or EINVAL, the next one; ENOENT (the path is not in the NFSv4
                // pseudo-root) or EPERM with NFSv4, v3 at once. A server still starting gets the
                // newest again.
                let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
                let v3_next = version.starts_with('4') && versions.iter().any(|v| !v.starts_with('4'));
                to_v3 = v3_next && matches!(errno, Some(rustix::io::Errno::NOENT | rustix::io::Errno::PERM));
                let refused =
                    to_v3 || matches!(errno, Some(rustix::io::Errno::PROTONOSUPPORT | rustix::io::Errno::INVAL));
                if refused && !dropped.iter().any(|d| d.version == version) {
                    let reason = format!("mount: {}", e.to_string().to_lowercase());
                    dropped.push(Dropped { version: version.into(), reason });
                }
                last = Some(e);
                if !refused {
                    break;
                }
            }
            let waited = waited(slept);
            if waited >= bound {
                let e = last.unwrap_or_else(|| std::io::Error::other("no time left to mount again"));
                let message = format!(
                    "{mount}: gave up after {tries} tries in {} s (stateless.nfs.timeout={}): {e}{}",
                    waited.as_secs(),
                    self.options.nfs_timeout,
                    said_dropped(&dropped)
                );
                return Err(Failure { errno: e.raw_os_error(), ..Failure::new(Op::Mount, Some(&dir.path), message) });
            }
            // The last try comes at the bound.
            let jitter = Duration::from_millis(self.sys.random() % 1000);
            let pause = (delay + jitter).min(bound.saturating_sub(waited));
            log::warn!("nfs root {}: again in {} ms", mount.source(), pause.as_millis());
            self.sys.sleep(pause);
            slept += pause;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }

    /// Checks the root just mounted on `dir` with `version` (mount(2) options `data`) as
    /// [`rootcheck`] does. Passed: recorded for the report. EIO with a minor version that has
    /// older ones: unmounted, `dropped` told why, and the older ones to mount instead. Else the
    /// failure, the root left mounted (for a shell to look at).
    fn check_root(
        &mut self,
        mount: &NfsMount,
        dir: &Path,
        check: &Check<'_>,
        version: &str,
        data: &str,
        dropped: &mut Vec<Dropped>,
    ) -> Result<RootVerdict, Failure> {
        let image = ImageRoot::open(dir).map_err(|e| Failure::io(Op::Open, Some(dir), &e))?;
        let checked = match check {
            Check::Tree => {
                rootcheck::check(self.sys, &image, &self.running, &self.cmdline).map(|c| (c.init, c.bytes, Vec::new()))
            }
            Check::ImageHead(file) => {
                self.read_image_head(&image, file).map(|head| (file.to_string(), head.len(), head))
            }
        };
        let failure = match checked {
            Ok((init, bytes, head)) => {
                let read = format!("read {bytes} bytes of {}", crate::model::text::escape(init.as_bytes()));
                let (version, options, dropped) = (version.to_string(), data.to_string(), std::mem::take(dropped));
                self.record.nfs_root = Some(Mounted { version, options, init, init_bytes: bytes as u64, dropped });
                return Ok(RootVerdict::Booting(read, head));
            }
            Err(failure) => failure,
        };
        let older = nfsroot::older_minors(version);
        let Some(next) = older.first().filter(|_| rootcheck::is_eio(&failure)) else {
            let message =
                format!("{} ({} mounted with NFSv{version}){}", failure.message, mount.source(), said_dropped(dropped));
            return Err(Failure { message, ..failure });
        };
        let why = if version == "4.2" { " (NFSv4.2 READ_PLUS is broken in nfs-ganesha before 6.2)" } else { "" };
        log::warn!("nfs root check: {failure} with NFSv{version}; stepping down to NFSv{next}{why}");
        drop(image);
        self.sys.umount(dir).map_err(|e| Failure::io(Op::Umount, Some(dir), &e))?;
        dropped.push(Dropped { version: version.into(), reason: failure.to_string() });
        Ok(RootVerdict::SteppedDown(older))
    }

    /// Leaves the initramfs for the NFS root: the early mounts (/dev, /proc, /sys, /run, /tmp)
    /// move into it, the initramfs is emptied, the new root becomes / and both roots are it:
    /// the rest of the boot is that of on-root mode, with the image's /etc/stateless.conf.
    pub(super) fn switch_root(&mut self, new_root: &str) -> Result<Done, Failure> {
        let root = self.running.dir(new_root).map_err(|e| self.io(Op::Open, &self.running, new_root, &e))?;
        let image = ImageRoot::open(&root.path).map_err(|e| Failure::io(Op::Open, Some(&root.path), &e))?;
        let (mut moved, mut again) = (Vec::new(), Vec::new());
        for m in EARLY_MOUNTS {
            let from = self.running.host_path(m.target);
            if !self.sys.is_mounted(&from, m.magic) {
                continue;
            }
            // Into the image's own dir, never through a symlink of the image's.
            match image.dir(m.target).and_then(|to| self.sys.move_mount(&from, &to.path)) {
                Ok(()) => moved.push(format!("/{}", m.target)),
                Err(e) => {
                    log::warn!("move /{} into the new root: {e}; mounted afresh there after the switch", m.target);
                    again.push(m);
                }
            }
        }
        let (now_at, cleared) =
            self.sys.switch_root(&root.path).map_err(|e| Failure::io(Op::SwitchRoot, Some(&root.path), &e))?;
        cleared.failed.iter().for_each(|f| log::warn!("initramfs not emptied: {f}"));
        let reopen = |path: &Path| ImageRoot::open(path).map_err(|e| Failure::io(Op::Open, Some(path), &e));
        (self.running, self.target) = (reopen(&now_at)?, reopen(&now_at)?);
        for m in again {
            if let Err(e) = self.mount_early(&m) {
                log::error!("/{} in the new root: {e}", m.target);
            }
        }
        let (options, diagnostics) = crate::boot::adopt_options(&self.cmdline, &self.target);
        if self.options != options {
            log::warn!(
                "the image's {} applies from here on; what it says for the hardware, network and root phases came too late for this boot",
                crate::boot::CONFIG
            );
        }
        (self.options, self.diagnostics) = (options, diagnostics);
        self.start_log_server(true); // the image's stateless.conf may name one
        Ok(Done::ok(format!(
            "moved {}; initramfs emptied ({} entries removed, {} not)",
            moved.join(", "),
            cleared.removed,
            cleared.failed.len()
        ))
        .learned([Learned::SwitchedRoot]))
    }
}
