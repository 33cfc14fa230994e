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

use crate::model::image::ImageFormat;
use crate::model::text::hex;

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

/// Where a signed statement lies inside the superblock's block: after the 512 bytes the
/// superblock uses. `veritysetup` reads those 512 only; the kernel reads none of the block
/// ([`Mapping::table`]'s hash start block is the one after it), so the root hash does not
/// cover it, and `veritysetup verify` accepts the image whatever lies there.
pub const EMBEDDED_AT: usize = 512;

/// What begins a statement inside the superblock's block.
const EMBEDDED_MAGIC: &[u8] = b"stateless-sig 1\n";

/// Writes a signed statement into `block`, an image's verity superblock block (4096 bytes),
/// after its [`EMBEDDED_AT`] used bytes: `stateless-sig 1\n`, the params text's length (u16
/// LE), the params text ([`VerityParams::text`]), the signature file's length (u16 LE), the
/// signature file (signify's format, as written beside the image), zeros to the block's end.
/// The statement needs no digest: it is signed, and read as the sidecars are (signature first).
/// Params over [`VerityParams::MAX`], a signature over [`crate::model::sign::SIGNATURE_MAX`],
/// or both together past the block are an error, and the block is left as it was.
pub fn embed(block: &mut [u8], params: &[u8], sig: &[u8]) -> Result<(), String> {
    if block.len() != BLOCK as usize {
        return Err(format!("a superblock's block has {BLOCK} bytes, not {}", block.len()));
    }
    if params.len() > VerityParams::MAX || sig.len() > crate::model::sign::SIGNATURE_MAX {
        return Err(format!("verity params of {} bytes and a signature of {} are too large", params.len(), sig.len()));
    }
    let mut statement = EMBEDDED_MAGIC.to_vec();
    for part in [params, sig] {
        statement.extend_from_slice(&(part.len() as u16).to_le_bytes());
        statement.extend_from_slice(part);
    }
    let room = block.len() - EMBEDDED_AT;
    if statement.len() > room {
        return Err(format!("a signed statement of {} bytes: {room} fit in the superblock's block", statement.len()));
    }
    statement.resize(room, 0);
    block.get_mut(EMBEDDED_AT..).ok_or("no room after the superblock")?.copy_from_slice(&statement);
    Ok(())
}

/// The params text and signature file [`embed`] wrote into `block` (untrusted: a server's;
/// read bounded, to be verified as the sidecars are). `None` when the block holds none: no
/// magic, and also a magic whose lengths are over their bounds or run past the block, which
/// is no statement either (the boot then refuses as for an image never signed).
pub fn embedded(block: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let rest = block.get(EMBEDDED_AT..)?.strip_prefix(EMBEDDED_MAGIC)?;
    let take = |rest: &[u8], max: usize| -> Option<(Vec<u8>, usize)> {
        let len = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
        (len <= max).then_some(())?;
        Some((rest.get(2..2 + len)?.to_vec(), 2 + len))
    };
    let (params, used) = take(rest, VerityParams::MAX)?;
    let (sig, _) = take(rest.get(used..)?, crate::model::sign::SIGNATURE_MAX)?;
    Some((params, sig))
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
    crate::model::text::sha256_hex(text.strip_suffix(b"\n").unwrap_or(text))
}

/// What a signature vouches for (`IMAGE.verity-params`, signed in `IMAGE.verity-params.sig`):
/// every parameter of the verity table, so the boot takes nothing from the unsigned superblock.
/// Canonical text, a `key value` line each in this order, `\n` endings, numbers in decimal
/// without leading zeroes, hex in lower case:
///
/// ```text
/// stateless-verity 1
/// format squashfs|erofs
/// file-size N           (the whole file's bytes: data, superblock, hash blocks)
/// data-blocks N
/// data-block-size 4096
/// hash-block-size 4096
/// hash-offset N         (data-blocks × 4096: where the superblock is)
/// algorithm sha256
/// salt <64 hex digits>
/// root-hash <64 hex digits>
/// ```
///
/// No image name (publish renames images) and no time (a rebuild gives the same bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityParams {
    pub format: ImageFormat,
    pub data_blocks: u64,
    pub salt: Digest32,
    pub root_hash: Digest32,
}

/// The keys of [`VerityParams`]' text, in order.
const PARAMS_KEYS: [&str; 10] = [
    "stateless-verity",
    "format",
    "file-size",
    "data-blocks",
    "data-block-size",
    "hash-block-size",
    "hash-offset",
    "algorithm",
    "salt",
    "root-hash",
];

