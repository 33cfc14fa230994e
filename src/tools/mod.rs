//! The commands besides booting: `stateless plan` and `stateless apply`, the boot's plan shown
//! or carried out against a directory, with facts given on the command line instead of probed;
//! `dhcp`, `modules` and the initramfs builder.

mod apply;
mod check;
mod dhcp;
mod image;
mod initramfs;
mod layers;
mod modules;
mod plan;
mod relayer;
mod status;

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use log::LevelFilter;
use rustix::fs::{Mode, OFlags};

use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::fs::root::ImageRoot;
use crate::log::Sink;
use crate::model::facts::Facts;
use crate::model::ipv4::Ipv4Net;
use crate::model::lease::{Dhcp, Exchange, Lease};
use crate::model::options::Diagnostic;
use crate::model::options::Options;
use crate::model::text::escape_path;
use crate::net::dhcp::codec;

pub const USAGE: &str = "\
usage: stateless plan  --root DIR [OPTIONS]   print the boot plan for the image at DIR (no changes)
       stateless apply --root DIR [OPTIONS]   carry it out under DIR (as root, in `unshare -m`)
       stateless dhcp IFACE [--no-configure] [--timeout S] [--json]
                                              run the DHCP client once and print the lease
       stateless modules [--kernel-version V] [--modules-dir DIR] [--sysfs DIR] [--json]
                                              the modules coldplug would load, and why
       stateless status [--report FILE] [--json] [--svg FILE]
                                              what this client's boot did, from its report
       stateless relayer [--dry-run] [--prune] [--json]
                                              apply the layers again to this running client
       stateless check ROOT [--cmdline TEXT] [--host NAME[,ADDR/PREFIX]]... [--json]
                                              check a layer tree before serving it, with its
                                              tree or image file (--help: more)
       stateless initramfs --kernel-version V [--nic M,...] [--compress zstd|gzip|none] -o FILE
                                              the initramfs of initramfs mode (--help: all options)
       stateless image build DIR -o IMAGE [--format squashfs|erofs] [--compress zstd|xz|lz4]
       stateless image sign IMAGE --key KEY [--force]
       stateless image publish IMAGE DIR
                                              an image file of a root tree, and serving it (--help)
       stateless layers sign ROOT --key KEY [--force] [LAYER]...
                                              a signed manifest beside each layer (--help)
       stateless nbd-supervise ...            started by the boot for an NBD root; not for admins
       stateless --help | --version

As PID 1 (init=/boot/stateless) it boots the diskless client instead.

options:
  --root DIR            the image root (required; apply refuses /)
  --cmdline TEXT        kernel command line to plan for (default: empty)
  --cmdline-file FILE   read it from FILE (e.g. a saved /proc/cmdline)
  --ip ADDR/PREFIX      the client's address (default: none)
  --hostname NAME       the kernel's hostname, as its ip= set it (default: none)
  --initramfs           (plan only) plan initramfs mode: DHCP, the NFS root from the command line (or
                        the lease), the switch into it; --ip is then the lease's address
  --root-path TEXT      (plan only, with --initramfs) the root-path the DHCP server gives (option 17)
  --dhcp-server ADDR    (plan only, with --initramfs) the DHCP server's address (option 54)
  --next-server ADDR    (plan only, with --initramfs) the next server it names (siaddr)
  --dhcp-hostname NAME  (plan only) the host name it gives (option 12); on-root, the answer to the
                        INFORM sent when no name is known. Each is checked as the DHCP client
                        checks the option
  --json                print the plan as JSON (plan only)

plan exits 1 when initramfs mode's NFS root cannot be resolved (the plan says why).
";

/// Parsed arguments of `plan`/`apply`.
#[derive(Debug, Default)]
pub(crate) struct Args {
    root: Option<PathBuf>,
    /// The kernel command line to plan for: bytes, as /proc/cmdline holds it.
    cmdline: Vec<u8>,
    ip: Option<Ipv4Net>,
    hostname: Option<String>,
    /// What the DHCP server gives (`--root-path`, `--dhcp-server`, `--next-server`,
    /// `--dhcp-hostname`), each checked as the codec checks the option.
    lease: Lease,
    pub initramfs: bool,
    pub json: bool,
}

