//! The organization in the browser: the team (members, roles, invitations, ownership), the
//! invitation link's page, API keys (the new key shown once, with a copy button), usage, and
//! the super-admin's page. Plain forms over the same functions as the JSON API.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom_core::api_keys::Scope;
use mailroom_core::org::OrgRole;
use mailroom_core::usage::{Metric, month_of};
use mailroom_core::{ApiKeyId, InvitationId, OrgId, UserId};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::application::actor::Caller;
use crate::application::{admin, keys, teams, verify};
use crate::audit::AuditTrail;
use crate::error::{DomainError, Forbidden};
use crate::extract::Principal;
use crate::extract::SuperAdmin;
use crate::pages::{FormFields, Notice, NoticeQuery, SignedIn, after, titled, when};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

fn role_options(selected: OrgRole) -> Markup {
    html! {
        @for role in [OrgRole::Member, OrgRole::Admin] {
            option value=(role.as_str()) selected[role == selected] { (role.as_str()) }
        }
    }
}

/// `GET /team`.
pub async fn team_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    render_team(&state, &nonce, &principal, query.text(), None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render_team(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let user = &principal.user;
    let teams::Overview {
        name: org_name,
        plan,
        members,
        invitations,
    } = teams::overview(state, principal).await?;
    let manages = user.org_role.manages();
    let owner = user.org_role == OrgRole::Owner;
    Ok(titled(
        nonce,
        "Team",
        notice,
        error,
        html! {
            p { "Organization " strong #org-name { (org_name) } " · plan " (plan.name) " · your role " strong #your-role { (user.org_role.as_str()) } }
            section aria-labelledby="members-heading" {
                h2 #members-heading { "Members" }
                table #members {
                    thead { tr { th { "Email" } th { "Role" } th { "Since" } th { "Two-factor" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for member in &members {
                            tr data-member=(member.email) {
                                td { (member.email) }
                                td.role { (member.role.as_str()) }
                                td { (when(member.joined_at)) }
                                td { @if member.mfa_enabled { "on" } @else { "off" } }
                                td {
                                    @if owner && member.role != OrgRole::Owner {
                                        form.inline method="post" action={ "/team/members/" (member.user_id) "/role" } {
                                            label.visually-hidden for={ "role-" (member.user_id) } { "Role of " (member.email) }
                                            select id={ "role-" (member.user_id) } name="role" { (role_options(member.role)) }
                                            button.secondary type="submit" { "Change role" }
                                        }
                                    }
                                    @if manages && member.role != OrgRole::Owner && member.user_id != user.id {
                                        form.inline method="post" action={ "/team/members/" (member.user_id) "/remove" } {
                                            button.secondary type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if manages {
                section.narrow aria-labelledby="invite-heading" {
                    h2 #invite-heading { "Invite someone" }
                    @if !plan.team { p.hint { "Inviting members needs a team plan." } }
                    form method="post" action="/team/invitations" {
                        label for="invite-email" { "Email" }
                        input id="invite-email" name="email" type="email" required;
                        label for="invite-role" { "Role" }
                        select id="invite-role" name="role" { (role_options(OrgRole::Member)) }
                        button type="submit" { "Send invitation" }
                    }
                }
                section aria-labelledby="invitations-heading" {
                    h2 #invitations-heading { "Pending invitations" }
                    table #invitations {
                        thead { tr { th { "Email" } th { "Role" } th { "Expires" } th { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for invitation in &invitations {
                                tr {
                                    td { (invitation.email) }
                                    td { (invitation.role.as_str()) }
                                    td { (when(invitation.expires_at)) }
                                    td {
                                        form.inline method="post" action={ "/team/invitations/" (invitation.id) "/revoke" } {
                                            button.secondary type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if owner && members.len() > 1 {
                section.narrow aria-labelledby="transfer-heading" {
                    h2 #transfer-heading { "Transfer ownership" }
                    form method="post" action="/team/transfer" {
                        label for="transfer-to" { "New owner" }
                        select id="transfer-to" name="user_id" {
                            @for member in members.iter().filter(|m| m.user_id != user.id) {
                                option value=(member.user_id) { (member.email) }
                            }
                        }
                        button.secondary type="submit" { "Make them the owner" }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn role_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<UserId>,
    Form(form): Form<RoleForm>,
) -> Response {
    let outcome = match teams::parse_role(&form.role) {
        Ok(role) => teams::change_role_of(&state, &trail, &principal, id, role).await,
        Err(error) => Err(error),
    };
    after(
        "/team",
        outcome.map(|()| Notice::RoleChanged),
        async |error| render_team(&state, &nonce, &principal, None, error).await,
    )
    .await
}

pub async fn remove_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<UserId>,
) -> Response {
    let outcome = teams::remove_of(&state, &trail, &principal, id).await;
    after(
        "/team",
        outcome.map(|()| Notice::MemberRemoved),
        async |error| render_team(&state, &nonce, &principal, None, error).await,
    )
    .await
}

#[derive(Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

pub async fn invite_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<InviteForm>,
) -> Response {
    let outcome = match teams::parse_role(&form.role) {
        Ok(role) => teams::invite_of(&state, &trail, &principal, &form.email, role)
            .await
            .map(drop),
        Err(error) => Err(error),
    };
    after(
        "/team",
        outcome.map(|()| Notice::InvitationSent),
        async |error| render_team(&state, &nonce, &principal, None, error).await,
    )
    .await
}

pub async fn revoke_invitation_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<InvitationId>,
) -> Response {
    let outcome = teams::revoke_invitation_of(&state, &trail, &principal, id).await;
    after(
        "/team",
        outcome.map(|()| Notice::InvitationRevoked),
        async |error| render_team(&state, &nonce, &principal, None, error).await,
    )
    .await
}

#[derive(Deserialize)]
pub struct TransferForm {
    user_id: Uuid,
}

pub async fn transfer_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<TransferForm>,
) -> Response {
    let outcome =
        teams::transfer_of(&state, &trail, &principal, UserId::from_uuid(form.user_id)).await;
    after(
        "/team",
        outcome.map(|()| Notice::OwnershipTransferred),
        async |error| render_team(&state, &nonce, &principal, None, error).await,
    )
    .await
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /invitations/accept?token=…`: the emailed link.
pub async fn accept_page(
    Extension(nonce): Extension<CspNonce>,
    principal: Result<Principal, ApiError>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let content = match principal {
        Ok(principal) => accept_form(&query.token, &principal),
        Err(_) => html! {
            p { "Sign in (or create an account) with the address the invitation was sent to, then open the link from the email again." }
            p { a href="/signin" { "Sign in" } " · " a href="/signup" { "Create an account" } }
        },
    };
    titled(&nonce, "Join an organization", None, None, content)
}

fn accept_form(token: &str, principal: &Principal) -> Markup {
    html! {
        p { "Signed in as " strong { (principal.user.email) } "." }
        form method="post" action="/invitations/accept" {
            input type="hidden" name="token" value=(token);
            label.checkbox {
                input type="checkbox" name="leave_current_org" value="on";
                " Leave my current organization (a personal one is deleted, with its data)"
            }
            button type="submit" { "Accept the invitation" }
        }
    }
}

#[derive(Deserialize)]
pub struct AcceptForm {
    token: SecretString,
    leave_current_org: Option<String>,
}

pub async fn accept_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<AcceptForm>,
) -> Response {
    match teams::accept_with(
        &state,
        &trail,
        &principal,
        &form.token,
        form.leave_current_org.is_some(),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/team?notice={}", Notice::Welcome.code())).into_response(),
        Err(error) => titled(
            &nonce,
            "Join an organization",
            None,
            Some(&ApiError::from(error)),
            accept_form(form.token.expose_secret(), &principal),
        ),
    }
}

/// `GET /api-keys`.
pub async fn keys_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    render_keys(&state, &nonce, &principal, query.text(), None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render_keys(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
    new_key: Option<&SecretString>,
) -> Result<Response, ApiError> {
    let keys = keys::list(state, principal.user.org_id).await?;
    Ok(titled(
        nonce,
        "API keys",
        notice,
        error,
        html! {
            @if let Some(key) = new_key {
                section.notice role="status" aria-labelledby="new-key-heading" {
                    h2 #new-key-heading { "Your new key" }
                    p { "Copy it now: it is shown this once, and mailroom keeps only a hash of it." }
                    p { code #new-key { (key.expose_secret()) } }
                    button.secondary type="button" data-copy="new-key" { "Copy" }
                }
            }
            table #api-keys {
                thead { tr { th { "Name" } th { "Key" } th { "Scopes" } th { "Created" } th { "Last used" } th { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for key in keys.iter().filter(|key| key.revocation.is_none()) {
                        tr data-key=(key.name) {
                            td { (key.name) }
                            td { code { "mr_live_" (key.lookup_id) "_…" } }
                            td { (key.scopes.to_stored()) }
                            td { (when(key.created_at)) }
                            td { (key.last_used_at.map(when).unwrap_or_else(|| "never".into())) " " (key.last_used_ip.as_deref().unwrap_or("")) }
                            td {
                                form.inline method="post" action={ "/api-keys/" (key.id) "/revoke" } {
                                    button.secondary type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            @if keys.iter().any(|key| key.revocation.is_some()) {
                h2 #revoked-heading { "Revoked keys" }
                table #revoked-keys aria-labelledby="revoked-heading" {
                    thead { tr { th { "Name" } th { "Key" } th { "Revoked" } th { "Why" } } }
                    tbody {
                        @for key in &keys {
                            @if let (Some(reason), Some(at)) = (key.revocation, key.revoked_at) {
                                tr data-key=(key.name) {
                                    td { (key.name) }
                                    td { code { "mr_live_" (key.lookup_id) "_…" } }
                                    td { (when(at)) }
                                    td { (reason.describe()) }
                                }
                            }
                        }
                    }
                }
            }
            section.narrow aria-labelledby="create-heading" {
                h2 #create-heading { "Create a key" }
                form method="post" action="/api-keys" {
                    label for="key-name" { "Name" }
                    input id="key-name" name="name" required maxlength="100";
                    fieldset {
                        legend { "Scopes" }
                        @for scope in Scope::ALL {
                            label.checkbox {
                                input type="checkbox" name="scope" value=(scope.as_str());
                                " " (scope.as_str())
                            }
                        }
                    }
                    button type="submit" { "Create key" }
                }
            }
        },
    ))
}

pub async fn create_key_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    body: axum::body::Bytes,
) -> Response {
    // Repeated `scope` fields, one per ticked box.
    let fields = FormFields::parse(&body);
    let name = fields.one("name");
    let scopes = fields.all("scope");
    let shown = principal.clone();
    let spec = keys::KeySpec {
        name: &name,
        scopes: &scopes,
        expires_at: None,
        requests_per_minute: None,
        requests_per_day: None,
    };
    match keys::create_of(&state, &trail, principal, &spec).await {
        Ok((_, raw)) => render_keys(&state, &nonce, &shown, None, None, Some(&raw)).await,
        Err(error) => {
            let error = ApiError::from(error);
            render_keys(&state, &nonce, &shown, None, Some(&error), None).await
        }
    }
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn revoke_key_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<ApiKeyId>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let outcome = keys::revoke_of(&state, &trail, &caller, id).await;
    after(
        "/api-keys",
        outcome.map(|()| Notice::KeyRevoked),
        async |error| render_keys(&state, &nonce, &principal, None, error, None).await,
    )
    .await
}

/// `GET /usage`.
pub async fn usage_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
) -> Response {
    let org_id = principal.user.org_id;
    let (start, resets_at) = month_of(OffsetDateTime::now_utc());
    let rendered = async {
        let (plan, used) = verify::usage(&state, org_id, Metric::Verifications, start).await?;
        Ok::<_, ApiError>(titled(
            &nonce,
            "Usage",
            None,
            None,
            html! {
                table #usage {
                    thead { tr { th { "Metric" } th { "Used" } th { "Quota" } th { "Left" } th { "Resets" } } }
                    tbody {
                        tr {
                            td { (Metric::Verifications.as_str()) }
                            td { (used) }
                            td { (plan.verifications_per_month) }
                            td { ((plan.verifications_per_month - used).max(0)) }
                            td { (when(resets_at)) }
                        }
                    }
                }
                p.hint { "Plan " (plan.name) ": " (plan.key_requests_per_minute) " requests a minute and " (plan.key_requests_per_day) " a day per API key." }
            },
        ))
    };
    rendered.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /admin` (super-admins).
pub async fn admin_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(admin): SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    if !admin.is_super_admin() {
        return ApiError::from(DomainError::Forbidden(Forbidden::SuperAdminOnly)).into_response();
    }
    render_admin(&state, &nonce, &admin, query.text(), None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render_admin(
    state: &AppState,
    nonce: &CspNonce,
    admin: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let orgs = admin::orgs(state, admin).await?;
    let users = admin::users(state, admin).await?;
    let plans = admin::plans(state, admin).await?;
    let now = OffsetDateTime::now_utc();
    Ok(titled(
        nonce,
        "Administration",
        notice,
        error,
        html! {
            section aria-labelledby="orgs-heading" {
                h2 #orgs-heading { "Organizations" }
                table #orgs {
                    thead { tr { th { "Name" } th { "Members" } th { "Plan" } th { "Created" } } }
                    tbody {
                        @for org in &orgs {
                            tr {
                                td { (org.name) }
                                td { (org.members) }
                                td {
                                    form.inline method="post" action={ "/admin/orgs/" (org.id) "/plan" } {
                                        label.visually-hidden for={ "plan-" (org.id) } { "Plan" }
                                        select id={ "plan-" (org.id) } name="plan" {
                                            @for plan in &plans {
                                                option value=(plan.id) selected[org.plan_id == plan.id] { (plan.name) }
                                            }
                                        }
                                        button.secondary type="submit" { "Set" }
                                    }
                                }
                                td { (when(org.created_at)) }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="users-heading" {
                h2 #users-heading { "Users" }
                table #users {
                    thead { tr { th { "Email" } th { "Role" } th { "Status" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for user in &users {
                            tr {
                                td { (user.email) }
                                td { (user.platform_role.as_str()) " · " (user.org_role.as_str()) }
                                td {
                                    @if user.disabled { "disabled" }
                                    @else if let Some(until) = user.locked_until(now) {
                                        "locked until " time datetime=(when(until)) { (when(until)) }
                                    }
                                    @else { "active" }
                                }
                                td {
                                    @if user.locked_until(now).is_some() {
                                        form.inline method="post" action={ "/admin/users/" (user.id) "/unlock" } {
                                            button.secondary type="submit" { "Unlock" }
                                        }
                                        " "
                                    }
                                    form.inline method="post" action={ "/admin/users/" (user.id) "/disabled" } {
                                        input type="hidden" name="disabled" value=(if user.disabled { "false" } else { "true" });
                                        button.secondary type="submit" { @if user.disabled { "Enable" } @else { "Disable" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct PlanForm {
    plan: String,
}

pub async fn plan_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<OrgId>,
    Form(form): Form<PlanForm>,
) -> Response {
    let outcome = admin::set_plan_of(&state, &trail, &admin, id, &form.plan).await;
    after("/admin", outcome.map(|()| Notice::PlanSet), async |error| {
        render_admin(&state, &nonce, &admin, None, error).await
    })
    .await
}

#[derive(Deserialize)]
pub struct DisabledForm {
    disabled: bool,
}

pub async fn disabled_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<UserId>,
    Form(form): Form<DisabledForm>,
) -> Response {
    let outcome = admin::set_disabled_of(&state, &trail, &admin, id, form.disabled).await;
    after("/admin", outcome.map(|()| Notice::Done), async |error| {
        render_admin(&state, &nonce, &admin, None, error).await
    })
    .await
}

pub async fn unlock_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SuperAdmin(admin): SuperAdmin,
    Path(id): Path<UserId>,
) -> Response {
    let outcome = admin::unlock_of(&state, &trail, &admin, id).await;
    after(
        "/admin",
        outcome.map(|()| Notice::UserUnlocked),
        async |error| render_admin(&state, &nonce, &admin, None, error).await,
    )
    .await
}
