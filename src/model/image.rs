//! Image-file roots: what an image file holds, told by its magic, never by its name.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::nfsroot::NfsMount;

/// The root of initramfs mode: an NFS export's tree, an image file on an export, or an image
/// served by NBD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSource {
    Tree(NfsMount),
    /// `file`: the image's path on the export (absolute there), which is mounted read-only.
    Image {
        export: NfsMount,
        file: String,
    },
    Nbd(super::nbdroot::NbdRoot),
}

/// The read-only filesystems an image root may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Squashfs,
    Erofs,
}

/// Where EROFS keeps its superblock (`EROFS_SUPER_OFFSET`) and its magic there.
const EROFS_SUPER: usize = 1024;
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
/// squashfs's magic at the start, `hsqs` (`SQUASHFS_MAGIC`, little-endian).
const SQUASHFS_MAGIC: u32 = 0x7371_7368;
/// The most of a squashfs image's tables read in ahead (the lab's trixie image: 244 KiB for
/// 7,228 entries); a superblock saying more is not believed.
pub const TABLES_MAX: u64 = 64 << 20;

impl ImageFormat {
    /// How many bytes of an image's start are read: its first block, which holds what
    /// [`ImageFormat::of`] and [`ImageFormat::filesystem_size`] need.
    pub const HEAD: usize = 4096;

    /// The format of an image whose first bytes are `head`; `None`: neither (or too short).
    pub fn of(head: &[u8]) -> Option<ImageFormat> {
        let le32 = |at: usize| head.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        if le32(0) == Some(SQUASHFS_MAGIC) {
            Some(ImageFormat::Squashfs)
        } else if le32(EROFS_SUPER) == Some(EROFS_MAGIC) {
            Some(ImageFormat::Erofs)
        } else {
            None
        }
    }

    /// Where a squashfs image whose first bytes are `head` keeps its tables, all at its end
    /// after the data: from the inode table (`inode_table_start`, at 64 in the superblock) to
    /// its end (`bytes_used`, at 40), an offset and a length, when the superblock says so
    /// sensibly (within `size`, the file's, and at most [`TABLES_MAX`] long). Every lookup
    /// reads them, a few KiB at a time far from the data: read in at once, they are a READ or
    /// two instead of a scattered hundred.
    pub fn squashfs_tables(head: &[u8], size: u64) -> Option<(u64, u64)> {
        let le64 = |at: usize| head.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        if ImageFormat::of(head) != Some(ImageFormat::Squashfs) {
            return None;
        }
        let (start, end) = (le64(64)?, le64(40)?);
        let len = end.checked_sub(start).filter(|&len| len > 0 && len <= TABLES_MAX)?;
        (end <= size).then_some((start, len))
    }

    /// The bytes the filesystem whose first bytes are `head` says it spans: squashfs's
    /// `bytes_used` (at 40), EROFS's `blocks` (at 36 of its superblock) of `1 << blkszbits`
    /// (at 12). What a verity tree must cover: a file cut short and its tree laid out again
    /// for fewer blocks verifies, block by block, against the same root hash.
    pub fn filesystem_size(head: &[u8]) -> Option<u64> {
        let le = |at: usize, n: usize| {
            let bytes = head.get(at..at + n)?;
            Some(bytes.iter().rev().fold(0u64, |v, b| v << 8 | u64::from(*b)))
        };
        match ImageFormat::of(head)? {
            ImageFormat::Squashfs => le(40, 8),
            ImageFormat::Erofs => {
                let bits = le(EROFS_SUPER + 12, 1).filter(|b| (9..=16).contains(b))?;
                le(EROFS_SUPER + 36, 4)?.checked_shl(bits as u32)
            }
        }
    }

    /// Its type for mount(2), which is also its kernel module's name.
    pub fn fstype(self) -> &'static str {
        match self {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Erofs => "erofs",
        }
    }
}

