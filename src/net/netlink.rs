//! Interfaces and their IPv4 addresses, straight from the kernel over rtnetlink.
//!
//! [`interfaces`] opens a `NETLINK_ROUTE` socket, dumps the links (`RTM_GETLINK`) and then the
//! IPv4 addresses (`RTM_GETADDR`), and joins them by interface index. The decoding is done by pure
//! functions over byte buffers ([`parse_links`], [`parse_addrs`], [`merge`]) so it can be tested
//! with hand-made and captured dumps. The bytes are treated as untrusted: every length is checked,
//! nothing is indexed unchecked, and every loop consumes at least 4 bytes per round. The same
//! framing, attributes and [`exchange`] serve generic netlink (`net::nbd::genl`).
//!
//! Wire format (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h), all
//! integers in native byte order:
//! - `nlmsghdr` (16 bytes): `len u32` (header included), `type u16`, `flags u16`, `seq u32`,
//!   `pid u32`; the next message starts at the 4-byte aligned end.
//! - `ifinfomsg` (16 bytes): `family u8`, pad `u8`, `type u16`, `index i32`, `flags u32`, `change u32`.
//! - `ifaddrmsg` (8 bytes): `family u8`, `prefixlen u8`, `flags u8`, `scope u8`, `index u32`.
//! - `rtattr` (4 bytes + data): `len u16` (header included), `type u16`; 4-byte aligned.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::Protocol;
use rustix::net::{
    bind, getsockname, recvfrom, sendto, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};

pub use crate::model::interface::{format_mac, Interface};
use crate::model::ipv4::Ipv4Net;

// Netlink control message types (linux/netlink.h).
/// Nothing; to be ignored.
const NLMSG_NOOP: u16 = 1;
/// An error (negative errno) or, with errno 0, an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// End of a multi-part (dump) reply.
const NLMSG_DONE: u16 = 3;
/// Data lost.
const NLMSG_OVERRUN: u16 = 4;

// rtnetlink message types (linux/rtnetlink.h).
/// A link, in a dump reply.
const RTM_NEWLINK: u16 = 16;
/// Request: links.
const RTM_GETLINK: u16 = 18;
/// An address, in a dump reply.
const RTM_NEWADDR: u16 = 20;
/// Request: addresses.
const RTM_GETADDR: u16 = 22;
/// Request: a route.
const RTM_NEWROUTE: u16 = 24;

// nlmsghdr flags (linux/netlink.h).
/// Every request carries it.
const NLM_F_REQUEST: u16 = 0x1;
/// Asks for an acknowledgement (NLMSG_ERROR with errno 0) of a change.
const NLM_F_ACK: u16 = 0x4;
/// With NLM_F_CREATE: fail with EEXIST instead of replacing.
const NLM_F_EXCL: u16 = 0x200;
/// Create the object when it does not exist.
const NLM_F_CREATE: u16 = 0x400;
/// Part of a multi-part reply, ended by NLMSG_DONE. Informational only: replies are read until DONE.
#[cfg_attr(not(test), allow(dead_code))]
const NLM_F_MULTI: u16 = 0x2;
/// The dump was interrupted by a change of the tables: its contents may be inconsistent.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// NLM_F_ROOT | NLM_F_MATCH: return everything.
const NLM_F_DUMP: u16 = 0x300;

// Address families (linux/socket.h).
const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

// Link attributes (linux/if_link.h).
/// The hardware address (6 bytes on Ethernet; other sizes on other link types).
const IFLA_ADDRESS: u16 = 1;
/// The interface name, NUL-terminated.
const IFLA_IFNAME: u16 = 3;
/// The broadcast address of an interface address.
const IFA_BROADCAST: u16 = 4;
// Route attributes (linux/rtnetlink.h).
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
// rtmsg values (linux/rtnetlink.h).
const RT_TABLE_MAIN: u8 = 254;
/// The route was installed during boot (as the kernel's own ip=dhcp marks its routes).
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
/// The gateway is on the link even when outside the prefix.
const RTNH_F_ONLINK: u32 = 4;

