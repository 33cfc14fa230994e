//! The NBD handshake (`net::nbd`) against Debian's nbd-server, on 127.0.0.1: one read-only export
//! of a 1 MiB file with known bytes. After the handshake one NBD_CMD_READ, as the kernel's
//! driver would send it, reads the file's bytes back: the handshake left the stream exactly at
//! the transmission phase. The kernel side (`net::nbd::genl`) is unit-tested only: this machine
//! has no nbd module to configure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require, TempDir, BIN};
use rustix::net::sockopt;
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};
use stateless::boot::supervise::{argv, Watch};
use stateless::net::nbd::connect as connect_export;
use stateless::net::nbd::{handshake, NbdError, FLAG_HAS_FLAGS, FLAG_READ_ONLY};

const NEEDS: &str = "needs nbd-server (Debian's nbd-server package; tests/run installs it)";
const EXPORT: &str = "stateless-root";
const SIZE: usize = 1 << 20;

/// The export's bytes: no two 4 KiB blocks alike.
fn content() -> Vec<u8> {
    (0..SIZE).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
}

/// nbd-server in the foreground (`-d`: it serves one connection, then exits), killed on drop.
struct Server {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something listens on 127.0.0.1:`port` (/proc/net/tcp: local address, state 0A).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
    })
}

fn serve(tag: &str) -> Server {
    let dir = TempDir::new(tag);
    std::fs::write(dir.0.join("root.img"), content()).unwrap();
    // A port that was free a moment ago.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    // As root (tests/run), the server drops to nobody after opening its port.
    let user = if rustix::process::geteuid().is_root() { "\tuser = nobody\n\tgroup = nogroup\n" } else { "" };
    let config = format!(
        "[generic]\n{user}\tlistenaddr = 127.0.0.1\n\tport = {port}\n[{EXPORT}]\n\texportname = {}\n\treadonly = true\n",
        dir.0.join("root.img").display()
    );
    std::fs::write(dir.0.join("config"), config).unwrap();
    let log = std::fs::File::create(dir.0.join("log")).unwrap();
    let child = Command::new("nbd-server")
        .arg("-C")
        .arg(dir.0.join("config"))
        .arg("-d")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn();
    require(child.is_ok(), NEEDS);
    let mut server = Server { child: child.unwrap(), port, dir };
    for _ in 0..1000 {
        if listening(port) {
            return server;
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(server.dir.0.join("log")).unwrap_or_default();
            panic!("nbd-server exited ({status}) before listening on port {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nbd-server does not listen on 127.0.0.1:{port}");
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).unwrap();
    // A silent server fails the test instead of hanging it.
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream
}

/// One simple-reply NBD_CMD_READ (`nbd.h`: request magic 0x25609513, reply magic 0x67446698).
fn read_blocks(stream: &mut TcpStream, offset: u64, len: u32) -> Vec<u8> {
    let handle = 0x5354_4154_454c_4553u64;
    let mut request = 0x2560_9513u32.to_be_bytes().to_vec();
    request.extend_from_slice(&0u16.to_be_bytes()); // command flags
    request.extend_from_slice(&0u16.to_be_bytes()); // NBD_CMD_READ
    request.extend_from_slice(&handle.to_be_bytes());
    request.extend_from_slice(&offset.to_be_bytes());
    request.extend_from_slice(&len.to_be_bytes());
    stream.write_all(&request).unwrap();
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], 0x6744_6698u32.to_be_bytes(), "simple reply magic");
    assert_eq!(reply[4..8], [0; 4], "error field");
    assert_eq!(reply[8..], handle.to_be_bytes());
    let mut data = vec![0u8; len as usize];
    stream.read_exact(&mut data).unwrap();
    data
}

#[test]
#[ignore = "needs nbd-server (Debian's nbd-server package; tests/run installs it)"]
fn handshake_then_a_read_from_nbd_server() {
    let server = serve("nbd-read");
    let mut stream = connect(&server);
    let export = handshake(&mut stream, EXPORT).unwrap();
    assert_eq!(export.size, SIZE as u64);
    assert!(export.read_only(), "{export:?}");
    assert_eq!(export.flags & (FLAG_HAS_FLAGS | FLAG_READ_ONLY), FLAG_HAS_FLAGS | FLAG_READ_ONLY);
    assert_eq!(export.block_size(), 4096, "{export:?}");
    let want = content();
    let offset = 5 * 4096 + 512;
    assert_eq!(read_blocks(&mut stream, offset as u64, 3 * 4096), want[offset..offset + 3 * 4096]);
    assert_eq!(read_blocks(&mut stream, (SIZE - 4096) as u64, 4096), want[SIZE - 4096..]);
}

