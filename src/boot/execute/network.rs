//! The network phase's handlers: our DHCP client, a static address, the host name.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::modules::Modules;
use super::{Done, Executor};
use crate::boot::network::{self, Answered};
use crate::kmod::coldplug::{Planned, State};
use crate::kmod::load::{self, load_plan};
use crate::model::facts::Learned;
use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::model::lease::{Dhcp, Exchange, Lease};
use crate::model::options::ClientId;
use crate::model::outcome::{Failure, Op};
use crate::model::step::Pass;

/// The DHCP client waits a random time below this before its first message, so a room of
/// clients powered on together does not reach the server in the same instant.
const DHCP_START_DELAY: Duration = Duration::from_millis(500);

/// INFORM only asks for a host name on a link that already works (the root came over it), and
/// some servers never answer it (QEMU's user-mode network): it is given this long at most.
const INFORM_BOUND: Duration = Duration::from_secs(10);

impl Executor<'_> {
    /// Brings the boot interface up and gets a lease (DISCOVER: the address and default route
    /// too; with no interface named, on every one at once) or, for an interface with an
    /// address, asks for its configuration (INFORM).
    pub(super) fn run_dhcp(
        &mut self,
        interface: Option<&str>,
        exchange: Exchange,
        meanwhile: &[String],
    ) -> Result<Done, Failure> {
        let started = Instant::now();
        let mut bound = Duration::from_secs(self.options.dhcp_timeout.into());
        if exchange == Exchange::Inform {
            bound = bound.min(INFORM_BOUND);
        }
        // What loads while the exchange waits on the network, planned first.
        let background: Vec<Planned> = match meanwhile.is_empty() {
            true => Vec::new(),
            false => {
                let loaded = Modules::in_kernel(self.sys);
                match self.kernel(Pass::Early).and_then(|k| k.plan_names(meanwhile, &loaded)) {
                    Ok(plan) => plan.into_iter().filter(|p| p.state == State::Load).collect(),
                    Err(e) => {
                        log::warn!("dhcp: not loading {} meanwhile: {e}", meanwhile.join(", "));
                        Vec::new()
                    }
                }
            }
        };
        // No interface named: DISCOVER on every one at once, the first lease kept.
        let any = exchange == Exchange::Discover && interface.is_none() && self.options.bootif.is_none();
        // INFORM from the address the interface has (the probe's, or the static ip= one).
        let address = if exchange == Exchange::Inform { self.facts.address } else { None };
        let (sys, running) = (self.sys, &self.running);
        let client_id = self.options.ip.as_ref().and_then(|ip| ip.client_id.as_ref());
        if let Some(id) = client_id {
            log::info!("dhcp: client id {id} (ip=)");
        }
        let kernel = self.modules.opened(Pass::Early).filter(|_| !background.is_empty());
        let (exchanged, loaded) = std::thread::scope(|scope| {
            let loader = kernel.map(|k| {
                scope.spawn(move || load_plan(sys, running, &k.dir, k.rules(), background, 1, &load::no_more))
            });
            let exchanged = match any {
                true => self.lease_on_any(client_id, bound),
                false => self.link(interface, exchange == Exchange::Discover, bound).and_then(|link| {
                    let left = bound.saturating_sub(started.elapsed());
                    match network::lease(sys, &link, client_id, address, left, DHCP_START_DELAY, None) {
                        Ok(acquired) => Ok(Answered { asked: vec![link.name.clone()], interface: link, acquired }),
                        Err(e) => Err(Failure::new(Op::Dhcp, Some(Path::new(&link.name)), e.to_string())),
                    }
                }),
            };
            (exchanged, loader.and_then(|l| l.join().ok()).unwrap_or_default())
        });
        self.modules.record(&loaded);
        let Answered { asked, interface: link, acquired } = exchanged?;
        let fail = |message: String| Failure::new(Op::Dhcp, Some(Path::new(&link.name)), message);
        let lease = acquired.lease;
        let (mut warning, mut learned) = (None, Vec::new());
        if exchange == Exchange::Discover {
            warning = network::configure(self.sys, &link, &lease).map_err(fail)?;
            learned.push(configured(&link, lease.address));
        }
        let stats = &acquired.stats;
        let others: Vec<&str> = asked.iter().map(String::as_str).filter(|a| *a != link.name).collect();
        let detail = format!(
            "{} from {} on {}{}{}; {} sent in {} ms",
            lease.address.map_or("configuration".to_string(), |a| a.to_string()),
            lease.server.map_or("?".to_string(), |s| s.to_string()),
            crate::model::text::escape(link.name.as_bytes()),
            match others.is_empty() {
                true => String::new(),
                false => format!(
                    " (first to answer; also asked: {})",
                    crate::model::text::escape(others.join(", ").as_bytes())
                ),
            },
            lease.hostname.as_ref().map(|h| format!(", host name {h}")).unwrap_or_default(),
            stats.sent,
            stats.ms,
        );
        lease.rejected.iter().for_each(|r| log::warn!("dhcp: {r}"));
        let (sent, ignored, naks, ms) = (stats.sent, stats.ignored, stats.naks, stats.ms);
        let failure = warning.map(|w| Failure::new(Op::Dhcp, Some(Path::new(&link.name)), w));
        let dhcp = Dhcp { interface: link.name, asked, exchange, lease, sent, ignored, naks, ms };
        learned.push(Learned::Dhcp(Some(Box::new(dhcp))));
        Ok(match failure {
            Some(failure) => Done::degraded(detail, failure),
            None => Done::ok(detail),
        }
        .learned(learned))
    }

    /// The boot interface, once it has carrier: the `BOOTIF=` MAC's, else `interface` (the `ip=`
    /// device, or the one the probe found), else the first to get carrier. `configuring`: it gets an address, so loopback is set up too.
    fn link(&self, interface: Option<&str>, configuring: bool, bound: Duration) -> Result<Interface, Failure> {
        let fail = |message: String| Failure::new(Op::Dhcp, interface.map(Path::new), message);
        if configuring {
            network::loopback_up(self.sys).map_err(fail)?;
        }
        let bootif = self.options.bootif;
        let wanted = |i: &Interface| network::is_boot_interface(i, bootif, interface);
        network::wait_for_carrier(self.sys, &wanted, bound).map_err(fail)
    }

    /// DHCP on every interface at once ([`network::lease_on_any`]), loopback set up too.
    fn lease_on_any(&self, client_id: Option<&ClientId>, bound: Duration) -> Result<Answered, Failure> {
        let fail = |message: String| Failure::new(Op::Dhcp, None, message);
        network::loopback_up(self.sys).map_err(fail)?;
        network::lease_on_any(self.sys, client_id, bound, DHCP_START_DELAY).map_err(fail)
    }

    /// The static configuration of an `ip=` line on an interface without an address.
    pub(super) fn configure_address(
        &mut self,
        interface: Option<&str>,
        address: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Done, Failure> {
        let link = self.link(interface, true, Duration::from_secs(self.options.dhcp_timeout.into()))?;
        let lease = Lease { address: Some(address), routers: gateway.into_iter().collect(), ..Lease::default() };
        let fail = |message: String| Failure::new(Op::Dhcp, Some(Path::new(&link.name)), message);
        let warning = network::configure(self.sys, &link, &lease).map_err(fail)?;
        // The line's device stays the boot interface, as the plan has it, also when `BOOTIF=`
        // chose the link configured.
        let named = interface.map_or_else(|| link.name.clone(), str::to_owned);
        let learned =
            [Learned::StaticAddress, Learned::Link { interface: Some(named), mac: link.mac, address: Some(address) }];
        let via = gateway.map(|g| format!(", default route via {g}")).unwrap_or_default();
        let detail = format!("{address} on {}{via}", link.name);
        Ok(match warning {
            Some(w) => Done::degraded(detail, fail(w)),
            None => Done::ok(detail),
        }
        .learned(learned))
    }

    pub(super) fn set_hostname(
        &mut self,
        hostname: Option<&crate::model::hostname::Hostname>,
    ) -> Result<Done, Failure> {
        let Some(h) = hostname else {
            return Ok(Done::skipped("no valid hostname from any source").learned([Learned::Hostname(None)]));
        };
        let chosen = [Learned::Hostname(Some(h.clone()))];
        let name_fail = |op, name: &str, e: &std::io::Error| Failure::io(op, Some(Path::new(name)), e);
        self.sys.sethostname(&h.short).map_err(|e| name_fail(Op::Sethostname, &h.short, &e))?;
        let kernel_domain = self.sys.uname().domainname;
        match &h.domain {
            Some(domain) if kernel_domain == "(none)" || kernel_domain.is_empty() => {
                // The kernel keeps 64 bytes of a domain name; a longer one is still a valid name
                // for /etc/hosts.
                if domain.len() > crate::model::hostname::UTS_LEN {
                    let why = "longer than the kernel's 64 bytes: the kernel's domain name is left unset";
                    let error = Failure::new(Op::Setdomainname, Some(Path::new(domain)), why.to_string());
                    return Ok(
                        Done::degraded(format!("set {} (not the domain {domain})", h.short), error).learned(chosen)
                    );
                }
                self.sys.setdomainname(domain).map_err(|e| name_fail(Op::Setdomainname, domain, &e))?;
                Ok(Done::ok(format!("set {} (domain {domain})", h.short)).learned(chosen))
            }
            _ => Ok(Done::ok(format!("set {}", h.short)).learned(chosen)),
        }
    }
}

/// What the phases after know once `link` has its address.
fn configured(link: &Interface, address: Option<Ipv4Net>) -> Learned {
    Learned::Link { interface: Some(link.name.clone()), mac: link.mac, address }
}
