use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use rustix::mount::MountFlags;

use crate::boot::plan::NEW_ROOT;
use crate::fs::mounts::WRITABLE_DIR_FLAGS;
use crate::model::ipv4::Ipv4Net;
use crate::model::lease::{Dhcp, Exchange, Lease};
use crate::model::nfsroot::{Dropped, NfsMount};
use crate::model::options::OverlayMode;

use crate::config::Cmdline;
use crate::model::interface::Interface;
use crate::model::outcome::DirMode;
use crate::model::paths::EXPORT;
use crate::model::writable::DirName;
use crate::sys::{Call, Fake};

struct Image(PathBuf);

impl Image {
    fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("stateless-exec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        Self::populate(&root);
        Self(root)
    }

    /// A minimal image at `root`: the writable dirs, an init, a base layer.
    fn populate(root: &Path) {
        for dir in ["etc", "var", "run", "tmp", "dev", "proc", "sys", "sbin", "diskless/base/etc"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("sbin/init"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("sbin/init"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("diskless/base/etc/from-base"), "base\n").unwrap();
    }

    /// An executor on this image whose options come from `cmdline`; at boot the fake kernel
    /// says eth0 has 10.0.2.15/24 and the hostname is lab3-12, and apply is given the same.
    fn executor<'a>(&self, sys: &'a Fake, cmdline: &str, mode: Mode) -> Executor<'a> {
        let open = || ImageRoot::open(&self.0).unwrap();
        let mut executor = Executor::new(Context::new(sys, open(), open(), mode));
        (executor.options, executor.diagnostics) = Options::resolve(&Cmdline::parse(cmdline.as_bytes()), None);
        if mode == Mode::Apply {
            executor.facts.address = "10.0.2.15/24".parse().ok();
            executor.facts.kernel_hostname = Some("lab3-12".into());
        }
        executor.init_args = vec!["single".into()];
        executor
    }
}

/// A fake kernel that knows the client as lab3-12 at 10.0.2.15/24 on eth0.
fn fake(fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) -> Fake {
    let mut sys = Fake::failing(fail);
    sys.uname.nodename = "lab3-12".into();
    sys.interfaces = vec![Interface {
        index: 2,
        name: "eth0".into(),
        mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        up: true,
        carrier: true,
        loopback: false,
        addrs: vec!["10.0.2.15/24".parse().unwrap()],
    }];
    sys
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the plan with the fake kernel; returns the calls and the panic message that ended it
/// (`fake exec ...`, `fake reboot`), or None when `run` returned.
fn boot(image: &Image, cmdline: &str, sys: &Fake, mode: Mode) -> (Vec<Outcome>, Option<String>) {
    boot_from(image, cmdline, sys, mode, false)
}

/// The same, from an initramfs (`initramfs`) or on the root.
fn boot_from(image: &Image, cmdline: &str, sys: &Fake, mode: Mode, initramfs: bool) -> (Vec<Outcome>, Option<String>) {
    let mut executor = image.executor(sys, cmdline, mode);
    executor.facts.initramfs = initramfs;
    executor.cmdline = cmdline.as_bytes().to_vec();
    let ended = catch_unwind(AssertUnwindSafe(|| executor.run(&Phase::ALL)));
    let message = ended.err().map(|p| {
        p.downcast_ref::<String>().cloned().unwrap_or_else(|| p.downcast_ref::<&str>().unwrap_or(&"?").to_string())
    });
    (executor.record.outcomes, message)
}

fn mounts(calls: &[Call]) -> Vec<(String, PathBuf)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Mount { fstype, target, .. } => Some((fstype.clone(), target.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn boot_mounts_overlays_sets_hostname_and_execs_init() {
    let image = Image::new("boot");
    let r = &image.0;
    let sys = fake(|_| None);
    let (outcomes, ended) = boot(&image, "", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    assert_eq!(
        mounts(&sys.calls()),
        [
            ("devtmpfs".into(), r.join("dev")),
            ("proc".into(), r.join("proc")),
            ("sysfs".into(), r.join("sys")),
            ("tmpfs".into(), r.join("run")),
            ("tmpfs".into(), r.join("tmp")),
            ("tmpfs".into(), r.join("run/stateless/rw/etc")),
            ("tmpfs".into(), r.join("run/stateless/rw/var")),
            ("overlay".into(), r.join("etc")),
            ("overlay".into(), r.join("var")),
        ]
    );
    let rw = r.join("run/stateless/rw/etc");
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        r.join("etc").display(),
        rw.join("upper").display(),
        rw.join("work").display()
    );
    assert!(sys.calls().contains(&Call::Mount {
        source: "overlay".into(),
        target: r.join("etc"),
        fstype: "overlay".into(),
        flags: WRITABLE_DIR_FLAGS,
        data
    }));
    assert!(sys.calls().contains(&Call::Sethostname("lab3-12".into())));
    assert_eq!(sys.calls().last(), Some(&Call::Exec("/sbin/init".into(), vec!["/sbin/init".into(), "single".into()])));
    assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
    // systemd leaves the overlays to systemd-shutdown (a busy /var at shutdown otherwise).
    assert_eq!(
        std::fs::read_to_string(r.join("run/mount/utab")).unwrap(),
        "SRC=overlay TARGET=/etc ROOT=/ OPTS=x-initrd.mount\nSRC=overlay TARGET=/var ROOT=/ OPTS=x-initrd.mount\n"
    );
    // The layers went into the upper dir before the overlay (here a plain dir: the fake
    // mounts nothing).
    assert_eq!(std::fs::read_to_string(r.join("run/stateless/rw/etc/upper/from-base")).unwrap(), "base\n");
    assert!(!r.join("etc/from-base").exists());
    assert!(r.join("run/stateless/report.json").exists());
}

/// A scripted DHCP server that gives eth0's MAC 10.0.2.15/24 as lab3-12.lab.example (and
/// answers INFORM with the same).
fn dhcp_server() -> crate::net::dhcp::client::testing::Server {
    use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
    use dhcproto::{Decodable, Decoder, Encodable};
    Box::new(|bytes: &[u8], _| {
        let m = Message::decode(&mut Decoder::new(bytes)).unwrap();
        let kind = match m.opts().get(OptionCode::MessageType) {
            Some(DhcpOption::MessageType(MessageType::Discover)) => MessageType::Offer,
            Some(DhcpOption::MessageType(MessageType::Request | MessageType::Inform)) => MessageType::Ack,
            _ => return vec![],
        };
        let ip = |d| std::net::Ipv4Addr::new(10, 0, 2, d);
        let mut r = Message::new_with_id(m.xid(), ip(0), ip(15), ip(2), ip(0), &m.chaddr()[..6]);
        r.set_opcode(Opcode::BootReply).set_flags(Flags::default().set_broadcast());
        for option in [
            DhcpOption::MessageType(kind),
            DhcpOption::ServerIdentifier(ip(2)),
            DhcpOption::SubnetMask(std::net::Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![ip(2)]),
            DhcpOption::DomainNameServer(vec![ip(3)]),
            DhcpOption::Hostname("lab3-12".into()),
            DhcpOption::DomainName("lab.example".into()),
        ] {
            r.opts_mut().insert(option);
        }
        vec![r.to_vec().unwrap()]
    })
}

#[test]
fn dhcp_discover_configures_names_and_hands_the_network_on() {
    let image = Image::new("dhcp");
    let r = &image.0;
    let mut sys = fake(|_| None);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
    let (outcomes, ended) = boot(&image, "", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
    let calls = sys.calls();
    let at = |call: &Call| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call:?}: {calls:#?}"));
    let net = "10.0.2.15/24".parse().unwrap();
    let gateway = std::net::Ipv4Addr::new(10, 0, 2, 2);
    // Address and route before the name, the name from DHCP.
    assert!(at(&Call::DhcpTransport(2, std::net::Ipv4Addr::UNSPECIFIED)) < at(&Call::AddAddress(2, net)));
    assert!(at(&Call::AddAddress(2, net)) < at(&Call::AddDefaultRoute(2, gateway, false)));
    assert!(at(&Call::AddDefaultRoute(2, gateway, false)) < at(&Call::Sethostname("lab3-12".into())));
    assert!(calls.contains(&Call::Setdomainname("lab.example".into())));
    let hostname = outcomes.iter().find_map(|o| match &o.step {
        Step::Hostname { hostname, .. } => hostname.clone(),
        _ => None,
    });
    assert_eq!(hostname.map(|h| h.source), Some(crate::model::hostname::Source::Dhcp));
    // The layers keyed on the address and name were planned from the lease.
    assert!(outcomes.iter().any(|o| matches!(&o.step, Step::Layer { name, .. } if name == "hosts/10.0.2.15")));
    // Handed on: klibc's file with the lease, networkd told to keep eth0, the resolver.
    let klibc = std::fs::read_to_string(r.join("run/net-eth0.conf")).unwrap();
    assert!(klibc.contains("IPV4ADDR='10.0.2.15'") && klibc.contains("HOSTNAME='lab3-12'"), "{klibc}");
    let networkd = std::fs::read_to_string(r.join("run/systemd/network/10-stateless-eth0.network")).unwrap();
    assert!(networkd.contains("KeepConfiguration=yes"), "{networkd}");
    assert!(networkd.contains("MACAddress=52:54:00:12:34:56"), "matched on the probed MAC: {networkd}");
    assert!(std::fs::read_to_string(r.join("etc/resolv.conf")).unwrap().contains("nameserver 10.0.2.3"));
    let report = std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap();
    let report: crate::boot::report::Report = serde_json::from_str(&report).unwrap();
    let dhcp = report.dhcp.unwrap();
    assert_eq!((dhcp.interface.as_str(), dhcp.exchange, dhcp.sent), ("eth0", Exchange::Discover, 2));
}

/// An image whose udev names the NIC ens3 (systemd's 99-default.link, QEMU's hotplug slot
/// 3): the boot renames eth0 before the network files, which carry the new name.
#[test]
fn boot_interface_takes_the_name_udev_would_give_before_the_network_files() {
    use crate::boot::ifname::testing::{slot, virtio_nic};
    let image = Image::new("ifname");
    let r = &image.0;
    virtio_nic(&r.join("sys"), "0000:00:03.0", "eth0");
    slot(&r.join("sys"), "3", "0000:00:03");
    let links = r.join("usr/lib/systemd/network");
    std::fs::create_dir_all(&links).unwrap();
    let default = "[Match]\nOriginalName=*\n[Link]\nNamePolicy=keep kernel database onboard slot path\n";
    std::fs::write(links.join("99-default.link"), default).unwrap();
    let sys = fake(|_| None);
    let (outcomes, ended) = boot(&image, "ip=dhcp", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    assert!(sys.calls().contains(&Call::RenameLink(2, "ens3".into())), "{:#?}", sys.calls());
    let files = outcomes.iter().find(|o| matches!(o.step, Step::NetworkFiles { .. })).unwrap();
    assert_eq!(files.status, Status::Ok, "{files:#?}");
    assert!(files.detail.starts_with("renamed from eth0; run/systemd/network/10-stateless-ens3.network"), "{files:#?}");
    for file in ["run/network/ifstate.ens3", "run/net-ens3.conf", "run/systemd/network/10-stateless-ens3.network"] {
        assert!(r.join(file).is_file(), "{file}: {}", files.detail);
    }
    assert_eq!(std::fs::read_to_string(r.join("run/network/ifstate")).unwrap(), "ens3=stateless\n");
    assert!(!r.join("run/net-eth0.conf").exists());
    // Refused (a kernel before 6.2: the interface is up): eth0 kept, and its files.
    let image = Image::new("ifname-busy");
    let r = &image.0;
    virtio_nic(&r.join("sys"), "0000:00:03.0", "eth0");
    slot(&r.join("sys"), "3", "0000:00:03");
    std::fs::create_dir_all(r.join("usr/lib/systemd/network")).unwrap();
    std::fs::write(r.join("usr/lib/systemd/network/99-default.link"), default).unwrap();
    let busy = rustix::io::Errno::BUSY.raw_os_error();
    let sys = fake(move |c| matches!(c, Call::RenameLink(..)).then_some(busy));
    let (_, ended) = boot(&image, "ip=dhcp", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    assert_eq!(std::fs::read_to_string(r.join("run/network/ifstate")).unwrap(), "eth0=stateless\n");
    assert!(r.join("run/net-eth0.conf").is_file());
}

#[test]
fn static_ip_line_configures_without_dhcp_then_informs_for_a_name() {
    let image = Image::new("static");
    let lo = Interface {
        index: 1,
        name: "lo".into(),
        mac: Some([0; 6]),
        up: false,
        carrier: false,
        loopback: true,
        addrs: vec![],
    };
    let net: Ipv4Net = "10.0.2.15/24".parse().unwrap();
    let gateway = Ipv4Addr::new(10, 0, 2, 2);
    let static_ip = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

    // With a name in the line: no DHCP at all, the name from ip=.
    let mut sys = fake(|_| None);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.interfaces.insert(0, lo.clone());
    let (outcomes, _) = boot(&image, "ip=10.0.2.15::10.0.2.2:255.255.255.0:lab3-12:eth0:off", &sys, Mode::Boot);
    let calls = sys.calls();
    assert!(calls.contains(&Call::LinkUp(1)), "loopback up: {calls:#?}");
    assert!(calls.contains(&Call::AddAddress(2, net)) && calls.contains(&Call::AddDefaultRoute(2, gateway, false)));
    assert!(!calls.iter().any(|c| matches!(c, Call::DhcpTransport(..))), "nothing sent: {calls:#?}");
    let source = |outcomes: &[Outcome]| {
        outcomes.iter().find_map(|o| match &o.step {
            Step::Hostname { hostname: Some(h), .. } => Some((h.short.clone(), h.source)),
            _ => None,
        })
    };
    assert_eq!(source(&outcomes), Some(("lab3-12".to_string(), crate::model::hostname::Source::Ip)));

    // Without one: INFORM from the static address (never DISCOVER), the name from DHCP.
    let mut sys = fake(|_| None);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
    let (outcomes, _) = boot(&image, static_ip, &sys, Mode::Boot);
    let calls = sys.calls();
    assert!(calls.contains(&Call::DhcpTransport(2, net.addr)), "{calls:#?}");
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::AddAddress(..))).count(), 1, "the static one only");
    assert_eq!(source(&outcomes), Some(("lab3-12".to_string(), crate::model::hostname::Source::Dhcp)));

    // The address refused (a fatal step, `continue`): the hostname is still chosen.
    let mut sys = fake(|c| matches!(c, Call::AddAddress(..)).then_some(1));
    sys.interfaces[0].addrs.clear();
    let (outcomes, _) = boot(&image, &format!("{static_ip} stateless.hostname=forced-7"), &sys, Mode::Boot);
    assert!(outcomes.iter().any(|o| matches!(o.step, Step::Address { .. }) && o.status == Status::Failed));
    assert_eq!(source(&outcomes), Some(("forced-7".to_string(), crate::model::hostname::Source::Cmdline)));
}

/// `BOOTIF=` picks the link a static `ip=` line is configured on; the line's device stays the
/// boot interface the later steps name, as `stateless plan` has it.
#[test]
fn a_static_line_names_the_boot_interface_when_bootif_picks_another_link() {
    let image = Image::new("bootif-static");
    let mut sys = fake(|_| None);
    sys.interfaces[0].addrs.clear();
    let mac = Some([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
    let eth1 = Interface { index: 3, name: "eth1".into(), mac, up: false, carrier: false, ..sys.interfaces[0].clone() };
    sys.interfaces.push(eth1);
    sys.cabled.push(3);
    let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0:lab3-12:eth0:off BOOTIF=01-52-54-00-12-34-57";
    let (outcomes, _) = boot(&image, line, &sys, Mode::Boot);
    let net: Ipv4Net = "10.0.2.15/24".parse().unwrap();
    assert!(sys.calls().contains(&Call::AddAddress(3, net)), "configured on BOOTIF='s eth1: {:#?}", sys.calls());
    let files = outcomes.iter().find_map(|o| match &o.step {
        Step::NetworkFiles { interface } => Some(interface.clone()),
        _ => None,
    });
    assert_eq!(files.as_deref(), Some("eth0"));
}

/// A client with three NICs and no address: eth0 (index 2) up with carrier, eth1 (3) and
/// eth2 (4) down with a cable in; the DHCP server answers only the MAC ending in `answered`.
fn three_nics(fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static, answered: u8) -> Fake {
    let mut sys = fake(fail);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    for (index, name) in [(3, "eth1"), (4, "eth2")] {
        let mac = Some([0x52, 0x54, 0, 0x12, 0x34, 0x54 + index as u8]);
        let down = Interface { index, name: name.into(), mac, up: false, carrier: false, ..sys.interfaces[0].clone() };
        sys.interfaces.push(down);
        sys.cabled.push(index);
    }
    let mut server = dhcp_server();
    let only = move |bytes: &[u8], now| match bytes.get(28 + 5) == Some(&answered) {
        true => server(bytes, now),
        false => vec![],
    };
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(Box::new(only))));
    sys
}

fn transports(calls: &[Call]) -> BTreeSet<u32> {
    calls.iter().filter_map(|c| if let Call::DhcpTransport(i, _) = c { Some(*i) } else { None }).collect()
}

/// No interface named: every one is asked at once, the first lease is kept and only its
/// interface configured; the links set up for nothing are set down again (as the kernel's
/// ipconfig does), the one that was up stays up.
#[test]
fn without_a_named_interface_every_one_is_asked_and_the_first_lease_kept() {
    let image = Image::new("anynic");
    let r = &image.0;
    let sys = three_nics(|_| None, 0x57);
    let (outcomes, ended) = boot(&image, "", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
    let calls = sys.calls();
    assert_eq!(transports(&calls), BTreeSet::from([2, 3, 4]), "all three asked");
    let net = "10.0.2.15/24".parse().unwrap();
    let configured: Vec<&Call> =
        calls.iter().filter(|c| matches!(c, Call::AddAddress(..) | Call::AddDefaultRoute(..))).collect();
    let gateway = std::net::Ipv4Addr::new(10, 0, 2, 2);
    assert_eq!(configured, [&Call::AddAddress(3, net), &Call::AddDefaultRoute(3, gateway, false)]);
    let links: Vec<&Call> = calls.iter().filter(|c| matches!(c, Call::LinkUp(_) | Call::LinkDown(_))).collect();
    assert_eq!(links, [&Call::LinkUp(3), &Call::LinkUp(4), &Call::LinkDown(4)]);
    let dhcp = outcomes.iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
    assert!(dhcp.detail.contains("on eth1 (first to answer; also asked: eth0, eth2)"), "{}", dhcp.detail);
    let report = read_report(r).dhcp.unwrap();
    assert_eq!((report.interface.as_str(), report.exchange), ("eth1", Exchange::Discover));
    assert_eq!(report.asked, ["eth0", "eth1", "eth2"]);
    assert!(r.join("run/net-eth1.conf").exists() && !r.join("run/net-eth0.conf").exists());
}

/// A named interface (`ip=` device, `BOOTIF=`) is the only one asked, as before.
#[test]
fn a_named_interface_is_the_only_one_asked() {
    for cmdline in ["ip=:::::eth1:dhcp", "BOOTIF=01-52-54-00-12-34-57"] {
        let image = Image::new("onenic");
        let sys = three_nics(|_| None, 0x57);
        let (outcomes, ended) = boot(&image, cmdline, &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{cmdline}: {outcomes:#?}");
        let calls = sys.calls();
        assert_eq!(transports(&calls), BTreeSet::from([3]), "{cmdline}");
        assert!(!calls.iter().any(|c| matches!(c, Call::LinkDown(_))), "{cmdline}");
        assert_eq!(read_report(&image.0).dhcp.unwrap().asked, ["eth1"], "{cmdline}");
    }
}

/// Without any answer: no carrier on any link is today's error; links with carrier and no
/// lease are each named with why.
#[test]
fn no_lease_on_any_interface_says_why_for_each() {
    let dhcp_error = |sys: &Fake| {
        let image = Image::new("nonic");
        let (outcomes, ended) = boot(&image, "stateless.dhcp.timeout=7 stateless.emergency=reboot", sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake reboot"));
        let dhcp = outcomes.into_iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
        assert_eq!(dhcp.status, Status::Failed);
        dhcp.error.unwrap()
    };
    let mut sys = three_nics(|_| None, 0);
    sys.interfaces[0].carrier = false;
    sys.cabled.clear();
    let error = dhcp_error(&sys);
    assert_eq!((error.message.as_str(), error.path), ("no carrier within 7 s", None));
    assert!(transports(&sys.calls()).is_empty());
    let sys = three_nics(|_| None, 0);
    let error = dhcp_error(&sys);
    assert!(error.message.starts_with("no lease on any interface: eth0: no lease after "), "{error}");
    assert!(error.message.contains("; eth1: no lease after") && error.message.contains("; eth2: "), "{error}");
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::AddAddress(..) | Call::LinkDown(_))));
}

/// A netlink dump that fails while clients are asking stops none of them: the next poll
/// finds the links that got carrier meanwhile.
#[test]
fn a_failed_poll_during_the_race_stops_no_client() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let image = Image::new("pollnic");
    // 0: no client yet; 1: one asks, the next dump fails; 2: failed once.
    let state = std::sync::Arc::new(AtomicU8::new(0));
    let sys = three_nics(
        move |c| match c {
            Call::DhcpTransport(..) => {
                let _ = state.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
                None
            }
            Call::Interfaces => state
                .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
                .then_some(rustix::io::Errno::NOBUFS.raw_os_error()),
            _ => None,
        },
        0x57,
    );
    let (outcomes, ended) = boot(&image, "stateless.emergency=reboot", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    assert_eq!(read_report(&image.0).dhcp.unwrap().interface, "eth1");
}

/// A client thread that panics (an unwinding build) is a failed interface, not a failed boot.
#[test]
fn a_client_that_panics_is_one_interface_failed() {
    let image = Image::new("panicnic");
    let sys = three_nics(|c| if let Call::DhcpTransport(2, _) = c { panic!("eth0's client") } else { None }, 0x57);
    let (outcomes, ended) = boot(&image, "stateless.emergency=reboot", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let report = read_report(&image.0).dhcp.unwrap();
    assert_eq!((report.interface.as_str(), report.asked.len()), ("eth1", 3));
}

/// A static line's name servers go to resolv.conf over what the INFORM got (10.0.2.3);
/// `stateless.dhcp.inform=no` sends nothing and the name falls back.
#[test]
fn static_ip_lines_servers_and_the_inform_switch() {
    let image = Image::new("static-servers");
    let r = &image.0;
    let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:192.0.2.53:192.0.2.54:192.0.2.123";
    let mut sys = fake(|_| None);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
    let (outcomes, _) = boot(&image, line, &sys, Mode::Boot);
    assert!(sys.calls().iter().any(|c| matches!(c, Call::DhcpTransport(..))), "INFORM by default");
    let resolv = std::fs::read_to_string(r.join("etc/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch lab.example\n"), "{resolv}");
    assert!(!resolv.contains("10.0.2.3"), "{resolv}");
    let klibc = std::fs::read_to_string(r.join("run/net-eth0.conf")).unwrap();
    assert!(klibc.contains("IPV4DNS0='192.0.2.53'") && klibc.contains("HOSTNAME='lab3-12'"), "{klibc}");
    let files = outcomes.iter().find(|o| matches!(o.step, Step::NetworkFiles { .. })).unwrap();
    assert!(files.detail.ends_with("; dns 192.0.2.53 192.0.2.54, ntp 192.0.2.123 from ip="), "{files:#?}");

    let image = Image::new("static-no-inform");
    let mut sys = fake(|_| None);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
    let (outcomes, _) = boot(&image, &format!("{line} stateless.dhcp.inform=no"), &sys, Mode::Boot);
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::DhcpTransport(..))), "nothing sent: {:#?}", sys.calls());
    assert!(sys.calls().contains(&Call::Sethostname("Node15".into())), "{:#?}", sys.calls());
    assert!(!outcomes.iter().any(|o| matches!(o.step, Step::Dhcp { .. })));
    let resolv = std::fs::read_to_string(image.0.join("etc/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 192.0.2.53\n"), "{resolv}");

    // On-root mode, the kernel's DHCP ran all the same (several NICs, no <device>): it
    // dropped the line's servers, and /proc/net/pnp's are the ones.
    let image = Image::new("static-kernel-dhcp");
    let mut sys = fake(|_| None);
    let pnp = "#PROTO: DHCP\ndomain lab.example\nnameserver 10.0.2.3\nbootserver 10.0.2.2\n";
    sys.proc.insert("net/pnp".into(), pnp.into());
    let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0:lab3-12::off:192.0.2.53";
    let (outcomes, _) = boot(&image, line, &sys, Mode::Boot);
    let resolv = std::fs::read_to_string(image.0.join("etc/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 10.0.2.3\n") && !resolv.contains("192.0.2.53"), "{resolv}");
    let files = outcomes.iter().find(|o| matches!(o.step, Step::NetworkFiles { .. })).unwrap();
    assert!(!files.detail.contains("from ip="), "{files:#?}");
}

/// `ip=dhcp,<type>,<id>`: the server sees that client id in every message.
#[test]
fn dhcp_client_id_from_the_ip_line_is_sent() {
    use dhcproto::v4::{DhcpOption, Message, OptionCode};
    use dhcproto::{Decodable, Decoder};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ids = seen.clone();
    let mut server = dhcp_server();
    let recording: crate::net::dhcp::client::testing::Server = Box::new(move |bytes: &[u8], now| {
        let m = Message::decode(&mut Decoder::new(bytes)).unwrap();
        ids.lock().unwrap().push(m.opts().get(OptionCode::ClientIdentifier).cloned());
        server(bytes, now)
    });
    let image = Image::new("client-id");
    let mut sys = fake(|_| None);
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(recording)));
    let (outcomes, ended) = boot(&image, "ip=dhcp,0,lab3-12", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
    let id = Some(DhcpOption::ClientIdentifier(b"\x00lab3-12".to_vec()));
    assert_eq!(*seen.lock().unwrap(), [id.clone(), id], "DISCOVER and REQUEST");
}

#[test]
fn no_lease_is_a_fatal_step_the_policy_decides() {
    let image = Image::new("nolease");
    let mut sys = fake(|_| None);
    sys.interfaces[0].addrs.clear();
    let (outcomes, ended) = boot(&image, "stateless.emergency=reboot", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake reboot"));
    let dhcp = outcomes.iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
    assert_eq!(dhcp.status, Status::Failed);
    assert_eq!(dhcp.error.as_ref().map(|e| e.op), Some(Op::Dhcp));
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::AddAddress(..))));
}

