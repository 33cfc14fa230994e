//! DHCPv4 messages (RFC 2131, options RFC 2132): what the client sends, and the defensive parser
//! of what servers reply.
//!
//! Wire format: the BOOTP header (RFC 951, 236 bytes: `op htype hlen hops`, `xid`, `secs`, `flags`,
//! `ciaddr yiaddr siaddr giaddr`, `chaddr[16]`, `sname[64]`, `file[128]`), the magic cookie
//! 99.130.83.99, then options: `code len value`, except pad (0) and end (255), which are one byte.
//!
//! Every reply is hostile input. [`decode`] never indexes unchecked, does work linear in the size of
//! the packet, and turns every option it interprets into a checked value or a line in
//! [`Lease::rejected`]: one printable line, quoted bytes escaped, so a value cannot forge a log line.

use std::fmt;
use std::net::Ipv4Addr;

use crate::model::hostname;
use crate::model::ipv4::Ipv4Net;
use crate::model::lease::Lease;
use crate::model::text::escape;

/// The UDP port servers (and relays) listen on.
pub const SERVER_PORT: u16 = 67;
/// The UDP port clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// Parameter request list (option 55) the client sends: subnet mask, router, DNS, log server,
/// host name, domain, root path, MTU, broadcast, NTP, lease time, server id, T1, T2, TFTP server,
/// boot file.
pub const PARAMETERS: &[u8] = &[1, 3, 6, 7, 12, 15, 17, 26, 28, 42, 51, 54, 58, 59, 66, 67];

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// Ethernet (ARP hardware type 1).
const HTYPE_ETHERNET: u8 = 1;
/// The one defined bit of the BOOTP `flags` field (RFC 1542): reply by broadcast.
const BROADCAST_FLAG: u16 = 0x8000;
/// The BOOTP header, `op` to `file`.
const HEADER_LEN: usize = 236;
/// RFC 1497's vendor magic cookie: DHCP options follow.
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The smallest BOOTP message (a 64-byte vendor area): some relays drop anything shorter.
const MIN_LEN: usize = 300;
/// What we tell servers we accept (option 57): an Ethernet MTU's worth.
const MAX_MESSAGE_SIZE: u16 = 1500;
/// The smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u16 = 68;
/// At most this many bytes of a refused value are quoted in its `rejected` line.
const QUOTE_MAX: usize = 64;

// Option codes (RFC 2132).
const PAD: u8 = 0;
const SUBNET_MASK: u8 = 1;
const ROUTER: u8 = 3;
const DNS: u8 = 6;
const LOG_SERVER: u8 = 7;
const HOST_NAME: u8 = 12;
const DOMAIN_NAME: u8 = 15;
const ROOT_PATH: u8 = 17;
const MTU: u8 = 26;
const BROADCAST: u8 = 28;
const NTP: u8 = 42;
const REQUESTED_ADDRESS: u8 = 50;
const LEASE_TIME: u8 = 51;
const OVERLOAD: u8 = 52;
const MESSAGE_TYPE: u8 = 53;
const SERVER_ID: u8 = 54;
const PARAMETER_LIST: u8 = 55;
const MESSAGE: u8 = 56;
const MAX_SIZE: u8 = 57;
const VENDOR_CLASS: u8 = 60;
const CLIENT_ID: u8 = 61;
const TFTP_SERVER: u8 = 66;
const BOOTFILE: u8 = 67;
const END: u8 = 255;

/// The DHCP message type (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    /// The type with this code, if it is one of RFC 2131's eight.
    pub fn from_code(code: u8) -> Option<Self> {
        use MessageType::*;
        [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform].into_iter().find(|t| *t as u8 == code)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageType::Discover => "discover",
            MessageType::Offer => "offer",
            MessageType::Request => "request",
            MessageType::Decline => "decline",
            MessageType::Ack => "ack",
            MessageType::Nak => "nak",
            MessageType::Release => "release",
            MessageType::Inform => "inform",
        })
    }
}

