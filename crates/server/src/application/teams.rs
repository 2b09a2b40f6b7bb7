//! Teams (docs/security.md#roles, #invitations): roles changed by who may, members removed,
//! ownership transferred, invitations sent, revoked and accepted.

use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::org::{self, INVITATION_TTL, OrgRole, Refusal};
use mailroom_core::{InvitationId, UserId};
use mailroom_mail::queued::MailMessage;
use mailroom_storage::queue::JobKind;
use mailroom_storage::teams::{Acceptance, Change, Invitation, Member, NewInvitation, Plan};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::application::accounts::parse_email;
use crate::application::actor::Principal;
use crate::application::mail_accounts::google;
use crate::audit::AuditTrail;
use crate::auth::session::{random_token, token_hash};
use crate::error::{Conflict, DomainError, Forbidden};
use crate::state::AppState;
use crate::work_queue::mail_job;

pub async fn change_role_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
    role: OrgRole,
) -> Result<(), DomainError> {
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
        .teams()
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

pub async fn remove_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
) -> Result<(), DomainError> {
    let event = member_event(state, trail, principal, target, Action::MemberRemoved, None).await?;
    let change = state
        .database
        .teams()
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

pub async fn transfer_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    target: UserId,
) -> Result<(), DomainError> {
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
        .teams()
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
) -> Result<AuditEvent, DomainError> {
    let member = state
        .database
        .accounts()
        .user_by_id(target)
        .await?
        .filter(|user| user.org_id == principal.user.org_id)
        .ok_or(DomainError::NotFound)?;
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

fn answer(change: Change) -> Result<(), DomainError> {
    match change {
        Change::Done => Ok(()),
        Change::NotFound => Err(DomainError::NotFound),
        Change::Refused(refusal) => Err(refused(refusal)),
    }
}

fn refused(refusal: Refusal) -> DomainError {
    match refusal {
        Refusal::NotAManager => DomainError::Forbidden(Forbidden::NotAManager),
        Refusal::OwnerOnly => DomainError::Forbidden(Forbidden::OwnerOnly),
        Refusal::OwnershipIsTransferred => DomainError::Conflict(Conflict::OwnershipIsTransferred),
    }
}

pub fn parse_role(role: &str) -> Result<OrgRole, DomainError> {
    OrgRole::parse(role)
        .ok_or_else(|| DomainError::invalid("role", "role must be owner, admin or member."))
}

pub async fn invite_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    email: &str,
    role: OrgRole,
) -> Result<NewInvitation, DomainError> {
    org::may_invite(principal.user.org_role, role).map_err(refused)?;
    let email = parse_email(email)?;
    let org_id = principal.user.org_id;
    let plan = state.database.teams().plan_of(org_id).await?;
    if !plan.team {
        return Err(DomainError::TeamPlanRequired);
    }
    let now = OffsetDateTime::now_utc();
    let token = random_token();
    let invitation = NewInvitation {
        id: InvitationId::generate(),
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
    let org_name = state.database.teams().org_name(org_id).await?;
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
        .queue()
        .prepare_job(mail_job(&invitation.email, message))
        .await?;
    state
        .database
        .teams()
        .create_invitation(org_id, &invitation, Some(&mail), &event, now)
        .await?;
    state.queue.wake(JobKind::SystemMail);
    Ok(invitation)
}

pub async fn revoke_invitation_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: InvitationId,
) -> Result<(), DomainError> {
    require_manager(principal)?;
    let event = AuditEvent {
        session_id: principal.session_id(),
        target: Some(format!("invitation {id}")),
        ..trail.by_user(&principal.user, Action::InvitationRevoked, Outcome::Success)
    };
    let change = state
        .database
        .teams()
        .revoke_invitation(principal.user.org_id, id, &event, OffsetDateTime::now_utc())
        .await?;
    answer(change)
}

pub fn require_manager(principal: &Principal) -> Result<(), DomainError> {
    if principal.user.org_role.manages() {
        Ok(())
    } else {
        Err(refused(Refusal::NotAManager))
    }
}

pub async fn accept_with(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    token: &SecretString,
    leave_current_org: bool,
) -> Result<(mailroom_core::OrgId, OrgRole), DomainError> {
    let user = &principal.user;
    let event = AuditEvent {
        session_id: principal.session_id(),
        target: Some(user.email.clone()),
        subject: Some(user.email.clone()),
        ..trail.by_user(user, Action::InvitationAccepted, Outcome::Success)
    };
    // Joining deletes the personal organization: its Google grants are revoked after.
    let grants = if leave_current_org {
        google::grants_of(state, user.org_id).await
    } else {
        Vec::new()
    };
    let acceptance = state
        .database
        .teams()
        .accept_invitation(
            &token_hash(token.expose_secret()),
            user.id,
            &user.email,
            leave_current_org,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await?;
    match acceptance {
        Acceptance::Joined { org_id, role } => {
            if org_id != user.org_id {
                google::revoke_all(state, grants).await;
            }
            Ok((org_id, role))
        }
        Acceptance::Invalid => Err(DomainError::InvalidInvitation),
        Acceptance::OtherAddress => Err(DomainError::Forbidden(
            Forbidden::InvitationForAnotherAddress,
        )),
        Acceptance::TeamPlanRequired => Err(DomainError::TeamPlanRequired),
        Acceptance::MemberLimitReached => Err(DomainError::Conflict(Conflict::MemberLimitReached)),
        Acceptance::AlreadyMember => Err(DomainError::Conflict(Conflict::AlreadyMember)),
        Acceptance::LeaveCurrentOrgRequired => {
            Err(DomainError::Conflict(Conflict::LeaveCurrentOrgRequired))
        }
        Acceptance::InAnotherTeam => Err(DomainError::Conflict(Conflict::AlreadyInAnOrg)),
    }
}

/// An organization as its members see it: name, plan, members, and (for its managers) the
/// pending invitations.
pub struct Overview {
    pub name: String,
    pub plan: Plan,
    pub members: Vec<Member>,
    pub invitations: Vec<Invitation>,
}

pub async fn overview(state: &AppState, principal: &Principal) -> Result<Overview, DomainError> {
    let org_id = principal.user.org_id;
    let invitations = if principal.user.org_role.manages() {
        invitations(state, principal).await?
    } else {
        Vec::new()
    };
    Ok(Overview {
        name: state.database.teams().org_name(org_id).await?,
        plan: state.database.teams().plan_of(org_id).await?,
        members: members(state, principal).await?,
        invitations,
    })
}

/// The members of the principal's organization.
pub async fn members(state: &AppState, principal: &Principal) -> Result<Vec<Member>, DomainError> {
    Ok(state
        .database
        .teams()
        .members(principal.user.org_id)
        .await?)
}

/// The organization's pending invitations, for its managers.
pub async fn invitations(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<Invitation>, DomainError> {
    require_manager(principal)?;
    Ok(state
        .database
        .teams()
        .invitations(principal.user.org_id, OffsetDateTime::now_utc())
        .await?)
}