#[test]
fn a_scratch_disk_that_is_not_there_leaves_the_upper_dirs_in_memory() {
    let image = Image::new("noscratch");
    let sys = fake(|_| None);
    let (outcomes, ended) = boot(&image, "stateless.scratch=lab-scratch stateless.swap=lab-swap", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "degradable: the boot goes on");
    let of = |f: &dyn Fn(&Step) -> bool| outcomes.iter().find(|o| f(&o.step)).unwrap();
    let scratch = of(&|s| matches!(s, Step::Scratch { .. }));
    assert_eq!(scratch.status, Status::Failed);
    let why = scratch.error.as_ref().unwrap().to_string();
    assert!(why.contains("no filesystem labelled lab-scratch on the 0 block devices"), "{why}");
    let etc = of(&|s| matches!(s, Step::WritableDir { dir, .. } if *dir == DirName::ETC));
    assert!(etc.detail.contains("on the tmpfs at /run/stateless/rw/etc"), "{}", etc.detail);
    let swap = of(&|s| matches!(s, Step::Swap { .. }));
    assert_eq!((swap.status, swap.detail.as_str()), (Status::Degraded, "none on the 0 block devices"));
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Swapon(_))));
    // `apply` mounts no disk: its upper dirs stay on their tmpfs too.
    let sys = fake(|_| None);
    let (outcomes, _) = boot(&image, "stateless.scratch=lab-scratch", &sys, Mode::Apply);
    let etc =
        outcomes.iter().find(|o| matches!(&o.step, Step::WritableDir { dir, .. } if *dir == DirName::ETC)).unwrap();
    assert!(etc.detail.contains("on the tmpfs at /run/stateless/rw/etc"), "{}", etc.detail);
}

#[test]
fn without_a_tmpfs_run_no_utab_lands_in_the_image() {
    // /run not mounted (its tmpfs failed; the dirs went to copy mode): the mount is left
    // unmarked rather than run/mount/utab written into the image.
    let image = Image::new("no-run-utab");
    let sys = fake(|_| None);
    let executor = image.executor(&sys, "", Mode::Boot);
    assert_eq!(executor.mark_extrinsic("tmpfs", &DirName::ETC), "");
    assert!(!image.0.join("run/mount").exists(), "written into the image's /run");
    sys.mount("tmpfs", &image.0.join("run"), "tmpfs", MountFlags::empty(), "").unwrap();
    assert_eq!(executor.mark_extrinsic("tmpfs", &DirName::ETC), "; x-initrd.mount in /run/mount/utab");
    let utab = std::fs::read_to_string(image.0.join("run/mount/utab")).unwrap();
    assert_eq!(utab, "SRC=tmpfs TARGET=/etc ROOT=/ OPTS=x-initrd.mount\n");
}

