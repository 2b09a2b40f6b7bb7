//! Limits on the doors an attacker knocks on — sign-up, sign-in, codes, resets, setup — per
//! client IP and per account (docs/security.md#lockout, #key-rate-limits): 20 requests per 15 minutes by default. A limited
//! response says how much is left (`RateLimit-*`); a refused one when to come back
//! (`Retry-After`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use mailroom_core::EmailAddress;
use mailroom_core::gcra::Rate;

use crate::error::DomainError;
use crate::rate_limit::{Decision, Limiter, refusal};

/// The window the limit is stated over.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Clone)]
pub struct AuthLimiter {
    limiter: Limiter,
    per_window: NonZeroU32,
}

impl AuthLimiter {
    /// `per_window` requests per client IP, and per account, per [`WINDOW`], refilled evenly.
    pub fn new(limiter: Limiter, per_window: NonZeroU32) -> Self {
        Self {
            limiter,
            per_window,
        }
    }

    fn rate(&self) -> Rate {
        Rate {
            count: self.per_window.get(),
            period_us: i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX),
        }
    }

    /// Spends one of the account's requests, or refuses with 429 and when to retry.
    pub async fn check_account(&self, email: &EmailAddress) -> Result<(), DomainError> {
        let key = format!("auth:account:{}", email.as_str());
        match self.limiter.check(&[key], &[self.rate()]).await? {
            Some(decision) if !decision.allowed => Err(refusal(
                &decision,
                "Too many attempts for this account; try again later.",
            )),
            _ => Ok(()),
        }
    }

    /// Forgets clients whose budget is whole again, so the table does not grow forever.
    pub fn forget_idle(&self) {
        self.limiter.forget_idle();
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
    /// Decides one submission from `ip` (an IPv6 client by its /64) against the per-IP limit.
    pub async fn check_ip(&self, ip: IpAddr) -> Result<Option<Decision>, DomainError> {
        let ip = client_key(ip);
        self.limiter
            .check(&[format!("auth:ip:{ip}")], &[self.rate()])
            .await
    }
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
