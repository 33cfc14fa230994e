//! A trace call's arguments, and what its reply says, in nfs3_types' XDR.

use std::collections::HashMap;
use std::io::Cursor;

use nfs3_types::mount::{dirpath, fhandle3, mountstat3};
use nfs3_types::nfs3::{
    cookieverf3, diropargs3, filename3, nfs_fh3, post_op_fh3, ACCESS3args, ACCESS3res, FSINFO3args, FSINFO3res,
    FSSTAT3args, FSSTAT3res, GETATTR3args, GETATTR3res, LOOKUP3args, LOOKUP3res, PATHCONF3args, PATHCONF3res,
    READ3args, READ3res, READDIR3args, READDIR3res, READDIRPLUS3args, READDIRPLUS3res, READLINK3args, READLINK3res,
};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};

use crate::trace::{Call, Proc};

/// What one client learned from its replies: handles by id, and where each directory's listing
/// stands (the last cookie and the verifier), for a READDIR(PLUS) that goes on.
#[derive(Default)]
pub struct Learned {
    handles: HashMap<u32, Vec<u8>>,
    listings: HashMap<u32, (u64, [u8; 8])>,
}

/// What a reply says, as far as the replay cares.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub status: u32,
    pub read_bytes: u64,
}

impl Learned {
    /// The call's arguments, packed; an error when a handle or listing it needs was not learned.
    pub fn args(&self, call: &Call) -> Result<Vec<u8>, String> {
        let fh = || {
            self.handles
                .get(&call.fh)
                .map(|data| nfs_fh3 { data: Opaque::owned(data.clone()) })
                .ok_or_else(|| "handle not learned".to_string())
        };
        let (cookie, cookieverf) = match call.cookie {
            0 => (0, cookieverf3::default()),
            _ => {
                let (cookie, verf) = self.listings.get(&call.fh).ok_or("no listing to go on from")?;
                (*cookie, cookieverf3(*verf))
            }
        };
        let name = || Opaque::borrowed(&call.name);
        Ok(match call.proc {
            Proc::Null | Proc::MountNull => Vec::new(),
            Proc::Mnt | Proc::Umnt => pack(&dirpath(name())),
            Proc::Getattr => pack(&GETATTR3args { object: fh()? }),
            Proc::Lookup => pack(&LOOKUP3args { what: diropargs3 { dir: fh()?, name: filename3(name()) } }),
            Proc::Access => pack(&ACCESS3args { object: fh()?, access: call.access }),
            Proc::Readlink => pack(&READLINK3args { symlink: fh()? }),
            Proc::Read => pack(&READ3args { file: fh()?, offset: call.offset, count: call.count }),
            Proc::Readdir => pack(&READDIR3args { dir: fh()?, cookie, cookieverf, count: call.count }),
            Proc::Readdirplus => pack(&READDIRPLUS3args {
                dir: fh()?,
                cookie,
                cookieverf,
                dircount: call.dircount,
                maxcount: call.maxcount,
            }),
            Proc::Fsstat => pack(&FSSTAT3args { fsroot: fh()? }),
            Proc::Fsinfo => pack(&FSINFO3args { fsroot: fh()? }),
            Proc::Pathconf => pack(&PATHCONF3args { object: fh()? }),
        })
    }

