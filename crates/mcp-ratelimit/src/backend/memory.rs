//! [`InMemoryBackend`]: GCRA on governor, in process.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, StateStore};
use mcp_core::{SharedClock, SystemClock};

use super::{BackendError, Check, RateLimitBackend};
use crate::key::RateKey;
use crate::quota::{Decision, Policy};

/// governor's clock over an injected [`mcp_core::Clock`], so tests move
/// time by hand.
#[derive(Clone, Debug)]
struct GovernorClock(SharedClock);

impl governor::clock::Clock for GovernorClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.now().duration_since(UNIX_EPOCH).unwrap_or_default())
    }
}

/// governor's DashMap store, shared so the backend can ask whether a key is
/// tracked (for the cap) without counting it.
#[derive(Clone, Debug)]
struct SharedStore(Arc<DashMap<RateKey, InMemoryState, foldhash::fast::RandomState>>);

impl StateStore for SharedStore {
    type Key = RateKey;

    fn measure_and_replace<T, F, E>(&self, key: &RateKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<RateKey> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        self.0.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

type Limiter =
    governor::RateLimiter<RateKey, SharedStore, GovernorClock, StateInformationMiddleware>;

/// One keyed GCRA: governor's limiter over a store the backend can see.
struct Buckets {
    limiter: Limiter,
    store: SharedStore,
    /// Keys found exhausted, until when: `peek` answers from here, since
    /// governor has no way to look without counting.
    exhausted: moka::sync::Cache<RateKey, SystemTime, foldhash::fast::RandomState>,
}

impl Buckets {
    fn new(policy: &Policy, clock: &SharedClock, capacity: u64) -> Buckets {
        let store = SharedStore(Arc::new(DashMap::with_hasher(
            foldhash::fast::RandomState::default(),
        )));
        let limiter = governor::RateLimiter::<
            RateKey,
            SharedStore,
            GovernorClock,
            governor::middleware::NoOpMiddleware<Nanos>,
        >::new(
            policy.quota().governor(),
            store.clone(),
            GovernorClock(clock.clone()),
        )
        .with_middleware::<StateInformationMiddleware>();
        Buckets {
            limiter,
            store,
            exhausted: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(policy.quota().period())
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// Moves `key`'s theoretical arrival time back by `cost` intervals.
    /// governor has no refund, but its state is that one number (relative
    /// to the limiter's start), and any value not after now, 0 included
    /// ("never seen"), is a full bucket, so subtracting needs no clock.
    fn refund(&self, policy: &Policy, key: &RateKey, cost: u32) {
        // An untracked key has a full bucket: nothing to give back, and no
        // entry to create.
        if !self.store.0.contains_key(key) {
            return;
        }
        let back = Nanos::from(policy.quota().emission_interval()) * u64::from(cost.max(1));
        let _ = self.store.measure_and_replace(key, |tat| {
            Ok::<_, std::convert::Infallible>((
                (),
                tat.map_or(Nanos::from(0u64), |tat| tat.saturating_sub(back)),
            ))
        });
        // At least one request is free again. (Looking first: most refunds
        // are of keys never exhausted, and a lookup costs less than an
        // invalidation, which queues a write.)
        if self.exhausted.contains_key(key) {
            self.exhausted.invalidate(key);
        }
    }
}

/// Where keys past the cap are counted, together.
const OVERFLOW: RateKey = RateKey::V4([0; 4]);

struct PolicyState {
    buckets: Buckets,
    /// One bucket shared by every key that arrives while `buckets` is full,
    /// so a new key past the cap is limited too, never waved through.
    overflow: Buckets,
    /// Whether the store holds `max_keys` keys (refreshed every 256 checks
    /// and at each eviction).
    full: AtomicBool,
    checks: AtomicU64,
}

impl PolicyState {
    /// The buckets `key` is counted in, and its key there.
    fn place<'k>(&self, key: &'k RateKey) -> (&Buckets, &'k RateKey) {
        if self.full.load(Ordering::Relaxed) && !self.buckets.store.0.contains_key(key) {
            (&self.overflow, &OVERFLOW)
        } else {
            (&self.buckets, key)
        }
    }
}

/// The in-process backend: GCRA on governor, one keyed limiter per policy.
///
/// - **Memory stays bounded**: [`evict_idle`](Self::evict_idle) (every minute
///   from [`start_eviction`](Self::start_eviction)) drops keys whose bucket is
///   full again, which is indistinguishable from never having been seen.
/// - **Hard cap**: past `max_keys` (1,000,000 per policy) tracked keys, a key
///   not already tracked is counted in one **overflow bucket** with the
///   policy's quota, shared by every such key, so new keys are still
///   limited (together, and strictly: a flood of new keys cannot buy
///   unlimited requests, it can only crowd the overflow); tracked keys go on
///   being limited normally. Idle eviction makes room again. (The cap is
///   re-read every 256 checks, so it may be passed by that many keys.)
///
/// ```
/// use std::time::Duration;
/// use mcp_core::ManualClock;
/// use mcp_ratelimit::{InMemoryBackend, Policy, Quota, RateKey, RateLimitBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let clock = ManualClock::at_unix(1_000);
/// let backend = InMemoryBackend::new().clock(clock.shared());
/// let policy = Policy::new("api", Quota::per(2, Duration::from_secs(60)).unwrap());
/// let key = RateKey::text("alice");
/// assert!(backend.check(&policy, &key, 1).decision().await.unwrap().allowed);
/// assert!(backend.check(&policy, &key, 1).decision().await.unwrap().allowed);
/// let refused = backend.check(&policy, &key, 1).decision().await.unwrap();
/// assert!(!refused.allowed);
/// assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
/// # }
/// ```
pub struct InMemoryBackend {
    clock: SharedClock,
    max_keys: usize,
    policies: RwLock<HashMap<Policy, Arc<PolicyState>, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for InMemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBackend")
            .field("max_keys", &self.max_keys)
            .field("tracked", &self.tracked_keys())
            .finish()
    }
}

impl Default for InMemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBackend {
    /// A backend on the system clock, capped at 1,000,000 keys per policy.
    pub fn new() -> Self {
        InMemoryBackend {
            clock: SystemClock::shared(),
            max_keys: 1_000_000,
            policies: RwLock::new(HashMap::default()),
        }
    }

    /// The time source.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The most keys tracked per policy.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    fn state(&self, policy: &Policy) -> Arc<PolicyState> {
        if let Some(state) = self
            .policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(policy)
        {
            return state.clone();
        }
        let mut policies = self.policies.write().unwrap_or_else(|p| p.into_inner());
        policies
            .entry(policy.clone())
            .or_insert_with(|| {
                Arc::new(PolicyState {
                    buckets: Buckets::new(policy, &self.clock, self.max_keys as u64),
                    overflow: Buckets::new(policy, &self.clock, 1),
                    full: AtomicBool::new(false),
                    checks: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Runs `f` on the state of `policy`, creating it on first use.
    fn with_state<T>(&self, policy: &Policy, f: impl FnOnce(&PolicyState) -> T) -> T {
        if let Some(state) = self
            .policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(policy)
        {
            return f(state);
        }
        f(&self.state(policy))
    }

    fn decide(&self, policy: &Policy, key: &RateKey, cost: u32) -> Result<Decision, BackendError> {
        self.with_state(policy, |state| self.decide_in(state, policy, key, cost))
    }

    fn decide_in(
        &self,
        state: &PolicyState,
        policy: &Policy,
        key: &RateKey,
        cost: u32,
    ) -> Result<Decision, BackendError> {
        if state
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(256)
        {
            state.full.store(
                state.buckets.store.0.len() >= self.max_keys,
                Ordering::Relaxed,
            );
        }
        let (buckets, key) = state.place(key);
        let quota = policy.quota();
        let interval = quota.emission_interval();
        let n = NonZeroU32::new(cost.max(1)).unwrap_or(NonZeroU32::MIN);
        let outcome = match buckets.limiter.check_key_n(key, n) {
            Ok(outcome) => outcome,
            // More than the burst at once can never pass.
            Err(_) => {
                return Ok(Decision {
                    allowed: false,
                    limit: quota.limit(),
                    remaining: 0,
                    reset: quota.period(),
                    retry_after: Some(quota.period()),
                });
            }
        };
        match outcome {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = quota.burst().saturating_sub(remaining);
                if remaining == 0 {
                    // The next request would be refused for up to one
                    // interval: remember it for `peek`.
                    buckets
                        .exhausted
                        .insert(key.clone(), self.clock.now() + interval);
                }
                Ok(Decision {
                    allowed: true,
                    limit: quota.limit(),
                    remaining,
                    reset: interval * used,
                    retry_after: None,
                })
            }
            Err(not_until) => {
                let now = self.clock.now();
                let wait = not_until.wait_time_from(Nanos::from(
                    now.duration_since(UNIX_EPOCH).unwrap_or_default(),
                ));
                buckets.exhausted.insert(key.clone(), now + wait);
                Ok(Decision {
                    allowed: false,
                    limit: quota.limit(),
                    remaining: 0,
                    reset: interval * quota.burst() - interval + wait,
                    retry_after: Some(wait),
                })
            }
        }
    }

    fn look(&self, policy: &Policy, key: &RateKey) -> Decision {
        self.with_state(policy, |state| self.look_in(state, policy, key))
    }

    fn look_in(&self, state: &PolicyState, policy: &Policy, key: &RateKey) -> Decision {
        let quota = policy.quota();
        let now = self.clock.now();
        let (buckets, key) = state.place(key);
        match buckets.exhausted.get(key) {
            Some(until) if until > now => {
                let wait = until.duration_since(now).unwrap_or_default();
                Decision {
                    allowed: false,
                    limit: quota.limit(),
                    remaining: 0,
                    reset: wait,
                    retry_after: Some(wait),
                }
            }
            _ => Decision {
                allowed: true,
                limit: quota.limit(),
                remaining: 1,
                reset: Duration::ZERO,
                retry_after: None,
            },
        }
    }

    /// Drops keys whose bucket is full again (idle keys); returns how many
    /// keys are still tracked.
    pub fn evict_idle(&self) -> usize {
        let policies: Vec<Arc<PolicyState>> = self
            .policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut tracked = 0;
        for state in policies {
            for buckets in [&state.buckets, &state.overflow] {
                buckets.limiter.retain_recent();
                buckets.limiter.shrink_to_fit();
                buckets.exhausted.run_pending_tasks();
            }
            let len = state.buckets.store.0.len();
            state.full.store(len >= self.max_keys, Ordering::Relaxed);
            tracked += len;
        }
        tracked
    }

    /// Keys tracked across policies.
    pub fn tracked_keys(&self) -> usize {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| s.buckets.store.0.len())
            .sum()
    }

    /// Runs [`evict_idle`](Self::evict_idle) every `interval`.
    pub fn start_eviction(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let backend = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(backend) = backend.upgrade() else {
                    return;
                };
                let tracked = backend.evict_idle();
                metrics::gauge!("ratelimit_tracked_keys").set(tracked as f64);
            }
        })
    }
}

impl RateLimitBackend for InMemoryBackend {
    fn check<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a> {
        Check::Ready(self.decide(policy, key, cost))
    }

