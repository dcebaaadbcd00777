//! [`FailureLimit`], the service, and the reservation it takes per attempt.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::{Attempts, Counts, Lockout, OnLockout};
use crate::backend::Check;
use crate::decide::{BoxFuture, Decider, Outcome, Shared, charge, outcome, peeked};
use crate::key::{KeyExtractor, RateKey, RequestInfo, keyless};

pin_project_lite::pin_project! {
    /// The response future of [`FailureLimit`]: a skipped request's own
    /// future (no box), or the boxed check-call-count of any other.
    pub struct ResponseFuture<F, O> {
        #[pin]
        kind: Kind<F, O>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, O> {
        Skipped { #[pin] inner: F },
        Checked { inner: BoxFuture<O> },
    }
}

impl<F, O> ResponseFuture<F, O> {
    fn skipped(inner: F) -> Self {
        ResponseFuture {
            kind: Kind::Skipped { inner },
        }
    }

    fn checked(inner: BoxFuture<O>) -> Self {
        ResponseFuture {
            kind: Kind::Checked { inner },
        }
    }
}

impl<F, O> std::fmt::Debug for ResponseFuture<F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F: std::future::Future<Output = O>, O> std::future::Future for ResponseFuture<F, O> {
    type Output = O;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        match self.project().kind.project() {
            KindProj::Skipped { inner } => inner.poll(cx),
            KindProj::Checked { inner } => inner.as_mut().poll(cx),
        }
    }
}

/// The service made by [`FailureLimitLayer`](super::FailureLimitLayer).
#[derive(Clone)]
pub struct FailureLimit<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) key: Arc<dyn KeyExtractor>,
    pub(super) counts: Counts,
    pub(super) attempts: Option<Attempts>,
    pub(super) on_lockout: Option<OnLockout>,
}

impl<S: fmt::Debug> fmt::Debug for FailureLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// A unit of a failure quota taken before the service ran: kept once the
/// attempt is known to have failed, refunded otherwise, including when the
/// request is dropped half way (so a cancelled request never costs a unit).
struct Reservation {
    shared: Arc<Shared>,
    key: RateKey,
    decider: Decider,
    armed: bool,
}

impl Reservation {
    /// The attempt failed: the unit stays used.
    fn keep(mut self) {
        self.armed = false;
        self.shared.allowed.increment(1);
    }

    /// The attempt did not fail: the unit is given back, without waiting
    /// (the drop does it: at once in process, else from a task).
    fn refund(self) {
        debug_assert!(self.armed);
        drop(self);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // A refund that fails leaves the unit used until it refills: erring
        // on the side of limiting.
        let pending =
            match self
                .shared
                .decider(self.decider)
                .refund(&self.shared.policy, &self.key, 1)
            {
                Check::Ready(Ok(())) => false,
                Check::Ready(Err(error)) => {
                    self.shared.log_error(&error);
                    false
                }
                Check::Pending(_) => true,
            };
        // Over the network the (lazy) future borrows from here: refund from
        // a task that owns what it needs. Without a runtime the unit refills
        // on its own.
        if pending && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let key = std::mem::replace(&mut self.key, keyless());
            let decider = self.decider;
            runtime.spawn(async move {
                let result = shared
                    .decider(decider)
                    .refund(&shared.policy, &key, 1)
                    .wait()
                    .await;
                if let Err(error) = result {
                    shared.log_error(&error);
                }
            });
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FailureLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let info = RequestInfo::of(&request);
        if self.shared.skips(&info) {
            return ResponseFuture::skipped(self.inner.call(request));
        }
        let key = match self.shared.key(&*self.key, &info) {
            Ok(key) => key,
            Err(error) => {
                let response = self.shared.misconfigured(&error);
                return ResponseFuture::checked(Box::pin(async move { Ok(response) }));
            }
        };
        let attempt = self
            .attempts
            .as_ref()
            .is_none_or(|attempts| attempts(&info));
        let shared = self.shared.clone();
        let counts = self.counts.clone();
        let on_lockout = self.on_lockout.clone();
        let request_id = on_lockout
            .as_ref()
            .and_then(|_| request.headers().get(mcp_core::REQUEST_ID).cloned());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::checked(Box::pin(async move {
            if !attempt {
                // Cannot fail: only refused while locked out, never reserved.
                match peeked(&shared, &key).await {
                    Outcome::Decided(decision) if !decision.allowed => {
                        return Ok(shared.limited_response(&decision));
                    }
                    Outcome::Unavailable(_) => return Ok(shared.unavailable()),
                    Outcome::Decided(_) | Outcome::Unlimited => {}
                }
                let response = inner.call(request).await;
                if let Ok(response) = &response
                    && counts(response.status(), response.extensions())
                {
                    charge(shared, key);
                }
                return response;
            }
            // Check and count in one step: a peek first would let every
            // concurrent guess through before any of them is counted.
            let (outcome, decider) = outcome(&shared, &key).await;
            let last_unit = match outcome {
                Outcome::Decided(decision) if !decision.allowed => {
                    return Ok(shared.limited_response(&decision));
                }
                Outcome::Decided(decision) => decision.remaining == 0,
                Outcome::Unavailable(_) => return Ok(shared.unavailable()),
                // Nothing was counted, so nothing can be kept or refunded.
                Outcome::Unlimited => return inner.call(request).await,
            };
            let reservation = Reservation {
                shared,
                key,
                decider,
                armed: true,
            };
            let response = inner.call(request).await;
            match &response {
                Ok(response) if counts(response.status(), response.extensions()) => {
                    // The failure that took the last unit locks the key out.
                    if last_unit && let Some(on_lockout) = &on_lockout {
                        on_lockout(&Lockout {
                            key: reservation.key.clone(),
                            request_id,
                        });
                    }
                    reservation.keep();
                }
                _ => reservation.refund(),
            }
            response
        }))
    }
}
