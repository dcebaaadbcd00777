//! [`BodyRateLimit`], the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::decide::{BoxFuture, Shared, decide};
use crate::key::{JsonBodyField, RequestInfo};

/// The service made by [`BodyRateLimitLayer`](super::BodyRateLimitLayer).
#[derive(Clone)]
pub struct BodyRateLimit<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) field: Arc<JsonBodyField>,
    pub(super) max_buffer: usize,
}

impl<S: fmt::Debug> fmt::Debug for BodyRateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyRateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .field("field", &self.field)
            .field("max_buffer", &self.max_buffer)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyRateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (shared, field, max_buffer) =
            (self.shared.clone(), self.field.clone(), self.max_buffer);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match mcp_core::read_body(body, max_buffer).await {
                Ok(bytes) => bytes,
                Err(problem) => return Ok(problem.into_response()),
            };
            let key = match field.key_of_body(&bytes) {
                Some(key) => key,
                None => {
                    let request = Request::from_parts(parts.clone(), ());
                    match shared.key(&*field.fallback, &RequestInfo::of(&request)) {
                        Ok(key) => key,
                        Err(error) => return Ok(shared.misconfigured(&error)),
                    }
                }
            };
            let request = Request::from_parts(parts, ReqBody::from(bytes));
            decide(&shared, &key)
                .await
                .respond(&shared, &mut inner, request)
                .await
        })
    }
}
