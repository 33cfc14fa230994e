//! The writable dirs' names and state, in one place: what each dir is now and where the
//! overlays' upper dirs go. The plan asks it (which dirs are writable, which overlays are still
//! to be mounted), the boot moves each dir through it as its steps end, the dry run assumes each
//! step did its work, and the report reads it.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

use super::outcome::{DirMode, DirResult, MountKey};
use super::text::{escape, quoted};

/// A writable dir's name: a dir below the root as `stateless.dirs=` takes it (`etc`,
/// `var/log`), normalised. Only [`DirName::parse`] makes one (also from JSON), so none has a
/// `..`, lies under a kernel mount or holds a character shown escaped.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct DirName(Cow<'static, str>);

impl DirName {
    /// /etc: where the host files go, and the resolver's configuration when it is writable.
    pub const ETC: DirName = DirName(Cow::Borrowed("etc"));
    /// /var: the other dir made writable by default.
    pub const VAR: DirName = DirName(Cow::Borrowed("var"));

    /// One item of `stateless.dirs=`, normalised (`/etc/` -> `etc`, `var//log` -> `var/log`),
    /// or why it is refused: also what a dir read back from a boot's report must pass again.
    pub fn parse(item: &str) -> Result<DirName, String> {
        // A dir is named in every message, the report and the provenance file: only as itself.
        if escape(item.as_bytes()) != item {
            let what = "a control, bidi or zero-width character, or a backslash";
            return Err(format!("{} has a character that is only shown escaped ({what}): refused", quoted(item)));
        }
        let parts: Vec<&str> = item.split('/').filter(|c| !c.is_empty()).collect();
        let Some(&first) = parts.first() else {
            return Err(match item {
                "" => "empty item".to_owned(),
                _ => format!("{} names no dir below the root", quoted(item)),
            });
        };
        if let Some(c) = parts.iter().find(|c| **c == "." || **c == "..") {
            return Err(format!("{} has a {} component", quoted(item), quoted(c)));
        }
        if ["proc", "sys", "dev", "run"].contains(&first) {
            return Err(format!("{} is under /{first}, a kernel or tmpfs mount, not an image dir", quoted(item)));
        }
        Ok(DirName(Cow::Owned(parts.join("/"))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Relative to the target root.
    pub fn as_path(&self) -> &Path {
        Path::new(self.as_str())
    }
}

impl TryFrom<String> for DirName {
    type Error = String;

    fn try_from(item: String) -> Result<DirName, String> {
        DirName::parse(&item)
    }
}

impl AsRef<Path> for DirName {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

/// Escaped as everything printed ([`escape`]; a valid name shows as it is).
impl fmt::Display for DirName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0.as_bytes()))
    }
}

/// For tests: a name from a valid one's text.
#[cfg(test)]
impl DirName {
    pub fn from_static(name: &'static str) -> DirName {
        DirName::parse(name).unwrap()
    }
}

/// For tests: a name compared with its text.
#[cfg(test)]
impl PartialEq<&str> for DirName {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

/// What a writable dir is now. `mount`: the mount made, where the kernel tells (not in a dry run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    /// The upper and work dirs ready, the overlay to be mounted once the layers are in them.
    Prepared,
    /// The overlay mounted.
    Overlay { mount: Option<MountKey> },
    /// A tmpfs on the dir with the image dir's copy (copy mode, or overlayfs failed).
    Copy { mount: Option<MountKey> },
    /// Both ways failed: the dir stayed the read-only image dir.
    ReadOnly,
}

/// Each writable dir's [`DirState`], in the order each got its last (the report's), and where
/// the upper dirs go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WritableDirs {
    dirs: Vec<(DirName, DirState)>,
    /// A dir on the scratch filesystem (`stateless.scratch=`), relative to the target root.
    scratch: Option<String>,
}

impl WritableDirs {
    /// `dir` is `state` now.
    pub fn set(&mut self, dir: DirName, state: DirState) {
        self.dirs.retain(|(d, _)| *d != dir);
        self.dirs.push((dir, state));
    }

    pub fn state(&self, dir: &DirName) -> Option<DirState> {
        self.dirs.iter().find(|(d, _)| d == dir).map(|(_, s)| *s)
    }

    /// Whether `dir` is writable (or will be, its overlay still to be mounted).
    pub fn contains(&self, dir: &DirName) -> bool {
        self.state(dir).is_some_and(|s| s != DirState::ReadOnly)
    }

