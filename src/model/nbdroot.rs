//! An NBD root as dracut writes it (`modules.d/95nbd/parse-nbdroot.sh` and `nbdroot.sh`, man page
//! dracut.cmdline(7)), in `root=`, `netroot=` or a DHCP root-path:
//! `nbd:<server>:<port|exportname>[:<fstype>[:<rootflags>[:<nbdopts>]]]`.
//!
//! - `<server>`: an IPv4 address, or several separated by commas (the same export on each, tried
//!   in turn). No host names: PID 1 has no resolver. dracut's `[IPv6]` is not taken.
//! - `<port|exportname>`: digits are a port (1 to 65535) with the server's default export (the
//!   empty name); anything else is the export's name on port 10809 (IANA's), as dracut decides.
//! - `<fstype>`: empty or `auto`: the filesystem is found out; `<rootflags>` and `<nbdopts>`:
//!   comma lists, kept as given (dracut's `ro`/`rw` among the flags; the options are nbd-client's).

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::model::servers;
use crate::model::text::quoted;

/// NBD's port (IANA), used when the spec names an export.
pub const DEFAULT_PORT: u16 = 10809;
/// The longest export name the NBD protocol allows.
pub const MAX_EXPORT_NAME: usize = 4096;

/// Where the root's block device comes from, and how it is mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NbdRoot {
    /// In the order given; never empty, no address twice.
    pub servers: Vec<SocketAddrV4>,
    /// The export's name; empty: the server's default export (a port was given).
    pub export: String,
    /// None: `auto`, found out.
    pub fstype: Option<String>,
    /// dracut's rootflags, as given.
    pub mount_options: Vec<String>,
    /// dracut's nbdopts (options for nbd-client), as given.
    pub client_options: Vec<String>,
}

impl NbdRoot {
    /// The servers in the order the client with `mac` tries them ([`servers::order`], the
    /// same weights as an NFS root's).
    pub fn ordered_for(self, mac: Option<[u8; 6]>) -> NbdRoot {
        let ips: Vec<Ipv4Addr> = self.servers.iter().map(|s| *s.ip()).collect();
        let port = self.servers.first().map_or(DEFAULT_PORT, |s| s.port());
        let servers = servers::order(&ips, mac).into_iter().map(|ip| SocketAddrV4::new(ip, port)).collect();
        NbdRoot { servers, ..self }
    }

    /// `nbd://server:port/export` (the export escaped) for the report and the log.
    pub fn source(&self, server: SocketAddrV4) -> String {
        format!("nbd://{server}/{}", crate::model::text::escape(self.export.as_bytes()))
    }

    /// The options mount(2) gets: the rootflags but `ro` and `rw` (an image root is read-only).
    pub fn mount_data(&self) -> String {
        let kept: Vec<&str> =
            self.mount_options.iter().map(String::as_str).filter(|o| !matches!(*o, "ro" | "rw")).collect();
        kept.join(",")
    }
}

impl NbdRoot {
    /// `nbd <servers> export <export>`, the export as given (unescaped: for a caller that
    /// escapes the whole line, as a step's text does).
    pub fn unescaped(&self) -> String {
        let servers: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        let export = if self.export.is_empty() { "(the default export)" } else { &self.export };
        format!("nbd {} export {export}", servers.join(","))
    }
}

/// [`NbdRoot::unescaped`], escaped: the export is the command line's or a DHCP server's.
impl std::fmt::Display for NbdRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::model::text::escape(self.unescaped().as_bytes()))
    }
}

/// An NBD root as the boot attached it (the report's `nbd_root`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The server the device reads from.
    pub server: SocketAddrV4,
    pub export: String,
    /// `/dev/nbd<index>`.
    pub index: u32,
    /// The export's size, as its server gave it.
    pub size: u64,
    /// The servers tried before it and why each failed.
    #[serde(default)]
    pub failed: Vec<FailedNbd>,
    /// The pid of the process that reconnects the device when its server goes
    /// (`stateless nbd-supervise`), when it started.
    #[serde(default)]
    pub supervisor: Option<u32>,
}

/// A server given up on, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedNbd {
    pub server: SocketAddrV4,
    pub reason: String,
}

