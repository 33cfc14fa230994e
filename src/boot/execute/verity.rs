//! An image root through dm-verity: what vouches for its root hash, the device-mapper device
//! over its loop device, and what the kernel found when a block did not match.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use super::Executor;
use crate::fs::root::ImageRoot;
use crate::model::image::ImageFormat;
use crate::model::outcome::{Failure, Op};
use crate::model::paths::TRUSTED_KEYS;
use crate::model::sign::{self, TrustedKey, SIGNATURE_MAX, TRUSTED_MAX};
use crate::model::text::{beside, escape, escape_path, hex, sha256_hex};
use crate::model::verity::{self, Mapping, VerityParams};

/// The device-mapper name of a verified image root.
pub(super) const DEVICE: &str = "stateless-root";

/// The most lines of the kernel's dm-verity findings a failure's message quotes.
const FINDINGS_MAX: usize = 4;

/// A verified image root's target, and what vouched for its root hash (for the report).
pub(super) struct Trusted {
    pub target: Mapping,
    pub by: String,
}

/// An image file open on the export, as the image root step found it.
pub(super) struct OpenImage<'a> {
    pub fd: BorrowedFd<'a>,
    pub size: u64,
    pub format: ImageFormat,
    /// Its first bytes, as read ([`ImageFormat::HEAD`]).
    pub head: &'a [u8],
    /// The export, and the file's path on it (where a symlink led): its statement and
    /// signature may lie beside it. None for an NBD root: nothing lies beside it (the
    /// statement inside the file is read).
    pub beside: Option<(&'a ImageRoot, &'a Path)>,
    /// The file's path here, for messages.
    pub path: &'a Path,
}

/// The keys `running` trusts (its [`TRUSTED_KEYS`]): `None` when it has none; an error when
/// they cannot be read or do not parse, which refuses what they would have checked.
pub(super) fn read_trusted_keys(running: &ImageRoot) -> Result<Option<Vec<TrustedKey>>, String> {
    let file = running.host_path(TRUSTED_KEYS);
    let refused = |why: String| format!("the trusted keys {}: {why}: nothing is trusted unchecked", escape_path(&file));
    let text = running.read_file(TRUSTED_KEYS, TRUSTED_MAX as u64).map_err(|e| refused(e.to_string()))?;
    text.map(|t| sign::trusted_keys(&t).map_err(refused)).transpose()
}

/// The block at `at` of `fd`, as much of it as the file has.
fn block_at(fd: BorrowedFd<'_>, at: u64, path: &Path) -> Result<Vec<u8>, Failure> {
    let mut block = vec![0; verity::BLOCK as usize];
    let read = rustix::io::pread(fd, &mut block, at).map_err(|e| Failure::io(Op::Read, Some(path), &e.into()))?;
    block.truncate(read);
    Ok(block)
}

/// A signed statement as read, unchecked: the params text and the signature file.
type Statement = (Vec<u8>, Vec<u8>);

/// The signed statement beside `image` (on its export) and its signature: `None` when there
/// is no `IMAGE.verity-params` (or no export: an NBD root); one without its `.sig`, or either
/// unreadable, is refused.
fn statement_beside(image: &OpenImage<'_>, refused: &dyn Fn(String) -> Failure) -> Result<Option<Statement>, Failure> {
    let Some((export, named)) = image.beside else { return Ok(None) };
    let read = |suffix: &str, limit: usize| {
        let name = beside(named, suffix);
        let shown = escape_path(&export.host_path(&name));
        let read = export.read_file(&name, limit as u64);
        read.map(|bytes| (bytes, shown.clone()))
            .map_err(|e| refused(format!("{shown}: {}", e.to_string().to_lowercase())))
    };
    let (Some(statement), _) = read(".verity-params", VerityParams::MAX)? else { return Ok(None) };
    match read(".verity-params.sig", SIGNATURE_MAX)? {
        (Some(signature), _) => Ok(Some((statement, signature))),
        (None, shown) => Err(refused(format!("no {shown} beside it (stateless image build --verity --sign)"))),
    }
}

