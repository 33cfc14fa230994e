//! A recording stand-in for the kernel, for unit tests.
//!
//! Every call but the queries (`uname`, `/proc` files, interfaces, mount checks, `random`) goes
//! into one `Vec<Call>` in the order made, so a test sees the order between kinds too (youki's
//! fake keeps a list per kind and loses it).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::FsWord;
use rustix::mount::MountFlags;

use super::{Sys, Uname};
use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::net::dhcp::client::testing::{Scripted, Server};
use crate::net::dhcp::client::Transport;

/// One recorded call of [`Fake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: String,
        target: PathBuf,
        fstype: String,
        flags: MountFlags,
        data: String,
    },
    Umount(PathBuf),
    Detach(PathBuf),
    MoveMount(PathBuf, PathBuf),
    SwitchRoot(PathBuf),
    /// The module file and its parameters.
    LoadModule(PathBuf, String),
    LinkUp(u32),
    LinkDown(u32),
    RenameLink(u32, String),
    AddAddress(u32, Ipv4Net),
    AddDefaultRoute(u32, Ipv4Addr, bool),
    DhcpTransport(u32, Ipv4Addr),
    Sethostname(String),
    Setdomainname(String),
    Swapon(PathBuf),
    /// A loop device for the file named: `/dev/loop0` under the dir given.
    AttachLoop(PathBuf),
    MemoryFile(String),
    /// A device-mapper device: its name, sectors, target and table.
    DeviceMapper(String, u64, String, String),
    /// [`Sys::read_start`] of the file at this path.
    Read(PathBuf),
    /// [`Sys::read_bounded`] of the file at this path, at this offset, given up after this bound.
    ReadAt(PathBuf, u64, Duration),
    /// [`Sys::nbd_connect`]: the server and export.
    NbdConnect(std::net::SocketAddrV4, String),
    /// [`Sys::nbd_attach`]: the export's size, block size and backend identifier.
    NbdAttach(u64, u64, String),
    /// [`Sys::spawn_self`]'s argv.
    Spawn(Vec<OsString>),
    Exec(PathBuf, Vec<OsString>),
    Shell(PathBuf),
    Sleep(Duration),
    Sync,
    Reboot {
        poweroff: bool,
    },
    /// [`Sys::interfaces`]: offered to `fail`, never recorded.
    Interfaces,
}

/// Decides which calls fail, with which errno.
pub type FailWith = Box<dyn Fn(&Call) -> Option<i32> + Send + Sync>;

/// A recording stand-in for the kernel. A successful `exec` or `reboot` ends the process, so the
/// fake panics with `"fake exec <path>"` / `"fake reboot"`: tests catch that with `catch_unwind`.
/// `fail` decides which calls return an error (as a raw errno); `/proc/<name>` files come from
/// `proc`; a target counts as mounted once a mount on it succeeded. DHCP messages go to `dhcp`,
/// a scripted server, over a transport with its own virtual clock.
pub struct Fake {
    pub calls: Mutex<Vec<Call>>,
    pub proc: BTreeMap<String, String>,
    pub interfaces: Vec<Interface>,
    /// Indexes of the links that have carrier while set up (a cable in): up and carrier as
    /// the last successful `link_up`/`link_down` left them.
    pub cabled: Vec<u32>,
    pub uname: Uname,
    pub fail: FailWith,
    pub dhcp: Option<Arc<Mutex<Server>>>,
    /// Modules loaded through the fake, by name.
    loaded: Mutex<Vec<String>>,
    /// Whether each call in `calls` failed.
    failed: Mutex<Vec<bool>>,
}

impl Default for Fake {
    fn default() -> Self {
        let proc = BTreeMap::from([("filesystems".to_string(), "nodev\ttmpfs\nnodev\toverlay\n".to_string())]);
        let uname = Uname { nodename: "(none)".into(), domainname: "(none)".into(), release: "6.1.0".into() };
        Self {
            calls: Mutex::default(),
            proc,
            interfaces: Vec::new(),
            cabled: Vec::new(),
            uname,
            fail: Box::new(|_| None),
            dhcp: None,
            loaded: Mutex::default(),
            failed: Mutex::default(),
        }
    }
}