fn value(args: &mut impl Iterator<Item = OsString>, flag: &str) -> Result<String, String> {
    args.next().and_then(|v| v.into_string().ok()).ok_or_else(|| format!("{flag} needs a value"))
}

/// The command line given by `--cmdline TEXT` (bytes as given) or `--cmdline-file FILE`.
fn cmdline_arg(flag: &str, args: &mut impl Iterator<Item = OsString>) -> Result<Vec<u8>, String> {
    if flag == "--cmdline" {
        return args.next().map(OsString::into_vec).ok_or_else(|| "--cmdline needs a value".to_owned());
    }
    let file = value(args, flag)?;
    // A kernel takes a few KiB (COMMAND_LINE_SIZE); a saved /proc/cmdline is never more.
    match crate::fs::root::read_named(Path::new(&file), 64 << 10) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(format!("{}: no such file", quote(file))),
        Err(e) => Err(format!("{}: {e}", quote(file))),
    }
}

/// An option of the DHCP server's, given as `flag`: its bytes checked by the codec's `check`.
fn dhcp_text(
    args: &mut impl Iterator<Item = OsString>,
    flag: &str,
    check: fn(&[u8]) -> Result<String, String>,
) -> Result<String, String> {
    let bytes = args.next().map(OsString::into_vec).ok_or_else(|| format!("{flag} needs a value"))?;
    check(&bytes).map_err(|e| format!("{flag}: {e}"))
}

/// A DHCP server's address (option 54, siaddr): 0.0.0.0 is none, as in a reply.
fn server_arg(args: &mut impl Iterator<Item = OsString>, flag: &str) -> Result<Ipv4Addr, String> {
    let text = value(args, flag)?;
    match text.parse::<Ipv4Addr>() {
        Ok(a) if a.is_unspecified() => Err(format!("{flag}: 0.0.0.0 is no server: leave {flag} out")),
        Ok(a) => Ok(a),
        Err(_) => Err(format!("{flag}: {} is not an IPv4 address", quote(text))),
    }
}

/// The arguments; `None` for `--help`.
fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut parsed = Args::default();
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or_default() {
            "--help" | "-h" => return Ok(None),
            "--root" => parsed.root = Some(PathBuf::from(value(&mut args, "--root")?)),
            flag @ ("--cmdline" | "--cmdline-file") => parsed.cmdline = cmdline_arg(flag, &mut args)?,
            "--ip" => parsed.ip = Some(value(&mut args, "--ip")?.parse().map_err(|e| format!("--ip: {e}"))?),
            "--hostname" => parsed.hostname = Some(value(&mut args, "--hostname")?),
            "--root-path" => parsed.lease.root_path = Some(dhcp_text(&mut args, "--root-path", codec::root_path)?),
            "--dhcp-hostname" => {
                parsed.lease.hostname = Some(dhcp_text(&mut args, "--dhcp-hostname", codec::host_name)?)
            }
            "--dhcp-server" => parsed.lease.server = Some(server_arg(&mut args, "--dhcp-server")?),
            "--next-server" => parsed.lease.next_server = Some(server_arg(&mut args, "--next-server")?),
            "--json" => parsed.json = true,
            "--initramfs" => parsed.initramfs = true,
            _ => return Err(format!("unknown argument {}", quote(arg))),
        }
    }
    Ok(Some(parsed))
}

/// `value` as pretty JSON on standard output, as safe to print as escaped text
/// ([`crate::model::text::to_json`]).
pub(crate) fn emit_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), String> {
    emit(&(crate::model::text::to_json(value).map_err(|e| e.to_string())? + "\n"))
}