// Address attributes (linux/if_addr.h).
/// The prefix address: the peer's on point-to-point links, else the same as IFA_LOCAL.
const IFA_ADDRESS: u16 = 1;
/// The local address.
const IFA_LOCAL: u16 = 2;

// Interface flags (linux/if.h).
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
/// The driver reports carrier (RFC 2863 operational state "up" below the interface).
const IFF_LOWER_UP: u32 = 0x10000;

/// The attribute type without NLA_F_NESTED (0x8000) and NLA_F_NET_BYTEORDER (0x4000).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Sizes of the fixed headers.
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTATTR_HDRLEN: usize = 4;

/// IFNAMSIZ (16) minus the terminating NUL: the longest name the kernel accepts.
const IFNAME_MAX: usize = 15;

/// The kernel caps one dump datagram at 32 KiB for a reader with a buffer that large.
const RECV_BUF_LEN: usize = 32 * 1024;
/// A dump reply that does not arrive within this time is an error, not a hang of PID 1.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on datagrams per dump, so a reply that never ends cannot keep us forever.
const MAX_DATAGRAMS: usize = 100_000;
/// Attempts when the kernel flags a dump as interrupted by a concurrent change.
const ATTEMPTS: usize = 3;

/// Sequence numbers of our requests; unique per process, never 0 (kernel notifications use 0).
static SEQ: AtomicU32 = AtomicU32::new(1);

/// What is wrong with a netlink reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The message header at this byte offset is cut off, or its length is below the header size
    /// or past the end of the data. Nothing after it can be framed.
    BadMessage { offset: usize },
    /// A message of this type is shorter than its fixed header.
    ShortBody { ty: u16 },
    /// An attribute in a message of this type has a length below 4 or past the end of the message.
    BadAttribute { ty: u16 },
    /// The kernel answered with this errno (positive), in NLMSG_ERROR or NLMSG_DONE.
    Kernel(i32),
    /// The kernel flagged the dump as interrupted by a concurrent change (NLM_F_DUMP_INTR).
    Interrupted,
    /// The kernel reported lost data (NLMSG_OVERRUN).
    Overrun,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMessage { offset } => {
                write!(f, "malformed netlink message header at byte {offset}")
            }
            Self::ShortBody { ty } => write!(f, "netlink message of type {ty} too short"),
            Self::BadAttribute { ty } => {
                write!(f, "malformed attribute in netlink message of type {ty}")
            }
            Self::Kernel(errno) => {
                write!(f, "netlink error: {}", io::Error::from_raw_os_error(*errno))
            }
            Self::Interrupted => f.write_str("netlink dump interrupted by a concurrent change"),
            Self::Overrun => f.write_str("netlink overrun: data lost"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Kernel(errno) => io::Error::from_raw_os_error(errno),
            ParseError::Interrupted => io::Error::new(io::ErrorKind::Interrupted, e),
            _ => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

pub(super) fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

pub(super) fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(i32::from_ne_bytes(bytes.try_into().ok()?))
}

/// One netlink message.
#[derive(Debug)]
pub(super) struct Message<'a> {
    pub(super) ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    pub(super) body: &'a [u8],
}

/// The messages in a buffer. After an error it yields nothing more.
pub(super) struct Messages<'a> {
    rest: &'a [u8],
    offset: usize,
}

pub(super) fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf, offset: 0 }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let bad = ParseError::BadMessage { offset: self.offset };
        let Some(len) = read_u32(rest, 0).and_then(|l| usize::try_from(l).ok()) else {
            return Some(Err(bad));
        };
        if len < NLMSG_HDRLEN {
            return Some(Err(bad));
        }
        let Some((msg, after)) = rest.split_at_checked(len) else {
            return Some(Err(bad));
        };
        let (Some(ty), Some(flags), Some(seq), Some(pid)) =
            (read_u16(msg, 4), read_u16(msg, 6), read_u32(msg, 8), read_u32(msg, 12))
        else {
            return Some(Err(bad));
        };
        // The next message starts at the aligned end; a last message may lack its padding.
        let pad = align4(len).saturating_sub(len);
        self.rest = after.get(pad..).unwrap_or_default();
        self.offset = self.offset.saturating_add(align4(len));
        Some(Ok(Message { ty, flags, seq, pid, body: msg.get(NLMSG_HDRLEN..).unwrap_or_default() }))
    }
}

