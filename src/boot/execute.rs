//! Carries out a plan: one function per kind of step, each returning what it did or a
//! [`StepError`]; the failure policy lives in [`Executor::failed`] alone.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustix::mount::MountFlags;

use crate::boot::plan::Plan;
use crate::boot::{handoff, report};
use crate::fs::layers::{self, Provenance};
use crate::fs::mounts::{self, EarlyMount, RW_BASE};
use crate::fs::{hostfiles, tree};
use crate::kmod as modules;
use crate::model::options::{Emergency, OverlayMode};
use crate::model::outcome::{DirMode, DirResult, LayerResult, Mode, Outcome, Status, StepError};
use crate::model::step::{Step, StepKind};
use crate::sys::Sys;

/// What a step function reports on success.
struct Done {
    status: Status,
    detail: String,
}

impl Done {
    fn ok(detail: impl Into<String>) -> Self {
        Self { status: Status::Ok, detail: detail.into() }
    }

    fn skipped(detail: impl Into<String>) -> Self {
        Self { status: Status::Skipped, detail: detail.into() }
    }
}

/// Runs steps against a root through a [`Sys`], collecting outcomes for the report.
pub struct Executor<'a> {
    pub sys: &'a mut dyn Sys,
    pub root: PathBuf,
    pub mode: Mode,
    pub emergency: Emergency,
    pub break_at: Option<StepKind>,
    /// Arguments the kernel gave us, passed on to init.
    pub init_args: Vec<OsString>,
    pub started: Instant,
    pub outcomes: Vec<Outcome>,
    pub provenance: Provenance,
    pub dirs: Vec<DirResult>,
    pub layers: Vec<LayerResult>,
    /// True once a fatal step has failed.
    pub degraded: bool,
}

impl<'a> Executor<'a> {
    pub fn new(sys: &'a mut dyn Sys, root: &Path, mode: Mode) -> Self {
        Self {
            sys,
            root: root.to_path_buf(),
            mode,
            emergency: Emergency::default(),
            break_at: None,
            init_args: Vec::new(),
            started: Instant::now(),
            outcomes: Vec::new(),
            provenance: Provenance::default(),
            dirs: Vec::new(),
            layers: Vec::new(),
            degraded: false,
        }
    }

    /// Runs `steps` (a slice of `plan.steps`) in order.
    pub fn run(&mut self, plan: &Plan, steps: &[Step]) {
        for step in steps {
            if self.break_at == Some(step.kind()) && !self.outcomes.iter().any(|o| o.kind == step.kind()) {
                self.break_to_shell(step.kind());
            }
            let started = Instant::now();
            let result = self.step(plan, step);
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (status, detail) = match &result {
                Ok(done) => (done.status, done.detail.clone()),
                Err(e) => (Status::Failed, e.to_string()),
            };
            match status {
                Status::Failed => log::error!("{step}: {detail}"),
                Status::Degraded => log::warn!("{step}: {detail}"),
                _ => log::info!("{step}: {detail}"),
            }
            self.outcomes.push(Outcome { step: step.to_string(), kind: step.kind(), status, detail, ms });
            if let Err(error) = result {
                self.failed(step, &error);
            }
        }
    }

    fn step(&mut self, plan: &Plan, step: &Step) -> Result<Done, StepError> {
        match step {
            Step::Mount { mount } => self.early_mount(mount),
            Step::Hostname { hostname, .. } => self.hostname(hostname.as_ref()),
            Step::Overlay { dir, mode, tmpfs_size } => {
                let result = self.overlay(dir, *mode, tmpfs_size.as_deref());
                let mode = match &result {
                    Ok((mode, _)) => *mode,
                    Err(_) => DirMode::None,
                };
                self.dirs.push(DirResult { dir: dir.clone(), mode });
                result.map(|(_, done)| done)
            }
            Step::Layer { layer } => Ok(self.layer(plan, layer)),
            Step::HostFiles { fqdn, short, .. } => self.host_files(fqdn, short),
            Step::Report { path } => self.report(plan, path),
            Step::Handoff { candidates, chosen } => self.handoff(candidates, chosen.as_deref()),
        }
    }

