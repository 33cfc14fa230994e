//! The client side of the NBD handshake (NetworkBlockDevice/nbd `doc/proto.md`), up to the
//! transmission phase, which the kernel's nbd driver then speaks on the same socket ([`genl`]
//! hands it over).
//!
//! Only the fixed-newstyle handshake with `NBD_OPT_GO` is spoken (nbd-server in Debian 12 and 13
//! has it; so do qemu-nbd and nbdkit); no TLS, no structured replies, no extended headers: the
//! kernel driver speaks only simple replies. All integers are big-endian:
//! 1. server: `NBDMAGIC`, `IHAVEOPT` (an oldstyle server sends `0x00420281861253` there: refused),
//!    u16 handshake flags (bit 0 FIXED_NEWSTYLE, required; bit 1 NO_ZEROES);
//! 2. client: u32 flags (FIXED_NEWSTYLE, and NO_ZEROES when offered), then the option
//!    `IHAVEOPT`, u32 `NBD_OPT_GO` (7), u32 length, u32 name length, the export name (at most
//!    4096 bytes, no NUL; empty is the server's default export), u16 count, the info types
//!    asked for: NBD_INFO_EXPORT (0) and NBD_INFO_BLOCK_SIZE (3);
//! 3. server: replies, each u64 magic `0x0003e889045565a9`, u32 option (7), u32 type, u32 length,
//!    data: NBD_REP_INFO (3: u16 info type, then NBD_INFO_EXPORT's u64 size and u16
//!    transmission flags, NBD_INFO_BLOCK_SIZE's u32 minimum, preferred and maximum; other types
//!    skipped), until NBD_REP_ACK (1, length 0): the transmission phase starts right after it.
//!    A type with bit 31 set is an error (NBD_REP_ERR_*), its data a message.
//!
//! The server is untrusted: a reply longer than [`MAX_REPLY`] bytes is refused before anything
//! is read or allocated for it, more than [`MAX_REPLIES`] replies are refused, and an end of the
//! stream anywhere is an error, never a wait. The parsing is [`Negotiation`], a state machine
//! over the server's bytes that says how many it wants next and what to send; [`handshake`]
//! drives it over any `Read + Write` (a `TcpStream`: give it a read timeout), [`parse_server`]
//! over bytes already received (the fuzz target `nbd_handshake`).

pub mod genl;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::model::nbdroot::MAX_EXPORT_NAME;
use crate::model::text::quoted;

/// "NBDMAGIC", the first 8 bytes every server sends.
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": a newstyle server's second 8 bytes, and the prefix of every client option.
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// What an oldstyle server sends in place of IHAVEOPT (`cliserv.h`).
const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
/// The magic of every option reply.
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// Handshake flags (server) and client flags: the same two bits.
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
/// Reply types with this bit are errors.
const REP_ERR: u32 = 1 << 31;
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags (`NBD_FLAG_*`) of [`Export::flags`]: the server sends the flags field.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
/// The export is read-only: the kernel makes the device read-only.
pub const FLAG_READ_ONLY: u16 = 1 << 1;
/// Several connections to the export are safe (the kernel needs it for more than one socket).
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

/// The longest option reply read: NBD_INFO_* replies are a few bytes, an error's message short.
pub const MAX_REPLY: u32 = 64 * 1024;
/// The most replies to one NBD_OPT_GO before its NBD_REP_ACK.
pub const MAX_REPLIES: usize = 64;
/// The kernel's largest block size (its page size on x86-64).
const KERNEL_MAX_BLOCK: u32 = 4096;

/// The export the server agreed to serve: what the kernel's NBD_CMD_CONNECT needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Export {
    /// Bytes.
    pub size: u64,
    /// Transmission flags (`FLAG_*`).
    pub flags: u16,
    /// The server's NBD_INFO_BLOCK_SIZE, when it sent one.
    pub block_sizes: Option<BlockSizes>,
}

/// NBD_INFO_BLOCK_SIZE: the server's block size constraints, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSizes {
    pub minimum: u32,
    pub preferred: u32,
    pub maximum: u32,
}

impl Export {
    pub fn read_only(&self) -> bool {
        self.flags & FLAG_READ_ONLY != 0
    }

    /// The block size for the kernel (NBD_ATTR_BLOCK_SIZE_BYTES): the server's preferred size
    /// (at least its minimum), made a power of two from 512 to 4096 (the kernel's bounds);
    /// 4096 when the server gave none.
    pub fn block_size(&self) -> u32 {
        let wanted = self.block_sizes.map_or(KERNEL_MAX_BLOCK, |s| s.preferred.max(s.minimum));
        wanted.clamp(512, KERNEL_MAX_BLOCK).next_power_of_two()
    }
}

