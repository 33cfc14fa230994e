//! `stateless nbd-supervise`: the process that keeps an NBD root alive after the boot
//! (docs/design/nbd-root.md, "After the switch: the supervisor"). PID 1 starts it with [`spawn`]
//! before `switch_root`; it reconnects `/dev/nbdN` when the connection the kernel holds dies.
//!
//! - How it sees a dead connection: the boot hands it a dup of the connected TCP socket whose
//!   other descriptor the kernel's nbd driver holds (one socket, two descriptors), and it
//!   poll(2)s that dup for POLLRDHUP (POLLHUP and POLLERR come unasked), never POLLIN: the
//!   kernel's receive thread reads the replies. The kernel's `nbd_mark_nsock_dead`
//!   (`drivers/block/nbd.c`), called on any send or receive error and on a request timeout, is
//!   where NBD_CMD_LINK_DEAD is multicast; it also calls `kernel_sock_shutdown(nsock->sock,
//!   SHUT_RDWR)`, which makes the dup poll RDHUP|HUP; a server that dies sends a FIN (RDHUP),
//!   or keepalive ends the connection (ERR). So the poll sees what the multicast would say,
//!   without joining a netlink group (and cannot lose the news to ENOBUFS). Every
//!   [`STATUS_EVERY`] the poll times out and NBD_CMD_STATUS asks whether the kernel still holds
//!   a configuration for the device: when it does not (`nbd-client -d`), the supervisor exits 0.
//! - How it reconnects: after [`FIRST_WAIT`] the server it had (a restarted server comes back
//!   there), then the others in the order given (the boot's HRW order); each a TCP connection
//!   with keepalive, the handshake for the same export ([`crate::net::nbd::handshake`]), refused
//!   when the export's size differs (another image) or it is writable; then
//!   NBD_CMD_RECONFIGURE gives the kernel the new socket, and the old dup is closed. After a
//!   round of failures it waits 1 s doubling to 8 s, plus up to 1 s of jitter (so a hundred
//!   clients do not come back in step), forever: the kernel holds I/O `dead_conn_timeout`
//!   seconds, then fails it with EIO, and a later reconfigure still restores the device.
//! - Why it is built so: its argv[0] is `@stateless-nbd` ([`ARG0`]): systemd spares processes
//!   whose argv[0] starts with '@' at switch-root and shutdown (systemd's
//!   `docs/ROOT_STORAGE_DAEMONS.md`), and it ignores SIGTERM, SIGINT and SIGHUP. It runs from
//!   the emptied initramfs (no /dev, no /proc after the switch) and must never read a file of
//!   the NBD root: a page fault or a read there while the connection is down would wait for
//!   the reconnect it is to make. Hence `mlockall(MCL_CURRENT|MCL_FUTURE)` (its own pages never
//!   paged out to be read back), `oom_score_adj` -1000 (set by
//!   PID 1, which started it: /proc may have moved into the new root before it runs), no path
//!   opened after the start: it logs
//!   to a /dev/kmsg the boot opened for it (`<4>stateless-nbd: ...`).
//!
//! The loop ([`supervise`]) runs over [`Reconnect`], the few effects it has; [`NbdKernel`] is the
//! real one, a fake in the tests.

use std::ffi::{OsStr, OsString};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use log::Level;

use crate::model::nbdroot::MAX_EXPORT_NAME;
use crate::model::servers::MAX_SERVERS;
use crate::model::text::quoted;
use crate::net::nbd::{self, genl, Export};

/// The tools' name of the command (the first argument after argv[0]).
pub const COMMAND: &str = "nbd-supervise";
/// Its argv[0]: '@' first, so systemd leaves it running at switch-root and shutdown.
pub const ARG0: &str = "@stateless-nbd";
/// The tag of its kmsg lines.
const TAG: &str = "stateless-nbd";
/// How often the device's configuration is checked while the connection lives.
pub const STATUS_EVERY: Duration = Duration::from_secs(30);
/// The wait before the first try after a death (a server restarting).
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between rounds, jitter aside.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The bound on connecting and on each read and write of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Rounds whose every failure is logged; later rounds log one line each.
const VERBOSE_ROUNDS: u32 = 2;

const USAGE: &str = "\
usage: stateless nbd-supervise --index N --export NAME --server ADDR:PORT... --size BYTES --socket FD [--kmsg FD]
started by the boot for an NBD root; not for admins: reconnects /dev/nbdN when its connection dies
";

