//! The network phase's probe: what it finds out: the boot interface and its address, the kernel's hostname
//! and the DHCP domain. Read from the kernel at boot ([`probe`]); `plan`/`apply` are given them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::ifname::{self, Decision};
use crate::config::Cmdline;
use crate::fs::root::ImageRoot;

use crate::model::facts::Facts;
use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::model::lease::Lease;
use crate::model::options::{ClientId, Options};
use crate::model::text::escape;
use crate::net::dhcp::client::{self, Acquired, Failure, Request, Rng};
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
                facts.mac = interface.mac;
                facts.address = interface.addrs.first().copied();
            } else {
                facts.notes.push("no network interface with an IPv4 address".into());
            }
        }
        Err(e) => facts.notes.push(format!("netlink: {e}")),
    }
    match sys.proc_file("net/pnp") {
        Ok(bytes) => {
            let pnp = pnp::parse(&String::from_utf8_lossy(&bytes));
            let dhcp =
                pnp.proto.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("dhcp") || p.eq_ignore_ascii_case("bootp"));
            facts.kernel_dhcp_server = pnp.bootserver.filter(|_| dhcp);
            (facts.domain, facts.nameservers) = (pnp.domain, pnp.nameservers);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => facts.notes.push(format!("/proc/net/pnp: {e}")),
    }
}

