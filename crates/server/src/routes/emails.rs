//! `/v1/emails`: messages sent as the organization's connected accounts
//! ([`crate::application::emails`]), in the shape of Resend's API: `to` may be one address or
//! a list, bodies are `text` and `html`, attachments are base64.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use mailroom_core::{EmailId, MailAccountId};
use mailroom_storage::emails::{Email, EmailRecord, EmailStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::actor::Caller;
use crate::application::emails::{self, IdempotencyKey, NewAttachment, NewMessage, Tag};
use crate::audit::AuditTrail;
use crate::error::{DomainError, SendRefusal};
use crate::json::{ApiJson, HashedJson};
use crate::problem::ApiError;
use crate::state::AppState;

/// A message's request, its attachments in base64 included.
pub const BODY_LIMIT_BYTES: usize = 10 * 1024 * 1024;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// One address, or a list of them.
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub enum Addresses {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn list(self) -> Vec<String> {
        match self {
            Addresses::None => Vec::new(),
            Addresses::One(one) => vec![one],
            Addresses::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRequest {
    filename: String,
    content_type: Option<String>,
    /// Base64.
    content: String,
    content_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    from: String,
    #[serde(default)]
    to: Addresses,
    #[serde(default)]
    cc: Addresses,
    #[serde(default)]
    bcc: Addresses,
    #[serde(default)]
    reply_to: Addresses,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    attachments: Vec<AttachmentRequest>,
    #[serde(default)]
    tags: Vec<Tag>,
    mail_account_id: Option<MailAccountId>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    scheduled_at: Option<OffsetDateTime>,
}

impl EmailRequest {
    fn into_message(self, idempotency: Option<IdempotencyKey>) -> Result<NewMessage, DomainError> {
        let attachments = self
            .attachments
            .into_iter()
            .map(|attachment| {
                let content = base64::engine::general_purpose::STANDARD
                    .decode(attachment.content.as_bytes())
                    .map_err(|_| {
                        DomainError::invalid(
                            "attachments",
                            "an attachment's content must be base64",
                        )
                    })?;
                Ok(NewAttachment {
                    content_type: attachment
                        .content_type
                        .unwrap_or_else(|| "application/octet-stream".to_owned()),
                    filename: attachment.filename,
                    content,
                    content_id: attachment.content_id,
                })
            })
            .collect::<Result<Vec<_>, DomainError>>()?;
        Ok(NewMessage {
            from: self.from,
            to: self.to.list(),
            cc: self.cc.list(),
            bcc: self.bcc.list(),
            reply_to: self.reply_to.list(),
            subject: self.subject,
            text: self.text,
            html: self.html,
            headers: self.headers.into_iter().collect(),
            attachments,
            tags: self.tags,
            mail_account_id: self.mail_account_id,
            scheduled_at: self.scheduled_at,
            idempotency,
        })
    }
}

/// The request's `Idempotency-Key`, if it has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, DomainError> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| DomainError::Sending(SendRefusal::InvalidIdempotencyKey))
        })
        .transpose()
}

/// Messages in one batch, at most.
pub const MAX_BATCH: usize = 100;

/// `POST /v1/emails/batch` `[message, …]` (at most 100): one answer each, in order — `{id}`
/// for an accepted message, `{error: {status, code, detail, field?}}` for a refused one. With
/// an `Idempotency-Key`, message `i` is known by `<key>#<i>`.
pub async fn batch(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(items): ApiJson<Vec<Value>>,
) -> Result<Json<Value>, ApiError> {
    use sha2::{Digest, Sha256};
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(DomainError::invalid(
            "messages",
            format!("a batch holds 1 to {MAX_BATCH} messages"),
        )
        .into());
    }
    let key = idempotency_key(&headers)?;
    let mut answers = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let idempotency = key.as_ref().map(|key| IdempotencyKey {
            key: format!("{key}#{index}"),
            request_hash: Sha256::digest(item.to_string().as_bytes()).to_vec(),
        });
        let sent = match serde_json::from_value::<EmailRequest>(item) {
            Ok(request) => match request.into_message(idempotency) {
                Ok(message) => emails::send(&state, &trail, &caller, message)
                    .await
                    .map_err(ApiError::from),
                Err(error) => Err(ApiError::from(error)),
            },
            Err(error) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                format!("The message does not have the expected shape: {error}"),
            )),
        };
        answers.push(match sent {
            Ok(id) => json!({"id": id}),
            // Ours, not the message's: the whole request fails, and the cause is logged.
            Err(error) if error.status().is_server_error() => return Err(error),
            Err(error) => json!({"error": {
                "status": error.status().as_u16(),
                "code": error.code(),
                "detail": error.detail(),
                "field": error.field(),
            }}),
        });
    }
    Ok(Json(json!({"data": answers})))
}

