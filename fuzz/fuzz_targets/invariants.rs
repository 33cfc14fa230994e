//! What each fuzz target checks, one function per target: any bytes in, a panic when an
//! invariant breaks. The targets call these (`fuzz_target!(|data| invariants::NAME(data))`), and
//! `tests/fuzz_corpus.rs` replays the committed corpus through them under plain `cargo test`.
#![allow(dead_code)] // each target uses one of them

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use stateless::config::{nfsroot, Cmdline};
use stateless::fs::layers::{self, LayerKind};
use stateless::fs::root::relative;
use stateless::fs::tree::{self, Kind, Verdict};
use stateless::kmod::config::Config;
use stateless::kmod::index::{normalize, Index};
use stateless::kmod::resolve::Rules;
use stateless::model::hostname::{self, Candidate, Source};
use stateless::model::ipv4::Ipv4Net;
use stateless::model::manifest::Manifest;
use stateless::model::options::{
    valid_disk_label, valid_module_name, ClientId, Emergency, LogServer, Options, Origin, OverlayMode, Swap,
};
use stateless::model::sign;
use stateless::model::step::Phase;
use stateless::model::verity::{self, VerityParams};
use stateless::model::writable::DirName;
use stateless::net::dhcp::codec::decode;
use stateless::net::nbd::{handshake, parse_server, NbdError, MAX_REPLY};
use stateless::net::netlink::{merge, parse_addrs, parse_links};

/// The `stateless.*` keys the README documents; any other is reported.
const KEYS: [&str; 17] = [
    "stateless.init",
    "stateless.dirs",
    "stateless.layers",
    "stateless.hostname",
    "stateless.hostname.prefix",
    "stateless.tmpfs.size",
    "stateless.mode",
    "stateless.break",
    "stateless.modules",
    "stateless.modules.blacklist",
    "stateless.nfs.timeout",
    "stateless.dhcp.timeout",
    "stateless.dhcp.inform",
    "stateless.emergency",
    "stateless.log",
    "stateless.swap",
    "stateless.scratch",
];

/// The kernel's `isspace()` (lib/ctype.c): ASCII blanks, and 0xA0 (Latin-1's no-break space).
fn kernel_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r' | 0xa0)
}

/// `cmdline`: any bytes as /proc/cmdline, through the tokenizer and the resolver the boot uses.
pub fn cmdline(data: &[u8]) {
    let cmdline = Cmdline::parse(data);
    assert_eq!(Cmdline::parse(data), cmdline, "deterministic");
    // Without quotes, no word keeps a byte the kernel splits words on.
    if !data.contains(&b'"') {
        let words = cmdline.params.iter().flat_map(|p| [Some(&p.key), p.value.as_ref()]).flatten();
        assert!(words.chain(&cmdline.init_args).all(|w| !w.bytes().any(kernel_space)), "{cmdline:?}");
    }
    // The tokenizer's own words, when they hold no blank or quote, read back the same.
    let plain = |s: &str| !s.is_empty() && !s.bytes().any(|b| kernel_space(b) || b == b'"');
    let params = &cmdline.params;
    if params
        .iter()
        .all(|p| plain(&p.key) && p.value.as_deref().is_none_or(|v| v.is_empty() || plain(v)) && p.key != "--")
    {
        let words: Vec<String> = params
            .iter()
            .map(|p| p.value.as_ref().map_or_else(|| p.key.clone(), |v| format!("{}={v}", p.key)))
            .collect();
        assert_eq!(&Cmdline::parse(words.join(" ").as_bytes()).params, params);
    }
    let (options, diagnostics) = Options::resolve(&cmdline, None);
    options_are_valid(&options);
    let reported = |key: &str| diagnostics.iter().any(|d| d.key == key);
    for p in cmdline.params.iter().filter(|p| p.key.starts_with("stateless.") && !KEYS.contains(&p.key.as_str())) {
        assert!(reported(&stateless::model::text::escape(p.key.as_bytes())), "unknown key {:?} not reported", p.key);
    }
    for p in cmdline.invalid.iter().filter(|p| p.key.starts_with("stateless.")) {
        assert!(reported(&p.key), "word {:?} that is not UTF-8 not reported", p.key);
    }
    reads_back(&options);
}

