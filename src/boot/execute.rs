//! Runs the boot phase by phase: probe what the phase needs to know, plan it, carry out each of
//! its steps (one function per kind of step, each returning what it did or a typed
//! [`Failure`]), learn from the results. The failure policy lives in [`Executor::failed`] alone.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::boot::network::{self, Answered};
use crate::boot::plan::NEW_ROOT;
use crate::boot::{handoff, plan, report, rootcheck};
use crate::fs::hostfiles;
use crate::fs::layers::{self, Provenance};
use crate::fs::mounts::{
    self, EarlyMount, OVERLAYFS_MAGIC, RW_BASE, TMPFS_MAGIC, UPPER_TMPFS_FLAGS, WRITABLE_DIR_FLAGS,
};
use crate::fs::netconf::{self, Resolver};
use crate::fs::nfs::RpcStat;
use crate::fs::root::{ImageDir, ImageRoot};
use crate::fs::tree;
use crate::kmod::coldplug::{self, Planned, State};
use crate::kmod::load::{self, load_plan, Loaded, MAX_THREADS};
use crate::kmod::Kernel;
use crate::model::facts::Facts;
use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::model::layer::LayerKind;
use crate::model::lease::{Dhcp, Exchange, Lease};
use crate::model::mount::EARLY_MOUNTS;
use crate::model::nfsroot::{self, Dropped, Mounted, NfsMount};
use crate::model::options::{ClientId, Diagnostic, Emergency, Options, OverlayMode};
use crate::model::outcome::{DirMode, DirResult, Failure, LayerResult, Mode, Op, Outcome, Status};
use crate::model::step::{Pass, Phase, Step};
use crate::sys::{MountCall, Sys};
use rustix::mount::MountFlags;

/// The DHCP client waits a random time below this before its first message, so a room of
/// clients powered on together does not reach the server in the same instant.
const DHCP_START_DELAY: Duration = Duration::from_millis(500);

/// INFORM only asks for a host name on a link that already works (the root came over it), and
/// some servers never answer it (QEMU's user-mode network): it is given this long at most.
const INFORM_BOUND: Duration = Duration::from_secs(10);
/// What a step function reports when it did not fail.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct Done {
    status: Status,
    detail: String,
    /// Why a degraded step is degraded.
    error: Option<Failure>,
}

impl Done {
    pub(crate) fn ok(detail: impl Into<String>) -> Self {
        Self { status: Status::Ok, detail: detail.into(), error: None }
    }

    pub(crate) fn skipped(detail: impl Into<String>) -> Self {
        Self { status: Status::Skipped, detail: detail.into(), error: None }
    }

    pub(crate) fn degraded(detail: impl Into<String>, error: Failure) -> Self {
        Self { status: Status::Degraded, detail: detail.into(), error: Some(error) }
    }
}

/// The udev daemons of systemd and eudev: an image with one coldplugs its devices itself.
pub const UDEV_DAEMONS: [&str; 4] =
    ["/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd", "/sbin/udevd", "/usr/sbin/udevd"];

/// Runs the phases against two roots through a [`Sys`], collecting outcomes for the report.
pub struct Executor<'a> {
    pub sys: &'a dyn Sys,
    /// The root `stateless` runs in: the early mounts, the modules.
    pub running: ImageRoot,
    /// The image the client boots: writable dirs, layers, host files, report, init.
    pub target: ImageRoot,
    pub mode: Mode,
    pub options: Options,
    pub diagnostics: Vec<Diagnostic>,
    /// What is known so far; grows as phases run.
    pub facts: Facts,
    /// The kernel command line, read again with the image's /etc/stateless.conf after a
    /// switch out of the initramfs.
    pub cmdline: Vec<u8>,
    /// Arguments the kernel gave us, passed on to init.
    pub init_args: Vec<OsString>,
    pub started: Instant,
    pub outcomes: Vec<Outcome>,
    pub provenance: Provenance,
    pub dirs: Vec<DirResult>,
    pub layers: Vec<LayerResult>,
    /// True once a fatal step has failed.
    pub degraded: bool,
    /// RPCs per operation on the target root's NFS mount once /proc was there (none: not NFS).
    pub nfs_before: Option<BTreeMap<String, RpcStat>>,
    /// The time waited on the server of an NFS target root when counting started
    /// ([`crate::fs::nfs::waited_ms`]), plus what coldplug steps waited since (theirs, not
    /// counted again); `None`: not NFS, or not counted.
    pub nfs_waited_from: Option<u64>,
    /// The running kernel's modules (index and configuration) for each coldplug pass
    /// ([`Pass::Early`] first), read once when first needed.
    kernels: [Option<Result<Kernel, String>>; 2],
    /// What the hardware and devices phases did with each module, in order.
    pub modules: Vec<Loaded>,
    /// Initramfs mode: the NFS root as mounted and checked.
    pub nfs_root: Option<Mounted>,
    /// Overlays prepared, to be mounted after the layers.
    pending: Vec<Pending>,
    /// Dirs in copy mode: the tmpfs on each.
    copied: Vec<(String, ImageDir)>,
}

/// The versions given up on the way, for a failure's message: `; NFSv4.2 dropped: <why>`...
fn said_dropped(dropped: &[Dropped]) -> String {
    dropped.iter().map(|d| format!("; NFSv{} dropped: {}", d.version, d.reason)).collect()
}

/// What the check of a root just mounted decided.
enum Checked {
    /// The boot goes on with it; what was read.
    Booting(String),
    /// Unmounted: to be mounted again with these older versions.
    SteppedDown(&'static [&'static str]),
}

/// A dir being made writable: the image dir, opened before anything was mounted on it, and
/// the size of its tmpfs.
struct Writable {
    dir: String,
    lower: ImageDir,
    st: rustix::fs::Stat,
    size: Option<String>,
}

/// An overlay the writable-dirs phase prepared: mounted once the layers are in its upper dir.
struct Pending {
    writable: Writable,
    /// The tmpfs holding upper/ and work/ (none when they are on the scratch filesystem).
    rw: Option<PathBuf>,
    upper: ImageDir,
    work: PathBuf,
}

impl<'a> Executor<'a> {
    pub fn new(sys: &'a dyn Sys, running: ImageRoot, target: ImageRoot, mode: Mode) -> Self {
        Self {
            sys,
            running,
            target,
            mode,
            options: Options::default(),
            diagnostics: Vec::new(),
            facts: Facts::default(),
            cmdline: Vec::new(),
            init_args: Vec::new(),
            started: Instant::now(),
            outcomes: Vec::new(),
            provenance: Provenance::default(),
            dirs: Vec::new(),
            layers: Vec::new(),
            degraded: false,
            nfs_before: None,
            nfs_waited_from: None,
            kernels: [None, None],
            modules: Vec::new(),
            nfs_root: None,
            pending: Vec::new(),
            copied: Vec::new(),
        }
    }

    /// Runs `phases` in order.
    pub fn run(&mut self, phases: &[Phase]) {
        for phase in phases {
            self.run_phase(*phase);
        }
    }

    /// Probes what `phase` needs to know, plans it from the facts known now, runs its steps.
    pub fn run_phase(&mut self, phase: Phase) {
        self.probe(phase);
        if self.options.break_at.contains(&phase) {
            self.break_to_shell(phase);
        }
        #[cfg(feature = "panic-test")]
        if self.mode == Mode::Boot {
            crate::boot::panic::forced(phase);
        }
        let mut ran = Vec::new();
        for _ in 0..plan::ROUNDS {
            let fresh = plan::next_steps(phase, &self.options, &self.facts, &self.target, &ran);
            if fresh.is_empty() {
                break;
            }
            fresh.iter().for_each(|step| self.run_step(step));
            ran.extend(fresh);
        }
        if matches!(phase, Phase::Hardware | Phase::Network) {
            self.start_log_server(phase == Phase::Network);
        }
        // The time waited on the server of an NFS root counts from its switch into it.
        if ran.iter().any(|s| matches!(s, Step::SwitchRoot { .. })) {
            self.count_nfs_waits();
        }
        // At boot every RPC on the root is the boot's: counting from its mount saves reading
        // mountstats twice (8 ms under TCG). `apply` runs on a live system: count from here.
        if phase == Phase::EarlyMounts && self.mode == Mode::Apply {
            self.nfs_before = self.nfs_rpcs();
            self.nfs_waited_from = self.nfs_before.as_ref().map(crate::fs::nfs::waited_ms);
        }
    }

    /// Per-op RPC statistics so far on the target root's NFS mount, `None` when it is not NFS.
    pub fn nfs_rpcs(&self) -> Option<BTreeMap<String, RpcStat>> {
        let stats = self.sys.proc_file("self/mountstats").ok()?;
        crate::fs::nfs::rpc_stats(&String::from_utf8_lossy(&stats), &self.target.path().to_string_lossy())
    }

    /// The time waited on the server of an NFS target so far ([`crate::fs::nfs::waited_ms`]),
    /// `None` when it is not NFS. A reading of mountstats costs about 8 ms under TCG: one when
    /// the count starts, two per coldplug step while it runs, one for the report.
    fn nfs_waited_now(&self) -> Option<u64> {
        self.nfs_rpcs().as_ref().map(crate::fs::nfs::waited_ms)
    }

    /// Starts counting the time waited on the server of an NFS target (not NFS: nothing to count).
    pub fn count_nfs_waits(&mut self) {
        self.nfs_waited_from = self.nfs_waited_now();
    }

    /// Reads from the kernel what planning `phase` needs: whether overlayfs is registered, and at
    /// boot the network (`apply` is given the network facts instead).
    fn probe(&mut self, phase: Phase) {
        match phase {
            Phase::Hardware => {
                let listed = |bytes: Vec<u8>| {
                    String::from_utf8_lossy(&bytes).lines().any(|l| l.split_whitespace().last() == Some("overlay"))
                };
                self.facts.overlayfs = self.sys.proc_file("filesystems").ok().map(listed);
                if self.mode == Mode::Boot {
                    self.facts.address = crate::boot::network::address(self.sys, &self.options);
                    if plan::early_coldplug(&self.options, &self.facts) {
                        self.probe_coldplug(Pass::Early);
                    }
                }
            }
            Phase::Devices if self.mode == Mode::Boot => {
                (self.facts.devices, self.facts.coldplug) = (None, Vec::new());
                match UDEV_DAEMONS.iter().find(|d| self.target.executable(d)) {
                    // It coldplugs with the same modprobe.d, in parallel with the rest of the
                    // real init's start, and handles what appears later.
                    Some(udev) => self.facts.notes.push(format!("devices: left to the image's udev ({udev})")),
                    None => self.probe_coldplug(Pass::Late),
                }
                self.too_late_for_layers();
            }
            Phase::Network if self.mode == Mode::Boot => {
                crate::boot::network::probe(self.sys, &self.options, &mut self.facts);
                for note in &self.facts.notes {
                    log::warn!("{note}");
                }
            }
            _ => {}
        }
    }

