//! The OAuth flow as a browser and a client go through it, for the suites
//! that need a grant: registration, the login and consent pages, the code
//! exchange.

use serde_json::{Value, json};

use super::TestServer;

/// The password of the users these helpers log in.
pub const PASSWORD: &str = "correct horse battery";
/// The redirect URI clients register.
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// HTML attribute text back to the text.
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `value` of the hidden input `name` of a page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    unescape(&html[start..end])
}

/// `name=value` of the `Set-Cookie` named `name`.
pub fn cookie(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// A browser without JavaScript: no redirects followed, cookies carried
/// by hand.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A client registered with [`REDIRECT`]: its id.
pub async fn register(server: &TestServer) -> String {
    register_client(server, REDIRECT, "raw").await
}

/// A refresh of `refresh_token` by the public client `client_id`.
pub async fn refresh(
    server: &TestServer,
    client_id: &str,
    refresh_token: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("the token endpoint")
}

/// A public client registered with `redirect` and `name`: its id.
pub async fn register_client(server: &TestServer, redirect: &str, name: &str) -> String {
    let client: Value = reqwest::Client::new()
        .post(server.url("/oauth/register"))
        .json(&json!({"redirect_uris": [redirect], "client_name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    client["client_id"].as_str().expect("client_id").to_owned()
}

/// The authorization endpoint's URL for `client_id`, PKCE `S256`.
pub fn authorize_url(server: &TestServer, client_id: &str, scope: Option<&str>) -> String {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "s1"),
    ];
    params.extend(scope.map(|scope| ("scope", scope)));
    let query = serde_urlencoded::to_string(params).unwrap();
    server.url(&format!("/oauth/authorize?{query}"))
}

/// Posts the login form of `page` (its HTML, its cookie) at `origin`.
pub async fn post_login(
    browser: &reqwest::Client,
    origin: &str,
    (login_cookie, html): (&str, &str),
    email: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post(format!("{origin}/oauth/authorize"))
        .header("cookie", login_cookie)
        .header("origin", origin)
        .form(&[
            ("action", "login"),
            ("query", hidden(html, "query").as_str()),
            ("csrf", hidden(html, "csrf").as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs in on the authorization page at `url` and consents to `scopes`;
/// returns the redirect the browser is sent to.
pub async fn log_in_and_consent(url: &str, email: &str, scopes: &[&str]) -> String {
    let browser = browser();
    let page = browser.get(url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let login_cookie = cookie(page.headers(), "mcp_oauth_login");
    let html = page.text().await.unwrap();
    let origin = url.split("/oauth/").next().unwrap();
    let consent = post_login(&browser, origin, (&login_cookie, &html), email, PASSWORD).await;
    assert_eq!(consent.status(), 200, "login refused");
    let session = cookie(consent.headers(), "mcp_oauth_session");
    let html = consent.text().await.unwrap();
    assert!(html.contains("Allow access?"), "{html}");
    let mut form = vec![
        ("action", "consent".to_owned()),
        ("query", hidden(&html, "query")),
        ("csrf", hidden(&html, "csrf")),
    ];
    form.extend(scopes.iter().map(|s| ("scope", (*s).to_owned())));
    let done = browser
        .post(format!("{origin}/oauth/authorize"))
        .header("cookie", &session)
        .header("origin", origin)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303, "{}", done.text().await.unwrap());
    done.headers()["location"].to_str().unwrap().to_owned()
}

/// A grant through the forms and the token endpoint, by raw HTTP: the
/// client id, the access token and the refresh token.
pub async fn granted(
    server: &TestServer,
    email: &str,
    scopes: &[&str],
) -> (String, String, String) {
    let (client_id, access, refresh, _) = granted_with_code(server, email, scopes).await;
    (client_id, access, refresh)
}

/// [`granted`], and the code it exchanged.
pub async fn granted_with_code(
    server: &TestServer,
    email: &str,
    scopes: &[&str],
) -> (String, String, String, String) {
    let http = reqwest::Client::new();
    let client_id = register(server).await;
    let scope = scopes.join(" ");
    let url = authorize_url(server, &client_id, Some(&scope));
    let redirect = log_in_and_consent(&url, email, scopes).await;
    let code = url::Url::parse(&redirect)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: Value = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        client_id,
        tokens["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        tokens["refresh_token"].as_str().unwrap().to_owned(),
        code,
    )
}
