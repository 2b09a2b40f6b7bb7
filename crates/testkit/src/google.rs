//! A loopback server that follows Google's documented OAuth 2.0 / OpenID Connect contract
//! (https://developers.google.com/identity/openid-connect/openid-connect and
//! https://developers.google.com/identity/protocols/oauth2/web-server: the authorization
//! request, the code and refresh exchanges, revocation, userinfo) and the Gmail API's
//! `users.getProfile` and `users.messages.send`
//! (https://developers.google.com/gmail/api/reference/rest/v1/users/getProfile and
//! .../users.messages/send: their scopes, `userId`, the `raw` base64url message, the error
//! bodies, 429 `rateLimitExceeded`; and its upload URI, `uploadType=media` with the message as
//! `message/rfc822`, at most 35 MB, https://developers.google.com/gmail/api/guides/uploads),
//! for the contract tests: Google's own endpoints cannot be
//! reached from here. It checks every request it receives against that contract
//! (client authentication, grant types, the PKCE S256 verifier, `redirect_uri` equality,
//! scopes) and keeps what it found wrong in [`GoogleContract::violations`], which a test
//! asserts empty. ID tokens are RS256-signed with a fixed test key, published at its JWKS.
//!
//! It can be told to misbehave, the way an attacker or a broken provider would: sign with
//! another key, give another nonce or audience, rate-limit sends, expire access tokens, or
//! have the user remove the app's access.

// Test code: a peer that cannot do its part fails the test loudly.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};

const PROVIDER_KEY: &str = include_str!("../fixtures/oidc-provider-key.pem");
const OTHER_KEY: &str = include_str!("../fixtures/oidc-other-key.pem");
const KEY_ID: &str = "contract-key-1";

/// Who the next authorization signs in.
#[derive(Clone, Debug)]
pub struct ProviderUser {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl ProviderUser {
    pub fn new(subject: &str, email: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: Some("Jane Doe".to_owned()),
        }
    }
}

/// How the next ID token is wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misbehaviour {
    #[default]
    None,
    /// Signed by a key the JWKS does not hold (under the JWKS's key id).
    OtherKey,
    /// Answers another authorization's nonce.
    WrongNonce,
    /// Issued to another client.
    OtherAudience,
}

struct Grant {
    user: ProviderUser,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    scope: String,
    offline: bool,
}

#[derive(Default)]
struct Contract {
    client_id: String,
    client_secret: String,
    redirect_uris: Vec<String>,
    next_user: Option<ProviderUser>,
    misbehaviour: Misbehaviour,
    codes: HashMap<String, Grant>,
    /// Refresh token → what it grants.
    refresh_tokens: HashMap<String, Issued>,
    /// The access tokens issued and not revoked → what they grant.
    access_tokens: HashMap<String, Issued>,
    /// Seconds an access token lives (`expires_in`); Google's is 3599.
    access_token_lifetime: u64,
    /// Scopes the user unticks on the consent screen.
    declined: Vec<String>,
    /// The messages `users.messages.send` took, as their raw RFC 5322 text.
    sent: Vec<String>,
    /// How many of them came through the upload URI.
    uploaded: usize,
    /// Sends to answer 429 `rateLimitExceeded` before the next one goes.
    rate_limited_sends: usize,
    refreshes: usize,
    revoked: Vec<String>,
    violations: Vec<String>,
}

/// What a token grants: whose account, and which scopes.
#[derive(Clone)]
struct Issued {
    user: ProviderUser,
    scope: String,
}

struct Shared {
    base: String,
    contract: Mutex<Contract>,
    key: RsaKeyPair,
    other_key: RsaKeyPair,
}

