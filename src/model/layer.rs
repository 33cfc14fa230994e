//! A configuration layer: where it sits in the order and what it holds.

use serde::{Deserialize, Serialize};

use super::entry::Entry;

/// The level a layer sits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Base,
    Network,
    Lab,
    Host,
    Ip,
}

/// One layer looked for, and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Layer {
    pub kind: LayerKind,
    /// Path relative to the layer root: `labs/lab3`. Also its name in the provenance file.
    pub name: String,
    pub present: bool,
    /// Entries it would write.
    pub files: Vec<Entry>,
    /// Entries outside the writable dirs.
    pub refused: Vec<Entry>,
    /// Problems reading it (unreadable entries, a symlink out of the layer root).
    pub errors: Vec<String>,
}
