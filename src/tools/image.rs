//! `stateless image build` and `stateless image publish`: a root tree as one read-only image
//! file, squashfs or EROFS, made by the distribution's own mksquashfs or mkfs.erofs; and that
//! file put where clients boot it, under a name never used before, with a `current` symlink
//! moved to it atomically. A served image is never rewritten: a client holds the file it booted.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::fs::hashcopy::copy_hashed;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::quote;
use crate::model::image::{sha256_of_line, ImageFormat};
use crate::model::sign;
use crate::model::text::{beside, escape, escape_path, hex};
use crate::model::verity::{self, VerityParams};

pub const USAGE: &str = "\
usage: stateless image build DIR -o IMAGE [--format squashfs|erofs] [--compress zstd|xz|lz4]
                             [--order LIST] [--verity [--sign KEY]] [--force]
       stateless image sign IMAGE --key KEY [--force]
       stateless image publish IMAGE DIR

build writes a read-only image of the root tree DIR to IMAGE, and IMAGE.sha256 beside it (as
sha256sum writes it), with the distribution's own tool: mksquashfs (squashfs-tools) for
squashfs, the default, or mkfs.erofs (erofs-utils) for erofs. Compression: squashfs zstd by
default, or xz, or lz4 (lz4hc); EROFS lz4 (lz4hc) by default, xz and zstd where its
mkfs.erofs makes them (Debian 12's makes lz4 only). One the tool cannot make is refused before
anything is written; one Debian 12's kernel cannot read (EROFS xz or zstd) is said. Kept:
owners, modes, extended attributes (security.capability too; squashfs has no POSIX ACLs),
device nodes, symlinks, hard links and every file's time. Left out: the contents of /dev,
/proc, /run, /sys and /tmp (the dirs are kept, empty), and /diskless, the layer root: layers
stay files beside the image, edited without building it again. The same tree gives the same
bytes: the image is dated SOURCE_DATE_EPOCH (seconds; a file newer is dated so too), by
default the newest time in the tree. IMAGE is written beside and named once complete; it may
not be inside DIR; its name may not be \"-\" or hold a backslash, a control, bidi or zero-width
character. An IMAGE or IMAGE.sha256 that exists is refused: --force replaces both when they
are files (never a dir, symlink, device or fifo), which a client that booted that file does
not survive (publish images to serve them). A tool that exits 0 without writing an image is
an error. Prints the format, compression, size, sha256 and time taken.

--verity appends a dm-verity hash tree to IMAGE, as veritysetup format writes one into the
same file after the data (sha256, 4096-byte blocks, the superblock first; the data padded to
4096 bytes), and writes its root hash to IMAGE.roothash (64 hex digits, no newline, as
veritysetup writes a root hash file). The image still mounts as it is (the tree lies past its
end); IMAGE.sha256 is the whole file's. Salt and UUID come from the data: the same tree gives
the same bytes. An IMAGE.roothash that exists is refused like IMAGE.sha256, and without
--verity --force removes it. Check an image with veritysetup verify, the data's size (printed)
as its hash offset, IMAGE as data and hash device, and the root hash (docs/serving.md).
A client checks it when its command line names the root hash (roothash=) or its initramfs
trusts the key that signed it (--sign). Prints the root hash, the data's and the tree's size.

--sign KEY (with --verity) also writes IMAGE.verity-params, the verity table's parameters
(format, sizes, salt, root hash: no name, no time) as canonical text, and
IMAGE.verity-params.sig, its ed25519 signature by KEY in signify's format (signify-openbsd -V
checks it), and writes both inside IMAGE too, before IMAGE.sha256 is taken: in the verity
superblock's block after its 512 bytes, which neither the root hash nor veritysetup covers (an
NBD root, with nothing beside it, is checked by it). KEY: OpenSSL's PEM (openssl genpkey
-algorithm ed25519) or signify's secret key made without a passphrase; an encrypted one is refused. Both files are refused when they
exist, like IMAGE.sha256, and without --sign --force removes them. A client trusts the public
key through its initramfs (stateless initramfs --help). Prints the key's fingerprint
(SHA256:..., as ssh-keygen shows keys) and its key id.

sign writes IMAGE.verity-params and IMAGE.verity-params.sig for an image built with --verity,
its tree hashed again (a new key, without a rebuild): with --force they replace the files
there (regular files only), and one inside IMAGE. It rewrites IMAGE with them inside (a copy written beside it, then
renamed over it) and IMAGE.sha256 to match: the name gets a new file, so a hard link to IMAGE,
or a server holding it open, keeps serving the old bytes (sign before publish). Signed again
by the same key, IMAGE is left alone. IMAGE must be a regular file, not a symlink.

--order LIST (squashfs): the files LIST names, a path a line as the image's root sees them
(/usr/lib/systemd/systemd; symlinks resolved inside DIR; empty and # lines skipped), are laid
out first, in LIST's order, the rest after them as without: the files a boot reads, in the
order it reads them, make its reads of the image near each other, so the client's readahead
takes them in fewer and larger READs and fewer bytes it does not need. A path that names no
file the image holds, or one again, is left where mksquashfs puts it, and counted. The same
tree and LIST give the same bytes.

publish copies IMAGE (a squashfs or EROFS image, told by its magic) into the dir clients boot
from, DIR (a copy: a hard link would change with a write into IMAGE), as NAME-TIME-SHA.EXT: IMAGE's name and extension, the UTC time (20261206T101500Z)
and the first 12 hex digits of its sha256; a name that exists is refused, and so is the image
current names already. IMAGE.sha256, when present, must be a line of sha256sum's (64 hex
digits first) that matches; IMAGE.roothash, when present, must hold 64 hex digits, the root
hash of the verity tree IMAGE carries (its blocks hashed again); IMAGE.verity-params and
IMAGE.verity-params.sig, when present, go together and the params must describe IMAGE, as must
a statement signed inside it (the signature is not checked: publish needs no keys). The copy gets its .sha256 (and .roothash,
.verity-params and .verity-params.sig) beside it, then DIR/current, a symlink, is
pointed at it: a new symlink renamed over the old one, so a client that boots later gets the
new image and a running one keeps the file it booted. Nothing in DIR is rewritten or removed;
a current that is not a symlink is refused. Prints the new name and what current was.
";

/// The two image formats, by what the kernel mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Squashfs,
    Erofs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compress {
    Zstd,
    Xz,
    Lz4,
}

/// What the lab's kernels read: Debian 12's 6.1 has EROFS with lz4 only (no
/// CONFIG_EROFS_FS_ZIP_LZMA; zstd came in 6.10), Debian 13's 6.12 all three; both read every
/// squashfs compression.
const OLD_KERNEL: &str =
    "Debian 12's kernel (6.1) cannot read it: its EROFS reads lz4 only (Debian 13's 6.12 reads it)";

impl Format {
    fn image_format(self) -> ImageFormat {
        match self {
            Format::Squashfs => ImageFormat::Squashfs,
            Format::Erofs => ImageFormat::Erofs,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
        }
    }

