//! The layout's rule, checked: a module of `src/` uses only the modules listed before it, so
//! there are no import cycles, and `model` (the vocabulary) uses nothing of the crate.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

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
