//! `stateless plan`: the dry run, as an unprivileged user, changes nothing and shows everything.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;

/// Runs `stateless plan` as `nobody` when we are root (the dry run must not need privileges).
fn plan(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.arg("plan").args(args);
    if rustix::process::geteuid().is_root() {
        command.uid(65534).gid(65534);
    }
    command.output().unwrap()
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn plan_lists_steps_layers_files_and_refusals_without_changing_anything() {
    let (tmp, root) = test_image("plan");
    // nobody must be able to traverse the temp dirs.
    std::fs::set_permissions(&tmp.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = fingerprint(&root);
    let root_arg = root.to_str().unwrap();
    let out = plan(&["--root", root_arg, "--ip", "10.0.2.15/24", "--hostname", "lab3-12.lab.example", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps[6]["hostname"]["short"], "lab3-12");
    assert_eq!(steps[6]["hostname"]["domain"], "lab.example");
    let kinds: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "mount",
            "mount",
            "mount",
            "mount",
            "mount",
            "module",
            "hostname",
            "writable-dir",
            "writable-dir",
            "layer",
            "layer",
            "layer",
            "layer",
            "layer",
            "layer",
            "overlay",
            "overlay",
            "host-files",
            "report",
            "handoff"
        ]
    );
    assert_eq!(steps[9]["name"], "base");
    let base = &json["layers"][0];
    assert_eq!(base["name"], "base");
    let files: Vec<&str> = base["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(files.contains(&"etc/motd") && files.contains(&"var/lib/from-base"), "{files:?}");
    assert_eq!(base["refused"][0]["path"], "usr");
    let escaping = &json["layers"][2];
    assert_eq!((escaping["name"].as_str(), escaping["present"].as_bool()), (Some("networks/10.0.2.0_24"), Some(false)));
    assert!(escaping["errors"][0].as_str().unwrap().contains("points out of the layer root"));
    assert_eq!(steps[19]["init"], "/sbin/init");

    let text = plan(&["--root", root_arg, "--ip", "10.0.2.15/24", "--cmdline", "stateless.dirs=etc stateless.nope=1"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("hostname: Node15 (from fallback)"), "{text}");
    assert!(text.contains("layer hosts/Node15\n       (not present)\n"), "{text}");
    assert!(text.contains("refused /var: outside the writable dirs"), "{text}");
    assert!(text.contains("warning: kernel command line: stateless.nope: unknown key\n"), "{text}");
    assert!(!text.contains("writable /var"), "{text}");
    assert_eq!(fingerprint(&root), before, "plan changed the image");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn config_file_symlinks_resolve_inside_the_image() {
    let (_tmp, root) = test_image("plan-config");
    write(&root.join("conf/real.conf"), "# from the image\nstateless.hostname.prefix=Img\n");
    std::os::unix::fs::symlink("/conf/real.conf", root.join("etc/stateless.conf")).unwrap();
    let out = plan(&["--root", root.to_str().unwrap(), "--ip", "10.0.2.15/24"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("hostname: Img15 (from fallback)"), "{text}");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn initramfs_mode_plans_dhcp_the_nfs_root_and_the_switch_then_layers_for_the_lease() {
    let (_tmp, root) = test_image("plan-initramfs");
    let root_arg = root.to_str().unwrap();
    let cmdline = "root=/dev/nfs nfsroot=10.0.2.2:/systemd,vers=3";
    let out = plan(&["--root", root_arg, "--initramfs", "--ip", "10.0.2.15/24", "--cmdline", cmdline]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"));
    // DHCP before the root, the NFS client loading meanwhile; the layers of the lease's address.
    assert!(
        at("dhcp on the BOOTIF= interface, else on every interface")
            < at("nfs root 10.0.2.2:/systemd (NFSv3, from nfsroot=, read-only) on /root [fatal]")
    );
    assert!(at("meanwhile load nfsv3") < at("switch root to /root [fatal]"));
    assert!(at("switch root to /root") < at("writable /etc") && at("layer hosts/10.0.2.15") > at("writable /etc"));
    // Without --initramfs the same image and address plan on-root mode: no DHCP, no switch.
    let out = plan(&["--root", root_arg, "--ip", "10.0.2.15/24", "--cmdline", cmdline]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("switch root") && !text.contains("nfs root") && !text.contains("lease, address"), "{text}");
    // A root given by name is refused in the plan already, with the reason.
    let out = plan(&["--root", root_arg, "--initramfs", "--cmdline", "root=nfs:server.lab:/systemd"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nfs root: server \"server.lab\" is not an IPv4 address"), "{text}");
    // Before the switch only the command line counts: the image's stateless.conf comes too late
    // for the hardware phase. After it, the DHCP interface is the one the root came over.
    write(&root.join("etc/stateless.conf"), "stateless.modules=e1000\n");
    let out = plan(&["--root", root_arg, "--initramfs", "--ip", "10.0.2.15/24", "--cmdline", cmdline]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("module e1000"), "{text}");
    assert!(text.contains("network files for (the DHCP interface)"), "{text}");
}

#[test]
fn usage_errors_and_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("stateless {}\n", env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not PID 1, so a command is needed"));
    let out = Command::new(BIN).args(["plan", "--root"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["plan", "--root", "/", "--ip", "300.1.1.1/24"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ip"), "{out:?}");
    assert!(Command::new(BIN).arg("--help").output().unwrap().stdout.starts_with(b"usage: stateless plan"));
}

#[test]
fn plan_help_closed_pipes_and_hostile_names() {
    for command in ["plan", "apply"] {
        let out = Command::new(BIN).args([command, "--help"]).output().unwrap();
        assert!(out.status.success() && out.stdout.starts_with(b"usage: stateless plan"), "{command}: {out:?}");
    }
    // An image anyone can make: a layer of 3000 files, one of them named to forge lines.
    let tmp = TempDir::new("plan-pipe");
    let layer = tmp.0.join("diskless/base/etc");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::create_dir_all(tmp.0.join("etc")).unwrap();
    for n in 0..3000 {
        std::fs::write(layer.join(format!("file-with-a-long-name-{n:04}")), "x").unwrap();
    }
    let hostile = std::ffi::OsStr::from_bytes(b"evil\n\x1b[2Jstateless: forged\xff");
    std::fs::write(layer.join(hostile), "x").unwrap();
    let root = tmp.0.to_str().unwrap();

    let text = plan(&["--root", root]).stdout;
    assert!(!text.contains(&0x1b) && !text.contains(&0xff), "raw control bytes reach the terminal");
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("/etc/evil\\x0a\\x1b[2Jstateless: forged\\xff\n"), "{}", &text[..400]);

    // `plan | head`: the reader goes away after one line.
    let mut child = Command::new(BIN)
        .args(["plan", "--root", root])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_fifo_at_the_images_stateless_conf_is_left_unopened() {
    let tmp = TempDir::new("plan-fifo-conf");
    let conf = tmp.0.join("etc/stateless.conf");
    std::fs::create_dir_all(tmp.0.join("etc")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, &conf, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    // An open for reading would block here (or start a device): timeout says so with 124.
    let out = Command::new("timeout")
        .args(["20", BIN, "plan", "--ip", "10.0.2.15/24", "--root"])
        .arg(&tmp.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let refused = "warning: /etc/stateless.conf line 0: read /etc/stateless.conf: not a regular file: left unopened; its options are not used";
    assert!(text.lines().any(|l| l == refused), "{text}");
}
