//! The DHCPv4 client: DISCOVER → OFFER → REQUEST → ACK when the interface has no address,
//! INFORM → ACK when it has one (on-root mode: the kernel configured it and the NFS root hangs
//! on it, so it is never changed). Synchronous, over a [`Transport`] that owns time, so the
//! whole exchange runs against a scripted server in the tests.
//!
//! Timing follows RFC 2131 §4.1: a random start delay (so a room of clients powered on together
//! does not answer the same switch port at once), then retransmissions after 4, 8, 16, 32, 64 s,
//! each ±1 s at random, all inside one overall bound.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::codec::{self, MessageType, Outgoing, Reply};
use crate::model::ipv4::Ipv4Net;
use crate::model::lease::{Exchange, Lease};

/// The vendor class (option 60) sent, so servers can tell these clients apart
/// (dnsmasq: `--dhcp-vendorclass=set:diskless,stateless`).
pub const VENDOR_CLASS: &str = "stateless";

/// A REQUEST is sent this many times before the client starts over with a DISCOVER.
const REQUEST_TRIES: u32 = 4;

/// The way to the DHCP servers of one interface, and the clock.
pub trait Transport {
    /// Monotonic time.
    fn now(&self) -> Duration;
    /// Broadcasts one DHCP message from the client port to the server port.
    fn send(&mut self, message: &[u8]) -> io::Result<()>;
    /// The next DHCP message sent to the client port, or `None` once `deadline` has passed.
    fn recv(&mut self, deadline: Duration) -> io::Result<Option<Vec<u8>>>;
}

/// What to ask for.
#[derive(Clone, Debug)]
pub struct Request {
    pub mac: [u8; 6],
    /// Option 61 as sent (the type byte first); empty: type 1 and the MAC ([`client_id`]).
    pub client_id: Vec<u8>,
    /// The interface's address when it has one: then only INFORM is sent.
    pub address: Option<Ipv4Net>,
    /// The bound on the whole exchange, the start delay included.
    pub timeout: Duration,
    /// The start delay is chosen at random below this.
    pub max_start_delay: Duration,
}

/// A lease and how it was had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquired {
    pub exchange: Exchange,
    pub lease: Lease,
    pub stats: Stats,
}

/// What the exchange took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent (a first DISCOVER, REQUEST or INFORM included).
    pub sent: u32,
    /// Messages received for this client that were not the awaited answer or could not be
    /// parsed (with the reason of the last one).
    pub ignored: u32,
    pub last_ignored: Option<String>,
    /// OFFERs taken (each answered with a REQUEST).
    pub offers: u32,
    /// NAKs received (each restarts the exchange).
    pub naks: u32,
    /// Milliseconds from the start (start delay included) to the end.
    pub ms: u64,
}

/// Why there is no lease.
#[derive(Debug)]
pub enum Failure {
    /// The bound passed without a lease.
    NoLease(Stats),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoLease(stats) => {
                let Stats { ms, sent, offers, naks, .. } = stats;
                write!(f, "no lease after {ms} ms: {sent} sent, {offers} offers taken, {naks} NAKs")?;
                match &stats.last_ignored {
                    Some(why) => write!(f, ", {} replies ignored (last: {why})", stats.ignored),
                    None if stats.ignored > 0 => write!(f, ", {} replies ignored", stats.ignored),
                    None => Ok(()),
                }
            }
            Failure::Io(e) => write!(f, "dhcp socket: {e}"),
        }
    }
}

/// xorshift64*: enough for transaction ids and jitter (seeded from the kernel's random pool).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// A duration in `[0, max)` at millisecond steps.
    fn below(&mut self, max: Duration) -> Duration {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(if ms == 0 { 0 } else { u64::from(self.next_u32()) % ms })
    }
}

