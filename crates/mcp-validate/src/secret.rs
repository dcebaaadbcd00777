//! A secret read from a request body.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret from a request body, such as a password.
///
/// Deserializes from a JSON string like a `String` and checks with garde's
/// `length` rule like one (`length(min = 8)`, `length(chars, ...)`,
/// `length(bytes, ...)`). `Debug` prints `[redacted]`, so a logged body
/// never shows it; the memory is wiped when it is dropped. It is not
/// `Serialize` and has no `Display`: reading it takes [`Secret::expose`].
///
/// ```
/// use mcp_validate::Secret;
///
/// let secret: Secret = serde_json::from_str(r#""hunter2""#).unwrap();
/// assert_eq!(secret.expose(), "hunter2");
/// assert_eq!(format!("{secret:?}"), "[redacted]");
/// ```
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `secret`.
    pub fn new(secret: String) -> Self {
        Secret(secret)
    }

    /// The secret itself, for the one place that needs it (hashing,
    /// verifying).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Secret(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl Zeroize for Secret {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Secret {}

impl garde::rules::length::HasSimpleLength for Secret {
    fn length(&self) -> usize {
        self.0.len()
    }
}

impl garde::rules::length::HasBytes for Secret {
    fn num_bytes(&self) -> usize {
        self.0.len()
    }
}

impl garde::rules::length::HasChars for Secret {
    fn num_chars(&self) -> usize {
        self.0.chars().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use garde::Validate;

    #[derive(Debug, Deserialize, Validate)]
    struct Login {
        #[garde(length(chars, min = 8, max = 16))]
        password: Secret,
        #[garde(inner(length(min = 1)))]
        current: Option<Secret>,
    }

    #[test]
    fn redacted_and_validated_like_a_string() {
        let login: Login =
            serde_json::from_str(r#"{"password":"correct horse","current":"x"}"#).unwrap();
        assert!(login.validate().is_ok());
        let debug = format!("{login:?}");
        assert!(
            !debug.contains("horse") && debug.contains("[redacted]"),
            "{debug}"
        );
        let short: Login = serde_json::from_str(r#"{"password":"short","current":""}"#).unwrap();
        let report = short.validate().unwrap_err();
        assert_eq!(report.iter().count(), 2);
    }

    #[test]
    fn it_holds_the_text_it_was_given() {
        assert_eq!(Secret::new("hunter2".to_owned()).expose(), "hunter2");
        assert_eq!(Secret::from("hunter2".to_owned()).expose(), "hunter2");
        let login: Login = serde_json::from_str(r#"{"password":"correct horse"}"#).unwrap();
        assert_eq!(login.password.expose(), "correct horse");
        assert_eq!(login.password.clone().expose(), "correct horse");
        assert!(login.current.is_none());
    }

    #[derive(Debug, Deserialize, Validate)]
    struct Pin {
        #[garde(length(bytes, min = 4, max = 8))]
        pin: Secret,
    }

    #[test]
    fn byte_lengths_count_bytes() {
        let pin = |text: &str| Pin {
            pin: Secret::from(text.to_owned()),
        };
        // Four characters of two bytes: 8 bytes, within the limit.
        assert!(pin("éééé").validate().is_ok());
        assert!(pin("1234").validate().is_ok());
        // Five such characters: 10 bytes; three ASCII ones: 3 bytes.
        assert!(pin("ééééé").validate().is_err());
        assert!(pin("123").validate().is_err());
    }

    #[test]
    fn zeroize_wipes_it() {
        let mut secret = Secret::from("hunter2".to_owned());
        secret.zeroize();
        assert_eq!(secret.expose(), "");
    }
}
