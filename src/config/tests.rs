use super::*;
use crate::model::text::hidden;
use std::collections::BTreeMap;

fn p(key: &str, value: Option<&str>) -> Param {
    Param { key: key.into(), value: value.map(Into::into) }
}

fn words(text: &str) -> Vec<(String, Option<String>)> {
    Cmdline::parse(text.as_bytes()).params.into_iter().map(|p| (p.key, p.value)).collect()
}

fn resolve(text: &str) -> (Options, Vec<String>) {
    resolve_with(text, None)
}

fn resolve_with(text: &str, config: Option<&str>) -> (Options, Vec<String>) {
    let (o, d) = Options::resolve(&Cmdline::parse(text.as_bytes()), config.map(str::as_bytes));
    (o, d.into_iter().map(|d| d.message).collect())
}

/// Options from `text` that must be valid: no diagnostics.
fn ok(text: &str) -> Options {
    let (o, d) = resolve(text);
    assert!(d.is_empty(), "{text}: {d:?}");
    o
}

/// The single diagnostic of `text`, and the options.
fn bad(text: &str) -> (Options, String) {
    let (o, mut d) = resolve(text);
    assert_eq!(d.len(), 1, "{text}: {d:?}");
    (o, d.remove(0))
}

#[test]
fn dhcp_timeout_bounds() {
    assert_eq!(Options::default().dhcp_timeout, 60);
    assert_eq!(ok("stateless.dhcp.timeout=5").dhcp_timeout, 5);
    assert_eq!(ok("stateless.dhcp.timeout=3600").dhcp_timeout, 3600);
    for v in ["0", "3601", "-1", "ten", "1.5", ""] {
        let (o, d) = bad(&format!("stateless.dhcp.timeout=30 stateless.dhcp.timeout={v}"));
        assert_eq!(o.dhcp_timeout, 30, "{v}: the earlier value stays");
        assert!(d.contains("stateless.dhcp.timeout"), "{d}");
    }
}

#[test]
fn local_disk_labels() {
    assert_eq!((Options::default().swap, Options::default().scratch), (None, None));
    assert_eq!(ok("stateless.swap=auto").swap, Some(Swap::Auto));
    assert_eq!(ok("stateless.swap=lab-swap").swap, Some(Swap::Label("lab-swap".into())));
    assert_eq!(ok("stateless.scratch=scratch").scratch.as_deref(), Some("scratch"));
    for v in ["", "a,b", "../x", "a/b", &"x".repeat(65)] {
        let (o, d) = bad(&format!("stateless.scratch=ok stateless.scratch={v}"));
        assert_eq!(o.scratch.as_deref(), Some("ok"), "{v}: the earlier value stays");
        assert!(d.starts_with("stateless.scratch: "), "{d}");
    }
}

#[test]
fn log_server_forms() {
    let at = |s: &str| LogServer::At(s.parse().unwrap());
    assert_eq!(Options::default().log, LogServer::FromDhcp);
    assert_eq!(ok("stateless.log=10.0.2.2").log, at("10.0.2.2:514"));
    assert_eq!(ok("stateless.log=10.0.2.2:5140").log, at("10.0.2.2:5140"));
    assert_eq!(ok("stateless.log=10.0.2.2 stateless.log=off").log, LogServer::Off);
    assert_eq!(ok("stateless.log=off stateless.log=dhcp").log, LogServer::FromDhcp);
    for v in ["loghost", "10.0.2.2:0", "10.0.2.2:65536", "10.0.2.2:", "255.255.255.255", "127.0.0.1", "", "[::1]:514"] {
        let (o, d) = bad(&format!("stateless.log=10.0.2.9 stateless.log={v}"));
        assert_eq!(o.log, at("10.0.2.9:514"), "{v}: the earlier value stays");
        assert!(d.starts_with("stateless.log: "), "{d}");
    }
}

#[test]
fn tokenizer_basics() {
    let c = Cmdline::parse("  ro\tquiet root=/dev/nfs key= =x a=b=c\n".as_bytes());
    assert_eq!(
        c.params,
        [
            p("ro", None),
            p("quiet", None),
            p("root", Some("/dev/nfs")),
            p("key", Some("")),
            p("=x", None),
            p("a", Some("b=c"))
        ]
    );
    assert!(c.init_args.is_empty());
    assert_eq!(Cmdline::parse("".as_bytes()), Cmdline::default());
    assert_eq!(Cmdline::parse(" \n\t\r\x0b\x0c".as_bytes()), Cmdline::default());
    // `=` at the start does not split, a later one does (kernel: `equals == 0` means none).
    assert_eq!(words("=a=b"), [("=a".into(), Some("b".into()))]);
}

