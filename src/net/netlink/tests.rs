use super::*;
use std::path::PathBuf;

fn nlmsg(ty: u16, flags: u16, seq: u32, pid: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::new();
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&pid.to_ne_bytes());
    m.extend_from_slice(body);
    m.resize(align4(m.len()), 0);
    m
}

fn rta(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((RTATTR_HDRLEN + data.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&ty.to_ne_bytes());
    a.extend_from_slice(data);
    a.resize(align4(a.len()), 0);
    a
}

fn ifinfo(index: i32, flags: u32) -> Vec<u8> {
    let mut b = vec![AF_UNSPEC, 0, 1, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

fn ifaddr(family: u8, prefix: u8, index: u32) -> Vec<u8> {
    let mut b = vec![family, prefix, 0, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

fn link(index: i32, name: &[u8], mac: Option<&[u8]>, flags: u32) -> Vec<u8> {
    let mut body = ifinfo(index, flags);
    body.extend(rta(4, &1500u32.to_ne_bytes())); // IFLA_MTU, ignored
    let mut n = name.to_vec();
    n.push(0);
    body.extend(rta(IFLA_IFNAME, &n));
    if let Some(mac) = mac {
        body.extend(rta(IFLA_ADDRESS, mac));
    }
    nlmsg(RTM_NEWLINK, NLM_F_MULTI, 7, 99, &body)
}

fn addr(index: u32, prefix: u8, local: Option<[u8; 4]>, address: Option<[u8; 4]>) -> Vec<u8> {
    let mut body = ifaddr(AF_INET, prefix, index);
    if let Some(a) = address {
        body.extend(rta(IFA_ADDRESS, &a));
    }
    if let Some(l) = local {
        body.extend(rta(IFA_LOCAL, &l));
    }
    body.extend(rta(3, b"eth0\0")); // IFA_LABEL, ignored
    nlmsg(RTM_NEWADDR, NLM_F_MULTI, 7, 99, &body)
}

fn done() -> Vec<u8> {
    nlmsg(NLMSG_DONE, NLM_F_MULTI, 7, 99, &0i32.to_ne_bytes())
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

const MAC: [u8; 6] = [0x02, 0xfc, 0, 0, 0, 0x01];

fn sample_links() -> Vec<u8> {
    let mut buf = link(2, b"eth0", Some(&MAC), IFF_UP | IFF_LOWER_UP | 0x1000);
    buf.extend(link(1, b"lo", Some(&[0; 6]), IFF_UP | IFF_LOWER_UP | IFF_LOOPBACK));
    buf.extend(link(3, b"ipip0", Some(&[0; 4]), 0));
    buf.extend(done());
    buf
}

fn sample_addrs() -> Vec<u8> {
    let mut buf = addr(1, 8, Some([127, 0, 0, 1]), Some([127, 0, 0, 1]));
    buf.extend(addr(2, 24, Some([192, 0, 2, 10]), Some([192, 0, 2, 10])));
    buf.extend(addr(2, 32, Some([192, 0, 2, 11]), Some([192, 0, 2, 99]))); // point-to-point
    buf.extend(addr(2, 24, None, Some([192, 0, 2, 12])));
    buf.extend(done());
    buf
}

#[test]
fn links_and_addrs() {
    let links = parse_links(&sample_links()).unwrap();
    assert_eq!(links.len(), 3);
    let addrs = parse_addrs(&sample_addrs()).unwrap();
    assert_eq!(
        addrs,
        vec![(1, net("127.0.0.1/8")), (2, net("192.0.2.10/24")), (2, net("192.0.2.11/32")), (2, net("192.0.2.12/24")),]
    );
    let ifs = merge(links, &addrs);
    assert_eq!(
        ifs,
        vec![
            Interface {
                index: 1,
                name: "lo".into(),
                mac: Some([0; 6]),
                up: true,
                carrier: true,
                loopback: true,
                addrs: vec![net("127.0.0.1/8")],
            },
            Interface {
                index: 2,
                name: "eth0".into(),
                mac: Some(MAC),
                up: true,
                carrier: true,
                loopback: false,
                addrs: vec![net("192.0.2.10/24"), net("192.0.2.11/32"), net("192.0.2.12/24")],
            },
            Interface {
                index: 3,
                name: "ipip0".into(),
                mac: None,
                up: false,
                carrier: false,
                loopback: false,
                addrs: vec![]
            },
        ]
    );
}

#[test]
fn serializes_mac_as_string() {
    assert_eq!(format_mac(&[0xaa, 0xbb, 0xcc, 0x0d, 0xe, 0xff]), "aa:bb:cc:0d:0e:ff");
    let ifs = merge(parse_links(&sample_links()).unwrap(), &parse_addrs(&sample_addrs()).unwrap());
    let json = serde_json::to_value(&ifs).unwrap();
    assert_eq!(json[1]["mac"], "02:fc:00:00:00:01");
    assert_eq!(json[1]["addrs"][0], "192.0.2.10/24");
    assert_eq!(json[1]["name"], "eth0");
    assert_eq!(json[2]["mac"], serde_json::Value::Null);
}

#[test]
fn merge_sorts_dedups_and_drops_unknown() {
    let mut buf = link(5, b"b", None, 0);
    buf.extend(link(4, b"a", None, 0));
    buf.extend(link(5, b"b-again", None, 0));
    let links = parse_links(&buf).unwrap();
    let addrs = [(9, net("192.0.2.1/24")), (4, net("192.0.2.2/24")), (4, net("192.0.2.2/24"))];
    let ifs = merge(links, &addrs);
    assert_eq!(ifs.iter().map(|i| (i.index, i.name.as_str())).collect::<Vec<_>>(), [(4, "a"), (5, "b")]);
    assert_eq!(ifs[0].addrs, [net("192.0.2.2/24")]);
    assert!(ifs[1].addrs.is_empty());
}

#[test]
fn stops_at_done_and_skips_other_types() {
    let mut buf = nlmsg(NLMSG_NOOP, 0, 7, 99, &[]);
    buf.extend(nlmsg(NLMSG_ERROR, 0, 7, 99, &[0; 20])); // an ack
    buf.extend(addr(1, 8, Some([127, 0, 0, 1]), None)); // wrong type for a link dump
    buf.extend(link(1, b"lo", None, 0));
    buf.extend(done());
    buf.extend(link(2, b"after-done", None, 0));
    let links = parse_links(&buf).unwrap();
    assert_eq!(links.len(), 1);
    let mut out = Vec::new();
    assert!(feed(&buf, None, RTM_NEWLINK, parse_link, &mut out).unwrap());
    // Without DONE the dump is not complete.
    let mut out = Vec::new();
    assert!(!feed(&link(1, b"lo", None, 0), None, RTM_NEWLINK, parse_link, &mut out).unwrap());
    assert_eq!(out.len(), 1);
}

#[test]
fn sequence_and_port_are_checked() {
    let buf = sample_links();
    let mut out = Vec::new();
    let done = feed(&buf, Some(Filter { seq: 7, pid: 99 }), RTM_NEWLINK, parse_link, &mut out).unwrap();
    assert!(done);
    assert_eq!(out.len(), 3);
    for filter in [Filter { seq: 8, pid: 99 }, Filter { seq: 7, pid: 100 }] {
        let mut out = Vec::new();
        let done = feed(&buf, Some(filter), RTM_NEWLINK, parse_link, &mut out).unwrap();
        assert!(!done);
        assert!(out.is_empty());
    }
    // An error for another request is not ours either.
    let err = nlmsg(NLMSG_ERROR, 0, 6, 99, &(-1i32).to_ne_bytes());
    let mut out: Vec<Interface> = Vec::new();
    assert!(!feed(&err, Some(Filter { seq: 7, pid: 99 }), RTM_NEWLINK, parse_link, &mut out).unwrap());
}

#[test]
fn kernel_errors() {
    let mut body = (-1i32).to_ne_bytes().to_vec(); // -EPERM
    body.extend(&nlmsg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 7, 0, &[0; 16]));
    let buf = nlmsg(NLMSG_ERROR, 0, 7, 99, &body);
    let err = parse_links(&buf).unwrap_err();
    assert_eq!(err, ParseError::Kernel(1));
    assert_eq!(io::Error::from(err).raw_os_error(), Some(1));
    assert_eq!(parse_links(&nlmsg(NLMSG_ERROR, 0, 7, 99, &[1, 2])), Err(ParseError::ShortBody { ty: NLMSG_ERROR }));
    let buf = nlmsg(NLMSG_DONE, NLM_F_MULTI, 7, 99, &(-16i32).to_ne_bytes());
    assert_eq!(parse_addrs(&buf), Err(ParseError::Kernel(16)));
    // A DONE without the int is fine.
    assert_eq!(parse_addrs(&nlmsg(NLMSG_DONE, 0, 7, 99, &[])), Ok(vec![]));
    assert_eq!(parse_addrs(&nlmsg(NLMSG_OVERRUN, 0, 7, 99, &[])), Err(ParseError::Overrun));
    let buf = nlmsg(RTM_NEWLINK, NLM_F_MULTI | NLM_F_DUMP_INTR, 7, 99, &ifinfo(1, 0));
    let err = parse_links(&buf).unwrap_err();
    assert_eq!(err, ParseError::Interrupted);
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::Interrupted);
    assert!(!ParseError::BadMessage { offset: 4 }.to_string().is_empty());
}

#[test]
fn hostile_message_framing() {
    let good = link(1, b"lo", None, 0);
    // Empty input: nothing.
    assert_eq!(parse_links(&[]), Ok(vec![]));
    // Cut-off header.
    assert_eq!(parse_links(&good[..10]), Err(ParseError::BadMessage { offset: 0 }));
    // Trailing bytes after a good message.
    let mut buf = good.clone();
    buf.extend([1, 2, 3]);
    assert_eq!(parse_links(&buf), Err(ParseError::BadMessage { offset: good.len() }));
    // Length below the header, including 0 (which would never advance).
    for len in [0u32, 1, 4, 15] {
        let mut buf = good.clone();
        buf[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_links(&buf), Err(ParseError::BadMessage { offset: 0 }), "len {len}");
    }
    // Length past the end, including u32::MAX.
    for len in [good.len() as u32 + 1, u32::MAX] {
        let mut buf = good.clone();
        buf[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_links(&buf), Err(ParseError::BadMessage { offset: 0 }), "len {len}");
    }
    // Unaligned length of a last message (no padding after it) is accepted.
    let mut body = ifinfo(1, 0);
    body.extend(rta(IFLA_IFNAME, b"lo\0"));
    body.extend([5, 0, 99, 0, 0]); // a 5-byte attribute, unpadded
    let mut buf = nlmsg(RTM_NEWLINK, 0, 7, 99, &body);
    buf.truncate(NLMSG_HDRLEN + body.len());
    assert_eq!(parse_links(&buf).unwrap()[0].name, "lo");
    // Body shorter than ifinfomsg / ifaddrmsg.
    let buf = nlmsg(RTM_NEWLINK, 0, 7, 99, &[0; 12]);
    assert_eq!(parse_links(&buf), Err(ParseError::ShortBody { ty: RTM_NEWLINK }));
    let buf = nlmsg(RTM_NEWADDR, 0, 7, 99, &[AF_INET, 24, 0, 0]);
    assert_eq!(parse_addrs(&buf), Err(ParseError::ShortBody { ty: RTM_NEWADDR }));
}

#[test]
fn hostile_attributes() {
    let bad = |attrs: &[u8]| {
        let mut body = ifinfo(1, 0);
        body.extend(rta(IFLA_IFNAME, b"lo\0"));
        body.extend(attrs);
        parse_links(&nlmsg(RTM_NEWLINK, 0, 7, 99, &body))
    };
    let err = Err(ParseError::BadAttribute { ty: RTM_NEWLINK });
    assert_eq!(bad(&[0, 0, 1, 0]), err); // len 0 would never advance
    assert_eq!(bad(&[3, 0, 1, 0]), err); // len below the header
    assert_eq!(bad(&[200, 0, 1, 0, 0, 0, 0, 0]), err); // past the end of the message
    assert_eq!(bad(&[8, 0]), err); // a cut-off attribute header (2 of 4 bytes)
    let mut body = ifaddr(AF_INET, 24, 2);
    body.extend([0, 0, 2, 0]);
    assert_eq!(parse_addrs(&nlmsg(RTM_NEWADDR, 0, 7, 99, &body)), Err(ParseError::BadAttribute { ty: RTM_NEWADDR }));
}

#[test]
fn odd_links_are_skipped_or_cleaned() {
    let one = |buf: Vec<u8>| parse_links(&buf).unwrap();
    // Names: 15 bytes is the limit; longer, empty or missing names skip the link.
    assert_eq!(one(link(1, b"abcdefghijklmno", None, 0))[0].name, "abcdefghijklmno");
    assert!(one(link(1, b"abcdefghijklmnop", None, 0)).is_empty());
    assert!(one(link(1, b"", None, 0)).is_empty());
    assert!(one(nlmsg(RTM_NEWLINK, 0, 7, 99, &ifinfo(1, 0))).is_empty());
    // A name without its NUL, or with junk after it.
    let mut body = ifinfo(1, 0);
    body.extend(rta(IFLA_IFNAME, b"eth0"));
    assert_eq!(one(nlmsg(RTM_NEWLINK, 0, 7, 99, &body))[0].name, "eth0");
    assert_eq!(one(link(1, b"eth0\0junk", None, 0))[0].name, "eth0");
    // Non-UTF-8 names are replaced lossily.
    assert_eq!(one(link(1, b"e\xfft", None, 0))[0].name, "e\u{fffd}t");
    // Index 0 or negative.
    assert!(one(link(0, b"x", None, 0)).is_empty());
    assert!(one(link(-3, b"x", None, 0)).is_empty());
    // Hardware addresses other than 6 bytes (tunnels, InfiniBand) are not MACs.
    assert_eq!(one(link(1, b"ib0", Some(&[7; 20]), 0))[0].mac, None);
    assert_eq!(one(link(1, b"e", Some(&MAC[..5]), 0))[0].mac, None);
    // Flag bits in the attribute type are ignored (NLA_F_NESTED).
    let mut body = ifinfo(1, IFF_UP);
    body.extend(rta(IFLA_IFNAME | 0x8000, b"x\0"));
    assert_eq!(one(nlmsg(RTM_NEWLINK, 0, 7, 99, &body))[0].name, "x");
}

#[test]
fn odd_addrs_are_skipped() {
    let one = |buf: Vec<u8>| parse_addrs(&buf).unwrap();
    // IPv6 (16-byte addresses) and other families.
    let mut body = ifaddr(10, 64, 1);
    body.extend(rta(IFA_ADDRESS, &[0xfd; 16]));
    assert!(one(nlmsg(RTM_NEWADDR, 0, 7, 99, &body)).is_empty());
    // AF_INET with wrongly sized addresses, or none.
    let mut body = ifaddr(AF_INET, 24, 1);
    body.extend(rta(IFA_LOCAL, &[192, 0, 2]));
    assert!(one(nlmsg(RTM_NEWADDR, 0, 7, 99, &body)).is_empty());
    assert!(one(nlmsg(RTM_NEWADDR, 0, 7, 99, &ifaddr(AF_INET, 24, 1))).is_empty());
    // A wrongly sized IFA_LOCAL falls back to IFA_ADDRESS.
    body.extend(rta(IFA_ADDRESS, &[192, 0, 2, 5]));
    assert_eq!(one(nlmsg(RTM_NEWADDR, 0, 7, 99, &body)), [(1, net("192.0.2.5/24"))]);
    // Prefix over 32, index 0.
    assert!(one(addr(1, 33, Some([192, 0, 2, 1]), None)).is_empty());
    assert!(one(addr(0, 24, Some([192, 0, 2, 1]), None)).is_empty());
}

/// Every prefix, and many single-byte corruptions, of valid dumps: errors or results, no panic.
#[test]
fn corrupted_dumps_never_panic() {
    for buf in [sample_links(), sample_addrs(), fixture("link_dump.bin"), fixture("addr_dump.bin")] {
        for end in 0..=buf.len() {
            let _ = parse_links(&buf[..end]);
            let _ = parse_addrs(&buf[..end]);
        }
        let step = (buf.len() / 512).max(1);
        for at in (0..buf.len()).step_by(step) {
            for v in [0u8, 1, 3, 4, 0x10, 0x7f, 0x80, 0xff] {
                let mut b = buf.clone();
                b[at] = v;
                let _ = parse_links(&b);
                let _ = parse_addrs(&b);
                let _ = parse_links(&b[1..]);
            }
        }
    }
    // Pseudo-random bytes.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..2000 {
        let len = (x % 200) as usize;
        let b: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 7) as u8 * 4 // small aligned-ish numbers, to get past length checks
            })
            .collect();
        let _ = parse_links(&b);
        let _ = parse_addrs(&b);
    }
}