/// The image an image-file root booted, for the report: which image each client runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootedImage {
    /// `server:/dir/file` as the command line named it.
    pub source: String,
    /// Where it led, when the name is a symlink (`current`): the link's text.
    pub target: Option<String>,
    pub format: ImageFormat,
    pub size: u64,
    /// Its modification time, in seconds since the epoch; none for an NBD root (the protocol
    /// carries none).
    pub mtime: Option<i64>,
    /// The sha256 its `.sha256` file beside it (the target's, for a symlink) names, when there
    /// is one: 64 hex digits, lower-case.
    pub sha256: Option<String>,
    /// Copied into memory (`stateless.image.ram`), its sha256 checked when there is one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_memory: bool,
    /// Mounted through dm-verity: each block read checked against the root hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<Verified>,
}

/// How an image root was verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// 64 lower-case hex digits.
    pub root_hash: String,
    /// What vouched for it: `roothash=`, or the key that signed the statement beside the
    /// image (`key <fingerprint> <comment>`).
    pub trusted: String,
    /// The device-mapper device the root was mounted from (`/dev/dm-0`).
    pub device: String,
}

/// What an image root copied into memory leaves for the system it boots, at least: 256 MiB,
/// or an eighth of the memory when that is more.
pub const MEMORY_KEPT: u64 = 256 << 20;

/// Whether an image of `size` bytes fits into memory as /proc/meminfo (`meminfo`) tells it:
/// its MemAvailable less what the system keeps ([`MEMORY_KEPT`]). `Ok`: the bytes available;
/// `Err`: why not, for the log.
pub fn fits_in_memory(size: u64, meminfo: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(meminfo);
    let kib = |key: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
        line.split_whitespace().next()?.parse::<u64>().ok().map(|k| k.saturating_mul(1024))
    };
    let (Some(total), Some(available)) = (kib("MemTotal"), kib("MemAvailable")) else {
        return Err("/proc/meminfo has no MemTotal and MemAvailable: cannot tell whether it fits".into());
    };
    let kept = MEMORY_KEPT.max(total / 8);
    let mib = |b: u64| b >> 20;
    match available.checked_sub(kept).filter(|room| *room >= size) {
        Some(_) => Ok(available),
        None => Err(format!(
            "{} MiB does not fit into memory: {} MiB available of {} MiB, {} MiB kept for the system",
            mib(size),
            mib(available),
            mib(total),
            mib(kept)
        )),
    }
}

