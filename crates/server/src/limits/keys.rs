//! The routes API keys may call: the key is authenticated here, once, and limited per key —
//! per minute and per day together, by its own limits or its plan's (docs/security.md#key-rate-limits). Every response
//! carries the `RateLimit-*` headers of the tighter of the two. A request without a key is a
//! person's, limited per user ([`super::accounts`]).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mailroom_core::gcra::Rate;

use crate::edge::context::RequestContext;
use crate::extract::Principal;
use crate::extract::caller::authenticate_request_key;
use crate::limits::accounts::limit_user;
use crate::rate_limit::{DAY_US, MINUTE_US, gate};
use crate::state::AppState;

pub async fn limit_api_keys(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // The request's head, borrowed across the lookup without cloning it (a request with its
    // body cannot be held across an await by reference).
    let (mut parts, body) = request.into_parts();
    let context = parts.extensions.get::<RequestContext>().copied();
    let key = authenticate_request_key(&state, &parts.headers, context.as_ref()).await;
    let key = match key {
        Ok(Some(key)) => key,
        // No key: a person's request, limited per user.
        Ok(None) => {
            let Some(principal) = Principal::authenticated(&mut parts, &state).await else {
                return next.run(Request::from_parts(parts, body)).await;
            };
            let handler = next.run(Request::from_parts(parts, body));
            return limit_user(&state, &principal, handler).await;
        }
        Err(error) => return error.into_response(),
    };
    let mut request = Request::from_parts(parts, body);
    let rates = [
        Rate {
            count: key.requests_per_minute,
            period_us: MINUTE_US,
        },
        Rate {
            count: key.requests_per_day,
            period_us: DAY_US,
        },
    ];
    let keys = [
        format!("key:{}:minute", key.key_id),
        format!("key:{}:day", key.key_id),
    ];
    let decision = state.limiter.check(&keys, &rates).await;
    // A refused request never reaches the handler; one that runs finds its key here.
    request.extensions_mut().insert(key);
    gate(
        decision,
        "This API key is over its rate limit; slow down.",
        next.run(request),
    )
    .await
}
