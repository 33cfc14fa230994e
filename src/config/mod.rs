//! The kernel command line and `/etc/stateless.conf`, parsed into typed [`Options`].
//!
//! Pure: no I/O. The tokenizer follows the kernel's own `next_arg()` (lib/cmdline.c):
//! double quotes group words and are stripped from values, the last occurrence of a key wins,
//! and everything after a lone `--` belongs to init.
//!
//! Tested against fixture files, as Bottlerocket's `test_data/cmdline`: command lines of real
//! setups (pxelinux, dracut, Gentoo, stateless.sh, ArchWiki) and hostile ones in
//! `tests/data/cmdline/`, each `.txt` with its `.expect` (and `.conf`).

pub mod nfsroot;

use std::net::Ipv4Addr;

use crate::model::options::{
    ClientId, Diagnostic, Emergency, IpParam, LogServer, NfsRoot, Options, Origin, OverlayMode, Swap,
};
use crate::model::paths::EXPORT;
use crate::model::servers;
use crate::model::step::Phase;
use crate::model::text::{escape, quoted as q};
use crate::model::writable::DirName;

/// One `key[=value]` word of the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

/// The command line split into words, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub params: Vec<Param>,
    /// Words after ` -- `: the kernel hands them to init as arguments.
    pub init_args: Vec<String>,
    /// Words that are not UTF-8, escaped (`\xNN`); left out of `params`.
    pub invalid: Vec<Param>,
}

/// The kernel's `isspace()` (its `_ctype` table, lib/ctype.c): space, `\t`, `\n`, `\v`, `\f`,
/// `\r`, and 0xA0 (Latin-1's no-break space), so the byte 0xA0 inside a UTF-8 character (U+00A0,
/// U+0520, ...) ends a word there as it does for the kernel.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | 0xa0)
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_space(*b)).unwrap_or(s.len());
    s.get(start..).unwrap_or_default()
}

/// A word of the command line as it was: bytes, not yet known to be text.
struct RawParam<'a> {
    key: &'a [u8],
    value: Option<&'a [u8]>,
}

/// One word off the front of `args` (which starts with a non-space), as the kernel's `next_arg()`:
/// returns the word and what follows it.
fn next_arg(args: &[u8]) -> (RawParam<'_>, &[u8]) {
    let quoted = args.first() == Some(&b'"');
    let start = usize::from(quoted);
    let (mut in_quote, mut end, mut equals) = (quoted, args.len(), None);
    for (i, &b) in args.iter().enumerate().skip(start) {
        if is_space(b) && !in_quote {
            end = i;
            break;
        }
        // Like the kernel, an `=` at the very start of the word does not split it.
        if equals.is_none() && b == b'=' && i > start {
            equals = Some(i);
        }
        if b == b'"' {
            in_quote = !in_quote;
        }
    }
    let rest = args.get(end..).unwrap_or_default();
    let word = args.get(start..end).unwrap_or_default();
    let (key, value) = match equals {
        Some(eq) => (args.get(start..eq).unwrap_or_default(), args.get(eq + 1..end)),
        None => (word, None),
    };
    fn strip(s: &[u8]) -> &[u8] {
        s.strip_suffix(b"\"").unwrap_or(s)
    }
    let (key, value) = match value {
        // `key="a b"`: the opening quote and a closing one at the end of the word go.
        Some([b'"', v @ ..]) => (key, Some(strip(v))),
        // `"key=a b"` or `"flag"`: the closing quote at the end of the word goes.
        Some(v) if quoted => (key, Some(strip(v))),
        None if quoted => (strip(key), None),
        _ => (key, value),
    };
    (RawParam { key, value }, rest)
}

