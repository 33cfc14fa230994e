//! `stateless apply` for real, as root, in a private mount namespace against a temp image.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::*;

const LAB3_12: [&str; 4] = ["--ip", "10.0.2.15/24", "--hostname", "lab3-12.lab.example"];

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn apply_overlays_layers_provenance_report_and_leaves_the_image_untouched() {
    let (_tmp, root) = test_image("apply");
    let before = fingerprint(&root);
    let mut args = LAB3_12.to_vec();
    args.extend(["--cmdline", "quiet stateless.bogus=1 softlevel=unionfs"]);
    in_namespace(&root, &args, |out| {
        let err = stderr(out);
        assert!(out.status.success(), "apply failed: {err}\n{}", String::from_utf8_lossy(&out.stdout));
        let etc = root.join("etc");
        assert_eq!(fstype_of(&etc).as_deref(), Some("overlay"));
        assert_eq!(fstype_of(&root.join("var")).as_deref(), Some("overlay"));
        assert_eq!(fstype_of(&root.join("run")).as_deref(), Some("tmpfs"));
        assert_eq!(fstype_of(&root.join("tmp")).as_deref(), Some("tmpfs"));
        // Five layers in order: the IP layer wins, every layer's own file is there.
        assert_eq!(read(&etc.join("stateless-level")), "ip\n");
        for level in ["base", "network", "lab", "host", "ip"] {
            assert_eq!(read(&etc.join(format!("only-{level}"))), level);
        }
        assert_eq!(read(&etc.join("motd")), "lab3 motd\n");
        assert_eq!(read(&etc.join("fstab")), "# lab3-12\n");
        assert_eq!(read(&root.join("var/lib/from-base")), "base var\n");
        assert_eq!(read(&root.join("var/lib/image-state")), "from the image\n");
        // Symlinks copied as symlinks, never followed.
        assert_eq!(std::fs::read_link(etc.join("abs-link")).unwrap(), Path::new("/etc/shadow"));
        assert_eq!(std::fs::read_link(etc.join("rel-link")).unwrap(), Path::new("../../../../outside"));
        // Special files keep type, owner and setuid.
        assert!(std::fs::symlink_metadata(etc.join("null")).unwrap().file_type().is_char_device());
        assert_eq!(std::fs::symlink_metadata(etc.join("null")).unwrap().rdev(), rustix::fs::makedev(1, 3));
        assert!(std::fs::symlink_metadata(etc.join("fifo")).unwrap().file_type().is_fifo());
        let suid = std::fs::metadata(etc.join("suid")).unwrap();
        assert_eq!((suid.mode() & 0o7777, suid.uid(), suid.gid()), (0o4755, 1234, 5678));
        // Outside the writable dirs: refused and said so.
        assert!(!root.join("usr/bin/evil").exists());
        assert!(err.contains("refused /usr: outside the writable dirs"), "{err}");
        assert!(err.contains("networks/10.0.2.0_24: a symlink points out of the layer root"), "{err}");
        // Hostname files.
        assert_eq!(read(&etc.join("hostname")), "lab3-12\n");
        assert_eq!(read(&etc.join("conf.d/hostname")), "hostname=\"lab3-12\"\n");
        assert!(read(&etc.join("hosts")).contains("127.0.1.1\tlab3-12.lab.example lab3-12\n"));
        assert!(!read(&etc.join("hosts")).contains("debian"));
        // Provenance: last writer per path; a layer's non-dirs with what it left there (size
        // and change time), the host files without.
        let provenance = read(&root.join("run/stateless/provenance"));
        let motd = std::fs::symlink_metadata(etc.join("motd")).unwrap();
        let stamp = format!("/etc/motd\tlabs/lab3\t{}:{}.{:09}", motd.len(), motd.ctime(), motd.ctime_nsec());
        assert!(provenance.lines().any(|l| l == stamp), "{stamp:?} missing in\n{provenance}");
        for line in [
            "/etc/stateless-level\thosts/10.0.2.15",
            "/etc/motd\tlabs/lab3",
            "/etc/fstab\thosts/lab3-12",
            "/etc/only-network\tnetworks/10.0.2.255",
            "/etc/suid\tbase",
            "/var/lib/from-base\tbase",
            "/etc/hostname\thostname",
        ] {
            let stamped = |l: &str| l.strip_prefix(line).is_some_and(|stamp| stamp.starts_with('\t'));
            assert!(provenance.lines().any(|l| l == line || stamped(l)), "{line:?} missing in\n{provenance}");
        }
        assert!(!provenance.contains("evil"));
        // Report.
        let report: serde_json::Value = serde_json::from_str(&read(&root.join("run/stateless/report.json"))).unwrap();
        assert_eq!(report["hostname"]["short"], "lab3-12");
        assert_eq!(report["layer_root"], "/diskless", "what relayer reads the layers from again");
        assert_eq!(report["hostname"]["source"], "kernel");
        assert_eq!(report["address"], "10.0.2.15/24");
        // Each dir with the mount made there: what relayer later holds the live dir to.
        let (on_etc, on_var) = (mount_key(&root.join("etc")), mount_key(&root.join("var")));
        assert_eq!(
            report["dirs"],
            serde_json::json!([{"dir": "etc", "mode": "overlay", "mount": on_etc}, {"dir": "var", "mode": "overlay", "mount": on_var}])
        );
        assert_ne!(on_etc, on_var);
        let layers: Vec<&str> =
            report["layers"].as_array().unwrap().iter().map(|l| l["layer"].as_str().unwrap()).collect();
        assert_eq!(layers, ["base", "networks/10.0.2.255", "labs/lab3", "hosts/lab3-12", "hosts/10.0.2.15"]);
        assert_eq!(report["layers"][0]["refused"], 1);
        assert_eq!(report["init"], "/sbin/init");
        assert_eq!(report["degraded"], false);
        assert!(report["diagnostics"].to_string().contains("stateless.bogus"), "{}", report["diagnostics"]);
        assert!(
            report["steps"].as_array().unwrap().iter().all(|s| s["ms"].is_u64() && s["status"] != "failed"),
            "{}",
            report["steps"]
        );
        // The dirs are writable, and writes stay in RAM.
        std::fs::write(etc.join("written-at-runtime"), "x").unwrap();
        std::fs::write(root.join("var/log/syslog"), "x").unwrap();
    });
    assert_eq!(fingerprint(&root), before, "the image was modified");
    assert!(!root.join("etc/written-at-runtime").exists());
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn copy_mode_fills_a_tmpfs_with_the_image_dir() {
    let (_tmp, root) = test_image("copy");
    let before = fingerprint(&root);
    let mut args = LAB3_12.to_vec();
    args.extend(["--cmdline", "stateless.mode=copy stateless.dirs=etc"]);
    in_namespace(&root, &args, |out| {
        assert!(out.status.success(), "{}", stderr(out));
        assert_eq!(fstype_of(&root.join("etc")).as_deref(), Some("tmpfs"));
        assert_eq!(fstype_of(&root.join("var")), None, "var was not asked for");
        assert_eq!(read(&root.join("etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
        assert_eq!(read(&root.join("etc/stateless-level")), "ip\n");
        assert!(!root.join("var/lib/from-base").exists());
        assert!(stderr(out).contains("refused /var: outside the writable dirs"), "{}", stderr(out));
        let report = read(&root.join("run/stateless/report.json"));
        assert!(report.contains("\"mode\": \"copy\""), "{report}");
    });
    assert_eq!(fingerprint(&root), before);
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn fallback_hostname_selects_node_layers() {
    let (_tmp, root) = test_image("fallback");
    write(&root.join("diskless/hosts/Node15/etc/only-node"), "node");
    in_namespace(&root, &["--ip", "10.0.2.15/24", "--hostname", "10.0.2.15"], |out| {
        assert!(out.status.success(), "{}", stderr(out));
        assert_eq!(read(&root.join("etc/hostname")), "Node15\n");
        assert_eq!(read(&root.join("etc/only-node")), "node");
        assert!(!root.join("etc/only-host").exists(), "lab3-12's layer must not apply");
        let report: serde_json::Value = serde_json::from_str(&read(&root.join("run/stateless/report.json"))).unwrap();
        assert_eq!(report["hostname"]["source"], "fallback");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn apply_refuses_the_running_system_and_shared_mounts() {
    let out = std::process::Command::new(BIN).args(["apply", "--root", "/"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("refuses --root /"), "{}", stderr(&out));
    let (_tmp, root) = test_image("shared");
    // A new peer group inside a private namespace: nothing reaches the host, but apply must refuse.
    let out = in_namespace_with(
        &root,
        &[],
        |_| {
            rustix::mount::mount_change(
                "/",
                rustix::mount::MountPropagationFlags::SHARED | rustix::mount::MountPropagationFlags::REC,
            )
            .unwrap();
        },
        |out| out.clone(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("shared mount"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn apply_refuses_a_shared_mount_below_the_root_even_with_a_space_in_its_path() {
    let (tmp, _) = test_image("shared-below");
    // mountinfo writes the space as \040.
    std::fs::create_dir(tmp.0.join("my images")).unwrap();
    let root = tmp.0.join("my images/image");
    std::fs::rename(tmp.0.join("image"), &root).unwrap();
    let before = fingerprint(&root);
    let out = in_namespace_with(
        &root,
        &[],
        |root| {
            // Only /var below the image root propagates: the root's own mount is private.
            let var = root.join("var");
            rustix::mount::mount_bind(&var, &var).unwrap();
            rustix::mount::mount_change(&var, rustix::mount::MountPropagationFlags::SHARED).unwrap();
        },
        |out| out.clone(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{} is a shared mount", root.join("var").display())), "{}", stderr(&out));
    assert_eq!(fingerprint(&root), before);
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn writable_dirs_get_the_same_mount_flags_in_both_modes() {
    let (_tmp, root) = test_image("flags");
    for mode in ["overlay", "copy"] {
        let cmdline = format!("stateless.mode={mode} stateless.dirs=etc");
        let options = in_namespace(&root, &["--cmdline", &cmdline], |out| {
            assert!(out.status.success(), "{}", stderr(out));
            mount_options_of(&root.join("etc")).unwrap()
        });
        assert!(!options.contains("nosuid") && !options.contains("nodev"), "{mode}: {options}");
    }
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn symlinks_out_of_the_image_are_never_mounted_on_or_written_through() {
    let (tmp, root) = test_image("escape");
    let outside = tmp.0.join("outside");
    for dir in ["run", "tmp", "dev"] {
        std::fs::create_dir_all(outside.join(dir)).unwrap();
        std::fs::remove_dir(root.join(dir)).unwrap();
        std::os::unix::fs::symlink(outside.join(dir), root.join(dir)).unwrap();
    }
    let before = (fingerprint(&root), fingerprint(&outside));
    in_namespace(&root, &LAB3_12, |out| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "the writable dirs fail without /run: {err}");
        for dir in ["run", "tmp", "dev"] {
            assert_eq!(fstype_of(&outside.join(dir)), None, "{dir} mounted through the symlink: {err}");
            assert!(err.contains(&format!("open {}: a symlink", root.join(dir).display())), "{err}");
        }
        assert_eq!(fingerprint(&outside), before.1, "written outside the image");
    });
    assert_eq!(fingerprint(&root), before.0);
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_layer_file_that_does_not_fit_keeps_the_image_file() {
    let (_tmp, root) = test_image("full");
    // Each within the tmpfs's size (a bigger file is refused unread), together more than it holds.
    write(&root.join("diskless/hosts/lab3-12/etc/a-filler"), &"f".repeat(100 * 1024));
    write(&root.join("diskless/hosts/lab3-12/etc/passwd"), &"x".repeat(100 * 1024));
    let args = [&LAB3_12[..], &["--cmdline", "stateless.dirs=etc stateless.tmpfs.size=128k"]].concat();
    in_namespace(&root, &args, |out| {
        let err = stderr(out);
        assert_eq!(read(&root.join("etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n", "passwd lost: {err}");
        assert!(err.contains("etc/passwd: no space left on device"), "{err}");
        let report: serde_json::Value = serde_json::from_str(&read(&root.join("run/stateless/report.json"))).unwrap();
        let layer = report["steps"].as_array().unwrap().iter().find(|s| s["step"]["name"] == "hosts/lab3-12").unwrap();
        assert_eq!(layer["status"], "degraded", "{layer}");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn host_files_on_a_full_tmpfs_keep_their_old_content() {
    use stateless::fs::{hostfiles, root::ImageRoot};
    let tmp = TempDir::new("full-hostfiles");
    let etc = tmp.0.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    in_private_namespace(|| {
        let size = std::ffi::CString::new("size=64k").unwrap();
        rustix::mount::mount("tmpfs", &etc, "tmpfs", rustix::mount::MountFlags::empty(), Some(size.as_c_str()))
            .unwrap();
        write(&etc.join("hostname"), "debian\n");
        write(&etc.join("hosts"), "127.0.0.1 localhost\n");
        // Fill what is left.
        let mut filler = std::fs::File::create(etc.join("filler")).unwrap();
        while std::io::Write::write_all(&mut filler, &[0u8; 4096]).is_ok() {}
        let root = ImageRoot::open(&tmp.0).unwrap();
        let error = hostfiles::write(&root, "lab3-12", "lab3-12", &hostfiles::planned(&root)).unwrap_err();
        assert_eq!(error.errno, Some(28), "{error}");
        assert_eq!(read(&etc.join("hostname")), "debian\n");
        assert_eq!(read(&etc.join("hosts")), "127.0.0.1 localhost\n");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn copy_mode_that_runs_out_of_space_fails_and_leaves_the_image_dir() {
    let (_tmp, root) = test_image("short");
    // Each within the tmpfs's size, together more than it holds.
    write(&root.join("etc/big1"), &"b".repeat(100 * 1024));
    write(&root.join("etc/big2"), &"b".repeat(100 * 1024));
    let cmdline = "stateless.mode=copy stateless.dirs=etc stateless.tmpfs.size=128k";
    in_namespace(&root, &[&LAB3_12[..], &["--cmdline", cmdline]].concat(), |out| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(1), "a shortfall is a failed step: {err}");
        assert_eq!(fstype_of(&root.join("etc")), None, "the half-filled tmpfs stays: {err}");
        assert_eq!(read(&root.join("etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
        let report: serde_json::Value = serde_json::from_str(&read(&root.join("run/stateless/report.json"))).unwrap();
        assert_eq!(report["dirs"], serde_json::json!([{"dir": "etc", "mode": "none"}]));
        assert_eq!(report["degraded"], true);
        let step = report["steps"].as_array().unwrap().iter().find(|s| s["phase"] == "writable-dirs").unwrap();
        assert_eq!((step["status"].as_str(), step["error"]["op"].as_str()), (Some("failed"), Some("copy")), "{step}");
        assert_eq!(step["error"]["errno"], 28, "{step}");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn overlayfs_refusing_after_the_layers_falls_back_to_copy_mode_with_the_layers() {
    let (tmp, _) = test_image("refused");
    // A ':' in the path cannot go into overlayfs's lowerdir= option: the overlay cannot be mounted.
    std::fs::create_dir(tmp.0.join("img:1")).unwrap();
    let root = tmp.0.join("img:1/image");
    std::fs::rename(tmp.0.join("image"), &root).unwrap();
    let before = fingerprint(&root);
    in_namespace(&root, &[&LAB3_12[..], &["--cmdline", "stateless.dirs=etc"]].concat(), |out| {
        let err = stderr(out);
        assert!(out.status.success(), "{err}");
        assert_eq!(fstype_of(&root.join("etc")).as_deref(), Some("tmpfs"), "{err}");
        assert_eq!(fstype_of(&root.join("run/stateless/rw/etc")), None, "the upper's tmpfs stays: {err}");
        assert_eq!(read(&root.join("etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n");
        assert_eq!(read(&root.join("etc/stateless-level")), "ip\n", "the layers are lost: {err}");
        assert_eq!(read(&root.join("etc/hostname")), "lab3-12\n");
        let report: serde_json::Value = serde_json::from_str(&read(&root.join("run/stateless/report.json"))).unwrap();
        let on_etc = mount_key(&root.join("etc"));
        assert_eq!(report["dirs"], serde_json::json!([{"dir": "etc", "mode": "copy", "mount": on_etc}]));
        let step = report["steps"].as_array().unwrap().iter().find(|s| s["step"]["step"] == "overlay").unwrap();
        assert_eq!(step["status"], "degraded", "{step}");
        assert_eq!(report["degraded"], false, "copy mode is a lesser way, not a failure");
    });
    assert_eq!(fingerprint(&root), before);
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_layer_cannot_delete_or_hide_image_files_through_the_upper_dir() {
    let (_tmp, root) = test_image("whiteout");
    let layer = root.join("diskless/base/etc");
    // A 0:0 character device is a whiteout in an upper dir, trusted.overlay.opaque hides a dir.
    let c = std::ffi::CString::new(layer.join("passwd").as_os_str().as_encoded_bytes()).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), rustix::fs::FileType::CharacterDevice, 0o600.into(), 0).unwrap();
    write(&root.join("etc/sub/keep"), "image\n");
    write(&layer.join("sub/added"), "layer\n");
    rustix::fs::setxattr(layer.join("sub"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    let before = fingerprint(&root);
    in_namespace(&root, &[&LAB3_12[..], &["--cmdline", "stateless.dirs=etc"]].concat(), |out| {
        let err = stderr(out);
        assert_eq!(read(&root.join("etc/passwd")), "root:x:0:0:root:/root:/bin/sh\n", "deleted: {err}");
        assert_eq!(read(&root.join("etc/sub/keep")), "image\n", "hidden: {err}");
        assert_eq!(read(&root.join("etc/sub/added")), "layer\n");
        assert!(err.contains("whiteout etc/passwd: operation not permitted"), "{err}");
        assert!(err.contains("setxattr etc/sub: operation not permitted"), "{err}");
    });
    assert_eq!(fingerprint(&root), before);
}

/// The mount id and device of the mount on `dir`, as the report records them.
fn mount_key(dir: &Path) -> serde_json::Value {
    use rustix::fs::{AtFlags, StatxFlags};
    let st = rustix::fs::statx(rustix::fs::CWD, dir, AtFlags::empty(), StatxFlags::MNT_ID).unwrap();
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(dir).unwrap());
    serde_json::json!({"id": st.stx_mnt_id, "dev": dev})
}
