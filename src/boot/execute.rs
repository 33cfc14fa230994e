//! Runs the boot phase by phase: probe what the phase needs to know, then [`plan::run_phase`]:
//! plan it, carry out each of its steps (one handler per kind of step, each returning what it
//! did and what it made known, or a typed [`Failure`]), learn from the results
//! (`Facts::learn`). The failure policy lives in [`Executor::failed`] alone, keyed on
//! `Step::fatal`: Firecracker's jailer stops at every step, virtme-ng-init logs and goes on;
//! here each kind of step is marked one or the other and decided in this one place.
//! Here: the executor, the phase loop and the failure policy. The handlers sit beside it by
//! what they do: `modules` (coldplug, a module), `network` (DHCP, an address, the host name),
//! `root` (the NFS root, the switch into it), `writable` (the writable dirs, their overlays),
//! `image` (layers, host and network files, the report, the handoff), `disks` (swap, scratch),
//! `logserver` (the log and report to a syslog server). The parts that own state have their
//! own types: `Modules` (in `modules`), `NfsClock` (in `nfsclock`).

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use crate::boot::report::Record;
use crate::boot::{handoff, plan};
use crate::fs::mounts::EarlyMount;
use crate::fs::root::ImageRoot;
use crate::kmod::load::Loaded;
use crate::model::facts::{Facts, Learned};
use crate::model::options::{Diagnostic, Emergency, Options};
use crate::model::outcome::{Failure, Mode, Op, Outcome, Status};
use crate::model::step::{Pass, Phase, Step};
use crate::sys::Sys;

use modules::Modules;
use nfsclock::NfsClock;
pub use nfsclock::NfsCost;
use writable::Opened;

mod disks;
mod image;
mod logserver;
mod modules;
mod nbd;
mod network;
mod nfsclock;
mod root;
mod verity;
mod writable;

/// What a step function reports when it did not fail.
#[cfg_attr(test, derive(Debug, PartialEq))]
pub(crate) struct Done {
    status: Status,
    detail: String,
    /// Why a degraded step is degraded.
    error: Option<Failure>,
    /// What it made known to the phases after it.
    learned: Vec<Learned>,
}

impl Done {
    pub(crate) fn ok(detail: impl Into<String>) -> Self {
        Self { status: Status::Ok, detail: detail.into(), error: None, learned: Vec::new() }
    }

    pub(crate) fn skipped(detail: impl Into<String>) -> Self {
        Self { status: Status::Skipped, detail: detail.into(), error: None, learned: Vec::new() }
    }

    pub(crate) fn degraded(detail: impl Into<String>, error: Failure) -> Self {
        Self { status: Status::Degraded, detail: detail.into(), error: Some(error), learned: Vec::new() }
    }

    /// With what the step made known.
    pub(crate) fn learned(mut self, learned: impl IntoIterator<Item = Learned>) -> Self {
        self.learned.extend(learned);
        self
    }
}

/// A step that failed, and what it made known all the same besides [`Step::known_if_failed`].
pub(crate) struct Failed {
    failure: Failure,
    learned: Vec<Learned>,
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Self {
        Self { failure, learned: Vec::new() }
    }
}

/// The udev daemons of systemd and eudev: an image with one coldplugs its devices itself.
pub const UDEV_DAEMONS: [&str; 4] =
    ["/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd", "/sbin/udevd", "/usr/sbin/udevd"];

/// Runs the phases against two roots through a [`Sys`], collecting outcomes for the report.
pub struct Executor<'a> {
    sys: &'a dyn Sys,
    /// The root `stateless` runs in: the early mounts, the modules.
    running: ImageRoot,
    /// The image the client boots: writable dirs, layers, host files, report, init.
    target: ImageRoot,
    mode: Mode,
    options: Options,
    diagnostics: Vec<Diagnostic>,
    /// What is known so far; grows as phases run.
    facts: Facts,
    /// The kernel command line, read again with the image's /etc/stateless.conf after a
    /// switch out of the initramfs.
    cmdline: Vec<u8>,
    /// Arguments the kernel gave us, passed on to init.
    init_args: Vec<OsString>,
    started: Instant,
    /// What the boot did, for the report.
    record: Record,
    /// What the boot cost on the server of an NFS target root.
    nfs: NfsClock,
    /// The module indexes and what was done with each module.
    modules: Modules,
    /// What each writable dir keeps open for the layers; their states are the facts'.
    opened: Vec<(crate::model::writable::DirName, Opened)>,
    /// The keys the running root trusts, read once: in initramfs mode from the initramfs, at
    /// the latest just before the switch empties it and makes the server's root the running
    /// one (the layers are applied after it).
    trusted: std::cell::OnceCell<Result<Option<Vec<crate::model::sign::TrustedKey>>, String>>,
    /// The NFS tries' dirs made so far (`TRIES/<n>`): each try of the boot gets one no other
    /// try used, whichever root or export it mounts.
    try_dirs: u32,
}

