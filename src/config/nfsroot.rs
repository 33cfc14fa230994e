//! Where the NFS root of initramfs mode is: the command line and the DHCP lease, read as dracut
//! and the kernel's nfsroot read them (their test cases: tests/data/nfsroot/).
//!
//! The spec (server, path, options), by `root=`:
//! - `nfs:…` / `nfs4:…` (dracut): `[<server>:]<path>[:<options>]`, or `…<path>,<options>`;
//!   RFC 2224 `nfs://<server>[:<port>]/<path>`; anaconda's `nfs:<options>:<server>:/<path>`.
//!   Bare `nfs` / `nfs4`: the DHCP root-path, read with that prefix.
//! - `<server>:/<path>[:<options>]`, `/<path>` (dracut's legacy forms): as `nfs:…`.
//! - `/dev/nfs`, or none: `nfsroot=` on top of the DHCP root-path, merged as the kernel does:
//!   the root-path first, then `nfsroot=`; its server and path win, the options add up. No path
//!   from either: `/tftpboot/%s` (with no `root=` and neither, there is no NFS root).
//! - `dhcp`: the DHCP root-path. `nfsroot=` with any `root=` but `/dev/nfs` is refused, as
//!   dracut refuses it.
//!
//! A root-path is read in either syntax. The server: the spec's, else a static `ip=` line's
//! server field, else the next-server (siaddr), else the server field of an `ip=` line that
//! asks DHCP, else the DHCP server (option 54). `%s` (the first) in the path is the host name
//! when one is known (`stateless.hostname=`, `ip=`, the kernel's, DHCP; option 12 or the `ip=`
//! field whole), else the client's address: the kernel's utsname nodename, which ipconfig sets
//! so. Servers are IPv4 addresses only: PID 1 does no DNS. The version: as named, `nfs4:` 4.2
//! to 4.0, else negotiated from 4.2 down to 3 as mount.nfs ([`nfsroot::NEGOTIATED`]).

use std::net::Ipv4Addr;

use crate::model::hostname::{self, Hostname, Source};
use crate::model::image::RootSource;
use crate::model::lease::Lease;
use crate::model::nbdroot;
use crate::model::nfsroot::{self, NfsMount};
use crate::model::options::Options;
use crate::model::servers;

/// The kernel's path when none is named: `%s` is the host name or the client's address.
const DEFAULT_PATH: &str = "/tftpboot/%s";

/// A root spec before the defaults: server, path, options, and whether its syntax said NFSv4.
#[derive(Default)]
struct Spec {
    /// None named: empty.
    servers: Vec<Ipv4Addr>,
    path: Option<String>,
    options: Vec<String>,
    v4: bool,
}

/// The NFS root from the options, the lease and the host name chosen (a fallback name is not
/// one: `%s` is then the address), or why there is none.
pub fn resolve(
    options: &Options,
    lease: Option<&Lease>,
    client: Option<Ipv4Addr>,
    hostname: Option<&Hostname>,
) -> Result<NfsMount, String> {
    let (spec, from) = spec(options, lease)?;
    // The line's server field; when the line asks DHCP the reply's next-server replaces it, as
    // the kernel's ic_bootp_recv sets ic_servaddr.
    let line = options.ip.as_ref().and_then(|ip| ip.server.map(|server| (server, ip.is_static())));
    let (server, fallbacks) = match spec.servers.split_first() {
        Some((&server, fallbacks)) => (server, fallbacks.to_vec()),
        None => (
            line.filter(|&(_, fixed)| fixed)
                .map(|(server, _)| server)
                .or(lease.and_then(|l| l.next_server))
                .or(line.map(|(server, _)| server))
                .or(lease.and_then(|l| l.server))
                .ok_or_else(|| {
                    format!("{from}: no server given, and none from ip=, the next-server or the DHCP server")
                })?,
            Vec::new(),
        ),
    };
    let path = spec.path.ok_or_else(|| format!("{from}: no path"))?;
    let node = hostname.and_then(|h| node_name(h, options, lease));
    let path = match (path.contains("%s"), node.or(client.map(|c| c.to_string()))) {
        (false, _) => path,
        (true, Some(node)) => path.replacen("%s", &node, 1),
        (true, None) => return Err(format!("{from}: {path} needs the host name or the client's address for %s")),
    };
    let path = absolute(&path)?;
    let (version, read_only, rest) = settings(spec.options, spec.v4, from)?;
    if !fallbacks.is_empty() && rest.iter().any(|o| o.split('=').next() == Some("addr")) {
        return Err(format!("{from}: addr= with several servers (each is mounted at its own address)"));
    }
    let mut notes = Vec::new();
    if rest.iter().any(|o| o == "lock") && (version == "auto" || !version.starts_with('4')) {
        notes
            .push("lock is nolock on NFSv3 (no statd before the real init; dracut and the kernel force it too)".into());
    }
    Ok(NfsMount { server, fallbacks, path, version, options: rest, read_only, from: from.to_string(), notes })
}

