//! The kernel command line and `/etc/stateless.conf`, parsed into typed [`Options`].
//!
//! Pure: no I/O. The tokenizer follows the kernel's own `next_arg()` (lib/cmdline.c):
//! double quotes group words and are stripped from values, the last occurrence of a key wins,
//! and everything after a lone `--` belongs to init.

pub mod nfsroot;

use std::net::Ipv4Addr;

use crate::model::options::{
    ClientId, Diagnostic, Emergency, IpParam, LogServer, NfsRoot, Options, Origin, OverlayMode, Swap,
};
use crate::model::step::Phase;
use crate::model::text::escape;

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
const VALUE_KEYS: [&str; 22] = [
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
    "stateless.modules",
    "stateless.modules.blacklist",
];

/// The autoconf words `ip=` takes, alone or in its 7th field.
const AUTOCONF: [&str; 9] = ["dhcp", "on", "any", "off", "none", "bootp", "rarp", "both", "static"];

/// `s` quoted and escaped for a message ([`escape`], the one rule for what is printed), cut
/// at 64 chars.
fn q(s: impl AsRef<[u8]>) -> String {
    let s = s.as_ref();
    // The bytes of the first 64 characters, a byte that is not UTF-8 counting as one.
    let chars =
        s.utf8_chunks().flat_map(|c| c.valid().chars().map(char::len_utf8).chain(c.invalid().iter().map(|_| 1)));
    let cut: usize = chars.take(64).sum();
    let more = if cut < s.len() { "..." } else { "" };
    format!("\"{}\"{more}", escape(s.get(..cut).unwrap_or(s)))
}

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

struct Resolver {
    opts: Options,
    dirs_given: bool,
    diags: Vec<Diagnostic>,
}

impl Resolver {
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
                    errors.push(format!("no valid dir in {}: keeping {}", q(v), o.dirs.join(",")));
                    errors
                } else {
                    self.dirs_given = true;
                    o.dirs = dirs;
                    errors
                }
            }
            ("stateless.layers", Some(v)) => set(&mut o.layers, layer_root(v)),
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
        let mut r = Resolver { opts: Options::default(), dirs_given: false, diags: Vec::new() };
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

/// `v` without empty and `.` components: `//a/./b/` -> `/a/b`, `/` stays `/`.
fn normalise_abs(v: &str) -> String {
    let parts: Vec<&str> = v.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    format!("/{}", parts.join("/"))
}

