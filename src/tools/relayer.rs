//! `stateless relayer`: the layers applied again to a running client, to take a change of the
//! layer tree without a reboot.
//!
//! The layers are the boot's (its report names the host name and address that chose them); the
//! writable dirs those the boot made writable. Each path the layers provide is compared with what
//! the client has (kind, content, mode, owner, link target): only what differs is written, by
//! the boot's own copy, from the layer that wins (the last). A path the boot's provenance says a
//! layer wrote that no layer provides any more is left alone unless `--prune`: then it goes back
//! to what the image has there (read from the image mount itself, below the writable dirs), or
//! is removed when the image has nothing. The provenance file is brought up to date.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::mount::OpenTreeFlags;
use serde::Serialize;

use super::emit;
use crate::boot::report::LIVE_PATH;
use crate::fs::layers::{self, Provenance};
use crate::fs::root::{relative, ImageRoot};
use crate::fs::tree::{self, Entry, Kind, Verdict};
use crate::model::outcome::DirMode;
use crate::model::text::escape_path;

pub const USAGE: &str = "\
usage: stateless relayer [--dry-run] [--prune] [--json] [--root DIR]

Applies the layers again to this running client (as root): what the layers provide now and the
client does not have, or has otherwise, is written, and listed. Paths a layer wrote at boot that
no layer provides any more are listed and left alone; with --prune they go back to the image's
version, or away when the image has none. --dry-run lists without writing. --root DIR: a client
root other than / (its /run/stateless/report.json says what the boot chose).
";

/// What happens, or would happen, to one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Change {
    /// `/etc/fstab`.
    path: String,
    /// `new`, `changed`, `pruned`, `restored` (pruned, the image's version back), `stale` (not
    /// provided any more, left alone), `failed`.
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
    if !args.dry_run && !rustix::process::geteuid().is_root() {
        return Err("relayer writes the client's /etc and /var: run it as root (or with --dry-run)".into());
    }
    let root = std::fs::canonicalize(&args.root).map_err(|e| format!("{}: {e}", args.root.display()))?;
    let target = ImageRoot::open(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let done = relayer(&target, &args)?;
    if args.json {
        super::emit_json(&done)?;
    } else {
        emit(&render(&done))?;
    }
    Ok(i32::from(done.changes.iter().any(|c| c.what == "failed")))
}

