//! Ed25519 signatures of images: the keys an admin makes with common tools, the trusted keys an
//! initramfs carries ([`crate::model::paths::TRUSTED_KEYS`]), and signature files in signify's
//! format, so `signify-openbsd -V` checks one made with a signify key. Pure: no I/O; every input
//! is untrusted and bounded.
//!
//! - A public key file ([`public_key`]): OpenSSL's SPKI PEM (`openssl pkey -pubout`), signify's
//!   `.pub` (`untrusted comment: …` then base64 of `Ed` ‖ 8-byte key number ‖ key), or one
//!   `ssh-ed25519 AAAA… comment` line.
//! - A secret key file ([`secret_key`]): OpenSSL's unencrypted PKCS#8 PEM (`openssl genpkey
//!   -algorithm ed25519`) or signify's secret key without a passphrase (`signify-openbsd -G -n`).
//! - A signature file ([`sign`], [`verify`]): `untrusted comment: …\n` then base64 of `Ed` ‖
//!   8-byte key id ‖ 64-byte signature, then `\n`. The key id is a signify key's number, else
//!   the first 8 bytes of SHA-256(public key): it picks the key to check with.
//! - The trusted keys file ([`trusted_keys`], [`trusted_keys_file`]): a line per key,
//!   `ed25519 <base64 of the 32-byte key> <16 hex digits of its id>[ <comment>]`; `#` lines and
//!   empty lines skipped; any other line is an error (the boot refuses rather than trusting less
//!   than the admin meant).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256, Sha512};

use crate::model::text::{escape, hex, hidden};

/// The largest signature file read (signify's comment is at most 1024 bytes).
pub const SIGNATURE_MAX: usize = 2048;
/// The largest key file read, public or secret.
pub const KEY_FILE_MAX: usize = 16 << 10;
/// The largest trusted keys file read.
pub const TRUSTED_MAX: usize = 64 << 10;
/// The most keys a trusted keys file holds.
const KEYS_MAX: usize = 256;
/// The longest comment kept (a longer one is cut).
const COMMENT_MAX: usize = 200;

const SIGNIFY_COMMENT: &str = "untrusted comment: ";
/// signify's algorithm tag: Ed25519 over the message itself.
const ED: &[u8; 2] = b"Ed";
/// The DER of an Ed25519 SubjectPublicKeyInfo before its 32-byte key (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// The DER of an Ed25519 PKCS#8 v1 private key before its 32-byte seed (RFC 8410).
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const SSH_ED25519: &str = "ssh-ed25519";

/// A public key a client trusts, by the id signatures name it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: [u8; 32],
    /// A signify key's number, else the first 8 bytes of SHA-256(key).
    pub id: [u8; 8],
    /// Printable ([`escape`]d), at most 200 bytes.
    pub comment: String,
}

impl TrustedKey {
    /// The key as people compare it, whatever file it came in: as `ssh-keygen -l` shows it,
    /// `SHA256:` and the unpadded base64 of the SHA-256 of its ssh blob.
    pub fn fingerprint(&self) -> String {
        let digest: [u8; 32] = Sha256::digest(ssh_blob(&self.key)).into();
        format!("SHA256:{}", base64(&digest).trim_end_matches('='))
    }

    /// Whether the two could be confused: the same key, or the same id (a signature names one
    /// key by its id).
    pub fn clashes(&self, other: &TrustedKey) -> bool {
        self.key == other.key || self.id == other.id
    }
}

/// The id of a key that came without one: the first 8 bytes of SHA-256(key).
fn id_of(key: &[u8; 32]) -> [u8; 8] {
    let digest = Sha256::digest(key);
    let mut id = [0; 8];
    id.iter_mut().zip(digest.iter()).for_each(|(i, d)| *i = *d);
    id
}

