//! The boot interface's name as the image's udev would give it. In initramfs mode (and with the
//! kernel's `ip=`) the interface comes up under the kernel's name (`eth0`); systemd-udevd in the
//! image then renames it to its predictable name, and kernels since 6.2 allow that while it is up
//! (`ens3: renamed from eth0 (while UP)`), leaving what is keyed by the old name behind
//! (ifupdown's state, klibc's `net-eth0.conf`). Renamed here first, before the network files are
//! written, it keeps one name: udev leaves a name userspace gave (`NamePolicy=keep`, the first
//! policy of systemd's 99-default.link since v240). docs/network.md gives the sources followed.
//!
//! [`NetDevice::read`] reads what udev's `net_id` builtin reads from sysfs (PCI names only: onboard
//! `eno<N>`, hotplug slot `ens<N>`, path `enp<B>s<S>`, MAC `enx<MAC>`); [`links`] reads the image's
//! `.link` files; [`decide`] picks the first that matches, as udev does, and applies its
//! `NamePolicy=` and `Name=`. What cannot be told (a match key not understood, an SR-IOV function,
//! `net.naming-scheme=`) keeps the kernel's name, as before.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::read_link;
use std::path::{Path, PathBuf};

use crate::config::Cmdline;
use crate::fs::netconf::plain_interface_name;
use crate::fs::root::{read_named, ImageRoot};
use crate::kmod::fnmatch;
use crate::model::interface::format_mac;

/// `name_assign_type` (linux/netdevice.h): the kernel named it predictably.
const NET_NAME_PREDICTABLE: u32 = 2;
/// Named by userspace (at creation).
const NET_NAME_USER: u32 = 3;
/// Renamed by userspace.
const NET_NAME_RENAMED: u32 = 4;
/// linux/if_arp.h.
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_INFINIBAND: u32 = 32;
const ARPHRD_SLIP: u32 = 256;
/// Where udev reads `.link` files, the first holding a name winning (systemd's NETWORK_DIRS;
/// /lib for images without merged /usr).
const LINK_DIRS: [&str; 5] = [
    "etc/systemd/network",
    "run/systemd/network",
    "usr/local/lib/systemd/network",
    "usr/lib/systemd/network",
    "lib/systemd/network",
];
/// udev's rule that gives an interface the name its `.link` file decided.
const SETUP_LINK_RULES: &str = "80-net-setup-link.rules";
/// A `.link` file is small; a larger one is not read.
const LINK_LIMIT: u64 = 64 * 1024;

/// What udev knows of a network device when it names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetDevice {
    pub name: String,
    /// `name_assign_type`; `None` when sysfs does not say (NET_NAME_UNKNOWN).
    pub assign: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// The MAC is the permanent one (`addr_assign_type` 0).
    pub permanent: bool,
    /// `Type=`: `ether`, `wlan`, `wwan`, `infiniband`, `slip`.
    pub kind: Option<&'static str>,
    pub driver: Option<String>,
    /// `ID_PATH` (`pci-0000:00:03.0`) and `ID_BUS` (`pci`), for a PCI device.
    pub path: Option<String>,
    pub bus: Option<&'static str>,
    /// `ID_NET_NAME_ONBOARD`, `_SLOT`, `_PATH`, `_MAC`.
    pub onboard: Option<String>,
    pub slot: Option<String>,
    pub path_name: Option<String>,
    pub mac_name: Option<String>,
    /// The onboard, slot and path names were computed (a PCI function, no SR-IOV VF); else
    /// what udev gives for them is not known.
    pub located: bool,
}

/// A sysfs attribute, trimmed; `None` when missing or unreadable.
fn attr(dir: &Path, name: &str) -> Option<String> {
    let bytes = read_named(&dir.join(name), 4096).ok()??;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}

fn number(dir: &Path, name: &str) -> Option<u32> {
    attr(dir, name)?.parse().ok()
}

/// The last component of a symlink's target (`subsystem`, `driver`).
fn link_name(path: &Path) -> Option<String> {
    Some(read_link(path).ok()?.file_name()?.to_string_lossy().into_owned())
}

fn subsystem(dev: &Path) -> Option<String> {
    link_name(&dev.join("subsystem"))
}

