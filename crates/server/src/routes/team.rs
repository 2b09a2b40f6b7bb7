//! The team of the caller's organization (docs/security.md#roles, #one-org-per-user, #invitations): members and their roles, ownership,
//! invitations. Every handler acts in the caller's own organization (the tenant of its
//! principal); another organization's members and invitations are as missing as made-up ids.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::InvitationId;
use mailroom_core::UserId;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::application::teams;
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// `GET /v1/org/members`.
pub async fn members(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let members = teams::members(&state, &principal).await?;
    Ok(Json(Value::Array(
        members
            .iter()
            .map(|member| {
                json!({
                    "user_id": member.user_id,
                    "email": member.email,
                    "role": member.role.as_str(),
                    "joined_at": when(member.joined_at),
                    "mfa_enabled": member.mfa_enabled,
                })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    role: String,
}

/// `PATCH /v1/org/members/{user_id} {role}`: only the owner makes or unmakes admins.
pub async fn change_role(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(user_id): Path<UserId>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let role = teams::parse_role(&body.role)?;
    teams::change_role_of(&state, &trail, &principal, user_id, role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/org/members/{user_id}`: removes a member (owner or admin), or leaves.
pub async fn remove(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(user_id): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    teams::remove_of(&state, &trail, &principal, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    user_id: Uuid,
}

/// `POST /v1/org/transfer-ownership {user_id}` (the owner, recent sign-in): the other member
/// becomes the owner, the owner an admin.
pub async fn transfer_ownership(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    ApiJson(body): ApiJson<Transfer>,
) -> Result<StatusCode, ApiError> {
    teams::transfer_of(&state, &trail, &principal, UserId::from_uuid(body.user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    email: String,
    role: String,
}

/// `POST /v1/org/invitations {email, role}` (owner or admin; only the owner invites admins):
/// mails a one-time link, valid 7 days.
pub async fn invite(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    ApiJson(body): ApiJson<InvitationRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let role = teams::parse_role(&body.role)?;
    let invitation = teams::invite_of(&state, &trail, &principal, &body.email, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": invitation.id,
            "email": invitation.email,
            "role": role.as_str(),
            "expires_at": when(invitation.expires_at),
        })),
    ))
}

/// `GET /v1/org/invitations`: the ones that can still be accepted.
pub async fn invitations(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let invitations = teams::invitations(&state, &principal).await?;
    Ok(Json(Value::Array(
        invitations
            .iter()
            .map(|invitation| {
                json!({
                    "id": invitation.id,
                    "email": invitation.email,
                    "role": invitation.role.as_str(),
                    "created_at": when(invitation.created_at),
                    "expires_at": when(invitation.expires_at),
                })
            })
            .collect(),
    )))
}

/// `DELETE /v1/org/invitations/{id}`.
pub async fn revoke_invitation(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<InvitationId>,
) -> Result<StatusCode, ApiError> {
    teams::revoke_invitation_of(&state, &trail, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    token: SecretString,
    #[serde(default)]
    leave_current_org: bool,
}

/// `POST /v1/invitations/accept {token, leave_current_org}`.
pub async fn accept(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    ApiJson(body): ApiJson<AcceptRequest>,
) -> Result<Json<Value>, ApiError> {
    let (org_id, role) = teams::accept_with(
        &state,
        &trail,
        &principal,
        &body.token,
        body.leave_current_org,
    )
    .await?;
    Ok(Json(json!({ "org_id": org_id, "role": role.as_str() })))
}