/// Untrusted bytes for a message: in double quotes, escaped by the one rule
/// ([`crate::model::text::escape`]).
pub(crate) fn quote(text: impl AsRef<std::ffi::OsStr>) -> String {
    format!("\"{}\"", crate::model::text::escape(text.as_ref().as_bytes()))
}

/// Writes to standard output; a reader that went away (`stateless plan | head`) ends the
/// output quietly instead of failing.
pub(crate) fn emit(text: &str) -> Result<(), String> {
    emit_with(|out| out.write_all(text.as_bytes()))
}

/// Output written by `write` as it goes (buffered), for output too large to hold; a reader that
/// went away (a closed pipe) ends it quietly.
pub(crate) fn emit_with(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("standard output: {e}")),
        _ => Ok(()),
    }
}

/// Writes a file the admin named (`-o`, `--svg`) all or nothing, as every file `stateless`
/// writes: beside it, flushed to disk, then renamed over it (mode 0644). A symlink at `path` is
/// replaced, never followed; on any failure, `write`'s included, the old file stays and nothing
/// is left beside it. Returns the new file's size.
pub(crate) fn write_output(
    path: &Path,
    write: impl FnOnce(&std::fs::File) -> Result<(), String>,
) -> Result<u64, String> {
    write_file(path, true, write)
}

/// [`write_output`] (`replace`), or a file that must be new: an entry at `path`, even a
/// symlink, is never replaced, and the write fails (`File exists`).
pub(crate) fn write_file(
    path: &Path,
    replace: bool,
    write: impl FnOnce(&std::fs::File) -> Result<(), String>,
) -> Result<u64, String> {
    let shown = escape_path(path);
    // `keep/` and `keep/.` name the dir, though `file_name` would give `keep`: never the file.
    let bytes = path.as_os_str().as_bytes();
    if [&b"/"[..], b"/.", b"/.."].iter().any(|end| bytes.ends_with(end)) || bytes == b"." || bytes == b".." {
        return Err(format!("{shown}: names a directory, not a file"));
    }
    let parent = parent_of(path);
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let dir = rustix::fs::open(parent, flags, Mode::empty()).map_err(|e| format!("{}: {e}", escape_path(parent)))?;
    write_file_in(dir.as_fd(), path, replace, write)
}

/// [`write_file`] into the dir `dir` already open, `path` naming the file there (its last
/// component is the name; all of it is what messages show): for a caller that does more in
/// that dir and must not find another dir at its path meanwhile.
pub(crate) fn write_file_in(
    dir: std::os::fd::BorrowedFd<'_>,
    path: &Path,
    replace: bool,
    write: impl FnOnce(&std::fs::File) -> Result<(), String>,
) -> Result<u64, String> {
    let shown = escape_path(path);
    let name = path.file_name().ok_or_else(|| format!("{shown}: not a file name"))?;
    // What `write` says when it fails (its message, not an io::Error's).
    let (mut failed, mut size) = (None, 0);
    let fill = |fd: &std::os::fd::OwnedFd| {
        let file = std::fs::File::from(fd.try_clone()?);
        write(&file).map_err(|e| std::io::Error::other(failed.insert(e).clone()))?;
        file.sync_all()?;
        size = file.metadata()?.len();
        Ok(())
    };
    let replaced = if replace {
        crate::fs::root::replace_with(dir, name, 0o644, fill)
    } else {
        crate::fs::root::create_with(dir, name, 0o644, fill)
    };
    replaced.map_err(|e| format!("{shown}: {}", failed.unwrap_or_else(|| e.to_string())))?;
    // The rename on disk too before saying it is done.
    rustix::fs::fsync(dir).map_err(|e| format!("{}: {e}", escape_path(parent_of(path))))?;
    Ok(size)
}

/// A key file the admin named (`--sign`, `--trust`), as [`crate::model::sign`] reads one: a
/// regular file of at most [`crate::model::sign::KEY_FILE_MAX`] bytes.
pub(crate) fn read_key_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = escape_path(path);
    crate::fs::root::read_named(path, crate::model::sign::KEY_FILE_MAX as u64)
        .map_err(|e| format!("{shown}: {e}"))?
        .ok_or_else(|| format!("{shown}: no such key file"))
}

