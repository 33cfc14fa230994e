//! Compressed module files (`.ko.xz`, `.ko.zst`, `.ko.gz`, as kmod names them), unpacked by the
//! initramfs builder: the archive is compressed once, as a whole, the kernel in the initramfs
//! loads plain modules, and a module's `.modinfo` (its firmware) can be read. The boot itself
//! never unpacks one: it hands a compressed file to the kernel, which decompresses it.

use std::io::{self, Read, Write};

/// How a module file is compressed, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    /// The compression of `path` and its plain name (`kernel/a.ko.xz` → `kernel/a.ko`); `None`
    /// for a plain module or anything else.
    pub fn of(path: &str) -> Option<(Compression, &str)> {
        [(".xz", Compression::Xz), (".zst", Compression::Zstd), (".gz", Compression::Gzip)]
            .into_iter()
            .find_map(|(suffix, kind)| Some((kind, path.strip_suffix(suffix).filter(|p| p.ends_with(".ko"))?)))
    }

    /// `data` unpacked, at most `limit` bytes of it (a small file that unpacks to gigabytes is
    /// refused, not held; so is an xz dictionary over [`XZ_DICT_LIMIT`]); the stream's own check
    /// (xz's CRC32 or CRC64, zstd's checksum, gzip's CRC32) is verified.
    ///
    /// # Errors
    /// A stream that is not of this kind, is damaged, or unpacks to more than `limit` bytes.
    pub fn unpack(self, data: Vec<u8>, limit: u64) -> io::Result<Vec<u8>> {
        let mut out = Bounded { data: Vec::new(), limit };
        let bounded = limit.saturating_add(1);
        let (name, copied) = match self {
            Compression::Xz => {
                let decoder = xz4rust::XzDecoder::in_heap_with_alloc_dict_size(1 << 20, XZ_DICT_LIMIT);
                let buffer = std::num::NonZeroUsize::new(8192).unwrap_or(std::num::NonZeroUsize::MIN);
                let reader =
                    xz4rust::XzReader::new_with_buffer_size_and_decoder(io::Cursor::new(data), buffer, decoder);
                ("xz", io::copy(&mut reader.take(bounded), &mut out))
            }
            Compression::Zstd => ("zstd", unzstd(&data, bounded, &mut out)),
            Compression::Gzip => {
                ("gzip", io::copy(&mut flate2::read::GzDecoder::new(data.as_slice()).take(bounded), &mut out))
            }
        };
        match copied {
            Ok(_) => Ok(out.data),
            // The sink's own refusal says it all; the decoders' words (xz4rust's are type names).
            Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Err(e),
            Err(e) => Err(io::Error::new(e.kind(), format!("not a whole {name} stream ({e})"))),
        }
    }
}

/// `data` as one zstd frame unpacked into `out`, at most `bounded` bytes read, its checksum
/// (when the frame has one) compared: ruzstd computes it, the caller compares.
fn unzstd(data: &[u8], bounded: u64, out: &mut Bounded) -> io::Result<u64> {
    let mut decoder =
        ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let copied = io::copy(&mut (&mut decoder).take(bounded), out)?;
    let frame = decoder.into_frame_decoder();
    match (frame.get_checksum_from_data(), frame.get_calculated_checksum()) {
        (Some(read), Some(computed)) if read != computed => {
            Err(io::Error::new(io::ErrorKind::InvalidData, "its checksum does not match"))
        }
        _ => Ok(copied),
    }
}

/// The largest xz dictionary allocated (`xz -9` uses 64 MiB; the kernel's build 1 MiB).
pub const XZ_DICT_LIMIT: usize = 64 << 20;

