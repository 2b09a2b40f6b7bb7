//! Tokens for programs (SES-3): a 15-minute JWT access token, HS256 only, with `iss`, `aud`,
//! `exp`, `sub`, `sid` (the refresh family) and `jti`; and opaque refresh tokens. Both keys
//! derive from the master key, so every node that shares it agrees.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use mailroom_core::UserId;
use mailroom_core::accounts::ACCESS_TOKEN_TTL;
use mailroom_crypto::root_key::{DerivedKey, RootKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// The audience every access token names and every check demands.
const AUDIENCE: &str = "mailroom-api";

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
    pub sid: Uuid,
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
        family: Uuid,
        jti: Uuid,
        issued_at: OffsetDateTime,
        authenticated_at: OffsetDateTime,
    ) -> Result<String, jsonwebtoken::errors::Error> {
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
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.signing.as_bytes()),
        )
    }

    /// The claims of a valid access token: HS256 and nothing else (no `none`, no key
    /// confusion), our issuer and audience, not expired.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(self.signing.as_bytes()),
            &validation,
        )
        .ok()
        .map(|data| data.claims)
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
        let (user, family, jti) = (UserId::generate(), Uuid::now_v7(), Uuid::now_v7());
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
