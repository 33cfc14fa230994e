//! What `stateless` takes from the kernel command line and `/etc/stateless.conf`, validated:
//! the options every phase plans from. Parsed by [`crate::config`].

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::step::Phase;
use super::writable::DirName;

/// What a failed fatal step does (`stateless.emergency=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emergency {
    /// Go on degraded where possible; when nothing can go on (no init runs), reboot after a delay.
    #[default]
    Continue,
    /// Start a root shell on the console, then go on as `continue` when it exits.
    Shell,
    Reboot,
    Poweroff,
}

impl Emergency {
    /// Every policy, in the order the README's table gives them.
    pub const ALL: [Emergency; 4] = [Emergency::Continue, Emergency::Shell, Emergency::Reboot, Emergency::Poweroff];

    /// The value of `stateless.emergency=` that names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Emergency::Continue => "continue",
            Emergency::Shell => "shell",
            Emergency::Reboot => "reboot",
            Emergency::Poweroff => "poweroff",
        }
    }
}

/// How the per-client writable dirs are made (`stateless.mode=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    /// overlayfs with a tmpfs upper; falls back to `copy` when overlayfs is unavailable or refuses.
    #[default]
    Overlay,
    /// A tmpfs over the dir, filled with a copy of the image's contents.
    Copy,
}

/// `ip=` (or its old name `nfsaddrs=`) in the kernel's format (Documentation/admin-guide/nfs/nfsroot.rst):
/// `<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
/// or just an autoconf method (`dhcp`, `off`, `dhcp,<type>,<id>`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpParam {
    pub client: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub device: Option<String>,
    /// `dhcp`, `bootp`, `rarp`, `both`, `any`, `on`, `off`, `none`, `static` (empty when not given).
    pub autoconf: String,
    /// `<dns0-ip>`, `<dns1-ip>`, in that order, those given.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// `<ntp0-ip>`, when given.
    #[serde(default)]
    pub ntp: Vec<Ipv4Addr>,
    /// `dhcp,<type>,<id>`: the DHCP client identifier (option 61) sent instead of type 1 and the MAC.
    #[serde(default)]
    pub client_id: Option<ClientId>,
}

impl IpParam {
    /// Whether the line gives the address itself (`off`, `none`, `static`, or a client address):
    /// no DHCP gives it.
    pub fn is_static(&self) -> bool {
        matches!(self.autoconf.as_str(), "off" | "none" | "static") || self.client.is_some()
    }

    /// The line's name and time servers that count: a static line's, as the kernel's ipconfig
    /// keeps them (`ic_nameservers`, `ic_ntp_servers`, /proc/net/pnp); none for a line that asks
    /// DHCP, as the kernel drops them when it sends a request (`ic_bootp_init`) for the lease's.
    pub fn servers(&self) -> (&[Ipv4Addr], &[Ipv4Addr]) {
        match self.is_static() {
            true => (&self.dns, &self.ntp),
            false => (&[], &[]),
        }
    }
}

/// A DHCP client identifier as the kernel's `ip=dhcp,<type>,<id>` gives it: the type byte, then
/// the id's bytes as written (ipconfig.c's `ic_proto_name`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientId {
    #[serde(rename = "type")]
    pub kind: u8,
    /// 1 to [`ClientId::MAX_ID`] bytes, unvalidated: shown only escaped.
    pub id: String,
}

impl ClientId {
    /// The longest id the kernel takes (its buffer: 253 bytes with the type and the NUL).
    pub const MAX_ID: usize = 251;

    /// The value of option 61: the type byte, then the id.
    pub fn option(&self) -> Vec<u8> {
        [&[self.kind][..], self.id.as_bytes()].concat()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type {} id \"{}\"", self.kind, super::text::escape(self.id.as_bytes()))
    }
}

/// Where the boot's log and report go (`stateless.log=`), as syslog over UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogServer {
    /// Not given (or `dhcp`): the DHCP lease's log server (option 7), when there is one.
    #[default]
    FromDhcp,
    /// `off`: none, whatever DHCP says.
    Off,
    /// `<address>[:<port>]`, port 514 when not given.
    At(std::net::SocketAddrV4),
}

/// Which swap areas of the local disks to use (`stateless.swap=`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Swap {
    /// `auto`: every swap area found.
    Auto,
    /// Only those with this label.
    Label(String),
}

/// `nfsroot=[<server-ip>[,<server-ip>...]:][<root-dir>][,<nfs-options>]`, or `nfsroot=<name>` (`/tftpboot/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsRoot {
    /// None named: empty.
    pub servers: Vec<Ipv4Addr>,
    /// None: `nfsroot=<server-ip>` or `nfsroot=,<options>`, the path from the root-path or the default.
    pub path: Option<String>,
    pub options: Vec<String>,
}

