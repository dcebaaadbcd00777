//! Every header and setting parser on the same bytes: bearer and API-key
//! extraction, origins and CORS policies, forwarded addresses (both
//! headers), trusted-proxy lists and quotas. None may panic, and each
//! answer keeps its invariants.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use mcp_apikeys::ApiKeySecret;
use mcp_cors::{CorsPolicy, Origin};
use mcp_ratelimit::{ClientAddr, ForwardedHeader, Quota, RequestInfo, TrustedProxyIp};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // Header values: what `http` accepts is what a request can carry.
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut request = http::Request::new(());
        for name in [
            "authorization",
            "x-api-key",
            "x-forwarded-for",
            "forwarded",
            "origin",
        ] {
            request.headers_mut().insert(name, value.clone());
        }
        request
            .extensions_mut()
            .insert("10.0.0.1:443".parse::<SocketAddr>().expect("an address"));
        let (parts, ()) = request.into_parts();
        if let Ok(Some(token)) = mcp_auth::bearer_token(&parts) {
            assert!(!token.is_empty() && token.trim() == token);
        }
        let request = http::Request::from_parts(parts, ());
        let proxies: TrustedProxyIp = "10.0.0.0/8, ::1".parse().expect("a proxy list");
        for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
            let found = proxies
                .clone()
                .header(header)
                .client(&RequestInfo::of(&request));
            // The answer is never a trusted proxy unless every hop was one.
            assert!(matches!(
                found,
                Some(ClientAddr::Ip(_) | ClientAddr::Hidden { .. })
            ));
        }
    }

    let _ = ApiKeySecret::looks_valid(&text);
    if let Some(origin) = Origin::parse(data) {
        // Normalising is stable.
        assert_eq!(
            Origin::parse(origin.as_str().as_bytes()),
            Some(origin.clone())
        );
    }
    if let Ok(policy) = text.parse::<CorsPolicy>() {
        let _ = policy.allows(data);
        let _ = policy.exact_origins();
    }
    let _ = text.parse::<TrustedProxyIp>();
    if let Ok(quota) = text.parse::<Quota>() {
        assert!(quota.limit() > 0 && !quota.period().is_zero());
        let again: Quota = quota.to_string().parse().expect("Display reads back");
        assert_eq!(again.limit(), quota.limit());
    }
});
