//! `/emails/webhooks`: the organization's webhook endpoints (a new one's secret shown once),
//! and each endpoint's deliveries, a test event, disabling and deleting it — over the same
//! operations as `/v1/webhooks`.

use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use mailroom_core::WebhookEndpointId;
use mailroom_core::webhook::EventType;
use mailroom_storage::webhooks::Endpoint;
use maud::{Markup, html};
use secrecy::ExposeSecret;

use crate::application::actor::Caller;
use crate::application::webhooks::{self, CreatedWebhook, NewWebhook, WebhookChange};
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::pages::notice::text_of;
use crate::pages::{FormFields, Notice, NoticeQuery, SignedIn, after, titled, when};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

const LIST: &str = "/emails/webhooks";

fn state_of(endpoint: &Endpoint) -> Markup {
    html! {
        @if endpoint.enabled {
            @if endpoint.failing_since.is_some() {
                span.badge.failed { "failing" }
            } @else {
                span.badge.sent { "enabled" }
            }
        } @else {
            span.badge.canceled { "disabled" }
        }
    }
}

/// `GET /emails/webhooks`.
pub async fn page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let notice = text_of(query.notice.as_deref());
    render(&state, &nonce, &principal, notice, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
    created: Option<&CreatedWebhook>,
) -> Result<Response, ApiError> {
    let caller = Caller::Account(principal.clone());
    let endpoints = webhooks::list(state, &caller).await?;
    let manager = principal.user.org_role.manages();
    Ok(titled(
        nonce,
        "Webhooks",
        notice,
        error,
        html! {
            p { a href="/emails" { "Emails" } }
            p.hint {
                "Each endpoint is told of the events it subscribes to, signed by the "
                a href="https://www.standardwebhooks.com/" { "Standard Webhooks" }
                " scheme with its secret. A delivery not answered with a 2xx is tried again for a day; an endpoint whose every delivery failed for five days is disabled."
            }
            @if let Some(created) = created {
                section.notice role="status" aria-labelledby="secret-heading" {
                    h2 #secret-heading { "The signing secret of " (created.endpoint.url) }
                    p { "Copy it now: it is shown this once. Check each delivery's signature with it." }
                    p { code #webhook-secret { (created.secret.expose_secret()) } }
                    button.secondary type="button" data-copy="webhook-secret" { "Copy" }
                }
            }
            @if endpoints.is_empty() {
                p.hint { "No endpoints yet." }
            } @else {
                table #webhooks {
                    thead { tr { th { "URL" } th { "Events" } th { "State" } th { "Added" } } }
                    tbody {
                        @for endpoint in &endpoints {
                            tr {
                                td { a href={ (LIST) "/" (endpoint.id) } { (endpoint.url) } }
                                td { @for event in &endpoint.events { code { (event.as_str()) } " " } }
                                td { (state_of(endpoint)) }
                                td { (when(endpoint.created_at)) }
                            }
                        }
                    }
                }
            }
            @if manager {
                section.narrow aria-labelledby="add-heading" {
                    h2 #add-heading { "Add an endpoint" }
                    form method="post" action=(LIST) {
                        label for="webhook-url" { "URL" }
                        input id="webhook-url" name="url" type="url" required maxlength="2048" placeholder="https://example.com/webhooks/mailroom";
                        fieldset {
                            legend { "Events" }
                            @for event in EventType::SUBSCRIBABLE {
                                label.checkbox {
                                    input type="checkbox" name="event" value=(event.as_str()) checked;
                                    " " code { (event.as_str()) }
                                }
                            }
                        }
                        button type="submit" { "Add" }
                    }
                }
            }
        },
    ))
}

