//! `/v1/webhooks`: the organization's webhook endpoints ([`crate::application::webhooks`]),
//! their deliveries, and a test event.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use mailroom_core::WebhookEndpointId;
use mailroom_storage::webhooks::{Delivery, Endpoint};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::application::actor::Caller;
use crate::application::webhooks::{self, NewWebhook, WebhookChange};
use crate::audit::AuditTrail;
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    url: String,
    events: Vec<String>,
}

/// `POST /v1/webhooks` `{url, events}`: 201 with the endpoint and its signing `secret`, shown
/// this once.
pub async fn create(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = NewWebhook {
        url: body.url,
        events: body.events,
    };
    let created = webhooks::create(&state, &trail, &caller, new).await?;
    let mut shown = describe(&created.endpoint);
    shown["secret"] = Value::from(created.secret.expose_secret());
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `GET /v1/webhooks`: the organization's endpoints, oldest first.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let listed = webhooks::list(&state, &caller).await?;
    Ok(Json(json!({
        "data": listed.iter().map(describe).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/webhooks/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookEndpointId>,
) -> Result<Json<Value>, ApiError> {
    let endpoint = webhooks::get(&state, &caller, id).await?;
    Ok(Json(describe(&endpoint)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// `PATCH /v1/webhooks/{id}` `{url?, events?, enabled?}`: the endpoint as it is now.
pub async fn update(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    Path(id): Path<WebhookEndpointId>,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Json<Value>, ApiError> {
    let change = WebhookChange {
        url: body.url,
        events: body.events,
        enabled: body.enabled,
    };
    let endpoint = webhooks::update(&state, &trail, &caller, id, change).await?;
    Ok(Json(describe(&endpoint)))
}

/// `DELETE /v1/webhooks/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    Path(id): Path<WebhookEndpointId>,
) -> Result<StatusCode, ApiError> {
    webhooks::delete(&state, &trail, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/test`: 202 with the id of the `webhook.test` event on its way.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookEndpointId>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = webhooks::test(&state, &caller, id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "event_id": event }))))
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    /// The last id of the previous page.
    cursor: Option<Uuid>,
    limit: Option<i64>,
}

/// `GET /v1/webhooks/{id}/deliveries?cursor&limit`: every attempt, newest first.
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<WebhookEndpointId>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    let listed = webhooks::deliveries(&state, &caller, id, query.cursor, limit).await?;
    let next = (listed.len() as i64 >= limit.clamp(1, 100))
        .then(|| listed.last().map(|delivery| delivery.id))
        .flatten();
    Ok(Json(json!({
        "data": listed.iter().map(delivery).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

fn describe(endpoint: &Endpoint) -> Value {
    json!({
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since.map(when),
        "created_at": when(endpoint.created_at),
    })
}

fn delivery(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "at": when(delivery.at),
        "attempt": delivery.attempt,
        "delivered": delivery.delivered,
        "status_code": delivery.status_code,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
    })
}
