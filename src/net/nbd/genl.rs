//! The kernel's nbd driver, configured over its generic netlink family "nbd" (linux
//! `include/uapi/linux/nbd-netlink.h` and `drivers/block/nbd.c`; the values are the same in 6.1
//! and 6.12), after [`super::handshake`] left a socket at the transmission phase.
//!
//! A generic netlink message is an nlmsghdr (16 bytes, its type the family's id) and a genlmsghdr
//! (4 bytes: u8 command, u8 version 1, u16 0), then attributes, all in native byte order. The
//! family's id and its multicast group "nbd_mc_group" are dynamic: asked of the controller
//! (`GENL_ID_CTRL`, CTRL_CMD_GETFAMILY). The builders here give a message's body (genlmsghdr
//! and attributes) and the parsers take one; `net::netlink` frames them and talks to the kernel.
//! Needs CAP_SYS_ADMIN and the nbd module loaded (without it the controller answers ENOENT).
//! - NBD_CMD_CONNECT: the export's size, block size, transmission flags, the request timeout and
//!   how long I/O waits for a reconnect (both seconds; a dead connection fails I/O at once with
//!   0, the kernel's default), no client flags (no DESTROY_ON_DISCONNECT: the device stays for a
//!   reconnect), the backend identifier (the export name; a reconfigure must name it again), and
//!   the sockets, descriptors of the sending process (the kernel takes its own reference: close
//!   ours after). The reply names the device's index: /dev/nbd<index>. The kernel keeps the
//!   device after the sender exits; no process waits in an ioctl.
//! - NBD_CMD_RECONFIGURE: a new socket for a device whose socket the kernel marked dead.
//! - NBD_CMD_LINK_DEAD: multicast on "nbd_mc_group" when a socket dies (joining the group needs
//!   `setsockopt(NETLINK_ADD_MEMBERSHIP)`, not here).
//! - NBD_CMD_STATUS: each device's index and whether it is configured ("connected" is the
//!   kernel's word: it holds a configuration, whether or not its sockets are alive).
//!
//! Nothing here runs on this project's test machine: unit tests check the bytes against the
//! header's layout; no test loads the nbd module.

use std::io;

use rustix::net::netlink::GENERIC;

use crate::model::nbdroot::MAX_EXPORT_NAME;
use crate::net::netlink::{attr, attrs, exchange, messages, read_u16, read_u32, Attrs, ParseError};

/// The controller's fixed family id, and its commands and attributes (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
/// genlmsghdr: command, version, reserved u16.
const GENL_HDRLEN: usize = 4;
/// A nested attribute's type carries this bit (the nbd driver parses either way).
const NLA_F_NESTED: u16 = 1 << 15;

const FAMILY_NAME: &[u8] = b"nbd\0";
const GROUP_NAME: &[u8] = b"nbd_mc_group\0";
const NBD_GENL_VERSION: u8 = 1;

// Commands (enum in nbd-netlink.h).
const NBD_CMD_CONNECT: u8 = 1;
const NBD_CMD_RECONFIGURE: u8 = 3;
const NBD_CMD_LINK_DEAD: u8 = 4;
const NBD_CMD_STATUS: u8 = 5;

// Attributes.
const NBD_ATTR_INDEX: u16 = 1;
const NBD_ATTR_SIZE_BYTES: u16 = 2;
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
const NBD_ATTR_TIMEOUT: u16 = 4;
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
const NBD_ATTR_CLIENT_FLAGS: u16 = 6;
const NBD_ATTR_SOCKETS: u16 = 7;
const NBD_ATTR_DEAD_CONN_TIMEOUT: u16 = 8;
const NBD_ATTR_DEVICE_LIST: u16 = 9;
const NBD_ATTR_BACKEND_IDENTIFIER: u16 = 10;
/// In NBD_ATTR_SOCKETS: items, each holding an fd.
const NBD_SOCK_ITEM: u16 = 1;
const NBD_SOCK_FD: u16 = 1;
/// In NBD_ATTR_DEVICE_LIST: items, each an index and a connected byte.
const NBD_DEVICE_ITEM: u16 = 1;
const NBD_DEVICE_INDEX: u16 = 1;
const NBD_DEVICE_CONNECTED: u16 = 2;

/// The nbd family as the running kernel numbered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NbdFamily {
    pub id: u16,
    /// The id of "nbd_mc_group", where NBD_CMD_LINK_DEAD is sent.
    pub group: Option<u32>,
}

/// What NBD_CMD_CONNECT configures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdConnect {
    /// The device to use; None: the kernel's first free one (or a new one).
    pub index: Option<u32>,
    pub size: u64,
    /// A power of two, 512 to 4096 ([`super::Export::block_size`]).
    pub block_size: u64,
    /// The handshake's transmission flags.
    pub server_flags: u64,
    /// Seconds before a request counts as lost and its socket dead.
    pub timeout: u64,
    /// Seconds I/O waits for a reconfigure after the socket died, before it fails.
    pub dead_conn_timeout: u64,
    /// The export name, which NBD_CMD_RECONFIGURE must give again.
    pub backend: String,
    /// The connected socket, a descriptor of the sending process.
    pub fd: u32,
}

