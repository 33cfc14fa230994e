//! `stateless check ROOT`: a layer tree checked before it is served, on the server, read-only.
//! ROOT is the tree the clients boot, or an image file of it with its layer tree beside it
//! ([`image`]).
//!
//! It finds what would make a client boot differently from what the admin meant:
//! - layer dirs whose name can never match a client (`hosts/lab3-12.example.edu`, `labs/lab3-x`,
//!   `networks/10.0.2.5_24`), a layer dir that is a file, a symlinked layer out of the layer root;
//! - entries outside the writable dirs (never copied), sockets, trees deeper than the copy goes;
//! - files the client cannot read, a file where the image (or an earlier layer) has a directory;
//! - what the copy refuses into an overlay (a whiteout, overlayfs's own extended attributes), by
//!   the copy's own rules;
//! - a layer's `etc/stateless.conf`: the boot reads the image's, never a layer's;
//! - ownership surprises (an owner or group no passwd/group file of the image or its layers
//!   names: the build machine's uid 1000), setuid/setgid files and file capabilities, entries
//!   anyone may write;
//! - symlinks in a layer that climb above `/`, or point into the layer tree itself.
//!
//! Then, for every host it knows (the `hosts/` layers and `--host`), what it would receive:
//! the layers in order and which layer supplies each file. Exit 1 when there is an error.
//! Each host is worked out, written out and dropped in turn: memory holds the tree and one
//! host, whatever the number of hosts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use serde::{Serialize, Serializer};

use super::{emit, emit_with, target_and_options, Args};
use crate::boot::{CONFIG, CONFIG_LIMIT};
use crate::fs::layers::{self, LayerKind};
use crate::fs::manifest;
use crate::fs::root::ImageRoot;
use crate::fs::tree::{self, Entry, Kind, TreeOp};
use crate::model::hostname::{self, Hostname, Source};
use crate::model::image::ImageFormat;
use crate::model::ipv4::{usable_unicast, Ipv4Net};
use crate::model::options::OverlayMode;
use crate::model::sign::TrustedKey;
use crate::model::text::{escape, escape_path};
use crate::model::writable::DirName;

mod entries;
mod image;

use entries::*;
use image::ImageToCheck;

pub const USAGE: &str = "\
usage: stateless check ROOT [--cmdline TEXT | --cmdline-file FILE] [--host NAME[,ADDR[/PREFIX]]]...
                       [--trust PUBKEY]... [--json]

Checks the layer tree of the image at ROOT (read-only) and shows what each known host would
receive: the hosts/ layers, and every --host (a name, an address, or both: lab3-12,10.0.2.15/24).
An address without a prefix takes it from the networks/ layers it falls in. --cmdline gives the
command line the clients boot with (stateless.dirs=, stateless.layers=). Exit 1 on an error.

ROOT may be an image file (squashfs or EROFS, such as publish's current): as root, it is
mounted read-only for the check alone, and its layer tree is the diskless/ dir beside it
(stateless.layers= names one in the image instead).

--trust PUBKEY (as stateless initramfs --trust reads it; repeatable) checks every layer against
its signed manifest (stateless layers sign), as a client that trusts these keys does: a layer
without a manifest they signed, and every entry that differs from it, is an error.
";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Severity {
    Error,
    Warning,
}

/// One problem: where (a path below the layer root, or an option) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Finding {
    severity: Severity,
    at: String,
    problem: String,
}

/// What a layer dir is keyed on: which clients it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Base,
    Broadcast(Ipv4Addr),
    Network(Ipv4Net),
    Lab(String),
    Host(String),
    Ip(Ipv4Addr),
}

/// A layer dir found in the tree, and what it holds.
struct LayerDir {
    /// Below the layer root: `hosts/lab3-12`.
    name: String,
    key: Option<Key>,
    /// The dir it is (a symlinked layer is the same dir as its target).
    id: (u64, u64),
    /// Whether the name is a symlink to another layer dir: its findings are named by its target.
    link: bool,
    /// Shared with the layers that are symlinks to it.
    files: Rc<Written>,
}

/// What a layer writes, as the copy would: each entry's path (`/etc/fstab`, escaped: as shown)
/// and kind, in copy order; the dirs among them, for the layers after it.
#[derive(Default)]
struct Written {
    entries: Vec<(String, Kind)>,
    dirs: HashSet<String>,
}

