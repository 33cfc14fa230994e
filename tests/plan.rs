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
        at("dhcp on the BOOTIF= interface, else all with carrier: lease")
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

/// An image anyone can make: an init, and a host layer for lab3-12.
fn small_image(tag: &str) -> TempDir {
    let tmp = TempDir::new(tag);
    write(&tmp.0.join("diskless/hosts/lab3-12/etc/motd"), "lab3-12\n");
    write(&tmp.0.join("sbin/init"), "#!/bin/sh\n");
    std::fs::set_permissions(tmp.0.join("sbin/init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    tmp
}

/// `stateless plan --initramfs` of `image` with `args`: exit code, text; and the JSON.
fn plan_dhcp(image: &TempDir, args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let run = |json: &[&str]| {
        let out = Command::new(BIN)
            .args(["plan", "--initramfs", "--root"])
            .arg(&image.0)
            .args(args)
            .args(json)
            .output()
            .unwrap();
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (out.status.code(), out.stdout)
    };
    let (code, text) = run(&[]);
    let (json_code, json) = run(&["--json"]);
    assert_eq!(code, json_code, "{args:?}");
    (code, String::from_utf8(text).unwrap(), serde_json::from_slice(&json).unwrap())
}

#[test]
fn dhcp_facts_give_the_exact_mount_and_the_host_name() {
    let image = small_image("plan-dhcp");
    // A root-path in the kernel's syntax, options after a comma; the DHCP host name.
    let (code, text, json) = plan_dhcp(
        &image,
        &[
            "--ip",
            "10.0.2.15/24",
            "--root-path",
            "10.0.2.9:/srv/img,vers=3,wsize=4096",
            "--dhcp-server",
            "10.0.2.2",
            "--dhcp-hostname",
            "lab3-12",
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    let mount = "mount -t nfs 10.0.2.9:/srv/img /root -o vers=3,addr=10.0.2.9,nolock,wsize=4096 (read-only)";
    assert!(text.contains(&format!("on /root [fatal]\n       {mount}\n 10. switch root to /root")), "{text}");
    assert_eq!(
        json["root_mounts"],
        serde_json::json!([{
            "fstype": "nfs",
            "source": "10.0.2.9:/srv/img",
            "target": "/root",
            "data": "vers=3,addr=10.0.2.9,nolock,wsize=4096",
            "read_only": true
        }])
    );
    // The host name as the boot's DHCP step records it: a candidate after the kernel's, keying the layers.
    assert!(
        text.contains("hostname: lab3-12 (from dhcp)\n") && text.contains("layer hosts/lab3-12\n       /etc/motd\n")
    );
    let lease = &json["facts"]["dhcp"]["lease"];
    assert_eq!((lease["hostname"].as_str(), lease["server"].as_str()), (Some("lab3-12"), Some("10.0.2.2")));
    assert_eq!(lease["root_path"], "10.0.2.9:/srv/img,vers=3,wsize=4096");
    assert_eq!(lease["address"], "10.0.2.15/24");
    let steps = json["steps"].as_array().unwrap();
    let hostname = steps.iter().find(|s| s["step"] == "hostname").unwrap();
    assert_eq!(hostname["hostname"]["source"], "dhcp");

    // NFSv4: `clientaddr=` is the lease's address; rw: no MS_RDONLY.
    let args = ["--ip", "10.0.2.15/24", "--cmdline", "root=nfs4:10.0.2.9:/img:vers=4.2,rw"];
    let (code, text, json) = plan_dhcp(&image, &args);
    assert_eq!(code, Some(0), "{text}");
    let mount = "mount -t nfs4 10.0.2.9:/img /root -o vers=4.2,addr=10.0.2.9,clientaddr=10.0.2.15\n";
    assert!(text.contains(&format!("on /root [fatal]\n       {mount}")), "{text}");
    assert_eq!(json["root_mounts"][0]["read_only"], false);
    // Without --ip the host name is still the lease's; a hostile one never gets this far.
    let (_, text, _) = plan_dhcp(&image, &["--cmdline", "nfsroot=10.0.2.9:/img", "--dhcp-hostname", "lab3-12"]);
    assert!(text.contains("hostname: lab3-12 (from dhcp)\n"), "{text}");

    // No root to mount: said first, exit 1, and no mount.
    let (code, text, json) = plan_dhcp(&image, &["--ip", "10.0.2.15/24", "--dhcp-hostname", "lab3-12"]);
    assert_eq!(code, Some(1), "{text}");
    let error = "error: nfs root: no root= or nfsroot= on the command line, and no root-path from DHCP\n";
    assert!(
        text.starts_with(&format!(
            "root: {}\nhostname: lab3-12 (from dhcp)\naddress: 10.0.2.15/24\n{error}",
            image.0.display()
        )),
        "{text}"
    );
    assert!(!text.contains("mount -t nfs"), "{text}");
    assert_eq!(json["root_mounts"], serde_json::json!([]));
    assert!(json["steps"].as_array().unwrap().iter().any(|s| s["step"] == "nfs-root" && s["root"]["Err"].is_string()));
}

#[test]
fn dhcp_facts_are_checked_as_the_dhcp_client_checks_them_and_only_where_they_mean_something() {
    let image = small_image("plan-dhcp-refused");
    let refused = |args: &[&str], why: &str| {
        let out = Command::new(BIN).args(["plan", "--root"]).arg(&image.0).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr, format!("stateless: {why}\n"), "{args:?}");
    };
    let on_root = "--root-path, --dhcp-server and --next-server need --initramfs: on-root, the kernel mounted the root before stateless ran";
    refused(&["--root-path", "10.0.2.9:/img"], on_root);
    refused(&["--dhcp-server", "10.0.2.2"], on_root);
    refused(&["--next-server", "10.0.2.3", "--dhcp-hostname", "lab3-12"], on_root);
    // The codec's own checks, as for option 17 and 12.
    let dots = r#"--root-path: ".." as a path component in "10.0.2.9:/srv/../etc""#;
    refused(&["--initramfs", "--root-path", "10.0.2.9:/srv/../etc"], dots);
    refused(&["--initramfs", "--root-path", "10.0.2.9:/a b"], r#"--root-path: space at offset 11 of "10.0.2.9:/a b""#);
    let out = Command::new(BIN)
        .args(["plan", "--initramfs", "--root"])
        .arg(&image.0)
        .arg("--root-path")
        .arg(std::ffi::OsStr::from_bytes(b"10.0.2.9:/\x1b[2J"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "stateless: --root-path: control byte 0x1b at offset 10 of \"10.0.2.9:/\\x1b[2J\"\n"
    );
    refused(&["--initramfs", "--dhcp-hostname", "lab3/12"], r#"--dhcp-hostname: "lab3/12": character '/' not allowed"#);
    refused(&["--initramfs", "--dhcp-server", "server.lab"], r#"--dhcp-server: "server.lab" is not an IPv4 address"#);
    refused(
        &["--initramfs", "--next-server", "0.0.0.0"],
        "--next-server: 0.0.0.0 is no server: leave --next-server out",
    );
    refused(&["--initramfs", "--root-path"], "--root-path needs a value");
    // apply runs no DHCP at all.
    let out =
        Command::new(BIN).args(["apply", "--root", "/nonexistent", "--dhcp-hostname", "lab3-12"]).output().unwrap();
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "stateless: --root-path, --dhcp-server, --next-server and --dhcp-hostname are for plan only\n"
    );

    // On-root, the host name answers the INFORM a static ip= line without a name sends.
    let plan_on_root = |cmdline: &str| {
        let out = Command::new(BIN)
            .args(["plan", "--ip", "10.0.2.15/24", "--dhcp-hostname", "lab3-12", "--cmdline", cmdline, "--root"])
            .arg(&image.0)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = plan_on_root("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off");
    assert!(text.contains("hostname: lab3-12 (from dhcp)\n") && text.contains("(INFORM)"), "{text}");
    // The kernel's DHCP ran: no INFORM, and the plan says the host name given is not used.
    let text = plan_on_root("ip=dhcp");
    assert!(text.contains("hostname: Node15 (from fallback)\n"), "{text}");
    assert!(text.contains("note: this boot runs no DHCP: the DHCP server's options given are not used\n"), "{text}");
}

#[test]
fn dhcp_facts_mount_what_dracut_and_the_kernel_mount() {
    let image = small_image("plan-dhcp-peers");
    let mounts = |args: &[&str]| {
        let mut all = vec!["--ip", "10.0.2.15/24", "--dhcp-server", "10.0.2.2"];
        all.extend(args);
        let (code, text, json) = plan_dhcp(&image, &all);
        assert_eq!(code, Some(0), "{text}");
        let lines: Vec<String> = text.lines().filter(|l| l.contains("mount -t")).map(|l| l.trim().to_owned()).collect();
        let data: Vec<&str> =
            json["root_mounts"].as_array().unwrap().iter().map(|m| m["data"].as_str().unwrap()).collect();
        assert_eq!(lines.len(), data.len(), "{text}");
        lines
    };
    // dracut-ng's TEST-60-NFS root-path: options after a comma in dracut's syntax; no version
    // named: negotiated from 4.2 down to 3, as mount.nfs does.
    assert_eq!(
        mounts(&["--root-path", "nfs:10.0.2.9:/nfs/client,wsize=4096"]),
        [
            "mount -t nfs4 10.0.2.9:/nfs/client /root -o vers=4.2,addr=10.0.2.9,clientaddr=10.0.2.15,wsize=4096 (read-only)",
            "else mount -t nfs4 10.0.2.9:/nfs/client /root -o vers=4.1,addr=10.0.2.9,clientaddr=10.0.2.15,wsize=4096 (read-only)",
            "else mount -t nfs4 10.0.2.9:/nfs/client /root -o vers=4.0,addr=10.0.2.9,clientaddr=10.0.2.15,wsize=4096 (read-only)",
            "else mount -t nfs 10.0.2.9:/nfs/client /root -o vers=3,addr=10.0.2.9,nolock,wsize=4096 (read-only)",
        ]
    );
    // A path alone: the next server (siaddr) before the DHCP server, as dracut and the kernel.
    let from =
        |server: &str| [format!("mount -t nfs {server}:/srv/img /root -o vers=3,addr={server},nolock (read-only)")];
    assert_eq!(mounts(&["--root-path", "/srv/img,vers=3", "--next-server", "10.0.2.3"]), from("10.0.2.3"));
    assert_eq!(mounts(&["--root-path", "/srv/img,vers=3"]), from("10.0.2.2"));
    assert_eq!(mounts(&["--root-path", "10.0.2.9:/srv/img,vers=3", "--next-server", "10.0.2.3"]), from("10.0.2.9"));
    // %s: the host name when DHCP gives one, else the address.
    let per_host = |args: &[&str]| mounts(&[&["--root-path", "10.0.2.9:/srv/%s,vers=3"], args].concat());
    let at = |dir: &str| [format!("mount -t nfs 10.0.2.9:/srv/{dir} /root -o vers=3,addr=10.0.2.9,nolock (read-only)")];
    assert_eq!(per_host(&["--dhcp-hostname", "lab3-12"]), at("lab3-12"));
    assert_eq!(per_host(&[]), at("10.0.2.15"));
}