/// `%s`: the chosen host name as its source gave it, the whole of a DHCP option 12 or an `ip=`
/// field as the kernel's nodename (and dracut's `hostname`) has it, else its first label;
/// `None` for the fallback.
fn node_name(hostname: &Hostname, options: &Options, lease: Option<&Lease>) -> Option<String> {
    let given = match hostname.source {
        Source::Fallback => return None,
        Source::Dhcp => lease.and_then(|l| l.hostname.as_deref()),
        Source::Ip => options.ip.as_ref().and_then(|ip| ip.hostname.as_deref()),
        Source::Cmdline => options.hostname.as_deref(),
        Source::Kernel => None,
    };
    let given = given.and_then(|name| hostname::validate(name).ok());
    let whole = given.filter(|name| name.split('.').next() == Some(hostname.short.as_str()));
    Some(whole.unwrap_or_else(|| hostname.short.clone()))
}

/// The NFS client module the root will most likely need, known before the lease: the one the
/// version the command line names, or implies, is tried with first (`nfsv4` unless it names
/// v2 or v3). The root phase loads another when the lease or the server says otherwise.
pub fn module_hint(options: &Options) -> &'static str {
    if nbd_spec(options, None).is_some() {
        return "nbd";
    }
    spec(options, None)
        .and_then(|(spec, from)| settings(spec.options, spec.v4, from))
        .map_or("nfsv4", |(version, ..)| nfsroot::module_for(&version))
}

/// The root spec the options name, with the lease's root-path; and where it came from.
fn spec(options: &Options, lease: Option<&Lease>) -> Result<(Spec, &'static str), String> {
    let root = options.root.as_deref();
    let root_path = lease.and_then(|l| l.root_path.as_deref());
    if let (Some(r), Some(_)) = (root, &options.nfsroot) {
        if r != "/dev/nfs" {
            return Err(format!("root={r} with nfsroot=: nfsroot= is only for root=/dev/nfs or no root= (as dracut)"));
        }
    }
    match root {
        Some(r @ ("nfs" | "nfs4")) => {
            let path =
                root_path.ok_or_else(|| format!("root={r} names no server or path, and DHCP gave no root-path"))?;
            Ok((from_root_path(path, r == "nfs4")?, "dhcp root-path"))
        }
        Some(r) if r.starts_with("nfs:") || r.starts_with("nfs4:") => Ok((dracut(r)?, "root=")),
        // dracut's dmsquash-live over NFS: the image's dir is what gets mounted.
        Some(r) if r.starts_with("live:") => Ok((live(r)?.0, "root=live:")),
        // dracut's legacy forms: `root=<server>:/<path>` and `root=/<path>`.
        Some(r) if (r.starts_with('/') && !r.starts_with("/dev/")) || (starts_with_digit(r) && r.contains(":/")) => {
            Ok((dracut(&format!("nfs:{r}"))?, "root="))
        }
        Some("/dev/nfs") | None => {
            let base = root_path.map(|p| from_root_path(p, false)).transpose()?;
            let (mut spec, from) = match (&options.nfsroot, base) {
                (None, None) if root.is_none() => {
                    return Err("no root= or nfsroot= on the command line, and no root-path from DHCP".into())
                }
                (None, None) => (Spec::default(), "root=/dev/nfs"),
                (None, Some(base)) => (base, "dhcp root-path"),
                (Some(n), base) => {
                    let from = if base.is_some() { "nfsroot= and dhcp root-path" } else { "nfsroot=" };
                    let base = base.unwrap_or_default();
                    let mut options = base.options;
                    options.extend(n.options.iter().cloned());
                    let servers = if n.servers.is_empty() { base.servers } else { n.servers.clone() };
                    let path = n.path.clone().or(base.path);
                    (Spec { servers, path, options, v4: base.v4 }, from)
                }
            };
            spec.path = spec.path.or_else(|| Some(DEFAULT_PATH.into()));
            Ok((spec, from))
        }
        Some("dhcp") => {
            let path = root_path.ok_or("root=dhcp: DHCP gave no root-path")?;
            Ok((from_root_path(path, false)?, "dhcp root-path"))
        }
        Some(other) => Err(format!("root={other} is not an NFS root (root=/dev/nfs, nfs:…, nfs4:…, <server>:/<path>)")),
    }
}

