//! The hostname where real inits and libraries read it: /etc/hostname, /etc/hosts
//! (`127.0.1.1 <fqdn> <short>`, as Debian's installer writes it) and OpenRC's /etc/conf.d/hostname.
//! Written only through directory handles opened without following symlinks.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::fs::tree;

/// The files [`write`] would write, relative to /etc.
pub fn planned(root: &Path) -> Vec<String> {
    let mut files = vec!["hostname".to_string(), "hosts".to_string()];
    let conf_d = crate::boot::plan::open_root(root)
        .ok()
        .and_then(|fd| tree::open_dir_nofollow(fd.as_fd(), Path::new("etc/conf.d")).ok());
    if conf_d.is_some() {
        files.push("conf.d/hostname".into());
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

/// Writes the hostname files under `<root>/etc`; returns the files written, relative to /etc.
pub fn write(root: &Path, fqdn: &str, short: &str) -> Result<Vec<String>, (PathBuf, io::Error)> {
    let etc_path = root.join("etc");
    let at = |name: &str| etc_path.join(name);
    let root_fd = crate::boot::plan::open_root(root).map_err(|e| (root.to_path_buf(), e))?;
    let etc = tree::open_dir_nofollow(root_fd.as_fd(), Path::new("etc")).map_err(|e| (etc_path.clone(), e.into()))?;
    let mut written = Vec::new();
    replace(etc.as_fd(), "hostname", &format!("{short}\n")).map_err(|e| (at("hostname"), e))?;
    written.push("hostname".to_string());
    let hosts = read(etc.as_fd(), "hosts").map_err(|e| (at("hosts"), e))?;
    replace(etc.as_fd(), "hosts", &hosts_content(&hosts, fqdn, short)).map_err(|e| (at("hosts"), e))?;
    written.push("hosts".to_string());
    if let Ok(conf_d) = tree::open_dir_nofollow(etc.as_fd(), Path::new("conf.d")) {
        replace(conf_d.as_fd(), "hostname", &format!("hostname=\"{short}\"\n"))
            .map_err(|e| (at("conf.d/hostname"), e))?;
        written.push("conf.d/hostname".to_string());
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
    let mut text = String::new();
    std::fs::File::from(fd).take(1 << 20).read_to_string(&mut text)?;
    Ok(text)
}

/// Replaces `name` in `dir` by a new 0644 file with `content`.
fn replace(dir: BorrowedFd<'_>, name: &str, content: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o644))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
    std::fs::File::from(fd).write_all(content.as_bytes())
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
        let written = write(&dir, "lab3-12.lab.example", "lab3-12").unwrap();
        assert_eq!(written, ["hostname", "hosts", "conf.d/hostname"]);
        assert_eq!(planned(&dir), written);
        assert_eq!(std::fs::read_to_string(dir.join("outside")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dir.join("etc/hostname")).unwrap(), "lab3-12\n");
        assert_eq!(std::fs::read_to_string(dir.join("etc/conf.d/hostname")).unwrap(), "hostname=\"lab3-12\"\n");
        assert!(std::fs::read_to_string(dir.join("etc/hosts"))
            .unwrap()
            .ends_with("127.0.1.1\tlab3-12.lab.example lab3-12\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
