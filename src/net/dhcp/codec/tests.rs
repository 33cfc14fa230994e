use super::*;
use dhcproto::v4;
use dhcproto::{Decodable, Decoder, Encodable};
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const YIADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SIADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SNAME: usize = 44;
const FILE: usize = 108;

/// A reply (xid 0x01020304, broadcast flag, yiaddr 192.0.2.10, siaddr 192.0.2.1, giaddr
/// 192.0.2.254, ciaddr 0.0.0.0) with `options` after the magic cookie, as given.
fn reply(options: &[u8]) -> Vec<u8> {
    let mut b = vec![0; 240];
    b[..12].copy_from_slice(&[2, 1, 6, 0, 1, 2, 3, 4, 0xaa, 0xbb, 0x80, 0]);
    b[16..20].copy_from_slice(&YIADDR.octets());
    b[20..24].copy_from_slice(&SIADDR.octets());
    b[24..28].copy_from_slice(&[192, 0, 2, 254]);
    b[28..34].copy_from_slice(&MAC);
    b[236..240].copy_from_slice(&MAGIC);
    b.extend_from_slice(options);
    b
}

/// `reply(options)` with `bytes` written at `at` (the `sname` or `file` field).
fn with(mut packet: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    packet[at..at + bytes.len()].copy_from_slice(bytes);
    packet
}

#[test]
fn a_network_or_broadcast_address_is_no_lease() {
    let with_yiaddr = |yiaddr: [u8; 4], options: &[u8]| {
        let mut packet = reply(options);
        packet[16..20].copy_from_slice(&yiaddr);
        decode(&packet).unwrap().lease
    };
    let mask24: &[u8] = &[1, 4, 255, 255, 255, 0, END];
    for (yiaddr, why) in [
        ([198, 51, 100, 255], "yiaddr 198.51.100.255: the broadcast address of 198.51.100.0/24"),
        ([198, 51, 100, 0], "yiaddr 198.51.100.0: the network address of 198.51.100.0/24"),
    ] {
        let l = with_yiaddr(yiaddr, mask24);
        assert_eq!((l.address, l.rejected), (None, vec![why.to_string()]));
    }
    // Without a mask the class decides; a /31 and a /32 have no such addresses.
    assert_eq!(with_yiaddr([10, 255, 255, 255], &[END]).address, None);
    let l = with_yiaddr([198, 51, 100, 255], &[1, 4, 255, 255, 255, 254, END]);
    assert_eq!(l.address.map(|a| a.prefix), Some(31));
    let l = with_yiaddr([198, 51, 100, 255], &[1, 4, 255, 255, 255, 255, END]);
    assert_eq!(l.address.map(|a| a.prefix), Some(32));
}

fn lease(options: &[u8]) -> Lease {
    decode(&reply(options)).unwrap().lease
}

/// Option `code` with `value`, then end.
fn one(code: u8, value: &[u8]) -> Lease {
    lease(&[&[code, value.len() as u8], value, &[END]].concat())
}

fn outgoing(kind: MessageType) -> Outgoing<'static> {
    Outgoing {
        kind,
        xid: 0xdead_beef,
        secs: 3,
        broadcast: true,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        mac: MAC,
        requested: None,
        server_id: None,
        client_id: &[1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
        vendor_class: "stateless",
    }
}

fn printable_line(line: &str) -> bool {
    !line.chars().any(char::is_control)
}

/// What every string of a lease must be, whatever the input.
fn assert_lease_is_clean(lease: &Lease) {
    for name in lease.hostname.iter().chain(&lease.domain) {
        assert_eq!(hostname::validate(name).as_ref(), Ok(name), "{name:?}");
    }
    for token in lease.root_path.iter().chain(&lease.tftp_server).chain(&lease.bootfile) {
        assert!(!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()), "{token:?}");
    }
    if let Some(path) = &lease.root_path {
        assert!(!path.split(['/', ':', ',']).any(|c| c == ".."), "{path:?}");
    }
    assert!(lease.mtu.iter().all(|&m| m >= MIN_MTU));
    assert!(lease.routers.len() + lease.dns.len() + lease.ntp.len() <= 64 * 1024 / 4);
    assert!(lease.options.iter().all(|&c| c != PAD && c != END), "{:?}", lease.options);
    let mut codes = lease.options.clone();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), lease.options.len(), "{:?}", lease.options);
    for line in &lease.rejected {
        assert!(printable_line(line), "{line:?}");
    }
}

// encode

