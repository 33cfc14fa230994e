//! One boot, one plan: for each mode, `stateless plan`'s engine ([`plan::dry_run`]) given the
//! facts the fake kernel has, and a boot on that fake kernel, take the same steps in the same
//! order. What the boot learns as it goes (the lease, the interface it came on) the plan is
//! given, as `stateless plan --initramfs --ip ... --dhcp-hostname ...` gives it.

use super::*;
use crate::boot::plan;
use crate::model::hostname::Source;

/// One mode: the fake kernel and the command line it boots with, the facts the plan is given.
struct Row {
    mode: &'static str,
    cmdline: &'static str,
    /// An initramfs with the NFS root at /root ([`initramfs`]), else on-root ([`fake`]).
    initramfs: bool,
    /// What this fake kernel has that the base one has not.
    kernel: fn(&Image, &mut Fake),
    /// The facts of that kernel, as the plan is given them.
    facts: fn() -> Facts,
    /// What makes the plan this mode's.
    shows: fn(&[Step]) -> bool,
    /// Where the boot cannot do what the plan assumes.
    differs: Option<Differs>,
}

/// A known difference: why, and the plan's steps made the boot's.
struct Differs {
    why: &'static str,
    boot: fn(Vec<Step>) -> Vec<Step>,
}

const NET: &str = "10.0.2.15/24";

/// On-root: the kernel configured eth0 (its `ip=`), overlayfs is registered.
fn on_root(kernel_hostname: &str) -> Facts {
    Facts {
        address: NET.parse().ok(),
        interface: Some("eth0".into()),
        kernel_hostname: Some(kernel_hostname.into()),
        overlayfs: Some(true),
        ..Facts::default()
    }
}

/// A client without an address or a name, and what [`dhcp_server`] answers it on eth0. In
/// initramfs mode the lease's address is given as the client's, as `--ip` gives it.
fn leased(exchange: Exchange, initramfs: bool) -> Facts {
    let ip = |d| Ipv4Addr::new(10, 0, 2, d);
    let lease = Lease {
        server: Some(ip(2)),
        address: NET.parse().ok(),
        routers: vec![ip(2)],
        dns: vec![ip(3)],
        domain: Some("lab.example".into()),
        hostname: Some("lab3-12".into()),
        next_server: Some(ip(2)),
        ..Lease::default()
    };
    let dhcp = Dhcp::given("eth0", exchange, lease);
    Facts {
        initramfs,
        address: NET.parse().ok().filter(|_| initramfs && exchange == Exchange::Discover),
        kernel_hostname: Some("(none)".into()),
        overlayfs: Some(true),
        dhcp: Some(dhcp),
        ..Facts::default()
    }
}

fn same_kernel(_: &Image, _: &mut Fake) {}

/// eth0 without an address, the kernel without a name, a DHCP server on the link.
fn unconfigured(_: &Image, sys: &mut Fake) {
    sys.uname.nodename = "(none)".into();
    sys.interfaces[0].addrs.clear();
    sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
}

/// The image's own stateless.conf, read after the switch.
fn image_conf(image: &Image, _: &mut Fake) {
    std::fs::write(image.0.join("root/etc/stateless.conf"), "stateless.dirs=etc\n").unwrap();
}

/// [`image_conf`], and /dev/nbd0 holding a squashfs image's head, as an NBD server exports it.
fn nbd_image(image: &Image, sys: &mut Fake) {
    image_conf(image, sys);
    std::fs::create_dir_all(image.0.join("dev")).unwrap();
    let head: Vec<u8> = b"hsqs".iter().copied().chain(std::iter::repeat_n(0, 8188)).collect();
    std::fs::write(image.0.join("dev/nbd0"), &head).unwrap();
    sys.proc.insert("nbd-size".into(), head.len().to_string());
}

/// overlayfs not registered.
fn no_overlayfs(_: &Image, sys: &mut Fake) {
    sys.proc.insert("filesystems".into(), "nodev\ttmpfs\n".into());
}