/// The rename request decodes, with the decoder of link dumps, as the link with its new name.
#[test]
fn rename_body_names_the_link() {
    let link = parse_link(&rename_body(7, "ens3")).unwrap().unwrap();
    assert_eq!((link.index, link.name.as_str(), link.up), (7, "ens3", false));
    assert_eq!(rename_body(7, "ens3").len(), IFINFOMSG_LEN + 12, "4-byte header, 5 bytes, padded");
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/net").join(name)).unwrap()
}

/// Captured from a fresh network namespace (see `capture_fixtures`): `lo` (down), and a veth
/// pair `vtest0` (up, 192.0.2.1/24 and 192.0.2.129/25) / `vtest1` (down, 192.0.2.2/24) with fixed MACs.
#[test]
fn captured_dump() {
    let links = parse_links(&fixture("link_dump.bin")).unwrap();
    let addrs = parse_addrs(&fixture("addr_dump.bin")).unwrap();
    let ifs = merge(links, &addrs);
    let lo = ifs.iter().find(|i| i.name == "lo").unwrap();
    assert_eq!(lo.index, 1);
    assert!(lo.loopback);
    assert!(!lo.up);
    assert_eq!(lo.mac, Some([0; 6]));
    assert!(lo.addrs.is_empty(), "{lo:?}"); // a down lo has no 127.0.0.1
    let v0 = ifs.iter().find(|i| i.name == "vtest0").unwrap();
    assert_eq!(v0.mac, Some([0x02, 0, 0, 0, 0, 0x10]));
    assert!(v0.up);
    assert!(!v0.loopback);
    assert_eq!(v0.addrs, [net("192.0.2.1/24"), net("192.0.2.129/25")]);
    let v1 = ifs.iter().find(|i| i.name == "vtest1").unwrap();
    assert_eq!(v1.mac, Some([0x02, 0, 0, 0, 0, 0x11]));
    assert!(!v1.up);
    assert_eq!(v1.addrs, [net("192.0.2.2/24")]);
    assert!(ifs.windows(2).all(|w| w[0].index < w[1].index));
}

