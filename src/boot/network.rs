//! The network phase's probe: what it finds out: the boot interface and its address, the kernel's hostname
//! and the DHCP domain. Read from the kernel at boot ([`probe`]); `plan`/`apply` are given them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
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
use crate::net::dhcp::client::{self, Acquired, LeaseError, Request, Rng, Transport};
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
    let device = ifname::NetDevice::read(sysfs, name, interface.mac);
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
    let mut links = Links::default();
    for poll in 0..=polls {
        for link in links.list(sys, wanted)? {
            if link.carrier {
                return Ok(link);
            }
            links.set_up(sys, &link).map_err(|e| format!("set {} up: {e}", link.name))?;
        }
        if poll == polls || Instant::now() >= deadline {
            break;
        }
        sys.sleep(CARRIER_POLL);
    }
    Err(no_carrier(links.seen, bound))
}

/// The links a wait for carrier looks at (not loopback, with a MAC), and the ones it set up.
#[derive(Default)]
struct Links {
    /// Links this set up.
    raised: Vec<u32>,
    /// Whether one was there at all.
    seen: bool,
}

impl Links {
    /// The links there now that `wanted` accepts, in the kernel's order.
    fn list(&mut self, sys: &dyn Sys, wanted: &dyn Fn(&Interface) -> bool) -> Result<Vec<Interface>, String> {
        let interfaces = sys.interfaces().map_err(|e| format!("netlink: {e}"))?;
        let links: Vec<Interface> =
            interfaces.into_iter().filter(|i| !i.loopback && i.mac.is_some() && wanted(i)).collect();
        self.seen |= !links.is_empty();
        Ok(links)
    }

    /// Sets `link` up when it is down and this has not set it up before (the kernel may take a
    /// while to say so); one that refused is tried again.
    fn set_up(&mut self, sys: &dyn Sys, link: &Interface) -> std::io::Result<()> {
        if !link.up && !self.raised.contains(&link.index) {
            sys.link_up(link.index)?;
            self.raised.push(link.index);
        }
        Ok(())
    }
}

/// Why no interface could be asked within `bound`: none was `seen` at all, or none got carrier.
fn no_carrier(seen: bool, bound: Duration) -> String {
    let secs = bound.as_secs();
    if seen {
        format!("no carrier within {secs} s")
    } else {
        format!("no such network interface within {secs} s")
    }
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
/// `max_start_delay` spreads clients powered on together. Given up (`Interrupted`) once `stop`
/// is set.
pub fn lease(
    sys: &dyn Sys,
    interface: &Interface,
    client_id: Option<&ClientId>,
    address: Option<Ipv4Net>,
    bound: Duration,
    max_start_delay: Duration,
    stop: Option<&AtomicBool>,
) -> Result<Acquired, LeaseError> {
    let mac = interface.mac.ok_or_else(|| {
        LeaseError::Io(std::io::Error::other(format!("{} has no Ethernet address", escape(interface.name.as_bytes()))))
    })?;
    let source = address.map_or(Ipv4Addr::UNSPECIFIED, |a| a.addr);
    let mut transport = sys.dhcp_transport(interface.index, source).map_err(LeaseError::Io)?;
    let client_id = client_id.map(ClientId::option).unwrap_or_default();
    let request = Request { mac, client_id, address, timeout: bound, max_start_delay };
    let rng = &mut Rng::new(sys.random());
    match stop {
        Some(stop) => client::run(&mut Stoppable { inner: transport.as_mut(), stop }, &request, rng),
        None => client::run(transport.as_mut(), &request, rng),
    }
}

/// How often a client racing others looks whether one of them has won.
const STOP_POLL: Duration = Duration::from_millis(50);

/// A transport that waits in slices of [`STOP_POLL`] and gives up (`Interrupted`) once `stop` is set.
struct Stoppable<'a> {
    inner: &'a mut dyn Transport,
    stop: &'a AtomicBool,
}

