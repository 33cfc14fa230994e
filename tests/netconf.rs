//! `fs::netconf::write` for real, as root, in a private mount namespace: /run a fresh tmpfs as at
//! boot, the image's /etc/resolv.conf a symlink out of /run.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use stateless::config::Cmdline;
use stateless::fs::netconf;
use stateless::fs::root::ImageRoot;
use stateless::model::interface::Interface;
use stateless::model::lease::Lease;
use stateless::model::options::Options;

/// The image's entries outside /run.
fn outside_run(image: &Path) -> BTreeMap<PathBuf, String> {
    fingerprint(image).into_iter().filter(|(path, _)| !path.starts_with("run")).collect()
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn handed_on_files_land_on_the_run_tmpfs_and_a_link_out_of_run_is_not_followed() {
    require_root();
    let tmp = TempDir::new("netconf");
    let image = tmp.0.join("image");
    write(&image.join("var/lib/resolv.conf"), "nameserver 192.0.2.1\n");
    std::fs::create_dir_all(image.join("etc")).unwrap();
    std::fs::create_dir_all(image.join("run")).unwrap();
    std::os::unix::fs::symlink("/var/lib/resolv.conf", image.join("etc/resolv.conf")).unwrap();
    let before = outside_run(&image);

    let interface = Interface {
        index: 2,
        name: "eth0".into(),
        mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        up: true,
        carrier: true,
        loopback: false,
        addrs: Vec::new(),
    };
    let lease = Lease {
        address: Some("10.0.2.15/24".parse().unwrap()),
        dns: vec!["10.0.2.3".parse().unwrap()],
        domain: Some("lab.example".into()),
        ..Lease::default()
    };
    in_private_namespace(|| {
        let run = image.join("run");
        rustix::mount::mount("tmpfs", &run, "tmpfs", rustix::mount::MountFlags::empty(), c"mode=755").unwrap();
        let root = ImageRoot::open(&image).unwrap();
        let written = netconf::write(&root, &interface, &lease, 7, netconf::Resolver::Etc).unwrap();
        assert_eq!(
            written,
            [
                "run/systemd/network/10-stateless-eth0.network",
                "run/NetworkManager/conf.d/stateless-eth0.conf",
                "run/network/ifstate.eth0",
                "run/network/ifstate",
                "run/net-eth0.conf",
            ]
        );
        assert_eq!(fstype_of(&run).as_deref(), Some("tmpfs"));
        assert!(read(&run.join("net-eth0.conf")).contains("IPV4ADDR='10.0.2.15'\nIPV4BROADCAST='10.0.2.255'\n"));
        assert!(read(&run.join("systemd/network/10-stateless-eth0.network")).contains("KeepConfiguration=yes\n"));
    });
    assert_eq!(outside_run(&image), before, "nothing outside /run changed");
    assert_eq!(read(&image.join("var/lib/resolv.conf")), "nameserver 192.0.2.1\n");
}

/// A static `ip=` line's name servers, over what an INFORM got, written for real where the
/// image's resolv.conf leads (systemd-resolved's stub file, and its drop-in), and into klibc's file.
#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_static_ip_lines_name_servers_are_written_for_the_resolver() {
    require_root();
    let tmp = TempDir::new("netconf-ip");
    let image = tmp.0.join("image");
    std::fs::create_dir_all(image.join("etc")).unwrap();
    std::fs::create_dir_all(image.join("run")).unwrap();
    std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", image.join("etc/resolv.conf")).unwrap();
    let before = outside_run(&image);
    let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:192.0.2.53:192.0.2.54:192.0.2.123";
    let (options, diagnostics) = Options::resolve(&Cmdline::parse(line.as_bytes()), None);
    assert_eq!(diagnostics, []);
    let informed = Lease {
        server: Some("10.0.2.2".parse().unwrap()),
        address: Some("10.0.2.15/24".parse().unwrap()),
        dns: vec!["10.0.2.3".parse().unwrap()],
        domain: Some("lab.example".into()),
        ..Lease::default()
    };
    let lease = netconf::with_line_dns(informed, options.ip.as_ref());
    let interface = Interface {
        index: 2,
        name: "eth0".into(),
        mac: None,
        up: true,
        carrier: true,
        loopback: false,
        addrs: Vec::new(),
    };
    in_private_namespace(|| {
        let run = image.join("run");
        rustix::mount::mount("tmpfs", &run, "tmpfs", rustix::mount::MountFlags::empty(), c"mode=755").unwrap();
        let root = ImageRoot::open(&image).unwrap();
        let written = netconf::write(&root, &interface, &lease, 7, netconf::Resolver::RunOnly).unwrap();
        assert_eq!(
            written[5..],
            ["run/systemd/resolve/stub-resolv.conf", "run/systemd/resolved.conf.d/stateless.conf"]
        );
        assert_eq!(
            read(&run.join("systemd/resolve/stub-resolv.conf")),
            "# Written by stateless at boot from the DHCP lease or ip=.\n\
             nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch lab.example\n"
        );
        assert!(read(&run.join("systemd/resolved.conf.d/stateless.conf")).contains("DNS=192.0.2.53 192.0.2.54\n"));
        assert!(read(&run.join("net-eth0.conf")).contains("IPV4DNS0='192.0.2.53'\nIPV4DNS1='192.0.2.54'\n"));
    });
    assert_eq!(outside_run(&image), before, "nothing outside /run changed");
}
