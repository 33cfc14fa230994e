//! /run/stateless/report.json (what the boot did, for admins and tests) and
//! /run/stateless/provenance (which layer wrote each file).

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::boot::execute::Executor;
use crate::model::hostname::Hostname;
use crate::model::ipv4::Ipv4Net;
use crate::model::options::Diagnostic;
use crate::model::outcome::{DirResult, LayerResult, Mode, Outcome};

/// The report, as serialised.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub version: &'static str,
    pub mode: Mode,
    pub root: &'a Path,
    pub hostname: Option<&'a Hostname>,
    /// Hostname candidates turned down, and why.
    pub hostname_rejected: &'a [String],
    pub interface: Option<&'a str>,
    pub address: Option<Ipv4Net>,
    pub dirs: &'a [DirResult],
    pub layers: &'a [LayerResult],
    pub steps: &'a [Outcome],
    /// The init that will be exec'd (the first present candidate).
    pub init: Option<&'a str>,
    pub diagnostics: &'a [Diagnostic],
    pub notes: &'a [String],
    /// True when a fatal step failed and the boot went on anyway.
    pub degraded: bool,
    /// Milliseconds from PID 1 start to writing the report.
    pub elapsed_ms: u64,
}

/// Writes report.json at `target` and the provenance file beside it.
pub fn write(executor: &Executor<'_>, plan: &crate::boot::plan::Plan, target: &Path) -> io::Result<()> {
    let init = plan.steps.iter().find_map(|s| match s {
        crate::model::step::Step::Handoff { chosen, .. } => chosen.as_deref(),
        _ => None,
    });
    let report = Report {
        version: env!("CARGO_PKG_VERSION"),
        mode: executor.mode,
        root: &executor.root,
        hostname: plan.hostname.as_ref(),
        hostname_rejected: plan.hostname_rejected(),
        interface: plan.facts.interface.as_deref(),
        address: plan.facts.address,
        dirs: &executor.dirs,
        layers: &executor.layers,
        steps: &executor.outcomes,
        init,
        diagnostics: &plan.diagnostics,
        notes: &plan.facts.notes,
        degraded: executor.degraded,
        elapsed_ms: executor.elapsed_ms(),
    };
    let dir = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(&report).map_err(io::Error::other)?;
    std::fs::write(target, json + "\n")?;
    std::fs::write(dir.join("provenance"), executor.provenance.render())
}
