//! The response future of a layer that either refuses at once or calls the
//! service it wraps.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

pin_project_lite::pin_project! {
    /// The response future of a layer that decides before calling the
    /// service it wraps: that service's future, or the refusal the layer
    /// answered instead (ready at once, no allocation either way).
    ///
    /// ```
    /// use std::future::{Ready, ready};
    /// use mcp_core::{Problem, RefusalFuture};
    ///
    /// # tokio_test_block_on(async {
    /// let refused: RefusalFuture<Ready<Result<http::Response<bytes::Bytes>, ()>>, bytes::Bytes> =
    ///     RefusalFuture::refused(Problem::not_found().into_response());
    /// assert_eq!(refused.await.unwrap().status(), 404);
    /// # });
    /// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
    /// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub struct RefusalFuture<F, B> {
        #[pin]
        inner: Option<F>,
        refused: Option<Response<B>>,
    }
}

impl<F, B> RefusalFuture<F, B> {
    /// The wrapped service's future: the layer let the request through.
    pub fn inner(future: F) -> Self {
        RefusalFuture {
            inner: Some(future),
            refused: None,
        }
    }

    /// The layer's own answer: the service is not called.
    pub fn refused(response: Response<B>) -> Self {
        RefusalFuture {
            inner: None,
            refused: Some(response),
        }
    }
}

impl<F, B> fmt::Debug for RefusalFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefusalFuture")
            .field("refused", &self.refused.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RefusalFuture<F, B>
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
            Some(inner) => inner.poll(cx),
            // Polled again after the refusal was taken: nothing is left.
            None => Poll::Pending,
        }
    }
}