impl Cmdline {
    /// Splits a command line (the bytes of `/proc/cmdline`) into words the way the kernel does.
    ///
    /// The command line is bytes: a word that is not UTF-8 goes to [`Cmdline::invalid`] (the
    /// resolver reports it when it is one of ours) and every other word is kept.
    /// Words after a lone `--` go to [`Cmdline::init_args`] as `key=value` (quotes stripped);
    /// like the kernel, a second `--` ends them and the words after it are dropped.
    pub fn parse(text: &[u8]) -> Cmdline {
        let mut cmdline = Cmdline::default();
        let mut rest = skip_spaces(text);
        let mut after_dashes = false;
        while !rest.is_empty() {
            let (raw, next) = next_arg(rest);
            rest = skip_spaces(next);
            let dashes = raw.key == b"--" && raw.value.is_none();
            match (after_dashes, dashes) {
                (false, true) => after_dashes = true,
                (true, true) => break,
                (true, false) => {
                    let word = match raw.value {
                        Some(v) => [raw.key, b"=", v].concat(),
                        None => raw.key.to_vec(),
                    };
                    cmdline.init_args.push(String::from_utf8_lossy(&word).into_owned());
                }
                (false, false) => {
                    let key = std::str::from_utf8(raw.key);
                    let value = raw.value.map(std::str::from_utf8).transpose();
                    match (key, value) {
                        (Ok(key), Ok(value)) => {
                            cmdline.params.push(Param { key: key.to_owned(), value: value.map(str::to_owned) })
                        }
                        _ => cmdline.invalid.push(Param {
                            key: crate::model::text::escape(raw.key),
                            value: raw.value.map(crate::model::text::escape),
                        }),
                    }
                }
            }
        }
        cmdline
    }

    /// The last occurrence of `key` (later words override earlier ones).
    pub fn get(&self, key: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.key == key)
    }

    /// The value of the last occurrence of `key`; `None` when absent or a bare flag.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key)?.value.as_deref()
    }

    /// Whether the last occurrence of `key` is a bare word without `=`.
    pub fn has_flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|p| p.value.is_none())
    }
}

/// Keys that do nothing without a value (`stateless.break` has its own message).
const VALUE_KEYS: [&str; 24] = [
    "softlevel",
    "ip",
    "nfsaddrs",
    "nfsroot",
    "root",
    "BOOTIF",
    "stateless.init",
    "stateless.dirs",
    "stateless.layers",
    "stateless.hostname",
    "stateless.hostname.prefix",
    "stateless.tmpfs.size",
    "stateless.emergency",
    "stateless.mode",
    "stateless.dhcp.timeout",
    "stateless.dhcp.inform",
    "stateless.nfs.timeout",
    "stateless.log",
    "stateless.swap",
    "stateless.scratch",
    "stateless.image",
    "roothash",
    "stateless.modules",
    "stateless.modules.blacklist",
];

/// The autoconf words `ip=` takes, alone or in its 7th field.
const AUTOCONF: [&str; 9] = ["dhcp", "on", "any", "off", "none", "bootp", "rarp", "both", "static"];

/// `stateless.break=`: phase names, comma-separated; one that is not a phase refuses the value.
fn break_phases(v: &str) -> Result<Vec<Phase>, String> {
    let mut phases = Vec::new();
    for name in v.split(',') {
        match name.parse::<Phase>()? {
            // The early mounts run before the command line can be read (it is in /proc).
            Phase::EarlyMounts => return Err(format!("{} runs before the command line is read", q(name))),
            phase if !phases.contains(&phase) => phases.push(phase),
            _ => {}
        }
    }
    Ok(phases)
}

/// Stores `r` in `slot` when it is `Ok`; returns the error otherwise.
fn set<T>(slot: &mut T, r: Result<T, String>) -> Vec<String> {
    match r {
        Ok(v) => {
            *slot = v;
            Vec::new()
        }
        Err(e) => vec![e],
    }
}

/// The options being resolved, and what was wrong on the way.
struct Resolution {
    opts: Options,
    dirs_given: bool,
    layers_given: bool,
    diags: Vec<Diagnostic>,
}

impl Resolution {
    /// A problem with `key` (untrusted: escaped here); `message` must be escaped already.
    fn diag(&mut self, origin: &Origin, key: &str, message: String) {
        self.diags.push(Diagnostic { origin: origin.clone(), key: escape(key.as_bytes()), message });
    }