    /// The program, its Debian package, and how it prints its help.
    fn tool(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Format::Squashfs => ("mksquashfs", "squashfs-tools", "-help"),
            Format::Erofs => ("mkfs.erofs", "erofs-utils", "--help"),
        }
    }

    /// The line of the tool's help after which it lists the compressors it was built with.
    fn compressors_heading(self) -> &'static str {
        match self {
            Format::Squashfs => "Compressors available:",
            Format::Erofs => "Available compressors are:",
        }
    }

    fn default_compress(self) -> Compress {
        match self {
            Format::Squashfs => Compress::Zstd,
            Format::Erofs => Compress::Lz4,
        }
    }

    /// The tool's name of `compress`: lz4 as lz4hc (same format, read as fast, smaller).
    fn compressor(self, compress: Compress) -> &'static str {
        match (self, compress) {
            (_, Compress::Zstd) => "zstd",
            (Format::Squashfs, Compress::Xz) => "xz",
            (Format::Erofs, Compress::Xz) => "lzma",
            (Format::Squashfs, Compress::Lz4) => "lz4",
            (Format::Erofs, Compress::Lz4) => "lz4hc",
        }
    }

    /// The tool's arguments for an image of `tree` at `dest`. Left out: the contents of the
    /// kernel's and the boot's own mounts and the layer root. EROFS's UUID is fixed, squashfs
    /// reproducible (its default); both take their date from SOURCE_DATE_EPOCH.
    fn arguments(self, tree: &Path, dest: &str, compress: Compress, sort: Option<&str>) -> Vec<OsString> {
        let comp = self.compressor(compress);
        let words: Vec<String> = match self {
            Format::Squashfs => {
                let mut words: Vec<String> =
                    ["-noappend", "-reproducible", "-quiet", "-no-progress", "-comp", comp].map(String::from).into();
                if compress == Compress::Lz4 {
                    words.push("-Xhc".into());
                }
                if let Some(sort) = sort {
                    words.extend(["-sort".into(), sort.into()]);
                }
                words.extend(["-wildcards".into(), "-e".into()]);
                // A glob's `*` skips dot files (FNM_PERIOD): `.*` takes those.
                words.extend(EMPTIED.iter().flat_map(|dir| [format!("{dir}/*"), format!("{dir}/.*")]));
                words.push(LAYER_ROOT.into());
                words
            }
            Format::Erofs => vec![
                "--quiet".into(),
                format!("-z{comp}"),
                // 64 KiB physical clusters: 12% smaller than the default 4 KiB with lz4hc on
                // the lab's trixie image, still below squashfs's 128 KiB blocks.
                "-C65536".into(),
                "-U00000000-0000-0000-0000-000000000000".into(),
                format!("--exclude-regex=^({LAYER_ROOT}|({})/.+)$", EMPTIED.join("|")),
            ],
        };
        let words = words.into_iter().map(OsString::from);
        let (tree, dest) = (tree.as_os_str().to_owned(), OsString::from(dest));
        match self {
            Format::Squashfs => [tree, dest].into_iter().chain(words).collect(),
            Format::Erofs => words.chain([dest, tree]).collect(),
        }
    }
}

/// The dirs whose contents an image leaves out (the boot mounts over them).
const EMPTIED: [&str; 5] = ["dev", "proc", "run", "sys", "tmp"];

/// The layer root an image leaves out: layers stay files beside it.
const LAYER_ROOT: &str = "diskless";

#[derive(Debug)]
struct Build {
    tree: PathBuf,
    output: PathBuf,
    format: Format,
    compress: Compress,
    force: bool,
    /// `--verity`: a dm-verity hash tree appended, its root hash in IMAGE.roothash.
    verity: bool,
    /// `--order LIST`: the files a boot reads, in the order it reads them, put first.
    order: Option<PathBuf>,
    /// `--sign KEY`: the verity params written and signed with KEY.
    sign: Option<PathBuf>,
}

fn parse_build(mut args: impl Iterator<Item = OsString>) -> Result<Build, String> {
    let (mut tree, mut output, mut format, mut compress, mut force) = (None, None, Format::Squashfs, None, false);
    let (mut order, mut verity, mut sign) = (None, false, None);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.to_str().unwrap_or_default() {
            "-o" | "--output" => output = Some(PathBuf::from(value("-o")?)),
            "--format" => {
                format = match value("--format")?.to_str() {
                    Some("squashfs") => Format::Squashfs,
                    Some("erofs") => Format::Erofs,
                    _ => return Err("--format: squashfs or erofs".into()),
                }
            }
            "--compress" => {
                compress = Some(match value("--compress")?.to_str() {
                    Some("zstd") => Compress::Zstd,
                    Some("xz") => Compress::Xz,
                    Some("lz4") => Compress::Lz4,
                    _ => return Err("--compress: zstd, xz or lz4".into()),
                })
            }
            "--force" => force = true,
            "--verity" => verity = true,
            "--order" => order = Some(PathBuf::from(value("--order")?)),
            "--sign" => sign = Some(PathBuf::from(value("--sign")?)),
            flag if flag.starts_with('-') => return Err(format!("unknown argument {}", quote(&arg))),
            _ if tree.is_none() => tree = Some(PathBuf::from(arg)),
            _ => return Err(format!("one tree only: {} too", quote(&arg))),
        }
    }
    let tree = tree.ok_or("build needs the root tree DIR")?;
    let output = output.ok_or("build needs -o IMAGE")?;
    let compress = compress.unwrap_or(format.default_compress());
    if order.is_some() && format != Format::Squashfs {
        return Err("--order: squashfs only (mkfs.erofs lays the files out in its own order)".into());
    }
    if sign.is_some() && !verity {
        return Err("--sign needs --verity: what it signs is the verity tree's root hash".into());
    }
    Ok(Build { tree, output, format, compress, force, verity, order, sign })
}

/// `stateless image build|publish ...`.
pub fn command(args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let args: Vec<OsString> = args.collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        crate::tools::emit(USAGE)?;
        return Ok(0);
    }
    let option = |a: &OsString| a.as_bytes().starts_with(b"-");
    match args.split_first() {
        Some((sub, rest)) if sub == "build" => build(&parse_build(rest.iter().cloned())?),
        Some((sub, rest)) if sub == "sign" => sign_image(rest),
        Some((sub, [image, dir])) if sub == "publish" && !option(image) && !option(dir) => {
            publish(Path::new(image), Path::new(dir))
        }
        Some((sub, _)) if sub == "publish" => Err("publish needs IMAGE and DIR, no options".into()),
        Some((sub, _)) => Err(format!("image {}: build, sign or publish", quote(sub))),
        None => Err(format!("image: build, sign or publish?\n{USAGE}")),
    }
}

/// The compressors `program`'s help lists: the words after `heading`, on its line and on the
/// indented lines that follow it.
fn offered(help: &str, heading: &str) -> Vec<String> {
    let Some((_, after)) = help.split_once(heading) else { return Vec::new() };
    let mut lines = after.lines();
    let mut text = lines.next().unwrap_or_default().to_owned();
    text.extend(lines.take_while(|l| l.starts_with([' ', '\t']) && !l.trim().is_empty()).map(|l| format!(" {l}")));
    text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

/// That the format's tool is installed and makes `compress`, from its help.
fn check_tool(format: Format, compress: Compress) -> Result<(), String> {
    let (program, package, help) = format.tool();
    let out = Command::new(program).arg(help).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{program} not found: install {package} (apt-get install {package})"),
        _ => format!("{program}: {e}"),
    })?;
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let offered = offered(&text, format.compressors_heading());
    let wanted = format.compressor(compress);
    if offered.iter().any(|c| c == wanted) {
        return Ok(());
    }
    let listed = if offered.is_empty() { "none that it names".to_owned() } else { offered.join(", ") };
    Err(format!("{program} here cannot make {} {wanted} (it makes {listed}): choose another --compress", format.name()))
}

const CHECKSUM: &str = ".sha256";

/// The root hash of an image's verity tree, systemd's name for it beside an image.
const ROOTHASH: &str = ".roothash";

/// That an image's name leaves room for its file `suffix` beside it (NAME_MAX, 255 bytes),
/// the longest it gets, checked before anything is written: else the image would be written
/// and that file not.
fn room_beside(name: &str, suffix: &str) -> Result<(), String> {
    const NAME_MAX: usize = 255;
    match name.len() + suffix.len() {
        len if len <= NAME_MAX => Ok(()),
        len => Err(format!("{}: too long: its {suffix} beside it would take {len} bytes, 255 at most", quote(name))),
    }
}

