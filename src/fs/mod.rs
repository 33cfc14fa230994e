//! Everything on files: the image root and the one way into it, the tree copy, mounts and
//! overlays, the configuration layers and the host files.

pub mod hostfiles;
pub mod layers;
pub mod mounts;
pub mod nfs;
pub mod root;
pub mod tree;