    /// Reads the call's result: its status, and the handles, listing state and data it carries.
    pub fn reply(&mut self, call: &Call, result: &[u8]) -> Result<Outcome, String> {
        let status = match call.proc {
            Proc::Null | Proc::MountNull | Proc::Umnt => 0,
            _ => u32::from_be_bytes(result.get(..4).and_then(|w| w.try_into().ok()).ok_or("reply without a status")?),
        };
        let mut read_bytes = 0;
        let mut learn = |id: Option<u32>, data: &[u8]| {
            if let Some(id) = id {
                self.handles.insert(id, data.to_vec());
            }
        };
        match call.proc {
            Proc::Null | Proc::MountNull | Proc::Umnt => {}
            Proc::Mnt => {
                let mut input = Cursor::new(result);
                unpack::<mountstat3>(&mut input, call)?;
                // Only the handle: the flavours after it are a list whose length the server says.
                if status == 0 {
                    learn(call.new, &unpack::<fhandle3>(&mut input, call)?.0);
                }
            }
            Proc::Lookup => {
                if let LOOKUP3res::Ok(ok) = unpack::<LOOKUP3res>(&mut Cursor::new(result), call)? {
                    learn(call.new, &ok.object.data);
                }
            }
            Proc::Read => {
                if let READ3res::Ok(ok) = unpack::<READ3res>(&mut Cursor::new(result), call)? {
                    read_bytes = ok.data.len() as u64;
                }
            }
            Proc::Readdir => {
                if let READDIR3res::Ok(ok) = unpack::<READDIR3res>(&mut Cursor::new(result), call)? {
                    if let Some(last) = ok.reply.entries.0.last() {
                        self.listings.insert(call.fh, (last.cookie, ok.cookieverf.0));
                    }
                }
            }
            Proc::Readdirplus => {
                if let READDIRPLUS3res::Ok(ok) = unpack::<READDIRPLUS3res>(&mut Cursor::new(result), call)? {
                    for entry in &ok.reply.entries.0 {
                        if let (Some(id), post_op_fh3::Some(fh)) =
                            (call.entries.get(&*entry.name.0), &entry.name_handle)
                        {
                            self.handles.insert(*id, fh.data.to_vec());
                        }
                    }
                    if let Some(last) = ok.reply.entries.0.last() {
                        self.listings.insert(call.fh, (last.cookie, ok.cookieverf.0));
                    }
                }
            }
            Proc::Getattr => check::<GETATTR3res>(result, call)?,
            Proc::Access => check::<ACCESS3res>(result, call)?,
            Proc::Readlink => check::<READLINK3res>(result, call)?,
            Proc::Fsstat => check::<FSSTAT3res>(result, call)?,
            Proc::Fsinfo => check::<FSINFO3res>(result, call)?,
            Proc::Pathconf => check::<PATHCONF3res>(result, call)?,
        }
        Ok(Outcome { status, read_bytes })
    }

    #[cfg(test)]
    pub fn handle(&self, id: u32) -> Option<&[u8]> {
        self.handles.get(&id).map(Vec::as_slice)
    }
}

fn pack(args: &impl Pack) -> Vec<u8> {
    let mut out = Vec::with_capacity(args.packed_size());
    // Packing into a Vec cannot fail: a trace's names and handles are far below 4 GiB.
    let _ = args.pack(&mut out);
    out
}

fn unpack<T: Unpack>(input: &mut Cursor<&[u8]>, call: &Call) -> Result<T, String> {
    T::unpack(input).map(|(value, _)| value).map_err(|e| format!("undecodable {} reply: {e}", call.proc.name()))
}

