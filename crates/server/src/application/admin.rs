//! The platform's administration by its super-admins: plans, disabled accounts, unlocked
//! addresses.

use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::org::PlanId;
use mailroom_core::{OrgId, UserId};
use mailroom_storage::teams::{OrgSummary, Plan, UserSummary};
use time::OffsetDateTime;

use crate::application::actor::Principal;
use crate::audit::AuditTrail;
use crate::error::{Conflict, DomainError};
use crate::state::AppState;

/// The admin's own entry, in the chain of the organization acted on.
fn admin_event(
    trail: &AuditTrail,
    admin: &Principal,
    org: Option<OrgId>,
    action: Action,
    target: String,
    subject: Option<String>,
) -> AuditEvent {
    AuditEvent {
        org_id: org,
        session_id: admin.session_id(),
        target: Some(target),
        subject,
        ..trail.by_user(&admin.user, action, Outcome::Success)
    }
}

pub async fn set_plan_of(
    state: &AppState,
    trail: &AuditTrail,
    admin: &Principal,
    org: OrgId,
    plan: &str,
) -> Result<(), DomainError> {
    let plan = PlanId::new(plan);
    let event = admin_event(
        trail,
        admin,
        Some(org),
        Action::PlanChanged,
        format!("plan {plan}"),
        None,
    );
    let changed = state
        .database
        .teams()
        .set_org_plan(org, &plan, &event, OffsetDateTime::now_utc())
        .await?;
    if changed {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}

pub async fn set_disabled_of(
    state: &AppState,
    trail: &AuditTrail,
    admin: &Principal,
    user_id: UserId,
    disabled: bool,
) -> Result<(), DomainError> {
    if user_id == admin.user.id {
        return Err(DomainError::Conflict(Conflict::CannotDisableYourself));
    }
    let target = state
        .database
        .accounts()
        .user_by_id(user_id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let action = if disabled {
        Action::UserDisabled
    } else {
        Action::UserEnabled
    };
    let event = admin_event(
        trail,
        admin,
        Some(target.org_id),
        action,
        target.email.clone(),
        Some(target.email.clone()),
    );
    let changed = state
        .database
        .teams()
        .set_user_disabled(user_id, disabled, &event, OffsetDateTime::now_utc())
        .await?;
    if changed {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}

pub async fn unlock_of(
    state: &AppState,
    trail: &AuditTrail,
    admin: &Principal,
    user_id: UserId,
) -> Result<(), DomainError> {
    let target = state
        .database
        .accounts()
        .user_by_id(user_id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let event = admin_event(
        trail,
        admin,
        Some(target.org_id),
        Action::UserUnlocked,
        target.email.clone(),
        Some(target.email.clone()),
    );
    let unlocked = state
        .database
        .lockout()
        .unlock_user(user_id, &event, OffsetDateTime::now_utc())
        .await?;
    if unlocked {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}

/// Every organization of the platform, for a super-admin.
pub async fn orgs(state: &AppState, admin: &Principal) -> Result<Vec<OrgSummary>, DomainError> {
    Ok(state.database.teams().all_orgs(admin.user.id).await?)
}

/// Every plan an organization may be put on.
pub async fn plans(state: &AppState, admin: &Principal) -> Result<Vec<Plan>, DomainError> {
    Ok(state.database.teams().plans(admin.user.id).await?)
}

/// Every account of the platform, for a super-admin.
pub async fn users(state: &AppState, admin: &Principal) -> Result<Vec<UserSummary>, DomainError> {
    Ok(state.database.teams().all_users(admin.user.id).await?)
}
