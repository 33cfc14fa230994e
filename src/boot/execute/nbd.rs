//! Initramfs mode's NBD root (`root=nbd:`): the image a server exports attached as /dev/nbdN
//! through the kernel's NBD netlink interface, the handshake ours ([`crate::net::nbd`]), no
//! nbd-client; checked through dm-verity when `roothash=` gives its root hash; mounted
//! read-only on /root; and a process of its own left to reconnect the device when its server
//! goes ([`crate::boot::supervise`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::OFlags;

use super::root::Rounds;
use super::verity::OpenImage;
use super::{Done, Executor};
use crate::boot::plan::NEW_ROOT;
use crate::boot::supervise::{self, Watch};
use crate::model::image::{BootedImage, ImageFormat, Verified};
use crate::model::nbdroot::{Attached, FailedNbd, NbdRoot};
use crate::model::outcome::{Failure, Op};
use crate::model::text::{escape, escape_path};
use crate::net::nbd::genl::NbdConnect;
use crate::net::nbd::Export;

/// Seconds before an NBD request counts as lost and its connection dead (the kernel's
/// NBD_ATTR_TIMEOUT): then the supervisor reconnects.
const REQUEST_TIMEOUT: u64 = 30;
/// Seconds the kernel holds the root's I/O while its connection is dead, waiting for the
/// supervisor's reconnect (NBD_ATTR_DEAD_CONN_TIMEOUT), before it fails it with EIO.
const DEAD_CONN_TIMEOUT: u64 = 120;

/// A device attached to a server's export.
struct Connected {
    server: std::net::SocketAddrV4,
    socket: OwnedFd,
    export: Export,
    index: u32,
}

