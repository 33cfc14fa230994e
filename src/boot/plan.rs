//! Planning: each phase into typed steps, from the options and the facts known when the phase
//! starts. One loop ([`run_phase`]) serves the boot and `stateless plan`: it plans a phase, has
//! each step run, and plans again with what the steps made known. The boot's executor runs them
//! for real and learns what each handler found; the dry run ([`dry_run`]) learns each step's
//! assumed effect ([`assumed`]). Both learn through `Facts::learn` alone, so the plan cannot
//! drift from the boot (`execute/tests/plan_equals_boot.rs` checks it mode by mode). The plan as
//! data is what none of ../shared/STYLE.md's anchors has.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;

use crate::boot::handoff;
use crate::config::nfsroot;
use crate::fs::hostfiles;
use crate::fs::layers::{self, Layer};
use crate::fs::root::ImageRoot;
use crate::model::facts::{Facts, Learned};
use crate::model::hostname::{self, Candidate, Source};
use crate::model::image::RootSource;
use crate::model::ipv4::{self, Ipv4Net};
use crate::model::lease::{Dhcp, Exchange, Lease};
use crate::model::mount::EARLY_MOUNTS;
use crate::model::nfsroot::NfsMount;
use crate::model::options::{Diagnostic, IpParam, Options, OverlayMode};
use crate::model::paths::{REPORT, REPORT_DIR};
use crate::model::step::{Pass, Phase, Step};
use crate::model::text::escape_path;
use crate::model::writable::{DirName, DirState};

/// Where initramfs mode mounts the NFS root, relative to the initramfs.
pub const NEW_ROOT: &str = "root";

/// How long removing earlier boots' files from the scratch disk may take.
pub const SCRATCH_CLEAN_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// Plans one phase from what is known now. Reads the target image (whether `/etc/conf.d`
/// exists, which init exists) but changes nothing.
pub fn phase(phase: Phase, options: &Options, facts: &Facts, target: &ImageRoot) -> Vec<Step> {
    match phase {
        Phase::EarlyMounts => EARLY_MOUNTS.iter().map(|m| Step::Mount { mount: *m }).collect(),
        Phase::Hardware => {
            let mut steps: Vec<Step> =
                coldplug(Pass::Early, facts).into_iter().filter(|_| early_coldplug(options, facts)).collect();
            for name in &options.modules.extra {
                steps.push(Step::Module { name: name.clone(), needed_for: "stateless.modules=".into() });
            }
            if wants_overlayfs(options) && facts.overlayfs != Some(true) {
                let dirs: Vec<String> = options.dirs.iter().map(|d| format!("/{d}")).collect();
                let needed_for = format!("overlayfs on {}", dirs.join(", "));
                steps.push(Step::Module { name: "overlay".into(), needed_for });
            }
            steps
        }
        // On-root mode: the kernel mounted the root. Initramfs mode: the NFS root, then into it.
        Phase::Root if facts.initramfs => {
            let lease = facts.dhcp.as_ref().map(|d| &d.lease);
            let root = nfsroot::resolve_root(options, lease, facts.address.map(|a| a.addr), facts.hostname.as_ref());
            // Several servers: in the order this client tries them, by its MAC.
            let mount = match root {
                Ok(RootSource::Tree(_)) if options.root_hash.is_some() => Step::NfsRoot {
                    root: Err("roothash= asks for a verified root, and a tree cannot be verified: an image root \
                               (stateless.image= or root=live:) can"
                        .into()),
                },
                Ok(RootSource::Tree(mount)) => Step::NfsRoot { root: Ok(mount.ordered_for(facts.mac)) },
                Ok(RootSource::Image { export, file }) => Step::ImageRoot {
                    export: export.ordered_for(facts.mac),
                    file,
                    ram: options.image_ram,
                    root_hash: options.root_hash.clone(),
                },
                Ok(RootSource::Nbd(root)) => {
                    Step::NbdRoot { root: root.ordered_for(facts.mac), root_hash: options.root_hash.clone() }
                }
                Err(why) => Step::NfsRoot { root: Err(why) },
            };
            vec![mount, Step::SwitchRoot { new_root: NEW_ROOT.into() }]
        }
        Phase::Root => Vec::new(),
        Phase::Network => match network_step(options, facts) {
            Some(step) => vec![step],
            None => vec![hostname_step(options, facts)],
        },
        Phase::WritableDirs => {
            // Without overlayfs (not registered, and the hardware phase could not load it), copy mode.
            let mode = if facts.overlayfs == Some(false) { OverlayMode::Copy } else { options.mode };
            let size = &options.tmpfs_size;
            // The scratch filesystem first: the overlays' upper dirs go on it.
            let scratch = options.scratch.clone().filter(|_| !options.dirs.is_empty());
            let scratch = scratch.map(|label| Step::Scratch { label });
            scratch
                .into_iter()
                .chain(options.dirs.iter().map(|dir| Step::WritableDir {
                    dir: dir.clone(),
                    mode,
                    tmpfs_size: size.clone(),
                }))
                .collect()
        }
        Phase::Layers => layers::candidates(facts.hostname.as_ref(), facts.address)
            .into_iter()
            .map(|(kind, name)| Step::Layer { kind, name })
            .chain(facts.writable.uppers().map(|dir| Step::Overlay { dir: dir.clone() }))
            .chain(facts.image_in_memory.then_some(Step::UnmountExport))
            .collect(),
        Phase::Devices => {
            let swap = options.swap.clone().map(|wanted| Step::Swap { wanted });
            coldplug(Pass::Late, facts).into_iter().chain(swap).collect()
        }
        Phase::HostFiles => {
            let host = match &facts.hostname {
                Some(h) if facts.writable.contains(&DirName::ETC) => {
                    Some(Step::HostFiles { fqdn: h.fqdn(), short: h.short.clone(), files: hostfiles::planned(target) })
                }
                _ => None,
            };
            // The root came over this interface: the real init must keep it.
            let network = match (&facts.interface, facts.address) {
                (Some(interface), Some(_)) => Some(Step::NetworkFiles { interface: interface.clone() }),
                _ => None,
            };
            host.into_iter().chain(network).collect()
        }
        Phase::Report => vec![Step::Report { path: format!("{REPORT_DIR}/{REPORT}") }],
        Phase::Handoff => {
            let (init, fallbacks) = init(options.init.as_deref(), target);
            vec![Step::Handoff { init, fallbacks }]
        }
    }
}

