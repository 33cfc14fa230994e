//! The command line and /etc/stateless.conf at their limits, through what the boot reads them
//! with (`boot::options`: the kernel's tokenizer, the config file read as the image sees it,
//! the resolver): a 4 MB command line of 1000 words of 4 KiB, and a config file of exactly
//! 64 KiB and of one byte more. The outcome is checked, not the time.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::TempDir;
use stateless::boot::{options, CONFIG_LIMIT};
use stateless::fs::root::ImageRoot;
use stateless::model::options::{Options, Origin, OverlayMode};
use stateless::model::writable::DirName;

/// A value of `len` bytes: `start` and then `fill` repeated.
fn value(start: &str, fill: char, len: usize) -> String {
    let mut v = start.to_string();
    v.extend(std::iter::repeat_n(fill, len - start.len()));
    v
}

/// An image root holding `/etc/stateless.conf` when `config` is given.
fn image(config: Option<&[u8]>) -> (TempDir, ImageRoot) {
    let tmp = TempDir::new("limits");
    std::fs::create_dir_all(tmp.0.join("etc")).unwrap();
    if let Some(config) = config {
        std::fs::write(tmp.0.join("etc/stateless.conf"), config).unwrap();
    }
    let root = ImageRoot::open(&tmp.0).unwrap();
    (tmp, root)
}

#[test]
fn a_command_line_of_a_thousand_4k_words() {
    const LEN: usize = 4096;
    let init = value("/sbin/", 'i', LEN);
    let layers = value("/srv/", 'l', LEN);
    let host = value("h", 'h', LEN);
    let dir = value("var/", 'd', LEN);
    let softlevel = value("unionfs,", 's', LEN);
    let modules = "e1000,".repeat(LEN / 6);
    let mut words = vec![
        format!("stateless.init={init}"),
        format!("stateless.layers={layers}"),
        format!("stateless.hostname=\"{host}\""),
        format!("stateless.dirs={dir}"),
        format!("softlevel={softlevel}"),
        format!("stateless.modules={modules}"),
        format!("stateless.tmpfs.size={}", value("1", '0', LEN)),
        format!("stateless.mode={}", value("copy", 'y', LEN)),
    ];
    let known = words.len();
    for i in known..1000 {
        words.push(match i % 3 {
            0 => format!("stateless.unknown{i}={}", value("", 'u', LEN)),
            1 => format!("mod{i}.param={}", value("", 'p', LEN)),
            _ => format!("kernel{i}={}", value("", 'k', LEN)),
        });
    }
    let cmdline = words.join(" ");
    assert!(cmdline.len() > 4_000_000, "{} bytes", cmdline.len());
    let (_tmp, root) = image(None);
    let (o, diagnostics) = options(cmdline.as_bytes(), &root);

    assert_eq!((o.init, o.layers, o.hostname), (Some(init), layers, Some(host)));
    let dirs: Vec<&str> = o.dirs.iter().map(DirName::as_str).collect();
    assert_eq!((dirs, o.softlevel.map(|s| s.len())), (vec![dir.as_str()], Some(2)));
    assert_eq!(o.modules.extra.len(), LEN / 6);
    assert_eq!(o.mode, OverlayMode::Overlay, "a 4k mode is no mode");
    assert_eq!(o.tmpfs_size, None, "a 4k-digit size is too large");
    let params: Vec<&str> = o.modules.params.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<String> = (known..1000).filter(|i| i % 3 == 1).map(|i| format!("mod{i}.param")).collect();
    assert_eq!(params, want);
    assert!(o.modules.params.iter().all(|(_, v)| v.as_ref().is_some_and(|v| v.len() == LEN)));
    // Each unknown key reported once, besides the two bad values; no word of the kernel's.
    let unknown: Vec<&str> =
        diagnostics.iter().filter(|d| d.message.ends_with("unknown key")).map(|d| &*d.key).collect();
    let want: Vec<String> = (known..1000).filter(|i| i % 3 == 0).map(|i| format!("stateless.unknown{i}")).collect();
    assert_eq!(unknown, want);
    let others: Vec<&str> =
        diagnostics.iter().filter(|d| !d.message.ends_with("unknown key")).map(|d| &*d.key).collect();
    assert_eq!(others, ["stateless.tmpfs.size", "stateless.mode"]);
    assert!(diagnostics.iter().all(|d| d.origin == Origin::Cmdline && d.message.len() < 512), "messages are cut");
}

#[test]
fn a_config_file_at_its_limit_is_read_whole_and_one_byte_more_is_refused() {
    let limit = usize::try_from(CONFIG_LIMIT).unwrap();
    let head = "stateless.mode=copy\n";
    let tail = "stateless.dirs=var\n";
    // Comment lines between, and the last line of the file in the last bytes of the limit.
    let mut config = head.to_string();
    while config.len() + 80 + tail.len() <= limit {
        config.push_str(&value("#", '-', 79));
        config.push('\n');
    }
    config.push_str(&value("#", ' ', limit - tail.len() - config.len() - 1));
    config.push('\n');
    config.push_str(tail);
    assert_eq!(config.len(), limit);

    let (_tmp, root) = image(Some(config.as_bytes()));
    let (o, diagnostics) = options(b"quiet", &root);
    assert_eq!(diagnostics, []);
    assert_eq!((o.mode, o.dirs, o.quiet), (OverlayMode::Copy, vec![DirName::VAR], true));

    config.insert(0, '\n');
    let (_tmp, root) = image(Some(config.as_bytes()));
    let (o, diagnostics) = options(b"quiet", &root);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert_eq!(diagnostics[0].origin, Origin::Config { line: 0 });
    assert!(diagnostics[0].message.contains(&format!("larger than {CONFIG_LIMIT} bytes")), "{diagnostics:?}");
    assert_eq!(o, Options { quiet: true, ..Options::default() }, "none of the file, all of the command line");
}

#[test]
fn a_config_file_of_one_64k_line_and_of_many_unknown_keys() {
    let limit = usize::try_from(CONFIG_LIMIT).unwrap();
    let key = "stateless.hostname=";
    let line = format!("{key}{}", value("", 'a', limit - key.len()));
    let (_tmp, root) = image(Some(line.as_bytes()));
    let (o, diagnostics) = options(b"", &root);
    assert_eq!((o.hostname.map(|h| h.len()), diagnostics), (Some(limit - key.len()), vec![]));

    let mut config = String::new();
    let mut n = 0;
    while config.len() + 40 <= limit {
        config.push_str(&format!("stateless.unknown{n}=1\n"));
        n += 1;
    }
    let (_tmp, root) = image(Some(config.as_bytes()));
    let (o, diagnostics) = options(b"", &root);
    assert_eq!(o, Options::default());
    assert_eq!(diagnostics.len(), n);
    assert!(diagnostics.iter().enumerate().all(|(i, d)| d.origin == Origin::Config { line: i + 1 }));
}
