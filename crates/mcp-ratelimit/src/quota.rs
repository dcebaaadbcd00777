use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// "N requests per period", with a burst of N by default.
///
/// Written and parsed as `N/<duration>`: `100/60s`, `10/15m`, `1000/1m`.
/// Never as an interval between requests: `100/60s` admits 100 requests at
/// once, then one every 600 ms (GCRA), exactly as many as 100 per minute
/// allows.
///
/// ```
/// use std::time::Duration;
/// use mcp_ratelimit::Quota;
///
/// let quota: Quota = "100/60s".parse().unwrap();
/// assert_eq!(quota.limit(), 100);
/// assert_eq!(quota.period(), Duration::from_secs(60));
/// assert_eq!(quota.emission_interval(), Duration::from_millis(600));
/// assert_eq!(quota.to_string(), "100/60s");
/// assert!("100".parse::<Quota>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
}

/// Why a quota string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuotaError(&'static str);

impl Quota {
    /// `limit` per `period`; `None` when either is zero or the period is
    /// shorter than `limit` nanoseconds.
    pub fn per(limit: u32, period: Duration) -> Option<Quota> {
        let limit = NonZeroU32::new(limit)?;
        if period.as_nanos() < u128::from(limit.get()) {
            return None;
        }
        Some(Quota {
            limit,
            period,
            burst: limit,
        })
    }

    /// The same rate with another burst (how many may come at once).
    #[must_use]
    pub fn with_burst(mut self, burst: NonZeroU32) -> Quota {
        self.burst = burst;
        self
    }

    /// Requests per period.
    pub fn limit(&self) -> u32 {
        self.limit.get()
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How many may come at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.limit.get()
    }

    pub(crate) fn governor(&self) -> governor::Quota {
        governor::Quota::with_period(self.emission_interval())
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = self.period;
        if period.subsec_nanos() == 0 {
            write!(f, "{}/{}s", self.limit, period.as_secs())
        } else {
            write!(f, "{}/{}ms", self.limit, period.as_millis())
        }
    }
}

impl FromStr for Quota {
    type Err = QuotaError;

    fn from_str(text: &str) -> Result<Quota, QuotaError> {
        let (limit, period) = text
            .trim()
            .split_once('/')
            .ok_or(QuotaError("expected N/<duration>, such as 100/60s"))?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| QuotaError("the count must be a whole number, such as 100/60s"))?;
        let period = period.trim();
        let period = humantime_like(period).ok_or(QuotaError(
            "the period must be a duration, such as 60s, 15m or 1h",
        ))?;
        if limit == 0 || period.is_zero() {
            return Err(QuotaError("the count and the period must not be zero"));
        }
        // Below one nanosecond between requests nothing could be counted.
        Quota::per(limit, period).ok_or(QuotaError(
            "the period is too short for the count: at most one per nanosecond",
        ))
    }
}

/// `60s`, `500ms`, `15m`, `1h`, `1d`; a bare `s`/`m`/`h` means one.
fn humantime_like(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = if number.is_empty() {
        1
    } else {
        number.parse().ok()?
    };
    let unit_secs = |secs: u64| number.checked_mul(secs).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" | "sec" => unit_secs(1),
        "m" | "min" => unit_secs(60),
        "h" => unit_secs(3600),
        "d" => unit_secs(86_400),
        _ => None,
    }
}

/// A named quota: the name appears in headers (`RateLimit-Policy`), metrics
/// and Redis keys. Two policies with the same name and quota count into the
/// same buckets.
#[derive(Clone, Debug)]
pub struct Policy {
    name: String,
    quota: Quota,
    /// The hash of name and quota, computed once: backends look policies up
    /// on every request.
    hash: u64,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        self.hash == other.hash && self.quota == other.quota && self.name == other.name
    }
}

impl Eq for Policy {}

