//! Any token through the JWT verifier (HMAC key, no cache): refused with
//! `InvalidToken` or accepted, never a panic, whatever the header, payload
//! or signature hold.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_auth::{JwtAuthenticator, TrustedIssuer, VerifyingKey};

fn verifier() -> &'static (tokio::runtime::Runtime, JwtAuthenticator) {
    static VERIFIER: OnceLock<(tokio::runtime::Runtime, JwtAuthenticator)> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        mcp_auth::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let jwt = JwtAuthenticator::builder()
            .trust(
                TrustedIssuer::new("https://mcp.example.com", "https://mcp.example.com/mcp").key(
                    VerifyingKey::hmac(b"an HMAC secret that is long enough!!").expect("a key"),
                ),
            )
            .no_cache()
            .build()
            .expect("a verifier");
        (runtime, jwt)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, jwt) = verifier();
    let token = String::from_utf8_lossy(data);
    let _ = runtime.block_on(jwt.verify(&token));
    // The same bytes as base64url segments, so the header and payload
    // parsers see what the fuzzer writes rather than failing at base64.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = data.splitn(3, |&b| b == 0);
    let header = b64.encode(parts.next().unwrap_or_default());
    let payload = b64.encode(parts.next().unwrap_or_default());
    let signature = b64.encode(parts.next().unwrap_or_default());
    let _ = runtime.block_on(jwt.verify(&format!("{header}.{payload}.{signature}")));
});
