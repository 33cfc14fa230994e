//! `cargo +nightly fuzz run kmod_index`: any bytes as the module index files (split on the
//! first four 0xFF bytes into modules.dep, modules.alias, modules.softdep, modules.builtin and
//! modules.builtin.modinfo), then every name in them resolved and expanded. Besides not
//! panicking or hanging, no module file may lie outside the module dir.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stateless::kmod::config::Config;
use stateless::kmod::index::Index;
use stateless::kmod::resolve::Rules;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |&b| b == 0xff);
    let mut next = || parts.next().unwrap_or_default();
    let (dep, alias, softdep, builtin, modinfo) = (next(), next(), next(), next(), next());
    let index = Index::parse(dep, alias, softdep, builtin, modinfo);
    for module in index.modules.values() {
        assert!(!module.path.starts_with('/') && !module.path.split('/').any(|c| c == ".." || c.is_empty()));
    }
    let config = Config::default();
    let rules = Rules { index: &index, config: &config };
    let names: Vec<String> = index.modules.keys().cloned().chain(index.aliases.iter().map(|(p, _)| String::from_utf8_lossy(p).into_owned())).take(64).collect();
    for name in &names {
        let mut order = Vec::new();
        for found in rules.lookup(name) {
            rules.probe_list(&found.module, &mut order);
        }
        let mut seen = std::collections::BTreeSet::new();
        assert!(order.iter().all(|s| seen.insert(s.module.clone())), "a module twice in a probe list");
    }
});
