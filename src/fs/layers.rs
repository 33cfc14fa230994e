//! Configuration layers: trees that mirror the root, copied in order, each overriding the one
//! before (all under the layer root, `/diskless` by default):
//!
//! | order | layer | example |
//! |---|---|---|
//! | 1 | `base/` | every client |
//! | 2 | `networks/<broadcast>/`, then `networks/<network>_<prefix>/` | `networks/10.0.2.255/`, `networks/10.0.2.0_24/` |
//! | 3 | `labs/<hostname up to the first '-'>/` | `labs/lab3/` for `lab3-12` |
//! | 4 | `hosts/<short hostname>/` | `hosts/lab3-12/` |
//! | 5 | `hosts/<IP address>/` | `hosts/10.0.2.15/` |
//!
//! A layer may be a symlink to another dir inside the layer root (`hosts/10.0.2.15 -> lab3-12`);
//! one pointing out of it is refused. Only entries inside the writable dirs (`stateless.dirs`)
//! are copied: anything else would land on the read-only shared root and is refused.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use serde::Serialize;

use crate::fs::tree::{self, Entry, Kind, Verdict};
use crate::model::hostname::Hostname;
use crate::model::ipv4::Ipv4Net;
pub use crate::model::layer::{Layer, LayerKind};
use crate::model::sign::TrustedKey;
use crate::model::writable::DirName;

/// The layers to look for, in order, given what is known about the client.
pub fn candidates(hostname: Option<&Hostname>, address: Option<Ipv4Net>) -> Vec<(LayerKind, String)> {
    let mut layers = vec![(LayerKind::Base, "base".to_string())];
    if let Some(net) = address {
        layers.push((LayerKind::Network, format!("networks/{}", net.broadcast())));
        layers.push((LayerKind::Network, format!("networks/{}_{}", net.network(), net.prefix)));
    }
    if let Some(name) = hostname {
        layers.push((LayerKind::Lab, format!("labs/{}", name.lab())));
        layers.push((LayerKind::Host, format!("hosts/{}", name.short)));
    }
    if let Some(net) = address {
        layers.push((LayerKind::Ip, format!("hosts/{}", net.addr)));
    }
    layers
}

/// Decides for an entry of a layer (path relative to the layer) whether it may be copied:
/// inside a writable dir → copy; the writable dir itself, or a dir above one → enter it without
/// touching it (the overlay root keeps its own owner and mode); anything else → refuse.
pub fn verdict(dirs: &[DirName], path: &Path, kind: Kind) -> Verdict {
    for dir in dirs.iter().map(DirName::as_path) {
        if path.starts_with(dir) && path != dir {
            return Verdict::Copy;
        }
        if dir.starts_with(path) && kind == Kind::Dir {
            return Verdict::Descend;
        }
    }
    Verdict::Refuse
}

/// Opens the layer root inside the image: `None` when it does not exist, an error when it cannot
/// be used (a symlink out of the image, not a directory, ...).
pub fn open_root(root: BorrowedFd<'_>, layers: &str) -> Result<Option<OwnedFd>, String> {
    let relative = crate::fs::root::relative(layers);
    let opened = if relative.as_os_str().is_empty() {
        tree::open_dir_nofollow(root, &relative) // `stateless.layers=/`: the image root itself
    } else {
        tree::open_beneath(root, &relative, OFlags::DIRECTORY | OFlags::CLOEXEC)
    };
    let shown = crate::model::text::escape(layers.as_bytes());
    match opened {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(rustix::io::Errno::XDEV) => Err(format!("layer root {shown}: a symlink leads out of the image")),
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            Err(format!("layer root {shown}: not a directory (or a symlink to none)"))
        }
        Err(e) => Err(format!("layer root {shown}: {e}")),
    }
}

