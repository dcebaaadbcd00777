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
    AuthLayer::new(builder.build().unwrap())
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

/// A JWK of `private_pem` without a `kid`, selectable only by algorithm.
fn unnamed_jwk(private_pem: &[u8], algorithm: Algorithm) -> Jwk {
    let mut jwk = jwk(private_pem, algorithm, "unused");
    jwk.common.key_id = None;
    jwk
}

#[test]
fn debug_shows_the_url_only() {
    let jwks = JwksKeys::new("http://127.0.0.1:9/jwks.json").unwrap();
    assert_eq!(
        format!("{jwks:?}"),
        "JwksKeys { url: \"http://127.0.0.1:9/jwks.json\", .. }"
    );
}

/// A token without a `kid` takes the one key of its algorithm, named or
/// not; when two keys have that algorithm, it takes none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_kid_takes_the_only_key_of_its_algorithm() {
    let server = jwks_server(vec![
        unnamed_jwk(K1, Algorithm::RS256),
        jwk(EC, Algorithm::ES256, "ec"),
    ])
    .await;
    let clock = ManualClock::at_unix(NOW);
    let jwks = JwksKeys::new(&server.url).unwrap().clock(clock.shared());
    let rsa = jwks.key_for(None, Algorithm::RS256).await.unwrap();
    assert_eq!((rsa.kid(), rsa.algorithm()), (None, Algorithm::RS256));
    let ec = jwks.key_for(None, Algorithm::ES256).await.unwrap();
    assert_eq!((ec.kid(), ec.algorithm()), (Some("ec"), Algorithm::ES256));
    assert_eq!(
        jwks.key_for(None, Algorithm::EdDSA).await.unwrap_err(),
        mcp_auth::AuthError::invalid_token("no key for this algorithm")
    );
    // Through the whole verifier as well.
    let layer = layer(&server.url, &clock);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let claims = json!({"sub": "ext-user", "iss": ISS, "aud": AUD, "exp": NOW + 3600});
    let kidless =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(K1).unwrap()).unwrap();
    assert_eq!(status(&layer, &kidless).await.0, 200);

    // Two RS256 keys: a kid-less RS256 token is ambiguous.
    let server = jwks_server(vec![
        unnamed_jwk(K1, Algorithm::RS256),
        jwk(K2, Algorithm::RS256, "k2"),
    ])
    .await;
    let jwks = JwksKeys::new(&server.url).unwrap().clock(clock.shared());
    assert_eq!(
        jwks.key_for(None, Algorithm::RS256).await.unwrap_err(),
        mcp_auth::AuthError::invalid_token("no key for this algorithm")
    );
    // By kid, the named one is still found.
    let k2 = jwks.key_for(Some("k2"), Algorithm::RS256).await.unwrap();
    assert_eq!(k2.kid(), Some("k2"));
}

/// An unknown kid refetches once `min_refetch_interval` has passed since
/// the last attempt: not a second earlier, and exactly at the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_exactly_at_the_interval() {
    let server = jwks_server(vec![jwk(K1, Algorithm::RS256, "k1")]).await;
    let clock = ManualClock::at_unix(NOW);
    let jwks = JwksKeys::new(&server.url)
        .unwrap()
        .clock(clock.shared())
        .min_refetch_interval(Duration::from_secs(30))
        .max_age(Duration::from_secs(600));
    let fetches = || server.fetches.load(Ordering::SeqCst);
    assert!(jwks.key_for(Some("k1"), Algorithm::RS256).await.is_ok());
    assert_eq!(fetches(), 1);
    *server.document.lock().unwrap() = Some(JwkSet {
        keys: vec![
            jwk(K1, Algorithm::RS256, "k1"),
            jwk(K2, Algorithm::RS256, "k2"),
        ],
    });
    clock.advance(Duration::from_secs(29));
    assert_eq!(
        jwks.key_for(Some("k2"), Algorithm::RS256)
            .await
            .unwrap_err(),
        mcp_auth::AuthError::invalid_token("unknown key id")
    );
    assert_eq!(fetches(), 1, "refetched before the interval");
    clock.advance(Duration::from_secs(1));
    let k2 = jwks.key_for(Some("k2"), Algorithm::RS256).await.unwrap();
    assert_eq!(k2.kid(), Some("k2"));
    assert_eq!(fetches(), 2, "not refetched at the interval");
}

