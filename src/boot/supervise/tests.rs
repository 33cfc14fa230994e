use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::Ipv4Addr;
use std::rc::Rc;

use super::*;
use crate::net::nbd::{FLAG_HAS_FLAGS, FLAG_READ_ONLY};

const SIZE: u64 = 1 << 30;

fn addr(last: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, last), 10809)
}

fn watch(servers: &[SocketAddrV4]) -> Watch {
    Watch { index: 3, export: "root".into(), servers: servers.to_vec(), size: SIZE, socket: 7, kmsg: Some(8) }
}

fn export(size: u64, flags: u16) -> Export {
    Export { size, flags, block_sizes: None }
}

fn good() -> Result<Export, String> {
    Ok(export(SIZE, FLAG_HAS_FLAGS | FLAG_READ_ONLY))
}

/// A socket that records its closing.
#[derive(Debug)]
struct Socket {
    id: u32,
    closed: Rc<RefCell<Vec<u32>>>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.closed.borrow_mut().push(self.id);
    }
}

/// The effects, scripted: each `wait_dead` takes the next of `deaths` (none left: a timeout),
/// each `configured` the next of `states` (none left: not configured, so every test ends);
/// each `connect` the next answer for its server (none left: refused).
#[derive(Default)]
struct Fake {
    deaths: VecDeque<bool>,
    states: VecDeque<bool>,
    answers: HashMap<SocketAddrV4, VecDeque<Result<Export, String>>>,
    /// Whether NBD_CMD_RECONFIGURE fails.
    reconfigure_fails: bool,
    calls: Vec<String>,
    logs: Vec<String>,
    clock: Duration,
    next_id: u32,
    closed: Rc<RefCell<Vec<u32>>>,
}

impl Fake {
    fn socket(&mut self) -> Socket {
        self.next_id += 1;
        Socket { id: self.next_id, closed: self.closed.clone() }
    }

    fn answer(&mut self, server: SocketAddrV4, answer: Result<Export, String>) {
        self.answers.entry(server).or_default().push_back(answer);
    }

    fn sleeps(&self) -> Vec<&str> {
        self.calls.iter().filter_map(|c| c.strip_prefix("sleep ")).collect()
    }
}

impl Reconnect for Fake {
    type Socket = Socket;

    fn connect(&mut self, server: SocketAddrV4, export: &str) -> Result<(Socket, Export), String> {
        self.calls.push(format!("connect {server} {export}"));
        let answer = self.answers.get_mut(&server).and_then(VecDeque::pop_front);
        let found = answer.unwrap_or_else(|| Err("connect: Connection refused".into()))?;
        Ok((self.socket(), found))
    }

    fn reconfigure(&mut self, index: u32, export: &str, socket: &Socket) -> Result<(), String> {
        self.calls.push(format!("reconfigure {index} {export} socket {}", socket.id));
        if self.reconfigure_fails {
            return Err("Invalid argument".into());
        }
        Ok(())
    }

    fn wait_dead(&mut self, socket: &Socket, timeout: Duration) -> Result<bool, String> {
        self.calls.push(format!("wait socket {}", socket.id));
        let dead = self.deaths.pop_front();
        self.clock += if dead == Some(true) { Duration::from_secs(1) } else { timeout };
        Ok(dead.unwrap_or(false))
    }

    fn configured(&mut self, index: u32) -> Result<bool, String> {
        self.calls.push(format!("status {index}"));
        // A runaway loop ends too.
        Ok(self.calls.len() < 1000 && self.states.pop_front().unwrap_or(false))
    }

    fn sleep(&mut self, time: Duration) {
        self.calls.push(format!("sleep {}", time.as_millis()));
        self.clock += time;
    }

    fn now(&mut self) -> Duration {
        self.clock
    }

    fn jitter(&mut self) -> Duration {
        Duration::from_millis(250)
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push(crate::log::tagged_kmsg_line(TAG, level, message));
    }
}

/// Runs the loop from the first socket: the fake, and the exit code.
fn run(mut fake: Fake, watch: &Watch) -> (Fake, i32) {
    let first = fake.socket();
    let code = supervise(&mut fake, watch, first);
    (fake, code)
}

