//! Limits on the doors an attacker knocks on — sign-up, sign-in, codes, resets, setup — per
//! client IP and per account (AUTH-3, KEY-3): GCRA (governor), in process; 20 requests per 15
//! minutes by default. A limited response says how much is left (`RateLimit-*`); a refused one
//! when to come back (`Retry-After`).

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

use mailroom_core::EmailAddress;

use crate::edge::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

/// The window the limit is stated over.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

#[derive(Clone)]
pub struct AuthLimiter {
    limiter: Arc<Limiter<IpAddr>>,
    /// Keyed by normalized email address: one account guessed at from many addresses.
    accounts: Arc<Limiter<String>>,
    per_window: NonZeroU32,
}

impl AuthLimiter {
    /// `per_window` requests per client IP, and per account, per [`WINDOW`], refilled evenly.
    pub fn new(per_window: NonZeroU32) -> Self {
        let interval = WINDOW / per_window.get();
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(per_window))
            .allow_burst(per_window);
        Self {
            limiter: Arc::new(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
            accounts: Arc::new(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
            per_window,
        }
    }

    /// Spends one of the account's requests, or refuses with 429 and when to retry.
    pub fn check_account(&self, email: &EmailAddress) -> Result<(), ApiError> {
        match self.accounts.check_key(&email.as_str().to_owned()) {
            Ok(_) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many attempts for this account; try again later.",
                )
                .with_retry_after(seconds(wait)))
            }
        }
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64 — one subscriber
/// usually holds a whole /64, and would otherwise get a fresh budget per address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

impl AuthLimiter {
    /// Forgets clients whose budget is full again, so the table does not grow forever.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.accounts.retain_recent();
    }
}

pub async fn limit_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Reading a sign-in page costs nothing; submitting it does.
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<RequestContext>()
        .map(|context| client_key(context.client_ip));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }
}
