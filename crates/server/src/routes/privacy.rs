//! Your data (docs/security.md#account-deletion, #account-export): deleting the account, and exporting what mailroom holds about
//! it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_core::audit::{Action, Outcome};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::accounts;
use crate::audit::{self, AuditTrail};
use crate::auth::session;
use crate::extract::principal::SetupPrincipal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::routes::auth::user_json;
use crate::routes::me::entry_json;
use crate::state::AppState;

/// Audit entries read per query while exporting.
const EXPORT_PAGE: i64 = 500;

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
    // Recorded first, so that the export holds its own entry.
    audit::record(
        &state.database,
        trail.by_user(user, Action::AccountExported, Outcome::Success),
    )
    .await?;
    let sessions = state.database.accounts().sessions_of(user.id, now).await?;
    let devices = state
        .database
        .two_factor()
        .trusted_devices(user.id, now)
        .await?;
    let sign_ins = state.database.accounts().sign_in_devices(user.id).await?;
    let backup_codes_left = state
        .database
        .two_factor()
        .unused_backup_codes(user.id)
        .await?;
    let mut entries = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .database
            .audit()
            .audit_for_actor(user.id, cursor, EXPORT_PAGE)
            .await?;
        cursor = page.last().map(|entry| entry.id);
        let last_page = page.len() < usize::try_from(EXPORT_PAGE).unwrap_or(usize::MAX);
        entries.extend(page.iter().map(entry_json));
        if last_page {
            break;
        }
    }
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
        "audit_events": entries,
    });
    let mut response = Json::<Value>(document).into_response();
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"mailroom-account.json\""),
    );
    Ok(response)
}