impl Stoppable<'_> {
    fn stopped(&self) -> std::io::Result<()> {
        match self.stop.load(Ordering::Relaxed) {
            true => Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "another interface answered first")),
            false => Ok(()),
        }
    }
}

impl Transport for Stoppable<'_> {
    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn send(&mut self, message: &[u8]) -> std::io::Result<()> {
        self.stopped()?;
        self.inner.send(message)
    }

    fn recv(&mut self, deadline: Duration) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            self.stopped()?;
            let now = self.inner.now();
            if now >= deadline {
                return Ok(None);
            }
            if let Some(message) = self.inner.recv(deadline.min(now + STOP_POLL))? {
                return Ok(Some(message));
            }
        }
    }
}

/// What DHCP on every interface at once came to.
#[derive(Debug)]
pub struct Answered {
    /// The interface whose lease completed first, and that lease.
    pub interface: Interface,
    pub acquired: Acquired,
    /// Every interface DISCOVER went out on, by index (the kernel's order).
    pub asked: Vec<String>,
}

/// One client thread's end: the interface's index and what its exchange gave.
type Ended = (u32, Result<Acquired, LeaseError>);

/// DHCP without a named interface, as the kernel's ipconfig and klibc's do it: every interface
/// that is not loopback and has a MAC is set up, and DISCOVER runs (a thread each) on every one
/// that has carrier or gets it within `bound`; the first lease that completes is kept, the other
/// clients are stopped, and the links this set up for nothing are set down again (the kernel's
/// `ic_close_devs`; after a failure they stay up, as before). Nothing is configured here. A link
/// that will not go up is left out.
pub fn lease_on_any(
    sys: &dyn Sys,
    client_id: Option<&ClientId>,
    bound: Duration,
    max_start_delay: Duration,
) -> Result<Answered, String> {
    let deadline = Instant::now() + bound;
    let stop = AtomicBool::new(false);
    let (ended, endings) = mpsc::channel::<Ended>();
    let mut race = Race::default();
    let mut won: Result<Option<(Interface, Acquired)>, String> = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        // Carrier is polled as long as the bound allows (by the clock, and by the number of polls).
        let mut sleeps = bound.as_millis() / CARRIER_POLL.as_millis();
        let won = 'race: {
            loop {
                let fresh = match race.poll(sys) {
                    Ok(fresh) => fresh,
                    // The clients asking already go on: a lease may still come.
                    Err(e) if !race.asked.is_empty() => {
                        log::warn!("dhcp: {e}; the clients asking go on");
                        Vec::new()
                    }
                    Err(e) => break 'race Err(e),
                };
                for interface in fresh {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let (ended, stop, client) = (ended.clone(), &stop, interface.clone());
                    let work = move || {
                        let result = lease(sys, &client, client_id, None, remaining, max_start_delay, Some(stop));
                        let _ = ended.send((client.index, result));
                    };
                    match std::thread::Builder::new().name("dhcp".into()).spawn_scoped(scope, work) {
                        Ok(thread) => {
                            log::info!("dhcp: asking on {}", escape(interface.name.as_bytes()));
                            threads.push((interface.index, thread));
                            race.asked.push(interface);
                        }
                        Err(e) => race.leave_out(&interface, &format!("no thread: {e}")),
                    }
                }
                // While clients run, woken by the first to end, else after a poll.
                let running = threads.iter().any(|(_, t)| !t.is_finished());
                let end = match running {
                    true => endings.recv_timeout(CARRIER_POLL).ok(),
                    false => endings.try_recv().ok(),
                };
                match end {
                    Some(end) => {
                        if let Some(won) = race.ended(end) {
                            break 'race Ok(Some(won));
                        }
                    }
                    None if running => {}
                    // Every interface with carrier was asked, and none is still without.
                    None if race.links.seen && !race.waiting => break,
                    None if sleeps == 0 => break,
                    None => {
                        sleeps -= 1;
                        sys.sleep(CARRIER_POLL);
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            Ok(None)
        };
        // Past the bound the clients end on their own (at the same deadline), and say why.
        let stopping = Instant::now();
        stop.store(!matches!(won, Ok(None)), Ordering::Relaxed);
        for (index, thread) in threads {
            if thread.join().is_err() {
                race.ended((index, Err(LeaseError::Io(std::io::Error::other("the client failed (panic)")))));
            }
        }
        log::debug!("dhcp: every client ended {} ms after the race did", stopping.elapsed().as_millis());
        won
    });
    // Every client has ended; an end not taken yet may still be a lease.
    drop(ended);
    while let (Ok(None), Ok(end)) = (&won, endings.try_recv()) {
        won = Ok(race.ended(end));
    }
    let (interface, acquired) = match won? {
        Some(won) => won,
        None => return Err(race.failure(bound)),
    };
    race.close(sys, interface.index);
    race.asked.sort_by_key(|a| a.index);
    let asked: Vec<String> = race.asked.into_iter().map(|a| a.name).collect();
    log::info!("dhcp: {}", answered(&interface.name, &asked));
    Ok(Answered { interface, acquired, asked })
}

