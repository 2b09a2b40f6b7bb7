//! The caller's organization: its name, plan and policies
//! ([`crate::application::org`]).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::application::org::{self, SettingsChange};
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;
use mailroom_core::password_policy::CompositionRules;

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
    /// Members may connect mail accounts too. Absent: unchanged.
    members_connect_accounts: Option<bool>,
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
    let change = SettingsChange {
        name: body.name,
        session_idle_timeout_minutes: body.session_idle_timeout_minutes,
        password_rules: body.password_rules.map(|rules| CompositionRules {
            uppercase: rules.uppercase,
            lowercase: rules.lowercase,
            digit: rules.digit,
            symbol: rules.symbol,
        }),
        require_mfa: body.require_mfa,
        members_create_keys: body.members_create_keys,
        members_connect_accounts: body.members_connect_accounts,
    };
    org::change_settings(&state, &trail, &principal, &change).await?;
    Ok(Json(json!({ "id": principal.user.org_id })))
}

/// `GET /v1/org`: the caller's organization, its plan, and the caller's role in it.
pub async fn show(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let org_id = principal.user.org_id;
    let org::OrgInfo { name, plan } = org::info(&state, &principal).await?;
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