impl NetDevice {
    /// Reads `<sysfs>/class/net/<name>`; what is missing is left unknown (no name from it).
    pub fn read(sysfs: &Path, name: &str, mac: Option<[u8; 6]>) -> NetDevice {
        let net = sysfs.join("class/net").join(name);
        let iftype = number(&net, "type");
        let devtype =
            attr(&net, "uevent").and_then(|u| u.lines().find_map(|l| l.strip_prefix("DEVTYPE=").map(str::to_string)));
        let kind = match (iftype, devtype.as_deref()) {
            (Some(ARPHRD_ETHER), Some("wlan")) => Some("wlan"),
            (Some(ARPHRD_ETHER), Some("wwan")) => Some("wwan"),
            (Some(ARPHRD_ETHER), _) => Some("ether"),
            (Some(ARPHRD_INFINIBAND), _) => Some("infiniband"),
            (Some(ARPHRD_SLIP), _) => Some("slip"),
            _ => None,
        };
        let mut device = NetDevice {
            name: name.to_string(),
            assign: number(&net, "name_assign_type"),
            mac,
            permanent: number(&net, "addr_assign_type") == Some(0),
            kind,
            driver: link_name(&net.join("device/driver")),
            ..NetDevice::default()
        };
        let prefix = match kind {
            Some("wlan") => "wl",
            Some("wwan") => "ww",
            Some("ether") => "en",
            Some("infiniband") => "ib",
            Some("slip") => "sl",
            _ => return device,
        };
        // A stacked device (VLAN, ...) is not named.
        if attr(&net, "iflink") != attr(&net, "ifindex") {
            return device;
        }
        if let (Some(mac), true, false) = (mac, device.permanent, kind == Some("infiniband")) {
            device.mac_name = Some(format!("{prefix}x{}", format_mac(&mac).replace(':', "")));
        }
        // The parent, past any virtio bus (one per parent device), must be a PCI function.
        let Ok(mut parent) = net.join("device").canonicalize() else { return device };
        while subsystem(&parent).as_deref() == Some("virtio") {
            let Some(up) = parent.parent() else { return device };
            parent = up.to_path_buf();
        }
        if subsystem(&parent).as_deref() == Some("pci") {
            device.bus = Some("pci");
            pci_names(&mut device, sysfs, &net, &parent, prefix);
        }
        device
    }
}

/// `dddd:bb:ss.f` (hex, hex, hex, decimal).
fn pci_address(sysname: &str) -> Option<(u32, u32, u32, u32)> {
    let (domain, rest) = sysname.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, func) = rest.split_once('.')?;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    Some((hex(domain)?, hex(bus)?, hex(slot)?, func.parse().ok()?))
}

/// The port part: `n<phys_port_name>` (`r<vf>` for a VF representor), else `d<dev_port>`.
fn port(net: &Path) -> String {
    if let Some(name) = attr(net, "phys_port_name").filter(|n| !n.is_empty()) {
        let vf = name.strip_prefix("pf").and_then(|r| r.split_once("vf"));
        return match vf {
            Some((pf, vf)) if pf.parse::<u32>().is_ok() && vf.parse::<u32>().is_ok() => format!("r{vf}"),
            _ => format!("n{name}"),
        };
    }
    number(net, "dev_port").filter(|p| *p > 0).map(|p| format!("d{p}")).unwrap_or_default()
}

/// The header type's multi-function bit in the PCI configuration space.
fn multifunction(pci: &Path) -> bool {
    read_named(&pci.join("config"), 8192)
        .ok()
        .flatten()
        .and_then(|c| c.get(0x0e).copied())
        .is_some_and(|h| h & 0x80 != 0)
}

/// A PCI bridge: subclass 04 in the modalias (`...sc04...`), as net_id tells it.
fn bridge(pci: &Path) -> bool {
    let Some(alias) = attr(pci, "modalias").filter(|a| a.starts_with("pci:")) else { return false };
    alias.rfind('s').and_then(|i| alias.get(i + 1..i + 4)).is_some_and(|s| s == "c04")
}

/// The hotplug slot of `pci` or of the first PCI parent that has one (`<sysfs>/bus/pci/slots/<N>/address`
/// a prefix of its name); none when that device is a bridge (systemd 255 and later).
fn hotplug_slot(sysfs: &Path, pci: &Path) -> Option<u32> {
    let mut slots: Vec<(u32, String)> = std::fs::read_dir(sysfs.join("bus/pci/slots"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let slot = e.file_name().to_str()?.parse::<u32>().ok().filter(|s| *s > 0)?;
            Some((slot, attr(&e.path(), "address")?))
        })
        .collect();
    slots.sort();
    let mut dev = pci.to_path_buf();
    loop {
        let sysname = dev.file_name()?.to_string_lossy().into_owned();
        if let Some((slot, _)) = slots.iter().find(|(_, address)| sysname.starts_with(address.as_str())) {
            return (!bridge(&dev)).then_some(*slot);
        }
        dev = dev.parent()?.to_path_buf();
        if subsystem(&dev).as_deref() != Some("pci") {
            return None;
        }
    }
}