fn relayer(target: &ImageRoot, args: &Args) -> Result<Relayered, String> {
    let report = super::status::read_report(&target.host_path(LIVE_PATH))?;
    let cmdline = std::fs::read(target.host_path("proc/cmdline")).unwrap_or_default();
    let (options, _) = crate::boot::options(&cmdline, target);
    // The dirs the boot made writable; the others are the read-only image.
    let dirs: Vec<String> = report.dirs.iter().filter(|d| d.mode != DirMode::None).map(|d| d.dir.clone()).collect();
    if dirs.is_empty() {
        return Err("the boot made no dir writable: there is nowhere to apply layers".into());
    }
    let layer_root = layers::open_root(target.fd(), &options.layers)?
        .ok_or_else(|| format!("no layer root {} in {}", options.layers, target.path().display()))?;
    let provenance_path = target.host_path(crate::boot::plan::REPORT_DIR).join("provenance");
    let mut provenance = std::fs::read(&provenance_path)
        .map(|bytes| Provenance::parse(&String::from_utf8_lossy(&bytes)))
        .map_err(|e| format!("{}: {e}", provenance_path.display()))?;
    let candidates = layers::candidates(report.hostname.as_ref(), report.address);
    let mut done = Relayered { dry_run: args.dry_run, ..Relayered::default() };
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
        let walk = tree::walk(fd.as_fd(), &|path, kind| layers::verdict(&dirs, path, kind));
        for error in &walk.errors {
            unread = true;
            done.changes.push(failed(&shown(&error.path), &name, error.to_string()));
        }
        // The host and network files are the boot's own, written after the layers: a layer's
        // /etc/hosts does not take the place of the one with the host's name.
        let own = |e: &Entry| matches!(provenance.get(&e.path), Some("hostname" | "network"));
        let copy: Vec<Entry> = walk.copy.into_iter().filter(|e| !own(e)).collect();
        for entry in &copy {
            winner.insert(entry.path.clone(), held.len());
        }
        done.layers.push(name.clone());
        held.push((name, fd, copy));
    }
    // Each layer writes the paths it wins that differ from what the client has.
    for (index, (name, fd, entries)) in held.iter().enumerate() {
        let mut writes = BTreeSet::new();
        for entry in entries.iter().filter(|e| winner.get(&e.path) == Some(&index)) {
            if let Some((what, detail)) = differs(fd.as_fd(), target.fd(), entry) {
                done.changes.push(Change { path: shown(&entry.path), what, layer: name.clone(), detail });
                writes.insert(entry.path.clone());
            }
        }
        if !args.dry_run && !writes.is_empty() {
            write(target, fd.as_fd(), &dirs, &writes, name, &mut provenance, &mut done.changes);
        }
    }
    // Paths a layer wrote at boot that no layer provides now.
    let stale: Vec<(PathBuf, String)> = provenance
        .iter()
        .filter(|(path, source)| !winner.contains_key(*path) && is_layer(source))
        .map(|(path, source)| (path.to_path_buf(), source.to_owned()))
        .collect();
    let image = (args.prune && !args.dry_run && !unread).then(|| image_below(target)).transpose()?;
    // Deepest first: a dir is pruned after what was in it.
    for (path, source) in stale.into_iter().rev() {
        let change = |what, detail: String| Change { path: shown(&path), what, layer: source.clone(), detail };
        match &image {
            None if args.prune && unread => {
                done.changes.push(change("stale", "left alone: a layer could not be read, so nothing is pruned".into()))
            }
            None if args.prune => done.changes.push(change("pruned", "(dry run)".into())),
            None => done.changes.push(change("stale", "left alone (--prune takes it away)".into())),
            Some(image) => match prune(target, image.as_fd(), &dirs, &path) {
                Ok(restored) => {
                    provenance.remove(&path);
                    done.changes.push(change(if restored { "restored" } else { "pruned" }, String::new()));
                }
                Err(e) => done.changes.push(change("failed", e)),
            },
        }
    }
    if !args.dry_run {
        let shown = |e: std::io::Error| format!("{}: {e}", provenance_path.display());
        let dir = target.dir(crate::boot::plan::REPORT_DIR).map_err(shown)?;
        crate::fs::root::replace_file(dir.fd.as_fd(), "provenance".as_ref(), provenance.render().as_bytes(), 0o644)
            .map_err(shown)?;
    }
    Ok(done)
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
    Change { path: path.to_owned(), what: "failed", layer: layer.to_owned(), detail: why }
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
        Kind::File if mine.st_size != theirs.st_size || !same_content(layer, client, &entry.path) => {
            what.push("content")
        }
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

/// Whether two regular files hold the same bytes (read in pieces; an unreadable one differs).
fn same_content(a: BorrowedFd<'_>, b: BorrowedFd<'_>, path: &Path) -> bool {
    let open = |dir| -> Option<std::fs::File> {
        let (parent, name) = tree::open_parent(dir, path).ok()?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        rustix::fs::openat(&parent, name, flags, Mode::empty()).ok().map(std::fs::File::from)
    };
    let (Some(mut a), Some(mut b)) = (open(a), open(b)) else { return false };
    let (mut x, mut y) = (vec![0; 64 << 10], vec![0; 64 << 10]);
    loop {
        match (read_full(&mut a, &mut x), read_full(&mut b, &mut y)) {
            (Some(0), Some(0)) => return true,
            (Some(n), Some(m)) if n == m && x.get(..n) == y.get(..m) => {}
            _ => return false,
        }
    }
}

/// Fills `buf` as far as the file goes; the bytes read, `None` on an error.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> Option<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(filled)
}

/// The writable dirs of the client, each opened as the copy's target: each must still be the
/// overlay or tmpfs the boot mounted there (never the image below).
fn targets(target: &ImageRoot, dirs: &[String]) -> Result<Vec<(String, OwnedFd)>, String> {
    use crate::fs::mounts::{is_mounted, OVERLAYFS_MAGIC, TMPFS_MAGIC};
    dirs.iter()
        .map(|dir| {
            let opened = target.dir(dir).map_err(|e| format!("/{dir}: {e}"))?;
            if !is_mounted(&opened.path, OVERLAYFS_MAGIC) && !is_mounted(&opened.path, TMPFS_MAGIC) {
                return Err(format!("/{dir} is not the overlay or tmpfs the boot made: not written"));
            }
            Ok((dir.clone(), opened.fd))
        })
        .collect()
}