/// What the supervisor watches: its command line ([`Watch::args`], [`Watch::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// The device: /dev/nbd<index>.
    pub index: u32,
    /// The export name, also the kernel's backend identifier.
    pub export: String,
    /// The servers in the order to try, the one connected now first.
    pub servers: Vec<SocketAddrV4>,
    /// The export's size in bytes, as the first handshake gave it.
    pub size: u64,
    /// An inherited dup of the connected socket the kernel holds.
    pub socket: i32,
    /// An inherited descriptor of /dev/kmsg, open for writing: the log.
    pub kmsg: Option<i32>,
}

/// `value` as a number, in its one decimal spelling (no sign, no leading zero).
fn number<T: std::str::FromStr + ToString>(flag: &str, value: &str) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(n) if n.to_string() == value => Ok(n),
        _ => Err(format!("{flag}: {} is not a number", quoted(value))),
    }
}

/// A descriptor number: 3 or more (0 to 2 are the child's /dev/null).
fn descriptor(flag: &str, value: &str) -> Result<i32, String> {
    match number::<i32>(flag, value)? {
        fd if fd >= 3 => Ok(fd),
        fd => Err(format!("{flag}: descriptor {fd} (0 to 2 are standard input and output)")),
    }
}

/// Sets `slot` once.
fn once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), String> {
    match slot.replace(value) {
        Some(_) => Err(format!("{flag} is given twice")),
        None => Ok(()),
    }
}

impl Watch {
    /// The command line after argv[0]: `nbd-supervise --index N --export NAME --server
    /// ADDR:PORT... --size BYTES --socket FD [--kmsg FD]`.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![COMMAND.into(), "--index".into(), self.index.to_string().into()];
        args.extend(["--export".into(), self.export.clone().into()]);
        for server in &self.servers {
            args.extend(["--server".into(), server.to_string().into()]);
        }
        args.extend(["--size".into(), self.size.to_string().into()]);
        args.extend(["--socket".into(), self.socket.to_string().into()]);
        if let Some(kmsg) = self.kmsg {
            args.extend(["--kmsg".into(), kmsg.to_string().into()]);
        }
        args
    }

    /// The inverse of [`Watch::args`], strict: each option once (`--server` 1 to
    /// [`MAX_SERVERS`] times, none twice), numbers in their decimal spelling, the export at most
    /// [`MAX_EXPORT_NAME`] bytes, descriptors 3 or more and not the same.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Watch, String> {
        let mut args = args.into_iter();
        if args.next().as_deref() != Some(OsStr::new(COMMAND)) {
            return Err(format!("the arguments must start with {COMMAND}"));
        }
        let (mut index, mut export, mut size, mut socket, mut kmsg) = (None, None, None, None, None);
        let mut servers = Vec::new();
        while let Some(arg) = args.next() {
            let flag = match arg.to_str() {
                Some(f @ ("--index" | "--export" | "--server" | "--size" | "--socket" | "--kmsg")) => f,
                _ => return Err(format!("unknown argument {}", quoted(arg.as_bytes()))),
            };
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let value = value.into_string().map_err(|v| format!("{flag}: {} is not UTF-8", quoted(v.as_bytes())))?;
            match flag {
                "--index" => once(&mut index, flag, number::<u32>(flag, &value)?)?,
                "--export" if value.len() > MAX_EXPORT_NAME || value.contains('\0') => {
                    return Err(format!("--export: {} bytes (at most {MAX_EXPORT_NAME}, no NUL)", value.len()))
                }
                "--export" => once(&mut export, flag, value)?,
                "--server" => {
                    let server = number::<SocketAddrV4>(flag, &value)
                        .map_err(|_| format!("--server: {} is not an IPv4 address and port", quoted(&value)))?;
                    if server.port() == 0 || servers.contains(&server) {
                        return Err(format!("--server: {server} is port 0 or named twice"));
                    }
                    servers.push(server);
                }
                "--size" => once(&mut size, flag, number::<u64>(flag, &value)?)?,
                "--socket" => once(&mut socket, flag, descriptor(flag, &value)?)?,
                _ => once(&mut kmsg, flag, descriptor(flag, &value)?)?,
            }
        }
        if servers.is_empty() || servers.len() > MAX_SERVERS {
            return Err(format!("{} servers (1 to {MAX_SERVERS})", servers.len()));
        }
        let socket = socket.ok_or("--socket is required")?;
        if kmsg == Some(socket) {
            return Err(format!("--socket and --kmsg are both descriptor {socket}"));
        }
        Ok(Watch {
            index: index.ok_or("--index is required")?,
            export: export.ok_or("--export is required")?,
            servers,
            size: size.ok_or("--size is required")?,
            socket,
            kmsg,
        })
    }

    fn device(&self) -> String {
        format!("/dev/nbd{}", self.index)
    }
}

