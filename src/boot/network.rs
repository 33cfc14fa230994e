//! The network phase's probe: what it finds out: the boot interface and its address, the kernel's hostname
//! and the DHCP domain. Read from the kernel at boot ([`probe`]); `plan`/`apply` are given them.

use crate::model::facts::Facts;
use crate::model::interface::Interface;
use crate::model::options::Options;
use crate::net::pnp;
use crate::sys::Sys;

/// Reads the network facts from the running kernel (the network phase of a boot): the boot
/// interface and its address, the kernel's hostname, the domain its DHCP client recorded.
pub fn probe(sys: &dyn Sys, options: &Options, facts: &mut Facts) {
    facts.kernel_hostname = Some(sys.uname().nodename);
    match sys.interfaces() {
        Ok(interfaces) => {
            if let Some(interface) = boot_interface(&interfaces, options) {
                facts.interface = Some(interface.name.clone());
                facts.address = interface.addrs.first().copied();
            } else {
                facts.notes.push("no network interface with an IPv4 address".into());
            }
        }
        Err(e) => facts.notes.push(format!("netlink: {e}")),
    }
    match sys.proc_file("net/pnp") {
        Ok(bytes) => facts.domain = pnp::parse(&String::from_utf8_lossy(&bytes)).domain,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => facts.notes.push(format!("/proc/net/pnp: {e}")),
    }
}

/// The interface to take the address from: the one whose MAC is `BOOTIF=`, else the `ip=` device,
/// else the first interface that is up, not loopback and has an IPv4 address. Names follow driver
/// load order, not PCI order, so the MAC is the reliable key.
pub fn boot_interface<'a>(interfaces: &'a [Interface], options: &Options) -> Option<&'a Interface> {
    let usable = |i: &&Interface| !i.loopback && !i.addrs.is_empty();
    let by_mac = options.bootif.and_then(|mac| interfaces.iter().filter(usable).find(|i| i.mac == Some(mac)));
    let device = options.ip.as_ref().and_then(|ip| ip.device.as_deref());
    let by_name = device.and_then(|name| interfaces.iter().filter(usable).find(|i| i.name == name));
    by_mac.or(by_name).or_else(|| interfaces.iter().filter(usable).find(|i| i.up))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::options::IpParam;

    fn iface(index: u32, name: &str, mac: u8, addr: Option<&str>, up: bool) -> Interface {
        Interface {
            index,
            name: name.into(),
            mac: Some([0x52, 0x54, 0, 0, 0, mac]),
            up,
            loopback: name == "lo",
            addrs: addr.map(|a| a.parse().unwrap()).into_iter().collect(),
        }
    }

    #[test]
    fn bootif_then_ip_device_then_first_up() {
        let all = [
            iface(1, "lo", 0, Some("127.0.0.1/8"), true),
            iface(2, "eth0", 8, Some("10.0.3.15/24"), true),
            iface(3, "eth1", 7, Some("10.0.2.15/24"), true),
            iface(4, "eth2", 9, None, true),
        ];
        let mut options = Options::default();
        assert_eq!(boot_interface(&all, &options).unwrap().name, "eth0");
        options.ip = Some(IpParam { device: Some("eth1".into()), ..IpParam::default() });
        assert_eq!(boot_interface(&all, &options).unwrap().name, "eth1");
        options.bootif = Some([0x52, 0x54, 0, 0, 0, 8]);
        assert_eq!(boot_interface(&all, &options).unwrap().name, "eth0");
        options.bootif = Some([0x52, 0x54, 0, 0, 0, 9]);
        assert_eq!(boot_interface(&all, &options).unwrap().name, "eth1", "a MAC without an address is not usable");
    }

    #[test]
    fn no_usable_interface() {
        let all = [iface(1, "lo", 0, Some("127.0.0.1/8"), true), iface(2, "eth0", 8, Some("10.0.3.15/24"), false)];
        assert!(boot_interface(&all, &Options::default()).is_none());
    }
}