/// A message the client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub kind: MessageType,
    pub xid: u32,
    pub secs: u16,
    /// Ask for replies by broadcast (BOOTP flags bit 15): needed while we have no address.
    pub broadcast: bool,
    /// 0.0.0.0 except for INFORM (and renewals).
    pub ciaddr: Ipv4Addr,
    /// Sent as htype 1, hlen 6, chaddr = mac + 10 zero bytes.
    pub mac: [u8; 6],
    /// Option 50.
    pub requested: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61 exactly as given (the caller includes the type byte); omitted when empty.
    pub client_id: &'a [u8],
    /// Option 60; omitted when empty.
    pub vendor_class: &'a str,
}

/// Encodes `msg`: the BOOTP header (op 1), the magic cookie, then options 53, 61, 60, 57 (max
/// message size 1500), 55 ([`PARAMETERS`]), 50, 54 and end, padded with zeros to 300 bytes.
/// A client id or vendor class longer than 255 bytes is split into several options (RFC 3396).
pub fn encode(msg: &Outgoing<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MIN_LEN);
    out.extend_from_slice(&[BOOTREQUEST, HTYPE_ETHERNET, 6, 0]);
    out.extend_from_slice(&msg.xid.to_be_bytes());
    out.extend_from_slice(&msg.secs.to_be_bytes());
    out.extend_from_slice(&(if msg.broadcast { BROADCAST_FLAG } else { 0 }).to_be_bytes());
    out.extend_from_slice(&msg.ciaddr.octets());
    out.extend_from_slice(&[0; 12]); // yiaddr, siaddr, giaddr
    out.extend_from_slice(&msg.mac);
    out.resize(HEADER_LEN, 0); // the rest of chaddr, sname, file
    out.extend_from_slice(&MAGIC);
    push_option(&mut out, MESSAGE_TYPE, &[msg.kind as u8]);
    push_option(&mut out, CLIENT_ID, msg.client_id);
    push_option(&mut out, VENDOR_CLASS, msg.vendor_class.as_bytes());
    push_option(&mut out, MAX_SIZE, &MAX_MESSAGE_SIZE.to_be_bytes());
    push_option(&mut out, PARAMETER_LIST, PARAMETERS);
    if let Some(addr) = msg.requested {
        push_option(&mut out, REQUESTED_ADDRESS, &addr.octets());
    }
    if let Some(addr) = msg.server_id {
        push_option(&mut out, SERVER_ID, &addr.octets());
    }
    out.push(END);
    if out.len() < MIN_LEN {
        out.resize(MIN_LEN, PAD);
    }
    out
}

/// Appends option `code` with `value`, in pieces of at most 255 bytes; nothing when `value` is empty.
fn push_option(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    for piece in value.chunks(usize::from(u8::MAX)) {
        out.push(code);
        out.push(piece.len() as u8); // at most 255: the chunk size
        out.extend_from_slice(piece);
    }
}

/// A server's reply, parsed defensively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub xid: u32,
    /// BOOTP flags bit 15.
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    /// Option 53; `None` when absent or invalid.
    pub kind: Option<MessageType>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 56 (e.g. the reason of a NAK), escaped as [`escape`] does.
    pub message: Option<String>,
    /// Everything else: see [`decode`].
    pub lease: Lease,
}

