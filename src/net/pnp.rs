//! `/proc/net/pnp`: what the kernel's IP autoconfiguration (`ip=dhcp`, CONFIG_IP_PNP) learned.
//! [`parse`] takes the text, [`read`] a path, tested on files in `tests/data/net/` (as
//! Bottlerocket's parsers are).
//!
//! The kernel writes it in `pnp_seq_show()` (net/ipv4/ipconfig.c):
//!
//! ```text
//! #PROTO: DHCP            (or BOOTP, RARP; "#MANUAL" when no protocol was used)
//! domain lab.example      (only when the server sent one)
//! nameserver 10.0.2.3     (up to 3 lines)
//! bootserver 10.0.2.2     (only when known)
//! ```
//!
//! The parser is tolerant: unknown lines are ignored, unparsable addresses skipped. Everything in
//! it came from a DHCP/BOOTP server on the wire, so the domain is kept raw for a later validator.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;

/// At most this many nameservers are kept (the kernel's `CONF_NAMESERVERS_MAX`, also resolv.conf's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;

/// The contents of `/proc/net/pnp`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pnp {
    /// `DHCP`, `BOOTP`, `RARP`, or `MANUAL` (from `#MANUAL`); `None` when the header is missing.
    pub proto: Option<String>,
    /// The domain name the server sent, unvalidated; `None` when absent or empty.
    pub domain: Option<String>,
    /// Nameservers in file order, without duplicates, `0.0.0.0` and `255.255.255.255`.
    pub nameservers: Vec<Ipv4Addr>,
    /// The boot server; `None` when absent or unset (`0.0.0.0`, `255.255.255.255`).
    pub bootserver: Option<Ipv4Addr>,
}

/// An address the kernel uses as "none": `0.0.0.0`, or `255.255.255.255` (its `NONE`, never printed
/// by the kernel itself, but also never a usable server).
fn usable(addr: Ipv4Addr) -> Option<Ipv4Addr> {
    (!addr.is_unspecified() && !addr.is_broadcast()).then_some(addr)
}

/// Parses the text of `/proc/net/pnp`. Never fails: what it does not understand is left out.
pub fn parse(text: &str) -> Pnp {
    let mut pnp = Pnp::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(header) = line.strip_prefix('#') {
            if pnp.proto.is_some() {
                continue;
            }
            let proto = match header.strip_prefix("PROTO:") {
                Some(p) => p.trim(),
                None => header.trim(),
            };
            if !proto.is_empty() && proto.bytes().all(|b| b.is_ascii_alphanumeric()) {
                pnp.proto = Some(proto.to_owned());
            }
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            // Raw on purpose: validation belongs to whoever writes it somewhere.
            "domain" if pnp.domain.is_none() && !value.trim().is_empty() => {
                pnp.domain = Some(value.to_owned());
            }
            "nameserver" => {
                if let Some(addr) = value.trim().parse().ok().and_then(usable) {
                    if pnp.nameservers.len() < MAX_NAMESERVERS && !pnp.nameservers.contains(&addr) {
                        pnp.nameservers.push(addr);
                    }
                }
            }
            "bootserver" if pnp.bootserver.is_none() => {
                pnp.bootserver = value.trim().parse().ok().and_then(usable);
            }
            _ => {}
        }
    }
    pnp
}

/// Reads and parses `path` (normally `/proc/net/pnp`). Invalid UTF-8 is replaced, not an error.
pub fn read(path: &Path) -> std::io::Result<Pnp> {
    let bytes = std::fs::read(path)?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/net").join(name)
    }

    #[test]
    fn dhcp_with_domain() {
        let pnp = read(&fixture("pnp-dhcp.txt")).unwrap();
        assert_eq!(
            pnp,
            Pnp {
                proto: Some("DHCP".into()),
                domain: Some("lab.example".into()),
                nameservers: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 2, 4)],
                bootserver: Some(Ipv4Addr::new(10, 0, 2, 2)),
            }
        );
        let json = serde_json::to_value(&pnp).unwrap();
        assert_eq!(json["nameservers"][0], "10.0.2.3");
        assert_eq!(json["bootserver"], "10.0.2.2");
    }

    #[test]
    fn manual_without_anything() {
        let pnp = read(&fixture("pnp-manual.txt")).unwrap();
        assert_eq!(pnp, Pnp { proto: Some("MANUAL".into()), ..Pnp::default() });
    }

    #[test]
    fn bootp_and_rarp_headers() {
        assert_eq!(parse("#PROTO: BOOTP\n").proto.as_deref(), Some("BOOTP"));
        assert_eq!(parse("#PROTO: RARP\nbootserver 192.0.2.1\n").bootserver, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(parse("#PROTO: MANUAL\n").proto.as_deref(), Some("MANUAL"));
    }

    #[test]
    fn garbage_is_tolerated() {
        let pnp = read(&fixture("pnp-garbage.txt")).unwrap();
        assert_eq!(
            pnp,
            Pnp {
                proto: Some("DHCP".into()),
                domain: Some("evil.example; rm -rf /".into()),
                nameservers: vec![
                    Ipv4Addr::new(192, 0, 2, 53),
                    Ipv4Addr::new(192, 0, 2, 54),
                    Ipv4Addr::new(192, 0, 2, 55),
                ],
                bootserver: None,
            }
        );
    }

    #[test]
    fn empty_and_odd_inputs() {
        assert_eq!(parse(""), Pnp::default());
        assert_eq!(parse("\n\n#\n#PROTO:\ndomain\ndomain \nnameserver\nbootserver\n"), Pnp::default());
        assert_eq!(parse("nameserver 0.0.0.0\nbootserver 0.0.0.0\n"), Pnp::default());
        assert_eq!(parse("#PROTO: DHCP\r\ndomain x.example\r\n").domain.as_deref(), Some("x.example"));
        // No header at all still yields the rest.
        assert_eq!(parse("nameserver 192.0.2.1").nameservers, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        // The first header wins.
        assert_eq!(parse("#PROTO: DHCP\n#MANUAL\n").proto.as_deref(), Some("DHCP"));
    }

    #[test]
    fn lossy_on_invalid_utf8() {
        let dir = std::env::temp_dir().join(format!("stateless-pnp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pnp");
        std::fs::write(&path, b"#PROTO: DHCP\ndomain a\xffb\nnameserver 192.0.2.9\n").unwrap();
        let pnp = read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(pnp.domain.as_deref(), Some("a\u{fffd}b"));
        assert_eq!(pnp.nameservers, vec![Ipv4Addr::new(192, 0, 2, 9)]);
        assert!(read(Path::new("/nonexistent/stateless/pnp")).is_err());
    }

    #[test]
    fn live_proc_net_pnp_parses_when_present() {
        let path = Path::new("/proc/net/pnp");
        if path.exists() {
            let pnp = read(path).unwrap();
            assert!(pnp.proto.is_some(), "{pnp:?}");
        }
    }
}
