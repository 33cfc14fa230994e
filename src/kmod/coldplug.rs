//! Coldplug without udev: every device with a `modalias`, and the modules those resolve to, in
//! kmod's load order. The devices are listed bus by bus (no recursive walk, so sysfs's links
//! back up the tree cannot loop it), bounded in number; only printable modaliases are taken.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::resolve::{Found, Probe, Rules};

/// Most devices looked at.
const MAX_ENTRIES: usize = 100_000;
/// Longest modalias read (the kernel's are under 4 KiB).
const MODALIAS_LIMIT: usize = 4096;

/// A device and its modalias.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Where it was found below the sysfs root (`bus/pci/devices/0000:00:03.0`).
    pub path: String,
    pub modalias: String,
}

/// The devices with a modalias: those of every bus (`<sysfs>/bus/*/devices/*`, sorted), and
/// the CPU's features (`<sysfs>/devices/system/cpu`) and the DMI strings (`<sysfs>/class/dmi/id`),
/// which belong to no bus device. One directory listing per
/// bus: under emulation a walk of all of `/sys/devices` costs a hundred milliseconds and more.
pub fn devices(sysfs: &Path) -> io::Result<Vec<Device>> {
    let mut found = Vec::new();
    let mut seen = 0usize;
    let buses = sorted_names(&sysfs.join("bus"))?;
    for bus in buses {
        let dir = sysfs.join("bus").join(&bus).join("devices");
        for name in sorted_names(&dir).unwrap_or_default() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Err(io::Error::other(format!("more than {MAX_ENTRIES} devices")));
            }
            // The entry is sysfs's link to the device: its modalias is read through it.
            if let Some(modalias) = read_modalias(&dir.join(&name).join("modalias")) {
                found.push(Device { path: format!("bus/{bus}/devices/{name}"), modalias });
            }
        }
    }
    // Class devices udev's coldplug triggers too and drivers match on: the CPU's features and
    // the firmware's DMI strings.
    for path in ["devices/system/cpu", "class/dmi/id"] {
        if let Some(modalias) = read_modalias(&sysfs.join(path).join("modalias")) {
            found.push(Device { path: path.into(), modalias });
        }
    }
    Ok(found)
}

fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir)?.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect();
    names.sort();
    Ok(names)
}

fn read_modalias(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(MODALIAS_LIMIT + 1))?).ok()?.trim_end();
    (!text.is_empty() && text.len() <= MODALIAS_LIMIT && text.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| text.to_string())
}

/// What coldplug does with one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Match {
    pub device: Device,
    /// What its modalias resolved to (empty: no driver module for it).
    pub modules: Vec<Found>,
    /// What it resolved to but the blacklist holds back.
    pub blacklisted: Vec<Found>,
}

/// One module of the load plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub module: String,
    /// Relative to the module dir; `None` when built in.
    pub path: Option<String>,
    pub state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// To be loaded.
    Load,
    /// Part of the kernel image.
    BuiltIn,
    /// Already in the running kernel (/proc/modules).
    Loaded,
    /// Named by the index (an alias, a dependency) but not listed in modules.dep: cannot load.
    Missing,
}

/// The coldplug plan: each device's modules, and every module to load in kmod's order (each
/// once), those built in or already loaded marked so. A blacklisted module is not loaded for a
/// device (`modprobe -b`, as udev runs it), though it may still come in as another's
/// dependency; the device lists it under `blacklisted`.
pub fn plan(rules: Rules<'_>, devices: Vec<Device>, loaded: &BTreeSet<String>) -> (Vec<Match>, Vec<Planned>) {
    let mut order: Vec<Probe> = Vec::new();
    let mut matches = Vec::new();
    for device in devices {
        let (blacklisted, modules): (Vec<Found>, Vec<Found>) =
            rules.lookup(&device.modalias).into_iter().partition(|f| rules.config.blacklist.contains(&f.module));
        // As kmod and udev: a module built in or already loaded is done, softdeps and all.
        for found in modules.iter().filter(|f| !f.builtin && !loaded.contains(&f.module)) {
            rules.probe_list(&found.module, &mut order);
        }
        matches.push(Match { device, modules, blacklisted });
    }
    (matches, planned(order, loaded))
}

