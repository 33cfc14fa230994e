//! Boot logs on a server (`stateless.log=`, else the DHCP lease's log server, option 7): every
//! log line of the boot and, at its end, the report, as RFC 5424 syslog messages over UDP
//! (RFC 5426), so a client that failed before it had a console or a disk is still seen.
//!
//! - Lines logged before there is a server to send to (initramfs mode: before DHCP) wait in a
//!   backlog of at most [`BACKLOG`] lines; older ones are dropped, and the first message sent
//!   says how many. When it turns out there is no server, the backlog is let go.
//! - Sending never blocks the boot: a non-blocking UDP socket, `MSG_DONTWAIT`. The backlog goes
//!   out [`BURST`] lines at a time, with each line logged after it: the first datagrams wait in
//!   the kernel for the server's (or router's) MAC, and that queue is small. A line the socket
//!   does not take now (`EAGAIN`, or `ENETUNREACH`: no route yet) waits in the backlog; the
//!   report sends what is left. A
//!   message is at most [`LINE_MAX`] bytes of text.
//! - Messages: `<PRI>1 TIMESTAMP HOST stateless 1 MSGID [meta sequenceId="N"] TEXT`, facility
//!   daemon, the log level as severity; HOST is the client's host name once it is known, its
//!   address before (every message, the backlog too, carries the name known when it is sent);
//!   TIMESTAMP is `-` while the clock is before 2001 (no RTC). MSGID `log` for log lines;
//!   `report` for the report's compact JSON, in parts of at most [`PART_MAX`] bytes, each with
//!   `[stateless@32473 part="N" parts="M"]`, to be joined in order by the receiver.
//! - Lines from every thread go out in order (one lock); a line logged on a thread while that
//!   thread is inside this module (a panic here) is not sent, rather than deadlock. A line
//!   dropped from a full backlog is counted, and the next message sent says how many.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};

use log::Level;
use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};

/// Lines kept until a server is known.
pub const BACKLOG: usize = 512;
/// Backlog lines sent at once: well inside the kernel's queue for an unresolved neighbour
/// (`unres_qlen_bytes`, 212992 by default).
pub const BURST: usize = 32;
/// Longest text of one message, in bytes (cut at a character boundary).
pub const LINE_MAX: usize = 1024;
/// Longest part of the report's JSON in one message: with the header, one datagram stays
/// below an Ethernet MTU (no IP fragments to lose).
pub const PART_MAX: usize = 1200;
/// The most parts a report is sent in; a larger report is cut (the receiver sees fewer parts
/// than `parts` says).
pub const PARTS_MAX: usize = 256;
/// The syslog facility: daemon.
const FACILITY: u8 = 3;
/// The structured-data id of the report parts (32473: the enterprise number RFC 5612 reserves
/// for documentation and examples, as RFC 5424's own examples use it).
const SD_ID: &str = "stateless@32473";

enum State {
    /// Not PID 1, or no server at all: nothing is kept.
    Off,
    /// PID 1 before a server is known.
    Buffering,
    Sending {
        socket: OwnedFd,
        to: SocketAddrV4,
    },
}

/// One log line waiting to be sent.
struct Line {
    severity: u8,
    time: String,
    text: String,
}

struct Remote {
    state: State,
    backlog: VecDeque<Line>,
    dropped: usize,
    host: String,
    sequence: u64,
}

static REMOTE: Mutex<Remote> = Mutex::new(Remote::new());

