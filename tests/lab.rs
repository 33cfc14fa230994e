//! The QEMU netboot lab scenarios: real diskless clients booted headlessly from an NFS root
//! served in a network namespace (qemu/lab), with `stateless` as `init=/boot/stateless`.
//! Each scenario boots, asserts on the results the guest wrote to its result disk, and prints
//! one line. They need root, and take minutes (the first run builds the kernel and images), so
//! they are `#[ignore]`d unless asked for: tests/run runs them with `--include-ignored`. One
//! scenario: `cargo test --test lab -- --include-ignored --nocapture scenario::fallback_hostname`.
//! The binary booted is $STATELESS_BIN (tests/run passes the release build), else the test build.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use serde_json::Value;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// Why the scenarios are `#[ignore]`d outside tests/run.
const LAB: &str = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)";

/// `qemu/lab build`, once per test process (cached between runs).
fn build_lab() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let status = Command::new(Path::new(MANIFEST).join("qemu/lab")).arg("build").status().unwrap();
        assert!(status.success(), "qemu/lab build failed");
    });
}

/// What one boot left behind.
struct Boot {
    out: PathBuf,
    summary: HashMap<String, String>,
    facts: HashMap<String, String>,
    report: Value,
    provenance: String,
    dmesg: String,
    serial: String,
}

impl Boot {
    fn fact(&self, key: &str) -> &str {
        self.facts.get(key).map_or("", String::as_str)
    }

    /// Whether the provenance has `line` (`/<path><TAB><source>`), with or without a stamp.
    fn provenance_has(&self, line: &str) -> bool {
        self.provenance.lines().any(|l| l == line || l.strip_prefix(line).is_some_and(|stamp| stamp.starts_with('\t')))
    }

    /// A one-line context for assertion messages.
    fn logs(&self) -> String {
        format!("(serial log {}, results {})", self.out.join("serial.log").display(), self.out.join("result").display())
    }

    /// The layers the report says were applied, in order.
    fn layers(&self) -> Vec<&str> {
        self.report["layers"].as_array().map_or(vec![], |l| l.iter().filter_map(|l| l["layer"].as_str()).collect())
    }

    /// Whether the report says `stateless` loaded `module`.
    fn loaded(&self, module: &str) -> bool {
        let modules = self.report["modules"].as_array();
        modules.is_some_and(|ms| ms.iter().any(|m| m["module"] == module && m["result"] == "loaded"))
    }

    /// The report's steps of one kind (`layer`, `dhcp`, `writable-dir`, ...).
    fn steps(&self, kind: &str) -> Vec<&Value> {
        let steps = self.report["steps"].as_array();
        steps.map_or(vec![], |s| s.iter().filter(|s| s["step"]["step"] == kind).collect())
    }

    /// The report's step of the layer `name`.
    fn layer_step(&self, name: &str) -> &Value {
        let step = self.steps("layer").into_iter().find(|s| s["step"]["name"] == name);
        step.unwrap_or_else(|| panic!("no layer step {name} {}", self.logs()))
    }

    /// One line of the guest's lab-files.txt (`find -printf '%p %y %n %s %b %l'` of the lab's
    /// dirs), without the path: type, links, size, blocks, symlink target.
    fn lab_file(&self, path: &str) -> Option<String> {
        let listing = std::fs::read_to_string(self.out.join("result/lab-files.txt")).unwrap_or_default();
        let found = listing.lines().find_map(|l| l.strip_prefix(path)?.strip_prefix(' ').map(str::to_string));
        found
    }

    /// A file the lab's servers wrote (servers/NAME).
    fn server_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join("servers").join(name)).unwrap_or_default()
    }

    fn dir_mode(&self, dir: &str) -> &str {
        let dirs = self.report["dirs"].as_array();
        dirs.and_then(|d| d.iter().find(|d| d["dir"] == dir)).and_then(|d| d["mode"].as_str()).unwrap_or("none")
    }

    /// Milliseconds from the kernel's "Run /boot/stateless as init process" to the shim's
    /// "handing over to", by the kernel log's own clock: the whole stage, the binary's loading
    /// over NFS before `main` included (the report's `elapsed_ms` starts at `main`).
    fn kernel_ms(&self) -> Option<u64> {
        let stamp = |needle: &str| {
            let line = self.dmesg.lines().find(|l| l.contains(needle))?;
            let secs: f64 = line.strip_prefix('[')?.split(']').next()?.trim().parse().ok()?;
            Some(secs)
        };
        let ms = (stamp("stateless: handing over to")? - stamp("as init process")?) * 1000.0;
        Some(ms.round() as u64)
    }

    /// The NFS operations the client made on the mount at `mount` until the check
    /// (mountstats.txt, from its mount on): all, READs, and the bytes the server sent.
    fn nfs_ops(&self, mount: &str) -> (u64, u64, u64) {
        let stats = std::fs::read_to_string(self.out.join("result/mountstats.txt")).unwrap_or_default();
        let device = format!(" mounted on {mount} with fstype nfs");
        let Some((_, after)) = stats.split_once(&device) else { return (0, 0, 0) };
        let section = after.split("\ndevice ").next().unwrap_or("");
        let (mut ops, mut reads, mut bytes) = (0, 0, 0);
        let mut per_op = false;
        for line in section.lines().map(str::trim) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["bytes:", _, _, _, _, server, ..] => bytes = server.parse().unwrap_or(0),
                ["per-op", ..] => per_op = true,
                [op, count, ..] if per_op && op.ends_with(':') => {
                    let count: u64 = count.parse().unwrap_or(0);
                    ops += count;
                    reads += if *op == "READ:" { count } else { 0 };
                }
                _ => {}
            }
        }
        (ops, reads, bytes)
    }

    /// Prints the scenario's one-line result.
    fn print(&self, scenario: &str, what: &str) {
        let rpcs: u64 =
            self.report["nfs_rpcs"].as_object().map_or(0, |ops| ops.values().filter_map(Value::as_u64).sum());
        println!(
            "scenario {scenario}: ok in {} s, shim {} ms from main to init (own {} ms; {} ms from the kernel's exec), {rpcs} NFS RPCs; {what}",
            self.summary.get("seconds").map_or("?", String::as_str),
            self.report["elapsed_ms"],
            self.report["own_ms"],
            self.kernel_ms().map_or("?".to_string(), |ms| ms.to_string()),
        );
    }
}

/// The console log without carriage returns and terminal escape sequences (pxelinux moves the
/// cursor in the middle of its own banner).
fn console(out: &Path) -> String {
    let raw = String::from_utf8_lossy(&std::fs::read(out.join("serial.log")).unwrap_or_default()).replace('\r', "");
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters, then one final letter.
            while chars.next().is_some_and(|p| p.is_ascii_digit() || p == ';' || p == '?') {}
            continue;
        }
        text.push(c);
    }
    text
}

fn key_values(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The binary booted: $STATELESS_BIN, else the test build.
fn default_bin() -> String {
    std::env::var("STATELESS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_stateless").to_string())
}

/// The build with the `panic-test` feature, $STATELESS_PANIC_BIN (tests/run builds it); a
/// missing one fails the scenario.
fn panic_bin() -> String {
    let bin = std::env::var("STATELESS_PANIC_BIN").unwrap_or_default();
    assert!(!bin.is_empty(), "missing prerequisite: STATELESS_PANIC_BIN, a build with --features panic-test");
    bin
}

/// `qemu/lab boot --image IMAGE --shim BIN ARGS...` with its results in target/lab/SCENARIO;
/// whether it succeeded, and that folder. Needs root.
fn lab_boot_with(bin: String, scenario: &str, image: &str, args: &[&str]) -> (std::process::ExitStatus, PathBuf) {
    assert!(rustix::process::geteuid().is_root(), "missing prerequisite: root ({LAB})");
    build_lab();
    let out = Path::new(MANIFEST).join("target/lab").join(scenario);
    let status = Command::new(Path::new(MANIFEST).join("qemu/lab"))
        .args(["boot", "--image", image, "--shim", &bin, "--out"])
        .arg(&out)
        .args(args)
        .status()
        .unwrap();
    (status, out)
}

/// Boots one client: `qemu/lab boot --image IMAGE ARGS...`; results in target/lab/SCENARIO.
/// Needs root: a missing prerequisite fails the scenario.
fn boot(scenario: &str, image: &str, args: &[&str]) -> Boot {
    let boot = boot_with(default_bin(), scenario, image, args);
    assert!(boot.report.is_object(), "no report.json {}", boot.logs());
    boot
}

/// The Debian package (debian/build), $STATELESS_DEB (tests/run builds it); a missing one
/// fails the scenario.
fn package_deb() -> String {
    let deb = std::env::var("STATELESS_DEB").unwrap_or_default();
    assert!(Path::new(&deb).is_file(), "missing prerequisite: STATELESS_DEB, the package debian/build makes");
    deb
}

/// The package's version, from its file name (`stateless_<version>_amd64.deb`).
fn package_version(deb: &str) -> String {
    let name = Path::new(deb).file_name().unwrap().to_str().unwrap();
    name.split('_').nth(1).unwrap().to_owned()
}

/// `boot` of the `panic-test` build on the systemd image.
fn panic_boot(scenario: &str, args: &[&str]) -> Boot {
    boot_with(panic_bin(), scenario, "systemd", args)
}

fn boot_with(bin: String, scenario: &str, image: &str, args: &[&str]) -> Boot {
    let (status, out) = lab_boot_with(bin, scenario, image, args);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap_or_default();
    let serial = console(&out);
    assert!(
        status.success(),
        "scenario {scenario}: the boot delivered no results; serial log {}",
        out.join("serial.log").display()
    );
    let boot = Boot {
        summary: key_values(&read("summary.txt")),
        facts: key_values(&read("result/facts.txt")),
        report: serde_json::from_str(&read("result/run/stateless/report.json")).unwrap_or(Value::Null),
        provenance: read("result/run/stateless/provenance"),
        dmesg: read("result/dmesg.txt"),
        serial,
        out,
    };
    let logs = boot.logs();
    assert!(!boot.serial.contains("Kernel panic"), "kernel panic {logs}");
    nothing_lost(scenario, &boot.summary, &logs);
    assert_eq!(boot.fact("root_writable"), "no", "{logs}");
    boot
}

/// Boots one client that is to end without results (a failure the policy handles): `qemu/lab
/// boot ... --until UNTIL`; returns the serial log. The console must show UNTIL, with no panic.
fn boot_until(scenario: &str, image: &str, args: &[&str], until: &str) -> String {
    boot_until_with(default_bin(), scenario, image, args, until)
}

/// `boot_until` with the binary `bin`.
fn boot_until_with(bin: String, scenario: &str, image: &str, args: &[&str], until: &str) -> String {
    let args: Vec<&str> = args.iter().copied().chain(["--until", until]).collect();
    let (status, out) = lab_boot_with(bin, scenario, image, &args);
    let serial = console(&out);
    assert!(
        status.success(),
        "scenario {scenario}: the console never showed /{until}/: {}",
        out.join("serial.log").display()
    );
    assert!(!serial.contains("Kernel panic"), "kernel panic: {}", out.join("serial.log").display());
    let summary = key_values(&std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default());
    nothing_lost(scenario, &summary, &out.join("serial.log").display().to_string());
    serial
}

/// What every scenario must leave as it found it: the exported image (every entry's metadata
/// and every file's content, before and after the boot), and the host (no process, mount or
/// network namespace of the run left behind).
fn nothing_lost(scenario: &str, summary: &HashMap<String, String>, logs: &str) {
    let value = |key: &str| summary.get(key).map_or("(missing)", String::as_str);
    assert_eq!(value("export_unchanged"), "yes", "scenario {scenario}: the NFS export changed {logs}");
    assert_eq!(value("leftovers"), "none", "scenario {scenario}: left behind on the host {logs}");
}

/// Boots a client of the fault matrix: as `boot` on the systemd image, but handing over to
/// /lab/check-init (it collects the results and powers off) instead of systemd: seconds, not
/// a whole systemd boot.
fn fast(scenario: &str, args: &[&str]) -> Boot {
    fast_on(scenario, "systemd", args)
}

/// `fast` on the image `image`.
fn fast_on(scenario: &str, image: &str, args: &[&str]) -> Boot {
    let args: Vec<&str> = args.iter().copied().chain(["--check-init"]).collect();
    let boot = boot(scenario, image, &args);
    assert_eq!(boot.fact("pid1"), "check-init", "{}", boot.logs());
    boot
}

/// Seconds between the kernel log lines holding `from` and `to`, by the kernel's clock.
fn kernel_seconds(log: &str, from: &str, to: &str) -> Option<f64> {
    let stamp = |needle: &str| {
        let line = log.lines().find(|l| l.contains(needle))?;
        line.trim_start().strip_prefix('[')?.split(']').next()?.trim().parse::<f64>().ok()
    };
    Some(stamp(to)? - stamp(from)?)
}

const ALL_LAYERS: [&str; 6] =
    ["base", "networks/10.0.2.255", "networks/10.0.2.0_24", "labs/lab3", "hosts/lab3-12", "hosts/10.0.2.15"];

/// What `stateless status` showed inside the client (check.sh runs it): the host name line,
/// the mode, one bar per step in the timeline, and the JSON agreeing with the report; and
/// `stateless relayer --dry-run` finding nothing to do on a client just booted.
fn assert_status(b: &Boot, hostname: &str, mode: &str) {
    let logs = b.logs();
    let read = |f: &str| std::fs::read_to_string(b.out.join("result").join(f)).unwrap_or_default();
    let text = read("status.txt");
    assert!(text.contains(&format!("host name: {hostname}")), "{text} {logs}");
    assert!(text.contains(&format!("root: {mode} mode")), "{text} {logs}");
    let json: Value = serde_json::from_str(&read("status.json")).unwrap_or(Value::Null);
    assert_eq!(json["elapsed_ms"], b.report["elapsed_ms"], "{json}");
    let steps = b.report["steps"].as_array().map_or(0, Vec::len);
    assert_eq!(json["steps"].as_array().map_or(0, Vec::len), steps, "{json}");
    assert_eq!(read("timeline.svg").matches("<rect x=").count(), steps, "one bar per step {logs}");
    let relayer = read("relayer.txt");
    assert!(relayer.ends_with("nothing to do: the client has what the layers provide\n"), "{relayer} {logs}");
}

