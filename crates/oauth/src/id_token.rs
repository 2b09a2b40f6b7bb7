//! ID tokens (OpenID Connect Core §3.1.3.7): the signature against the provider's JWKS, with
//! the algorithm pinned to what the key is, then `iss`, `aud`/`azp`, `exp`, `nbf`, `iat` and
//! `nonce`.
//!
//! Written here rather than taken from a JWT crate: the pure-Rust ones verify RSA through the
//! `rsa` crate (RUSTSEC-2023-0071, unfixed), jsonwebtoken before 10.3 skips a claim of the wrong
//! type (GHSA-h395-gr6q-cpjc), and from 10 on it needs aws-lc or `rsa`. `ring`, which rustls
//! links already, verifies the two algorithms providers sign ID tokens with (RS256, ES256).
//! Claims are typed: a claim of the wrong type fails to parse, and the token is refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// How far the provider's clock may be from ours.
const LEEWAY_SECS: i64 = 60;
/// An ID token issued longer ago than this answers no flow of ours: a flow lives ten minutes.
const MAX_AGE_SECS: i64 = 600;

/// Why an ID token was refused: each is audited by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("it is not a well-formed signed JWT with the claims required")]
    Malformed,
    #[error("its algorithm is not one the key allows")]
    Algorithm,
    #[error("no key of the provider's matches it")]
    UnknownKey,
    #[error("its signature does not verify")]
    Signature,
    #[error("it was issued by another issuer")]
    Issuer,
    #[error("it was issued for another client")]
    Audience,
    #[error("it has expired")]
    Expired,
    #[error("its issue time is out of range")]
    IssuedAt,
    #[error("its nonce is not this sign-in's")]
    Nonce,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Algorithm => "algorithm",
            Rejection::UnknownKey => "unknown_key",
            Rejection::Signature => "signature",
            Rejection::Issuer => "issuer",
            Rejection::Audience => "audience",
            Rejection::Expired => "expired",
            Rejection::IssuedAt => "issued_at",
            Rejection::Nonce => "nonce",
        }
    }
}

/// What a valid ID token says about its user.
#[derive(Clone, Debug)]
pub struct IdClaims {
    pub issuer: String,
    /// The user's id at the issuer: with the issuer, what identifies them (never the email).
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub picture: Option<String>,
}

/// The signature algorithms accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Rs256,
    Es256,
}

impl Algorithm {
    fn named(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }
}

/// One key of a JWKS (RFC 7517), with the members the two algorithms need.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct KeySet {
    #[serde(default)]
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The keys this code can use; others (encryption keys, unknown types) are skipped.
    fn signing_keys(&self) -> impl Iterator<Item = Jwk> + '_ {
        self.keys
            .iter()
            .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
            .filter(|key| key.usage.as_deref().is_none_or(|usage| usage == "sig"))
    }

    pub(crate) fn has_key(&self, kid: Option<&str>) -> bool {
        self.signing_keys()
            .any(|key| kid.is_none() || key.kid.as_deref() == kid)
    }
}

impl Jwk {
    /// Whether this key may verify `algorithm`: its type says so, and its `alg`, if it has
    /// one, names it (an RSA key is never taken for an HMAC secret, say).
    fn allows(&self, algorithm: Algorithm) -> bool {
        let by_type = match algorithm {
            Algorithm::Rs256 => self.kty == "RSA",
            Algorithm::Es256 => self.kty == "EC" && self.crv.as_deref() == Some("P-256"),
        };
        let by_alg = self
            .alg
            .as_deref()
            .is_none_or(|alg| Algorithm::named(alg) == Some(algorithm));
        by_type && by_alg
    }

