//! Modules: the coldplug probes, the early and late module indexes, loading one module or a
//! coldplug pass, and the notes on modules loaded too early for the layers.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Done, Executor};
use crate::kmod::coldplug::{self, Planned, State};
use crate::kmod::config::Config;
use crate::kmod::load::{self, load_plan, LoadOutcome, Loaded, MAX_THREADS};
use crate::kmod::Kernel;
use crate::model::facts::Learned;
use crate::model::outcome::{Failure, Op};
use crate::model::step::Pass;
use crate::sys::Sys;

/// The running kernel's modules (index and configuration) for each coldplug pass, each read
/// once, and what the hardware and devices phases did with each module.
#[derive(Default)]
pub(super) struct Modules {
    /// Per pass, [`Pass::Early`] first; read when first needed.
    kernels: [Option<Result<Kernel, String>>; 2],
    /// What was done with each module, in order.
    loaded: Vec<Loaded>,
}

impl Modules {
    /// The modules as `pass` sees them: `open`ed on first use (its problems logged), kept.
    fn kernel(&mut self, pass: Pass, open: impl FnOnce() -> Result<Kernel, String>) -> Result<&Kernel, String> {
        let Some(cached) = self.kernels.get_mut(pass as usize) else { return Err("no module index".into()) };
        let kernel = cached.get_or_insert_with(|| {
            let kernel = open();
            if let Ok(kernel) = &kernel {
                kernel.index.problems.iter().chain(&kernel.config.problems).for_each(|p| log::warn!("modules: {p}"));
            }
            kernel
        });
        kernel.as_ref().map_err(String::clone)
    }

    /// The modules as `pass` sees them, if read already (and readable).
    pub(super) fn opened(&self, pass: Pass) -> Option<&Kernel> {
        self.kernels.get(pass as usize)?.as_ref()?.as_ref().ok()
    }

    /// Logs each module's result and keeps it for the report.
    pub(super) fn record(&mut self, results: &[Loaded]) {
        for r in results {
            match &r.outcome {
                LoadOutcome::Loaded => log::info!("module {}: loaded in {} ms", r.module, r.ms),
                LoadOutcome::Failed { message, .. } => log::warn!("module {}: {message}", r.module),
                LoadOutcome::Skipped { because } => log::warn!("module {}: not loaded, {because}", r.module),
                LoadOutcome::NoDevice { message } => log::info!("module {}: no device for it: {message}", r.module),
                LoadOutcome::AlreadyLoaded | LoadOutcome::BuiltIn => {}
            }
        }
        self.loaded.extend(results.iter().cloned());
    }

    /// What the hardware and devices phases did with each module, in order.
    pub(super) fn loaded(&self) -> &[Loaded] {
        &self.loaded
    }

    /// The modules in the running kernel now (/proc/modules).
    pub(super) fn in_kernel(sys: &dyn Sys) -> BTreeSet<String> {
        coldplug::loaded(&String::from_utf8_lossy(&sys.proc_file("modules").unwrap_or_default()))
    }

