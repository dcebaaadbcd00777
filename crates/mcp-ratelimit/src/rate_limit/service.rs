//! [`RateLimit`], the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::ResponseFuture;
use crate::backend::Check;
use crate::decide::{Shared, Verdict, decide, fallback_outcome, settle, verdict};
use crate::key::{KeyExtractor, RequestInfo};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone)]
pub struct RateLimit<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) key: Arc<dyn KeyExtractor>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let info = RequestInfo::of(&request);
        if self.shared.skips(&info) {
            return ResponseFuture::inner(self.inner.call(request), None, self.shared.clone());
        }
        let key = match self.shared.key(&*self.key, &info) {
            Ok(key) => key,
            Err(error) => return ResponseFuture::ready(self.shared.misconfigured(&error)),
        };
        // In process, the decision is already made: no allocation. Over the
        // network the (lazy, unpolled) check is dropped and made again
        // inside a boxed future that owns what it needs.
        // A primary that failed at once is not asked again: the fallback
        // decides (the failure is logged and counted once).
        let failed = match self.shared.backend.check(&self.shared.policy, &key, 1) {
            Check::Ready(result) => match settle(&self.shared, result) {
                Some(outcome) => {
                    return match verdict(&self.shared, outcome) {
                        Verdict::Pass(decision) => ResponseFuture::inner(
                            self.inner.call(request),
                            decision,
                            self.shared.clone(),
                        ),
                        Verdict::Stop(response) => ResponseFuture::ready(response),
                    };
                }
                None => true,
            },
            Check::Pending(_) => false,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            let answer = if failed {
                verdict(&shared, fallback_outcome(&shared, &key).await.0)
            } else {
                decide(&shared, &key).await
            };
            answer.respond(&shared, &mut inner, request).await
        }))
    }
}
