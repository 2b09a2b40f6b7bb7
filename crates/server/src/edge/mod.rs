//! The hardened edge: the layers every response passes through, errors and 404s included.
//!
//! Outermost first:
//! 1. [`context`]: a server-generated request id (HTTP-3), the client IP through trusted
//!    proxies only, the request's log span, and the `X-Request-Id` response header;
//! 2. [`crate::metrics`]: request counts and latency by route and status;
//! 3. [`headers`]: the security headers and the CSP nonce (HTTP-1);
//! 4. [`problems`]: every error response rendered as problem+json (HTTP-5);
//! 5. panics caught and turned into a 500, and the body limit (HTTP-2).

pub mod context;
pub mod headers;
pub mod problems;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::config::BODY_LIMIT_BYTES;
use crate::state::AppState;

/// Wraps every route, and the fallback, in the edge layers.
pub fn harden(router: Router<AppState>, state: AppState) -> Router {
    router
        .layer(
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), context::request_context))
                .layer(from_fn_with_state(state.clone(), crate::metrics::track))
                .layer(from_fn_with_state(state.clone(), headers::security_headers))
                .layer(from_fn(problems::render_problems))
                .layer(CatchPanicLayer::custom(problems::panic_response))
                .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES)),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}
