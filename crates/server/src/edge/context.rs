//! Who is asking, and under which request id: the per-request context that later layers and
//! handlers read from the request's extensions, and the request's log span.
//!
//! The principal and its tenant join this context when authentication exists: an extractor
//! resolves them from the credentials and reads the request id and client IP from here, so
//! that audit entries carry all four.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use mailroom_core::RequestId;
use mailroom_core::redact::{REDACTED, is_secret_name, redact_query};
use tracing::Instrument;

use crate::audit::AuditTrail;
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest user agent kept (in sessions, sign-in devices and audit entries).
const MAX_USER_AGENT: usize = 512;

/// The client's user agent as kept: valid text only, cut to a bounded length.
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|agent| agent.chars().take(MAX_USER_AGENT).collect())
}

#[derive(Clone, Copy, Debug)]
pub struct RequestContext {
    pub request_id: RequestId,
    pub client_ip: IpAddr,
    /// The request says it was forwarded (`X-Forwarded-For`, `Forwarded`) by a peer that is
    /// not a trusted proxy: either a spoof, or a proxy the operator forgot to list, in which
    /// case `client_ip` is the proxy's. Address-based allowances must not apply.
    pub forwarded_by_untrusted_peer: bool,
}

pub async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let forwarded_for = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok());
    let forwarded = request.headers().contains_key("x-forwarded-for")
        || request.headers().contains_key(header::FORWARDED);
    let context = RequestContext {
        request_id: RequestId::generate(),
        client_ip: state.trusted_proxies.client_ip(peer, forwarded_for),
        forwarded_by_untrusted_peer: forwarded && !state.trusted_proxies.contains(peer),
    };
    request.extensions_mut().insert(context);

    let span = tracing::info_span!(
        "request",
        request_id = %context.request_id,
        method = %request.method(),
        path = %request.uri().path(),
        client_ip = %context.client_ip,
    );
    async move {
        tracing::debug!(
            query = request.uri().query().map(redact_query),
            headers = ?RedactedHeaders(request.headers()),
            "request received"
        );
        let mut response = next.run(request).await;
        if let Ok(value) = HeaderValue::from_str(&context.request_id.to_string()) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}

/// Headers as a log field: values of secret-named headers (`Authorization`, `Cookie`,
/// `X-Api-Key`, …) are replaced (docs/security.md#log-redaction), and a `Referer` loses its query (it may be a page
/// URL with a token in it).
struct RedactedHeaders<'a>(&'a HeaderMap);

impl std::fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let value = value.to_str().unwrap_or("[not utf-8]");
                let shown = if is_secret_name(name.as_str()) {
                    REDACTED
                } else if name == header::REFERER {
                    value.split(['?', '#']).next().unwrap_or_default()
                } else {
                    value
                };
                (name.as_str(), shown)
            }))
            .finish()
    }
}

/// The request's particulars for the audit entries it writes.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuditTrail {
    type Rejection = crate::problem::ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(audit_trail(
            parts.extensions.get::<RequestContext>(),
            &parts.headers,
        ))
    }
}

/// The audit trail of a request, from its context and headers.
pub fn audit_trail(context: Option<&RequestContext>, headers: &HeaderMap) -> AuditTrail {
    AuditTrail::new(
        context.map(|c| c.client_ip.to_string()).unwrap_or_default(),
        user_agent(headers),
        context.map(|c| c.request_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_are_redacted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cr3t"),
        );
        headers.insert(header::COOKIE, HeaderValue::from_static("sid=s3cr3t"));
        headers.insert("x-api-key", HeaderValue::from_static("mr_live_s3cr3t"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("curl/8"));
        headers.insert(
            header::REFERER,
            HeaderValue::from_static("https://m.test/reset?token=s3cr3t"),
        );
        let shown = format!("{:?}", RedactedHeaders(&headers));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("curl/8"), "{shown}");
        assert!(shown.contains("https://m.test/reset"), "{shown}");
    }
}