/// Opens one layer dir beneath the layer root: `None` when it does not exist.
pub(crate) fn open_layer(layer_root: BorrowedFd<'_>, name: &str) -> Result<Option<OwnedFd>, String> {
    match tree::open_beneath(layer_root, Path::new(name), OFlags::DIRECTORY | OFlags::CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(rustix::io::Errno::XDEV) => Err(format!("{name}: a symlink points out of the layer root")),
        Err(rustix::io::Errno::NOTDIR) => Err(format!("{name}: not a directory")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// Looks for every candidate layer and lists what each would write (read-only).
pub fn probe(layer_root: Option<BorrowedFd<'_>>, candidates: Vec<(LayerKind, String)>, dirs: &[DirName]) -> Vec<Layer> {
    candidates
        .into_iter()
        .map(|(kind, name)| {
            let mut layer = Layer { kind, name, present: false, files: vec![], refused: vec![], errors: vec![] };
            match layer_root.map(|r| open_layer(r, &layer.name)).transpose().map(Option::flatten) {
                Ok(Some(fd)) => {
                    let walk = tree::walk(fd.as_fd(), &|path, kind| verdict(dirs, path, kind));
                    layer.present = true;
                    layer.files = walk.copy;
                    layer.refused = walk.refused;
                    layer.errors = walk.errors.iter().map(ToString::to_string).collect();
                }
                Ok(None) => {}
                Err(e) => layer.errors.push(e),
            }
            layer
        })
        .collect()
}

/// Why an entry of a layer is not copied.
pub fn refusal(entry: &Entry, dirs: &[DirName]) -> String {
    match entry.kind {
        Kind::Socket => "sockets are not copied".into(),
        _ => {
            let dirs: Vec<String> = dirs.iter().map(DirName::to_string).collect();
            format!("outside the writable dirs ({})", dirs.join(", "))
        }
    }
}

/// What applying one layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Whether the layer dir exists.
    pub present: bool,
    pub written: usize,
    pub refused: usize,
    pub errors: Vec<String>,
    /// With trusted keys: why the layer was not applied at all (no valid signed manifest).
    pub unsigned: Option<String>,
    /// With trusted keys: the layer's identity (its signed manifest's SHA-256).
    pub identity: Option<String>,
    /// With trusted keys: each entry not copied for not being as signed, `path: why`, escaped.
    pub rejected: Vec<String>,
}

/// Copies one layer into `targets` (per writable dir: where it goes, and for an overlay's upper
/// dir the image dir below it), recording in `provenance` which layer wrote each path. With
/// trusted `keys`, only a layer whose manifest beside it they signed
/// ([`crate::fs::manifest::signed`]), and of it only what is as signed
/// ([`tree::copy_checked`]).
pub fn apply(
    layer_root: BorrowedFd<'_>,
    targets: &[tree::Target<'_>],
    (name, keys): (&str, Option<&[TrustedKey]>),
    dirs: &[DirName],
    provenance: &mut Provenance,
) -> Applied {
    let fd = match open_layer(layer_root, name) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Applied::default(),
        Err(e) => return Applied { errors: vec![e], ..Applied::default() },
    };
    let signed = match keys.map(|keys| crate::fs::manifest::signed(layer_root, name, keys)).transpose() {
        Ok(signed) => signed,
        Err(why) => return Applied { present: true, unsigned: Some(why), ..Applied::default() },
    };
    let manifest = signed.as_ref().map(|(manifest, _)| manifest);
    let copied = tree::copy_checked(fd.as_fd(), targets, &|path, kind| verdict(dirs, path, kind), manifest);
    for entry in &copied.written {
        log::debug!("layer {name}: wrote /{}", crate::model::text::escape_path(&entry.path));
    }
    provenance.record_written(targets, &copied.written, name);
    for entry in &copied.refused {
        log::warn!("layer {name}: refused /{}: {}", crate::model::text::escape_path(&entry.path), refusal(entry, dirs));
    }
    let rejected: Vec<String> = copied
        .rejected
        .iter()
        .map(|r| format!("/{}: {}", crate::model::text::escape_path(&r.entry.path), r.why))
        .collect();
    for line in &rejected {
        log::warn!("layer {name}: refused {line}");
    }
    Applied {
        present: true,
        written: copied.written.len(),
        refused: copied.refused.len(),
        errors: copied.errors.iter().map(|e| format!("layer {name}: {e}")).collect(),
        unsigned: None,
        identity: signed.map(|(_, identity)| identity),
        rejected,
    }
}

/// What a writer left at a path, to tell later whether the client changed it since: the size
/// and the inode's change time (which no one can set back) of a non-directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of what `stat` describes; `None` for a dir (its change time moves with its
    /// entries).
    pub fn of(stat: &rustix::fs::Stat) -> Option<Stamp> {
        (Kind::of_mode(stat.st_mode) != Some(Kind::Dir)).then(|| Stamp {
            size: u64::try_from(stat.st_size).unwrap_or(0),
            ctime: (stat.st_ctime, i64::try_from(stat.st_ctime_nsec).unwrap_or(0)),
        })
    }

    /// `<size>:<ctime seconds>.<nanoseconds>`.
    fn render(self) -> String {
        format!("{}:{}.{:09}", self.size, self.ctime.0, self.ctime.1)
    }

    fn parse(text: &str) -> Option<Stamp> {
        let (size, ctime) = text.split_once(':')?;
        let (secs, nsecs) = ctime.split_once('.')?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        (digits(size) && digits(nsecs) && digits(secs.strip_prefix('-').unwrap_or(secs))).then_some(())?;
        Some(Stamp { size: size.parse().ok()?, ctime: (secs.parse().ok()?, nsecs.parse().ok()?) })
    }
}

/// One provenance line: who wrote the path, and what it left there (`None`: a dir, a file
/// of the host files steps, or a line written before stamps were).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub source: String,
    pub stamp: Option<Stamp>,
}