/// Decodes a result the replay only counts, so that a garbled one is seen.
fn check<T: Unpack>(result: &[u8], call: &Call) -> Result<(), String> {
    unpack::<T>(&mut Cursor::new(result), call).map(drop)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use nfs3_types::nfs3::{dirlistplus3, entryplus3, nfsstat3, post_op_attr, LOOKUP3resok, READDIRPLUS3resok};
    use nfs3_types::xdr_codec::List;

    pub fn call(proc: Proc, fh: u32) -> Call {
        Call {
            line: 1,
            proc,
            fh,
            name: b"etc".to_vec(),
            offset: 0,
            count: 4096,
            cookie: 0,
            dircount: 512,
            maxcount: 4096,
            access: 0x1f,
            status: 0,
            new: None,
            entries: Default::default(),
        }
    }

    pub fn lookup_ok(fh: &[u8]) -> Vec<u8> {
        pack(&LOOKUP3res::Ok(LOOKUP3resok {
            object: nfs_fh3 { data: Opaque::owned(fh.to_vec()) },
            obj_attributes: post_op_attr::None,
            dir_attributes: post_op_attr::None,
        }))
    }

    pub fn readdirplus_ok(entries: &[(&str, &[u8], u64)], verf: u8) -> Vec<u8> {
        let entries = entries
            .iter()
            .map(|(name, fh, cookie)| entryplus3 {
                fileid: *cookie,
                name: filename3(Opaque::owned(name.as_bytes().to_vec())),
                cookie: *cookie,
                name_attributes: post_op_attr::None,
                name_handle: post_op_fh3::Some(nfs_fh3 { data: Opaque::owned(fh.to_vec()) }),
            })
            .collect();
        pack(&READDIRPLUS3res::Ok(READDIRPLUS3resok {
            dir_attributes: post_op_attr::None,
            cookieverf: cookieverf3([verf; 8]),
            reply: dirlistplus3 { entries: List(entries), eof: false },
        }))
    }

    #[test]
    fn handles_are_learned_by_id_from_mnt_lookup_and_readdirplus() {
        let mut learned = Learned::default();
        let mut mnt = call(Proc::Mnt, 0);
        mnt.new = Some(0);
        let mut reply = vec![0, 0, 0, 0, 0, 0, 0, 2, 0xaa, 0xbb, 0, 0];
        reply.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // one flavour: AUTH_UNIX
        assert_eq!(learned.reply(&mnt, &reply), Ok(Outcome { status: 0, read_bytes: 0 }));
        assert_eq!(learned.handle(0), Some(&[0xaa, 0xbb][..]));

        let mut lookup = call(Proc::Lookup, 0);
        lookup.new = Some(5);
        learned.reply(&lookup, &lookup_ok(b"etc-handle")).unwrap();
        assert_eq!(learned.handle(5), Some(&b"etc-handle"[..]));

        let mut list = call(Proc::Readdirplus, 5);
        list.entries = [(b"passwd".to_vec(), 6), (b"hosts".to_vec(), 7)].into_iter().collect();
        let reply = readdirplus_ok(&[("hosts", b"h", 3), ("passwd", b"p", 4), ("other", b"o", 9)], 7);
        learned.reply(&list, &reply).unwrap();
        assert_eq!((learned.handle(6), learned.handle(7)), (Some(&b"p"[..]), Some(&b"h"[..])));
        // The next READDIRPLUS of the directory goes on after the last entry, with its verifier.
        let mut more = call(Proc::Readdirplus, 5);
        more.cookie = 12345;
        let args = learned.args(&more).unwrap();
        assert_eq!(&args[args.len() - 24..args.len() - 8], &[0, 0, 0, 0, 0, 0, 0, 9, 7, 7, 7, 7, 7, 7, 7, 7]);
    }

    #[test]
    fn a_failed_lookup_teaches_nothing_and_says_its_status() {
        let mut learned = Learned::default();
        let mut lookup = call(Proc::Lookup, 0);
        lookup.new = Some(1);
        let reply = pack(&LOOKUP3res::Err((nfsstat3::NFS3ERR_NOENT, Default::default())));
        assert_eq!(learned.reply(&lookup, &reply), Ok(Outcome { status: 2, read_bytes: 0 }));
        assert_eq!(learned.handle(1), None);
        assert_eq!(learned.args(&call(Proc::Getattr, 1)), Err("handle not learned".to_string()));
    }

    #[test]
    fn garbled_results_are_errors_not_panics() {
        let mut learned = Learned::default();
        for proc in [Proc::Mnt, Proc::Getattr, Proc::Lookup, Proc::Read, Proc::Readdirplus, Proc::Fsinfo] {
            for bad in [&[][..], &[0, 0, 0, 0][..], &[0, 0, 0, 0, 0, 0, 0, 9, 1][..]] {
                assert!(learned.reply(&call(proc, 0), bad).is_err(), "{proc:?} {bad:?}");
            }
        }
    }
}
