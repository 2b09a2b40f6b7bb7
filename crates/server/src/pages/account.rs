//! The account pages: sign-up, email verification, sign-in, forgotten password, and the
//! security page (password, sessions, recent activity). Plain HTML forms posting to the
//! server, which answers with a redirect or the same form and what went wrong: they work
//! without JavaScript, under the strict CSP. Each form calls the same functions as the JSON
//! API, so both keep the same promises.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom_core::SessionId;
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::audit::AuditTrail;
use crate::auth::session;
use crate::extract::Principal;
use crate::extract::principal::SetupPrincipal;
use crate::pages::{Notice, layout, notice, two_factor};
use crate::problem::ApiError;
use crate::routes::{auth, me, privacy};
use crate::state::AppState;
use crate::views::CspNonce;

#[derive(Deserialize)]
pub struct EmailQuery {
    #[serde(default)]
    email: String,
    #[serde(default)]
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct CredentialsForm {
    email: String,
    password: SecretString,
}

#[derive(Deserialize)]
pub struct CodeForm {
    email: String,
    code: SecretString,
}

#[derive(Deserialize)]
pub struct EmailForm {
    email: String,
}

#[derive(Deserialize)]
pub struct ResetForm {
    email: String,
    code: SecretString,
    new_password: SecretString,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: SecretString,
    new_password: SecretString,
}

/// A page with one form, and the error of the last attempt if there was one.
pub(crate) fn page(
    nonce: &CspNonce,
    title: &str,
    error: Option<&ApiError>,
    notice: Option<&str>,
    form: Markup,
) -> Response {
    crate::pages::titled(
        nonce,
        title,
        notice,
        error,
        html! { section.narrow { (form) } },
    )
}

fn email_field(value: &str) -> Markup {
    html! {
        label for="email" { "Email" }
        input id="email" name="email" type="email" autocomplete="email" value=(value) required;
    }
}

fn password_field(name: &str, label: &str, autocomplete: &str) -> Markup {
    html! {
        label for=(name) { (label) }
        input id=(name) name=(name) type="password" autocomplete=(autocomplete) maxlength="128" required;
    }
}

fn code_field() -> Markup {
    html! {
        label for="code" { "6-digit code from your email" }
        input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required;
    }
}

/// A redirect that also hands the browser its new session.
pub(crate) fn signed_in_redirect(token: &str, to: &str) -> Response {
    (
        [(header::SET_COOKIE, session::cookie(token))],
        Redirect::to(to),
    )
        .into_response()
}

pub(crate) fn redirect_with_notice(path: &str, email: &str, notice: Notice) -> Response {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("email", email)
        .append_pair("notice", notice.code());
    Redirect::to(&format!("{path}?{}", query.finish())).into_response()
}

fn signup_form(email: &str) -> Markup {
    html! {
        form method="post" action="/signup" {
            (email_field(email))
            (password_field("password", "Password", "new-password"))
            p.hint { "At least 8 characters; not a common password; not your email address." }
            button type="submit" { "Create account" }
        }
        p { "Already have an account? " a href="/signin" { "Sign in" } }
    }
}

fn confirm_form(email: &str) -> Markup {
    html! {
        form method="post" action="/confirm" {
            (email_field(email))
            (code_field())
            button type="submit" { "Confirm" }
        }
        form.inline method="post" action="/confirm/resend" {
            input type="hidden" name="email" value=(email);
            button.link type="submit" { "Send a new code" }
        }
    }
}

fn signin_form(email: &str) -> Markup {
    html! {
        form method="post" action="/signin" {
            (email_field(email))
            (password_field("password", "Password", "current-password"))
            button type="submit" { "Sign in" }
        }
        p { a href="/forgot" { "Forgot your password?" } " · " a href="/signup" { "Create an account" } }
    }
}

fn forgot_form(email: &str) -> Markup {
    html! {
        form method="post" action="/forgot" {
            (email_field(email))
            button type="submit" { "Email me a code" }
        }
    }
}

fn reset_form(email: &str) -> Markup {
    html! {
        form method="post" action="/reset" {
            (email_field(email))
            (code_field())
            (password_field("new_password", "New password", "new-password"))
            button type="submit" { "Set the new password" }
        }
    }
}

/// One form page: shown fresh (perhaps with a notice), or again with the error of the last
/// attempt; every form is keyed by the email address it was filled in for.
struct FormPage {
    title: &'static str,
    form: fn(&str) -> Markup,
}

const SIGNUP: FormPage = FormPage {
    title: "Create your account",
    form: signup_form,
};
const CONFIRM: FormPage = FormPage {
    title: "Confirm your email",
    form: confirm_form,
};
const SIGNIN: FormPage = FormPage {
    title: "Sign in",
    form: signin_form,
};
const FORGOT: FormPage = FormPage {
    title: "Reset your password",
    form: forgot_form,
};
const RESET: FormPage = FormPage {
    title: "Choose a new password",
    form: reset_form,
};

impl FormPage {
    fn show(&self, nonce: &CspNonce, query: &EmailQuery) -> Response {
        page(
            nonce,
            self.title,
            None,
            notice::text_of(query.notice.as_deref()),
            (self.form)(&query.email),
        )
    }

