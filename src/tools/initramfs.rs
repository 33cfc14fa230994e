//! `stateless initramfs`: the initramfs of initramfs mode. This binary as /init, the modules a
//! network boot needs with their dependencies (as modprobe would load them), index files cut
//! down to them, and the firmware they declare; nothing else. Reproducible: the same inputs give
//! the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::io::Errno;

use super::quote;
use crate::fs::cpio::{Archive, Inode};
use crate::fs::root::ImageRoot;
use crate::kmod::compressed::Compression;
use crate::kmod::config::Config;
use crate::kmod::index::{self, Index};
use crate::kmod::resolve::Rules;
use crate::model::sign::{self, TrustedKey};
use crate::model::text::{escape, escape_path, hex};

pub const USAGE: &str = "\
usage: stateless initramfs --kernel-version V [--modules-dir DIR] [--nic M[,M...]]
                           [--add-module M ...] [--firmware DIR] [--compress zstd|gzip|none]
                           [--trust PUBKEY ...] -o FILE

Writes the initramfs of initramfs mode to FILE: this binary as /init; the NIC drivers (by
default every Ethernet, USB and virtual NIC driver of the kernel tree, one image for a lab of
mixed machines; with --nic only those named), the bus drivers they sit on (virtio_pci, USB
host controllers), nfsv3, nfsv4, overlay, af_packet, loop, squashfs, erofs, dm-verity
(image-file roots, verified ones) and --add-module's, each with what it needs as modprobe loads it (modules.dep, softdeps);
modules.dep, modules.alias, modules.softdep and modules.order cut down to them; the firmware they declare, from --firmware DIR (default
/lib/firmware) where present. Modules come from /lib/modules/V or --modules-dir DIR.
Nothing is read through a symlink that leads out of the module dir or the firmware dir
(absolute, or up out of it): such a module or index file is an error and no image is written,
such a firmware file is left out as missing, with a warning; symlinks that stay inside are
followed. A file that is not a regular one (a device, a fifo) is never opened. Compressed
modules (.ko.xz, .ko.zst, .ko.gz) go in unpacked, in process, their firmware with them, the
index naming them .ko: the image is compressed once, as a whole; a damaged one, or one that
unpacks to over 256 MiB (1 GiB all modules), is an error and no image is written.
Compression runs the zstd (-19, default) or gzip (-9) command. Entries are sorted, owned by
root and dated
SOURCE_DATE_EPOCH (seconds; unset or empty: 0; anything else not a number of seconds is an
error): the same inputs give the same bytes. FILE is written beside and renamed over (a
symlink there is replaced, not followed). Prints what went in and the size.

--trust PUBKEY (again for each key: two during a key rotation) puts an ed25519 public key into
/etc/stateless/trusted.keys, a line a key, that a client checks signed images with (stateless
image --help): OpenSSL's PEM (openssl pkey -pubout), signify's .pub, or an ssh-ed25519
line. A key given twice (or two with the same key id) is refused, and so is a file that is not
such a key: no image is written. Prints each key's fingerprint (SHA256:..., as ssh-keygen
shows keys) and key id.
";

/// Modules every image has, when the kernel has them as modules: the NFS clients, overlayfs,
/// the packet socket the DHCP client sends from, and what an image-file root is mounted with
/// (a loop device, squashfs, EROFS, dm-verity; their decompressors and dm-verity's
/// dependencies come with them or are built in), and nbd for an NBD root.
const ALWAYS: [&str; 9] = ["nfsv3", "nfsv4", "overlay", "af_packet", "loop", "squashfs", "erofs", "dm-verity", "nbd"];

/// Where a kernel tree keeps NIC drivers: Ethernet, USB NICs, hypervisors' NICs.
const NIC_DIRS: [&str; 5] = [
    "kernel/drivers/net/ethernet/",
    "kernel/drivers/net/usb/",
    "kernel/drivers/net/hyperv/",
    "kernel/drivers/net/vmxnet3/",
    "kernel/drivers/net/xen-netback/",
];

/// NIC drivers directly in drivers/net.
const NIC_MODULES: [&str; 2] = ["virtio_net", "xen_netfront"];

