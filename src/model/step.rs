//! The boot as data: phases in order, and the typed steps each is planned into.
//!
//! None of STYLE.md's anchors has this: a phase's plan is a `Vec<Step>` with `Display` and
//! serde, so the dry run (`stateless plan`), the report and the tests read the steps the boot
//! runs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::facts::Learned;
use super::hostname::Hostname;
use super::ipv4::Ipv4Net;
use super::layer::LayerKind;
use super::lease::Exchange;
use super::mount::EarlyMount;
use super::nfsroot::NfsMount;
use super::options::{OverlayMode, Swap};
use super::text::escape;
use super::writable::{DirName, DirState};

/// The phases of the boot, in order. Each is planned from what is known when it starts (a
/// hostname exists only after the network phase); their names are what `stateless.break=` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// devtmpfs, proc, sysfs, /run and /tmp in the root `stateless` runs in.
    EarlyMounts,
    /// Kernel modules the later phases need: the NIC's driver when the network must be brought
    /// up (coldplug before the network), overlayfs, `stateless.modules=`.
    Hardware,
    /// The boot interface, its address, the hostname.
    Network,
    /// The target root: in on-root mode the kernel mounted it already, so nothing is planned;
    /// in initramfs mode the NFS root is mounted and the boot switches into it.
    Root,
    /// tmpfs + overlayfs (or copy) over /etc and /var of the target.
    WritableDirs,
    /// The configuration layers, base → network → lab → host → IP, written into the overlays'
    /// upper dirs; then the overlays are mounted.
    Layers,
    /// Coldplug of the machine's devices with the target's module tree and its modprobe.d as the
    /// layers made it (a lab's blacklist or NIC option applies).
    Devices,
    /// /etc/hostname, /etc/hosts, /etc/conf.d/hostname.
    HostFiles,
    /// /run/stateless/report.json and provenance.
    Report,
    /// exec of the real init.
    Handoff,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::EarlyMounts,
        Phase::Hardware,
        Phase::Network,
        Phase::Root,
        Phase::WritableDirs,
        Phase::Layers,
        Phase::Devices,
        Phase::HostFiles,
        Phase::Report,
        Phase::Handoff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::EarlyMounts => "early-mounts",
            Phase::Hardware => "hardware",
            Phase::Network => "network",
            Phase::Root => "root",
            Phase::WritableDirs => "writable-dirs",
            Phase::Layers => "layers",
            Phase::Devices => "devices",
            Phase::HostFiles => "host-files",
            Phase::Report => "report",
            Phase::Handoff => "handoff",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Phase::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown phase \"{}\" (one of: {})", crate::model::text::escape(s.as_bytes()), names.join(", "))
        })
    }
}

/// Which coldplug: the two differ in the module tree and the modprobe.d they read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pass {
    /// Before the network, when it must be brought up (no interface has an address): the
    /// running root's modules, its modprobe.d and the base layer's (the others are chosen by
    /// the network phase).
    Early,
    /// After the layers: the target's modules and its /etc as the layers made it.
    Late,
}

