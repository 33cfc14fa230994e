//! Handing the network on: what the real init finds in the image so that it keeps the boot
//! interface (the NFS root hangs on it) and knows the DHCP lease. Pure functions give each
//! file's content; [`write`] puts them in place. docs/network.md gives the sources followed.
//!
//! | file | read by |
//! |---|---|
//! | `/run/systemd/network/10-stateless-<dev>.network` | systemd-networkd: keep the address and routes |
//! | `/run/NetworkManager/conf.d/stateless-<dev>.conf` | NetworkManager: the interface unmanaged |
//! | `/run/network/ifstate.<dev>`, `/run/network/ifstate` | ifupdown: already up, as `stateless` |
//! | `/run/net-<dev>.conf` | scripts reading klibc ipconfig's output (initramfs-tools, LTSP) |
//! | `/etc/resolv.conf`, or where it links to under /run | the resolver |
//! | `/run/systemd/resolved.conf.d/stateless.conf` | systemd-resolved, when resolv.conf is its file |

use std::ffi::OsStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::io::Errno;

use crate::fs::root::{replace_file, ImageRoot};
use crate::model::hostname;
use crate::model::interface::{format_mac, Interface};
use crate::model::lease::Lease;
use crate::model::options::IpParam;
use crate::model::outcome::{Failure, Op};
use crate::model::text::escape_path;

/// The logical interface ifupdown is told the boot interface is up as. No stanza of
/// /etc/network/interfaces defines it, so `ifdown` runs no command for it: it only forgets it.
const IFUPDOWN_LOGICAL: &str = "stateless";

/// glibc's resolver reads at most this many `nameserver` lines (`MAXNS`).
const MAXNS: usize = 3;

/// The first line of the files that are not klibc's or ifupdown's own formats.
const HEADER: &str = "# Written by stateless at boot";

/// `/run/net-<device>.conf` byte for byte as klibc's ipconfig writes it after a DHCP ACK
/// (`dump_device_config`): every variable, what is unknown as `0.0.0.0` or `''`.
/// `uptime_secs` is the time since boot when the lease came (klibc's `sysinfo` uptime).
/// `PROTO` is `dhcp` when a DHCP server answered (the lease names one), else `none`, as klibc
/// writes for a static configuration.
pub fn klibc_conf(device: &str, lease: &Lease, uptime_secs: u64) -> String {
    let unset = Ipv4Addr::UNSPECIFIED;
    let addr = |a: Option<Ipv4Addr>| a.unwrap_or(unset).to_string();
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let net = lease.address;
    let vars = [
        ("DEVICE", device.to_string()),
        ("PROTO", if lease.server.is_some() { "dhcp" } else { "none" }.to_string()),
        ("IPV4ADDR", addr(net.map(|n| n.addr))),
        ("IPV4BROADCAST", addr(lease.broadcast.or(net.map(|n| n.broadcast())))),
        ("IPV4NETMASK", addr(net.map(|n| n.netmask()))),
        ("IPV4GATEWAY", addr(lease.routers.first().copied())),
        ("IPV4DNS0", addr(lease.dns.first().copied())),
        ("IPV4DNS1", addr(lease.dns.get(1).copied())),
        ("HOSTNAME", text(&lease.hostname)),
        ("DNSDOMAIN", text(&lease.domain)),
        ("NISDOMAIN", String::new()),
        // klibc: siaddr, else the server identifier.
        ("ROOTSERVER", addr(lease.next_server.or(lease.server))),
        ("ROOTPATH", text(&lease.root_path)),
        ("filename", text(&lease.bootfile)),
        ("UPTIME", uptime_secs.to_string()),
        ("DHCPLEASETIME", lease.lease_secs.unwrap_or(0).to_string()),
        ("DOMAINSEARCH", String::new()),
    ];
    vars.iter().map(|(name, value)| shell_assignment(name, value)).collect()
}

