//! Shell-style pattern matching as kmod does it for `modules.alias` (glibc `fnmatch(pattern,
//! name, 0)`): `*` any run of bytes (`/` included), `?` one byte, `[...]` one byte of a set
//! (ranges `a-z`, negated by a leading `!` or `^`, `]` first taken literally), `\` quotes the
//! next byte. Bytes, not characters: modaliases are ASCII, and the index is untrusted, so an
//! odd byte only fails to match.
//!
//! Linear in the name for each position a `*` can resume from: at most
//! `pattern.len() * name.len()` steps, never exponential (one pending `*` is kept, as glibc does
//! when no later `*` can change the outcome).

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // Where to resume after the last `*`: the pattern position after it, and the name position
    // it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(_) => single(pattern, p, name.get(n).copied()),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((after, swallowed))) => {
                // Let the `*` take one more byte and retry the rest.
                p = after;
                n = swallowed + 1;
                star = Some((after, swallowed + 1));
            }
            (None, None) => return false,
        }
    }
    pattern.get(p..).is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

/// Matches one pattern element at `p` against `byte`: the position after the element, or `None`.
fn single(pattern: &[u8], p: usize, byte: Option<u8>) -> Option<usize> {
    let byte = byte?;
    match pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => match bracket(pattern, p + 1, byte) {
            Some((true, next)) => Some(next),
            Some((false, _)) => None,
            // No closing `]`: the `[` is an ordinary byte.
            None => (byte == b'[').then_some(p + 1),
        },
        b'\\' => match pattern.get(p + 1) {
            Some(&quoted) => (quoted == byte).then_some(p + 2),
            None => None, // a trailing `\` matches nothing, as in glibc
        },
        &literal => (literal == byte).then_some(p + 1),
    }
}

/// The set starting at `p` (after `[`): whether `byte` is in it and the position after `]`;
/// `None` when the set is not closed.
fn bracket(pattern: &[u8], mut p: usize, byte: u8) -> Option<(bool, usize)> {
    let negated = matches!(pattern.get(p), Some(b'!' | b'^'));
    if negated {
        p += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let mut c = *pattern.get(p)?;
        if c == b']' && !first {
            return Some((found != negated, p + 1));
        }
        first = false;
        if c == b'\\' {
            p += 1;
            c = *pattern.get(p)?;
        }
        // A range `c-d`, unless the `-` is last before `]`.
        match (pattern.get(p + 1), pattern.get(p + 2)) {
            (Some(b'-'), Some(&end)) if end != b']' => {
                let (end, skip) = match end {
                    b'\\' => (*pattern.get(p + 3)?, 4),
                    end => (end, 3),
                };
                found |= c <= byte && byte <= end;
                p += skip;
            }
            _ => {
                found |= c == byte;
                p += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        matches(pattern.as_bytes(), name.as_bytes())
    }

    #[test]
    fn stars_and_questions() {
        assert!(m("pci:v00008086d0000100Esv*sd*bc*sc*i*", "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"));
        assert!(!m("pci:v00008086d0000100Esv*sd*bc*sc*i*", "pci:v00008086d0000100Fsv00001AF4sd00001100bc02sc00i00"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("a?c", "abc") && !m("a?c", "ac"));
        assert!(m("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(m("a*", "a/b"), "a star crosses '/' (no FNM_PATHNAME)");
        assert!(!m("", "a") && m("", ""));
    }

    #[test]
    fn brackets() {
        assert!(m("usb:v*p*d*dc*dsc*dp*ic03isc01ip0[12]in*", "usb:v1D6Bp0002d0510dc09dsc00dp03ic03isc01ip02in00"));
        assert!(!m("ip0[12]", "ip03"));
        assert!(m("[a-c]x", "bx") && !m("[a-c]x", "dx"));
        assert!(m("[!a-c]x", "dx") && !m("[!a-c]x", "ax"));
        assert!(m("[^a]", "b") && !m("[^a]", "a"));
        assert!(m("[]a]", "]") && m("[]a]", "a"), "']' first is literal");
        assert!(m("[a-]", "-"), "'-' last is literal");
        assert!(m("[", "[") && !m("[ab", "a"), "an unclosed '[' is a plain byte");
        assert!(m("dmi*:svnQEMU:*", "dmi:bvnSeaBIOS:svnQEMU:pnStandardPC"));
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(!m("a\\", "a\\"), "a trailing backslash loses, as in glibc");
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let pattern = "*a".repeat(200) + "b";
        let name = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &name));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(!m("[", "") && !m("[a-", "a") && !m("[\\", "\\"));
    }
}
