//! The module index of one kernel, from the text files depmod writes into
//! `/lib/modules/<release>/`: `modules.dep`, `modules.alias`, `modules.softdep`,
//! `modules.builtin` and `modules.builtin.modinfo`. They are untrusted input (an image can carry
//! anything there): every line is checked, a bad one is skipped and named in `problems`, a path
//! that would leave the module dir (absolute, `..`) is refused, and the work is linear in the
//! size of the files.

use std::collections::{BTreeMap, BTreeSet};

/// Longest line taken from an index file; a longer one is refused.
pub const LINE_LIMIT: usize = 64 * 1024;

/// Module file suffixes depmod lists: plain and compressed.
pub const SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// A module as `modules.dep` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Its file, relative to the module dir (`kernel/drivers/net/virtio_net.ko.xz`).
    pub path: String,
    /// What it depends on, directly or not, as names, in depmod's order (nearest first).
    pub deps: Vec<String>,
}

/// `softdep NAME pre: ... post: ...`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Softdep {
    pub pre: Vec<String>,
    pub post: Vec<String>,
}

/// Everything resolution needs, names normalised (`-` as `_`).
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub modules: BTreeMap<String, Module>,
    /// `modules.alias`, in file order: (pattern, module).
    pub aliases: Vec<(Vec<u8>, String)>,
    pub builtin: BTreeSet<String>,
    /// The aliases of built-in modules (`modules.builtin.modinfo`).
    pub builtin_aliases: Vec<(Vec<u8>, String)>,
    /// `modules.softdep` (module pattern, softdep), in file order: the first line whose pattern
    /// matches a module is its softdep, as in kmod.
    pub softdeps: Vec<(String, Softdep)>,
    /// The first `softdeps` entry of each plain (pattern-free) name, and the entries that are
    /// patterns: a lookup is a map access and a scan of the patterns only, not of every line.
    softdep_names: BTreeMap<String, usize>,
    softdep_patterns: Vec<usize>,
    /// Lines refused, one message each (file, line number, why).
    pub problems: Vec<String>,
}

