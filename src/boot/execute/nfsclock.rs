//! The NFS clock: what the boot cost on the server of an NFS target root, for the report (the
//! RPCs it made, the time it waited on them), from /proc/self/mountstats. A reading costs about
//! 8 ms under TCG: one when the count starts, two per coldplug step while it runs, one for the
//! report.

use std::collections::BTreeMap;
use std::path::Path;

use crate::fs::nfs::{self, RpcStat};
use crate::model::paths::EXPORT;
use crate::model::step::Step;
use crate::sys::Sys;

/// Counts, from its start, the time the boot waited on the server of an NFS target root, less
/// what steps that load modules in parallel waited; for `apply`, the RPCs too.
#[derive(Default)]
pub(super) struct NfsClock {
    /// RPCs per operation when `apply` started counting (none: at boot, or not NFS).
    rpcs_from: Option<BTreeMap<String, RpcStat>>,
    /// The last reading, when the NFS mount went before the count's end (an image root's
    /// export unmounted once the image is in memory).
    stopped: Option<BTreeMap<String, RpcStat>>,
    /// The time waited when counting started ([`nfs::waited_ms`]), plus what parallel steps
    /// waited since (theirs, not counted again); `None`: not NFS, or not counted.
    waited_from: Option<u64>,
}

/// What the report shows of an NFS target root.
pub struct NfsCost {
    /// RPCs per operation since counting started (at boot: since the mount); empty: not NFS.
    pub rpcs: BTreeMap<String, u64>,
    /// The time waited on the server since counting started; `None`: not NFS, or not counted.
    pub waited_ms: Option<u64>,
}

impl NfsClock {
    /// Starts counting the time waited on the server of `root` (not NFS: nothing to count).
    pub(super) fn start(&mut self, sys: &dyn Sys, root: &Path) {
        self.waited_from = read(sys, root).as_ref().map(nfs::waited_ms);
    }

    /// [`Self::start`], the RPCs counted from here too (at boot, from the root's mount).
    pub(super) fn start_with_rpcs(&mut self, sys: &dyn Sys, root: &Path) {
        self.rpcs_from = read(sys, root);
        self.waited_from = self.rpcs_from.as_ref().map(nfs::waited_ms);
    }

    /// Before `step`: the time waited so far, when it loads modules in parallel threads while
    /// the count runs (coldplug), for [`Self::after_step`]. One thread's lookups on the NFS root
    /// overlap another's finit_module, so its NFS time stays out of the count. A single
    /// module's step waits on one thing at a time: its file's lookups, then finit_module (whose
    /// READs are not counted).
    pub(super) fn before_step(&self, step: &Step, sys: &dyn Sys, root: &Path) -> Option<u64> {
        let parallel = matches!(step, Step::Coldplug { .. }) && self.waited_from.is_some();
        parallel.then(|| waited(sys, root)).flatten()
    }

    /// After a step: what it waited since [`Self::before_step`] read `before` is left out.
    pub(super) fn after_step(&mut self, before: Option<u64>, sys: &dyn Sys, root: &Path) {
        let Some(before) = before else { return };
        let after = waited(sys, root).unwrap_or(before);
        self.waited_from = self.waited_from.map(|from| from.saturating_add(after.saturating_sub(before)));
    }

    /// The count ends here: the NFS mount of `root` goes.
    pub(super) fn stop(&mut self, sys: &dyn Sys, root: &Path) {
        self.stopped = read(sys, root);
    }

    /// What the report shows now (or when the count stopped).
    pub(super) fn cost(&self, sys: &dyn Sys, root: &Path) -> NfsCost {
        let now = self.stopped.clone().or_else(|| read(sys, root));
        let waited_ms = self.waited_from.zip(now.as_ref()).map(|(from, now)| nfs::waited_ms(now).saturating_sub(from));
        let rpcs = now.map(|now| nfs::since(self.rpcs_from.as_ref().unwrap_or(&BTreeMap::new()), &now));
        NfsCost { rpcs: rpcs.unwrap_or_default(), waited_ms }
    }
}

