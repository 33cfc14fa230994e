//! storm: a boot storm against one NFS server. Replays a recorded NFSv3 boot (the trace,
//! README.md) for N clients at once, each from its own network namespace, and says how long
//! until all N were done; or writes a synthetic trace of a directory tree.

mod client;
mod net;
mod nfs;
mod rpc;
mod synth;
mod trace;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use client::ClientReport;
use trace::Trace;

const USAGE: &str = "usage:
  storm replay TRACE --clients N [--netns PREFIX] [--server ADDR] [--mount-port 20048] [--nfs-port 2049]
               [--timeout SECS] [--json FILE]
      client i (1..N) connects from the network namespace PREFIXi (/run/netns/PREFIXi);
      without --netns, from this one. Default server 127.0.0.1, timeout 900 s.
  storm synth DIR --export PATH [--read-size BYTES]
      writes a synthetic trace of the tree DIR, exported as PATH, to stdout (READs of 131072 bytes)";

struct Options {
    positional: Vec<String>,
    named: BTreeMap<String, String>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options { positional: Vec::new(), named: BTreeMap::new() };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = args.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    options.named.insert(name.to_string(), value);
                }
                None => options.positional.push(arg),
            }
        }
        Ok(options)
    }

    fn take<T: std::str::FromStr>(&mut self, name: &str, default: Option<T>) -> Result<T, String> {
        match self.named.remove(name) {
            Some(value) => value.parse().map_err(|_| format!("--{name}: not a valid value: {value}")),
            None => default.ok_or_else(|| format!("--{name} is needed")),
        }
    }

    fn done(&self) -> Result<(), String> {
        match self.named.keys().next() {
            Some(name) => Err(format!("unknown option --{name}")),
            None => Ok(()),
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let result = Options::parse(args).and_then(|options| match command.as_str() {
        "replay" => replay(options),
        "synth" => synth(options),
        _ => Err(USAGE.to_string()),
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::from(1)
        }
    }
}

fn synth(mut options: Options) -> Result<ExitCode, String> {
    let [dir] = options.positional.as_slice() else { return Err(USAGE.to_string()) };
    let dir = PathBuf::from(dir);
    let export: String = options.take("export", None)?;
    let read_size = options.take("read-size", Some(131_072))?;
    options.done()?;
    print!("{}", synth::synth(&dir, &export, read_size)?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Run {
    clients: usize,
    finished: usize,
    /// From the start until the last client was done (finished or failed).
    all_done_s: f64,
    client_s: Spread,
    /// One client's calls in the trace, by procedure.
    trace_ops: BTreeMap<&'static str, u64>,
    ops: BTreeMap<&'static str, u64>,
    calls: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    first_errors: Vec<String>,
    bytes_sent: u64,
    bytes_received: u64,
    read_bytes: u64,
    timeout_s: u64,
    /// The replay's own CPU time (user and system, all threads): near `all_done_s`, the replay
    /// and not the server set the pace.
    replay_cpu_s: Option<f64>,
}

#[derive(Serialize)]
struct Spread {
    min: f64,
    median: f64,
    max: f64,
}

fn replay(mut options: Options) -> Result<ExitCode, String> {
    let [path] = options.positional.as_slice() else { return Err(USAGE.to_string()) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let trace = Arc::new(Trace::parse(&text)?);
    let clients: usize = options.take("clients", None)?;
    let prefix: Option<String> = options.named.remove("netns");
    let server: Ipv4Addr = options.take("server", Some(Ipv4Addr::LOCALHOST))?;
    let mount_port = options.take("mount-port", Some(20048))?;
    let nfs_port = options.take("nfs-port", Some(2049))?;
    let timeout_s: u64 = options.take("timeout", Some(900))?;
    let json: Option<String> = options.named.remove("json");
    options.done()?;
    if clients == 0 || clients > 4096 {
        return Err(format!("--clients: {clients} is not from 1 to 4096"));
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("tokio: {e}"))?;
    let (reports, all_done_s) = runtime.block_on(async {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(timeout_s);
        let mut set = tokio::task::JoinSet::new();
        for i in 1..=clients {
            let trace = Arc::clone(&trace);
            let connector = net::Netns {
                netns: prefix.as_ref().map(|p| PathBuf::from(format!("/run/netns/{p}{i}"))),
                server,
                mount_port,
                nfs_port,
            };
            // Distinct xids per client, as distinct kernels would pick.
            let first_xid = u32::try_from(i).unwrap_or(0).wrapping_mul(0x0100_0000) ^ 0x5eed;
            set.spawn(async move {
                (i, client::replay(&trace, &connector, &format!("storm{i}"), first_xid, deadline).await)
            });
        }
        let mut reports = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(report) => reports.push(report),
                Err(e) => return Err(format!("a client task failed: {e}")),
            }
        }
        Ok((reports, start.elapsed().as_secs_f64()))
    })?;
    let run = summarize(&trace, reports, all_done_s, timeout_s);
    if let Some(json) = json {
        let text = serde_json::to_string_pretty(&run).map_err(|e| format!("json: {e}"))?;
        std::fs::write(&json, text + "\n").map_err(|e| format!("{json}: {e}"))?;
    }
    println!("{}", summary_line(&run));
    Ok(if run.finished == run.clients && run.errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

fn summarize(trace: &Trace, mut reports: Vec<(usize, ClientReport)>, all_done_s: f64, timeout_s: u64) -> Run {
    reports.sort_by_key(|r| r.0);
    let mut seconds: Vec<f64> = reports.iter().map(|r| r.1.seconds).collect();
    seconds.sort_by(f64::total_cmp);
    let at = |q: usize| seconds.get(q).copied().unwrap_or(0.0);
    let mut run = Run {
        clients: reports.len(),
        finished: reports.iter().filter(|r| r.1.finished).count(),
        all_done_s,
        client_s: Spread { min: at(0), median: at(seconds.len() / 2), max: at(seconds.len().saturating_sub(1)) },
        trace_ops: trace.counts(),
        ops: BTreeMap::new(),
        calls: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        first_errors: Vec::new(),
        bytes_sent: 0,
        bytes_received: 0,
        read_bytes: 0,
        timeout_s,
        replay_cpu_s: own_cpu_s(),
    };
    for (i, report) in reports {
        for (proc, n) in report.ops {
            *run.ops.entry(proc).or_insert(0) += n;
            run.calls += n;
        }
        for (kind, n) in report.errors {
            run.errors += n;
            *run.error_kinds.entry(kind).or_insert(0) += n;
        }
        if let Some(first) = report.first_error.filter(|_| run.first_errors.len() < 10) {
            run.first_errors.push(format!("client {i}: {first}"));
        }
        run.bytes_sent += report.bytes_sent;
        run.bytes_received += report.bytes_received;
        run.read_bytes += report.read_bytes;
    }
    run
}

/// utime + stime of this process, from /proc/self/stat (fields 14 and 15, in 1/100 s: USER_HZ).
fn own_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

fn summary_line(run: &Run) -> String {
    let ops: Vec<String> = run.ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "storm: {} clients, {} finished, all done in {:.2} s (each {:.2}/{:.2}/{:.2} s min/median/max); {} calls ({}); {:.1} MB read; replay CPU {:.2} s; {} errors{}",
        run.clients,
        run.finished,
        run.all_done_s,
        run.client_s.min,
        run.client_s.median,
        run.client_s.max,
        run.calls,
        ops.join(", "),
        run.read_bytes as f64 / 1e6,
        run.replay_cpu_s.unwrap_or(f64::NAN),
        run.errors,
        run.first_errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
    )
}
