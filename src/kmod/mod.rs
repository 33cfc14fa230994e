//! Kernel modules without modprobe or udev (the image may have neither, and the kernel's
//! request_module needs modprobe): the index and configuration read as kmod reads them
//! ([`index`], [`config`]), resolution ([`resolve`]), coldplug ([`coldplug`]) and the
//! parallel loader ([`load`]); compressed module files unpacked for the builder ([`compressed`]).

pub mod coldplug;
pub mod compressed;
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
use crate::model::text::{escape, escape_path};

/// Largest index file read (Debian's modules.alias is about 1.3 MiB, modules.dep 400 KiB).
pub const INDEX_LIMIT: u64 = 16 << 20;

/// Whether `release` names a module dir, `/lib/modules/<release>`, and shows as it is: not
/// empty, no `/`, not `.` or `..`, nothing [`escape`] would change.
pub fn is_release(release: &str) -> bool {
    !release.is_empty()
        && !release.contains('/')
        && release != "."
        && release != ".."
        && escape(release.as_bytes()) == release
}

/// The files depmod writes into a module dir, as read; a missing one is empty.
#[derive(Debug, Default)]
pub struct IndexFiles {
    pub dep: Vec<u8>,
    pub alias: Vec<u8>,
    pub softdep: Vec<u8>,
    pub builtin: Vec<u8>,
    /// The built-in modules' aliases (only when asked for).
    pub builtin_modinfo: Vec<u8>,
}

impl IndexFiles {
    pub fn parse(&self) -> index::Index {
        index::Index::parse(&self.dep, &self.alias, &self.softdep, &self.builtin, &self.builtin_modinfo)
    }
}

/// The index files of the module dir `dir` (its host path, for messages), each read by `read`
/// (a name in the dir and the most bytes to read; `None` when missing, an error naming the
/// file); a missing one is empty, except modules.dep.
///
/// `builtin_aliases`: also the built-in modules' aliases (`modules.builtin.modinfo`, 100 KB and
/// more). They only tell that a device's driver is built in, never change what is loaded: the
/// boot and the builder leave them out (under emulation, over NFS, that file costs tens of
/// milliseconds); `stateless modules` reads them to say so.
pub fn read_index(
    dir: &Path,
    read: impl Fn(&str, u64) -> Result<Option<Vec<u8>>, String>,
    builtin_aliases: bool,
) -> Result<IndexFiles, String> {
    let dep = read("modules.dep", INDEX_LIMIT)?
        .ok_or_else(|| format!("{}: not found", escape_path(&dir.join("modules.dep"))))?;
    let optional = |name: &str| read(name, INDEX_LIMIT).map(Option::unwrap_or_default);
    Ok(IndexFiles {
        dep,
        alias: optional("modules.alias")?,
        softdep: optional("modules.softdep")?,
        builtin: optional("modules.builtin")?,
        builtin_modinfo: if builtin_aliases { optional("modules.builtin.modinfo")? } else { Vec::new() },
    })
}

/// [`read_index`] of the module dir `dir` (absolute, as `root` sees it), each file read as
/// `root` sees it.
pub fn read_index_in(root: &ImageRoot, dir: &Path, builtin_aliases: bool) -> Result<IndexFiles, String> {
    let read = |name: &str, limit| {
        let path = dir.join(name);
        root.read_file(&path, limit).map_err(|e| format!("{}: {e}", escape_path(&root.host_path(&path))))
    };
    read_index(&root.host_path(dir), read, builtin_aliases)
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
        if !is_release(release) {
            return Err(format!("kernel release \"{}\" names no module dir", escape(release.as_bytes())));
        }
        let dir = Path::new("/lib/modules").join(release);
        let index = read_index_in(root, &dir, false)?.parse();
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
                return Err(format!("module {} not in {}", escape(name.as_bytes()), escape_path(&self.dir)));
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
            Err(e) => note_problem(&mut config.problems, || format!("{}: {e}", escape(file.as_bytes()))),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn one_index_read_for_the_boot_the_builder_and_modules() {
        let asked = RefCell::new(Vec::new());
        let read = |name: &str, limit| {
            asked.borrow_mut().push((name.to_string(), limit));
            Ok((name == "modules.dep").then(|| b"kernel/a.ko:\n".to_vec()))
        };
        let files = read_index(Path::new("/m"), read, false).unwrap();
        let each = |names: &[&str]| names.iter().map(|n| (n.to_string(), INDEX_LIMIT)).collect::<Vec<_>>();
        let index = ["modules.dep", "modules.alias", "modules.softdep", "modules.builtin"];
        assert_eq!(*asked.borrow(), each(&index), "the same files, each with the same limit");
        assert!(files.parse().modules.contains_key("a"));
        asked.borrow_mut().clear();
        read_index(Path::new("/m"), read, true).unwrap();
        assert_eq!(asked.borrow().last(), each(&["modules.builtin.modinfo"]).last());
        let missing = read_index(Path::new("/m\u{1b}"), |_, _| Ok(None), false).unwrap_err();
        assert_eq!(missing, "/m\\x1b/modules.dep: not found");
        let failed = read_index(Path::new("/m"), |name, _| Err(format!("{name}: no")), false).unwrap_err();
        assert_eq!(failed, "modules.dep: no");
    }

    #[test]
    fn a_release_names_a_module_dir_and_shows_as_it_is() {
        assert!(is_release("6.1.0-18-amd64") && is_release("5.15.0+"));
        for bad in ["", ".", "..", "a/b", "6.1\u{1b}[2J", "6.1\u{9b}", "6.1\u{202e}", "a\\b"] {
            assert!(!is_release(bad), "{bad:?}");
        }
    }

    #[test]
    fn what_the_boot_logs_of_a_kernel_is_escaped() {
        let dir = std::env::temp_dir().join(format!("stateless-kmod-\u{1b}-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib/modules/6.1.0")).unwrap();
        let root = ImageRoot::open(&dir).unwrap();
        let shown = escape_path(&dir);
        assert!(shown.contains("\\x1b"));
        let none = Kernel::open(&root, "6.1.0", &ModuleOptions::default(), None).err();
        assert_eq!(none.unwrap(), format!("{shown}/lib/modules/6.1.0/modules.dep: not found"));
        let bad = Kernel::open(&root, "6.1\u{9b}", &ModuleOptions::default(), None).err();
        assert_eq!(bad.unwrap(), "kernel release \"6.1\\xc2\\x9b\" names no module dir");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("lib/modules/6.1.0/modules.dep"),
            rustix::fs::FileType::Fifo,
            0o644.into(),
            0,
        )
        .unwrap();
        let fifo = Kernel::open(&root, "6.1.0", &ModuleOptions::default(), None).err();
        assert_eq!(fifo.unwrap(), format!("{shown}/lib/modules/6.1.0/modules.dep: not a regular file: left unopened"));
        std::fs::remove_file(dir.join("lib/modules/6.1.0/modules.dep")).unwrap();
        std::fs::write(dir.join("lib/modules/6.1.0/modules.dep"), "kernel/a.ko:\n").unwrap();
        let kernel = Kernel::open(&root, "6.1.0", &ModuleOptions::default(), None).unwrap();
        let missing = kernel.plan_names(&["b\u{1b}".to_string()], &BTreeSet::new()).err();
        assert_eq!(missing.unwrap(), "module b\\x1b not in /lib/modules/6.1.0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