/// `stateless_conf`: any bytes as /etc/stateless.conf, under an empty command line and under one
/// that sets two keys (the command line wins).
pub fn stateless_conf(data: &[u8]) {
    let empty = Cmdline::default();
    let (options, diagnostics) = Options::resolve(&empty, Some(data));
    assert_eq!(Options::resolve(&empty, Some(data)), (options.clone(), diagnostics.clone()), "deterministic");
    options_are_valid(&options);
    let lines = data.split(|&b| b == b'\n').count();
    for d in &diagnostics {
        assert!(matches!(d.origin, Origin::Config { line } if (1..=lines).contains(&line)), "{d:?}");
    }
    // Only `stateless.*` keys count in the file.
    let o = &options;
    assert!(o.ip.is_none() && o.nfsroot.is_none() && o.root.is_none() && o.softlevel.is_none() && o.bootif.is_none());
    assert!(o.modules.params.is_empty() && !o.quiet && !o.debug);
    let (over, _) = Options::resolve(&Cmdline::parse(b"stateless.mode=copy stateless.layers=/x"), Some(data));
    assert_eq!((over.mode, over.layers.as_str()), (OverlayMode::Copy, "/x"));
    reads_back(&options);
}

/// What the resolver keeps holds to the rules the README gives for each key.
fn options_are_valid(o: &Options) {
    let below = |p: &str| p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if let Some(init) = &o.init {
        assert!(init.starts_with('/') && !init.contains('\0') && !init.split('/').any(|c| c == ".."), "{init:?}");
    }
    assert!(!o.layers.contains('\0') && (o.layers == "/" || o.layers.strip_prefix('/').is_some_and(below)), "{o:?}");
    for (i, dir) in o.dirs.iter().map(DirName::as_str).enumerate() {
        assert!(below(dir) && !dir.contains('\0'), "{dir:?}");
        assert!(!matches!(dir.split('/').next(), Some("proc" | "sys" | "dev" | "run")), "{dir:?}");
        for other in o.dirs.iter().skip(i + 1).map(DirName::as_str) {
            assert!(!Path::new(dir).starts_with(other) && !Path::new(other).starts_with(dir), "{:?}", o.dirs);
        }
    }
    let prefix = &o.hostname_prefix;
    assert!((1..=32).contains(&prefix.len()) && !prefix.starts_with('-'), "{prefix:?}");
    assert!(prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{prefix:?}");
    if let Some(size) = &o.tmpfs_size {
        let digits = size.strip_suffix(['k', 'm', 'g', '%']).unwrap_or(size);
        assert!(!digits.is_empty() && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()), "{size}");
    }
    assert!((1..=3600).contains(&o.dhcp_timeout) && (1..=3600).contains(&o.nfs_timeout));
    assert!(!o.break_at.contains(&Phase::EarlyMounts));
    assert!(o.break_at.iter().collect::<BTreeSet<_>>().len() == o.break_at.len(), "{:?}", o.break_at);
    assert!(o.modules.extra.iter().chain(&o.modules.blacklist).all(|m| valid_module_name(m)), "{:?}", o.modules);
    for (key, _) in &o.modules.params {
        assert!(key.split_once('.').is_some_and(|(m, p)| !m.is_empty() && !p.is_empty()), "{key:?}");
    }
    if let Some(nfsroot) = &o.nfsroot {
        let path = nfsroot.path.as_deref();
        assert!(
            path.is_none_or(|p| p.starts_with('/')) && nfsroot.options.iter().all(|x| !x.is_empty()),
            "{nfsroot:?}"
        );
    }
    assert!(o.root.as_deref() != Some("") && o.hostname.as_deref() != Some(""));
    assert!(o.softlevel.iter().flatten().all(|l| !l.is_empty()));
    if let Some(Swap::Label(label)) = &o.swap {
        assert!(valid_disk_label(label) && label != "auto", "{label:?}");
    }
    assert!(o.scratch.as_deref().is_none_or(valid_disk_label), "{:?}", o.scratch);
    if let Some(ip) = &o.ip {
        assert!(ip.dns.len() <= 2 && ip.ntp.len() <= 1, "{ip:?}");
        for server in ip.dns.iter().chain(&ip.ntp) {
            let [first, ..] = server.octets();
            assert!(first != 0 && first < 224 && !server.is_broadcast(), "{ip:?}");
        }
        if let Some(id) = &ip.client_id {
            assert!((1..=ClientId::MAX_ID).contains(&id.id.len()) && ip.autoconf == "dhcp", "{ip:?}");
        }
    }
    if let LogServer::At(server) = o.log {
        let [first, ..] = server.ip().octets();
        assert!(server.port() != 0 && first != 0 && first < 224 && !server.ip().is_loopback(), "{server}");
    }
}

