//! The syscall seam: the operations with effects beyond the files under a root (mounts, kernel
//! hostname, modules, exec, reboot, the emergency shell) and what is read from the kernel
//! (interfaces, uname, /proc files). [`Real`] calls the kernel; `Fake` (tests) records every
//! call and can inject errors, so unit tests assert exact sequences. The seam is `Send + Sync`
//! with `&self` methods, so threads (parallel module loading) can share it.
//! File copying is not behind this seam: it is tested for real in mount namespaces.
//!
//! youki's `trait Syscall` split as its `syscall/{syscall,linux,test}.rs` is (here `mod.rs`,
//! `real.rs`, `fake.rs`), but its fake records by call kind; ours keeps one ordered list.

pub mod blocked;
pub mod console;
pub mod devmapper;
#[cfg(test)]
pub mod fake;
pub mod packet;
mod real;
pub(crate) mod unsafe_ops;

pub use unsafe_ops::btrfs_subvolume_writable;

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use rustix::fs::FsWord;
use rustix::mount::MountFlags;

use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::net::dhcp::client::Transport;

#[cfg(test)]
pub use fake::{Call, Fake};
pub use real::{spawn, Real};

/// The most messages [`Sys::kernel_log`] reads.
pub const KERNEL_LOG_MAX: usize = 8192;

/// The arguments of one mount(2).
#[derive(Clone, Copy, Debug)]
pub struct MountCall<'a> {
    pub source: &'a str,
    pub target: &'a Path,
    pub fstype: &'a str,
    pub flags: MountFlags,
    pub data: &'a str,
}

/// The kernel's names for this machine (uname).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uname {
    pub nodename: String,
    pub domainname: String,
    pub release: String,
}