/// The host name of a report, as the messages to the log server carry it: `short.domain`.
fn fqdn(report: &Value) -> String {
    let name = &report["hostname"];
    let short = name["short"].as_str().unwrap_or("");
    name["domain"].as_str().map_or(short.to_owned(), |domain| format!("{short}.{domain}"))
}

/// What the run's syslog receiver got (servers/syslog.log, one datagram a line): the text of
/// each `log` message with its host, and the report joined from its `report` parts.
fn server_log(scenario: &str) -> (Vec<(String, String)>, Value) {
    let path = Path::new(MANIFEST).join("target/lab").join(scenario).join("servers/syslog.log");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (mut lines, mut report) = (Vec::new(), String::new());
    for datagram in text.lines() {
        // <PRI>1 TIMESTAMP HOST stateless 1 MSGID [SD] MSG
        let fields: Vec<&str> = datagram.splitn(7, ' ').collect();
        let (Some(host), Some(msgid), Some(rest)) = (fields.get(2), fields.get(5), fields.get(6)) else { continue };
        let msg = rest.split_once("] ").map_or("", |(_, m)| m);
        match *msgid {
            "log" => lines.push((host.to_string(), msg.to_string())),
            "report" => report.push_str(msg),
            _ => {}
        }
    }
    (lines, serde_json::from_str(&report).unwrap_or(Value::Null))
}

/// What `stateless check` found in the layer tree as exported for the boot (qemu/lib/boot.sh
/// runs it with `--host lab3-12,10.0.2.15/24`): `(severity, at)` of each finding, and the JSON.
fn layer_check(b: &Boot) -> (Vec<(String, String)>, Value) {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(b.out.join("check.json")).unwrap_or_default())
        .unwrap_or(Value::Null);
    let findings = json["findings"].as_array().map_or(vec![], |list| {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        list.iter().map(|f| (text(&f["severity"]), text(&f["at"]))).collect()
    });
    (findings, json)
}

