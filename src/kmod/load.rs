//! Loading a coldplug plan: `finit_module` for every module to load, in parallel threads, each
//! module only once everything it needs is done: its `modules.dep` dependencies loaded (if one
//! failed, it is not tried) and its softdep `pre:` modules tried (their failure does not stop
//! it, as in kmod). Every result is reported with the time it took.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};

use super::coldplug::{Planned, State};
use super::resolve::Rules;
use crate::fs::root::ImageRoot;
use crate::sys::Sys;

/// Most loader threads (module init is mostly the kernel's own work; a few threads keep every
/// CPU and the disk or network busy).
pub const MAX_THREADS: usize = 8;

/// What happened to one module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Loaded,
    /// In the kernel already (`EEXIST`, or listed in /proc/modules when planned).
    AlreadyLoaded,
    BuiltIn,
    Failed {
        errno: Option<i32>,
        message: String,
    },
    /// Not tried: a dependency failed.
    Skipped {
        because: String,
    },
}

/// One module's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    pub module: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Time spent in open and finit_module.
    pub ms: u64,
}

/// A module to load and what it waits for (indices into the plan).
struct Job<'a> {
    planned: &'a Planned,
    /// `modules.dep` dependencies: a failure among them skips this module.
    hard: Vec<usize>,
    /// softdep `pre:` modules: tried first, their failure ignored.
    soft: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    Waiting,
    Running,
    Done(bool),
}

/// Loads `plan` (from [`super::coldplug::plan`]) from the module dir `dir` as `root` sees it,
/// with `threads` threads (1 to [`MAX_THREADS`]), parameters from `rules.config`. The results
/// come in plan order.
pub fn load_plan(
    sys: &dyn Sys,
    root: &ImageRoot,
    dir: &Path,
    rules: Rules<'_>,
    plan: &[Planned],
    threads: usize,
) -> Vec<Loaded> {
    let position: BTreeMap<&str, usize> = plan.iter().enumerate().map(|(i, p)| (p.module.as_str(), i)).collect();
    let before = |name: &str, i: usize| position.get(name).copied().filter(|&j| j < i);
    let jobs: Vec<Job<'_>> = plan
        .iter()
        .enumerate()
        .map(|(i, planned)| {
            let deps = rules.index.modules.get(&planned.module).map(|m| m.deps.as_slice()).unwrap_or_default();
            let hard = deps.iter().filter_map(|d| before(d, i)).collect();
            let pre = rules.softdep(&planned.module).map(|s| s.pre.clone()).unwrap_or_default();
            let soft = pre.iter().flat_map(|p| rules.lookup(p)).filter_map(|f| before(&f.module, i)).collect();
            Job { planned, hard, soft }
        })
        .collect();
    let initial: Vec<(Progress, Option<Loaded>)> = jobs
        .iter()
        .map(|job| {
            let done = |outcome| {
                let loaded = Loaded { module: job.planned.module.clone(), outcome, ms: 0 };
                (Progress::Done(true), Some(loaded))
            };
            match job.planned.state {
                State::BuiltIn => done(Outcome::BuiltIn),
                State::Loaded => done(Outcome::AlreadyLoaded),
                State::Load => (Progress::Waiting, None),
            }
        })
        .collect();
    let state = Mutex::new(initial);
    let changed = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, MAX_THREADS) {
            scope.spawn(|| worker(sys, root, dir, rules, &jobs, &state, &changed));
        }
    });
    let results = state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    results.into_iter().filter_map(|(_, loaded)| loaded).collect()
}

type Shared = Mutex<Vec<(Progress, Option<Loaded>)>>;