/// The init the handoff execs: the first of `stateless.init=` (`wanted`) and the kernel's
/// fallbacks that is an executable file in `target`, and the other candidates, in order.
pub fn init(wanted: Option<&str>, target: &ImageRoot) -> (Option<String>, Vec<String>) {
    let mut fallbacks = handoff::candidates(wanted);
    let init = fallbacks.iter().position(|c| target.executable(c)).map(|i| fallbacks.remove(i));
    (init, fallbacks)
}

/// The network step due, if any (at most one DHCP exchange per boot):
/// - the interface has an address: INFORM for the host name, unless one is known, the
///   kernel's own DHCP ran (it asked for the name already: the server has none to give) or
///   `stateless.dhcp.inform=no`;
/// - no address and a static `ip=` line (a bootloader that did DHCP hands its result over that
///   way): that address, no DHCP;
/// - no address otherwise: DISCOVER.
fn network_step(options: &Options, facts: &Facts) -> Option<Step> {
    let ip = options.ip.as_ref();
    let static_ip = ip.is_some_and(IpParam::is_static);
    let kernel_dhcp = ip.is_some() && !static_ip;
    if facts.dhcp_done {
        return None;
    }
    match facts.address {
        Some(_) => {
            let named = options.hostname.is_some()
                || ip.is_some_and(|ip| ip.hostname.is_some())
                || facts.kernel_hostname.as_deref().is_some_and(|n| !hostname::kernel_name_is_unset(n));
            (!named && !kernel_dhcp && options.dhcp_inform).then(|| Step::Dhcp {
                interface: facts.interface.clone(),
                exchange: Exchange::Inform,
                meanwhile: vec![],
            })
        }
        None if static_ip && facts.address_done => None,
        None if static_ip => {
            let ip = ip?;
            let client = ip.client?;
            let prefix = ip.netmask.and_then(|m| ipv4::prefix_of_mask(m).ok()).or(ipv4::classful_prefix(client))?;
            let address = Ipv4Net::new(client, prefix)?;
            Some(Step::Address { interface: ip.device.clone(), address, gateway: ip.gateway })
        }
        None => Some(Step::Dhcp {
            interface: ip.and_then(|ip| ip.device.clone()),
            exchange: Exchange::Discover,
            // The NFS client loads while the exchange waits on the network.
            meanwhile: facts.initramfs.then(|| nfsroot::module_hint(options).to_string()).into_iter().collect(),
        }),
    }
}

