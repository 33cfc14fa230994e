//! `stateless` as a real PID 1: an initramfs with it as /init, booted under QEMU (TCG) with the
//! Debian kernel, whose overlayfs is a module that `stateless` must load itself. The lab in
//! qemu/ covers NFS roots and real inits; this is the quick check that PID 1 boots, logs to
//! kmsg, survives hostile input and never panics the kernel.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A kernel with its modules, if this machine has one (`apt-get install linux-image-amd64`).
fn kernel() -> Option<(PathBuf, String)> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot").ok()?.filter_map(|e| Some(e.ok()?.path())).collect();
    kernels.sort();
    kernels.into_iter().rev().find_map(|path| {
        let release = path.file_name()?.to_str()?.strip_prefix("vmlinuz-")?.to_string();
        Path::new("/lib/modules")
            .join(&release)
            .join("kernel/fs/overlayfs/overlay.ko")
            .exists()
            .then_some((path, release))
    })
}

/// The kernel and the tools these tests need; a missing one fails the test.
fn tools(test: &str) -> Option<(PathBuf, String)> {
    let missing: Vec<&str> = ["qemu-system-x86_64", "busybox", "cpio", "depmod"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success()
        })
        .collect();
    let kernel = kernel();
    assert!(
        missing.is_empty() && kernel.is_some(),
        "missing prerequisite for {test}: {missing:?} and a kernel with modules in /boot (qemu/lab build installs them)"
    );
    kernel
}

/// Builds the initramfs: busybox, stateless as /init, overlay.ko with its index, two layers,
/// and an /sbin/init that prints what it finds between markers and powers off.
fn initramfs(dir: &Path, release: &str) -> PathBuf {
    initramfs_with(dir, release, &[])
}

/// The same with the modules `drivers` need (as `modprobe --show-depends` lists them, so the
/// files come from kmod, not from the resolver under test) in its module tree.
fn initramfs_with(dir: &Path, release: &str, drivers: &[&str]) -> PathBuf {
    let root = dir.join("root");
    for driver in drivers {
        let out = Command::new("modprobe")
            .args(["-C", "/dev/null", "-S", release, "--show-depends", driver])
            .output()
            .unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(path) = line.strip_prefix("insmod ").map(str::trim) else { continue };
            let rel = path.trim_start_matches('/');
            std::fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
            std::fs::copy(path, root.join(rel)).unwrap();
        }
    }
    for d in ["bin", "sbin", "dev", "proc", "sys", "run", "etc", "var/log", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox =
        String::from_utf8(Command::new("sh").args(["-c", "command -v busybox"]).output().unwrap().stdout).unwrap();
    std::fs::copy(busybox.trim(), root.join("bin/busybox")).unwrap();
    std::fs::copy(BIN, root.join("init")).unwrap();
    let module = format!("lib/modules/{release}/kernel/fs/overlayfs/overlay.ko");
    std::fs::create_dir_all(root.join(&module).parent().unwrap()).unwrap();
    std::fs::copy(Path::new("/").join(&module), root.join(&module)).unwrap();
    let depmod = Command::new("depmod").arg("-b").arg(&root).arg(release).output().unwrap();
    assert!(depmod.status.success(), "{depmod:?}");
    write(&root.join("diskless/base/etc/motd"), "from base\n");
    write(&root.join("diskless/hosts/lab3-12/etc/motd"), "from lab3-12\n");
    write(&root.join("diskless/base/usr/evil"), "refused\n");
    write(
        &root.join("sbin/init"),
        "#!/bin/busybox sh\n/bin/busybox --install -s /bin\n\
         echo \"INIT pid=$$ hostname=$(hostname) args=$*\"\n\
         echo REPORT-BEGIN; cat /run/stateless/report.json; echo REPORT-END\n\
         echo PROVENANCE-BEGIN; cat /run/stateless/provenance; echo PROVENANCE-END\n\
         echo \"MOTD $(cat /etc/motd)\"; echo \"ETC-FS $(awk '$2==\"/etc\"{print $3}' /proc/mounts)\"\n\
         echo > /etc/written && echo ETC-WRITABLE\n\
         echo \"NET $(ls /sys/class/net | tr '\\n' ' ')\"; echo \"BLOCK $(ls /sys/block | tr '\\n' ' ')\"\n\
         dmesg | grep 'stateless:'\npoweroff -f\n",
    );
    std::fs::set_permissions(root.join("sbin/init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let image = dir.join("initramfs.cpio.gz");
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find . | cpio -o -H newc --quiet | gzip -1 > {}", root.display(), image.display()))
        .status()
        .unwrap();
    assert!(cpio.success());
    image
}

/// Boots the initramfs with `append` on the kernel command line; returns the serial log.
fn boot(dir: &Path, kernel: &Path, image: &Path, append: &str) -> String {
    boot_with(dir, kernel, image, append, &[])
}

/// The same with extra QEMU arguments (devices).
fn boot_with(dir: &Path, kernel: &Path, image: &Path, append: &str, devices: &[&str]) -> String {
    let log = dir.join("serial.log");
    let status = Command::new("timeout")
        .args(["120", "qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot"])
        .args(["-monitor", "none", "-display", "none", "-serial"])
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(image)
        .args(["-append", &format!("console=ttyS0 panic=-1 {append}")])
        .args(devices)
        .status()
        .unwrap();
    let serial = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(status.success(), "qemu: {status}\n{serial}");
    serial
}

fn between<'a>(text: &'a str, begin: &str, end: &str) -> &'a str {
    let start = text.find(begin).unwrap_or_else(|| panic!("{begin} missing in\n{text}")) + begin.len();
    &text[start..start + text[start..].find(end).unwrap()]
}

