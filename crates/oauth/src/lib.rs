//! mailroom as an OAuth 2.0 client and OpenID Connect relying party: a provider's endpoints
//! from its discovery document, the authorization code flow with state, nonce and PKCE (S256),
//! the code and refresh exchanges, ID tokens verified against the provider's keys
//! ([`id_token`]), and token revocation (RFC 7009).
//!
//! Nothing here knows mailroom's accounts: the server decides what a verified identity may do.

pub mod http;
pub mod id_token;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use url::Url;

pub use id_token::{IdClaims, Rejection};

/// How long a discovery document and a key set are used before they are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A token naming a key we do not have refetches the key set, at most this often.
const KEYS_REFETCH_EVERY: Duration = Duration::from_secs(30);
/// The most of a provider's answer read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A provider as configured: whom to ask, and who we are to it.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The issuer exactly as its ID tokens name it (`https://accounts.google.com`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OauthError {
    #[error("the provider's configuration is not usable: {0}")]
    Configuration(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the provider answered something unexpected: {0}")]
    Protocol(String),
    /// The code or refresh token was refused: expired, used, or revoked (`invalid_grant`).
    #[error("the provider refused the grant (invalid_grant)")]
    InvalidGrant,
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("the ID token was refused: {0}")]
    IdToken(Rejection),
}

/// The endpoints of a provider's discovery document that mailroom uses.
#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    revocation_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// An authorization request to send the browser to, and the secrets its callback checks.
pub struct Authorization {
    pub url: Url,
    pub state: SecretString,
    pub nonce: SecretString,
    pub pkce_verifier: SecretString,
}

/// What a token endpoint answered.
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<Duration>,
    pub id_token: Option<String>,
    /// The scopes granted, when the provider says (it may grant fewer than asked).
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type Tokens = StandardTokenResponse<IdTokenField, BasicTokenType>;

type Client = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

struct Cached<T> {
    value: Arc<T>,
    fetched: Instant,
}

/// One OpenID provider: its documents are fetched when first needed and kept an hour.
pub struct Provider {
    config: ProviderConfig,
    http: reqwest::Client,
    metadata: Mutex<Option<Cached<Metadata>>>,
    keys: Mutex<Option<Cached<id_token::KeySet>>>,
}

/// Whether `url` may be a provider's: `https://`, or `http://` on a loopback address (tests).
pub fn allowed_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        },
        _ => false,
    }
}