/// Why bytes are not a DHCP reply at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the BOOTP header and the magic cookie; the length.
    TooShort(usize),
    /// The 4 bytes after the header are not DHCP's magic cookie.
    BadMagic([u8; 4]),
    /// `op` is not 2 (BOOTREPLY).
    NotReply(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort(len) => write!(
                f,
                "{len} bytes, too short for a BOOTP header and magic cookie ({} bytes)",
                HEADER_LEN + MAGIC.len()
            ),
            DecodeError::BadMagic([a, b, c, d]) => write!(f, "magic cookie {a}.{b}.{c}.{d}, not 99.130.83.99"),
            DecodeError::NotReply(op) => write!(f, "op {op}, not a reply (2)"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parses a server's reply (the UDP payload).
///
/// Options are read from the options field, then from `file` and `sname` when option 52 says
/// they carry options (RFC 2131 §4.1); the pieces of a repeated option are joined before they are
/// interpreted (RFC 3396). The lease gets `server` (option 54), `address` (yiaddr unless 0.0.0.0
/// or the network or broadcast address of its subnet, with the prefix of option 1 or, without a valid one, the class A/B/C default as klibc's
/// ipconfig guesses it), `routers` (3), `dns` (6), `hostname` (12) and `domain` (15) as RFC 1123
/// names, `root_path` (17), `mtu` (26), `broadcast` (28), `ntp` (42), `log_servers` (7), `lease_secs` (51),
/// `tftp_server` (66), `bootfile` (67, else the `file` field when it holds no options), and
/// `next_server` (siaddr unless 0.0.0.0); root path, TFTP server and boot file must be printable
/// ASCII without spaces. `options` lists the codes present; a value that is refused is left out
/// and named in `rejected`, as are a truncated option and a missing end option.
pub fn decode(bytes: &[u8]) -> Result<Reply, DecodeError> {
    let header = Header::parse(bytes).ok_or(DecodeError::TooShort(bytes.len()))?;
    if header.magic != MAGIC {
        return Err(DecodeError::BadMagic(header.magic));
    }
    if header.op != BOOTREPLY {
        return Err(DecodeError::NotReply(header.op));
    }
    let mut options = ReplyOptions::read(&header);
    let kind = options.take(MESSAGE_TYPE, message_type);
    let server_id = options.take(SERVER_ID, address);
    let message = options.take(MESSAGE, |v| Ok(escape(strip_nuls(v))));
    let prefix = options.take(SUBNET_MASK, prefix);
    let routers = unicast(ROUTER, options.take(ROUTER, addresses), &mut options.rejected);
    let dns = unicast(DNS, options.take(DNS, addresses), &mut options.rejected);
    let ntp = unicast(NTP, options.take(NTP, addresses), &mut options.rejected);
    let log_servers = unicast(LOG_SERVER, options.take(LOG_SERVER, addresses), &mut options.rejected);
    let mut lease = Lease {
        server: server_id,
        routers,
        dns,
        domain: options.take(DOMAIN_NAME, host_name),
        hostname: options.take(HOST_NAME, host_name),
        broadcast: options.take(BROADCAST, address),
        ntp,
        log_servers,
        root_path: options.take(ROOT_PATH, root_path),
        lease_secs: options.take(LEASE_TIME, seconds),
        tftp_server: options.take(TFTP_SERVER, token),
        bootfile: options.take(BOOTFILE, token),
        next_server: Some(header.siaddr).filter(|a| !a.is_unspecified()),
        mtu: options.take(MTU, mtu),
        ..Lease::default()
    };
    if options.get(BOOTFILE).is_none() && !options.file_has_options {
        lease.bootfile = file_field(header.file, &mut options.rejected);
    }
    lease.address = your_address(header.yiaddr, prefix, &mut options.rejected);
    lease.options = options.order;
    lease.rejected = options.rejected;
    Ok(Reply {
        op: header.op,
        htype: header.htype,
        hlen: header.hlen,
        xid: header.xid,
        broadcast: header.flags & BROADCAST_FLAG != 0,
        ciaddr: header.ciaddr,
        yiaddr: header.yiaddr,
        siaddr: header.siaddr,
        giaddr: header.giaddr,
        chaddr: header.chaddr,
        kind,
        server_id,
        message,
        lease,
    })
}

/// The fixed part of a message, and what follows it.
struct Header<'a> {
    op: u8,
    htype: u8,
    hlen: u8,
    xid: u32,
    flags: u16,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    siaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 16],
    sname: &'a [u8; 64],
    file: &'a [u8; 128],
    magic: [u8; 4],
    options: &'a [u8],
}

