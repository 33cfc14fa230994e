//! The writable dirs' state, in one place: what each dir is now and where the overlays' upper
//! dirs go. The plan asks it (which dirs are writable, which overlays are still to be mounted),
//! the boot moves each dir through it as its steps end, the dry run assumes each step did its
//! work, and the report reads it.

use serde::{Serialize, Serializer};

use super::outcome::{DirMode, DirResult, MountKey};

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
    dirs: Vec<(String, DirState)>,
    /// A dir on the scratch filesystem (`stateless.scratch=`), relative to the target root.
    scratch: Option<String>,
}

impl WritableDirs {
    /// `dir` is `state` now.
    pub fn set(&mut self, dir: &str, state: DirState) {
        self.dirs.retain(|(d, _)| d != dir);
        self.dirs.push((dir.to_owned(), state));
    }

    /// What a step that did its work is assumed to have made `dir` (the dry run): `state`,
    /// when `dir` is still `was`; what the boot recorded stands.
    pub fn assume(&mut self, dir: &str, was: Option<DirState>, state: DirState) {
        if self.state(dir) == was {
            self.set(dir, state);
        }
    }

    pub fn state(&self, dir: &str) -> Option<DirState> {
        self.dirs.iter().find(|(d, _)| d == dir).map(|(_, s)| *s)
    }

    /// Whether `dir` is writable (or will be, its overlay still to be mounted).
    pub fn contains(&self, dir: &str) -> bool {
        self.state(dir).is_some_and(|s| s != DirState::ReadOnly)
    }

    /// The dirs writable, the only places anything is written to.
    pub fn dirs(&self) -> Vec<String> {
        self.dirs.iter().filter(|(_, s)| *s != DirState::ReadOnly).map(|(d, _)| d.clone()).collect()
    }

    /// The dirs whose overlay is still to be mounted on top of its filled upper dir.
    pub fn uppers(&self) -> impl Iterator<Item = &str> {
        self.dirs.iter().filter(|(_, s)| *s == DirState::Prepared).map(|(d, _)| d.as_str())
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
        let result = |(dir, state): &(String, DirState)| {
            let (mode, mount) = match *state {
                DirState::Prepared => return None,
                DirState::Overlay { mount } => (DirMode::Overlay, mount),
                DirState::Copy { mount } => (DirMode::Copy, mount),
                DirState::ReadOnly => (DirMode::None, None),
            };
            Some(DirResult { dir: dir.clone(), mode, mount })
        };
        self.dirs.iter().filter_map(result).collect()
    }
}

/// As the facts always showed them: `writable`, `uppers` and `scratch`.
impl Serialize for WritableDirs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            writable: Vec<String>,
            uppers: Vec<&'a str>,
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
        let mut w = WritableDirs::default();
        w.set("etc", DirState::Prepared);
        w.set("var", DirState::Prepared);
        w.set("srv", DirState::ReadOnly);
        assert_eq!(w.uppers().collect::<Vec<_>>(), ["etc", "var"]);
        assert_eq!(w.dirs(), ["etc", "var"]);
        assert!(w.contains("etc") && !w.contains("srv") && !w.contains("home"));
        w.set("var", DirState::Copy { mount: Some(KEY) });
        w.set("etc", DirState::Overlay { mount: None });
        assert_eq!(w.uppers().count(), 0);
        let shown: Vec<(String, DirMode)> = w.results().into_iter().map(|r| (r.dir, r.mode)).collect();
        let modes = [("srv", DirMode::None), ("var", DirMode::Copy), ("etc", DirMode::Overlay)];
        assert_eq!(shown, modes.map(|(d, m)| (d.to_owned(), m)), "in the order each settled");
        assert_eq!(w.results().get(1).and_then(|r| r.mount), Some(KEY));
    }

    #[test]
    fn the_dry_run_assumes_only_what_the_boot_did_not_record() {
        let mut w = WritableDirs::default();
        w.assume("etc", None, DirState::Prepared);
        assert_eq!(w.state("etc"), Some(DirState::Prepared));
        w.set("etc", DirState::ReadOnly);
        w.assume("etc", Some(DirState::Prepared), DirState::Overlay { mount: None });
        assert_eq!(w.state("etc"), Some(DirState::ReadOnly));
        w.assume("etc", None, DirState::Copy { mount: None });
        assert_eq!(w.state("etc"), Some(DirState::ReadOnly));
    }

    #[test]
    fn the_facts_show_it_as_before() {
        let mut w = WritableDirs::default();
        w.set("etc", DirState::Overlay { mount: Some(KEY) });
        w.set("var", DirState::Prepared);
        w.set("srv", DirState::ReadOnly);
        w.put_uppers_on("run/x");
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, r#"{"writable":["etc","var"],"uppers":["var"],"scratch":"run/x"}"#);
        let facts = serde_json::to_string(&crate::model::facts::Facts::default()).unwrap();
        assert!(facts.contains(r#","writable":[],"uppers":[],"scratch":null,"notes":[]}"#), "{facts}");
    }
}
