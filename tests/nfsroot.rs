//! The NFS root forms of dracut and the kernel (tests/data/nfsroot/cases.txt: every client case
//! of their test suites and the kernel's rules) planned as the boot plans them: the command line
//! and the DHCP facts through the network phase's host name and the root phase's resolver, then
//! the mount(2) attempts the boot would make.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::net::Ipv4Addr;

use stateless::boot::plan;
use stateless::config::Cmdline;
use stateless::fs::root::ImageRoot;
use stateless::model::facts::Facts;
use stateless::model::lease::{Dhcp, Exchange, Lease};
use stateless::model::options::Options;
use stateless::model::step::Step;

const TABLE: &str = include_str!("data/nfsroot/cases.txt");

/// One block of the table: its `key: value` lines in order (`mount:` repeats).
struct Case(Vec<(String, String)>);

impl Case {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    fn addr(&self, key: &str) -> Option<Ipv4Addr> {
        self.get(key).map(|v| v.parse().unwrap_or_else(|_| panic!("{key}: {v:?} is not an address")))
    }
}

fn cases(table: &str) -> Vec<Case> {
    let blocks = table.split("\n\n").map(|b| b.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>());
    blocks
        .filter(|lines| !lines.is_empty())
        .map(|lines| {
            Case(
                lines
                    .iter()
                    .map(|l| {
                        let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("not `key: value`: {l:?}"));
                        (k.to_string(), v.to_string())
                    })
                    .collect(),
            )
        })
        .collect()
}

/// What the boot plans for the case's command line and DHCP facts: the mount's `server:path`,
/// its attempts as `<fstype> <data>`, and whether it is read-only; or the refusal.
fn planned(case: &Case, target: &ImageRoot) -> Result<(String, Vec<String>, bool), String> {
    let (options, diagnostics) = Options::resolve(&Cmdline::parse(case.get("cmdline").unwrap_or("").as_bytes()), None);
    let client = case.addr("client");
    let lease = Lease {
        server: case.addr("dhcp-server"),
        next_server: case.addr("next-server"),
        address: client.map(|c| format!("{c}/24").parse().unwrap()),
        hostname: case.get("dhcp-hostname").map(Into::into),
        root_path: case.get("root-path").map(Into::into),
        ..Lease::default()
    };
    let dhcp = case.get("dhcp-server").map(|_| Dhcp::given("eth0", Exchange::Discover, lease));
    let facts = Facts {
        initramfs: true,
        interface: Some("eth0".into()),
        address: dhcp.as_ref().and_then(|d| d.lease.address),
        kernel_hostname: Some("(none)".into()),
        dhcp,
        ..Facts::default()
    };
    let plan = plan::dry_run(target, options.clone(), diagnostics, facts, options);
    let root = plan.steps.iter().find_map(|s| match s {
        Step::NfsRoot { root } => Some(root.clone()),
        _ => None,
    });
    let mount = root.ok_or("no nfs root step planned")??;
    let attempts = mount.attempts(client).into_iter().map(|(fstype, data)| format!("{fstype} {data}")).collect();
    Ok((mount.source(), attempts, mount.read_only))
}

