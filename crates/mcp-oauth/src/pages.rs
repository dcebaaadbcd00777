//! The authorization endpoint's pages: login, then consent, server-rendered
//! HTML forms that work without JavaScript.
//!
//! `GET /oauth/authorize` checks the request ([`AuthorizationServer::check_authorization`])
//! and shows the login form; `POST /oauth/authorize` logs the user in
//! through a [`UserDirectory`] and shows the consent form, then turns
//! consent into a code and redirects to the client. Each form carries a
//! CSRF token that must match the one bound to the browser's cookie (a
//! double submit before login, the session's after), the request is checked
//! again on every post, and the session lives only in the server's memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use mcp_auth::BoxFuture;
use mcp_core::scopes_grant;

use crate::error::StoreError;
use crate::secret::{Secret, SecretHash};
use crate::server::{
    AuthorizationParams, AuthorizationRequest, AuthorizationServer, AuthorizeError,
};

/// A user who logged in: who, and the scopes they hold (`None`: every
/// scope this server offers). Consent never grants more than this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginUser {
    /// The token's `sub`.
    pub subject: String,
    /// Shown on the consent page.
    pub name: String,
    /// What the user may grant.
    pub scopes: Option<Vec<String>>,
}

/// Where the login form's email and password are checked: the embedder's
/// users, with its password hashing, rate limits and lock-out.
pub trait UserDirectory: Send + Sync + 'static {
    /// The user with this email and password, or `None` when either is
    /// wrong (the page does not say which). `request` is the form post's
    /// head (the client's address, a request id, for rate limits and an
    /// audit trail).
    fn login<'a>(
        &'a self,
        email: &'a str,
        password: &'a str,
        request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Option<LoginUser>, LoginError>>;
}

/// Why a login could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Too many attempts for this account or address: the page answers
    /// `429` with `Retry-After`.
    #[error("too many sign-in attempts")]
    TooManyAttempts {
        /// When to try again.
        retry_after: Option<Duration>,
    },
    /// The user store failed: the page answers `503`.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// The pages' own styles: the only thing the CSP lets in besides the forms.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input[type=email],input[type=password]{width:100%;padding:.4rem}\
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b00020}.scopes label{display:inline;margin-left:.3rem}.host{font-family:monospace}";

const LOGIN_COOKIE: &str = "mcp_oauth_login";
const SESSION_COOKIE: &str = "mcp_oauth_session";
/// How long a login stays good for consenting.
const SESSION_TTL: Duration = Duration::from_secs(600);
/// Most sessions kept at once (oldest dropped first past it).
const MAX_SESSIONS: usize = 10_000;

struct Session {
    user: LoginUser,
    csrf: String,
    expires_at: SystemTime,
}

#[derive(Clone)]
struct Pages {
    server: AuthorizationServer,
    users: Arc<dyn UserDirectory>,
    sessions: Arc<Mutex<HashMap<SecretHash, Session>>>,
    secure: bool,
    style_hash: Arc<str>,
}

impl fmt::Debug for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// `GET` and `POST /oauth/authorize`: the login and consent pages over
/// `server`, users checked by `users`. Cookies are `HttpOnly`,
/// `SameSite=Lax`, and `Secure` when the issuer is `https`.
pub fn authorize_pages<S>(server: AuthorizationServer, users: impl UserDirectory) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let secure = server.settings().issuer.starts_with("https://");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    let pages = Pages {
        server,
        users: Arc::new(users),
        sessions: Arc::new(Mutex::new(HashMap::new())),
        secure,
        style_hash: STANDARD.encode(digest.as_ref()).into(),
    };
    Router::new()
        .route("/oauth/authorize", get(show).post(submit))
        .with_state(pages)
}