/// `NAME='value'` as klibc's `write_option` writes it: in single quotes, with `'` and `!` each
/// written as `'\''` and `'\!'`, so that sourcing it runs nothing. A value holding a control
/// character (a validated lease has none) is written empty: one line per variable, always.
fn shell_assignment(name: &str, value: &str) -> String {
    let value = if value.chars().any(char::is_control) { "" } else { value };
    let mut line = format!("{name}='");
    for c in value.chars() {
        if c == '\'' || c == '!' {
            line.extend(['\'', '\\', c, '\'']);
        } else {
            line.push(c);
        }
    }
    line.push_str("'\n");
    line
}

/// `lease` with a static `ip=` line's name servers in place of its own, when the line gives any
/// ([`IpParam::servers`]: as the kernel's ipconfig, which asks no DHCP then; what our INFORM got
/// or /proc/net/pnp says yields to them). A line that asks DHCP leaves the lease's.
pub fn with_line_dns(mut lease: Lease, ip: Option<&IpParam>) -> Lease {
    let (dns, _) = ip.map_or((&[][..], &[][..]), IpParam::servers);
    if !dns.is_empty() {
        lease.dns = dns.to_vec();
    }
    lease
}

/// A static `ip=` line's name and time servers, as the step's detail names them (`None`: none).
/// Time servers are written nowhere, as the lease's (the kernel only shows them too, in
/// /proc/net/ipconfig/ntp_servers).
pub fn line_servers(ip: Option<&IpParam>) -> Option<String> {
    let (dns, ntp) = ip.map_or((&[][..], &[][..]), IpParam::servers);
    let list = |what: &str, servers: &[Ipv4Addr]| {
        let servers: Vec<String> = servers.iter().map(Ipv4Addr::to_string).collect();
        (!servers.is_empty()).then(|| format!("{what} {}", servers.join(" ")))
    };
    let taken: Vec<String> = [list("dns", dns), list("ntp", ntp)].into_iter().flatten().collect();
    (!taken.is_empty()).then(|| format!("{} from ip=", taken.join(", ")))
}

/// The lease's domain when it is a valid host name: nothing else goes into a search line.
fn search_domain(lease: &Lease) -> Option<String> {
    lease.domain.as_deref().and_then(|domain| hostname::validate(domain).ok())
}

/// resolv.conf(5) for the lease: a `nameserver` line for each of the first three servers (glibc
/// reads no more) and `search <domain>`; `None` when the lease names neither.
pub fn resolv_conf(lease: &Lease) -> Option<String> {
    let domain = search_domain(lease);
    if lease.dns.is_empty() && domain.is_none() {
        return None;
    }
    let mut text = format!("{HEADER} from the DHCP lease or ip=.\n");
    for server in lease.dns.iter().take(MAXNS) {
        text += &format!("nameserver {server}\n");
    }
    if let Some(domain) = domain {
        text += &format!("search {domain}\n");
    }
    Some(text)
}

/// A systemd-resolved drop-in with the lease's servers and domain. resolved replaces its
/// stub-resolv.conf with `nameserver 127.0.0.53` when it starts; this gives it the servers to
/// forward to (no network manager tells it any for the boot interface). `None` as for
/// [`resolv_conf`].
pub fn resolved_dropin(lease: &Lease) -> Option<String> {
    let domain = search_domain(lease);
    if lease.dns.is_empty() && domain.is_none() {
        return None;
    }
    let mut text = format!("{HEADER} from the DHCP lease or ip=.\n[Resolve]\n");
    if !lease.dns.is_empty() {
        let servers: Vec<String> = lease.dns.iter().map(Ipv4Addr::to_string).collect();
        text += &format!("DNS={}\n", servers.join(" "));
    }
    if let Some(domain) = domain {
        text += &format!("Domains={domain}\n");
    }
    Some(text)
}

/// A systemd-networkd .network file that keeps the boot interface's address and routes, on
/// start and reconfiguration (`KeepConfiguration=yes`, systemd 243 and later) and when the
/// carrier goes (`IgnoreCarrierLoss=yes`), and runs no DHCP client of its own on it. Matched by
/// MAC address, which survives a rename (`Type=ether` leaves out the VLANs and bridges that
/// share it), else by name.
pub fn networkd_network(interface: &Interface) -> String {
    let matching = match &interface.mac {
        Some(mac) => format!("MACAddress={}\nType=ether\n", format_mac(mac)),
        None => format!("Name={}\n", interface.name),
    };
    format!(
        "{HEADER}: the root file system is reached over this interface.\n\
         [Match]\n{matching}\n[Network]\nKeepConfiguration=yes\nIgnoreCarrierLoss=yes\n"
    )
}

