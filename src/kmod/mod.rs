//! Kernel modules without modprobe or udev (the image may have neither, and the kernel's
//! request_module needs modprobe): the index and configuration read as kmod reads them
//! ([`index`], [`config`]), resolution ([`resolve`]), coldplug ([`coldplug`]) and the
//! parallel loader ([`load`]).

pub mod coldplug;
pub mod config;
pub mod fnmatch;
pub mod index;
pub mod load;
pub mod resolve;

/// At most this many problems of an index or configuration are kept (and logged, one line
/// each): a hostile index of millions of bad lines must not fill PID 1's memory and the log.
pub const MAX_PROBLEMS: usize = 100;

/// Adds a problem to `problems` unless it holds [`MAX_PROBLEMS`] already; the first one left
/// out adds a last line saying so.
pub fn note_problem(problems: &mut Vec<String>, problem: impl FnOnce() -> String) {
    match problems.len() {
        n if n < MAX_PROBLEMS => problems.push(problem()),
        MAX_PROBLEMS => problems.push(format!("more problems than {MAX_PROBLEMS}: the rest are not listed")),
        _ => {}
    }
}

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::fs::root::ImageRoot;
use crate::model::options::ModuleOptions;

/// Largest index file read (Debian's modules.alias is about 1.3 MiB, modules.dep 400 KiB).
const MODULES_DEP_LIMIT: u64 = 16 << 20;

/// The index of the module dir `dir` (absolute, as `root` sees it): the files depmod writes,
/// each read as `root` sees it; a missing one is empty, except modules.dep.
///
/// `builtin_aliases`: also the built-in modules' aliases (`modules.builtin.modinfo`, 100 KB and
/// more). They only tell that a device's driver is built in, never change what is loaded: the
/// boot leaves them out (under emulation, over NFS, that file costs tens of milliseconds);
/// `stateless modules` reads them to say so.
pub fn read_index(root: &ImageRoot, dir: &Path, builtin_aliases: bool) -> Result<index::Index, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        match root.read_file(&path.to_string_lossy(), MODULES_DEP_LIMIT) {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(format!("{}: {e}", root.host_path(&path).display())),
        }
    };
    let dep = read("modules.dep")?
        .ok_or_else(|| format!("{}: not found", root.host_path(dir.join("modules.dep")).display()))?;
    let optional = |name: &str| read(name).map(Option::unwrap_or_default);
    Ok(index::Index::parse(
        &dep,
        &optional("modules.alias")?,
        &optional("modules.softdep")?,
        &optional("modules.builtin")?,
        &if builtin_aliases { optional("modules.builtin.modinfo")? } else { Vec::new() },
    ))
}

/// A kernel's modules as the boot sees them: the module dir in the root `stateless` runs in,
/// its index, and the configuration (that root's modprobe.d and the command line).
pub struct Kernel {
    /// `/lib/modules/<release>`, as the root sees it.
    pub dir: PathBuf,
    pub index: index::Index,
    pub config: config::Config,
}

impl Kernel {
    /// Reads the index of `/lib/modules/<release>` and the modprobe.d files of `root`; `base`
    /// (a root and the base layer's dir in it) adds the base layer's `etc/modprobe.d` above
    /// them, as the copy of it in /etc would be: a coldplug before the network knows the layer
    /// every client gets, not yet the others (chosen by the network phase).
    pub fn open(
        root: &ImageRoot,
        release: &str,
        options: &ModuleOptions,
        base: Option<(&ImageRoot, &str)>,
    ) -> Result<Kernel, String> {
        if release.is_empty() || release.contains('/') || release == ".." || release == "." {
            return Err(format!("kernel release {release:?} names no module dir"));
        }
        let dir = Path::new("/lib/modules").join(release);
        let index = read_index(root, &dir, false)?;
        Ok(Kernel { dir, index, config: root_config(root, base, options) })
    }

    pub fn rules(&self) -> resolve::Rules<'_> {
        resolve::Rules { index: &self.index, config: &self.config }
    }

    /// Loads `names` (as modprobe would, by name or alias, with dependencies and softdeps):
    /// the probe lists in order, each module once.
    pub fn plan_names(&self, names: &[String], loaded: &BTreeSet<String>) -> Result<Vec<coldplug::Planned>, String> {
        let rules = self.rules();
        let mut order = Vec::new();
        for name in names {
            let found = rules.lookup(name);
            if found.is_empty() {
                return Err(format!("module {name} not in {}", self.dir.display()));
            }
            for f in found {
                rules.probe_list(&f.module, &mut order);
            }
        }
        Ok(coldplug::planned(order, loaded))
    }
}

/// The configuration of `root`: its modprobe.d dirs, below the base layer's `etc/modprobe.d`
/// when `base` (a root and the layer's dir in it) is given, then the command line's.
pub fn root_config(root: &ImageRoot, base: Option<(&ImageRoot, &str)>, options: &ModuleOptions) -> config::Config {
    let mut sources: Vec<(&ImageRoot, String)> = Vec::new();
    if let Some((layers_root, layer)) = base {
        sources.push((layers_root, format!("{}/etc/modprobe.d", layer.trim_matches('/'))));
    }
    sources.extend(config::DIRS.iter().map(|d| (root, d.to_string())));
    read_config(&sources, options)
}

/// The configuration from the `*.conf` files of `sources` (a root and a dir in it, highest
/// priority first) in kmod's order, then the command line's.
fn read_config(sources: &[(&ImageRoot, String)], options: &ModuleOptions) -> config::Config {
    let mut config = config::Config::default();
    let listings: Vec<Vec<String>> = sources.iter().map(|(r, d)| list(r, d)).collect();
    for (source, name) in config::files(&listings) {
        let Some((from, dir)) = sources.get(source) else { continue };
        let file = format!("/{dir}/{name}");
        match from.read_file(&file, CONFIG_LIMIT) {
            Ok(Some(text)) => config.add_file(&file, &text),
            Ok(None) => {}
            Err(e) => note_problem(&mut config.problems, || format!("{file}: {e}")),
        }
    }
    config.add_cmdline(options);
    config
}

/// Largest modprobe.d file read.
const CONFIG_LIMIT: u64 = 1 << 20;

/// The file names in `root`'s dir `rel` (none when it is missing or a symlink).
fn list(root: &ImageRoot, rel: &str) -> Vec<String> {
    let Ok(dir) = root.dir(rel) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir.path) else { return Vec::new() };
    entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect()
}