impl<'a> Header<'a> {
    /// `None` when `bytes` is shorter than the header and the magic cookie.
    fn parse(bytes: &'a [u8]) -> Option<Self> {
        let mut rest = bytes;
        let [op, htype, hlen, _hops] = *take(&mut rest)?;
        let xid = u32::from_be_bytes(*take(&mut rest)?);
        let _secs: &[u8; 2] = take(&mut rest)?;
        Some(Header {
            op,
            htype,
            hlen,
            xid,
            flags: u16::from_be_bytes(*take(&mut rest)?),
            ciaddr: Ipv4Addr::from(*take(&mut rest)?),
            yiaddr: Ipv4Addr::from(*take(&mut rest)?),
            siaddr: Ipv4Addr::from(*take(&mut rest)?),
            giaddr: Ipv4Addr::from(*take(&mut rest)?),
            chaddr: *take(&mut rest)?,
            sname: take(&mut rest)?,
            file: take(&mut rest)?,
            magic: *take(&mut rest)?,
            options: rest,
        })
    }
}

/// The first `N` bytes of `rest`, which then starts after them.
fn take<'a, const N: usize>(rest: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, tail) = rest.split_first_chunk::<N>()?;
    *rest = tail;
    Some(head)
}

/// Where options are read from, in RFC 2131's order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Area {
    Options,
    File,
    Sname,
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Area::Options => "options field",
            Area::File => "file field",
            Area::Sname => "sname field",
        })
    }
}

/// The options of a reply, each code's pieces joined, and what was wrong with them.
struct ReplyOptions {
    /// Indexed by code; `Some` for the codes present (a present option may be empty).
    values: Vec<Option<Vec<u8>>>,
    /// The codes present, in order of first appearance.
    order: Vec<u8>,
    /// Whether `file` carries options (option 52), so it is no boot file name.
    file_has_options: bool,
    rejected: Vec<String>,
}

impl ReplyOptions {
    /// Reads the options field, then `file` and `sname` as option 52 tells.
    fn read(header: &Header<'_>) -> Self {
        let mut options =
            ReplyOptions { values: vec![None; 256], order: Vec::new(), file_has_options: false, rejected: Vec::new() };
        options.scan(header.options, Area::Options);
        let overload = options.take(OVERLOAD, |v| match v {
            [n @ 1..=3] => Ok(*n),
            [n] => Err(format!("value {n}, expected 1 (file), 2 (sname) or 3 (both)")),
            _ => Err(wrong_length(v, "1")),
        });
        let overload = overload.unwrap_or(0);
        options.file_has_options = overload & 1 != 0;
        if options.file_has_options {
            options.scan(header.file, Area::File);
        }
        if overload & 2 != 0 {
            options.scan(header.sname, Area::Sname);
        }
        options
    }

    /// Adds the options of one area; stops at the end option, or at an option that runs past
    /// the area's end (dropped).
    fn scan(&mut self, area: &[u8], name: Area) {
        let mut rest = area;
        loop {
            let Some((&code, after_code)) = rest.split_first() else {
                self.rejected.push(format!("{name}: no end option (255)"));
                return;
            };
            match code {
                PAD => rest = after_code,
                END => return,
                _ => {
                    let Some((&len, after_len)) = after_code.split_first() else {
                        self.rejected.push(format!("{}: no length byte at the end of the {name}", label(code)));
                        return;
                    };
                    let Some((value, after)) = after_len.split_at_checked(usize::from(len)) else {
                        let left = after_len.len();
                        let why = format!("length {len} runs past the end of the {name} ({left} bytes left)");
                        self.rejected.push(format!("{}: {why}", label(code)));
                        return;
                    };
                    if code == OVERLOAD && name != Area::Options {
                        self.rejected.push(format!("{}: ignored in the {name}", label(code)));
                    } else {
                        self.add(code, value);
                    }
                    rest = after;
                }
            }
        }
    }

