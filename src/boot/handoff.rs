//! Handing over to the real init, and what happens when nothing can go on.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use std::os::fd::AsFd;

use rustix::fs::OFlags;

use crate::model::options::Emergency;
use crate::sys::Sys;

/// The kernel's own fallbacks after `init=` (init/main.c).
pub const FALLBACK_INITS: [&str; 4] = ["/sbin/init", "/etc/init", "/bin/init", "/bin/sh"];

/// How long to show the error before rebooting or powering off.
pub const EMERGENCY_DELAY: Duration = Duration::from_secs(15);

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

/// True when `path` (absolute, inside the image) is an executable regular file, resolving
/// symlinks as the image would see them (`/sbin/init -> /lib/systemd/systemd`).
pub fn present(root: &Path, path: &str) -> bool {
    let Ok(root_fd) = crate::boot::plan::open_root(root) else { return false };
    let Ok(fd) = crate::fs::tree::open_in_root(root_fd.as_fd(), &crate::fs::layers::relative(path), OFlags::PATH)
    else {
        return false;
    };
    rustix::fs::fstat(&fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile && st.st_mode & 0o111 != 0
    })
}

/// The first candidate that exists under `root`.
pub fn first_present(root: &Path, candidates: &[String]) -> Option<String> {
    candidates.iter().find(|c| present(root, c)).cloned()
}

/// execs each candidate in turn with the arguments the kernel gave us (argv[0] replaced).
/// Returns only when all failed, with what each attempt said.
pub fn exec_chain(sys: &mut dyn Sys, candidates: &[String], args: &[OsString]) -> Vec<(String, std::io::Error)> {
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
pub fn emergency(sys: &mut dyn Sys, policy: Emergency, reason: &str) -> ! {
    log::error!("emergency ({reason}); policy {policy:?}");
    if policy == Emergency::Shell {
        if let Err(e) = sys.shell(Path::new("/bin/sh")) {
            log::error!("emergency shell /bin/sh: {e}");
        }
    }
    let poweroff = policy == Emergency::Poweroff;
    log::error!("{} in {} s", if poweroff { "powering off" } else { "rebooting" }, EMERGENCY_DELAY.as_secs());
    sys.sleep(EMERGENCY_DELAY);
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
        assert_eq!(candidates(Some("/bin/sh")), ["/bin/sh", "/sbin/init", "/etc/init", "/bin/init"]);
    }

    #[test]
    fn exec_chain_tries_every_candidate_in_order_with_kernel_args() {
        let mut sys = Fake { fail: Box::new(|_| Some(2)), ..Fake::default() };
        let failures = exec_chain(&mut sys, &candidates(Some("/nonexistent")), &["single".into()]);
        assert_eq!(failures.len(), 5);
        let execs: Vec<Call> = sys.calls;
        assert_eq!(execs[0], Call::Exec("/nonexistent".into(), vec!["/nonexistent".into(), "single".into()]));
        assert_eq!(execs[4], Call::Exec("/bin/sh".into(), vec!["/bin/sh".into(), "single".into()]));
    }

    #[test]
    fn present_resolves_absolute_symlinks_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("stateless-handoff-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib/systemd")).unwrap();
        std::fs::create_dir_all(dir.join("sbin")).unwrap();
        std::fs::write(dir.join("lib/systemd/systemd"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", dir.join("sbin/init")).unwrap();
        std::fs::write(dir.join("sbin/notexec"), "").unwrap();
        assert!(!present(&dir, "/sbin/init"), "not executable yet");
        std::fs::set_permissions(dir.join("lib/systemd/systemd"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert!(present(&dir, "/sbin/init"));
        assert!(!present(&dir, "/sbin/notexec"));
        assert!(!present(&dir, "/bin/sh") || dir.join("bin/sh").exists());
        assert_eq!(first_present(&dir, &candidates(Some("/nonexistent"))), Some("/sbin/init".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