    /// The devices and the modules a coldplug pass would load for them now.
    fn probe_coldplug(&mut self, pass: Pass) {
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
    fn too_late_for_layers(&mut self) {
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
        for m in self.modules.iter().filter(|m| m.outcome == load::Outcome::Loaded) {
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

    fn run_step(&mut self, step: &Step) {
        if let Step::Hostname { rejected, .. } = step {
            rejected.iter().for_each(|r| log::warn!("{r}"));
        }
        // Coldplug loads modules in parallel threads: one thread's lookups on the NFS root
        // overlap another's finit_module, so its NFS time stays out of the count (two readings
        // of mountstats, only when the count runs). A single module's step waits on one thing
        // at a time: its file's lookups, then finit_module (whose READs are not counted).
        let loads = matches!(step, Step::Coldplug { .. }) && self.nfs_waited_from.is_some();
        let nfs_before = if loads { self.nfs_waited_now() } else { None };
        let (started, waited, at_ms) = (Instant::now(), crate::sys::blocked::any(), self.elapsed_ms());
        let result = self.step(step);
        let (elapsed, waited) = (started.elapsed(), crate::sys::blocked::any().saturating_sub(waited));
        if let Some(before) = nfs_before {
            let after = self.nfs_waited_now().unwrap_or(before);
            self.nfs_waited_from = self.nfs_waited_from.map(|from| from.saturating_add(after.saturating_sub(before)));
        }
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (ms, own_ms) = (millis(elapsed), millis(elapsed.saturating_sub(waited)));
        let (status, detail, error) = match result {
            Ok(done) => (done.status, done.detail, done.error),
            Err(failure) => (Status::Failed, String::new(), Some(failure)),
        };
        let why = error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        match status {
            Status::Failed => log::error!("{step}: failed{why}"),
            Status::Degraded => log::warn!("{step}: {detail}{why}"),
            _ => log::info!("{step}: {detail}"),
        }
        // A hostname chosen is the name even when the kernel refused it.
        let learned = match step {
            Step::Hostname { .. } => true,
            // Skipped (`apply`): there is no scratch disk to put the upper dirs on.
            Step::Scratch { .. } => matches!(status, Status::Ok | Status::Degraded),
            _ => status != Status::Failed,
        };
        if learned {
            plan::learn(&mut self.facts, step);
        }
        if matches!(step, Step::Hostname { .. }) {
            self.tell_log_server_who();
        }
        match step {
            // What the plan assumed, corrected by what happened.
            Step::WritableDir { dir, .. } if !self.pending.iter().any(|p| p.writable.dir == *dir) => {
                self.facts.uppers.retain(|d| d != dir);
            }
            Step::Overlay { dir } if status == Status::Failed => self.facts.writable.retain(|d| d != dir),
            _ => {}
        }
        let failure = (status == Status::Failed).then(|| error.clone()).flatten();
        let outcome = Outcome { phase: step.phase(), step: step.clone(), status, detail, error, ms, at_ms, own_ms };
        self.outcomes.push(outcome);
        if let Some(failure) = failure {
            self.failed(step, &failure);
        }
    }

    fn step(&mut self, step: &Step) -> Result<Done, Failure> {
        match step {
            Step::Mount { mount } => self.early_mount(mount),
            Step::Module { name, .. } => self.module(name),
            Step::Coldplug { pass, modules, .. } => self.coldplug(*pass, modules),
            Step::Dhcp { interface, exchange, meanwhile } => self.dhcp(interface.as_deref(), *exchange, meanwhile),
            Step::Address { interface, address, gateway } => self.address(interface.as_deref(), *address, *gateway),
            Step::Hostname { hostname, .. } => self.hostname(hostname.as_ref()),
            Step::NfsRoot { root } => self.nfs_root(root),
            Step::SwitchRoot { new_root } => self.switch_root(new_root),
            Step::WritableDir { dir, mode, tmpfs_size } => {
                let result = self.writable_dir(dir, *mode, tmpfs_size.as_deref());
                if result.is_err() && !self.dirs.iter().any(|d| d.dir == *dir) {
                    self.dirs.push(DirResult { dir: dir.clone(), mode: DirMode::None, mount: None });
                }
                result
            }
            Step::Overlay { dir } => self.overlay(dir),
            Step::Scratch { label } => self.scratch(label),
            Step::Swap { wanted } => self.swap(wanted),
            Step::Layer { kind, name } => Ok(self.layer(*kind, name)),
            Step::HostFiles { fqdn, short, files } => self.host_files(fqdn, short, files),
            Step::NetworkFiles { interface } => self.network_files(interface),
            Step::Report { path } => self.report(path),
            Step::Handoff { init, fallbacks } => self.handoff(init.as_deref(), fallbacks),
        }
    }

    /// The failure policy: degradable steps are logged only; a fatal one goes by `stateless.emergency`.
    fn failed(&mut self, step: &Step, error: &Failure) {
        if !step.fatal() {
            return;
        }
        self.degraded = true;
        if self.mode == Mode::Apply {
            return;
        }
        if matches!(step, Step::Handoff { .. } | Step::NfsRoot { .. } | Step::SwitchRoot { .. }) {
            // Nothing is left to go on to (no init, or no root to find one in): every policy
            // ends in a reboot or power-off.
            self.send_report();
            handoff::emergency(self.sys, self.options.emergency, &error.to_string());
        }
        match self.options.emergency {
            Emergency::Continue => log::error!("fatal step failed, continuing degraded: {error}"),
            Emergency::Shell => {
                log::error!("fatal step failed: {error}; starting a shell, the boot goes on when it exits");
                if let Err(e) = self.sys.shell(Path::new("/bin/sh")) {
                    log::error!("emergency shell /bin/sh: {e}");
                }
            }
            Emergency::Reboot | Emergency::Poweroff => {
                self.send_report();
                handoff::emergency(self.sys, self.options.emergency, &error.to_string())
            }
        }
    }

    fn break_to_shell(&mut self, phase: Phase) {
        if self.mode == Mode::Apply {
            log::info!("stateless.break={phase} ignored: not PID 1");
            return;
        }
        log::warn!("stateless.break={phase}: shell before the {phase} phase; exit it to go on");
        if let Err(e) = self.sys.shell(Path::new("/bin/sh")) {
            log::error!("break shell /bin/sh: {e}");
        }
    }

    fn early_mount(&mut self, mount: &EarlyMount) -> Result<Done, Failure> {
        let target = self.running.dir(mount.target).map_err(|e| self.io(Op::Open, &self.running, mount.target, &e))?;
        if self.sys.is_mounted(&target.path, mount.magic) {
            return Ok(Done::skipped("already mounted"));
        }
        self.sys
            .mount(mount.source, &target.path, mount.fstype, mount.flags, mount.options)
            .map_err(|e| Failure::io(Op::Mount, Some(&target.path), &e))?;
        if mount.target == "dev" && self.mode == Mode::Boot {
            crate::sys::console::ensure_stdio(&target.path.join("console"));
        }
        Ok(Done::ok("mounted"))
    }

    pub(crate) fn io(&self, op: Op, root: &ImageRoot, rel: impl AsRef<Path>, error: &std::io::Error) -> Failure {
        Failure::io(op, Some(&root.host_path(rel)), error)
    }

    /// The running kernel's modules as `pass` sees them, read on first use: before the network
    /// the running root's tree with its modprobe.d and the base layer's; after the layers the
    /// target's, with its /etc as the layers made it.
    fn kernel(&mut self, pass: Pass) -> Result<&Kernel, String> {
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
    fn loaded_modules(&self) -> BTreeSet<String> {
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
        self.record(&results);
        Ok(results)
    }

    /// Logs each module's result and keeps it for the report.
    fn record(&mut self, results: &[Loaded]) {
        for r in results {
            match &r.outcome {
                load::Outcome::Loaded => log::info!("module {}: loaded in {} ms", r.module, r.ms),
                load::Outcome::Failed { message, .. } => log::warn!("module {}: {message}", r.module),
                load::Outcome::Skipped { because } => log::warn!("module {}: not loaded, {because}", r.module),
                load::Outcome::NoDevice { message } => log::info!("module {}: no device for it: {message}", r.module),
                load::Outcome::AlreadyLoaded | load::Outcome::BuiltIn => {}
            }
        }
        self.modules.extend(results.iter().cloned());
    }

    /// A module by name (or alias) and what it needs.
    fn module(&mut self, name: &str) -> Result<Done, Failure> {
        if self.mode == Mode::Apply {
            // Never into the host's kernel: only PID 1 loads modules.
            return Ok(Done::skipped("not PID 1: modules are loaded only at boot"));
        }
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
        if plan.is_empty() {
            return Ok(Done::ok("already in the kernel"));
        }
        let results = self.load(Pass::Early, plan, false).map_err(fail)?;
        let release = self.sys.uname().release;
        match results.iter().filter(|r| required.contains(&r.module)).find(|r| {
            !matches!(r.outcome, load::Outcome::Loaded | load::Outcome::AlreadyLoaded | load::Outcome::BuiltIn)
        }) {
            Some(Loaded { outcome: load::Outcome::Failed { errno, message }, .. }) => {
                Err(Failure { errno: *errno, ..fail(message.clone()) })
            }
            Some(Loaded { outcome: load::Outcome::NoDevice { message }, .. }) => Err(Failure {
                errno: Some(rustix::io::Errno::NODEV.raw_os_error()),
                ..fail(format!("{message}: the module found no device"))
            }),
            Some(other) => Err(fail(format!("{}: {:?}", other.module, other.outcome))),
            None => Ok(Done::ok(format!("loaded for {release}"))),
        }
    }

    /// Coldplug: the planned drivers, and meanwhile those of the devices that loading them made
    /// appear (a bus driver creates the devices of the next); bounded in plan size and time.
    fn coldplug(&mut self, pass: Pass, modules: &[String]) -> Result<Done, Failure> {
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
                !matches!(
                    r.outcome,
                    load::Outcome::Loaded | load::Outcome::AlreadyLoaded | load::Outcome::NoDevice { .. }
                )
            })
            .cloned()
            .collect();
        let later = results.len().saturating_sub(first);
        let detail = format!("{} modules ({first} planned, {later} for devices that appeared)", results.len());
        match failed.first() {
            Some(first) => {
                let errno = match &first.outcome {
                    load::Outcome::Failed { errno, .. } => *errno,
                    _ => None,
                };
                let names: Vec<&str> = failed.iter().map(|r| r.module.as_str()).collect();
                let message = format!("not loaded: {}", names.join(", "));
                Ok(Done::degraded(detail, Failure { errno, ..fail(message) }))
            }
            None => Ok(Done::ok(detail)),
        }
    }

    /// Brings the boot interface up and gets a lease (DISCOVER: the address and default route
    /// too; with no interface named, on every one at once) or, for an interface with an
    /// address, asks for its configuration (INFORM).
    fn dhcp(&mut self, interface: Option<&str>, exchange: Exchange, meanwhile: &[String]) -> Result<Done, Failure> {
        self.facts.dhcp_done = true;
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1: no DHCP"));
        }
        let started = Instant::now();
        let mut bound = Duration::from_secs(self.options.dhcp_timeout.into());
        if exchange == Exchange::Inform {
            bound = bound.min(INFORM_BOUND);
        }
        // What loads while the exchange waits on the network, planned first.
        let background: Vec<Planned> = match meanwhile.is_empty() {
            true => Vec::new(),
            false => {
                let loaded = self.loaded_modules();
                match self.kernel(Pass::Early).and_then(|k| k.plan_names(meanwhile, &loaded)) {
                    Ok(plan) => plan.into_iter().filter(|p| p.state == State::Load).collect(),
                    Err(e) => {
                        log::warn!("dhcp: not loading {} meanwhile: {e}", meanwhile.join(", "));
                        Vec::new()
                    }
                }
            }
        };
        // No interface named: DISCOVER on every one at once, the first lease kept.
        let any = exchange == Exchange::Discover && interface.is_none() && self.options.bootif.is_none();
        // INFORM from the address the interface has (the probe's, or the static ip= one).
        let address = if exchange == Exchange::Inform { self.facts.address } else { None };
        let (sys, running) = (self.sys, &self.running);
        let client_id = self.options.ip.as_ref().and_then(|ip| ip.client_id.as_ref());
        if let Some(id) = client_id {
            log::info!("dhcp: client id {id} (ip=)");
        }
        let kernel = match self.kernels.first() {
            Some(Some(Ok(kernel))) if !background.is_empty() => Some(kernel),
            _ => None,
        };
        let (exchanged, loaded) = std::thread::scope(|scope| {
            let loader = kernel.map(|k| {
                scope.spawn(move || load_plan(sys, running, &k.dir, k.rules(), background, 1, &load::no_more))
            });
            let exchanged = match any {
                true => self.lease_on_any(client_id, bound),
                false => self.link(interface, exchange == Exchange::Discover, bound).and_then(|link| {
                    let left = bound.saturating_sub(started.elapsed());
                    match network::lease(sys, &link, client_id, address, left, DHCP_START_DELAY, None) {
                        Ok(acquired) => Ok(Answered { asked: vec![link.name.clone()], interface: link, acquired }),
                        Err(e) => Err(Failure::new(Op::Dhcp, Some(Path::new(&link.name)), e.to_string())),
                    }
                }),
            };
            (exchanged, loader.and_then(|l| l.join().ok()).unwrap_or_default())
        });
        self.record(&loaded);
        let Answered { asked, interface: link, acquired } = exchanged?;
        let fail = |message: String| Failure::new(Op::Dhcp, Some(Path::new(&link.name)), message);
        let lease = acquired.lease;
        let mut warning = None;
        if exchange == Exchange::Discover {
            warning = network::configure(self.sys, &link, &lease).map_err(fail)?;
            self.configured(&link, lease.address);
        }
        let stats = &acquired.stats;
        let others: Vec<&str> = asked.iter().map(String::as_str).filter(|a| *a != link.name).collect();
        let detail = format!(
            "{} from {} on {}{}{}; {} sent in {} ms",
            lease.address.map_or("configuration".to_string(), |a| a.to_string()),
            lease.server.map_or("?".to_string(), |s| s.to_string()),
            crate::model::text::escape(link.name.as_bytes()),
            match others.is_empty() {
                true => String::new(),
                false => format!(
                    " (first to answer; also asked: {})",
                    crate::model::text::escape(others.join(", ").as_bytes())
                ),
            },
            lease.hostname.as_ref().map(|h| format!(", host name {h}")).unwrap_or_default(),
            stats.sent,
            stats.ms,
        );
        lease.rejected.iter().for_each(|r| log::warn!("dhcp: {r}"));
        let (sent, ignored, naks, ms) = (stats.sent, stats.ignored, stats.naks, stats.ms);
        let failure = warning.map(|w| Failure::new(Op::Dhcp, Some(Path::new(&link.name)), w));
        self.facts.dhcp = Some(Dhcp { interface: link.name, asked, exchange, lease, sent, ignored, naks, ms });
        Ok(match failure {
            Some(failure) => Done::degraded(detail, failure),
            None => Done::ok(detail),
        })
    }

    /// The boot interface, once it has carrier: the `BOOTIF=` MAC's, else `interface` (the `ip=`
    /// device, or the one the probe found), else the first to get carrier. `configuring`: it gets an address, so loopback is set up too.
    fn link(&self, interface: Option<&str>, configuring: bool, bound: Duration) -> Result<Interface, Failure> {
        let fail = |message: String| Failure::new(Op::Dhcp, interface.map(Path::new), message);
        if configuring {
            network::loopback_up(self.sys).map_err(fail)?;
        }
        let bootif = self.options.bootif;
        let wanted = |i: &Interface| network::is_boot_interface(i, bootif, interface);
        network::wait_for_carrier(self.sys, &wanted, bound).map_err(fail)
    }

    /// DHCP on every interface at once ([`network::lease_on_any`]), loopback set up too.
    fn lease_on_any(&self, client_id: Option<&ClientId>, bound: Duration) -> Result<Answered, Failure> {
        let fail = |message: String| Failure::new(Op::Dhcp, None, message);
        network::loopback_up(self.sys).map_err(fail)?;
        network::lease_on_any(self.sys, client_id, bound, DHCP_START_DELAY).map_err(fail)
    }

    /// What the phases after know once `link` has its address.
    fn configured(&mut self, link: &Interface, address: Option<Ipv4Net>) {
        self.facts.address = address;
        self.facts.interface = Some(link.name.clone());
        self.facts.mac = link.mac;
    }

    /// The static configuration of an `ip=` line on an interface without an address.
    fn address(
        &mut self,
        interface: Option<&str>,
        address: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Done, Failure> {
        self.facts.address_done = true;
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1: no interface is configured"));
        }
        let link = self.link(interface, true, Duration::from_secs(self.options.dhcp_timeout.into()))?;
        let lease = Lease { address: Some(address), routers: gateway.into_iter().collect(), ..Lease::default() };
        let fail = |message: String| Failure::new(Op::Dhcp, Some(Path::new(&link.name)), message);
        let warning = network::configure(self.sys, &link, &lease).map_err(fail)?;
        self.configured(&link, Some(address));
        let via = gateway.map(|g| format!(", default route via {g}")).unwrap_or_default();
        let detail = format!("{address} on {}{via}", link.name);
        Ok(match warning {
            Some(w) => Done::degraded(detail, fail(w)),
            None => Done::ok(detail),
        })
    }

    fn hostname(&mut self, hostname: Option<&crate::model::hostname::Hostname>) -> Result<Done, Failure> {
        let Some(h) = hostname else { return Ok(Done::skipped("no valid hostname from any source")) };
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1: kernel hostname left alone"));
        }
        let name_fail = |op, name: &str, e: &std::io::Error| Failure::io(op, Some(Path::new(name)), e);
        self.sys.sethostname(&h.short).map_err(|e| name_fail(Op::Sethostname, &h.short, &e))?;
        let kernel_domain = self.sys.uname().domainname;
        match &h.domain {
            Some(domain) if kernel_domain == "(none)" || kernel_domain.is_empty() => {
                // The kernel keeps 64 bytes of a domain name; a longer one is still a valid name
                // for /etc/hosts.
                if domain.len() > crate::model::hostname::UTS_LEN {
                    let why = "longer than the kernel's 64 bytes: the kernel's domain name is left unset";
                    let error = Failure::new(Op::Setdomainname, Some(Path::new(domain)), why.to_string());
                    return Ok(Done::degraded(format!("set {} (not the domain {domain})", h.short), error));
                }
                self.sys.setdomainname(domain).map_err(|e| name_fail(Op::Setdomainname, domain, &e))?;
                Ok(Done::ok(format!("set {} (domain {domain})", h.short)))
            }
            _ => Ok(Done::ok(format!("set {}", h.short))),
        }
    }

