//! Each entry a layer would write, judged against the image: owner and group ids it names,
//! modes, capabilities, what it would replace.

use super::*;

/// The user and group ids the image names: its /etc/passwd and /etc/group, and those of its
/// layers (a layer may bring its own). Empty when there is none at all: then ownership is not checked.
#[derive(Default)]
pub(super) struct Ids {
    users: BTreeSet<u32>,
    groups: BTreeSet<u32>,
}

impl Ids {
    const LIMIT: u64 = 4 << 20;

    pub(super) fn read(target: &ImageRoot, dirs: &[LayerDir], layer_root: BorrowedFd<'_>) -> Ids {
        let mut ids = Ids::default();
        let mut add =
            |file: &str, data: Option<Vec<u8>>| {
                let set = if file.ends_with("passwd") { &mut ids.users } else { &mut ids.groups };
                let text = data.unwrap_or_default();
                set.extend(text.split(|&b| b == b'\n').filter_map(|line| {
                    std::str::from_utf8(line.split(|&b| b == b':').nth(2)?).ok()?.parse::<u32>().ok()
                }));
            };
        for file in ["etc/passwd", "etc/group"] {
            add(file, target.read_file(file, Self::LIMIT).ok().flatten());
            for dir in dirs {
                let path = Path::new(&dir.name).join(file);
                add(file, tree::open_beneath(layer_root, &path, OFlags::PATH).ok().and_then(read_small));
            }
        }
        ids
    }
}

/// The content of a small regular file, `node` an `O_PATH` fd: anything else is never opened.
pub(super) fn read_small(node: OwnedFd) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::from(tree::open_regular(&node).ok()?).take(Ids::LIMIT).read_to_end(&mut data).ok()?;
    Some(data)
}

/// What the entries of a layer are checked against.
pub(super) struct Image<'a> {
    pub(super) root: &'a ImageRoot,
    /// The layer root's path in the image: a symlink into it points at the shared tree.
    pub(super) layer_root: &'a Path,
    pub(super) dirs: &'a [DirName],
    /// Whether the layers go into an overlay's upper dir (`stateless.mode=overlay`), where the
    /// copy refuses whiteouts and overlayfs's own attributes.
    pub(super) upper: bool,
    /// The image's `/etc/stateless.conf`: the one the boot reads.
    pub(super) config: Option<Vec<u8>>,
    pub(super) ids: Ids,
}

/// One problem of an entry: how bad, what, and whether the copy refuses the entry for it.
pub(super) struct Problem {
    severity: Severity,
    text: String,
    refused: bool,
}

impl Problem {
    fn warning(text: String) -> Problem {
        Problem { severity: Severity::Warning, text, refused: false }
    }
    fn error(text: String) -> Problem {
        Problem { severity: Severity::Error, text, refused: false }
    }
    /// An error for which the entry is not copied.
    fn refused(text: String) -> Problem {
        Problem { severity: Severity::Error, text, refused: true }
    }
}

