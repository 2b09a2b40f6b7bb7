//! The cookie that carries one OAuth flow from its start to its callback
//! (docs/security.md#openid-connect): `__Host-mailroom_oauth`, sealed (AES-256-GCM under a key
//! derived from the root key, bound to the provider's name), HttpOnly, Secure, SameSite=Lax,
//! ten minutes. It holds the state, the nonce and the PKCE verifier, and what the flow is for;
//! the browser can neither read nor change it. The callback deletes it whatever its outcome,
//! and spends its state, so it answers once.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::mail_account::Capabilities;
use mailroom_core::{MailAccountId, OrgId, UserId};
use mailroom_crypto::root_key::DerivedKey;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::auth::session::cookie_value;
use crate::error::DomainError;

pub const COOKIE_NAME: &str = "__Host-mailroom_oauth";
/// How long a flow may take, from its start to its callback.
pub const FLOW_TTL: time::Duration = time::Duration::minutes(10);

/// What a flow is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Purpose {
    /// Signing in (or up) with the provider.
    SignIn,
    /// Linking the provider to this signed-in user.
    Link { user_id: UserId },
    /// Connecting a Google account to this user's organization for these capabilities
    /// (`reconnect`: giving this account a new grant).
    ConnectGoogle {
        user_id: UserId,
        org_id: OrgId,
        capabilities: Capabilities,
        reconnect: Option<MailAccountId>,
    },
}

/// One flow, as the cookie carries it.
pub struct Flow {
    pub provider: String,
    pub purpose: Purpose,
    pub state: SecretString,
    pub nonce: SecretString,
    pub pkce_verifier: SecretString,
    /// A path on this origin to land on afterwards.
    pub return_to: String,
    /// Unix seconds.
    pub started_at: i64,
}

/// [`Flow`] as it is sealed: the secrets in plain strings, for the moment of (de)serializing.
#[derive(Serialize, Deserialize)]
struct Sealed {
    provider: String,
    purpose: Purpose,
    state: String,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    started_at: i64,
}

impl Drop for Sealed {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.state.zeroize();
        self.nonce.zeroize();
        self.pkce_verifier.zeroize();
    }
}

impl Flow {
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        now.unix_timestamp() - self.started_at > FLOW_TTL.whole_seconds()
    }
}

/// The `Set-Cookie` value that hands `flow` to the browser, sealed under `key`.
pub fn cookie(key: &DerivedKey, flow: &Flow) -> Result<HeaderValue, DomainError> {
    let value = format!(
        "{COOKIE_NAME}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        seal(key, flow).map_err(DomainError::internal)?,
        FLOW_TTL.whole_seconds()
    );
    HeaderValue::from_str(&value).map_err(DomainError::internal)
}

/// The cookie's value: the flow, sealed.
fn seal(key: &DerivedKey, flow: &Flow) -> Result<String, serde_json::Error> {
    let sealed = Sealed {
        provider: flow.provider.clone(),
        purpose: flow.purpose.clone(),
        state: flow.state.expose_secret().to_owned(),
        nonce: flow.nonce.expose_secret().to_owned(),
        pkce_verifier: flow.pkce_verifier.expose_secret().to_owned(),
        return_to: flow.return_to.clone(),
        started_at: flow.started_at,
    };
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(&sealed)?);
    Ok(URL_SAFE_NO_PAD.encode(key.seal(flow.provider.as_bytes(), &plain)))
}

/// The flow the request's cookie carries for `provider`, if it has one sealed by us for it.
pub fn open(key: &DerivedKey, headers: &HeaderMap, provider: &str) -> Option<Flow> {
    let sealed = URL_SAFE_NO_PAD
        .decode(cookie_value(headers, COOKIE_NAME)?)
        .ok()?;
    let plain = key.open(provider.as_bytes(), &sealed)?;
    let opened: Sealed = serde_json::from_slice(&plain).ok()?;
    Some(Flow {
        provider: opened.provider.clone(),
        purpose: opened.purpose.clone(),
        state: SecretString::from(opened.state.as_str()),
        nonce: SecretString::from(opened.nonce.as_str()),
        pkce_verifier: SecretString::from(opened.pkce_verifier.as_str()),
        return_to: opened.return_to.clone(),
        started_at: opened.started_at,
    })
}

/// The `Set-Cookie` value that deletes it.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-mailroom_oauth=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    )
}

/// The path to land on: `return_to` if it is a path on this origin, else `fallback`. Never a
/// URL of another origin (`//evil.example`, `/\evil.example`, `https://…`): no open redirect.
pub fn local_path<'a>(return_to: Option<&'a str>, fallback: &'a str) -> &'a str {
    let Some(path) = return_to else {
        return fallback;
    };
    let local = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 512
        && !path.chars().any(|c| c.is_control() || c == '\\');
    if local { path } else { fallback }
}

/// The state's hash, as the spent-state record keeps it.
pub fn state_hash(state: &SecretString) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(state.expose_secret().as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::header;
    use mailroom_crypto::root_key::RootKey;

    fn flow() -> Flow {
        Flow {
            provider: "corp".into(),
            purpose: Purpose::SignIn,
            state: SecretString::from("s"),
            nonce: SecretString::from("n"),
            pkce_verifier: SecretString::from("v"),
            return_to: "/security".into(),
            started_at: 0,
        }
    }

    fn carrying(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={value}")).unwrap(),
        );
        headers
    }

    #[test]
    fn the_cookie_opens_for_its_provider_only_and_not_after_a_change() {
        let key = RootKey::generate().derive(b"test");
        let sealed = seal(&key, &flow()).unwrap();
        assert!(!sealed.contains("security"), "sealed, not readable");
        let opened = open(&key, &carrying(&sealed), "corp").unwrap();
        assert_eq!(opened.nonce.expose_secret(), "n");
        assert!(open(&key, &carrying(&sealed), "google").is_none());
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(open(&key, &carrying(&tampered), "corp").is_none());
        let other_key = RootKey::generate().derive(b"test");
        assert!(open(&other_key, &carrying(&seal(&key, &flow()).unwrap()), "corp").is_none());
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        for good in ["/", "/security", "/verify?x=1"] {
            assert_eq!(local_path(Some(good), "/home"), good);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_path(Some(bad), "/home"), "/home", "{bad:?}");
        }
        assert_eq!(local_path(None, "/home"), "/home");
    }

    #[test]
    fn the_cookie_has_every_protective_attribute_and_carries_the_sealed_flow() {
        let key = RootKey::generate().derive(b"test");
        let cookie = cookie(&key, &flow()).unwrap();
        let cookie = cookie.to_str().unwrap();
        for attribute in [
            "Path=/",
            "Max-Age=600",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
        ] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let (pair, _) = cookie.split_once(';').unwrap();
        let value = pair.strip_prefix("__Host-mailroom_oauth=").unwrap();
        let opened = open(&key, &carrying(value), "corp").unwrap();
        assert_eq!(opened.state.expose_secret(), "s");
    }
}