/// One device of an NBD_CMD_STATUS reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NbdDevice {
    pub index: u32,
    /// The kernel holds a configuration for it.
    pub connected: bool,
}

/// genlmsghdr for `cmd`.
fn genl_header(cmd: u8, version: u8) -> Vec<u8> {
    vec![cmd, version, 0, 0]
}

/// The attribute with the socket `fd`: NBD_ATTR_SOCKETS { NBD_SOCK_ITEM { NBD_SOCK_FD } }.
fn sockets(msg: &mut Vec<u8>, fd: u32) {
    let mut item = Vec::new();
    attr(&mut item, NBD_SOCK_FD, &fd.to_ne_bytes());
    let mut list = Vec::new();
    attr(&mut list, NBD_SOCK_ITEM | NLA_F_NESTED, &item);
    attr(msg, NBD_ATTR_SOCKETS | NLA_F_NESTED, &list);
}

/// A string attribute: the bytes and a NUL.
fn string(msg: &mut Vec<u8>, ty: u16, text: &str) {
    let mut data = text.as_bytes().to_vec();
    data.push(0);
    attr(msg, ty, &data);
}

/// CTRL_CMD_GETFAMILY for "nbd" (send to [`GENL_ID_CTRL`]).
pub fn family_request() -> Vec<u8> {
    let mut body = genl_header(CTRL_CMD_GETFAMILY, 1);
    attr(&mut body, CTRL_ATTR_FAMILY_NAME, FAMILY_NAME);
    body
}

/// NBD_CMD_CONNECT (send to the family's id).
pub fn connect_request(c: &NbdConnect) -> Vec<u8> {
    let mut body = genl_header(NBD_CMD_CONNECT, NBD_GENL_VERSION);
    if let Some(index) = c.index {
        attr(&mut body, NBD_ATTR_INDEX, &index.to_ne_bytes());
    }
    attr(&mut body, NBD_ATTR_SIZE_BYTES, &c.size.to_ne_bytes());
    attr(&mut body, NBD_ATTR_BLOCK_SIZE_BYTES, &c.block_size.to_ne_bytes());
    attr(&mut body, NBD_ATTR_SERVER_FLAGS, &c.server_flags.to_ne_bytes());
    attr(&mut body, NBD_ATTR_TIMEOUT, &c.timeout.to_ne_bytes());
    attr(&mut body, NBD_ATTR_DEAD_CONN_TIMEOUT, &c.dead_conn_timeout.to_ne_bytes());
    attr(&mut body, NBD_ATTR_CLIENT_FLAGS, &0u64.to_ne_bytes());
    string(&mut body, NBD_ATTR_BACKEND_IDENTIFIER, &c.backend);
    sockets(&mut body, c.fd);
    body
}

/// NBD_CMD_RECONFIGURE: device `index` gets the socket `fd` in place of its dead one.
pub fn reconfigure_request(index: u32, backend: &str, fd: u32) -> Vec<u8> {
    let mut body = genl_header(NBD_CMD_RECONFIGURE, NBD_GENL_VERSION);
    attr(&mut body, NBD_ATTR_INDEX, &index.to_ne_bytes());
    string(&mut body, NBD_ATTR_BACKEND_IDENTIFIER, backend);
    sockets(&mut body, fd);
    body
}

/// NBD_CMD_STATUS of device `index`, or of all.
pub fn status_request(index: Option<u32>) -> Vec<u8> {
    let mut body = genl_header(NBD_CMD_STATUS, NBD_GENL_VERSION);
    if let Some(index) = index {
        attr(&mut body, NBD_ATTR_INDEX, &index.to_ne_bytes());
    }
    body
}

/// The command and attributes of a generic netlink body; `ty` is the message type, for errors.
fn split(body: &[u8], ty: u16) -> Result<(u8, Attrs<'_>), ParseError> {
    let (Some(&cmd), Some(tail)) = (body.first(), body.get(GENL_HDRLEN..)) else {
        return Err(ParseError::ShortBody { ty });
    };
    Ok((cmd, attrs(tail, ty)))
}

/// The family's id and group from the controller's reply body.
pub fn parse_family(body: &[u8]) -> Result<NbdFamily, ParseError> {
    let (_, list) = split(body, GENL_ID_CTRL)?;
    let mut id = None;
    let mut group = None;
    for a in list {
        match a? {
            (CTRL_ATTR_FAMILY_ID, data) => id = read_u16(data, 0),
            (CTRL_ATTR_MCAST_GROUPS, data) => {
                for entry in attrs(data, GENL_ID_CTRL) {
                    let (_, entry) = entry?;
                    let (mut name, mut grp_id) = (None, None);
                    for field in attrs(entry, GENL_ID_CTRL) {
                        match field? {
                            (CTRL_ATTR_MCAST_GRP_NAME, n) => name = Some(n),
                            (CTRL_ATTR_MCAST_GRP_ID, g) => grp_id = read_u32(g, 0),
                            _ => {}
                        }
                    }
                    if name == Some(GROUP_NAME) {
                        group = grp_id.or(group);
                    }
                }
            }
            _ => {}
        }
    }
    let id = id.ok_or(ParseError::BadAttribute { ty: GENL_ID_CTRL })?;
    Ok(NbdFamily { id, group })
}

