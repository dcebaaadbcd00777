//! [`AuthorizationServer`]: the rules of the authorization and token
//! endpoints, independent of HTTP (the router renders what they decide).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mcp_auth::{AccessToken, TokenIssuer};
use mcp_core::{SharedClock, SystemClock, scopes_grant};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::error::{ErrorCode, OAuthError, StoreError};
use crate::pkce::CodeChallenge;
use crate::redirect::redirect_uri_matches;
use crate::secret::{Secret, SecretHash};
use crate::store::{Client, CodeRecord, Grant, OAuthStore, RefreshRecord, Taken};

/// Settings of an [`AuthorizationServer`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// The issuer identifier (the server's public URL), sent as `iss` with
    /// every authorization response (RFC 9207).
    pub issuer: String,
    /// The one resource tokens are for (the canonical `/mcp` URI): a
    /// request naming another is refused (RFC 8707).
    pub resource: String,
    /// Scopes a client may ask for; a request without `scope` asks for
    /// all of them (the consent page lets the user narrow them).
    pub scopes: Vec<String>,
    /// How long a code may wait for its exchange (60 s).
    pub code_ttl: Duration,
    /// How long a refresh token lives unused (30 days).
    pub refresh_ttl: Duration,
}

impl Settings {
    /// Settings for `issuer` and `resource` with the defaults.
    pub fn new(issuer: impl Into<String>, resource: impl Into<String>) -> Self {
        Settings {
            issuer: issuer.into(),
            resource: resource.into(),
            scopes: Vec::new(),
            code_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The parameters of an authorization request, as sent (query or form).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthorizationParams {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Where to send the answer.
    pub redirect_uri: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Returned as sent.
    pub state: Option<String>,
    /// PKCE.
    pub code_challenge: Option<String>,
    /// Must be `S256`.
    pub code_challenge_method: Option<String>,
    /// RFC 8707.
    pub resource: Option<String>,
}

/// An authorization request that passed every check: what the consent page
/// shows and [`AuthorizationServer::approve`] turns into a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The client.
    pub client: Client,
    /// The matched redirect URI, as the client sent it.
    pub redirect_uri: String,
    /// What the client asks for (at most the server's scopes).
    pub scopes: Vec<String>,
    /// Returned to the client.
    pub state: Option<String>,
    /// PKCE.
    pub challenge: CodeChallenge,
    /// The resource.
    pub resource: String,
}

impl AuthorizationRequest {
    /// The host codes are sent to, for the consent page.
    pub fn redirect_host(&self) -> String {
        Url::parse(&self.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| self.redirect_uri.clone())
    }
}

/// Why an authorization request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or its redirect URI is not known: the error is shown to
    /// the user and never sent to the URI (RFC 6749 §4.1.2.1: no open
    /// redirect).
    Show(OAuthError),
    /// Anything else: sent to the client's redirect URI.
    Redirect(Url),
}

/// The form of a token request (`application/x-www-form-urlencoded`).
#[derive(Clone, Default, Deserialize)]
pub struct TokenParams {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// Repeated from the authorization request.
    pub redirect_uri: Option<String>,
    /// PKCE.
    pub code_verifier: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// A public client's id (or a confidential one's, with its secret).
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
    /// Narrows a refresh.
    pub scope: Option<String>,
    /// RFC 8707.
    pub resource: Option<String>,
}

impl fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenParams")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// A successful token response (RFC 6749 §5.1). `Debug` hides the tokens.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// The next refresh token of the family.
    pub refresh_token: String,
    /// What the tokens grant.
    pub scope: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What happened at the token endpoint besides its answer, for an audit
/// trail: which grant, and whether a replay revoked it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenEvent {
    /// A code became a grant.
    Granted(Grant),
    /// A refresh token was rotated.
    Refreshed(Grant),
    /// A used code or refresh token came back: its grant is revoked.
    ReplayRevoked(Uuid),
    /// The client revoked a grant's refresh token (RFC 7009).
    Revoked(Uuid),
}

