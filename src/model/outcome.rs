//! How steps ended: typed outcomes, as the boot log and the report show them.

use std::fmt;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::step::{Phase, Step};

/// Whether the steps run as the client's PID 1 or as `stateless apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sets the kernel hostname, loads modules and execs init.
    Boot,
    /// Everything under the root, nothing else.
    Apply,
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Nothing to do (already mounted, not present, not PID 1).
    Skipped,
    /// Done in a lesser way (copy mode instead of overlayfs, some entries failed).
    Degraded,
    Failed,
}

/// The operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Open,
    /// Reading a file's content (the root check reads the init).
    Read,
    Mkdir,
    Mount,
    Umount,
    /// Copying a tree into a writable dir (copy mode), some entries failed.
    Copy,
    Write,
    Sethostname,
    Setdomainname,
    LoadModule,
    /// Bringing the link up, waiting for carrier, the DHCP exchange, the address and route.
    Dhcp,
    Exec,
    SwitchRoot,
    Swapon,
    /// Checking an image root against its root hash or signature, its dm-verity device.
    Verify,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Read => "read",
            Op::Mkdir => "mkdir",
            Op::Mount => "mount",
            Op::Umount => "umount",
            Op::Copy => "copy",
            Op::Write => "write",
            Op::Sethostname => "sethostname",
            Op::Setdomainname => "setdomainname",
            Op::LoadModule => "load module",
            Op::Dhcp => "dhcp",
            Op::Exec => "exec",
            Op::SwitchRoot => "switch root",
            Op::Swapon => "swapon",
            Op::Verify => "verify",
        }
    }
}

/// A failed step: the operation, the path it was about, the errno when the kernel gave one,
/// and the message.
///
/// Firecracker's jailer has one error variant per step carrying the path and the io error;
/// here one type serves every step (the step is [`Outcome::step`]), with the same path and
/// errno. Messages lower-case, as youki's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub op: Op,
    /// The path (or name) operated on, escaped as [`super::text::escape`] does.
    pub path: Option<String>,
    pub errno: Option<i32>,
    pub message: String,
}

impl Failure {
    pub fn new(op: Op, path: Option<&Path>, message: impl Into<String>) -> Self {
        let path = path.map(super::text::escape_path);
        Failure { op, path, errno: None, message: message.into() }
    }

    /// From an I/O error: its errno, and its text in lower case.
    pub fn io(op: Op, path: Option<&Path>, error: &io::Error) -> Self {
        Failure { errno: error.raw_os_error(), ..Failure::new(op, path, error.to_string().to_lowercase()) }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} {path}: {}", self.op.as_str(), self.message),
            None => write!(f, "{}: {}", self.op.as_str(), self.message),
        }
    }
}

/// The record of one executed step, as the log and the report show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub phase: Phase,
    pub step: Step,
    pub status: Status,
    /// What was done, or why it was skipped or degraded.
    pub detail: String,
    /// Why it failed or degraded, when it did.
    pub error: Option<Failure>,
    pub ms: u64,
    /// When the step began, in milliseconds from PID 1's start (the report's clock). Absent
    /// from reports written before it existed: read back as 0.
    #[serde(default)]
    pub at_ms: u64,
    /// `ms` less the time blocked in finit_module, mount(2) and network waits during the step
    /// (NFS waits are counted for the whole boot only: each reading costs milliseconds).
    /// Absent from reports written before it existed: read back as 0.
    #[serde(default)]
    pub own_ms: u64,
}

/// How a dir was made writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    Overlay,
    Copy,
    /// Both ways failed: the dir stayed the read-only image dir.
    None,
}

/// The per-dir result the report shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirResult {
    /// A [`DirName`](super::writable::DirName)'s text. Read back, it is untrusted text:
    /// `stateless status` shows it escaped, `stateless relayer` parses it again.
    pub dir: String,
    pub mode: DirMode,
    /// The mount the boot made writable there, so that `stateless relayer` writes only while
    /// that very mount is there (absent where the kernel cannot tell, and in reports written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountKey>,
}

/// What tells one mount from another while both are there: the kernel's mount id (reused
/// once a mount is gone) and the device its root is on (another mount of another filesystem,
/// a bind mount of another dir's, has another).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountKey {
    pub id: u64,
    pub dev: u64,
}

/// The per-layer result the report shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerResult {
    pub layer: String,
    pub files: usize,
    pub refused: usize,
    pub errors: usize,
    /// With trusted keys: the layer's identity, the SHA-256 of its signed manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// With trusted keys: each entry not copied for not being as signed, `path: why` (escaped),
    /// the first [`REJECTED_SHOWN`] of them, then how many more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

/// The most entries a layer's result names as not as signed.
pub const REJECTED_SHOWN: usize = 32;
