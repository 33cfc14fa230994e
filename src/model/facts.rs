//! What is known about this client when a phase is planned. Facts grow as phases run: the
//! address and hostname after the network phase, the writable dirs' states after theirs.

use serde::Serialize;

use super::hostname::Hostname;
use super::ipv4::Ipv4Net;
use super::lease::Dhcp;
use super::writable::WritableDirs;

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
    /// Problems met while probing, for the log and the report.
    pub notes: Vec<String>,
}
