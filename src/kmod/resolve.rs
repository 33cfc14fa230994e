//! From names and modaliases to the modules to load, as kmod resolves them: a name is looked up
//! as a module (`modules.dep`), then as a built-in module, then as an alias (`modules.alias`
//! patterns, else the built-in modules' aliases); the probe list of a module is kmod's:
//! for each dependency (farthest first) its softdeps `pre:`, the dependency, its `post:`; then
//! the module's own `pre:`, the module, its `post:`. Each module appears once.

use std::collections::BTreeSet;

use super::config::Config;
use super::fnmatch;
use super::index::{normalize, normalize_alias, Index, Softdep};

/// What a name or modalias resolved to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// The module (normalised name).
    pub module: String,
    /// The alias pattern that matched, when it was an alias.
    pub pattern: Option<String>,
    pub builtin: bool,
}

/// The index of a kernel and the configuration over it: everything resolution reads.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub index: &'a Index,
    pub config: &'a Config,
}

/// One entry of a probe list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub module: String,
    /// Its file relative to the module dir; `None` for a built-in module, or one the index
    /// names but does not list (a broken index: loading it fails).
    pub path: Option<String>,
    pub builtin: bool,
}

/// Deepest softdep chain followed (kmod recurses without a bound; a hostile index must not
/// overflow PID 1's stack).
const MAX_SOFTDEP_DEPTH: usize = 64;
/// Longest probe list (Debian's kernel has about 4,000 modules).
pub const MAX_PLAN: usize = 8192;

