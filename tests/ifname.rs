//! The boot interface's name for real: the names `boot::ifname` reads from this machine's sysfs
//! against systemd's own `net_id` and `path_id` (`udevadm test-builtin`), and the netlink rename
//! in a private network namespace.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use stateless::boot::ifname::NetDevice;
use stateless::net::netlink;

/// `udevadm test-builtin <builtin> <syspath>`'s properties.
fn builtin(name: &str, syspath: &Path) -> BTreeMap<String, String> {
    let out = Command::new("udevadm").args(["test-builtin", name]).arg(syspath).output().unwrap();
    assert!(out.status.success(), "udevadm test-builtin {name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Every interface of this machine with a device under it: the names read here are the ones
/// systemd's udev computes (this host's systemd: Debian 12's 252 or 13's 257; the two differ
/// only for SR-IOV representors and slots found on a bridge, which docs/network.md lists).
#[test]
fn names_are_systemds_for_this_machines_interfaces() {
    let udevadm = Command::new("udevadm").arg("--version").output();
    require(udevadm.is_ok_and(|o| o.status.success()), "udevadm (systemd's udev: net_id is the oracle)");
    let sysfs = Path::new("/sys");
    let mut compared = 0;
    for entry in std::fs::read_dir(sysfs.join("class/net")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().join("device").exists() {
            continue;
        }
        let syspath = entry.path().canonicalize().unwrap();
        let want = builtin("net_id", &syspath);
        let path = builtin("path_id", &syspath);
        let address = std::fs::read_to_string(entry.path().join("address")).unwrap();
        let mac: Vec<u8> = address.trim().split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
        let device = NetDevice::read(sysfs, &name, <[u8; 6]>::try_from(mac.as_slice()).ok());
        let got = [
            ("ID_NET_NAME_ONBOARD", &device.onboard),
            ("ID_NET_NAME_SLOT", &device.slot),
            ("ID_NET_NAME_PATH", &device.path_name),
            ("ID_NET_NAME_MAC", &device.mac_name),
        ];
        for (key, value) in got {
            assert_eq!(value.as_ref(), want.get(key), "{name}: {key}");
        }
        assert_eq!(device.path.as_ref(), path.get("ID_PATH"), "{name}: ID_PATH");
        compared += 1;
    }
    require(compared > 0, "a network interface with a device under /sys/class/net");
}

/// The kernel's release as (major, minor).
fn release() -> (u32, u32) {
    let uname = rustix::system::uname();
    let text = uname.release().to_string_lossy().into_owned();
    let mut parts = text.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// In a network namespace of its own (its loopback, index 1, down): renamed down, the new name
/// is what netlink lists; renamed up, kernels before 6.2 refuse with EBUSY, later ones rename.
#[test]
#[ignore = "needs root: a private network namespace"]
fn rename_over_netlink_down_and_up() {
    require_root();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: NEWNET only gives this thread a network namespace of its own.
            #[allow(unsafe_code)]
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.unwrap();
            let name = |index: u32| netlink::interfaces().unwrap().into_iter().find(|i| i.index == index).unwrap();
            assert_eq!((name(1).name.as_str(), name(1).up), ("lo", false));
            netlink::rename(1, "boot0").unwrap();
            assert_eq!(name(1).name, "boot0");
            assert_eq!(
                netlink::rename(1, "x/y").unwrap_err().raw_os_error(),
                Some(rustix::io::Errno::INVAL.raw_os_error()),
                "the kernel refuses what is no interface name"
            );
            netlink::set_up(1).unwrap();
            match netlink::rename(1, "boot1") {
                Ok(()) => {
                    assert!(release() >= (6, 2), "renamed while up on {:?}", release());
                    assert_eq!(name(1).name, "boot1");
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(rustix::io::Errno::BUSY.raw_os_error()), "{e}");
                    assert!(release() < (6, 2), "refused while up on {:?}", release());
                    assert_eq!(name(1).name, "boot0");
                }
            }
        })
        .join()
        .unwrap()
    });
}
