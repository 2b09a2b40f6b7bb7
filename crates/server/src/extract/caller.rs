//! Who calls a route that API keys may use (docs/security.md#api-key-format, #api-key-scopes): a signed-in account, or a key
//! acting for its organization with exactly its scopes. Either way the caller carries its
//! tenant, and every tenant query takes it.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::request::Parts;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_crypto::api_key;
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::application::actor::{Caller, KeyCaller, Principal};
use crate::audit::{self};
use crate::edge::context::RequestContext;
use crate::extract::principal::bearer_token;
use crate::problem::ApiError;
use crate::state::AppState;

/// On the routes API keys may call, the key was authenticated (and limited) by the layer in
/// front of them ([`crate::limits::keys`]); elsewhere a key is refused.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(key) = parts.extensions.get::<KeyCaller>() {
            return Ok(Caller::Key(key.clone()));
        }
        Principal::from_request_parts(parts, state)
            .await
            .map(Caller::Account)
    }
}

/// The API key a request presents, checked; `None` when it presents none.
pub async fn authenticate_request_key(
    state: &AppState,
    headers: &HeaderMap,
    context: Option<&RequestContext>,
) -> Result<Option<KeyCaller>, ApiError> {
    let Some(presented) = bearer_token(headers).filter(|bearer| api_key::looks_like_key(bearer))
    else {
        return Ok(None);
    };
    let presented = SecretString::from(presented);
    let ip = context
        .map(|context| context.client_ip.to_string())
        .unwrap_or_default();
    authenticate_key(state, headers, context, &presented, &ip)
        .await
        .map(Some)
}

/// Checks a presented key: its shape, its row, its hash (constant time), revocation and
/// expiry. A revoked key's use is audited: it may be a leaked one.
async fn authenticate_key(
    state: &AppState,
    headers: &HeaderMap,
    context: Option<&RequestContext>,
    presented: &SecretString,
    ip: &str,
) -> Result<KeyCaller, ApiError> {
    use secrecy::ExposeSecret;
    let lookup_id = api_key::lookup_id(presented.expose_secret()).ok_or_else(invalid_api_key)?;
    let stored = state
        .database
        .api_keys()
        .api_key_by_lookup_id(lookup_id)
        .await?
        .filter(|stored| api_key::matches(presented, &stored.key_hash))
        .ok_or_else(invalid_api_key)?;
    let now = OffsetDateTime::now_utc();
    if stored.revoked {
        let trail = crate::edge::context::audit_trail(context, headers);
        audit::record(
            &state.database,
            AuditEvent {
                org_id: Some(stored.org_id),
                api_key_id: Some(stored.id),
                ..trail.event(Action::ApiKeyUsedAfterRevocation, Outcome::Failure)
            },
        )
        .await?;
        return Err(invalid_api_key());
    }
    if stored
        .expires_at
        .is_some_and(|expires_at| expires_at <= now)
    {
        return Err(invalid_api_key());
    }
    if state.key_uses.due(stored.id, ip) {
        state
            .database
            .api_keys()
            .touch_api_key(stored.org_id, stored.id, ip, now)
            .await?;
    }
    Ok(KeyCaller {
        key_id: stored.id,
        org_id: stored.org_id,
        scopes: stored.scopes,
        requests_per_minute: stored.requests_per_minute,
        requests_per_day: stored.requests_per_day,
    })
}

fn invalid_api_key() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "The API key is unknown, revoked or expired.",
    )
}