/// Onboard, slot and path names of a PCI function, as net_id's `names_pci`. An SR-IOV virtual
/// function (`physfn`) is left unnamed here.
fn pci_names(device: &mut NetDevice, sysfs: &Path, net: &Path, pci: &Path, prefix: &str) {
    if pci.join("physfn").exists() {
        return;
    }
    device.located = true;
    let sysname = pci.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    device.path = Some(format!("pci-{sysname}"));
    let port = port(net);
    let index = number(pci, "acpi_index").or_else(|| number(pci, "index"));
    if let Some(index) = index.filter(|i| *i <= u32::from(u16::MAX)) {
        device.onboard = Some(format!("{prefix}o{index}{port}"));
    }
    let Some((domain, bus, slot, mut func)) = pci_address(&sysname) else { return };
    if attr(pci, "ari_enabled").as_deref() == Some("1") {
        func = func.saturating_add(slot.saturating_mul(8));
    }
    let domain = if domain > 0 { format!("P{domain}") } else { String::new() };
    let func = if func > 0 || multifunction(pci) { format!("f{func}") } else { String::new() };
    device.path_name = Some(format!("{prefix}{domain}p{bus}s{slot}{func}{port}"));
    if let Some(hotplug) = hotplug_slot(sysfs, pci) {
        device.slot = Some(format!("{prefix}{domain}s{hotplug}{func}{port}"));
    }
}

/// One `.link` file: its `[Match]` entries and the naming part of `[Link]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkFile {
    /// Where it was read (`usr/lib/systemd/network/99-default.link`).
    pub file: String,
    /// Key and words; an empty assignment clears the key.
    matching: BTreeMap<String, Vec<String>>,
    policy: Option<Vec<String>>,
    name: Option<String>,
    /// A `<file>.d/` drop-in dir exists in one of the dirs: what it changes is not read.
    dropins: bool,
}

impl LinkFile {
    /// systemd's unit-file syntax, as far as naming goes: `#`/`;` comments, `[Section]`, `Key=value`.
    pub fn parse(file: &str, text: &str) -> LinkFile {
        let mut link = LinkFile { file: file.to_string(), ..LinkFile::default() };
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with(['#', ';']) || line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let (key, value) = (key.trim(), value.trim());
            let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
            match (section.as_str(), key) {
                ("Match", _) if words.is_empty() => {
                    link.matching.remove(key);
                }
                ("Match", _) => link.matching.entry(key.to_string()).or_default().extend(words),
                ("Link", "NamePolicy") => link.policy = Some(words),
                ("Link", "Name") => link.name = Some(value.to_string()).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        link
    }

    /// Whether it applies to `device`: every key matches. `Err` names a key not understood when
    /// every other key matches (one that does not match settles it: `Kind=veth` for a NIC).
    fn matches(&self, device: &NetDevice) -> Result<bool, String> {
        if self.matching.is_empty() {
            return Ok(false); // udev ignores a file without [Match]
        }
        let mut unknown = None;
        for (key, words) in &self.matching {
            // A leading `!` inverts the list.
            let invert = words.first().is_some_and(|w| w.starts_with('!'));
            let words: Vec<&str> = words.iter().map(|w| w.strip_prefix('!').unwrap_or(w)).collect();
            let globs = |value: Option<&str>| {
                value.is_some_and(|v| words.iter().any(|w| fnmatch::matches(w.as_bytes(), v.as_bytes())))
            };
            let macs = |mac: Option<[u8; 6]>| {
                mac.is_some_and(|m| words.iter().any(|w| w.to_ascii_lowercase().replace('-', ":") == format_mac(&m)))
            };
            let hit = match key.as_str() {
                "OriginalName" => globs(Some(&device.name)),
                "MACAddress" => macs(device.mac),
                "PermanentMACAddress" => macs(device.mac.filter(|_| device.permanent)),
                "Driver" => globs(device.driver.as_deref()),
                "Type" => globs(device.kind),
                "Path" => globs(device.path.as_deref()),
                // A NIC is no virtual device of a kind (veth, sit, ...).
                "Kind" => globs(None),
                // Only the bus: what else udev's rules set is not known here.
                "Property" if words.iter().all(|w| w.starts_with("ID_BUS=")) => {
                    let bus = device.bus.map(|b| format!("ID_BUS={b}"));
                    globs(bus.as_deref())
                }
                _ => {
                    unknown.get_or_insert_with(|| format!("{key}="));
                    continue;
                }
            };
            if hit == invert {
                return Ok(false);
            }
        }
        unknown.map_or(Ok(true), Err)
    }
}

/// The image's `.link` files in udev's order (by file name, the first directory holding a name
/// winning); one linked to /dev/null or empty is masked, left out. Unreadable ones are left out.
/// Each knows whether a drop-in dir (`<name>.d/`) exists for it in any of the dirs.
pub fn links(root: &ImageRoot) -> Vec<LinkFile> {
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut dropins: BTreeSet<String> = BTreeSet::new();
    for dir in LINK_DIRS {
        let Ok(opened) = root.dir(dir) else { continue };
        let Ok(entries) = std::fs::read_dir(&opened.path) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(file) = name.strip_suffix(".d").filter(|f| f.ends_with(".link")) {
                dropins.insert(file.to_string());
            }
            if name.ends_with(".link") && !found.contains_key(&name) {
                found.insert(name.clone(), Path::new(dir).join(&name));
            }
        }
    }
    let mut out = Vec::new();
    for (name, rel) in found {
        if read_link(root.host_path(&rel)).is_ok_and(|t| t == Path::new("/dev/null")) {
            continue;
        }
        match root.read_file(&rel, LINK_LIMIT) {
            Ok(Some(text)) if !text.iter().all(u8::is_ascii_whitespace) => {
                let link = LinkFile::parse(&rel.to_string_lossy(), &String::from_utf8_lossy(&text));
                out.push(LinkFile { dropins: dropins.contains(&name), ..link });
            }
            Ok(_) => {}
            Err(e) => log::warn!("{}: {e}: left out of the interface's naming", crate::model::text::escape_path(&rel)),
        }
    }
    out
}

