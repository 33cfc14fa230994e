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
pub enum LeaseError {
    /// The bound passed without a lease.
    NoLease(Stats),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::NoLease(stats) => {
                let Stats { ms, sent, offers, naks, .. } = stats;
                write!(f, "no lease after {ms} ms: {sent} sent, {offers} offers taken, {naks} NAKs")?;
                match &stats.last_ignored {
                    Some(why) => write!(f, ", {} replies ignored (last: {why})", stats.ignored),
                    None if stats.ignored > 0 => write!(f, ", {} replies ignored", stats.ignored),
                    None => Ok(()),
                }
            }
            LeaseError::Io(e) => write!(f, "dhcp socket: {e}"),
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
pub fn run(transport: &mut dyn Transport, request: &Request, rng: &mut Rng) -> Result<Acquired, LeaseError> {
    let start = transport.now();
    let mut client = Client { transport, request, start, deadline: start + request.timeout, stats: Stats::default() };
    let delay = rng.below(request.max_start_delay);
    client.wait(start + delay).map_err(LeaseError::Io)?;
    let result = match request.address {
        Some(address) => client.inform(address, rng),
        None => client.discover(rng),
    };
    client.stats.ms = u64::try_from((client.transport.now() - start).as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(Some((exchange, lease))) => Ok(Acquired { exchange, lease, stats: client.stats }),
        Ok(None) => Err(LeaseError::NoLease(client.stats)),
        Err(e) => Err(LeaseError::Io(e)),
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
mod tests;
