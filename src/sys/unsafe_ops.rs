//! The only module allowed `unsafe`: what the standard library and rustix cannot do safely.
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