    fn peek<'a>(&'a self, policy: &'a Policy, key: &'a RateKey) -> Check<'a> {
        Check::Ready(Ok(self.look(policy, key)))
    }

    fn refund<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a, ()> {
        self.with_state(policy, |state| {
            // Where it would be counted now: if the cap was lifted since, an
            // overflow unit stays used, erring on the side of limiting.
            let (buckets, key) = state.place(key);
            buckets.refund(policy, key, cost);
        });
        Check::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;
    use mcp_core::ManualClock;

    fn decide(backend: &InMemoryBackend, policy: &Policy, key: &str) -> Decision {
        match backend.check(policy, &RateKey::text(key), 1) {
            Check::Ready(d) => d.unwrap(),
            Check::Pending(_) => unreachable!("in process"),
        }
    }

    #[test]
    fn exactly_n_then_retry_after_then_again_on_time() {
        for (limit, secs) in [
            (1u32, 1u64),
            (10, 900),
            (100, 60),
            (30, 60),
            (1000, 60),
            (7, 10),
        ] {
            let clock = ManualClock::at_unix(1_700_000_000);
            let backend = InMemoryBackend::new().clock(clock.shared());
            let quota = Quota::per(limit, Duration::from_secs(secs)).unwrap();
            let policy = Policy::new("p", quota);
            for i in 0..limit {
                let d = decide(&backend, &policy, "k");
                assert!(d.allowed, "{limit}/{secs}s: request {i}");
                assert_eq!(d.remaining, limit - 1 - i);
                assert_eq!(d.limit, limit);
            }
            let refused = decide(&backend, &policy, "k");
            assert!(
                !refused.allowed,
                "{limit}/{secs}s: request {limit} must be refused"
            );
            let interval = quota.emission_interval();
            assert_eq!(refused.retry_after, Some(interval), "{limit}/{secs}s");
            // One nanosecond early: still refused. On time: admitted.
            clock.advance(interval - Duration::from_nanos(1));
            assert!(!decide(&backend, &policy, "k").allowed);
            clock.advance(Duration::from_nanos(1));
            assert!(decide(&backend, &policy, "k").allowed);
            assert!(!decide(&backend, &policy, "k").allowed);
            // A whole period later the whole quota is back.
            clock.advance(Duration::from_secs(secs));
            for _ in 0..limit {
                assert!(decide(&backend, &policy, "k").allowed);
            }
            // Other keys were never touched.
            assert_eq!(decide(&backend, &policy, "other").remaining, limit - 1);
        }
    }

    #[test]
    fn peek_does_not_count() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared());
        let policy = Policy::new("p", Quota::per(2, Duration::from_secs(60)).unwrap());
        let key = RateKey::text("k");
        let peek = |b: &InMemoryBackend| match b.peek(&policy, &key) {
            Check::Ready(d) => d.unwrap(),
            Check::Pending(_) => unreachable!(),
        };
        for _ in 0..10 {
            assert!(peek(&backend).allowed);
        }
        decide(&backend, &policy, "k");
        assert!(peek(&backend).allowed);
        decide(&backend, &policy, "k");
        let looked = peek(&backend);
        assert!(!looked.allowed);
        assert_eq!(looked.retry_after, Some(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(30));
        assert!(peek(&backend).allowed);
    }

    #[test]
    fn idle_keys_are_evicted() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared());
        let policy = Policy::new("p", Quota::per(10, Duration::from_secs(60)).unwrap());
        for i in 0..100_000 {
            decide(&backend, &policy, &format!("client-{i}"));
        }
        assert_eq!(backend.tracked_keys(), 100_000);
        assert_eq!(backend.evict_idle(), 100_000, "nothing is idle yet");
        clock.advance(Duration::from_secs(61));
        assert_eq!(backend.evict_idle(), 0);
    }

    #[test]
    fn past_the_cap_new_keys_are_still_limited() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared()).max_keys(100);
        let policy = Policy::new("p", Quota::per(3, Duration::from_secs(60)).unwrap());
        for i in 0..100 {
            decide(&backend, &policy, &format!("k{i}"));
        }
        backend.evict_idle();
        let newcomer = RateKey::text("newcomer");
        for i in 0..3 {
            let decision = backend.check(&policy, &newcomer, 1);
            assert!(
                matches!(&decision, Check::Ready(Ok(d)) if d.allowed),
                "request {i} of a key past the cap"
            );
        }
        let Check::Ready(Ok(refused)) = backend.check(&policy, &newcomer, 1) else {
            panic!("a key past the cap must still be decided");
        };
        assert!(!refused.allowed, "past the cap a new key is limited");
        assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
        // Keys past the cap share one overflow bucket, so rotating keys does
        // not help either.
        assert!(!decide(&backend, &policy, "another-newcomer").allowed);
        // Tracked keys keep their own buckets.
        assert!(decide(&backend, &policy, "k5").allowed);
        assert!(backend.tracked_keys() <= 101, "{}", backend.tracked_keys());
    }

    #[test]
    fn eviction_makes_room_again_past_the_cap() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared()).max_keys(100);
        let policy = Policy::new("p", Quota::per(1, Duration::from_secs(60)).unwrap());
        for i in 0..100 {
            decide(&backend, &policy, &format!("k{i}"));
        }
        backend.evict_idle();
        assert!(decide(&backend, &policy, "newcomer").allowed);
        assert!(
            !decide(&backend, &policy, "newcomer").allowed,
            "overflow used"
        );
        clock.advance(Duration::from_secs(120));
        backend.evict_idle();
        assert_eq!(backend.tracked_keys(), 0);
        assert!(decide(&backend, &policy, "newcomer").allowed);
        assert!(
            !decide(&backend, &policy, "newcomer").allowed,
            "its own bucket now"
        );
        assert!(
            decide(&backend, &policy, "second").allowed,
            "not the overflow"
        );
    }

    #[test]
    fn refund_gives_back_exactly_what_was_counted() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared());
        let policy = Policy::new("p", Quota::per(3, Duration::from_secs(60)).unwrap());
        let key = RateKey::text("k");
        let refund = |cost| {
            assert!(matches!(
                backend.refund(&policy, &key, cost),
                Check::Ready(Ok(()))
            ))
        };
        for _ in 0..3 {
            decide(&backend, &policy, "k");
        }
        assert!(!decide(&backend, &policy, "k").allowed);
        refund(1);
        let peeked = match backend.peek(&policy, &key) {
            Check::Ready(d) => d.unwrap(),
            Check::Pending(_) => unreachable!(),
        };
        assert!(peeked.allowed, "peek sees the refund");
        let again = decide(&backend, &policy, "k");
        assert!(again.allowed);
        assert_eq!(again.remaining, 0);
        assert!(!decide(&backend, &policy, "k").allowed);
        // Never fuller than full: refunds of a full bucket change nothing.
        clock.advance(Duration::from_secs(60));
        refund(1);
        refund(5);
        for i in 0..3 {
            assert!(decide(&backend, &policy, "k").allowed, "{i}");
        }
        assert!(!decide(&backend, &policy, "k").allowed);
        // A partial refill and a refund add up to what one less request
        // would have left.
        clock.advance(Duration::from_secs(20));
        refund(1);
        assert_eq!(decide(&backend, &policy, "k").remaining, 1);
        // An unknown key is not created by a refund.
        let before = backend.tracked_keys();
        assert!(matches!(
            backend.refund(&policy, &RateKey::text("never"), 1),
            Check::Ready(Ok(()))
        ));
        assert_eq!(backend.tracked_keys(), before);
    }

    #[test]
    fn reset_is_the_used_intervals_and_a_refusal_waits_a_full_period_after() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared());
        // 3 per minute: one request every 20 s.
        let policy = Policy::new("p", Quota::per(3, Duration::from_secs(60)).unwrap());
        for (remaining, reset) in [(2, 20), (1, 40), (0, 60)] {
            let d = decide(&backend, &policy, "k");
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
            // Full again `used` intervals from now.
            assert_eq!(d.reset, Duration::from_secs(reset), "{remaining} left");
            assert_eq!(d.retry_after, None);
        }
        // Refused: one interval to wait, then the bucket is full a period
        // later than that minus the interval the next request takes.
        let refused = decide(&backend, &policy, "k");
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
        assert_eq!(refused.reset, Duration::from_secs(60));
        clock.advance(Duration::from_secs(5));
        let refused = decide(&backend, &policy, "k");
        assert_eq!(refused.retry_after, Some(Duration::from_secs(15)));
        assert_eq!(refused.reset, Duration::from_secs(55));
        // 15 s later one is back; taking it leaves the bucket full in 60 s.
        clock.advance(Duration::from_secs(15));
        let d = decide(&backend, &policy, "k");
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset), (0, Duration::from_secs(60)));
    }

    #[test]
    fn eviction_empties_the_store_and_gives_its_memory_back() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared());
        let policy = Policy::new("p", Quota::per(10, Duration::from_secs(60)).unwrap());
        let state = backend.state(&policy);
        let limiter = &state.buckets.limiter;
        assert_eq!(limiter.len(), 0);
        assert!(limiter.is_empty());
        for i in 0..10_000 {
            decide(&backend, &policy, &format!("client-{i}"));
        }
        // governor sees the keys through the shared store.
        assert_eq!(limiter.len(), 10_000);
        assert!(!limiter.is_empty());
        let grown = state.buckets.store.0.capacity();
        assert!(grown >= 10_000, "{grown}");
        // Still busy: nothing goes, nothing shrinks.
        assert_eq!(backend.evict_idle(), 10_000);
        assert_eq!(limiter.len(), 10_000);
        clock.advance(Duration::from_secs(61));
        assert_eq!(backend.evict_idle(), 0);
        assert_eq!(limiter.len(), 0);
        assert!(limiter.is_empty());
        // The emptied map is shrunk, not just cleared.
        let shrunk = state.buckets.store.0.capacity();
        assert!(shrunk < grown / 10, "{shrunk} of {grown}");
    }

    #[test]
    fn debug_shows_the_cap_and_the_tracked_keys() {
        let clock = ManualClock::at_unix(1_700_000_000);
        let backend = InMemoryBackend::new().clock(clock.shared()).max_keys(100);
        assert_eq!(
            format!("{backend:?}"),
            "InMemoryBackend { max_keys: 100, tracked: 0 }"
        );
        let policy = Policy::new("p", Quota::per(10, Duration::from_secs(60)).unwrap());
        for key in ["secret-a", "secret-b", "secret-a", "secret-c"] {
            decide(&backend, &policy, key);
        }
        // Counts only: no key is shown.
        assert_eq!(
            format!("{backend:?}"),
            "InMemoryBackend { max_keys: 100, tracked: 3 }"
        );
    }
}
