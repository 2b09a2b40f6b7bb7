//! The platform's super-admins (docs/security.md#quotas): every organization and user, plans, disabling and
//! unlocking accounts. Every action is audited.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::{OrgId, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::admin;
use crate::audit::AuditTrail;
use crate::extract::SuperAdmin;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// `GET /v1/admin/orgs`.
pub async fn orgs(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
) -> Result<Json<Value>, ApiError> {
    let orgs = admin::orgs(&state, &admin).await?;
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
    Path(id): Path<OrgId>,
    ApiJson(body): ApiJson<PlanChange>,
) -> Result<StatusCode, ApiError> {
    admin::set_plan_of(&state, &trail, &admin, id, &body.plan).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/admin/users`.
pub async fn users(
    State(state): State<AppState>,
    SuperAdmin(admin): SuperAdmin,
) -> Result<Json<Value>, ApiError> {
    let users = admin::users(&state, &admin).await?;
    let now = OffsetDateTime::now_utc();
    Ok(Json(Value::Array(
        users
            .iter()
            .map(|user| {
                json!({
                    "id": user.id,
                    "email": user.email,
                    "platform_role": user.platform_role.as_str(),
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
    Path(id): Path<UserId>,
    ApiJson(body): ApiJson<UserChange>,
) -> Result<StatusCode, ApiError> {
    admin::set_disabled_of(&state, &trail, &admin, id, body.disabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/users/{id}/unlock`: lifts a lockout and forgets the failed sign-ins.
pub async fn unlock(
    State(state): State<AppState>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    admin::unlock_of(&state, &trail, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
