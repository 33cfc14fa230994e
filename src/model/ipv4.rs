//! IPv4 addresses with a prefix, as configured on an interface.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;

/// An IPv4 address with its prefix length, as configured on an interface (`10.0.2.15/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    /// Returns `None` when the prefix is longer than 32 bits.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Self { addr, prefix })
    }

    fn mask(self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0)
    }

    /// The network address (`10.0.2.0` for `10.0.2.15/24`).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The netmask (`255.255.255.0` for `/24`).
    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The broadcast address (`10.0.2.255` for `10.0.2.15/24`), the key of the old `networks/` layers.
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The last octet of the address, used by the `Node<octet>` fallback hostname.
    pub fn last_octet(self) -> u8 {
        let [_, _, _, last] = self.addr.octets();
        last
    }
}

/// An address a server may give a client, as its own or as a router or server to use:
/// unicast, not 0.0.0.0/8, loopback, multicast, broadcast or reserved.
pub fn usable_unicast(addr: Ipv4Addr) -> bool {
    let [first, ..] = addr.octets();
    first != 0 && !addr.is_loopback() && !addr.is_multicast() && !addr.is_broadcast() && first < 240
}

/// The prefix length of a subnet mask: its ones must be contiguous, and 0.0.0.0 is no mask
/// (klibc's ipconfig takes it as "none given").
pub fn prefix_of_mask(mask: Ipv4Addr) -> Result<u8, String> {
    let ones = u32::from(mask).leading_ones();
    if u32::from(mask).checked_shl(ones).unwrap_or(0) != 0 {
        return Err(format!("{mask} is not a contiguous mask"));
    }
    if ones == 0 {
        return Err(format!("{mask} is no mask"));
    }
    u8::try_from(ones).map_err(|_| format!("{mask}: prefix out of range"))
}

/// The classful default prefix (A /8, B /16, C /24) used when no mask is given, as the kernel's
/// and klibc's ipconfig guess it; `None` for class D and E.
pub fn classful_prefix(addr: Ipv4Addr) -> Option<u8> {
    match addr.octets() {
        [0..=127, ..] => Some(8),
        [128..=191, ..] => Some(16),
        [192..=223, ..] => Some(24),
        _ => None,
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    /// Parses `ADDR/PREFIX`; a bare address gets /32.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("not an IPv4 address: {addr:?}"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("not a prefix length: {prefix:?}"))?;
        Self::new(addr, prefix).ok_or_else(|| format!("prefix length over 32: {prefix}"))
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_and_broadcast() {
        let n: Ipv4Net = "192.168.7.12/24".parse().unwrap();
        assert_eq!(n.network(), Ipv4Addr::new(192, 168, 7, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(192, 168, 7, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(n.last_octet(), 12);
        let n: Ipv4Net = "10.1.2.3/0".parse().unwrap();
        assert_eq!(n.network(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(n.netmask(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(n.broadcast(), Ipv4Addr::BROADCAST);
        let n: Ipv4Net = "10.1.2.3".parse().unwrap();
        assert_eq!(n.broadcast(), n.addr);
        assert!("10.1.2.3/33".parse::<Ipv4Net>().is_err());
        assert!("10.1.2/8".parse::<Ipv4Net>().is_err());
    }
}