impl Pages {
    fn cookie(&self, name: &str, value: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// A page with the headers every page has: no caching, no framing, no
    /// referrer, and a CSP that allows its styles and its form posts (to
    /// itself and, after consent, the redirect to the client).
    fn page(&self, status: StatusCode, body: Markup, form_target: Option<&str>) -> Response {
        let mut response = (status, axum::response::Html(body.into_string())).into_response();
        let extra = form_target.map_or(String::new(), |origin| format!(" {origin}"));
        let csp = format!(
            "default-src 'none'; style-src 'sha256-{}'; form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'",
            self.style_hash
        );
        let headers = response.headers_mut();
        if let Ok(csp) = HeaderValue::from_str(&csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        // Not `no-referrer`: under it browsers send `Origin: null` with
        // the pages' own form posts, which an Origin guard (rightly)
        // refuses. `same-origin` keeps the real origin on those and still
        // sends nothing, not even the query's `state`, to the client.
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        response
    }

    fn error_page(&self, status: StatusCode, message: &str) -> Response {
        self.page(
            status,
            layout("Cannot sign in", html! { p.error { (message) } }),
            None,
        )
    }

    fn login_page(
        &self,
        query: &str,
        request: &AuthorizationRequest,
        error: Option<&str>,
    ) -> Response {
        let csrf = Secret::generate();
        let client = request.client.name.as_deref().unwrap_or(&request.client.id);
        let body = layout(
            "Sign in",
            html! {
                p { "Sign in to let " strong { (client) } " use this server." }
                @if let Some(error) = error { p.error { (error) } }
                form method="post" action="/oauth/authorize" {
                    input type="hidden" name="action" value="login";
                    input type="hidden" name="query" value=(query);
                    input type="hidden" name="csrf" value=(csrf.expose());
                    label for="email" { "Email" }
                    input id="email" type="email" name="email" required autocomplete="username";
                    label for="password" { "Password" }
                    input id="password" type="password" name="password" required autocomplete="current-password";
                    button type="submit" { "Sign in" }
                }
            },
        );
        let status = if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        let mut response = self.page(status, body, None);
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.cookie(LOGIN_COOKIE, csrf.expose()));
        response
    }

    fn consent_page(
        &self,
        query: &str,
        request: &AuthorizationRequest,
        user: &LoginUser,
        csrf: &str,
        session: &str,
    ) -> Response {
        let offered = offered(request, user);
        let client = request.client.name.as_deref().unwrap_or(&request.client.id);
        let body = layout(
            "Allow access?",
            html! {
                p { strong { (client) } " wants to use this server as " strong { (user.name) } "." }
                p { "It will receive the answer at " span.host { (request.redirect_host()) } "." }
                form method="post" action="/oauth/authorize" {
                    input type="hidden" name="query" value=(query);
                    input type="hidden" name="csrf" value=(csrf);
                    @if offered.is_empty() {
                        p { "No scopes: it will only be able to identify you." }
                    } @else {
                        div.scopes {
                            @for scope in &offered {
                                div {
                                    input type="checkbox" name="scope" value=(scope) id=(scope) checked;
                                    label for=(scope) { (scope) }
                                }
                            }
                        }
                    }
                    button type="submit" name="action" value="consent" { "Allow" }
                    " "
                    button type="submit" name="action" value="deny" { "Deny" }
                }
            },
        );
        let origin = origin_of(&request.redirect_uri);
        let mut response = self.page(StatusCode::OK, body, origin.as_deref());
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.cookie(SESSION_COOKIE, session));
        response
    }

    fn start_session(&self, user: LoginUser) -> (String, String) {
        let session = Secret::generate();
        let csrf = Secret::generate().expose().to_owned();
        let now = self.server.now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires_at > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            session.hash(),
            Session {
                user,
                csrf: csrf.clone(),
                expires_at: now + SESSION_TTL,
            },
        );
        (session.expose().to_owned(), csrf)
    }

    /// The logged-in user of `cookie`, if the form's CSRF token is that
    /// session's (compared in constant time).
    fn session_user(&self, cookie: Option<&str>, csrf: Option<&str>) -> Option<LoginUser> {
        let (cookie, csrf) = (cookie?, csrf?);
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get(&SecretHash::of(cookie))?;
        let same = aws_lc_rs::constant_time::verify_slices_are_equal(
            session.csrf.as_bytes(),
            csrf.as_bytes(),
        )
        .is_ok();
        (same && session.expires_at > self.server.now()).then(|| session.user.clone())
    }

    fn end_session(&self, cookie: Option<&str>) {
        if let Some(cookie) = cookie {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&SecretHash::of(cookie));
        }
    }
}

