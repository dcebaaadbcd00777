use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use serde::Serialize;
use tower_service::Service;

/// OAuth 2.0 Protected Resource Metadata (RFC 9728), as the MCP
/// authorization spec asks of resource servers.
///
/// ```
/// use mcp_auth::ProtectedResourceMetadata;
///
/// let metadata = ProtectedResourceMetadata::new("https://mcp.example.com/mcp")
///     .authorization_server("https://auth.example.com")
///     .scopes(["mcp", "keys:read"]);
/// assert_eq!(
///     metadata.well_known_url(),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// let json = serde_json::to_value(&metadata).unwrap();
/// assert_eq!(json["bearer_methods_supported"], serde_json::json!(["header"]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtectedResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource`, the canonical URI of the protected resource.
    /// Tokens are accepted only in the `Authorization` header.
    pub fn new(resource: impl Into<String>) -> Self {
        ProtectedResourceMetadata {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name: None,
            resource_documentation: None,
        }
    }

    /// Adds an authorization server (its issuer identifier).
    #[must_use]
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes clients may request.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A human-readable name.
    #[must_use]
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// A page of documentation for developers.
    #[must_use]
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// The resource URI.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Where the document is published (RFC 9728 §3.1): the well-known
    /// segment goes between the host and the resource's path.
    pub fn well_known_url(&self) -> String {
        const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
        match url_split(&self.resource) {
            Some((origin, "" | "/")) => format!("{origin}{WELL_KNOWN}"),
            Some((origin, path)) => format!("{origin}{WELL_KNOWN}{path}"),
            None => format!("{}{WELL_KNOWN}", self.resource.trim_end_matches('/')),
        }
    }

    /// The JSON response.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = serde_json::to_vec(self).map_or_else(|_| Bytes::new(), Bytes::from);
        let mut response = Response::new(B::from(body));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        response
    }

    /// A tower service that answers every request with the document.
    pub fn into_service(self) -> MetadataService {
        MetadataService {
            metadata: Arc::new(self),
        }
    }
}

/// `scheme://host[:port]` and the rest of `url`.
fn url_split(url: &str) -> Option<(&str, &str)> {
    let after_scheme = url.find("://")? + 3;
    match url[after_scheme..].find('/') {
        Some(slash) => Some(url.split_at(after_scheme + slash)),
        None => Some((url, "")),
    }
}

/// Serves a [`ProtectedResourceMetadata`] document.
#[derive(Clone, Debug)]
pub struct MetadataService {
    metadata: Arc<ProtectedResourceMetadata>,
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        ready(Ok(self.metadata.to_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls() {
        let at = |r: &str| ProtectedResourceMetadata::new(r).well_known_url();
        assert_eq!(
            at("https://x.com"),
            "https://x.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            at("http://127.0.0.1:8080/mcp"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn well_known_urls_of_a_root_and_of_a_non_url() {
        let at = |r: &str| ProtectedResourceMetadata::new(r).well_known_url();
        assert_eq!(
            at("https://x.com/"),
            "https://x.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            at("https://x.com/a/b"),
            "https://x.com/.well-known/oauth-protected-resource/a/b"
        );
        // No scheme: appended, after any trailing slash.
        assert_eq!(at("x.com/"), "x.com/.well-known/oauth-protected-resource");
    }

    /// The document is served as cacheable JSON, by `to_response` and by
    /// the service alike, which is always ready.
    #[test]
    fn the_document_is_served_as_cacheable_json() {
        use std::future::Future;
        let metadata = ProtectedResourceMetadata::new("https://x.com/mcp")
            .authorization_server("https://as.example.com")
            .authorization_server("https://as2.example.com")
            .scopes(["mcp", "keys:read"])
            .resource_name("Example MCP")
            .resource_documentation("https://x.com/docs");
        assert_eq!(metadata.resource(), "https://x.com/mcp");
        let expected = serde_json::json!({
            "resource": "https://x.com/mcp",
            "authorization_servers": ["https://as.example.com", "https://as2.example.com"],
            "scopes_supported": ["mcp", "keys:read"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Example MCP",
            "resource_documentation": "https://x.com/docs"
        });
        let check = |response: &Response<Bytes>| {
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.headers()[CACHE_CONTROL], "public, max-age=3600");
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body, expected);
        };
        check(&metadata.to_response());

        let mut service = metadata.into_service();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(
            Service::<Request<()>>::poll_ready(&mut service, &mut cx),
            Poll::Ready(Ok(()))
        );
        let mut future = std::pin::pin!(service.call(Request::new(())));
        let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("the metadata service answers at once");
        };
        let (parts, body) = response.into_parts();
        let Poll::Ready(Some(Ok(frame))) =
            std::pin::pin!(http_body_util::BodyExt::frame(&mut { body })).poll(&mut cx)
        else {
            panic!("a body in one frame");
        };
        check(&Response::from_parts(parts, frame.into_data().unwrap()));
    }

    #[test]
    fn document_shape() {
        let json = serde_json::to_value(
            ProtectedResourceMetadata::new("https://x.com/mcp")
                .authorization_server("https://as.example.com")
                .scopes(["mcp"]),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "resource": "https://x.com/mcp",
                "authorization_servers": ["https://as.example.com"],
                "scopes_supported": ["mcp"],
                "bearer_methods_supported": ["header"]
            })
        );
    }
}
