//! Loading a coldplug plan: `finit_module` for every module to load, in parallel threads, each
//! module only once everything it needs is done: its `modules.dep` dependencies loaded (if one
//! failed, it is not tried) and its softdep `pre:` modules tried (their failure does not stop
//! it, as in kmod). Every result is reported with the time it took.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

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
pub enum LoadOutcome {
    Loaded,
    /// In the kernel already (`EEXIST`, or listed in /proc/modules when planned).
    AlreadyLoaded,
    BuiltIn,
    /// `ENODEV`: the driver found no device it drives (a CPU feature driver on another vendor's
    /// CPU, a VM's missing hardware). Not a failure, as for udev (systemd's module loading
    /// logs it as a notice and goes on).
    NoDevice {
        message: String,
    },
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
    pub outcome: LoadOutcome,
    /// Time spent in open and finit_module.
    pub ms: u64,
    /// The file opened, relative to the module dir (`kernel/drivers/block/virtio_blk.ko.xz`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A module to load and what it waits for (indices into the job list).
struct Job {
    planned: Planned,
    /// `modules.dep` dependencies: a failure among them skips this module.
    hard: Vec<usize>,
    /// softdep `pre:` modules: tried first, their failure ignored.
    soft: Vec<usize>,
    progress: Progress,
    result: Option<Loaded>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    Waiting,
    Running,
    Done(bool),
}

/// Where more modules come from while loading: given the modules planned so far, those newly
/// needed (coldplug: the drivers of devices that appeared). Called by an idle thread.
pub type More<'a> = &'a (dyn Fn(&BTreeSet<String>) -> Vec<Planned> + Sync);

/// No more modules than planned.
pub fn no_more(_: &BTreeSet<String>) -> Vec<Planned> {
    Vec::new()
}

/// How long an idle thread waits for a change before it looks again, and how long in all new
/// modules are looked for.
const RESCAN: Duration = Duration::from_millis(50);
const RESCAN_BOUND: Duration = Duration::from_secs(30);

struct Queue {
    jobs: Vec<Job>,
    /// For a module, the jobs whose softdep `post:` names it: it loads after them.
    post_of: std::collections::BTreeMap<String, Vec<usize>>,
    planned: BTreeSet<String>,
    /// A thread is asking `more` (outside the lock).
    scanning: bool,
    /// Modules finished since `more` was last asked: only a loaded driver makes devices appear,
    /// so asking again before one finished would only cost time.
    finished_since_scan: usize,
    /// Nothing left to run, nothing running, nothing new: every thread stops.
    done: bool,
}

impl Queue {
    /// Appends `plan`, each module's prerequisites found among the jobs before it.
    fn add(&mut self, rules: Rules<'_>, plan: Vec<Planned>) {
        for planned in plan {
            if !self.planned.insert(planned.module.clone()) {
                continue;
            }
            let index_of = |name: &str| self.jobs.iter().position(|j| j.planned.module == name);
            let deps = rules.index.modules.get(&planned.module).map(|m| m.deps.as_slice()).unwrap_or_default();
            let hard = deps.iter().filter_map(|d| index_of(d)).collect();
            let softdep = rules.softdep(&planned.module).cloned().unwrap_or_default();
            let mut soft: Vec<usize> =
                softdep.pre.iter().flat_map(|p| rules.lookup(p)).filter_map(|f| index_of(&f.module)).collect();
            soft.extend(self.post_of.get(&planned.module).into_iter().flatten());
            for found in softdep.post.iter().flat_map(|p| rules.lookup(p)) {
                self.post_of.entry(found.module).or_default().push(self.jobs.len());
            }
            let done = |outcome| {
                (Progress::Done(true), Some(Loaded { module: planned.module.clone(), outcome, ms: 0, file: None }))
            };
            let (progress, result) = match planned.state {
                State::BuiltIn => done(LoadOutcome::BuiltIn),
                State::Loaded => done(LoadOutcome::AlreadyLoaded),
                State::Missing => {
                    let message = format!("{}: not in modules.dep", planned.module);
                    let outcome = LoadOutcome::Failed { errno: Some(rustix::io::Errno::NOENT.raw_os_error()), message };
                    (Progress::Done(false), Some(Loaded { module: planned.module.clone(), outcome, ms: 0, file: None }))
                }
                State::Load => (Progress::Waiting, None),
            };
            self.jobs.push(Job { planned, hard, soft, progress, result });
        }
    }

    fn finished(&self, i: usize) -> bool {
        self.jobs.get(i).is_some_and(|j| matches!(j.progress, Progress::Done(_)))
    }

    fn succeeded(&self, i: usize) -> bool {
        self.jobs.get(i).is_some_and(|j| j.progress == Progress::Done(true))
    }

