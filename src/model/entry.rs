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
    /// The operation that failed; serialized as its name (`open`, `replace-dir`, ...).
    pub op: TreeOp,
    /// The error number; serialized as its lower-case message.
    #[serde(serialize_with = "serialize_errno")]
    pub errno: Errno,
}

impl TreeError {
    pub fn new(path: &Path, op: TreeOp, errno: Errno) -> Self {
        TreeError { path: path.to_path_buf(), op, errno }
    }

    /// Whether the entry (or part of its data) is missing from the copy; a failure to set its
    /// owner, mode, times or an extended attribute leaves the entry there with its data.
    pub fn is_loss(&self) -> bool {
        !self.op.is_metadata()
    }
}

/// What failed on one entry of a walk or a copy: a system call, or a check of the walk's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeOp {
    Open,
    Opendir,
    Readdir,
    Stat,
    Fstat,
    Readlink,
    Mkdir,
    Unlink,
    Rename,
    Dup,
    Create,
    Symlink,
    Mknod,
    Seek,
    Truncate,
    Write,
    Fchown,
    Fchmod,
    Listxattr,
    Getxattr,
    Setxattr,
    Utimensat,
    /// The entry's kind is not one that can be copied (a socket).
    Type,
    /// The entry changed kind between the listing and the open.
    Changed,
    /// Deeper than [`crate::fs::tree::MAX_DEPTH`] components.
    Depth,
    /// Walked into, but the destination is no directory.
    Descend,
    /// A non-directory would replace a directory.
    ReplaceDir,
    /// An overlayfs whiteout in a layer.
    Whiteout,
    /// More than the destination filesystem can hold.
    TooBig,
}

impl TreeOp {
    /// The name the log and the report show.
    pub fn as_str(self) -> &'static str {
        match self {
            TreeOp::Open => "open",
            TreeOp::Opendir => "opendir",
            TreeOp::Readdir => "readdir",
            TreeOp::Stat => "stat",
            TreeOp::Fstat => "fstat",
            TreeOp::Readlink => "readlink",
            TreeOp::Mkdir => "mkdir",
            TreeOp::Unlink => "unlink",
            TreeOp::Rename => "rename",
            TreeOp::Dup => "dup",
            TreeOp::Create => "create",
            TreeOp::Symlink => "symlink",
            TreeOp::Mknod => "mknod",
            TreeOp::Seek => "seek",
            TreeOp::Truncate => "truncate",
            TreeOp::Write => "write",
            TreeOp::Fchown => "fchown",
            TreeOp::Fchmod => "fchmod",
            TreeOp::Listxattr => "listxattr",
            TreeOp::Getxattr => "getxattr",
            TreeOp::Setxattr => "setxattr",
            TreeOp::Utimensat => "utimensat",
            TreeOp::Type => "type",
            TreeOp::Changed => "changed",
            TreeOp::Depth => "depth",
            TreeOp::Descend => "descend",
            TreeOp::ReplaceDir => "replace-dir",
            TreeOp::Whiteout => "whiteout",
            TreeOp::TooBig => "too-big",
        }
    }

    /// Owner, mode, times or an extended attribute: the entry is there with its data.
    pub fn is_metadata(self) -> bool {
        matches!(
            self,
            TreeOp::Fchown
                | TreeOp::Fchmod
                | TreeOp::Listxattr
                | TreeOp::Getxattr
                | TreeOp::Setxattr
                | TreeOp::Utimensat
        )
    }
}

/// As its name: the report's `op` strings are those the log shows.
impl Serialize for TreeOp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op.as_str(), super::text::escape_path(&self.path), errno_text(self.errno))
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
