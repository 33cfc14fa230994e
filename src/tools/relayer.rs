//! `stateless relayer`: the layers applied again to a running client, to take a change of the
//! layer tree without a reboot.
//!
//! The layers are the boot's (its report names the layer root, host name and address that chose
//! them, each held again to the rules the boot held it to); the writable dirs those the boot made
//! writable, each written or pruned only while it is still the overlay or tmpfs the boot mounted.
//! Each path the layers provide is compared with what the client has (kind, content, mode,
//! owner, link target): only what differs is written, by the boot's own copy, from the layer
//! that wins (the last). A path the boot's provenance says a layer wrote that no layer provides
//! any more is left alone unless `--prune`: then it goes back to what the image has there (read
//! from the image mount itself, below the writable dirs), or is removed when the image has
//! nothing. What the client changed since a layer wrote it (the provenance's stamp) is neither
//! replaced nor pruned. The provenance file is brought up to date.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, SeekFrom};
use rustix::io::Errno;
use rustix::mount::OpenTreeFlags;
use serde::Serialize;

use super::emit;
use crate::boot::report::Report;
use crate::fs::layers::{self, Provenance, Stamp, Written};
use crate::fs::root::{relative, ImageRoot};
use crate::fs::tree::{self, Entry, Kind, Verdict};
use crate::model::hostname::{self, Hostname};
use crate::model::ipv4::{usable_unicast, Ipv4Net};
use crate::model::outcome::{DirMode, MountKey};
use crate::model::paths::{LIVE_REPORT, PROVENANCE, REPORT, REPORT_DIR};
use crate::model::text::{escape, escape_path};
use crate::model::writable::DirName;

pub const USAGE: &str = "\
usage: stateless relayer [--dry-run] [--prune] [--json] [--root DIR]

Applies the layers again to this running client (as root): what the layers provide now and the
client does not have, or has otherwise, is written, and listed. Paths a layer wrote at boot that
no layer provides any more are listed and left alone; with --prune they go back to the image's
version, or away when the image has none. What the client made or changed itself (since a layer
wrote it, or where no layer wrote) is listed as edited and never replaced or pruned. --dry-run
lists without writing. As root, also with --dry-run: it reads the image below the writable dirs.
--root DIR: a client root other than / (its /run/stateless/report.json says what the boot chose).
";

/// What happens, or would happen, to one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Change {
    /// `/etc/fstab`.
    path: String,
    /// `new`, `changed`, `pruned`, `restored` (pruned, the image's version back), `stale` (not
    /// provided any more, left alone), `edited` (changed on the client since a layer wrote it:
    /// left alone), `kept` (a stale dir that stays), `skipped` (a provenance line not trusted),
    /// `failed`.
    what: &'static str,
    /// The layer that provides it (for `stale`/`pruned`: the one that wrote it at boot).
    layer: String,
    /// What differs (`content`, `mode`, `owner`, `kind`, `target`), or what failed.
    detail: String,
}

#[derive(Debug, Default, Serialize)]
struct Relayered {
    dry_run: bool,
    layers: Vec<String>,
    changes: Vec<Change>,
}

struct Args {
    root: PathBuf,
    dry_run: bool,
    prune: bool,
    json: bool,
}

pub(super) fn command(mut argv: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let mut args = Args { root: PathBuf::from("/"), dry_run: false, prune: false, json: false };
    while let Some(arg) = argv.next() {
        match arg.to_str().unwrap_or("") {
            "--help" | "-h" => return emit(USAGE).map(|()| 0),
            "--dry-run" | "-n" => args.dry_run = true,
            "--prune" => args.prune = true,
            "--json" => args.json = true,
            "--root" => args.root = PathBuf::from(super::value(&mut argv, "--root")?),
            _ => return Err(format!("unknown argument {}\n{USAGE}", super::quote(&arg))),
        }
    }
    let root = std::fs::canonicalize(&args.root).map_err(|e| format!("{}: {e}", escape_path(&args.root)))?;
    let target = ImageRoot::open(&root).map_err(|e| format!("{}: {e}", escape_path(&root)))?;
    let done = relayer(&target, &args)?;
    if args.json {
        super::emit_json(&done)?;
    } else {
        emit(&render(&done))?;
    }
    Ok(i32::from(done.changes.iter().any(|c| c.what == "failed")))
}

/// What the boot chose, read back from its report and held again to the rules the boot held
/// it to: /run/stateless is trusted no more than the command line was.
struct Boot {
    /// The dirs made writable, as `stateless.dirs=` takes them.
    dirs: Vec<DirName>,
    /// The mount the boot made on each, where the kernel could tell.
    mounts: BTreeMap<DirName, MountKey>,
    layer_root: String,
    hostname: Option<Hostname>,
    address: Option<Ipv4Net>,
}