    /// Applies one `key[=value]`; an invalid value is reported and leaves the earlier value.
    fn apply(&mut self, origin: &Origin, key: &str, value: Option<&str>) {
        let o = &mut self.opts;
        let errors = match (key, value) {
            ("quiet", _) => {
                o.quiet = true;
                Vec::new()
            }
            ("debug", _) => {
                o.debug = true;
                Vec::new()
            }
            ("stateless.break", None) => vec!["needs a phase name".to_owned()],
            ("stateless.image.ram", None) => set(&mut o.image_ram, Ok(true)),
            ("stateless.image.ram", Some(v)) => set(&mut o.image_ram, yes_no(v)),
            // dracut's getargbool: bare or anything but 0, no, off is on.
            ("rd.live.ram", v) => set(&mut o.image_ram, Ok(!matches!(v, Some("0" | "no" | "off")))),
            (k, None) if VALUE_KEYS.contains(&k) => vec!["needs a value".to_owned()],
            (k, None) if k.split_once('.').is_some_and(|(m, p)| !m.is_empty() && !p.is_empty() && m != "stateless") => {
                o.modules.params.push((k.to_owned(), None));
                Vec::new()
            }
            (k, None) if !k.starts_with("stateless.") => Vec::new(),
            ("softlevel", Some(v)) => {
                o.softlevel = Some(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect());
                Vec::new()
            }
            ("stateless.init", Some(v)) => set(&mut o.init, abs_path(v).map(|()| Some(v.to_owned()))),
            ("stateless.dirs", Some(v)) => {
                let (dirs, errors) = parse_dirs(v);
                // An invalid value keeps the earlier one: a list whose every item is refused
                // must not leave the client without a writable dir. Empty means none, on purpose.
                if dirs.is_empty() && !errors.is_empty() {
                    let mut errors = errors;
                    errors.push(format!(
                        "no valid dir in {}: keeping {}",
                        q(v),
                        o.dirs.iter().map(DirName::as_str).collect::<Vec<_>>().join(",")
                    ));
                    errors
                } else {
                    self.dirs_given = true;
                    o.dirs = dirs;
                    errors
                }
            }
            ("stateless.layers", Some(v)) => match layer_root(v) {
                Ok(root) => {
                    (o.layers, self.layers_given) = (root, true);
                    Vec::new()
                }
                Err(e) => vec![e],
            },
            ("stateless.hostname", Some("")) => {
                o.hostname = None;
                vec!["empty value (leave it out to use dhcp or the fallback)".to_owned()]
            }
            ("stateless.hostname", Some(v)) => set(&mut o.hostname, Ok(Some(v.to_owned()))),
            ("stateless.hostname.prefix", Some(v)) => set(&mut o.hostname_prefix, hostname_prefix(v)),
            ("stateless.tmpfs.size", Some(v)) => set(&mut o.tmpfs_size, tmpfs_size(v).map(Some)),
            ("stateless.break", Some(v)) => set(&mut o.break_at, break_phases(v)),
            ("stateless.emergency", Some(v)) => set(&mut o.emergency, emergency(v)),
            ("stateless.mode", Some(v)) => set(&mut o.mode, mode(v)),
            ("stateless.dhcp.timeout", Some(v)) => set(&mut o.dhcp_timeout, timeout(v)),
            ("stateless.dhcp.inform", Some(v)) => set(&mut o.dhcp_inform, yes_no(v)),
            ("stateless.nfs.timeout", Some(v)) => set(&mut o.nfs_timeout, timeout(v)),
            ("stateless.log", Some(v)) => set(&mut o.log, log_server(v)),
            ("stateless.swap", Some("auto")) => set(&mut o.swap, Ok(Some(Swap::Auto))),
            ("stateless.swap", Some(v)) => set(&mut o.swap, disk_label(v).map(|l| Some(Swap::Label(l)))),
            ("stateless.scratch", Some(v)) => set(&mut o.scratch, disk_label(v).map(Some)),
            ("stateless.image", Some(v)) => set(&mut o.image, image_path(v).map(Some)),
            // Not one: kept as given (escaped), so the image root step refuses rather than
            // mount unverified what the command line asked to verify.
            ("roothash", Some(v)) => {
                let (hash, errors) = match root_hash(v) {
                    Ok(h) => (h, Vec::new()),
                    Err(e) => (escape(v.as_bytes()), vec![e]),
                };
                o.root_hash = Some(hash);
                errors
            }
            ("stateless.modules", Some("none")) => {
                o.modules.no_coldplug = true;
                Vec::new()
            }
            ("stateless.modules", Some(v)) => module_list(v, &mut o.modules.extra),
            ("stateless.modules.blacklist" | "modprobe.blacklist", Some(v)) => module_list(v, &mut o.modules.blacklist),
            // `nfsaddrs=` is the kernel's old name for `ip=`, read by the same function: the
            // later of the two wins, as a later `ip=` does.
            ("ip" | "nfsaddrs", Some(v)) => match parse_ip(v) {
                Ok((ip, errors)) => {
                    o.ip = Some(ip);
                    errors
                }
                Err(e) => vec![e],
            },
            ("nfsroot", Some(v)) => set(&mut o.nfsroot, parse_nfsroot(v)),
            ("root", Some(v)) => set(&mut o.root, Ok((!v.is_empty()).then(|| v.to_owned()))),
            ("BOOTIF", Some(v)) => set(&mut o.bootif, parse_mac(v).map(Some)),
            (k, _) if k.starts_with("stateless.") => vec!["unknown key".to_owned()],
            (k, v) if k.split_once('.').is_some_and(|(m, p)| !m.is_empty() && !p.is_empty()) => {
                // `module.param=value` for a module loaded later (the kernel keeps it only for
                // built-in ones); checked when the module is.
                o.modules.params.push((k.to_owned(), v.map(str::to_owned)));
                Vec::new()
            }
            _ => Vec::new(),
        };
        let shown = escape(key.as_bytes());
        for e in errors {
            self.diag(origin, key, format!("{shown}: {e}"));
        }
    }
}

