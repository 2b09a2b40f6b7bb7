//! An organization's webhooks (migration 0043): its endpoints, each with its signing secret
//! sealed under the organization's data key, bound to the endpoint's row; the events told to
//! them; every attempt at delivering one.
//!
//! An event is emitted inside the transaction of the change it tells of ([`emit_to`]), with
//! a queue job per endpoint subscribed to it (the outbox pattern): a change committed is told,
//! and one rolled back is not.

use futures::FutureExt;
use mailroom_core::audit::AuditEvent;
use mailroom_core::webhook::EventType;
use mailroom_core::{JobId, OrgId, UserId, WebhookEndpointId, WebhookEventId};
use mailroom_crypto::envelope::Binding;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::accounts::{from_ms, ms};
use crate::keyring::SealedColumn;
use crate::queue::{JobKind, NewJob, PreparedJob};
use crate::tx::{Inner, Tenancy, Tx};
use crate::{Database, StorageError, on_backend};

pub(crate) const WEBHOOK_SECRET: SealedColumn = SealedColumn {
    table: "webhook_endpoints",
    column: "secret",
    row_id: "id",
    page: crate::keyring::RESEAL_PAGE,
};

/// How long events (and their deliveries) are kept.
pub const EVENTS_KEPT: time::Duration = time::Duration::days(30);

fn binding(id: WebhookEndpointId) -> Binding<'static> {
    Binding {
        table: WEBHOOK_SECRET.table,
        column: WEBHOOK_SECRET.column,
        row: id.as_uuid(),
    }
}

/// An endpoint to add.
#[derive(Clone)]
pub struct NewEndpoint {
    pub id: WebhookEndpointId,
    pub url: String,
    pub events: Vec<EventType>,
    pub secret: Zeroizing<Vec<u8>>,
    pub created_by: Option<UserId>,
}

/// An endpoint as stored, without its secret.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub id: WebhookEndpointId,
    pub org_id: OrgId,
    pub url: String,
    pub events: Vec<EventType>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Since when every delivery to it failed, if the last one did.
    pub failing_since: Option<OffsetDateTime>,
    pub created_by: Option<UserId>,
    pub created_at: OffsetDateTime,
}

/// What to change of an endpoint; `None` leaves it.
#[derive(Clone, Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    /// Enabling one clears why it was disabled, and its failures.
    pub enabled: Option<bool>,
}

/// One attempt at delivering an event to an endpoint.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: WebhookEventId,
    pub event_type: String,
    pub at: OffsetDateTime,
    pub attempt: i64,
    pub delivered: bool,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What a delivery job sends: to whom, signed with what, and the event's body as it is.
pub struct ToDeliver {
    pub endpoint: Endpoint,
    pub secret: Zeroizing<Vec<u8>>,
    pub event_id: WebhookEventId,
    pub payload: String,
    pub event_created_at: OffsetDateTime,
}

/// What a delivery attempt came to.
#[derive(Clone, Debug)]
pub struct Attempted {
    pub at: OffsetDateTime,
    pub attempt: i64,
    pub delivered: bool,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Where the endpoint is after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    Healthy,
    /// Its deliveries fail, not yet for long enough to disable it.
    Failing,
    /// It failed for too long and was disabled by this attempt.
    DisabledNow,
}

/// A delivery job's payload: which event, to which endpoint.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct DeliveryJob {
    pub endpoint_id: WebhookEndpointId,
    pub event_id: WebhookEventId,
}

const COLUMNS: &str =
    "id, org_id, url, events, enabled, disabled_reason, failing_since, created_by, created_at";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    org_id: Uuid,
    url: String,
    events: String,
    enabled: bool,
    disabled_reason: Option<String>,
    failing_since: Option<i64>,
    created_by: Option<Uuid>,
    created_at: i64,
}

impl TryFrom<Row> for Endpoint {
    type Error = StorageError;

    fn try_from(row: Row) -> Result<Self, StorageError> {
        Ok(Endpoint {
            id: WebhookEndpointId::from_uuid(row.id),
            org_id: OrgId::from_uuid(row.org_id),
            url: row.url,
            events: stored_events(&row.events)?,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            failing_since: row.failing_since.map(from_ms),
            created_by: row.created_by.map(UserId::from_uuid),
            created_at: from_ms(row.created_at),
        })
    }
}

