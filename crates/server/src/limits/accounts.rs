//! The `/v1` API for people: a request signed in with a session cookie or a bearer access
//! token is limited per user, by the per-minute and per-day rates their plan gives each
//! member, with the same `RateLimit-*` headers as keys. (A key's requests are limited per key, in
//! [`super::keys`].) The account is authenticated here once; the handler's extractor finds it
//! in the request's extensions and does not look it up again.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mailroom_core::gcra::Rate;

use crate::extract::Principal;
use crate::rate_limit::{DAY_US, MINUTE_US, gate};
use crate::state::AppState;

pub async fn limit_accounts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    // Whoever the credentials do not name goes on to the handler, which refuses them.
    let Some(principal) = Principal::authenticated(&mut parts, &state).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    limit_user(
        &state,
        &principal,
        next.run(Request::from_parts(parts, body)),
    )
    .await
}

/// Runs `handler` if `principal`'s user is within their rates.
pub(crate) async fn limit_user(
    state: &AppState,
    principal: &Principal,
    handler: impl Future<Output = Response>,
) -> Response {
    use axum::response::IntoResponse;
    let plan = match state.database.teams().plan_of(principal.user.org_id).await {
        Ok(plan) => plan,
        Err(error) => return crate::problem::ApiError::internal(error).into_response(),
    };
    let count = |limit: i32| u32::try_from(limit).unwrap_or(0).max(1);
    let rates = [
        Rate {
            count: count(plan.user_requests_per_minute),
            period_us: MINUTE_US,
        },
        Rate {
            count: count(plan.user_requests_per_day),
            period_us: DAY_US,
        },
    ];
    let user = principal.user.id;
    let keys = [format!("user:{user}:minute"), format!("user:{user}:day")];
    let decision = state.limiter.check(&keys, &rates).await;
    gate(
        decision,
        "This account is over its rate limit; slow down.",
        handler,
    )
    .await
}
