//! Logging through the `log` facade: to /dev/kmsg with printk levels and a `stateless: ` prefix
//! when booting, to standard error otherwise. nixos-init's printk levels (`<3>` ... `<7>`) and
//! virtme-ng-init's `<6>name: ` lines to /dev/kmsg with a fallback.
//!
//! /dev/kmsg is opened for every line: the kernel rate-limits writes per open file
//! (10 lines per 5 s unless `printk.devkmsg=on`), and a boot logs more than that.
//! Before /dev is mounted, or when /dev/kmsg cannot be opened, lines go to the console (fd 2).
//! Every line also goes to the log server when there is one ([`remote`]).

pub mod remote;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// PID 1: /dev/kmsg, console fallback.
    Kmsg,
    /// Command-line use: standard error, `stateless: LEVEL: message`.
    Stderr,
}

struct Logger {
    sink: Sink,
    /// With `quiet`, console-fallback lines below warnings are dropped (kmsg still gets them:
    /// the kernel's console loglevel already hides them from the screen).
    quiet: AtomicBool,
}

static LOGGER: Logger = Logger { sink: Sink::Kmsg, quiet: AtomicBool::new(false) };
static STDERR_LOGGER: Logger = Logger { sink: Sink::Stderr, quiet: AtomicBool::new(false) };

/// The printk level of a log level (`<3>` error ... `<7>` debug).
pub fn printk_level(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Formats one kmsg record: `<6>stateless: message` (no newline inside: continuation lines are split).
pub fn kmsg_line(level: Level, message: &str) -> String {
    tagged_kmsg_line("stateless", level, message)
}

/// [`kmsg_line`] with another tag than `stateless`: `<4>stateless-nbd: message` (the NBD
/// supervisor's, `boot::supervise`). Control characters become spaces, so a record is one line.
pub fn tagged_kmsg_line(tag: &str, level: Level, message: &str) -> String {
    let flat: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("<{}>{tag}: {}\n", printk_level(level), flat)
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        remote::record(record.level(), &message);
        match self.sink {
            Sink::Kmsg => {
                let line = kmsg_line(record.level(), &message);
                let kmsg = OpenOptions::new().write(true).open("/dev/kmsg");
                let written = kmsg.and_then(|mut f| f.write_all(line.as_bytes()));
                if written.is_err() && (record.level() <= Level::Warn || !self.quiet.load(Ordering::Relaxed)) {
                    let _ = writeln!(std::io::stderr(), "stateless: {message}");
                }
            }
            Sink::Stderr => {
                let level = record.level().as_str().to_lowercase();
                let _ = writeln!(std::io::stderr(), "stateless: {level}: {message}");
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls only change the level.
pub fn init(sink: Sink, level: LevelFilter) {
    let logger = match sink {
        Sink::Kmsg => &LOGGER,
        Sink::Stderr => &STDERR_LOGGER,
    };
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

/// Applies `quiet` and `debug` from the command line.
pub fn configure(quiet: bool, debug: bool) {
    LOGGER.quiet.store(quiet, Ordering::Relaxed);
    log::set_max_level(if debug { LevelFilter::Debug } else { LevelFilter::Info });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_lines_carry_level_and_prefix_on_one_line() {
        assert_eq!(kmsg_line(Level::Error, "boom"), "<3>stateless: boom\n");
        assert_eq!(kmsg_line(Level::Info, "a\nb\u{1b}c"), "<6>stateless: a b c\n");
        assert_eq!(kmsg_line(Level::Debug, "x"), "<7>stateless: x\n");
        assert_eq!(tagged_kmsg_line("stateless-nbd", Level::Warn, "a\rb"), "<4>stateless-nbd: a b\n");
    }
}
