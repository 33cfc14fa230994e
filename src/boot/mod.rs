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
use crate::sys::{Real, Sys};

/// The config file in the image; the command line overrides it.
pub const CONFIG: &str = "/etc/stateless.conf";

/// Largest /etc/stateless.conf read.
pub const CONFIG_LIMIT: u64 = 64 * 1024;

/// Boots the client. Called when running as PID 1.
pub fn run() -> ! {
    let started = Instant::now();
    crate::log::init(Sink::Kmsg, LevelFilter::Info);
    crate::log::remote::keep_backlog();
    panic::install();
    log::info!("stateless {} starting as PID 1", env!("CARGO_PKG_VERSION"));
    prefetch_self();
    let sys = Real;
    // Both roots are /: the image in on-root mode; in initramfs mode the initramfs until the
    // root phase switches into the image.
    let (running, target) = match (ImageRoot::open(Path::new("/")), ImageRoot::open(Path::new("/"))) {
        (Ok(running), Ok(target)) => (running, target),
        (Err(e), _) | (_, Err(e)) => handoff::emergency(&sys, Emergency::default(), &format!("open /: {e}")),
    };
    let init_args = std::env::args_os().skip(1).collect();
    let mut executor = Executor::new(Context { init_args, started, ..Context::new(&sys, running, target, Mode::Boot) });

    // The command line is in /proc: the early mounts run with the default options.
    executor.run_phase(Phase::EarlyMounts);
    let cmdline = sys.proc_file("cmdline").unwrap_or_else(|e| {
        log::error!("read /proc/cmdline: {e}");
        Vec::new()
    });
    let (options, diagnostics) = options(&cmdline, executor.target());
    crate::log::configure(options.quiet, options.debug);
    for d in &diagnostics {
        log::warn!("{d}");
    }
    panic::configure(options.emergency, handoff::candidates(options.init.as_deref()));
    let initramfs = initramfs_mode(executor.target(), options.init.as_deref());
    log::info!("{} mode", if initramfs { "initramfs" } else { "on-root" });
    let policy = options.emergency;
    executor.configure(options, diagnostics, cmdline, initramfs);
    // On-root mode: the kernel mounted the root and read this binary from it; the boot's own
    // waits on it count from here. Initramfs mode counts from the switch into the NFS root.
    if !initramfs {
        executor.count_nfs_waits();
    }
    executor.run(&Phase::ALL.into_iter().filter(|p| *p != Phase::EarlyMounts).collect::<Vec<_>>());
    // Not reached: the handoff execs init, or its failure goes to the emergency policy, which
    // never returns. PID 1 must not return all the same.
    handoff::emergency(&sys, policy, "the boot ended without a handoff")
}

/// Initramfs mode: / is the kernel's initramfs (a ramfs or tmpfs) and holds no init to hand
/// over to (`stateless.init=`, /sbin/init, /etc/init, /bin/init), so the image is to be found
/// on NFS. An initramfs that holds a whole system is booted as it is, as an on-root image.
fn initramfs_mode(root: &ImageRoot, init: Option<&str>) -> bool {
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