/// Every `stateless.*` value the resolver kept reads back the same from /etc/stateless.conf,
/// without a diagnostic (values a config line cannot hold are left out: a newline, blanks or
/// matching quotes around it).
fn reads_back(o: &Options) {
    let fits = |v: &str| {
        !v.contains('\n')
            && v.trim() == v
            && ['"', '\''].iter().all(|&q| v.len() < 2 || !v.starts_with(q) || !v.ends_with(q))
    };
    let join = |items: &[String]| items.join(",");
    // A dir may start or end in a blank (`/ var /` is ` var `), which the list's trimming would
    // take: slashes around each keep it.
    let dirs = o.dirs.iter().map(|d| format!("/{d}/")).collect::<Vec<_>>().join(",");
    let phases: Vec<String> = o.break_at.iter().map(Phase::to_string).collect();
    let emergency = match o.emergency {
        Emergency::Continue => "continue",
        Emergency::Shell => "shell",
        Emergency::Reboot => "reboot",
        Emergency::Poweroff => "poweroff",
    };
    let mode = if o.mode == OverlayMode::Copy { "copy" } else { "overlay" };
    let log = match o.log {
        LogServer::FromDhcp => "dhcp".to_owned(),
        LogServer::Off => "off".to_owned(),
        LogServer::At(server) => server.to_string(),
    };
    let mut lines = vec![
        ("stateless.dirs", dirs.clone()),
        ("stateless.layers", o.layers.clone()),
        ("stateless.hostname.prefix", o.hostname_prefix.clone()),
        ("stateless.emergency", emergency.to_owned()),
        ("stateless.mode", mode.to_owned()),
        ("stateless.dhcp.timeout", o.dhcp_timeout.to_string()),
        ("stateless.dhcp.inform", if o.dhcp_inform { "yes" } else { "no" }.to_owned()),
        ("stateless.nfs.timeout", o.nfs_timeout.to_string()),
        ("stateless.log", log),
        ("stateless.modules.blacklist", join(&o.modules.blacklist)),
    ];
    lines.extend(o.init.clone().map(|v| ("stateless.init", v)));
    lines.extend(o.hostname.clone().map(|v| ("stateless.hostname", v)));
    lines.extend(o.tmpfs_size.clone().map(|v| ("stateless.tmpfs.size", v)));
    lines.extend(o.scratch.clone().map(|v| ("stateless.scratch", v)));
    lines.extend(o.swap.clone().map(|v| match v {
        Swap::Auto => ("stateless.swap", "auto".to_owned()),
        Swap::Label(label) => ("stateless.swap", label),
    }));
    lines.extend((!phases.is_empty()).then(|| ("stateless.break", phases.join(","))));
    lines.extend(o.modules.no_coldplug.then(|| ("stateless.modules", "none".to_owned())));
    // A trailing comma keeps a list that is just `none` a list.
    lines.extend((!o.modules.extra.is_empty()).then(|| ("stateless.modules", join(&o.modules.extra) + ",")));
    let conf: String = lines.iter().filter(|(_, v)| fits(v)).map(|(k, v)| format!("{k}={v}\n")).collect();
    let (again, diagnostics) = Options::resolve(&Cmdline::default(), Some(conf.as_bytes()));
    assert_eq!(diagnostics, [], "{conf:?}");
    let kept = |v: &Option<String>| v.as_deref().is_none_or(fits);
    assert!(!fits(&dirs) || again.dirs == o.dirs, "{conf:?}");
    assert!(!fits(&o.layers) || again.layers == o.layers, "{conf:?}");
    assert!(!kept(&o.init) || again.init == o.init, "{conf:?}");
    assert!(!kept(&o.hostname) || again.hostname == o.hostname, "{conf:?}");
    assert!(!kept(&o.tmpfs_size) || again.tmpfs_size == o.tmpfs_size, "{conf:?}");
    let same = (&again.hostname_prefix, again.emergency, again.mode, again.dhcp_timeout, again.nfs_timeout);
    assert_eq!(same, (&o.hostname_prefix, o.emergency, o.mode, o.dhcp_timeout, o.nfs_timeout));
    assert_eq!(again.break_at, o.break_at);
    assert_eq!(again.dhcp_inform, o.dhcp_inform);
    assert_eq!(again.log, o.log);
    assert_eq!((&again.swap, &again.scratch), (&o.swap, &o.scratch));
    assert!(!fits(&join(&o.modules.extra)) || again.modules.extra == o.modules.extra, "{conf:?}");
    assert!(!fits(&join(&o.modules.blacklist)) || again.modules.blacklist == o.modules.blacklist, "{conf:?}");
    assert_eq!(again.modules.no_coldplug, o.modules.no_coldplug);
}