/// The authorization server's rules over an [`OAuthStore`].
#[derive(Clone)]
pub struct AuthorizationServer {
    store: Arc<dyn OAuthStore>,
    tokens: TokenIssuer,
    settings: Arc<Settings>,
    clock: SharedClock,
    #[cfg(feature = "client-metadata")]
    documents: Option<crate::cimd::ClientMetadataFetcher>,
    on_event: Option<OnEvent>,
}

/// Told of each grant, refresh, replay and revocation (an audit trail).
pub type OnEvent = Arc<dyn Fn(&TokenEvent) + Send + Sync>;

impl fmt::Debug for AuthorizationServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationServer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AuthorizationServer {
    /// A server keeping its state in `store` and signing access tokens with
    /// `tokens` (whose audience must be `settings.resource`).
    pub fn new(store: impl OAuthStore, tokens: TokenIssuer, settings: Settings) -> Self {
        AuthorizationServer {
            store: Arc::new(store),
            tokens,
            settings: Arc::new(settings),
            clock: SystemClock::shared(),
            #[cfg(feature = "client-metadata")]
            documents: None,
            on_event: None,
        }
    }

    /// Tells `on_event` of every grant, refresh and revocation, and of each
    /// replay (a used code or refresh token presented again), which revokes
    /// a grant while its request is refused. Called once the store has
    /// recorded it.
    #[must_use]
    pub fn on_event(mut self, on_event: impl Fn(&TokenEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(on_event));
        self
    }

    fn tell(&self, event: &TokenEvent) {
        if let Some(on_event) = &self.on_event {
            on_event(event);
        }
    }

    /// A used code or refresh token came back: its grant is revoked, the
    /// event told, and the request refused with `message`.
    async fn replayed(&self, grant_id: Uuid, message: &'static str) -> OAuthError {
        match self.store.revoke_grant(grant_id, self.clock.now()).await {
            Ok(_) => {
                self.tell(&TokenEvent::ReplayRevoked(grant_id));
                OAuthError::invalid_grant(message)
            }
            Err(error) => error.into(),
        }
    }

    /// Accepts Client ID Metadata Documents: a `client_id` that is an
    /// `https` URL is fetched by `fetcher` (and kept in the store, refreshed
    /// when its cache entry expires).
    #[cfg(feature = "client-metadata")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client-metadata")))]
    #[must_use]
    pub fn client_metadata(mut self, fetcher: crate::cimd::ClientMetadataFetcher) -> Self {
        self.documents = Some(fetcher);
        self
    }

    /// The client with `id`: a metadata document's, fetched (through its
    /// cache) and stored, or a registered one from the store.
    async fn find_client(&self, id: &str) -> Result<Option<Client>, OAuthError> {
        #[cfg(feature = "client-metadata")]
        if let Some(documents) = &self.documents
            && documents.is_document_url(id)
        {
            // Stored when fetched (so the token endpoint knows it), not on
            // every authorization the cache answers.
            let (client, fetched) = documents.lookup(id).await?;
            if fetched {
                self.store.put_client(client.clone()).await?;
            }
            return Ok(Some(client));
        }
        Ok(self.store.client(id).await?)
    }

    /// Reads time from `clock` (codes' and refresh tokens' expiry).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The store.
    pub fn store(&self) -> &dyn OAuthStore {
        &*self.store
    }

