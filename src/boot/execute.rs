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
use crate::fs::mounts::{self, EarlyMount, OVERLAYFS_MAGIC, TMPFS_MAGIC, UPPER_TMPFS_FLAGS, WRITABLE_DIR_FLAGS};
use crate::fs::netconf::{self, Resolver};
use crate::fs::nfs::RpcStat;
use crate::fs::root::{ImageDir, ImageRoot};
use crate::fs::tree;
use crate::kmod::coldplug::{self, Planned, State};
use crate::kmod::load::{self, load_plan, LoadOutcome, Loaded, MAX_THREADS};
use crate::kmod::Kernel;
use crate::model::facts::Facts;
use crate::model::interface::Interface;
use crate::model::ipv4::Ipv4Net;
use crate::model::layer::LayerKind;
use crate::model::lease::{Dhcp, Exchange, Lease};
use crate::model::mount::EARLY_MOUNTS;
use crate::model::nfsroot::{self, Dropped, Mounted, NfsMount};
use crate::model::options::{ClientId, Diagnostic, Emergency, Options, OverlayMode};
use crate::model::outcome::{Failure, LayerResult, Mode, Op, Outcome, Status};
use crate::model::paths::RW_BASE;
use crate::model::step::{Pass, Phase, Step};
use crate::model::writable::DirState;
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
    /// What each writable dir keeps open for the layers; their states are the facts'.
    opened: Vec<(String, Opened)>,
}

/// The versions given up on the way, for a failure's message: `; NFSv4.2 dropped: <why>`...
fn said_dropped(dropped: &[Dropped]) -> String {
    dropped.iter().map(|d| format!("; NFSv{} dropped: {}", d.version, d.reason)).collect()
}

/// What the check of a root just mounted decided.
enum RootVerdict {
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

/// What a writable dir keeps open: the overlay's upper dir while the overlay is to be mounted
/// ([`DirState::Prepared`]), or copy mode's tmpfs ([`DirState::Copy`]).
enum Opened {
    Upper(Box<Pending>),
    Tmpfs(ImageDir),
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
            layers: Vec::new(),
            degraded: false,
            nfs_before: None,
            nfs_waited_from: None,
            kernels: [None, None],
            modules: Vec::new(),
            nfs_root: None,
            opened: Vec::new(),
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
        let failure = (status == Status::Failed).then(|| error.clone()).flatten();
        let outcome = Outcome { phase: step.phase(), step: step.clone(), status, detail, error, ms, at_ms, own_ms };
        self.outcomes.push(outcome);
        if let Some(failure) = failure {
            self.failed(step, &failure);
        }
    }