/// `dhcp_reply`: any bytes into the DHCP reply parser. Every string it lets through must pass
/// its rule.
pub fn dhcp_reply(data: &[u8]) {
    let Ok(reply) = decode(data) else { return };
    let lease = reply.lease;
    for name in lease.hostname.iter().chain(&lease.domain) {
        assert_eq!(hostname::validate(name).as_ref(), Ok(name));
    }
    for word in lease.root_path.iter().chain(&lease.tftp_server).chain(&lease.bootfile) {
        assert!(!word.is_empty() && word.bytes().all(|b| b.is_ascii_graphic()), "{word:?}");
    }
    assert!(lease.root_path.iter().all(|p| !p.split(['/', ':', ',']).any(|c| c == "..")));
    for line in lease.rejected.iter().chain(&reply.message) {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    // The NFS root the lease gives (initramfs mode), alone and under the command line's forms.
    let host = lease.hostname.clone().map(|short| hostname::Hostname { short, domain: None, source: Source::Dhcp });
    let client = lease.address.map(|a| a.addr);
    for cmdline in ["", "root=dhcp", "root=nfs4", "root=/dev/nfs nfsroot=,vers=3", "nfsroot=/srv/%s"] {
        let (options, _) = Options::resolve(&Cmdline::parse(cmdline.as_bytes()), None);
        let Ok(mount) = nfsroot::resolve(&options, Some(&lease), client, host.as_ref()) else { continue };
        let path = &mount.path;
        assert!(path.starts_with('/') && !path.split('/').any(|c| c == "..") && !path.contains([',', ':']), "{path:?}");
        let attempts = mount.attempts(client);
        assert!(!attempts.is_empty(), "{mount:?}");
        for (fstype, data) in attempts {
            assert!(fstype == "nfs" || fstype == "nfs4");
            assert!(data.starts_with("vers=") && data.bytes().all(|b| b.is_ascii_graphic() && b != b'"'), "{data:?}");
        }
    }
}

/// `kmod_index`: any bytes as the module index files (split on the first four 0xFF bytes into
/// modules.dep, modules.alias, modules.softdep, modules.builtin and modules.builtin.modinfo),
/// then every name in them resolved and expanded. No module file may lie outside the module
/// dir, no probe list names a module twice.
pub fn kmod_index(data: &[u8]) {
    let mut parts = data.splitn(5, |&b| b == 0xff);
    let mut next = || parts.next().unwrap_or_default();
    let (dep, alias, softdep, builtin, modinfo) = (next(), next(), next(), next(), next());
    let index = Index::parse(dep, alias, softdep, builtin, modinfo);
    for module in index.modules.values() {
        assert!(!module.path.starts_with('/') && !module.path.split('/').any(|c| c == ".." || c.is_empty()));
    }
    let config = Config::default();
    let rules = Rules { index: &index, config: &config };
    let aliases = index.aliases.iter().map(|(p, _)| String::from_utf8_lossy(p).into_owned());
    let names: Vec<String> = index.modules.keys().cloned().chain(aliases).take(64).collect();
    for name in &names {
        let mut order = Vec::new();
        for found in rules.lookup(name) {
            rules.probe_list(&found.module, &mut order);
        }
        let mut seen = BTreeSet::new();
        assert!(order.iter().all(|s| seen.insert(s.module.clone())), "a module twice in a probe list");
    }
}

/// `modprobe_d`: any bytes as a modprobe.d file, then (after the first 0xFF) as the command line
/// whose blacklists and `module.param=value` words join it. Lines are independent; every name
/// kept is a valid, normalised module name; every parameter reaches the module as one word.
pub fn modprobe_d(data: &[u8]) {
    let mut parts = data.splitn(2, |&b| b == 0xff);
    let (file, cmdline) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let name = "/etc/modprobe.d/fuzz.conf";
    let mut config = Config::default();
    config.add_file(name, file);
    let mut by_line = Config::default();
    for line in file.split(|&b| b == b'\n') {
        by_line.add_file(name, line);
    }
    let parsed = |c: &Config| (c.blacklist.clone(), c.options.clone(), c.aliases.clone(), c.problems.len());
    assert_eq!(parsed(&by_line), parsed(&config));
    assert_eq!((&by_line.softdeps_before, &by_line.softdeps_after), (&config.softdeps_before, &config.softdeps_after));
    let from_file = config.options.clone();
    let (options, _) = Options::resolve(&Cmdline::parse(cmdline), None);
    config.add_cmdline(&options.modules);
    let module_name = |m: &str| valid_module_name(m) && normalize(m) == m;
    assert!(config.blacklist.iter().all(|m| module_name(m)), "{:?}", config.blacklist);
    assert!(config.aliases.iter().all(|(_, m)| module_name(m)), "{:?}", config.aliases);
    assert!(config.softdeps_before.iter().chain(&config.softdeps_after).all(|(m, _)| normalize(m) == *m));
    for (module, params) in &config.options {
        assert!(module_name(module), "{module:?}");
        assert_eq!(config.params(module), params.join(" "));
        // The file's words are passed on as they are (as modprobe does); each parameter the
        // command line adds reaches the module as one word of the kernel's parse_args(): a
        // blank only inside `name="..."`.
        let (file, cmdline) = params.split_at(from_file.get(module).map_or(0, Vec::len));
        assert!(file.iter().all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_graphic())), "{file:?}");
        for param in cmdline {
            let quoted = param.split_once("=\"").and_then(|(n, v)| Some((n, v.strip_suffix('"')?)));
            let one_word = match quoted {
                Some((name, value)) => !name.bytes().any(|b| kernel_space(b) || b == b'"') && !value.contains('"'),
                None => !param.is_empty() && !param.bytes().any(|b| kernel_space(b) || b == b'"'),
            };
            assert!(one_word && !param.bytes().any(|b| b.is_ascii_control()), "{module}: {param:?}");
        }
    }
}