impl std::hash::Hash for Policy {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Policy {
    /// A policy `name` with `quota`. The name is kept to `[A-Za-z0-9_-.:/]`
    /// (`tool:admin/reset`): what a quoted header string and a Redis key
    /// hold as they are.
    pub fn new(name: impl Into<String>, quota: Quota) -> Policy {
        let name: String = name
            .into()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
            .collect();
        let hash = {
            use std::hash::{BuildHasher, Hash, Hasher};
            // Fixed seed: equal policies must hash equally in every backend.
            let mut hasher = foldhash::fast::FixedState::with_seed(0x6d63_702d_726c).build_hasher();
            name.hash(&mut hasher);
            quota.hash(&mut hasher);
            hasher.finish()
        };
        Policy { name, quota, hash }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The quota's count.
    pub limit: u32,
    /// How many more would be admitted right now.
    pub remaining: u32,
    /// Until the quota is whole again.
    pub reset: Duration,
    /// When refused: how long until one more is admitted.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Whole seconds, rounded up, as headers want them.
    pub fn reset_seconds(&self) -> u64 {
        ceil_secs(self.reset)
    }

    /// Whole seconds until a retry may pass (at least 1 when refused).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after.map(|d| ceil_secs(d).max(1))
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_n_per_period() {
        for (text, limit, secs) in [
            ("100/60s", 100, 60),
            ("10/15m", 10, 900),
            ("1000/1m", 1000, 60),
            ("30/60s", 30, 60),
            (" 5 / 1h ", 5, 3600),
            ("1/d", 1, 86_400),
        ] {
            let quota: Quota = text.parse().unwrap();
            assert_eq!(
                (quota.limit(), quota.period()),
                (limit, Duration::from_secs(secs)),
                "{text}"
            );
        }
        let quota: Quota = "3/500ms".parse().unwrap();
        assert_eq!(quota.period(), Duration::from_millis(500));
        assert_eq!(quota.to_string(), "3/500ms");
    }

    #[test]
    fn refuses_nonsense() {
        for text in [
            "",
            "100",
            "/60s",
            "0/60s",
            "100/0s",
            "-1/60s",
            "100/60x",
            "100/sixty",
            "1e3/60s",
            "99999999999/1s",
        ] {
            assert!(text.parse::<Quota>().is_err(), "{text}");
        }
        // Each refusal says what is wrong: a period too short for its count
        // is not a zero.
        let error = |text: &str| text.parse::<Quota>().unwrap_err().to_string();
        assert_eq!(error("0/60s"), "the count and the period must not be zero");
        assert_eq!(
            error("1000001/1ms"),
            "the period is too short for the count: at most one per nanosecond"
        );
    }

    #[test]
    fn policy_names_are_tamed() {
        let policy = Policy::new(
            "api key\"\n{x}",
            Quota::per(1, Duration::from_secs(1)).unwrap(),
        );
        assert_eq!(policy.name(), "apikeyx");
    }

    #[test]
    fn rounding() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn a_period_of_at_least_one_nanosecond_per_request() {
        let exact = Quota::per(1000, Duration::from_nanos(1000)).unwrap();
        assert_eq!(exact.emission_interval(), Duration::from_nanos(1));
        assert_eq!(Quota::per(1000, Duration::from_nanos(999)), None);
        assert_eq!(Quota::per(1, Duration::from_nanos(1)).unwrap().limit(), 1);
        assert_eq!(Quota::per(1, Duration::ZERO), None);
        assert_eq!(Quota::per(0, Duration::from_secs(1)), None);
    }

    #[test]
    fn policies_are_equal_by_name_and_quota_not_by_hash_alone() {
        let per_minute = Quota::per(10, Duration::from_secs(60)).unwrap();
        let per_hour = Quota::per(10, Duration::from_secs(3600)).unwrap();
        let api = Policy::new("api", per_minute);
        assert_eq!(api, Policy::new("api", per_minute));
        // The name is tamed before it is compared.
        assert_eq!(api, Policy::new("a p i!", per_minute));
        assert_ne!(api, Policy::new("auth", per_minute), "another name");
        assert_ne!(api, Policy::new("api", per_hour), "another quota");
        // A hash collision does not make two policies one.
        let colliding = Policy {
            name: "other".to_owned(),
            quota: per_hour,
            hash: api.hash,
        };
        assert_ne!(api, colliding);
        assert_ne!(
            api,
            Policy {
                name: "api".to_owned(),
                quota: per_hour,
                hash: api.hash,
            }
        );
        assert_ne!(
            api,
            Policy {
                name: "other".to_owned(),
                quota: per_minute,
                hash: api.hash,
            }
        );
    }
}