#[test]
#[ignore = "boots stateless as /init in QEMU (tests/run runs it, after qemu/lab build installs QEMU and a kernel)"]
fn boots_as_pid1_loads_overlayfs_applies_layers_and_hands_over() {
    let Some((kernel, release)) = tools("boots_as_pid1...") else { return };
    let tmp = TempDir::new("pid1");
    let image = initramfs(&tmp.0, &release);
    let serial = boot(&tmp.0, &kernel, &image, "quiet ip=off stateless.hostname=lab3-12 stateless.bogus=1 -- single");
    assert!(serial.contains("INIT pid=1 hostname=lab3-12 args=single"), "{serial}");
    assert!(serial.contains("MOTD from lab3-12"), "{serial}");
    assert!(serial.contains("ETC-FS overlay"), "{serial}");
    assert!(serial.contains("ETC-WRITABLE"), "{serial}");

    assert!(serial.contains("stateless.bogus"), "the unknown key must be reported:\n{serial}");
    let report: serde_json::Value = serde_json::from_str(between(&serial, "REPORT-BEGIN", "REPORT-END")).unwrap();
    assert_eq!(report["hostname"]["source"], "cmdline");
    assert_eq!(report["dirs"][0]["mode"], "overlay");
    let overlay = report["modules"].as_array().and_then(|m| m.iter().find(|m| m["module"] == "overlay")).cloned();
    assert_eq!(overlay.map(|m| m["result"].clone()), Some("loaded".into()), "{serial}");
    assert_eq!(report["init"], "/sbin/init");
    assert!(report["elapsed_ms"].as_u64().unwrap() < 10_000);
    let provenance = between(&serial, "PROVENANCE-BEGIN", "PROVENANCE-END");
    assert!(provenance.contains("/etc/motd\thosts/lab3-12"), "{provenance}");
    assert!(!serial.contains("Kernel panic"), "{serial}");
}

#[test]
#[ignore = "boots stateless as /init in QEMU (tests/run runs it, after qemu/lab build installs QEMU and a kernel)"]
fn hostile_command_line_and_missing_init_still_reach_an_init() {
    let Some((kernel, release)) = tools("hostile_command_line...") else { return };
    let tmp = TempDir::new("pid1-hostile");
    let image = initramfs(&tmp.0, &release);
    let hostile = "ip=off stateless.hostname=\"../../x;reboot\" stateless.dirs=../etc,etc stateless.layers=relative \
                   stateless.tmpfs.size=lots stateless.emergency=sometimes stateless.init=/nonexistent";
    let serial = boot(&tmp.0, &kernel, &image, hostile);
    assert!(serial.contains("INIT pid=1"), "{serial}");
    assert!(
        serial.contains("stateless.init=/nonexistent is not an executable file in the image; /sbin/init goes first"),
        "{serial}"
    );
    for key in ["stateless.dirs", "stateless.layers", "stateless.tmpfs.size", "stateless.emergency"] {
        assert!(serial.contains(key), "{key} not reported:\n{serial}");
    }
    assert!(serial.contains("command line hostname \"../../x;reboot\" rejected"), "{serial}");
    assert!(serial.contains("ETC-FS overlay"), "{serial}");
    assert!(!serial.contains("Kernel panic"), "{serial}");
}

/// Coldplug with Debian's own kernel: a client with virtio-net, e1000 and a virtio disk gets
/// every driver loaded by `stateless` (the bus driver first, then the drivers of the devices
/// it makes appear), and the NICs and the disk exist when init runs.
#[test]
#[ignore = "boots stateless as /init in QEMU (tests/run runs it, after qemu/lab build installs QEMU and a kernel)"]
fn coldplug_loads_the_drivers_of_a_stock_kernel() {
    let Some((kernel, release)) = tools("coldplug...") else { return };
    let tmp = TempDir::new("pid1-coldplug");
    let image = initramfs_with(&tmp.0, &release, &["virtio_pci", "virtio_net", "virtio_blk", "e1000"]);
    let disk = tmp.0.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let drive = format!("file={},if=virtio,format=raw", disk.display());
    let devices = [
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-netdev",
        "user,id=n1",
        "-device",
        "e1000,netdev=n1",
        "-drive",
        &drive,
    ];
    let serial = boot_with(&tmp.0, &kernel, &image, "quiet ip=off stateless.hostname=lab3-12", &devices);
    if let Some(out) = std::env::var_os("STATELESS_SERIAL_OUT") {
        std::fs::write(out, &serial).unwrap();
    }
    let report: serde_json::Value = serde_json::from_str(between(&serial, "REPORT-BEGIN", "REPORT-END")).unwrap();
    let result = |m: &str| {
        report["modules"].as_array().and_then(|ms| ms.iter().find(|x| x["module"] == m)).map(|x| x["result"].clone())
    };
    for module in ["virtio_pci", "virtio_net", "virtio_blk", "e1000", "failover", "net_failover"] {
        assert_eq!(result(module), Some("loaded".into()), "{module}: {}", report["modules"]);
    }
    let coldplug = report["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == "coldplug").unwrap();
    assert_eq!(coldplug["status"], "ok", "{coldplug}");
    let net = between(&serial, "NET ", "\n");
    assert_eq!(net.split_whitespace().filter(|n| n.starts_with("eth")).count(), 2, "{net}");
    assert!(between(&serial, "BLOCK ", "\n").contains("vda"), "{serial}");
    assert!(!serial.contains("Kernel panic"), "{serial}");
}