/// One thing the boot does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// An early kernel filesystem, unless already mounted.
    Mount { mount: EarlyMount },
    /// A kernel module a later phase needs, unless registered already.
    Module { name: String, needed_for: String },
    /// The drivers for the devices found under /sys: `modules` as first planned; the step
    /// walks /sys again after loading them and loads what new devices need, until none appear.
    Coldplug { pass: Pass, devices: usize, modules: Vec<String> },
    /// DHCP on `interface` (`None`: the one `BOOTIF=` names, else DISCOVER on every interface
    /// with carrier at once, the first lease kept);
    /// DISCOVER also gives the interface the leased address and the default route.
    Dhcp {
        interface: Option<String>,
        exchange: Exchange,
        /// Modules loaded while the exchange waits on the network (initramfs mode: the NFS
        /// client, which the root phase needs next).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        meanwhile: Vec<String>,
    },
    /// The static configuration of `ip=<client>:<server>:<gw>:<netmask>:<host>:<dev>:off` on an
    /// interface that has no address yet (a bootloader's DHCP handed over): no DHCP is sent.
    Address { interface: Option<String>, address: Ipv4Net, gateway: Option<std::net::Ipv4Addr> },
    /// The chosen hostname: sethostname/setdomainname.
    Hostname { hostname: Option<Hostname>, rejected: Vec<String> },
    /// Initramfs mode: the NFS root mounted on /root (retried with backoff under
    /// `stateless.nfs.timeout=`), or why there is none.
    NfsRoot { root: Result<NfsMount, String> },
    /// Initramfs mode, an image-file root: `export` mounted read-only at
    /// /run/stateless/export (as [`Step::NfsRoot`] mounts its root), `file` on it attached to
    /// a loop device and mounted read-only on /root as the filesystem its magic names; with
    /// `ram` (`stateless.image.ram`), copied into memory first and checked against its .sha256.
    /// Through dm-verity, checked against `root_hash` (`roothash=`), or against the signed
    /// statement beside the image when the initramfs trusts keys (read when the step runs).
    ImageRoot {
        export: NfsMount,
        file: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ram: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_hash: Option<String>,
    },
    /// Initramfs mode, an NBD root (`root=nbd:`): the image on the first server that answers
    /// (in the client's order) attached as /dev/nbdN through the kernel's NBD netlink
    /// interface, read-only, mounted read-only on /root as the filesystem its magic names;
    /// through dm-verity with `root_hash` (`roothash=`). A process stays to reconnect the
    /// device to the same or another server when the connection dies (`stateless
    /// nbd-supervise`).
    NbdRoot {
        root: crate::model::nbdroot::NbdRoot,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_hash: Option<String>,
    },
    /// Initramfs mode: the early mounts moved into `new_root`, the initramfs emptied (never
    /// crossing into another mount), `new_root` moved onto / and chrooted into; from here on
    /// the boot is that of on-root mode.
    SwitchRoot { new_root: String },
    /// The local filesystem labelled `label` (`stateless.scratch=`) mounted on
    /// /run/stateless/scratch, emptied of the last boot's files: the writable dirs' upper
    /// dirs and /tmp go on it instead of into memory.
    Scratch { label: String },
    /// A writable dir: tmpfs + overlayfs (copy mode when overlayfs fails), or tmpfs + copy.
    WritableDir { dir: DirName, mode: OverlayMode, tmpfs_size: Option<String> },
    /// One configuration layer, walked and copied once.
    Layer { kind: LayerKind, name: String },
    /// The overlay on a writable dir, mounted once the layers are in its upper dir (copy mode
    /// when overlayfs refuses).
    Overlay { dir: DirName },
    /// An image root in memory: its export unmounted once the layers (beside the image on it)
    /// are in; the client no longer needs the server.
    UnmountExport,
    /// /etc/hostname, /etc/hosts, /etc/conf.d/hostname: exactly `files`.
    HostFiles { fqdn: String, short: String, files: Vec<String> },
    /// Swap areas of the local disks (`stateless.swap=`), found by their signature.
    Swap { wanted: Swap },
    /// What the real init needs to keep the boot interface and to know the lease
    /// (docs/network.md).
    NetworkFiles { interface: String },
    /// /run/stateless/report.json and provenance.
    Report { path: String },
    /// exec of `init`; when that fails, of each of `fallbacks` in turn.
    Handoff { init: Option<String>, fallbacks: Vec<String> },
}

impl Step {
    pub fn phase(&self) -> Phase {
        match self {
            Step::Mount { .. } => Phase::EarlyMounts,
            Step::Module { .. } | Step::Coldplug { pass: Pass::Early, .. } => Phase::Hardware,
            Step::Coldplug { pass: Pass::Late, .. } | Step::Swap { .. } => Phase::Devices,
            Step::Dhcp { .. } | Step::Address { .. } | Step::Hostname { .. } => Phase::Network,
            Step::NfsRoot { .. } | Step::ImageRoot { .. } | Step::NbdRoot { .. } | Step::SwitchRoot { .. } => {
                Phase::Root
            }
            Step::Scratch { .. } | Step::WritableDir { .. } => Phase::WritableDirs,
            Step::Layer { .. } | Step::Overlay { .. } | Step::UnmountExport => Phase::Layers,
            Step::HostFiles { .. } | Step::NetworkFiles { .. } => Phase::HostFiles,
            Step::Report { .. } => Phase::Report,
            Step::Handoff { .. } => Phase::Handoff,
        }
    }