/// What is wrong with the case as planned, one line each (none: it passes).
fn check(case: &Case, target: &ImageRoot) -> Vec<String> {
    let mut wrong = Vec::new();
    let got = planned(case, target);
    match (case.get("error"), &got) {
        (Some(why), Err(e)) if e.contains(why) => return wrong,
        (Some(why), _) => return vec![format!("expected the error {why:?}, got {got:?}")],
        (None, Err(e)) => return vec![format!("refused: {e}")],
        (None, Ok(_)) => {}
    }
    let Ok((source, attempts, read_only)) = got else { return wrong };
    if case.get("mounts") != Some(source.as_str()) {
        wrong.push(format!("mounts {source}, the table says {:?}", case.get("mounts")));
    }
    if case.all("mount") != attempts {
        wrong.push(format!("mount(2) attempts {attempts:?}, the table says {:?}", case.all("mount")));
    }
    if case.get("read-only") != Some(if read_only { "yes" } else { "no" }) {
        wrong.push(format!("read-only {read_only}, the table says {:?}", case.get("read-only")));
    }
    // The peer's own expectations, part by part.
    let differs = case.get("differs").is_some();
    let (server, path) = source.split_once(':').unwrap_or_default();
    for part in case.get("peer").unwrap_or("").split(';').map(str::trim) {
        let (key, value) = part.split_once(' ').map_or((part, ""), |(k, v)| (k, v.split(' ').next().unwrap_or("")));
        let holds = match key {
            "server" => value == server,
            "path" => value == path,
            "option" | "read-only" | "read-write" | "fails" if differs => true,
            "option" => match value.strip_prefix('-') {
                Some(absent) => attempts.iter().all(|a| !a.split([' ', ',']).any(|o| o == absent)),
                None => attempts.iter().all(|a| a.split([' ', ',']).any(|o| o == value)),
            },
            "read-only" => read_only,
            "read-write" => !read_only,
            _ => {
                wrong.push(format!(
                    "peer part {part:?} is none of server, path, option, read-only, read-write (fails: with differs)"
                ));
                true
            }
        };
        if !holds {
            wrong.push(format!("the peer's {part:?} does not hold for {source} {attempts:?}"));
        }
    }
    wrong
}

/// Every case that does not plan as the table says, with what is wrong.
fn mismatches(table: &str) -> Vec<String> {
    let dir = common::TempDir::new("nfsroot-forms");
    let target = ImageRoot::open(&dir.0).unwrap();
    cases(table)
        .iter()
        .flat_map(|case| {
            let id = case.get("case").unwrap_or("(no id)").to_string();
            check(case, &target).into_iter().map(move |w| format!("{id}: {w}"))
        })
        .collect()
}

#[test]
fn every_peer_case_mounts_what_the_table_says() {
    let cases = cases(TABLE);
    assert!(cases.len() >= 54, "the table lost cases: {}", cases.len());
    for case in &cases {
        let id = case.get("case").unwrap();
        assert!(case.get("source").is_some() && case.get("peer").is_some(), "{id}: no source or peer");
        assert!(case.get("error").is_some() != case.get("mounts").is_some(), "{id}: error or mounts, one of them");
    }
    let wrong = mismatches(TABLE);
    assert!(wrong.is_empty(), "{} mismatches:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn the_checker_fails_a_wrong_case() {
    let case = "case: wrong/server-path-attempts-peer
source: this test
cmdline: root=nfs:10.0.0.9:/srv/img:vers=3
client: 10.0.0.15
dhcp-server: 10.0.0.1
peer: server 10.0.0.8; option wsize=4096; option -nolock; flavour x; fails (only with differs)
mounts: 10.0.0.9:/srv/other
mount: nfs vers=3,addr=10.0.0.9
read-only: no
";
    let wrong = mismatches(case);
    for what in [
        "mounts 10.0.0.9:/srv/img, the table says Some(\"10.0.0.9:/srv/other\")",
        "mount(2) attempts [\"nfs vers=3,addr=10.0.0.9,nolock\"]",
        "read-only true",
        "the peer's \"server 10.0.0.8\" does not hold",
        "the peer's \"option wsize=4096\" does not hold",
        "the peer's \"option -nolock\" does not hold",
        "peer part \"flavour x\" is none of",
        "peer part \"fails (only with differs)\" is none of",
    ] {
        assert!(wrong.iter().any(|w| w.contains(what)), "{what:?} not in {wrong:#?}");
    }
    let refused = mismatches("case: wrong/refused\nsource: t\npeer: p\ncmdline: root=/dev/sda1\nmounts: 10.0.0.9:/x\n");
    assert!(refused.iter().any(|w| w.contains("refused: root=/dev/sda1 is not an NFS root")), "{refused:?}");
    let expected_error =
        mismatches("case: wrong/error\nsource: t\npeer: p\ncmdline: nfsroot=10.0.0.9:/x\nerror: nope\n");
    assert!(expected_error.iter().any(|w| w.contains("expected the error \"nope\"")), "{expected_error:?}");
}
