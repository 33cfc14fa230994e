//! `stateless modules`: which modules coldplug chooses for this machine (or for a saved sysfs
//! tree), which device and alias each comes from, and the load order, resolved as kmod does
//! from a kernel's module dir. Changes nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fs::root::ImageRoot;
use crate::kmod::coldplug::{self, Match, Planned, State};
use crate::kmod::load::{LoadOutcome, Loaded};
use crate::kmod::resolve::Rules;
use crate::model::paths::LIVE_REPORT;
use crate::model::text::{escape, escape_path};

pub const USAGE: &str = "\
usage: stateless modules [--kernel-version V] [--modules-dir DIR] [--sysfs DIR] [--json]

Shows which kernel modules the boot's coldplug chooses for the devices of every bus under
DIR/bus (default /sys): for each device with a modalias, the modules it resolves to and the alias that matched;
then every module in load order (dependencies and softdeps first), each marked load, built-in or
loaded (already in the running kernel); on a client, what its boot loaded and how each went
(from /run/stateless/report.json). Resolved as kmod does, from /lib/modules/V (V defaults to
the running kernel's release) or --modules-dir, with this machine's modprobe.d (blacklist,
options, softdep, alias). Changes nothing.
";

#[derive(Debug, Default)]
struct Args {
    release: Option<String>,
    modules_dir: Option<PathBuf>,
    sysfs: Option<PathBuf>,
    json: bool,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.to_str().unwrap_or_default() {
            "--help" | "-h" => return Ok(None),
            "--kernel-version" => {
                let v = value("--kernel-version")?.into_string().map_err(|_| "--kernel-version: not UTF-8")?;
                if !crate::kmod::is_release(&v) {
                    return Err(format!("--kernel-version {}: not a release name", super::quote(v)));
                }
                parsed.release = Some(v);
            }
            "--modules-dir" => parsed.modules_dir = Some(PathBuf::from(value("--modules-dir")?)),
            "--sysfs" => parsed.sysfs = Some(PathBuf::from(value("--sysfs")?)),
            "--json" => parsed.json = true,
            _ => return Err(format!("unknown argument {}", super::quote(arg))),
        }
    }
    Ok(Some(parsed))
}

#[derive(Serialize)]
struct Output {
    modules_dir: String,
    devices: Vec<Match>,
    load: Vec<Planned>,
    problems: Vec<String>,
    /// What the last boot did, from its report (on a client running the kernel shown).
    booted: Option<Vec<Loaded>>,
}

pub fn command(args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let Some(args) = parse(args)? else {
        crate::tools::emit(USAGE)?;
        return Ok(0);
    };
    let running = rustix::system::uname().release().to_string_lossy().into_owned();
    let release = args.release.clone().unwrap_or_else(|| running.clone());
    let dir = match &args.modules_dir {
        Some(dir) => std::path::absolute(dir).map_err(|e| format!("{}: {e}", escape_path(dir)))?,
        None => Path::new("/lib/modules").join(&release),
    };
    let root = ImageRoot::open(Path::new("/")).map_err(|e| format!("/: {e}"))?;
    let index = crate::kmod::read_index_in(&root, &dir, true)?.parse();
    let sysfs = args.sysfs.clone().unwrap_or_else(|| PathBuf::from("/sys"));
    let devices = coldplug::devices(&sysfs).map_err(|e| format!("{}/bus: {e}", escape_path(&sysfs)))?;
    // What runs now is only known for the running kernel's own modules.
    let loaded = if release == running && args.sysfs.is_none() {
        coldplug::loaded(&std::fs::read_to_string("/proc/modules").unwrap_or_default())
    } else {
        Default::default()
    };
    // This machine's modprobe.d, as modprobe here reads it.
    let config = crate::kmod::root_config(&root, None, &Default::default());
    let (devices, load) = coldplug::plan(Rules { index: &index, config: &config }, devices, &loaded);
    let problems = index.problems.into_iter().chain(config.problems).collect();
    // On a client, for the kernel it runs: what its boot loaded, and how each went.
    let booted = (release == running && args.sysfs.is_none())
        .then(|| crate::fs::root::read_named(Path::new(LIVE_REPORT), super::status::MAX_REPORT).ok())
        .flatten()
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<crate::boot::report::Report>(&bytes).ok())
        .map(|report| report.modules);
    let out = Output { modules_dir: escape_path(&dir), devices, load, problems, booted };
    let text =
        if args.json { crate::model::text::to_json(&out).map_err(|e| e.to_string())? + "\n" } else { human(&out) };
    crate::tools::emit(&text)?;
    Ok(0)
}

