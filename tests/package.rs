//! The Debian package's parts (debian/, built by debian/build; tests/run builds it and runs
//! lintian): the man pages say what `--help` says, word for word; the bash completion offers the
//! options `--help` lists; the example /etc/stateless.conf parses, to the defaults; the kernel
//! hooks build and remove a kernel's initramfs as /etc/stateless/initramfs.conf says, and only
//! then; the shell scripts are shellcheck-clean; the package's version is the crate's; the
//! package tests/run built holds this release binary and the pages its help makes now.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{require, TempDir, BIN};
use stateless::config::Cmdline;
use stateless::model::options::Options;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn debian(file: &str) -> PathBuf {
    Path::new(MANIFEST).join("debian").join(file)
}

/// What `stateless ARGS... --help` prints.
fn help(command: Option<&str>) -> String {
    let out = Command::new(BIN).args(command).arg("--help").output().unwrap();
    assert!(out.status.success(), "{command:?} --help: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The commands the general --help lists (`stateless plan ...`, one per line).
fn commands() -> Vec<String> {
    let general = help(None);
    let names = general.lines().filter_map(|l| {
        let l = l.trim_start().strip_prefix("usage:").unwrap_or(l).trim_start();
        let name = l.strip_prefix("stateless ")?.split_whitespace().next()?;
        name.chars().all(|c| c.is_ascii_lowercase()).then(|| name.to_owned())
    });
    let mut names: Vec<String> = names.collect();
    // `stateless image build ...` and `stateless image publish ...`: one command.
    names.dedup();
    assert!(names.len() >= 8, "{general}");
    names
}

/// The options a help text names (`--json`, `-o`): words starting with `-` after a space, `[`,
/// `|` or `(`, as the synopsis and option lists write them.
fn options_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices('-') {
        let before = text[..i].chars().next_back().unwrap_or(' ');
        let word: String = text[i..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect();
        let name = word.trim_start_matches('-');
        if " \n[|(".contains(before) && !name.is_empty() && (word.starts_with("--") || name.len() == 1) {
            found.insert(word.trim_end_matches('-').to_owned());
        }
    }
    found
}

/// The options of `stateless COMMAND`, from its --help (plan's and apply's: the general help's
/// `options:` list, apply without those marked plan only).
fn options_of(command: &str) -> BTreeSet<String> {
    let text = help(Some(command));
    let mut options = match command {
        "plan" | "apply" => {
            let list = text.split_once("\noptions:\n").unwrap().1;
            let lines = list.lines().filter(|l| command == "plan" || !l.contains("plan only"));
            // An option's own line starts with it; its description's continuation lines do not.
            lines.filter(|l| l.trim_start().starts_with('-')).flat_map(options_in).collect()
        }
        _ => options_in(&text),
    };
    options.insert("--help".to_owned());
    options
}

/// What the bash completion offers for `stateless WORDS...` with the cursor on the last word.
fn complete(words: &[&str]) -> BTreeSet<String> {
    let script = format!(
        ". {}; COMP_WORDS=(stateless {}); COMP_CWORD={}; _stateless; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        debian("bash-completion").display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len()
    );
    let out = Command::new("bash").args(["--norc", "-c", &script]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{words:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[test]
fn completion_offers_every_command_and_the_options_help_lists() {
    let mut expected: BTreeSet<String> = commands().into_iter().collect();
    expected.extend(["--help", "--version"].map(str::to_owned));
    assert_eq!(complete(&[""]), expected);
    for command in commands() {
        assert_eq!(complete(&[&command, "-"]), options_of(&command), "stateless {command} -<TAB>");
    }
    assert_eq!(complete(&["initramfs", "--compress", ""]), ["gzip", "none", "zstd"].map(str::to_owned).into());
    assert_eq!(complete(&["image", "build", "--compress", ""]), ["lz4", "xz", "zstd"].map(str::to_owned).into());
    assert_eq!(complete(&["image", ""]), ["build", "publish", "sign"].map(str::to_owned).into());
    assert!(complete(&["statu"]).contains("status"));
}

/// The words of a man page's roff from its synopsis to the end of its description, as text
/// (the roff escapes undone).
fn page_words(roff: &str) -> Vec<String> {
    let from = roff.find(".SH SYNOPSIS").unwrap();
    let body = &roff[from..];
    let to = ["\n.SH KERNEL COMMAND LINE", "\n.SH SEE ALSO"].iter().find_map(|s| body.find(s)).unwrap();
    let text: String = body[..to]
        .lines()
        .filter(|l| !l.starts_with('.'))
        .map(|l| {
            let l = l.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "");
            l.replace("\\fB", "").replace("\\fI", "").replace("\\fR", "") + "\n"
        })
        .collect();
    text.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn man_pages_say_what_help_says() {
    let dir = TempDir::new("manpages");
    let readme = Path::new(MANIFEST).join("README.md");
    let out = Command::new(debian("manpage")).arg(BIN).arg(&readme).arg(&dir.0).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let mut pages: Vec<String> =
        std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    pages.sort();
    let mut expected: Vec<String> = commands().iter().map(|c| format!("stateless-{c}.8")).collect();
    expected.push("stateless.8".to_owned());
    expected.sort();
    assert_eq!(pages, expected, "a page per command of the general --help");
    for (page, command) in commands()
        .iter()
        .map(|c| (format!("stateless-{c}.8"), Some(c.as_str())))
        .chain([("stateless.8".to_owned(), None)])
    {
        let roff = common::read(&dir.0.join(&page));
        assert!(roff.starts_with(".TH STATELESS"), "{page}");
        let mut help: Vec<String> = help(command).split_whitespace().map(str::to_owned).collect();
        assert_eq!(help.remove(0), "usage:");
        assert_eq!(page_words(&roff), help, "{page}: not the words of --help");
    }
    // stateless(8): a .TP entry per row of README's command-line key table.
    let readme = common::read(&Path::new(MANIFEST).join("README.md"));
    let table = readme.split_once("### Command-line keys").unwrap().1.split_once("\n#").unwrap().0;
    let rows = table.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| key ")).count();
    let roff = common::read(&dir.0.join("stateless.8"));
    assert_eq!(roff.matches("\n.TP\n").count(), rows);
    assert!(roff.contains(".TP\n\\fBstateless.nfs.timeout=SECS\\fR (default: \\fB90\\fR)\n"), "{roff}");
    // The package's build makes them so.
    assert!(common::read(&debian("rules")).contains("debian/manpage $(bin) README.md debian/man"));
}

#[test]
fn example_config_parses_to_the_defaults_and_every_commented_key_parses() {
    let text = common::read(&debian("stateless.conf"));
    let none = Cmdline::parse(b"");
    let (options, diagnostics) = Options::resolve(&none, Some(text.as_bytes()));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(options, Options::resolve(&none, None).0, "copied as it is, the example changes nothing");
    // Every key, the commented ones too.
    let keys: String = text
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .filter(|l| l.starts_with("stateless."))
        .map(|l| l.to_owned() + "\n")
        .collect();
    assert!(keys.lines().count() >= 15, "{keys}");
    let (_, diagnostics) = Options::resolve(&none, Some(keys.as_bytes()));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    // And as `stateless check` reads it from an image.
    let image = TempDir::new("example-conf");
    common::write(&image.0.join("etc/stateless.conf"), &text);
    common::write(&image.0.join("diskless/base/etc/motd"), "hello\n");
    let out = Command::new(BIN).args(["check", "--json"]).arg(&image.0).output().unwrap();
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = check["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| !f["problem"].as_str().unwrap().contains("stateless.conf")), "{findings:?}");
}

/// A temp dir with the hook installed as the kernel packages find it, a fake `stateless` that
/// logs its arguments and writes its -o file (only one in the temp dir), and the config file the
/// hook is pointed at.
struct Hooks {
    dir: TempDir,
}

impl Hooks {
    fn new(config: Option<&str>) -> Self {
        let dir = TempDir::new("kernel-hook");
        for d in ["postinst.d", "postrm.d"] {
            let hook = dir.0.join(d).join("stateless");
            std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
            std::fs::copy(debian("kernel-hook"), hook).unwrap();
        }
        let fake = "#!/bin/sh\nprintf '%s\\n' \"$*\" >>\"${0%/*}/../calls\"\n\
                    while [ $# -gt 1 ]; do [ \"$1\" = -o ] && case $2 in \"${0%/bin/*}\"/*) echo image >\"$2\";; esac; shift; done\n";
        common::write(&dir.0.join("bin/stateless"), fake);
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(dir.0.join("bin/stateless"), executable).unwrap();
        std::fs::create_dir(dir.0.join("boot")).unwrap();
        if let Some(config) = config {
            common::write(&dir.0.join("initramfs.conf"), &config.replace("TMP", dir.0.to_str().unwrap()));
        }
        Hooks { dir }
    }

    /// Runs `HOOK VERSION IMAGE` from postinst.d or postrm.d with `env` set.
    fn run(&self, hook: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!("{}:{}", self.dir.0.join("bin").display(), std::env::var("PATH").unwrap());
        let mut command = Command::new(self.dir.0.join(hook).join("stateless"));
        command.args(args).env("PATH", path).env("STATELESS_INITRAMFS_CONF", self.dir.0.join("initramfs.conf"));
        command.env_remove("DEB_MAINT_PARAMS").env_remove("INITRD");
        command.envs(env.iter().copied()).output().unwrap()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("calls")).unwrap_or_default()
    }
}

const VERSION: &str = "6.12.117+deb13-amd64";
const IMAGE: &str = "/boot/vmlinuz-6.12.117+deb13-amd64";

#[test]
fn kernel_hooks_build_and_remove_the_configured_initramfs() {
    let hooks = Hooks::new(Some("# the lab\nOUTPUT=TMP/boot/stateless.img-%v\nNIC=virtio_net,e1000\n"));
    let built = hooks.dir.0.join(format!("boot/stateless.img-{VERSION}"));
    let out = hooks.run("postinst.d", &[VERSION, IMAGE], &[("DEB_MAINT_PARAMS", "configure ''")]);
    assert!(out.status.success(), "{out:?}");
    let expected = format!("initramfs --kernel-version {VERSION} --nic virtio_net,e1000 -o {}\n", built.display());
    assert_eq!(hooks.calls(), expected);
    assert!(built.exists());
    // Once per install: not from the kernel's other postinst and postrm runs.
    for (hook, params) in [("postinst.d", "abort-upgrade 1"), ("postrm.d", "upgrade 2"), ("postrm.d", "purge")] {
        let out = hooks.run(hook, &[VERSION, IMAGE], &[("DEB_MAINT_PARAMS", params)]);
        assert!(out.status.success() && out.stderr.is_empty(), "{hook} {params}: {out:?}");
    }
    assert_eq!(hooks.calls(), expected);
    assert!(built.exists());
    let out = hooks.run("postrm.d", &[VERSION, IMAGE], &[("DEB_MAINT_PARAMS", "remove")]);
    assert!(out.status.success(), "{out:?}");
    assert!(!built.exists());
    // Without DEB_MAINT_PARAMS (run by hand, or by another kernel packager): every NIC.
    let hooks = Hooks::new(Some("OUTPUT=TMP/boot/%v/initrd-%v\n"));
    std::fs::create_dir(hooks.dir.0.join(format!("boot/{VERSION}"))).unwrap();
    assert!(hooks.run("postinst.d", &[VERSION], &[]).status.success());
    let built = hooks.dir.0.join(format!("boot/{VERSION}/initrd-{VERSION}"));
    assert_eq!(hooks.calls(), format!("initramfs --kernel-version {VERSION} -o {}\n", built.display()));
    // INITRD=No: a kernel without an initramfs.
    let out = hooks.run("postinst.d", &["6.1.0-1-amd64"], &[("INITRD", "No")]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(hooks.calls().lines().count(), 1);
    // The package removed, its hooks kept (conffiles): no stateless, nothing built, nothing said;
    // what it built is still removed with its kernel.
    let bare = "/usr/bin:/bin";
    require(!["/usr/bin/stateless", "/bin/stateless"].iter().any(|p| Path::new(p).exists()), "no stateless on PATH");
    let out = hooks.run("postinst.d", &["6.1.0-1-amd64"], &[("PATH", bare)]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(hooks.calls().lines().count(), 1);
    let built = hooks.dir.0.join("boot/6.1.0-1-amd64/initrd-6.1.0-1-amd64");
    common::write(&built, "image");
    let out = hooks.run("postrm.d", &["6.1.0-1-amd64"], &[("PATH", bare)]);
    assert!(out.status.success() && !built.exists(), "{out:?}");
}

#[test]
fn kernel_hooks_do_nothing_unless_configured_and_refuse_a_bad_config() {
    // The config the package installs: nothing built, and it says so.
    let hooks = Hooks::new(Some(&common::read(&debian("initramfs.conf"))));
    let out = hooks.run("postinst.d", &[VERSION, IMAGE], &[("DEB_MAINT_PARAMS", "configure")]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no OUTPUT= in ") && said.contains(VERSION), "{said}");
    let out = hooks.run("postrm.d", &[VERSION, IMAGE], &[("DEB_MAINT_PARAMS", "remove")]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    // No config file at all: the same.
    let none = Hooks::new(None);
    assert!(none.run("postinst.d", &[VERSION], &[]).status.success());
    assert_eq!(hooks.calls() + &none.calls(), "");
    // No version: the kernel package's mistake, said.
    let out = hooks.run("postinst.d", &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("passed no kernel version"));
    let out = hooks.run("postrm.d", &[], &[]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("passed no kernel version"));
    // A version that is not one path component never leads %v out of OUTPUT's dir.
    let hooks = Hooks::new(Some("OUTPUT=TMP/boot/%v/initrd\n"));
    let victim = hooks.dir.0.join("victim/initrd");
    common::write(&victim, "not the hook's");
    for version in ["../victim", "..", "a/b"] {
        let out = hooks.run("postinst.d", &[version], &[]);
        assert_eq!(out.status.code(), Some(2), "{version}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a plain name"), "{out:?}");
        let out = hooks.run("postrm.d", &[version], &[("DEB_MAINT_PARAMS", "remove")]);
        assert!(out.status.success(), "{version}: {out:?}");
    }
    assert!(victim.exists(), "removed through %v");
    assert_eq!(hooks.calls(), "");
    // A line the hook does not know, a relative OUTPUT, one without %v: refused, nothing built.
    for (config, error) in [
        ("OUTPUT=TMP/x-%v\nNICS=e1000\n", "line 2: not OUTPUT= or NIC="),
        ("OUTPUT=boot/x-%v\n", "OUTPUT must be an absolute path with %v"),
        ("OUTPUT=TMP/boot/initrd\n", "OUTPUT must be an absolute path with %v"),
    ] {
        let hooks = Hooks::new(Some(config));
        let out = hooks.run("postinst.d", &[VERSION], &[]);
        assert_eq!(out.status.code(), Some(1), "{config}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(error), "{config}: {out:?}");
        assert_eq!(hooks.calls(), "");
    }
}

#[test]
fn kernel_hooks_never_touch_the_kernels_files_nor_block_its_removal() {
    // The kernel's image (its path as the kernel package passes it) and /boot's kernel and
    // initramfs-tools files: refused on install, kept on removal. A version no /boot here has.
    let version = "0.0.0-stateless-hook-test";
    for name in ["vmlinuz", "initrd.img", "System.map"] {
        require(!Path::new(&format!("/boot/{name}-{version}")).exists(), "a version not in /boot");
    }
    let hooks = Hooks::new(Some("OUTPUT=TMP/boot/vmlinuz-%v\n"));
    let image = hooks.dir.0.join(format!("boot/vmlinuz-{version}"));
    common::write(&image, "kernel");
    for config in ["OUTPUT=TMP/boot/vmlinuz-%v\n", "OUTPUT=/boot/vmlinuz-%v\n", "OUTPUT=/boot/initrd.img-%v\n"] {
        common::write(&hooks.dir.0.join("initramfs.conf"), &config.replace("TMP", hooks.dir.0.to_str().unwrap()));
        let out = hooks.run("postinst.d", &[version, image.to_str().unwrap()], &[("DEB_MAINT_PARAMS", "configure")]);
        assert_eq!(out.status.code(), Some(1), "{config}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("initramfs-tools' file: nothing done"), "{out:?}");
        let out = hooks.run("postrm.d", &[version, image.to_str().unwrap()], &[("DEB_MAINT_PARAMS", "remove")]);
        assert!(out.status.success() && !out.stderr.is_empty(), "{config}: {out:?}");
    }
    assert_eq!(common::read(&image), "kernel");
    assert_eq!(hooks.calls(), "");
    // A config broken after the install: said, and the kernel is still removed.
    let built = hooks.dir.0.join(format!("boot/stateless.img-{version}"));
    common::write(&built, "image");
    for config in ["OUTPUT=TMP/boot/stateless.img-%v\nNICS=e1000\n", "OUTPUT=TMP/boot/%v/\n", "OUTPUT=boot/%v\n"] {
        common::write(&hooks.dir.0.join("initramfs.conf"), &config.replace("TMP", hooks.dir.0.to_str().unwrap()));
        let out = hooks.run("postrm.d", &[version], &[("DEB_MAINT_PARAMS", "remove")]);
        assert!(out.status.success() && !out.stderr.is_empty(), "{config}: {out:?}");
        let out = hooks.run("postinst.d", &[version], &[]);
        assert_eq!(out.status.code(), Some(1), "{config}: {out:?}");
    }
    assert!(built.exists());
    // OUTPUT a dir: said, kept, and the kernel is still removed.
    common::write(&hooks.dir.0.join("initramfs.conf"), &format!("OUTPUT={}/boot/%v\n", hooks.dir.0.display()));
    common::write(&hooks.dir.0.join(format!("boot/{version}/kept")), "");
    let out = hooks.run("postrm.d", &[version], &[("DEB_MAINT_PARAMS", "remove")]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("is a dir"), "{out:?}");
    assert!(hooks.dir.0.join(format!("boot/{version}/kept")).exists());
    // A symlink at OUTPUT: the link removed, not what it points to.
    let target = hooks.dir.0.join("target");
    common::write(&target, "not the hook's");
    std::fs::remove_dir_all(hooks.dir.0.join(format!("boot/{version}"))).unwrap();
    std::os::unix::fs::symlink(&target, hooks.dir.0.join(format!("boot/{version}"))).unwrap();
    assert!(hooks.run("postrm.d", &[version], &[("DEB_MAINT_PARAMS", "remove")]).status.success());
    assert!(hooks.dir.0.join(format!("boot/{version}")).symlink_metadata().is_err() && target.exists());
    // CRLF line ends: the CR is no part of a value.
    common::write(
        &hooks.dir.0.join("initramfs.conf"),
        &format!("OUTPUT={}/boot/i-%v\r\nNIC=e1000\r\n", hooks.dir.0.display()),
    );
    let out = hooks.run("postinst.d", &[version], &[]);
    assert!(out.status.success(), "{out:?}");
    let built = hooks.dir.0.join(format!("boot/i-{version}"));
    assert_eq!(hooks.calls(), format!("initramfs --kernel-version {version} --nic e1000 -o {}\n", built.display()));
    assert!(built.exists());
}

/// The hook with the real `stateless` ($STATELESS_BIN) and a real module tree: this machine's (read only), the
/// image written into the temp dir.
#[test]
#[ignore = "needs the release build, a kernel module tree in /lib/modules and zstd (tests/run has them)"]
fn kernel_hook_builds_a_real_initramfs() {
    let release = std::fs::read_dir("/lib/modules")
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p.join("modules.dep")).is_ok_and(|dep| dep.contains("/virtio_net.ko")));
    require(release.is_some(), "a module tree with virtio_net.ko in /lib/modules");
    require(Command::new("zstd").arg("--version").output().is_ok_and(|o| o.status.success()), "the zstd command");
    let release = release.unwrap().file_name().unwrap().to_str().unwrap().to_owned();
    let hooks = Hooks::new(Some("OUTPUT=TMP/boot/stateless.img-%v\nNIC=virtio_net\n"));
    // The release build (the test build is ten times its size: zstd -19 takes a minute on it).
    let bin = std::env::var("STATELESS_BIN");
    require(bin.is_ok(), "STATELESS_BIN, the release build (tests/run sets it)");
    std::fs::copy(bin.unwrap(), hooks.dir.0.join("bin/stateless")).unwrap();
    let out = hooks.run("postinst.d", &[&release], &[("DEB_MAINT_PARAMS", "configure")]);
    assert!(out.status.success(), "{out:?}");
    let built = hooks.dir.0.join(format!("boot/stateless.img-{release}"));
    let magic = std::fs::read(&built).unwrap();
    assert_eq!(magic[..4], [0x28, 0xb5, 0x2f, 0xfd], "a zstd archive");
    assert!(hooks.run("postrm.d", &[&release], &[("DEB_MAINT_PARAMS", "remove")]).status.success());
    assert!(!built.exists());
}

#[test]
#[ignore = "needs shellcheck (tests/run installs it)"]
fn package_scripts_are_shellcheck_clean() {
    let ok = Command::new("shellcheck").arg("--version").output().is_ok_and(|o| o.status.success());
    require(ok, "shellcheck (apt-get install shellcheck)");
    for (shell, file) in [("sh", "kernel-hook"), ("sh", "manpage"), ("sh", "build"), ("bash", "bash-completion")] {
        let out = Command::new("shellcheck").args(["-s", shell]).arg(debian(file)).output().unwrap();
        assert!(out.status.success(), "debian/{file}: {}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn package_version_is_the_crates() {
    let changelog = common::read(&debian("changelog"));
    let first = changelog.lines().next().unwrap();
    assert_eq!(first.split(['(', ')']).nth(1), Some(env!("CARGO_PKG_VERSION")), "{first}");
}

/// The package debian/build made (tests/run builds it before the tests): the release binary as
/// it is, the man pages debian/manpage makes from that binary now, no dependency, no maintainer
/// script, its /etc files conffiles.
#[test]
#[ignore = "needs the package and the release build (tests/run builds both first)"]
fn built_package_holds_this_binary_and_its_help() {
    let deb = Path::new(MANIFEST).join(format!("target/debian/stateless_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    require(deb.exists(), "the package (debian/build)");
    let bin = std::env::var("STATELESS_BIN");
    require(bin.is_ok(), "STATELESS_BIN, the release build (tests/run sets it)");
    let bin = PathBuf::from(bin.unwrap());
    let tmp = TempDir::new("deb");
    let (root, control) = (tmp.0.join("root"), tmp.0.join("control"));
    for (flag, dir) in [("-x", &root), ("-e", &control)] {
        let out = Command::new("dpkg-deb").arg(flag).arg(&deb).arg(dir).output().unwrap();
        assert!(out.status.success(), "dpkg-deb {flag}: {out:?}");
    }
    assert!(std::fs::read(root.join("usr/sbin/stateless")).unwrap() == std::fs::read(&bin).unwrap(), "a stale package");
    let mut scripts: Vec<String> =
        std::fs::read_dir(&control).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    scripts.sort();
    assert_eq!(scripts, ["conffiles", "control", "md5sums"], "no maintainer scripts");
    let fields = common::read(&control.join("control"));
    assert!(!fields.contains("Depends:") && !fields.contains("Pre-Depends:"), "{fields}");
    let conffiles = common::read(&control.join("conffiles"));
    assert_eq!(
        conffiles,
        "/etc/kernel/postinst.d/stateless\n/etc/kernel/postrm.d/stateless\n/etc/stateless/initramfs.conf\n"
    );
    let pages = tmp.0.join("pages");
    std::fs::create_dir(&pages).unwrap();
    let out = Command::new(debian("manpage")).arg(&bin).arg(Path::new(MANIFEST).join("README.md")).arg(&pages).output();
    assert!(out.unwrap().status.success());
    let body = |text: String| text.split_once('\n').unwrap().1.to_owned();
    for page in std::fs::read_dir(&pages).unwrap().map(|e| e.unwrap().path()) {
        let name = page.file_name().unwrap().to_str().unwrap();
        let packed = root.join(format!("usr/share/man/man8/{name}.gz"));
        let out = Command::new("gzip").arg("-dc").arg(&packed).output().unwrap();
        assert!(out.status.success(), "{}: {out:?}", packed.display());
        // All but the .TH line, which has the changelog's date.
        let same = body(String::from_utf8(out.stdout).unwrap()) == body(common::read(&page));
        assert!(same, "{name}: not what debian/manpage makes of this binary (a stale package?)");
    }
    let completion = root.join("usr/share/bash-completion/completions/stateless");
    assert_eq!(common::read(&completion), common::read(&debian("bash-completion")));
}
