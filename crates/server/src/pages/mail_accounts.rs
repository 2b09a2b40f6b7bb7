//! `/accounts`: the organization's connected mail accounts — add an SMTP relay, test one for
//! real, disconnect one (after a confirmation) — over the same operations as
//! `/v1/mail-accounts`.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use mailroom_core::MailAccountId;
use mailroom_storage::mail_accounts::AccountStatus;
use maud::html;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::application::actor::Caller;
use crate::application::mail_accounts::{
    self, AccountTest, NewServerAccount, Security, Server, ServerLogin,
};
use crate::audit::AuditTrail;
use crate::extract::Principal;
use crate::pages::{Notice, NoticeQuery, SignedIn, after, titled, when};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::views::CspNonce;

/// `GET /accounts`.
pub async fn page(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    SignedIn(principal): SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    render(&state, &nonce, &principal, query.text(), None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn render(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    notice: Option<&str>,
    error: Option<&ApiError>,
    tested: Option<(MailAccountId, &AccountTest)>,
) -> Result<Response, ApiError> {
    let caller = Caller::Account(principal.clone());
    let accounts = mail_accounts::list(state, &caller).await?;
    Ok(titled(
        nonce,
        "Mail accounts",
        notice,
        error,
        html! {
            @if let Some((id, AccountTest { checks })) = tested {
                section.notice role="status" aria-labelledby="test-heading" data-account=(id) {
                    h2 #test-heading {
                        @if checks.iter().all(|(_, check)| check.succeeded()) { "The connection works" } @else { "The connection failed" }
                    }
                    @for (protocol, check) in checks {
                        h3 { (protocol.as_str().to_uppercase()) }
                        ol.test-steps {
                            @for exchange in &check.exchanges {
                                li { strong { (exchange.step.to_uppercase()) } " " code { (exchange.reply) } }
                            }
                        }
                        @if let Some(error) = &check.error { p.test-error { (error) } }
                    }
                }
            }
            @if accounts.is_empty() {
                p.hint { "No accounts yet: add the SMTP server you send through below." }
            } @else {
                table #mail-accounts {
                    thead { tr { th { "Name" } th { "Address" } th { "Kind" } th { "Status" } th { "Last used" } th { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for account in &accounts {
                            tr data-account=(account.name) {
                                td { (account.name) }
                                td { (account.address) }
                                td { (account.kind.as_str().to_uppercase()) }
                                td {
                                    span class={ "badge " (account.status.as_str()) } {
                                        @match account.status {
                                            AccountStatus::Active => "Active",
                                            AccountStatus::NeedsReconnect => "Needs reconnecting",
                                            AccountStatus::Disconnected => "Disconnected",
                                        }
                                    }
                                }
                                td {
                                    (account.last_used_at.map(when).unwrap_or_else(|| "never".into()))
                                    @if let Some(error) = &account.last_error { br; small { (error) } }
                                }
                                td {
                                    form.inline method="post" action={ "/accounts/" (account.id) "/test" } {
                                        button.secondary type="submit" { "Test connection" }
                                    }
                                    form.inline method="post" action={ "/accounts/" (account.id) "/disconnect" } {
                                        label.checkbox {
                                            input type="checkbox" name="confirm" value="yes" required;
                                            " I understand its credentials are deleted"
                                        }
                                        button.secondary type="submit" { "Disconnect" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.narrow aria-labelledby="smtp-heading" {
                h2 #smtp-heading { "Add an SMTP server" }
                form method="post" action="/accounts" {
                    label for="account-name" { "Name" }
                    input id="account-name" name="name" required maxlength="100";
                    label for="account-address" { "Sends as" }
                    input id="account-address" name="address" type="email" required;
                    label for="smtp-host" { "Host" }
                    input id="smtp-host" name="host" required maxlength="253";
                    label for="smtp-port" { "Port" }
                    input id="smtp-port" name="port" type="number" min="1" max="65535" value="587" required;
                    label for="smtp-security" { "Security" }
                    select id="smtp-security" name="security" {
                        option value="starttls" selected { "STARTTLS (port 587)" }
                        option value="tls" { "TLS (port 465)" }
                        option value="none" { "None: a trusted network only" }
                    }
                    label for="smtp-username" { "Username" }
                    input id="smtp-username" name="username" autocomplete="off";
                    label for="smtp-password" { "Password" }
                    input id="smtp-password" name="password" type="password" autocomplete="new-password";
                    button type="submit" { "Add account" }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct SmtpForm {
    name: String,
    address: String,
    host: String,
    port: u16,
    security: Security,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Option<SecretString>,
}

/// `POST /accounts`: adds an SMTP account.
pub async fn create_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<SmtpForm>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    // An empty field of a form is an absent one.
    let password = form
        .password
        .filter(|password| !password.expose_secret().is_empty());
    let input = NewServerAccount {
        name: form.name,
        address: form.address,
        imap: None,
        smtp: Some(ServerLogin {
            server: Server {
                host: form.host,
                port: form.port,
                security: form.security,
                username: Some(form.username).filter(|name| !name.trim().is_empty()),
            },
            password,
        }),
        from_addresses: Vec::new(),
    };
    let outcome = mail_accounts::connect_servers(&state, &trail, &caller, input).await;
    after(
        "/accounts",
        outcome.map(|_| Notice::AccountConnected),
        async |error| render(&state, &nonce, &principal, None, error, None).await,
    )
    .await
}

/// `POST /accounts/{id}/test`: the page again, with what the server said.
pub async fn test_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Path(id): Path<MailAccountId>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    match mail_accounts::test(&state, &caller, id).await {
        Ok(tested) => render(&state, &nonce, &principal, None, None, Some((id, &tested))).await,
        Err(error) => {
            let error = ApiError::from(error);
            render(&state, &nonce, &principal, None, Some(&error), None).await
        }
    }
    .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
pub struct DisconnectForm {
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /accounts/{id}/disconnect` (confirmed): the account and its credentials go.
pub async fn disconnect_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Path(id): Path<MailAccountId>,
    Form(form): Form<DisconnectForm>,
) -> Response {
    let caller = Caller::Account(principal.clone());
    let outcome = match form.confirm.as_deref() {
        Some("yes") => mail_accounts::disconnect(&state, &trail, &caller, id).await,
        _ => Err(crate::error::DomainError::invalid(
            "confirm",
            "Tick the box to confirm: the account's credentials are deleted.",
        )),
    };
    after(
        "/accounts",
        outcome.map(|()| Notice::AccountDisconnected),
        async |error| render(&state, &nonce, &principal, None, error, None).await,
    )
    .await
}