#[test]
fn args_and_parse_are_inverses() {
    let mut w = watch(&[addr(2), addr(3)]);
    w.export = "root image \u{1b}[31m,=:\u{e9}".into();
    let args = w.args();
    let words: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
    assert_eq!(words[..3], ["nbd-supervise", "--index", "3"]);
    assert_eq!(words[5..9], ["--server", "10.0.2.2:10809", "--server", "10.0.2.3:10809"]);
    assert_eq!(words[words.len() - 4..], ["--socket", "7", "--kmsg", "8"]);
    assert_eq!(Watch::parse(args).unwrap(), w);
    w.kmsg = None;
    w.export = String::new();
    w.index = u32::MAX;
    w.size = u64::MAX;
    assert_eq!(Watch::parse(w.args()).unwrap(), w);
    let sixteen: Vec<SocketAddrV4> = (1..=16).map(addr).collect();
    w.servers = sixteen;
    w.export = "x".repeat(MAX_EXPORT_NAME);
    assert_eq!(Watch::parse(w.args()).unwrap(), w);
}

#[test]
fn parse_refuses_what_args_never_gives() {
    let base = watch(&[addr(2)]).args();
    let with = |from: &str, to: &str| -> Vec<OsString> {
        base.iter().map(|a| if a == from { OsString::from(to) } else { a.clone() }).collect()
    };
    let refused = |args: Vec<OsString>, why: &str| {
        let e = Watch::parse(args.clone()).unwrap_err();
        assert!(e.contains(why), "{args:?}: {e}");
    };
    refused(with("3", "+3"), "--index: \"+3\" is not a number");
    refused(with("3", "03"), "not a number");
    refused(with("7", "-1"), "--socket: descriptor -1");
    refused(with("7", "2"), "--socket: descriptor 2");
    refused(with("8", "7"), "both descriptor 7");
    refused(with("10.0.2.2:10809", "10.0.2.2"), "not an IPv4 address and port");
    refused(with("10.0.2.2:10809", "10.0.2.2:0"), "port 0");
    refused(with(&SIZE.to_string(), "1e9"), "--size");
    refused(with("--kmsg", "--json"), "unknown argument \"--json\"");
    refused(with("nbd-supervise", "plan"), "must start with nbd-supervise");
    refused(with("root", &"x".repeat(MAX_EXPORT_NAME + 1)), "--export: 4097 bytes");
    refused(base[..base.len() - 1].to_vec(), "--kmsg needs a value");
    let mut twice = base.clone();
    twice.extend(["--index".into(), "4".into()]);
    refused(twice, "--index is given twice");
    let mut dup = base.clone();
    dup.extend(["--server".into(), "10.0.2.2:10809".into()]);
    refused(dup, "named twice");
    let without: Vec<OsString> = base.iter().take(5).chain(base.iter().skip(7)).cloned().collect();
    refused(without, "0 servers");
    let seventeen: Vec<SocketAddrV4> = (1..=17).map(addr).collect();
    refused(watch(&seventeen).args(), "17 servers");
    let mut no_size = watch(&[addr(2)]).args();
    no_size.retain(|a| a != "--size" && *a != *SIZE.to_string());
    refused(no_size, "--size is required");
    refused(vec![OsString::from(COMMAND)], "0 servers");
    let not_utf8 = OsString::from(std::ffi::OsStr::from_bytes(b"r\xffoot"));
    refused(with("root", "").into_iter().map(|a| if a.is_empty() { not_utf8.clone() } else { a }).collect(), "UTF-8");
}

#[test]
fn the_same_server_first_after_the_wait() {
    let mut fake = Fake { deaths: [true].into(), states: [true].into(), ..Fake::default() };
    fake.answer(addr(1), good());
    let (fake, code) = run(fake, &watch(&[addr(1), addr(2)]));
    assert_eq!(code, 0);
    assert_eq!(
        fake.calls[..6],
        [
            "wait socket 1",
            "status 3",
            "sleep 1000",
            "connect 10.0.2.1:10809 root",
            "reconfigure 3 root socket 2",
            "wait socket 2"
        ]
    );
    assert!(
        fake.logs
            .iter()
            .any(|l| l == "<4>stateless-nbd: reconnected /dev/nbd3 to 10.0.2.1:10809 after 1.0 s (try 1)\n"),
        "{:?}",
        fake.logs
    );
}

