//! The authorization server's rules, attacked: every refusal with the
//! error its RFC names.

use std::time::Duration;

use base64::Engine;
use mcp_auth::{SigningKey, TokenIssuer};
use mcp_core::ManualClock;
use mcp_oauth::{
    AuthorizationParams, AuthorizationRequest, AuthorizationServer, AuthorizeError, ErrorCode,
    MemoryStore, OAuthStore, RegistrationRequest, Settings, TokenEvent, TokenParams,
};

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1/callback";
const SECRET: [u8; 32] = [9; 32];

struct Fixture {
    server: AuthorizationServer,
    clock: ManualClock,
    store: MemoryStore,
}

fn fixture() -> Fixture {
    let clock = ManualClock::at_unix(1_800_000_000);
    let mut settings = Settings::new(ISSUER, RESOURCE);
    settings.scopes = vec!["mcp".into(), "agents".into()];
    let tokens = TokenIssuer::new(SigningKey::hmac(&SECRET).unwrap(), ISSUER, RESOURCE)
        .clock(clock.shared());
    let store = MemoryStore::new();
    let server = AuthorizationServer::new(store.clone(), tokens, settings).clock(clock.shared());
    Fixture {
        server,
        clock,
        store,
    }
}

async fn public_client(server: &AuthorizationServer) -> String {
    server
        .register(RegistrationRequest {
            redirect_uris: vec![REDIRECT.into()],
            client_name: Some("Test client".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .client_id
}

fn params(client_id: &str) -> AuthorizationParams {
    AuthorizationParams {
        response_type: Some("code".into()),
        client_id: Some(client_id.into()),
        redirect_uri: Some("http://127.0.0.1:51000/callback".into()),
        scope: Some("mcp agents:read".into()),
        state: Some("s-1".into()),
        code_challenge: Some(CHALLENGE.into()),
        code_challenge_method: Some("S256".into()),
        resource: Some(RESOURCE.into()),
    }
}

async fn authorized(f: &Fixture, client_id: &str) -> (AuthorizationRequest, String) {
    let request = f
        .server
        .check_authorization(&params(client_id))
        .await
        .unwrap();
    let url = f
        .server
        .approve(&request, "user-1", &request.scopes)
        .await
        .unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    (request, code)
}

fn exchange(client_id: &str, code: &str) -> TokenParams {
    TokenParams {
        grant_type: Some("authorization_code".into()),
        code: Some(code.into()),
        redirect_uri: Some("http://127.0.0.1:51000/callback".into()),
        code_verifier: Some(VERIFIER.into()),
        client_id: Some(client_id.into()),
        resource: Some(RESOURCE.into()),
        ..Default::default()
    }
}

fn refresh(client_id: &str, token: &str) -> TokenParams {
    TokenParams {
        grant_type: Some("refresh_token".into()),
        refresh_token: Some(token.into()),
        client_id: Some(client_id.into()),
        ..Default::default()
    }
}

fn redirected_error(error: AuthorizeError) -> (String, Vec<(String, String)>) {
    match error {
        AuthorizeError::Redirect(url) => {
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            let code = pairs.iter().find(|(k, _)| k == "error").unwrap().1.clone();
            (code, pairs)
        }
        AuthorizeError::Show(error) => panic!("shown, not redirected: {error}"),
    }
}

#[tokio::test]
async fn code_then_refresh_rotates_and_the_access_token_is_for_this_resource() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    let (tokens, event) = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap();
    let TokenEvent::Granted(grant) = event else {
        panic!("{event:?}")
    };
    assert_eq!(grant.scopes, ["mcp", "agents:read"]);
    assert_eq!(tokens.scope, "mcp agents:read");
    assert_eq!(tokens.token_type, "Bearer");

    // The JWT: this resource as audience, the grant's scopes.
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[RESOURCE]);
    validation.set_issuer(&[ISSUER]);
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &tokens.access_token,
        &jsonwebtoken::DecodingKey::from_secret(&SECRET),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["scope"], "mcp agents:read");
    // RFC 9068's client_id, and the grant as `sid`, so that a resource
    // server can refuse the token once the grant is revoked.
    assert_eq!(claims["client_id"], client.as_str());
    assert_eq!(claims["sid"], grant.id.to_string());
    // And the principal the verifier makes of it names the grant.
    let verifier = mcp_auth::JwtAuthenticator::builder()
        .trust(
            mcp_auth::TrustedIssuer::new(ISSUER, RESOURCE)
                .key(mcp_auth::VerifyingKey::hmac(&SECRET).unwrap()),
        )
        .build()
        .unwrap();
    let request = http::Request::get("/mcp")
        .header("authorization", format!("Bearer {}", tokens.access_token))
        .body(())
        .unwrap();
    let principal = mcp_auth::Authenticator::authenticate(&verifier, &request.into_parts().0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(principal.session(), Some(grant.id.to_string().as_str()));

    // Rotation: each refresh token works once and yields the next.
    let (second, event) = f
        .server
        .token(&refresh(&client, &tokens.refresh_token), None)
        .await
        .unwrap();
    assert!(matches!(event, TokenEvent::Refreshed(_)));
    assert_ne!(second.refresh_token, tokens.refresh_token);
    // Narrowing on refresh is allowed, widening is not.
    let mut narrow = refresh(&client, &second.refresh_token);
    narrow.scope = Some("mcp".into());
    let (third, _) = f.server.token(&narrow, None).await.unwrap();
    assert_eq!(third.scope, "mcp");
    let mut wide = refresh(&client, &third.refresh_token);
    wide.scope = Some("agents".into());
    let error = f.server.token(&wide, None).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidScope);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    let (first, _) = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap();
    let (second, _) = f
        .server
        .token(&refresh(&client, &first.refresh_token), None)
        .await
        .unwrap();
    // The stolen copy of the first token comes back.
    let error = f
        .server
        .token(&refresh(&client, &first.refresh_token), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    // And the legitimate holder's current token is dead too.
    let error = f
        .server
        .token(&refresh(&client, &second.refresh_token), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    let grants = f.store.grants(Some("user-1")).await.unwrap();
    assert!(grants[0].revoked_at.is_some());
}

#[tokio::test]
async fn a_replayed_code_is_refused_and_revokes_what_it_issued() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    let (tokens, _) = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap();
    let error = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    let error = f
        .server
        .token(&refresh(&client, &tokens.refresh_token), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant, "{error}");
}

#[tokio::test]
async fn a_wrong_verifier_burns_the_code() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    let mut wrong = exchange(&client, &code);
    wrong.code_verifier = Some("x".repeat(43));
    let error = f.server.token(&wrong, None).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    // The right verifier afterwards finds the code used.
    let error = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    let mut missing = exchange(&client, &code);
    missing.code_verifier = None;
    assert_eq!(
        f.server.token(&missing, None).await.unwrap_err().code,
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn codes_expire_after_their_minute() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    f.clock.advance(Duration::from_secs(60));
    let error = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidGrant);
    assert!(error.description.contains("expired"));
}