/// The wait after the `attempt`th transmission (0-based): 4 s doubling to 64 s, ±1 s.
pub fn backoff(attempt: u32, rng: &mut Rng) -> Duration {
    let base = Duration::from_secs(4u64 << attempt.min(4));
    base - Duration::from_secs(1) + rng.below(Duration::from_secs(2))
}

/// Runs the exchange until a lease or the bound.
pub fn run(transport: &mut dyn Transport, request: &Request, rng: &mut Rng) -> Result<Acquired, Failure> {
    let start = transport.now();
    let mut client = Client { transport, request, start, deadline: start + request.timeout, stats: Stats::default() };
    let delay = rng.below(request.max_start_delay);
    client.wait(start + delay).map_err(Failure::Io)?;
    let result = match request.address {
        Some(address) => client.inform(address, rng),
        None => client.discover(rng),
    };
    client.stats.ms = u64::try_from((client.transport.now() - start).as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(Some((exchange, lease))) => Ok(Acquired { exchange, lease, stats: client.stats }),
        Ok(None) => Err(Failure::NoLease(client.stats)),
        Err(e) => Err(Failure::Io(e)),
    }
}

struct Client<'a> {
    transport: &'a mut dyn Transport,
    request: &'a Request,
    start: Duration,
    deadline: Duration,
    stats: Stats,
}

/// One message to (re)send and the transaction it belongs to.
struct Message {
    kind: MessageType,
    xid: u32,
    /// Seconds since the client began this transaction: the REQUEST repeats the DISCOVER's
    /// (RFC 2131 §4.4.1).
    secs: u16,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
}

pub use crate::model::ipv4::usable_unicast;

