//! `stateless status`: what the boot of this client did, from its report
//! (/run/stateless/report.json): host name and its source, address and lease, root and mode,
//! writable dirs, layers, modules, where the time went, and every warning. `--json` gives the
//! same as one object, `--svg FILE` draws the boot as a timeline, one bar per step.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::boot::report::{Report, FORMAT};
use crate::kmod::load::LoadOutcome;
use crate::model::outcome::Status;
use crate::model::paths::LIVE_REPORT;
use crate::model::step::{Phase, Step};
use crate::model::text::{escape, escape_path};

pub const USAGE: &str = "\
usage: stateless status [--report FILE] [--json] [--svg FILE]
What this client's boot did, from /run/stateless/report.json (or FILE, e.g. one copied from a
client): host name, address and lease, root and mode, writable dirs, layers, modules, the time
of each phase and step, and every warning. --json: one JSON object; --svg FILE: the boot as a
timeline, one bar per step, written to FILE (beside it, then renamed over it: a symlink at FILE
is replaced, never followed).
";

/// The most of a report file that is read (a boot's is tens of KiB).
pub(crate) const MAX_REPORT: u64 = 16 << 20;

struct Args {
    report: PathBuf,
    json: bool,
    svg: Option<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut parsed = Args { report: PathBuf::from(LIVE_REPORT), json: false, svg: None };
    while let Some(arg) = args.next() {
        let mut path = |flag: &str| args.next().map(PathBuf::from).ok_or_else(|| format!("{flag} needs a file"));
        match arg.to_str().unwrap_or_default() {
            "--help" | "-h" => return Ok(None),
            "--report" => parsed.report = path("--report")?,
            "--svg" => parsed.svg = Some(path("--svg")?),
            "--json" => parsed.json = true,
            _ => return Err(format!("unknown argument {}\n{USAGE}", super::quote(arg))),
        }
    }
    Ok(Some(parsed))
}

/// Reads a report (a regular file of at most [`MAX_REPORT`] bytes: a device or fifo is never
/// opened); a newer format than this build's is said.
pub(crate) fn read_report(path: &std::path::Path) -> Result<Report, String> {
    let shown = escape_path(path);
    let read = crate::fs::root::read_named(path, MAX_REPORT).and_then(|r| r.ok_or(std::io::ErrorKind::NotFound.into()));
    let bytes = read.map_err(|e| format!("{shown}: {e} (was this client booted by stateless?)"))?;
    parse_report(&bytes, &shown)
}

/// A report read back: untrusted, so what serde says of it (it quotes its text) is escaped too.
pub(crate) fn parse_report(bytes: &[u8], shown: &str) -> Result<Report, String> {
    let report: Report = serde_json::from_slice(bytes)
        .map_err(|e| format!("{shown}: not a stateless report: {}", escape(e.to_string().as_bytes())))?;
    if report.format > FORMAT {
        eprintln!(
            "stateless: {shown}: report format {} (this build reads {FORMAT}): some of it is not shown",
            report.format
        );
    }
    Ok(report)
}

pub fn command(args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let Some(args) = parse(args)? else {
        crate::tools::emit(USAGE)?;
        return Ok(0);
    };
    let report = read_report(&args.report)?;
    let status = Summary::of(&report);
    if let Some(svg) = &args.svg {
        let drawn = timeline(&report);
        super::write_output(svg, |mut file| {
            std::io::Write::write_all(&mut file, drawn.as_bytes()).map_err(|e| e.to_string())
        })?;
    }
    let out = if args.json {
        crate::model::text::to_json(&status).map_err(|e| e.to_string())? + "\n"
    } else {
        human(&status)
    };
    crate::tools::emit(&out)?;
    Ok(0)
}

