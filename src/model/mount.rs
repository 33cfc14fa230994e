//! The early kernel filesystems, as a table.
//!
//! A `const` table, as virtme-ng-init and the kata agent keep their early mounts; the plan
//! makes one step of each entry.

use rustix::fs::FsWord;
use rustix::mount::MountFlags;
use serde::{Deserialize, Deserializer, Serialize};

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
pub const OVERLAYFS_MAGIC: FsWord = 0x794c_7630;

/// /dev comes first: the console must work before anything else can fail. /tmp is a tmpfs
/// because the shared root is read-only and inits and services expect to write there.
pub const EARLY_MOUNTS: [EarlyMount; 5] = [
    EarlyMount {
        target: "dev",
        fstype: "devtmpfs",
        source: "devtmpfs",
        options: "mode=0755",
        flags: MountFlags::NOSUID,
        magic: TMPFS_MAGIC,
    },
    EarlyMount {
        target: "proc",
        fstype: "proc",
        source: "proc",
        options: "",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC),
        magic: PROC_SUPER_MAGIC,
    },
    EarlyMount {
        target: "sys",
        fstype: "sysfs",
        source: "sysfs",
        options: "",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC),
        magic: SYSFS_MAGIC,
    },
    EarlyMount {
        target: "run",
        fstype: "tmpfs",
        source: "tmpfs",
        options: "mode=0755",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        magic: TMPFS_MAGIC,
    },
    EarlyMount {
        target: "tmp",
        fstype: "tmpfs",
        source: "tmpfs",
        options: "mode=1777",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        magic: TMPFS_MAGIC,
    },
];

/// An early mount is named by its target in the report; it is read back as the table's entry.
impl<'de> Deserialize<'de> for EarlyMount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Named {
            target: String,
        }
        let named = Named::deserialize(d)?;
        EARLY_MOUNTS
            .iter()
            .find(|m| m.target == named.target)
            .copied()
            .ok_or_else(|| serde::de::Error::custom(format!("no early mount on {:?}", named.target)))
    }
}
