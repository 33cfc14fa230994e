//! The configs of the serving guide (docs/serving.md) are the ones that work. Each is a file in
//! docs/examples/, shown in the docs as a fenced block right after a marker line
//! `<!-- example: docs/examples/FILE -->`; the block must be the file, byte for byte, and every
//! file must be shown. Each file is checked for real: the DHCP servers' by running them in network
//! namespaces and asking them for a lease with `stateless dhcp` (and as iPXE would), the kernel NFS
//! server's exports by `exportfs` itself, the ganesha config against what the lab serves, the
//! layer tree by `stateless check`; the boot entries (pxelinux, iPXE) are booted by the lab
//! (tests/lab.rs, `docs_*`). Needs root for most (tests/run runs them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::net::{ip, Net};
use common::{require, TempDir};
use serde_json::{json, Value};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// The markdown files that may show examples.
fn markdown_files() -> Vec<PathBuf> {
    let docs = Path::new(MANIFEST).join("docs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.extend(["README.md", "initramfs/README.md"].map(|f| Path::new(MANIFEST).join(f)));
    files.sort();
    files
}

/// The files of docs/examples/, by name.
fn example_files() -> Vec<String> {
    let dir = Path::new(MANIFEST).join("docs/examples");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn example(name: &str) -> String {
    common::read(&Path::new(MANIFEST).join("docs/examples").join(name))
}

/// Every example shown: (markdown file, example path, the fenced block's text).
fn shown_examples() -> Vec<(PathBuf, String, String)> {
    let mut shown = Vec::new();
    for md in markdown_files() {
        let text = common::read(&md);
        let mut lines = text.split_inclusive('\n');
        while let Some(line) = lines.next() {
            let Some(marker) = line.trim_end().strip_prefix("<!-- example: ") else { continue };
            let path = marker.strip_suffix(" -->").unwrap_or_else(|| panic!("{}: bad marker {line:?}", md.display()));
            let fence = lines.next().unwrap_or("");
            assert!(
                fence.starts_with("```"),
                "{}: {path}: the marker must come right before a ``` block",
                md.display()
            );
            let mut block = String::new();
            loop {
                let line = lines.next().unwrap_or_else(|| panic!("{}: {path}: the block never ends", md.display()));
                if line.trim_end() == "```" {
                    break;
                }
                block.push_str(line);
            }
            shown.push((md.clone(), path.to_owned(), block));
        }
    }
    shown
}

/// What checks each example (a test of this file, or a lab scenario of tests/lab.rs that boots
/// it): an example without a check fails `examples_are_shown_as_they_are`.
const CHECKED_BY: &[(&str, &str)] = &[
    ("dhcpd.conf", "dhcpd_conf_serves_the_lease"),
    ("dnsmasq.conf", "dnsmasq_conf_serves_the_lease_and_tftp"),
    ("exports", "exports_parse_as_documented"),
    ("ganesha.conf", "ganesha_conf_is_what_the_lab_serves"),
    ("layer-tree-check-nobody.txt", "layer_tree_checks_as_shown"),
    ("layer-tree-check.txt", "layer_tree_checks_as_shown"),
    ("layer-tree.sh", "layer_tree_checks_as_shown"),
    ("pxelinux-initramfs.cfg", "docs_pxelinux_initramfs"),
    ("pxelinux-onroot.cfg", "docs_pxelinux_onroot"),
    ("stateless.ipxe", "docs_ipxe_lease_handed_over_initramfs"),
];

#[test]
fn examples_are_shown_as_they_are() {
    let files = example_files();
    let shown = shown_examples();
    for (md, path, block) in &shown {
        let name = path.strip_prefix("docs/examples/").unwrap_or_else(|| panic!("{}: {path}", md.display()));
        assert!(files.iter().any(|f| f == name), "{}: {path} does not exist", md.display());
        assert_eq!(*block, example(name), "{}: the block shown is not {path}", md.display());
    }
    let lab = common::read(&Path::new(MANIFEST).join("tests/lab.rs"));
    let here = common::read(&Path::new(MANIFEST).join("tests/docs.rs"));
    for name in &files {
        let path = format!("docs/examples/{name}");
        assert!(shown.iter().any(|(_, p, _)| *p == path), "{path} is shown in no doc");
        let (_, test) = CHECKED_BY.iter().find(|(f, _)| f == name).unwrap_or_else(|| panic!("{path}: no check"));
        let found = |text: &str| text.contains(&format!("fn {test}() {{"));
        assert!(found(&here) || (found(&lab) && lab.contains(&format!("\"{name}\""))), "{path}: no test {test}");
    }
}

/// The guide and its examples use documentation addresses (RFC 5737) and the lab's own
/// (10.0.2.0/24, QEMU's user network), never a range of a real network.
#[test]
fn only_documentation_and_lab_addresses() {
    let mut texts: Vec<(String, String)> = ["docs/serving.md", "docs/troubleshooting.md", "initramfs/README.md"]
        .iter()
        .map(|f| (f.to_string(), common::read(&Path::new(MANIFEST).join(f))))
        .collect();
    texts.extend(example_files().into_iter().map(|f| (format!("docs/examples/{f}"), example(&f))));
    for (file, text) in texts {
        let words = text.split(|c: char| !(c.is_ascii_digit() || c == '.'));
        for addr in words.filter_map(|w| w.trim_matches('.').parse::<Ipv4Addr>().ok()) {
            let [a, b, c, _] = addr.octets();
            let ok = matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (10, 0, 2) | (255, 255, _))
                || addr.is_unspecified()
                || addr.is_loopback();
            assert!(ok, "{file}: {addr} is neither a documentation address nor the lab's");
        }
    }
}

/// The client's MAC in the examples (lab3-12), and lab3-13's.
const MAC: &str = "52:54:00:12:34:56";
const MAC_13: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x57];