/// The supervisor's effects: what [`supervise`] does besides deciding.
pub trait Reconnect {
    /// A connected socket; dropping it closes it.
    type Socket;
    /// A TCP connection to `server` and the handshake for `export`, at the transmission phase.
    fn connect(&mut self, server: SocketAddrV4, export: &str) -> Result<(Self::Socket, Export), String>;
    /// NBD_CMD_RECONFIGURE: device `index` gets `socket` in place of its dead one.
    fn reconfigure(&mut self, index: u32, export: &str, socket: &Self::Socket) -> Result<(), String>;
    /// Waits until `socket` is dead (true) or `timeout` passed (false).
    fn wait_dead(&mut self, socket: &Self::Socket, timeout: Duration) -> Result<bool, String>;
    /// Whether the kernel still holds a configuration for device `index` (NBD_CMD_STATUS).
    fn configured(&mut self, index: u32) -> Result<bool, String>;
    fn sleep(&mut self, time: Duration);
    /// Monotonic time.
    fn now(&mut self) -> Duration;
    /// A random wait below a second.
    fn jitter(&mut self) -> Duration;
    fn log(&mut self, level: Level, message: &str);
}

/// The wait after failed round `round` (0 first): 1 s doubling to [`MAX_BACKOFF`], plus
/// `jitter` (below 1 s).
pub fn backoff(round: u32, jitter: Duration) -> Duration {
    let base = 1u64.checked_shl(round).unwrap_or(u64::MAX).min(MAX_BACKOFF.as_secs());
    Duration::from_secs(base).saturating_add(jitter.min(Duration::from_millis(999)))
}

/// Watches `socket` (the dup of the kernel's, the connection to `watch.servers[0]`) and
/// reconnects the device each time it dies; returns the exit code, 0, once the kernel no
/// longer holds the device's configuration.
pub fn supervise<R: Reconnect>(link: &mut R, watch: &Watch, socket: R::Socket) -> i32 {
    let device = watch.device();
    let (mut socket, mut current) = (socket, 0);
    loop {
        match link.wait_dead(&socket, STATUS_EVERY) {
            Ok(true) => {}
            Ok(false) => {
                if gone(link, watch) {
                    return 0;
                }
                continue;
            }
            Err(e) => {
                link.log(Level::Warn, &format!("watching {device}'s connection: {e}"));
                link.sleep(FIRST_WAIT);
                continue;
            }
        }
        let server = watch.servers.get(current).map_or_else(String::new, |s| format!(" to {s}"));
        link.log(Level::Warn, &format!("{device}: the connection{server} is dead; reconnecting"));
        if gone(link, watch) {
            return 0;
        }
        match reconnect(link, watch, current) {
            // The old dup is closed here, the kernel has let go of its descriptor of it.
            Some((new, at)) => (socket, current) = (new, at),
            None => return 0,
        }
    }
}

/// Whether the kernel no longer holds device's configuration (logged); an error asking is
/// logged and counts as held.
fn gone<R: Reconnect>(link: &mut R, watch: &Watch) -> bool {
    match link.configured(watch.index) {
        Ok(true) => false,
        Ok(false) => {
            link.log(Level::Warn, &format!("{} is no longer configured (disconnected): exiting", watch.device()));
            true
        }
        Err(e) => {
            link.log(Level::Warn, &format!("the state of {}: {e}", watch.device()));
            false
        }
    }
}

/// The servers' positions in the order to try: `current` first, then the others as given.
fn order(count: usize, current: usize) -> impl Iterator<Item = usize> {
    std::iter::once(current).chain((0..count).filter(move |&at| at != current))
}

