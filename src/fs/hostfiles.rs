//! The hostname where real inits and libraries read it: /etc/hostname, /etc/hosts
//! (`127.0.1.1 <fqdn> <short>`, as Debian's installer writes it) and OpenRC's /etc/conf.d/hostname.
//! Written only through directory handles opened without following symlinks.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

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

/// /etc/hosts with the `127.0.1.1` line replaced (or added) for this host; every other line
/// kept byte for byte.
pub fn hosts_content(existing: &[u8], fqdn: &str, short: &str) -> Vec<u8> {
    let names = if fqdn == short { short.to_string() } else { format!("{fqdn} {short}") };
    let ours = format!("127.0.1.1\t{names}\n");
    let mut replaced = false;
    let mut out = Vec::with_capacity(existing.len() + ours.len());
    let text = existing.strip_suffix(b"\n").unwrap_or(existing);
    for line in text.split(|b| *b == b'\n').filter(|_| !existing.is_empty()) {
        if line.split(|b| b.is_ascii_whitespace()).find(|w| !w.is_empty()) == Some(b"127.0.1.1") {
            if !replaced {
                out.extend_from_slice(ours.as_bytes());
            }
            replaced = true;
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    if !replaced {
        out.extend_from_slice(ours.as_bytes());
    }
    out
}

/// Largest /etc/hosts read; a larger one is an error, never cut short.
const HOSTS_LIMIT: u64 = 1 << 20;

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
            "etc/hostname" => format!("{short}\n").into_bytes(),
            // As the image sees it: a symlink to /run/hosts is read there.
            "etc/hosts" => {
                let existing = root.read_file("/etc/hosts", HOSTS_LIMIT).map_err(|e| fail(&e))?;
                hosts_content(&existing.unwrap_or_default(), fqdn, short)
            }
            "etc/conf.d/hostname" => format!("hostname=\"{short}\"\n").into_bytes(),
            _ => return Err(Failure::new(Op::Write, Some(path), "not a host file")),
        };
        replace_file(dir.fd.as_fd(), name, &content, 0o644).map_err(|e| fail(&e))?;
        written.push(file.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_line_is_replaced_once_or_appended() {
        let debian = "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1 localhost\n";
        let hosts =
            |existing: &str, fqdn, short| String::from_utf8(hosts_content(existing.as_bytes(), fqdn, short)).unwrap();
        assert_eq!(
            hosts(debian, "lab3-12.lab.example", "lab3-12"),
            "127.0.0.1\tlocalhost\n127.0.1.1\tlab3-12.lab.example lab3-12\n::1 localhost\n"
        );
        assert_eq!(hosts("127.0.0.1 localhost", "Node12", "Node12"), "127.0.0.1 localhost\n127.0.1.1\tNode12\n");
        assert_eq!(hosts("127.0.1.1 a\n127.0.1.1 b\n", "x", "x"), "127.0.1.1\tx\n");
        assert_eq!(hosts("", "x", "x"), "127.0.1.1\tx\n");
        assert_eq!(hosts("\n\n  127.0.1.1 old\n", "x", "x"), "\n\n127.0.1.1\tx\n");
        assert_eq!(hosts_content(b"10.0.0.1 caf\xe9\n", "x", "x"), b"10.0.0.1 caf\xe9\n127.0.1.1\tx\n");
    }

    #[test]
    fn a_symlinked_hosts_is_read_where_the_image_points_it() {
        let dir = std::env::temp_dir().join(format!("stateless-hostfiles-link-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::write(dir.join("run/hosts"), "127.0.0.1\tlocalhost\n").unwrap();
        std::os::unix::fs::symlink("/run/hosts", dir.join("etc/hosts")).unwrap();
        let root = ImageRoot::open(&dir).unwrap();
        write(&root, "x", "x", &["etc/hosts".to_string()]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("etc/hosts")).unwrap(), "127.0.0.1\tlocalhost\n127.0.1.1\tx\n");
        assert_eq!(std::fs::read_to_string(dir.join("run/hosts")).unwrap(), "127.0.0.1\tlocalhost\n");
        std::fs::remove_dir_all(&dir).unwrap();
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