impl Fake {
    /// A fake whose calls fail where `fail` says.
    pub fn failing(fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) -> Self {
        Self { fail: Box::new(fail), ..Self::default() }
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: Call) -> io::Result<()> {
        let errno = (self.fail)(&call);
        self.calls.lock().unwrap().push(call);
        self.failed.lock().unwrap().push(errno.is_some());
        match errno {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

impl Sys for Fake {
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        let call = Call::Mount {
            source: source.into(),
            target: target.into(),
            fstype: fstype.into(),
            flags,
            data: data.into(),
        };
        self.record(call)
    }

    fn umount(&self, target: &Path) -> io::Result<()> {
        self.record(Call::Umount(target.into()))
    }

    fn detach(&self, target: &Path) -> io::Result<()> {
        self.record(Call::Detach(target.into()))
    }

    /// The fake kernel tells no mount apart.
    fn mount_key(&self, _target: &Path) -> Option<crate::model::outcome::MountKey> {
        None
    }

    /// Mounted by a call that did not fail, and not moved away since.
    fn is_mounted(&self, target: &Path, _magic: FsWord) -> bool {
        let calls = self.calls.lock().unwrap();
        let failed = self.failed.lock().unwrap();
        let mut mounted = false;
        for (c, _) in calls.iter().zip(failed.iter()).filter(|(_, failed)| !**failed) {
            match c {
                Call::Mount { target: t, .. } | Call::MoveMount(_, t) if t == target => mounted = true,
                Call::MoveMount(from, _) if from == target => mounted = false,
                _ => {}
            }
        }
        mounted
    }

    /// `modules` lists, after what was set, each module loaded through the fake, as the kernel would.
    fn proc_file(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut text = self.proc.get(name).cloned();
        if name == "modules" {
            let loaded = self.loaded.lock().unwrap();
            let lines: String = loaded.iter().map(|m| format!("{m} 16384 0 - Live 0x0000000000000000\n")).collect();
            text = Some(text.unwrap_or_default() + &lines);
        }
        text.map(String::into_bytes).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        if let Some(errno) = (self.fail)(&Call::Interfaces) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let (calls, failed) = (self.calls.lock().unwrap(), self.failed.lock().unwrap());
        let mut interfaces = self.interfaces.clone();
        for interface in interfaces.iter_mut().filter(|i| self.cabled.contains(&i.index)) {
            for (call, _) in calls.iter().zip(failed.iter()).filter(|(_, failed)| !**failed) {
                match call {
                    Call::LinkUp(i) if *i == interface.index => (interface.up, interface.carrier) = (true, true),
                    Call::LinkDown(i) if *i == interface.index => (interface.up, interface.carrier) = (false, false),
                    _ => {}
                }
            }
        }
        Ok(interfaces)
    }

    fn uname(&self) -> Uname {
        self.uname.clone()
    }

    fn link_up(&self, index: u32) -> io::Result<()> {
        self.record(Call::LinkUp(index))
    }

    fn link_down(&self, index: u32) -> io::Result<()> {
        self.record(Call::LinkDown(index))
    }

    fn rename_link(&self, index: u32, name: &str) -> io::Result<()> {
        self.record(Call::RenameLink(index, name.into()))
    }

    fn add_address(&self, index: u32, net: Ipv4Net) -> io::Result<()> {
        self.record(Call::AddAddress(index, net))
    }

    fn add_default_route(&self, index: u32, gateway: Ipv4Addr, onlink: bool) -> io::Result<()> {
        self.record(Call::AddDefaultRoute(index, gateway, onlink))
    }

    fn dhcp_transport(&self, index: u32, source: Ipv4Addr) -> io::Result<Box<dyn Transport>> {
        self.record(Call::DhcpTransport(index, source))?;
        let server = self.dhcp.clone().ok_or_else(|| io::Error::from(rustix::io::Errno::NETDOWN))?;
        Ok(Box::new(Scripted::new(server)))
    }

    fn random(&self) -> u64 {
        42
    }

    fn load_module(&self, _file: BorrowedFd<'_>, path: &Path, params: &str) -> io::Result<()> {
        self.record(Call::LoadModule(path.into(), params.into()))?;
        let name = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('.').next()).unwrap_or_default();
        self.loaded.lock().unwrap().push(name.to_string());
        Ok(())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::Sethostname(name.into()))
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        self.record(Call::Setdomainname(name.into()))
    }