pub struct GoogleContract {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GoogleContract {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key_pair(pem: &str) -> RsaKeyPair {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).expect("the fixture key is base64");
    RsaKeyPair::from_pkcs8(&der).expect("the fixture key is PKCS#8 RSA")
}

impl GoogleContract {
    /// Starts on a loopback port, with one registered client.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            base,
            contract: Mutex::new(Contract {
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
                access_token_lifetime: 3599,
                ..Contract::default()
            }),
            key: key_pair(PROVIDER_KEY),
            other_key: key_pair(OTHER_KEY),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/o/oauth2/v2/auth", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/oauth2/v3/certs", get(certs))
            .route("/v1/userinfo", get(userinfo))
            .route("/gmail/v1/users/{user}/profile", get(gmail_profile))
            // Gmail takes messages of up to 35 MB (the JSON one base64url-encoded): the
            // server's own bound is not the test's.
            .route(
                "/gmail/v1/users/{user}/messages/send",
                post(gmail_send).layer(axum::extract::DefaultBodyLimit::max(48 << 20)),
            )
            .route(
                "/upload/gmail/v1/users/{user}/messages/send",
                post(gmail_upload).layer(axum::extract::DefaultBodyLimit::max(36 << 20)),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, task }
    }

    /// The issuer (and base URL of every endpoint): `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.shared.base
    }

    fn contract(&self) -> std::sync::MutexGuard<'_, Contract> {
        self.shared.contract.lock().expect("not poisoned")
    }

    /// Registers a redirect URI of the client (Google's console does this).
    pub fn register_redirect_uri(&self, uri: &str) {
        self.contract().redirect_uris.push(uri.to_owned());
    }

    /// The user the next authorization signs in.
    pub fn sign_in_as(&self, user: ProviderUser) {
        self.contract().next_user = Some(user);
    }

    pub fn misbehave(&self, misbehaviour: Misbehaviour) {
        self.contract().misbehaviour = misbehaviour;
    }

    /// Every breach of the contract a request made.
    pub fn violations(&self) -> Vec<String> {
        self.contract().violations.clone()
    }

    /// The tokens revoked at the revocation endpoint.
    pub fn revoked(&self) -> Vec<String> {
        self.contract().revoked.clone()
    }

    /// How long the access tokens issued from now on live, in seconds.
    pub fn set_access_token_lifetime(&self, seconds: u64) {
        self.contract().access_token_lifetime = seconds;
    }

    /// The user unticks these scopes on the consent screen from now on (Google's granular
    /// consent): the token answer's `scope` lists only what they left.
    pub fn decline_scopes(&self, scopes: &[&str]) {
        self.contract().declined = scopes.iter().map(|scope| (*scope).to_owned()).collect();
    }

    /// The refresh tokens issued and still good.
    pub fn refresh_tokens(&self) -> Vec<String> {
        self.contract().refresh_tokens.keys().cloned().collect()
    }

    /// The messages sent through `users.messages.send`, as their raw text.
    pub fn sent(&self) -> Vec<String> {
        self.contract().sent.clone()
    }

    /// The next `count` sends answer 429 `rateLimitExceeded`, as Gmail does to a user over
    /// their rate.
    /// How many of the sent messages came through the upload URI.
    pub fn uploaded(&self) -> usize {
        self.contract().uploaded
    }

    pub fn rate_limit_sends(&self, count: usize) {
        self.contract().rate_limited_sends = count;
    }

    /// Every access token issued so far stops working (they expired); refresh tokens still do.
    pub fn expire_access_tokens(&self) {
        self.contract().access_tokens.clear();
    }

    /// How many refresh-token grants were answered.
    pub fn refreshes(&self) -> usize {
        self.contract().refreshes
    }

    /// What a user does at myaccount.google.com when they remove the app's access: every
    /// token of theirs stops working, and a refresh earns `invalid_grant`.
    pub fn remove_access_of(&self, subject: &str) {
        let mut contract = self.contract();
        contract
            .refresh_tokens
            .retain(|_, issued| issued.user.subject != subject);
        contract
            .access_tokens
            .retain(|_, issued| issued.user.subject != subject);
    }
}

fn violation(shared: &Shared, what: String) -> Response {
    shared
        .contract
        .lock()
        .expect("not poisoned")
        .violations
        .push(what.clone());
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &what)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let base = &shared.base;
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/o/oauth2/v2/auth"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/v1/userinfo"),
        "revocation_endpoint": format!("{base}/revoke"),
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss", "name", "picture", "sub"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
    }))
    .into_response()
}

