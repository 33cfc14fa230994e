//! `stateless check`: the problems of a layer tree found before it is served, and what each host
//! would receive; the tree is never changed.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn check(root: &Path, args: &[&str], as_nobody: bool) -> Output {
    let mut command = Command::new(BIN);
    command.arg("check").arg(root).args(args);
    if as_nobody {
        command.uid(65534).gid(65534);
    }
    command.output().unwrap()
}

fn parsed(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// `(severity, at)` of every finding.
fn findings(json: &serde_json::Value) -> BTreeSet<(String, String)> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["severity"].as_str().unwrap().to_owned(), f["at"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
#[ignore = "needs root: owners, device nodes (tests/run runs it)"]
fn finds_every_kind_of_problem_and_changes_nothing() {
    let (tmp, root) = test_image("check");
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let l = root.join("diskless");
    // Names no client can match, a layer dir that is a file, a symlinked layer.
    for name in
        ["hosts/lab3-12.example.edu", "labs/lab3-x", "networks/10.0.2.5_24", "networks/10.0.2.0_33", "hosts/224.0.0.1"]
    {
        write(&l.join(name).join("etc/x"), "never\n");
    }
    write(&l.join("hosts/10.0.2.16"), "a file, not a layer dir\n");
    write(&l.join("notes.txt"), "not a layer\n");
    symlink("lab3-12", l.join("hosts/10.0.2.17")).unwrap();
    // A file where the image has a directory; one where an earlier layer has one.
    write(&l.join("hosts/lab3-12/etc/conf.d"), "a file\n");
    write(&l.join("base/etc/ssh/sshd_config"), "base\n");
    write(&l.join("labs/lab3/etc/ssh"), "a file over base's dir\n");
    // Unreadable for everyone but root; anyone may write; a symlink into the layer tree.
    write(&l.join("base/etc/secret"), "root only\n");
    std::fs::set_permissions(l.join("base/etc/secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&l.join("base/etc/open"), "anyone\n");
    std::fs::set_permissions(l.join("base/etc/open"), std::fs::Permissions::from_mode(0o666)).unwrap();
    symlink("/diskless/base/etc/motd", l.join("labs/lab3/etc/motd-link")).unwrap();
    // A symlink where the image has a dir; a layer name that needs escaping.
    symlink("/etc/ssh", l.join("base/etc/conf.d")).unwrap();
    std::fs::create_dir_all(l.join("hosts/pc\n")).unwrap();
    let before = fingerprint(&root);

    let out = check(&root, &["--json", "--host", "pc1,10.0.2.40", "--host", "lab3-12,10.0.2.15/24"], false);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let json = parsed(&out);
    let e = |at: &str| ("error".to_owned(), at.to_owned());
    let w = |at: &str| ("warning".to_owned(), at.to_owned());
    let want: BTreeSet<_> = [
        e("base/usr"),
        e("base/etc/conf.d"),
        e("hosts/pc\\x0a"),
        e("hosts/10.0.2.16"),
        e("hosts/224.0.0.1"),
        e("hosts/lab3-12.example.edu"),
        e("hosts/lab3-12/etc/conf.d"),
        e("labs/lab3-x"),
        e("labs/lab3/etc/ssh"),
        e("networks/10.0.2.0_24"),
        e("networks/10.0.2.0_33"),
        e("networks/10.0.2.5_24"),
        w("notes.txt"),
        w("base/etc/open"),
        w("base/etc/rel-link"),
        w("base/etc/suid"),
        w("labs/lab3/etc/motd-link"),
    ]
    .into();
    assert_eq!(findings(&json), want, "{json:#}");
    let problem = |at: &str| -> Vec<String> {
        let list = json["findings"].as_array().unwrap().iter().filter(|f| f["at"] == at);
        list.map(|f| f["problem"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        problem("base/etc/suid"),
        ["owner 1234 is no user of the image's /etc/passwd", "setuid or setgid (mode 4755)"]
    );
    assert!(problem("hosts/lab3-12.example.edu")[0].ends_with("the part before the first '.': lab3-12"));
    assert!(problem("networks/10.0.2.5_24")[0].ends_with("10.0.2.0_24 is"));
    assert!(problem("labs/lab3-x")[0].ends_with("labs/lab3"));
    assert_eq!(problem("hosts/10.0.2.16"), ["not a directory: never applied"]);
    assert_eq!(problem("networks/10.0.2.0_24"), ["a symlink points out of the layer root: never applied"]);
    assert_eq!(problem("hosts/lab3-12/etc/conf.d"), ["the image has a directory at /etc/conf.d: not copied"]);
    assert_eq!(
        problem("labs/lab3/etc/ssh"),
        [
            "base has a directory there: not copied for lab3-12 10.0.2.15/24",
            "base has a directory there: not copied for lab3-12 10.0.2.17/24"
        ]
    );
    assert_eq!(problem("base/etc/rel-link"), ["climbs above / (../../../../outside)"]);

    // The hosts: lab3-12 as given (its address layer hosts/10.0.2.15), lab3-12 at 10.0.2.17 (a
    // symlink to its name layer), pc1 given.
    let hosts = json["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{hosts:#?}");
    let host = |addr: &str| hosts.iter().find(|h| h["address"] == addr).unwrap_or_else(|| panic!("{addr}: {hosts:#?}"));
    let lab = host("10.0.2.15");
    assert_eq!(lab["name"], "lab3-12");
    assert_eq!((lab["address"].as_str(), lab["prefix"].as_u64()), (Some("10.0.2.15"), Some(24)));
    let layers: Vec<&str> = lab["layers"].as_array().unwrap().iter().map(|l| l[0].as_str().unwrap()).collect();
    assert_eq!(layers, ["base", "networks/10.0.2.255", "labs/lab3", "hosts/lab3-12", "hosts/10.0.2.15"]);
    assert_eq!(lab["files"]["/etc/fstab"], "hosts/lab3-12");
    assert_eq!(lab["files"]["/etc/motd"], "labs/lab3");
    assert_eq!(lab["files"]["/etc/stateless-level"], "hosts/10.0.2.15");
    assert_eq!(lab["files"]["/etc/ssh/sshd_config"], "base");
    assert!(lab["files"].get("/etc/ssh").is_none() && lab["files"].get("/usr/bin/evil").is_none());
    assert!(lab["files"].get("/etc/conf.d").is_none(), "not copied, so not received");
    assert_eq!(host("10.0.2.17")["name"], "lab3-12");
    assert_eq!(host("10.0.2.17")["files"]["/etc/fstab"], "hosts/10.0.2.17");
    assert_eq!(host("10.0.2.17")["files"]["/etc/stateless-level"], "hosts/10.0.2.17");
    let pc1 = host("10.0.2.40");
    assert_eq!(pc1["prefix"], 24, "from networks/10.0.2.255");
    assert_eq!(pc1["files"]["/etc/stateless-level"], "networks/10.0.2.255");

    // As the user a root-squashing export maps clients to: the root-only file cannot be read.
    let out = check(&root, &["--json"], true);
    assert_eq!(out.status.code(), Some(1));
    let nobody = findings(&parsed(&out));
    assert!(nobody.contains(&e("base/etc/secret")), "{nobody:?}");

    // The readable list names every problem and the host's own files.
    let out = check(&root, &[], false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("errors:\n  base/etc/conf.d: the image has a directory at /etc/conf.d: not copied\n  base/usr: outside the writable dirs (etc, var): never copied\n"), "{text}");
    assert!(text.contains("  lab3-12 10.0.2.17/24: base ("), "{text}");
    assert!(text.contains("    /etc/fstab  from hosts/10.0.2.17\n"), "{text}");
    assert!(text.ends_with("12 errors, 6 warnings\n"), "{text}");
    assert_eq!(fingerprint(&root), before, "check wrote to the image");
}

#[test]
fn a_clean_tree_passes() {
    let tmp = TempDir::new("check-clean");
    let root = &tmp.0;
    write(
        &root.join("etc/passwd"),
        &format!("root:x:0:0::/root:/bin/sh\nme:x:{}:0::/:/bin/sh\n", rustix::process::geteuid().as_raw()),
    );
    write(&root.join("etc/group"), &format!("root:x:0:\nme:x:{}:\n", rustix::process::getegid().as_raw()));
    write(&root.join("srv/layers/base/etc/motd"), "hello\n");
    write(&root.join("srv/layers/hosts/pc7/etc/hostname"), "pc7\n");
    symlink("/usr/share/zoneinfo/UTC", root.join("srv/layers/base/etc/localtime")).unwrap();
    let out = check(root, &["--cmdline", "stateless.layers=/srv/layers stateless.dirs=etc"], false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(": layer root /srv/layers, writable dirs etc\nhosts:\n  pc7: base (2), hosts/pc7 (1)\n"),
        "{text}"
    );
    assert!(text.ends_with("0 errors, 0 warnings\n"), "{text}");
    // No layer root at all is an error: the clients would get nothing.
    let out = check(root, &[], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("  /diskless: no layer root here"));
    // Usage errors are 2.
    assert_eq!(check(root, &["--host", "a_b"], false).status.code(), Some(2));
    assert_eq!(Command::new(BIN).arg("check").output().unwrap().status.code(), Some(2));
}

/// The problems found at `at`.
fn problems(json: &serde_json::Value, at: &str) -> Vec<String> {
    let list = json["findings"].as_array().unwrap().iter().filter(|f| f["at"] == at);
    list.map(|f| format!("{}: {}", f["severity"].as_str().unwrap(), f["problem"].as_str().unwrap())).collect()
}

/// An image with a passwd and a group naming the current user, and stateless.conf holding `conf`.
fn small_image(tmp: &TempDir, conf: &str) -> std::path::PathBuf {
    let root = tmp.0.join("image");
    let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
    write(&root.join("etc/passwd"), &format!("root:x:0:0::/root:/bin/sh\nme:x:{uid}:0::/:/bin/sh\n"));
    write(&root.join("etc/group"), &format!("root:x:0:\nme:x:{gid}:\n"));
    write(&root.join("etc/stateless.conf"), conf);
    root
}

#[test]
fn a_layers_stateless_conf_is_named_as_never_read_by_the_boot() {
    let tmp = TempDir::new("check-conf");
    let conf = "stateless.dirs=etc\n";
    let root = small_image(&tmp, conf);
    let l = root.join("diskless");
    write(&l.join("base/etc/stateless.conf"), conf);
    write(&l.join("hosts/pc1/etc/stateless.conf"), "stateless.dirs=etc\nstateless.layers=/srv/other\n");
    let out = check(&root, &["--json"], false);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let json = parsed(&out);
    let never = "never read by the boot, which reads the image's /etc/stateless.conf before any layer";
    assert_eq!(problems(&json, "base/etc/stateless.conf"), [format!("warning: {never} (the same as the image's)")]);
    assert_eq!(problems(&json, "hosts/pc1/etc/stateless.conf"), [format!("error: {never}: its options do not apply")]);
    // It is copied all the same: the client's /etc holds it.
    assert_eq!(json["hosts"][0]["files"]["/etc/stateless.conf"], "hosts/pc1", "{json:#}");
}

#[test]
fn a_dir_over_an_earlier_layers_file_takes_its_place() {
    let tmp = TempDir::new("check-dir-over-file");
    let root = small_image(&tmp, "");
    let l = root.join("diskless");
    write(&l.join("base/etc/motd"), "a file\n");
    write(&l.join("hosts/pc1/etc/motd/part"), "a dir now\n");
    let json = parsed(&check(&root, &["--json"], false));
    let files = &json["hosts"][0]["files"];
    assert_eq!(files["/etc/motd/part"], "hosts/pc1");
    assert!(files.get("/etc/motd").is_none(), "the client has a dir there: {files:#}");
}

/// Sets the extended attribute `name` of `path` (not followed).
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let set = rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty());
    require(set.is_ok(), &format!("{name} on the temp dir's filesystem: {set:?}"));
}

#[test]
#[ignore = "needs root: a device node, trusted.* attributes, file capabilities, apply in a mount namespace"]
fn what_apply_refuses_is_an_error_and_file_capabilities_a_warning() {
    let (_tmp, root) = test_image("check-refused");
    let l = root.join("diskless/base/etc");
    // A whiteout; dirs marked opaque and redirected, as only overlayfs itself may; a file that
    // may set any uid (struct vfs_cap_data, revision 2, effective, permitted CAP_SETUID).
    let c = std::ffi::CString::new(l.join("whiteout").as_os_str().as_encoded_bytes()).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), rustix::fs::FileType::CharacterDevice, 0o600.into(), 0).unwrap();
    write(&l.join("opaque/x"), "x\n");
    set_xattr(&l.join("opaque"), "trusted.overlay.opaque", b"y");
    write(&l.join("redirect/x"), "x\n");
    set_xattr(&l.join("redirect"), "user.overlay.redirect", b"/etc/conf.d");
    write(&l.join("su"), "\x7fELF");
    let cap: [u8; 20] = [1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    set_xattr(&l.join("su"), "security.capability", &cap);
    let before = fingerprint(&root);

    let args = ["--json", "--cmdline", "stateless.dirs=etc", "--host", "lab3-12,10.0.2.15/24"];
    let out = check(&root, &args, false);
    let json = parsed(&out);
    let refused = "a whiteout (a 0:0 character device), which would delete the image's entry: not copied";
    assert_eq!(problems(&json, "base/etc/whiteout"), [format!("error: {refused}")]);
    let own = "overlayfs's own attribute, which would hide or redirect the image's entries: not copied";
    let opaque = format!("error: extended attribute trusted.overlay.opaque: {own}");
    assert_eq!(problems(&json, "base/etc/opaque"), [opaque]);
    let redirect = format!("error: extended attribute user.overlay.redirect: {own}");
    assert_eq!(problems(&json, "base/etc/redirect"), [redirect]);
    assert_eq!(problems(&json, "base/etc/su"), ["warning: file capabilities (cap_setuid)"]);
    let files = &json["hosts"][0]["files"];
    assert!(files.get("/etc/whiteout").is_none() && files["/etc/su"] == "base", "{files:#}");
    assert_eq!(files["/etc/opaque/x"], "base", "the dir is copied, without the attribute");

    // Everything apply fails on is an error of check, at the same path.
    let errors: BTreeSet<String> =
        findings(&json).into_iter().filter(|(s, _)| s == "error").map(|(_, at)| at).collect();
    let failed = in_namespace(&root, &["--cmdline", "stateless.dirs=etc", "--ip", "10.0.2.15/24"], |out| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let failed: BTreeSet<String> = err
            .lines()
            .filter_map(|line| line.split_once("layer base: ")?.1.split_once(' ')?.1.split_once(": "))
            .filter(|(path, _)| path.starts_with("etc/")) // not the entries refused outside etc, the summary
            .map(|(path, _)| format!("base/{path}"))
            .collect();
        assert!(failed.contains("base/etc/whiteout") && failed.contains("base/etc/opaque"), "{err}");
        failed
    });
    assert!(failed.is_subset(&errors), "apply failed on {failed:?}, check found {errors:?}");
    // In copy mode nothing goes into an upper dir: the whiteout is a device like any other.
    let out = check(&root, &["--json", "--cmdline", "stateless.dirs=etc stateless.mode=copy"], false);
    assert!(problems(&parsed(&out), "base/etc/whiteout").is_empty());
    assert_eq!(fingerprint(&root), before, "check wrote to the image");
}

#[test]
fn what_it_shows_from_the_configuration_is_escaped() {
    let tmp = TempDir::new("check-escape");
    let root = small_image(&tmp, "stateless.layers=/srv/la\x1b[2Jyers\u{202e}\nstateless.\x1b]0;x\x07=1\n");
    let out = check(&root, &[], false);
    let text = String::from_utf8(out.stdout).unwrap();
    let layers = "/srv/la\\x1b[2Jyers\\xe2\\x80\\xae";
    assert!(text.starts_with(&format!("stateless check {}: layer root {layers}, ", root.display())), "{text}");
    assert!(text.contains(&format!("\n  {layers}: no layer root here")), "{text}");
    let json = parsed(&check(&root, &["--json"], false));
    assert_eq!(json["layer_root"], layers);
    assert!(findings(&json).contains(&("warning".into(), "stateless.\\x1b]0;x\\x07".into())), "{json:#}");
}

#[test]
fn a_layer_root_leading_out_of_the_image_is_named() {
    let tmp = TempDir::new("check-out");
    let root = small_image(&tmp, "");
    write(&tmp.0.join("elsewhere/base/etc/motd"), "not in the image\n");
    symlink(tmp.0.join("elsewhere"), root.join("diskless")).unwrap();
    let text = String::from_utf8(check(&root, &[], false).stdout).unwrap();
    let said = "  /diskless: layer root /diskless: a symlink leads out of the image: the clients get no layers\n";
    assert!(text.contains(said), "{text}");
}

#[test]
fn a_layer_root_in_a_writable_dir_is_named() {
    let tmp = TempDir::new("check-layers-in-etc");
    let root = small_image(&tmp, "stateless.layers=/etc/l\n");
    write(&root.join("etc/l/hosts/pc1/etc/motd"), "pc1's\n");
    let json = parsed(&check(&root, &["--json"], false));
    let said = "warning: the layer root and the writable dir /etc overlap: every client gets the whole layer tree (every host's files) in it, writable";
    assert_eq!(problems(&json, "/etc/l"), [said]);
    let clean = small_image(&TempDir::new("check-layers-apart"), "");
    write(&clean.join("diskless/hosts/pc1/etc/motd"), "pc1's\n");
    assert!(problems(&parsed(&check(&clean, &["--json"], false)), "/diskless").is_empty());
}

/// Peak RSS in KB and what `stateless check ARGS` printed.
fn measured(root: &Path, args: &[&str]) -> (u64, Vec<u8>) {
    require(Path::new("/usr/bin/time").exists(), "/usr/bin/time (GNU time)");
    let rss = root.with_extension("rss");
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(BIN)
        .arg("check")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    (read(&rss).trim().parse().unwrap(), out.stdout)
}

#[test]
fn memory_holds_the_tree_and_one_host() {
    let tmp = TempDir::new("check-scale");
    let root = small_image(&tmp, "");
    let l = root.join("diskless");
    for d in 0..20 {
        for f in 0..100 {
            write(&l.join(format!("base/etc/d{d:02}/f{f:03}.conf")), "x\n");
        }
    }
    for h in 0..300 {
        write(&l.join(format!("hosts/pc{h:03}/etc/hostname")), "pc\n");
    }
    // Every host's 2,000 files from base held at once took 60 MB; one at a time, a few.
    let (rss, text) = measured(&root, &[]);
    assert!(rss < 30_000, "{rss} KB");
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("\n  pc299: base (2020), hosts/pc299 (1)\n    /etc/hostname  from hosts/pc299\n"), "{text}");
    let (rss, json) = measured(&root, &["--json"]);
    assert!(rss < 30_000, "{rss} KB");
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let hosts = json["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 300);
    assert!(hosts.iter().all(|h| h["files"].as_object().unwrap().len() == 2001), "{:#}", hosts[0]);
}

#[test]
fn twenty_thousand_host_dirs_are_matched_each_to_its_host() {
    let tmp = TempDir::new("check-matching");
    let root = small_image(&tmp, "");
    let l = root.join("diskless");
    write(&l.join("networks/10.0.0.0_8/etc/resolv.conf"), "nameserver 10.0.0.53\n");
    for h in 0..10_000 {
        write(&l.join(format!("hosts/pc{h:05}/etc/hostname")), "pc\n");
        symlink(format!("pc{h:05}"), l.join(format!("hosts/10.{}.{}.{}", h / 250, h % 250, 1 + h % 3))).unwrap();
    }
    // Each address is its name's host, and every host takes the one network layer. How long
    // the matching takes is measured by benches/check, not here.
    let out = check(&root, &[], false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\n  pc09999 10.39.249.1/8: networks/10.0.0.0_8 (1), hosts/pc09999 (1), hosts/10.39.249.1 (1)\n"),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("  pc")).count(), 10_000, "each address is its name's host");
}

#[test]
fn a_fifo_at_the_images_stateless_conf_is_left_unopened() {
    let tmp = TempDir::new("check-fifo-conf");
    let root = small_image(&tmp, "");
    std::fs::remove_file(root.join("etc/stateless.conf")).unwrap();
    let fifo = root.join("etc/stateless.conf");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    write(&root.join("diskless/base/etc/motd"), "hi\n");
    // An open for reading would block here (or start a device): timeout says so with 124.
    let out = Command::new("timeout").arg("20").arg(BIN).arg("check").arg(&root).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let refused = "read /etc/stateless.conf: not a regular file: left unopened; its options are not used";
    assert!(text.lines().any(|l| l.ends_with(refused)), "{text}");
}

/// Fails unless `stateless image build` can make `format` here.
fn require_image_tool(format: &str) {
    let (tool, package) =
        if format == "erofs" { ("mkfs.erofs", "erofs-utils") } else { ("mksquashfs", "squashfs-tools") };
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
    require(found.status.success(), &format!("{tool} ({package}; qemu/lab build installs it)"));
}

/// `stateless image build ROOT -o OUTPUT --format FORMAT`, which must succeed.
fn build_image(root: &Path, output: &Path, format: &str) {
    let mut build = Command::new(BIN);
    build.arg("image").arg("build").arg(root).arg("-o").arg(output).args(["--format", format]);
    let built = build.output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
}

/// The squashfs and EROFS mounts of this process's mount namespace.
fn image_mounts() -> Vec<String> {
    let info = read(Path::new("/proc/self/mountinfo"));
    info.lines().filter(|l| l.contains(" - squashfs ") || l.contains(" - erofs ")).map(str::to_owned).collect()
}

/// What `losetup -j FILE` lists: the loop devices `file` is attached to.
fn loops_on(file: &Path) -> String {
    let out = Command::new("losetup").arg("-j").arg(file).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// An image file of a tree, its layer tree beside it as publish leaves it (`current`, a
/// symlink to it, and `diskless/`), checked: the findings and hosts of the same tree checked as
/// a directory with its layer tree inside; its stateless.conf and passwd are read; nothing
/// stays mounted or attached, nothing on the server is written.
fn an_image_file_is_checked_as_its_tree(format: &str) {
    require_image_tool(format);
    let (tmp, root) = test_image(&format!("check-{format}"));
    write(&root.join("etc/stateless.conf"), "stateless.dirs=etc,var/lib\n");
    write(&root.join("diskless/hosts/lab3-12/etc/conf.d"), "a file where the image has a dir\n");
    let srv = tmp.0.join("srv");
    std::fs::create_dir(&srv).unwrap();
    let file = srv.join(format!("debian13-1.{format}"));
    build_image(&root, &file, format);
    assert!(Command::new("cp").arg("-a").arg(root.join("diskless")).arg(&srv).status().unwrap().success());
    symlink(file.file_name().unwrap(), srv.join("current")).unwrap();
    let (before, mounts) = (fingerprint(&srv), image_mounts());
    let args = ["--host", "pc7,10.0.2.40/24", "--json"];
    let as_tree = parsed(&check(&root, &args, false));
    let out = check(&srv.join("current"), &args, false);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let as_image = parsed(&out);
    for key in ["dirs", "findings", "hosts"] {
        assert_eq!(as_image[key], as_tree[key], "{key}: {as_image:#}");
    }
    assert_eq!(as_image["dirs"], serde_json::json!(["etc", "var/lib"]));
    assert_eq!(
        problems(&as_image, "hosts/lab3-12/etc/conf.d"),
        ["error: the image has a directory at /etc/conf.d: not copied"]
    );
    assert!(problems(&as_image, "base/etc/suid")
        .contains(&"warning: owner 1234 is no user of the image's /etc/passwd".into()));
    let shown = |path: &Path| path.to_str().unwrap().to_owned();
    assert_eq!(as_image["image"], shown(&srv.join("current")));
    assert_eq!(as_image["file"], serde_json::json!({"format": format, "target": shown(&file)}));
    assert_eq!(as_image["layer_root"], shown(&srv.join("diskless")));
    // The clients' own command line, naming the image on the export, leads to the same layer root.
    for cmdline in
        ["root=live:nfs://192.0.2.1/srv/images/current", "nfsroot=192.0.2.1:/srv stateless.image=images/current"]
    {
        let json = parsed(&check(&srv.join("current"), &["--cmdline", cmdline, "--json"], false));
        assert_eq!(json["layer_root"], shown(&srv.join("diskless")), "{cmdline}");
    }
    let text = String::from_utf8(check(&srv.join("current"), &[], false).stdout).unwrap();
    let first = format!(
        "stateless check {}/current ({format} image, at {}): layer root {}/diskless, writable dirs etc, var/lib\n",
        srv.display(),
        file.display(),
        srv.display()
    );
    assert!(text.starts_with(&first), "{text}");
    // stateless.layers= names one in the image, which has none: an image is built without /diskless.
    let inside = parsed(&check(&file, &["--cmdline", "stateless.layers=/diskless", "--json"], false));
    assert_eq!(inside["file"]["target"], serde_json::Value::Null);
    assert_eq!(inside["layer_root"], "/diskless");
    assert_eq!(problems(&inside, "/diskless"), ["error: no layer root here: the clients get no layers"]);
    assert_eq!(image_mounts(), mounts, "a mount of the check's is left");
    assert_eq!(loops_on(&file), "", "a loop device is left on the image");
    assert_eq!(fingerprint(&srv), before, "check wrote to the server");
}

#[test]
#[ignore = "needs root: mounts a squashfs image for the check, owners, device nodes"]
fn a_squashfs_image_is_checked_as_its_tree() {
    an_image_file_is_checked_as_its_tree("squashfs");
}

#[test]
#[ignore = "needs root: mounts an EROFS image for the check, owners, device nodes"]
fn an_erofs_image_is_checked_as_its_tree() {
    an_image_file_is_checked_as_its_tree("erofs");
}

#[test]
#[ignore = "needs root: mounts the images it damages, checks as nobody"]
fn a_damaged_image_is_an_error_and_one_without_root_refused() {
    require_image_tool("squashfs");
    require_image_tool("erofs");
    let tmp = TempDir::new("check-damaged");
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = small_image(&tmp, "");
    let (sqfs, erofs) = (tmp.0.join("cut.sqfs"), tmp.0.join("zeroed.erofs"));
    build_image(&root, &sqfs, "squashfs");
    build_image(&root, &erofs, "erofs");
    // Without root it is not mounted: a usage error, before anything is attached.
    let out = check(&sqfs, &[], true);
    assert_eq!(out.status.code(), Some(2));
    let said = format!("{}: checking an image file needs root, to mount it", sqfs.display());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&said), "{out:?}");
    // squashfs cut after its superblock; EROFS's superblock zeroed after its magic.
    std::fs::OpenOptions::new().write(true).open(&sqfs).unwrap().set_len(200).unwrap();
    let mut bytes = std::fs::read(&erofs).unwrap();
    bytes[1028..1128].fill(0);
    std::fs::write(&erofs, bytes).unwrap();
    for (file, fstype) in [(&sqfs, "squashfs"), (&erofs, "erofs")] {
        let out = check(file, &[], false);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let said = format!("stateless: {}: not mountable as {fstype} (", file.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(&said) && stderr.ends_with("): a damaged image?\n"), "{stderr}");
        assert_eq!(loops_on(file), "", "a loop device is left on the image");
    }
}

#[test]
fn a_root_that_is_neither_a_dir_nor_an_image_is_refused() {
    let tmp = TempDir::new("check-no-image");
    let text = tmp.0.join("debian13.sqfs");
    write(&text, "hsq: not quite squashfs's magic\n");
    let fifo = tmp.0.join("fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    for root in [&text, &fifo] {
        // An open of the fifo for reading would block: timeout says so with 124.
        let out = Command::new("timeout").arg("20").arg(BIN).arg("check").arg(root).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let said = format!("stateless: {}: neither a directory nor a squashfs or EROFS image file\n", root.display());
        assert_eq!(String::from_utf8_lossy(&out.stderr), said);
    }
}
