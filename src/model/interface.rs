//! A network interface as the kernel reports it.

use serde::{Serialize, Serializer};

use super::ipv4::Ipv4Net;

/// A network interface and its IPv4 addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// The hardware address when it is 6 bytes long (Ethernet-like links, loopback's is all zeros).
    #[serde(serialize_with = "serialize_mac")]
    pub mac: Option<[u8; 6]>,
    /// IFF_UP: administratively up.
    pub up: bool,
    /// IFF_LOWER_UP: the link has carrier.
    pub carrier: bool,
    /// IFF_LOOPBACK.
    pub loopback: bool,
    /// IPv4 addresses in the kernel's order (the primary address of a subnet comes first).
    pub addrs: Vec<Ipv4Net>,
}

/// `aa:bb:cc:dd:ee:ff`, lowercase.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn serialize_mac<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(mac) => s.serialize_str(&format_mac(mac)),
        None => s.serialize_none(),
    }
}
