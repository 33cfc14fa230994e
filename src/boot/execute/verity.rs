//! An image root through dm-verity: what vouches for its root hash, the device-mapper device
//! over its loop device, and what the kernel found when a block did not match.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use super::Executor;
use crate::model::outcome::{Failure, Op};
use crate::model::text::escape;
use crate::model::verity::{self, Mapping};

/// The device-mapper name of a verified image root.
pub(super) const DEVICE: &str = "stateless-root";

/// The most lines of the kernel's dm-verity findings a failure's message quotes.
const FINDINGS_MAX: usize = 4;

/// A verified image root's target, and what vouched for its root hash (for the report).
pub(super) struct Trusted {
    pub target: Mapping,
    pub by: String,
}

impl Executor<'_> {
    /// What an image file `fd` (`size` bytes, at `path`) is checked against: `roothash=`
    /// (`root_hash`), its salt and data blocks from the verity superblock the file's length
    /// puts after its data. `None`: nothing asks for a check; the image is mounted as it is.
    /// An image that carries no tree fits no root hash: refused, before anything is copied or
    /// mounted.
    pub(super) fn image_trust(
        &self,
        fd: BorrowedFd<'_>,
        size: u64,
        root_hash: Option<&str>,
        path: &Path,
    ) -> Result<Option<Trusted>, Failure> {
        let Some(root_hash) = root_hash else { return Ok(None) };
        let refused = |why: String| {
            Failure::new(Op::Verify, Some(path), format!("{why}: refused (roothash= asks for a verified image)"))
        };
        let blocks = verity::data_blocks_of(size).ok_or_else(|| {
            refused(format!("{size} bytes are no image with a dm-verity tree (stateless image build --verity)"))
        })?;
        let mut block = vec![0; verity::BLOCK as usize];
        let at = blocks.saturating_mul(verity::BLOCK);
        let read = rustix::io::pread(fd, &mut block, at).map_err(|e| Failure::io(Op::Read, Some(path), &e.into()))?;
        let (named, salt) = block
            .get(..read)
            .and_then(verity::read_superblock)
            .ok_or_else(|| refused(format!("no dm-verity superblock at byte {at}")))?;
        if named != blocks {
            return Err(refused(format!("its verity superblock names {named} data blocks, its length {blocks}")));
        }
        let target = Mapping { data_blocks: blocks, salt, root_hash: root_hash.to_owned() };
        Ok(Some(Trusted { target, by: "roothash=".into() }))
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
        for said in log.iter().filter_map(|m| m.split_once("verity: ").map(|(_, said)| said)) {
            let said = escape(said.as_bytes());
            if said.contains("block") && !found.contains(&said) && found.len() < FINDINGS_MAX {
                found.push(said);
            }
        }
        let said = if found.is_empty() { String::new() } else { format!(": {}", found.join(", ")) };
        format!("; dm-verity: {status}{said}")
    }
}