/// What an [`Executor`] starts from: at boot the defaults until the early mounts give /proc
/// (then [`Executor::read_command_line`]), for `apply` what its command line gave.
pub struct Context<'a> {
    pub sys: &'a dyn Sys,
    /// The root `stateless` runs in.
    pub running: ImageRoot,
    /// The image the client boots.
    pub target: ImageRoot,
    pub mode: Mode,
    pub options: Options,
    pub diagnostics: Vec<Diagnostic>,
    pub facts: Facts,
    /// Arguments the kernel gave us, passed on to init.
    pub init_args: Vec<OsString>,
    pub started: Instant,
}

impl<'a> Context<'a> {
    /// The defaults: no options given, nothing known, started now.
    pub fn new(sys: &'a dyn Sys, running: ImageRoot, target: ImageRoot, mode: Mode) -> Self {
        Self {
            sys,
            running,
            target,
            mode,
            options: Options::default(),
            diagnostics: Vec::new(),
            facts: Facts::default(),
            init_args: Vec::new(),
            started: Instant::now(),
        }
    }
}

impl<'a> Executor<'a> {
    pub fn new(context: Context<'a>) -> Self {
        let Context { sys, running, target, mode, options, diagnostics, facts, init_args, started } = context;
        Self {
            sys,
            running,
            target,
            mode,
            options,
            diagnostics,
            facts,
            cmdline: Vec::new(),
            init_args,
            started,
            record: Record::default(),
            nfs: NfsClock::default(),
            modules: Modules::default(),
            opened: Vec::new(),
            trusted: std::cell::OnceCell::new(),
            try_dirs: 0,
        }
    }

