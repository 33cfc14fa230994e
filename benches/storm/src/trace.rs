//! The trace: one recorded boot's NFSv3 and MOUNT calls, one JSON object a line (README.md).
//! Handles are numbers given where a reply taught them, so a replay never needs handle bytes.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Mount,
    Nfs,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Mount => "MOUNT",
            Program::Nfs => "NFS",
        }
    }
    pub fn number(self) -> (u32, u32) {
        match self {
            Program::Mount => (nfs3_types::mount::PROGRAM, nfs3_types::mount::VERSION),
            Program::Nfs => (nfs3_types::nfs3::PROGRAM, nfs3_types::nfs3::VERSION),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proc {
    MountNull,
    Mnt,
    Umnt,
    Null,
    Getattr,
    Lookup,
    Access,
    Readlink,
    Read,
    Readdir,
    Readdirplus,
    Fsstat,
    Fsinfo,
    Pathconf,
}

/// Each replayed procedure: its name in traces, program and procedure number. Writes are not
/// replayed: a boot from a read-only root makes none.
const PROCS: [(Proc, &str, Program, u32); 14] = [
    (Proc::MountNull, "MNT_NULL", Program::Mount, 0),
    (Proc::Mnt, "MNT", Program::Mount, 1),
    (Proc::Umnt, "UMNT", Program::Mount, 3),
    (Proc::Null, "NULL", Program::Nfs, 0),
    (Proc::Getattr, "GETATTR", Program::Nfs, 1),
    (Proc::Lookup, "LOOKUP", Program::Nfs, 3),
    (Proc::Access, "ACCESS", Program::Nfs, 4),
    (Proc::Readlink, "READLINK", Program::Nfs, 5),
    (Proc::Read, "READ", Program::Nfs, 6),
    (Proc::Readdir, "READDIR", Program::Nfs, 16),
    (Proc::Readdirplus, "READDIRPLUS", Program::Nfs, 17),
    (Proc::Fsstat, "FSSTAT", Program::Nfs, 18),
    (Proc::Fsinfo, "FSINFO", Program::Nfs, 19),
    (Proc::Pathconf, "PATHCONF", Program::Nfs, 20),
];

impl Proc {
    fn entry(self) -> (Proc, &'static str, Program, u32) {
        // Every Proc is in PROCS; the fallback is never taken.
        PROCS.into_iter().find(|e| e.0 == self).unwrap_or(PROCS[0])
    }
    pub fn name(self) -> &'static str {
        self.entry().1
    }
    pub fn program(self) -> Program {
        self.entry().2
    }
    pub fn number(self) -> u32 {
        self.entry().3
    }
    fn parse(name: &str) -> Option<Proc> {
        PROCS.iter().find(|e| e.1 == name).map(|e| e.0)
    }
    /// Procedures whose argument is a handle (all but the NULLs and the MOUNT ones).
    fn takes_handle(self) -> bool {
        self.program() == Program::Nfs && self != Proc::Null
    }
}

/// One call as the replay makes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub line: usize,
    pub proc: Proc,
    pub fh: u32,
    pub name: Vec<u8>,
    pub offset: u64,
    pub count: u32,
    pub cookie: u64,
    pub dircount: u32,
    pub maxcount: u32,
    pub access: u32,
    /// The status the recorded reply had (0: OK); another one in the replay is an error.
    pub status: u32,
    /// MNT, LOOKUP: the id of the handle the reply carries.
    pub new: Option<u32>,
    /// READDIRPLUS: name -> id of the handles its reply carries.
    pub entries: BTreeMap<Vec<u8>, u32>,
}

/// A line as written; see README.md for each field.
#[derive(Deserialize)]
struct Line {
    t: Option<f64>,
    rt: Option<f64>,
    proc: String,
    fh: Option<u32>,
    name: Option<String>,
    path: Option<String>,
    offset: Option<u64>,
    count: Option<u32>,
    cookie: Option<u64>,
    dircount: Option<u32>,
    maxcount: Option<u32>,
    access: Option<u32>,
    status: Option<u32>,
    new: Option<u32>,
    entries: Option<BTreeMap<String, u32>>,
}

#[derive(Debug)]
pub struct Trace {
    pub calls: Vec<Call>,
    /// The calls in the order their replies came (reply time, then trace order).
    pub by_reply: Vec<usize>,
    /// For call i: it is issued once the first `ready[i]` calls of `by_reply` have their replies,
    /// i.e. every reply that came before call i in the recording.
    pub ready: Vec<usize>,
}