/// The verity params a signature vouches for ([`VerityParams`]), and that signature.
const PARAMS: &str = ".verity-params";
const SIGNATURE: &str = ".verity-params.sig";

/// The sidecar suffix longest of those an image gets: with a verity tree, it may be signed.
fn longest_sidecar(verity: bool) -> &'static str {
    if verity {
        SIGNATURE
    } else {
        CHECKSUM
    }
}

/// An admin's secret key file `path`, read and parsed before anything is written.
pub(super) fn secret_key(path: &Path) -> Result<sign::SecretKey, String> {
    sign::secret_key(&super::read_key_file(path)?).map_err(|e| format!("{}: {e}", escape_path(path)))
}

/// What the output says of a signature by `key`: the files and the key's fingerprint.
fn signed_by(key: &sign::SecretKey, params: &Path, signature: &Path) -> String {
    let public = key.public();
    format!(
        "  signed: {} ({}), key {} (id {})\n",
        escape_path(signature),
        escape_path(params),
        public.fingerprint(),
        hex(&public.id)
    )
}

/// The params of `params` and their signature file by `key`, as written beside an image.
fn signed(params: &VerityParams, key: &sign::SecretKey) -> [Vec<u8>; 2] {
    let text = params.text().into_bytes();
    let signature = sign::sign(key, &text);
    [text, signature]
}

/// The verity superblock's block of `file`, at `at` (where its data ends), as it is and as it
/// is with the signed statement `[text, sig]` ([`signed`]) after the superblock
/// ([`verity::embed`]).
fn with_statement(file: &std::fs::File, at: u64, [text, sig]: &[Vec<u8>; 2]) -> std::io::Result<[Vec<u8>; 2]> {
    let mut block = vec![0; verity::BLOCK as usize];
    file.read_exact_at(&mut block, at)?;
    let was = block.clone();
    verity::embed(&mut block, text, sig).map_err(std::io::Error::other)?;
    Ok([was, block])
}

/// What `--verity` appended to an image.
struct Appended {
    /// The data's bytes, padded to a block: where the superblock starts (`--hash-offset`).
    data: u64,
    /// The superblock's and the hash levels' bytes.
    tree: u64,
    /// What a signature vouches for: the root hash among them.
    params: VerityParams,
}

/// Pads the image `file` (its SHA-256 as its tool wrote it `data_hex`) to a whole block and
/// appends its dm-verity superblock and hash tree ([`verity`]).
fn append_verity(file: &std::fs::File, data_hex: &str, format: ImageFormat) -> std::io::Result<Appended> {
    let salt = verity::salt(data_hex);
    let data = file.metadata()?.len().next_multiple_of(verity::BLOCK);
    file.set_len(data)?;
    let mut leaves = Leaves { salt, block: Vec::new(), leaves: Vec::new() };
    copy_hashed(file, &mut leaves, |_| ())?;
    let blocks = leaves.leaves.len() as u64;
    let (levels, root) = verity::tree(&salt, leaves.leaves);
    let superblock = verity::superblock(blocks, &salt, &verity::uuid(&salt));
    file.write_all_at(&[superblock, levels].concat(), data)?;
    let tree = file.metadata()?.len() - data;
    Ok(Appended { data, tree, params: VerityParams { format, data_blocks: blocks, salt, root_hash: root } })
}

/// The params of the verity tree `file` (an image of `format`) carries after its data, when it
/// carries one whole: its superblock where the file's length puts it
/// ([`verity::data_blocks_of`]), naming as many data blocks, and its hash levels those of its
/// data. `None`: no such tree.
fn verity_of(file: &std::fs::File, format: ImageFormat) -> std::io::Result<Option<VerityParams>> {
    let Some(blocks) = verity::data_blocks_of(file.metadata()?.len()) else { return Ok(None) };
    let data = blocks * verity::BLOCK;
    let mut block = vec![0; verity::BLOCK as usize];
    file.read_exact_at(&mut block, data)?;
    let Some((_, salt)) = verity::read_superblock(&block).filter(|(named, _)| *named == blocks) else {
        return Ok(None);
    };
    let mut leaves = Leaves { salt, block: Vec::new(), leaves: Vec::new() };
    let mut buf = vec![0; 1 << 20];
    let mut at = 0;
    while at < data {
        let want = buf.len().min(usize::try_from(data - at).unwrap_or(buf.len()));
        let chunk = buf.get_mut(..want).unwrap_or_default();
        file.read_exact_at(chunk, at)?;
        leaves.write_all(chunk)?;
        at += want as u64;
    }
    let (levels, root) = verity::tree(&salt, leaves.leaves);
    let mut stored = vec![0; levels.len()];
    file.read_exact_at(&mut stored, data + verity::BLOCK)?;
    Ok((stored == levels).then_some(VerityParams { format, data_blocks: blocks, salt, root_hash: root }))
}

/// A writer that takes an image's data and keeps the leaf digest of each block.
struct Leaves {
    salt: verity::Digest32,
    block: Vec<u8>,
    leaves: Vec<verity::Digest32>,
}

impl Write for Leaves {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for chunk in bytes.chunks(verity::BLOCK as usize) {
            let room = verity::BLOCK as usize - self.block.len();
            let (now, later) = chunk.split_at(room.min(chunk.len()));
            self.block.extend_from_slice(now);
            if self.block.len() == verity::BLOCK as usize {
                self.leaves.push(verity::hash(&self.salt, &self.block));
                self.block.clear();
            }
            self.block.extend_from_slice(later);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An image's name as text, for a line of sha256sum's (`<hex>  <name>`) and for messages, both
/// naming it as it is: a name either would escape (a backslash, a control, bidi or zero-width
/// character, bytes that are not UTF-8) is refused, and `-`, which `sha256sum -c` reads as its
/// standard input.
fn image_name(name: &OsStr) -> Result<&str, String> {
    match name.to_str() {
        Some(text) if text != "-" && escape(text.as_bytes()) == text => Ok(text),
        _ => Err(format!(
            "{}: an image's name may hold no backslash or control character (nor bidi or zero-width), and is not \"-\"",
            quote(name)
        )),
    }
}

/// The line of sha256sum's for the image `name`.
fn checksum_line(hex: &str, name: &str) -> String {
    format!("{hex}  {name}\n")
}

/// The SHA-256 of `file`, from its start, as hex.
fn sha256_of(file: &std::fs::File) -> std::io::Result<String> {
    copy_hashed(file, &mut std::io::sink(), |_| ()).map(|(_, hex)| hex)
}

/// A path to `file` another process can open: its fd in this process's /proc.
fn fd_path(file: &std::fs::File) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd())
}

/// That `path` names no entry (not even a dangling symlink), or with `force` a regular file:
/// what --force replaces is an earlier build's file, never a dir, symlink, device or fifo.
/// `why` says why an existing file is kept without it.
pub(super) fn absent(path: &Path, force: bool, why: &str) -> Result<(), String> {
    kept(path, std::fs::symlink_metadata(path).ok().map(|meta| meta.is_file()), force, why)
}

/// [`absent`] for the file `path` names in the dir `dir` already open (its last component;
/// all of it is what messages show): never by its path, whose dirs may be swapped meanwhile.
pub(super) fn absent_in(dir: BorrowedFd<'_>, path: &Path, force: bool, why: &str) -> Result<(), String> {
    let name = path.file_name().ok_or_else(|| format!("{}: not a file name", escape_path(path)))?;
    let found = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok();
    let regular = found.map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile);
    kept(path, regular, force, why)
}

