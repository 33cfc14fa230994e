//! Two network namespaces joined by a veth pair (192.0.2.0/24, TEST-NET-1: no traffic leaves
//! them), for DHCP servers and `stateless dhcp` (tests/dhcp.rs, tests/docs.rs). Needs root and `ip`.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip (iproute2)");
    assert!(status.success(), "ip {args:?}");
}

/// A server namespace and a client namespace; the client's end of the veth is `vc0` (down, no
/// address, the MAC given), the server's `vs0` (192.0.2.1/24). Both go away on drop, after
/// `children` (servers started in them) are killed.
pub struct Net {
    pub server: String,
    pub client: String,
    pub children: Vec<Child>,
}

impl Net {
    pub fn new(mac: &str) -> Net {
        super::require_root();
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let net = Net { server: format!("sl-s-{tag}"), client: format!("sl-c-{tag}"), children: Vec::new() };
        ip(&["netns", "add", &net.server]);
        ip(&["netns", "add", &net.client]);
        // Created inside the namespaces, so parallel tests never see each other's names.
        ip(&["-n", &net.server, "link", "add", "vs0", "type", "veth", "peer", "name", "vc0", "netns", &net.client]);
        ip(&["-n", &net.client, "link", "set", "vc0", "address", mac]);
        ip(&["-n", &net.server, "addr", "add", "192.0.2.1/24", "dev", "vs0"]);
        ip(&["-n", &net.server, "link", "set", "vs0", "up"]);
        ip(&["-n", &net.server, "route", "add", "255.255.255.255", "dev", "vs0"]);
        net
    }

    /// `stateless dhcp vc0 ARGS --json` in the client namespace: exit code and the JSON.
    pub fn client(&self, args: &[&str]) -> (Output, Value) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client, super::BIN, "dhcp", "vc0", "--json"])
            .args(args)
            .output()
            .unwrap();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out, json)
    }

    pub fn client_ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip").args(["-n", &self.client]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `serve` on a UDP socket on `port` in the server namespace, in a thread, until the
    /// test ends.
    pub fn server_thread(
        &self,
        port: u16,
        serve: impl FnOnce(UdpSocket, Arc<AtomicBool>) + Send + 'static,
    ) -> Arc<AtomicBool> {
        let path = format!("/var/run/netns/{}", self.server);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(path).unwrap();
            rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                .unwrap();
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
            socket.set_broadcast(true).unwrap();
            socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            serve(socket, flag);
        });
        stop
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