/// Per-op RPC statistics so far on the NFS mount on `root`, else on an image root's export in
/// its /run (the image's reads are READs there), `None` when neither is NFS.
fn read(sys: &dyn Sys, root: &Path) -> Option<BTreeMap<String, RpcStat>> {
    let stats = sys.proc_file("self/mountstats").ok()?;
    let stats = String::from_utf8_lossy(&stats);
    let on = |path: &Path| nfs::rpc_stats(&stats, &path.to_string_lossy());
    on(root).or_else(|| on(&root.join(EXPORT)))
}

/// The time waited on the server of `root` so far, `None` when it is not NFS.
fn waited(sys: &dyn Sys, root: &Path) -> Option<u64> {
    read(sys, root).as_ref().map(nfs::waited_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::step::Pass;
    use crate::sys::Fake;

    /// A kernel whose NFS root on / has made `lookups` LOOKUPs, waited on for `ms` in all.
    fn mounted(sys: &mut Fake, lookups: u64, ms: u64) {
        let stats = format!(
            "device 10.0.2.2:/img mounted on / with fstype nfs4 statvers=1.1\n\tper-op statistics\n\
             \t      LOOKUP: {lookups} {lookups} 0 0 0 0 0 {ms} 0\n\t        READ: 9 9 0 0 0 0 0 500 0\n"
        );
        sys.proc.insert("self/mountstats".into(), stats);
    }

    fn coldplug() -> Step {
        Step::Coldplug { pass: Pass::Late, devices: 3, modules: vec!["e1000".into()] }
    }

    #[test]
    fn what_a_coldplug_step_waited_is_left_out_of_the_count() {
        let (mut sys, root, mut clock) = (Fake::default(), Path::new("/"), NfsClock::default());
        mounted(&mut sys, 10, 100);
        assert_eq!(clock.before_step(&coldplug(), &sys, root), None, "not counting yet: no reading");
        clock.start(&sys, root);
        mounted(&mut sys, 12, 130);
        let before = clock.before_step(&coldplug(), &sys, root);
        assert_eq!(before, Some(130));
        mounted(&mut sys, 40, 190);
        clock.after_step(before, &sys, root);
        let module = Step::Module { name: "overlay".into(), needed_for: String::new() };
        assert_eq!(clock.before_step(&module, &sys, root), None, "one module at a time: its waits count");
        clock.after_step(None, &sys, root);
        mounted(&mut sys, 41, 200);
        let cost = clock.cost(&sys, root);
        assert_eq!(cost.waited_ms, Some(40), "30 ms before coldplug, 10 after it");
        let all = BTreeMap::from([("LOOKUP".to_string(), 41), ("READ".to_string(), 9)]);
        assert_eq!(cost.rpcs, all, "at boot every RPC on the root is the boot's");
    }

    #[test]
    fn apply_counts_the_rpcs_from_its_start_an_image_roots_are_its_exports_and_a_root_not_on_nfs_costs_nothing() {
        let (mut sys, root, mut clock) = (Fake::default(), Path::new("/"), NfsClock::default());
        mounted(&mut sys, 10, 100);
        clock.start_with_rpcs(&sys, root);
        mounted(&mut sys, 15, 120);
        let cost = clock.cost(&sys, root);
        assert_eq!((cost.rpcs, cost.waited_ms), (BTreeMap::from([("LOOKUP".to_string(), 5)]), Some(20)));
        let cost = clock.cost(&sys, Path::new("/srv"));
        assert_eq!((cost.rpcs, cost.waited_ms), (BTreeMap::new(), None), "no NFS mount there");
        // An image root: / is the image, its reads are the export's.
        let mut image = Fake::default();
        let stats = "device /dev/loop0 mounted on / with fstype squashfs\n\
                     device 10.0.2.2:/img mounted on /run/stateless/export with fstype nfs statvers=1.1\n\
                     \tper-op statistics\n\t        READ: 9 9 0 0 0 0 0 500 0\n";
        image.proc.insert("self/mountstats".into(), stats.into());
        let cost = NfsClock::default().cost(&image, root);
        assert_eq!(cost.rpcs, BTreeMap::from([("READ".to_string(), 9)]));
        let (sys, mut clock) = (Fake::default(), NfsClock::default());
        clock.start(&sys, root);
        let cost = clock.cost(&sys, root);
        assert_eq!((cost.rpcs, cost.waited_ms), (BTreeMap::new(), None));
    }
}