#[test]
fn after_a_switch_the_new_server_is_tried_first_then_the_others_in_order() {
    let servers = [addr(1), addr(2), addr(3)];
    let mut fake = Fake { deaths: [true, true].into(), states: [true, true, true].into(), ..Fake::default() };
    fake.answer(addr(1), Err("connect: Connection refused".into()));
    fake.answer(addr(3), good());
    fake.answer(addr(1), good());
    let (fake, _) = run(fake, &watch(&servers));
    let connects: Vec<&str> = fake.calls.iter().filter_map(|c| c.strip_prefix("connect ")).collect();
    // 1 and 2 refuse, 3 takes over; when 3 dies: 3 again (refuses now), then 1.
    assert_eq!(
        connects,
        [
            "10.0.2.1:10809 root",
            "10.0.2.2:10809 root",
            "10.0.2.3:10809 root",
            "10.0.2.3:10809 root",
            "10.0.2.1:10809 root"
        ]
    );
    assert!(
        fake.logs.iter().any(|l| l.contains("reconnected /dev/nbd3 to 10.0.2.3:10809 after 1.0 s (try 3)")),
        "{:?}",
        fake.logs
    );
    assert!(
        fake.logs.iter().any(|l| l.contains("reconnected /dev/nbd3 to 10.0.2.1:10809 after 1.0 s (try 2)")),
        "{:?}",
        fake.logs
    );
}

#[test]
fn a_server_with_another_size_is_skipped() {
    let mut fake = Fake { deaths: [true].into(), states: [true].into(), ..Fake::default() };
    fake.answer(addr(1), Ok(export(SIZE + 4096, FLAG_HAS_FLAGS | FLAG_READ_ONLY)));
    fake.answer(addr(2), good());
    let (fake, _) = run(fake, &watch(&[addr(1), addr(2)]));
    assert!(!fake.calls.contains(&"reconfigure 3 root socket 2".to_string()), "{:?}", fake.calls);
    assert!(fake.calls.contains(&"reconfigure 3 root socket 3".to_string()), "{:?}", fake.calls);
    let why = format!("10.0.2.1:10809: its export is {} bytes, not {SIZE}: another image, refused", SIZE + 4096);
    assert!(fake.logs.iter().any(|l| l.contains(&why)), "{:?}", fake.logs);
    // The refused server's socket is closed at once, the first when the second took over.
    assert_eq!(fake.closed.borrow()[..2], [2, 1]);
}

#[test]
fn a_writable_export_is_skipped() {
    let mut fake = Fake { deaths: [true].into(), states: [true].into(), ..Fake::default() };
    fake.answer(addr(1), Ok(export(SIZE, FLAG_HAS_FLAGS)));
    fake.answer(addr(2), good());
    let (fake, _) = run(fake, &watch(&[addr(1), addr(2)]));
    let reconfigures: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("reconfigure")).collect();
    assert_eq!(reconfigures, ["reconfigure 3 root socket 3"]);
    assert!(fake.logs.iter().any(|l| l.contains("10.0.2.1:10809: it serves the export writable")), "{:?}", fake.logs);
}

#[test]
fn backoff_doubles_from_one_second_to_eight_plus_jitter_below_one() {
    let ms = |round, jitter| backoff(round, Duration::from_millis(jitter)).as_millis();
    assert_eq!([0, 1, 2, 3, 4, 30, 64, u32::MAX].map(|r| ms(r, 0)), [1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000]);
    assert_eq!(ms(0, 999), 1999);
    assert_eq!(ms(5, 5000), 8999, "jitter stays below a second");
    for round in 0..100 {
        for jitter in [0, 1, 500, 999, 1000, u64::MAX] {
            let wait = ms(round, jitter);
            assert!((1000..9000).contains(&wait), "round {round}, jitter {jitter}: {wait}");
        }
    }
}

#[test]
fn rounds_of_failures_back_off_until_a_server_answers() {
    let states = [true; 7];
    let mut fake = Fake { deaths: [true].into(), states: states.into(), ..Fake::default() };
    fake.answer(addr(2), Err("a".into()));
    for _ in 0..5 {
        fake.answer(addr(2), Err("connect: Connection timed out".into()));
    }
    fake.answer(addr(2), good());
    let (fake, _) = run(fake, &watch(&[addr(1), addr(2)]));
    assert_eq!(fake.sleeps(), ["1000", "1250", "2250", "4250", "8250", "8250", "8250"]);
    assert!(fake.logs.iter().any(|l| l.ends_with("after 33.5 s (try 14)\n")), "{:?}", fake.logs);
    // Two rounds log each failure, later ones a line each.
    let failures = fake.logs.iter().filter(|l| l.contains("Connection")).count();
    assert_eq!(failures, 3 + 4, "{:?}", fake.logs);
    assert!(
        fake.logs
            .iter()
            .any(|l| l.contains("no server after 4 s (try 6); last, 10.0.2.2:10809: connect: Connection timed out")),
        "{:?}",
        fake.logs
    );
}