/// The attributes (type without flag bits, data) in the tail of a message of type `msg_ty`.
/// After an error it yields nothing more.
pub(super) struct Attrs<'a> {
    rest: &'a [u8],
    msg_ty: u16,
}

/// The attributes in `data` (a message's tail, or a nested attribute's data); `msg_ty` names
/// the message in errors.
pub(super) fn attrs(data: &[u8], msg_ty: u16) -> Attrs<'_> {
    Attrs { rest: data, msg_ty }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let bad = ParseError::BadAttribute { ty: self.msg_ty };
        let (Some(len), Some(ty)) = (read_u16(rest, 0), read_u16(rest, 2)) else {
            return Some(Err(bad));
        };
        let len = usize::from(len);
        if len < RTATTR_HDRLEN {
            return Some(Err(bad));
        }
        let Some((attr, after)) = rest.split_at_checked(len) else {
            return Some(Err(bad));
        };
        let pad = align4(len).saturating_sub(len);
        self.rest = after.get(pad..).unwrap_or_default();
        Some(Ok((ty & NLA_TYPE_MASK, attr.get(RTATTR_HDRLEN..).unwrap_or_default())))
    }
}

/// Which messages belong to our request: its sequence number, and our socket's port id.
#[derive(Clone, Copy, Debug)]
struct Filter {
    seq: u32,
    pid: u32,
}

/// Decodes one reply message body of the wanted type; `Ok(None)` skips it.
type BodyParser<T> = fn(&[u8]) -> Result<Option<T>, ParseError>;

/// Goes through the messages of `buf` (one datagram, or several concatenated), appending the
/// decoded ones of type `want` to `out`. Returns whether NLMSG_DONE was seen; messages after it are
/// ignored. With a filter, messages of other requests are skipped.
fn feed<T>(
    buf: &[u8],
    filter: Option<Filter>,
    want: u16,
    parse: BodyParser<T>,
    out: &mut Vec<T>,
) -> Result<bool, ParseError> {
    for msg in messages(buf) {
        let msg = msg?;
        if let Some(f) = filter {
            if msg.seq != f.seq || msg.pid != f.pid {
                log::debug!("netlink: skipping message seq {} pid {} (want {f:?})", msg.seq, msg.pid);
                continue;
            }
        }
        if msg.flags & NLM_F_DUMP_INTR != 0 {
            return Err(ParseError::Interrupted);
        }
        match msg.ty {
            NLMSG_DONE => {
                // Dumps put an int there; negative means the dump failed part way.
                match read_i32(msg.body, 0) {
                    Some(err) if err < 0 => return Err(ParseError::Kernel(err.saturating_abs())),
                    _ => return Ok(true),
                }
            }
            NLMSG_ERROR => {
                let err = read_i32(msg.body, 0).ok_or(ParseError::ShortBody { ty: NLMSG_ERROR })?;
                if err != 0 {
                    return Err(ParseError::Kernel(err.saturating_abs()));
                }
                // errno 0 is an acknowledgement: nothing to do.
            }
            NLMSG_OVERRUN => return Err(ParseError::Overrun),
            NLMSG_NOOP => {}
            ty if ty == want => {
                if let Some(item) = parse(msg.body)? {
                    out.push(item);
                }
            }
            ty => log::debug!("netlink: ignoring message type {ty}"),
        }
    }
    Ok(false)
}