/// Why the entry at `path` (`found`: none, or whether it is a regular file) is kept.
fn kept(path: &Path, found: Option<bool>, force: bool, why: &str) -> Result<(), String> {
    match found {
        Some(false) => Err(format!(
            "{}: exists and is not a regular file: refused, even with --force (it replaces a file an earlier build wrote)",
            escape_path(path)
        )),
        Some(true) if !force => Err(format!("{}: exists: refused ({why}, or --force to replace it)", escape_path(path))),
        _ => Ok(()),
    }
}

/// Why an image's file is not replaced without --force.
const SERVED: &str = "a file a client may have booted is never rewritten: publish images to serve them";

/// `--order LIST` made into mksquashfs's sort file: its files, first to last, with priorities
/// from the highest down (a file not listed has 0, after them all).
struct Ordered {
    sort: String,
    files: usize,
    listed: usize,
}

/// mksquashfs's priorities are 16-bit, and one not listed is 0: this many go before the rest.
const ORDER_MAX: usize = 32_767;

/// The largest LIST read (a boot reads a few thousand files: this is some 100,000 paths).
const ORDER_BYTES: u64 = 8 << 20;

impl Ordered {
    fn said(&self, list: &Path) -> String {
        let mut said = format!("{} files first, as {} lists them", self.files, escape_path(list));
        let others = self.listed - self.files;
        if others > 0 {
            said += &format!(
                " ({others} of its {} lines named no file of the tree the image holds, or one again: left where \
                 mksquashfs puts them)",
                self.listed
            );
        }
        said
    }
}

/// The sort file for `list` (a path a line, as the tree is its root: `/usr/lib/systemd/systemd`;
/// empty lines and `#` comments skipped), each path resolved in `tree` as a client would
/// (`/lib` -> `usr/lib` in a merged /usr; nothing leads out of it) to the regular file it names,
/// once, in the list's order. Not a file of the image (missing, a dir, under /diskless or a dir
/// whose contents it leaves out, or a name with a control character) is left to mksquashfs.
fn order_list(tree: &Path, list: &Path) -> Result<Ordered, String> {
    use std::io::Read;
    let shown = |e: std::io::Error| format!("--order {}: {e}", escape_path(list));
    let mut text = Vec::new();
    std::fs::File::open(list).and_then(|f| f.take(ORDER_BYTES + 1).read_to_end(&mut text)).map_err(shown)?;
    if text.len() as u64 > ORDER_BYTES {
        return Err(format!("--order {}: larger than {} MiB", escape_path(list), ORDER_BYTES >> 20));
    }
    let root = rustix::fs::open(tree, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("{}: {e}", escape_path(tree)))?;
    let (mut seen, mut sort, mut listed) = (std::collections::HashSet::new(), String::new(), 0);
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"#")) {
        listed += 1;
        let Some(path) = in_image(root.as_fd(), tree, OsStr::from_bytes(line)) else { continue };
        if !seen.insert(path.clone()) {
            continue;
        }
        if seen.len() > ORDER_MAX {
            return Err(format!(
                "--order {}: more than {ORDER_MAX} files (mksquashfs's priorities)",
                escape_path(list)
            ));
        }
        // mksquashfs reads a name up to white space, a backslash taking the next byte as it is,
        // and a line starting with `#` as a comment (a name with a tab or another control
        // character is not listed: `in_image`).
        let escaped =
            |(i, c): (usize, char)| [(c == ' ' || c == '\\' || (i == 0 && c == '#')).then_some('\\'), Some(c)];
        let name: String = path.chars().enumerate().flat_map(escaped).flatten().collect();
        sort += &format!("{name} {}\n", ORDER_MAX - seen.len() + 1);
    }
    Ok(Ordered { sort, files: seen.len(), listed })
}

/// The regular file `path` names in the image of `tree` (open as `root`), as a path relative to
/// it, when the image holds it and mksquashfs's sort file can name it.
fn in_image(root: std::os::fd::BorrowedFd<'_>, tree: &Path, path: &OsStr) -> Option<String> {
    let relative = Path::new(path).strip_prefix("/").unwrap_or(Path::new(path));
    let fd = crate::fs::tree::open_in_root(root, relative, OFlags::PATH).ok()?;
    if !rustix::fs::fstat(&fd).is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file()) {
        return None;
    }
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let inside = target.strip_prefix(tree).ok()?.to_str()?.to_owned();
    let first = inside.split('/').next().unwrap_or_default();
    // mksquashfs reads a last component `*` as the whole dir it is in, escaped or not.
    let left_out = first == LAYER_ROOT || EMPTIED.contains(&first) || inside.rsplit('/').next() == Some("*");
    (!left_out && !inside.is_empty() && !inside.chars().any(char::is_control)).then_some(inside)
}

