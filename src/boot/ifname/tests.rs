use super::*;
use std::os::unix::fs::symlink;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const DEFAULT: &str = "[Match]\nOriginalName=*\n\n[Link]\nNamePolicy=keep kernel database onboard slot path\n\
                           AlternativeNamesPolicy=database onboard slot path mac\nMACAddressPolicy=persistent\n";

use super::testing::{device, slot, virtio_nic};

/// A fake sysfs in a temp dir, removed when dropped.
struct Sysfs(PathBuf);

impl Drop for Sysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Sysfs {
    fn new(tag: &str) -> Sysfs {
        let root = std::env::temp_dir().join(format!("stateless-ifname-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Sysfs(root)
    }

    fn device(&self, rel: &str, subsystem: &str) -> PathBuf {
        device(&self.0, rel, subsystem)
    }

    fn virtio_nic(&self, pci: &str, name: &str) {
        virtio_nic(&self.0, pci, name);
    }

    fn slot(&self, number: &str, address: &str) {
        slot(&self.0, number, address);
    }
}

fn net_dir(sysfs: &Sysfs, name: &str) -> PathBuf {
    sysfs.0.join("class/net").join(name).canonicalize().unwrap()
}

#[test]
fn qemu_virtio_in_a_hotplug_slot_is_ens3() {
    let sysfs = Sysfs::new("virtio");
    sysfs.virtio_nic("0000:00:03.0", "eth0");
    sysfs.slot("3", "0000:00:03");
    sysfs.slot("4", "0000:00:04");
    let device = NetDevice::read(&sysfs.0, "eth0", Some(MAC));
    assert_eq!(device.slot.as_deref(), Some("ens3"));
    assert_eq!(device.path_name.as_deref(), Some("enp0s3"));
    assert_eq!(device.mac_name.as_deref(), Some("enx525400123456"));
    assert_eq!(device.onboard, None);
    assert_eq!((device.kind, device.bus, device.driver.as_deref()), (Some("ether"), Some("pci"), Some("virtio_net")));
    assert_eq!(device.path.as_deref(), Some("pci-0000:00:03.0"));
    let links = [LinkFile::parse("usr/lib/systemd/network/99-default.link", DEFAULT)];
    let naming = Naming { policies: true, scheme: false };
    assert_eq!(
        decide(&device, &links, naming),
        Decision::Rename { name: "ens3".into(), why: "usr/lib/systemd/network/99-default.link NamePolicy=slot".into() }
    );
}

#[test]
fn onboard_index_then_path_without_a_slot_function_and_port() {
    let sysfs = Sysfs::new("onboard");
    sysfs.virtio_nic("0001:02:1f.3", "eth1");
    let pci = sysfs.0.join("devices/pci0000:00/0001:02:1f.3");
    let device = NetDevice::read(&sysfs.0, "eth1", Some(MAC));
    assert_eq!((device.onboard, device.slot), (None, None));
    assert_eq!(device.path_name.as_deref(), Some("enP1p2s31f3"));
    std::fs::write(pci.join("acpi_index"), "5\n").unwrap();
    std::fs::write(net_dir(&sysfs, "eth1").join("phys_port_name"), "p1\n").unwrap();
    let device = NetDevice::read(&sysfs.0, "eth1", Some(MAC));
    assert_eq!(device.onboard.as_deref(), Some("eno5np1"));
    assert_eq!(device.path_name.as_deref(), Some("enP1p2s31f3np1"));
    // Function 0 of a multi-function device, a second port by dev_port.
    let sysfs = Sysfs::new("multi");
    sysfs.virtio_nic("0000:05:00.0", "eth0");
    let mut config = [0u8; 64];
    config[0x0e] = 0x80;
    std::fs::write(sysfs.0.join("devices/pci0000:00/0000:05:00.0/config"), config).unwrap();
    std::fs::write(net_dir(&sysfs, "eth0").join("dev_port"), "1\n").unwrap();
    assert_eq!(NetDevice::read(&sysfs.0, "eth0", None).path_name.as_deref(), Some("enp5s0f0d1"));
    // ARI: slot and function make one 8-bit function number.
    let sysfs = Sysfs::new("ari");
    sysfs.virtio_nic("0000:03:01.2", "eth0");
    std::fs::write(sysfs.0.join("devices/pci0000:00/0000:03:01.2/ari_enabled"), "1\n").unwrap();
    assert_eq!(NetDevice::read(&sysfs.0, "eth0", None).path_name.as_deref(), Some("enp3s1f10"));
}

#[test]
fn a_slot_found_on_a_bridge_is_not_used() {
    let sysfs = Sysfs::new("bridge");
    let bridge = sysfs.device("devices/pci0000:00/0000:00:1c.0", "pci");
    std::fs::write(bridge.join("modalias"), "pci:v00008086d00001E10sv00001028sd00000527bc06sc04i00").unwrap();
    sysfs.virtio_nic("0000:00:1c.0/0000:01:00.0", "eth0");
    sysfs.slot("7", "0000:00:1c");
    let device = NetDevice::read(&sysfs.0, "eth0", None);
    assert_eq!(device.slot, None);
    assert_eq!(device.path_name.as_deref(), Some("enp1s0"));
    std::fs::write(bridge.join("modalias"), "pci:v00008086d00001E10sv00001028sd00000527bc06sc00i00").unwrap();
    assert_eq!(NetDevice::read(&sysfs.0, "eth0", None).slot.as_deref(), Some("ens7"), "a parent that is no bridge");
}

#[test]
fn a_bare_sysfs_gives_no_name_and_no_panic() {
    let sysfs = Sysfs::new("bare");
    std::fs::create_dir_all(sysfs.0.join("class/net/eth0")).unwrap();
    let device = NetDevice::read(&sysfs.0, "eth0", Some(MAC));
    assert_eq!(device, NetDevice { name: "eth0".into(), mac: Some(MAC), ..NetDevice::default() });
    assert!(matches!(
        decide(&device, &[LinkFile::parse("d", DEFAULT)], Naming { policies: true, scheme: false }),
        Decision::Keep(_)
    ));
    let missing = NetDevice::read(&sysfs.0, "nothing", None);
    assert_eq!(missing.name, "nothing");
    // A VF and a stacked device are not named.
    sysfs.virtio_nic("0000:00:05.0", "eth5");
    std::fs::create_dir_all(sysfs.0.join("devices/pci0000:00/0000:00:05.0/physfn")).unwrap();
    let vf = NetDevice::read(&sysfs.0, "eth5", None);
    assert_eq!((vf.path_name, vf.mac_name.is_none()), (None, true));
    std::fs::write(net_dir(&sysfs, "eth5").join("iflink"), "1\n").unwrap();
    assert_eq!(NetDevice::read(&sysfs.0, "eth5", Some(MAC)).mac_name, None);
}

fn ens3() -> NetDevice {
    NetDevice {
        name: "eth0".into(),
        assign: Some(1),
        mac: Some(MAC),
        permanent: true,
        kind: Some("ether"),
        driver: Some("virtio_net".into()),
        path: Some("pci-0000:00:03.0".into()),
        bus: Some("pci"),
        slot: Some("ens3".into()),
        path_name: Some("enp0s3".into()),
        mac_name: Some("enx525400123456".into()),
        located: true,
        ..NetDevice::default()
    }
}

const ON: Naming = Naming { policies: true, scheme: false };

fn renamed(decision: Decision) -> Option<String> {
    match decision {
        Decision::Rename { name, .. } => Some(name),
        Decision::Keep(_) => None,
    }
}

#[test]
fn first_matching_file_decides() {
    let default = LinkFile::parse("99-default.link", DEFAULT);
    let usb = LinkFile::parse(
            "73-usb-net-by-mac.link",
            "[Match]\nOriginalName=*\nType=ether\nProperty=ID_BUS=usb\n[Link]\nNamePolicy=kernel database onboard slot path mac\n",
        );
    let by_mac = LinkFile::parse("10-lan.link", "[Match]\nMACAddress=52-54-00-12-34-56\n[Link]\nName=lan0\n");
    let other = LinkFile::parse("10-other.link", "[Match]\nMACAddress=52:54:00:00:00:01\n[Link]\nName=wan0\n");
    assert_eq!(renamed(decide(&ens3(), &[usb.clone(), default.clone()], ON)).as_deref(), Some("ens3"));
    assert_eq!(renamed(decide(&ens3(), &[by_mac, default.clone()], ON)).as_deref(), Some("lan0"));
    assert_eq!(renamed(decide(&ens3(), &[other, default.clone()], ON)).as_deref(), Some("ens3"));
    // Path policy first.
    let path_first = LinkFile::parse("99-default.link", "[Match]\nOriginalName=*\n[Link]\nNamePolicy=path slot\n");
    assert_eq!(renamed(decide(&ens3(), &[path_first], ON)).as_deref(), Some("enp0s3"));
    // net.ifnames=0: policies off, Name= still applies.
    let off = Naming { policies: false, scheme: false };
    assert_eq!(renamed(decide(&ens3(), std::slice::from_ref(&default), off)), None);
    let both = LinkFile::parse("50.link", "[Match]\nDriver=virtio*\n[Link]\nNamePolicy=path\nName=boot0\n");
    assert_eq!(renamed(decide(&ens3(), std::slice::from_ref(&both), off)).as_deref(), Some("boot0"));
    assert_eq!(renamed(decide(&ens3(), &[both], ON)).as_deref(), Some("enp0s3"));
    // No file, or none matching: udev does not rename.
    assert_eq!(renamed(decide(&ens3(), &[], ON)), None);
}

#[test]
fn kept_names() {
    let default = [LinkFile::parse("99-default.link", DEFAULT)];
    for assign in [3, 4] {
        let device = NetDevice { assign: Some(assign), ..ens3() };
        assert!(matches!(decide(&device, &default, ON), Decision::Keep(why) if why.contains("keep")));
    }
    let device = NetDevice { assign: Some(NET_NAME_PREDICTABLE), ..ens3() };
    assert!(matches!(decide(&device, &default, ON), Decision::Keep(why) if why.contains("kernel")));
    let device = NetDevice { name: "ens3".into(), ..ens3() };
    assert!(matches!(decide(&device, &default, ON), Decision::Keep(_)));
    assert!(matches!(decide(&ens3(), &default, Naming { policies: true, scheme: true }), Decision::Keep(_)));
    let host = LinkFile::parse("10-x.link", "[Match]\nHost=node1\n[Link]\nName=x0\n");
    let kept = decide(&ens3(), &[host, default[0].clone()], ON);
    assert_eq!(kept, Decision::Keep("10-x.link matches on Host=, not read here".into()));
    // Not on PCI (a platform NIC, USB) or an SR-IOV VF: udev's onboard, slot and path names
    // are not known, so neither is whether a later policy or Name= applies.
    let platform = NetDevice { bus: None, path: None, slot: None, path_name: None, located: false, ..ens3() };
    let link = LinkFile::parse("50.link", "[Match]\nOriginalName=*\n[Link]\nNamePolicy=path mac\nName=lan0\n");
    let expected = "50.link: NamePolicy=path: this device's names are not computed here";
    assert_eq!(decide(&platform, std::slice::from_ref(&link), ON), Decision::Keep(expected.into()));
    let mac = LinkFile::parse("50.link", "[Match]\nOriginalName=*\n[Link]\nNamePolicy=mac\n");
    assert_eq!(renamed(decide(&platform, &[mac], ON)).as_deref(), Some("enx525400123456"));
    assert_eq!(renamed(decide(&ens3(), &[link], ON)).as_deref(), Some("enp0s3"));
    // Not plain, all digits, too long: no name from it.
    for bad in ["a/b", "123", "abcdefghijklmnop"] {
        let link = LinkFile::parse("1.link", &format!("[Match]\nOriginalName=eth*\n[Link]\nName={bad}\n"));
        assert!(matches!(decide(&ens3(), &[link], ON), Decision::Keep(_)), "{bad}");
    }
}

#[test]
fn match_keys() {
    let link = |m: &str| LinkFile::parse("t.link", &format!("[Match]\n{m}\n[Link]\nName=x0\n"));
    let hit = |m: &str| link(m).matches(&ens3()).unwrap();
    assert!(hit("OriginalName=en* eth?"));
    assert!(!hit("OriginalName=!eth*"));
    assert!(hit("MACAddress=00:00:00:00:00:01 52:54:00:12:34:56"));
    assert!(hit("PermanentMACAddress=52:54:00:12:34:56"));
    assert!(hit("Driver=virtio_net\nType=ether\nPath=pci-0000:00:03.0"));
    assert!(!hit("Driver=e1000"));
    assert!(hit("Property=ID_BUS=pci"));
    assert!(!hit("Property=ID_BUS=usb"));
    assert!(hit("Driver=e1000\nDriver=\nType=ether"), "an empty assignment clears the key");
    assert!(!hit("# nothing"), "an empty [Match] matches nothing");
    assert_eq!(link("Property=ID_NET_DRIVER=x").matches(&ens3()), Err("Property=".into()));
    // systemd's own: the host side of nspawn's veth, never a NIC.
    assert_eq!(link("Kind=veth\nOriginalName=ve-*\nHost=x").matches(&ens3()), Ok(false));
    assert_eq!(link("Host=x\nOriginalName=eth*").matches(&ens3()), Err("Host=".into()));
}

/// An image in a temp dir, removed when dropped.
struct Image(PathBuf, ImageRoot);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn image(tag: &str, files: &[(&str, &str)]) -> Image {
    let root = std::env::temp_dir().join(format!("stateless-ifname-image-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (file, text) in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    let opened = ImageRoot::open(&root).unwrap();
    Image(root, opened)
}

#[test]
fn link_files_in_udev_order_masked_and_overridden() {
    let img = image(
        "links",
        &[
            ("usr/lib/systemd/network/99-default.link", DEFAULT),
            ("usr/lib/systemd/network/80-container-ve.link", "[Match]\nKind=veth\n"),
            ("etc/systemd/network/80-container-ve.link", "[Match]\nOriginalName=x\n"),
            ("etc/systemd/network/10-empty.link", "\n"),
            ("etc/systemd/network/20-lan.network", "[Match]\nName=*\n"),
            ("lib/systemd/network/50-old.link", "[Match]\nDriver=e1000\n[Link]\nName=lan0\n"),
        ],
    );
    let files: Vec<String> = links(&img.1).into_iter().map(|l| l.file).collect();
    let expected = [
        "lib/systemd/network/50-old.link",
        "etc/systemd/network/80-container-ve.link",
        "usr/lib/systemd/network/99-default.link",
    ];
    assert_eq!(files, expected, "by file name; /etc's wins; an empty file and a .network left out");
    // Masked by a link to /dev/null, as `ln -s /dev/null /etc/systemd/network/99-default.link`.
    symlink("/dev/null", img.0.join("etc/systemd/network/99-default.link")).unwrap();
    assert!(links(&img.1).iter().all(|l| !l.file.ends_with("99-default.link")));
    assert_eq!(decide(&ens3(), &links(&img.1), ON), Decision::Keep("no .link file of the image matches it".into()));
    // A drop-in may change the policy or the name (`NamePolicy=path` for `enp0s3`): not read,
    // so the name is kept rather than one udev would not give (and then keep).
    std::fs::remove_file(img.0.join("etc/systemd/network/99-default.link")).unwrap();
    std::fs::create_dir_all(img.0.join("etc/systemd/network/99-default.link.d")).unwrap();
    let expected = "usr/lib/systemd/network/99-default.link: its drop-ins (.link.d/) are not read here";
    assert_eq!(decide(&ens3(), &links(&img.1), ON), Decision::Keep(expected.into()));
}

#[test]
fn udev_rules_that_name_interfaces() {
    let pinned =
        "SUBSYSTEM==\"net\", ACTION==\"add\", ATTR{address}==\"52:54:00:12:34:56\", KERNEL==\"eth*\", NAME=\"eth0\"\n";
    let img = image(
        "rules",
        &[
            ("etc/udev/rules.d/60-x.rules", "# NAME=\"x\"\nKERNEL==\"sda\", NAME==\"y\"\n"),
            ("etc/udev/rules.d/70-persistent-net.rules", pinned),
            ("usr/lib/udev/rules.d/80-net-setup-link.rules", "NAME=\"$env{ID_NET_NAME}\"\n"),
        ],
    );
    assert_eq!(named_by_rules(&img.1).as_deref(), Some("etc/udev/rules.d/70-persistent-net.rules"));
    assert_eq!(named_by_rules(&image("norules", &[]).1), None);
    // udev's own naming rule masked, as `ln -s /dev/null /etc/udev/rules.d/80-net-setup-link.rules`.
    let img = image("masked", &[("etc/udev/rules.d/60-x.rules", "KERNEL==\"sda\"\n")]);
    symlink("/dev/null", img.0.join("etc/udev/rules.d/80-net-setup-link.rules")).unwrap();
    assert_eq!(named_by_rules(&img.1).as_deref(), Some("etc/udev/rules.d/80-net-setup-link.rules"));
}

#[test]
fn cmdline() {
    let naming = |line: &str| Naming::from_cmdline(&Cmdline::parse(line.as_bytes()));
    assert_eq!(naming("root=/dev/nfs"), Naming { policies: true, scheme: false });
    assert_eq!(naming("net.ifnames=0"), Naming { policies: false, scheme: false });
    assert_eq!(naming("net.ifnames=0 net.ifnames=1"), Naming { policies: true, scheme: false });
    assert_eq!(naming("net.naming-scheme=v252"), Naming { policies: true, scheme: true });
}
