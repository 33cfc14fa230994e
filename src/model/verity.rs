//! The dm-verity hash tree an image carries after its data, in the format `veritysetup` reads
//! (format 1, sha256, 4096-byte data and hash blocks; kernel `verity.rst`, cryptsetup
//! `lib/verity`): what `veritysetup format --hash-offset=<data bytes> --data-blocks=N --salt=S
//! --uuid=U IMAGE IMAGE` writes. The file is `[data, N blocks][superblock, 1 block][hash levels,
//! the top one first, each block in order]`. A leaf is SHA-256(salt ‖ data block); a hash block
//! holds 128 digests, zero-filled after the last; each level above hashes the one below, until
//! one block remains; the root hash is SHA-256(salt ‖ that block). One data block: no hash
//! blocks, the root hash is its leaf.
//!
//! Reproducible: the salt is SHA-256(`stateless-verity-salt-v1\0` ‖ the SHA-256 of the image's
//! data as its tool wrote it, in 64 lower-case hex digits), and the superblock's UUID the salt's first 16 bytes made an RFC 4122
//! version 4 UUID (its version and variant bits set): the same data gives the same tree.

use sha2::{Digest, Sha256};

/// The data and hash block size.
pub const BLOCK: u64 = 4096;

/// The digests a hash block holds.
const PER_BLOCK: usize = BLOCK as usize / 32;

/// What the salt is derived with, and from (see the module's doc).
const SALT_LABEL: &[u8] = b"stateless-verity-salt-v1\0";

pub type Digest32 = [u8; 32];

/// The salt for data whose SHA-256 is `data_sha256` (64 lower-case hex digits).
pub fn salt(data_sha256: &str) -> Digest32 {
    Sha256::new().chain_update(SALT_LABEL).chain_update(data_sha256).finalize().into()
}

/// The superblock's UUID for `salt`: its first 16 bytes, RFC 4122 version 4, variant 10.
pub fn uuid(salt: &Digest32) -> [u8; 16] {
    let mut uuid = [0; 16];
    uuid.iter_mut().zip(salt).for_each(|(u, s)| *u = *s);
    if let Some(version) = uuid.get_mut(6) {
        *version = (*version & 0x0f) | 0x40;
    }
    if let Some(variant) = uuid.get_mut(8) {
        *variant = (*variant & 0x3f) | 0x80;
    }
    uuid
}

/// SHA-256(salt ‖ block): a leaf of a data block, or the digest of a hash block.
pub fn hash(salt: &Digest32, block: &[u8]) -> Digest32 {
    Sha256::new().chain_update(salt).chain_update(block).finalize().into()
}

/// The number of hash blocks of each level for `data_blocks` data blocks, top level first (as
/// they lie on disk): none for one block.
pub fn levels(data_blocks: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut below = data_blocks;
    while below > 1 {
        below = below.div_ceil(PER_BLOCK as u64);
        sizes.push(below);
    }
    sizes.reverse();
    sizes
}

/// The 4096-byte superblock (512 bytes used, the rest zero; little-endian): `verity\0\0`,
/// version 1, hash type 1, the UUID, `sha256`, block sizes, data blocks, salt size and salt.
pub fn superblock(data_blocks: u64, salt: &Digest32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut block = Vec::with_capacity(BLOCK as usize);
    block.extend_from_slice(b"verity\0\0");
    block.extend_from_slice(&1u32.to_le_bytes());
    block.extend_from_slice(&1u32.to_le_bytes());
    block.extend_from_slice(uuid);
    block.extend_from_slice(&[b"sha256".as_slice(), &[0; 26]].concat());
    block.extend_from_slice(&(BLOCK as u32).to_le_bytes());
    block.extend_from_slice(&(BLOCK as u32).to_le_bytes());
    block.extend_from_slice(&data_blocks.to_le_bytes());
    block.extend_from_slice(&(salt.len() as u16).to_le_bytes());
    block.extend_from_slice(&[0; 6]);
    block.extend_from_slice(salt);
    block.resize(BLOCK as usize, 0);
    block
}

/// The hash levels over `leaves` (one per data block, in order), as they lie on disk (top
/// level first), and the root hash.
pub fn tree(salt: &Digest32, leaves: Vec<Digest32>) -> (Vec<u8>, Digest32) {
    let mut level = leaves;
    let mut stored: Vec<Vec<u8>> = Vec::new();
    while level.len() > 1 {
        let mut blocks = Vec::with_capacity(level.len().div_ceil(PER_BLOCK) * BLOCK as usize);
        for digests in level.chunks(PER_BLOCK) {
            digests.iter().for_each(|d| blocks.extend_from_slice(d));
            blocks.resize(blocks.len().next_multiple_of(BLOCK as usize), 0);
        }
        level = blocks.chunks(BLOCK as usize).map(|b| hash(salt, b)).collect();
        stored.push(blocks);
    }
    // No leaves (no image is empty): the root of one zero block.
    let root = level.first().copied().unwrap_or_else(|| hash(salt, &[0; BLOCK as usize]));
    (stored.into_iter().rev().flatten().collect(), root)
}