/// What `status` shows, as `--json` prints it: every string from the report escaped
/// ([`escape`]), once, here (the report is read, not trusted).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub version: String,
    /// `initramfs` (stateless mounted the NFS root and switched into it) or `on-root`.
    pub mode: &'static str,
    pub hostname: Option<String>,
    /// `cmdline`, `kernel`, `ip`, `dhcp` or `fallback`.
    pub hostname_source: Option<String>,
    pub interface: Option<String>,
    pub address: Option<String>,
    /// Our DHCP client's lease, when it ran: server, lease time, exchange, messages sent.
    pub lease: Option<String>,
    /// The NFS root as stateless mounted it (initramfs mode).
    pub root: Option<String>,
    /// An image-file root: which image, what it is.
    pub image: Option<String>,
    /// Each writable dir and how it was made: `etc overlay`.
    pub dirs: Vec<String>,
    /// Each layer applied: name, files written, refused, errors.
    pub layers: Vec<String>,
    pub modules_loaded: Vec<String>,
    pub modules_failed: Vec<String>,
    pub init: Option<String>,
    pub elapsed_ms: u64,
    pub own_ms: u64,
    /// Milliseconds per phase (its steps summed), in boot order.
    pub phases: Vec<(String, u64)>,
    /// Every step: when it began, how long it took, its status.
    pub steps: Vec<StepLine>,
    /// Failed and degraded steps, rejected host names and DHCP options, command-line and
    /// configuration problems.
    pub warnings: Vec<String>,
    /// What the boot noted on the way (an interface without address, devices left to udev).
    pub notes: Vec<String>,
    pub degraded: bool,
}

#[derive(Debug, Serialize)]
pub struct StepLine {
    pub phase: Phase,
    pub step: String,
    pub status: Status,
    pub at_ms: u64,
    pub ms: u64,
}

impl Summary {
    pub fn of(report: &Report) -> Summary {
        // The report's strings were escaped when written; a hostile one's raw bytes are escaped here.
        let e = crate::model::text::shown;
        let initramfs = report.steps.iter().any(|o| matches!(o.step, Step::SwitchRoot { .. }));
        let root = report
            .steps
            .iter()
            .find(|o| matches!(o.step, Step::NfsRoot { .. } | Step::ImageRoot { .. } | Step::NbdRoot { .. }));
        let root = root.map(|o| e(&o.detail));
        let lease = report.dhcp.as_ref().map(|d| {
            let server = d.lease.server.map_or("an unnamed server".to_string(), |s| s.to_string());
            let time = d.lease.lease_secs.map_or(String::new(), |s| format!(", {s} s lease"));
            let exchange = spelled(&d.exchange);
            format!("{exchange} from {server}{time}: {} sent, {} ignored, {} ms", d.sent, d.ignored, d.ms)
        });
        let loaded = |wanted: bool| {
            let modules = report.modules.iter().filter(|m| matches!(m.outcome, LoadOutcome::Loaded) == wanted);
            modules.map(|m| if wanted { format!("{} ({} ms)", e(&m.module), m.ms) } else { e(&m.module) }).collect()
        };
        let mut phases: Vec<(String, u64)> = Vec::new();
        for o in &report.steps {
            match phases.last_mut() {
                Some((phase, ms)) if *phase == o.phase.as_str() => *ms = ms.saturating_add(o.ms),
                _ => phases.push((o.phase.as_str().to_string(), o.ms)),
            }
        }
        let mut warnings = Vec::new();
        for o in report.steps.iter().filter(|o| matches!(o.status, Status::Failed | Status::Degraded)) {
            let why = o.error.as_ref().map(|failure| format!(": {}", e(&failure.to_string()))).unwrap_or_default();
            warnings.push(format!("{} {}{why}", o.step, spelled(&o.status)));
        }
        if let Some(root) = &report.nfs_root {
            let dropped = root.dropped.iter();
            warnings.extend(dropped.map(|d| format!("nfs root: NFSv{} dropped: {}", e(&d.version), e(&d.reason))));
            let failed = root.failed.iter();
            warnings.extend(failed.map(|f| format!("nfs root: server {} failed: {}", f.server, e(&f.reason))));
        }
        if let Some(root) = &report.nbd_root {
            let failed = root.failed.iter();
            warnings.extend(failed.map(|f| format!("nbd root: server {} failed: {}", f.server, e(&f.reason))));
            if root.supervisor.is_none() {
                warnings.push("nbd root: no supervisor: the root does not survive its server".into());
            }
        }
        warnings.extend(report.hostname_rejected.iter().map(|r| format!("host name: {}", e(r))));
        if let Some(d) = &report.dhcp {
            warnings.extend(d.lease.rejected.iter().map(|r| format!("dhcp: {}", e(r))));
        }
        warnings.extend(report.diagnostics.iter().map(|d| format!("option: {}", e(&d.message))));
        Summary {
            version: e(&report.version),
            mode: if initramfs { "initramfs" } else { "on-root" },
            hostname: report.hostname.as_ref().map(|h| e(&h.fqdn())),
            hostname_source: report.hostname.as_ref().map(|h| spelled(&h.source)),
            interface: report.interface.as_deref().map(e),
            address: report.address.map(|a| a.to_string()),
            lease,
            root,
            image: report.image.as_ref().map(|i| {
                let target = i.target.as_deref().map(|t| format!(" -> {}", e(t))).unwrap_or_default();
                let sum = i.sha256.as_deref().map(|s| format!(", sha256 {}", e(s))).unwrap_or_default();
                let held = if i.in_memory { ", in memory" } else { "" };
                let verity = i.verity.as_ref().map_or_else(String::new, |v| {
                    format!(", dm-verity {} on {}, root hash {}", e(&v.trusted), e(&v.device), e(&v.root_hash))
                });
                let (source, format) = (e(&i.source), i.format);
                let mtime = i.mtime.map(|m| format!(", mtime {m}")).unwrap_or_default();
                format!("{source}{target} ({format}, {} bytes{mtime}{sum}{held}{verity})", i.size)
            }),
            dirs: report.dirs.iter().map(|d| format!("{} {}", e(&d.dir), spelled(&d.mode))).collect(),
            layers: report
                .layers
                .iter()
                .map(|l| {
                    let identity = l.identity.as_ref().map_or_else(String::new, |i| format!(", identity {}", e(i)));
                    let rejected: String =
                        l.rejected.iter().map(|r| format!("\n    not as signed: {}", e(r))).collect();
                    format!(
                        "{}: {} written, {} refused, {} errors{identity}{rejected}",
                        e(&l.layer),
                        l.files,
                        l.refused,
                        l.errors
                    )
                })
                .collect(),
            modules_loaded: loaded(true),
            modules_failed: loaded(false),
            init: report.init.as_deref().map(e),
            elapsed_ms: report.elapsed_ms,
            own_ms: report.own_ms,
            phases,
            steps: report
                .steps
                .iter()
                .map(|o| StepLine {
                    phase: o.phase,
                    step: o.step.to_string(),
                    status: o.status,
                    at_ms: o.at_ms,
                    ms: o.ms,
                })
                .collect(),
            warnings,
            notes: report.notes.iter().map(|n| e(n)).collect(),
            degraded: report.degraded,
        }
    }
}