impl Client<'_> {
    /// Receives and drops everything until `until` (the start delay).
    fn wait(&mut self, until: Duration) -> io::Result<()> {
        while self.transport.recv(until.min(self.deadline))?.is_some() {}
        Ok(())
    }

    /// Seconds since the client started, for the `secs` field.
    fn secs(&self) -> u16 {
        u16::try_from(self.transport.now().saturating_sub(self.start).as_secs()).unwrap_or(u16::MAX)
    }

    fn inform(&mut self, address: Ipv4Net, rng: &mut Rng) -> io::Result<Option<(Exchange, Lease)>> {
        let message = Message {
            kind: MessageType::Inform,
            xid: rng.next_u32(),
            secs: self.secs(),
            ciaddr: address.addr,
            requested: None,
            server_id: None,
        };
        let ack = self.exchange(&message, u32::MAX, rng, |r| r.kind == Some(MessageType::Ack))?;
        Ok(ack.map(|ack| {
            let mut lease = ack.lease;
            lease.address = Some(address); // what the interface has; INFORM never changes it
            (Exchange::Inform, lease)
        }))
    }

    fn discover(&mut self, rng: &mut Rng) -> io::Result<Option<(Exchange, Lease)>> {
        let mut restarts = 0;
        while self.transport.now() < self.deadline {
            if restarts > 0 {
                // A server that NAKs every REQUEST must not get them back to back: wait as
                // for a retransmission before starting over.
                let until = self.transport.now() + backoff(restarts - 1, rng);
                self.wait(until)?;
                if self.transport.now() >= self.deadline {
                    break;
                }
            }
            restarts += 1;
            let xid = rng.next_u32();
            let secs = self.secs();
            let discover = Message {
                kind: MessageType::Discover,
                xid,
                secs,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                requested: None,
                server_id: None,
            };
            let offer = self.exchange(&discover, u32::MAX, rng, |r| {
                r.kind == Some(MessageType::Offer)
                    && usable_unicast(r.yiaddr)
                    && r.lease.address.is_some()
                    && r.server_id.is_some()
            })?;
            let Some(offer) = offer else { return Ok(None) };
            self.stats.offers += 1;
            log::debug!("dhcp: offer of {} from {:?}", offer.yiaddr, offer.server_id);
            let request = Message {
                kind: MessageType::Request,
                xid,
                secs,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                requested: Some(offer.yiaddr),
                server_id: offer.server_id,
            };
            // An ACK counts only for the address offered (one for another address, or for an
            // address no host can have, is ignored like a stray reply); a NAK starts over.
            let answer = self.exchange(&request, REQUEST_TRIES, rng, |r| {
                r.server_id == offer.server_id
                    && match r.kind {
                        Some(MessageType::Ack) => r.yiaddr == offer.yiaddr && r.lease.address.is_some(),
                        Some(MessageType::Nak) => true,
                        _ => false,
                    }
            })?;
            match answer {
                Some(ack) if ack.kind == Some(MessageType::Ack) => {
                    return Ok(Some((Exchange::Discover, ack.lease)));
                }
                Some(reply) => {
                    self.stats.naks += u32::from(reply.kind == Some(MessageType::Nak));
                    let why = reply.message.as_deref().unwrap_or("no reason given");
                    log::warn!(
                        "dhcp: {} from {:?} for {}: {why}; starting over",
                        kind_name(&reply),
                        reply.server_id,
                        offer.yiaddr
                    );
                }
                None => log::warn!("dhcp: no answer to the REQUEST for {}; starting over", offer.yiaddr),
            }
        }
        Ok(None)
    }

    /// Sends `message` up to `tries` times with the backoff, until a reply for this client that
    /// `wanted` accepts, or the bound.
    fn exchange(
        &mut self,
        message: &Message,
        tries: u32,
        rng: &mut Rng,
        wanted: impl Fn(&Reply) -> bool,
    ) -> io::Result<Option<Reply>> {
        let mut attempt = 0;
        let default_id = client_id(self.request.mac);
        let id = if self.request.client_id.is_empty() { &default_id[..] } else { &self.request.client_id };
        while attempt < tries && self.transport.now() < self.deadline {
            let bytes = codec::encode(&Outgoing {
                kind: message.kind,
                xid: message.xid,
                secs: message.secs,
                // Replies by broadcast while we have no address; INFORM comes from one
                // (RFC 2131 §4.4.3: the flag stays clear).
                broadcast: message.ciaddr.is_unspecified(),
                ciaddr: message.ciaddr,
                mac: self.request.mac,
                requested: message.requested,
                server_id: message.server_id,
                client_id: id,
                vendor_class: VENDOR_CLASS,
            });
            self.transport.send(&bytes)?;
            self.stats.sent += 1;
            let retry = (self.transport.now() + backoff(attempt, rng)).min(self.deadline);
            while let Some(bytes) = self.transport.recv(retry)? {
                match codec::decode(&bytes) {
                    Ok(reply) if self.for_us(&reply, message.xid) && wanted(&reply) => return Ok(Some(reply)),
                    Ok(reply) if self.for_us(&reply, message.xid) => {
                        self.ignore(format!("unexpected {} in reply to {}", kind_name(&reply), message.kind));
                    }
                    Ok(_) => {} // another client's transaction: not ours to count
                    Err(e) => self.ignore(e.to_string()),
                }
            }
            attempt += 1;
            if self.transport.now() < self.deadline && attempt < tries {
                log::info!("dhcp: no answer to {} yet, sending it again", message.kind);
            }
        }
        Ok(None)
    }

    /// A BOOTP reply with our transaction id and our hardware address.
    fn for_us(&self, reply: &Reply, xid: u32) -> bool {
        reply.op == 2
            && reply.xid == xid
            && reply.htype == 1
            && reply.hlen == 6
            && reply.chaddr.get(..6) == Some(&self.request.mac[..])
    }

    fn ignore(&mut self, why: String) {
        log::debug!("dhcp: ignored a reply: {why}");
        self.stats.ignored += 1;
        self.stats.last_ignored = Some(why);
    }
}

fn kind_name(reply: &Reply) -> String {
    reply.kind.map_or_else(|| "reply without a message type".to_string(), |k| k.to_string().to_uppercase())
}