impl Options {
    /// Validated options from the command line over the config file (`/etc/stateless.conf`).
    ///
    /// Config lines are `stateless.*=value` (value optionally in `"` or `'`), `#` comments or blank.
    /// Everything is applied in order, config first: a later valid value wins, an invalid one
    /// is reported and leaves the earlier value (or the default). Unknown `stateless.*` keys are
    /// reported; other unknown command line words belong to the kernel or init and are skipped.
    pub fn resolve(cmdline: &Cmdline, config: Option<&[u8]>) -> (Options, Vec<Diagnostic>) {
        let mut r = Resolution { opts: Options::default(), dirs_given: false, layers_given: false, diags: Vec::new() };
        for (n, bytes) in config.unwrap_or_default().split(|b| *b == b'\n').enumerate() {
            let origin = Origin::Config { line: n + 1 };
            let Ok(line) = std::str::from_utf8(bytes) else {
                r.diag(&origin, "", format!("{}: not UTF-8, line ignored", q(bytes)));
                continue;
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once('=') {
                None => r.diag(&origin, line, format!("{}: not a key=value line", q(line))),
                Some((key, value)) => {
                    let key = key.trim();
                    if key.starts_with("stateless.") {
                        r.apply(&origin, key, Some(unquote(value.trim())));
                    } else if key.is_empty() {
                        r.diag(&origin, key, format!("{}: line has no key", q(line)));
                    } else {
                        let msg =
                            format!("{}: only stateless.* keys belong in the config file", escape(key.as_bytes()));
                        r.diag(&origin, key, msg);
                    }
                }
            }
        }
        for p in &cmdline.params {
            r.apply(&Origin::Cmdline, &p.key, p.value.as_deref());
        }
        for p in cmdline.invalid.iter().filter(|p| is_ours(&p.key)) {
            // Both escaped already by the tokenizer.
            let (key, shown) = (p.key.clone(), p.value.as_deref().unwrap_or_default());
            let message = format!("{key}: \"{shown}\" is not UTF-8, ignored");
            r.diags.push(Diagnostic { origin: Origin::Cmdline, key, message });
        }
        // The old stateless.sh only made overlays when softlevel= named unionfs.
        let no_unionfs = r.opts.softlevel.as_ref().is_some_and(|s| !s.iter().any(|l| l == "unionfs"));
        if !r.dirs_given && no_unionfs {
            r.opts.dirs.clear();
        }
        // An image root (built without /diskless) has its layers beside it on the export.
        if let Some(file) = nfsroot::image_file(&r.opts).filter(|_| !r.layers_given) {
            r.opts.layers = layers_beside(&file);
        }
        let image_root = r.opts.image.is_some() || r.opts.root.as_deref().is_some_and(|v| v.starts_with("live:"));
        if r.opts.image_ram && !image_root {
            let message = "stateless.image.ram: no image root to copy (root=live:nfs://... or stateless.image=)".into();
            r.diags.push(Diagnostic { origin: Origin::Cmdline, key: "stateless.image.ram".into(), message });
        }
        // An NBD root may come from the lease's root-path: known only then.
        let nbd_root = match r.opts.root.as_deref() {
            Some(v) => v.starts_with("nbd:") || v == "dhcp",
            None => r.opts.nfsroot.is_none(),
        };
        if r.opts.root_hash.is_some() && !image_root && !nbd_root {
            let message =
                "roothash=: no image root to verify (root=live:nfs://..., stateless.image= or root=nbd:...)".into();
            r.diags.push(Diagnostic { origin: Origin::Cmdline, key: "roothash".into(), message });
        }
        (r.opts, r.diags)
    }
}

/// Whether a command-line key is one `stateless` reads (an invalid word of the kernel's or
/// init's is theirs to judge).
fn is_ours(key: &str) -> bool {
    key.starts_with("stateless.") || VALUE_KEYS.contains(&key) || matches!(key, "quiet" | "debug")
}

/// Strips one pair of matching `"` or `'` around a config value.
fn unquote(v: &str) -> &str {
    ['"', '\''].iter().find_map(|&c| v.strip_prefix(c)?.strip_suffix(c)).unwrap_or(v)
}

/// An absolute path without NUL and `..` components.
fn abs_path(v: &str) -> Result<(), String> {
    if v.contains('\0') {
        Err(format!("{} contains a NUL byte", q(v)))
    } else if !v.starts_with('/') {
        Err(format!("{} is not an absolute path", q(v)))
    } else if v.split('/').any(|c| c == "..") {
        Err(format!("{} has a \"..\" component", q(v)))
    } else {
        Ok(())
    }
}

/// `stateless.layers=` as the config takes it, normalised: also what the layer root read back
/// from a boot's report must pass again.
pub(crate) fn layer_root(v: &str) -> Result<String, String> {
    abs_path(v).map(|()| normalise_abs(v))
}

/// The default layer root of an image root: the `diskless/` dir beside `file` on the export,
/// where the export is once /run moved into the image (`/x.img`: `/run/stateless/export/diskless`).
fn layers_beside(file: &str) -> String {
    let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("/{EXPORT}{dir}/diskless")
}

/// `stateless.image=`: a file's path on the export, with or without its leading `/`, normalised.
/// `roothash=`: 64 hex digits, of any case; as lower-case hex.
fn root_hash(v: &str) -> Result<String, String> {
    crate::model::text::sha256_hex(v.as_bytes())
        .ok_or_else(|| format!("{} is not a sha256 root hash (64 hex digits)", q(v)))
}

fn image_path(v: &str) -> Result<String, String> {
    let path = format!("/{}", v.trim_start_matches('/'));
    abs_path(&path)?;
    match normalise_abs(&path) {
        root if root == "/" => Err(format!("{} names no file", q(v))),
        path => Ok(path),
    }
}

/// `v` without empty and `.` components: `//a/./b/` -> `/a/b`, `/` stays `/`.
fn normalise_abs(v: &str) -> String {
    let parts: Vec<&str> = v.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    format!("/{}", parts.join("/"))
}

/// `stateless.dirs=`: the valid items (trimmed, normalised) and one message per rejected item.
fn parse_dirs(v: &str) -> (Vec<DirName>, Vec<String>) {
    let (mut dirs, mut errors) = (Vec::new(), Vec::new());
    if v.is_empty() {
        return (dirs, errors);
    }
    for item in v.split(',').map(str::trim) {
        match check_dir(item, &dirs) {
            Ok(dir) => dirs.push(dir),
            Err(e) => errors.push(e),
        }
    }
    (dirs, errors)
}

/// One writable dir as `stateless.dirs=` takes it ([`DirName::parse`]), not overlapping those
/// taken before (`dirs`): also what the dirs read back from a boot's report must pass again.
pub(crate) fn check_dir(item: &str, dirs: &[DirName]) -> Result<DirName, String> {
    let dir = DirName::parse(item)?;
    let under = |a: &DirName, b: &DirName| a != b && a.as_path().starts_with(b);
    for d in dirs {
        if *d == dir {
            return Err(format!("{} is listed twice", q(item)));
        } else if under(&dir, d) {
            return Err(format!("{} is inside {}, listed before", q(item), q(d.as_str())));
        } else if under(d, &dir) {
            return Err(format!("{} contains {}, listed before", q(item), q(d.as_str())));
        }
    }
    Ok(dir)
}

fn hostname_prefix(v: &str) -> Result<String, String> {
    let chars_ok = v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let first_ok = v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if (1..=32).contains(&v.len()) && chars_ok && first_ok {
        Ok(v.to_owned())
    } else {
        Err(format!("{} is not 1 to 32 ascii letters, digits or \"-\" starting with a letter or digit", q(v)))
    }
}

/// A comma-separated list of module names into `into`; a bad name is reported and skipped.
fn module_list(v: &str, into: &mut Vec<String>) -> Vec<String> {
    let mut errors = Vec::new();
    for name in v.split(',').filter(|n| !n.is_empty()) {
        if crate::model::options::valid_module_name(name) {
            into.push(name.to_owned());
        } else {
            errors.push(format!("{}: not a module name", q(name)));
        }
    }
    errors
}

/// `stateless.dhcp.timeout=`, `stateless.nfs.timeout=` in seconds: 1 to 3600.
fn timeout(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(secs @ 1..=3600) => Ok(secs),
        _ => Err(format!("{}: not a number of seconds from 1 to 3600", q(v))),
    }
}