/// `stateless.dirs=`: the valid items (trimmed, normalised) and one message per rejected item.
fn parse_dirs(v: &str) -> (Vec<String>, Vec<String>) {
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

/// One writable dir as `stateless.dirs=` takes it (`dirs`: those taken before), normalised:
/// also what a dir read back from a boot's report must pass again.
pub(crate) fn check_dir(item: &str, dirs: &[String]) -> Result<String, String> {
    let parts: Vec<&str> = item.split('/').filter(|c| !c.is_empty()).collect();
    // A dir is named in every message, the report and the provenance file: only as itself.
    if escape(item.as_bytes()) != item {
        let what = "a control, bidi or zero-width character, or a backslash";
        return Err(format!("{} has a character that is only shown escaped ({what}): refused", q(item)));
    }
    let Some(&first) = parts.first() else {
        return Err(match item {
            "" => "empty item".to_owned(),
            _ => format!("{} names no dir below the root", q(item)),
        });
    };
    if let Some(c) = parts.iter().find(|c| **c == "." || **c == "..") {
        return Err(format!("{} has a {} component", q(item), q(c)));
    }
    if ["proc", "sys", "dev", "run"].contains(&first) {
        return Err(format!("{} is under /{first}, a kernel or tmpfs mount, not an image dir", q(item)));
    }
    let dir = parts.join("/");
    let under = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
    for d in dirs {
        if *d == dir {
            return Err(format!("{} is listed twice", q(item)));
        } else if under(&dir, d) {
            return Err(format!("{} is inside {}, listed before", q(item), q(d)));
        } else if under(d, &dir) {
            return Err(format!("{} contains {}, listed before", q(item), q(d)));
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

/// `nfsroot=[<server-ip>:][<root-dir>][,<nfs-options>]` as the kernel reads it (fs/nfs/nfsroot.c):
/// a value that starts with neither `/`, `,` nor a digit is a name under `/tftpboot/`; a server
/// alone or `,<options>` names no path (the root-path's, else `/tftpboot/%s`). Empty: `None`.
fn parse_nfsroot(v: &str) -> Result<Option<NfsRoot>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let (spec, options) = v.split_once(',').unwrap_or((v, ""));
    let options = options.split(',').filter(|o| !o.is_empty()).map(str::to_owned).collect();
    if !v.starts_with(|c: char| c == '/' || c == ',' || c.is_ascii_digit()) {
        // `server.lab:/x` is a server by name, not a name under /tftpboot.
        if let Some((server, _)) = spec.split_once(":/") {
            return Err(format!("server {} is not an IPv4 address (no DNS at boot)", q(server)));
        }
        return Ok(Some(NfsRoot { server: None, path: Some(format!("/tftpboot/{spec}")), options }));
    }
    let (server, path) = match spec.split_once(':') {
        // As in the kernel, a `:` inside the path does not make a server.
        Some((server, path)) if !server.starts_with('/') => (Some(server), path),
        None if !spec.starts_with('/') && !spec.is_empty() => (Some(spec), ""),
        _ => (None, spec),
    };
    let server = match server {
        Some(s) => Some(
            s.parse::<Ipv4Addr>().map_err(|_| format!("server {} is not an IPv4 address (no DNS at boot)", q(s)))?,
        ),
        None => None,
    };
    if !path.is_empty() && !path.starts_with('/') {
        return Err(format!("path {} is not absolute", q(path)));
    }
    Ok(Some(NfsRoot { server, path: (!path.is_empty()).then(|| path.to_owned()), options }))
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
mod tests {
    use super::*;
    use crate::model::text::hidden;
    use std::collections::BTreeMap;

    fn p(key: &str, value: Option<&str>) -> Param {
        Param { key: key.into(), value: value.map(Into::into) }
    }

    fn words(text: &str) -> Vec<(String, Option<String>)> {
        Cmdline::parse(text.as_bytes()).params.into_iter().map(|p| (p.key, p.value)).collect()
    }

    fn resolve(text: &str) -> (Options, Vec<String>) {
        resolve_with(text, None)
    }

    fn resolve_with(text: &str, config: Option<&str>) -> (Options, Vec<String>) {
        let (o, d) = Options::resolve(&Cmdline::parse(text.as_bytes()), config.map(str::as_bytes));
        (o, d.into_iter().map(|d| d.message).collect())
    }

    /// Options from `text` that must be valid: no diagnostics.
    fn ok(text: &str) -> Options {
        let (o, d) = resolve(text);
        assert!(d.is_empty(), "{text}: {d:?}");
        o
    }

    /// The single diagnostic of `text`, and the options.
    fn bad(text: &str) -> (Options, String) {
        let (o, mut d) = resolve(text);
        assert_eq!(d.len(), 1, "{text}: {d:?}");
        (o, d.remove(0))
    }

    #[test]
    fn dhcp_timeout_bounds() {
        assert_eq!(Options::default().dhcp_timeout, 60);
        assert_eq!(ok("stateless.dhcp.timeout=5").dhcp_timeout, 5);
        assert_eq!(ok("stateless.dhcp.timeout=3600").dhcp_timeout, 3600);
        for v in ["0", "3601", "-1", "ten", "1.5", ""] {
            let (o, d) = bad(&format!("stateless.dhcp.timeout=30 stateless.dhcp.timeout={v}"));
            assert_eq!(o.dhcp_timeout, 30, "{v}: the earlier value stays");
            assert!(d.contains("stateless.dhcp.timeout"), "{d}");
        }
    }

    #[test]
    fn local_disk_labels() {
        assert_eq!((Options::default().swap, Options::default().scratch), (None, None));
        assert_eq!(ok("stateless.swap=auto").swap, Some(Swap::Auto));
        assert_eq!(ok("stateless.swap=lab-swap").swap, Some(Swap::Label("lab-swap".into())));
        assert_eq!(ok("stateless.scratch=scratch").scratch.as_deref(), Some("scratch"));
        for v in ["", "a,b", "../x", "a/b", &"x".repeat(65)] {
            let (o, d) = bad(&format!("stateless.scratch=ok stateless.scratch={v}"));
            assert_eq!(o.scratch.as_deref(), Some("ok"), "{v}: the earlier value stays");
            assert!(d.starts_with("stateless.scratch: "), "{d}");
        }
    }

    #[test]
    fn log_server_forms() {
        let at = |s: &str| LogServer::At(s.parse().unwrap());
        assert_eq!(Options::default().log, LogServer::FromDhcp);
        assert_eq!(ok("stateless.log=10.0.2.2").log, at("10.0.2.2:514"));
        assert_eq!(ok("stateless.log=10.0.2.2:5140").log, at("10.0.2.2:5140"));
        assert_eq!(ok("stateless.log=10.0.2.2 stateless.log=off").log, LogServer::Off);
        assert_eq!(ok("stateless.log=off stateless.log=dhcp").log, LogServer::FromDhcp);
        for v in
            ["loghost", "10.0.2.2:0", "10.0.2.2:65536", "10.0.2.2:", "255.255.255.255", "127.0.0.1", "", "[::1]:514"]
        {
            let (o, d) = bad(&format!("stateless.log=10.0.2.9 stateless.log={v}"));
            assert_eq!(o.log, at("10.0.2.9:514"), "{v}: the earlier value stays");
            assert!(d.starts_with("stateless.log: "), "{d}");
        }
    }

    #[test]
    fn tokenizer_basics() {
        let c = Cmdline::parse("  ro\tquiet root=/dev/nfs key= =x a=b=c\n".as_bytes());
        assert_eq!(
            c.params,
            [
                p("ro", None),
                p("quiet", None),
                p("root", Some("/dev/nfs")),
                p("key", Some("")),
                p("=x", None),
                p("a", Some("b=c"))
            ]
        );
        assert!(c.init_args.is_empty());
        assert_eq!(Cmdline::parse("".as_bytes()), Cmdline::default());
        assert_eq!(Cmdline::parse(" \n\t\r\x0b\x0c".as_bytes()), Cmdline::default());
        // `=` at the start does not split, a later one does (kernel: `equals == 0` means none).
        assert_eq!(words("=a=b"), [("=a".into(), Some("b".into()))]);
    }

    #[test]
    fn tokenizer_quotes() {
        assert_eq!(words(r#"k="a b" x"#), [("k".into(), Some("a b".into())), ("x".into(), None)]);
        assert_eq!(words(r#""k=a b" x"#), [("k".into(), Some("a b".into())), ("x".into(), None)]);
        assert_eq!(words(r#""flag with space""#), [("flag with space".into(), None)]);
        assert_eq!(words(r#"k="" j=""#), [("k".into(), Some("".into())), ("j".into(), Some("".into()))]);
        // A quote in the middle groups but is kept, as in the kernel.
        assert_eq!(words(r#"k=a"b c"d e"#), [("k".into(), Some(r#"a"b c"d"#.into())), ("e".into(), None)]);
        assert_eq!(words(r#"k="a"b"#), [("k".into(), Some("a\"b".into()))]);
        // Unbalanced: the rest of the line is one word.
        assert_eq!(words(r#"k="a b c"#), [("k".into(), Some("a b c".into()))]);
        assert_eq!(words(r#"a "b c"#), [("a".into(), None), ("b c".into(), None)]);
        assert_eq!(words("\""), [(String::new(), None)]);
        assert_eq!(words("\"\""), [(String::new(), None)]);
        assert_eq!(words("\"k=\""), [("k".into(), Some("".into()))]);
    }

    #[test]
    fn tokenizer_dashes_and_last_wins() {
        let c = Cmdline::parse("a=1 b a=2 -- single k=\"x y\" \"q r\" -- dropped\n".as_bytes());
        assert_eq!(c.params, [p("a", Some("1")), p("b", None), p("a", Some("2"))]);
        assert_eq!(c.init_args, ["single", "k=x y", "q r"]);
        assert_eq!(c.value("a"), Some("2"));
        assert_eq!(c.get("a"), Some(&p("a", Some("2"))));
        assert!(c.has_flag("b") && !c.has_flag("a") && !c.has_flag("c") && c.get("c").is_none());
        assert!(!Cmdline::parse("q q=1".as_bytes()).has_flag("q") && Cmdline::parse("q=1 q".as_bytes()).has_flag("q"));
        // `--=x` is not the separator; a quoted `"--"` is (the kernel strips quotes first).
        assert_eq!(Cmdline::parse("--=x a".as_bytes()).params.len(), 2);
        assert_eq!(Cmdline::parse("\"--\" a".as_bytes()).init_args, ["a"]);
        assert_eq!(Cmdline::parse("x --".as_bytes()).init_args, Vec::<String>::new());
    }

    #[test]
    fn tokenizer_never_panics() {
        let nasty = ["\0", "\"\0\"", "a=\"\0", "é=\"ü\" \"ñ", "===", "\"=\"", "\"\"\"", "-- --", "\u{a0}x\u{3000}"];
        for s in nasty {
            let _ = Options::resolve(&Cmdline::parse(s.as_bytes()), Some(s.as_bytes()));
        }
        let huge = "k=\"v w\" ".repeat(100_000) + "\"";
        assert_eq!(Cmdline::parse(huge.as_bytes()).params.len(), 100_001);
        // Bytes, as the kernel's isspace() sees them: 0xA0 (Latin-1's no-break space) is a
        // blank wherever it is, so U+00A0 (c2 a0) splits its word; U+3000 (e3 80 80) does not.
        assert_eq!(words("a\u{a0}b"), [("b".into(), None)]);
        assert_eq!(words("a\u{3000}b"), [("a\u{3000}b".into(), None)]);
    }

    #[test]
    fn defaults() {
        let o = ok("");
        assert_eq!(o, Options::default());
        assert_eq!(
            (o.dirs, o.layers.as_str(), o.hostname_prefix.as_str()),
            (vec!["etc".into(), "var".into()], "/diskless", "Node")
        );
        assert_eq!((o.emergency, o.mode, o.quiet, o.debug), (Emergency::Continue, OverlayMode::Overlay, false, false));
        // Unknown non-stateless words are the kernel's or init's business; a dotted one may be
        // a module's parameter (kept for when that module loads, as modprobe keeps it).
        let o = ok("console=ttyS0 rd.break single 3 init=/sbin/init e1000.debug=2");
        assert_eq!(
            o.modules.params,
            [("rd.break".to_string(), None), ("e1000.debug".to_string(), Some("2".to_string()))]
        );
        assert_eq!(Options { modules: Default::default(), ..o }, Options::default());
        let o = ok(
            "stateless.modules=e1000,virtio-net modprobe.blacklist=pcspkr stateless.modules.blacklist=snd_hda_intel",
        );
        assert_eq!(
            (o.modules.extra, o.modules.blacklist),
            (vec!["e1000".into(), "virtio-net".into()], vec!["pcspkr".into(), "snd_hda_intel".into()])
        );
        assert!(ok("stateless.modules=none").modules.no_coldplug);
        let (o, d) = bad("stateless.modules=../x,ok");
        assert_eq!((o.modules.extra, d.contains("not a module name")), (vec!["ok".to_string()], true));
    }

    #[test]
    fn softlevel_and_default_dirs() {
        let o = ok("softlevel=unionfs");
        assert_eq!((o.softlevel, o.dirs), (Some(vec!["unionfs".into()]), vec!["etc".into(), "var".into()]));
        let o = ok("softlevel=,default,,unionfs,");
        assert_eq!((o.softlevel, o.dirs.len()), (Some(vec!["default".into(), "unionfs".into()]), 2));
        let o = ok("softlevel=default");
        assert_eq!((o.softlevel, o.dirs), (Some(vec!["default".into()]), vec![]));
        assert_eq!(ok("softlevel=").dirs, Vec::<String>::new());
        // An explicit stateless.dirs beats the softlevel rule, from either source.
        assert_eq!(ok("softlevel=default stateless.dirs=var/log").dirs, ["var/log"]);
        assert_eq!(resolve_with("softlevel=x", Some("stateless.dirs=etc")).0.dirs, ["etc"]);
        let (o, d) = bad("softlevel");
        assert_eq!((o.softlevel, o.dirs.len(), d.as_str()), (None, 2, "softlevel: needs a value"));
    }

    #[test]
    fn init() {
        assert_eq!(ok("stateless.init=/sbin/openrc-init").init.as_deref(), Some("/sbin/openrc-init"));
        assert_eq!(ok("stateless.init=/boot/./x").init.as_deref(), Some("/boot/./x"));
        for (v, msg) in [
            ("sbin/init", r#"stateless.init: "sbin/init" is not an absolute path"#),
            ("", r#"stateless.init: "" is not an absolute path"#),
            ("/sbin/../x", r#"stateless.init: "/sbin/../x" has a ".." component"#),
            ("/a\0b", r#"stateless.init: "/a\x00b" contains a NUL byte"#),
        ] {
            let (o, d) = bad(&format!("stateless.init=\"{v}\""));
            assert_eq!((o.init, d.as_str()), (None, msg));
        }
        assert_eq!(bad("stateless.init").1, "stateless.init: needs a value");
        // An invalid later value leaves the earlier valid one.
        assert_eq!(bad("stateless.init=/a stateless.init=b").0.init.as_deref(), Some("/a"));
    }

    #[test]
    fn dirs() {
        assert_eq!(ok("stateless.dirs=/etc/,var//log,/srv/").dirs, ["etc", "var/log", "srv"]);
        assert_eq!(resolve_with("", Some("stateless.dirs = etc, var/lib ,home")).0.dirs, ["etc", "var/lib", "home"]);
        assert_eq!(ok("stateless.dirs=").dirs, Vec::<String>::new());
        assert_eq!(ok("stateless.dirs=etc stateless.dirs=home").dirs, ["home"]);
        assert_eq!(ok("stateless.dirs=varlog,var").dirs, ["varlog", "var"]);
        for (v, keep, msg) in [
            ("../x,etc", vec!["etc"], r#"stateless.dirs: "../x" has a ".." component"#),
            ("etc/./x", vec![], r#"stateless.dirs: "etc/./x" has a "." component"#),
            ("etc,,var", vec!["etc", "var"], "stateless.dirs: empty item"),
            ("etc,", vec!["etc"], "stateless.dirs: empty item"),
            ("//", vec![], r#"stateless.dirs: "//" names no dir below the root"#),
            (
                "proc,etc",
                vec!["etc"],
                r#"stateless.dirs: "proc" is under /proc, a kernel or tmpfs mount, not an image dir"#,
            ),
            ("/sys/x", vec![], r#"stateless.dirs: "/sys/x" is under /sys, a kernel or tmpfs mount, not an image dir"#),
            ("dev", vec![], r#"stateless.dirs: "dev" is under /dev, a kernel or tmpfs mount, not an image dir"#),
            ("run/x", vec![], r#"stateless.dirs: "run/x" is under /run, a kernel or tmpfs mount, not an image dir"#),
            ("etc,/etc/", vec!["etc"], r#"stateless.dirs: "/etc/" is listed twice"#),
            ("var,var/log", vec!["var"], r#"stateless.dirs: "var/log" is inside "var", listed before"#),
            ("var/log,var", vec!["var/log"], r#"stateless.dirs: "var" contains "var/log", listed before"#),
            (
                "a\0",
                vec![],
                r#"stateless.dirs: "a\x00" has a character that is only shown escaped (a control, bidi or zero-width character, or a backslash): refused"#,
            ),
        ] {
            let (o, d) = resolve(&format!("stateless.dirs=\"{v}\""));
            assert_eq!(d.first().map(String::as_str), Some(msg), "{v}");
            if keep.is_empty() {
                // Every item refused: the default stays, and says so.
                assert_eq!(o.dirs, ["etc", "var"], "{v}");
                let shown = escape(v.as_bytes());
                assert_eq!(d.last().unwrap(), &format!("stateless.dirs: no valid dir in \"{shown}\": keeping etc,var"));
            } else {
                assert_eq!((o.dirs, d.len()), (keep.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 1), "{v}");
            }
        }
        // A dir is shown as itself everywhere, or refused: control (C0, C1), bidi, backslash.
        let hostile = "etc/\u{1b}[2J,var/\u{9b}1m,var/a\u{202e}b,var/a\\b,var/\u{7f},var";
        let (o, d) = resolve_with("", Some(&format!("stateless.dirs={hostile}")));
        assert_eq!(o.dirs, ["var"]);
        let shown: Vec<&str> = d.iter().map(|m| m.split('"').nth(1).unwrap()).collect();
        assert_eq!(shown, ["etc/\\x1b[2J", "var/\\xc2\\x9b1m", "var/a\\xe2\\x80\\xaeb", "var/a\\x5cb", "var/\\x7f"]);
        assert!(d.iter().all(|m| m.ends_with("(a control, bidi or zero-width character, or a backslash): refused")));
        // An all-invalid list keeps the earlier valid one, also one from the config file.
        assert_eq!(resolve_with("stateless.dirs=proc,../..,/", Some("stateless.dirs=var")).0.dirs, ["var"]);
        // ... and softlevel= without unionfs still decides when no valid list was given.
        assert_eq!(resolve("softlevel=default stateless.dirs=proc").0.dirs, Vec::<String>::new());
        let (o, d) = bad("stateless.dirs");
        assert_eq!((o.dirs.len(), d.as_str()), (2, "stateless.dirs: needs a value"));
    }

    #[test]
    fn diagnostics_show_hostile_keys_and_values_escaped() {
        let h = "\u{1b}[2J\u{9b}\u{7f}\u{202e}";
        let words = VALUE_KEYS.iter().map(|k| format!("{k}=x{h}")).chain([format!("stateless.{h}=1")]);
        let cmdline = words.collect::<Vec<_>>().join(" ");
        let config = format!("stateless.{h}=1\nfoo{h}=1\n{h}\nstateless.dirs=a{h}\nstateless.break={h}\n");
        let (_, d) = Options::resolve(&Cmdline::parse(cmdline.as_bytes()), Some(config.as_bytes()));
        assert!(d.len() > 15, "{d:?}");
        for text in d.iter().flat_map(|d| [&d.key, &d.message]) {
            assert!(!text.chars().any(|c| c.is_control() || hidden(c)), "{text:?}");
        }
        assert!(d.iter().any(|d| d.message == "stateless.\\x1b[2J\\xc2\\x9b\\x7f\\xe2\\x80\\xae: unknown key"));
    }

    #[test]
    fn layers() {
        assert_eq!(ok("stateless.layers=/srv//layers/./x/").layers, "/srv/layers/x");
        assert_eq!(ok("stateless.layers=/").layers, "/");
        assert_eq!(ok("stateless.layers=///").layers, "/");
        let (o, d) = bad("stateless.layers=layers");
        assert_eq!(
            (o.layers.as_str(), d.as_str()),
            ("/diskless", r#"stateless.layers: "layers" is not an absolute path"#)
        );
        assert_eq!(bad("stateless.layers=/a/..").1, r#"stateless.layers: "/a/.." has a ".." component"#);
    }

    #[test]
    fn hostname_and_prefix() {
        assert_eq!(ok("stateless.hostname=lab3-12").hostname.as_deref(), Some("lab3-12"));
        assert_eq!(ok("stateless.hostname=\"bad/name\"").hostname.as_deref(), Some("bad/name"));
        let (o, d) = bad("stateless.hostname=");
        assert_eq!(
            (o.hostname, d.as_str()),
            (None, "stateless.hostname: empty value (leave it out to use dhcp or the fallback)")
        );
        assert_eq!(bad("stateless.hostname=a stateless.hostname=").0.hostname, None);
        for v in ["lab", "Lab3-", "0a", &"x".repeat(32)] {
            assert_eq!(ok(&format!("stateless.hostname.prefix={v}")).hostname_prefix, v);
        }
        for v in ["", "-a", "a_b", "a.b", "é", &"x".repeat(33)] {
            let (o, d) = bad(&format!("stateless.hostname.prefix={v}"));
            assert_eq!(o.hostname_prefix, "Node");
            let want = format!("stateless.hostname.prefix: {v:?} is not 1 to 32 ascii letters, digits or \"-\" starting with a letter or digit");
            assert_eq!(d, want);
        }
    }

    #[test]
    fn tmpfs_sizes() {
        for (v, want) in [
            ("512M", "512m"),
            ("1g", "1g"),
            ("100%", "100%"),
            ("1%", "1%"),
            ("0100k", "100k"),
            ("65536", "65536"),
            ("1048576g", "1048576g"),
        ] {
            assert_eq!(ok(&format!("stateless.tmpfs.size={v}")).tmpfs_size.as_deref(), Some(want), "{v}");
        }
        for (v, why) in [
            ("", "is not a size (digits, then optionally k, m, g or %)"),
            ("m", "is not a size (digits, then optionally k, m, g or %)"),
            ("12x", "is not a size (digits, then optionally k, m, g or %)"),
            ("1mb", "is not a size (digits, then optionally k, m, g or %)"),
            ("-1m", "is not a size (digits, then optionally k, m, g or %)"),
            ("0%", "is not a percentage from 1% to 100%"),
            ("101%", "is not a percentage from 1% to 100%"),
            ("99999999999999999999", "is too large"),
            ("17179869184g", "is too large (more than 1 PiB is no limit at all)"),
            ("1048577g", "is too large (more than 1 PiB is no limit at all)"),
            ("0", "is below 64k (0 would mean no limit at all)"),
            ("0k", "is below 64k (0 would mean no limit at all)"),
            ("4096", "is below 64k (0 would mean no limit at all)"),
        ] {
            let (o, d) = bad(&format!("stateless.tmpfs.size={v}"));
            assert_eq!((o.tmpfs_size, d), (None, format!("stateless.tmpfs.size: {v:?} {why}")));
        }
    }

    #[test]
    fn break_emergency_mode() {
        assert_eq!(ok("stateless.break=host-files").break_at, [Phase::HostFiles]);
        assert_eq!(ok("stateless.break=handoff").break_at, [Phase::Handoff]);
        let each = ok("stateless.break=layers,hardware,layers,handoff").break_at;
        assert_eq!(each, [Phase::Layers, Phase::Hardware, Phase::Handoff]);
        let (o, d) = bad("stateless.break=layers,nope");
        assert_eq!(o.break_at, []);
        assert_eq!(d, format!("stateless.break: {}", "nope".parse::<Phase>().unwrap_err()));
        let (o, d) = bad("stateless.break=nope");
        assert_eq!(o.break_at, []);
        assert_eq!(d, format!("stateless.break: {}", "nope".parse::<Phase>().unwrap_err()));
        assert_eq!(bad("stateless.break").1, "stateless.break: needs a phase name");
        assert_eq!(
            bad("stateless.break=early-mounts").1,
            "stateless.break: \"early-mounts\" runs before the command line is read"
        );
        for (v, e) in [
            ("continue", Emergency::Continue),
            ("shell", Emergency::Shell),
            ("reboot", Emergency::Reboot),
            ("poweroff", Emergency::Poweroff),
        ] {
            assert_eq!(ok(&format!("stateless.emergency={v}")).emergency, e);
        }
        let (o, d) = bad("stateless.emergency=reboot stateless.emergency=halt");
        assert_eq!(
            (o.emergency, d.as_str()),
            (Emergency::Reboot, r#"stateless.emergency: "halt" is not one of continue, shell, reboot, poweroff"#)
        );
        assert_eq!(ok("stateless.mode=copy").mode, OverlayMode::Copy);
        assert_eq!(ok("stateless.mode=copy stateless.mode=overlay").mode, OverlayMode::Overlay);
        assert_eq!(bad("stateless.mode=Copy").1, r#"stateless.mode: "Copy" is not one of overlay, copy"#);
        assert_eq!(bad("stateless.mode").1, "stateless.mode: needs a value");
    }

    #[test]
    fn quiet_debug() {
        let o = ok("quiet debug");
        assert!(o.quiet && o.debug);
        // The kernel ignores their value too.
        assert!(ok("quiet=0").quiet);
        let (o, d) = resolve_with("", Some("quiet=1\ndebug"));
        assert!(!o.quiet && !o.debug && d.len() == 2);
    }

    fn ip(text: &str) -> IpParam {
        ok(text).ip.unwrap()
    }

    #[test]
    fn ip_param() {
        let a = |s: &str| s.parse::<Ipv4Addr>().ok();
        for w in AUTOCONF {
            assert_eq!(ip(&format!("ip={w}")), IpParam { autoconf: w.into(), ..IpParam::default() });
        }
        assert_eq!(ip("ip=DHCP").autoconf, "dhcp");
        assert_eq!(ip("ip=").autoconf, "off");
        assert_eq!(
            ip("ip=:::::eth0:dhcp"),
            IpParam { device: Some("eth0".into()), autoconf: "dhcp".into(), ..IpParam::default() }
        );
        let full = ip("ip=192.168.1.21:192.168.1.1:192.168.1.254:255.255.255.0:lab3-12.example.edu:eth0:off:8.8.8.8:1.1.1.1:10.0.0.1:extra");
        assert_eq!(
            full,
            IpParam {
                client: a("192.168.1.21"),
                server: a("192.168.1.1"),
                gateway: a("192.168.1.254"),
                netmask: a("255.255.255.0"),
                hostname: Some("lab3-12.example.edu".into()),
                device: Some("eth0".into()),
                autoconf: "off".into(),
                dns: vec![a("8.8.8.8").unwrap(), a("1.1.1.1").unwrap()],
                ntp: vec![a("10.0.0.1").unwrap()],
                client_id: None,
            }
        );
        assert_eq!(ip("ip=10.0.0.5"), IpParam { client: a("10.0.0.5"), ..IpParam::default() });
        assert_eq!(ip("ip=10.0.0.5::0.0.0.0"), IpParam { client: a("10.0.0.5"), ..IpParam::default() });
        assert_eq!(ip("ip=::10.0.0.1:255.0.0.0").gateway, a("10.0.0.1"));

        let (o, d) = resolve("ip=10.0.0.300:1.2.3.4::::eth1:frob:dns");
        assert_eq!(o.ip, Some(IpParam { server: a("1.2.3.4"), device: Some("eth1".into()), ..IpParam::default() }));
        assert_eq!(
            d,
            [
                r#"ip: client-ip "10.0.0.300" is not an IPv4 address"#,
                r#"ip: autoconf "frob" is not one of dhcp, on, any, off, none, bootp, rarp, both, static"#,
                r#"ip: dns0-ip "dns" is not an IPv4 address"#,
            ]
        );
        let (o, d) = bad("ip=dhcp ip=frob");
        assert_eq!(o.ip.map(|i| i.autoconf).as_deref(), Some("dhcp"));
        assert_eq!(
            d,
            r#"ip: "frob" is neither an autoconf method (dhcp, on, any, off, none, bootp, rarp, both, static) nor an IPv4 address"#
        );
        assert_eq!(bad("ip").1, "ip: needs a value");
    }

    /// The kernel's `<dns0-ip>:<dns1-ip>:<ntp0-ip>`: kept in order, 0.0.0.0 as not given.
    #[test]
    fn ip_name_and_time_servers() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let i = ip("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:192.0.2.53:192.0.2.54:192.0.2.123");
        assert_eq!((i.dns, i.ntp), (vec![a("192.0.2.53"), a("192.0.2.54")], vec![a("192.0.2.123")]));
        let i = ip("ip=10.0.2.15:::::eth0:off:0.0.0.0:192.0.2.54");
        assert_eq!((i.dns, i.ntp), (vec![a("192.0.2.54")], vec![]));
        assert_eq!(ip("ip=10.0.2.15::::::none:127.0.0.53").dns, [a("127.0.0.53")], "a resolver in the image");
        let (o, d) = resolve("ip=10.0.2.15::::::off:224.0.0.251:255.255.255.255:240.0.0.1");
        let i = o.ip.unwrap();
        assert_eq!((i.client, i.dns, i.ntp), (Some(a("10.0.2.15")), vec![], vec![]));
        assert_eq!(
            d,
            [
                "ip: dns0-ip 224.0.0.251 is not a unicast address",
                "ip: dns1-ip 255.255.255.255 is not a unicast address",
                "ip: ntp0-ip 240.0.0.1 is not a unicast address",
            ]
        );
        // The servers count for a static line; one that asks DHCP gets the lease's (the kernel's rule).
        let line = ip("ip=10.0.2.15:::::eth0:off:192.0.2.53::192.0.2.123");
        assert_eq!(line.servers(), (&[a("192.0.2.53")][..], &[a("192.0.2.123")][..]));
        let dhcp = ip("ip=:::::eth0:dhcp:192.0.2.53::192.0.2.123");
        assert_eq!(dhcp.dns, [a("192.0.2.53")]);
        assert_eq!(dhcp.servers(), (&[][..], &[][..]));
    }

    /// `dhcp,<type>,<id>` (the kernel's ic_proto_name), alone or as the autoconf field.
    #[test]
    fn ip_dhcp_client_id() {
        let id = |kind, id: &str| Some(ClientId { kind, id: id.into() });
        let i = ip("ip=dhcp,0,lab3-12");
        assert_eq!((i.autoconf.as_str(), i.client_id), ("dhcp", id(0, "lab3-12")));
        // Alone, the id is the rest of the value, `:` and `,` included; the type as kstrtou8 base 0.
        assert_eq!(ip("ip=DHCP,1,52:54:00:12:34:56").client_id, id(1, "52:54:00:12:34:56"));
        assert_eq!(ip("ip=dhcp,0x12,a,b").client_id, id(0x12, "a,b"));
        assert_eq!(ip("ip=dhcp,010,x").client_id, id(8, "x"));
        assert_eq!(ip("ip=dhcp,255,x").client_id, id(255, "x"));
        // In the long form it ends at the next `:`.
        let i = ip("ip=:::::eth0:dhcp,0,lab3-12:192.0.2.53");
        assert_eq!((i.device.as_deref(), i.client_id, i.dns.len()), (Some("eth0"), id(0, "lab3-12"), 1));
        assert_eq!(id(1, "ab").unwrap().option(), [1, b'a', b'b']);
        // A bad client id is reported and left out: DHCP with the default one.
        for (v, msg) in [
            ("dhcp,1", r#"client id "1" is not <type>,<id>"#),
            ("dhcp,", r#"client id "" is not <type>,<id>"#),
            ("dhcp,256,x", r#"client id type "256" is not a number from 0 to 255"#),
            ("dhcp,0x,x", r#"client id type "0x" is not a number from 0 to 255"#),
            ("dhcp,09,x", r#"client id type "09" is not a number from 0 to 255"#),
            ("dhcp,-1,x", r#"client id type "-1" is not a number from 0 to 255"#),
            ("dhcp,,x", r#"client id type "" is not a number from 0 to 255"#),
            ("dhcp,1,", "client id of type 1 is empty"),
            (":::::eth0:dhcp,x,y", r#"client id type "x" is not a number from 0 to 255"#),
        ] {
            let (o, d) = bad(&format!("ip={v}"));
            let i = o.ip.unwrap();
            assert_eq!((i.autoconf.as_str(), i.client_id), ("dhcp", None), "{v}");
            assert_eq!(d, format!("ip: {msg}: type 1 and the MAC are sent"), "{v}");
        }
        let long = "x".repeat(ClientId::MAX_ID);
        assert_eq!(ip(&format!("ip=dhcp,0,{long}")).client_id, id(0, &long));
        let (o, d) = bad(&format!("ip=dhcp,0,{long}y"));
        assert_eq!(o.ip.unwrap().client_id, None);
        assert!(d.contains("is longer than 251 bytes"), "{d}");
        // Printed escaped: in messages and in the log line.
        let (_, d) = bad("ip=\"dhcp,1x,\x1b[2J\"");
        assert_eq!(d, r#"ip: client id type "1x" is not a number from 0 to 255: type 1 and the MAC are sent"#);
        assert_eq!(id(0, "a\x1b[2Jb\u{202e}").unwrap().to_string(), r#"type 0 id "a\x1b[2Jb\xe2\x80\xae""#);
    }

    /// `nfsaddrs=` is the kernel's old name of `ip=` (the same setup function): the later wins.
    #[test]
    fn nfsaddrs_is_ip() {
        assert_eq!(ok("nfsaddrs=10.0.2.15:10.0.2.2::255.255.255.0").ip, ok("ip=10.0.2.15:10.0.2.2::255.255.255.0").ip);
        assert_eq!(ok("ip=dhcp nfsaddrs=off").ip.unwrap().autoconf, "off");
        assert_eq!(ok("nfsaddrs=off ip=dhcp").ip.unwrap().autoconf, "dhcp");
        assert_eq!(bad("nfsaddrs=frob").1.split_once(':').unwrap().0, "nfsaddrs");
        assert_eq!(bad("nfsaddrs").1, "nfsaddrs: needs a value");
    }

    #[test]
    fn dhcp_inform() {
        assert!(Options::default().dhcp_inform);
        assert!(!ok("stateless.dhcp.inform=no").dhcp_inform);
        assert!(ok("stateless.dhcp.inform=no stateless.dhcp.inform=yes").dhcp_inform);
        let (o, d) = bad("stateless.dhcp.inform=no stateless.dhcp.inform=off");
        assert!(!o.dhcp_inform, "a bad value keeps the earlier one");
        assert_eq!(d, r#"stateless.dhcp.inform: "off" is not yes or no"#);
        assert_eq!(bad("stateless.dhcp.inform").1, "stateless.dhcp.inform: needs a value");
        let (o, d) = resolve_with("", Some("stateless.dhcp.inform=no\n"));
        assert_eq!((o.dhcp_inform, d.len()), (false, 0), "in the config file too");
    }

    #[test]
    fn nfsroot() {
        let n = ok("nfsroot=192.168.1.1:/diskless/gentoo,ro,rsize=8192,,posix").nfsroot.unwrap();
        assert_eq!(n.server, "192.168.1.1".parse().ok());
        assert_eq!(
            (n.path.as_deref(), n.options),
            (Some("/diskless/gentoo"), vec!["ro".into(), "rsize=8192".into(), "posix".into()])
        );
        let n = |v: &str| ok(&format!("nfsroot={v}")).nfsroot.unwrap();
        let at = |s: Option<&str>, p: Option<&str>, o: &[&str]| NfsRoot {
            server: s.map(|s| s.parse().unwrap()),
            path: p.map(Into::into),
            options: o.iter().map(|o| o.to_string()).collect(),
        };
        assert_eq!(n("/srv/%s"), at(None, Some("/srv/%s"), &[]));
        assert_eq!(n("/a:b").path.as_deref(), Some("/a:b"));
        // The kernel's shorter forms: a name under /tftpboot, a server alone, options alone.
        assert_eq!(n("client7,tcp"), at(None, Some("/tftpboot/client7"), &["tcp"]));
        assert_eq!(n("10.0.0.1"), at(Some("10.0.0.1"), None, &[]));
        assert_eq!(n("10.0.0.1:"), at(Some("10.0.0.1"), None, &[]));
        assert_eq!(n("10.0.0.1,tcp"), at(Some("10.0.0.1"), None, &["tcp"]));
        assert_eq!(n(",vers=4.1,tcp"), at(None, None, &["vers=4.1", "tcp"]));
        assert_eq!(ok("nfsroot=").nfsroot, None);
        for (v, msg) in [
            ("server:/x", r#"nfsroot: server "server" is not an IPv4 address (no DNS at boot)"#),
            (":/x", r#"nfsroot: server "" is not an IPv4 address (no DNS at boot)"#),
            ("10.0.0.1:x", r#"nfsroot: path "x" is not absolute"#),
        ] {
            let (o, d) = bad(&format!("nfsroot={v}"));
            assert_eq!((o.nfsroot, d.as_str()), (None, msg));
        }
    }

    #[test]
    fn root_and_bootif() {
        assert_eq!(ok("root=/dev/nfs").root.as_deref(), Some("/dev/nfs"));
        assert_eq!(ok("root=nfs:10.0.0.1:/srv/root").root.as_deref(), Some("nfs:10.0.0.1:/srv/root"));
        assert_eq!(ok("root=").root, None);
        let mac = Some([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        for v in ["01-52-54-00-ab-cd-ef", "52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef"] {
            assert_eq!(ok(&format!("BOOTIF={v}")).bootif, mac, "{v}");
        }
        for v in
            ["52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "5:54:00:ab:cd:ef", "+5:54:00:ab:cd:ef", "zz:54:00:ab:cd:ef", ""]
        {
            let (o, d) = bad(&format!("BOOTIF={v}"));
            assert_eq!(o.bootif, None);
            assert_eq!(d, format!("BOOTIF: {v:?} is not a MAC address (01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff)"));
        }
        assert_eq!(
            bad("BOOTIF=06-52-54-00-ab-cd-ef").1,
            r#"BOOTIF: hardware type "06" in "06-52-54-00-ab-cd-ef" is not ethernet (01)"#
        );
        // `bootif` (lower case) is not the pxelinux key.
        assert_eq!(ok("bootif=01-52-54-00-ab-cd-ef").bootif, None);
    }

    #[test]
    fn unknown_stateless_keys() {
        let (o, d) = resolve("stateless.nope=1 stateless.dir=etc stateless stateless.=x stateless.flag");
        assert_eq!(o, Options::default());
        assert_eq!(
            d,
            [
                "stateless.nope: unknown key",
                "stateless.dir: unknown key",
                "stateless.: unknown key",
                "stateless.flag: unknown key",
            ]
        );
    }

    #[test]
    fn config_file() {
        let config = "# site defaults\n\n  stateless.mode = copy  \nstateless.hostname.prefix='lab'\nstateless.layers=\"/srv/layers/\"\r\n\
                      stateless.emergency=shell\nip=dhcp\nnot a pair\n=x\nstateless.bogus=1\nstateless.tmpfs.size=\"50%\n\
                      stateless.break\nstateless.dirs=etc,var/lib\n";
        let (o, d) = Options::resolve(
            &Cmdline::parse("stateless.emergency=reboot stateless.dirs=var".as_bytes()),
            Some(config.as_bytes()),
        );
        assert_eq!(o.mode, OverlayMode::Copy);
        assert_eq!(o.hostname_prefix, "lab");
        assert_eq!(o.layers, "/srv/layers");
        assert_eq!(o.emergency, Emergency::Reboot, "the command line wins");
        assert_eq!(o.dirs, ["var"], "the command line wins");
        assert_eq!(o.ip, None, "ip= is not taken from the config file");
        let got: Vec<(Origin, &str, &str)> =
            d.iter().map(|d| (d.origin.clone(), d.key.as_str(), d.message.as_str())).collect();
        let cfg = |line| Origin::Config { line };
        assert_eq!(
            got,
            [
                (cfg(7), "ip", "ip: only stateless.* keys belong in the config file"),
                (cfg(8), "not a pair", r#""not a pair": not a key=value line"#),
                (cfg(9), "", r#""=x": line has no key"#),
                (cfg(10), "stateless.bogus", "stateless.bogus: unknown key"),
                (
                    cfg(11),
                    "stateless.tmpfs.size",
                    r#"stateless.tmpfs.size: ""50%" is not a size (digits, then optionally k, m, g or %)"#
                ),
                (cfg(12), "stateless.break", r#""stateless.break": not a key=value line"#),
            ]
        );
        assert_eq!(d[0].to_string(), "/etc/stateless.conf line 7: ip: only stateless.* keys belong in the config file");
        // Config values apply when the command line has none; an invalid cmdline value keeps them.
        let (o, d) = resolve_with(
            "stateless.mode=bad",
            Some("stateless.mode=copy\nstateless.dirs=home\nstateless.hostname=\"a b\""),
        );
        assert_eq!((o.mode, o.dirs, o.hostname.as_deref()), (OverlayMode::Copy, vec!["home".into()], Some("a b")));
        assert_eq!(d.len(), 1);
        assert_eq!(Options::resolve(&Cmdline::default(), Some(b"")), (Options::default(), vec![]));
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(1000);
        let d = bad(&format!("stateless.mode={long}")).1;
        assert!(d.len() < 120 && d.contains("\"..."), "{d}");
        let d = bad(&format!("stateless.mode=\"{}\"", "é".repeat(100))).1;
        assert!(d.contains("\"..."), "{d}");
    }

    /// Resolved options and init args as flat `field=value` strings, as the fixture expectations name them.
    fn flatten(c: &Cmdline, o: &Options) -> BTreeMap<String, String> {
        fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
            let s = match v {
                serde_json::Value::Object(m) => {
                    // `null` marks an absent struct; its fields are then absent too.
                    for (k, v) in m {
                        walk(&format!("{prefix}.{k}"), v, out);
                    }
                    return;
                }
                serde_json::Value::Array(a) => {
                    a.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_owned)).collect::<Vec<_>>().join(",")
                }
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "(none)".into(),
                other => other.to_string(),
            };
            out.insert(prefix.trim_start_matches('.').to_owned(), s);
        }
        let mut out = BTreeMap::new();
        walk("", &serde_json::to_value(o).unwrap(), &mut out);
        if let Some(mac) = o.bootif {
            out.insert("bootif".into(), mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
        }
        out.insert("init_args".into(), c.init_args.join(","));
        out
    }

    /// Checks one fixture against its expectation text; returns the mismatches.
    fn check_fixture(cmdline: &str, config: Option<&str>, expect: &str) -> Vec<String> {
        let c = Cmdline::parse(cmdline.as_bytes());
        let (o, d) = Options::resolve(&c, config.map(str::as_bytes));
        let mut flat = flatten(&c, &o);
        flat.insert("diagnostics".into(), d.len().to_string());
        let (mut errors, mut diags, mut has_count) = (Vec::new(), Vec::new(), false);
        for line in expect.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((key, want)) = line.split_once('=') else {
                errors.push(format!("bad expectation line {line:?}"));
                continue;
            };
            has_count |= key == "diagnostics";
            if key == "diag" {
                diags.push(want.to_owned());
                continue;
            }
            match flat.get(key) {
                None => errors.push(format!("unknown field {key:?} (known: {:?})", flat.keys().collect::<Vec<_>>())),
                Some(got) if got != want => errors.push(format!("{key}: expected {want:?}, got {got:?}")),
                Some(_) => {}
            }
        }
        if !has_count {
            errors.push("no diagnostics=N line".into());
        }
        let got: Vec<String> = d.iter().map(|d| d.message.clone()).collect();
        if !diags.is_empty() && diags != got {
            errors.push(format!("diag lines: expected {diags:#?}, got {got:#?}"));
        }
        errors
    }

    #[test]
    fn fixture_checker_can_fail() {
        assert!(check_fixture("quiet", None, "quiet=true\ndiagnostics=0").is_empty());
        assert_eq!(check_fixture("quiet", None, "quiet=false\ndiagnostics=0").len(), 1);
        assert_eq!(check_fixture("quiet", None, "quiet=true").len(), 1);
        assert_eq!(check_fixture("quiet", None, "nosuch=1\ndiagnostics=0").len(), 1);
        assert_eq!(check_fixture("stateless.x=1", None, "diagnostics=1\ndiag=other").len(), 1);
        assert!(check_fixture("stateless.x=1", None, "diagnostics=1\ndiag=stateless.x: unknown key").is_empty());
        assert!(check_fixture("ip=dhcp", None, "ip.autoconf=dhcp\nip.client=(none)\nnfsroot=(none)\ndiagnostics=0")
            .is_empty());
    }

    #[test]
    fn fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmdline");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        names.sort();
        assert!(names.len() >= 8, "only {} fixtures in {}", names.len(), dir.display());
        let mut failures = Vec::new();
        for txt in &names {
            let cmdline = std::fs::read_to_string(txt).unwrap();
            let config = std::fs::read_to_string(txt.with_extension("conf")).ok();
            let expect = std::fs::read_to_string(txt.with_extension("expect"))
                .unwrap_or_else(|e| panic!("{}: {e}", txt.with_extension("expect").display()));
            for e in check_fixture(&cmdline, config.as_deref(), &expect) {
                failures.push(format!("{}: {e}", txt.file_name().unwrap().to_string_lossy()));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_byte_that_is_not_utf8_costs_only_its_word() {
        let c = Cmdline::parse(b"ro stateless.hostname=lab\xff3 stateless.dirs=etc quiet \xfe=1 -- single\xff");
        let keys: Vec<&str> = c.params.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["ro", "stateless.dirs", "quiet"]);
        assert_eq!(c.init_args, ["single\u{fffd}"]);
        let (o, d) = Options::resolve(&c, None);
        assert_eq!((o.hostname, o.dirs, o.quiet), (None, vec!["etc".to_string()], true));
        let d: Vec<String> = d.into_iter().map(|d| d.message).collect();
        assert_eq!(d, [r#"stateless.hostname: "lab\xff3" is not UTF-8, ignored"#]);

        let config = b"stateless.dirs=var\nstateless.hostname=a\xffb\nstateless.mode=copy\n";
        let (o, d) = Options::resolve(&Cmdline::default(), Some(config));
        assert_eq!((o.dirs, o.mode, o.hostname), (vec!["var".to_string()], OverlayMode::Copy, None));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].origin, Origin::Config { line: 2 });
        assert_eq!(d[0].message, r#""stateless.hostname=a\xffb": not UTF-8, line ignored"#, "escaped once");
        let long = [&b"stateless.hostname="[..], &[b'x'; 44], b"\xff\xfe"].concat();
        let (_, d) = Options::resolve(&Cmdline::default(), Some(&long));
        let cut = format!("\"stateless.hostname={}\\xff\"...: not UTF-8, line ignored", "x".repeat(44));
        assert_eq!(d[0].message, cut, "cut after 64 characters, a bad byte one of them");
    }

    /// Found by the `cmdline` fuzz target: the kernel's isspace() takes the byte 0xA0 for a
    /// blank, so a word holding U+00A0 (`c2 a0`) or U+0520 (`d4 a0`) is two words for the
    /// kernel and for init; it was one word here.
    #[test]
    fn byte_a0_ends_a_word_as_in_the_kernel() {
        let c = Cmdline::parse("stateless.hostname=lab\u{a0}quiet stateless.dirs=etc\u{520}var".as_bytes());
        assert_eq!(c.params, [p("quiet", None), p("var", None)]);
        let invalid: Vec<(&str, Option<&str>)> =
            c.invalid.iter().map(|p| (p.key.as_str(), p.value.as_deref())).collect();
        assert_eq!(invalid, [("stateless.hostname", Some("lab\\xc2")), ("stateless.dirs", Some("etc\\xd4"))]);
        // Inside quotes it stays, as the kernel keeps it.
        assert_eq!(words("x=\"a\u{a0}b\""), [("x".into(), Some("a\u{a0}b".into()))]);
    }
}
