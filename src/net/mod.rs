//! What the kernel knows about the network: interfaces and IPv4 addresses (netlink),
//! and what the kernel's own DHCP client (`ip=dhcp`) recorded in /proc/net/pnp.

pub mod dhcp;
pub mod netlink;
pub mod pnp;
