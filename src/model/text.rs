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

/// The bytes [`escape`] wrote: each `\xNN` is the byte NN (a C1 control character, escaped by
/// its code point, comes back as one byte: the one case that does not round-trip).
pub fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let hex = tail.strip_prefix(b"x").and_then(|t| t.get(..2)).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if first == b'\\' => {
                out.push(byte);
                rest = tail.get(3..).unwrap_or_default();
            }
            _ => {
                out.push(first);
                rest = tail;
            }
        }
    }
    out
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

    #[test]
    fn unescape_reverses_escape() {
        for bytes in [&b"etc/a\tb\n"[..], b"x\\y\xff\x1b[2J", "é".as_bytes(), b"\\x4", b"\\xzz", b""] {
            assert_eq!(unescape(&escape(bytes)), bytes, "{bytes:?}");
        }
        assert_eq!(unescape("a\\x"), b"a\\x", "a short escape is text");
    }
}