/// The coldplug probed, when it has modules to load.
fn coldplug(pass: Pass, facts: &Facts) -> Option<Step> {
    let devices = facts.devices?;
    (!facts.coldplug.is_empty()).then(|| Step::Coldplug { pass, devices, modules: facts.coldplug.clone() })
}

/// Whether the drivers come before the network: when the network phase is to configure an
/// interface (none has an address yet), its driver must be there; and for the local disks, the
/// disks' (`stateless.scratch=` needs them before the writable dirs, `stateless.swap=` where
/// udev would load them only after the handoff). Otherwise (on-root mode: the kernel mounted
/// the root over the network) coldplug waits for the layers, whose modprobe.d can then
/// blacklist a lab's odd sound card or set a NIC option.
pub fn early_coldplug(options: &Options, facts: &Facts) -> bool {
    (options.scratch.is_some() && !options.dirs.is_empty())
        || options.swap.is_some()
        || matches!(
            network_step(options, facts),
            Some(Step::Dhcp { exchange: Exchange::Discover, .. } | Step::Address { .. })
        )
}

/// The hostname: `stateless.hostname=`, the kernel's, our DHCP client's, else the fallback.
fn hostname_step(options: &Options, facts: &Facts) -> Step {
    let mut candidates = Vec::new();
    if let Some(name) = &options.hostname {
        candidates.push(Candidate { source: Source::Cmdline, name: name.clone() });
    }
    if let Some(name) = facts.kernel_hostname.as_ref().filter(|n| !hostname::kernel_name_is_unset(n)) {
        candidates.push(Candidate { source: Source::Kernel, name: name.trim().to_string() });
    }
    if let Some(name) = options.ip.as_ref().and_then(|ip| ip.hostname.clone()) {
        candidates.push(Candidate { source: Source::Ip, name });
    }
    let lease = facts.dhcp.as_ref().map(|d| &d.lease);
    if let Some(name) = lease.and_then(|l| l.hostname.clone()) {
        candidates.push(Candidate { source: Source::Dhcp, name });
    }
    let domain = facts.domain.as_deref().or(lease.and_then(|l| l.domain.as_deref()));
    let choice = hostname::choose(&candidates, &options.hostname_prefix, facts.address, domain);
    Step::Hostname { hostname: choice.hostname, rejected: choice.rejected }
}

/// A phase is planned at most this often: planning again after its steps ran picks up what
/// they made known (the network phase: the host name is chosen once DHCP has run).
pub const ROUNDS: usize = 4;

/// The steps of `phase` planned from the facts now, without those in `ran` (run already).
pub fn next_steps(phase: Phase, options: &Options, facts: &Facts, target: &ImageRoot, ran: &[Step]) -> Vec<Step> {
    self::phase(phase, options, facts, target).into_iter().filter(|s| !ran.contains(s)).collect()
}

/// What carries a phase's steps out: the boot's executor, or the dry run that assumes each did
/// its work. Both go through [`run_phase`], and learn only through [`Facts::learn`].
pub trait Runner {
    /// The options, the facts and the image the phase is planned from now.
    fn planning(&self) -> (&Options, &Facts, &ImageRoot);
    /// Carries out `step` and learns what it made known.
    fn run(&mut self, step: &Step);
}

/// The one loop of the boot and the dry run: plans `phase` from the facts now, runs each step,
/// and plans again with what they made known until nothing new is planned ([`ROUNDS`] at most).
/// The steps that ran, in order.
pub fn run_phase(phase: Phase, runner: &mut impl Runner) -> Vec<Step> {
    let mut ran = Vec::new();
    for _ in 0..ROUNDS {
        let (options, facts, target) = runner.planning();
        let fresh = next_steps(phase, options, facts, target, &ran);
        if fresh.is_empty() {
            break;
        }
        fresh.iter().for_each(|step| runner.run(step));
        ran.extend(fresh);
    }
    ran
}

