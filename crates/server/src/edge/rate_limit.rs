//! Per-client-IP limits on the doors an attacker knocks on: sign-up, sign-in, codes, resets,
//! setup (AUTH-3, KEY-3). GCRA (governor), in process; 20 requests per 15 minutes by default.
//! A limited response says how much is left (`RateLimit-*`); a refused one when to come back
//! (`Retry-After`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::edge::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

/// The window the limit is stated over.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

type Limiter =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

#[derive(Clone)]
pub struct AuthLimiter {
    limiter: Arc<Limiter>,
    per_window: NonZeroU32,
}

impl AuthLimiter {
    /// `per_window` requests per client IP per [`WINDOW`], refilled evenly.
    pub fn new(per_window: NonZeroU32) -> Self {
        let interval = WINDOW / per_window.get();
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(per_window))
            .allow_burst(per_window);
        Self {
            limiter: Arc::new(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
            per_window,
        }
    }
}

pub async fn limit_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<RequestContext>()
        .map(|context| context.client_ip);
    let Some(ip) = ip else {
        return next.run(request).await;
    };
    let limit = state.auth_limiter.per_window.get();
    match state.auth_limiter.limiter.check_key(&ip) {
        Ok(snapshot) => {
            let mut response = next.run(request).await;
            let refill = WINDOW / limit;
            let used = limit - snapshot.remaining_burst_capacity();
            set_headers(
                response.headers_mut(),
                limit,
                snapshot.remaining_burst_capacity(),
                refill * used,
            );
            response
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many attempts from this address; try again later.",
            )
            .into_response();
            set_headers(response.headers_mut(), limit, 0, wait);
            if let Ok(value) = HeaderValue::from_str(&seconds(wait).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

fn set_headers(headers: &mut HeaderMap, limit: u32, remaining: u32, reset: Duration) {
    for (name, value) in [
        ("ratelimit-limit", u64::from(limit)),
        ("ratelimit-remaining", u64::from(remaining)),
        ("ratelimit-reset", seconds(reset)),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// Whole seconds, rounded up: "retry after 0 seconds" would invite an immediate retry.
fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
