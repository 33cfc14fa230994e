//! `stateless relayer`: the layers applied again to a client that `stateless apply` booted in a
//! private mount namespace; only what differs is written, stale paths go only with `--prune`,
//! back to the image's version; the image itself is never written.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

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
            provenance.contains("/etc/new-file\tlabs/lab3\n") && provenance.contains("/etc/motd\tbase\n"),
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
}