/// The smallest `stateless.tmpfs.size=` taken.
const TMPFS_MIN: u64 = 64 << 10;
/// The largest: beyond it a limit limits nothing.
const TMPFS_MAX: u64 = 1 << 50;

/// `512M`, `1g`, `25%` -> lowercase, without leading zeros; 64k to 1 PiB, or 1% to 100%.
fn tmpfs_size(v: &str) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, suffix) = lower.split_at_checked(digits_end).unwrap_or((&lower, ""));
    let shift = match suffix {
        "" | "%" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(format!("{} is not a size (digits, then optionally k, m, g or %)", q(v))),
    };
    let n: u64 = match digits.parse() {
        Ok(n) => n,
        Err(_) if digits.is_empty() => {
            return Err(format!("{} is not a size (digits, then optionally k, m, g or %)", q(v)))
        }
        Err(_) => return Err(format!("{} is too large", q(v))),
    };
    if suffix == "%" && !(1..=100).contains(&n) {
        return Err(format!("{} is not a percentage from 1% to 100%", q(v)));
    }
    if suffix != "%" {
        // tmpfs takes 0 as "no limit", and a size beyond any machine's memory is no limit either.
        match n.checked_mul(1 << shift) {
            Some(bytes) if bytes < TMPFS_MIN => {
                return Err(format!("{} is below 64k (0 would mean no limit at all)", q(v)))
            }
            Some(bytes) if bytes <= TMPFS_MAX => {}
            _ => return Err(format!("{} is too large (more than 1 PiB is no limit at all)", q(v))),
        }
    }
    Ok(format!("{n}{suffix}"))
}

