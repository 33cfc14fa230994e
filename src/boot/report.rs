//! /run/stateless/report.json (what the boot did, for admins, tools and tests) and
//! /run/stateless/provenance (which layer wrote each file). The report format is versioned
//! ([`FORMAT`]) and documented in docs/report.md; [`Report`] reads it back.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::boot::execute::Executor;
use crate::boot::plan;
use crate::fs::layers::Provenance;
use crate::model::hostname::Hostname;
use crate::model::ipv4::Ipv4Net;
use crate::model::options::Diagnostic;
use crate::model::outcome::{DirResult, Failure, LayerResult, Mode, Op, Outcome};
use crate::model::paths::PROVENANCE;
use crate::model::step::Step;
use crate::sys::blocked::Blocked;

/// The report format's version: raised when a field changes meaning or goes away (adding a
/// field does not raise it; readers ignore fields they do not know).
pub const FORMAT: u32 = 1;

/// The report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    /// The version of `stateless` that wrote it.
    pub version: String,
    pub mode: Mode,
    /// The target root, as `stateless` saw it.
    pub root: String,
    pub hostname: Option<Hostname>,
    /// Hostname candidates turned down, and why.
    pub hostname_rejected: Vec<String>,
    pub interface: Option<String>,
    pub address: Option<Ipv4Net>,
    pub dirs: Vec<DirResult>,
    /// The layer root the boot used (`stateless.layers=`, from the image's stateless.conf or the
    /// command line): what `stateless relayer` reads the layers from again. `None` in reports
    /// written before it existed.
    #[serde(default)]
    pub layer_root: Option<String>,
    pub layers: Vec<LayerResult>,
    /// Every step run so far, in order, with its phase and outcome.
    pub steps: Vec<Outcome>,
    /// The init the handoff phase execs (the first present candidate).
    pub init: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
    pub notes: Vec<String>,
    /// What the hardware and devices phases did with each module, in order.
    #[serde(default)]
    pub modules: Vec<crate::kmod::load::Loaded>,
    /// Initramfs mode: the NFS root's version that mounted and passed the root check, and the
    /// versions given up on the way; `None` otherwise and in reports written before it existed.
    #[serde(default)]
    pub nfs_root: Option<crate::model::nfsroot::Mounted>,
    /// An image-file root: the image booted (`source`, the symlink's `target`, `format`, `size`,
    /// `mtime`, `sha256` from the `.sha256` beside it); `None` otherwise and in reports written
    /// before it existed.
    #[serde(default)]
    pub image: Option<crate::model::image::BootedImage>,
    /// An NBD root: the server, export and device, the servers that failed, the supervisor's
    /// pid; `None` otherwise and in reports written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbd_root: Option<crate::model::nbdroot::Attached>,
    /// What our DHCP client got, when it ran and got an answer.
    #[serde(default)]
    pub dhcp: Option<crate::model::lease::Dhcp>,
    /// True when a fatal step failed and the boot went on anyway.
    pub degraded: bool,
    /// Milliseconds from PID 1 start to writing the report.
    pub elapsed_ms: u64,
    /// Of those, the wall time spent waiting: in finit_module, mount(2), on the network (DHCP
    /// replies, carrier, retry pauses), and while any of them was in progress.
    #[serde(default)]
    pub blocked: Blocked,
    /// `elapsed_ms` less `blocked.any_ms` and `blocked.nfs_ms`: `stateless`'s own time.
    #[serde(default)]
    pub own_ms: u64,
    /// RPCs per operation this boot made on the NFS root, from the early mounts to the report
    /// (empty when the root is not NFS).
    #[serde(default)]
    pub nfs_rpcs: BTreeMap<String, u64>,
}

/// What the boot did, which only the report reads: each step's outcome, what each layer wrote
/// and which layer wrote each file, the NFS root as mounted and checked (initramfs mode),
/// whether a fatal step failed.
#[derive(Debug, Default)]
pub struct Record {
    /// Each step's outcome, in the order they ran.
    pub outcomes: Vec<Outcome>,
    /// What each layer wrote, in order.
    pub layers: Vec<LayerResult>,
    /// Which layer wrote each file.
    pub provenance: Provenance,
    pub nfs_root: Option<crate::model::nfsroot::Mounted>,
    /// An image-file root: the image booted.
    pub image: Option<crate::model::image::BootedImage>,
    /// An NBD root: as attached.
    pub nbd_root: Option<crate::model::nbdroot::Attached>,
    /// True once a fatal step has failed.
    pub degraded: bool,
}

impl Report {
    /// The report of what `executor` did so far.
    pub fn of(executor: &Executor<'_>) -> Report {
        let facts = executor.facts();
        let record = executor.record();
        // The init the handoff phase is planned to exec, chosen as it chooses it.
        let (init, _) = plan::init(executor.options().init.as_deref(), executor.target());
        let hostname_rejected = record
            .outcomes
            .iter()
            .find_map(|o| match &o.step {
                Step::Hostname { rejected, .. } => Some(rejected.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let (elapsed_ms, mut blocked, nfs) =
            (executor.elapsed_ms(), crate::sys::blocked::totals(), executor.nfs_cost());
        if let Some(waited) = nfs.waited_ms {
            blocked.nfs_ms = waited;
        }
        Report {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").into(),
            mode: executor.mode(),
            root: crate::model::text::escape_path(executor.target().path()),
            hostname: facts.hostname.clone(),
            hostname_rejected,
            interface: facts.interface.clone(),
            address: facts.address,
            dirs: facts.writable.results(),
            layer_root: Some(executor.options().layers.clone()),
            layers: record.layers.clone(),
            steps: record.outcomes.clone(),
            init,
            diagnostics: executor.diagnostics().to_vec(),
            notes: facts.notes.clone(),
            nfs_root: record.nfs_root.clone(),
            image: record.image.clone(),
            nbd_root: record.nbd_root.clone(),
            dhcp: facts.dhcp.clone(),
            modules: executor.modules().to_vec(),
            degraded: record.degraded,
            elapsed_ms,
            own_ms: elapsed_ms.saturating_sub(blocked.any_ms).saturating_sub(blocked.nfs_ms),
            blocked,
            nfs_rpcs: nfs.rpcs,
        }
    }
}

/// Writes report.json at `path` (relative to the target root) and the provenance file beside
/// it, each replaced all at once.
pub fn write(executor: &Executor<'_>, path: &Path) -> Result<(), Failure> {
    let target = executor.target();
    let fail = |rel: &Path, e: &std::io::Error| Failure::io(Op::Write, Some(&target.host_path(rel)), e);
    let (Some(dir_rel), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Failure::new(Op::Write, Some(path), "not a file path"));
    };
    let dir = target.create_dir_all(dir_rel, 0o755).map_err(|e| fail(dir_rel, &e))?;
    let json = serde_json::to_string_pretty(&Report::of(executor)).map_err(|e| fail(path, &e.into()))? + "\n";
    crate::fs::root::replace_file(dir.fd.as_fd(), name, json.as_bytes(), 0o644).map_err(|e| fail(path, &e))?;
    let provenance = executor.record().provenance.render();
    crate::fs::root::replace_file(dir.fd.as_fd(), PROVENANCE.as_ref(), provenance.as_bytes(), 0o644)
        .map_err(|e| fail(&dir_rel.join(PROVENANCE), &e))
}