impl Boot {
    fn of(report: &Report) -> Result<Boot, String> {
        let bad = |what: &str, why: String| format!("{LIVE_REPORT}: {what}: {why}: not trusted, nothing done");
        let (mut dirs, mut mounts) = (Vec::new(), BTreeMap::new());
        for dir in report.dirs.iter().filter(|d| d.mode != DirMode::None) {
            let checked = crate::config::check_dir(&dir.dir, &dirs).map_err(|e| bad("dirs", e))?;
            if let Some(key) = dir.mount {
                mounts.insert(checked.clone(), key);
            }
            dirs.push(checked);
        }
        if dirs.is_empty() {
            return Err("the boot made no dir writable: there is nowhere to apply layers".into());
        }
        let layer_root = report.layer_root.as_deref().ok_or_else(|| {
            format!("{LIVE_REPORT} does not name the layer root the boot used (an older stateless wrote it): reboot the client once to use relayer")
        })?;
        let layer_root = crate::config::layer_root(layer_root).map_err(|e| bad("layer_root", e))?;
        if let Some(name) = &report.hostname {
            let short = hostname::validate(&name.short).ok().filter(|s| *s == name.short && !s.contains('.'));
            let domain = name.domain.as_deref().map_or(Ok(String::new()), hostname::validate);
            if short.is_none() || domain.is_err() || name.short.len() >= hostname::UTS_LEN {
                return Err(bad(
                    "hostname",
                    format!("{} is not a valid RFC 1123 host name", escape(name.fqdn().as_bytes())),
                ));
            }
        }
        if let Some(net) = report.address.filter(|net| !usable_unicast(net.addr)) {
            return Err(bad("address", format!("{net} is not a usable unicast address")));
        }
        Ok(Boot { dirs, mounts, layer_root, hostname: report.hostname.clone(), address: report.address })
    }
}