/// A filesystem or swap label to look for.
fn disk_label(v: &str) -> Result<String, String> {
    match crate::model::options::valid_disk_label(v) {
        true => Ok(v.to_owned()),
        false => Err(format!("{} is not a label of 1 to 64 letters, digits, '.', '_', '-'", q(v))),
    }
}

/// The syslog port when `stateless.log=` names none.
pub const SYSLOG_PORT: u16 = 514;

/// `off`, `dhcp`, or `<address>[:<port>]`: a unicast IPv4 address (no name: there is no DNS
/// before the real init), a port from 1.
fn log_server(v: &str) -> Result<LogServer, String> {
    match v {
        "off" => return Ok(LogServer::Off),
        "dhcp" => return Ok(LogServer::FromDhcp),
        _ => {}
    }
    let (addr, port) = v.split_once(':').map_or((v, None), |(a, p)| (a, Some(p)));
    let bad = || format!("{} is not off, dhcp, or an IPv4 address with an optional :port", q(v));
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let port = match port {
        None => SYSLOG_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    if !crate::model::ipv4::usable_unicast(addr) {
        return Err(format!("{addr} is not a unicast address"));
    }
    Ok(LogServer::At(std::net::SocketAddrV4::new(addr, port)))
}

fn yes_no(v: &str) -> Result<bool, String> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{} is not yes or no", q(v))),
    }
}

fn emergency(v: &str) -> Result<Emergency, String> {
    let policy = Emergency::ALL.into_iter().find(|p| p.as_str() == v);
    policy.ok_or_else(|| format!("{} is not one of continue, shell, reboot, poweroff", q(v)))
}

fn mode(v: &str) -> Result<OverlayMode, String> {
    match v {
        "overlay" => Ok(OverlayMode::Overlay),
        "copy" => Ok(OverlayMode::Copy),
        _ => Err(format!("{} is not one of overlay, copy", q(v))),
    }
}