/// Why the handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NbdError {
    /// Reading or writing the socket failed (a timeout too).
    Io(io::ErrorKind, String),
    /// The server closed the connection (or the bytes ended) before the handshake was done.
    Closed,
    /// The server speaks the oldstyle handshake.
    OldStyle,
    /// The server does not offer the fixed-newstyle handshake: its handshake flags.
    NotFixedNewstyle(u16),
    /// The export name is longer than [`MAX_EXPORT_NAME`] bytes, or has a NUL.
    BadName(usize),
    /// A reply announces more than [`MAX_REPLY`] bytes of data.
    ReplyTooLong(u32),
    /// More than [`MAX_REPLIES`] replies without an NBD_REP_ACK.
    TooManyReplies,
    /// NBD_REP_ACK came without an NBD_INFO_EXPORT before it.
    NoExportInfo,
    /// The server refused the export: its NBD_REP_ERR_* code without bit 31, the export name
    /// (quoted for messages), the server's message (quoted; empty when it sent none).
    Refused { code: u32, export: String, message: String },
    /// The server's bytes break the protocol: what was wrong.
    Malformed(String),
}

impl fmt::Display for NbdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(_, e) => write!(f, "nbd handshake: {e}"),
            Self::Closed => f.write_str("nbd handshake: the server closed the connection before it was done"),
            Self::OldStyle => f.write_str(
                "nbd handshake: the server speaks the oldstyle protocol; only fixed newstyle with NBD_OPT_GO is spoken",
            ),
            Self::NotFixedNewstyle(flags) => write!(
                f,
                "nbd handshake: the server does not offer fixed newstyle (handshake flags {flags:#06x}); only fixed newstyle is spoken"
            ),
            Self::BadName(len) => write!(
                f,
                "nbd export name of {len} bytes: at most {MAX_EXPORT_NAME} bytes, without NUL"
            ),
            Self::ReplyTooLong(len) => {
                write!(f, "nbd handshake: a reply of {len} bytes (at most {MAX_REPLY} are read)")
            }
            Self::TooManyReplies => write!(f, "nbd handshake: more than {MAX_REPLIES} replies to NBD_OPT_GO"),
            Self::NoExportInfo => f.write_str("nbd handshake: the server acknowledged without the export's size"),
            Self::Refused { code, export, message } => {
                let why = match code {
                    1 => "the server does not know NBD_OPT_GO (an old server: nbd-server in Debian 12 and 13 has it)",
                    2 => "the server's policy refuses it (NBD_REP_ERR_POLICY)",
                    3 => "the server calls the request invalid (NBD_REP_ERR_INVALID)",
                    4 => "the server does not support it on its platform (NBD_REP_ERR_PLATFORM)",
                    5 => "the server requires TLS, which is not spoken (NBD_REP_ERR_TLS_REQD)",
                    6 => "the server has no such export (NBD_REP_ERR_UNKNOWN)",
                    7 => "the server is shutting down (NBD_REP_ERR_SHUTDOWN)",
                    8 => "the server requires block size negotiation (NBD_REP_ERR_BLOCK_SIZE_REQD)",
                    9 => "the server calls the request too big (NBD_REP_ERR_TOO_BIG)",
                    10 => "the server requires extended headers, which the kernel does not speak (NBD_REP_ERR_EXT_HEADER_REQD)",
                    _ => "the server refuses it",
                };
                write!(f, "nbd export {export}: {why}, error {code}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            Self::Malformed(what) => write!(f, "nbd handshake: {what}"),
        }
    }
}

impl std::error::Error for NbdError {}

impl From<io::Error> for NbdError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Self::Closed
        } else {
            Self::Io(e.kind(), e.to_string())
        }
    }
}

/// What to do after [`Negotiation::feed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send these bytes to the server, then read on.
    Send(Vec<u8>),
    /// Read on.
    Read,
    /// The handshake is done: the transmission phase starts with the next byte.
    Done(Export),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// NBDMAGIC, IHAVEOPT, the handshake flags: 18 bytes.
    Greeting,
    /// A reply's magic, option, type and length: 20 bytes.
    ReplyHeader,
    /// A reply's data.
    ReplyData {
        ty: u32,
        len: u32,
    },
    Done,
}

/// The client's side of the handshake as a state machine over the server's bytes: feed it
/// exactly [`Negotiation::wants`] bytes at a time.
#[derive(Clone, Debug)]
pub struct Negotiation {
    /// The export name asked for.
    name: String,
    state: State,
    /// NBD_INFO_EXPORT's size and flags, once received.
    export: Option<(u64, u16)>,
    block_sizes: Option<BlockSizes>,
    replies: usize,
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

impl Negotiation {
    /// A handshake asking for the export `name` (empty: the server's default export).
    pub fn new(name: &str) -> Result<Self, NbdError> {
        if name.len() > MAX_EXPORT_NAME || name.contains('\0') {
            return Err(NbdError::BadName(name.len()));
        }
        Ok(Self { name: name.to_string(), state: State::Greeting, export: None, block_sizes: None, replies: 0 })
    }

