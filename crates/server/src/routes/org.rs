//! The caller's organization. For now its session policy (SES-1); names, members and
//! invitations arrive with teams.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, AuditTrail};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use mailroom_core::audit::{Action, AuditEvent, Outcome};

/// The longest idle timeout an organization may set: the session lifetime itself.
const MAX_IDLE_MINUTES: u32 = 30 * 24 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    /// Minutes without use after which members' browser sessions end; `null` for none.
    session_idle_timeout_minutes: Option<u32>,
}

/// `PATCH /v1/org` (owner or admin).
pub async fn update(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    ApiJson(body): ApiJson<OrgUpdate>,
) -> Result<Json<Value>, ApiError> {
    if !matches!(principal.user.org_role.as_str(), "owner" | "admin") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            "Only the organization's owner or an admin may change this.",
        ));
    }
    let minutes = body.session_idle_timeout_minutes;
    if minutes.is_some_and(|m| m == 0 || m > MAX_IDLE_MINUTES) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("session_idle_timeout_minutes must be 1 to {MAX_IDLE_MINUTES}, or null"),
        )
        .with_field("session_idle_timeout_minutes"));
    }
    state
        .database
        .set_session_idle_timeout(principal.user.org_id, minutes.map(|m| i64::from(m) * 60))
        .await
        .map_err(ApiError::internal)?;
    audit::record(
        &state.database,
        AuditEvent {
            org_id: Some(principal.user.org_id),
            actor: Some(principal.user.id),
            session_id: principal.session_id(),
            target: Some(format!("session_idle_timeout_minutes={minutes:?}")),
            ..trail.event(Action::OrgSettingsChanged, Outcome::Success)
        },
    )
    .await?;
    Ok(Json(json!({
        "id": principal.user.org_id,
        "session_idle_timeout_minutes": minutes,
    })))
}