#[test]
fn overlay_failure_falls_back_to_copy_mode_but_never_copies_into_the_image() {
    let image = Image::new("nooverlay");
    let r = image.0.clone();
    let sys = fake(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay").then_some(19));
    let (outcomes, ended) = boot(&image, "stateless.dirs=etc", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "continue is the default policy");
    let m = mounts(&sys.calls());
    assert_eq!(
        m[5..],
        [
            ("tmpfs".into(), r.join("run/stateless/rw/etc")),
            ("overlay".into(), r.join("etc")),
            ("tmpfs".into(), r.join("etc"))
        ]
    );
    assert!(sys.calls().contains(&Call::Umount(r.join("run/stateless/rw/etc"))));
    assert!(sys.calls().contains(&Call::Umount(r.join("etc"))), "the copy-mode tmpfs is taken off again");
    // The fake tmpfs did not appear, so copy mode must refuse to write into the image dir.
    let overlay = outcomes.iter().find(|o| matches!(o.step, Step::Overlay { .. })).unwrap();
    assert_eq!(overlay.status, Status::Failed);
    let error = overlay.error.as_ref().unwrap();
    assert_eq!(error.op, Op::Mount);
    assert!(error.message.contains("still the image dir"), "{error}");
    assert!(!r.join("etc/from-base").exists(), "a layer was written into the read-only image");
    assert!(outcomes.iter().any(|o| o.phase == Phase::Layers && o.detail.contains("1 written, 0 refused")));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
    assert_eq!(report["dirs"], serde_json::json!([{"dir": "etc", "mode": "none"}]));
    assert_eq!(report["degraded"], true);
    assert!(!r.join("etc/hostname").exists());
    assert!(!r.join("run/mount/utab").exists(), "no mount, no utab line");
}

#[test]
fn each_dir_is_reported_as_it_ended_in_the_order_it_got_there() {
    let image = Image::new("dirstates");
    let r = image.0.clone();
    let upper = r.join("run/stateless/rw/var");
    let sys = fake(move |c| matches!(c, Call::Mount { target, .. } if *target == upper).then_some(28));
    let (outcomes, ended) = boot(&image, "stateless.dirs=etc,var", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
    // /var: no tmpfs for its upper dir, then copy mode refused (the fake mounts nothing): the
    // image dir, at its own step; /etc: its overlay after the layers.
    let var =
        outcomes.iter().find(|o| matches!(&o.step, Step::WritableDir { dir, .. } if *dir == DirName::VAR)).unwrap();
    assert_eq!(var.status, Status::Failed);
    let overlays: Vec<&Step> = outcomes.iter().map(|o| &o.step).filter(|s| matches!(s, Step::Overlay { .. })).collect();
    assert_eq!(overlays, [&Step::Overlay { dir: DirName::ETC }]);
    let report = read_report(&r);
    let dirs: Vec<(&str, DirMode)> = report.dirs.iter().map(|d| (d.dir.as_str(), d.mode)).collect();
    assert_eq!(dirs, [("var", DirMode::None), ("etc", DirMode::Overlay)]);
    assert!(outcomes.iter().any(|o| matches!(o.step, Step::HostFiles { .. })), "/etc is writable: its host files");
}

#[test]
fn reboot_policy_stops_the_boot_at_a_fatal_failure() {
    let image = Image::new("reboot");
    let sys = fake(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay").then_some(19));
    let (_, ended) = boot(&image, "stateless.emergency=reboot stateless.mode=overlay", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake reboot"));
    let n = sys.calls().len();
    assert_eq!(
        sys.calls()[n - 3..],
        [Call::Sleep(handoff::EMERGENCY_DELAY), Call::Sync, Call::Reboot { poweroff: false }]
    );
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Exec(..))));
}

#[test]
fn the_chosen_init_first_then_the_fallback_chain() {
    let image = Image::new("fallback");
    // /sbin/init is the only executable: the plan chooses it; when its exec fails (ENOEXEC)
    // the others follow in order, /bin/init last. /bin/sh is never executed as init, not
    // even under the shell policy (a shell as PID 1 panics the kernel when it exits): the
    // emergency runs it as a child, then reboots.
    for (policy, shells) in [("continue", 0), ("shell", 1)] {
        let sys = fake(|c| matches!(c, Call::Exec(..)).then_some(8));
        let cmdline = format!("stateless.init=/nonexistent stateless.emergency={policy}");
        let (outcomes, ended) = boot(&image, &cmdline, &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "{policy}");
        let execs: Vec<PathBuf> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Exec(path, _) => Some(path),
                _ => None,
            })
            .collect();
        assert_eq!(execs, ["/sbin/init", "/nonexistent", "/etc/init", "/bin/init"].map(PathBuf::from));
        let ran = sys.calls().iter().filter(|c| matches!(c, Call::Shell(_))).count();
        assert_eq!(ran, shells, "{policy}");
        assert!(outcomes.iter().any(|o| o.phase == Phase::Report), "the report comes before the handoff");
    }
}

#[test]
fn no_init_at_all_goes_to_the_policy_once() {
    for (policy, shells) in [("continue", 0), ("shell", 1), ("reboot", 0)] {
        let image = Image::new("noinit");
        let sys = fake(|c| matches!(c, Call::Exec(..)).then_some(2));
        let (outcomes, ended) = boot(&image, &format!("stateless.emergency={policy}"), &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "{policy}");
        let last = outcomes.last().unwrap();
        assert_eq!((last.phase, last.status), (Phase::Handoff, Status::Failed));
        let error = last.error.as_ref().unwrap();
        assert_eq!((error.op, error.errno), (Op::Exec, Some(2)));
        assert!(!error.message.contains("/bin/sh"), "never an init: {error}");
        let calls = sys.calls();
        assert_eq!(calls.iter().filter(|c| matches!(c, Call::Shell(_))).count(), shells, "{policy}: {calls:?}");
        let end: Vec<&Call> = calls.iter().rev().take(3).collect();
        assert_eq!(end, [&Call::Reboot { poweroff: false }, &Call::Sync, &Call::Sleep(handoff::EMERGENCY_DELAY)]);
    }
}

#[test]
fn a_domain_longer_than_the_kernel_keeps_is_not_set() {
    let image = Image::new("longdomain");
    let sys = fake(|_| None);
    let domain = format!("{}.{}", "d".repeat(60), "example");
    let (outcomes, _) = boot(&image, &format!("stateless.hostname=lab3-12.{domain}"), &sys, Mode::Boot);
    let calls = sys.calls();
    assert!(calls.contains(&Call::Sethostname("lab3-12".into())));
    assert!(!calls.iter().any(|c| matches!(c, Call::Setdomainname(_))), "{calls:#?}");
    let step = outcomes.iter().find(|o| matches!(o.step, Step::Hostname { .. })).unwrap();
    assert_eq!(step.status, Status::Degraded, "{step:?}");
}

#[test]
fn break_starts_a_shell_before_the_named_step() {
    let image = Image::new("break");
    let sys = fake(|_| None);
    boot(&image, "stateless.break=writable-dirs", &sys, Mode::Boot);
    let calls = sys.calls();
    let shell = calls.iter().position(|c| matches!(c, Call::Shell(_))).unwrap();
    assert!(matches!(&calls[shell + 1], Call::Mount { target, .. } if target.ends_with("run/stateless/rw/etc")));
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::Shell(_))).count(), 1);
}

#[test]
fn apply_mode_neither_sets_the_hostname_nor_execs() {
    let image = Image::new("apply");
    let sys = fake(|_| None);
    let (outcomes, ended) = boot(&image, "stateless.break=writable-dirs", &sys, Mode::Apply);
    assert_eq!(ended, None);
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Exec(..) | Call::Sethostname(_) | Call::Shell(_))));
    assert_eq!(outcomes.last().unwrap().status, Status::Skipped);
}

#[test]
fn only_pid1_loads_modules() {
    let image = Image::new("modules");
    let dir = image.0.join("lib/modules/6.1.0");
    std::fs::create_dir_all(dir.join("kernel/fs/overlayfs")).unwrap();
    std::fs::write(dir.join("modules.dep"), "kernel/fs/overlayfs/overlay.ko:\n").unwrap();
    std::fs::write(dir.join("kernel/fs/overlayfs/overlay.ko"), "").unwrap();
    for mode in [Mode::Apply, Mode::Boot] {
        let mut sys = fake(|_| None);
        sys.proc.insert("filesystems".into(), "nodev\ttmpfs\n".into());
        let (outcomes, _) = boot(&image, "stateless.dirs=etc", &sys, mode);
        let module = outcomes.iter().find(|o| o.phase == Phase::Hardware).unwrap();
        let loads: Vec<Call> = sys.calls().into_iter().filter(|c| matches!(c, Call::LoadModule(..))).collect();
        match mode {
            Mode::Apply => {
                assert_eq!(module.status, Status::Skipped, "{module:?}");
                assert!(loads.is_empty(), "apply loaded {loads:?} into the host's kernel");
            }
            Mode::Boot => {
                assert_eq!(module.status, Status::Ok, "{module:?}");
                assert_eq!(loads, [Call::LoadModule(dir.join("kernel/fs/overlayfs/overlay.ko"), String::new())]);
            }
        }
    }
}

#[test]
fn apply_skips_what_only_pid1_does_before_its_handler_runs() {
    let image = Image::new("pid1-only");
    let sys = fake(|_| None);
    let mut executor = image.executor(&sys, "", Mode::Apply);
    let hostname = crate::model::hostname::Hostname {
        short: "lab3-12".into(),
        domain: None,
        source: crate::model::hostname::Source::Dhcp,
    };
    let mount = NfsMount {
        server: Ipv4Addr::new(10, 0, 2, 2),
        fallbacks: Vec::new(),
        path: "/srv/root".into(),
        version: "3".into(),
        options: Vec::new(),
        read_only: true,
        from: "nfsroot=".into(),
        notes: Vec::new(),
    };
    let address = "10.0.2.15/24".parse().unwrap();
    let skipped = [
        (Step::Module { name: "overlay".into(), needed_for: "overlayfs".into() }, "modules are loaded only at boot"),
        (Step::Dhcp { interface: None, exchange: Exchange::Discover, meanwhile: Vec::new() }, "no DHCP"),
        (Step::Address { interface: None, address, gateway: None }, "no interface is configured"),
        (Step::Hostname { hostname: Some(hostname), rejected: Vec::new() }, "kernel hostname left alone"),
        (Step::NfsRoot { root: Ok(mount) }, "would mount 10.0.2.2:/srv/root (NFSv3, from nfsroot=, read-only)"),
        (Step::Scratch { label: "lab-scratch".into() }, "no disk is mounted"),
        (Step::Swap { wanted: crate::model::options::Swap::Auto }, "the host's swap is left alone"),
        (Step::Handoff { init: Some("/sbin/init".into()), fallbacks: Vec::new() }, "would exec /sbin/init"),
        (Step::Handoff { init: None, fallbacks: vec!["/bin/sh".into()] }, "would exec nothing"),
    ];
    for (step, why) in &skipped {
        executor.run_step(step);
        let outcome = executor.record.outcomes.last().unwrap();
        assert_eq!((outcome.status, outcome.detail.as_str()), (Status::Skipped, format!("not PID 1: {why}").as_str()));
    }
    executor.run_step(&Step::SwitchRoot { new_root: NEW_ROOT.into() });
    assert_eq!(executor.record.outcomes.last().unwrap().detail, "not PID 1");
    assert_eq!(sys.calls(), [], "apply touched the host's kernel");
    // Only with something to do is a step PID 1's: the handler says what is missing.
    executor.run_step(&Step::Hostname { hostname: None, rejected: Vec::new() });
    assert_eq!(executor.record.outcomes.last().unwrap().detail, "no valid hostname from any source");
    executor.run_step(&Step::NfsRoot { root: Err("no root= or nfsroot=".into()) });
    assert_eq!(executor.record.outcomes.last().unwrap().status, Status::Failed);
}

#[test]
fn a_module_the_admin_named_that_finds_no_device_fails_its_step() {
    // ENODEV is no failure for coldplug, but `stateless.modules=` asked for this one.
    let image = Image::new("modules-nodev");
    let dir = image.0.join("lib/modules/6.1.0");
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    std::fs::write(dir.join("modules.dep"), "kernel/pcspkr.ko:\n").unwrap();
    std::fs::write(dir.join("kernel/pcspkr.ko"), "").unwrap();
    let sys = fake(|c| matches!(c, Call::LoadModule(..)).then_some(Errno::NODEV.raw_os_error()));
    let (outcomes, ended) = boot(&image, "stateless.modules=pcspkr", &sys, Mode::Boot);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "not fatal: {outcomes:#?}");
    let step = outcomes.iter().find(|o| matches!(&o.step, Step::Module { name, .. } if name == "pcspkr")).unwrap();
    assert_eq!(step.status, Status::Failed, "{step:?}");
    let error = step.error.as_ref().unwrap();
    assert_eq!(error.errno, Some(Errno::NODEV.raw_os_error()));
    assert!(error.message.ends_with("pcspkr.ko: No such device (os error 19): the module found no device"), "{error}");
}

/// An image with four modules and two devices (a virtio PCI NIC, the PC speaker), and a
/// fake kernel on which loading virtio_pci makes the virtio NIC appear.
/// `host_conf`: a modprobe.d file the host layer brings, which appears in /etc when its
/// overlay is mounted.
fn coldplug_fixture(tag: &str, host_conf: Option<&'static str>) -> (Image, Fake) {
    let image = Image::new(tag);
    let r = image.0.clone();
    let dir = r.join("lib/modules/6.1.0");
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/virtio_pci.ko:\nkernel/virtio_net.ko: kernel/failover.ko\nkernel/failover.ko:\nkernel/pcspkr.ko:\n",
    )
    .unwrap();
    std::fs::write(
            dir.join("modules.alias"),
            "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000001v* virtio_net\nalias platform:pcspkr pcspkr\n",
        )
        .unwrap();
    for m in ["virtio_pci", "virtio_net", "failover", "pcspkr"] {
        std::fs::write(dir.join(format!("kernel/{m}.ko")), "").unwrap();
    }
    let root = r.clone();
    let device = move |bus: &str, name: &str, modalias: &str| {
        let r = &root;
        let path = r.join("sys/devices").join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("modalias"), modalias).unwrap();
        std::fs::create_dir_all(r.join("sys/bus").join(bus).join("devices")).unwrap();
        std::os::unix::fs::symlink(&path, r.join("sys/bus").join(bus).join("devices").join(name)).unwrap();
    };
    device("pci", "0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n");
    device("platform", "pcspkr", "platform:pcspkr\n");
    // Loading the bus driver makes the virtio device appear, as the kernel would.
    let etc = r.join("etc/modprobe.d");
    let sys = fake(move |c| {
        match c {
            Call::LoadModule(p, _) if p.ends_with("virtio_pci.ko") => {
                device("virtio", "virtio0", "virtio:d00000001v00001AF4\n")
            }
            Call::Mount { fstype, target, .. } if fstype == "overlay" && target.ends_with("etc") => {
                if let Some(text) = host_conf {
                    std::fs::create_dir_all(&etc).unwrap();
                    std::fs::write(etc.join("host.conf"), text).unwrap();
                }
            }
            _ => {}
        }
        None
    });
    (image, sys)
}

