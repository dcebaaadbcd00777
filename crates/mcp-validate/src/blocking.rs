//! Checking large bodies off the async worker threads.
//!
//! Checking a body is linear, but a large hostile one still costs
//! milliseconds of CPU. On the async workers, a few clients sending such
//! bodies back to back would hold every worker and delay everything else
//! (health checks, cheap requests). So bodies of [`BLOCKING_ABOVE`] bytes or
//! more are checked on tokio's blocking pool, and at most one fewer than the
//! machine's cores at once (at least one): a core is always left for the
//! rest of the server.

use std::sync::OnceLock;

use bytes::Bytes;
use garde::Validate;
use mcp_core::Problem;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::{Limits, parse};

/// Bodies from this size on are checked on the blocking pool (16 KiB):
/// below it, checking costs less than moving the work to another thread.
pub const BLOCKING_ABOVE: usize = 16 * 1024;

/// The checks of large bodies that may run at once, process-wide.
fn gate() -> &'static Semaphore {
    static GATE: OnceLock<Semaphore> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// [`parse`], on tokio's blocking pool for bodies of [`BLOCKING_ABOVE`]
/// bytes or more (a few at a time, queued fairly), inline for smaller ones.
///
/// ```
/// use garde::Validate;
/// use mcp_validate::{Limits, parse_blocking};
/// use serde::Deserialize;
///
/// #[derive(Deserialize, Validate)]
/// struct Agent {
///     #[garde(length(min = 1))]
///     name: String,
/// }
///
/// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
/// let body = bytes::Bytes::from_static(br#"{"name":"crawler"}"#);
/// let agent: Agent = parse_blocking(body, Limits::default()).await.unwrap();
/// assert_eq!(agent.name, "crawler");
/// # });
/// ```
pub async fn parse_blocking<T>(body: Bytes, limits: Limits) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()> + Send + 'static,
{
    if body.len() < BLOCKING_ABOVE || body.len() > limits.max_bytes {
        return parse(&body, &limits);
    }
    // The semaphore is never closed, so acquiring cannot fail.
    let Ok(_permit) = gate().acquire().await else {
        return parse(&body, &limits);
    };
    tokio::task::spawn_blocking(move || parse(&body, &limits))
        .await
        .unwrap_or_else(|_| Err(Problem::internal()))
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[derive(Debug, serde::Deserialize, garde::Validate)]
    struct Agent {
        #[garde(inner(length(min = 1)))]
        capabilities: Vec<String>,
    }

    fn hostile(items: usize) -> Bytes {
        let mut body = br#"{"capabilities":["#.to_vec();
        body.extend(std::iter::repeat_n(&b"1,"[..], items).flatten());
        body.extend_from_slice(b"1]}");
        Bytes::from(body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_large_body_is_checked_off_the_worker_with_the_same_answer() {
        let body = hostile(20_000);
        assert!(body.len() >= BLOCKING_ABOVE);
        let inline = parse::<Agent>(&body, &Limits::default()).unwrap_err();
        let offloaded = parse_blocking::<Agent>(body, Limits::default())
            .await
            .unwrap_err();
        assert_eq!(offloaded.errors(), inline.errors());
        assert_eq!(
            offloaded.extension("errorsTruncated"),
            inline.extension("errorsTruncated")
        );
    }

    /// While large bodies are being checked, the async worker stays free:
    /// a task on the only worker thread runs before they finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn large_bodies_do_not_hold_the_async_worker() {
        let checks: Vec<_> = (0..4)
            .map(|_| tokio::spawn(parse_blocking::<Agent>(hostile(40_000), Limits::default())))
            .collect();
        // Would have to wait for the checks if they ran on the worker; they
        // run one at a time, so most are still queued or running.
        tokio::spawn(async {}).await.unwrap();
        let unfinished = checks.iter().filter(|c| !c.is_finished()).count();
        for check in checks {
            assert!(check.await.unwrap().is_err());
        }
        assert!(
            unfinished > 0,
            "every check was done before a cheap task ran"
        );
    }

    /// The thread a body was deserialized on.
    #[derive(Debug)]
    struct Here(std::thread::ThreadId);

    impl<'de> serde::Deserialize<'de> for Here {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d)?;
            Ok(Here(std::thread::current().id()))
        }
    }

    #[derive(Debug, serde::Deserialize, garde::Validate)]
    struct Padded {
        #[garde(skip)]
        here: Here,
        #[serde(rename = "pad")]
        #[garde(skip)]
        _pad: String,
    }

    /// A good `Padded` body of exactly `len` bytes.
    fn padded(len: usize) -> Bytes {
        let mut body = br#"{"here":0,"pad":""#.to_vec();
        let end = br#""}"#;
        body.resize(len - end.len(), b'x');
        body.extend_from_slice(end);
        assert_eq!(body.len(), len);
        Bytes::from(body)
    }

    /// On a current-thread runtime, a body checked inline is deserialized
    /// on the caller's thread, and its answer is ready at the first poll.
    async fn checked_where(body: Bytes, limits: Limits) -> std::thread::ThreadId {
        parse_blocking::<Padded>(body, limits).await.unwrap().here.0
    }

    #[test]
    fn the_threshold_is_16_kib() {
        assert_eq!(BLOCKING_ABOVE, 16_384);
    }

    /// 16,384 bytes and more: the blocking pool; 16,383 and fewer: inline.
    #[tokio::test]
    async fn bodies_from_16_kib_on_go_to_the_blocking_pool_smaller_ones_do_not() {
        let caller = std::thread::current().id();
        for len in [20, 1_040, 16_383] {
            let answer = parse_blocking::<Padded>(padded(len), Limits::default()).now_or_never();
            let here = answer.expect("answered at the first poll").unwrap().here.0;
            assert_eq!(here, caller, "{len} bytes");
        }
        for len in [16_384, 16_385, 102_400] {
            let here = checked_where(padded(len), Limits::default()).await;
            assert_ne!(here, caller, "{len} bytes");
        }
        // A large body exactly at the size limit passes it: checked off the
        // caller's thread too.
        let limits = Limits {
            max_bytes: 16_384,
            ..Limits::default()
        };
        assert_ne!(checked_where(padded(16_384), limits).await, caller);
    }

    /// A body over the limit is refused at once, whatever its size: it
    /// waits neither for a permit nor for another thread.
    #[tokio::test]
    async fn an_oversized_large_body_is_refused_at_the_first_poll() {
        let limits = Limits {
            max_bytes: 16_384,
            ..Limits::default()
        };
        for len in [16_385, 40_000] {
            let problem = parse_blocking::<Padded>(padded(len), limits)
                .now_or_never()
                .expect("answered at the first poll")
                .unwrap_err();
            assert_eq!(problem.status().as_u16(), 413);
            assert_eq!(
                problem.detail(),
                Some("the request body is larger than 16384 bytes")
            );
        }
    }

    /// One fewer permit than the machine's cores, at least one: all of them
    /// can be held at once, and then not one more.
    #[tokio::test]
    async fn the_gate_has_one_permit_fewer_than_the_cores_and_at_least_one() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let expected = if cores > 1 { cores - 1 } else { 1 };
        let permits = u32::try_from(expected).unwrap();
        // Other tests of this binary may hold some for a moment: wait.
        let all = gate().acquire_many(permits).await.unwrap();
        assert!(
            gate().try_acquire().is_err(),
            "more than {expected} permits"
        );
        drop(all);
    }

    #[tokio::test]
    async fn small_and_oversized_bodies_are_answered_inline() {
        let small = Bytes::from_static(br#"{"capabilities":[""]}"#);
        let problem = parse_blocking::<Agent>(small, Limits::default())
            .await
            .unwrap_err();
        assert_eq!(problem.errors()[0].field, "capabilities[0]");
        let limits = Limits {
            max_bytes: BLOCKING_ABOVE,
            ..Limits::default()
        };
        let problem = parse_blocking::<Agent>(hostile(20_000), limits)
            .await
            .unwrap_err();
        assert_eq!(problem.status().as_u16(), 413);
    }
}
