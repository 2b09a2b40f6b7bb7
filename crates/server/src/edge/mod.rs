//! The hardened edge: the layers every response passes through, errors and 404s included.
//!
//! Outermost first:
//! 1. [`context`]: a server-generated request id (docs/security.md#request-ids), the client IP through trusted
//!    proxies only, the request's log span, and the `X-Request-Id` response header;
//! 2. [`crate::metrics`]: request counts and latency by route and status;
//! 3. [`headers`]: the security headers and the CSP nonce (docs/security.md#security-headers);
//! 4. [`problems`]: every error response rendered as problem+json (docs/security.md#errors);
//! 5. the request timeout (408), and panics caught and turned into a 500.
//!
//! The body limit (docs/security.md#request-limits) is not here but on each group of routes ([`crate::router`]), so
//! that a route with a larger allowance (the bulk upload) can have its own.

pub mod context;
pub mod headers;
pub mod problems;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::REQUEST_TIMEOUT;
use crate::state::AppState;

/// Wraps every route, and the fallback, in the edge layers.
pub fn harden(router: Router<AppState>, state: AppState) -> Router {
    router
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), context::request_context))
                .layer(from_fn_with_state(state.clone(), track))
                .layer(from_fn_with_state(state.clone(), headers::security_headers))
                .layer(from_fn(problems::render_problems))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
                .layer(CatchPanicLayer::custom(problems::panic_response)),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Request counts and latency by route and status ([`crate::metrics`]).
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    state.metrics.track(request, next).await
}

#[cfg(test)]
mod tests {

    use axum::body::Body;
    use axum::http::{HeaderValue, Request, header};
    use axum::routing::get;
    use mailroom_storage::Database;
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::Metrics;
    use crate::problem::{ApiError, PROBLEM_JSON};

    async fn state() -> AppState {
        let root = mailroom_crypto::root_key::RootKey::generate();
        AppState::new(crate::state::Shared {
            database: Database::connect("sqlite::memory:")
                .await
                .unwrap()
                .with_audit_key(b"test key"),
            metrics: Metrics::new(),
            trusted_proxies: Default::default(),
            metrics_allow: Vec::new(),
            x_xss_protection: HeaderValue::from_static("0"),
            public_origin: "http://127.0.0.1".into(),
            mail_accounts_ca_file: None,
            mail: mailroom_mail::SystemMail::outbox(
                &std::env::temp_dir().join("mailroom-edge-test-outbox"),
                mailroom_mail::parse_mailbox("noreply@localhost").unwrap(),
            )
            .unwrap(),
            passwords: crate::auth::passwords::PasswordWork::new().unwrap(),
            auth_limiter: crate::rate_limit::auth::AuthLimiter::new(
                crate::rate_limit::Limiter::in_memory(),
                std::num::NonZeroU32::MIN,
            ),
            limiter: crate::rate_limit::Limiter::in_memory(),
            key_uses: Default::default(),
            tokens: crate::auth::tokens::TokenKeys::new(&root, "http://127.0.0.1".into()),
            code_key: root.derive(b"codes"),
            backup_code_key: root.derive(b"backup codes"),
            verifications: crate::verification::Verifications::new(
                mailroom_verify::Verifier::new(mailroom_verify::Settings {
                    dns_server: Some("127.0.0.1:53".parse().unwrap()),
                    ..Default::default()
                })
                .unwrap(),
            ),
            queue: crate::work_queue::Runner::new(Default::default()),
            identity_providers: crate::identity_providers::IdentityProviders::new(&[], &root)
                .unwrap(),
            public_url: "http://127.0.0.1".parse().unwrap(),
            webhooks: crate::webhook_sender::WebhookSender::new(Default::default()).unwrap(),
            smtp_senders: Default::default(),
            send_slots: Default::default(),
        })
    }

    /// Failures of ours reach the client as a bare problem 500 with every edge header, and
    /// nothing of what went wrong.
    #[tokio::test]
    async fn panics_and_internal_errors_become_opaque_problems() {
        let router = Router::new()
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("kaboom at /var/lib/secret");
                    }
                    StatusCode::OK
                }),
            )
            .route(
                "/fail",
                get(|| async {
                    Err::<StatusCode, _>(ApiError::internal(anyhow::anyhow!(
                        "kaboom at /var/lib/secret"
                    )))
                }),
            );
        let router = harden(router, state().await);
        for path in ["/panic", "/fail"] {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{path}"
            );
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON, "{path}");
            assert!(
                headers.contains_key(header::CONTENT_SECURITY_POLICY),
                "{path}"
            );
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
            let request_id = headers[context::REQUEST_ID_HEADER].clone();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["code"], "internal_error", "{path}");
            assert_eq!(body["request_id"], request_id.to_str().unwrap(), "{path}");
            assert!(!body.to_string().contains("kaboom"), "{path}: {body}");

            // A browser gets the same failure as a page, with the request id to quote.
            let request = Request::get(path)
                .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let headers = response.headers();
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{path}"
            );
            let request_id = headers[context::REQUEST_ID_HEADER]
                .to_str()
                .unwrap()
                .to_owned();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let page = String::from_utf8(body.to_vec()).unwrap();
            assert!(page.contains(&request_id), "{path}: {page}");
            assert!(page.contains("Something went wrong on our side"), "{path}");
            assert!(page.contains("/static/app.css"), "the site's layout");
            assert!(!page.contains("kaboom"), "{path}: {page}");
        }
    }
}