/// What both DHCP examples give lab3-12: the lease `stateless dhcp` reports.
fn assert_lab3_12_lease(lease: &Value, server: &str) {
    let expected = [
        ("address", json!("192.0.2.15/24")),
        ("hostname", json!("lab3-12")),
        ("domain", json!("lab.example")),
        ("routers", json!(["192.0.2.1"])),
        ("dns", json!(["192.0.2.53"])),
        ("ntp", json!(["192.0.2.123"])),
        ("log_servers", json!(["192.0.2.1"])),
        ("root_path", json!("192.0.2.1:/srv/diskless/image,vers=3,tcp")),
        ("bootfile", json!("pxelinux.0")),
        ("next_server", json!("192.0.2.1")),
    ];
    for (key, value) in expected {
        assert_eq!(lease[key], value, "{server}: {key} in {lease:#}");
    }
    assert!(lease["rejected"].as_array().is_some_and(Vec::is_empty), "{server}: {lease:#}");
}

/// A DISCOVER as iPXE sends it (user class `iPXE`, option 175) from lab3-13's MAC, sent from the
/// client namespace (its `vc0` has an address by then); the server's OFFER: (yiaddr, boot file).
fn ipxe_discover(net: &Net) -> (Ipv4Addr, String) {
    let mut m = vec![0u8; 236];
    (m[0], m[1], m[2]) = (1, 1, 6); // BOOTREQUEST, Ethernet
    m[4..8].copy_from_slice(&[0x1d, 0x0c, 0x5e, 0x01]);
    m[10] = 0x80; // broadcast
    m[28..34].copy_from_slice(&MAC_13);
    m.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1]);
    m.extend_from_slice(&[55, 6, 1, 3, 12, 15, 17, 67]);
    m.extend_from_slice(&[77, 4, b'i', b'P', b'X', b'E']);
    m.extend_from_slice(&[175, 3, 0x13, 1, 1]); // one of iPXE's feature flags
    m.push(255);
    ip(&["-n", &net.client, "route", "replace", "255.255.255.255", "dev", "vc0"]);
    let path = format!("/var/run/netns/{}", net.client);
    let reply = std::thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).unwrap();
        socket.set_broadcast(true).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            socket.send_to(&m, (Ipv4Addr::BROADCAST, 67)).unwrap();
            let Ok(n) = socket.recv(&mut buf) else { continue };
            let r = &buf[..n];
            if n > 240 && r[0] == 2 && r[4..8] == m[4..8] && r[240..].starts_with(&[53, 1, 2]) {
                return Some(r.to_vec());
            }
        }
        None
    });
    let r = reply.join().unwrap().expect("an OFFER to the iPXE DISCOVER within 15 s");
    let yiaddr = Ipv4Addr::new(r[16], r[17], r[18], r[19]);
    let mut file: Vec<u8> = r[108..236].iter().copied().take_while(|b| *b != 0).collect();
    // Option 67 when the server sent one (dnsmasq ends it with a NUL), else the BOOTP file field.
    let mut at = 240;
    while at + 1 < r.len() && r[at] != 255 {
        let len = r[at + 1] as usize;
        if r[at] == 67 {
            file = r[at + 2..at + 2 + len].iter().copied().take_while(|b| *b != 0).collect();
        }
        at += if r[at] == 0 { 1 } else { 2 + len };
    }
    (yiaddr, String::from_utf8(file).unwrap())
}

