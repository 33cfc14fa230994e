//! The kernel behind the seam.

use std::ffi::OsString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::fs::FsWord;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::system::RebootCommand;

use super::blocked::{self, Wait};
use super::{MountCall, Sys, Uname};
use crate::fs::initramfs::{self, Cleared};
use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::net::dhcp::client::Transport;

/// The kernel.
#[derive(Debug, Default)]
pub struct Real;

impl Sys for Real {
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        let data = std::ffi::CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        blocked::during(Wait::Mount, || Ok(rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))?))
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        Ok(rustix::mount::unmount(target, UnmountFlags::empty())?)
    }

    fn detach(&self, target: &Path) -> io::Result<()> {
        Ok(rustix::mount::unmount(target, UnmountFlags::DETACH)?)
    }

    fn is_mounted(&self, target: &Path, magic: FsWord) -> bool {
        crate::fs::mounts::is_mounted(target, magic)
    }

    fn mount_key(&self, target: &Path) -> Option<crate::model::outcome::MountKey> {
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        let dir = rustix::fs::open(target, flags, rustix::fs::Mode::empty()).ok()?;
        crate::fs::mounts::mount_key(std::os::fd::AsFd::as_fd(&dir))
    }

    fn proc_file(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(Path::new("/proc").join(name))
    }

    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        crate::net::netlink::interfaces()
    }

    fn uname(&self) -> Uname {
        let uname = rustix::system::uname();
        let text = |s: &std::ffi::CStr| s.to_string_lossy().into_owned();
        Uname { nodename: text(uname.nodename()), domainname: text(uname.domainname()), release: text(uname.release()) }
    }

    fn link_up(&self, index: u32) -> io::Result<()> {
        crate::net::netlink::set_up(index)
    }

    fn link_down(&self, index: u32) -> io::Result<()> {
        crate::net::netlink::set_down(index)
    }

    fn rename_link(&self, index: u32, name: &str) -> io::Result<()> {
        crate::net::netlink::rename(index, name)
    }

    fn add_address(&self, index: u32, net: Ipv4Net) -> io::Result<()> {
        crate::net::netlink::add_address(index, net)
    }

    fn add_default_route(&self, index: u32, gateway: Ipv4Addr, onlink: bool) -> io::Result<()> {
        crate::net::netlink::add_default_route(index, gateway, onlink)
    }

    fn dhcp_transport(&self, index: u32, source: Ipv4Addr) -> io::Result<Box<dyn Transport>> {
        Ok(Box::new(super::packet::PacketTransport::open(index, source)?))
    }

    fn random(&self) -> u64 {
        use rustix::rand::{getrandom, GetRandomFlags};
        let mut bytes = [0u8; 8];
        // GRND_INSECURE (Linux 5.6+) never blocks; before it, fall back to a non-blocking read,
        // then to the clock: transaction ids need to differ, not to be secret.
        let filled = [GetRandomFlags::INSECURE, GetRandomFlags::NONBLOCK]
            .into_iter()
            .any(|flags| getrandom(&mut bytes, flags).is_ok_and(|n| n == bytes.len()));
        if filled {
            u64::from_ne_bytes(bytes)
        } else {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            (now.tv_sec as u64).wrapping_mul(1_000_000_007) ^ now.tv_nsec as u64
        }
    }

    fn load_module(&self, file: BorrowedFd<'_>, path: &Path, params: &str) -> io::Result<()> {
        let params = std::ffi::CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        blocked::during(Wait::ModuleInit, || Ok(rustix::system::finit_module(file, &params, init_flags(path))?))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        Ok(rustix::system::sethostname(name.as_bytes())?)
    }

    fn swapon(&self, path: &Path) -> io::Result<()> {
        super::unsafe_ops::swapon(path)
    }

    fn memory_file(&self, name: &str) -> io::Result<std::os::fd::OwnedFd> {
        Ok(rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?)
    }

    fn attach_loop(
        &self,
        dev: &Path,
        file: BorrowedFd<'_>,
        name: &Path,
    ) -> io::Result<(PathBuf, std::os::fd::OwnedFd)> {
        use super::unsafe_ops::{loop_configure, loop_get_free, LO_FLAGS_AUTOCLEAR, LO_FLAGS_READ_ONLY};
        use rustix::fs::{open, Mode, OFlags};
        use std::os::unix::ffi::OsStrExt;
        let control = open(dev.join("loop-control"), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        let flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        // Another process may configure the free device first: ask for one again.
        let mut busy = io::Error::from_raw_os_error(libc::EBUSY);
        for _ in 0..8 {
            let path = dev.join(format!("loop{}", loop_get_free(control.as_fd())?));
            let device = open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            match loop_configure(device.as_fd(), file, flags, name.as_os_str().as_bytes()) {
                Ok(()) => return Ok((path, device)),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = e,
                Err(e) => return Err(e),
            }
        }
        Err(busy)
    }

    fn device_mapper(&self, dev: &Path, name: &str, sectors: u64, target: &str, params: &str) -> io::Result<PathBuf> {
        super::devmapper::create(dev, name, sectors, target, params)
    }

    fn device_mapper_status(&self, dev: &Path, name: &str) -> io::Result<String> {
        super::devmapper::status(dev, name)
    }

    fn kernel_log(&self) -> io::Result<Vec<String>> {
        use rustix::fs::{open, Mode, OFlags};
        let kmsg = open("/dev/kmsg", OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
        let mut messages = Vec::new();
        // One record a read(2): `priority,sequence,microseconds,flags;text` and its
        // continuation lines. EPIPE: records overwritten while reading; EAGAIN: the end.
        let mut buf = vec![0; 8192];
        while messages.len() < super::KERNEL_LOG_MAX {
            match rustix::io::read(&kmsg, &mut buf) {
                Ok(0) | Err(rustix::io::Errno::AGAIN) => break,
                Ok(n) => {
                    let record = buf.get(..n).unwrap_or_default();
                    let text = record.split(|b| *b == b'\n').next().unwrap_or_default();
                    let text = text.splitn(2, |b| *b == b';').nth(1).unwrap_or_default();
                    messages.push(String::from_utf8_lossy(text).into_owned());
                }
                Err(rustix::io::Errno::PIPE | rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(messages)
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        Ok(rustix::system::setdomainname(name.as_bytes())?)
    }

    fn read_start(&self, file: BorrowedFd<'_>, _path: &Path, buf: &mut [u8]) -> io::Result<usize> {
        // Clean pages only, which the server has: nothing is lost.
        let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
        read_from_start(file, buf)
    }

    fn nbd_connect(
        &self,
        server: std::net::SocketAddrV4,
        export: &str,
        bound: Duration,
    ) -> io::Result<(std::os::fd::OwnedFd, crate::net::nbd::Export)> {
        crate::net::nbd::connect(server, export, bound)
    }

    fn nbd_attach(&self, connect: &crate::net::nbd::genl::NbdConnect) -> io::Result<u32> {
        let family = crate::net::nbd::genl::resolve()?;
        crate::net::nbd::genl::connect(family.id, connect)
    }

    fn spawn_self(&self, argv: &[OsString]) -> io::Result<u32> {
        spawn(Path::new("/proc/self/exe"), argv)
    }

    fn read_bounded(
        &self,
        file: BorrowedFd<'_>,
        _path: &Path,
        buf: &mut [u8],
        offset: u64,
        bound: Duration,
    ) -> io::Result<usize> {
        let file = rustix::io::fcntl_dupfd_cloexec(file, 0)?;
        let len = buf.len();
        let (done, wait) = mpsc::channel();
        let work = move || {
            let mut chunk = vec![0; len];
            let read = rustix::io::pread(&file, &mut chunk, offset).map(|n| {
                chunk.truncate(n);
                chunk
            });
            let _ = done.send(read);
        };
        std::thread::Builder::new().name("read".into()).spawn(work)?;
        let chunk = match wait.recv_timeout(bound) {
            Ok(read) => read?,
            Err(_) => {
                let why = format!("no data within {} s", bound.as_secs());
                return Err(io::Error::new(io::ErrorKind::TimedOut, why));
            }
        };
        let n = chunk.len().min(buf.len());
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn exec(&self, path: &Path, argv: &[OsString]) -> io::Error {
        let mut command = Command::new(path);
        if let Some((arg0, rest)) = argv.split_first() {
            command.arg0(arg0).args(rest);
        }
        command.exec()
    }

    fn shell(&self, path: &Path) -> io::Result<()> {
        let mut command = Command::new(path);
        command.arg("-i");
        // The console when /dev/console can be opened, else the stdio the kernel gave PID 1.
        let console = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/console");
        if let (Ok(stdin), Ok(stdout), Ok(stderr)) = (console(), console(), console()) {
            command.stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
        }
        let status = super::unsafe_ops::with_controlling_tty(&mut command).status()?;
        log::info!("shell exited with {status}");
        Ok(())
    }

    fn sleep(&self, duration: Duration) {
        blocked::during(Wait::Network, || std::thread::sleep(duration));
    }

    /// sync(2) on a thread of its own: a sync stuck on a dead NFS server is left behind after
    /// `bound` (it blocks in the kernel and cannot be cancelled), and the reboot goes on.
    fn sync(&self, bound: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("sync".into()).spawn(move || {
            rustix::fs::sync();
            let _ = done.send(());
        });
        spawned.is_ok() && wait.recv_timeout(bound).is_ok()
    }

    fn reboot(&self, poweroff: bool) -> io::Error {
        let command = if poweroff { RebootCommand::PowerOff } else { RebootCommand::Restart };
        match rustix::system::reboot(command) {
            Ok(()) => io::Error::other("reboot returned"),
            Err(errno) => errno.into(),
        }
    }

    /// mount(2) on a thread of its own: an NFS server that drops packets can hold the call for
    /// minutes; past `bound` the boot goes on without it (the thread stays blocked).
    fn mount_bounded(&self, m: &MountCall<'_>, bound: Duration) -> io::Result<()> {
        let (source, target, fstype, data) =
            (m.source.to_string(), m.target.to_path_buf(), m.fstype.to_string(), m.data.to_string());
        let flags = m.flags;
        let (done, wait) = mpsc::channel();
        let work = move || {
            let _ = done.send(Real.mount(&source, &target, &fstype, flags, &data));
        };
        std::thread::Builder::new().name("mount".into()).spawn(work)?;
        blocked::during(Wait::Mount, || match wait.recv_timeout(bound) {
            Ok(result) => result,
            Err(_) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {} ms", bound.as_millis())))
            }
        })
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        blocked::during(Wait::Mount, || Ok(rustix::mount::mount_move(from, to)?))
    }

    fn switch_root(&self, new_root: &Path) -> io::Result<(PathBuf, Cleared)> {
        use rustix::fs::{fstat, open, Mode, OFlags};
        let dir = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = open("/", dir, Mode::empty())?;
        let new = open(new_root, dir | OFlags::NOFOLLOW, Mode::empty())?;
        if !initramfs::is_initramfs(Path::new("/")) {
            return Err(io::Error::other("/ is not an initramfs (ramfs or tmpfs): nothing is deleted"));
        }
        if fstat(&new)?.st_dev == fstat(&root)?.st_dev {
            return Err(io::Error::other(format!("{} is not a mount point", new_root.display())));
        }
        // As util-linux's switch_root: into the new root first, then empty the old one through
        // its fd; a failed move leaves the initramfs as it was.
        rustix::process::fchdir(&new)?;
        rustix::mount::mount_move(".", "/")?;
        rustix::process::chroot(".")?;
        rustix::process::chdir("/")?;
        let cleared = initramfs::clear(root.as_fd())?;
        Ok((PathBuf::from("/"), cleared))
    }
}

/// pread(2) from offset 0 until `buf` is full or the file ends.
pub(super) fn read_from_start(file: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
        match rustix::io::pread(file, rest, done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// finit_module's flags for a module file: a compressed one (`.ko.xz`, `.ko.zst`, `.ko.gz`) the
/// kernel is asked to decompress itself (`MODULE_INIT_COMPRESSED_FILE`, Linux 6.4+).
/// `program` started as a process of its own with `argv` (argv[0] first), its stdin, stdout and
/// stderr /dev/null; it inherits the descriptors without CLOEXEC. Its pid, never waited for
/// here (after the switch, init reaps it).
pub fn spawn(program: &Path, argv: &[OsString]) -> io::Result<u32> {
    let mut command = Command::new(program);
    if let Some((arg0, rest)) = argv.split_first() {
        command.arg0(arg0).args(rest);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    Ok(command.spawn()?.id())
}

fn init_flags(path: &Path) -> i32 {
    const MODULE_INIT_COMPRESSED_FILE: i32 = 4;
    if path.extension().is_some_and(|e| e == "ko") {
        0
    } else {
        MODULE_INIT_COMPRESSED_FILE
    }
}

#[cfg(test)]
mod tests {
    use super::Sys;

    #[test]
    fn read_start_reads_the_head_or_the_whole_file() {
        let path = std::env::temp_dir().join(format!("stateless-read-start-{}", std::process::id()));
        let content: Vec<u8> = (0..10_000u32).map(|n| n.to_le_bytes()[0]).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        let mut head = [0; 4096];
        assert_eq!(super::Real.read_start(fd, &path, &mut head).unwrap(), 4096);
        assert_eq!(head[..], content[..4096]);
        let mut all = vec![0; 64 * 1024];
        assert_eq!(super::Real.read_start(fd, &path, &mut all).unwrap(), content.len(), "from the start again");
        assert_eq!(all[..content.len()], content[..]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn compressed_modules_are_left_to_the_kernel_to_decompress() {
        for (file, flags) in [("a.ko", 0), ("a.ko.xz", 4), ("a.ko.zst", 4), ("a.ko.gz", 4)] {
            assert_eq!(super::init_flags(std::path::Path::new(file)), flags, "{file}");
        }
    }
}
