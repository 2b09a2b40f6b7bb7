//! The first super-admin (a fresh install has no account to sign in with): `serve` prints a
//! one-time link, valid for an hour, whose page creates the first account. The same is
//! possible from a terminal with `mailroom admin create --super-admin`.

use axum::extract::{Extension, Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::accounts::SETUP_TOKEN_TTL;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_storage::Database;
use mailroom_storage::accounts::{PlatformRole, User};
use maud::html;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use crate::application::accounts;
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::error::{DomainError, Forbidden};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;
use crate::views::layout;

/// With no account yet, a fresh setup link (replacing any earlier one); otherwise `None`.
pub async fn setup_link(database: &Database, public_url: &Url) -> anyhow::Result<Option<Url>> {
    if database.accounts().has_accounts().await? {
        return Ok(None);
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = URL_SAFE_NO_PAD.encode(secret);
    let expires_at = OffsetDateTime::now_utc() + SETUP_TOKEN_TTL;
    database
        .accounts()
        .save_setup_token(&session::token_hash(&token), expires_at)
        .await?;
    let mut link = public_url.join("/setup")?;
    link.query_pairs_mut().append_pair("token", &token);
    Ok(Some(link))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupForm {
    token: SecretString,
    email: String,
    password: SecretString,
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET /setup?token=…`: the form.
pub async fn page(
    Extension(nonce): Extension<CspNonce>,
    Query(query): Query<TokenQuery>,
) -> Response {
    form_page(
        &nonce,
        query.token.as_deref().unwrap_or_default(),
        None,
        StatusCode::OK,
    )
}

/// `POST /setup`: creates the first super-admin, signs them in, and goes home.
pub async fn submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    Form(form): Form<SetupForm>,
) -> Response {
    match create_first_admin(&state, &trail, &form).await {
        Ok(token) => (
            [(header::SET_COOKIE, session::cookie(&token))],
            Redirect::to("/"),
        )
            .into_response(),
        Err(error) => form_page(
            &nonce,
            form.token.expose_secret(),
            Some(error.detail().to_owned()),
            error.status(),
        ),
    }
}

async fn create_first_admin(
    state: &AppState,
    trail: &AuditTrail,
    form: &SetupForm,
) -> Result<String, ApiError> {
    let account = accounts::operator_account(
        &state.passwords,
        &form.email,
        &form.password,
        PlatformRole::SuperAdmin,
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    let issued = session::issue(trail, now);
    let token_hash = session::token_hash(form.token.expose_secret());
    let event = AuditEvent {
        session_id: Some(issued.record.id),
        target: Some(account.email.clone()),
        subject: Some(account.email.clone()),
        ..trail.event(Action::SetupCompleted, Outcome::Success)
    };
    let user: User = state
        .database
        .accounts()
        .complete_setup(&token_hash, &account, &issued.record, &event, now)
        .await?
        .ok_or(DomainError::Forbidden(Forbidden::SetupTokenInvalid))?;
    tracing::info!(user_id = %user.id, "first super-admin created");
    Ok(issued.token)
}

fn form_page(nonce: &CspNonce, token: &str, error: Option<String>, status: StatusCode) -> Response {
    let markup = layout(
        nonce,
        "Set up mailroom",
        html! {
            section.narrow {
                h1 { "Set up mailroom" }
                p { "Create the first account. It becomes the platform's super-admin." }
                @if let Some(error) = &error {
                    p.error role="alert" { (error) }
                }
                form method="post" action="/setup" {
                    input type="hidden" name="token" value=(token);
                    label for="email" { "Email" }
                    input id="email" name="email" type="email" autocomplete="email" required;
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="new-password" minlength="8" maxlength="128" required;
                    p.hint { "At least 8 characters; not a common password; not your email address." }
                    button type="submit" { "Create the super-admin" }
                }
            }
        },
    );
    (status, markup).into_response()
}
