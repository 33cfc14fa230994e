use std::sync::{Arc, Mutex};

use dhcproto::v4;
use dhcproto::{Decodable, Decoder, Encodable};

use super::testing::{Scripted, Server};
use super::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 7];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OFFERED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

fn request(address: Option<Ipv4Net>) -> Request {
    Request {
        mac: MAC,
        client_id: Vec::new(),
        address,
        timeout: Duration::from_secs(60),
        max_start_delay: Duration::from_millis(500),
    }
}

/// A reply to `to` (parsed by dhcproto) of `kind`, with `name` as host name.
fn reply(to: &v4::Message, kind: v4::MessageType, name: &str) -> Vec<u8> {
    let mut m = v4::Message::new_with_id(to.xid(), Ipv4Addr::UNSPECIFIED, OFFERED, SERVER, Ipv4Addr::UNSPECIFIED, &MAC);
    m.set_opcode(v4::Opcode::BootReply).set_flags(v4::Flags::default().set_broadcast());
    for option in [
        v4::DhcpOption::MessageType(kind),
        v4::DhcpOption::ServerIdentifier(SERVER),
        v4::DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
        v4::DhcpOption::Hostname(name.into()),
    ] {
        m.opts_mut().insert(option);
    }
    m.to_vec().unwrap()
}

fn kind(m: &v4::Message) -> v4::MessageType {
    match m.opts().get(v4::OptionCode::MessageType) {
        Some(v4::DhcpOption::MessageType(k)) => *k,
        other => panic!("no message type: {other:?}"),
    }
}

/// Runs the client against `server`; the messages it sent (parsed) and when, and the result.
fn run_with(
    address: Option<Ipv4Net>,
    server: impl FnMut(&v4::Message, Duration) -> Vec<Vec<u8>> + Send + 'static,
) -> (Vec<(Duration, v4::Message)>, Result<Acquired, LeaseError>) {
    run_request(&request(address), server)
}

fn run_request(
    request: &Request,
    server: impl FnMut(&v4::Message, Duration) -> Vec<Vec<u8>> + Send + 'static,
) -> (Vec<(Duration, v4::Message)>, Result<Acquired, LeaseError>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let mut server = server;
    let script: Server = Box::new(move |bytes: &[u8], now: Duration| {
        let m = v4::Message::decode(&mut Decoder::new(bytes)).unwrap();
        let replies = server(&m, now);
        seen.lock().unwrap().push((now, m));
        replies
    });
    let mut transport = Scripted::new(Arc::new(Mutex::new(script)));
    let result = run(&mut transport, request, &mut Rng::new(7));
    let sent = log.lock().unwrap().clone();
    (sent, result)
}

/// `ip=dhcp,<type>,<id>`: every message carries that option 61; else type 1 and the MAC.
#[test]
fn client_id_as_given_else_the_mac() {
    let server = |m: &v4::Message, _: Duration| match kind(m) {
        v4::MessageType::Discover => vec![reply(m, v4::MessageType::Offer, "lab3-12")],
        v4::MessageType::Request => vec![reply(m, v4::MessageType::Ack, "lab3-12")],
        _ => vec![],
    };
    let ids = |sent: &[(Duration, v4::Message)]| -> Vec<Option<v4::DhcpOption>> {
        sent.iter().map(|(_, m)| m.opts().get(v4::OptionCode::ClientIdentifier).cloned()).collect()
    };
    let given = Request { client_id: b"\x00lab3-12".to_vec(), ..request(None) };
    let (sent, result) = run_request(&given, server);
    assert!(result.is_ok());
    let id = Some(v4::DhcpOption::ClientIdentifier(b"\x00lab3-12".to_vec()));
    assert_eq!(ids(&sent), [id.clone(), id]);
    let (sent, _) = run_request(&request(None), server);
    let mac = Some(v4::DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 7]));
    assert_eq!(ids(&sent), [mac.clone(), mac]);
}

