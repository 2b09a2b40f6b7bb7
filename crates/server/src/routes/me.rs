//! The signed-in user's own account: password, sessions (docs/security.md#new-device-alert, #recent-auth) and audit log
//! (docs/security.md#audit-access).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_storage::audit::AuditEntry;
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::application::actor::Caller;
use crate::application::{accounts, org};
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::listing::{Format, defuse, next_cursor};
use crate::problem::ApiError;
use crate::state::AppState;
use mailroom_core::SessionId;
use secrecy::SecretString;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: SecretString,
    new_password: SecretString,
}

/// `POST /v1/me/password`: needs a recent sign-in and the current password; ends every other
/// session.
pub async fn change_password(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    crate::json::ApiJson(body): crate::json::ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    accounts::change_password_of(
        &state,
        &trail,
        &principal,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/me/sessions`: the caller's live sessions.
pub async fn sessions(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let sessions = accounts::sessions(&state, &principal).await?;
    Ok(Json(Value::Array(
        sessions
            .iter()
            .map(|session| {
                json!({
                    "id": session.id,
                    "current": Some(session.id) == principal.session_id(),
                    "ip": session.ip,
                    "user_agent": session.user_agent,
                    "created_at": session.created_at.format(&Rfc3339).unwrap_or_default(),
                    "last_seen_at": session.last_seen_at.format(&Rfc3339).unwrap_or_default(),
                })
            })
            .collect(),
    )))
}

/// `DELETE /v1/me/sessions/{id}`: ends one of the caller's sessions. Another user's session
/// id is as unknown as a made-up one (404).
pub async fn revoke_session(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<SessionId>,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_one(&state, &trail, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/me/sessions`: ends every session of the caller but this one.
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    accounts::revoke_others(&state, &trail, &principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

const DEFAULT_LIMIT: u16 = 50;
const MAX_LIMIT: u16 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    format: Format,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    limit: Option<u16>,
}

/// The caller's own audit entries, newest first, a page at a time.
pub async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let entries = accounts::activity(&state, &principal, query.cursor, i64::from(limit)).await?;
    audit_page(&entries, limit, query.format)
}

/// `GET /v1/audit-log`: the organization's entries (scope `audit:read` for keys; owners and
/// admins for accounts), newest first, a page at a time.
pub async fn org_audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let entries = org::audit_log(&state, &caller, query.cursor, i64::from(limit)).await?;
    audit_page(&entries, limit, query.format)
}

/// A page of entries as JSON or CSV, with the cursor of the next page when there may be one.
fn audit_page(entries: &[AuditEntry], limit: u16, format: Format) -> Result<Response, ApiError> {
    let next_cursor = next_cursor(entries, usize::from(limit), |entry| entry.id);
    match format {
        Format::Json => Ok(Json(json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "next_cursor": next_cursor,
        }))
        .into_response()),
        Format::Csv => csv(entries, next_cursor),
    }
}

pub(crate) fn entry_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "occurred_at": entry.occurred_at().format(&Rfc3339).unwrap_or_default(),
        "action": entry.action,
        "outcome": entry.outcome,
        "actor_user_id": entry.actor_user_id,
        "api_key_id": entry.api_key_id,
        "target": entry.target,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "session_id": entry.session_id,
        "request_id": entry.request_id,
    })
}

const CSV_COLUMNS: [&str; 11] = [
    "id",
    "occurred_at",
    "action",
    "outcome",
    "actor_user_id",
    "api_key_id",
    "target",
    "ip",
    "user_agent",
    "session_id",
    "request_id",
];

fn csv(entries: &[AuditEntry], next_cursor: Option<Uuid>) -> Result<Response, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(CSV_COLUMNS)
        .map_err(ApiError::internal)?;
    for entry in entries {
        let value = entry_json(entry);
        let record = CSV_COLUMNS.map(|column| match &value[column] {
            Value::String(text) => defuse(text),
            Value::Null => String::new(),
            other => other.to_string(),
        });
        writer.write_record(&record).map_err(ApiError::internal)?;
    }
    let body = writer.into_inner().map_err(ApiError::internal)?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"audit-log.csv\""),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
        response.headers_mut().insert("x-next-cursor", cursor);
    }
    Ok(response)
}

/// `GET /v1/me/identities`: the providers linked to the account.
pub async fn identities(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let linked = crate::application::identities::list(&state, &principal).await?;
    Ok(Json(json!({
        "data": linked.iter().map(identity_json).collect::<Vec<_>>(),
    })))
}

pub(crate) fn identity_json(identity: &mailroom_storage::identities::Identity) -> Value {
    json!({
        "id": identity.id,
        "provider": identity.provider,
        "issuer": identity.issuer,
        "email": identity.email,
        "created_at": identity.created_at.format(&Rfc3339).unwrap_or_default(),
        "last_used_at": identity.last_used_at.format(&Rfc3339).unwrap_or_default(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    provider: String,
}

/// `POST /v1/me/identities` `{provider}`: starts linking a provider; answers the
/// `authorization_url` to send this browser to, and the flow's cookie, which the callback
/// needs along with this user's session.
pub async fn link_identity(
    State(state): State<AppState>,
    principal: Principal,
    crate::json::ApiJson(body): crate::json::ApiJson<LinkRequest>,
) -> Result<Response, ApiError> {
    let started =
        crate::application::identities::start_link(&state, &principal, &body.provider).await?;
    let cookie =
        crate::auth::oauth_flow::cookie(&state.identity_providers.flow_key, &started.flow)?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "authorization_url": started.authorization_url.as_str() })),
    )
        .into_response())
}

/// `DELETE /v1/me/identities/{id}`: unlinks a provider, unless it is the last way in.
pub async fn unlink_identity(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<mailroom_core::IdentityId>,
) -> Result<StatusCode, ApiError> {
    crate::application::identities::unlink(&state, &trail, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
