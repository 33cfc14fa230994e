//! PID 1: early mounts, then options, facts and plan, then the plan, then init.
//! Never returns and never panics out: a panic goes to the emergency policy.

pub mod execute;
pub mod handoff;
pub mod plan;
pub mod report;

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use log::LevelFilter;

use crate::boot::execute::Executor;
use crate::config::Cmdline;
use crate::log::Sink;
use crate::model::options::{Emergency, Options};
use crate::model::outcome::Mode;
use crate::net::probe as facts;
use crate::sys::Real;
use plan::Plan;

/// The config file in the image; the command line overrides it.
const CONFIG: &str = "/etc/stateless.conf";

/// The policy the panic hook applies: set once the options are known.
static POLICY: AtomicU8 = AtomicU8::new(0);
/// The init candidates the panic hook tries under `continue`.
static INITS: OnceLock<Vec<String>> = OnceLock::new();

const POLICIES: [Emergency; 4] = [Emergency::Continue, Emergency::Shell, Emergency::Reboot, Emergency::Poweroff];

fn policy() -> Emergency {
    POLICIES.get(usize::from(POLICY.load(Ordering::Relaxed))).copied().unwrap_or_default()
}

fn set_policy(policy: Emergency) {
    let index = POLICIES.iter().position(|p| *p == policy).unwrap_or(0);
    POLICY.store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
}

/// On a panic: log it, then under `continue` try to start init anyway (a client with a read-only
/// /etc is better than a reboot loop), else apply the policy. The hook never returns, so
/// `panic = "abort"` never kills PID 1.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::error!("panic: {info}");
        let mut sys = Real;
        let policy = policy();
        if policy == Emergency::Continue {
            let candidates = INITS.get().cloned().unwrap_or_else(|| handoff::candidates(None));
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            handoff::exec_chain(&mut sys, &candidates, &args);
        }
        handoff::emergency(&mut sys, policy, "panic in stateless")
    }));
}

/// Reads a small text file, `None` when missing; other errors are logged.
fn read_text(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            log::error!("read {path}: {e}");
            None
        }
    }
}

/// Boots the client. Called when running as PID 1.
pub fn run() -> ! {
    let started = Instant::now();
    crate::log::init(Sink::Kmsg, LevelFilter::Info);
    install_panic_hook();
    log::info!("stateless {} starting as PID 1", env!("CARGO_PKG_VERSION"));
    let root = Path::new("/");
    let mut sys = Real;
    let mut executor = Executor::new(&mut sys, root, Mode::Boot);
    executor.started = started;
    executor.init_args = std::env::args_os().skip(1).collect();

    let early = Plan::early(root);
    executor.run(&early, &early.steps);

    let cmdline = Cmdline::parse(&read_text("/proc/cmdline").unwrap_or_default());
    let config = plan::read_image_file(root, CONFIG).unwrap_or_else(|e| {
        log::error!("read {CONFIG}: {e}");
        None
    });
    let (options, diagnostics) = Options::resolve(&cmdline, config.as_deref());
    crate::log::configure(options.quiet, options.debug);
    set_policy(options.emergency);
    let _ = INITS.set(handoff::candidates(options.init.as_deref()));
    executor.emergency = options.emergency;
    executor.break_at = options.break_at;

    let facts = facts::probe(&options);
    let plan = plan::build(root, options, diagnostics, facts);
    plan.log_findings();
    let rest = plan.steps.get(early.steps.len()..).unwrap_or_default();
    executor.run(&plan, rest);
    // The handoff step only comes back when no init could be executed.
    let policy = executor.emergency;
    handoff::emergency(executor.sys, policy, "no init could be executed")
}
