//! One simulated client: replays the trace over its own connections (MOUNT and NFS, each opened
//! when first needed), several calls in flight, each reply matched to its call by xid.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;

use nfs3_types::rpc::opaque_auth;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::nfs::Learned;
use crate::rpc;
use crate::trace::{Program, Trace};

/// Opens a client's connection to the server of one program.
pub trait Connector {
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    fn connect(&self, program: Program) -> impl Future<Output = io::Result<Self::Stream>>;
}

/// What one client did.
#[derive(Debug, Default, Serialize)]
pub struct ClientReport {
    pub finished: bool,
    pub seconds: f64,
    /// Replies received, by procedure.
    pub ops: BTreeMap<&'static str, u64>,
    /// Errors by kind: a status other than the trace's, a call that could not be made, a lost
    /// connection, the deadline.
    pub errors: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub read_bytes: u64,
}

impl ClientReport {
    fn error(&mut self, kind: String, detail: &str) {
        if self.first_error.is_none() {
            self.first_error = Some(format!("{kind}{detail}"));
        }
        *self.errors.entry(kind).or_insert(0) += 1;
    }
}

/// Replays the whole trace, or as much as comes back before the deadline.
pub async fn replay<C: Connector>(
    trace: &Trace,
    connector: &C,
    name: &str,
    first_xid: u32,
    deadline: Instant,
) -> ClientReport {
    let start = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut client = Client {
        trace,
        connector,
        cred: rpc::root_credential(name),
        learned: Learned::default(),
        writers: [None, None],
        connections: 0,
        readers: Vec::new(),
        tx,
        rx,
        in_flight: HashMap::new(),
        done: vec![false; trace.calls.len()],
        replied: 0,
        next: 0,
        xid: first_xid,
        report: ClientReport::default(),
    };
    match tokio::time::timeout_at(deadline, client.run()).await {
        Ok(Ok(())) => client.report.finished = true,
        Ok(Err(fatal)) => client.report.error(fatal, ""),
        Err(_) => {
            client.report.error("timed out".to_string(), &format!(" with {} calls in flight", client.in_flight.len()))
        }
    }
    for reader in &client.readers {
        reader.abort();
    }
    client.report.seconds = start.elapsed().as_secs_f64();
    client.report
}

/// A record or the end of one connection (its program and number).
type Reply = (Program, u32, io::Result<Vec<u8>>);

struct Client<'t, C: Connector> {
    trace: &'t Trace,
    connector: &'t C,
    cred: opaque_auth<'static>,
    learned: Learned,
    /// The open MOUNT and NFS connection (Program as index), with its number.
    writers: [Option<(u32, WriteHalf<C::Stream>)>; 2],
    /// Connections opened so far.
    connections: u32,
    readers: Vec<JoinHandle<()>>,
    tx: mpsc::UnboundedSender<Reply>,
    rx: mpsc::UnboundedReceiver<Reply>,
    /// xid -> index of the call, number of its connection.
    in_flight: HashMap<u32, (usize, u32)>,
    done: Vec<bool>,
    /// How many calls of `trace.by_reply`, from its start, have their replies.
    replied: usize,
    next: usize,
    xid: u32,
    report: ClientReport,
}

