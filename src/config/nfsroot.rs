//! Where the NFS root of initramfs mode is: the command line, else the DHCP root-path option.
//!
//! Sources, first found wins:
//! - `root=nfs:[<server>:]<path>[:<options>]` and `root=nfs4:…` (dracut's syntax);
//! - `nfsroot=[<server>:]<path>[,<options>]` (the kernel's, with `root=/dev/nfs` or no `root=`);
//! - the DHCP root-path option (17), in either syntax.
//!
//! The server defaults to the `ip=` line's server field, then the DHCP server; `%s` in the path
//! is the client's address (as in the kernel's nfsroot). Only addresses: PID 1 does no DNS.

use std::net::Ipv4Addr;

use crate::model::lease::Lease;
use crate::model::nfsroot::{self, NfsMount};
use crate::model::options::Options;

/// A root spec before the defaults: server, path, options, and a version its syntax implies.
struct Spec {
    server: Option<Ipv4Addr>,
    path: String,
    options: Vec<String>,
    v4: bool,
}

/// The NFS root from the options and the lease, or why there is none.
pub fn resolve(options: &Options, lease: Option<&Lease>, client: Option<Ipv4Addr>) -> Result<NfsMount, String> {
    let (spec, from) = spec(options, lease)?;
    let server = spec
        .server
        .or(options.ip.as_ref().and_then(|ip| ip.server))
        .or(lease.and_then(|l| l.server))
        .ok_or_else(|| format!("{from}: no server given, and none from ip= or DHCP"))?;
    let path = match (spec.path.contains("%s"), client) {
        (false, _) => spec.path,
        (true, Some(client)) => spec.path.replace("%s", &client.to_string()),
        (true, None) => return Err(format!("{from}: {} needs the client's address for %s", spec.path)),
    };
    let (version, read_only, rest) = settings(spec.options, spec.v4, from)?;
    Ok(NfsMount { server, path, version, options: rest, read_only, from: from.to_string() })
}

/// The NFS client module the root will most likely need, known before the lease: the one its
/// version needs when the command line names the root (`root=nfs4:`, `vers=4…`, `v4…`,
/// `minorversion=`), else `nfsv3`. The root phase loads another when the lease says otherwise.
pub fn module_hint(options: &Options) -> &'static str {
    spec(options, None)
        .and_then(|(spec, from)| settings(spec.options, spec.v4, from))
        .map_or("nfsv3", |(version, ..)| nfsroot::module_for(&version))
}

/// The root spec the options name, or the lease's root-path; and where it came from.
fn spec(options: &Options, lease: Option<&Lease>) -> Result<(Spec, &'static str), String> {
    let root = options.root.as_deref();
    match root {
        Some(r) if r.starts_with("nfs:") || r.starts_with("nfs4:") => Ok((dracut(r)?, "root=")),
        Some("/dev/nfs") | None if options.nfsroot.is_some() => {
            let n = options.nfsroot.as_ref().ok_or("no nfsroot=")?;
            Ok((Spec { server: n.server, path: n.path.clone(), options: n.options.clone(), v4: false }, "nfsroot="))
        }
        Some("/dev/nfs" | "dhcp") | None => {
            let path = lease.and_then(|l| l.root_path.as_deref()).ok_or_else(|| match root {
                None => "no root= or nfsroot= on the command line, and no root-path from DHCP".to_string(),
                Some(r) => format!("root={r}: no nfsroot= on the command line, and no root-path from DHCP"),
            })?;
            let spec =
                if path.starts_with("nfs:") || path.starts_with("nfs4:") { dracut(path)? } else { kernel(path)? };
            Ok((spec, "dhcp root-path"))
        }
        Some(other) => Err(format!("root={other} is not an NFS root (root=/dev/nfs, nfs:…, nfs4:…)")),
    }
}

