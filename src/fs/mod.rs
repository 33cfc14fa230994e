//! Everything on files: the image root and the one way into it, the tree copy, mounts and
//! overlays, the configuration layers, the host files and the network handed on to init.

pub mod cpio;
pub mod disks;
pub mod hostfiles;
pub mod initramfs;
pub mod layers;
pub mod mounts;
pub mod netconf;
pub mod nfs;
pub mod root;
pub mod tree;
