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
