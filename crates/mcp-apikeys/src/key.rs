//! The key format, its checksum, and how keys are hashed at rest.

use std::fmt;

use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "mcp_";
/// Characters of the random part: 32 bytes in base62.
const BODY_LEN: usize = 43;
/// Characters of the checksum: a CRC32 in base62.
const CHECKSUM_LEN: usize = 6;
/// A whole key: `mcp_` + 43 + 6 characters.
pub const KEY_LEN: usize = KEY_PREFIX.len() + BODY_LEN + CHECKSUM_LEN;
/// Characters shown to identify a key (`mcp_` and 8 more); never enough to
/// use it.
pub const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

const BASE62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A full API key: the secret a client presents. Shown once, at creation or
/// regeneration; wiped from memory when dropped; never printed by `Debug`.
///
/// ```
/// use mcp_apikeys::ApiKeySecret;
///
/// let key = ApiKeySecret::generate();
/// assert!(key.expose().starts_with("mcp_"));
/// assert_eq!(key.expose().len(), 53);
/// assert!(ApiKeySecret::looks_valid(key.expose()));
/// assert_eq!(format!("{key:?}"), format!("ApiKeySecret({}…)", key.display_prefix()));
/// ```
pub struct ApiKeySecret(Zeroizing<String>);

impl ApiKeySecret {
    /// A new key from 32 bytes of operating-system randomness.
    pub fn generate() -> Self {
        let random = Zeroizing::new(rand_bytes());
        let mut body = base_x::encode(BASE62, random.as_slice());
        // base-x drops no information but may be shorter than 43
        // characters; left-pad with the zero digit.
        while body.len() < BODY_LEN {
            body.insert(0, '0');
        }
        let body = Zeroizing::new(body);
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(KEY_PREFIX);
        key.push_str(&body);
        key.push_str(&checksum(&body));
        ApiKeySecret(Zeroizing::new(key))
    }

    /// The key, to hand to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first characters, to tell keys apart in lists.
    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_LEN]
    }

    /// Whether `candidate` has the key format and a correct checksum, so a
    /// mistyped or made-up key is refused without a lookup.
    pub fn looks_valid(candidate: &str) -> bool {
        if candidate.len() != KEY_LEN || !candidate.starts_with(KEY_PREFIX) {
            return false;
        }
        let rest = &candidate[KEY_PREFIX.len()..];
        if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return false;
        }
        let (body, sum) = rest.split_at(BODY_LEN);
        checksum_digits(body).as_slice() == sum.as_bytes()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.display_prefix())
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    // aws-lc's generator is seeded by the operating system; failure means
    // the system has no entropy source, which nothing here can work around.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        panic!("the operating system's random number generator failed");
    }
    bytes
}

/// CRC32 (IEEE) of `body` in base62, left-padded with `0` to 6 characters.
fn checksum(body: &str) -> String {
    let crc = crc32fast::hash(body.as_bytes());
    format!("{:0>width$}", base62::encode(crc), width = CHECKSUM_LEN)
}

/// [`checksum`] without allocating, for the request path: 6 base62 digits
/// of the CRC, most significant first (62^6 > 2^32, so 6 always suffice).
fn checksum_digits(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut crc = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62.as_bytes()[(crc % 62) as usize];
        crc /= 62;
    }
    digits
}

/// Turns a presented key into what is stored: HMAC-SHA-256 under a pepper
/// when one is configured (so a leaked table cannot be checked offline),
/// otherwise SHA-256. Keys are 256 bits of randomness, so a fast hash is
/// enough; a slow password hash would only slow every request down.
#[derive(Clone)]
pub struct KeyHasher {
    pepper: Option<hmac::Key>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher")
            .field("peppered", &self.pepper.is_some())
            .finish()
    }
}

impl KeyHasher {
    /// Plain SHA-256.
    pub fn sha256() -> Self {
        KeyHasher { pepper: None }
    }

    /// HMAC-SHA-256 under `pepper` (keep it out of the database).
    pub fn peppered(pepper: &[u8]) -> Self {
        KeyHasher {
            pepper: Some(hmac::Key::new(hmac::HMAC_SHA256, pepper)),
        }
    }

    /// The 32-byte hash of `key`.
    pub fn hash(&self, key: &str) -> KeyHash {
        let mut out = [0u8; 32];
        match &self.pepper {
            Some(pepper) => out.copy_from_slice(hmac::sign(pepper, key.as_bytes()).as_ref()),
            None => out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref()),
        }
        KeyHash(out)
    }
}

