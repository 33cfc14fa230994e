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
mod tests;