fn starts_with_digit(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
}

/// A DHCP root-path, in dracut's syntax (its `nfs:`, `nfs4:`, `nfs://` prefix, else `v4`'s)
/// or the kernel's (`[<server>:]<path>[,<options>]`, which dracut's reads the same).
fn from_root_path(text: &str, v4: bool) -> Result<Spec, String> {
    let spec = if text.starts_with("nfs:") || text.starts_with("nfs4:") {
        dracut(text)?
    } else {
        dracut(&format!("{}:{text}", if v4 { "nfs4" } else { "nfs" }))?
    };
    Ok(Spec { v4: spec.v4 || v4, ..spec })
}

/// From a spec's options: the NFS version (`v4`: its syntax said NFSv4), read-only, and the
/// options mount(2) gets as they are.
fn settings(options: Vec<String>, v4: bool, from: &str) -> Result<(String, bool, Vec<String>), String> {
    let mut version = if v4 { "4".to_string() } else { "auto".to_string() };
    let mut read_only = true;
    let mut rest = Vec::new();
    let mut minor = None;
    for option in options {
        match option.split_once('=') {
            _ if option == "ro" => read_only = true,
            _ if option == "rw" => read_only = false,
            // mount.nfs's other ways to say the version.
            None if matches!(option.as_str(), "v2" | "v3" | "v4" | "v4.0" | "v4.1" | "v4.2") => {
                version = option.trim_start_matches('v').to_string()
            }
            Some(("minorversion", m)) if matches!(m, "0" | "1" | "2") => minor = Some(m.to_string()),
            Some(("vers" | "nfsvers", v)) if matches!(v, "2" | "3" | "4" | "4.0" | "4.1" | "4.2") => {
                version = v.to_string()
            }
            Some(("vers" | "nfsvers", v)) => return Err(format!("{from}: NFS version {v:?} (2, 3, 4, 4.0, 4.1, 4.2)")),
            _ if valid_option(&option) => rest.push(option),
            _ => return Err(format!("{from}: option {option:?} is not key or key=value in printable ASCII")),
        }
    }
    if let Some(minor) = minor {
        if !version.starts_with('4') && version != "auto" {
            return Err(format!("{from}: minorversion={minor} with NFSv{version}"));
        }
        version = format!("4.{minor}");
    }
    if v4 && !version.starts_with('4') {
        return Err(format!("{from}: nfs4: with vers={version}"));
    }
    Ok((version, read_only, rest))
}

/// One option as mount(2) takes it: printable ASCII, no comma, space or quote.
fn valid_option(option: &str) -> bool {
    !option.is_empty()
        && option.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'\'' | b'\\'))
        && option.split_once('=').is_none_or(|(k, _)| !k.is_empty())
}

/// dracut's `nfs[4]:` forms, as its nfs-lib.sh reads them: RFC 2224
/// `nfs://<server>[:<port>]/<path>`, anaconda's `nfs:<options>:<server>:/<path>`, else
/// `nfs[4]:[<server>:]<path>[:<options>]` where `<path>,<options>` (the kernel's) works too.
fn dracut(spec: &str) -> Result<Spec, String> {
    if let Some(url) = spec.strip_prefix("nfs://") {
        return rfc2224(url);
    }
    let (kind, rest) = spec.split_once(':').ok_or_else(|| format!("{spec:?}: not nfs:[server:]path[:options]"))?;
    let v4 = kind == "nfs4";
    if rest.starts_with('[') || rest.contains(":[") {
        return Err(format!("{spec:?}: an IPv6 server (only IPv4 addresses)"));
    }
    // Anaconda's: options first, a second `:` before the `:/`.
    if let (false, Some((head, path))) = (v4, rest.split_once(":/")) {
        if let Some((options, server)) = head.split_once(':') {
            let path = Some(format!("/{path}"));
            return Ok(Spec { servers: servers_of(server)?, path, options: list(options), v4 });
        }
    }
    let (server, tail) = match rest.split_once(":/") {
        Some((server, tail)) => (server, format!("/{tail}")),
        None => ("", rest.to_string()),
    };
    let (path, colon) = tail.split_once(':').unwrap_or((&tail, ""));
    let (path, comma) = path.split_once(',').unwrap_or((path, ""));
    let mut options = list(comma);
    options.extend(list(colon));
    let path = (!path.is_empty()).then(|| path.to_string());
    Ok(Spec { servers: servers_of(server)?, path, options, v4 })
}

