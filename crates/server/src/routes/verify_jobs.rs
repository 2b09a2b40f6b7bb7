//! Bulk verification jobs: upload up to 100,000 addresses (JSON or CSV), follow the
//! progress, download the results (JSON or CSV), or cancel. The work happens on the work queue
//! ([`crate::application::verify::work_job`]), on whichever node claims the job.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mailroom_core::JobId;
use mailroom_core::api_keys::Scope;
use mailroom_storage::bulk_jobs::BulkJob;
use mailroom_verify::Verification;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::actor::Caller;
use crate::application::verify;
use crate::application::verify::MAX_ROWS;
use crate::error::DomainError;
use crate::json::{parse, read_body, require_content_type};
use crate::listing::{Format, defuse};
use crate::problem::ApiError;
use crate::routes::verify::probe_by_default;
use crate::state::AppState;

/// A job's most rows.
/// Room for 100,000 rows of a CSV with a few more columns than `email`.
pub const UPLOAD_LIMIT_BYTES: usize = 32 * 1024 * 1024;
/// Rows read from the database per page of a results download.
const RESULTS_PAGE: i64 = 1000;
const LISTED_JOBS: i64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonUpload {
    #[serde(deserialize_with = "at_most_max_rows")]
    emails: Vec<String>,
    #[serde(default = "probe_by_default")]
    smtp: bool,
}

/// The addresses of a JSON upload, refused as soon as there are more than `MAX_ROWS`: 32 MiB
/// of tiny strings would otherwise become millions of them in memory before being counted.
fn at_most_max_rows<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_ROWS} addresses")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut emails = Vec::new();
            while let Some(email) = seq.next_element::<String>()? {
                if emails.len() == MAX_ROWS {
                    return Err(serde::de::Error::custom(format!(
                        "a job holds at most {MAX_ROWS} addresses"
                    )));
                }
                emails.push(email);
            }
            Ok(emails)
        }
    }
    deserializer.deserialize_seq(Bounded)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// For CSV uploads, whose body has no room for it.
    #[serde(default = "probe_by_default")]
    smtp: bool,
}

/// `POST /v1/verify/jobs`: a JSON `{emails, smtp?}` or a `text/csv` file with an `email` column
/// (`?smtp=false` to skip the probe) → 202 with the job.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    caller.require(Scope::Verify, false)?;
    require_content_type(&headers, &["text/csv"])?;
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("text/csv")
        });
    let body = read_body(request, &()).await?;
    let (emails, smtp) = if is_csv {
        (csv_emails(&body)?, params.smtp)
    } else {
        let upload: JsonUpload = parse(&body)?;
        (upload.emails, upload.smtp)
    };
    let (id, total) = verify::queue(&state, &caller, emails, smtp).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/verify/jobs/{id}"))],
        Json(json!({"id": id, "status": "queued", "total": total})),
    )
        .into_response())
}

/// 400 for an upload that cannot be a job.
fn invalid(detail: impl Into<String>) -> ApiError {
    DomainError::InvalidUpload(detail.into()).into()
}

/// The `email` column of a CSV upload (any case, any position), each value trimmed.
fn csv_emails(body: &Bytes) -> Result<Vec<String>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.as_ref());
    let headers = reader
        .headers()
        .map_err(|error| invalid(format!("the CSV cannot be read: {error}")))?;
    let column = headers
        .iter()
        .position(|name| {
            name.trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case("email")
        })
        .ok_or_else(|| invalid("the CSV has no `email` column in its first line"))?;
    let mut emails = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.map_err(|error| invalid(format!("row {}: {error}", n + 2)))?;
        if emails.len() == MAX_ROWS {
            return Err(invalid(format!("a job holds at most {MAX_ROWS} addresses")));
        }
        emails.push(record.get(column).unwrap_or_default().to_owned());
    }
    Ok(emails)
}

/// `GET /v1/verify/jobs`: the organization's newest jobs.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let jobs = verify::jobs(&state, &caller, LISTED_JOBS).await?;
    Ok(Json(
        json!({ "jobs": jobs.iter().map(describe).collect::<Vec<_>>() }),
    ))
}

/// `GET /v1/verify/jobs/{id}`: progress and counts by verdict.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<JobId>,
) -> Result<Json<Value>, ApiError> {
    let job = verify::job(&state, &caller, id).await?;
    Ok(Json(describe(&job)))
}

