//! The verify API: one address, a batch, and the log. A key needs the `verify`
//! scope; any member of the organization may verify.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mailroom_core::{ApiKeyId, VerificationId};
use mailroom_storage::verifications::LogQuery;
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::application::actor::Caller;
use crate::application::verify;
use crate::json::ApiJson;
use crate::listing::next_cursor;
use crate::problem::ApiError;
use crate::state::AppState;

/// Lines of the log per page, at most.
const LOG_PAGE: i64 = 100;

/// The SMTP probe runs unless a request says `smtp: false`.
pub(crate) fn probe_by_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    email: String,
    /// Ask the mail host too; without it, syntax, DNS and the lists only.
    #[serde(default = "probe_by_default")]
    smtp: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    emails: Vec<String>,
    #[serde(default = "probe_by_default")]
    smtp: bool,
}

/// `POST /v1/verify`: the result, as logged.
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let mut answers =
        verify::check(&state, &caller, vec![request.email], request.smtp, "email").await?;
    answers
        .pop()
        .map(|answer| json_response(answer.json))
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no result")))
}

/// `POST /v1/verify/batch`: the results in the order of `emails`, each as logged.
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    let answers = verify::check(&state, &caller, request.emails, request.smtp, "emails").await?;
    let results: Vec<&str> = answers.iter().map(|answer| answer.json.as_str()).collect();
    Ok(json_response(format!(
        "{{\"results\":[{}]}}",
        results.join(",")
    )))
}

/// A body of JSON made by `serde_json` already (each result is serialized once, for the log,
/// and sent as logged).
fn json_response(json: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    cursor: Option<VerificationId>,
    verdict: Option<String>,
    api_key_id: Option<ApiKeyId>,
    limit: Option<i64>,
}

/// `GET /v1/verify/logs`: newest first, `LOG_PAGE` at a time; `next_cursor` fetches more.
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<LogParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(LOG_PAGE).clamp(1, LOG_PAGE);
    let query = LogQuery {
        before: params.cursor,
        verdict: params.verdict,
        api_key_id: params.api_key_id,
        limit,
    };
    let lines = verify::log(&state, &caller, &query).await?;
    let next_cursor = next_cursor(
        &lines,
        usize::try_from(limit).unwrap_or(usize::MAX),
        |line| line.id,
    );
    let items: Vec<Value> = lines
        .iter()
        .map(|line| {
            json!({
                "id": line.id,
                "address": line.address,
                "verdict": line.verdict,
                "cached": line.cached,
                "user_id": line.user_id,
                "api_key_id": line.api_key_id,
                "created_at": line.created_at.format(&Rfc3339).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}
