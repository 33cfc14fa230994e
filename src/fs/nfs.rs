//! What an NFS mount cost: RPCs per operation, from /proc/self/mountstats. The report gives
//! the RPCs the boot caused on the NFS root, so their count can be measured and kept down
//! (hundreds of clients boot from one server), and the time the boot waited on the server.

use std::collections::BTreeMap;

/// One operation's line of per-op statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcStat {
    /// RPCs made.
    pub ops: u64,
    /// Their summed time from the request's start to its completion (the kernel's "execute"
    /// column): for a synchronous call, the time its caller waited on the server.
    pub execute_ms: u64,
}

/// Per-op statistics (`GETATTR`, `READ`, ...) of the NFS mount on `mount_point`; `None` when
/// no NFS filesystem is mounted there.
pub fn rpc_stats(mountstats: &str, mount_point: &str) -> Option<BTreeMap<String, RpcStat>> {
    let mut lines = mountstats.lines();
    let header = format!(" mounted on {mount_point} with fstype ");
    lines.find(|l| {
        let fstype = l.strip_prefix("device ").and_then(|l| l.split_once(&header)).map(|(_, rest)| rest);
        fstype.and_then(|f| f.split_whitespace().next()).is_some_and(|f| f == "nfs" || f == "nfs4")
    })?;
    let mut stats = BTreeMap::new();
    for line in lines.take_while(|l| !l.starts_with("device ")) {
        let Some((op, numbers)) = line.trim().split_once(": ") else { continue };
        let is_op = !op.is_empty() && op.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        // ops, transmissions, timeouts, bytes sent, bytes received, queue, rtt, execute (ms).
        let numbers: Vec<u64> = numbers.split_whitespace().map_while(|n| n.parse().ok()).collect();
        if let (true, Some(&ops)) = (is_op, numbers.first()) {
            stats.insert(op.to_string(), RpcStat { ops, execute_ms: numbers.get(7).copied().unwrap_or(0) });
        }
    }
    Some(stats)
}

/// The operations a boot's own system calls wait on: names, attributes, listings, opens.
/// Left out: `READ` (the kernel reads a module file inside finit_module, counted as module
/// init, and reads ahead in the background; the few a boot makes itself count as its own
/// time), `FSSTAT` (overlayfs asks for it inside mount(2), already counted), and what the
/// client sends on its own (NFSv4 `CLOSE`, `DELEGRETURN`, lease renewals; `WRITE`, `COMMIT`).
const WAITED_ON: [&str; 9] =
    ["GETATTR", "LOOKUP", "LOOKUPP", "ACCESS", "READDIR", "READDIRPLUS", "READLINK", "OPEN", "OPEN_NOATTR"];

/// The summed execute time of the [`WAITED_ON`] operations: the time spent waiting on the
/// server for lookups, attributes and listings (a sum: calls in parallel threads add up).
pub fn waited_ms(stats: &BTreeMap<String, RpcStat>) -> u64 {
    stats.iter().filter(|(op, _)| WAITED_ON.contains(&op.as_str())).map(|(_, s)| s.execute_ms).sum()
}

/// The RPCs made between two readings, per operation (operations with none left out).
pub fn since(before: &BTreeMap<String, RpcStat>, after: &BTreeMap<String, RpcStat>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n.ops.saturating_sub(before.get(op).map_or(0, |b| b.ops))))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "\
device proc mounted on /proc with fstype proc
device 10.0.2.2:/systemd mounted on / with fstype nfs statvers=1.1
\topts:\trw,vers=3,rsize=4096
\tbytes:\t1 2 3 4 5 6 7 8
\tRPC iostats version: 1.1  p/v: 100003/3 (nfs)
\tper-op statistics
\t        NULL: 0 0 0 0 0 0 0 0
\t     GETATTR: 120 120 0 14000 13000 3 90 95 0
\t        READ: 310 310 0 40000 1300000 9 400 410 0
device 10.0.2.2:/home mounted on /home with fstype nfs statvers=1.1
\tper-op statistics
\t     GETATTR: 7 7 0 1 1 1 1 1 0
";

    #[test]
    fn stats_of_the_root_mount_only() {
        let stats = rpc_stats(STATS, "/").unwrap();
        assert_eq!(stats.get("GETATTR"), Some(&RpcStat { ops: 120, execute_ms: 95 }));
        assert_eq!(stats.get("READ"), Some(&RpcStat { ops: 310, execute_ms: 410 }));
        assert_eq!(stats.get("NULL"), Some(&RpcStat::default()));
        assert_eq!(stats.len(), 3, "{stats:?}");
        assert_eq!(waited_ms(&stats), 95, "READ left out");
        let mut more = stats.clone();
        more.insert("FSSTAT".into(), RpcStat { ops: 2, execute_ms: 7 });
        more.insert("CLOSE".into(), RpcStat { ops: 9, execute_ms: 30 });
        more.insert("LOOKUP".into(), RpcStat { ops: 3, execute_ms: 5 });
        assert_eq!(waited_ms(&more), 100, "only the calls a boot waits on");
        assert_eq!(rpc_stats(STATS, "/home").unwrap().get("GETATTR").map(|s| s.ops), Some(7));
        assert!(rpc_stats(STATS, "/proc").is_none(), "not nfs");
        assert!(rpc_stats(STATS, "/srv").is_none());
        assert!(rpc_stats("garbage\n\n:::\n", "/").is_none());
        // Short lines (older kernels, other versions): the ops count without a time.
        let v4 = "device 10.0.2.2:/ mounted on / with fstype nfs4 statvers=1.1\n\tper-op statistics\n\t READ: 5 5 0\n";
        assert_eq!(rpc_stats(v4, "/").unwrap().get("READ"), Some(&RpcStat { ops: 5, execute_ms: 0 }));
        assert!(rpc_stats("device x mounted on / with fstype nfsd\n", "/").is_none());
    }

    #[test]
    fn since_drops_what_did_not_change() {
        let before = rpc_stats(STATS, "/").unwrap();
        let mut after = before.clone();
        after.insert("READ".into(), RpcStat { ops: 320, execute_ms: 420 });
        after.insert("LOOKUP".into(), RpcStat { ops: 4, execute_ms: 3 });
        let made = since(&before, &after);
        assert_eq!(made, BTreeMap::from([("LOOKUP".to_string(), 4), ("READ".to_string(), 10)]));
    }
}