    /// How many bytes [`Negotiation::feed`] takes next (at most [`MAX_REPLY`]); 0 once done.
    pub fn wants(&self) -> usize {
        match self.state {
            State::Greeting => 18,
            State::ReplyHeader => 20,
            State::ReplyData { len, .. } => usize::try_from(len).unwrap_or(usize::MAX),
            State::Done => 0,
        }
    }

    /// Takes the next [`Negotiation::wants`] bytes from the server (fewer: [`NbdError::Closed`]).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Next, NbdError> {
        let bytes = bytes.get(..self.wants()).ok_or(NbdError::Closed)?;
        match self.state {
            State::Greeting => self.greeting(bytes),
            State::ReplyHeader => self.reply_header(bytes),
            State::ReplyData { ty, .. } => self.reply_data(ty, bytes),
            State::Done => Err(NbdError::Malformed("bytes after the handshake was done".into())),
        }
    }

    fn greeting(&mut self, b: &[u8]) -> Result<Next, NbdError> {
        let (Some(magic), Some(second), Some(flags)) = (be_u64(b, 0), be_u64(b, 8), be_u16(b, 16)) else {
            return Err(NbdError::Closed);
        };
        if magic != NBDMAGIC {
            return Err(NbdError::Malformed(format!("not an nbd server (magic {magic:#018x})")));
        }
        if second == OLDSTYLE_MAGIC {
            return Err(NbdError::OldStyle);
        }
        if second != IHAVEOPT {
            return Err(NbdError::Malformed(format!("unknown handshake magic {second:#018x}")));
        }
        if flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(NbdError::NotFixedNewstyle(flags));
        }
        let client_flags = FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES);
        let mut out = u32::from(client_flags).to_be_bytes().to_vec();
        out.extend(go_option(&self.name));
        self.state = State::ReplyHeader;
        Ok(Next::Send(out))
    }

    fn reply_header(&mut self, b: &[u8]) -> Result<Next, NbdError> {
        let (Some(magic), Some(option), Some(ty), Some(len)) =
            (be_u64(b, 0), be_u32(b, 8), be_u32(b, 12), be_u32(b, 16))
        else {
            return Err(NbdError::Closed);
        };
        if magic != REPLY_MAGIC {
            return Err(NbdError::Malformed(format!("bad option reply magic {magic:#018x}")));
        }
        if option != OPT_GO {
            return Err(NbdError::Malformed(format!("a reply to option {option}, not NBD_OPT_GO")));
        }
        if len > MAX_REPLY {
            return Err(NbdError::ReplyTooLong(len));
        }
        self.replies = self.replies.saturating_add(1);
        if self.replies > MAX_REPLIES {
            return Err(NbdError::TooManyReplies);
        }
        self.state = State::ReplyData { ty, len };
        Ok(Next::Read)
    }

    fn reply_data(&mut self, ty: u32, data: &[u8]) -> Result<Next, NbdError> {
        self.state = State::ReplyHeader;
        match ty {
            REP_ACK if data.is_empty() => {
                let (size, flags) = self.export.ok_or(NbdError::NoExportInfo)?;
                self.state = State::Done;
                Ok(Next::Done(Export { size, flags, block_sizes: self.block_sizes }))
            }
            REP_ACK => Err(NbdError::Malformed(format!("NBD_REP_ACK with {} bytes of data", data.len()))),
            REP_INFO => self.info(data).map(|()| Next::Read),
            ty if ty & REP_ERR != 0 => Err(NbdError::Refused {
                code: ty & !REP_ERR,
                export: quoted(&self.name),
                message: if data.is_empty() { String::new() } else { quoted(data) },
            }),
            ty => Err(NbdError::Malformed(format!("unexpected reply type {ty} to NBD_OPT_GO"))),
        }
    }

    fn info(&mut self, data: &[u8]) -> Result<(), NbdError> {
        let info = be_u16(data, 0).ok_or_else(|| NbdError::Malformed("NBD_REP_INFO without a type".into()))?;
        let bad =
            |want: usize| NbdError::Malformed(format!("NBD_REP_INFO type {info} of {} bytes, not {want}", data.len()));
        match info {
            INFO_EXPORT => {
                let (Some(size), Some(flags), 12) = (be_u64(data, 2), be_u16(data, 10), data.len()) else {
                    return Err(bad(12));
                };
                self.export = Some((size, flags));
            }
            INFO_BLOCK_SIZE => {
                let (Some(minimum), Some(preferred), Some(maximum), 14) =
                    (be_u32(data, 2), be_u32(data, 6), be_u32(data, 10), data.len())
                else {
                    return Err(bad(14));
                };
                if minimum > KERNEL_MAX_BLOCK {
                    return Err(NbdError::Malformed(format!(
                        "the server's minimum block size {minimum} is above the kernel's {KERNEL_MAX_BLOCK}"
                    )));
                }
                self.block_sizes = Some(BlockSizes { minimum, preferred, maximum });
            }
            other => log::debug!("nbd: skipping NBD_REP_INFO type {other} ({} bytes)", data.len()),
        }
        Ok(())
    }
}