    /// A fatal step's failure goes to the emergency policy; a degradable one is logged and the
    /// boot goes on. Without a writable dir the client cannot run its services; without an init
    /// there is no system. The whole table is in the README. Marked per kind, here only: the
    /// jailer fails on every step, virtme-ng-init on none.
    pub fn fatal(&self) -> bool {
        // Without an address nothing after can work; INFORM only asks for a name.
        matches!(
            self,
            Step::Dhcp { exchange: Exchange::Discover, .. }
                | Step::Address { .. }
                | Step::NfsRoot { .. }
                | Step::ImageRoot { .. }
                | Step::NbdRoot { .. }
                | Step::SwitchRoot { .. }
                | Step::WritableDir { .. }
                | Step::Overlay { .. }
                | Step::Handoff { .. }
        )
    }

    /// What a step that failed still makes known: that the DHCP exchange or the static address
    /// ran (each runs once), a writable dir left the read-only image dir, the host name chosen.
    pub fn known_if_failed(&self) -> Vec<Learned> {
        match self {
            Step::Dhcp { .. } => vec![Learned::Dhcp(None)],
            Step::Address { .. } => vec![Learned::StaticAddress],
            Step::WritableDir { dir, .. } | Step::Overlay { dir } => {
                vec![Learned::Dir(dir.clone(), DirState::ReadOnly)]
            }
            Step::Hostname { hostname, .. } => vec![Learned::Hostname(hostname.clone())],
            _ => Vec::new(),
        }
    }

    /// Why `stateless apply` (not PID 1: a running system's kernel) skips the step, if it does:
    /// it would load modules, configure links, name the host, mount, swap or exec. Checked once
    /// by the executor before the handler runs; `None`: the step runs in both modes.
    pub fn pid1_only(&self) -> Option<String> {
        let why = match self {
            Step::Module { .. } => "modules are loaded only at boot".into(),
            Step::Dhcp { .. } => "no DHCP".into(),
            Step::Address { .. } => "no interface is configured".into(),
            // Without one the step only says so.
            Step::Hostname { hostname: Some(_), .. } => "kernel hostname left alone".into(),
            // One the command line got wrong fails as at boot.
            Step::NfsRoot { root: Ok(mount) } => format!("would mount {mount}"),
            Step::ImageRoot { export, file, .. } => format!("would mount {file} on {export}"),
            Step::NbdRoot { root, .. } => format!("would attach {root}"),
            Step::UnmountExport => "no image export is mounted".into(),
            Step::SwitchRoot { .. } => return Some("not PID 1".into()),
            Step::Scratch { .. } => "no disk is mounted".into(),
            Step::Swap { .. } => "the host's swap is left alone".into(),
            Step::Handoff { init, .. } => format!("would exec {}", init.as_deref().unwrap_or("nothing")),
            // Coldplug is planned only at boot (apply probes no devices).
            Step::Mount { .. }
            | Step::Coldplug { .. }
            | Step::Hostname { hostname: None, .. }
            | Step::NfsRoot { root: Err(_) }
            | Step::WritableDir { .. }
            | Step::Layer { .. }
            | Step::Overlay { .. }
            | Step::HostFiles { .. }
            | Step::NetworkFiles { .. }
            | Step::Report { .. } => return None,
        };
        Some(format!("not PID 1: {why}"))
    }
}

/// A step as one line of text, its values (init paths, interface and module names, the NFS
/// root: untrusted) escaped as everything printed is ([`crate::model::text::escape`]).
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::model::text::escape(Unescaped(self).to_string().as_bytes()))
    }
}

/// A step's text as its values hold it.
struct Unescaped<'a>(&'a Step);