    fn add(&mut self, code: u8, value: &[u8]) {
        if let Some(slot) = self.values.get_mut(usize::from(code)) {
            match slot {
                Some(joined) => joined.extend_from_slice(value),
                None => {
                    *slot = Some(value.to_vec());
                    self.order.push(code);
                }
            }
        }
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        self.values.get(usize::from(code))?.as_deref()
    }

    /// Option `code` interpreted by `parse`; `None` when absent, or when refused (then noted).
    fn take<T>(&mut self, code: u8, parse: impl FnOnce(&[u8]) -> Result<T, String>) -> Option<T> {
        let parsed = parse(self.get(code)?);
        parsed.map_err(|why| self.rejected.push(format!("{}: {why}", label(code)))).ok()
    }
}

/// `option 12 (host name)`, or `option 200` for a code this parser does not interpret.
fn label(code: u8) -> String {
    let name = match code {
        SUBNET_MASK => "subnet mask",
        ROUTER => "router",
        DNS => "domain name server",
        LOG_SERVER => "log server",
        HOST_NAME => "host name",
        DOMAIN_NAME => "domain name",
        ROOT_PATH => "root path",
        MTU => "interface MTU",
        BROADCAST => "broadcast address",
        NTP => "NTP servers",
        LEASE_TIME => "lease time",
        OVERLOAD => "option overload",
        MESSAGE_TYPE => "message type",
        SERVER_ID => "server identifier",
        MESSAGE => "message",
        TFTP_SERVER => "TFTP server name",
        BOOTFILE => "bootfile name",
        _ => return format!("option {code}"),
    };
    format!("option {code} ({name})")
}

fn wrong_length(value: &[u8], expected: &str) -> String {
    format!("length {}, expected {expected}", value.len())
}

/// `bytes` escaped and quoted, cut after [`QUOTE_MAX`] bytes.
fn quote(bytes: &[u8]) -> String {
    match bytes.get(..QUOTE_MAX) {
        Some(head) if bytes.len() > QUOTE_MAX => format!("\"{}\"... ({} bytes)", escape(head), bytes.len()),
        _ => format!("\"{}\"", escape(bytes)),
    }
}

fn message_type(value: &[u8]) -> Result<MessageType, String> {
    match value {
        [code] => MessageType::from_code(*code).ok_or_else(|| format!("{code} is not a message type (1 to 8)")),
        _ => Err(wrong_length(value, "1")),
    }
}

fn address(value: &[u8]) -> Result<Ipv4Addr, String> {
    <[u8; 4]>::try_from(value).map(Ipv4Addr::from).map_err(|_| wrong_length(value, "4"))
}

fn seconds(value: &[u8]) -> Result<u32, String> {
    <[u8; 4]>::try_from(value).map(u32::from_be_bytes).map_err(|_| wrong_length(value, "4"))
}

fn addresses(value: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    if value.is_empty() || !value.len().is_multiple_of(4) {
        return Err(wrong_length(value, "a multiple of 4"));
    }
    Ok(value.chunks_exact(4).filter_map(|a| <[u8; 4]>::try_from(a).ok()).map(Ipv4Addr::from).collect())
}

/// The usable unicast addresses of an address list (routers, DNS, NTP and log servers); each other
/// one (0.0.0.0, broadcast, multicast, loopback, reserved) is named in `rejected`.
fn unicast(code: u8, list: Option<Vec<Ipv4Addr>>, rejected: &mut Vec<String>) -> Vec<Ipv4Addr> {
    let (usable, unusable): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) =
        list.unwrap_or_default().into_iter().partition(|a| crate::model::ipv4::usable_unicast(*a));
    for a in unusable {
        rejected.push(format!("{}: {a} is no unicast address a host can have", label(code)));
    }
    usable
}

/// The prefix length of a subnet mask. A mask whose ones are not contiguous is refused, and so is
/// 0.0.0.0, which klibc's ipconfig takes as "no mask" (it then guesses one, as we do).
fn prefix(value: &[u8]) -> Result<u8, String> {
    crate::model::ipv4::prefix_of_mask(address(value)?)
}

