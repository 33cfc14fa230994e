//! What an NFS mount cost: RPCs per operation, from /proc/self/mountstats. The report gives
//! the RPCs the boot caused on the NFS root, so their count can be measured and kept down
//! (hundreds of clients boot from one server).

use std::collections::BTreeMap;

/// RPCs per operation (`GETATTR`, `READ`, ...) of the NFS mount on `mount_point`; `None` when
/// no NFS filesystem is mounted there.
pub fn rpc_counts(mountstats: &str, mount_point: &str) -> Option<BTreeMap<String, u64>> {
    let mut lines = mountstats.lines();
    let header = format!(" mounted on {mount_point} with fstype ");
    lines.find(|l| {
        let fstype = l.strip_prefix("device ").and_then(|l| l.split_once(&header)).map(|(_, rest)| rest);
        fstype.and_then(|f| f.split_whitespace().next()).is_some_and(|f| f == "nfs" || f == "nfs4")
    })?;
    let mut counts = BTreeMap::new();
    for line in lines.take_while(|l| !l.starts_with("device ")) {
        let Some((op, numbers)) = line.trim().split_once(": ") else { continue };
        let is_op = !op.is_empty() && op.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
        if let (true, Some(Ok(ops))) = (is_op, numbers.split_whitespace().next().map(str::parse::<u64>)) {
            counts.insert(op.to_string(), ops);
        }
    }
    Some(counts)
}

/// The RPCs made between two readings, per operation (operations with none left out).
pub fn since(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n.saturating_sub(before.get(op).copied().unwrap_or(0))))
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
    fn counts_of_the_root_mount_only() {
        let counts = rpc_counts(STATS, "/").unwrap();
        assert_eq!(counts.get("GETATTR"), Some(&120));
        assert_eq!(counts.get("READ"), Some(&310));
        assert_eq!(counts.get("NULL"), Some(&0));
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert_eq!(rpc_counts(STATS, "/home").unwrap().get("GETATTR"), Some(&7));
        assert!(rpc_counts(STATS, "/proc").is_none(), "not nfs");
        assert!(rpc_counts(STATS, "/srv").is_none());
        assert!(rpc_counts("garbage\n\n:::\n", "/").is_none());
        let v4 = "device 10.0.2.2:/ mounted on / with fstype nfs4 statvers=1.1\n\tper-op statistics\n\t READ: 5 5 0\n";
        assert_eq!(rpc_counts(v4, "/").unwrap().get("READ"), Some(&5));
        assert!(rpc_counts("device x mounted on / with fstype nfsd\n", "/").is_none());
    }

    #[test]
    fn since_drops_what_did_not_change() {
        let before = rpc_counts(STATS, "/").unwrap();
        let mut after = before.clone();
        after.insert("READ".into(), 320);
        after.insert("LOOKUP".into(), 4);
        let made = since(&before, &after);
        assert_eq!(made, BTreeMap::from([("LOOKUP".to_string(), 4), ("READ".to_string(), 10)]));
    }
}