#[test]
#[ignore = "needs nbd-server (Debian's nbd-server package; tests/run installs it)"]
fn nbd_server_refuses_an_unknown_export() {
    let server = serve("nbd-unknown");
    let err = handshake(&mut connect(&server), "root-nope").unwrap_err();
    assert!(matches!(err, NbdError::Refused { code: 6, .. }), "{err:?}");
    assert!(err.to_string().starts_with("nbd export \"root-nope\": the server has no such export"), "{err}");
}

fn address(server: &Server) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.port)
}

#[test]
#[ignore = "needs nbd-server (Debian's nbd-server package; tests/run installs it)"]
fn the_supervisors_connection_is_at_the_transmission_phase_with_keepalive() {
    let server = serve("nbd-supervise-connect");
    let (fd, export) = connect_export(address(&server), EXPORT, Duration::from_secs(10)).unwrap();
    assert_eq!((export.size, export.read_only()), (SIZE as u64, true), "{export:?}");
    let mut stream = TcpStream::from(fd);
    assert_eq!((stream.read_timeout().unwrap(), stream.write_timeout().unwrap()), (None, None), "the kernel's own");
    assert!(stream.nodelay().unwrap());
    assert!(sockopt::socket_keepalive(&stream).unwrap());
    assert_eq!(sockopt::tcp_keepidle(&stream).unwrap(), Duration::from_secs(10));
    assert_eq!(sockopt::tcp_keepintvl(&stream).unwrap(), Duration::from_secs(5));
    assert_eq!(sockopt::tcp_keepcnt(&stream).unwrap(), 3);
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let want = content();
    assert_eq!(read_blocks(&mut stream, 4096, 4096), want[4096..8192]);
    // Nothing listens any more (nbd-server -d serves one connection).
    drop(stream);
    drop(server);
    let err = connect_export(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1), EXPORT, Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

/// Waits up to 20 s for `file` to hold a line with `text`; its text.
fn wait_for_line(file: &Path, text: &str) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(file).unwrap_or_default();
        if log.lines().any(|l| l.contains(text)) {
            return log;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no line with {text:?} in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs nbd-server (Debian's nbd-server package; tests/run installs it)"]
fn the_spawned_supervisor_sees_the_death_and_reconnects_to_the_next_server() {
    let (first, second) = (serve("nbd-supervise-first"), serve("nbd-supervise-second"));
    let mut stream = connect(&first);
    let export = handshake(&mut stream, EXPORT).unwrap();
    let dir = TempDir::new("nbd-supervise-log");
    let kmsg = std::fs::File::create(dir.0.join("kmsg")).unwrap();
    // What the boot passes: dups, which dup(2) makes without FD_CLOEXEC.
    let (socket, kmsg) = (rustix::io::dup(&stream).unwrap(), rustix::io::dup(&kmsg).unwrap());
    let watch = Watch {
        index: 15,
        export: EXPORT.into(),
        servers: vec![address(&first), address(&second)],
        size: export.size,
        socket: socket.as_raw_fd(),
        kmsg: Some(kmsg.as_raw_fd()),
    };
    let pid = stateless::sys::spawn(Path::new(BIN), &argv(&watch).unwrap()).unwrap();
    drop((socket, kmsg));
    let pid = Pid::from_raw(pid as i32).unwrap();
    let log = dir.0.join("kmsg");
    wait_for_line(&log, "<6>stateless-nbd: watching /dev/nbd15 (export \"stateless-root\", servers 127.0.0.1:");
    // Spared by SIGTERM, as at shutdown.
    kill_process(pid, Signal::TERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(waitpid(Some(pid), WaitOptions::NOHANG).unwrap().is_none(), "SIGTERM ended it");
    // The server dies: its FIN on the socket the child polls (the test's own is its twin).
    drop(first);
    let dead = format!("<4>stateless-nbd: /dev/nbd15: the connection to {} is dead; reconnecting", watch.servers[0]);
    wait_for_line(&log, &dead);
    // The same server first (gone), then the second: its handshake passes, and the kernel,
    // without an nbd module here, cannot take the socket.
    let refused = format!("/dev/nbd15: {}: Connection refused", watch.servers[0]);
    let handed = format!("/dev/nbd15: {}: NBD_CMD_RECONFIGURE: ", watch.servers[1]);
    let text = wait_for_line(&log, &handed);
    assert!(text.find(&refused).unwrap() < text.find(&handed).unwrap(), "{text}");
    kill_process(pid, Signal::KILL).unwrap();
    waitpid(Some(pid), WaitOptions::empty()).unwrap();
    drop((stream, second));
}
