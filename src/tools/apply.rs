//! `stateless apply`: the boot carried out against a directory, as on-root mode would, without
//! the parts that belong to PID 1 alone (hostname, modules, exec). Only in a private mount
//! namespace: its mounts must never reach the host.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{emit, given_facts, target_and_options, Args};
use crate::boot::execute::{Context, Executor};
use crate::fs::root::ImageRoot;
use crate::model::outcome::{Mode, Status};
use crate::model::step::Phase;
use crate::model::text::escape_path;
use crate::sys::Real;

pub(super) fn command(args: &Args) -> Result<i32, String> {
    if args.initramfs {
        return Err("--initramfs is for plan only: apply carries out on-root mode".into());
    }
    if let Some(why) = super::dhcp_facts_refused(args, "apply") {
        return Err(why);
    }
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
    let running = ImageRoot::open(target.path()).map_err(|e| format!("{}: {e}", escape_path(target.path())))?;
    // Every line for the log server, as at boot (let go when there is none).
    crate::log::remote::keep_backlog();
    let facts = given_facts(args);
    let mut executor =
        Executor::new(Context { options, diagnostics, facts, ..Context::new(&sys, running, target, Mode::Apply) });
    executor.run(&Phase::ALL);
    for outcome in &executor.record().outcomes {
        let why = outcome.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default();
        let status = format!("{:?}", outcome.status).to_lowercase();
        emit(&format!("{status:<9} {} ({} ms): {}{why}\n", outcome.step, outcome.ms, outcome.detail))?;
    }
    let failed = executor.record().outcomes.iter().any(|o| o.status == Status::Failed);
    Ok(i32::from(failed))
}

/// The inode of the initial mount namespace on kernels that give it a fixed one (6.18 on:
/// `MNT_NS_INIT_INO`); dynamic ones start at 0xF0000000, so no other namespace has it.
const MNT_NS_INIT_INO: u64 = 0xEFFF_FFF8;

/// Why mounting under `root` here could leak out of this process's mount namespace. It fails
/// closed: unless it can tell this is not PID 1's namespace (by comparing with
/// /proc/1/ns/mnt, or by the initial namespace's fixed inode on Linux 6.18+), it refuses; and
/// it refuses when the mount holding `root`, or any mount below it, propagates to peers
/// (`shared:` in mountinfo, the host's usual state under systemd).
fn namespace_problem(root: &Path) -> Option<String> {
    let fix = "run it in a private mount namespace: `unshare -m --propagation private stateless apply ...`";
    let own = match std::fs::metadata("/proc/self/ns/mnt") {
        Ok(own) => own,
        Err(e) => return Some(format!("cannot read /proc/self/ns/mnt ({e}), so cannot tell where mounts go; {fix}")),
    };
    match std::fs::metadata("/proc/1/ns/mnt") {
        Ok(init) if (own.ino(), own.dev()) == (init.ino(), init.dev()) => {
            return Some(format!("this is PID 1's mount namespace; {fix}"))
        }
        Ok(_) => {}
        Err(_) if own.ino() == MNT_NS_INIT_INO => return Some(format!("this is the initial mount namespace; {fix}")),
        Err(_) if !static_init_ino(&crate::sys::Sys::uname(&Real).release) => {
            return Some(format!(
                "/proc/1/ns/mnt cannot be read and this kernel (before 6.18) gives no other way to tell \
                 whether this is PID 1's mount namespace; {fix}, as a user that can read /proc/1/ns/mnt"
            ))
        }
        Err(_) => {}
    }
    let mountinfo = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(e) => return Some(format!("cannot read /proc/self/mountinfo ({e}); {fix}")),
    };
    let shared = shared_mounts(&mountinfo, root);
    shared.first().map(|point| {
        format!(
            "{} is a shared mount at or around {}, so mounts would propagate out; {fix}",
            escape_path(point),
            escape_path(root)
        )
    })
}

/// Whether `release` (`6.18.4-...`) is Linux 6.18 or later.
fn static_init_ino(release: &str) -> bool {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (6, 18)
}

/// The shared mounts that matter for mounting under `root`: the one holding it and every one
/// below it. Mount points are unescaped (`\040` is a space).
fn shared_mounts(mountinfo: &str, root: &Path) -> Vec<std::path::PathBuf> {
    let mounts: Vec<(std::path::PathBuf, bool)> = mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = unescape(fields.nth(4)?);
            let shared = fields.skip(1).take_while(|f| *f != "-").any(|f| f.starts_with("shared:"));
            Some((point, shared))
        })
        .collect();
    let holder = mounts.iter().filter(|(point, _)| root.starts_with(point)).max_by_key(|(p, _)| p.as_os_str().len());
    let below = mounts.iter().filter(|(point, _)| point.starts_with(root) && point != root);
    holder.into_iter().chain(below).filter(|(_, shared)| *shared).map(|(p, _)| p.clone()).collect()
}

/// A mountinfo field with its octal escapes (`\040`, `\011`, `\012`, `\134`) undone.
fn unescape(field: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b, octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:30 / /srv/my\\040images rw,relatime - tmpfs tmpfs rw
31 30 0:31 / /srv/my\\040images/a/proc rw shared:7 - proc proc rw
32 22 0:32 / /srv/other rw - tmpfs tmpfs rw
";

    #[test]
    fn shared_mounts_at_and_below_the_root_count_and_escapes_are_undone() {
        let root = Path::new("/srv/my images/a");
        assert_eq!(shared_mounts(MOUNTINFO, root), [Path::new("/srv/my images/a/proc")]);
        assert_eq!(shared_mounts(MOUNTINFO, Path::new("/srv/other/x")), Vec::<std::path::PathBuf>::new());
        assert_eq!(shared_mounts(MOUNTINFO, Path::new("/home/x")), [Path::new("/")]);
        assert_eq!(unescape("a\\011b\\134c\\012\\9"), Path::new("a\tb\\c\n\\9"));
    }

    #[test]
    fn kernel_releases() {
        assert!(static_init_ino("6.18.44-fc-v595") && static_init_ino("7.0.1"));
        assert!(!static_init_ino("6.1.0-56-amd64") && !static_init_ino("garbage"));
    }
}
