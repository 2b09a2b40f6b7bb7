//! The authenticated caller, extracted once per request from the session cookie or an
//! `Authorization: Bearer` access token. Handlers that take a [`Principal`] run only for a
//! live session or token family; its `user` carries the tenant (`org_id`) that every tenant
//! query is scoped by.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use mailroom_core::accounts::SESSION_TTL;
use time::{Duration, OffsetDateTime};

use crate::application::actor::{Credential, Principal};
use crate::auth::session;
use crate::error::{DomainError, Forbidden};
use crate::problem::ApiError;
use crate::state::AppState;

/// Rolling expiry is written at most this often per session, not on every request.
const TOUCH_INTERVAL: Duration = Duration::minutes(1);

/// Every route but a few refuses a user who owes the second-factor setup that docs/security.md#mfa-required
/// demands of them (403 `mfa_setup_required`).
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Self::authenticate(parts, state).await?;
        if principal.owes_second_factor_setup() {
            return Err(DomainError::Forbidden(Forbidden::MfaSetupRequired).into());
        }
        Ok(principal)
    }
}

/// A principal who is a platform super-admin; anyone else is refused (403).
pub struct SuperAdmin(pub Principal);

impl FromRequestParts<AppState> for SuperAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.is_super_admin() {
            return Err(DomainError::Forbidden(Forbidden::SuperAdminOnly).into());
        }
        Ok(Self(principal))
    }
}

/// A principal who may still owe the second-factor setup: for the few routes that let them
/// do it, see who they are, and sign out.
pub struct SetupPrincipal(pub Principal);

impl FromRequestParts<AppState> for SetupPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Principal::authenticate(parts, state)
            .await
            .map(SetupPrincipal)
    }
}

/// The signed-in account, if the request has one: for a flow's callback, which a signed-in
/// user (linking a provider) and a visitor (signing in) both reach.
pub struct MaybeSignedIn(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(Self(Principal::authenticate(parts, state).await.ok()))
    }
}

/// The account a layer in front already authenticated, for the extractors to take as it is.
#[derive(Clone)]
struct Authenticated(Principal);

impl Principal {
    /// Authenticates the request's account in a layer, and keeps it for the handler's
    /// extractor; `None` when the request names none that is live (the extractor then
    /// answers with the reason).
    pub(crate) async fn authenticated(parts: &mut Parts, state: &AppState) -> Option<Principal> {
        let principal = Self::authenticate(parts, state).await.ok()?;
        parts.extensions.insert(Authenticated(principal.clone()));
        Some(principal)
    }

    /// The caller, from whichever credential the request carries; a disabled account's
    /// credentials are worth nothing.
    async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Authenticated(principal)) = parts.extensions.get::<Authenticated>() {
            return Ok(principal.clone());
        }
        let principal = Self::from_credentials(parts, state).await?;
        if principal.user.disabled {
            return Err(unauthenticated());
        }
        Ok(principal)
    }

    async fn from_credentials(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(bearer) = bearer_token(&parts.headers) {
            if mailroom_crypto::api_key::looks_like_key(bearer) {
                return Err(insufficient_scope(
                    "This route is for accounts, not API keys.",
                ));
            }
            return from_access_token(bearer, state).await;
        }
        let token = session::token_from(&parts.headers).ok_or_else(unauthenticated)?;
        // A browser attaches the cookie to cross-site requests too (docs/security.md#csrf).
        if !parts.method.is_safe() {
            require_same_origin(&parts.headers, &state.public_origin)?;
        }
        let now = OffsetDateTime::now_utc();
        let owner = state
            .database
            .accounts()
            .session_owner(&session::token_hash(token), now)
            .await
            .map_err(ApiError::internal)?;
        if let Some(check) = parts.extensions.get::<session::SessionCheck>() {
            check.record(owner.is_some());
        }
        let owner = owner.ok_or_else(unauthenticated)?;
        if now - owner.last_seen_at > TOUCH_INTERVAL {
            state
                .database
                .accounts()
                .touch_session(owner.user.id, owner.session_id, now, now + SESSION_TTL)
                .await
                .map_err(ApiError::internal)?;
        }
        Ok(Self {
            user: owner.user,
            credential: Credential::Session(owner.session_id),
            authenticated_at: owner.created_at,
        })
    }
}

/// A bearer request is not cookie-authenticated: a browser never attaches it on its own, so
/// no CSRF check applies (docs/security.md#csrf). Its family must still be live.
async fn from_access_token(token: &str, state: &AppState) -> Result<Principal, ApiError> {
    let claims = state.tokens.verify(token).ok_or_else(unauthenticated)?;
    let now = OffsetDateTime::now_utc();
    let live = state
        .database
        .tokens()
        .token_family_live(claims.sub, claims.sid, now)
        .await
        .map_err(ApiError::internal)?;
    if !live {
        return Err(unauthenticated());
    }
    let user = state
        .database
        .accounts()
        .user_by_id(claims.sub)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(unauthenticated)?;
    Ok(Principal {
        user,
        credential: Credential::AccessToken { family: claims.sid },
        authenticated_at: OffsetDateTime::from_unix_timestamp(claims.auth_time)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Sign in first: this needs a session.",
    )
}

/// A cookie-authenticated request that changes state must show that it comes from our own
/// pages: its `Origin` is ours, or the browser says `Sec-Fetch-Site: same-origin`.
fn require_same_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let same_origin =
        header("origin") == Some(public_origin) || header("sec-fetch-site") == Some("same-origin");
    if same_origin {
        Ok(())
    } else {
        Err(csrf_failed())
    }
}

pub fn csrf_failed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "This request did not come from mailroom's own pages.",
    )
}

/// What every route a browser uses gets, in one layer (each layer costs on every request):
///
/// - a request that changes state and that the browser marks as coming from another site is
///   refused, signed in or not: no cross-site form may sign a visitor in to an attacker's
///   account (login CSRF), start sign-ups or resets in their name, or act in their session.
///   Programs, which send neither header, are unaffected (docs/security.md#csrf);
/// - the session cookie's rolling expiry is renewed, and a cookie that names no session is
///   cleared ([`session::SessionCheck`]).
pub async fn guard_browser_requests(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !request.method().is_safe() {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let foreign_origin = header("origin").is_some_and(|origin| origin != state.public_origin);
        let foreign_site = matches!(header("sec-fetch-site"), Some("cross-site" | "same-site"));
        if foreign_origin || foreign_site {
            return csrf_failed().into_response();
        }
    }
    let token = session::token_from(request.headers()).map(str::to_owned);
    let check = session::SessionCheck::default();
    request.extensions_mut().insert(check.clone());
    let mut response = next.run(request).await;
    check.apply(token, &mut response);
    response
}

/// 403 for a caller whose key lacks what the route needs.
pub fn insufficient_scope(detail: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", detail)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const ORIGIN: &str = "https://mail.example.test";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn same_origin_evidence_is_required() {
        assert!(require_same_origin(&headers(&[("origin", ORIGIN)]), ORIGIN).is_ok());
        assert!(
            require_same_origin(&headers(&[("sec-fetch-site", "same-origin")]), ORIGIN).is_ok()
        );
        for refused in [
            headers(&[]),
            headers(&[("origin", "https://evil.test")]),
            headers(&[("origin", "null")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ] {
            let error = require_same_origin(&refused, ORIGIN).unwrap_err();
            assert_eq!(error.code(), "csrf_failed");
        }
    }
}