/// The NBD_OPT_GO option for export `name`, asking for NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE.
fn go_option(name: &str) -> Vec<u8> {
    let infos = [INFO_EXPORT, INFO_BLOCK_SIZE];
    // `name` is at most MAX_EXPORT_NAME bytes (Negotiation::new), so these fit.
    let name_len = u32::try_from(name.len()).unwrap_or(u32::MAX);
    let len = name_len.saturating_add(4 + 2 + 2 * 2);
    let mut out = IHAVEOPT.to_be_bytes().to_vec();
    out.extend_from_slice(&OPT_GO.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&name_len.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&2u16.to_be_bytes());
    for info in infos {
        out.extend_from_slice(&info.to_be_bytes());
    }
    out
}

/// Runs the handshake over `bytes`, the server's side of a connection as received: the export
/// and how many bytes the handshake took (the transmission phase starts there). What the client
/// would send is dropped. Bytes that end early: [`NbdError::Closed`].
pub fn parse_server(bytes: &[u8], name: &str) -> Result<(Export, usize), NbdError> {
    let mut negotiation = Negotiation::new(name)?;
    let mut at = 0usize;
    loop {
        let end = at.checked_add(negotiation.wants()).ok_or(NbdError::Closed)?;
        let chunk = bytes.get(at..end).ok_or(NbdError::Closed)?;
        at = end;
        if let Next::Done(export) = negotiation.feed(chunk)? {
            return Ok((export, at));
        }
    }
}

/// Runs the handshake for export `name` on `stream` (a connected socket: give it a read timeout,
/// so a silent server is an error): the export, and the stream at the start of the transmission
/// phase.
pub fn handshake<S: Read + Write>(stream: &mut S, name: &str) -> Result<Export, NbdError> {
    let mut negotiation = Negotiation::new(name)?;
    loop {
        // At most MAX_REPLY bytes: the header's length is checked before this.
        let mut buf = vec![0; negotiation.wants()];
        stream.read_exact(&mut buf)?;
        match negotiation.feed(&buf)? {
            Next::Send(out) => {
                stream.write_all(&out)?;
                stream.flush()?;
            }
            Next::Read => {}
            Next::Done(export) => return Ok(export),
        }
    }
}

/// A connection to the NBD server `server` at the transmission phase of `export`, as the
/// kernel wants it, all within `bound` (the connect and the whole handshake: a server that
/// trickles its bytes is given up on at the bound; no timeouts after, the kernel has its own):
/// TCP_NODELAY, keepalive after 10 s idle, every 5 s, 3 probes (a server gone without a FIN is
/// found out in about 25 s). The socket, and what the handshake said of the export (the caller
/// judges it).
pub fn connect(server: SocketAddrV4, export: &str, bound: Duration) -> io::Result<(OwnedFd, Export)> {
    use rustix::net::sockopt;
    let until = Instant::now() + bound.max(Duration::from_millis(1));
    let stream = TcpStream::connect_timeout(&server.into(), Deadline::left(until)?)?;
    stream.set_nodelay(true)?;
    sockopt::set_socket_keepalive(&stream, true)?;
    sockopt::set_tcp_keepidle(&stream, Duration::from_secs(10))?;
    sockopt::set_tcp_keepintvl(&stream, Duration::from_secs(5))?;
    sockopt::set_tcp_keepcnt(&stream, 3)?;
    let export =
        handshake(&mut Deadline { stream: &stream, until }, export).map_err(|e| io::Error::other(e.to_string()))?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok((stream.into(), export))
}

/// A stream whose every read and write gets what is left of one deadline.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    /// What is left before `until`; TimedOut when nothing is.
    fn left(until: Instant) -> io::Result<Duration> {
        let left = until.saturating_duration_since(Instant::now());
        match left.is_zero() {
            true => Err(io::Error::new(io::ErrorKind::TimedOut, "the nbd handshake took too long")),
            false => Ok(left),
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(Self::left(self.until)?))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(Self::left(self.until)?))?;
        let mut stream = self.stream;
        stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut stream = self.stream;
        stream.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
