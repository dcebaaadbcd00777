//! Reading a request body up to a limit, the one way.

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use crate::Problem;

/// Reads at most `max` bytes of `body`: `413 payload_too_large` over the
/// limit, whether this read or a limit further out (such as tower-http's
/// `RequestBodyLimitLayer`, for a body without a `Content-Length`) noticed;
/// `400 bad_request` when the body cannot be read. The one way every layer
/// that must see a body before passing it on reads it.
///
/// ```
/// use http_body_util::Full;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let body = Full::new(bytes::Bytes::from_static(b"{\"a\":1}"));
/// assert_eq!(&mcp_core::read_body(body, 7).await.unwrap()[..], b"{\"a\":1}");
///
/// let body = Full::new(bytes::Bytes::from_static(b"{\"a\":1}"));
/// let problem = mcp_core::read_body(body, 6).await.unwrap_err();
/// assert_eq!(problem.status(), 413);
/// # }
/// ```
pub async fn read_body<B>(body: B, max: usize) -> Result<Bytes, Problem>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if over_limit(&*error) => Err(Problem::payload_too_large(Some(max))),
        Err(_) => Err(
            Problem::new(http::StatusCode::BAD_REQUEST, crate::code::BAD_REQUEST)
                .with_detail("the request body could not be read"),
        ),
    }
}

/// Whether `error`, or any error it wraps, is a length limit's: an outer
/// limit's error reaches us inside the body's own error type (axum's, for
/// one), so a downcast of the outermost error alone misses it.
fn over_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .any(|e| e.is::<http_body_util::LengthLimitError>())
}
