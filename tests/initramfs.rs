//! `stateless initramfs` on the installed Debian kernel tree: what goes in is what modprobe would
//! load for the NICs, NFS and overlayfs (no more), the index files name only those, the image
//! is small and the same bytes every time.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// The newest Debian kernel with its modules installed (`qemu/lab build` installs one).
fn release() -> String {
    let mut releases: Vec<String> = std::fs::read_dir("/boot")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|r| Path::new("/lib/modules").join(r).join("modules.dep").exists())
        .collect();
    releases.sort();
    releases.pop().unwrap_or_else(|| {
        panic!("missing prerequisite: a kernel in /boot with /lib/modules (qemu/lab build installs it)")
    })
}

/// The files `modprobe --show-depends` names for `modules`, relative to the module dir.
fn modprobe_files(release: &str, modules: &[&str]) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for m in modules {
        let out =
            Command::new("modprobe").args(["-C", "/dev/null", "-S", release, "--show-depends", m]).output().unwrap();
        assert!(out.status.success(), "modprobe {m}: {out:?}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(path) = line.strip_prefix("insmod ") {
                files.insert(path.trim().trim_start_matches(&format!("/lib/modules/{release}/")).to_string());
            }
        }
    }
    files
}

/// The paths in a zstd-compressed newc archive, as GNU cpio lists them.
fn listing(image: &Path) -> Vec<String> {
    let mut zstd = Command::new("zstd").args(["-d", "-c"]).arg(image).stdout(Stdio::piped()).spawn().unwrap();
    let out = Command::new("cpio").args(["-t", "--quiet"]).stdin(zstd.stdout.take().unwrap()).output().unwrap();
    assert!(out.status.success() && zstd.wait().unwrap().success(), "zstd | cpio -t: {out:?}");
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs the Debian kernel tree, zstd and cpio (tests/run runs it, after qemu/lab build installs them)"]
fn the_image_holds_what_modprobe_would_load_and_is_reproducible() {
    let release = release();
    // The size bound is for the release build, which tests/run passes.
    let bin = std::env::var("STATELESS_BIN")
        .unwrap_or_else(|_| panic!("missing prerequisite: STATELESS_BIN, the release build (tests/run sets it)"));
    let tmp = TempDir::new("initramfs-builder");
    let build = |name: &str| {
        let out = tmp.0.join(name);
        let run = Command::new(&bin)
            .args(["initramfs", "--kernel-version", &release, "--nic", "virtio_net,e1000", "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        (out, String::from_utf8(run.stdout).unwrap())
    };
    let (image, printed) = build("a.img");
    let size = std::fs::metadata(&image).unwrap().len();
    assert!(size <= 2 << 20, "{size} bytes: the issue's bound is 2 MB\n{printed}");
    assert!(printed.contains(&format!("size: {size} bytes")), "{printed}");
    let (again, _) = build("b.img");
    assert_eq!(std::fs::read(&image).unwrap(), std::fs::read(&again).unwrap(), "not reproducible");

    let files = listing(&image);
    for must in ["init", "dev/console", "root", "proc", "sys", "run"] {
        assert!(files.iter().any(|f| f == must), "{must} missing: {files:?}");
    }
    let base = format!("lib/modules/{release}/");
    let modules: BTreeSet<String> =
        files.iter().filter_map(|f| f.strip_prefix(&base)).filter(|f| f.ends_with(".ko")).map(str::to_string).collect();
    let expected = modprobe_files(&release, &["virtio_pci", "virtio_net", "e1000", "nfsv3", "nfsv4", "overlay"]);
    assert_eq!(modules, expected, "the modules modprobe loads for them, no more");

    // The index names only what is in the image.
    let unpacked = tmp.0.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let mut zstd = Command::new("zstd").args(["-d", "-c"]).arg(&image).stdout(Stdio::piped()).spawn().unwrap();
    let unpack = Command::new("cpio")
        .args(["-i", "-d", "--quiet"])
        .current_dir(&unpacked)
        .stdin(zstd.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(unpack.success() && zstd.wait().unwrap().success());
    let dep = read(&unpacked.join(&base).join("modules.dep"));
    let listed: BTreeSet<String> = dep.lines().map(|l| l.split(':').next().unwrap().to_string()).collect();
    assert_eq!(listed, expected);
    let alias = read(&unpacked.join(&base).join("modules.alias"));
    assert!(alias.lines().any(|l| l.ends_with(" virtio_net")) && alias.lines().any(|l| l.ends_with(" e1000")));
    assert!(!alias.lines().any(|l| l.ends_with(" e1000e")), "e1000e was not asked for");
}

/// A module tree of its own (one NIC driver declaring a firmware file) and a firmware dir,
/// under `dir`; and a secret beside them that nothing may read.
fn small_tree(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (modules, firmware, secret) = (dir.join("modules"), dir.join("firmware"), dir.join("secret"));
    write(&modules.join("kernel/drivers/net/ethernet/nic.ko"), "\0firmware=nic/fw.bin\0NIC-MODULE\0");
    write(&modules.join("modules.dep"), "kernel/drivers/net/ethernet/nic.ko:\n");
    write(&modules.join("modules.alias"), "alias pci:v00008086d* nic\n");
    write(&modules.join("modules.builtin"), "kernel/drivers/base/firmware.ko\n");
    write(&firmware.join("nic/fw.bin"), "NIC-FIRMWARE");
    write(&secret, "ROOT-ONLY-SECRET");
    (modules, firmware, secret)
}

/// `stateless initramfs` of the NIC driver in `modules`, uncompressed, to `out`.
fn build(modules: &Path, firmware: &Path, out: &Path, epoch: Option<&str>) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(["initramfs", "--kernel-version", "6.1.0-test", "--nic", "nic", "--compress", "none"]);
    command.arg("--modules-dir").arg(modules).arg("--firmware").arg(firmware).arg("-o").arg(out);
    match epoch {
        Some(value) => command.env("SOURCE_DATE_EPOCH", value),
        None => command.env_remove("SOURCE_DATE_EPOCH"),
    };
    command.output().unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The names in `dir`.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn nothing_is_read_through_a_symlink_out_of_the_module_or_firmware_dir() {
    let tmp = TempDir::new("initramfs-symlinks");
    let (modules, firmware, secret) = small_tree(&tmp.0);
    let out = tmp.0.join("out/initrd.img");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let run = build(&modules, &firmware, &out, None);
    assert!(run.status.success(), "{run:?}");
    let image = std::fs::read(&out).unwrap();
    assert!(contains(&image, "NIC-MODULE") && contains(&image, "NIC-FIRMWARE"));
    std::fs::remove_file(&out).unwrap();

    // Symlinks that stay inside their tree are followed (linux-firmware's links are such).
    let moved = modules.join("kernel/drivers/net/ethernet/real-nic.ko");
    std::fs::rename(modules.join("kernel/drivers/net/ethernet/nic.ko"), &moved).unwrap();
    std::os::unix::fs::symlink("real-nic.ko", modules.join("kernel/drivers/net/ethernet/nic.ko")).unwrap();
    std::fs::rename(firmware.join("nic/fw.bin"), firmware.join("fw-real.bin")).unwrap();
    std::os::unix::fs::symlink("../fw-real.bin", firmware.join("nic/fw.bin")).unwrap();
    let run = build(&modules, &firmware, &out, None);
    assert!(run.status.success(), "{run:?}");
    let image = std::fs::read(&out).unwrap();
    assert!(contains(&image, "NIC-MODULE") && contains(&image, "NIC-FIRMWARE"));
    let old = std::fs::read(&out).unwrap();

    // Each file read from the module tree, made a symlink out of it (absolute, or up and out):
    // refused, the build fails, the last image stays as it was and nothing is left beside it.
    let up = |from: &Path| {
        let depth = from.strip_prefix(&tmp.0).unwrap().components().count() - 1;
        Path::new(&"../".repeat(depth)).join("secret")
    };
    let cases = [
        modules.join("kernel/drivers/net/ethernet/nic.ko"),
        modules.join("modules.dep"),
        modules.join("modules.alias"),
        modules.join("modules.builtin"),
        modules.join("modules.softdep"),
        modules.join("modules.order"),
    ];
    for file in &cases {
        let kept = tmp.0.join("kept");
        let existed = std::fs::rename(file, &kept).is_ok();
        for target in [secret.clone(), up(file)] {
            std::os::unix::fs::symlink(&target, file).unwrap();
            assert_eq!(std::fs::read(file).unwrap(), b"ROOT-ONLY-SECRET", "the test's symlink leads to the secret");
            let run = build(&modules, &firmware, &out, None);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{}: {run:?}", file.display());
            assert!(stderr.contains("leads out of") && stderr.contains("refused"), "{}: {stderr}", file.display());
            assert_eq!(std::fs::read(&out).unwrap(), old, "{}: the image was changed", file.display());
            assert_eq!(names(out.parent().unwrap()), ["initrd.img".to_string()].into());
            std::fs::remove_file(file).unwrap();
        }
        if existed {
            std::fs::rename(&kept, file).unwrap();
        }
    }
    let run = build(&modules, &firmware, &out, None);
    assert!(run.status.success(), "{run:?}");
}

#[test]
fn a_firmware_file_leading_out_of_the_firmware_dir_is_left_out_as_missing() {
    let tmp = TempDir::new("initramfs-firmware-out");
    let (modules, firmware, secret) = small_tree(&tmp.0);
    let out = tmp.0.join("initrd.img");
    let fw = firmware.join("nic/fw.bin");
    // Debian's /lib/firmware/regulatory.db is such a link (into /etc/alternatives).
    for target in [secret.clone(), Path::new("../../secret").to_path_buf()] {
        std::fs::remove_file(&fw).unwrap();
        std::os::unix::fs::symlink(&target, &fw).unwrap();
        assert_eq!(std::fs::read(&fw).unwrap(), b"ROOT-ONLY-SECRET", "the test's symlink leads to the secret");
        let run = build(&modules, &firmware, &out, None);
        assert!(run.status.success(), "{run:?}");
        let text = String::from_utf8(run.stdout).unwrap();
        let (shown, tree) = (fw.display(), firmware.display());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"  firmware: 0 files"), "{text}");
        let missing = format!("  firmware declared but not in {tree} (drivers that need it will not start): 1");
        assert!(lines.contains(&missing.as_str()), "{text}");
        let warning = format!(
            "  warning: firmware {shown}: leads out of {tree} (an absolute symlink, or one up out of it): refused, left out as missing"
        );
        assert!(lines.contains(&warning.as_str()), "{text}");
        let image = std::fs::read(&out).unwrap();
        assert!(contains(&image, "NIC-MODULE") && !contains(&image, "ROOT-ONLY-SECRET"));
    }
}

#[test]
fn the_image_is_written_beside_and_renamed_never_through_a_symlink() {
    let tmp = TempDir::new("initramfs-output");
    let (modules, firmware, secret) = small_tree(&tmp.0);
    let out = tmp.0.join("out/initrd.img");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&secret, &out).unwrap();
    let run = build(&modules, &firmware, &out, None);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(read(&secret), "ROOT-ONLY-SECRET", "written through the symlink");
    assert!(std::fs::symlink_metadata(&out).unwrap().is_file(), "the symlink is replaced by the image");
    let old = std::fs::read(&out).unwrap();

    // A compressor that fails: the old image stays, nothing is left beside it.
    let bin = tmp.0.join("bin");
    write(&bin.join("zstd"), "#!/bin/sh\n/bin/cat >/dev/null; echo half; exit 3\n");
    std::fs::set_permissions(bin.join("zstd"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut command = Command::new(BIN);
    command.args(["initramfs", "--kernel-version", "6.1.0-test", "--nic", "nic", "--compress", "zstd"]);
    command.arg("--modules-dir").arg(&modules).arg("--firmware").arg(&firmware).arg("-o").arg(&out);
    let run = command.env("PATH", &bin).output().unwrap();
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stderr).contains("zstd: exit status: 3"), "{run:?}");
    assert_eq!(std::fs::read(&out).unwrap(), old);
    assert_eq!(names(out.parent().unwrap()), ["initrd.img".to_string()].into());

    // Killed while the compressor writes: nothing is left beside the old image.
    let writing = tmp.0.join("writing");
    write(&bin.join("zstd"), "#!/bin/sh\n/bin/cat >/dev/null; echo half; : >\"$MARK\"; exec /bin/sleep 3\n");
    let mut command = Command::new(BIN);
    command.args(["initramfs", "--kernel-version", "6.1.0-test", "--nic", "nic", "--compress", "zstd"]);
    command.arg("--modules-dir").arg(&modules).arg("--firmware").arg(&firmware).arg("-o").arg(&out);
    let mut child = command.env("PATH", &bin).env("MARK", &writing).spawn().unwrap();
    // Killed once the compressor has written part of the image.
    for _ in 0..1000 {
        if writing.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(writing.exists(), "the compressor never wrote");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), old);
    assert_eq!(names(out.parent().unwrap()), ["initrd.img".to_string()].into(), "a named temp file left behind");

    // Into a tree it reads: refused, the tree as it was (modules.dep is the kernel's).
    for inside in [modules.join("modules.dep"), firmware.join("nic/initrd.img")] {
        let before = std::fs::read_dir(inside.parent().unwrap()).unwrap().count();
        let dep = read(&modules.join("modules.dep"));
        let run = build(&modules, &firmware, &inside, None);
        assert_eq!(run.status.code(), Some(2), "{run:?}");
        assert!(
            String::from_utf8_lossy(&run.stderr).contains("which the image is read from: write it elsewhere"),
            "{run:?}"
        );
        assert_eq!(read(&modules.join("modules.dep")), dep);
        assert_eq!(std::fs::read_dir(inside.parent().unwrap()).unwrap().count(), before);
    }
}