/// dracut's `root=live:nfs://<server>[:<port>]/<dir>/<image>`: the dir as RFC 2224's, and the
/// image's path in it (`/<image>`). Other `live:` sources (a label, a block device, HTTP) are
/// refused: the image comes over NFS here.
fn live(root: &str) -> Result<(Spec, String), String> {
    let url = root.strip_prefix("live:nfs://").ok_or_else(|| {
        format!("root={root}: only live:nfs://<server>/<dir>/<image> (dracut's dmsquash-live over NFS)")
    })?;
    let (dir, file) =
        url.rsplit_once('/').filter(|(dir, _)| !dir.is_empty()).ok_or_else(|| format!("root={root}: no image file"))?;
    if file.is_empty() || file == "." || file == ".." || file.contains(['%', '?', '#', ';']) {
        return Err(format!("root={root}: {file:?} is not an image file name"));
    }
    // A file at the server's root: its dir is `/`.
    let spec = if dir.contains('/') { rfc2224(dir)? } else { rfc2224(&format!("{dir}/"))? };
    Ok((spec, format!("/{file}")))
}

/// `root=live:…`, read, when it is one.
fn live_root(options: &Options) -> Option<Result<(Spec, String), String>> {
    options.root.as_deref().filter(|r| r.starts_with("live:")).map(live)
}

/// The image file the options name on the export (`root=live:nfs://…` first, then
/// `stateless.image=`), when they name one that can be read; [`resolve_root`] says why not.
pub(crate) fn image_file(options: &Options) -> Option<String> {
    match live_root(options) {
        Some(live) => live.ok().map(|(_, file)| file),
        None => options.image.clone(),
    }
}

/// dracut's NBD root, when the options name one: `root=nbd:…`, or a DHCP root-path `nbd:…`
/// with `root=dhcp` or no `root=` (and no `nfsroot=`).
fn nbd_spec<'a>(options: &'a Options, lease: Option<&'a Lease>) -> Option<&'a str> {
    let root_path = lease.and_then(|l| l.root_path.as_deref()).filter(|p| p.starts_with("nbd:"));
    match options.root.as_deref() {
        Some(r) if r.starts_with("nbd:") => Some(r),
        Some("dhcp") | None if options.nfsroot.is_none() => root_path,
        _ => None,
    }
}

/// The root of initramfs mode: the NFS root's tree ([`resolve`]), an image file on it
/// (`root=live:nfs://…`, `stateless.image=`), its export mounted read-only, or an image
/// served by NBD (`root=nbd:…`, a DHCP root-path `nbd:…`).
pub fn resolve_root(
    options: &Options,
    lease: Option<&Lease>,
    client: Option<Ipv4Addr>,
    hostname: Option<&Hostname>,
) -> Result<RootSource, String> {
    if let Some(spec) = nbd_spec(options, lease) {
        if options.image.is_some() {
            return Err("an NBD root and stateless.image= both name the root".into());
        }
        return nbdroot::parse(spec).map(RootSource::Nbd);
    }
    let mount = resolve(options, lease, client, hostname)?;
    let live = live_root(options).transpose()?;
    let file = match (live, &options.image) {
        (Some(_), Some(_)) => return Err("root=live: and stateless.image= both name an image".into()),
        (Some((_, file)), None) => file,
        (None, Some(file)) => file.clone(),
        (None, None) => return Ok(RootSource::Tree(mount)),
    };
    Ok(RootSource::Image { export: NfsMount { read_only: true, ..mount }, file })
}

