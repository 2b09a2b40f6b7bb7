//! The second factor in the browser: the sign-in step, and on the security page the setup
//! (QR code as inline SVG), backup codes (shown once, downloadable as text), trusted devices
//! and turning it off. Plain forms over the same functions as the JSON API.

use axum::extract::{Extension, Form, Path, State};
use axum::response::Response;
use mailroom_core::TrustedDeviceId;
use maud::{Markup, PreEscaped, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::application::second_factor::Proof;
use crate::application::two_factor;
use crate::audit::AuditTrail;
use crate::error::DomainError;
use crate::extract::Principal;
use crate::extract::principal::SetupPrincipal;
use crate::pages::Notice;
use crate::pages::page;
use crate::pages::security::back_to_security;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

#[derive(Deserialize)]
pub struct CodeForm {
    code: SecretString,
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
        Err(error) => back_to_security(&state, &nonce, &principal, Err(error)).await,
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
    Path(id): Path<TrustedDeviceId>,
) -> Response {
    let outcome = two_factor::forget_device(&state, &trail, &principal, id)
        .await
        .map(|()| Notice::BrowserForgotten);
    back_to_security(&state, &nonce, &principal, outcome).await
}
