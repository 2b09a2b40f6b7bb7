//! `/v1/api-keys` (docs/security.md#api-key-format, #api-key-scopes): create (the key shown once), list (no secrets), revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::ApiKeyId;
use mailroom_core::api_keys::Scope;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::actor::Caller;
use crate::application::keys;
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    name: String,
    scopes: Vec<String>,
    /// RFC 3339; absent: the key does not expire.
    expires_at: Option<String>,
    /// Limits of this key's own, at most the plan's; absent: the plan's.
    requests_per_minute: Option<u32>,
    requests_per_day: Option<u32>,
}

/// `POST /v1/api-keys` (recent sign-in; owners and admins, or members where the organization
/// allows): the raw key is in this answer and nowhere else, ever.
pub async fn create(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    ApiJson(body): ApiJson<KeyRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = keys::KeySpec {
        name: &body.name,
        scopes: &body.scopes,
        expires_at: body.expires_at.as_deref(),
        requests_per_minute: body.requests_per_minute,
        requests_per_day: body.requests_per_day,
    };
    let (key, raw) = keys::create_of(&state, &trail, principal, &request).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": key.id,
            "key": raw.expose_secret(),
            "prefix": format!("mr_live_{}", key.lookup_id),
            "name": key.name,
            "scopes": key.scopes.names().collect::<Vec<_>>(),
            "created_at": when(OffsetDateTime::now_utc()),
            "expires_at": key.expires_at.map(when),
        })),
    ))
}

/// `GET /v1/api-keys`: the organization's keys that have not expired, without secrets;
/// revoked ones say when and why (`revoked_reason`).
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::KeysManage, true)?;
    let keys = keys::list(&state, caller.org_id()).await?;
    Ok(Json(Value::Array(
        keys.iter()
            .map(|key| {
                json!({
                    "id": key.id,
                    "name": key.name,
                    "prefix": format!("mr_live_{}", key.lookup_id),
                    "scopes": key.scopes.names().collect::<Vec<_>>(),
                    "created_by": key.created_by,
                    "created_at": when(key.created_at),
                    "expires_at": key.expires_at.map(when),
                    "last_used_at": key.last_used_at.map(when),
                    "last_used_ip": key.last_used_ip,
                    "revoked_at": key.revoked_at.map(when),
                    "revoked_reason": key.revocation.map(|reason| reason.as_str()),
                })
            })
            .collect(),
    )))
}

/// `DELETE /v1/api-keys/{id}`: the key stops working with the next request, on every node.
pub async fn revoke(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    Path(id): Path<ApiKeyId>,
) -> Result<StatusCode, ApiError> {
    keys::revoke_of(&state, &trail, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