#[tokio::test]
async fn pkce_is_required_and_only_s256() {
    let f = fixture();
    let client = public_client(&f.server).await;
    for (challenge, method) in [
        (None, None),
        (Some(CHALLENGE), None),
        (Some(CHALLENGE), Some("plain")),
        (Some(VERIFIER), Some("plain")),
        (None, Some("S256")),
    ] {
        let mut p = params(&client);
        p.code_challenge = challenge.map(Into::into);
        p.code_challenge_method = method.map(Into::into);
        let (code, pairs) = redirected_error(f.server.check_authorization(&p).await.unwrap_err());
        assert_eq!(code, "invalid_request", "{challenge:?} {method:?}");
        // The response still carries state and iss (RFC 9207).
        assert!(pairs.contains(&("state".into(), "s-1".into())));
        assert!(pairs.contains(&("iss".into(), ISSUER.into())));
    }
}

#[tokio::test]
async fn unknown_clients_and_unregistered_redirects_are_never_redirected_to() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let attempts = [
        "https://evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://127.0.0.1:5000/callback/../../evil",
        "http://127.0.0.1:5000/callback?next=https://evil.example",
        "http://evil.example@127.0.0.1:5000/callback",
        "//evil.example/callback",
        "http://127.0.0.1:5000/callback#x",
        "javascript:alert(1)",
    ];
    for uri in attempts {
        let mut p = params(&client);
        p.redirect_uri = Some(uri.into());
        match f.server.check_authorization(&p).await.unwrap_err() {
            AuthorizeError::Show(error) => assert_eq!(error.code, ErrorCode::InvalidRequest),
            AuthorizeError::Redirect(url) => panic!("{uri} redirected to {url}"),
        }
    }
    let mut p = params("no-such-client");
    p.redirect_uri = Some("https://evil.example/callback".into());
    assert!(matches!(
        f.server.check_authorization(&p).await.unwrap_err(),
        AuthorizeError::Show(e) if e.code == ErrorCode::InvalidClient
    ));
    // The token request must repeat the authorization request's URI.
    let (_, code) = authorized(&f, &client).await;
    let mut other = exchange(&client, &code);
    other.redirect_uri = Some("http://127.0.0.1:51001/callback".into());
    assert_eq!(
        f.server.token(&other, None).await.unwrap_err().code,
        ErrorCode::InvalidGrant
    );
}

