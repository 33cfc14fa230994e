//! The kernel's device-mapper through its ioctls on /dev/mapper/control (linux/dm-ioctl.h,
//! interface 4), as `dmsetup create --readonly NAME --table ...` drives it: no libdevmapper, no
//! udev, no dmsetup in the initramfs. One device of one target: created, its table loaded
//! read-only, resumed; removed again when a step after the create fails. The buffers are built
//! and read here (pure, unit-tested byte for byte); [`super::unsafe_ops::dm_ioctl`] hands them
//! to the kernel.
//!
//! Layout (dm-ioctl.h; 64-bit and i386 alike, no pointers): `struct dm_ioctl` is 312 bytes:
//! `version[3]` at 0, `data_size` 12 (the whole buffer), `data_start` 16, `target_count` 20,
//! `open_count` 24, `flags` 28, `event_nr` 32, `dev` 40 (`huge_encode_dev`), `name[128]` 48,
//! `uuid[129]` 176. The payload starts at `data_start`: for a table, `struct dm_target_spec`
//! (40 bytes: `sector_start` 0, `length` 8, `status` 16, `next` 20, `target_type[16]` 24) and
//! its NUL-terminated parameters, `next` rounded up to 8 bytes as libdevmapper does.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC: usize = 40;
/// `DM_NAME_LEN`, with its NUL.
const NAME_LEN: usize = 128;
/// `DM_MAX_TYPE_NAME`, with its NUL.
const TYPE_LEN: usize = 16;
/// Room for the kernel's answer to a status query.
const STATUS_ROOM: usize = 4096;

/// `DM_READONLY_FLAG`: a table the device can only read (verity refuses any other).
const READONLY: u32 = 1;
/// `DM_BUFFER_FULL_FLAG`: the answer did not fit.
const BUFFER_FULL: u32 = 1 << 8;

/// The ioctls used, by their number (`_IOWR(0xfd, nr, struct dm_ioctl)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `DM_DEV_CREATE`: a device with no table.
    Create = 3,
    /// `DM_DEV_REMOVE`.
    Remove = 4,
    /// `DM_DEV_SUSPEND` without `DM_SUSPEND_FLAG`: resume, the loaded table made live.
    Resume = 6,
    /// `DM_TABLE_LOAD`.
    Load = 9,
    /// `DM_TABLE_STATUS`: each target's status (verity's: `V`, or `C` once a block mismatched).
    Status = 12,
}

impl Command {
    /// The ioctl request: `_IOWR(0xfd, nr, 312 bytes)`.
    pub fn request(self) -> u32 {
        0xc000_0000 | (HEADER as u32) << 16 | 0xfd << 8 | self as u32
    }
}

/// A device-mapper name: 1 to 127 bytes, no `/` (the kernel's rule), printable ASCII here.
fn checked_name(name: &str) -> io::Result<&str> {
    let ok = !name.is_empty()
        && name.len() < NAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        && name != "."
        && name != "..";
    ok.then_some(name).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a device-mapper name"))
}

/// A `struct dm_ioctl` for `name` with `flags`, followed by `payload`, and `room` zero bytes
/// more for the kernel's answer; `data_size` the whole buffer.
pub fn message(name: &str, flags: u32, targets: u32, payload: &[u8], room: usize) -> io::Result<Vec<u8>> {
    let name = checked_name(name)?;
    let size = HEADER + payload.len() + room;
    let size32 = u32::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = Vec::with_capacity(size);
    for word in [4u32, 0, 0, size32, HEADER as u32, targets, 0, flags, 0, 0] {
        buf.extend_from_slice(&word.to_le_bytes());
    }
    buf.extend_from_slice(&0u64.to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.resize(HEADER, 0);
    buf.extend_from_slice(payload);
    buf.resize(size, 0);
    Ok(buf)
}

/// One `struct dm_target_spec` from sector 0 over `sectors` of `target` (`verity`), and its
/// parameters.
pub fn target_spec(sectors: u64, target: &str, params: &str) -> io::Result<Vec<u8>> {
    let bad = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
    if target.is_empty() || target.len() >= TYPE_LEN || !target.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(bad("not a target type"));
    }
    if params.bytes().any(|b| b == 0) {
        return Err(bad("a NUL in a table's parameters"));
    }
    let next = SPEC + (params.len() + 1).next_multiple_of(8);
    let next32 = u32::try_from(next).map_err(|_| bad("a table's parameters too long"))?;
    let mut spec = Vec::with_capacity(next);
    spec.extend_from_slice(&0u64.to_le_bytes());
    spec.extend_from_slice(&sectors.to_le_bytes());
    spec.extend_from_slice(&0u32.to_le_bytes());
    spec.extend_from_slice(&next32.to_le_bytes());
    spec.extend_from_slice(target.as_bytes());
    spec.resize(SPEC, 0);
    spec.extend_from_slice(params.as_bytes());
    spec.resize(next, 0);
    Ok(spec)
}