fn build(args: &Build) -> Result<i32, String> {
    let started = Instant::now();
    let tree = std::fs::canonicalize(&args.tree).map_err(|e| format!("{}: {e}", escape_path(&args.tree)))?;
    if !tree.is_dir() {
        return Err(format!("{}: not a directory", escape_path(&args.tree)));
    }
    let name = args.output.file_name().ok_or_else(|| format!("{}: not a file name", escape_path(&args.output)))?;
    let name = image_name(name)?;
    room_beside(name, longest_sidecar(args.verity))?;
    let parent = super::parent_of(&args.output);
    let parent = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", escape_path(parent)))?;
    if parent.starts_with(&tree) {
        return Err(format!(
            "{}: inside the tree {}, which the image is made of: write it elsewhere",
            escape_path(&args.output),
            escape_path(&tree)
        ));
    }
    let (checksum, roothash) = (beside(&args.output, CHECKSUM), beside(&args.output, ROOTHASH));
    let (params, signature) = (beside(&args.output, PARAMS), beside(&args.output, SIGNATURE));
    for path in [&args.output, &checksum, &roothash, &params, &signature] {
        absent(path, args.force, SERVED)?;
    }
    let key = args.sign.as_deref().map(secret_key).transpose()?;
    check_tool(args.format, args.compress)?;
    let ordered = match &args.order {
        Some(list) => Some(order_list(&tree, list)?),
        None => None,
    };
    let sort_file = match &ordered {
        Some(ordered) => {
            let memory = rustix::fs::memfd_create("stateless-order", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(|e| format!("--order: {e}"))?;
            let mut file = std::fs::File::from(memory);
            file.write_all(ordered.sort.as_bytes()).map_err(|e| format!("--order: {e}"))?;
            Some(file)
        }
        None => None,
    };
    let sort_path = sort_file.as_ref().map(fd_path);
    let epoch = match std::env::var_os("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()) {
        Some(given) => super::initramfs::source_date_epoch(Some(given))?,
        None => newest_time(&tree)?,
    };

    let (program, _, _) = args.format.tool();
    let (mut said, mut hex, mut appended, mut statement) = (String::new(), String::new(), None, None);
    let size = super::write_file(&args.output, args.force, |file| {
        let out = Command::new(program)
            .args(args.format.arguments(&tree, &fd_path(file), args.compress, sort_path.as_deref()))
            // Both tools date the image so, and any file newer than it (so mkfs.erofs keeps
            // file times; its -T would date every file).
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let lines = tool_lines(&said);
            let lines =
                if lines.is_empty() { " and said nothing".to_owned() } else { format!(":\n{}", lines.trim_end()) };
            return Err(format!("{program} failed ({}){lines}", out.status));
        }
        let back = |e: std::io::Error| format!("reading it back: {e}");
        // Open again to read it (and with --verity append to it): `file` is open for writing only.
        let written = std::fs::OpenOptions::new()
            .read(true)
            .write(args.verity)
            .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map_err(back)?;
        // A tool that says it succeeded yet wrote no image (a wrapper, a full disk it missed).
        if format_of(&written) != Some(args.format) {
            return Err(format!("{program} exited 0 but wrote no {} image: nothing written", args.format.name()));
        }
        hex = sha256_of(&written).map_err(back)?;
        if args.verity {
            let tree = append_verity(&written, &hex, args.format.image_format())
                .map_err(|e| format!("appending its verity tree: {e}"))?;
            // The statement inside the file too (what an NBD root has), before its sha256.
            if let Some(key) = &key {
                let both = signed(&tree.params, key);
                with_statement(&written, tree.data, &both)
                    .and_then(|[_, block]| written.write_all_at(&block, tree.data))
                    .map_err(|e| format!("signing inside it: {e}"))?;
                statement = Some(both);
            }
            appended = Some(tree);
            hex = sha256_of(&written).map_err(back)?;
        }
        // --force: the files beside the image it replaces go first, while it is still there
        // (a .roothash or signature too when this one has none): one that cannot go keeps the
        // old image with them; after the rename only the new image's files, or none, are
        // beside it.
        if args.force {
            for stale in [&signature, &params, &roothash, &checksum] {
                match std::fs::remove_file(stale) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(format!("{}: {e}: the image it goes with is kept", escape_path(stale)))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    })?;
    let mut sidecars = vec![(&checksum, checksum_line(&hex, name).into_bytes())];
    if let Some(tree) = &appended {
        sidecars.push((&roothash, crate::model::text::hex(&tree.params.root_hash).into_bytes()));
        if let Some(both) = statement {
            sidecars.extend([&params, &signature].into_iter().zip(both));
        }
    }
    for (n, (path, text)) in sidecars.iter().enumerate() {
        let written = super::write_file(path, args.force, |mut file| file.write_all(text).map_err(|e| e.to_string()));
        let Err(e) = written else { continue };
        // An image and a file beside it that disagree must not stay: without --force the new
        // image goes, and what was written beside it (nothing written); with it the old image
        // is gone already, and so go its files not yet replaced (a client copying the image
        // into RAM would refuse the new one).
        let stale: Vec<&Path> = match sidecars.split_at_checked(n) {
            Some((_, old)) if args.force => old.iter().map(|(p, _)| p.as_path()).collect(),
            Some((new, _)) => [args.output.as_path()].into_iter().chain(new.iter().map(|(p, _)| p.as_path())).collect(),
            None => Vec::new(),
        };
        let removed: Vec<String> =
            stale.into_iter().filter(|p| std::fs::remove_file(p).is_ok()).map(escape_path).collect();
        return Err(if removed.is_empty() { e } else { format!("{e}: {} removed", removed.join(", ")) });
    }

    let mut text = format!(
        "{} image of {}: {}\n  compression: {} ({program})\n  size: {size} bytes\n  sha256: {hex} ({})\n",
        args.format.name(),
        escape_path(&tree),
        escape_path(&args.output),
        args.format.compressor(args.compress),
        escape_path(&checksum),
    );
    if let Some(tree) = &appended {
        text += &format!(
            "  verity root hash: {} ({})\n  verity data: {} bytes, then its hash tree: {} bytes (superblock and {} \
             hash blocks)\n",
            crate::model::text::hex(&tree.params.root_hash),
            escape_path(&roothash),
            tree.data,
            tree.tree,
            tree.tree / verity::BLOCK - 1,
        );
        if let Some(key) = &key {
            text += &signed_by(key, &params, &signature);
        }
    }
    text += &format!("  left out: the contents of /{}; /{LAYER_ROOT}\n", EMPTIED.join(", /"));
    if let (Some(ordered), Some(list)) = (&ordered, &args.order) {
        text += &format!("  order: {}\n", ordered.said(list));
    }
    text += &format!("  time: {:.1} s\n", started.elapsed().as_secs_f64());
    if args.format == Format::Erofs && args.compress != Compress::Lz4 {
        text += &format!("  warning: {OLD_KERNEL}\n");
    }
    if !said.trim().is_empty() {
        text += &format!("  {program} said:\n{}", tool_lines(&said));
    }
    crate::tools::emit(&text)?;
    Ok(0)
}

/// The image's date when SOURCE_DATE_EPOCH is not given: the newest time of what goes into it,
/// so that no file's time is clamped and the same tree gives the same date.
fn newest_time(tree: &Path) -> Result<u32, String> {
    let shown = |path: &Path, e: std::io::Error| format!("{}: {e}", escape_path(path));
    let mut newest = std::fs::symlink_metadata(tree).map_err(|e| shown(tree, e))?.mtime();
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| shown(&dir, e))? {
            let path = entry.map_err(|e| shown(&dir, e))?.path();
            let rel = path.strip_prefix(tree).unwrap_or(&path);
            if rel == Path::new(LAYER_ROOT) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(|e| shown(&path, e))?;
            newest = newest.max(meta.mtime());
            if meta.is_dir() && !EMPTIED.iter().any(|d| rel == Path::new(d)) {
                dirs.push(path);
            }
        }
    }
    Ok(u32::try_from(newest.max(0)).unwrap_or(u32::MAX))
}

/// What a tool printed, escaped, each line once (mksquashfs repeats a warning per file), the
/// first 20.
fn tool_lines(output: &str) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    let mut text: String = seen.iter().take(20).map(|l| format!("    {}\n", escape(l.as_bytes()))).collect();
    if seen.len() > 20 {
        text += &format!("    ({} more lines)\n", seen.len() - 20);
    }
    text
}

/// The format of an image, by its magic ([`ImageFormat::of`], as the boot tells it).
fn format_of(file: &std::fs::File) -> Option<Format> {
    let mut head = vec![0; ImageFormat::HEAD];
    let read = file.read_at(&mut head, 0).ok()?;
    head.truncate(read);
    Some(match ImageFormat::of(&head)? {
        ImageFormat::Squashfs => Format::Squashfs,
        ImageFormat::Erofs => Format::Erofs,
    })
}

/// The symlink clients boot through, in the publish dir.
const CURRENT: &str = "current";

/// The name an image is published under: `stem-TIME-SHA.ext` (`ext` the image's, else the
/// format's), TIME as `20261206T101500Z`; `None` when the clock is before 2001.
fn published_name(given: &str, format: Format, hex: &str, secs: i64) -> Option<String> {
    let (stem, ext) = match given.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => (stem, ext),
        _ => (given, format.name()),
    };
    let time = crate::log::remote::timestamp(secs, 0);
    let time: String = time.get(..19)?.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    Some(format!("{stem}-{time}Z-{}.{ext}", hex.get(..12)?))
}

