//! The NBD root (`root=nbd:`) on the fake kernel: its device, /dev/nbd0, is a file of the
//! initramfs's /dev holding the image.

use super::*;

const A: &str = "10.0.2.7:10809";
const B: &str = "10.0.2.2:10809";

/// /dev/nbd0 of `image`: `bytes`, the export's size what the fake's server gives.
fn nbd_device(image: &Image, sys: &mut Fake, bytes: &[u8]) {
    std::fs::create_dir_all(image.0.join("dev")).unwrap();
    std::fs::write(image.0.join("dev/nbd0"), bytes).unwrap();
    sys.proc.insert("nbd-size".into(), bytes.len().to_string());
}

fn squashfs(size: usize) -> Vec<u8> {
    b"hsqs".iter().copied().chain((4..size).map(|i| (i % 251) as u8)).collect()
}

/// The servers in the order the plan put them (the client's MAC decides).
fn planned(outcomes: &[Outcome]) -> Vec<std::net::SocketAddrV4> {
    outcomes
        .iter()
        .find_map(|o| match &o.step {
            Step::NbdRoot { root, .. } => Some(root.servers.clone()),
            _ => None,
        })
        .unwrap()
}

/// `root=nbd:A,B:root`, A refusing: B's export handed to the kernel (its size, a 4 KiB block,
/// the export as the backend), the head read from /dev/nbd0, the filesystem its magic names
/// mounted read-only on /root, the root checked in it, the supervisor started with the socket
/// and the servers (B first), before the switch; the report names it all.
#[test]
fn an_nbd_root_is_attached_mounted_and_left_a_supervisor() {
    let (image, mut sys) = initramfs("nbd-root", |c| {
        matches!(c, Call::NbdConnect(s, _) if s.to_string() == A).then_some(Errno::CONNREFUSED.raw_os_error())
    });
    nbd_device(&image, &mut sys, &squashfs(8192));
    let root = image.0.join("root");
    let (outcomes, ended) = boot_from(&image, "root=nbd:10.0.2.7,10.0.2.2:root", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let step = outcomes.iter().find(|o| matches!(o.step, Step::NbdRoot { .. })).unwrap();
    assert_eq!(step.status, Status::Ok, "{step:?}");
    assert!(step.detail.starts_with(&format!("nbd://{B}/root on /dev/nbd0 (")), "{}", step.detail);
    assert!(step.detail.ends_with("bytes of /sbin/init; supervisor pid 4242"), "{}", step.detail);
    assert!(outcomes.iter().any(|o| matches!(&o.step, Step::Dhcp { meanwhile, .. } if meanwhile == &["nbd"])));
    let calls = sys.calls();
    let at = |call: &Call| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call:?}: {calls:#?}"));
    let b: std::net::SocketAddrV4 = B.parse().unwrap();
    let attach = Call::NbdAttach(8192, 4096, "root".into());
    let device = image.0.join("dev/nbd0");
    let mounted = Call::Mount {
        source: device.display().to_string(),
        target: root.clone(),
        fstype: "squashfs".into(),
        flags: MountFlags::RDONLY,
        data: String::new(),
    };
    let spawned = calls.iter().position(|c| matches!(c, Call::Spawn(_))).unwrap();
    assert!(at(&Call::NbdConnect(b, "root".into())) < at(&attach) && at(&attach) < at(&Call::Read(device.clone())));
    assert!(at(&Call::Read(device.clone())) < at(&mounted) && at(&mounted) < at(&Call::Read(root.join("sbin/init"))));
    // The supervisor from the attach on, before the first read of the device.
    assert!(at(&attach) < spawned && spawned < at(&Call::Read(device.clone())), "{calls:#?}");
    let Call::Spawn(argv) = &calls[spawned] else { unreachable!() };
    assert_eq!(argv[0], "@stateless-nbd");
    let watch = crate::boot::supervise::Watch::parse(argv[1..].to_vec()).unwrap();
    let servers: Vec<std::net::SocketAddrV4> = [B, A].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!((watch.index, watch.export.as_str(), &watch.servers, watch.size), (0, "root", &servers, 8192));
    assert!(watch.socket >= 3 && watch.kmsg.is_none(), "{watch:?}");
    let report = read_report(&root);
    let attached = report.nbd_root.unwrap();
    assert_eq!((attached.server, attached.export.as_str(), attached.index), (b, "root", 0));
    assert_eq!((attached.size, attached.supervisor), (8192, Some(4242)));
    // A failed only when the MAC put it first.
    let first_a = planned(&outcomes)[0].to_string() == A;
    assert_eq!(
        attached.failed.iter().map(|f| f.server.to_string()).collect::<Vec<_>>(),
        if first_a { vec![A] } else { vec![] }
    );
    assert!(attached.failed.iter().all(|f| f.reason.contains("refused")), "{:?}", attached.failed);
    let booted = report.image.unwrap();
    assert_eq!((booted.source.as_str(), booted.mtime, booted.size), (&*format!("nbd://{B}/root"), None, 8192));
    // The layers come from the image (/diskless in it).
    let base = outcomes.iter().find(|o| matches!(&o.step, Step::Layer { name, .. } if name == "base")).unwrap();
    assert_eq!(base.status, Status::Ok, "{base:#?}");
}

/// `roothash=` over NBD: the verity superblock read from /dev/nbd0, dm-verity over it, the
/// verity device mounted; keys in the initramfs without `roothash=`: the signed statement
/// inside the image (nothing lies beside an NBD export), or refused without one.
#[test]
fn an_nbd_root_is_verified_with_roothash_or_its_statement_inside_and_refused_without() {
    let (image, mut sys) = initramfs("nbd-verity", |_| None);
    let root_hash = verity_export(&image);
    let bytes = std::fs::read(image.0.join(EXPORT).join("x.img")).unwrap();
    nbd_device(&image, &mut sys, &bytes);
    let (outcomes, ended) =
        boot_from(&image, &format!("root=nbd:10.0.2.2:root roothash={root_hash}"), &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let dev = image.0.join("dev");
    let mapped = sys.calls().into_iter().find(|c| matches!(c, Call::DeviceMapper(..))).unwrap();
    let table = format!("{0} {0} 4096 4096 3 4 sha256 {root_hash}", dev.join("nbd0").display());
    assert!(matches!(&mapped, Call::DeviceMapper(_, 24, _, t) if t.contains(&table)), "{mapped:?}");
    let verified = read_report(&image.0.join("root")).image.unwrap().verity.unwrap();
    assert_eq!((verified.trusted.as_str(), verified.device), ("roothash=", dev.join("dm-0").display().to_string()));

    // Keys alone: the statement inside the image vouches for it; none inside, refused.
    let (image, mut sys) = initramfs("nbd-keys", |_| None);
    let root_hash = signed_export(&image, Some("openssl.pem"), &["openssl.pub.pem"]);
    nbd_device(&image, &mut sys, &sign_inside(&image, "openssl.pem"));
    let (outcomes, ended) = boot_from(&image, "root=nbd:10.0.2.2:root", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
    let verified = read_report(&image.0.join("root")).image.unwrap().verity.unwrap();
    let key = crate::model::sign::public_key(&fixture_key("openssl.pub.pem")).unwrap();
    assert!(verified.trusted.starts_with(&format!("key {}", key.fingerprint())), "{}", verified.trusted);
    assert_eq!(verified.root_hash, root_hash);

    let (image, mut sys) = initramfs("nbd-keys-unsigned", |_| None);
    signed_export(&image, Some("openssl.pem"), &["openssl.pub.pem"]);
    let bytes = std::fs::read(image.0.join(EXPORT).join("x.img")).unwrap();
    nbd_device(&image, &mut sys, &bytes);
    let (outcomes, ended) = boot_from(&image, "root=nbd:10.0.2.2:root", &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::NbdRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap().to_string();
    assert!(
        error.contains("no signed statement beside it or inside it (stateless image build --verity --sign)"),
        "{error}"
    );
    assert!(!sys.calls().iter().any(|c| matches!(c, Call::Mount { target, .. } if target.ends_with("root"))));
}

/// No server takes it: every server tried, round after round with backoff, until
/// `stateless.nfs.timeout=`; the failure names each server and why (a writable export is one
/// reason). A device that is not an image is refused before a mount.
#[test]
fn an_nbd_root_no_server_serves_fails_naming_each() {
    let (image, mut sys) = initramfs("nbd-none", |c| {
        matches!(c, Call::NbdConnect(s, _) if s.to_string() == A).then_some(Errno::HOSTUNREACH.raw_os_error())
    });
    sys.proc.insert("nbd-writable".into(), String::new());
    let cmdline = "root=nbd:10.0.2.7,10.0.2.2:root stateless.nfs.timeout=10";
    let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
    assert_eq!(ended.as_deref(), Some("fake reboot"), "{outcomes:#?}");
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::NbdRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap().to_string();
    assert!(error.contains("(stateless.nfs.timeout=10)"), "{error}");
    assert!(
        error.contains(&format!("; {A}: ")) && error.contains(&format!("; {B}: nbd export of {B}: writable")),
        "{error}"
    );
    let calls = sys.calls();
    let tries = calls.iter().filter(|c| matches!(c, Call::NbdConnect(..))).count();
    assert!(tries >= 4, "round after round: {calls:#?}");
    assert!(calls.iter().any(|c| matches!(c, Call::Sleep(_))));
    assert!(!calls.iter().any(|c| matches!(c, Call::NbdAttach(..))));

    let (image, mut sys) = initramfs("nbd-not-an-image", |_| None);
    nbd_device(&image, &mut sys, &[0u8; 8192]);
    let (outcomes, _) = boot_from(&image, "root=nbd:10.0.2.2:root:squashfs", &sys, Mode::Boot, true);
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::NbdRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap().to_string();
    assert!(error.contains(&format!("nbd://{B}/root: not a squashfs or EROFS image")), "{error}");
    let (image, mut sys) = initramfs("nbd-other-fs", |_| None);
    nbd_device(&image, &mut sys, &squashfs(8192));
    let (outcomes, _) = boot_from(&image, "root=nbd:10.0.2.2:root:erofs", &sys, Mode::Boot, true);
    let failed = outcomes.iter().find(|o| matches!(o.step, Step::NbdRoot { .. })).unwrap();
    let error = failed.error.as_ref().unwrap().to_string();
    assert!(error.contains("the command line says erofs, the image is squashfs"), "{error}");
}
