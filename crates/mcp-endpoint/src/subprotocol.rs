//! Browsers cannot set headers on a WebSocket: their token comes as a
//! subprotocol.

use std::sync::Arc;

use http::HeaderValue;
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::request::Parts;
use mcp_auth::{AuthError, Authenticator, BoxFuture};
use mcp_core::Principal;

/// Prefix of the subprotocol that carries a browser's token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "bearer.";

/// The header that carries an API key, a credential of the request's own.
const API_KEY: &str = "x-api-key";

/// Reads a `bearer.<token>` WebSocket subprotocol as `Authorization: Bearer
/// <token>` and hands it to `inner` (never the query string, which ends up
/// in logs).
///
/// It answers only for requests that carry no credentials of their own
/// (`Authorization`, `X-API-Key`): put it in the chain after the
/// authenticators that read those, with the same authenticators as `inner`.
///
/// ```
/// use mcp_auth::{AuthError, Authenticator, BoxFuture};
/// use mcp_core::{AuthMethod, Principal};
/// use mcp_endpoint::SubprotocolBearer;
///
/// /// Accepts the token `good`.
/// struct Tokens;
///
/// impl Authenticator for Tokens {
///     fn authenticate<'a>(
///         &'a self,
///         parts: &'a http::request::Parts,
///     ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
///         let good = parts.headers.get("authorization").is_some_and(|v| v == "Bearer good");
///         Box::pin(async move { Ok(good.then(|| Principal::builder("u1", AuthMethod::Jwt).build())) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (parts, ()) = http::Request::get("/ws")
///     .header("sec-websocket-protocol", "mcp, bearer.good")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let principal = SubprotocolBearer::new(Tokens).authenticate(&parts).await.unwrap();
/// assert_eq!(principal.unwrap().subject(), "u1");
/// # }
/// ```
#[derive(Clone)]
pub struct SubprotocolBearer {
    inner: Arc<dyn Authenticator>,
}

impl std::fmt::Debug for SubprotocolBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubprotocolBearer").finish_non_exhaustive()
    }
}

impl SubprotocolBearer {
    /// Checks subprotocol tokens with `inner`.
    pub fn new(inner: impl Authenticator) -> Self {
        SubprotocolBearer {
            inner: Arc::new(inner),
        }
    }
}

/// The request head `inner` should see: the subprotocol's token as
/// `Authorization`, or `None` when it has credentials of its own or no
/// token.
fn as_bearer(parts: &Parts) -> Option<Parts> {
    if parts.headers.contains_key(AUTHORIZATION) || parts.headers.contains_key(API_KEY) {
        return None;
    }
    let mut value = parts
        .headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
        .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok())?;
    value.set_sensitive(true);
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = parts.method.clone();
    head.uri = parts.uri.clone();
    head.version = parts.version;
    head.headers = parts.headers.clone();
    head.headers.insert(AUTHORIZATION, value);
    Some(head)
}

impl Authenticator for SubprotocolBearer {
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            match as_bearer(parts) {
                Some(head) => self.inner.authenticate(&head).await,
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use mcp_core::AuthMethod;

    use super::*;

    /// Who presented which `Authorization`.
    struct Echo;

    impl Authenticator for Echo {
        fn authenticate<'a>(
            &'a self,
            parts: &'a Parts,
        ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
            let seen = parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Box::pin(async move {
                Ok(seen.map(|seen| Principal::builder(seen, AuthMethod::Jwt).build()))
            })
        }
    }

    async fn seen(headers: &[(&str, &str)]) -> Option<String> {
        let mut request = http::Request::get("/ws");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        SubprotocolBearer::new(Echo)
            .authenticate(&parts)
            .await
            .unwrap()
            .map(|p| p.subject().to_owned())
    }

    #[tokio::test]
    async fn the_token_is_read_only_without_credentials_of_the_request() {
        assert_eq!(
            seen(&[("sec-websocket-protocol", "mcp, bearer.abc")]).await,
            Some("Bearer abc".into())
        );
        assert_eq!(
            seen(&[("sec-websocket-protocol", "bearer.abc"), ("x-api-key", "k")]).await,
            None
        );
        assert_eq!(
            seen(&[
                ("sec-websocket-protocol", "bearer.abc"),
                ("authorization", "Bearer x")
            ])
            .await,
            None
        );
        assert_eq!(seen(&[("sec-websocket-protocol", "mcp")]).await, None);
    }
}