    /// The failure policy: degradable steps are logged only; a fatal one goes by `stateless.emergency`.
    fn failed(&mut self, step: &Step, error: &StepError) {
        if !step.fatal() {
            return;
        }
        self.degraded = true;
        if self.mode == Mode::Apply {
            return;
        }
        match self.emergency {
            Emergency::Continue => log::error!("fatal step failed, continuing degraded: {error}"),
            Emergency::Shell => {
                log::error!("fatal step failed: {error}; starting a shell, the boot goes on when it exits");
                if let Err(e) = self.sys.shell(Path::new("/bin/sh")) {
                    log::error!("emergency shell /bin/sh: {e}");
                }
            }
            Emergency::Reboot | Emergency::Poweroff => handoff::emergency(self.sys, self.emergency, &error.to_string()),
        }
    }

    fn break_to_shell(&mut self, kind: StepKind) {
        if self.mode == Mode::Apply {
            log::info!("stateless.break={kind} ignored: not PID 1");
            return;
        }
        log::warn!("stateless.break={kind}: shell before {kind}; exit it to go on");
        if let Err(e) = self.sys.shell(Path::new("/bin/sh")) {
            log::error!("break shell /bin/sh: {e}");
        }
    }

    fn early_mount(&mut self, mount: &EarlyMount) -> Result<Done, StepError> {
        let target = self.root.join(mount.target);
        if self.sys.is_mounted(&target, mount.magic) {
            return Ok(Done::skipped("already mounted"));
        }
        self.sys
            .mount(mount.source, &target, mount.fstype, mount.flags, mount.options)
            .map_err(|error| StepError::Mount { target: target.clone(), fstype: mount.fstype.into(), error })?;
        if mount.target == "dev" && self.mode == Mode::Boot {
            crate::sys::console::ensure_stdio(&target.join("console"));
        }
        Ok(Done::ok("mounted"))
    }

    fn hostname(&mut self, hostname: Option<&crate::model::hostname::Hostname>) -> Result<Done, StepError> {
        let Some(h) = hostname else { return Ok(Done::skipped("no valid hostname from any source")) };
        if self.mode == Mode::Apply {
            return Ok(Done::skipped("not PID 1: kernel hostname left alone"));
        }
        self.sys.sethostname(&h.short).map_err(|error| StepError::Hostname { name: h.short.clone(), error })?;
        let kernel_domain = rustix::system::uname().domainname().to_string_lossy().into_owned();
        match &h.domain {
            Some(domain) if kernel_domain == "(none)" || kernel_domain.is_empty() => {
                self.sys.setdomainname(domain).map_err(|error| StepError::Hostname { name: domain.clone(), error })?;
                Ok(Done::ok(format!("set {} (domain {domain})", h.short)))
            }
            _ => Ok(Done::ok(format!("set {}", h.short))),
        }
    }

    /// Dirs known to be a tmpfs or overlay now: the only places anything is written to.
    pub fn writable(&self) -> Vec<String> {
        self.dirs.iter().filter(|d| d.mode != DirMode::None).map(|d| d.dir.clone()).collect()
    }

