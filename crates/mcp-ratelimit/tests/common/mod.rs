//! Helpers shared by the integration tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use mcp_core::{Problem, ProblemCode};
use mcp_ratelimit::{FailureLimitLayer, FailurePolicy, Policy, Quota, RateLimitBackend};
use tower::{Layer, ServiceExt, service_fn};

/// Counts refused credentials, not missing ones (what a server counts).
pub(crate) fn counts_refused(status: StatusCode, extensions: &http::Extensions) -> bool {
    status == StatusCode::UNAUTHORIZED
        && extensions
            .get::<ProblemCode>()
            .is_none_or(|c| c.as_str() != "missing_credentials")
}

/// Sends 64 concurrent refused credentials from one IP through a
/// `FailureLimitLayer` (`quota` per hour) on `backend`; the statuses.
///
/// All 64 are in flight together: the inner service answers only once every
/// request has either reached it or been answered without it, so a
/// check-then-act lockout would let all 64 through. No sleeping.
pub(crate) async fn concurrent_bad_credentials(
    backend: Arc<dyn RateLimitBackend>,
    quota: u32,
) -> Vec<u16> {
    concurrent_bad_credentials_failing(backend, quota, FailurePolicy::default()).await
}

/// [`concurrent_bad_credentials`], with `on_failure` for when the backend
/// cannot answer.
pub(crate) async fn concurrent_bad_credentials_failing(
    backend: Arc<dyn RateLimitBackend>,
    quota: u32,
    on_failure: FailurePolicy,
) -> Vec<u16> {
    use tokio::sync::{Semaphore, mpsc};
    const N: usize = 64;
    // Each request reports exactly once before the gate opens.
    let (events, mut arrived) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(0));
    let inner = {
        let (events, gate) = (events.clone(), gate.clone());
        service_fn(move |_req: Request<Full<Bytes>>| {
            let (events, gate) = (events.clone(), gate.clone());
            async move {
                let _ = events.send(());
                let _permit = gate.acquire().await.expect("the gate is never closed");
                Ok::<Response<Full<Bytes>>, Infallible>(
                    Problem::unauthorized("invalid_api_key", "no").into_response(),
                )
            }
        })
    };
    let policy = Policy::new(
        "auth-failures",
        Quota::per(quota, Duration::from_secs(3600)).expect("a valid quota"),
    );
    let service = FailureLimitLayer::new(backend, policy, counts_refused)
        .on_failure(on_failure)
        .layer(inner);
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let service = service.clone();
            let events = events.clone();
            tokio::spawn(async move {
                let mut request = Request::new(Full::new(Bytes::new()));
                request
                    .extensions_mut()
                    .insert("198.51.100.77:1".parse::<SocketAddr>().unwrap());
                let response = service.oneshot(request).await.unwrap();
                if response.status() != StatusCode::UNAUTHORIZED {
                    let _ = events.send(());
                }
                response.status().as_u16()
            })
        })
        .collect();
    for _ in 0..N {
        arrived.recv().await.expect("every request reports");
    }
    gate.add_permits(N);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}
