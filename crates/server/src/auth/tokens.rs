//! Tokens for programs (docs/security.md#refresh-tokens): a 15-minute JWT access token, HS256 only, with `iss`, `aud`,
//! `exp`, `sub`, `sid` (the refresh family) and `jti`; and opaque refresh tokens. Both keys
//! derive from the root key, so every node that shares it agrees.
//!
//! The JWT is written here, over the derived key's HMAC-SHA256 (RFC 7515 and 7519, the one
//! algorithm): the JWT crates' pure-Rust backends link `rsa` (RUSTSEC-2023-0071, unfixed) for
//! algorithms mailroom never accepts, and one header, one MAC and four claim checks are fewer
//! lines than the configuration that would narrow a general library to them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_core::accounts::ACCESS_TOKEN_TTL;
use mailroom_core::{TokenFamilyId, UserId};
use mailroom_crypto::root_key::{DerivedKey, RootKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

/// The audience every access token names and every check demands.
const AUDIENCE: &str = "mailroom-api";

/// The one header mailroom writes: `{"alg":"HS256","typ":"JWT"}`, encoded.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// A header as read: only its algorithm decides anything.
#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Clone)]
pub struct TokenKeys {
    signing: DerivedKey,
    /// Derives a refresh token's successor from it, so a replay can be answered with the
    /// same successor without storing it.
    succession: DerivedKey,
    issuer: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    pub sid: TokenFamilyId,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// When the password grant that started the family happened (OpenID's `auth_time`).
    pub auth_time: i64,
}

impl TokenKeys {
    pub fn new(root: &RootKey, issuer: String) -> Self {
        Self {
            signing: root.derive(b"mailroom/access-token/hs256/v1"),
            succession: root.derive(b"mailroom/refresh-token/succession/v1"),
            issuer,
        }
    }

    /// The access token with these claims: the same claims always give the same token.
    pub fn access_token(
        &self,
        user: UserId,
        family: TokenFamilyId,
        jti: Uuid,
        issued_at: OffsetDateTime,
        authenticated_at: OffsetDateTime,
    ) -> Result<String, serde_json::Error> {
        let iat = issued_at.unix_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: user,
            sid: family,
            jti,
            iat,
            exp: iat + ACCESS_TOKEN_TTL.as_secs() as i64,
            auth_time: authenticated_at.unix_timestamp(),
        };
        let signing_input = format!(
            "{HEADER}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
        );
        let signature = URL_SAFE_NO_PAD.encode(self.signing.mac(signing_input.as_bytes()));
        Ok(format!("{signing_input}.{signature}"))
    }

    /// The claims of a valid access token: HS256 and nothing else (no `none`, no key
    /// confusion), a signature compared in constant time, our issuer and audience, not
    /// expired (no leeway).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.verify_at(token, OffsetDateTime::now_utc())
    }

    fn verify_at(&self, token: &str, now: OffsetDateTime) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.alg != "HS256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let expected = self.signing.mac(signing_input.as_bytes());
        if !bool::from(expected.as_slice().ct_eq(&signature)) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.iss == self.issuer && claims.aud == AUDIENCE && claims.exp >= now.unix_timestamp())
            .then_some(claims)
    }

    /// The token that succeeds `parent` when it is exchanged.
    pub fn successor(&self, parent: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.succession.mac(parent.as_bytes()))
    }
}

/// A fresh refresh token: 256 random bits.
pub fn new_refresh_token() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    URL_SAFE_NO_PAD.encode(secret)
}

pub fn refresh_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&RootKey::generate(), "https://mail.example.test".into())
    }

    #[test]
    fn tokens_verify_and_tampering_does_not() {
        let keys = keys();
        let (user, family, jti) = (
            UserId::generate(),
            TokenFamilyId::generate(),
            Uuid::now_v7(),
        );
        let now = OffsetDateTime::now_utc();
        let token = keys.access_token(user, family, jti, now, now).unwrap();
        assert_eq!(
            keys.access_token(user, family, jti, now, now).unwrap(),
            token,
            "deterministic"
        );
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.jti), (user, family, jti));

        // Another issuer's key, an expired token, and `alg: none` are all refused.
        assert!(self::keys().verify(&token).is_none());
        let old = keys
            .access_token(user, family, jti, now - time::Duration::minutes(16), now)
            .unwrap();
        assert!(keys.verify(&old).is_none());
        let payload = token.split('.').nth(1).unwrap();
        let unsigned = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(keys.verify(&unsigned).is_none());
        // The same claims under a relabelled algorithm, and a signature cut short.
        let (_, rest) = token.split_once('.').unwrap();
        let relabelled = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#)
        );
        assert!(keys.verify(&relabelled).is_none());
        assert!(keys.verify(&token[..token.len() - 2]).is_none());
        assert!(keys.verify(&format!("{token}.")).is_none());
    }

    #[test]
    fn the_token_is_a_standard_hs256_jwt() {
        let keys = keys();
        let (user, family, jti) = (
            UserId::generate(),
            TokenFamilyId::generate(),
            Uuid::now_v7(),
        );
        let now = OffsetDateTime::now_utc();
        let token = keys.access_token(user, family, jti, now, now).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        // RFC 7515's HS256: HMAC-SHA256 over `header.payload`, computed independently.
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(keys.signing.as_bytes()).unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            mac.finalize().into_bytes().to_vec()
        );
        // Valid through its last second, not after.
        let exp = now + time::Duration::seconds(ACCESS_TOKEN_TTL.as_secs() as i64);
        assert!(keys.verify_at(&token, exp).is_some());
        assert!(
            keys.verify_at(&token, exp + time::Duration::seconds(1))
                .is_none()
        );
        // Claims missing from a token signed with the right key still refuse it.
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"iss":"https://mail.example.test","aud":"mailroom-api"}"#);
        let input = format!("{HEADER}.{payload}");
        let forged = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(keys.signing.mac(input.as_bytes()))
        );
        assert!(keys.verify(&forged).is_none());
    }

    #[test]
    fn successors_are_stable_and_distinct() {
        let keys = keys();
        let parent = new_refresh_token();
        assert_eq!(keys.successor(&parent), keys.successor(&parent));
        assert_ne!(
            keys.successor(&parent),
            keys.successor(&new_refresh_token())
        );
    }
}
