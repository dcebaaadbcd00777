//! Properties of the key format, its checksum and how a key is found in a
//! request, over generated input.

use std::sync::Arc;

use mcp_apikeys::{
    ApiKeyAuthenticator, ApiKeySecret, ApiKeyService, KEY_LEN, KEY_PREFIX, MemoryStore,
};
use mcp_auth::{AuthError, Authenticator};
use proptest::prelude::*;

fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut request = http::Request::new(());
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            http::HeaderValue::from_str(value).expect("a header value"),
        );
    }
    request.into_parts().0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

proptest! {
    /// Any one character changed, anywhere after the prefix, is caught by
    /// the checksum without a lookup (CRC-32 catches every error this short).
    #[test]
    fn one_character_changed_is_refused(at in KEY_PREFIX.len()..KEY_LEN, to in prop::sample::select(ALPHANUMERIC)) {
        let key = ApiKeySecret::generate();
        prop_assert!(ApiKeySecret::looks_valid(key.expose()));
        let mut changed = key.expose().as_bytes().to_vec();
        prop_assume!(changed[at] != to);
        changed[at] = to;
        let changed = String::from_utf8(changed).expect("ascii");
        prop_assert!(!ApiKeySecret::looks_valid(&changed));
    }

    /// Two neighbours swapped (the commonest typo) are refused.
    #[test]
    fn two_neighbours_swapped_are_refused(at in KEY_PREFIX.len()..KEY_LEN - 1) {
        let key = ApiKeySecret::generate();
        let mut swapped = key.expose().as_bytes().to_vec();
        prop_assume!(swapped[at] != swapped[at + 1]);
        swapped.swap(at, at + 1);
        let swapped = String::from_utf8(swapped).expect("ascii");
        prop_assert!(!ApiKeySecret::looks_valid(&swapped));
    }

    /// Made-up keys of the right shape, and anything of another length or
    /// prefix, are refused (a made-up key passes one time in 2^32).
    #[test]
    fn made_up_keys_are_refused(body in "[0-9A-Za-z]{49}", other in "\\PC{0,80}") {
        prop_assert!(!ApiKeySecret::looks_valid(&format!("{KEY_PREFIX}{body}")), "the property fails for the inputs shown");
        prop_assume!(!(other.len() == KEY_LEN && other.starts_with(KEY_PREFIX)));
        prop_assert!(!ApiKeySecret::looks_valid(&other));
    }

    /// A real key is found by `X-API-Key` (with any surrounding spaces) and
    /// as a bearer token; anything else in `X-API-Key` is an invalid key,
    /// and a bearer token without the key prefix belongs to another
    /// authenticator even when `X-API-Key` is sent too.
    #[test]
    fn a_key_is_found_where_it_may_be(
        spaces in " {0,3}",
        junk in "[!-~]{1,60}",
        token in "[A-Za-z0-9._-]{1,60}",
    ) {
        runtime().block_on(async {
            let keys = Arc::new(ApiKeyService::builder(Arc::new(MemoryStore::new())).build());
            let (_, secret) = keys.create("user-1", "k", None, None).await.expect("a key");
            let auth = ApiKeyAuthenticator::new(keys);
            let padded = format!("{spaces}{}{spaces}", secret.expose());
            let by_header = auth.authenticate(&parts(&[("x-api-key", &padded)])).await;
            prop_assert_eq!(by_header.expect("accepted").map(|p| p.subject().to_owned()), Some("user-1".to_owned()));
            let bearer = format!("Bearer {}", secret.expose());
            let by_bearer = auth.authenticate(&parts(&[("authorization", &bearer)])).await;
            prop_assert!(matches!(by_bearer, Ok(Some(_))));

            prop_assume!(junk.trim() != secret.expose());
            let wrong = auth.authenticate(&parts(&[("x-api-key", &junk)])).await;
            prop_assert_eq!(wrong.map(|p| p.is_some()), Err(AuthError::InvalidApiKey));

            prop_assume!(!token.starts_with(KEY_PREFIX));
            let other = format!("Bearer {token}");
            let theirs = auth
                .authenticate(&parts(&[("authorization", &other), ("x-api-key", secret.expose())]))
                .await;
            prop_assert_eq!(theirs.map(|p| p.is_some()), Ok(false));
            Ok(())
        })?;
    }
}
