//! modprobe.d configuration as kmod reads it: `blacklist`, `options`, `softdep` and `alias`
//! lines (`install`/`remove` commands are not run: PID 1 runs no shell commands from a config,
//! and they are reported), from `*.conf` files of the configuration dirs in kmod's order, and
//! the module options and blacklist of the kernel command line.
//!
//! Files are taken by name across the dirs, sorted; a name in an earlier dir hides the same
//! name in a later one (`/etc/modprobe.d/x.conf` over `/lib/modprobe.d/x.conf`).

use std::collections::{BTreeMap, BTreeSet};

use super::index::{normalize, normalize_alias, parse_softdep_line, Softdep, LINE_LIMIT};
use crate::model::options::ModuleOptions;
use crate::model::text::escape;

/// kmod's configuration dirs, highest priority first.
pub const DIRS: [&str; 5] =
    ["etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d"];

/// The module policy: what the configuration files and the command line say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Modules never loaded for an alias (coldplug); a module asked for by name still loads.
    pub blacklist: BTreeSet<String>,
    /// Parameters per module, in the order given (`options` lines, then `module.param=value`
    /// of the command line).
    pub options: BTreeMap<String, Vec<String>>,
    /// Softdeps from configuration files (pattern, softdep), in order: kmod reads the files and
    /// the index's `modules.softdep` sorted by file name together, so those of files named
    /// before it come before the index's, the others after.
    pub softdeps_before: Vec<(String, Softdep)>,
    pub softdeps_after: Vec<(String, Softdep)>,
    /// `alias PATTERN MODULE` lines (pattern normalised).
    pub aliases: Vec<(Vec<u8>, String)>,
    /// Lines refused or not acted on, one message each.
    pub problems: Vec<String>,
}

/// Which files to read: `(dir, file name)` in kmod's order, from the `*.conf` names found in
/// each dir (given highest priority first, as [`DIRS`] are).
pub fn files(listings: &[Vec<String>]) -> Vec<(usize, String)> {
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    for (dir, names) in listings.iter().enumerate() {
        for name in names.iter().filter(|n| n.ends_with(".conf") && !n.starts_with('.')) {
            chosen.entry(name.clone()).or_insert(dir);
        }
    }
    chosen.into_iter().map(|(name, dir)| (dir, name)).collect()
}

impl Config {
    /// Adds the lines of one configuration file (`file` names it in problems).
    pub fn add_file(&mut self, file: &str, text: &[u8]) {
        let name = file.rsplit('/').next().unwrap_or(file);
        for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = n + 1;
            let Some(text) = std::str::from_utf8(raw).ok().filter(|_| raw.len() <= LINE_LIMIT) else {
                super::note_problem(&mut self.problems, || {
                    format!("{} line {line}: not UTF-8, or too long", escape(file.as_bytes()))
                });
                continue;
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            if let Err(why) = self.add_line(text, name < "modules.softdep") {
                super::note_problem(&mut self.problems, || format!("{} line {line}: {why}", escape(file.as_bytes())));
            }
        }
    }

    fn add_line(&mut self, text: &str, before_index: bool) -> Result<(), String> {
        let mut words = text.split_whitespace();
        let (Some(command), Some(name)) = (words.next(), words.next()) else {
            return Err("a command and a module name are needed".into());
        };
        let module = || {
            super::index::valid_name(name)
                .then(|| normalize(name))
                .ok_or_else(|| format!("\"{}\" is not a module name", escape(name.as_bytes())))
        };
        match command {
            "blacklist" => {
                self.blacklist.insert(module()?);
            }
            "options" => {
                let params: Vec<String> = words.map(str::to_string).collect();
                if params.iter().any(|p| !p.bytes().all(|b| b.is_ascii_graphic())) {
                    return Err("a parameter is not printable".into());
                }
                self.options.entry(module()?).or_default().extend(params);
            }
            "softdep" => {
                let entry = parse_softdep_line(text).ok_or("not `softdep MODULE pre: ... post: ...`")?;
                if before_index { &mut self.softdeps_before } else { &mut self.softdeps_after }.push(entry);
            }
            "alias" => {
                let target =
                    words.next().filter(|t| super::index::valid_name(t)).ok_or("not `alias PATTERN MODULE`")?;
                let pattern = normalize_alias(name).ok_or("unbalanced brackets in the pattern")?;
                self.aliases.push((pattern.into_bytes(), normalize(target)));
            }
            "install" | "remove" => {
                return Err(format!("`{command}` commands are not run at boot (module {})", escape(name.as_bytes())))
            }
            other => return Err(format!("unknown command \"{}\"", escape(other.as_bytes()))),
        }
        Ok(())
    }

    /// Adds what the kernel command line says: the blacklists (`modprobe.blacklist=`,
    /// `stateless.modules.blacklist=`) and `module.param=value` for the modules loaded later
    /// (the kernel keeps those only for built-in modules; modprobe passes them on, and so do we).
    pub fn add_cmdline(&mut self, options: &ModuleOptions) {
        self.blacklist.extend(options.blacklist.iter().map(|m| normalize(m)));
        for (key, value) in &options.params {
            let Some((module, param)) = key.split_once('.') else { continue };
            let plain =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !super::index::valid_name(module) || !plain(param) {
                continue; // the kernel's own dotted words (`rd.break`, `a.b.c`) name no parameter
            }
            // One parameter, never more: a quote or a control byte in the value could end it and
            // start another, so such a value is refused; any blank the kernel splits on (a space,
            // or the byte 0xA0 of a quoted command-line word) gets it quoted.
            let param = match value.as_deref() {
                Some(v) if v.bytes().any(|b| b == b'"' || b.is_ascii_control()) => {
                    super::note_problem(&mut self.problems, || {
                        format!("{key}: a value with a quote or a control byte is not passed on")
                    });
                    continue;
                }
                Some(v) if v.bytes().any(crate::config::is_space) => format!("{param}=\"{v}\""),
                Some(v) => format!("{param}={v}"),
                None => param.to_string(),
            };
            self.options.entry(normalize(module)).or_default().push(param);
        }
    }