    /// The next job to run, or one to skip (a hard dependency failed) with that dependency.
    fn next(&self) -> Option<(usize, Option<usize>)> {
        for (i, job) in self.jobs.iter().enumerate().filter(|(_, j)| j.progress == Progress::Waiting) {
            if let Some(&failed) = job.hard.iter().find(|&&d| self.finished(d) && !self.succeeded(d)) {
                return Some((i, Some(failed)));
            }
            if job.hard.iter().chain(&job.soft).all(|&d| self.finished(d)) {
                return Some((i, None));
            }
        }
        None
    }
}

/// Loads `plan` (from [`super::coldplug::plan`]) from the module dir `dir` as `root` sees it,
/// with `threads` threads (1 to [`MAX_THREADS`]), parameters from `rules.config`, and what
/// `more` adds while they run (each module once). The results come in the order planned.
pub fn load_plan(
    sys: &dyn Sys,
    root: &ImageRoot,
    dir: &Path,
    rules: Rules<'_>,
    plan: Vec<Planned>,
    threads: usize,
    more: More<'_>,
) -> Vec<Loaded> {
    let mut queue = Queue {
        jobs: Vec::new(),
        post_of: Default::default(),
        planned: BTreeSet::new(),
        scanning: false,
        finished_since_scan: 0,
        done: false,
    };
    queue.add(rules, plan);
    let state = Mutex::new(queue);
    let changed = Condvar::new();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let work = || worker(sys, root, dir, rules, more, started, &state, &changed);
        let spawned = (0..threads.clamp(1, MAX_THREADS))
            .filter(|_| std::thread::Builder::new().spawn_scoped(scope, work).is_ok())
            .count();
        if spawned == 0 {
            // No thread could be made (memory, limits): load here, one by one.
            work();
        }
    });
    let queue = state.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    queue.jobs.into_iter().filter_map(|j| j.result).collect()
}

#[allow(clippy::too_many_arguments)]
fn worker(
    sys: &dyn Sys,
    root: &ImageRoot,
    dir: &Path,
    rules: Rules<'_>,
    more: More<'_>,
    started: Instant,
    state: &Mutex<Queue>,
    changed: &Condvar,
) {
    let Ok(mut queue) = state.lock() else { return };
    loop {
        if queue.done {
            return;
        }
        match queue.next() {
            Some((i, Some(dep))) => {
                // What needs a driver that found no device has none either (amd64_edac after
                // edac_mce_amd): no failure.
                let outcome = match queue.jobs.get(dep).and_then(|d| d.result.as_ref()) {
                    Some(Loaded { module, outcome: LoadOutcome::NoDevice { .. }, .. }) => {
                        LoadOutcome::NoDevice { message: format!("not loaded: dependency {module} found no device") }
                    }
                    failed => {
                        let module = failed.map_or("?", |d| d.module.as_str());
                        LoadOutcome::Skipped { because: format!("dependency {module} failed") }
                    }
                };
                if let Some(job) = queue.jobs.get_mut(i) {
                    let module = job.planned.module.clone();
                    job.progress = Progress::Done(false);
                    job.result = Some(Loaded { module, outcome, ms: 0, file: None });
                }
                changed.notify_all();
            }
            Some((i, None)) => {
                let Some(job) = queue.jobs.get_mut(i) else { return };
                job.progress = Progress::Running;
                let planned = job.planned.clone();
                drop(queue);
                let began = Instant::now();
                let outcome = load_one(sys, root, dir, rules, &planned);
                let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
                let ok = matches!(outcome, LoadOutcome::Loaded | LoadOutcome::AlreadyLoaded);
                queue = match state.lock() {
                    Ok(queue) => queue,
                    Err(_) => return,
                };
                if let Some(job) = queue.jobs.get_mut(i) {
                    job.progress = Progress::Done(ok);
                    job.result = Some(Loaded { module: planned.module, outcome, ms, file: planned.path });
                }
                queue.finished_since_scan += 1;
                changed.notify_all();
            }
            None => {
                let running = queue.jobs.iter().any(|j| j.progress == Progress::Running);
                let due = queue.finished_since_scan > 0 || !running;
                if !queue.scanning && due && started.elapsed() < RESCAN_BOUND {
                    // Look for new devices' drivers while the others load, not after.
                    queue.scanning = true;
                    queue.finished_since_scan = 0;
                    let planned = queue.planned.clone();
                    drop(queue);
                    let found = more(&planned);
                    queue = match state.lock() {
                        Ok(queue) => queue,
                        Err(_) => return,
                    };
                    queue.scanning = false;
                    let before = queue.jobs.len();
                    queue.add(rules, found);
                    if queue.jobs.len() > before {
                        changed.notify_all();
                        continue;
                    }
                    if !running && !queue.jobs.iter().any(|j| j.progress == Progress::Running) {
                        // Nothing to run, nothing running, nothing new: done.
                        queue.done = true;
                        changed.notify_all();
                        return;
                    }
                }
                if !running && !queue.scanning && queue.next().is_none() && started.elapsed() >= RESCAN_BOUND {
                    queue.done = true;
                    changed.notify_all();
                    return;
                }
                queue = match changed.wait_timeout(queue, RESCAN) {
                    Ok((queue, _)) => queue,
                    Err(_) => return,
                };
            }
        }
    }
}

