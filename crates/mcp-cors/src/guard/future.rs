//! The guard's response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

pin_project_lite::pin_project! {
    /// Response future of [`HostOriginGuard`](super::HostOriginGuard): the
    /// inner service's, or the refusal.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Option<F>,
        refused: Option<Response<B>>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn inner(inner: F) -> Self {
        ResponseFuture {
            inner: Some(inner),
            refused: None,
        }
    }

    pub(super) fn refused(response: Response<B>) -> Self {
        ResponseFuture {
            inner: None,
            refused: Some(response),
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &self.refused.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.refused.take() {
            return Poll::Ready(Ok(response));
        }
        match this.inner.as_pin_mut() {
            // Polled again after the refusal was taken: nothing is left.
            Some(inner) => inner.poll(cx),
            None => Poll::Pending,
        }
    }
}