fn stored_events(text: &str) -> Result<Vec<EventType>, StorageError> {
    serde_json::from_str(text)
        .map_err(|_| StorageError::Internal("an endpoint's stored events do not parse"))
}

fn events_text(events: &[EventType]) -> String {
    // A list of unit variants always serializes.
    serde_json::to_string(events).unwrap_or_else(|_| "[]".to_owned())
}

type DeliveryRow = (
    Uuid,
    Uuid,
    String,
    i64,
    i64,
    bool,
    Option<i64>,
    Option<String>,
    i64,
);

/// An organization's webhooks. Reached through [`Database::webhooks`].
#[derive(Clone, Copy)]
pub struct Webhooks<'a> {
    pub(crate) db: &'a Database,
}

impl Webhooks<'_> {
    /// Adds an endpoint, its secret sealed, with its audit entry.
    pub async fn create(
        &self,
        org_id: OrgId,
        endpoint: &NewEndpoint,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        // Sealing may add the organization's data key: a transaction of its own, first.
        let sealed = self
            .db
            .seal(
                org_id.as_uuid(),
                &binding(endpoint.id),
                &endpoint.secret,
                now,
            )
            .await?;
        let key = self.db.audit_key()?;
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (endpoint, sealed, key, event) =
                    (endpoint.clone(), sealed.clone(), key.clone(), event.clone());
                async move {
                    on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "INSERT INTO webhook_endpoints (id, org_id, url, events, secret, created_by, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(endpoint.id.as_uuid())
                        .bind(org_id.as_uuid())
                        .bind(&endpoint.url)
                        .bind(events_text(&endpoint.events))
                        .bind(&sealed)
                        .bind(endpoint.created_by.map(|id| id.as_uuid()))
                        .bind(ms(now))
                        .execute(&mut **tx)
                        .await?;
                    });
                    crate::audit::append(tx, &key, &event, now).await
                }
                .boxed()
            })
            .await
    }

    /// The organization's endpoints, oldest first.
    pub async fn list(&self, org_id: OrgId) -> Result<Vec<Endpoint>, StorageError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_endpoints WHERE org_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<Row> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                let sql = sql.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql).bind(org_id.as_uuid()).fetch_all(&mut **tx).await?
                    }))
                }
                .boxed()
            })
            .await?;
        rows.into_iter().map(Endpoint::try_from).collect()
    }

    /// One of the organization's endpoints; another organization's is as missing as none.
    pub async fn get(
        &self,
        org_id: OrgId,
        id: WebhookEndpointId,
    ) -> Result<Option<Endpoint>, StorageError> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE org_id = $1 AND id = $2");
        let row: Option<Row> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                let sql = sql.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        row.map(Endpoint::try_from).transpose()
    }

    /// Changes an endpoint, with its audit entry; false when there is no such endpoint.
    pub async fn update(
        &self,
        org_id: OrgId,
        id: WebhookEndpointId,
        change: &EndpointChange,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let events = change.events.as_deref().map(events_text);
        let change = change.clone();
        self.db
            .changed_one(org_id, std::slice::from_ref(event), now, move |tx| {
                let (change, events) = (change.clone(), events.clone());
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET url = COALESCE($3, url), \
                             events = COALESCE($4, events), enabled = COALESCE($5, enabled), \
                             disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END, \
                             failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END \
                             WHERE org_id = $1 AND id = $2",
                        )
                        .bind(org_id.as_uuid())
                        .bind(id.as_uuid())
                        .bind(change.url.as_deref())
                        .bind(events.as_deref())
                        .bind(change.enabled)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// Deletes an endpoint, its secret and its deliveries, with its audit entry; false when
    /// there is no such endpoint.
    pub async fn delete(
        &self,
        org_id: OrgId,
        id: WebhookEndpointId,
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        self.db
            .changed_one(org_id, std::slice::from_ref(event), now, move |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query("DELETE FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
                            .bind(org_id.as_uuid())
                            .bind(id.as_uuid())
                            .execute(&mut **tx)
                            .await?
                            .rows_affected()
                    }))
                }
                .boxed()
            })
            .await
    }

    /// The attempts at delivering to an endpoint, newest first, before the `before` cursor.
    pub async fn deliveries(
        &self,
        org_id: OrgId,
        endpoint: WebhookEndpointId,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StorageError> {
        let rows: Vec<DeliveryRow> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(
                            "SELECT d.id, d.event_id, e.type, d.at, d.attempt, d.delivered, \
                             d.status_code, d.error, d.duration_ms \
                             FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id \
                             WHERE d.org_id = $1 AND d.endpoint_id = $2 AND ($3 IS NULL OR d.id < $3) \
                             ORDER BY d.id DESC LIMIT $4",
                        )
                        .bind(org_id.as_uuid())
                        .bind(endpoint.as_uuid())
                        .bind(before)
                        .bind(limit)
                        .fetch_all(&mut **tx)
                        .await?
                    }))
                }
                .boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, event, event_type, at, attempt, delivered, status_code, error, duration)| {
                    Delivery {
                        id,
                        event_id: WebhookEventId::from_uuid(event),
                        event_type,
                        at: from_ms(at),
                        attempt,
                        delivered,
                        status_code,
                        error,
                        duration_ms: duration,
                    }
                },
            )
            .collect())
    }

    /// Emits a test event to one endpoint, whatever it subscribed to: its id, or `None` when
    /// the organization has no such endpoint.
    pub async fn emit_test(
        &self,
        org_id: OrgId,
        endpoint: WebhookEndpointId,
        now: OffsetDateTime,
    ) -> Result<Option<WebhookEventId>, StorageError> {
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                async move {
                    let found: Option<Uuid> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE org_id = $1 AND id = $2")
                            .bind(org_id.as_uuid())
                            .bind(endpoint.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    });
                    if found.is_none() {
                        return Ok(None);
                    }
                    let data = serde_json::json!({ "endpoint_id": endpoint });
                    let id =
                        emit_to(tx, org_id, EventType::WebhookTest, &[endpoint], data, now).await?;
                    Ok(Some(id))
                }
                .boxed()
            })
            .await
    }

    /// What to deliver of an event to an endpoint, its secret opened; `None` when either is
    /// gone, or the endpoint is disabled.
    pub async fn to_deliver(
        &self,
        org_id: OrgId,
        job: DeliveryJob,
    ) -> Result<Option<ToDeliver>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Found {
            #[sqlx(flatten)]
            row: Row,
            secret: Vec<u8>,
            payload: String,
            event_created_at: i64,
        }
        let sql = format!(
            "SELECT {COLUMNS}, secret, payload, event_created_at FROM webhook_endpoints \
             CROSS JOIN (SELECT payload, created_at AS event_created_at FROM webhook_events \
             WHERE org_id = $1 AND id = $3) event \
             WHERE org_id = $1 AND id = $2 AND enabled"
        );
        let found: Option<Found> = self
            .db
            .transaction_for(&Tenancy::Org(org_id), |tx| {
                let sql = sql.clone();
                async move {
                    Ok(on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query_as(&sql)
                            .bind(org_id.as_uuid())
                            .bind(job.endpoint_id.as_uuid())
                            .bind(job.event_id.as_uuid())
                            .fetch_optional(&mut **tx)
                            .await?
                    }))
                }
                .boxed()
            })
            .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let secret = self
            .db
            .open(org_id.as_uuid(), &binding(job.endpoint_id), &found.secret)
            .await?;
        Ok(Some(ToDeliver {
            endpoint: found.row.try_into()?,
            secret,
            event_id: job.event_id,
            payload: found.payload,
            event_created_at: from_ms(found.event_created_at),
        }))
    }

    /// Records an attempt, and where the endpoint is after it: a success clears its failures;
    /// a failure starts them, or, when they began `disable_after` ago or more, disables the
    /// endpoint (with `disabled`, its audit entry) in the same transaction.
    pub async fn record(
        &self,
        org_id: OrgId,
        job: DeliveryJob,
        attempted: &Attempted,
        disable_after: time::Duration,
        disabled: &AuditEvent,
    ) -> Result<EndpointState, StorageError> {
        let key = self.db.audit_key()?;
        let now = attempted.at;
        self.db
            .serializable_for(&Tenancy::Org(org_id), |tx| {
                let (attempted, key, disabled) =
                    (attempted.clone(), key.clone(), disabled.clone());
                async move {
                    let failing_since: Option<Option<i64>> = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "INSERT INTO webhook_deliveries (id, org_id, endpoint_id, event_id, at, \
                             attempt, delivered, status_code, error, duration_ms) \
                             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
                             WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE org_id = $2 AND id = $3)",
                        )
                        .bind(Uuid::now_v7())
                        .bind(org_id.as_uuid())
                        .bind(job.endpoint_id.as_uuid())
                        .bind(job.event_id.as_uuid())
                        .bind(ms(now))
                        .bind(attempted.attempt)
                        .bind(attempted.delivered)
                        .bind(attempted.status_code)
                        .bind(attempted.error.as_deref())
                        .bind(attempted.duration_ms)
                        .execute(&mut **tx)
                        .await?;
                        sqlx::query_scalar(
                            "UPDATE webhook_endpoints SET failing_since = \
                             CASE WHEN $3 THEN NULL ELSE COALESCE(failing_since, $4) END \
                             WHERE org_id = $1 AND id = $2 RETURNING failing_since",
                        )
                        .bind(org_id.as_uuid())
                        .bind(job.endpoint_id.as_uuid())
                        .bind(attempted.delivered)
                        .bind(ms(now))
                        .fetch_optional(&mut **tx)
                        .await?
                    });
                    let Some(Some(since)) = failing_since else {
                        return Ok(EndpointState::Healthy);
                    };
                    if from_ms(since) + disable_after > now {
                        return Ok(EndpointState::Failing);
                    }
                    let reason = format!(
                        "every delivery failed for {} days",
                        disable_after.whole_days()
                    );
                    let disabled_now = on_backend!(&mut tx.0, Inner, tx => {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $3 \
                             WHERE org_id = $1 AND id = $2 AND enabled",
                        )
                        .bind(org_id.as_uuid())
                        .bind(job.endpoint_id.as_uuid())
                        .bind(&reason)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected()
                    }) == 1;
                    if !disabled_now {
                        return Ok(EndpointState::Failing);
                    }
                    crate::audit::append(tx, &key, &disabled, now).await?;
                    Ok(EndpointState::DisabledNow)
                }
                .boxed()
            })
            .await
    }

    /// Deletes the events created before `before` and their deliveries, every
    /// organization's; how many events.
    pub async fn purge_events(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        self.db
            .verifications()
            .purge_older_than("webhook_events", before)
            .await
    }
}

