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

use crate::audit::{self, AuditTrail};
use crate::error::DomainError;
use crate::extract::Principal;
use crate::extract::caller::Caller;
use crate::problem::ApiError;
use crate::routes::auth::{check_password, check_password_policy};
use crate::routes::listing::{Format, defuse, next_cursor};
use crate::state::AppState;
use mailroom_core::api_keys::Scope;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{EmailAddress, SessionId};
use secrecy::SecretString;
use time::OffsetDateTime;

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
    change_password_of(
        &state,
        &trail,
        &principal,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn change_password_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    current_password: &SecretString,
    new_password: &SecretString,
) -> Result<(), ApiError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    // Through the lockout gate: a stolen session is no password oracle.
    check_password(state, trail, user, current_password)
        .await
        .map_err(|error| match error {
            DomainError::InvalidCredentials => DomainError::WrongCurrentPassword,
            error => error,
        })?;
    let email = EmailAddress::parse(&user.email).map_err(ApiError::internal)?;
    check_password_policy(new_password, &email, user.password_rules)?;
    let hash = state.passwords.hash(new_password).await?;
    let now = OffsetDateTime::now_utc();
    state
        .database
        .change_password(user.id, principal.session_id(), hash.as_str(), now)
        .await
        .map_err(ApiError::internal)?;
    audit::record(
        &state.database,
        AuditEvent {
            session_id: principal.session_id(),
            ..trail.by_user(user, Action::PasswordChanged, Outcome::Success)
        },
    )
    .await?;
    Ok(())
}

/// `GET /v1/me/sessions`: the caller's live sessions.
pub async fn sessions(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let sessions = state
        .database
        .sessions_of(principal.user.id, OffsetDateTime::now_utc())
        .await
        .map_err(ApiError::internal)?;
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
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    revoke_one(&state, &trail, &principal, SessionId::from_uuid(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_one(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: SessionId,
) -> Result<(), ApiError> {
    let revoked = state
        .database
        .revoke_user_session(principal.user.id, id, OffsetDateTime::now_utc())
        .await
        .map_err(ApiError::internal)?;
    if !revoked {
        return Err(ApiError::not_found());
    }
    record_revocation(state, trail, principal, id.to_string()).await
}

/// `DELETE /v1/me/sessions`: ends every session of the caller but this one.
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
) -> Result<StatusCode, ApiError> {
    revoke_others(&state, &trail, &principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_others(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
) -> Result<(), ApiError> {
    let revoked = state
        .database
        .revoke_other_sessions(
            principal.user.id,
            principal.session_id(),
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(ApiError::internal)?;
    record_revocation(state, trail, principal, format!("{revoked} other sessions")).await
}

/// Audits the end of one or more of the caller's sessions (or token families).
pub(crate) async fn record_revocation(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: String,
) -> Result<(), ApiError> {
    audit::record(
        &state.database,
        AuditEvent {
            session_id: principal.session_id(),
            target: Some(target),
            ..trail.by_user(&principal.user, Action::SessionRevoked, Outcome::Success)
        },
    )
    .await?;
    Ok(())
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
    let entries = state
        .database
        .audit_for_actor(principal.user.id, query.cursor, i64::from(limit))
        .await
        .map_err(ApiError::internal)?;
    audit_page(&entries, limit, query.format)
}

/// `GET /v1/audit-log`: the organization's entries (scope `audit:read` for keys; owners and
/// admins for accounts), newest first, a page at a time.
pub async fn org_audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::AuditRead, true)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let entries = state
        .database
        .audit_for_org(caller.org_id(), query.cursor, i64::from(limit))
        .await
        .map_err(ApiError::internal)?;
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
