//! What the unit tests of several modules share.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower::Service;

/// An inner service whose readiness is `ready`.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) ready: fn() -> Poll<Result<(), &'static str>>,
}

impl Service<Request<()>> for Gate {
    type Response = Response<Bytes>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<Bytes>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        (self.ready)()
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(Bytes::new())))
    }
}
