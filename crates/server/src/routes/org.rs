//! The caller's organization. For now its policies: the session idle timeout (SES-1),
//! password composition rules (AUTH-2) and a second factor for everyone (MFA-4); names, members and invitations arrive with teams.

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
use mailroom_core::password_policy::CompositionRules;
use mailroom_storage::accounts::OrgPolicyChange;

/// The longest idle timeout an organization may set: the session lifetime itself.
const MAX_IDLE_MINUTES: u32 = 30 * 24 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    /// Minutes without use after which members' browser sessions end; `null` for none. Absent:
    /// unchanged.
    #[serde(default, deserialize_with = "present")]
    session_idle_timeout_minutes: Option<Option<u32>>,
    /// Composition rules for members' new passwords. Absent: unchanged.
    password_rules: Option<PasswordRules>,
    /// A second factor for every member (MFA-4). Absent: unchanged.
    require_mfa: Option<bool>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRules {
    uppercase: bool,
    lowercase: bool,
    digit: bool,
    symbol: bool,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `PATCH /v1/org` (owner or admin): the organization's session and password policies.
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
    let org_id = principal.user.org_id;
    if let Some(Some(minutes)) = body.session_idle_timeout_minutes
        && (minutes == 0 || minutes > MAX_IDLE_MINUTES)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("session_idle_timeout_minutes must be 1 to {MAX_IDLE_MINUTES}, or null"),
        )
        .with_field("session_idle_timeout_minutes"));
    }
    let change = OrgPolicyChange {
        idle_timeout_secs: body
            .session_idle_timeout_minutes
            .map(|minutes| minutes.map(|m| i64::from(m) * 60)),
        password_rules: body.password_rules.map(|rules| CompositionRules {
            uppercase: rules.uppercase,
            lowercase: rules.lowercase,
            digit: rules.digit,
            symbol: rules.symbol,
        }),
        require_mfa: body.require_mfa,
    };
    state
        .database
        .update_org_policies(org_id, &change)
        .await
        .map_err(ApiError::internal)?;
    let target = format!(
        "session_idle_timeout_minutes={:?} password_rules={} require_mfa={:?}",
        body.session_idle_timeout_minutes,
        body.password_rules.is_some(),
        body.require_mfa
    );
    audit::record(
        &state.database,
        AuditEvent {
            session_id: principal.session_id(),
            target: Some(target),
            ..trail.by_user(
                &principal.user,
                Action::OrgSettingsChanged,
                Outcome::Success,
            )
        },
    )
    .await?;
    Ok(Json(json!({ "id": org_id })))
}