/// Copies the entries `writes` of one layer into the client, with the boot's copy: a dir on the
/// way that the client has is walked through, one it lacks is made.
fn write(
    target: &ImageRoot,
    layer: BorrowedFd<'_>,
    dirs: &[String],
    writes: &BTreeSet<PathBuf>,
    name: &str,
    provenance: &mut Provenance,
    changes: &mut Vec<Change>,
) {
    let opened = match targets(target, dirs) {
        Ok(opened) => opened,
        Err(e) => return changes.push(failed("/", name, e)),
    };
    let list: Vec<tree::Target<'_>> =
        opened.iter().map(|(dir, fd)| tree::Target { path: Path::new(dir), dst: fd.as_fd(), lower: None }).collect();
    let filter = |path: &Path, kind: Kind| {
        if writes.contains(path) {
            return layers::verdict(dirs, path, kind);
        }
        let on_the_way = writes.iter().any(|w| w.starts_with(path));
        match layers::verdict(dirs, path, kind) {
            Verdict::Descend if on_the_way => Verdict::Descend,
            Verdict::Copy if on_the_way && kind == Kind::Dir => {
                // Walked through when the client has it, made (with the layer's metadata) when not.
                if tree::lstat_beneath(target.fd(), path).is_ok_and(|st| Kind::of_mode(st.st_mode) == Some(Kind::Dir)) {
                    Verdict::Descend
                } else {
                    Verdict::Copy
                }
            }
            _ => Verdict::Refuse,
        }
    };
    let copied = tree::copy_into(layer, &list, &filter);
    for entry in copied.written.iter().filter(|e| writes.contains(&e.path)) {
        provenance.record(&entry.path, name);
    }
    for error in &copied.errors {
        changes.push(failed(&shown(&error.path), name, error.to_string()));
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
    .map_err(|e| format!("the image below the writable dirs (open_tree {}): {e}", target.path().display()))
}

/// Takes away what a layer wrote at `path`: the image's version back when the image has one
/// (`true`), else removed (a dir only when empty). Only inside the writable dirs.
fn prune(target: &ImageRoot, image: BorrowedFd<'_>, dirs: &[String], path: &Path) -> Result<bool, String> {
    if layers::verdict(dirs, path, Kind::File) != Verdict::Copy {
        return Err("not inside a writable dir".into());
    }
    let parent = path.parent().unwrap_or(Path::new(""));
    let (client, name) =
        tree::open_parent(target.fd(), path).map_err(|e| format!("open /{}: {e}", escape_path(parent)))?;
    let here = rustix::fs::statat(&client, name, AtFlags::SYMLINK_NOFOLLOW);
    let in_image = tree::lstat_beneath(image, path).ok();
    match here {
        Ok(st) if Kind::of_mode(st.st_mode) == Some(Kind::Dir) => {
            if in_image.is_some() {
                return Ok(true); // the image has it too: a dir stays
            }
            return match rustix::fs::unlinkat(&client, name, AtFlags::REMOVEDIR) {
                Ok(()) => Ok(false),
                Err(e) => Err(format!("a dir, not removed: {e}")),
            };
        }
        Ok(_) => rustix::fs::unlinkat(&client, name, AtFlags::empty()).map_err(|e| format!("unlink: {e}"))?,
        Err(_) => {}
    }
    if in_image.is_none() {
        return Ok(false);
    }
    // The image's entry, copied as the boot copies a layer's, from the image's own dir.
    let dir = relative(parent);
    let source =
        tree::open_dir_nofollow(image, &dir).map_err(|e| format!("the image's /{}: {e}", escape_path(parent)))?;
    let only = |p: &Path, _: Kind| if p == Path::new(name) { Verdict::Copy } else { Verdict::Refuse };
    let copied = tree::copy_tree(source.as_fd(), client.as_fd(), &only);
    match copied.errors.first() {
        Some(e) if copied.errors.iter().any(tree::TreeError::is_loss) => Err(format!("the image's version: {e}")),
        _ => Ok(true),
    }
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
        out += &format!("{:<9} {} ({}){detail}\n", c.what, c.path, c.layer);
    }
    out
}