fn worker(
    sys: &dyn Sys,
    root: &ImageRoot,
    dir: &Path,
    rules: Rules<'_>,
    jobs: &[Job<'_>],
    state: &Shared,
    changed: &Condvar,
) {
    let Ok(mut guard) = state.lock() else { return };
    loop {
        let ready = |i: &usize| guard.get(*i).is_some_and(|(p, _)| matches!(p, Progress::Done(_)));
        let ok = |i: &usize| guard.get(*i).is_some_and(|(p, _)| *p == Progress::Done(true));
        let mut next = None;
        let mut skip = None;
        for (i, job) in jobs.iter().enumerate() {
            if guard.get(i).map(|(p, _)| p) != Some(&Progress::Waiting) {
                continue;
            }
            if let Some(failed) = job.hard.iter().find(|d| ready(d) && !ok(d)) {
                skip = Some((i, jobs.get(*failed).map(|j| j.planned.module.clone()).unwrap_or_default()));
                break;
            }
            if job.hard.iter().all(ready) && job.soft.iter().all(ready) {
                next = Some(i);
                break;
            }
        }
        if let Some((i, dep)) = skip {
            if let Some(slot) = guard.get_mut(i) {
                let module = jobs.get(i).map(|j| j.planned.module.clone()).unwrap_or_default();
                let because = format!("dependency {dep} failed");
                *slot = (Progress::Done(false), Some(Loaded { module, outcome: Outcome::Skipped { because }, ms: 0 }));
            }
            changed.notify_all();
            continue;
        }
        let Some(i) = next else {
            if guard.iter().all(|(p, _)| matches!(p, Progress::Done(_)))
                || !guard.iter().any(|(p, _)| *p == Progress::Running)
            {
                // All done, or nothing running that could unblock the rest (cannot happen with
                // dependencies earlier in the plan, but never wait for nothing).
                changed.notify_all();
                return;
            }
            guard = match changed.wait(guard) {
                Ok(guard) => guard,
                Err(_) => return,
            };
            continue;
        };
        if let Some(slot) = guard.get_mut(i) {
            slot.0 = Progress::Running;
        }
        drop(guard);
        let Some(job) = jobs.get(i) else { return };
        let started = Instant::now();
        let outcome = load_one(sys, root, dir, rules, job.planned);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let ok = matches!(outcome, Outcome::Loaded | Outcome::AlreadyLoaded);
        guard = match state.lock() {
            Ok(guard) => guard,
            Err(_) => return,
        };
        if let Some(slot) = guard.get_mut(i) {
            *slot = (Progress::Done(ok), Some(Loaded { module: job.planned.module.clone(), outcome, ms }));
        }
        changed.notify_all();
    }
}

fn load_one(sys: &dyn Sys, root: &ImageRoot, dir: &Path, rules: Rules<'_>, planned: &Planned) -> Outcome {
    let Some(file) = &planned.path else { return Outcome::BuiltIn };
    let path = dir.join(file);
    let shown = root.host_path(&path);
    let opened = match root.open_file(&path, OFlags::RDONLY) {
        Ok(fd) => fd,
        Err(e) => {
            return Outcome::Failed { errno: Some(e.raw_os_error()), message: format!("open {}: {e}", shown.display()) }
        }
    };
    match sys.load_module(opened.as_fd(), &shown, &rules.config.params(&planned.module)) {
        Ok(()) => Outcome::Loaded,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => Outcome::AlreadyLoaded,
        Err(e) => {
            let compressed = !file.ends_with(".ko");
            let hint = if compressed && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                " (a compressed module: the kernel decompresses it itself only from Linux 6.4, with CONFIG_MODULE_DECOMPRESS)"
            } else {
                ""
            };
            Outcome::Failed { errno: e.raw_os_error(), message: format!("load {}: {e}{hint}", shown.display()) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kmod::config::Config;
    use crate::kmod::index::Index;
    use crate::sys::{Call, Fake};

    const DEP: &str = "kernel/virtio_ring.ko:\nkernel/virtio.ko: kernel/virtio_ring.ko\n\
        kernel/virtio_net.ko: kernel/net_failover.ko kernel/failover.ko kernel/virtio.ko kernel/virtio_ring.ko\n\
        kernel/failover.ko:\nkernel/net_failover.ko: kernel/failover.ko\nkernel/virtio_blk.ko.xz: kernel/virtio.ko kernel/virtio_ring.ko\n\
        kernel/crc32c_generic.ko:\nkernel/e1000.ko:\n";

    fn tree(tag: &str) -> (std::path::PathBuf, ImageRoot, Index) {
        let dir = std::env::temp_dir().join(format!("stateless-load-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib/modules/6.1.0/kernel")).unwrap();
        for m in [
            "virtio_ring.ko",
            "virtio.ko",
            "virtio_net.ko",
            "failover.ko",
            "net_failover.ko",
            "virtio_blk.ko.xz",
            "crc32c_generic.ko",
            "e1000.ko",
        ] {
            std::fs::write(dir.join("lib/modules/6.1.0/kernel").join(m), "").unwrap();
        }
        let index =
            Index::parse(DEP.as_bytes(), b"alias crc32c crc32c_generic\n", b"softdep e1000 pre: crc32c\n", b"", b"");
        let root = ImageRoot::open(&dir).unwrap();
        (dir, root, index)
    }

    fn planned(index: &Index, config: &Config, modules: &[&str]) -> Vec<Planned> {
        let rules = Rules { index, config };
        let mut order = Vec::new();
        for m in modules {
            rules.probe_list(m, &mut order);
        }
        order.into_iter().map(|s| Planned { module: s.module, path: s.path, state: State::Load }).collect()
    }

    /// Where each module was loaded in the recorded calls.
    fn position(calls: &[Call], name: &str) -> usize {
        calls.iter().position(|c| matches!(c, Call::LoadModule(p, _) if p.file_name().unwrap().to_string_lossy().starts_with(&format!("{name}.")))).unwrap()
    }

    #[test]
    fn dependencies_first_in_parallel_with_parameters() {
        let (dir, root, index) = tree("par");
        let mut config = Config::default();
        config.options.insert("e1000".into(), vec!["debug=2".into()]);
        let plan = planned(&index, &config, &["virtio_net", "virtio_blk", "e1000"]);
        let sys = Fake::default();
        let results =
            load_plan(&sys, &root, Path::new("/lib/modules/6.1.0"), Rules { index: &index, config: &config }, &plan, 4);
        assert!(results.iter().all(|r| r.outcome == Outcome::Loaded), "{results:#?}");
        assert_eq!(results.len(), plan.len());
        let calls = sys.calls();
        for (module, dep) in [
            ("virtio", "virtio_ring"),
            ("virtio_net", "virtio"),
            ("virtio_net", "net_failover"),
            ("net_failover", "failover"),
            ("virtio_blk", "virtio"),
            ("e1000", "crc32c_generic"),
        ] {
            assert!(position(&calls, dep) < position(&calls, module), "{dep} before {module}: {calls:#?}");
        }
        assert!(calls.contains(&Call::LoadModule(dir.join("lib/modules/6.1.0/kernel/e1000.ko"), "debug=2".into())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_skip_what_depends_on_them_only() {
        let (dir, root, index) = tree("fail");
        let config = Config::default();
        let mut plan = planned(&index, &config, &["virtio_net", "e1000"]);
        plan.iter_mut().find(|p| p.module == "failover").unwrap().state = State::Load;
        // virtio fails (ENOEXEC); crc32c_generic, a softdep, fails too (EINVAL).
        let sys = Fake::failing(|c| match c {
            Call::LoadModule(p, _) if p.ends_with("virtio.ko") => Some(8),
            Call::LoadModule(p, _) if p.ends_with("crc32c_generic.ko") => Some(22),
            _ => None,
        });
        let results =
            load_plan(&sys, &root, Path::new("/lib/modules/6.1.0"), Rules { index: &index, config: &config }, &plan, 3);
        let outcome = |m: &str| results.iter().find(|r| r.module == m).unwrap().outcome.clone();
        assert!(matches!(outcome("virtio"), Outcome::Failed { errno: Some(8), .. }));
        assert_eq!(outcome("virtio_net"), Outcome::Skipped { because: "dependency virtio failed".into() });
        assert_eq!(outcome("failover"), Outcome::Loaded);
        assert_eq!(outcome("e1000"), Outcome::Loaded, "a failed softdep does not stop it");
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::LoadModule(p, _) if p.ends_with("virtio_net.ko"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn built_in_loaded_and_compressed() {
        let (dir, root, index) = tree("states");
        let config = Config::default();
        let mut plan = planned(&index, &config, &["virtio_blk"]);
        plan.insert(0, Planned { module: "virtio_pci".into(), path: None, state: State::BuiltIn });
        plan.iter_mut().find(|p| p.module == "virtio_ring").unwrap().state = State::Loaded;
        let sys = Fake::failing(|c| {
            matches!(c, Call::LoadModule(p, _) if p.extension().is_some_and(|e| e == "xz")).then_some(22)
        });
        let results =
            load_plan(&sys, &root, Path::new("/lib/modules/6.1.0"), Rules { index: &index, config: &config }, &plan, 2);
        assert_eq!(results[0].outcome, Outcome::BuiltIn);
        assert_eq!(results[1].outcome, Outcome::AlreadyLoaded);
        let Outcome::Failed { message, .. } = &results.last().unwrap().outcome else { panic!("{results:#?}") };
        assert!(message.contains("Linux 6.4"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
