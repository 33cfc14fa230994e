//! What goes into the image once it is writable: the layers, the host and network files, the
//! report; then the handoff to its init.

use std::os::fd::AsFd;
use std::path::Path;

use super::{Done, Executor, Failed, Opened};
use crate::boot::network::{self};
use crate::boot::{handoff, report};
use crate::fs::hostfiles;
use crate::fs::layers::{self};
use crate::fs::netconf::{self, Resolver};
use crate::fs::tree;
use crate::model::facts::Learned;
use crate::model::interface::Interface;
use crate::model::layer::LayerKind;
use crate::model::lease::Lease;
use crate::model::outcome::{Failure, LayerResult, Mode, Op, REJECTED_SHOWN};
use crate::model::writable::DirName;

impl Executor<'_> {
    pub(super) fn apply_layer(&mut self, kind: LayerKind, name: &str) -> Done {
        // Where the layers go: the upper dir of each overlay still to be mounted (over its image
        // dir), and each dir made writable otherwise.
        let uppers = self.opened.iter().filter_map(|(dir, opened)| match opened {
            Opened::Upper(p) => Some(tree::Target {
                path: dir.as_path(),
                dst: p.upper.fd.as_fd(),
                lower: Some(p.writable.lower.fd.as_fd()),
            }),
            Opened::Tmpfs(_) => None,
        });
        let copied = self.opened.iter().filter_map(|(dir, opened)| match opened {
            Opened::Tmpfs(fresh) => Some(tree::Target { path: dir.as_path(), dst: fresh.fd.as_fd(), lower: None }),
            Opened::Upper(_) => None,
        });
        let targets: Vec<tree::Target<'_>> = uppers.chain(copied).collect();
        // Keys in the initramfs: no layer is applied unchecked; keys that do not parse, none.
        let keys = match self.trusted_keys(Path::new(name)) {
            Ok(keys) => keys,
            Err(failure) => return Done::degraded("not applied: the trusted keys cannot be read", failure),
        };
        let applied = match layers::open_root(self.target.fd(), &self.options.layers) {
            Ok(Some(layer_root)) => layers::apply(
                layer_root.as_fd(),
                &targets,
                (name, keys.as_deref()),
                &self.facts.writable.dirs(),
                &mut self.record.provenance,
            ),
            Ok(None) => return Done::skipped(format!("no layer root {}", self.options.layers)),
            Err(e) => layers::Applied { errors: vec![e], ..Default::default() },
        };
        if let Some(why) = applied.unsigned {
            return Done::degraded(
                "not applied: no manifest a trusted key signed",
                Failure::new(Op::Verify, Some(Path::new(name)), why),
            );
        }
        if !applied.present {
            return match applied.errors.first() {
                None => Done::skipped("not present"),
                Some(e) => Done::degraded("not applied", Failure::new(Op::Open, Some(Path::new(name)), e.clone())),
            };
        }
        for error in &applied.errors {
            log::warn!("{error}");
        }
        let mut rejected: Vec<String> = applied.rejected.iter().take(REJECTED_SHOWN).cloned().collect();
        if let Some(more) = applied.rejected.len().checked_sub(REJECTED_SHOWN).filter(|n| *n > 0) {
            rejected.push(format!("and {more} more"));
        }
        self.record.layers.push(LayerResult {
            layer: name.into(),
            files: applied.written,
            refused: applied.refused,
            errors: applied.errors.len(),
            identity: applied.identity.clone(),
            rejected,
        });
        let mut detail = format!(
            "{kind:?} layer: {} written, {} refused, {} errors",
            applied.written,
            applied.refused,
            applied.errors.len()
        )
        .to_lowercase();
        if let Some(identity) = &applied.identity {
            detail += &format!(", {} not as signed, identity {identity}", applied.rejected.len());
        }
        let failed = |message: &String| Failure::new(Op::Copy, Some(Path::new(name)), message.clone());
        match (applied.errors.first(), applied.rejected.first()) {
            (Some(first), _) => Done::degraded(detail, failed(first)),
            (None, Some(first)) => {
                Done::degraded(detail, Failure::new(Op::Verify, Some(Path::new(name)), format!("refused {first}")))
            }
            (None, None) => Done::ok(detail),
        }
    }

    pub(super) fn write_host_files(&mut self, fqdn: &str, short: &str, files: &[String]) -> Result<Done, Failure> {
        let written = hostfiles::write(&self.target, fqdn, short, files)?;
        for file in &written {
            self.record.provenance.record(Path::new(file), "hostname", None);
        }
        Ok(Done::ok(format!("{short}, {fqdn} in {}", written.join(", "))))
    }

    /// The files that keep the boot interface under the image's network manager, and tell
    /// later stages the lease: our DHCP client's, else what the kernel's configuration gave.
    /// The interface's name as udev's rules settle it is known also when the files are not written.
    pub(super) fn write_network_files(&mut self, step_name: &str) -> Result<Done, Failed> {
        if !self.run_is_tmpfs()? {
            return Ok(Done::skipped("/run is not a tmpfs: nothing written"));
        }
        // The name udev would give it, before anything is keyed by the name.
        let settled = (self.mode == Mode::Boot).then(|| {
            let cmdline = crate::config::Cmdline::parse(&self.cmdline);
            let sysfs = self.running.host_path("sys");
            network::settle_name(self.sys, &sysfs, &self.target, &cmdline, step_name)
        });
        let learned: Vec<Learned> = settled.iter().cloned().map(Learned::Renamed).collect();
        let facts = &self.facts;
        let name = settled.as_deref().or(facts.interface.as_deref()).unwrap_or(step_name);
        let renamed =
            (name != step_name).then(|| format!("renamed from {}; ", crate::model::text::escape(step_name.as_bytes())));
        // Name and MAC as probed: the files match on them.
        let interface = Interface {
            name: name.to_string(),
            mac: facts.mac,
            index: 0,
            up: true,
            carrier: true,
            loopback: false,
            addrs: facts.address.into_iter().collect(),
        };
        let lease = match &facts.dhcp {
            Some(dhcp) => dhcp.lease.clone(),
            None => Lease {
                server: facts.kernel_dhcp_server,
                address: facts.address,
                dns: facts.nameservers.clone(),
                domain: facts.domain.as_deref().and_then(|d| crate::model::hostname::validate(d).ok()),
                ..Lease::default()
            },
        };
        // When the kernel's own DHCP ran (a static line on a host with several interfaces and no
        // <device>), /proc/net/pnp has the servers it kept: it drops the line's then.
        let line = self.options.ip.as_ref().filter(|_| facts.kernel_dhcp_server.is_none());
        let mut lease = netconf::with_line_dns(lease, line);
        // The name the client got is the one to hand on, whichever source it came from.
        if let Some(h) = &facts.hostname {
            lease.hostname = Some(h.short.clone());
            lease.domain = lease.domain.take().or_else(|| h.domain.clone());
        }
        let from_layer =
            self.record.provenance.get(Path::new("etc/resolv.conf")).is_some_and(|w| w.source != "hostname");
        let resolver = match (from_layer, facts.writable.contains(&DirName::ETC)) {
            (true, _) => Resolver::Layer,
            (false, true) => Resolver::Etc,
            (false, false) => Resolver::RunOnly,
        };
        let uptime = rustix::time::clock_gettime(rustix::time::ClockId::Boottime).tv_sec;
        let written = netconf::write(&self.target, &interface, &lease, u64::try_from(uptime).unwrap_or(0), resolver)
            .map_err(|failure| Failed { failure, learned: learned.clone() })?;
        for file in &written {
            self.record.provenance.record(Path::new(file), "network", None);
        }
        let servers = netconf::line_servers(line).map(|s| format!("; {s}")).unwrap_or_default();
        Ok(Done::ok(format!("{}{}{servers}", renamed.unwrap_or_default(), written.join(", "))).learned(learned))
    }

    pub(super) fn write_report(&mut self, path: &str) -> Result<Done, Failure> {
        self.send_report();
        if !self.run_is_tmpfs()? {
            return Ok(Done::skipped("/run is not a tmpfs: no report written"));
        }
        report::write(self, Path::new(path))?;
        Ok(Done::ok(format!("written, {} ms since start", self.elapsed_ms())))
    }

    pub(super) fn hand_off(&mut self, init: Option<&str>, fallbacks: &[String]) -> Result<Done, Failure> {
        if let Some(wanted) = self.options.init.as_deref().filter(|w| init != Some(*w)) {
            let first = init.unwrap_or("the fallbacks");
            log::warn!("stateless.init={wanted} is not an executable file in the image; {first} goes first");
        }
        log::info!("{} ms from start to handoff", self.elapsed_ms());
        let chain: Vec<String> = init.map(str::to_string).into_iter().chain(fallbacks.iter().cloned()).collect();
        let tried = handoff::exec_chain(self.sys, &chain, &self.init_args);
        let list: Vec<String> = tried.iter().map(|(init, e)| format!("{init}: {e}")).collect();
        let errno = tried.last().and_then(|(_, e)| e.raw_os_error());
        Err(Failure {
            errno,
            ..Failure::new(Op::Exec, None, format!("no init could be executed ({})", list.join("; ")))
        })
    }
}
