//! Everything on files: the image root and the one way into it, the tree copy, mounts and
//! overlays, the configuration layers, the host files and the network handed on to init.

pub mod cpio;
pub mod disks;
pub mod hashcopy;
pub mod hostfiles;
pub mod initramfs;
pub mod layers;
pub mod manifest;
pub mod mounts;
pub mod netconf;
pub mod nfs;
pub mod root;
pub mod tree;

/// A fresh temp dir for a unit test, removed when dropped.
#[cfg(test)]
pub(crate) struct Tmp(pub std::path::PathBuf);

#[cfg(test)]
impl Tmp {
    /// `stateless-<tag>-<pid>` in the temp dir, empty.
    pub fn new(tag: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("stateless-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::create_dir_all(&dir);
        Tmp(dir)
    }
}

#[cfg(test)]
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
