use std::fmt;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

/// The least an HMAC secret may hold, in bytes (RFC 7518 §3.2 for HS256).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Why a key cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An HMAC secret shorter than 32 bytes.
    #[error("an HMAC secret needs at least {MIN_HMAC_SECRET_BYTES} bytes, got {0}")]
    SecretTooShort(usize),
    /// The PEM text is not a key of the expected type.
    #[error("not a valid {0} key in PEM form")]
    BadPem(&'static str),
    /// A JWK the crate cannot use (unknown type, symmetric, malformed).
    #[error("unusable JWK: {0}")]
    BadJwk(String),
    /// The algorithm does not fit the key.
    #[error("algorithm {algorithm:?} does not fit a {family} key")]
    WrongAlgorithm {
        /// The algorithm asked for.
        algorithm: Algorithm,
        /// The key's family.
        family: &'static str,
    },
}

fn family_name(family: AlgorithmFamily) -> &'static str {
    match family {
        AlgorithmFamily::Hmac => "HMAC",
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
    }
}

fn check_family(algorithm: Algorithm, family: AlgorithmFamily) -> Result<(), KeyError> {
    if algorithm.family() == family {
        Ok(())
    } else {
        Err(KeyError::WrongAlgorithm {
            algorithm,
            family: family_name(family),
        })
    }
}

/// A key that checks token signatures, with the one algorithm it accepts and
/// an optional key id (`kid`).
///
/// Binding each key to one algorithm is what defeats algorithm confusion: an
/// `HS256` token is never checked against an RSA public key, whatever its
/// header says. Its `Debug` output never shows key material.
///
/// ```
/// use mcp_auth::VerifyingKey;
/// use jsonwebtoken::Algorithm;
///
/// let key = VerifyingKey::hmac(b"0123456789abcdef0123456789abcdef").unwrap().with_kid("k1");
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// assert!(VerifyingKey::hmac(b"short").is_err());
/// ```
#[derive(Clone)]
pub struct VerifyingKey {
    key: DecodingKey,
    algorithm: Algorithm,
    kid: Option<String>,
    /// For HMAC keys, the key prepared once: jsonwebtoken prepares one per
    /// call, which costs as much as the MAC itself.
    prepared_hmac: Option<aws_lc_rs::hmac::Key>,
}

impl VerifyingKey {
    /// An HMAC secret (at least 32 bytes) for `HS256`.
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// An RSA public key in PEM for `RS256`.
    pub fn rsa_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|_| KeyError::BadPem("RSA public"))?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    /// An EC (P-256) public key in PEM for `ES256`.
    pub fn ec_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|_| KeyError::BadPem("EC public"))?;
        Ok(Self::new(key, Algorithm::ES256))
    }

    /// An Ed25519 public key in PEM for `EdDSA`.
    pub fn ed_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|_| KeyError::BadPem("Ed25519 public"))?;
        Ok(Self::new(key, Algorithm::EdDSA))
    }

    /// A public key from a JWK (as published in a JWKS). Symmetric (`oct`)
    /// keys are refused: a published secret is no secret.
    pub fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Self, KeyError> {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
        let default_algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(KeyError::BadJwk("unsupported curve".into())),
            },
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::OctetKey(_) => {
                return Err(KeyError::BadJwk("symmetric keys are not accepted".into()));
            }
            _ => return Err(KeyError::BadJwk("unsupported key type".into())),
        };
        let algorithm = match jwk.common.key_algorithm {
            Some(declared) => declared
                .to_string()
                .parse::<Algorithm>()
                .map_err(|_| KeyError::BadJwk(format!("unsupported alg {declared}")))?,
            None => default_algorithm,
        };
        check_family(algorithm, default_algorithm.family())?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::BadJwk(e.to_string()))?;
        let mut key = Self::new(key, algorithm);
        key.kid = jwk.common.key_id.clone();
        Ok(key)
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut key = VerifyingKey {
            key,
            algorithm,
            kid: None,
            prepared_hmac: None,
        };
        key.prepare();
        key
    }

    fn prepare(&mut self) {
        use aws_lc_rs::hmac;
        let mac = match self.algorithm {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => {
                self.prepared_hmac = None;
                return;
            }
        };
        self.prepared_hmac = self
            .key
            .try_get_as_bytes()
            .ok()
            .map(|secret| hmac::Key::new(mac, secret));
    }

    /// Accepts `algorithm` instead of the default (`HS384`, `PS256`, ...).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Result<Self, KeyError> {
        check_family(algorithm, self.algorithm.family())?;
        self.algorithm = algorithm;
        self.prepare();
        Ok(self)
    }

    /// Checks `signature` (base64url, as in the token) over `message` with
    /// this key's own algorithm, never one named by the token.
    pub(crate) fn verify_signature(
        &self,
        message: &[u8],
        signature: &str,
    ) -> Result<bool, crate::AuthError> {
        use base64::Engine;
        let malformed = || crate::AuthError::invalid_token("malformed token");
        match &self.prepared_hmac {
            Some(key) => {
                // The longest MAC here is HS512's 64 bytes.
                let mut decoded = [0u8; 64];
                let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode_slice(signature, &mut decoded)
                    .map_err(|_| malformed())?;
                Ok(aws_lc_rs::hmac::verify(key, message, &decoded[..len]).is_ok())
            }
            None => jsonwebtoken::crypto::verify(signature, message, &self.key, self.algorithm)
                .map_err(|_| malformed()),
        }
    }

    /// Names the key; tokens select it by their `kid` header.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The algorithm this key accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id, if named.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A key that signs the tokens this server issues, with its algorithm and
