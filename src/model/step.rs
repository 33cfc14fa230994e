//! The boot as data: a list of typed steps, built from options and facts without side effects.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::hostname::Hostname;
use super::layer::Layer;
use super::mount::EarlyMount;
use super::options::OverlayMode;

/// The kinds of step, in boot order. Their names are what `stateless.break=` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Mounts,
    Hostname,
    Overlay,
    Layers,
    HostFiles,
    Report,
    Handoff,
}

impl StepKind {
    pub const ALL: [StepKind; 7] = [
        StepKind::Mounts,
        StepKind::Hostname,
        StepKind::Overlay,
        StepKind::Layers,
        StepKind::HostFiles,
        StepKind::Report,
        StepKind::Handoff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Mounts => "mounts",
            StepKind::Hostname => "hostname",
            StepKind::Overlay => "overlay",
            StepKind::Layers => "layers",
            StepKind::HostFiles => "host-files",
            StepKind::Report => "report",
            StepKind::Handoff => "handoff",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = StepKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown step {s:?} (one of: {})", names.join(", "))
        })
    }
}

/// One thing the boot does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// An early kernel filesystem.
    Mount {
        mount: EarlyMount,
    },
    /// sethostname/setdomainname (PID 1 only).
    Hostname {
        hostname: Option<Hostname>,
        rejected: Vec<String>,
    },
    /// A writable dir: tmpfs + overlayfs, or tmpfs + copy.
    Overlay {
        dir: String,
        mode: OverlayMode,
        tmpfs_size: Option<String>,
    },
    Layer {
        layer: Layer,
    },
    /// /etc/hostname, /etc/conf.d/hostname, /etc/hosts.
    HostFiles {
        fqdn: String,
        short: String,
        files: Vec<String>,
    },
    /// /run/stateless/report.json and provenance.
    Report {
        path: String,
    },
    /// exec of the first init that exists.
    Handoff {
        candidates: Vec<String>,
        chosen: Option<String>,
    },
}

impl Step {
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Mount { .. } => StepKind::Mounts,
            Step::Hostname { .. } => StepKind::Hostname,
            Step::Overlay { .. } => StepKind::Overlay,
            Step::Layer { .. } => StepKind::Layers,
            Step::HostFiles { .. } => StepKind::HostFiles,
            Step::Report { .. } => StepKind::Report,
            Step::Handoff { .. } => StepKind::Handoff,
        }
    }

    /// A fatal step's failure goes to the emergency policy; a degradable one is logged and the boot goes on.
    /// Without a writable dir the client cannot run its services; without an init there is no system.
    pub fn fatal(&self) -> bool {
        matches!(self, Step::Overlay { .. } | Step::Handoff { .. })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mount { mount } => write!(f, "mount {} on /{}", mount.fstype, mount.target),
            Step::Hostname { hostname: Some(h), .. } => write!(f, "hostname {} ({})", h.fqdn(), h.source),
            Step::Hostname { hostname: None, .. } => write!(f, "hostname: none known, kernel's left as is"),
            Step::Overlay { dir, mode: OverlayMode::Overlay, .. } => write!(f, "overlay /{dir}: tmpfs + overlayfs"),
            Step::Overlay { dir, mode: OverlayMode::Copy, .. } => write!(f, "overlay /{dir}: tmpfs + copy"),
            Step::Layer { layer } if layer.present => write!(f, "layer {} ({} entries)", layer.name, layer.files.len()),
            Step::Layer { layer } => write!(f, "layer {} (not present)", layer.name),
            Step::HostFiles { files, .. } => {
                write!(f, "host files {}", files.iter().map(|p| format!("/{p}")).collect::<Vec<_>>().join(", "))
            }
            Step::Report { path } => write!(f, "report /{path}"),
            Step::Handoff { chosen: Some(init), .. } => write!(f, "handoff to {init}"),
            Step::Handoff { chosen: None, candidates } => {
                write!(f, "handoff: none of {} exists", candidates.join(", "))
            }
        }
    }
}