/// What `stateless` asks of the kernel beyond plain file I/O.
pub trait Sys: Send + Sync {
    /// mount(2) with text options on `target`, a path checked to lead where it should
    /// ([`crate::fs::root::ImageRoot::dir`]).
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()>;
    fn umount(&self, target: &Path) -> io::Result<()>;
    /// Detaches the mount at `target` now (MNT_DETACH), even when its server does not answer or
    /// a read still holds it: it goes once nothing uses it.
    fn detach(&self, target: &Path) -> io::Result<()>;
    /// True when `target` is the root of a mount whose statfs type is `magic`.
    fn is_mounted(&self, target: &Path, magic: FsWord) -> bool;
    /// Which mount `target`, a dir, is on (`None` when the kernel cannot say: before 5.8).
    fn mount_key(&self, target: &Path) -> Option<crate::model::outcome::MountKey>;
    /// The bytes of `/proc/<name>` (`cmdline`, `filesystems`, `net/pnp`).
    fn proc_file(&self, name: &str) -> io::Result<Vec<u8>>;
    /// Network interfaces and their IPv4 addresses (rtnetlink).
    fn interfaces(&self) -> io::Result<Vec<Interface>>;
    fn uname(&self) -> Uname;
    /// Sets a network link administratively up.
    fn link_up(&self, index: u32) -> io::Result<()>;
    /// Sets a network link administratively down.
    fn link_down(&self, index: u32) -> io::Result<()>;
    /// Renames a network link (EBUSY from kernels before 6.2 while it is up).
    fn rename_link(&self, index: u32, name: &str) -> io::Result<()>;
    /// Adds an IPv4 address, with its prefix and broadcast, to an interface.
    fn add_address(&self, index: u32, net: Ipv4Net) -> io::Result<()>;
    /// Adds the default route through `gateway` on an interface (`onlink`: the gateway is
    /// outside the interface's prefix).
    fn add_default_route(&self, index: u32, gateway: Ipv4Addr, onlink: bool) -> io::Result<()>;
    /// The way to the DHCP servers on an interface, sending from `source` (0.0.0.0 without an address).
    fn dhcp_transport(&self, index: u32, source: Ipv4Addr) -> io::Result<Box<dyn Transport>>;
    /// 64 random bits, without waiting for the kernel's pool (transaction ids, jitter).
    fn random(&self) -> u64;
    /// Loads a kernel module from an open file (finit_module) with its parameters
    /// (`a=1 b=2`); `path` names it in messages and tells a compressed file by its suffix.
    fn load_module(&self, file: BorrowedFd<'_>, path: &Path, params: &str) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// swapon(2): the swap area on the block device `path`.
    fn swapon(&self, path: &Path) -> io::Result<()>;
    fn setdomainname(&self, name: &str) -> io::Result<()>;
    /// Reads `file` from its start into `buf` until it is full or the file ends, from the
    /// server on a network filesystem (its cached pages are dropped first); `path` names it in
    /// messages. Returns the bytes read.
    fn read_start(&self, file: BorrowedFd<'_>, path: &Path, buf: &mut [u8]) -> io::Result<usize>;
    /// `pread` of `file` (at `path`, for messages) at `offset` into `buf`, given up after
    /// `bound` without an answer (TimedOut): a read of a hard NFS mount whose server is gone
    /// waits for ever. The read given up on may go on in the kernel, on a copy of the descriptor.
    fn read_bounded(
        &self,
        file: BorrowedFd<'_>,
        path: &Path,
        buf: &mut [u8],
        offset: u64,
        bound: Duration,
    ) -> io::Result<usize>;
    /// Attaches `file` (open read-only; `name` for messages and losetup) to a free loop device
    /// under `dev` (the running root's /dev): read-only, let go at its last close, its reads
    /// through the file's page cache (no direct I/O: over NFS, the readahead makes a boot's
    /// READs fewer and larger). Returns the device's path and a handle on it, which keeps it
    /// attached until something else (a mount) holds it.
    fn attach_loop(
        &self,
        dev: &Path,
        file: BorrowedFd<'_>,
        name: &Path,
    ) -> io::Result<(std::path::PathBuf, std::os::fd::OwnedFd)>;
    /// A new empty file in memory (memfd), `name` for /proc and losetup: an image root copied
    /// into RAM lives there, held by its loop device once attached.
    fn memory_file(&self, name: &str) -> io::Result<std::os::fd::OwnedFd>;
    /// A read-only device-mapper device `name` of one `target` (`verity`) over `sectors`
    /// 512-byte sectors, its table `params` ([`devmapper::create`]); `dev` is the running root's
    /// /dev. Returns its node (`dev`/dm-N).
    fn device_mapper(
        &self,
        dev: &Path,
        name: &str,
        sectors: u64,
        target: &str,
        params: &str,
    ) -> io::Result<std::path::PathBuf>;
    /// The status of device-mapper device `name`'s target (verity's: `V`, or `C`).
    fn device_mapper_status(&self, dev: &Path, name: &str) -> io::Result<String>;
    /// The kernel's log as it holds it now (/dev/kmsg, read without waiting): its messages, the
    /// oldest first, at most [`KERNEL_LOG_MAX`].
    fn kernel_log(&self) -> io::Result<Vec<String>>;
    /// A connection to the NBD server `server`, its handshake for `export` done within `bound`
    /// ([`crate::net::nbd::connect`]; a writable export is refused): the socket and the export.
    fn nbd_connect(
        &self,
        server: SocketAddrV4,
        export: &str,
        bound: Duration,
    ) -> io::Result<(std::os::fd::OwnedFd, crate::net::nbd::Export)>;
    /// The kernel's NBD_CMD_CONNECT for `connect` (the nbd netlink family looked up first): the
    /// device's index, /dev/nbd<index>.
    fn nbd_attach(&self, connect: &crate::net::nbd::genl::NbdConnect) -> io::Result<u32>;
    /// This program started again (/proc/self/exe) as a process of its own, with `argv`
    /// (argv[0] first), its stdin, stdout and stderr /dev/null; it inherits the descriptors
    /// without CLOEXEC. Its pid.
    fn spawn_self(&self, argv: &[OsString]) -> io::Result<u32>;
    /// execve: returns only on failure.
    fn exec(&self, path: &Path, argv: &[OsString]) -> io::Error;
    /// Runs an interactive shell on the console and waits for it.
    fn shell(&self, path: &Path) -> io::Result<()>;
    fn sleep(&self, duration: Duration);
    /// Flushes filesystems, giving up after `bound` (a dead NFS server must not hang the reboot).
    fn sync(&self, bound: Duration) -> bool;
    /// reboot(2): returns only on failure.
    fn reboot(&self, poweroff: bool) -> io::Error;
    /// [`Sys::mount`], given up after `bound` (the call itself may go on in the kernel).
    fn mount_bounded(&self, m: &MountCall<'_>, bound: Duration) -> io::Result<()>;
    /// Moves the mount at `from` to `to` (MS_MOVE).
    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Leaves the initramfs for the root mounted at `new_root`: empties the initramfs (only its
    /// own filesystem), moves `new_root` onto / and chroots into it. Returns where the new
    /// root is now seen (`/`) and what emptying it did. Refuses unless / is a ramfs or tmpfs
    /// and `new_root` another mount.
    fn switch_root(&self, new_root: &Path) -> io::Result<(std::path::PathBuf, crate::fs::initramfs::Cleared)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seam_serves_several_threads() {
        fn shared<T: Sys + Send + Sync>(_: &T) {}
        shared(&Real);
        let fake = Fake::default();
        std::thread::scope(|s| {
            for n in 0..4 {
                let fake = &fake;
                s.spawn(move || fake.sethostname(&format!("t{n}")).unwrap());
            }
        });
        assert_eq!(fake.calls().len(), 4, "every thread's call recorded");
    }
}
