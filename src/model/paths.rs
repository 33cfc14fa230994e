//! The boot's layout under /run/stateless, relative to the root it is in (the target's, or the
//! one a tool reads): what it leaves for admins and tools, and where it mounts its own things.
//! Each is spelt here only; [`LIVE_REPORT`] is the one absolute path.

/// What the boot leaves: [`REPORT`] and [`PROVENANCE`].
pub const REPORT_DIR: &str = "run/stateless";
/// What the boot did (docs/report.md), in [`REPORT_DIR`].
pub const REPORT: &str = "report.json";
/// Which layer wrote each file, in [`REPORT_DIR`].
pub const PROVENANCE: &str = "provenance";
/// Where a running client's report is, under the root it runs in: what `stateless status`,
/// `modules` and `relayer` read.
pub const LIVE_REPORT: &str = "/run/stateless/report.json";

/// The keys a client trusts to sign its image (`stateless initramfs --trust`; the format:
/// [`crate::model::sign::trusted_keys`]), in its initramfs.
pub const TRUSTED_KEYS: &str = "etc/stateless/trusted.keys";

/// Where the per-dir tmpfs (upper and work dirs) lives.
pub const RW_BASE: &str = "run/stateless/rw";

/// Where initramfs mode mounts the export of an image-file root (in the initramfs; in the image
/// once /run moved into it).
pub const EXPORT: &str = "run/stateless/export";

/// Initramfs mode: where each try of an NFS mount mounts (`TRIES/<n>`), to be moved into place
/// once it mounted; in the initramfs's own root, never under a mount the switch moves.
pub const TRIES: &str = ".stateless-tries";

/// Where the scratch filesystem (`stateless.scratch=`) is mounted.
pub const SCRATCH: &str = "run/stateless/scratch";
/// The boot's own dir on it (root's, mode 0700). Each boot makes `boot/` afresh there, after
/// renaming the last one's away (`old-<random>`, removed for at most
/// [`crate::boot::plan::SCRATCH_CLEAN_BOUND`]: what is left then is never used again, and the
/// next boot goes on with it; [`crate::fs::disks::remove_trees`]). Nothing else on it is touched.
pub const SCRATCH_OWN: &str = "run/stateless/scratch/stateless";
/// The upper and work dirs of each writable dir (`<dir>/upper`, `<dir>/work`).
pub const SCRATCH_UPPERS: &str = "run/stateless/scratch/stateless/boot/dirs";
/// What is bound onto /tmp.
pub const SCRATCH_TMP: &str = "run/stateless/scratch/stateless/boot/tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_lies_where_its_parent_is() {
        assert_eq!(LIVE_REPORT, format!("/{REPORT_DIR}/{REPORT}"));
        for (path, parent) in [
            (RW_BASE, REPORT_DIR),
            (SCRATCH, REPORT_DIR),
            (SCRATCH_OWN, SCRATCH),
            (SCRATCH_UPPERS, SCRATCH_OWN),
            (SCRATCH_TMP, SCRATCH_OWN),
        ] {
            assert!(path.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/')), "{path} not in {parent}");
        }
    }
}
