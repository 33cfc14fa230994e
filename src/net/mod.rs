//! What the kernel knows about the network: interfaces and IPv4 addresses (netlink),
//! and what the kernel's own DHCP client (`ip=dhcp`) recorded in /proc/net/pnp; the NBD
//! client's handshake and the kernel's nbd driver over generic netlink.

pub mod dhcp;
pub mod nbd;
pub mod netlink;
pub mod pnp;
