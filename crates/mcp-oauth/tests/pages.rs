//! The login and consent pages, attacked in process: CSRF missing or
//! foreign, wrong password, scopes beyond the user's, a replayed session,
//! hostile client names, requests that must never be redirected.

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use mcp_auth::{BoxFuture, SigningKey, TokenIssuer};
use mcp_oauth::{
    AuthorizationServer, LoginError, LoginUser, MemoryStore, RegistrationRequest, Settings,
    TokenParams, UserDirectory, authorize_pages,
};
use tower::ServiceExt;

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Users;

impl UserDirectory for Users {
    fn login<'a>(
        &'a self,
        email: &'a str,
        password: &'a str,
        _request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Option<LoginUser>, LoginError>> {
        let user = (email == "ada@example.com" && password == "right horse").then(|| LoginUser {
            subject: "user-1".into(),
            name: "Ada".into(),
            scopes: Some(vec!["mcp".into(), "agents:read".into()]),
        });
        Box::pin(async move { Ok(user) })
    }
}

struct Page {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Page {
    fn cookie(&self, name: &str) -> String {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} cookie"))
    }

    fn csrf(&self) -> String {
        let start = self
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a csrf field")
            + 19;
        self.body[start..start + 43].to_owned()
    }
}

async fn send(app: &axum::Router, request: Request<Body>) -> Page {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Page {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

fn post(body: String, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/oauth/authorize")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.body(Body::from(body)).unwrap()
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn setup(client_name: &str) -> (AuthorizationServer, axum::Router, String) {
    let mut settings = Settings::new(ISSUER, RESOURCE);
    settings.scopes = vec!["mcp".into(), "agents".into()];
    let tokens = TokenIssuer::new(SigningKey::hmac(&[5; 32]).unwrap(), ISSUER, RESOURCE);
    let server = AuthorizationServer::new(MemoryStore::new(), tokens, settings);
    let client = server
        .register(RegistrationRequest {
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            client_name: Some(client_name.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .client_id;
    let query = format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope={}&state=st8&code_challenge={CHALLENGE}&code_challenge_method=S256&resource={}",
        encode("http://127.0.0.1:52000/cb"),
        encode("mcp agents:read agents"),
        encode(RESOURCE),
    );
    let app: axum::Router = authorize_pages(server.clone(), Users);
    (server, app, query)
}

fn login_form(query: &str, csrf: &str, password: &str) -> String {
    format!(
        "action=login&query={}&csrf={csrf}&email=ada%40example.com&password={}",
        encode(query),
        encode(password)
    )
}

/// Logs in: the consent page, its session cookie and CSRF token.
async fn logged_in(app: &axum::Router, query: &str) -> (Page, String, String) {
    let login = send(
        app,
        Request::get(format!("/oauth/authorize?{query}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let cookie = login.cookie("mcp_oauth_login");
    let consent = send(
        app,
        post(
            login_form(query, &login.csrf(), "right horse"),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let session = consent.cookie("mcp_oauth_session");
    let csrf = consent.csrf();
    (consent, session, csrf)
}

#[tokio::test]
async fn login_then_consent_redirects_with_a_code_for_what_was_ticked() {
    let (server, app, query) = setup("Desk <b>app</b>").await;
    let login = send(
        &app,
        Request::get(format!("/oauth/authorize?{query}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, 200);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(!login.body.contains("<script"));
    assert!(
        login.body.contains("Desk &lt;b&gt;app&lt;/b&gt;"),
        "the client's name is escaped"
    );
    assert_eq!(login.headers["cache-control"], "no-store");
    let set = login.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Secure"),
        "{set}"
    );

    let cookie = login.cookie("mcp_oauth_login");
    let wrong = send(
        &app,
        post(
            login_form(&query, &login.csrf(), "wrong horse"),
            Some(&cookie),
        ),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong email or password."));
    assert!(
        !wrong.body.contains("wrong horse"),
        "the password is never echoed"
    );

    let (consent, session, csrf) = logged_in(&app, &query).await;
    // Offered: what was asked and the user holds; `agents` is beyond them.
    assert!(consent.body.contains(r#"value="mcp""#));
    assert!(consent.body.contains(r#"value="agents:read""#));
    assert!(!consent.body.contains(r#"value="agents""#));
    assert!(
        consent.body.contains("127.0.0.1"),
        "the redirect host is shown"
    );
    let csp = consent.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:52000"),
        "{csp}"
    );

    let done = send(
        &app,
        post(
            format!(
                "action=consent&query={}&csrf={csrf}&scope=mcp",
                encode(&query)
            ),
            Some(&session),
        ),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let location = url::Url::parse(done.headers["location"].to_str().unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with("http://127.0.0.1:52000/cb?code=")
    );
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("state".into(), "st8".into())));
    assert!(pairs.contains(&("iss".into(), ISSUER.into())));
    let code = &pairs.iter().find(|(k, _)| k == "code").unwrap().1;
    let client_id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "client_id")
        .unwrap()
        .1
        .into_owned();
    let (tokens, _) = server
        .token(
            &TokenParams {
                grant_type: Some("authorization_code".into()),
                code: Some(code.clone()),
                redirect_uri: Some("http://127.0.0.1:52000/cb".into()),
                code_verifier: Some(VERIFIER.into()),
                client_id: Some(client_id),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(tokens.scope, "mcp", "only what was ticked");

    // The session was used up by the consent.
    let again = send(
        &app,
        post(
            format!(
                "action=consent&query={}&csrf={csrf}&scope=mcp",
                encode(&query)
            ),
            Some(&session),
        ),
    )
    .await;
    assert_eq!(again.status, 403);
}

#[tokio::test]
async fn forms_without_or_with_a_foreign_csrf_token_are_refused() {
    let (_, app, query) = setup("Desk").await;
    let login = send(
        &app,
        Request::get(format!("/oauth/authorize?{query}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let csrf = login.csrf();
    // No cookie, a cookie of another form, no field.
    for (cookie, field) in [
        (None, csrf.clone()),
        (
            Some("mcp_oauth_login=someone-elses-token-0000000000000000000000".to_owned()),
            csrf.clone(),
        ),
        (Some(login.cookie("mcp_oauth_login")), String::new()),
    ] {
        let page = send(
            &app,
            post(login_form(&query, &field, "right horse"), cookie.as_deref()),
        )
        .await;
        assert_eq!(page.status, 403, "{cookie:?}");
        assert!(!page.body.contains(r#"name="scope""#));
    }

    // Consent with another session's token, and with none.
    let (_, session_a, _) = logged_in(&app, &query).await;
    let (_, _, csrf_b) = logged_in(&app, &query).await;
    for (session, csrf) in [
        (Some(session_a.as_str()), csrf_b.as_str()),
        (None, csrf_b.as_str()),
        (Some(session_a.as_str()), ""),
    ] {
        let page = send(
            &app,
            post(
                format!(
                    "action=consent&query={}&csrf={csrf}&scope=mcp",
                    encode(&query)
                ),
                session,
            ),
        )
        .await;
        assert_eq!(page.status, 403);
        assert!(!page.headers.contains_key("location"));
    }
}

#[tokio::test]
async fn scopes_beyond_the_offer_and_denial() {
    let (_, app, query) = setup("Desk").await;
    let (_, session, csrf) = logged_in(&app, &query).await;
    let page = send(
        &app,
        post(
            format!(
                "action=consent&query={}&csrf={csrf}&scope=mcp&scope=agents",
                encode(&query)
            ),
            Some(&session),
        ),
    )
    .await;
    assert_eq!(page.status, 403);
    assert!(!page.headers.contains_key("location"));

    let (_, session, csrf) = logged_in(&app, &query).await;
    let denied = send(
        &app,
        post(
            format!("action=deny&query={}&csrf={csrf}", encode(&query)),
            Some(&session),
        ),
    )
    .await;
    assert_eq!(denied.status, 303);
    let location = denied.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:52000/cb?error=access_denied"),
        "{location}"
    );
}

#[tokio::test]
async fn bad_requests_show_an_error_and_never_redirect_anywhere_unregistered() {
    let (_, app, query) = setup("Desk").await;
    for hostile in [
        query.replace("client_id=", "client_id=nobody"),
        query.replace(
            &encode("http://127.0.0.1:52000/cb"),
            &encode("https://evil.example/cb"),
        ),
        "%ZZ&&&=".to_owned(),
        String::new(),
    ] {
        let page = send(
            &app,
            Request::get(format!("/oauth/authorize?{hostile}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, 400, "{hostile}");
        assert!(!page.headers.contains_key("location"));
        assert!(!page.body.contains("evil.example"));
    }
    // A known client and URI, but plain PKCE: told to the client.
    let plain = query.replace("code_challenge_method=S256", "code_challenge_method=plain");
    let page = send(
        &app,
        Request::get(format!("/oauth/authorize?{plain}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, 303);
    assert!(
        page.headers["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );
    // A form field given twice, and an unknown action.
    let page = send(
        &app,
        post(
            format!("action=login&action=consent&query={}", encode(&query)),
            None,
        ),
    )
    .await;
    assert_eq!(page.status, 400);
    let page = send(
        &app,
        post(format!("action=steal&query={}", encode(&query)), None),
    )
    .await;
    assert_eq!(page.status, 400);
}
