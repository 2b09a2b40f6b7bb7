//! Webhooks (docs/security.md#webhooks): an organization's endpoints, told of its messages'
//! and verification jobs' events through the work queue, each delivery signed by the Standard
//! Webhooks scheme with the endpoint's secret.
//!
//! An event is stored, with a delivery job per subscribed endpoint, in the transaction of the
//! change it tells of (`mailroom_storage::webhooks`); the job posts it under the same
//! `webhook-id` on every try, retries anything but a 2xx for a day, and disables an endpoint
//! whose every delivery failed for five days, mailing whoever looks after it.

use std::time::Instant;

use anyhow::Context;
use mailroom_core::api_keys::Scope;
use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::org::OrgRole;
use mailroom_core::webhook::EventType;
use mailroom_core::{WebhookEndpointId, WebhookEventId};
use mailroom_crypto::webhook;
use mailroom_mail::queued::MailMessage;
use mailroom_storage::queue::{ClaimedJob, JobKind};
use mailroom_storage::webhooks::{
    Attempted, Delivery, DeliveryJob, Endpoint, EndpointChange, EndpointState, NewEndpoint,
    ToDeliver,
};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::application::actor::Caller;
use crate::application::system_mail;
use crate::audit::AuditTrail;
use crate::error::DomainError;
use crate::state::AppState;

/// Endpoints an organization may have.
pub const MAX_ENDPOINTS: usize = 20;
/// An endpoint whose every delivery failed this long is disabled.
pub const DISABLE_AFTER: time::Duration = time::Duration::days(5);
/// An event is not tried after this long.
pub const GIVE_UP_AFTER: time::Duration = time::Duration::hours(24);
/// Where the organization's webhooks are shown.
const LANDING: &str = "/emails/webhooks";

/// An endpoint to add, as asked.
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
}

/// A new endpoint, with its secret: shown this once.
pub struct CreatedWebhook {
    pub endpoint: Endpoint,
    pub secret: SecretString,
}

/// What to change of an endpoint, as asked; `None` leaves it.
#[derive(Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Owners and admins manage webhooks; keys with `webhooks:manage`.
fn may_manage(caller: &Caller) -> Result<(), DomainError> {
    caller.require(Scope::WebhooksManage, true)
}

/// Anyone of the organization sees its webhooks; keys with `webhooks:manage`.
fn may_read(caller: &Caller) -> Result<(), DomainError> {
    caller.require(Scope::WebhooksManage, false)
}

/// The event types asked for: at least one, each one an endpoint may subscribe to.
fn subscribed(names: &[String]) -> Result<Vec<EventType>, DomainError> {
    let mut events = Vec::new();
    for name in names {
        let event = EventType::parse(name)
            .filter(|event| EventType::SUBSCRIBABLE.contains(event))
            .ok_or_else(|| {
                let known: Vec<&str> = EventType::SUBSCRIBABLE
                    .iter()
                    .map(|event| event.as_str())
                    .collect();
                DomainError::invalid(
                    "events",
                    format!("unknown event {name:?}; known: {}", known.join(", ")),
                )
            })?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err(DomainError::invalid(
            "events",
            "an endpoint subscribes to at least one event",
        ));
    }
    Ok(events)
}

/// Adds an endpoint, with a new secret to sign its deliveries.
pub async fn create(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    new: NewWebhook,
) -> Result<CreatedWebhook, DomainError> {
    may_manage(caller)?;
    let org_id = caller.org_id();
    let url = state
        .webhooks
        .check(&new.url)
        .await
        .map_err(DomainError::WebhookUrl)?;
    let events = subscribed(&new.events)?;
    let webhooks = state.database.webhooks();
    if webhooks.list(org_id).await?.len() >= MAX_ENDPOINTS {
        return Err(DomainError::invalid(
            "url",
            format!("an organization has at most {MAX_ENDPOINTS} webhook endpoints"),
        ));
    }
    let secret = webhook::generate_secret();
    let endpoint = NewEndpoint {
        id: WebhookEndpointId::generate(),
        url: url.to_string(),
        events,
        secret: Zeroizing::new(secret.expose_secret().as_bytes().to_vec()),
        created_by: match caller {
            Caller::Account(principal) => Some(principal.user.id),
            Caller::Key(_) => None,
        },
    };
    let event = AuditEvent {
        target: Some(target(endpoint.id, &endpoint.url)),
        ..caller.event(trail, Action::WebhookCreated)
    };
    let now = OffsetDateTime::now_utc();
    webhooks.create(org_id, &endpoint, &event, now).await?;
    let endpoint = webhooks
        .get(org_id, endpoint.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("an endpoint just added is gone"))?;
    Ok(CreatedWebhook { endpoint, secret })
}