/// The NLMSG_DONE message that ends a dump: length 20, type 3, no flags, seq, pid or error.
fn done() -> Vec<u8> {
    let mut msg = Vec::new();
    msg.extend(20u32.to_ne_bytes());
    msg.extend(3u16.to_ne_bytes());
    msg.extend([0; 14]);
    msg
}

/// `netlink_dump`: any bytes as an RTM_GETLINK and an RTM_GETADDR dump reply, then merged as
/// the boot merges them. Links have an index and a kernel-sized name, addresses a valid prefix;
/// nothing after NLMSG_DONE counts; the merge loses and invents nothing.
pub fn netlink_dump(data: &[u8]) {
    let (links, addrs) = (parse_links(data), parse_addrs(data));
    assert_eq!((parse_links(data), parse_addrs(data)), (links.clone(), addrs.clone()), "deterministic");
    let mut ended = data.to_vec();
    ended.resize(data.len().next_multiple_of(4), 0);
    ended.extend(done());
    ended.extend_from_slice(data);
    if links.is_ok() {
        assert_eq!(parse_links(&ended), links, "data after NLMSG_DONE counted");
    }
    if addrs.is_ok() {
        assert_eq!(parse_addrs(&ended), addrs, "data after NLMSG_DONE counted");
    }
    let (Ok(links), Ok(addrs)) = (links, addrs) else { return };
    for link in &links {
        assert!(link.index > 0 && !link.name.is_empty() && !link.name.contains('\0'), "{link:?}");
        assert!(link.name.chars().count() <= 15 && link.addrs.is_empty(), "{link:?}");
    }
    assert!(addrs.iter().all(|(index, net)| *index > 0 && net.prefix <= 32), "{addrs:?}");
    let merged = merge(links.clone(), &addrs);
    let indexes: Vec<u32> = merged.iter().map(|l| l.index).collect();
    assert!(indexes.iter().zip(indexes.iter().skip(1)).all(|(a, b)| a < b), "{indexes:?}");
    assert_eq!(indexes.iter().collect::<BTreeSet<_>>(), links.iter().map(|l| &l.index).collect());
    for link in &merged {
        assert!(link.addrs.iter().all(|net| addrs.contains(&(link.index, *net))), "{link:?}");
        let twice = link.addrs.iter().enumerate().any(|(i, net)| link.addrs.iter().skip(i + 1).any(|n| n == net));
        assert!(!twice, "{link:?}");
    }
    for (index, net) in &addrs {
        assert!(merged.iter().filter(|l| l.index == *index).all(|l| l.addrs.contains(net)), "{index} {net} lost");
    }
}