/// The signed statement inside `image`, in the block of the verity superblock its size puts
/// after its data ([`verity::embedded`]): `None` when it has no such block, or none there.
fn statement_inside(image: &OpenImage<'_>) -> Result<Option<Statement>, Failure> {
    let Some(blocks) = verity::data_blocks_of(image.size) else { return Ok(None) };
    Ok(verity::embedded(&block_at(image.fd, blocks.saturating_mul(verity::BLOCK), image.path)?))
}

impl Executor<'_> {
    /// What the image is checked against, before anything is copied or mounted:
    /// - `roothash=` (`root_hash`): that root hash; the salt and data blocks from the verity
    ///   superblock the file's length puts after its data (an image without a tree is refused);
    /// - else, when the initramfs trusts keys ([`TRUSTED_KEYS`]): the signed statement beside
    ///   the image (`IMAGE.verity-params` and its `.sig`) or inside it, its signature by a
    ///   trusted key, its parameters those of the file at hand; without one, or signed by
    ///   another key, the image is refused: keys in the initramfs mean no image boots unverified;
    /// - else `None`: the image is mounted as it is.
    pub(super) fn image_trust(
        &self,
        image: &OpenImage<'_>,
        root_hash: Option<&str>,
    ) -> Result<Option<Trusted>, Failure> {
        let trusted = match root_hash {
            Some(root_hash) => self.trust_root_hash(image, root_hash)?,
            None => match self.trusted_keys(image.path)? {
                Some(keys) => self.trust_signature(image, &keys)?,
                None => return Ok(None),
            },
        };
        // The tree must cover the whole filesystem its head names: a file cut short, its tree
        // laid out again for fewer blocks, verifies block by block against the same root hash.
        let covered = trusted.target.data_blocks.saturating_mul(verity::BLOCK);
        match ImageFormat::filesystem_size(image.head) {
            Some(spans) if spans <= covered => Ok(Some(trusted)),
            spans => {
                let spans = spans.map_or_else(|| "an unknown size".to_owned(), |s| format!("{s} bytes"));
                let why = format!("its {} spans {spans}, its verity tree covers {covered}: refused", image.format);
                Err(Failure::new(Op::Verify, Some(image.path), why))
            }
        }
    }

    /// The keys the initramfs trusts: `None` when it carries none; one it cannot read or parse
    /// refuses every image (trusting fewer keys than the admin meant, or none, is not an option).
    pub(super) fn trusted_keys(&self, path: &Path) -> Result<Option<Vec<TrustedKey>>, Failure> {
        let keys = self.trusted.get_or_init(|| read_trusted_keys(&self.running));
        keys.clone().map_err(|why| Failure::new(Op::Verify, Some(path), why))
    }

    /// `roothash=`: the salt and data blocks from the superblock.
    fn trust_root_hash(&self, image: &OpenImage<'_>, root_hash: &str) -> Result<Trusted, Failure> {
        let (size, path) = (image.size, image.path);
        let refused = |why: String| {
            Failure::new(Op::Verify, Some(path), format!("{why}: refused (roothash= asks for a verified image)"))
        };
        // The command line's word as given when it is none (config keeps it to refuse here).
        if sha256_hex(root_hash.as_bytes()).as_deref() != Some(root_hash) {
            return Err(refused(format!("roothash={root_hash} is not a sha256 root hash (64 hex digits)")));
        }
        let blocks = verity::data_blocks_of(size).ok_or_else(|| {
            refused(format!("{size} bytes are no image with a dm-verity tree (stateless image build --verity)"))
        })?;
        let at = blocks.saturating_mul(verity::BLOCK);
        let (named, salt) = verity::read_superblock(&block_at(image.fd, at, path)?)
            .ok_or_else(|| refused(format!("no dm-verity superblock at byte {at}")))?;
        if named != blocks {
            return Err(refused(format!("its verity superblock names {named} data blocks, its length {blocks}")));
        }
        let target = Mapping { data_blocks: blocks, salt, root_hash: root_hash.to_owned() };
        Ok(Trusted { target, by: "roothash=".into() })
    }

    /// The signed statement of the image: beside it (`IMAGE.verity-params` and its `.sig`) when
    /// there, else inside it (its verity superblock's block, [`verity::embedded`]: an NBD
    /// root, or an export without the files beside). Either is read bounded, its signature
    /// checked against `keys` first, then parsed, then held to the file (its size, its
    /// superblock, its format). Files beside it win: `image sign` writes both, and a statement
    /// beside that fails is refused, never passed over for the one inside.
    fn trust_signature(&self, image: &OpenImage<'_>, keys: &[TrustedKey]) -> Result<Trusted, Failure> {
        let trusting = match keys.len() {
            1 => "1 key".to_owned(),
            n => format!("{n} keys"),
        };
        let refused = |why: String| {
            let message = format!("{why}: refused (the initramfs trusts {trusting}: a verified image only)");
            Failure::new(Op::Verify, Some(image.path), message)
        };
        let (statement, signature) = match statement_beside(image, &refused)? {
            Some(beside) => beside,
            None => statement_inside(image)?.ok_or_else(|| {
                refused("no signed statement beside it or inside it (stateless image build --verity --sign)".into())
            })?,
        };
        let key = sign::verify(keys, &statement, &signature).map_err(|e| refused(escape(e.as_bytes())))?;
        let params = VerityParams::parse(&statement).map_err(|e| refused(format!("its verity params: {e}")))?;
        let superblock = block_at(image.fd, params.hash_offset(), image.path)?;
        params.check_against(image.size, &superblock).map_err(refused)?;
        if params.format != image.format {
            return Err(refused(format!("signed as {}, the file is {}", params.format, image.format)));
        }
        let (data_blocks, salt, root_hash) = (params.data_blocks, params.salt, hex(&params.root_hash));
        let by = format!("key {} {}", key.fingerprint(), escape(key.comment.as_bytes()));
        Ok(Trusted { target: Mapping { data_blocks, salt, root_hash }, by: by.trim_end().to_owned() })
    }

    /// dm-verity loaded, and its dependencies with it (dm-mod, dm-bufio, reed_solomon). Without
    /// it the image is refused: a verified image is never mounted unchecked.
    pub(super) fn load_verity(&mut self) -> Result<(), Failure> {
        let loaded = self.load_module("dm-verity");
        loaded.map(drop).map_err(|f| Failure {
            message: format!("{}: the image cannot be checked, so it is not mounted", f.message),
            ..f
        })
    }

    /// `target` over the loop device `device` (the image at `path`): a read-only device whose
    /// every read is checked against the root hash. Its node.
    pub(super) fn verity_device(&self, target: &Mapping, device: &Path, path: &Path) -> Result<PathBuf, Failure> {
        let dev = self.running.host_path("dev");
        let table = target.table(&device.to_string_lossy());
        self.sys
            .device_mapper(&dev, DEVICE, target.sectors(), "verity", &table)
            .map_err(|e| Failure::io(Op::Verify, Some(path), &e))
    }

    /// What the kernel's log says of dm-verity (a block that did not match: `device-mapper:
    /// verity: 7:0: data block 1 is corrupted`) and the device's status (`C`: a block
    /// mismatched), for the message of a failure on a verified root: `; dm-verity: ...`.
    pub(super) fn verity_findings(&self) -> String {
        let dev = self.running.host_path("dev");
        let status = match self.sys.device_mapper_status(&dev, DEVICE) {
            Ok(s) if s == "C" => "a block did not match its hash".to_owned(),
            Ok(s) if s == "V" => "no block mismatched".to_owned(),
            Ok(s) => format!("status {}", escape(s.as_bytes())),
            Err(e) => format!("no status: {e}"),
        };
        let log = self.sys.kernel_log().unwrap_or_default();
        // The kernel says a block again at each read of it: each once.
        let mut found: Vec<String> = Vec::new();
        // The kernel's own lines only: stateless's carry `stateless: ` (and may quote anything).
        for said in log.iter().filter_map(|m| m.strip_prefix("device-mapper: verity: ")) {
            let said = escape(said.as_bytes());
            if said.contains("block") && !found.contains(&said) && found.len() < FINDINGS_MAX {
                found.push(said);
            }
        }
        let said = if found.is_empty() { String::new() } else { format!(": {}", found.join(", ")) };
        format!("; dm-verity: {status}{said}")
    }
}