/// The stored form of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short and harmless, to tell hashes apart in tests.
        write!(f, "KeyHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl KeyHash {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// From stored bytes; `None` unless 32 long.
    pub fn from_slice(bytes: &[u8]) -> Option<KeyHash> {
        bytes.try_into().ok().map(KeyHash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_digits_upper_lower() {
        assert_eq!(base62::encode(10u32), "A");
        assert_eq!(base62::encode(61u32), "z");
        assert_eq!(base_x::encode(BASE62, &[61]), "z");
    }

    #[test]
    fn both_checksum_forms_agree() {
        for body in ["0".repeat(43), "z".repeat(43), "AbC".repeat(14) + "d"] {
            assert_eq!(checksum(&body).as_bytes(), checksum_digits(&body));
        }
    }

    #[test]
    fn format_and_checksum() {
        for _ in 0..200 {
            let key = ApiKeySecret::generate();
            let text = key.expose();
            assert_eq!(text.len(), KEY_LEN);
            assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(ApiKeySecret::looks_valid(text));
        }
    }

    #[test]
    fn checksum_matches_the_contract_rule() {
        // CRC32 of the 43 characters, base62, zero-padded to 6.
        let body = "0".repeat(43);
        let crc = crc32fast::hash(body.as_bytes());
        let expected = format!("{:0>6}", base62::encode(crc));
        let key = format!("mcp_{body}{expected}");
        assert!(ApiKeySecret::looks_valid(&key));
    }

    #[test]
    fn typos_and_forgeries_fail_the_check() {
        let key = ApiKeySecret::generate();
        let text = key.expose().to_owned();
        // Change one character of the body.
        let mut chars: Vec<char> = text.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(!ApiKeySecret::looks_valid(&typo));
        for bad in [
            "",
            "mcp_",
            &text[..52],
            &format!("{text}x"),
            &text.replacen("mcp_", "mcq_", 1),
            &format!("mcp_{}", "é".repeat(24)),
            &format!("{}-{}", &text[..20], &text[21..]),
        ] {
            assert!(!ApiKeySecret::looks_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn hashing() {
        let key = ApiKeySecret::generate();
        let plain = KeyHasher::sha256().hash(key.expose());
        let peppered = KeyHasher::peppered(b"pepper").hash(key.expose());
        assert_ne!(plain, peppered);
        assert_eq!(plain, KeyHasher::sha256().hash(key.expose()));
        assert_ne!(peppered, KeyHasher::peppered(b"other").hash(key.expose()));
        assert!(!format!("{plain:?}").contains(key.expose()));
    }

    /// Debug texts, exactly: a secret shows its display prefix and an
    /// ellipsis, a hasher only whether it is peppered, a hash its first two
    /// bytes in hex.
    #[test]
    fn debug_texts_exactly() {
        let key = ApiKeySecret::generate();
        assert_eq!(
            format!("{key:?}"),
            format!("ApiKeySecret({}…)", &key.expose()[..DISPLAY_PREFIX_LEN])
        );
        assert_eq!(
            format!("{:?}", KeyHasher::sha256()),
            "KeyHasher { peppered: false }"
        );
        assert_eq!(
            format!("{:?}", KeyHasher::peppered(b"p")),
            "KeyHasher { peppered: true }"
        );
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[1] = 0x0c;
        bytes[2] = 0xff;
        assert_eq!(format!("{:?}", KeyHash(bytes)), "KeyHash(ab0c…)");
    }

    /// SHA-256 without a pepper, HMAC-SHA-256 under one: the known answers
    /// for the text "abc".
    #[test]
    fn hashes_are_sha256_or_hmac_sha256() {
        let hex = |h: KeyHash| -> String { h.0.iter().map(|b| format!("{b:02x}")).collect() };
        assert_eq!(
            hex(KeyHasher::sha256().hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2: key "Jefe".
        assert_eq!(
            hex(KeyHasher::peppered(b"Jefe").hash("what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hash = KeyHasher::sha256().hash("abc");
        assert_eq!(hash.as_bytes(), &hash.0[..]);
        assert_eq!(KeyHash::from_slice(hash.as_bytes()), Some(hash));
        assert_eq!(KeyHash::from_slice(&[0; 31]), None);
        assert_eq!(KeyHash::from_slice(&[0; 33]), None);
    }

    /// Every one-character change of a valid key fails the checksum or the
    /// format, so it is refused before any lookup.
    #[test]
    fn any_single_character_change_is_refused() {
        let key = ApiKeySecret::generate();
        let text = key.expose();
        for i in 0..text.len() {
            for replacement in ['0', 'Z', 'z', '_'] {
                if text.as_bytes()[i] == replacement as u8 {
                    continue;
                }
                let mut changed = text.to_owned();
                changed.replace_range(i..=i, &replacement.to_string());
                assert!(!ApiKeySecret::looks_valid(&changed), "{i} {replacement}");
            }
        }
    }

    /// Two generated keys differ (the randomness is used).
    #[test]
    fn generated_keys_differ() {
        let a = ApiKeySecret::generate();
        let b = ApiKeySecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.display_prefix(), b.display_prefix());
    }

    use mcp_testkit::assert_hidden;

    #[test]
    fn debug_shows_only_the_display_prefix_and_never_the_pepper() {
        let key = ApiKeySecret::generate();
        let shown = format!("{key:?}");
        // The prefix is what lists show anyway; the rest is the secret.
        let secret = &key.expose()[key.display_prefix().len()..];
        assert_hidden(&shown, secret.as_bytes());
        assert_hidden(&format!("{key:#?}"), secret.as_bytes());
        let pepper = b"pepper-material-0123456789";
        let hasher = KeyHasher::peppered(pepper);
        assert_hidden(&format!("{hasher:?}"), pepper);
        assert_hidden(&format!("{hasher:#?}"), pepper);
    }
}