    /// The dirs writable, the only places anything is written to.
    pub fn dirs(&self) -> Vec<DirName> {
        self.dirs.iter().filter(|(_, s)| *s != DirState::ReadOnly).map(|(d, _)| d.clone()).collect()
    }

    /// The dirs whose overlay is still to be mounted on top of its filled upper dir.
    pub fn uppers(&self) -> impl Iterator<Item = &DirName> {
        self.dirs.iter().filter(|(_, s)| *s == DirState::Prepared).map(|(d, _)| d)
    }

    /// Where the upper dirs go: on the scratch filesystem, once it is mounted (`None`: in memory).
    pub fn scratch(&self) -> Option<&str> {
        self.scratch.as_deref()
    }

    pub fn put_uppers_on(&mut self, scratch: &str) {
        self.scratch = Some(scratch.to_owned());
    }

    /// What the report shows: each dir no longer prepared, in the order each got there.
    pub fn results(&self) -> Vec<DirResult> {
        let result = |(dir, state): &(DirName, DirState)| {
            let (mode, mount) = match *state {
                DirState::Prepared => return None,
                DirState::Overlay { mount } => (DirMode::Overlay, mount),
                DirState::Copy { mount } => (DirMode::Copy, mount),
                DirState::ReadOnly => (DirMode::None, None),
            };
            Some(DirResult { dir: dir.as_str().to_owned(), mode, mount })
        };
        self.dirs.iter().filter_map(result).collect()
    }
}

/// As the facts always showed them: `writable`, `uppers` and `scratch`.
impl Serialize for WritableDirs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            writable: Vec<DirName>,
            uppers: Vec<&'a DirName>,
            scratch: Option<&'a str>,
        }
        Shown { writable: self.dirs(), uppers: self.uppers().collect(), scratch: self.scratch() }.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: MountKey = MountKey { id: 7, dev: 42 };

    #[test]
    fn each_dir_goes_from_prepared_to_what_its_overlay_became() {
        let [etc, var, srv] = ["etc", "var", "srv"].map(DirName::from_static);
        let mut w = WritableDirs::default();
        w.set(etc.clone(), DirState::Prepared);
        w.set(var.clone(), DirState::Prepared);
        w.set(srv.clone(), DirState::ReadOnly);
        assert_eq!(w.uppers().collect::<Vec<_>>(), [&etc, &var]);
        assert_eq!(w.dirs(), [etc.clone(), var.clone()]);
        assert!(w.contains(&etc) && !w.contains(&srv) && !w.contains(&DirName::from_static("home")));
        w.set(var, DirState::Copy { mount: Some(KEY) });
        w.set(etc, DirState::Overlay { mount: None });
        assert_eq!(w.uppers().count(), 0);
        let shown: Vec<(String, DirMode)> = w.results().into_iter().map(|r| (r.dir, r.mode)).collect();
        let modes = [("srv", DirMode::None), ("var", DirMode::Copy), ("etc", DirMode::Overlay)];
        assert_eq!(shown, modes.map(|(d, m)| (d.to_owned(), m)), "in the order each settled");
        assert_eq!(w.results().get(1).and_then(|r| r.mount), Some(KEY));
    }

    #[test]
    fn the_facts_show_it_as_before() {
        let mut w = WritableDirs::default();
        w.set(DirName::ETC, DirState::Overlay { mount: Some(KEY) });
        w.set(DirName::VAR, DirState::Prepared);
        w.set(DirName::from_static("srv"), DirState::ReadOnly);
        w.put_uppers_on("run/x");
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"writable":["etc","var"],"uppers":["var"],"scratch":"run/x"}"#);
        let facts = serde_json::to_string(&crate::model::facts::Facts::default()).unwrap();
        assert!(facts.contains(r#","writable":[],"uppers":[],"scratch":null,"notes":[]}"#), "{facts}");
    }

    #[test]
    fn a_dir_name_is_read_as_stateless_dirs_takes_it() {
        let dir = DirName::parse("/var//log/").unwrap();
        assert_eq!(
            (dir.as_str(), dir.to_string(), serde_json::to_string(&dir).unwrap()),
            ("var/log", "var/log".into(), r#""var/log""#.into())
        );
        assert_eq!(serde_json::from_str::<DirName>(r#""var/log""#).unwrap(), dir);
        assert_eq!(DirName::parse("etc"), Ok(DirName::ETC));
        for refused in [r#""../etc""#, r#""proc""#, r#""a\\b""#, r#""""#, r#""/""#] {
            assert!(serde_json::from_str::<DirName>(refused).is_err(), "{refused}");
        }
    }
}