/// optional key id. Its `Debug` output never shows key material.
///
/// ```
/// use mcp_auth::SigningKey;
///
/// let key = SigningKey::hmac(b"0123456789abcdef0123456789abcdef").unwrap();
/// assert_eq!(format!("{key:?}"), "SigningKey { algorithm: HS256, kid: None, .. }");
/// ```
#[derive(Clone)]
pub struct SigningKey {
    pub(crate) key: EncodingKey,
    algorithm: Algorithm,
    kid: Option<String>,
}

impl SigningKey {
    /// An HMAC secret (at least 32 bytes) for `HS256`.
    pub fn hmac(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self::new(
            EncodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// An RSA private key in PEM (PKCS#1 or PKCS#8) for `RS256`.
    pub fn rsa_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|_| KeyError::BadPem("RSA private"))?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    /// An EC (P-256) private key in PKCS#8 PEM for `ES256`.
    pub fn ec_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = EncodingKey::from_ec_pem(pem).map_err(|_| KeyError::BadPem("EC private"))?;
        Ok(Self::new(key, Algorithm::ES256))
    }

    /// An Ed25519 private key in PKCS#8 PEM for `EdDSA`.
    pub fn ed_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key = EncodingKey::from_ed_pem(pem).map_err(|_| KeyError::BadPem("Ed25519 private"))?;
        Ok(Self::new(key, Algorithm::EdDSA))
    }

    fn new(key: EncodingKey, algorithm: Algorithm) -> Self {
        SigningKey {
            key,
            algorithm,
            kid: None,
        }
    }

    /// Signs with `algorithm` instead of the default (`HS384`, `PS256`, ...).
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Result<Self, KeyError> {
        check_family(algorithm, self.algorithm.family())?;
        self.algorithm = algorithm;
        Ok(self)
    }

    /// Puts `kid` in the header of every token.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id, if named.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Installs aws-lc-rs as jsonwebtoken's crypto provider for this process.