/// PHY and MDIO drivers: a NIC built on libphy finds its PHY's driver by the PHY's id, not
/// through modules.dep, so all of them come along with such a NIC.
const PHY_DIRS: [&str; 2] = ["kernel/drivers/net/phy/", "kernel/drivers/net/mdio/"];

/// Bus drivers a NIC appears on only once they are loaded: (path part of a NIC driver, buses).
const BUSES: [(&str, &[&str]); 2] =
    [("/virtio", &["virtio_pci"]), ("kernel/drivers/net/usb/", &["xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd"])];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compress {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug)]
struct Args {
    release: String,
    modules_dir: PathBuf,
    nics: Option<Vec<String>>,
    extra: Vec<String>,
    firmware: PathBuf,
    compress: Compress,
    output: PathBuf,
    /// `--trust PUBKEY`: the key files, in order.
    trust: Vec<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let (mut release, mut modules_dir, mut nics, mut extra, mut output) = (None, None, None, Vec::new(), None);
    let (mut firmware, mut compress, mut trust) = (PathBuf::from("/lib/firmware"), Compress::Zstd, Vec::new());
    while let Some(arg) = args.next() {
        let mut value =
            |flag: &str| args.next().and_then(|v| v.into_string().ok()).ok_or_else(|| format!("{flag} needs a value"));
        let names = |v: String| -> Result<Vec<String>, String> {
            let list: Vec<String> = v.split(',').filter(|m| !m.is_empty()).map(index::normalize).collect();
            match list.iter().find(|m| !index::valid_name(m)) {
                Some(bad) => Err(format!("{} is not a module name", quote(bad))),
                None => Ok(list),
            }
        };
        match arg.to_str().unwrap_or_default() {
            "--help" | "-h" => return Ok(None),
            "--kernel-version" => {
                let v = value("--kernel-version")?;
                if !crate::kmod::is_release(&v) {
                    return Err(format!("--kernel-version {}: not a release name", quote(v)));
                }
                release = Some(v);
            }
            "--modules-dir" => modules_dir = Some(PathBuf::from(value("--modules-dir")?)),
            "--nic" => nics.get_or_insert_with(Vec::new).extend(names(value("--nic")?)?),
            "--add-module" => extra.extend(names(value("--add-module")?)?),
            "--firmware" => firmware = PathBuf::from(value("--firmware")?),
            "--compress" => {
                compress = match value("--compress")?.as_str() {
                    "zstd" => Compress::Zstd,
                    "gzip" => Compress::Gzip,
                    "none" => Compress::None,
                    other => return Err(format!("--compress {}: zstd, gzip or none", quote(other))),
                }
            }
            "-o" | "--output" => output = Some(PathBuf::from(value("-o")?)),
            "--trust" => trust.push(PathBuf::from(value("--trust")?)),
            _ => return Err(format!("unknown argument {}", quote(arg))),
        }
    }
    let release = release.ok_or("--kernel-version is needed (the kernel the clients boot)")?;
    let modules_dir = modules_dir.unwrap_or_else(|| Path::new("/lib/modules").join(&release));
    let output = output.ok_or("-o FILE is needed")?;
    Ok(Some(Args { release, modules_dir, nics, extra, firmware, compress, output, trust }))
}

/// The modules chosen, by name, with their file (relative to the module dir).
struct Selection {
    modules: BTreeMap<String, String>,
    nics: Vec<String>,
    /// Names asked for that are built into the kernel (nothing to add).
    builtin: Vec<String>,
    /// ALWAYS names this kernel has neither as module nor built in.
    absent: Vec<String>,
}

