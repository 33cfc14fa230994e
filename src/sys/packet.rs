//! DHCP's way to the servers before the interface has an address: a packet socket
//! (`AF_PACKET`, `SOCK_DGRAM`, `ETH_P_IP`) bound to the interface. What it sends is an IPv4/UDP
//! packet built by [`wire`] to the link's broadcast address; what it receives is every IPv4
//! packet on the link, of which only whole, checksummed UDP datagrams from port 67 to 68 are
//! passed on.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::sockopt::{set_socket_reuseaddr, set_socket_timeout, Timeout};
use rustix::net::{bind, recv, sendto, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::blocked::{self, Wait};
use super::unsafe_ops::LinkAddr;
use crate::net::dhcp::client::Transport;
use crate::net::dhcp::codec::{CLIENT_PORT, SERVER_PORT};
use crate::net::dhcp::wire;

const ETH_P_IP: u16 = 0x0800;
/// The largest IPv4 packet.
const BUF_LEN: usize = 65_536;

pub struct PacketTransport {
    socket: OwnedFd,
    index: i32,
    source: Ipv4Addr,
    started: Instant,
    buf: Vec<u8>,
    /// A UDP socket on the client port, never read: with it the kernel does not answer a
    /// server's unicast reply to our address with ICMP port unreachable.
    _port: Option<OwnedFd>,
}

impl PacketTransport {
    /// Opens the socket on interface `index`; `source` is the address the packets are sent from
    /// (0.0.0.0 without one).
    pub fn open(index: u32, source: Ipv4Addr) -> io::Result<Self> {
        let index = i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let protocol = rustix::net::eth::IP;
        let socket = socket_with(AddressFamily::PACKET, SocketType::DGRAM, SocketFlags::CLOEXEC, Some(protocol))?;
        bind(&socket, &LinkAddr::new(index, ETH_P_IP, [0; 6]))?;
        let port = if source.is_unspecified() { None } else { udp_port().ok() };
        Ok(Self { socket, index, source, started: Instant::now(), buf: vec![0; BUF_LEN], _port: port })
    }
}

fn udp_port() -> io::Result<OwnedFd> {
    let socket = socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    set_socket_reuseaddr(&socket, true)?;
    bind(&socket, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT))?;
    Ok(socket)
}

impl Transport for PacketTransport {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let packet = wire::encode(self.source, Ipv4Addr::BROADCAST, CLIENT_PORT, SERVER_PORT, message)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "DHCP message too large"))?;
        sendto(&self.socket, &packet, SendFlags::empty(), &LinkAddr::new(self.index, ETH_P_IP, [0xff; 6]))?;
        Ok(())
    }

    fn recv(&mut self, deadline: Duration) -> io::Result<Option<Vec<u8>>> {
        loop {
            let left = deadline.saturating_sub(self.now());
            if left.is_zero() {
                return Ok(None);
            }
            // A zero timeout would mean "forever".
            set_socket_timeout(&self.socket, Timeout::Recv, Some(left.max(Duration::from_millis(1))))?;
            let received =
                blocked::during(Wait::Network, || recv(&self.socket, self.buf.as_mut_slice(), RecvFlags::empty()));
            match received {
                Ok((n, _)) => {
                    let datagram = self.buf.get(..n).and_then(wire::decode);
                    if let Some(d) = datagram.filter(|d| d.src_port == SERVER_PORT && d.dst_port == CLIENT_PORT) {
                        return Ok(Some(d.payload.to_vec()));
                    }
                }
                Err(Errno::AGAIN | Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