    fn step(&mut self, step: &Step) -> Result<Done, Failure> {
        if let Some(why) = step.pid1_only().filter(|_| self.mode == Mode::Apply) {
            return Ok(Done::skipped(why));
        }
        match step {
            Step::Mount { mount } => self.mount_early(mount),
            Step::Module { name, .. } => self.load_module(name),
            Step::Coldplug { pass, modules, .. } => self.coldplug(*pass, modules),
            Step::Dhcp { interface, exchange, meanwhile } => self.run_dhcp(interface.as_deref(), *exchange, meanwhile),
            Step::Address { interface, address, gateway } => {
                self.configure_address(interface.as_deref(), *address, *gateway)
            }
            Step::Hostname { hostname, .. } => self.set_hostname(hostname.as_ref()),
            Step::NfsRoot { root } => self.mount_nfs_root(root),
            Step::SwitchRoot { new_root } => self.switch_root(new_root),
            Step::WritableDir { dir, mode, tmpfs_size } => {
                let result = self.make_writable(dir, *mode, tmpfs_size.as_deref());
                if result.is_err() {
                    self.facts.writable.set(dir, DirState::ReadOnly);
                }
                result
            }
            Step::Overlay { dir } => self.mount_overlay(dir),
            Step::Scratch { label } => self.mount_scratch(label),
            Step::Swap { wanted } => self.enable_swap(wanted),
            Step::Layer { kind, name } => Ok(self.apply_layer(*kind, name)),
            Step::HostFiles { fqdn, short, files } => self.write_host_files(fqdn, short, files),
            Step::NetworkFiles { interface } => self.write_network_files(interface),
            Step::Report { path } => self.write_report(path),
            Step::Handoff { init, fallbacks } => self.hand_off(init.as_deref(), fallbacks),
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

    fn mount_early(&mut self, mount: &EarlyMount) -> Result<Done, Failure> {
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
    fn load_module(&mut self, name: &str) -> Result<Done, Failure> {
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

    /// Brings the boot interface up and gets a lease (DISCOVER: the address and default route
    /// too; with no interface named, on every one at once) or, for an interface with an
    /// address, asks for its configuration (INFORM).
    fn run_dhcp(&mut self, interface: Option<&str>, exchange: Exchange, meanwhile: &[String]) -> Result<Done, Failure> {
        self.facts.dhcp_done = true;
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
    fn configure_address(
        &mut self,
        interface: Option<&str>,
        address: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Done, Failure> {
        self.facts.address_done = true;
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

    fn set_hostname(&mut self, hostname: Option<&crate::model::hostname::Hostname>) -> Result<Done, Failure> {
        let Some(h) = hostname else { return Ok(Done::skipped("no valid hostname from any source")) };
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

    /// Mounts the NFS root on /root of the initramfs: mount(2) with text options, each version
    /// of [`NfsMount::versions`] in order, its module loaded before its first try (the kernel's
    /// request_module would need a modprobe); all again with backoff (1 s doubling to 8 s, plus
    /// up to 1 s of jitter so that a lab's clients spread out) until `stateless.nfs.timeout=`. Each root
    /// mounted is checked ([`rootcheck`]); one that gives EIO with NFSv4.2 or 4.1 is unmounted
    /// and mounted again with the next older minor version.
    fn mount_nfs_root(&mut self, root: &Result<NfsMount, String>) -> Result<Done, Failure> {
        // The command line's words are in `why` as given.
        let mount =
            root.as_ref().map_err(|why| Failure::new(Op::Mount, None, crate::model::text::escape(why.as_bytes())))?;
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
                    if let Err(e) = self.load_module(module) {
                        log::warn!("{module} for the NFS root: {e}; mounting all the same (built in?)");
                    }
                }
                tries += 1;
                let (fstype, data) = mount.attempt(version, client);
                let call = MountCall { source: &mount.source(), target: &dir.path, fstype, flags, data: &data };
                let e = match self.sys.mount_bounded(&call, left) {
                    Ok(()) => match self.check_root(mount, &dir.path, version, &data, &mut dropped)? {
                        RootVerdict::Booting(read) => {
                            let ms = started.elapsed().as_millis();
                            return Ok(Done::ok(format!(
                                "mounted as {fstype} {data} ({tries} tries, {ms} ms); {read}"
                            )));
                        }
                        RootVerdict::SteppedDown(older) => {
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
    ) -> Result<RootVerdict, Failure> {
        let image = ImageRoot::open(dir).map_err(|e| Failure::io(Op::Open, Some(dir), &e))?;
        let failure = match rootcheck::check(self.sys, &image, &self.cmdline) {
            Ok(checked) => {
                let read =
                    format!("read {} bytes of {}", checked.bytes, crate::model::text::escape(checked.init.as_bytes()));
                let (version, options, dropped) = (version.to_string(), data.to_string(), std::mem::take(dropped));
                let (init, init_bytes) = (checked.init, checked.bytes as u64);
                self.nfs_root = Some(Mounted { version, options, init, init_bytes, dropped });
                return Ok(RootVerdict::Booting(read));
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
        Ok(RootVerdict::SteppedDown(older))
    }

    /// Leaves the initramfs for the NFS root: the early mounts (/dev, /proc, /sys, /run, /tmp)
    /// move into it, the initramfs is emptied, the new root becomes / and both roots are it:
    /// the rest of the boot is that of on-root mode, with the image's /etc/stateless.conf.
    fn switch_root(&mut self, new_root: &str) -> Result<Done, Failure> {
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
            if let Err(e) = self.mount_early(&m) {
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

    /// Makes `dir` writable: in overlay mode a tmpfs with the upper and work dirs, the overlay
    /// itself mounted after the layers are in the upper dir ([`Step::Overlay`]); in copy mode
    /// (or when that tmpfs cannot be had) a tmpfs on the dir with a copy of the image dir.
    fn make_writable(&mut self, dir: &str, mode: OverlayMode, size: Option<&str>) -> Result<Done, Failure> {
        let lower = self.target.dir(dir).map_err(|e| self.io(Op::Open, &self.target, dir, &e))?;
        let st = rustix::fs::fstat(&lower.fd).map_err(|e| Failure::io(Op::Open, Some(&lower.path), &e.into()))?;
        let writable = Writable { dir: dir.into(), lower, st, size: size.map(str::to_string) };
        let mut why_copy = (mode == OverlayMode::Copy && self.options.mode == OverlayMode::Overlay)
            .then(|| Failure::new(Op::Mount, None, "overlayfs is not available"));
        if mode == OverlayMode::Overlay {
            match self.prepare_overlay(dir, &st, size) {
                Ok((rw, upper, work)) => {
                    self.opened.push((dir.into(), Opened::Upper(Box::new(Pending { writable, rw, upper, work }))));
                    self.facts.writable.set(dir, DirState::Prepared);
                    let detail = match self.facts.writable.scratch() {
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
        let on_scratch = self.facts.writable.scratch().map(str::to_owned);
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
                    self.unmount(&self.target.host_path(&rw_rel));
                }
                Err(e)
            }
        }
    }

    /// The overlay on `dir`, its upper dir filled by the layers: the image dir below, every path
    /// checked. When overlayfs refuses, copy mode: a tmpfs on the dir with the image dir's copy
    /// and the upper dir's on top (a degraded step), the upper's tmpfs taken off again.
    fn mount_overlay(&mut self, dir: &str) -> Result<Done, Failure> {
        let i = self.opened.iter().position(|(d, o)| d == dir && matches!(o, Opened::Upper(_)));
        let Some((_, Opened::Upper(p))) = i.map(|i| self.opened.remove(i)) else {
            return Ok(Done::skipped("no upper dir was prepared"));
        };
        let p = *p;
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
                self.facts.writable.set(dir, DirState::Overlay { mount });
                let marked = self.mark_extrinsic("overlay", dir);
                return Ok(Done::ok(format!("mounted: the image dir below, the layers in the upper dir{marked}")));
            }
            Err(why) => why,
        };
        log::warn!("/{dir}: overlayfs failed ({why}); falling back to copy mode");
        let copied = self.copy_mode(&p.writable, Some(&p.upper));
        drop(p.upper);
        if let Some(rw) = &p.rw {
            self.unmount(rw);
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
    pub(crate) fn unmount(&self, path: &Path) -> bool {
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
        let state = match result {
            Ok(_) => DirState::Copy { mount: self.sys.mount_key(&writable.lower.path) },
            Err(_) => DirState::ReadOnly,
        };
        self.facts.writable.set(&writable.dir, state);
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
                self.unmount(&lower.path);
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
            let off = if self.unmount(&path) { "taken off again" } else { "left mounted: it could not be taken off" };
            let count = copied.errors.iter().filter(|e| e.is_loss()).count();
            let message = format!("{count} entries not copied, first {lost}; the tmpfs was {off}");
            return Err(Failure {
                errno: Some(lost.errno.raw_os_error()),
                ..Failure::new(Op::Copy, Some(&path), message)
            });
        }
        self.opened.push((dir.clone(), Opened::Tmpfs(fresh)));
        Ok(copied.written.len())
    }

    fn apply_layer(&mut self, kind: LayerKind, name: &str) -> Done {
        // Where the layers go: the upper dir of each overlay still to be mounted (over its image
        // dir), and each dir made writable otherwise.
        let uppers = self.opened.iter().filter_map(|(dir, opened)| match opened {
            Opened::Upper(p) => Some(tree::Target {
                path: Path::new(dir),
                dst: p.upper.fd.as_fd(),
                lower: Some(p.writable.lower.fd.as_fd()),
            }),
            Opened::Tmpfs(_) => None,
        });
        let copied = self.opened.iter().filter_map(|(dir, opened)| match opened {
            Opened::Tmpfs(fresh) => Some(tree::Target { path: Path::new(dir), dst: fresh.fd.as_fd(), lower: None }),
            Opened::Upper(_) => None,
        });
        let targets: Vec<tree::Target<'_>> = uppers.chain(copied).collect();
        let applied = match layers::open_root(self.target.fd(), &self.options.layers) {
            Ok(Some(layer_root)) => {
                layers::apply(layer_root.as_fd(), &targets, name, &self.facts.writable.dirs(), &mut self.provenance)
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

    fn write_host_files(&mut self, fqdn: &str, short: &str, files: &[String]) -> Result<Done, Failure> {
        let written = hostfiles::write(&self.target, fqdn, short, files)?;
        for file in &written {
            self.provenance.record(Path::new(file), "hostname", None);
        }
        Ok(Done::ok(format!("{short}, {fqdn} in {}", written.join(", "))))
    }

    /// The files that keep the boot interface under the image's network manager, and tell
    /// later stages the lease: our DHCP client's, else what the kernel's configuration gave.
    fn write_network_files(&mut self, name: &str) -> Result<Done, Failure> {
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
        let resolver = match (from_layer, facts.writable.contains("etc")) {
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

    fn write_report(&mut self, path: &str) -> Result<Done, Failure> {
        self.send_report();
        if !self.run_is_tmpfs()? {
            return Ok(Done::skipped("/run is not a tmpfs: no report written"));
        }
        report::write(self, Path::new(path))?;
        Ok(Done::ok(format!("written, {} ms since start", self.elapsed_ms())))
    }

    fn hand_off(&mut self, init: Option<&str>, fallbacks: &[String]) -> Result<Done, Failure> {
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
mod tests;