/// Opens a module file: beneath the module dir (no symlink out of it, no magic link), and only
/// a regular file: anything else (a device, whose open may act, a fifo) is never opened.
fn open_module(root: &ImageRoot, dir: &Path, file: &str) -> rustix::io::Result<rustix::fd::OwnedFd> {
    let dir = root.open_file(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)?;
    crate::fs::tree::open_regular(&crate::fs::tree::open_beneath(dir.as_fd(), Path::new(file), OFlags::PATH)?)
}

fn load_one(sys: &dyn Sys, root: &ImageRoot, dir: &Path, rules: Rules<'_>, planned: &Planned) -> LoadOutcome {
    let Some(file) = &planned.path else { return LoadOutcome::BuiltIn };
    let shown = root.host_path(dir.join(file));
    let opened = match open_module(root, dir, file) {
        Ok(fd) => fd,
        Err(e) => {
            let message =
                format!("open {}: {e} (a module file is a regular file inside the module dir)", shown.display());
            return LoadOutcome::Failed { errno: Some(e.raw_os_error()), message };
        }
    };
    match sys.load_module(opened.as_fd(), &shown, &rules.config.params(&planned.module)) {
        Ok(()) => LoadOutcome::Loaded,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => LoadOutcome::AlreadyLoaded,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) => {
            LoadOutcome::NoDevice { message: format!("load {}: {e}", shown.display()) }
        }
        Err(e) => {
            let refused = [rustix::io::Errno::INVAL, rustix::io::Errno::OPNOTSUPP].map(|e| Some(e.raw_os_error()));
            let hint = if !file.ends_with(".ko") && refused.contains(&e.raw_os_error()) {
                " (a compressed module: the kernel decompresses it itself only from Linux 6.4, with CONFIG_MODULE_DECOMPRESS)"
            } else {
                ""
            };
            LoadOutcome::Failed { errno: e.raw_os_error(), message: format!("load {}: {e}{hint}", shown.display()) }
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
        kernel/crc32c_generic.ko:\nkernel/e1000.ko:\nkernel/zstd_m.ko.zst:\nkernel/gzip_m.ko.gz:\n";

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
            "zstd_m.ko.zst",
            "gzip_m.ko.gz",
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

    /// `load_plan` on the test tree's module dir, with nothing more to find.
    fn load(
        sys: &Fake,
        root: &ImageRoot,
        index: &Index,
        config: &Config,
        plan: Vec<Planned>,
        threads: usize,
    ) -> Vec<Loaded> {
        load_plan(sys, root, Path::new("/lib/modules/6.1.0"), Rules { index, config }, plan, threads, &no_more)
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
        let results = load(&sys, &root, &index, &config, plan.clone(), 4);
        assert!(results.iter().all(|r| r.outcome == LoadOutcome::Loaded), "{results:#?}");
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
        let results = load(&sys, &root, &index, &config, plan.clone(), 3);
        let outcome = |m: &str| results.iter().find(|r| r.module == m).unwrap().outcome.clone();
        assert!(matches!(outcome("virtio"), LoadOutcome::Failed { errno: Some(8), .. }));
        assert_eq!(outcome("virtio_net"), LoadOutcome::Skipped { because: "dependency virtio failed".into() });
        assert_eq!(outcome("failover"), LoadOutcome::Loaded);
        assert_eq!(outcome("e1000"), LoadOutcome::Loaded, "a failed softdep does not stop it");
        assert!(!sys.calls().iter().any(|c| matches!(c, Call::LoadModule(p, _) if p.ends_with("virtio_net.ko"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn module_files_must_be_regular_files_inside_the_module_dir() {
        let (dir, root, index) = tree("files");
        let kernel = dir.join("lib/modules/6.1.0/kernel");
        std::fs::remove_file(kernel.join("e1000.ko")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, kernel.join("e1000.ko"), rustix::fs::FileType::Fifo, 0o644.into(), 0)
            .unwrap();
        // inotify sees every open for I/O (not an O_PATH one): the fifo's watch must stay silent.
        use rustix::fs::inotify::{self, CreateFlags, Reader, WatchFlags};
        let watch = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).unwrap();
        inotify::add_watch(&watch, kernel.join("e1000.ko"), WatchFlags::OPEN).unwrap();
        std::fs::write(dir.join("evil.ko"), "").unwrap();
        std::fs::remove_file(kernel.join("failover.ko")).unwrap();
        std::os::unix::fs::symlink("../../../../evil.ko", kernel.join("failover.ko")).unwrap();
        let config = Config::default();
        let plan = planned(&index, &config, &["e1000", "failover"]);
        let sys = Fake::default();
        let started = Instant::now();
        let results = load(&sys, &root, &index, &config, plan, 2);
        assert!(started.elapsed() < Duration::from_secs(5), "a FIFO must not block");
        for module in ["e1000", "failover"] {
            let r = results.iter().find(|r| r.module == module).unwrap();
            assert!(
                matches!(&r.outcome, LoadOutcome::Failed { message, .. } if message.contains("regular file inside the module dir")),
                "{r:?}"
            );
        }
        let loaded_from =
            |name: &str| sys.calls().iter().any(|c| matches!(c, Call::LoadModule(p, _) if p.ends_with(name)));
        assert!(!loaded_from("e1000.ko") && !loaded_from("failover.ko") && !loaded_from("evil.ko"));
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        assert!(Reader::new(&watch, &mut buf).next().is_err(), "the fifo was never opened");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn post_softdeps_load_after_their_module() {
        let (dir, root, _) = tree("post");
        let index = Index::parse(DEP.as_bytes(), b"", b"softdep e1000 post: crc32c_generic\n", b"", b"");
        let config = Config::default();
        let plan = planned(&index, &config, &["e1000"]);
        assert_eq!(plan.iter().map(|p| p.module.as_str()).collect::<Vec<_>>(), ["e1000", "crc32c_generic"]);
        let sys = Fake::default();
        load(&sys, &root, &index, &config, plan, 4);
        let calls = sys.calls();
        assert!(position(&calls, "e1000") < position(&calls, "crc32c_generic"), "{calls:#?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_form_distributions_ship_is_handed_to_the_kernel() {
        let (dir, root, index) = tree("forms");
        let config = Config::default();
        let plan = planned(&index, &config, &["e1000", "virtio_blk", "zstd_m", "gzip_m"]);
        let sys = Fake::default();
        let results = load(&sys, &root, &index, &config, plan, 1);
        assert!(results.iter().all(|r| r.outcome == LoadOutcome::Loaded), "{results:#?}");
        let files: Vec<String> = sys
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::LoadModule(p, _) => Some(p.file_name().unwrap().to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        for form in ["e1000.ko", "virtio_blk.ko.xz", "zstd_m.ko.zst", "gzip_m.ko.gz"] {
            assert!(files.iter().any(|f| f == form), "{form}: {files:?}");
        }
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
        let results = load(&sys, &root, &index, &config, plan.clone(), 2);
        assert_eq!(results[0].outcome, LoadOutcome::BuiltIn);
        assert_eq!(results[1].outcome, LoadOutcome::AlreadyLoaded);
        let LoadOutcome::Failed { message, .. } = &results.last().unwrap().outcome else { panic!("{results:#?}") };
        assert!(message.contains("Linux 6.4"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_driver_finding_no_device_is_no_failure_nor_what_needs_it() {
        let (dir, root, index) = tree("nodev");
        let config = Config::default();
        let plan = planned(&index, &config, &["virtio_blk"]);
        let sys = Fake::failing(|c| {
            matches!(c, Call::LoadModule(p, _) if p.file_name().is_some_and(|n| n == "virtio_ring.ko")).then_some(19)
        });
        let results = load(&sys, &root, &index, &config, plan, 1);
        let of = |m: &str| results.iter().find(|r| r.module == m).unwrap();
        let LoadOutcome::NoDevice { message } = &of("virtio_ring").outcome else { panic!("{results:#?}") };
        assert!(message.contains("virtio_ring.ko: No such device"), "{message}");
        // virtio needs virtio_ring, virtio_blk both.
        let LoadOutcome::NoDevice { message } = &of("virtio").outcome else { panic!("{results:#?}") };
        assert_eq!(message, "not loaded: dependency virtio_ring found no device");
        assert!(matches!(of("virtio_blk").outcome, LoadOutcome::NoDevice { .. }), "{results:#?}");
        assert!(!results.iter().any(|r| matches!(r.outcome, LoadOutcome::Failed { .. } | LoadOutcome::Skipped { .. })));
        let plan = planned(&index, &config, &["e1000"]);
        let loaded = load(&sys, &root, &index, &config, plan, 1);
        let e1000 = loaded.iter().find(|r| r.module == "e1000").unwrap();
        assert_eq!(e1000.file.as_deref(), Some("kernel/e1000.ko"), "the file loaded is named: {loaded:#?}");
        let json = serde_json::to_value(of("virtio_ring")).unwrap();
        assert_eq!(
            (json["result"].as_str(), json["file"].as_str()),
            (Some("no-device"), Some("kernel/virtio_ring.ko"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