/// `ip=` and `nfsaddrs=`: an autoconf word, or the kernel's colon form (ipconfig.c's
/// `ip_auto_config_setup`). Bad fields are reported and left out; `Err` when nothing usable is
/// there. Empty means `off`, as in the kernel.
fn parse_ip(v: &str) -> Result<(IpParam, Vec<String>), String> {
    const FIELDS: [&str; 10] = [
        "client-ip",
        "server-ip",
        "gw-ip",
        "netmask",
        "hostname",
        "device",
        "autoconf",
        "dns0-ip",
        "dns1-ip",
        "ntp0-ip",
    ];
    let mut errors = Vec::new();
    if v.is_empty() {
        return Ok((IpParam { autoconf: "off".into(), ..IpParam::default() }, errors));
    }
    // Like the kernel, the whole value as an autoconf word first: `dhcp,<type>,<id>` then takes
    // the rest, `:` included.
    if let Some((autoconf, client_id)) = autoconf(v, &mut errors) {
        return Ok((IpParam { autoconf, client_id, ..IpParam::default() }, errors));
    }
    // dracut's `ip=<interface>:<method>[:<mtu>[:<macaddr>]]`.
    let mut fields = v.split(':');
    if let (Some(dev), Some(method)) = (fields.next(), fields.next().map(str::to_ascii_lowercase)) {
        if !dev.is_empty() && dev.parse::<Ipv4Addr>().is_err() && AUTOCONF.contains(&method.as_str()) {
            return Ok((IpParam { device: Some(dev.to_owned()), autoconf: method, ..IpParam::default() }, errors));
        }
    }
    if !v.contains(':') && v.parse::<Ipv4Addr>().is_err() {
        let methods = AUTOCONF.join(", ");
        return Err(format!("{} is neither an autoconf method ({methods}) nor an IPv4 address", q(v)));
    }
    let mut ip = IpParam::default();
    let (mut dns0, mut dns1, mut ntp0) = (None, None, None);
    // Like the kernel, fields past the 10th are ignored and 0.0.0.0 means "not given".
    for (i, (name, field)) in FIELDS.iter().zip(v.split(':')).enumerate() {
        if field.is_empty() {
            continue;
        }
        let addr = match field.parse::<Ipv4Addr>() {
            // A name or time server on the host itself (a resolver in the image) is one too.
            Ok(a) if i >= 7 && !a.is_unspecified() && !a.is_loopback() && !crate::model::ipv4::usable_unicast(a) => {
                Err(format!("{name} {a} is not a unicast address"))
            }
            Ok(a) => Ok(Some(a).filter(|a| !a.is_unspecified())),
            Err(_) => Err(format!("{name} {} is not an IPv4 address", q(field))),
        };
        let slot = match i {
            0 => &mut ip.client,
            1 => &mut ip.server,
            2 => &mut ip.gateway,
            3 => &mut ip.netmask,
            4 => {
                ip.hostname = Some(field.to_owned());
                continue;
            }
            5 => {
                ip.device = Some(field.to_owned());
                continue;
            }
            6 => {
                match autoconf(field, &mut errors) {
                    Some((word, client_id)) => (ip.autoconf, ip.client_id) = (word, client_id),
                    None => errors.push(format!("autoconf {} is not one of {}", q(field), AUTOCONF.join(", "))),
                }
                continue;
            }
            7 => &mut dns0,
            8 => &mut dns1,
            _ => &mut ntp0,
        };
        errors.extend(set(slot, addr));
    }
    ip.dns = [dns0, dns1].into_iter().flatten().collect();
    ip.ntp = ntp0.into_iter().collect();
    Ok((ip, errors))
}

/// An autoconf method as the kernel's `ic_proto_name` takes it (in any case here), and for
/// `dhcp,<type>,<id>` the client id; a bad client id is reported in `errors` and left out (the
/// default is sent). `None`: not an autoconf method.
fn autoconf(word: &str, errors: &mut Vec<String>) -> Option<(String, Option<ClientId>)> {
    let lower = word.to_ascii_lowercase();
    if AUTOCONF.contains(&lower.as_str()) {
        return Some((lower, None));
    }
    // `dhcp,` is ASCII: the same 5 bytes in `word`.
    let rest = word.get(5..).filter(|_| lower.starts_with("dhcp,"))?;
    match client_id(rest) {
        Ok(id) => Some(("dhcp".into(), Some(id))),
        Err(e) => {
            errors.push(format!("{e}: type 1 and the MAC are sent"));
            Some(("dhcp".into(), None))
        }
    }
}

