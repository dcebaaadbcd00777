//! Bare error responses (a status with a plain or empty body, from a router,
//! a body limit or a timeout) turned into the one problem format.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use crate::{PROBLEM_CONTENT_TYPE, Problem};

/// `response` as a problem when it is a bare error: a `4xx`/`5xx` whose
/// body is neither a problem, JSON nor an HTML page. Problems are ours
/// already; JSON bodies are JSON-RPC errors of the MCP transport, which MCP
/// clients read and a problem would hide; HTML pages are written for a
/// person in a browser (an authorization page's "wrong password"). Everything else (a router's `405`, a body
/// limit's plain-text `413`) becomes the problem for its status, keeping
/// the response's other headers and extensions. `body_limit` is reported
/// in a `413`.
///
/// ```
/// use http::{Response, StatusCode};
/// use mcp_core::problem_for_bare_error;
///
/// let bare = Response::builder().status(413).body(bytes::Bytes::from("too big")).unwrap();
/// let problem = problem_for_bare_error(bare, Some(1024));
/// assert_eq!(problem.status(), StatusCode::PAYLOAD_TOO_LARGE);
/// assert_eq!(problem.headers()["content-type"], "application/problem+json");
/// ```
pub fn problem_for_bare_error<B: From<Bytes>>(
    response: Response<B>,
    body_limit: Option<usize>,
) -> Response<B> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let structured = response.headers().get(CONTENT_TYPE).is_some_and(|ct| {
        let ct = ct.as_bytes();
        ct.starts_with(PROBLEM_CONTENT_TYPE.as_bytes())
            || ct.starts_with(b"application/json")
            || ct.starts_with(b"text/html")
    });
    if structured {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(body_limit),
        StatusCode::METHOD_NOT_ALLOWED => Problem::method_not_allowed(),
        StatusCode::NOT_FOUND => Problem::not_found(),
        _ => Problem::from_status(status),
    };
    let (fresh, body) = problem.into_response::<B>().into_parts();
    parts.extensions.extend(fresh.extensions);
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_html_page_stays_a_page_and_plain_text_becomes_a_problem() {
        let page = Response::builder()
            .status(401)
            .header(CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Bytes::from("<p>Wrong email or password.</p>"))
            .unwrap();
        let kept = problem_for_bare_error(page, None);
        assert_eq!(kept.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(kept.body(), "<p>Wrong email or password.</p>");
        let plain = Response::builder()
            .status(401)
            .header(CONTENT_TYPE, "text/plain")
            .body(Bytes::from("no"))
            .unwrap();
        let problem = problem_for_bare_error(plain, None);
        assert_eq!(problem.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    fn response(status: u16, content_type: Option<&str>) -> Response<Bytes> {
        let mut builder = Response::builder()
            .status(status)
            .header("x-request-id", "r1");
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        builder.body(Bytes::from_static(b"plain")).unwrap()
    }

    #[test]
    fn bare_errors_become_problems_and_keep_their_headers() {
        for (status, code) in [
            (405, "method_not_allowed"),
            (404, "not_found"),
            (413, "payload_too_large"),
            (503, "unavailable"),
        ] {
            let out = problem_for_bare_error(response(status, Some("text/plain")), Some(10));
            assert_eq!(out.status().as_u16(), status);
            assert_eq!(out.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
            assert_eq!(out.headers()["x-request-id"], "r1");
            let body: serde_json::Value = serde_json::from_slice(out.body()).unwrap();
            assert_eq!(body["code"], code, "{status}");
            if status == 413 {
                assert_eq!(body["limit"], 10, "{body}");
            }
        }
    }

    #[test]
    fn successes_problems_and_json_rpc_errors_pass_untouched() {
        for (status, ct) in [
            (200, None),
            (400, Some(PROBLEM_CONTENT_TYPE)),
            (400, Some("application/json")),
        ] {
            let out = problem_for_bare_error(response(status, ct), None);
            assert_eq!(out.body(), &Bytes::from_static(b"plain"));
        }
    }
}
