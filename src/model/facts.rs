//! What is known about this client when a phase is planned: the boot interface and its
//! address, the kernel's hostname and the DHCP domain.

use serde::Serialize;

use super::ipv4::Ipv4Net;

/// The probed (or given) state of the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Name of the interface that carries the boot address.
    pub interface: Option<String>,
    pub address: Option<Ipv4Net>,
    /// The kernel's hostname as read, before any judgement.
    pub kernel_hostname: Option<String>,
    /// DNS domain from the kernel's DHCP (/proc/net/pnp), unvalidated.
    pub domain: Option<String>,
    /// Problems met while probing, for the log and the report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