/// A key's comment as kept: escaped, cut to 200 bytes on a character's boundary.
pub fn comment(raw: &[u8]) -> String {
    let mut text = escape(raw.trim_ascii());
    let mut cut = COMMENT_MAX.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

/// A key that is a point of the curve and not of small order (which would accept signatures
/// anyone can make).
fn checked(key: [u8; 32], id: [u8; 8], comment: String) -> Result<TrustedKey, String> {
    match VerifyingKey::from_bytes(&key) {
        Ok(point) if !point.is_weak() => Ok(TrustedKey { key, id, comment }),
        _ => Err("not a usable ed25519 public key (not a curve point, or a weak one)".into()),
    }
}

/// The two lines of a signify file: its comment and its base64, decoded.
fn signify_lines(text: &str) -> Option<(&str, Vec<u8>)> {
    let rest = text.strip_prefix(SIGNIFY_COMMENT)?;
    let (comment, rest) = rest.split_once('\n')?;
    let data = rest.strip_suffix('\n')?;
    Some((comment, base64_decode(data.as_bytes())?))
}

/// The ed25519 key in the one PEM block of `label` that `text` is: its DER is `prefix` and 32
/// bytes (RFC 8410).
fn pem_key(text: &str, label: &str, prefix: &[u8]) -> Result<[u8; 32], String> {
    let what = label.to_ascii_lowercase();
    let body = text.strip_prefix(&format!("-----BEGIN {label}-----\n"));
    let body = body.and_then(|b| b.strip_suffix('\n').unwrap_or(b).strip_suffix(&format!("-----END {label}-----")));
    let der = body
        .and_then(|b| base64_decode(&b.split('\n').flat_map(str::bytes).collect::<Vec<u8>>()))
        .ok_or_else(|| format!("a PEM {what} that is not one block of base64"))?;
    let key = der.strip_prefix(prefix).and_then(|k| k.try_into().ok());
    key.ok_or_else(|| format!("a PEM {what} that is not an ed25519 one"))
}

/// Text of a key file: UTF-8, at most [`KEY_FILE_MAX`] bytes.
fn key_text(text: &[u8]) -> Result<&str, String> {
    if text.len() > KEY_FILE_MAX {
        return Err(format!("larger than {KEY_FILE_MAX} bytes: not a key file"));
    }
    std::str::from_utf8(text).map_err(|_| "not text: not a key file".to_owned())
}

/// An admin's public key file (the module's doc lists the three forms).
pub fn public_key(text: &[u8]) -> Result<TrustedKey, String> {
    let text = key_text(text)?;
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        let key = pem_key(text, "PUBLIC KEY", &SPKI_PREFIX)?;
        checked(key, id_of(&key), String::new())
    } else if text.starts_with(SIGNIFY_COMMENT) {
        let (said, data) = signify_lines(text).ok_or("not a signify public key (a comment line, then base64)")?;
        match data.strip_prefix(ED).map(|rest| rest.split_at_checked(8)) {
            Some(Some((id, key))) if key.len() == 32 => {
                let (id, key) = (id.try_into().unwrap_or_default(), key.try_into().unwrap_or_default());
                checked(key, id, comment(said.strip_suffix(" public key").unwrap_or(said).as_bytes()))
            }
            _ if data.len() == 104 => Err("a signify secret key, not a public key: give its .pub".into()),
            _ => Err("not a signify ed25519 public key (Ed, a key number and 32 bytes)".into()),
        }
    } else if let Some(rest) = text.strip_prefix(SSH_ED25519).and_then(|r| r.strip_prefix(' ')) {
        let line = rest.strip_suffix('\n').unwrap_or(rest);
        if line.contains('\n') {
            return Err("an ssh key file of more than one line: give one key a file".into());
        }
        let (data, said) = line.split_once(' ').unwrap_or((line, ""));
        let blob = base64_decode(data.as_bytes()).ok_or("an ssh-ed25519 key whose key is not base64")?;
        let key = blob
            .get(19..)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .filter(|k| ssh_blob(k) == blob)
            .ok_or("an ssh-ed25519 key whose blob is not ssh-ed25519 and 32 bytes")?;
        checked(key, id_of(&key), comment(said.as_bytes()))
    } else if text.contains("PRIVATE KEY-----") {
        Err("a secret key, not a public key: give its public key (openssl pkey -pubout, or signify's .pub)".into())
    } else {
        Err("not an ed25519 public key: OpenSSL's PEM (openssl pkey -pubout), signify's .pub, or an ssh-ed25519 line"
            .into())
    }
}

