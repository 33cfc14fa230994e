//! Initramfs mode's root: mounting the image over NFS (stepping down versions), checking it,
//! switching into it.

use std::net::Ipv4Addr;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::Advice;
use rustix::mount::MountFlags;

use super::verity::{OpenImage, Trusted};
use super::{Done, Executor};
use crate::boot::plan::NEW_ROOT;
use crate::boot::rootcheck;
use crate::fs::hashcopy::{HashedCopy, Side};
use crate::fs::root::{relative, ImageRoot};
use crate::model::facts::Learned;
use crate::model::image::{fits_in_memory, sha256_of_line, BootedImage, ImageFormat, Verified};
use crate::model::mount::EARLY_MOUNTS;
use crate::model::nfsroot::{self, Dropped, FailedServer, Mounted, NfsMount};
use crate::model::outcome::{Failure, Op};
use crate::model::paths::{EXPORT, TRIES};
use crate::model::text::escape_path;
use crate::sys::MountCall;

/// The versions given up on the way, for a failure's message: `; NFSv4.2 dropped: <why>`...
fn said_dropped(dropped: &[Dropped]) -> String {
    dropped.iter().map(|d| format!("; NFSv{} dropped: {}", d.version, d.reason)).collect()
}

/// Each of several servers, for a failure's message: `; server 10.0.0.1: <why>`, then the
/// versions it gave up.
fn said_servers(servers: &[(NfsMount, Vec<&str>, Vec<Dropped>)], failed: &[FailedServer]) -> String {
    let said = |(one, _, dropped): &(NfsMount, Vec<&str>, Vec<Dropped>)| {
        let why = failed.iter().find(|f| f.server == one.server).map_or("not tried", |f| f.reason.as_str());
        format!("; server {}: {why}{}", one.server, said_dropped(dropped))
    };
    servers.iter().map(said).collect()
}

/// What an image's name on the export leads to.
struct ImageNames {
    /// The file's path on the export: where a symlink (`current`) leads, one level.
    named: std::path::PathBuf,
    /// The link's text, escaped, when the name is a symlink.
    target: Option<String>,
    /// What the `.sha256` beside the file named names (the target's, for a symlink, as
    /// `stateless image publish` writes them), when there is one that can be read.
    sha256: Option<String>,
}

fn image_names(export: &ImageRoot, file: &str) -> ImageNames {
    use std::os::unix::ffi::OsStringExt;
    let rel = relative(file);
    let target = rustix::fs::readlinkat(export.fd(), &rel, Vec::new()).ok().map(|t| t.into_bytes());
    let named = match (&target, rel.parent()) {
        (Some(t), Some(dir)) => dir.join(std::ffi::OsString::from_vec(t.clone())),
        _ => rel.clone(),
    };
    let line = export.read_file(crate::model::text::beside(&named, ".sha256"), 4096).ok().flatten();
    let sha256 = line.and_then(|l| sha256_of_line(&l));
    ImageNames { named, target: target.map(|t| crate::model::text::escape(&t)), sha256 }
}

/// An image file on the export, open, and its format as its head tells it.
pub(super) struct ImageFile {
    fd: OwnedFd,
    format: ImageFormat,
    /// Its first bytes, as read (a squashfs superblock says where its tables are).
    head: Vec<u8>,
}

/// What the check of a root just mounted decided.
enum RootVerdict<T> {
    /// The boot goes on with it; what was read, and what the check hands on.
    Booting(String, T),
    /// Unmounted: to be mounted again with these older versions.
    SteppedDown(&'static [&'static str]),
}

