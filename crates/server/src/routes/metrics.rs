//! `GET /metrics` for Prometheus. Only the networks in `--http-metrics-allow` may read it; to
//! everyone else it does not exist. A request forwarded by a proxy we were not told to trust
//! is refused too: behind an unlisted local proxy every client would look like loopback.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::application::installation;
use crate::edge::context::RequestContext;
use crate::problem::ApiError;
use crate::state::AppState;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    State(state): State<AppState>,
    Extension(context): Extension<RequestContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ip = context.client_ip;
    let allowed = state.metrics_allow.iter().any(|net| net.contains(&ip));
    if !allowed || context.forwarded_by_untrusted_peer {
        return Err(ApiError::not_found());
    }
    // The queue is counted at the scrape; a database that does not answer leaves the last
    // counts, and the rest of the page still serves.
    match installation::queue_depths(&state).await {
        Ok(depths) => state.metrics.record_queue(&depths),
        Err(error) => tracing::warn!(%error, "the work queue could not be counted"),
    }
    let body = state.metrics.render().map_err(ApiError::internal)?;
    // The same text parses as either format; say the one the scraper asked for.
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let content_type = if wants_openmetrics {
        OPENMETRICS
    } else {
        PROMETHEUS_TEXT
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}
