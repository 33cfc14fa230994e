//! PID 1: the boot, phase by phase (early mounts → hardware → network → root → writable dirs →
//! layers → devices → host files → report → handoff), then init. In on-root mode the kernel
//! mounted the image as /; in initramfs mode (/ is the kernel's ramfs or tmpfs) the root phase
//! mounts the NFS root and switches into it. Never returns and never panics out: a
//! panic goes to the emergency policy ([`panic`]).

pub mod execute;
pub mod handoff;
pub mod ifname;
pub mod network;
pub mod panic;
pub mod plan;
pub mod report;
mod rootcheck;
pub mod supervise;

use std::path::Path;
use std::time::Instant;

use log::LevelFilter;

use crate::boot::execute::{Context, Executor};
use crate::config::Cmdline;
use crate::fs::root::ImageRoot;
use crate::log::Sink;
use crate::model::options::{Diagnostic, Emergency, Options, Origin};
use crate::model::outcome::Mode;
use crate::model::step::Phase;
use crate::sys::Real;

/// The config file in the image; the command line overrides it.
pub const CONFIG: &str = "/etc/stateless.conf";

/// Largest /etc/stateless.conf read.
pub const CONFIG_LIMIT: u64 = 64 * 1024;

/// Boots the client. Called when running as PID 1. The boot's table of contents, as
/// virtme-ng-init's `main` or nixos-init's `init()`; what each phase plans is in [`plan`].
pub fn run() -> ! {
    let started = Instant::now();
    start_logging();
    prefetch_self();
    let sys = Real;
    let mut boot = Executor::new(Context { started, ..context(&sys) });
    // With the default options: the command line is in /proc.
    boot.run_phase(Phase::EarlyMounts);
    boot.read_command_line();
    for phase in Phase::ALL.into_iter().filter(|p| *p != Phase::EarlyMounts) {
        boot.run_phase(phase);
    }
    // Not reached: the handoff execs init, or its failure goes to the emergency policy, which
    // never returns. PID 1 must not return all the same.
    handoff::emergency(&sys, boot.options().emergency, "the boot ended without a handoff")
}

/// To /dev/kmsg, what comes before the network kept for a log server, a panic to the emergency
/// policy ([`panic`]).
fn start_logging() {
    crate::log::init(Sink::Kmsg, LevelFilter::Info);
    crate::log::remote::keep_backlog();
    panic::install();
    log::info!("stateless {} starting as PID 1", env!("CARGO_PKG_VERSION"));
}

/// Where the boot starts: both roots are / (the image in on-root mode; in initramfs mode the
/// initramfs until the root phase switches into the image), the kernel's arguments for init.
fn context(sys: &Real) -> Context<'_> {
    let (running, target) = match (ImageRoot::open(Path::new("/")), ImageRoot::open(Path::new("/"))) {
        (Ok(running), Ok(target)) => (running, target),
        (Err(e), _) | (_, Err(e)) => handoff::emergency(sys, Emergency::default(), &format!("open /: {e}")),
    };
    let init_args = std::env::args_os().skip(1).collect();
    Context { init_args, ..Context::new(sys, running, target, Mode::Boot) }
}

/// The options [`options`] reads, for PID 1: their diagnostics logged, the log level and the
/// panic hook's policy set from them (its inits only the first time). At the start, and again
/// after the switch into the image (its stateless.conf).
pub(crate) fn adopt_options(cmdline: &[u8], target: &ImageRoot) -> (Options, Vec<Diagnostic>) {
    let (options, diagnostics) = options(cmdline, target);
    diagnostics.iter().for_each(|d| log::warn!("{d}"));
    crate::log::configure(options.quiet, options.debug);
    panic::configure(options.emergency, handoff::candidates(options.init.as_deref()));
    (options, diagnostics)
}

/// Initramfs mode: / is the kernel's initramfs (a ramfs or tmpfs) and holds no init to hand
/// over to (`stateless.init=`, /sbin/init, /etc/init, /bin/init), so the image is to be found
/// on NFS. An initramfs that holds a whole system is booted as it is, as an on-root image.
pub(crate) fn initramfs_mode(root: &ImageRoot, init: Option<&str>) -> bool {
    let system = handoff::candidates(init).into_iter().any(|c| root.executable(&c));
    crate::fs::initramfs::is_initramfs(root.path()) && !system
}

/// Asks the kernel to read the rest of this binary now, in the background: on an NFS root each
/// first use of a code page would otherwise wait for its own 4 KiB read. The kernel gives init
/// its path as argv[0]; /proc is not mounted yet.
fn prefetch_self() {
    let Some(path) = std::env::args_os().next() else { return };
    if let Ok(file) =
        rustix::fs::open(&path, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
    {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
    }
}

/// The options from the command line over `/etc/stateless.conf` of `target` (read as the image
/// sees it, [`CONFIG_LIMIT`] bytes at most); a config file that cannot be read is a diagnostic.
pub fn options(cmdline: &[u8], target: &ImageRoot) -> (Options, Vec<Diagnostic>) {
    options_with(cmdline, target.read_file(CONFIG, CONFIG_LIMIT))
}

/// [`options`] with the config file as read (`None`: there is none).
pub fn options_with(cmdline: &[u8], config: std::io::Result<Option<Vec<u8>>>) -> (Options, Vec<Diagnostic>) {
    let (config, problem) = match config {
        Ok(config) => (config, None),
        Err(e) => (None, Some(format!("read {CONFIG}: {e}; its options are not used"))),
    };
    let (options, mut diagnostics) = Options::resolve(&Cmdline::parse(cmdline), config.as_deref());
    if let Some(message) = problem {
        diagnostics.insert(0, Diagnostic { origin: Origin::Config { line: 0 }, key: String::new(), message });
    }
    (options, diagnostics)
}