/// A value as the report spells it (`degraded`, `overlay`, `inform`, `cmdline`): its serde name.
fn spelled<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The human form: one `key: value` line per fact, lists indented below their key (every
/// string escaped by [`Summary::of`]: a layer or DHCP value cannot forge a line).
fn human(s: &Summary) -> String {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_string());
    let mut out = String::new();
    let source = s.hostname_source.as_deref().map(|src| format!(" (from {src})")).unwrap_or_default();
    let _ = writeln!(out, "host name: {}{source}", or_none(&s.hostname));
    let on = s.interface.as_deref().map(|i| format!(" on {i}")).unwrap_or_default();
    let _ = writeln!(out, "address: {}{on}", or_none(&s.address));
    if let Some(lease) = &s.lease {
        let _ = writeln!(out, "lease: {}", lease);
    }
    let root = s.root.as_deref().unwrap_or("mounted by the kernel");
    let _ = writeln!(out, "root: {} mode, {root}", s.mode);
    if let Some(image) = &s.image {
        let _ = writeln!(out, "image: {image}");
    }
    let _ = writeln!(out, "writable dirs: {}", if s.dirs.is_empty() { "none".to_string() } else { s.dirs.join(", ") });
    let _ = writeln!(out, "layers: {}", s.layers.len());
    s.layers.iter().for_each(|l| {
        let _ = writeln!(out, "  {}", l);
    });
    let _ = writeln!(out, "modules: {} loaded, {} failed", s.modules_loaded.len(), s.modules_failed.len());
    for (what, list) in [("loaded", &s.modules_loaded), ("failed", &s.modules_failed)] {
        if !list.is_empty() {
            let _ = writeln!(out, "  {what}: {}", list.join(", "));
        }
    }
    let _ = writeln!(out, "init: {}", or_none(&s.init));
    let _ = writeln!(out, "time: {} ms from start to the report, {} ms of it stateless's own", s.elapsed_ms, s.own_ms);
    for (phase, ms) in &s.phases {
        let _ = writeln!(out, "  {phase:<14} {ms:>6} ms");
    }
    let _ = writeln!(out, "steps:");
    for step in &s.steps {
        let status = spelled(&step.status);
        let _ = writeln!(out, "  {:>6} ms {:>6} ms  {status:<8} {}", step.at_ms, step.ms, step.step);
    }
    let _ =
        writeln!(out, "warnings: {}{}", s.warnings.len(), if s.degraded { " (the boot went on degraded)" } else { "" });
    s.warnings.iter().for_each(|w| {
        let _ = writeln!(out, "  {}", w);
    });
    if !s.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        s.notes.iter().for_each(|n| {
            let _ = writeln!(out, "  {}", n);
        });
    }
    if s.version != env!("CARGO_PKG_VERSION") {
        let _ =
            writeln!(out, "(the report was written by stateless {}, this is {})", s.version, env!("CARGO_PKG_VERSION"));
    }
    out
}