/// What reads a root just mounted before the boot goes on with it: the root check of a tree,
/// an image file's head. What it read (named), how many bytes, and what it hands on.
trait Checker<T>: Fn(&Executor<'_>, &ImageRoot) -> Result<(String, usize, T), Failure> {}
impl<T, F: Fn(&Executor<'_>, &ImageRoot) -> Result<(String, usize, T), Failure>> Checker<T> for F {}

/// How often copying an image into memory says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// How long a read of the image being copied into memory may go without data before its server
/// counts as gone (a hard NFS mount waits for ever) and the copy goes on from the next.
const COPY_STALL: Duration = Duration::from_secs(15);
/// The same with no other server to go on from: a day (a hard mount's wait, in effect).
const ALONE_STALL: Duration = Duration::from_secs(24 * 3600);

/// Rounds of tries within a bound (`stateless.nfs.timeout=`), an NFS or NBD root's: the time
/// waited (the clock's, or the pauses', whichever is more: the fake kernel's sleeps take none),
/// what is left of the bound, and the pause after a round: 1 s doubling to 8 s, plus up to 1 s
/// of jitter so that a lab's clients spread out, never past the bound (the last try comes at it).
pub(super) struct Rounds {
    bound: Duration,
    pub(super) started: Instant,
    slept: Duration,
    delay: Duration,
}

impl Rounds {
    pub(super) fn new(bound: Duration) -> Self {
        Rounds { bound, started: Instant::now(), slept: Duration::ZERO, delay: Duration::from_secs(1) }
    }

    pub(super) fn waited(&self) -> Duration {
        self.started.elapsed().max(self.slept)
    }

    /// What is left of the bound, when anything is.
    pub(super) fn left(&self) -> Option<Duration> {
        self.bound.checked_sub(self.waited()).filter(|l| !l.is_zero())
    }

    /// The bound has passed.
    pub(super) fn over(&self) -> bool {
        self.waited() >= self.bound
    }

    /// The pause before the next round, slept; `what` names the root in the log.
    pub(super) fn pause(&mut self, sys: &dyn crate::sys::Sys, what: &str) {
        let jitter = Duration::from_millis(sys.random() % 1000);
        let pause = (self.delay + jitter).min(self.bound.saturating_sub(self.waited()));
        log::warn!("{what}: again in {} ms", pause.as_millis());
        sys.sleep(pause);
        self.slept += pause;
        self.delay = (self.delay * 2).min(Duration::from_secs(8));
    }
}

/// An image being copied into memory: what it is and where it was found.
struct Copying<'a> {
    size: u64,
    /// Its .sha256's sum, when there is one.
    sha256: Option<&'a str>,
    /// Read through dm-verity once copied: every block checked.
    verified: bool,
    /// Its path here, for messages.
    path: &'a Path,
    /// The export it is read from, every server in it.
    export: &'a NfsMount,
    /// Its path on the export (where a symlink led): the file to go on from on another server.
    named: &'a Path,
    /// Its first bytes, as read: another server's must be the same.
    head: &'a [u8],
}

impl Executor<'_> {
    /// Mounts the NFS root on /root of the initramfs: mount(2) with text options, each version
    /// of [`NfsMount::versions`] in order, its module loaded before its first try (the kernel's
    /// request_module would need a modprobe); on each server in turn when there are several (a
    /// try bounded by the server's share of the timeout), the next at once when one refuses or
    /// does not answer; all again with backoff (1 s doubling to 8 s, plus
    /// up to 1 s of jitter so that a lab's clients spread out) until `stateless.nfs.timeout=`. Each root
    /// mounted is checked ([`rootcheck`]); one that gives EIO with NFSv4.2 or 4.1 is unmounted
    /// and mounted again with the next older minor version.
    pub(super) fn mount_nfs_root(&mut self, root: &Result<NfsMount, String>) -> Result<Done, Failure> {
        // The command line's words are in `why` as given.
        let mount =
            root.as_ref().map_err(|why| Failure::new(Op::Mount, None, crate::model::text::escape(why.as_bytes())))?;
        let (detail, ()) = self.mount_nfs(mount, NEW_ROOT, |me, root| {
            rootcheck::check(me.sys, root, &me.running, &me.cmdline).map(|c| (c.init, c.bytes, ()))
        })?;
        Ok(Done::ok(detail))
    }

    /// An image-file root: `export` mounted read-only at /run/stateless/export as the NFS root
    /// is (versions, backoff, EIO's step-down: here on the image's head, which must be a
    /// squashfs or EROFS magic), `file` on it attached to a loop device (read-only, read
    /// through the page cache: over NFS its readahead makes the READs fewer and larger; a boot
    /// in the lab made 435 READs of 54 KB instead of 1,550 of 17 KB with direct I/O, and fewer
    /// bytes; the file read sequentially ahead, squashfs's tables at once) and mounted
    /// read-only on /root as the filesystem its magic names, `loop` and that module loaded first; then the root check,
    /// in the image, as on a tree. With `ram`, the file is copied into memory first
    /// ([`Executor::image_into_memory`]) and the loop device reads the copy.
    /// With a root hash to hold it to ([`Executor::image_trust`]), the loop device is read
    /// through dm-verity ([`Executor::verity_device`]).
    pub(super) fn mount_image_root(
        &mut self,
        export: &NfsMount,
        file: &str,
        ram: bool,
        root_hash: Option<&str>,
    ) -> Result<Done, Failure> {
        let export = NfsMount { read_only: true, ..export.clone() };
        let (mounted, ImageFile { fd, format, head }) = self.mount_nfs(&export, EXPORT, |me, on| {
            me.read_image_head(on, file).map(|(image, bytes)| (file.to_string(), bytes, image))
        })?;
        let path = self.running.host_path(EXPORT).join(relative(file));
        for module in ["loop", format.fstype()] {
            if let Err(e) = self.load_module(module) {
                log::warn!("{module} for the image root: {e}; going on (built in?)");
            }
        }
        let st = rustix::fs::fstat(&fd).map_err(|e| Failure::io(Op::Open, Some(&path), &e.into()))?;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        // The loop device reads through this open file, with its readahead: sequential, twice
        // the export's (256 KiB on NFS's 128 KiB), so an image laid out in the order a boot
        // reads it (`image build --order`) comes in larger READs; and squashfs's tables, which
        // every lookup reads a few KiB at a time, read in now in one or two. Hints: a kernel
        // that takes neither reads the image all the same.
        let mut hints = vec![(0, None, Advice::Sequential)];
        if let Some((offset, len)) = ImageFormat::squashfs_tables(&head, size) {
            hints.push((offset, NonZeroU64::new(len), Advice::WillNeed));
        }
        for (offset, len, advice) in hints {
            if let Err(e) = rustix::fs::fadvise(&fd, offset, len, advice) {
                log::debug!("fadvise {:?} {}: {e}", advice, escape_path(&path));
            }
        }
        let on_export =
            ImageRoot::open(&self.running.host_path(EXPORT)).map_err(|e| Failure::io(Op::Open, Some(&path), &e))?;
        let ImageNames { named, target, sha256 } = image_names(&on_export, file);
        // Trusted or refused before a byte is copied or a device made.
        let candidate =
            OpenImage { fd: fd.as_fd(), size, format, head: &head, beside: Some((&on_export, &named)), path: &path };
        let trusted = self.image_trust(&candidate, root_hash)?;
        if trusted.is_some() {
            self.load_verity()?;
        }
        let (fd, copied) = match ram {
            true => {
                let copying = Copying {
                    size,
                    sha256: sha256.as_deref(),
                    verified: trusted.is_some(),
                    path: &path,
                    export: &export,
                    named: &named,
                    head: &head,
                };
                self.image_into_memory(fd, &copying).map(|(fd, said)| (fd, said + "; "))?
            }
            false => (fd, String::new()),
        };
        // The server the export was mounted from: with several, not always the first.
        let server = self.record.nfs_root.as_ref().and_then(|m| m.server).unwrap_or(export.server);
        self.record.image = Some(BootedImage {
            source: format!("{server}:{}", Path::new(&export.path).join(relative(file)).display()),
            target,
            format,
            size,
            mtime: Some(st.st_mtime),
            sha256,
            in_memory: ram,
            verity: None,
        });
        let root = self
            .running
            .create_dir_all(NEW_ROOT, 0o755)
            .map_err(|e| self.io(Op::Mkdir, &self.running, NEW_ROOT, &e))?;
        // EROFS mounts the file itself where the kernel can (6.12: EROFS_FS_BACKED_BY_FILE),
        // its reads direct; ENOTBLK from an older one: a loop device, as for squashfs. By the
        // name the link led to: the file opened, as `publish` never reuses a name.
        let on_file = on_export.host_path(&named);
        let file_backed = format == ImageFormat::Erofs && !ram && trusted.is_none() && {
            match self.sys.mount(&on_file.to_string_lossy(), &root.path, "erofs", MountFlags::RDONLY, "") {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTBLK.raw_os_error()) => false,
                Err(e) => return Err(Failure::io(Op::Mount, Some(&on_file), &e)),
            }
        };
        let device = match file_backed {
            true => on_file,
            false => self.mount_on_loop(fd, file, &path, format, &root.path, trusted.as_ref())?,
        };
        if let (Some(trusted), Some(image)) = (&trusted, &mut self.record.image) {
            let (root_hash, by) = (trusted.target.root_hash.clone(), trusted.by.clone());
            image.verity = Some(Verified { root_hash, trusted: by, device: device.to_string_lossy().into_owned() });
        }
        let checked = self.check_image_root(&root.path, &escape_path(&path), trusted.is_some())?;
        let read = format!("read {} bytes of {}", checked.bytes, crate::model::text::escape(checked.init.as_bytes()));
        if let Some(nfs) = &mut self.record.nfs_root {
            (nfs.init, nfs.init_bytes) = (checked.init, checked.bytes as u64);
        }
        Ok(Done::ok(format!("export {mounted}; {copied}{format} on {} on /root; {read}", escape_path(&device)))
            .learned(ram.then_some(Learned::ImageInMemory)))
    }

    /// The image file `fd` (`file` on the export, at `path` here), or its copy in memory, on a
    /// loop device (and dm-verity over it, when `trusted`), mounted on `at` as `format`,
    /// read-only. The device mounted.
    fn mount_on_loop(
        &self,
        fd: OwnedFd,
        file: &str,
        path: &Path,
        format: ImageFormat,
        at: &Path,
        trusted: Option<&Trusted>,
    ) -> Result<std::path::PathBuf, Failure> {
        let dev = self.running.host_path("dev");
        let attached = self.sys.attach_loop(&dev, fd.as_fd(), Path::new(file));
        let (device, held) = attached.map_err(|e| Failure::io(Op::Mount, Some(path), &e))?;
        drop(fd); // the loop device holds the file (or its copy) now
        let device = match trusted {
            Some(trusted) => self.verity_device(&trusted.target, &device, path)?,
            None => device,
        };
        self.mount_image(&device, path, format, at, "", trusted.is_some())?;
        drop(held); // the mount holds the device now; unmounted, it lets go of the file
        Ok(device)
    }

    /// The image device `device` (a loop device, an NBD device, or dm-verity over either,
    /// `verified`; the image at `path`) mounted on `at` as `format`, read-only, with `data`; a
    /// failure names the device, and what dm-verity found.
    pub(super) fn mount_image(
        &self,
        device: &Path,
        path: &Path,
        format: ImageFormat,
        at: &Path,
        data: &str,
        verified: bool,
    ) -> Result<(), Failure> {
        self.sys.mount(&device.to_string_lossy(), at, format.fstype(), MountFlags::RDONLY, data).map_err(|e| {
            let why = e.to_string().to_lowercase();
            let found = if verified { self.verity_findings() } else { String::new() };
            let message = format!("as {format} on {}: {why} (the kernel's log says more){found}", escape_path(device));
            Failure { errno: e.raw_os_error(), ..Failure::new(Op::Mount, Some(path), message) }
        })
    }

    /// The root check ([`rootcheck`]) of the image mounted on `at` (`shown`, escaped, names it
    /// in a failure, with what dm-verity found when `verified`).
    pub(super) fn check_image_root(
        &self,
        at: &Path,
        shown: &str,
        verified: bool,
    ) -> Result<rootcheck::Checked, Failure> {
        let image = ImageRoot::open(at).map_err(|e| Failure::io(Op::Open, Some(at), &e))?;
        rootcheck::check(self.sys, &image, &self.running, &self.cmdline).map_err(|f| {
            let found = if verified { self.verity_findings() } else { String::new() };
            Failure { message: format!("{} (in the image {shown}){found}", f.message), ..f }
        })
    }

    /// `stateless.image.ram`: the image file `from` copied into a memory file, when it fits
    /// ([`fits_in_memory`]: a copy that ran the machine out of memory would end in the OOM
    /// killer, with PID 1 the one process it may not kill), how far it got in the log every
    /// few seconds, and its sha256 held to its .sha256's, when there is one: a damaged image
    /// fails here, before anything is mounted. A read that fails or gets no data for
    /// [`COPY_STALL`] (its server gone) breaks the copy off: the export is let go of, the next
    /// server's mounted in its place ([`Executor::mount_nfs`], the servers not yet tried), and
    /// the copy goes on at the offset reached, from the same file there (its size and first
    /// bytes the same); the sha256 (or dm-verity, later) covers the whole. The copy, and what
    /// the step says of it.
    fn image_into_memory(&mut self, from: OwnedFd, image: &Copying<'_>) -> Result<(OwnedFd, String), Failure> {
        let (size, path) = (image.size, image.path);
        let failed = |message: String| Failure::new(Op::Copy, Some(path), format!("into memory: {message}"));
        let meminfo = self.sys.proc_file("meminfo").map_err(|e| failed(format!("/proc/meminfo: {e}")))?;
        let available = fits_in_memory(size, &meminfo).map_err(failed)?;
        let memory = self.sys.memory_file("stateless-image").map_err(|e| Failure::io(Op::Copy, Some(path), &e))?;
        let mut to = std::fs::File::from(memory);
        let mib = |bytes: u64| bytes >> 20;
        log::info!("image into memory: {} MiB ({} MiB available)", mib(size), mib(available));
        let (started, mut said) = (Instant::now(), Instant::now());
        let mut copy = HashedCopy::default();
        let (mut from, mut resumed) = (from, Vec::new());
        let mut server = self.record.nfs_root.as_ref().and_then(|m| m.server).unwrap_or(image.export.server);
        // The server copied from, and those the mount found down: none of them is another to go on from.
        let mut tried = vec![server];
        tried.extend(self.record.nfs_root.iter().flat_map(|m| m.failed.iter().map(|f| f.server)));
        loop {
            // A stall gives way to another server only when there is one: alone, a slow server
            // (a boot storm) is waited for, as a hard mount waits.
            let others = image.export.servers().iter().any(|s| !tried.contains(s));
            let stall = if others { COPY_STALL } else { ALONE_STALL };
            let read = |buf: &mut [u8], at: u64| self.sys.read_bounded(from.as_fd(), path, buf, at, stall);
            let broke = match copy.go_on(read, &mut to, |done| {
                if said.elapsed() >= PROGRESS_EVERY {
                    said = Instant::now();
                    let percent = done.saturating_mul(100) / size.max(1);
                    log::info!("image into memory: {} of {} MiB ({percent}%)", mib(done), mib(size));
                }
            }) {
                Ok(()) => break,
                Err((Side::Write, e)) => return Err(Failure::io(Op::Copy, Some(path), &e)),
                Err((Side::Read, e)) => e,
            };
            let at = copy.copied();
            let why = format!("{server} broke off at {} MiB: {}", mib(at), broke.to_string().to_lowercase());
            let left: Vec<Ipv4Addr> = image.export.servers().into_iter().filter(|s| !tried.contains(s)).collect();
            let Some(&next) = left.first() else {
                let none = if image.export.servers().len() > 1 { "no other server left" } else { "no other server" };
                return Err(failed(format!("{why}; {none}")));
            };
            if image.sha256.is_none() && !image.verified {
                return Err(failed(format!(
                    "{why}; not resumed from another server: without a .sha256 beside it or dm-verity, nothing would show that its bytes are the same image's"
                )));
            }
            log::warn!("image into memory: {why}; going on from {next}");
            // The others in order, then those given up on (the one that broke off last): a
            // server down a moment ago may be back.
            let rest: Vec<Ipv4Addr> = left.iter().skip(1).chain(tried.iter().rev()).copied().collect();
            from = self
                .image_from_next(image, next, &rest, &why)
                .map_err(|f| Failure { message: format!("into memory: {why}; going on: {}", f.message), ..f })?;
            // The one mounted: `next`, or one after it.
            server = self.record.nfs_root.as_ref().and_then(|m| m.server).unwrap_or(next);
            tried.retain(|s| *s != server);
            tried.push(server);
            tried.extend(self.record.nfs_root.iter().flat_map(|m| m.failed.iter().map(|f| f.server)));
            resumed.push(format!("from {server} at {} MiB", mib(at)));
        }
        let (copied, hex) = copy.finish();
        if copied != size {
            return Err(failed(format!("{copied} bytes read, {size} when opened: the file changed")));
        }
        let checked = match image.sha256 {
            Some(want) if want != hex => {
                return Err(failed(format!(
                    "its sha256 is {hex}, its .sha256 says {want}: a damaged or replaced image is not booted"
                )))
            }
            Some(_) => "sha256 as its .sha256 says",
            None => "no .sha256 beside it to check",
        };
        let secs = started.elapsed().as_secs_f64();
        let rate = mib(copied) as f64 / secs.max(0.001);
        let resumed = resumed.iter().map(|r| format!(", resumed {r}")).collect::<String>();
        Ok((
            to.into(),
            format!("copied {} MiB into memory in {secs:.1} s ({rate:.0} MiB/s){resumed}, {checked}", mib(copied)),
        ))
    }

    /// The export of a copy into memory that broke off (`why`) let go of, and `next`'s (then
    /// `rest`'s) mounted in its place: the same file there, open, when it is the same image
    /// (its size and first bytes). The failed server goes into the report's `failed`.
    fn image_from_next(
        &mut self,
        image: &Copying<'_>,
        next: Ipv4Addr,
        rest: &[Ipv4Addr],
        why: &str,
    ) -> Result<OwnedFd, Failure> {
        let at = self.running.host_path(EXPORT);
        let gone = self.record.nfs_root.as_ref().and_then(|m| m.server);
        // Its server does not answer, and a read may still hold it: detached, not unmounted.
        if let Err(e) = self.sys.detach(&at) {
            log::warn!("{}: {e}", escape_path(&at));
        }
        let export = NfsMount { server: next, fallbacks: rest.to_vec(), ..image.export.clone() };
        let named = image.named;
        let (_, ImageFile { fd, format, head }) = self.mount_nfs(&export, EXPORT, |me, on| {
            me.read_image_head(on, named).map(|(image, bytes)| (named.to_string_lossy().into_owned(), bytes, image))
        })?;
        let size = rustix::fs::fstat(&fd).map(|st| u64::try_from(st.st_size).unwrap_or(0));
        let size = size.map_err(|e| Failure::io(Op::Open, Some(image.path), &e.into()))?;
        let first = image.head.len().min(head.len());
        if size != image.size
            || format != ImageFormat::of(image.head).unwrap_or(format)
            || head.get(..first) != image.head.get(..first)
        {
            let on = self.record.nfs_root.as_ref().and_then(|m| m.server).unwrap_or(next);
            let message = format!(
                "{} on {on} is another image ({size} bytes, {format}; {} bytes were being copied): not mixed",
                escape_path(named),
                image.size
            );
            return Err(Failure::new(Op::Copy, Some(image.path), message));
        }
        if let (Some(mounted), Some(server)) = (&mut self.record.nfs_root, gone) {
            mounted.failed.retain(|f| f.server != server);
            mounted.failed.push(FailedServer { server, reason: format!("into memory: {why}") });
        }
        Ok(fd)
    }

    /// An image root in memory: its export unmounted, the NFS count stopped there for the
    /// report. The layers beside the image on it are in; the client no longer needs the server.
    pub(super) fn unmount_export(&mut self) -> Result<Done, Failure> {
        let at = self.running.host_path(EXPORT);
        self.nfs.stop(self.sys, self.target.path());
        self.sys.umount(&at).map_err(|e| Failure::io(Op::Umount, Some(&at), &e))?;
        Ok(Done::ok(format!("{} unmounted: the client no longer needs the server", escape_path(&at))))
    }

    /// The first [`ImageFormat::HEAD`] bytes of `file` on the export `export`, read from the
    /// server (EIO is the root check's), which must name squashfs or EROFS: the file, open, its
    /// format, and the bytes read.
    fn read_image_head(&self, export: &ImageRoot, file: impl AsRef<Path>) -> Result<(ImageFile, usize), Failure> {
        let rel = relative(file);
        let path = export.host_path(&rel);
        let fd = export
            .open_file(&rel, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC)
            .map_err(|e| Failure::io(Op::Open, Some(&path), &e.into()))?;
        let mut head = vec![0; ImageFormat::HEAD];
        let read = self.sys.read_start(fd.as_fd(), &path, &mut head);
        head.truncate(read.map_err(|e| Failure::io(Op::Read, Some(&path), &e))?);
        match ImageFormat::of(&head) {
            Some(format) => {
                let bytes = head.len();
                Ok((ImageFile { fd, format, head }, bytes))
            }
            None => Err(Failure::new(Op::Read, Some(&path), "not a squashfs or EROFS image: neither magic")),
        }
    }

    /// [`Executor::mount_nfs_root`]'s mount of `mount` on `at` (in the running root), checked
    /// by `check` (what it read, how many bytes, and what it hands on). What the step says of
    /// it, and what the check handed on.
    fn mount_nfs<T>(&mut self, mount: &NfsMount, at: &str, check: impl Checker<T>) -> Result<(String, T), Failure> {
        let mut modules = Vec::new();
        let dir = self.running.create_dir_all(at, 0o755).map_err(|e| self.io(Op::Mkdir, &self.running, at, &e))?;
        let flags = if mount.read_only { MountFlags::RDONLY } else { MountFlags::empty() };
        let client = self.facts.address.map(|a| a.addr);
        // Each server in the plan's order, with its own versions (EIO's step-down is one
        // server's) and the versions it gave up.
        let mut servers: Vec<(NfsMount, Vec<&str>, Vec<Dropped>)> =
            mount.servers().into_iter().map(|server| (mount.on(server), mount.versions(), Vec::new())).collect();
        let mut failed: Vec<FailedServer> = Vec::new();
        let bound = Duration::from_secs(u64::from(self.options.nfs_timeout));
        // With several servers, a try gets at most its server's share of the bound: one that
        // does not answer leaves the others their time in the same round.
        let share = bound / u32::try_from(servers.len()).unwrap_or(u32::MAX).max(1);
        let (mut rounds, mut tries) = (Rounds::new(bound), 0);
        let mut last = None;
        let mut at_server = 0;
        'rounds: loop {
            let Some((one, versions, dropped)) = servers.get_mut(at_server) else {
                return Err(Failure::new(Op::Mount, Some(&dir.path), "no server to mount from"));
            };
            let tried = tries;
            // Each try gets what is left of the bound: a server that drops packets can hold a
            // mount(2) for minutes.
            let mut to_v3 = false;
            for version in versions.clone() {
                if to_v3 && version.starts_with('4') {
                    continue;
                }
                let Some(left) = rounds.left() else { break };
                let module = nfsroot::module_for(version);
                if !modules.contains(&module) {
                    modules.push(module);
                    if let Err(e) = self.load_module(module) {
                        log::warn!("{module} for the NFS root: {e}; mounting all the same (built in?)");
                    }
                }
                tries += 1;
                let (fstype, data) = one.attempt(version, client);
                // Each try on a dir of its own, moved into place once it mounted: a try given up
                // on (mount_bounded's bound) may still mount later in the kernel, and a mount
                // goes on top of whatever is at its target when it completes: never over the
                // root another try mounted (another server's, with several).
                self.try_dirs += 1;
                let try_rel = format!("{TRIES}/{}", self.try_dirs);
                let on = self
                    .running
                    .create_dir_all(&try_rel, 0o700)
                    .map_err(|e| self.io(Op::Mkdir, &self.running, &try_rel, &e))?;
                let call = MountCall { source: &one.source(), target: &on.path, fstype, flags, data: &data };
                let mounted = self.sys.mount_bounded(&call, left.min(share)).and_then(|()| {
                    self.sys.move_mount(&on.path, &dir.path).inspect_err(|_| {
                        let _ = self.sys.umount(&on.path);
                    })
                });
                let e = match mounted {
                    Ok(()) => match self.check_root(one, &dir.path, &check, version, &data, dropped)? {
                        RootVerdict::Booting(read, handed) => {
                            failed.retain(|f| f.server != one.server);
                            if let Some(mounted) = &mut self.record.nfs_root {
                                mounted.failed = failed;
                            }
                            let ms = rounds.started.elapsed().as_millis();
                            return Ok((
                                format!("mounted as {fstype} {data} ({tries} tries, {ms} ms); {read}"),
                                handed,
                            ));
                        }
                        RootVerdict::SteppedDown(older) => {
                            *versions = older.to_vec();
                            last = None; // what the give-up says is in `dropped`
                            continue 'rounds;
                        }
                    },
                    Err(e) => e,
                };
                log::warn!("nfs root {}: mount -t {fstype} -o {data}: {e}", one.source());
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
            if let Some(e) = last.as_ref().filter(|_| tries > tried) {
                let reason = format!("mount: {}", e.to_string().to_lowercase());
                failed.retain(|f| f.server != one.server);
                failed.push(FailedServer { server: one.server, reason });
            }
            // A server that refuses or does not answer: the next at once; after the last, the
            // backoff and the round again.
            at_server += 1;
            if at_server < servers.len() {
                continue;
            }
            at_server = 0;
            if rounds.over() {
                let e = last.unwrap_or_else(|| std::io::Error::other("no time left to mount again"));
                let said = match servers.as_slice() {
                    [(_, _, dropped)] => said_dropped(dropped),
                    several => said_servers(several, &failed),
                };
                let message = format!(
                    "{mount}: gave up after {tries} tries in {} s (stateless.nfs.timeout={}): {e}{said}",
                    rounds.waited().as_secs(),
                    self.options.nfs_timeout,
                );
                return Err(Failure { errno: e.raw_os_error(), ..Failure::new(Op::Mount, Some(&dir.path), message) });
            }
            rounds.pause(self.sys, &format!("nfs root {}", mount.source()));
        }
    }

    /// Checks the root just mounted on `dir` with `version` (mount(2) options `data`) as
    /// [`rootcheck`] does. Passed: recorded for the report. EIO with a minor version that has
    /// older ones: unmounted, `dropped` told why, and the older ones to mount instead. Else the
    /// failure, the root left mounted (for a shell to look at).
    fn check_root<T>(
        &mut self,
        mount: &NfsMount,
        dir: &Path,
        check: &impl Checker<T>,
        version: &str,
        data: &str,
        dropped: &mut Vec<Dropped>,
    ) -> Result<RootVerdict<T>, Failure> {
        let image = ImageRoot::open(dir).map_err(|e| Failure::io(Op::Open, Some(dir), &e))?;
        let checked = check(self, &image);
        let failure = match checked {
            Ok((init, bytes, handed)) => {
                let read = format!("read {bytes} bytes of {}", crate::model::text::escape(init.as_bytes()));
                let (version, options, dropped) = (version.to_string(), data.to_string(), std::mem::take(dropped));
                let (server, failed) = (Some(mount.server), Vec::new()); // the failed ones: mount_nfs's
                self.record.nfs_root =
                    Some(Mounted { version, options, init, init_bytes: bytes as u64, dropped, server, failed });
                return Ok(RootVerdict::Booting(read, handed));
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
        // The initramfs's keys, before it is emptied: after the switch the running root is the
        // server's, whose trusted.keys would count for nothing.
        let _ = self.trusted.set(super::verity::read_trusted_keys(&self.running));
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
