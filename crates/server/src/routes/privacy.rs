//! Your data (docs/security.md#account-deletion, #account-export): deleting the account, and exporting what mailroom holds about
//! it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::accounts;
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::extract::principal::SetupPrincipal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::routes::auth::user_json;
use crate::routes::me::entry_json;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    /// The account's email address, typed out: a deletion is never one click away.
    confirm: String,
}

/// `DELETE /v1/me` (recent sign-in, `{confirm: "<email>"}`): 204 and the session cookie
/// cleared; 409 `ownership_transfer_required` for the owner of a team.
pub async fn delete_account(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    ApiJson(body): ApiJson<DeleteAccount>,
) -> Result<Response, ApiError> {
    accounts::delete(&state, &trail, &principal, &body.confirm).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::cleared_cookie())],
    )
        .into_response())
}

/// `GET /v1/me/export` (docs/security.md#account-export): the account, its sessions, devices and second-factor state,
/// and every audit entry of the user's, as one JSON document.
pub async fn export(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
) -> Result<Response, ApiError> {
    let user = &principal.user;
    let now = OffsetDateTime::now_utc();
    let when = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
    let accounts::AccountExport {
        sessions,
        sign_in_devices: sign_ins,
        trusted_devices: devices,
        backup_codes_left,
        identities,
        audit_entries,
    } = accounts::export(&state, &trail, &principal).await?;
    let entries: Vec<Value> = audit_entries.iter().map(entry_json).collect();
    let document = json!({
        "exported_at": when(now),
        "account": user_json(user),
        "sessions": sessions.iter().map(|s| json!({
            "id": s.id,
            "ip": s.ip,
            "user_agent": s.user_agent,
            "created_at": when(s.created_at),
            "last_seen_at": when(s.last_seen_at),
        })).collect::<Vec<_>>(),
        "sign_in_devices": sign_ins.iter().map(|d| json!({
            "ip": d.ip,
            "user_agent": d.user_agent,
            "first_seen_at": when(d.first_seen_at),
            "last_seen_at": when(d.last_seen_at),
        })).collect::<Vec<_>>(),
        "two_factor": {
            "enabled": user.mfa_enabled,
            "backup_codes_left": backup_codes_left,
            "trusted_devices": devices.iter().map(|d| json!({
                "id": d.id,
                "ip": d.ip,
                "user_agent": d.user_agent,
                "created_at": when(d.created_at),
                "expires_at": when(d.expires_at),
            })).collect::<Vec<_>>(),
        },
        "identities": identities.iter().map(crate::routes::me::identity_json).collect::<Vec<_>>(),
        "audit_events": entries,
    });
    let mut response = Json::<Value>(document).into_response();
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"mailroom-account.json\""),
    );
    Ok(response)
}
