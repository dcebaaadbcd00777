//! JWKS against a real local HTTP server: rotation picked up, removed keys
//! refused, random `kid`s throttled, outages survived.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_auth::{AuthLayer, JwksKeys, JwksUrlError, JwtAuthenticator, TrustedIssuer};
use mcp_core::ManualClock;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://auth.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;

const K1: &[u8] = include_bytes!("keys/rsa-private.pem");
const K2: &[u8] = include_bytes!("keys/rsa2-private.pem");
const EC: &[u8] = include_bytes!("keys/ec-private.pem");
const ED: &[u8] = include_bytes!("keys/ed-private.pem");

struct JwksServer {
    url: String,
    /// The document served; `None` answers 500.
    document: Arc<Mutex<Option<JwkSet>>>,
    fetches: Arc<AtomicUsize>,
}

fn jwk(private_pem: &[u8], algorithm: Algorithm, kid: &str) -> Jwk {
    mcp_auth::install_crypto_provider();
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem),
        _ => EncodingKey::from_ed_pem(private_pem),
    }
    .unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

async fn jwks_server(keys: Vec<Jwk>) -> JwksServer {
    let document = Arc::new(Mutex::new(Some(JwkSet { keys })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (doc, count) = (document.clone(), fetches.clone());
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let (doc, count) = (doc.clone(), count.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                match doc.lock().unwrap().clone() {
                    Some(set) => (StatusCode::OK, serde_json::to_string(&set).unwrap()),
                    None => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer {
        url: format!("http://{addr}/jwks.json"),
        document,
        fetches,
    }
}

fn token(private_pem: &[u8], algorithm: Algorithm, kid: &str) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem),
        _ => EncodingKey::from_ed_pem(private_pem),
    }
    .unwrap();
    let claims: Value =
        json!({"sub": "ext-user", "iss": ISS, "aud": AUD, "exp": NOW + 3600, "scope": "mcp"});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn layer(url: &str, clock: &ManualClock) -> AuthLayer {
    layer_with(url, clock, true)
}

/// `cached`: the authenticator's verified-token cache on (the default) or off.
fn layer_with(url: &str, clock: &ManualClock, cached: bool) -> AuthLayer {
    let jwks = Arc::new(JwksKeys::new(url).unwrap().clock(clock.shared()));
    let builder = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).jwks(jwks))
        .clock(clock.shared());
    let builder = if cached { builder } else { builder.no_cache() };
    AuthLayer::required(vec![Arc::new(builder.build().unwrap())])
}

async fn status(layer: &AuthLayer, token: &str) -> (u16, String) {
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Bytes::new()))
    }));
    let request = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let code = serde_json::from_slice::<Value>(response.body())
        .map(|v| v["code"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_and_removed_keys_refused() {
    let server = jwks_server(vec![jwk(K1, Algorithm::RS256, "k1")]).await;
    let clock = ManualClock::at_unix(NOW);
    let layer = layer(&server.url, &clock);

    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "k1")).await.0,
        200
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // Cached: no fetch per request.
    for _ in 0..20 {
        assert_eq!(
            status(&layer, &token(K1, Algorithm::RS256, "k1")).await.0,
            200
        );
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // The issuer rotates: k2 in, k1 out.
    *server.document.lock().unwrap() = Some(JwkSet {
        keys: vec![jwk(K2, Algorithm::RS256, "k2")],
    });
    clock.advance(Duration::from_secs(31));
    assert_eq!(
        status(&layer, &token(K2, Algorithm::RS256, "k2")).await.0,
        200
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "k1")).await,
        (401, "invalid_token".to_owned())
    );
    // The removed kid did not earn a fetch of its own within the interval.
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_do_not_cause_a_fetch_per_request() {
    let server = jwks_server(vec![jwk(K1, Algorithm::RS256, "k1")]).await;
    let clock = ManualClock::at_unix(NOW);
    let layer = layer(&server.url, &clock);
    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "k1")).await.0,
        200
    );

    for round in 0..3 {
        for i in 0..50 {
            let kid = format!("random-{round}-{i}");
            assert_eq!(
                status(&layer, &token(K2, Algorithm::RS256, &kid)).await,
                (401, "invalid_token".to_owned())
            );
        }
        clock.advance(Duration::from_secs(31));
    }
    // One initial fetch, then at most one per 30 s interval that saw an
    // unknown kid: 150 hostile requests cost the issuer 3 requests.
    let fetches = server.fetches.load(Ordering::SeqCst);
    assert!(fetches <= 3, "{fetches} fetches");

    // Concurrent floods share one fetch too.
    let before = server.fetches.load(Ordering::SeqCst);
    let layer = Arc::new(layer);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let layer = layer.clone();
            tokio::spawn(async move {
                status(&layer, &token(K2, Algorithm::RS256, &format!("flood-{i}"))).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().0, 401);
    }
    assert!(server.fetches.load(Ordering::SeqCst) - before <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type_of_a_jwks_works() {
    let server = jwks_server(vec![
        jwk(K1, Algorithm::RS256, "rsa"),
        jwk(EC, Algorithm::ES256, "ec"),
        jwk(ED, Algorithm::EdDSA, "ed"),
    ])
    .await;
    let clock = ManualClock::at_unix(NOW);
    let layer = layer(&server.url, &clock);
    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "rsa")).await.0,
        200
    );
    assert_eq!(
        status(&layer, &token(EC, Algorithm::ES256, "ec")).await.0,
        200
    );
    assert_eq!(
        status(&layer, &token(ED, Algorithm::EdDSA, "ed")).await.0,
        200
    );
    // A kid of one type with the algorithm of another.
    assert_eq!(
        status(&layer, &token(EC, Algorithm::ES256, "rsa")).await.0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_keep_the_last_keys_and_never_fetched_is_503() {
    let server = jwks_server(vec![jwk(K1, Algorithm::RS256, "k1")]).await;
    let clock = ManualClock::at_unix(NOW);
    // Uncached, so that every request consults the key set.
    let layer = layer_with(&server.url, &clock, false);
    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "k1")).await.0,
        200
    );

    *server.document.lock().unwrap() = None;
    clock.advance(Duration::from_secs(601));
    // Stale set, failing refresh: the previous keys still work.
    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "k1")).await.0,
        200
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    let cold = jwks_server(vec![]).await;
    *cold.document.lock().unwrap() = None;
    let layer = self::layer(&cold.url, &clock);
    assert_eq!(
        status(&layer, &token(K1, Algorithm::RS256, "k1")).await,
        (503, "unavailable".to_owned())
    );
}