/// overlayfs not registered, its module in the image.
fn overlay_module(image: &Image, sys: &mut Fake) {
    no_overlayfs(image, sys);
    let dir = image.0.join("lib/modules/6.1.0");
    std::fs::create_dir_all(dir.join("kernel/fs/overlayfs")).unwrap();
    std::fs::write(dir.join("modules.dep"), "kernel/fs/overlayfs/overlay.ko:\n").unwrap();
    std::fs::write(dir.join("kernel/fs/overlayfs/overlay.ko"), "").unwrap();
}

/// The fake mounts nothing: a copy-mode tmpfs never appears, its dir stays the image's
/// (the step fails, nothing is copied into the image), so no host files are written to /etc.
fn without_tmpfs(steps: Vec<Step>) -> Vec<Step> {
    steps.into_iter().filter(|s| !matches!(s, Step::HostFiles { .. })).collect()
}

/// The plan's writable dirs as the boot makes them when the overlay module does not load:
/// copy mode, no overlays (and the fake's copy mode, [`without_tmpfs`]).
fn in_copy_mode(steps: Vec<Step>) -> Vec<Step> {
    let copy = steps.into_iter().filter(|s| !matches!(s, Step::Overlay { .. })).map(|s| match s {
        Step::WritableDir { dir, tmpfs_size, .. } => Step::WritableDir { dir, mode: OverlayMode::Copy, tmpfs_size },
        other => other,
    });
    without_tmpfs(copy.collect())
}

const STATIC_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