fn le32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
}

/// The device number (major, minor) an answer names (`dev`, `huge_encode_dev`).
pub fn device_of(answer: &[u8]) -> Option<(u32, u32)> {
    let dev = answer.get(40..48).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)?;
    let major = (dev >> 8) & 0xfff;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xf_ff00);
    Some((major as u32, minor as u32))
}

/// The status of the first target in a `DM_TABLE_STATUS` answer: the text after its spec, up
/// to the NUL; `None` when the answer holds no target or is cut short.
pub fn status_of(answer: &[u8]) -> Option<String> {
    let flags = le32(answer, 28)?;
    let (start, targets) = (le32(answer, 16)? as usize, le32(answer, 20)?);
    let size = (le32(answer, 12)? as usize).min(answer.len());
    if flags & BUFFER_FULL != 0 || targets == 0 {
        return None;
    }
    let text = answer.get(start.checked_add(SPEC)?..size)?;
    let end = text.iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(text.get(..end)?).into_owned())
}

/// What the kernel was asked, for messages: `create stateless-root: <error>`.
fn failed(command: Command, name: &str, e: io::Error) -> io::Error {
    let what = match command {
        Command::Create => "create",
        Command::Remove => "remove",
        Command::Resume => "resume",
        Command::Load => "load the table of",
        Command::Status => "read the status of",
    };
    io::Error::new(e.kind(), format!("device-mapper: {what} {name}: {}", e.to_string().to_lowercase()))
}

fn call(control: BorrowedFd<'_>, command: Command, mut buf: Vec<u8>, name: &str) -> io::Result<Vec<u8>> {
    super::unsafe_ops::dm_ioctl(control, command.request(), &mut buf).map_err(|e| failed(command, name, e))?;
    Ok(buf)
}

fn control(dev: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{open, Mode, OFlags};
    let path = dev.join("mapper/control");
    open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        let why = io::Error::from(e);
        io::Error::new(
            why.kind(),
            format!("{}: {} (dm-mod not loaded?)", path.display(), why.to_string().to_lowercase()),
        )
    })
}

/// A read-only device `name` of one `target` over `sectors` with `params`, under `dev` (the
/// running root's /dev, where devtmpfs makes mapper/control and the device's `dm-N`): created,
/// loaded, resumed. Its node. A device left half-made is removed again.
pub fn create(dev: &Path, name: &str, sectors: u64, target: &str, params: &str) -> io::Result<PathBuf> {
    let control = control(dev)?;
    let fd = control.as_fd();
    let spec = target_spec(sectors, target, params)?;
    let created = call(fd, Command::Create, message(name, 0, 0, &[], 0)?, name)?;
    let made = call(fd, Command::Load, message(name, READONLY, 1, &spec, 0)?, name)
        .and_then(|_| call(fd, Command::Resume, message(name, 0, 0, &[], 0)?, name));
    if let Err(e) = made {
        if let Err(gone) = message(name, 0, 0, &[], 0).and_then(|m| call(fd, Command::Remove, m, name)) {
            log::warn!("{gone}");
        }
        return Err(e);
    }
    let (_, minor) = device_of(&created).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(dev.join(format!("dm-{minor}")))
}

