//! `fs::netconf::write` for real, as root, in a private mount namespace: /run a fresh tmpfs as at
//! boot, the image's /etc/resolv.conf a symlink out of /run.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use stateless::fs::netconf;
use stateless::fs::root::ImageRoot;
use stateless::model::interface::Interface;
use stateless::model::lease::Lease;

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