/// A module name as kmod compares it: `-` and `_` are the same.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// An alias as kmod compares it (its `alias_normalize`): `-` as `_`, except inside `[...]`;
/// `None` for a `]` outside brackets or a `[` never closed.
pub fn normalize_alias(alias: &str) -> Option<String> {
    let mut out = String::with_capacity(alias.len());
    let mut in_class = false;
    for c in alias.chars() {
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            ']' => return None,
            '-' if !in_class => {
                out.push('_');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    (!in_class).then_some(out)
}

pub use crate::model::options::valid_module_name as valid_name;

/// The module name of a file in the index (`kernel/fs/overlayfs/overlay.ko.xz` → `overlay`).
pub fn name_of(path: &str) -> Option<&str> {
    let file = path.rsplit('/').next()?;
    SUFFIXES.iter().find_map(|s| file.strip_suffix(s))
}

/// A module file path that stays inside the module dir: relative, no `.`/`..` or empty
/// component, a module suffix, a valid name.
fn valid_path(path: &str) -> bool {
    !path.starts_with('/')
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && name_of(path).is_some_and(valid_name)
}

impl Index {
    /// Parses the text of the index files (each may be missing: empty).
    pub fn parse(dep: &[u8], alias: &[u8], softdep: &[u8], builtin: &[u8], builtin_modinfo: &[u8]) -> Index {
        let mut index = Index::default();
        index.parse_dep(dep);
        index.parse_alias(alias);
        index.parse_softdep(softdep);
        index.parse_builtin(builtin);
        index.parse_builtin_modinfo(builtin_modinfo);
        index
    }

    fn problem(&mut self, file: &str, line: usize, why: &str) {
        super::note_problem(&mut self.problems, || format!("{file} line {line}: {why}"));
    }

    /// The lines of `text` that are not blank or comments, with their numbers; too long or
    /// not UTF-8 ones are named in `problems`.
    fn lines<'a>(&mut self, file: &str, text: &'a [u8]) -> Vec<(usize, &'a str)> {
        let mut out = Vec::new();
        for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = n + 1;
            if raw.len() > LINE_LIMIT {
                self.problem(file, line, &format!("{} bytes, more than {LINE_LIMIT}", raw.len()));
                continue;
            }
            match std::str::from_utf8(raw) {
                Ok(text) if text.trim().is_empty() || text.trim_start().starts_with('#') => {}
                Ok(text) => out.push((line, text.trim())),
                Err(_) => self.problem(file, line, "not UTF-8"),
            }
        }
        out
    }

    fn parse_dep(&mut self, text: &[u8]) {
        for (line, text) in self.lines("modules.dep", text) {
            let Some((path, deps)) = text.split_once(':') else {
                self.problem("modules.dep", line, "no ':'");
                continue;
            };
            let deps: Vec<&str> = deps.split_whitespace().collect();
            if let Some(bad) = std::iter::once(path).chain(deps.iter().copied()).find(|p| !valid_path(p)) {
                let shown = crate::model::text::escape(bad.as_bytes());
                self.problem("modules.dep", line, &format!("\"{shown}\" is not a module file inside the module dir"));
                continue;
            }
            let name = name_of(path).map(normalize).unwrap_or_default();
            let deps = deps.iter().filter_map(|d| name_of(d)).map(normalize).collect();
            self.modules.entry(name).or_insert(Module { path: path.to_string(), deps });
        }
    }

    fn parse_alias(&mut self, text: &[u8]) {
        for (line, text) in self.lines("modules.alias", text) {
            let mut words = text.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) if valid_name(module) => {
                    match normalize_alias(pattern) {
                        Some(pattern) => self.aliases.push((pattern.into_bytes(), normalize(module))),
                        None => self.problem("modules.alias", line, "unbalanced brackets in the pattern"),
                    }
                }
                _ => self.problem("modules.alias", line, "not `alias PATTERN MODULE`"),
            }
        }
    }

    fn parse_softdep(&mut self, text: &[u8]) {
        for (line, text) in self.lines("modules.softdep", text) {
            match parse_softdep_line(text) {
                Some(entry) => {
                    let at = self.softdeps.len();
                    if entry.0.contains(['*', '?', '[', '\\']) {
                        self.softdep_patterns.push(at);
                    } else {
                        self.softdep_names.entry(entry.0.clone()).or_insert(at);
                    }
                    self.softdeps.push(entry);
                }
                None => self.problem("modules.softdep", line, "not `softdep MODULE pre: ... post: ...`"),
            }
        }
    }

    fn parse_builtin(&mut self, text: &[u8]) {
        for (line, text) in self.lines("modules.builtin", text) {
            match Some(text).filter(|p| valid_path(p)).and_then(name_of) {
                Some(name) => {
                    self.builtin.insert(normalize(name));
                }
                None => self.problem("modules.builtin", line, "not a module file"),
            }
        }
    }

    /// `modules.builtin.modinfo`: NUL-separated `module.key=value`; the `alias` keys.
    fn parse_builtin_modinfo(&mut self, text: &[u8]) {
        for (n, entry) in text.split(|&b| b == 0).enumerate() {
            let Some(rest) = std::str::from_utf8(entry).ok().filter(|e| e.len() <= LINE_LIMIT) else {
                self.problem("modules.builtin.modinfo", n + 1, "not UTF-8, or too long");
                continue;
            };
            let Some((module, pattern)) = rest.split_once(".alias=") else { continue };
            match normalize_alias(pattern) {
                Some(pattern) if valid_name(module) && !pattern.is_empty() => {
                    self.builtin_aliases.push((pattern.into_bytes(), normalize(module)));
                }
                _ => self.problem("modules.builtin.modinfo", n + 1, "not a module name and an alias pattern"),
            }
        }
    }
}

/// A word of an index or config line that names a module or an alias: printable ASCII, no
/// space, 1 to 255 bytes. Such words are only ever looked up, never used in a path.
fn valid_word(word: &str) -> bool {
    (1..=255).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_graphic())
}

/// One `softdep MODULE pre: a b post: c` line (modprobe.d syntax too): MODULE may be a pattern;
/// words before the first `pre:` or `post:` are ignored, as kmod ignores them.
pub fn parse_softdep_line(text: &str) -> Option<(String, Softdep)> {
    let mut words = text.split_whitespace();
    if words.next()? != "softdep" {
        return None;
    }
    let module = words.next().filter(|m| valid_word(m))?;
    let mut softdep = Softdep::default();
    let mut list: Option<&mut Vec<String>> = None;
    for word in words {
        match word {
            "pre:" => list = Some(&mut softdep.pre),
            "post:" => list = Some(&mut softdep.post),
            name if valid_word(name) => {
                if let Some(list) = list.as_mut() {
                    list.push(name.to_string());
                }
            }
            _ => return None,
        }
    }
    Some((normalize(module), softdep))
}