/// The human form; the names in it come from the module tree, sysfs and the report, all
/// escaped.
fn human(out: &Output) -> String {
    let e = |text: &str| escape(text.as_bytes());
    let mut text = format!("modules: {}\n", out.modules_dir);
    // The problems are escaped where they are found.
    for problem in &out.problems {
        text.push_str(&format!("warning: {problem}\n"));
    }
    text.push_str(&format!("devices with a modalias: {}\n", out.devices.len()));
    for m in out.devices.iter().filter(|m| !m.modules.is_empty()) {
        let modules: Vec<String> = m
            .modules
            .iter()
            .map(|f| format!("{}{}", e(&f.module), if f.builtin { " (built in)" } else { "" }))
            .collect();
        text.push_str(&format!("  {}\n    {} -> {}\n", e(&m.device.path), e(&m.device.modalias), modules.join(", ")));
    }
    text.push_str("load order:\n");
    for (n, p) in out.load.iter().enumerate() {
        let state = match p.state {
            State::Load => e(p.path.as_deref().unwrap_or_default()),
            State::BuiltIn => "built in".to_string(),
            State::Loaded => "already loaded".to_string(),
            State::Missing => "not in modules.dep: cannot be loaded".to_string(),
        };
        text.push_str(&format!("  {:>3}. {:<24} {state}\n", n + 1, e(&p.module)));
    }
    if let Some(booted) = &out.booted {
        text.push_str(&format!("at boot ({}):\n", LIVE_REPORT));
        for m in booted {
            let result = match &m.outcome {
                LoadOutcome::Loaded => format!("loaded in {} ms", m.ms),
                LoadOutcome::AlreadyLoaded => "already loaded".into(),
                LoadOutcome::BuiltIn => "built in".into(),
                LoadOutcome::Failed { message, .. } => format!("failed: {}", e(message)),
                LoadOutcome::Skipped { because } => format!("not loaded: {}", e(because)),
                LoadOutcome::NoDevice { message } => format!("no device for it: {}", e(message)),
            };
            text.push_str(&format!("       {:<24} {result}\n", e(&m.module)));
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kernel_version_is_a_release_name_as_for_the_builder() {
        let parse = |v: &str| parse(["--kernel-version", v].map(OsString::from).into_iter());
        assert_eq!(parse("6.1.0").unwrap().unwrap().release.as_deref(), Some("6.1.0"));
        for bad in [".", "..", "a/b", "6.1\u{1b}[2J", "6.1\u{202e}"] {
            assert!(parse(bad).unwrap_err().ends_with(": not a release name"), "{bad:?}");
        }
    }

    #[test]
    fn index_problems_are_shown_escaped_once() {
        let index = crate::kmod::index::Index::parse(b"kernel/a\x1b.ko:\n", b"", b"", b"", b"");
        let out = Output {
            modules_dir: "/m".into(),
            devices: Vec::new(),
            load: Vec::new(),
            problems: index.problems,
            booted: None,
        };
        let text = human(&out);
        let said = "warning: modules.dep line 1: \"kernel/a\\x1b.ko\" is not a module file inside the module dir\n";
        assert!(text.contains(said), "{text}");
    }

    #[test]
    fn the_boot_s_results_are_shown_escaped() {
        let loaded = |module: &str, outcome| Loaded { module: module.into(), outcome, ms: 12, file: None };
        let out = Output {
            modules_dir: "/lib/modules/6.1.0".into(),
            devices: Vec::new(),
            load: Vec::new(),
            problems: Vec::new(),
            booted: Some(vec![
                loaded("e1000", LoadOutcome::Loaded),
                loaded("snd", LoadOutcome::Failed { errno: Some(2), message: "open x\n: gone".into() }),
                loaded("virtio_net", LoadOutcome::Skipped { because: "dependency virtio failed".into() }),
            ]),
        };
        let text = human(&out);
        assert!(text.contains("e1000                    loaded in 12 ms"), "{text}");
        assert!(text.contains("failed: open x\\x0a: gone"), "no line can be forged: {text}");
        assert!(text.contains("not loaded: dependency virtio failed"));
    }
}