/// Whether the writable dirs are to be overlays at all.
fn wants_overlayfs(options: &Options) -> bool {
    options.mode == OverlayMode::Overlay && !options.dirs.is_empty()
}

/// What a step that did its work is taken to have made known when nothing tells what it found:
/// the dry run's steps, and those `stateless apply` leaves to PID 1. The DHCP exchange brings
/// nothing here; the dry run knows the lease it was given ([`dry_run`]).
pub fn assumed(step: &Step, facts: &Facts) -> Vec<Learned> {
    match step {
        Step::Hostname { hostname, .. } => vec![Learned::Hostname(hostname.clone())],
        Step::Module { name, .. } => vec![Learned::Module(name.clone())],
        Step::Dhcp { .. } => vec![Learned::Dhcp(None)],
        Step::Scratch { .. } => vec![Learned::UppersOnScratch],
        Step::Address { interface, address, .. } => vec![
            Learned::StaticAddress,
            Learned::Link {
                interface: interface.clone().or(facts.interface.clone()),
                mac: facts.mac,
                address: Some(*address),
            },
        ],
        Step::WritableDir { dir, mode, .. } => {
            let made = match mode {
                OverlayMode::Overlay => DirState::Prepared,
                OverlayMode::Copy => DirState::Copy { mount: None },
            };
            vec![Learned::Dir(dir.clone(), made)]
        }
        Step::Overlay { dir } if facts.writable.state(dir) == Some(DirState::Prepared) => {
            vec![Learned::Dir(dir.clone(), DirState::Overlay { mount: None })]
        }
        Step::SwitchRoot { .. } => vec![Learned::SwitchedRoot],
        Step::ImageRoot { ram: true, .. } => vec![Learned::ImageInMemory],
        _ => Vec::new(),
    }
}

/// The whole boot as `stateless plan` shows it: every phase planned from the given facts, each
/// step assumed to do its work, and what each present layer would write.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub root: PathBuf,
    pub options: Options,
    pub diagnostics: Vec<Diagnostic>,
    /// The facts as given.
    pub facts: Facts,
    pub steps: Vec<Step>,
    /// What each layer of the layers phase holds.
    pub layers: Vec<Layer>,
    /// Initramfs mode: the mounts of the NFS root, as the root phase would make them.
    pub root_mounts: Vec<RootMount>,
}

/// One mount(2) of the NFS root (initramfs mode). They are tried in order, the next only when
/// the one before is refused, or the root check reads EIO with it; then the same on the next
/// server, when there are several.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RootMount {
    pub fstype: &'static str,
    /// `server:path`.
    pub source: String,
    pub target: String,
    /// The whole text option string mount(2) gets.
    pub data: String,
    /// `MS_RDONLY`: `ro` is a flag, not in `data`.
    pub read_only: bool,
}