/// Tries the servers until one takes over the device: its socket and position; None when the
/// device is no longer configured.
fn reconnect<R: Reconnect>(link: &mut R, watch: &Watch, current: usize) -> Option<(R::Socket, usize)> {
    let device = watch.device();
    let started = link.now();
    let (mut tries, mut round) = (0u64, 0u32);
    link.sleep(FIRST_WAIT);
    loop {
        let mut last = String::new();
        for at in order(watch.servers.len(), current) {
            let Some(&server) = watch.servers.get(at) else { continue };
            tries = tries.saturating_add(1);
            match attempt(link, watch, server) {
                Ok(socket) => {
                    let after = link.now().saturating_sub(started).as_secs_f64();
                    link.log(
                        Level::Warn,
                        &format!("reconnected {device} to {server} after {after:.1} s (try {tries})"),
                    );
                    return Some((socket, at));
                }
                Err(why) if round < VERBOSE_ROUNDS => link.log(Level::Warn, &format!("{device}: {server}: {why}")),
                Err(why) => last = format!("{server}: {why}"),
            }
        }
        if gone(link, watch) {
            return None;
        }
        if round >= VERBOSE_ROUNDS {
            let after = link.now().saturating_sub(started).as_secs();
            link.log(Level::Warn, &format!("{device}: no server after {after} s (try {tries}); last, {last}"));
        }
        let jitter = link.jitter();
        link.sleep(backoff(round, jitter));
        round = round.saturating_add(1);
    }
}

/// One server: connected, the same export (size, read-only), handed to the kernel.
fn attempt<R: Reconnect>(link: &mut R, watch: &Watch, server: SocketAddrV4) -> Result<R::Socket, String> {
    let (socket, export) = link.connect(server, &watch.export)?;
    if export.size != watch.size {
        return Err(format!("its export is {} bytes, not {}: another image, refused", export.size, watch.size));
    }
    if !export.read_only() {
        return Err("it serves the export writable: refused (nothing may write the image)".into());
    }
    link.reconfigure(watch.index, &watch.export, &socket).map_err(|e| format!("NBD_CMD_RECONFIGURE: {e}"))?;
    Ok(socket)
}

/// Whether `socket` is dead (true) or `timeout` passed first (false); an interrupted wait
/// counts as the timeout.
fn socket_dead(socket: &OwnedFd, timeout: Duration) -> Result<bool, String> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let dead = PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
    let mut fds = [PollFd::new(socket, PollFlags::RDHUP)];
    let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
    match poll(&mut fds, Some(&Timespec { tv_sec: secs, tv_nsec: 0 })) {
        Ok(_) => Ok(fds.iter().any(|fd| fd.revents().intersects(dead))),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(format!("poll: {e}")),
    }
}

/// The real effects: the kernel's nbd family, std's TCP, kmsg.
pub struct NbdKernel {
    family: Option<genl::NbdFamily>,
    kmsg: Option<OwnedFd>,
    started: Instant,
}

impl NbdKernel {
    pub fn new(kmsg: Option<OwnedFd>) -> Self {
        NbdKernel { family: None, kmsg, started: Instant::now() }
    }

    /// The nbd family's id, asked of the kernel once.
    fn family(&mut self) -> Result<u16, String> {
        if let Some(family) = self.family {
            return Ok(family.id);
        }
        let family = genl::resolve().map_err(|e| e.to_string())?;
        self.family = Some(family);
        Ok(family.id)
    }
}

impl Reconnect for NbdKernel {
    type Socket = OwnedFd;

    fn connect(&mut self, server: SocketAddrV4, export: &str) -> Result<(OwnedFd, Export), String> {
        nbd::connect(server, export, HANDSHAKE_TIMEOUT).map_err(|e| e.to_string())
    }

    fn reconfigure(&mut self, index: u32, export: &str, socket: &OwnedFd) -> Result<(), String> {
        let fd = u32::try_from(socket.as_raw_fd()).map_err(|_| "a negative descriptor".to_string())?;
        genl::reconfigure(self.family()?, index, export, fd).map_err(|e| e.to_string())
    }

    fn wait_dead(&mut self, socket: &OwnedFd, timeout: Duration) -> Result<bool, String> {
        socket_dead(socket, timeout)
    }

    fn configured(&mut self, index: u32) -> Result<bool, String> {
        let devices = genl::status(self.family()?, Some(index)).map_err(|e| e.to_string())?;
        Ok(devices.iter().any(|d| d.index == index && d.connected))
    }