/// RFC 2224 `nfs://<server>[:<port>]/<path>` (after `nfs://`), as dracut reads it: the path
/// from the server's root, the port as `port=`. What it cannot honour is refused: user info,
/// IPv6, percent-escapes, queries, fragments, `;` parameters.
fn rfc2224(url: &str) -> Result<Spec, String> {
    let (authority, path) = url.split_once('/').ok_or_else(|| format!("nfs://{url}: no path"))?;
    let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
    if authority.contains(['@', '[']) || path.contains(['%', '?', '#', ';']) {
        return Err(format!(
            "nfs://{url}: only nfs://<IPv4 address>[:<port>]/<path> (no user, IPv6, %-escape, query or ; parameter)"
        ));
    }
    let port = match port {
        "" => None,
        p => Some(p.parse::<u16>().map_err(|_| format!("nfs://{url}: port {p:?} is not a number"))?),
    };
    if host.is_empty() {
        return Err(format!("nfs://{url}: no server"));
    }
    let servers = servers::parse(host)?;
    let options = port.map(|p| format!("port={p}")).into_iter().collect();
    Ok(Spec { servers, path: Some(format!("/{path}")), options, v4: false })
}

/// The servers a spec names before its path; none when it names none.
fn servers_of(text: &str) -> Result<Vec<Ipv4Addr>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    servers::parse(text)
}

fn absolute(path: &str) -> Result<String, String> {
    let clean = path.starts_with('/')
        && !path.split('/').any(|c| c == "..")
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b':');
    clean
        .then(|| path.to_string())
        .ok_or_else(|| format!("path {path:?} is not absolute, or has .., a comma or a colon"))
}

