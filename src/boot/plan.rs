//! The boot as data: a list of typed steps, built from options and facts without side effects.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use serde::Serialize;

use crate::model::step::Step;

use crate::boot::handoff;
use crate::fs::layers;
use crate::fs::mounts::EARLY_MOUNTS;
use crate::model::facts::Facts;
use crate::model::hostname::{self, Candidate, Hostname, Source};
use crate::model::options::{Diagnostic, Options};

/// Where the report goes, relative to the root.
pub const REPORT_DIR: &str = "run/stateless";

/// Everything the boot will do, and what it was decided from.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub root: PathBuf,
    pub options: Options,
    pub diagnostics: Vec<Diagnostic>,
    pub facts: Facts,
    pub hostname: Option<Hostname>,
    pub steps: Vec<Step>,
}

/// The first steps of every plan: they run before the command line can be read.
pub fn early_steps() -> Vec<Step> {
    EARLY_MOUNTS.iter().map(|m| Step::Mount { mount: *m }).collect()
}

/// Opens the root directory the plan is about.
pub fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Reads a small text file of the image (`/etc/stateless.conf`) as the image sees it, never
/// leaving it; `None` when missing, an error when unreadable or over 64 KiB.
pub fn read_image_file(root: &Path, path: &str) -> std::io::Result<Option<String>> {
    use std::io::Read;
    const LIMIT: u64 = 64 * 1024;
    let root_fd = open_root(root)?;
    let fd = match crate::fs::tree::open_in_root(
        root_fd.as_fd(),
        &layers::relative(path),
        OFlags::RDONLY | OFlags::NONBLOCK,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    std::fs::File::from(fd).take(LIMIT + 1).read_to_string(&mut text)?;
    if text.len() as u64 > LIMIT {
        return Err(std::io::Error::other("larger than 64 KiB"));
    }
    Ok(Some(text))
}

/// Builds the plan. Reads the image under `root` (layers, init candidates) but changes nothing.
pub fn build(root: &Path, options: Options, diagnostics: Vec<Diagnostic>, facts: Facts) -> Plan {
    let mut candidates = Vec::new();
    if let Some(name) = &options.hostname {
        candidates.push(Candidate { source: Source::Cmdline, name: name.clone() });
    }
    if let Some(name) = facts.kernel_hostname.as_ref().filter(|n| !hostname::kernel_name_is_unset(n)) {
        candidates.push(Candidate { source: Source::Kernel, name: name.trim().to_string() });
    }
    let choice = hostname::choose(&candidates, &options.hostname_prefix, facts.address, facts.domain.as_deref());

    let mut steps = early_steps();
    steps.push(Step::Hostname { hostname: choice.hostname.clone(), rejected: choice.rejected });
    for dir in &options.dirs {
        steps.push(Step::Overlay { dir: dir.clone(), mode: options.mode, tmpfs_size: options.tmpfs_size.clone() });
    }
    let mut facts = facts;
    let layer_root = open_root(root)
        .map_err(|e| format!("open {}: {e}", root.display()))
        .and_then(|fd| layers::open_root(fd.as_fd(), &options.layers))
        .unwrap_or_else(|note| {
            facts.notes.push(note);
            None
        });
    let found = layers::probe(
        layer_root.as_ref().map(AsFd::as_fd),
        layers::candidates(choice.hostname.as_ref(), facts.address),
        &options.dirs,
    );
    steps.extend(found.into_iter().map(|layer| Step::Layer { layer }));
    if let Some(h) = &choice.hostname {
        if options.dirs.iter().any(|d| d == "etc") {
            let files = crate::fs::hostfiles::planned(root).into_iter().map(|f| format!("etc/{f}")).collect();
            steps.push(Step::HostFiles { fqdn: h.fqdn(), short: h.short.clone(), files });
        }
    }
    steps.push(Step::Report { path: format!("{REPORT_DIR}/report.json") });
    let candidates = handoff::candidates(options.init.as_deref());
    let chosen = handoff::first_present(root, &candidates);
    steps.push(Step::Handoff { candidates, chosen });

    Plan { root: root.to_path_buf(), options, diagnostics, facts, hostname: choice.hostname, steps }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "root: {}", self.root.display())?;
        match &self.hostname {
            Some(h) => writeln!(f, "hostname: {} (from {})", h.fqdn(), h.source)?,
            None => writeln!(f, "hostname: none")?,
        }
        match (&self.facts.address, &self.facts.interface) {
            (Some(a), Some(i)) => writeln!(f, "address: {a} on {i}")?,
            (Some(a), None) => writeln!(f, "address: {a}")?,
            _ => writeln!(f, "address: none")?,
        }
        for d in &self.diagnostics {
            writeln!(f, "warning: {d}")?;
        }
        for note in &self.facts.notes {
            writeln!(f, "note: {note}")?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {step}{}", i + 1, if step.fatal() { " [fatal]" } else { "" })?;
            write_step_details(f, step, &self.options.dirs)?;
        }
        Ok(())
    }
}

fn write_step_details(f: &mut fmt::Formatter<'_>, step: &Step, dirs: &[String]) -> fmt::Result {
    match step {
        Step::Hostname { rejected, .. } => rejected.iter().try_for_each(|r| writeln!(f, "      {r}")),
        Step::Layer { layer } => {
            for entry in &layer.files {
                writeln!(f, "      /{}", entry.path.display())?;
            }
            for entry in &layer.refused {
                writeln!(f, "      refused /{}: {}", entry.path.display(), layers::refusal(entry, dirs))?;
            }
            layer.errors.iter().try_for_each(|e| writeln!(f, "      error: {e}"))
        }
        _ => Ok(()),
    }
}

impl Plan {
    /// Logs what planning found wrong: option diagnostics and probing notes.
    pub fn log_findings(&self) {
        for d in &self.diagnostics {
            log::warn!("{d}");
        }
        for note in &self.facts.notes {
            log::warn!("{note}");
        }
        for rejected in self.hostname_rejected() {
            log::warn!("{rejected}");
        }
    }

    /// Why hostname candidates were turned down.
    pub fn hostname_rejected(&self) -> &[String] {
        self.steps
            .iter()
            .find_map(|s| match s {
                Step::Hostname { rejected, .. } => Some(rejected.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The plan that runs before anything is known: the early mounts, with default options.
    pub fn early(root: &Path) -> Plan {
        let options = Options::resolve(&crate::config::Cmdline::default(), None).0;
        Plan {
            root: root.to_path_buf(),
            options,
            diagnostics: Vec::new(),
            facts: Facts::default(),
            hostname: None,
            steps: early_steps(),
        }
    }
}
