//! The doors an attacker knocks on (sign-up, sign-in, codes, resets), limited per client IP
//! before any work is done.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::edge::context::RequestContext;
use crate::rate_limit::gate;
use crate::state::AppState;

pub async fn limit_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Reading a sign-in page costs nothing; submitting it does.
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let Some(ip) = request
        .extensions()
        .get::<RequestContext>()
        .map(|context| context.client_ip)
    else {
        return next.run(request).await;
    };
    let decision = state.auth_limiter.check_ip(ip).await;
    gate(
        decision,
        "Too many attempts from this address; try again later.",
        next.run(request),
    )
    .await
}
