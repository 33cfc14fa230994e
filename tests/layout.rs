//! The layout's rules, checked: a module of `src/` uses only the modules listed before it, so
//! there are no import cycles, and `model` (the vocabulary) uses nothing of the crate; no two
//! public types share a name, so a name says which one is meant. youki splits by concern too;
//! none of STYLE.md's anchors checks it.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;

/// Leaf first, as README.md's Layout lists them.
const ORDER: [&str; 9] = ["model", "config", "log", "fs", "net", "sys", "kmod", "boot", "tools"];

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// The top-level modules `code` names as `crate::x` or in `crate::{x, y::z}`.
fn used_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| s.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut names = Vec::new();
    for used in code.split("crate::").skip(1) {
        match used.strip_prefix('{') {
            Some(group) => {
                let inner = group.split('}').next().unwrap_or("");
                names.extend(inner.split(',').map(ident));
            }
            None => names.push(ident(used)),
        }
    }
    names
}

#[test]
fn grouped_imports_count_too() {
    assert_eq!(used_modules("use crate::{boot::x, fs};\nlet a = crate::net::f();"), ["boot", "fs", "net"]);
}

#[test]
fn modules_use_only_the_modules_before_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (rank, module) in ORDER.iter().enumerate() {
        let mut files = Vec::new();
        sources(&src.join(module), &mut files);
        assert!(!files.is_empty(), "src/{module}/ is missing");
        for (file, text) in files {
            // Code only: doc comments may link anywhere.
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
            for name in used_modules(&code) {
                let Some(used_rank) = ORDER.iter().position(|m| *m == name) else { continue };
                assert!(
                    used_rank <= rank,
                    "{file}: {module} uses crate::{name}, which comes after it in the layout {ORDER:?}"
                );
            }
        }
    }
    let mut top: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".rs"))
        .collect();
    top.sort();
    let mut listed: Vec<String> = ORDER.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(top, listed, "every folder of src/ is in the layout");
}

/// The types `code` declares public (`pub` or `pub(...)`: struct, enum, union, type, trait),
/// with their line numbers.
fn public_types(code: &str) -> Vec<(String, usize)> {
    let mut names = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("pub") else { continue };
        let rest = match rest.strip_prefix('(') {
            Some(scoped) => scoped.split_once(')').map_or("", |(_, rest)| rest),
            None => rest,
        };
        let mut words = rest.split_whitespace().skip_while(|w| *w == "unsafe");
        if let (Some("struct" | "enum" | "union" | "type" | "trait"), Some(name)) = (words.next(), words.next()) {
            let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            names.push((name, n + 1));
        }
    }
    names
}

/// Each name declared public in more than one place of `files`, with those places.
fn shared_names(files: &[(String, String)]) -> Vec<String> {
    let mut places: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, text) in files {
        for (name, line) in public_types(text) {
            places.entry(name).or_default().push(format!("{file}:{line}"));
        }
    }
    places.into_iter().filter(|(_, at)| at.len() > 1).map(|(name, at)| format!("{name}: {}", at.join(", "))).collect()
}

#[test]
fn public_types_of_every_visibility() {
    let code = "pub struct A;\npub(crate) enum B {}\nstruct C;\n    pub type D = u8;\npub trait E {}\n\
                pub fn f() {}\npub(super) struct F<'a>(&'a u8);\npub(in crate::x) union G {}\npub use x::H;";
    let names: Vec<String> = public_types(code).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["A", "B", "D", "E", "F", "G"]);
}

#[test]
fn a_shared_name_is_caught() {
    let files = [
        ("src/a.rs".to_string(), "/// One.\npub struct Step;\npub enum Kind {}".to_string()),
        ("src/b.rs".to_string(), "struct Kind;\n\npub(crate) enum Step {}".to_string()),
    ];
    assert_eq!(shared_names(&files), ["Step: src/a.rs:2, src/b.rs:3"]);
}

#[test]
fn no_two_public_types_share_a_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let prefix = format!("{}/", root.display());
    let mut files: Vec<(String, String)> =
        files.into_iter().map(|(file, text)| (file.trim_start_matches(&prefix).to_string(), text)).collect();
    files.sort();
    let shared = shared_names(&files);
    assert!(shared.is_empty(), "public types that share a name (rename the less central one):\n{}", shared.join("\n"));
}