/// Which layer (or other writer) supplied each written path; the last writer wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance(BTreeMap<PathBuf, Written>);

impl Provenance {
    pub fn record(&mut self, path: &Path, source: &str, stamp: Option<Stamp>) {
        self.0.insert(path.to_path_buf(), Written { source: source.to_string(), stamp });
    }

    /// Records what a copy into `targets` wrote for `source`, each non-dir with its stamp as
    /// written.
    pub fn record_written(&mut self, targets: &[tree::Target<'_>], written: &[Entry], source: &str) {
        for entry in written {
            let stamp = targets.iter().find_map(|t| {
                let below = entry.path.strip_prefix(t.path).ok()?;
                Stamp::of(&tree::lstat_beneath(t.dst, below).ok()?)
            });
            self.record(&entry.path, source, stamp);
        }
    }

    pub fn get(&self, path: &Path) -> Option<&Written> {
        self.0.get(path)
    }

    /// Reads back exactly what [`Provenance::render`] wrote (and the two-field lines of before
    /// stamps): `/<path><TAB><source>[<TAB><stamp>]`, each field escaped. Other lines, and
    /// paths with a component other than a plain name (`..`, `.`, an empty one), are skipped:
    /// each is in the second list, escaped, with why.
    pub fn parse(bytes: &[u8]) -> (Provenance, Vec<String>) {
        let (mut read, mut skipped) = (BTreeMap::new(), Vec::new());
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            match Self::line(line) {
                Ok((path, written)) => {
                    read.insert(path, written);
                }
                Err(why) => skipped.push(format!("{}: {why}", crate::model::text::escape(line))),
            }
        }
        (Provenance(read), skipped)
    }

