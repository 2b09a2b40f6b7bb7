//! The caller's organization. For now its policies: the session idle timeout (docs/security.md#session-cookie),
//! password composition rules (docs/security.md#password-hashing) and a second factor for everyone (docs/security.md#mfa-required); names, members and invitations arrive with teams.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{self, AuditTrail};
use crate::error::{DomainError, Forbidden};
use crate::extract::Principal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::org::MAX_ORG_NAME;
use mailroom_core::password_policy::CompositionRules;
use mailroom_storage::accounts::OrgPolicyChange;

/// The longest idle timeout an organization may set: the session lifetime itself.
const MAX_IDLE_MINUTES: u32 = 30 * 24 * 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    /// The organization's name, 1 to 100 characters. Absent: unchanged.
    name: Option<String>,
    /// Minutes without use after which members' browser sessions end; `null` for none. Absent:
    /// unchanged.
    #[serde(default, deserialize_with = "present")]
    session_idle_timeout_minutes: Option<Option<u32>>,
    /// Composition rules for members' new passwords. Absent: unchanged.
    password_rules: Option<PasswordRules>,
    /// A second factor for every member (docs/security.md#mfa-required). Absent: unchanged.
    require_mfa: Option<bool>,
    /// Members may create API keys too. Absent: unchanged.
    members_create_keys: Option<bool>,
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

/// `PATCH /v1/org` (owner or admin): the organization's name and its session, password and
/// second-factor policies, in one change.
pub async fn update(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    ApiJson(body): ApiJson<OrgUpdate>,
) -> Result<Json<Value>, ApiError> {
    if !principal.user.org_role.manages() {
        return Err(DomainError::Forbidden(Forbidden::NotAManager).into());
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
    let name = body.name.as_deref().map(str::trim);
    if name.is_some_and(|name| name.is_empty() || name.chars().count() > MAX_ORG_NAME) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("name must be 1 to {MAX_ORG_NAME} characters"),
        )
        .with_field("name"));
    }
    let change = OrgPolicyChange {
        name: name.map(str::to_owned),
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
        members_create_keys: body.members_create_keys,
    };
    state
        .database
        .accounts()
        .update_org_policies(org_id, &change)
        .await
        .map_err(ApiError::internal)?;
    let target = format!(
        "name={} session_idle_timeout_minutes={:?} password_rules={} require_mfa={:?} \
         members_create_keys={:?}",
        change.name.is_some(),
        body.session_idle_timeout_minutes,
        body.password_rules.is_some(),
        body.require_mfa,
        body.members_create_keys
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

/// `GET /v1/org`: the caller's organization, its plan, and the caller's role in it.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let org_id = principal.user.org_id;
    let name = state
        .database
        .teams()
        .org_name(org_id)
        .await
        .map_err(ApiError::internal)?;
    let plan = state
        .database
        .teams()
        .plan_of(org_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "id": org_id,
        "name": name,
        "role": principal.user.org_role.as_str(),
        "require_mfa": principal.user.org_requires_mfa,
        "plan": {
            "id": plan.id,
            "name": plan.name,
            "team": plan.team,
            "member_limit": plan.member_limit,
            "verifications_per_month": plan.verifications_per_month,
            "key_requests_per_minute": plan.key_requests_per_minute,
            "key_requests_per_day": plan.key_requests_per_day,
        },
    })))
}
