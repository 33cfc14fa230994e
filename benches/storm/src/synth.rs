//! A synthetic trace: what a boot would ask of a directory tree, walked in name order: MNT,
//! FSINFO, PATHCONF, GETATTR of the root; in each directory ACCESS and READDIRPLUS; each entry
//! looked up; a symlink read; a file's GETATTR (by the listing's handle), ACCESS and its READs,
//! all at once as readahead sends them; every fourth file a LOOKUP that finds nothing, as a
//! search path makes. Times are made up (1 ms a step) and carry only the order.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{json, Value};

pub fn synth(root: &Path, export: &str, read_size: u32) -> Result<String, String> {
    let mut trace =
        Writer { out: String::new(), tick: 0, next_id: 0, files: 0, read_size: u64::from(read_size.max(1)) };
    let root_id = trace.id();
    trace.step(json!({"proc": "MNT", "path": export, "new": root_id}));
    trace.step(json!({"proc": "NULL"}));
    for proc in ["FSINFO", "PATHCONF", "GETATTR"] {
        trace.step(json!({"proc": proc, "fh": root_id}));
    }
    trace.walk(root, root_id)?;
    Ok(trace.out)
}

struct Writer {
    out: String,
    tick: u64,
    next_id: u32,
    files: u64,
    read_size: u64,
}

enum Kind {
    Dir,
    File(u64),
    Symlink,
}

impl Writer {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Calls made together, answered before the next step.
    fn together(&mut self, calls: Vec<Value>) {
        let t = self.tick as f64 / 1000.0;
        for mut call in calls {
            if let Value::Object(fields) = &mut call {
                fields.insert("t".to_string(), json!(t));
                fields.insert("rt".to_string(), json!(t + 0.0005));
            }
            self.out.push_str(&call.to_string());
            self.out.push('\n');
        }
        self.tick += 1;
    }

    fn step(&mut self, call: Value) {
        self.together(vec![call]);
    }

    fn walk(&mut self, dir: &Path, dir_id: u32) -> Result<(), String> {
        let read = |e: std::io::Error| format!("{}: {e}", dir.display());
        let mut children = Vec::new();
        for entry in fs::read_dir(dir).map_err(read)? {
            let entry = entry.map_err(read)?;
            let meta = entry.path().symlink_metadata().map_err(read)?;
            let kind = match meta.file_type() {
                t if t.is_dir() => Kind::Dir,
                t if t.is_file() => Kind::File(meta.size()),
                t if t.is_symlink() => Kind::Symlink,
                _ => continue,
            };
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| format!("{}: a name that is not UTF-8: {n:?}", dir.display()))?;
            children.push((name, kind));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        let ids: Vec<u32> = children.iter().map(|_| self.id()).collect();
        let entries: serde_json::Map<String, Value> =
            children.iter().zip(&ids).map(|((n, _), id)| (n.clone(), json!(id))).collect();
        self.step(json!({"proc": "ACCESS", "fh": dir_id}));
        self.step(json!({"proc": "READDIRPLUS", "fh": dir_id, "cookie": 0, "dircount": 65536, "maxcount": 65536, "entries": entries}));
        for ((name, kind), entry_id) in children.iter().zip(ids) {
            let id = self.id();
            self.step(json!({"proc": "LOOKUP", "fh": dir_id, "name": name, "new": id}));
            match kind {
                Kind::Symlink => self.step(json!({"proc": "READLINK", "fh": id})),
                Kind::Dir => {
                    self.step(json!({"proc": "GETATTR", "fh": id}));
                    self.walk(&dir.join(name), id)?;
                }
                Kind::File(size) => {
                    self.step(json!({"proc": "GETATTR", "fh": entry_id}));
                    self.step(json!({"proc": "ACCESS", "fh": id}));
                    let reads = (0..size.div_ceil(self.read_size))
                        .map(|k| k * self.read_size)
                        .map(|offset| json!({"proc": "READ", "fh": id, "offset": offset, "count": self.read_size.min(size - offset)}))
                        .collect();
                    self.together(reads);
                    self.files += 1;
                    let missing = format!("{name}.missing");
                    if self.files.is_multiple_of(4) && !dir.join(&missing).exists() {
                        self.step(json!({"proc": "LOOKUP", "fh": dir_id, "name": missing, "status": 2}));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    #[test]
    fn a_tree_becomes_a_trace_the_replay_takes() {
        let root = std::env::temp_dir().join(format!("storm-synth-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc")).unwrap();
        for (name, size) in [("a", 0), ("b", 10), ("c", 300), ("d", 5)] {
            fs::write(root.join("etc").join(name), vec![0; size]).unwrap();
        }
        std::os::unix::fs::symlink("etc/b", root.join("link")).unwrap();
        let text = synth(&root, "/storm", 128).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let trace = Trace::parse(&text).unwrap();
        let counts: Vec<_> = trace.counts().into_iter().map(|(k, v)| format!("{k} {v}")).collect();
        // root: 3 + 2 LOOKUPs; etc: GETATTR, ACCESS, READDIRPLUS, per file LOOKUP, GETATTR, ACCESS;
        // READs: 0 + 1 + 3 + 1; d is the fourth file: a LOOKUP that fails.
        assert_eq!(
            counts,
            [
                "ACCESS 6",
                "FSINFO 1",
                "GETATTR 6",
                "LOOKUP 7",
                "MNT 1",
                "NULL 1",
                "PATHCONF 1",
                "READ 5",
                "READDIRPLUS 2",
                "READLINK 1"
            ]
        );
        // c's three READs go out together.
        let reads: Vec<usize> = trace
            .calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.proc.name() == "READ")
            .map(|(i, _)| trace.ready[i])
            .collect();
        assert_eq!(reads[1], reads[2]);
        assert_eq!(reads[2], reads[3]);
    }
}
