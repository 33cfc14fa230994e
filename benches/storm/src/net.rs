//! A client's TCP connections, made in its own network namespace: a socket belongs to the
//! namespace it was created in, so a short-lived thread enters the namespace (setns) only to
//! create it; binding a privileged port and connecting happen on the runtime as usual.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use tokio::net::{TcpSocket, TcpStream};

use crate::client::Connector;
use crate::trace::Program;

pub struct Netns {
    /// /run/netns/NAME; None: this process's namespace.
    pub netns: Option<PathBuf>,
    pub server: Ipv4Addr,
    pub mount_port: u16,
    pub nfs_port: u16,
}

impl Connector for Netns {
    type Stream = TcpStream;

    async fn connect(&self, program: Program) -> io::Result<TcpStream> {
        let fd = match &self.netns {
            None => socket()?,
            Some(path) => std::thread::scope(|s| s.spawn(|| socket_in(path)).join())
                .map_err(|_| io::Error::other("the socket thread died"))??,
        };
        bind_privileged(&fd)?;
        let port = match program {
            Program::Mount => self.mount_port,
            Program::Nfs => self.nfs_port,
        };
        let stream = TcpSocket::from_std_stream(std::net::TcpStream::from(fd))
            .connect(SocketAddr::from((self.server, port)))
            .await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn socket_in(netns: &PathBuf) -> io::Result<OwnedFd> {
    let file = File::open(netns).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", netns.display())))?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| io::Error::other(format!("setns {}: {e}", netns.display())))?;
    socket()
}

fn socket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?)
}

/// The first free port below 1024, from the top, as the kernel's RPC client takes a privileged
/// one. A port of an earlier run still in TIME_WAIT is busy, so the next one is taken.
fn bind_privileged(fd: &OwnedFd) -> io::Result<()> {
    for port in (512..1024).rev() {
        match rustix::net::bind(fd, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)) {
            Ok(()) => return Ok(()),
            Err(Errno::ADDRINUSE) => continue,
            Err(e) => return Err(io::Error::other(format!("bind to port {port}: {e}"))),
        }
    }
    Err(io::Error::other("no free port from 512 to 1023"))
}