fn list(field: Option<&str>) -> Vec<String> {
    field.unwrap_or_default().split(',').filter(|o| !o.is_empty()).map(str::to_string).collect()
}

/// The NBD root from a spec starting `nbd:`, or why it is not one.
pub fn parse(spec: &str) -> Result<NbdRoot, String> {
    let rest = spec.strip_prefix("nbd:").ok_or_else(|| format!("{} is not an nbd: root", quoted(spec)))?;
    let mut fields = rest.splitn(5, ':');
    let (servers, target) = (fields.next().unwrap_or_default(), fields.next().unwrap_or_default());
    if servers.starts_with('[') {
        return Err(format!("nbd root {}: IPv6 servers are not supported", quoted(spec)));
    }
    if target.is_empty() {
        return Err(format!("nbd root {}: no port or export name after the server", quoted(spec)));
    }
    let (port, export) = if target.bytes().all(|b| b.is_ascii_digit()) {
        let port = target.parse::<u16>().ok().filter(|&p| p > 0);
        let port = port.ok_or_else(|| format!("nbd root {}: port {target} is not 1 to 65535", quoted(spec)))?;
        (port, String::new())
    } else if target.len() > MAX_EXPORT_NAME {
        return Err(format!("nbd root: an export name of {} bytes (at most {MAX_EXPORT_NAME})", target.len()));
    } else {
        (DEFAULT_PORT, target.to_string())
    };
    let mut addrs: Vec<SocketAddrV4> = Vec::new();
    let named = servers.split(',').count();
    if named > servers::MAX_SERVERS {
        return Err(format!("nbd root {}: {named} servers (at most {})", quoted(spec), servers::MAX_SERVERS));
    }
    for server in servers.split(',') {
        let addr = server.parse::<Ipv4Addr>().map_err(|_| {
            format!(
                "nbd root {}: server {} is not an IPv4 address (names need DNS, which PID 1 does not have)",
                quoted(spec),
                quoted(server)
            )
        })?;
        let addr = SocketAddrV4::new(addr, port);
        if addrs.contains(&addr) {
            return Err(format!("nbd root {}: server {addr} is named twice", quoted(spec)));
        }
        addrs.push(addr);
    }
    let fstype = fields.next().filter(|t| !t.is_empty() && *t != "auto");
    if let Some(t) = fstype.filter(|t| !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))) {
        return Err(format!("nbd root {}: {} is not a filesystem type", quoted(spec), quoted(t)));
    }
    Ok(NbdRoot {
        servers: addrs,
        export,
        fstype: fstype.map(str::to_string),
        mount_options: list(fields.next()),
        client_options: list(fields.next()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn root(servers: &[&str], export: &str, fstype: Option<&str>, mount: &[&str], client: &[&str]) -> NbdRoot {
        NbdRoot {
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            export: export.into(),
            fstype: fstype.map(str::to_string),
            mount_options: mount.iter().map(|s| s.to_string()).collect(),
            client_options: client.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// dracut's own tests (test/TEST-40-NBD: test.sh and dhcpd.conf's root-paths) and its man page.
    #[test]
    fn dracut_forms() {
        let raw = |fstype, mount: &[&str]| root(&["192.168.50.1:10809"], "raw", fstype, mount, &[]);
        assert_eq!(parse("nbd:192.168.50.1:raw"), Ok(raw(None, &[])));
        assert_eq!(parse("nbd:192.168.50.1:raw:ext2"), Ok(raw(Some("ext2"), &[])));
        assert_eq!(parse("nbd:192.168.50.1:raw::errors=panic"), Ok(raw(None, &["errors=panic"])));
        assert_eq!(parse("nbd:192.168.50.1:raw:ext4:errors=panic"), Ok(raw(Some("ext4"), &["errors=panic"])));
        assert_eq!(
            parse("nbd:192.168.50.1:encrypted:ext2:errors=panic"),
            Ok(root(&["192.168.50.1:10809"], "encrypted", Some("ext2"), &["errors=panic"], &[]))
        );
        // A port: the server's default export (nbd-client without -name).
        assert_eq!(parse("nbd:192.168.50.1:2000"), Ok(root(&["192.168.50.1:2000"], "", None, &[], &[])));
        // auto is dracut's default fstype; nbdopts keep what follows, colons too.
        assert_eq!(
            parse("nbd:10.0.0.1:root-1a2b:auto:ro,noatime:timeout=30,bs=4096,x:y"),
            Ok(root(&["10.0.0.1:10809"], "root-1a2b", None, &["ro", "noatime"], &["timeout=30", "bs=4096", "x:y"]))
        );
    }

    #[test]
    fn ordered_as_nfs_servers_are_and_shown_escaped() {
        let root = parse("nbd:10.0.0.1,10.0.0.2,10.0.0.3:ro\x1bt:squashfs:ro,noatime").unwrap();
        let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        let ips: Vec<Ipv4Addr> = root.servers.iter().map(|s| *s.ip()).collect();
        let want: Vec<SocketAddrV4> =
            servers::order(&ips, Some(mac)).into_iter().map(|ip| SocketAddrV4::new(ip, DEFAULT_PORT)).collect();
        let ordered = root.clone().ordered_for(Some(mac));
        assert_eq!(ordered.servers, want);
        assert_eq!(root.clone().ordered_for(None).servers, root.servers);
        assert_eq!(root.mount_data(), "noatime");
        assert_eq!(root.source(root.servers[0]), "nbd://10.0.0.1:10809/ro\\x1bt");
        assert_eq!(root.to_string(), "nbd 10.0.0.1:10809,10.0.0.2:10809,10.0.0.3:10809 export ro\\x1bt");
        // A step's text escapes the whole line once.
        let step = crate::model::step::Step::NbdRoot { root, root_hash: None };
        assert!(step.to_string().starts_with("nbd 10.0.0.1:10809,10.0.0.2:10809,10.0.0.3:10809 export ro\\x1bt on"));
    }

    #[test]
    fn server_lists() {
        assert_eq!(
            parse("nbd:10.0.0.1,10.0.0.2:root:squashfs"),
            Ok(root(&["10.0.0.1:10809", "10.0.0.2:10809"], "root", Some("squashfs"), &[], &[]))
        );
        assert_eq!(parse("nbd:10.0.0.2,10.0.0.1:10810").unwrap().servers[0], "10.0.0.2:10810".parse().unwrap());
    }

    #[test]
    fn refused_with_the_reason() {
        for (spec, says) in [
            ("nfs:10.0.0.1:/srv", "is not an nbd: root"),
            ("nbd:server.lan:root", "server \"server.lan\" is not an IPv4 address (names need DNS"),
            ("nbd:[fd00::1]:root", "IPv6 servers are not supported"),
            ("nbd:10.0.0.1", "no port or export name"),
            ("nbd:10.0.0.1:", "no port or export name"),
            ("nbd::root", "server \"\" is not an IPv4 address"),
            ("nbd:10.0.0.1,:root", "server \"\" is not an IPv4 address"),
            ("nbd:10.0.0.1:0", "port 0 is not 1 to 65535"),
            ("nbd:10.0.0.1:65536", "port 65536 is not 1 to 65535"),
            ("nbd:10.0.0.1,10.0.0.1:root", "server 10.0.0.1:10809 is named twice"),
            ("nbd:10.0.0.1:root:ext4;rm", "\"ext4;rm\" is not a filesystem type"),
            ("nbd:10.0.0.1\n:root", "server \"10.0.0.1\\x0a\""),
        ] {
            let err = parse(spec).unwrap_err();
            assert!(err.contains(says), "{spec}: {err}");
        }
        let seventeen: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}")).collect();
        let err = parse(&format!("nbd:{}:root", seventeen.join(","))).unwrap_err();
        assert!(err.ends_with("17 servers (at most 16)"), "{err}");
        let longest = "e".repeat(MAX_EXPORT_NAME);
        assert_eq!(parse(&format!("nbd:10.0.0.1:{longest}")).unwrap().export, longest);
        let err = parse(&format!("nbd:10.0.0.1:{longest}e")).unwrap_err();
        assert_eq!(err, "nbd root: an export name of 4097 bytes (at most 4096)");
    }
}
