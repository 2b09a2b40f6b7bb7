//! The team of the caller's organization (docs/security.md#roles, #one-org-per-user, #invitations): members and their roles, ownership,
//! invitations. Every handler acts in the caller's own organization (the tenant of its
//! principal); another organization's members and invitations are as missing as made-up ids.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::org::{self, INVITATION_TTL, OrgRole, Refusal};
use mailroom_core::{EmailAddress, UserId};
use mailroom_mail::queued::MailMessage;
use mailroom_storage::teams::{Acceptance, Change, NewInvitation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::AuditTrail;
use crate::auth::session::{random_token, token_hash};
use crate::extract::Principal;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::work_queue::mail_job;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// `GET /v1/org/members`.
pub async fn members(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let members = state.database.members(principal.user.org_id).await?;
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
    Path(user_id): Path<Uuid>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<StatusCode, ApiError> {
    let role = parse_role(&body.role)?;
    change_role_of(&state, &trail, &principal, UserId::from_uuid(user_id), role).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn change_role_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
    role: OrgRole,
) -> Result<(), ApiError> {
    let event = member_event(
        state,
        trail,
        principal,
        target,
        Action::MemberRoleChanged,
        Some(role),
    )
    .await?;
    let change = state
        .database
        .change_member_role(
            principal.user.org_id,
            principal.user.id,
            target,
            role,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await?;
    answer(change)
}

/// `DELETE /v1/org/members/{user_id}`: removes a member (owner or admin), or leaves.
pub async fn remove(
    State(state): State<AppState>,
    trail: AuditTrail,
    principal: Principal,
    Path(user_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    remove_of(&state, &trail, &principal, UserId::from_uuid(user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn remove_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
) -> Result<(), ApiError> {
    let event = member_event(state, trail, principal, target, Action::MemberRemoved, None).await?;
    let change = state
        .database
        .remove_member(
            principal.user.org_id,
            principal.user.id,
            target,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await?;
    answer(change)
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
    transfer_of(&state, &trail, &principal, UserId::from_uuid(body.user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn transfer_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
) -> Result<(), ApiError> {
    principal.require_recent_auth()?;
    let event = member_event(
        state,
        trail,
        principal,
        target,
        Action::OwnershipTransferred,
        None,
    )
    .await?;
    let change = state
        .database
        .transfer_ownership(
            principal.user.org_id,
            principal.user.id,
            target,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await?;
    answer(change)
}

/// The audit entry of a change to a member: its target is the member's address (and role),
/// which account deletion can find and erase.
async fn member_event(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
    action: Action,
    role: Option<OrgRole>,
) -> Result<AuditEvent, ApiError> {
    let member = state
        .database
        .user_by_id(target)
        .await?
        .filter(|user| user.org_id == principal.user.org_id)
        .ok_or_else(ApiError::not_found)?;
    let target = match role {
        Some(role) => format!("{} as {}", member.email, role.as_str()),
        None => member.email.clone(),
    };
    Ok(AuditEvent {
        session_id: principal.session_id(),
        target: Some(target),
        subject: Some(member.email),
        ..trail.by_user(&principal.user, action, Outcome::Success)
    })
}

fn answer(change: Change) -> Result<(), ApiError> {
    match change {
        Change::Done => Ok(()),
        Change::NotFound => Err(ApiError::not_found()),
        Change::Refused(refusal) => Err(refused(refusal)),
    }
}

pub(crate) fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotAManager => ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            "Only the organization's owner or an admin may do this.",
        ),
        Refusal::OwnerOnly => ApiError::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            "Only the organization's owner may do this.",
        ),
        Refusal::OwnershipIsTransferred => ApiError::new(
            StatusCode::CONFLICT,
            "ownership_transfer_required",
            "The owner's role changes only by transferring the ownership.",
        ),
    }
}

pub(crate) fn parse_role(role: &str) -> Result<OrgRole, ApiError> {
    OrgRole::parse(role).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "role must be owner, admin or member.",
        )
        .with_field("role")
    })
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
    let role = parse_role(&body.role)?;
    let invitation = invite_of(&state, &trail, &principal, &body.email, role).await?;
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

pub(crate) async fn invite_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    email: &str,
    role: OrgRole,
) -> Result<NewInvitation, ApiError> {
    org::may_invite(principal.user.org_role, role).map_err(refused)?;
    let email = EmailAddress::parse(email).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_email", error.to_string())
            .with_field("email")
    })?;
    let org_id = principal.user.org_id;
    let plan = state.database.plan_of(org_id).await?;
    if !plan.team {
        return Err(team_plan_required());
    }
    let now = OffsetDateTime::now_utc();
    let token = random_token();
    let invitation = NewInvitation {
        id: Uuid::now_v7(),
        email: email.to_string(),
        role,
        token_hash: token_hash(&token),
        invited_by: principal.user.id,
        expires_at: now + INVITATION_TTL,
    };
    let event = AuditEvent {
        session_id: principal.session_id(),
        target: Some(format!("{} as {}", invitation.email, role.as_str())),
        subject: Some(invitation.email.clone()),
        ..trail.by_user(&principal.user, Action::InvitationCreated, Outcome::Success)
    };
    let org_name = state.database.org_name(org_id).await?;
    let link = format!("{}/invitations/accept?token={token}", state.public_origin);
    let days = u32::try_from(INVITATION_TTL.as_secs() / 86_400).unwrap_or(7);
    let message = MailMessage::Invitation {
        org_name,
        role: role.as_str().to_owned(),
        link,
        valid_days: days,
    };
    // Sealed first (it holds the token), then queued with the invitation itself.
    let mail = state
        .database
        .prepare_job(mail_job(&invitation.email, message))
        .await?;
    state
        .database
        .create_invitation(org_id, &invitation, Some(&mail), &event, now)
        .await?;
    state.queue.wake();
    Ok(invitation)
}

/// `GET /v1/org/invitations`: the ones that can still be accepted.
pub async fn invitations(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    require_manager(&principal)?;
    let invitations = state
        .database
        .invitations(principal.user.org_id, OffsetDateTime::now_utc())
        .await?;
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
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    revoke_invitation_of(&state, &trail, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn revoke_invitation_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: Uuid,
) -> Result<(), ApiError> {
    require_manager(principal)?;
    let event = AuditEvent {
        session_id: principal.session_id(),
        target: Some(format!("invitation {id}")),
        ..trail.by_user(&principal.user, Action::InvitationRevoked, Outcome::Success)
    };
    let change = state
        .database
        .revoke_invitation(principal.user.org_id, id, &event, OffsetDateTime::now_utc())
        .await?;
    answer(change)
}

fn require_manager(principal: &Principal) -> Result<(), ApiError> {
    if principal.user.org_role.manages() {
        Ok(())
    } else {
        Err(refused(Refusal::NotAManager))
    }
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
    let (org_id, role) = accept_with(
        &state,
        &trail,
        &principal,
        &body.token,
        body.leave_current_org,
    )
    .await?;
    Ok(Json(json!({ "org_id": org_id, "role": role.as_str() })))
}

pub(crate) async fn accept_with(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    token: &SecretString,
    leave_current_org: bool,
) -> Result<(mailroom_core::OrgId, OrgRole), ApiError> {
    let user = &principal.user;
    let event = AuditEvent {
        session_id: principal.session_id(),
        target: Some(user.email.clone()),
        subject: Some(user.email.clone()),
        ..trail.by_user(user, Action::InvitationAccepted, Outcome::Success)
    };
    let acceptance = state
        .database
        .accept_invitation(
            &token_hash(token.expose_secret()),
            user.id,
            &user.email,
            leave_current_org,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await?;
    let conflict = |code, detail| ApiError::new(StatusCode::CONFLICT, code, detail);
    match acceptance {
        Acceptance::Joined { org_id, role } => Ok((org_id, role)),
        Acceptance::Invalid => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_invitation",
            "This invitation is unknown, expired, revoked or already used.",
        )),
        Acceptance::OtherAddress => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invitation_for_another_address",
            "This invitation was sent to another address: sign in with that one.",
        )),
        Acceptance::TeamPlanRequired => Err(team_plan_required()),
        Acceptance::MemberLimitReached => Err(conflict(
            "member_limit_reached",
            "The organization has as many members as its plan allows.",
        )),
        Acceptance::AlreadyMember => Err(conflict(
            "already_member",
            "You are already a member of this organization.",
        )),
        Acceptance::LeaveCurrentOrgRequired => Err(conflict(
            "leave_current_org_required",
            "Joining deletes your personal organization and its data: accept with leave_current_org set to true.",
        )),
        Acceptance::InAnotherTeam => Err(conflict(
            "already_in_an_org",
            "You belong to an organization with other members: leave it first.",
        )),
    }
}

fn team_plan_required() -> ApiError {
    ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        "team_plan_required",
        "Inviting members needs a team plan for the organization.",
    )
}