/// The enabled endpoints of the organization subscribed to `event`.
pub(crate) async fn subscribers(
    tx: &mut Tx,
    org_id: OrgId,
    event: EventType,
) -> Result<Vec<WebhookEndpointId>, StorageError> {
    let rows: Vec<(Uuid, String)> = on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query_as("SELECT id, events FROM webhook_endpoints WHERE org_id = $1 AND enabled")
            .bind(org_id.as_uuid())
            .fetch_all(&mut **tx)
            .await?
    });
    let mut subscribed = Vec::new();
    for (id, events) in rows {
        if stored_events(&events)?.contains(&event) {
            subscribed.push(WebhookEndpointId::from_uuid(id));
        }
    }
    Ok(subscribed)
}

/// Stores an event and queues its delivery to each of `endpoints` (the [`subscribers`] to
/// it), inside the transaction of the change it tells of.
pub(crate) async fn emit_to(
    tx: &mut Tx,
    org_id: OrgId,
    event: EventType,
    endpoints: &[WebhookEndpointId],
    data: serde_json::Value,
    now: OffsetDateTime,
) -> Result<WebhookEventId, StorageError> {
    let id = WebhookEventId::generate();
    let created_at = now
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| StorageError::Internal("a time that does not format"))?;
    let payload = serde_json::json!({
        "type": event.as_str(),
        "created_at": created_at,
        "data": data,
    })
    .to_string();
    on_backend!(&mut tx.0, Inner, tx => {
        sqlx::query(
            "INSERT INTO webhook_events (id, org_id, type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.as_uuid())
        .bind(org_id.as_uuid())
        .bind(event.as_str())
        .bind(&payload)
        .bind(ms(now))
        .execute(&mut **tx)
        .await?;
    });
    for endpoint in endpoints {
        let job = DeliveryJob {
            endpoint_id: *endpoint,
            event_id: id,
        };
        let job = PreparedJob::unsealed(NewJob {
            id: JobId::generate(),
            org_id: Some(org_id),
            kind: JobKind::DeliverWebhook,
            payload: serde_json::to_vec(&job)
                .map_err(|_| StorageError::Internal("a delivery job that does not serialize"))?,
            idempotency_key: None,
            delay: std::time::Duration::ZERO,
        })?;
        crate::queue::enqueue_in(tx, &job).await?;
    }
    Ok(id)
}
