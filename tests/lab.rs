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

/// `qemu/lab boot --image IMAGE --shim $STATELESS_BIN ARGS...` with its results in
/// target/lab/SCENARIO; whether it succeeded, and that folder. Needs root.
fn lab_boot(scenario: &str, image: &str, args: &[&str]) -> (std::process::ExitStatus, PathBuf) {
    assert!(rustix::process::geteuid().is_root(), "missing prerequisite: root ({LAB})");
    build_lab();
    let bin = std::env::var("STATELESS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_stateless").to_string());
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
    let (status, out) = lab_boot(scenario, image, args);
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
    assert_eq!(boot.summary.get("export_unchanged").map(String::as_str), Some("yes"), "the NFS export changed {logs}");
    assert_eq!(boot.fact("root_writable"), "no", "{logs}");
    assert!(boot.report.is_object(), "no report.json {logs}");
    boot
}

/// Boots one client that is to end without results (a failure the policy handles): `qemu/lab
/// boot ... --until UNTIL`; returns the serial log. The console must show UNTIL, with no panic.
fn boot_until(scenario: &str, image: &str, args: &[&str], until: &str) -> String {
    let args: Vec<&str> = args.iter().copied().chain(["--until", until]).collect();
    let (status, out) = lab_boot(scenario, image, &args);
    let serial = console(&out);
    assert!(
        status.success(),
        "scenario {scenario}: the console never showed /{until}/: {}",
        out.join("serial.log").display()
    );
    assert!(!serial.contains("Kernel panic"), "kernel panic: {}", out.join("serial.log").display());
    serial
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
        assert!(b.provenance.lines().any(|l| l == "/etc/stateless-lab/level\thosts/10.0.2.15"), "{logs}");
        assert!(b.provenance.lines().any(|l| l == "/etc/stateless-lab/from-base\tbase"), "{logs}");
        assert_eq!(b.fact("etc_hostname"), "lab3-12", "{logs}");
        assert!(b.fact("hosts_line").contains("lab3-12.lab.example lab3-12"), "{logs}");
        assert!(b.serial.contains("PXELINUX"), "not a PXE boot {logs}");
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
        let append = "nfsroot=10.0.2.2:/systemd,vers=3,tcp,port=2050,mountport=20050,mountproto=tcp \
                      stateless.nfs.timeout=15 stateless.emergency=poweroff";
        let serial = boot_until(
            "initramfs_nfs_server_absent",
            "systemd",
            &["--stock", "--append", append],
            "reboot: Power down",
        );
        assert!(serial.contains("gave up after") && serial.contains("stateless.nfs.timeout=15"), "{serial}");
        assert!(serial.contains("mount -t nfs -o vers=3,addr=10.0.2.2"), "each try is logged: {serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
        // DHCP, 15 s of tries, 15 s showing the error, the sync.
        assert!(took < 45.0, "{took} s");
        println!("scenario initramfs_nfs_server_absent: ok; no NFS server: gave up within the bound, powered off {took:.1} s after /init");
    }

    /// No DHCP server: the bounded wait, then the policy.
    #[test]
    #[ignore = "boots QEMU clients over the network, as root, for minutes (tests/run runs it)"]
    fn initramfs_dhcp_absent() {
        let args = [
            "--stock",
            "--net",
            "tap",
            "--no-dhcp",
            "--append",
            "stateless.dhcp.timeout=10 stateless.emergency=poweroff",
        ];
        let serial = boot_until("initramfs_dhcp_absent", "systemd", &args, "reboot: Power down");
        assert!(serial.contains("stateless: dhcp on the first interface with carrier"), "{serial}");
        assert!(serial.contains("emergency ("), "{serial}");
        let took = kernel_seconds(&serial, "Run /init as init process", "reboot: Power down").unwrap();
        assert!(took < 40.0, "{took} s");
        println!("scenario initramfs_dhcp_absent: ok; no DHCP server: gave up after 10 s, powered off {took:.1} s after /init");
    }
}