    fn line(line: &[u8]) -> Result<(PathBuf, Written), &'static str> {
        let text = std::str::from_utf8(line).map_err(|_| "not UTF-8")?;
        let mut fields = text.strip_prefix('/').ok_or("not an absolute path")?.split('\t');
        let (Some(path), Some(source)) = (fields.next(), fields.next()) else {
            return Err("no source");
        };
        let stamp = match fields.next() {
            None => None,
            Some(stamp) => Some(Stamp::parse(stamp).ok_or("not a stamp")?),
        };
        if fields.next().is_some() {
            return Err("more than three fields");
        }
        let bytes = crate::model::text::unescape(path);
        if !bytes.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..") {
            return Err("not a plain relative path");
        }
        let source = String::from_utf8(crate::model::text::unescape(source)).map_err(|_| "source not UTF-8")?;
        Ok((PathBuf::from(std::ffi::OsString::from_vec(bytes)), Written { source, stamp }))
    }

    /// The paths and who wrote each.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Written)> {
        self.0.iter().map(|(path, written)| (path.as_path(), written))
    }

    /// Forgets `path` (it was removed).
    pub fn remove(&mut self, path: &Path) {
        self.0.remove(path);
    }

    /// Keeps only the paths `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path, &Written) -> bool) {
        self.0.retain(|path, written| keep(path, written));
    }

    /// One line per path: `/etc/fstab<TAB>hosts/lab3-12<TAB>1234:1733450000.123456789` (the
    /// stamp only where there is one); path and source [`escape`](crate::model::text::escape)d,
    /// so any bytes read back exactly.
    pub fn render(&self) -> String {
        use crate::model::text::{escape, escape_path};
        let line = |(path, w): (&PathBuf, &Written)| {
            let stamp = w.stamp.map(|s| format!("\t{}", s.render())).unwrap_or_default();
            format!("/{}\t{}{stamp}\n", escape_path(path), escape(w.source.as_bytes()))
        };
        self.0.iter().map(line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hostname::Source;
    use std::os::unix::ffi::OsStrExt;

    fn dirs() -> Vec<DirName> {
        vec![DirName::ETC, DirName::from_static("var/log")]
    }

    #[test]
    fn candidates_in_order() {
        let host = Hostname { short: "lab3-12".into(), domain: None, source: Source::Kernel };
        let names: Vec<String> =
            candidates(Some(&host), "10.0.2.15/24".parse().ok()).into_iter().map(|(_, n)| n).collect();
        assert_eq!(
            names,
            ["base", "networks/10.0.2.255", "networks/10.0.2.0_24", "labs/lab3", "hosts/lab3-12", "hosts/10.0.2.15"]
        );
        assert_eq!(candidates(None, None), [(LayerKind::Base, "base".to_string())]);
    }

    #[test]
    fn verdicts_keep_writes_inside_the_writable_dirs() {
        let v = |p: &str, k| verdict(&dirs(), Path::new(p), k);
        assert_eq!(v("etc", Kind::Dir), Verdict::Descend);
        assert_eq!(v("etc", Kind::Symlink), Verdict::Refuse);
        assert_eq!(v("etc/fstab", Kind::File), Verdict::Copy);
        assert_eq!(v("etc/ssh/sshd_config", Kind::File), Verdict::Copy);
        assert_eq!(v("var", Kind::Dir), Verdict::Descend);
        assert_eq!(v("var/log", Kind::Dir), Verdict::Descend);
        assert_eq!(v("var/log/x", Kind::File), Verdict::Copy);
        assert_eq!(v("var/lib", Kind::Dir), Verdict::Refuse);
        assert_eq!(v("usr/bin/evil", Kind::File), Verdict::Refuse);
        assert_eq!(v("etcetera", Kind::File), Verdict::Refuse);
        assert_eq!(v("var", Kind::File), Verdict::Refuse);
    }

    #[test]
    fn layer_root_may_be_the_image_root_but_not_leave_it() {
        let dir = std::env::temp_dir().join(format!("stateless-layer-root-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("srv/diskless")).unwrap();
        std::os::unix::fs::symlink("/", dir.join("escape")).unwrap();
        std::os::unix::fs::symlink("srv/diskless", dir.join("diskless")).unwrap();
        let root = crate::fs::root::ImageRoot::open(&dir).unwrap();
        let root = root.fd();
        assert!(open_root(root, "/").unwrap().is_some());
        assert!(open_root(root, "/diskless").unwrap().is_some(), "a symlink inside the image is fine");
        assert!(open_root(root, "/missing").unwrap().is_none());
        let out = open_root(root, "/escape").unwrap_err();
        assert_eq!(out, "layer root /escape: a symlink leads out of the image", "said, not os error 18");
        let socket = Entry { path: "etc/s".into(), kind: Kind::Socket };
        assert_eq!(refusal(&socket, &dirs()), "sockets are not copied");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn provenance_last_writer_wins_and_escapes() {
        let mut p = Provenance::default();
        let stamp = Stamp { size: 12, ctime: (1_733_450_000, 5) };
        p.record(Path::new("etc/fstab"), "base", None);
        p.record(Path::new("etc/fstab"), "hosts/lab3-12", Some(stamp));
        p.record(Path::new("etc/a\tb\n"), "base", None);
        assert_eq!(
            p.get(Path::new("etc/fstab")),
            Some(&Written { source: "hosts/lab3-12".into(), stamp: Some(stamp) })
        );
        assert_eq!(p.render(), "/etc/a\\x09b\\x0a\tbase\n/etc/fstab\thosts/lab3-12\t12:1733450000.000000005\n");
        assert_eq!(Provenance::parse(p.render().as_bytes()), (p, vec![]), "reads back");
        let (read, skipped) = Provenance::parse(b"etc/x\tbase\n/no-tab\n\n/x\tbase\tjunk\n/\xff\tbase\n");
        assert_eq!(read, Provenance::default());
        assert_eq!(
            skipped,
            [
                "etc/x\\x09base: not an absolute path",
                "/no-tab: no source",
                "/x\\x09base\\x09junk: not a stamp",
                "/\\xff\\x09base: not UTF-8"
            ]
        );
        let odd = b"/etc/../x\tbase\n/etc//x\tbase\n/./x\tbase\n/\tbase\n";
        let (read, skipped) = Provenance::parse(odd);
        assert_eq!((read, skipped.len()), (Provenance::default(), 4), "no path but plain names");
    }

    #[test]
    fn provenance_keeps_any_name_exactly() {
        let mut p = Provenance::default();
        let names: [&[u8]; 5] =
            [b"etc/a\x85b", "etc/a\u{85}b".as_bytes(), "etc/\u{9b}\u{202e}".as_bytes(), b"etc/\\x41", b"etc/\xff\xfe"];
        for name in names {
            p.record(Path::new(std::ffi::OsStr::from_bytes(name)), "base", None);
        }
        let (read, skipped) = Provenance::parse(p.render().as_bytes());
        assert_eq!((read.iter().count(), skipped), (names.len(), vec![]));
        assert_eq!(read, p);
    }

    mod properties {
        use super::*;
        use crate::model::hostname::{choose, Candidate};
        use proptest::prelude::*;
        use std::net::Ipv4Addr;
        use std::path::Component;

        fn net() -> impl Strategy<Value = Ipv4Net> {
            (any::<u32>(), 0..=32u8).prop_map(|(addr, prefix)| Ipv4Net { addr: Ipv4Addr::from(addr), prefix })
        }

        /// Host names as a DHCP server or the command line could give them, good and bad.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof!["[a-zA-Z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,2}", "[a-z0-9./-]{0,30}", any::<String>()]
        }

        /// The hostname the boot would choose from `name` (only a valid one is kept).
        fn hostname(name: &str, addr: Option<Ipv4Net>) -> Option<Hostname> {
            choose(&[Candidate { source: Source::Dhcp, name: name.to_owned() }], "Node", addr, None).hostname
        }

        /// The name of the one layer of `kind`, when there is exactly one.
        fn layer(layers: &[(LayerKind, String)], kind: LayerKind) -> Option<&str> {
            let mut of_kind = layers.iter().filter(|(k, _)| *k == kind);
            of_kind.next().filter(|_| of_kind.next().is_none()).map(|(_, name)| name.as_str())
        }

        proptest! {
            /// Every layer name is one relative path of plain components (`base`, or a dir and
            /// a key: no `..`, no leading `/`, no empty component), the names are distinct and
            /// in the documented order.
            #[test]
            fn layer_names_are_plain_relative_paths(name in name(), addr in proptest::option::of(net())) {
                let host = hostname(&name, addr);
                let layers = candidates(host.as_ref(), addr);
                for (kind, layer) in &layers {
                    let parts: Vec<&str> = layer.split('/').collect();
                    prop_assert!(parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".."), "{:?}", layer);
                    prop_assert!(Path::new(layer).components().all(|c| matches!(c, Component::Normal(_))));
                    prop_assert!(layer.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)), "{:?}", layer);
                    let top = match kind {
                        LayerKind::Base => "base",
                        LayerKind::Network => "networks",
                        LayerKind::Lab => "labs",
                        LayerKind::Host | LayerKind::Ip => "hosts",
                    };
                    prop_assert_eq!(parts.first(), Some(&top));
                    prop_assert_eq!(parts.len(), if *kind == LayerKind::Base { 1 } else { 2 });
                }
                let names: std::collections::BTreeSet<&String> = layers.iter().map(|(_, n)| n).collect();
                prop_assert_eq!(names.len(), layers.len());
                let kinds: Vec<LayerKind> = layers.iter().map(|(k, _)| *k).collect();
                let mut want = vec![LayerKind::Base];
                if addr.is_some() { want.extend([LayerKind::Network, LayerKind::Network]) }
                if host.is_some() { want.extend([LayerKind::Lab, LayerKind::Host]) }
                if addr.is_some() { want.push(LayerKind::Ip) }
                prop_assert_eq!(kinds, want);
            }

            /// Two clients share a layer exactly as documented: `hosts/<IP>` for the same address,
            /// `networks/<broadcast>` and `networks/<network>_<prefix>` for the same broadcast
            /// address and the same subnet, `hosts/<short name>` for the same first label,
            /// `labs/<lab>` for the same part before the first `-`; a name never lands on an
            /// address's layer.
            #[test]
            fn distinct_inputs_map_as_documented(a in net(), b in net(), name_a in name(), name_b in name()) {
                let (host_a, host_b) = (hostname(&name_a, Some(a)), hostname(&name_b, Some(b)));
                let la = candidates(host_a.as_ref(), Some(a));
                let lb = candidates(host_b.as_ref(), Some(b));
                let (Some(ha), Some(hb)) = (host_a, host_b) else {
                    return Err(TestCaseError::fail("the fallback name always passes"));
                };
                prop_assert_eq!(layer(&la, LayerKind::Ip) == layer(&lb, LayerKind::Ip), a.addr == b.addr);
                prop_assert_eq!(layer(&la, LayerKind::Host) == layer(&lb, LayerKind::Host), ha.short == hb.short);
                prop_assert_eq!(layer(&la, LayerKind::Lab) == layer(&lb, LayerKind::Lab), ha.lab() == hb.lab());
                prop_assert_eq!(la.get(1) == lb.get(1), a.broadcast() == b.broadcast());
                prop_assert_eq!(la.get(2) == lb.get(2), (a.network(), a.prefix) == (b.network(), b.prefix));
                prop_assert_ne!(layer(&la, LayerKind::Host), layer(&lb, LayerKind::Ip));
            }
        }
    }
}