#[tokio::test]
async fn another_servers_resource_and_unknown_scopes_are_refused() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let mut p = params(&client);
    p.resource = Some("https://other.example/mcp".into());
    let (code, _) = redirected_error(f.server.check_authorization(&p).await.unwrap_err());
    assert_eq!(code, "invalid_target");
    let mut p = params(&client);
    p.scope = Some("mcp admin".into());
    let (code, _) = redirected_error(f.server.check_authorization(&p).await.unwrap_err());
    assert_eq!(code, "invalid_scope");
    // Consent may narrow, never add what was not asked for.
    let request = f
        .server
        .check_authorization(&params(&client))
        .await
        .unwrap();
    let error = f
        .server
        .approve(&request, "user-1", &["agents".into()])
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidScope);
    let (_, code) = authorized(&f, &client).await;
    let mut p = exchange(&client, &code);
    p.resource = Some("https://other.example/mcp".into());
    assert_eq!(
        f.server.token(&p, None).await.unwrap_err().code,
        ErrorCode::InvalidTarget
    );
}

#[tokio::test]
async fn confidential_clients_authenticate_and_codes_stay_with_their_client() {
    let f = fixture();
    let registered = f
        .server
        .register(RegistrationRequest {
            redirect_uris: vec![REDIRECT.into()],
            token_endpoint_auth_method: Some("client_secret_basic".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let secret = registered.client_secret.clone().unwrap();
    assert!(!format!("{registered:?}").contains(&secret));
    let id = registered.client_id;
    let basic = |secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    let (_, code) = authorized(&f, &id).await;
    let mut without_id = exchange(&id, &code);
    without_id.client_id = None;
    // Wrong secret, no secret, secret by post and basic at once.
    let error = f
        .server
        .token(&without_id, Some(&basic("wrong")))
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidClient);
    assert_eq!(error.status(), 401);
    let error = f
        .server
        .token(&exchange(&id, &code), None)
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidClient);
    let mut both = exchange(&id, &code);
    both.client_secret = Some(secret.clone());
    assert_eq!(
        f.server
            .token(&both, Some(&basic(&secret)))
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidRequest
    );
    let (tokens, _) = f
        .server
        .token(&without_id, Some(&basic(&secret)))
        .await
        .unwrap();

    // Another client cannot use this client's code or refresh token.
    let other = public_client(&f.server).await;
    let (_, code) = authorized(&f, &id).await;
    assert_eq!(
        f.server
            .token(&exchange(&other, &code), None)
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidGrant
    );
    assert_eq!(
        f.server
            .token(&refresh(&other, &tokens.refresh_token), None)
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidGrant
    );
    // A public client may not pretend to have a secret.
    let mut pretend = refresh(&other, "x");
    pretend.client_secret = Some("guess".into());
    assert_eq!(
        f.server.token(&pretend, None).await.unwrap_err().code,
        ErrorCode::InvalidClient
    );
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_grant_for_its_own_client_only() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let other = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    let (tokens, _) = f
        .server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap();
    let as_other = TokenParams {
        client_id: Some(other.clone()),
        ..Default::default()
    };
    assert_eq!(
        f.server
            .revoke(&tokens.refresh_token, &as_other, None)
            .await
            .unwrap(),
        None
    );
    let as_owner = TokenParams {
        client_id: Some(client.clone()),
        ..Default::default()
    };
    assert!(
        f.server
            .revoke(&tokens.refresh_token, &as_owner, None)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        f.server
            .token(&refresh(&client, &tokens.refresh_token), None)
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidGrant
    );
    // Unknown tokens are not told apart.
    assert_eq!(
        f.server.revoke("nonsense", &as_owner, None).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn registration_refuses_what_could_redirect_anywhere() {
    let f = fixture();
    for uris in [
        vec![],
        vec!["http://evil.example/cb".to_owned()],
        vec!["javascript:alert(1)".to_owned()],
        vec!["https://a.example/cb#f".to_owned()],
        vec!["https://a.example/cb".to_owned(); 11],
    ] {
        let error = f
            .server
            .register(RegistrationRequest {
                redirect_uris: uris.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRedirectUri, "{uris:?}");
    }
    let error = f
        .server
        .register(RegistrationRequest {
            redirect_uris: vec![REDIRECT.into()],
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidClientMetadata);
}

#[tokio::test]
async fn a_missing_redirect_uri_is_the_only_registered_one_or_refused() {
    let f = fixture();
    let one = public_client(&f.server).await;
    let mut p = params(&one);
    p.redirect_uri = None;
    let request = f.server.check_authorization(&p).await.unwrap();
    assert_eq!(request.redirect_uri, REDIRECT);
    let two = f
        .server
        .register(RegistrationRequest {
            redirect_uris: vec![REDIRECT.into(), "https://app.example/cb".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .client_id;
    let mut p = params(&two);
    p.redirect_uri = None;
    assert!(matches!(
        f.server.check_authorization(&p).await.unwrap_err(),
        AuthorizeError::Show(e) if e.code == ErrorCode::InvalidRequest
    ));
    assert_eq!(request.redirect_host(), "127.0.0.1");
}

#[tokio::test]
async fn basic_credentials_and_the_forms_client_id_must_agree() {
    let f = fixture();
    let registered = f
        .server
        .register(RegistrationRequest {
            redirect_uris: vec![REDIRECT.into()],
            token_endpoint_auth_method: Some("client_secret_basic".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (id, secret) = (registered.client_id, registered.client_secret.unwrap());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let (_, code) = authorized(&f, &id).await;
    let mut other = exchange("someone-else", &code);
    let error = f.server.token(&other, Some(&basic)).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidClient);
    other.client_id = Some(id.clone());
    f.server.token(&other, Some(&basic)).await.unwrap();
    // A public client that sends a secret is told so.
    let public = public_client(&f.server).await;
    let mut pretend = refresh(&public, "x");
    pretend.client_secret = Some("guess".into());
    let error = f.server.token(&pretend, None).await.unwrap_err();
    assert_eq!(error.description, "a public client has no secret");
}

#[tokio::test]
async fn debug_output_never_shows_a_secret() {
    let f = fixture();
    let client = public_client(&f.server).await;
    let (_, code) = authorized(&f, &client).await;
    let mut params = exchange(&client, &code);
    params.client_secret = Some("s3cret-value".into());
    params.refresh_token = Some("refresh-value".into());
    let shown = format!("{params:?}");
    assert!(
        shown.contains("TokenParams") && shown.contains("authorization_code"),
        "{shown}"
    );
    for secret in [code.as_str(), VERIFIER, "s3cret-value", "refresh-value"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    params.client_secret = None;
    params.refresh_token = None;
    let (tokens, _) = f.server.token(&params, None).await.unwrap();
    let shown = format!("{tokens:?}");
    assert!(
        shown.contains("TokenResponse") && shown.contains("expires_in"),
        "{shown}"
    );
    assert!(!shown.contains(&tokens.access_token) && !shown.contains(&tokens.refresh_token));
    let shown = format!("{:?}", f.server);
    assert!(
        shown.contains("AuthorizationServer") && shown.contains(RESOURCE),
        "{shown}"
    );
}

#[tokio::test]
async fn registration_limits_hold_at_their_edges() {
    let f = fixture();
    let register = |request: RegistrationRequest| {
        let server = f.server.clone();
        async move { server.register(request).await }
    };
    let base = || RegistrationRequest {
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    };
    // Ten URIs and a 2048-byte URI and name are accepted; one more is not.
    let long_uri = format!("https://a.example/{}", "c".repeat(2048 - 18));
    assert_eq!(long_uri.len(), 2048);
    let ok = register(RegistrationRequest {
        redirect_uris: vec![long_uri.clone(); 10],
        client_name: Some("n".repeat(2048)),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        !format!("{ok:?}").contains(&"n".repeat(20)) || format!("{ok:?}").contains("client_id")
    );
    let too_long = register(RegistrationRequest {
        redirect_uris: vec![format!("{long_uri}c")],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(too_long.code, ErrorCode::InvalidRedirectUri);
    for name in ["n".repeat(2049), "tab\tname".to_owned()] {
        let error = register(RegistrationRequest {
            client_name: Some(name),
            ..base()
        })
        .await
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidClientMetadata);
    }
    // Grant and response types: only the code flow with refresh.
    for (grants, ok) in [
        (vec!["authorization_code"], true),
        (vec!["authorization_code", "refresh_token"], true),
        (vec!["refresh_token"], false),
        (vec!["authorization_code", "client_credentials"], false),
        (vec!["implicit"], false),
    ] {
        let result = register(RegistrationRequest {
            grant_types: Some(grants.iter().map(|g| g.to_string()).collect()),
            ..base()
        })
        .await;
        assert_eq!(result.is_ok(), ok, "{grants:?}");
    }
    for (types, ok) in [
        (vec!["code"], true),
        (vec!["code", "token"], false),
        (vec!["token"], false),
    ] {
        let result = register(RegistrationRequest {
            response_types: Some(types.iter().map(|t| t.to_string()).collect()),
            ..base()
        })
        .await;
        assert_eq!(result.is_ok(), ok, "{types:?}");
    }
    // The secret never shows in Debug.
    let confidential = register(RegistrationRequest {
        token_endpoint_auth_method: Some("client_secret_post".into()),
        ..base()
    })
    .await
    .unwrap();
    let shown = format!("{confidential:?}");
    assert!(shown.contains("RegistrationResponse") && shown.contains(&confidential.client_id));
    assert!(!shown.contains(confidential.client_secret.as_deref().unwrap()));
}

#[tokio::test]
async fn every_grant_refresh_replay_and_revocation_is_told() {
    let f = fixture();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let server = f
        .server
        .clone()
        .on_event(move |e: &TokenEvent| seen.lock().unwrap().push(e.clone()));
    let client = public_client(&server).await;
    let (_, code) = authorized(&f, &client).await;
    let (first, _) = server.token(&exchange(&client, &code), None).await.unwrap();
    let (second, _) = server
        .token(&refresh(&client, &first.refresh_token), None)
        .await
        .unwrap();
    // A replayed refresh token and a replayed code: refused, and told.
    server
        .token(&refresh(&client, &first.refresh_token), None)
        .await
        .unwrap_err();
    server
        .token(&exchange(&client, &code), None)
        .await
        .unwrap_err();
    let as_client = TokenParams {
        client_id: Some(client.clone()),
        ..Default::default()
    };
    // Already revoked by the replay: nothing more to tell.
    assert_eq!(
        server
            .revoke(&second.refresh_token, &as_client, None)
            .await
            .unwrap(),
        None
    );
    let events = events.lock().unwrap();
    let grant = match &events[0] {
        TokenEvent::Granted(grant) => grant.id,
        other => panic!("{other:?}"),
    };
    assert!(matches!(&events[1], TokenEvent::Refreshed(g) if g.id == grant));
    assert_eq!(events[2], TokenEvent::ReplayRevoked(grant));
    assert_eq!(events[3], TokenEvent::ReplayRevoked(grant));
    assert_eq!(events.len(), 4);
}