/// Who answered, escaped; of whom when more than one was asked.
fn answered(winner: &str, asked: &[String]) -> String {
    match asked {
        [_] | [] => format!("{} answered", escape(winner.as_bytes())),
        _ => format!("{} answered first of {}", escape(winner.as_bytes()), escape(asked.join(", ").as_bytes())),
    }
}

/// The state of [`lease_on_any`]: who was asked, who failed, what it set up.
#[derive(Default)]
struct Race {
    asked: Vec<Interface>,
    /// Indexes of the links left out (they would not go up).
    left_out: Vec<u32>,
    /// What the polls set up, and whether they saw an interface at all.
    links: Links,
    /// Each interface left out or without a lease, with why.
    failed: Vec<String>,
    /// Whether an interface is still without carrier.
    waiting: bool,
}

impl Race {
    /// Sets the links that are down up; the ones with carrier that were not asked yet.
    fn poll(&mut self, sys: &dyn Sys) -> Result<Vec<Interface>, String> {
        // The ones asked or left out were seen by the poll that found them.
        let new = |i: &Interface| !self.asked.iter().any(|a| a.index == i.index) && !self.left_out.contains(&i.index);
        let (fresh, waiting): (Vec<Interface>, _) = self.links.list(sys, &new)?.into_iter().partition(|i| i.carrier);
        self.waiting = !waiting.is_empty();
        for interface in waiting {
            if let Err(e) = self.links.set_up(sys, &interface) {
                self.leave_out(&interface, &format!("set up: {e}"));
            }
        }
        Ok(fresh)
    }

    fn leave_out(&mut self, interface: &Interface, why: &str) {
        let name = escape(interface.name.as_bytes());
        log::warn!("dhcp: {name} left out: {why}");
        self.failed.push(format!("{name}: {why}"));
        self.left_out.push(interface.index);
    }

    /// A client's end: its interface and lease, or its failure noted.
    fn ended(&mut self, (index, result): Ended) -> Option<(Interface, Acquired)> {
        let interface = self.asked.iter().find(|a| a.index == index)?;
        match result {
            Ok(acquired) => Some((interface.clone(), acquired)),
            // A client stopped because another won is no failure of its interface.
            Err(LeaseError::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => None,
            Err(e) => {
                let name = escape(interface.name.as_bytes());
                log::info!("dhcp: no lease on {name}: {}", escape(e.to_string().as_bytes()));
                self.failed.push(format!("{name}: {e}"));
                None
            }
        }
    }

    /// Why there is no lease: no interface, no carrier, or each interface's failure.
    fn failure(&self, bound: Duration) -> String {
        match (self.links.seen, self.asked.is_empty() && self.failed.is_empty()) {
            (false, _) | (true, true) => no_carrier(self.links.seen, bound),
            (true, false) if self.failed.is_empty() => format!("no lease within {} s", bound.as_secs()),
            (true, false) => format!("no lease on any interface: {}", self.failed.join("; ")),
        }
    }

    /// Sets the links raised for nothing down again: all but `kept`.
    fn close(&self, sys: &dyn Sys, kept: u32) {
        for &index in self.links.raised.iter().filter(|&&i| i != kept) {
            if let Err(e) = sys.link_down(index) {
                log::warn!("dhcp: set link {index} down again: {e}");
            }
        }
    }
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

    /// A transport whose clock jumps to each deadline asked for, and which sets `stop` (as the
    /// winner's thread would) on its third wait.
    struct Silent<'a> {
        clock: Duration,
        waits: Vec<Duration>,
        sent: usize,
        stop: &'a AtomicBool,
    }