impl<C: Connector> Client<'_, C> {
    async fn run(&mut self) -> Result<(), String> {
        let total = self.trace.calls.len();
        loop {
            while self.trace.ready.get(self.next).is_some_and(|&ready| self.replied >= ready) {
                self.issue(self.next).await?;
                self.next += 1;
            }
            if self.replied == total {
                return Ok(());
            }
            if self.in_flight.is_empty() {
                return Err("replay stuck with no call in flight".to_string());
            }
            match self.rx.recv().await {
                Some((_, _, Ok(record))) => self.take_reply(&record)?,
                Some((program, connection, Err(e))) => self.lost(program, connection, &e)?,
                None => return Err("reply channel closed".to_string()),
            }
            self.close_idle_mount().await;
        }
    }

    async fn issue(&mut self, index: usize) -> Result<(), String> {
        let Some(call) = self.trace.calls.get(index) else { return Ok(()) };
        let args = match self.learned.args(call) {
            Ok(args) => args,
            Err(why) => {
                self.report.error(format!("{}: {why}", call.proc.name()), &format!(" (trace line {})", call.line));
                self.finish(index);
                return Ok(());
            }
        };
        let program = call.proc.program();
        let xid = self.xid;
        self.xid = self.xid.wrapping_add(1);
        let record = rpc::call_record(xid, program.number(), call.proc.number(), &self.cred, &args);
        let slot = program as usize;
        if self.writers.get(slot).is_some_and(Option::is_none) {
            let stream = self
                .connector
                .connect(program)
                .await
                .map_err(|e| format!("cannot connect to the {} server: {e}", program.name()))?;
            let (reader, writer) = tokio::io::split(stream);
            self.connections += 1;
            self.readers.push(tokio::spawn(read_replies((program, self.connections), reader, self.tx.clone())));
            if let Some(w) = self.writers.get_mut(slot) {
                *w = Some((self.connections, writer));
            }
        }
        let Some(Some((connection, writer))) = self.writers.get_mut(slot) else {
            return Err("no connection".to_string());
        };
        writer.write_all(&record).await.map_err(|e| format!("cannot send to the {} server: {e}", program.name()))?;
        self.report.bytes_sent += record.len() as u64;
        self.in_flight.insert(xid, (index, *connection));
        Ok(())
    }

    fn take_reply(&mut self, record: &[u8]) -> Result<(), String> {
        self.report.bytes_received += record.len() as u64 + 4;
        let (xid, result) = rpc::split_reply(record)?;
        let Some((index, _)) = self.in_flight.remove(&xid) else {
            self.report.error("reply to an xid not in flight".to_string(), &format!(" ({xid:#x})"));
            return Ok(());
        };
        let Some(call) = self.trace.calls.get(index) else { return Ok(()) };
        *self.report.ops.entry(call.proc.name()).or_insert(0) += 1;
        let line = format!(" (trace line {})", call.line);
        match result.and_then(|result| self.learned.reply(call, result)) {
            Ok(outcome) => {
                self.report.read_bytes += outcome.read_bytes;
                if outcome.status != call.status {
                    let kind =
                        format!("{}: status {}, the trace has {}", call.proc.name(), outcome.status, call.status);
                    self.report.error(kind, &line);
                }
            }
            Err(why) => self.report.error(format!("{}: {why}", call.proc.name()), &line),
        }
        self.finish(index);
        Ok(())
    }

    /// A connection ended: fatal while a call waits on it; else the next call opens another.
    fn lost(&mut self, program: Program, connection: u32, e: &io::Error) -> Result<(), String> {
        if let Some(w) =
            self.writers.get_mut(program as usize).filter(|w| w.as_ref().is_some_and(|w| w.0 == connection))
        {
            *w = None;
        }
        if self.in_flight.values().any(|&(_, c)| c == connection) {
            return Err(format!("connection to the {} server lost with calls in flight: {e}", program.name()));
        }
        Ok(())
    }

    /// As the kernel does, the MOUNT connection is closed once no call waits on it.
    async fn close_idle_mount(&mut self) {
        let Some(slot) = self.writers.get_mut(Program::Mount as usize) else { return };
        if let Some((connection, _)) = slot {
            let connection = *connection;
            if !self.in_flight.values().any(|&(_, c)| c == connection) {
                if let Some((_, mut writer)) = slot.take() {
                    let _ = writer.shutdown().await;
                }
            }
        }
    }

    fn finish(&mut self, index: usize) {
        if let Some(done) = self.done.get_mut(index) {
            *done = true;
        }
        while self.trace.by_reply.get(self.replied).is_some_and(|&i| self.done.get(i) == Some(&true)) {
            self.replied += 1;
        }
    }
}