impl Trace {
    pub fn parse(text: &str) -> Result<Trace, String> {
        let mut calls = Vec::new();
        let mut times: Vec<(f64, f64)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                continue;
            }
            let line: Line = serde_json::from_str(raw).map_err(|e| format!("trace line {line_no}: {e}"))?;
            let last_rt = times.last().map_or(0.0, |t| t.1);
            let last_t = times.last().map_or(0.0, |t| t.0);
            let t = line.t.unwrap_or(last_rt);
            let rt = line.rt.unwrap_or(t);
            if t < last_t {
                return Err(format!("trace line {line_no}: t {t} is before the previous call's {last_t}"));
            }
            if rt < t {
                return Err(format!("trace line {line_no}: reply time {rt} is before the call's {t}"));
            }
            times.push((t, rt));
            calls.push(call(line, line_no)?);
        }
        let mut by_reply: Vec<usize> = (0..calls.len()).collect();
        let key = |i: usize| times.get(i).map_or(0.0, |t| t.1);
        by_reply.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        let ready = (0..calls.len())
            .map(|i| {
                let t = times.get(i).map_or(0.0, |t| t.0);
                by_reply.partition_point(|&j| key(j) < t || (key(j) == t && j < i))
            })
            .collect();
        let trace = Trace { calls, by_reply, ready };
        trace.check_handles()?;
        Ok(trace)
    }

    /// Each handle is learned once, by a reply that came before every call that uses it; a
    /// READDIRPLUS that goes on (cookie not 0) follows an earlier listing of its directory.
    fn check_handles(&self) -> Result<(), String> {
        let mut learned: HashMap<u32, usize> = HashMap::new();
        let mut listed: HashMap<u32, usize> = HashMap::new();
        for (pos, &i) in self.by_reply.iter().enumerate() {
            let Some(call) = self.calls.get(i) else { continue };
            for id in call.new.iter().chain(call.entries.values()) {
                if learned.insert(*id, pos).is_some() {
                    return Err(format!("trace line {}: handle {id} is learned a second time", call.line));
                }
            }
            if matches!(call.proc, Proc::Readdir | Proc::Readdirplus) {
                listed.entry(call.fh).or_insert(pos);
            }
        }
        for (call, &ready) in self.calls.iter().zip(&self.ready) {
            let before = |map: &HashMap<u32, usize>| map.get(&call.fh).is_some_and(|&pos| pos < ready);
            if call.proc.takes_handle() && !before(&learned) {
                return Err(format!("trace line {}: handle {} is used before a reply taught it", call.line, call.fh));
            }
            if call.cookie != 0 && !before(&listed) {
                return Err(format!(
                    "trace line {}: cookie without an earlier listing of handle {}",
                    call.line, call.fh
                ));
            }
        }
        Ok(())
    }

    /// How many calls of each procedure one client makes.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for call in &self.calls {
            *counts.entry(call.proc.name()).or_insert(0) += 1;
        }
        counts
    }
}