fn mtu(value: &[u8]) -> Result<u16, String> {
    let mtu = <[u8; 2]>::try_from(value).map(u16::from_be_bytes).map_err(|_| wrong_length(value, "2"))?;
    if mtu < MIN_MTU {
        return Err(format!("{mtu}, less than {MIN_MTU}"));
    }
    Ok(mtu)
}

/// `value` without trailing NULs (some servers send C strings).
fn strip_nuls(value: &[u8]) -> &[u8] {
    let end = value.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    value.get(..end).unwrap_or_default()
}

/// A string option: trailing NULs stripped, then printable ASCII (spaces allowed) only.
fn text(value: &[u8]) -> Result<String, String> {
    let text = strip_nuls(value);
    if text.is_empty() {
        return Err("empty".into());
    }
    if let Some((at, &byte)) = text.iter().enumerate().find(|(_, b)| !matches!(b, b' '..=b'~')) {
        let what = match byte {
            0 => "NUL",
            1..=0x1f | 0x7f => "control byte",
            _ => "non-ASCII byte",
        };
        return Err(format!("{what} 0x{byte:02x} at offset {at} of {}", quote(text)));
    }
    Ok(text.iter().map(|&b| char::from(b)).collect())
}

/// Options 12 and 15: an RFC 1123 name (one trailing dot removed).
pub fn host_name(value: &[u8]) -> Result<String, String> {
    let name = text(value)?;
    hostname::validate(&name).map_err(|why| format!("{}: {why}", quote(name.as_bytes())))
}

/// Options 66 and 67, and the `file` field: printable ASCII without spaces.
fn token(value: &[u8]) -> Result<String, String> {
    let token = text(value)?;
    match token.find(' ') {
        Some(at) => Err(format!("space at offset {at} of {}", quote(token.as_bytes()))),
        None => Ok(token),
    }
}

/// Option 17: a [`token`] with no `..` component; an NFS root path is `[server:]path[,options]`,
/// so `:` and `,` separate components too.
pub fn root_path(value: &[u8]) -> Result<String, String> {
    let path = token(value)?;
    if path.split(['/', ':', ',']).any(|component| component == "..") {
        return Err(format!("\"..\" as a path component in {}", quote(path.as_bytes())));
    }
    Ok(path)
}

/// The `file` field as a boot file name: a C string (nothing when empty).
fn file_field(file: &[u8; 128], rejected: &mut Vec<String>) -> Option<String> {
    let name = file.split(|&b| b == 0).next().unwrap_or_default();
    if name.is_empty() {
        return None;
    }
    token(name).map_err(|why| rejected.push(format!("BOOTP file field (boot file name): {why}"))).ok()
}

/// yiaddr with its prefix: option 1's, else the classful default (A /8, B /16, C /24) as klibc's
/// ipconfig guesses it. `None` for 0.0.0.0, and for a class D or E address without a mask (noted).
fn your_address(yiaddr: Ipv4Addr, prefix: Option<u8>, rejected: &mut Vec<String>) -> Option<Ipv4Net> {
    if yiaddr.is_unspecified() {
        return None;
    }
    let prefix = prefix.or(crate::model::ipv4::classful_prefix(yiaddr));
    if prefix.is_none() {
        rejected.push(format!("yiaddr {yiaddr}: no subnet mask, and no address class to guess one from"));
    }
    let net = Ipv4Net::new(yiaddr, prefix?)?;
    // A /31 has no network or broadcast address (RFC 3021); a /32 is one host.
    if net.prefix < 31 && (yiaddr == net.network() || yiaddr == net.broadcast()) {
        let which = if yiaddr == net.network() { "network" } else { "broadcast" };
        rejected.push(format!("yiaddr {yiaddr}: the {which} address of {}/{}", net.network(), net.prefix));
        return None;
    }
    Some(net)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
