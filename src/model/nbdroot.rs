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
        let longest = "e".repeat(MAX_EXPORT_NAME);
        assert_eq!(parse(&format!("nbd:10.0.0.1:{longest}")).unwrap().export, longest);
        let err = parse(&format!("nbd:10.0.0.1:{longest}e")).unwrap_err();
        assert_eq!(err, "nbd root: an export name of 4097 bytes (at most 4096)");
    }
}