/// `layer_path`: 4 bytes of address and 1 of prefix length (over 32: no address), then lines:
/// a host name (as DHCP would offer it), `stateless.layers=`, `stateless.dirs=`, and a path in a
/// layer. The layer names are single relative paths of plain components, distinct, keyed as
/// documented; paths reduced by `relative` and `split_components` stay inside their tree; the
/// copy verdict lets through only what is inside a writable dir.
pub fn layer_path(data: &[u8]) {
    let Some(([a, b, c, d, prefix], rest)) = data.split_first_chunk::<5>() else { return };
    let address = Ipv4Net::new(Ipv4Addr::new(*a, *b, *c, *d), *prefix);
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.splitn(4, '\n');
    let mut next = || fields.next().unwrap_or_default();
    let (name, layer_root, dirs, path) = (next(), next(), next(), next());

    let candidate = Candidate { source: Source::Dhcp, name: name.to_owned() };
    let hostname = hostname::choose(&[candidate], "Node", address, None).hostname;
    assert!(address.is_none() || hostname.is_some(), "the fallback name always passes");
    let names = layers::candidates(hostname.as_ref(), address);
    assert_eq!(layers::candidates(hostname.as_ref(), address), names, "deterministic");
    let distinct: BTreeSet<&String> = names.iter().map(|(_, n)| n).collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    for (kind, layer) in &names {
        let parts: Vec<&str> = layer.split('/').collect();
        assert!(layer.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)), "{layer:?}");
        assert!(parts.iter().all(|p| !p.is_empty() && *p != "." && *p != ".."), "{layer:?}");
        assert!(Path::new(layer).components().all(|c| matches!(c, Component::Normal(_))), "{layer:?}");
        let (top, key) = (parts.first().copied(), parts.get(1).copied());
        match kind {
            LayerKind::Base => assert_eq!(parts, ["base"]),
            LayerKind::Network => assert!(top == Some("networks") && parts.len() == 2, "{layer:?}"),
            LayerKind::Lab => {
                let short = hostname.as_ref().map(|h| h.short.as_str()).unwrap_or_default();
                assert!(top == Some("labs") && parts.len() == 2 && key.is_some_and(|k| short.starts_with(k)));
            }
            // A host's own name has no dot, an address three: the two never meet.
            LayerKind::Host => assert!(top == Some("hosts") && parts.len() == 2 && !layer.contains('.')),
            LayerKind::Ip => {
                assert!(top == Some("hosts") && parts.len() == 2, "{layer:?}");
                assert_eq!(key.and_then(|k| k.parse::<Ipv4Addr>().ok()), address.map(|a| a.addr));
            }
        }
    }

    let conf = format!("stateless.layers={layer_root}\nstateless.dirs={dirs}\n");
    let (options, _) = Options::resolve(&Cmdline::default(), Some(conf.as_bytes()));
    let root = relative(&options.layers);
    assert_eq!(root, Path::new(options.layers.trim_start_matches('/')), "{:?}", options.layers);

    let inside = relative(path);
    assert!(inside.components().all(|c| matches!(c, Component::Normal(_))), "{inside:?}");
    assert_eq!(relative(&inside), inside, "idempotent");
    match tree::split_components(Path::new(path)) {
        Ok(names) => assert_eq!(names.iter().collect::<PathBuf>(), inside),
        Err(_) => assert!(Path::new(path).components().any(|c| matches!(c, Component::ParentDir | Component::RootDir))),
    }
    let dirs: Vec<&Path> = options.dirs.iter().map(DirName::as_path).collect();
    let verdict = |kind| layers::verdict(&options.dirs, &inside, kind);
    for kind in [Kind::File, Kind::Dir, Kind::Symlink] {
        match verdict(kind) {
            Verdict::Copy => assert!(dirs.iter().any(|d| inside.starts_with(d) && inside != *d)),
            Verdict::Descend => assert!(kind == Kind::Dir && dirs.iter().any(|d| d.starts_with(&inside))),
            Verdict::Refuse => assert!(!dirs
                .iter()
                .any(|d| (inside.starts_with(d) && inside != *d) || (kind == Kind::Dir && d.starts_with(&inside)))),
        }
    }
    // The writable dirs never nest, so whether an entry is copied does not hang on its kind.
    assert_eq!(verdict(Kind::File) == Verdict::Copy, verdict(Kind::Dir) == Verdict::Copy);
}

