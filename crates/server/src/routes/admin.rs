//! The platform's super-admins (docs/security.md#quotas): every organization and user, plans, disabling and
//! unlocking accounts. Every action is audited.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{OrgId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::AuditTrail;
use crate::error::{DomainError, Forbidden};
use crate::extract::Principal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

/// A principal who is a platform super-admin; anyone else is refused (403).
pub struct SuperAdmin(pub Principal);

impl FromRequestParts<AppState> for SuperAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.is_super_admin() {
            return Err(DomainError::Forbidden(Forbidden::SuperAdminOnly).into());
        }
        Ok(Self(principal))
    }
}

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

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

/// `GET /v1/admin/orgs`.
pub async fn orgs(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
) -> Result<Json<Value>, ApiError> {
    let orgs = state.database.all_orgs(admin.user.id).await?;
    Ok(Json(Value::Array(
        orgs.iter()
            .map(|org| {
                json!({
                    "id": org.id,
                    "name": org.name,
                    "personal": org.personal,
                    "plan": org.plan_id,
                    "members": org.members,
                    "created_at": when(org.created_at),
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    plan: String,
}

/// `PATCH /v1/admin/orgs/{id} {plan}`.
pub async fn set_plan(
    State(state): State<AppState>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<PlanChange>,
) -> Result<StatusCode, ApiError> {
    set_plan_of(&state, &trail, &admin, id, &body.plan).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn set_plan_of(
    state: &AppState,
    trail: &AuditTrail,
    admin: &Principal,
    id: Uuid,
    plan: &str,
) -> Result<(), ApiError> {
    let org = OrgId::from_uuid(id);
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
        .set_org_plan(org, plan, &event, OffsetDateTime::now_utc())
        .await?;
    if changed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no such organization, or no such plan.",
        ))
    }
}

/// `GET /v1/admin/users`.
pub async fn users(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
) -> Result<Json<Value>, ApiError> {
    let users = state.database.all_users(admin.user.id).await?;
    let now = OffsetDateTime::now_utc();
    Ok(Json(Value::Array(
        users
            .iter()
            .map(|user| {
                json!({
                    "id": user.id,
                    "email": user.email,
                    "platform_role": user.platform_role,
                    "org_id": user.org_id,
                    "org_role": user.org_role.as_str(),
                    "disabled": user.disabled,
                    "locked_until": user.locked_until(now).map(when),
                    "created_at": when(user.created_at),
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    disabled: bool,
}

/// `PATCH /v1/admin/users/{id} {disabled}`: a disabled user's sessions and tokens end at once.
pub async fn set_disabled(
    State(state): State<AppState>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<UserChange>,
) -> Result<StatusCode, ApiError> {
    set_disabled_of(&state, &trail, &admin, id, body.disabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn set_disabled_of(
    state: &AppState,
    trail: &AuditTrail,
    admin: &Principal,
    id: Uuid,
    disabled: bool,
) -> Result<(), ApiError> {
    let user_id = UserId::from_uuid(id);
    if user_id == admin.user.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_disable_yourself",
            "A super-admin cannot disable their own account.",
        ));
    }
    let target = state
        .database
        .user_by_id(user_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
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
        .set_user_disabled(user_id, disabled, &event, OffsetDateTime::now_utc())
        .await?;
    if changed {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// `POST /v1/admin/users/{id}/unlock`: lifts a lockout and forgets the failed sign-ins.
pub async fn unlock(
    State(state): State<AppState>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    unlock_of(&state, &trail, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn unlock_of(
    state: &AppState,
    trail: &AuditTrail,
    admin: &Principal,
    id: Uuid,
) -> Result<(), ApiError> {
    let user_id = UserId::from_uuid(id);
    let target = state
        .database
        .user_by_id(user_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
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
        .unlock_user(user_id, &event, OffsetDateTime::now_utc())
        .await?;
    if unlocked {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}
