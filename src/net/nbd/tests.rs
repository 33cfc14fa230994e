use std::io::Cursor;

use super::*;

/// A server scripted as bytes; what the client writes is kept.
struct Script {
    from_server: Cursor<Vec<u8>>,
    sent: Vec<u8>,
}

impl Script {
    fn new(bytes: Vec<u8>) -> Self {
        Self { from_server: Cursor::new(bytes), sent: Vec::new() }
    }
}

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.from_server.read(buf)
    }
}

impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sent.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn greeting(flags: u16) -> Vec<u8> {
    [&b"NBDMAGICIHAVEOPT"[..], &flags.to_be_bytes()].concat()
}

fn reply(ty: u32, data: &[u8]) -> Vec<u8> {
    let mut out = REPLY_MAGIC.to_be_bytes().to_vec();
    out.extend_from_slice(&OPT_GO.to_be_bytes());
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn info_export(size: u64, flags: u16) -> Vec<u8> {
    reply(REP_INFO, &[&0u16.to_be_bytes()[..], &size.to_be_bytes(), &flags.to_be_bytes()].concat())
}

fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    reply(
        REP_INFO,
        &[&3u16.to_be_bytes()[..], &min.to_be_bytes(), &preferred.to_be_bytes(), &max.to_be_bytes()].concat(),
    )
}

/// What nbd-server 3.24 sends for a read-only export of 1 MiB, with an NBD_INFO_NAME (1) besides.
fn transcript() -> Vec<u8> {
    [
        greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES),
        reply(REP_INFO, b"\x00\x01root"),
        info_block_size(1, 4096, 32 << 20),
        info_export(1 << 20, 0x0143),
        reply(REP_ACK, &[]),
    ]
    .concat()
}

const EXPORT: Export = Export {
    size: 1 << 20,
    flags: 0x0143,
    block_sizes: Some(BlockSizes { minimum: 1, preferred: 4096, maximum: 32 << 20 }),
};

#[test]
fn go_with_the_export_name() {
    let mut server = Script::new(transcript());
    assert_eq!(handshake(&mut server, "root"), Ok(EXPORT));
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &[0, 0, 0, 3][..],                 // client flags: FIXED_NEWSTYLE | NO_ZEROES
        b"IHAVEOPT", &[0, 0, 0, 7],        // NBD_OPT_GO
        &[0, 0, 0, 14],                    // length: 4 + 4 + 2 + 2 * 2
        &[0, 0, 0, 4], b"root",            // the name
        &[0, 2, 0, 0, 0, 3],               // NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE
    ].concat();
    assert_eq!(server.sent, want);
    assert!(EXPORT.read_only());
    assert_eq!(EXPORT.block_size(), 4096);
}

#[test]
fn no_zeroes_only_when_offered() {
    let bytes = [greeting(FLAG_FIXED_NEWSTYLE), info_export(512, 1), reply(REP_ACK, &[])].concat();
    let mut server = Script::new(bytes);
    let export = handshake(&mut server, "").unwrap();
    assert_eq!(export, Export { size: 512, flags: 1, block_sizes: None });
    assert!(!export.read_only());
    assert_eq!(server.sent[..4], [0, 0, 0, 1]);
    // The empty name: the server's default export.
    assert_eq!(server.sent[16..], [0, 0, 0, 10, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3]);
}

#[test]
fn the_transmission_phase_starts_after_the_ack() {
    let mut bytes = transcript();
    let len = bytes.len();
    bytes.extend_from_slice(b"\x67\x44\x66\x98 first reply");
    assert_eq!(parse_server(&bytes, "root"), Ok((EXPORT, len)));
    let mut server = Script::new(bytes);
    handshake(&mut server, "root").unwrap();
    assert_eq!(server.from_server.position(), len as u64);
}

#[test]
fn oldstyle_server_is_refused() {
    // cliserv.h: NBDMAGIC, cliserv_magic, u64 size, u32 flags, 124 zero bytes.
    let mut bytes = b"NBDMAGIC".to_vec();
    bytes.extend_from_slice(&0x0000_4202_8186_1253u64.to_be_bytes());
    bytes.extend_from_slice(&(1u64 << 20).to_be_bytes());
    bytes.extend_from_slice(&[0; 128]);
    let mut server = Script::new(bytes);
    let err = handshake(&mut server, "root").unwrap_err();
    assert_eq!(err, NbdError::OldStyle);
    assert!(err.to_string().contains("oldstyle"), "{err}");
    assert!(server.sent.is_empty());
}

