use super::*;
use crate::model::ipv4::Ipv4Net;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn eth0(mac: Option<[u8; 6]>) -> Interface {
    Interface { index: 2, name: "eth0".into(), mac, up: true, carrier: true, loopback: false, addrs: Vec::new() }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// What the lab's dnsmasq gives lab3-12.
fn lab_lease() -> Lease {
    Lease {
        server: Some(ip("10.0.2.2")),
        address: Some(Ipv4Net::new(ip("10.0.2.15"), 24).unwrap()),
        routers: vec![ip("10.0.2.2"), ip("10.0.2.254")],
        dns: vec![ip("10.0.2.3")],
        domain: Some("lab.example".into()),
        hostname: Some("lab3-12".into()),
        root_path: Some("/diskless/image".into()),
        lease_secs: Some(86400),
        bootfile: Some("pxelinux.0".into()),
        next_server: Some(ip("10.0.2.4")),
        ..Lease::default()
    }
}

#[test]
fn klibc_conf_is_what_ipconfig_writes() {
    assert_eq!(
        klibc_conf("eth0", &lab_lease(), 3),
        "DEVICE='eth0'\nPROTO='dhcp'\nIPV4ADDR='10.0.2.15'\nIPV4BROADCAST='10.0.2.255'\n\
             IPV4NETMASK='255.255.255.0'\nIPV4GATEWAY='10.0.2.2'\nIPV4DNS0='10.0.2.3'\n\
             IPV4DNS1='0.0.0.0'\nHOSTNAME='lab3-12'\nDNSDOMAIN='lab.example'\nNISDOMAIN=''\n\
             ROOTSERVER='10.0.2.4'\nROOTPATH='/diskless/image'\nfilename='pxelinux.0'\nUPTIME='3'\n\
             DHCPLEASETIME='86400'\nDOMAINSEARCH=''\n"
    );
}

#[test]
fn klibc_conf_writes_unknowns_as_klibc_does() {
    // Nothing known: every variable still there, as 0.0.0.0 or ''.
    assert_eq!(
        klibc_conf("eth1", &Lease::default(), 0),
        "DEVICE='eth1'\nPROTO='none'\nIPV4ADDR='0.0.0.0'\nIPV4BROADCAST='0.0.0.0'\n\
             IPV4NETMASK='0.0.0.0'\nIPV4GATEWAY='0.0.0.0'\nIPV4DNS0='0.0.0.0'\nIPV4DNS1='0.0.0.0'\n\
             HOSTNAME=''\nDNSDOMAIN=''\nNISDOMAIN=''\nROOTSERVER='0.0.0.0'\nROOTPATH=''\nfilename=''\n\
             UPTIME='0'\nDHCPLEASETIME='0'\nDOMAINSEARCH=''\n"
    );
    // Option 28 wins over the computed broadcast; the server identifier stands in for siaddr;
    // an infinite lease is printed as klibc's %u prints it.
    let lease = Lease {
        broadcast: Some(ip("10.0.255.255")),
        next_server: None,
        lease_secs: Some(u32::MAX),
        dns: vec![ip("10.0.2.3"), ip("10.0.2.5"), ip("10.0.2.6")],
        ..lab_lease()
    };
    let conf = klibc_conf("eth0", &lease, 12);
    for line in [
        "IPV4BROADCAST='10.0.255.255'\n",
        "ROOTSERVER='10.0.2.2'\n",
        "DHCPLEASETIME='4294967295'\n",
        "IPV4DNS1='10.0.2.5'\n",
    ] {
        assert!(conf.contains(line), "{line:?} missing in\n{conf}");
    }
}

#[test]
fn shell_values_are_quoted_as_klibc_quotes_them() {
    assert_eq!(shell_assignment("A", "it's"), "A='it'\\''s'\n");
    assert_eq!(shell_assignment("A", "hi!"), "A='hi'\\!''\n");
    assert_eq!(shell_assignment("A", "$(x) `y` \"z\" \\"), "A='$(x) `y` \"z\" \\'\n");
    assert_eq!(shell_assignment("A", "x\nIPV4ADDR='6.6.6.6'"), "A=''\n");
    assert_eq!(shell_assignment("A", "tab\there"), "A=''\n");
}

#[test]
fn hostile_values_come_back_verbatim_when_sourced_and_run_nothing() {
    let dir = std::env::temp_dir().join(format!("stateless-netconf-sh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    let hostile =
        [format!("a'b!c$({touch})`{touch}`"), format!("/srv/'; {touch}; echo '"), format!("\\'\"; {touch} #!!")];
    let lease = Lease {
        hostname: Some(hostile[0].clone()),
        root_path: Some(hostile[1].clone()),
        bootfile: Some(hostile[2].clone()),
        domain: Some(format!("x\n{touch}")),
        ..lab_lease()
    };
    let conf = dir.join("net-eth0.conf");
    std::fs::write(&conf, klibc_conf("eth0", &lease, 1)).unwrap();
    let script = r#". "$1"; printf '%s\n' "$HOSTNAME" "$ROOTPATH" "$filename" "$DNSDOMAIN" "$IPV4ADDR""#;
    for shell in ["sh", "bash"] {
        let out = std::process::Command::new(shell).args(["-c", script, "sh"]).arg(&conf).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let expected = format!("{}\n{}\n{}\n\n10.0.2.15\n", hostile[0], hostile[1], hostile[2]);
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected, "{shell}");
    }
    assert!(!marker.exists(), "sourcing the file ran a command");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resolv_conf_has_three_servers_and_a_valid_search_domain() {
    assert_eq!(
        resolv_conf(&lab_lease()).unwrap(),
        "# Written by stateless at boot from the DHCP lease or ip=.\nnameserver 10.0.2.3\nsearch lab.example\n"
    );
    let four = vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")];
    let lease = Lease { dns: four, domain: Some("evil\nnameserver 6.6.6.6".into()), ..Lease::default() };
    assert_eq!(
        resolv_conf(&lease).unwrap(),
        "# Written by stateless at boot from the DHCP lease or ip=.\n\
             nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
    );
    let domain_only = Lease { domain: Some("lab.example.".into()), ..Lease::default() };
    assert_eq!(
        resolv_conf(&domain_only).unwrap(),
        "# Written by stateless at boot from the DHCP lease or ip=.\nsearch lab.example\n"
    );
    assert_eq!(resolv_conf(&Lease::default()), None);
    assert_eq!(resolv_conf(&Lease { domain: Some("a b".into()), ..Lease::default() }), None);
}

/// A static ip= line's servers replace the lease's (ours from INFORM, or /proc/net/pnp's);
/// a line that asks DHCP keeps the lease's, as the kernel does.
#[test]
fn a_static_lines_servers_are_handed_on() {
    let line = |v: &str| {
        let cmdline = crate::config::Cmdline::parse(format!("ip={v}").as_bytes());
        crate::model::options::Options::resolve(&cmdline, None).0.ip
    };
    let static_ip = line("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:192.0.2.53:192.0.2.54:192.0.2.123");
    let lease = with_line_dns(lab_lease(), static_ip.as_ref());
    assert_eq!(lease.dns, [ip("192.0.2.53"), ip("192.0.2.54")]);
    assert_eq!(lease.domain.as_deref(), Some("lab.example"), "the rest is the lease's");
    assert_eq!(
        line_servers(static_ip.as_ref()).as_deref(),
        Some("dns 192.0.2.53 192.0.2.54, ntp 192.0.2.123 from ip=")
    );
    let only_ntp = line("10.0.2.15:::::eth0:off:::192.0.2.123");
    assert_eq!(with_line_dns(lab_lease(), only_ntp.as_ref()), lab_lease());
    assert_eq!(line_servers(only_ntp.as_ref()).as_deref(), Some("ntp 192.0.2.123 from ip="));
    for kept in [line(":::::eth0:dhcp:192.0.2.53"), line("10.0.2.15"), line("dhcp"), None] {
        assert_eq!(with_line_dns(lab_lease(), kept.as_ref()), lab_lease(), "{kept:?}");
        assert_eq!(line_servers(kept.as_ref()), None);
    }
    let klibc = klibc_conf("eth0", &with_line_dns(Lease::default(), static_ip.as_ref()), 1);
    assert!(klibc.contains("IPV4DNS0='192.0.2.53'\nIPV4DNS1='192.0.2.54'\n"), "{klibc}");
}

#[test]
fn resolved_gets_every_server_and_the_domain() {
    let lease = Lease { dns: vec![ip("10.0.2.3"), ip("10.0.2.5")], ..lab_lease() };
    assert_eq!(
            resolved_dropin(&lease).unwrap(),
            "# Written by stateless at boot from the DHCP lease or ip=.\n[Resolve]\nDNS=10.0.2.3 10.0.2.5\nDomains=lab.example\n"
        );
    assert_eq!(resolved_dropin(&Lease::default()), None);
}

#[test]
fn networkd_keeps_the_interface_matched_by_mac_else_by_name() {
    let header = "# Written by stateless at boot: the root file system is reached over this interface.\n";
    assert_eq!(
            networkd_network(&eth0(Some(MAC))),
            format!("{header}[Match]\nMACAddress=52:54:00:12:34:56\nType=ether\n\n[Network]\nKeepConfiguration=yes\nIgnoreCarrierLoss=yes\n")
        );
    assert_eq!(
        networkd_network(&eth0(None)),
        format!("{header}[Match]\nName=eth0\n\n[Network]\nKeepConfiguration=yes\nIgnoreCarrierLoss=yes\n")
    );
}

#[test]
fn networkmanager_leaves_the_interface_unmanaged() {
    let header = "# Written by stateless at boot: the root file system is reached over this interface.\n";
    assert_eq!(
        networkmanager_conf(&eth0(Some(MAC))),
        format!("{header}[keyfile]\nunmanaged-devices+=mac:52:54:00:12:34:56;interface-name:eth0\n")
    );
    assert_eq!(
        networkmanager_conf(&eth0(None)),
        format!("{header}[keyfile]\nunmanaged-devices+=interface-name:eth0\n")
    );
}

#[test]
fn run_files_are_named_after_the_interface() {
    let files = run_files(&eth0(Some(MAC)), &lab_lease(), 3);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "run/systemd/network/10-stateless-eth0.network",
            "run/NetworkManager/conf.d/stateless-eth0.conf",
            "run/network/ifstate.eth0",
            "run/network/ifstate",
            "run/net-eth0.conf",
        ]
    );
    assert_eq!(files[2].1, "stateless\n");
    assert_eq!(files[3].1, "eth0=stateless\n");
}

#[test]
fn resolv_conf_links_are_followed_into_run_only() {
    let from = |target: &str| ResolvConf::from_link(Some(Path::new(target)));
    assert_eq!(ResolvConf::from_link(None), ResolvConf::File);
    let run = |file: &str| ResolvConf::Run(file.to_string());
    assert_eq!(from("../run/systemd/resolve/stub-resolv.conf"), run("run/systemd/resolve/stub-resolv.conf"));
    assert_eq!(from("/run/systemd/resolve/resolv.conf"), run("run/systemd/resolve/resolv.conf"));
    assert_eq!(from("/run/resolvconf/resolv.conf"), run("run/resolvconf/resolv.conf"));
    assert_eq!(from("../../../../run/./NetworkManager/resolv.conf"), run("run/NetworkManager/resolv.conf"));
    for elsewhere in [
        "/var/run/resolvconf/resolv.conf",
        "resolv.conf.real",
        "/run/../etc/shadow",
        "../run/x/../../etc/passwd",
        "/run",
        "/run/",
        "/",
    ] {
        assert_eq!(from(elsewhere), ResolvConf::Elsewhere(PathBuf::from(elsewhere)), "{elsewhere}");
    }
}

#[test]
fn interface_names_that_are_not_plain_are_refused() {
    for good in ["eth0", "enp0s31f6", "eth0.10", "br-lan", "wlan_1", "enx525400123456"] {
        assert!(plain_interface_name(good), "{good}");
    }
    for bad in ["", ".", "..", "../etc", "a/b", "a b", "eth*", "a;b", "a\nb", "sixteen-bytes-xx", "é"] {
        assert!(!plain_interface_name(bad), "{bad:?}");
    }
}

use crate::fs::Tmp;

fn image(tag: &str, resolv: Option<&str>) -> Tmp {
    let t = Tmp::new(&format!("netconf-{tag}"));
    let dir = t.0.clone();
    std::fs::create_dir_all(dir.join("image/etc")).unwrap();
    std::fs::create_dir_all(dir.join("image/run")).unwrap();
    std::fs::write(dir.join("outside"), "keep\n").unwrap();
    if let Some(target) = resolv {
        std::os::unix::fs::symlink(target, dir.join("image/etc/resolv.conf")).unwrap();
    }
    t
}
fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn write_puts_every_file_in_place() {
    let t = image("all", None);
    let image = t.0.join("image");
    std::fs::write(image.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
    let root = ImageRoot::open(&image).unwrap();
    let written = write(&root, &eth0(Some(MAC)), &lab_lease(), 3, Resolver::Etc).unwrap();
    assert_eq!(written.len(), 6, "{written:?}");
    assert_eq!(written[5], "etc/resolv.conf");
    for (file, content) in run_files(&eth0(Some(MAC)), &lab_lease(), 3) {
        assert_eq!(read(image.join(&file)), content, "{file}");
    }
    assert_eq!(read(image.join("etc/resolv.conf")), resolv_conf(&lab_lease()).unwrap());
    // With /etc read-only, everything but resolv.conf.
    let written = write(&root, &eth0(None), &lab_lease(), 3, Resolver::RunOnly).unwrap();
    assert_eq!(written.len(), 5, "{written:?}");
    // A layer's /etc/resolv.conf is the admin's: kept.
    std::fs::write(image.join("etc/resolv.conf"), "from a layer\n").unwrap();
    let written = write(&root, &eth0(None), &lab_lease(), 3, Resolver::Layer).unwrap();
    assert_eq!(written.len(), 5, "{written:?}");
    assert_eq!(read(image.join("etc/resolv.conf")), "from a layer\n");
    // A name that would lead out of /run is refused before anything is written.
    let evil = Interface { name: "../../outside".into(), ..eth0(None) };
    assert!(write(&root, &evil, &lab_lease(), 3, Resolver::Etc).is_err());
    assert_eq!(read(t.0.join("outside")), "keep\n");
}

#[test]
fn a_resolved_stub_link_is_written_under_run_with_a_dropin() {
    let t = image("stub", Some("../run/systemd/resolve/stub-resolv.conf"));
    let image = t.0.join("image");
    let root = ImageRoot::open(&image).unwrap();
    let written = write(&root, &eth0(Some(MAC)), &lab_lease(), 3, Resolver::Etc).unwrap();
    assert_eq!(written[5..], ["run/systemd/resolve/stub-resolv.conf", "run/systemd/resolved.conf.d/stateless.conf"]);
    assert_eq!(read(image.join("run/systemd/resolve/stub-resolv.conf")), resolv_conf(&lab_lease()).unwrap());
    assert_eq!(read(image.join("run/systemd/resolved.conf.d/stateless.conf")), resolved_dropin(&lab_lease()).unwrap());
    assert!(std::fs::symlink_metadata(image.join("etc/resolv.conf")).unwrap().is_symlink());
}

#[test]
fn a_resolv_conf_link_out_of_run_is_not_followed() {
    let t = image("out", Some("../../outside"));
    let image = t.0.join("image");
    let root = ImageRoot::open(&image).unwrap();
    let written = write(&root, &eth0(Some(MAC)), &lab_lease(), 3, Resolver::Etc).unwrap();
    assert!(written.iter().all(|f| f.starts_with("run/")), "{written:?}");
    assert_eq!(read(t.0.join("outside")), "keep\n");
    assert_eq!(std::fs::read_link(image.join("etc/resolv.conf")).unwrap(), Path::new("../../outside"));
    // A symlinked dir under /run is refused, not followed, even for a target inside /run.
    std::fs::remove_file(image.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink("/run/resolvconf/resolv.conf", image.join("etc/resolv.conf")).unwrap();
    std::os::unix::fs::symlink(&t.0, image.join("run/resolvconf")).unwrap();
    assert!(write(&root, &eth0(Some(MAC)), &lab_lease(), 3, Resolver::Etc).is_err());
    assert!(!t.0.join("resolv.conf").exists());
}