/// The layer tree as the boot would apply it.
struct Tree {
    dirs: Vec<LayerDir>,
    /// The layer dirs a client can match, by name.
    by_name: HashMap<String, usize>,
}

impl Tree {
    fn layer(&self, name: &str) -> Option<&LayerDir> {
        self.by_name.get(name).and_then(|&i| self.dirs.get(i))
    }
}

/// A host the check knows, and what it would receive.
#[derive(Serialize)]
struct Host<'t> {
    name: Option<String>,
    address: Option<Ipv4Addr>,
    /// Given, or from the `networks/` layers the address falls in; without one, no `networks/`
    /// layer is looked for.
    prefix: Option<u8>,
    /// The layers found for it, in order, with the entries each writes.
    layers: Vec<(String, usize)>,
    files: Files<'t>,
}

/// Every path a host receives (`/etc/fstab`) and the layer that supplies it: the last one wins.
/// Held as `base`'s entries (shared by every host) and what the layers after it change: a
/// host's own memory is only what is its own; the whole map is made only to be written out.
struct Files<'t> {
    base: Option<(&'t str, &'t Written)>,
    /// What the later layers write: the layer, or none where a dir took the place of a file.
    later: BTreeMap<&'t str, Option<&'t str>>,
}

impl Serialize for Files<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut all: BTreeMap<&str, &str> = BTreeMap::new();
        if let Some((name, base)) = self.base {
            all.extend(
                base.entries.iter().filter(|(_, kind)| *kind != Kind::Dir).map(|(path, _)| (path.as_str(), name)),
            );
        }
        for (path, layer) in &self.later {
            match layer {
                Some(layer) => all.insert(path, layer),
                None => all.remove(path),
            };
        }
        all.serialize(serializer)
    }
}

#[derive(Serialize)]
struct Check<'t> {
    image: String,
    /// An image file's format, and where its name led when elsewhere (a symlink).
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<ShownFile>,
    layer_root: String,
    dirs: Vec<String>,
    findings: Vec<Finding>,
    hosts: Hosts<'t>,
}

/// An image file, as shown.
#[derive(Serialize)]
struct ShownFile {
    format: ImageFormat,
    target: Option<String>,
}

/// The known hosts, each worked out as it is written out.
struct Hosts<'t> {
    tree: &'t Tree,
    known: Vec<Given>,
}

impl Hosts<'_> {
    /// Each host's files, in turn; what it finds was found before ([`Hosts::findings`]).
    fn each(&self) -> impl Iterator<Item = Host<'_>> {
        self.known.iter().map(|given| receive(self.tree, given, &mut Findings(&mut Vec::new())))
    }

    /// What working the hosts out finds (a file over an earlier layer's directory).
    fn findings(&self, found: &mut Findings<'_>) {
        for given in &self.known {
            receive(self.tree, given, found);
        }
    }
}

impl Serialize for Hosts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.each())
    }
}

/// A host given with `--host`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Given {
    name: Option<String>,
    addr: Option<Ipv4Addr>,
    prefix: Option<u8>,
}

fn parse_host(text: &str) -> Result<Given, String> {
    let mut given = Given::default();
    for part in text.split(',') {
        let (addr, prefix) = part.split_once('/').map_or((part, None), |(a, p)| (a, Some(p)));
        if let Ok(addr) = addr.parse::<Ipv4Addr>() {
            given.addr = Some(addr);
            given.prefix = prefix
                .map(|p| p.parse().ok().filter(|p| *p <= 32).ok_or(format!("bad prefix {}", super::quote(p))))
                .transpose()?;
        } else {
            let name = hostname::validate(part).map_err(|e| format!("host name {}: {e}", super::quote(part)))?;
            given.name = name.split('.').next().map(str::to_owned);
        }
    }
    Ok(given)
}