/// The dir `path` names its file in: `.` for a bare name.
pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The target root of `args` (canonicalized), and the options from the given command line
/// over its /etc/stateless.conf.
pub(crate) fn target_and_options(args: &Args) -> Result<(ImageRoot, Options, Vec<Diagnostic>), String> {
    let given = args.root.as_ref().ok_or("--root DIR is required")?;
    let root = std::fs::canonicalize(given).map_err(|e| format!("{}: {e}", escape_path(given)))?;
    let target = ImageRoot::open(&root).map_err(|e| format!("{}: {e}", escape_path(&root)))?;
    let (options, diagnostics) = crate::boot::options(&args.cmdline, &target);
    Ok((target, options, diagnostics))
}

/// The network facts `plan`/`apply` are given instead of probing. What a DHCP exchange would
/// record (initramfs mode's DISCOVER: the lease of `--ip`; on-root mode's INFORM) is in `dhcp`:
/// the dry run makes it known when its plan runs the exchange, as the boot does.
pub(crate) fn given_facts(args: &Args) -> Facts {
    let exchange = if args.initramfs { Exchange::Discover } else { Exchange::Inform };
    let dhcp = (args.initramfs || args.lease != Lease::default())
        .then(|| Dhcp::given("", exchange, Lease { address: args.ip, ..args.lease.clone() }));
    Facts {
        address: args.ip,
        kernel_hostname: args.hostname.clone(),
        initramfs: args.initramfs,
        dhcp,
        ..Facts::default()
    }
}

/// Why the DHCP facts given do not fit `command`, if they do not: apply runs no DHCP; on-root
/// mode's root was mounted by the kernel (only the host name of an INFORM is asked for).
pub(crate) fn dhcp_facts_refused(args: &Args, command: &str) -> Option<String> {
    let lease = &args.lease;
    if command == "apply" && *lease != Lease::default() {
        return Some("--root-path, --dhcp-server, --next-server and --dhcp-hostname are for plan only".into());
    }
    let root = lease.root_path.is_some() || lease.server.is_some() || lease.next_server.is_some();
    (root && !args.initramfs).then(|| {
        "--root-path, --dhcp-server and --next-server need --initramfs: on-root, the kernel mounted the root \
         before stateless ran"
            .into()
    })
}

/// The command-line entry point; returns the exit code.
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let mut args = args.skip(1);
    let command = args.next().and_then(|a| a.into_string().ok()).unwrap_or_default();
    // Warnings and errors to standard error; what `dhcp` and `apply` do, too.
    let level = if matches!(command.as_str(), "dhcp" | "apply") { LevelFilter::Info } else { LevelFilter::Warn };
    crate::log::init(Sink::Stderr, level);
    let run = match command.as_str() {
        "plan" | "apply" => match parse_args(args) {
            Ok(None) => emit(USAGE).map(|()| 0),
            Ok(Some(parsed)) if command == "plan" => plan::command(&parsed),
            Ok(Some(parsed)) => apply::command(&parsed),
            Err(e) => Err(e),
        },
        "dhcp" => dhcp::command(args),
        "modules" => modules::command(args),
        "status" => status::command(args),
        "relayer" => relayer::command(args),
        "check" => check::command(args),
        "initramfs" => initramfs::command(args),
        "image" => image::command(args),
        "layers" => layers::command(args),
        "nbd-supervise" => return crate::boot::supervise::command(args),
        "--help" | "-h" | "help" => emit(USAGE).map(|()| 0),
        "--version" | "-V" => emit(&format!("stateless {}\n", env!("CARGO_PKG_VERSION"))).map(|()| 0),
        _ => Err(format!("not PID 1, so a command is needed\n{USAGE}")),
    };
    run.unwrap_or_else(|e| {
        eprintln!("stateless: {e}");
        2
    })
}