    fn overlay(&mut self, dir: &str, mode: OverlayMode, size: Option<&str>) -> Result<(DirMode, Done), StepError> {
        let fail = |error: String| StepError::Overlay { dir: dir.into(), error };
        let root_fd = crate::boot::plan::open_root(&self.root).map_err(|e| fail(format!("open root: {e}")))?;
        let lower =
            tree::open_dir_nofollow(root_fd.as_fd(), Path::new(dir)).map_err(|e| fail(format!("open /{dir}: {e}")))?;
        let st = rustix::fs::fstat(&lower).map_err(|e| fail(format!("stat /{dir}: {e}")))?;
        let mut why_copy = String::new();
        if mode == OverlayMode::Overlay {
            match self.try_overlay(dir, &st, size) {
                Ok(()) => {
                    return Ok((
                        DirMode::Overlay,
                        Done::ok(format!("upper and work dirs on the tmpfs at /{RW_BASE}/{dir}")),
                    ))
                }
                Err(e) => {
                    log::warn!("/{dir}: overlayfs failed ({e}); falling back to copy mode");
                    why_copy = format!(" (overlayfs failed: {e})");
                }
            }
        }
        let entries = self.copy_mode(dir, lower, &st, size).map_err(fail)?;
        let status = if why_copy.is_empty() { Status::Ok } else { Status::Degraded };
        Ok((DirMode::Copy, Done { status, detail: format!("tmpfs + copy of {entries} entries{why_copy}") }))
    }

    /// tmpfs at /run/stateless/rw/<dir> holding upper/ and work/, then overlayfs on the dir.
    fn try_overlay(&mut self, dir: &str, lower: &rustix::fs::Stat, size: Option<&str>) -> Result<(), String> {
        if !self.sys.is_mounted(&self.root.join("run"), crate::fs::mounts::TMPFS_MAGIC) {
            return Err("/run is not a tmpfs".into());
        }
        self.ensure_overlayfs()?;
        let rw = self.root.join(RW_BASE).join(dir);
        std::fs::create_dir_all(&rw).map_err(|e| format!("mkdir {}: {e}", rw.display()))?;
        let options = mounts::tmpfs_options(0o755, 0, 0, size);
        self.sys
            .mount("tmpfs", &rw, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, &options)
            .map_err(|e| format!("mount tmpfs on {}: {e}", rw.display()))?;
        let (upper, work) = (rw.join("upper"), rw.join("work"));
        let result = make_upper(&upper, &work, lower).and_then(|()| {
            let target = self.root.join(dir);
            let data = mounts::overlay_options(&target, &upper, &work)?;
            self.sys
                .mount("overlay", &target, "overlay", MountFlags::empty(), &data)
                .map_err(|e| format!("mount overlay on {}: {e}", target.display()))
        });
        if result.is_err() {
            let _ = self.sys.umount(&rw);
        }
        result
    }

    fn ensure_overlayfs(&mut self) -> Result<(), String> {
        let listed = |text: &str| text.lines().any(|l| l.split_whitespace().last() == Some("overlay"));
        if self.sys.filesystems().is_ok_and(|t| listed(&t)) {
            return Ok(());
        }
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        modules::load(self.sys, &self.root, &release, "overlay").map_err(|e| format!("overlayfs not available: {e}"))
    }

    /// tmpfs straight on the dir, filled from a handle on the image dir opened before the mount.
    fn copy_mode(
        &mut self,
        dir: &str,
        lower: OwnedFd,
        st: &rustix::fs::Stat,
        size: Option<&str>,
    ) -> Result<usize, String> {
        let target = self.root.join(dir);
        let options = mounts::tmpfs_options(st.st_mode, st.st_uid, st.st_gid, size);
        self.sys
            .mount("tmpfs", &target, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, &options)
            .map_err(|e| format!("mount tmpfs on {}: {e}", target.display()))?;
        let root_fd = crate::boot::plan::open_root(&self.root).map_err(|e| format!("open root: {e}"))?;
        let upper =
            tree::open_dir_nofollow(root_fd.as_fd(), Path::new(dir)).map_err(|e| format!("open /{dir}: {e}"))?;
        // Never copy into the image itself: the new tmpfs must be a different filesystem.
        let up = rustix::fs::fstat(&upper).map_err(|e| format!("stat /{dir}: {e}"))?;
        if up.st_dev == st.st_dev {
            return Err(format!("{} is still the image dir after mounting tmpfs on it", target.display()));
        }
        let copied = tree::copy_tree(lower.as_fd(), upper.as_fd(), &|_, _| tree::Verdict::Copy);
        for error in &copied.errors {
            log::warn!("copy mode /{dir}: {error}");
        }
        Ok(copied.written.len())
    }