fn call(line: Line, line_no: usize) -> Result<Call, String> {
    let err = |what: &str| format!("trace line {line_no}: {what}");
    let proc = Proc::parse(&line.proc).ok_or_else(|| err(&format!("unknown or unreplayed proc {:?}", line.proc)))?;
    let fh = match (proc.takes_handle(), line.fh) {
        (true, Some(fh)) => fh,
        (true, None) => return Err(err(&format!("{} needs fh", line.proc))),
        (false, _) => 0,
    };
    let name = match proc {
        Proc::Lookup => line.name.ok_or_else(|| err("LOOKUP needs name"))?,
        Proc::Mnt | Proc::Umnt => line.path.ok_or_else(|| err(&format!("{} needs path", line.proc)))?,
        _ => String::new(),
    };
    let status = line.status.unwrap_or(0);
    if line.new.is_some() && (!matches!(proc, Proc::Mnt | Proc::Lookup) || status != 0) {
        return Err(err("only a MNT or LOOKUP that succeeded has new"));
    }
    if line.entries.is_some() && (proc != Proc::Readdirplus || status != 0) {
        return Err(err("only a READDIRPLUS that succeeded has entries"));
    }
    if proc == Proc::Read && line.count.is_none() {
        return Err(err("READ needs count"));
    }
    let entries = line.entries.unwrap_or_default().into_iter().map(|(name, id)| (name.into_bytes(), id)).collect();
    Ok(Call {
        line: line_no,
        proc,
        fh,
        name: name.into_bytes(),
        offset: line.offset.unwrap_or(0),
        count: line.count.unwrap_or(32768),
        cookie: line.cookie.unwrap_or(0),
        dircount: line.dircount.unwrap_or(32768),
        maxcount: line.maxcount.unwrap_or(32768),
        access: line.access.unwrap_or(0x1f),
        status,
        new: line.new,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALK: &str = r#"
# a mount, a listing and a file read in two parallel READs
{"t":0.0,"rt":0.1,"proc":"MNT","path":"/storm","new":0}
{"t":0.2,"rt":0.3,"proc":"READDIRPLUS","fh":0,"entries":{"a":1,"b":2}}
{"t":0.4,"rt":0.5,"proc":"LOOKUP","fh":0,"name":"a","new":3}
{"t":0.6,"rt":0.9,"proc":"READ","fh":3,"offset":0,"count":4096}
{"t":0.6,"rt":0.8,"proc":"READ","fh":3,"offset":4096,"count":4096}
{"t":1.0,"proc":"GETATTR","fh":2}
"#;

    #[test]
    fn concurrency_follows_the_reply_times() {
        let trace = Trace::parse(WALK).unwrap();
        assert_eq!(trace.by_reply, [0, 1, 2, 4, 3, 5]);
        // Both READs wait for the LOOKUP only; the GETATTR for both READs.
        assert_eq!(trace.ready, [0, 1, 2, 3, 3, 5]);
        assert_eq!(trace.calls[1].entries.get(&b"b"[..]), Some(&2));
        assert_eq!(trace.counts().get("READ"), Some(&2));
    }

    #[test]
    fn every_proc_is_in_the_table_once() {
        for (proc, name, program, number) in PROCS {
            assert_eq!(Proc::parse(name), Some(proc));
            assert_eq!((proc.name(), proc.program(), proc.number()), (name, program, number));
        }
    }

    #[test]
    fn without_times_the_calls_go_one_by_one() {
        let trace = Trace::parse(
            "{\"proc\":\"MNT\",\"path\":\"/x\",\"new\":0}\n{\"proc\":\"NULL\"}\n{\"proc\":\"GETATTR\",\"fh\":0}",
        )
        .unwrap();
        assert_eq!(trace.ready, [0, 1, 2]);
    }

    /// nfspcap (tshark) on the head of a real squashfs-root boot (`editcap -r` frames 1-47,
    /// 90-112, 263-272 of benches/storm/record's boot.pcap): the export's MNT, the image's
    /// LOOKUP, READs at its end, the layer tree listed beside it.
    #[test]
    #[ignore = "needs tshark (tests/run installs it)"]
    fn a_recorded_boot_converts_to_a_trace_this_replayer_takes() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let run = |what: &str| {
            let out = std::process::Command::new(format!("{dir}/nfspcap"))
                .args([what, &format!("{dir}/tests/squashfs-boot-head.pcap")])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "nfspcap {what} (needs tshark: apt-get install tshark): {stderr}");
            String::from_utf8(out.stdout).unwrap()
        };
        let trace = Trace::parse(&run("trace")).unwrap();
        let procs: Vec<&str> = trace.calls.iter().map(|c| c.proc.name()).collect();
        assert_eq!(procs.len(), 23, "{procs:?}");
        assert_eq!(procs[..4], ["MNT_NULL", "MNT", "NULL", "FSINFO"]);
        let mnt = &trace.calls[1];
        assert_eq!((mnt.name.as_slice(), mnt.new), (&b"/trixie-systemd"[..], Some(0)));
        let image = &trace.calls[8];
        assert_eq!((image.proc, image.fh, image.name.as_slice()), (Proc::Lookup, 0, &b"trixie-systemd.squashfs"[..]));
        let tail = &trace.calls[17];
        assert_eq!((tail.proc, tail.fh, tail.offset, tail.count), (Proc::Read, image.new.unwrap(), 154_949_632, 1024));
        let listing = trace.calls.last().unwrap();
        assert_eq!(listing.proc, Proc::Readdirplus);
        assert_eq!(
            listing.entries.keys().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
            ["README", "base", "hosts", "labs", "networks"]
        );
        let counts: serde_json::Value = serde_json::from_str(&run("count")).unwrap();
        assert_eq!((counts["calls"].as_u64(), counts["read_bytes"].as_u64()), (Some(23), Some(3172)));
        // The files READ, first read first, by the paths their LOOKUPs named.
        assert_eq!(run("order"), "/trixie-systemd.squashfs.sha256\n/trixie-systemd.squashfs\n");
    }

    #[test]
    fn bad_traces_are_refused_with_their_line() {
        for (text, want) in [
            ("{\"proc\":\"WRITE\",\"fh\":0}", "trace line 1: unknown or unreplayed proc \"WRITE\""),
            ("{\"proc\":\"GETATTR\",\"fh\":7}", "trace line 1: handle 7 is used before a reply taught it"),
            ("{\"proc\":\"GETATTR\"}", "trace line 1: GETATTR needs fh"),
            ("{\"t\":1,\"proc\":\"NULL\"}\n{\"t\":0.5,\"proc\":\"NULL\"}", "trace line 2: t 0.5 is before"),
            (
                "{\"proc\":\"MNT\",\"path\":\"/\",\"new\":0}\n{\"proc\":\"LOOKUP\",\"fh\":0,\"name\":\"a\",\"new\":0}",
                "handle 0 is learned a second time",
            ),
            (
                "{\"t\":0,\"rt\":2,\"proc\":\"MNT\",\"path\":\"/\",\"new\":0}\n{\"t\":1,\"proc\":\"GETATTR\",\"fh\":0}",
                "trace line 2: handle 0 is used before",
            ),
            (
                "{\"proc\":\"MNT\",\"path\":\"/\",\"new\":0}\n{\"proc\":\"READDIRPLUS\",\"fh\":0,\"cookie\":5}",
                "cookie without an earlier listing",
            ),
            (
                "{\"proc\":\"LOOKUP\",\"fh\":0,\"name\":\"a\",\"status\":2,\"new\":1}",
                "only a MNT or LOOKUP that succeeded has new",
            ),
            ("not json", "trace line 1: expected ident"),
        ] {
            let got = Trace::parse(text).unwrap_err();
            assert!(got.contains(want), "{text}: {got}");
        }
    }
}