impl Index {
    /// The softdep of `module`: the first entry whose pattern matches it.
    pub fn softdep(&self, module: &str) -> Option<&Softdep> {
        let named = self.softdep_names.get(module).copied();
        let pattern = self.softdep_patterns.iter().copied().find(|&i| {
            self.softdeps.get(i).is_some_and(|(p, _)| super::fnmatch::matches(p.as_bytes(), module.as_bytes()))
        });
        let first = match (named, pattern) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.softdeps.get(first?).map(|(_, s)| s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_bad_lines_keeps_a_bounded_list() {
        let dep = "no colon here\n".repeat(100_000);
        let index = Index::parse(dep.as_bytes(), b"", b"", b"", b"");
        assert_eq!(index.problems.len(), crate::kmod::MAX_PROBLEMS + 1);
        assert!(index.problems.last().is_some_and(|p| p.contains("the rest are not listed")));
    }

    #[test]
    fn parses_what_depmod_writes() {
        let dep = b"kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz\n\
                    kernel/net/core/failover.ko.xz:\nkernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz\n";
        let alias = b"# Aliases extracted from modules themselves.\nalias virtio:d00000001v* virtio_net\nalias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n";
        let softdep = b"softdep crc32c pre: crc32c-intel\n";
        let builtin = b"kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n";
        let modinfo = b"virtio_pci.alias=pci:v00001AF4d*sv*sd*bc*sc*i*\0virtio_pci.license=GPL\0";
        let index = Index::parse(dep, alias, softdep, builtin, modinfo);
        assert!(index.problems.is_empty(), "{:?}", index.problems);
        assert_eq!(index.modules["virtio_net"].deps, ["net_failover", "failover"]);
        assert_eq!(index.modules["failover"].path, "kernel/net/core/failover.ko.xz");
        assert_eq!(index.aliases[1], (b"pci:v00008086d0000100Esv*sd*bc*sc*i*".to_vec(), "e1000".to_string()));
        assert_eq!(index.softdep("crc32c").unwrap().pre, ["crc32c-intel"], "as given: it is looked up as an alias too");
        assert!(index.builtin.contains("virtio_pci"));
        assert_eq!(index.builtin_aliases, [(b"pci:v00001AF4d*sv*sd*bc*sc*i*".to_vec(), "virtio_pci".to_string())]);
    }

    #[test]
    fn hostile_lines_are_refused_and_named() {
        let dep = b"/etc/shadow.ko: \nkernel/../../x.ko:\nkernel/a.ko: ../b.ko\nkernel/ok.ko:\nno colon\nkernel/x.txt:\n\xff\xfe:\n";
        let long = format!("alias {} m\n", "x".repeat(LINE_LIMIT + 1));
        let alias = [b"alias a\nalias a b c\nalias p bad/name\n".as_slice(), long.as_bytes()].concat();
        let index = Index::parse(dep, &alias, b"softdep x pre: a\x01b\n", b"/abs.ko\n", b"\xff\0");
        assert_eq!(index.modules.keys().collect::<Vec<_>>(), ["ok"]);
        assert!(index.aliases.is_empty());
        assert!(index.softdeps.is_empty() && index.builtin.is_empty());
        assert_eq!(index.problems.len(), 6 + 4 + 1 + 1 + 1, "{:#?}", index.problems);
        assert!(index.problems.iter().all(|p| !p.contains('\n')));
    }

    #[test]
    fn names_compare_with_dash_as_underscore() {
        assert_eq!(normalize("crc32c-intel"), "crc32c_intel");
        assert_eq!(name_of("kernel/a/b-c.ko.zst"), Some("b-c"));
        assert_eq!(name_of("kernel/a/readme"), None);
        assert!(!valid_name("") && !valid_name("a b") && !valid_name(&"a".repeat(56)));
        assert_eq!(normalize_alias("crypto-crc32c").as_deref(), Some("crypto_crc32c"));
        assert_eq!(normalize_alias("usb:v*ip0[1-2]in-*").as_deref(), Some("usb:v*ip0[1-2]in_*"));
        assert_eq!(normalize_alias("a]b"), None);
        assert_eq!(normalize_alias("a[b"), None);
    }
}
