//! A signing key with the verifying key that checks what it signs.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::task::{Context, Poll};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use mcp_core::SharedClock;

use crate::{
    AccessToken, IssueError, JwtAuthenticator, JwtConfigError, KeyError, SigningKey, TokenIssuer,
    TrustedIssuer, VerifyingKey,
};

/// Why a [`KeyPair`] cannot be made or does not work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyPairError {
    /// The signing (private) key or secret is unusable.
    #[error(transparent)]
    Signing(KeyError),
    /// The verifying (public) key is unusable.
    #[error(transparent)]
    Verifying(KeyError),
    /// Signing the self-test token failed.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// The verifying key could not be set up.
    #[error(transparent)]
    Config(#[from] JwtConfigError),
    /// The public key does not verify what the private key signs.
    #[error("the public key does not verify tokens signed with the private key")]
    Mismatch,
}

/// One signing key and the verifying key that checks its tokens, with the
/// same algorithm and `kid`: what a server needs to issue its own tokens and
/// accept them back.
///
/// From an HMAC secret (both halves are the secret) or from a PEM private
/// and public key; [`KeyPair::check`] signs and verifies one token, so a
/// mismatched pair fails at start-up rather than at every login. `Debug`
/// never shows key material.
///
/// ```
/// use mcp_auth::{Algorithm, KeyPair};
///
/// let keys = KeyPair::hmac(b"0123456789abcdef0123456789abcdef")
///     .unwrap()
///     .with_algorithm(Algorithm::HS512)
///     .unwrap()
///     .with_kid("k1");
/// assert_eq!(keys.signing().algorithm(), Algorithm::HS512);
/// assert_eq!(keys.verifying().kid(), Some("k1"));
/// keys.check(mcp_core::SystemClock::shared()).unwrap();
///
/// // `FromStr` reads an HMAC secret.
/// let parsed: KeyPair = "0123456789abcdef0123456789abcdef".parse().unwrap();
/// assert_eq!(parsed.algorithm(), Algorithm::HS256);
/// assert!("short".parse::<KeyPair>().is_err());
/// ```
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
    verifying: VerifyingKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.signing.algorithm())
            .field("kid", &self.signing.kid())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// An HMAC secret (at least 32 bytes) for `HS256`.
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        Ok(KeyPair {
            signing: SigningKey::hmac(secret)?,
            verifying: VerifyingKey::hmac(secret)?,
        })
    }

    /// A private and a public key in PEM for `algorithm` (RSA, EC or
    /// Ed25519, chosen by the algorithm's family).
    pub fn pem(
        algorithm: Algorithm,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self, KeyPairError> {
        let (signing, verifying) = match algorithm.family() {
            AlgorithmFamily::Rsa => (
                SigningKey::rsa_pem(private_pem),
                VerifyingKey::rsa_pem(public_pem),
            ),
            AlgorithmFamily::Ec => (
                SigningKey::ec_pem(private_pem),
                VerifyingKey::ec_pem(public_pem),
            ),
            AlgorithmFamily::Ed => (
                SigningKey::ed_pem(private_pem),
                VerifyingKey::ed_pem(public_pem),
            ),
            AlgorithmFamily::Hmac => {
                return Err(KeyPairError::Signing(KeyError::WrongAlgorithm {
                    algorithm,
                    family: "PEM",
                }));
            }
        };
        KeyPair {
            signing: signing.map_err(KeyPairError::Signing)?,
            verifying: verifying.map_err(KeyPairError::Verifying)?,
        }
        .with_algorithm(algorithm)
        .map_err(KeyPairError::Signing)
    }

    /// Signs and verifies with `algorithm` instead of the key's default
    /// (`HS384`, `PS256`, ...).
    pub fn with_algorithm(self, algorithm: Algorithm) -> Result<Self, KeyError> {
        Ok(KeyPair {
            signing: self.signing.with_algorithm(algorithm)?,
            verifying: self.verifying.with_algorithm(algorithm)?,
        })
    }

    /// Names both keys: issued tokens carry `kid`, the verifying key is
    /// selected by it.
    #[must_use]
    pub fn with_kid(self, kid: impl Into<String>) -> Self {
        let kid = kid.into();
        KeyPair {
            signing: self.signing.with_kid(kid.clone()),
            verifying: self.verifying.with_kid(kid),
        }
    }

    /// The algorithm of both keys.
    pub fn algorithm(&self) -> Algorithm {
        self.signing.algorithm()
    }

    /// The key that signs (for a [`TokenIssuer`]).
    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    /// The key that verifies (for a [`TrustedIssuer`]).
    pub fn verifying(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Both keys, to hand each to its user without a clone.
    pub fn into_parts(self) -> (SigningKey, VerifyingKey) {
        (self.signing, self.verifying)
    }

    /// Signs one token and verifies it, at `clock`'s time: a mismatched
    /// pair (or a missing crypto backend) is an error here, not at every
    /// login.
    pub fn check(&self, clock: SharedClock) -> Result<(), KeyPairError> {
        let issuer =
            TokenIssuer::new(self.signing.clone(), "self-test", "self-test").clock(clock.clone());
        let token = issuer.issue(&AccessToken::new("self-test"))?;
        let verifier = JwtAuthenticator::builder()
            .trust(TrustedIssuer::new("self-test", "self-test").key(self.verifying.clone()))
            .clock(clock)
            .no_cache()
            .build()?;
        // Static keys verify without awaiting anything: one poll answers.
        let verify = std::pin::pin!(verifier.verify(token.expose()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match verify.poll(&mut cx) {
            Poll::Ready(Ok(_)) => Ok(()),
            _ => Err(KeyPairError::Mismatch),
        }
    }
}

impl FromStr for KeyPair {
    type Err = KeyError;

    /// An HMAC secret for `HS256` (its UTF-8 bytes).
    fn from_str(secret: &str) -> Result<Self, KeyError> {
        KeyPair::hmac(secret.as_bytes())
    }
}

/// An algorithm a [`KeyPair`] signs with, read case-insensitively from
/// configuration: `HS256`, `HS384`, `HS512` (an HMAC secret), `RS256`,
/// `ES256` (P-256) or `EdDSA` (Ed25519, PEM pairs).
///
/// ```
/// use mcp_auth::{Algorithm, SigningAlgorithm};
///
/// let algorithm: SigningAlgorithm = "eddsa".parse().unwrap();
/// assert_eq!(Algorithm::from(algorithm), Algorithm::EdDSA);
/// assert!(algorithm.is_pem());
/// assert_eq!(
///     "none".parse::<SigningAlgorithm>().unwrap_err().to_string(),
///     "expected HS256, HS384, HS512, RS256, ES256 or EdDSA"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningAlgorithm(Algorithm);

impl SigningAlgorithm {
    /// Whether keys for it come as a PEM pair (not an HMAC secret).
    pub fn is_pem(self) -> bool {
        self.0.family() != AlgorithmFamily::Hmac
    }
}

impl Default for SigningAlgorithm {
    /// `HS256`.
    fn default() -> Self {
        SigningAlgorithm(Algorithm::HS256)
    }
}

impl From<SigningAlgorithm> for Algorithm {
    fn from(algorithm: SigningAlgorithm) -> Self {
        algorithm.0
    }
}

/// A signing algorithm this crate does not offer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected HS256, HS384, HS512, RS256, ES256 or EdDSA")]
pub struct UnknownSigningAlgorithm;

impl FromStr for SigningAlgorithm {
    type Err = UnknownSigningAlgorithm;

    fn from_str(text: &str) -> Result<Self, UnknownSigningAlgorithm> {
        let algorithm = match text.to_ascii_uppercase().as_str() {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            "EDDSA" => Algorithm::EdDSA,
            _ => return Err(UnknownSigningAlgorithm),
        };
        Ok(SigningAlgorithm(algorithm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PRIVATE: &[u8] = include_bytes!("../tests/keys/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../tests/keys/rsa-public.pem");
    const RSA2_PUBLIC: &[u8] = include_bytes!("../tests/keys/rsa2-public.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../tests/keys/ec-public.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("../tests/keys/ed-private.pem");
    const ED_PUBLIC: &[u8] = include_bytes!("../tests/keys/ed-public.pem");

    #[test]
    fn pem_pairs_of_each_family_check() {
        for (algorithm, private, public) in [
            (Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::ES256, EC_PRIVATE, EC_PUBLIC),
            (Algorithm::EdDSA, ED_PRIVATE, ED_PUBLIC),
        ] {
            let keys = KeyPair::pem(algorithm, private, public)
                .unwrap()
                .with_kid("k");
            assert_eq!(keys.algorithm(), algorithm);
            assert_eq!(keys.signing().kid(), Some("k"));
            keys.check(mcp_core::SystemClock::shared()).unwrap();
        }
    }

    #[test]
    fn a_mismatched_pair_fails_its_check() {
        let keys = KeyPair::pem(Algorithm::RS256, RSA_PRIVATE, RSA2_PUBLIC).unwrap();
        assert!(matches!(
            keys.check(mcp_core::SystemClock::shared()),
            Err(KeyPairError::Mismatch)
        ));
    }

    #[test]
    fn errors_say_which_half_is_bad() {
        assert!(matches!(
            KeyPair::pem(Algorithm::RS256, b"junk", RSA_PUBLIC),
            Err(KeyPairError::Signing(KeyError::BadPem(_)))
        ));
        assert!(matches!(
            KeyPair::pem(Algorithm::RS256, RSA_PRIVATE, b"junk"),
            Err(KeyPairError::Verifying(KeyError::BadPem(_)))
        ));
        assert!(KeyPair::pem(Algorithm::HS256, RSA_PRIVATE, RSA_PUBLIC).is_err());
        assert_eq!(
            KeyPair::hmac(b"short").unwrap_err(),
            KeyError::SecretTooShort(5)
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let secret = "0123456789abcdef0123456789abcdef";
        let shown = format!("{:?}", secret.parse::<KeyPair>().unwrap());
        assert!(!shown.contains(secret), "{shown}");
        assert_eq!(shown, "KeyPair { algorithm: HS256, kid: None, .. }");
    }
}
