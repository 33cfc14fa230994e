//! A layer's manifest: every entry of one layer dir (`base`, `hosts/lab3-12`, ...), signed by
//! `stateless layers sign` beside the layer (`hosts/lab3-12.manifest` and its signature
//! `hosts/lab3-12.manifest.sig`, never inside it, so it is never copied into `/etc`). Its
//! SHA-256 is the layer's identity: the same identity, the same files. Pure: no I/O; every input
//! is untrusted and bounded.
//!
//! ```text
//! stateless-manifest 1
//! layer hosts/lab3-12
//! path=657463 type=d mode=0755 uid=0 gid=0
//! path=6574632f666f6f type=f mode=0644 uid=0 gid=0 size=4 sha256=b5bb9d80...
//! path=6574632f6c type=l uid=0 gid=0 target=2f6574632f666f6f
//! path=6574632f6e type=c mode=0600 uid=0 gid=0 dev=1:3
//! ```
//!
//! One line per entry, sorted by its path's raw bytes; a path (relative to the layer dir) and a
//! symlink's target are hex, so any name reads back exactly; the fields of each type in this
//! order and no others: `f` files (size, SHA-256 of the content), `d` dirs, `l` symlinks (no mode:
//! a symlink has none), `c`/`b` devices (`dev=major:minor`), `p` fifos. Sockets are never copied,
//! so never listed. Exactly one form is accepted for a manifest: what [`Manifest::text`] writes.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::model::text::{escape, hex, unhex};

/// The first line.
const HEADER: &str = "stateless-manifest 1";
/// The largest manifest read.
pub const MANIFEST_MAX: usize = 16 << 20;
/// The most entries a manifest lists.
pub const ENTRIES_MAX: usize = 200_000;
/// The longest path or symlink target (PATH_MAX).
const PATH_MAX: usize = 4096;
/// The longest line: a path and a target at their longest, hex, and the other fields.
const LINE_MAX: usize = 4 * PATH_MAX + 256;
/// The longest layer name.
const NAME_MAX: usize = 255;