async fn read_replies<R: AsyncRead + Unpin>(
    (program, connection): (Program, u32),
    reader: R,
    tx: mpsc::UnboundedSender<Reply>,
) {
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    loop {
        let record = match rpc::read_record(&mut reader).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server")),
            Err(e) => Err(e),
        };
        let end = record.is_err();
        if tx.send((program, connection, record)).is_err() || end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfs::tests::{lookup_ok, readdirplus_ok};
    use crate::rpc::tests::reply_record;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, DuplexStream};

    /// A server script for one connection: batches of calls, each read whole, then answered
    /// last call first (a call that comes while a batch waits breaks the trace's order: "early
    /// call"); then one more call is read and never answered, and the connection closed (true) or
    /// kept open.
    type Script = (Vec<usize>, bool);

    struct Fake {
        scripts: Mutex<Vec<(Program, Script)>>,
        seen: std::sync::Arc<Mutex<Vec<String>>>,
    }

    impl Connector for Fake {
        type Stream = DuplexStream;
        async fn connect(&self, program: Program) -> io::Result<DuplexStream> {
            let mut scripts = self.scripts.lock().unwrap();
            let at = scripts.iter().position(|s| s.0 == program).ok_or(io::ErrorKind::ConnectionRefused)?;
            let (_, script) = scripts.remove(at);
            let (ours, theirs) = tokio::io::duplex(1 << 20);
            tokio::spawn(serve(theirs, script, self.seen.clone()));
            Ok(ours)
        }
    }

    async fn serve(mut stream: DuplexStream, (batches, close): Script, seen: std::sync::Arc<Mutex<Vec<String>>>) {
        for batch in batches {
            let mut calls = Vec::new();
            for _ in 0..batch {
                let Ok(Some(call)) = rpc::read_record(&mut stream).await else { return };
                calls.push(call);
            }
            // Nothing more may come until this batch is answered.
            if let Ok(Ok(Some(_))) =
                tokio::time::timeout(Duration::from_millis(50), rpc::read_record(&mut stream)).await
            {
                seen.lock().unwrap().push("early call".to_string());
            }
            for call in calls.iter().rev() {
                let word = |i: usize| u32::from_be_bytes(call[i * 4..i * 4 + 4].try_into().unwrap());
                let (xid, proc) = (word(0), word(5));
                seen.lock().unwrap().push(format!("{proc}"));
                let result = match (word(3), proc) {
                    (100_005, 1) => vec![0, 0, 0, 0, 0, 0, 0, 4, b'r', b'o', b'o', b't', 0, 0, 0, 0],
                    (_, 3) => lookup_ok(b"etc"),
                    (_, 17) => readdirplus_ok(&[("passwd", b"pw", 1)], 0),
                    (_, 6) => [&[0u8; 8][..], &[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]].concat(),
                    _ => vec![0, 0, 0, 70], // NFS3ERR_STALE, no attributes
                };
                stream.write_all(&reply_record(xid, &result, 2)).await.unwrap();
            }
        }
        if let Ok(None) = rpc::read_record(&mut stream).await {
            seen.lock().unwrap().push("closed by the client".to_string());
        }
        if !close {
            let _ = stream.read_u8().await;
        }
    }

    const TRACE: &str = r#"
{"t":0,"rt":1,"proc":"MNT","path":"/storm","new":0}
{"t":2,"rt":3,"proc":"LOOKUP","fh":0,"name":"etc","new":1}
{"t":4,"rt":5,"proc":"READDIRPLUS","fh":1,"entries":{"passwd":2}}
{"t":6,"rt":9,"proc":"READ","fh":2,"offset":0,"count":5}
{"t":6,"rt":8,"proc":"READ","fh":2,"offset":5,"count":5}
{"t":6,"rt":7,"proc":"READ","fh":1,"offset":10,"count":5}
{"t":10,"rt":11,"proc":"GETATTR","fh":2}
"#;

    fn fake(nfs: Script) -> Fake {
        Fake {
            scripts: Mutex::new(vec![(Program::Mount, (vec![1], false)), (Program::Nfs, nfs)]),
            seen: Default::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn replies_out_of_order_are_matched_and_the_order_of_the_trace_is_kept() {
        let trace = Trace::parse(TRACE).unwrap();
        let fake = fake((vec![1, 1, 3, 1], false));
        let report = replay(&trace, &fake, "c1", 100, Instant::now() + Duration::from_secs(60)).await;
        assert!(report.finished, "{report:?}");
        let ops: Vec<_> = report.ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(ops, ["GETATTR 1", "LOOKUP 1", "MNT 1", "READ 3", "READDIRPLUS 1"]);
        assert_eq!(report.read_bytes, 15);
        // The fake answers GETATTR with NFS3ERR_STALE: the one error, counted by kind.
        assert_eq!(
            report.errors.into_iter().collect::<Vec<_>>(),
            [("GETATTR: status 70, the trace has 0".to_string(), 1)]
        );
        assert_eq!(report.first_error.as_deref(), Some("GETATTR: status 70, the trace has 0 (trace line 8)"));
        // The MOUNT connection is closed after the MNT, as the kernel does; the NFS one stays.
        let mut seen = fake.seen.lock().unwrap().clone();
        seen.retain(|s| s != "closed by the client");
        assert_eq!(fake.seen.lock().unwrap().len(), seen.len() + 1);
        assert_eq!(seen, ["1", "3", "17", "6", "6", "6", "1"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_or_a_silent_server_ends_the_client() {
        let trace = Trace::parse(TRACE).unwrap();
        // The server closes after the LOOKUP's call, before answering it.
        let report = replay(&trace, &fake((vec![], true)), "c1", 1, Instant::now() + Duration::from_secs(60)).await;
        assert!(!report.finished);
        assert_eq!(report.ops.into_iter().collect::<Vec<_>>(), [("MNT", 1)]);
        assert!(report.first_error.unwrap().starts_with("connection to the NFS server lost with calls in flight"));
        // The server never answers the READs: the deadline ends the client.
        let report = replay(&trace, &fake((vec![1], false)), "c1", 1, Instant::now() + Duration::from_secs(60)).await;
        assert!(!report.finished);
        assert_eq!(report.first_error.as_deref(), Some("timed out with 1 calls in flight"));
    }
}