/// The boot interface's address now, if it has one (no notes: the network phase probes again).
pub fn address(sys: &dyn Sys, options: &Options) -> Option<Ipv4Net> {
    let interfaces = sys.interfaces().ok()?;
    boot_interface(&interfaces, options)?.addrs.first().copied()
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

/// Gives the boot interface `name` the name the image's udev would give it ([`ifname`]), so that
/// udev leaves it as it is and what is keyed by the name stays true; returns the name it has
/// after. Kept when udev would keep it, when that cannot be told, and when the kernel refuses
/// (before 6.2 it renames no interface that is up: nor can udev then).
pub fn settle_name(sys: &dyn Sys, sysfs: &Path, image: &ImageRoot, cmdline: &Cmdline, name: &str) -> String {
    let kept = |why: &str| {
        log::info!("{}: name kept: {}", escape(name.as_bytes()), escape(why.as_bytes()));
        name.to_string()
    };
    let interfaces = match sys.interfaces() {
        Ok(all) => all,
        Err(e) => return kept(&format!("netlink: {e}")),
    };
    let Some(interface) = interfaces.iter().find(|i| i.name == name) else { return kept("no such interface now") };
    if let Some(rules) = ifname::named_by_rules(image) {
        return kept(&format!("{rules}: the image's own udev rules decide the names, not read here"));
    }
    let device = ifname::Device::read(sysfs, name, interface.mac);
    let (new, why) = match ifname::decide(&device, &ifname::links(image), ifname::Naming::from_cmdline(cmdline)) {
        Decision::Keep(why) => return kept(&why),
        Decision::Rename { name, why } => (name, why),
    };
    match sys.rename_link(interface.index, &new) {
        Ok(()) => {
            log::info!(
                "{} renamed {new}, the name the image's udev gives it ({})",
                escape(name.as_bytes()),
                escape(why.as_bytes())
            );
            new
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
            kept(&format!("the kernel renames no interface that is up (before 6.2), nor will udev ({new} by {why})"))
        }
        Err(e) => {
            log::warn!("rename {} to {new}: {e}: the name kept; udev may rename it later", escape(name.as_bytes()));
            name.to_string()
        }
    }
}

/// How often carrier is looked for.
const CARRIER_POLL: Duration = Duration::from_millis(50);

/// Sets the links `wanted` accepts up, then waits until one of them has carrier, for `bound`
/// at most (by the clock, and by the number of polls the bound allows); the first to get it
/// (the lowest index among those that got it at once). A NIC that appears late (a driver still
/// probing, firmware loading) is waited for within the same bound.
pub fn wait_for_carrier(
    sys: &dyn Sys,
    wanted: &dyn Fn(&Interface) -> bool,
    bound: Duration,
) -> Result<Interface, String> {
    let deadline = Instant::now() + bound;
    let polls = bound.as_millis() / CARRIER_POLL.as_millis();
    let mut raised = Vec::new();
    let mut seen = false;
    for poll in 0..=polls {
        let interfaces = sys.interfaces().map_err(|e| format!("netlink: {e}"))?;
        for interface in interfaces.into_iter().filter(|i| !i.loopback && i.mac.is_some() && wanted(i)) {
            seen = true;
            if interface.carrier {
                return Ok(interface);
            }
            if !interface.up && !raised.contains(&interface.index) {
                sys.link_up(interface.index).map_err(|e| format!("set {} up: {e}", interface.name))?;
                raised.push(interface.index);
            }
        }
        if poll == polls || Instant::now() >= deadline {
            break;
        }
        sys.sleep(CARRIER_POLL);
    }
    let secs = bound.as_secs();
    Err(if seen { format!("no carrier within {secs} s") } else { format!("no such network interface within {secs} s") })
}

/// Which interface is the boot interface: the `BOOTIF=` MAC, else the `ip=` device (or the
/// one the probe found), else any (then the first to get carrier). The MAC comes first as the
/// reliable key: names follow driver load order.
pub fn is_boot_interface(interface: &Interface, bootif: Option<[u8; 6]>, device: Option<&str>) -> bool {
    match (bootif, device) {
        (Some(mac), _) => interface.mac == Some(mac),
        (None, Some(name)) => interface.name == name,
        (None, None) => true,
    }
}

/// Sets the loopback interface up when it is down (the kernel then gives it 127.0.0.1/8):
/// before the real init nothing else does, and in initramfs mode it starts down.
pub fn loopback_up(sys: &dyn Sys) -> Result<(), String> {
    let interfaces = sys.interfaces().map_err(|e| format!("netlink: {e}"))?;
    for lo in interfaces.iter().filter(|i| i.loopback && !i.up) {
        sys.link_up(lo.index).map_err(|e| format!("set {} up: {e}", lo.name))?;
    }
    Ok(())
}

/// Runs the DHCP client on `interface`: INFORM when it has `address` (kept as it is), else
/// DISCOVER; `client_id` (`ip=dhcp,<type>,<id>`) instead of type 1 and the MAC.
/// `max_start_delay` spreads clients powered on together.
pub fn lease(
    sys: &dyn Sys,
    interface: &Interface,
    client_id: Option<&ClientId>,
    address: Option<Ipv4Net>,
    bound: Duration,
    max_start_delay: Duration,
) -> Result<Acquired, Failure> {
    let mac = interface
        .mac
        .ok_or_else(|| Failure::Io(std::io::Error::other(format!("{} has no Ethernet address", interface.name))))?;
    let source = address.map_or(Ipv4Addr::UNSPECIFIED, |a| a.addr);
    let mut transport = sys.dhcp_transport(interface.index, source).map_err(Failure::Io)?;
    let client_id = client_id.map(ClientId::option).unwrap_or_default();
    let request = Request { mac, client_id, address, timeout: bound, max_start_delay };
    client::run(transport.as_mut(), &request, &mut Rng::new(sys.random()))
}

/// Gives the interface the leased address and the default route through the first router
/// that is a usable unicast address (`onlink` when outside the prefix). What is there already
/// is left as it is. A route the kernel refuses does not undo the address: it comes back as a
/// warning (the client still reaches its subnet, where its root is).
pub fn configure(sys: &dyn Sys, interface: &Interface, lease: &Lease) -> Result<Option<String>, String> {
    let Some(address) = lease.address else { return Err("the lease has no address".into()) };
    if !client::usable_unicast(address.addr) {
        return Err(format!("{address} is not a usable unicast address"));
    }
    let exists = |e: &std::io::Error| e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error());
    match sys.add_address(interface.index, address) {
        Err(e) if !exists(&e) => return Err(format!("add {address} to {}: {e}", interface.name)),
        _ => {}
    }
    let usable = |g: &&Ipv4Addr| client::usable_unicast(**g) && **g != address.addr && **g != address.broadcast();
    let Some(&gateway) = lease.routers.iter().find(usable) else {
        return Ok((!lease.routers.is_empty()).then(|| "no usable router: no default route".to_string()));
    };
    let onlink = Ipv4Net::new(gateway, address.prefix).map(Ipv4Net::network) != Some(address.network());
    match sys.add_default_route(interface.index, gateway, onlink) {
        Err(e) if !exists(&e) => Ok(Some(format!("default route via {gateway}: {e}"))),
        _ => Ok(None),
    }
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
            carrier: up,
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
