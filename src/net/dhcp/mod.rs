//! DHCPv4 (RFC 2131/2132): the codec, and the client the network phase and `stateless dhcp` run.

pub mod client;
pub mod codec;
pub mod wire;