/// `<type>,<id>` of `dhcp,<type>,<id>`: the type as the kernel's `kstrtou8(.., 0, ..)` reads it
/// (decimal, `0x` hex, `0` octal), the id the rest as written, commas included.
fn client_id(v: &str) -> Result<ClientId, String> {
    let Some((kind, id)) = v.split_once(',') else {
        return Err(format!("client id {} is not <type>,<id>", q(v)));
    };
    let (digits, radix) = match kind.strip_prefix("0x").or_else(|| kind.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None if kind.len() > 1 && kind.starts_with('0') => (kind.get(1..).unwrap_or_default(), 8),
        None => (kind, 10),
    };
    let number = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    let Some(kind) = u8::from_str_radix(digits, radix).ok().filter(|_| number) else {
        return Err(format!("client id type {} is not a number from 0 to 255", q(kind)));
    };
    if id.is_empty() {
        return Err(format!("client id of type {kind} is empty"));
    }
    if id.len() > ClientId::MAX_ID {
        return Err(format!("client id {} is longer than {} bytes", q(id), ClientId::MAX_ID));
    }
    Ok(ClientId { kind, id: id.to_owned() })
}

/// `nfsroot=[<server-ip>:][<root-dir>][,<nfs-options>]` as the kernel reads it (fs/nfs/nfsroot.c),
/// and several servers before the path: `<server-ip>,<server-ip>...:/<root-dir>[,<nfs-options>]`.
/// A value that starts with neither `/`, `,` nor a digit is a name under `/tftpboot/`; a server
/// alone or `,<options>` names no path (the root-path's, else `/tftpboot/%s`). Empty: `None`.
fn parse_nfsroot(v: &str) -> Result<Option<NfsRoot>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    // Several servers: `<server>,<server>...:/<path>[,<options>]`, the list before the first `:/`.
    let several =
        v.split_once(":/").filter(|(list, _)| list.contains(',') && list.starts_with(|c: char| c.is_ascii_digit()));
    if let Some((list, _)) = several {
        let servers = servers::parse(list)?;
        let one = parse_nfsroot(v.get(list.len() + 1..).unwrap_or_default())?;
        return Ok(one.map(|n| NfsRoot { servers, ..n }));
    }
    let (spec, options) = v.split_once(',').unwrap_or((v, ""));
    let options: Vec<String> = options.split(',').filter(|o| !o.is_empty()).map(str::to_owned).collect();
    // `10.0.0.1,10.0.0.2` (no path) or `10.0.0.1:/a,10.0.0.2:/b` would pass a server as a mount
    // option, which every version then refuses until the timeout.
    if let Some(o) = options.iter().find(|o| o.parse::<std::net::Ipv4Addr>().is_ok() || o.contains(":/")) {
        return Err(format!(
            "option {} is a server: several servers go before one path (<server>,<server>:/<path>)",
            q(o)
        ));
    }
    if !v.starts_with(|c: char| c == '/' || c == ',' || c.is_ascii_digit()) {
        // `server.lab:/x` is a server by name, not a name under /tftpboot.
        if let Some((server, _)) = spec.split_once(":/") {
            return Err(format!("server {} is not an IPv4 address (no DNS at boot)", q(server)));
        }
        return Ok(Some(NfsRoot { servers: Vec::new(), path: Some(format!("/tftpboot/{spec}")), options }));
    }
    let (server, path) = match spec.split_once(':') {
        // As in the kernel, a `:` inside the path does not make a server.
        Some((server, path)) if !server.starts_with('/') => (Some(server), path),
        None if !spec.starts_with('/') && !spec.is_empty() => (Some(spec), ""),
        _ => (None, spec),
    };
    let servers = server.map(servers::parse).transpose()?.unwrap_or_default();
    if !path.is_empty() && !path.starts_with('/') {
        return Err(format!("path {} is not absolute", q(path)));
    }
    Ok(Some(NfsRoot { servers, path: (!path.is_empty()).then(|| path.to_owned()), options }))
}

/// `BOOTIF=01-aa-bb-cc-dd-ee-ff` (pxelinux: ARP type 1 = ethernet first), or a bare
/// `aa:bb:cc:dd:ee:ff` / `aa-bb-cc-dd-ee-ff`.
fn parse_mac(v: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{} is not a MAC address (01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff)", q(v));
    let groups: Vec<&str> = v.split([':', '-']).collect();
    let groups = match groups.as_slice() {
        [hw, rest @ ..] if rest.len() == 6 && !v.contains(':') && *hw == "01" => rest,
        [hw, rest @ ..] if rest.len() == 6 && !v.contains(':') => {
            return Err(format!("hardware type {} in {} is not ethernet (01)", q(hw), q(v)))
        }
        all if all.len() == 6 => all,
        _ => return Err(bad()),
    };
    let mut mac = [0u8; 6];
    for (byte, group) in mac.iter_mut().zip(groups) {
        if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(group, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests;