#[test]
fn tokenizer_quotes() {
    assert_eq!(words(r#"k="a b" x"#), [("k".into(), Some("a b".into())), ("x".into(), None)]);
    assert_eq!(words(r#""k=a b" x"#), [("k".into(), Some("a b".into())), ("x".into(), None)]);
    assert_eq!(words(r#""flag with space""#), [("flag with space".into(), None)]);
    assert_eq!(words(r#"k="" j=""#), [("k".into(), Some("".into())), ("j".into(), Some("".into()))]);
    // A quote in the middle groups but is kept, as in the kernel.
    assert_eq!(words(r#"k=a"b c"d e"#), [("k".into(), Some(r#"a"b c"d"#.into())), ("e".into(), None)]);
    assert_eq!(words(r#"k="a"b"#), [("k".into(), Some("a\"b".into()))]);
    // Unbalanced: the rest of the line is one word.
    assert_eq!(words(r#"k="a b c"#), [("k".into(), Some("a b c".into()))]);
    assert_eq!(words(r#"a "b c"#), [("a".into(), None), ("b c".into(), None)]);
    assert_eq!(words("\""), [(String::new(), None)]);
    assert_eq!(words("\"\""), [(String::new(), None)]);
    assert_eq!(words("\"k=\""), [("k".into(), Some("".into()))]);
}

#[test]
fn tokenizer_dashes_and_last_wins() {
    let c = Cmdline::parse("a=1 b a=2 -- single k=\"x y\" \"q r\" -- dropped\n".as_bytes());
    assert_eq!(c.params, [p("a", Some("1")), p("b", None), p("a", Some("2"))]);
    assert_eq!(c.init_args, ["single", "k=x y", "q r"]);
    assert_eq!(c.value("a"), Some("2"));
    assert_eq!(c.get("a"), Some(&p("a", Some("2"))));
    assert!(c.has_flag("b") && !c.has_flag("a") && !c.has_flag("c") && c.get("c").is_none());
    assert!(!Cmdline::parse("q q=1".as_bytes()).has_flag("q") && Cmdline::parse("q=1 q".as_bytes()).has_flag("q"));
    // `--=x` is not the separator; a quoted `"--"` is (the kernel strips quotes first).
    assert_eq!(Cmdline::parse("--=x a".as_bytes()).params.len(), 2);
    assert_eq!(Cmdline::parse("\"--\" a".as_bytes()).init_args, ["a"]);
    assert_eq!(Cmdline::parse("x --".as_bytes()).init_args, Vec::<String>::new());
}

#[test]
fn tokenizer_never_panics() {
    let nasty = ["\0", "\"\0\"", "a=\"\0", "é=\"ü\" \"ñ", "===", "\"=\"", "\"\"\"", "-- --", "\u{a0}x\u{3000}"];
    for s in nasty {
        let _ = Options::resolve(&Cmdline::parse(s.as_bytes()), Some(s.as_bytes()));
    }
    let huge = "k=\"v w\" ".repeat(100_000) + "\"";
    assert_eq!(Cmdline::parse(huge.as_bytes()).params.len(), 100_001);
    // Bytes, as the kernel's isspace() sees them: 0xA0 (Latin-1's no-break space) is a
    // blank wherever it is, so U+00A0 (c2 a0) splits its word; U+3000 (e3 80 80) does not.
    assert_eq!(words("a\u{a0}b"), [("b".into(), None)]);
    assert_eq!(words("a\u{3000}b"), [("a\u{3000}b".into(), None)]);
}

#[test]
fn defaults() {
    let o = ok("");
    assert_eq!(o, Options::default());
    assert_eq!(
        (o.dirs, o.layers.as_str(), o.hostname_prefix.as_str()),
        (vec![DirName::ETC, DirName::VAR], "/diskless", "Node")
    );
    assert_eq!((o.emergency, o.mode, o.quiet, o.debug), (Emergency::Continue, OverlayMode::Overlay, false, false));
    // Unknown non-stateless words are the kernel's or init's business; a dotted one may be
    // a module's parameter (kept for when that module loads, as modprobe keeps it).
    let o = ok("console=ttyS0 rd.break single 3 init=/sbin/init e1000.debug=2");
    assert_eq!(o.modules.params, [("rd.break".to_string(), None), ("e1000.debug".to_string(), Some("2".to_string()))]);
    assert_eq!(Options { modules: Default::default(), ..o }, Options::default());
    let o =
        ok("stateless.modules=e1000,virtio-net modprobe.blacklist=pcspkr stateless.modules.blacklist=snd_hda_intel");
    assert_eq!(
        (o.modules.extra, o.modules.blacklist),
        (vec!["e1000".into(), "virtio-net".into()], vec!["pcspkr".into(), "snd_hda_intel".into()])
    );
    assert!(ok("stateless.modules=none").modules.no_coldplug);
    let (o, d) = bad("stateless.modules=../x,ok");
    assert_eq!((o.modules.extra, d.contains("not a module name")), (vec!["ok".to_string()], true));
}

#[test]
fn softlevel_and_default_dirs() {
    let o = ok("softlevel=unionfs");
    assert_eq!((o.softlevel, o.dirs), (Some(vec!["unionfs".into()]), vec![DirName::ETC, DirName::VAR]));
    let o = ok("softlevel=,default,,unionfs,");
    assert_eq!((o.softlevel, o.dirs.len()), (Some(vec!["default".into(), "unionfs".into()]), 2));
    let o = ok("softlevel=default");
    assert_eq!((o.softlevel, o.dirs), (Some(vec!["default".into()]), vec![]));
    assert_eq!(ok("softlevel=").dirs, Vec::<DirName>::new());
    // An explicit stateless.dirs beats the softlevel rule, from either source.
    assert_eq!(ok("softlevel=default stateless.dirs=var/log").dirs, ["var/log"]);
    assert_eq!(resolve_with("softlevel=x", Some("stateless.dirs=etc")).0.dirs, ["etc"]);
    let (o, d) = bad("softlevel");
    assert_eq!((o.softlevel, o.dirs.len(), d.as_str()), (None, 2, "softlevel: needs a value"));
}

#[test]
fn init() {
    assert_eq!(ok("stateless.init=/sbin/openrc-init").init.as_deref(), Some("/sbin/openrc-init"));
    assert_eq!(ok("stateless.init=/boot/./x").init.as_deref(), Some("/boot/./x"));
    for (v, msg) in [
        ("sbin/init", r#"stateless.init: "sbin/init" is not an absolute path"#),
        ("", r#"stateless.init: "" is not an absolute path"#),
        ("/sbin/../x", r#"stateless.init: "/sbin/../x" has a ".." component"#),
        ("/a\0b", r#"stateless.init: "/a\x00b" contains a NUL byte"#),
    ] {
        let (o, d) = bad(&format!("stateless.init=\"{v}\""));
        assert_eq!((o.init, d.as_str()), (None, msg));
    }
    assert_eq!(bad("stateless.init").1, "stateless.init: needs a value");
    // An invalid later value leaves the earlier valid one.
    assert_eq!(bad("stateless.init=/a stateless.init=b").0.init.as_deref(), Some("/a"));
}

#[test]
fn dirs() {
    assert_eq!(ok("stateless.dirs=/etc/,var//log,/srv/").dirs, ["etc", "var/log", "srv"]);
    assert_eq!(resolve_with("", Some("stateless.dirs = etc, var/lib ,home")).0.dirs, ["etc", "var/lib", "home"]);
    assert_eq!(ok("stateless.dirs=").dirs, Vec::<DirName>::new());
    assert_eq!(ok("stateless.dirs=etc stateless.dirs=home").dirs, ["home"]);
    assert_eq!(ok("stateless.dirs=varlog,var").dirs, ["varlog", "var"]);
    for (v, keep, msg) in [
        ("../x,etc", vec!["etc"], r#"stateless.dirs: "../x" has a ".." component"#),
        ("etc/./x", vec![], r#"stateless.dirs: "etc/./x" has a "." component"#),
        ("etc,,var", vec!["etc", "var"], "stateless.dirs: empty item"),
        ("etc,", vec!["etc"], "stateless.dirs: empty item"),
        ("//", vec![], r#"stateless.dirs: "//" names no dir below the root"#),
        (
            "proc,etc",
            vec!["etc"],
            r#"stateless.dirs: "proc" is under /proc, a kernel or tmpfs mount, not an image dir"#,
        ),
        ("/sys/x", vec![], r#"stateless.dirs: "/sys/x" is under /sys, a kernel or tmpfs mount, not an image dir"#),
        ("dev", vec![], r#"stateless.dirs: "dev" is under /dev, a kernel or tmpfs mount, not an image dir"#),
        ("run/x", vec![], r#"stateless.dirs: "run/x" is under /run, a kernel or tmpfs mount, not an image dir"#),
        ("etc,/etc/", vec!["etc"], r#"stateless.dirs: "/etc/" is listed twice"#),
        ("var,var/log", vec!["var"], r#"stateless.dirs: "var/log" is inside "var", listed before"#),
        ("var/log,var", vec!["var/log"], r#"stateless.dirs: "var" contains "var/log", listed before"#),
        (
            "a\0",
            vec![],
            r#"stateless.dirs: "a\x00" has a character that is only shown escaped (a control, bidi or zero-width character, or a backslash): refused"#,
        ),
    ] {
        let (o, d) = resolve(&format!("stateless.dirs=\"{v}\""));
        assert_eq!(d.first().map(String::as_str), Some(msg), "{v}");
        if keep.is_empty() {
            // Every item refused: the default stays, and says so.
            assert_eq!(o.dirs, ["etc", "var"], "{v}");
            let shown = escape(v.as_bytes());
            assert_eq!(d.last().unwrap(), &format!("stateless.dirs: no valid dir in \"{shown}\": keeping etc,var"));
        } else {
            assert_eq!((o.dirs, d.len()), (keep.into_iter().map(DirName::from_static).collect(), 1), "{v}");
        }
    }
    // A dir is shown as itself everywhere, or refused: control (C0, C1), bidi, backslash.
    let hostile = "etc/\u{1b}[2J,var/\u{9b}1m,var/a\u{202e}b,var/a\\b,var/\u{7f},var";
    let (o, d) = resolve_with("", Some(&format!("stateless.dirs={hostile}")));
    assert_eq!(o.dirs, ["var"]);
    let shown: Vec<&str> = d.iter().map(|m| m.split('"').nth(1).unwrap()).collect();
    assert_eq!(shown, ["etc/\\x1b[2J", "var/\\xc2\\x9b1m", "var/a\\xe2\\x80\\xaeb", "var/a\\x5cb", "var/\\x7f"]);
    assert!(d.iter().all(|m| m.ends_with("(a control, bidi or zero-width character, or a backslash): refused")));
    // An all-invalid list keeps the earlier valid one, also one from the config file.
    assert_eq!(resolve_with("stateless.dirs=proc,../..,/", Some("stateless.dirs=var")).0.dirs, ["var"]);
    // ... and softlevel= without unionfs still decides when no valid list was given.
    assert_eq!(resolve("softlevel=default stateless.dirs=proc").0.dirs, Vec::<DirName>::new());
    let (o, d) = bad("stateless.dirs");
    assert_eq!((o.dirs.len(), d.as_str()), (2, "stateless.dirs: needs a value"));
}

#[test]
fn diagnostics_show_hostile_keys_and_values_escaped() {
    let h = "\u{1b}[2J\u{9b}\u{7f}\u{202e}";
    let words = VALUE_KEYS.iter().map(|k| format!("{k}=x{h}")).chain([format!("stateless.{h}=1")]);
    let cmdline = words.collect::<Vec<_>>().join(" ");
    let config = format!("stateless.{h}=1\nfoo{h}=1\n{h}\nstateless.dirs=a{h}\nstateless.break={h}\n");
    let (_, d) = Options::resolve(&Cmdline::parse(cmdline.as_bytes()), Some(config.as_bytes()));
    assert!(d.len() > 15, "{d:?}");
    for text in d.iter().flat_map(|d| [&d.key, &d.message]) {
        assert!(!text.chars().any(|c| c.is_control() || hidden(c)), "{text:?}");
    }
    assert!(d.iter().any(|d| d.message == "stateless.\\x1b[2J\\xc2\\x9b\\x7f\\xe2\\x80\\xae: unknown key"));
}

#[test]
fn layers() {
    assert_eq!(ok("stateless.layers=/srv//layers/./x/").layers, "/srv/layers/x");
    assert_eq!(ok("stateless.layers=/").layers, "/");
    assert_eq!(ok("stateless.layers=///").layers, "/");
    let (o, d) = bad("stateless.layers=layers");
    assert_eq!((o.layers.as_str(), d.as_str()), ("/diskless", r#"stateless.layers: "layers" is not an absolute path"#));
    assert_eq!(bad("stateless.layers=/a/..").1, r#"stateless.layers: "/a/.." has a ".." component"#);
}

/// An image root's layers are the `diskless/` dir beside the image on the export, unless
/// `stateless.layers=` is given (on the command line or in the image's stateless.conf).
#[test]
fn an_image_roots_layers_are_beside_it() {
    let beside = [
        ("nfsroot=/srv stateless.image=images/debian.sqfs", "/run/stateless/export/images/diskless"),
        ("nfsroot=/srv stateless.image=/x.img", "/run/stateless/export/diskless"),
        ("root=live:nfs://10.0.0.1/srv/images/debian.sqfs", "/run/stateless/export/diskless"),
        ("root=live:nfs://10.0.0.1/debian.sqfs", "/run/stateless/export/diskless"),
        ("nfsroot=/srv stateless.image=a.img stateless.layers=/diskless", "/diskless"),
        ("stateless.layers=/l stateless.image=a/b.img", "/l"),
        // Not an image root (or one the root step refuses): the image's own /diskless.
        ("nfsroot=/srv", "/diskless"),
        ("root=live:http://10.0.0.1/x.img", "/diskless"),
    ];
    for (cmdline, layers) in beside {
        assert_eq!(ok(cmdline).layers, layers, "{cmdline}");
    }
    let (o, d) = resolve_with("stateless.image=a/b.img", Some("stateless.layers=/srv/layers\n"));
    assert_eq!((o.layers.as_str(), d.len()), ("/srv/layers", 0), "{d:?}");
    // An invalid stateless.layers= gives nothing: the default of an image root stays.
    let (o, d) = bad("stateless.image=a/b.img stateless.layers=rel");
    assert_eq!(o.layers, "/run/stateless/export/a/diskless", "{d}");
}

/// `stateless.image.ram` and dracut's `rd.live.ram`: the image copied into memory; alone, or
/// with a tree root, it has nothing to copy and says so.
#[test]
fn an_image_in_memory_is_asked_for_by_either_name() {
    let image = "root=live:nfs://10.0.0.1/srv/images/debian.sqfs";
    for (words, ram) in [
        ("stateless.image.ram", true),
        ("stateless.image.ram=yes", true),
        ("stateless.image.ram stateless.image.ram=no", false),
        ("rd.live.ram=1", true),
        ("rd.live.ram", true),
        ("rd.live.ram=0", false),
        ("stateless.image.ram rd.live.ram=off", false),
        ("", false),
    ] {
        let o = ok(&format!("{image} {words}"));
        assert_eq!(o.image_ram, ram, "{words}");
        assert!(o.modules.params.is_empty(), "{words}: not a module's parameter");
    }
    assert!(ok("nfsroot=/srv stateless.image=/x.img rd.live.ram=1").image_ram);
    let (o, d) = bad("nfsroot=/srv stateless.image.ram");
    assert!(o.image_ram && d.contains("no image root to copy"), "{d}");
    let (o, d) = bad(&format!("{image} stateless.image.ram=2"));
    assert!(!o.image_ram && d.contains("\"2\" is not yes or no"), "{d}");
}

/// `roothash=` (systemd's name): 64 hex digits, kept lower-case; anything else is reported and
/// kept as given (escaped), for the root step to refuse: a verified boot asked for never goes
/// on unverified; without an image root it has nothing to verify and says so.
#[test]
fn a_root_hash_is_64_hex_digits_for_an_image_root() {
    let image = "root=live:nfs://10.0.0.1/srv/images/debian.sqfs";
    let hash = "0123456789abcdef".repeat(4);
    let o = ok(&format!("{image} roothash={}", hash.to_uppercase()));
    assert_eq!(o.root_hash.as_deref(), Some(hash.as_str()));
    let (short, long, not_hex) = (hash[1..].to_string(), format!("{hash}0"), hash.replace('a', "g"));
    for (bad_hash, kept) in [(&short, &short), (&long, &long), (&not_hex, &not_hex)]
        .into_iter()
        .map(|(b, k)| (b.as_str(), k.as_str()))
        .chain([("\x1b[2J", "\\x1b[2J")])
    {
        let (o, d) = bad(&format!("{image} roothash={bad_hash}"));
        assert!(d.contains("is not a sha256 root hash (64 hex digits)"), "{bad_hash}: {d}");
        assert_eq!(o.root_hash.as_deref(), Some(kept), "kept for the root step to refuse");
    }
    let (o, d) = bad("roothash");
    assert!(o.root_hash.is_none() && d.contains("needs a value"), "{d}");
    let (o, d) = bad(&format!("nfsroot=/srv roothash={hash}"));
    assert!(o.root_hash.is_some() && d.contains("roothash=: no image root to verify"), "{d}");
    assert_eq!(ok(&format!("root=nbd:10.0.0.1:root roothash={hash}")).root_hash.as_deref(), Some(hash.as_str()));
}

/// A server among the options (a list without a path, or a second `server:/path`) is refused,
/// not passed to mount(2) as an option every version refuses until the timeout.
#[test]
fn a_server_list_goes_before_one_path() {
    for words in ["nfsroot=10.0.0.1,10.0.0.2", "nfsroot=10.0.0.1:/srv,10.0.0.2:/x", "nfsroot=10.0.0.1,10.0.0.2,vers=3"]
    {
        let (o, d) = bad(words);
        assert!(o.nfsroot.is_none() && d.contains("is a server: several servers go before one path"), "{words}: {d}");
    }
    assert!(ok("nfsroot=10.0.0.1,10.0.0.2:/srv,vers=3").nfsroot.is_some());
}

#[test]
fn hostname_and_prefix() {
    assert_eq!(ok("stateless.hostname=lab3-12").hostname.as_deref(), Some("lab3-12"));
    assert_eq!(ok("stateless.hostname=\"bad/name\"").hostname.as_deref(), Some("bad/name"));
    let (o, d) = bad("stateless.hostname=");
    assert_eq!(
        (o.hostname, d.as_str()),
        (None, "stateless.hostname: empty value (leave it out to use dhcp or the fallback)")
    );
    assert_eq!(bad("stateless.hostname=a stateless.hostname=").0.hostname, None);
    for v in ["lab", "Lab3-", "0a", &"x".repeat(32)] {
        assert_eq!(ok(&format!("stateless.hostname.prefix={v}")).hostname_prefix, v);
    }
    for v in ["", "-a", "a_b", "a.b", "é", &"x".repeat(33)] {
        let (o, d) = bad(&format!("stateless.hostname.prefix={v}"));
        assert_eq!(o.hostname_prefix, "Node");
        let want = format!("stateless.hostname.prefix: {v:?} is not 1 to 32 ascii letters, digits or \"-\" starting with a letter or digit");
        assert_eq!(d, want);
    }
}

#[test]
fn tmpfs_sizes() {
    for (v, want) in [
        ("512M", "512m"),
        ("1g", "1g"),
        ("100%", "100%"),
        ("1%", "1%"),
        ("0100k", "100k"),
        ("65536", "65536"),
        ("1048576g", "1048576g"),
    ] {
        assert_eq!(ok(&format!("stateless.tmpfs.size={v}")).tmpfs_size.as_deref(), Some(want), "{v}");
    }
    for (v, why) in [
        ("", "is not a size (digits, then optionally k, m, g or %)"),
        ("m", "is not a size (digits, then optionally k, m, g or %)"),
        ("12x", "is not a size (digits, then optionally k, m, g or %)"),
        ("1mb", "is not a size (digits, then optionally k, m, g or %)"),
        ("-1m", "is not a size (digits, then optionally k, m, g or %)"),
        ("0%", "is not a percentage from 1% to 100%"),
        ("101%", "is not a percentage from 1% to 100%"),
        ("99999999999999999999", "is too large"),
        ("17179869184g", "is too large (more than 1 PiB is no limit at all)"),
        ("1048577g", "is too large (more than 1 PiB is no limit at all)"),
        ("0", "is below 64k (0 would mean no limit at all)"),
        ("0k", "is below 64k (0 would mean no limit at all)"),
        ("4096", "is below 64k (0 would mean no limit at all)"),
    ] {
        let (o, d) = bad(&format!("stateless.tmpfs.size={v}"));
        assert_eq!((o.tmpfs_size, d), (None, format!("stateless.tmpfs.size: {v:?} {why}")));
    }
}

#[test]
fn break_emergency_mode() {
    assert_eq!(ok("stateless.break=host-files").break_at, [Phase::HostFiles]);
    assert_eq!(ok("stateless.break=handoff").break_at, [Phase::Handoff]);
    let each = ok("stateless.break=layers,hardware,layers,handoff").break_at;
    assert_eq!(each, [Phase::Layers, Phase::Hardware, Phase::Handoff]);
    let (o, d) = bad("stateless.break=layers,nope");
    assert_eq!(o.break_at, []);
    assert_eq!(d, format!("stateless.break: {}", "nope".parse::<Phase>().unwrap_err()));
    let (o, d) = bad("stateless.break=nope");
    assert_eq!(o.break_at, []);
    assert_eq!(d, format!("stateless.break: {}", "nope".parse::<Phase>().unwrap_err()));
    assert_eq!(bad("stateless.break").1, "stateless.break: needs a phase name");
    assert_eq!(
        bad("stateless.break=early-mounts").1,
        "stateless.break: \"early-mounts\" runs before the command line is read"
    );
    for (v, e) in [
        ("continue", Emergency::Continue),
        ("shell", Emergency::Shell),
        ("reboot", Emergency::Reboot),
        ("poweroff", Emergency::Poweroff),
    ] {
        assert_eq!(ok(&format!("stateless.emergency={v}")).emergency, e);
    }
    let (o, d) = bad("stateless.emergency=reboot stateless.emergency=halt");
    assert_eq!(
        (o.emergency, d.as_str()),
        (Emergency::Reboot, r#"stateless.emergency: "halt" is not one of continue, shell, reboot, poweroff"#)
    );
    assert_eq!(ok("stateless.mode=copy").mode, OverlayMode::Copy);
    assert_eq!(ok("stateless.mode=copy stateless.mode=overlay").mode, OverlayMode::Overlay);
    assert_eq!(bad("stateless.mode=Copy").1, r#"stateless.mode: "Copy" is not one of overlay, copy"#);
    assert_eq!(bad("stateless.mode").1, "stateless.mode: needs a value");
}

#[test]
fn quiet_debug() {
    let o = ok("quiet debug");
    assert!(o.quiet && o.debug);
    // The kernel ignores their value too.
    assert!(ok("quiet=0").quiet);
    let (o, d) = resolve_with("", Some("quiet=1\ndebug"));
    assert!(!o.quiet && !o.debug && d.len() == 2);
}

fn ip(text: &str) -> IpParam {
    ok(text).ip.unwrap()
}

#[test]
fn ip_param() {
    let a = |s: &str| s.parse::<Ipv4Addr>().ok();
    for w in AUTOCONF {
        assert_eq!(ip(&format!("ip={w}")), IpParam { autoconf: w.into(), ..IpParam::default() });
    }
    assert_eq!(ip("ip=DHCP").autoconf, "dhcp");
    assert_eq!(ip("ip=").autoconf, "off");
    assert_eq!(
        ip("ip=:::::eth0:dhcp"),
        IpParam { device: Some("eth0".into()), autoconf: "dhcp".into(), ..IpParam::default() }
    );
    let full = ip("ip=192.168.1.21:192.168.1.1:192.168.1.254:255.255.255.0:lab3-12.example.edu:eth0:off:8.8.8.8:1.1.1.1:10.0.0.1:extra");
    assert_eq!(
        full,
        IpParam {
            client: a("192.168.1.21"),
            server: a("192.168.1.1"),
            gateway: a("192.168.1.254"),
            netmask: a("255.255.255.0"),
            hostname: Some("lab3-12.example.edu".into()),
            device: Some("eth0".into()),
            autoconf: "off".into(),
            dns: vec![a("8.8.8.8").unwrap(), a("1.1.1.1").unwrap()],
            ntp: vec![a("10.0.0.1").unwrap()],
            client_id: None,
        }
    );
    assert_eq!(ip("ip=10.0.0.5"), IpParam { client: a("10.0.0.5"), ..IpParam::default() });
    assert_eq!(ip("ip=10.0.0.5::0.0.0.0"), IpParam { client: a("10.0.0.5"), ..IpParam::default() });
    assert_eq!(ip("ip=::10.0.0.1:255.0.0.0").gateway, a("10.0.0.1"));

    let (o, d) = resolve("ip=10.0.0.300:1.2.3.4::::eth1:frob:dns");
    assert_eq!(o.ip, Some(IpParam { server: a("1.2.3.4"), device: Some("eth1".into()), ..IpParam::default() }));
    assert_eq!(
        d,
        [
            r#"ip: client-ip "10.0.0.300" is not an IPv4 address"#,
            r#"ip: autoconf "frob" is not one of dhcp, on, any, off, none, bootp, rarp, both, static"#,
            r#"ip: dns0-ip "dns" is not an IPv4 address"#,
        ]
    );
    let (o, d) = bad("ip=dhcp ip=frob");
    assert_eq!(o.ip.map(|i| i.autoconf).as_deref(), Some("dhcp"));
    assert_eq!(
        d,
        r#"ip: "frob" is neither an autoconf method (dhcp, on, any, off, none, bootp, rarp, both, static) nor an IPv4 address"#
    );
    assert_eq!(bad("ip").1, "ip: needs a value");
}

/// The kernel's `<dns0-ip>:<dns1-ip>:<ntp0-ip>`: kept in order, 0.0.0.0 as not given.
#[test]
fn ip_name_and_time_servers() {
    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let i = ip("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:192.0.2.53:192.0.2.54:192.0.2.123");
    assert_eq!((i.dns, i.ntp), (vec![a("192.0.2.53"), a("192.0.2.54")], vec![a("192.0.2.123")]));
    let i = ip("ip=10.0.2.15:::::eth0:off:0.0.0.0:192.0.2.54");
    assert_eq!((i.dns, i.ntp), (vec![a("192.0.2.54")], vec![]));
    assert_eq!(ip("ip=10.0.2.15::::::none:127.0.0.53").dns, [a("127.0.0.53")], "a resolver in the image");
    let (o, d) = resolve("ip=10.0.2.15::::::off:224.0.0.251:255.255.255.255:240.0.0.1");
    let i = o.ip.unwrap();
    assert_eq!((i.client, i.dns, i.ntp), (Some(a("10.0.2.15")), vec![], vec![]));
    assert_eq!(
        d,
        [
            "ip: dns0-ip 224.0.0.251 is not a unicast address",
            "ip: dns1-ip 255.255.255.255 is not a unicast address",
            "ip: ntp0-ip 240.0.0.1 is not a unicast address",
        ]
    );
    // The servers count for a static line; one that asks DHCP gets the lease's (the kernel's rule).
    let line = ip("ip=10.0.2.15:::::eth0:off:192.0.2.53::192.0.2.123");
    assert_eq!(line.servers(), (&[a("192.0.2.53")][..], &[a("192.0.2.123")][..]));
    let dhcp = ip("ip=:::::eth0:dhcp:192.0.2.53::192.0.2.123");
    assert_eq!(dhcp.dns, [a("192.0.2.53")]);
    assert_eq!(dhcp.servers(), (&[][..], &[][..]));
}

/// `dhcp,<type>,<id>` (the kernel's ic_proto_name), alone or as the autoconf field.
#[test]
fn ip_dhcp_client_id() {
    let id = |kind, id: &str| Some(ClientId { kind, id: id.into() });
    let i = ip("ip=dhcp,0,lab3-12");
    assert_eq!((i.autoconf.as_str(), i.client_id), ("dhcp", id(0, "lab3-12")));
    // Alone, the id is the rest of the value, `:` and `,` included; the type as kstrtou8 base 0.
    assert_eq!(ip("ip=DHCP,1,52:54:00:12:34:56").client_id, id(1, "52:54:00:12:34:56"));
    assert_eq!(ip("ip=dhcp,0x12,a,b").client_id, id(0x12, "a,b"));
    assert_eq!(ip("ip=dhcp,010,x").client_id, id(8, "x"));
    assert_eq!(ip("ip=dhcp,255,x").client_id, id(255, "x"));
    // In the long form it ends at the next `:`.
    let i = ip("ip=:::::eth0:dhcp,0,lab3-12:192.0.2.53");
    assert_eq!((i.device.as_deref(), i.client_id, i.dns.len()), (Some("eth0"), id(0, "lab3-12"), 1));
    assert_eq!(id(1, "ab").unwrap().option(), [1, b'a', b'b']);
    // A bad client id is reported and left out: DHCP with the default one.
    for (v, msg) in [
        ("dhcp,1", r#"client id "1" is not <type>,<id>"#),
        ("dhcp,", r#"client id "" is not <type>,<id>"#),
        ("dhcp,256,x", r#"client id type "256" is not a number from 0 to 255"#),
        ("dhcp,0x,x", r#"client id type "0x" is not a number from 0 to 255"#),
        ("dhcp,09,x", r#"client id type "09" is not a number from 0 to 255"#),
        ("dhcp,-1,x", r#"client id type "-1" is not a number from 0 to 255"#),
        ("dhcp,,x", r#"client id type "" is not a number from 0 to 255"#),
        ("dhcp,1,", "client id of type 1 is empty"),
        (":::::eth0:dhcp,x,y", r#"client id type "x" is not a number from 0 to 255"#),
    ] {
        let (o, d) = bad(&format!("ip={v}"));
        let i = o.ip.unwrap();
        assert_eq!((i.autoconf.as_str(), i.client_id), ("dhcp", None), "{v}");
        assert_eq!(d, format!("ip: {msg}: type 1 and the MAC are sent"), "{v}");
    }
    let long = "x".repeat(ClientId::MAX_ID);
    assert_eq!(ip(&format!("ip=dhcp,0,{long}")).client_id, id(0, &long));
    let (o, d) = bad(&format!("ip=dhcp,0,{long}y"));
    assert_eq!(o.ip.unwrap().client_id, None);
    assert!(d.contains("is longer than 251 bytes"), "{d}");
    // Printed escaped: in messages and in the log line.
    let (_, d) = bad("ip=\"dhcp,1x,\x1b[2J\"");
    assert_eq!(d, r#"ip: client id type "1x" is not a number from 0 to 255: type 1 and the MAC are sent"#);
    assert_eq!(id(0, "a\x1b[2Jb\u{202e}").unwrap().to_string(), r#"type 0 id "a\x1b[2Jb\xe2\x80\xae""#);
}

/// `nfsaddrs=` is the kernel's old name of `ip=` (the same setup function): the later wins.
#[test]
fn nfsaddrs_is_ip() {
    assert_eq!(ok("nfsaddrs=10.0.2.15:10.0.2.2::255.255.255.0").ip, ok("ip=10.0.2.15:10.0.2.2::255.255.255.0").ip);
    assert_eq!(ok("ip=dhcp nfsaddrs=off").ip.unwrap().autoconf, "off");
    assert_eq!(ok("nfsaddrs=off ip=dhcp").ip.unwrap().autoconf, "dhcp");
    assert_eq!(bad("nfsaddrs=frob").1.split_once(':').unwrap().0, "nfsaddrs");
    assert_eq!(bad("nfsaddrs").1, "nfsaddrs: needs a value");
}

#[test]
fn dhcp_inform() {
    assert!(Options::default().dhcp_inform);
    assert!(!ok("stateless.dhcp.inform=no").dhcp_inform);
    assert!(ok("stateless.dhcp.inform=no stateless.dhcp.inform=yes").dhcp_inform);
    let (o, d) = bad("stateless.dhcp.inform=no stateless.dhcp.inform=off");
    assert!(!o.dhcp_inform, "a bad value keeps the earlier one");
    assert_eq!(d, r#"stateless.dhcp.inform: "off" is not yes or no"#);
    assert_eq!(bad("stateless.dhcp.inform").1, "stateless.dhcp.inform: needs a value");
    let (o, d) = resolve_with("", Some("stateless.dhcp.inform=no\n"));
    assert_eq!((o.dhcp_inform, d.len()), (false, 0), "in the config file too");
}

#[test]
fn nfsroot() {
    let n = ok("nfsroot=192.168.1.1:/diskless/gentoo,ro,rsize=8192,,posix").nfsroot.unwrap();
    assert_eq!(n.servers, ["192.168.1.1".parse::<Ipv4Addr>().unwrap()]);
    assert_eq!(
        (n.path.as_deref(), n.options),
        (Some("/diskless/gentoo"), vec!["ro".into(), "rsize=8192".into(), "posix".into()])
    );
    let n = |v: &str| ok(&format!("nfsroot={v}")).nfsroot.unwrap();
    let at = |s: Option<&str>, p: Option<&str>, o: &[&str]| NfsRoot {
        servers: s.map(|s| s.split(',').map(|s| s.parse().unwrap()).collect()).unwrap_or_default(),
        path: p.map(Into::into),
        options: o.iter().map(|o| o.to_string()).collect(),
    };
    assert_eq!(n("/srv/%s"), at(None, Some("/srv/%s"), &[]));
    assert_eq!(n("/a:b").path.as_deref(), Some("/a:b"));
    // The kernel's shorter forms: a name under /tftpboot, a server alone, options alone.
    assert_eq!(n("client7,tcp"), at(None, Some("/tftpboot/client7"), &["tcp"]));
    assert_eq!(n("10.0.0.1"), at(Some("10.0.0.1"), None, &[]));
    assert_eq!(n("10.0.0.1:"), at(Some("10.0.0.1"), None, &[]));
    assert_eq!(n("10.0.0.1,tcp"), at(Some("10.0.0.1"), None, &["tcp"]));
    assert_eq!(n(",vers=4.1,tcp"), at(None, None, &["vers=4.1", "tcp"]));
    assert_eq!(ok("nfsroot=").nfsroot, None);
    // Several servers: the list before the first `:/`, the options after the path.
    let both = Some("10.0.0.1,10.0.0.2");
    assert_eq!(n("10.0.0.1,10.0.0.2:/srv/root,vers=3"), at(both, Some("/srv/root"), &["vers=3"]));
    assert_eq!(n("10.0.0.1,10.0.0.2:/srv/root"), at(both, Some("/srv/root"), &[]));
    for (v, msg) in [
        ("server:/x", r#"nfsroot: server "server" is not an IPv4 address (no DNS at boot)"#),
        (":/x", r#"nfsroot: server "" is not an IPv4 address (no DNS at boot)"#),
        ("10.0.0.1:x", r#"nfsroot: path "x" is not absolute"#),
        ("10.0.0.1,nfs.lab:/x", r#"nfsroot: server "nfs.lab" is not an IPv4 address (no DNS at boot)"#),
        ("10.0.0.1,10.0.0.1:/x", "nfsroot: server 10.0.0.1 is named twice"),
    ] {
        let (o, d) = bad(&format!("nfsroot={v}"));
        assert_eq!((o.nfsroot, d.as_str()), (None, msg));
    }
}

#[test]
fn root_and_bootif() {
    assert_eq!(ok("root=/dev/nfs").root.as_deref(), Some("/dev/nfs"));
    assert_eq!(ok("root=nfs:10.0.0.1:/srv/root").root.as_deref(), Some("nfs:10.0.0.1:/srv/root"));
    assert_eq!(ok("root=").root, None);
    let mac = Some([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
    for v in ["01-52-54-00-ab-cd-ef", "52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef"] {
        assert_eq!(ok(&format!("BOOTIF={v}")).bootif, mac, "{v}");
    }
    for v in
        ["52:54:00:ab:cd", "52:54:00:ab:cd:ef:01", "5:54:00:ab:cd:ef", "+5:54:00:ab:cd:ef", "zz:54:00:ab:cd:ef", ""]
    {
        let (o, d) = bad(&format!("BOOTIF={v}"));
        assert_eq!(o.bootif, None);
        assert_eq!(d, format!("BOOTIF: {v:?} is not a MAC address (01-aa-bb-cc-dd-ee-ff or aa:bb:cc:dd:ee:ff)"));
    }
    assert_eq!(
        bad("BOOTIF=06-52-54-00-ab-cd-ef").1,
        r#"BOOTIF: hardware type "06" in "06-52-54-00-ab-cd-ef" is not ethernet (01)"#
    );
    // `bootif` (lower case) is not the pxelinux key.
    assert_eq!(ok("bootif=01-52-54-00-ab-cd-ef").bootif, None);
}

#[test]
fn unknown_stateless_keys() {
    let (o, d) = resolve("stateless.nope=1 stateless.dir=etc stateless stateless.=x stateless.flag");
    assert_eq!(o, Options::default());
    assert_eq!(
        d,
        [
            "stateless.nope: unknown key",
            "stateless.dir: unknown key",
            "stateless.: unknown key",
            "stateless.flag: unknown key",
        ]
    );
}

#[test]
fn config_file() {
    let config = "# site defaults\n\n  stateless.mode = copy  \nstateless.hostname.prefix='lab'\nstateless.layers=\"/srv/layers/\"\r\n\
                      stateless.emergency=shell\nip=dhcp\nnot a pair\n=x\nstateless.bogus=1\nstateless.tmpfs.size=\"50%\n\
                      stateless.break\nstateless.dirs=etc,var/lib\n";
    let (o, d) = Options::resolve(
        &Cmdline::parse("stateless.emergency=reboot stateless.dirs=var".as_bytes()),
        Some(config.as_bytes()),
    );
    assert_eq!(o.mode, OverlayMode::Copy);
    assert_eq!(o.hostname_prefix, "lab");
    assert_eq!(o.layers, "/srv/layers");
    assert_eq!(o.emergency, Emergency::Reboot, "the command line wins");
    assert_eq!(o.dirs, ["var"], "the command line wins");
    assert_eq!(o.ip, None, "ip= is not taken from the config file");
    let got: Vec<(Origin, &str, &str)> =
        d.iter().map(|d| (d.origin.clone(), d.key.as_str(), d.message.as_str())).collect();
    let cfg = |line| Origin::Config { line };
    assert_eq!(
        got,
        [
            (cfg(7), "ip", "ip: only stateless.* keys belong in the config file"),
            (cfg(8), "not a pair", r#""not a pair": not a key=value line"#),
            (cfg(9), "", r#""=x": line has no key"#),
            (cfg(10), "stateless.bogus", "stateless.bogus: unknown key"),
            (
                cfg(11),
                "stateless.tmpfs.size",
                r#"stateless.tmpfs.size: ""50%" is not a size (digits, then optionally k, m, g or %)"#
            ),
            (cfg(12), "stateless.break", r#""stateless.break": not a key=value line"#),
        ]
    );
    assert_eq!(d[0].to_string(), "/etc/stateless.conf line 7: ip: only stateless.* keys belong in the config file");
    // Config values apply when the command line has none; an invalid cmdline value keeps them.
    let (o, d) = resolve_with(
        "stateless.mode=bad",
        Some("stateless.mode=copy\nstateless.dirs=home\nstateless.hostname=\"a b\""),
    );
    assert_eq!(
        (o.mode, o.dirs, o.hostname.as_deref()),
        (OverlayMode::Copy, vec![DirName::from_static("home")], Some("a b"))
    );
    assert_eq!(d.len(), 1);
    assert_eq!(Options::resolve(&Cmdline::default(), Some(b"")), (Options::default(), vec![]));
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "x".repeat(1000);
    let d = bad(&format!("stateless.mode={long}")).1;
    assert!(d.len() < 120 && d.contains("\"..."), "{d}");
    let d = bad(&format!("stateless.mode=\"{}\"", "é".repeat(100))).1;
    assert!(d.contains("\"..."), "{d}");
}

/// Resolved options and init args as flat `field=value` strings, as the fixture expectations name them.
fn flatten(c: &Cmdline, o: &Options) -> BTreeMap<String, String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        let s = match v {
            serde_json::Value::Object(m) => {
                // `null` marks an absent struct; its fields are then absent too.
                for (k, v) in m {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
                return;
            }
            serde_json::Value::Array(a) => {
                a.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_owned)).collect::<Vec<_>>().join(",")
            }
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "(none)".into(),
            other => other.to_string(),
        };
        out.insert(prefix.trim_start_matches('.').to_owned(), s);
    }
    let mut out = BTreeMap::new();
    walk("", &serde_json::to_value(o).unwrap(), &mut out);
    if let Some(mac) = o.bootif {
        out.insert("bootif".into(), mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
    }
    out.insert("init_args".into(), c.init_args.join(","));
    out
}

/// Checks one fixture against its expectation text; returns the mismatches.
fn check_fixture(cmdline: &str, config: Option<&str>, expect: &str) -> Vec<String> {
    let c = Cmdline::parse(cmdline.as_bytes());
    let (o, d) = Options::resolve(&c, config.map(str::as_bytes));
    let mut flat = flatten(&c, &o);
    flat.insert("diagnostics".into(), d.len().to_string());
    let (mut errors, mut diags, mut has_count) = (Vec::new(), Vec::new(), false);
    for line in expect.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let Some((key, want)) = line.split_once('=') else {
            errors.push(format!("bad expectation line {line:?}"));
            continue;
        };
        has_count |= key == "diagnostics";
        if key == "diag" {
            diags.push(want.to_owned());
            continue;
        }
        match flat.get(key) {
            None => errors.push(format!("unknown field {key:?} (known: {:?})", flat.keys().collect::<Vec<_>>())),
            Some(got) if got != want => errors.push(format!("{key}: expected {want:?}, got {got:?}")),
            Some(_) => {}
        }
    }
    if !has_count {
        errors.push("no diagnostics=N line".into());
    }
    let got: Vec<String> = d.iter().map(|d| d.message.clone()).collect();
    if !diags.is_empty() && diags != got {
        errors.push(format!("diag lines: expected {diags:#?}, got {got:#?}"));
    }
    errors
}

#[test]
fn fixture_checker_can_fail() {
    assert!(check_fixture("quiet", None, "quiet=true\ndiagnostics=0").is_empty());
    assert_eq!(check_fixture("quiet", None, "quiet=false\ndiagnostics=0").len(), 1);
    assert_eq!(check_fixture("quiet", None, "quiet=true").len(), 1);
    assert_eq!(check_fixture("quiet", None, "nosuch=1\ndiagnostics=0").len(), 1);
    assert_eq!(check_fixture("stateless.x=1", None, "diagnostics=1\ndiag=other").len(), 1);
    assert!(check_fixture("stateless.x=1", None, "diagnostics=1\ndiag=stateless.x: unknown key").is_empty());
    assert!(
        check_fixture("ip=dhcp", None, "ip.autoconf=dhcp\nip.client=(none)\nnfsroot=(none)\ndiagnostics=0").is_empty()
    );
}

#[test]
fn fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmdline");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "only {} fixtures in {}", names.len(), dir.display());
    let mut failures = Vec::new();
    for txt in &names {
        let cmdline = std::fs::read_to_string(txt).unwrap();
        let config = std::fs::read_to_string(txt.with_extension("conf")).ok();
        let expect = std::fs::read_to_string(txt.with_extension("expect"))
            .unwrap_or_else(|e| panic!("{}: {e}", txt.with_extension("expect").display()));
        for e in check_fixture(&cmdline, config.as_deref(), &expect) {
            failures.push(format!("{}: {e}", txt.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_byte_that_is_not_utf8_costs_only_its_word() {
    let c = Cmdline::parse(b"ro stateless.hostname=lab\xff3 stateless.dirs=etc quiet \xfe=1 -- single\xff");
    let keys: Vec<&str> = c.params.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["ro", "stateless.dirs", "quiet"]);
    assert_eq!(c.init_args, ["single\u{fffd}"]);
    let (o, d) = Options::resolve(&c, None);
    assert_eq!((o.hostname, o.dirs, o.quiet), (None, vec![DirName::ETC], true));
    let d: Vec<String> = d.into_iter().map(|d| d.message).collect();
    assert_eq!(d, [r#"stateless.hostname: "lab\xff3" is not UTF-8, ignored"#]);

    let config = b"stateless.dirs=var\nstateless.hostname=a\xffb\nstateless.mode=copy\n";
    let (o, d) = Options::resolve(&Cmdline::default(), Some(config));
    assert_eq!((o.dirs, o.mode, o.hostname), (vec![DirName::VAR], OverlayMode::Copy, None));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].origin, Origin::Config { line: 2 });
    assert_eq!(d[0].message, r#""stateless.hostname=a\xffb": not UTF-8, line ignored"#, "escaped once");
    let long = [&b"stateless.hostname="[..], &[b'x'; 44], b"\xff\xfe"].concat();
    let (_, d) = Options::resolve(&Cmdline::default(), Some(&long));
    let cut = format!("\"stateless.hostname={}\\xff\"...: not UTF-8, line ignored", "x".repeat(44));
    assert_eq!(d[0].message, cut, "cut after 64 characters, a bad byte one of them");
}

/// Found by the `cmdline` fuzz target: the kernel's isspace() takes the byte 0xA0 for a
/// blank, so a word holding U+00A0 (`c2 a0`) or U+0520 (`d4 a0`) is two words for the
/// kernel and for init; it was one word here.
#[test]
fn byte_a0_ends_a_word_as_in_the_kernel() {
    let c = Cmdline::parse("stateless.hostname=lab\u{a0}quiet stateless.dirs=etc\u{520}var".as_bytes());
    assert_eq!(c.params, [p("quiet", None), p("var", None)]);
    let invalid: Vec<(&str, Option<&str>)> = c.invalid.iter().map(|p| (p.key.as_str(), p.value.as_deref())).collect();
    assert_eq!(invalid, [("stateless.hostname", Some("lab\\xc2")), ("stateless.dirs", Some("etc\\xd4"))]);
    // Inside quotes it stays, as the kernel keeps it.
    assert_eq!(words("x=\"a\u{a0}b\""), [("x".into(), Some("a\u{a0}b".into()))]);
}