/// `POST /v1/emails`: 202 `{id}` once the message is accepted (stored and queued). With an
/// `Idempotency-Key`, the same request again answers the same `{id}`.
pub async fn send(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    headers: HeaderMap,
    HashedJson(body, request_hash): HashedJson<EmailRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let idempotency = idempotency_key(&headers)?.map(|key| IdempotencyKey { key, request_hash });
    let message = body.into_message(idempotency)?;
    let id = emails::send(&state, &trail, &caller, message).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id}))))
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    /// The last id of the previous page.
    cursor: Option<EmailId>,
    limit: Option<i64>,
}

/// `GET /v1/emails?status&cursor&limit`: newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(EmailStatus::parse(text).ok_or_else(|| {
            DomainError::invalid("status", format!("{text:?} is not a message status"))
        })?),
    };
    let limit = query.limit.unwrap_or(50);
    let listed = emails::list(&state, &caller, status, query.cursor, limit).await?;
    let next = (listed.len() as i64 >= limit.clamp(1, 100))
        .then(|| listed.last().map(|email| email.id))
        .flatten();
    Ok(Json(json!({
        "data": listed.iter().map(summary).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// `GET /v1/emails/{id}`: its status, every attempt, and each recipient's outcome.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<EmailId>,
) -> Result<Json<Value>, ApiError> {
    let record = emails::get(&state, &caller, id).await?;
    Ok(Json(describe(&record)))
}

fn summary(email: &Email) -> Value {
    json!({
        "id": email.id,
        "status": email.status.as_str(),
        "from": email.from_address,
        "mail_account_id": email.mail_account_id,
        "recipient_count": email.recipient_count,
        "size_bytes": email.size_bytes,
        "message_id": email.message_id,
        "tags": Tag::of(email),
        "last_error": email.last_error,
        "created_at": when(email.created_at),
        "scheduled_at": email.scheduled_at.map(when),
        "sent_at": email.sent_at.map(when),
    })
}

fn describe(record: &EmailRecord) -> Value {
    let mut described = summary(&record.email);
    described["recipients"] = record
        .recipients
        .iter()
        .map(|recipient| {
            json!({
                "address": recipient.address,
                "kind": recipient.kind.as_str(),
                "status": recipient.status.as_str(),
                "reply": recipient.reply,
            })
        })
        .collect();
    described["attempts"] = record
        .attempts
        .iter()
        .map(|attempt| {
            json!({
                "at": when(attempt.at),
                "transport": attempt.transport,
                "outcome": attempt.outcome.as_str(),
                "reply": attempt.reply,
                "enhanced_status_code": attempt.enhanced_code,
                "duration_ms": attempt.duration_ms,
            })
        })
        .collect();
    described
}

/// `DELETE /v1/emails/{id}`: cancels a message still scheduled or queued.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<EmailId>,
) -> Result<StatusCode, ApiError> {
    emails::cancel(&state, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/suppressions`: the addresses later messages skip.
pub async fn suppressions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let listed = emails::suppressions(&state, &caller).await?;
    Ok(Json(json!({
        "data": listed.iter().map(|suppression| json!({
            "address": suppression.address,
            "reason": suppression.reason.as_str(),
            "reply": suppression.reply,
            "created_at": when(suppression.created_at),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    address: String,
}

/// `POST /v1/suppressions` `{address}`: 201, or 200 when it was on the list already.
pub async fn suppress(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SuppressRequest>,
) -> Result<StatusCode, ApiError> {
    let added = emails::suppress(&state, &caller, &body.address).await?;
    Ok(if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// `DELETE /v1/suppressions/{address}`.
pub async fn unsuppress(
    State(state): State<AppState>,
    caller: Caller,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    emails::unsuppress(&state, &caller, &address).await?;
    Ok(StatusCode::NO_CONTENT)
}