/// The boot as an SVG timeline, in the spirit of `systemd-analyze plot`: one row per step, its
/// bar from when it began for as long as it took, coloured by its status, at most 21 ticks.
pub fn timeline(report: &Report) -> String {
    const ROW: u64 = 18;
    const LEFT: u64 = 10;
    const TOP: u64 = 30;
    // The report is read, not trusted: its numbers saturate, and the ticks are at most 20.
    let end =
        report.steps.iter().map(|o| o.at_ms.saturating_add(o.ms)).max().unwrap_or(0).max(report.elapsed_ms).max(1);
    // At most 1,600 px for the bars: 1 px per ms up to there.
    let scale = 1600.0_f64.min(end as f64) / end as f64;
    let x = |ms: u64| LEFT as f64 + ms as f64 * scale;
    let label = |o: &crate::model::outcome::Outcome| format!("{} {}: {} ms", o.phase.as_str(), o.step, o.ms);
    // Room for the longest label after its bar (about 7 px a character at 12 px).
    let right = report
        .steps
        .iter()
        .map(|o| x(o.at_ms.saturating_add(o.ms)) + 7.0 * label(o).chars().count() as f64)
        .fold(0.0, f64::max);
    let width = (x(end).max(right) + 20.0) as u64;
    let height = TOP + ROW * (report.steps.len() as u64 + 1) + 20;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"16\" font-size=\"14\">{} — {} ms to the report, {} ms own (stateless {})</text>\n",
        xml(&report.hostname.as_ref().map_or("(no host name)".into(), |h| escape(h.short.as_bytes()))),
        report.elapsed_ms,
        report.own_ms,
        xml(&escape(report.version.as_bytes())),
    );
    let step = [100, 200, 500, 1_000, 2_000, 5_000, 10_000, 60_000].into_iter().find(|s| end / s <= 20);
    let step = step.unwrap_or_else(|| (end / 20).max(1));
    for tick in (0..=20).map(|n| step.saturating_mul(n)).take_while(|t| *t <= end) {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2}\" fill=\"#888\" font-size=\"10\">{tick} ms</text>",
            x(tick),
            height - 20,
            height - 8,
        );
    }
    for (row, o) in report.steps.iter().enumerate() {
        let y = TOP + ROW * row as u64;
        let colour = match o.status {
            Status::Ok => "#4c9a2a",
            Status::Skipped => "#aaaaaa",
            Status::Degraded => "#e69500",
            Status::Failed => "#d0312d",
        };
        let (x0, w) = (x(o.at_ms), (o.ms as f64 * scale).max(1.0));
        let label = label(o);
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\"><title>{}</title></rect><text x=\"{:.1}\" y=\"{}\">{}</text>",
            y + 2,
            ROW - 4,
            xml(&format!("{label} ({})", spelled(&o.status))),
            x0 + w + 4.0,
            y + ROW - 5,
            xml(&label),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Text for SVG, escaped ([`escape`]) already: the XML specials escaped.
fn xml(text: &str) -> String {
    // U+FFFE and U+FFFF are not XML characters either.
    text.replace(['\u{fffe}', '\u{ffff}'], "?")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::model::nfsroot::{Dropped, FailedServer, Mounted};
    use std::path::Path;

    fn fixture(name: &str) -> Report {
        let path = format!("{}/tests/data/report/{name}.json", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_usage_texts_name_the_report_the_tools_read() {
        // Their prose spells the path (the man page is made from it): the one the code reads.
        for usage in [USAGE, crate::tools::modules::USAGE, crate::tools::relayer::USAGE] {
            assert!(usage.contains(LIVE_REPORT), "{usage}");
        }
    }

    #[test]
    fn an_initramfs_boot_in_a_few_lines() {
        let report = fixture("initramfs");
        let s = Summary::of(&report);
        assert_eq!(s.mode, "initramfs");
        assert_eq!((s.hostname.as_deref(), s.hostname_source.as_deref()), (Some("lab3-12.lab.example"), Some("dhcp")));
        assert!(s.lease.as_deref().unwrap().starts_with("discover from 10.0.2.2"), "{:?}", s.lease);
        assert!(s.root.as_deref().unwrap().contains("vers=3"), "{:?}", s.root);
        assert_eq!(s.dirs, ["etc overlay", "var overlay"]);
        assert_eq!(s.layers.len(), 6);
        assert!(s.modules_loaded.iter().any(|m| m.starts_with("virtio_net (")));
        assert_eq!(s.phases.first().map(|p| p.0.as_str()), Some("early-mounts"));
        assert_eq!(s.steps.len(), report.steps.len());
        assert!(s.steps.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "steps in time order");
        let text = human(&s);
        for line in ["host name: lab3-12.lab.example (from dhcp)", "root: initramfs mode, mounted as nfs", "layers: 6"]
        {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        // Written before the root check: no nfs_root. A version the check dropped is a warning.
        assert_eq!(report.nfs_root, None);
        let dropped = Dropped { version: "4.2".into(), reason: "read /root/sbin/init: input/output error".into() };
        let (version, options, init) = ("4.1".into(), "vers=4.1".into(), "/sbin/init".into());
        let report = Report {
            nfs_root: Some(Mounted {
                version,
                options,
                init,
                init_bytes: 9,
                dropped: vec![dropped],
                server: Some(std::net::Ipv4Addr::new(10, 0, 2, 2)),
                failed: vec![FailedServer {
                    server: std::net::Ipv4Addr::new(10, 0, 2, 3),
                    reason: "mount: connection refused\x1b[2J".into(),
                }],
            }),
            ..report
        };
        let text = human(&Summary::of(&report));
        assert!(text.contains("nfs root: NFSv4.2 dropped: read /root/sbin/init: input/output error"), "{text}");
        assert!(text.contains("nfs root: server 10.0.2.3 failed: mount: connection refused\\x1b[2J"), "{text}");
        // An NBD root's failed servers, and a missing supervisor.
        let failed = vec![crate::model::nbdroot::FailedNbd {
            server: "10.0.2.7:10809".parse().unwrap(),
            reason: "connection refused\x1b[2J".into(),
        }];
        let nbd = crate::model::nbdroot::Attached {
            server: "10.0.2.2:10809".parse().unwrap(),
            export: "root".into(),
            index: 0,
            size: 4096,
            failed,
            supervisor: None,
        };
        let text = human(&Summary::of(&Report { nbd_root: Some(nbd), ..report.clone() }));
        assert!(text.contains("nbd root: server 10.0.2.7:10809 failed: connection refused\\x1b[2J"), "{text}");
        assert!(text.contains("nbd root: no supervisor: the root does not survive its server"), "{text}");
        // An image root: which image, its hostile link text escaped.
        use crate::model::image::{BootedImage, Verified};
        let image = BootedImage {
            source: "10.0.2.2:/srv/images/current".into(),
            target: Some("x\x1b[2J.sqfs".into()),
            format: crate::model::image::ImageFormat::Squashfs,
            size: 4096,
            mtime: Some(1_765_000_000),
            sha256: None,
            in_memory: false,
            verity: None,
        };
        let text = human(&Summary::of(&Report { image: Some(image.clone()), ..report.clone() }));
        let line = "image: 10.0.2.2:/srv/images/current -> x\\x1b[2J.sqfs (squashfs, 4096 bytes, mtime 1765000000)";
        assert!(text.contains(&format!("{line}\n")), "{text}");
        let in_memory = BootedImage { in_memory: true, sha256: Some("ab".repeat(32)), ..image };
        let text = human(&Summary::of(&Report { image: Some(in_memory.clone()), ..report.clone() }));
        assert!(text.contains(&format!("1765000000, sha256 {}, in memory)", "ab".repeat(32))), "{text}");
        // Verified: by what, on which device; a hostile comment escaped.
        let trusted = "key SHA256:x \x1b]0;pwn\x07".into();
        let verity = Some(Verified { root_hash: "cd".repeat(32), trusted, device: "/dev/dm-0".into() });
        let text = human(&Summary::of(&Report { image: Some(BootedImage { verity, ..in_memory }), ..report }));
        let want = format!(
            ", in memory, dm-verity key SHA256:x \\x1b]0;pwn\\x07 on /dev/dm-0, root hash {})",
            "cd".repeat(32)
        );
        assert!(text.contains(&want), "{text}");
    }

    /// A report of a binary from before several servers (its nfs_root names no server) reads.
    #[test]
    fn a_report_from_before_several_servers_reads() {
        let mut v: serde_json::Value = serde_json::to_value(fixture("initramfs")).unwrap();
        v["nfs_root"] = serde_json::json!({"version": "3", "options": "vers=3", "init": "/sbin/init", "init_bytes": 9, "dropped": []});
        let report = parse_report(&serde_json::to_vec(&v).unwrap(), "report").unwrap();
        assert_eq!(report.nfs_root.unwrap().server, None);
    }

    #[test]
    fn an_on_root_boot_and_its_warnings() {
        let mut report = fixture("onroot");
        let s = Summary::of(&report);
        assert_eq!((s.mode, s.root.as_deref(), s.lease.as_deref()), ("on-root", None, None));
        assert!(human(&s).contains("root: on-root mode, mounted by the kernel"));
        // A degraded step and a hostile value become warnings, escaped on their line.
        let step = report.steps.iter_mut().find(|o| matches!(o.step, Step::Layer { .. })).unwrap();
        step.status = Status::Degraded;
        report.hostname_rejected.push("dhcp name \"a\nb\": control byte".into());
        let text = human(&Summary::of(&report));
        assert!(text.contains("warnings: 2"), "{text}");
        assert!(text.contains("a\\x0ab"), "{text}");
        assert!(!text.contains("a\nb"), "{text}");
    }

    #[test]
    fn the_timeline_has_a_bar_per_step_and_escapes_its_text() {
        let mut report = fixture("initramfs");
        let svg = timeline(&report);
        assert_eq!(svg.matches("<rect x=").count(), report.steps.len());
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        report.version = "<script>&\"".into();
        let svg = timeline(&report);
        assert!(svg.contains("&lt;script&gt;&amp;&quot;") && !svg.contains("<script>"), "{svg}");
    }

    #[test]
    fn a_report_with_absurd_numbers_is_drawn_all_the_same() {
        let mut report = fixture("onroot");
        report.elapsed_ms = u64::MAX;
        for o in &mut report.steps {
            (o.at_ms, o.ms) = (u64::MAX - 1, u64::MAX);
        }
        let svg = timeline(&report);
        assert!(svg.matches("<line ").count() <= 21, "bounded ticks");
        assert!(human(&Summary::of(&report)).contains("early-mounts"));
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| parse(a.iter().map(OsString::from));
        let parsed = args(&["--json", "--svg", "/tmp/t.svg", "--report", "r.json"]).unwrap().unwrap();
        assert!(parsed.json && parsed.svg.is_some() && parsed.report == Path::new("r.json"));
        assert!(args(&["--svg"]).is_err() && args(&["--frob"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
    }
}