/// A sink that refuses to grow past `limit` bytes.
struct Bounded {
    data: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.data.len() as u64 + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("unpacks to more than {} bytes", self.limit),
            ));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// `data` compressed by the command-line tool, as the kernel's build compresses modules.
    fn packed(tool: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child =
            Command::new(tool[0]).args(&tool[1..]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect(tool[0]);
        child.stdin.take().unwrap().write_all(data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{tool:?}");
        out.stdout
    }

    #[test]
    fn names_as_kmod_names_them() {
        assert_eq!(Compression::of("kernel/a/b.ko.xz"), Some((Compression::Xz, "kernel/a/b.ko")));
        assert_eq!(Compression::of("kernel/a/b.ko.zst"), Some((Compression::Zstd, "kernel/a/b.ko")));
        assert_eq!(Compression::of("kernel/a/b.ko.gz"), Some((Compression::Gzip, "kernel/a/b.ko")));
        for plain in ["kernel/a/b.ko", "kernel/a/b.xz", "b.ko.bz2", ".xz", ""] {
            assert_eq!(Compression::of(plain), None, "{plain}");
        }
    }

    #[test]
    fn unpacks_what_the_kernels_build_packs_and_refuses_bombs_and_damage() {
        let module: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let cases = [
            (Compression::Xz, &["xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"][..]),
            (Compression::Zstd, &["zstd", "-q", "-c"]),
            (Compression::Gzip, &["gzip", "-9", "-n", "-c"]),
        ];
        for (kind, tool) in cases {
            let data = packed(tool, &module);
            assert_eq!(kind.unpack(data.clone(), 1 << 20).unwrap(), module, "{kind:?}");
            let bomb = kind.unpack(data.clone(), 1000).unwrap_err();
            assert_eq!(bomb.to_string(), "unpacks to more than 1000 bytes", "{kind:?}");
            let mut damaged = data.clone();
            let middle = damaged.len() / 2;
            damaged[middle] ^= 0x55;
            let damage = kind.unpack(damaged, 1 << 20).unwrap_err().to_string();
            assert!(damage.starts_with("not a whole "), "{kind:?}: {damage}");
            let other = kind.unpack(b"not compressed at all".to_vec(), 1 << 20).unwrap_err().to_string();
            assert!(other.starts_with("not a whole "), "{kind:?}: {other}");
            let cut = kind.unpack(data[..data.len() / 2].to_vec(), 1 << 20).unwrap_err().to_string();
            assert!(cut.starts_with("not a whole "), "{kind:?}: {cut}");
        }
        // The checks themselves: zstd's checksum is the frame's last 4 bytes, gzip's CRC32 the
        // trailer's first 4, xz's CRC32 the 4 before the index and the footer (12 bytes each here).
        for (kind, tool, from_end) in [
            (Compression::Xz, &["xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"][..], 28),
            (Compression::Zstd, &["zstd", "-q", "-c"], 1),
            (Compression::Gzip, &["gzip", "-9", "-n", "-c"], 8),
        ] {
            let mut data = packed(tool, &module);
            let at = data.len() - from_end;
            data[at] ^= 1;
            let wrong = kind.unpack(data, 1 << 20).unwrap_err().to_string();
            assert!(wrong.starts_with("not a whole "), "{kind:?}: {wrong}");
        }
    }

    #[test]
    fn an_xz_dictionary_over_the_limit_is_refused_before_it_is_allocated() {
        let mut data = packed(&["xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"], b"a module");
        // The block header (after the 12-byte stream header): size, flags, LZMA2's id, one
        // property byte (the dictionary size), padding, CRC32. 30 says 128 MiB.
        assert_eq!(&data[12..17], [2, 0, 0x21, 1, 16], "1 MiB as the kernel's build packs it");
        data[16] = 30;
        let mut crc = flate2::Crc::new();
        crc.update(&data[12..20]);
        data[20..24].copy_from_slice(&crc.sum().to_le_bytes());
        let refused = Compression::Xz.unpack(data, 1 << 20).unwrap_err().to_string();
        assert!(refused.starts_with("not a whole xz stream") && refused.contains("134217728 bytes"), "{refused}");
    }
}