/// Decodes an RTM_NEWLINK body; links without a valid index or name are skipped.
fn parse_link(body: &[u8]) -> Result<Option<Interface>, ParseError> {
    let short = ParseError::ShortBody { ty: RTM_NEWLINK };
    let (Some(index), Some(flags)) = (read_i32(body, 4), read_u32(body, 8)) else {
        return Err(short);
    };
    let tail = body.get(IFINFOMSG_LEN..).ok_or(short)?;
    let mut name = None;
    let mut mac = None;
    for attr in attrs(tail, RTM_NEWLINK) {
        match attr? {
            (IFLA_IFNAME, data) => name = Some(data),
            (IFLA_ADDRESS, data) => mac = <[u8; 6]>::try_from(data).ok(),
            _ => {}
        }
    }
    let Some(index) = u32::try_from(index).ok().filter(|&i| i > 0) else {
        log::warn!("netlink: skipping link with index {index}");
        return Ok(None);
    };
    let name = name.and_then(|n| n.split(|&b| b == 0).next()).unwrap_or_default();
    if name.is_empty() || name.len() > IFNAME_MAX {
        log::warn!("netlink: skipping link {index} with a name of {} bytes", name.len());
        return Ok(None);
    }
    Ok(Some(Interface {
        index,
        name: String::from_utf8_lossy(name).into_owned(),
        mac,
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_LOWER_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        addrs: Vec::new(),
    }))
}

/// Decodes an RTM_NEWADDR body into (interface index, address); non-IPv4 ones are skipped.
fn parse_addr(body: &[u8]) -> Result<Option<(u32, Ipv4Net)>, ParseError> {
    let short = ParseError::ShortBody { ty: RTM_NEWADDR };
    let (Some(&family), Some(&prefix), Some(index)) = (body.first(), body.get(1), read_u32(body, 4)) else {
        return Err(short);
    };
    let tail = body.get(IFADDRMSG_LEN..).ok_or(short)?;
    let mut local = None;
    let mut address = None;
    for attr in attrs(tail, RTM_NEWADDR) {
        let (ty, data) = attr?;
        let addr = <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from);
        match ty {
            IFA_LOCAL => local = addr.or(local),
            IFA_ADDRESS => address = addr.or(address),
            _ => {}
        }
    }
    if family != AF_INET || index == 0 {
        return Ok(None);
    }
    let Some(net) = local.or(address).and_then(|addr| Ipv4Net::new(addr, prefix)) else {
        log::warn!("netlink: skipping address on link {index} without a usable address or prefix {prefix}");
        return Ok(None);
    };
    Ok(Some((index, net)))
}

/// Decodes an RTM_GETLINK dump reply (one or more messages, up to NLMSG_DONE if present).
/// The interfaces have no addresses yet: see [`merge`].
pub fn parse_links(buf: &[u8]) -> Result<Vec<Interface>, ParseError> {
    let mut out = Vec::new();
    feed(buf, None, RTM_NEWLINK, parse_link, &mut out)?;
    Ok(out)
}

/// Decodes an RTM_GETADDR dump reply into (interface index, IPv4 address) pairs, in order.
pub fn parse_addrs(buf: &[u8]) -> Result<Vec<(u32, Ipv4Net)>, ParseError> {
    let mut out = Vec::new();
    feed(buf, None, RTM_NEWADDR, parse_addr, &mut out)?;
    Ok(out)
}

/// Sorts the links by index (dropping repeated indexes), and gives each its addresses.
/// Addresses of unknown links and repeated addresses are dropped.
pub fn merge(mut links: Vec<Interface>, addrs: &[(u32, Ipv4Net)]) -> Vec<Interface> {
    links.sort_by_key(|l| l.index);
    links.dedup_by_key(|l| l.index);
    for (index, net) in addrs {
        let Ok(i) = links.binary_search_by_key(index, |l| l.index) else {
            continue;
        };
        if let Some(link) = links.get_mut(i) {
            if !link.addrs.contains(net) {
                link.addrs.push(*net);
            }
        }
    }
    links
}

/// A request: nlmsghdr with `flags`, then `body` (ifinfomsg, ifaddrmsg or rtmsg, and attributes;
/// or a generic netlink header and attributes).
pub(super) fn request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN.saturating_add(body.len());
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(body);
    msg
}

fn next_seq() -> u32 {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    if seq == 0 {
        SEQ.fetch_add(1, Ordering::Relaxed)
    } else {
        seq
    }
}

