//! `stateless plan` and `stateless apply`: the boot's plan, shown or carried out against a
//! directory, with facts given on the command line instead of probed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use log::LevelFilter;

use crate::boot::execute::Executor;
use crate::boot::plan;
use std::os::unix::ffi::OsStringExt;

use crate::fs::root::ImageRoot;
use crate::log::Sink;
use crate::model::facts::Facts;
use crate::model::ipv4::Ipv4Net;
use crate::model::options::Diagnostic;
use crate::model::options::Options;
use crate::model::outcome::{Mode, Status};
use crate::model::step::Phase;
use crate::sys::Real;

pub const USAGE: &str = "\
usage: stateless plan  --root DIR [OPTIONS]   print the boot plan for the image at DIR (no changes)
       stateless apply --root DIR [OPTIONS]   carry it out under DIR (as root, in `unshare -m`)
       stateless --help | --version

As PID 1 (init=/boot/stateless) it boots the diskless client instead.

options:
  --root DIR            the image root (required; apply refuses /)
  --cmdline TEXT        kernel command line to plan for (default: empty)
  --cmdline-file FILE   read it from FILE (e.g. a saved /proc/cmdline)
  --ip ADDR/PREFIX      the client's address (default: none)
  --hostname NAME       the hostname the kernel or DHCP would have given (default: none)
  --json                print the plan as JSON (plan only)
";

/// Parsed arguments of `plan`/`apply`.
#[derive(Debug, Default)]
struct Args {
    root: Option<PathBuf>,
    /// The kernel command line to plan for: bytes, as /proc/cmdline holds it.
    cmdline: Vec<u8>,
    ip: Option<Ipv4Net>,
    hostname: Option<String>,
    json: bool,
}

fn value(args: &mut impl Iterator<Item = OsString>, flag: &str) -> Result<String, String> {
    args.next().and_then(|v| v.into_string().ok()).ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or("") {
            "--root" => parsed.root = Some(PathBuf::from(value(&mut args, "--root")?)),
            "--cmdline" => {
                let text = args.next().ok_or("--cmdline needs a value")?;
                parsed.cmdline = text.into_vec();
            }
            "--cmdline-file" => {
                let file = value(&mut args, "--cmdline-file")?;
                parsed.cmdline = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
            }
            "--ip" => parsed.ip = Some(value(&mut args, "--ip")?.parse().map_err(|e| format!("--ip: {e}"))?),
            "--hostname" => parsed.hostname = Some(value(&mut args, "--hostname")?),
            "--json" => parsed.json = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

/// The target root of `args` (canonicalized), and the options from the given command line
/// over its /etc/stateless.conf.
fn target_and_options(args: &Args) -> Result<(ImageRoot, Options, Vec<Diagnostic>), String> {
    let given = args.root.as_ref().ok_or("--root DIR is required")?;
    let root = std::fs::canonicalize(given).map_err(|e| format!("{}: {e}", given.display()))?;
    let target = ImageRoot::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let (options, diagnostics) = crate::boot::options(&args.cmdline, &target);
    Ok((target, options, diagnostics))
}

/// The network facts `plan`/`apply` are given instead of probing.
fn given_facts(args: &Args) -> Facts {
    Facts { address: args.ip, kernel_hostname: args.hostname.clone(), ..Facts::default() }
}

/// Builds the plan for `args`.
fn build(args: &Args) -> Result<plan::Plan, String> {
    let (target, options, diagnostics) = target_and_options(args)?;
    Ok(plan::dry_run(&target, options, diagnostics, given_facts(args)))
}

fn plan_command(args: &Args) -> Result<i32, String> {
    let plan = build(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?);
    } else {
        print!("{plan}");
    }
    Ok(0)
}

/// Why mounting under `root` here could leak out of this process's mount namespace, if it could:
/// the namespace is PID 1's (when that can be read), or the mount holding `root` propagates
/// mounts to peers (`shared:` in mountinfo: the host's usual state under systemd).
fn namespace_problem(root: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let fix = "run it in a private mount namespace: `unshare -m --propagation private stateless apply ...`";
    if let (Ok(own), Ok(init)) = (std::fs::metadata("/proc/self/ns/mnt"), std::fs::metadata("/proc/1/ns/mnt")) {
        if own.ino() == init.ino() && own.dev() == init.dev() {
            return Some(format!("this is PID 1's mount namespace; {fix}"));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let holder = mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = fields.nth(4)?;
            let optional: Vec<&str> = fields.skip(1).take_while(|f| *f != "-").collect();
            root.starts_with(point).then_some((point.len(), optional.iter().any(|f| f.starts_with("shared:"))))
        })
        .max_by_key(|(len, _)| *len);
    match holder {
        Some((_, true)) => {
            Some(format!("{} is on a shared mount, so mounts would propagate out; {fix}", root.display()))
        }
        _ => None,
    }
}

fn apply_command(args: &Args) -> Result<i32, String> {
    let (target, options, diagnostics) = target_and_options(args)?;
    if target.path() == Path::new("/") {
        return Err("apply refuses --root /: only PID 1 changes the running system".into());
    }
    if !rustix::process::geteuid().is_root() {
        return Err("apply needs root (it mounts tmpfs and overlayfs under the root)".into());
    }
    if let Some(problem) = namespace_problem(target.path()) {
        return Err(problem);
    }
    for d in &diagnostics {
        log::warn!("{d}");
    }
    let sys = Real;
    // apply stands for on-root mode: the image is also the root the early mounts go into.
    let running = ImageRoot::open(target.path()).map_err(|e| format!("{}: {e}", target.path().display()))?;
    let mut executor = Executor::new(&sys, running, target, Mode::Apply);
    executor.options = options;
    executor.diagnostics = diagnostics;
    executor.facts = given_facts(args);
    executor.run(&Phase::ALL);
    for outcome in &executor.outcomes {
        let why = outcome.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        println!(
            "{:<9} {} ({} ms): {}{why}",
            format!("{:?}", outcome.status).to_lowercase(),
            outcome.step,
            outcome.ms,
            outcome.detail
        );
    }
    let failed = executor.outcomes.iter().any(|o| o.status == Status::Failed);
    Ok(i32::from(failed))
}

/// The command-line entry point; returns the exit code.
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let mut args = args.skip(1);
    let command = args.next().and_then(|a| a.into_string().ok()).unwrap_or_default();
    let run = match command.as_str() {
        "plan" | "apply" => {
            crate::log::init(Sink::Stderr, LevelFilter::Warn);
            parse_args(args).and_then(|parsed| {
                if command == "plan" {
                    plan_command(&parsed)
                } else {
                    log::set_max_level(LevelFilter::Info);
                    apply_command(&parsed)
                }
            })
        }
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        "--version" | "-V" => {
            println!("stateless {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        _ => Err(format!("not PID 1, so a command is needed\n{USAGE}")),
    };
    run.unwrap_or_else(|e| {
        eprintln!("stateless: {e}");
        2
    })
}