const KNOWN_SCOPES: [&str; 5] = [
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.readonly",
];

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    let mut contract = shared.contract.lock().expect("not poisoned");
    let mut wrong = Vec::new();
    if param("response_type") != "code" {
        wrong.push(format!("response_type {:?}", param("response_type")));
    }
    if param("client_id") != contract.client_id {
        wrong.push("unknown client_id".to_owned());
    }
    let redirect_uri = param("redirect_uri");
    if !contract.redirect_uris.contains(&redirect_uri) {
        wrong.push(format!("redirect_uri {redirect_uri:?} is not registered"));
    }
    let scope = param("scope");
    let scopes: Vec<&str> = scope.split(' ').collect();
    if !scopes.contains(&"openid") || scopes.iter().any(|s| !KNOWN_SCOPES.contains(s)) {
        wrong.push(format!("scope {scope:?}"));
    }
    for required in ["state", "nonce", "code_challenge"] {
        if param(required).is_empty() {
            wrong.push(format!("no {required}"));
        }
    }
    if param("code_challenge_method") != "S256" {
        wrong.push("code_challenge_method is not S256".to_owned());
    }
    let offline = param("access_type") == "offline";
    if offline && param("prompt") != "consent" {
        wrong.push("access_type=offline without prompt=consent gets no refresh token".to_owned());
    }
    if !wrong.is_empty() {
        let what = format!("authorize: {}", wrong.join("; "));
        contract.violations.push(what.clone());
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &what);
    }
    let Some(user) = contract.next_user.clone() else {
        return (
            StatusCode::FORBIDDEN,
            "no user is signed in at the provider",
        )
            .into_response();
    };
    let granted: Vec<&str> = scopes
        .iter()
        .copied()
        .filter(|scope| !contract.declined.iter().any(|declined| declined == scope))
        .collect();
    let granted = granted.join(" ");
    let code = random();
    contract.codes.insert(
        code.clone(),
        Grant {
            user,
            client_id: param("client_id"),
            redirect_uri: redirect_uri.clone(),
            challenge: param("code_challenge"),
            nonce: param("nonce"),
            scope: granted.clone(),
            offline,
        },
    );
    let mut location = url::Url::parse(&redirect_uri).expect("a registered URI parses");
    location
        .query_pairs_mut()
        .append_pair("state", &param("state"))
        .append_pair("code", &code)
        .append_pair("scope", &granted);
    Redirect::to(location.as_str()).into_response()
}

/// The client's credentials from HTTP Basic (form-encoded, RFC 6749 §2.3.1) or the body,
/// never both: what is wrong with them, if anything.
fn client_authentication_wrong(
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<&'static str> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|value| STANDARD.decode(value).ok())
        .and_then(|value| String::from_utf8(value).ok())
        .and_then(|value| {
            let (id, secret) = value.split_once(':')?;
            let decode = |part: &str| {
                url::form_urlencoded::parse(format!("x={part}").as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    let posted = form
        .get("client_id")
        .zip(form.get("client_secret"))
        .map(|(id, secret)| (id.clone(), secret.clone()));
    let (id, secret) = match (basic, posted) {
        (Some(basic), None) => basic,
        (None, Some(posted)) => posted,
        (Some(_), Some(_)) => return Some("token: client authenticated twice"),
        (None, None) => return Some("token: no client authentication"),
    };
    let contract = shared.contract.lock().expect("not poisoned");
    (id != contract.client_id || secret != contract.client_secret)
        .then_some("token: wrong client credentials")
}

async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return violation(&shared, "token: not a form post".into());
    }
    if let Some(wrong) = client_authentication_wrong(&shared, &headers, &form) {
        return violation(&shared, wrong.to_owned());
    }
    let param = |name: &str| form.get(name).cloned().unwrap_or_default();
    match param("grant_type").as_str() {
        "authorization_code" => {
            let grant = shared
                .contract
                .lock()
                .expect("not poisoned")
                .codes
                .remove(&param("code"));
            let Some(grant) = grant else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            };
            if param("redirect_uri") != grant.redirect_uri {
                return violation(
                    &shared,
                    "token: redirect_uri differs from the authorization's".into(),
                );
            }
            let verifier = param("code_verifier");
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if verifier.len() < 43 || challenge != grant.challenge {
                return violation(&shared, "token: the PKCE verifier does not match".into());
            }
            let access_token = random();
            let issued = Issued {
                user: grant.user.clone(),
                scope: grant.scope.clone(),
            };
            let mut contract = shared.contract.lock().expect("not poisoned");
            contract
                .access_tokens
                .insert(access_token.clone(), issued.clone());
            let mut answer = json!({
                "access_token": access_token,
                "expires_in": contract.access_token_lifetime,
                "token_type": "Bearer",
                "scope": grant.scope,
            });
            if grant.offline {
                let refresh_token = format!("1//{}", random());
                contract
                    .refresh_tokens
                    .insert(refresh_token.clone(), issued);
                answer["refresh_token"] = json!(refresh_token);
            }
            let misbehaviour = contract.misbehaviour;
            drop(contract);
            answer["id_token"] = json!(id_token(&shared, &grant, misbehaviour));
            axum::Json(answer).into_response()
        }
        "refresh_token" => {
            let mut contract = shared.contract.lock().expect("not poisoned");
            let Some(issued) = contract
                .refresh_tokens
                .get(&param("refresh_token"))
                .cloned()
            else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Token has been expired or revoked.",
                );
            };
            let access_token = random();
            contract.refreshes += 1;
            let answer = json!({
                "access_token": access_token,
                "expires_in": contract.access_token_lifetime,
                "token_type": "Bearer",
                "scope": issued.scope,
            });
            contract.access_tokens.insert(access_token, issued);
            axum::Json(answer).into_response()
        }
        other => violation(&shared, format!("token: grant_type {other:?}")),
    }
}

