//! `stateless dhcp` against real servers: dnsmasq, none at all, a late one and a hostile one;
//! and the boot's log and report sent to a syslog receiver (`stateless.log=`). Each test has a
//! pair of network namespaces of its own joined by a veth pair (192.0.2.0/24, TEST-NET-1: no
//! traffic leaves them). Needs root, `ip` and dnsmasq (tests/run installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::{ip, Net};
use serde_json::Value;

const NETNS: &str = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)";
const MAC: &str = "02:00:00:00:00:07";
const MAC_BYTES: [u8; 6] = [2, 0, 0, 0, 0, 7];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

impl Net {
    /// dnsmasq as the server: a name for [`MAC`], a domain, DNS, router, NTP, log server and root path.
    fn dnsmasq(&mut self, extra: &[&str]) {
        common::require(Command::new("dnsmasq").arg("--version").output().is_ok(), "dnsmasq (dnsmasq-base)");
        let leases = std::env::temp_dir().join(format!("{}.leases", self.server));
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.server.clone(),
            "dnsmasq".into(),
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--port=0".into(),
            "--interface=vs0".into(),
            "--bind-interfaces".into(),
            "--no-ping".into(),
            format!("--dhcp-leasefile={}", leases.display()),
            "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,1h".into(),
            format!("--dhcp-host={MAC},lab3-12"),
            "--domain=lab.example".into(),
            "--dhcp-option=option:router,192.0.2.1".into(),
            "--dhcp-option=option:dns-server,192.0.2.53,192.0.2.54".into(),
            "--dhcp-option=option:ntp-server,192.0.2.123".into(),
            "--dhcp-option=option:log-server,192.0.2.14".into(),
            "--dhcp-option=17,192.0.2.1:/srv/diskless/image".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = Command::new("ip").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        self.children.push(child);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A BOOTP reply built byte by byte (independent of the codec under test): `options` are
/// (code, value) pairs written as given, then End unless `end` is false.
fn reply(xid: [u8; 4], chaddr: [u8; 6], yiaddr: Ipv4Addr, options: &[(u8, &[u8])], end: bool) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 2; // BOOTREPLY
    m[1] = 1;
    m[2] = 6;
    m[4..8].copy_from_slice(&xid);
    m[10] = 0x80; // broadcast
    m[16..20].copy_from_slice(&yiaddr.octets());
    m[20..24].copy_from_slice(&SERVER.octets());
    m[28..34].copy_from_slice(&chaddr);
    m.extend_from_slice(&[99, 130, 83, 99]);
    for (code, value) in options {
        m.push(*code);
        m.push(value.len() as u8);
        m.extend_from_slice(value);
    }
    if end {
        m.push(255);
    }
    m
}

/// The message type (option 53) and xid of a client message (the BOOTP layout, read directly).
fn parse_request(m: &[u8]) -> Option<(u8, [u8; 4])> {
    let xid = m.get(4..8)?.try_into().ok()?;
    let mut at = 240;
    while let Some(&code) = m.get(at) {
        match code {
            0 => at += 1,
            255 => return None,
            _ => {
                let len = *m.get(at + 1)? as usize;
                if code == 53 {
                    return Some((*m.get(at + 2)?, xid));
                }
                at += 2 + len;
            }
        }
    }
    None
}

fn send(socket: &UdpSocket, message: &[u8]) {
    socket.send_to(message, (Ipv4Addr::BROADCAST, 68)).unwrap();
}

const MASK: &[u8] = &[255, 255, 255, 0];
const SERVER_ID: &[u8] = &[192, 0, 2, 1];
const LEASE: &[u8] = &[0, 0, 14, 16];

#[test]
#[ignore = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)"]
fn lease_from_dnsmasq_configures_the_interface() {
    let _ = NETNS;
    let mut net = Net::new(MAC);
    net.dnsmasq(&[]);
    let (out, json) = net.client(&["--timeout", "20"]);
    assert!(out.status.success(), "{json}");
    let lease = &json["lease"];
    assert_eq!(json["exchange"], "discover");
    assert_eq!(lease["hostname"], "lab3-12", "the name dnsmasq has for this MAC");
    assert_eq!(lease["domain"], "lab.example");
    assert_eq!(lease["dns"], serde_json::json!(["192.0.2.53", "192.0.2.54"]));
    assert_eq!(lease["routers"], serde_json::json!(["192.0.2.1"]));
    assert_eq!(lease["ntp"], serde_json::json!(["192.0.2.123"]));
    assert_eq!(lease["log_servers"], serde_json::json!(["192.0.2.14"]));
    assert_eq!(lease["root_path"], "192.0.2.1:/srv/diskless/image");
    assert_eq!(lease["server"], "192.0.2.1");
    assert_eq!(lease["lease_secs"], 3600);
    let address = lease["address"].as_str().unwrap().to_string();
    assert!(address.starts_with("192.0.2.1") && address.ends_with("/24"), "{address}");
    assert_eq!(json["configured"], true);
    assert_eq!(json["sent"], 2, "one DISCOVER, one REQUEST");
    assert!(net.client_ip(&["addr", "show", "vc0"]).contains(&format!("inet {address}")));
    assert!(net.client_ip(&["route"]).contains("default via 192.0.2.1 dev vc0"));

    // Asked again with the address in place: INFORM, and the address is left as it is.
    let (out, json) = net.client(&["--timeout", "20"]);
    assert!(out.status.success(), "{json}");
    assert_eq!(json["exchange"], "inform");
    assert_eq!(json["lease"]["hostname"], "lab3-12");
    assert_eq!(json["lease"]["address"], address.as_str());
    assert_eq!(json["configured"], false);
    let addrs = net.client_ip(&["-4", "addr", "show", "vc0"]);
    assert_eq!(addrs.matches("inet ").count(), 1, "{addrs}");
}

#[test]
#[ignore = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)"]
fn no_configure_leaves_the_interface_bare() {
    let mut net = Net::new(MAC);
    net.dnsmasq(&[]);
    let (out, json) = net.client(&["--no-configure", "--timeout", "20"]);
    assert!(out.status.success(), "{json}");
    assert_eq!(json["configured"], false);
    assert!(!net.client_ip(&["-4", "addr", "show", "vc0"]).contains("inet "));
}

#[test]
#[ignore = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)"]
fn no_server_the_bound_holds() {
    let net = Net::new(MAC);
    let started = Instant::now();
    let (out, json) = net.client(&["--timeout", "6"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(error.starts_with("no lease after"), "{error}");
    assert!(error.contains("2 sent"), "DISCOVER at 0 s and again after 4±1 s: {error}");
    assert!(took >= Duration::from_secs(6) && took < Duration::from_secs(8), "{took:?}");
}

#[test]
#[ignore = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)"]
fn late_server_answers_the_retransmission() {
    let net = Net::new(MAC);
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let stop = net.server_thread(67, move |socket, stop| {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = socket.recv_from(&mut buf) else { continue };
            let Some((kind, xid)) = parse_request(&buf[..n]) else { continue };
            let yiaddr = Ipv4Addr::new(192, 0, 2, 77);
            let common: [(u8, &[u8]); 3] = [(54, SERVER_ID), (1, MASK), (51, LEASE)];
            match kind {
                // The first DISCOVER goes unanswered (a server busy, a port still learning).
                1 if count.fetch_add(1, Ordering::Relaxed) == 0 => {}
                1 => send(&socket, &reply(xid, MAC_BYTES, yiaddr, &[&[(53, &[2][..])][..], &common].concat(), true)),
                3 => send(&socket, &reply(xid, MAC_BYTES, yiaddr, &[&[(53, &[5][..])][..], &common].concat(), true)),
                _ => {}
            }
        }
    });
    let (out, json) = net.client(&["--timeout", "20", "--no-configure"]);
    stop.store(true, Ordering::Relaxed);
    assert!(out.status.success(), "{json}");
    assert_eq!(json["lease"]["address"], "192.0.2.77/24");
    assert_eq!(json["sent"], 3, "DISCOVER, DISCOVER again, REQUEST");
    assert!(json["ms"].as_u64().unwrap() >= 3000, "the retransmission came after 4±1 s: {json}");
    assert_eq!(seen.load(Ordering::Relaxed), 2);
}

#[test]
#[ignore = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)"]
fn hostile_server_gets_no_bad_name_through() {
    let net = Net::new(MAC);
    let stop = net.server_thread(67, move |socket, stop| {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, _)) = socket.recv_from(&mut buf) else { continue };
            let Some((kind, xid)) = parse_request(&buf[..n]) else { continue };
            let yiaddr = Ipv4Addr::new(192, 0, 2, 66);
            let other_xid = [xid[0] ^ 0xff, xid[1], xid[2], xid[3]];
            let base: [(u8, &[u8]); 3] = [(54, SERVER_ID), (1, MASK), (51, LEASE)];
            fn with<'a>(kind: &'a [u8], base: &[(u8, &'a [u8])], extra: &[(u8, &'a [u8])]) -> Vec<(u8, &'a [u8])> {
                [&[(53u8, kind)][..], base, extra].concat()
            }
            let offer = |extra: &[(u8, &'static [u8])]| with(&[2], &base, extra);
            let ack = |extra: &[(u8, &'static [u8])]| with(&[5], &base, extra);
            match kind {
                1 => {
                    // Garbage, a bad cookie, truncations, another client's and another xid's offers.
                    send(&socket, b"\x02\x01\x06\x00garbage");
                    let mut bad_cookie = reply(xid, MAC_BYTES, yiaddr, &offer(&[]), true);
                    bad_cookie[236] = 0;
                    send(&socket, &bad_cookie);
                    let full = reply(xid, MAC_BYTES, yiaddr, &offer(&[(12, b"truncated")]), true);
                    send(&socket, &full[..full.len() - 6]);
                    send(&socket, &reply(other_xid, MAC_BYTES, yiaddr, &offer(&[(12, b"wrong-xid")]), true));
                    send(&socket, &reply(xid, [2, 0, 0, 0, 0, 8], yiaddr, &offer(&[(12, b"wrong-mac")]), true));
                    // An option whose length runs past the end, and no End option.
                    let mut past = reply(xid, MAC_BYTES, yiaddr, &offer(&[]), false);
                    past.extend_from_slice(&[12, 200, b'x']);
                    send(&socket, &past);
                    // The offer that counts, with a name that is a shell command.
                    send(&socket, &reply(xid, MAC_BYTES, yiaddr, &offer(&[(12, b"$(reboot)")]), true));
                }
                3 => send(
                    &socket,
                    &reply(
                        xid,
                        MAC_BYTES,
                        yiaddr,
                        &ack(&[
                            (12, b"../../etc/passwd"),
                            (15, b"lab.example;rm -rf /"),
                            (17, b"192.0.2.1:/srv/../../etc"),
                            (6, &[192, 0, 2, 53, 1]),
                            (3, b"\x00\x00"),
                            (67, b"pxe\x00linux.0"),
                        ]),
                        true,
                    ),
                ),
                _ => {}
            }
        }
    });
    let (out, json) = net.client(&["--timeout", "20", "--no-configure"]);
    stop.store(true, Ordering::Relaxed);
    assert!(out.status.success(), "a lease with bad options dropped is still a lease: {json}");
    let lease = &json["lease"];
    assert_eq!(lease["address"], "192.0.2.66/24");
    for field in ["hostname", "domain", "root_path", "bootfile"] {
        assert_eq!(lease[field], Value::Null, "{field}: {json}");
    }
    assert_eq!(lease["dns"], serde_json::json!([]), "a length not a multiple of 4");
    assert_eq!(lease["routers"], serde_json::json!([]));
    let rejected = lease["rejected"].to_string();
    for code in ["option 12", "option 15", "option 17", "option 6", "option 3", "option 67"] {
        assert!(rejected.contains(code), "{code} not named in {rejected}");
    }
    assert!(json["ignored"].as_u64().unwrap() >= 2, "garbage and the bad cookie: {json}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// One RFC 5424 message, read with a parser of this test's own: `<PRI>1 TIMESTAMP HOST APP
/// PROCID MSGID SD MSG`, SD one element here.
#[derive(Debug)]
struct Syslog {
    pri: u32,
    host: String,
    app: String,
    msgid: String,
    sd: String,
    msg: String,
}

fn parse_syslog(datagram: &[u8]) -> Syslog {
    let text = std::str::from_utf8(datagram).unwrap();
    let (pri, rest) = text.strip_prefix('<').unwrap().split_once(">1 ").unwrap();
    let fields: Vec<&str> = rest.splitn(6, ' ').collect();
    let (sd, msg) = fields[5].split_once("] ").unwrap();
    assert!(fields[0] == "-" || fields[0].ends_with('Z') && fields[0].len() == 27, "{text}");
    Syslog {
        pri: pri.parse().unwrap(),
        host: fields[1].into(),
        app: fields[2].into(),
        msgid: fields[4].into(),
        sd: format!("{sd}]"),
        msg: msg.into(),
    }
}

/// `stateless apply` in the client namespace with `stateless.log=` sends every log line and the
/// report to a receiver in the server namespace: the messages parse, carry the host name once
/// it is chosen, and the report's parts join into the report.
#[test]
#[ignore = "needs root: network namespaces, a veth pair and dnsmasq (tests/run runs it)"]
fn the_log_and_the_report_reach_a_syslog_receiver() {
    let net = Net::new(MAC);
    ip(&["-n", &net.client, "addr", "add", "192.0.2.10/24", "dev", "vc0"]);
    ip(&["-n", &net.client, "link", "set", "vc0", "up"]);
    let (tx, rx) = std::sync::mpsc::channel();
    let stop = net.server_thread(5514, move |socket, stop| {
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                let _ = tx.send(buf[..n].to_vec());
            }
        }
    });
    let (_tmp, root) = common::test_image("logserver");
    let out = Command::new("ip")
        .args(["netns", "exec", &net.client, "unshare", "-m", "--propagation", "private", common::BIN, "apply"])
        .arg("--root")
        .arg(&root)
        .args(["--ip", "192.0.2.10/24", "--hostname", "lab3-12", "--cmdline", "stateless.log=192.0.2.1:5514"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut messages = Vec::new();
    // apply has ended: what it sent is on its way or here.
    while let Ok(datagram) = rx.recv_timeout(Duration::from_secs(2)) {
        messages.push(parse_syslog(&datagram));
    }
    stop.store(true, Ordering::Relaxed);
    let lines: Vec<&Syslog> = messages.iter().filter(|m| m.msgid == "log").collect();
    assert!(lines.len() >= 10, "{messages:#?}\n{stderr}");
    assert!(messages.iter().all(|m| m.app == "stateless"), "{messages:#?}");
    // Every line stderr shows went to the server too, in order.
    let shown: Vec<&str> = stderr.lines().filter_map(|l| l.split_once(": ").map(|(_, rest)| rest)).collect();
    // From the first line on (kept until the server was known), numbered without a gap; named
    // by the address until the host name is chosen.
    let first = lines.first().unwrap();
    assert_eq!((first.msg.as_str(), first.host.as_str()), ("mount devtmpfs on /dev: mounted", "192.0.2.10"));
    assert!(lines.iter().any(|l| l.msg.starts_with("log: every line and the report also go to 192.0.2.1:5514")));
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line.sd, format!("[meta sequenceId=\"{}\"]", n + 1));
    }
    let texts: Vec<&str> = lines.iter().map(|l| l.msg.as_str()).collect();
    for line in shown.iter().filter(|l| l.starts_with("info: ") || l.starts_with("warn: ")) {
        let text = line.split_once(": ").unwrap().1;
        assert!(texts.contains(&text), "{text:?} not sent: {texts:#?}");
    }
    // Severity from the level (daemon facility), the host name once chosen.
    let layer = lines.iter().find(|l| l.msg.starts_with("layer base: base layer:")).unwrap();
    assert_eq!((layer.pri, layer.host.as_str()), (3 * 8 + 6, "lab3-12"), "{layer:?}");
    let refused = lines.iter().find(|l| l.msg.contains("refused /usr:")).unwrap();
    assert_eq!(refused.pri, 3 * 8 + 4, "a warning: {refused:?}");
    // The report, joined from its parts.
    let parts: Vec<&Syslog> = messages.iter().filter(|m| m.msgid == "report").collect();
    let json: String = parts.iter().map(|p| p.msg.as_str()).collect();
    let report: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(report["hostname"]["short"], "lab3-12");
    assert_eq!(report["mode"], "apply");
    assert!(report["steps"].as_array().unwrap().len() > 10);
    assert_eq!(parts[0].sd, format!("[stateless@32473 part=\"1\" parts=\"{}\"]", parts.len()));
}