/// The checksum a sha256sum line names (`<64 hex>  <name>`), lower-case; `None` for anything else.
pub fn sha256_of_line(text: &[u8]) -> Option<String> {
    crate::model::text::sha256_hex(text.split(|b| b.is_ascii_whitespace()).next()?)
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.fstype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size a filesystem's head names: squashfs's bytes_used, EROFS's blocks of its block
    /// size; none for a head too short, an odd EROFS block size, or no magic.
    #[test]
    fn a_head_names_its_filesystems_size() {
        let mut sq = vec![0u8; ImageFormat::HEAD];
        sq[..4].copy_from_slice(b"hsqs");
        sq[40..48].copy_from_slice(&123_456u64.to_le_bytes());
        assert_eq!(ImageFormat::filesystem_size(&sq), Some(123_456));
        assert_eq!(ImageFormat::filesystem_size(&sq[..44]), None);
        let mut erofs = vec![0u8; ImageFormat::HEAD];
        erofs[1024..1028].copy_from_slice(&EROFS_MAGIC.to_le_bytes());
        erofs[1036] = 12;
        erofs[1060..1064].copy_from_slice(&100u32.to_le_bytes());
        assert_eq!(ImageFormat::filesystem_size(&erofs), Some(409_600));
        erofs[1036] = 40;
        assert_eq!(ImageFormat::filesystem_size(&erofs), None, "no 2^40-byte blocks");
        assert_eq!(ImageFormat::filesystem_size(&[0; 4096]), None);
    }

    #[test]
    fn the_format_is_its_magic() {
        let mut head = vec![0u8; ImageFormat::HEAD];
        assert_eq!(ImageFormat::of(&head), None);
        head[..4].copy_from_slice(b"hsqs");
        assert_eq!(ImageFormat::of(&head), Some(ImageFormat::Squashfs));
        let mut erofs = vec![0u8; ImageFormat::HEAD];
        erofs[1024..1028].copy_from_slice(&[0xE2, 0xE1, 0xF5, 0xE0]);
        assert_eq!(ImageFormat::of(&erofs), Some(ImageFormat::Erofs));
        assert_eq!(ImageFormat::of(&erofs[..1027]), None, "too short to tell");
        assert_eq!(ImageFormat::of(b"hsq"), None);
        // A name says nothing: an ext4 image (magic 0xEF53 at 1080) is neither.
        let mut ext4 = vec![0u8; 2048];
        ext4[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        assert_eq!(ImageFormat::of(&ext4), None);
    }

    #[test]
    fn squashfs_tables_are_read_from_its_superblock_and_held_to_the_file() {
        let mut head = vec![0u8; ImageFormat::HEAD];
        head[..4].copy_from_slice(b"hsqs");
        head[40..48].copy_from_slice(&154_903_849u64.to_le_bytes());
        head[64..72].copy_from_slice(&154_659_859u64.to_le_bytes());
        assert_eq!(ImageFormat::squashfs_tables(&head, 154_906_624), Some((154_659_859, 243_990)));
        assert_eq!(ImageFormat::squashfs_tables(&head, 1_000), None, "past the file's end");
        assert_eq!(ImageFormat::squashfs_tables(&head[..70], 154_906_624), None, "too short");
        head[64..72].copy_from_slice(&154_903_849u64.to_le_bytes());
        assert_eq!(ImageFormat::squashfs_tables(&head, 154_906_624), None, "no tables");
        head[64..72].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(ImageFormat::squashfs_tables(&head, 154_906_624), None, "more than TABLES_MAX");
        head[..4].copy_from_slice(b"xsqs");
        head[64..72].copy_from_slice(&154_659_859u64.to_le_bytes());
        assert_eq!(ImageFormat::squashfs_tables(&head, 154_906_624), None, "not squashfs");
    }

    #[test]
    fn a_sha256_line_names_its_checksum() {
        let hex = "5C4C0187115C".repeat(5) + "abcd";
        assert_eq!(sha256_of_line(format!("{hex}  x.sqfs\n").as_bytes()), Some(hex.to_ascii_lowercase()));
        assert_eq!(sha256_of_line(hex.as_bytes()), Some(hex.to_ascii_lowercase()));
        assert_eq!(sha256_of_line(format!("{}  x", &hex[1..]).as_bytes()), None, "63 digits");
        assert_eq!(sha256_of_line(format!("{}g  x", &hex[1..]).as_bytes()), None, "not hex");
        assert_eq!(sha256_of_line(b""), None);
        assert_eq!(sha256_of_line(b"\x1b[2J"), None);
    }

    #[test]
    fn an_image_fits_into_memory_when_what_the_system_keeps_stays_free() {
        let meminfo = |total_mib: u64, available_mib: u64| {
            format!("MemTotal:  {} kB\nMemFree: 1 kB\nMemAvailable:   {} kB\n", total_mib * 1024, available_mib * 1024)
        };
        let mib = |m: u64| m << 20;
        // 1 GiB, 900 MiB free: 256 MiB kept, 644 MiB room.
        assert_eq!(fits_in_memory(mib(644), meminfo(1024, 900).as_bytes()), Ok(mib(900)));
        let refused = fits_in_memory(mib(645), meminfo(1024, 900).as_bytes()).unwrap_err();
        assert_eq!(
            refused,
            "645 MiB does not fit into memory: 900 MiB available of 1024 MiB, 256 MiB kept for the system"
        );
        // 64 GiB: an eighth kept, 8 GiB.
        assert!(fits_in_memory(mib(56 << 10), meminfo(64 << 10, 64 << 10).as_bytes()).is_ok());
        assert!(fits_in_memory(mib(56 << 10) + 1, meminfo(64 << 10, 64 << 10).as_bytes()).is_err());
        assert!(fits_in_memory(1, meminfo(1024, 100).as_bytes()).is_err(), "less free than kept");
        for bad in ["", "MemTotal: 1024 kB\n", "MemTotal: x kB\nMemAvailable: 5 kB\n", "\u{0}\u{ff}"] {
            let why = fits_in_memory(1, bad.as_bytes()).unwrap_err();
            assert!(why.contains("cannot tell"), "{bad:?}: {why}");
        }
    }
}