fn select(index: &Index, args: &Args) -> Result<Selection, String> {
    let config = Config::default();
    let rules = Rules { index, config: &config };
    let nics: Vec<String> = match &args.nics {
        Some(nics) => nics.clone(),
        None => index
            .modules
            .iter()
            .filter(|(name, m)| NIC_DIRS.iter().any(|d| m.path.starts_with(d)) || NIC_MODULES.contains(&name.as_str()))
            .map(|(name, _)| name.clone())
            .collect(),
    };
    let mut wanted: Vec<(String, bool)> = nics.iter().chain(&args.extra).map(|n| (n.clone(), true)).collect();
    let nic_paths: Vec<&str> = nics.iter().filter_map(|n| index.modules.get(n)).map(|m| m.path.as_str()).collect();
    for (part, buses) in BUSES {
        if nic_paths.iter().any(|p| p.contains(part)) {
            wanted.extend(buses.iter().map(|b| (b.to_string(), false)));
        }
    }
    let on_libphy = nics.iter().filter_map(|n| index.modules.get(n)).any(|m| m.deps.iter().any(|d| d == "libphy"));
    if on_libphy {
        let phys = index.modules.iter().filter(|(_, m)| PHY_DIRS.iter().any(|d| m.path.starts_with(d)));
        wanted.extend(phys.map(|(name, _)| (name.clone(), false)));
    }
    wanted.extend(ALWAYS.iter().map(|m| (m.to_string(), false)));
    let mut selection = Selection { modules: BTreeMap::new(), nics, builtin: Vec::new(), absent: Vec::new() };
    for (name, required) in wanted {
        let found = rules.lookup(&name);
        if found.is_empty() {
            if required {
                return Err(format!("module {name} is not in {}", escape_path(&args.modules_dir)));
            }
            selection.absent.push(name);
            continue;
        }
        let mut order = Vec::new();
        for f in &found {
            rules.probe_list(&f.module, &mut order);
        }
        if found.iter().all(|f| f.builtin) {
            selection.builtin.push(name);
        }
        for step in order {
            if let Some(path) = step.path {
                selection.modules.insert(step.module, path);
            }
        }
    }
    Ok(selection)
}