    /// `then` on success; otherwise the form again, filled in for `email`, with the error.
    fn after<T>(
        &self,
        nonce: &CspNonce,
        email: &str,
        outcome: Result<T, ApiError>,
        then: impl FnOnce(T) -> Response,
    ) -> Response {
        match outcome {
            Ok(value) => then(value),
            Err(error) => page(nonce, self.title, Some(&error), None, (self.form)(email)),
        }
    }
}

/// The sign-in page with the error that ended an attempt elsewhere (the second step).
pub(crate) fn signin_refused(nonce: &CspNonce, error: &ApiError) -> Response {
    page(nonce, SIGNIN.title, Some(error), None, signin_form(""))
}

pub async fn signup_page(
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    SIGNUP.show(&nonce, &query)
}

pub async fn signup_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    Form(form): Form<CredentialsForm>,
) -> Response {
    let outcome = auth::sign_up(&state, &trail, &form.email, &form.password).await;
    SIGNUP.after(&nonce, &form.email, outcome, |()| {
        redirect_with_notice("/confirm", &form.email, Notice::CodeSent)
    })
}

pub async fn confirm_page(
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    CONFIRM.show(&nonce, &query)
}

pub async fn confirm_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let outcome = auth::confirm(&state, &trail, &headers, &form.email, &form.code).await;
    CONFIRM.after(&nonce, &form.email, outcome, |(_, token)| {
        signed_in_redirect(&token, "/security")
    })
}

pub async fn resend_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    Form(form): Form<EmailForm>,
) -> Response {
    let outcome = auth::resend(&state, &form.email).await;
    CONFIRM.after(&nonce, &form.email, outcome, |()| {
        redirect_with_notice("/confirm", &form.email, Notice::CodeResent)
    })
}

pub async fn signin_page(
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    SIGNIN.show(&nonce, &query)
}

pub async fn signin_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    headers: HeaderMap,
    Form(form): Form<CredentialsForm>,
) -> Response {
    let outcome = auth::sign_in(&state, &trail, &headers, &form.email, &form.password).await;
    SIGNIN.after(&nonce, &form.email, outcome, |signed_in| match signed_in {
        auth::SignIn::Complete { session, .. } => signed_in_redirect(&session, "/security"),
        auth::SignIn::SecondFactorOwed { mfa_token } => {
            two_factor::second_factor_page(&nonce, &mfa_token, None)
        }
    })
}

pub async fn forgot_page(
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    FORGOT.show(&nonce, &query)
}

pub async fn forgot_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    Form(form): Form<EmailForm>,
) -> Response {
    let outcome = auth::forgot(&state, &form.email).await;
    FORGOT.after(&nonce, &form.email, outcome, |()| {
        redirect_with_notice("/reset", &form.email, Notice::ResetCodeSent)
    })
}

pub async fn reset_page(
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    RESET.show(&nonce, &query)
}

pub async fn reset_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    Form(form): Form<ResetForm>,
) -> Response {
    let outcome = auth::reset(&state, &trail, &form.email, &form.code, &form.new_password).await;
    RESET.after(&nonce, &form.email, outcome, |()| {
        redirect_with_notice("/signin", &form.email, Notice::PasswordReset)
    })
}

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
    let now = OffsetDateTime::now_utc();
    let sessions = state
        .database
        .sessions_of(principal.user.id, now)
        .await
        .map_err(ApiError::internal)?;
    let activity = state
        .database
        .audit_for_actor(principal.user.id, None, 20)
        .await
        .map_err(ApiError::internal)?;
    let second_factor = two_factor::section(state, principal).await?;
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
                form method="post" action="/security/password" {
                    (password_field("current_password", "Current password", "current-password"))
                    (password_field("new_password", "New password", "new-password"))
                    button type="submit" { "Change password" }
                }
            }
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
    outcome: Result<Notice, ApiError>,
) -> Response {
    crate::pages::after("/security", outcome, async |error| {
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
    let outcome = me::change_password_of(
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
    Path(id): Path<Uuid>,
) -> Response {
    let outcome = me::revoke_one(&state, &trail, &principal, SessionId::from_uuid(id))
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
    let outcome = me::revoke_others(&state, &trail, &principal)
        .await
        .map(|()| Notice::OtherSessionsSignedOut);
    back_to_security(&state, &nonce, &principal, outcome).await
}

pub async fn signout_submit(
    State(state): State<AppState>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
) -> Response {
    match auth::sign_out(&state, &trail, &principal).await {
        Ok(()) => {
            let mut response = Redirect::to("/signin").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::cleared_cookie());
            response
        }
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

pub async fn delete_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    Form(form): Form<DeleteForm>,
) -> Response {
    match privacy::delete(&state, &trail, &principal, &form.confirm).await {
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