/// The first of the admin's udev rules (`etc/udev/rules.d/*.rules`) that assigns `NAME=`: such a
/// rule (`70-persistent-net.rules` of old installs pins `eth0` by MAC and `KERNEL=="eth*"`) comes
/// before the `.link` files, and is not evaluated here. Or that replaces udev's rule that applies
/// the `.link` files' names ([`SETUP_LINK_RULES`]): masked (a documented way to keep the
/// kernel's names) or a copy of its own.
pub fn named_by_rules(root: &ImageRoot) -> Option<String> {
    let dir = "etc/udev/rules.d";
    let opened = root.dir(dir).ok()?;
    let mut names: Vec<String> = std::fs::read_dir(&opened.path)
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules"))
        .collect();
    names.sort();
    names.into_iter().map(|n| format!("{dir}/{n}")).find(|rel| {
        if rel.ends_with(SETUP_LINK_RULES) {
            return true;
        }
        let text = root.read_file(rel, LINK_LIMIT).ok().flatten().unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("NAME=\"") || l.contains("NAME:=\""))
    })
}

/// What the kernel command line says of naming: `net.ifnames=` (policies on or off, Name= still
/// applies) and whether `net.naming-scheme=` picks a scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Naming {
    pub policies: bool,
    pub scheme: bool,
}

impl Naming {
    pub fn from_cmdline(cmdline: &Cmdline) -> Naming {
        let mut naming = Naming { policies: true, scheme: false };
        for param in &cmdline.params {
            match param.key.as_str() {
                "net.ifnames" => {
                    naming.policies = !matches!(param.value.as_deref(), Some("0" | "no" | "n" | "false" | "f" | "off"));
                }
                "net.naming-scheme" => naming.scheme = true,
                _ => {}
            }
        }
        naming
    }
}

/// What to do with the boot interface's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep it, and why (udev keeps it too, or it cannot be told what udev would do).
    Keep(String),
    /// Rename it, and the `.link` file and policy that give the name.
    Rename { name: String, why: String },
}

