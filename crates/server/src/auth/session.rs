//! The browser session cookie (docs/security.md#session-cookie): `__Host-mailroom_session`, HttpOnly, Secure,
//! SameSite=Lax, Path=/, holding 256 random bits; the database keeps only their SHA-256.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::SessionId;
use mailroom_core::accounts::{SESSION_TTL, TRUSTED_DEVICE_TTL};
use mailroom_storage::accounts::NewSession;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::audit::AuditTrail;
use crate::error::DomainError;

pub const COOKIE_NAME: &str = "__Host-mailroom_session";

/// A new session: the secret for the cookie, and what storage keeps of it.
pub struct IssuedSession {
    pub token: String,
    pub record: NewSession,
}

pub fn issue(trail: &AuditTrail, now: OffsetDateTime) -> IssuedSession {
    let token = random_token();
    IssuedSession {
        record: NewSession {
            id: SessionId::generate(),
            token_hash: token_hash(&token),
            ip: trail.ip().to_owned(),
            user_agent: trail.user_agent().map(str::to_owned),
            expires_at: now + SESSION_TTL,
        },
        token,
    }
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The `Set-Cookie` value that hands the session to the browser.
pub fn cookie(token: &str) -> HeaderValue {
    let value = format!(
        "{COOKIE_NAME}={token}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| cleared_cookie())
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-mailroom_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    )
}

/// What the request's session cookie turned out to be, when something looked it up: the
/// browser layer renews a live session's cookie and clears an unknown one, and leaves a
/// cookie nobody looked up alone (handing it back would make any value a 30-day cookie).
#[derive(Clone, Default)]
pub struct SessionCheck(std::sync::Arc<std::sync::OnceLock<bool>>);

impl SessionCheck {
    /// Records whether the cookie named a live session; the first lookup is the one kept.
    pub fn record(&self, live: bool) {
        let _ = self.0.set(live);
    }

    /// Rolling expiry in the browser too: a successful response to a request whose cookie
    /// (`token`) named a live session, and that set no cookie itself, hands the same cookie
    /// back with a fresh `Max-Age`, so an active user's cookie does not lapse 30 days after
    /// sign-in. A cookie that named no session (unknown, expired, signed out) is cleared.
    pub fn apply(&self, token: Option<String>, response: &mut axum::response::Response) {
        let Some(token) = token else { return };
        if response.headers().contains_key(header::SET_COOKIE) {
            return;
        }
        let value = match self.0.get() {
            Some(true) if response.status().is_success() => cookie(&token),
            Some(false) => cleared_cookie(),
            _ => return,
        };
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
}

/// The session token the request carries, if any.
pub fn token_from(headers: &HeaderMap) -> Option<&str> {
    cookie_value(headers, COOKIE_NAME)
}

/// The cookie that keeps a browser's trusted-device token (docs/security.md#trusted-devices).
pub const TRUSTED_COOKIE: &str = "__Host-mailroom_trusted";

/// What a browser presents to a sign-in, as its cookies carry them: the session it had (which
/// the sign-in ends, never keeps) and its trusted-device token.
#[derive(Clone, Copy, Default)]
pub struct Presented<'a> {
    pub session: Option<&'a str>,
    pub trusted_device: Option<&'a str>,
}

/// The tokens the request's cookies present.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    Presented {
        session: token_from(headers),
        trusted_device: cookie_value(headers, TRUSTED_COOKIE),
    }
}

/// The `Set-Cookie` value that makes this browser a trusted device for its lifetime.
pub fn trusted_device_cookie(token: &SecretString) -> Result<HeaderValue, DomainError> {
    let value = format!(
        "{TRUSTED_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        token.expose_secret(),
        TRUSTED_DEVICE_TTL.as_secs()
    );
    HeaderValue::from_str(&value).map_err(DomainError::internal)
}

/// The value of the request's cookie `name`, if it has a non-empty one.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// 256 random bits, URL-safe: the secret of a cookie or a one-time token.
pub fn random_token() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    URL_SAFE_NO_PAD.encode(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; __Host-mailroom_session=abc123; x=y"),
        );
        assert_eq!(token_from(&headers), Some("abc123"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("mailroom_session=abc"),
        );
        assert_eq!(token_from(&headers), None);
    }

    #[test]
    fn the_cookie_has_every_protective_attribute() {
        let cookie = cookie("tok");
        let cookie = cookie.to_str().unwrap();
        for attribute in [
            "__Host-mailroom_session=tok",
            "Path=/",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
        ] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains("Domain="), "{cookie}");
    }
}