/// A boot entry of docs/examples (docs/serving.md) as the lab serves it, written to
/// target/lab/SCENARIO.entry for `--pxe-config`: the docs' NFS server, export and file names
/// replaced by the lab's, nothing else (the lab adds its console and check words to the kernel line).
fn docs_entry(scenario: &str, example: &str) -> String {
    let text = std::fs::read_to_string(Path::new(MANIFEST).join("docs/examples").join(example)).unwrap();
    let lab = [
        ("/srv/diskless/image", "/systemd"),
        ("vmlinuz-6.1.0-28-amd64", "vmlinuz"),
        ("vmlinuz-diskless", "vmlinuz"),
        ("stateless-6.1.0-28-amd64.img", "initrd.img"),
    ];
    let text = lab.iter().fold(text, |text, (docs, lab)| text.replace(docs, lab));
    // The server's address, not the addresses it is the start of (192.0.2.15).
    let mut parts = text.split("192.0.2.1");
    let mut entry = parts.next().unwrap_or_default().to_owned();
    for part in parts {
        let server = !part.starts_with(|c: char| c.is_ascii_digit());
        entry.push_str(if server { "10.0.2.2" } else { "192.0.2.1" });
        entry.push_str(part);
    }
    let path = Path::new(MANIFEST).join("target/lab").join(format!("{scenario}.entry"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, entry).unwrap();
    path.to_str().unwrap().to_owned()
}

/// On Debian 13 (Linux 6.2+, systemd 257): the boot interface renamed by stateless to the name
/// the image's udev gives it (ens3: the lab's NIC is in PCI slot 3) before the files handing the
/// network on were written, so each carries that name, udev renamed nothing after, and
/// ifupdown, configured for ens3 (`allow-hotplug ens3`, `iface ens3 inet dhcp`), takes it as up:
/// no DHCP client of its own on the root's interface.
fn ens3_kept(b: &Boot) {
    let logs = b.logs();
    let read = |f: &str| std::fs::read_to_string(b.out.join("result").join(f)).unwrap_or_default();
    assert!(b.serial.contains("stateless: eth0 renamed ens3"), "{logs}");
    assert_eq!(b.serial.matches("renamed from eth0 (while UP)").count(), 1, "renamed once, by stateless: {logs}");
    assert_eq!(b.report["interface"], "ens3", "{logs}");
    assert!(read("interfaces.txt").lines().any(|l| l == "ens3"), "{}", read("interfaces.txt"));
    assert_eq!(read("run/network/ifstate.ens3"), "stateless\n", "{logs}");
    assert!(read("run/network/ifstate").lines().any(|l| l == "ens3=stateless"), "{logs}");
    assert!(read("run/net-ens3.conf").contains("DEVICE='ens3'"), "{logs}");
    assert!(b.out.join("result/run/systemd-network/10-stateless-ens3.network").is_file(), "{logs}");
    let processes = read("processes.txt");
    assert!(!processes.lines().any(|l| l.ends_with(" dhcpcd") || l.ends_with(" dhclient")), "{processes}");
}

/// A clean `systemctl poweroff` (`--clean-shutdown`): every unit stopped without a failure; the
/// writable dirs (marked x-initrd.mount) are left to systemd-shutdown, which unmounts them once
/// every process is gone (journald kept /var busy: "Failed unmounting var.mount").
fn clean_shutdown(b: &Boot) {
    let logs = b.logs();
    assert!(b.serial.contains("systemd-shutdown[1]: Powering off."), "{logs}");
    let failed: Vec<&str> =
        b.serial.lines().filter(|l| l.contains("FAILED") || l.contains("Failed unmounting")).collect();
    assert!(failed.is_empty(), "{failed:#?} {logs}");
    assert!(b.serial.contains("(sd-umount)") && b.serial.contains("Unmounting '/var'."), "{logs}");
}

/// The scenarios; `--skip scenario::` leaves them out of a run.
mod scenario {
    use super::*;

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn pxe_systemd() {
        let b = boot("pxe_systemd", "systemd", &["--pxe"]);
        let logs = b.logs();
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!(b.fact("domainname"), "lab.example", "{logs}");
        assert_eq!(b.report["hostname"]["source"], "kernel", "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        for (dir, fs) in [("etc", "overlay"), ("var", "overlay"), ("run", "tmpfs"), ("tmp", "tmpfs")] {
            assert_eq!(b.fact(dir), fs, "/{dir} {logs}");
        }
        assert_eq!((b.fact("etc_writable"), b.fact("var_writable")), ("yes", "yes"), "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("level"), "ip", "the last layer must win {logs}");
        for layer in ["base", "network-broadcast", "network-cidr", "lab", "host", "ip"] {
            assert!(b.fact("layers").contains(&format!("from-{layer}")), "layer {layer} missing {logs}");
        }
        assert!(b.provenance_has("/etc/stateless-lab/level\thosts/10.0.2.15"), "{logs}");
        assert!(b.provenance_has("/etc/stateless-lab/from-base\tbase"), "{logs}");
        assert_eq!(b.fact("etc_hostname"), "lab3-12", "{logs}");
        assert!(b.fact("hosts_line").contains("lab3-12.lab.example lab3-12"), "{logs}");
        assert!(b.serial.contains("PXELINUX"), "not a PXE boot {logs}");
        assert_status(&b, "lab3-12.lab.example (from kernel)", "on-root");
        // The lab's tree passes `stateless check` (its README is no layer: a warning), and
        // what check says lab3-12 receives is what it got.
        let (findings, check) = layer_check(&b);
        assert_eq!(findings, [("warning".to_owned(), "README".to_owned())], "{check:#}");
        let host = check["hosts"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["name"] == "lab3-12"))
            .cloned()
            .unwrap_or_default();
        let layers: Vec<&str> =
            host["layers"].as_array().map_or(vec![], |l| l.iter().filter_map(|l| l[0].as_str()).collect());
        assert_eq!(layers, ALL_LAYERS, "{check:#}");
        let files = host["files"].as_object().cloned().unwrap_or_default();
        assert_eq!(files.len(), 7, "level and the six from-* files: {check:#}");
        for (path, layer) in &files {
            let line = format!("{path}\t{}", layer.as_str().unwrap_or(""));
            assert!(b.provenance_has(&line), "{line} not in the provenance {logs}");
        }
        b.print("pxe_systemd", "PXE, hostname lab3-12 from DHCP, 6 layers, systemd reached multi-user");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn openrc_unionfs() {
        let b = boot("openrc_unionfs", "openrc", &["--append", "softlevel=unionfs"]);
        let logs = b.logs();
        assert_eq!(b.fact("pid1"), "init", "{logs}");
        assert_eq!(b.fact("runlevel"), "unionfs", "OpenRC must boot the softlevel {logs}");
        assert!(b.serial.contains("OpenRC"), "{logs}");
        assert_eq!(b.fact("conf_d_hostname"), "hostname=\"lab3-12\"", "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("overlay", "overlay"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print("openrc_unionfs", "OpenRC runlevel unionfs, /etc/conf.d/hostname written");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fallback_hostname() {
        let b = boot("fallback_hostname", "systemd", &["--no-hostname"]);
        let logs = b.logs();
        assert_eq!(b.fact("hostname"), "Node15", "{logs}");
        assert_eq!(b.report["hostname"]["source"], "fallback", "{logs}");
        assert_eq!(
            b.layers(),
            ["base", "networks/10.0.2.255", "networks/10.0.2.0_24", "labs/Node15", "hosts/Node15", "hosts/10.0.2.15"],
            "{logs}"
        );
        assert!(b.fact("layers").contains("from-node-lab") && b.fact("layers").contains("from-node-host"), "{logs}");
        assert!(!b.fact("layers").contains("from-host "), "lab3-12's layer applied {logs}");
        b.print("fallback_hostname", "no DHCP hostname: Node15, labs/Node15 and hosts/Node15 applied");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn dirs_forced_hostname_unknown_key() {
        let append = "stateless.dirs=etc stateless.hostname=forced-7 stateless.frobnicate=1";
        let b = boot("dirs_forced_hostname_unknown_key", "systemd", &["--append", append]);
        let logs = b.logs();
        assert_eq!(b.fact("hostname"), "forced-7", "{logs}");
        assert_eq!(b.report["hostname"]["source"], "cmdline", "{logs}");
        assert_eq!(b.fact("etc"), "overlay", "{logs}");
        assert_eq!(b.fact("var"), "", "/var must stay the NFS dir {logs}");
        assert_eq!(b.fact("var_writable"), "no", "{logs}");
        assert!(b.fact("layers").contains("from-forced-host"), "{logs}");
        assert!(
            b.dmesg.contains("stateless: kernel command line: stateless.frobnicate"),
            "unknown key not logged {logs}"
        );
        assert!(b.report["diagnostics"].to_string().contains("stateless.frobnicate"), "{logs}");
        b.print("dirs_forced_hostname_unknown_key", "only /etc writable, hostname forced-7, unknown key reported");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn missing_init() {
        let b = boot("missing_init", "systemd", &["--append", "stateless.init=/nonexistent"]);
        let logs = b.logs();
        let refused =
            "stateless: stateless.init=/nonexistent is not an executable file in the image; /sbin/init goes first";
        assert!(b.dmesg.contains(refused), "{logs}");
        assert!(b.dmesg.contains("stateless: handing over to /sbin/init"), "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        b.print("missing_init", "/nonexistent not in the image, /sbin/init (systemd) planned instead");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn no_overlayfs() {
        let b = boot("no_overlayfs", "systemd", &["--append", "module_blacklist=overlay"]);
        let logs = b.logs();
        assert_eq!((b.dir_mode("etc"), b.dir_mode("var")), ("copy", "copy"), "{logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("tmpfs", "tmpfs"), "{logs}");
        assert!(b.dmesg.contains("stateless: module overlay (for overlayfs on /etc, /var): failed"), "{logs}");
        assert!(b.dmesg.contains("stateless: writable /etc: tmpfs + copy: tmpfs + copy of"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        b.print("no_overlayfs", "overlay module withheld: its load fails, /etc and /var planned in copy mode");
    }

    /// The kernel configures eth0 from a static `ip=` line that carries no name; `stateless`
    /// asks dnsmasq for it (INFORM) and keeps the address.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn inform_hostname_from_dnsmasq() {
        let ip = "198.51.100.15:198.51.100.1:198.51.100.1:255.255.255.0::eth0:off";
        let b = boot("inform_hostname_from_dnsmasq", "systemd", &["--net", "tap", "--ip", ip]);
        let logs = b.logs();
        assert_eq!(b.report["hostname"]["source"], "dhcp", "{logs}");
        assert_eq!(b.report["hostname"]["short"], "lab3-12", "{logs}");
        let dhcp = &b.report["dhcp"];
        assert_eq!(dhcp["exchange"], "inform", "{logs}");
        assert_eq!(dhcp["lease"]["address"], "198.51.100.15/24", "the address the kernel set: {logs}");
        assert_eq!(dhcp["sent"], 1, "{logs}");
        assert!(b.layers().contains(&"hosts/lab3-12"), "{:?} {logs}", b.layers());
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        let klibc = std::fs::read_to_string(b.out.join("result/run/net-eth0.conf")).unwrap_or_default();
        assert!(klibc.contains("HOSTNAME='lab3-12'") && klibc.contains("IPV4ADDR='198.51.100.15'"), "{klibc} {logs}");
        b.print("inform_hostname_from_dnsmasq", "static ip= without a name: INFORM to dnsmasq named it lab3-12");
    }

    /// systemd-networkd runs, with the generator's catch-all for the kernel's `ip=dhcp` and the
    /// host layer of `takeover-1`, whose file gives every Ethernet link another address with
    /// `KeepConfiguration=no` (a shim without the network files hangs here: the NFS root's
    /// address is dropped). The file `stateless` wrote is chosen first and keeps eth0 as the
    /// kernel set it, through the boot and a clean shutdown. `net.ifnames=0`, as diskless
    /// clients use: udev cannot rename an interface that is up, and networkd would wait for it.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn networkd_keeps_the_root_interface() {
        let append =
            "net.ifnames=0 systemd.wants=systemd-networkd.service systemd.wants=systemd-network-generator.service";
        let args = ["--net", "tap", "--hostname", "takeover-1", "--clean-shutdown", "--append", append];
        let b = boot("networkd_keeps_the_root_interface", "systemd", &args);
        let logs = b.logs();
        clean_shutdown(&b);
        assert!(b.layers().contains(&"hosts/takeover-1"), "the takeover file is in /etc: {:?} {logs}", b.layers());
        assert_eq!(b.fact("networkd"), "active", "{logs}");
        let read = |f: &str| std::fs::read_to_string(b.out.join("result").join(f)).unwrap_or_default();
        let eth0 = read("networkd-links.txt")
            .split("# /run/systemd/netif/links/")
            .find(|l| l.starts_with("2\n"))
            .map(str::to_string);
        assert!(eth0.as_deref().is_some_and(|l| l.contains("ADMIN_STATE=configured")), "{eth0:?} {logs}");
        let ours = read("run/systemd-network/10-stateless-eth0.network");
        assert!(ours.contains("KeepConfiguration=yes"), "{logs}");
        let addresses = read("fib_trie.txt");
        assert!(addresses.contains("198.51.100.15") && !addresses.contains("198.51.100.99"), "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert!(b.serial.contains("systemd-shutdown[1]: All filesystems unmounted."), "clean shutdown {logs}");
        assert!(b.serial.contains("reboot: Power down"), "{logs}");
        assert!(!b.serial.contains("not responding"), "the NFS server was lost: {logs}");
        b.print(
            "networkd_keeps_the_root_interface",
            "networkd with a takeover file kept eth0 as the kernel set it; clean poweroff",
        );
    }

    /// Initramfs mode on Debian's own kernel: PXE → pxelinux → vmlinuz + the initramfs
    /// `stateless initramfs` built → coldplug loads virtio-net → own DHCP (the host name) →
    /// NFSv3 root with the sizes client and server settle on → switch_root → systemd.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_nfsv3_systemd() {
        let b = boot("initramfs_nfsv3_systemd", "systemd", &["--stock", "--pxe"]);
        let logs = b.logs();
        assert!(b.serial.contains("PXELINUX") && b.serial.contains("Run /init as init process"), "{logs}");
        assert!(b.dmesg.contains("stateless: initramfs mode"), "{logs}");
        assert!(b.fact("kernel").ends_with("-amd64"), "the stock kernel: {} {logs}", b.fact("kernel"));
        assert_eq!(b.report["hostname"]["source"], "dhcp", "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        let root = b.fact("root");
        assert!(root.starts_with("10.0.2.2:/systemd nfs ro,") && root.contains("vers=3"), "{root} {logs}");
        assert!(root.contains("rsize=1048576"), "sizes negotiated to the server's largest: {root} {logs}");
        let steps = b.report["steps"].as_array().unwrap();
        let switched = steps.iter().find(|s| s["step"]["step"] == "switch-root").unwrap();
        assert_eq!(switched["status"], "ok", "{switched} {logs}");
        assert!(b.loaded("virtio_net") && b.loaded("nfsv3") && b.loaded("overlay"), "{}", b.report["modules"]);
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert_status(&b, "lab3-12.lab.example (from dhcp)", "initramfs");
        // The time accounted: waits on the NFS root's lookups counted from the switch, and the
        // own time is what is left, per step and in all.
        let (elapsed, any) =
            (b.report["elapsed_ms"].as_u64().unwrap(), b.report["blocked"]["any_ms"].as_u64().unwrap());
        let nfs = b.report["blocked"]["nfs_ms"].as_u64().unwrap();
        assert!(nfs > 0 && nfs < elapsed - any, "nfs_ms {nfs} of {elapsed} - {any} ms: {}", b.report["blocked"]);
        assert_eq!(b.report["own_ms"].as_u64().unwrap(), elapsed - any - nfs, "{}", b.report);
        let dhcp = steps.iter().find(|s| s["step"]["step"] == "dhcp").unwrap();
        assert!(dhcp["own_ms"].as_u64().unwrap() < dhcp["ms"].as_u64().unwrap() / 2, "DHCP mostly waits: {dhcp}");
        b.print(
            "initramfs_nfsv3_systemd",
            "stock kernel, PXE + stateless initramfs, own DHCP, NFSv3 rsize 1 MiB, systemd",
        );
    }

    /// The same with an e1000 NIC, an NFSv4.2 root and OpenRC.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_nfsv4_openrc_e1000() {
        let args = ["--stock", "--nic", "e1000", "--nfs", "4.2"];
        let b = boot("initramfs_nfsv4_openrc_e1000", "openrc", &args);
        let logs = b.logs();
        let root = b.fact("root");
        // Mounted read-only (the step says so); OpenRC's `root` service remounts / read-write
        // when fstab does not say ro, which the read-only export refuses to act on all the same.
        assert!(root.starts_with("10.0.2.2:/openrc nfs4 ") && root.contains("vers=4.2"), "{root} {logs}");
        let steps = b.report["steps"].as_array().unwrap();
        let nfs = steps.iter().find(|s| s["step"]["step"] == "nfs-root").unwrap();
        assert_eq!(nfs["step"]["root"]["Ok"]["read_only"], true, "{nfs}");
        assert!(nfs["detail"].as_str().unwrap().starts_with("mounted as nfs4 vers=4.2,"), "{nfs}");
        assert!(b.loaded("e1000") && b.loaded("nfsv4"), "{}", b.report["modules"]);
        assert!(!b.loaded("virtio_net"), "no virtio NIC here");
        assert_eq!(b.fact("pid1"), "init", "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print("initramfs_nfsv4_openrc_e1000", "stock kernel, e1000, NFSv4.2 root, OpenRC");
    }

    /// No NFS server where the command line points: retries within stateless.nfs.timeout, then
    /// the policy (power off); never a panic, never a hang.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_nfs_server_absent() {
        nfs_server_absent("initramfs_nfs_server_absent", "systemd");
    }

    fn nfs_server_absent(scenario: &str, image: &str) {
        let append = format!(
            "nfsroot=10.0.2.2:/{image},vers=3,tcp,port=2050,mountport=20050,mountproto=tcp \
             stateless.nfs.timeout=15 stateless.emergency=poweroff"
        );
        let serial = boot_until(scenario, image, &["--stock", "--append", &append], "reboot: Power down");
        assert!(serial.contains("gave up after") && serial.contains("stateless.nfs.timeout=15"), "{serial}");
        assert!(serial.contains("mount -t nfs -o vers=3,addr=10.0.2.2"), "each try is logged: {serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
        // DHCP, 15 s of tries, 15 s showing the error, the sync.
        assert!(took < 45.0, "{took} s");
        println!(
            "scenario {scenario}: ok; no NFS server: gave up within the bound, powered off {took:.1} s after /init"
        );
    }

    /// Initramfs mode, the NFS root missing on the server, the log to the lab's syslog receiver
    /// (`stateless.log=10.0.2.2`): the client gives up and powers off, and its log and report
    /// are on the server.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_missing_root_reported_to_the_log_server() {
        let scenario = "initramfs_missing_root_reported_to_the_log_server";
        let append = "nfsroot=10.0.2.2:/missing,vers=3,tcp,port=2049,mountport=20048,mountproto=tcp \
                      stateless.nfs.timeout=10 stateless.emergency=poweroff stateless.log=10.0.2.2";
        let serial = boot_until(scenario, "systemd", &["--stock", "--append", append], "reboot: Power down");
        let (lines, report) = server_log(scenario);
        let shown = format!("{lines:#?}\n{serial}");
        assert!(
            lines.iter().any(|(_, l)| l.starts_with("stateless ") && l.ends_with("starting as PID 1")),
            "the backlog from the start: {shown}"
        );
        assert!(lines.iter().any(|(_, l)| l.contains("/missing") && l.contains("gave up after")), "{shown}");
        assert!(lines.iter().any(|(_, l)| l.starts_with("emergency (")), "{shown}");
        let steps = report["steps"].as_array().unwrap_or_else(|| panic!("no report on the server: {shown}"));
        let fqdn = fqdn(&report);
        // Sent once the lease is there, so the name (chosen from it) is on every line, the
        // backlog's included.
        assert!(lines.iter().all(|(host, _)| *host == fqdn), "{fqdn} on each line: {shown}");
        let root = steps.iter().find(|s| s["step"]["step"] == "nfs-root").unwrap_or_else(|| panic!("{report:#}"));
        assert_eq!(root["status"], "failed", "{root}");
        assert_eq!(report["dhcp"]["lease"]["address"], "10.0.2.15/24", "{report:#}");
        println!(
            "scenario {scenario}: ok; no root: {} log lines and the report ({} steps) on the server, then power-off",
            lines.len(),
            steps.len()
        );
    }

    /// No DHCP server: the bounded wait, then the policy.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_dhcp_absent() {
        dhcp_absent("initramfs_dhcp_absent", "systemd");
    }

    fn dhcp_absent(scenario: &str, image: &str) {
        let args = [
            "--stock",
            "--net",
            "tap",
            "--no-dhcp",
            "--append",
            "stateless.dhcp.timeout=10 stateless.emergency=poweroff",
        ];
        let serial = boot_until(scenario, image, &args, "reboot: Power down");
        assert!(serial.contains("stateless: dhcp on the BOOTIF= interface, else all with carrier:"), "{serial}");
        assert!(serial.contains("emergency ("), "{serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
        assert!(took < 40.0, "{took} s");
        println!("scenario {scenario}: ok; no DHCP server: gave up after 10 s, powered off {took:.1} s after /init");
    }

    // docs/serving.md's boot entries (docs/examples), booted as written but for the lab's
    // addresses and file names (docs_entry).

    /// On-root mode from the docs' pxelinux entry: the lab's kernel runs DHCP and mounts the root
    /// with the entry's options (no ports given: rpcbind tells them), stateless is its init.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn docs_pxelinux_onroot() {
        let entry = docs_entry("docs_pxelinux_onroot", "pxelinux-onroot.cfg");
        let b = fast("docs_pxelinux_onroot", &["--pxe", "--pxe-config", &entry]);
        let logs = b.logs();
        assert!(b.serial.contains("PXELINUX") && b.serial.contains("init=/boot/stateless"), "{logs}");
        let root = b.fact("root");
        assert!(root.starts_with("10.0.2.2:/systemd nfs ro,") && root.contains("rsize=1048576"), "{root} {logs}");
        assert_eq!(b.report["hostname"]["source"], "kernel", "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        let (lines, report) = server_log("docs_pxelinux_onroot");
        assert!(!lines.is_empty() && report["steps"].is_array(), "stateless.log=: the log and report on the server");
        b.print("docs_pxelinux_onroot", "docs/examples/pxelinux-onroot.cfg booted");
    }

    /// Initramfs mode from the docs' pxelinux entry: IPAPPEND 2's BOOTIF=, stateless's own DHCP,
    /// the root from nfsroot=.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn docs_pxelinux_initramfs() {
        let entry = docs_entry("docs_pxelinux_initramfs", "pxelinux-initramfs.cfg");
        let b = fast("docs_pxelinux_initramfs", &["--stock", "--pxe", "--pxe-config", &entry]);
        let logs = b.logs();
        assert!(b.dmesg.contains("stateless: initramfs mode"), "{logs}");
        let cmdline = std::fs::read_to_string(b.out.join("result/cmdline.txt")).unwrap_or_default();
        assert!(cmdline.contains(" BOOTIF=01-52-54-00-12-34-56"), "IPAPPEND 2: {cmdline} {logs}");
        assert_eq!(b.steps("dhcp").len(), 1, "{logs}");
        assert_eq!(b.steps("dhcp")[0]["status"], "ok", "{logs}");
        assert_eq!(b.report["hostname"]["source"], "dhcp", "{logs}");
        let root = b.fact("root");
        assert!(root.starts_with("10.0.2.2:/systemd nfs ro,") && root.contains("vers=3"), "{root} {logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        b.print("docs_pxelinux_initramfs", "docs/examples/pxelinux-initramfs.cfg booted");
    }

    /// Initramfs mode from the docs' iPXE script: iPXE's lease handed over as ip= is configured
    /// as it is (no DHCP exchange), the host name and domain from it, the NFS server from its
    /// server field (the script names none).
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn docs_ipxe_lease_handed_over_initramfs() {
        let scenario = "docs_ipxe_lease_handed_over_initramfs";
        let entry = docs_entry(scenario, "stateless.ipxe");
        let b = fast(scenario, &["--stock", "--pxe", "--pxe-config", &entry]);
        let logs = b.logs();
        assert!(b.serial.contains("boot.ipxe : ") && b.serial.contains("[script]"), "{logs}");
        assert!(b.dmesg.contains("stateless: initramfs mode"), "{logs}");
        assert!(b.steps("dhcp").is_empty() && b.report["dhcp"].is_null(), "no DHCP exchange: {logs}");
        let address = b.steps("address");
        assert_eq!(address.len(), 1, "{logs}");
        assert_eq!(address[0]["status"], "ok", "{}", address[0]);
        assert_eq!(address[0]["detail"], "10.0.2.15/24 on eth0, default route via 10.0.2.2", "{}", address[0]);
        let name = serde_json::json!({"short": "lab3-12", "domain": "lab.example", "source": "ip"});
        assert_eq!(b.report["hostname"], name, "{logs}");
        assert_eq!(b.fact("domainname"), "lab.example", "{logs}");
        let nfs = &b.steps("nfs-root")[0]["step"]["root"]["Ok"];
        assert_eq!((&nfs["server"], &nfs["path"]), (&"10.0.2.2".into(), &"/systemd".into()), "{nfs}");
        assert!(b.fact("root").starts_with("10.0.2.2:/systemd nfs ro,"), "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        let (lines, report) = server_log(scenario);
        assert!(!lines.is_empty() && report["steps"].is_array(), "stateless.log= from iPXE: the log on the server");
        b.print(scenario, "docs/examples/stateless.ipxe booted: ip= from iPXE's lease, no DHCP");
    }

    // The fault matrix (issue 10): each scenario gives the client one fault and asserts the
    // documented outcome, that the kernel did not panic, and (in `boot`/`boot_until`) that the
    // export and the host are as they were. Most hand over to /lab/check-init (`fast`).

    const PHASES: &str = "hardware,network,root,writable-dirs,layers,devices,host-files,report,handoff";
    const TAP_STATIC_IP: &str = "198.51.100.15:198.51.100.1:198.51.100.1:255.255.255.0::eth0:off";

    /// The hostile DHCP server's kinds of set `set`, from its log, and that each reply it sent
    /// was one of them or one of the kinds the client must ignore.
    fn hostile_kinds(b: &Boot) -> Vec<String> {
        let log = b.server_log("hostile-dhcp.log");
        let header = log.lines().next().and_then(|l| l.split_once(": ")).map(|(_, k)| k.to_string());
        let kinds: Vec<String> = header.unwrap_or_default().split(' ').map(str::to_string).collect();
        assert!(log.contains("sent usable:"), "the usable reply was never sent: {log}");
        kinds
    }

    /// What every hostile-DHCP scenario shows: the address of the one usable reply (none of
    /// the others taken), the host name refused and the fallback used, every refusal named.
    fn hostile_dhcp(scenario: &str, set: &str, mode: &[&str], exchange: &str, rejected: &[&str]) -> (Boot, Value) {
        let b = fast(scenario, &[mode, &["--net", "tap", "--hostile-dhcp", set]].concat());
        let dhcp = assert_hostile_lease(&b, exchange, rejected);
        (b, dhcp)
    }

    fn assert_hostile_lease(b: &Boot, exchange: &str, rejected: &[&str]) -> Value {
        let logs = b.logs();
        let dhcp = &b.report["dhcp"];
        assert_eq!(dhcp["exchange"], exchange, "{dhcp} {logs}");
        assert_eq!(dhcp["lease"]["address"], "198.51.100.15/24", "{dhcp} {logs}");
        assert_eq!(dhcp["lease"]["hostname"], Value::Null, "{dhcp}");
        assert_eq!(b.report["hostname"]["source"], "fallback", "{logs}");
        assert_eq!(b.fact("hostname"), "Node15", "{logs}");
        assert!(b.layers().contains(&"hosts/Node15"), "{:?} {logs}", b.layers());
        let refused = dhcp["lease"]["rejected"].to_string();
        for why in rejected {
            assert!(refused.contains(why), "{why:?} not refused: {refused} {logs}");
        }
        let sent = b.server_log("hostile-dhcp.log");
        for kind in hostile_kinds(b) {
            assert!(sent.contains(&kind), "{kind} never sent {logs}");
        }
        assert!(!b.serial.contains("panicked"), "{logs}");
        dhcp.clone()
    }

    /// Initramfs mode, our DHCP client against a hostile server: 13 kinds of reply it must
    /// ignore to each DISCOVER and REQUEST (garbage, truncated, bad cookie, a BOOTREQUEST, no
    /// message type, leases for 0.0.0.0, 255.255.255.255, the subnet's broadcast and network
    /// address, multicast and loopback, an offer without server id, an ACK to a DISCOVER, a NAK
    /// from another server, an ACK for another address), then a lease whose host name is
    /// `../../etc`, domain `a;reboot`, root path with `..`, a router outside the subnet, a DNS
    /// option of a wrong length and no end option.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_hostile_dhcp_paths_and_commands_initramfs() {
        let rejected = [
            "option 12 (host name)",
            "option 15 (domain name)",
            "option 17 (root path)",
            "option 6 (domain name server)",
            "no end option",
        ];
        let (b, dhcp) = hostile_dhcp(
            "fault_hostile_dhcp_paths_and_commands_initramfs",
            "names-1",
            &["--stock"],
            "discover",
            &rejected,
        );
        assert_eq!(dhcp["lease"]["routers"], serde_json::json!(["203.0.113.1"]), "outside the subnet, on-link: {dhcp}");
        assert!(dhcp["ignored"].as_u64().unwrap() >= 30, "{dhcp}");
        assert_eq!(dhcp["naks"], 0, "another server's NAK is not ours: {dhcp}");
        assert_eq!(b.steps("dhcp")[0]["status"], "ok", "the on-link route was taken: {}", b.logs());
        b.print(
            "fault_hostile_dhcp_paths_and_commands_initramfs",
            &format!("{} bad replies ignored, 6 hostile values refused, Node15", dhcp["ignored"]),
        );
    }

    /// The same, the usable lease with host name `$(id)`, a domain with a newline, a boot file
    /// with a NUL, a TFTP server name that is not UTF-8, routers 255.255.255.255 and 0.0.0.0,
    /// an MTU of 40.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_hostile_dhcp_control_bytes_initramfs() {
        let rejected = [
            "option 12 (host name)",
            "option 15 (domain name)",
            "option 67",
            "option 66",
            "option 26",
            "option 3 (router): 255.255.255.255",
            "option 3 (router): 0.0.0.0",
        ];
        let (b, dhcp) =
            hostile_dhcp("fault_hostile_dhcp_control_bytes_initramfs", "names-2", &["--stock"], "discover", &rejected);
        assert_eq!(dhcp["lease"]["routers"], serde_json::json!([]), "{dhcp}");
        assert_eq!(dhcp["lease"]["mtu"], Value::Null, "{dhcp}");
        b.print(
            "fault_hostile_dhcp_control_bytes_initramfs",
            "$(id), newline, NUL, non-UTF-8, bad routers and MTU refused, Node15",
        );
    }

    /// The same, through option overload: a 300-byte host name continued in `file` (with a
    /// byte that is not UTF-8), a domain with a NUL in `sname`, which has no end option.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_hostile_dhcp_option_overload_initramfs() {
        let rejected = ["option 12 (host name)", "option 15 (domain name)", "sname field: no end option"];
        let (b, dhcp) = hostile_dhcp(
            "fault_hostile_dhcp_option_overload_initramfs",
            "names-3",
            &["--stock"],
            "discover",
            &rejected,
        );
        let options = dhcp["lease"]["options"].to_string();
        assert!(options.contains("52"), "option overload seen: {options}");
        b.print(
            "fault_hostile_dhcp_option_overload_initramfs",
            "over-long and non-UTF-8 host name via option overload refused, Node15",
        );
    }

    /// On-root mode: a static `ip=` without a name, and the hostile server answering the
    /// INFORM (every reply that is no ACK for this client first): the address stays, the names
    /// are refused.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_hostile_dhcp_inform_onroot() {
        let rejected = ["option 12 (host name)", "option 15 (domain name)"];
        let mode = ["--ip", TAP_STATIC_IP];
        let (b, dhcp) = hostile_dhcp("fault_hostile_dhcp_inform_onroot", "names-2", &mode, "inform", &rejected);
        assert!(dhcp["ignored"].as_u64().unwrap() >= 5, "{dhcp}");
        b.print(
            "fault_hostile_dhcp_inform_onroot",
            "INFORM answered by a hostile server: address kept, names refused, Node15",
        );
    }

    /// On-root mode: a static `ip=` without a name and no DHCP server: the INFORM is given
    /// 10 s, then the fallback name.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_no_dhcp_server_onroot() {
        let b = fast("fault_no_dhcp_server_onroot", &["--net", "tap", "--no-dhcp", "--ip", TAP_STATIC_IP]);
        let logs = b.logs();
        let step = b.steps("dhcp")[0];
        assert_eq!(step["status"], "failed", "{step} {logs}");
        assert!(step["ms"].as_u64().unwrap() <= 11_000, "bounded: {step}");
        assert_eq!(b.report["hostname"]["source"], "fallback", "{logs}");
        assert_eq!(b.fact("hostname"), "Node15", "{logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("overlay", "overlay"), "{logs}");
        b.print("fault_no_dhcp_server_onroot", "INFORM unanswered: given up after 10 s, Node15, the boot went on");
    }

    /// Local disks on the stock kernel (`qemu/lab --disks`): `stateless.swap=lab-swap` turns on
    /// the swap area labelled so and not the unlabelled one; `stateless.scratch=lab-scratch` puts
    /// the overlays' upper dirs and /tmp on the ext4 filesystem labelled so, after emptying its
    /// `stateless/` of a last boot's files (the admin's file beside it stays). The unlabelled
    /// swap and a disk of random bytes come back byte for byte.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn local_disks_swap_and_scratch_initramfs() {
        local_disks("local_disks_swap_and_scratch_initramfs", "systemd");
    }

    fn local_disks(scenario: &str, image: &str) {
        let append = "stateless.swap=lab-swap stateless.scratch=lab-scratch";
        let b = fast_on(scenario, image, &["--stock", "--disks", "--append", append]);
        let logs = b.logs();
        assert_eq!(b.summary.get("disks_untouched").map(String::as_str), Some("yes"), "{logs}");
        let read = |f: &str| std::fs::read_to_string(b.out.join("result").join(f)).unwrap_or_default();
        // Disks in QEMU's order: vda the result disk, then swap, other-swap, scratch, random.
        let swaps: Vec<String> =
            read("swaps.txt").lines().skip(1).map(|l| l.split_whitespace().next().unwrap_or("").to_owned()).collect();
        assert_eq!(swaps, ["/dev/vdb"], "only the labelled swap area {logs}");
        let mounts = read("mounts.txt");
        // The last mount on a path is the one seen there.
        let on =
            |target: &str| mounts.lines().rev().find(|l| l.split(' ').nth(1) == Some(target)).unwrap_or("").to_owned();
        assert!(
            on("/run/stateless/scratch").starts_with("/dev/vdd /run/stateless/scratch ext4 rw,nosuid,nodev"),
            "{mounts}"
        );
        assert!(on("/tmp").starts_with("/dev/vdd /tmp ext4 "), "{mounts}");
        for dir in ["etc", "var"] {
            let overlay = on(&format!("/{dir}"));
            assert!(
                overlay.contains(&format!("upperdir=/run/stateless/scratch/stateless/boot/dirs/{dir}/upper")),
                "{overlay} {mounts}"
            );
        }
        let step = |kind: &str| b.steps(kind).first().map(|s| s.to_string()).unwrap_or_default();
        assert!(
            step("scratch").contains("\"status\":\"ok\"") && step("scratch").contains("vdd (label lab-scratch) (ext4)"),
            "{}",
            step("scratch")
        );
        assert!(step("swap").contains("on vdb (label lab-swap)"), "{}", step("swap"));
        // The last boot's boot/dirs/etc/upper/stateless-lab/stale, renamed away and removed: 6 entries.
        assert!(step("scratch").contains("; 6 entries of earlier boots removed; /tmp on it"), "{}", step("scratch"));
        assert_eq!(b.lab_file("/etc/stateless-lab/stale"), None, "the last boot's file is not in /etc {logs}");
        assert_eq!(b.fact("level"), "ip", "the layers went into the upper dirs on the disk: {logs}");
        b.print(
            scenario,
            "swap on the labelled area only; upper dirs and /tmp on the scratch disk; other disks untouched",
        );
    }

    /// Initramfs mode: dnsmasq gives a lease without a host name: the fallback name.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_dhcp_without_hostname_initramfs() {
        let b = fast("fault_dhcp_without_hostname_initramfs", &["--stock", "--net", "tap", "--no-hostname"]);
        let logs = b.logs();
        assert_eq!(b.report["dhcp"]["lease"]["hostname"], Value::Null, "{logs}");
        assert_eq!(b.report["hostname"]["source"], "fallback", "{logs}");
        assert_eq!(b.fact("hostname"), "Node15", "{logs}");
        assert!(b.layers().contains(&"hosts/Node15"), "{logs}");
        // dnsmasq names the lab's syslog receiver as the log server (option 7).
        let (lines, report) = server_log("fault_dhcp_without_hostname_initramfs");
        assert_eq!(b.report["dhcp"]["lease"]["log_servers"], serde_json::json!(["198.51.100.1"]), "{logs}");
        let name = fqdn(&b.report);
        assert!(name.starts_with("Node15."), "{name}");
        assert!(lines.iter().all(|(host, _)| *host == name), "the name known when sent: {lines:#?}");
        assert!(lines.iter().any(|(_, l)| l.starts_with("layer base")), "{lines:#?}");
        assert_eq!(report["hostname"], b.report["hostname"], "the report on the server: {report:#}");
        b.print(
            "fault_dhcp_without_hostname_initramfs",
            "a lease without a host name: Node15; its log server got the log",
        );
    }

    /// The layer tree holds symlinks to /etc/shadow and out of the tree, hard links, a FIFO, a
    /// device node, a 10 GB sparse file, a file outside the writable dirs, and a lab layer that
    /// is a symlink out of the layer root.
    fn assert_hostile_layers(b: &Boot) {
        let logs = b.logs();
        let file = |p: &str| b.lab_file(p).unwrap_or_else(|| panic!("{p} missing {logs}"));
        assert_eq!(file("/etc/stateless-lab/shadow-link"), "l 1 11 0 /etc/shadow", "copied as a link: {logs}");
        assert_eq!(file("/etc/stateless-lab/up-link"), "l 1 20 0 ../../../../../../..", "{logs}");
        assert!(file("/etc/stateless-lab/hard-a").starts_with("f 1 5 "), "copied as a file of its own: {logs}");
        assert!(file("/etc/stateless-lab/hard-b").starts_with("f 1 5 "), "{logs}");
        assert!(file("/etc/stateless-lab/fifo").starts_with("p "), "{logs}");
        assert!(file("/etc/stateless-lab/null-device").starts_with("c "), "{logs}");
        assert_eq!(b.lab_file("/var/lib/stateless-lab/sparse-10g"), None, "refused unread: {logs}");
        assert_eq!(b.fact("evil"), "absent", "{logs}");
        let host = b.layer_step("hosts/lab3-12");
        assert_eq!(host["status"], "degraded", "{host}");
        let host = host.to_string();
        assert!(host.contains("too-big") && host.contains("sparse-10g"), "{host}");
        let counts = b.report["layers"].as_array().unwrap().iter().find(|l| l["layer"] == "hosts/lab3-12").unwrap();
        assert_eq!((&counts["refused"], &counts["errors"]), (&Value::from(1), &Value::from(1)), "{counts}");
        assert!(b.dmesg.contains("layer hosts/lab3-12: refused /usr: outside the writable dirs"), "{logs}");
        let lab = b.layer_step("labs/lab3").to_string();
        assert!(lab.contains("a symlink points out of the layer root"), "{lab}");
        assert!(!b.layers().contains(&"labs/lab3"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "the other layers applied: {logs}");
        assert!(!b.provenance.contains("/usr/"), "{logs}");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_hostile_layer_tree_onroot() {
        let b = fast("fault_hostile_layer_tree_onroot", &["--fault", "hostile-layers"]);
        assert_hostile_layers(&b);
        // `stateless check` finds it before the boot: the lab layer out of the tree, /usr.
        let (findings, check) = layer_check(&b);
        let error = |at: &str| findings.contains(&("error".to_owned(), at.to_owned()));
        assert!(error("labs/lab3") && error("hosts/lab3-12/usr"), "{check:#}");
        b.print("fault_hostile_layer_tree_onroot", "links copied as links, FIFO and device recreated, 10 GB sparse file and /usr refused, lab layer out of the tree refused");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_hostile_layer_tree_initramfs() {
        let b = fast("fault_hostile_layer_tree_initramfs", &["--stock", "--fault", "hostile-layers"]);
        assert_hostile_layers(&b);
        b.print("fault_hostile_layer_tree_initramfs", "the same after switch_root");
    }

    /// 24 MiB of layer files for a 16 MiB tmpfs: those that fit are whole, the others are not
    /// there at all, the boot goes on with /var writable.
    fn layers_fill_the_tmpfs(scenario: &str, mode: &[&str]) {
        let args: Vec<&str> = [mode, &["--fault", "full-layers", "--append", "stateless.tmpfs.size=16m"]].concat();
        let b = fast(scenario, &args);
        let logs = b.logs();
        let big: Vec<String> = (1..=6).filter_map(|i| b.lab_file(&format!("/var/lib/stateless-lab/big-{i}"))).collect();
        assert!(!big.is_empty() && big.len() < 6, "{big:?} {logs}");
        assert!(big.iter().all(|f| f.starts_with("f 1 4194304 ")), "only whole files: {big:?} {logs}");
        let host = b.layer_step("hosts/lab3-12");
        assert_eq!(host["status"], "degraded", "{host}");
        assert!(host.to_string().contains("no space left on device"), "{host}");
        assert_eq!(b.fact("var_writable"), "yes", "{logs}");
        assert_eq!(b.fact("level"), "ip", "the IP layer after it still applied: {logs}");
        b.print(scenario, &format!("{} of 6 files of 4 MiB fit the 16 MiB tmpfs, whole; the rest absent", big.len()));
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_layers_fill_the_tmpfs_onroot() {
        layers_fill_the_tmpfs("fault_layers_fill_the_tmpfs_onroot", &[]);
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_layers_fill_the_tmpfs_initramfs() {
        layers_fill_the_tmpfs("fault_layers_fill_the_tmpfs_initramfs", &["--stock"]);
    }

    /// The NFS server is killed (SIGKILL) while the base layer's 3,000 files are copied, and
    /// started again 8 s later: the hard-mounted root waits, the copy goes on where it was,
    /// every file arrives.
    fn nfs_server_killed_during_the_layers(scenario: &str, mode: &[&str]) {
        let b = fast(scenario, &[mode, &["--fault", "nfs-outage"]].concat());
        let logs = b.logs();
        assert_eq!(b.summary.get("outage").map(String::as_str), Some("started"), "{logs}");
        let outage = b.server_log("ns-services.log");
        assert!(outage.contains("ganesha killed") && outage.contains("started again"), "{outage}");
        let base = b.layer_step("base");
        assert_eq!(base["status"], "ok", "{base}");
        assert!(base["ms"].as_u64().unwrap() >= 7_000, "the copy waited for the server: {base}");
        let copied = b.provenance.lines().filter(|l| l.starts_with("/etc/stateless-lab/many/")).count();
        assert_eq!(copied, 3000, "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print(scenario, &format!("server down 8 s mid-copy: the layer took {} ms, all 3,000 files", base["ms"]));
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_nfs_server_killed_during_the_layers_onroot() {
        nfs_server_killed_during_the_layers("fault_nfs_server_killed_during_the_layers_onroot", &[]);
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_nfs_server_killed_during_the_layers_initramfs() {
        nfs_server_killed_during_the_layers("fault_nfs_server_killed_during_the_layers_initramfs", &["--stock"]);
    }

    /// The export is a data dir, not a root (no init, no shell): on-root, every init fails to
    /// exec; in initramfs mode the root check finds no init before the switch; the default
    /// policy reboots after 15 s.
    fn assert_not_a_root(serial: &str, from: &str, why: &str) {
        assert!(serial.contains(why), "{serial}");
        assert!(serial.contains("rebooting in 15 s"), "{serial}");
        assert!(!serial.contains("handing over to /bin/sh"), "no shell under the default policy: {serial}");
        let took = kernel_seconds(serial, "rebooting in 15 s", "reboot: Restarting system").unwrap();
        assert!((14.0..25.0).contains(&took), "{took} s");
        assert!(kernel_seconds(serial, from, "rebooting in 15 s").unwrap() < 30.0);
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_export_not_a_root_onroot() {
        let serial = boot_until(
            "fault_export_not_a_root_onroot",
            "systemd",
            &["--fault", "not-a-root", "--timeout", "90"],
            "reboot: Restarting system",
        );
        assert_not_a_root(&serial, "Run /boot/stateless as init process", "no init could be executed");
        println!("scenario fault_export_not_a_root_onroot: ok; no init in the export: no shell, reboot after 15 s");
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_export_not_a_root_initramfs() {
        let args = ["--stock", "--fault", "not-a-root", "--timeout", "120"];
        let serial = boot_until("fault_export_not_a_root_initramfs", "systemd", &args, "reboot: Restarting system");
        let why = "no init in the new root: none of /sbin/init, /etc/init, /bin/init is an executable file";
        assert_not_a_root(&serial, "Run /init as init process", why);
        assert!(!serial.contains("initramfs emptied"), "the check came before the switch: {serial}");
        println!(
            "scenario fault_export_not_a_root_initramfs: ok; no init in the export: found before the switch, reboot after 15 s"
        );
    }

    /// `stateless.init=` names a file that is not executable: refused at planning, the next
    /// candidate runs.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_init_not_executable_onroot() {
        let args =
            ["--fault", "init-not-executable", "--append", "stateless.init=/lab/not-executable", "--timeout", "90"];
        let serial =
            boot_until("fault_init_not_executable_onroot", "systemd", &args, "stateless: handing over to /sbin/init");
        let refused =
            "stateless.init=/lab/not-executable is not an executable file in the image; /sbin/init goes first";
        assert!(serial.contains(refused), "{serial}");
        println!("scenario fault_init_not_executable_onroot: ok; a non-executable init refused, /sbin/init planned");
    }

    /// modules.dep with garbage, paths out of the tree, a cycle and overlay.ko a FIFO: each bad
    /// line named, the FIFO never opened for reading, copy mode instead of overlayfs.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_corrupt_modules_dep_onroot() {
        let b = fast("fault_corrupt_modules_dep_onroot", &["--fault", "corrupt-modules-dep"]);
        let logs = b.logs();
        assert!(b.dmesg.contains("stateless: modules: modules.dep line 3: \"../../../etc/shadow\" is not a module file inside the module dir"), "{logs}");
        assert!(b.dmesg.contains("a module file is a regular file inside the module dir"), "{logs}");
        assert_eq!((b.dir_mode("etc"), b.dir_mode("var")), ("copy", "copy"), "{logs}");
        assert_eq!((b.fact("etc_writable"), b.fact("var_writable")), ("yes", "yes"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print(
            "fault_corrupt_modules_dep_onroot",
            "corrupt modules.dep: bad lines named, overlay.ko a FIFO refused, copy mode",
        );
    }

    /// The initramfs has no driver for the client's NIC: DHCP finds no interface within its
    /// bound, the root cannot be mounted within its own, then the reboot.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_missing_nic_driver_initramfs() {
        let append = "stateless.dhcp.timeout=8 stateless.nfs.timeout=8";
        let args = ["--stock", "--fault", "no-nic-driver", "--append", append, "--timeout", "120"];
        let serial = boot_until("fault_missing_nic_driver_initramfs", "systemd", &args, "reboot: Restarting system");
        assert!(serial.contains("no such network interface within 8 s"), "{serial}");
        assert!(serial.contains("gave up after") && serial.contains("rebooting in 15 s"), "{serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Restarting system").unwrap();
        assert!(took < 50.0, "{took} s");
        println!("scenario fault_missing_nic_driver_initramfs: ok; no NIC driver: both bounds held, reboot {took:.1} s after /init");
    }

    /// `stateless.break=` before every phase: a shell each time (typed into by the lab), the
    /// boot goes on after each.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_break_before_each_phase_onroot() {
        let append = format!("stateless.break={PHASES}");
        let b = fast("fault_break_before_each_phase_onroot", &["--answer-breaks", "--append", &append]);
        let logs = b.logs();
        for phase in PHASES.split(',') {
            assert!(
                b.serial.contains(&format!("stateless.break={phase}: shell before the {phase} phase")),
                "{phase} {logs}"
            );
        }
        assert_eq!(b.summary.get("breaks_answered").map(String::as_str), Some("9"), "{logs}");
        for n in 1..=9 {
            assert!(b.serial.contains(&format!("lab-typed-in-break-shell-{n}")), "shell {n} ran no command {logs}");
        }
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print("fault_break_before_each_phase_onroot", "9 break shells, each typed into and left; the boot went on");
    }

    /// The same in initramfs mode: before the root there is no shell (the initramfs has none):
    /// said, and the boot goes on; after the switch, the image's.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_break_before_each_phase_initramfs() {
        let append = format!("stateless.break={PHASES}");
        let b = fast("fault_break_before_each_phase_initramfs", &["--stock", "--answer-breaks", "--append", &append]);
        let logs = b.logs();
        assert_eq!(
            b.serial.matches("break shell /bin/sh: No such file or directory").count(),
            3,
            "hardware, network, root {logs}"
        );
        assert_eq!(b.summary.get("breaks_answered").map(String::as_str), Some("6"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print(
            "fault_break_before_each_phase_initramfs",
            "no shell in the initramfs (3 phases, said), 6 shells after the switch",
        );
    }

    /// The longest command line the kernel takes (2048 bytes on x86): unknown keys, bad values,
    /// an unbalanced quote, bytes that are not UTF-8; the keys that are valid still count.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_longest_command_line_onroot() {
        let mut append =
            String::from("stateless.hostname=long-1 stateless.tmpfs.size=0 stateless.break=nope stateless.dirs=../x");
        let mut n = 0;
        while append.len() < 1770 {
            append.push_str(&format!(" stateless.k{n}=\u{e9}$(id);../..\u{1}"));
            n += 1;
        }
        append.push_str(" stateless.emergency=\"unbalanced");
        let b = fast("fault_longest_command_line_onroot", &["--append", &append]);
        let logs = b.logs();
        let cmdline = std::fs::read_to_string(b.out.join("result/cmdline.txt")).unwrap_or_default();
        assert!(cmdline.len() > 1990, "{} bytes {logs}", cmdline.len());
        assert_eq!(b.fact("hostname"), "long-1", "{logs}");
        let diagnostics = b.report["diagnostics"].as_array().map_or(0, Vec::len);
        assert!(diagnostics > n, "{diagnostics} diagnostics for {n} unknown keys {logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("overlay", "overlay"), "defaults kept {logs}");
        b.print(
            "fault_longest_command_line_onroot",
            &format!(
                "{} bytes, {n} unknown keys with hostile values: {diagnostics} diagnostics, hostname long-1",
                cmdline.len()
            ),
        );
    }

    /// A panic in a test build (STATELESS_PANIC_BEFORE=layers, feature panic-test): logged to
    /// kmsg and the console; under `continue` the init is still executed.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_panic_hook_continue_onroot() {
        let b = panic_boot(
            "fault_panic_hook_continue_onroot",
            &["--check-init", "--append", "STATELESS_PANIC_BEFORE=layers"],
        );
        let logs = b.logs();
        assert!(
            b.dmesg.contains("stateless: panic: panicked at") && b.dmesg.contains("forced before the layers phase"),
            "kmsg {logs}"
        );
        // Written to the console itself (a line with no kernel timestamp); the kernel's own
        // lines may come between its parts, as they did once with a clocksource message.
        assert!(b.serial.contains("\nstateless: panic: "), "the console itself {logs}");
        assert_eq!(b.fact("pid1"), "check-init", "{logs}");
        println!("scenario fault_panic_hook_continue_onroot: ok in {} s; panic before the layers: logged to kmsg and the console, init executed all the same", b.summary.get("seconds").map_or("?", String::as_str));
    }

    /// The same under `stateless.emergency=poweroff`: power-off after 15 s.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_panic_hook_poweroff_onroot() {
        let append = "STATELESS_PANIC_BEFORE=layers stateless.emergency=poweroff";
        let args = ["--append", append, "--timeout", "90"];
        let serial =
            boot_until_with(panic_bin(), "fault_panic_hook_poweroff_onroot", "systemd", &args, "reboot: Power down");
        assert!(
            serial.contains("forced before the layers phase") && serial.contains("powering off in 15 s"),
            "{serial}"
        );
        println!("scenario fault_panic_hook_poweroff_onroot: ok; panic before the layers: powered off after 15 s");
    }

    /// Initramfs mode, a panic before the network phase (no root yet): `continue` finds no init
    /// to execute in the initramfs, so the reboot.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_panic_hook_before_the_root_initramfs() {
        let scenario = "fault_panic_hook_before_the_root_initramfs";
        let args = ["--stock", "--append", "STATELESS_PANIC_BEFORE=network", "--timeout", "120"];
        let serial = boot_until_with(panic_bin(), scenario, "systemd", &args, "reboot: Restarting system");
        assert!(serial.contains("forced before the network phase") && serial.contains("rebooting in 15 s"), "{serial}");
        println!("scenario fault_panic_hook_before_the_root_initramfs: ok; panic in the initramfs: no init to go on to, rebooted after 15 s");
    }

    /// Copy mode with a tmpfs too small for /var: the copy cannot be complete, the tmpfs is
    /// taken off again (/var stays the image's, read-only), the fatal step goes to the policy.
    fn tmpfs_too_small(scenario: &str, policy: &str, extra: &[&str]) -> Boot {
        let append = format!("stateless.mode=copy stateless.tmpfs.size=1m stateless.emergency={policy}");
        let args: Vec<&str> = ["--append", append.as_str()].into_iter().chain(extra.iter().copied()).collect();
        let b = fast(scenario, &args);
        let logs = b.logs();
        let var = b.steps("writable-dir").into_iter().find(|s| s["step"]["dir"] == "var").unwrap().clone();
        assert_eq!(var["status"], "failed", "{var} {logs}");
        assert_eq!(b.fact("var_writable"), "no", "the image's /var, complete: {logs}");
        assert_eq!(b.fact("var"), "", "no tmpfs left on /var {logs}");
        b
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_tmpfs_too_small_continue_onroot() {
        let b = tmpfs_too_small("fault_tmpfs_too_small_continue_onroot", "continue", &[]);
        assert!(b.dmesg.contains("fatal step failed, continuing degraded"), "{}", b.logs());
        b.print(
            "fault_tmpfs_too_small_continue_onroot",
            "copy mode, /var does not fit 1 MiB: tmpfs taken off, /var read-only, boot went on",
        );
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_tmpfs_too_small_shell_onroot() {
        let b = tmpfs_too_small("fault_tmpfs_too_small_shell_onroot", "shell", &["--answer-breaks"]);
        let logs = b.logs();
        assert!(b.serial.contains("starting a shell, the boot goes on when it exits"), "{logs}");
        assert!(b.serial.contains("lab-typed-in-break-shell-1"), "{logs}");
        b.print(
            "fault_tmpfs_too_small_shell_onroot",
            "the same under emergency=shell: a shell, typed into; the boot went on",
        );
    }

    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_tmpfs_too_small_reboot_onroot() {
        let append = "stateless.mode=copy stateless.tmpfs.size=1m stateless.emergency=reboot";
        let serial = boot_until(
            "fault_tmpfs_too_small_reboot_onroot",
            "systemd",
            &["--append", append, "--timeout", "90"],
            "reboot: Restarting system",
        );
        assert!(serial.contains("rebooting in 15 s"), "{serial}");
        assert!(!serial.contains("handing over to"), "{serial}");
        println!(
            "scenario fault_tmpfs_too_small_reboot_onroot: ok; the same under emergency=reboot: rebooted after 15 s"
        );
    }

    /// Initramfs mode without overlayfs (the module withheld): copy mode.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn fault_no_overlayfs_initramfs() {
        let b = fast("fault_no_overlayfs_initramfs", &["--stock", "--append", "module_blacklist=overlay"]);
        let logs = b.logs();
        assert_eq!((b.dir_mode("etc"), b.dir_mode("var")), ("copy", "copy"), "{logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("tmpfs", "tmpfs"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print("fault_no_overlayfs_initramfs", "overlay withheld on the stock kernel: copy mode");
    }

    /// busybox's own init, the third init the product promises, on Debian 13 in initramfs mode:
    /// stateless hands over to /sbin/init, busybox, which reads its inittab (the lab's hook runs
    /// at sysinit). The image has no udev, so the devices phase loads the drivers from the
    /// image's tree, trixie's `.ko.xz`, through the kernel (it decompresses them): the result
    /// disk's virtio_blk among them.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_busybox_init_devices_phase_loads_ko_xz() {
        let scenario = "trixie_busybox_init_devices_phase_loads_ko_xz";
        let b = boot(scenario, "trixie-busybox", &["--stock"]);
        let logs = b.logs();
        assert_eq!((b.fact("pid1"), b.fact("pid1_exe")), ("init", "/usr/bin/busybox"), "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("overlay", "overlay"), "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        let modules = b.report["modules"].as_array().unwrap();
        let blk = modules.iter().find(|m| m["module"] == "virtio_blk").unwrap_or_else(|| panic!("{modules:#?}"));
        assert_eq!(blk["result"], "loaded", "{blk}");
        assert!(blk["file"].as_str().unwrap().ends_with("/virtio_blk.ko.xz"), "{blk}");
        let late = b.steps("coldplug").into_iter().find(|s| s["step"]["pass"] == "late").unwrap();
        assert!(late["step"]["modules"].as_array().unwrap().contains(&Value::from("virtio_blk")), "{late}");
        // Drivers that find no device (ENODEV: qemu64 is an AMD CPU without its features) are
        // no failure, as for udev.
        assert_eq!(late["status"], "ok", "{late}");
        assert_status(&b, "lab3-12.lab.example (from dhcp)", "initramfs");
        let xz = modules.iter().filter(|m| m["file"].as_str().is_some_and(|f| f.ends_with(".ko.xz"))).count();
        b.print(
            scenario,
            &format!("Debian 13, busybox init from its inittab; devices phase: {xz} .ko.xz loaded by the kernel"),
        );
    }

    /// The Debian package installed into the Debian 12 image with dpkg (not the lab's copy of
    /// the binary): on-root mode boots its /usr/sbin/stateless.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn package_onroot_systemd() {
        let deb = package_deb();
        let b = boot("package_onroot_systemd", "systemd", &["--package", &deb]);
        let logs = b.logs();
        assert_eq!(b.fact("package"), package_version(&deb), "installed with dpkg: {logs}");
        assert!(b.serial.contains("Run /usr/sbin/stateless as init process"), "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print("package_onroot_systemd", "Debian 12, the package installed with dpkg, init=/usr/sbin/stateless");
    }

    // Debian 13 (trixie): its stock 6.12 kernel (modules .ko.xz, fetched by qemu/lab build) and
    // a trixie image (systemd 257, merged /usr, ifupdown for the predictable name ens3).

    /// Initramfs mode on Debian 13: PXE, the initramfs built from trixie's module tree, own
    /// DHCP, NFSv3 root, systemd 257; the layers and overlays as on Debian 12.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_nfsv3_systemd() {
        let scenario = "trixie_initramfs_nfsv3_systemd";
        let b = boot(scenario, "trixie-systemd", &["--stock", "--pxe", "--clean-shutdown"]);
        let logs = b.logs();
        assert!(b.fact("kernel").ends_with("+deb13-amd64"), "trixie's kernel: {} {logs}", b.fact("kernel"));
        clean_shutdown(&b);
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        let root = b.fact("root");
        assert!(root.starts_with("10.0.2.2:/trixie-systemd nfs ro,") && root.contains("vers=3"), "{root} {logs}");
        for (dir, fs) in [("etc", "overlay"), ("var", "overlay"), ("run", "tmpfs"), ("tmp", "tmpfs")] {
            assert_eq!(b.fact(dir), fs, "/{dir} {logs}");
        }
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_status(&b, "lab3-12.lab.example (from dhcp)", "initramfs");
        ens3_kept(&b);
        let (ops, reads, bytes) = b.nfs_ops("/");
        b.print(
            scenario,
            &format!(
                "Debian 13: stock 6.12 kernel, PXE + stateless initramfs, NFSv3, systemd 257, 6 layers, ens3; \
                 {ops} NFS operations ({reads} READs, {bytes} bytes) on the root until the check"
            ),
        );
    }

    /// Debian 13 booting an image-file root: the lab's trixie systemd tree as one squashfs file
    /// (`stateless image build`) on the export, `diskless/` beside it, `stateless.image=`;
    /// the export read-only at /run/stateless/export, the image on a loop device as /, the
    /// layers from beside the image.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_systemd() {
        image_root("trixie_initramfs_squashfs_root_systemd", "trixie-systemd", "squashfs");
    }

    /// Debian 12's stock kernel (6.1) booting the Debian 12 systemd tree as a squashfs image.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_squashfs_root_systemd() {
        image_root("initramfs_squashfs_root_systemd", "systemd", "squashfs");
    }

    /// The same with an EROFS (lz4hc) image: Debian 13's 6.12 mounts the file itself, no loop
    /// device.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_erofs_root_systemd() {
        image_root("trixie_initramfs_erofs_root_systemd", "trixie-systemd", "erofs");
    }

    /// Debian 12's 6.1 cannot mount an EROFS file (ENOTBLK): the image on a loop device.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_erofs_root_systemd() {
        image_root("initramfs_erofs_root_systemd", "systemd", "erofs");
    }

    fn image_root(scenario: &str, image: &str, format: &str) {
        let b = boot(scenario, image, &["--stock", "--image-root", format]);
        let logs = b.logs();
        let trixie = image.starts_with("trixie-");
        let kernel = if trixie { "+deb13-amd64" } else { "-amd64" };
        assert!(b.fact("kernel").ends_with(kernel), "the stock kernel: {} {logs}", b.fact("kernel"));
        let root = b.fact("root");
        let source = match (format, trixie) {
            ("erofs", true) => format!("/run/stateless/export/{image}.erofs "),
            _ => "/dev/loop".to_string(),
        };
        assert!(root.starts_with(&source) && root.contains(&format!(" {format} ro,")), "{root} {logs}");
        let export = b.fact("export");
        assert!(export.starts_with(&format!("10.0.2.2:/{image} nfs ro,")) && export.contains("vers=3"), "{export}");
        assert_eq!(b.fact("root_writable"), "no", "{logs}");
        let step = b.steps("image-root");
        assert_eq!(step.len(), 1, "{logs}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        assert!(b.loaded("loop") && b.loaded(format), "{}", b.report["modules"]);
        assert_eq!(b.report["nfs_root"]["version"], "3", "{}", b.report["nfs_root"]);
        assert_eq!(b.report["layer_root"], "/run/stateless/export/diskless", "beside the image {logs}");
        // The report names the image, with the sha256 of the .sha256 beside it.
        let booted = &b.report["image"];
        assert_eq!(booted["format"], format, "{booted}");
        assert_eq!(booted["source"], format!("10.0.2.2:/{image}/{image}.{format}"), "{booted}");
        assert!(booted["size"].as_u64().is_some_and(|n| n > 1 << 20), "{booted}");
        assert!(booted["sha256"].as_str().is_some_and(|s| s.len() == 64), "{booted}");
        for (dir, fs) in [("etc", "overlay"), ("var", "overlay"), ("run", "tmpfs"), ("tmp", "tmpfs")] {
            assert_eq!(b.fact(dir), fs, "/{dir} {logs}");
        }
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert_status(&b, "lab3-12.lab.example (from dhcp)", "initramfs");
        if trixie {
            ens3_kept(&b);
        }
        let (ops, reads, bytes) = b.nfs_ops("/run/stateless/export");
        assert!(ops > 0 && reads > 0, "the export's mountstats {logs}");
        assert!(b.report["nfs_rpcs"]["READ"].as_u64().is_some_and(|n| n > 0), "the report counts the export's");
        b.print(
            scenario,
            &format!(
                "{image}, the image root {format} over NFSv3, systemd, 6 layers beside the image; \
                 {ops} NFS operations ({reads} READs, {bytes} bytes) on the export until the check"
            ),
        );
    }

    /// `stateless.image=current stateless.image.ram`: the squashfs image, through the `current`
    /// symlink, copied into memory (its sha256, the target's .sha256, checked), the
    /// export unmounted once the layers are in. Then the NFS server is killed for good: 20 s
    /// later a command reads its programs afresh from the image, and root logs in on the
    /// console's getty and runs a command; systemd stays up.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_in_memory_server_gone() {
        let scenario = "trixie_initramfs_squashfs_root_in_memory_server_gone";
        let args = [
            "--stock",
            "--image-root",
            "squashfs",
            "--append",
            "stateless.image=current stateless.image.ram lab.server-gone=1",
            "--fault",
            "server-gone",
        ];
        let b = boot(scenario, "trixie-systemd", &args);
        let logs = b.logs();
        let step = b.steps("image-root");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        let detail = step[0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("MiB into memory") && detail.contains("sha256 as its .sha256 says"), "{detail}");
        let unmounted = b.steps("unmount-export");
        assert_eq!(unmounted.len(), 1, "{logs}");
        assert_eq!(unmounted[0]["status"], "ok", "{}", unmounted[0]);
        assert_eq!(b.fact("export"), "", "the export unmounted {logs}");
        assert!(b.fact("root").starts_with("/dev/loop") && b.fact("root").contains(" squashfs ro,"), "{logs}");
        let booted = &b.report["image"];
        assert_eq!(booted["in_memory"], true, "{booted}");
        // Through `current`, as `stateless image publish` leaves it; the target's .sha256 counts.
        assert_eq!(booted["source"], "10.0.2.2:/trixie-systemd/current", "{booted}");
        assert_eq!(booted["target"], "trixie-systemd.squashfs", "{booted}");
        assert_eq!(b.report["layer_root"], "/run/stateless/export/diskless", "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "the layers came from beside the image {logs}");
        assert_eq!(b.summary.get("server_gone").map(String::as_str), Some("typed"), "{logs}");
        assert!(b.server_log("ns-services.log").contains("gone: ganesha killed"), "{logs}");
        assert!(b.fact("gone_command").starts_with("systemd 257"), "{logs}");
        assert_eq!(b.fact("gone_login"), "yes", "{logs}");
        assert!(b.serial.contains("lab-login-42"), "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        let copied = detail.split("; ").find(|p| p.starts_with("copied")).unwrap_or_default();
        b.print(
            scenario,
            &format!(
                "image in memory ({copied}); the server killed after the boot: a command and a login 20 s later work"
            ),
        );
    }

    /// dracut's spelling, `root=live:nfs://10.0.2.2/trixie-systemd/trixie-systemd.squashfs`: the
    /// image's dir mounted, no version named, so NFSv4.2 first; ganesha 4's READ_PLUS gives EIO
    /// on the image's head, and the export steps down to NFSv4.1 before the loop device.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_live_root_steps_down() {
        let scenario = "trixie_initramfs_live_root_steps_down";
        let live = "root=live:nfs://10.0.2.2/trixie-systemd/trixie-systemd.squashfs";
        let b = boot(scenario, "trixie-systemd", &["--stock", "--image-root", "squashfs", "--kernel-args", live]);
        let logs = b.logs();
        assert!(b.serial.contains("with NFSv4.2; stepping down to NFSv4.1"), "{logs}");
        assert!(b.fact("root").contains(" squashfs ro,"), "{} {logs}", b.fact("root"));
        let export = b.fact("export");
        assert!(export.starts_with("10.0.2.2:/trixie-systemd nfs4 ro,") && export.contains("vers=4.1"), "{export}");
        assert_eq!(b.report["nfs_root"]["version"], "4.1", "{}", b.report["nfs_root"]);
        assert_eq!(b.report["layer_root"], "/run/stateless/export/diskless", "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        let (ops, reads, bytes) = b.nfs_ops("/run/stateless/export");
        b.print(
            scenario,
            &format!("root=live: over NFSv4.1 after the step-down; {ops} NFS operations ({reads} READs, {bytes} bytes) on the export"),
        );
    }

    /// Two NFS servers, the image copied into memory (`stateless.image.ram`): the server the
    /// copy reads from is killed in the middle of it. Its reads get no data for 15 s, the
    /// export is let go of, the other server's mounted in its place, and the copy goes on at
    /// the offset reached; its sha256 is the `.sha256`'s, the layers come from the second
    /// server, the client boots to systemd, and the report names the first as failed and why.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_in_memory_resumed() {
        let scenario = "trixie_initramfs_squashfs_root_in_memory_resumed";
        let args = [
            "--stock",
            "--image-root",
            "squashfs",
            "--nfs",
            "4.1",
            "--second-server",
            "--append",
            "stateless.image=current stateless.image.ram",
            "--fault",
            "copy-server-gone",
        ];
        let b = boot(scenario, "trixie-systemd", &args);
        let logs = b.logs();
        let step = b.steps("image-root");
        assert_eq!(step.len(), 1, "{logs}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        let detail = step[0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("sha256 as its .sha256 says"), "{detail}");
        let resumed = detail.split(", ").find(|p| p.starts_with("resumed from ")).unwrap_or_default().to_string();
        assert!(!resumed.is_empty(), "{detail}");
        let root = &b.report["nfs_root"];
        let server = root["server"].as_str().unwrap_or_default().to_string();
        assert!(resumed.starts_with(&format!("resumed from {server} at ")), "{resumed} {root}");
        let failed = root["failed"].as_array().cloned().unwrap_or_default();
        let broke = failed.iter().find_map(|f| f["reason"].as_str().filter(|r| r.contains(" broke off at ")));
        let broke = broke.unwrap_or_else(|| panic!("no server failed with the copy: {root} {logs}")).to_string();
        assert!(broke.contains("no data within 15 s"), "{broke}");
        assert_eq!(b.summary.get("server_gone").map(String::as_str), Some("killed"), "{logs}");
        assert_eq!(b.report["image"]["in_memory"], true, "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "the layers from the second server {logs}");
        assert_eq!(b.fact("export"), "", "the export unmounted {logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        let copied = detail.split("; ").find(|p| p.starts_with("copied")).unwrap_or_default();
        b.print(scenario, &format!("the copy's server killed in the middle: {copied}; {broke}"));
    }

    /// A verified image: built with `--verity`, its root hash on the command line
    /// (`roothash=`); dm-verity and its dependencies loaded, a verity device over the loop
    /// device, the root mounted from it; the report says what vouched for the root hash.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_verity() {
        let scenario = "trixie_initramfs_squashfs_root_verity";
        let b = boot(scenario, "trixie-systemd", &["--stock", "--image-root", "squashfs", "--verity"]);
        let logs = b.logs();
        let root = b.fact("root");
        assert!(root.starts_with("/dev/dm-0 squashfs ro,"), "{root} {logs}");
        let step = b.steps("image-root");
        assert_eq!(step.len(), 1, "{logs}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        assert!(step[0]["step"]["root_hash"].as_str().is_some_and(|h| h.len() == 64), "{}", step[0]);
        let verity = &b.report["image"]["verity"];
        assert_eq!(verity["trusted"], "roothash=", "{verity}");
        assert_eq!(verity["device"], "/dev/dm-0", "{verity}");
        assert_eq!(verity["root_hash"], step[0]["step"]["root_hash"], "{verity}");
        for module in ["dm_verity", "dm_bufio", "dm_mod"] {
            assert!(b.loaded(module) || b.loaded(&module.replace('_', "-")), "{module}: {}", b.report["modules"]);
        }
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert!(!b.dmesg.contains("is corrupted"), "{logs}");
        let took = b.steps("image-root")[0]["ms"].as_u64().unwrap_or(0);
        b.print(scenario, &format!("through dm-verity on /dev/dm-0 (roothash=); the image root step took {took} ms"));
    }

    /// An NBD root, verified: the squashfs image with its dm-verity tree served by two
    /// nbd-servers (`root=nbd:10.0.2.2,10.0.2.5:root roothash=...`), attached by stateless's own
    /// handshake and the kernel's NBD netlink interface, dm-verity over /dev/nbd0, systemd from
    /// it. Then the server the client is connected to is killed: the supervisor (argv[0]
    /// `@stateless-nbd`, left by the boot, spared by systemd) sees the connection die,
    /// reconnects the device to the other server, and 20 s later a command reads its programs
    /// afresh from the image and root logs in on the console.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_nbd_root_verity_server_gone() {
        let scenario = "trixie_initramfs_nbd_root_verity_server_gone";
        let args = [
            "--stock",
            "--image-root",
            "squashfs",
            "--verity",
            "--nbd",
            "--append",
            "lab.server-gone=1",
            "--fault",
            "server-gone",
        ];
        let b = boot(scenario, "trixie-systemd", &args);
        let logs = b.logs();
        let step = b.steps("nbd-root");
        assert_eq!(step.len(), 1, "{logs}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        let detail = step[0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("/root on /dev/nbd0 (") && detail.contains("squashfs on /dev/dm-0 on /root"),
            "{detail}"
        );
        let root = b.fact("root");
        assert!(root.starts_with("/dev/dm-0 squashfs ro,"), "{root} {logs}");
        let attached = &b.report["nbd_root"];
        let first = attached["server"].as_str().unwrap_or_default().to_string();
        assert!(["10.0.2.2:10809", "10.0.2.5:10809"].contains(&first.as_str()), "{attached}");
        assert_eq!((attached["export"].as_str(), attached["index"].as_u64()), (Some("root"), Some(0)), "{attached}");
        assert!(attached["supervisor"].as_u64().is_some(), "{attached}");
        let verity = &b.report["image"]["verity"];
        assert_eq!((verity["trusted"].as_str(), verity["device"].as_str()), (Some("roothash="), Some("/dev/dm-0")));
        assert_eq!(b.report["image"]["source"], format!("nbd://{first}/root"), "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("nbd_supervisor"), "yes", "{logs}");
        // The server gone, the other took over.
        assert_eq!(b.summary.get("server_gone").map(String::as_str), Some("typed"), "{logs}");
        let killed = b.server_log("ns-services.log");
        assert!(killed.contains("gone: the nbd-server on port"), "{killed} {logs}");
        let other = if first.starts_with("10.0.2.2") { "10.0.2.5:10809" } else { "10.0.2.2:10809" };
        let reconnected = format!("stateless-nbd: reconnected /dev/nbd0 to {other} after ");
        let said = b.dmesg.lines().chain(b.serial.lines()).find(|l| l.contains(&reconnected)).unwrap_or_default();
        assert!(!said.is_empty(), "no '{reconnected}' {logs}");
        assert!(b.fact("gone_command").starts_with("systemd 257"), "{logs}");
        assert_eq!(b.fact("gone_login"), "yes", "{logs}");
        assert!(b.serial.contains("lab-login-42"), "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert!(!b.dmesg.contains("is corrupted"), "{logs}");
        let took = step[0]["ms"].as_u64().unwrap_or(0);
        let after = said.split(" after ").nth(1).unwrap_or_default();
        b.print(
            scenario,
            &format!(
                "NBD root from {first} through dm-verity (root step {took} ms); that server killed: reconnected to \
                 {other} after {after}; a command and a login 20 s later work"
            ),
        );
    }

    /// One byte of a verified image changed on the server after it was built (in the init's
    /// data, which the image lays out first): the kernel's dm-verity refuses the block (EIO,
    /// never the changed data), the root fails before the switch with the block named, and the
    /// policy powers off; no panic.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_verity_corrupt() {
        let scenario = "trixie_initramfs_squashfs_root_verity_corrupt";
        let order = Path::new(MANIFEST).join("target/lab").join(format!("{scenario}.order"));
        std::fs::create_dir_all(order.parent().unwrap()).unwrap();
        std::fs::write(&order, "/usr/lib/systemd/systemd\n").unwrap();
        let order = order.to_string_lossy();
        let args = [
            "--stock",
            "--image-root",
            "squashfs",
            "--verity",
            "--image-order",
            &order,
            "--fault",
            "corrupt-block",
            "--append",
            "stateless.emergency=poweroff",
        ];
        let serial = boot_until(scenario, "trixie-systemd", &args, "reboot: Power down");
        let kernel = serial
            .lines()
            .find(|l| l.contains("device-mapper: verity: ") && l.ends_with(": data block 1 is corrupted"));
        assert!(kernel.is_some(), "the kernel's line: {serial}");
        let ours = serial.lines().find(|l| l.contains("dm-verity: a block did not match its hash: "));
        assert!(
            ours.is_some_and(|l| l.contains(": data block 1 is corrupted")),
            "the step's failure names the block: {serial}"
        );
        assert!(!serial.contains("switch root to /root: moved"), "nothing moved: {serial}");
        assert!(!serial.contains("Kernel panic"), "{serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
        println!("scenario {scenario}: ok; one byte changed on the server: data block 1 refused by dm-verity, the root failed, powered off {took:.1} s after /init");
    }

    /// A signed image: built with `--verity --sign` (the lab's ed25519 key, made with openssl),
    /// its statement and signature served beside it, the initramfs built with `--trust` of the
    /// public key; no `roothash=`. The client checks the signature, mounts through dm-verity
    /// with the signed root hash, and the report names the key.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_signed() {
        let scenario = "trixie_initramfs_squashfs_root_signed";
        let b = boot(scenario, "trixie-systemd", &["--stock", "--image-root", "squashfs", "--signed"]);
        let logs = b.logs();
        assert!(b.fact("root").starts_with("/dev/dm-0 squashfs ro,"), "{} {logs}", b.fact("root"));
        let step = b.steps("image-root");
        assert_eq!(step.len(), 1, "{logs}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        assert!(step[0]["step"]["root_hash"].is_null(), "no roothash=: {}", step[0]);
        let verity = &b.report["image"]["verity"];
        let trusted = verity["trusted"].as_str().unwrap_or("");
        assert!(trusted.starts_with("key SHA256:") && trusted.ends_with(" lab.pub"), "{verity}");
        assert!(verity["root_hash"].as_str().is_some_and(|h| h.len() == 64), "{verity}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        b.print(scenario, &format!("signed image, {trusted} trusted by the initramfs, through dm-verity"));
    }

    /// A signed image over NBD, no `roothash=`: the statement `image build --verity --sign`
    /// put inside the image (the verity superblock's block) is what the initramfs's key checks,
    /// nothing lying beside an NBD export; dm-verity over /dev/nbd0 with the signed root hash.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_nbd_root_signed() {
        let scenario = "trixie_initramfs_nbd_root_signed";
        let b = boot(scenario, "trixie-systemd", &["--stock", "--image-root", "squashfs", "--signed", "--nbd"]);
        let logs = b.logs();
        assert!(b.fact("root").starts_with("/dev/dm-0 squashfs ro,"), "{} {logs}", b.fact("root"));
        let step = b.steps("nbd-root");
        assert_eq!(step.len(), 1, "{logs}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        assert!(step[0]["step"]["root_hash"].is_null(), "no roothash=: {}", step[0]);
        let verity = &b.report["image"]["verity"];
        let trusted = verity["trusted"].as_str().unwrap_or("");
        assert!(trusted.starts_with("key SHA256:") && trusted.ends_with(" lab.pub"), "{verity}");
        assert_eq!(verity["device"], "/dev/dm-0", "{verity}");
        assert!(b.report["image"]["source"].as_str().is_some_and(|s| s.starts_with("nbd://")), "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert_eq!(b.fact("nbd_supervisor"), "yes", "{logs}");
        b.print(
            scenario,
            &format!("signed image over NBD, {trusted} trusted by the initramfs, the statement inside it"),
        );
    }

    /// Keys in the initramfs and the layers signed (`stateless layers sign`, by the lab's
    /// --signed): a file of the host layer changed on the server after signing, and a file no
    /// manifest lists added to base, never reach the client's /etc; the report names both and
    /// gives every layer's identity; the rest of each layer is applied and the client boots.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_signed_layer_changed() {
        let scenario = "trixie_initramfs_squashfs_root_signed_layer_changed";
        let args = ["--stock", "--image-root", "squashfs", "--signed", "--fault", "layer-changed"];
        let b = boot(scenario, "trixie-systemd", &args);
        let logs = b.logs();
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        let found = b.fact("layers");
        assert!(!found.contains("from-host") && !found.contains("from-intruder"), "{found} {logs}");
        for kept in ["from-base", "from-network-broadcast", "from-network-cidr", "from-ip"] {
            assert!(found.contains(kept), "{kept}: {found} {logs}");
        }
        let layers = b.report["layers"].as_array().cloned().unwrap_or_default();
        for layer in &layers {
            let identity = layer["identity"].as_str().unwrap_or("");
            assert!(identity.len() == 64 && identity.bytes().all(|c| c.is_ascii_hexdigit()), "{layer}");
        }
        let rejected = |name: &str| {
            let layer = layers.iter().find(|l| l["layer"] == name).unwrap_or_else(|| panic!("{name} {logs}"));
            layer["rejected"].as_array().cloned().unwrap_or_default()
        };
        let host = rejected("hosts/lab3-12");
        assert_eq!(host.len(), 1, "{host:?} {logs}");
        assert!(host[0].as_str().unwrap_or("").starts_with("/etc/stateless-lab/from-host: not as signed: "), "{logs}");
        assert_eq!(rejected("base"), ["/etc/stateless-lab/from-intruder: not in the signed manifest"], "{logs}");
        assert_eq!(b.layer_step("hosts/lab3-12")["status"], "degraded", "{logs}");
        assert_eq!(b.layer_step("labs/lab3")["status"], "ok", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        b.print(scenario, "signed layers: a file changed after signing and one added never reached /etc, both named");
    }

    /// Keys in the initramfs, an image they cannot vouch for: signed again with a key the
    /// initramfs does not trust, or served without its signature. The root fails before a
    /// loop device with the reason, and the policy powers off; no panic.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_signature_refused() {
        let scenario = "trixie_initramfs_squashfs_root_signature_refused";
        for (fault, why) in [
            ("untrusted-signature", "which is not trusted"),
            ("no-signature", "trixie-systemd.squashfs.verity-params.sig beside it"),
        ] {
            let args = [
                "--stock",
                "--image-root",
                "squashfs",
                "--signed",
                "--fault",
                fault,
                "--append",
                "stateless.emergency=poweroff",
            ];
            let serial = boot_until(scenario, "trixie-systemd", &args, "reboot: Power down");
            assert!(
                serial.contains(why) && serial.contains("refused (the initramfs trusts 1 key"),
                "{fault}: {serial}"
            );
            assert!(!serial.contains("device-mapper: verity"), "no verity device made: {serial}");
            assert!(!serial.contains("switch root to /root: moved"), "nothing moved: {serial}");
            assert!(!serial.contains("Kernel panic"), "{serial}");
            let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
            println!(
                "scenario {scenario}: ok; {fault}: refused before a loop device, powered off {took:.1} s after /init"
            );
        }
    }

    /// An image root whose file is not on the export: the root step fails before the switch
    /// with the file named, and the policy powers off; no panic.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_image_missing() {
        let scenario = "trixie_initramfs_squashfs_root_image_missing";
        let args = [
            "--stock",
            "--image-root",
            "squashfs",
            "--append",
            "stateless.image=/missing.sqfs stateless.emergency=poweroff",
        ];
        let serial = boot_until(scenario, "trixie-systemd", &args, "reboot: Power down");
        assert!(serial.contains("image root /missing.sqfs on 10.0.2.2:/trixie-systemd"), "{serial}");
        assert!(serial.contains("run/stateless/export/missing.sqfs"), "the file named: {serial}");
        assert!(!serial.contains("switch root to /root: moved"), "nothing moved: {serial}");
        assert!(!serial.contains("Kernel panic"), "{serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
        println!("scenario {scenario}: ok; no such image on the export: the root failed, powered off {took:.1} s after /init");
    }

    /// An image root whose superblock is damaged (64 bytes after its magic overwritten on the
    /// server): squashfs refuses the mount, the root step fails with the file named before
    /// anything moved, and the policy powers off; no panic. With `stateless.image.ram` the copy
    /// does not hash to the .sha256 beside it, and the step fails before a loop device.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_squashfs_root_corrupt() {
        let scenario = "trixie_initramfs_squashfs_root_corrupt";
        for (ram, why) in [
            ("", "trixie-systemd.squashfs: as squashfs on /dev/loop0: invalid argument"),
            (" stateless.image.ram", "its .sha256 says"),
        ] {
            let append = format!("stateless.emergency=poweroff{ram}");
            let args = ["--stock", "--image-root", "squashfs", "--fault", "corrupt-image", "--append", &append];
            let serial = boot_until(scenario, "trixie-systemd", &args, "reboot: Power down");
            assert!(serial.contains(why), "{serial}");
            assert!(!serial.contains("switch root to /root: moved"), "nothing moved: {serial}");
            assert!(!serial.contains("Kernel panic"), "{serial}");
            let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
            let how = if ram.is_empty() { "the mount refused" } else { "in memory, the sha256 differs" };
            println!("scenario {scenario}: ok; a damaged image ({how}): the root failed, powered off {took:.1} s after /init");
        }
    }

    /// Debian 13 on e1000 with an NFSv4.2 root from the lab's nfs-ganesha (Debian 12's 4.x,
    /// whose READ_PLUS answers are wrong: nfs-ganesha issue 1188): the root check reads the
    /// init before the switch, gets EIO, and steps down to NFSv4.1; the report says why.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_nfsv42_steps_down_e1000_systemd() {
        let scenario = "trixie_initramfs_nfsv42_steps_down_e1000_systemd";
        let b = boot(scenario, "trixie-systemd", &["--stock", "--nic", "e1000", "--nfs", "4.2"]);
        let logs = b.logs();
        assert!(b.serial.contains("with NFSv4.2; stepping down to NFSv4.1"), "{logs}");
        let root = b.fact("root");
        assert!(root.starts_with("10.0.2.2:/trixie-systemd nfs4 ") && root.contains("vers=4.1"), "{root} {logs}");
        let nfs = &b.report["nfs_root"];
        assert_eq!(nfs["version"], "4.1", "{nfs}");
        let dropped = nfs["dropped"].as_array().unwrap();
        assert_eq!(dropped.len(), 1, "{nfs}");
        assert_eq!(dropped[0]["version"], "4.2", "{nfs}");
        let reason = dropped[0]["reason"].as_str().unwrap_or("");
        assert!(reason.contains("input/output error") || reason.contains("os error 5"), "{nfs}");
        assert!(b.loaded("e1000") && b.loaded("nfsv4"), "{}", b.report["modules"]);
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        ens3_kept(&b);
        let line = b.serial.lines().find(|l| l.contains("stepping down to NFSv4.1")).unwrap_or("").trim().to_owned();
        b.print(scenario, &format!("Debian 13, e1000, NFSv4.2 against ganesha 4: {line}"));
    }

    /// The Debian package installed into the Debian 13 image with dpkg, and the kernel installed
    /// as its package would: /etc/kernel/postinst.d (the package's hook, configured for
    /// /boot/stateless.img-%v) builds the initramfs the client boots.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_package_kernel_hook_initramfs() {
        let scenario = "trixie_package_kernel_hook_initramfs";
        let deb = package_deb();
        let b = boot(scenario, "trixie-systemd", &["--stock", "--package", &deb]);
        let logs = b.logs();
        assert_eq!(b.fact("package"), package_version(&deb), "installed with dpkg: {logs}");
        let hook = std::fs::read_to_string(b.out.join("initramfs.txt")).unwrap_or_default();
        assert!(hook.contains("stateless: building /boot/stateless.img-"), "{hook}");
        assert!(b.serial.contains("Run /init as init process"), "{logs}");
        assert!(b.dmesg.contains("stateless: initramfs mode"), "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.layers(), ALL_LAYERS, "{logs}");
        b.print(scenario, "Debian 13, the package installed with dpkg, its kernel hook built the initramfs");
    }

    /// Debian 13 with OpenRC (0.56 on sysvinit) in initramfs mode, runlevel `unionfs`.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_openrc_unionfs() {
        let scenario = "trixie_initramfs_openrc_unionfs";
        let b = boot(scenario, "trixie-openrc", &["--stock", "--append", "softlevel=unionfs"]);
        let logs = b.logs();
        assert!(b.fact("kernel").ends_with("+deb13-amd64"), "trixie's kernel: {} {logs}", b.fact("kernel"));
        assert_eq!(b.fact("pid1"), "init", "{logs}");
        assert_eq!(b.fact("runlevel"), "unionfs", "OpenRC must boot the softlevel {logs}");
        assert_eq!(b.fact("conf_d_hostname"), "hostname=\"lab3-12\"", "{logs}");
        assert_eq!((b.fact("etc"), b.fact("var")), ("overlay", "overlay"), "{logs}");
        assert_eq!(b.fact("level"), "ip", "{logs}");
        b.print(scenario, "Debian 13, OpenRC runlevel unionfs in initramfs mode");
    }

    /// An admin's dracut-era DHCP configuration, unchanged: `root=dhcp` and dnsmasq's root-path
    /// in dracut's syntax with an option after a comma and `%s` in the path, which is the host
    /// name DHCP gave (the export is /lab3-12): no version named, so it is negotiated.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_dracut_root_path_hostname() {
        let scenario = "trixie_initramfs_dracut_root_path_hostname";
        let root_path = "nfs:198.51.100.1:/%s,wsize=4096";
        let args =
            ["--stock", "--net", "tap", "--kernel-args", "root=dhcp", "--root-path", root_path, "--export", "/lab3-12"];
        let b = boot(scenario, "trixie-systemd", &args);
        let logs = b.logs();
        assert_eq!(b.report["dhcp"]["lease"]["root_path"], root_path, "{logs}");
        let root = b.fact("root");
        assert!(root.starts_with("198.51.100.1:/lab3-12 nfs"), "%s is the host name: {root} {logs}");
        assert!(root.contains("wsize=4096"), "the root-path's option: {root} {logs}");
        let nfs = &b.report["nfs_root"];
        assert!(nfs["options"].as_str().unwrap_or("").contains("wsize=4096"), "{nfs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        assert_eq!(b.fact("pid1"), "systemd", "{logs}");
        assert_eq!(b.fact("multi_user"), "active", "{logs}");
        let version = nfs["version"].as_str().unwrap_or("?").to_owned();
        b.print(
            scenario,
            &format!("root=dhcp, root-path {root_path}: 198.51.100.1:/lab3-12, NFSv{version}, wsize=4096"),
        );
    }

    /// No version named and a server that speaks NFSv3 only (an old NAS, initramfs-tools' klibc
    /// nfsmount's world): the negotiation's NFSv4 tries are refused at once and v3 mounts, with
    /// no backoff; the report names each version dropped.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_v3_only_server_no_version_named() {
        let scenario = "initramfs_v3_only_server_no_version_named";
        let args = ["--stock", "--server-v3-only", "--kernel-args", "root=/dev/nfs nfsroot=10.0.2.2:/systemd"];
        let b = fast(scenario, &args);
        let logs = b.logs();
        let root = b.fact("root");
        assert!(root.starts_with("10.0.2.2:/systemd nfs ") && root.contains("vers=3"), "{root} {logs}");
        let nfs = &b.report["nfs_root"];
        assert_eq!(nfs["version"], "3", "{nfs}");
        let dropped: Vec<&str> =
            nfs["dropped"].as_array().unwrap().iter().map(|d| d["version"].as_str().unwrap_or("")).collect();
        assert_eq!(dropped, ["4.2", "4.1", "4.0"], "{nfs}");
        let step = b.report["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == "nfs-root").cloned();
        let ms = step.as_ref().map_or(Value::Null, |s| s["ms"].clone());
        b.print(
            scenario,
            &format!("v3-only server, no vers=: 4.2, 4.1, 4.0 refused, v3 mounted; the root step took {ms} ms"),
        );
    }

    /// Two servers, named with the live one first; the client's MAC (52:54:00:12:34:56) puts
    /// 10.0.2.7 first, where nothing answers (QEMU's user network answers ARP for 10.0.2.2 and
    /// .3 only). The client gives it up (no neighbour, or its share of the timeout: 45 s of 90)
    /// and mounts from 10.0.2.2 in the same round; the report names both.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_two_servers_first_dead() {
        let scenario = "initramfs_two_servers_first_dead";
        let args = ["--stock", "--kernel-args", "root=/dev/nfs nfsroot=10.0.2.2,10.0.2.7:/systemd"];
        let b = fast(scenario, &args);
        let logs = b.logs();
        let step = b.steps("nfs-root");
        let root = &step[0]["step"]["root"]["Ok"];
        let order = (&root["server"], &root["fallbacks"]);
        assert_eq!(order, (&serde_json::json!("10.0.2.7"), &serde_json::json!(["10.0.2.2"])), "{root}");
        assert_eq!(step[0]["status"], "ok", "{}", step[0]);
        assert!(b.fact("root").starts_with("10.0.2.2:/systemd nfs"), "{} {logs}", b.fact("root"));
        let nfs = &b.report["nfs_root"];
        assert_eq!(nfs["server"], "10.0.2.2", "{nfs}");
        let failed = nfs["failed"].as_array().cloned().unwrap_or_default();
        assert_eq!(failed.len(), 1, "{nfs}");
        assert_eq!(failed[0]["server"], "10.0.2.7", "{nfs}");
        let ms = step[0]["ms"].clone();
        let why = failed[0]["reason"].as_str().unwrap_or_default().to_string();
        b.print(scenario, &format!("first server dead ({why}), mounted from the second; the root step took {ms} ms"));
    }

    /// Two NICs and no BOOTIF=: the first (eth0, probed first) has carrier on a network with no
    /// DHCP server, the second is on the boot network. DHCP runs on both at once and the second's
    /// lease wins; the first is left without an address.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_dhcp_on_every_nic_first_dead() {
        let scenario = "initramfs_dhcp_on_every_nic_first_dead";
        let b = fast(scenario, &["--stock", "--dead-nic"]);
        let logs = b.logs();
        let dhcp = &b.report["dhcp"];
        assert_eq!(dhcp["interface"], "eth1", "{dhcp} {logs}");
        assert_eq!(dhcp["asked"], serde_json::json!(["eth0", "eth1"]), "{dhcp} {logs}");
        assert_eq!(b.fact("routed"), "eth1", "only the winner is configured: {logs}");
        assert!(b.fact("links").contains("eth0=down"), "eth0 set down again: {logs}");
        assert!(b.serial.contains("dhcp: eth1 answered first of eth0, eth1"), "{logs}");
        assert!(b.fact("root").starts_with("10.0.2.2:/systemd nfs"), "{logs}");
        assert_eq!(b.fact("hostname"), "lab3-12", "{logs}");
        b.print(scenario, &format!("eth0 on a dead network, eth1 answered: {}", dhcp["lease"]["address"]));
    }

    /// Debian 13, no NFS server where the command line points.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_nfs_server_absent() {
        nfs_server_absent("trixie_initramfs_nfs_server_absent", "trixie-systemd");
    }

    /// Debian 13, no DHCP server.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_initramfs_dhcp_absent() {
        dhcp_absent("trixie_initramfs_dhcp_absent", "trixie-systemd");
    }

    /// Debian 13, local disks: swap and scratch as on Debian 12.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn trixie_local_disks_swap_and_scratch_initramfs() {
        local_disks("trixie_local_disks_swap_and_scratch_initramfs", "trixie-systemd");
    }
}
