//! Which hostname the client gets, and whether a name is acceptable at all.
//!
//! Candidates are tried in order: `stateless.hostname=`, the kernel's hostname (set by `ip=dhcp`
//! or `ip=...:<hostname>:...`), the DHCP client's (a later source), then `<prefix><last octet>`
//! as the old stateless.sh did. Every candidate is untrusted input and must pass RFC 1123.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::ipv4::Ipv4Net;

/// Where the chosen hostname came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `stateless.hostname=` (or `--hostname` of plan/apply, which stands in for the kernel's).
    Cmdline,
    /// The kernel already had one (kernel DHCP, `ip=` static config).
    Kernel,
    /// The `<hostname>` field of `ip=`, when no kernel autoconfiguration set it (initramfs
    /// mode, or a kernel without it).
    Ip,
    /// Our DHCP client.
    Dhcp,
    /// `<prefix><last octet of the address>`.
    Fallback,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Cmdline => "command line",
            Source::Kernel => "kernel",
            Source::Ip => "ip=",
            Source::Dhcp => "dhcp",
            Source::Fallback => "fallback",
        })
    }
}

/// A name offered by one source, not yet validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub source: Source,
    pub name: String,
}

/// The chosen, validated hostname.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hostname {
    /// First label: what `sethostname` gets and what the `hosts/` and `labs/` layers are keyed on.
    pub short: String,
    /// The rest of a fully qualified name, or the DHCP domain.
    pub domain: Option<String>,
    pub source: Source,
}

impl Hostname {
    /// `short.domain`, or `short` without a domain.
    pub fn fqdn(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{}.{}", self.short, domain),
            None => self.short.clone(),
        }
    }

    /// The `labs/` layer key: the part before the first `-` (`lab3-12` → `lab3`); the whole
    /// name when it has no `-`, as `${HOSTNAME%%-*}` gave in the old scripts.
    pub fn lab(&self) -> &str {
        self.short.split('-').next().unwrap_or(&self.short)
    }
}

/// Longest name `sethostname` takes (`__NEW_UTS_LEN`).
const UTS_LEN: usize = 64;

/// Checks a hostname against RFC 1123: dot-separated labels of 1–63 letters, digits and `-`,
/// not starting or ending with `-`, 253 characters at most. One trailing dot is allowed and removed.
pub fn validate(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("empty".into());
    }
    if trimmed.len() > 253 {
        return Err(format!("{} characters, more than 253", trimmed.len()));
    }
    for label in trimmed.split('.') {
        validate_label(label)?;
    }
    Ok(trimmed.to_string())
}

fn validate_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("empty label".into());
    }
    if label.len() > 63 {
        return Err(format!("label of {} characters, more than 63", label.len()));
    }
    if let Some(bad) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(format!("character {bad:?} not allowed"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("label {label:?} starts or ends with '-'"));
    }
    Ok(())
}

/// True when the kernel's hostname means "none was given": empty, `(none)`, `localhost`,
/// or a dotted IPv4 string (what the kernel's DHCP sets when the server sent no name).
pub fn kernel_name_is_unset(name: &str) -> bool {
    let name = name.trim();
    name.is_empty()
        || name == "(none)"
        || name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.localdomain")
        || name.parse::<Ipv4Addr>().is_ok()
}

/// Splits a validated name into a short name and a domain; `domain_hint` (e.g. DHCP option 15)
/// is used when the name itself has no domain and the hint is a valid name.
fn split(name: &str, source: Source, domain_hint: Option<&str>) -> Result<Hostname, String> {
    let (short, domain) = match name.split_once('.') {
        Some((short, domain)) => (short.to_string(), Some(domain.to_string())),
        None => (name.to_string(), domain_hint.and_then(|d| validate(d).ok())),
    };
    if short.len() >= UTS_LEN {
        return Err(format!("short name of {} characters, more than {}", short.len(), UTS_LEN - 1));
    }
    Ok(Hostname { short, domain, source })
}

/// The outcome of choosing: the hostname (if any source gave a valid one) and why the
/// candidates before it were rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    pub hostname: Option<Hostname>,
    pub rejected: Vec<String>,
}

/// Picks the first valid candidate, else the fallback `<prefix><last octet>` when an address is known.
pub fn choose(candidates: &[Candidate], prefix: &str, addr: Option<Ipv4Net>, domain_hint: Option<&str>) -> Choice {
    let mut choice = Choice::default();
    let fallback = addr.map(|a| Candidate { source: Source::Fallback, name: format!("{prefix}{}", a.last_octet()) });
    for candidate in candidates.iter().chain(fallback.as_ref()) {
        match validate(&candidate.name).and_then(|name| split(&name, candidate.source, domain_hint)) {
            Ok(hostname) => {
                choice.hostname = Some(hostname);
                break;
            }
            Err(why) => {
                choice.rejected.push(format!("{} hostname {:?} rejected: {why}", candidate.source, candidate.name))
            }
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(source: Source, name: &str) -> Candidate {
        Candidate { source, name: name.into() }
    }

    #[test]
    fn rfc1123_names_pass() {
        for ok in ["lab3-12", "Node12", "a", "lab3-12.example.edu", "x.y.", "0abc", &"a".repeat(63)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        assert_eq!(validate("x.y.").unwrap(), "x.y");
    }

    #[test]
    fn hostile_names_fail() {
        let long_total = vec!["a".repeat(60); 5].join(".");
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "a b",
            "a;reboot",
            "$(id)",
            "a\u{0}b",
            "a\nb",
            "-a",
            "a-",
            "a..b",
            "é",
            "a_b",
            &"a".repeat(64),
            &long_total,
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kernel_placeholders_are_unset() {
        for unset in ["", "(none)", "localhost", "10.0.2.15", " 10.0.2.15\n"] {
            assert!(kernel_name_is_unset(unset), "{unset:?}");
        }
        assert!(!kernel_name_is_unset("lab3-12"));
        assert!(!kernel_name_is_unset("10-0-2-15"));
    }

    #[test]
    fn first_valid_candidate_wins_and_rejections_are_reported() {
        let addr = "10.0.2.15/24".parse().ok();
        let c = choose(
            &[cand(Source::Cmdline, "bad/name"), cand(Source::Kernel, "lab3-12.lab.example")],
            "Node",
            addr,
            None,
        );
        let h = c.hostname.unwrap();
        assert_eq!((h.short.as_str(), h.domain.as_deref(), h.source), ("lab3-12", Some("lab.example"), Source::Kernel));
        assert_eq!(h.lab(), "lab3");
        assert_eq!(c.rejected.len(), 1);
        assert!(c.rejected[0].contains("command line hostname \"bad/name\" rejected"), "{:?}", c.rejected);
    }

    #[test]
    fn fallback_uses_prefix_and_last_octet_and_domain_hint() {
        let c = choose(&[], "Node", "192.168.7.42/24".parse().ok(), Some("lab.example"));
        let h = c.hostname.unwrap();
        assert_eq!(h.short, "Node42");
        assert_eq!(h.source, Source::Fallback);
        assert_eq!(h.fqdn(), "Node42.lab.example");
        assert_eq!(h.lab(), "Node42");
        let c = choose(&[], "Node", "192.168.7.42/24".parse().ok(), Some("bad domain"));
        assert_eq!(c.hostname.unwrap().domain, None);
    }

    #[test]
    fn nothing_without_candidates_or_address() {
        assert_eq!(choose(&[cand(Source::Kernel, "a b")], "Node", None, None).hostname, None);
    }
}