/// `POST /emails/webhooks` (`url`, repeated `event`): the page, with the new secret.
pub async fn create_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    body: axum::body::Bytes,
) -> Response {
    // Repeated `event` fields, one per ticked box.
    let fields = FormFields::parse(&body);
    let new = NewWebhook {
        url: fields.one("url"),
        events: fields.all("event"),
    };
    let caller = Caller::Account(principal.clone());
    match webhooks::create(&state, &trail, &caller, new).await {
        Ok(created) => render(&state, &nonce, &principal, None, None, Some(&created)).await,
        Err(error) => {
            let error = ApiError::from(error);
            render(&state, &nonce, &principal, None, Some(&error), None).await
        }
    }
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /emails/webhooks/{id}`: the endpoint and its latest deliveries.
pub async fn detail(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Path(id): Path<WebhookEndpointId>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let notice = text_of(query.notice.as_deref());
    render_detail(&state, &nonce, &principal, id, notice, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render_detail(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    id: WebhookEndpointId,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let caller = Caller::Account(principal.clone());
    let endpoint = webhooks::get(state, &caller, id).await?;
    let deliveries = webhooks::deliveries(state, &caller, id, None, 50).await?;
    let manager = principal.user.org_role.manages();
    let action = |what: &str| format!("{LIST}/{id}/{what}");
    Ok(titled(
        nonce,
        "Webhook endpoint",
        notice,
        error,
        html! {
            p { a href=(LIST) { "All endpoints" } }
            dl.facts {
                dt { "URL" } dd { code { (endpoint.url) } }
                dt { "Events" } dd { @for event in &endpoint.events { code { (event.as_str()) } " " } }
                dt { "State" } dd #webhook-state {
                    (state_of(&endpoint))
                    @if let Some(reason) = &endpoint.disabled_reason { " " small { (reason) } }
                    @if let Some(since) = endpoint.failing_since { " " small { "failing since " (when(since)) } }
                }
                dt { "Added" } dd { (when(endpoint.created_at)) }
            }
            @if manager {
                p.actions {
                    form.inline method="post" action=(action("test")) {
                        button.secondary type="submit" { "Send a test event" }
                    }
                    form.inline method="post" action=(action("enabled")) {
                        input type="hidden" name="enabled" value=(!endpoint.enabled);
                        button.secondary type="submit" { @if endpoint.enabled { "Disable" } @else { "Enable" } }
                    }
                    form.inline method="post" action=(action("delete")) {
                        button.danger type="submit" { "Delete" }
                    }
                }
            }
            h2 { "Deliveries" }
            @if deliveries.is_empty() {
                p.hint { "Nothing delivered yet." }
            } @else {
                table #deliveries {
                    thead { tr { th { "At" } th { "Event" } th { "Try" } th { "Answer" } th { "Time" } } }
                    tbody {
                        @for delivery in &deliveries {
                            tr {
                                td { (when(delivery.at)) }
                                td { code { (delivery.event_type) } br; small { (delivery.event_id) } }
                                td { (delivery.attempt) }
                                td {
                                    span class={ "badge " @if delivery.delivered { "sent" } @else { "failed" } } {
                                        @if let Some(code) = delivery.status_code { (code) } @else { "no answer" }
                                    }
                                    @if let Some(error) = &delivery.error { br; small { (error) } }
                                }
                                td { (delivery.duration_ms) " ms" }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `POST /emails/webhooks/{id}/test`.
pub async fn test_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Path(id): Path<WebhookEndpointId>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let outcome = webhooks::test(&state, &caller, id)
        .await
        .map(|_| Notice::Done);
    after(&format!("{LIST}/{id}"), outcome, async |error| {
        render_detail(&state, &nonce, &principal, id, None, error).await
    })
    .await
}

#[derive(serde::Deserialize)]
pub struct EnabledForm {
    enabled: bool,
}

/// `POST /emails/webhooks/{id}/enabled` (`enabled`).
pub async fn enabled_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<WebhookEndpointId>,
    axum::extract::Form(form): axum::extract::Form<EnabledForm>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let change = WebhookChange {
        enabled: Some(form.enabled),
        ..WebhookChange::default()
    };
    let outcome = webhooks::update(&state, &trail, &caller, id, change)
        .await
        .map(|_| Notice::Done);
    after(&format!("{LIST}/{id}"), outcome, async |error| {
        render_detail(&state, &nonce, &principal, id, None, error).await
    })
    .await
}

/// `POST /emails/webhooks/{id}/delete`.
pub async fn delete_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<WebhookEndpointId>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let outcome = webhooks::delete(&state, &trail, &caller, id)
        .await
        .map(|()| Notice::Done);
    after(LIST, outcome, async |error| {
        render_detail(&state, &nonce, &principal, id, None, error).await
    })
    .await
}