#[test]
fn source_date_epoch_is_a_number_of_seconds_or_an_error() {
    let tmp = TempDir::new("initramfs-epoch");
    let (modules, firmware, _) = small_tree(&tmp.0);
    let out = tmp.0.join("initrd.img");
    // newc: the first header's c_mtime, after c_magic and five 8-digit fields.
    let mtime = |epoch: Option<&str>| {
        let run = build(&modules, &firmware, &out, epoch);
        assert!(run.status.success(), "{epoch:?}: {run:?}");
        String::from_utf8(std::fs::read(&out).unwrap()[46..54].to_vec()).unwrap()
    };
    assert_eq!(mtime(None), "00000000");
    assert_eq!(mtime(Some("")), "00000000", "empty is unset");
    assert_eq!(mtime(Some("1700000000")), "6553F100");
    assert_eq!(mtime(Some("4294967295")), "FFFFFFFF");
    std::fs::remove_file(&out).unwrap();
    for garbage in ["abc", "-1", "+5", " 5", "4294967296", "99999999999999999999", "1e9", "1.5", "\u{1b}[2J"] {
        let run = build(&modules, &firmware, &out, Some(garbage));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{garbage:?}: {run:?}");
        assert!(stderr.contains("SOURCE_DATE_EPOCH=") && stderr.contains("not a number of seconds"), "{stderr}");
        assert!(!stderr.contains('\u{1b}'), "{stderr}");
        assert!(!out.exists(), "{garbage:?}: an image was written");
    }
}
