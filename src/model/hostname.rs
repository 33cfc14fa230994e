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

/// Longest name `sethostname` and `setdomainname` take (`__NEW_UTS_LEN`).
pub const UTS_LEN: usize = 64;

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
        return Err(format!(
            "character '{}' not allowed",
            super::text::escape(bad.encode_utf8(&mut [0; 4]).as_bytes())
        ));
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
        // The hint lengthens the full name (/etc/hosts): it is kept only when that stays valid.
        None => {
            let domain =
                domain_hint.and_then(|d| validate(d).ok()).filter(|d| validate(&format!("{name}.{d}")).is_ok());
            (name.to_string(), domain)
        }
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
                let shown = super::text::escape(candidate.name.as_bytes());
                choice.rejected.push(format!("{} hostname \"{shown}\" rejected: {why}", candidate.source))
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

    /// Found by the property test `chosen_names_are_single_labels`: a DHCP domain of up to 253
    /// characters passed on its own, and `Node42.<domain>` in /etc/hosts was longer than 253.
    #[test]
    fn a_domain_hint_that_makes_the_name_too_long_is_left_out() {
        let addr = "10.0.0.42/24".parse().ok();
        let long = vec!["a".repeat(62); 4].join(".");
        assert_eq!(long.len(), 251);
        assert_eq!(choose(&[], "Node", addr, Some(&long)).hostname.unwrap().domain, None);
        let fits = &long[..253 - "Node42.".len()];
        let h = choose(&[], "Node", addr, Some(fits)).hostname.unwrap();
        assert_eq!((h.domain.as_deref(), h.fqdn().len()), (Some(fits), 253));
    }

    #[test]
    fn nothing_without_candidates_or_address() {
        assert_eq!(choose(&[cand(Source::Kernel, "a b")], "Node", None, None).hostname, None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One RFC 1123 label: 1 to 63 letters, digits and `-`, not at either end.
        fn label() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
        }

        /// An RFC 1123 name: labels joined by dots, 253 bytes at most.
        fn rfc1123() -> impl Strategy<Value = String> {
            prop::collection::vec(label(), 1..6).prop_map(|l| l.join(".")).prop_filter("253 bytes", |n| n.len() <= 253)
        }

        /// Any text, mostly close to a name, with what a hostile source would slip in: paths,
        /// shell metacharacters, control bytes, blanks, non-ASCII, over-long labels and names.
        fn hostile() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[a-z0-9.-]{0,300}",
                "[a-zA-Z0-9.\\-/;$`&|<>()'\" \\\\*?~!#%=\\x00-\\x1f\\x7fé]{0,80}",
                (rfc1123(), "[^a-zA-Z0-9]", rfc1123()).prop_map(|(a, bad, b)| format!("{a}{bad}{b}")),
                (label(), label(), 0..6usize).prop_map(|(a, b, n)| format!("{a}.{b}").repeat(n)),
            ]
        }

        proptest! {
            /// What passes is RFC 1123 (so holds no `/`, `..`, control byte, blank or shell
            /// metacharacter), is the input less one trailing dot, and passes again unchanged.
            #[test]
            fn accepted_names_are_rfc1123_and_idempotent(name in hostile()) {
                let Ok(valid) = validate(&name) else {
                    prop_assert!(validate(&name).is_err(), "deterministic");
                    return Ok(());
                };
                prop_assert_eq!(valid.as_str(), name.strip_suffix('.').unwrap_or(&name));
                prop_assert!(valid.len() <= 253);
                prop_assert!(valid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
                prop_assert!(!valid.contains('/') && !valid.contains("..") && !valid.starts_with('.'));
                for label in valid.split('.') {
                    prop_assert!((1..=63).contains(&label.len()), "{:?}", label);
                    prop_assert!(!label.starts_with('-') && !label.ends_with('-'), "{:?}", label);
                }
                prop_assert_eq!(validate(&valid), Ok(valid.clone()));
            }

            /// Any bytes, taken as text where they are UTF-8: validated or refused, never a panic,
            /// and nothing outside letters, digits, `-` and `.` gets through.
            #[test]
            fn any_bytes_validate_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                if let Ok(valid) = std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(validate) {
                    prop_assert!(valid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
                }
            }

            /// Every RFC 1123 name passes, with or without one trailing dot.
            #[test]
            fn every_rfc1123_name_passes(name in rfc1123(), dot in any::<bool>()) {
                let given = if dot { format!("{name}.") } else { name.clone() };
                prop_assert_eq!(validate(&given), Ok(name));
            }

            /// The chosen short name is one label (what sethostname and the `hosts/` layer get),
            /// its lab key a non-empty prefix of it, and the full name valid.
            #[test]
            fn chosen_names_are_single_labels(name in hostile(), domain in hostile(), octet in any::<u8>()) {
                let addr = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, octet), 24);
                let hostname = choose(&[cand(Source::Dhcp, &name)], "Node", addr, Some(&domain)).hostname;
                let hostname = hostname.ok_or_else(|| TestCaseError::fail("the fallback always passes"))?;
                prop_assert!(!hostname.short.contains('.') && validate(&hostname.short).is_ok());
                prop_assert!(!hostname.lab().is_empty() && hostname.short.starts_with(hostname.lab()));
                prop_assert_eq!(validate(&hostname.fqdn()), Ok(hostname.fqdn()));
            }
        }
    }
}