const ROWS: &[Row] = &[
    Row {
        mode: "on-root, the kernel's address and name",
        cmdline: "",
        initramfs: false,
        kernel: same_kernel,
        facts: || on_root("lab3-12"),
        shows: |p| {
            p.iter().any(|s| matches!(s, Step::Hostname { hostname: Some(h), .. } if h.source == Source::Kernel))
        },
        differs: None,
    },
    Row {
        mode: "on-root, no name: INFORM",
        cmdline: "",
        initramfs: false,
        kernel: |image, sys| {
            unconfigured(image, sys);
            sys.interfaces[0].addrs = vec![NET.parse().unwrap()];
        },
        facts: || Facts { dhcp: leased(Exchange::Inform, false).dhcp, ..on_root("(none)") },
        shows: |p| p.iter().any(|s| matches!(s, Step::Dhcp { exchange: Exchange::Inform, .. })),
        differs: None,
    },
    Row {
        mode: "on-root, the kernel's DHCP: no INFORM",
        cmdline: "ip=dhcp",
        initramfs: false,
        kernel: |image, sys| {
            unconfigured(image, sys);
            sys.interfaces[0].addrs = vec![NET.parse().unwrap()];
        },
        facts: || on_root("(none)"),
        shows: |p| !p.iter().any(|s| matches!(s, Step::Dhcp { .. })),
        differs: None,
    },
    Row {
        mode: "on-root, no address: DHCP",
        cmdline: "",
        initramfs: false,
        kernel: unconfigured,
        facts: || leased(Exchange::Discover, false),
        shows: |p| p.iter().any(|s| matches!(s, Step::Dhcp { exchange: Exchange::Discover, .. })),
        differs: None,
    },
    Row {
        mode: "on-root, static ip=",
        cmdline: STATIC_IP,
        initramfs: false,
        kernel: unconfigured,
        facts: || leased(Exchange::Inform, false),
        shows: |p| p.iter().any(|s| matches!(s, Step::Address { .. })),
        differs: None,
    },
    Row {
        mode: "on-root, static ip=, BOOTIF= another link",
        cmdline: "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off BOOTIF=01-52-54-00-12-34-57",
        initramfs: false,
        kernel: |image, sys| {
            unconfigured(image, sys);
            let mac = Some([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
            let eth1 = Interface { index: 3, name: "eth1".into(), mac, up: false, ..sys.interfaces[0].clone() };
            sys.interfaces.push(eth1);
            sys.cabled.push(3);
        },
        facts: || leased(Exchange::Inform, false),
        shows: |p| p.iter().any(|s| matches!(s, Step::NetworkFiles { interface } if interface == "eth0")),
        differs: None,
    },
    Row {
        mode: "initramfs: DHCP, the NFS root, the switch",
        cmdline: "nfsroot=/srv/img,port=2049",
        initramfs: true,
        kernel: image_conf,
        facts: || leased(Exchange::Discover, true),
        shows: |p| p.iter().any(|s| matches!(s, Step::SwitchRoot { .. })),
        differs: None,
    },
    Row {
        mode: "initramfs: DHCP, an NBD root, the switch",
        cmdline: "root=nbd:10.0.2.2:root",
        initramfs: true,
        kernel: nbd_image,
        facts: || leased(Exchange::Discover, true),
        shows: |p| p.iter().any(|s| matches!(s, Step::NbdRoot { .. })),
        differs: None,
    },
    Row {
        mode: "initramfs, static ip=",
        cmdline: "ip=10.0.2.15:10.0.2.2:10.0.2.2:255.255.255.0::eth0:off root=/dev/nfs nfsroot=/srv/img",
        initramfs: true,
        kernel: image_conf,
        facts: || leased(Exchange::Inform, true),
        shows: |p| {
            p.iter().any(|s| matches!(s, Step::Address { .. }))
                && p.iter().any(|s| matches!(s, Step::SwitchRoot { .. }))
        },
        differs: None,
    },
    Row {
        mode: "copy mode",
        cmdline: "stateless.mode=copy",
        initramfs: false,
        kernel: same_kernel,
        facts: || on_root("lab3-12"),
        shows: |p| p.iter().any(|s| matches!(s, Step::WritableDir { mode: OverlayMode::Copy, .. })),
        differs: Some(Differs { why: "the fake mounts no tmpfs", boot: without_tmpfs }),
    },
    Row {
        mode: "overlayfs not registered, its module loaded",
        cmdline: "",
        initramfs: false,
        kernel: overlay_module,
        facts: || Facts { overlayfs: Some(false), ..on_root("lab3-12") },
        shows: |p| p.iter().any(|s| matches!(s, Step::Module { name, .. } if name == "overlay")),
        differs: None,
    },
    Row {
        mode: "overlayfs missing: copy mode",
        cmdline: "",
        initramfs: false,
        kernel: no_overlayfs,
        facts: || Facts { overlayfs: Some(false), ..on_root("lab3-12") },
        // No fact says a module is missing: the plan assumes its step loads it.
        shows: |p| p.iter().any(|s| matches!(s, Step::Module { name, .. } if name == "overlay")),
        differs: Some(Differs {
            why: "no overlay module: copy mode, and the fake mounts no tmpfs",
            boot: in_copy_mode,
        }),
    },
    Row {
        mode: "scratch, no such disk",
        cmdline: "stateless.scratch=lab-scratch",
        initramfs: false,
        kernel: same_kernel,
        facts: || on_root("lab3-12"),
        shows: |p| p.iter().any(|s| matches!(s, Step::Scratch { .. })),
        differs: None,
    },
    Row {
        mode: "initramfs, an image root in memory",
        cmdline: IMAGE_IN_MEMORY,
        initramfs: true,
        kernel: |image, sys| {
            image_export(image, 4096, None);
            meminfo(sys, 900);
        },
        facts: || leased(Exchange::Discover, true),
        shows: |p| p.iter().any(|s| matches!(s, Step::UnmountExport)),
        differs: None,
    },
];

/// The scratch disk there: an ext4 labelled so (a loop device).
const SCRATCH: Row = Row {
    mode: "scratch",
    cmdline: "stateless.scratch=lab-scratch stateless.swap=auto",
    initramfs: false,
    kernel: same_kernel,
    facts: || on_root("lab3-12"),
    shows: |p| p.iter().any(|s| matches!(s, Step::Scratch { .. })) && p.iter().any(|s| matches!(s, Step::Swap { .. })),
    differs: None,
};

/// The image and the fake kernel of `row`.
fn fixture(row: &Row, tag: &str) -> (Image, Fake) {
    let (image, mut sys) = match row.initramfs {
        true => initramfs(tag, |_| None),
        false => (Image::new(tag), fake(|_| None)),
    };
    (row.kernel)(&image, &mut sys);
    (image, sys)
}

/// The steps `stateless plan` shows for `row`: its image (initramfs mode: the NFS root), its
/// options as the boot reads them (the command line alone until the switch).
fn planned(row: &Row, image: &Image) -> Vec<Step> {
    let root = if row.initramfs { image.0.join(plan::NEW_ROOT) } else { image.0.clone() };
    let target = ImageRoot::open(&root).unwrap();
    let cmdline = row.cmdline.as_bytes();
    let (before_switch, _) = Options::resolve(&Cmdline::parse(cmdline), None);
    let (options, diagnostics) = match row.initramfs {
        true => crate::boot::options(cmdline, &target),
        false => (before_switch.clone(), Vec::new()),
    };
    plan::dry_run(&target, options, diagnostics, (row.facts)(), before_switch).steps
}

/// Where `boot` departs from `plan`, if it does: the first step that differs.
fn departure(plan: &[Step], boot: &[Step]) -> Option<String> {
    let at = plan.iter().zip(boot).position(|(p, b)| p != b);
    let at = at.or((plan.len() != boot.len()).then(|| plan.len().min(boot.len())))?;
    let (p, b) = (plan.get(at), boot.get(at));
    Some(format!("step {}: planned {p:?}\n        booted {b:?}", at + 1))
}

/// The steps of the boot of `row` on `sys`. The fake's exec ends it in the handoff, before
/// its outcome: the handoff `plan` ends in, when it execs the init that step names.
fn booted(row: &Row, image: &Image, sys: &Fake, plan: &[Step]) -> Vec<Step> {
    let (outcomes, ended) = boot_from(image, row.cmdline, sys, Mode::Boot, row.initramfs);
    let mut steps: Vec<Step> = outcomes.into_iter().map(|o| o.step).collect();
    let exec = |init: &str| ended.as_deref() == Some(format!("fake exec {init}").as_str());
    match plan.last() {
        Some(handoff @ Step::Handoff { init: Some(init), .. }) if exec(init) => steps.push(handoff.clone()),
        _ => panic!("{}: the boot ended {ended:?}", row.mode),
    }
    steps
}

/// Plans `row`, boots it on `sys`, and says where they part.
fn check(row: &Row, image: &Image, sys: &Fake) -> Option<String> {
    let plan = planned(row, image);
    assert!((row.shows)(&plan), "{}: not this mode's plan: {plan:#?}", row.mode);
    let booted = booted(row, image, sys, &plan);
    let expected = match &row.differs {
        Some(Differs { why, boot }) => {
            assert!(departure(&plan, &booted).is_some(), "{}: said to differ ({why}), but does not", row.mode);
            boot(plan)
        }
        None => plan,
    };
    departure(&expected, &booted).map(|d| format!("{}: {d}", row.mode))
}

#[test]
fn the_plan_is_the_boot_in_every_mode() {
    let parted: Vec<String> = ROWS
        .iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let (image, sys) = fixture(row, &format!("plan-boot-{i}"));
            check(row, &image, &sys)
        })
        .collect();
    assert!(parted.is_empty(), "the plan and the boot part:\n{}", parted.join("\n"));
}

