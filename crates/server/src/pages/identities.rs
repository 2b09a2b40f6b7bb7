//! The browser's side of an OpenID provider's flows (docs/security.md#openid-connect): the
//! start (a redirect to the provider, with the flow's sealed cookie), the callback (signed in,
//! the second factor's step, linked, connected, or the page the flow began on with what went
//! wrong). Linking and unlinking are forms of `/security` ([`crate::pages::security`]);
//! connecting a Google account, of `/accounts` ([`crate::pages::mail_accounts`]).

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use crate::application::accounts::SignIn;
use crate::application::identities::{self, Callback, Finished};
use crate::audit::AuditTrail;
use crate::auth::oauth_flow::{self, Purpose};
use crate::auth::session;
use crate::extract::principal::MaybeSignedIn;
use crate::pages::account::{second_factor_page, signin_refused};
use crate::pages::{Notice, signed_in_redirect};
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
    crate::pages::to_provider(&state, StatusCode::FOUND, started)
        .unwrap_or_else(|error| signin_refused(&state, &nonce, &error))
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
    let connecting = flow
        .as_ref()
        .is_some_and(|flow| matches!(flow.purpose, Purpose::ConnectGoogle { .. }));
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
        Ok(Finished::Linked) => Redirect::to(&format!(
            "/security?notice={}",
            Notice::IdentityLinked.code()
        ))
        .into_response(),
        Ok(Finished::Connected) => Redirect::to(&format!(
            "/accounts?notice={}",
            Notice::AccountConnected.code()
        ))
        .into_response(),
        Err(error) => match signed_in.as_ref().filter(|_| connecting) {
            Some(principal) => {
                crate::pages::mail_accounts::refused(&state, &nonce, principal, error).await
            }
            None => signin_refused(&state, &nonce, &ApiError::from(error)),
        },
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, oauth_flow::cleared_cookie());
    response
}
