//! ONC RPC over TCP (RFC 5531): record marking, calls with AUTH_UNIX, replies split into the xid
//! and the procedure's result. Matching replies to calls by xid is the client's (client.rs).

use std::io::{self, Cursor};

use nfs3_types::rpc::{
    accept_stat_data, auth_unix, call_body, msg_body, opaque_auth, rejected_reply, reply_body, rpc_msg, RPC_VERSION_2,
};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use tokio::io::{AsyncRead, AsyncReadExt};

const LAST_FRAGMENT: u32 = 0x8000_0000;
/// The largest reply taken: a READ of 1 MiB (the lab's rsize) and its headers, with room.
pub const MAX_RECORD: usize = 4 << 20;

/// AUTH_UNIX as root, with the client's name as the kernel sends its hostname.
pub fn root_credential(machine: &str) -> opaque_auth<'static> {
    let auth =
        auth_unix { stamp: 0, machinename: Opaque::owned(machine.as_bytes().to_vec()), uid: 0, gid: 0, gids: vec![] };
    let mut body = Vec::new();
    // Packing into a Vec cannot fail: the name is far below 4 GiB.
    let _ = auth.pack(&mut body);
    opaque_auth { flavor: nfs3_types::rpc::auth_flavor::AUTH_UNIX, body: Opaque::owned(body) }
}

/// One call as a whole record: the fragment header, the call header, the packed arguments.
pub fn call_record(xid: u32, (prog, vers): (u32, u32), proc: u32, cred: &opaque_auth<'static>, args: &[u8]) -> Vec<u8> {
    let msg = rpc_msg {
        xid,
        body: msg_body::CALL(call_body {
            rpcvers: RPC_VERSION_2,
            prog,
            vers,
            proc,
            cred: cred.borrow(),
            verf: opaque_auth::default(),
        }),
    };
    let mut record = Vec::with_capacity(4 + msg.packed_size() + args.len());
    record.extend_from_slice(&[0; 4]);
    // Packing into a Vec cannot fail: every length here is far below 4 GiB.
    let _ = msg.pack(&mut record);
    record.extend_from_slice(args);
    let len = u32::try_from(record.len() - 4).unwrap_or(0) | LAST_FRAGMENT;
    record.splice(0..4, len.to_be_bytes());
    record
}

/// Reads one record (all its fragments); None at a clean end of the stream between records.
pub async fn read_record<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    loop {
        let mut header = [0; 4];
        match reader.read_exact(&mut header).await {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && record.is_empty() => return Ok(None),
            other => other?,
        };
        let header = u32::from_be_bytes(header);
        let len = (header & !LAST_FRAGMENT) as usize;
        if record.len() + len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a record of more than {MAX_RECORD} bytes"),
            ));
        }
        let start = record.len();
        record.resize(start + len, 0);
        reader.read_exact(record.get_mut(start..).unwrap_or_default()).await?;
        if header & LAST_FRAGMENT != 0 {
            return Ok(Some(record));
        }
    }
}

