//! The oracle test of module resolution: for every modalias on this machine's /sys and the
//! fixture set from other hardware (tests/data/kmod/modaliases.txt), `stateless` and kmod's own
//! `modprobe` resolve them against the installed Debian kernel's module tree; the modules chosen
//! (`modprobe -R`) and, for each, the probe list (`modprobe --show-depends`: dependencies,
//! softdeps, order) must be identical. modprobe runs with `-C /dev/null`: the host's
//! modprobe.d is not the image's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use stateless::kmod::config::Config;
use stateless::kmod::index::Index;
use stateless::kmod::resolve::Rules;

/// The installed Debian kernel's module dir (linux-image-amd64, which tests/run installs).
fn debian_tree() -> PathBuf {
    let mut trees: Vec<PathBuf> = std::fs::read_dir("/lib/modules")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    trees.retain(|t| t.to_string_lossy().ends_with("-amd64") && t.join("modules.alias").is_file());
    trees.sort();
    common::require(!trees.is_empty(), "a Debian kernel's modules in /lib/modules/*-amd64 (linux-image-amd64)");
    trees.pop().unwrap()
}

fn index_of(tree: &Path) -> Index {
    let read = |f: &str| std::fs::read(tree.join(f)).unwrap_or_default();
    Index::parse(
        &read("modules.dep"),
        &read("modules.alias"),
        &read("modules.softdep"),
        &read("modules.builtin"),
        &read("modules.builtin.modinfo"),
    )
}

fn modprobe(release: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new("modprobe").args(["-C", "/dev/null", "-S", release]).args(args).output();
    let out = out.unwrap_or_else(|e| panic!("missing prerequisite: modprobe (kmod): {e}"));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Every modalias under /sys/devices (bounded walk, no symlinks followed).
fn sysfs_modaliases() -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/sys/devices")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if entry.file_name() == "modalias" {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    found.push(text.trim().to_string());
                }
            }
        }
    }
    found
}

#[test]
#[ignore = "needs the installed Debian kernel's module tree and modprobe (tests/run installs them)"]
fn resolution_is_identical_to_kmods() {
    let tree = debian_tree();
    let release = tree.file_name().unwrap().to_string_lossy().into_owned();
    let index = index_of(&tree);
    let config = Config::default();
    let rules = Rules { index: &index, config: &config };
    assert!(index.problems.is_empty(), "Debian's own index: {:?}", index.problems);
    let fixtures =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kmod/modaliases.txt")).unwrap();
    let mut names: BTreeSet<String> = sysfs_modaliases().into_iter().filter(|a| !a.is_empty()).collect();
    names.extend(fixtures.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string));

    let mut modules = BTreeSet::new();
    let mut resolved = 0;
    for name in &names {
        let ours: BTreeSet<String> = rules.lookup(name).into_iter().map(|f| f.module).collect();
        let theirs: BTreeSet<String> =
            modprobe(&release, &["-R", name]).into_iter().map(|m| m.replace('-', "_")).collect();
        assert_eq!(ours, theirs, "{name}");
        resolved += usize::from(!ours.is_empty());
        modules.extend(ours);
    }
    assert!(resolved >= 20, "the fixtures resolve to modules: only {resolved}");

    for module in &modules {
        let mut ours = Vec::new();
        rules.probe_list(module, &mut ours);
        let ours: Vec<String> = ours.into_iter().map(|s| s.module).collect();
        let mut theirs: Vec<String> = Vec::new();
        for line in modprobe(&release, &["--show-depends", module]) {
            let name = match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["insmod", path, ..] => stateless::kmod::index::name_of(path).unwrap().replace('-', "_"),
                ["builtin", name] => name.replace('-', "_"),
                _ => panic!("{module}: unexpected line {line:?}"),
            };
            // kmod lists a module a second time when a softdep reaches it again: the first counts.
            if !theirs.contains(&name) {
                theirs.push(name);
            }
        }
        assert_eq!(ours, theirs, "probe list of {module}");
    }
    println!("{} names and modaliases, {} modules: identical to modprobe of {release}", names.len(), modules.len());
}

/// The same with a modprobe.d file: an alias of its own, a softdep with `pre:` and `post:`, a
/// blacklist (`modprobe -b`, as udev runs it for a device, loads nothing for that alias).
#[test]
#[ignore = "needs the installed Debian kernel's module tree and modprobe (tests/run installs them)"]
fn configuration_is_read_as_kmod_reads_it() {
    let tree = debian_tree();
    let release = tree.file_name().unwrap().to_string_lossy().into_owned();
    let index = index_of(&tree);
    let text = "alias my-nic e1000\nsoftdep e1000 pre: crc32c post: virtio_net\nblacklist pcspkr\n";
    let dir = common::TempDir::new("kmod-conf");
    let file = dir.0.join("lab.conf");
    std::fs::write(&file, text).unwrap();
    let mut config = Config::default();
    config.add_file("lab.conf", text.as_bytes());
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    let rules = Rules { index: &index, config: &config };
    let modprobe = |args: &[&str]| {
        let out = Command::new("modprobe").arg("-C").arg(&file).args(["-S", &release]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    let ours: Vec<String> = rules.lookup("my-nic").into_iter().map(|f| f.module).collect();
    assert_eq!(ours, modprobe(&["-R", "my-nic"]));
    let mut list = Vec::new();
    rules.probe_list("e1000", &mut list);
    let ours: Vec<String> = list.into_iter().map(|s| s.module).collect();
    let theirs: Vec<String> = modprobe(&["--show-depends", "my-nic"])
        .iter()
        .filter_map(|l| {
            l.split_whitespace().nth(1).and_then(stateless::kmod::index::name_of).map(|n| n.replace('-', "_"))
        })
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains(&"virtio_net".to_string()) && ours[0] == "crc32c_intel", "{ours:?}");
    // Blacklisted for a device: modprobe -b prints nothing to load, and neither does coldplug.
    assert!(modprobe(&["-b", "--show-depends", "platform:pcspkr"]).is_empty());
    let device = stateless::kmod::coldplug::Device {
        path: "devices/platform/pcspkr".into(),
        modalias: "platform:pcspkr".into(),
    };
    let (matches, load) = stateless::kmod::coldplug::plan(rules, vec![device], &BTreeSet::new());
    assert!(load.is_empty() && matches[0].blacklisted.len() == 1);
}