    /// Now, by the server's clock.
    pub(crate) fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// Checks an authorization request. The client and redirect URI come
    /// first: until both are known good, nothing is sent anywhere.
    pub async fn check_authorization(
        &self,
        params: &AuthorizationParams,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let show = |e: OAuthError| AuthorizeError::Show(e);
        let client_id = params
            .client_id
            .as_deref()
            .ok_or_else(|| show(OAuthError::invalid_request("client_id is required")))?;
        let client = self
            .find_client(client_id)
            .await
            .map_err(show)?
            .ok_or_else(|| show(OAuthError::invalid_client("unknown client")))?;
        let redirect_uri = match params.redirect_uri.as_deref() {
            Some(presented) => client
                .redirect_uris
                .iter()
                .any(|registered| redirect_uri_matches(registered, presented))
                .then(|| presented.to_owned()),
            None if client.redirect_uris.len() == 1 => Some(client.redirect_uris[0].clone()),
            None => None,
        }
        .ok_or_else(|| {
            show(OAuthError::invalid_request(
                "redirect_uri is not registered for this client",
            ))
        })?;
        let redirect = |error: OAuthError| {
            AuthorizeError::Redirect(self.response_url(
                &redirect_uri,
                params.state.as_deref(),
                |q| {
                    q.append_pair("error", error.code.as_str());
                    q.append_pair("error_description", &error.description);
                },
            ))
        };
        if params.response_type.as_deref() != Some("code") {
            return Err(redirect(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "response_type must be code",
            )));
        }
        let challenge = CodeChallenge::parse(
            params.code_challenge.as_deref(),
            params.code_challenge_method.as_deref(),
        )
        .map_err(redirect)?;
        self.check_resource(params.resource.as_deref())
            .map_err(redirect)?;
        let scopes = match params.scope.as_deref() {
            None => self.settings.scopes.clone(),
            Some(scope) => self.known_scopes(scope).map_err(redirect)?,
        };
        Ok(AuthorizationRequest {
            client,
            redirect_uri,
            scopes,
            state: params.state.clone(),
            challenge,
            resource: self.settings.resource.clone(),
        })
    }

    /// The user consented to `granted` (at most what was asked): a code
    /// for the client, and the URL to send the browser to (`code`, `state`,
    /// `iss`). The caller makes sure the user holds every granted scope.
    pub async fn approve(
        &self,
        request: &AuthorizationRequest,
        subject: &str,
        granted: &[String],
    ) -> Result<Url, OAuthError> {
        if let Some(extra) = granted.iter().find(|s| !request.scopes.contains(s)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("{extra} was not requested"),
            ));
        }
        let code = Secret::generate();
        let record = CodeRecord {
            client_id: request.client.id.clone(),
            subject: subject.to_owned(),
            redirect_uri: request.redirect_uri.clone(),
            challenge: request.challenge.clone(),
            scopes: granted.to_vec(),
            resource: request.resource.clone(),
            grant_id: Uuid::now_v7(),
            expires_at: self.clock.now() + self.settings.code_ttl,
        };
        self.store.put_code(code.hash(), record).await?;
        Ok(
            self.response_url(&request.redirect_uri, request.state.as_deref(), |q| {
                q.append_pair("code", code.expose());
            }),
        )
    }

    /// The user refused: the URL that tells the client (`access_denied`).
    pub fn deny(&self, request: &AuthorizationRequest) -> Url {
        self.response_url(&request.redirect_uri, request.state.as_deref(), |q| {
            q.append_pair("error", "access_denied");
            q.append_pair("error_description", "the user refused");
        })
    }

    /// The token endpoint: `basic` is the `Authorization` header's value,
    /// if any (`client_secret_basic`).
    pub async fn token(
        &self,
        params: &TokenParams,
        basic: Option<&str>,
    ) -> Result<(TokenResponse, TokenEvent), OAuthError> {
        let client = self.authenticate_client(params, basic).await?;
        self.check_resource(params.resource.as_deref())?;
        match params.grant_type.as_deref() {
            Some("authorization_code") => self.exchange_code(&client, params).await,
            Some("refresh_token") => self.refresh(&client, params).await,
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type must be authorization_code or refresh_token",
            )),
            None => Err(OAuthError::invalid_request("grant_type is required")),
        }
    }

    /// Revocation (RFC 7009): a refresh token of `client` revokes its whole
    /// grant. Unknown tokens, and tokens of other clients, change nothing
    /// and are not told apart (the answer is `200` either way).
    pub async fn revoke(
        &self,
        token: &str,
        params: &TokenParams,
        basic: Option<&str>,
    ) -> Result<Option<Uuid>, OAuthError> {
        let client = self.authenticate_client(params, basic).await?;
        let Some(record) = self.store.refresh(SecretHash::of(token)).await? else {
            return Ok(None);
        };
        let Some(grant) = self.store.grant(record.grant_id).await? else {
            return Ok(None);
        };
        if grant.client_id != client.id {
            return Ok(None);
        }
        let revoked = self.revoke_grant(grant.id).await?;
        Ok(revoked.then_some(grant.id))
    }

    /// Revokes grant `id` (its refresh tokens stop working at once; its
    /// access tokens carry its id as `sid`, for a resource server that
    /// checks it) and tells `on_event`; whether it was live until now.
    pub async fn revoke_grant(&self, id: Uuid) -> Result<bool, StoreError> {
        let revoked = self.store.revoke_grant(id, self.clock.now()).await?;
        if revoked {
            self.tell(&TokenEvent::Revoked(id));
        }
        Ok(revoked)
    }

    async fn exchange_code(
        &self,
        client: &Client,
        params: &TokenParams,
    ) -> Result<(TokenResponse, TokenEvent), OAuthError> {
        let code = params
            .code
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
        let record = match self.store.take_code(SecretHash::of(code)).await? {
            Taken::Fresh(record) => record,
            // RFC 6749 §4.1.2: a code used twice revokes what it issued.
            Taken::Reused(record) => {
                return Err(self
                    .replayed(
                        record.grant_id,
                        "the code was already used; the tokens it issued are revoked",
                    )
                    .await);
            }
            Taken::Unknown => return Err(OAuthError::invalid_grant("unknown code")),
        };
        // The code is used up whatever follows: a wrong verifier burns it.
        if record.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if self.clock.now() >= record.expires_at {
            return Err(OAuthError::invalid_grant("the code expired"));
        }
        if params.redirect_uri.as_deref() != Some(record.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        let verifier = params
            .code_verifier
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required"))?;
        if !record.challenge.verify(verifier) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        let grant = Grant {
            id: record.grant_id,
            client_id: client.id.clone(),
            client_name: client.name.clone(),
            subject: record.subject,
            scopes: record.scopes,
            resource: record.resource,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.store.put_grant(grant.clone()).await?;
        let response = self.issue(&grant, &grant.scopes).await?;
        let event = TokenEvent::Granted(grant);
        self.tell(&event);
        Ok((response, event))
    }

    async fn refresh(
        &self,
        client: &Client,
        params: &TokenParams,
    ) -> Result<(TokenResponse, TokenEvent), OAuthError> {
        let token = params
            .refresh_token
            .as_deref()
            .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
        let record = match self.store.take_refresh(SecretHash::of(token)).await? {
            Taken::Fresh(record) => record,
            // A rotated token came back: someone holds a copy. The whole
            // family goes (OAuth 2.1 §4.3.1).
            Taken::Reused(record) => {
                return Err(self
                    .replayed(
                        record.grant_id,
                        "the refresh token was already used; its grant is revoked",
                    )
                    .await);
            }
            Taken::Unknown => return Err(OAuthError::invalid_grant("unknown refresh token")),
        };
        let grant = self
            .store
            .grant(record.grant_id)
            .await?
            .filter(|g| g.revoked_at.is_none())
            .ok_or_else(|| OAuthError::invalid_grant("the grant was revoked"))?;
        if grant.client_id != client.id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        if self.clock.now() >= record.expires_at {
            return Err(OAuthError::invalid_grant("the refresh token expired"));
        }
        let scopes = match params.scope.as_deref() {
            None => grant.scopes.clone(),
            Some(scope) => {
                let asked = self.known_scopes(scope)?;
                if let Some(extra) = asked
                    .iter()
                    .find(|s| !scopes_grant(grant.scopes.iter().map(String::as_str), s))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("{extra} is beyond the grant"),
                    ));
                }
                asked
            }
        };
        let response = self.issue(&grant, &scopes).await?;
        let event = TokenEvent::Refreshed(grant);
        self.tell(&event);
        Ok((response, event))
    }

    /// An access token with `scopes` and the family's next refresh token.
    async fn issue(&self, grant: &Grant, scopes: &[String]) -> Result<TokenResponse, OAuthError> {
        let refresh = Secret::generate();
        self.store
            .put_refresh(
                refresh.hash(),
                RefreshRecord {
                    grant_id: grant.id,
                    expires_at: self.clock.now() + self.settings.refresh_ttl,
                },
            )
            .await?;
        let access = self
            .tokens
            .issue(
                &AccessToken::new(&grant.subject)
                    .scopes(scopes.iter().cloned())
                    .client_id(&grant.client_id)
                    .session(grant.id.to_string()),
            )
            .map_err(|error| {
                tracing::error!(%error, "cannot sign an access token");
                OAuthError::new(ErrorCode::ServerError, "cannot sign the access token")
            })?;
        Ok(TokenResponse {
            access_token: access.expose().to_owned(),
            token_type: "Bearer",
            expires_in: access.expires_in,
            refresh_token: refresh.expose().to_owned(),
            scope: scopes.join(" "),
        })
    }

    /// The client of a token or revocation request: by `client_secret_basic`,
    /// `client_secret_post`, or (a public client) its `client_id` alone.
    /// A client with a secret must present it; one without may not.
    async fn authenticate_client(
        &self,
        params: &TokenParams,
        basic: Option<&str>,
    ) -> Result<Client, OAuthError> {
        let (id, secret) = match basic {
            Some(header) => {
                if params.client_secret.is_some() {
                    return Err(OAuthError::invalid_request(
                        "one client authentication method at a time",
                    ));
                }
                let (id, secret) = basic_credentials(header)
                    .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
                if params.client_id.as_deref().is_some_and(|form| form != id) {
                    return Err(OAuthError::invalid_client("client_id differs from Basic's"));
                }
                (id, Some(secret))
            }
            None => (
                params
                    .client_id
                    .clone()
                    .ok_or_else(|| OAuthError::invalid_client("client_id is required"))?,
                params.client_secret.clone(),
            ),
        };
        let client = self
            .store
            .client(&id)
            .await?
            .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
        match (&client.secret_hash, secret) {
            (None, None) => Ok(client),
            (Some(hash), Some(secret)) if hash.matches(&secret) => Ok(client),
            (None, Some(_)) => Err(OAuthError::invalid_client("a public client has no secret")),
            _ => Err(OAuthError::invalid_client("client authentication failed")),
        }
    }

    fn check_resource(&self, resource: Option<&str>) -> Result<(), OAuthError> {
        match resource {
            Some(resource) if resource != self.settings.resource => Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource is not this server's MCP endpoint",
            )),
            _ => Ok(()),
        }
    }

    /// `scope` split, each one offered by this server (or below one in the
    /// hierarchy), duplicates dropped.
    fn known_scopes(&self, scope: &str) -> Result<Vec<String>, OAuthError> {
        let mut scopes: Vec<String> = Vec::new();
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            if !scopes_grant(self.settings.scopes.iter().map(String::as_str), s) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "a requested scope is not offered by this server",
                ));
            }
            if !scopes.iter().any(|have| have == s) {
                scopes.push(s.to_owned());
            }
        }
        Ok(scopes)
    }

    /// `redirect_uri` with the response's parameters, `state` and `iss`
    /// added to its own query.
    fn response_url(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        add: impl FnOnce(&mut url::form_urlencoded::Serializer<'_, url::UrlQuery<'_>>),
    ) -> Url {
        // Every redirect URI here was matched against a registered one,
        // which was checked to be absolute when it was registered.
        let mut url = Url::parse(redirect_uri).unwrap_or_else(|_| {
            Url::parse("about:blank").unwrap_or_else(|_| unreachable!("a valid URL"))
        });
        {
            let mut query = url.query_pairs_mut();
            add(&mut query);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.settings.issuer);
        }
        url
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decoded(id)?, form_decoded(secret)?))
}

/// A form-urlencoded value (`+` is a space).
fn form_decoded(value: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&value.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|v| v.into_owned())
}
