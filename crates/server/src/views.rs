//! What every HTML response shares: the site's layout, the error page, and the CSP nonce that
//! lets a page's scripts run. Pages and the edge both render through here; neither reaches
//! into the other.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use maud::{DOCTYPE, Markup, html};
use rand::RngCore;

use crate::problem::ApiError;

/// The nonce that this response's Content-Security-Policy allows scripts to carry.
#[derive(Clone, Debug)]
pub struct CspNonce(String);

impl CspNonce {
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(STANDARD.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn layout(nonce: &CspNonce, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mailroom" }
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" nonce=(nonce.as_str()) defer {}
            }
            body {
                header.site-header {
                    a.brand href="/" { "mailroom" }
                    nav aria-label="Account" {
                        a href="/signin" { "Sign in" }
                        " "
                        a href="/signup" { "Sign up" }
                        " "
                        a href="/security" { "Security" }
                        " "
                        a href="/team" { "Team" }
                        " "
                        a href="/verification" { "Verify" }
                        " "
                        a href="/accounts" { "Accounts" }
                        " "
                        a href="/emails" { "Emails" }
                        " "
                        a href="/api-keys" { "API keys" }
                        " "
                        a href="/usage" { "Usage" }
                    }
                }
                main { (content) }
                footer.site-footer {
                    p { "mailroom · self-hosted email API" }
                }
            }
        }
    }
}

/// An error for a browser (see [`crate::edge::problems`]): what went wrong, in the site's
/// layout, with the request id to quote when asking for help.
pub(crate) fn error_page(
    nonce: &CspNonce,
    error: &ApiError,
    request_id: Option<mailroom_core::RequestId>,
) -> Response {
    error.log();
    let title = match error.status() {
        StatusCode::NOT_FOUND => "Page not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong on our side",
        status => status.canonical_reason().unwrap_or("Error"),
    };
    let markup = layout(
        nonce,
        title,
        html! {
            section.narrow {
                h1 { (title) }
                p.error role="alert" { (error.detail()) }
                @if let Some(id) = request_id {
                    p.hint { "Request id " code.request-id { (id.to_string()) } " — quote it when you ask for help." }
                }
                p { a href="/" { "Back to the start" } }
            }
        },
    );
    let mut response = (error.status(), markup).into_response();
    if let Some(seconds) = error.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