/// A JWKS that answers new key material under a kid it already published
/// (a key replaced in place): tokens verified with the old material are
/// remembered no longer, and are refused after the refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_material_under_a_known_kid_forgets_verified_tokens() {
    let server = jwks_server(vec![jwk(K1, Algorithm::RS256, "k1")]).await;
    let clock = ManualClock::at_unix(NOW);
    let layer = layer(&server.url, &clock);
    let old = token(K1, Algorithm::RS256, "k1");
    assert_eq!(status(&layer, &old).await.0, 200);
    // Verified and remembered: no fetch, no signature check.
    assert_eq!(status(&layer, &old).await.0, 200);

    // Same kid, another key.
    *server.document.lock().unwrap() = Some(JwkSet {
        keys: vec![jwk(K2, Algorithm::RS256, "k1")],
    });
    clock.advance(Duration::from_secs(601));
    // The set is stale: this token's lookup refreshes it.
    assert_eq!(
        status(&layer, &token(K2, Algorithm::RS256, "k1")).await.0,
        200
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(
        status(&layer, &old).await,
        (401, "invalid_token".to_owned()),
        "a token of the replaced key is still accepted from the cache"
    );
}

/// Plain `http` reaches a JWKS only on loopback: anywhere else the keys
/// could be swapped on the way. `https` is always accepted.
#[test]
fn plain_http_jwks_urls_only_on_loopback() {
    for url in [
        "https://auth.example.com/.well-known/jwks.json",
        "https://10.0.0.7/jwks",
        "http://127.0.0.1:8080/jwks.json",
        "http://127.1.2.3/jwks.json",
        "http://localhost/jwks.json",
        "http://LOCALHOST:9000/jwks.json",
        "http://[::1]:8443/jwks.json",
    ] {
        assert!(JwksKeys::new(url).is_ok(), "{url} is refused");
    }
    for url in [
        "http://auth.example.com/jwks.json",
        "http://10.0.0.7/jwks",
        "http://[2001:db8::1]/jwks",
        "http://localhost.example.com/jwks.json",
        "http://0.0.0.0/jwks.json",
    ] {
        assert!(
            matches!(JwksKeys::new(url), Err(JwksUrlError::InsecureScheme(_))),
            "{url} is accepted"
        );
    }
    for url in ["ftp://auth.example.com/jwks.json", "file:///etc/jwks.json"] {
        assert!(
            matches!(JwksKeys::new(url), Err(JwksUrlError::UnsupportedScheme(_))),
            "{url} is accepted"
        );
    }
    assert!(matches!(
        JwksKeys::new("not a url"),
        Err(JwksUrlError::Malformed(_))
    ));
}