/// The audit target of an endpoint: its id and host (a URL's path may hold a token).
fn target(id: WebhookEndpointId, url: &str) -> String {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    format!("webhook {id} to {host}")
}

pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<Endpoint>, DomainError> {
    may_read(caller)?;
    Ok(state.database.webhooks().list(caller.org_id()).await?)
}

pub async fn get(
    state: &AppState,
    caller: &Caller,
    id: WebhookEndpointId,
) -> Result<Endpoint, DomainError> {
    may_read(caller)?;
    state
        .database
        .webhooks()
        .get(caller.org_id(), id)
        .await?
        .ok_or(DomainError::NotFound)
}

/// Changes an endpoint's URL, events, or whether it is enabled (enabling one forgets its
/// failures).
pub async fn update(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    id: WebhookEndpointId,
    change: WebhookChange,
) -> Result<Endpoint, DomainError> {
    may_manage(caller)?;
    let url = match &change.url {
        Some(url) => Some(
            state
                .webhooks
                .check(url)
                .await
                .map_err(DomainError::WebhookUrl)?
                .to_string(),
        ),
        None => None,
    };
    let events = change.events.as_deref().map(subscribed).transpose()?;
    let org_id = caller.org_id();
    let webhooks = state.database.webhooks();
    let current = webhooks
        .get(org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let event = AuditEvent {
        target: Some(target(id, url.as_deref().unwrap_or(&current.url))),
        ..caller.event(trail, Action::WebhookUpdated)
    };
    let change = EndpointChange {
        url,
        events,
        enabled: change.enabled,
    };
    let now = OffsetDateTime::now_utc();
    if !webhooks.update(org_id, id, &change, &event, now).await? {
        return Err(DomainError::NotFound);
    }
    webhooks.get(org_id, id).await?.ok_or(DomainError::NotFound)
}

/// Deletes an endpoint, its secret and its deliveries; events on their way to it are dropped.
pub async fn delete(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    id: WebhookEndpointId,
) -> Result<(), DomainError> {
    may_manage(caller)?;
    let org_id = caller.org_id();
    let webhooks = state.database.webhooks();
    let current = webhooks
        .get(org_id, id)
        .await?
        .ok_or(DomainError::NotFound)?;
    let event = AuditEvent {
        target: Some(target(id, &current.url)),
        ..caller.event(trail, Action::WebhookDeleted)
    };
    let now = OffsetDateTime::now_utc();
    if !webhooks.delete(org_id, id, &event, now).await? {
        return Err(DomainError::NotFound);
    }
    Ok(())
}

/// The attempts at delivering to an endpoint, newest first, before the `before` cursor.
pub async fn deliveries(
    state: &AppState,
    caller: &Caller,
    id: WebhookEndpointId,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Delivery>, DomainError> {
    let endpoint = get(state, caller, id).await?;
    Ok(state
        .database
        .webhooks()
        .deliveries(caller.org_id(), endpoint.id, before, limit.clamp(1, 100))
        .await?)
}

/// Sends a `webhook.test` event to the endpoint, whatever it subscribed to.
pub async fn test(
    state: &AppState,
    caller: &Caller,
    id: WebhookEndpointId,
) -> Result<WebhookEventId, DomainError> {
    may_manage(caller)?;
    let sent = state
        .database
        .webhooks()
        .emit_test(caller.org_id(), id, OffsetDateTime::now_utc())
        .await?
        .ok_or(DomainError::NotFound)?;
    events_emitted(state);
    Ok(sent)
}

/// A change that may have emitted events was committed: this node's runners look now.
pub fn events_emitted(state: &AppState) {
    state.queue.wake(JobKind::DeliverWebhook);
}

/// Delivers one event to one endpoint (a queued job): signed, posted, recorded. Anything but
/// a 2xx is the job's failure, for the queue's retry, until the event is a day old.
pub async fn deliver(state: &AppState, job: &ClaimedJob) -> Result<(), DomainError> {
    let org_id = job
        .org_id
        .ok_or_else(|| anyhow::anyhow!("a webhook job of no organization"))?;
    let delivery: DeliveryJob =
        serde_json::from_slice(&job.payload).context("a webhook job's payload does not read")?;
    let webhooks = state.database.webhooks();
    // Deleted or disabled since: nothing to do.
    let Some(todo) = webhooks.to_deliver(org_id, delivery).await? else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc();
    let started = Instant::now();
    let answer = post(state, &todo, now).await?;
    let delivered = matches!(answer, Ok(200..=299));
    let attempted = Attempted {
        at: now,
        attempt: i64::from(job.attempt),
        delivered,
        status_code: answer.as_ref().ok().map(|status| i64::from(*status)),
        error: answer.as_ref().err().cloned(),
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    let disabled = AuditEvent {
        target: Some(target(todo.endpoint.id, &todo.endpoint.url)),
        ..AuditEvent::by_the_system(org_id, Action::WebhookDisabled, Outcome::Failure)
    };
    let endpoint_state = webhooks
        .record(org_id, delivery, &attempted, DISABLE_AFTER, &disabled)
        .await?;
    if delivered {
        return Ok(());
    }
    if endpoint_state == EndpointState::DisabledNow {
        tell_disabled(state, &todo.endpoint).await;
        return Ok(());
    }
    if now - todo.event_created_at >= GIVE_UP_AFTER {
        tracing::info!(event = %todo.event_id, "a webhook event a day old is not tried again");
        return Ok(());
    }
    Err(match answer {
        Ok(status) => anyhow::anyhow!("the endpoint answered {status}"),
        Err(error) => anyhow::anyhow!("the endpoint did not answer: {error}"),
    }
    .into())
}

/// Signs the event as of `now` and posts it.
async fn post(
    state: &AppState,
    todo: &ToDeliver,
    now: OffsetDateTime,
) -> Result<crate::webhook_sender::Answer, DomainError> {
    let secret = SecretString::from(
        String::from_utf8(todo.secret.to_vec()).context("an endpoint's secret is not text")?,
    );
    let id = todo.event_id.to_string();
    let timestamp = now.unix_timestamp();
    let signature = webhook::sign(&secret, &id, timestamp, todo.payload.as_bytes())
        .context("an endpoint's secret is not of mailroom's making")?;
    let headers = [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    Ok(state
        .webhooks
        .post(&todo.endpoint.url, &headers, todo.payload.clone())
        .await)
}

/// Mails whoever looks after a disabled endpoint: who added it, while they are of its
/// organization, or else its owner.
async fn tell_disabled(state: &AppState, endpoint: &Endpoint) {
    let members = match state.database.teams().members(endpoint.org_id).await {
        Ok(members) => members,
        Err(error) => {
            tracing::warn!(%error, "the members of an organization could not be read");
            return;
        }
    };
    let Some(member) = members
        .iter()
        .find(|member| Some(member.user_id) == endpoint.created_by)
        .or_else(|| members.iter().find(|member| member.role == OrgRole::Owner))
    else {
        return;
    };
    let link = state
        .public_url
        .join(LANDING)
        .map(|url| url.to_string())
        .unwrap_or_default();
    let message = MailMessage::WebhookDisabled {
        url: endpoint.url.clone(),
        days: u32::try_from(DISABLE_AFTER.whole_days()).unwrap_or(5),
        link,
    };
    system_mail::send(state, &member.email, message).await;
}