impl VerityParams {
    /// The largest params file read.
    pub const MAX: usize = 4096;

    /// Where the superblock is, and the data ends: `--hash-offset`.
    pub fn hash_offset(&self) -> u64 {
        self.data_blocks.saturating_mul(BLOCK)
    }

    /// The bytes of the whole file: data, superblock and hash levels.
    pub fn file_size(&self) -> u64 {
        let blocks = levels(self.data_blocks).iter().sum::<u64>().saturating_add(1).saturating_add(self.data_blocks);
        blocks.saturating_mul(BLOCK)
    }

    /// The values of the text's lines, in [`PARAMS_KEYS`]' order.
    fn values(&self) -> [String; 10] {
        let format = match self.format {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Erofs => "erofs",
        };
        [
            "1".into(),
            format.into(),
            self.file_size().to_string(),
            self.data_blocks.to_string(),
            BLOCK.to_string(),
            BLOCK.to_string(),
            self.hash_offset().to_string(),
            "sha256".into(),
            hex(&self.salt),
            hex(&self.root_hash),
        ]
    }

    /// The canonical text.
    pub fn text(&self) -> String {
        PARAMS_KEYS.iter().zip(self.values()).map(|(key, value)| format!("{key} {value}\n")).collect()
    }

    /// The params `text` says, when it is exactly the canonical text of some (an unknown,
    /// missing, repeated or misplaced key, a value not in its canonical form, or anything after
    /// the last line is an error naming the line).
    pub fn parse(text: &[u8]) -> Result<VerityParams, String> {
        if text.len() > Self::MAX {
            return Err(format!("larger than {} bytes", Self::MAX));
        }
        let text = std::str::from_utf8(text).map_err(|_| "not text (UTF-8)".to_owned())?;
        let body = text.strip_suffix('\n').ok_or("its last line has no newline: cut short?")?;
        let lines: Vec<&str> = body.split('\n').collect();
        let mut values = Vec::with_capacity(PARAMS_KEYS.len());
        for (n, key) in PARAMS_KEYS.iter().enumerate() {
            let at = |what: String| format!("line {}: {what}", n + 1);
            let Some(line) = lines.get(n) else { return Err(at(format!("missing: {key} was expected"))) };
            let (have, value) = line.split_once(' ').unwrap_or((line, ""));
            if have != *key {
                let why = if PARAMS_KEYS.contains(&have) { "out of its place, or again" } else { "an unknown key" };
                return Err(at(format!("{}: {why} ({key} was expected)", crate::model::text::quoted(have))));
            }
            values.push(value);
        }
        if lines.len() > PARAMS_KEYS.len() {
            return Err(format!("line {}: after the last key (root-hash)", PARAMS_KEYS.len() + 1));
        }
        let number = |i: usize| values.get(i).and_then(|v| v.parse::<u64>().ok());
        let digest = |i: usize| -> Option<Digest32> { crate::model::text::unhex(values.get(i)?)?.try_into().ok() };
        let format = match values.get(1) {
            Some(&"squashfs") => ImageFormat::Squashfs,
            Some(&"erofs") => ImageFormat::Erofs,
            _ => return Err("line 2: the format is squashfs or erofs".into()),
        };
        let data_blocks = number(3)
            .filter(|&n| n > 0 && n < u64::MAX / BLOCK / 2)
            .ok_or("line 4: data-blocks is not a count of blocks")?;
        let params = VerityParams {
            format,
            data_blocks,
            salt: digest(8).ok_or("line 9: the salt is not 64 hex digits")?,
            root_hash: digest(9).ok_or("line 10: the root hash is not 64 hex digits")?,
        };
        // Each value as the canonical text writes it: what differs is named.
        for (n, (key, (have, want))) in PARAMS_KEYS.iter().zip(values.iter().zip(params.values())).enumerate() {
            if *have != want {
                return Err(format!("line {}: {key} {} is not {want}", n + 1, crate::model::text::quoted(have)));
            }
        }
        Ok(params)
    }

