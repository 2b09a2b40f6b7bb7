//! The second factor in the browser: the sign-in step, and on the security page the setup
//! (QR code as inline SVG), backup codes (shown once, downloadable as text), trusted devices
//! and turning it off. Plain forms over the same functions as the JSON API.

use axum::extract::{Extension, Form, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::application::second_factor::Proof;
use crate::audit::AuditTrail;
use crate::error::DomainError;
use crate::extract::Principal;
use crate::extract::principal::SetupPrincipal;
use crate::pages::Notice;
use crate::pages::account::{back_to_security, page, redirect_with_notice, signed_in_redirect};
use crate::problem::ApiError;
use crate::routes::{auth, two_factor};
use crate::state::AppState;
use crate::views::CspNonce;

#[derive(Deserialize)]
pub struct SecondFactorForm {
    mfa_token: SecretString,
    #[serde(default)]
    code: String,
    #[serde(default)]
    backup_code: String,
    remember_device: Option<String>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: SecretString,
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

pub async fn signin_submit(
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
            auth::complete_second_factor(
                &state,
                &trail,
                &headers,
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
            if let Some(cookie) = trusted {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(DomainError::InvalidMfaToken) => {
            redirect_with_notice("/signin", "", Notice::SignInAgain)
        }
        Err(error @ DomainError::Locked { .. }) => {
            crate::pages::account::signin_refused(&nonce, &ApiError::from(error))
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
    let now = OffsetDateTime::now_utc();
    let left = state
        .database
        .unused_backup_codes(user.id)
        .await
        .map_err(ApiError::internal)?;
    let devices = state
        .database
        .trusted_devices(user.id, now)
        .await
        .map_err(ApiError::internal)?;
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

/// Scan this, then enter the first code.
pub async fn setup_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SetupPrincipal(principal): SetupPrincipal,
) -> Response {
    match two_factor::begin(&state, &principal).await {
        Ok(enrollment) => page(
            &nonce,
            "Set up two-factor authentication",
            None,
            None,
            html! {
                p { "Scan this code with your authenticator app, or type in the key below." }
                figure #qr { (PreEscaped(&enrollment.qr_svg)) }
                p { "Key: " code #totp-secret { (enrollment.secret.expose_secret()) } }
                (confirm_form())
            },
        ),
        Err(error) => back_to_security(&state, &nonce, &principal, Err(error)).await,
    }
}

fn confirm_form() -> Markup {
    html! {
        form method="post" action="/security/2fa/confirm" {
            label for="code" { "6-digit code from the app" }
            input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required autofocus;
            button type="submit" { "Turn on" }
        }
    }
}

pub async fn confirm_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    Form(form): Form<CodeForm>,
) -> Response {
    match two_factor::confirm_with(&state, &trail, &principal, &form.code).await {
        Ok(codes) => backup_codes_page(&nonce, "Two-factor authentication is on", &codes),
        Err(error @ DomainError::InvalidCode) => page(
            &nonce,
            "Set up two-factor authentication",
            Some(&ApiError::from(error)),
            None,
            confirm_form(),
        ),
        Err(error) => back_to_security(&state, &nonce, &principal, Err(error.into())).await,
    }
}

pub async fn backup_codes_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
) -> Response {
    match two_factor::regenerate(&state, &trail, &principal).await {
        Ok(codes) => backup_codes_page(&nonce, "New backup codes", &codes),
        Err(error) => back_to_security(&state, &nonce, &principal, Err(error)).await,
    }
}

/// The codes, once: on the page and as a text file to keep.
fn backup_codes_page(nonce: &CspNonce, title: &str, codes: &[String]) -> Response {
    let text = codes.join("\n") + "\n";
    let download = format!(
        "data:text/plain;charset=utf-8,{}",
        url::form_urlencoded::byte_serialize(text.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    );
    page(
        nonce,
        title,
        None,
        Some(
            "Each backup code signs you in once when you do not have your app. Keep them somewhere safe: they are not shown again.",
        ),
        html! {
            ol #backup-codes { @for code in codes { li { code { (code) } } } }
            p { a #download-codes href=(download) download="mailroom-backup-codes.txt" { "Download as a text file" } }
            p { a href="/security" { "Done" } }
        },
    )
}

pub async fn disable_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SetupPrincipal(principal): SetupPrincipal,
    Form(form): Form<CodeForm>,
) -> Response {
    let outcome = two_factor::disable_with(&state, &trail, &principal, Proof::Totp(&form.code))
        .await
        .map(|()| Notice::TwoFactorOff);
    back_to_security(&state, &nonce, &principal, outcome).await
}

pub async fn forget_device_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Response {
    let outcome = two_factor::forget_device(&state, &trail, &principal, id)
        .await
        .map(|()| Notice::BrowserForgotten);
    back_to_security(&state, &nonce, &principal, outcome).await
}
