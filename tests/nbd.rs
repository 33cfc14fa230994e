//! The NBD handshake (`net::nbd`) against Debian's nbd-server, on 127.0.0.1: one read-only export
//! of a 1 MiB file with known bytes. After the handshake one NBD_CMD_READ, as the kernel's
//! driver would send it, reads the file's bytes back: the handshake left the stream exactly at
//! the transmission phase. The kernel side (`net::nbd::genl`) is unit-tested only: this machine
//! has no nbd module to configure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require, TempDir};
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