/// An ed25519 key as ssh writes it: the ssh strings `ssh-ed25519` and the key.
fn ssh_blob(key: &[u8; 32]) -> Vec<u8> {
    [&11u32.to_be_bytes()[..], SSH_ED25519.as_bytes(), &32u32.to_be_bytes(), key].concat()
}

/// A secret key, to sign with: never printed.
pub struct SecretKey {
    seed: [u8; 32],
    id: [u8; 8],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(id {})", hex(&self.id))
    }
}

impl SecretKey {
    /// Its public key, as a client would trust it.
    pub fn public(&self) -> TrustedKey {
        let key = SigningKey::from_bytes(&self.seed).verifying_key().to_bytes();
        TrustedKey { key, id: self.id, comment: String::new() }
    }
}

/// An admin's secret key file: OpenSSL's unencrypted PKCS#8 PEM, or signify's without a
/// passphrase.
pub fn secret_key(text: &[u8]) -> Result<SecretKey, String> {
    let text = key_text(text)?;
    if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        let seed = pem_key(text, "PRIVATE KEY", &PKCS8_PREFIX)
            .map_err(|e| format!("{e} (openssl genpkey -algorithm ed25519 makes one)"))?;
        let key = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        Ok(SecretKey { seed, id: id_of(&key) })
    } else if text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        Err("an encrypted PEM private key: stateless reads only unencrypted ones (openssl pkey -in KEY -out \
             PLAIN.pem writes one)"
            .into())
    } else if text.starts_with(SIGNIFY_COMMENT) {
        signify_secret(text)
    } else if text.starts_with("-----BEGIN PUBLIC KEY-----") || text.starts_with(SSH_ED25519) {
        Err("a public key, not a secret key".into())
    } else {
        Err("not an ed25519 secret key: OpenSSL's PEM (openssl genpkey -algorithm ed25519) or signify's \
             (signify-openbsd -G -n)"
            .into())
    }
}

/// signify's secret key: `Ed`, `BK`, kdf rounds (4 bytes, big-endian), salt (16), checksum (8:
/// the start of SHA-512 of the secret), key number (8), secret (64: seed ‖ public key).
fn signify_secret(text: &str) -> Result<SecretKey, String> {
    let (_, data) = signify_lines(text).ok_or("not a signify secret key (a comment line, then base64)")?;
    let field = |from: usize, to: usize| data.get(from..to).unwrap_or_default();
    if data.len() != 104 || field(0, 4) != b"EdBK" {
        let public = data.len() == 42;
        return Err(
            if public { "a signify public key, not a secret key" } else { "not a signify ed25519 secret key" }.into()
        );
    }
    if field(4, 8) != [0; 4] {
        return Err("a passphrase-protected signify secret key: stateless reads only keys made without one \
                    (signify-openbsd -G -n)"
            .into());
    }
    let secret = field(40, 104);
    if Sha512::digest(secret).get(..8) != Some(field(24, 32)) {
        return Err("a signify secret key whose checksum does not match: damaged".into());
    }
    let seed: [u8; 32] = field(40, 72).try_into().map_err(|_| "not a signify ed25519 secret key")?;
    if SigningKey::from_bytes(&seed).verifying_key().to_bytes() != field(72, 104) {
        return Err("a signify secret key whose public half is not its own: damaged".into());
    }
    Ok(SecretKey { seed, id: field(32, 40).try_into().unwrap_or_default() })
}

/// The signature file of `message` by `secret`, in signify's format.
pub fn sign(secret: &SecretKey, message: &[u8]) -> Vec<u8> {
    let signature = SigningKey::from_bytes(&secret.seed).sign(message).to_bytes();
    let fingerprint = secret.public().fingerprint();
    format!(
        "{SIGNIFY_COMMENT}stateless signature, key {fingerprint}\n{}\n",
        base64(&[&ED[..], &secret.id, &signature].concat())
    )
    .into_bytes()
}