/// Everything `stateless` takes from the command line and the config file, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// `softlevel=`, comma separated; passed on untouched to OpenRC.
    pub softlevel: Option<Vec<String>>,
    /// `stateless.init=`: tried first; `/sbin/init`, `/etc/init`, `/bin/init`, `/bin/sh` follow.
    pub init: Option<String>,
    /// Dirs to make writable, relative to the root, without `..` (`etc`, `var`, `var/log`).
    /// From `stateless.dirs=`; else `etc,var` unless `softlevel=` is given without `unionfs`.
    pub dirs: Vec<DirName>,
    /// `stateless.layers=`: absolute path of the layer tree inside the image; not given, with an
    /// image root the `diskless/` dir beside the image on its export (under
    /// /run/stateless/export), else `/diskless`.
    pub layers: String,
    /// `stateless.hostname=`: forced hostname, unvalidated here (the hostname rules decide).
    pub hostname: Option<String>,
    /// `stateless.hostname.prefix=`: fallback hostname prefix.
    pub hostname_prefix: String,
    /// `stateless.tmpfs.size=`: tmpfs `size=` option (`512m`, `25%`).
    pub tmpfs_size: Option<String>,
    /// `stateless.break=`: stop for a shell before each of these phases.
    pub break_at: Vec<Phase>,
    pub emergency: Emergency,
    pub mode: OverlayMode,
    pub quiet: bool,
    pub debug: bool,
    pub ip: Option<IpParam>,
    pub nfsroot: Option<NfsRoot>,
    pub root: Option<String>,
    /// `BOOTIF=01-aa-bb-cc-dd-ee-ff` (pxelinux IPAPPEND 2, iPXE): the MAC of the boot NIC.
    pub bootif: Option<[u8; 6]>,
    /// `stateless.dhcp.timeout=`: seconds the network phase may take for carrier and a lease.
    pub dhcp_timeout: u32,
    /// `stateless.dhcp.inform=`: whether an interface with an address but no host name known
    /// asks for one with a DHCPINFORM.
    #[serde(default = "yes")]
    pub dhcp_inform: bool,
    /// `stateless.nfs.timeout=`: bound on mounting the NFS root in initramfs mode, retries included.
    pub nfs_timeout: u32,
    /// `stateless.log=`: the syslog server the boot's log and report go to.
    #[serde(default)]
    pub log: LogServer,
    /// `stateless.swap=`: swap areas of the local disks to use.
    #[serde(default)]
    pub swap: Option<Swap>,
    /// `stateless.scratch=`: the label of the local filesystem for the writable dirs' upper
    /// dirs and /tmp.
    #[serde(default)]
    pub scratch: Option<String>,
    /// `stateless.image=`: an image file (squashfs or EROFS) on the NFS root's export, its path
    /// there (absolute, normalised), mounted as the root instead of the export's tree.
    #[serde(default)]
    pub image: Option<String>,
    /// `stateless.image.ram` (dracut's `rd.live.ram=1`): the image file copied into memory
    /// before it is mounted, and its export unmounted once the layers are in: the client no
    /// longer needs the server.
    #[serde(default)]
    pub image_ram: bool,
    /// `roothash=` (systemd's name): the root hash of the dm-verity tree an image root
    /// carries, 64 lower-case hex digits; the image is mounted through dm-verity, checked
    /// against it block by block. A value that is not one is kept as given (escaped): the
    /// root step refuses it, as it refuses a tree root when a root hash is given.
    #[serde(default)]
    pub root_hash: Option<String>,
    /// Module loading: `stateless.modules=`, the blacklists and `module.param=value` words.
    pub modules: ModuleOptions,
}

/// A module name as the kernel takes it: 1 to 55 bytes (`MODULE_NAME_LEN`, 56, less the NUL)
/// of letters, digits, `_` and `-`. Module names from the command line and from the module
/// index are held to it alike.
pub fn valid_module_name(name: &str) -> bool {
    (1..=55).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A label `stateless.swap=` and `stateless.scratch=` can name: 1 to 64 letters, digits, `.`,
/// `_`, `-` (what a disk's label is compared with, byte for byte).
pub fn valid_disk_label(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// What the command line says about kernel modules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleOptions {
    /// `stateless.modules=none`: no coldplug (modules named elsewhere still load).
    pub no_coldplug: bool,
    /// `stateless.modules=a,b`: loaded besides what coldplug finds.
    pub extra: Vec<String>,
    /// `modprobe.blacklist=` and `stateless.modules.blacklist=` (comma-separated, as given).
    pub blacklist: Vec<String>,
    /// Every other `module.param[=value]` word, for the modules loaded later.
    pub params: Vec<(String, Option<String>)>,
}

fn yes() -> bool {
    true
}

/// The default `stateless.nfs.timeout=`: a server that reboots with its clients needs a minute.
pub const NFS_TIMEOUT_SECS: u32 = 90;

/// The default `stateless.dhcp.timeout=`: a switch port running classic spanning tree forwards
/// only after listening and learning (2 × 15 s), and a lease takes a few more seconds.
pub const DHCP_TIMEOUT_SECS: u32 = 60;

/// Where an option came from, for diagnostics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Cmdline,
    Config { line: usize },
}

/// A problem with one option: reported in the log and the report, never fatal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub origin: Origin,
    /// The key, and the message naming it and its value: escaped ([`super::text::escape`]).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Cmdline => write!(f, "kernel command line: {}", self.message),
            Origin::Config { line } => {
                write!(f, "/etc/stateless.conf line {line}: {}", self.message)
            }
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            softlevel: None,
            init: None,
            dirs: vec![DirName::ETC, DirName::VAR],
            layers: "/diskless".into(),
            hostname: None,
            hostname_prefix: "Node".into(),
            tmpfs_size: None,
            break_at: Vec::new(),
            emergency: Emergency::default(),
            mode: OverlayMode::default(),
            quiet: false,
            debug: false,
            ip: None,
            nfsroot: None,
            root: None,
            bootif: None,
            dhcp_timeout: DHCP_TIMEOUT_SECS,
            dhcp_inform: true,
            nfs_timeout: NFS_TIMEOUT_SECS,
            log: LogServer::FromDhcp,
            swap: None,
            scratch: None,
            image: None,
            image_ram: false,
            root_hash: None,
            modules: ModuleOptions::default(),
        }
    }
}