fn relayer(target: &ImageRoot, args: &Args) -> Result<Relayered, String> {
    // What the boot left in /run/stateless, read beneath it: nothing there leads elsewhere.
    let report_dir =
        target.dir(REPORT_DIR).map_err(|e| format!("{LIVE_REPORT}: {e} (was this client booted by stateless?)"))?;
    let report = read_run(report_dir.fd.as_fd(), REPORT, super::status::MAX_REPORT)?;
    let boot = Boot::of(&super::status::parse_report(&report, LIVE_REPORT)?)?;
    if !rustix::process::geteuid().is_root() {
        return Err("relayer reads the client's writable dirs and the image below them (open_tree), and writes the former: run it as root, also with --dry-run".into());
    }
    let dirs = &boot.dirs;
    // The image itself, below the writable dirs: the layers are read from it, as the boot read
    // them (a layer root inside a writable dir is the client's to change now), and it tells
    // what the client made or changed from what it has from the image.
    let image = image_below(target)?;
    // A layer root under /run (an image root's, on its export) is no part of the image: read
    // through /run, where the boot read it.
    let beside = Path::new(&boot.layer_root).starts_with("/run");
    let layer_root = layers::open_root(if beside { target.fd() } else { image.as_fd() }, &boot.layer_root)?;
    let layer_root = layer_root.ok_or_else(|| {
        format!("no layer root {} in {}", escape(boot.layer_root.as_bytes()), escape_path(target.path()))
    })?;
    let live = Live::find(target, &boot);
    let read = read_run(report_dir.fd.as_fd(), PROVENANCE, MAX_PROVENANCE)?;
    let (mut provenance, skipped) = Provenance::parse(&read);
    let candidates = layers::candidates(boot.hostname.as_ref(), boot.address);
    let mut done = Relayered { dry_run: args.dry_run, ..Relayered::default() };
    let shown_provenance = format!("/{REPORT_DIR}/{PROVENANCE}");
    let skip =
        |why: String| Change { path: shown_provenance.clone(), what: "skipped", layer: String::new(), detail: why };
    done.changes.extend(skipped.into_iter().map(skip));
    // Sources are the layers the boot looked for and the host and network files steps.
    let known: BTreeSet<&str> = candidates.iter().map(|(_, n)| n.as_str()).chain(["hostname", "network"]).collect();
    provenance.retain(|path, written| {
        let ok = known.contains(written.source.as_str());
        if !ok {
            let why =
                format!("{}: written by {}, no layer of this client", shown(path), escape(written.source.as_bytes()));
            done.changes.push(skip(why));
        }
        ok
    });
    // What each layer holds, and which layer wins each path.
    let mut held = Vec::new();
    let mut winner: BTreeMap<PathBuf, usize> = BTreeMap::new();
    // A layer (or part of one) that could not be read: what it holds is unknown, so nothing is
    // pruned (it would look stale).
    let mut unread = false;
    for (_, name) in candidates {
        let fd = match layers::open_layer(layer_root.as_fd(), &name) {
            Ok(Some(fd)) => fd,
            Ok(None) => continue,
            Err(e) => {
                unread = true;
                done.changes.push(failed(&name, &name, e));
                continue;
            }
        };
        let walk = tree::walk(fd.as_fd(), &|path, kind| layers::verdict(dirs, path, kind));
        for error in &walk.errors {
            unread = true;
            done.changes.push(failed(&shown(&error.path), &name, error.to_string()));
        }
        // The host and network files are the boot's own, written after the layers: a layer's
        // /etc/hosts does not take the place of the one with the host's name.
        let own = |e: &Entry| provenance.get(&e.path).is_some_and(|w| !is_layer(&w.source));
        let copy: Vec<Entry> = walk.copy.into_iter().filter(|e| !own(e)).collect();
        for entry in &copy {
            winner.insert(entry.path.clone(), held.len());
        }
        done.layers.push(name.clone());
        held.push((name, fd, copy));
    }
    // Each layer writes the paths it wins that differ from what the client has, unless the
    // client changed them since a layer wrote them; decided for every layer before any writes,
    // so that nothing goes below a path left alone, whichever layer provides it.
    let mut planned = Vec::new();
    let mut left = BTreeMap::new();
    for (index, (name, fd, entries)) in held.iter().enumerate() {
        for entry in entries.iter().filter(|e| winner.get(&e.path) == Some(&index)) {
            let Some((what, detail)) = differs(fd.as_fd(), target.fd(), entry) else { continue };
            let change = |what, detail| Change { path: shown(&entry.path), what, layer: name.clone(), detail };
            let theirs = tree::lstat_beneath(target.fd(), &entry.path).ok();
            let change = if let Err(e) = live.inside(&entry.path) {
                change("failed", e)
            } else if entry.kind != Kind::Dir && theirs.is_some_and(|st| Kind::of_mode(st.st_mode) == Some(Kind::Dir)) {
                let why = "a dir on this client, no dir in the layer: a dir is never replaced (remove it to take the layer's)";
                change("failed", why.into())
            } else if let Some(how) = edited(target.fd(), &entry.path, provenance.get(&entry.path)).or_else(|| {
                clients_own(image.as_fd(), target.fd(), entry, provenance.get(&entry.path)).map(String::from)
            }) {
                let what = if detail.is_empty() { how } else { format!("{detail}; {how}") };
                change("edited", format!("{what}: left alone"))
            } else {
                change(what, detail)
            };
            if matches!(change.what, "failed" | "edited") {
                left.insert(entry.path.clone(), change.what);
            }
            planned.push((index, entry.path.clone(), change));
        }
    }
    let mut writes = vec![BTreeSet::new(); held.len()];
    for (index, path, change) in planned {
        let change = match path.ancestors().skip(1).find_map(|above| Some((above, *left.get(above)?))) {
            Some((above, "edited")) => Change {
                what: "edited",
                detail: format!("inside {}, which this client changed: left alone", shown(above)),
                ..change
            },
            Some((above, _)) => {
                Change { what: "failed", detail: format!("inside {}, left alone", shown(above)), ..change }
            }
            None => change,
        };
        if matches!(change.what, "new" | "changed") {
            writes.get_mut(index).map(|w| w.insert(path));
        }
        done.changes.push(change);
    }
    // What may take the place of what the client has on the way to a write: a dir a layer
    // provides where the client has none, or a non-dir it may replace.
    let approved: BTreeSet<PathBuf> = writes.iter().flatten().cloned().collect();
    for ((name, fd, _), writes) in held.iter().zip(&writes) {
        if !args.dry_run && !writes.is_empty() {
            write(&live, fd.as_fd(), dirs, (writes, &approved), name, &mut provenance, &mut done.changes);
        }
    }
    // Paths a layer wrote at boot that no layer provides now.
    let stale: Vec<(PathBuf, Written)> = provenance
        .iter()
        .filter(|(path, written)| !winner.contains_key(*path) && is_layer(&written.source))
        .map(|(path, written)| (path.to_path_buf(), written.clone()))
        .collect();
    let prune_from = (args.prune && !unread).then_some(image.as_fd());
    // What a prune takes away, deepest first: a dir is pruned after what was in it.
    let mut gone = BTreeSet::new();
    for (path, written) in stale.into_iter().rev() {
        let source = escape(written.source.as_bytes());
        let change = |what, detail: String| Change { path: shown(&path), what, layer: source.clone(), detail };
        // What the client deleted where the image has nothing is what a prune leaves: no edit.
        let gone_from_both = absent(target.fd(), &path) && absent(image.as_fd(), &path);
        let how = edited(target.fd(), &path, Some(&written)).filter(|_| !gone_from_both);
        let pruned = live.inside(&path).map_err(|e| ("failed", e)).and_then(|(dir, below)| match (prune_from, how) {
            (_, Some(how)) if args.prune => Err(("edited", format!("{how}: left alone, also by --prune"))),
            (_, Some(how)) => Err(("stale", format!("{how}: left alone, also by --prune"))),
            (None, None) if args.prune => {
                Err(("stale", "left alone: a layer could not be read, so nothing is pruned".into()))
            }
            (None, None) => Err(("stale", "left alone (--prune takes it away)".into())),
            (Some(image), None) => prune(dir, &below, image, &path, &gone, args.dry_run).map_err(|e| ("failed", e)),
        });
        match pruned {
            Ok(Pruned::Kept(why)) => done.changes.push(change("kept", why)),
            Ok(pruned) => {
                if !args.dry_run {
                    provenance.remove(&path);
                }
                if pruned != Pruned::Restored {
                    gone.insert(path.clone());
                }
                done.changes.push(match pruned {
                    Pruned::Restored => change("restored", String::new()),
                    Pruned::Gone => change("pruned", "already gone from the client".into()),
                    _ => change("pruned", String::new()),
                });
            }
            Err((what, why)) => done.changes.push(change(what, why)),
        }
    }
    let rendered = provenance.render();
    if !args.dry_run && rendered.as_bytes() != read {
        // What was written stays listed: the provenance failing only makes the next run see
        // those paths as changed by the client (left alone), never lose them. Written only in
        // the boot's tmpfs on /run, as the boot writes it (never in an image), in the dir it was
        // read from.
        let run = target.dir("run").map_err(|e| e.to_string());
        let saved = run
            .and_then(|run| match crate::fs::mounts::is_mount_root(run.fd.as_fd(), crate::fs::mounts::TMPFS_MAGIC) {
                true => Ok(()),
                false => Err("/run is not a tmpfs".into()),
            })
            .and_then(|()| {
                crate::fs::root::replace_file(report_dir.fd.as_fd(), PROVENANCE.as_ref(), rendered.as_bytes(), 0o644)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = saved {
            let wrote = done.changes.iter().any(|c| matches!(c.what, "new" | "changed" | "pruned" | "restored"));
            let then = if wrote { ": the next run lists what was written above as edited" } else { "" };
            let why = format!("not brought up to date ({e}){then}");
            done.changes.push(Change { path: shown_provenance, what: "failed", layer: String::new(), detail: why });
        }
    }
    Ok(done)
}

/// A provenance holds a line per path the boot wrote: 64 MiB is a million long paths.
const MAX_PROVENANCE: u64 = 64 << 20;

/// A file the boot left in /run/stateless: a regular file (a device or fifo there is never
/// opened) beneath it, of at most `limit` bytes.
fn read_run(run: BorrowedFd<'_>, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let shown = format!("/{REPORT_DIR}/{name}");
    match crate::fs::root::read_beneath(run, Path::new(name), limit) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(format!("{shown}: missing (was this client booted by stateless?)")),
        Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
            Err(format!("{shown}: a symlink leading out of /{REPORT_DIR}: refused"))
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Sources in the provenance that are layers: `base`, `networks/...`, `labs/...`, `hosts/...`
/// (not `hostname` or `network`, the host and network files).
fn is_layer(source: &str) -> bool {
    source == "base" || ["networks/", "labs/", "hosts/"].iter().any(|p| source.starts_with(p))
}

fn shown(path: &Path) -> String {
    format!("/{}", escape_path(path))
}

fn failed(path: &str, layer: &str, why: String) -> Change {
    Change { path: path.to_owned(), what: "failed", layer: escape(layer.as_bytes()), detail: why }
}

/// Whether `dir` has nothing at `path`.
fn absent(dir: BorrowedFd<'_>, path: &Path) -> bool {
    matches!(tree::lstat_beneath(dir, path), Err(Errno::NOENT | Errno::NOTDIR))
}

/// How the client changed `path` since a layer wrote it (its stamp differs, or there is none
/// for a non-dir: whether it changed is unknown; or it is gone); `None` when unchanged, or
/// written by no layer.
fn edited(client: BorrowedFd<'_>, path: &Path, written: Option<&Written>) -> Option<String> {
    let written = written.filter(|w| is_layer(&w.source))?;
    let by = escape(written.source.as_bytes());
    let now = match tree::lstat_beneath(client, path) {
        Ok(now) => now,
        Err(Errno::NOENT | Errno::NOTDIR) => return Some(format!("deleted on this client since {by} wrote it")),
        Err(e) => return Some(format!("not readable on this client ({e})")),
    };
    let unchanged = match written.stamp {
        Some(stamp) => Stamp::of(&now) == Some(stamp),
        None => Kind::of_mode(now.st_mode) == Some(Kind::Dir),
    };
    (!unchanged).then(|| format!("changed on this client since {by} wrote it"))
}

/// Why what the client has at a path no layer wrote at boot is its own, when it is: the image
/// has nothing there, or has it otherwise (a file the client made or edited, which a layer that
/// provides the path only now would replace). Dirs are never the client's own: a layer only
/// adds to them.
fn clients_own(
    image: BorrowedFd<'_>,
    client: BorrowedFd<'_>,
    entry: &Entry,
    written: Option<&Written>,
) -> Option<&'static str> {
    if written.is_some() {
        return None; // a layer's, or the host and network files'
    }
    let Ok(theirs) = tree::lstat_beneath(client, &entry.path) else {
        let deleted = tree::lstat_beneath(image, &entry.path).is_ok();
        return deleted.then_some("deleted on this client from the image's, not by a layer");
    };
    let kind = Kind::of_mode(theirs.st_mode);
    if kind == Some(Kind::Dir) {
        return None;
    }
    let Ok(image_has) = tree::lstat_beneath(image, &entry.path) else {
        return Some("made on this client, not by a layer");
    };
    let as_in_image = Entry { path: entry.path.clone(), kind: Kind::of_mode(image_has.st_mode)? };
    differs(image, client, &as_in_image).map(|_| "changed on this client from the image's, not by a layer")
}

/// Whether the client lacks a layer's entry (`new`) or has it otherwise (`changed`, and what
/// differs); `None`: the same.
fn differs(layer: BorrowedFd<'_>, client: BorrowedFd<'_>, entry: &Entry) -> Option<(&'static str, String)> {
    let mine = tree::lstat_beneath(layer, &entry.path).ok()?;
    let Ok(theirs) = tree::lstat_beneath(client, &entry.path) else {
        return Some(("new", String::new()));
    };
    if Kind::of_mode(mine.st_mode) != Kind::of_mode(theirs.st_mode) {
        return Some(("changed", "kind".into()));
    }
    let mut what = Vec::new();
    if entry.kind != Kind::Symlink && mine.st_mode & 0o7777 != theirs.st_mode & 0o7777 {
        what.push("mode");
    }
    if (mine.st_uid, mine.st_gid) != (theirs.st_uid, theirs.st_gid) {
        what.push("owner");
    }
    match entry.kind {
        Kind::File if !same_content(layer, client, &entry.path) => what.push("content"),
        Kind::Symlink if read_link(layer, &entry.path) != read_link(client, &entry.path) => what.push("target"),
        Kind::Device if mine.st_rdev != theirs.st_rdev => what.push("device"),
        _ => {}
    }
    (!what.is_empty()).then(|| ("changed", what.join(", ")))
}

fn read_link(dir: BorrowedFd<'_>, path: &Path) -> Option<Vec<u8>> {
    let (parent, name) = tree::open_parent(dir, path).ok()?;
    rustix::fs::readlinkat(&parent, name, Vec::new()).ok().map(|link| link.into_bytes())
}

/// Whether two regular files hold the same bytes: the sizes first, then only the ranges where
/// either has data (`SEEK_DATA`/`SEEK_HOLE`), read in pieces. A hole reads as zeros, so a hole
/// and the same range of written zeros are the same content (as a copy gives either). An
/// unreadable file, or one that changes while read, differs.
fn same_content(a: BorrowedFd<'_>, b: BorrowedFd<'_>, path: &Path) -> bool {
    let open = |dir| -> Option<OwnedFd> {
        let (parent, name) = tree::open_parent(dir, path).ok()?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        rustix::fs::openat(&parent, name, flags, Mode::empty()).ok()
    };
    let (Some(a), Some(b)) = (open(a), open(b)) else { return false };
    let (Ok(sa), Ok(sb)) = (rustix::fs::fstat(&a), rustix::fs::fstat(&b)) else { return false };
    if sa.st_size != sb.st_size {
        return false;
    }
    let size = u64::try_from(sa.st_size).unwrap_or(0);
    let (mut x, mut y) = (vec![0; 64 << 10], vec![0; 64 << 10]);
    let mut at = 0;
    while at < size {
        let (Some((data_a, end_a)), Some((data_b, end_b))) = (segment(&a, at, size), segment(&b, at, size)) else {
            return false;
        };
        let end = end_a.min(end_b);
        if end <= at {
            return false;
        }
        // Both holes: nothing to read.
        if data_a || data_b {
            while at < end {
                let n = usize::try_from(end - at).unwrap_or(usize::MAX).min(x.len());
                let (Some(x), Some(y)) = (x.get_mut(..n), y.get_mut(..n)) else { return false };
                let read_a = !data_a || pread_full(&a, x, at);
                let read_b = !data_b || pread_full(&b, y, at);
                let same = match (data_a, data_b) {
                    (true, true) => x == y,
                    (true, false) => x.iter().all(|&byte| byte == 0),
                    _ => y.iter().all(|&byte| byte == 0),
                };
                if !(read_a && read_b && same) {
                    return false;
                }
                at += n as u64;
            }
        }
        at = end;
    }
    true
}

/// Whether `file` has data at `at`, and where that data (or hole) ends: `SEEK_DATA`, then
/// `SEEK_HOLE`. A filesystem that cannot tell is all data; `None` on another error.
fn segment(file: &OwnedFd, at: u64, size: u64) -> Option<(bool, u64)> {
    let data = match rustix::fs::seek(file, SeekFrom::Data(at)) {
        Ok(data) => data,
        Err(Errno::NXIO) => size, // a hole to the end
        Err(Errno::INVAL | Errno::OPNOTSUPP) => return Some((true, size)),
        Err(_) => return None,
    };
    if data > at {
        return Some((false, data.min(size)));
    }
    match rustix::fs::seek(file, SeekFrom::Hole(at)) {
        Ok(hole) => Some((true, hole.min(size))),
        Err(Errno::INVAL | Errno::OPNOTSUPP) => Some((true, size)),
        Err(_) => None,
    }
}

/// Fills `buf` from `file` at `offset`; false on an error or a short file.
fn pread_full(file: &OwnedFd, buf: &mut [u8], offset: u64) -> bool {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match rustix::io::pread(file, rest, offset + filled as u64) {
            Ok(0) => return false,
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// The client's writable dirs as relayer finds them.
struct Live {
    /// Each dir, opened as the copy's target when it is still the mount the boot made there;
    /// why not, else.
    dirs: Vec<(DirName, Result<OwnedFd, String>)>,
    /// Mount points below them (relative to the root): another filesystem, or another place of
    /// one, that a layer's path must not reach through.
    nested: Vec<PathBuf>,
}

impl Live {
    fn find(target: &ImageRoot, boot: &Boot) -> Live {
        use crate::fs::mounts::{is_mount_root, mount_key, OVERLAYFS_MAGIC, TMPFS_MAGIC};
        let open = |dir: &DirName| {
            let opened = target.dir(dir).map_err(|e| format!("/{dir}: {e}"))?;
            // The dir opened, not its path again: what is written through is what was checked.
            let fd = opened.fd.as_fd();
            let mounted = is_mount_root(fd, OVERLAYFS_MAGIC) || is_mount_root(fd, TMPFS_MAGIC);
            let same = boot.mounts.get(dir).is_none_or(|key| mount_key(fd) == Some(*key));
            if !mounted || !same {
                return Err(format!(
                    "/{dir} is not the overlay or tmpfs the boot made there (unmounted or replaced since, or relayer runs in another mount namespace than the boot's?): nothing written or removed there"
                ));
            }
            Ok(opened.fd)
        };
        let table = crate::fs::mounts::mount_points();
        let open = |dir: &DirName| match &table {
            Ok(_) => open(dir),
            Err(e) => Err(format!("the mount table (/proc/self/mountinfo): {e}: nothing written or removed")),
        };
        let dirs = boot.dirs.iter().map(|dir| (dir.clone(), open(dir))).collect();
        let nested = table
            .unwrap_or_default()
            .into_iter()
            .filter_map(|point| point.strip_prefix(target.path()).ok().map(Path::to_path_buf))
            .filter(|point| boot.dirs.iter().any(|dir| point.starts_with(dir) && point != dir.as_path()))
            .collect();
        Live { dirs, nested }
    }

    /// The writable dir `path` lies in, when it is still the boot's and nothing else is mounted
    /// on the way, and `path` below it.
    fn inside(&self, path: &Path) -> Result<(BorrowedFd<'_>, PathBuf), String> {
        let (dir, fd) = self
            .dirs
            .iter()
            .find(|(dir, _)| path.starts_with(dir) && path != dir.as_path())
            .ok_or_else(|| "not inside a writable dir".to_owned())?;
        let fd = fd.as_ref().map_err(Clone::clone)?;
        if let Some(point) = self.nested.iter().find(|point| path.starts_with(point)) {
            return Err(format!("on another mount ({}): nothing written or removed there", shown(point)));
        }
        Ok((fd.as_fd(), path.strip_prefix(dir).map(Path::to_path_buf).unwrap_or_default()))
    }
}

/// Copies the entries `writes` of one layer into the client's live writable dirs, with the
/// boot's copy: a dir on the way that the client has is walked through, one it lacks is made.
fn write(
    live: &Live,
    layer: BorrowedFd<'_>,
    dirs: &[DirName],
    (writes, approved): (&BTreeSet<PathBuf>, &BTreeSet<PathBuf>),
    name: &str,
    provenance: &mut Provenance,
    changes: &mut Vec<Change>,
) {
    let list: Vec<tree::Target<'_>> = live
        .dirs
        .iter()
        .filter_map(|(dir, fd)| Some(tree::Target { path: dir.as_path(), dst: fd.as_ref().ok()?.as_fd(), lower: None }))
        .collect();
    let client_dir = |path: &Path| {
        let (dir, below) = live.inside(path).ok()?;
        Some(tree::lstat_beneath(dir, &below).ok()?.st_mode)
    };
    // Every dir above a write, once: asked of each entry the copy meets.
    let above: BTreeSet<&Path> = writes.iter().flat_map(|w| w.ancestors().skip(1)).collect();
    let filter = |path: &Path, kind: Kind| {
        if writes.contains(path) {
            return layers::verdict(dirs, path, kind);
        }
        let on_the_way = above.contains(path);
        match layers::verdict(dirs, path, kind) {
            Verdict::Descend if on_the_way => Verdict::Descend,
            Verdict::Copy if on_the_way && kind == Kind::Dir => {
                // Walked through when the client has it, made (with the layer's metadata) when
                // another layer may make it; else nothing takes the place of what the client has.
                if client_dir(path).is_some_and(|mode| Kind::of_mode(mode) == Some(Kind::Dir)) {
                    Verdict::Descend
                } else if approved.contains(path) {
                    Verdict::Copy
                } else {
                    Verdict::Refuse
                }
            }
            _ => Verdict::Refuse,
        }
    };
    let copied = tree::copy_into(layer, &list, &filter);
    let written: Vec<Entry> = copied.written.into_iter().filter(|e| writes.contains(&e.path)).collect();
    provenance.record_written(&list, &written, name);
    for error in &copied.errors {
        changes.push(failed(&shown(&error.path), name, error.to_string()));
    }
    // Listed as written, then neither written nor failed (not reached): said, never silent.
    let told: BTreeSet<&Path> =
        written.iter().map(|e| e.path.as_path()).chain(copied.errors.iter().map(|e| e.path.as_path())).collect();
    for path in writes.iter().filter(|p| !told.contains(p.as_path())) {
        changes.push(failed(&shown(path), name, "not written: not reached through what the client has".into()));
    }
}

/// The image as mounted, without the writable dirs over it: a detached copy of the root's mount
/// (`open_tree(OPEN_TREE_CLONE)`, not recursive), where /etc is the image's own.
fn image_below(target: &ImageRoot) -> Result<OwnedFd, String> {
    rustix::mount::open_tree(
        rustix::fs::CWD,
        target.path(),
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| format!("the image below the writable dirs (open_tree {}): {e}", escape_path(target.path())))
}

/// What pruning one path did (or, in a dry run, will do).
#[derive(Debug, PartialEq, Eq)]
enum Pruned {
    Removed,
    /// Nothing was there any more (nor is there in the image).
    Gone,
    /// The image's version is back.
    Restored,
    /// A dir that stays, and why.
    Kept(String),
}

/// Takes away what a layer wrote at `path` (`below` in the live writable dir `dir`): the
/// image's version back when the image has one, else removed; a dir only when nothing but
/// what is `gone` (pruned before it) was in it. In a dry run, what it would do.
fn prune(
    dir: BorrowedFd<'_>,
    below: &Path,
    image: BorrowedFd<'_>,
    path: &Path,
    gone: &BTreeSet<PathBuf>,
    dry_run: bool,
) -> Result<Pruned, String> {
    let parent = path.parent().unwrap_or(Path::new(""));
    let (client, name) = tree::open_parent(dir, below).map_err(|e| format!("open /{}: {e}", escape_path(parent)))?;
    let here = match rustix::fs::statat(&client, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Kind::of_mode(st.st_mode),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(format!("stat: {e}")),
    };
    // Only a name the image lacks is nothing there: any other error (a stale NFS handle) is no
    // reason to remove the layer's.
    let in_image = match tree::lstat_beneath(image, path) {
        Ok(st) => Kind::of_mode(st.st_mode),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => None,
        Err(e) => return Err(format!("the image's /{}: {e}: nothing done", escape_path(path))),
    };
    let mut here = here;
    if here == Some(Kind::Dir) {
        if in_image == Some(Kind::Dir) {
            return Ok(Pruned::Kept("a dir the image has too: stays".into()));
        }
        let empty = if dry_run {
            holds_only(&client, name, path, gone)
        } else {
            match rustix::fs::unlinkat(&client, name, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(true),
                Err(Errno::NOTEMPTY | Errno::EXIST) => Ok(false),
                Err(e) => Err(format!("a dir, not removed: {e}")),
            }
        };
        if !empty? {
            return Ok(Pruned::Kept("a dir not empty once pruned: stays".into()));
        }
        if in_image.is_none() {
            return Ok(Pruned::Removed);
        }
        here = None; // the image's non-dir goes where the dir was
    }
    if in_image.is_none() {
        if here.is_some() && !dry_run {
            rustix::fs::unlinkat(&client, name, AtFlags::empty()).map_err(|e| format!("unlink: {e}"))?;
        }
        return Ok(if here.is_some() { Pruned::Removed } else { Pruned::Gone });
    }
    if dry_run {
        return Ok(Pruned::Restored);
    }
    // A non-dir the client has is replaced by the image's in one rename, so that a failing
    // copy leaves it as it was; only a dir of the image's cannot be renamed over it.
    if here.is_some() && in_image == Some(Kind::Dir) {
        rustix::fs::unlinkat(&client, name, AtFlags::empty()).map_err(|e| format!("unlink: {e}"))?;
    }
    // The image's entry, copied as the boot copies a layer's, from the image's own dir.
    let lost = |why: String| match here {
        Some(_) if in_image == Some(Kind::Dir) => format!("removed, but the image's version is not back: {why}"),
        Some(_) => format!("left as it was, the image's version is not back: {why}"),
        None => format!("the image's version is not back: {why}"),
    };
    let source = tree::open_dir_nofollow(image, &relative(parent))
        .map_err(|e| lost(format!("the image's /{}: {e}", escape_path(parent))))?;
    let only = |p: &Path, _: Kind| if p == Path::new(name) { Verdict::Copy } else { Verdict::Refuse };
    let copied = tree::copy_tree(source.as_fd(), client.as_fd(), &only);
    if let Some(e) = copied.errors.iter().find(|e| e.is_loss()) {
        return Err(lost(e.to_string()));
    }
    match copied.written.iter().any(|e| e.path == Path::new(name)) {
        true => Ok(Pruned::Restored),
        false => Err(lost("nothing copied".into())),
    }
}

/// Whether the dir `name` in `parent` (at `path`) holds nothing but entries in `gone`.
fn holds_only(parent: &OwnedFd, name: &std::ffi::OsStr, path: &Path, gone: &BTreeSet<PathBuf>) -> Result<bool, String> {
    let fd = rustix::fs::openat(parent, name, tree::DIR_FLAGS, Mode::empty()).map_err(|e| format!("open: {e}"))?;
    let dir = rustix::fs::Dir::new(fd).map_err(|e| format!("open: {e}"))?;
    for entry in dir {
        let entry = entry.map_err(|e| format!("read: {e}"))?;
        let entry_name = entry.file_name().to_bytes();
        if entry_name != b"."
            && entry_name != b".."
            && !gone.contains(&path.join(std::ffi::OsStr::from_bytes(entry_name)))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn render(done: &Relayered) -> String {
    let mut out = format!(
        "{}layers: {}\n",
        if done.dry_run { "dry run (nothing written); " } else { "" },
        if done.layers.is_empty() { "none".into() } else { done.layers.join(", ") }
    );
    if done.changes.is_empty() {
        out += "nothing to do: the client has what the layers provide\n";
    }
    for c in &done.changes {
        let detail = if c.detail.is_empty() { String::new() } else { format!(": {}", c.detail) };
        let layer = if c.layer.is_empty() { String::new() } else { format!(" ({})", c.layer) };
        out += &format!("{:<9} {}{layer}{detail}\n", c.what, c.path);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::FileExt;

    /// Two dirs `a` and `b`, each with a file `f` of `size` bytes holding `data` at its offsets
    /// (the rest holes); whether relayer takes them for the same content.
    fn same(size: u64, a: &[(u64, &[u8])], b: &[(u64, &[u8])]) -> bool {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("stateless-sparse-{}-{n}", std::process::id()));
        for (side, data) in [("a", a), ("b", b)] {
            std::fs::create_dir_all(dir.join(side)).unwrap();
            let file = std::fs::File::create(dir.join(side).join("f")).unwrap();
            file.set_len(size).unwrap();
            for (at, bytes) in data {
                file.write_all_at(bytes, *at).unwrap();
            }
        }
        let open = |side| rustix::fs::open(dir.join(side), OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let (a, b) = (open("a"), open("b"));
        let same = same_content(a.as_fd(), b.as_fd(), Path::new("f"));
        std::fs::remove_dir_all(&dir).unwrap();
        same
    }

    #[test]
    fn sparse_files_compare_by_their_data() {
        const G: u64 = 1 << 30;
        let data: &[u8] = &[7; 100_000];
        let mut other = data.to_vec();
        if let Some(byte) = other.get_mut(77_777) {
            *byte = 8;
        }
        let zeros = vec![0; 1 << 20];
        assert!(same(4 * G, &[(0, data), (2 * G, data)], &[(0, data), (2 * G, data)]), "the same sparse files");
        assert!(!same(4 * G, &[(0, data), (2 * G, data)], &[(0, data), (2 * G, &other)]), "a byte inside data");
        assert!(!same(4 * G, &[(4 * G - 1, b"x")], &[(4 * G - 1, b"y")]), "the last byte");
        assert!(!same(4 * G, &[(2 * G, data)], &[]), "data against a hole");
        assert!(!same(4 * G, &[], &[(3 * G, b"\x01")]), "a hole against data");
        assert!(same(4 * G, &[(G, &zeros)], &[]), "written zeros are a hole's content");
        assert!(
            same(4 * G, &[(G, &zeros), (2 * G, data)], &[(G + 4096, &zeros), (2 * G, data)]),
            "maps differ, bytes not"
        );
        assert!(!same(100, &[(0, b"a")], &[(0, b"b")]) && same(0, &[], &[]));
        assert!(!same(100, &[], &[(100, b"\0")]), "one zero longer");
    }
}