#[test]
fn encode_discover_byte_for_byte() {
    let b = encode(&outgoing(MessageType::Discover));
    assert_eq!(b.len(), MIN_LEN);
    assert_eq!(&b[..12], &[1, 1, 6, 0, 0xde, 0xad, 0xbe, 0xef, 0, 3, 0x80, 0]);
    assert_eq!(&b[12..28], &[0; 16], "ciaddr, yiaddr, siaddr, giaddr");
    assert_eq!(&b[28..34], &MAC);
    assert!(b[34..236].iter().all(|&x| x == 0), "chaddr padding, sname, file");
    assert_eq!(&b[236..240], &[99, 130, 83, 99]);
    let options = [
        &[53, 1, 1][..],
        &[61, 7, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
        &[60, 9],
        b"stateless",
        &[57, 2, 0x05, 0xdc],
        &[55, 16],
        PARAMETERS,
        &[255],
    ]
    .concat();
    assert_eq!(&b[240..240 + options.len()], &options[..]);
    assert!(b[240 + options.len()..].iter().all(|&x| x == 0));
}

#[test]
fn encode_request_puts_addresses_last_and_omits_empty_values() {
    let msg = Outgoing {
        broadcast: false,
        ciaddr: Ipv4Addr::new(192, 0, 2, 7),
        requested: Some(YIADDR),
        server_id: Some(SIADDR),
        client_id: &[],
        vendor_class: "",
        ..outgoing(MessageType::Request)
    };
    let b = encode(&msg);
    assert_eq!(&b[10..16], &[0, 0, 192, 0, 2, 7], "no broadcast flag; ciaddr");
    let options =
        [&[53, 1, 3, 57, 2, 5, 220, 55, 16][..], PARAMETERS, &[50, 4, 192, 0, 2, 10, 54, 4, 192, 0, 2, 1, 255]]
            .concat();
    assert_eq!(&b[240..240 + options.len()], &options[..]);
}

#[test]
fn encode_splits_values_longer_than_255_bytes() {
    let id = [7u8; 300];
    let b = encode(&Outgoing { client_id: &id, ..outgoing(MessageType::Discover) });
    assert_eq!(&b[243..245], &[61, 255]);
    assert_eq!(&b[500..502], &[61, 45]);
    assert!(b.len() > MIN_LEN);
    assert_eq!(b.last(), Some(&END), "no padding past 300 bytes");
}

#[test]
fn message_types_codes_and_names() {
    use MessageType::*;
    let all = [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform];
    for (code, kind) in (1..=8).zip(all) {
        assert_eq!(kind as u8, code);
        assert_eq!(MessageType::from_code(code), Some(kind));
    }
    assert_eq!(MessageType::from_code(0), None);
    assert_eq!(MessageType::from_code(9), None);
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["discover", "offer", "request", "decline", "ack", "nak", "release", "inform"]);
}

// decode: the header

#[test]
fn not_a_reply_at_all() {
    assert_eq!(decode(&[]), Err(DecodeError::TooShort(0)));
    let good = reply(&[255]);
    assert_eq!(decode(&good[..239]), Err(DecodeError::TooShort(239)));
    assert!(decode(&good[..240]).is_ok(), "a header and the cookie are enough");
    assert_eq!(decode(&with(good.clone(), 236, &[1, 2, 3, 4])), Err(DecodeError::BadMagic([1, 2, 3, 4])));
    assert_eq!(decode(&with(good, 0, &[1])), Err(DecodeError::NotReply(1)));
    assert_eq!(
        DecodeError::TooShort(12).to_string(),
        "12 bytes, too short for a BOOTP header and magic cookie (240 bytes)"
    );
    assert_eq!(DecodeError::BadMagic([1, 2, 3, 4]).to_string(), "magic cookie 1.2.3.4, not 99.130.83.99");
    assert_eq!(DecodeError::NotReply(1).to_string(), "op 1, not a reply (2)");
}