    fn verifies(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let decode =
            |part: &Option<String>| part.as_deref().and_then(|b| URL_SAFE_NO_PAD.decode(b).ok());
        match algorithm {
            Algorithm::Rs256 => {
                let (Some(n), Some(e)) = (decode(&self.n), decode(&self.e)) else {
                    return false;
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok()
            }
            Algorithm::Es256 => {
                let (Some(x), Some(y)) = (decode(&self.x), decode(&self.y)) else {
                    return false;
                };
                if x.len() != 32 || y.len() != 32 {
                    return false;
                }
                let point = [&[0x04][..], &x, &y].concat();
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// Extensions the verifier must understand: none are.
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    /// Some providers send `"true"`.
    Text(String),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    azp: Option<String>,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<Flag>,
    name: Option<String>,
    picture: Option<String>,
}

/// What a token is checked against.
pub(crate) struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: OffsetDateTime,
}

/// The key id the token's header names, for choosing (or refetching) the key set.
pub(crate) fn key_id(token: &str) -> Result<Option<String>, Rejection> {
    let header = token.split('.').next().ok_or(Rejection::Malformed)?;
    Ok(decode_json::<Header>(header)?.kid)
}

/// The claims of `token` if it passes every check against `keys` and `expected`.
pub(crate) fn verify(
    token: &str,
    keys: &KeySet,
    expected: &Expected<'_>,
) -> Result<IdClaims, Rejection> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let header: Header = decode_json(header_b64)?;
    if header.crit.is_some() {
        return Err(Rejection::Malformed);
    }
    let algorithm = Algorithm::named(&header.alg).ok_or(Rejection::Algorithm)?;
    let candidates: Vec<Jwk> = keys
        .signing_keys()
        .filter(|key| header.kid.is_none() || key.kid == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err(Rejection::UnknownKey);
    }
    let usable: Vec<&Jwk> = candidates
        .iter()
        .filter(|key| key.allows(algorithm))
        .collect();
    // Without a kid the key must be unambiguous.
    let key = match usable.as_slice() {
        [] => return Err(Rejection::Algorithm),
        [key] => *key,
        _ if header.kid.is_some() => usable[0],
        _ => return Err(Rejection::UnknownKey),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| Rejection::Malformed)?;
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    if !key.verifies(algorithm, signed.as_bytes(), &signature) {
        return Err(Rejection::Signature);
    }
    let claims: Claims = decode_json(claims_b64)?;
    check(claims, expected)
}

fn check(claims: Claims, expected: &Expected<'_>) -> Result<IdClaims, Rejection> {
    if claims.iss != expected.issuer {
        return Err(Rejection::Issuer);
    }
    let audiences = match &claims.aud {
        Audience::One(one) => vec![one.as_str()],
        Audience::Many(many) => many.iter().map(String::as_str).collect(),
    };
    let for_us = audiences.contains(&expected.client_id);
    // Several audiences: the party it was issued to must be named, and be us.
    let azp_ok = match &claims.azp {
        Some(azp) => azp == expected.client_id,
        None => audiences.len() == 1,
    };
    if !for_us || !azp_ok {
        return Err(Rejection::Audience);
    }
    let now = expected.now.unix_timestamp();
    if claims.exp <= now - LEEWAY_SECS {
        return Err(Rejection::Expired);
    }
    if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err(Rejection::IssuedAt);
    }
    if claims.iat > now + LEEWAY_SECS || claims.iat < now - MAX_AGE_SECS {
        return Err(Rejection::IssuedAt);
    }
    let nonce_ok = claims
        .nonce
        .as_deref()
        .is_some_and(|nonce| bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())));
    if !nonce_ok {
        return Err(Rejection::Nonce);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(Rejection::Malformed);
    }
    let email_verified = matches!(claims.email_verified, Some(Flag::Bool(true)))
        || matches!(&claims.email_verified, Some(Flag::Text(text)) if text == "true");
    Ok(IdClaims {
        issuer: claims.iss,
        subject: claims.sub,
        email: claims.email,
        email_verified,
        name: claims.name,
        picture: claims.picture,
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    struct Signer {
        pair: EcdsaKeyPair,
        kid: &'static str,
    }

    impl Signer {
        fn new(kid: &'static str) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Self { pair, kid }
        }

        fn jwk(&self) -> serde_json::Value {
            let point = self.pair.public_key().as_ref();
            json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            })
        }

        fn sign(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = self
                .pair
                .sign(&SystemRandom::new(), signed.as_bytes())
                .unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({
            "iss": "https://idp.example", "sub": "248289761001", "aud": "mailroom",
            "exp": 1_800_000_300, "iat": 1_800_000_000, "nonce": "n-0S6_WzA2Mj",
            "email": "jane@example.com", "email_verified": true,
        })
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example",
            client_id: "mailroom",
            nonce: "n-0S6_WzA2Mj",
            now: now(),
        }
    }

    fn keys(signers: &[&Signer]) -> KeySet {
        KeySet {
            keys: signers.iter().map(|signer| signer.jwk()).collect(),
        }
    }

    fn header(signer: &Signer) -> serde_json::Value {
        json!({"alg": "ES256", "kid": signer.kid})
    }

    #[test]
    fn a_good_token_gives_its_claims() {
        let signer = Signer::new("k1");
        let token = signer.sign(header(&signer), claims());
        let claims = verify(&token, &keys(&[&signer]), &expected()).unwrap();
        assert_eq!(claims.subject, "248289761001");
        assert!(claims.email_verified);
    }

    #[test]
    fn each_broken_promise_is_refused_by_its_name() {
        let signer = Signer::new("k1");
        let other = Signer::new("k1");
        let set = keys(&[&signer]);
        let with = |change: serde_json::Value| {
            let mut claims = claims();
            for (name, value) in change.as_object().unwrap() {
                claims[name] = value.clone();
            }
            signer.sign(header(&signer), claims)
        };
        let cases = [
            (other.sign(header(&other), claims()), Rejection::Signature),
            (
                with(json!({"iss": "https://evil.example"})),
                Rejection::Issuer,
            ),
            (with(json!({"aud": "another-client"})), Rejection::Audience),
            (with(json!({"aud": ["mailroom", "x"]})), Rejection::Audience),
            (with(json!({"exp": 1_799_999_000})), Rejection::Expired),
            (with(json!({"exp": "never"})), Rejection::Malformed),
            (with(json!({"iat": 1_800_005_000})), Rejection::IssuedAt),
            (with(json!({"nbf": 1_800_005_000})), Rejection::IssuedAt),
            (with(json!({"nonce": "another"})), Rejection::Nonce),
            (
                signer.sign(json!({"alg": "HS256", "kid": "k1"}), claims()),
                Rejection::Algorithm,
            ),
            (
                signer.sign(json!({"alg": "RS256", "kid": "k1"}), claims()),
                Rejection::Algorithm,
            ),
            (
                signer.sign(json!({"alg": "ES256", "kid": "k9"}), claims()),
                Rejection::UnknownKey,
            ),
            (
                signer.sign(json!({"alg": "none", "kid": "k1"}), claims()),
                Rejection::Algorithm,
            ),
            ("a.b".to_owned(), Rejection::Malformed),
        ];
        for (token, rejection) in cases {
            assert_eq!(verify(&token, &set, &expected()).err(), Some(rejection));
        }
        let mut unverified = claims();
        unverified["email_verified"] = json!(false);
        let token = signer.sign(header(&signer), unverified);
        assert!(!verify(&token, &set, &expected()).unwrap().email_verified);
    }
}