/// The key id and the signature a signature file holds; an error says it is malformed.
pub fn signature_of(signature_file: &[u8]) -> Result<([u8; 8], [u8; 64]), String> {
    let malformed = |what: &str| format!("malformed signature file: {what}");
    if signature_file.len() > SIGNATURE_MAX {
        return Err(malformed(&format!("larger than {SIGNATURE_MAX} bytes")));
    }
    let text = std::str::from_utf8(signature_file).map_err(|_| malformed("not text"))?;
    let (_, data) = signify_lines(text)
        .ok_or_else(|| malformed("not a comment line (untrusted comment: ...) and a line of base64"))?;
    match data.strip_prefix(ED).map(|rest| rest.split_at_checked(8)) {
        Some(Some((id, signature))) => match (id.try_into(), signature.try_into()) {
            (Ok(id), Ok(signature)) => Ok((id, signature)),
            _ => Err(malformed("not an ed25519 signature (Ed, a key id and 64 bytes)")),
        },
        _ => Err(malformed("not an ed25519 signature (Ed, a key id and 64 bytes)")),
    }
}

/// The key of `keys` that signed `message`, as the signature file `signature_file` says.
/// Errors: a malformed signature file, one by a key not trusted (its id named), a bad signature.
pub fn verify<'k>(keys: &'k [TrustedKey], message: &[u8], signature_file: &[u8]) -> Result<&'k TrustedKey, String> {
    let (id, signature) = signature_of(signature_file)?;
    let Some(key) = keys.iter().find(|k| k.id == id) else {
        let trusted: Vec<String> = keys.iter().map(|k| hex(&k.id)).collect();
        let trusted = if trusted.is_empty() { "none".to_owned() } else { trusted.join(", ") };
        return Err(format!("signed by key id {}, which is not trusted (trusted: {trusted})", hex(&id)));
    };
    let signature = Signature::from_bytes(&signature);
    let good = VerifyingKey::from_bytes(&key.key).is_ok_and(|k| k.verify_strict(message, &signature).is_ok());
    if !good {
        return Err(format!(
            "bad signature by key id {} ({}): the signed file or its signature was changed",
            hex(&key.id),
            key.fingerprint()
        ));
    }
    Ok(key)
}

