//! Untrusted bytes (file names, command-line values) made safe to show on one line.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes as lower-case hex, two digits each: a digest as sha256sum, a `.roothash` file and
/// veritysetup show it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes [`hex`] wrote (either case); `None` for an odd length or a digit that is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let pairs = text.as_bytes().chunks(2);
    let byte = |pair: &[u8]| {
        let digits =
            std::str::from_utf8(pair).ok().filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
        digits.and_then(|p| u8::from_str_radix(p, 16).ok())
    };
    pairs.map(byte).collect()
}

/// A SHA-256 digest written as 64 hex digits (either case), as lower-case hex; `None` for
/// anything else: a `.sha256` line's first word, a `.roothash` file, `roothash=`.
pub fn sha256_hex(word: &[u8]) -> Option<String> {
    (word.len() == 64 && word.iter().all(u8::is_ascii_hexdigit))
        .then(|| String::from_utf8_lossy(word).to_ascii_lowercase())
}

/// A path with `suffix` added to its last component: the file beside it (`x.sqfs.sha256`).
pub fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    std::path::PathBuf::from(name)
}

/// Bytes as text for messages, the report and every file `stateless` reads back: control
/// characters (C0, DEL and C1), the characters that reorder or break a line on a terminal
/// ([`hidden`]), backslashes and bytes that are not UTF-8 are written `\xNN`, one escape per
/// byte (a C1 character is its two UTF-8 bytes, `\xc2\x85`), so a file name can never forge a
/// log line, move the terminal's cursor or show other text than it holds, and [`unescape`]
/// gives back exactly the bytes. This is the one rule for anything `stateless` prints.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' || hidden(c) {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
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

/// Text read back from a file `stateless` wrote escaped (the report), shown escaped exactly
/// once: escapes it holds are taken as written, anything a hostile or older file holds raw is
/// escaped ([`escape`] of [`unescape`]). A rejected path `a\x1bb` stays `a\x1bb`, not
/// `a\x5cx1bb`.
pub fn shown(text: &str) -> String {
    escape(&unescape(text))
}

/// `s` quoted and escaped for a message ([`escape`], the one rule for what is printed), cut
/// at 64 chars.
pub fn quoted(s: impl AsRef<[u8]>) -> String {
    let s = s.as_ref();
    // The bytes of the first 64 characters, a byte that is not UTF-8 counting as one.
    let chars =
        s.utf8_chunks().flat_map(|c| c.valid().chars().map(char::len_utf8).chain(c.invalid().iter().map(|_| 1)));
    let cut: usize = chars.take(64).sum();
    let more = if cut < s.len() { "..." } else { "" };
    format!("\"{}\"{more}", escape(s.get(..cut).unwrap_or(s)))
}

/// Characters a terminal does not show as themselves: every format character (Unicode's
/// general category Cf, as of Unicode 16: the soft hyphen, zero-width marks, the bidirectional
/// marks, embeddings, overrides and isolates, which make `evil\u{202e}txt.sh` read backwards,
/// the Arabic letter mark, the byte order mark, interlinear annotations, tag characters), and
/// the line and paragraph separators.
pub fn hidden(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// `value` as pretty JSON that is as safe to print as [`escape`]'s text: the characters
/// [`escape`] writes as `\xNN` (control, C1, [`hidden`]) are written `\uXXXX` (JSON itself only
/// escapes C0), so a JSON reader gets the same string and a terminal shows it as it is.
///
/// # Errors
/// As [`serde_json::to_string_pretty`].
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    write_json(&mut out, value)?;
    // The serializer writes only UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`to_json`] written to `out` as it goes, for output too large to hold.
///
/// # Errors
/// As [`serde_json::to_writer_pretty`].
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut dyn std::io::Write, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(out, Shown::default()))
}

