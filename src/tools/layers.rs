//! `stateless layers sign ROOT --key KEY`: a signed manifest beside every layer dir of a
//! layer tree ([`crate::model::manifest`]), which a client that trusts the key checks each
//! layer against as it copies it.

use std::collections::btree_map::{BTreeMap, Entry};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::image::{absent_in, secret_key, write_signed_in};
use super::quote;
use crate::fs::layers;
use crate::fs::manifest::{self, SIGNATURE_SUFFIX, SUFFIX};
use crate::model::manifest::{layer_name_ok, Manifest};
use crate::model::sign;
use crate::model::text::escape_path;

pub const USAGE: &str = "\
usage: stateless layers sign ROOT --key KEY [--force] [LAYER]...

Writes beside every layer dir under the layer root ROOT (base, networks/*, labs/*, hosts/*; or
only the LAYERs named, such as hosts/lab3-12) its manifest, LAYER.manifest (every entry: path,
type, mode, owner, size and SHA-256 of a file, target of a symlink), and its ed25519 signature
by KEY, LAYER.manifest.sig, in signify's format. KEY as image sign reads it. stateless check
holds the layers to their manifests when it trusts the key. A manifest's SHA-256 is its layer's
identity: the same identity, the same files. Existing manifests are kept: --force replaces them.
Nothing is written when a layer cannot be read in full, or its manifest is one clients refuse
(a path longer than 4096 bytes, more than 16 MiB).
";

/// Why a manifest is not replaced without --force.
const KEPT: &str = "a manifest clients may be checking their layer against is kept";

/// The arguments of `layers sign`.
struct Sign {
    root: PathBuf,
    key: PathBuf,
    force: bool,
    named: Vec<String>,
}

fn parse(args: impl Iterator<Item = OsString>) -> Result<Option<Sign>, String> {
    let (mut root, mut key, mut force, mut named) = (None, None, false, Vec::new());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or_default() {
            "--help" | "-h" => return Ok(None),
            "--key" => key = Some(PathBuf::from(args.next().ok_or("--key needs a value")?)),
            "--force" => force = true,
            flag if flag.starts_with('-') => return Err(format!("unknown argument {}", quote(&arg))),
            _ if root.is_none() => root = Some(PathBuf::from(arg)),
            name => match name.trim_end_matches('/') {
                layer if layer_name_ok(layer) && a_layer(layer) => named.push(layer.to_owned()),
                _ => return Err(format!("{}: not a layer name (base, hosts/lab3-12, ...)", quote(&arg))),
            },
        }
    }
    let root = root.ok_or_else(|| format!("sign needs the layer root\n{USAGE}"))?;
    let key = key.ok_or("sign needs --key KEY")?;
    Ok(Some(Sign { root, key, force, named }))
}

/// Whether `name` names a layer a client applies, as [`discover`] finds them: `base`, or one
/// dir of `networks/`, `labs/` or `hosts/` (never a category, never a dir inside a layer, whose
/// manifest would be written into the layer).
fn a_layer(name: &str) -> bool {
    match name.split_once('/') {
        None => name == "base",
        Some((category, rest)) => ["networks", "labs", "hosts"].contains(&category) && !rest.contains('/'),
    }
}

/// `stateless layers ...`.
pub(super) fn command(mut args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("sign") => match parse(args)? {
            Some(sign) => sign_layers(&sign),
            None => super::emit(USAGE).map(|()| 0),
        },
        Some("--help" | "-h") => super::emit(USAGE).map(|()| 0),
        Some(other) => Err(format!("layers {}: sign is the one subcommand", quote(other))),
        None => Err(format!("layers: sign?\n{USAGE}")),
    }
}

/// The layer dirs under the layer root `root`: `base` and every dir (or symlink to one inside
/// the root) of `networks/`, `labs/` and `hosts/`, manifests left out; names a manifest cannot
/// carry and layers the boot cannot open (a symlink out of the root) are said on standard error
/// and skipped: no client would apply them.
fn discover(root: std::os::fd::BorrowedFd<'_>) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    if layers::open_layer(root, "base")?.is_some() {
        found.push("base".to_owned());
    }
    for category in ["networks", "labs", "hosts"] {
        let Some(dir) = layers::open_layer(root, category)? else { continue };
        let dir = rustix::fs::Dir::read_from(dir.as_fd()).map_err(|e| format!("{category}: {e}"))?;
        for entry in dir {
            let entry = entry.map_err(|e| format!("{category}: {e}"))?;
            let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." || manifest::is_sidecar(name) {
                continue;
            }
            let layer = format!("{category}/{}", escape_path(Path::new(name)));
            match name.to_str().map(|n| format!("{category}/{n}")).filter(|n| layer_name_ok(n)) {
                Some(name) => match layers::open_layer(root, &name) {
                    Ok(Some(_)) => found.push(name),
                    Ok(None) => {}
                    Err(e) => eprintln!("stateless: {e}: never applied, not signed"),
                },
                None => eprintln!("stateless: {layer}: a name no client looks for: not signed"),
            }
        }
    }
    found.sort();
    Ok(found)
}

fn sign_layers(args: &Sign) -> Result<i32, String> {
    let shown = escape_path(&args.root);
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let root = rustix::fs::open(&args.root, flags, Mode::empty()).map_err(|e| format!("{shown}: {e}"))?;
    let names = if args.named.is_empty() { discover(root.as_fd())? } else { args.named.clone() };
    if names.is_empty() {
        return Err(format!("{shown}: no layer dirs (base, networks/*, labs/*, hosts/*): nothing signed"));
    }
    let beside = |name: &str, suffix: &str| args.root.join(format!("{name}{suffix}"));
    // The dir each manifest goes in (one fd a category, however many layers), opened beneath
    // the root as a client reads it, once: never again by its path, whose category dir (hosts/)
    // a symlink swapped in meanwhile would lead out of the root.
    let parent_of = |name: &str| name.rsplit_once('/').map_or(".", |(category, _)| category).to_owned();
    let (mut parents, mut files) = (BTreeMap::new(), BTreeMap::new());
    for name in &names {
        let dir = match parents.entry(parent_of(name)) {
            Entry::Occupied(dir) => dir.into_mut(),
            Entry::Vacant(slot) => {
                let opened = layers::open_layer(root.as_fd(), slot.key())?;
                let dir = opened.ok_or_else(|| format!("{}: no such dir", slot.key()))?;
                slot.insert(dir)
            }
        };
        absent_in(dir.as_fd(), &beside(name, SUFFIX), args.force, KEPT)?;
        absent_in(dir.as_fd(), &beside(name, SIGNATURE_SUFFIX), args.force, KEPT)?;
        // Two layers whose manifests are one file (labs/ a symlink to hosts/): each would be
        // written over the other's, and one layer never applied.
        let at = rustix::fs::fstat(&*dir).map_err(|e| format!("{name}: {e}"))?;
        let leaf = name.rsplit('/').next().unwrap_or(name);
        if let Some(other) = files.insert((at.st_dev, at.st_ino, leaf), name) {
            return Err(format!("{other} and {name}: their manifests would be one file: nothing signed"));
        }
    }
    let key = secret_key(&args.key)?;
    // Every layer read in full before anything is written.
    let mut manifests = Vec::new();
    for name in &names {
        let dir = layers::open_layer(root.as_fd(), name)?.ok_or_else(|| format!("{name}: no such layer dir"))?;
        let read = manifest::of_layer(dir.as_fd(), name)
            .map_err(|errors| format!("{name}: cannot be read in full, nothing signed:\n  {}", errors.join("\n  ")))?;
        // What a client would refuse to read (a path longer than PATH_MAX, more than
        // MANIFEST_MAX bytes) is never signed: the layer would be signed and never applied.
        let text = read.text().into_bytes();
        Manifest::parse(&text)
            .map_err(|e| format!("{name}: its manifest would be refused by every client ({e}): nothing signed"))?;
        manifests.push((read, text));
    }
    let mut out = String::new();
    for (manifest, text) in &manifests {
        let dir = parents.get(&parent_of(&manifest.layer)).ok_or("a category dir not opened")?;
        let signature = sign::sign(&key, text);
        let (statement, sig) = (beside(&manifest.layer, SUFFIX), beside(&manifest.layer, SIGNATURE_SUFFIX));
        write_signed_in(dir.as_fd(), [(&statement, text), (&sig, &signature)], args.force)?;
        let count = manifest.entries.len();
        out += &format!("{}: {count} entries, identity {}\n", manifest.layer, Manifest::identity(text));
    }
    let public = key.public();
    out += &format!("signed by key {} (id {})\n", public.fingerprint(), crate::model::text::hex(&public.id));
    super::emit(&out)?;
    Ok(0)
}