/// The trusted keys file (the module's doc); a line that is not a key, a key that clashes with
/// another (the same key or id) or more than 256 keys is an error naming the line.
pub fn trusted_keys(text: &[u8]) -> Result<Vec<TrustedKey>, String> {
    if text.len() > TRUSTED_MAX {
        return Err(format!("larger than {TRUSTED_MAX} bytes"));
    }
    let text = std::str::from_utf8(text).map_err(|_| "not text (UTF-8)".to_owned())?;
    let body = text.strip_suffix('\n').ok_or("its last line has no newline: cut short?")?;
    let mut keys: Vec<TrustedKey> = Vec::new();
    for (n, line) in body.split('\n').enumerate() {
        let at = |what: &str| format!("line {}: {what}", n + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = trusted_line(line).map_err(|e| at(&e))?;
        if let Some(other) = keys.iter().find(|k| k.clashes(&key)) {
            return Err(at(&format!("the same key or key id as {} (id {})", other.fingerprint(), hex(&other.id))));
        }
        if keys.len() == KEYS_MAX {
            return Err(at(&format!("more than {KEYS_MAX} keys")));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// One key line: `ed25519 <base64> <16 hex digits>[ <comment>]`.
fn trusted_line(line: &str) -> Result<TrustedKey, String> {
    let mut words = line.splitn(4, ' ');
    if words.next() != Some("ed25519") {
        return Err("not a key: ed25519 <base64 key> <key id> [comment]".into());
    }
    let key = words
        .next()
        .and_then(|w| base64_decode(w.as_bytes()))
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or("the key is not base64 of 32 bytes")?;
    let id =
        words.next().filter(|w| w.len() == 16 && w.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let id = id.ok_or("the key id is not 16 lower-case hex digits")?;
    let mut id_bytes = [0u8; 8];
    for (byte, pair) in id_bytes.iter_mut().zip(id.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or_default(), 16).unwrap_or_default();
    }
    let said = words.next().unwrap_or_default();
    if said.is_empty() && line.ends_with(' ')
        || said.len() > COMMENT_MAX
        || said.chars().any(|c| c.is_control() || hidden(c))
    {
        return Err("the comment is empty after a space, longer than 200 bytes or not printable".into());
    }
    checked(key, id_bytes, said.to_owned())
}

/// The trusted keys file of `keys` (which [`trusted_keys`] reads back as they are).
pub fn trusted_keys_file(keys: &[TrustedKey]) -> String {
    let mut text =
        "# stateless trusted keys: ed25519 <key> <key id> <comment>; a signed image needs one of them\n".to_owned();
    for key in keys {
        let said = if key.comment.is_empty() { String::new() } else { format!(" {}", key.comment) };
        text += &format!("ed25519 {} {}{said}\n", base64(&key.key), hex(&key.id));
    }
    text
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            let c = if i <= chunk.len() { ALPHABET.get((n >> (18 - 6 * i)) as usize & 63).copied() } else { None };
            out.push(c.map_or('=', char::from));
        }
    }
    out
}

/// Standard base64, strictly: whole 4-character groups, `=` only as padding at the end, the
/// padding's unused bits zero (one encoding per bytes); `None` otherwise.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let groups = text.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (g, group) in text.chunks(4).enumerate() {
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && g + 1 != groups) {
            return None;
        }
        let mut n = 0u32;
        for &c in group.get(..4 - pad)? {
            n = (n << 6) | ALPHABET.iter().position(|&a| a == c)? as u32;
        }
        n <<= 6 * pad;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        if bytes.get(3 - pad..).is_some_and(|unused| unused.iter().any(|&b| b != 0)) {
            return None;
        }
        out.extend_from_slice(bytes.get(..3 - pad)?);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn base64_is_rfc_4648_and_strict() {
        for (bytes, text) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(bytes.as_bytes()), text);
            assert_eq!(base64_decode(text.as_bytes()).unwrap(), bytes.as_bytes());
        }
        for bad in ["Zg", "Zg=", "Zh==", "Zm9=", "Z===", "Zg==Zg==", "Zm 9", "Zm9v\n", "Zm-v", "Zm_v", "===="] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    /// RFC 8032, 7.1, test 1: the empty message.
    #[test]
    fn rfc_8032_test_1() {
        let seed: [u8; 32] =
            unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").try_into().unwrap();
        let secret = SecretKey { seed, id: [1; 8] };
        let public = secret.public();
        assert_eq!(hex(&public.key), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let file = sign(&secret, b"");
        let text = std::str::from_utf8(&file).unwrap();
        let data = base64_decode(text.lines().nth(1).unwrap().as_bytes()).unwrap();
        assert_eq!(
            hex(&data[10..]),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(verify(std::slice::from_ref(&public), b"", &file).unwrap(), &public);
    }

    #[test]
    fn the_three_public_key_forms_read() {
        let openssl = public_key(&fixture("openssl.pub.pem")).unwrap();
        assert_eq!(openssl.id, id_of(&openssl.key));
        assert_eq!(openssl.comment, "");
        assert_eq!(openssl, secret_key(&fixture("openssl.pem")).unwrap().public());
        let signify = public_key(&fixture("signify.pub")).unwrap();
        assert_eq!(signify.comment, "stateless test signify key");
        let from_secret = secret_key(&fixture("signify.sec")).unwrap().public();
        assert_eq!((from_secret.key, from_secret.id), (signify.key, signify.id));
        // The id is signify's key number, as its files carry it.
        let pub_data =
            base64_decode(String::from_utf8(fixture("signify.pub")).unwrap().lines().nth(1).unwrap().as_bytes());
        assert_eq!(signify.id, pub_data.unwrap()[2..10]);
        let ssh = public_key(&fixture("ssh.pub")).unwrap();
        assert_eq!(ssh.comment, "admin@example");
        // As `ssh-keygen -lf ssh.pub` shows it.
        assert_eq!(ssh.fingerprint(), "SHA256:1zHD+kVBAXUtyEt/Kikl4IOSKFjgfCiTfZ7HydO91dc");
    }

    #[test]
    fn key_files_that_are_not_public_keys_are_refused_clearly() {
        let err = |text: &[u8]| public_key(text).unwrap_err();
        assert!(err(&fixture("openssl.pem")).contains("a secret key, not a public key"));
        assert!(err(&fixture("signify.sec")).contains("a signify secret key, not a public key"));
        assert!(err(b"").contains("not an ed25519 public key"));
        assert!(err(&vec![b'a'; KEY_FILE_MAX + 1]).contains("larger than"));
        let ssh = String::from_utf8(fixture("ssh.pub")).unwrap();
        assert!(err(format!("{ssh}{ssh}").as_bytes()).contains("more than one line"));
        assert!(err(ssh.replace("AAAAC3", "AAAAC4").as_bytes()).contains("blob"));
        // An RSA PEM public key, and a small-order point.
        let rsa = "-----BEGIN PUBLIC KEY-----\nMCwwDQYJKoZIhvcNAQEBBQADGwAwGAIRAMbHwrr7E5zb6qz1I7Frr/0CAwEAAQ==\n-----END PUBLIC KEY-----\n";
        assert!(err(rsa.as_bytes()).contains("not an ed25519 one"));
        let weak = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64(&[&SPKI_PREFIX[..], &[0; 32]].concat())
        );
        assert!(err(weak.as_bytes()).contains("weak"));
    }

    #[test]
    fn secret_keys_with_a_passphrase_or_damaged_are_refused() {
        assert!(secret_key(&fixture("encrypted.pem")).unwrap_err().contains("an encrypted PEM private key"));
        assert!(secret_key(&fixture("openssl.pub.pem")).unwrap_err().contains("a public key"));
        assert!(secret_key(&fixture("signify.pub")).unwrap_err().contains("a signify public key"));
        let text = String::from_utf8(fixture("signify.sec")).unwrap();
        let (head, line) = text.trim_end().split_once('\n').unwrap();
        let data = base64_decode(line.as_bytes()).unwrap();
        let with = |at: usize, byte: u8| {
            let mut d = data.clone();
            d[at] = byte;
            secret_key(format!("{head}\n{}\n", base64(&d)).as_bytes()).unwrap_err()
        };
        assert!(with(7, 42).contains("passphrase-protected"), "kdf rounds 42");
        assert!(with(24, data[24] ^ 1).contains("checksum"));
        assert!(with(2, b'X').contains("not a signify ed25519 secret key"));
        // The public half changed, and the checksum made to match.
        let mut d = data.clone();
        d[103] ^= 1;
        let sum = Sha512::digest(&d[40..104]);
        d[24..32].copy_from_slice(&sum[..8]);
        assert!(secret_key(format!("{head}\n{}\n", base64(&d)).as_bytes()).unwrap_err().contains("public half"));
        assert_eq!(format!("{:?}", secret_key(&fixture("openssl.pem")).unwrap()).len(), "SecretKey(id )".len() + 16);
    }

    #[test]
    fn signifys_own_signature_verifies_and_ours_is_signifys_format() {
        let signify = public_key(&fixture("signify.pub")).unwrap();
        let openssl = public_key(&fixture("openssl.pub.pem")).unwrap();
        let keys = [openssl.clone(), signify.clone()];
        let message = fixture("message");
        assert_eq!(verify(&keys, &message, &fixture("message.sig")).unwrap(), &signify);
        // Ours with the signify key: the same bytes (ed25519 is deterministic) under our comment.
        let ours = sign(&secret_key(&fixture("signify.sec")).unwrap(), &message);
        let theirs = fixture("message.sig");
        assert_eq!(ours.split(|b| *b == b'\n').nth(1), theirs.split(|b| *b == b'\n').nth(1));
        let by_openssl = sign(&secret_key(&fixture("openssl.pem")).unwrap(), &message);
        assert!(std::str::from_utf8(&by_openssl)
            .unwrap()
            .starts_with(&format!("untrusted comment: stateless signature, key {}\n", openssl.fingerprint())));
        assert_eq!(verify(&keys, &message, &by_openssl).unwrap(), &openssl);
    }

    #[test]
    fn each_flipped_bit_and_malformed_file_gets_its_own_error() {
        let signify = public_key(&fixture("signify.pub")).unwrap();
        let keys = [public_key(&fixture("ssh.pub")).unwrap(), signify.clone()];
        let message = fixture("message");
        let file = fixture("message.sig");
        let text = String::from_utf8(file.clone()).unwrap();
        let (head, line) = text.trim_end().split_once('\n').unwrap();
        let data = base64_decode(line.as_bytes()).unwrap();
        let with = |at: usize| {
            let mut d = data.clone();
            d[at] ^= 1;
            format!("{head}\n{}\n", base64(&d)).into_bytes()
        };
        let mut changed = message.clone();
        changed[3] ^= 0x10;
        assert!(verify(&keys, &changed, &file).unwrap_err().starts_with("bad signature by key id"));
        assert!(verify(&keys, &message, &with(40)).unwrap_err().starts_with("bad signature"));
        let unknown = verify(&keys, &message, &with(2)).unwrap_err();
        assert!(unknown.starts_with("signed by key id") && unknown.contains("which is not trusted"), "{unknown}");
        assert!(unknown.contains(&hex(&signify.id)), "names the trusted ids: {unknown}");
        assert!(verify(&[], &message, &file).unwrap_err().contains("(trusted: none)"));
        let malformed = |file: &[u8]| verify(&keys, &message, file).unwrap_err();
        for bad in [
            &file[..file.len() - 1],
            &file[..file.len() - 10],
            &[&file[..], b"x"].concat()[..],
            &[&file[..], b"\n"].concat()[..],
            &file[19..],
            b"",
            format!("{head}\n{}\n", base64(&[b"ED", &data[2..]].concat())).as_bytes(),
            format!("{head}\n{}\n", base64(&data[..73])).as_bytes(),
            format!("{head}\n{}!\n", &line[..line.len() - 1]).as_bytes(),
            format!("untrusted comment: {}\n{line}\n", "x".repeat(SIGNATURE_MAX)).as_bytes(),
        ] {
            assert!(malformed(bad).starts_with("malformed signature file"), "{:?}: {}", escape(bad), malformed(bad));
        }
    }

    #[test]
    fn trusted_keys_round_trip_and_each_bad_line_is_named() {
        let keys = vec![
            public_key(&fixture("openssl.pub.pem")).unwrap(),
            public_key(&fixture("signify.pub")).unwrap(),
            public_key(&fixture("ssh.pub")).unwrap(),
        ];
        let file = trusted_keys_file(&keys);
        assert_eq!(trusted_keys(file.as_bytes()).unwrap(), keys);
        assert_eq!(trusted_keys(b"# none\n\n").unwrap(), []);
        let second = file.lines().nth(2).unwrap();
        let (prefix, _) = second.split_at(8 + 44 + 1 + 16);
        for (bad, why) in [
            (format!("{file}{second}\n"), "line 5: the same key"),
            (format!("{file}{}", second.replace(' ', "  ")), "its last line has no newline"),
            (format!("{file}{}\n", second.replace(' ', "  ")), "line 5: the key is not base64"),
            (format!("{file}ed448 x\n"), "line 5: not a key"),
            (format!("{prefix} \u{1b}[2J\n"), "line 1: the comment"),
            (format!("{prefix} \n"), "line 1: the comment"),
            (format!("{}\n", prefix.to_ascii_uppercase().replacen("ED25519", "ed25519", 1)), "line 1: the key"),
            (format!("{}\n", &prefix[..prefix.len() - 1]), "line 1: the key id"),
            (format!("ed25519 {} 0000000000000000\n", base64(&[0; 32])), "line 1: not a usable"),
            (" ed25519\n".into(), "line 1: not a key"),
        ] {
            let err = trusted_keys(bad.as_bytes()).unwrap_err();
            assert!(err.starts_with(why), "{bad:?}: {err}");
        }
        // The same id for another key: a signature could not tell them apart.
        let clash =
            trusted_keys_file(&[keys[2].clone(), keys[1].clone(), TrustedKey { id: keys[2].id, ..keys[1].clone() }]);
        assert!(trusted_keys(clash.as_bytes()).unwrap_err().starts_with("line 4: the same key or key id"));
        assert!(trusted_keys(&vec![b'#'; TRUSTED_MAX + 1]).is_err());
    }
}