/// The modules loaded, by file name, with their parameters.
fn loads(sys: &Fake) -> Vec<(String, String)> {
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    sys.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::LoadModule(p, params) => Some((name(&p), params)),
            _ => None,
        })
        .collect()
}

fn pairs<const N: usize>(expected: [(&str, &str); N]) -> Vec<(String, String)> {
    expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn coldplug_after_the_layers_loads_drivers_until_no_new_devices_appear() {
    // On-root mode: the network is up, so coldplug waits for the layers and reads /etc as
    // they made it (written straight into the image here: the fake mounts no overlay).
    let (image, sys) = coldplug_fixture("coldplug", None);
    let r = &image.0;
    std::fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
    std::fs::write(r.join("etc/modprobe.d/lab.conf"), "blacklist pcspkr\noptions failover a=1\n").unwrap();
    let (outcomes, _) = boot(&image, "failover.debug=1", &sys, Mode::Boot);
    let coldplug = outcomes.iter().find(|o| matches!(o.step, Step::Coldplug { .. })).unwrap();
    assert_eq!((coldplug.phase, coldplug.status), (Phase::Devices, Status::Ok), "{coldplug:?}");
    let pass = Pass::Late;
    assert!(
        matches!(&coldplug.step, Step::Coldplug { pass: p, devices: 2, modules } if *p == pass && modules == &["virtio_pci"])
    );
    assert!(coldplug.detail.contains("1 planned, 2 for devices that appeared"), "{}", coldplug.detail);
    let expected = pairs([("virtio_pci.ko", ""), ("failover.ko", "a=1 debug=1"), ("virtio_net.ko", "")]);
    assert_eq!(loads(&sys), expected, "pcspkr is blacklisted");
    let report: crate::boot::report::Report =
        serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
    assert_eq!(report.modules.len(), 3);
    assert!(report.modules.iter().all(|m| m.outcome == crate::kmod::load::LoadOutcome::Loaded));
}

#[test]
fn an_image_with_udev_coldplugs_its_devices_itself() {
    let (image, sys) = coldplug_fixture("coldplug-udev", None);
    let udevd = image.0.join("lib/systemd/systemd-udevd");
    std::fs::create_dir_all(udevd.parent().unwrap()).unwrap();
    std::fs::write(&udevd, "").unwrap();
    std::fs::set_permissions(&udevd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (outcomes, _) = boot(&image, "", &sys, Mode::Boot);
    assert!(!outcomes.iter().any(|o| matches!(o.step, Step::Coldplug { .. })), "{outcomes:#?}");
    assert!(loads(&sys).is_empty());
    let report = std::fs::read_to_string(image.0.join("run/stateless/report.json")).unwrap();
    assert!(report.contains("devices: left to the image's udev (/lib/systemd/systemd-udevd)"), "{report}");
}

#[test]
fn coldplug_before_the_network_when_it_must_come_up_and_the_rest_after_the_layers() {
    let (image, mut sys) = coldplug_fixture("coldplug-early", Some("options virtio_net napi_tx=1\n"));
    let r = &image.0;
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
    // Before the network: the image's modprobe.d and the base layer's; after the layers,
    // /etc as they made it, which here sets an option too late for a module loaded early.
    std::fs::create_dir_all(r.join("diskless/base/etc/modprobe.d")).unwrap();
    std::fs::write(r.join("diskless/base/etc/modprobe.d/lab.conf"), "blacklist pcspkr\noptions failover a=1\n")
        .unwrap();
    let (outcomes, _) = boot(&image, "", &sys, Mode::Boot);
    let phases: Vec<Phase> =
        outcomes.iter().filter(|o| matches!(o.step, Step::Coldplug { .. })).map(|o| o.phase).collect();
    assert_eq!(phases, [Phase::Hardware, Phase::Devices], "{outcomes:#?}");
    let expected = pairs([("virtio_pci.ko", ""), ("failover.ko", "a=1"), ("virtio_net.ko", ""), ("pcspkr.ko", "")]);
    assert_eq!(loads(&sys), expected, "pcspkr: blacklisted by the base layer only");
    let report: crate::boot::report::Report =
        serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
    let note =
        "module virtio_net: the layers set options \"napi_tx=1\", but it was loaded before the network with \"\"";
    assert!(report.notes.iter().any(|n| n == note), "{:?}", report.notes);
    let dhcp = outcomes.iter().position(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
    assert!(outcomes.iter().position(|o| o.phase == Phase::Hardware).unwrap() < dhcp);
}

/// An initramfs (holding only stateless) whose NFS root, once "mounted" by the fake, is a
/// small image at /root; a client without an address, and a DHCP server.
fn initramfs(tag: &str, fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) -> (Image, Fake) {
    let image = Image::new(tag);
    std::fs::remove_file(image.0.join("sbin/init")).unwrap();
    Image::populate(&image.0.join("root"));
    let mut sys = fake(fail);
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
    (image, sys)
}

/// A root the command line names wrongly fails the root step with its words escaped: the
/// failure is logged as it is.
#[test]
fn a_hostile_root_fails_escaped() {
    let (image, sys) = initramfs("hostile-root", |_| None);
    let cmdline = "root=\x1b[2J\u{202e}x stateless.emergency=reboot";
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"));
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    let message = &failed.error.as_ref().unwrap().message;
    assert_eq!(
        message,
        "root=\\x1b[2J\\xe2\\x80\\xaex is not an NFS root (root=/dev/nfs, nfs:…, nfs4:…, <server>:/<path>)"
    );
}

#[test]
fn initramfs_mode_mounts_the_nfs_root_switches_and_boots_it_as_on_root() {
    // The server exports the path over v3 only (a v4 pseudo-root elsewhere, as dracut's
    // TEST-60-NFS server): NFSv4 gives ENOENT, and v3 is tried at once, as mount.nfs does.
    let (image, sys) = initramfs("initramfs", |c| {
        matches!(c, Call::Mount { fstype, .. } if fstype == "nfs4").then_some(rustix::io::Errno::NOENT.raw_os_error())
    });
    let new_root = image.0.join("root");
    // The image's own stateless.conf counts from the switch on.
    std::fs::write(new_root.join("etc/stateless.conf"), "stateless.dirs=etc\n").unwrap();
    let (outcomes, ended) = boot_from(&image, "nfsroot=/srv/img,port=2049", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
    let calls = sys.calls();
    // Each try on a dir of its own (the second, 4.2 refused first), moved onto /root once it
    // mounted: a try given up on that mounts late lands there, never over the root.
    let tries = image.0.join(crate::model::paths::TRIES);
    let nfs = Call::Mount {
        source: "10.0.2.2:/srv/img".into(),
        target: tries.join("2"),
        fstype: "nfs".into(),
        flags: MountFlags::RDONLY,
        data: "vers=3,addr=10.0.2.2,nolock,port=2049".into(),
    };
    let at = |call: &Call| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call:?}: {calls:#?}"));
    assert_eq!(at(&Call::MoveMount(tries.join("2"), new_root.clone())), at(&nfs) + 1);
    assert!(calls
        .iter()
        .any(|c| matches!(c, Call::Mount { target, fstype, .. } if *target == tries.join("1") && fstype == "nfs4")));
    // DHCP first (the server comes from the lease), then the root, the early mounts into it, the switch.
    assert!(at(&Call::AddAddress(2, "10.0.2.15/24".parse().unwrap())) < at(&nfs));
    // The NFS client is loaded while DHCP waits on the network.
    assert!(outcomes.iter().any(|o| matches!(&o.step, Step::Dhcp { meanwhile, .. } if meanwhile == &["nfsv4"])));
    let tried: Vec<&Call> =
        calls.iter().filter(|c| matches!(c, Call::Mount { fstype, .. } if fstype.starts_with("nfs"))).collect();
    assert_eq!(tried.len(), 2, "4.2 refused with ENOENT, then 3 at once: {tried:?}");
    assert!(!calls[..at(&nfs)].iter().any(|c| matches!(c, Call::Sleep(_))), "no backoff between versions");
    let moved: Vec<&Call> =
        calls.iter().filter(|c| matches!(c, Call::MoveMount(from, _) if !from.starts_with(&tries))).collect();
    assert_eq!(moved.len(), 5, "{moved:?}");
    assert_eq!(moved[0], &Call::MoveMount(image.0.join("dev"), new_root.join("dev")));
    assert!(at(&nfs) < at(moved[0]) && at(moved[4]) < at(&Call::SwitchRoot(new_root.clone())));
    // The root checked before anything moved: the init the image's stateless.conf leaves.
    assert!(at(&nfs) < at(&Call::Read(new_root.join("sbin/init"))));
    assert!(at(&Call::Read(new_root.join("sbin/init"))) < at(moved[0]));
    // After the switch everything happens in the new root, as in on-root mode.
    let etc = calls.iter().position(|c| matches!(c, Call::Mount { target, .. } if *target == new_root.join("etc")));
    assert!(etc.is_some_and(|e| e > at(&Call::SwitchRoot(new_root.clone()))), "{calls:#?}");
    assert!(!calls.iter().any(|c| matches!(c, Call::Mount { target, .. } if *target == new_root.join("var"))));
    let report = std::fs::read_to_string(new_root.join("run/stateless/report.json")).unwrap();
    assert!(report.contains("\"step\": \"switch-root\""), "{report}");
    let mounted = read_report(&new_root).nfs_root.unwrap();
    assert_eq!((mounted.version.as_str(), mounted.dropped.len()), ("3", 1));
    assert!(!image.0.join("run/stateless").exists(), "nothing written into the initramfs after the switch");
}

/// An image-file root: its export mounted read-only at /run/stateless/export, the image's
/// head read from the server, the file on a loop device (read-only) mounted on
/// /root as the filesystem its magic names, the root checked in it; the same from dracut's
/// `root=live:nfs://…` and from `stateless.image=` under the NFS root.
#[test]
fn an_image_file_on_the_export_is_the_root() {
    let sum = "5c4c0187115c".repeat(5) + "abcd";
    for (tag, cmdline, export, name) in [
        ("image-live", "root=live:nfs://10.0.2.9/srv/images/x.img", "10.0.2.9:/srv/images", "x.img"),
        ("image-named", "nfsroot=/srv/images,vers=3 stateless.image=current", "10.0.2.2:/srv/images", "current"),
    ] {
        let (image, sys) = initramfs(tag, |_| None);
        let at = image_export(&image, 4096, Some(&sum));
        let root = image.0.join("root");
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        let base = outcomes.iter().find(|o| matches!(&o.step, Step::Layer { name, .. } if name == "base")).unwrap();
        assert_eq!(base.status, Status::Ok, "{base:#?}");
        let calls = sys.calls();
        let pos = |p: &dyn Fn(&Call) -> bool| calls.iter().position(p).unwrap_or_else(|| panic!("{calls:#?}"));
        let on = image.0.join(crate::model::paths::TRIES).join("1");
        let mounted = pos(&|c| {
            matches!(c, Call::Mount { source, target, flags, .. }
                if source == export && *target == on && *flags == MountFlags::RDONLY)
        });
        assert_eq!(pos(&|c| *c == Call::MoveMount(on.clone(), at.clone())), mounted + 1);
        let head_read = pos(&|c| *c == Call::Read(at.join(name)));
        let attached = pos(&|c| *c == Call::AttachLoop(format!("/{name}").into()));
        let on_root = pos(&|c| {
            matches!(c, Call::Mount { source, target, fstype, flags, .. }
                if *source == image.0.join("dev/loop0").to_string_lossy() && *target == root
                    && fstype == "squashfs" && *flags == MountFlags::RDONLY)
        });
        let checked = pos(&|c| *c == Call::Read(root.join("sbin/init")));
        let switched = pos(&|c| *c == Call::SwitchRoot(root.clone()));
        assert!(mounted < head_read && head_read < attached && attached < on_root, "{calls:#?}");
        assert!(on_root < checked && checked < switched, "{calls:#?}");
        // The report names the image each client runs.
        let booted = read_report(&root).image.unwrap();
        assert_eq!(booted.source, format!("{export}/{name}"));
        assert_eq!(booted.target.as_deref(), (name == "current").then_some("x.img"));
        assert_eq!((booted.format, booted.size), (crate::model::image::ImageFormat::Squashfs, 4096));
        assert_eq!(booted.sha256.as_deref(), Some(sum.as_str()));
    }
}

/// The export of an image root as the fake kernel's server has it: `x.img`, `size` bytes
/// starting with squashfs's magic, its .sha256 naming `sum` when given, `current` leading to
/// it as `stateless image publish` leaves it; and the layers beside the image, not in it: on
/// the export, which the switch moves into the image with /run (the fake moves nothing: the
/// moved one is made here too). The export's path.
fn image_export(image: &Image, size: usize, sum: Option<&str>) -> PathBuf {
    let at = image.0.join(EXPORT);
    std::fs::create_dir_all(&at).unwrap();
    let bytes: Vec<u8> = b"hsqs".iter().copied().chain((4..size).map(|i| (i % 251) as u8)).collect();
    std::fs::write(at.join("x.img"), &bytes).unwrap();
    if let Some(sum) = sum {
        std::fs::write(at.join("x.img.sha256"), format!("{sum}  x.img\n")).unwrap();
    }
    std::os::unix::fs::symlink("x.img", at.join("current")).unwrap();
    let root = image.0.join("root");
    std::fs::create_dir_all(root.join(EXPORT)).unwrap();
    std::fs::rename(root.join("diskless"), root.join(EXPORT).join("diskless")).unwrap();
    at
}

/// /proc/meminfo of a machine with 1 GiB, `available_mib` of it available.
fn meminfo(sys: &mut Fake, available_mib: u64) {
    let text = format!("MemTotal: 1048576 kB\nMemAvailable: {} kB\n", available_mib * 1024);
    sys.proc.insert("meminfo".into(), text);
}

const IMAGE_IN_MEMORY: &str = "nfsroot=/srv/images,vers=3 stateless.image=current stateless.image.ram";

/// `stateless.image.ram`: the image copied into memory (its .sha256 checked) before it is
/// attached, the loop device reading the copy through the page cache; the export unmounted
/// once the layers beside the image are in and the overlays are up, before the report. dracut's
/// `rd.live.ram=1` is the same.
#[test]
fn an_image_in_memory_is_checked_and_its_export_unmounted_once_the_layers_are_in() {
    use sha2::Digest;
    let size = (2 << 20) + 5;
    for (tag, cmdline) in [
        ("image-ram", IMAGE_IN_MEMORY.to_string()),
        ("image-rd-live-ram", IMAGE_IN_MEMORY.replace("stateless.image.ram", "rd.live.ram=1")),
    ] {
        let (image, mut sys) = initramfs(tag, |_| None);
        let probe = image_export(&image, size, None);
        let sum: String = sha2::Sha256::digest(std::fs::read(probe.join("x.img")).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(probe.join("x.img.sha256"), format!("{sum}  x.img\n")).unwrap();
        meminfo(&mut sys, 900);
        let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        let root_step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { ram: true, .. })).unwrap();
        let detail = &root_step.detail;
        assert!(
            detail.contains("copied 2 MiB into memory") && detail.contains("sha256 as its .sha256 says"),
            "{detail}"
        );
        // The export goes after the last layer and overlay, before the report.
        let steps: Vec<&Step> = outcomes.iter().map(|o| &o.step).collect();
        let at = |p: &dyn Fn(&Step) -> bool| steps.iter().rposition(|s| p(s)).unwrap_or_else(|| panic!("{steps:#?}"));
        let unmounted = at(&|s| matches!(s, Step::UnmountExport));
        assert!(at(&|s| matches!(s, Step::Layer { .. } | Step::Overlay { .. })) < unmounted, "{steps:#?}");
        assert!(unmounted < at(&|s| matches!(s, Step::Report { .. })), "{steps:#?}");
        let calls = sys.calls();
        let pos = |c: &Call| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("no {c:?}: {calls:#?}"));
        assert!(pos(&Call::MemoryFile("stateless-image".into())) < pos(&Call::AttachLoop("/current".into())));
        // After the switch the export is at the same path in the new root (moved with /run).
        let export = image.0.join("root").join(EXPORT);
        assert!(pos(&Call::SwitchRoot(image.0.join("root"))) < pos(&Call::Umount(export)), "{calls:#?}");
        let booted = read_report(&image.0.join("root")).image.unwrap();
        assert!(booted.in_memory && booted.sha256 == Some(sum), "{booted:?}");
    }
}

/// Several servers, `stateless.image.ram`: a read of the first's image fails at 1 MiB (its
/// server gone: a read with no data for 15 s counts the same); its export is let go of
/// (detached: its server may not answer an unmount), the second's mounted in its place, and the
/// copy goes on at 1 MiB from the same file there: one copy, its sha256 the .sha256's, the
/// report naming the first as failed and why. Another image there (another size) is refused,
/// never mixed in; with no server left the step fails saying so.
#[test]
fn a_copy_into_memory_broken_off_goes_on_from_the_next_server() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let (first, second, _) = two_servers();
    let ram = "stateless.image=current stateless.image.ram stateless.emergency=continue";
    let boot = |tag: &str, servers: &str, then: fn(&Path)| {
        let file = std::sync::Arc::new(std::sync::Mutex::new(PathBuf::new()));
        let (seen, once) = (file.clone(), AtomicBool::new(false));
        let (image, mut sys) = initramfs(tag, move |c| {
            if matches!(c, Call::Detach(_)) {
                then(&seen.lock().unwrap());
            }
            let broken = matches!(c, Call::ReadAt(_, at, _) if *at == 1 << 20) && !once.swap(true, SeqCst);
            broken.then_some(Errno::IO.raw_os_error())
        });
        let at = image_export(&image, (3 << 20) + 5, None);
        *file.lock().unwrap() = at.join("x.img");
        let bytes = std::fs::read(at.join("x.img")).unwrap();
        let sum = crate::model::text::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        std::fs::write(at.join("x.img.sha256"), format!("{sum}  x.img\n")).unwrap();
        meminfo(&mut sys, 900);
        let cmdline = format!("nfsroot={servers}:/srv/images,vers=3 {ram}");
        let (outcomes, _) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
        (image, sys, outcomes, sum)
    };
    let (image, sys, outcomes, sum) = boot("ram-resume", &format!("{first},{second}"), |_| ());
    let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    assert_eq!(step.status, Status::Ok, "{step:#?}");
    assert!(step.detail.contains("copied 3 MiB into memory in "), "{}", step.detail);
    assert!(
        step.detail.contains(&format!(", resumed from {second} at 1 MiB, sha256 as its .sha256 says")),
        "{}",
        step.detail
    );
    let calls = sys.calls();
    let export = image.0.join(EXPORT);
    let pos = |p: &dyn Fn(&Call) -> bool| calls.iter().position(p).unwrap_or_else(|| panic!("{calls:#?}"));
    let broke = pos(&|c| matches!(c, Call::ReadAt(_, at, _) if *at == 1 << 20));
    let detached = pos(&|c| *c == Call::Detach(export.clone()));
    let remounted = pos(&|c| matches!(c, Call::Mount { source, .. } if source.starts_with(&format!("{second}:"))));
    let moved = calls.iter().rposition(|c| matches!(c, Call::MoveMount(_, to) if *to == export)).unwrap();
    let again = calls.iter().rposition(|c| matches!(c, Call::ReadAt(_, at, _) if *at == 1 << 20)).unwrap();
    assert!(broke < detached && detached < remounted && remounted < moved && moved < again, "{calls:#?}");
    // Going on at 1 MiB, not from the start again.
    assert_eq!(calls.iter().filter(|c| matches!(c, Call::ReadAt(_, 0, _))).count(), 1, "{calls:#?}");
    let report = read_report(&image.0.join("root"));
    let mounted = report.nfs_root.unwrap();
    assert_eq!(mounted.server, Some(second));
    let failed: Vec<(Ipv4Addr, &str)> = mounted.failed.iter().map(|f| (f.server, f.reason.as_str())).collect();
    let why = format!("into memory: {first} broke off at 1 MiB: input/output error");
    assert!(failed.iter().any(|(s, r)| *s == first && r.starts_with(&why)), "{failed:?}");
    assert_eq!(report.image.unwrap().sha256, Some(sum));

    // Another image on the second server (a byte longer): refused, never mixed in.
    let (_, sys, outcomes, _) = boot("ram-resume-other", &format!("{first},{second}"), |file| {
        let mut bytes = std::fs::read(file).unwrap();
        bytes.push(0);
        std::fs::write(file, bytes).unwrap();
    });
    let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    let error = step.error.as_ref().unwrap().to_string();
    assert!(error.contains(&format!("on {second} is another image ({} bytes", (3 << 20) + 6)), "{error}");
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::AttachLoop(..))));

    // One server: nowhere to go on from.
    let (_, _, outcomes, _) = boot("ram-resume-alone", &first.to_string(), |_| ());
    let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    let error = step.error.as_ref().unwrap().to_string();
    assert!(error.contains(&format!("into memory: {first} broke off at 1 MiB: input/output error")), "{error}");
    assert!(error.ends_with("; no other server"), "{error}");
}