/// `DELETE /v1/verify/jobs/{id}`: stops the job; the rows checked so far stay.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<JobId>,
) -> Result<StatusCode, ApiError> {
    verify::cancel_job(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn describe(job: &BulkJob) -> Value {
    let when = |time: OffsetDateTime| time.format(&Rfc3339).unwrap_or_default();
    json!({
        "id": job.id,
        "status": job.status.as_str(),
        "error": job.error,
        "smtp": job.smtp,
        "total": job.total,
        "done": job.done,
        "counts": {
            "deliverable": job.deliverable,
            "undeliverable": job.undeliverable,
            "risky": job.risky,
            "unknown": job.unknown,
        },
        "created_at": when(job.created_at()),
        "finished_at": job.finished_at().map(when),
        "results_url": format!("/v1/verify/jobs/{}/results", job.id),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsParams {
    #[serde(default)]
    format: Format,
}

/// `GET /v1/verify/jobs/{id}/results?format=json|csv`: every row in upload order, streamed a
/// page at a time; a row not yet checked has no verdict.
pub async fn results(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<JobId>,
    Query(params): Query<ResultsParams>,
) -> Result<Response, ApiError> {
    let job = verify::job(&state, &caller, id).await?;
    let format = params.format;
    let pages = futures::stream::unfold(Some(-1_i64), move |after| {
        let (state, job) = (state.clone(), job.clone());
        async move {
            let after = after?;
            match verify::job_results(&state, &job, after, RESULTS_PAGE).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let last = rows.last().map(|(row_no, _, _)| *row_no);
                    let more = i64::try_from(rows.len()).unwrap_or(0) == RESULTS_PAGE;
                    let chunk = render(format, &rows, after < 0);
                    Some((Ok::<Bytes, std::io::Error>(chunk), last.filter(|_| more)))
                }
                Err(error) => Some((Err(std::io::Error::other(error)), None)),
            }
        }
    });
    let (content_type, head, tail, name) = match format {
        Format::Json => ("application/json", "{\"results\":[", "]}", "json"),
        Format::Csv => ("text/csv; charset=utf-8", "", "", "csv"),
    };
    let csv_head = match format {
        Format::Csv => Bytes::from(csv_line(&CSV_COLUMNS.map(str::to_owned))),
        Format::Json => Bytes::from_static(head.as_bytes()),
    };
    let body = futures::stream::once(async move { Ok(csv_head) })
        .chain(pages)
        .chain(futures::stream::once(async move {
            Ok(Bytes::from_static(tail.as_bytes()))
        }));
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"verification-{id}.{name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

const CSV_COLUMNS: [&str; 15] = [
    "email",
    "normalized",
    "verdict",
    "reasons",
    "disposable",
    "free_provider",
    "role_account",
    "suggestion",
    "mx_host",
    "smtp_code",
    "smtp_enhanced_code",
    "mailbox",
    "catch_all",
    "cached",
    "checked_at",
];

fn render(format: Format, rows: &[(i64, String, Option<String>)], first: bool) -> Bytes {
    let mut out = String::new();
    for (n, (_, email, result)) in rows.iter().enumerate() {
        let result: Option<Verification> = result
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok());
        match format {
            Format::Json => {
                if !(first && n == 0) {
                    out.push(',');
                }
                let value = match &result {
                    Some(result) => serde_json::to_value(result).unwrap_or(Value::Null),
                    None => json!({"email": email, "verdict": null}),
                };
                out.push_str(&value.to_string());
            }
            Format::Csv => out.push_str(&csv_line(&csv_cells(email, result.as_ref()))),
        }
    }
    Bytes::from(out)
}

fn csv_cells(email: &str, result: Option<&Verification>) -> [String; 15] {
    let Some(result) = result else {
        let mut cells: [String; 15] = Default::default();
        cells[0] = email.to_owned();
        return cells;
    };
    /// A unit variant's name, as the JSON results spell it.
    fn text<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    let flag = |value: bool| value.to_string();
    [
        email.to_owned(),
        result.normalized.clone().unwrap_or_default(),
        result.verdict.as_str().to_owned(),
        result
            .reasons
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(" "),
        flag(result.classification.disposable),
        flag(result.classification.free_provider),
        flag(result.classification.role_account),
        result.classification.suggestion.clone().unwrap_or_default(),
        result.smtp.host.clone().unwrap_or_default(),
        result
            .smtp
            .code
            .map(|code| code.to_string())
            .unwrap_or_default(),
        result.smtp.enhanced_code.clone().unwrap_or_default(),
        text(&result.smtp.mailbox),
        result.smtp.catch_all.map(flag).unwrap_or_default(),
        flag(result.cached),
        result.checked_at.format(&Rfc3339).unwrap_or_default(),
    ]
}

/// One CSV line, its cells defused: uploaded addresses are anyone's text.
fn csv_line(cells: &[String]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let safe: Vec<String> = cells.iter().map(|cell| defuse(cell)).collect();
    let _ = writer.write_record(&safe);
    writer
        .into_inner()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