/// The scopes the consent page offers: those requested that the user
/// holds (by the scope hierarchy).
fn offered(request: &AuthorizationRequest, user: &LoginUser) -> Vec<String> {
    request
        .scopes
        .iter()
        .filter(|s| {
            user.scopes
                .as_ref()
                .is_none_or(|held| scopes_grant(held.iter().map(String::as_str), s))
        })
        .cloned()
        .collect()
}

fn origin_of(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        url::Origin::Opaque(_) => None,
    }
}

fn layout(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                (content)
            }
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn redirect(location: &url::Url) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location.as_str()) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Checks the request of `query`; a response when it must stop here.
async fn checked(pages: &Pages, query: &str) -> Result<AuthorizationRequest, Response> {
    let params: AuthorizationParams = serde_urlencoded::from_str(query).map_err(|_| {
        pages.error_page(
            StatusCode::BAD_REQUEST,
            "The authorization request is malformed.",
        )
    })?;
    match pages.server.check_authorization(&params).await {
        Ok(request) => Ok(request),
        Err(AuthorizeError::Redirect(url)) => Err(redirect(&url)),
        Err(AuthorizeError::Show(error)) => {
            Err(pages.error_page(StatusCode::BAD_REQUEST, &error.description))
        }
    }
}

async fn show(State(pages): State<Pages>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    match checked(&pages, &query).await {
        Ok(request) => pages.login_page(&query, &request, None),
        Err(response) => response,
    }
}

/// The posted form: every field once, but `scope` as often as it is ticked.
#[derive(Default)]
struct Form {
    action: Option<String>,
    query: Option<String>,
    csrf: Option<String>,
    email: Option<String>,
    password: Option<String>,
    scopes: Vec<String>,
}

fn parse_form(body: &[u8]) -> Option<Form> {
    let mut form = Form::default();
    for (name, value) in url::form_urlencoded::parse(body) {
        let slot = match name.as_ref() {
            "action" => &mut form.action,
            "query" => &mut form.query,
            "csrf" => &mut form.csrf,
            "email" => &mut form.email,
            "password" => &mut form.password,
            "scope" => {
                if form.scopes.len() >= 64 {
                    return None;
                }
                form.scopes.push(value.into_owned());
                continue;
            }
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return None;
        }
    }
    Some(form)
}

