//! `POST /csp-reports`: browsers report Content-Security-Policy violations here (the policy's
//! `report-uri`). A violation on our own pages is a bug or an injection attempt, so each one is
//! logged and counted.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::json;
use crate::problem::ApiError;
use crate::state::AppState;

/// Longest value of a report field that reaches the log.
const MAX_LOGGED_CHARS: usize = 200;

/// The `report-uri` body (CSP Level 2). The envelope is strict; the report inside tolerates
/// fields that browsers add over time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CspReportEnvelope {
    #[serde(rename = "csp-report")]
    report: CspReport,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct CspReport {
    document_uri: Option<String>,
    violated_directive: Option<String>,
    effective_directive: Option<String>,
    blocked_uri: Option<String>,
    source_file: Option<String>,
    line_number: Option<u64>,
    column_number: Option<u64>,
    disposition: Option<String>,
}

pub async fn receive(
    State(state): State<AppState>,
    request: Request,
) -> Result<StatusCode, ApiError> {
    json::require_content_type(request.headers(), &["application/csp-report"])?;
    let body = json::read_body(request, &state).await?;
    let CspReportEnvelope { report } = json::parse(&body)?;
    state.metrics.csp_reports.inc();
    tracing::warn!(
        document_uri = shown(report.document_uri.as_deref()),
        violated_directive = shown(report.violated_directive.as_deref()),
        effective_directive = shown(report.effective_directive.as_deref()),
        blocked_uri = shown(report.blocked_uri.as_deref()),
        source_file = shown(report.source_file.as_deref()),
        line_number = report.line_number,
        column_number = report.column_number,
        disposition = shown(report.disposition.as_deref()),
        "content security policy violation reported"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// A report field fit for the log: without query strings (they may carry tokens), and short.
fn shown(value: Option<&str>) -> String {
    let value = value.unwrap_or("");
    let without_query = value.split(['?', '#']).next().unwrap_or("");
    without_query.chars().take(MAX_LOGGED_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_values_lose_queries_and_length() {
        assert_eq!(
            shown(Some("https://x.test/p?token=abc#f")),
            "https://x.test/p"
        );
        assert_eq!(shown(Some(&"a".repeat(500))).len(), MAX_LOGGED_CHARS);
        assert_eq!(shown(None), "");
    }
}
