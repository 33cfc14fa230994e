//! `stateless image build` and `stateless image publish` for real, as root, with the
//! distribution's mksquashfs and mkfs.erofs: the same tree gives the same bytes (also from a
//! copy made in another order); the image, mounted in a private mount namespace, holds the
//! tree's owners, modes, times, xattrs, device nodes, symlinks and hard links, without the
//! contents of /proc and the like nor /diskless; publishing never rewrites a file; bad input
//! writes nothing.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{require, TempDir, BIN};

fn image(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN).arg("image").args(args).output().unwrap()
}

fn build(tree: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![std::ffi::OsStr::new("build"), tree.as_os_str(), "-o".as_ref(), output.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    image(&args)
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The message of a refused command: exit code 2, one `stateless: ` line on standard error.
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// A temp dir holding [`tree`] at `<dir>/tree`; fails unless root with both tools.
fn temp_tree(tag: &str) -> (TempDir, PathBuf) {
    common::require_root();
    for (tool, package) in [("mksquashfs", "squashfs-tools"), ("mkfs.erofs", "erofs-utils")] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        require(found.status.success(), &format!("{tool} ({package}; qemu/lab build installs it)"));
    }
    let tmp = TempDir::new(tag);
    let root = tmp.0.join("tree");
    tree(&root);
    (tmp, root)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// A root tree with what an image must keep and what it must leave out, every time a whole
/// second (squashfs keeps seconds).
fn tree(dir: &Path) {
    for d in ["usr/bin", "etc", "var/lib", "dev", "proc/1", "sys/kernel", "run/lock", "tmp", "diskless/base/etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    common::write(&dir.join("etc/hostname"), "debian\n");
    common::write(&dir.join("var/lib/big"), &"0123456789abcdef".repeat(40_000));
    let ping = dir.join("usr/bin/ping");
    common::write(&ping, "\x7fELF not really\n");
    std::os::unix::fs::chown(&ping, Some(0), Some(0)).unwrap();
    // cap_net_raw+ep: VFS_CAP_REVISION_2 with the effective flag, permitted bit 13.
    let cap = [[0x01, 0, 0, 0x02], (1u32 << 13).to_le_bytes(), [0; 4], [0; 4], [0; 4]].concat();
    set_xattr(&ping, "security.capability", &cap);
    set_xattr(&dir.join("etc/hostname"), "user.origin", b"image build test");
    let suid = dir.join("usr/bin/su");
    common::write(&suid, "#!/bin/sh\n");
    std::os::unix::fs::chown(&suid, Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(dir.join("etc/hostname"), dir.join("etc/hostname.link")).unwrap();
    symlink("../usr/bin/ping", dir.join("etc/ping")).unwrap();
    symlink("/nowhere", dir.join("etc/dangling")).unwrap();
    let mknod = |path: &Path, kind, dev| {
        rustix::fs::mknodat(rustix::fs::CWD, path, kind, rustix::fs::Mode::from_raw_mode(0o640), dev).unwrap();
    };
    mknod(&dir.join("etc/null"), rustix::fs::FileType::CharacterDevice, rustix::fs::makedev(1, 3));
    mknod(&dir.join("etc/sda"), rustix::fs::FileType::BlockDevice, rustix::fs::makedev(8, 0));
    mknod(&dir.join("etc/fifo"), rustix::fs::FileType::Fifo, 0);
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // What is left out: the contents of the boot's mounts, dot files too, and the layer root.
    common::write(&dir.join("proc/1/status"), "Name: init\n");
    common::write(&dir.join("sys/kernel/x"), "x\n");
    common::write(&dir.join("run/lock/pid"), "1\n");
    common::write(&dir.join("tmp/.X0-lock"), "1\n");
    common::write(&dir.join("tmp/scratch"), "1\n");
    mknod(&dir.join("dev/console"), rustix::fs::FileType::CharacterDevice, rustix::fs::makedev(5, 1));
    common::write(&dir.join("diskless/base/etc/motd"), "a layer\n");
    // Times last, each its own second, deepest first so a dir's stays as set.
    let mut all = entries(dir);
    all.reverse();
    for (n, path) in all.iter().enumerate() {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 1_700_000_000, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec { tv_sec: 1_700_000_000 + n as i64 * 61, tv_nsec: 0 },
        };
        rustix::fs::utimensat(rustix::fs::CWD, path, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }
}

/// Every path under `dir`, `dir` first, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while let Some(path) = out.get(i).cloned() {
        i += 1;
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            out.extend(names);
        }
    }
    out.sort();
    out
}

/// What an image must keep of each entry: type and mode, owner, mtime, device number, link
/// count of files, xattrs, content or link target. Not a dir's size (each filesystem counts
/// its own).
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for path in entries(dir) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mut line =
            format!("{:o} {}:{} t={} rdev={}", meta.mode(), meta.uid(), meta.gid(), meta.mtime(), meta.rdev());
        let mut names = vec![0; 4096];
        let n = rustix::fs::llistxattr(&path, &mut names).unwrap();
        let mut names: Vec<&[u8]> = names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()).collect();
        names.sort();
        for name in names {
            let mut value = vec![0; 4096];
            let name = std::ffi::CString::new(name).unwrap();
            let len = rustix::fs::lgetxattr(&path, name.as_c_str(), &mut value).unwrap();
            line += &format!(" {}={:?}", name.to_str().unwrap(), &value[..len]);
        }
        if meta.file_type().is_symlink() {
            line += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
        } else if meta.is_file() {
            line += &format!(" links={} {:x?}", meta.nlink(), sha(&std::fs::read(&path).unwrap()));
        }
        out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), line);
    }
    out
}

fn sha(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split(' ').next().unwrap().to_owned()
}

/// The fingerprint of `image` as the kernel mounts it (a loop device, read-only), in a private
/// mount namespace, and whether the two hard links are one inode there.
fn mounted(image: &Path, fstype: &str, at: &Path) -> (BTreeMap<PathBuf, String>, bool) {
    std::fs::create_dir_all(at).unwrap();
    common::in_private_namespace(|| {
        let out = Command::new("mount").args(["-t", fstype, "-o", "loop,ro"]).arg(image).arg(at).output().unwrap();
        assert!(out.status.success(), "mount {}: {out:?}", image.display());
        let seen = fingerprint(at);
        let ino = |p: &str| std::fs::symlink_metadata(at.join(p)).unwrap().ino();
        let linked = ino("etc/hostname") == ino("etc/hostname.link");
        let out = Command::new("umount").arg(at).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        (seen, linked)
    })
}

