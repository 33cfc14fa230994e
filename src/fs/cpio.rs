//! A cpio archive in the "newc" format the kernel unpacks into its initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst), written reproducibly: entries
//! sorted by path, parents before children, inode numbers in that order, owner root, every
//! timestamp the same (`mtime`).

use std::collections::BTreeMap;

/// What a member is, and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inode {
    Dir,
    File(Vec<u8>),
    /// A character device: major, minor.
    CharDev(u32, u32),
    Symlink(String),
}

/// One member of the archive: its inode and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub inode: Inode,
    pub mode: u32,
}

/// An archive being put together: paths relative to its root (`init`, `lib/modules/...`).
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Member>,
}

impl Archive {
    /// Adds `path`, and its parent dirs (0755) that are not there yet. A path given twice keeps
    /// the last entry.
    pub fn add(&mut self, path: &str, inode: Inode, mode: u32) {
        let path = path.trim_matches('/');
        let mut parent = String::new();
        for component in path.split('/').take(path.split('/').count().saturating_sub(1)) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            self.entries.entry(parent.clone()).or_insert(Member { inode: Inode::Dir, mode: 0o755 });
        }
        self.entries.insert(path.to_string(), Member { inode, mode });
    }

    /// The paths and members, in archive order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Member)> {
        self.entries.iter()
    }

    /// Bytes of file content in the archive.
    pub fn content_bytes(&self) -> usize {
        self.entries
            .values()
            .map(|e| match &e.inode {
                Inode::File(data) => data.len(),
                _ => 0,
            })
            .sum()
    }

    /// The archive in newc format, every entry with modification time `mtime`.
    pub fn write(&self, mtime: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content_bytes() + self.entries.len() * 256);
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (type_bits, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &entry.inode {
                Inode::Dir => (0o040000, 2, &[], (0, 0)),
                Inode::File(data) => (0o100000, 1, data, (0, 0)),
                Inode::CharDev(major, minor) => (0o020000, 1, &[], (*major, *minor)),
                Inode::Symlink(target) => (0o120000, 1, target.as_bytes(), (0, 0)),
            };
            let header = Header { ino, mode: type_bits | (entry.mode & 0o7777), nlink, mtime, size: data.len(), rdev };
            header.write(&mut out, path);
            out.extend_from_slice(data);
            pad(&mut out);
        }
        Header { ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdev: (0, 0) }.write(&mut out, "TRAILER!!!");
        out
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: usize,
    rdev: (u32, u32),
}

impl Header {
    fn write(&self, out: &mut Vec<u8>, name: &str) {
        let size = u32::try_from(self.size).unwrap_or(u32::MAX);
        let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields =
            [self.ino, self.mode, 0, 0, self.nlink, self.mtime, size, 0, 0, self.rdev.0, self.rdev.1, namesize, 0];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad(out);
    }
}

/// Pads to a multiple of four bytes.
fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// (name, mode, rdev major, data) of each entry, read as the kernel reads them.
    fn read(mut bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
        };
        let padded = |n: usize| n.div_ceil(4) * 4;
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let (mode, size, major, namesize) = (field(bytes, 1), field(bytes, 6), field(bytes, 9), field(bytes, 11));
            let name = String::from_utf8(bytes[110..110 + namesize as usize - 1].to_vec()).unwrap();
            let data_at = padded(110 + namesize as usize);
            let data = bytes[data_at..data_at + size as usize].to_vec();
            bytes = &bytes[padded(data_at + size as usize)..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty());
                return out;
            }
            out.push((name, mode, major, data));
        }
    }

    #[test]
    fn newc_entries_parents_first_reproducible() {
        let mut archive = Archive::default();
        archive.add("lib/modules/6.1.0/kernel/a.ko", Inode::File(b"module".to_vec()), 0o644);
        archive.add("init", Inode::File(b"#!/bin/sh\n".to_vec()), 0o755);
        archive.add("dev/console", Inode::CharDev(5, 1), 0o600);
        archive.add("bin/sh", Inode::Symlink("busybox".into()), 0o777);
        let bytes = archive.write(0);
        assert_eq!(bytes, archive.write(0), "reproducible");
        let entries = read(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/6.1.0",
                "lib/modules/6.1.0/kernel",
                "lib/modules/6.1.0/kernel/a.ko"
            ]
        );
        let get = |name: &str| entries.iter().find(|e| e.0 == name).unwrap();
        assert_eq!((get("dev/console").1, get("dev/console").2), (0o020600, 5));
        assert_eq!((get("init").1, get("init").3.as_slice()), (0o100755, b"#!/bin/sh\n".as_slice()));
        assert_eq!((get("bin/sh").1, get("bin/sh").3.as_slice()), (0o120777, b"busybox".as_slice()));
        assert_eq!(get("lib").1, 0o040755);
    }
}