/// A copy that broke off goes on from a server that mounts, named as the one the bytes came
/// from (three servers, the next refusing: the third), each try of the boot on a dir no other
/// try used. Its reads wait 15 s for data while another live server is left, and as long as a
/// hard mount would (a day) when the one serving it is the only one up.
#[test]
fn a_resumed_copy_names_its_server_and_waits_when_no_other_is_up() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let given = [Ipv4Addr::new(10, 0, 2, 7), Ipv4Addr::new(10, 0, 2, 8), Ipv4Addr::new(10, 0, 2, 9)];
    let ordered = crate::model::servers::order(&given, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    let (a, b, c) = (ordered[0], ordered[1], ordered[2]);
    let boot = |tag: &str, servers: &[Ipv4Addr], down: Vec<Ipv4Addr>, checked: bool| {
        let once = AtomicBool::new(false);
        let refused = servers_fail(down, Errno::CONNREFUSED);
        let (image, mut sys) = initramfs(tag, move |call| {
            let broken = matches!(call, Call::ReadAt(_, at, _) if *at == 1 << 20) && !once.swap(true, SeqCst);
            refused(call).or(broken.then_some(Errno::IO.raw_os_error()))
        });
        let at = image_export(&image, (3 << 20) + 5, None);
        let bytes = std::fs::read(at.join("x.img")).unwrap();
        let sum = crate::model::text::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if checked {
            std::fs::write(at.join("x.img.sha256"), format!("{sum}  x.img\n")).unwrap();
        }
        meminfo(&mut sys, 900);
        let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
        let cmdline = format!(
            "nfsroot={}:/srv/images,vers=3 stateless.image=current stateless.image.ram stateless.emergency=continue",
            servers.join(",")
        );
        let (outcomes, _) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
        (image, sys, outcomes)
    };
    let (image, sys, outcomes) = boot("ram-resume-third", &[a, b, c], vec![b], true);
    let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    assert_eq!(step.status, Status::Ok, "{step:#?}");
    assert!(step.detail.contains(&format!("resumed from {c} at 1 MiB")), "{}", step.detail);
    assert_eq!(read_report(&image.0.join("root")).nfs_root.unwrap().server, Some(c));
    let on: Vec<PathBuf> = sys
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            Call::Mount { fstype, target, .. } if fstype.starts_with("nfs") => Some(target),
            _ => None,
        })
        .collect();
    let tries = image.0.join(crate::model::paths::TRIES);
    assert_eq!(on, [tries.join("1"), tries.join("2"), tries.join("3")], "a dir each");
    let bounds = |sys: &Fake| -> Vec<u64> {
        let mut b: Vec<u64> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::ReadAt(_, _, bound) => Some(bound.as_secs()),
                _ => None,
            })
            .collect();
        b.dedup();
        b
    };
    // a and c up while copying from a: 15 s; from c, every other given up on: a day.
    assert_eq!(bounds(&sys), [15, 24 * 3600]);

    // The first down: the second is the only one up, its reads are waited for.
    let (_, sys, _) = boot("ram-resume-alone-up", &[a, b], vec![a], true);
    assert_eq!(bounds(&sys)[0], 24 * 3600);

    // Nothing to check the whole with (no .sha256, no dm-verity): not resumed, never mixed.
    let (_, _, outcomes) = boot("ram-resume-unchecked", &[a, b, c], vec![], false);
    let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    let error = step.error.as_ref().unwrap().to_string();
    assert!(error.contains("; not resumed from another server: without a .sha256 beside it or dm-verity"), "{error}");
}

/// An image whose superblock the kernel refuses (EINVAL from squashfs), or no loop device for
/// it, fails the root step with the file named, before the switch; a loop device goes with it
/// (autoclear).
#[test]
fn an_image_the_kernel_will_not_mount_fails_the_root_with_the_file_named() {
    let einval = |c: &Call| {
        matches!(c, Call::Mount { fstype, .. } if fstype == "squashfs").then_some(Errno::INVAL.raw_os_error())
    };
    let (image, sys) = initramfs("image-corrupt", einval);
    let at = image_export(&image, 4096, None);
    let cmdline = "nfsroot=/srv/images,vers=3 stateless.image=/x.img stateless.emergency=continue";
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap();
    assert_eq!(error.errno, Some(Errno::INVAL.raw_os_error()));
    let expected = format!(
        "mount {}: as squashfs on {}: invalid argument",
        at.join("x.img").display(),
        image.0.join("dev/loop0").display()
    );
    assert!(error.to_string().starts_with(&expected), "{error}");
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::SwitchRoot(..))));
    // No loop device (no loop module, none free): the same, before any mount of it.
    let (image, sys) =
        initramfs("image-no-loop", |c| matches!(c, Call::AttachLoop(..)).then_some(Errno::NODEV.raw_os_error()));
    let at = image_export(&image, 4096, None);
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap().to_string();
    assert_eq!(error, format!("mount {}: no such device (os error 19)", at.join("x.img").display()));
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "squashfs")));
}

/// EROFS mounts the image file itself where the kernel can (6.12), by the name `current` led
/// to, no loop device; a kernel that cannot (ENOTBLK: 6.1) gets it on a loop device.
#[test]
fn an_erofs_image_is_mounted_as_a_file_where_the_kernel_can() {
    let notblk = |c: &Call| {
        let file = matches!(c, Call::Mount { source, fstype, .. } if fstype == "erofs" && source.ends_with("x.img"));
        file.then_some(Errno::NOTBLK.raw_os_error())
    };
    for (tag, fail) in [("erofs-file", (|_| None) as fn(&Call) -> Option<i32>), ("erofs-loop", notblk)] {
        let (image, sys) = initramfs(tag, fail);
        let at = image_export(&image, 4096, None);
        let mut erofs = vec![0u8; 4096];
        erofs[1024..1028].copy_from_slice(&[0xE2, 0xE1, 0xF5, 0xE0]);
        std::fs::write(at.join("x.img"), erofs).unwrap();
        let cmdline = "nfsroot=/srv/images,vers=3 stateless.image=current";
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{tag}: {outcomes:#?}");
        let calls = sys.calls();
        let erofs: Vec<&Call> =
            calls.iter().filter(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "erofs")).collect();
        let on_file = matches!(erofs[0], Call::Mount { source, flags, .. }
            if *source == at.join("x.img").to_string_lossy() && *flags == MountFlags::RDONLY);
        assert!(on_file, "{tag}: by the name current leads to: {erofs:?}");
        let looped = calls.iter().any(|c| *c == Call::AttachLoop("/current".into()));
        match tag {
            "erofs-file" => assert!(erofs.len() == 1 && !looped, "{tag}: {calls:#?}"),
            _ => {
                let on_loop = matches!(erofs.get(1), Some(Call::Mount { source, .. }) if source.ends_with("dev/loop0"));
                assert!(looped && on_loop, "{tag}: {calls:#?}");
            }
        }
        let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
        assert_eq!(step.status, Status::Ok, "{step:#?}");
    }
}

/// An image in memory that does not fit, whose copy does not hash to its .sha256, or whose
/// memory file cannot be made fails the root step before anything is attached: every policy
/// reboots, with why in the log.
#[test]
fn an_image_that_does_not_fit_or_is_damaged_fails_before_it_is_attached() {
    let enomem = |c: &Call| matches!(c, Call::MemoryFile(_)).then_some(Errno::NOMEM.raw_os_error());
    type Fails = fn(&Call) -> Option<i32>;
    let cases: [(&str, u64, Option<&str>, Fails, &str); 4] = [
        ("ram-too-big", 200, None, |_| None, "does not fit into memory: 200 MiB available of 1024 MiB"),
        ("ram-damaged", 900, Some(&"0".repeat(64)), |_| None, "its .sha256 says 0000"),
        ("ram-enomem", 900, None, enomem, "cannot allocate memory"),
        ("ram-no-meminfo", 0, None, |_| None, "/proc/meminfo"),
    ];
    for (tag, available, sum, fail, why) in cases {
        let (image, mut sys) = initramfs(tag, fail);
        image_export(&image, 4096, sum);
        if available > 0 {
            meminfo(&mut sys, available);
        }
        let (outcomes, ended) = boot_from(&image, IMAGE_IN_MEMORY, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "{tag}: {outcomes:#?}");
        let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
        let message = failed.error.as_ref().unwrap().to_string();
        assert!(message.contains(why), "{tag}: {message}");
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::AttachLoop(..) | Call::SwitchRoot(..))), "{tag}: {calls:#?}");
    }
}

