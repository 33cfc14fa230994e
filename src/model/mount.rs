//! An early kernel filesystem, as the table in [`crate::fs::mounts`] lists them.

use rustix::fs::FsWord;
use rustix::mount::MountFlags;
use serde::Serialize;

/// One early kernel filesystem; mounted only when it is not there yet (the kernel or an
/// initramfs may have done it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EarlyMount {
    /// Mount point, relative to the root.
    pub target: &'static str,
    pub fstype: &'static str,
    pub source: &'static str,
    pub options: &'static str,
    #[serde(skip)]
    pub flags: MountFlags,
    /// statfs f_type of a mounted instance.
    #[serde(skip)]
    pub magic: FsWord,
}

pub const TMPFS_MAGIC: FsWord = 0x0102_1994; // devtmpfs reports it too
pub const PROC_SUPER_MAGIC: FsWord = 0x9fa0;
pub const SYSFS_MAGIC: FsWord = 0x6265_6572;