    /// Makes `dir` writable: in overlay mode a tmpfs with the upper and work dirs, the overlay
    /// itself mounted after the layers are in the upper dir ([`Step::Overlay`]); in copy mode
    /// (or when that tmpfs cannot be had) a tmpfs on the dir with a copy of the image dir.
    /// Mounts the NFS root on /root of the initramfs: mount(2) with text options, each version
    /// of [`NfsMount::versions`] in order, its module loaded before its first try (the kernel's
    /// request_module would need a modprobe); all again with backoff (1 s doubling to 8 s, plus
    /// up to 1 s of jitter so that a lab's clients spread out) until `stateless.nfs.timeout=`. Each root
    /// mounted is checked ([`rootcheck`]); one that gives EIO with NFSv4.2 or 4.1 is unmounted
    /// and mounted again with the next older minor version.
    fn nfs_root(&mut self, root: &Result<NfsMount, String>) -> Result<Done, Failure> {
        // The command line's words are in `why` as given.
        let mount =
            root.as_ref().map_err(|why| Failure::new(Op::Mount, None, crate::model::text::escape(why.as_bytes())))?;
        if self.mode == Mode::Apply {
            return Ok(Done::skipped(format!("not PID 1: would mount {mount}")));
        }
        let mut modules = Vec::new();
        let dir = self
            .running
            .create_dir_all(NEW_ROOT, 0o755)
            .map_err(|e| self.io(Op::Mkdir, &self.running, NEW_ROOT, &e))?;
        let flags = if mount.read_only { MountFlags::RDONLY } else { MountFlags::empty() };
        let client = self.facts.address.map(|a| a.addr);
        let mut versions = mount.versions();
        let mut dropped: Vec<Dropped> = Vec::new();
        let bound = Duration::from_secs(u64::from(self.options.nfs_timeout));
        let (started, mut slept, mut delay, mut tries) = (Instant::now(), Duration::ZERO, Duration::from_secs(1), 0);
        let waited = |slept: Duration| started.elapsed().max(slept);
        let mut last = None;
        'rounds: loop {
            // Each try gets what is left of the bound: a server that drops packets can hold a
            // mount(2) for minutes.
            let mut to_v3 = false;
            for version in versions.clone() {
                if to_v3 && version.starts_with('4') {
                    continue;
                }
                let Some(left) = bound.checked_sub(waited(slept)).filter(|l| !l.is_zero()) else { break };
                let module = nfsroot::module_for(version);
                if !modules.contains(&module) {
                    modules.push(module);
                    if let Err(e) = self.module(module) {
                        log::warn!("{module} for the NFS root: {e}; mounting all the same (built in?)");
                    }
                }
                tries += 1;
                let (fstype, data) = mount.attempt(version, client);
                let call = MountCall { source: &mount.source(), target: &dir.path, fstype, flags, data: &data };
                let e = match self.sys.mount_bounded(&call, left) {
                    Ok(()) => match self.check_root(mount, &dir.path, version, &data, &mut dropped)? {
                        Checked::Booting(read) => {
                            let ms = started.elapsed().as_millis();
                            return Ok(Done::ok(format!(
                                "mounted as {fstype} {data} ({tries} tries, {ms} ms); {read}"
                            )));
                        }
                        Checked::SteppedDown(older) => {
                            versions = older.to_vec();
                            last = None; // what the give-up says is in `dropped`
                            continue 'rounds;
                        }
                    },
                    Err(e) => e,
                };
                log::warn!("nfs root {}: mount -t {fstype} -o {data}: {e}", mount.source());
                // The next version only when the server refuses this one, as mount.nfs:
                // EPROTONOSUPPORT or EINVAL, the next one; ENOENT (the path is not in the NFSv4
                // pseudo-root) or EPERM with NFSv4, v3 at once. A server still starting gets the
                // newest again.
                let errno = e.raw_os_error().map(rustix::io::Errno::from_raw_os_error);
                let v3_next = version.starts_with('4') && versions.iter().any(|v| !v.starts_with('4'));
                to_v3 = v3_next && matches!(errno, Some(rustix::io::Errno::NOENT | rustix::io::Errno::PERM));
                let refused =
                    to_v3 || matches!(errno, Some(rustix::io::Errno::PROTONOSUPPORT | rustix::io::Errno::INVAL));
                if refused && !dropped.iter().any(|d| d.version == version) {
                    let reason = format!("mount: {}", e.to_string().to_lowercase());
                    dropped.push(Dropped { version: version.into(), reason });
                }
                last = Some(e);
                if !refused {
                    break;
                }
            }
            let waited = waited(slept);
            if waited >= bound {
                let e = last.unwrap_or_else(|| std::io::Error::other("no time left to mount again"));
                let message = format!(
                    "{mount}: gave up after {tries} tries in {} s (stateless.nfs.timeout={}): {e}{}",
                    waited.as_secs(),
                    self.options.nfs_timeout,
                    said_dropped(&dropped)
                );
                return Err(Failure { errno: e.raw_os_error(), ..Failure::new(Op::Mount, Some(&dir.path), message) });
            }
            // The last try comes at the bound.
            let jitter = Duration::from_millis(self.sys.random() % 1000);
            let pause = (delay + jitter).min(bound.saturating_sub(waited));
            log::warn!("nfs root {}: again in {} ms", mount.source(), pause.as_millis());
            self.sys.sleep(pause);
            slept += pause;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }

    /// Checks the root just mounted on `dir` with `version` (mount(2) options `data`) as
    /// [`rootcheck`] does. Passed: recorded for the report. EIO with a minor version that has
    /// older ones: unmounted, `dropped` told why, and the older ones to mount instead. Else the
    /// failure, the root left mounted (for a shell to look at).
    fn check_root(
        &mut self,
        mount: &NfsMount,
        dir: &Path,
        version: &str,
        data: &str,
        dropped: &mut Vec<Dropped>,
    ) -> Result<Checked, Failure> {
        let image = ImageRoot::open(dir).map_err(|e| Failure::io(Op::Open, Some(dir), &e))?;
        let failure = match rootcheck::check(self.sys, &image, &self.cmdline) {
            Ok(checked) => {
                let read =
                    format!("read {} bytes of {}", checked.bytes, crate::model::text::escape(checked.init.as_bytes()));
                let (version, options, dropped) = (version.to_string(), data.to_string(), std::mem::take(dropped));
                let (init, init_bytes) = (checked.init, checked.bytes as u64);
                self.nfs_root = Some(Mounted { version, options, init, init_bytes, dropped });
                return Ok(Checked::Booting(read));
            }
            Err(failure) => failure,
        };
        let older = nfsroot::older_minors(version);
        let Some(next) = older.first().filter(|_| rootcheck::is_eio(&failure)) else {
            let message =
                format!("{} ({} mounted with NFSv{version}){}", failure.message, mount.source(), said_dropped(dropped));
            return Err(Failure { message, ..failure });
        };
        let why = if version == "4.2" { " (NFSv4.2 READ_PLUS is broken in nfs-ganesha before 6.2)" } else { "" };
        log::warn!("nfs root check: {failure} with NFSv{version}; stepping down to NFSv{next}{why}");
        drop(image);
        self.sys.umount(dir).map_err(|e| Failure::io(Op::Umount, Some(dir), &e))?;
        dropped.push(Dropped { version: version.into(), reason: failure.to_string() });
        Ok(Checked::SteppedDown(older))
    }