/// A bound netlink socket of `protocol` (None: NETLINK_ROUTE, 0) and its port id.
fn open(protocol: Option<Protocol>) -> io::Result<(rustix::fd::OwnedFd, u32)> {
    let fd = socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, protocol)?;
    bind(&fd, &SocketAddrNetlink::new(0, 0))?;
    set_socket_timeout(&fd, Timeout::Recv, Some(RECV_TIMEOUT))?;
    let local = SocketAddrNetlink::try_from(getsockname(&fd)?)?;
    Ok((fd, local.pid()))
}

/// Whether a datagram came from the kernel (port id 0), not another process.
fn from_kernel(from: Option<rustix::net::SocketAddrAny>) -> bool {
    from.and_then(|a| SocketAddrNetlink::try_from(a).ok()).is_some_and(|a| a.pid() == 0)
}

/// Sends a dump request and reads the reply up to NLMSG_DONE. When `raw` is given, the datagrams
/// received from the kernel are appended to it as they came (for capturing test fixtures).
fn dump<Fd: AsFd, T>(
    fd: Fd,
    pid: u32,
    ty: u16,
    body: &[u8],
    want: u16,
    parse: BodyParser<T>,
    mut raw: Option<&mut Vec<u8>>,
) -> io::Result<Vec<T>> {
    let fd = fd.as_fd();
    let seq = next_seq();
    let req = request(ty, NLM_F_DUMP, seq, body);
    let sent = sendto(fd, &req, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
    if sent != req.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "netlink request sent partially"));
    }
    let filter = Some(Filter { seq, pid });
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let mut out = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        let (n, full, from) = recvfrom(fd, buf.as_mut_slice(), RecvFlags::TRUNC)?;
        if full > n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink datagram larger than the buffer"));
        }
        if !from_kernel(from) {
            log::debug!("netlink: skipping a datagram not from the kernel");
            continue;
        }
        let data = buf.get(..n).unwrap_or_default();
        if let Some(raw) = raw.as_deref_mut() {
            raw.extend_from_slice(data);
        }
        if feed(data, filter, want, parse, &mut out)? {
            return Ok(out);
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "netlink dump did not end"))
}

/// ifinfomsg for the link dump: all families, all links.
const LINK_REQUEST: [u8; IFINFOMSG_LEN] = [AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// ifaddrmsg for the address dump: IPv4 only.
const ADDR_REQUEST: [u8; IFADDRMSG_LEN] = [AF_INET, 0, 0, 0, 0, 0, 0, 0];

fn query() -> io::Result<Vec<Interface>> {
    let (fd, pid) = open(None)?;
    let links = dump(&fd, pid, RTM_GETLINK, &LINK_REQUEST, RTM_NEWLINK, parse_link, None)?;
    let addrs = dump(&fd, pid, RTM_GETADDR, &ADDR_REQUEST, RTM_NEWADDR, parse_addr, None)?;
    Ok(merge(links, &addrs))
}

/// Appends one attribute (header, data, padding to 4 bytes).
pub(super) fn attr(msg: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = u16::try_from(RTATTR_HDRLEN + data.len()).unwrap_or(u16::MAX);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(align4(msg.len()), 0);
}

/// Sends one change request and waits for its acknowledgement; the kernel's errno on refusal.
fn change(ty: u16, flags: u16, body: &[u8]) -> io::Result<()> {
    exchange(None, ty, flags, body).map(drop)
}

/// Sends one request (NLM_F_ACK added) on a fresh socket of `protocol` (None: NETLINK_ROUTE)
/// and waits for its acknowledgement: the messages of the request that came before it, as
/// (type, body); the kernel's errno on refusal.
pub(super) fn exchange(
    protocol: Option<Protocol>,
    ty: u16,
    flags: u16,
    body: &[u8],
) -> io::Result<Vec<(u16, Vec<u8>)>> {
    let (fd, pid) = open(protocol)?;
    let seq = next_seq();
    let req = request(ty, flags | NLM_F_ACK, seq, body);
    if sendto(&fd, &req, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))? != req.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "netlink request sent partially"));
    }
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let mut replies = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        let (n, full, from) = recvfrom(&fd, buf.as_mut_slice(), RecvFlags::TRUNC)?;
        if full > n {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink datagram larger than the buffer"));
        }
        if !from_kernel(from) {
            continue;
        }
        for msg in messages(buf.get(..n).unwrap_or_default()) {
            let msg = msg?;
            if msg.seq != seq || msg.pid != pid {
                continue;
            }
            if msg.ty != NLMSG_ERROR {
                replies.push((msg.ty, msg.body.to_vec()));
                continue;
            }
            return match read_i32(msg.body, 0) {
                Some(0) => Ok(replies),
                Some(err) => Err(io::Error::from_raw_os_error(err.saturating_abs())),
                None => Err(ParseError::ShortBody { ty: NLMSG_ERROR }.into()),
            };
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "netlink: no acknowledgement"))
}