/// A NetworkManager conf.d snippet that leaves the boot interface unmanaged, by MAC address
/// (which survives a rename) and by name; `+=` adds to what other snippets list.
pub fn networkmanager_conf(interface: &Interface) -> String {
    let by_mac = interface.mac.map(|mac| format!("mac:{};", format_mac(&mac))).unwrap_or_default();
    format!(
        "{HEADER}: the root file system is reached over this interface.\n\
         [keyfile]\nunmanaged-devices+={by_mac}interface-name:{}\n",
        interface.name
    )
}

/// The files for the boot interface that are the same whatever the image holds, relative to the
/// root, with their contents: what keeps the interface first, then klibc's file.
pub fn run_files(interface: &Interface, lease: &Lease, uptime_secs: u64) -> Vec<(String, String)> {
    let dev = &interface.name;
    vec![
        (format!("run/systemd/network/10-stateless-{dev}.network"), networkd_network(interface)),
        (format!("run/NetworkManager/conf.d/stateless-{dev}.conf"), networkmanager_conf(interface)),
        // ifupdown's state: the interface's own file, then the list `ifdown -a` and
        // `ifquery --state` read.
        (format!("run/network/ifstate.{dev}"), format!("{IFUPDOWN_LOGICAL}\n")),
        ("run/network/ifstate".to_string(), format!("{dev}={IFUPDOWN_LOGICAL}\n")),
        (format!("run/net-{dev}.conf"), klibc_conf(dev, lease, uptime_secs)),
    ]
}

/// What `/etc/resolv.conf` is in the image, read without following it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolvConf {
    /// A file, or nothing: written in place, when /etc is writable.
    File,
    /// A symlink to a file under /run (systemd-resolved's `stub-resolv.conf` or `resolv.conf`,
    /// resolvconf's, NetworkManager's): that file is written (`run/...`, relative to the root).
    Run(String),
    /// A symlink anywhere else (the target as read): left alone, never followed.
    Elsewhere(PathBuf),
}

impl ResolvConf {
    /// From the symlink's target (`None`: not a symlink). The target is taken by its text alone,
    /// relative to /etc, `..` never above the root, so a symlink on the way is not followed (and
    /// the writer reaches the file dir by dir, refusing symlinks).
    pub fn from_link(target: Option<&Path>) -> Self {
        let Some(target) = target else { return ResolvConf::File };
        let mut resolved = PathBuf::from("etc");
        for component in target.components() {
            match component {
                Component::RootDir => resolved = PathBuf::new(),
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => resolved.push(name),
                Component::CurDir | Component::Prefix(_) => {}
            }
        }
        match resolved.to_str() {
            Some(file) if resolved.starts_with("run") && resolved.components().count() > 1 => {
                ResolvConf::Run(file.to_string())
            }
            _ => ResolvConf::Elsewhere(target.to_path_buf()),
        }
    }
}

/// Where the resolver's files may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// /etc is writable and no layer wrote /etc/resolv.conf: where it leads (see [`ResolvConf`]).
    Etc,
    /// Only where /etc/resolv.conf leads under /run (/etc is read-only).
    RunOnly,
    /// Nowhere: a layer supplied /etc/resolv.conf, and the admin's file wins.
    Layer,
}