    /// That the image these params were signed for is the one at hand: a file of `file_size`
    /// bytes whose verity superblock (the block at [`VerityParams::hash_offset`]) is
    /// `superblock`, naming the same data blocks and salt.
    pub fn check_against(&self, file_size: u64, superblock: &[u8]) -> Result<(), String> {
        if file_size != self.file_size() {
            return Err(format!(
                "the image has {file_size} bytes, its signed verity params {} ({} data blocks and their tree)",
                self.file_size(),
                self.data_blocks
            ));
        }
        match read_superblock(superblock) {
            Some((blocks, salt)) if blocks == self.data_blocks && salt == self.salt => Ok(()),
            Some(_) => Err("the image's verity superblock names other data blocks or another salt than its signed \
                            verity params"
                .into()),
            None => Err(format!("no verity superblock at {} (format 1, sha256, 4096-byte blocks)", self.hash_offset())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn params() -> VerityParams {
        VerityParams { format: ImageFormat::Squashfs, data_blocks: 935, salt: [0xaa; 32], root_hash: [0x05; 32] }
    }

    #[test]
    fn params_text_is_canonical_and_reads_back() {
        let text = params().text();
        let aa = "aa".repeat(32);
        let root = "05".repeat(32);
        assert_eq!(
            text,
            format!(
                "stateless-verity 1\nformat squashfs\nfile-size 3870720\ndata-blocks 935\ndata-block-size 4096\n\
                 hash-block-size 4096\nhash-offset 3829760\nalgorithm sha256\nsalt {aa}\nroot-hash {root}\n"
            ),
            "the memo's veritysetup run: 935 blocks, 3870720 bytes"
        );
        assert_eq!(VerityParams::parse(text.as_bytes()).unwrap(), params());
        let erofs = VerityParams { format: ImageFormat::Erofs, data_blocks: 1, ..params() };
        assert_eq!(VerityParams::parse(erofs.text().as_bytes()).unwrap(), erofs);
        assert_eq!(erofs.file_size(), 2 * 4096);
    }

    #[test]
    fn params_refuse_anything_but_their_canonical_text() {
        let text = params().text();
        let line = |n: usize, with: &str| {
            let mut lines: Vec<&str> = text.lines().collect();
            lines[n] = with;
            lines.iter().map(|l| format!("{l}\n")).collect::<String>()
        };
        let salt_line = format!("salt {}", "AA".repeat(32));
        for (bad, why) in [
            (text.trim_end().to_owned(), "its last line has no newline"),
            (format!("{text}\n"), "line 11: after the last key"),
            (format!("{text}version 2\n"), "line 11: after the last key"),
            (text.replace("algorithm sha256\n", ""), "line 8: \"salt\": out of its place"),
            (text.replace("root-hash", "roothash"), "line 10: \"roothash\": an unknown key"),
            (line(9, ""), "line 10: \"\": an unknown key"),
            (text.lines().take(9).map(|l| format!("{l}\n")).collect(), "line 10: missing"),
            (line(3, "format squashfs"), "line 4: \"format\": out of its place, or again"),
            (line(0, "stateless-verity 2"), "line 1: stateless-verity \"2\" is not 1"),
            (line(1, "format ext4"), "line 2: the format"),
            (line(2, "file-size 3870721"), "line 3: file-size \"3870721\" is not 3870720"),
            (line(3, "data-blocks 0935"), "line 4: data-blocks \"0935\" is not 935"),
            (line(3, "data-blocks 0"), "line 4: data-blocks"),
            (line(3, "data-blocks -1"), "line 4: data-blocks"),
            (line(4, "data-block-size 512"), "line 5: data-block-size"),
            (line(5, "hash-block-size  4096"), "line 6: hash-block-size"),
            (line(6, "hash-offset 3829761"), "line 7: hash-offset"),
            (line(7, "algorithm sha1"), "line 8: algorithm"),
            (line(8, &salt_line), "line 9: salt"),
            (line(8, "salt aa"), "line 9: the salt"),
            (line(9, "root-hash 05"), "line 10: the root hash"),
            (line(9, &format!("root-hash {} ", "05".repeat(32))), "line 10: the root hash"),
            (text.replace('\n', "\r\n"), "line 2: the format"),
            (" ".repeat(4097), "larger than 4096 bytes"),
        ] {
            let err = VerityParams::parse(bad.as_bytes()).unwrap_err();
            assert!(err.starts_with(why), "{bad:?}: {err}");
        }
        assert!(VerityParams::parse(b"\xff\n").unwrap_err().contains("not text"));
    }

    #[test]
    fn params_check_the_image_they_name() {
        let p = params();
        let sb = superblock(935, &[0xaa; 32], &[1; 16]);
        p.check_against(3_870_720, &sb).unwrap();
        assert!(p.check_against(3_870_720 + 4096, &sb).unwrap_err().contains("has 3874816 bytes"));
        assert!(p
            .check_against(3_870_720, &superblock(934, &[0xaa; 32], &[1; 16]))
            .unwrap_err()
            .contains("other data blocks"));
        assert!(p
            .check_against(3_870_720, &superblock(935, &[0xab; 32], &[1; 16]))
            .unwrap_err()
            .contains("another salt"));
        assert!(p.check_against(3_870_720, &[0; 4096]).unwrap_err().contains("no verity superblock at 3829760"));
    }

    #[test]
    fn a_statement_embeds_after_the_superblock_and_reads_back() {
        let sb = superblock(935, &[0xaa; 32], &[1; 16]);
        let mut block = sb.clone();
        assert_eq!(embedded(&block), None, "a superblock alone");
        let (text, sig) = (params().text().into_bytes(), b"untrusted comment: x\nsig\n".to_vec());
        embed(&mut block, &text, &sig).unwrap();
        assert_eq!(block[..512], sb[..512], "the superblock is untouched");
        assert_eq!(read_superblock(&block), Some((935, [0xaa; 32])));
        assert_eq!(&block[512..528], b"stateless-sig 1\n");
        assert_eq!(block[528..530], (text.len() as u16).to_le_bytes());
        assert_eq!(embedded(&block), Some((text.clone(), sig.clone())));
        assert!(block[530 + text.len() + 2 + sig.len()..].iter().all(|b| *b == 0), "zeros after");
        // Again, shorter: nothing of the first stays.
        embed(&mut block, b"p", b"s").unwrap();
        assert_eq!(embedded(&block), Some((b"p".to_vec(), b"s".to_vec())));
        assert!(block[512 + 16 + 6..].iter().all(|b| *b == 0));
        assert_eq!(embedded(&block[..534]), Some((b"p".to_vec(), b"s".to_vec())), "read bounded, not padded");
        assert_eq!(embedded(&block[..533]), None, "a block cut short");
    }

    #[test]
    fn embedding_is_bounded_by_the_block() {
        let mut block = vec![7; 4096];
        let too_big = vec![b'x'; 4097];
        assert!(embed(&mut block, &too_big, b"s").unwrap_err().contains("too large"));
        assert!(embed(&mut block, b"p", &too_big[..2049]).unwrap_err().contains("too large"));
        let err = embed(&mut block, &too_big[..3000], &too_big[..2000]).unwrap_err();
        assert!(err.contains("3584 fit"), "{err}");
        assert!(block.iter().all(|b| *b == 7), "left as it was");
        assert!(embed(&mut [0; 100], b"p", b"s").unwrap_err().contains("not 100"));
        // The most that fits: 3584 - 16 - 4 bytes between the two.
        embed(&mut block, &too_big[..2000], &too_big[..1564]).unwrap();
        assert_eq!(embedded(&block).map(|(p, s)| (p.len(), s.len())), Some((2000, 1564)));
    }

    #[test]
    fn hostile_lengths_are_no_statement() {
        let statement = |parts: &[&[u8]]| {
            let mut block = vec![0; 4096];
            let bytes = [&b"stateless-sig 1\n"[..]].iter().chain(parts).flat_map(|p| p.to_vec()).collect::<Vec<u8>>();
            block[512..512 + bytes.len()].copy_from_slice(&bytes);
            block
        };
        assert_eq!(embedded(&statement(&[&[1, 0], b"p", &[1, 0], b"s"])), Some((b"p".to_vec(), b"s".to_vec())));
        let cases: [(&[&[u8]], &str); 3] = [
            (&[&[0xff, 0xff]], "params longer than the block"),
            (&[&[1, 0x10], b"p"], "params over VerityParams::MAX (4097)"),
            (&[&[1, 0], b"p", &[1, 8]], "a signature over SIGNATURE_MAX (2049)"),
        ];
        for (parts, why) in cases {
            assert_eq!(embedded(&statement(parts)), None, "{why}");
        }
        let past = statement(&[&[1, 0], b"p", &[0, 8]]);
        assert_eq!(embedded(&past[..2048]), None, "a signature of 2048 bytes past a block cut short");
        assert!(embedded(&past).is_some());
        let mut cut = statement(&[&[1, 0], b"p", &[1, 0], b"s"]);
        cut[512] = b'S';
        assert_eq!(embedded(&cut), None, "another magic");
        assert_eq!(embedded(&cut[..513]), None);
        assert_eq!(embedded(&[]), None);
    }

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