    fn layer(&mut self, plan: &Plan, layer: &layers::Layer) -> Done {
        let name = layer.name.as_str();
        if !layer.present {
            if layer.errors.is_empty() {
                return Done::skipped("not present");
            }
            return Done { status: Status::Degraded, detail: format!("not applied: {}", layer.errors.join("; ")) };
        }
        let fds = crate::boot::plan::open_root(&self.root).map_err(|e| e.to_string()).and_then(|root| {
            let layer_root = layers::open_root(root.as_fd(), &plan.options.layers)?;
            Ok((root, layer_root))
        });
        let applied = match fds {
            Ok((root, Some(layer_root))) => {
                layers::apply(layer_root.as_fd(), root.as_fd(), name, &self.writable(), &mut self.provenance)
            }
            Ok((_, None)) => layers::Applied {
                errors: vec![format!("layer root {} vanished", plan.options.layers)],
                ..Default::default()
            },
            Err(e) => layers::Applied { errors: vec![e], ..Default::default() },
        };
        for error in &applied.errors {
            log::warn!("{error}");
        }
        self.layers.push(LayerResult {
            layer: name.into(),
            files: applied.written,
            refused: applied.refused,
            errors: applied.errors.len(),
        });
        let detail =
            format!("{} written, {} refused, {} errors", applied.written, applied.refused, applied.errors.len());
        Done { status: if applied.errors.is_empty() { Status::Ok } else { Status::Degraded }, detail }
    }

    fn host_files(&mut self, fqdn: &str, short: &str) -> Result<Done, StepError> {
        if !self.writable().iter().any(|d| d == "etc") {
            return Ok(Done::skipped("/etc is not writable"));
        }
        let written =
            hostfiles::write(&self.root, fqdn, short).map_err(|(path, error)| StepError::HostFile { path, error })?;
        for file in &written {
            self.provenance.record(&Path::new("etc").join(file), "hostname");
        }
        Ok(Done::ok(format!("{short}, {fqdn} in {}", written.join(", "))))
    }

    fn report(&mut self, plan: &Plan, path: &str) -> Result<Done, StepError> {
        if !self.sys.is_mounted(&self.root.join("run"), crate::fs::mounts::TMPFS_MAGIC) {
            return Ok(Done::skipped("/run is not a tmpfs: no report written"));
        }
        let target = self.root.join(path);
        report::write(self, plan, &target).map_err(|error| StepError::Report { path: target.clone(), error })?;
        Ok(Done::ok(format!("written, {} ms since start", self.elapsed_ms())))
    }

    fn handoff(&mut self, candidates: &[String], chosen: Option<&str>) -> Result<Done, StepError> {
        if self.mode == Mode::Apply {
            return Ok(Done::skipped(format!("not PID 1: would exec {}", chosen.unwrap_or("nothing"))));
        }
        log::info!("{} ms from start to handoff", self.elapsed_ms());
        let tried = handoff::exec_chain(self.sys, candidates, &self.init_args);
        Err(StepError::Handoff { tried })
    }

