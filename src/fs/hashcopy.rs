//! A file copied and hashed in one pass: an image root into memory at boot, an image into the
//! publish dir; the bytes hashed are the bytes written.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Copies `from`, from its start to its end as read now, to `to`; `progress` hears the bytes
/// copied so far after each MiB. Returns how many bytes and their SHA-256, lower-case hex.
pub fn copy_hashed(
    from: &std::fs::File,
    to: &mut impl Write,
    mut progress: impl FnMut(u64),
) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = from.read_at(&mut buf, copied)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
        hasher.update(chunk);
        to.write_all(chunk)?;
        copied += n as u64;
        progress(copied);
    }
    Ok((copied, crate::model::text::hex(&hasher.finalize())))
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
}