impl RootMount {
    /// The mounts of `mount` in order, each server's in turn, from `client` (its address, for
    /// `clientaddr=`).
    fn of(mount: &NfsMount, client: Option<Ipv4Addr>) -> Vec<RootMount> {
        let servers = mount.servers().into_iter().map(|server| mount.on(server));
        servers
            .flat_map(|one| {
                let attempts = one.attempts(client).into_iter();
                attempts
                    .map(|(fstype, data)| RootMount {
                        fstype,
                        source: one.source(),
                        target: format!("/{NEW_ROOT}"),
                        data,
                        read_only: one.read_only,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// As mount(8) would be told it, escaped.
impl fmt::Display for RootMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { fstype, source, target, data, read_only } = self;
        let line =
            format!("mount -t {fstype} {source} {target} -o {data}{}", if *read_only { " (read-only)" } else { "" });
        f.write_str(&crate::model::text::escape(line.as_bytes()))
    }
}

/// Plans the whole boot against `target` without changing anything.
///
/// In initramfs mode (`facts.initramfs`) the client has no address until its DHCP exchange:
/// the address given is the one the lease brings, on the exchange's interface; and until the
/// switch into the image only `before_switch` holds (the command line's options: the image's
/// /etc/stateless.conf is read after the switch). The lease given (`facts.dhcp`) is known from
/// the plan's DHCP step on, DISCOVER or INFORM, as the boot records it; the NFS root's mounts
/// are worked out with the address known when the root phase is planned, as the boot mounts it.
pub fn dry_run(
    target: &ImageRoot,
    options: Options,
    diagnostics: Vec<Diagnostic>,
    facts: Facts,
    before_switch: Options,
) -> Plan {
    let given = facts.dhcp.clone();
    let mut known = facts.clone();
    known.dhcp = None;
    // In initramfs mode the address given is the lease's, known once the exchange ran.
    let leased = if known.initramfs { known.address.take() } else { None };
    let mut run = DryRun {
        target,
        options: &options,
        before_switch: &before_switch,
        known,
        given,
        leased,
        root_mounts: Vec::new(),
    };
    let steps = Phase::ALL.into_iter().flat_map(|p| run_phase(p, &mut run)).collect::<Vec<_>>();
    let (lease, root_mounts) = (run.given, run.root_mounts);
    let mut facts = facts;
    if lease.is_some_and(|d| d.lease != Lease { address: d.lease.address, ..Lease::default() }) {
        facts.notes.push("this boot runs no DHCP: the DHCP server's options given are not used".into());
    }
    let layer_root = layers::open_root(target.fd(), &options.layers).unwrap_or_else(|note| {
        facts.notes.push(note);
        None
    });
    let wanted = steps
        .iter()
        .filter_map(|s| match s {
            Step::Layer { kind, name } => Some((*kind, name.clone())),
            _ => None,
        })
        .collect();
    let layers = layers::probe(layer_root.as_ref().map(|fd| fd.as_fd()), wanted, &options.dirs);
    Plan { root: target.path().to_path_buf(), options, diagnostics, facts, steps, layers, root_mounts }
}

/// The dry run's [`Runner`]: each step assumed to do its work ([`assumed`]), the DHCP exchange
/// bringing the lease given.
struct DryRun<'a> {
    target: &'a ImageRoot,
    options: &'a Options,
    /// The command line's options, all that holds until the switch into the image.
    before_switch: &'a Options,
    known: Facts,
    /// The lease given, until the plan's DHCP step takes it.
    given: Option<Dhcp>,
    /// Initramfs mode: the client's address, which the lease brings.
    leased: Option<Ipv4Net>,
    root_mounts: Vec<RootMount>,
}

impl Runner for DryRun<'_> {
    fn planning(&self) -> (&Options, &Facts, &ImageRoot) {
        let options = if self.known.initramfs { self.before_switch } else { self.options };
        (options, &self.known, self.target)
    }

    fn run(&mut self, step: &Step) {
        let learned = match step {
            Step::Dhcp { interface, exchange, .. } => self.exchange(interface.as_ref(), *exchange),
            Step::NfsRoot { root: Ok(mount) } => {
                self.root_mounts = RootMount::of(mount, self.known.address.map(|a| a.addr));
                Vec::new()
            }
            _ => assumed(step, &self.known),
        };
        self.known.learn(learned);
    }
}

impl DryRun<'_> {
    /// What the DHCP exchange brings: the lease given, recorded as the boot records it, on the
    /// interface named, else the one the lease given came on.
    fn exchange(&mut self, interface: Option<&String>, exchange: Exchange) -> Vec<Learned> {
        let given = self.given.as_ref().map(|d| d.interface.clone()).filter(|i| !i.is_empty());
        let on = interface.cloned().or(self.known.interface.clone()).or(given);
        let on = on.unwrap_or_else(|| "(the DHCP interface)".into());
        // On-root, DISCOVER: the address of the lease given.
        let discovered = self.given.as_ref().and_then(|d| d.lease.address);
        let discovered = discovered.filter(|_| exchange == Exchange::Discover);
        let mut learned = Vec::new();
        let mut address = self.known.address;
        if let Some(leased) = self.leased.or(discovered) {
            address = Some(leased);
            learned.push(Learned::Link { interface: Some(on.clone()), mac: self.known.mac, address });
        }
        // For INFORM, the address the interface had.
        let dhcp =
            self.given.take().map(|d| Dhcp { interface: on, exchange, lease: Lease { address, ..d.lease }, ..d });
        learned.push(Learned::Dhcp(dhcp.map(Box::new)));
        learned
    }
}

use std::os::fd::AsFd;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "root: {}", escape_path(&self.root))?;
        let hostname = self.steps.iter().find_map(|s| match s {
            Step::Hostname { hostname, .. } => hostname.as_ref(),
            _ => None,
        });
        match hostname {
            Some(h) => writeln!(f, "hostname: {} (from {})", h.fqdn(), h.source)?,
            None => writeln!(f, "hostname: none")?,
        }
        match (&self.facts.address, &self.facts.interface) {
            (Some(a), Some(i)) => writeln!(f, "address: {a} on {i}")?,
            (Some(a), None) => writeln!(f, "address: {a}")?,
            _ => writeln!(f, "address: none")?,
        }
        for step in &self.steps {
            if let Step::NfsRoot { root: Err(_) } = step {
                writeln!(f, "error: {step}")?;
            }
        }
        for d in &self.diagnostics {
            writeln!(f, "warning: {d}")?;
        }
        for note in &self.facts.notes {
            writeln!(f, "note: {note}")?;
        }
        let mut phase = None;
        for (i, step) in self.steps.iter().enumerate() {
            if phase != Some(step.phase()) {
                phase = Some(step.phase());
                writeln!(f, "{}:", step.phase())?;
            }
            writeln!(f, "{:>3}. {step}{}", i + 1, if step.fatal() { " [fatal]" } else { "" })?;
            self.write_step_details(f, step)?;
        }
        Ok(())
    }
}