fn id_token(shared: &Shared, grant: &Grant, misbehaviour: Misbehaviour) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let audience = match misbehaviour {
        Misbehaviour::OtherAudience => "another-client.apps.googleusercontent.com".to_owned(),
        _ => grant.client_id.clone(),
    };
    let nonce = match misbehaviour {
        Misbehaviour::WrongNonce => "a-nonce-of-another-flow".to_owned(),
        _ => grant.nonce.clone(),
    };
    let mut claims = json!({
        "iss": shared.base,
        "azp": audience,
        "aud": audience,
        "sub": grant.user.subject,
        "email": grant.user.email,
        "email_verified": grant.user.email_verified,
        "iat": now,
        "exp": now + 3600,
        "nonce": nonce,
    });
    if let Some(name) = &grant.user.name {
        claims["name"] = json!(name);
        claims["picture"] = json!("https://lh3.googleusercontent.com/a/contract-test");
    }
    let header = json!({"alg": "RS256", "kid": KEY_ID, "typ": "JWT"});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = match misbehaviour {
        Misbehaviour::OtherKey => &shared.other_key,
        _ => &shared.key,
    };
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .expect("signs");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

async fn revoke(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(token) = form.get("token").cloned() else {
        return violation(&shared, "revoke: no token".into());
    };
    let mut contract = shared.contract.lock().expect("not poisoned");
    let known = contract.refresh_tokens.remove(&token).is_some()
        || contract.access_tokens.remove(&token).is_some();
    if !known {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        );
    }
    contract.revoked.push(token);
    StatusCode::OK.into_response()
}

/// Google's API error body.
fn api_error(status: StatusCode, message: &str, state: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": status.as_u16(), "message": message, "status": state}}),
        ),
    )
        .into_response()
}

/// What the request's bearer token grants, or the answer that refuses it.
fn bearer(shared: &Shared, headers: &HeaderMap, api: &str) -> Result<Issued, Box<Response>> {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return Err(Box::new(violation(
            shared,
            format!("{api}: no bearer token"),
        )));
    };
    let contract = shared.contract.lock().expect("not poisoned");
    contract.access_tokens.get(token).cloned().ok_or_else(|| {
        Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
            "UNAUTHENTICATED",
        ))
    })
}

async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let issued = match bearer(&shared, &headers, "userinfo") {
        Ok(issued) => issued,
        Err(refused) => return *refused,
    };
    axum::Json(json!({
        "sub": issued.user.subject,
        "email": issued.user.email,
        "email_verified": issued.user.email_verified,
        "name": issued.user.name,
    }))
    .into_response()
}

/// What a Gmail API call's bearer token grants, checked as Gmail does: the token is good,
/// `userId` is `me` or the token's own address (no delegation), and it holds one of `scopes`,
/// the call's documented list.
fn gmail_caller(
    shared: &Shared,
    headers: &HeaderMap,
    user: &str,
    api: &str,
    scopes: &[&str],
) -> Result<Issued, Box<Response>> {
    let issued = bearer(shared, headers, api)?;
    if user != "me" && user != issued.user.email {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "Delegation denied",
            "PERMISSION_DENIED",
        )));
    }
    if !issued.scope.split(' ').any(|scope| scopes.contains(&scope)) {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "Request had insufficient authentication scopes.",
            "PERMISSION_DENIED",
        )));
    }
    Ok(issued)
}

