//! What the tools print, fed hostile bytes (ESC, C1's CSI, DEL, a bidi override) in the
//! command line, /etc/stateless.conf, layer file names and a report: every one of them shown
//! escaped, none reaching the terminal raw. And the files they write for the admin are written
//! beside and renamed, never through a symlink.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// Bytes a terminal acts on: ESC (a colour, clearing the screen), C1's CSI, DEL, CR, a bidi
/// override that shows the rest of the line reversed.
const HOSTILE: &str = "\u{1b}[31mred\u{9b}2J\u{7f}\r\u{202e}gnp";

/// What [`HOSTILE`] is printed as.
const SHOWN: &str = "\\x1b[31mred\\xc2\\x9b2J\\x7f\\x0d\\xe2\\x80\\xaegnp";

/// Fails unless `out`'s stdout and stderr are UTF-8 without a control character (but newline
/// and tab), a C1 character or a bidi override, and [`SHOWN`] appears in them: the hostile
/// bytes were printed, escaped.
fn assert_escaped(what: &str, out: &Output) {
    let mut all = String::new();
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: {stream} is not UTF-8: {e}"));
        let raw: Vec<(usize, char)> = text
            .char_indices()
            .filter(|(_, c)| (c.is_control() && !matches!(c, '\n' | '\t')) || ('\u{202a}'..='\u{202e}').contains(c))
            .collect();
        assert!(raw.is_empty(), "{what}: raw {raw:?} on {stream}:\n{text}");
        assert!(!text.contains("\\u{"), "{what}: escaped by another rule (Rust's Debug) on {stream}:\n{text}");
        all.push_str(text);
    }
    // In JSON: the escaped text (its backslashes doubled), or the string itself as JSON escapes.
    let in_json = serde_json::to_string(SHOWN).unwrap();
    let json_string = "\\u001b[31mred\\u009b2J\\u007f\\r\\u202egnp";
    assert!(
        all.contains(SHOWN) || all.contains(in_json.trim_matches('"')) || all.contains(json_string),
        "{what}: the hostile text is not shown, escaped:\n{all}"
    );
}

