//! [`ResponseFuture`] of [`RateLimit`](super::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;

use crate::decide::{BoxFuture, Shared};
use crate::quota::Decision;

pin_project_lite::pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit): the inner
    /// service's future (headers added once it answers) when the decision
    /// was made at once, else a boxed one.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        inner: Option<F>,
        decision: Option<Decision>,
        shared: Option<Arc<Shared>>,
        ready: Option<Response<B>>,
        boxed: Option<BoxFuture<Result<Response<B>, E>>>,
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(super) fn inner(future: F, decision: Option<Decision>, shared: Arc<Shared>) -> Self {
        ResponseFuture {
            inner: Some(future),
            decision,
            shared: Some(shared),
            ready: None,
            boxed: None,
        }
    }

    pub(super) fn ready(response: Response<B>) -> Self {
        ResponseFuture {
            inner: None,
            decision: None,
            shared: None,
            ready: Some(response),
            boxed: None,
        }
    }

    pub(super) fn boxed(future: BoxFuture<Result<Response<B>, E>>) -> Self {
        ResponseFuture {
            inner: None,
            decision: None,
            shared: None,
            ready: None,
            boxed: Some(future),
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.ready.take() {
            return Poll::Ready(Ok(response));
        }
        if let Some(boxed) = this.boxed.as_mut() {
            return boxed.as_mut().poll(cx);
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Pending;
        };
        let mut response = ready!(inner.poll(cx))?;
        if let (Some(decision), Some(shared)) = (this.decision.take(), this.shared.as_ref()) {
            shared.apply(response.headers_mut(), &decision);
        }
        Poll::Ready(Ok(response))
    }
}