thread_local! {
    /// Whether this thread is inside [`with`] already.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the state (waiting for another thread's send, which never blocks); `None` when
/// this thread is inside already (a line logged from in here, a panic here).
fn with<T>(f: impl FnOnce(&mut Remote) -> T) -> Option<T> {
    if INSIDE.with(|inside| inside.replace(true)) {
        return None;
    }
    let out = f(&mut REMOTE.lock().unwrap_or_else(PoisonError::into_inner));
    INSIDE.with(|inside| inside.set(false));
    Some(out)
}

/// PID 1 keeps its lines from the start, until it knows whether there is a server.
pub fn keep_backlog() {
    with(Remote::keep_backlog);
}

/// A log line: sent, kept, or (no server) dropped.
pub fn record(level: Level, message: &str) {
    with(|r| r.record(level, message));
}

/// Sends from now on to `to`, the backlog first.
///
/// # Errors
/// When no UDP socket can be made (then nothing is sent, and the backlog is let go).
pub fn start(to: SocketAddrV4) -> std::io::Result<()> {
    with(|r| r.start(to)).unwrap_or(Ok(()))
}

/// No server after all: nothing more is kept.
pub fn stop() {
    with(Remote::stop);
}

/// `stateless.log=off` after all (the image's stateless.conf): nothing more is sent or kept.
pub fn off() {
    with(Remote::off);
}

/// The name the messages carry from now on (an address until the host name is known).
pub fn set_host(name: &str) {
    with(|r| r.host = name.to_owned());
}

/// Whether messages are being sent.
pub fn sending() -> bool {
    with(|r| matches!(r.state, State::Sending { .. })).unwrap_or(false)
}

/// Sends what is left of the backlog, then the report's JSON in parts: how many of how many
/// parts the socket took.
pub fn send_report(json: &str) -> (usize, usize) {
    with(|r| r.send_report(json)).unwrap_or((0, 0))
}

impl Remote {
    const fn new() -> Remote {
        Remote { state: State::Off, backlog: VecDeque::new(), dropped: 0, host: String::new(), sequence: 0 }
    }

    fn keep_backlog(&mut self) {
        if matches!(self.state, State::Off) {
            self.state = State::Buffering;
        }
    }

    fn record(&mut self, level: Level, message: &str) {
        if matches!(self.state, State::Off) {
            return;
        }
        if self.backlog.len() >= BACKLOG {
            self.backlog.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.backlog.push_back(Line {
            severity: crate::log::printk_level(level),
            time: now(),
            text: message.to_owned(),
        });
        self.drain(BURST);
    }

    fn start(&mut self, to: SocketAddrV4) -> std::io::Result<()> {
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let socket = match rustix::net::socket_with(AddressFamily::INET, SocketType::DGRAM, flags, None) {
            Ok(socket) => socket,
            Err(e) => {
                self.stop();
                return Err(e.into());
            }
        };
        self.state = State::Sending { socket, to };
        self.drain(BURST);
        Ok(())
    }

    /// Lets the backlog go when no server came; once sending, it goes on.
    fn stop(&mut self) {
        if matches!(self.state, State::Buffering) {
            self.off();
        }
    }

    /// Nothing more is sent or kept.
    fn off(&mut self) {
        self.state = State::Off;
        self.backlog = VecDeque::new();
    }

    fn send_report(&mut self, json: &str) -> (usize, usize) {
        self.drain(BACKLOG);
        let parts = split(json, PART_MAX);
        let count = parts.len();
        let mut sent = 0;
        for (n, part) in parts.into_iter().take(PARTS_MAX).enumerate() {
            let sd = format!("[{SD_ID} part=\"{}\" parts=\"{count}\"]", n.saturating_add(1));
            let message = self.message(6, &now(), "report", &sd, part);
            match self.send(message.as_bytes()) {
                Ok(_) => sent += 1,
                // The rest would go the same way: the receiver sees fewer parts than `parts`.
                Err(_) => break,
            }
        }
        (sent, count)
    }

    /// Sends up to `most` backlog lines, in order, while the socket takes them (none before
    /// there is a server).
    fn drain(&mut self, most: usize) {
        if !matches!(self.state, State::Sending { .. }) {
            return;
        }
        if self.dropped > 0 {
            let dropped = self.dropped;
            let note =
                format!("{dropped} lines of this boot were dropped before this one (more than {BACKLOG} waiting)");
            self.backlog.push_front(Line { severity: 4, time: now(), text: note });
            self.dropped = 0;
        }
        for _ in 0..most {
            let Some(line) = self.backlog.pop_front() else { return };
            let sd = format!("[meta sequenceId=\"{}\"]", self.sequence.saturating_add(1));
            let text = cut(&flat(&line.text), LINE_MAX).to_owned();
            let message = self.message(line.severity, &line.time, "log", &sd, &text);
            match self.send(message.as_bytes()) {
                // The socket's buffer is full, or no route yet: later.
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::NETUNREACH) => {
                    self.backlog.push_front(line);
                    return;
                }
                // Sent, or lost for good (the host unreachable, ...): either way it is done with.
                _ => self.sequence = self.sequence.saturating_add(1),
            }
        }
    }

    /// `<PRI>1 TIMESTAMP HOST stateless 1 MSGID SD TEXT`.
    fn message(&self, severity: u8, time: &str, msgid: &str, sd: &str, text: &str) -> String {
        let pri = u16::from(FACILITY) * 8 + u16::from(severity.min(7));
        let host = if self.host.is_empty() { "-" } else { &self.host };
        format!("<{pri}>1 {time} {host} stateless 1 {msgid} {sd} {text}")
    }

    /// Sends one datagram now or not at all: the boot never waits.
    fn send(&self, datagram: &[u8]) -> rustix::io::Result<usize> {
        match &self.state {
            State::Sending { socket, to } => rustix::net::sendto(socket, datagram, SendFlags::DONTWAIT, to),
            _ => Err(rustix::io::Errno::NOTCONN),
        }
    }
}

/// `text` with control characters as blanks: one message, one line.
fn flat(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The longest start of `text` of at most `max` bytes that ends at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    text.get(..end).unwrap_or("")
}

/// `text` in pieces of at most `max` bytes, each ending at a character boundary.
fn split(mut text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    while !text.is_empty() {
        let mut part = cut(text, max);
        if part.is_empty() {
            part = text; // `max` smaller than one character: never loop
        }
        parts.push(part);
        text = text.get(part.len()..).unwrap_or("");
    }
    parts
}

/// The time now as RFC 5424 wants it (RFC 3339, UTC, microseconds); `-` while the clock is
/// before 2001: a client without a battery-backed clock starts in 1970.
fn now() -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    timestamp(now.tv_sec, u32::try_from(now.tv_nsec / 1000).unwrap_or(0))
}