/// `nbd_handshake`: any bytes as a server's side of the NBD handshake. The two drivers agree (the
/// state machine over the bytes, and over a stream); a handshake that ends says where, and
/// nothing after that point nor anything cut before it changes it; an error other than the end
/// of the bytes stays when more follow; the block size is one the kernel takes.
pub fn nbd_handshake(data: &[u8]) {
    struct Stream<'a>(&'a [u8], usize);
    impl std::io::Read for Stream<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    impl std::io::Write for Stream<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let name = "stateless-root";
    let parsed = parse_server(data, name);
    let mut stream = Stream(data, 0);
    let driven = handshake(&mut stream, name);
    assert_eq!(driven, parsed.clone().map(|(export, _)| export), "the two drivers disagree");
    let more = [data, &[0u8; 64][..]].concat();
    match parsed {
        Ok((export, used)) => {
            assert!(used <= data.len() && stream.1 == used, "{used} of {}", data.len());
            assert_eq!(parse_server(&more, name), Ok((export, used)), "bytes after the handshake counted");
            let cut = data.get(..used.saturating_sub(1)).unwrap_or_default();
            assert_eq!(parse_server(cut, name), Err(NbdError::Closed));
            let block = export.block_size();
            assert!(block.is_power_of_two() && (512..=4096).contains(&block), "{block}");
        }
        Err(NbdError::Closed) => {}
        Err(err) => {
            assert_eq!(parse_server(&more, name), Err(err.clone()), "an error that more bytes change");
            assert!(!matches!(err, NbdError::ReplyTooLong(len) if len <= MAX_REPLY), "{err}");
        }
    }
}

