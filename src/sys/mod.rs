//! The syscall seam: the few operations with effects beyond the files under the root
//! (mounts, kernel hostname, modules, exec, reboot, the emergency shell). `Real` calls the kernel;
//! `Fake` records every call and can inject errors, so unit tests assert exact sequences.
//! File copying is not behind this seam: it is tested for real in mount namespaces.

pub mod console;
pub(crate) mod unsafe_ops;

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::fs::FsWord;
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::system::RebootCommand;

/// What `stateless` asks of the kernel beyond plain file I/O.
pub trait Sys {
    /// mount(2) with text options.
    fn mount(&mut self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()>;
    fn umount(&mut self, target: &Path) -> io::Result<()>;
    /// True when `target` is the root of a mount whose statfs type is `magic`.
    fn is_mounted(&mut self, target: &Path, magic: FsWord) -> bool;
    /// The text of /proc/filesystems.
    fn filesystems(&mut self) -> io::Result<String>;
    /// Loads a kernel module file (finit_module).
    fn load_module(&mut self, path: &Path) -> io::Result<()>;
    fn sethostname(&mut self, name: &str) -> io::Result<()>;
    fn setdomainname(&mut self, name: &str) -> io::Result<()>;
    /// execve: returns only on failure.
    fn exec(&mut self, path: &Path, argv: &[OsString]) -> io::Error;
    /// Runs an interactive shell on the console and waits for it.
    fn shell(&mut self, path: &Path) -> io::Result<()>;
    fn sleep(&mut self, duration: Duration);
    /// reboot(2): returns only on failure.
    fn reboot(&mut self, poweroff: bool) -> io::Error;
}

/// The kernel.
#[derive(Debug, Default)]
pub struct Real;

impl Sys for Real {
    fn mount(&mut self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        let data = std::ffi::CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(rustix::mount::mount(source, target, fstype, flags, Some(data.as_c_str()))?)
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        Ok(rustix::mount::unmount(target, UnmountFlags::empty())?)
    }

    fn is_mounted(&mut self, target: &Path, magic: FsWord) -> bool {
        crate::fs::mounts::is_mounted(target, magic)
    }

    fn filesystems(&mut self) -> io::Result<String> {
        std::fs::read_to_string("/proc/filesystems")
    }

    fn load_module(&mut self, path: &Path) -> io::Result<()> {
        /// Lets the kernel decompress `.ko.xz`/`.ko.zst` itself (Linux 6.4+).
        const MODULE_INIT_COMPRESSED_FILE: i32 = 4;
        let file = std::fs::File::open(path)?;
        let flags = if path.extension().is_some_and(|e| e == "ko") { 0 } else { MODULE_INIT_COMPRESSED_FILE };
        Ok(rustix::system::finit_module(&file, c"", flags)?)
    }

    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        Ok(rustix::system::sethostname(name.as_bytes())?)
    }

    fn setdomainname(&mut self, name: &str) -> io::Result<()> {
        Ok(rustix::system::setdomainname(name.as_bytes())?)
    }

    fn exec(&mut self, path: &Path, argv: &[OsString]) -> io::Error {
        let mut command = Command::new(path);
        if let Some((arg0, rest)) = argv.split_first() {
            command.arg0(arg0).args(rest);
        }
        command.exec()
    }

    fn shell(&mut self, path: &Path) -> io::Result<()> {
        let mut command = Command::new(path);
        command.arg("-i");
        // The console when /dev/console can be opened, else the stdio the kernel gave PID 1.
        let console = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/console");
        if let (Ok(stdin), Ok(stdout), Ok(stderr)) = (console(), console(), console()) {
            command.stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
        }
        let status = crate::sys::unsafe_ops::with_controlling_tty(&mut command).status()?;
        log::info!("shell exited with {status}");
        Ok(())
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn reboot(&mut self, poweroff: bool) -> io::Error {
        rustix::fs::sync();
        let command = if poweroff { RebootCommand::PowerOff } else { RebootCommand::Restart };
        match rustix::system::reboot(command) {
            Ok(()) => io::Error::other("reboot returned"),
            Err(errno) => errno.into(),
        }
    }
}

/// One recorded call of [`Fake`].
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Mount { source: String, target: PathBuf, fstype: String, data: String },
    Umount(PathBuf),
    LoadModule(PathBuf),
    Sethostname(String),
    Setdomainname(String),
    Exec(PathBuf, Vec<OsString>),
    Shell(PathBuf),
    Sleep(Duration),
    Reboot { poweroff: bool },
}

/// A recording stand-in for the kernel. A successful `exec` or `reboot` ends the process, so the
/// fake panics with `"fake exec <path>"` / `"fake reboot"`: tests catch that with `catch_unwind`.
/// `fail` decides which calls return an error (as a raw
/// errno); /proc/filesystems is `filesystems`; a target counts as mounted once a mount on it
/// succeeded.
#[cfg(test)]
pub struct Fake {
    pub calls: Vec<Call>,
    pub filesystems: String,
    #[allow(clippy::type_complexity)]
    pub fail: Box<dyn Fn(&Call) -> Option<i32>>,
}

#[cfg(test)]
impl Default for Fake {
    fn default() -> Self {
        Self { calls: Vec::new(), filesystems: "nodev\ttmpfs\nnodev\toverlay\n".into(), fail: Box::new(|_| None) }
    }
}

#[cfg(test)]
impl Fake {
    fn record(&mut self, call: Call) -> io::Result<()> {
        let errno = (self.fail)(&call);
        self.calls.push(call);
        match errno {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
impl Sys for Fake {
    fn mount(&mut self, source: &str, target: &Path, fstype: &str, _flags: MountFlags, data: &str) -> io::Result<()> {
        let call =
            Call::Mount { source: source.into(), target: target.into(), fstype: fstype.into(), data: data.into() };
        self.record(call)
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::Umount(target.into()))
    }

    fn is_mounted(&mut self, target: &Path, _magic: FsWord) -> bool {
        self.calls.iter().any(|c| matches!(c, Call::Mount { target: t, .. } if t == target) && (self.fail)(c).is_none())
    }

    fn filesystems(&mut self) -> io::Result<String> {
        Ok(self.filesystems.clone())
    }

    fn load_module(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::LoadModule(path.into()))
    }

    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        self.record(Call::Sethostname(name.into()))
    }

    fn setdomainname(&mut self, name: &str) -> io::Result<()> {
        self.record(Call::Setdomainname(name.into()))
    }

    fn exec(&mut self, path: &Path, argv: &[OsString]) -> io::Error {
        match self.record(Call::Exec(path.into(), argv.to_vec())) {
            Err(e) => e,
            Ok(()) => panic!("fake exec {}", path.display()),
        }
    }

    fn shell(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::Shell(path.into()))
    }

    fn sleep(&mut self, duration: Duration) {
        let _ = self.record(Call::Sleep(duration));
    }

    fn reboot(&mut self, poweroff: bool) -> io::Error {
        let _ = self.record(Call::Reboot { poweroff });
        panic!("fake reboot")
    }
}