    /// PID 1, once the early mounts gave /proc: the options of the kernel command line over the
    /// image's stateless.conf (`boot::adopt_options`), and whether the image is still to
    /// be found on NFS (initramfs mode) or is / already (on-root mode).
    pub fn read_command_line(&mut self) {
        let cmdline = self.sys.proc_file("cmdline").unwrap_or_else(|e| {
            log::error!("read /proc/cmdline: {e}");
            Vec::new()
        });
        let (options, diagnostics) = crate::boot::adopt_options(&cmdline, &self.target);
        let initramfs = crate::boot::initramfs_mode(&self.target, options.init.as_deref());
        log::info!("{} mode", if initramfs { "initramfs" } else { "on-root" });
        (self.options, self.diagnostics, self.cmdline) = (options, diagnostics, cmdline);
        self.facts.initramfs = initramfs;
        // On-root mode: the kernel mounted the root and read this binary from it; the boot's
        // own waits on it count from here. Initramfs mode counts from the switch into the NFS root.
        if !initramfs {
            self.nfs.start(self.sys, self.target.path());
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
        let ran = plan::run_phase(phase, self);
        if matches!(phase, Phase::Hardware | Phase::Network) {
            self.start_log_server(phase == Phase::Network);
        }
        // The time waited on the server of an NFS root counts from its switch into it.
        if ran.iter().any(|s| matches!(s, Step::SwitchRoot { .. })) {
            self.nfs.start(self.sys, self.target.path());
        }
        // At boot every RPC on the root is the boot's: counting from its mount saves reading
        // mountstats twice (8 ms under TCG). `apply` runs on a live system: count from here.
        if phase == Phase::EarlyMounts && self.mode == Mode::Apply {
            self.nfs.start_with_rpcs(self.sys, self.target.path());
        }
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

    fn run_step(&mut self, step: &Step) {
        if let Step::Hostname { rejected, .. } = step {
            rejected.iter().for_each(|r| log::warn!("{r}"));
        }
        let nfs_before = self.nfs.before_step(step, self.sys, self.target.path());
        let (started, waited, at_ms) = (Instant::now(), crate::sys::blocked::any(), self.elapsed_ms());
        let result = self.step(step);
        let (elapsed, waited) = (started.elapsed(), crate::sys::blocked::any().saturating_sub(waited));
        self.nfs.after_step(nfs_before, self.sys, self.target.path());
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (ms, own_ms) = (millis(elapsed), millis(elapsed.saturating_sub(waited)));
        let (status, detail, error, learned) = match result {
            Ok(done) => (done.status, done.detail, done.error, done.learned),
            Err(Failed { failure, learned }) => {
                (Status::Failed, String::new(), Some(failure), [step.known_if_failed(), learned].concat())
            }
        };
        let why = error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        match status {
            Status::Failed => log::error!("{step}: failed{why}"),
            Status::Degraded => log::warn!("{step}: {detail}{why}"),
            _ => log::info!("{step}: {detail}"),
        }
        self.facts.learn(learned);
        if matches!(step, Step::Hostname { .. }) {
            self.tell_log_server_who();
        }
        let failure = (status == Status::Failed).then(|| error.clone()).flatten();
        let outcome = Outcome { phase: step.phase(), step: step.clone(), status, detail, error, ms, at_ms, own_ms };
        self.record.outcomes.push(outcome);
        if let Some(failure) = failure {
            self.failed(step, &failure);
        }
    }

    fn step(&mut self, step: &Step) -> Result<Done, Failed> {
        if let Some(why) = step.pid1_only().filter(|_| self.mode == Mode::Apply) {
            // What the running system's boot made of it, as the dry run assumes; no scratch
            // disk is mounted for the upper dirs to go on.
            let assumed = match step {
                Step::Scratch { .. } => Vec::new(),
                _ => plan::assumed(step, &self.facts),
            };
            return Ok(Done::skipped(why).learned(assumed));
        }
        let done = match step {
            Step::Mount { mount } => self.mount_early(mount),
            Step::Module { name, .. } => self.load_module(name),
            Step::Coldplug { pass, modules, .. } => self.coldplug(*pass, modules),
            Step::Dhcp { interface, exchange, meanwhile } => self.run_dhcp(interface.as_deref(), *exchange, meanwhile),
            Step::Address { interface, address, gateway } => {
                self.configure_address(interface.as_deref(), *address, *gateway)
            }
            Step::Hostname { hostname, .. } => self.set_hostname(hostname.as_ref()),
            Step::NfsRoot { root } => self.mount_nfs_root(root),
            Step::ImageRoot { export, file, ram, root_hash } => {
                self.mount_image_root(export, file, *ram, root_hash.as_deref())
            }
            Step::NbdRoot { root, root_hash } => self.mount_nbd_root(root, root_hash.as_deref()),
            Step::UnmountExport => self.unmount_export(),
            Step::SwitchRoot { new_root } => self.switch_root(new_root),
            Step::WritableDir { dir, mode, tmpfs_size } => self.make_writable(dir, *mode, tmpfs_size.as_deref()),
            Step::Overlay { dir } => self.mount_overlay(dir),
            Step::Scratch { label } => self.mount_scratch(label),
            Step::Swap { wanted } => self.enable_swap(wanted),
            Step::Layer { kind, name } => Ok(self.apply_layer(*kind, name)),
            Step::HostFiles { fqdn, short, files } => self.write_host_files(fqdn, short, files),
            Step::NetworkFiles { interface } => return self.write_network_files(interface),
            Step::Report { path } => self.write_report(path),
            Step::Handoff { init, fallbacks } => self.hand_off(init.as_deref(), fallbacks),
        };
        Ok(done?)
    }

    /// The failure policy: degradable steps are logged only; a fatal one goes by `stateless.emergency`.
    fn failed(&mut self, step: &Step, error: &Failure) {
        if !step.fatal() {
            return;
        }
        self.record.degraded = true;
        if self.mode == Mode::Apply {
            return;
        }
        if matches!(
            step,
            Step::Handoff { .. }
                | Step::NfsRoot { .. }
                | Step::ImageRoot { .. }
                | Step::NbdRoot { .. }
                | Step::SwitchRoot { .. }
        ) {
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

    /// The image the client boots.
    pub fn target(&self) -> &ImageRoot {
        &self.target
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// What is known so far.
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// What the boot did so far.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// What the hardware and devices phases did with each module.
    pub fn modules(&self) -> &[Loaded] {
        self.modules.loaded()
    }

    /// What the boot cost on the server of an NFS target root so far.
    pub fn nfs_cost(&self) -> NfsCost {
        self.nfs.cost(self.sys, self.target.path())
    }

    /// Milliseconds since `started`.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The boot's steps run for real, each handler's findings learned.
impl plan::Runner for Executor<'_> {
    fn planning(&self) -> (&Options, &Facts, &ImageRoot) {
        (&self.options, &self.facts, &self.target)
    }

    fn run(&mut self, step: &Step) {
        self.run_step(step);
    }
}

#[cfg(test)]
mod tests;