#[test]
fn a_failed_reconfigure_tries_the_next_server() {
    let mut fake =
        Fake { deaths: [true].into(), states: [true, false].into(), reconfigure_fails: true, ..Fake::default() };
    fake.answer(addr(1), good());
    let (fake, code) = run(fake, &watch(&[addr(1)]));
    assert_eq!(code, 0);
    assert!(
        fake.logs.iter().any(|l| l.contains("10.0.2.1:10809: NBD_CMD_RECONFIGURE: Invalid argument")),
        "{:?}",
        fake.logs
    );
    assert_eq!(*fake.closed.borrow(), [2, 1], "the new socket closed, then the old one at the end");
}

#[test]
fn exits_when_the_device_is_no_longer_configured() {
    // The status check after a quiet timeout.
    let fake = Fake { states: [true, true, false].into(), ..Fake::default() };
    let (fake, code) = run(fake, &watch(&[addr(1)]));
    assert_eq!(code, 0);
    assert_eq!(fake.calls, ["wait socket 1", "status 3", "wait socket 1", "status 3", "wait socket 1", "status 3"]);
    assert_eq!(fake.logs, ["<4>stateless-nbd: /dev/nbd3 is no longer configured (disconnected): exiting\n"]);
    // A death after `nbd-client -d`: no reconnect at all.
    let fake = Fake { deaths: [true].into(), ..Fake::default() };
    let (fake, code) = run(fake, &watch(&[addr(1)]));
    assert_eq!((code, &fake.calls[..]), (0, &["wait socket 1".to_string(), "status 3".to_string()][..]));
    // Disconnected while no server answers: the round's end says so.
    let fake = Fake { deaths: [true].into(), states: [true, true, false].into(), ..Fake::default() };
    let (fake, code) = run(fake, &watch(&[addr(1)]));
    assert_eq!(code, 0);
    assert_eq!(fake.sleeps(), ["1000", "1250"]);
    assert!(fake.logs.last().unwrap().contains("no longer configured"), "{:?}", fake.logs);
}

#[test]
fn the_old_socket_is_closed_and_the_new_one_kept() {
    let mut fake = Fake { deaths: [false, true, false, true].into(), states: [true; 4].into(), ..Fake::default() };
    fake.answer(addr(1), good());
    fake.answer(addr(1), good());
    let closed = fake.closed.clone();
    let (fake, _) = run(fake, &watch(&[addr(1)]));
    let waits: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("wait")).collect();
    assert_eq!(waits, ["wait socket 1", "wait socket 1", "wait socket 2", "wait socket 2", "wait socket 3"]);
    let reconfigures: Vec<&String> = fake.calls.iter().filter(|c| c.starts_with("reconfigure")).collect();
    assert_eq!(reconfigures, ["reconfigure 3 root socket 2", "reconfigure 3 root socket 3"]);
    // 1 closed when 2 took over, 2 when 3 did; 3 only when the loop ended (the fake dropped).
    assert_eq!(*closed.borrow(), [1, 2, 3]);
}

#[test]
fn its_argv_refuses_a_close_on_exec_descriptor() {
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let mut w = watch(&[addr(1)]);
    w.socket = file.as_raw_fd();
    w.kmsg = None;
    let e = argv(&w).unwrap_err();
    assert!(e.to_string().contains("close-on-exec"), "{e}");
    w.socket = 2;
    let e = argv(&w).unwrap_err();
    assert!(e.to_string().contains("descriptor 2"), "{e}");
}

#[test]
fn a_dead_socket_polls_dead_and_a_live_one_times_out() {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let dup = OwnedFd::from(client.try_clone().unwrap());
    assert!(!socket_dead(&dup, Duration::from_millis(1)).unwrap());
    // Unread bytes are not a death (the kernel reads them).
    (&server).write_all(b"reply").unwrap();
    assert!(!socket_dead(&dup, Duration::from_millis(1)).unwrap());
    drop(server);
    assert!(socket_dead(&dup, Duration::from_secs(5)).unwrap(), "a FIN");
    // What nbd_mark_nsock_dead does to the kernel's descriptor, seen on the dup.
    let other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let _peer = listener.accept().unwrap();
    let dup = OwnedFd::from(other.try_clone().unwrap());
    other.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(socket_dead(&dup, Duration::from_secs(5)).unwrap(), "shutdown(SHUT_RDWR)");
}