///
/// jsonwebtoken picks its provider from crate features and panics at the
/// first signature if it finds none or two (feature unification in a larger
/// build can do that). Everything in this crate that signs or verifies calls
/// this first, so the choice never depends on features; calling it again
/// does nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider is installed already, which is what we want.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            VerifyingKey::hmac(&[0; 31]).unwrap_err(),
            KeyError::SecretTooShort(31)
        );
        assert!(SigningKey::hmac(&[0; 31]).is_err());
        assert!(SigningKey::hmac(&[0; 32]).is_ok());
    }

    #[test]
    fn algorithms_must_fit_the_key() {
        let key = VerifyingKey::hmac(&[1; 32]).unwrap();
        assert!(key.clone().with_algorithm(Algorithm::HS512).is_ok());
        assert!(matches!(
            key.with_algorithm(Algorithm::RS256),
            Err(KeyError::WrongAlgorithm { .. })
        ));
    }

    /// A refused algorithm names the key's family.
    #[test]
    fn a_wrong_algorithm_names_the_family_of_the_key() {
        let error = |algorithm, family| check_family(algorithm, family).unwrap_err().to_string();
        assert_eq!(
            error(Algorithm::RS256, AlgorithmFamily::Hmac),
            "algorithm RS256 does not fit a HMAC key"
        );
        assert_eq!(
            error(Algorithm::HS256, AlgorithmFamily::Rsa),
            "algorithm HS256 does not fit a RSA key"
        );
        assert_eq!(
            error(Algorithm::HS256, AlgorithmFamily::Ec),
            "algorithm HS256 does not fit a EC key"
        );
        assert_eq!(
            error(Algorithm::HS256, AlgorithmFamily::Ed),
            "algorithm HS256 does not fit a Ed25519 key"
        );
    }

    use mcp_testkit::assert_hidden;

    #[test]
    fn debug_hides_material() {
        let secret = b"super-secret-material-0123456789ab";
        let verifying = VerifyingKey::hmac(secret).unwrap();
        assert_hidden(&format!("{verifying:?}"), secret);
        assert_hidden(&format!("{verifying:#?}"), secret);
        let signing = SigningKey::hmac(secret).unwrap();
        assert_hidden(&format!("{signing:?}"), secret);
        assert_hidden(&format!("{signing:#?}"), secret);
    }

    const EC_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec-private.pem");
    const EC384_PRIVATE: &[u8] = include_bytes!("../tests/keys/ec384-private.pem");
    const ED_PUBLIC: &[u8] = include_bytes!("../tests/keys/ed-public.pem");

    /// A compact JWT signed with `key`, split into the signed message and
    /// the signature.
    fn signed(algorithm: Algorithm, key: &EncodingKey) -> (String, String) {
        install_crypto_provider();
        let header = jsonwebtoken::Header::new(algorithm);
        let token = jsonwebtoken::encode(&header, &serde_json::json!({"sub": "u1"}), key).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        (message.to_owned(), signature.to_owned())
    }

    /// A P-384 JWK gives an `ES384` key, with its kid, that verifies the
    /// tokens of its private key and no other's.
    #[test]
    fn a_p384_jwk_verifies_es384_tokens() {
        install_crypto_provider();
        let private = EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&private, Algorithm::ES384).unwrap();
        jwk.common.key_id = Some("p384".to_owned());
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        assert_eq!(
            (key.algorithm(), key.kid()),
            (Algorithm::ES384, Some("p384"))
        );
        // Without a declared alg, the curve alone chooses ES384.
        jwk.common.key_algorithm = None;
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES384);

        let (message, signature) = signed(Algorithm::ES384, &private);
        assert_eq!(
            key.verify_signature(message.as_bytes(), &signature),
            Ok(true)
        );
        let mut other = message.clone();
        other.push('x');
        assert_ne!(key.verify_signature(other.as_bytes(), &signature), Ok(true));
        // A P-256 key's ES256 token is not this key's.
        let p256 = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let (message, signature) = signed(Algorithm::ES256, &p256);
        assert_ne!(
            key.verify_signature(message.as_bytes(), &signature),
            Ok(true)
        );
    }

    /// A symmetric (`oct`) JWK is refused as such; a curve the crate does
    /// not take is refused as an unsupported curve.
    #[test]
    fn symmetric_jwks_and_other_curves_are_refused() {
        install_crypto_provider();
        let secret = EncodingKey::from_secret(&[7; 32]);
        let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&secret, Algorithm::HS256).unwrap();
        let error = VerifyingKey::from_jwk(&jwk).unwrap_err();
        assert_eq!(
            error,
            KeyError::BadJwk("symmetric keys are not accepted".into())
        );
        assert_eq!(
            error.to_string(),
            "unusable JWK: symmetric keys are not accepted"
        );
        let p521: jsonwebtoken::jwk::Jwk =
            serde_json::from_str(r#"{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}"#).unwrap();
        assert_eq!(
            VerifyingKey::from_jwk(&p521).unwrap_err(),
            KeyError::BadJwk("unsupported curve".into())
        );
    }

    /// `Debug` shows the algorithm and the kid, exactly, and nothing else.
    #[test]
    fn debug_shows_algorithm_and_kid() {
        let hmac = VerifyingKey::hmac(&[3; 32]).unwrap().with_kid("k1");
        assert_eq!(
            format!("{hmac:?}"),
            "VerifyingKey { algorithm: HS256, kid: Some(\"k1\"), .. }"
        );
        let ed = VerifyingKey::ed_pem(ED_PUBLIC).unwrap();
        assert_eq!(
            format!("{ed:?}"),
            "VerifyingKey { algorithm: EdDSA, kid: None, .. }"
        );
        let ec = SigningKey::ec_pem(EC_PRIVATE).unwrap().with_kid("ec-1");
        assert_eq!(
            format!("{ec:?}"),
            "SigningKey { algorithm: ES256, kid: Some(\"ec-1\"), .. }"
        );
        let hs = SigningKey::hmac(&[3; 32])
            .unwrap()
            .with_algorithm(Algorithm::HS512)
            .unwrap();
        assert_eq!(
            format!("{hs:?}"),
            "SigningKey { algorithm: HS512, kid: None, .. }"
        );
    }

    /// Each signing key reports the algorithm of its kind, or the one set.
    #[test]
    fn signing_keys_report_their_algorithm() {
        let ec = SigningKey::ec_pem(EC_PRIVATE).unwrap();
        assert_eq!(ec.algorithm(), Algorithm::ES256);
        let ed = SigningKey::ed_pem(include_bytes!("../tests/keys/ed-private.pem")).unwrap();
        assert_eq!(ed.algorithm(), Algorithm::EdDSA);
        let rsa = SigningKey::rsa_pem(include_bytes!("../tests/keys/rsa-private.pem")).unwrap();
        assert_eq!(rsa.algorithm(), Algorithm::RS256);
        let hs = SigningKey::hmac(&[3; 32]).unwrap();
        assert_eq!(
            hs.with_algorithm(Algorithm::HS384).unwrap().algorithm(),
            Algorithm::HS384
        );
    }

    /// With each HMAC algorithm, an HMAC key checks MACs of its own
    /// length: a correct one verifies, a wrong one of 64 bytes is a bad
    /// signature, and one longer than HS512's 64 bytes is malformed, never
    /// checked (the key prepared once reads at most 64 bytes; jsonwebtoken's
    /// own check would call it a bad signature).
    #[test]
    fn hmac_signatures_longer_than_any_mac_are_malformed() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let secret = [5; 32];
        let too_long = URL_SAFE_NO_PAD.encode([0u8; 65]);
        let wrong = URL_SAFE_NO_PAD.encode([0u8; 64]);
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let key = VerifyingKey::hmac(&secret)
                .unwrap()
                .with_algorithm(algorithm)
                .unwrap();
            let (message, signature) = signed(algorithm, &EncodingKey::from_secret(&secret));
            assert_eq!(
                key.verify_signature(message.as_bytes(), &signature),
                Ok(true),
                "{algorithm:?}"
            );
            assert_eq!(
                key.verify_signature(message.as_bytes(), &wrong),
                Ok(false),
                "{algorithm:?}"
            );
            assert_eq!(
                key.verify_signature(message.as_bytes(), &too_long),
                Err(crate::AuthError::invalid_token("malformed token")),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        assert_eq!(
            VerifyingKey::rsa_pem(b"not a key").unwrap_err(),
            KeyError::BadPem("RSA public")
        );
        assert!(
            VerifyingKey::ec_pem(b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----").is_err()
        );
        assert!(SigningKey::ed_pem(b"").is_err());
    }
}