/// The status of device `name`'s target (verity: `V` valid so far, `C` a block mismatched).
pub fn status(dev: &Path, name: &str) -> io::Result<String> {
    let control = control(dev)?;
    let answer = call(control.as_fd(), Command::Status, message(name, 0, 0, &[], STATUS_ROOM)?, name)?;
    status_of(&answer).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "device-mapper: no status"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_headers() {
        // The memo's values, printed by a C program against linux/dm-ioctl.h.
        assert_eq!(Command::Create.request(), 0xc138_fd03);
        assert_eq!(Command::Remove.request(), 0xc138_fd04);
        assert_eq!(Command::Resume.request(), 0xc138_fd06);
        assert_eq!(Command::Load.request(), 0xc138_fd09);
        assert_eq!(Command::Status.request(), 0xc138_fd0c);
    }

    #[test]
    fn a_load_message_is_header_spec_and_parameters() {
        let params = "1 /dev/loop0 /dev/loop0 4096 4096 935 936 sha256 ab cd";
        let spec = target_spec(7480, "verity", params).unwrap();
        let m = message("stateless-root", READONLY, 1, &spec, 0).unwrap();
        assert_eq!(m.len(), 312 + 40 + 56, "the parameters and their NUL rounded up to 8");
        assert_eq!(m[..12], [4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(le32(&m, 12), Some(408), "data_size: the whole buffer");
        assert_eq!(le32(&m, 16), Some(312), "data_start");
        assert_eq!(le32(&m, 20), Some(1), "target_count");
        assert_eq!(le32(&m, 28), Some(1), "DM_READONLY_FLAG");
        assert_eq!(&m[48..62], b"stateless-root");
        assert!(m[62..312].iter().all(|b| *b == 0), "name NUL-ended, no uuid");
        let s = &m[312..];
        assert_eq!(s[..8], 0u64.to_le_bytes());
        assert_eq!(s[8..16], 7480u64.to_le_bytes());
        assert_eq!(le32(s, 20), Some(96), "next: 40 + 56");
        assert_eq!(&s[24..30], b"verity");
        assert!(s[30..40].iter().all(|b| *b == 0));
        assert_eq!(&s[40..40 + params.len()], params.as_bytes());
        assert!(s[40 + params.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn names_targets_and_parameters_the_kernel_would_refuse_are_refused_here() {
        for bad in ["", "a/b", ".", "..", "a b", "\u{1b}[2J", &"x".repeat(128)] {
            assert!(message(bad, 0, 0, &[], 0).is_err(), "{bad:?}");
        }
        assert!(message(&"x".repeat(127), 0, 0, &[], 0).is_ok());
        assert!(target_spec(8, "", "x").is_err());
        assert!(target_spec(8, "sixteen-letters!", "x").is_err());
        assert!(target_spec(8, "verity", "a\0b").is_err());
    }

    #[test]
    fn answers_give_the_device_and_the_status() {
        let mut a = message("r", 0, 0, &[], 0).unwrap();
        // 254:3 as huge_encode_dev writes it; and a minor above 255.
        a[40..48].copy_from_slice(&((254u64 << 8) | 3).to_le_bytes());
        assert_eq!(device_of(&a), Some((254, 3)));
        a[40..48].copy_from_slice(&((254u64 << 8) | 0x34 | (0x1200 << 12)).to_le_bytes());
        assert_eq!(device_of(&a), Some((254, 0x1234)));
        assert_eq!(device_of(&a[..44]), None);

        let spec = target_spec(8, "verity", "V").unwrap();
        let mut answer = message("r", 0, 1, &spec, 0).unwrap();
        assert_eq!(status_of(&answer).as_deref(), Some("V"));
        answer[28] = 1; // BUFFER_FULL is bit 8: still fine
        assert_eq!(status_of(&answer).as_deref(), Some("V"));
        answer[29] = 1;
        assert_eq!(status_of(&answer), None, "cut short");
        let mut none = message("r", 0, 0, &[], 64).unwrap();
        assert_eq!(status_of(&none), None, "no target");
        none[20] = 1;
        none[16] = 0xff; // data_start past the end
        assert_eq!(status_of(&none), None);
        assert_eq!(status_of(&[0; 10]), None);
    }
}