/// A reply: its xid, and the procedure's result, or why the server did not run the call.
pub fn split_reply(record: &[u8]) -> Result<(u32, Result<&[u8], String>), String> {
    let mut cursor = Cursor::new(record);
    let (msg, _) = rpc_msg::unpack(&mut cursor).map_err(|e| format!("undecodable rpc reply: {e}"))?;
    let result = match msg.body {
        msg_body::CALL(_) => return Err(format!("a call (xid {:#x}) where a reply was due", msg.xid)),
        msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted)) => match accepted.reply_data {
            accept_stat_data::SUCCESS => {
                Ok(record.get(usize::try_from(cursor.position()).unwrap_or(usize::MAX)..).unwrap_or_default())
            }
            other => Err(format!("rpc call not run: {other:?}")),
        },
        msg_body::REPLY(reply_body::MSG_DENIED(rejected_reply::AUTH_ERROR(stat))) => {
            Err(format!("rpc call denied: {stat}"))
        }
        msg_body::REPLY(reply_body::MSG_DENIED(rejected_reply::RPC_MISMATCH { .. })) => {
            Err("rpc call denied: rpc version mismatch".to_string())
        }
    };
    Ok((msg.xid, result))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// An accepted reply record to `xid` carrying `result`, as a server sends it, in `parts`
    /// fragments.
    pub fn reply_record(xid: u32, result: &[u8], parts: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for word in [xid, 1, 0, 0, 0, 0] {
            body.extend_from_slice(&u32::to_be_bytes(word)); // REPLY, MSG_ACCEPTED, AUTH_NULL, 0 bytes, SUCCESS
        }
        body.extend_from_slice(result);
        let size = body.len().div_ceil(parts);
        let mut record = Vec::new();
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() { LAST_FRAGMENT } else { 0 };
            record.extend_from_slice(&(chunk.len() as u32 | last).to_be_bytes());
            record.extend_from_slice(chunk);
        }
        record
    }

    #[test]
    fn a_call_is_one_marked_record() {
        let cred = root_credential("c1");
        let record = call_record(0x1234, (100_003, 3), 1, &cred, &[0, 0, 0, 4, 1, 2, 3, 4]);
        let len = u32::from_be_bytes(record[..4].try_into().unwrap());
        assert_eq!(len, LAST_FRAGMENT | (record.len() as u32 - 4));
        let words: Vec<u32> = record[4..32].chunks(4).map(|w| u32::from_be_bytes(w.try_into().unwrap())).collect();
        // xid, CALL, rpc 2, program, version, procedure, AUTH_UNIX
        assert_eq!(words, [0x1234, 0, 2, 100_003, 3, 1, 1]);
        assert!(record.ends_with(&[0, 0, 0, 4, 1, 2, 3, 4]));
        // The credential: stamp, "c1" padded, uid 0, gid 0, no groups.
        assert_eq!(&record[32..36], &24u32.to_be_bytes());
    }

    #[tokio::test]
    async fn fragments_join_into_one_record_and_records_follow_each_other() {
        let mut stream = reply_record(7, &[9; 10], 3);
        stream.extend(reply_record(8, &[], 1));
        let mut reader = &stream[..];
        let first = read_record(&mut reader).await.unwrap().unwrap();
        assert_eq!(split_reply(&first).unwrap(), (7, Ok(&[9u8; 10][..])));
        let second = read_record(&mut reader).await.unwrap().unwrap();
        assert_eq!(split_reply(&second).unwrap(), (8, Ok(&[][..])));
        assert!(read_record(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cut_or_oversized_record_is_an_error() {
        let whole = reply_record(7, &[9; 10], 1);
        let mut cut = &whole[..whole.len() - 1];
        assert_eq!(read_record(&mut cut).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        let huge = (LAST_FRAGMENT | (MAX_RECORD as u32 + 1)).to_be_bytes();
        let err = read_record(&mut &huge[..]).await.unwrap_err();
        assert_eq!(err.to_string(), "a record of more than 4194304 bytes");
    }

    #[test]
    fn a_refused_call_says_why() {
        let mut denied = Vec::new();
        for word in [5u32, 1, 1, 1, 1] {
            denied.extend_from_slice(&word.to_be_bytes()); // REPLY, MSG_DENIED, AUTH_ERROR, AUTH_BADCRED
        }
        assert_eq!(split_reply(&denied).unwrap(), (5, Err("rpc call denied: AUTH_BADCRED".to_string())));
        let garbage = &reply_record(6, &[], 1)[4..];
        let mut garbage = garbage.to_vec();
        garbage[23] = 4; // GARBAGE_ARGS
        assert_eq!(split_reply(&garbage).unwrap(), (6, Err("rpc call not run: GARBAGE_ARGS".to_string())));
        assert!(split_reply(&[0, 0]).unwrap_err().starts_with("undecodable rpc reply"));
    }
}