/// The lines of an index file about the chosen modules: `key_of` names a line's module.
fn cut(text: &[u8], key_of: impl Fn(&str) -> Option<String>, keep: &BTreeSet<String>) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8_lossy(text).lines() {
        if key_of(line).is_some_and(|k| keep.contains(&k)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The name a module file has in the image: a compressed one's plain name (`a.ko.xz` → `a.ko`).
fn plain(path: &str) -> &str {
    Compression::of(path).map_or(path, |(_, plain)| plain)
}

/// Index lines (`modules.dep`, `modules.order`) with each compressed module's path made its
/// plain one (`a.ko.xz: b.ko.zst` → `a.ko: b.ko`), as the modules go into the image.
fn plain_names(text: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for line in String::from_utf8_lossy(text).lines() {
        let words: Vec<String> = line
            .split(' ')
            .map(|word| match word.strip_suffix(':') {
                Some(path) => format!("{}:", plain(path)),
                None => plain(word).to_string(),
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out.into_bytes()
}

/// The `firmware=` entries of a module's .modinfo (of a module unpacked).
fn firmware_of(module: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for chunk in module.split(|b| *b == 0) {
        if let Some(name) = chunk.strip_prefix(b"firmware=") {
            let Ok(name) = std::str::from_utf8(name) else { continue };
            let safe = !name.is_empty()
                && !name.starts_with('/')
                && !name.split('/').any(|c| c == ".." || c.is_empty())
                && name.bytes().all(|b| b.is_ascii_graphic());
            if safe && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Largest file read into the image (a module or a firmware file), also once unpacked.
const FILE_LIMIT: u64 = 256 << 20;

/// Most bytes of modules an image holds once unpacked (a generic image's are 62 MB): a tree of
/// small files that unpack to gigabytes each is refused, not held.
const UNPACKED_LIMIT: u64 = 1 << 30;

/// A file of a tree that was not read: why, said; and whether it is a symlink out of the tree.
struct Unread {
    said: String,
    leads_out: bool,
}

impl From<Unread> for String {
    fn from(unread: Unread) -> String {
        unread.said
    }
}

/// The file `path` of the tree `dir` (the module dir or the firmware dir), as the boot reads a
/// module tree: never through a symlink that leads out of it. `None` when missing; an error
/// when it is not a regular file of at most `limit` bytes, or a symlink leads out.
fn read_in(dir: &ImageRoot, path: &str, limit: u64) -> Result<Option<Vec<u8>>, Unread> {
    crate::fs::root::read_beneath(dir.fd(), Path::new(path), limit).map_err(|e| {
        let (shown, tree) = (escape_path(&dir.path().join(path)), escape_path(dir.path()));
        match e.raw_os_error() {
            Some(errno) if errno == Errno::XDEV.raw_os_error() => Unread {
                said: format!("{shown}: leads out of {tree} (an absolute symlink, or one up out of it): refused"),
                leads_out: true,
            },
            _ => Unread { said: format!("{shown}: {e}"), leads_out: false },
        }
    })
}

/// The date of every entry: `SOURCE_DATE_EPOCH`, 0 when unset or empty, an error when it is
/// not a number of seconds a cpio archive holds (never a silent 0).
pub(super) fn source_date_epoch(value: Option<OsString>) -> Result<u32, String> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(0) };
    let seconds = value.to_str().filter(|v| v.bytes().all(|b| b.is_ascii_digit())).and_then(|v| v.parse().ok());
    seconds.ok_or_else(|| {
        let shown = quote(value);
        format!("SOURCE_DATE_EPOCH={shown}: not a number of seconds from 0 to {}", u32::MAX)
    })
}

/// The keys of `--trust`, each file read as [`sign::public_key`] reads it (a key without a
/// comment, OpenSSL's, gets its file's name); a key given twice, or two with one key id (a
/// signature names its key by it), is refused, naming both files.
fn trusted(files: &[PathBuf]) -> Result<Vec<TrustedKey>, String> {
    let mut keys: Vec<(TrustedKey, &PathBuf)> = Vec::new();
    for path in files {
        let shown = escape_path(path);
        let mut key = sign::public_key(&super::read_key_file(path)?).map_err(|e| format!("--trust {shown}: {e}"))?;
        if key.comment.is_empty() {
            key.comment = sign::comment(path.file_name().unwrap_or(path.as_os_str()).as_encoded_bytes());
        }
        if let Some((_, other)) = keys.iter().find(|(k, _)| k.clashes(&key)) {
            return Err(format!(
                "--trust {shown}: the same key (or key id) as {}: {}: give each key once",
                escape_path(other),
                key.fingerprint()
            ));
        }
        keys.push((key, path));
    }
    let keys: Vec<TrustedKey> = keys.into_iter().map(|(key, _)| key).collect();
    // A file the boot would not read (more keys than it reads) would refuse every signed image.
    sign::trusted_keys(sign::trusted_keys_file(&keys).as_bytes())
        .map_err(|e| format!("--trust: a trusted keys file every client would refuse ({e}): give fewer keys"))?;
    Ok(keys)
}

/// The image is written outside the trees it is read from: `-o` in the module dir would replace
/// a file of the kernel's (`modules.dep`), in the firmware dir a driver's firmware.
fn output_apart(args: &Args) -> Result<(), String> {
    let parent = super::parent_of(&args.output);
    let Ok(parent) = std::fs::canonicalize(parent) else { return Ok(()) }; // said when written
    for (flag, tree) in [("--modules-dir", &args.modules_dir), ("--firmware", &args.firmware)] {
        if std::fs::canonicalize(tree).is_ok_and(|tree| parent.starts_with(tree)) {
            return Err(format!(
                "{}: inside {flag} {}, which the image is read from: write it elsewhere",
                escape_path(&args.output),
                escape_path(tree)
            ));
        }
    }
    Ok(())
}

pub fn command(args: impl Iterator<Item = OsString>) -> Result<i32, String> {
    let Some(args) = parse(args)? else {
        crate::tools::emit(USAGE)?;
        return Ok(0);
    };
    let mtime = source_date_epoch(std::env::var_os("SOURCE_DATE_EPOCH"))?;
    output_apart(&args)?;
    let trusted = trusted(&args.trust)?;
    let dir = std::path::absolute(&args.modules_dir).map_err(|e| format!("{}: {e}", escape_path(&args.modules_dir)))?;
    let tree = ImageRoot::open(&dir).map_err(|e| format!("{}: {e}", escape_path(&dir)))?;
    let files = crate::kmod::read_index(&dir, |name, limit| Ok(read_in(&tree, name, limit)?), false)?;
    let order = read_in(&tree, "modules.order", crate::kmod::INDEX_LIMIT)?.unwrap_or_default();
    let index = files.parse();
    for problem in &index.problems {
        eprintln!("warning: {}: {problem}", escape_path(&dir));
    }
    let selection = select(&index, &args)?;
    let base = format!("lib/modules/{}", args.release);
    let mut archive = Archive::default();
    let init = std::env::current_exe().map_err(|e| format!("this binary: {e}"))?;
    let init_bytes = std::fs::read(&init).map_err(|e| format!("{}: {e}", escape_path(&init)))?;
    archive.add("init", Inode::File(init_bytes), 0o755);
    for d in ["dev", "proc", "sys", "run", "tmp", crate::boot::plan::NEW_ROOT] {
        archive.add(d, Inode::Dir, 0o755);
    }
    // The kernel opens /dev/console for /init before anything is mounted.
    archive.add("dev/console", Inode::CharDev(5, 1), 0o600);
    if !trusted.is_empty() {
        let keys = sign::trusted_keys_file(&trusted).into_bytes();
        archive.add(crate::model::paths::TRUSTED_KEYS, Inode::File(keys), 0o644);
    }
    let mut firmware = BTreeSet::new();
    let (mut module_bytes, mut unpacked) = (0, 0);
    for path in selection.modules.values() {
        let shown = || escape_path(&dir.join(path));
        let data = read_in(&tree, path, FILE_LIMIT)?.ok_or_else(|| format!("{}: not found", shown()))?;
        // A compressed module goes in unpacked (the archive is compressed as a whole, once), so
        // its .modinfo tells its firmware; the index names it so.
        let (path, data) = match Compression::of(path) {
            Some((kind, plain)) => {
                unpacked += 1;
                let left = UNPACKED_LIMIT.saturating_sub(module_bytes as u64).min(FILE_LIMIT);
                let data = kind.unpack(data, left).map_err(|e| match e.kind() {
                    std::io::ErrorKind::FileTooLarge => {
                        format!("{}: {e} (at most {FILE_LIMIT} a module, {UNPACKED_LIMIT} all modules)", shown())
                    }
                    _ => format!("{}: {e}", shown()),
                })?;
                (plain, data)
            }
            None => (path.as_str(), data),
        };
        module_bytes += data.len();
        firmware.extend(firmware_of(&data));
        archive.add(&format!("{base}/{path}"), Inode::File(data), 0o644);
    }
    let names: BTreeSet<String> = selection.modules.keys().cloned().collect();
    let paths: BTreeSet<String> = selection.modules.values().cloned().collect();
    let first_word = |line: &str, keyword: &str| {
        let mut words = line.split_whitespace();
        (words.next() == Some(keyword)).then(|| words.next().map(index::normalize)).flatten()
    };
    let alias_module = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["alias", _, module] => Some(index::normalize(module)),
            _ => None,
        }
    };
    let dep_path = |line: &str| line.split_once(':').map(|(p, _)| p.to_string());
    archive.add(&format!("{base}/modules.dep"), Inode::File(plain_names(&cut(&files.dep, dep_path, &paths))), 0o644);
    archive.add(&format!("{base}/modules.alias"), Inode::File(cut(&files.alias, alias_module, &names)), 0o644);
    let softdep_module = |line: &str| first_word(line, "softdep");
    archive.add(&format!("{base}/modules.softdep"), Inode::File(cut(&files.softdep, softdep_module, &names)), 0o644);
    // modules.order names the files as the kernel's build wrote them, before compressing (a.ko).
    let plain_paths: BTreeSet<String> = paths.iter().map(|p| plain(p).to_string()).collect();
    let order_path = |line: &str| Some(plain(line.trim()).to_string());
    archive.add(
        &format!("{base}/modules.order"),
        Inode::File(plain_names(&cut(&order, order_path, &plain_paths))),
        0o644,
    );
    archive.add(&format!("{base}/modules.builtin"), Inode::File(files.builtin), 0o644);
    let (mut missing_firmware, mut refused_firmware) = (Vec::new(), Vec::new());
    // No firmware dir: every firmware file is missing (said below), as a file missing in it.
    let firmware_dir = match ImageRoot::open(&args.firmware) {
        Ok(opened) => Some(opened),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", escape_path(&args.firmware))),
    };
    for name in &firmware {
        let (mut found, mut refused) = (None, None);
        for file in ["", ".zst", ".xz"].map(|suffix| format!("{name}{suffix}")) {
            match firmware_dir.as_ref().map(|d| read_in(d, &file, FILE_LIMIT)).transpose() {
                Ok(Some(Some(data))) => {
                    found = Some((file, data));
                    break;
                }
                Ok(_) => {}
                // A symlink out of the firmware dir (Debian's regulatory.db, an alternatives
                // link into /etc) is firmware this image lacks, not a failed build.
                Err(unread) if unread.leads_out => refused = refused.or(Some(unread.said)),
                Err(unread) => return Err(unread.into()),
            }
        }
        match found {
            Some((file, data)) => archive.add(&format!("lib/firmware/{file}"), Inode::File(data), 0o644),
            None => {
                missing_firmware.push(name.clone());
                refused_firmware.extend(refused);
            }
        }
    }
    let cpio = archive.write(mtime);
    let written = super::write_output(&args.output, |file| write_compressed(&cpio, args.compress, file))?;

    let (from, to) = (escape_path(&dir), escape_path(&args.output));
    // Module names (letters, digits, `_`, `-`) and the release are checked to show as they are;
    // module paths are not.
    let mut text = format!("initramfs for {} from {from}: {to}\n", args.release);
    let nic_list = if args.nics.is_some() {
        selection.nics.join(", ")
    } else {
        format!("{} (every Ethernet, USB and virtual NIC driver)", selection.nics.len())
    };
    text.push_str(&format!(
        "  /init: {} ({} bytes)\n",
        escape_path(&init),
        std::fs::metadata(&init).map_or(0, |m| m.len())
    ));
    text.push_str(&format!("  NIC drivers: {nic_list}\n"));
    text.push_str(&format!("  modules: {} files, {module_bytes} bytes\n", selection.modules.len()));
    if args.nics.is_some() || selection.modules.len() <= 64 {
        for (name, path) in &selection.modules {
            text.push_str(&format!("    {name:<20} {}\n", escape(path.as_bytes())));
        }
    }
    if !selection.builtin.is_empty() {
        text.push_str(&format!("  built into the kernel: {}\n", selection.builtin.join(", ")));
    }
    if !selection.absent.is_empty() {
        text.push_str(&format!("  not in this kernel: {}\n", selection.absent.join(", ")));
    }
    if unpacked > 0 {
        text.push_str(&format!("  unpacked: {unpacked} compressed modules (the image is compressed as a whole)\n"));
    }
    let listed: Vec<&String> = firmware.iter().filter(|f| !missing_firmware.contains(f)).collect();
    text.push_str(&format!("  firmware: {} files\n", listed.len()));
    if !missing_firmware.is_empty() {
        text.push_str(&format!(
            "  firmware declared but not in {} (drivers that need it will not start): {}\n",
            escape_path(&args.firmware),
            missing_firmware.len()
        ));
    }
    for said in &refused_firmware {
        text.push_str(&format!("  warning: firmware {said}, left out as missing\n"));
    }
    if !trusted.is_empty() {
        text.push_str(&format!("  trusted keys: /{}\n", crate::model::paths::TRUSTED_KEYS));
        for key in &trusted {
            text.push_str(&format!("    {} (id {}) {}\n", key.fingerprint(), hex(&key.id), key.comment));
        }
    }
    let how = match args.compress {
        Compress::Zstd => "zstd -19",
        Compress::Gzip => "gzip -9",
        Compress::None => "uncompressed",
    };
    text.push_str(&format!("  size: {written} bytes ({how}; the cpio archive is {} bytes)\n", cpio.len()));
    crate::tools::emit(&text)?;
    Ok(0)
}

/// Writes `cpio` into `file`, through the compressor's command.
fn write_compressed(cpio: &[u8], compress: Compress, mut file: &std::fs::File) -> Result<(), String> {
    let command: Option<(&str, &[&str])> = match compress {
        Compress::Zstd => Some(("zstd", &["-19", "-T1", "-q", "-c"])),
        Compress::Gzip => Some(("gzip", &["-9", "-n", "-c"])),
        Compress::None => None,
    };
    let Some((program, flags)) = command else {
        return file.write_all(cpio).map_err(|e| e.to_string());
    };
    let mut child = Command::new(program)
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(file.try_clone().map_err(|e| e.to_string())?))
        .spawn()
        .map_err(|e| format!("{program}: {e} (install it, or use --compress none)"))?;
    let fed = child.stdin.take().map(|mut stdin| stdin.write_all(cpio));
    let status = child.wait().map_err(|e| format!("{program}: {e}"))?;
    if let Some(Err(e)) = fed {
        return Err(format!("{program}: {e}"));
    }
    if !status.success() {
        return Err(format!("{program}: {status}"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn firmware_names_are_taken_only_when_they_stay_in_the_firmware_dir() {
        let modinfo = b"\0license=GPL\0firmware=rtl_nic/rtl8168h-2.fw\0firmware=../../etc/shadow\0firmware=/abs\0\
                        firmware=e100/d101m_ucode.bin\0firmware=rtl_nic/rtl8168h-2.fw\0";
        assert_eq!(firmware_of(modinfo), ["rtl_nic/rtl8168h-2.fw", "e100/d101m_ucode.bin"]);
    }

    #[test]
    fn compressed_modules_are_named_plain_in_the_index() {
        let dep = b"kernel/a.ko.xz: kernel/b.ko.zst kernel/c.ko\nkernel/b.ko.zst:\nkernel/d.ko.gz:\n";
        let want = "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\nkernel/d.ko:\n";
        assert_eq!(String::from_utf8(plain_names(dep)).unwrap(), want);
        assert_eq!(plain("kernel/x.ko.bz2"), "kernel/x.ko.bz2");
    }

    #[test]
    fn index_lines_are_cut_down_to_the_chosen_modules() {
        let keep: BTreeSet<String> = ["kernel/a.ko".to_string()].into();
        let dep = b"kernel/a.ko: kernel/b.ko\nkernel/c.ko:\n";
        assert_eq!(cut(dep, |l| l.split_once(':').map(|(p, _)| p.to_string()), &keep), b"kernel/a.ko: kernel/b.ko\n");
    }

    /// More keys than a client reads (or a file larger than it reads) are refused: the
    /// initramfs would refuse every signed image.
    #[test]
    fn trusted_keys_every_client_would_refuse_are_refused() {
        let tmp = crate::fs::Tmp::new("initramfs-keys");
        let files: Vec<PathBuf> = (0..=256u32)
            .map(|n| {
                let seed: [u8; 32] = std::array::from_fn(|i| n.to_le_bytes().get(i).copied().unwrap_or(7));
                let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
                let spki =
                    [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], &public].concat();
                let path = tmp.0.join(format!("{n}.pub"));
                let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", sign::base64(&spki));
                std::fs::write(&path, pem).unwrap();
                path
            })
            .collect();
        let keys = trusted(&files[..256]).unwrap();
        assert_eq!(sign::trusted_keys(sign::trusted_keys_file(&keys).as_bytes()).unwrap(), keys);
        let e = trusted(&files).err().unwrap_or_default();
        assert!(e.contains("every client would refuse") && e.contains("more than 256 keys"), "{e}");
    }

    #[test]
    fn arguments() {
        let parse = |a: &[&str]| parse(a.iter().map(OsString::from));
        let args = parse(&["--kernel-version", "6.1.0", "--nic", "virtio-net,e1000", "-o", "x"]).unwrap().unwrap();
        assert_eq!(args.nics.unwrap(), ["virtio_net", "e1000"]);
        assert_eq!(args.modules_dir, Path::new("/lib/modules/6.1.0"));
        assert_eq!(args.compress, Compress::Zstd);
        assert!(args.trust.is_empty());
        let args = parse(&["--kernel-version", "6.1.0", "--trust", "a.pem", "--trust", "b.pub", "-o", "x"]).unwrap();
        assert_eq!(args.unwrap().trust, [Path::new("a.pem"), Path::new("b.pub")]);
        assert!(parse(&["--kernel-version", "6.1.0", "-o", "x", "--trust"])
            .unwrap_err()
            .contains("--trust needs a value"));
        assert!(parse(&["--kernel-version", "../x", "-o", "x"]).is_err());
        assert!(parse(&["--kernel-version", "6.1\u{1b}[2J", "-o", "x"]).unwrap_err().contains("\"6.1\\x1b[2J\""));
        assert!(parse(&["--kernel-version", "6.1.0", "--nic", "a/b", "-o", "x"]).is_err());
        assert!(parse(&["--kernel-version", "6.1.0"]).unwrap_err().contains("-o FILE"));
        assert!(parse(&["--kernel-version", "6.1.0", "-o", "x", "--compress", "lz4"]).is_err());
    }
}