/// Option 61: hardware type 1 (Ethernet) and the MAC, as most clients send it.
pub fn client_id(mac: [u8; 6]) -> [u8; 7] {
    let [a, b, c, d, e, f] = mac;
    [1, a, b, c, d, e, f]
}

/// A scripted DHCP server behind a transport with a virtual clock: what the client sends is
/// answered at once by the script; waiting moves the clock to the deadline.
#[cfg(test)]
pub mod testing {
    use std::collections::VecDeque;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Transport;

    /// Given what the client sent (and the virtual time), the messages the server sends back.
    pub type Server = Box<dyn FnMut(&[u8], Duration) -> Vec<Vec<u8>> + Send>;

    pub struct Scripted {
        pub clock: Duration,
        pub server: Arc<Mutex<Server>>,
        pub queue: VecDeque<Vec<u8>>,
        /// When each message was sent.
        pub sent: Vec<Duration>,
    }

    impl Scripted {
        pub fn new(server: Arc<Mutex<Server>>) -> Self {
            Self { clock: Duration::ZERO, server, queue: VecDeque::new(), sent: Vec::new() }
        }
    }

    impl Transport for Scripted {
        fn now(&self) -> Duration {
            self.clock
        }

        fn send(&mut self, message: &[u8]) -> io::Result<()> {
            self.sent.push(self.clock);
            let replies = (self.server.lock().map_err(|_| io::Error::other("poisoned"))?)(message, self.clock);
            self.queue.extend(replies);
            Ok(())
        }

        fn recv(&mut self, deadline: Duration) -> io::Result<Option<Vec<u8>>> {
            if self.clock >= deadline {
                return Ok(None);
            }
            match self.queue.pop_front() {
                Some(message) => Ok(Some(message)),
                None => {
                    self.clock = deadline;
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
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
        let mut m =
            v4::Message::new_with_id(to.xid(), Ipv4Addr::UNSPECIFIED, OFFERED, SERVER, Ipv4Addr::UNSPECIFIED, &MAC);
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
    ) -> (Vec<(Duration, v4::Message)>, Result<Acquired, Failure>) {
        run_request(&request(address), server)
    }

    fn run_request(
        request: &Request,
        server: impl FnMut(&v4::Message, Duration) -> Vec<Vec<u8>> + Send + 'static,
    ) -> (Vec<(Duration, v4::Message)>, Result<Acquired, Failure>) {
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
        assert_eq!(
            request.opts().get(v4::OptionCode::ServerIdentifier),
            Some(&v4::DhcpOption::ServerIdentifier(SERVER))
        );
        assert!(sent[0].0 < Duration::from_millis(500), "the start delay is below its bound: {:?}", sent[0].0);
    }

    #[test]
    fn retransmits_with_backoff_and_stops_at_the_bound() {
        let (sent, result) = run_with(None, |_, _| vec![]);
        let Err(Failure::NoLease(stats)) = result else { panic!("{result:?}") };
        let times: Vec<Duration> = sent.iter().map(|(t, _)| *t).collect();
        // 4, 8, 16, 32 s apart, each ±1 s, inside 60 s: five DISCOVERs.
        assert_eq!((times.len(), stats.sent), (5, 5), "{times:?}");
        for (gap, base) in times.windows(2).map(|w| w[1] - w[0]).zip([4u64, 8, 16, 32]) {
            let base = Duration::from_secs(base);
            assert!(
                gap >= base - Duration::from_secs(1) && gap < base + Duration::from_secs(1),
                "{gap:?} for {base:?}"
            );
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
        let Err(Failure::NoLease(stats)) = result else { panic!("{result:?}") };
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
        assert_eq!(
            (acquired.stats.naks, acquired.stats.ignored),
            (0, 3),
            "the three bad replies: {:?}",
            acquired.stats
        );
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
}