#[test]
fn not_an_nbd_server() {
    let mut bytes = b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n".to_vec();
    bytes.resize(64, 0);
    let err = handshake(&mut Script::new(bytes), "root").unwrap_err();
    assert!(matches!(err, NbdError::Malformed(_)), "{err}");
    assert!(err.to_string().contains("not an nbd server"), "{err}");
    let bytes = [&b"NBDMAGIC"[..], b"IHAVEOPX", &[0, 1]].concat();
    assert!(matches!(parse_server(&bytes, ""), Err(NbdError::Malformed(_))));
}

#[test]
fn plain_newstyle_is_refused() {
    for flags in [0, FLAG_NO_ZEROES] {
        let err = handshake(&mut Script::new(greeting(flags)), "root").unwrap_err();
        assert_eq!(err, NbdError::NotFixedNewstyle(flags));
        assert!(err.to_string().contains("does not offer fixed newstyle"), "{err}");
    }
}

#[test]
fn unknown_export() {
    let bytes = [greeting(3), reply(REP_ERR | 6, b"export unknown")].concat();
    let err = handshake(&mut Script::new(bytes), "nope").unwrap_err();
    assert_eq!(err, NbdError::Refused { code: 6, export: "\"nope\"".into(), message: "\"export unknown\"".into() });
    assert_eq!(
        err.to_string(),
        "nbd export \"nope\": the server has no such export (NBD_REP_ERR_UNKNOWN), error 6: \"export unknown\""
    );
}

