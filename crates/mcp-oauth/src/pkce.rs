//! PKCE (RFC 7636), `S256` only: OAuth 2.1 and the MCP authorization
//! specification require it, and `plain` protects nothing once the
//! authorization request is seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::OAuthError;

/// A code challenge as the authorization request sent it (`S256`).
///
/// ```
/// use mcp_oauth::CodeChallenge;
///
/// // RFC 7636, appendix B.
/// let challenge = CodeChallenge::parse(
///     Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
///     Some("S256"),
/// )
/// .unwrap();
/// assert!(challenge.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
/// assert!(!challenge.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"));
/// assert!(CodeChallenge::parse(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), Some("plain")).is_err());
/// assert!(CodeChallenge::parse(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), None).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

/// base64url of a SHA-256: 43 characters.
const CHALLENGE_LEN: usize = 43;

impl CodeChallenge {
    /// The challenge of an authorization request: `code_challenge` and
    /// `code_challenge_method`. A missing challenge, a missing method
    /// (which RFC 7636 reads as `plain`) and any method but `S256` are
    /// refused with `invalid_request`.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, OAuthError> {
        let Some(challenge) = challenge else {
            return Err(OAuthError::invalid_request(
                "code_challenge is required (PKCE with S256)",
            ));
        };
        match method {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method must be S256",
                ));
            }
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "unsupported code_challenge_method: only S256",
                ));
            }
        }
        let well_formed = challenge.len() == CHALLENGE_LEN
            && URL_SAFE_NO_PAD
                .decode(challenge)
                .is_ok_and(|bytes| bytes.len() == 32);
        if !well_formed {
            return Err(OAuthError::invalid_request(
                "code_challenge must be the base64url SHA-256 of the verifier",
            ));
        }
        Ok(CodeChallenge(challenge.to_owned()))
    }

    /// A challenge read back from a store (already checked when stored).
    pub fn from_stored(challenge: String) -> Self {
        CodeChallenge(challenge)
    }

    /// The challenge, to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` is well formed (43 to 128 unreserved characters)
    /// and hashes to this challenge (compared in constant time).
    pub fn verify(&self, verifier: &str) -> bool {
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !well_formed {
            return false;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
        aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), self.0.as_bytes())
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn malformed_challenges_and_verifiers_are_refused() {
        for bad in [
            "",
            "short",
            &format!("{CHALLENGE}A"),
            &CHALLENGE.replace('E', "+"),
        ] {
            assert!(
                CodeChallenge::parse(Some(bad), Some("S256")).is_err(),
                "{bad}"
            );
        }
        assert!(CodeChallenge::parse(None, Some("S256")).is_err());
        assert!(CodeChallenge::parse(Some(CHALLENGE), Some("s256")).is_err());
        let challenge = CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap();
        assert!(challenge.verify(VERIFIER));
        // The challenge itself, a short verifier, one of forbidden characters.
        assert!(!challenge.verify(CHALLENGE));
        assert!(!challenge.verify(&VERIFIER[..42]));
        assert!(!challenge.verify(&format!("{VERIFIER} ")));
        assert!(!challenge.verify(&"a".repeat(129)));
    }

    /// The verifier's form is checked even when its hash would match: a
    /// client cannot use a verifier outside RFC 7636's alphabet or length.
    #[test]
    fn a_malformed_verifier_is_refused_even_with_its_own_challenge() {
        let challenge_of = |verifier: &str| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
            CodeChallenge::parse(Some(&URL_SAFE_NO_PAD.encode(digest.as_ref())), Some("S256"))
                .unwrap()
        };
        for bad in [
            &"a".repeat(42),
            &format!("{} b", "a".repeat(43)),
            &"a".repeat(129),
        ] {
            assert!(!challenge_of(bad).verify(bad), "{bad}");
        }
        let good = "a".repeat(128);
        assert!(challenge_of(&good).verify(&good));
    }
}
