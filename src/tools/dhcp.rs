//! `stateless dhcp IFACE [--no-configure] [--timeout S] [--json]`: the boot's DHCP client run
//! once, from any Linux machine, to see what a server gives a client (or why it gives nothing).
//! The link is set up when it is down. An interface that has an address is only asked about
//! (INFORM) and never changed; otherwise the client takes a lease (DISCOVER) and, unless
//! `--no-configure`, gives the interface the address and the default route.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::boot::network;
use crate::model::interface::format_mac;
use crate::model::lease::{Exchange, Lease};
use crate::net::dhcp::client::{LeaseError, Stats};
use crate::sys::Real;

pub const USAGE: &str = "\
usage: stateless dhcp IFACE [--no-configure] [--timeout SECS] [--json]

Runs the DHCP client of the boot once on IFACE (as root) and prints the lease, or why there is
none (exit status 1). An interface with an IPv4 address is only asked (DHCPINFORM), never
changed; one without gets a lease (DISCOVER/REQUEST) and, unless --no-configure, the address
and the default route. The link is set up when it is down.

  --no-configure   print the lease only; leave the interface without an address
  --timeout SECS   bound on carrier and lease together (default 60)
  --json           print one JSON object
";

#[derive(Debug, Default)]
struct Args {
    interface: String,
    configure: bool,
    timeout: Duration,
    json: bool,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut parsed = Args { configure: true, timeout: Duration::from_secs(60), ..Args::default() };
    while let Some(arg) = args.next() {
        match arg.to_str().ok_or("arguments must be UTF-8")? {
            "--help" | "-h" => return Ok(None),
            "--no-configure" => parsed.configure = false,
            "--json" => parsed.json = true,
            "--timeout" => {
                let v = args.next().and_then(|v| v.into_string().ok()).ok_or("--timeout needs a value")?;
                let secs: u64 =
                    v.parse().ok().filter(|s| (1..=3600).contains(s)).ok_or("--timeout: 1 to 3600 seconds")?;
                parsed.timeout = Duration::from_secs(secs);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown argument {}", super::quote(flag))),
            name if parsed.interface.is_empty() => parsed.interface = name.to_string(),
            extra => return Err(format!("one interface only ({})", super::quote(extra))),
        }
    }
    if parsed.interface.is_empty() {
        return Err(format!("an interface is needed\n{USAGE}"));
    }
    Ok(Some(parsed))
}

/// What `--json` prints.
#[derive(Serialize)]
struct Output<'a> {
    interface: &'a str,
    mac: Option<String>,
    exchange: Option<Exchange>,
    lease: Option<&'a Lease>,
    /// The address and route were given to the interface.
    configured: bool,
    sent: u32,
    naks: u32,
    ignored: u32,
    ms: u64,
    error: Option<String>,
}

pub fn command(args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let Some(args) = parse(args)? else {
        crate::tools::emit(USAGE)?;
        return Ok(0);
    };
    let sys = Real;
    let started = Instant::now();
    let mut out = Output {
        interface: &args.interface,
        mac: None,
        exchange: None,
        lease: None,
        configured: false,
        sent: 0,
        naks: 0,
        ignored: 0,
        ms: 0,
        error: None,
    };
    let mut stats = Stats::default();
    let result = network::wait_for_carrier(&sys, &|i| i.name == args.interface, args.timeout).and_then(|interface| {
        out.mac = interface.mac.as_ref().map(format_mac);
        let left = args.timeout.saturating_sub(started.elapsed());
        let acquired =
            network::lease(&sys, &interface, None, interface.addrs.first().copied(), left, Duration::ZERO, None)
                .map_err(|e| {
                    if let LeaseError::NoLease(s) = &e {
                        stats = s.clone();
                    }
                    e.to_string()
                })?;
        stats = acquired.stats.clone();
        if args.configure && acquired.exchange == Exchange::Discover {
            if let Some(warning) = network::configure(&sys, &interface, &acquired.lease)? {
                log::warn!("{warning}");
            }
            out.configured = true;
        }
        Ok(acquired)
    });
    out.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    (out.sent, out.naks, out.ignored) = (stats.sent, stats.naks, stats.ignored);
    match &result {
        Ok(acquired) => {
            out.exchange = Some(acquired.exchange);
            out.lease = Some(&acquired.lease);
        }
        Err(e) => out.error = Some(e.clone()),
    }
    let text =
        if args.json { crate::model::text::to_json(&out).map_err(|e| e.to_string())? + "\n" } else { human(&out) };
    crate::tools::emit(&text)?;
    Ok(if out.error.is_some() { 1 } else { 0 })
}

/// The lease as `key: value` lines.
fn human(out: &Output<'_>) -> String {
    let mut text = format!("interface: {} ({})\n", out.interface, out.mac.as_deref().unwrap_or("no MAC"));
    if let Some(error) = &out.error {
        return text + &format!("error: {error}\n");
    }
    let Some(lease) = out.lease else { return text };
    let list = |v: &[std::net::Ipv4Addr]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
    let mut line = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            text.push_str(&format!("{key}: {value}\n"));
        }
    };
    line("exchange", out.exchange.map(|e| format!("{e:?}").to_lowercase()));
    line("server", lease.server.map(|s| s.to_string()));
    line("address", lease.address.map(|a| a.to_string()));
    line("routers", Some(list(&lease.routers)));
    line("dns", Some(list(&lease.dns)));
    line("domain", lease.domain.clone());
    line("hostname", lease.hostname.clone());
    line("broadcast", lease.broadcast.map(|b| b.to_string()));
    line("ntp", Some(list(&lease.ntp)));
    line("root-path", lease.root_path.clone());
    line("lease-time", lease.lease_secs.map(|s| format!("{s} s")));
    line("tftp-server", lease.tftp_server.clone());
    line("bootfile", lease.bootfile.clone());
    line("next-server", lease.next_server.map(|s| s.to_string()));
    line("mtu", lease.mtu.map(|m| m.to_string()));
    line("options", Some(lease.options.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")));
    for rejected in &lease.rejected {
        line("rejected", Some(rejected.clone()));
    }
    line("configured", Some(if out.configured { "yes" } else { "no" }.to_string()));
    line("took", Some(format!("{} ms, {} sent, {} NAKs, {} ignored", out.ms, out.sent, out.naks, out.ignored)));
    text
}