/// A missing image, or a file that is no squashfs or EROFS image, fails the root step
/// before anything moves: every policy then reboots.
#[test]
fn a_missing_or_foreign_image_file_fails_the_root_before_the_switch() {
    for (tag, content, why) in [
        ("image-missing", None, "x.img: no such file"),
        ("image-foreign", Some(b"\x7fELF".repeat(300)), "not a squashfs or EROFS image"),
    ] {
        let (image, sys) = initramfs(tag, |_| None);
        let at = image.0.join(EXPORT);
        std::fs::create_dir_all(&at).unwrap();
        if let Some(content) = content {
            std::fs::write(at.join("x.img"), content).unwrap();
        }
        let cmdline = "nfsroot=/srv/images,vers=3 stateless.image=/x.img stateless.emergency=continue";
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
        let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
        let message = failed.error.as_ref().unwrap().to_string();
        assert!(message.contains(why), "{message}");
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::AttachLoop(..) | Call::SwitchRoot(..))), "{calls:#?}");
    }
}

#[test]
fn an_nfs_server_that_never_answers_ends_in_the_policy_within_the_bound() {
    // The server refuses NFSv4.2 and never answers 4.1.
    let (image, sys) = initramfs("nfs-down", |c| match c {
        Call::Mount { data, .. } if data.starts_with("vers=4.2") => {
            Some(rustix::io::Errno::PROTONOSUPPORT.raw_os_error())
        }
        Call::Mount { fstype, .. } if fstype.starts_with("nfs") => Some(libc_etimedout()),
        _ => None,
    });
    let cmdline = "root=nfs4:10.0.2.9:/img stateless.nfs.timeout=20 stateless.emergency=continue";
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "no root: every policy ends in a reboot");
    let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    let error = root.error.as_ref().unwrap();
    assert_eq!(error.errno, Some(libc_etimedout()));
    assert!(error.message.contains("gave up after") && error.message.contains("10.0.2.9:/img"), "{error}");
    let calls = sys.calls();
    let slept = slept_before_reboot(&calls);
    assert_eq!(slept, Duration::from_secs(20), "tries until the bound, the last one at it");
    // NFSv4 minor versions newest first, an older one only when the server refuses the
    // newer: 4.1 times out, so each round starts again at 4.2 and 4.0 is never tried.
    let tried: Vec<String> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Mount { data, .. } if data.starts_with("vers=4") => Some(data[..8].to_string()),
            _ => None,
        })
        .take(4)
        .collect();
    assert_eq!(tried, ["vers=4.2", "vers=4.1", "vers=4.2", "vers=4.1"]);
    assert!(!calls.iter().any(|c| matches!(c, Call::SwitchRoot(_))));
}

#[test]
fn an_initramfs_without_the_nic_s_driver_ends_in_the_policy_within_the_bound() {
    // No driver for the NIC in the initramfs: no interface ever appears, and without one
    // the kernel has no route to the server.
    let unreachable = rustix::io::Errno::NETUNREACH.raw_os_error();
    let (image, mut sys) = initramfs("no-nic", move |c| {
        matches!(c, Call::Mount { fstype, .. } if fstype.starts_with("nfs")).then_some(unreachable)
    });
    sys.interfaces.retain(|i| i.loopback);
    let bounds = "stateless.dhcp.timeout=7 stateless.nfs.timeout=5";
    let cmdline = format!("nfsroot=10.0.2.2:/srv/img {bounds} stateless.emergency=continue");
    let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "no root: every policy ends in a reboot");
    let dhcp = outcomes.iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
    assert_eq!(dhcp.status, Status::Failed);
    let error = dhcp.error.as_ref().unwrap();
    assert!(error.message.contains("no such network interface within 7 s"), "{error}");
    // `continue` still tries the root (its server is known), within its own bound.
    let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    assert_eq!(root.error.as_ref().and_then(|e| e.errno), Some(unreachable), "{root:?}");
    let calls = sys.calls();
    let slept = slept_before_reboot(&calls);
    assert!(slept <= Duration::from_secs(7 + 5), "waited {slept:?}");
    assert!(!calls.iter().any(|c| matches!(c, Call::SwitchRoot(_))));
}

/// The time the boot slept (retry pauses, carrier polls) before the emergency reboot,
/// without the emergency's own pause.
fn slept_before_reboot(calls: &[Call]) -> Duration {
    calls
        .iter()
        .take_while(|c| !matches!(c, Call::Reboot { .. }))
        .filter_map(|c| match c {
            Call::Sleep(d) if *d < handoff::EMERGENCY_DELAY => Some(*d),
            _ => None,
        })
        .sum()
}

fn libc_etimedout() -> i32 {
    rustix::io::Errno::TIMEDOUT.raw_os_error()
}

/// Fails the root check's reads with `errno` while the NFS root is mounted with one of
/// `versions`, as a server does whose NFSv4.2 READ_PLUS is broken.
fn reads_fail(versions: &'static [&'static str], errno: Errno) -> impl Fn(&Call) -> Option<i32> + Send + Sync {
    let mounted = std::sync::Mutex::new(String::new());
    move |c| match c {
        Call::Mount { fstype, data, .. } if fstype.starts_with("nfs") => {
            data.clone_into(&mut mounted.lock().unwrap());
            None
        }
        Call::Read(_) => {
            let data = mounted.lock().unwrap();
            versions.iter().any(|v| data.starts_with(&format!("vers={v},"))).then_some(errno.raw_os_error())
        }
        _ => None,
    }
}

/// The NFS versions mounted, in order, with `umount` where the root was unmounted.
fn nfs_versions(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Mount { fstype, data, .. } if fstype.starts_with("nfs") => data.split(',').next().map(str::to_string),
            Call::Umount(_) => Some("umount".into()),
            _ => None,
        })
        .collect()
}

fn read_report(root: &Path) -> crate::boot::report::Report {
    serde_json::from_str(&std::fs::read_to_string(root.join("run/stateless/report.json")).unwrap()).unwrap()
}

use rustix::io::Errno;

#[test]
fn a_root_that_gives_eio_with_nfsv4_2_is_mounted_again_with_4_1() {
    let (image, sys) = initramfs("eio-4.2", reads_fail(&["4.2"], Errno::IO));
    let new_root = image.0.join("root");
    let (outcomes, ended) = boot_from(&image, "root=nfs4:10.0.2.9:/img", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let calls = sys.calls();
    assert_eq!(nfs_versions(&calls), ["vers=4.2", "umount", "vers=4.1"]);
    assert!(calls.contains(&Call::Umount(new_root.clone())));
    let reads = calls.iter().filter(|c| **c == Call::Read(new_root.join("sbin/init"))).count();
    assert_eq!(reads, 2, "checked with each version");
    let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    assert_eq!(root.status, Status::Ok);
    assert!(root.detail.contains("vers=4.1") && root.detail.contains("of /sbin/init"), "{}", root.detail);
    let mounted = read_report(&new_root).nfs_root.unwrap();
    assert_eq!((mounted.version.as_str(), mounted.init.as_str(), mounted.init_bytes), ("4.1", "/sbin/init", 10));
    let reason = format!("read {}: input/output error (os error 5)", new_root.join("sbin/init").display());
    assert_eq!(mounted.dropped, [Dropped { version: "4.2".into(), reason }]);
}

#[test]
fn a_version_the_server_refuses_is_named_in_the_report_too() {
    let refused = Errno::PROTONOSUPPORT.raw_os_error();
    let (image, sys) = initramfs("refused-4.2", move |c| {
        matches!(c, Call::Mount { data, .. } if data.starts_with("vers=4.2")).then_some(refused)
    });
    let (outcomes, ended) = boot_from(&image, "root=nfs4:10.0.2.9:/img", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let mounted = read_report(&image.0.join("root")).nfs_root.unwrap();
    assert_eq!(mounted.version, "4.1");
    assert_eq!(mounted.dropped.len(), 1);
    assert!(mounted.dropped[0].reason.starts_with("mount: protocol not supported"), "{mounted:?}");
}

/// Two servers for the fixture's client (its MAC, 52:54:00:12:34:56): the one it tries first,
/// as rendezvous hashing orders them, then the other; the command line names them the other way.
fn two_servers() -> (Ipv4Addr, Ipv4Addr, String) {
    let given = [Ipv4Addr::new(10, 0, 2, 8), Ipv4Addr::new(10, 0, 2, 9)];
    let ordered = crate::model::servers::order(&given, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
    let cmdline = format!("nfsroot={},{}:/srv/img,vers=3", ordered[1], ordered[0]);
    (ordered[0], ordered[1], cmdline)
}

/// Fails every NFS mount of the root from one of `servers` with `errno`.
fn servers_fail(servers: Vec<Ipv4Addr>, errno: Errno) -> impl Fn(&Call) -> Option<i32> + Send + Sync {
    move |c| {
        let from = |source: &str| servers.iter().any(|s| source.starts_with(&format!("{s}:")));
        matches!(c, Call::Mount { fstype, source, .. } if fstype.starts_with("nfs") && from(source))
            .then_some(errno.raw_os_error())
    }
}

/// The NFS root's mounts (their servers) and the pauses between them, in order.
fn servers_and_pauses(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .take_while(|c| !matches!(c, Call::Reboot { .. }))
        .filter_map(|c| match c {
            Call::Mount { fstype, source, .. } if fstype.starts_with("nfs") => source.split(':').next().map(Into::into),
            Call::Sleep(d) if *d < handoff::EMERGENCY_DELAY => Some("sleep".into()),
            _ => None,
        })
        .collect()
}

/// Several servers: the client starts with the one its MAC weighs highest (whatever order the
/// command line gives) and, when that one refuses or does not answer, mounts the next at once;
/// the report names the server used and the one that failed, and why.
#[test]
fn a_server_that_refuses_or_does_not_answer_gives_way_to_the_next_at_once() {
    let (first, second, cmdline) = two_servers();
    for errno in [Errno::CONNREFUSED, Errno::TIMEDOUT] {
        let (image, sys) = initramfs(&format!("servers-{}", errno.raw_os_error()), servers_fail(vec![first], errno));
        let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        assert_eq!(servers_and_pauses(&sys.calls()), [first.to_string(), second.to_string()]);
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        assert_eq!(root.status, Status::Ok);
        let listed = format!("nfs root {first},{second}:/srv/img (NFSv3, from nfsroot=, servers tried in this order");
        assert!(root.step.to_string().starts_with(&listed), "{}", root.step);
        assert!(root.detail.contains(&format!("vers=3,addr={second},nolock (2 tries")), "{}", root.detail);
        let mounted = read_report(&image.0.join("root")).nfs_root.unwrap();
        assert_eq!(mounted.server, Some(second));
        let reason = format!("mount: {}", std::io::Error::from(errno).to_string().to_lowercase());
        assert_eq!(mounted.failed, [crate::model::nfsroot::FailedServer { server: first, reason }]);
        // The first try (given up on: it may still mount in the kernel) on a dir of its own, never
        // /root; only the second's mount moved there.
        let tries = image.0.join(crate::model::paths::TRIES);
        let on: Vec<PathBuf> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Mount { fstype, target, .. } if fstype.starts_with("nfs") => Some(target),
                _ => None,
            })
            .collect();
        assert_eq!(on, [tries.join("1"), tries.join("2")]);
        let onto_root: Vec<Call> =
            sys.calls().into_iter().filter(|c| matches!(c, Call::MoveMount(_, to) if to.ends_with("root"))).collect();
        assert_eq!(onto_root, [Call::MoveMount(tries.join("2"), image.0.join("root"))]);
    }
}

/// No server gives the root: each is tried in turn, then the backoff, then the round again;
/// the failure names each server and why.
#[test]
fn when_every_server_fails_the_backoff_comes_after_the_round() {
    let (first, second, cmdline) = two_servers();
    let (image, sys) = initramfs("servers-all-down", servers_fail(vec![first, second], Errno::CONNREFUSED));
    let cmdline = format!("{cmdline} stateless.nfs.timeout=3 stateless.emergency=reboot");
    let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
    let failure = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
    let (first, second) = (first.to_string(), second.to_string());
    let round = [first.as_str(), second.as_str(), "sleep"];
    assert_eq!(servers_and_pauses(&sys.calls()), [round, round].concat());
    for server in [&first, &second] {
        let said = format!("; server {server}: mount: connection refused (os error 111)");
        assert!(failure.message.contains(&said), "{}", failure.message);
    }
    assert_eq!(failure.errno, Some(Errno::CONNREFUSED.raw_os_error()));
}

#[test]
fn an_explicit_nfsv4_2_steps_down_to_4_0_when_4_1_gives_eio_too() {
    let (image, sys) = initramfs("eio-4.1", reads_fail(&["4.2", "4.1"], Errno::IO));
    let (outcomes, ended) = boot_from(&image, "nfsroot=10.0.2.9:/img,vers=4.2", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2", "umount", "vers=4.1", "umount", "vers=4.0"]);
    let mounted = read_report(&image.0.join("root")).nfs_root.unwrap();
    assert_eq!(mounted.version, "4.0");
    assert!(mounted.options.starts_with("vers=4.0,addr=10.0.2.9"), "{}", mounted.options);
    let dropped: Vec<&str> = mounted.dropped.iter().map(|d| d.version.as_str()).collect();
    assert_eq!(dropped, ["4.2", "4.1"]);
}

/// The failed root step of a boot that must end in the policy before anything moved.
fn failed_before_the_switch(outcomes: &[Outcome], sys: &Fake, ended: Option<&str>) -> Failure {
    assert_eq!(ended, Some("fake reboot"), "{outcomes:#?}");
    let calls = sys.calls();
    // The early mounts not moved (a try's NFS mount moves into place on /root: that one counts not).
    let moved = |c: &Call| match c {
        Call::MoveMount(from, _) => !from.ancestors().any(|a| a.ends_with(crate::model::paths::TRIES)),
        Call::SwitchRoot(_) => true,
        _ => false,
    };
    assert!(!calls.iter().any(moved), "{calls:#?}");
    let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    assert_eq!(root.status, Status::Failed);
    root.error.clone().unwrap()
}

#[test]
fn a_root_unreadable_with_every_nfsv4_minor_version_ends_in_the_policy_before_the_switch() {
    let (image, sys) = initramfs("eio-all", reads_fail(&["4.2", "4.1", "4.0"], Errno::IO));
    let cmdline = "root=nfs4:10.0.2.9:/img stateless.emergency=shell";
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
    assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2", "umount", "vers=4.1", "umount", "vers=4.0"]);
    assert_eq!((error.op, error.errno), (Op::Read, Some(Errno::IO.raw_os_error())));
    assert!(error.message.contains("10.0.2.9:/img mounted with NFSv4.0"), "{error}");
    assert!(error.message.contains("; NFSv4.2 dropped: read ") && error.message.contains("; NFSv4.1 dropped"));
    // The shell runs in the initramfs, the root left mounted at /root to look at.
    assert!(sys.calls().contains(&Call::Shell("/bin/sh".into())));
}

#[test]
fn a_step_down_with_no_time_left_gives_up_saying_why() {
    // The read of 4.2 takes the whole bound: 4.1 gets no try, and the give-up says why
    // rather than "no mount attempt".
    let eio = reads_fail(&["4.2"], Errno::IO);
    let (image, sys) = initramfs("eio-late", move |c| {
        if matches!(c, Call::Read(_)) {
            std::thread::sleep(Duration::from_millis(1100));
        }
        eio(c)
    });
    let cmdline = "root=nfs4:10.0.2.9:/img stateless.nfs.timeout=1";
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
    assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2", "umount"]);
    assert_eq!(error.op, Op::Mount);
    assert!(error.message.contains("gave up after 1 tries"), "{error}");
    assert!(error.message.contains(": no time left to mount again; NFSv4.2 dropped: read "), "{error}");
    assert!(error.message.ends_with("input/output error (os error 5)"), "{error}");
}

#[test]
fn a_root_check_failing_otherwise_ends_in_the_policy_without_a_step_down() {
    // Not EIO: no other version would read it.
    let (image, sys) = initramfs("eacces", reads_fail(&["4.2"], Errno::ACCESS));
    let (outcomes, ended) = boot_from(&image, "root=nfs4:10.0.2.9:/img", &sys, Mode::Boot, true);
    let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
    assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2"]);
    assert_eq!(error.errno, Some(Errno::ACCESS.raw_os_error()));
    // NFSv3 is never changed, EIO or not.
    let (image, sys) = initramfs("eio-v3", reads_fail(&["3"], Errno::IO));
    let (outcomes, ended) = boot_from(&image, "nfsroot=10.0.2.9:/img,vers=3", &sys, Mode::Boot, true);
    let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
    assert_eq!(nfs_versions(&sys.calls()), ["vers=3"]);
    assert_eq!(error.errno, Some(Errno::IO.raw_os_error()));
    // No init in the new root: nothing to read.
    let (image, sys) = initramfs("no-init", |_| None);
    std::fs::remove_file(image.0.join("root/sbin/init")).unwrap();
    let (outcomes, ended) = boot_from(&image, "nfsroot=10.0.2.9:/img", &sys, Mode::Boot, true);
    let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
    assert!(error.message.starts_with("no init in the new root: none of /sbin/init, /etc/init"), "{error}");
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Read(_))));
    // No layer root: no layers, as on-root; the boot goes on.
    let (image, sys) = initramfs("no-layers", |_| None);
    std::fs::remove_dir_all(image.0.join("root/diskless")).unwrap();
    let (outcomes, _) = boot_from(&image, "nfsroot=10.0.2.9:/img", &sys, Mode::Boot, true);
    let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    assert_eq!(root.status, Status::Ok, "{root:?}");
    assert!(sys.calls().iter().any(|c| matches!(c, Call::SwitchRoot(_))));
}

