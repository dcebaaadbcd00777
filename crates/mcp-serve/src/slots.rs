//! The connection caps: open connections in total and by client, and the
//! refusals of connections over a cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use mcp_ratelimit::RateKey;
use tokio::sync::Notify;

use crate::ConnectionLimits;

/// Refusals answered at once; past this a connection over a cap is closed
/// without a response, so a flood of refused connections stays cheap.
pub(crate) const MAX_REFUSALS: usize = 128;

/// Which cap a refused connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OverCap {
    Total,
    PerIp,
}

impl OverCap {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            OverCap::Total => "max_connections",
            OverCap::PerIp => "max_connections_per_ip",
        }
    }

    pub(crate) fn response(self) -> Response<Full<Bytes>> {
        let detail = match self {
            OverCap::Total => "the server has too many open connections; retry later",
            OverCap::PerIp => "too many open connections from this address; retry later",
        };
        let mut response = mcp_core::Problem::unavailable(detail).into_response::<Full<Bytes>>();
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        response
    }
}

/// One of the [`MAX_REFUSALS`] refusals under way.
pub(crate) struct RefusalSlot(Arc<AtomicUsize>);

impl RefusalSlot {
    pub(crate) fn take(count: &Arc<AtomicUsize>) -> Option<RefusalSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_REFUSALS).then_some(n + 1)
            })
            .ok()
            .map(|_| RefusalSlot(count.clone()))
    }
}

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, in total and by client.
pub(crate) struct Slots {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    /// Signalled when the last connection closes.
    empty: Notify,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<RateKey, usize>,
}

impl Slots {
    pub(crate) fn new(limits: &ConnectionLimits) -> Slots {
        Slots {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            open: Mutex::new(Open::default()),
            empty: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // Nothing panics while the lock is held; the counts stay whole.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, OverCap> {
        let key = RateKey::ip(ip);
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(OverCap::Total);
        }
        let mine = open.by_client.entry(key.clone()).or_insert(0);
        if *mine >= self.max_per_ip {
            return Err(OverCap::PerIp);
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }

    fn release(&self, key: &RateKey) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_client.get_mut(key) {
            *mine -= 1;
            if *mine == 0 {
                // Keeps the map as small as the set of clients connected.
                open.by_client.remove(key);
            }
        }
        if open.total == 0 {
            self.empty.notify_waiters();
        }
    }

    /// Resolves once no connection is open.
    pub(crate) async fn drained(&self) {
        loop {
            let mut empty = pin!(self.empty.notified());
            // Registered before the check, so a release in between is seen.
            empty.as_mut().enable();
            if self.lock().total == 0 {
                return;
            }
            empty.await;
        }
    }
}

/// A connection's place in [`Slots`], given back when the socket closes.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    key: RateKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ConnectionLimits {
        ConnectionLimits::default()
    }

    #[test]
    fn slots_count_per_client_and_in_total() {
        let slots = Arc::new(Slots::new(&ConnectionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..settings()
        }));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.acquire(a).unwrap();
        let _second = slots.acquire(a).unwrap();
        assert_eq!(slots.acquire(a).err(), Some(OverCap::PerIp));
        let _third = slots.acquire(b).unwrap();
        assert_eq!(slots.acquire(b).err(), Some(OverCap::Total));
        drop(first);
        assert!(slots.acquire(a).is_ok());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_56() {
        let slots = Arc::new(Slots::new(&ConnectionLimits {
            max_connections_per_ip: 1,
            ..settings()
        }));
        let _one = slots.acquire("2001:db8:0:1::1".parse().unwrap()).unwrap();
        assert_eq!(
            slots.acquire("2001:db8:0:ff::2".parse().unwrap()).err(),
            Some(OverCap::PerIp)
        );
        assert!(slots.acquire("2001:db8:0:100::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn released_clients_leave_the_map() {
        let slots = Arc::new(Slots::new(&settings()));
        let slot = slots.acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(slots.lock().by_client.len(), 1);
        drop(slot);
        assert_eq!(slots.lock().by_client.len(), 0);
        assert_eq!(slots.lock().total, 0);
    }

    #[test]
    fn refusals_are_bounded() {
        let count = Arc::new(AtomicUsize::new(0));
        let held: Vec<_> = (0..MAX_REFUSALS)
            .map(|_| RefusalSlot::take(&count).unwrap())
            .collect();
        assert!(RefusalSlot::take(&count).is_none());
        drop(held);
        assert!(RefusalSlot::take(&count).is_some());
    }
}
