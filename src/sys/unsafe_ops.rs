//! The only module allowed `unsafe`: what the standard library and rustix cannot do safely.
//! Cargo.toml denies `unsafe_code` everywhere else; each `unsafe` here says why it holds in a
//! `// SAFETY:` line, as Firecracker's jailer does.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the child a session leader with its stdin as controlling terminal, so an emergency
/// shell gets job control and Ctrl-C, as `setsid -c` does. Failures are ignored: without a
/// terminal the shell still runs, only without job control.
pub fn with_controlling_tty(command: &mut Command) -> &mut Command {
    // SAFETY: the closure runs between fork and exec and only makes two async-signal-safe
    // system calls (setsid, ioctl TIOCSCTTY) through rustix, without allocating.
    unsafe {
        command.pre_exec(|| {
            let _ = rustix::process::setsid();
            let _ = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin());
            Ok(())
        })
    }
}

/// swapon(2) on the block device `path` with no flags (rustix has no swapon). The kernel reads
/// and checks the swap header; nothing is written to the device.
pub fn swapon(path: &std::path::Path) -> std::io::Result<()> {
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))?;
    // SAFETY: `path` is a NUL-terminated string that lives across the call; swapon only reads it.
    match unsafe { libc::swapon(path.as_ptr(), 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// `struct sockaddr_ll` (linux/if_packet.h): a link-layer address for packet sockets, which
/// rustix has no type for.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LinkAddr {
    family: u16,
    /// An ETH_P_* protocol in network byte order.
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

impl LinkAddr {
    /// The address of interface `ifindex` for `protocol` (host byte order) and hardware
    /// destination `mac` (the broadcast address for DHCP).
    pub fn new(ifindex: i32, protocol: u16, mac: [u8; 6]) -> Self {
        let [a, b, c, d, e, f] = mac;
        LinkAddr {
            family: rustix::net::AddressFamily::PACKET.as_raw(),
            protocol: protocol.to_be(),
            ifindex,
            hatype: 0,
            pkttype: 0,
            halen: 6,
            addr: [a, b, c, d, e, f, 0, 0],
        }
    }
}

// SAFETY: `with_sockaddr` passes a pointer to `self`, a `repr(C)` struct laid out exactly as the
// kernel's `struct sockaddr_ll`, and its size, valid for the duration of the call.
unsafe impl rustix::net::addr::SocketAddrArg for LinkAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(*const rustix::net::addr::SocketAddrOpaque, rustix::net::addr::SocketAddrLen) -> R,
    ) -> R {
        f((self as *const Self).cast(), std::mem::size_of::<Self>() as rustix::net::addr::SocketAddrLen)
    }
}

/// Makes the Btrfs subvolume whose root `dir` is writable (`BTRFS_IOC_SUBVOL_SETFLAGS` with no
/// flags, which rustix has no call for): any user may make their own subvolume read-only.
///
/// # Errors
/// The ioctl's: not a subvolume's root (`EINVAL`), not Btrfs (`ENOTTY`), ...
pub fn btrfs_subvolume_writable(dir: std::os::fd::BorrowedFd<'_>) -> rustix::io::Result<()> {
    use rustix::ioctl::{opcode, Opcode, Setter};
    // linux/btrfs.h: _IOW(BTRFS_IOCTL_MAGIC, 26, __u64).
    const SUBVOL_SETFLAGS: Opcode = opcode::write::<u64>(0x94, 26);
    // SAFETY: the kernel reads one u64 of flags (none) through the pointer Setter passes, as
    // the opcode says; it lives across the call.
    unsafe { rustix::ioctl::ioctl(dir, Setter::<SUBVOL_SETFLAGS, u64>::new(0)) }
}

/// linux/loop.h's `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// linux/loop.h's `struct loop_config` (`LOOP_CONFIGURE`, Linux 5.8).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// `LO_FLAGS_READ_ONLY`: the device refuses writes.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR`: the device lets go of its file at its last close (its unmount).
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `LOOP_CTL_GET_FREE` on /dev/loop-control: the number of a free loop device, made if needed.
/// The loop ioctls are not in rustix or libc; the `loopdev` crates generate them with bindgen
/// (libclang, which this build does not have).
///
/// # Errors
/// The ioctl's.
pub fn loop_get_free(control: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number or -1 with errno.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), 0x4C82) };
    u32::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// `LOOP_CONFIGURE`: `device` reads `file` from now on, with `flags` (`LO_FLAGS_*`); `name`
