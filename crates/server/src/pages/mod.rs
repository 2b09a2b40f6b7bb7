//! Server-rendered pages (maud): no JavaScript build step, and markup escaped by construction.
//! Every page goes through [`crate::views::layout`], which puts this response's CSP nonce on the scripts it
//! loads; a script without it does not run.

pub mod account;
pub mod emails;
pub mod identities;
pub mod mail_accounts;
pub mod notice;
pub mod security;
pub mod team;
pub mod two_factor;
pub mod verify;
pub mod webhooks;

use axum::Extension;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::application::provider_flow::Started;
use crate::auth::oauth_flow;
use crate::extract::principal::SetupPrincipal;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;
pub use crate::views::layout;

/// A page under its title, with the notice of what just happened or the error of the last
/// attempt (whose status it answers with).
pub fn titled(
    nonce: &CspNonce,
    title: &str,
    notice: Option<&str>,
    error: Option<&crate::problem::ApiError>,
    content: Markup,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = error.map_or(axum::http::StatusCode::OK, |error| error.status());
    let markup = layout(
        nonce,
        title,
        html! {
            h1 { (title) }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @if let Some(error) = error { p.error role="alert" { (error.detail()) } }
            (content)
        },
    );
    (status, markup).into_response()
}

/// Back to `path` with a notice, or the error shown on it.
pub(crate) async fn after(
    path: &str,
    outcome: Result<Notice, impl Into<ApiError>>,
    render: impl AsyncFnOnce(Option<&ApiError>) -> Result<Response, ApiError>,
) -> Response {
    match outcome.map_err(Into::into) {
        Ok(notice) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("notice", notice.code())
                .finish();
            Redirect::to(&format!("{path}?{query}")).into_response()
        }
        Err(error) => render(Some(&error))
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}

pub async fn landing(Extension(nonce): Extension<CspNonce>) -> Markup {
    layout(
        &nonce,
        "Email verification, sending and mailboxes",
        html! {
            section.hero {
                h1 { "Email infrastructure you run yourself" }
                p.lead {
                    "mailroom is a self-hosted email API platform in one binary. "
                    "Through one REST API and this dashboard, your team verifies email "
                    "addresses, sends email through connected Gmail accounts or SMTP relays, "
                    "and reads connected mailboxes."
                }
            }
            section.features aria-label="What mailroom does" {
                article {
                    h2 { "Verify" }
                    p { "Syntax, domain and mailbox checks tell you whether an address is real "
                        "and safe to send to — one at a time, in batches, or as bulk uploads." }
                }
                article {
                    h2 { "Send" }
                    p { "A durable queue delivers through your Gmail accounts or any SMTP relay, "
                        "with retries, idempotency keys and a status for every message." }
                }
                article {
                    h2 { "Read" }
                    p { "List folders, search and fetch messages of connected mailboxes over "
                        "IMAP or the Gmail API." }
                }
            }
            section.security {
                h2 { "Security is the product" }
                ul {
                    li { "Verified sign-up, Argon2id passwords, lockout and two-factor sign-in." }
                    li { "Scoped, hashed API keys with rate limits; teams with roles and tenant isolation." }
                    li { "Per-organization envelope encryption and a hash-chained audit log." }
                }
            }
        },
    )
}

/// A form's fields as posted, repeated ones kept (checkboxes of one name): the standard form
/// decoder keeps only one of each.
pub(crate) struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub(crate) fn parse(body: &[u8]) -> Self {
        FormFields(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The field `name`, or empty.
    pub(crate) fn one(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }

    /// Every field `name`, in order.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

pub(crate) fn when(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub use notice::{Notice, NoticeQuery};

/// The signed-in account a page needs. Without one, the visitor is sent to sign in; one who
/// owes the second-factor setup their role requires is sent to set it up.
pub struct SignedIn(pub crate::extract::Principal);

impl axum::extract::FromRequestParts<crate::state::AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &crate::state::AppState,
    ) -> Result<Self, Response> {
        match crate::extract::principal::SetupPrincipal::from_request_parts(parts, state).await {
            Ok(SetupPrincipal(principal)) if principal.owes_second_factor_setup() => {
                Err(Redirect::to("/security").into_response())
            }
            Ok(SetupPrincipal(principal)) => Ok(SignedIn(principal)),
            Err(_) => Err(to_sign_in()),
        }
    }
}

/// Sends the browser to an OAuth provider with the flow sealed in its cookie.
pub(crate) fn to_provider(
    state: &AppState,
    status: StatusCode,
    started: Result<Started, impl Into<ApiError>>,
) -> Result<Response, ApiError> {
    let started = started.map_err(Into::into)?;
    let cookie = oauth_flow::cookie(&state.identity_providers.flow_key, &started.flow)?;
    Ok((
        status,
        [
            (
                header::LOCATION,
                started.authorization_url.as_str().to_owned(),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        [(header::SET_COOKIE, cookie)],
    )
        .into_response())
}

/// Where a page that needs an account sends someone without one.
pub(crate) fn to_sign_in() -> Response {
    Redirect::to("/signin").into_response()
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

/// A redirect that also hands the browser its new session.
pub(crate) fn signed_in_redirect(token: &str, to: &str) -> Response {
    (
        [(header::SET_COOKIE, crate::auth::session::cookie(token))],
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
