//! Untrusted bytes (file names, command-line values) made safe to show on one line.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes as text for messages and the report: control characters, backslashes and bytes that
/// are not UTF-8 are written `\xNN`, so a file name can never forge a log line or move the
/// terminal's cursor.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`escape`] for a path.
pub fn escape_path(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_lines_whole() {
        assert_eq!(escape(b"etc/a\tb\n"), "etc/a\\x09b\\x0a");
        assert_eq!(escape(b"x\\y\xff\x1b[2J"), "x\\x5cy\\xff\\x1b[2J");
        assert_eq!(escape("é".as_bytes()), "é");
    }
}