pub(super) fn command(mut args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let mut base = Args::default();
    let (mut given, mut keys) = (Vec::new(), Vec::new());
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or("") {
            "--help" | "-h" => return emit(USAGE).map(|()| 0),
            "--host" => given.push(parse_host(&super::value(&mut args, "--host")?)?),
            "--json" => base.json = true,
            "--trust" => {
                let path = PathBuf::from(args.next().ok_or("--trust needs a value")?);
                let key = crate::model::sign::public_key(&super::read_key_file(&path)?);
                keys.push(key.map_err(|e| format!("{}: {e}", escape_path(&path)))?);
            }
            flag @ ("--cmdline" | "--cmdline-file") => base.cmdline = super::cmdline_arg(flag, &mut args)?,
            other if !other.starts_with('-') && base.root.is_none() => base.root = Some(PathBuf::from(&arg)),
            _ => return Err(format!("unknown argument {}\n{USAGE}", super::quote(arg))),
        }
    }
    let Some(root) = &base.root else {
        return Err(format!("the image root is missing\n{USAGE}"));
    };
    let file = ImageToCheck::at(root)?;
    let mounted = match file.as_ref().map(ImageToCheck::mount).transpose() {
        Ok(mounted) => mounted,
        Err(e) => {
            // An image that cannot be mounted is an error the check found, not a usage one.
            eprintln!("stateless: {e}");
            return Ok(1);
        }
    };
    let dir;
    let (target, (options, diagnostics)) = match &mounted {
        Some(mounted) => (&mounted.root, ImageToCheck::options(&base.cmdline, &mounted.root)),
        None => {
            let (root, options, diagnostics) = target_and_options(&base)?;
            dir = root;
            (&dir, (options, diagnostics))
        }
    };
    let (layer_root, shown_root) = file
        .as_ref()
        .and_then(|f| f.layers_beside(&options))
        .unwrap_or_else(|| (layers::open_root(target.fd(), &options.layers), escape(options.layers.as_bytes())));
    // Everything shown from the configuration escaped, as everything from the tree is.
    let mut findings: Vec<Finding> = diagnostics
        .iter()
        .map(|d| Finding { severity: Severity::Warning, at: d.key.clone(), problem: d.to_string() })
        .collect();
    let mut found = Findings(&mut findings);
    let tree = run(target, layer_root, &shown_root, &options, &keys, &mut found);
    let hosts = Hosts { known: hosts(&tree.dirs, &given), tree: &tree };
    hosts.findings(&mut found);
    findings.sort_by(|a, b| (a.severity, &a.at).cmp(&(b.severity, &b.at)));
    let check = Check {
        image: escape_path(file.as_ref().map_or(target.path(), |f| &f.named)),
        file: file.as_ref().map(|f| ShownFile { format: f.format, target: f.target.as_deref().map(escape_path) }),
        layer_root: shown_root,
        dirs: options.dirs.iter().map(DirName::to_string).collect(),
        findings,
        hosts,
    };
    if base.json {
        emit_with(|out| {
            crate::model::text::write_json(&mut *out, &check)?;
            out.write_all(b"\n")
        })?;
    } else {
        emit_with(|out| render(&check, out))?;
    }
    Ok(i32::from(check.findings.iter().any(|f| f.severity == Severity::Error)))
}

/// Checks the layer tree at `layer_root` (in `target`, or beside it: opened, and as shown) of
/// `target`: what each layer dir writes, and its findings.
fn run(
    target: &ImageRoot,
    layer_root: Result<Option<OwnedFd>, String>,
    shown_root: &str,
    options: &crate::model::options::Options,
    keys: &[TrustedKey],
    found: &mut Findings<'_>,
) -> Tree {
    let mut tree = Tree { dirs: Vec::new(), by_name: HashMap::new() };
    let layer_root = match layer_root {
        Ok(Some(fd)) => fd,
        Ok(None) => {
            found.error(shown_root, "no layer root here: the clients get no layers");
            return tree;
        }
        Err(e) => {
            found.error(shown_root, &format!("{e}: the clients get no layers"));
            return tree;
        }
    };
    // The layer tree in a writable dir: every client gets all of it (every host's files) in
    // that dir, and may change its copy there.
    let relative = crate::fs::root::relative(&options.layers);
    for dir in options.dirs.iter().filter(|d| relative.starts_with(d) || d.as_path().starts_with(&relative)) {
        let problem = format!(
            "the layer root and the writable dir /{dir} overlap: every client gets the whole layer tree (every host's files) in it, writable"
        );
        found.warning(shown_root, &problem);
    }
    let mut dirs = discover(layer_root.as_fd(), found);
    let ids = Ids::read(target, &dirs, layer_root.as_fd());
    let image = Image {
        root: target,
        layer_root: Path::new(&options.layers),
        dirs: &options.dirs,
        upper: options.mode == OverlayMode::Overlay,
        config: target.read_file(CONFIG, CONFIG_LIMIT).ok().flatten(),
        ids,
    };
    let mut walked: HashMap<(u64, u64), Rc<Written>> = HashMap::new();
    // The real dirs first: a symlinked layer gets its target's entries, whose findings are listed once.
    dirs.sort_by_key(|d| d.link);
    for dir in &mut dirs {
        if let Some(files) = walked.get(&dir.id) {
            dir.files = Rc::clone(files);
            continue;
        }
        if let Ok(Some(fd)) = layers::open_layer(layer_root.as_fd(), &dir.name) {
            dir.files = Rc::new(image.walk_layer(&dir.name, fd.as_fd(), found));
            walked.insert(dir.id, Rc::clone(&dir.files));
        }
    }
    if !keys.is_empty() {
        signed_manifests(layer_root.as_fd(), &dirs, keys, found);
    }
    for (i, dir) in dirs.iter().enumerate() {
        if dir.key.is_some() {
            tree.by_name.entry(dir.name.clone()).or_insert(i);
        }
    }
    tree.dirs = dirs;
    tree
}