/// A probe list as a plan: built-in modules and those in `loaded` marked so.
pub fn planned(order: Vec<Probe>, loaded: &BTreeSet<String>) -> Vec<Planned> {
    order
        .into_iter()
        .map(|step| {
            let state = match &step.path {
                None if step.builtin => State::BuiltIn,
                None => State::Missing,
                Some(_) if loaded.contains(&step.module) => State::Loaded,
                Some(_) => State::Load,
            };
            Planned { module: step.module, path: step.path, state }
        })
        .collect()
}

/// The names in `/proc/modules` (normalised).
pub fn loaded(proc_modules: &str) -> BTreeSet<String> {
    proc_modules.lines().filter_map(|l| l.split_whitespace().next()).map(super::index::normalize).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kmod::config::Config;
    use crate::kmod::index::Index;

    #[test]
    fn lists_the_devices_of_every_bus() {
        let root = std::env::temp_dir().join(format!("stateless-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pci = root.join("devices/pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(pci.join("virtio0")).unwrap();
        std::fs::write(pci.join("modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n").unwrap();
        std::fs::write(pci.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        std::fs::create_dir_all(root.join("devices/platform/bad")).unwrap();
        std::fs::write(root.join("devices/platform/bad/modalias"), "a b\x01\n").unwrap();
        std::fs::create_dir_all(root.join("devices/system/cpu")).unwrap();
        std::fs::write(root.join("devices/system/cpu/modalias"), "cpu:type:x86,ven0000fam0006mod003F:feature:,0000\n")
            .unwrap();
        for (bus, name, target) in [
            ("pci", "0000:00:03.0", pci.clone()),
            ("virtio", "virtio0", pci.join("virtio0")),
            ("platform", "bad", root.join("devices/platform/bad")),
            ("platform", "gone", root.join("devices/platform/gone")),
        ] {
            std::fs::create_dir_all(root.join("bus").join(bus).join("devices")).unwrap();
            std::os::unix::fs::symlink(target, root.join("bus").join(bus).join("devices").join(name)).unwrap();
        }
        let found = devices(&root).unwrap();
        assert_eq!(
            found.iter().map(|d| (d.path.as_str(), d.modalias.as_str())).collect::<Vec<_>>(),
            [
                ("bus/pci/devices/0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
                ("bus/virtio/devices/virtio0", "virtio:d00000001v00001AF4"),
                ("devices/system/cpu", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000"),
            ]
        );
        assert!(devices(&root.join("nowhere")).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn plans_each_module_once_in_order() {
        let dep = b"kernel/drivers/virtio/virtio_ring.ko:\nkernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
            kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
            kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n";
        let alias = b"alias virtio:d00000001v* virtio_net\nalias virtio:d00000002v* virtio_blk\n";
        let index = Index::parse(
            dep,
            alias,
            b"",
            b"kernel/drivers/virtio/virtio_pci.ko\n",
            b"virtio_pci.alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0",
        );
        let device = |path: &str, modalias: &str| Device { path: path.into(), modalias: modalias.into() };
        let devices = vec![
            device("devices/a", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
            device("devices/a/virtio0", "virtio:d00000001v00001AF4"),
            device("devices/b/virtio1", "virtio:d00000002v00001AF4"),
            device("devices/c", "acpi:PNP0303:"),
        ];
        let mut config = Config::default();
        config.blacklist.insert("virtio_blk".into());
        let rules = Rules { index: &index, config: &config };
        let (matches, planned) = plan(rules, devices, &BTreeSet::from(["virtio_ring".to_string()]));
        assert!(matches[3].modules.is_empty());
        assert_eq!(matches[2].blacklisted.iter().map(|f| f.module.as_str()).collect::<Vec<_>>(), ["virtio_blk"]);
        let states: Vec<(&str, State)> = planned.iter().map(|p| (p.module.as_str(), p.state)).collect();
        assert_eq!(
            states,
            // virtio_pci is built in: nothing to plan for it, as kmod and udev leave it.
            [("virtio_ring", State::Loaded), ("virtio", State::Load), ("virtio_net", State::Load),]
        );
        assert_eq!(
            loaded("virtio_net 61440 0 - Live 0x0\ncrc32c-intel 1 0 - Live 0x0\n"),
            BTreeSet::from(["virtio_net".into(), "crc32c_intel".into()])
        );
    }
}
