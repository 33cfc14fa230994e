//! The root check of initramfs mode: before anything moves into the NFS root, what the boot
//! after the switch needs from it is read, so that a root that mounts but cannot be read fails
//! while the initramfs is still there (its policy, `stateless.break=`, a shell) rather than at
//! the exec of init. Options as after the switch: the image's /etc/stateless.conf under the
//! command line, so the init checked is the one the handoff will choose and the layer root the
//! one the layers phase will read.

use std::os::fd::AsFd;

use rustix::fs::OFlags;
use rustix::io::Errno;

use crate::boot::{plan, CONFIG, CONFIG_LIMIT};
use crate::fs::root::ImageRoot;
use crate::fs::{layers, tree};
use crate::model::outcome::{Failure, Op};
use crate::model::text::escape;
use crate::sys::Sys;

/// How much of the init is read: its ELF header and first pages, what exec reads first.
pub const INIT_HEAD: usize = 64 * 1024;

/// What the check read.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// The init the handoff will exec, as the image names it.
    pub init: String,
    /// Its first bytes read (all of it when smaller than [`INIT_HEAD`]).
    pub bytes: usize,
}

/// Reads from `root` (with `cmdline`) its /etc/stateless.conf, the first [`INIT_HEAD`] bytes of
/// the init the handoff will choose (symlinks resolved inside the root), and the listing of the
/// layer root: one under /run in `running`, the root `stateless` runs in, whose /run moves into
/// `root` at the switch (an image root's layers are on its export, mounted there). A config
/// file that cannot be read for another reason than EIO is a diagnostic after the switch, as it
/// would be without the check.
pub fn check(sys: &dyn Sys, root: &ImageRoot, running: &ImageRoot, cmdline: &[u8]) -> Result<Checked, Failure> {
    let config = root.read_file(CONFIG, CONFIG_LIMIT);
    if let Err(e) = &config {
        if e.raw_os_error() == Some(Errno::IO.raw_os_error()) {
            return Err(Failure::io(Op::Read, Some(&root.host_path(CONFIG)), e));
        }
    }
    let (options, _) = crate::boot::options_with(cmdline, config);
    let (init, fallbacks) = plan::init(options.init.as_deref(), root);
    let Some(init) = init else {
        let shown: Vec<String> = fallbacks.iter().map(|f| escape(f.as_bytes())).collect();
        let message = format!("no init in the new root: none of {} is an executable file", shown.join(", "));
        let no_init = Failure::new(Op::Open, Some(root.path()), message);
        return Err(Failure { errno: Some(Errno::NOENT.raw_os_error()), ..no_init });
    };
    let path = root.host_path(&init);
    let read = |e: &std::io::Error| Failure::io(Op::Read, Some(&path), e);
    let file = root.open_file(&init, OFlags::PATH).and_then(|n| tree::open_regular(&n));
    let file = file.map_err(|e| read(&e.into()))?;
    let mut head = vec![0; INIT_HEAD];
    let bytes = sys.read_start(file.as_fd(), &path, &mut head).map_err(|e| read(&e))?;
    if bytes == 0 {
        return Err(Failure::new(Op::Read, Some(&path), "empty: nothing to execute"));
    }
    let moves_in = std::path::Path::new(&options.layers).starts_with("/run");
    layer_root(if moves_in { running } else { root }, &options.layers)?;
    Ok(Checked { init, bytes })
}

/// The layer root opened and its first entries listed. An image without one boots without
/// layers, as in on-root mode (the layers phase says so): only one that cannot be read fails.
fn layer_root(root: &ImageRoot, layers: &str) -> Result<(), Failure> {
    let shown = root.host_path(layers);
    let fd = match layers::open_root(root.fd(), layers) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Ok(()),
        Err(why) => return Err(Failure::new(Op::Open, Some(&shown), why)),
    };
    let listed = rustix::fs::Dir::read_from(&fd).and_then(|mut dir| dir.next().transpose().map(drop));
    listed.map_err(|e| Failure::io(Op::Read, Some(&shown), &e.into()))
}