async fn submit(State(pages): State<Pages>, head: http::request::Parts, body: Bytes) -> Response {
    let headers = &head.headers;
    let Some(form) = parse_form(&body) else {
        return pages.error_page(StatusCode::BAD_REQUEST, "The form is malformed.");
    };
    let query = form.query.clone().unwrap_or_default();
    let request = match checked(&pages, &query).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match form.action.as_deref() {
        Some("login") => {
            let same = match (cookie(headers, LOGIN_COOKIE), form.csrf.as_deref()) {
                (Some(cookie), Some(csrf)) => aws_lc_rs::constant_time::verify_slices_are_equal(
                    cookie.as_bytes(),
                    csrf.as_bytes(),
                )
                .is_ok(),
                _ => false,
            };
            if !same {
                return pages.error_page(StatusCode::FORBIDDEN, "The form expired or was not sent from this page. Start again from the application.");
            }
            let (Some(email), Some(password)) = (form.email.as_deref(), form.password.as_deref())
            else {
                return pages.login_page(&query, &request, Some("Enter your email and password."));
            };
            match pages.users.login(email, password, &head).await {
                Ok(Some(user)) => {
                    let (session, csrf) = pages.start_session(user.clone());
                    pages.consent_page(&query, &request, &user, &csrf, &session)
                }
                Ok(None) => pages.login_page(&query, &request, Some("Wrong email or password.")),
                Err(LoginError::TooManyAttempts { retry_after }) => {
                    let mut response = pages.error_page(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many sign-in attempts; try again later.",
                    );
                    if let Some(after) = retry_after {
                        response.headers_mut().insert(
                            header::RETRY_AFTER,
                            HeaderValue::from(after.as_secs().max(1)),
                        );
                    }
                    response
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot check a login");
                    pages.error_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Signing in is unavailable; try again later.",
                    )
                }
            }
        }
        Some(action @ ("consent" | "deny")) => {
            let session = cookie(headers, SESSION_COOKIE);
            let Some(user) = pages.session_user(session, form.csrf.as_deref()) else {
                return pages.error_page(StatusCode::FORBIDDEN, "The form expired or was not sent from this page. Start again from the application.");
            };
            pages.end_session(session);
            if action == "deny" {
                return redirect(&pages.server.deny(&request));
            }
            let offered = offered(&request, &user);
            if let Some(extra) = form.scopes.iter().find(|s| !offered.contains(s)) {
                tracing::info!(scope = %extra, "consent for a scope that was not offered");
                return pages.error_page(
                    StatusCode::FORBIDDEN,
                    "A scope that was not offered was sent.",
                );
            }
            match pages
                .server
                .approve(&request, &user.subject, &form.scopes)
                .await
            {
                Ok(url) => redirect(&url),
                Err(error) => pages.error_page(error.status(), &error.description),
            }
        }
        _ => pages.error_page(StatusCode::BAD_REQUEST, "Unknown action."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use mcp_core::ManualClock;

    struct Nobody;

    impl UserDirectory for Nobody {
        fn login<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a http::request::Parts,
        ) -> BoxFuture<'a, Result<Option<LoginUser>, LoginError>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn pages(clock: &ManualClock) -> Pages {
        let tokens = mcp_auth::TokenIssuer::new(
            mcp_auth::SigningKey::hmac(&[1; 32]).unwrap(),
            "https://a.example",
            "https://a.example/mcp",
        );
        let server = AuthorizationServer::new(
            MemoryStore::new(),
            tokens,
            crate::Settings::new("https://a.example", "https://a.example/mcp"),
        )
        .clock(clock.shared());
        Pages {
            server,
            users: Arc::new(Nobody),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            secure: true,
            style_hash: "h".into(),
        }
    }

    fn user() -> LoginUser {
        LoginUser {
            subject: "u".into(),
            name: "U".into(),
            scopes: None,
        }
    }

    #[test]
    fn sessions_end_after_their_ten_minutes_and_are_forgotten() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let pages = pages(&clock);
        let (cookie, csrf) = pages.start_session(user());
        clock.advance(SESSION_TTL - Duration::from_secs(1));
        assert!(pages.session_user(Some(&cookie), Some(&csrf)).is_some());
        clock.advance(Duration::from_secs(1));
        assert!(
            pages.session_user(Some(&cookie), Some(&csrf)).is_none(),
            "expired at its TTL"
        );
        // The next login sweeps expired sessions out.
        let (live, _) = pages.start_session(user());
        let sessions = pages.sessions.lock().unwrap();
        assert_eq!(sessions.len(), 1);
        assert!(sessions.contains_key(&SecretHash::of(&live)));
        assert!(format!("{pages:?}").contains("secure: true"));
    }

    #[test]
    fn past_the_cap_the_oldest_session_makes_room() {
        let clock = ManualClock::at_unix(1_800_000_000);
        let pages = pages(&clock);
        let (oldest, _) = pages.start_session(user());
        clock.advance(Duration::from_secs(1));
        {
            let mut sessions = pages.sessions.lock().unwrap();
            for _ in 1..MAX_SESSIONS {
                sessions.insert(
                    Secret::generate().hash(),
                    Session {
                        user: user(),
                        csrf: String::new(),
                        expires_at: pages.server.now() + SESSION_TTL,
                    },
                );
            }
            assert_eq!(sessions.len(), MAX_SESSIONS);
        }
        let (newest, _) = pages.start_session(user());
        let sessions = pages.sessions.lock().unwrap();
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(!sessions.contains_key(&SecretHash::of(&oldest)));
        assert!(sessions.contains_key(&SecretHash::of(&newest)));
    }
}
