//! Opaque secrets (authorization codes, refresh tokens, client secrets):
//! random, shown once, stored only as a hash.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// A new opaque secret: 32 bytes of operating-system randomness in
/// base64url (43 characters). Wiped when dropped; `Debug` hides it.
///
/// ```
/// use mcp_oauth::{Secret, SecretHash};
///
/// let code = Secret::generate();
/// assert_eq!(code.expose().len(), 43);
/// assert_eq!(code.hash(), SecretHash::of(code.expose()));
/// assert_eq!(format!("{code:?}"), "Secret(…)");
/// ```
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// 256 random bits.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        // The system's generator failing leaves nothing to fall back on.
        if aws_lc_rs::rand::fill(bytes.as_mut_slice()).is_err() {
            panic!("the operating system's random number generator failed");
        }
        Secret(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_slice())))
    }

    /// The secret, to hand to the client once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored in its place.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// SHA-256 of a presented secret: the only form in which codes, refresh
/// tokens and client secrets are kept. The secrets are 256 random bits, so
/// a fast hash suffices (nothing to brute-force offline).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// The hash of `presented`.
    pub fn of(presented: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        SecretHash(bytes)
    }

    /// A hash read back from a store.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretHash(bytes)
    }

    /// The bytes, to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `presented` hashes to this, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let other = SecretHash::of(presented);
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_differ_and_hash_to_what_they_match() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.hash().matches(a.expose()));
        assert!(!a.hash().matches(b.expose()));
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert!(!format!("{:?}", a.hash()).contains(&format!("{:02x}", a.hash().0[0])));
        assert_eq!(format!("{a:?}"), "Secret(…)");
        assert_eq!(format!("{:?}", a.hash()), "SecretHash(…)");
    }
}