impl Image<'_> {
    /// Walks one layer as the boot would, with a finding for each entry the copy would refuse or
    /// fail on, or that looks wrong; the entries it writes.
    pub(super) fn walk_layer(&self, layer: &str, fd: BorrowedFd<'_>, found: &mut Findings<'_>) -> Written {
        let at = |path: &Path| format!("{layer}/{}", escape_path(path));
        let mut not_copied = BTreeSet::new();
        let walk =
            tree::walk_visiting(fd, &|path, kind| layers::verdict(self.dirs, path, kind), &mut |dir, name, entry| {
                for problem in self.look_at(dir, name, entry) {
                    if problem.refused {
                        not_copied.insert(entry.path.clone());
                    }
                    found.push(problem.severity, &at(&entry.path), &problem.text);
                }
            });
        for entry in &walk.refused {
            found.error(&at(&entry.path), &format!("{}: never copied", layers::refusal(entry, self.dirs)));
        }
        for error in &walk.errors {
            let problem = match error.op {
                TreeOp::Depth => format!("deeper than {} levels: not copied", tree::MAX_DEPTH),
                _ => format!("cannot be read ({error}): not copied"),
            };
            found.error(&at(&error.path), &problem);
        }
        let mut written = Written::default();
        for entry in walk.copy.into_iter().filter(|e| !not_copied.contains(&e.path)) {
            let shown = format!("/{}", escape_path(&entry.path));
            if entry.kind == Kind::Dir {
                written.dirs.insert(shown.clone());
            }
            written.entries.push((shown, entry.kind));
        }
        written
    }

    /// The problems of one entry the copy would write.
    fn look_at(&self, dir: BorrowedFd<'_>, name: &OsStr, entry: &Entry) -> Vec<Problem> {
        let mut problems = Vec::new();
        let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(e) => return vec![Problem::refused(format!("cannot be examined: {e}"))],
        };
        if !self.ids.users.is_empty() && !self.ids.users.contains(&stat.st_uid) {
            problems.push(Problem::warning(format!("owner {} is no user of the image's /etc/passwd", stat.st_uid)));
        }
        if !self.ids.groups.is_empty() && !self.ids.groups.contains(&stat.st_gid) {
            problems.push(Problem::warning(format!("group {} is no group of the image's /etc/group", stat.st_gid)));
        }
        let mode = stat.st_mode & 0o7777;
        if entry.kind == Kind::File && mode & 0o6000 != 0 {
            problems.push(Problem::warning(format!("setuid or setgid (mode {mode:04o})")));
        }
        if entry.kind != Kind::Symlink && mode & 0o002 != 0 && !(entry.kind == Kind::Dir && mode & 0o1000 != 0) {
            problems.push(Problem::warning(format!("anyone may write it (mode {mode:04o})")));
        }
        match entry.kind {
            Kind::File => {
                if let Err(e) = rustix::fs::openat(dir, name, tree::source_flags(Kind::File), Mode::empty()) {
                    problems.push(Problem::refused(format!("cannot be read ({e}): not copied")));
                }
            }
            Kind::Symlink => {
                if let Ok(target) = rustix::fs::readlinkat(dir, name, Vec::new()) {
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    problems.extend(self.symlink_problem(&entry.path, target).map(Problem::warning));
                }
            }
            _ => {}
        }
        if self.upper && tree::whiteout(&stat) {
            let text = "a whiteout (a 0:0 character device), which would delete the image's entry: not copied";
            problems.push(Problem::refused(text.into()));
        }
        problems.extend(self.xattr_problems(dir, name, entry.kind));
        // No entry but a dir takes the place of one of the image's dirs.
        if entry.kind != Kind::Dir && self.image_has_dir(&entry.path) {
            let image_path = escape_path(&entry.path);
            problems.push(Problem::refused(format!("the image has a directory at /{image_path}: not copied")));
        }
        if entry.kind != Kind::Dir && entry.path == crate::fs::root::relative(CONFIG) {
            problems.push(self.config_problem(dir, name));
        }
        problems
    }

    /// Extended attributes the copy refuses into an overlay (by its own rule), and file
    /// capabilities (a privilege like setuid's).
    fn xattr_problems(&self, dir: BorrowedFd<'_>, name: &OsStr, kind: Kind) -> Vec<Problem> {
        let xattrs = match tree::read_xattrs(dir, name) {
            Ok(xattrs) => xattrs,
            Err(e) => {
                return vec![Problem::warning(format!("its extended attributes cannot be read ({e}): not checked"))]
            }
        };
        let mut problems = Vec::new();
        for (xattr, value) in xattrs {
            if self.upper && tree::overlay_own(&xattr) {
                let text = "overlayfs's own attribute, which would hide or redirect the image's entries: not copied";
                problems.push(Problem::error(format!("extended attribute {}: {text}", escape(&xattr))));
            } else if xattr == b"security.capability" && kind == Kind::File {
                problems.push(Problem::warning(format!("file capabilities ({})", capabilities(&value))));
            }
        }
        problems
    }

    /// A layer's `etc/stateless.conf`: copied, but never read by the boot, which reads the
    /// image's before any layer is applied. An error when it differs from the image's (the
    /// options it sets never take effect, and on the client it does not say how it booted);
    /// the same file is only a warning.
    fn config_problem(&self, dir: BorrowedFd<'_>, name: &OsStr) -> Problem {
        let text = "never read by the boot, which reads the image's /etc/stateless.conf before any layer";
        let node = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty());
        let same = node.ok().and_then(read_small);
        match same.is_some() && same == self.config {
            true => Problem::warning(format!("{text} (the same as the image's)")),
            false => Problem::error(format!("{text}: its options do not apply")),
        }
    }

    /// A symlink at `path` (in the client's root) that climbs above `/`, or points into the
    /// layer tree: on the client that is the shared image's copy, not what the layer wrote.
    pub(super) fn symlink_problem(&self, path: &Path, target: &Path) -> Option<String> {
        let shown = escape_path(target);
        // Where it leads on the client, by its names alone (from its dir, or from / when absolute).
        let mut at: Vec<Component<'_>> = match target.is_absolute() {
            true => Vec::new(),
            false => path.parent().map_or(Vec::new(), |p| p.components().collect()),
        };
        for component in target.components() {
            match component {
                Component::ParentDir if at.is_empty() && !target.is_absolute() => {
                    return Some(format!("climbs above / ({shown})"));
                }
                Component::ParentDir => {
                    at.pop();
                }
                Component::Normal(_) => at.push(component),
                _ => {}
            }
        }
        let leads: PathBuf = std::iter::once(Component::RootDir).chain(at).collect();
        let inside = leads.starts_with(self.layer_root) && self.layer_root != Path::new("/");
        inside.then(|| format!("points into the layer tree ({shown})"))
    }

    /// Whether the image has a real directory at `path` (no symlink followed).
    fn image_has_dir(&self, path: &Path) -> bool {
        tree::open_parent(self.root.fd(), path).is_ok_and(|(parent, name)| tree::dir_below(parent.as_fd(), name))
    }
}

/// The capabilities a `security.capability` value grants (`struct vfs_cap_data`: a word with
/// the revision, then a permitted and an inheritable word per 32 capabilities: one pair in
/// revision 1, two in 2 and 3), as `cap_setuid, cap_net_raw`.
pub(super) fn capabilities(value: &[u8]) -> String {
    let words: Vec<u32> = value.chunks_exact(4).filter_map(|w| w.try_into().ok()).map(u32::from_le_bytes).collect();
    let pairs = match words.first().map(|magic| magic & 0xff00_0000) {
        Some(0x0100_0000) => 1,
        Some(0x0200_0000 | 0x0300_0000) => 2,
        _ => return "a revision not known".into(),
    };
    let bits = (0..pairs).fold(0u64, |bits, i| {
        let word = |at: usize| words.get(at).copied().unwrap_or(0);
        bits | u64::from(word(1 + 2 * i) | word(2 + 2 * i)) << (32 * i)
    });
    let set = rustix::thread::CapabilitySet::from_bits_retain(bits);
    let mut names: Vec<String> = set.iter_names().map(|(name, _)| format!("cap_{}", name.to_lowercase())).collect();
    let unknown = bits & !rustix::thread::CapabilitySet::all().bits();
    if unknown != 0 {
        names.push(format!("unknown bits {unknown:#x}"));
    }
    if names.is_empty() {
        return "none".into();
    }
    names.join(", ")
}