/// serde_json's pretty formatter, with [`to_json`]'s escapes.
#[derive(Default)]
struct Shown(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for Shown {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_control() || hidden(c) {
                write!(w, "\\u{:04x}", u32::from(c))?;
            } else {
                w.write_all(c.encode_utf8(&mut [0; 4]).as_bytes())?;
            }
        }
        Ok(())
    }
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// [`escape`] for a path.
pub fn escape_path(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

/// The bytes [`escape`] wrote: each `\xNN` is the byte NN.
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
    fn text_read_back_is_shown_escaped_once() {
        let recorded = escape(b"a\x1bb\\c\xff");
        assert_eq!(shown(&recorded), recorded, "escaped when recorded: as it is");
        assert_eq!(shown("raw\x1b[2J\u{202e}"), "raw\\x1b[2J\\xe2\\x80\\xae", "raw in a hostile file: escaped");
        assert_eq!(shown("a lone \\ and \\xzz"), "a lone \\x5c and \\x5cxzz");
    }

    #[test]
    fn unhex_reads_back_hex_and_nothing_else() {
        assert_eq!(unhex(&hex(b"\x00a\xff")), Some(b"\x00a\xff".to_vec()));
        assert_eq!(unhex("FF"), Some(vec![0xff]));
        assert_eq!(unhex(""), Some(vec![]));
        for bad in ["f", "+f", "0g", "fff", "\u{e9}"] {
            assert_eq!(unhex(bad), None, "{bad}");
        }
    }

    #[test]
    fn escape_keeps_lines_whole() {
        assert_eq!(escape(b"etc/a\tb\n"), "etc/a\\x09b\\x0a");
        assert_eq!(escape(b"x\\y\xff\x1b[2J"), "x\\x5cy\\xff\\x1b[2J");
        assert_eq!(escape("é".as_bytes()), "é");
        assert_eq!(escape("a\u{85}b".as_bytes()), "a\\xc2\\x85b", "a C1 character, byte by byte");
        assert_eq!(escape(b"a\x85b"), "a\\x85b", "the raw byte is another name");
        assert_eq!(escape("x\u{202e}hs.txt".as_bytes()), "x\\xe2\\x80\\xaehs.txt", "no reordering");
        assert_eq!(escape("a\u{61c}b".as_bytes()), "a\\xd8\\x9cb", "the Arabic letter mark");
        // Every format character (category Cf) and the line and paragraph separators, as
        // Python's unicodedata lists them (Unicode 14) and as Unicode 16 added.
        let cf = [0xad, 0x600, 0x605, 0x61c, 0x6dd, 0x70f, 0x890, 0x891, 0x8e2, 0x180e, 0x200b, 0x200f, 0x2028, 0x2029]
            .into_iter()
            .chain([0x202a, 0x202e, 0x2060, 0x2064, 0x2066, 0x206f, 0xfeff, 0xfff9, 0xfffb, 0x110bd, 0x110cd])
            .chain([0x13430, 0x13438, 0x13439, 0x1343f, 0x1bca0, 0x1bca3, 0x1d173, 0x1d17a, 0xe0001, 0xe0020, 0xe007f]);
        for c in cf.map(|c| char::from_u32(c).unwrap()) {
            assert!(hidden(c), "{:x}", u32::from(c));
            assert!(escape(c.to_string().as_bytes()).starts_with("\\x"), "{:x}", u32::from(c));
        }
        for shown in ['a', 'é', '€', '\u{2065}', '\u{fffc}', '\u{1f600}'] {
            assert_eq!(hidden(shown), shown == '\u{2065}', "{shown:?}");
        }
    }

    #[test]
    fn json_shows_every_character_as_itself() {
        let text = "a\u{1b}[2J\u{9b}\u{7f}\u{202e}é\"\\\n";
        let json = to_json(&[text]).unwrap();
        assert_eq!(json, "[\n  \"a\\u001b[2J\\u009b\\u007f\\u202eé\\\"\\\\\\n\"\n]");
        assert_eq!(serde_json::from_str::<Vec<String>>(&json).unwrap(), [text]);
    }

    #[test]
    fn unescape_reverses_escape() {
        let c1 = "etc/a\u{85}b\u{9b}".as_bytes();
        for bytes in [&b"etc/a\tb\n"[..], b"x\\y\xff\x1b[2J", "é".as_bytes(), b"\\x4", b"\\xzz", b"", c1, b"\x85"] {
            assert_eq!(unescape(&escape(bytes)), bytes, "{bytes:?}");
        }
        assert_eq!(unescape("a\\x"), b"a\\x", "a short escape is text");
    }
}