    /// The parameter string for `finit_module` (space-separated, as modprobe joins them).
    pub fn params(&self, module: &str) -> String {
        self.options.get(module).map(|p| p.join(" ")).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmods_file_order() {
        let listings = vec![
            vec!["b.conf".to_string(), "x.conf".to_string(), "notes.txt".to_string()],
            vec![],
            vec![],
            vec!["a.conf".to_string(), "b.conf".to_string()],
            vec![".hidden.conf".to_string(), "c.conf".to_string()],
        ];
        assert_eq!(
            files(&listings),
            [(3, "a.conf".into()), (0, "b.conf".into()), (4, "c.conf".into()), (0, "x.conf".into())]
        );
    }

    #[test]
    fn problems_show_names_escaped_once() {
        let mut config = Config::default();
        config.add_file(
            "/etc/modprobe.d/a\u{1b}.conf",
            b"blacklist \xc2\x9bx\ninstall e\xe2\x80\xaex /bin/sh\nfr\x1bob x\n",
        );
        assert_eq!(
            config.problems,
            [
                "/etc/modprobe.d/a\\x1b.conf line 1: \"\\xc2\\x9bx\" is not a module name",
                "/etc/modprobe.d/a\\x1b.conf line 2: `install` commands are not run at boot (module e\\xe2\\x80\\xaex)",
                "/etc/modprobe.d/a\\x1b.conf line 3: unknown command \"fr\\x1bob\"",
            ]
        );
    }

    #[test]
    fn lines_and_command_line() {
        let mut config = Config::default();
        config.add_file(
            "lab.conf",
            b"# a lab's odd card\nblacklist snd-hda-intel\noptions e1000 InterruptThrottleRate=3000 debug=1\n\
              softdep virtio_net pre: crc32c\nalias net-pf-99 virtio_net\ninstall evil /bin/sh -c reboot\n\
              blacklist ../x\noptions e1000 \x01\nfrobnicate x\n",
        );
        assert!(config.blacklist.contains("snd_hda_intel"));
        assert_eq!(config.params("e1000"), "InterruptThrottleRate=3000 debug=1");
        assert_eq!((config.softdeps_before.len(), config.softdeps_after.len()), (1, 0), "lab.conf < modules.softdep");
        assert_eq!(config.aliases, [(b"net_pf_99".to_vec(), "virtio_net".to_string())]);
        assert_eq!(config.problems.len(), 4, "{:#?}", config.problems);
        assert!(config.problems[0].contains("not run at boot"));

        let p = |k: &str, v: Option<&str>| (k.to_string(), v.map(str::to_string));
        config.add_cmdline(&ModuleOptions {
            blacklist: vec!["pcspkr".into(), "floppy".into(), "i915".into()],
            params: vec![
                p("e1000.debug", Some("2")),
                p("nfs.callback_tcpport", Some("4048")),
                p("usbcore.quirks", Some("a b")),
                p("rd.break", None),
                p("i915.modeset", None),
                p("bad/name.x", Some("1")),
                p("e1000.p", Some("a\" evil=1 \"")),
                p("e1000.q", Some("x\ty=2")),
                p("a.b.c", Some("1")),
            ],
            ..ModuleOptions::default()
        });
        assert!(["pcspkr", "floppy", "i915", "snd_hda_intel"].iter().all(|m| config.blacklist.contains(*m)));
        assert_eq!(config.params("e1000"), "InterruptThrottleRate=3000 debug=1 debug=2", "the command line last");
        assert_eq!(config.params("nfs"), "callback_tcpport=4048");
        assert_eq!(config.params("usbcore"), "quirks=\"a b\"");
        assert_eq!(config.params("i915"), "modeset");
        assert!(config.options.contains_key("rd"), "kept, as modprobe keeps it: no module is named so");
        assert_eq!(config.problems.len(), 6, "{:#?}", config.problems);
        assert!(!config.params("e1000").contains("evil") && !config.params("e1000").contains("y=2"));
        assert!(!config.options.contains_key("a"), "a.b.c names no parameter");
    }

    /// Found with the `cmdline` fuzz target's finding (the kernel splits words at the byte 0xA0):
    /// `e1000.x="a\u{a0}debug=1"` (one quoted word of the command line) reached finit_module as
    /// `x=a\u{a0}debug=1`, which the kernel's parse_args() splits into `x=a\xc2` and a second
    /// parameter `debug=1`. The `modprobe_d` corpus keeps a seed of it.
    #[test]
    fn a_value_the_kernel_would_split_is_quoted() {
        let mut config = Config::default();
        let params = vec![("e1000.x".to_string(), Some("a\u{a0}debug=1".to_string()))];
        config.add_cmdline(&ModuleOptions { params, ..ModuleOptions::default() });
        assert_eq!(config.params("e1000"), "x=\"a\u{a0}debug=1\"");
    }
}
