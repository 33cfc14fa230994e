//! Modules: the coldplug probes, the early and late module indexes, loading one module or a
//! coldplug pass, and the notes on modules loaded too early for the layers.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Done, Executor};
use crate::kmod::coldplug::{self, Planned, State};
use crate::kmod::load::{self, load_plan, LoadOutcome, Loaded, MAX_THREADS};
use crate::kmod::Kernel;
use crate::model::facts::Learned;
use crate::model::outcome::{Failure, Op};
use crate::model::step::Pass;

impl Executor<'_> {
    /// The devices and the modules a coldplug pass would load for them now.
    pub(super) fn probe_coldplug(&mut self, pass: Pass) {
        (self.facts.devices, self.facts.coldplug) = (None, Vec::new());
        if self.options.modules.no_coldplug {
            return;
        }
        match self.coldplug_round(pass) {
            Ok((devices, plan)) => {
                self.facts.devices = Some(devices);
                self.facts.coldplug = plan.into_iter().filter(|p| p.state == State::Load).map(|p| p.module).collect();
            }
            Err(e) => self.facts.notes.push(format!("coldplug: {e}")),
        }
    }

    /// Modules loaded before the network, which the layers' modprobe.d would have blacklisted or
    /// given other options: too late for this boot, said in the log and the report's notes.
    pub(super) fn too_late_for_layers(&mut self) {
        let Some(Some(Ok(early))) = self.kernels.first() else { return };
        // The image's modprobe.d as the layers made it, also when udev does the coldplug.
        let read;
        let late = match self.kernels.get(1) {
            Some(Some(Ok(late))) => &late.config,
            _ => {
                read = crate::kmod::root_config(&self.target, None, &self.options.modules);
                &read
            }
        };
        let mut notes = Vec::new();
        for m in self.modules.iter().filter(|m| m.outcome == LoadOutcome::Loaded) {
            let (before, after) = (early.config.params(&m.module), late.params(&m.module));
            if late.blacklist.contains(&m.module) && !early.config.blacklist.contains(&m.module) {
                notes.push(format!("module {}: blacklisted by the layers, but loaded before the network", m.module));
            } else if before != after {
                notes.push(format!(
                    "module {}: the layers set options {after:?}, but it was loaded before the network with {before:?}",
                    m.module
                ));
            }
        }
        notes.iter().for_each(|n| log::warn!("{n}"));
        self.facts.notes.extend(notes);
    }

    /// The running kernel's modules as `pass` sees them, read on first use: before the network
    /// the running root's tree with its modprobe.d and the base layer's; after the layers the
    /// target's, with its /etc as the layers made it.
    pub(super) fn kernel(&mut self, pass: Pass) -> Result<&Kernel, String> {
        let slot = pass as usize;
        if self.kernels.get(slot).is_some_and(Option::is_none) {
            let release = self.sys.uname().release;
            let base = format!("{}/base", self.options.layers);
            let kernel = match pass {
                Pass::Early => {
                    Kernel::open(&self.running, &release, &self.options.modules, Some((&self.target, &base)))
                }
                Pass::Late => Kernel::open(&self.target, &release, &self.options.modules, None),
            };
            if let Ok(kernel) = &kernel {
                kernel.index.problems.iter().chain(&kernel.config.problems).for_each(|p| log::warn!("modules: {p}"));
            }
            if let Some(cached) = self.kernels.get_mut(slot) {
                *cached = Some(kernel);
            }
        }
        match self.kernels.get(slot).and_then(Option::as_ref) {
            Some(Ok(kernel)) => Ok(kernel),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no module index".into()),
        }
    }

    /// The modules in the running kernel (/proc/modules).
    pub(super) fn loaded_modules(&self) -> BTreeSet<String> {
        coldplug::loaded(&String::from_utf8_lossy(&self.sys.proc_file("modules").unwrap_or_default()))
    }

    /// The devices under /sys now, and the coldplug plan for them.
    fn coldplug_round(&mut self, pass: Pass) -> Result<(usize, Vec<Planned>), String> {
        let sysfs = self.running.host_path("sys");
        let loaded = self.loaded_modules();
        let kernel = self.kernel(pass)?;
        let devices = coldplug::devices(&sysfs).map_err(|e| format!("{}: {e}", sysfs.display()))?;
        let count = devices.len();
        let (_, plan) = coldplug::plan(kernel.rules(), devices, &loaded);
        Ok((count, plan))
    }

    /// Loads `plan` in parallel (and, with `coldplug`, the drivers of devices that appear
    /// meanwhile) and records each module's result.
    fn load(&mut self, pass: Pass, plan: Vec<Planned>, coldplug: bool) -> Result<Vec<Loaded>, String> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(2, MAX_THREADS);
        self.kernel(pass)?;
        let loaded = self.loaded_modules();
        let sysfs = self.running.host_path("sys");
        let Some(Some(Ok(kernel))) = self.kernels.get(pass as usize) else { return Err("no module index".into()) };
        let new_devices = |planned: &BTreeSet<String>| {
            let Ok(devices) = coldplug::devices(&sysfs) else { return Vec::new() };
            let (_, plan) = coldplug::plan(kernel.rules(), devices, &loaded);
            plan.into_iter().filter(|p| p.state == State::Load && !planned.contains(&p.module)).collect()
        };
        let more: load::More<'_> = if coldplug { &new_devices } else { &load::no_more };
        let root = match pass {
            Pass::Early => &self.running,
            Pass::Late => &self.target,
        };
        let results = load_plan(self.sys, root, &kernel.dir, kernel.rules(), plan, threads, more);
        self.record_loaded(&results);
        Ok(results)
    }

    /// Logs each module's result and keeps it for the report.
    pub(super) fn record_loaded(&mut self, results: &[Loaded]) {
        for r in results {
            match &r.outcome {
                LoadOutcome::Loaded => log::info!("module {}: loaded in {} ms", r.module, r.ms),
                LoadOutcome::Failed { message, .. } => log::warn!("module {}: {message}", r.module),
                LoadOutcome::Skipped { because } => log::warn!("module {}: not loaded, {because}", r.module),
                LoadOutcome::NoDevice { message } => log::info!("module {}: no device for it: {message}", r.module),
                LoadOutcome::AlreadyLoaded | LoadOutcome::BuiltIn => {}
            }
        }
        self.modules.extend(results.iter().cloned());
    }

    /// A module by name (or alias) and what it needs.
    pub(super) fn load_module(&mut self, name: &str) -> Result<Done, Failure> {
        let fail = |message: String| Failure::new(Op::LoadModule, Some(Path::new(name)), message);
        let loaded = self.loaded_modules();
        let (plan, required) = self
            .kernel(Pass::Early)
            .and_then(|k| {
                // What must load for the step to succeed: the module and its modules.dep
                // dependencies; a softdep that fails does not count (as in kmod).
                let mut required: BTreeSet<String> = BTreeSet::new();
                for found in k.rules().lookup(name) {
                    required.extend(k.index.modules.get(&found.module).into_iter().flat_map(|m| m.deps.clone()));
                    required.insert(found.module);
                }
                Ok((k.plan_names(&[name.to_string()], &loaded)?, required))
            })
            .map_err(fail)?;
        // What is in the kernel already (built in, or loaded earlier: the NFS client during
        // DHCP) is neither loaded nor reported again.
        let plan: Vec<Planned> =
            plan.into_iter().filter(|p| !matches!(p.state, State::Loaded | State::BuiltIn)).collect();
        let in_kernel = [Learned::Module(name.to_string())];
        if plan.is_empty() {
            return Ok(Done::ok("already in the kernel").learned(in_kernel));
        }
        let results = self.load(Pass::Early, plan, false).map_err(fail)?;
        let release = self.sys.uname().release;
        match results
            .iter()
            .filter(|r| required.contains(&r.module))
            .find(|r| !matches!(r.outcome, LoadOutcome::Loaded | LoadOutcome::AlreadyLoaded | LoadOutcome::BuiltIn))
        {
            Some(Loaded { outcome: LoadOutcome::Failed { errno, message }, .. }) => {
                Err(Failure { errno: *errno, ..fail(message.clone()) })
            }
            Some(Loaded { outcome: LoadOutcome::NoDevice { message }, .. }) => Err(Failure {
                errno: Some(rustix::io::Errno::NODEV.raw_os_error()),
                ..fail(format!("{message}: the module found no device"))
            }),
            Some(other) => Err(fail(format!("{}: {:?}", other.module, other.outcome))),
            None => Ok(Done::ok(format!("loaded for {release}")).learned(in_kernel)),
        }
    }

    /// Coldplug: the planned drivers, and meanwhile those of the devices that loading them made
    /// appear (a bus driver creates the devices of the next); bounded in plan size and time.
    pub(super) fn coldplug(&mut self, pass: Pass, modules: &[String]) -> Result<Done, Failure> {
        let fail = |message: String| Failure::new(Op::LoadModule, None, message);
        // What the probe planned runs, without walking /sys and resolving again.
        let loaded = self.loaded_modules();
        let plan = self.kernel(pass).and_then(|k| k.plan_names(modules, &loaded)).map_err(fail)?;
        let plan: Vec<Planned> = plan.into_iter().filter(|p| p.state == State::Load).collect();
        let first = plan.len();
        let results = self.load(pass, plan, true).map_err(fail)?;
        let failed: Vec<Loaded> = results
            .iter()
            .filter(|r| {
                !matches!(r.outcome, LoadOutcome::Loaded | LoadOutcome::AlreadyLoaded | LoadOutcome::NoDevice { .. })
            })
            .cloned()
            .collect();
        let later = results.len().saturating_sub(first);
        let detail = format!("{} modules ({first} planned, {later} for devices that appeared)", results.len());
        match failed.first() {
            Some(first) => {
                let errno = match &first.outcome {
                    LoadOutcome::Failed { errno, .. } => *errno,
                    _ => None,
                };
                let names: Vec<&str> = failed.iter().map(|r| r.module.as_str()).collect();
                let message = format!("not loaded: {}", names.join(", "));
                Ok(Done::degraded(detail, Failure { errno, ..fail(message) }))
            }
            None => Ok(Done::ok(detail)),
        }
    }
}