/// The name udev would give `device`: the first `.link` file that matches, its `NamePolicy=` in
/// order (`kernel` and `keep` stop it; `database` is not read here), then its `Name=`. A name
/// that is not plain (see [`plain_interface_name`]) or all digits yields nothing, as udev's
/// `ifname_valid`.
pub fn decide(device: &NetDevice, links: &[LinkFile], naming: Naming) -> Decision {
    if naming.scheme {
        return Decision::Keep("net.naming-scheme= is set: the names of older schemes are not computed".into());
    }
    let mut matched = None;
    for link in links {
        match link.matches(device) {
            Ok(true) | Err(_) if link.dropins => {
                return Decision::Keep(format!("{}: its drop-ins (.link.d/) are not read here", link.file))
            }
            Ok(true) => {
                matched = Some(link);
                break;
            }
            Ok(false) => {}
            Err(key) => return Decision::Keep(format!("{} matches on {key}, not read here", link.file)),
        }
    }
    let Some(link) = matched else { return Decision::Keep("no .link file of the image matches it".into()) };
    let valid = |n: &&String| plain_interface_name(n) && !n.bytes().all(|b| b.is_ascii_digit());
    let rename = |name: &String, how: String| {
        if *name == device.name {
            Decision::Keep(format!("{} {how} gives it that name", link.file))
        } else {
            Decision::Rename { name: name.clone(), why: format!("{} {how}", link.file) }
        }
    };
    for policy in link.policy.iter().flatten().filter(|_| naming.policies) {
        let name = match policy.as_str() {
            "kernel" if device.assign == Some(NET_NAME_PREDICTABLE) => {
                return Decision::Keep(format!("{}: NamePolicy=kernel, a predictable kernel name", link.file))
            }
            "keep" if matches!(device.assign, Some(NET_NAME_USER | NET_NAME_RENAMED)) => {
                return Decision::Keep(format!("{}: NamePolicy=keep, a name userspace gave", link.file))
            }
            "onboard" | "slot" | "path" if !device.located => {
                let why = format!("{}: NamePolicy={policy}: this device's names are not computed here", link.file);
                return Decision::Keep(why);
            }
            "onboard" => device.onboard.as_ref(),
            "slot" => device.slot.as_ref(),
            "path" => device.path_name.as_ref(),
            "mac" => device.mac_name.as_ref(),
            _ => None,
        };
        if let Some(name) = name.filter(valid) {
            return rename(name, format!("NamePolicy={policy}"));
        }
    }
    match link.name.as_ref().filter(valid) {
        Some(name) => rename(name, "Name=".into()),
        None => Decision::Keep(format!("{}: no policy gives a name and there is no Name=", link.file)),
    }
}

/// Fake sysfs trees, laid out as the kernel lays them out.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    /// A device dir under `sysfs` with its `subsystem` link.
    pub fn device(sysfs: &Path, rel: &str, subsystem: &str) -> PathBuf {
        let dir = sysfs.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(sysfs.join("bus").join(subsystem)).unwrap();
        symlink(sysfs.join("bus").join(subsystem), dir.join("subsystem")).unwrap();
        dir
    }

    /// PCI function `pci` (a path below the host bridge), its virtio device and the interface
    /// `name` on it (index 2, kernel-named, permanent MAC), as QEMU's virtio-net-pci gives.
    pub fn virtio_nic(sysfs: &Path, pci: &str, name: &str) {
        let function = format!("devices/pci0000:00/{pci}");
        let dir = device(sysfs, &function, "pci");
        std::fs::write(dir.join("modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00").unwrap();
        std::fs::write(dir.join("config"), [0u8; 64]).unwrap();
        let virtio = device(sysfs, &format!("{function}/virtio0"), "virtio");
        std::fs::create_dir_all(sysfs.join("bus/virtio/drivers/virtio_net")).unwrap();
        symlink(sysfs.join("bus/virtio/drivers/virtio_net"), virtio.join("driver")).unwrap();
        let net = virtio.join("net").join(name);
        std::fs::create_dir_all(&net).unwrap();
        let uevent = format!("INTERFACE={name}\nIFINDEX=2\n");
        for (attr, value) in [
            ("type", "1"),
            ("ifindex", "2"),
            ("iflink", "2"),
            ("name_assign_type", "1"),
            ("addr_assign_type", "0"),
            ("dev_port", "0"),
            ("uevent", uevent.as_str()),
        ] {
            std::fs::write(net.join(attr), format!("{value}\n")).unwrap();
        }
        symlink(&virtio, net.join("device")).unwrap();
        std::fs::create_dir_all(sysfs.join("class/net")).unwrap();
        symlink(&net, sysfs.join("class/net").join(name)).unwrap();
    }

    /// Hotplug slot `number` at `address` (`0000:00:03`).
    pub fn slot(sysfs: &Path, number: &str, address: &str) {
        let dir = sysfs.join("bus/pci/slots").join(number);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("address"), format!("{address}\n")).unwrap();
    }
}

#[cfg(test)]
mod tests;
