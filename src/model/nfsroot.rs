//! The NFS root of initramfs mode, resolved (`config::nfsroot`), and the text options
//! mount(2) gets from it, with no mount.nfs helper.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// NFS protocol versions tried, in order, when none is named: as mount.nfs, the newest first.
pub const V4_MINORS: [&str; 3] = ["4.2", "4.1", "4.0"];

/// The NFSv4 minor versions to mount instead, newest first, when what the boot needs cannot be
/// read from a root mounted with `version` (EIO): 4.2 → 4.1, 4.0; 4.1 → 4.0. Linux reads with
/// NFSv4.2 READ_PLUS since 6.6, which nfs-ganesha before 6.2 answers wrongly (its issue 1188).
/// None for 4.0, v3 and v2: they are never changed.
pub fn older_minors(version: &str) -> &'static [&'static str] {
    match V4_MINORS.iter().position(|v| *v == version) {
        Some(i) => V4_MINORS.get(i + 1..).unwrap_or_default(),
        None => &[],
    }
}

/// The kernel module an NFS version needs: `nfsv4` for 4.x, `nfsv2`, else `nfsv3`.
pub fn module_for(version: &str) -> &'static str {
    if version.starts_with('4') {
        "nfsv4"
    } else if version == "2" {
        "nfsv2"
    } else {
        "nfsv3"
    }
}

/// What the root phase mounts: `server:path`, type `nfs` (v2/v3) or `nfs4`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsMount {
    pub server: Ipv4Addr,
    pub path: String,
    /// `3`, `4` (negotiated: 4.2, 4.1, then 4.0), or as given (`4.1`, `2`).
    pub version: String,
    /// The admin's options without `ro`/`rw` and the version, as given.
    pub options: Vec<String>,
    pub read_only: bool,
    /// Where the spec came from: `root=`, `nfsroot=`, `dhcp root-path`.
    pub from: String,
}

impl NfsMount {
    /// The versions tried, in order: `4`: 4.2, 4.1, then 4.0; else the one given.
    pub fn versions(&self) -> Vec<&str> {
        if self.version == "4" {
            V4_MINORS.to_vec()
        } else {
            vec![self.version.as_str()]
        }
    }

    /// The mount(2) attempts in order: (fstype, data), one per version of [`NfsMount::versions`].
    pub fn attempts(&self, client: Option<Ipv4Addr>) -> Vec<(&'static str, String)> {
        self.versions().into_iter().map(|version| self.attempt(version, client)).collect()
    }

    /// The mount(2) type and text options for `version`. Added unless the admin set them:
    /// `addr=` (the kernel's text mount needs the address), `nolock` for v2/v3 (no statd in an
    /// initramfs; the root is read-only anyway), `clientaddr=` for v4 when the client's
    /// address is known. No rsize/wsize: client and server settle on their largest.
    pub fn attempt(&self, version: &str, client: Option<Ipv4Addr>) -> (&'static str, String) {
        let v4 = version.starts_with('4');
        let mut data = vec![format!("vers={version}")];
        let has = |key: &str| self.options.iter().any(|o| o.split('=').next() == Some(key));
        if !has("addr") {
            data.push(format!("addr={}", self.server));
        }
        if !v4 && !has("lock") && !has("nolock") {
            data.push("nolock".into());
        }
        if let (true, false, Some(client)) = (v4, has("clientaddr"), client) {
            data.push(format!("clientaddr={client}"));
        }
        data.extend(self.options.iter().cloned());
        (if v4 { "nfs4" } else { "nfs" }, data.join(","))
    }

    /// The kernel module the version needs (nfs asks for it with request_module, which needs a
    /// modprobe an initramfs does not have).
    pub fn module(&self) -> &'static str {
        module_for(&self.version)
    }

    /// `server:path` as mount(2) takes it.
    pub fn source(&self) -> String {
        format!("{}:{}", self.server, self.path)
    }
}

/// The NFS root as mounted and checked (initramfs mode), for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounted {
    /// The version the root was mounted and checked with: `3`, `4.1`, ...
    pub version: String,
    /// The mount(2) text options it was mounted with.
    pub options: String,
    /// The init the root check read (as the image names it) and how many of its first bytes.
    pub init: String,
    pub init_bytes: u64,
    /// The versions given up on the way, in order, and why.
    pub dropped: Vec<Dropped>,
}

/// A version given up: the server refused it, or the root check could not read the root with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub version: String,
    pub reason: String,
}

impl fmt::Display for NfsMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.version == "4" { "4.x" } else { &self.version };
        write!(f, "{} (NFSv{version}, from {}", self.source(), self.from)?;
        if !self.options.is_empty() {
            write!(f, ", options {}", self.options.join(","))?;
        }
        f.write_str(if self.read_only { ", read-only)" } else { ", read-write)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nfsv4_minor_versions_step_down() {
        assert_eq!(older_minors("4.2"), ["4.1", "4.0"]);
        assert_eq!(older_minors("4.1"), ["4.0"]);
        for never in ["4.0", "4", "3", "2", ""] {
            assert!(older_minors(never).is_empty(), "{never}");
        }
    }
}
