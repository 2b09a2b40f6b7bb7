//! Strict JSON bodies (docs/security.md#request-limits): malformed JSON, wrong types, missing and unknown fields are a
//! 400 that names the offending field; an oversized body is a 413; a body that does not say it
//! is JSON is a 415. Request types opt into unknown-field rejection with
//! `#[serde(deny_unknown_fields)]`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON request body, parsed strictly. Use it in place of `axum::Json`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state)
            .await
            .map(|(parsed, _)| ApiJson(parsed))
    }
}

/// A JSON body as [`ApiJson`] parses it, and the SHA-256 of its bytes: what an idempotency
/// key's request is known by.
pub struct HashedJson<T>(pub T, pub Vec<u8>);

impl<S, T> FromRequest<S> for HashedJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use sha2::{Digest, Sha256};
        let (parsed, body) = read_json(request, state).await?;
        Ok(HashedJson(parsed, Sha256::digest(&body).to_vec()))
    }
}

/// A JSON body, parsed, and its bytes.
async fn read_json<S: Send + Sync, T: DeserializeOwned>(
    request: Request,
    state: &S,
) -> Result<(T, Bytes), ApiError> {
    require_content_type(request.headers(), &[])?;
    let body = read_body(request, state).await?;
    Ok((parse(&body)?, body))
}

/// Accepts `application/json`, any `application/*+json`, and the extra media types given.
pub fn require_content_type(headers: &HeaderMap, also: &[&str]) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let accepted = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || also.contains(&essence.as_str());
    if accepted {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the body as JSON with `Content-Type: application/json`.",
        ))
    }
}

/// The whole body, within the edge's body limit.
pub async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    "The request body could not be read.",
                )
            }
        })
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            let field = field_path(&path, &inner.to_string());
            let detail = match &field {
                Some(field) => format!("Field `{field}`: {inner}"),
                None => format!("The body does not have the expected shape: {inner}"),
            };
            let error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", detail);
            match field {
                Some(field) => error.with_field(field),
                None => error,
            }
        } else {
            malformed(&inner)
        }
    })?;
    deserializer.end().map_err(|error| malformed(&error))?;
    Ok(value)
}

/// The offending field as a dotted path. For a missing field the path is that of the
/// enclosing object, and serde names the field only in its message, whose wording is serde's
/// stable "missing field `x`".
fn field_path(path: &str, message: &str) -> Option<String> {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let parent = (path != ".").then_some(path);
    match (parent, missing) {
        (Some(parent), Some(name)) => Some(format!("{parent}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (Some(parent), None) => Some(parent.to_owned()),
        (None, None) => None,
    }
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!(
            "The body is not valid JSON (line {}, column {}).",
            error.line(),
            error.column()
        ),
    )
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn error_of(body: &str) -> ApiError {
        parse::<Outer>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn wrong_types_name_the_field() {
        let error = error_of(r#"{"name":"a","inner":{"count":"three"}}"#);
        assert_eq!(error.code(), "invalid_field");
        assert_eq!(error.field(), Some("inner.count"));
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = error_of(r#"{"name":"a","inner":{"count":3},"admin":true}"#);
        assert_eq!(error.code(), "invalid_field");
        assert_eq!(error.field(), Some("admin"));
        let error = error_of(r#"{"name":"a","inner":{"count":3,"extra":1}}"#);
        assert_eq!(error.field(), Some("inner.extra"));
    }

    #[test]
    fn missing_fields_are_named() {
        let error = error_of(r#"{"inner":{"count":3}}"#);
        assert_eq!(error.field(), Some("name"));
        let error = error_of(r#"{"name":"a","inner":{}}"#);
        assert_eq!(error.field(), Some("inner.count"));
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_malformed() {
        assert_eq!(error_of(r#"{"name":"#).code(), "invalid_json");
        assert_eq!(
            error_of(r#"{"name":"a","inner":{"count":3}} x"#).code(),
            "invalid_json"
        );
    }
}