#[test]
fn discover_request_ack() {
    let (sent, result) = run_with(None, |m, _| match kind(m) {
        v4::MessageType::Discover => vec![reply(m, v4::MessageType::Offer, "lab3-12")],
        v4::MessageType::Request => vec![reply(m, v4::MessageType::Ack, "lab3-12")],
        _ => vec![],
    });
    let acquired = result.unwrap();
    assert_eq!(acquired.exchange, Exchange::Discover);
    assert_eq!(acquired.lease.address, Ipv4Net::new(OFFERED, 24));
    assert_eq!(acquired.lease.hostname.as_deref(), Some("lab3-12"));
    assert_eq!((acquired.stats.sent, acquired.stats.offers, acquired.stats.naks), (2, 1, 0));
    let (discover, request) = (&sent[0].1, &sent[1].1);
    assert_eq!(discover.xid(), request.xid(), "one transaction");
    assert!(discover.flags().broadcast() && discover.chaddr()[..6] == MAC);
    assert_eq!(
        request.opts().get(v4::OptionCode::RequestedIpAddress),
        Some(&v4::DhcpOption::RequestedIpAddress(OFFERED))
    );
    assert_eq!(request.opts().get(v4::OptionCode::ServerIdentifier), Some(&v4::DhcpOption::ServerIdentifier(SERVER)));
    assert!(sent[0].0 < Duration::from_millis(500), "the start delay is below its bound: {:?}", sent[0].0);
}

#[test]
fn retransmits_with_backoff_and_stops_at_the_bound() {
    let (sent, result) = run_with(None, |_, _| vec![]);
    let Err(LeaseError::NoLease(stats)) = result else { panic!("{result:?}") };
    let times: Vec<Duration> = sent.iter().map(|(t, _)| *t).collect();
    // 4, 8, 16, 32 s apart, each ±1 s, inside 60 s: five DISCOVERs.
    assert_eq!((times.len(), stats.sent), (5, 5), "{times:?}");
    for (gap, base) in times.windows(2).map(|w| w[1] - w[0]).zip([4u64, 8, 16, 32]) {
        let base = Duration::from_secs(base);
        assert!(gap >= base - Duration::from_secs(1) && gap < base + Duration::from_secs(1), "{gap:?} for {base:?}");
    }
    assert!(*times.last().unwrap() < Duration::from_secs(60));
    assert_eq!(stats.ms, 60_000, "the bound, not more");
    assert!(sent.iter().all(|(_, m)| kind(m) == v4::MessageType::Discover));
}

#[test]
fn backoff_doubles_to_64_s_with_jitter() {
    let mut rng = Rng::new(1);
    for attempt in 0..10 {
        let base = 4u64 << attempt.min(4);
        for _ in 0..50 {
            let d = backoff(attempt, &mut rng);
            assert!(d >= Duration::from_secs(base - 1) && d < Duration::from_secs(base + 1), "{attempt}: {d:?}");
        }
    }
}

#[test]
fn nak_starts_over_and_other_transactions_are_ignored() {
    let mut naks = 0;
    let (sent, result) = run_with(None, move |m, _| {
        let mut other = reply(m, v4::MessageType::Offer, "other");
        other[4] ^= 0xff; // another transaction
        match kind(m) {
            v4::MessageType::Discover => vec![other, reply(m, v4::MessageType::Offer, "lab3-12")],
            v4::MessageType::Request if naks == 0 => {
                naks += 1;
                vec![reply(m, v4::MessageType::Nak, "")]
            }
            v4::MessageType::Request => vec![reply(m, v4::MessageType::Ack, "lab3-12")],
            _ => vec![],
        }
    });
    let acquired = result.unwrap();
    assert_eq!(acquired.stats.naks, 1);
    let kinds: Vec<_> = sent.iter().map(|(_, m)| kind(m)).collect();
    use v4::MessageType::{Discover, Request};
    assert_eq!(kinds, [Discover, Request, Discover, Request]);
    assert_ne!(sent[0].1.xid(), sent[2].1.xid(), "a new transaction after the NAK");
}