/// Whether the check failed with EIO: the server answered, but not with the file's content.
pub fn is_eio(failure: &Failure) -> bool {
    failure.errno == Some(Errno::IO.raw_os_error())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::sys::{Call, Fake};

    use crate::fs::Tmp;

    /// A root whose /sbin/init is an absolute symlink to a file only the root has.
    fn root(tag: &str, size: usize) -> Tmp {
        let t = Tmp::new(&format!("rootcheck-{tag}"));
        let dir = t.0.clone();
        for d in ["sbin", "lib/stateless-test", "diskless/base", "etc"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let init = dir.join("lib/stateless-test/init");
        std::fs::write(&init, vec![0x7f; size]).unwrap();
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/lib/stateless-test/init", dir.join("sbin/init")).unwrap();
        t
    }

    #[test]
    fn the_init_is_read_through_its_symlink_inside_the_root() {
        let t = root("symlink", 100 * 1024);
        let image = ImageRoot::open(&t.0).unwrap();
        let sys = Fake::default();
        let checked = check(&sys, &image, &image, b"").unwrap();
        assert_eq!(checked, Checked { init: "/sbin/init".into(), bytes: INIT_HEAD }, "the first 64 KiB");
        assert_eq!(sys.calls(), [Call::Read(t.0.join("sbin/init"))]);
        // A small init is read whole; the image's stateless.conf names the init and the layer root.
        std::fs::write(t.0.join("lib/stateless-test/small"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(t.0.join("lib/stateless-test/small"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = "stateless.init=/lib/stateless-test/small\nstateless.layers=/etc\n";
        std::fs::write(t.0.join("etc/stateless.conf"), conf).unwrap();
        let checked = check(&sys, &image, &image, b"").unwrap();
        assert_eq!(checked, Checked { init: "/lib/stateless-test/small".into(), bytes: 10 });
        // The command line over the config, as after the switch: no layer root is no failure
        // (no layers, as on-root), one that is not a dir is.
        assert!(check(&sys, &image, &image, b"stateless.layers=/nowhere").is_ok());
        let failure = check(&sys, &image, &image, b"stateless.layers=/lib/stateless-test/small").unwrap_err();
        assert!(failure.to_string().contains("/lib/stateless-test/small"), "{failure}");
    }

    #[test]
    fn what_the_check_refuses() {
        let t = root("refused", 10);
        let image = ImageRoot::open(&t.0).unwrap();
        let eio = Fake::failing(|c| matches!(c, Call::Read(_)).then_some(Errno::IO.raw_os_error()));
        let failure = check(&eio, &image, &image, b"").unwrap_err();
        assert!(is_eio(&failure), "{failure}");
        assert_eq!(
            failure.to_string(),
            format!("read {}: input/output error (os error 5)", t.0.join("sbin/init").display())
        );
        // Resolved outside the root, the symlink would lead to the host's /bin/sh.
        std::fs::remove_file(t.0.join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("/bin/sh", t.0.join("sbin/init")).unwrap();
        let failure = check(&Fake::default(), &image, &image, b"").unwrap_err();
        assert!(failure.message.starts_with("no init in the new root"), "{failure}");
        // `stateless.init=` is the command line's or the image's: shown escaped.
        let failure = check(&Fake::default(), &image, &image, b"stateless.init=/x\x1b[2J").unwrap_err();
        assert!(failure.message.starts_with("no init in the new root: none of /x\\x1b[2J, /sbin/init"), "{failure}");
        assert!(!is_eio(&failure));
        std::fs::remove_file(t.0.join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("/lib/stateless-test/init", t.0.join("sbin/init")).unwrap();
        std::fs::write(t.0.join("lib/stateless-test/init"), "").unwrap();
        assert!(check(&Fake::default(), &image, &image, b"").unwrap_err().message.contains("empty"));
        std::fs::write(t.0.join("lib/stateless-test/init"), "x").unwrap();
        std::fs::remove_dir_all(t.0.join("diskless")).unwrap();
        std::fs::write(t.0.join("diskless"), "").unwrap();
        let failure = check(&Fake::default(), &image, &image, b"").unwrap_err();
        assert!(failure.message.contains("not a directory"), "{failure}");
    }

    /// A layer root under /run (an image root's, on its export) is read where /run is before
    /// the switch: in the root `stateless` runs in.
    #[test]
    fn a_layer_root_under_run_is_read_in_the_running_root() {
        let t = root("run-layers", 10);
        let image = ImageRoot::open(&t.0).unwrap();
        let running = Tmp::new("rootcheck-running");
        std::fs::create_dir_all(running.0.join("run/stateless/export")).unwrap();
        std::fs::write(running.0.join("run/stateless/export/diskless"), "").unwrap();
        let initramfs = ImageRoot::open(&running.0).unwrap();
        let failure = check(&Fake::default(), &image, &initramfs, b"stateless.image=x.img").unwrap_err();
        assert!(failure.to_string().contains("run/stateless/export/diskless: not a directory"), "{failure}");
        std::fs::remove_file(running.0.join("run/stateless/export/diskless")).unwrap();
        std::fs::create_dir(running.0.join("run/stateless/export/diskless")).unwrap();
        assert!(check(&Fake::default(), &image, &initramfs, b"stateless.image=x.img").is_ok());
        // Given in the image, it is the image's, not the running root's.
        std::fs::write(running.0.join("diskless"), "").unwrap();
        assert!(
            check(&Fake::default(), &image, &initramfs, b"stateless.image=x.img stateless.layers=/diskless").is_ok()
        );
    }
}