/// The scopes that may read a profile (users.getProfile's documented list); `gmail.send`
/// is not among them.
const PROFILE_SCOPES: [&str; 5] = [
    "https://mail.google.com/",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/gmail.metadata",
];

async fn gmail_profile(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let issued = match gmail_caller(&shared, &headers, &user, "gmail profile", &PROFILE_SCOPES) {
        Ok(issued) => issued,
        Err(refused) => return *refused,
    };
    axum::Json(json!({
        "emailAddress": issued.user.email,
        "messagesTotal": 42,
        "threadsTotal": 17,
        "historyId": "1234",
    }))
    .into_response()
}

/// The scopes that may send (users.messages.send's documented list).
const SEND_SCOPES: [&str; 4] = [
    "https://mail.google.com/",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.send",
];

async fn gmail_send(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = gmail_caller(&shared, &headers, &user, "gmail send", &SEND_SCOPES) {
        return *refused;
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json {
        return violation(&shared, "gmail send: the body is not JSON".into());
    }
    let Some(raw) = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body["raw"].as_str().map(str::to_owned))
    else {
        return violation(&shared, "gmail send: no raw".into());
    };
    // `raw` is base64url (RFC 4648 §5); Google takes it padded or not.
    let Ok(decoded) = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')) else {
        return violation(&shared, "gmail send: raw is not base64url".into());
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return violation(&shared, "gmail send: raw is not a message".into());
    };
    take_message(&shared, text, false)
}

/// `users.messages.send` through the upload URI: `uploadType=media`, the message itself as
/// `message/rfc822`, at most 35 MB.
async fn gmail_upload(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = gmail_caller(&shared, &headers, &user, "gmail upload", &SEND_SCOPES) {
        return *refused;
    }
    if query.get("uploadType").map(String::as_str) != Some("media") {
        return violation(&shared, "gmail upload: uploadType is not media".into());
    }
    let rfc822 = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("message/rfc822"));
    if !rfc822 {
        return violation(
            &shared,
            "gmail upload: the body is not message/rfc822".into(),
        );
    }
    if body.len() > 35 * 1024 * 1024 {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request payload size exceeds the limit",
            "INVALID_ARGUMENT",
        );
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return violation(&shared, "gmail upload: the body is not a message".into());
    };
    take_message(&shared, text, true)
}

/// A message `users.messages.send` was given, either way: refused without a recipient,
/// rate-limited when told to be, or sent.
fn take_message(shared: &Shared, text: String, uploaded: bool) -> Response {
    let has_recipient = text
        .lines()
        .take_while(|line| !line.is_empty())
        .any(|line| {
            ["to:", "cc:", "bcc:"]
                .iter()
                .any(|name| line.to_ascii_lowercase().starts_with(name))
        });
    if !has_recipient {
        return api_error(
            StatusCode::BAD_REQUEST,
            "Recipient address required",
            "INVALID_ARGUMENT",
        );
    }
    let mut contract = shared.contract.lock().expect("not poisoned");
    if contract.rate_limited_sends > 0 {
        contract.rate_limited_sends -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {
                "code": 429,
                "message": "User-rate limit exceeded.  Retry after 2026-12-07T23:59:59.000Z",
                "errors": [{"message": "User-rate limit exceeded.", "domain": "usageLimits", "reason": "rateLimitExceeded"}],
                "status": "RESOURCE_EXHAUSTED",
            }})),
        )
            .into_response();
    }
    contract.sent.push(text);
    contract.uploaded += usize::from(uploaded);
    let id = format!("{:016x}", contract.sent.len() as u64 + 0x18c0_0000_0000);
    axum::Json(json!({"id": id, "threadId": id, "labelIds": ["SENT"]})).into_response()
}

async fn certs(State(shared): State<Arc<Shared>>) -> Response {
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(shared.key.public());
    axum::Json(json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KEY_ID,
        "n": URL_SAFE_NO_PAD.encode(&public.n),
        "e": URL_SAFE_NO_PAD.encode(&public.e),
    }]}))
    .into_response()
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}
