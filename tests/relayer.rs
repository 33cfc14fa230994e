//! `stateless relayer`: the layers applied again to a client that `stateless apply` booted in a
//! private mount namespace; only what differs is written, stale paths go only with `--prune`,
//! back to the image's version; the image itself is never written.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn relayer(root: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("relayer").arg("--root").arg(root).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"))
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn relayer_writes_what_changed_and_prunes_only_when_asked() {
    let (_tmp, root) = test_image("relayer");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap(); // a symlink out: a failure each time
    write(&root.join("etc/issue"), "image issue\n");
    write(&l.join("base/etc/issue"), "layer issue\n");
    // The host-files step writes /etc/hosts after the layers: relayer leaves it to that step.
    write(&l.join("base/etc/hosts"), "127.0.0.1 localhost\n");
    let image_etc = fingerprint(&root.join("etc"));
    in_private_namespace(|| {
        let out = Command::new(BIN)
            .args(["apply", "--root"])
            .arg(&root)
            .args(["--ip", "10.0.2.15/24", "--hostname", "lab3-12"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let etc = root.join("etc");
        assert_eq!(read(&etc.join("issue")), "layer issue\n");
        assert_eq!(text(&relayer(&root, &[])), "layers: base, networks/10.0.2.255, labs/lab3, hosts/lab3-12, hosts/10.0.2.15\nnothing to do: the client has what the layers provide\n");

        // The tree changes on the server.
        write(&l.join("hosts/lab3-12/etc/fstab"), "# lab3-12, new\n");
        write(&l.join("labs/lab3/etc/new-file"), "new\n");
        write(&l.join("base/etc/newdir/inner"), "inner\n");
        std::fs::remove_file(l.join("labs/lab3/etc/motd")).unwrap(); // base's motd wins again
        std::fs::remove_file(l.join("base/etc/only-base")).unwrap(); // stale, not in the image
        std::fs::remove_file(l.join("base/etc/issue")).unwrap(); // stale, the image has one
        std::fs::set_permissions(
            l.join("hosts/10.0.2.15/etc/only-ip"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();

        let dry = text(&relayer(&root, &["--dry-run"]));
        assert!(dry.starts_with("dry run (nothing written); layers: "), "{dry}");
        assert_eq!(read(&etc.join("fstab")), "# lab3-12\n", "a dry run writes nothing");
        let want = [
            "new       /etc/newdir (base)",
            "new       /etc/newdir/inner (base)",
            "changed   /etc/motd (base): content",
            "new       /etc/new-file (labs/lab3)",
            "changed   /etc/fstab (hosts/lab3-12): content",
            "changed   /etc/only-ip (hosts/10.0.2.15): mode",
            "stale     /etc/only-base (base): left alone (--prune takes it away)",
            "stale     /etc/issue (base): left alone (--prune takes it away)",
        ];
        for line in want {
            assert!(dry.contains(&format!("{line}\n")), "{line:?} in {dry}");
        }
        assert_eq!(dry.lines().count(), want.len() + 1, "{dry}");

        let done = text(&relayer(&root, &[]));
        assert_eq!(done.replace("dry run (nothing written); ", ""), dry.replace("dry run (nothing written); ", ""));
        assert_eq!(read(&etc.join("fstab")), "# lab3-12, new\n");
        assert_eq!(read(&etc.join("motd")), "base motd\n");
        assert_eq!(read(&etc.join("new-file")), "new\n");
        assert_eq!(read(&etc.join("newdir/inner")), "inner\n");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(etc.join("only-ip")).unwrap().permissions());
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(read(&etc.join("only-base")), "base", "stale, left alone");
        assert_eq!(read(&etc.join("issue")), "layer issue\n", "stale, left alone");
        let provenance = read(&root.join("run/stateless/provenance"));
        assert!(
            provenance.contains("/etc/new-file\tlabs/lab3\t") && provenance.contains("/etc/motd\tbase\t"),
            "{provenance}"
        );

        let pruned = text(&relayer(&root, &["--prune"]));
        assert_eq!(
            pruned.lines().skip(1).collect::<Vec<_>>(),
            ["pruned    /etc/only-base (base)", "restored  /etc/issue (base)"],
            "{pruned}"
        );
        assert!(!etc.join("only-base").exists());
        assert_eq!(read(&etc.join("issue")), "image issue\n", "the image's version back");
        let provenance = read(&root.join("run/stateless/provenance"));
        assert!(!provenance.contains("/etc/only-base") && !provenance.contains("/etc/issue"), "{provenance}");
        assert!(
            text(&relayer(&root, &["--prune"])).ends_with("nothing to do: the client has what the layers provide\n")
        );
        assert!(read(&etc.join("hosts")).contains("lab3-12"), "the host files step's /etc/hosts stays");

        // A layer that cannot be read: its files look stale, but nothing is pruned.
        std::fs::remove_dir_all(l.join("networks/10.0.2.255")).unwrap();
        std::os::unix::fs::symlink("../../..", l.join("networks/10.0.2.255")).unwrap();
        let out = relayer(&root, &["--prune"]);
        let listed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{listed}");
        assert!(listed.contains("failed    networks/10.0.2.255 (networks/10.0.2.255): "), "{listed}");
        let kept = "stale     /etc/only-network (networks/10.0.2.255): left alone: a layer could not be read, so nothing is pruned";
        assert!(listed.contains(kept), "{listed}");
        assert_eq!(read(&etc.join("only-network")), "network");
    });
    assert_eq!(fingerprint(&root.join("etc")), image_etc, "the image's /etc was never written");
}

#[test]
fn relayer_needs_a_report_and_root() {
    let tmp = TempDir::new("relayer-args");
    let out = relayer(&tmp.0, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("report.json"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(relayer(&tmp.0, &["--bogus"]).status.code(), Some(2));
    // What is printed is escaped: an argument, the root.
    let (code, _, err) = listed(&relayer(&tmp.0, &["--bogus\x1b[2J\u{202e}"]));
    assert_eq!(code, Some(2));
    assert!(err.starts_with("stateless: unknown argument \"--bogus\\x1b[2J\\xe2\\x80\\xae\"\n"), "{err}");
    let (code, _, err) = listed(&relayer(&tmp.0.join("gone\x1b[2J"), &["--dry-run"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("gone\\x1b[2J: No such file") && !err.contains('\x1b'), "{err}");
}

/// `stateless apply` as the boot of lab3-12 at 10.0.2.15/24 (in the caller's namespace).
fn boot(root: &Path) {
    boot_with(root, "");
}

/// [`boot`] with a kernel command line.
fn boot_with(root: &Path, cmdline: &str) {
    let out = Command::new(BIN)
        .args(["apply", "--root"])
        .arg(root)
        .args(["--ip", "10.0.2.15/24", "--hostname", "lab3-12", "--cmdline", cmdline])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// What relayer printed and its exit code, whatever it is.
fn listed(out: &Output) -> (Option<i32>, String, String) {
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

const NOTHING: &str = "nothing to do: the client has what the layers provide\n";

fn edit_report(root: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = root.join("run/stateless/report.json");
    let mut report: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    edit(&mut report);
    std::fs::write(&path, serde_json::to_string(&report).unwrap()).unwrap();
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn prune_removes_and_restores_only_inside_dirs_still_the_boots() {
    let (_tmp, root) = test_image("relayer-prune-dirs");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("var/lib/from-base"), "the image's\n");
    write(&root.join("srv/from-base"), "the image's\n");
    let (image_var, image_srv) = (fingerprint(&root.join("var")), fingerprint(&root.join("srv")));
    in_private_namespace(|| {
        boot(&root);
        std::fs::remove_file(l.join("base/var/lib/from-base")).unwrap(); // stale in /var
        std::fs::remove_file(l.join("base/etc/only-base")).unwrap(); // stale in /etc

        // An admin takes /var's overlay off; the report names a dir the boot never mounted,
        // and the provenance a file in it.
        assert!(Command::new("umount").arg(root.join("var")).status().unwrap().success());
        edit_report(&root, |r| {
            r["dirs"].as_array_mut().unwrap().push(serde_json::json!({"dir": "srv", "mode": "overlay"}))
        });
        let provenance = root.join("run/stateless/provenance");
        std::fs::write(&provenance, read(&provenance) + "/srv/from-base\tbase\n").unwrap();
        for args in [&["--prune", "--dry-run"][..], &["--prune"]] {
            let (code, out, err) = listed(&relayer(&root, args));
            assert_eq!(code, Some(1), "{out}{err}");
            for line in [
                "failed    /var/lib/from-base (base): /var is not the overlay or tmpfs the boot made there (unmounted or replaced since, or relayer runs in another mount namespace than the boot's?): nothing written or removed there\n",
                "failed    /srv/from-base (base): /srv is not the overlay or tmpfs the boot made there (unmounted or replaced since, or relayer runs in another mount namespace than the boot's?): nothing written or removed there\n",
                "pruned    /etc/only-base (base)\n",
            ] {
                assert!(out.contains(line), "{args:?} {line:?} in {out}");
            }
            assert!(!out.contains("restored"), "{out}");
        }
        assert!(!root.join("etc/only-base").exists(), "pruned where the dir is still the boot's");
        assert_eq!(read(&root.join("var/lib/from-base")), "the image's\n");
        let kept = read(&provenance);
        assert!(kept.contains("/var/lib/from-base\tbase") && kept.contains("/srv/from-base\tbase"), "{kept}");
    });
    assert_eq!(fingerprint(&root.join("var")), image_var, "the image's /var was never written");
    assert_eq!(fingerprint(&root.join("srv")), image_srv, "the image's /srv was never written");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn nothing_is_written_through_another_mount_below_or_in_place_of_a_writable_dir() {
    let (_tmp, root) = test_image("relayer-mounts");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("srv/data/keep"), "precious\n");
    write(&l.join("base/var/lib/bound/written-at-boot"), "a layer's\n");
    let (image_srv, image_var) = (fingerprint(&root.join("srv")), fingerprint(&root.join("var")));
    in_private_namespace(|| {
        boot(&root);
        let var = root.join("var");
        let client_var = fingerprint(&var);
        // Something else is mounted below /var, where a layer wrote at boot and writes now.
        let bound = var.join("lib/bound");
        assert!(Command::new("mount").arg("--bind").arg(root.join("srv/data")).arg(&bound).status().unwrap().success());
        write(&l.join("base/var/lib/bound/keep"), "a layer's\n");
        write(&l.join("base/var/lib/bound/evil"), "a layer's\n");
        std::fs::remove_file(l.join("base/var/lib/bound/written-at-boot")).unwrap();
        // /etc's overlay is replaced by a bind mount of /var's.
        assert!(Command::new("umount").arg(root.join("etc")).status().unwrap().success());
        assert!(Command::new("mount").arg("--bind").arg(&var).arg(root.join("etc")).status().unwrap().success());
        write(&l.join("base/etc/notes"), "a layer's\n");
        for args in [&["--prune", "--dry-run"][..], &["--prune"]] {
            let (code, out, err) = listed(&relayer(&root, args));
            assert_eq!(code, Some(1), "{out}{err}");
            for line in [
                "failed    /var/lib/bound/keep (base): on another mount (/var/lib/bound): nothing written or removed there\n",
                "failed    /var/lib/bound/evil (base): on another mount (/var/lib/bound): nothing written or removed there\n",
                "failed    /var/lib/bound/written-at-boot (base): on another mount (/var/lib/bound): nothing written or removed there\n",
                "failed    /etc/notes (base): /etc is not the overlay or tmpfs the boot made there (unmounted or replaced since, or relayer runs in another mount namespace than the boot's?): nothing written or removed there\n",
            ] {
                assert!(out.contains(line), "{args:?} {line:?} in {out}");
            }
        }
        assert_eq!(read(&root.join("srv/data/keep")), "precious\n");
        assert!(!root.join("srv/data/evil").exists(), "written through the mount below /var");
        assert!(!var.join("notes").exists(), "/var not written through /etc");
        assert!(Command::new("umount").arg(root.join("etc")).status().unwrap().success());
        assert!(Command::new("umount").arg(&bound).status().unwrap().success());
        assert_eq!(fingerprint(&var), client_var, "the client's /var as it was");
    });
    assert_eq!(fingerprint(&root.join("srv")), image_srv, "the image's /srv was never written");
    assert_eq!(fingerprint(&root.join("var")), image_var, "the image's /var was never written");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn what_stands_in_run_for_the_report_or_provenance_is_never_opened_or_followed() {
    // Under a bound: a fifo opened for reading would wait for a writer for ever.
    let relayer = |root: &Path, args: &[&str]| {
        Command::new("timeout").arg("10").arg(BIN).arg("relayer").arg("--root").arg(root).args(args).output().unwrap()
    };
    let (_tmp, root) = test_image("relayer-run-files");
    std::fs::remove_file(root.join("diskless/networks/10.0.2.0_24")).unwrap();
    in_private_namespace(|| {
        boot(&root);
        let run = root.join("run/stateless");
        let (report, provenance) = (read(&run.join("report.json")), read(&run.join("provenance")));
        let fifo = |path: &Path| {
            std::fs::remove_file(path).unwrap();
            rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
        };
        let link = |path: &Path, to: &str| {
            std::fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink(to, path).unwrap();
        };
        let restore = |name: &str, text: &str| {
            std::fs::remove_file(run.join(name)).unwrap();
            std::fs::write(run.join(name), text).unwrap();
        };
        // A fifo would block, /dev/zero fill the memory, a host file be read as the client's.
        for (name, text) in [("report.json", &report), ("provenance", &provenance)] {
            let path = run.join(name);
            fifo(&path);
            let (code, _, err) = listed(&relayer(&root, &["--dry-run"]));
            assert_eq!(code, Some(2), "{err}");
            assert!(err.contains(&format!("/run/stateless/{name}: not a regular file: left unopened")), "{err}");
            for to in ["/dev/zero", "/proc/self/status"] {
                link(&path, to);
                let (code, _, err) = listed(&relayer(&root, &["--dry-run"]));
                assert_eq!(code, Some(2), "{name} -> {to}: {err}");
                let said =
                    format!("stateless: /run/stateless/{name}: a symlink leading out of /run/stateless: refused\n");
                assert_eq!(err, said);
            }
            restore(name, text);
        }
        assert!(text(&relayer(&root, &["--dry-run"])).ends_with(NOTHING));
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn what_the_boot_left_in_run_is_held_to_the_boots_rules_again() {
    let (_tmp, root) = test_image("relayer-untrusted");
    std::fs::remove_file(root.join("diskless/networks/10.0.2.0_24")).unwrap();
    let image = fingerprint(&root);
    in_private_namespace(|| {
        boot(&root);
        let report = read(&root.join("run/stateless/report.json"));
        type Edit = fn(&mut serde_json::Value);
        let refused: [(&str, Edit, &str); 6] = [
            ("dirs", |r| r["dirs"][0]["dir"] = "../../etc".into(), r#"dirs: "../../etc" has a ".." component"#),
            ("dirs", |r| r["dirs"][0]["dir"] = "proc".into(), "is under /proc"),
            (
                "hostname",
                |r| r["hostname"]["short"] = "lab3_12/../x".into(),
                "lab3_12/../x is not a valid RFC 1123 host name",
            ),
            ("address", |r| r["address"] = "224.0.0.1/24".into(), "224.0.0.1/24 is not a usable unicast address"),
            ("layer_root", |r| r["layer_root"] = "diskless".into(), "is not an absolute path"),
            (
                "old",
                |r| drop(r.as_object_mut().unwrap().remove("layer_root")),
                "does not name the layer root the boot used",
            ),
        ];
        for (what, edit, why) in refused {
            std::fs::write(root.join("run/stateless/report.json"), &report).unwrap();
            edit_report(&root, edit);
            let (code, out, err) = listed(&relayer(&root, &["--prune"]));
            assert_eq!((code, out.as_str()), (Some(2), ""), "{what}: {err}");
            assert!(err.contains(why), "{what}: {why:?} in {err}");
        }
        std::fs::write(root.join("run/stateless/report.json"), &report).unwrap();
        // Provenance lines that are not what the boot writes are skipped, said escaped.
        let provenance = root.join("run/stateless/provenance");
        let lines = "/etc/../outside\tbase\n/etc/passwd\t\x1b[31mevil\n/etc/hosts\tbase\tjunk\n";
        std::fs::write(&provenance, read(&provenance) + lines).unwrap();
        let (code, out, err) = listed(&relayer(&root, &["--prune"]));
        assert_eq!(code, Some(0), "{out}{err}");
        for line in [
            "skipped   /run/stateless/provenance: /etc/../outside\\x09base: not a plain relative path\n",
            "skipped   /run/stateless/provenance: /etc/hosts\\x09base\\x09junk: not a stamp\n",
            "skipped   /run/stateless/provenance: /etc/passwd: written by \\x1b[31mevil, no layer of this client\n",
        ] {
            assert!(out.contains(line), "{line:?} in {out}");
        }
        assert!(!out.contains('\x1b'), "{out}");
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(root.join("etc/passwd").exists() && root.join("etc/hosts").exists());
    });
    assert_eq!(fingerprint(&root), image, "the image was never written");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn any_name_round_trips_through_the_provenance() {
    let (_tmp, root) = test_image("relayer-c1");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&l.join("base/etc/c1-\u{85}-name"), "a layer's\n");
    in_private_namespace(|| {
        boot(&root);
        assert!(text(&relayer(&root, &["--dry-run"])).ends_with(&format!("\n{NOTHING}")));
        // The raw byte 0x85 is another name, the client's own.
        let raw = root.join(std::ffi::OsStr::from_bytes(b"etc/c1-\x85-name"));
        std::fs::write(&raw, "the client's\n").unwrap();
        assert!(text(&relayer(&root, &["--prune"])).ends_with(&format!("\n{NOTHING}")));
        assert_eq!(read(&raw), "the client's\n");
        assert_eq!(read(&root.join("etc/c1-\u{85}-name")), "a layer's\n");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_layer_shipping_stateless_conf_changes_nothing_for_relayer() {
    let (_tmp, root) = test_image("relayer-conf");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&l.join("base/etc/stateless.conf"), "stateless.layers=/elsewhere\nstateless.dirs=var\n");
    write(&root.join("elsewhere/base/etc/other"), "another tree\n");
    in_private_namespace(|| {
        boot(&root);
        assert!(read(&root.join("etc/stateless.conf")).contains("/elsewhere"), "the live /etc has the layer's");
        for args in [&["--dry-run"][..], &["--prune"]] {
            let out = text(&relayer(&root, args));
            assert!(out.contains("layers: base, ") && out.ends_with(NOTHING), "{args:?}: {out}");
        }
        assert!(!root.join("etc/other").exists() && root.join("etc/only-base").exists());
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn layers_are_read_from_the_image_not_from_what_the_client_can_change() {
    let (_tmp, root) = test_image("relayer-layers-in-etc");
    std::fs::remove_file(root.join("diskless/networks/10.0.2.0_24")).unwrap();
    std::fs::rename(root.join("diskless"), root.join("etc/l")).unwrap();
    write(&root.join("etc/stateless.conf"), "stateless.layers=/etc/l\n");
    in_private_namespace(|| {
        boot(&root);
        // The layer root is in the client's writable /etc: a user with write access there
        // would otherwise choose what relayer writes.
        write(&root.join("etc/l/base/etc/grown"), "the client's, in the layer tree\n");
        std::fs::write(root.join("etc/l/base/etc/only-base"), "changed in the live tree\n").unwrap();
        let out = text(&relayer(&root, &["--prune"]));
        assert!(out.ends_with(NOTHING), "{out}");
        assert!(!root.join("etc/grown").exists());
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn what_the_client_changed_since_a_layer_wrote_it_is_never_replaced_or_pruned() {
    let (_tmp, root) = test_image("relayer-edited");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("etc/issue"), "image issue\n");
    write(&l.join("base/etc/issue"), "layer issue\n");
    in_private_namespace(|| {
        boot(&root);
        let etc = root.join("etc");
        // The client edits three files layers wrote, in place, by a new file and by chmod.
        std::fs::write(etc.join("only-base"), "base, and the client's edit").unwrap();
        write(&etc.join("issue.new"), "layer issue, edited\n");
        std::fs::rename(etc.join("issue.new"), etc.join("issue")).unwrap();
        std::fs::set_permissions(etc.join("fstab"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::remove_file(l.join("base/etc/only-base")).unwrap();
        std::fs::remove_file(l.join("base/etc/issue")).unwrap();
        std::fs::remove_file(l.join("base/etc/only-lab")).ok();
        std::fs::remove_file(l.join("labs/lab3/etc/only-lab")).unwrap(); // stale, not edited
        write(&l.join("hosts/lab3-12/etc/fstab"), "# lab3-12, new\n");
        let why = ": changed on this client since base wrote it: left alone, also by --prune\n";
        let want = [
            "edited    /etc/fstab (hosts/lab3-12): mode, content; changed on this client since hosts/lab3-12 wrote it: left alone\n".to_owned(),
            format!("stale     /etc/only-base (base){why}"),
            format!("stale     /etc/issue (base){why}"),
            "stale     /etc/only-lab (labs/lab3): left alone (--prune takes it away)\n".to_owned(),
        ];
        let plain = text(&relayer(&root, &["--dry-run"]));
        for line in &want {
            assert!(plain.contains(line.as_str()), "{line:?} in {plain}");
        }
        let pruning: Vec<String> = want.iter().map(|l| l.replacen("stale    ", "edited   ", 1)).collect();
        let pruning = [&pruning[..3], &["pruned    /etc/only-lab (labs/lab3)\n".to_owned()]].concat();
        let dry = text(&relayer(&root, &["--dry-run", "--prune"]));
        let done = text(&relayer(&root, &["--prune"]));
        for line in &pruning {
            assert!(dry.contains(line.as_str()) && done.contains(line.as_str()), "{line:?} in {dry} and {done}");
        }
        assert_eq!(dry.lines().count(), 5, "{dry}");
        assert_eq!(done.replace("dry run (nothing written); ", ""), dry.replace("dry run (nothing written); ", ""));
        let json: serde_json::Value = serde_json::from_slice(&relayer(&root, &["--prune", "--json"]).stdout).unwrap();
        let edited: Vec<&str> = json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["what"] == "edited")
            .map(|c| c["path"].as_str().unwrap())
            .collect();
        assert_eq!(edited, ["/etc/fstab", "/etc/only-base", "/etc/issue"]);
        assert_eq!(read(&etc.join("only-base")), "base, and the client's edit");
        assert_eq!(read(&etc.join("issue")), "layer issue, edited\n");
        assert_eq!(read(&etc.join("fstab")), "# lab3-12\n");
        assert!(!etc.join("only-lab").exists());
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn what_the_client_made_or_changed_where_no_layer_wrote_is_never_replaced() {
    let (_tmp, root) = test_image("relayer-own");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("etc/issue.net"), "image issue.net\n");
    write(&root.join("etc/issue"), "image issue\n");
    let image_etc = fingerprint(&root.join("etc"));
    in_private_namespace(|| {
        boot(&root);
        let etc = root.join("etc");
        // The client makes one file and edits one of the image's; one more of the image's it
        // leaves as it is. Then a layer provides all three paths, for the first time.
        write(&etc.join("made-here"), "the client's own\n");
        std::fs::write(etc.join("issue.net"), "the client's issue.net\n").unwrap();
        for name in ["made-here", "issue.net", "issue"] {
            write(&l.join("labs/lab3/etc").join(name), "from the lab layer\n");
        }
        let want = [
            "edited    /etc/made-here (labs/lab3): content; made on this client, not by a layer: left alone\n",
            "edited    /etc/issue.net (labs/lab3): content; changed on this client from the image's, not by a layer: left alone\n",
            "changed   /etc/issue (labs/lab3): content\n",
        ];
        let dry = text(&relayer(&root, &["--dry-run"]));
        let done = text(&relayer(&root, &[]));
        for line in want {
            assert!(dry.contains(line) && done.contains(line), "{line:?} in {dry} and {done}");
        }
        assert_eq!(done.replace("dry run (nothing written); ", ""), dry.replace("dry run (nothing written); ", ""));
        assert_eq!(read(&etc.join("made-here")), "the client's own\n");
        assert_eq!(read(&etc.join("issue.net")), "the client's issue.net\n");
        assert_eq!(read(&etc.join("issue")), "from the lab layer\n", "the image's, as it was: the layer's now");
        // Once the client's own is removed, the layer's comes in.
        std::fs::remove_file(etc.join("made-here")).unwrap();
        assert!(text(&relayer(&root, &[])).contains("new       /etc/made-here (labs/lab3)\n"));
        assert_eq!(read(&etc.join("made-here")), "from the lab layer\n");
    });
    assert_eq!(fingerprint(&root.join("etc")), image_etc, "the image's /etc was never written");
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_prune_that_cannot_put_the_images_version_back_leaves_the_file_as_it_was() {
    let (_tmp, root) = test_image("relayer-restore-fails");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("etc/big"), &"the image's, large\n".repeat(100_000));
    write(&l.join("base/etc/big"), "the layer's, small\n");
    in_private_namespace(|| {
        boot(&root);
        let etc = root.join("etc");
        std::fs::remove_file(l.join("base/etc/big")).unwrap();
        // The tmpfs under /etc's overlay has no room for the image's version.
        let rw = root.join("run/stateless/rw/etc");
        let full = Command::new("mount").args(["-o", "remount,size=256k"]).arg(&rw).status().unwrap();
        assert!(full.success());
        let dry = text(&relayer(&root, &["--dry-run", "--prune"]));
        assert!(dry.contains("restored  /etc/big (base)\n"), "{dry}");
        let (code, done, err) = listed(&relayer(&root, &["--prune"]));
        assert_eq!(code, Some(1), "{done}{err}");
        assert!(
            done.contains("failed    /etc/big (base): left as it was, the image's version is not back: "),
            "{done}"
        );
        assert_eq!(read(&etc.join("big")), "the layer's, small\n", "never removed before the image's is in place");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_dir_a_layer_made_over_an_image_file_gives_the_file_back_when_pruned() {
    let (_tmp, root) = test_image("relayer-dir-over-file");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("etc/y"), "the image's file\n");
    write(&l.join("base/etc/y/inner"), "a layer's\n");
    in_private_namespace(|| {
        boot(&root);
        let etc = root.join("etc");
        assert_eq!(read(&etc.join("y/inner")), "a layer's\n");
        std::fs::remove_dir_all(l.join("base/etc/y")).unwrap();
        let dry = text(&relayer(&root, &["--dry-run", "--prune"]));
        let done = text(&relayer(&root, &["--prune"]));
        assert_eq!(done, dry.replace("dry run (nothing written); ", ""));
        assert!(done.contains("pruned    /etc/y/inner (base)\nrestored  /etc/y (base)\n"), "{done}");
        assert_eq!(read(&etc.join("y")), "the image's file\n");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn what_the_client_deleted_since_a_layer_wrote_it_stays_deleted() {
    let (_tmp, root) = test_image("relayer-deleted");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    write(&root.join("etc/issue"), "image issue\n");
    write(&l.join("base/etc/issue"), "layer issue\n");
    write(&l.join("base/etc/kept-by-layer"), "layer\n");
    write(&l.join("base/etc/d/a"), "layer\n");
    write(&l.join("base/etc/d/b"), "layer\n");
    write(&l.join("base/etc/layer-only"), "layer\n");
    write(&root.join("etc/cron-job"), "the image's\n");
    in_private_namespace(|| {
        boot(&root);
        let etc = root.join("etc");
        std::fs::remove_file(etc.join("issue")).unwrap();
        std::fs::remove_file(etc.join("kept-by-layer")).unwrap();
        std::fs::remove_dir_all(etc.join("d")).unwrap();
        std::fs::remove_file(etc.join("layer-only")).unwrap();
        std::fs::remove_file(etc.join("cron-job")).unwrap();
        std::fs::remove_file(l.join("base/etc/issue")).unwrap();
        std::fs::remove_file(l.join("base/etc/layer-only")).unwrap();
        write(&l.join("labs/lab3/etc/cron-job"), "the lab's\n");
        let dry = text(&relayer(&root, &["--prune", "--dry-run"]));
        let done = text(&relayer(&root, &["--prune"]));
        assert_eq!(done, dry.replace("dry run (nothing written); ", ""));
        for line in [
            "edited    /etc/kept-by-layer (base): deleted on this client since base wrote it: left alone\n",
            "edited    /etc/d (base): deleted on this client since base wrote it: left alone\n",
            "edited    /etc/d/a (base): inside /etc/d, which this client changed: left alone\n",
            "edited    /etc/d/b (base): inside /etc/d, which this client changed: left alone\n",
            "edited    /etc/cron-job (labs/lab3): deleted on this client from the image's, not by a layer: left alone\n",
            "edited    /etc/issue (base): deleted on this client since base wrote it: left alone, also by --prune\n",
            // Gone from the client and the image alike: what a prune leaves, and forgotten.
            "pruned    /etc/layer-only (base): already gone from the client\n",
        ] {
            assert!(done.contains(line), "{line:?} in {done}");
        }
        assert!(!etc.join("issue").exists(), "the image's version is not brought back over a deletion");
        assert!(!etc.join("kept-by-layer").exists() && !etc.join("d").exists() && !etc.join("cron-job").exists());
        let again = text(&relayer(&root, &["--prune"]));
        assert!(!again.contains("layer-only"), "{again}");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_provenance_that_cannot_be_written_comes_after_what_was_written() {
    let (_tmp, root) = test_image("relayer-full");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    in_private_namespace(|| {
        boot(&root);
        write(&l.join("hosts/lab3-12/etc/fstab"), "# lab3-12, new\n");
        // /run/stateless on a tmpfs with no room left.
        let dir = root.join("run/stateless");
        let (report, provenance) = (read(&dir.join("report.json")), read(&dir.join("provenance")));
        let tiny = Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(&dir).status().unwrap();
        assert!(tiny.success());
        std::fs::write(dir.join("report.json"), report).unwrap();
        std::fs::write(dir.join("provenance"), &provenance).unwrap();
        let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
        while std::io::Write::write_all(&mut filler, &[0; 4096]).is_ok() {}
        let (code, out, err) = listed(&relayer(&root, &[]));
        assert_eq!(code, Some(1), "{out}{err}");
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0], "changed   /etc/fstab (hosts/lab3-12): content");
        assert!(lines[1].starts_with("failed    /run/stateless/provenance: not brought up to date ("), "{out}");
        assert!(
            lines[1].contains("No space left on device")
                && lines[1].ends_with("the next run lists what was written above as edited"),
            "{out}"
        );
        assert_eq!(read(&root.join("etc/fstab")), "# lab3-12, new\n");
        assert_eq!(read(&dir.join("provenance")), provenance, "the old provenance whole");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_layer_root_leading_out_of_the_image_is_named() {
    let (tmp, root) = test_image("relayer-root-out");
    std::fs::remove_file(root.join("diskless/networks/10.0.2.0_24")).unwrap();
    in_private_namespace(|| {
        boot(&root);
        std::fs::create_dir_all(tmp.0.join("elsewhere/base")).unwrap();
        std::fs::rename(root.join("diskless"), root.join("diskless.old")).unwrap();
        std::os::unix::fs::symlink(tmp.0.join("elsewhere"), root.join("diskless")).unwrap();
        let (code, out, err) = listed(&relayer(&root, &["--dry-run"]));
        assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
        assert_eq!(err, "stateless: layer root /diskless: a symlink leads out of the image\n");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn a_dry_run_says_what_the_real_run_does_where_kinds_differ() {
    let (_tmp, root) = test_image("relayer-kinds");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    in_private_namespace(|| {
        boot(&root);
        // The client has a dir where a layer now has a file, and a file of its own where a
        // layer now has a dir: both stay.
        write(&root.join("etc/was-dir/kept"), "the client's\n");
        write(&l.join("base/etc/was-dir"), "a layer's file\n");
        write(&root.join("etc/was-file"), "the client's\n");
        write(&l.join("base/etc/was-file/inner"), "a layer's\n");
        // A file a layer wrote becomes a dir, its entries from two layers: once as the client
        // has it, once after the client changed it.
        std::fs::remove_file(l.join("labs/lab3/etc/only-lab")).unwrap();
        write(&l.join("base/etc/only-lab/x"), "base's\n");
        write(&l.join("hosts/lab3-12/etc/only-lab/y"), "the host's\n");
        std::fs::remove_file(l.join("base/etc/only-base")).unwrap();
        std::fs::write(root.join("etc/only-base"), "base, and the client's edit").unwrap();
        write(&l.join("base/etc/only-base/x"), "base's\n");
        write(&l.join("hosts/lab3-12/etc/only-base/y"), "the host's\n");
        let dry = relayer(&root, &["--dry-run"]);
        let done = relayer(&root, &[]);
        let (code, dry, _) = listed(&dry);
        assert_eq!(code, Some(1), "{dry}");
        let (code, done, err) = listed(&done);
        assert_eq!(code, Some(1), "{done}{err}");
        assert_eq!(done, dry.replace("dry run (nothing written); ", ""));
        for line in [
            "failed    /etc/was-dir (base): a dir on this client, no dir in the layer: a dir is never replaced (remove it to take the layer's)\n",
            "edited    /etc/was-file (base): kind; made on this client, not by a layer: left alone\n",
            "edited    /etc/was-file/inner (base): inside /etc/was-file, which this client changed: left alone\n",
            "new       /etc/only-lab/x (base)\n",
            "changed   /etc/only-lab (hosts/lab3-12): kind\n",
            "new       /etc/only-lab/y (hosts/lab3-12)\n",
            "edited    /etc/only-base/x (base): inside /etc/only-base, which this client changed: left alone\n",
            "edited    /etc/only-base (hosts/lab3-12): kind; changed on this client since base wrote it: left alone\n",
            "edited    /etc/only-base/y (hosts/lab3-12): inside /etc/only-base, which this client changed: left alone\n",
        ] {
            assert!(done.contains(line), "{line:?} in {done}");
        }
        assert_eq!(done.lines().count(), 10, "{done}");
        assert_eq!(read(&root.join("etc/only-lab/x")), "base's\n");
        assert_eq!(read(&root.join("etc/only-lab/y")), "the host's\n");
        assert_eq!(read(&root.join("etc/only-base")), "base, and the client's edit");
        assert_eq!(read(&root.join("etc/was-dir/kept")), "the client's\n");
        assert_eq!(read(&root.join("etc/was-file")), "the client's\n");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn in_copy_mode_what_a_layer_wrote_is_pruned_and_an_edit_kept() {
    let (_tmp, root) = test_image("relayer-copy-mode");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    in_private_namespace(|| {
        boot_with(&root, "stateless.mode=copy");
        assert_eq!(fstype_of(&root.join("etc")).as_deref(), Some("tmpfs"));
        std::fs::write(root.join("etc/only-lab"), "lab, and the client's edit").unwrap();
        std::fs::remove_file(l.join("labs/lab3/etc/only-lab")).unwrap();
        std::fs::remove_file(l.join("base/etc/only-base")).unwrap();
        let done = text(&relayer(&root, &["--prune"]));
        let want = [
            "edited    /etc/only-lab (labs/lab3): changed on this client since labs/lab3 wrote it: left alone, also by --prune",
            "pruned    /etc/only-base (base)",
        ];
        assert_eq!(done.lines().skip(1).collect::<Vec<_>>(), want, "{done}");
        assert!(!root.join("etc/only-base").exists());
        assert_eq!(read(&root.join("etc/only-lab")), "lab, and the client's edit");
    });
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn relayer_on_an_image_nothing_is_mounted_on_writes_nothing() {
    let (_tmp, root) = test_image("relayer-server");
    let l = root.join("diskless");
    std::fs::remove_file(l.join("networks/10.0.2.0_24")).unwrap();
    // A boot's report and provenance left in an image on the server, and a layer changed since.
    let dir = root.join("run/stateless");
    let (report, provenance) = in_private_namespace(|| {
        boot(&root);
        (read(&dir.join("report.json")), read(&dir.join("provenance")))
    });
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.json"), report).unwrap();
    let provenance = provenance + "/etc/x\tbase\tjunk\n";
    std::fs::write(dir.join("provenance"), &provenance).unwrap();
    std::fs::remove_file(l.join("base/etc/only-base")).unwrap();
    write(&l.join("base/etc/new-file"), "new\n");
    write(&root.join("etc/only-base"), "the image's own\n");
    let image = fingerprint(&root);
    let (code, out, err) = listed(&relayer(&root, &["--prune"]));
    assert_eq!(code, Some(1), "{out}{err}");
    let never = "is not the overlay or tmpfs the boot made there (unmounted or replaced since, or relayer runs in another mount namespace than the boot's?): nothing written or removed there";
    for line in [
        format!("failed    /etc/new-file (base): /etc {never}\n"),
        format!("failed    /etc/only-base (base): /etc {never}\n"),
        "failed    /run/stateless/provenance: not brought up to date (/run is not a tmpfs)\n".to_owned(),
    ] {
        assert!(out.contains(&line), "{line:?} in {out}");
    }
    assert!(!out.contains("pruned") && !out.contains("restored") && !out.contains("new  "), "{out}");
    assert_eq!(fingerprint(&root), image, "the image was never written");
}