/// Waits until `log` (a server's output) holds `text`, 10 s at most.
fn wait_for(log: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(log).unwrap_or_default().contains(text) {
        assert!(Instant::now() < deadline, "{} never said {text:?}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: network namespaces, a veth pair, dnsmasq and curl (tests/run runs it)"]
fn dnsmasq_conf_serves_the_lease_and_tftp() {
    let tool = |name: &str| Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success());
    require(tool("dnsmasq"), "dnsmasq (dnsmasq-base)");
    require(tool("curl"), "curl (curl)");
    let conf = Path::new(MANIFEST).join("docs/examples/dnsmasq.conf");
    let test = Command::new("dnsmasq").arg("--test").arg(format!("--conf-file={}", conf.display())).output().unwrap();
    assert!(test.status.success(), "dnsmasq --test: {}", String::from_utf8_lossy(&test.stderr));

    // The example as it is, but for the interface and the TFTP folder of this test.
    let tmp = TempDir::new("docs-dnsmasq");
    let tftp = tmp.0.join("tftp");
    common::write(&tftp.join("pxelinux.cfg/default"), &example("pxelinux-initramfs.cfg"));
    let text = example("dnsmasq.conf");
    assert!(text.contains("\ninterface=eth1\n") && text.contains("\ntftp-root=/srv/tftp\n"));
    let local = text.replace("\ninterface=eth1\n", "\ninterface=vs0\n");
    let local = local.replace("\ntftp-root=/srv/tftp\n", &format!("\ntftp-root={}\n", tftp.display()));
    common::write(&tmp.0.join("dnsmasq.conf"), &local);
    let mut net = Net::new(MAC);
    let log = tmp.0.join("dnsmasq.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &net.server, "dnsmasq", "--keep-in-foreground", "--log-dhcp"])
        .arg(format!("--conf-file={}", tmp.0.join("dnsmasq.conf").display()))
        .arg(format!("--dhcp-leasefile={}", tmp.0.join("leases").display()))
        .arg(format!("--pid-file={}", tmp.0.join("pid").display()))
        .arg(format!("--log-facility={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    net.children.push(child);
    wait_for(&log, "TFTP root is");

    let (out, json) = net.client(&["--timeout", "20"]);
    let logs = common::read(&log);
    assert!(out.status.success(), "{json}\n{logs}");
    assert_lab3_12_lease(&json["lease"], "dnsmasq");
    // TFTP from the folder the example names.
    let fetched = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "curl",
            "-sS",
            "--max-time",
            "10",
            "tftp://192.0.2.1/pxelinux.cfg/default",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fetched.stdout), example("pxelinux-initramfs.cfg"), "{logs}");
    // iPXE gets the iPXE script, and lab3-13 its own address.
    assert_eq!(ipxe_discover(&net), (Ipv4Addr::new(192, 0, 2, 16), "stateless.ipxe".to_string()), "{logs}");
}

#[test]
#[ignore = "needs root: network namespaces, a veth pair and ISC dhcpd (tests/run runs it)"]
fn dhcpd_conf_serves_the_lease() {
    require(Path::new("/usr/sbin/dhcpd").exists(), "dhcpd (isc-dhcp-server)");
    let conf = Path::new(MANIFEST).join("docs/examples/dhcpd.conf");
    let test = Command::new("dhcpd").args(["-t", "-cf"]).arg(&conf).output().unwrap();
    assert!(test.status.success(), "dhcpd -t: {}", String::from_utf8_lossy(&test.stderr));

    // The example as it is, on the server end of the veth (192.0.2.1/24).
    let tmp = TempDir::new("docs-dhcpd");
    let (leases, log) = (tmp.0.join("dhcpd.leases"), tmp.0.join("dhcpd.log"));
    std::fs::write(&leases, "").unwrap();
    let mut net = Net::new(MAC);
    let child = Command::new("ip")
        .args(["netns", "exec", &net.server, "dhcpd", "-4", "-d", "-cf"])
        .arg(&conf)
        .arg("-lf")
        .arg(&leases)
        .arg("-pf")
        .arg(tmp.0.join("dhcpd.pid"))
        .arg("vs0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    net.children.push(child);
    wait_for(&log, "Server starting service.");

    let (out, json) = net.client(&["--timeout", "20"]);
    let logs = common::read(&log);
    assert!(out.status.success(), "{json}\n{logs}");
    assert_lab3_12_lease(&json["lease"], "dhcpd");
    assert_eq!(ipxe_discover(&net), (Ipv4Addr::new(192, 0, 2, 16), "stateless.ipxe".to_string()), "{logs}");
}

/// The kernel NFS server's exports, read by `exportfs` itself (the host kernel has no nfsd:
/// what it parses is checked, not a mount): in a private mount namespace, the example as
/// /etc/exports (an overlay on /etc), /srv/diskless/image on a tmpfs, /var/lib/nfs on another.
#[test]
#[ignore = "needs root: a private mount namespace and exportfs (tests/run runs it)"]
fn exports_parse_as_documented() {
    require(Path::new("/usr/sbin/exportfs").exists(), "exportfs (nfs-kernel-server)");
    common::require_root();
    let tmp = TempDir::new("docs-exports");
    let script = r#"set -e
        mount -t tmpfs tmpfs "$1"; mkdir "$1/upper" "$1/work"
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
        cp "$2" /etc/exports; rm -rf /etc/exports.d
        mount -t tmpfs tmpfs /var/lib/nfs; mount -t tmpfs tmpfs /srv; mkdir -p /srv/diskless/image
        exportfs -ra
        exportfs -v"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&tmp.0)
        .arg(Path::new(MANIFEST).join("docs/examples/exports"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stderr.is_empty(), "exportfs: no warning, no error: {stderr}{stdout}");
    // `exportfs -v`: the path, then each client with every option in effect.
    let exports: BTreeMap<&str, Vec<&str>> = stdout
        .split_whitespace()
        .filter_map(|w| w.strip_suffix(')')?.split_once('('))
        .map(|(client, options)| (client, options.split(',').collect()))
        .collect();
    assert!(stdout.starts_with("/srv/diskless/image\n"), "{stdout}");
    assert_eq!(exports.keys().copied().collect::<Vec<_>>(), ["192.0.2.0/24", "198.51.100.0/24"], "{stdout}");
    for (client, options) in exports {
        for option in ["ro", "no_root_squash", "no_subtree_check", "sec=sys"] {
            assert!(options.contains(&option), "{client}: {option} in {stdout}");
        }
    }
}

/// The ganesha config shown is what qemu/lib/servers.sh renders from qemu/files/*.in for an
/// export of /srv/diskless/image (the lab's own exports differ only in path), without the
/// template's lab header, its run folder as /var/lib/nfs.
#[test]
fn ganesha_conf_is_what_the_lab_serves() {
    let tmp = TempDir::new("docs-ganesha");
    let run_dir = tmp.0.to_str().unwrap();
    let status = Command::new("bash")
        .current_dir(MANIFEST)
        .args(["-c", "LAB_FILES=qemu/files; source qemu/lib/servers.sh; ganesha_config \"$1\" \"$2\"", "bash"])
        .args([run_dir, "/srv/diskless/image:/srv/diskless/image"])
        .status()
        .unwrap();
    assert!(status.success());
    let rendered = common::read(&tmp.0.join("ganesha.conf"));
    let shown: String = rendered.split_inclusive('\n').filter(|l| !l.starts_with('#')).collect();
    assert_eq!(shown.replace(run_dir, "/var/lib/nfs"), example("ganesha.conf"));
}

/// The layer tree of the worked example, made by its script in an image with a passwd and a
/// group for root, checked by the command on the first line of each output file, which must be
/// the rest of that file (the image's path shown as /srv/diskless/image), with exit 1 exactly
/// when it reports errors.
#[test]
#[ignore = "needs root: files owned by root, and stateless check as nobody (tests/run runs it)"]
fn layer_tree_checks_as_shown() {
    common::require_root();
    require(Command::new("setpriv").arg("--version").output().is_ok(), "setpriv (util-linux)");
    let tmp = TempDir::new("docs-layers");
    std::fs::set_permissions(&tmp.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root = tmp.0.join("image");
    common::write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    common::write(&root.join("etc/group"), "root:x:0:\n");
    std::fs::create_dir_all(root.join("var")).unwrap();
    let script = Path::new(MANIFEST).join("docs/examples/layer-tree.sh");
    let made = Command::new("sh").arg(&script).arg(&root).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let image = root.to_str().unwrap();
    for name in ["layer-tree-check.txt", "layer-tree-check-nobody.txt"] {
        let text = example(name);
        let (command, expected) = text.split_once('\n').unwrap();
        let words: Vec<&str> = command.strip_prefix("# ").unwrap().split(' ').collect();
        let at = words.iter().position(|w| *w == "stateless").unwrap();
        let args = words[at + 1..].iter().map(|w| w.replace("/srv/diskless/image", image));
        let out = if at == 0 {
            Command::new(common::BIN).args(args).output().unwrap()
        } else {
            Command::new(words[0]).args(&words[1..at]).arg(common::BIN).args(args).output().unwrap()
        };
        let shown = String::from_utf8_lossy(&out.stdout).replace(image, "/srv/diskless/image");
        assert_eq!(shown, expected, "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(i32::from(!expected.contains("\n0 errors,"))), "{name}");
    }
}
