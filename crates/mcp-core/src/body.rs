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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, Limited};

    #[tokio::test]
    async fn reads_up_to_the_limit_and_refuses_past_it() {
        let body = || Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(&read_body(body(), 10).await.unwrap()[..], b"0123456789");
        let over = read_body(body(), 9).await.unwrap_err();
        assert_eq!(
            (over.status().as_u16(), over.code()),
            (413, "payload_too_large")
        );
        // A limit further out, whose error arrives wrapped: still 413.
        let outer = read_body(Limited::new(body(), 5), 100).await.unwrap_err();
        assert_eq!(outer.code(), "payload_too_large");
    }

    #[tokio::test]
    async fn a_body_that_breaks_is_a_400() {
        use std::pin::Pin;
        use std::task::{Context, Poll};
        struct Broken;
        impl Body for Broken {
            type Data = Bytes;
            type Error = std::io::Error;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
                Poll::Ready(Some(Err(std::io::Error::other("reset"))))
            }
        }
        let problem = read_body(Broken, 100).await.unwrap_err();
        assert_eq!(
            (problem.status().as_u16(), problem.code()),
            (400, "bad_request")
        );
    }
}
