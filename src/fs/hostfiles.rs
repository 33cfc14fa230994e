//! The hostname where real inits and libraries read it: /etc/hostname, /etc/hosts
//! (`127.0.1.1 <fqdn> <short>`, as Debian's installer writes it) and OpenRC's /etc/conf.d/hostname.
//! Written only through directory handles opened without following symlinks.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::fs::root::{replace_file, ImageRoot};
use crate::model::outcome::{Failure, Op};

/// The files [`write`] is to write, relative to the root: /etc/hostname, /etc/hosts, and
/// /etc/conf.d/hostname where the image has an /etc/conf.d (OpenRC).
pub fn planned(root: &ImageRoot) -> Vec<String> {
    let mut files = vec!["etc/hostname".to_string(), "etc/hosts".to_string()];
    if root.dir("etc/conf.d").is_ok() {
        files.push("etc/conf.d/hostname".into());
    }
    files
}

/// /etc/hosts with the `127.0.1.1` line replaced (or added) for this host.
pub fn hosts_content(existing: &str, fqdn: &str, short: &str) -> String {
    let names = if fqdn == short { short.to_string() } else { format!("{fqdn} {short}") };
    let ours = format!("127.0.1.1\t{names}");
    let mut replaced = false;
    let mut out = String::new();
    for line in existing.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !replaced {
                out.push_str(&ours);
                out.push('\n');
            }
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&ours);
        out.push('\n');
    }
    out
}

/// Writes `files` (as [`planned`] gave them), each replaced all at once: a full tmpfs leaves
/// the old file as it was, never an empty one. Returns the files written.
pub fn write(root: &ImageRoot, fqdn: &str, short: &str, files: &[String]) -> Result<Vec<String>, Failure> {
    let mut written = Vec::new();
    for file in files {
        let path = Path::new(file);
        let fail = |e: &io::Error| Failure::io(Op::Write, Some(&root.host_path(path)), e);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Failure::new(Op::Write, Some(path), "not a file path"));
        };
        let dir = root.dir(parent).map_err(|e| fail(&e))?;
        let content = match file.as_str() {
            "etc/hostname" => format!("{short}\n"),
            "etc/hosts" => hosts_content(&read(dir.fd.as_fd(), "hosts").map_err(|e| fail(&e))?, fqdn, short),
            "etc/conf.d/hostname" => format!("hostname=\"{short}\"\n"),
            _ => return Err(Failure::new(Op::Write, Some(path), "not a host file")),
        };
        replace_file(dir.fd.as_fd(), name, content.as_bytes(), 0o644).map_err(|e| fail(&e))?;
        written.push(file.clone());
    }
    Ok(written)
}

/// The text of a file in `dir`; empty when missing or not a regular file (a symlink is not followed).
fn read(dir: BorrowedFd<'_>, name: &str) -> io::Result<String> {
    let fd: OwnedFd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    if rustix::fs::fstat(&fd)?.st_mode & 0o170_000 != 0o100_000 {
        return Ok(String::new());
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd).take(1 << 20).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_line_is_replaced_once_or_appended() {
        let debian = "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1 localhost\n";
        assert_eq!(
            hosts_content(debian, "lab3-12.lab.example", "lab3-12"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tlab3-12.lab.example lab3-12\n::1 localhost\n"
        );
        assert_eq!(
            hosts_content("127.0.0.1 localhost", "Node12", "Node12"),
            "127.0.0.1 localhost\n127.0.1.1\tNode12\n"
        );
        assert_eq!(hosts_content("127.0.1.1 a\n127.0.1.1 b\n", "x", "x"), "127.0.1.1\tx\n");
        assert_eq!(hosts_content("", "x", "x"), "127.0.1.1\tx\n");
    }

    #[test]
    fn write_replaces_symlinks_instead_of_following_them() {
        let dir = std::env::temp_dir().join(format!("stateless-hostfiles-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc/conf.d")).unwrap();
        std::fs::write(dir.join("outside"), "keep").unwrap();
        std::os::unix::fs::symlink("../outside", dir.join("etc/hostname")).unwrap();
        std::fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        let root = ImageRoot::open(&dir).unwrap();
        let files = planned(&root);
        let written = write(&root, "lab3-12.lab.example", "lab3-12", &files).unwrap();
        assert_eq!(written, ["etc/hostname", "etc/hosts", "etc/conf.d/hostname"]);
        assert_eq!(std::fs::read_to_string(dir.join("outside")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dir.join("etc/hostname")).unwrap(), "lab3-12\n");
        assert_eq!(std::fs::read_to_string(dir.join("etc/conf.d/hostname")).unwrap(), "hostname=\"lab3-12\"\n");
        assert!(std::fs::read_to_string(dir.join("etc/hosts"))
            .unwrap()
            .ends_with("127.0.1.1\tlab3-12.lab.example lab3-12\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