impl fmt::Display for Unescaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Step::Mount { mount } => write!(f, "mount {} on /{}", mount.fstype, mount.target),
            Step::Module { name, needed_for } => write!(f, "module {name} (for {needed_for})"),
            Step::Coldplug { pass, devices, modules } => {
                let when = match pass {
                    Pass::Early => " before the network",
                    Pass::Late => "",
                };
                write!(f, "coldplug{when}: {devices} devices with a modalias; load {}", modules.join(", "))
            }
            Step::Dhcp { interface, exchange, meanwhile } => match (exchange, interface.as_deref()) {
                (Exchange::Discover, on) => {
                    let on = on.unwrap_or("the BOOTIF= interface, else all with carrier");
                    write!(f, "dhcp on {on}: lease, address and default route")?;
                    match meanwhile.is_empty() {
                        true => Ok(()),
                        false => write!(f, "; meanwhile load {}", meanwhile.join(", ")),
                    }
                }
                (Exchange::Inform, on) => {
                    let on = on.unwrap_or("the boot interface");
                    write!(f, "dhcp on {on}: ask for the host name (INFORM), address kept")
                }
            },
            Step::Address { interface, address, gateway } => {
                let on = interface.as_deref().unwrap_or("the first interface with carrier");
                write!(f, "address {address} on {on} from ip=")?;
                gateway.map_or(Ok(()), |g| write!(f, ", default route via {g}"))
            }
            Step::Hostname { hostname: Some(h), .. } => write!(f, "hostname {} ({})", h.fqdn(), h.source),
            Step::Hostname { hostname: None, .. } => write!(f, "hostname: none known, kernel's left as is"),
            Step::NfsRoot { root: Ok(mount) } => write!(f, "nfs root {mount} on /root"),
            Step::NfsRoot { root: Err(why) } => write!(f, "nfs root: {why}"),
            Step::ImageRoot { export, file, ram, root_hash } => {
                write!(f, "image root {} on {export} on /root", escape(file.as_bytes()))?;
                f.write_str(if *ram { ", copied into memory first" } else { "" })?;
                match root_hash {
                    Some(hash) => write!(f, ", through dm-verity with the root hash {hash}"),
                    None => Ok(()),
                }
            }
            Step::NbdRoot { root, root_hash } => {
                write!(f, "{} on /dev/nbdN on /root", root.unescaped())?;
                match root_hash {
                    Some(hash) => write!(f, ", through dm-verity with the root hash {hash}"),
                    None => Ok(()),
                }
            }
            Step::SwitchRoot { new_root } => write!(f, "switch root to /{new_root}"),
            Step::WritableDir { dir, mode: OverlayMode::Overlay, .. } => {
                write!(f, "writable /{dir}: the overlay's upper dir")
            }
            Step::WritableDir { dir, mode: OverlayMode::Copy, .. } => write!(f, "writable /{dir}: tmpfs + copy"),
            Step::Scratch { label } => {
                write!(f, "scratch: the local filesystem labelled {label} for the upper dirs and /tmp")
            }
            Step::Swap { wanted: Swap::Auto } => write!(f, "swap: every swap area of the local disks"),
            Step::Swap { wanted: Swap::Label(label) } => write!(f, "swap: the swap areas labelled {label}"),
            Step::Layer { name, .. } => write!(f, "layer {name}"),
            Step::Overlay { dir } => write!(f, "overlay on /{dir} (copy mode if overlayfs fails)"),
            Step::UnmountExport => write!(f, "unmount the image's export: the image is in memory"),
            Step::HostFiles { files, .. } => {
                write!(f, "host files {}", files.iter().map(|p| format!("/{p}")).collect::<Vec<_>>().join(", "))
            }
            Step::NetworkFiles { interface } => write!(f, "network files for {interface} (kept up; lease, resolver)"),
            Step::Report { path } => write!(f, "report /{path}"),
            Step::Handoff { init: Some(init), fallbacks } if fallbacks.is_empty() => write!(f, "handoff to {init}"),
            Step::Handoff { init: Some(init), fallbacks } => {
                write!(f, "handoff to {init} (then {})", fallbacks.join(", "))
            }
            Step::Handoff { init: None, fallbacks } => {
                write!(f, "handoff: none of the inits exists; trying {}", fallbacks.join(", "))
            }
        }
    }
}