    /// The modules loaded before the network (with the early pass's configuration) that the
    /// layers' modprobe.d (the late pass's, else what `read_late` reads) blacklists or gives
    /// other options: a note on each.
    fn too_late_for_layers(&self, read_late: impl FnOnce() -> Config) -> Vec<String> {
        let Some(early) = self.opened(Pass::Early) else { return Vec::new() };
        let read;
        let late = match self.opened(Pass::Late) {
            Some(late) => &late.config,
            None => {
                read = read_late();
                &read
            }
        };
        let mut notes = Vec::new();
        for m in self.loaded.iter().filter(|m| m.outcome == LoadOutcome::Loaded) {
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
        notes
    }
}

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
        // The image's modprobe.d as the layers made it, also when udev does the coldplug.
        let (target, options) = (&self.target, &self.options.modules);
        let notes = self.modules.too_late_for_layers(|| crate::kmod::root_config(target, None, options));
        notes.iter().for_each(|n| log::warn!("{n}"));
        self.facts.notes.extend(notes);
    }

    /// The running kernel's modules as `pass` sees them, read on first use: before the network
    /// the running root's tree with its modprobe.d and the base layer's; after the layers the
    /// target's, with its /etc as the layers made it.
    pub(super) fn kernel(&mut self, pass: Pass) -> Result<&Kernel, String> {
        let (sys, running, target, options) = (self.sys, &self.running, &self.target, &self.options);
        self.modules.kernel(pass, || {
            let release = sys.uname().release;
            match pass {
                Pass::Early => {
                    let base = format!("{}/base", options.layers);
                    Kernel::open(running, &release, &options.modules, Some((target, &base)))
                }
                Pass::Late => Kernel::open(target, &release, &options.modules, None),
            }
        })
    }

    /// The devices under /sys now, and the coldplug plan for them.
    fn coldplug_round(&mut self, pass: Pass) -> Result<(usize, Vec<Planned>), String> {
        let sysfs = self.running.host_path("sys");
        let loaded = Modules::in_kernel(self.sys);
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
        let loaded = Modules::in_kernel(self.sys);
        let sysfs = self.running.host_path("sys");
        let Some(kernel) = self.modules.opened(pass) else { return Err("no module index".into()) };
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
        self.modules.record(&results);
        Ok(results)
    }

    /// A module by name (or alias) and what it needs.
    pub(super) fn load_module(&mut self, name: &str) -> Result<Done, Failure> {
        let fail = |message: String| Failure::new(Op::LoadModule, Some(Path::new(name)), message);
        let loaded = Modules::in_kernel(self.sys);
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
        let loaded = Modules::in_kernel(self.sys);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let mut config = Config::default();
        config.add_file("modprobe.d/lab.conf", text.as_bytes());
        config
    }

    fn kernel(dir: &str, text: &str) -> Result<Kernel, String> {
        Ok(Kernel { dir: dir.into(), index: crate::kmod::index::Index::default(), config: config(text) })
    }

    #[test]
    fn each_pass_reads_its_modules_once_and_keeps_a_failure() {
        let mut modules = Modules::default();
        let dir = |k: Result<&Kernel, String>| k.map(|k| k.dir.display().to_string());
        assert!(modules.opened(Pass::Early).is_none());
        assert_eq!(dir(modules.kernel(Pass::Early, || kernel("/early", ""))), Ok("/early".into()));
        assert_eq!(dir(modules.kernel(Pass::Early, || panic!("read again"))), Ok("/early".into()));
        assert!(modules.opened(Pass::Late).is_none(), "each pass its own");
        let missing = "/lib/modules/6.1.0/modules.dep: not found".to_string();
        assert_eq!(dir(modules.kernel(Pass::Late, || Err(missing.clone()))), Err(missing.clone()));
        assert_eq!(dir(modules.kernel(Pass::Late, || panic!("read again"))), Err(missing), "a failure is kept");
        assert!(modules.opened(Pass::Late).is_none());
        assert_eq!(modules.opened(Pass::Early).map(|k| k.dir.clone()), Some("/early".into()));
    }

    #[test]
    fn only_modules_loaded_before_the_layers_changed_their_rules_are_too_late() {
        let mut modules = Modules::default();
        let loaded = |module: &str, outcome| Loaded { module: module.into(), outcome, ms: 1, file: None };
        let failed = LoadOutcome::Failed { errno: None, message: "no".into() };
        modules.record(&[
            loaded("e1000", LoadOutcome::Loaded),
            loaded("virtio_net", LoadOutcome::Loaded),
            loaded("floppy", LoadOutcome::Loaded),
            loaded("pcspkr", failed),
            loaded("nfs", LoadOutcome::Loaded),
        ]);
        assert_eq!(modules.loaded().len(), 5);
        assert!(modules.too_late_for_layers(|| panic!("the layers read without an early pass")).is_empty());
        let early = "blacklist floppy\noptions nfs nfs4_disable_idmapping=0\n";
        assert!(modules.kernel(Pass::Early, || kernel("/early", early)).is_ok());
        let nfs = "module nfs: the layers set options \"\", but it was loaded before the network with \"nfs4_disable_idmapping=0\"";
        let late = "blacklist e1000\nblacklist floppy\nblacklist pcspkr\noptions virtio_net napi_tx=1\n";
        assert_eq!(
            modules.too_late_for_layers(|| config(late)),
            [
                "module e1000: blacklisted by the layers, but loaded before the network",
                "module virtio_net: the layers set options \"napi_tx=1\", but it was loaded before the network with \"\"",
                nfs,
            ]
        );
        assert!(modules.kernel(Pass::Late, || kernel("/late", "")).is_ok());
        assert_eq!(modules.too_late_for_layers(|| panic!("the late pass's are read already")), [nfs]);
    }
}
