//! The account pages: sign-up, confirming the email, sign-in (with its second-factor step),
//! forgotten password. Plain HTML forms posting to the server, which answers with a redirect or
//! the same form and what went wrong: they work without JavaScript, under the strict CSP. Each
//! form calls the same operations as the JSON API, so both keep the same promises.

use axum::extract::{Extension, Form, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::application::accounts;
use crate::application::second_factor::Proof;
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::error::DomainError;
use crate::pages::{Notice, notice, page, redirect_with_notice, signed_in_redirect};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

#[derive(Deserialize)]
pub struct EmailQuery {
    #[serde(default)]
    email: String,
    #[serde(default)]
    pub(crate) notice: Option<String>,
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

fn email_field(value: &str) -> Markup {
    html! {
        label for="email" { "Email" }
        input id="email" name="email" type="email" autocomplete="email" value=(value) required;
    }
}

pub(crate) fn password_field(name: &str, label: &str, autocomplete: &str) -> Markup {
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
        self.show_with(nonce, query, |form| form)
    }

    /// The page, its form wrapped by `frame`.
    fn show_with(
        &self,
        nonce: &CspNonce,
        query: &EmailQuery,
        frame: impl FnOnce(Markup) -> Markup,
    ) -> Response {
        page(
            nonce,
            self.title,
            None,
            notice::text_of(query.notice.as_deref()),
            frame((self.form)(&query.email)),
        )
    }

    /// `then` on success; otherwise the form again, filled in for `email`, with the error.
    fn after<T>(
        &self,
        nonce: &CspNonce,
        email: &str,
        outcome: Result<T, impl Into<ApiError>>,
        then: impl FnOnce(T) -> Response,
    ) -> Response {
        match outcome.map_err(Into::into) {
            Ok(value) => then(value),
            Err(error) => page(nonce, self.title, Some(&error), None, (self.form)(email)),
        }
    }
}

/// The sign-in page with the error that ended an attempt elsewhere (the second step, a
/// provider's callback).
pub(crate) fn signin_refused(state: &AppState, nonce: &CspNonce, error: &ApiError) -> Response {
    page(
        nonce,
        SIGNIN.title,
        Some(error),
        None,
        with_providers(state, signin_form("")),
    )
}

/// A form with a "Continue with …" button for each configured provider above it.
fn with_providers(state: &AppState, form: Markup) -> Markup {
    html! { (provider_buttons(state)) (form) }
}

/// "Continue with …" for each configured provider, on the sign-in and sign-up pages.
fn provider_buttons(state: &AppState) -> Markup {
    html! {
        @let providers: Vec<_> = state.identity_providers.all().collect();
        @if !providers.is_empty() {
            div.providers {
                @for provider in providers {
                    a.button.secondary href=(format!("/v1/auth/oidc/{}/start", provider.name)) {
                        "Continue with " (provider.display_name)
                    }
                }
            }
            p.hint.divider { "or with your email" }
        }
    }
}

pub async fn signup_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    SIGNUP.show_with(&nonce, &query, |form| with_providers(&state, form))
}

pub async fn signup_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    Form(form): Form<CredentialsForm>,
) -> Response {
    let outcome = accounts::sign_up(&state, &trail, &form.email, &form.password).await;
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
    let outcome = accounts::confirm(
        &state,
        &trail,
        session::presented(&headers),
        &form.email,
        &form.code,
    )
    .await;
    CONFIRM.after(&nonce, &form.email, outcome, |(_, token)| {
        signed_in_redirect(&token, "/security")
    })
}

pub async fn resend_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    Form(form): Form<EmailForm>,
) -> Response {
    let outcome = accounts::resend(&state, &form.email).await;
    CONFIRM.after(&nonce, &form.email, outcome, |()| {
        redirect_with_notice("/confirm", &form.email, Notice::CodeResent)
    })
}

pub async fn signin_page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<EmailQuery>,
) -> Response {
    SIGNIN.show_with(&nonce, &query, |form| with_providers(&state, form))
}

pub async fn signin_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    headers: HeaderMap,
    Form(form): Form<CredentialsForm>,
) -> Response {
    let outcome = accounts::sign_in(
        &state,
        &trail,
        session::presented(&headers),
        &form.email,
        &form.password,
    )
    .await;
    SIGNIN.after(&nonce, &form.email, outcome, |signed_in| match signed_in {
        accounts::SignIn::Complete { session, .. } => signed_in_redirect(&session, "/security"),
        accounts::SignIn::SecondFactorOwed { mfa_token } => {
            second_factor_page(&nonce, &mfa_token, None)
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
    let outcome = accounts::forgot(&state, &form.email).await;
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
    let outcome =
        accounts::reset(&state, &trail, &form.email, &form.code, &form.new_password).await;
    RESET.after(&nonce, &form.email, outcome, |()| {
        redirect_with_notice("/signin", &form.email, Notice::PasswordReset)
    })
}

#[derive(Deserialize)]
pub struct SecondFactorForm {
    mfa_token: SecretString,
    #[serde(default)]
    code: String,
    #[serde(default)]
    backup_code: String,
    remember_device: Option<String>,
}

/// The second step of signing in, carrying the challenge token in the form (never in a URL).
pub fn second_factor_page(
    nonce: &CspNonce,
    mfa_token: &SecretString,
    error: Option<&ApiError>,
) -> Response {
    page(
        nonce,
        "Two-factor authentication",
        error,
        None,
        html! {
            form method="post" action="/signin/2fa" {
                input type="hidden" name="mfa_token" value=(mfa_token.expose_secret());
                label for="code" { "6-digit code from your authenticator app" }
                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" autofocus;
                details {
                    summary { "Use a backup code instead" }
                    label for="backup_code" { "Backup code" }
                    input id="backup_code" name="backup_code" autocomplete="off" maxlength="16";
                }
                label.checkbox {
                    input type="checkbox" name="remember_device" value="on";
                    " Trust this browser for 30 days"
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub async fn second_factor_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    headers: HeaderMap,
    Form(form): Form<SecondFactorForm>,
) -> Response {
    let code = non_empty(&form.code);
    let backup_code = non_empty(&form.backup_code);
    let outcome = match Proof::from_fields(code.as_ref(), backup_code.as_ref()) {
        Ok(proof) => {
            accounts::complete_second_factor(
                &state,
                &trail,
                session::presented(&headers),
                &form.mfa_token,
                proof,
                form.remember_device.is_some(),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok((_, session, trusted)) => {
            let mut response = signed_in_redirect(&session, "/security");
            if let Some(token) = trusted {
                match session::trusted_device_cookie(&token) {
                    Ok(cookie) => response.headers_mut().append(header::SET_COOKIE, cookie),
                    Err(error) => return ApiError::from(error).into_response(),
                };
            }
            response
        }
        Err(DomainError::InvalidMfaToken) => {
            redirect_with_notice("/signin", "", Notice::SignInAgain)
        }
        Err(error @ DomainError::Locked { .. }) => {
            crate::pages::account::signin_refused(&state, &nonce, &ApiError::from(error))
        }
        // The next try goes with the fresh token that came with the error.
        Err(DomainError::SecondFactorRefused { refused, mfa_token }) => {
            second_factor_page(&nonce, &mfa_token, Some(&ApiError::from(*refused)))
        }
        Err(error) => second_factor_page(&nonce, &form.mfa_token, Some(&ApiError::from(error))),
    }
}

fn non_empty(value: &str) -> Option<SecretString> {
    let value = value.trim();
    (!value.is_empty()).then(|| SecretString::from(value))
}