pub(crate) fn timestamp(secs: i64, micros: u32) -> String {
    if secs < 978_307_200 {
        return "-".into();
    }
    // Days to a civil date: Howard Hinnant's algorithm (proleptic Gregorian calendar).
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (day_secs / 3600, day_secs % 3600 / 60, day_secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{micros:06}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_or_nil_before_2001() {
        assert_eq!(timestamp(0, 0), "-");
        assert_eq!(timestamp(978_307_199, 0), "-");
        assert_eq!(timestamp(978_307_200, 0), "2001-01-01T00:00:00.000000Z");
        assert_eq!(timestamp(1_795_536_061, 42), "2026-11-24T16:01:01.000042Z");
        assert_eq!(timestamp(1_709_164_800, 999_999), "2024-02-29T00:00:00.999999Z");
        assert_eq!(timestamp(4_102_444_799, 0), "2099-12-31T23:59:59.000000Z");
    }

    #[test]
    fn parts_keep_characters_whole() {
        assert_eq!(split("abcdef", 4), ["abcd", "ef"]);
        assert_eq!(split("", 4), Vec::<&str>::new());
        assert_eq!(split("ééé", 3), ["é", "é", "é"], "2-byte characters, never cut");
        assert_eq!(split("é", 1), ["é"], "a part smaller than a character still ends");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(flat("a\nb\u{7}c"), "a b c");
    }

    /// Every datagram waiting at `receiver` now (loopback delivers during `sendto`).
    fn waiting(receiver: &std::net::UdpSocket) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        while let Ok(n) = receiver.recv(&mut buf) {
            got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        got
    }

    /// The backlog, then sending to a receiver on loopback (an instance of its own: the boot's
    /// is shared with every test of the crate).
    #[test]
    fn backlog_lines_and_report_reach_a_receiver() {
        let mut r = Remote::new();
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let std::net::SocketAddr::V4(to) = receiver.local_addr().unwrap() else { panic!("not IPv4") };
        r.record(Level::Info, "not kept: off");
        r.keep_backlog();
        for n in 0..BACKLOG + 3 {
            r.record(Level::Info, &format!("line {n}"));
        }
        r.host = "lab3-12".into();
        r.start(to).unwrap();
        assert!(matches!(r.state, State::Sending { .. }));
        let mut got = waiting(&receiver);
        assert_eq!(got.len(), BURST, "the backlog goes out a burst at a time");
        let note = &got[0];
        assert!(
            note.starts_with("<28>1 ")
                && note.contains(" lab3-12 stateless 1 log [meta sequenceId=\"1\"] 3 lines of this boot were dropped"),
            "{note}"
        );
        assert!(got[1].ends_with("[meta sequenceId=\"2\"] line 3"), "{}", got[1]);
        let mut bad = 0;
        while got.len() < BACKLOG + 1 {
            r.record(Level::Error, "bad\nthing");
            bad += 1;
            let burst = waiting(&receiver);
            assert!(!burst.is_empty() && burst.len() <= BURST);
            got.extend(burst);
        }
        assert!(got[BACKLOG].ends_with("line 514"), "{}", got[BACKLOG]);
        assert!(
            got[BACKLOG + 1].starts_with("<27>1 ") && got[BACKLOG + 1].ends_with(" bad thing"),
            "{}",
            got[BACKLOG + 1]
        );
        let json = format!("{{\"x\":\"{}\"}}", "é".repeat(PART_MAX));
        assert_eq!(r.send_report(&json), (3, 3));
        r.stop();
        r.record(Level::Info, "sent: stop lets go of a backlog only before a server is known");
        let rest = waiting(&receiver);
        let after = rest.last().unwrap();
        assert!(after.ends_with("only before a server is known"), "{after}");
        let rest = &rest[..rest.len() - 1];
        let reports: Vec<&String> = rest.iter().filter(|m| m.contains(" report ")).collect();
        assert_eq!(reports.len(), 3);
        assert_eq!(
            got.len() + rest.len() - reports.len(),
            1 + BACKLOG + bad,
            "the note, the backlog, every line after"
        );
        assert!(rest.last().unwrap().contains("part=\"3\""), "the rest of the backlog first");
        assert!(reports[0].contains(" lab3-12 stateless 1 report [stateless@32473 part=\"1\" parts=\"3\"] {"));
        let parts: Vec<&str> = reports.iter().map(|m| m.split_once("\"] ").unwrap().1).collect();
        assert_eq!(parts.concat(), json);
        assert!(rest.iter().chain(&got).all(|m| m.len() <= PART_MAX + 200));
        let ids: Vec<u64> = got
            .iter()
            .chain(rest)
            .filter_map(|m| m.split("sequenceId=\"").nth(1)?.split('"').next()?.parse().ok())
            .collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "numbered in order, none lost");
    }
}
