//! Standard input, output and error of PID 1 on the console.
//!
//! The kernel normally opens /dev/console for init (from its built-in rootfs, before the real
//! root is mounted). When it could not, the standard library put /dev/null there or the fds are
//! closed; once devtmpfs is mounted we can fix that, so logs and the real init reach the console.

use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// `/dev/null`'s device number (1, 3).
const DEV_NULL: u64 = (1 << 8) | 3;

/// True when `fd` is closed or is /dev/null.
fn useless(fd: rustix::fd::BorrowedFd<'_>) -> bool {
    match rustix::fs::fstat(fd) {
        Ok(st) => {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
                && st.st_rdev == DEV_NULL
        }
        Err(_) => true,
    }
}

/// Points fds 0–2 at `console` where they are closed or /dev/null.
pub fn ensure_stdio(console: &Path) {
    let (stdin, stdout, stderr) = (rustix::stdio::stdin(), rustix::stdio::stdout(), rustix::stdio::stderr());
    if ![stdin, stdout, stderr].into_iter().any(useless) {
        return;
    }
    let Ok(fd) = rustix::fs::open(console, OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty()) else {
        return;
    };
    if useless(stdin) {
        let _ = rustix::stdio::dup2_stdin(&fd);
    }
    if useless(stdout) {
        let _ = rustix::stdio::dup2_stdout(&fd);
    }
    if useless(stderr) {
        let _ = rustix::stdio::dup2_stderr(&fd);
    }
}