fn list(options: &str) -> Vec<String> {
    options.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Cmdline;
    use crate::model::nfsroot::{NEGOTIATED, V4_MINORS};

    fn options(cmdline: &str) -> Options {
        Options::resolve(&Cmdline::parse(cmdline.as_bytes()), None).0
    }

    fn lease(root_path: Option<&str>) -> Lease {
        Lease { server: Some(Ipv4Addr::new(10, 0, 2, 2)), root_path: root_path.map(Into::into), ..Lease::default() }
    }

    const CLIENT: Option<Ipv4Addr> = Some(Ipv4Addr::new(10, 0, 2, 15));

    fn mount(cmdline: &str, root_path: Option<&str>) -> Result<NfsMount, String> {
        resolve(&options(cmdline), Some(&lease(root_path)), CLIENT, None)
    }

    fn attempts(cmdline: &str, root_path: Option<&str>) -> Result<Vec<(&'static str, String)>, String> {
        Ok(mount(cmdline, root_path)?.attempts(CLIENT))
    }

    #[test]
    fn a_named_version_mounts_as_named() {
        let v3 = |data: &str| Ok(vec![("nfs", data.to_string())]);
        assert_eq!(attempts("root=/dev/nfs nfsroot=10.0.2.9:/srv/img,vers=3", None), v3("vers=3,addr=10.0.2.9,nolock"));
        assert_eq!(
            attempts("nfsroot=10.0.2.2:/srv/img,vers=3,tcp,port=2049", None),
            v3("vers=3,addr=10.0.2.2,nolock,tcp,port=2049")
        );
        assert_eq!(
            attempts("nfsroot=10.0.2.9:/img,vers=4.2,tcp", None),
            Ok(vec![("nfs4", "vers=4.2,addr=10.0.2.9,clientaddr=10.0.2.15,tcp".to_string())])
        );
        let v4 = attempts("root=nfs4:10.0.2.9:/img", None).unwrap();
        let expected: Vec<(&str, String)> =
            V4_MINORS.iter().map(|m| ("nfs4", format!("vers={m},addr=10.0.2.9,clientaddr=10.0.2.15"))).collect();
        assert_eq!(v4, expected, "4.x negotiated, newest first");
        assert_eq!(attempts("", Some("nfs4:10.0.2.9:/img:vers=4.1")).unwrap().len(), 1);
        // mount.nfs's other spellings name the version too, never reach the options.
        let v41 = Ok(vec![("nfs4", "vers=4.1,addr=10.0.2.9,clientaddr=10.0.2.15".to_string())]);
        assert_eq!(attempts("nfsroot=10.0.2.9:/img,v4.1", None), v41);
        assert_eq!(attempts("nfsroot=10.0.2.9:/img,vers=4,minorversion=1", None), v41);
        assert_eq!(attempts("nfsroot=10.0.2.9:/img,minorversion=1", None), v41);
        assert!(attempts("nfsroot=10.0.2.9:/img,vers=3,minorversion=1", None).unwrap_err().contains("with NFSv3"));
    }

    #[test]
    fn no_version_named_is_negotiated_from_4_2_down_to_3() {
        let m = mount("root=nfs:10.0.2.9:/srv/img", None).unwrap();
        assert_eq!(m.versions(), NEGOTIATED);
        assert_eq!(m.module(), "nfsv4", "4.2 is tried first");
        assert_eq!(
            m.attempts(None),
            [
                ("nfs4", "vers=4.2,addr=10.0.2.9".to_string()),
                ("nfs4", "vers=4.1,addr=10.0.2.9".to_string()),
                ("nfs4", "vers=4.0,addr=10.0.2.9".to_string()),
                ("nfs", "vers=3,addr=10.0.2.9,nolock".to_string()),
            ]
        );
        assert_eq!(m.to_string(), "10.0.2.9:/srv/img (NFSv4.x or 3, from root=, read-only)");
    }

    #[test]
    fn lock_is_nolock_on_v3_and_the_mount_says_so() {
        let m = mount("root=nfs:10.0.2.9:/srv/img:nfsvers=3,lock", None).unwrap();
        assert_eq!(m.attempts(CLIENT), [("nfs", "vers=3,addr=10.0.2.9,nolock".to_string())]);
        assert!(m.to_string().contains("; lock is nolock on NFSv3 (no statd"), "{m}");
        let m = mount("root=nfs:10.0.2.9:/srv/img:lock", None).unwrap();
        let attempts = m.attempts(None);
        assert_eq!(attempts.first().unwrap().1, "vers=4.2,addr=10.0.2.9,lock", "NFSv4 locks in the protocol");
        assert_eq!(attempts.last().unwrap().1, "vers=3,addr=10.0.2.9,nolock");
        assert_eq!(m.notes.len(), 1);
        let m = mount("root=nfs4:10.0.2.9:/srv/img:lock", None).unwrap();
        assert!(m.notes.is_empty());
        assert!(mount("nfsroot=10.0.2.9:/img,rw", None).unwrap().to_string().ends_with(", read-write)"));
        assert!(mount("nfsroot=10.0.2.9:/img", None).unwrap().read_only, "read-only by default");
    }

    #[test]
    fn the_server_and_percent_s_as_the_peers() {
        let leased = Lease {
            server: Some(Ipv4Addr::new(10, 0, 2, 2)),
            next_server: Some(Ipv4Addr::new(10, 0, 2, 5)),
            root_path: Some("/srv/%s".into()),
            ..Lease::default()
        };
        let named = |source| Hostname { short: "pc7".into(), domain: Some("lab".into()), source };
        let at = |cmdline: &str, host: Option<&Hostname>| {
            resolve(&options(cmdline), Some(&leased), CLIENT, host).map(|m| m.source()).unwrap()
        };
        assert_eq!(at("", None), "10.0.2.5:/srv/10.0.2.15", "the next-server before the DHCP server");
        assert_eq!(at("", Some(&named(Source::Dhcp))), "10.0.2.5:/srv/pc7", "%s: the host name");
        // Option 12 or the ip= field whole, as the kernel's nodename; not a domain from elsewhere.
        let fqdn = Lease { hostname: Some("pc7.lab".into()), ..leased.clone() };
        let m = resolve(&options(""), Some(&fqdn), CLIENT, Some(&named(Source::Dhcp))).unwrap();
        assert_eq!(m.source(), "10.0.2.5:/srv/pc7.lab");
        let line = "ip=10.0.2.15::10.0.2.2:255.255.255.0:pc7.lab:eth0:off";
        assert_eq!(at(line, Some(&named(Source::Ip))), "10.0.2.5:/srv/pc7.lab");
        assert_eq!(at("stateless.hostname=pc7", Some(&named(Source::Cmdline))), "10.0.2.5:/srv/pc7");
        assert_eq!(at("", Some(&named(Source::Fallback))), "10.0.2.5:/srv/10.0.2.15", "not a made-up one");
        assert_eq!(at("ip=10.0.2.15:10.0.2.7::255.255.255.0::eth0:off", None), "10.0.2.7:/srv/10.0.2.15");
        assert_eq!(at("root=nfs:10.0.2.9:/a/%s/%s", None), "10.0.2.9:/a/10.0.2.15/%s", "the first %s, as dracut");
        let no_siaddr = Lease { next_server: None, ..leased.clone() };
        let m = resolve(&options(""), Some(&no_siaddr), CLIENT, None).unwrap();
        assert_eq!(m.server, Ipv4Addr::new(10, 0, 2, 2));
        // The kernel's merge: the root-path first, nfsroot= on top.
        let merged = Lease { root_path: Some("10.0.2.9:/srv/img,tcp".into()), ..leased.clone() };
        let m = resolve(&options("root=/dev/nfs nfsroot=,vers=3"), Some(&merged), CLIENT, None).unwrap();
        assert_eq!((m.source(), m.options, m.version.as_str()), ("10.0.2.9:/srv/img".into(), vec!["tcp".into()], "3"));
        assert_eq!(m.from, "nfsroot= and dhcp root-path");
        let m = resolve(&options("root=/dev/nfs nfsroot=/other"), Some(&merged), CLIENT, None).unwrap();
        assert_eq!(m.source(), "10.0.2.9:/other", "nfsroot='s path, the root-path's server");
    }

    #[test]
    fn hostile_or_missing_specs_are_refused_with_the_reason() {
        for (cmdline, root_path, why) in [
            ("", None, "no root= or nfsroot= on the command line, and no root-path from DHCP"),
            ("root=dhcp", None, "root=dhcp: DHCP gave no root-path"),
            ("root=nfs", None, "root=nfs names no server or path, and DHCP gave no root-path"),
            ("root=dhcp nfsroot=/srv/img", Some("/srv/img"), "nfsroot= is only for root=/dev/nfs"),
            ("root=/dev/sda1", None, "root=/dev/sda1 is not an NFS root"),
            ("root=nfs:server.lab:/img", None, "is not an IPv4 address (no DNS at boot)"),
            ("root=nfs:10.0.2.9:/../etc", None, "has .., a comma or a colon"),
            ("root=nfs:10.0.2.9:/img:vers=9", None, "NFS version \"9\""),
            ("root=nfs4:10.0.2.9:/img:vers=3", None, "nfs4: with vers=3"),
            ("root=nfs:[fd00::1]:/img", None, "an IPv6 server"),
            ("", Some("10.0.2.9:/img,x=\"y\""), "is not key or key=value"),
            ("", Some("10.0.2.9:/img,=y"), "is not key or key=value"),
            ("", Some("relative/path"), "is not absolute"),
            ("", Some("nfs://server.lab/img"), "is not an IPv4 address"),
            ("", Some("nfs://10.0.2.9/a%20b"), "no user, IPv6, %-escape, query"),
            ("", Some("nfs://user@10.0.2.9/img"), "no user, IPv6, %-escape, query"),
            ("", Some("nfs://10.0.2.9:x/img"), "port \"x\" is not a number"),
            ("", Some("nfs://10.0.2.9"), "no path"),
        ] {
            let e = attempts(cmdline, root_path).unwrap_err();
            assert!(e.contains(why), "{cmdline} {root_path:?}: {e}");
        }
        let e = resolve(&options("nfsroot=10.0.2.9:/srv/%s"), None, None, None).unwrap_err();
        assert!(e.contains("needs the host name or the client's address"), "{e}");
        let e = resolve(&options("nfsroot=/srv/img"), None, None, None).unwrap_err();
        assert!(e.contains("no server given"), "{e}");
    }

    #[test]
    fn several_servers_in_each_form() {
        let both = |m: NfsMount| (m.servers(), m.path, m.options);
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let expected = |path: &str, options: &[&str]| {
            (vec![a("10.0.0.1"), a("10.0.0.2")], path.to_string(), options.iter().map(|o| o.to_string()).collect())
        };
        for (cmdline, root_path, path, options) in [
            ("nfsroot=10.0.0.1,10.0.0.2:/srv/root,vers=3,tcp", None, "/srv/root", &["tcp"][..]),
            ("root=nfs:10.0.0.1,10.0.0.2:/srv/root:tcp", None, "/srv/root", &["tcp"]),
            ("root=nfs4:10.0.0.1,10.0.0.2:/srv/root", None, "/srv/root", &[]),
            ("root=10.0.0.1,10.0.0.2:/srv/root", None, "/srv/root", &[]),
            ("root=nfs://10.0.0.1,10.0.0.2:2050/srv/root", None, "/srv/root", &["port=2050"]),
            ("", Some("10.0.0.1,10.0.0.2:/srv/root,tcp"), "/srv/root", &["tcp"]),
            ("root=dhcp", Some("nfs:10.0.0.1,10.0.0.2:/srv/root:tcp"), "/srv/root", &["tcp"]),
            // The root-path's servers, nfsroot='s options on top.
            ("root=/dev/nfs nfsroot=,tcp", Some("10.0.0.1,10.0.0.2:/srv/root"), "/srv/root", &["tcp"]),
        ] {
            assert_eq!(mount(cmdline, root_path).map(both), Ok(expected(path, options)), "{cmdline} {root_path:?}");
        }
        let m = mount("nfsroot=10.0.0.1,10.0.0.2:/srv/root,vers=3", None).unwrap();
        assert_eq!(m.on(a("10.0.0.2")).attempts(CLIENT), [("nfs", "vers=3,addr=10.0.0.2,nolock".to_string())]);
        assert_eq!(
            m.to_string(),
            "10.0.0.1,10.0.0.2:/srv/root (NFSv3, from nfsroot=, servers tried in this order, read-only)"
        );
        let live = resolve_root(&options("root=live:nfs://10.0.0.1,10.0.0.2/srv/images/x.sqfs"), None, CLIENT, None);
        let Ok(RootSource::Image { export, file }) = live else { panic!("{live:?}") };
        assert_eq!((both(export), file.as_str()), (expected("/srv/images", &[]), "/x.sqfs"));
        for (cmdline, why) in [
            ("root=nfs:10.0.0.1,nfs.lab:/srv/root", "server \"nfs.lab\" is not an IPv4 address (no DNS at boot)"),
            ("root=live:nfs://10.0.0.1,/srv/x.sqfs", "server \"\" is not an IPv4 address"),
            ("root=nfs:10.0.0.1,10.0.0.2:/srv/root:addr=10.0.0.1", "addr= with several servers"),
        ] {
            let e = resolve_root(&options(cmdline), None, CLIENT, None).unwrap_err();
            assert!(e.contains(why), "{cmdline}: {e}");
        }
        let many: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}")).collect();
        let e = mount(&format!("root=nfs:{}:/srv/root", many.join(",")), None).unwrap_err();
        assert!(e.contains("17 servers (at most 16)"), "{e}");
    }

    #[test]
    fn nbd_roots_from_the_command_line_or_the_root_path() {
        let nbd = |cmdline: &str, root_path: Option<&str>| match resolve_root(
            &options(cmdline),
            Some(&lease(root_path)),
            CLIENT,
            None,
        ) {
            Ok(RootSource::Nbd(root)) => Ok((root.servers[0].to_string(), root.export)),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e),
        };
        let root = Ok(("10.0.0.1:10809".to_string(), "root".to_string()));
        assert_eq!(nbd("root=nbd:10.0.0.1:root", None), root);
        // The command line's wins over the lease's root-path.
        assert_eq!(nbd("root=nbd:10.0.0.1:root", Some("10.0.0.9:/srv/nfs")), root);
        assert_eq!(nbd("", Some("nbd:10.0.0.1:root")), root);
        assert_eq!(nbd("root=dhcp", Some("nbd:10.0.0.1:root")), root);
        // An NFS root named on the command line is one.
        assert!(nbd("root=nfs:10.0.0.2:/srv", Some("nbd:10.0.0.1:root")).unwrap_err().contains("Tree"));
        assert!(nbd("nfsroot=10.0.0.2:/srv", Some("nbd:10.0.0.1:root")).unwrap_err().contains("Tree"));
        let e = nbd("root=nbd:10.0.0.1:root stateless.image=/x.sqfs", None).unwrap_err();
        assert_eq!(e, "an NBD root and stateless.image= both name the root");
        assert!(nbd("root=nbd:nbd.lab:root", None).unwrap_err().contains("is not an IPv4 address"));
    }

    #[test]
    fn the_module_is_guessed_from_the_command_line() {
        for (cmdline, module) in [
            ("", "nfsv4"),
            ("root=nfs4:10.0.2.9:/img", "nfsv4"),
            ("root=nfs:10.0.2.9:/img:vers=4.2", "nfsv4"),
            ("root=nfs:10.0.2.9:/img", "nfsv4"),
            ("root=nfs:10.0.2.9:/img:vers=3", "nfsv3"),
            ("nfsroot=10.0.2.9:/img,v4.1", "nfsv4"),
            ("nfsroot=10.0.2.9:/img,vers=3,tcp", "nfsv3"),
            ("root=nbd:10.0.2.9:root", "nbd"),
        ] {
            assert_eq!(module_hint(&options(cmdline)), module, "{cmdline}");
        }
    }
}
