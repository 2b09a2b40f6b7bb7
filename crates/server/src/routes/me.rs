//! The signed-in user's own data: `GET /v1/me/audit-log` (AUD-2, PRIV-2).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use mailroom_storage::audit::AuditEntry;
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: u16 = 50;
const MAX_LIMIT: u16 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    format: Format,
    /// The `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    limit: Option<u16>,
}

#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Csv,
}

/// The caller's own audit entries, newest first, a page at a time.
pub async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let entries = state
        .database
        .audit_for_actor(principal.user.id, query.cursor, i64::from(limit))
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = (entries.len() == usize::from(limit))
        .then(|| entries.last().map(|entry| entry.id))
        .flatten();
    match query.format {
        Format::Json => Ok(Json(json!({
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            "next_cursor": next_cursor,
        }))
        .into_response()),
        Format::Csv => csv(&entries, next_cursor),
    }
}

fn entry_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "occurred_at": entry.occurred_at().format(&Rfc3339).unwrap_or_default(),
        "action": entry.action,
        "outcome": entry.outcome,
        "target": entry.target,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "session_id": entry.session_id,
        "request_id": entry.request_id,
    })
}

const CSV_COLUMNS: [&str; 9] = [
    "id",
    "occurred_at",
    "action",
    "outcome",
    "target",
    "ip",
    "user_agent",
    "session_id",
    "request_id",
];

fn csv(entries: &[AuditEntry], next_cursor: Option<Uuid>) -> Result<Response, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(CSV_COLUMNS)
        .map_err(ApiError::internal)?;
    for entry in entries {
        let value = entry_json(entry);
        let record = CSV_COLUMNS.map(|column| match &value[column] {
            Value::String(text) => defuse(text),
            Value::Null => String::new(),
            other => other.to_string(),
        });
        writer.write_record(&record).map_err(ApiError::internal)?;
    }
    let body = writer.into_inner().map_err(ApiError::internal)?;
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"audit-log.csv\""),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
        response.headers_mut().insert("x-next-cursor", cursor);
    }
    Ok(response)
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula; entries hold
/// text from clients (user agents, addresses), so such cells are prefixed with `'`.
fn defuse(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("curl/8"), "curl/8");
    }
}
