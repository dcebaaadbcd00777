//! The rate-limit response headers: [`HeaderStyle`] and the one place that
//! writes them.

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::quota::{Decision, Policy, ceil_secs};

/// Which rate-limit headers to send; several may be on at once.
///
/// Parsed, as the server's `MCP_RATE_LIMIT_HEADERS` setting is, from a
/// comma-separated list of `standard` ([`draft_07`](Self::draft_07)),
/// `draft` ([`structured`](Self::structured)) and `legacy`
/// ([`x_ratelimit`](Self::x_ratelimit)), in any case; the empty list sends
/// none.
///
/// ```
/// use mcp_ratelimit::HeaderStyle;
///
/// assert_eq!(HeaderStyle::default(), HeaderStyle::DRAFT_07);
/// let style: HeaderStyle = "draft, legacy".parse().unwrap();
/// assert!(style.structured && style.x_ratelimit && !style.draft_07);
/// assert_eq!(style.to_string(), "draft,legacy");
/// assert_eq!(
///     "fancy".parse::<HeaderStyle>().unwrap_err().to_string(),
///     r#"unknown header style "fancy"; use standard, draft, legacy"#
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderStyle {
    /// The separate fields of draft-ietf-httpapi-ratelimit-headers-07 (and
    /// earlier): `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
    /// (on by default; `standard` in the server's settings).
    pub draft_07: bool,
    /// The structured fields of draft 8 and later:
    /// `RateLimit-Policy: "api";q=100;w=60` and `RateLimit: "api";r=42;t=17`
    /// (`draft` in the server's settings).
    pub structured: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
    /// (`legacy` in the server's settings).
    pub x_ratelimit: bool,
}

impl HeaderStyle {
    /// No rate-limit headers (a `429` still carries `Retry-After`).
    pub const NONE: HeaderStyle = HeaderStyle {
        draft_07: false,
        structured: false,
        x_ratelimit: false,
    };

    /// Only the draft-07 fields: the default.
    pub const DRAFT_07: HeaderStyle = HeaderStyle {
        draft_07: true,
        ..HeaderStyle::NONE
    };

    /// Only the structured fields of draft 8 and later.
    pub const STRUCTURED: HeaderStyle = HeaderStyle {
        structured: true,
        ..HeaderStyle::NONE
    };

    /// Only the `X-RateLimit-*` fields.
    pub const X_RATELIMIT: HeaderStyle = HeaderStyle {
        x_ratelimit: true,
        ..HeaderStyle::NONE
    };

    /// Each style's setting name and whether it is on, in settings order.
    fn names(&self) -> [(&'static str, bool); 3] {
        [
            ("standard", self.draft_07),
            ("draft", self.structured),
            ("legacy", self.x_ratelimit),
        ]
    }
}

impl Default for HeaderStyle {
    fn default() -> Self {
        HeaderStyle::DRAFT_07
    }
}

impl fmt::Display for HeaderStyle {
    /// The setting's form: `standard`, `draft,legacy`, or empty for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, on) in self.names() {
            if on {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Why a [`HeaderStyle`] list was refused: a name that is not a style.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown header style {0:?}; use standard, draft, legacy")]
pub struct HeaderStyleError(String);

impl FromStr for HeaderStyle {
    type Err = HeaderStyleError;

    fn from_str(text: &str) -> Result<HeaderStyle, HeaderStyleError> {
        let mut style = HeaderStyle::NONE;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "standard" => style.draft_07 = true,
                "draft" => style.structured = true,
                "legacy" => style.x_ratelimit = true,
                other => return Err(HeaderStyleError(other.to_owned())),
            }
        }
        Ok(style)
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// `0..=10_000` as header values backed by static memory, so putting one on
/// a response is a copy, not an allocation or a reference count.
fn small_numbers() -> &'static [HeaderValue] {
    static NUMBERS: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    NUMBERS.get_or_init(|| {
        // One string for all of them, kept for the life of the process.
        let text: &'static str = Box::leak(
            (0..=10_000u32)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
                .into_boxed_str(),
        );
        text.split(' ').map(HeaderValue::from_static).collect()
    })
}

/// Writes one policy's headers in one style; made once per service.
#[derive(Clone, Debug)]
pub(crate) struct HeaderWriter {
    style: HeaderStyle,
    name: String,
    /// Header values of small numbers, shared by every limiter.
    numbers: &'static [HeaderValue],
    /// `RateLimit-Policy`, the same on every response.
    policy_header: HeaderValue,
}

impl HeaderWriter {
    pub(crate) fn new(style: HeaderStyle, policy: &Policy) -> HeaderWriter {
        let quota = policy.quota();
        let policy_header = HeaderValue::from_str(&format!(
            "\"{}\";q={};w={}",
            policy.name(),
            quota.limit(),
            ceil_secs(quota.period())
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""));
        HeaderWriter {
            style,
            name: policy.name().to_owned(),
            numbers: small_numbers(),
            policy_header,
        }
    }

    fn number(&self, n: u64) -> HeaderValue {
        usize::try_from(n)
            .ok()
            .and_then(|i| self.numbers.get(i))
            .cloned()
            .unwrap_or_else(|| HeaderValue::from(n))
    }

    /// Writes the headers of `decision`, unless an inner limiter already
    /// wrote headers with fewer requests left (read back from whichever
    /// remaining-header it wrote).
    pub(crate) fn apply(&self, headers: &mut HeaderMap, decision: &Decision) {
        if let Some(inner) = written_remaining(headers)
            && inner <= decision.remaining
        {
            return;
        }
        let limit = self.number(u64::from(decision.limit));
        let remaining = self.number(u64::from(decision.remaining));
        let reset = self.number(decision.reset_seconds());
        if self.style.draft_07 {
            headers.insert(RATELIMIT_LIMIT, limit.clone());
            headers.insert(RATELIMIT_REMAINING, remaining.clone());
            headers.insert(RATELIMIT_RESET, reset.clone());
        }
        if self.style.x_ratelimit {
            headers.insert(X_LIMIT, limit);
            headers.insert(X_REMAINING, remaining);
            headers.insert(X_RESET, reset);
        }
        if self.style.structured {
            headers.insert(RATELIMIT_POLICY, self.policy_header.clone());
            if let Ok(value) = HeaderValue::from_str(&format!(
                "\"{}\";r={};t={}",
                self.name,
                decision.remaining,
                decision.reset_seconds()
            )) {
                headers.insert(RATELIMIT, value);
            }
        }
    }
}

/// The remaining count an inner limiter wrote, in any style.
fn written_remaining(headers: &HeaderMap) -> Option<u32> {
    if headers.is_empty() {
        return None;
    }
    let number = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    number(&RATELIMIT_REMAINING)
        .or_else(|| number(&X_REMAINING))
        .or_else(|| {
            let value = headers.get(&RATELIMIT)?.to_str().ok()?;
            value
                .split(';')
                .find_map(|part| part.trim().strip_prefix("r="))
                .and_then(|r| r.parse().ok())
        })
}