/// The data blocks of a file of `len` bytes that is `[data][superblock][hash levels]` as
/// [`superblock`] and [`tree`] lay it out, when some count of data blocks fills it exactly.
pub fn data_blocks_of(len: u64) -> Option<u64> {
    let blocks = len.is_multiple_of(BLOCK).then_some(len / BLOCK)?;
    let fills = |n: u64| n.checked_add(1 + levels(n).iter().sum::<u64>()) == Some(blocks);
    // The levels hold a little over 1/127 of the data: the answer is within a few blocks of that.
    let guess = blocks.saturating_sub(1).saturating_mul(127) / 128;
    (guess.saturating_sub(4)..=guess.saturating_add(4).min(blocks)).find(|&n| n > 0 && fills(n))
}

/// The data blocks and salt a verity superblock `block` names, when it is one [`superblock`]
/// writes: format 1, sha256, 4096-byte blocks, a 32-byte salt.
pub fn read_superblock(block: &[u8]) -> Option<(u64, Digest32)> {
    let le32 = |at: usize| block.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let le64 = |at: usize| block.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let le16 = |at: usize| block.get(at..at + 2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes);
    let ours = block.get(..8) == Some(b"verity\0\0")
        && le32(8) == Some(1)
        && le32(12) == Some(1)
        && block.get(32..64) == Some(&[b"sha256".as_slice(), &[0; 26]].concat()[..])
        && le32(64) == Some(BLOCK as u32)
        && le32(68) == Some(BLOCK as u32)
        && le16(80) == Some(32);
    let salt: Digest32 = block.get(88..120)?.try_into().ok()?;
    ours.then_some((le64(72)?, salt))
}

/// What the kernel's verity target needs of an image that carries a tree as [`superblock`] and
/// [`tree`] lay it out, from a source the boot trusts (the root hash: `roothash=` or a signed
/// statement; the salt and data blocks: that statement or the image's superblock, which cannot
/// lie to advantage: any other salt or shape gives another root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub data_blocks: u64,
    pub salt: Digest32,
    /// 64 lower-case hex digits.
    pub root_hash: String,
}

impl Mapping {
    /// The device's size in 512-byte sectors: the data blocks only.
    pub fn sectors(&self) -> u64 {
        self.data_blocks.saturating_mul(BLOCK / 512)
    }

    /// The kernel's table (verity.rst) over `device` (a path or `major:minor`) holding both
    /// data and tree: version 1, 4096-byte blocks, the tree from the block after the
    /// superblock. No optional arguments: a block that does not match fails its read with
    /// EIO; `check_at_most_once` would let a server change a block after its first read, and
    /// 6.12's `restart_on_error` would reboot the client on a network hiccup.
    pub fn table(&self, device: &str) -> String {
        let salt = crate::model::text::hex(&self.salt);
        let (blocks, tree) = (self.data_blocks, self.data_blocks.saturating_add(1));
        format!("1 {device} {device} {BLOCK} {BLOCK} {blocks} {tree} sha256 {} {salt}", self.root_hash)
    }
}