    fn swapon(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Swapon(path.into()))
    }

    fn attach_loop(
        &self,
        dev: &Path,
        _file: BorrowedFd<'_>,
        name: &Path,
    ) -> io::Result<(PathBuf, std::os::fd::OwnedFd)> {
        self.record(Call::AttachLoop(name.into()))?;
        Ok((dev.join("loop0"), std::fs::File::open("/dev/null")?.into()))
    }

    /// `dm-0` under the dir given.
    fn device_mapper(&self, dev: &Path, name: &str, sectors: u64, target: &str, params: &str) -> io::Result<PathBuf> {
        self.record(Call::DeviceMapper(name.into(), sectors, target.into(), params.into()))?;
        Ok(dev.join("dm-0"))
    }

    /// `proc["dm-status"]`, else verity's `V`: no block mismatched.
    fn device_mapper_status(&self, _dev: &Path, _name: &str) -> io::Result<String> {
        Ok(self.proc.get("dm-status").cloned().unwrap_or_else(|| "V".into()))
    }

    /// `proc["kmsg"]`'s lines.
    fn kernel_log(&self) -> io::Result<Vec<String>> {
        Ok(self.proc.get("kmsg").map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default())
    }

    /// A connection to /dev/null; the export read-only, `proc["nbd-size"]` bytes (1 MiB
    /// without), or writable when `proc["nbd-writable"]` is set (refused, as the real one does).
    fn nbd_connect(
        &self,
        server: std::net::SocketAddrV4,
        export: &str,
        _bound: Duration,
    ) -> io::Result<(std::os::fd::OwnedFd, crate::net::nbd::Export)> {
        use crate::net::nbd::{Export, FLAG_HAS_FLAGS, FLAG_READ_ONLY};
        self.record(Call::NbdConnect(server, export.into()))?;
        if self.proc.contains_key("nbd-writable") {
            return Err(io::Error::other(format!("nbd export of {server}: writable")));
        }
        let size = self.proc.get("nbd-size").and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
        let export = Export { size, flags: FLAG_HAS_FLAGS | FLAG_READ_ONLY, block_sizes: None };
        Ok((std::fs::File::open("/dev/null")?.into(), export))
    }

    /// Device 0.
    fn nbd_attach(&self, c: &crate::net::nbd::genl::NbdConnect) -> io::Result<u32> {
        self.record(Call::NbdAttach(c.size, c.block_size, c.backend.clone()))?;
        Ok(0)
    }

    /// Pid 4242.
    fn spawn_self(&self, argv: &[OsString]) -> io::Result<u32> {
        self.record(Call::Spawn(argv.to_vec()))?;
        Ok(4242)
    }

    /// A real memfd, unless `fail` says otherwise.
    fn memory_file(&self, name: &str) -> io::Result<std::os::fd::OwnedFd> {
        self.record(Call::MemoryFile(name.into()))?;
        Ok(rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?)
    }

    /// Reads the real file, unless `fail` says otherwise.
    fn read_start(&self, file: BorrowedFd<'_>, path: &Path, buf: &mut [u8]) -> io::Result<usize> {
        self.record(Call::Read(path.into()))?;
        super::real::read_from_start(file, buf)
    }

    fn read_bounded(
        &self,
        file: BorrowedFd<'_>,
        path: &Path,
        buf: &mut [u8],
        offset: u64,
        bound: Duration,
    ) -> io::Result<usize> {
        self.record(Call::ReadAt(path.into(), offset, bound))?;
        Ok(rustix::io::pread(file, buf, offset)?)
    }

    fn exec(&self, path: &Path, argv: &[OsString]) -> io::Error {
        match self.record(Call::Exec(path.into(), argv.to_vec())) {
            Err(e) => e,
            Ok(()) => panic!("fake exec {}", path.display()),
        }
    }

    fn shell(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Shell(path.into()))
    }

    fn sleep(&self, duration: Duration) {
        let _ = self.record(Call::Sleep(duration));
    }

    fn sync(&self, _bound: Duration) -> bool {
        self.record(Call::Sync).is_ok()
    }

    fn reboot(&self, poweroff: bool) -> io::Error {
        let _ = self.record(Call::Reboot { poweroff });
        panic!("fake reboot")
    }

    fn mount_bounded(&self, m: &super::MountCall<'_>, _bound: Duration) -> io::Result<()> {
        self.mount(m.source, m.target, m.fstype, m.flags, m.data)
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(Call::MoveMount(from.into(), to.into()))
    }

    /// Nothing is deleted or moved: the new root stays where it is, and the boot goes on there.
    fn switch_root(&self, new_root: &Path) -> io::Result<(PathBuf, crate::fs::initramfs::Cleared)> {
        self.record(Call::SwitchRoot(new_root.into()))?;
        Ok((new_root.into(), crate::fs::initramfs::Cleared::default()))
    }
}