    impl Transport for Silent<'_> {
        fn now(&self) -> Duration {
            self.clock
        }

        fn send(&mut self, _: &[u8]) -> std::io::Result<()> {
            self.sent += 1;
            Ok(())
        }

        fn recv(&mut self, deadline: Duration) -> std::io::Result<Option<Vec<u8>>> {
            self.waits.push(deadline);
            self.clock = deadline;
            self.stop.store(self.waits.len() == 3, Ordering::Relaxed);
            Ok(None)
        }
    }

    #[test]
    fn a_stopped_client_gives_up_within_one_slice() {
        let stop = AtomicBool::new(false);
        let mut inner = Silent { clock: Duration::ZERO, waits: Vec::new(), sent: 0, stop: &stop };
        let mut transport = Stoppable { inner: &mut inner, stop: &stop };
        transport.send(b"discover").unwrap();
        let error = transport.recv(Duration::from_secs(4)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::Interrupted);
        assert!(transport.send(b"again").is_err(), "nothing is sent once stopped");
        let slices: Vec<Duration> = (1..=3).map(|n| STOP_POLL * n).collect();
        assert_eq!((inner.waits, inner.sent), (slices, 1), "the wait in slices, given up after the one that stopped");
    }

    #[test]
    fn who_answered_of_whom() {
        let asked = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(answered("eth0", &asked(&["eth0"])), "eth0 answered");
        assert_eq!(answered("eth1", &asked(&["eth0", "eth1"])), "eth1 answered first of eth0, eth1");
        assert_eq!(answered("e\x1bth", &asked(&["e\x1bth"])), "e\\x1bth answered");
    }

    /// A link is set up once, and only when down; one that refused is tried again; loopback,
    /// links without a MAC and the ones not wanted are not looked at.
    #[test]
    fn links_are_set_up_once_each() {
        use crate::sys::{Call, Fake};
        let refused = rustix::io::Errno::NODEV.raw_os_error();
        let mut sys = Fake::failing(move |c| matches!(c, Call::LinkUp(4)).then_some(refused));
        let no_mac = Interface { mac: None, ..iface(5, "tun0", 0, None, false) };
        sys.interfaces = vec![
            iface(1, "lo", 0, None, false),
            iface(2, "eth0", 8, None, false),
            iface(3, "eth1", 7, None, true),
            iface(4, "eth2", 9, None, false),
            no_mac,
        ];
        let mut links = Links::default();
        assert!(links.list(&sys, &|i| i.name == "wlan0").unwrap().is_empty());
        assert!(!links.seen, "nothing wanted was there");
        for _ in 0..2 {
            let names: Vec<String> = links.list(&sys, &|_| true).unwrap().into_iter().map(|l| l.name).collect();
            assert_eq!(names, ["eth0", "eth1", "eth2"]);
            for link in &sys.interfaces[1..4] {
                assert_eq!(links.set_up(&sys, link).is_err(), link.index == 4, "{}", link.name);
            }
        }
        assert!(links.seen);
        assert_eq!(links.raised, [2]);
        assert_eq!(sys.calls(), [Call::LinkUp(2), Call::LinkUp(4), Call::LinkUp(4)]);
    }

    #[test]
    fn no_usable_interface() {
        let all = [iface(1, "lo", 0, Some("127.0.0.1/8"), true), iface(2, "eth0", 8, Some("10.0.3.15/24"), false)];
        assert!(boot_interface(&all, &Options::default()).is_none());
    }
}
