//! What is known about this client when a phase is planned. Facts come from two places: the
//! probes that read the kernel before a phase is planned, and what each step made known
//! ([`Learned`]), written by [`Facts::learn`] alone: the boot's handlers return what they found,
//! the dry run what each step is assumed to do (`boot::plan::assumed`).

use serde::Serialize;

use super::hostname::Hostname;
use super::ipv4::Ipv4Net;
use super::lease::Dhcp;
use super::paths::SCRATCH_UPPERS;
use super::writable::{DirName, DirState, WritableDirs};

/// The probed (or given, or learned) state of the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Initramfs mode: `stateless` runs in an initramfs (its root is a ramfs or tmpfs) and
    /// the root phase mounts the NFS root and switches into it.
    pub initramfs: bool,
    /// Whether the kernel has overlayfs registered; `None` when not known (a dry run).
    pub overlayfs: Option<bool>,
    /// Devices under /sys with a modalias, and the modules coldplug plans for them (to load,
    /// in order), when coldplug was probed (at boot, unless `stateless.modules=none`).
    pub devices: Option<usize>,
    pub coldplug: Vec<String>,
    /// Name of the interface that carries the boot address.
    pub interface: Option<String>,
    /// Its hardware address, when it has one (the network files match on it).
    pub mac: Option<[u8; 6]>,
    pub address: Option<Ipv4Net>,
    /// The kernel's hostname as read, before any judgement.
    pub kernel_hostname: Option<String>,
    /// DNS domain from the kernel's DHCP (/proc/net/pnp), unvalidated.
    pub domain: Option<String>,
    /// The server of the kernel's own DHCP or BOOTP (/proc/net/pnp), when it ran.
    pub kernel_dhcp_server: Option<std::net::Ipv4Addr>,
    /// DNS servers from the kernel's DHCP (/proc/net/pnp).
    pub nameservers: Vec<std::net::Ipv4Addr>,
    /// What our DHCP client got (the network phase).
    pub dhcp: Option<Dhcp>,
    /// Whether the DHCP client has run (with or without a lease): it runs once.
    pub dhcp_done: bool,
    /// Whether the static `ip=` address step has run (done or failed): it runs once.
    pub address_done: bool,
    /// The hostname chosen in the network phase.
    pub hostname: Option<Hostname>,
    /// The writable dirs: each one's state, where their upper dirs go (shown as `writable`,
    /// `uppers` and `scratch`).
    #[serde(flatten)]
    pub writable: WritableDirs,
    /// The image root is in memory: its export can go once the layers are in.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub image_in_memory: bool,
    /// Problems met while probing, for the log and the report.
    pub notes: Vec<String>,
}

/// What a step made known to the phases after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The host name chosen (also when the kernel refused it: it is the name all the same).
    Hostname(Option<Hostname>),
    /// A module is in the kernel: `overlay` registers overlayfs.
    Module(String),
    /// The DHCP exchange ran (it runs once), with the lease it got.
    Dhcp(Option<Box<Dhcp>>),
    /// The static `ip=` address step ran, done or failed (it runs once).
    StaticAddress,
    /// The link that carries the boot address, its hardware address and the address.
    Link { interface: Option<String>, mac: Option<[u8; 6]>, address: Option<Ipv4Net> },
    /// The boot interface's name once udev's rules settled it.
    Renamed(String),
    /// The upper dirs go on the scratch filesystem from now on.
    UppersOnScratch,
    /// What a writable dir is now.
    Dir(DirName, DirState),
    /// The boot left the initramfs for the NFS root.
    SwitchedRoot,
    /// The image root was copied into memory.
    ImageInMemory,
}

impl Facts {
    /// Takes in what a step made known: the one place a step's result becomes a fact.
    pub fn learn(&mut self, learned: impl IntoIterator<Item = Learned>) {
        for fact in learned {
            match fact {
                Learned::Hostname(hostname) => self.hostname = hostname,
                Learned::Module(name) => {
                    if name == "overlay" {
                        self.overlayfs = Some(true);
                    }
                }
                Learned::Dhcp(dhcp) => {
                    self.dhcp_done = true;
                    if let Some(dhcp) = dhcp {
                        self.dhcp = Some(*dhcp);
                    }
                }
                Learned::StaticAddress => self.address_done = true,
                Learned::Link { interface, mac, address } => {
                    (self.interface, self.mac, self.address) = (interface, mac, address);
                }
                Learned::Renamed(interface) => self.interface = Some(interface),
                Learned::UppersOnScratch => self.writable.put_uppers_on(SCRATCH_UPPERS),
                Learned::Dir(dir, state) => self.writable.set(dir, state),
                Learned::SwitchedRoot => self.initramfs = false,
                Learned::ImageInMemory => self.image_in_memory = true,
            }
        }
    }
}