#[test]
fn a_server_that_always_naks_is_not_flooded() {
    let (sent, result) = run_with(None, |m, _| match kind(m) {
        v4::MessageType::Discover => vec![reply(m, v4::MessageType::Offer, "x")],
        _ => vec![reply(m, v4::MessageType::Nak, "")],
    });
    let Err(LeaseError::NoLease(stats)) = result else { panic!("{result:?}") };
    // Each restart waits as a retransmission would (4, 8, 16, 32 s): a handful in 60 s.
    assert!(stats.naks >= 3 && stats.naks <= 6, "{stats:?}");
    assert_eq!(sent.len() as u32, 2 * stats.naks, "one DISCOVER and one REQUEST per round");
}

#[test]
fn unusable_or_changed_addresses_are_not_taken() {
    let mut round = 0;
    let (sent, result) = run_with(None, move |m, _| {
        round += 1;
        let with_yiaddr = |kind, yiaddr: Ipv4Addr| {
            let mut bytes = reply(m, kind, "lab3-12");
            bytes[16..20].copy_from_slice(&yiaddr.octets());
            bytes
        };
        match (kind(m), round) {
            // A multicast address offered: ignored; then a good one, acked as another.
            (v4::MessageType::Discover, 1) => {
                vec![with_yiaddr(v4::MessageType::Offer, Ipv4Addr::new(224, 0, 0, 1))]
            }
            (v4::MessageType::Discover, _) => vec![reply(m, v4::MessageType::Offer, "lab3-12")],
            // The REQUEST acked for another address, then for the subnet's broadcast
            // address: both ignored, the retransmission gets the right one.
            (v4::MessageType::Request, 3) => vec![
                with_yiaddr(v4::MessageType::Ack, Ipv4Addr::new(192, 0, 2, 99)),
                with_yiaddr(v4::MessageType::Ack, Ipv4Addr::new(192, 0, 2, 255)),
            ],
            (v4::MessageType::Request, _) => vec![reply(m, v4::MessageType::Ack, "lab3-12")],
            _ => vec![],
        }
    });
    let acquired = result.unwrap();
    assert_eq!(acquired.lease.address, Ipv4Net::new(OFFERED, 24));
    assert_eq!(acquired.stats.offers, 1, "the multicast offer was not taken");
    assert_eq!((acquired.stats.naks, acquired.stats.ignored), (0, 3), "the three bad replies: {:?}", acquired.stats);
    use v4::MessageType::{Discover, Request};
    let kinds: Vec<_> = sent.iter().map(|(_, m)| kind(m)).collect();
    assert_eq!(kinds, [Discover, Discover, Request, Request], "no restart for a wrong ACK");
    assert!(!usable_unicast(Ipv4Addr::new(127, 0, 0, 1)) && !usable_unicast(Ipv4Addr::BROADCAST));
    assert!(!usable_unicast(Ipv4Addr::new(0, 1, 2, 3)) && usable_unicast(OFFERED));
}

#[test]
fn inform_keeps_the_address_and_sends_from_it() {
    let ours = Ipv4Net::new(Ipv4Addr::new(10, 0, 2, 15), 24);
    let (sent, result) = run_with(ours, |m, _| vec![reply(m, v4::MessageType::Ack, "lab3-12")]);
    let acquired = result.unwrap();
    assert_eq!(acquired.exchange, Exchange::Inform);
    assert_eq!(acquired.lease.address, ours, "never the server's yiaddr");
    assert_eq!(kind(&sent[0].1), v4::MessageType::Inform);
    assert_eq!(sent[0].1.ciaddr(), Ipv4Addr::new(10, 0, 2, 15));
}