/// Writes the [`run_files`] for `interface` and `lease`, then the resolver's (see
/// [`ResolvConf`] and [`Resolver`]), each replaced whole: written beside and
/// renamed over, directories made as needed, no symlink followed on the way. The caller makes
/// sure /run is a tmpfs, as nothing may land on the shared root. Returns the files written,
/// relative to the root; stops at the first that fails. An interface name that is not plain
/// (letters, digits, `-`, `_`, `.`; what file names and match lines can take as they are) is
/// refused.
pub fn write(
    root: &ImageRoot,
    interface: &Interface,
    lease: &Lease,
    uptime_secs: u64,
    resolver: Resolver,
) -> Result<Vec<String>, Failure> {
    if !plain_interface_name(&interface.name) {
        let name = Path::new(&interface.name);
        return Err(Failure::new(Op::Write, Some(name), "not a plain interface name: no file is named after it"));
    }
    let mut files = run_files(interface, lease, uptime_secs);
    files.extend(resolver_files(root, lease, resolver)?);
    let mut written = Vec::new();
    for (file, content) in files {
        write_file(root, &file, &content)?;
        written.push(file);
    }
    Ok(written)
}

/// 1 to 15 bytes (`IFNAMSIZ`) of letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn plain_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The resolver's files, where /etc/resolv.conf leads; for systemd-resolved's, its drop-in too.
fn resolver_files(root: &ImageRoot, lease: &Lease, resolver: Resolver) -> Result<Vec<(String, String)>, Failure> {
    let (Some(content), Some(dropin)) = (resolv_conf(lease), resolved_dropin(lease)) else {
        return Ok(Vec::new());
    };
    if resolver == Resolver::Layer {
        log::info!("/etc/resolv.conf comes from a layer: kept, the lease's DNS servers not written");
        return Ok(Vec::new());
    }
    Ok(match ResolvConf::from_link(resolv_conf_link(root)?.as_deref()) {
        ResolvConf::File if resolver == Resolver::Etc => vec![("etc/resolv.conf".to_string(), content)],
        ResolvConf::File => {
            log::warn!("/etc is not writable: /etc/resolv.conf left as it is");
            Vec::new()
        }
        ResolvConf::Run(file) if file.starts_with("run/systemd/resolve/") => {
            vec![(file, content), ("run/systemd/resolved.conf.d/stateless.conf".to_string(), dropin)]
        }
        ResolvConf::Run(file) => vec![(file, content)],
        ResolvConf::Elsewhere(target) => {
            let target = escape_path(&target);
            log::warn!("/etc/resolv.conf links to {target}, outside /run: left as it is, not followed");
            Vec::new()
        }
    })
}

/// The target of /etc/resolv.conf (/etc reached following no symlink); `None` when it is
/// missing or not a symlink.
fn resolv_conf_link(root: &ImageRoot) -> Result<Option<PathBuf>, Failure> {
    let fail = |e: &io::Error| Failure::io(Op::Open, Some(&root.host_path("etc/resolv.conf")), e);
    let etc = root.dir("etc").map_err(|e| fail(&e))?;
    match rustix::fs::readlinkat(&etc.fd, "resolv.conf", Vec::new()) {
        Ok(target) => Ok(Some(PathBuf::from(OsStr::from_bytes(target.as_bytes())))),
        Err(Errno::NOENT | Errno::INVAL) => Ok(None),
        Err(e) => Err(fail(&e.into())),
    }
}

/// Replaces `file` (relative to the root) with `content`, making its missing directories.
fn write_file(root: &ImageRoot, file: &str, content: &str) -> Result<(), Failure> {
    let path = Path::new(file);
    let fail = |e: &io::Error| Failure::io(Op::Write, Some(&root.host_path(path)), e);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Failure::new(Op::Write, Some(path), "not a file path"));
    };
    let dir = root.create_dir_all(parent, 0o755).map_err(|e| fail(&e))?;
    replace_file(dir.fd.as_fd(), name, content.as_bytes(), 0o644).map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
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
        assert_eq!(
            written[5..],
            ["run/systemd/resolve/stub-resolv.conf", "run/systemd/resolved.conf.d/stateless.conf"]
        );
        assert_eq!(read(image.join("run/systemd/resolve/stub-resolv.conf")), resolv_conf(&lab_lease()).unwrap());
        assert_eq!(
            read(image.join("run/systemd/resolved.conf.d/stateless.conf")),
            resolved_dropin(&lab_lease()).unwrap()
        );
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
}
