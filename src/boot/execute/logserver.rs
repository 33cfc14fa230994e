//! The boot's log and report on a syslog server ([`crate::log::remote`]): `stateless.log=`, else
//! the first log server (option 7) of our DHCP client's lease.

use std::net::SocketAddrV4;

use crate::boot::execute::Executor;
use crate::boot::report::Report;
use crate::config::SYSLOG_PORT;
use crate::log::remote;
use crate::model::options::LogServer;

impl Executor<'_> {
    /// The server the log goes to, as far as known now.
    fn log_server(&self) -> Option<SocketAddrV4> {
        match self.options.log {
            LogServer::Off => None,
            LogServer::At(server) => Some(server),
            LogServer::FromDhcp => {
                let lease = &self.facts.dhcp.as_ref()?.lease;
                lease.log_servers.first().map(|addr| SocketAddrV4::new(*addr, SYSLOG_PORT))
            }
        }
    }

    /// Starts sending the log once the server is known and the network is up: after the
    /// hardware phase (on-root mode: the kernel brought the network up, and the address is known
    /// by then), and again after the network phase (`network_done`: with no server by then,
    /// there is none, and the lines kept for it are let go) and the switch into the image.
    /// `stateless.log=off` stops it at any of these.
    pub fn start_log_server(&self, network_done: bool) {
        if self.options.log == LogServer::Off {
            remote::off();
            return;
        }
        if remote::sending() || (self.facts.initramfs && !network_done) {
            return;
        }
        self.tell_log_server_who();
        match self.log_server() {
            Some(server) => match remote::start(server) {
                Ok(()) => log::info!("log: every line and the report also go to {server} (syslog over UDP)"),
                Err(e) => log::warn!("log server {server}: no UDP socket ({e}); the log stays local"),
            },
            None if network_done => remote::stop(),
            None => {}
        }
    }

    /// The name the server files the messages under: the host name once chosen, the address
    /// before.
    pub fn tell_log_server_who(&self) {
        let name = self.facts.hostname.as_ref().map(|h| h.fqdn());
        if let Some(who) = name.or_else(|| self.facts.address.map(|a| a.addr.to_string())) {
            remote::set_host(&who);
        }
    }

    /// Sends the report as it is now, when the log goes to a server.
    pub fn send_report(&self) {
        if !remote::sending() {
            return;
        }
        match serde_json::to_string(&Report::of(self)) {
            Ok(json) => match remote::send_report(&json) {
                (sent, parts) if sent < parts => log::warn!("log server: {sent} of the report's {parts} parts sent"),
                _ => {}
            },
            Err(e) => log::warn!("log server: the report did not serialize: {e}"),
        }
    }
}