#[test]
fn an_initramfs_without_a_root_to_find_says_why() {
    let (image, sys) = initramfs("no-root", |_| None);
    let (outcomes, ended) = boot_from(&image, "stateless.emergency=poweroff", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"));
    assert!(sys.calls().contains(&Call::Reboot { poweroff: true }));
    let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    assert_eq!(root.status, Status::Failed);
    let message = &root.error.as_ref().unwrap().message;
    assert!(message.contains("no root-path from DHCP"), "{message}");
}

#[test]
fn a_registered_overlayfs_plans_no_module() {
    let image = Image::new("registered");
    let sys = fake(|_| None);
    let (outcomes, _) = boot(&image, "", &sys, Mode::Boot);
    assert!(!outcomes.iter().any(|o| o.phase == Phase::Hardware), "{outcomes:#?}");
}

#[test]
fn the_report_reads_back() {
    let image = Image::new("report");
    let sys = fake(|_| None);
    boot(&image, "stateless.frobnicate=1", &sys, Mode::Boot);
    let text = std::fs::read_to_string(image.0.join("run/stateless/report.json")).unwrap();
    let report: crate::boot::report::Report = serde_json::from_str(&text).unwrap();
    assert_eq!(report.format, crate::boot::report::FORMAT);
    assert_eq!(report.hostname.unwrap().short, "lab3-12");
    assert_eq!(report.init.as_deref(), Some("/sbin/init"));
    assert!(!report.steps.iter().any(|o| o.phase == Phase::Report), "written before its own outcome");
    let phases: Vec<Phase> = report.steps.iter().map(|o| o.phase).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "phases in order: {phases:?}");
    assert!(report.diagnostics.iter().any(|d| d.key == "stateless.frobnicate"));
    // A report from before the steps' own time and the NFS waits were counted still reads.
    let mut older: serde_json::Value = serde_json::from_str(&text).unwrap();
    older["steps"].as_array_mut().unwrap().iter_mut().for_each(|o| {
        o.as_object_mut().unwrap().remove("own_ms");
    });
    older["blocked"].as_object_mut().unwrap().remove("nfs_ms");
    let read: crate::boot::report::Report = serde_json::from_value(older).unwrap();
    assert!(read.steps.iter().all(|o| o.own_ms == 0) && read.blocked.nfs_ms == 0);
}
/// The NBD root.
mod nbd;
/// Every mode planned and booted on the same facts: the same steps.
mod plan_equals_boot;

/// The export of [`image_export`] whose `x.img` carries a dm-verity tree over 3 data blocks, as
/// `stateless image build --verity` lays it out; the initramfs has dm-verity and its
/// dependencies as modules. The root hash.
fn verity_export(image: &Image) -> String {
    use crate::model::verity;
    let at = image_export(image, 3 * 4096, None);
    let mut bytes = std::fs::read(at.join("x.img")).unwrap();
    bytes[40..48].copy_from_slice(&(3 * 4096u64).to_le_bytes()); // squashfs's bytes_used
    let salt = verity::salt("00");
    let leaves = bytes.chunks(4096).map(|b| verity::hash(&salt, b)).collect();
    let (levels, root) = verity::tree(&salt, leaves);
    bytes.extend(verity::superblock(3, &salt, &verity::uuid(&salt)));
    bytes.extend(levels);
    std::fs::write(at.join("x.img"), bytes).unwrap();
    let dir = image.0.join("lib/modules/6.1.0");
    std::fs::create_dir_all(dir.join("kernel")).unwrap();
    let dep = "kernel/dm-verity.ko: kernel/dm-bufio.ko kernel/dm-mod.ko kernel/reed_solomon.ko\n\
               kernel/dm-bufio.ko: kernel/dm-mod.ko\nkernel/dm-mod.ko:\nkernel/reed_solomon.ko:\n";
    std::fs::write(dir.join("modules.dep"), dep).unwrap();
    for m in ["dm-verity", "dm-bufio", "dm-mod", "reed_solomon"] {
        std::fs::write(dir.join(format!("kernel/{m}.ko")), "").unwrap();
    }
    crate::model::text::hex(&root)
}

/// `roothash=`: the image's salt and data blocks from its verity superblock, dm-verity and its
/// dependencies loaded, a read-only verity device over the loop device with the root hash of
/// the command line, and that device mounted; the report says so.
#[test]
fn roothash_mounts_the_image_through_dm_verity() {
    use crate::model::verity;
    let (image, sys) = initramfs("verity-roothash", |_| None);
    let root_hash = verity_export(&image);
    let cmdline = format!("nfsroot=/srv/images,vers=3 stateless.image=current roothash={}", root_hash.to_uppercase());
    let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let step = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    assert_eq!(step.status, Status::Ok, "{step:?}");
    assert!(
        step.step.to_string().ends_with(&format!("through dm-verity with the root hash {root_hash}")),
        "{}",
        step.step
    );
    let dev = image.0.join("dev");
    assert!(step.detail.contains(&format!("squashfs on {} on /root", dev.join("dm-0").display())), "{}", step.detail);
    let calls = sys.calls();
    let at = |call: &Call| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call:?}: {calls:#?}"));
    let module = |m: &str| Call::LoadModule(image.0.join(format!("lib/modules/6.1.0/kernel/{m}.ko")), String::new());
    let salt = crate::model::text::hex(&verity::salt("00"));
    let loop0 = dev.join("loop0");
    let table = format!("1 {0} {0} 4096 4096 3 4 sha256 {root_hash} {salt}", loop0.display());
    let mapped = Call::DeviceMapper("stateless-root".into(), 24, "verity".into(), table);
    let mounted = Call::Mount {
        source: dev.join("dm-0").display().to_string(),
        target: image.0.join("root"),
        fstype: "squashfs".into(),
        flags: MountFlags::RDONLY,
        data: String::new(),
    };
    for m in ["reed_solomon", "dm-mod", "dm-bufio"] {
        assert!(at(&module(m)) < at(&module("dm-verity")), "{m} first: {calls:#?}");
    }
    assert!(at(&module("dm-verity")) < at(&Call::AttachLoop("/current".into())));
    assert!(at(&Call::AttachLoop("/current".into())) < at(&mapped) && at(&mapped) < at(&mounted));
    let booted = read_report(&image.0.join("root")).image.unwrap();
    let verified = booted.verity.unwrap();
    assert_eq!((verified.root_hash, verified.trusted), (root_hash, "roothash=".to_string()));
    assert_eq!(verified.device, dev.join("dm-0").display().to_string());
}

/// `roothash=` refuses, before a loop device or a copy: an image without a tree, one whose
/// superblock names other data blocks than its length, and a kernel without dm-verity. A
/// table the kernel refuses fails the step too; nothing is mounted in any case.
#[test]
fn roothash_refuses_an_image_it_cannot_check() {
    let cmdline = |hash: &str| {
        format!("nfsroot=/srv/images,vers=3 stateless.image=/x.img roothash={hash} stateless.emergency=continue")
    };
    let refused = |tag: &str, prepare: &dyn Fn(&Image) -> String, fail: fn(&Call) -> Option<i32>, want: &str| {
        let (image, sys) = initramfs(tag, fail);
        let hash = prepare(&image);
        let (outcomes, ended) = boot_from(&image, &cmdline(&hash), &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "{tag}: {outcomes:#?}");
        let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
        let error = failed.error.as_ref().unwrap().to_string();
        assert!(error.contains(want), "{tag}: {error}");
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "squashfs")), "{calls:#?}");
        calls
    };
    let calls = refused(
        "verity-no-tree",
        &|image| {
            image_export(image, 5 * 4096, None);
            "ab".repeat(32)
        },
        |_| None,
        "no dm-verity superblock at byte 12288: refused (roothash= asks for a verified image)",
    );
    refused(
        "verity-odd-size",
        &|image| {
            image_export(image, 5 * 4096 + 1, None);
            "ab".repeat(32)
        },
        |_| None,
        "20481 bytes are no image with a dm-verity tree (stateless image build --verity): refused",
    );
    assert!(!calls.iter().any(|c| matches!(c, Call::AttachLoop(..) | Call::DeviceMapper(..))), "{calls:#?}");
    refused(
        "verity-short-tree",
        &|image| {
            let hash = verity_export(image);
            let file = image.0.join(EXPORT).join("x.img");
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[3 * 4096 + 72] = 2; // the superblock says 2 data blocks
            std::fs::write(file, bytes).unwrap();
            hash
        },
        |_| None,
        "its verity superblock names 2 data blocks, its length 3",
    );
    let calls = refused(
        "verity-no-module",
        &|image| {
            let hash = verity_export(image);
            std::fs::write(image.0.join("lib/modules/6.1.0/modules.dep"), "kernel/dm-mod.ko:\n").unwrap();
            hash
        },
        |_| None,
        "the image cannot be checked, so it is not mounted",
    );
    assert!(!calls.iter().any(|c| matches!(c, Call::AttachLoop(..))), "{calls:#?}");
    refused(
        "verity-table-refused",
        &verity_export,
        |c| matches!(c, Call::DeviceMapper(..)).then_some(22),
        "invalid argument",
    );
    // A root hash the command line got wrong is refused, not ignored.
    refused(
        "verity-bad-roothash",
        &|image| {
            verity_export(image);
            "abc".into()
        },
        |_| None,
        "roothash=abc is not a sha256 root hash (64 hex digits): refused",
    );
    // A file cut short whose tree was laid out again for fewer blocks verifies block by block:
    // the filesystem its head names must lie within what the tree covers.
    refused(
        "verity-cut-short",
        &|image| {
            let hash = verity_export(image);
            let file = image.0.join(EXPORT).join("x.img");
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[40..48].copy_from_slice(&(4 * 4096u64).to_le_bytes());
            std::fs::write(file, bytes).unwrap();
            hash
        },
        |_| None,
        "its squashfs spans 16384 bytes, its verity tree covers 12288: refused",
    );
    // roothash= with a tree root: nothing can be verified, so nothing is mounted.
    let (image, sys) = initramfs("verity-tree-root", |_| None);
    let cmdline = format!("nfsroot=/srv/images,vers=3 roothash={} stateless.emergency=continue", "ab".repeat(32));
    let (outcomes, _) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
    assert!(failed.error.as_ref().unwrap().to_string().contains("a tree cannot be verified"), "{failed:?}");
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Mount { fstype, .. } if fstype.starts_with("nfs"))));
}

/// A root check that fails on a verified root (a block of the init that does not match its
/// hash gives EIO) says what the kernel's log said of it, and the device's status.
#[test]
fn a_root_check_that_fails_under_dm_verity_names_the_block() {
    let (image, mut sys) = initramfs("verity-corrupt", |_| None);
    let hash = verity_export(&image);
    std::fs::remove_file(image.0.join("root/sbin/init")).unwrap();
    sys.proc.insert("dm-status".into(), "C".into());
    let kmsg = "loop0: detected capacity change\ndevice-mapper: verity: 7:0: data block 1 is corrupted\n\
                device-mapper: verity: 7:0: data block 1 is corrupted\n";
    sys.proc.insert("kmsg".into(), kmsg.into());
    let cmdline =
        format!("nfsroot=/srv/images,vers=3 stateless.image=/x.img roothash={hash} stateless.emergency=continue");
    let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap().to_string();
    assert!(error.ends_with("; dm-verity: a block did not match its hash: 7:0: data block 1 is corrupted"), "{error}");
}

/// A fixture key (tests/fixtures/keys): a secret one, or its public half.
fn fixture_key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// [`verity_export`] with `x.img.verity-params` beside the image, signed with the fixture key
/// `signer` when given, and an initramfs that trusts `trusted` (none: no trusted.keys). The
/// root hash.
fn signed_export(image: &Image, signer: Option<&str>, trusted: &[&str]) -> String {
    use crate::model::{sign, verity};
    let root_hash = verity_export(image);
    let at = image.0.join(EXPORT);
    let size = std::fs::metadata(at.join("x.img")).unwrap().len();
    let salt = verity::salt("00");
    let mut hash = [0; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&root_hash[i * 2..i * 2 + 2], 16).unwrap();
    }
    let params = verity::VerityParams {
        format: crate::model::image::ImageFormat::Squashfs,
        data_blocks: 3,
        salt,
        root_hash: hash,
    };
    assert_eq!(params.file_size(), size);
    std::fs::write(at.join("x.img.verity-params"), params.text()).unwrap();
    if let Some(signer) = signer {
        let secret = sign::secret_key(&fixture_key(signer)).unwrap();
        std::fs::write(at.join("x.img.verity-params.sig"), sign::sign(&secret, params.text().as_bytes())).unwrap();
    }
    if !trusted.is_empty() {
        let keys: Vec<sign::TrustedKey> = trusted.iter().map(|k| sign::public_key(&fixture_key(k)).unwrap()).collect();
        let file = image.0.join(crate::model::paths::TRUSTED_KEYS);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, sign::trusted_keys_file(&keys)).unwrap();
    }
    root_hash
}