/// An image whose /etc/stateless.conf and layer tree are full of [`HOSTILE`] bytes.
fn hostile_image(root: &Path) {
    for d in ["etc", "var/lib", "sbin", "dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    write(&root.join("sbin/init"), "#!/bin/sh\n");
    std::fs::set_permissions(root.join("sbin/init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let h = HOSTILE;
    write(
        &root.join("etc/stateless.conf"),
        &format!(
            "stateless.{h}=1\nkey{h}=1\n{h}\nstateless.dirs=etc,var/{h}\nstateless.mode={h}\nstateless.break=x{h}\n\
             stateless.tmpfs.size={h}\nstateless.swap={h}\n"
        ),
    );
    let base = root.join("diskless/base");
    write(&base.join(format!("etc/{h}")), "a file name\n");
    write(&base.join(format!("{h}/x")), "outside the writable dirs\n");
    write(&root.join(format!("diskless/hosts/{h}/etc/x")), "a layer that never matches\n");
}

/// A command line with [`HOSTILE`] in every kind of value.
fn hostile_cmdline() -> String {
    let h = HOSTILE;
    format!(
        "stateless.dirs=etc,var,{h} stateless.x{h}=1 stateless.hostname={h} stateless.init=/sbin/{h} \
         stateless.log={h} stateless.modules=a{h} stateless.layers=/sbin/init/{h} nfsroot=10.0.2.2:/srv/{h} ip={h} \
         BOOTIF={h} stateless.emergency={h} mod{h}.param=1 modprobe.blacklist=x{h} softlevel={h} root=/dev/{h}"
    )
}

#[test]
fn plan_shows_hostile_config_and_names_escaped() {
    let tmp = TempDir::new("printing-plan");
    let root = tmp.0.join("image");
    hostile_image(&root);
    let cmdline = hostile_cmdline();
    for json in [false, true] {
        let mut command = Command::new(BIN);
        command.args(["plan", "--root"]).arg(&root).args(["--ip", "10.0.2.15/24", "--cmdline", &cmdline]);
        let out = command.args(json.then_some("--json")).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_escaped(&format!("plan (json: {json})"), &out);
    }
    let out =
        Command::new(BIN).args(["plan", "--initramfs", "--root"]).arg(&root).args(["--cmdline", &cmdline]).output();
    assert_escaped("plan --initramfs", &out.unwrap());
}

#[test]
fn check_shows_hostile_config_and_names_escaped() {
    let tmp = TempDir::new("printing-check");
    let root = tmp.0.join("image");
    hostile_image(&root);
    for json in [false, true] {
        let mut command = Command::new(BIN);
        command.arg("check").arg(&root).args(["--cmdline", &hostile_cmdline()]);
        let out = command.args(json.then_some("--json")).output().unwrap();
        assert_escaped(&format!("check (json: {json})"), &out);
    }
}

#[test]
#[ignore = "needs root: mounts in a private mount namespace (tests/run runs it)"]
fn apply_shows_hostile_config_and_names_escaped() {
    require_root();
    let tmp = TempDir::new("printing-apply");
    let root = tmp.0.join("image");
    hostile_image(&root);
    let cmdline = hostile_cmdline();
    in_namespace(&root, &["--ip", "10.0.2.15/24", "--cmdline", &cmdline], |out| assert_escaped("apply", out));
}

/// The on-root report fixture with [`HOSTILE`] in its strings, and one whose status is
/// not a status (serde's error quotes it).
fn hostile_reports(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report/onroot.json");
    let mut report: serde_json::Value = serde_json::from_str(&read(&fixture)).unwrap();
    report["interface"] = HOSTILE.into();
    report["notes"] = serde_json::json!([HOSTILE]);
    report["hostname_rejected"] = serde_json::json!([HOSTILE]);
    report["layers"][0]["layer"] = HOSTILE.into();
    report["dirs"][0]["dir"] = HOSTILE.into();
    report["init"] = HOSTILE.into();
    report["version"] = HOSTILE.into();
    report["steps"][0]["detail"] = HOSTILE.into();
    report["steps"][0]["status"] = "failed".into();
    let good = dir.join("report.json");
    std::fs::write(&good, serde_json::to_string(&report).unwrap()).unwrap();
    report["steps"][1]["status"] = HOSTILE.into();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, serde_json::to_string(&report).unwrap()).unwrap();
    (good, bad)
}

#[test]
fn status_shows_a_hostile_report_escaped() {
    let tmp = TempDir::new("printing-status");
    let (good, bad) = hostile_reports(&tmp.0);
    for json in [false, true] {
        let out = Command::new(BIN).args(["status", "--report"]).arg(&good).args(json.then_some("--json")).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_escaped(&format!("status (json: {json})"), &out);
    }
    let out = Command::new(BIN).args(["status", "--report"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown variant"), "{out:?}");
    assert_escaped("status of a report serde refuses", &out);
    // The report's path too (it comes from the command line: a file copied from a client).
    let odd = tmp.0.join(format!("r{HOSTILE}.json"));
    std::fs::copy(&bad, &odd).unwrap();
    let out = Command::new(BIN).args(["status", "--report"]).arg(&odd).output().unwrap();
    assert_escaped("status of a report with a hostile name", &out);
    let out = Command::new(BIN).args(["status", "--report"]).arg(tmp.0.join(HOSTILE)).output().unwrap();
    assert_escaped("status of a missing report", &out);
}

#[test]
fn unknown_arguments_are_shown_escaped() {
    for command in ["plan", "apply", "status", "initramfs", "modules", "dhcp", "check", "relayer"] {
        let out = Command::new(BIN).args([command, &format!("--{HOSTILE}")]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        assert_escaped(command, &out);
    }
}

#[test]
fn status_svg_is_written_beside_and_renamed_never_through_a_symlink() {
    let tmp = TempDir::new("printing-svg");
    let (good, _) = hostile_reports(&tmp.0);
    let outside = tmp.0.join("outside");
    std::fs::write(&outside, "must stay\n").unwrap();
    let svg = tmp.0.join("boot.svg");
    symlink(&outside, &svg).unwrap();
    let out = Command::new(BIN).args(["status", "--report"]).arg(&good).arg("--svg").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(&outside), "must stay\n", "written through the symlink");
    assert!(std::fs::symlink_metadata(&svg).unwrap().is_file(), "the symlink is replaced by the file");
    let drawn = read(&svg);
    assert!(drawn.starts_with("<svg ") && drawn.contains(SHOWN), "{drawn}");
    let before: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().map(|e| e.unwrap().file_name()).collect();

    // A dir where the file goes: an error, nothing left beside it, the dir untouched.
    let dir = tmp.0.join("a-dir.svg");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), "keep\n").unwrap();
    let out = Command::new(BIN).args(["status", "--report"]).arg(&good).arg("--svg").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(read(&dir.join("keep")), "keep\n");
    let mut after: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    after.retain(|n| n != "a-dir.svg");
    assert_eq!(after.len(), before.len(), "a temp file left behind: {after:?}");

    // A path that names a dir by its spelling, though its last name is a file's: the file stays.
    std::fs::write(tmp.0.join("keep"), "keep\n").unwrap();
    for spelled in ["keep/", "keep/.", "keep/.."] {
        let path = format!("{}/{spelled}", tmp.0.display());
        let out = Command::new(BIN).args(["status", "--report"]).arg(&good).args(["--svg", &path]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{spelled}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("names a directory, not a file"), "{out:?}");
        assert_eq!(read(&tmp.0.join("keep")), "keep\n", "{spelled}");
    }
}

#[test]
fn initramfs_shows_hostile_names_escaped() {
    let tmp = TempDir::new("printing-initramfs");
    // The module dir, the image and a module file named with the hostile bytes; an index line
    // that is refused quotes them.
    let modules = tmp.0.join(HOSTILE);
    write(&modules.join(format!("kernel/drivers/net/ethernet/nic{HOSTILE}.ko")), "\0NIC\0");
    let dep = format!("kernel/drivers/net/ethernet/nic{HOSTILE}.ko:\n../{HOSTILE}.ko:\n");
    write(&modules.join("modules.dep"), &dep);
    let out = tmp.0.join(format!("{HOSTILE}.img"));
    let mut command = Command::new(BIN);
    command.args(["initramfs", "--kernel-version", "6.1.0-test", "--compress", "none", "--modules-dir"]);
    let firmware = tmp.0.join("firmware");
    std::fs::create_dir(&firmware).unwrap();
    let run = command.arg(&modules).arg("--firmware").arg(&firmware).arg("-o").arg(&out).output().unwrap();
    assert!(run.status.success(), "{run:?}");
    assert_escaped("initramfs", &run);
    let run = Command::new(BIN).args(["initramfs", "--kernel-version", HOSTILE, "-o", "x"]).output().unwrap();
    assert_escaped("initramfs --kernel-version", &run);
}

#[test]
fn a_named_report_or_command_line_file_is_read_only_when_it_is_a_small_regular_file() {
    let tmp = TempDir::new("printing-named");
    let fifo = tmp.0.join("fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    let big = tmp.0.join("big");
    std::fs::write(&big, vec![b'x'; 100 << 10]).unwrap();
    let runs: [(&[&str], &Path, &str); 4] = [
        (&["status", "--report"], &fifo, "not a regular file: left unopened"),
        (&["plan", "--cmdline-file"], &fifo, "not a regular file: left unopened"),
        (&["plan", "--cmdline-file"], Path::new("/dev/zero"), "not a regular file: left unopened"),
        (&["plan", "--cmdline-file"], &big, "larger than 65536 bytes"),
    ];
    for (args, path, said) in runs {
        // Under a bound: a fifo opened for reading would wait for a writer for ever.
        let out = Command::new("timeout").arg("10").arg(BIN).args(args).arg(path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {path:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(said), "{args:?} {path:?}: {out:?}");
    }
}