/// What an entry is, with what is checked of its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A regular file: its size and the SHA-256 of its bytes.
    File {
        size: u64,
        sha256: String,
    },
    Dir,
    /// A symlink and its target's bytes.
    Symlink {
        target: Vec<u8>,
    },
    /// A device node: block or character, its major and minor numbers.
    Device {
        block: bool,
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry: its kind and content, permission bits (07777; 0 for a symlink) and owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub what: What,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Listed {
    /// How `self` (as found) differs from `want` (as signed), in words; `None`: it does not.
    pub fn differs(&self, want: &Listed) -> Option<String> {
        let mut why = Vec::new();
        match (&self.what, &want.what) {
            (What::File { size, .. }, What::File { size: s, .. }) if size != s => {
                why.push(format!("size ({size}, signed {s})"));
            }
            (What::File { sha256, .. }, What::File { sha256: h, .. }) if sha256 != h => {
                why.push(format!("content (sha256 {sha256}, signed {h})"));
            }
            (What::Symlink { target }, What::Symlink { target: t }) if target != t => {
                why.push(format!("target ({}, signed {})", escape(target), escape(t)));
            }
            (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) || a != b => {
                why.push(format!("type ({}, signed {})", a.letter(), b.letter()));
            }
            _ => {}
        }
        if self.mode != want.mode {
            why.push(format!("mode ({:04o}, signed {:04o})", self.mode, want.mode));
        }
        if (self.uid, self.gid) != (want.uid, want.gid) {
            why.push(format!("owner ({}:{}, signed {}:{})", self.uid, self.gid, want.uid, want.gid));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

impl What {
    fn letter(&self) -> String {
        match self {
            What::File { .. } => "f".into(),
            What::Dir => "d".into(),
            What::Symlink { .. } => "l".into(),
            What::Device { block: false, major, minor } => format!("c {major}:{minor}"),
            What::Device { block: true, major, minor } => format!("b {major}:{minor}"),
            What::Fifo => "p".into(),
        }
    }
}

/// A layer's manifest: its name and its entries by path (raw bytes, relative to the layer dir).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub layer: String,
    pub entries: BTreeMap<Vec<u8>, Listed>,
}

/// Whether `name` may name a layer in a manifest: plain components of letters, digits, `.`, `_`
/// and `-` (every name the boot looks for), none `.` or `..`.
pub fn layer_name_ok(name: &str) -> bool {
    name.len() <= NAME_MAX
        && name.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
}

/// Whether `path` may be an entry's path: relative, plain components, no NUL, at most
/// PATH_MAX bytes.
fn path_ok(path: &[u8]) -> bool {
    path.len() <= PATH_MAX
        && !path.contains(&0)
        && path.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..")
}

impl Manifest {
    /// The manifest's text, the one form [`Manifest::parse`] accepts.
    pub fn text(&self) -> String {
        let mut out = format!("{HEADER}\nlayer {}\n", self.layer);
        for (path, e) in &self.entries {
            out += &format!("path={}", hex(path));
            let owner = format!("uid={} gid={}", e.uid, e.gid);
            let mode = format!("mode={:04o} {owner}", e.mode);
            match &e.what {
                What::File { size, sha256 } => out += &format!(" type=f {mode} size={size} sha256={sha256}"),
                What::Dir => out += &format!(" type=d {mode}"),
                What::Symlink { target } => out += &format!(" type=l {owner} target={}", hex(target)),
                What::Device { block, major, minor } => {
                    out += &format!(" type={} {mode} dev={major}:{minor}", if *block { 'b' } else { 'c' });
                }
                What::Fifo => out += &format!(" type=p {mode}"),
            }
            out.push('\n');
        }
        out
    }

    /// The layer's identity: the SHA-256 of the manifest's text, lower-case hex.
    pub fn identity(text: &[u8]) -> String {
        hex(&Sha256::digest(text))
    }

    /// How the layer as found (`now`) differs from this signed manifest: each path (raw bytes)
    /// with why, sorted: signed but missing, not signed, or not as signed.
    pub fn differences(&self, now: &Manifest) -> Vec<(Vec<u8>, String)> {
        let mut out: Vec<(Vec<u8>, String)> = Vec::new();
        for (path, want) in &self.entries {
            match now.entries.get(path) {
                None => out.push((path.clone(), "signed but missing".into())),
                Some(found) => {
                    out.extend(found.differs(want).map(|why| (path.clone(), format!("not as signed: {why}"))))
                }
            }
        }
        let unsigned = now.entries.keys().filter(|p| !self.entries.contains_key(*p));
        out.extend(unsigned.map(|path| (path.clone(), "not in the signed manifest".to_owned())));
        out.sort();
        out
    }

    /// Reads a manifest strictly: bounded, sorted, no path twice, every field as
    /// [`Manifest::text`] writes it. An error names the line and what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() > MANIFEST_MAX {
            return Err(format!("larger than {MANIFEST_MAX} bytes"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not text (UTF-8)".to_owned())?;
        let body = text.strip_suffix('\n').ok_or("its last line has no newline: cut short?")?;
        let mut lines = body.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(format!("line 1: not {HEADER:?}"));
        }
        let layer = lines.next().and_then(|l| l.strip_prefix("layer ")).ok_or("line 2: not \"layer NAME\"")?;
        if !layer_name_ok(layer) {
            return Err(format!("line 2: {} is no layer name", crate::model::text::quoted(layer)));
        }
        let mut manifest = Manifest { layer: layer.to_owned(), entries: BTreeMap::new() };
        let mut last: Option<Vec<u8>> = None;
        for (n, line) in lines.enumerate() {
            let at = |what: &str| format!("line {}: {what}", n + 3);
            if manifest.entries.len() >= ENTRIES_MAX {
                return Err(at(&format!("more than {ENTRIES_MAX} entries")));
            }
            if line.len() > LINE_MAX {
                return Err(at(&format!("longer than {LINE_MAX} bytes")));
            }
            let (path, listed) = entry(line).map_err(|e| at(&e))?;
            if last.as_ref().is_some_and(|last| *last >= path) {
                return Err(at("not after the line before it (sorted by path, each path once)"));
            }
            last = Some(path.clone());
            manifest.entries.insert(path, listed);
        }
        if manifest.text().as_bytes() != bytes {
            return Err("not in its one form (numbers without leading zeros, lower-case hex)".into());
        }
        Ok(manifest)
    }
}

/// One entry line: its fields in their order for its type.
fn entry(line: &str) -> Result<(Vec<u8>, Listed), String> {
    let mut fields = line.split(' ');
    let mut field = |key: &str| {
        fields
            .next()
            .and_then(|f| f.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("no {key}= where it belongs"))
    };
    let path = unhex(field("path")?).filter(|p| path_ok(p)).ok_or("path= is not a plain relative path in hex")?;
    let kind = field("type")?;
    let mode = match kind {
        "l" => 0,
        _ => u32::from_str_radix(field("mode")?, 8).ok().filter(|m| *m <= 0o7777).ok_or("mode= is not 0000 to 7777")?,
    };
    let number = |text: &str, key: &str| text.parse::<u32>().map_err(|_| format!("{key}= is not a number"));
    let uid = number(field("uid")?, "uid")?;
    let gid = number(field("gid")?, "gid")?;
    let what = match kind {
        "f" => {
            let size = field("size")?.parse().map_err(|_| "size= is not a number")?;
            let sha256 = field("sha256")?;
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err("sha256= is not 64 lower-case hex digits".into());
            }
            let sha256 = sha256.to_owned();
            What::File { size, sha256 }
        }
        "d" => What::Dir,
        "l" => {
            let target = unhex(field("target")?).filter(|t| !t.is_empty() && t.len() <= PATH_MAX && !t.contains(&0));
            What::Symlink { target: target.ok_or("target= is not a symlink's target in hex")? }
        }
        "c" | "b" => {
            let dev = field("dev")?;
            let (major, minor) = dev.split_once(':').ok_or("dev= is not major:minor")?;
            What::Device { block: kind == "b", major: number(major, "dev")?, minor: number(minor, "dev")? }
        }
        "p" => What::Fifo,
        _ => return Err(format!("type={} is none of f d l c b p", escape(kind.as_bytes()))),
    };
    if fields.next().is_some() {
        return Err("more fields than its type has".into());
    }
    Ok((path, Listed { what, mode, uid, gid }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let owner = |what| Listed { what, mode: 0o644, uid: 0, gid: 0 };
        let mut entries = BTreeMap::new();
        entries.insert(b"etc".to_vec(), Listed { mode: 0o755, ..owner(What::Dir) });
        entries.insert(b"etc/foo".to_vec(), owner(What::File { size: 4, sha256: "ab".repeat(32) }));
        entries.insert(b"etc/l".to_vec(), Listed { mode: 0, ..owner(What::Symlink { target: b"/etc/foo".to_vec() }) });
        entries.insert(b"etc/n".to_vec(), owner(What::Device { block: false, major: 1, minor: 3 }));
        entries.insert(b"etc/p".to_vec(), Listed { uid: 7, gid: 8, ..owner(What::Fifo) });
        entries.insert(
            b"etc/sd".to_vec(),
            Listed { mode: 0o4755, ..owner(What::Device { block: true, major: 8, minor: 0 }) },
        );
        Manifest { layer: "hosts/lab3-12".into(), entries }
    }

    #[test]
    fn round_trip_in_one_form() {
        let m = sample();
        let text = m.text();
        assert!(
            text.starts_with("stateless-manifest 1\nlayer hosts/lab3-12\npath=657463 type=d mode=0755 uid=0 gid=0\n")
        );
        assert!(text.contains("path=6574632f6c type=l uid=0 gid=0 target=2f6574632f666f6f\n"), "{text}");
        assert!(text.contains("type=b mode=4755 uid=0 gid=0 dev=8:0\n"), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes()), Ok(m));
        assert_eq!(Manifest::identity(text.as_bytes()).len(), 64);
        let empty = Manifest { layer: "base".into(), entries: BTreeMap::new() };
        assert_eq!(Manifest::parse(empty.text().as_bytes()), Ok(empty));
    }

    #[test]
    fn hostile_names_read_back_exactly() {
        let mut m = Manifest { layer: "base".into(), entries: BTreeMap::new() };
        let names: [&[u8]; 6] = [
            b"etc/a b",
            b"etc/a\nb",
            b"etc/\xff\xfe",
            "etc/\u{202e}txt.sh".as_bytes(),
            b"etc/path=x type=d",
            b"etc/\\x41",
        ];
        for name in names {
            let what = What::Symlink { target: [name, b"\n\x01"].concat() };
            m.entries.insert(name.to_vec(), Listed { what, mode: 0, uid: 0, gid: 0 });
        }
        let text = m.text();
        assert_eq!(text.lines().count(), 2 + names.len(), "one line each");
        assert_eq!(Manifest::parse(text.as_bytes()), Ok(m));
    }

    #[test]
    fn strict_refusals_name_the_line() {
        let good = sample().text();
        let refused = |text: &str| Manifest::parse(text.as_bytes()).unwrap_err();
        let head = "stateless-manifest 1\nlayer base\n";
        let with = |line: &str| format!("{head}{line}\n");
        assert_eq!(refused("stateless-manifest 2\nlayer base\n"), "line 1: not \"stateless-manifest 1\"");
        assert_eq!(refused(&good[..good.len() - 1]), "its last line has no newline: cut short?");
        assert_eq!(refused("stateless-manifest 1\nlayer ../x\n"), "line 2: \"../x\" is no layer name");
        assert_eq!(refused("stateless-manifest 1\nlayer a b\n"), "line 2: \"a b\" is no layer name");
        let dir = "type=d mode=0755 uid=0 gid=0";
        assert_eq!(refused(&with(&format!("path=2e2e {dir}"))), "line 3: path= is not a plain relative path in hex");
        assert_eq!(refused(&with(&format!("path=2f6574 {dir}"))), "line 3: path= is not a plain relative path in hex");
        assert_eq!(refused(&with(&format!("path=6100 {dir}"))), "line 3: path= is not a plain relative path in hex");
        assert_eq!(refused(&with(&format!("path= {dir}"))), "line 3: path= is not a plain relative path in hex");
        assert_eq!(refused(&with("path=61 type=d mode=10000 uid=0 gid=0")), "line 3: mode= is not 0000 to 7777");
        assert_eq!(refused(&with("path=61 type=d mode=0755 uid=-1 gid=0")), "line 3: uid= is not a number");
        assert_eq!(
            refused(&with("path=61 type=d mode=0755 uid=0 gid=0 size=1")),
            "line 3: more fields than its type has"
        );
        assert_eq!(refused(&with("path=61 type=s mode=0755 uid=0 gid=0")), "line 3: type=s is none of f d l c b p");
        assert_eq!(
            refused(&with("path=61 type=f mode=0644 uid=0 gid=0 size=1")),
            "line 3: no sha256= where it belongs"
        );
        assert_eq!(
            refused(&with("path=61 type=l uid=0 gid=0 target=")),
            "line 3: target= is not a symlink's target in hex"
        );
        assert_eq!(refused(&with("path=61 type=c mode=0600 uid=0 gid=0 dev=1")), "line 3: dev= is not major:minor");
        let twice = format!("{head}path=61 {dir}\npath=61 {dir}\n");
        assert_eq!(refused(&twice), "line 4: not after the line before it (sorted by path, each path once)");
        let unsorted = format!("{head}path=62 {dir}\npath=61 {dir}\n");
        assert_eq!(refused(&unsorted), "line 4: not after the line before it (sorted by path, each path once)");
        let one_form = "not in its one form (numbers without leading zeros, lower-case hex)";
        assert_eq!(refused(&with("path=61 type=d mode=0755 uid=00 gid=0")), one_form);
        assert_eq!(refused(&with("path=6A type=d mode=0755 uid=0 gid=0")), one_form);
        assert_eq!(refused(&with("path=61 type=d mode=755 uid=0 gid=0")), one_form);
        assert_eq!(refused(&with("path=61 type=d mode=+755 uid=0 gid=0")), one_form);
        assert!(refused(&format!("{head}{}\n", "a".repeat(LINE_MAX + 1))).starts_with("line 3: longer than"));
        assert_eq!(refused(&"x".repeat(MANIFEST_MAX + 1)), format!("larger than {MANIFEST_MAX} bytes"));
        assert_eq!(refused("\u{ff}"), "its last line has no newline: cut short?");
        assert_eq!(Manifest::parse(b"\xff\n").unwrap_err(), "not text (UTF-8)");
    }

    #[test]
    fn differences_are_named() {
        let want = Listed { what: What::File { size: 4, sha256: "01".repeat(32) }, mode: 0o644, uid: 0, gid: 0 };
        assert_eq!(want.differs(&want), None);
        let changed = Listed { what: What::File { size: 4, sha256: "02".repeat(32) }, mode: 0o4755, uid: 1000, gid: 0 };
        let why = changed.differs(&want).unwrap();
        assert!(why.starts_with("content (sha256 0202"), "{why}");
        assert!(why.ends_with(", mode (4755, signed 0644), owner (1000:0, signed 0:0)"), "{why}");
        let link = Listed { what: What::Symlink { target: b"/x\n".to_vec() }, mode: 0, uid: 0, gid: 0 };
        assert_eq!(
            link.differs(&Listed { mode: 0o644, ..want.clone() }).unwrap(),
            "type (l, signed f), mode (0000, signed 0644)"
        );
        let other = Listed { what: What::Symlink { target: b"/y".to_vec() }, ..link.clone() };
        assert_eq!(link.differs(&other).unwrap(), "target (/x\\x0a, signed /y)");
        let dev = |minor| Listed { what: What::Device { block: false, major: 1, minor }, mode: 0o600, uid: 0, gid: 0 };
        assert_eq!(dev(3).differs(&dev(5)).unwrap(), "type (c 1:3, signed c 1:5)");
        let signed = sample();
        let mut now = sample();
        now.entries.remove(&b"etc/p"[..]);
        now.entries.insert(b"etc/new".to_vec(), Listed { what: What::Dir, mode: 0o755, uid: 0, gid: 0 });
        if let Some(l) = now.entries.get_mut(&b"etc/foo"[..]) {
            l.mode = 0o666;
        }
        let said: Vec<(String, String)> =
            signed.differences(&now).into_iter().map(|(p, why)| (String::from_utf8(p).unwrap(), why)).collect();
        let pairs = [
            ("etc/foo", "not as signed: mode (0666, signed 0644)"),
            ("etc/new", "not in the signed manifest"),
            ("etc/p", "signed but missing"),
        ];
        assert_eq!(said, pairs.map(|(a, b)| (a.to_owned(), b.to_owned())));
        assert!(layer_name_ok("networks/10.0.2.0_24") && !layer_name_ok("hosts/") && !layer_name_ok("/base"));
    }
}
