//! `/emails`: the organization's messages (status, and each one's recipients and attempts),
//! a form that sends a test message, and the suppression list — over the same operations as
//! `/v1/emails` and `/v1/suppressions`.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use mailroom_core::EmailId;
use mailroom_storage::emails::{EmailStatus, RecipientStatus};
use maud::{Markup, html};
use serde::Deserialize;

use crate::application::actor::Caller;
use crate::application::{emails, mail_accounts};
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::pages::notice::text_of;
use crate::pages::{Notice, SignedIn, after, titled, when};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    notice: Option<String>,
}

fn badge(status: EmailStatus) -> Markup {
    html! { span class={ "badge " (status.as_str()) } { (status.as_str().replace('_', " ")) } }
}

/// `GET /emails?status=`.
pub async fn page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(query): Query<ListQuery>,
) -> Response {
    let notice = text_of(query.notice.as_deref());
    let status = query.status.as_deref().and_then(EmailStatus::parse);
    render(&state, &nonce, &principal, status, notice, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    status: Option<EmailStatus>,
    notice: Option<&str>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let caller = Caller::Account(principal.clone());
    let listed = emails::list(state, &caller, status, None, 50).await?;
    let senders: Vec<String> = mail_accounts::list(state, &caller)
        .await?
        .into_iter()
        .filter(|account| account.can_send)
        .flat_map(|account| std::iter::once(account.address).chain(account.from_addresses))
        .collect();
    let suppressions = emails::suppressions(state, &caller).await?;
    Ok(titled(
        nonce,
        "Emails",
        notice,
        error,
        html! {
            p { a href="/emails/webhooks" { "Webhooks" } ": be told when messages are sent, delayed or fail." }
            nav.filters aria-label="Filter by status" {
                a href="/emails" { "All" }
                @for status in EmailStatus::ALL {
                    " " a href={ "/emails?status=" (status.as_str()) } { (status.as_str().replace('_', " ")) }
                }
            }
            @if listed.is_empty() {
                p.hint { "No messages yet." }
            } @else {
                table #emails {
                    thead { tr { th { "Created" } th { "From" } th { "Recipients" } th { "Status" } th { "Last error" } } }
                    tbody {
                        @for email in &listed {
                            tr data-email=(email.id) {
                                td { a href={ "/emails/" (email.id) } { (when(email.created_at)) } }
                                td { (email.from_address) }
                                td { (email.recipient_count) }
                                td { (badge(email.status)) }
                                td { @if let Some(error) = &email.last_error { small { (error) } } }
                            }
                        }
                    }
                }
            }
            section.narrow aria-labelledby="test-heading" {
                h2 #test-heading { "Send a test email" }
                @if senders.is_empty() {
                    p.hint { "Connect an account that sends first, on " a href="/accounts" { "Accounts" } "." }
                } @else {
                    form method="post" action="/emails/test" {
                        label for="test-from" { "From" }
                        select id="test-from" name="from" {
                            @for sender in &senders { option value=(sender) { (sender) } }
                        }
                        label for="test-to" { "To" }
                        input id="test-to" name="to" type="email" required;
                        label for="test-subject" { "Subject" }
                        input id="test-subject" name="subject" required maxlength="998" value="A test from mailroom";
                        label for="test-text" { "Text" }
                        textarea id="test-text" name="text" required { "It works." }
                        button type="submit" { "Send" }
                    }
                }
            }
            section aria-labelledby="suppressions-heading" {
                h2 #suppressions-heading { "Suppressed addresses" }
                p.hint { "Later messages skip these: addresses refused for good, or added here." }
                @if !suppressions.is_empty() {
                    table #suppressions {
                        thead { tr { th { "Address" } th { "Why" } th { "Since" } th { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for suppression in &suppressions {
                                tr {
                                    td { (suppression.address) }
                                    td { (suppression.reason.as_str()) @if let Some(reply) = &suppression.reply { br; small { (reply) } } }
                                    td { (when(suppression.created_at)) }
                                    td {
                                        form.inline method="post" action="/emails/suppressions/remove" {
                                            input type="hidden" name="address" value=(suppression.address);
                                            button.secondary type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action="/emails/suppressions" {
                    label for="suppress-address" { "Address" }
                    input id="suppress-address" name="address" type="email" required;
                    button.secondary type="submit" { "Suppress" }
                }
            }
        },
    ))
}

/// `GET /emails/{id}`: one message, its recipients and its attempts.
pub async fn detail(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Path(id): Path<EmailId>,
    Query(query): Query<ListQuery>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let notice = text_of(query.notice.as_deref());
    let record = match emails::get(&state, &caller, id).await {
        Ok(record) => record,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let email = &record.email;
    titled(
        &nonce,
        "Email",
        notice,
        None,
        html! {
            p { a href="/emails" { "All messages" } }
            dl.facts {
                dt { "Status" } dd #email-status { (badge(email.status)) }
                dt { "From" } dd { (email.from_address) }
                dt { "Message-ID" } dd { code { (email.message_id) } }
                dt { "Size" } dd { (email.size_bytes) " bytes" }
                dt { "Created" } dd { (when(email.created_at)) }
                @if let Some(at) = email.scheduled_at { dt { "Scheduled" } dd { (when(at)) } }
                @if let Some(at) = email.sent_at { dt { "Sent" } dd { (when(at)) } }
            }
            h2 { "Recipients" }
            table #recipients {
                thead { tr { th { "Address" } th { "Kind" } th { "Status" } th { "Server's answer" } } }
                tbody {
                    @for recipient in &record.recipients {
                        tr {
                            td { (recipient.address) }
                            td { (recipient.kind.as_str()) }
                            td { span class={ "badge " @if recipient.status == RecipientStatus::Sent { "sent" } @else { (recipient.status.as_str()) } } { (recipient.status.as_str()) } }
                            td { @if let Some(reply) = &recipient.reply { code { (reply) } } }
                        }
                    }
                }
            }
            h2 { "Attempts" }
            @if record.attempts.is_empty() {
                p.hint { "Not tried yet." }
            } @else {
                ol #attempts {
                    @for attempt in &record.attempts {
                        li {
                            (when(attempt.at)) " · " (attempt.transport) " · " strong { (attempt.outcome.as_str()) }
                            " · " (attempt.duration_ms) " ms"
                            br; code { (attempt.reply) }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct TestForm {
    from: String,
    to: String,
    subject: String,
    text: String,
}

/// `POST /emails/test`: sends it, and shows it.
pub async fn test_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<TestForm>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let message = emails::NewMessage {
        from: form.from,
        to: vec![form.to],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        subject: Some(form.subject),
        text: Some(form.text),
        html: None,
        headers: Vec::new(),
        attachments: Vec::new(),
        tags: Vec::new(),
        mail_account_id: None,
        scheduled_at: None,
        idempotency: None,
    };
    match emails::send(&state, &trail, &caller, message).await {
        Ok(id) => Redirect::to(&format!(
            "/emails/{id}?notice={}",
            Notice::EmailQueued.code()
        ))
        .into_response(),
        Err(error) => {
            let error = ApiError::from(error);
            render(&state, &nonce, &principal, None, None, Some(&error))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
    }
}

#[derive(Deserialize)]
pub struct AddressForm {
    address: String,
}

/// `POST /emails/suppressions`: adds an address to the list.
pub async fn suppress_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Form(form): Form<AddressForm>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let outcome = emails::suppress(&state, &caller, &form.address)
        .await
        .map(|_| Notice::Done);
    after("/emails", outcome, async |error| {
        render(&state, &nonce, &principal, None, None, error).await
    })
    .await
}

/// `POST /emails/suppressions/remove`: takes an address off the list.
pub async fn unsuppress_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Form(form): Form<AddressForm>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let outcome = emails::unsuppress(&state, &caller, &form.address)
        .await
        .map(|()| Notice::Done);
    after("/emails", outcome, async |error| {
        render(&state, &nonce, &principal, None, None, error).await
    })
    .await
}
