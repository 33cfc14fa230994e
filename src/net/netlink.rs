//! Interfaces and their IPv4 addresses, straight from the kernel over rtnetlink.
//!
//! [`interfaces`] opens a `NETLINK_ROUTE` socket, dumps the links (`RTM_GETLINK`) and then the
//! IPv4 addresses (`RTM_GETADDR`), and joins them by interface index. The decoding is done by pure
//! functions over byte buffers ([`parse_links`], [`parse_addrs`], [`merge`]) so it can be tested
//! with hand-made and captured dumps. The bytes are treated as untrusted: every length is checked,
//! nothing is indexed unchecked, and every loop consumes at least 4 bytes per round.
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

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(i32::from_ne_bytes(bytes.try_into().ok()?))
}

/// One netlink message.
#[derive(Debug)]
struct Message<'a> {
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    body: &'a [u8],
}

/// The messages in a buffer. After an error it yields nothing more.
struct Messages<'a> {
    rest: &'a [u8],
    offset: usize,
}

fn messages(buf: &[u8]) -> Messages<'_> {
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
struct Attrs<'a> {
    rest: &'a [u8],
    msg_ty: u16,
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
    let attrs = body.get(IFINFOMSG_LEN..).ok_or(short)?;
    let mut name = None;
    let mut mac = None;
    for attr in (Attrs { rest: attrs, msg_ty: RTM_NEWLINK }) {
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
    let attrs = body.get(IFADDRMSG_LEN..).ok_or(short)?;
    let mut local = None;
    let mut address = None;
    for attr in (Attrs { rest: attrs, msg_ty: RTM_NEWADDR }) {
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

/// A request: nlmsghdr with `flags`, then `body` (ifinfomsg, ifaddrmsg or rtmsg, and attributes).
fn request(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
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

/// A bound NETLINK_ROUTE socket and its port id.
fn open() -> io::Result<(rustix::fd::OwnedFd, u32)> {
    // protocol None is NETLINK_ROUTE (0).
    let fd = socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None)?;
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
    let (fd, pid) = open()?;
    let links = dump(&fd, pid, RTM_GETLINK, &LINK_REQUEST, RTM_NEWLINK, parse_link, None)?;
    let addrs = dump(&fd, pid, RTM_GETADDR, &ADDR_REQUEST, RTM_NEWADDR, parse_addr, None)?;
    Ok(merge(links, &addrs))
}

/// Appends one attribute (header, data, padding to 4 bytes).
fn attr(msg: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = u16::try_from(RTATTR_HDRLEN + data.len()).unwrap_or(u16::MAX);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(align4(msg.len()), 0);
}

/// Sends one change request and waits for its acknowledgement; the kernel's errno on refusal.
fn change(ty: u16, flags: u16, body: &[u8]) -> io::Result<()> {
    let (fd, pid) = open()?;
    let seq = next_seq();
    let req = request(ty, flags | NLM_F_ACK, seq, body);
    if sendto(&fd, &req, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))? != req.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "netlink request sent partially"));
    }
    let mut buf = vec![0u8; RECV_BUF_LEN];
    for _ in 0..MAX_DATAGRAMS {
        let (n, _, from) = recvfrom(&fd, buf.as_mut_slice(), RecvFlags::empty())?;
        if !from_kernel(from) {
            continue;
        }
        for msg in messages(buf.get(..n).unwrap_or_default()) {
            let msg = msg?;
            if msg.seq != seq || msg.pid != pid || msg.ty != NLMSG_ERROR {
                continue;
            }
            return match read_i32(msg.body, 0) {
                Some(0) => Ok(()),
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
mod tests {
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
            vec![
                (1, net("127.0.0.1/8")),
                (2, net("192.0.2.10/24")),
                (2, net("192.0.2.11/32")),
                (2, net("192.0.2.12/24")),
            ]
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
        assert_eq!(
            parse_addrs(&nlmsg(RTM_NEWADDR, 0, 7, 99, &body)),
            Err(ParseError::BadAttribute { ty: RTM_NEWADDR })
        );
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
        let (fd, pid) = open().unwrap();
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
}
