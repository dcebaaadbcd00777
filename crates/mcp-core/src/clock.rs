use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Everything that expires or counts a window takes a `Clock` instead of
/// calling [`SystemTime::now`], so tests can move time by hand with a
/// [`ManualClock`] and never sleep.
///
/// ```
/// use std::time::Duration;
/// use mcp_core::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix(1_000);
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.unix_seconds(), 1_030);
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Whole seconds since the Unix epoch (0 for times before it).
    fn unix_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock shared between layers, stores and caches.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock: [`SystemTime::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// Lock-free, so it can sit on a hot path in a benchmark as well as in a test.
#[derive(Clone)]
pub struct ManualClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at `start`. Times before the Unix epoch are clamped to it.
    pub fn new(start: SystemTime) -> Self {
        let clock = ManualClock {
            nanos_since_epoch: Arc::new(AtomicU64::new(0)),
        };
        clock.set(start);
        clock
    }

    /// A clock stopped at `seconds` after the Unix epoch.
    pub fn at_unix(seconds: u64) -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos_since_epoch.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `to` (backwards too, to test clock skew).
    pub fn set(&self, to: SystemTime) {
        let nanos = to
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.nanos_since_epoch.store(nanos, Ordering::SeqCst);
    }

    /// This clock as a [`SharedClock`] (sharing its time with `self`).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for ManualClock {
    /// A clock stopped at the current system time.
    fn default() -> Self {
        Self::new(SystemTime::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_unix(100);
        assert_eq!(clock.unix_seconds(), 100);
        assert_eq!(clock.unix_seconds(), 100);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.unix_seconds(), 101);
        assert_eq!(
            clock.now(),
            UNIX_EPOCH + Duration::from_secs(101) + Duration::from_millis(500)
        );
    }

    #[test]
    fn clones_share_time() {
        let clock = ManualClock::at_unix(0);
        let shared = clock.shared();
        clock.advance(Duration::from_secs(5));
        assert_eq!(shared.unix_seconds(), 5);
    }

    #[test]
    fn set_can_go_backwards_and_clamps_before_epoch() {
        let clock = ManualClock::at_unix(50);
        clock.set(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(clock.unix_seconds(), 10);
        clock.set(UNIX_EPOCH - Duration::from_secs(10));
        assert_eq!(clock.unix_seconds(), 0);
    }

    #[test]
    fn manual_clock_debug_shows_its_current_time() {
        let clock = ManualClock::at_unix(100);
        let at = |t: SystemTime| format!("ManualClock {{ now: {t:?} }}");
        assert_eq!(
            format!("{clock:?}"),
            at(UNIX_EPOCH + Duration::from_secs(100))
        );
        clock.advance(Duration::from_millis(2500));
        assert_eq!(
            format!("{clock:?}"),
            at(UNIX_EPOCH + Duration::from_millis(102_500))
        );
    }

    #[test]
    fn system_clock_is_close_to_now() {
        let a = SystemClock.now();
        let b = SystemTime::now();
        // Either way round: a clock running ahead must fail too.
        let apart = b.duration_since(a).unwrap_or_else(|ahead| ahead.duration());
        assert!(apart < Duration::from_secs(1), "{apart:?} apart");
    }
}