/// The device index in the reply to NBD_CMD_CONNECT (message type `family`).
pub fn parse_connect_reply(body: &[u8], family: u16) -> Result<u32, ParseError> {
    let (_, list) = split(body, family)?;
    for a in list {
        if let (NBD_ATTR_INDEX, data) = a? {
            return read_u32(data, 0).ok_or(ParseError::BadAttribute { ty: family });
        }
    }
    Err(ParseError::BadAttribute { ty: family })
}

/// The devices in the reply to NBD_CMD_STATUS (message type `family`).
pub fn parse_status(body: &[u8], family: u16) -> Result<Vec<NbdDevice>, ParseError> {
    let bad = ParseError::BadAttribute { ty: family };
    let (_, list) = split(body, family)?;
    let mut devices = Vec::new();
    for a in list {
        let (NBD_ATTR_DEVICE_LIST, data) = a? else { continue };
        for item in attrs(data, family) {
            let (NBD_DEVICE_ITEM, item) = item? else { continue };
            let (mut index, mut connected) = (None, None);
            for field in attrs(item, family) {
                match field? {
                    (NBD_DEVICE_INDEX, d) => index = read_u32(d, 0),
                    (NBD_DEVICE_CONNECTED, d) => connected = d.first().map(|&c| c != 0),
                    _ => {}
                }
            }
            let (Some(index), Some(connected)) = (index, connected) else { return Err(bad) };
            devices.push(NbdDevice { index, connected });
        }
    }
    Ok(devices)
}

/// The devices whose socket died, from a datagram received on "nbd_mc_group": the index of each
/// NBD_CMD_LINK_DEAD message of `family`; other messages are skipped.
pub fn parse_link_dead(datagram: &[u8], family: u16) -> Result<Vec<u32>, ParseError> {
    let mut dead = Vec::new();
    for msg in messages(datagram) {
        let msg = msg?;
        if msg.ty != family {
            continue;
        }
        let (cmd, list) = split(msg.body, family)?;
        if cmd != NBD_CMD_LINK_DEAD {
            continue;
        }
        for a in list {
            if let (NBD_ATTR_INDEX, data) = a? {
                dead.push(read_u32(data, 0).ok_or(ParseError::BadAttribute { ty: family })?);
            }
        }
    }
    Ok(dead)
}

/// Sends `body` to the family `ty` and returns the bodies of its replies of that type.
fn ask(ty: u16, body: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let replies = exchange(Some(GENERIC), ty, 0, body)?;
    Ok(replies.into_iter().filter(|(t, _)| *t == ty).map(|(_, body)| body).collect())
}

/// The first reply parsed, or an error naming the command.
fn first<T>(replies: Vec<Vec<u8>>, what: &str, parse: impl Fn(&[u8]) -> Result<T, ParseError>) -> io::Result<T> {
    let body = replies.into_iter().next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("the kernel acknowledged {what} without a reply"))
    })?;
    Ok(parse(&body)?)
}

/// The running kernel's nbd family. ENOENT: the nbd module is not loaded.
pub fn resolve() -> io::Result<NbdFamily> {
    let replies = ask(GENL_ID_CTRL, &family_request()).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => io::Error::new(e.kind(), "the kernel has no nbd netlink family (is nbd.ko loaded?)"),
        _ => e,
    })?;
    first(replies, "CTRL_CMD_GETFAMILY", parse_family)
}

/// A backend identifier as long as an export name at most (an attribute's length is a u16).
fn check_backend(backend: &str) -> io::Result<()> {
    if backend.len() > MAX_EXPORT_NAME {
        let what = format!("nbd backend identifier of {} bytes (at most {MAX_EXPORT_NAME})", backend.len());
        return Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    }
    Ok(())
}

/// Configures a device with NBD_CMD_CONNECT: its index. `c.fd` stays ours: close it after.
pub fn connect(family: u16, c: &NbdConnect) -> io::Result<u32> {
    check_backend(&c.backend)?;
    first(ask(family, &connect_request(c))?, "NBD_CMD_CONNECT", |b| parse_connect_reply(b, family))
}

/// Gives device `index` the socket `fd` in place of its dead one (NBD_CMD_RECONFIGURE).
pub fn reconfigure(family: u16, index: u32, backend: &str, fd: u32) -> io::Result<()> {
    check_backend(backend)?;
    ask(family, &reconfigure_request(index, backend, fd)).map(drop)
}

/// The devices' state (NBD_CMD_STATUS), of device `index` or of all.
pub fn status(family: u16, index: Option<u32>) -> io::Result<Vec<NbdDevice>> {
    first(ask(family, &status_request(index))?, "NBD_CMD_STATUS", |b| parse_status(b, family))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