    /// Milliseconds since `started`.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// upper/ gets the owner and mode of the image dir: the overlay root shows the upper's.
fn make_upper(upper: &Path, work: &Path, lower: &rustix::fs::Stat) -> Result<(), String> {
    for dir in [upper, work] {
        std::fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let fail = |e: rustix::io::Errno| format!("set owner/mode of {}: {e}", upper.display());
    rustix::fs::chown(
        upper,
        Some(rustix::process::Uid::from_raw(lower.st_uid)),
        Some(rustix::process::Gid::from_raw(lower.st_gid)),
    )
    .map_err(fail)?;
    rustix::fs::chmod(upper, rustix::fs::Mode::from_raw_mode(lower.st_mode & 0o7777)).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;
    use crate::config::Cmdline;
    use crate::model::facts::Facts;
    use crate::model::options::Options;
    use crate::sys::{Call, Fake};

    struct Image(PathBuf);

    impl Image {
        fn new(tag: &str) -> Self {
            let root = std::env::temp_dir().join(format!("stateless-exec-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            for dir in ["etc", "var", "run", "tmp", "dev", "proc", "sys", "sbin", "diskless/base/etc"] {
                std::fs::create_dir_all(root.join(dir)).unwrap();
            }
            std::fs::write(root.join("sbin/init"), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(root.join("sbin/init"), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(root.join("diskless/base/etc/from-base"), "base\n").unwrap();
            Self(root)
        }

        fn plan(&self, cmdline: &str) -> Plan {
            let (options, diagnostics) = Options::resolve(&Cmdline::parse(cmdline), None);
            let facts = Facts {
                address: "10.0.2.15/24".parse().ok(),
                kernel_hostname: Some("lab3-12".into()),
                ..Facts::default()
            };
            crate::boot::plan::build(&self.0, options, diagnostics, facts)
        }
    }

    impl Drop for Image {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs the plan with the fake kernel; returns the calls and the panic message that ended it
    /// (`fake exec ...`, `fake reboot`), or None when `run` returned.
    fn boot(image: &Image, cmdline: &str, sys: &mut Fake, mode: Mode) -> (Vec<Outcome>, Option<String>) {
        let plan = image.plan(cmdline);
        let mut executor = Executor::new(sys, &image.0, mode);
        executor.emergency = plan.options.emergency;
        executor.break_at = plan.options.break_at;
        executor.init_args = vec!["single".into()];
        let ended = catch_unwind(AssertUnwindSafe(|| executor.run(&plan, &plan.steps)));
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
        let mut sys = Fake::default();
        let (outcomes, ended) = boot(&image, "", &mut sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        assert_eq!(
            mounts(&sys.calls),
            [
                ("devtmpfs".into(), r.join("dev")),
                ("proc".into(), r.join("proc")),
                ("sysfs".into(), r.join("sys")),
                ("tmpfs".into(), r.join("run")),
                ("tmpfs".into(), r.join("tmp")),
                ("tmpfs".into(), r.join("run/stateless/rw/etc")),
                ("overlay".into(), r.join("etc")),
                ("tmpfs".into(), r.join("run/stateless/rw/var")),
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
        assert!(sys.calls.contains(&Call::Mount {
            source: "overlay".into(),
            target: r.join("etc"),
            fstype: "overlay".into(),
            data
        }));
        assert!(sys.calls.contains(&Call::Sethostname("lab3-12".into())));
        assert_eq!(
            sys.calls.last(),
            Some(&Call::Exec("/sbin/init".into(), vec!["/sbin/init".into(), "single".into()]))
        );
        assert!(outcomes.iter().all(|o| o.status != Status::Failed), "{outcomes:#?}");
        assert_eq!(std::fs::read_to_string(r.join("etc/from-base")).unwrap(), "base\n");
        assert!(r.join("run/stateless/report.json").exists());
    }

    #[test]
    fn overlay_failure_falls_back_to_copy_mode_but_never_copies_into_the_image() {
        let image = Image::new("nooverlay");
        let r = image.0.clone();
        let mut sys = Fake {
            fail: Box::new(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay").then_some(19)),
            ..Fake::default()
        };
        let (outcomes, ended) = boot(&image, "stateless.dirs=etc", &mut sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"), "continue is the default policy");
        let m = mounts(&sys.calls);
        assert_eq!(
            m[5..],
            [
                ("tmpfs".into(), r.join("run/stateless/rw/etc")),
                ("overlay".into(), r.join("etc")),
                ("tmpfs".into(), r.join("etc"))
            ]
        );
        assert!(sys.calls.contains(&Call::Umount(r.join("run/stateless/rw/etc"))));
        // The fake tmpfs did not appear, so copy mode must refuse to write into the image dir.
        let overlay = outcomes.iter().find(|o| o.kind == StepKind::Overlay).unwrap();
        assert_eq!(overlay.status, Status::Failed);
        assert!(overlay.detail.contains("still the image dir"), "{}", overlay.detail);
        assert!(!r.join("etc/from-base").exists(), "a layer was written into the read-only image");
        assert!(outcomes.iter().any(|o| o.kind == StepKind::Layers && o.detail.contains("0 written, 1 refused")));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(r.join("run/stateless/report.json")).unwrap()).unwrap();
        assert_eq!(report["dirs"], serde_json::json!([{"dir": "etc", "mode": "none"}]));
        assert_eq!(report["degraded"], true);
        assert!(!r.join("etc/hostname").exists());
    }

    #[test]
    fn reboot_policy_stops_the_boot_at_a_fatal_failure() {
        let image = Image::new("reboot");
        let mut sys = Fake {
            fail: Box::new(|c| matches!(c, Call::Mount { fstype, .. } if fstype == "overlay").then_some(19)),
            ..Fake::default()
        };
        let (_, ended) = boot(&image, "stateless.emergency=reboot stateless.mode=overlay", &mut sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake reboot"));
        let n = sys.calls.len();
        assert_eq!(sys.calls[n - 2..], [Call::Sleep(handoff::EMERGENCY_DELAY), Call::Reboot { poweroff: false }]);
        assert!(!sys.calls.iter().any(|c| matches!(c, Call::Exec(..))));
    }

    #[test]
    fn missing_init_walks_the_fallback_chain() {
        let image = Image::new("fallback");
        let mut sys = Fake {
            fail: Box::new(|c| matches!(c, Call::Exec(p, _) if p == Path::new("/nonexistent")).then_some(2)),
            ..Fake::default()
        };
        let (_, ended) = boot(&image, "stateless.init=/nonexistent", &mut sys, Mode::Boot);
        assert_eq!(ended.as_deref(), Some("fake exec /sbin/init"));
        let execs: Vec<&Call> = sys.calls.iter().filter(|c| matches!(c, Call::Exec(..))).collect();
        assert_eq!(execs.len(), 2);
    }

    #[test]
    fn no_init_at_all_fails_the_handoff_and_returns_to_the_caller() {
        let image = Image::new("noinit");
        let mut sys = Fake { fail: Box::new(|c| matches!(c, Call::Exec(..)).then_some(2)), ..Fake::default() };
        let (outcomes, ended) = boot(&image, "", &mut sys, Mode::Boot);
        assert_eq!(ended, None);
        let last = outcomes.last().unwrap();
        assert_eq!((last.kind, last.status), (StepKind::Handoff, Status::Failed));
        assert!(last.detail.contains("/bin/sh: "), "{}", last.detail);
    }

    #[test]
    fn break_starts_a_shell_before_the_named_step() {
        let image = Image::new("break");
        let mut sys = Fake::default();
        boot(&image, "stateless.break=overlay", &mut sys, Mode::Boot);
        let shell = sys.calls.iter().position(|c| matches!(c, Call::Shell(_))).unwrap();
        assert!(
            matches!(&sys.calls[shell + 1], Call::Mount { target, .. } if target.ends_with("run/stateless/rw/etc"))
        );
        assert_eq!(sys.calls.iter().filter(|c| matches!(c, Call::Shell(_))).count(), 1);
    }

    #[test]
    fn apply_mode_neither_sets_the_hostname_nor_execs() {
        let image = Image::new("apply");
        let mut sys = Fake::default();
        let (outcomes, ended) = boot(&image, "stateless.break=overlay", &mut sys, Mode::Apply);
        assert_eq!(ended, None);
        assert!(!sys.calls.iter().any(|c| matches!(c, Call::Exec(..) | Call::Sethostname(_) | Call::Shell(_))));
        assert_eq!(outcomes.last().unwrap().status, Status::Skipped);
    }
}