fn checked_url(text: &str, what: &str) -> Result<Url, OauthError> {
    let url =
        Url::parse(text).map_err(|_| OauthError::Configuration(format!("{what} is not a URL")))?;
    if !allowed_url(&url) {
        return Err(OauthError::Configuration(format!(
            "{what} must be https:// (or http:// on loopback)"
        )));
    }
    Ok(url)
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Self, OauthError> {
        checked_url(&config.issuer, "the issuer")?;
        let http = http::client(REQUEST_TIMEOUT)
            .map_err(|error| OauthError::Configuration(error.to_string()))?;
        Ok(Self {
            config,
            http,
            metadata: Mutex::new(None),
            keys: Mutex::new(None),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The request to send a browser to, asking for `scopes` (with `openid`), and the
    /// secrets the callback needs: state, nonce and the PKCE verifier.
    pub async fn authorize(
        &self,
        redirect_uri: &Url,
        scopes: &[String],
        extra: &[(&str, &str)],
    ) -> Result<Authorization, OauthError> {
        let client = self.client(redirect_uri).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.secret().clone());
        let mut asked = vec!["openid".to_owned()];
        for scope in scopes {
            if !asked.contains(scope) {
                asked.push(scope.clone());
            }
        }
        for scope in asked {
            request = request.add_scope(Scope::new(scope));
        }
        for (name, value) in extra {
            request = request.add_extra_param(*name, *value);
        }
        let (url, state) = request.url();
        Ok(Authorization {
            url,
            state: SecretString::from(state.secret().clone()),
            nonce: SecretString::from(nonce.secret().clone()),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Exchanges an authorization code, proving the flow with its PKCE verifier.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &SecretString,
        redirect_uri: &Url,
    ) -> Result<TokenSet, OauthError> {
        let client = self.client(redirect_uri).await?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pkce_verifier.expose_secret().to_owned(),
            ))
            .request_async(&self.http)
            .await;
        token_set(answer)
    }

    /// A new access token for a refresh token. [`OauthError::InvalidGrant`] when the
    /// provider no longer honours it (revoked, expired, password changed).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenSet, OauthError> {
        let metadata = self.metadata().await?;
        let client = self.client_for(&metadata, None)?;
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let answer = client
            .exchange_refresh_token(&token)
            .request_async(&self.http)
            .await;
        token_set(answer)
    }

    /// Revokes a token at the provider's revocation endpoint (RFC 7009). Written here, not
    /// through `oauth2`, which refuses a plain-http endpoint (a loopback provider in tests).
    pub async fn revoke(&self, token: &SecretString) -> Result<(), OauthError> {
        let metadata = self.metadata().await?;
        let endpoint = metadata.revocation_endpoint.as_deref().ok_or_else(|| {
            OauthError::Configuration("the provider has no revocation endpoint".into())
        })?;
        let endpoint = checked_url(endpoint, "the revocation endpoint")?;
        let mut request = self.http.post(endpoint);
        let mut form = vec![("token", token.expose_secret().to_owned())];
        match auth_type(&metadata) {
            AuthType::BasicAuth => {
                request = request.basic_auth(
                    form_encoded(&self.config.client_id),
                    Some(form_encoded(self.config.client_secret.expose_secret())),
                );
            }
            _ => {
                form.push(("client_id", self.config.client_id.clone()));
                form.push((
                    "client_secret",
                    self.config.client_secret.expose_secret().to_owned(),
                ));
            }
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|error| OauthError::Unreachable(error.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_limited(response).await.unwrap_or_default();
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        Err(OauthError::Refused(error))
    }

    /// The claims of an ID token from this provider, for this client, answering the flow
    /// whose nonce is `nonce`.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &SecretString,
        now: OffsetDateTime,
    ) -> Result<IdClaims, OauthError> {
        let kid = id_token::key_id(token).map_err(OauthError::IdToken)?;
        let keys = self.keys(kid.as_deref()).await?;
        let expected = id_token::Expected {
            issuer: &self.config.issuer,
            client_id: &self.config.client_id,
            nonce: nonce.expose_secret(),
            now,
        };
        id_token::verify(token, &keys, &expected).map_err(OauthError::IdToken)
    }

    async fn client(&self, redirect_uri: &Url) -> Result<Client, OauthError> {
        let metadata = self.metadata().await?;
        self.client_for(&metadata, Some(redirect_uri))
    }

    fn client_for(
        &self,
        metadata: &Metadata,
        redirect_uri: Option<&Url>,
    ) -> Result<Client, OauthError> {
        let authorization = checked_url(
            &metadata.authorization_endpoint,
            "the authorization endpoint",
        )?;
        let token = checked_url(&metadata.token_endpoint, "the token endpoint")?;
        let client = oauth2::Client::new(ClientId::new(self.config.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.config.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_uri(AuthUrl::from_url(authorization))
            .set_token_uri(TokenUrl::from_url(token))
            .set_auth_type(auth_type(metadata));
        Ok(match redirect_uri {
            Some(uri) => client.set_redirect_uri(RedirectUrl::from_url(uri.clone())),
            None => client,
        })
    }

    /// The discovery document, fetched when missing or an hour old. Its `issuer` must be
    /// the configured one exactly (OpenID Connect Discovery §4.3).
    async fn metadata(&self) -> Result<Arc<Metadata>, OauthError> {
        let mut cached = self.metadata.lock().await;
        if let Some(entry) = cached
            .as_ref()
            .filter(|entry| entry.fetched.elapsed() < METADATA_TTL)
        {
            return Ok(entry.value.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.get_json(&url).await?;
        if metadata.issuer != self.config.issuer {
            return Err(OauthError::Protocol(
                "the discovery document names another issuer".into(),
            ));
        }
        checked_url(&metadata.jwks_uri, "jwks_uri")?;
        let value = Arc::new(metadata);
        *cached = Some(Cached {
            value: value.clone(),
            fetched: Instant::now(),
        });
        Ok(value)
    }

    /// The provider's keys; fetched again when a token names a key not among them (the
    /// provider rotated), at most every [`KEYS_REFETCH_EVERY`].
    async fn keys(&self, kid: Option<&str>) -> Result<Arc<id_token::KeySet>, OauthError> {
        let metadata = self.metadata().await?;
        let mut cached = self.keys.lock().await;
        if let Some(entry) = cached.as_ref() {
            let fresh = entry.fetched.elapsed() < METADATA_TTL;
            let knows = entry.value.has_key(kid);
            if fresh && (knows || entry.fetched.elapsed() < KEYS_REFETCH_EVERY) {
                return Ok(entry.value.clone());
            }
        }
        let keys: id_token::KeySet = self.get_json(&metadata.jwks_uri).await?;
        let value = Arc::new(keys);
        *cached = Some(Cached {
            value: value.clone(),
            fetched: Instant::now(),
        });
        Ok(value)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OauthError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| OauthError::Unreachable(error.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(OauthError::Protocol(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let body = read_limited(response).await?;
        serde_json::from_slice(&body)
            .map_err(|error| OauthError::Protocol(format!("{url}: {error}")))
    }
}

/// How the token endpoint wants the client authenticated: HTTP Basic unless the provider
/// supports only the form post (Basic is the default of OpenID Connect Discovery).
fn auth_type(metadata: &Metadata) -> AuthType {
    match &metadata.token_endpoint_auth_methods_supported {
        Some(methods)
            if !methods.iter().any(|m| m == "client_secret_basic")
                && methods.iter().any(|m| m == "client_secret_post") =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    }
}

/// RFC 6749 §2.3.1: the client id and secret are form-encoded before Basic encoding.
fn form_encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, OauthError> {
    http::read_limited(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|error| match error {
            http::ReadError::Transport(error) => OauthError::Unreachable(error),
            http::ReadError::TooLarge => OauthError::Protocol(error.to_string()),
        })
}

fn token_set<E: std::error::Error>(
    answer: Result<Tokens, RequestTokenError<E, BasicErrorResponse>>,
) -> Result<TokenSet, OauthError> {
    let tokens = answer.map_err(|error| match error {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidGrant => OauthError::InvalidGrant,
            other => OauthError::Refused(other.to_string()),
        },
        RequestTokenError::Request(error) => OauthError::Unreachable(error.to_string()),
        RequestTokenError::Parse(error, _) => OauthError::Protocol(error.to_string()),
        RequestTokenError::Other(error) => OauthError::Protocol(error),
    })?;
    Ok(TokenSet {
        access_token: SecretString::from(tokens.access_token().secret().clone()),
        refresh_token: tokens
            .refresh_token()
            .map(|token| SecretString::from(token.secret().clone())),
        expires_in: tokens.expires_in(),
        id_token: tokens.extra_fields().id_token.clone(),
        scopes: tokens
            .scopes()
            .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_https_or_loopback_http_providers() {
        for good in [
            "https://accounts.google.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
            "http://localhost:3000",
        ] {
            assert!(allowed_url(&Url::parse(good).unwrap()), "{good}");
        }
        for bad in [
            "http://accounts.google.com",
            "http://10.0.0.1",
            "ftp://x",
            "file:///etc/passwd",
        ] {
            assert!(!allowed_url(&Url::parse(bad).unwrap()), "{bad}");
        }
    }
}
