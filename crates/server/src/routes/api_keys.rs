//! `/v1/api-keys` (docs/security.md#api-key-format, #api-key-scopes): create (the key shown once), list (no secrets), revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::api_keys::{Scope, Scopes};
use mailroom_core::audit::{Action, AuditEvent};
use mailroom_crypto::api_key;
use mailroom_storage::api_keys::NewApiKey;
use mailroom_storage::teams::Change;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::extract::caller::Caller;
use crate::extract::principal::insufficient_scope;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

/// A key's name, in characters.
const MAX_NAME: usize = 100;

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
    let request = KeySpec {
        name: &body.name,
        scopes: &body.scopes,
        expires_at: body.expires_at.as_deref(),
        requests_per_minute: body.requests_per_minute,
        requests_per_day: body.requests_per_day,
    };
    let (key, raw) = create_of(&state, &trail, principal, &request).await?;
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

/// What a new key is to be.
pub(crate) struct KeySpec<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<&'a str>,
    pub requests_per_minute: Option<u32>,
    pub requests_per_day: Option<u32>,
}

/// Creates a key; returns what is stored of it and the raw key, for its one showing.
pub(crate) async fn create_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: Principal,
    spec: &KeySpec<'_>,
) -> Result<(NewApiKey, SecretString), ApiError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    let org_id = user.org_id;
    let manager = user.org_role.manages();
    if !manager && !state.database.members_create_keys(user.org_id).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            "Only the organization's owner or an admin may create API keys here.",
        ));
    }
    let invalid = |field: &str, detail: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", detail).with_field(field)
    };
    let name = spec.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    let scopes = Scopes::parse(spec.scopes.iter().map(String::as_str)).map_err(|unknown| {
        let known: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
        invalid(
            "scopes",
            format!(
                "unknown or missing scope {unknown:?}; known: {}",
                known.join(", ")
            ),
        )
    })?;
    // Managing keys and reading the audit log are a manager's powers to hand out.
    if !manager && (scopes.contains(Scope::KeysManage) || scopes.contains(Scope::AuditRead)) {
        return Err(insufficient_scope(
            "Only owners and admins may create keys that manage keys or read the audit log.",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let expires_at = spec
        .expires_at
        .map(|text| OffsetDateTime::parse(text, &Rfc3339))
        .transpose()
        .map_err(|_| invalid("expires_at", "expires_at must be an RFC 3339 time".into()))?;
    if expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(invalid(
            "expires_at",
            "expires_at must be in the future".into(),
        ));
    }
    // A key may be held to less than its plan allows, never to more.
    let plan = state.database.plan_of(org_id).await?;
    let within = |limit: Option<u32>, plan_limit: i32, field: &str| match limit {
        Some(0) => Err(invalid(field, format!("{field} must be at least 1"))),
        Some(limit) if i64::from(limit) > i64::from(plan_limit) => Err(invalid(
            field,
            format!("{field} may be at most the plan's {plan_limit}"),
        )),
        _ => Ok(()),
    };
    within(
        spec.requests_per_minute,
        plan.key_requests_per_minute,
        "requests_per_minute",
    )?;
    within(
        spec.requests_per_day,
        plan.key_requests_per_day,
        "requests_per_day",
    )?;
    let generated = api_key::generate();
    let key = NewApiKey {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        lookup_id: generated.id.clone(),
        key_hash: generated.hash.to_vec(),
        scopes,
        created_by: user.id,
        expires_at,
        requests_per_minute: spec.requests_per_minute,
        requests_per_day: spec.requests_per_day,
    };
    let event = AuditEvent {
        target: Some(format!("api key {} ({})", key.id, key.scopes.to_stored())),
        ..Caller::Account(principal).event(trail, Action::ApiKeyCreated)
    };
    state
        .database
        .create_api_key(org_id, &key, &event, now)
        .await?;
    Ok((key, generated.key))
}

/// `GET /v1/api-keys`: the organization's keys that have not expired, without secrets;
/// revoked ones say when and why (`revoked_reason`).
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::KeysManage, true)?;
    let keys = state
        .database
        .api_keys(caller.org_id(), OffsetDateTime::now_utc())
        .await?;
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
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    revoke_of(&state, &trail, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_of(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    id: Uuid,
) -> Result<(), ApiError> {
    caller.require(Scope::KeysManage, true)?;
    let event = AuditEvent {
        target: Some(format!("api key {id}")),
        ..caller.event(trail, Action::ApiKeyRevoked)
    };
    let change = state
        .database
        .revoke_api_key(caller.org_id(), id, &event, OffsetDateTime::now_utc())
        .await?;
    match change {
        Change::Done => Ok(()),
        _ => Err(ApiError::not_found()),
    }
}
