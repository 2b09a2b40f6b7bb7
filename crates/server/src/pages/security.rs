//! The security page: the password, the linked sign-in providers, the sessions and recent
//! activity, the second factor's state, and deleting the account. Plain forms over the same operations as the JSON API.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom_core::{IdentityId, SessionId};
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::{accounts, identities, two_factor};
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::extract::Principal;
use crate::extract::principal::SetupPrincipal;
use crate::pages::{Notice, layout, notice};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

use crate::pages::account::{EmailQuery, password_field};
use crate::pages::redirect_with_notice;

/// `GET /security`: password, sessions and recent activity of the signed-in user.
pub async fn security_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Result<SetupPrincipal, ApiError>,
    Query(query): Query<EmailQuery>,
) -> Response {
    let Ok(SetupPrincipal(principal)) = principal else {
        return Redirect::to("/signin").into_response();
    };
    match security(
        &state,
        &nonce,
        &principal,
        notice::text_of(query.notice.as_deref()),
        None,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn security(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let sessions = accounts::sessions(state, principal).await?;
    let activity = accounts::activity(state, principal, None, 20).await?;
    let second_factor = section(state, principal).await?;
    let linked = identities::list(state, principal).await?;
    let when = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
    let markup = layout(
        nonce,
        "Security",
        html! {
            h1 { "Security" }
            p { "Signed in as " strong #account-email { (principal.user.email) } "." }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @if let Some(error) = error { p.error role="alert" { (error.detail()) } }
            section.narrow aria-labelledby="password-heading" {
                h2 #password-heading { "Password" }
                @if principal.user.password_hash.is_some() {
                    form method="post" action="/security/password" {
                        (password_field("current_password", "Current password", "current-password"))
                        (password_field("new_password", "New password", "new-password"))
                        button type="submit" { "Change password" }
                    }
                } @else {
                    p.hint {
                        "You sign in with a provider and have no password. "
                        a href="/forgot" { "Set one" } " with a code sent to your address."
                    }
                }
            }
            (linked_section(state, &linked))
            (second_factor)
            section aria-labelledby="sessions-heading" {
                h2 #sessions-heading { "Sessions" }
                table #sessions {
                    thead { tr { th { "Browser" } th { "Address" } th { "Signed in" } th { "Last seen" } th { span.visually-hidden { "Action" } } } }
                    tbody {
                        @for session in &sessions {
                            @let current = Some(session.id) == principal.session_id();
                            tr data-session=(session.id) {
                                td { (session.user_agent.as_deref().unwrap_or("unknown")) @if current { " (this browser)" } }
                                td { (session.ip.as_deref().unwrap_or("")) }
                                td { (when(session.created_at)) }
                                td { (when(session.last_seen_at)) }
                                td {
                                    @if !current {
                                        form.inline method="post" action={ "/security/sessions/" (session.id) "/revoke" } {
                                            button.secondary type="submit" { "Sign out" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action="/security/sessions/revoke-others" {
                    button.secondary type="submit" { "Sign out every other session" }
                }
            }
            section aria-labelledby="activity-heading" {
                h2 #activity-heading { "Recent activity" }
                ul #activity {
                    @for entry in &activity {
                        li { (when(entry.occurred_at())) " · " (entry.action) " · " (entry.outcome) " · " (entry.ip.as_deref().unwrap_or("")) }
                    }
                }
            }
            section.narrow aria-labelledby="data-heading" {
                h2 #data-heading { "Your data" }
                p { a #export-link href="/v1/me/export" download { "Download what mailroom holds about your account (JSON)" } }
                form #delete-account method="post" action="/security/delete" {
                    label for="confirm" { "To delete your account and everything of yours, type its email address" }
                    input id="confirm" name="confirm" type="email" autocomplete="off" required;
                    button.danger type="submit" { "Delete my account" }
                }
            }
            form method="post" action="/signout" {
                button.secondary type="submit" { "Sign out" }
            }
        },
    );
    let status = error.map_or(StatusCode::OK, ApiError::status);
    Ok((status, markup).into_response())
}

/// The security page again after a form on it: its notice, or its error.
pub(crate) async fn back_to_security(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    outcome: Result<Notice, impl Into<ApiError>>,
) -> Response {
    crate::pages::after("/security", outcome.map_err(Into::into), async |error| {
        security(state, nonce, principal, None, error).await
    })
    .await
}

pub async fn password_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<PasswordForm>,
) -> Response {
    let outcome = accounts::change_password_of(
        &state,
        &trail,
        &principal,
        &form.current_password,
        &form.new_password,
    )
    .await
    .map(|()| Notice::PasswordChanged);
    back_to_security(&state, &nonce, &principal, outcome).await
}

pub async fn revoke_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<SessionId>,
) -> Response {
    let outcome = accounts::revoke_one(&state, &trail, &principal, id)
        .await
        .map(|()| Notice::SessionSignedOut);
    back_to_security(&state, &nonce, &principal, outcome).await
}

pub async fn revoke_others_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
) -> Response {
    let outcome = accounts::revoke_others(&state, &trail, &principal)
        .await
        .map(|()| Notice::OtherSessionsSignedOut);
    back_to_security(&state, &nonce, &principal, outcome).await
}

pub async fn signout_submit(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
) -> Response {
    match accounts::sign_out(&state, &trail, &principal).await {
        Ok(()) => {
            let mut response = Redirect::to("/signin").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::cleared_cookie());
            response
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub async fn delete_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    Form(form): Form<DeleteForm>,
) -> Response {
    match accounts::delete(&state, &trail, &principal, &form.confirm).await {
        Ok(()) => {
            let mut response = redirect_with_notice("/signup", "", Notice::AccountDeleted);
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::cleared_cookie());
            response
        }
        Err(error) => back_to_security(&state, &nonce, &principal, Err(error)).await,
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: SecretString,
    new_password: SecretString,
}

/// The two-factor section of the security page.
pub async fn section(state: &AppState, principal: &Principal) -> Result<Markup, ApiError> {
    let user = &principal.user;
    if !user.mfa_enabled {
        return Ok(html! {
            section.narrow aria-labelledby="mfa-heading" {
                h2 #mfa-heading { "Two-factor authentication" }
                p #mfa-status { "Off." @if principal.owes_second_factor_setup() { " Your role requires it: set it up to continue." } }
                form method="post" action="/security/2fa/setup" {
                    button type="submit" { "Set up an authenticator app" }
                }
            }
        });
    }
    let left = two_factor::backup_codes_left(state, principal).await?;
    let devices = two_factor::trusted_devices(state, principal).await?;
    let when = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
    Ok(html! {
        section aria-labelledby="mfa-heading" {
            h2 #mfa-heading { "Two-factor authentication" }
            p #mfa-status { "On. " (left) " backup codes left." }
            form.inline method="post" action="/security/2fa/backup-codes" {
                button.secondary type="submit" { "Make new backup codes" }
            }
            h3 { "Trusted browsers" }
            table #trusted-devices {
                thead { tr { th { "Browser" } th { "Address" } th { "Trusted since" } th { "Until" } th { span.visually-hidden { "Action" } } } }
                tbody {
                    @for device in &devices {
                        tr data-device=(device.id) {
                            td { (device.user_agent.as_deref().unwrap_or("unknown")) }
                            td { (device.ip) }
                            td { (when(device.created_at)) }
                            td { (when(device.expires_at)) }
                            td {
                                form.inline method="post" action={ "/security/trusted-devices/" (device.id) "/revoke" } {
                                    button.secondary type="submit" { "Forget" }
                                }
                            }
                        }
                    }
                }
            }
            form.narrow method="post" action="/security/2fa/disable" {
                label for="disable-code" { "Code from your authenticator app, to turn two-factor off" }
                input id="disable-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required;
                button.secondary type="submit" { "Turn off" }
            }
        }
    })
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

/// The linked providers: each removable, and a button to link each other one.
fn linked_section(state: &AppState, linked: &[mailroom_storage::identities::Identity]) -> Markup {
    let providers: Vec<_> = state.identity_providers.all().collect();
    let display_name = |name: &str| {
        state
            .identity_providers
            .get(name)
            .map_or_else(|| name.to_owned(), |p| p.settings.display_name.clone())
    };
    html! {
        @if !providers.is_empty() || !linked.is_empty() {
            section #sign-in-providers {
                h2 { "Sign-in providers" }
                @if linked.is_empty() {
                    p.hint { "No provider is linked: you sign in with your email and password." }
                } @else {
                    table {
                        thead { tr { th { "Provider" } th { "Address" } th { "Linked" } th { "Last used" } th {} } }
                        tbody {
                            @for identity in linked {
                                tr {
                                    td { (display_name(&identity.provider)) }
                                    td { (identity.email) }
                                    td { (crate::pages::when(identity.created_at)) }
                                    td { (crate::pages::when(identity.last_used_at)) }
                                    td {
                                        form.inline method="post" action=(format!("/security/identities/{}/unlink", identity.id)) {
                                            button.link type="submit" { "Unlink" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @for provider in &providers {
                    @if !linked.iter().any(|identity| identity.provider == provider.name) {
                        form.inline method="post" action="/security/identities" {
                            input type="hidden" name="provider" value=(provider.name);
                            button.secondary type="submit" { "Link " (provider.display_name) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LinkForm {
    provider: String,
}

/// `POST /security/identities`: starts linking a provider to the signed-in account.
pub async fn link_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Form(form): Form<LinkForm>,
) -> Response {
    let started = identities::start_link(&state, &principal, &form.provider).await;
    match crate::pages::to_provider(&state, StatusCode::SEE_OTHER, started) {
        Ok(response) => response,
        Err(error) => back_to_security(&state, &nonce, &principal, Err(error)).await,
    }
}

/// `POST /security/identities/{id}/unlink`.
pub async fn unlink_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<IdentityId>,
) -> Response {
    let outcome = identities::unlink(&state, &trail, &principal, id)
        .await
        .map(|()| Notice::IdentityUnlinked);
    back_to_security(&state, &nonce, &principal, outcome).await
}