#[test]
fn header_fields() {
    let r = decode(&reply(&[53, 1, 5, 255])).unwrap();
    assert_eq!((r.op, r.htype, r.hlen, r.xid, r.broadcast), (2, 1, 6, 0x0102_0304, true));
    assert_eq!(
        (r.ciaddr, r.yiaddr, r.siaddr, r.giaddr),
        (Ipv4Addr::UNSPECIFIED, YIADDR, SIADDR, Ipv4Addr::new(192, 0, 2, 254))
    );
    assert_eq!(r.chaddr, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.kind, Some(MessageType::Ack));
    assert_eq!(r.lease.next_server, Some(SIADDR));
    assert_eq!(r.lease.address, Ipv4Net::new(YIADDR, 24));
    assert_eq!(r.lease.rejected, Vec::<String>::new());
    let r = decode(&with(reply(&[255]), 10, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap();
    assert!(!r.broadcast);
    assert_eq!((r.lease.address, r.lease.next_server), (None, None), "yiaddr and siaddr 0.0.0.0");
    assert_eq!(r.kind, None, "a BOOTP reply has no message type");
}

#[test]
fn every_option_of_a_full_ack() {
    let options = [
        &[53, 1, 5, 54, 4, 192, 0, 2, 1, 1, 4, 255, 255, 255, 128][..],
        &[3, 8, 192, 0, 2, 1, 192, 0, 2, 2, 6, 8, 192, 0, 2, 53, 192, 0, 2, 54, 7, 4, 192, 0, 2, 14],
        &[12, 7],
        b"lab3-12",
        &[15, 12],
        b"lab.example.",
        &[17, 29],
        b"192.0.2.1:/srv/diskless/image",
        &[26, 2, 0x05, 0xdc, 28, 4, 192, 0, 2, 127, 42, 4, 192, 0, 2, 123, 51, 4, 0, 0, 0x0e, 0x10],
        &[56, 2],
        b"ok",
        &[66, 8],
        b"boothost",
        &[67, 10],
        b"pxelinux.0",
        &[200, 1, 9, 255],
    ]
    .concat();
    let r = decode(&reply(&options)).unwrap();
    assert_eq!((r.kind, r.server_id, r.message.as_deref()), (Some(MessageType::Ack), Some(SIADDR), Some("ok")));
    let ip = |d| Ipv4Addr::new(192, 0, 2, d);
    let expected = Lease {
        server: Some(SIADDR),
        address: Ipv4Net::new(YIADDR, 25),
        routers: vec![ip(1), ip(2)],
        dns: vec![ip(53), ip(54)],
        domain: Some("lab.example".into()),
        hostname: Some("lab3-12".into()),
        broadcast: Some(ip(127)),
        ntp: vec![ip(123)],
        log_servers: vec![ip(14)],
        root_path: Some("192.0.2.1:/srv/diskless/image".into()),
        lease_secs: Some(3600),
        tftp_server: Some("boothost".into()),
        bootfile: Some("pxelinux.0".into()),
        next_server: Some(SIADDR),
        mtu: Some(1500),
        options: vec![53, 54, 1, 3, 6, 7, 12, 15, 17, 26, 28, 42, 51, 56, 66, 67, 200],
        rejected: vec![],
    };
    assert_eq!(r.lease, expected);
}

#[test]
fn prefix_from_the_mask_else_the_address_class() {
    let prefix = |yiaddr: [u8; 4], options: &[u8]| {
        let r = decode(&with(reply(options), 16, &yiaddr)).unwrap();
        (r.lease.address.map(|a| a.prefix), r.lease.rejected)
    };
    let none = Vec::<String>::new();
    assert_eq!(prefix([192, 0, 2, 10], &[1, 4, 255, 255, 255, 128, 255]), (Some(25), none.clone()));
    assert_eq!(prefix([192, 0, 2, 10], &[1, 4, 255, 255, 255, 255, 255]), (Some(32), none.clone()));
    assert_eq!(prefix([10, 1, 2, 3], &[255]), (Some(8), none.clone()));
    assert_eq!(prefix([172, 16, 0, 1], &[255]), (Some(16), none.clone()));
    assert_eq!(prefix([192, 0, 2, 10], &[255]), (Some(24), none.clone()));
    let (p, why) = prefix([10, 1, 2, 3], &[1, 4, 255, 0, 255, 0, 255]);
    assert_eq!((p, why), (Some(8), vec!["option 1 (subnet mask): 255.0.255.0 is not a contiguous mask".to_string()]));
    let (p, why) = prefix([10, 1, 2, 3], &[1, 4, 0, 0, 0, 0, 255]);
    assert_eq!((p, why), (Some(8), vec!["option 1 (subnet mask): 0.0.0.0 is no mask".to_string()]));
    let (p, why) = prefix([10, 1, 2, 3], &[1, 3, 255, 255, 255, 255]);
    assert_eq!((p, why), (Some(8), vec!["option 1 (subnet mask): length 3, expected 4".to_string()]));
    for class_d_or_e in [[224, 0, 0, 1], [240, 0, 0, 1], [255, 255, 255, 255]] {
        let (p, why) = prefix(class_d_or_e, &[255]);
        assert_eq!(p, None);
        assert!(why.len() == 1 && why[0].starts_with("yiaddr "), "{why:?}");
        let given = prefix(class_d_or_e, &[1, 4, 255, 255, 255, 0, 255]).0;
        // A mask is taken as given (the client judges the address), unless it makes the
        // address its subnet's broadcast address.
        assert_eq!(given, (class_d_or_e[3] == 1).then_some(24), "{class_d_or_e:?}");
    }
    assert_eq!(prefix([0, 0, 0, 0], &[1, 4, 255, 255, 255, 0, 255]), (None, none));
}

// decode: the option stream

#[test]
fn a_truncated_option_is_dropped_noted_and_ends_the_scan() {
    let l = lease(&[53, 1, 5, 12, 7, b'l', b'a', b'b']);
    assert_eq!(l.hostname, None);
    assert_eq!(l.options, [53]);
    assert_eq!(l.rejected, ["option 12 (host name): length 7 runs past the end of the options field (3 bytes left)"]);
    let l = lease(&[53, 1, 5, 12]);
    assert_eq!(l.rejected, ["option 12 (host name): no length byte at the end of the options field"]);
    let l = lease(&[53, 1, 5, 200, 9]);
    assert_eq!(l.rejected, ["option 200: length 9 runs past the end of the options field (0 bytes left)"]);
}

#[test]
fn a_missing_end_is_noted_and_what_came_before_kept() {
    let l = lease(&[53, 1, 5, 12, 3, b'l', b'a', b'b']);
    assert_eq!(l.hostname.as_deref(), Some("lab"));
    assert_eq!(l.rejected, ["options field: no end option (255)"]);
    assert_eq!(lease(&[]).rejected, ["options field: no end option (255)"]);
    assert_eq!(lease(&[0, 0, 0]).rejected, ["options field: no end option (255)"]);
}

#[test]
fn pads_are_skipped_and_nothing_after_end_is_read() {
    let l = lease(&[0, 0, 53, 1, 5, 0, 12, 3, b'l', b'a', b'b', 0, 255, 15, 3, b'x', b'y', b'z']);
    assert_eq!(l.hostname.as_deref(), Some("lab"));
    assert_eq!(l.domain, None);
    assert_eq!(l.options, [53, 12]);
    assert!(l.rejected.is_empty(), "{:?}", l.rejected);
}

#[test]
fn codes_are_listed_once_in_order_of_first_appearance() {
    let l = lease(&[200, 0, 12, 3, b'l', b'a', b'b', 0, 200, 1, 7, 53, 1, 5, 12, 1, b'x', 255]);
    assert_eq!(l.options, [200, 12, 53]);
    assert_eq!(l.hostname.as_deref(), Some("labx"));
}

#[test]
fn repeated_options_are_joined_before_interpretation() {
    let l = lease(&[
        6, 4, 192, 0, 2, 53, 12, 3, b'l', b'a', b'b', 6, 4, 192, 0, 2, 54, 12, 4, b'3', b'-', b'1', b'2', 54, 2, 192,
        0, 54, 2, 2, 1, 255,
    ]);
    assert_eq!(l.dns, [Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)]);
    assert_eq!(l.hostname.as_deref(), Some("lab3-12"));
    assert_eq!(l.server, Some(SIADDR), "two halves make one valid server id");
    assert_eq!(l.options, [6, 12, 54]);
    // Joined, a value can also become wrong: two MTUs are 4 bytes.
    let l = lease(&[26, 2, 5, 220, 26, 2, 5, 220, 255]);
    assert_eq!((l.mtu, l.rejected), (None, vec!["option 26 (interface MTU): length 4, expected 2".to_string()]));
}

#[test]
fn overloaded_file_and_sname_are_read_in_rfc_order() {
    let file = [12, 1, b'3', 255];
    let sname = [12, 2, b'1', b'2', 255];
    let packet = |overload: u8| {
        let p = reply(&[52, 1, overload, 12, 3, b'l', b'a', b'b', 255]);
        with(with(p, FILE, &file), SNAME, &sname)
    };
    let l = decode(&packet(3)).unwrap().lease;
    assert_eq!(l.hostname.as_deref(), Some("lab312"), "options, then file, then sname");
    assert_eq!((l.bootfile, l.rejected), (None, vec![]), "file holds options, not a boot file name");
    let l = decode(&packet(1)).unwrap().lease;
    assert_eq!(l.hostname.as_deref(), Some("lab3"));
    let l = decode(&packet(2)).unwrap().lease;
    assert_eq!(l.hostname.as_deref(), Some("lab12"));
    assert_eq!(l.rejected.len(), 1, "the file field is then a name, and this one is not printable");
    assert!(
        l.rejected[0].starts_with("BOOTP file field (boot file name): control byte 0x0c at offset 0"),
        "{:?}",
        l.rejected
    );
    // Without option 52, file and sname hold no options.
    let l =
        decode(&with(with(reply(&[12, 3, b'l', b'a', b'b', 255]), FILE, b"pxelinux.0"), SNAME, &sname)).unwrap().lease;
    assert_eq!((l.hostname.as_deref(), l.bootfile.as_deref()), (Some("lab"), Some("pxelinux.0")));
}

#[test]
fn overloaded_fields_without_end_and_with_truncated_options() {
    let l = decode(&with(reply(&[52, 1, 1, 255]), FILE, &[15, 3, b'a', b'.', b'b'])).unwrap().lease;
    assert_eq!(l.domain.as_deref(), Some("a.b"));
    assert_eq!(l.rejected, ["file field: no end option (255)"]);
    let l = decode(&with(reply(&[52, 1, 2, 255]), SNAME + 60, &[15, 9, b'a', b'b'])).unwrap().lease;
    assert_eq!(l.domain, None);
    assert_eq!(l.rejected, ["option 15 (domain name): length 9 runs past the end of the sname field (2 bytes left)"]);
}

#[test]
fn a_bad_overload_is_refused() {
    for (options, why) in [
        (&[52, 1, 4, 255][..], "option 52 (option overload): value 4, expected 1 (file), 2 (sname) or 3 (both)"),
        (&[52, 1, 0, 255], "option 52 (option overload): value 0, expected 1 (file), 2 (sname) or 3 (both)"),
        (&[52, 2, 1, 1, 255], "option 52 (option overload): length 2, expected 1"),
    ] {
        let l = decode(&with(reply(options), FILE, b"pxelinux.0")).unwrap().lease;
        assert_eq!(l.rejected, [why]);
        assert_eq!(l.bootfile.as_deref(), Some("pxelinux.0"), "file is no option area then");
    }
    // Option 52 counts only in the options field.
    let p = with(with(reply(&[52, 1, 1, 255]), FILE, &[52, 1, 3, 255]), SNAME, &[12, 1, b'x', 255]);
    let l = decode(&p).unwrap().lease;
    assert_eq!(l.rejected, ["option 52 (option overload): ignored in the file field"]);
    assert_eq!(l.hostname, None, "sname not read");
}

// decode: values

#[test]
fn address_lists_need_a_nonzero_multiple_of_4() {
    for code in [ROUTER, DNS, NTP, LOG_SERVER] {
        for len in [0, 3, 5, 7, 9] {
            let l = one(code, &vec![1; len]);
            assert!(l.routers.is_empty() && l.dns.is_empty() && l.ntp.is_empty() && l.log_servers.is_empty());
            assert_eq!(l.rejected.len(), 1, "{code} {len}");
            assert!(l.rejected[0].ends_with(&format!("length {len}, expected a multiple of 4")), "{:?}", l.rejected);
        }
        let l = one(code, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let list = [Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8)];
        assert_eq!([l.routers, l.dns, l.ntp, l.log_servers].concat(), list);
    }
}

#[test]
fn address_lists_keep_only_unicast_addresses() {
    for code in [ROUTER, DNS, NTP, LOG_SERVER] {
        let l = one(code, &[255, 255, 255, 255, 0, 0, 0, 0, 192, 0, 2, 1, 224, 0, 0, 1, 127, 0, 0, 1]);
        assert_eq!([l.routers, l.dns, l.ntp, l.log_servers].concat(), [Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(l.rejected.len(), 4, "{:?}", l.rejected);
        assert!(l.rejected[0].ends_with("255.255.255.255 is no unicast address a host can have"), "{:?}", l.rejected);
    }
}

#[test]
fn fixed_length_values() {
    for code in [SUBNET_MASK, LEASE_TIME, SERVER_ID, BROADCAST] {
        for len in [0, 3, 5, 8] {
            let r = decode(&reply(&[&[code, len], &vec![255; usize::from(len)][..], &[END]].concat())).unwrap();
            assert_eq!((r.server_id, r.lease.lease_secs, r.lease.broadcast), (None, None, None));
            assert_eq!(r.lease.address.map(|a| a.prefix), Some(24), "the class default");
            assert_eq!(r.lease.rejected, [format!("{}: length {len}, expected 4", label(code))]);
        }
    }
    assert_eq!(one(LEASE_TIME, &[255; 4]).lease_secs, Some(u32::MAX));
    assert_eq!(one(BROADCAST, &[192, 0, 2, 255]).broadcast, Some(Ipv4Addr::new(192, 0, 2, 255)));
    for (value, why) in [
        (&[5][..], "option 26 (interface MTU): length 1, expected 2"),
        (&[5, 220, 0], "option 26 (interface MTU): length 3, expected 2"),
        (&[0, 67], "option 26 (interface MTU): 67, less than 68"),
    ] {
        let l = one(MTU, value);
        assert_eq!((l.mtu, l.rejected), (None, vec![why.to_string()]));
    }
    assert_eq!(one(MTU, &[0, 68]).mtu, Some(68));
    for (value, why) in [
        (&[][..], "option 53 (message type): length 0, expected 1"),
        (&[5, 5], "option 53 (message type): length 2, expected 1"),
        (&[0], "option 53 (message type): 0 is not a message type (1 to 8)"),
        (&[9], "option 53 (message type): 9 is not a message type (1 to 8)"),
    ] {
        let r = decode(&reply(&[&[MESSAGE_TYPE, value.len() as u8], value, &[END]].concat())).unwrap();
        assert_eq!((r.kind, r.lease.rejected), (None, vec![why.to_string()]));
    }
}

#[test]
fn strings_lose_trailing_nuls_and_nothing_else() {
    assert_eq!(one(HOST_NAME, b"lab3-12\0").hostname.as_deref(), Some("lab3-12"));
    assert_eq!(one(HOST_NAME, b"lab3-12\0\0\0").hostname.as_deref(), Some("lab3-12"));
    assert_eq!(one(BOOTFILE, b"pxelinux.0\0").bootfile.as_deref(), Some("pxelinux.0"));
    for (value, why) in [
        (&b""[..], "empty"),
        (b"\0\0", "empty"),
        (b"lab\0x", "NUL 0x00 at offset 3 of \"lab\\x00x\""),
        (b"\0lab", "NUL 0x00 at offset 0 of \"\\x00lab\""),
        (b"a\x07b", "control byte 0x07 at offset 1 of \"a\\x07b\""),
        (b"a\x7fb", "control byte 0x7f at offset 1 of \"a\\x7fb\""),
        ("é".as_bytes(), "non-ASCII byte 0xc3 at offset 0 of \"é\""),
        (b"a\xff", "non-ASCII byte 0xff at offset 1 of \"a\\xff\""),
    ] {
        for code in [HOST_NAME, DOMAIN_NAME, ROOT_PATH, TFTP_SERVER, BOOTFILE] {
            let l = one(code, value);
            assert_eq!(l.hostname.iter().chain(&l.domain).chain(&l.root_path).chain(&l.tftp_server).count(), 0);
            assert_eq!(l.bootfile, None);
            assert_eq!(l.rejected, [format!("{}: {why}", label(code))]);
        }
    }
}

#[test]
fn hostile_host_and_domain_names_are_refused_with_the_reason() {
    let long_label = "a".repeat(64);
    for name in ["../etc", "a/b", "a b", "x;reboot", "$(reboot)", "`id`", "a..b", "-a", "a_b", ".", &long_label] {
        for code in [HOST_NAME, DOMAIN_NAME] {
            let l = one(code, name.as_bytes());
            assert_eq!((&l.hostname, &l.domain), (&None, &None), "{name}");
            assert_eq!(l.rejected.len(), 1);
            let prefix = format!("{}: \"{name}\": ", label(code));
            assert!(l.rejected[0].starts_with(&prefix) && l.rejected[0].len() > prefix.len(), "{:?}", l.rejected);
        }
    }
    assert_eq!(
        one(HOST_NAME, b"a\nb").rejected,
        ["option 12 (host name): control byte 0x0a at offset 1 of \"a\\x0ab\""]
    );
    assert_eq!(
        one(HOST_NAME, long_label.as_bytes()).rejected,
        [format!("option 12 (host name): \"{long_label}\": label of 64 characters, more than 63")]
    );
    assert_eq!(one(DOMAIN_NAME, b"lab.example.").domain.as_deref(), Some("lab.example"), "one trailing dot goes");
}

#[test]
fn rejected_lines_quote_at_most_64_bytes() {
    let name = [b"x;".repeat(100), b"\n".to_vec()].concat();
    let pieces: Vec<u8> = name.chunks(50).flat_map(|c| [&[HOST_NAME, c.len() as u8][..], c].concat()).collect();
    let l = lease(&[&pieces[..], &[END]].concat());
    assert_eq!(
        l.rejected,
        [format!("option 12 (host name): control byte 0x0a at offset 200 of \"{}\"... (201 bytes)", "x;".repeat(32))]
    );
}

#[test]
fn root_path_tftp_server_and_bootfile_are_printable_words() {
    for ok in ["192.0.2.1:/srv/nfs/image,vers=3,tcp", "/srv/a..b/c...", "/srv/.hidden/%s"] {
        assert_eq!(one(ROOT_PATH, ok.as_bytes()).root_path.as_deref(), Some(ok));
    }
    for bad in ["/srv/../etc", "..", "/srv/..", "192.0.2.1:../etc", "192.0.2.1:/srv,..", "../"] {
        let l = one(ROOT_PATH, bad.as_bytes());
        assert_eq!(l.root_path, None);
        assert_eq!(l.rejected, [format!("option 17 (root path): \"..\" as a path component in \"{bad}\"")]);
    }
    for code in [ROOT_PATH, TFTP_SERVER, BOOTFILE] {
        let l = one(code, b"/srv/a b");
        assert_eq!(l.rejected, [format!("{}: space at offset 6 of \"/srv/a b\"", label(code))]);
    }
    assert_eq!(one(TFTP_SERVER, b"boothost").tftp_server.as_deref(), Some("boothost"));
}

#[test]
fn bootfile_from_option_67_else_the_file_field() {
    let file = |options: &[u8], file: &[u8]| decode(&with(reply(options), FILE, file)).unwrap().lease;
    assert_eq!(file(&[255], b"pxelinux.0").bootfile.as_deref(), Some("pxelinux.0"));
    assert_eq!(file(&[255], b"pxelinux.0\0junk\x01").bootfile.as_deref(), Some("pxelinux.0"), "a C string");
    assert_eq!(file(&[255], b"").bootfile, None);
    assert_eq!(file(&[67, 4, b'b', b'o', b'o', b't', 255], b"pxelinux.0").bootfile.as_deref(), Some("boot"));
    let l = file(&[67, 1, b' ', 255], b"pxelinux.0");
    assert_eq!((l.bootfile, l.rejected.len()), (None, 1), "a refused option 67 is not replaced by the field");
    let l = file(&[255], b"a b");
    assert_eq!(
        (l.bootfile, l.rejected),
        (None, vec!["BOOTP file field (boot file name): space at offset 1 of \"a b\"".into()])
    );
    assert_eq!(file(&[255], &[b'x'; 128]).bootfile, Some("x".repeat(128)), "no NUL at all");
}

#[test]
fn the_message_is_escaped() {
    let message = b"no\naddress\x1b[2J\0";
    let r = decode(&reply(&[&[56, message.len() as u8][..], message, &[255]].concat())).unwrap();
    assert_eq!(r.message.as_deref(), Some("no\\x0aaddress\\x1b[2J"));
}

#[test]
fn work_stays_linear_on_64_kib() {
    let inputs = [
        reply(&[HOST_NAME, 0].repeat(32 * 1024)),
        reply(&[&[DNS, 252][..], &[7; 252]].concat().repeat(256)),
        reply(&[&[HOST_NAME, 250][..], &[b'a'; 250]].concat().repeat(256)),
        reply(&[0; 64 * 1024]),
        reply(&(0..64 * 1024).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()),
    ];
    let start = Instant::now();
    for input in &inputs {
        let lease = decode(input).unwrap().lease;
        assert_lease_is_clean(&lease);
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(decode(&inputs[1]).unwrap().lease.dns.len(), 63 * 256);
}

// Captures from a real server (tests/data/dhcp/README.md).

fn capture(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

const CAPTURES: [&str; 4] = [
    include_str!("../../../../tests/data/dhcp/dnsmasq-offer.hex"),
    include_str!("../../../../tests/data/dhcp/dnsmasq-ack.hex"),
    include_str!("../../../../tests/data/dhcp/dnsmasq-nak.hex"),
    include_str!("../../../../tests/data/dhcp/dnsmasq-overload-ack.hex"),
];

#[test]
fn dnsmasq_offer_and_ack() {
    let ip = |d| Ipv4Addr::new(192, 0, 2, d);
    for (hex, kind) in [(CAPTURES[0], MessageType::Offer), (CAPTURES[1], MessageType::Ack)] {
        let r = decode(&capture(hex)).unwrap();
        assert_eq!(
            (r.kind, r.xid, r.broadcast, r.server_id, r.message),
            (Some(kind), 0x5ca1_ab1e, true, Some(ip(1)), None)
        );
        assert_eq!(&r.chaddr[..6], &MAC);
        let expected = Lease {
            server: Some(ip(1)),
            address: Ipv4Net::new(ip(112), 24),
            routers: vec![ip(1)],
            dns: vec![ip(53), ip(54)],
            domain: Some("lab.example".into()),
            hostname: Some("lab3-12".into()),
            broadcast: Some(ip(255)),
            ntp: vec![ip(123)],
            log_servers: vec![],
            root_path: Some("192.0.2.1:/srv/diskless/image".into()),
            lease_secs: Some(12 * 3600),
            // dnsmasq NUL-terminates both.
            tftp_server: Some("boothost".into()),
            bootfile: Some("pxelinux.0".into()),
            next_server: Some(ip(1)),
            mtu: Some(1500),
            options: vec![53, 54, 51, 66, 67, 58, 59, 1, 28, 15, 12, 17, 26, 42, 6, 3],
            rejected: vec![],
        };
        assert_eq!(r.lease, expected);
    }
}

#[test]
fn dnsmasq_nak() {
    let r = decode(&capture(CAPTURES[2])).unwrap();
    assert_eq!((r.kind, r.xid, r.server_id), (Some(MessageType::Nak), 0x5ca1_ab1f, Some(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(r.message.as_deref(), Some("address not available"));
    assert_eq!((r.lease.address, r.lease.options, r.lease.rejected), (None, vec![53, 54, 56], vec![]));
}

#[test]
fn dnsmasq_overloaded_ack() {
    let r = decode(&capture(CAPTURES[3])).unwrap();
    assert_eq!(r.kind, Some(MessageType::Ack));
    let l = r.lease;
    assert_eq!(l.options, [53, 54, 51, 58, 59, 1, 28, 15, 12, 228, 227, 226, 225, 52, 17, 6, 3]);
    assert_eq!((l.hostname.as_deref(), l.domain.as_deref()), (Some("lab3-12"), Some("lab.example")));
    assert_eq!(l.root_path.as_deref(), Some("192.0.2.1:/srv/diskless/image"));
    assert_eq!((l.bootfile, l.rejected), (None, vec![]), "file and sname hold just an end option");
}

/// xorshift64: a deterministic stream, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn mutate(rng: &mut Rng, packet: &mut Vec<u8>) {
    let len = packet.len();
    let options = 240.min(len);
    match rng.below(6) {
        0 => {
            let at = rng.below(len);
            packet[at] = rng.byte();
        }
        1 => packet.truncate(rng.below(len + 1)),
        // A length byte, or what may be one: anywhere in the option areas.
        2 if len > options => {
            let at = options + rng.below(len - options);
            packet[at] = [0, 1, 2, 3, 4, 5, 255, rng.byte()][rng.below(8)];
        }
        3 if len > options => {
            let from = options + rng.below(len - options);
            let to = (from + rng.below(300)).min(len);
            let piece = packet[from..to].to_vec();
            let at = options + rng.below(len - options + 1);
            packet.splice(at..at, piece);
        }
        4 => {
            let code = [1, 3, 6, 12, 15, 17, 26, 28, 42, 51, 52, 53, 54, 56, 66, 67, 0, 255][rng.below(18)];
            let value: Vec<u8> =
                (0..rng.below(12)).map(|_| [b'a', b'.', b'/', 0, b' ', rng.byte()][rng.below(6)]).collect();
            let at = options + rng.below(len - options + 1);
            packet.splice(at..at, [&[code, value.len() as u8][..], &value].concat());
        }
        _ => {
            let at = [SNAME, FILE, FILE + 1, 240][rng.below(4)] + rng.below(8);
            if at < len {
                packet[at] = [52, 1, 3, 12, 255, 0][rng.below(6)];
            }
        }
    }
}

#[test]
fn thousands_of_mutated_captures_never_panic_and_stay_clean() {
    let mut rng = Rng(0x5eed_dcb0_5eed_dcb0);
    let (mut decoded, mut refused) = (0, 0);
    for hex in CAPTURES {
        let original = capture(hex);
        for _ in 0..1500 {
            let mut packet = original.clone();
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut packet);
            }
            match decode(&packet) {
                Ok(reply) => {
                    assert_lease_is_clean(&reply.lease);
                    assert!(reply.message.as_deref().iter().all(|m| printable_line(m)));
                    refused += usize::from(!reply.lease.rejected.is_empty());
                    decoded += 1;
                }
                Err(why) => assert!(printable_line(&why.to_string())),
            }
        }
    }
    assert!(decoded > 3000 && refused > 1000, "decoded {decoded}, with refusals {refused}");
}

// Cross-checks against dhcproto, an independent implementation.

#[test]
fn dhcproto_reads_what_we_encode() {
    use MessageType::*;
    for kind in [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform] {
        let with_addresses = matches!(kind, Request | Decline | Release);
        let ours = Outgoing {
            broadcast: kind != Inform,
            ciaddr: if kind == Inform { Ipv4Addr::new(192, 0, 2, 7) } else { Ipv4Addr::UNSPECIFIED },
            requested: with_addresses.then_some(YIADDR),
            server_id: with_addresses.then_some(SIADDR),
            ..outgoing(kind)
        };
        let bytes = encode(&ours);
        let theirs = v4::Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(theirs.opcode(), v4::Opcode::BootRequest);
        assert_eq!((theirs.htype(), theirs.hlen(), theirs.hops()), (v4::HType::Eth, 6, 0));
        assert_eq!((theirs.xid(), theirs.secs(), theirs.flags().broadcast()), (ours.xid, ours.secs, ours.broadcast));
        assert_eq!(
            (theirs.ciaddr(), theirs.yiaddr(), theirs.siaddr(), theirs.giaddr()),
            (ours.ciaddr, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(theirs.chaddr(), &MAC);
        assert_eq!((theirs.sname(), theirs.fname()), (None, None));
        let opts = theirs.opts();
        assert_eq!(opts.msg_type().map(u8::from), Some(kind as u8));
        assert_eq!(
            opts.get(v4::OptionCode::ClientIdentifier),
            Some(&v4::DhcpOption::ClientIdentifier(ours.client_id.to_vec()))
        );
        assert_eq!(
            opts.get(v4::OptionCode::ClassIdentifier),
            Some(&v4::DhcpOption::ClassIdentifier(b"stateless".to_vec()))
        );
        assert_eq!(opts.get(v4::OptionCode::MaxMessageSize), Some(&v4::DhcpOption::MaxMessageSize(1500)));
        let Some(v4::DhcpOption::ParameterRequestList(list)) = opts.get(v4::OptionCode::ParameterRequestList) else {
            panic!("no parameter request list: {opts:?}");
        };
        assert_eq!(list.iter().map(|&c| u8::from(c)).collect::<Vec<_>>(), PARAMETERS);
        assert_eq!(
            opts.get(v4::OptionCode::RequestedIpAddress),
            ours.requested.map(v4::DhcpOption::RequestedIpAddress).as_ref()
        );
        assert_eq!(
            opts.get(v4::OptionCode::ServerIdentifier),
            ours.server_id.map(v4::DhcpOption::ServerIdentifier).as_ref()
        );
        assert_eq!(opts.len(), 5 + 2 * usize::from(with_addresses), "{opts:?}");
    }
}

#[test]
fn we_read_what_dhcproto_encodes() {
    let ip = |d| Ipv4Addr::new(192, 0, 2, d);
    let many: Vec<Ipv4Addr> = (1..=70).map(|d| Ipv4Addr::new(10, 0, 0, d)).collect();
    for kind in [v4::MessageType::Offer, v4::MessageType::Ack, v4::MessageType::Nak] {
        let mut theirs = v4::Message::new_with_id(0x0bad_cafe, Ipv4Addr::UNSPECIFIED, YIADDR, SIADDR, ip(254), &MAC);
        theirs.set_opcode(v4::Opcode::BootReply).set_flags(v4::Flags::default().set_broadcast()).set_secs(9);
        theirs.set_fname_str("ignored.0");
        use v4::DhcpOption as O;
        for option in [
            O::MessageType(kind),
            O::ServerIdentifier(SIADDR),
            O::SubnetMask(Ipv4Addr::new(255, 255, 252, 0)),
            O::Router(vec![ip(1), ip(2)]),
            O::DomainNameServer(many.clone()),
            O::Hostname("lab3-12".into()),
            O::DomainName("lab.example".into()),
            O::RootPath("192.0.2.1:/srv/diskless/image,vers=3".into()),
            O::InterfaceMtu(9000),
            O::BroadcastAddr(ip(255)),
            O::NtpServers(vec![ip(123)]),
            O::LogServer(vec![ip(14)]),
            O::AddressLeaseTime(86400),
            O::Renewal(43200),
            O::Message("so long".into()),
            O::TFTPServerName(b"boothost".to_vec()),
            O::BootfileName(b"pxelinux.0".to_vec()),
            O::Unknown(v4::UnknownOption::new(v4::OptionCode::from(224), vec![1, 2, 3])),
        ] {
            theirs.opts_mut().insert(option);
        }
        let r = decode(&theirs.to_vec().unwrap()).unwrap();
        assert_eq!((r.op, r.htype, r.hlen, r.xid, r.broadcast), (2, 1, 6, 0x0bad_cafe, true));
        assert_eq!((r.ciaddr, r.yiaddr, r.siaddr, r.giaddr), (Ipv4Addr::UNSPECIFIED, YIADDR, SIADDR, ip(254)));
        assert_eq!(&r.chaddr[..6], &MAC);
        assert_eq!(
            (r.kind.map(|k| k as u8), r.server_id, r.message.as_deref()),
            (Some(u8::from(kind)), Some(SIADDR), Some("so long"))
        );
        let expected = Lease {
            server: Some(SIADDR),
            address: Ipv4Net::new(YIADDR, 22),
            routers: vec![ip(1), ip(2)],
            dns: many.clone(),
            domain: Some("lab.example".into()),
            hostname: Some("lab3-12".into()),
            broadcast: Some(ip(255)),
            ntp: vec![ip(123)],
            log_servers: vec![ip(14)],
            root_path: Some("192.0.2.1:/srv/diskless/image,vers=3".into()),
            lease_secs: Some(86400),
            tftp_server: Some("boothost".into()),
            bootfile: Some("pxelinux.0".into()),
            next_server: Some(SIADDR),
            mtu: Some(9000),
            // dhcproto writes options in code order.
            options: vec![1, 3, 6, 7, 12, 15, 17, 26, 28, 42, 51, 53, 54, 56, 58, 66, 67, 224],
            rejected: vec![],
        };
        assert_eq!(r.lease, expected);
    }
}