impl Executor<'_> {
    /// The NBD root `root`: each server in the plan's order, within `stateless.nfs.timeout=`
    /// (each try its server's share), all again with backoff until then; the first that does
    /// the handshake for the export, read-only, gives the kernel its socket
    /// (NBD_CMD_CONNECT: /dev/nbdN). The device's head names its filesystem (squashfs or
    /// EROFS); with `root_hash` it is read through dm-verity; mounted read-only on /root and
    /// checked as a tree root is ([`rootcheck`]). Then the supervisor starts.
    pub(super) fn mount_nbd_root(&mut self, root: &NbdRoot, root_hash: Option<&str>) -> Result<Done, Failure> {
        let started = Instant::now();
        if let Err(e) = self.load_module("nbd") {
            log::warn!("nbd for the NBD root: {e}; going on (built in?)");
        }
        let (connected, tries, failed) = self.connect_nbd(root)?;
        let Connected { server, socket, export, index } = connected;
        let source = root.source(server);
        // The supervisor from now on, before the first read of the device: a server that took
        // the handshake and then stalls or dies gives way to another here too (the kernel holds
        // the reads while it reconnects), not only after the boot. The one connected first: a
        // restarted server is tried again before the others.
        let mut servers = vec![server];
        servers.extend(root.servers.iter().filter(|s| **s != server));
        let supervisor = self.start_supervisor(
            &socket,
            Watch { index, export: root.export.clone(), servers, size: export.size, socket: -1, kmsg: None },
        );
        drop(socket); // the kernel holds it, the supervisor a copy
        let said = match supervisor {
            Some(pid) => format!("supervisor pid {pid}"),
            None => "no supervisor: the root does not survive its server".into(),
        };
        let export_name = root.export.clone();
        self.record.nbd_root =
            Some(Attached { server, export: export_name, index, size: export.size, failed, supervisor });
        let node = PathBuf::from(format!("dev/nbd{index}"));
        let path = self.running.host_path(&node);
        let device = self
            .running
            .open_file(&node, OFlags::RDONLY | OFlags::CLOEXEC)
            .map_err(|e| Failure::io(Op::Open, Some(&path), &e.into()))?;
        let mut head = vec![0; ImageFormat::HEAD];
        let read = self.sys.read_start(device.as_fd(), &path, &mut head);
        head.truncate(read.map_err(|e| Failure::io(Op::Read, Some(&path), &e))?);
        let format = ImageFormat::of(&head).ok_or_else(|| {
            let why = format!("{source}: not a squashfs or EROFS image: neither magic");
            Failure::new(Op::Read, Some(&path), why)
        })?;
        if let Some(named) = root.fstype.as_deref().filter(|t| *t != format.fstype()) {
            let why = format!("{source}: the command line says {}, the image is {format}", escape(named.as_bytes()));
            return Err(Failure::new(Op::Mount, Some(&path), why));
        }
        let image = OpenImage { fd: device.as_fd(), size: export.size, format, head: &head, beside: None, path: &path };
        let trusted = self.image_trust(&image, root_hash)?;
        drop(device);
        if let Err(e) = self.load_module(format.fstype()) {
            log::warn!("{} for the NBD root: {e}; going on (built in?)", format.fstype());
        }
        let mounted = match &trusted {
            Some(trusted) => {
                self.load_verity()?;
                self.verity_device(&trusted.target, &path, &path)?
            }
            None => path.clone(),
        };
        self.record.image = Some(BootedImage {
            source: source.clone(),
            target: None,
            format,
            size: export.size,
            mtime: None,
            sha256: None,
            in_memory: false,
            verity: trusted.as_ref().map(|t| Verified {
                root_hash: t.target.root_hash.clone(),
                trusted: t.by.clone(),
                device: mounted.to_string_lossy().into_owned(),
            }),
        });
        let at = self
            .running
            .create_dir_all(NEW_ROOT, 0o755)
            .map_err(|e| self.io(Op::Mkdir, &self.running, NEW_ROOT, &e))?;
        self.mount_image(&mounted, &path, format, &at.path, &root.mount_data(), trusted.is_some())?;
        let checked = self.check_image_root(&at.path, &source, trusted.is_some())?;
        let ms = started.elapsed().as_millis();
        let read = format!("read {} bytes of {}", checked.bytes, escape(checked.init.as_bytes()));
        Ok(Done::ok(format!(
            "{source} on /dev/nbd{index} ({tries} tries, {ms} ms); {format} on {} on /root; {read}; {said}",
            escape_path(&mounted)
        )))
    }

    /// The first server of `root` (in order, round after round with backoff, within
    /// `stateless.nfs.timeout=`) whose export the kernel took: the device, how many tries it
    /// took, and the servers that failed before it.
    fn connect_nbd(&mut self, root: &NbdRoot) -> Result<(Connected, u32, Vec<FailedNbd>), Failure> {
        let bound = Duration::from_secs(u64::from(self.options.nfs_timeout));
        let share = bound / u32::try_from(root.servers.len()).unwrap_or(u32::MAX).max(1);
        let (mut rounds, mut tries) = (Rounds::new(bound), 0);
        let mut failed: Vec<FailedNbd> = Vec::new();
        loop {
            for &server in &root.servers {
                let Some(left) = rounds.left() else { break };
                tries += 1;
                match self.attach_nbd(server, &root.export, left.min(share)) {
                    Ok((socket, export, index)) => {
                        failed.retain(|f| f.server != server);
                        return Ok((Connected { server, socket, export, index }, tries, failed));
                    }
                    Err(e) => {
                        let reason = escape(e.to_string().as_bytes());
                        log::warn!("nbd root {}: {reason}", root.source(server));
                        failed.retain(|f| f.server != server);
                        failed.push(FailedNbd { server, reason });
                    }
                }
            }
            if rounds.over() {
                let said: Vec<String> = failed.iter().map(|f| format!("; {}: {}", f.server, f.reason)).collect();
                let message = format!(
                    "{root}: gave up after {tries} tries in {} s (stateless.nfs.timeout={}){}",
                    rounds.waited().as_secs(),
                    self.options.nfs_timeout,
                    said.concat()
                );
                return Err(Failure::new(Op::Mount, Some(Path::new("/dev/nbd")), message));
            }
            rounds.pause(self.sys, "nbd root");
        }
    }

    /// One try: the handshake with `server` for `export`, then NBD_CMD_CONNECT with its socket.
    fn attach_nbd(
        &self,
        server: std::net::SocketAddrV4,
        export: &str,
        bound: Duration,
    ) -> std::io::Result<(OwnedFd, Export, u32)> {
        let (socket, served) = self.sys.nbd_connect(server, export, bound)?;
        let fd = u32::try_from(socket.as_raw_fd()).map_err(|_| std::io::Error::other("a negative socket"))?;
        let connect = NbdConnect {
            index: None,
            size: served.size,
            block_size: u64::from(served.block_size()),
            server_flags: u64::from(served.flags),
            timeout: REQUEST_TIMEOUT,
            dead_conn_timeout: DEAD_CONN_TIMEOUT,
            backend: export.to_owned(),
            fd,
        };
        let index = self.sys.nbd_attach(&connect)?;
        Ok((socket, served, index))
    }

    /// The supervisor ([`crate::boot::supervise`]) started with a copy of `socket` and of an
    /// open /dev/kmsg, which it inherits (dup(2) gives them without CLOEXEC) and this process
    /// closes once it has started: its pid. None when it could not start: the boot goes on,
    /// the root then as mortal as its server.
    fn start_supervisor(&self, socket: &OwnedFd, mut watch: Watch) -> Option<u32> {
        let socket = match rustix::io::dup(socket) {
            Ok(fd) => fd,
            Err(e) => {
                log::error!("nbd supervisor: no copy of the socket: {e}");
                return None;
            }
        };
        // Its root is the initramfs, emptied by the switch: the log's node is opened now.
        let kmsg = rustix::fs::open(self.running.host_path("dev/kmsg"), OFlags::WRONLY, rustix::fs::Mode::empty());
        let kmsg = kmsg.inspect_err(|e| log::warn!("nbd supervisor: /dev/kmsg: {e}; it logs nothing")).ok();
        (watch.socket, watch.kmsg) = (socket.as_raw_fd(), kmsg.as_ref().map(AsRawFd::as_raw_fd));
        match supervise::argv(&watch).and_then(|argv| self.sys.spawn_self(&argv)) {
            Ok(pid) => {
                // Never the OOM killer's choice: its death would leave the root without a
                // reconnect. Set here, while /proc is this root's.
                let adj = self.running.host_path(format!("proc/{pid}/oom_score_adj"));
                if let Err(e) = std::fs::write(&adj, "-1000") {
                    log::warn!("nbd supervisor: {}: {e}", escape_path(&adj));
                }
                Some(pid)
            }
            Err(e) => {
                log::error!("nbd supervisor: {e}: the root does not survive its server");
                None
            }
        }
    }
}
