//! The panic hook of PID 1: a panic is logged and handled by the emergency policy. The hook
//! never returns, so `panic = "abort"` never kills PID 1 (which would panic the kernel).

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::boot::handoff;
use crate::model::options::Emergency;
use crate::sys::Real;

/// The policy the hook applies: set once the options are known.
static POLICY: AtomicU8 = AtomicU8::new(0);
/// The init candidates the hook tries under `continue`.
static INITS: OnceLock<Vec<String>> = OnceLock::new();

fn policy() -> Emergency {
    Emergency::ALL.get(usize::from(POLICY.load(Ordering::Relaxed))).copied().unwrap_or_default()
}

/// Sets what a later panic does: the policy, and the inits `continue` tries.
pub fn configure(policy: Emergency, inits: Vec<String>) {
    let index = Emergency::ALL.iter().position(|p| *p == policy).unwrap_or(0);
    POLICY.store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
    let _ = INITS.set(inits);
}

/// On a panic: log it, then under `continue` try to start init anyway (a client with a read-only
/// /etc is better than a reboot loop), else apply the policy.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        // kmsg (the kernel log, shown on the console unless its loglevel hides errors), and
        // the console itself: a quiet or loglevel=0 boot still shows why.
        log::error!("panic: {info}");
        let _ = writeln!(std::io::stderr(), "stateless: panic: {info}");
        let sys = Real;
        let policy = policy();
        if policy == Emergency::Continue {
            let candidates = INITS.get().cloned().unwrap_or_else(|| handoff::candidates(None));
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            handoff::exec_chain(&sys, &candidates, &args);
        }
        handoff::emergency(&sys, policy, "panic in stateless")
    }));
}

/// A build with the `panic-test` feature (never a release) panics before the phase that the
/// environment variable `STATELESS_PANIC_BEFORE` names; the kernel puts a command-line word
/// `STATELESS_PANIC_BEFORE=layers` into init's environment. The lab boots such a build to see
/// the hook apply the policy in a real PID 1 (tests/lab.rs, `panic_*`).
#[cfg(feature = "panic-test")]
#[allow(clippy::panic)]
pub fn forced(phase: crate::model::step::Phase) {
    if std::env::var("STATELESS_PANIC_BEFORE").is_ok_and(|p| p == phase.as_str()) {
        panic!("forced before the {phase} phase (a panic-test build, STATELESS_PANIC_BEFORE)");
    }
}