/// The root hash a `.roothash` file holds: 64 hex digits, of any case, a newline after them
/// or not; as lower-case hex.
pub fn root_hash_of(text: &[u8]) -> Option<String> {
    let hex = text.strip_suffix(b"\n").unwrap_or(text);
    (hex.len() == 64 && hex.iter().all(u8::is_ascii_hexdigit))
        .then(|| String::from_utf8_lossy(hex).to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn levels_hold_128_digests_a_block_top_first() {
        assert_eq!(levels(1), Vec::<u64>::new());
        assert_eq!(levels(2), [1]);
        assert_eq!(levels(128), [1]);
        assert_eq!(levels(129), [1, 2]);
        // The memo's veritysetup run: 935 blocks, 9 hash blocks on 2 levels.
        assert_eq!(levels(935), [1, 8]);
        assert_eq!(levels(128 * 128), [1, 128]);
        assert_eq!(levels(128 * 128 + 1), [1, 2, 129]);
    }

    #[test]
    fn the_superblock_is_veritysetups() {
        // The memo's run: `--salt=aa..aa --uuid=00000000-0000-0000-0000-000000000001`, 935 blocks.
        let mut uuid = [0; 16];
        uuid[15] = 1;
        let sb = superblock(935, &[0xaa; 32], &uuid);
        assert_eq!(sb.len(), 4096);
        let head: Vec<u8> = [
            &b"verity\0\0"[..],
            &[1, 0, 0, 0, 1, 0, 0, 0],
            &uuid,
            b"sha256",
            &[0; 26],
            &[0, 0x10, 0, 0, 0, 0x10, 0, 0, 0xa7, 3, 0, 0, 0, 0, 0, 0],
            &[32, 0, 0, 0, 0, 0, 0, 0],
            &[0xaa; 32],
        ]
        .concat();
        assert_eq!(sb[..head.len()], head);
        assert!(sb[head.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_files_length_tells_its_data_blocks_and_a_superblock_reads_back() {
        for n in [1u64, 2, 127, 128, 129, 935, 16_384, 16_385, 35_848, 1 << 20] {
            let len = (n + 1 + levels(n).iter().sum::<u64>()) * BLOCK;
            assert_eq!(data_blocks_of(len), Some(n), "{n}");
        }
        assert_eq!(data_blocks_of(0), None);
        assert_eq!(data_blocks_of(4096 * 3 + 1), None, "not whole blocks");
        assert_eq!(data_blocks_of(3 * 4096), None, "2 data blocks need a hash block: 4, 1 needs 2");
        assert!(data_blocks_of(u64::MAX - u64::MAX % 4096).is_some(), "no overflow at the end");
        let sb = superblock(935, &[0xaa; 32], &[1; 16]);
        assert_eq!(read_superblock(&sb), Some((935, [0xaa; 32])));
        for (at, byte) in [(0, b'V'), (8, 2), (32, b'S'), (65, 0x20), (80, 16)] {
            let mut bad = sb.clone();
            bad[at] = byte;
            assert_eq!(read_superblock(&bad), None, "byte {at}");
        }
        assert_eq!(read_superblock(&sb[..100]), None, "too short");
    }

    #[test]
    fn the_table_is_veritysetups() {
        // The memo's image: 935 data blocks, the superblock at 935, the tree from 936.
        let t = Mapping { data_blocks: 935, salt: [0xaa; 32], root_hash: "05".repeat(32) };
        assert_eq!(t.sectors(), 7480);
        let table = t.table("/dev/loop0");
        assert_eq!(
            table,
            format!("1 /dev/loop0 /dev/loop0 4096 4096 935 936 sha256 {} {}", "05".repeat(32), "aa".repeat(32))
        );
        let huge = Mapping { data_blocks: u64::MAX, ..t };
        assert_eq!(huge.sectors(), u64::MAX, "no overflow");
        assert!(huge.table("7:0").contains(&format!(" {} {} ", u64::MAX, u64::MAX)));
    }

    #[test]
    fn uuids_are_version_4_from_the_salt() {
        let u = uuid(&[0xff; 32]);
        assert_eq!((u[6], u[8], u[0], u[15]), (0x4f, 0xbf, 0xff, 0xff));
        assert_eq!(uuid(&[0; 32])[6..9], [0x40, 0, 0x80]);
        assert_ne!(salt("00"), salt("01"));
    }

    #[test]
    fn root_hash_files_hold_64_hex_digits_only() {
        let hex = "05f238d968656948b87de430f1b0efa33579f28b0b98f765d02d588387bffda2";
        assert_eq!(root_hash_of(hex.as_bytes()).unwrap(), hex);
        assert_eq!(root_hash_of(format!("{}\n", hex.to_ascii_uppercase()).as_bytes()).unwrap(), hex);
        for bad in [&hex[1..], &format!("{hex}0"), &format!("{hex}\n\n"), &format!(" {hex}"), "", "\u{1b}[2J"] {
            assert_eq!(root_hash_of(bad.as_bytes()), None, "{bad:?}");
        }
    }

    /// The tree over leaves whose digests are given: the sizes of its levels, each digest where
    /// its level puts it, and the root the top block's hash.
    #[test]
    fn trees_of_1_128_129_and_935_blocks() {
        let salt = [7; 32];
        let leaf = |i: u64| hash(&salt, &[i as u8; 4096]);
        for n in [1u64, 128, 129, 935] {
            let leaves: Vec<Digest32> = (0..n).map(leaf).collect();
            let (stored, root) = tree(&salt, leaves.clone());
            assert_eq!(stored.len() as u64, levels(n).iter().sum::<u64>() * BLOCK, "{n}");
            if n == 1 {
                assert_eq!(root, leaves[0]);
                continue;
            }
            // The leaf level is last: every leaf digest at its index, zeroes after.
            let bottom = stored.len() - *levels(n).last().unwrap() as usize * 4096;
            for (i, d) in leaves.iter().enumerate() {
                assert_eq!(stored[bottom + i * 32..bottom + i * 32 + 32], *d);
            }
            assert!(stored[bottom + leaves.len() * 32..].iter().all(|b| *b == 0));
            assert_eq!(root, hash(&salt, &stored[..4096]), "{n}: the root hashes the top block");
        }
        // 129 blocks: the top block holds the two leaf blocks' hashes.
        let (stored, _) = tree(&salt, (0..129).map(leaf).collect());
        assert_eq!(stored[..32], hash(&salt, &stored[4096..8192]));
        assert_eq!(stored[32..64], hash(&salt, &stored[8192..12288]));
    }
}