#[test]
#[ignore = "needs root: a loop device for the scratch disk"]
fn the_plan_is_the_boot_with_a_scratch_disk() {
    let (image, sys) = fixture(&SCRATCH, "plan-boot-scratch");
    let disk = crate::boot::execute::disks::tests::running(&image.0, &[("vdd", "mkfs.ext4 -q -L lab-scratch $1")]);
    assert_eq!(check(&SCRATCH, &image, &sys), None);
    let scratch = sys.calls().into_iter().find(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "ext4"));
    assert!(scratch.is_some(), "the scratch disk was not mounted: {:#?}", sys.calls());
    drop(disk);
}

/// A plan that says otherwise than the boot is caught.
#[test]
fn a_plan_that_is_not_the_boot_is_caught() {
    let row = &ROWS[0];
    let (image, sys) = fixture(row, "plan-boot-mutated");
    let plan = planned(row, &image);
    let booted = booted(row, &image, &sys, &plan);
    assert_eq!(departure(&plan, &booted), None);
    let mut swapped = plan.clone();
    swapped.swap(1, 2);
    let mut copy = plan.clone();
    copy.iter_mut().for_each(|s| {
        if let Step::WritableDir { mode, .. } = s {
            *mode = OverlayMode::Copy
        }
    });
    let short = plan[..plan.len() - 1].to_vec();
    for mutated in [swapped, copy, short] {
        assert!(departure(&mutated, &booted).is_some(), "not caught: {mutated:#?}");
    }
}