impl Plan {
    fn write_step_details(&self, f: &mut fmt::Formatter<'_>, step: &Step) -> fmt::Result {
        match step {
            Step::Hostname { rejected, .. } => rejected.iter().try_for_each(|r| writeln!(f, "       {r}")),
            Step::NfsRoot { .. } => self
                .root_mounts
                .iter()
                .enumerate()
                .try_for_each(|(i, mount)| writeln!(f, "       {}{mount}", if i == 0 { "" } else { "else " })),
            Step::Layer { name, .. } => {
                let Some(layer) = self.layers.iter().find(|l| l.name == *name) else { return Ok(()) };
                if !layer.present {
                    writeln!(f, "       (not present)")?;
                }
                for entry in &layer.files {
                    writeln!(f, "       /{}", escape_path(&entry.path))?;
                }
                for entry in &layer.refused {
                    let why = layers::refusal(entry, &self.options.dirs);
                    writeln!(f, "       refused /{}: {why}", escape_path(&entry.path))?;
                }
                layer.errors.iter().try_for_each(|e| writeln!(f, "       error: {e}"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Cmdline;

    fn options(cmdline: &str) -> Options {
        Options::resolve(&Cmdline::parse(cmdline.as_bytes()), None).0
    }

    fn facts(address: Option<&str>, kernel_hostname: &str) -> Facts {
        Facts {
            address: address.map(|a| a.parse().unwrap()),
            interface: address.map(|_| "eth0".to_string()),
            kernel_hostname: Some(kernel_hostname.into()),
            ..Facts::default()
        }
    }

    #[test]
    fn local_disks_are_planned_where_they_are_needed() {
        let on = Some("10.0.2.15/24");
        let dir = std::env::temp_dir().join(format!("stateless-plan-disks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = ImageRoot::open(&dir).unwrap();
        let o = options("stateless.scratch=lab-scratch stateless.swap=auto");
        let f = Facts { devices: Some(3), coldplug: vec!["virtio_blk".into()], ..facts(on, "lab3-12") };
        // The scratch disk's driver before the writable dirs, even when the network is up.
        assert!(early_coldplug(&o, &f) && !early_coldplug(&options(""), &f));
        assert!(early_coldplug(&options("stateless.swap=auto"), &f));
        assert!(!early_coldplug(&options("stateless.scratch=x stateless.dirs="), &f), "no dirs: no scratch");
        let writable = phase(Phase::WritableDirs, &o, &f, &target);
        assert_eq!(writable.first(), Some(&Step::Scratch { label: "lab-scratch".into() }));
        assert_eq!(writable.len(), 3, "then /etc and /var: {writable:?}");
        let no_dirs = options("stateless.scratch=lab-scratch stateless.dirs=");
        assert_eq!(phase(Phase::WritableDirs, &no_dirs, &f, &target), [], "no writable dir: no scratch");
        let devices = phase(Phase::Devices, &o, &f, &target);
        assert!(
            matches!(
                devices.as_slice(),
                [Step::Coldplug { .. }, Step::Swap { wanted: crate::model::options::Swap::Auto }]
            ),
            "{devices:?}"
        );
        assert_eq!(phase(Phase::Devices, &options(""), &f, &target).len(), 1);
        let mut learned = Facts::default();
        learned.learn(assumed(&Step::Scratch { label: "x".into() }, &Facts::default()));
        assert_eq!(learned.writable.scratch(), Some(crate::model::paths::SCRATCH_UPPERS));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dhcp_only_when_it_can_tell_something() {
        let on = Some("10.0.2.15/24");
        let inform = Some(Step::Dhcp { interface: Some("eth0".into()), exchange: Exchange::Inform, meanwhile: vec![] });
        let static_ip = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";
        // The kernel's DHCP asked for a name and got none: asking again would get none either.
        assert_eq!(network_step(&options("ip=dhcp"), &facts(on, "(none)")), None);
        assert_eq!(network_step(&options("ip=dhcp"), &facts(on, "lab3-12")), None);
        // A static ip= line without a name: ask for it, keep the address.
        assert_eq!(network_step(&options(static_ip), &facts(on, "(none)")), inform);
        assert_eq!(
            network_step(&options("ip=10.0.2.15::10.0.2.2:255.255.255.0:lab3-12:eth0:off"), &facts(on, "(none)")),
            None
        );
        assert_eq!(network_step(&options(&format!("{static_ip} stateless.hostname=x")), &facts(on, "(none)")), None);
        // Nor when told not to: the name falls back to the prefix, nothing is sent.
        let no_inform = options(&format!("{static_ip} stateless.dhcp.inform=no"));
        assert_eq!(network_step(&no_inform, &facts(on, "(none)")), None);
        assert_eq!(
            network_step(&options(&format!("{static_ip} stateless.dhcp.inform=yes")), &facts(on, "(none)")),
            inform
        );
        assert!(matches!(network_step(&no_inform, &facts(None, "(none)")), Some(Step::Address { .. })));
        assert!(matches!(
            network_step(&options("stateless.dhcp.inform=no"), &facts(None, "(none)")),
            Some(Step::Dhcp { exchange: Exchange::Discover, .. })
        ));
        // No address: DISCOVER on the ip= device, or the first with carrier; never after a static line.
        let discover = |on: Option<&str>| {
            Some(Step::Dhcp { interface: on.map(Into::into), exchange: Exchange::Discover, meanwhile: vec![] })
        };
        assert_eq!(network_step(&options("ip=eth1:dhcp"), &facts(None, "(none)")), discover(Some("eth1")));
        assert_eq!(network_step(&options(""), &facts(None, "(none)")), discover(None));
        // No address and a static line: that address, no DHCP; a prefix from the mask, else the class.
        let address = |a: &str| Step::Address {
            interface: Some("eth0".into()),
            address: a.parse().unwrap(),
            gateway: Some("10.0.2.2".parse().unwrap()),
        };
        assert_eq!(network_step(&options(static_ip), &facts(None, "(none)")), Some(address("10.0.2.15/24")));
        let classful = "ip=10.0.2.15::10.0.2.2:::eth0:off";
        assert_eq!(network_step(&options(classful), &facts(None, "(none)")), Some(address("10.0.2.15/8")));
        // A static address tried (and failed): not again, and the hostname comes next.
        let tried = Facts { address_done: true, ..facts(None, "(none)") };
        assert_eq!(network_step(&options(static_ip), &tried), None);
        // Once per boot.
        let done = Facts { dhcp_done: true, ..facts(None, "(none)") };
        assert_eq!(network_step(&options(""), &done), None);
    }
}
