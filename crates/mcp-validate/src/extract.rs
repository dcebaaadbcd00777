//! The axum extractor.

use axum_core::extract::{FromRequest, Request};
use garde::Validate;
use http::header::CONTENT_TYPE;
use mcp_core::Problem;
use serde::de::DeserializeOwned;

use crate::{Limits, is_json, parse_blocking, read_body};

/// A JSON body of type `T` that passed every check (see the [crate
/// documentation](crate)). The limits are the [`Limits`] in the request's
/// extensions (put there with `axum::Extension`), or the defaults. Large
/// bodies are checked off the async workers ([`parse_blocking`](crate::parse_blocking)).
///
/// ```
/// use garde::Validate;
/// use mcp_validate::Valid;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, Validate)]
/// struct Login {
///     #[garde(email)]
///     email: String,
///     #[garde(length(min = 1))]
///     password: String,
/// }
///
/// async fn login(Valid(body): Valid<Login>) -> String {
///     body.email
/// }
/// # let _ = axum::Router::<()>::new().route("/login", axum::routing::post(login));
/// ```
#[derive(Debug)]
pub struct Valid<T>(pub T);

impl<S, T> FromRequest<S> for Valid<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate<Context = ()> + Send + 'static,
{
    type Rejection = Problem;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Problem> {
        let limits = request
            .extensions()
            .get::<Limits>()
            .copied()
            .unwrap_or_default();
        if !is_json(request.headers().get(CONTENT_TYPE)) {
            return Err(Problem::unsupported_media_type(
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = read_body(request.into_body(), limits.max_bytes).await?;
        parse_blocking(bytes, limits).await.map(Valid)
    }
}