/// Every layer dir a client can match against its signed manifest, as a client that trusts
/// `keys` checks it: a finding for a layer without a valid one, and for each entry that differs.
fn signed_manifests(layer_root: BorrowedFd<'_>, dirs: &[LayerDir], keys: &[TrustedKey], found: &mut Findings<'_>) {
    for dir in dirs.iter().filter(|d| d.key.is_some()) {
        let signed = match manifest::signed(layer_root, &dir.name, keys) {
            Ok((signed, _)) => signed,
            Err(e) => {
                found.error(&dir.name, &format!("{e}: refused by a client that trusts these keys"));
                continue;
            }
        };
        let Ok(Some(fd)) = layers::open_layer(layer_root, &dir.name) else { continue };
        match manifest::of_layer(fd.as_fd(), &dir.name) {
            Ok(now) => {
                for (path, why) in signed.differences(&now) {
                    found.error(&format!("{}/{}", dir.name, escape(&path)), &why);
                }
            }
            Err(errors) => errors.iter().for_each(|e| found.error(&dir.name, &format!("cannot be compared: {e}"))),
        }
    }
}

/// The list findings are added to.
struct Findings<'a>(&'a mut Vec<Finding>);

impl Findings<'_> {
    fn push(&mut self, severity: Severity, at: &str, problem: &str) {
        self.0.push(Finding { severity, at: at.to_owned(), problem: problem.to_owned() });
    }
    fn error(&mut self, at: &str, problem: &str) {
        self.push(Severity::Error, at, problem);
    }
    fn warning(&mut self, at: &str, problem: &str) {
        self.push(Severity::Warning, at, problem);
    }
}