/// Sets the link administratively up (IFF_UP), as `ip link set DEV up`.
pub fn set_up(index: u32) -> io::Result<()> {
    set_flag_up(index, true)
}

/// Sets the link administratively down, as `ip link set DEV down`.
pub fn set_down(index: u32) -> io::Result<()> {
    set_flag_up(index, false)
}

fn set_flag_up(index: u32, up: bool) -> io::Result<()> {
    let mut body = vec![AF_UNSPEC, 0, 0, 0];
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&(if up { IFF_UP } else { 0 }).to_ne_bytes()); // flags
    body.extend_from_slice(&IFF_UP.to_ne_bytes()); // change mask: only IFF_UP
    change(RTM_NEWLINK, 0, &body)
}

/// The RTM_NEWLINK body that renames link `index` to `name`: ifinfomsg changing no flag, then
/// IFLA_IFNAME, NUL-terminated as the kernel's policy wants it.
fn rename_body(index: u32, name: &str) -> Vec<u8> {
    let mut body = vec![AF_UNSPEC, 0, 0, 0];
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&[0; 8]); // flags, change mask: none
    let mut text = name.as_bytes().to_vec();
    text.push(0);
    attr(&mut body, IFLA_IFNAME, &text);
    body
}

/// Renames the link, as `ip link set DEV name NAME`. Kernels before 6.2 refuse while it is up
/// (EBUSY); then the kernel's `name_assign_type` becomes NET_NAME_RENAMED.
pub fn rename(index: u32, name: &str) -> io::Result<()> {
    change(RTM_NEWLINK, 0, &rename_body(index, name))
}

/// Adds an IPv4 address with its prefix and broadcast, as `ip addr add A/P brd + dev DEV`.
/// Fails with EEXIST when the interface has it already.
pub fn add_address(index: u32, net: Ipv4Net) -> io::Result<()> {
    let mut body = vec![AF_INET, net.prefix, 0, RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    attr(&mut body, IFA_LOCAL, &net.addr.octets());
    attr(&mut body, IFA_ADDRESS, &net.addr.octets());
    if net.prefix < 31 {
        attr(&mut body, IFA_BROADCAST, &net.broadcast().octets());
    }
    change(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &body)
}

/// Adds the default route through `gateway` on the interface, as `ip route add default via G
/// dev DEV proto boot [onlink]`; `onlink` when the gateway is outside the interface's prefix.
pub fn add_default_route(index: u32, gateway: Ipv4Addr, onlink: bool) -> io::Result<()> {
    // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    let mut body = vec![AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST];
    body.extend_from_slice(&(if onlink { RTNH_F_ONLINK } else { 0 }).to_ne_bytes());
    attr(&mut body, RTA_GATEWAY, &gateway.octets());
    attr(&mut body, RTA_OIF, &index.to_ne_bytes());
    change(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &body)
}

/// All network interfaces with their IPv4 addresses, sorted by index.
/// A dump the kernel flags as interrupted by a concurrent change is retried a few times.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut attempt = 1;
    loop {
        match query() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && attempt < ATTEMPTS => {
                log::debug!("netlink: {e}, retrying");
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
