//! Security headers on every response (docs/security.md#security-headers), with a fresh CSP nonce per response that page
//! templates put on their `<script>` tags.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;
use crate::views::CspNonce;

/// Where browsers send their reports of what the policy blocked.
pub const CSP_REPORT_PATH: &str = "/csp-reports";

/// The policy: scripts only with this response's nonce (and what they load, through
/// `'strict-dynamic'`), everything else from our own origin, no plugins, no framing, no
/// `<base>` hijacking, and violations reported to us.
fn content_security_policy(nonce: &CspNonce) -> String {
    format!(
        "default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'self'; \
         img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'; report-uri {CSP_REPORT_PATH}",
        nonce = nonce.as_str()
    )
}

pub async fn security_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = CspNonce::generate();
    let csp = content_security_policy(&nonce);
    request.extensions_mut().insert(nonce);
    let mut response = next.run(request).await;

    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 4] = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_XSS_PROTECTION, state.x_xss_protection.clone());
    // Responses are per-user unless a handler says otherwise (static assets do).
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    #[test]
    fn nonces_are_fresh_and_long_enough() {
        let a = CspNonce::generate();
        let b = CspNonce::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(STANDARD.decode(a.as_str()).unwrap().len(), 16);
    }

    #[test]
    fn policy_pins_scripts_to_the_nonce_and_forbids_framing() {
        let nonce = CspNonce::generate();
        let policy = content_security_policy(&nonce);
        assert!(policy.contains(&format!("script-src 'nonce-{}'", nonce.as_str())));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains("unsafe-inline"));
    }
}