#[test]
fn refusals_say_why() {
    for (code, says) in [
        (1, "does not know NBD_OPT_GO"),
        (2, "policy"),
        (5, "requires TLS"),
        (7, "shutting down"),
        (10, "extended headers"),
        (99, "refuses it, error 99"),
    ] {
        let bytes = [greeting(3), info_export(512, 3), reply(REP_ERR | code, &[])].concat();
        let err = parse_server(&bytes, "root").unwrap_err();
        assert!(matches!(err, NbdError::Refused { code: c, .. } if c == code), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
    }
    // The server's message is escaped for the log.
    let bytes = [greeting(3), reply(REP_ERR | 2, b"no\n\x1b[31mway")].concat();
    let err = parse_server(&bytes, "x\ny").unwrap_err().to_string();
    assert!(err.contains("\"x\\x0ay\"") && err.contains("\"no\\x0a\\x1b[31mway\""), "{err}");
}

#[test]
fn huge_reply_length_is_refused_unread() {
    let mut header = reply(REP_INFO, &[]);
    header[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut negotiation = Negotiation::new("root").unwrap();
    assert!(matches!(negotiation.feed(&greeting(3)), Ok(Next::Send(_))));
    assert_eq!(negotiation.feed(&header), Err(NbdError::ReplyTooLong(u32::MAX)));
    assert!(negotiation.wants() <= MAX_REPLY as usize);
    let err = handshake(&mut Script::new([greeting(3), header].concat()), "root").unwrap_err();
    assert_eq!(err, NbdError::ReplyTooLong(u32::MAX));
    // The largest allowed length is read.
    let big = [greeting(3), reply(REP_INFO, &vec![0xee; MAX_REPLY as usize]), info_export(1, 1), reply(REP_ACK, &[])];
    assert!(parse_server(&big.concat(), "").is_ok());
}

#[test]
fn every_truncation_is_an_error_not_a_hang() {
    let bytes = transcript();
    for cut in 0..bytes.len() {
        assert_eq!(parse_server(&bytes[..cut], "root"), Err(NbdError::Closed), "cut at {cut}");
        let mut server = Script::new(bytes[..cut].to_vec());
        assert_eq!(handshake(&mut server, "root"), Err(NbdError::Closed), "cut at {cut}");
    }
}

#[test]
fn ack_needs_the_export_info() {
    let bytes = [greeting(3), info_block_size(512, 4096, 1 << 20), reply(REP_ACK, &[])].concat();
    assert_eq!(parse_server(&bytes, "root"), Err(NbdError::NoExportInfo));
    let bytes = [greeting(3), info_export(1, 1), reply(REP_ACK, b"x")].concat();
    assert!(matches!(parse_server(&bytes, "root"), Err(NbdError::Malformed(_))));
}

#[test]
fn malformed_replies() {
    let bad = |replies: &[Vec<u8>]| {
        let bytes =
            [vec![greeting(3)], replies.to_vec(), vec![info_export(1, 1), reply(REP_ACK, &[])]].concat().concat();
        parse_server(&bytes, "root").unwrap_err()
    };
    let mut magic = reply(REP_INFO, b"\x00\x09");
    magic[7] = 0;
    let mut other_option = reply(REP_INFO, b"\x00\x09");
    other_option[11] = 1;
    for (replies, says) in [
        (vec![reply(REP_INFO, b"\x00")], "without a type"),
        (vec![reply(REP_INFO, &[0; 11])], "type 0 of 11 bytes, not 12"),
        (vec![reply(REP_INFO, &[0; 13])], "type 0 of 13 bytes, not 12"),
        (vec![reply(REP_INFO, &[&[0, 3][..], &[0; 11]].concat())], "type 3 of 13 bytes, not 14"),
        (vec![info_block_size(8192, 8192, 1 << 20)], "minimum block size 8192"),
        (vec![reply(2, b"")], "unexpected reply type 2"),
        (vec![magic], "bad option reply magic"),
        (vec![other_option], "a reply to option 1"),
    ] {
        let err = bad(&replies);
        assert!(matches!(err, NbdError::Malformed(_)) && err.to_string().contains(says), "{says}: {err}");
    }
}

#[test]
fn endless_replies_are_cut_off() {
    let mut bytes = greeting(3);
    for _ in 0..=MAX_REPLIES {
        bytes.extend(reply(REP_INFO, b"\x00\x02description"));
    }
    assert_eq!(parse_server(&bytes, "root"), Err(NbdError::TooManyReplies));
    // MAX_REPLIES - 1 others, the export info, the ack: the most that is taken.
    let mut bytes = greeting(3);
    for _ in 0..MAX_REPLIES - 2 {
        bytes.extend(reply(REP_INFO, b"\x00\x02description"));
    }
    bytes.extend([info_export(7, 1), reply(REP_ACK, &[])].concat());
    assert_eq!(parse_server(&bytes, "root").map(|(e, _)| e.size), Ok(7));
}

#[test]
fn export_name_bounds() {
    let longest = "n".repeat(MAX_EXPORT_NAME);
    assert!(Negotiation::new(&longest).is_ok());
    assert_eq!(Negotiation::new(&format!("{longest}n")).unwrap_err(), NbdError::BadName(MAX_EXPORT_NAME + 1));
    assert_eq!(Negotiation::new("a\0b").unwrap_err(), NbdError::BadName(3));
    let mut server = Script::new(transcript());
    assert_eq!(handshake(&mut server, &format!("{longest}n")), Err(NbdError::BadName(MAX_EXPORT_NAME + 1)));
    assert!(server.sent.is_empty() && server.from_server.position() == 0);
}

#[test]
fn the_kernel_block_size() {
    let with = |minimum, preferred| {
        Export { size: 0, flags: 0, block_sizes: Some(BlockSizes { minimum, preferred, maximum: 1 << 25 }) }
            .block_size()
    };
    assert_eq!(Export { size: 0, flags: 0, block_sizes: None }.block_size(), 4096);
    assert_eq!(with(1, 4096), 4096);
    assert_eq!(with(1, 512), 512);
    assert_eq!(with(1, 1), 512);
    assert_eq!(with(1, 1 << 16), 4096);
    assert_eq!(with(1, 1000), 1024);
    assert_eq!(with(2048, 512), 2048);
}

#[test]
fn io_errors_are_named() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "timed out"))
        }
    }
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = handshake(&mut Broken, "root").unwrap_err();
    assert_eq!(err, NbdError::Io(io::ErrorKind::WouldBlock, "timed out".into()));
    assert_eq!(err.to_string(), "nbd handshake: timed out");
}

/// A server that trickles its greeting, a byte every 300 ms (each read well within the bound):
/// `connect` gives up at its bound (500 ms) for the whole handshake, not a read at a time.
#[test]
fn a_trickling_server_is_given_up_on_at_the_bound() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let std::net::SocketAddr::V4(addr) = listener.local_addr().unwrap() else { panic!() };
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut greeting = b"NBDMAGICIHAVEOPT".to_vec();
        greeting.extend_from_slice(&3u16.to_be_bytes());
        for b in greeting {
            std::thread::sleep(Duration::from_millis(300));
            if s.write_all(&[b]).is_err() {
                return;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    let started = Instant::now();
    let err = connect(addr, "x", Duration::from_millis(500)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}: {err}", started.elapsed());
}