/// Live: the host's loopback.
#[test]
fn live_interfaces_have_loopback() {
    let ifs = interfaces().unwrap();
    let lo = ifs.iter().find(|i| i.name == "lo").unwrap_or_else(|| panic!("no lo in {ifs:?}"));
    assert!(lo.loopback);
    assert!(lo.addrs.contains(&net("127.0.0.1/8")), "{lo:?}");
    assert!(ifs.windows(2).all(|w| w[0].index < w[1].index));
}

/// The raw dump replies of this network namespace parse back into what the live query
/// gives. With `$STATELESS_NETLINK_CAPTURE` set they are also written there as fixtures
/// (`{link,addr}_dump.bin`), e.g. `ip netns exec x cargo test --lib captured_dumps`.
#[test]
fn captured_dumps_parse_back() {
    let (fd, pid) = open(None).unwrap();
    let mut links = Vec::new();
    dump(&fd, pid, RTM_GETLINK, &LINK_REQUEST, RTM_NEWLINK, parse_link, Some(&mut links)).unwrap();
    let mut addrs = Vec::new();
    dump(&fd, pid, RTM_GETADDR, &ADDR_REQUEST, RTM_NEWADDR, parse_addr, Some(&mut addrs)).unwrap();
    let parsed = merge(parse_links(&links).unwrap(), &parse_addrs(&addrs).unwrap());
    assert_eq!(parsed, interfaces().unwrap());
    if let Some(dir) = std::env::var_os("STATELESS_NETLINK_CAPTURE").map(PathBuf::from) {
        std::fs::write(dir.join("link_dump.bin"), &links).unwrap();
        std::fs::write(dir.join("addr_dump.bin"), &addrs).unwrap();
    }
}