    fn sleep(&mut self, time: Duration) {
        std::thread::sleep(time);
    }

    fn now(&mut self) -> Duration {
        self.started.elapsed()
    }

    fn jitter(&mut self) -> Duration {
        let mut bytes = [0u8; 2];
        let random = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::NONBLOCK);
        // Without randomness (never, after the boot's first second), the time's nanoseconds.
        let n = match random {
            Ok(2) => u64::from(u16::from_le_bytes(bytes)),
            _ => u64::from(self.started.elapsed().subsec_nanos()),
        };
        Duration::from_millis(n % 1000)
    }

    fn log(&mut self, level: Level, message: &str) {
        let line = crate::log::tagged_kmsg_line(TAG, level, message);
        let written = self.kmsg.as_ref().map(|kmsg| rustix::io::write(kmsg, line.as_bytes()));
        if !matches!(written, Some(Ok(_))) {
            eprint!("{line}");
        }
    }
}

/// The supervisor's whole argv for `watch` ([`ARG0`], then [`Watch::args`]), for PID 1 to start
/// it with (`/proc/self/exe`, [`crate::sys::Sys::spawn_self`]) before the switch: checked as the
/// child will parse it, and its socket and kmsg descriptors open without FD_CLOEXEC (dups the
/// caller made), so the child inherits them.
pub fn argv(watch: &Watch) -> io::Result<Vec<OsString>> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    Watch::parse(watch.args()).map_err(|e| invalid(format!("nbd-supervise: {e}")))?;
    for fd in std::iter::once(watch.socket).chain(watch.kmsg) {
        if !crate::sys::unsafe_ops::fd_inheritable(fd)? {
            return Err(invalid(format!(
                "nbd-supervise: descriptor {fd} is close-on-exec: the child would not have it"
            )));
        }
    }
    Ok(std::iter::once(ARG0.into()).chain(watch.args()).collect())
}

/// `stateless nbd-supervise ARGS`: `args` are those after `nbd-supervise`. Returns only when
/// the device is no longer configured (0) or the arguments are wrong (2).
pub fn command(args: impl Iterator<Item = OsString>) -> i32 {
    let mut args = args.peekable();
    if args.peek().is_some_and(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return 0;
    }
    // `ps` and /proc/PID/comm name it (exec of /proc/self/exe would make it `exe`).
    let named = rustix::thread::set_name(c"stateless-nbd");
    let locked = rustix::mm::mlockall(rustix::mm::MlockAllFlags::CURRENT | rustix::mm::MlockAllFlags::FUTURE);
    let ignored = crate::sys::unsafe_ops::ignore_signals(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
    let watch = match Watch::parse(std::iter::once(OsString::from(COMMAND)).chain(args)) {
        Ok(watch) => watch,
        Err(e) => {
            eprintln!("stateless: {COMMAND}: {e}\n{USAGE}");
            return 2;
        }
    };
    let adopt = |fd: i32| crate::sys::unsafe_ops::adopt_fd(fd).map_err(|e| format!("descriptor {fd}: {e}"));
    let adopted = adopt(watch.socket).and_then(|socket| Ok((socket, watch.kmsg.map(adopt).transpose()?)));
    let (socket, kmsg) = match adopted {
        Ok(fds) => fds,
        Err(e) => {
            eprintln!("stateless: {COMMAND}: {e}");
            return 2;
        }
    };
    let mut kernel = NbdKernel::new(kmsg);
    if let Err(e) = rustix::net::sockopt::socket_type(&socket) {
        kernel.log(Level::Error, &format!("--socket {}: not a socket: {e}", watch.socket));
        return 2;
    }
    for (what, result) in [
        ("naming it stateless-nbd", named.map_err(io::Error::from)),
        ("mlockall", locked.map_err(io::Error::from)),
        ("ignoring SIGTERM, SIGINT and SIGHUP", ignored),
    ] {
        if let Err(e) = result {
            kernel.log(Level::Warn, &format!("{what}: {e}"));
        }
    }
    let servers: Vec<String> = watch.servers.iter().map(ToString::to_string).collect();
    let what =
        format!("watching {} (export {}, servers {})", watch.device(), quoted(&watch.export), servers.join(", "));
    kernel.log(Level::Info, &what);
    supervise(&mut kernel, &watch, socket)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
