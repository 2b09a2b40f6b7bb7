//! The one error type of the HTTP edge and its RFC 9457 `application/problem+json` form
//! (docs/security.md#errors).
//!
//! A handler returns `Err(ApiError)`; the response it becomes carries the error in its
//! extensions, and the edge ([`crate::edge::problems`]) renders it once the request id is at
//! hand. Responses that the framework or a layer produced on its own (404, 405, 413, a panic)
//! are rendered there too, so every error response has the same shape.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_core::RequestId;
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Stable, machine-readable: clients switch on it; it never changes meaning.
    code: &'static str,
    detail: String,
    /// The request field the error is about, as a path (`csp-report.line-number`).
    field: Option<String>,
    /// What went wrong inside, for the log only (5xx).
    cause: Option<Arc<anyhow::Error>>,
    /// Seconds until the client may try again (`Retry-After`).
    retry_after: Option<u64>,
    /// Extension members of the problem (RFC 9457 §3.2), e.g. the `mfa_token` of
    /// `mfa_required`.
    /// Boxed: errors travel in `Result`s everywhere, and are rarely this rich.
    members: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
            cause: None,
            retry_after: None,
            members: None,
        }
    }

    /// Adds an extension member to the problem document.
    pub fn with_member(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.members
            .get_or_insert_default()
            .insert(name.to_owned(), value.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// A failure of ours: the cause is logged with the request id, the client learns nothing
    /// of it.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut error = Self::for_status(StatusCode::INTERNAL_SERVER_ERROR);
        error.cause = Some(Arc::new(cause.into()));
        error
    }

    pub fn not_found() -> Self {
        Self::for_status(StatusCode::NOT_FOUND)
    }

    /// The generic problem for a status that came with nothing more specific.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, detail) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "The request could not be understood."),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Authentication is required."),
            StatusCode::FORBIDDEN => ("forbidden", "This action is not allowed."),
            StatusCode::NOT_FOUND => ("not_found", "There is nothing at this address."),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "This address does not accept that method; see the Allow header.",
            ),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "The request took too long."),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "The request body is larger than this endpoint accepts.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "The request body's Content-Type is not accepted here.",
            ),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "Too many requests; slow down."),
            StatusCode::SERVICE_UNAVAILABLE => (
                "service_unavailable",
                "The service cannot answer right now; try again shortly.",
            ),
            s if s.is_server_error() => (
                "internal_error",
                "Something went wrong on our side; quote the request id when reporting it.",
            ),
            _ => ("http_error", "The request failed."),
        };
        Self::new(status, code, detail)
    }

    /// An extension member of the problem, if it has one by that name.
    pub fn member(&self, name: &str) -> Option<&serde_json::Value> {
        self.members.as_ref()?.get(name)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// A log line for failures of ours; other statuses are answers, not failures, and their
    /// handlers log what matters.
    pub(crate) fn log(&self) {
        // `problem_code`, not `code`: the log redacts fields named `code` (OTPs).
        match &self.cause {
            Some(cause) => tracing::error!(
                problem_code = self.code,
                error = format!("{cause:#}"),
                "request failed"
            ),
            None if self.status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(problem_code = self.code, "request failed")
            }
            None => {}
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The problem document, and a log line for failures of ours.
    pub(crate) fn render(&self, request_id: Option<RequestId>) -> Response {
        self.log();
        let problem = Problem {
            r#type: format!("urn:mailroom:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            request_id: request_id.map(|id| id.to_string()),
            field: self.field.as_deref(),
            members: self.members.as_deref(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Handlers' errors travel to the edge in the response's extensions, to be rendered there with
/// the request id.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(flatten)]
    members: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// One test, not two: the error callsite must not be hit by a parallel test while this
    /// one captures the log (tracing caches callsite interest process-wide).
    #[tokio::test]
    async fn internal_errors_log_their_cause_and_tell_the_client_nothing() {
        let id = RequestId::generate();
        let mut response = None;
        let logged = crate::telemetry::capture(true, || {
            let error = ApiError::internal(anyhow::anyhow!("connection to 10.0.0.5 refused"));
            response = Some(error.render(Some(id)));
        });
        assert!(
            logged.contains("connection to 10.0.0.5 refused"),
            "{logged}"
        );
        assert!(logged.contains("ERROR"), "{logged}");
        assert!(
            logged.contains(r#""problem_code":"internal_error""#),
            "{logged}"
        );

        let response = response.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(response).await;
        assert_eq!(body["code"], "internal_error");
        assert_eq!(body["request_id"], id.to_string());
        assert!(!body.to_string().contains("10.0.0.5"));
    }

    #[tokio::test]
    async fn problems_have_every_member() {
        let body = body_json(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", "bad")
                .with_field("a.b")
                .render(None),
        )
        .await;
        for member in [
            "type",
            "title",
            "status",
            "detail",
            "code",
            "request_id",
            "field",
        ] {
            assert!(body.get(member).is_some(), "{member} missing from {body}");
        }
        assert_eq!(body["type"], "urn:mailroom:problem:invalid_field");
        assert_eq!(body["title"], "Bad Request");
    }
}