/// From a spec's options: the NFS version (`v4`: its syntax said NFSv4), read-only, and the
/// options mount(2) gets as they are.
fn settings(options: Vec<String>, v4: bool, from: &str) -> Result<(String, bool, Vec<String>), String> {
    let mut version = if v4 { "4".to_string() } else { "3".to_string() };
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
        if !version.starts_with('4') {
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

/// `nfs[4]:[<server>:]<path>[:<options>]`, options comma-separated.
fn dracut(spec: &str) -> Result<Spec, String> {
    let (kind, rest) = spec.split_once(':').ok_or("no ':'")?;
    let v4 = kind == "nfs4";
    let parts: Vec<&str> = rest.splitn(3, ':').collect();
    let (server, path, options) = match parts.as_slice() {
        [path] => ("", *path, ""),
        [a, b] if a.starts_with('/') => ("", *a, *b),
        [server, path] => (*server, *path, ""),
        [server, path, options] => (*server, *path, *options),
        _ => return Err(format!("{spec:?}: not nfs:[server:]path[:options]")),
    };
    Ok(Spec { server: server_of(server)?, path: absolute(path)?, options: list(options), v4 })
}

/// `[<server>:]<path>[,<options>]`.
fn kernel(spec: &str) -> Result<Spec, String> {
    let (head, options) = spec.split_once(',').unwrap_or((spec, ""));
    let (server, path) = match head.split_once(':') {
        Some((server, path)) if !server.starts_with('/') => (server, path),
        _ => ("", head),
    };
    Ok(Spec { server: server_of(server)?, path: absolute(path)?, options: list(options), v4: false })
}

fn server_of(server: &str) -> Result<Option<Ipv4Addr>, String> {
    if server.is_empty() {
        return Ok(None);
    }
    server.parse().map(Some).map_err(|_| format!("server {server:?} is not an IPv4 address (no DNS at boot)"))
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
    use crate::model::nfsroot::V4_MINORS;

    fn options(cmdline: &str) -> Options {
        Options::resolve(&Cmdline::parse(cmdline.as_bytes()), None).0
    }

    fn lease(root_path: Option<&str>) -> Lease {
        Lease { server: Some(Ipv4Addr::new(10, 0, 2, 2)), root_path: root_path.map(Into::into), ..Lease::default() }
    }

    const CLIENT: Option<Ipv4Addr> = Some(Ipv4Addr::new(10, 0, 2, 15));

    fn attempts(cmdline: &str, root_path: Option<&str>) -> Result<Vec<(&'static str, String)>, String> {
        Ok(resolve(&options(cmdline), Some(&lease(root_path)), CLIENT)?.attempts(CLIENT))
    }

    #[test]
    fn each_syntax_and_the_defaults() {
        let v3 = |data: &str| Ok(vec![("nfs", data.to_string())]);
        assert_eq!(attempts("root=/dev/nfs nfsroot=10.0.2.9:/srv/img", None), v3("vers=3,addr=10.0.2.9,nolock"));
        // The server from DHCP, and %s the client's address.
        assert_eq!(attempts("nfsroot=/srv/%s,tcp,port=2049", None), v3("vers=3,addr=10.0.2.2,nolock,tcp,port=2049"));
        assert_eq!(attempts("root=nfs:10.0.2.9:/srv/img:nfsvers=3,lock", None), v3("vers=3,addr=10.0.2.9,lock"));
        assert_eq!(attempts("root=nfs:/srv/img", None), v3("vers=3,addr=10.0.2.2,nolock"));
        // The root-path option alone, in either syntax.
        assert_eq!(attempts("", Some("10.0.2.9:/srv/img,rsize=65536")), v3("vers=3,addr=10.0.2.9,nolock,rsize=65536"));
        assert_eq!(attempts("root=dhcp", Some("/srv/img")), v3("vers=3,addr=10.0.2.2,nolock"));
        let v4 = attempts("root=nfs4:10.0.2.9:/img", None).unwrap();
        let expected: Vec<(&str, String)> =
            V4_MINORS.iter().map(|m| ("nfs4", format!("vers={m},addr=10.0.2.9,clientaddr=10.0.2.15"))).collect();
        assert_eq!(v4, expected, "4.x negotiated, newest first");
        assert_eq!(attempts("", Some("nfs4:10.0.2.9:/img:vers=4.1")).unwrap().len(), 1);
        // mount.nfs's other spellings name the version too, never reach the options.
        let v41 = Ok(vec![("nfs4", "vers=4.1,addr=10.0.2.9,clientaddr=10.0.2.15".to_string())]);
        assert_eq!(attempts("nfsroot=10.0.2.9:/img,v4.1", None), v41);
        assert_eq!(attempts("nfsroot=10.0.2.9:/img,vers=4,minorversion=1", None), v41);
        assert!(attempts("nfsroot=10.0.2.9:/img,minorversion=1", None).unwrap_err().contains("with NFSv3"));
        let m = resolve(&options("nfsroot=10.0.2.9:/img,rw"), None, CLIENT).unwrap();
        assert!(!m.read_only);
        assert_eq!(m.to_string(), "10.0.2.9:/img (NFSv3, from nfsroot=, read-write)");
        assert!(resolve(&options("nfsroot=10.0.2.9:/img"), None, CLIENT).unwrap().read_only, "read-only by default");
        // The ip= server field comes before the DHCP server.
        let m = resolve(
            &options("ip=10.0.2.15:10.0.2.7::255.255.255.0::eth0:off nfsroot=/img"),
            Some(&lease(None)),
            CLIENT,
        );
        assert_eq!(m.unwrap().server, Ipv4Addr::new(10, 0, 2, 7));
    }

    #[test]
    fn hostile_or_missing_specs_are_refused_with_the_reason() {
        for (cmdline, root_path, why) in [
            ("", None, "no root= or nfsroot= on the command line, and no root-path from DHCP"),
            ("root=/dev/sda1", None, "root=/dev/sda1 is not an NFS root"),
            ("root=nfs:server.lab:/img", None, "is not an IPv4 address (no DNS at boot)"),
            ("root=nfs:10.0.2.9:/../etc", None, "has .., a comma or a colon"),
            ("root=nfs:10.0.2.9:/img:vers=9", None, "NFS version \"9\""),
            ("root=nfs4:10.0.2.9:/img:vers=3", None, "nfs4: with vers=3"),
            ("", Some("10.0.2.9:/img,x=\"y\""), "is not key or key=value"),
            ("", Some("10.0.2.9:/img,=y"), "is not key or key=value"),
            ("", Some("relative/path"), "is not absolute"),
        ] {
            let e = attempts(cmdline, root_path).unwrap_err();
            assert!(e.contains(why), "{cmdline} {root_path:?}: {e}");
        }
        let e = resolve(&options("nfsroot=10.0.2.9:/srv/%s"), None, None).unwrap_err();
        assert!(e.contains("needs the client's address"), "{e}");
        let e = resolve(&options("nfsroot=/srv/img"), None, None).unwrap_err();
        assert!(e.contains("no server given"), "{e}");
    }

    #[test]
    fn the_module_is_guessed_from_the_command_line() {
        for (cmdline, module) in [
            ("", "nfsv3"),
            ("root=nfs4:10.0.2.9:/img", "nfsv4"),
            ("root=nfs:10.0.2.9:/img:vers=4.2", "nfsv4"),
            ("root=nfs:10.0.2.9:/img", "nfsv3"),
            ("nfsroot=10.0.2.9:/img,v4.1", "nfsv4"),
            ("nfsroot=10.0.2.9:/img,tcp", "nfsv3"),
        ] {
            assert_eq!(module_hint(&options(cmdline)), module, "{cmdline}");
        }
    }
}
