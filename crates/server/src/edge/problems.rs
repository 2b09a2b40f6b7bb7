//! Every error response leaves as RFC 9457 problem+json: a handler's [`ApiError`] is rendered
//! here with the request id, and bare error responses made by the router or a layer (404,
//! 405, 413, a caught panic) are replaced by the generic problem for their status. A browser
//! that asked for a page (`Accept: text/html`) outside the `/v1` API gets the same error as a
//! page in the site's layout instead.

use std::any::Any;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::edge::context::RequestContext;
use crate::problem::{ApiError, PROBLEM_JSON};
use crate::views::{self, CspNonce};

/// Headers that describe the body, which the problem form replaces; the others (`Allow`,
/// `Retry-After`, `Set-Cookie`, `Vary`, …) stay.
const BODY_HEADERS: [header::HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
];

pub async fn render_problems(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestContext>()
        .map(|context| context.request_id);
    let for_pages = !is_api(&request);
    let page_nonce = (for_pages && accepts_html(&request))
        .then(|| request.extensions().get::<CspNonce>().cloned())
        .flatten();
    let mut response = next.run(request).await;
    let error = match response.extensions_mut().remove::<ApiError>() {
        Some(error) => error,
        None if needs_problem_body(&response) => ApiError::for_status(response.status()),
        None => return response,
    };
    let mut rendered = match page_nonce {
        Some(nonce) => views::error_page(&nonce, &error, request_id),
        None => error.render(request_id),
    };
    copy_kept_headers(response.headers(), rendered.headers_mut());
    if for_pages {
        // The same error is a page or a problem by what was asked for: caches must tell.
        rendered
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept"));
    }
    if rendered.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of the body was never read: the connection cannot carry another request,
        // and a client that reused it would fail. (HTTP/2 streams need no such header; hyper
        // drops it there.)
        rendered
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    rendered
}

/// The `/v1` API, whose errors are problem+json whoever asks.
fn is_api(request: &Request) -> bool {
    let path = request.uri().path();
    path == "/v1" || path.starts_with("/v1/")
}

/// Whether the client takes `text/html` (a browser asking for a page), at a weight above 0.
fn accepts_html(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|parameter| {
                let Some((name, value)) = parameter.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("q")
                    && value
                        .trim()
                        .parse::<f32>()
                        .map_or(true, |q| q.is_nan() || q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// An error status without a problem body, unless it is a page: a form shown again with what
/// went wrong is answered with the error's status and is meant for the person, not a program.
fn needs_problem_body(response: &Response) -> bool {
    let status = response.status();
    let content_type = |prefix: &str| {
        response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(prefix.as_bytes()))
    };
    (status.is_client_error() || status.is_server_error())
        && !content_type(PROBLEM_JSON)
        && !content_type("text/html")
}

fn copy_kept_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !BODY_HEADERS.contains(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// A panic is a bug, never an answer: it is logged and becomes a plain 500.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    ApiError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_wanted_only_at_a_weight_above_zero() {
        let asking = |accept: &str| {
            let request = Request::builder()
                .uri("/signin")
                .header(header::ACCEPT, accept)
                .body(axum::body::Body::empty())
                .unwrap_or_default();
            accepts_html(&request)
        };
        assert!(asking("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(asking("TEXT/HTML; q=0.5"));
        for refused in [
            "text/html;q=0",
            "text/html; Q=0",
            "text/html;q=NaN",
            "text/html;q=x",
        ] {
            assert!(!asking(refused), "{refused}");
        }
        assert!(!asking("application/json"));
        assert!(!asking("*/*"));
    }

    #[test]
    fn only_bare_errors_need_a_body() {
        let ok = StatusCode::OK.into_response();
        assert!(!needs_problem_body(&ok));
        let bare = StatusCode::METHOD_NOT_ALLOWED.into_response();
        assert!(needs_problem_body(&bare));
        let mut already = StatusCode::BAD_REQUEST.into_response();
        already.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert!(!needs_problem_body(&already));
        let mut page = StatusCode::UNAUTHORIZED.into_response();
        page.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        assert!(!needs_problem_body(&page));
    }
}