/// The statement [`signed_export`] wrote beside x.img, signed by the fixture key `signer`,
/// inside x.img too, after its superblock (as `image build --verity --sign` writes it): the
/// image's bytes.
fn sign_inside(image: &Image, signer: &str) -> Vec<u8> {
    use crate::model::{sign, verity};
    let at = image.0.join(EXPORT);
    let text = std::fs::read(at.join("x.img.verity-params")).unwrap();
    let secret = sign::secret_key(&fixture_key(signer)).unwrap();
    let mut bytes = std::fs::read(at.join("x.img")).unwrap();
    verity::embed(&mut bytes[3 * 4096..4 * 4096], &text, &sign::sign(&secret, &text)).unwrap();
    std::fs::write(at.join("x.img"), &bytes).unwrap();
    bytes
}

/// No files beside the image: the statement inside it, signed by a trusted key, gives the root
/// hash. Files beside it win: a signature there by a key not trusted refuses the image, the
/// one inside notwithstanding.
#[test]
fn a_statement_inside_the_image_is_trusted_when_none_lies_beside_it() {
    let cmdline = "nfsroot=/srv/images,vers=3 stateless.image=current";
    let (image, sys) = initramfs("verity-inside", |_| None);
    let root_hash = signed_export(&image, Some("openssl.pem"), &["openssl.pub.pem"]);
    sign_inside(&image, "openssl.pem");
    for beside in ["x.img.verity-params", "x.img.verity-params.sig"] {
        std::fs::remove_file(image.0.join(EXPORT).join(beside)).unwrap();
    }
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let verified = read_report(&image.0.join("root")).image.unwrap().verity.unwrap();
    let key = crate::model::sign::public_key(&fixture_key("openssl.pub.pem")).unwrap();
    assert!(verified.trusted.starts_with(&format!("key {}", key.fingerprint())), "{}", verified.trusted);
    assert_eq!(verified.root_hash, root_hash);

    let (image, sys) = initramfs("verity-beside-wins", |_| None);
    signed_export(&image, Some("openssl2.pem"), &["openssl.pub.pem"]);
    sign_inside(&image, "openssl.pem");
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
    assert!(failed.error.as_ref().unwrap().to_string().contains("which is not trusted"), "{failed:?}");
}

/// Keys in the initramfs: the statement beside the image, signed by one of them, gives the
/// root hash (through `current`, the target's statement); the report names the key. Without
/// keys the same image is mounted as it is; `roothash=` wins over keys.
#[test]
fn a_signed_image_is_mounted_through_dm_verity_when_the_initramfs_trusts_its_key() {
    let cmdline = "nfsroot=/srv/images,vers=3 stateless.image=current";
    let (image, sys) = initramfs("verity-signed", |_| None);
    let root_hash = signed_export(&image, Some("openssl.pem"), &["openssl2.pub.pem", "openssl.pub.pem"]);
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let mapped = sys.calls().into_iter().find(|c| matches!(c, Call::DeviceMapper(..))).unwrap();
    assert!(matches!(&mapped, Call::DeviceMapper(_, 24, _, table) if table.contains(&root_hash)), "{mapped:?}");
    let verified = read_report(&image.0.join("root")).image.unwrap().verity.unwrap();
    let key = crate::model::sign::public_key(&fixture_key("openssl.pub.pem")).unwrap();
    assert!(verified.trusted.starts_with(&format!("key {}", key.fingerprint())), "{}", verified.trusted);
    assert_eq!(verified.root_hash, root_hash);

    // No keys: mounted as it is, the statement beside it notwithstanding.
    let (image, sys) = initramfs("verity-signed-no-keys", |_| None);
    signed_export(&image, Some("openssl.pem"), &[]);
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::DeviceMapper(..))));
    assert!(read_report(&image.0.join("root")).image.unwrap().verity.is_none());

    // roothash= on the command line: that, whatever the keys.
    let (image, sys) = initramfs("verity-signed-roothash", |_| None);
    let root_hash = signed_export(&image, None, &["openssl.pub.pem"]);
    let (outcomes, ended) = boot_from(&image, &format!("{cmdline} roothash={root_hash}"), &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    assert_eq!(read_report(&image.0.join("root")).image.unwrap().verity.unwrap().trusted, "roothash=");
}

/// Keys in the initramfs refuse, before a loop device: an image without a signature, one
/// signed by a key they do not hold, a statement that is not the image's, and a trusted.keys
/// that does not parse.
#[test]
fn keys_in_the_initramfs_refuse_an_image_they_cannot_vouch_for() {
    let cmdline = "nfsroot=/srv/images,vers=3 stateless.image=/x.img stateless.emergency=continue";
    let refused = |tag: &str, prepare: &dyn Fn(&Image), want: &str| {
        let (image, sys) = initramfs(tag, |_| None);
        prepare(&image);
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
        let failed = outcomes.iter().find(|o| matches!(o.step, Step::ImageRoot { .. })).unwrap();
        let error = failed.error.as_ref().unwrap().to_string();
        assert!(error.contains(want), "{tag}: {error}");
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::AttachLoop(..) | Call::DeviceMapper(..))), "{calls:#?}");
        error
    };
    let error = refused(
        "verity-unsigned",
        &|image| drop(signed_export(image, None, &["openssl.pub.pem"])),
        "x.img.verity-params.sig beside it (stateless image build --verity --sign): refused (the initramfs trusts 1 key",
    );
    assert!(error.starts_with("verify "), "{error}");
    refused(
        "verity-no-statement",
        &|image| {
            signed_export(image, Some("openssl.pem"), &["openssl.pub.pem", "openssl2.pub.pem"]);
            std::fs::remove_file(image.0.join(EXPORT).join("x.img.verity-params")).unwrap();
        },
        "no signed statement beside it or inside it (stateless image build --verity --sign): refused (the \
         initramfs trusts 2 keys",
    );
    refused(
        "verity-untrusted",
        &|image| drop(signed_export(image, Some("openssl2.pem"), &["openssl.pub.pem"])),
        "which is not trusted",
    );
    refused(
        "verity-other-image",
        &|image| {
            signed_export(image, Some("openssl.pem"), &["openssl.pub.pem"]);
            let file = image.0.join(EXPORT).join("x.img");
            let mut bytes = std::fs::read(&file).unwrap();
            bytes.extend([0; 4096]);
            std::fs::write(file, bytes).unwrap();
        },
        "the image has 24576 bytes, its signed verity params 20480",
    );
    refused(
        "verity-bad-keys",
        &|image| {
            signed_export(image, Some("openssl.pem"), &["openssl.pub.pem"]);
            std::fs::write(image.0.join(crate::model::paths::TRUSTED_KEYS), "ed25519 nonsense\n").unwrap();
        },
        "trusted.keys: line 1",
    );
}

mod signed_layers {
    use super::*;
    use crate::fs::tree;
    use crate::model::sign;
    use std::os::fd::AsFd;

    fn opendir(path: &Path) -> std::os::fd::OwnedFd {
        rustix::fs::open(path, rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
            .unwrap()
    }

    /// Signs the layer `name` of `image` with the fixture key `signer`, as `layers sign` does.
    fn sign_layer(image: &Image, name: &str, signer: &str) {
        let layers = image.0.join("diskless");
        let dir = opendir(&layers.join(name));
        let text = crate::fs::manifest::of_layer(dir.as_fd(), name).unwrap().text().into_bytes();
        let secret = sign::secret_key(&fixture_key(signer)).unwrap();
        std::fs::write(layers.join(format!("{name}.manifest")), &text).unwrap();
        std::fs::write(layers.join(format!("{name}.manifest.sig")), sign::sign(&secret, &text)).unwrap();
    }

    /// Keys in the initramfs: a layer is applied only as its manifest, signed by one of them, lists
    /// it. A file changed after signing never lands (not even beside its name), nor one added;
    /// the step names each and the report the layer's identity; a layer without a signed manifest
    /// is not applied at all. Without keys, the same tree applies whole (the other tests).
    #[test]
    fn with_trusted_keys_only_what_a_signed_manifest_lists_is_applied() {
        let image = Image::new("signed-layers");
        let (r, layers) = (&image.0, image.0.join("diskless"));
        std::fs::write(layers.join("base/etc/changed"), "as signed\n").unwrap();
        std::fs::write(layers.join("base/etc/chmod"), "as signed\n").unwrap();
        std::os::unix::fs::symlink("/etc/from-base", layers.join("base/etc/link")).unwrap();
        sign_layer(&image, "base", "openssl.pem");
        std::fs::write(layers.join("base/etc/changed"), "changed on the server\n").unwrap();
        std::fs::set_permissions(layers.join("base/etc/chmod"), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::write(layers.join("base/etc/added"), "not signed\n").unwrap();
        std::fs::create_dir_all(layers.join("hosts/lab3-12/etc")).unwrap();
        std::fs::write(layers.join("hosts/lab3-12/etc/host"), "never signed\n").unwrap();
        let keys = [sign::public_key(&fixture_key("openssl.pub.pem")).unwrap()];
        let file = r.join(crate::model::paths::TRUSTED_KEYS);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, sign::trusted_keys_file(&keys)).unwrap();

        let sys = fake(|_| None);
        let mut executor = image.executor(&sys, "", Mode::Boot);
        let ended = catch_unwind(AssertUnwindSafe(|| executor.run(&Phase::ALL)));
        assert!(ended.is_err(), "it ends in the fake exec");
        let outcomes = &executor.record.outcomes;
        let layer =
            |n: &str| outcomes.iter().find(|o| matches!(&o.step, Step::Layer { name, .. } if name == n)).unwrap();
        let upper = r.join("run/stateless/rw/etc/upper");
        assert_eq!(std::fs::read_to_string(upper.join("from-base")).unwrap(), "base\n");
        assert_eq!(std::fs::read_link(upper.join("link")).unwrap(), Path::new("/etc/from-base"));
        for never in ["changed", "chmod", "added", "host"] {
            assert!(!upper.join(never).exists(), "{never}: {outcomes:#?}");
        }
        let left: Vec<_> = std::fs::read_dir(&upper).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "nothing beside a name either: {left:?}");

        let base = layer("base");
        assert_eq!(base.status, Status::Degraded, "{base:#?}");
        let identity =
            crate::model::manifest::Manifest::identity(&std::fs::read(layers.join("base.manifest")).unwrap());
        assert!(base.detail.ends_with(&format!(", 3 not as signed, identity {identity}")), "{base:#?}");
        assert_eq!(base.error.as_ref().unwrap().op, Op::Verify);
        let result = executor.record.layers.iter().find(|l| l.layer == "base").unwrap();
        assert_eq!(result.identity.as_deref(), Some(identity.as_str()));
        assert_eq!(result.rejected[0], "/etc/added: not in the signed manifest");
        assert!(result.rejected[1].starts_with("/etc/changed: not as signed: size (22, signed 10)"), "{result:#?}");
        assert_eq!(result.rejected[2], "/etc/chmod: not as signed: mode (0666, signed 0644)");

        let host = layer("hosts/lab3-12");
        assert_eq!(
            (host.status, host.detail.as_str()),
            (Status::Degraded, "not applied: no manifest a trusted key signed")
        );
        let why = &host.error.as_ref().unwrap().message;
        assert!(why.starts_with("hosts/lab3-12.manifest: missing: the layer is not signed"), "{why}");
        assert!(executor.record.layers.iter().all(|l| l.layer != "hosts/lab3-12"));
    }

    /// A file whose bytes are not as signed, though its size and metadata are, is removed again
    /// once its copy is hashed: where the name was free, and beside a version already there.
    #[test]
    fn a_file_whose_bytes_are_not_as_signed_is_removed_after_its_copy() {
        let image = Image::new("signed-bytes");
        let layers = image.0.join("diskless");
        std::fs::write(layers.join("base/etc/same-size"), "as signed\n").unwrap();
        sign_layer(&image, "base", "openssl.pem");
        std::fs::write(layers.join("base/etc/same-size"), "AS SIGNED\n").unwrap();
        let src = opendir(&layers.join("base"));
        let dst = image.0.join("dst");
        std::fs::create_dir_all(dst.join("etc")).unwrap();
        let text = std::fs::read(layers.join("base.manifest")).unwrap();
        let manifest = crate::model::manifest::Manifest::parse(&text).unwrap();
        for before in [None, Some("the version already there\n")] {
            if let Some(before) = before {
                std::fs::write(dst.join("etc/same-size"), before).unwrap();
            }
            let dst_fd = opendir(&dst);
            let targets = [tree::Target { path: Path::new(""), dst: dst_fd.as_fd(), lower: None }];
            let copied = tree::copy_checked(src.as_fd(), &targets, &|_, _| tree::Verdict::Copy, Some(&manifest));
            assert_eq!(copied.rejected.len(), 1, "{copied:#?}");
            assert!(copied.rejected[0].why.starts_with("not as signed: content (sha256 "), "{copied:#?}");
            let left: Vec<_> = std::fs::read_dir(dst.join("etc")).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(std::fs::read_to_string(dst.join("etc/from-base")).unwrap(), "base\n");
            match before {
                None => assert_eq!(left.len(), 1, "{left:?}"),
                Some(before) => {
                    assert_eq!(left.len(), 2, "{left:?}");
                    assert_eq!(std::fs::read_to_string(dst.join("etc/same-size")).unwrap(), before);
                }
            }
        }
    }
}

/// Initramfs mode: the keys are the initramfs's, read before the switch (which empties it);
/// a trusted.keys in the served root is the server's and counts for nothing.
#[test]
fn in_initramfs_mode_the_keys_are_the_initramfss_not_the_servers() {
    use crate::model::sign;
    let keys = sign::trusted_keys_file(&[sign::public_key(&fixture_key("openssl.pub.pem")).unwrap()]);
    for (tag, in_initramfs) in [("keys-initramfs", true), ("keys-server", false)] {
        let (image, sys) = initramfs(tag, |_| None);
        let at = if in_initramfs { image.0.clone() } else { image.0.join("root") };
        let file = at.join(crate::model::paths::TRUSTED_KEYS);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &keys).unwrap();
        let (outcomes, ended) = boot_from(&image, "nfsroot=/srv/img,vers=3", &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        let base = outcomes.iter().find(|o| matches!(&o.step, Step::Layer { name, .. } if name == "base")).unwrap();
        if in_initramfs {
            assert_eq!(base.status, Status::Degraded, "no manifest: not applied {base:#?}");
            assert!(base.detail.contains("no manifest a trusted key signed"), "{base:#?}");
        } else {
            assert_eq!(base.status, Status::Ok, "the server's keys are not trusted: {base:#?}");
        }
    }
}
