//! The caller's organization as a whole: its name, plan and policies (the session idle
//! timeout, docs/security.md#session-cookie; password composition rules,
//! docs/security.md#password-hashing; a second factor for everyone,
//! docs/security.md#mfa-required), and its audit log.

use mailroom_core::api_keys::Scope;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::org::MAX_ORG_NAME;
use mailroom_core::password_policy::CompositionRules;
use mailroom_storage::accounts::OrgPolicyChange;
use mailroom_storage::audit::AuditEntry;
use mailroom_storage::teams::Plan;
use uuid::Uuid;

use crate::application::actor::{Caller, Principal};
use crate::audit::{self, AuditTrail};
use crate::error::{DomainError, Forbidden};
use crate::state::AppState;

/// The longest idle timeout an organization may set: the session lifetime itself.
pub const MAX_IDLE_MINUTES: u32 = 30 * 24 * 60;

/// The organization's name and plan.
pub struct OrgInfo {
    pub name: String,
    pub plan: Plan,
}

/// A change of the organization's settings; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct SettingsChange {
    pub name: Option<String>,
    /// Minutes without use after which members' browser sessions end; `Some(None)` for none.
    pub session_idle_timeout_minutes: Option<Option<u32>>,
    pub password_rules: Option<CompositionRules>,
    pub require_mfa: Option<bool>,
    pub members_create_keys: Option<bool>,
    pub members_connect_accounts: Option<bool>,
}

pub async fn info(state: &AppState, principal: &Principal) -> Result<OrgInfo, DomainError> {
    let org_id = principal.user.org_id;
    let teams = state.database.teams();
    Ok(OrgInfo {
        name: teams.org_name(org_id).await?,
        plan: teams.plan_of(org_id).await?,
    })
}

/// Changes the organization's name and policies in one change, by an owner or admin.
pub async fn change_settings(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    change: &SettingsChange,
) -> Result<(), DomainError> {
    if !principal.user.org_role.manages() {
        return Err(DomainError::Forbidden(Forbidden::NotAManager));
    }
    if let Some(Some(minutes)) = change.session_idle_timeout_minutes
        && (minutes == 0 || minutes > MAX_IDLE_MINUTES)
    {
        return Err(DomainError::invalid(
            "session_idle_timeout_minutes",
            format!("session_idle_timeout_minutes must be 1 to {MAX_IDLE_MINUTES}, or null"),
        ));
    }
    let name = change.name.as_deref().map(str::trim);
    if name.is_some_and(|name| name.is_empty() || name.chars().count() > MAX_ORG_NAME) {
        return Err(DomainError::invalid(
            "name",
            format!("name must be 1 to {MAX_ORG_NAME} characters"),
        ));
    }
    let stored = OrgPolicyChange {
        name: name.map(str::to_owned),
        idle_timeout_secs: change
            .session_idle_timeout_minutes
            .map(|minutes| minutes.map(|m| i64::from(m) * 60)),
        password_rules: change.password_rules,
        require_mfa: change.require_mfa,
        members_create_keys: change.members_create_keys,
        members_connect_accounts: change.members_connect_accounts,
    };
    state
        .database
        .accounts()
        .update_org_policies(principal.user.org_id, &stored)
        .await?;
    let target = format!(
        "name={} session_idle_timeout_minutes={:?} password_rules={} require_mfa={:?} \
         members_create_keys={:?} members_connect_accounts={:?}",
        stored.name.is_some(),
        change.session_idle_timeout_minutes,
        change.password_rules.is_some(),
        change.require_mfa,
        change.members_create_keys,
        change.members_connect_accounts
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
    .await
}

/// A page of the organization's audit log, newest first, before entry `before` (scope
/// `audit:read` for keys; owners and admins for accounts).
pub async fn audit_log(
    state: &AppState,
    caller: &Caller,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AuditEntry>, DomainError> {
    caller.require(Scope::AuditRead, true)?;
    Ok(state
        .database
        .audit()
        .audit_for_org(caller.org_id(), before, limit)
        .await?)
}
