//! The browser's side of an OpenID provider's flows (docs/security.md#openid-connect): the
//! start (a redirect to the provider, with the flow's sealed cookie), the callback (signed in,
//! the second factor's step, linked, or the sign-in page with what went wrong), and linking
//! and unlinking from `/security`.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom_core::IdentityId;
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;

use crate::application::accounts::SignIn;
use crate::application::identities::{self, Callback, Finished, Started};
use crate::audit::AuditTrail;
use crate::auth::{oauth_flow, session};
use crate::extract::principal::MaybeSignedIn;
use crate::pages::account::{second_factor_page, signin_refused};
use crate::pages::{Notice, SignedIn, signed_in_redirect};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

#[derive(Deserialize)]
pub struct StartQuery {
    return_to: Option<String>,
}

/// `GET /v1/auth/oidc/{provider}/start?return_to=/path`: 302 to the provider, with the flow's
/// cookie.
pub async fn start(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(query): Query<StartQuery>,
) -> Response {
    // Another site may not start a sign-in in this browser's name (docs/security.md#csrf).
    let sent_by = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if matches!(sent_by, Some("cross-site" | "same-site")) {
        return signin_refused(&state, &nonce, &crate::extract::principal::csrf_failed());
    }
    let started = identities::start_sign_in(&state, &provider, query.return_to.as_deref()).await;
    to_provider(&state, StatusCode::FOUND, started)
        .unwrap_or_else(|error| signin_refused(&state, &nonce, &error))
}

/// Sends the browser to the provider with the flow sealed in its cookie.
pub(crate) fn to_provider(
    state: &AppState,
    status: StatusCode,
    started: Result<Started, impl Into<ApiError>>,
) -> Result<Response, ApiError> {
    let started = started.map_err(Into::into)?;
    let sealed = oauth_flow::seal(&state.identity_providers.flow_key, &started.flow)
        .map_err(ApiError::internal)?;
    Ok((
        status,
        [
            (
                header::LOCATION,
                started.authorization_url.as_str().to_owned(),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        [(header::SET_COOKIE, oauth_flow::cookie(&sealed))],
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<SecretString>,
    error: Option<String>,
    iss: Option<String>,
}

/// `GET /v1/auth/oidc/{provider}/callback?code&state`: the flow's end. Its cookie is deleted
/// whatever the outcome.
pub async fn callback(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    headers: HeaderMap,
    MaybeSignedIn(signed_in): MaybeSignedIn,
    Path(provider): Path<String>,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let flow = oauth_flow::open(&state.identity_providers.flow_key, &headers, &provider);
    let callback = Callback {
        code: query.code,
        state: query.state,
        error: query.error,
        issuer: query.iss,
    };
    let finished = identities::finish(
        &state,
        &trail,
        session::presented(&headers),
        signed_in.as_ref(),
        &provider,
        callback,
        flow,
    )
    .await;
    let mut response = match finished {
        Ok(Finished::SignedIn(signed_in, return_to)) => match *signed_in {
            SignIn::Complete { session, .. } => signed_in_redirect(&session, &return_to),
            SignIn::SecondFactorOwed { mfa_token } => second_factor_page(&nonce, &mfa_token, None),
        },
        Ok(Finished::Linked) => notice_redirect("/security", Notice::IdentityLinked),
        Err(error) => signin_refused(&state, &nonce, &ApiError::from(error)),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, oauth_flow::cleared_cookie());
    response
}

fn notice_redirect(path: &str, notice: Notice) -> Response {
    Redirect::to(&format!("{path}?notice={}", notice.code())).into_response()
}

/// The linked providers, on `/security`: each removable, and a button to link each other one.
pub(crate) fn linked_section(
    state: &AppState,
    linked: &[mailroom_storage::identities::Identity],
) -> Markup {
    let providers: Vec<_> = state.identity_providers.all().collect();
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
                                    td { (display_name(state, &identity.provider)) }
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

fn display_name(state: &AppState, provider: &str) -> String {
    state
        .identity_providers
        .get(provider)
        .map_or_else(|| provider.to_owned(), |p| p.settings.display_name.clone())
}

#[derive(Deserialize)]
pub struct LinkForm {
    provider: String,
}

/// `POST /security/identities`: starts linking a provider to the signed-in account.
pub async fn link_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Form(form): Form<LinkForm>,
) -> Response {
    let started = identities::start_link(&state, &principal, &form.provider).await;
    to_provider(&state, StatusCode::SEE_OTHER, started).unwrap_or_else(|error| {
        crate::pages::titled(
            &nonce,
            "Security",
            None,
            Some(&error),
            html! {
                p { a href="/security" { "Back to Security" } }
            },
        )
    })
}

/// `POST /security/identities/{id}/unlink`.
pub async fn unlink_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    SignedIn(principal): SignedIn,
    Path(id): Path<IdentityId>,
) -> Response {
    match identities::unlink(&state, &trail, &principal, id).await {
        Ok(()) => notice_redirect("/security", Notice::IdentityUnlinked),
        Err(error) => crate::pages::titled(
            &nonce,
            "Security",
            None,
            Some(&ApiError::from(error)),
            html! {
                p { a href="/security" { "Back to Security" } }
            },
        ),
    }
}
