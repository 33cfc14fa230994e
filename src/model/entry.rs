//! Entries of a tree (a layer, an image dir) and what went wrong with one.

use std::fmt;
use std::path::{Path, PathBuf};

use rustix::fs::{self, FileType};
use rustix::io::Errno;
use serde::{Serialize, Serializer};

/// The kind of a tree entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A character or block device node.
    Device,
    Fifo,
    Socket,
}

impl Kind {
    /// The kind of a `st_mode`; `None` for a type Linux does not have.
    pub fn of_mode(mode: fs::RawMode) -> Option<Kind> {
        Kind::of_type(FileType::from_raw_mode(mode))
    }

    /// The kind of a file type; `None` for `Unknown` (a directory listing without `d_type`).
    pub fn of_type(file_type: FileType) -> Option<Kind> {
        match file_type {
            FileType::RegularFile => Some(Kind::File),
            FileType::Directory => Some(Kind::Dir),
            FileType::Symlink => Some(Kind::Symlink),
            FileType::CharacterDevice | FileType::BlockDevice => Some(Kind::Device),
            FileType::Fifo => Some(Kind::Fifo),
            FileType::Socket => Some(Kind::Socket),
            FileType::Unknown => None,
        }
    }
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Path relative to the walked root, e.g. `etc/fstab`.
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    /// Kind of the source entry.
    pub kind: Kind,
}

/// One failed operation on one entry; the copy or walk went on after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeError {
    /// Path relative to the walked root.
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    /// The operation: "open", "mknod", "fchown", "setxattr", "replace-dir", "depth", ...
    pub op: &'static str,
    /// The error number; serialized as its lower-case message.
    #[serde(serialize_with = "serialize_errno")]
    pub errno: Errno,
}

impl TreeError {
    pub fn new(path: &Path, op: &'static str, errno: Errno) -> Self {
        TreeError { path: path.to_path_buf(), op, errno }
    }
}

impl TreeError {
    /// Whether the entry (or part of its data) is missing from the copy; a failure to set its
    /// owner, mode, times or an extended attribute leaves the entry there with its data.
    pub fn is_loss(&self) -> bool {
        !matches!(self.op, "fchown" | "fchmod" | "listxattr" | "getxattr" | "setxattr" | "utimensat")
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, super::text::escape_path(&self.path), errno_text(self.errno))
    }
}

impl std::error::Error for TreeError {}

/// The lower-case message of an errno, e.g. "is a directory (os error 21)".
fn errno_text(errno: Errno) -> String {
    errno.to_string().to_lowercase()
}

/// Paths are bytes: non-UTF-8 bytes are shown as U+FFFD rather than failing the serialization.
fn serialize_path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

fn serialize_errno<S: Serializer>(errno: &Errno, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&errno_text(*errno))
}
