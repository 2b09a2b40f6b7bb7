//! The first super-admin's page (a fresh install has no account to sign in with): `serve`
//! prints a one-time link, valid for an hour, whose page creates the first account
//! ([`crate::application::installation`]). The same is possible from a terminal with
//! `mailroom admin create --super-admin`.

use axum::extract::{Extension, Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::application::installation;
use crate::audit::AuditTrail;
use crate::auth::session;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;
use crate::views::layout;

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
    let created =
        installation::create_first_admin(&state, &trail, &form.token, &form.email, &form.password)
            .await
            .map_err(ApiError::from);
    match created {
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
