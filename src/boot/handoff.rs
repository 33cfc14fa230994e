//! Handing over to the real init, and what happens when nothing can go on.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::model::options::Emergency;
use crate::sys::Sys;

/// The kernel's own fallbacks after `init=` (init/main.c), but its last one, `/bin/sh`: that is
/// an unauthenticated root shell on the console of a client whose image lost its init (dracut's
/// and cryptsetup's CVE-2016-4484 was such a shell), and a shell as PID 1 panics the kernel when
/// it exits. `stateless` never executes it as init; under `stateless.emergency=shell` the
/// emergency runs it as a child instead, then reboots ([`emergency`]).
pub const FALLBACK_INITS: [&str; 3] = ["/sbin/init", "/etc/init", "/bin/init"];

/// How long to show the error before rebooting or powering off.
pub const EMERGENCY_DELAY: Duration = Duration::from_secs(15);

/// How long a sync before a reboot or power-off may take.
pub const SYNC_BOUND: Duration = Duration::from_secs(10);

/// `stateless.init=` (when given) followed by the kernel's fallbacks, without repeats.
pub fn candidates(init: Option<&str>) -> Vec<String> {
    let mut list: Vec<String> = init.into_iter().map(str::to_string).collect();
    for fallback in FALLBACK_INITS {
        if !list.iter().any(|i| i == fallback) {
            list.push(fallback.to_string());
        }
    }
    list
}

/// execs each candidate in turn with the arguments the kernel gave us (argv[0] replaced).
/// Returns only when all failed, with what each attempt said.
pub fn exec_chain(sys: &dyn Sys, candidates: &[String], args: &[OsString]) -> Vec<(String, std::io::Error)> {
    let mut failures = Vec::new();
    for init in candidates {
        let argv: Vec<OsString> = std::iter::once(OsString::from(init)).chain(args.iter().cloned()).collect();
        log::info!("handing over to {init}");
        let error = sys.exec(Path::new(init), &argv);
        log::error!("exec {init}: {error}");
        failures.push((init.clone(), error));
    }
    failures
}

/// Nothing can go on: apply the emergency policy. Never returns; PID 1 must not exit.
/// `continue` and `shell` end in a reboot, since there is nothing left to continue to.
pub fn emergency(sys: &dyn Sys, policy: Emergency, reason: &str) -> ! {
    log::error!("emergency ({reason}); stateless.emergency={}", policy.as_str());
    if policy == Emergency::Shell {
        if let Err(e) = sys.shell(Path::new("/bin/sh")) {
            log::error!("emergency shell /bin/sh: {e}");
        }
    }
    let poweroff = policy == Emergency::Poweroff;
    log::error!("{} in {} s", if poweroff { "powering off" } else { "rebooting" }, EMERGENCY_DELAY.as_secs());
    sys.sleep(EMERGENCY_DELAY);
    if !sys.sync(SYNC_BOUND) {
        log::error!("sync did not finish within {} s (a dead NFS server?); going on without it", SYNC_BOUND.as_secs());
    }
    loop {
        let error = sys.reboot(poweroff);
        log::error!("reboot: {error}; retrying in {} s", EMERGENCY_DELAY.as_secs());
        sys.sleep(EMERGENCY_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, Fake};

    #[test]
    fn candidates_start_with_the_given_init_without_repeats() {
        assert_eq!(candidates(None), FALLBACK_INITS);
        assert_eq!(candidates(Some("/usr/lib/systemd/systemd"))[0], "/usr/lib/systemd/systemd");
        let given = candidates(Some("/bin/sh"));
        assert_eq!(given, ["/bin/sh", "/sbin/init", "/etc/init", "/bin/init"], "named, it is the admin's choice");
        assert!(!candidates(None).iter().any(|c| c == "/bin/sh"), "never a fallback");
    }

    #[test]
    fn exec_chain_tries_every_candidate_in_order_with_kernel_args() {
        let sys = Fake::failing(|_| Some(2));
        let failures = exec_chain(&sys, &candidates(Some("/nonexistent")), &["single".into()]);
        assert_eq!(failures.len(), 4);
        let execs: Vec<Call> = sys.calls();
        assert_eq!(execs[0], Call::Exec("/nonexistent".into(), vec!["/nonexistent".into(), "single".into()]));
        assert_eq!(execs[3], Call::Exec("/bin/init".into(), vec!["/bin/init".into(), "single".into()]));
    }
}

#[cfg(test)]
mod emergency_tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use crate::sys::{Call, Fake};

    #[test]
    fn a_sync_that_does_not_finish_does_not_stop_the_reboot() {
        let sys = Fake::failing(|c| matches!(c, Call::Sync).then_some(5));
        let ended = catch_unwind(AssertUnwindSafe(|| emergency(&sys, Emergency::Poweroff, "test")));
        assert!(ended.is_err(), "the fake reboot ends it");
        assert_eq!(
            sys.calls(),
            [Call::Sleep(EMERGENCY_DELAY), Call::Sync, Call::Reboot { poweroff: true }],
            "sync comes after the delay and the reboot goes on without it"
        );
    }

    #[test]
    fn real_sync_is_bounded() {
        assert!(crate::sys::Real.sync(Duration::from_secs(30)), "a sync of this machine's filesystems finishes");
    }
}