/// Builds `format` twice from one tree and once from a copy made in another order: the same
/// bytes and checksum file every time; mounted, the image is the tree, less what is left out.
fn reproducible_and_faithful(format: &str, fstype: &str) {
    let (tmp, root) = temp_tree(&format!("image-{format}"));
    let copy = tmp.0.join("copy");
    let cp = Command::new("cp").arg("-a").arg(&root).arg(&copy).output().unwrap();
    assert!(cp.status.success(), "{cp:?}");
    let built: Vec<(PathBuf, String)> = [&root, &root, &copy]
        .iter()
        .enumerate()
        .map(|(n, tree)| {
            let dir = tmp.0.join(format!("out{n}"));
            std::fs::create_dir(&dir).unwrap();
            let image = dir.join("root.img");
            let said = ok(&build(tree, &image, &["--format", format]));
            (image, said)
        })
        .collect();
    let bytes = std::fs::read(&built[0].0).unwrap();
    let checksum = common::read(&tmp.0.join("out0/root.img.sha256"));
    assert_eq!(checksum, format!("{}  root.img\n", sha(&bytes)));
    for (image, said) in &built {
        assert!(std::fs::read(image).unwrap() == bytes, "{}: other bytes", image.display());
        assert_eq!(common::read(&image.with_extension("img.sha256")), checksum);
        assert!(said.starts_with(&format!("{format} image of ")), "{said}");
        assert!(said.contains(&format!("  sha256: {}", sha(&bytes))), "{said}");
        assert!(said.contains(&format!("  size: {} bytes\n", bytes.len())), "{said}");
    }
    let sums = Command::new("sha256sum").arg("-c").arg("root.img.sha256").current_dir(tmp.0.join("out0")).output();
    assert!(sums.unwrap().status.success());

    let (seen, linked) = mounted(&built[0].0, fstype, &tmp.0.join("mnt"));
    let mut expected = fingerprint(&root);
    let left_out = |p: &Path| {
        p.starts_with("diskless")
            || ["dev", "proc", "run", "sys", "tmp"].iter().any(|d| p.starts_with(d) && p != Path::new(d))
    };
    expected.retain(|p, _| !left_out(p));
    assert_eq!(seen, expected);
    assert!(linked, "hard links are one inode in the image");
    for kept in ["etc/null", "etc/sda", "usr/bin/ping", "proc", "tmp", "etc/dangling"] {
        assert!(seen.contains_key(Path::new(kept)), "{kept}");
    }
    assert!(seen[Path::new("usr/bin/ping")].contains("security.capability="), "{seen:?}");
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn squashfs_is_the_same_bytes_every_time_and_holds_the_tree() {
    reproducible_and_faithful("squashfs", "squashfs");
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn erofs_is_the_same_bytes_every_time_and_holds_the_tree() {
    reproducible_and_faithful("erofs", "erofs");
}

/// Every file under `dir` with its bytes and inode.
fn files(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u64)> {
    let each = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
    each.map(|p| {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let bytes = if meta.is_symlink() {
            std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()
        } else {
            std::fs::read(&p).unwrap()
        };
        (p, (bytes, meta.ino()))
    })
    .collect()
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn build_refuses_bad_input_and_writes_nothing() {
    let (tmp, root) = temp_tree("image-bad");
    let out = tmp.0.join("out");
    std::fs::create_dir(&out).unwrap();
    let before = common::fingerprint(&root);
    let img = out.join("root.img");

    let cases: Vec<(Output, &str)> = vec![
        (build(&tmp.0.join("nowhere"), &img, &[]), "nowhere: No such file or directory"),
        (build(&root.join("etc/hostname"), &img, &[]), "hostname: not a directory"),
        (build(&root, &root.join("var/root.img"), &[]), "inside the tree"),
        (build(&root, &img, &["--format", "ext4"]), "--format: squashfs or erofs"),
        (build(&root, &img, &["--compress", "gzip"]), "--compress: zstd, xz or lz4"),
        (build(&root, &out.join("a\nb.img"), &[]), "no backslash or control character"),
        (build(&root, &tmp.0.join("no-dir/root.img"), &[]), "no-dir: No such file or directory"),
        (image(&["bake".as_ref()]), "image \"bake\": build, sign or publish"),
        (build(&root, &img, &["--format", "erofs", "--order", "/dev/null"]), "--order: squashfs only"),
        (build(&root, &img, &["--order", tmp.0.join("no-list").to_str().unwrap()]), "no-list: No such file"),
    ];
    for (result, message) in &cases {
        let said = refused(result);
        assert!(said.starts_with("stateless: ") && said.contains(message), "{message}: {said}");
    }
    // The tool a format needs, missing: named with its package.
    let no_path = Command::new(BIN)
        .env("PATH", tmp.0.join("empty"))
        .args(["image", "build"])
        .arg(&root)
        .arg("-o")
        .arg(&img)
        .output()
        .unwrap();
    assert!(refused(&no_path).contains("mksquashfs not found: install squashfs-tools"));
    // A compression the installed mkfs.erofs does not make (erofs-utils 1.5 makes lz4 only).
    let help = Command::new("mkfs.erofs").arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout) + String::from_utf8_lossy(&help.stderr);
    let offered = help.split_once("Available compressors are:").unwrap().1.lines().next().unwrap().to_owned();
    if !offered.contains("zstd") {
        let said = refused(&build(&root, &img, &["--format", "erofs", "--compress", "zstd"]));
        assert!(said.contains("mkfs.erofs here cannot make erofs zstd (it makes lz4"), "{said}");
    }
    assert!(files(&out).is_empty(), "nothing written: {:?}", files(&out));
    assert_eq!(common::fingerprint(&root), before, "the tree is never written");

    // An image there is never replaced unless --force, its checksum file neither.
    ok(&build(&root, &img, &[]));
    let first = files(&out);
    let said = refused(&build(&root, &img, &["--compress", "lz4"]));
    assert!(said.contains("root.img: exists: refused") && said.contains("--force"), "{said}");
    std::fs::remove_file(&img).unwrap();
    let said = refused(&build(&root, &img, &[]));
    assert!(said.contains("root.img.sha256: exists: refused"), "{said}");
    assert!(!img.exists());
    std::fs::write(&img, b"an image a client booted").unwrap();
    let kept = files(&out);
    refused(&build(&root, &img, &[]));
    assert_eq!(files(&out), kept);
    ok(&build(&root, &img, &["--force"]));
    let forced = files(&out);
    assert_eq!(forced[&img].0, first[&img].0, "the same tree, the same bytes");
    assert_ne!(forced[&img].1, kept[&img].1, "replaced by a rename, never written into");
    assert_eq!(common::fingerprint(&root), before, "the tree is never written");
}

/// Where `needle` first is in `haystack`.
fn offset(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn order_puts_the_listed_files_first_in_its_order_and_changes_nothing_else() {
    let (tmp, root) = temp_tree("image-order");
    // Files mksquashfs stores as they are (random bytes do not compress): where each one's bytes
    // are in the image is where it was laid out. By name, they come a, "b c", z.
    let content = |seed: u8| -> Vec<u8> {
        let mut x = u32::from(seed) | 0x9e37_7900;
        (0..150_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    std::fs::create_dir_all(root.join("usr/data")).unwrap();
    for (name, seed) in [("a", 1), ("b c", 2), ("z", 3), ("*", 5), ("other", 6)] {
        std::fs::write(root.join("usr/data").join(name), content(seed)).unwrap();
    }
    std::fs::write(root.join("zz"), content(7)).unwrap();
    // A line of mksquashfs's starting with `#` is a comment: this one is escaped.
    std::fs::write(root.join("#first"), content(4)).unwrap();
    symlink("usr/data", root.join("data")).unwrap();
    let list = tmp.0.join("boot.list");
    // Through a symlink as a client reads it, a name with a space, a file twice, one missing,
    // a dir, one the image leaves out, a comment and an empty line.
    // A file named `*`: mksquashfs would take its dir for it, so it is left out.
    let lines = "# read at boot\n/#first\n/data/z\n\n/usr/data/b c\nusr/data/a\n/usr/data/z\n/nowhere\n/usr/data\n/diskless/base/etc/motd\n/usr/data/*\n";
    std::fs::write(&list, lines).unwrap();
    let out = tmp.0.join("out");
    std::fs::create_dir(&out).unwrap();
    let plain = out.join("plain.img");
    ok(&build(&root, &plain, &[]));
    let ordered: Vec<PathBuf> = (0..2).map(|n| out.join(format!("ordered{n}.img"))).collect();
    for image in &ordered {
        let said = ok(&build(&root, image, &["--order", list.to_str().unwrap()]));
        assert!(
            said.contains("  order: 4 files first, as ") && said.contains("(5 of its 9 lines named no file"),
            "{said}"
        );
    }
    let bytes = std::fs::read(&ordered[0]).unwrap();
    assert!(std::fs::read(&ordered[1]).unwrap() == bytes, "the same tree and list, the same bytes");
    let at = |image: &[u8], seed| offset(image, &content(seed)[..4096]);
    assert!(at(&bytes, 4) < at(&bytes, 3), "#first first");
    assert!(at(&bytes, 3) < at(&bytes, 2) && at(&bytes, 2) < at(&bytes, 1), "z, b c, a as listed");
    // Not listed, /zz comes before usr/data/other (mksquashfs puts what a sort list does not
    // name in an order of its own): the dir was not listed.
    assert!(at(&bytes, 1) < at(&bytes, 7) && at(&bytes, 7) < at(&bytes, 6), "`*` not ordered, nor its dir with it");
    let plain_bytes = std::fs::read(&plain).unwrap();
    assert!(at(&plain_bytes, 1) < at(&plain_bytes, 3), "without --order, not so");
    // Only the layout differs: mounted, the same tree.
    let (seen, _) = mounted(&ordered[0], "squashfs", &tmp.0.join("mnt"));
    let (plain_seen, _) = mounted(&plain, "squashfs", &tmp.0.join("mnt"));
    assert_eq!(seen, plain_seen);
}

#[test]
#[ignore = "needs root: owners, device nodes, chattr +i on the temp dir's filesystem (tests/run runs it)"]
fn force_never_leaves_a_new_image_beside_files_of_the_old_one() {
    let (tmp, root) = temp_tree("image-force-sidecars");
    let out = tmp.0.join("out");
    std::fs::create_dir(&out).unwrap();
    let img = out.join("r.img");
    ok(&build(&root, &img, &["--verity"]));
    let before = files(&out);
    // The old .roothash cannot go: the old image stays, with the files that go with it.
    let roothash = out.join("r.img.roothash");
    let chattr = |flag: &str| Command::new("chattr").arg(flag).arg(&roothash).status().unwrap().success();
    require(chattr("+i"), "chattr +i (e2fsprogs) on the temp dir's filesystem");
    std::fs::write(root.join("etc/changed"), "a new file in the tree").unwrap();
    let said = build(&root, &img, &["--force"]);
    assert!(chattr("-i"));
    let said = refused(&said);
    assert!(said.contains("r.img.roothash: ") && said.contains("the image it goes with is kept"), "{said}");
    assert_eq!(files(&out), before, "the old image and its .sha256 and .roothash, as they were");
    // It can go: the new image with its own .sha256 and no .roothash (built without --verity).
    ok(&build(&root, &img, &["--force"]));
    assert!(!roothash.exists());
    let sums = Command::new("sha256sum").arg("-c").arg("r.img.sha256").current_dir(&out).output().unwrap();
    assert!(sums.status.success(), "{sums:?}");
}

fn publish(image: &Path, dir: &Path) -> Output {
    Command::new(BIN).args(["image", "publish"]).arg(image).arg(dir).output().unwrap()
}

/// The name publish gives `image` (of `sha256`) at each second from now on for a minute.
fn names_from_now(stem: &str, ext: &str, sha256: &str) -> Vec<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    (now.saturating_sub(1)..now + 60)
        .map(|t| {
            let out = Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y%m%dT%H%M%SZ"]).output().unwrap();
            let time = String::from_utf8(out.stdout).unwrap();
            format!("{stem}-{}-{}.{ext}", time.trim(), &sha256[..12])
        })
        .collect()
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn publish_adds_a_new_file_and_moves_current_never_rewriting_one() {
    let (tmp, root) = temp_tree("image-publish");
    let (first, second) = (tmp.0.join("first/debian.sqfs"), tmp.0.join("second/debian.sqfs"));
    for image in [&first, &second] {
        std::fs::create_dir(image.parent().unwrap()).unwrap();
    }
    ok(&build(&root, &first, &[]));
    common::write(&root.join("etc/motd"), "the second image\n");
    ok(&build(&root, &second, &[]));
    let srv = tmp.0.join("srv");
    std::fs::create_dir(&srv).unwrap();
    let sha = |image: &Path| sha(&std::fs::read(image).unwrap());

    let said = ok(&publish(&first, &srv));
    let published = files(&srv);
    assert_eq!(published.len(), 3, "the image, its .sha256 and current: {published:?}");
    let current = std::fs::read_link(srv.join("current")).unwrap();
    let name = current.to_str().unwrap().to_owned();
    assert!(name.starts_with("debian-20") && name.ends_with(&format!("Z-{}.sqfs", &sha(&first)[..12])), "{name}");
    assert_eq!(std::fs::read(srv.join(&name)).unwrap(), std::fs::read(&first).unwrap());
    assert_eq!(common::read(&srv.join(format!("{name}.sha256"))), format!("{}  {name}\n", sha(&first)));
    assert!(said.contains(&format!("  current -> {name} (was none)\n")), "{said}");

    let said = ok(&publish(&second, &srv));
    let now = files(&srv);
    let second_name = std::fs::read_link(srv.join("current")).unwrap().to_str().unwrap().to_owned();
    assert_ne!(second_name, name);
    assert_eq!(std::fs::read(srv.join(&second_name)).unwrap(), std::fs::read(&second).unwrap());
    assert!(said.contains(&format!("  current -> {second_name} (was \"{name}\")\n")), "{said}");
    for (path, file) in &published {
        if !path.ends_with("current") {
            assert_eq!(&now[path], file, "{}: bytes and inode as published", path.display());
        }
    }
    assert_eq!(now.len(), 5);
    let sums = Command::new("sh").arg("-c").arg("sha256sum -c *.sha256").current_dir(&srv).output().unwrap();
    assert!(sums.status.success(), "{sums:?}");

    // A name taken (the same image again, within the minute) is refused; nothing changes.
    let taken: Vec<PathBuf> =
        names_from_now("debian", "sqfs", &sha(&second)).iter().map(|t| srv.join(t)).filter(|t| !t.exists()).collect();
    for t in &taken {
        std::fs::write(t, b"taken").unwrap();
    }
    let before = files(&srv);
    let said = refused(&publish(&second, &srv));
    assert!(said.contains("exists, and a published name is never reused: nothing published"), "{said}");
    assert_eq!(files(&srv), before);
    for t in &taken {
        std::fs::remove_file(t).unwrap();
    }
    // Not an image; an image whose checksum file says otherwise; a current that is a file.
    let before = files(&srv);
    assert!(refused(&publish(&srv.join(format!("{name}.sha256")), &srv)).contains("not a squashfs or EROFS image"));
    std::fs::write(first.with_extension("sqfs.sha256"), format!("{}  debian.sqfs\n", "0".repeat(64))).unwrap();
    assert!(refused(&publish(&first, &srv)).contains("changed since built?"));
    assert!(refused(&publish(&tmp.0.join("none.sqfs"), &srv)).contains("none.sqfs: No such file"));
    assert_eq!(files(&srv), before);
    let lone = tmp.0.join("lone");
    std::fs::create_dir(&lone).unwrap();
    std::fs::write(lone.join("current"), b"a file an admin made").unwrap();
    let said = refused(&publish(&second, &lone));
    assert!(said.contains("current: not a symlink: left alone, nothing published"), "{said}");
    assert_eq!(files(&lone).len(), 1);
}

/// `stateless image build ROOT -o IMAGE` with the mksquashfs of `fake`, a script that
/// prints the help of one with zstd, then runs `body`.
fn build_with_fake_tool(tmp: &Path, root: &Path, image: &Path, body: &str) -> Output {
    let fake = tmp.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let help = "case $1 in -help) printf 'Compressors available:\\n\\tzstd\\n'; exit 0;; esac";
    common::write(&fake.join("mksquashfs"), &format!("#!/bin/sh\n{help}\n{body}\n"));
    std::fs::set_permissions(fake.join("mksquashfs"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    Command::new(BIN).env("PATH", path).args(["image", "build"]).arg(root).arg("-o").arg(image).output().unwrap()
}

/// --force replaces a file an earlier build wrote and nothing else, refused before the build;
/// an image's name is one sha256sum and a terminal show as it is; a tool that fails or writes
/// no image leaves nothing.
#[test]
#[ignore = "needs root: owners, device nodes (tests/run runs it)"]
fn build_force_replaces_only_a_file_and_names_only_an_image() {
    let (tmp, root) = temp_tree("image-force");
    let (out, elsewhere) = (tmp.0.join("out"), tmp.0.join("elsewhere"));
    std::fs::create_dir(&out).unwrap();
    common::write(&elsewhere, "an admin's file\n");
    // What --force must not replace, at IMAGE or at IMAGE.sha256: a dir, a symlink (to a
    // file elsewhere, never written through), a device, a fifo.
    std::fs::create_dir(out.join("dir.img")).unwrap();
    symlink(&elsewhere, out.join("link.img")).unwrap();
    symlink(&elsewhere, out.join("sum.img.sha256")).unwrap();
    let node = |name: &str, kind, dev| {
        let mode = rustix::fs::Mode::from_raw_mode(0o644);
        rustix::fs::mknodat(rustix::fs::CWD, out.join(name), kind, mode, dev).unwrap();
    };
    node("null.img", rustix::fs::FileType::CharacterDevice, rustix::fs::makedev(1, 3));
    node("fifo.img", rustix::fs::FileType::Fifo, 0);
    let before = common::fingerprint(&tmp.0);
    for name in ["dir.img", "link.img", "sum.img", "null.img", "fifo.img"] {
        let said = refused(&build(&root, &out.join(name), &["--force"]));
        assert!(said.contains("exists and is not a regular file: refused, even with --force"), "{name}: {said}");
    }
    // Names printed or checked otherwise than they are: `sha256sum -c` reads `-` as its
    // standard input; a right-to-left override or a zero-width space shows another name.
    for name in ["-", "evil\u{202e}gpj.img", "zero\u{200b}width.img"] {
        let said = refused(&build(&root, &out.join(name), &[]));
        assert!(said.contains("an image's name may hold no backslash or control character"), "{said}");
    }
    assert_eq!(common::fingerprint(&tmp.0), before);
    let before = common::fingerprint(&out);
    // A tool that says it succeeded but wrote no image, one killed: nothing written, said so.
    let img = out.join("root.img");
    let said = refused(&build_with_fake_tool(&tmp.0, &root, &img, "exit 0"));
    assert!(said.contains("root.img: mksquashfs exited 0 but wrote no squashfs image: nothing written"), "{said}");
    let said = refused(&build_with_fake_tool(&tmp.0, &root, &img, "echo half > \"$2\"; kill -9 $$"));
    assert!(said.ends_with("root.img: mksquashfs failed (signal: 9 (SIGKILL)) and said nothing\n"), "{said}");
    assert_eq!(common::fingerprint(&out), before);
}

/// Publishing what `current` names already is refused, by either name, and a device or a fifo
/// without opening it; IMAGE.sha256 is read as the boot's report reads it, before the image is.
#[test]
#[ignore = "needs root: owners, device nodes (tests/run runs it)"]
fn publish_refuses_what_current_names_and_reads_the_sha256_as_the_boot_does() {
    let (tmp, root) = temp_tree("image-republish");
    let (image, srv) = (tmp.0.join("build/debian.sqfs"), tmp.0.join("srv"));
    std::fs::create_dir(image.parent().unwrap()).unwrap();
    std::fs::create_dir(&srv).unwrap();
    ok(&build(&root, &image, &[]));
    ok(&publish(&image, &srv));
    // The image current names, by current or by its published name: nothing to do.
    let served = std::fs::read_link(srv.join("current")).unwrap();
    let before = files(&srv);
    for again in [srv.join("current"), srv.join(&served)] {
        let said = refused(&publish(&again, &srv));
        assert!(said.contains("is the image") && said.contains("current names already: nothing published"), "{said}");
    }
    assert_eq!(files(&srv), before);
    // A device or a fifo as IMAGE is never opened (a fifo's open would block: held open for
    // writing here, so that a publish that opens it fails rather than hangs).
    let _writer = std::fs::OpenOptions::new().read(true).write(true).open(root.join("etc/fifo")).unwrap();
    for special in ["etc/null", "etc/fifo"] {
        let said = refused(&publish(&root.join(special), &srv));
        assert!(said.contains(&format!("{special}: not a regular file: left unopened")), "{said}");
    }
    assert_eq!(files(&srv), before);

    // IMAGE.sha256 is read as the boot reads it: the first word, 64 hex digits of any case.
    let hex = sha(&std::fs::read(&image).unwrap());
    let sums = image.with_extension("sqfs.sha256");
    for bad in [format!("{hex}00  debian.sqfs\n"), String::new(), "\u{1b}[2J\n".to_owned()] {
        std::fs::write(&sums, &bad).unwrap();
        let said = refused(&publish(&image, &srv));
        assert!(said.contains("debian.sqfs.sha256: no sha256sum line (64 hex digits, then the name)"), "{said}");
    }
    assert_eq!(files(&srv), before);
    // Upper-case digits: the same sum. (Another name than the image published above, which
    // may be published again only in another second.)
    let other = tmp.0.join("build/other.sqfs");
    std::fs::copy(&image, &other).unwrap();
    std::fs::write(other.with_extension("sqfs.sha256"), format!("{}  other.sqfs\n", hex.to_ascii_uppercase())).unwrap();
    let said = ok(&publish(&other, &srv));
    assert!(said.contains(&format!("  sha256: {hex}\n")), "{said}");
    assert!(std::fs::read_link(srv.join("current")).unwrap().to_str().unwrap().starts_with("other-"));
}

/// A name that leaves no room for `.sha256` beside it (255 bytes) is refused before anything
/// is written: the image was built or published, then its checksum file failed.
#[test]
#[ignore = "needs root: owners, device nodes (tests/run runs it)"]
fn names_too_long_for_their_sha256_write_nothing() {
    let (tmp, root) = temp_tree("image-long");
    let (out, srv) = (tmp.0.join("out"), tmp.0.join("srv"));
    std::fs::create_dir(&out).unwrap();
    std::fs::create_dir(&srv).unwrap();
    let said = refused(&build(&root, &out.join(format!("{}.sqfs", "a".repeat(245))), &[]));
    assert!(said.contains("too long: its .sha256 beside it would take 257 bytes, 255 at most"), "{said}");
    assert!(files(&out).is_empty());
    // Built, its name fits; published, the time and sha256 make it 250 bytes, 257 with .sha256.
    let image = out.join(format!("{}.sqfs", "b".repeat(215)));
    ok(&build(&root, &image, &[]));
    let said = refused(&publish(&image, &srv));
    assert!(said.contains("too long: its .sha256 beside it would take 257 bytes"), "{said}");
    assert!(files(&srv).is_empty());
}

/// Mounts a tmpfs of `inodes` inodes (its root one of them) at `at`.
fn tmpfs(at: &Path, inodes: u32) {
    std::fs::create_dir_all(at).unwrap();
    let options = format!("nr_inodes={inodes}");
    let out = Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(at).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A checksum file that cannot be written (a full dir: no inode left) leaves no image beside
/// a checksum file that is not its own, nor half a publish: build without --force takes its
/// image back, with --force the old image's files go before the new one takes its name (and
/// free what it needs beside it); publish takes back its copy
/// and its copy's .sha256 until current has moved.
#[test]
#[ignore = "needs root: owners, device nodes, tmpfs mounts in a private mount namespace (tests/run runs it)"]
fn a_full_dir_leaves_no_image_and_checksum_that_disagree() {
    let (tmp, root) = temp_tree("image-full");
    let image = tmp.0.join("build/debian.sqfs");
    std::fs::create_dir(image.parent().unwrap()).unwrap();
    ok(&build(&root, &image, &[]));
    common::in_private_namespace(|| {
        // Room for the image only.
        let out = tmp.0.join("out");
        tmpfs(&out, 2);
        let said = refused(&build(&root, &out.join("root.img"), &[]));
        assert!(said.contains("root.img.sha256: No space left on device (os error 28): "), "{said}");
        assert!(said.ends_with("out/root.img removed\n"), "{said}");
        assert!(files(&out).is_empty());
        // With --verity, room for the image and its .sha256 only: both go.
        let verity = tmp.0.join("verity");
        tmpfs(&verity, 3);
        let said = refused(&build(&root, &verity.join("root.img"), &["--verity"]));
        assert!(said.contains("root.img.roothash: No space left on device (os error 28): "), "{said}");
        assert!(said.ends_with("verity/root.img.sha256 removed\n"), "{said}");
        assert!(files(&verity).is_empty());
        // --force over an image a client holds open (its inode stays taken): the old .sha256
        // goes before the new image takes the name, and leaves the inode the new one needs.
        let forced = tmp.0.join("forced");
        tmpfs(&forced, 4);
        std::fs::copy(&image, forced.join("root.img")).unwrap();
        std::fs::copy(image.with_extension("sqfs.sha256"), forced.join("root.img.sha256")).unwrap();
        let held = std::fs::File::open(forced.join("root.img")).unwrap();
        common::write(&root.join("etc/motd"), "another image\n");
        ok(&build(&root, &forced.join("root.img"), &["--force"]));
        let left = files(&forced);
        let names: Vec<_> = left.keys().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["root.img", "root.img.sha256"]);
        assert_ne!(left[&forced.join("root.img")].0, std::fs::read(&image).unwrap(), "the new image");
        let sums = Command::new("sha256sum").arg("-c").arg("root.img.sha256").current_dir(&forced).output().unwrap();
        assert!(sums.status.success(), "its own .sha256: {sums:?}");
        drop(held);
        // publish: room for the copy only, then for the copy and its .sha256 but not current.
        for inodes in [2, 3] {
            let srv = tmp.0.join(format!("srv{inodes}"));
            tmpfs(&srv, inodes);
            let said = refused(&publish(&image, &srv));
            assert!(said.contains("No space left on device") && said.ends_with(": nothing published\n"), "{said}");
            assert!(files(&srv).is_empty(), "{inodes}: {:?}", files(&srv));
        }
    });
}

/// `veritysetup verify` of `image` (its data `data` bytes, the tree after them) against `root`.
fn veritysetup_verify(image: &Path, data: u64, root: &str) -> Output {
    let offset = format!("--hash-offset={data}");
    Command::new("veritysetup").args(["verify", &offset]).arg(image).arg(image).arg(root).output().unwrap()
}

/// Builds `format` with --verity twice: the same bytes, the tree `veritysetup verify` checks
/// (and fails once a data byte is flipped), the image's data what a build without --verity
/// writes (then zeroes to a block), mounted the same tree; .sha256 the whole file's.
fn verity_tree_veritysetup_checks(format: &str, fstype: &str) {
    let (tmp, root) = temp_tree(&format!("image-verity-{format}"));
    let found = Command::new("sh").arg("-c").arg("command -v veritysetup").output().unwrap();
    require(found.status.success(), "veritysetup (cryptsetup-bin; tests/run installs it)");
    let images: Vec<PathBuf> = (0..3).map(|n| tmp.0.join(format!("root{n}.img"))).collect();
    let said = ok(&build(&root, &images[0], &["--format", format, "--verity"]));
    ok(&build(&root, &images[1], &["--format", format, "--verity"]));
    ok(&build(&root, &images[2], &["--format", format]));
    let bytes = std::fs::read(&images[0]).unwrap();
    assert!(std::fs::read(&images[1]).unwrap() == bytes, "the same tree, the same bytes");
    let hash = common::read(&tmp.0.join("root0.img.roothash"));
    assert_eq!(common::read(&tmp.0.join("root1.img.roothash")), hash);
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{hash:?}");
    assert_eq!(common::read(&tmp.0.join("root0.img.sha256")), format!("{}  root0.img\n", sha(&bytes)));
    assert!(!tmp.0.join("root2.img.roothash").exists());

    // "verity data: N bytes, then its hash tree: M bytes": N a whole number of blocks, the
    // plain image's bytes then zeroes; N + M the file.
    let number = |after: &str| -> u64 {
        let rest = &said[said.find(after).unwrap() + after.len()..];
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    assert!(said.contains(&format!("  verity root hash: {hash} (")), "{said}");
    let (data, tree) = (number("  verity data: "), number("then its hash tree: "));
    assert_eq!((data % 4096, data + tree), (0, bytes.len() as u64), "{said}");
    let plain = std::fs::read(&images[2]).unwrap();
    assert!(bytes[..plain.len()] == plain[..] && bytes[plain.len()..data as usize].iter().all(|b| *b == 0));
    assert_eq!(&bytes[data as usize..data as usize + 8], b"verity\0\0");

    let checked = veritysetup_verify(&images[0], data, &hash);
    assert!(checked.status.success(), "{checked:?}");
    let mut flipped = bytes.clone();
    flipped[data as usize / 2] ^= 1;
    let bad = tmp.0.join("flipped.img");
    std::fs::write(&bad, &flipped).unwrap();
    let checked = veritysetup_verify(&bad, data, &hash);
    // A data block's leaf, stored in the tree or hashed into the root (one level), differs.
    let said = String::from_utf8_lossy(&checked.stderr);
    let failed = said.contains("Verification failed at position") || said.contains("Verification of root hash failed");
    assert!(!checked.status.success() && failed, "{checked:?}");

    // The kernel mounts the longer file as the plain one: the tree lies past the image's end.
    let (seen, linked) = mounted(&images[0], fstype, &tmp.0.join("mnt"));
    assert_eq!(seen, mounted(&images[2], fstype, &tmp.0.join("mnt")).0);
    assert!(linked && seen.contains_key(Path::new("var/lib/big")), "{seen:?}");
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn squashfs_verity_tree_is_veritysetups_and_the_image_still_mounts() {
    verity_tree_veritysetup_checks("squashfs", "squashfs");
}

#[test]
#[ignore = "needs root: owners, device nodes, a loop mount in a private mount namespace (tests/run runs it)"]
fn erofs_verity_tree_is_veritysetups_and_the_image_still_mounts() {
    verity_tree_veritysetup_checks("erofs", "erofs");
}

/// IMAGE.roothash is refused like IMAGE.sha256 without --force, and a build without --verity
/// that replaces the image removes it; publish copies it beside the published name, and a
/// .roothash that holds no root hash publishes nothing.
#[test]
#[ignore = "needs root: owners, device nodes (tests/run runs it)"]
fn roothash_is_kept_with_its_image_and_published_beside_it() {
    let (tmp, root) = temp_tree("image-roothash");
    let (image, srv) = (tmp.0.join("build/debian.sqfs"), tmp.0.join("srv"));
    std::fs::create_dir(image.parent().unwrap()).unwrap();
    std::fs::create_dir(&srv).unwrap();
    let roothash = image.with_extension("sqfs.roothash");
    common::write(&roothash, "an admin's file\n");
    let said = refused(&build(&root, &image, &["--verity"]));
    assert!(said.contains("debian.sqfs.roothash: exists: refused"), "{said}");
    assert!(!image.exists());
    ok(&build(&root, &image, &["--verity", "--force"]));
    let hash = common::read(&roothash);
    assert_eq!(hash.len(), 64);

    let said = ok(&publish(&image, &srv));
    let name = std::fs::read_link(srv.join("current")).unwrap().to_str().unwrap().to_owned();
    assert_eq!(common::read(&srv.join(format!("{name}.roothash"))), hash);
    assert!(said.contains(&format!("  verity root hash: {hash} ({name}.roothash)\n")), "{said}");
    assert_eq!(files(&srv).len(), 4, "the image, its .sha256 and .roothash, current");

    let before = files(&srv);
    let other = tmp.0.join("build/other.sqfs");
    std::fs::copy(&image, &other).unwrap();
    for bad in [format!("{hash} \n"), hash[1..].to_owned(), "\u{1b}[2J\n".to_owned()] {
        std::fs::write(other.with_extension("sqfs.roothash"), &bad).unwrap();
        let said = refused(&publish(&other, &srv));
        assert!(said.contains("other.sqfs.roothash: no root hash (64 hex digits): nothing published"), "{said}");
    }
    // A root hash that is not the image's: another's, or beside an image with no tree.
    let foreign = format!("{}{}", &hash[..63], if hash.ends_with('0') { "1" } else { "0" });
    std::fs::write(other.with_extension("sqfs.roothash"), &foreign).unwrap();
    let said = refused(&publish(&other, &srv));
    assert!(said.contains(&format!("{foreign} is not the root hash of ")), "{said}");
    assert!(said.contains(&format!("which has the root hash {hash}: nothing published")), "{said}");
    let plain = tmp.0.join("build/plain.sqfs");
    ok(&build(&root, &plain, &[]));
    std::fs::write(plain.with_extension("sqfs.roothash"), &hash).unwrap();
    let said = refused(&publish(&plain, &srv));
    assert!(said.contains("which carries no verity tree: nothing published"), "{said}");
    // Data changed after the build: the root hash beside it is no longer the file's.
    std::fs::write(other.with_extension("sqfs.roothash"), &hash).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&other).unwrap();
    let mut byte = [0];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, 200).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0xff], 200).unwrap();
    let said = refused(&publish(&other, &srv));
    assert!(said.contains(&format!("{hash} is not the root hash of ")), "{said}");
    assert_eq!(files(&srv), before);

    // Replaced by a build without --verity: no root hash of another image stays beside it.
    ok(&build(&root, &image, &["--force"]));
    assert!(!roothash.exists());
    assert!(image.with_extension("sqfs.sha256").exists());
}

/// A key of tests/fixtures/keys (made with openssl and signify-openbsd).
fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys").join(name)
}

fn sign_image(image: &Path, key: &Path, extra: &[&str]) -> Output {
    Command::new(BIN).args(["image", "sign"]).arg(image).arg("--key").arg(key).args(extra).output().unwrap()
}

/// --verity --sign writes the params and their signature beside the image (signify-openbsd
/// checks one made with a signify key) and inside it (veritysetup verify still passes);
/// --sign alone, or with a key stateless does not read, writes nothing; image sign replaces a
/// signature only with --force, and rewrites the image with it inside; publish copies both
/// under the new name and refuses params of another image, beside it or inside, or one file
/// of the two alone.
#[test]
#[ignore = "needs root: owners, device nodes; signify-openbsd (tests/run runs it)"]
fn signed_images_carry_params_signify_checks_and_publish_keeps_them_together() {
    use stateless::model::{sign, verity};
    let (tmp, root) = temp_tree("image-sign");
    let found = Command::new("sh").arg("-c").arg("command -v signify-openbsd").output().unwrap();
    require(found.status.success(), "signify-openbsd (tests/run installs it)");
    let (out, srv) = (tmp.0.join("build"), tmp.0.join("srv"));
    std::fs::create_dir(&out).unwrap();
    std::fs::create_dir(&srv).unwrap();
    let image = out.join("debian.sqfs");
    let (params, sig) = (out.join("debian.sqfs.verity-params"), out.join("debian.sqfs.verity-params.sig"));
    let openssl = key("openssl.pem");
    let said = refused(&build(&root, &image, &["--sign", openssl.to_str().unwrap()]));
    assert!(said.contains("--sign needs --verity"), "{said}");
    let encrypted = key("encrypted.pem");
    let said = refused(&build(&root, &image, &["--verity", "--sign", encrypted.to_str().unwrap()]));
    assert!(said.contains("encrypted.pem: an encrypted PEM private key"), "{said}");
    assert!(files(&out).is_empty(), "nothing written: {:?}", files(&out));

    let signify = key("signify.sec");
    let said = ok(&build(&root, &image, &["--verity", "--sign", signify.to_str().unwrap()]));
    let public = sign::public_key(&std::fs::read(key("signify.pub")).unwrap()).unwrap();
    assert!(said.contains(&format!("  signed: {} (", sig.display())), "{said}");
    assert!(said.contains(&format!("), key {} (id ", public.fingerprint())), "{said}");
    let text = std::fs::read(&params).unwrap();
    let hash = common::read(&out.join("debian.sqfs.roothash"));
    assert!(String::from_utf8_lossy(&text).ends_with(&format!("\nroot-hash {hash}\n")));
    let len = std::fs::metadata(&image).unwrap().len();
    assert!(String::from_utf8_lossy(&text).contains(&format!("\nfile-size {len}\n")));
    let checked = Command::new("signify-openbsd")
        .args(["-V", "-p"])
        .arg(key("signify.pub"))
        .arg("-m")
        .arg(&params)
        .arg("-x")
        .arg(&sig)
        .output()
        .unwrap();
    assert!(checked.status.success() && String::from_utf8_lossy(&checked.stdout).contains("Signature Verified"));
    let signed = std::fs::read(&sig).unwrap();
    assert_eq!(sign::verify(std::slice::from_ref(&public), &text, &signed).unwrap(), &public);
    // The same statement inside the image, after its superblock: .sha256 the whole file's, and
    // veritysetup verify still passes (the block is not under the root hash).
    let inside = |image: &Path| {
        let bytes = std::fs::read(image).unwrap();
        let at = verity::data_blocks_of(bytes.len() as u64).unwrap() as usize * 4096;
        (verity::embedded(&bytes[at..at + 4096]), at as u64, bytes)
    };
    let (embedded, data, bytes) = inside(&image);
    assert_eq!(embedded, Some((text.clone(), signed.clone())));
    assert_eq!(common::read(&out.join("debian.sqfs.sha256")), format!("{}  debian.sqfs\n", sha(&bytes)));
    let found = Command::new("sh").arg("-c").arg("command -v veritysetup").output().unwrap();
    require(found.status.success(), "veritysetup (cryptsetup-bin; tests/run installs it)");
    let checked = veritysetup_verify(&image, data, &hash);
    assert!(checked.status.success(), "{checked:?}");

    // A second key: image sign replaces the signature only with --force; the params, the
    // image's, stay the same bytes.
    let second = key("openssl2.pem");
    let said = refused(&sign_image(&image, &second, &[]));
    assert!(said.contains("debian.sqfs.verity-params: exists: refused"), "{said}");
    assert_eq!(std::fs::read(&sig).unwrap(), signed);
    let linked = out.join("hardlink.sqfs");
    std::fs::hard_link(&image, &linked).unwrap();
    // The image's own mode stays (the rewrite is a new file).
    std::fs::set_permissions(&image, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let said = ok(&sign_image(&image, &second, &["--force"]));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&image).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o640);
    let rotated = sign::public_key(&std::fs::read(key("openssl2.pub.pem")).unwrap()).unwrap();
    assert!(said.contains(&format!("  verity root hash: {hash}\n")) && said.contains(&rotated.fingerprint()), "{said}");
    assert_eq!(std::fs::read(&params).unwrap(), text);
    let resigned = std::fs::read(&sig).unwrap();
    assert!(sign::verify(std::slice::from_ref(&public), &text, &resigned).unwrap_err().contains("not trusted"));
    assert_eq!(sign::verify(std::slice::from_ref(&rotated), &text, &resigned).unwrap(), &rotated);
    // Signed inside it again: the image rewritten (a new file: a hard link keeps the old), only
    // that block changed, its .sha256 rewritten; veritysetup verify still passes.
    let (embedded, _, now) = inside(&image);
    assert_eq!(embedded, Some((text.clone(), resigned.clone())));
    assert!(said.contains("  statement: written inside it (rewritten, a new file)"), "{said}");
    assert_eq!(std::fs::read(&linked).unwrap(), bytes, "the old file, under its other name");
    assert!(
        now[..data as usize + 512] == bytes[..data as usize + 512]
            && now[data as usize + 4096..] == bytes[data as usize + 4096..]
    );
    assert_eq!(common::read(&out.join("debian.sqfs.sha256")), format!("{}  debian.sqfs\n", sha(&now)));
    let checked = veritysetup_verify(&image, data, &hash);
    assert!(checked.status.success(), "{checked:?}");
    std::fs::remove_file(&linked).unwrap();
    // Again with the same key: the block is the same, the file left alone.
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&image).unwrap());
    let said = ok(&sign_image(&image, &second, &["--force"]));
    assert!(said.contains("  statement: already inside it, left as it was"), "{said}");
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&image).unwrap()), ino);
    // A symlink is not replaced by a file: refused, nothing written.
    let link = out.join("link.sqfs");
    std::os::unix::fs::symlink("debian.sqfs", &link).unwrap();
    assert!(refused(&sign_image(&link, &second, &["--force"])).contains("link.sqfs: not a regular file"));
    assert!(!out.join("link.sqfs.verity-params").exists());
    std::fs::remove_file(&link).unwrap();
    // A plain ed25519 signature, as OpenSSL makes and checks one with that key.
    let found = Command::new("sh").arg("-c").arg("command -v openssl").output().unwrap();
    require(found.status.success(), "openssl (the openssl package)");
    let raw = tmp.0.join("raw.sig");
    std::fs::write(&raw, sign::signature_of(&resigned).unwrap().1).unwrap();
    let checked = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(key("openssl2.pub.pem"))
        .arg("-in")
        .arg(&params)
        .arg("-sigfile")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&checked.stdout).contains("Signature Verified Successfully"), "{checked:?}");

    // Published: both beside the new name.
    let said = ok(&publish(&image, &srv));
    let name = std::fs::read_link(srv.join("current")).unwrap().to_str().unwrap().to_owned();
    assert_eq!(std::fs::read(srv.join(format!("{name}.verity-params"))).unwrap(), text);
    assert_eq!(std::fs::read(srv.join(format!("{name}.verity-params.sig"))).unwrap(), resigned);
    assert!(said.contains(&format!("  signed: {name}.verity-params.sig ({name}.verity-params), by key id ")), "{said}");
    assert!(said.contains("  signed inside it: by key id "), "{said}");
    assert_eq!(files(&srv).len(), 6, "the image, .sha256, .roothash, .verity-params, .sig, current");

    // Another image (xz: other data) with this one's params: refused; and one file alone.
    let before = files(&srv);
    let other = out.join("other.sqfs");
    ok(&build(&root, &other, &["--verity", "--compress", "xz"]));
    std::fs::copy(&params, out.join("other.sqfs.verity-params")).unwrap();
    std::fs::copy(&sig, out.join("other.sqfs.verity-params.sig")).unwrap();
    let said = refused(&publish(&other, &srv));
    assert!(said.contains(&format!("other.sqfs.verity-params: the root hash {hash} and ")), "{said}");
    assert!(said.contains("which has the root hash ") && said.ends_with(": nothing published\n"), "{said}");
    std::fs::remove_file(out.join("other.sqfs.verity-params")).unwrap();
    let said = refused(&publish(&other, &srv));
    assert!(said.contains("go together: one without the other: nothing published"), "{said}");
    std::fs::rename(out.join("other.sqfs.verity-params.sig"), out.join("other.sqfs.verity-params")).unwrap();
    assert!(refused(&publish(&other, &srv)).contains("go together"));
    // This one's statement inside the other: refused as beside it.
    std::fs::remove_file(out.join("other.sqfs.verity-params")).unwrap();
    let (_, at, mut bytes) = inside(&other);
    let (at, from) = (at as usize, data as usize);
    bytes[at + 512..at + 4096].copy_from_slice(&now[from + 512..from + 4096]);
    std::fs::write(&other, &bytes).unwrap();
    std::fs::remove_file(out.join("other.sqfs.sha256")).unwrap();
    let said = refused(&publish(&other, &srv));
    assert!(said.contains(&format!("other.sqfs: the statement signed inside it: the root hash {hash} and ")), "{said}");
    assert_eq!(files(&srv), before);

    // No tree, nothing to sign; a build without --sign that replaces the image takes the old
    // signature away with it.
    let plain = out.join("plain.sqfs");
    ok(&build(&root, &plain, &[]));
    assert!(refused(&sign_image(&plain, &second, &[])).contains("plain.sqfs: carries no verity tree"));
    assert!(!out.join("plain.sqfs.verity-params").exists());
    // Another key's statement inside it, none beside: replaced only with --force too.
    std::fs::remove_file(&params).unwrap();
    std::fs::remove_file(&sig).unwrap();
    let said = refused(&sign_image(&image, &openssl, &[]));
    assert!(said.contains("debian.sqfs: signed inside it already, by another key: refused"), "{said}");
    assert!(!params.exists() && !sig.exists());
    ok(&build(&root, &image, &["--verity", "--force"]));
    assert!(!params.exists() && !sig.exists());
    assert_eq!(inside(&image).0, None, "rebuilt without --sign: no statement inside");
}
