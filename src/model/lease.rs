//! What a DHCPv4 exchange gave this client: the lease as the boot uses it and the report shows it.
//! Every string in it has been checked by the codec (see `net::dhcp::codec`): a value that failed
//! is absent here and named in `rejected`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::ipv4::Ipv4Net;

/// How the lease was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exchange {
    /// DISCOVER → OFFER → REQUEST → ACK: the interface had no address.
    Discover,
    /// INFORM → ACK: the interface already had its address (kept untouched); options only.
    Inform,
}

/// A lease (or, for [`Exchange::Inform`], the configuration the server gave for our address).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The server that answered (option 54).
    pub server: Option<Ipv4Addr>,
    /// Our address and prefix (yiaddr with option 1; for INFORM, the address we already had).
    pub address: Option<Ipv4Net>,
    /// Option 3, in the server's order.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 15, validated as a host name.
    pub domain: Option<String>,
    /// Option 12, validated (RFC 1123); a name with `/`, `..`, spaces, control bytes is rejected.
    pub hostname: Option<String>,
    /// Option 28.
    pub broadcast: Option<Ipv4Addr>,
    /// Option 42.
    pub ntp: Vec<Ipv4Addr>,
    /// Option 7: syslog servers, where the boot log goes unless `stateless.log=` says otherwise.
    #[serde(default)]
    pub log_servers: Vec<Ipv4Addr>,
    /// Option 17: printable ASCII only.
    pub root_path: Option<String>,
    /// Option 51 in seconds (`u32::MAX` is infinite).
    pub lease_secs: Option<u32>,
    /// Option 66 (TFTP server name), printable ASCII.
    pub tftp_server: Option<String>,
    /// Option 67, else the BOOTP `file` field; printable ASCII.
    pub bootfile: Option<String>,
    /// The BOOTP `siaddr` field (next server), when not 0.0.0.0.
    pub next_server: Option<Ipv4Addr>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Codes of every option the final reply carried, in order of first appearance.
    pub options: Vec<u8>,
    /// Options that were present but refused, and why (one line each, printable).
    pub rejected: Vec<String>,
}

/// One run of the DHCP client, as the boot report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dhcp {
    /// The interface the lease came on.
    pub interface: String,
    /// Every interface the client asked on: without a named one, all that had carrier (the
    /// first lease kept); absent in reports before it.
    #[serde(default)]
    pub asked: Vec<String>,
    pub exchange: Exchange,
    pub lease: Lease,
    /// Messages sent: the first of each kind and every retransmission.
    pub sent: u32,
    /// Replies for this client that were not the awaited answer or did not parse.
    pub ignored: u32,
    pub naks: u32,
    /// From the start of the client (random start delay included) to the lease.
    pub ms: u64,
}

impl Dhcp {
    /// What an exchange on `interface` would record when its lease is given, not asked for
    /// (`stateless plan`'s DHCP facts, the tests' boots): nothing sent, no time taken.
    pub fn given(interface: &str, exchange: Exchange, lease: Lease) -> Dhcp {
        let asked = if interface.is_empty() { Vec::new() } else { vec![interface.to_string()] };
        Dhcp { interface: interface.into(), asked, exchange, lease, sent: 0, ignored: 0, naks: 0, ms: 0 }
    }
}