impl Rules<'_> {
    /// Resolves `name` as `modprobe -R` does, the sources in kmod's order, the first that
    /// gives anything winning: configuration aliases, a module of that name, `modules.alias`,
    /// a built-in module of that name, the built-in modules' aliases. Empty when nothing matches.
    pub fn lookup(&self, name: &str) -> Vec<Found> {
        let Some(alias) = normalize_alias(name) else { return Vec::new() };
        let by_pattern = |aliases: &[(Vec<u8>, String)], builtin: bool| {
            let mut found: Vec<Found> = Vec::new();
            for (pattern, module) in aliases {
                if fnmatch::matches(pattern, alias.as_bytes()) && !found.iter().any(|f| f.module == *module) {
                    let pattern = Some(String::from_utf8_lossy(pattern).into_owned());
                    found.push(Found { module: module.clone(), pattern, builtin });
                }
            }
            found
        };
        let module = normalize(name);
        let config = by_pattern(&self.config.aliases, false);
        if !config.is_empty() {
            // A configuration alias names a module, which may be built in.
            return config
                .into_iter()
                .map(|f| Found { builtin: !self.index.modules.contains_key(&f.module), ..f })
                .collect();
        }
        if self.index.modules.contains_key(&module) {
            return vec![Found { module, pattern: None, builtin: false }];
        }
        let aliases = by_pattern(&self.index.aliases, false);
        if !aliases.is_empty() {
            return aliases;
        }
        if self.index.builtin.contains(&module) {
            return vec![Found { module, pattern: None, builtin: true }];
        }
        by_pattern(&self.index.builtin_aliases, true)
    }

    /// The softdep of `module`: the first entry whose pattern matches it, in kmod's order.
    pub fn softdep(&self, module: &str) -> Option<&Softdep> {
        let matching = |(pattern, _): &&(String, Softdep)| fnmatch::matches(pattern.as_bytes(), module.as_bytes());
        let config = &self.config;
        config.softdeps_before.iter().find(matching).map(|(_, s)| s).or_else(|| {
            self.index.softdep(module).or_else(|| config.softdeps_after.iter().find(matching).map(|(_, s)| s))
        })
    }

    /// The probe list of `module` (normalised name), dependencies and softdeps first, each
    /// module once, continuing `ordered` (modules already in it are not added again). Names a
    /// softdep gives that resolve to nothing are skipped, as kmod does.
    pub fn probe_list(&self, module: &str, ordered: &mut Vec<Probe>) {
        let mut visited = BTreeSet::new();
        self.visit(module, 0, &mut visited, ordered);
    }

    fn visit(&self, module: &str, depth: usize, visited: &mut BTreeSet<String>, out: &mut Vec<Probe>) {
        // Bounded: each module is visited once per list, softdep chains only so deep (PID 1's
        // stack, against a hostile index), and a list only so long.
        if depth > MAX_SOFTDEP_DEPTH || out.len() >= MAX_PLAN || !visited.insert(module.to_string()) {
            return;
        }
        if let Some(entry) = self.index.modules.get(module) {
            for dep in entry.deps.iter().rev() {
                self.with_softdeps(dep, depth, visited, out);
            }
        }
        self.with_softdeps(module, depth, visited, out);
    }

    fn with_softdeps(&self, module: &str, depth: usize, visited: &mut BTreeSet<String>, out: &mut Vec<Probe>) {
        let softdep = self.softdep(module);
        for pre in softdep.map(|s| s.pre.as_slice()).unwrap_or_default() {
            for found in self.lookup(pre) {
                self.visit(&found.module, depth + 1, visited, out);
            }
        }
        if !out.iter().any(|s| s.module == module) && out.len() < MAX_PLAN {
            let path = self.index.modules.get(module).map(|m| m.path.clone());
            let builtin = path.is_none() && self.index.builtin.contains(module);
            out.push(Probe { module: module.to_string(), path, builtin });
        }
        for post in softdep.map(|s| s.post.as_slice()).unwrap_or_default() {
            for found in self.lookup(post) {
                self.visit(&found.module, depth + 1, visited, out);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn index() -> Index {
        let dep = b"kernel/fs/btrfs/btrfs.ko: kernel/crypto/xor.ko kernel/lib/raid6/raid6_pq.ko kernel/lib/libcrc32c.ko\n\
            kernel/crypto/xor.ko:\nkernel/lib/raid6/raid6_pq.ko:\nkernel/lib/libcrc32c.ko:\n\
            kernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/crypto/crc32c_generic.ko:\nkernel/crypto/blake2b_generic.ko:\n\
            kernel/drivers/net/e1000/e1000.ko:\n";
        let alias = b"alias crypto-crc32c crc32c_intel\nalias crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\n\
            alias crc32c crc32c_generic\nalias blake2b-256 blake2b_generic\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n";
        let softdep = b"softdep btrfs pre: crypto-crc32c blake2b-256\nsoftdep libcrc32c pre: crc32c\n";
        Index::parse(
            dep,
            alias,
            softdep,
            b"kernel/drivers/virtio/virtio_pci.ko\n",
            b"virtio_pci.alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0",
        )
    }

    #[test]
    fn lookup_as_modprobe_resolves() {
        let index = index();
        let config = Config::default();
        let rules = Rules { index: &index, config: &config };
        let names = |name: &str| rules.lookup(name).into_iter().map(|f| (f.module, f.builtin)).collect::<Vec<_>>();
        assert_eq!(names("crc32c-intel"), [("crc32c_intel".into(), false)], "a module name, - as _");
        assert_eq!(names("crc32c"), [("crc32c_intel".into(), false), ("crc32c_generic".into(), false)]);
        assert_eq!(names("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"), [("e1000".into(), false)]);
        assert_eq!(names("pci:v00001AF4d00001041sv00001AF4sd00001041bc02sc00i00"), [("virtio_pci".into(), true)]);
        assert_eq!(names("virtio_pci"), [("virtio_pci".into(), true)]);
        assert!(names("acpi:PNP0303:").is_empty());
    }

    #[test]
    fn probe_list_is_kmods() {
        let index = index();
        let config = Config::default();
        let rules = Rules { index: &index, config: &config };
        let mut list = Vec::new();
        rules.probe_list("btrfs", &mut list);
        let names: Vec<&str> = list.iter().map(|s| s.module.as_str()).collect();
        // What `modprobe --show-depends btrfs` prints for these files.
        assert_eq!(
            names,
            ["crc32c_intel", "crc32c_generic", "libcrc32c", "raid6_pq", "xor", "blake2b_generic", "btrfs"]
        );
        assert_eq!(list[2].path.as_deref(), Some("kernel/lib/libcrc32c.ko"));
        // A second list continues the first: nothing twice.
        rules.probe_list("libcrc32c", &mut list);
        assert_eq!(list.len(), 7);
    }

    #[test]
    fn a_hostile_softdep_chain_cannot_overflow_the_stack() {
        let n = 20_000;
        let dep: String = (0..n).map(|i| format!("kernel/m{i}.ko:\n")).collect();
        let softdep: String = (0..n).map(|i| format!("softdep m{i} pre: m{}\n", i + 1)).collect();
        let index = Index::parse(dep.as_bytes(), b"", softdep.as_bytes(), b"", b"");
        // As a loader thread would: a 2 MiB stack.
        let list = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let mut list = Vec::new();
                Rules { index: &index, config: &Config::default() }.probe_list("m0", &mut list);
                list.len()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(list <= MAX_SOFTDEP_DEPTH + 2, "{list}");
    }

    #[test]
    fn softdep_cycles_end() {
        let dep = b"kernel/a.ko:\nkernel/b.ko:\n";
        let index = Index::parse(dep, b"", b"softdep a pre: b\nsoftdep b pre: a post: a\n", b"", b"");
        let mut list = Vec::new();
        Rules { index: &index, config: &Config::default() }.probe_list("a", &mut list);
        let names: Vec<&str> = list.iter().map(|s| s.module.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
    }
}