    /// Leaves the initramfs for the NFS root: the early mounts (/dev, /proc, /sys, /run, /tmp)
    /// move into it, the initramfs is emptied, the new root becomes / and both roots are it:
    /// the rest of the boot is that of on-root mode, with the image's /etc/stateless.conf.
    fn switch_root(&mut self, new_root: &str) -> Result<Done, Failure> {
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1"));
        }
        let root = self.running.dir(new_root).map_err(|e| self.io(Op::Open, &self.running, new_root, &e))?;
        let image = ImageRoot::open(&root.path).map_err(|e| Failure::io(Op::Open, Some(&root.path), &e))?;
        let (mut moved, mut again) = (Vec::new(), Vec::new());
        for m in EARLY_MOUNTS {
            let from = self.running.host_path(m.target);
            if !self.sys.is_mounted(&from, m.magic) {
                continue;
            }
            // Into the image's own dir, never through a symlink of the image's.
            match image.dir(m.target).and_then(|to| self.sys.move_mount(&from, &to.path)) {
                Ok(()) => moved.push(format!("/{}", m.target)),
                Err(e) => {
                    log::warn!("move /{} into the new root: {e}; mounted afresh there after the switch", m.target);
                    again.push(m);
                }
            }
        }
        let (now_at, cleared) =
            self.sys.switch_root(&root.path).map_err(|e| Failure::io(Op::SwitchRoot, Some(&root.path), &e))?;
        cleared.failed.iter().for_each(|f| log::warn!("initramfs not emptied: {f}"));
        let reopen = |path: &Path| ImageRoot::open(path).map_err(|e| Failure::io(Op::Open, Some(path), &e));
        (self.running, self.target) = (reopen(&now_at)?, reopen(&now_at)?);
        for m in again {
            if let Err(e) = self.early_mount(&m) {
                log::error!("/{} in the new root: {e}", m.target);
            }
        }
        let (options, diagnostics) = crate::boot::options(&self.cmdline, &self.target);
        diagnostics.iter().for_each(|d| log::warn!("{d}"));
        if self.mode == Mode::Boot && self.options != options {
            log::warn!(
                "the image's {} applies from here on; what it says for the hardware, network and root phases came too late for this boot",
                crate::boot::CONFIG
            );
            crate::log::configure(options.quiet, options.debug);
            crate::boot::panic::configure(options.emergency, handoff::candidates(options.init.as_deref()));
        }
        (self.options, self.diagnostics) = (options, diagnostics);
        self.start_log_server(true); // the image's stateless.conf may name one
        Ok(Done::ok(format!(
            "moved {}; initramfs emptied ({} entries removed, {} not)",
            moved.join(", "),
            cleared.removed,
            cleared.failed.len()
        )))
    }

    fn writable_dir(&mut self, dir: &str, mode: OverlayMode, size: Option<&str>) -> Result<Done, Failure> {
        let lower = self.target.dir(dir).map_err(|e| self.io(Op::Open, &self.target, dir, &e))?;
        let st = rustix::fs::fstat(&lower.fd).map_err(|e| Failure::io(Op::Open, Some(&lower.path), &e.into()))?;
        let writable = Writable { dir: dir.into(), lower, st, size: size.map(str::to_string) };
        let mut why_copy = (mode == OverlayMode::Copy && self.options.mode == OverlayMode::Overlay)
            .then(|| Failure::new(Op::Mount, None, "overlayfs is not available"));
        if mode == OverlayMode::Overlay {
            match self.prepare_overlay(dir, &st, size) {
                Ok((rw, upper, work)) => {
                    self.pending.push(Pending { writable, rw, upper, work });
                    let detail = match &self.facts.scratch {
                        Some(scratch) => format!("upper and work dirs at /{scratch}/{dir}, overlay after the layers"),
                        None => {
                            format!("upper and work dirs on the tmpfs at /{RW_BASE}/{dir}, overlay after the layers")
                        }
                    };
                    return Ok(Done::ok(detail));
                }
                Err(e) => {
                    log::warn!("/{dir}: no tmpfs for the overlay ({e}); falling back to copy mode");
                    why_copy = Some(e);
                }
            }
        }
        let entries = self.copy_mode(&writable, None)?;
        let detail = format!("tmpfs + copy of {entries} entries");
        Ok(match why_copy {
            None => Done::ok(detail),
            Some(e) => Done::degraded(format!("{detail} (overlayfs failed)"), e),
        })
    }

    /// A tmpfs at /run/stateless/rw/<dir> holding upper/ (with the image dir's owner and mode:
    /// the overlay root shows the upper's) and work/; with a scratch filesystem, a dir on it
    /// instead (`None` for the tmpfs).
    fn prepare_overlay(
        &mut self,
        dir: &str,
        st: &rustix::fs::Stat,
        size: Option<&str>,
    ) -> Result<(Option<PathBuf>, ImageDir, PathBuf), Failure> {
        self.require_run_tmpfs()?;
        let on_scratch = self.facts.scratch.clone();
        let rw_rel = on_scratch.as_ref().map_or_else(|| Path::new(RW_BASE).join(dir), |s| Path::new(s).join(dir));
        let rw =
            self.target.create_dir_all(&rw_rel, 0o755).map_err(|e| self.io(Op::Mkdir, &self.target, &rw_rel, &e))?;
        if on_scratch.is_none() {
            let options = mounts::tmpfs_options(0o755, 0, 0, size);
            self.sys
                .mount("tmpfs", &rw.path, "tmpfs", UPPER_TMPFS_FLAGS, &options)
                .map_err(|e| Failure::io(Op::Mount, Some(&rw.path), &e))?;
        }
        let made = (|| {
            let make = |name: &str| {
                let rel = rw_rel.join(name);
                self.target.create_dir_all(&rel, 0o700).map_err(|e| self.io(Op::Mkdir, &self.target, &rel, &e))
            };
            let (upper, work) = (make("upper")?, make("work")?);
            let owner = |e: rustix::io::Errno| Failure::io(Op::Mkdir, Some(&upper.path), &e.into());
            let (uid, gid) = (rustix::fs::Uid::from_raw(st.st_uid), rustix::fs::Gid::from_raw(st.st_gid));
            rustix::fs::fchown(&upper.fd, Some(uid), Some(gid)).map_err(owner)?;
            rustix::fs::fchmod(&upper.fd, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(owner)?;
            Ok((upper, work.path))
        })();
        match made {
            Ok((upper, work)) => Ok((on_scratch.is_none().then_some(rw.path), upper, work)),
            Err(e) => {
                drop(rw);
                if on_scratch.is_none() {
                    self.take_off(&self.target.host_path(&rw_rel));
                }
                Err(e)
            }
        }
    }

    /// The overlay on `dir`, its upper dir filled by the layers: the image dir below, every path
    /// checked. When overlayfs refuses, copy mode: a tmpfs on the dir with the image dir's copy
    /// and the upper dir's on top (a degraded step), the upper's tmpfs taken off again.
    fn overlay(&mut self, dir: &str) -> Result<Done, Failure> {
        let Some(i) = self.pending.iter().position(|p| p.writable.dir == dir) else {
            return Ok(Done::skipped("no upper dir was prepared"));
        };
        let p = self.pending.remove(i);
        let lower = &p.writable.lower.path;
        let data =
            mounts::overlay_options(lower, &p.upper.path, &p.work).map_err(|e| Failure::new(Op::Mount, Some(lower), e));
        let mounted = data.and_then(|data| {
            self.sys
                .mount("overlay", lower, "overlay", WRITABLE_DIR_FLAGS, &data)
                .map_err(|e| Failure::io(Op::Mount, Some(lower), &e))?;
            // Only a verified overlay is written to later (the host files).
            match self.sys.is_mounted(lower, OVERLAYFS_MAGIC) {
                true => Ok(()),
                false => Err(Failure::new(Op::Mount, Some(lower), "mounted, but no overlay is there")),
            }
        });
        let why = match mounted {
            Ok(()) => {
                let mount = self.sys.mount_key(lower);
                self.dirs.push(DirResult { dir: dir.into(), mode: DirMode::Overlay, mount });
                let marked = self.mark_extrinsic("overlay", dir);
                return Ok(Done::ok(format!("mounted: the image dir below, the layers in the upper dir{marked}")));
            }
            Err(why) => why,
        };
        log::warn!("/{dir}: overlayfs failed ({why}); falling back to copy mode");
        let copied = self.copy_mode(&p.writable, Some(&p.upper));
        drop(p.upper);
        if let Some(rw) = &p.rw {
            self.take_off(rw);
        }
        let entries = copied?;
        Ok(Done::degraded(format!("tmpfs + copy of {entries} entries, the layers' on top (overlayfs failed)"), why))
    }

    /// Appends `dir`'s mount of `source` to libmount's utab as `x-initrd.mount`
    /// ([`mounts::utab_extrinsic`]): systemd leaves it to systemd-shutdown. What the step's
    /// detail adds: where, or why not (logged; the boot goes on, only the shutdown is noisier).
    /// Only into a tmpfs /run: else the file would land in the image (on the server, for a
    /// root mounted read-write).
    fn mark_extrinsic(&self, source: &str, dir: &str) -> String {
        let marked = match self.run_is_tmpfs() {
            Ok(true) => mounts::mark_extrinsic(&self.target, source, dir).map_err(|e| e.to_string()),
            Ok(false) => Err("/run is not a tmpfs".to_string()),
            Err(failure) => Err(failure.to_string()),
        };
        match marked {
            Ok(()) => format!("; x-initrd.mount in /{}", mounts::UTAB),
            Err(e) => {
                log::warn!(
                    "/{dir}: not marked x-initrd.mount in /{}: {e} (systemd may fail to unmount it at shutdown)",
                    mounts::UTAB
                );
                String::new()
            }
        }
    }

    /// Whether the target's /run is a tmpfs: only then does what is written there stay out of
    /// the image (a read-write root's /run is on the server). Err: it cannot be opened.
    fn run_is_tmpfs(&self) -> Result<bool, Failure> {
        let run = self.target.dir("run").map_err(|e| self.io(Op::Open, &self.target, "run", &e))?;
        Ok(self.sys.is_mounted(&run.path, TMPFS_MAGIC))
    }

    /// [`Self::run_is_tmpfs`] for a step that cannot go on without it.
    pub(crate) fn require_run_tmpfs(&self) -> Result<(), Failure> {
        match self.run_is_tmpfs()? {
            true => Ok(()),
            false => Err(Failure::new(Op::Mount, Some(&self.target.host_path("run")), "/run is not a tmpfs")),
        }
    }

    /// Unmounts what was mounted on `path`; false (logged) when it stays.
    pub(crate) fn take_off(&self, path: &Path) -> bool {
        match self.sys.umount(path) {
            Ok(()) => true,
            Err(e) => {
                log::error!("umount {}: {e}", path.display());
                false
            }
        }
    }

    /// tmpfs straight on the dir, filled from a handle on the image dir opened before the mount
    /// (and then from `upper`, when the layers are already in an overlay's upper dir).
    /// Anything not copied is a failure of the step: the tmpfs goes again, and the dir stays the
    /// complete read-only image dir rather than a writable half of it.
    fn copy_mode(&mut self, writable: &Writable, upper: Option<&ImageDir>) -> Result<usize, Failure> {
        let result = self.fill_tmpfs(writable, upper);
        let (mode, mount) = match result {
            Ok(_) => (DirMode::Copy, self.sys.mount_key(&writable.lower.path)),
            Err(_) => (DirMode::None, None),
        };
        self.dirs.push(DirResult { dir: writable.dir.clone(), mode, mount });
        if result.is_ok() {
            let marked = self.mark_extrinsic("tmpfs", &writable.dir);
            if !marked.is_empty() {
                log::info!("/{}: tmpfs{marked}", writable.dir);
            }
        }
        result
    }

    fn fill_tmpfs(&mut self, writable: &Writable, upper: Option<&ImageDir>) -> Result<usize, Failure> {
        let Writable { dir, lower, st, size } = writable;
        let options = mounts::tmpfs_options(st.st_mode, st.st_uid, st.st_gid, size.as_deref());
        self.sys
            .mount("tmpfs", &lower.path, "tmpfs", WRITABLE_DIR_FLAGS, &options)
            .map_err(|e| Failure::io(Op::Mount, Some(&lower.path), &e))?;
        // From here on, a failure takes the tmpfs off again: an empty /etc is worse than the
        // image's read-only one.
        let opened = self.target.dir(dir).map_err(|e| self.io(Op::Open, &self.target, dir, &e)).and_then(|fresh| {
            let up = rustix::fs::fstat(&fresh.fd).map_err(|e| Failure::io(Op::Open, Some(&fresh.path), &e.into()))?;
            // Never copy into the image itself: the new tmpfs must be a different filesystem.
            if up.st_dev == st.st_dev {
                let message = "still the image dir after mounting tmpfs on it: nothing copied";
                return Err(Failure::new(Op::Mount, Some(&fresh.path), message));
            }
            Ok(fresh)
        });
        let fresh = match opened {
            Ok(fresh) => fresh,
            Err(e) => {
                self.take_off(&lower.path);
                return Err(e);
            }
        };
        let mut copied = tree::copy_tree(lower.fd.as_fd(), fresh.fd.as_fd(), &|_, _| tree::Verdict::Copy);
        if let Some(upper) = upper {
            let layers = tree::copy_tree(upper.fd.as_fd(), fresh.fd.as_fd(), &|_, _| tree::Verdict::Copy);
            copied.errors.extend(layers.errors);
        }
        for error in &copied.errors {
            log::warn!("copy mode /{dir}: {error}");
        }
        if let Some(lost) = copied.errors.iter().find(|e| e.is_loss()) {
            let path = fresh.path.clone();
            drop(fresh); // an open fd on the tmpfs would keep it busy
            let off = if self.take_off(&path) { "taken off again" } else { "left mounted: it could not be taken off" };
            let count = copied.errors.iter().filter(|e| e.is_loss()).count();
            let message = format!("{count} entries not copied, first {lost}; the tmpfs was {off}");
            return Err(Failure {
                errno: Some(lost.errno.raw_os_error()),
                ..Failure::new(Op::Copy, Some(&path), message)
            });
        }
        self.copied.push((dir.clone(), fresh));
        Ok(copied.written.len())
    }

    fn layer(&mut self, kind: LayerKind, name: &str) -> Done {
        // Where the layers go: the upper dir of each overlay still to be mounted (over its image
        // dir), and each dir made writable otherwise.
        let pending = self.pending.iter().map(|p| tree::Target {
            path: Path::new(&p.writable.dir),
            dst: p.upper.fd.as_fd(),
            lower: Some(p.writable.lower.fd.as_fd()),
        });
        let copied = self.copied.iter().map(|(dir, fresh)| tree::Target {
            path: Path::new(dir),
            dst: fresh.fd.as_fd(),
            lower: None,
        });
        let targets: Vec<tree::Target<'_>> = pending.chain(copied).collect();
        let applied = match layers::open_root(self.target.fd(), &self.options.layers) {
            Ok(Some(layer_root)) => {
                layers::apply(layer_root.as_fd(), &targets, name, &self.facts.writable, &mut self.provenance)
            }
            Ok(None) => return Done::skipped(format!("no layer root {}", self.options.layers)),
            Err(e) => layers::Applied { errors: vec![e], ..Default::default() },
        };
        if !applied.present {
            return match applied.errors.first() {
                None => Done::skipped("not present"),
                Some(e) => Done::degraded("not applied", Failure::new(Op::Open, Some(Path::new(name)), e.clone())),
            };
        }
        for error in &applied.errors {
            log::warn!("{error}");
        }
        self.layers.push(LayerResult {
            layer: name.into(),
            files: applied.written,
            refused: applied.refused,
            errors: applied.errors.len(),
        });
        let detail = format!(
            "{kind:?} layer: {} written, {} refused, {} errors",
            applied.written,
            applied.refused,
            applied.errors.len()
        )
        .to_lowercase();
        match applied.errors.first() {
            None => Done::ok(detail),
            Some(first) => Done::degraded(detail, Failure::new(Op::Copy, Some(Path::new(name)), first.clone())),
        }
    }

    fn host_files(&mut self, fqdn: &str, short: &str, files: &[String]) -> Result<Done, Failure> {
        let written = hostfiles::write(&self.target, fqdn, short, files)?;
        for file in &written {
            self.provenance.record(Path::new(file), "hostname", None);
        }
        Ok(Done::ok(format!("{short}, {fqdn} in {}", written.join(", "))))
    }

    /// The files that keep the boot interface under the image's network manager, and tell
    /// later stages the lease: our DHCP client's, else what the kernel's configuration gave.
    fn network_files(&mut self, name: &str) -> Result<Done, Failure> {
        if !self.run_is_tmpfs()? {
            return Ok(Done::skipped("/run is not a tmpfs: nothing written"));
        }
        // The name udev would give it, before anything is keyed by the name.
        if self.mode == Mode::Boot {
            let cmdline = crate::config::Cmdline::parse(&self.cmdline);
            let sysfs = self.running.host_path("sys");
            let settled = network::settle_name(self.sys, &sysfs, &self.target, &cmdline, name);
            self.facts.interface = Some(settled);
        }
        let renamed = (self.facts.interface.as_deref() != Some(name))
            .then(|| format!("renamed from {}; ", crate::model::text::escape(name.as_bytes())));
        let facts = &self.facts;
        let name = facts.interface.as_deref().unwrap_or(name);
        // Name and MAC as probed: the files match on them.
        let interface = Interface {
            name: name.to_string(),
            mac: facts.mac,
            index: 0,
            up: true,
            carrier: true,
            loopback: false,
            addrs: facts.address.into_iter().collect(),
        };
        let lease = match &facts.dhcp {
            Some(dhcp) => dhcp.lease.clone(),
            None => Lease {
                server: facts.kernel_dhcp_server,
                address: facts.address,
                dns: facts.nameservers.clone(),
                domain: facts.domain.as_deref().and_then(|d| crate::model::hostname::validate(d).ok()),
                ..Lease::default()
            },
        };
        // When the kernel's own DHCP ran (a static line on a host with several interfaces and no
        // <device>), /proc/net/pnp has the servers it kept: it drops the line's then.
        let line = self.options.ip.as_ref().filter(|_| facts.kernel_dhcp_server.is_none());
        let mut lease = netconf::with_line_dns(lease, line);
        // The name the client got is the one to hand on, whichever source it came from.
        if let Some(h) = &facts.hostname {
            lease.hostname = Some(h.short.clone());
            lease.domain = lease.domain.take().or_else(|| h.domain.clone());
        }
        let from_layer = self.provenance.get(Path::new("etc/resolv.conf")).is_some_and(|w| w.source != "hostname");
        let resolver = match (from_layer, facts.writable.iter().any(|d| d == "etc")) {
            (true, _) => Resolver::Layer,
            (false, true) => Resolver::Etc,
            (false, false) => Resolver::RunOnly,
        };
        let uptime = rustix::time::clock_gettime(rustix::time::ClockId::Boottime).tv_sec;
        let written = netconf::write(&self.target, &interface, &lease, u64::try_from(uptime).unwrap_or(0), resolver)?;
        for file in &written {
            self.provenance.record(Path::new(file), "network", None);
        }
        let servers = netconf::line_servers(line).map(|s| format!("; {s}")).unwrap_or_default();
        Ok(Done::ok(format!("{}{}{servers}", renamed.unwrap_or_default(), written.join(", "))))
    }

    fn report(&mut self, path: &str) -> Result<Done, Failure> {
        self.send_report();
        if !self.run_is_tmpfs()? {
            return Ok(Done::skipped("/run is not a tmpfs: no report written"));
        }
        report::write(self, Path::new(path))?;
        Ok(Done::ok(format!("written, {} ms since start", self.elapsed_ms())))
    }

    fn handoff(&mut self, init: Option<&str>, fallbacks: &[String]) -> Result<Done, Failure> {
        if self.mode == Mode::Apply {
            return Ok(Done::skipped(format!("not PID 1: would exec {}", init.unwrap_or("nothing"))));
        }
        if let Some(wanted) = self.options.init.as_deref().filter(|w| init != Some(*w)) {
            let first = init.unwrap_or("the fallbacks");
            log::warn!("stateless.init={wanted} is not an executable file in the image; {first} goes first");
        }
        log::info!("{} ms from start to handoff", self.elapsed_ms());
        let chain: Vec<String> = init.map(str::to_string).into_iter().chain(fallbacks.iter().cloned()).collect();
        let tried = handoff::exec_chain(self.sys, &chain, &self.init_args);
        let list: Vec<String> = tried.iter().map(|(init, e)| format!("{init}: {e}")).collect();
        let errno = tried.last().and_then(|(_, e)| e.raw_os_error());
        Err(Failure {
            errno,
            ..Failure::new(Op::Exec, None, format!("no init could be executed ({})", list.join("; ")))
        })
    }

    /// Milliseconds since `started`.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use std::path::PathBuf;

    use crate::config::Cmdline;
    use crate::model::interface::Interface;
    use crate::sys::{Call, Fake};

    struct Image(PathBuf);

    impl Image {
        fn new(tag: &str) -> Self {
            let root = std::env::temp_dir().join(format!("stateless-exec-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            Self::populate(&root);
            Self(root)
        }

        /// A minimal image at `root`: the writable dirs, an init, a base layer.
        fn populate(root: &Path) {
            for dir in ["etc", "var", "run", "tmp", "dev", "proc", "sys", "sbin", "diskless/base/etc"] {
                std::fs::create_dir_all(root.join(dir)).unwrap();
            }
            std::fs::write(root.join("sbin/init"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(root.join("sbin/init"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(root.join("diskless/base/etc/from-base"), "base\n").unwrap();
        }

        /// An executor on this image whose options come from `cmdline`; at boot the fake kernel
        /// says eth0 has 10.0.2.15/24 and the hostname is lab3-12, and apply is given the same.
        fn executor<'a>(&self, sys: &'a Fake, cmdline: &str, mode: Mode) -> Executor<'a> {
            let open = || ImageRoot::open(&self.0).unwrap();
            let mut executor = Executor::new(sys, open(), open(), mode);
            (executor.options, executor.diagnostics) = Options::resolve(&Cmdline::parse(cmdline.as_bytes()), None);
            if mode == Mode::Apply {
                executor.facts.address = "10.0.2.15/24".parse().ok();
                executor.facts.kernel_hostname = Some("lab3-12".into());
            }
            executor.init_args = vec!["single".into()];
            executor
        }
    }

    /// A fake kernel that knows the client as lab3-12 at 10.0.2.15/24 on eth0.
    fn fake(fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) -> Fake {
        let mut sys = Fake::failing(fail);
        sys.uname.nodename = "lab3-12".into();
        sys.interfaces = vec![Interface {
            index: 2,
            name: "eth0".into(),
            mac: Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            up: true,
            carrier: true,
            loopback: false,
            addrs: vec!["10.0.2.15/24".parse().unwrap()],
        }];
        sys
    }

    impl Drop for Image {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs the plan with the fake kernel; returns the calls and the panic message that ended it
    /// (`fake exec ...`, `fake reboot`), or None when `run` returned.
    fn boot(image: &Image, cmdline: &str, sys: &Fake, mode: Mode) -> (Vec<Outcome>, Option<String>) {
        boot_from(image, cmdline, sys, mode, false)
    }

    /// The same, from an initramfs (`initramfs`) or on the root.
    fn boot_from(
        image: &Image,
        cmdline: &str,
        sys: &Fake,
        mode: Mode,
        initramfs: bool,
    ) -> (Vec<Outcome>, Option<String>) {
        let mut executor = image.executor(sys, cmdline, mode);
        executor.facts.initramfs = initramfs;
        executor.cmdline = cmdline.as_bytes().to_vec();
        let ended = catch_unwind(AssertUnwindSafe(|| executor.run(&Phase::ALL)));
        let message = ended.err().map(|p| {
            p.downcast_ref::<String>().cloned().unwrap_or_else(|| p.downcast_ref::<&str>().unwrap_or(&"?").to_string())
        });
        (executor.outcomes, message)
    }

    fn mounts(calls: &[Call]) -> Vec<(String, PathBuf)> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount { fstype, target, .. } => Some((fstype.clone(), target.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn boot_mounts_overlays_sets_hostname_and_execs_init() {
        let image = Image::new("boot");
        let r = &image.0;
        let sys = fake(|_| None);
        let (outcomes, ended) = boot(&image, "", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert_eq!(
            mounts(&sys.calls()),
            [
                ("devtmpfs".into(), r.join("dev")),
                ("proc".into(), r.join("proc")),
                ("sysfs".into(), r.join("sys")),
                ("tmpfs".into(), r.join("run")),
                ("tmpfs".into(), r.join("tmp")),
                ("tmpfs".into(), r.join("run/stateless/rw/etc")),
                ("tmpfs".into(), r.join("run/stateless/rw/var")),
                ("overlay".into(), r.join("etc")),
                ("overlay".into(), r.join("var")),
            ]
        );
        let rw = r.join("run/stateless/rw/etc");
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            r.join("etc").display(),
            rw.join("upper").display(),
            rw.join("work").display()
        );
        assert!(sys.calls().contains(&Call::Mount {
            source: "overlay".into(),
            target: r.join("etc"),
            fstype: "overlay".into(),
            flags: WRITABLE_DIR_FLAGS,
            data
        }));
        assert!(sys.calls().contains(&Call::Sethostname("lab3-12".into())));
        assert_eq!(
            sys.calls().last(),
            Some(&Call::Exec("/sbin/init".into(), vec!["/sbin/init".into(), "single".into()]))
        );
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        // systemd leaves the overlays to systemd-shutdown (a busy /var at shutdown otherwise).
        assert_eq!(
            std::fs::read_to_string(r.join("run/mount/utab")).unwrap(),
            "SRC=overlay TARGET=/etc ROOT=/ OPTS=x-initrd.mount\nSRC=overlay TARGET=/var ROOT=/ OPTS=x-initrd.mount\n"
        );
        // The layers went into the upper dir before the overlay (here a plain dir: the fake
        // mounts nothing).
        assert_eq!(std::fs::read_to_string(r.join("run/stateless/rw/etc/upper/from-base")).unwrap(), "base\n");
        assert!(!r.join("etc/from-base").exists());
        assert!(r.join("run/stateless/report.json").exists());
    }

    /// A scripted DHCP server that gives eth0's MAC 10.0.2.15/24 as lab3-12.lab.example (and
    /// answers INFORM with the same).
    fn dhcp_server() -> crate::net::dhcp::client::testing::Server {
        use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
        use dhcproto::{Decodable, Decoder, Encodable};
        Box::new(|bytes: &[u8], _| {
            let m = Message::decode(&mut Decoder::new(bytes)).unwrap();
            let kind = match m.opts().get(OptionCode::MessageType) {
                Some(DhcpOption::MessageType(MessageType::Discover)) => MessageType::Offer,
                Some(DhcpOption::MessageType(MessageType::Request | MessageType::Inform)) => MessageType::Ack,
                _ => return vec![],
            };
            let ip = |d| std::net::Ipv4Addr::new(10, 0, 2, d);
            let mut r = Message::new_with_id(m.xid(), ip(0), ip(15), ip(2), ip(0), &m.chaddr()[..6]);
            r.set_opcode(Opcode::BootReply).set_flags(Flags::default().set_broadcast());
            for option in [
                DhcpOption::MessageType(kind),
                DhcpOption::ServerIdentifier(ip(2)),
                DhcpOption::SubnetMask(std::net::Ipv4Addr::new(255, 255, 255, 0)),
                DhcpOption::Router(vec![ip(2)]),
                DhcpOption::DomainNameServer(vec![ip(3)]),
                DhcpOption::Hostname("lab3-12".into()),
                DhcpOption::DomainName("lab.example".into()),
            ] {
                r.opts_mut().insert(option);
            }
            vec![r.to_vec().unwrap()]
        })
    }

    #[test]
    fn dhcp_discover_configures_names_and_hands_the_network_on() {
        let image = Image::new("dhcp");
        let r = &image.0;
        let mut sys = fake(|_| None);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
        let (outcomes, ended) = boot(&image, "", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        let calls = sys.calls();
        let at =
            |call: &Call| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call:?}: {calls:#?}"));
        let net = "10.0.2.15/24".parse().unwrap();
        let gateway = std::net::Ipv4Addr::new(10, 0, 2, 2);
        // Address and route before the name, the name from DHCP.
        assert!(at(&Call::DhcpTransport(2, std::net::Ipv4Addr::UNSPECIFIED)) < at(&Call::AddAddress(2, net)));
        assert!(at(&Call::AddAddress(2, net)) < at(&Call::AddDefaultRoute(2, gateway, false)));
        assert!(at(&Call::AddDefaultRoute(2, gateway, false)) < at(&Call::Sethostname("lab3-12".into())));
        assert!(calls.contains(&Call::Setdomainname("lab.example".into())));
        let hostname = outcomes.iter().find_map(|o| match &o.step {
            Step::Hostname { hostname, .. } => hostname.clone(),
            _ => None,
        });
        assert_eq!(hostname.map(|h| h.source), Some(crate::model::hostname::Source::Dhcp));
        // The layers keyed on the address and name were planned from the lease.
        assert!(outcomes.iter().any(|o| matches!(&o.step, Step::Layer { name, .. } if name == "hosts/10.0.2.15")));
        // Handed on: klibc's file with the lease, networkd told to keep eth0, the resolver.
        let klibc = std::fs::read_to_string(r.join("run/net-eth0.conf")).unwrap();
        assert!(klibc.contains("IPV4ADDR='10.0.2.15'") && klibc.contains("HOSTNAME='lab3-12'"), "{klibc}");
        let networkd = std::fs::read_to_string(r.join("run/systemd/network/10-stateless-eth0.network")).unwrap();
        assert!(networkd.contains("KeepConfiguration=yes"), "{networkd}");
        assert!(networkd.contains("MACAddress=52:54:00:12:34:56"), "matched on the probed MAC: {networkd}");
        assert!(std::fs::read_to_string(r.join("etc/resolv.conf")).unwrap().contains("nameserver 10.0.2.3"));
        let report = std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap();
        let report: crate::boot::report::Report = serde_json::from_str(&report).unwrap();
        let dhcp = report.dhcp.unwrap();
        assert_eq!((dhcp.interface.as_str(), dhcp.exchange, dhcp.sent), ("eth0", Exchange::Discover, 2));
    }

    /// An image whose udev names the NIC ens3 (systemd's 99-default.link, QEMU's hotplug slot
    /// 3): the boot renames eth0 before the network files, which carry the new name.
    #[test]
    fn boot_interface_takes_the_name_udev_would_give_before_the_network_files() {
        use crate::boot::ifname::testing::{slot, virtio_nic};
        let image = Image::new("ifname");
        let r = &image.0;
        virtio_nic(&r.join("sys"), "0000:00:03.0", "eth0");
        slot(&r.join("sys"), "3", "0000:00:03");
        let links = r.join("usr/lib/systemd/network");
        std::fs::create_dir_all(&links).unwrap();
        let default = "[Match]\nOriginalName=*\n[Link]\nNamePolicy=keep kernel database onboard slot path\n";
        std::fs::write(links.join("99-default.link"), default).unwrap();
        let sys = fake(|_| None);
        let (outcomes, ended) = boot(&image, "ip=dhcp", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert!(sys.calls().contains(&Call::RenameLink(2, "ens3".into())), "{:#?}", sys.calls());
        let files = outcomes.iter().find(|o| matches!(o.step, Step::NetworkFiles { .. })).unwrap();
        assert_eq!(files.status, Status::Ok, "{files:#?}");
        assert!(
            files.detail.starts_with("renamed from eth0; run/systemd/network/10-stateless-ens3.network"),
            "{files:#?}"
        );
        for file in ["run/network/ifstate.ens3", "run/net-ens3.conf", "run/systemd/network/10-stateless-ens3.network"] {
            assert!(r.join(file).is_file(), "{file}: {}", files.detail);
        }
        assert_eq!(std::fs::read_to_string(r.join("run/network/ifstate")).unwrap(), "ens3=stateless\n");
        assert!(!r.join("run/net-eth0.conf").exists());
        // Refused (a kernel before 6.2: the interface is up): eth0 kept, and its files.
        let image = Image::new("ifname-busy");
        let r = &image.0;
        virtio_nic(&r.join("sys"), "0000:00:03.0", "eth0");
        slot(&r.join("sys"), "3", "0000:00:03");
        std::fs::create_dir_all(r.join("usr/lib/systemd/network")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/network/99-default.link"), default).unwrap();
        let busy = rustix::io::Errno::BUSY.raw_os_error();
        let sys = fake(move |c| matches!(c, Call::RenameLink(..)).then_some(busy));
        let (_, ended) = boot(&image, "ip=dhcp", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert_eq!(std::fs::read_to_string(r.join("run/network/ifstate")).unwrap(), "eth0=stateless\n");
        assert!(r.join("run/net-eth0.conf").is_file());
    }

    #[test]
    fn static_ip_line_configures_without_dhcp_then_informs_for_a_name() {
        let image = Image::new("static");
        let lo = Interface {
            index: 1,
            name: "lo".into(),
            mac: Some([0; 6]),
            up: false,
            carrier: false,
            loopback: true,
            addrs: vec![],
        };
        let net: Ipv4Net = "10.0.2.15/24".parse().unwrap();
        let gateway = Ipv4Addr::new(10, 0, 2, 2);
        let static_ip = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";

        // With a name in the line: no DHCP at all, the name from ip=.
        let mut sys = fake(|_| None);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        sys.interfaces.insert(0, lo.clone());
        let (outcomes, _) = boot(&image, "ip=10.0.2.15::10.0.2.2:255.255.255.0:lab3-12:eth0:off", &sys, Mode::Boot);
        let calls = sys.calls();
        assert!(calls.contains(&Call::LinkUp(1)), "loopback up: {calls:#?}");
        assert!(calls.contains(&Call::AddAddress(2, net)) && calls.contains(&Call::AddDefaultRoute(2, gateway, false)));
        assert!(!calls.iter().any(|c| matches!(c, Call::DhcpTransport(..))), "nothing sent: {calls:#?}");
        let source = |outcomes: &[Outcome]| {
            outcomes.iter().find_map(|o| match &o.step {
                Step::Hostname { hostname: Some(h), .. } => Some((h.short.clone(), h.source)),
                _ => None,
            })
        };
        assert_eq!(source(&outcomes), Some(("lab3-12".to_string(), crate::model::hostname::Source::Ip)));

        // Without one: INFORM from the static address (never DISCOVER), the name from DHCP.
        let mut sys = fake(|_| None);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
        let (outcomes, _) = boot(&image, static_ip, &sys, Mode::Boot);
        let calls = sys.calls();
        assert!(calls.contains(&Call::DhcpTransport(2, net.addr)), "{calls:#?}");
        assert_eq!(calls.iter().filter(|c| matches!(c, Call::AddAddress(..))).count(), 1, "the static one only");
        assert_eq!(source(&outcomes), Some(("lab3-12".to_string(), crate::model::hostname::Source::Dhcp)));

        // The address refused (a fatal step, `continue`): the hostname is still chosen.
        let mut sys = fake(|c| matches!(c, Call::AddAddress(..)).then_some(1));
        sys.interfaces[0].addrs.clear();
        let (outcomes, _) = boot(&image, &format!("{static_ip} stateless.hostname=forced-7"), &sys, Mode::Boot);
        assert!(outcomes.iter().any(|o| matches!(o.step, Step::Address { .. }) && o.status == Status::Failed));
        assert_eq!(source(&outcomes), Some(("forced-7".to_string(), crate::model::hostname::Source::Cmdline)));
    }

    /// A client with three NICs and no address: eth0 (index 2) up with carrier, eth1 (3) and
    /// eth2 (4) down with a cable in; the DHCP server answers only the MAC ending in `answered`.
    fn three_nics(fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static, answered: u8) -> Fake {
        let mut sys = fake(fail);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        for (index, name) in [(3, "eth1"), (4, "eth2")] {
            let mac = Some([0x52, 0x54, 0, 0x12, 0x34, 0x54 + index as u8]);
            let down =
                Interface { index, name: name.into(), mac, up: false, carrier: false, ..sys.interfaces[0].clone() };
            sys.interfaces.push(down);
            sys.cabled.push(index);
        }
        let mut server = dhcp_server();
        let only = move |bytes: &[u8], now| match bytes.get(28 + 5) == Some(&answered) {
            true => server(bytes, now),
            false => vec![],
        };
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(Box::new(only))));
        sys
    }

    fn transports(calls: &[Call]) -> BTreeSet<u32> {
        calls.iter().filter_map(|c| if let Call::DhcpTransport(i, _) = c { Some(*i) } else { None }).collect()
    }

    /// No interface named: every one is asked at once, the first lease is kept and only its
    /// interface configured; the links set up for nothing are set down again (as the kernel's
    /// ipconfig does), the one that was up stays up.
    #[test]
    fn without_a_named_interface_every_one_is_asked_and_the_first_lease_kept() {
        let image = Image::new("anynic");
        let r = &image.0;
        let sys = three_nics(|_| None, 0x57);
        let (outcomes, ended) = boot(&image, "", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        let calls = sys.calls();
        assert_eq!(transports(&calls), BTreeSet::from([2, 3, 4]), "all three asked");
        let net = "10.0.2.15/24".parse().unwrap();
        let configured: Vec<&Call> =
            calls.iter().filter(|c| matches!(c, Call::AddAddress(..) | Call::AddDefaultRoute(..))).collect();
        let gateway = std::net::Ipv4Addr::new(10, 0, 2, 2);
        assert_eq!(configured, [&Call::AddAddress(3, net), &Call::AddDefaultRoute(3, gateway, false)]);
        let links: Vec<&Call> = calls.iter().filter(|c| matches!(c, Call::LinkUp(_) | Call::LinkDown(_))).collect();
        assert_eq!(links, [&Call::LinkUp(3), &Call::LinkUp(4), &Call::LinkDown(4)]);
        let dhcp = outcomes.iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
        assert!(dhcp.detail.contains("on eth1 (first to answer; also asked: eth0, eth2)"), "{}", dhcp.detail);
        let report = read_report(r).dhcp.unwrap();
        assert_eq!((report.interface.as_str(), report.exchange), ("eth1", Exchange::Discover));
        assert_eq!(report.asked, ["eth0", "eth1", "eth2"]);
        assert!(r.join("run/net-eth1.conf").exists() && !r.join("run/net-eth0.conf").exists());
    }

    /// A named interface (`ip=` device, `BOOTIF=`) is the only one asked, as before.
    #[test]
    fn a_named_interface_is_the_only_one_asked() {
        for cmdline in ["ip=:::::eth1:dhcp", "BOOTIF=01-52-54-00-12-34-57"] {
            let image = Image::new("onenic");
            let sys = three_nics(|_| None, 0x57);
            let (outcomes, ended) = boot(&image, cmdline, &sys, Mode::Boot);
            assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{cmdline}: {outcomes:#?}");
            let calls = sys.calls();
            assert_eq!(transports(&calls), BTreeSet::from([3]), "{cmdline}");
            assert!(!calls.iter().any(|c| matches!(c, Call::LinkDown(_))), "{cmdline}");
            assert_eq!(read_report(&image.0).dhcp.unwrap().asked, ["eth1"], "{cmdline}");
        }
    }

    /// Without any answer: no carrier on any link is today's error; links with carrier and no
    /// lease are each named with why.
    #[test]
    fn no_lease_on_any_interface_says_why_for_each() {
        let dhcp_error = |sys: &Fake| {
            let image = Image::new("nonic");
            let (outcomes, ended) =
                boot(&image, "stateless.dhcp.timeout=7 stateless.emergency=reboot", sys, Mode::Boot);
            assert_eq!(ended.as_deref(), Some("fake reboot"));
            let dhcp = outcomes.into_iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
            assert_eq!(dhcp.status, Status::Failed);
            dhcp.error.unwrap()
        };
        let mut sys = three_nics(|_| None, 0);
        sys.interfaces[0].carrier = false;
        sys.cabled.clear();
        let error = dhcp_error(&sys);
        assert_eq!((error.message.as_str(), error.path), ("no carrier within 7 s", None));
        assert!(transports(&sys.calls()).is_empty());
        let sys = three_nics(|_| None, 0);
        let error = dhcp_error(&sys);
        assert!(error.message.starts_with("no lease on any interface: eth0: no lease after "), "{error}");
        assert!(error.message.contains("; eth1: no lease after") && error.message.contains("; eth2: "), "{error}");
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::AddAddress(..) | Call::LinkDown(_))));
    }

    /// A netlink dump that fails while clients are asking stops none of them: the next poll
    /// finds the links that got carrier meanwhile.
    #[test]
    fn a_failed_poll_during_the_race_stops_no_client() {
        use std::sync::atomic::{AtomicU8, Ordering};
        let image = Image::new("pollnic");
        // 0: no client yet; 1: one asks, the next dump fails; 2: failed once.
        let state = std::sync::Arc::new(AtomicU8::new(0));
        let sys = three_nics(
            move |c| match c {
                Call::DhcpTransport(..) => {
                    let _ = state.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
                    None
                }
                Call::Interfaces => state
                    .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                    .then_some(rustix::io::Errno::NOBUFS.raw_os_error()),
                _ => None,
            },
            0x57,
        );
        let (outcomes, ended) = boot(&image, "stateless.emergency=reboot", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        assert_eq!(read_report(&image.0).dhcp.unwrap().interface, "eth1");
    }

    /// A client thread that panics (an unwinding build) is a failed interface, not a failed boot.
    #[test]
    fn a_client_that_panics_is_one_interface_failed() {
        let image = Image::new("panicnic");
        let sys = three_nics(|c| if let Call::DhcpTransport(2, _) = c { panic!("eth0's client") } else { None }, 0x57);
        let (outcomes, ended) = boot(&image, "stateless.emergency=reboot", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        let report = read_report(&image.0).dhcp.unwrap();
        assert_eq!((report.interface.as_str(), report.asked.len()), ("eth1", 3));
    }

    /// A static line's name servers go to resolv.conf over what the INFORM got (10.0.2.3);
    /// `stateless.dhcp.inform=no` sends nothing and the name falls back.
    #[test]
    fn static_ip_lines_servers_and_the_inform_switch() {
        let image = Image::new("static-servers");
        let r = &image.0;
        let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:192.0.2.53:192.0.2.54:192.0.2.123";
        let mut sys = fake(|_| None);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
        let (outcomes, _) = boot(&image, line, &sys, Mode::Boot);
        assert!(sys.calls().iter().any(|c| matches!(c, Call::DhcpTransport(..))), "INFORM by default");
        let resolv = std::fs::read_to_string(r.join("etc/resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch lab.example\n"), "{resolv}");
        assert!(!resolv.contains("10.0.2.3"), "{resolv}");
        let klibc = std::fs::read_to_string(r.join("run/net-eth0.conf")).unwrap();
        assert!(klibc.contains("IPV4DNS0='192.0.2.53'") && klibc.contains("HOSTNAME='lab3-12'"), "{klibc}");
        let files = outcomes.iter().find(|o| matches!(o.step, Step::NetworkFiles { .. })).unwrap();
        assert!(files.detail.ends_with("; dns 192.0.2.53 192.0.2.54, ntp 192.0.2.123 from ip="), "{files:#?}");

        let image = Image::new("static-no-inform");
        let mut sys = fake(|_| None);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
        let (outcomes, _) = boot(&image, &format!("{line} stateless.dhcp.inform=no"), &sys, Mode::Boot);
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::DhcpTransport(..))), "nothing sent: {:#?}", sys.calls());
        assert!(sys.calls().contains(&Call::Sethostname("Node15".into())), "{:#?}", sys.calls());
        assert!(!outcomes.iter().any(|o| matches!(o.step, Step::Dhcp { .. })));
        let resolv = std::fs::read_to_string(image.0.join("etc/resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 192.0.2.53\n"), "{resolv}");

        // On-root mode, the kernel's DHCP ran all the same (several NICs, no <device>): it
        // dropped the line's servers, and /proc/net/pnp's are the ones.
        let image = Image::new("static-kernel-dhcp");
        let mut sys = fake(|_| None);
        let pnp = "#PROTO: DHCP\ndomain lab.example\nnameserver 10.0.2.3\nbootserver 10.0.2.2\n";
        sys.proc.insert("net/pnp".into(), pnp.into());
        let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0:lab3-12::off:192.0.2.53";
        let (outcomes, _) = boot(&image, line, &sys, Mode::Boot);
        let resolv = std::fs::read_to_string(image.0.join("etc/resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 10.0.2.3\n") && !resolv.contains("192.0.2.53"), "{resolv}");
        let files = outcomes.iter().find(|o| matches!(o.step, Step::NetworkFiles { .. })).unwrap();
        assert!(!files.detail.contains("from ip="), "{files:#?}");
    }

    /// `ip=dhcp,<type>,<id>`: the server sees that client id in every message.
    #[test]
    fn dhcp_client_id_from_the_ip_line_is_sent() {
        use dhcproto::v4::{DhcpOption, Message, OptionCode};
        use dhcproto::{Decodable, Decoder};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let ids = seen.clone();
        let mut server = dhcp_server();
        let recording: crate::net::dhcp::client::testing::Server = Box::new(move |bytes: &[u8], now| {
            let m = Message::decode(&mut Decoder::new(bytes)).unwrap();
            ids.lock().unwrap().push(m.opts().get(OptionCode::ClientIdentifier).cloned());
            server(bytes, now)
        });
        let image = Image::new("client-id");
        let mut sys = fake(|_| None);
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(recording)));
        let (outcomes, ended) = boot(&image, "ip=dhcp,0,lab3-12", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        let id = Some(DhcpOption::ClientIdentifier(b"\x00lab3-12".to_vec()));
        assert_eq!(*seen.lock().unwrap(), [id.clone(), id], "DISCOVER and REQUEST");
    }

    #[test]
    fn no_lease_is_a_fatal_step_the_policy_decides() {
        let image = Image::new("nolease");
        let mut sys = fake(|_| None);
        sys.interfaces[0].addrs.clear();
        let (outcomes, ended) = boot(&image, "stateless.emergency=reboot", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake reboot"));
        let dhcp = outcomes.iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
        assert_eq!(dhcp.status, Status::Failed);
        assert_eq!(dhcp.error.as_ref().map(|e| e.op), Some(Op::Dhcp));
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::AddAddress(..))));
    }

    #[test]
    fn a_scratch_disk_that_is_not_there_leaves_the_upper_dirs_in_memory() {
        let image = Image::new("noscratch");
        let sys = fake(|_| None);
        let (outcomes, ended) = boot(&image, "stateless.scratch=lab-scratch stateless.swap=lab-swap", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "degradable: the boot goes on");
        let of = |f: &dyn Fn(&Step) -> bool| outcomes.iter().find(|o| f(&o.step)).unwrap();
        let scratch = of(&|s| matches!(s, Step::Scratch { .. }));
        assert_eq!(scratch.status, Status::Failed);
        let why = scratch.error.as_ref().unwrap().to_string();
        assert!(why.contains("no filesystem labelled lab-scratch on the 0 block devices"), "{why}");
        let etc = of(&|s| matches!(s, Step::WritableDir { dir, .. } if dir == "etc"));
        assert!(etc.detail.contains("on the tmpfs at /run/stateless/rw/etc"), "{}", etc.detail);
        let swap = of(&|s| matches!(s, Step::Swap { .. }));
        assert_eq!((swap.status, swap.detail.as_str()), (Status::Degraded, "none on the 0 block devices"));
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::Swapon(_))));
        // `apply` mounts no disk: its upper dirs stay on their tmpfs too.
        let sys = fake(|_| None);
        let (outcomes, _) = boot(&image, "stateless.scratch=lab-scratch", &sys, Mode::Apply);
        let etc = outcomes.iter().find(|o| matches!(&o.step, Step::WritableDir { dir, .. } if dir == "etc")).unwrap();
        assert!(etc.detail.contains("on the tmpfs at /run/stateless/rw/etc"), "{}", etc.detail);
    }

    #[test]
    fn without_a_tmpfs_run_no_utab_lands_in_the_image() {
        // /run not mounted (its tmpfs failed; the dirs went to copy mode): the mount is left
        // unmarked rather than run/mount/utab written into the image.
        let image = Image::new("no-run-utab");
        let sys = fake(|_| None);
        let executor = image.executor(&sys, "", Mode::Boot);
        assert_eq!(executor.mark_extrinsic("tmpfs", "etc"), "");
        assert!(!image.0.join("run/mount").exists(), "written into the image's /run");
        sys.mount("tmpfs", &image.0.join("run"), "tmpfs", MountFlags::empty(), "").unwrap();
        assert_eq!(executor.mark_extrinsic("tmpfs", "etc"), "; x-initrd.mount in /run/mount/utab");
        let utab = std::fs::read_to_string(image.0.join("run/mount/utab")).unwrap();
        assert_eq!(utab, "SRC=tmpfs TARGET=/etc ROOT=/ OPTS=x-initrd.mount\n");
    }

    #[test]
    fn overlay_failure_falls_back_to_copy_mode_but_never_copies_into_the_image() {
        let image = Image::new("nooverlay");
        let r = image.0.clone();
        let sys = fake(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay").then_some(19));
        let (outcomes, ended) = boot(&image, "stateless.dirs=etc", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "continue is the default policy");
        let m = mounts(&sys.calls());
        assert_eq!(
            m[5..],
            [
                ("tmpfs".into(), r.join("run/stateless/rw/etc")),
                ("overlay".into(), r.join("etc")),
                ("tmpfs".into(), r.join("etc"))
            ]
        );
        assert!(sys.calls().contains(&Call::Umount(r.join("run/stateless/rw/etc"))));
        assert!(sys.calls().contains(&Call::Umount(r.join("etc"))), "the copy-mode tmpfs is taken off again");
        // The fake tmpfs did not appear, so copy mode must refuse to write into the image dir.
        let overlay = outcomes.iter().find(|o| matches!(o.step, Step::Overlay { .. })).unwrap();
        assert_eq!(overlay.status, Status::Failed);
        let error = overlay.error.as_ref().unwrap();
        assert_eq!(error.op, Op::Mount);
        assert!(error.message.contains("still the image dir"), "{error}");
        assert!(!r.join("etc/from-base").exists(), "a layer was written into the read-only image");
        assert!(outcomes.iter().any(|o| o.phase == Phase::Layers && o.detail.contains("1 written, 0 refused")));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
        assert_eq!(report["dirs"], serde_json::json!([{"dir": "etc", "mode": "none"}]));
        assert_eq!(report["degraded"], true);
        assert!(!r.join("etc/hostname").exists());
        assert!(!r.join("run/mount/utab").exists(), "no mount, no utab line");
    }

    #[test]
    fn reboot_policy_stops_the_boot_at_a_fatal_failure() {
        let image = Image::new("reboot");
        let sys = fake(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay").then_some(19));
        let (_, ended) = boot(&image, "stateless.emergency=reboot stateless.mode=overlay", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake reboot"));
        let n = sys.calls().len();
        assert_eq!(
            sys.calls()[n - 3..],
            [Call::Sleep(handoff::EMERGENCY_DELAY), Call::Sync, Call::Reboot { poweroff: false }]
        );
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::Exec(..))));
    }

    #[test]
    fn the_chosen_init_first_then_the_fallback_chain() {
        let image = Image::new("fallback");
        // /sbin/init is the only executable: the plan chooses it; when its exec fails (ENOEXEC)
        // the others follow in order, /bin/init last. /bin/sh is never executed as init, not
        // even under the shell policy (a shell as PID 1 panics the kernel when it exits): the
        // emergency runs it as a child, then reboots.
        for (policy, shells) in [("continue", 0), ("shell", 1)] {
            let sys = fake(|c| matches!(c, Call::Exec(..)).then_some(8));
            let cmdline = format!("stateless.init=/nonexistent stateless.emergency={policy}");
            let (outcomes, ended) = boot(&image, &cmdline, &sys, Mode::Boot);
            assert_eq!(ended.as_deref(), Some("fake reboot"), "{policy}");
            let execs: Vec<PathBuf> = sys
                .calls()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Exec(path, _) => Some(path),
                    _ => None,
                })
                .collect();
            assert_eq!(execs, ["/sbin/init", "/nonexistent", "/etc/init", "/bin/init"].map(PathBuf::from));
            let ran = sys.calls().iter().filter(|c| matches!(c, Call::Shell(_))).count();
            assert_eq!(ran, shells, "{policy}");
            assert!(outcomes.iter().any(|o| o.phase == Phase::Report), "the report comes before the handoff");
        }
    }

    #[test]
    fn no_init_at_all_goes_to_the_policy_once() {
        for (policy, shells) in [("continue", 0), ("shell", 1), ("reboot", 0)] {
            let image = Image::new("noinit");
            let sys = fake(|c| matches!(c, Call::Exec(..)).then_some(2));
            let (outcomes, ended) = boot(&image, &format!("stateless.emergency={policy}"), &sys, Mode::Boot);
            assert_eq!(ended.as_deref(), Some("fake reboot"), "{policy}");
            let last = outcomes.last().unwrap();
            assert_eq!((last.phase, last.status), (Phase::Handoff, Status::Failed));
            let error = last.error.as_ref().unwrap();
            assert_eq!((error.op, error.errno), (Op::Exec, Some(2)));
            assert!(!error.message.contains("/bin/sh"), "never an init: {error}");
            let calls = sys.calls();
            assert_eq!(calls.iter().filter(|c| matches!(c, Call::Shell(_))).count(), shells, "{policy}: {calls:?}");
            let end: Vec<&Call> = calls.iter().rev().take(3).collect();
            assert_eq!(end, [&Call::Reboot { poweroff: false }, &Call::Sync, &Call::Sleep(handoff::EMERGENCY_DELAY)]);
        }
    }

    #[test]
    fn a_domain_longer_than_the_kernel_keeps_is_not_set() {
        let image = Image::new("longdomain");
        let sys = fake(|_| None);
        let domain = format!("{}.{}", "d".repeat(60), "example");
        let (outcomes, _) = boot(&image, &format!("stateless.hostname=lab3-12.{domain}"), &sys, Mode::Boot);
        let calls = sys.calls();
        assert!(calls.contains(&Call::Sethostname("lab3-12".into())));
        assert!(!calls.iter().any(|c| matches!(c, Call::Setdomainname(_))), "{calls:#?}");
        let step = outcomes.iter().find(|o| matches!(o.step, Step::Hostname { .. })).unwrap();
        assert_eq!(step.status, Status::Degraded, "{step:?}");
    }

    #[test]
    fn break_starts_a_shell_before_the_named_step() {
        let image = Image::new("break");
        let sys = fake(|_| None);
        boot(&image, "stateless.break=writable-dirs", &sys, Mode::Boot);
        let calls = sys.calls();
        let shell = calls.iter().position(|c| matches!(c, Call::Shell(_))).unwrap();
        assert!(matches!(&calls[shell + 1], Call::Mount { target, .. } if target.ends_with("run/stateless/rw/etc")));
        assert_eq!(calls.iter().filter(|c| matches!(c, Call::Shell(_))).count(), 1);
    }

    #[test]
    fn apply_mode_neither_sets_the_hostname_nor_execs() {
        let image = Image::new("apply");
        let sys = fake(|_| None);
        let (outcomes, ended) = boot(&image, "stateless.break=writable-dirs", &sys, Mode::Apply);
        assert_eq!(ended, None);
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::Exec(..) | Call::Sethostname(_) | Call::Shell(_))));
        assert_eq!(outcomes.last().unwrap().status, Status::Skipped);
    }

    #[test]
    fn only_pid1_loads_modules() {
        let image = Image::new("modules");
        let dir = image.0.join("lib/modules/6.1.0");
        std::fs::create_dir_all(dir.join("kernel/fs/overlayfs")).unwrap();
        std::fs::write(dir.join("modules.dep"), "kernel/fs/overlayfs/overlay.ko:\n").unwrap();
        std::fs::write(dir.join("kernel/fs/overlayfs/overlay.ko"), "").unwrap();
        for mode in [Mode::Apply, Mode::Boot] {
            let mut sys = fake(|_| None);
            sys.proc.insert("filesystems".into(), "nodev\ttmpfs\n".into());
            let (outcomes, _) = boot(&image, "stateless.dirs=etc", &sys, mode);
            let module = outcomes.iter().find(|o| o.phase == Phase::Hardware).unwrap();
            let loads: Vec<Call> = sys.calls().into_iter().filter(|c| matches!(c, Call::LoadModule(..))).collect();
            match mode {
                Mode::Apply => {
                    assert_eq!(module.status, Status::Skipped, "{module:?}");
                    assert!(loads.is_empty(), "apply loaded {loads:?} into the host's kernel");
                }
                Mode::Boot => {
                    assert_eq!(module.status, Status::Ok, "{module:?}");
                    assert_eq!(loads, [Call::LoadModule(dir.join("kernel/fs/overlayfs/overlay.ko"), String::new())]);
                }
            }
        }
    }

    #[test]
    fn a_module_the_admin_named_that_finds_no_device_fails_its_step() {
        // ENODEV is no failure for coldplug, but `stateless.modules=` asked for this one.
        let image = Image::new("modules-nodev");
        let dir = image.0.join("lib/modules/6.1.0");
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        std::fs::write(dir.join("modules.dep"), "kernel/pcspkr.ko:\n").unwrap();
        std::fs::write(dir.join("kernel/pcspkr.ko"), "").unwrap();
        let sys = fake(|c| matches!(c, Call::LoadModule(..)).then_some(Errno::NODEV.raw_os_error()));
        let (outcomes, ended) = boot(&image, "stateless.modules=pcspkr", &sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "not fatal: {outcomes:#?}");
        let step = outcomes.iter().find(|o| matches!(&o.step, Step::Module { name, .. } if name == "pcspkr")).unwrap();
        assert_eq!(step.status, Status::Failed, "{step:?}");
        let error = step.error.as_ref().unwrap();
        assert_eq!(error.errno, Some(Errno::NODEV.raw_os_error()));
        assert!(
            error.message.ends_with("pcspkr.ko: No such device (os error 19): the module found no device"),
            "{error}"
        );
    }

    /// An image with four modules and two devices (a virtio PCI NIC, the PC speaker), and a
    /// fake kernel on which loading virtio_pci makes the virtio NIC appear.
    /// `host_conf`: a modprobe.d file the host layer brings, which appears in /etc when its
    /// overlay is mounted.
    fn coldplug_fixture(tag: &str, host_conf: Option<&'static str>) -> (Image, Fake) {
        let image = Image::new(tag);
        let r = image.0.clone();
        let dir = r.join("lib/modules/6.1.0");
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/virtio_pci.ko:\nkernel/virtio_net.ko: kernel/failover.ko\nkernel/failover.ko:\nkernel/pcspkr.ko:\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.alias"),
            "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000001v* virtio_net\nalias platform:pcspkr pcspkr\n",
        )
        .unwrap();
        for m in ["virtio_pci", "virtio_net", "failover", "pcspkr"] {
            std::fs::write(dir.join(format!("kernel/{m}.ko")), "").unwrap();
        }
        let root = r.clone();
        let device = move |bus: &str, name: &str, modalias: &str| {
            let r = &root;
            let path = r.join("sys/devices").join(name);
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("modalias"), modalias).unwrap();
            std::fs::create_dir_all(r.join("sys/bus").join(bus).join("devices")).unwrap();
            std::os::unix::fs::symlink(&path, r.join("sys/bus").join(bus).join("devices").join(name)).unwrap();
        };
        device("pci", "0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n");
        device("platform", "pcspkr", "platform:pcspkr\n");
        // Loading the bus driver makes the virtio device appear, as the kernel would.
        let etc = r.join("etc/modprobe.d");
        let sys = fake(move |c| {
            match c {
                Call::LoadModule(p, _) if p.ends_with("virtio_pci.ko") => {
                    device("virtio", "virtio0", "virtio:d00000001v00001AF4\n")
                }
                Call::Mount { fstype, target, .. } if fstype == "overlay" && target.ends_with("etc") => {
                    if let Some(text) = host_conf {
                        std::fs::create_dir_all(&etc).unwrap();
                        std::fs::write(etc.join("host.conf"), text).unwrap();
                    }
                }
                _ => {}
            }
            None
        });
        (image, sys)
    }

    /// The modules loaded, by file name, with their parameters.
    fn loads(sys: &Fake) -> Vec<(String, String)> {
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
        sys.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::LoadModule(p, params) => Some((name(&p), params)),
                _ => None,
            })
            .collect()
    }

    fn pairs<const N: usize>(expected: [(&str, &str); N]) -> Vec<(String, String)> {
        expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn coldplug_after_the_layers_loads_drivers_until_no_new_devices_appear() {
        // On-root mode: the network is up, so coldplug waits for the layers and reads /etc as
        // they made it (written straight into the image here: the fake mounts no overlay).
        let (image, sys) = coldplug_fixture("coldplug", None);
        let r = &image.0;
        std::fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
        std::fs::write(r.join("etc/modprobe.d/lab.conf"), "blacklist pcspkr\noptions failover a=1\n").unwrap();
        let (outcomes, _) = boot(&image, "failover.debug=1", &sys, Mode::Boot);
        let coldplug = outcomes.iter().find(|o| matches!(o.step, Step::Coldplug { .. })).unwrap();
        assert_eq!((coldplug.phase, coldplug.status), (Phase::Devices, Status::Ok), "{coldplug:?}");
        let pass = Pass::Late;
        assert!(
            matches!(&coldplug.step, Step::Coldplug { pass: p, devices: 2, modules } if *p == pass && modules == &["virtio_pci"])
        );
        assert!(coldplug.detail.contains("1 planned, 2 for devices that appeared"), "{}", coldplug.detail);
        let expected = pairs([("virtio_pci.ko", ""), ("failover.ko", "a=1 debug=1"), ("virtio_net.ko", "")]);
        assert_eq!(loads(&sys), expected, "pcspkr is blacklisted");
        let report: crate::boot::report::Report =
            serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
        assert_eq!(report.modules.len(), 3);
        assert!(report.modules.iter().all(|m| m.outcome == crate::kmod::load::Outcome::Loaded));
    }

    #[test]
    fn an_image_with_udev_coldplugs_its_devices_itself() {
        let (image, sys) = coldplug_fixture("coldplug-udev", None);
        let udevd = image.0.join("lib/systemd/systemd-udevd");
        std::fs::create_dir_all(udevd.parent().unwrap()).unwrap();
        std::fs::write(&udevd, "").unwrap();
        std::fs::set_permissions(&udevd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (outcomes, _) = boot(&image, "", &sys, Mode::Boot);
        assert!(!outcomes.iter().any(|o| matches!(o.step, Step::Coldplug { .. })), "{outcomes:#?}");
        assert!(loads(&sys).is_empty());
        let report = std::fs::read_to_string(image.0.join("run/stateless/report.json")).unwrap();
        assert!(report.contains("devices: left to the image's udev (/lib/systemd/systemd-udevd)"), "{report}");
    }

    #[test]
    fn coldplug_before_the_network_when_it_must_come_up_and_the_rest_after_the_layers() {
        let (image, mut sys) = coldplug_fixture("coldplug-early", Some("options virtio_net napi_tx=1\n"));
        let r = &image.0;
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
        // Before the network: the image's modprobe.d and the base layer's; after the layers,
        // /etc as they made it, which here sets an option too late for a module loaded early.
        std::fs::create_dir_all(r.join("diskless/base/etc/modprobe.d")).unwrap();
        std::fs::write(r.join("diskless/base/etc/modprobe.d/lab.conf"), "blacklist pcspkr\noptions failover a=1\n")
            .unwrap();
        let (outcomes, _) = boot(&image, "", &sys, Mode::Boot);
        let phases: Vec<Phase> =
            outcomes.iter().filter(|o| matches!(o.step, Step::Coldplug { .. })).map(|o| o.phase).collect();
        assert_eq!(phases, [Phase::Hardware, Phase::Devices], "{outcomes:#?}");
        let expected = pairs([("virtio_pci.ko", ""), ("failover.ko", "a=1"), ("virtio_net.ko", ""), ("pcspkr.ko", "")]);
        assert_eq!(loads(&sys), expected, "pcspkr: blacklisted by the base layer only");
        let report: crate::boot::report::Report =
            serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
        let note =
            "module virtio_net: the layers set options \"napi_tx=1\", but it was loaded before the network with \"\"";
        assert!(report.notes.iter().any(|n| n == note), "{:?}", report.notes);
        let dhcp = outcomes.iter().position(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
        assert!(outcomes.iter().position(|o| o.phase == Phase::Hardware).unwrap() < dhcp);
    }

    /// An initramfs (holding only stateless) whose NFS root, once "mounted" by the fake, is a
    /// small image at /root; a client without an address, and a DHCP server.
    fn initramfs(tag: &str, fail: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) -> (Image, Fake) {
        let image = Image::new(tag);
        std::fs::remove_file(image.0.join("sbin/init")).unwrap();
        Image::populate(&image.0.join("root"));
        let mut sys = fake(fail);
        sys.uname.nodename = "(none)".into();
        sys.interfaces[0].addrs.clear();
        sys.dhcp = Some(std::sync::Arc::new(std::sync::Mutex::new(dhcp_server())));
        (image, sys)
    }

    /// A root the command line names wrongly fails the root step with its words escaped: the
    /// failure is logged as it is.
    #[test]
    fn a_hostile_root_fails_escaped() {
        let (image, sys) = initramfs("hostile-root", |_| None);
        let cmdline = "root=\x1b[2J\u{202e}x stateless.emergency=reboot";
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"));
        let failed = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        let message = &failed.error.as_ref().unwrap().message;
        assert_eq!(
            message,
            "root=\\x1b[2J\\xe2\\x80\\xaex is not an NFS root (root=/dev/nfs, nfs:…, nfs4:…, <server>:/<path>)"
        );
    }

    #[test]
    fn initramfs_mode_mounts_the_nfs_root_switches_and_boots_it_as_on_root() {
        // The server exports the path over v3 only (a v4 pseudo-root elsewhere, as dracut's
        // TEST-60-NFS server): NFSv4 gives ENOENT, and v3 is tried at once, as mount.nfs does.
        let (image, sys) = initramfs("initramfs", |c| {
            matches!(c, Call::Mount { fstype, .. } if fstype == "nfs4")
                .then_some(rustix::io::Errno::NOENT.raw_os_error())
        });
        let new_root = image.0.join("root");
        // The image's own stateless.conf counts from the switch on.
        std::fs::write(new_root.join("etc/stateless.conf"), "stateless.dirs=etc\n").unwrap();
        let (outcomes, ended) = boot_from(&image, "nfsroot=/srv/img,port=2049", &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        let calls = sys.calls();
        let nfs = Call::Mount {
            source: "10.0.2.2:/srv/img".into(),
            target: new_root.clone(),
            fstype: "nfs".into(),
            flags: MountFlags::RDONLY,
            data: "vers=3,addr=10.0.2.2,nolock,port=2049".into(),
        };
        let at =
            |call: &Call| calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no {call:?}: {calls:#?}"));
        // DHCP first (the server comes from the lease), then the root, the early mounts into it, the switch.
        assert!(at(&Call::AddAddress(2, "10.0.2.15/24".parse().unwrap())) < at(&nfs));
        // The NFS client is loaded while DHCP waits on the network.
        assert!(outcomes.iter().any(|o| matches!(&o.step, Step::Dhcp { meanwhile, .. } if meanwhile == &["nfsv4"])));
        let tried: Vec<&Call> =
            calls.iter().filter(|c| matches!(c, Call::Mount { fstype, .. } if fstype.starts_with("nfs"))).collect();
        assert_eq!(tried.len(), 2, "4.2 refused with ENOENT, then 3 at once: {tried:?}");
        assert!(!calls[..at(&nfs)].iter().any(|c| matches!(c, Call::Sleep(_))), "no backoff between versions");
        let moved: Vec<&Call> = calls.iter().filter(|c| matches!(c, Call::MoveMount(..))).collect();
        assert_eq!(moved.len(), 5, "{moved:?}");
        assert_eq!(moved[0], &Call::MoveMount(image.0.join("dev"), new_root.join("dev")));
        assert!(at(&nfs) < at(moved[0]) && at(moved[4]) < at(&Call::SwitchRoot(new_root.clone())));
        // The root checked before anything moved: the init the image's stateless.conf leaves.
        assert!(at(&nfs) < at(&Call::Read(new_root.join("sbin/init"))));
        assert!(at(&Call::Read(new_root.join("sbin/init"))) < at(moved[0]));
        // After the switch everything happens in the new root, as in on-root mode.
        let etc = calls.iter().position(|c| matches!(c, Call::Mount { target, .. } if *target == new_root.join("etc")));
        assert!(etc.is_some_and(|e| e > at(&Call::SwitchRoot(new_root.clone()))), "{calls:#?}");
        assert!(!calls.iter().any(|c| matches!(c, Call::Mount { target, .. } if *target == new_root.join("var"))));
        let report = std::fs::read_to_string(new_root.join("run/stateless/report.json")).unwrap();
        assert!(report.contains("\"step\": \"switch-root\""), "{report}");
        let mounted = read_report(&new_root).nfs_root.unwrap();
        assert_eq!((mounted.version.as_str(), mounted.dropped.len()), ("3", 1));
        assert!(!image.0.join("run/stateless").exists(), "nothing written into the initramfs after the switch");
    }

    #[test]
    fn an_nfs_server_that_never_answers_ends_in_the_policy_within_the_bound() {
        // The server refuses NFSv4.2 and never answers 4.1.
        let (image, sys) = initramfs("nfs-down", |c| match c {
            Call::Mount { data, .. } if data.starts_with("vers=4.2") => {
                Some(rustix::io::Errno::PROTONOSUPPORT.raw_os_error())
            }
            Call::Mount { fstype, .. } if fstype.starts_with("nfs") => Some(libc_etimedout()),
            _ => None,
        });
        let cmdline = "root=nfs4:10.0.2.9:/img stateless.nfs.timeout=20 stateless.emergency=continue";
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "no root: every policy ends in a reboot");
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        let error = root.error.as_ref().unwrap();
        assert_eq!(error.errno, Some(libc_etimedout()));
        assert!(error.message.contains("gave up after") && error.message.contains("10.0.2.9:/img"), "{error}");
        let calls = sys.calls();
        let slept = slept_before_reboot(&calls);
        assert_eq!(slept, Duration::from_secs(20), "tries until the bound, the last one at it");
        // NFSv4 minor versions newest first, an older one only when the server refuses the
        // newer: 4.1 times out, so each round starts again at 4.2 and 4.0 is never tried.
        let tried: Vec<String> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount { data, .. } if data.starts_with("vers=4") => Some(data[..8].to_string()),
                _ => None,
            })
            .take(4)
            .collect();
        assert_eq!(tried, ["vers=4.2", "vers=4.1", "vers=4.2", "vers=4.1"]);
        assert!(!calls.iter().any(|c| matches!(c, Call::SwitchRoot(_))));
    }

    #[test]
    fn an_initramfs_without_the_nic_s_driver_ends_in_the_policy_within_the_bound() {
        // No driver for the NIC in the initramfs: no interface ever appears, and without one
        // the kernel has no route to the server.
        let unreachable = rustix::io::Errno::NETUNREACH.raw_os_error();
        let (image, mut sys) = initramfs("no-nic", move |c| {
            matches!(c, Call::Mount { fstype, .. } if fstype.starts_with("nfs")).then_some(unreachable)
        });
        sys.interfaces.retain(|i| i.loopback);
        let bounds = "stateless.dhcp.timeout=7 stateless.nfs.timeout=5";
        let cmdline = format!("nfsroot=10.0.2.2:/srv/img {bounds} stateless.emergency=continue");
        let (outcomes, ended) = boot_from(&image, &cmdline, &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"), "no root: every policy ends in a reboot");
        let dhcp = outcomes.iter().find(|o| matches!(o.step, Step::Dhcp { .. })).unwrap();
        assert_eq!(dhcp.status, Status::Failed);
        let error = dhcp.error.as_ref().unwrap();
        assert!(error.message.contains("no such network interface within 7 s"), "{error}");
        // `continue` still tries the root (its server is known), within its own bound.
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        assert_eq!(root.error.as_ref().and_then(|e| e.errno), Some(unreachable), "{root:?}");
        let calls = sys.calls();
        let slept = slept_before_reboot(&calls);
        assert!(slept <= Duration::from_secs(7 + 5), "waited {slept:?}");
        assert!(!calls.iter().any(|c| matches!(c, Call::SwitchRoot(_))));
    }

    /// The time the boot slept (retry pauses, carrier polls) before the emergency reboot,
    /// without the emergency's own pause.
    fn slept_before_reboot(calls: &[Call]) -> Duration {
        calls
            .iter()
            .take_while(|c| !matches!(c, Call::Reboot { .. }))
            .filter_map(|c| match c {
                Call::Sleep(d) if *d < handoff::EMERGENCY_DELAY => Some(*d),
                _ => None,
            })
            .sum()
    }

    fn libc_etimedout() -> i32 {
        rustix::io::Errno::TIMEDOUT.raw_os_error()
    }

    /// Fails the root check's reads with `errno` while the NFS root is mounted with one of
    /// `versions`, as a server does whose NFSv4.2 READ_PLUS is broken.
    fn reads_fail(versions: &'static [&'static str], errno: Errno) -> impl Fn(&Call) -> Option<i32> + Send + Sync {
        let mounted = std::sync::Mutex::new(String::new());
        move |c| match c {
            Call::Mount { fstype, data, .. } if fstype.starts_with("nfs") => {
                data.clone_into(&mut mounted.lock().unwrap());
                None
            }
            Call::Read(_) => {
                let data = mounted.lock().unwrap();
                versions.iter().any(|v| data.starts_with(&format!("vers={v},"))).then_some(errno.raw_os_error())
            }
            _ => None,
        }
    }

    /// The NFS versions mounted, in order, with `umount` where the root was unmounted.
    fn nfs_versions(calls: &[Call]) -> Vec<String> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount { fstype, data, .. } if fstype.starts_with("nfs") => {
                    data.split(',').next().map(str::to_string)
                }
                Call::Umount(_) => Some("umount".into()),
                _ => None,
            })
            .collect()
    }

    fn read_report(root: &Path) -> crate::boot::report::Report {
        serde_json::from_str(&std::fs::read_to_string(root.join("run/stateless/report.json")).unwrap()).unwrap()
    }

    use rustix::io::Errno;

    #[test]
    fn a_root_that_gives_eio_with_nfsv4_2_is_mounted_again_with_4_1() {
        let (image, sys) = initramfs("eio-4.2", reads_fail(&["4.2"], Errno::IO));
        let new_root = image.0.join("root");
        let (outcomes, ended) = boot_from(&image, "root=nfs4:10.0.2.9:/img", &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        let calls = sys.calls();
        assert_eq!(nfs_versions(&calls), ["vers=4.2", "umount", "vers=4.1"]);
        assert!(calls.contains(&Call::Umount(new_root.clone())));
        let reads = calls.iter().filter(|c| **c == Call::Read(new_root.join("sbin/init"))).count();
        assert_eq!(reads, 2, "checked with each version");
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        assert_eq!(root.status, Status::Ok);
        assert!(root.detail.contains("vers=4.1") && root.detail.contains("of /sbin/init"), "{}", root.detail);
        let mounted = read_report(&new_root).nfs_root.unwrap();
        assert_eq!((mounted.version.as_str(), mounted.init.as_str(), mounted.init_bytes), ("4.1", "/sbin/init", 10));
        let reason = format!("read {}: input/output error (os error 5)", new_root.join("sbin/init").display());
        assert_eq!(mounted.dropped, [Dropped { version: "4.2".into(), reason }]);
    }

    #[test]
    fn a_version_the_server_refuses_is_named_in_the_report_too() {
        let refused = Errno::PROTONOSUPPORT.raw_os_error();
        let (image, sys) = initramfs("refused-4.2", move |c| {
            matches!(c, Call::Mount { data, .. } if data.starts_with("vers=4.2")).then_some(refused)
        });
        let (outcomes, ended) = boot_from(&image, "root=nfs4:10.0.2.9:/img", &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        let mounted = read_report(&image.0.join("root")).nfs_root.unwrap();
        assert_eq!(mounted.version, "4.1");
        assert_eq!(mounted.dropped.len(), 1);
        assert!(mounted.dropped[0].reason.starts_with("mount: protocol not supported"), "{mounted:?}");
    }

    #[test]
    fn an_explicit_nfsv4_2_steps_down_to_4_0_when_4_1_gives_eio_too() {
        let (image, sys) = initramfs("eio-4.1", reads_fail(&["4.2", "4.1"], Errno::IO));
        let (outcomes, ended) = boot_from(&image, "nfsroot=10.0.2.9:/img,vers=4.2", &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "{outcomes:#?}");
        assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2", "umount", "vers=4.1", "umount", "vers=4.0"]);
        let mounted = read_report(&image.0.join("root")).nfs_root.unwrap();
        assert_eq!(mounted.version, "4.0");
        assert!(mounted.options.starts_with("vers=4.0,addr=10.0.2.9"), "{}", mounted.options);
        let dropped: Vec<&str> = mounted.dropped.iter().map(|d| d.version.as_str()).collect();
        assert_eq!(dropped, ["4.2", "4.1"]);
    }

    /// The failed root step of a boot that must end in the policy before anything moved.
    fn failed_before_the_switch(outcomes: &[Outcome], sys: &Fake, ended: Option<&str>) -> Failure {
        assert_eq!(ended, Some("fake reboot"), "{outcomes:#?}");
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::MoveMount(..) | Call::SwitchRoot(_))), "{calls:#?}");
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        assert_eq!(root.status, Status::Failed);
        root.error.clone().unwrap()
    }

    #[test]
    fn a_root_unreadable_with_every_nfsv4_minor_version_ends_in_the_policy_before_the_switch() {
        let (image, sys) = initramfs("eio-all", reads_fail(&["4.2", "4.1", "4.0"], Errno::IO));
        let cmdline = "root=nfs4:10.0.2.9:/img stateless.emergency=shell";
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
        assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2", "umount", "vers=4.1", "umount", "vers=4.0"]);
        assert_eq!((error.op, error.errno), (Op::Read, Some(Errno::IO.raw_os_error())));
        assert!(error.message.contains("10.0.2.9:/img mounted with NFSv4.0"), "{error}");
        assert!(error.message.contains("; NFSv4.2 dropped: read ") && error.message.contains("; NFSv4.1 dropped"));
        // The shell runs in the initramfs, the root left mounted at /root to look at.
        assert!(sys.calls().contains(&Call::Shell("/bin/sh".into())));
    }

    #[test]
    fn a_step_down_with_no_time_left_gives_up_saying_why() {
        // The read of 4.2 takes the whole bound: 4.1 gets no try, and the give-up says why
        // rather than "no mount attempt".
        let eio = reads_fail(&["4.2"], Errno::IO);
        let (image, sys) = initramfs("eio-late", move |c| {
            if matches!(c, Call::Read(_)) {
                std::thread::sleep(Duration::from_millis(1100));
            }
            eio(c)
        });
        let cmdline = "root=nfs4:10.0.2.9:/img stateless.nfs.timeout=1";
        let (outcomes, ended) = boot_from(&image, cmdline, &sys, Mode::Boot, true);
        let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
        assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2", "umount"]);
        assert_eq!(error.op, Op::Mount);
        assert!(error.message.contains("gave up after 1 tries"), "{error}");
        assert!(error.message.contains(": no time left to mount again; NFSv4.2 dropped: read "), "{error}");
        assert!(error.message.ends_with("input/output error (os error 5)"), "{error}");
    }

    #[test]
    fn a_root_check_failing_otherwise_ends_in_the_policy_without_a_step_down() {
        // Not EIO: no other version would read it.
        let (image, sys) = initramfs("eacces", reads_fail(&["4.2"], Errno::ACCESS));
        let (outcomes, ended) = boot_from(&image, "root=nfs4:10.0.2.9:/img", &sys, Mode::Boot, true);
        let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
        assert_eq!(nfs_versions(&sys.calls()), ["vers=4.2"]);
        assert_eq!(error.errno, Some(Errno::ACCESS.raw_os_error()));
        // NFSv3 is never changed, EIO or not.
        let (image, sys) = initramfs("eio-v3", reads_fail(&["3"], Errno::IO));
        let (outcomes, ended) = boot_from(&image, "nfsroot=10.0.2.9:/img,vers=3", &sys, Mode::Boot, true);
        let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
        assert_eq!(nfs_versions(&sys.calls()), ["vers=3"]);
        assert_eq!(error.errno, Some(Errno::IO.raw_os_error()));
        // No init in the new root: nothing to read.
        let (image, sys) = initramfs("no-init", |_| None);
        std::fs::remove_file(image.0.join("root/sbin/init")).unwrap();
        let (outcomes, ended) = boot_from(&image, "nfsroot=10.0.2.9:/img", &sys, Mode::Boot, true);
        let error = failed_before_the_switch(&outcomes, &sys, ended.as_deref());
        assert!(error.message.starts_with("no init in the new root: none of /sbin/init, /etc/init"), "{error}");
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::Read(_))));
        // No layer root: no layers, as on-root; the boot goes on.
        let (image, sys) = initramfs("no-layers", |_| None);
        std::fs::remove_dir_all(image.0.join("root/diskless")).unwrap();
        let (outcomes, _) = boot_from(&image, "nfsroot=10.0.2.9:/img", &sys, Mode::Boot, true);
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        assert_eq!(root.status, Status::Ok, "{root:?}");
        assert!(sys.calls().iter().any(|c| matches!(c, Call::SwitchRoot(_))));
    }

    #[test]
    fn an_initramfs_without_a_root_to_find_says_why() {
        let (image, sys) = initramfs("no-root", |_| None);
        let (outcomes, ended) = boot_from(&image, "stateless.emergency=poweroff", &sys, Mode::Boot, true);
        assert_eq!(ended.as_deref(), Some("fake reboot"));
        assert!(sys.calls().contains(&Call::Reboot { poweroff: true }));
        let root = outcomes.iter().find(|o| matches!(o.step, Step::NfsRoot { .. })).unwrap();
        assert_eq!(root.status, Status::Failed);
        let message = &root.error.as_ref().unwrap().message;
        assert!(message.contains("no root-path from DHCP"), "{message}");
    }

    #[test]
    fn a_registered_overlayfs_plans_no_module() {
        let image = Image::new("registered");
        let sys = fake(|_| None);
        let (outcomes, _) = boot(&image, "", &sys, Mode::Boot);
        assert!(!outcomes.iter().any(|o| o.phase == Phase::Hardware), "{outcomes:#?}");
    }

    #[test]
    fn the_report_reads_back() {
        let image = Image::new("report");
        let sys = fake(|_| None);
        boot(&image, "stateless.frobnicate=1", &sys, Mode::Boot);
        let text = std::fs::read_to_string(image.0.join("run/stateless/report.json")).unwrap();
        let report: crate::boot::report::Report = serde_json::from_str(&text).unwrap();
        assert_eq!(report.format, crate::boot::report::FORMAT);
        assert_eq!(report.hostname.unwrap().short, "lab3-12");
        assert_eq!(report.init.as_deref(), Some("/sbin/init"));
        assert!(!report.steps.iter().any(|o| o.phase == Phase::Report), "written before its own outcome");
        let phases: Vec<Phase> = report.steps.iter().map(|o| o.phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "phases in order: {phases:?}");
        assert!(report.diagnostics.iter().any(|d| d.key == "stateless.frobnicate"));
        // A report from before the steps' own time and the NFS waits were counted still reads.
        let mut older: serde_json::Value = serde_json::from_str(&text).unwrap();
        older["steps"].as_array_mut().unwrap().iter_mut().for_each(|o| {
            o.as_object_mut().unwrap().remove("own_ms");
        });
        older["blocked"].as_object_mut().unwrap().remove("nfs_ms");
        let read: crate::boot::report::Report = serde_json::from_value(older).unwrap();
        assert!(read.steps.iter().all(|o| o.own_ms == 0) && read.blocked.nfs_ms == 0);
    }
}