/// The names in `dir`, sorted; `.` and `..` left out.
fn names(dir: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    let mut names: Vec<OsString> = rustix::fs::Dir::read_from(dir)?
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

/// The layer dirs under the layer root: `base`, and every entry of `networks/`, `labs/` and
/// `hosts/`, each with the key it matches on (none when no client can match it).
fn discover(layer_root: BorrowedFd<'_>, found: &mut Findings<'_>) -> Vec<LayerDir> {
    let top = match names(layer_root) {
        Ok(top) => top,
        Err(e) => {
            found.error(".", &format!("cannot list the layer root: {e}"));
            return Vec::new();
        }
    };
    let mut dirs = Vec::new();
    for name in top.into_iter().filter(|n| !manifest::is_sidecar(n)) {
        let shown = escape_path(Path::new(&name));
        let category = match name.to_str() {
            Some("base") => {
                dirs.extend(layer_dir(layer_root, "base".into(), Ok(Key::Base), found));
                continue;
            }
            Some(category @ ("networks" | "labs" | "hosts")) => category,
            _ => {
                found.warning(&shown, "not a layer: only base, networks, labs and hosts are looked at");
                continue;
            }
        };
        let listed = tree::open_beneath(layer_root, Path::new(category), OFlags::DIRECTORY | OFlags::RDONLY)
            .and_then(|fd| names(fd.as_fd()));
        match listed {
            Ok(entries) => {
                for entry in entries.into_iter().filter(|n| !manifest::is_sidecar(n)) {
                    let layer = format!("{category}/{}", escape_path(Path::new(&entry)));
                    let key =
                        entry.to_str().ok_or_else(|| "the name is not UTF-8".to_owned()).and_then(|n| key(category, n));
                    dirs.extend(layer_dir(layer_root, layer, key, found));
                }
            }
            Err(e) => found.error(category, &format!("cannot be listed ({e}): none of its layers is applied")),
        }
    }
    dirs
}

/// One layer dir, when it can be opened; a finding when it cannot or its name never matches.
fn layer_dir(
    layer_root: BorrowedFd<'_>,
    name: String,
    key: Result<Key, String>,
    found: &mut Findings<'_>,
) -> Option<LayerDir> {
    // Named before anything else: a name that needs escaping (`\xNN`) is not opened by it.
    let key = key.map_err(|why| found.error(&name, &format!("never matches a client: {why}"))).ok();
    let fd = match layers::open_layer(layer_root, &name) {
        Ok(Some(fd)) => fd,
        Ok(None) => return None, // a dangling symlink (or the escaped name): missing, as at boot
        Err(e) => {
            found.error(&name, &format!("{}: never applied", e.strip_prefix(&format!("{name}: ")).unwrap_or(&e)));
            return None;
        }
    };
    let stat = rustix::fs::fstat(&fd).ok()?;
    let link = rustix::fs::statat(layer_root, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| Kind::of_mode(st.st_mode) == Some(Kind::Symlink));
    Some(LayerDir { name, key, id: (stat.st_dev, stat.st_ino), link, files: Rc::default() })
}

/// What a layer dir named `name` in `category` matches, or why it never matches.
fn key(category: &str, name: &str) -> Result<Key, String> {
    match category {
        "networks" => network_key(name),
        "labs" => {
            let label = valid_label(name)?;
            match label.split_once('-') {
                Some((lab, _)) => Err(format!("a lab is the part of a host name before its first '-': labs/{lab}")),
                None => Ok(Key::Lab(label)),
            }
        }
        _ => match name.parse::<Ipv4Addr>() {
            Ok(addr) if usable_unicast(addr) => Ok(Key::Ip(addr)),
            Ok(addr) => Err(format!("{addr} is no address a client is given")),
            Err(_) => valid_label(name).map(Key::Host),
        },
    }
}

/// `name` as a host name's first label, or why it cannot be one.
fn valid_label(name: &str) -> Result<String, String> {
    let valid = hostname::validate(name).map_err(|e| format!("not a host name ({e})"))?;
    match valid.split_once('.') {
        Some((short, _)) => {
            Err(format!("layers are named by the short host name, the part before the first '.': {short}"))
        }
        None if valid.len() >= hostname::UTS_LEN => {
            Err(format!("longer than the {} bytes of a host name", hostname::UTS_LEN - 1))
        }
        None => Ok(valid),
    }
}

/// `networks/<broadcast>` or `networks/<network>_<prefix>`.
fn network_key(name: &str) -> Result<Key, String> {
    if let Ok(addr) = name.parse::<Ipv4Addr>() {
        return Ok(Key::Broadcast(addr));
    }
    let form = "neither a broadcast address (10.0.2.255) nor a network and prefix (10.0.2.0_24)";
    let (net, prefix) = name.split_once('_').ok_or(form)?;
    let (Ok(addr), Ok(prefix)) = (net.parse::<Ipv4Addr>(), prefix.parse::<u8>()) else {
        return Err(form.into());
    };
    let net = Ipv4Net::new(addr, prefix).ok_or(format!("a prefix of {prefix} bits is more than 32"))?;
    if net.network() != addr {
        return Err(format!("{addr} is not the network address of a /{prefix}: {}_{prefix} is", net.network()));
    }
    Ok(Key::Network(net))
}

/// The known hosts: every `hosts/` name and address layer (an address layer that is a symlink to
/// a name layer is that host's), and every `--host`. An address without a prefix takes the
/// longest one of the `networks/` layers it falls in. Hosts are looked up by name and address
/// (not compared with each other): 20,000 host dirs take no longer than their listing.
fn hosts(dirs: &[LayerDir], given: &[Given]) -> Vec<Given> {
    let mut known = Known::default();
    for host in given {
        known.add(host.clone());
    }
    // The name layer each dir is (the first, as listed), for the address layers linked to one.
    let mut names_of: HashMap<(u64, u64), &String> = HashMap::new();
    for dir in dirs {
        if let Some(Key::Host(name)) = &dir.key {
            names_of.entry(dir.id).or_insert(name);
        }
    }
    for dir in dirs {
        let (name, addr) = match &dir.key {
            Some(Key::Host(name)) => (Some(name.clone()), None),
            Some(Key::Ip(addr)) => (names_of.get(&dir.id).map(|name| (*name).clone()), Some(*addr)),
            _ => continue,
        };
        known.merge(Given { name, addr, prefix: None });
    }
    let networks = Networks::of(dirs);
    let mut known = known.hosts;
    for host in &mut known {
        host.prefix = host.prefix.or_else(|| host.addr.and_then(|addr| networks.longest_prefix(addr)));
    }
    known
}

/// The hosts known so far, indexed by name and address.
#[derive(Default)]
struct Known {
    hosts: Vec<Given>,
    by_name: HashMap<String, Vec<usize>>,
    by_addr: HashMap<Ipv4Addr, Vec<usize>>,
}

impl Known {
    fn add(&mut self, host: Given) {
        self.index(self.hosts.len(), host.name.as_ref(), host.addr);
        self.hosts.push(host);
    }

    fn index(&mut self, i: usize, name: Option<&String>, addr: Option<Ipv4Addr>) {
        if let Some(name) = name {
            self.by_name.entry(name.clone()).or_default().push(i);
        }
        if let Some(addr) = addr {
            self.by_addr.entry(addr).or_default().push(i);
        }
    }

    /// Adds `host`, or what it adds to the same host known already: the same name and address,
    /// or one of them the same and the other unknown (the first such).
    fn merge(&mut self, host: Given) {
        fn agree<T: PartialEq>(a: Option<&T>, b: Option<&T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        let same_name = host.name.as_ref().and_then(|n| self.by_name.get(n)).into_iter().flatten();
        let same_addr = host.addr.and_then(|a| self.by_addr.get(&a)).into_iter().flatten();
        let same = same_name.chain(same_addr).copied().filter(|&i| {
            self.hosts.get(i).is_some_and(|k| {
                agree(k.name.as_ref(), host.name.as_ref()) && agree(k.addr.as_ref(), host.addr.as_ref())
            })
        });
        let Some((i, known)) = same.min().and_then(|i| Some((i, self.hosts.get_mut(i)?))) else {
            return self.add(host);
        };
        let name = host.name.filter(|_| known.name.is_none());
        let addr = host.addr.filter(|_| known.addr.is_none());
        known.name = known.name.take().or(name.clone());
        known.addr = known.addr.or(addr);
        self.index(i, name.as_ref(), addr);
    }
}

/// The `networks/` layers: by network and prefix, and by broadcast address.
struct Networks {
    nets: HashSet<(Ipv4Addr, u8)>,
    broadcasts: HashSet<Ipv4Addr>,
}

impl Networks {
    fn of(dirs: &[LayerDir]) -> Networks {
        let mut networks = Networks { nets: HashSet::new(), broadcasts: HashSet::new() };
        for dir in dirs {
            match dir.key {
                Some(Key::Network(net)) => {
                    networks.nets.insert((net.addr, net.prefix));
                }
                Some(Key::Broadcast(b)) => {
                    networks.broadcasts.insert(b);
                }
                _ => {}
            }
        }
        networks
    }

    /// The longest prefix of a `networks/` layer that `addr` falls in.
    fn longest_prefix(&self, addr: Ipv4Addr) -> Option<u8> {
        (0..=32u8).rev().find(|&prefix| {
            let net = Ipv4Net { addr, prefix };
            self.nets.contains(&(net.network(), prefix)) || (prefix < 32 && self.broadcasts.contains(&net.broadcast()))
        })
    }
}

/// What a host would receive: the layers the boot would apply, in order, merged; a finding for
/// each file a layer has where an earlier one has a directory (not copied). `base`'s entries
/// are not gone through: they are the same for every host.
fn receive<'t>(tree: &'t Tree, given: &Given, found: &mut Findings<'_>) -> Host<'t> {
    let hostname = given.name.clone().map(|short| Hostname { short, domain: None, source: Source::Kernel });
    let net = given.addr.map(|addr| Ipv4Net { addr, prefix: given.prefix.unwrap_or(32) });
    let mut host = Host {
        name: given.name.clone(),
        address: given.addr,
        prefix: given.prefix,
        layers: Vec::new(),
        files: Files { base: None, later: BTreeMap::new() },
    };
    let mut applied: Vec<&LayerDir> = Vec::new();
    for (kind, layer) in layers::candidates(hostname.as_ref(), net) {
        let Some(dir) = tree.layer(&layer) else {
            continue;
        };
        if kind == LayerKind::Network && given.prefix.is_none() {
            continue;
        }
        host.layers.push((layer.clone(), dir.files.entries.len()));
        if kind == LayerKind::Base {
            host.files.base = Some((&dir.name, &dir.files));
            applied.push(dir);
            continue;
        }
        for (path, kind) in &dir.files.entries {
            if *kind != Kind::Dir {
                // Named by the last earlier layer that has a directory there.
                if let Some(earlier) = applied.iter().rev().find(|d| d.files.dirs.contains(path)) {
                    let problem =
                        format!("{} has a directory there: not copied for {}", earlier.name, shown_host(&host));
                    found.error(&format!("{layer}{path}"), &problem);
                    continue;
                }
            }
            host.files.later.insert(path, (*kind != Kind::Dir).then_some(dir.name.as_str()));
        }
        applied.push(dir);
    }
    host
}

/// `lab3-12 10.0.2.15/24`, as far as known.
fn shown_host(host: &Host<'_>) -> String {
    let address = host.address.map(|a| match host.prefix {
        Some(prefix) => format!("{a}/{prefix}"),
        None => format!("{a} (prefix unknown: no networks/ layer)"),
    });
    [host.name.clone(), address].into_iter().flatten().collect::<Vec<_>>().join(" ")
}

/// The readable list: errors, warnings, then what each host receives beyond `base`, each host
/// written out as it is worked out.
fn render(check: &Check<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    let file = check.file.as_ref().map(|file| match &file.target {
        Some(target) => format!(" ({} image, at {target})", file.format.fstype()),
        None => format!(" ({} image)", file.format.fstype()),
    });
    writeln!(
        out,
        "stateless check {}{}: layer root {}, writable dirs {}",
        check.image,
        file.unwrap_or_default(),
        check.layer_root,
        check.dirs.join(", ")
    )?;
    for (severity, title) in [(Severity::Error, "errors"), (Severity::Warning, "warnings")] {
        let mut list = check.findings.iter().filter(|f| f.severity == severity).peekable();
        if list.peek().is_some() {
            writeln!(out, "{title}:")?;
            for finding in list {
                writeln!(out, "  {}: {}", finding.at, finding.problem)?;
            }
        }
    }
    writeln!(out, "hosts:")?;
    if check.hosts.known.is_empty() {
        writeln!(out, "  none known (no hosts/ layers, no --host)")?;
    }
    for host in check.hosts.each() {
        let layers: Vec<String> = host.layers.iter().map(|(name, n)| format!("{name} ({n})")).collect();
        let layers = if layers.is_empty() { "no layers".into() } else { layers.join(", ") };
        writeln!(out, "  {}: {layers}", shown_host(&host))?;
        for (path, layer) in host.files.later.iter().filter_map(|(path, layer)| Some((path, (*layer)?))) {
            writeln!(out, "    {path}  from {layer}")?;
        }
    }
    let count = |s: Severity, word: &str| match check.findings.iter().filter(|f| f.severity == s).count() {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    };
    writeln!(out, "{}, {}", count(Severity::Error, "error"), count(Severity::Warning, "warning"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_that_match_and_why_others_never_do() {
        let net = |s: &str| Key::Network(s.parse().unwrap());
        assert_eq!(key("networks", "10.0.2.255"), Ok(Key::Broadcast(Ipv4Addr::new(10, 0, 2, 255))));
        assert_eq!(key("networks", "10.0.2.0_24"), Ok(net("10.0.2.0/24")));
        assert_eq!(key("networks", "0.0.0.0_0"), Ok(net("0.0.0.0/0")));
        assert!(key("networks", "10.0.2.1_24").unwrap_err().ends_with("10.0.2.0_24 is"));
        assert!(key("networks", "10.0.2.0_33").unwrap_err().contains("more than 32"));
        for never in ["10.0.2.0-24", "10.0.2.0_", "_24", "lab", "10.0.2.0/24", "10.0.2.0_024x"] {
            assert!(key("networks", never).unwrap_err().starts_with("neither"), "{never}");
        }
        assert_eq!(key("labs", "lab3"), Ok(Key::Lab("lab3".into())));
        assert!(key("labs", "lab3-x").unwrap_err().ends_with("labs/lab3"));
        assert!(key("labs", "a_b").unwrap_err().starts_with("not a host name"));
        assert_eq!(key("hosts", "lab3-12"), Ok(Key::Host("lab3-12".into())));
        assert_eq!(key("hosts", "10.0.2.15"), Ok(Key::Ip(Ipv4Addr::new(10, 0, 2, 15))));
        assert!(key("hosts", "lab3-12.example.edu").unwrap_err().ends_with(": lab3-12"));
        assert!(key("hosts", "255.255.255.255").unwrap_err().contains("no address a client is given"));
        assert!(key("hosts", &"a".repeat(64)).is_err(), "sethostname takes 63 bytes");
        assert!(key("hosts", "..").is_err() && key("hosts", "-a").is_err());
    }

    #[test]
    fn symlinks_that_climb_above_the_root_or_lead_into_the_layer_tree() {
        let dir = std::env::temp_dir().join(format!("stateless-check-links-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = ImageRoot::open(&dir).unwrap();
        let image = Image {
            root: &root,
            layer_root: Path::new("/diskless"),
            dirs: &[],
            upper: true,
            config: None,
            ids: Ids::default(),
        };
        let problem = |target: &str| image.symlink_problem(Path::new("etc/link"), Path::new(target));
        assert_eq!(
            problem("/diskless/base/etc/motd").as_deref(),
            Some("points into the layer tree (/diskless/base/etc/motd)")
        );
        assert_eq!(problem("../diskless/base/x").as_deref(), Some("points into the layer tree (../diskless/base/x)"));
        assert_eq!(problem("../../x").as_deref(), Some("climbs above / (../../x)"));
        for fine in ["/etc/shadow", "../usr/share/zoneinfo/UTC", "motd", "/diskless-old/x", "/../diskless-x"] {
            assert_eq!(problem(fine), None, "{fine}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hosts_given_on_the_command_line() {
        let given = |name: Option<&str>, addr: Option<[u8; 4]>, prefix| Given {
            name: name.map(str::to_owned),
            addr: addr.map(Ipv4Addr::from),
            prefix,
        };
        assert_eq!(parse_host("lab3-12"), Ok(given(Some("lab3-12"), None, None)));
        assert_eq!(
            parse_host("lab3-12.x.org,10.0.2.15/24"),
            Ok(given(Some("lab3-12"), Some([10, 0, 2, 15]), Some(24)))
        );
        assert_eq!(parse_host("10.0.2.15"), Ok(given(None, Some([10, 0, 2, 15]), None)));
        for bad in ["a_b", "10.0.2.15/33", "10.0.2.15/x", "", "a,"] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_address_takes_the_longest_prefix_of_its_network_layers() {
        let dir = |name: &str, key| LayerDir {
            name: name.into(),
            key: Some(key),
            id: (0, 0),
            link: false,
            files: Rc::default(),
        };
        let dirs = [
            dir("networks/10.0.0.0_8", Key::Network("10.0.0.0/8".parse().unwrap())),
            dir("networks/10.0.2.255", Key::Broadcast(Ipv4Addr::new(10, 0, 2, 255))),
            dir("networks/10.0.3.0_24", Key::Network("10.0.3.0/24".parse().unwrap())),
        ];
        let networks = Networks::of(&dirs);
        assert_eq!(networks.longest_prefix(Ipv4Addr::new(10, 0, 2, 15)), Some(24));
        assert_eq!(networks.longest_prefix(Ipv4Addr::new(10, 0, 3, 1)), Some(24));
        assert_eq!(networks.longest_prefix(Ipv4Addr::new(10, 9, 0, 1)), Some(8));
        assert_eq!(networks.longest_prefix(Ipv4Addr::new(192, 0, 2, 1)), None);
    }
}