/// The image file `image`, opened for reading once known to be a regular file (the open of a
/// fifo blocks, that of a device may act), and its format.
fn open_image(image: &Path) -> Result<(std::fs::File, Format), String> {
    let shown = escape_path(image);
    let file = rustix::fs::open(image, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .and_then(|node| crate::fs::tree::open_regular(&node))
        .map_err(|e| match e {
            Errno::INVAL => format!("{shown}: not a regular file: left unopened"),
            e => format!("{shown}: {e}"),
        })?;
    let file = std::fs::File::from(file);
    let format = format_of(&file).ok_or_else(|| format!("{shown}: not a squashfs or EROFS image (no magic)"))?;
    Ok((file, format))
}

/// Writes a signed statement and then its signature (`replace`: over earlier ones, else
/// both new). A signature that cannot be written takes a new statement with it: none stays
/// unsigned. One that was there is put back as it was, beside the signature that was there:
/// none stays beside another statement's signature (a layer changed since, signed again).
pub(super) fn write_signed(files: [(&Path, &[u8]); 2], replace: bool) -> Result<(), String> {
    let parent = super::parent_of(files[0].0);
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let dir = rustix::fs::open(parent, flags, Mode::empty()).map_err(|e| format!("{}: {e}", escape_path(parent)))?;
    write_signed_in(dir.as_fd(), files, replace)
}

/// [`write_signed`] into the dir `dir` already open, both paths naming their files there
/// (their last components; all of them is what messages show).
pub(super) fn write_signed_in(
    dir: BorrowedFd<'_>,
    [(statement, text), (signature, sig)]: [(&Path, &[u8]); 2],
    replace: bool,
) -> Result<(), String> {
    let name = statement.file_name().ok_or_else(|| format!("{}: not a file name", escape_path(statement)))?;
    let had = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
    // A statement replaced is kept (a second link) until its new signature is written too, to
    // be put back if that fails: never a new statement beside the old one's signature.
    let link = |temp: &OsStr| rustix::fs::linkat(dir, name, dir, temp, AtFlags::empty());
    let kept = (replace && had).then(|| crate::fs::root::create_beside(link).ok()).flatten().map(|((), temp)| temp);
    let drop_kept = || {
        if let Some(temp) = &kept {
            let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
        }
    };
    let write = |path, bytes: &[u8]| {
        super::write_file_in(dir, path, replace, |mut out| out.write_all(bytes).map_err(|e| e.to_string()))
    };
    if let Err(e) = write(statement, text) {
        drop_kept();
        return Err(e);
    }
    if let Err(e) = write(signature, sig) {
        let shown = escape_path(statement);
        if let Some(temp) = &kept {
            let back = rustix::fs::renameat(dir, temp.as_str(), dir, name);
            drop_kept();
            return Err(if back.is_ok() { format!("{e}: {shown} put back as it was") } else { e });
        }
        let removed = !had && rustix::fs::unlinkat(dir, name, AtFlags::empty()).is_ok();
        return Err(if removed { format!("{e}: {shown} removed") } else { e });
    }
    drop_kept();
    Ok(())
}

/// A signed statement's params and its signature's key id, read as `publish` reads them (the
/// signature not checked: publish needs no keys): `text` from `params`, `sig` from `signature`,
/// the paths for messages.
fn statement_of(text: &[u8], sig: &[u8], params: &Path, signature: &Path) -> Result<(VerityParams, [u8; 8]), String> {
    let parsed = VerityParams::parse(text).map_err(|e| format!("{}: {e}: nothing published", escape_path(params)))?;
    let (id, _) = sign::signature_of(sig).map_err(|e| format!("{}: {e}: nothing published", escape_path(signature)))?;
    Ok((parsed, id))
}

/// `image sign IMAGE --key KEY [--force]`.
fn sign_image(args: &[OsString]) -> Result<i32, String> {
    let (mut image, mut key, mut force) = (None, None, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.to_str().unwrap_or_default() {
            "--key" => key = Some(PathBuf::from(args.next().ok_or("--key needs a value")?)),
            "--force" => force = true,
            flag if flag.starts_with('-') => return Err(format!("unknown argument {}", quote(arg))),
            _ if image.is_none() => image = Some(PathBuf::from(arg)),
            _ => return Err(format!("one image only: {} too", quote(arg))),
        }
    }
    let image = image.ok_or("sign needs IMAGE")?;
    let key = key.ok_or("sign needs --key KEY")?;
    let shown = escape_path(&image);
    // IMAGE is replaced by a rename: a symlink would become a file, a device or fifo is no image.
    if !std::fs::symlink_metadata(&image).is_ok_and(|meta| meta.is_file()) {
        return Err(format!("{shown}: not a regular file (a symlink, a dir, a device, or none): nothing signed"));
    }
    let (file, format) = open_image(&image)?;
    let name = image.file_name().ok_or_else(|| format!("{shown}: not a file name"))?;
    let name = image_name(name)?;
    room_beside(name, SIGNATURE)?;
    let (params, signature, checksum) = (beside(&image, PARAMS), beside(&image, SIGNATURE), beside(&image, CHECKSUM));
    absent(&params, force, SERVED)?;
    absent(&signature, force, SERVED)?;
    // Rewritten to match the image signed inside: a regular file, or none.
    absent(&checksum, true, SERVED)?;
    let key = secret_key(&key)?;
    let tree = verity_of(&file, format.image_format())
        .map_err(|e| format!("{shown}: {e}"))?
        .ok_or_else(|| format!("{shown}: carries no verity tree: build it with --verity"))?;
    let both = signed(&tree, &key);
    let [was, block] = with_statement(&file, tree.hash_offset(), &both).map_err(|e| format!("{shown}: {e}"))?;
    let [text, sig] = &both;
    // Another signature inside it is replaced only with --force, as one beside it.
    if !force && verity::embedded(&was).is_some_and(|(t, s)| (&t, &s) != (text, sig)) {
        return Err(format!("{shown}: signed inside it already, by another key: refused (--force to replace it)"));
    }
    write_signed([(&params, text), (&signature, sig)], force)?;
    // The statement inside: a copy of the image with the new block, written beside it and
    // renamed over it (a new inode: a server holding the old file serves the old), then its
    // .sha256. Signed again by the same key, the block is the same and the file left alone.
    let inside = if was == block {
        "already inside it, left as it was".to_owned()
    } else {
        let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
        super::write_file(&image, true, |out| {
            copy_hashed(&file, &mut &*out, |_| ()).map_err(|e| format!("copying {shown}: {e}"))?;
            out.write_all_at(&block, tree.hash_offset()).map_err(|e| e.to_string())
        })?;
        let (new, _) = open_image(&image)?;
        // The image's own mode again, and its owner when this user may give it (root).
        let mode = rustix::fs::Mode::from_raw_mode(meta.mode() & 0o777);
        rustix::fs::fchmod(&new, mode).map_err(|e| format!("{shown}: mode: {e}"))?;
        let owner = (rustix::fs::Uid::from_raw(meta.uid()), rustix::fs::Gid::from_raw(meta.gid()));
        let _ = rustix::fs::fchown(&new, Some(owner.0), Some(owner.1));
        let hex = sha256_of(&new).map_err(|e| format!("{shown}: {e}"))?;
        let line = checksum_line(&hex, name);
        super::write_file(&checksum, true, |mut out| out.write_all(line.as_bytes()).map_err(|e| e.to_string()))
            .map_err(|e| {
                // A .sha256 of the image before must not stay beside the one after.
                let gone = std::fs::remove_file(&checksum).is_ok();
                if gone {
                    format!("{e}: {} removed", escape_path(&checksum))
                } else {
                    e
                }
            })?;
        format!("written inside it (rewritten, a new file), {} {hex}", escape_path(&checksum))
    };
    crate::tools::emit(&format!(
        "signed {shown}\n  verity root hash: {}\n{}  statement: {inside}\n",
        hex(&tree.root_hash),
        signed_by(&key, &params, &signature)
    ))?;
    Ok(0)
}

fn publish(image: &Path, dir: &Path) -> Result<i32, String> {
    let shown = escape_path(image);
    let (file, format) = open_image(image)?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    let given_name = image.file_name().ok_or_else(|| format!("{shown}: not a file name"))?;
    let given_name = image_name(given_name)?;
    // Everything below in this dir, never again by its path (a symlink an admin moves
    // meanwhile would split the image from its current).
    let dir_fd = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("{}: {e}", escape_path(dir)))?;
    let current = dir.join(CURRENT);
    let before = match rustix::fs::readlinkat(&dir_fd, CURRENT, Vec::new()) {
        Ok(target) => Some(target.into_bytes()),
        Err(Errno::NOENT) => None,
        Err(Errno::INVAL) => {
            return Err(format!("{}: not a symlink: left alone, nothing published", escape_path(&current)))
        }
        Err(e) => return Err(format!("{}: {e}", escape_path(&current))),
    };
    if let Ok(served) = rustix::fs::statat(&dir_fd, CURRENT, AtFlags::empty()) {
        if (served.st_dev, served.st_ino) == (meta.dev(), meta.ino()) {
            return Err(format!("{shown}: is the image {} names already: nothing published", escape_path(&current)));
        }
    }
    // What IMAGE.sha256 says, read as the boot reads it, before the long read of the image.
    let given = beside(image, CHECKSUM);
    let expected = match crate::fs::root::read_named(&given, 4096) {
        Ok(None) => None,
        Ok(Some(line)) => Some(sha256_of_line(&line).ok_or_else(|| {
            format!("{}: no sha256sum line (64 hex digits, then the name): nothing published", escape_path(&given))
        })?),
        Err(e) => return Err(format!("{}: {e}", escape_path(&given))),
    };
    // IMAGE.roothash, when there: untrusted, so 64 hex digits or nothing published.
    let given_root = beside(image, ROOTHASH);
    let root =
        match crate::fs::root::read_named(&given_root, 4096) {
            Ok(None) => None,
            Ok(Some(text)) => Some(verity::root_hash_of(&text).ok_or_else(|| {
                format!("{}: no root hash (64 hex digits): nothing published", escape_path(&given_root))
            })?),
            Err(e) => return Err(format!("{}: {e}", escape_path(&given_root))),
        };
    // IMAGE.verity-params and its signature, when there: both or neither.
    let (given_params, given_sig) = (beside(image, PARAMS), beside(image, SIGNATURE));
    let read = |path: &Path, limit: usize| {
        crate::fs::root::read_named(path, limit as u64)
            .map_err(|e| format!("{}: {e}: nothing published", escape_path(path)))
    };
    let signed = match (read(&given_params, VerityParams::MAX)?, read(&given_sig, sign::SIGNATURE_MAX)?) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(format!(
                "{} and {} go together: one without the other: nothing published",
                escape_path(&given_params),
                escape_path(&given_sig)
            ))
        }
        (Some(text), Some(sig)) => {
            let (params, id) = statement_of(&text, &sig, &given_params, &given_sig)?;
            Some((params, text, sig, id))
        }
    };
    // The statement inside the image, when there: read as the boot reads it, held to the
    // image as the files beside are.
    let inside = match verity::data_blocks_of(meta.len()) {
        Some(blocks) => {
            let mut block = vec![0; verity::BLOCK as usize];
            file.read_exact_at(&mut block, blocks * verity::BLOCK).map_err(|e| format!("{shown}: {e}"))?;
            verity::embedded(&block).map(|(text, sig)| statement_of(&text, &sig, image, image)).transpose()?
        }
        None => None,
    };
    // The root hash and the params must be this image's: else a client checking blocks against
    // it would refuse every read (or a signature would vouch for another image).
    // Each claim: the file that makes it, what it says, and the params it names (none: the
    // root hash alone).
    let describes = |params: &VerityParams| {
        format!("the root hash {} and {} data blocks are not those", hex(&params.root_hash), params.data_blocks)
    };
    let claims: Vec<(&Path, String, Option<&VerityParams>)> =
        root.iter()
            .map(|root| (given_root.as_path(), format!("{root} is not the root hash"), None))
            .chain(signed.iter().map(|(params, ..)| (given_params.as_path(), describes(params), Some(params))))
            .chain(inside.iter().map(|(params, _)| {
                (image, format!("the statement signed inside it: {}", describes(params)), Some(params))
            }))
            .collect();
    if !claims.is_empty() {
        let have = verity_of(&file, format.image_format()).map_err(|e| format!("{shown}: {e}"))?;
        let matches = |params: Option<&VerityParams>| match (&have, params) {
            (Some(have), None) => root.as_deref() == Some(hex(&have.root_hash).as_str()),
            (Some(have), Some(params)) => params == have,
            (None, _) => false,
        };
        if let Some((path, claim, _)) = claims.iter().find(|(_, _, params)| !matches(*params)) {
            let what = have.map_or_else(
                || "carries no verity tree".to_owned(),
                |h| format!("has the root hash {}", hex(&h.root_hash)),
            );
            return Err(format!("{}: {claim} of {shown}, which {what}: nothing published", escape_path(path)));
        }
    }
    let hex = sha256_of(&file).map_err(|e| format!("{shown}: {e}"))?;
    if expected.is_some_and(|expected| expected != hex) {
        return Err(format!(
            "{shown}: its sha256 is {hex}, not what {} says: changed since built?",
            escape_path(&given)
        ));
    }
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime).tv_sec;
    let name = published_name(given_name, format, &hex, now)
        .ok_or("the clock is before 2001: set it, the published name holds the time")?;
    room_beside(&name, longest_sidecar(root.is_some() || signed.is_some()))?;
    let target = dir.join(&name);
    // Checked before the copy, and again when the copy could not take the name (another
    // publish of the same image in the same second).
    let taken = || rustix::fs::statat(&dir_fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let reused =
        || format!("{}: exists, and a published name is never reused: nothing published", escape_path(&target));
    if taken() {
        return Err(reused());
    }
    // The copy's bytes are hashed as they are written: a file that changed under it is no copy.
    super::write_file_in(dir_fd.as_fd(), &target, false, |mut out| {
        let (_, copied) = copy_hashed(&file, &mut out, |_| ()).map_err(|e| format!("{shown}: {e}"))?;
        if copied != hex {
            return Err(format!("{shown} changed while it was copied: nothing published"));
        }
        Ok(())
    })
    .map_err(|e| if taken() { reused() } else { e })?;
    // Until current moves, what fails takes back what this publish made (no client boots a
    // name current never held): nothing published, nothing half published left.
    let sums = format!("{name}{CHECKSUM}");
    let take_back = |made: &[&str], e: String| {
        for made in made {
            let _ = rustix::fs::unlinkat(&dir_fd, *made, AtFlags::empty());
        }
        format!("{e}: nothing published")
    };
    super::write_file_in(dir_fd.as_fd(), &dir.join(&sums), false, |mut out| {
        out.write_all(checksum_line(&hex, &name).as_bytes()).map_err(|e| e.to_string())
    })
    .map_err(|e| take_back(&[&name], e))?;
    let mut made = vec![sums.as_str(), name.as_str()];
    let (roots, params, sig) = (format!("{name}{ROOTHASH}"), format!("{name}{PARAMS}"), format!("{name}{SIGNATURE}"));
    let mut beside_it: Vec<(&str, &[u8])> = root.iter().map(|root| (roots.as_str(), root.as_bytes())).collect();
    if let Some((_, text, signature, _)) = &signed {
        beside_it.extend([(params.as_str(), text.as_slice()), (sig.as_str(), signature.as_slice())]);
    }
    for (file, bytes) in beside_it {
        super::write_file_in(dir_fd.as_fd(), &dir.join(file), false, |mut out| {
            out.write_all(bytes).map_err(|e| e.to_string())
        })
        .map_err(|e| take_back(&made, e))?;
        made.insert(0, file);
    }
    // The new symlink beside `current`, renamed over it: a client resolves the old or the new.
    let link = |temp: &OsStr| rustix::fs::symlinkat(name.as_str(), &dir_fd, temp);
    let ((), temp) =
        crate::fs::root::create_beside(link).map_err(|e| take_back(&made, format!("{}: {e}", escape_path(dir))))?;
    if let Err(e) = rustix::fs::renameat(&dir_fd, temp.as_str(), &dir_fd, CURRENT) {
        made.insert(0, &temp);
        return Err(take_back(&made, format!("{}: {e}", escape_path(&current))));
    }
    rustix::fs::fsync(&dir_fd).map_err(|e| format!("{}: {e}", escape_path(dir)))?;
    let was = before.map_or_else(|| "none".to_owned(), |b| quote(OsStr::from_bytes(&b)));
    let root = root.map_or_else(String::new, |root| format!("  verity root hash: {root} ({roots})\n"));
    let signed = signed.map_or_else(String::new, |(.., id)| {
        format!(
            "  signed: {sig} ({params}), by key id {} (not checked: a client checks it)\n",
            crate::model::text::hex(&id)
        )
    }) + &inside.map_or_else(String::new, |(_, id)| {
        format!("  signed inside it: by key id {} (not checked: a client checks it)\n", crate::model::text::hex(&id))
    });
    crate::tools::emit(&format!(
        "published {shown} as {}\n  sha256: {hex}\n{root}{signed}  {CURRENT} -> {name} (was {was})\n",
        escape_path(&target),
    ))?;
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_replaced_is_put_back_when_its_signature_cannot_be() {
        let tmp = crate::fs::Tmp::new("write-signed");
        let (statement, signature) = (tmp.0.join("x.manifest"), tmp.0.join("x.manifest.sig"));
        std::fs::write(&statement, "old\n").unwrap();
        std::fs::create_dir(&signature).unwrap(); // no file replaces a dir
        let dir = rustix::fs::open(&tmp.0, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let e = write_signed_in(dir.as_fd(), [(&statement, b"new\n"), (&signature, b"sig\n")], true).unwrap_err();
        assert!(e.ends_with("x.manifest put back as it was"), "{e}");
        assert_eq!(std::fs::read_to_string(&statement).unwrap(), "old\n");
        assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 2, "nothing left beside");
        // Written in full: the new statement and its signature, nothing beside.
        std::fs::remove_dir(&signature).unwrap();
        write_signed_in(dir.as_fd(), [(&statement, b"new\n"), (&signature, b"sig\n")], true).unwrap();
        assert_eq!(std::fs::read_to_string(&statement).unwrap(), "new\n");
        assert_eq!(std::fs::read_to_string(&signature).unwrap(), "sig\n");
        assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 2, "nothing left beside");
    }

    #[test]
    fn compressors_are_read_from_each_tools_help() {
        let squashfs = "-comp <comp>\t\tselect <comp> compression\n\t\t\tCompressors available:\n\t\t\t\tgzip \
                        (default)\n\t\t\t\tlz4\n\t\t\t\tzstd\n-b <block_size>\t\tset data block\n\txz\n";
        assert_eq!(offered(squashfs, Format::Squashfs.compressors_heading()), ["gzip", "default", "lz4", "zstd"]);
        let erofs = " --quiet               quiet execution\n\nAvailable compressors are: lz4hc, lz4\n";
        assert_eq!(offered(erofs, Format::Erofs.compressors_heading()), ["lz4hc", "lz4"]);
        assert!(offered("usage: nothing", Format::Erofs.compressors_heading()).is_empty());
    }

    #[test]
    fn arguments() {
        let parse = |a: &[&str]| parse_build(a.iter().map(OsString::from));
        let b = parse(&["tree", "-o", "x.img"]).unwrap();
        assert_eq!((b.format, b.compress, b.force), (Format::Squashfs, Compress::Zstd, false));
        let b = parse(&["--format", "erofs", "tree", "-o", "x.img", "--force"]).unwrap();
        assert_eq!((b.format, b.compress, b.force), (Format::Erofs, Compress::Lz4, true));
        assert!(!b.verity && parse(&["t", "-o", "x", "--verity"]).unwrap().verity);
        let b = parse(&["t", "-o", "x", "--verity", "--sign", "k.pem"]).unwrap();
        assert_eq!(b.sign.as_deref(), Some(Path::new("k.pem")));
        assert!(parse(&["t", "-o", "x", "--sign", "k.pem"]).unwrap_err().starts_with("--sign needs --verity"));
        assert_eq!(parse(&["t", "-o", "x", "--format", "ext4"]).unwrap_err(), "--format: squashfs or erofs");
        assert_eq!(parse(&["t", "-o", "x", "--compress", "gzip"]).unwrap_err(), "--compress: zstd, xz or lz4");
        assert!(parse(&["t", "-o"]).unwrap_err().contains("-o needs a value"));
        assert!(parse(&["t"]).unwrap_err().contains("-o IMAGE"));
        assert!(parse(&["t", "u", "-o", "x"]).unwrap_err().contains("one tree only"));
        assert!(parse(&["t", "-o", "x", "--bogus\u{1b}"]).unwrap_err().contains("\"--bogus\\x1b\""));
    }

    #[test]
    fn verity_pads_the_data_to_a_block_and_appends_superblock_and_tree() {
        let tmp = crate::fs::Tmp::new("verity");
        let path = tmp.0.join("image");
        std::fs::write(&path, vec![7; 4096 * 128 + 5]).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let data_hex = sha256_of(&file).unwrap();
        let appended = append_verity(&file, &data_hex, ImageFormat::Squashfs).unwrap();
        // 129 blocks: a top block over two leaf blocks, after the superblock.
        assert_eq!((appended.data, appended.tree), (4096 * 129, 4096 * 4));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096 * 133);
        assert!(bytes[4096 * 128 + 5..4096 * 129].iter().all(|b| *b == 0), "zeroes to a block");
        assert_eq!(&bytes[4096 * 129..4096 * 129 + 8], b"verity\0\0");
        let salt = verity::salt(&data_hex);
        assert_eq!(bytes[4096 * 129 + 88..4096 * 129 + 120], salt);
        assert_eq!(appended.params.root_hash, verity::hash(&salt, &bytes[4096 * 130..4096 * 131]));
        assert_eq!(verity_of(&file, ImageFormat::Squashfs).unwrap(), Some(appended.params));
    }

    #[test]
    fn published_names_hold_the_time_and_the_hash_and_keep_the_extension() {
        let hex = "5c4c0187115c32dd1392ea5e8f5c995830c78e1d700db388df7d6b0ba0f6cca1";
        let name = |n| published_name(n, Format::Erofs, hex, 1_796_552_100);
        assert_eq!(name("debian13.sqfs").unwrap(), "debian13-20261206T101500Z-5c4c0187115c.sqfs");
        assert_eq!(name("a.b.erofs").unwrap(), "a.b-20261206T101500Z-5c4c0187115c.erofs");
        assert_eq!(name("image").unwrap(), "image-20261206T101500Z-5c4c0187115c.erofs");
        assert_eq!(name(".hidden").unwrap(), ".hidden-20261206T101500Z-5c4c0187115c.erofs");
        assert_eq!(published_name("x.sqfs", Format::Squashfs, hex, 0), None);
    }

    #[test]
    fn checksum_lines_are_sha256sums_and_refuse_names_it_would_escape() {
        assert_eq!(checksum_line("ab", image_name(OsStr::new("x.sqfs")).unwrap()), "ab  x.sqfs\n");
        assert!(image_name(OsStr::new("x\nb")).unwrap_err().contains("\"x\\x0ab\""));
        assert!(image_name(OsStr::new("x\\b")).is_err());
        assert!(image_name(OsStr::from_bytes(b"\xff")).is_err());
        // What a terminal would show otherwise (a right-to-left override), and sha256sum -c's
        // standard input.
        assert!(image_name(OsStr::new("evil\u{202e}gpj.sqfs"))
            .unwrap_err()
            .contains("\"evil\\xe2\\x80\\xaegpj.sqfs\""));
        assert!(image_name(OsStr::new("zero\u{200b}width.sqfs")).is_err());
        assert!(image_name(OsStr::new("-")).is_err());
        assert_eq!(image_name(OsStr::new("-x.sqfs")).unwrap(), "-x.sqfs");
    }
}
