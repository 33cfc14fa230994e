//! The NFS root of initramfs mode, resolved (`config::nfsroot`), and the text options
//! mount(2) gets from it, with no mount.nfs helper.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::servers;

/// The NFSv4 minor versions tried, newest first, when NFSv4 is asked for without a minor version.
pub const V4_MINORS: [&str; 3] = ["4.2", "4.1", "4.0"];

/// The versions tried, in order, when none is named: as mount.nfs (dracut mounts with it), the
/// NFSv4 minor versions newest first, then 3. Where the server has no NFSv4 (or exports the
/// path only over v3) the v4 tries fail at once and v3 mounts, as with initramfs-tools' nfsmount
/// and the kernel's nfsroot (v3 only); an NFSv4-only server mounts too.
pub const NEGOTIATED: [&str; 4] = ["4.2", "4.1", "4.0", "3"];

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

/// The kernel module an NFS version needs: `nfsv4` for 4.x (and `auto`, 4.2 first), `nfsv2`, else `nfsv3`.
pub fn module_for(version: &str) -> &'static str {
    if version.starts_with('4') || version == "auto" {
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
    /// The server tried first.
    pub server: Ipv4Addr,
    /// The other servers, tried in this order when `server` fails (the same path on each):
    /// ordered for the client by [`NfsMount::ordered_for`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Ipv4Addr>,
    pub path: String,
    /// `auto` (none named: [`NEGOTIATED`]), `4` (`nfs4:`: 4.2, 4.1, then 4.0), or as given
    /// (`3`, `4.1`, `2`).
    pub version: String,
    /// The admin's options without `ro`/`rw` and the version, as given.
    pub options: Vec<String>,
    pub read_only: bool,
    /// Where the spec came from: `root=`, `nfsroot=`, `dhcp root-path`, ...
    pub from: String,
    /// What the mount does otherwise than the options say, and why (`lock` on v3).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl NfsMount {
    /// Every server, in the order tried.
    pub fn servers(&self) -> Vec<Ipv4Addr> {
        std::iter::once(self.server).chain(self.fallbacks.iter().copied()).collect()
    }

    /// The same root on `server` alone.
    pub fn on(&self, server: Ipv4Addr) -> NfsMount {
        NfsMount { server, fallbacks: Vec::new(), ..self.clone() }
    }

    /// The servers in the order the client with `mac` tries them ([`servers::order`]).
    pub fn ordered_for(self, mac: Option<[u8; 6]>) -> NfsMount {
        match servers::order(&self.servers(), mac).split_first() {
            Some((&server, fallbacks)) => NfsMount { server, fallbacks: fallbacks.to_vec(), ..self },
            None => self,
        }
    }

    /// The versions tried, in order: `auto`: [`NEGOTIATED`]; `4`: [`V4_MINORS`]; else the one given.
    pub fn versions(&self) -> Vec<&str> {
        match self.version.as_str() {
            "auto" => NEGOTIATED.to_vec(),
            "4" => V4_MINORS.to_vec(),
            v => vec![v],
        }
    }

    /// The mount(2) attempts in order: (fstype, data), one per version of [`NfsMount::versions`].
    pub fn attempts(&self, client: Option<Ipv4Addr>) -> Vec<(&'static str, String)> {
        self.versions().into_iter().map(|version| self.attempt(version, client)).collect()
    }

    /// The mount(2) type and text options for `version`: `vers=`, then `addr=` (the kernel's
    /// text mount needs the address) unless the admin set it; for v2/v3 `nolock`, always (no
    /// statd before the real init: the kernel's nfsroot and dracut force it too, `lock`
    /// dropped); for v4 `clientaddr=` when the client's address is known and the admin did not
    /// set it; then the admin's options. No rsize/wsize: client and server settle on their largest.
    pub fn attempt(&self, version: &str, client: Option<Ipv4Addr>) -> (&'static str, String) {
        let v4 = version.starts_with('4');
        let mut data = vec![format!("vers={version}")];
        let has = |key: &str| self.options.iter().any(|o| o.split('=').next() == Some(key));
        if !has("addr") {
            data.push(format!("addr={}", self.server));
        }
        if !v4 {
            data.push("nolock".into());
        }
        if let (true, false, Some(client)) = (v4, has("clientaddr"), client) {
            data.push(format!("clientaddr={client}"));
        }
        let locking = |o: &&String| !v4 && matches!(o.as_str(), "lock" | "nolock");
        data.extend(self.options.iter().filter(|o| !locking(o)).cloned());
        (if v4 { "nfs4" } else { "nfs" }, data.join(","))
    }

    /// The kernel module the first version tried needs (nfs asks for it with request_module,
    /// which needs a modprobe an initramfs does not have).
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
    /// The server it was mounted from (`None` in a report from before there were several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Ipv4Addr>,
    /// The servers tried before it that failed, in order, and why (the last failure of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedServer>,
}

/// A server that did not give the root, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedServer {
    pub server: Ipv4Addr,
    pub reason: String,
}

/// A version given up: the server refused it, or the root check could not read the root with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub version: String,
    pub reason: String,
}

impl fmt::Display for NfsMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = match self.version.as_str() {
            "auto" => "4.x or 3",
            "4" => "4.x",
            v => v,
        };
        let servers: Vec<String> = self.servers().iter().map(Ipv4Addr::to_string).collect();
        write!(f, "{}:{} (NFSv{version}, from {}", servers.join(","), self.path, self.from)?;
        if !self.fallbacks.is_empty() {
            f.write_str(", servers tried in this order")?;
        }
        if !self.options.is_empty() {
            write!(f, ", options {}", self.options.join(","))?;
        }
        f.write_str(if self.read_only { ", read-only" } else { ", read-write" })?;
        self.notes.iter().try_for_each(|n| write!(f, "; {n}"))?;
        f.write_str(")")
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
