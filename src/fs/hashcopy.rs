//! A file copied and hashed in one pass: an image root into memory at boot, an image into the
//! publish dir; the bytes hashed are the bytes written.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Copies `from`, from its start to its end as read now, to `to`; `progress` hears the bytes
/// copied so far after each MiB. Returns how many bytes and their SHA-256, lower-case hex.
pub fn copy_hashed(from: &std::fs::File, to: &mut impl Write, progress: impl FnMut(u64)) -> io::Result<(u64, String)> {
    let mut copy = HashedCopy::default();
    copy.go_on(|buf, at| from.read_at(buf, at), to, progress).map_err(|(_, e)| e)?;
    Ok(copy.finish())
}

/// Which side of a copy failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Reading: the copy can go on from another source of the same bytes.
    Read,
    Write,
}

/// A copy that can go on from where it stopped, from another source: the bytes copied so far
/// and their SHA-256 so far.
#[derive(Default)]
pub struct HashedCopy {
    hasher: Sha256,
    copied: u64,
}

impl HashedCopy {
    /// The bytes copied so far.
    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// Reads with `read` (into the buffer, at the offset: the bytes read, 0 at the end) from
    /// where the copy got to its end, each chunk written to `to` and hashed; `progress` hears
    /// the bytes copied so far after each MiB. The first error stops it where it got, and says
    /// which side failed.
    pub fn go_on(
        &mut self,
        mut read: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
        to: &mut impl Write,
        mut progress: impl FnMut(u64),
    ) -> Result<(), (Side, io::Error)> {
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = read(&mut buf, self.copied).map_err(|e| (Side::Read, e))?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { return Ok(()) };
            to.write_all(chunk).map_err(|e| (Side::Write, e))?;
            self.hasher.update(chunk);
            self.copied += n as u64;
            progress(self.copied);
        }
    }

    /// How many bytes, and their SHA-256, lower-case hex.
    pub fn finish(self) -> (u64, String) {
        (self.copied, crate::model::text::hex(&self.hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_the_file_and_its_hash_is_sha256sums() {
        let tmp = crate::fs::Tmp::new("hashcopy");
        let path = tmp.0.join("f");
        let bytes: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (mut out, mut heard) = (Vec::new(), Vec::new());
        let (n, hex) = copy_hashed(&std::fs::File::open(&path).unwrap(), &mut out, |c| heard.push(c)).unwrap();
        assert_eq!((n, out == bytes), (bytes.len() as u64, true));
        assert_eq!(heard, [1 << 20, 2 << 20, 3 << 20, (3 << 20) + 17]);
        let sum = std::process::Command::new("sha256sum").arg(&path).output().unwrap().stdout;
        assert_eq!(hex.as_bytes(), &sum[..64]);
        let (n, hex) = copy_hashed(&std::fs::File::open(tmp.0.join("f")).unwrap(), &mut io::sink(), |_| ()).unwrap();
        assert_eq!((n, hex.len()), (bytes.len() as u64, 64));
    }

    /// A source that fails part way (its server gone): the copy stops where it got, says the
    /// read failed, and goes on from another source of the same bytes to the same result.
    #[test]
    fn a_copy_broken_off_goes_on_from_another_source() {
        let bytes: Vec<u8> = (0..(3 << 20) + 17).map(|i: u32| (i % 253) as u8).collect();
        let from = |limit: u64| {
            let bytes = &bytes;
            move |buf: &mut [u8], at: u64| {
                if at >= limit {
                    return Err(io::Error::from(io::ErrorKind::TimedOut));
                }
                let rest = bytes.get(at as usize..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                Ok(n)
            }
        };
        let (mut copy, mut out) = (HashedCopy::default(), Vec::new());
        let broke = copy.go_on(from(2 << 20), &mut out, |_| ()).unwrap_err();
        assert_eq!((broke.0, broke.1.kind(), copy.copied()), (Side::Read, io::ErrorKind::TimedOut, 2 << 20));
        copy.go_on(from(u64::MAX), &mut out, |_| ()).unwrap();
        let whole = {
            let mut again = HashedCopy::default();
            again.go_on(from(u64::MAX), &mut io::sink(), |_| ()).unwrap();
            again.finish()
        };
        assert_eq!(out, bytes);
        assert_eq!(copy.finish(), whole);
        // A write that fails is the writer's side.
        let mut full = [0u8; 10];
        let broke = HashedCopy::default().go_on(from(u64::MAX), &mut &mut full[..], |_| ()).unwrap_err();
        assert_eq!(broke.0, Side::Write);
    }
}