/// `signature`: the signed image's untrusted inputs (model::sign, model::verity). Verity params,
/// a trusted keys file, a key file and base64 read back as they were written (one canonical
/// form each); a message and a signature file (split at the first NUL) are checked against a
/// fixed key without a panic; a secret key read signs what its public key verifies.
pub fn signature(data: &[u8]) {
    if let Ok(params) = VerityParams::parse(data) {
        assert_eq!(params.text().as_bytes(), data, "params are canonical");
    }
    if let Ok(keys) = sign::trusted_keys(data) {
        assert_eq!(sign::trusted_keys(sign::trusted_keys_file(&keys).as_bytes()), Ok(keys));
    }
    if let Ok(key) = sign::public_key(data) {
        let keys = [key];
        assert_eq!(sign::trusted_keys(sign::trusted_keys_file(&keys).as_bytes()).as_deref(), Ok(&keys[..]));
    }
    if let Some(bytes) = sign::base64_decode(data) {
        assert_eq!(sign::base64(&bytes).as_bytes(), data, "base64 is canonical");
    }
    // A statement inside a verity superblock's block: read bounded, and what reads back is what
    // embeds again.
    let mut block = [&[0u8; verity::EMBEDDED_AT][..], data].concat();
    block.resize(verity::BLOCK as usize, 0);
    if let Some((params, sig)) = verity::embedded(&block) {
        assert!(params.len() <= VerityParams::MAX && sig.len() <= sign::SIGNATURE_MAX);
        let mut again = vec![0; verity::BLOCK as usize];
        verity::embed(&mut again, &params, &sig).unwrap();
        assert_eq!(verity::embedded(&again), Some((params, sig)));
    }
    let (message, signature) = data.split_at(data.iter().position(|b| *b == 0).unwrap_or(data.len()));
    let signature = signature.get(1..).unwrap_or_default();
    let fixed = sign::secret_key(include_bytes!("../../tests/fixtures/keys/openssl.pem")).unwrap();
    let keys = [fixed.public()];
    if let Ok(key) = sign::verify(&keys, message, signature) {
        assert_eq!(key, &keys[0]);
        assert!(sign::signature_of(signature).is_ok());
    }
    assert!(sign::verify(&keys, message, &sign::sign(&fixed, message)).is_ok(), "our own signature");
    if let Ok(secret) = sign::secret_key(data) {
        let public = [secret.public()];
        assert!(sign::verify(&public, b"message", &sign::sign(&secret, b"message")).is_ok());
    }
}

/// A layer manifest: parsed strictly or refused, never a panic; one that parses is in its one
/// form (written back byte for byte), its paths plain and relative, and what it says of itself
/// and of an empty layer is consistent.
pub fn manifest(data: &[u8]) {
    let Ok(manifest) = Manifest::parse(data) else { return };
    assert_eq!(manifest.text().as_bytes(), data, "one form");
    assert_eq!(Manifest::identity(data), Manifest::identity(manifest.text().as_bytes()));
    for path in manifest.entries.keys() {
        assert!(!path.is_empty() && !path.starts_with(b"/") && !path.contains(&0), "{path:?}");
        assert!(path.split(|&b| b == b'/').all(|c| !c.is_empty() && c != b"." && c != b".."), "{path:?}");
    }
    assert!(manifest.differences(&manifest).is_empty());
    let empty = Manifest { layer: manifest.layer.clone(), entries: Default::default() };
    assert_eq!(manifest.differences(&empty).len(), manifest.entries.len(), "every entry signed but missing");
    assert_eq!(empty.differences(&manifest).len(), manifest.entries.len(), "every entry not signed");
}
