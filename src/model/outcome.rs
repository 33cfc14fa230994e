//! How steps ended: typed outcomes, as the boot log and the report show them.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::step::StepKind;

/// Whether the executor runs as the client's PID 1 or as `stateless apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sets the kernel hostname and execs init.
    Boot,
    /// Everything under the root, nothing else.
    Apply,
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Nothing to do (already mounted, not present, not PID 1).
    Skipped,
    /// Done in a lesser way (copy mode instead of overlayfs, some entries failed).
    Degraded,
    Failed,
}

/// The record of one executed step, as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub step: String,
    pub kind: StepKind,
    pub status: Status,
    pub detail: String,
    pub ms: u64,
}

/// A failed step: what it was doing, on which path, and the error.
#[derive(Debug)]
pub enum StepError {
    Mount { target: PathBuf, fstype: String, error: std::io::Error },
    Hostname { name: String, error: std::io::Error },
    Overlay { dir: String, error: String },
    HostFile { path: PathBuf, error: std::io::Error },
    Report { path: PathBuf, error: std::io::Error },
    Handoff { tried: Vec<(String, std::io::Error)> },
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::Mount { target, fstype, error } => write!(f, "mount {fstype} on {}: {error}", target.display()),
            StepError::Hostname { name, error } => write!(f, "set hostname {name}: {error}"),
            StepError::Overlay { dir, error } => write!(f, "make /{dir} writable: {error}"),
            StepError::HostFile { path, error } => write!(f, "write {}: {error}", path.display()),
            StepError::Report { path, error } => write!(f, "write {}: {error}", path.display()),
            StepError::Handoff { tried } => {
                let list: Vec<String> = tried.iter().map(|(init, e)| format!("{init}: {e}")).collect();
                write!(f, "no init could be executed ({})", list.join("; "))
            }
        }
    }
}

/// How a dir was made writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    Overlay,
    Copy,
    /// Both ways failed: the dir stayed the read-only image dir.
    None,
}

/// The per-dir result the report shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirResult {
    pub dir: String,
    pub mode: DirMode,
}

/// The per-layer result the report shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LayerResult {
    pub layer: String,
    pub files: usize,
    pub refused: usize,
    pub errors: usize,
}