/// (its first 63 bytes) is what losetup shows.
///
/// # Errors
/// The ioctl's: `EBUSY` (another took the device first), `EINVAL` (a flag the kernel lacks).
pub fn loop_configure(
    device: std::os::fd::BorrowedFd<'_>,
    file: std::os::fd::BorrowedFd<'_>,
    flags: u32,
    name: &[u8],
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut file_name = [0; 64];
    for (to, from) in file_name.iter_mut().zip(name.iter().take(63)) {
        *to = *from;
    }
    let info = LoopInfo64 {
        device: 0,
        inode: 0,
        rdevice: 0,
        offset: 0,
        sizelimit: 0,
        number: 0,
        encrypt_type: 0,
        encrypt_key_size: 0,
        flags,
        file_name,
        crypt_name: [0; 64],
        encrypt_key: [0; 32],
        init: [0; 2],
    };
    let fd = u32::try_from(file.as_raw_fd()).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    let config = LoopConfig { fd, block_size: 0, info, reserved: [0; 8] };
    // SAFETY: LOOP_CONFIGURE reads one struct loop_config (this layout, repr(C)) through the
    // pointer; `config` lives across the call and the kernel does not keep the pointer.
    match unsafe { libc::ioctl(device.as_raw_fd(), 0x4C0A, &config as *const LoopConfig) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// One device-mapper ioctl (`request`, a `DM_*` of linux/dm-ioctl.h) on /dev/mapper/control
/// with `buf`: a `struct dm_ioctl` and its payload ([`super::devmapper::message`]), which the
/// kernel answers in place. `data_size` is set to `buf`'s length here, whatever `buf` says, so
/// the kernel reads and writes within it.
///
/// # Errors
/// The ioctl's; `EINVAL` for a buffer shorter than a `struct dm_ioctl`.
pub fn dm_ioctl(control: std::os::fd::BorrowedFd<'_>, request: u32, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = u32::try_from(buf.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    match buf.get_mut(12..16) {
        Some(size) if len >= 312 => size.copy_from_slice(&len.to_le_bytes()),
        _ => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
    }
    // SAFETY: the kernel reads and writes at most `data_size` bytes from the pointer (dm-ioctl.c
    // copy_params and its copy back), and `data_size` is `buf`'s length, set just above; `buf`
    // lives across the call and the kernel keeps no pointer to it.
    match unsafe { libc::ioctl(control.as_raw_fd(), libc::c_ulong::from(request), buf.as_mut_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Takes ownership of `fd`, a descriptor this process inherited across exec (`stateless
/// nbd-supervise`'s socket and kmsg, [`crate::boot::supervise`]): it must be open (checked
/// here, EBADF otherwise) and owned by nothing else in the process. The caller adopts each
/// number once, at the start, before anything else could own it.
///
/// # Errors
/// EBADF: `fd` is negative or not open.
pub fn adopt_fd(fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD reads a descriptor's flags and touches no memory of ours.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is open (checked above) and, as the caller adopts each inherited number once
    // at its start, nothing else in this process owns it: the OwnedFd is its one owner.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether the descriptor number `fd` is open without FD_CLOEXEC, so a child exec'd now
/// inherits it.
///
/// # Errors
/// EBADF: `fd` is not open.
pub fn fd_inheritable(fd: i32) -> std::io::Result<bool> {
    // SAFETY: F_GETFD reads a descriptor's flags and touches no memory of ours; any number is
    // safe to ask about (a closed one is EBADF).
    match unsafe { libc::fcntl(fd, libc::F_GETFD) } {
        flags if flags < 0 => Err(std::io::Error::last_os_error()),
        flags => Ok(flags & libc::FD_CLOEXEC == 0),
    }
}

/// Ignores the signals `signals` (SIG_IGN: also across exec), which rustix cannot set safely.
///
/// # Errors
/// The first signal(2) that fails (EINVAL: not a signal, or SIGKILL/SIGSTOP).
pub fn ignore_signals(signals: &[i32]) -> std::io::Result<()> {
    for &signal in signals {
        // SAFETY: SIG_IGN installs no handler: no code of ours runs on the signal.
        if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
