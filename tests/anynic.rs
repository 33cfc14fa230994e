//! DHCP on every interface at once (`boot::network::lease_on_any`) over real links: a client
//! namespace with two veths, one to a network where dnsmasq answers, one to a network where
//! nothing does (192.0.2.0/24, TEST-NET-1: no traffic leaves the namespaces). Needs root, `ip`
//! and dnsmasq (tests/run installs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::net::{ip, Net};
use stateless::boot::network;
use stateless::sys::Real;

#[test]
#[ignore = "needs root: network namespaces, two veth pairs and dnsmasq (tests/run runs it)"]
fn the_lease_comes_from_the_interface_whose_server_answers() {
    let mut net = Net::new("02:00:00:00:00:07");
    // vc1: to a network where nothing answers DHCP.
    ip(&["-n", &net.server, "link", "add", "vd0", "type", "veth", "peer", "name", "vc1", "netns", &net.client]);
    ip(&["-n", &net.server, "link", "set", "vd0", "up"]);
    common::require(Command::new("dnsmasq").arg("--version").output().is_ok(), "dnsmasq (dnsmasq-base)");
    let leases = std::env::temp_dir().join(format!("{}.leases", net.server));
    let dnsmasq = Command::new("ip")
        .args(["netns", "exec", &net.server, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null"])
        .args(["--port=0", "--interface=vs0", "--bind-interfaces", "--no-ping"])
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg("--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,1h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    net.children.push(dnsmasq);
    std::thread::sleep(Duration::from_millis(300));

    let path = format!("/var/run/netns/{}", net.client);
    let answered = std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .unwrap();
        stateless::log::init(stateless::log::Sink::Stderr, log::LevelFilter::Debug);
        network::lease_on_any(&Real, None, Duration::from_secs(20), Duration::from_millis(500))
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(answered.interface.name, "vc0");
    assert_eq!(answered.asked, ["vc0", "vc1"], "by index");
    let address = answered.acquired.lease.address.unwrap().to_string();
    assert!(address.starts_with("192.0.2.1") && address.ends_with("/24"), "{address}");
    // Nothing configured; the link set up for nothing is down again, the winner's stays up.
    assert!(!net.client_ip(&["-4", "addr"]).contains("192.0.2."));
    let link = |name: &str| net.client_ip(&["-o", "link", "show", name]);
    assert!(link("vc1").contains("state DOWN") && !link("vc1").contains("<UP"), "{}", link("vc1"));
    assert!(link("vc0").contains(",UP"), "{}", link("vc0"));
}
