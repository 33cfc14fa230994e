//! Loading a kernel module by name from the image's `modules.dep`, dependencies first,
//! without modprobe (the image may have none, and the kernel's request_module needs one).

pub mod coldplug;
pub mod config;
pub mod fnmatch;
pub mod index;
pub mod load;
pub mod resolve;

use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::OFlags;

use crate::fs::root::ImageRoot;
use crate::sys::Sys;

/// Module names compare with `-` and `_` as the same character.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| x == y || (x == b'-' || x == b'_') && (y == b'-' || y == b'_'))
}

/// The module name of a path in modules.dep (`kernel/fs/overlayfs/overlay.ko.xz` → `overlay`).
fn name_of(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file)
}

/// The files to load for `name`, in load order (dependencies first, the module last), from the
/// text of modules.dep (`path: dep1 dep2`, deps listed nearest first). `None` when not listed.
pub fn load_order(modules_dep: &str, name: &str) -> Option<Vec<String>> {
    let line = modules_dep.lines().find(|l| l.split_once(':').is_some_and(|(p, _)| same_name(name_of(p), name)))?;
    let (path, deps) = line.split_once(':')?;
    let mut order: Vec<String> = deps.split_whitespace().rev().map(str::to_string).collect();
    order.push(path.trim().to_string());
    Some(order)
}

/// Largest index file read (Debian's modules.alias is about 1.3 MiB, modules.dep 400 KiB).
const MODULES_DEP_LIMIT: u64 = 16 << 20;

/// The index of the module dir `dir` (absolute, as `root` sees it): the files depmod writes,
/// each read as `root` sees it; a missing one is empty, except modules.dep.
pub fn read_index(root: &ImageRoot, dir: &Path) -> Result<index::Index, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        match root.read_file(&path.to_string_lossy(), MODULES_DEP_LIMIT) {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(format!("{}: {e}", root.host_path(&path).display())),
        }
    };
    let dep = read("modules.dep")?
        .ok_or_else(|| format!("{}: not found", root.host_path(dir.join("modules.dep")).display()))?;
    let optional = |name: &str| read(name).map(Option::unwrap_or_default);
    Ok(index::Index::parse(
        &dep,
        &optional("modules.alias")?,
        &optional("modules.softdep")?,
        &optional("modules.builtin")?,
        &optional("modules.builtin.modinfo")?,
    ))
}

/// Loads `name` and its dependencies from `/lib/modules/<release>/` of `root` (the root
/// `stateless` runs in), every file opened as that root sees it. Already loaded is fine.
pub fn load(sys: &dyn Sys, root: &ImageRoot, release: &str, name: &str) -> Result<(), String> {
    let dir = Path::new("/lib/modules").join(release);
    let dep_path = dir.join("modules.dep");
    let shown = |p: &Path| root.host_path(p).display().to_string();
    let dep = match root.read_file(&dep_path.to_string_lossy(), MODULES_DEP_LIMIT) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => return Err(format!("{}: not found", shown(&dep_path))),
        Err(e) => return Err(format!("{}: {e}", shown(&dep_path))),
    };
    let order = load_order(&dep, name).ok_or_else(|| format!("module {name} not in {}", shown(&dep_path)))?;
    // Checked before loading anything: an absolute entry would make `join` leave the module
    // dir just as `..` would.
    if let Some(bad) = order.iter().find(|f| f.starts_with('/') || f.split('/').any(|c| c == "..")) {
        return Err(format!("modules.dep entry {bad:?} leaves the module dir"));
    }
    for file in order {
        let path = dir.join(&file);
        let opened = root.open_file(&path, OFlags::RDONLY).map_err(|e| format!("open {}: {e}", shown(&path)))?;
        match sys.load_module(opened.as_fd(), &root.host_path(&path), "") {
            Ok(()) => log::info!("loaded module {}", name_of(&file)),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {}
            Err(e) => return Err(format!("load {}: {e}", shown(&path))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, Fake};

    const DEP: &str = "kernel/fs/overlayfs/overlay.ko:\n\
        kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
        kernel/fs/nfs/nfsv3.ko.xz: kernel/fs/nfs/nfs.ko.xz\n";

    #[test]
    fn load_order_puts_dependencies_first() {
        assert_eq!(load_order(DEP, "overlay").unwrap(), ["kernel/fs/overlayfs/overlay.ko"]);
        assert_eq!(
            load_order(DEP, "virtio-net").unwrap(),
            ["kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko"]
        );
        assert_eq!(load_order(DEP, "nfsv3").unwrap(), ["kernel/fs/nfs/nfs.ko.xz", "kernel/fs/nfs/nfsv3.ko.xz"]);
        assert_eq!(load_order(DEP, "nfs"), None, "only listed as a dependency");
        assert_eq!(load_order("garbage\n::\n", "overlay"), None);
    }

    #[test]
    fn load_calls_finit_in_order_and_accepts_already_loaded() {
        let dir = std::env::temp_dir().join(format!("stateless-modules-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib/modules/6.1.0")).unwrap();
        std::fs::write(dir.join("lib/modules/6.1.0/modules.dep"), DEP).unwrap();
        for ko in
            ["kernel/drivers/net/virtio_net.ko", "kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko"]
        {
            let path = dir.join("lib/modules/6.1.0").join(ko);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let root = ImageRoot::open(&dir).unwrap();
        let sys = Fake::failing(|c| matches!(c, Call::LoadModule(p, _) if p.ends_with("failover.ko")).then_some(17));
        load(&sys, &root, "6.1.0", "virtio_net").unwrap();
        let calls = sys.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls[2],
            Call::LoadModule(dir.join("lib/modules/6.1.0/kernel/drivers/net/virtio_net.ko"), String::new())
        );
        assert!(load(&sys, &root, "6.1.0", "nosuch").unwrap_err().contains("not in"));
        assert!(load(&sys, &root, "9.9", "overlay").is_err());
        std::fs::write(
            dir.join("lib/modules/6.1.0/modules.dep"),
            "/tmp/evil/overlay.ko:\nkernel/x.ko: ../../../evil.ko\n",
        )
        .unwrap();
        assert!(load(&sys, &root, "6.1.0", "overlay").unwrap_err().contains("leaves the module dir"));
        assert!(load(&sys, &root, "6.1.0", "x").unwrap_err().contains("leaves the module dir"));
        assert_eq!(sys.calls().len(), 3, "nothing outside the module dir was loaded");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