/// A set older than `max_age` is refetched, but still at most once per
/// `min_refetch_interval`: with `max_age` shorter than the interval, the
/// stale keys serve until the interval has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_set_is_refetched_at_most_once_per_interval() {
    let server = jwks_server(vec![jwk(K1, Algorithm::RS256, "k1")]).await;
    let clock = ManualClock::at_unix(NOW);
    let jwks = JwksKeys::new(&server.url)
        .unwrap()
        .clock(clock.shared())
        .min_refetch_interval(Duration::from_secs(30))
        .max_age(Duration::from_secs(10));
    let fetches = || server.fetches.load(Ordering::SeqCst);
    assert!(jwks.key_for(Some("k1"), Algorithm::RS256).await.is_ok());
    assert_eq!(fetches(), 1);
    clock.advance(Duration::from_secs(10));
    // Stale, but fetched 10 s ago: the old key, no request.
    assert!(jwks.key_for(Some("k1"), Algorithm::RS256).await.is_ok());
    assert_eq!(fetches(), 1);
    clock.advance(Duration::from_secs(19));
    assert!(jwks.key_for(Some("k1"), Algorithm::RS256).await.is_ok());
    assert_eq!(fetches(), 1);
    clock.advance(Duration::from_secs(1));
    assert!(jwks.key_for(Some("k1"), Algorithm::RS256).await.is_ok());
    assert_eq!(fetches(), 2);
}

/// Serves `body` to every request on a raw socket: with a `Content-Length`,
/// or chunked in pieces of `chunk` bytes (so that no length is announced).
async fn raw_server(body: Vec<u8>, chunked: Option<usize>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let mut response = Vec::new();
                response
                    .extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n");
                response.extend_from_slice(b"connection: close\r\n");
                match chunked {
                    None => {
                        response.extend_from_slice(
                            format!("content-length: {}\r\n\r\n", body.len()).as_bytes(),
                        );
                        response.extend_from_slice(&body);
                    }
                    Some(size) => {
                        response.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                        for piece in body.chunks(size) {
                            response.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                            response.extend_from_slice(piece);
                            response.extend_from_slice(b"\r\n");
                        }
                        response.extend_from_slice(b"0\r\n\r\n");
                    }
                }
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}/jwks.json")
}

/// A JWKS of k1, padded with trailing white space to exactly `len` bytes.
fn padded_jwks(len: usize) -> Vec<u8> {
    let mut body = serde_json::to_vec(&JwkSet {
        keys: vec![jwk(K1, Algorithm::RS256, "k1")],
    })
    .unwrap();
    assert!(body.len() < len);
    body.resize(len, b' ');
    body
}

/// A JWKS document of up to 256 KiB is read, whether its length is
/// announced or it comes chunked; one byte more and it is refused, so the
/// keys are unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_document_may_hold_256_kib_and_not_a_byte_more() {
    const LIMIT: usize = 256 * 1024;
    for chunked in [None, Some(16 * 1024), Some(100_000)] {
        let at_limit = raw_server(padded_jwks(LIMIT), chunked).await;
        let jwks = JwksKeys::new(&at_limit).unwrap();
        let key = jwks.key_for(Some("k1"), Algorithm::RS256).await;
        assert_eq!(
            key.map(|k| k.kid().map(str::to_owned)),
            Ok(Some("k1".to_owned())),
            "{LIMIT} bytes, chunked: {chunked:?}"
        );

        let over = raw_server(padded_jwks(LIMIT + 1), chunked).await;
        let jwks = JwksKeys::new(&over).unwrap();
        assert!(
            matches!(
                jwks.key_for(Some("k1"), Algorithm::RS256).await,
                Err(mcp_auth::AuthError::Unavailable(_))
            ),
            "{} bytes, chunked: {chunked:?}",
            LIMIT + 1
        );
    }
}
