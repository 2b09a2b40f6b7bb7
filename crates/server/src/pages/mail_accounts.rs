//! `/accounts`: the organization's connected mail accounts — connect a Google account (or
//! reconnect one), add an SMTP relay or an IMAP mailbox, test one for real, disconnect one
//! (after a confirmation) — over the same operations as `/v1/mail-accounts`.

use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mailroom_core::MailAccountId;
use mailroom_core::mail_account::Capability;
use mailroom_storage::mail_accounts::{AccountKind, AccountStatus};
use maud::html;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::application::actor::Caller;
use crate::application::mail_accounts::{
    self, AccountTest, NewServerAccount, Revocation, Security, Server, ServerLogin, google,
};
use crate::application::provider_flow::Started;
use crate::audit::AuditTrail;
use crate::error::DomainError;
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
    let google_configured = state
        .identity_providers
        .get(crate::config::OidcProvider::GOOGLE)
        .is_some();
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
                p.hint { "No accounts yet: connect a Google account, or add the SMTP server you send through, below." }
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
                                    @if account.kind == AccountKind::Google && account.status == AccountStatus::NeedsReconnect {
                                        form.inline method="post" action={ "/accounts/" (account.id) "/reconnect" } {
                                            button type="submit" { "Reconnect" }
                                        }
                                    }
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
            @if google_configured {
                section.narrow aria-labelledby="google-heading" {
                    h2 #google-heading { "Connect a Google account" }
                    p.hint { "Google asks you to allow only what you tick: sending, reading, or both. The access is kept sealed, and revoked at Google when you disconnect." }
                    form method="post" action="/accounts/google" {
                        fieldset {
                            legend { "mailroom may" }
                            label.checkbox { input type="checkbox" name="send" value="yes" checked; " send mail as the account" }
                            label.checkbox { input type="checkbox" name="read" value="yes"; " read its mailbox" }
                        }
                        button type="submit" { "Connect with Google" }
                    }
                }
            }
            (server_form(&SMTP_FORM))
            (server_form(&IMAP_FORM))
        },
    ))
}

/// A form that adds an account of one server: an SMTP relay, or an IMAP mailbox.
struct ServerFormView {
    /// The prefix of its fields' ids.
    id: &'static str,
    heading: &'static str,
    address_label: &'static str,
    port: u16,
    /// The security choices, the default first.
    security: [(&'static str, &'static str); 3],
    /// Whether a login is needed (a mailbox is read as its user; a relay may be open).
    login_required: bool,
    submit: &'static str,
}

const SMTP_FORM: ServerFormView = ServerFormView {
    id: "smtp",
    heading: "Add an SMTP server",
    address_label: "Sends as",
    port: 587,
    security: [
        ("starttls", "STARTTLS (port 587)"),
        ("tls", "TLS (port 465)"),
        ("none", "None: a trusted network only"),
    ],
    login_required: false,
    submit: "Add account",
};

const IMAP_FORM: ServerFormView = ServerFormView {
    id: "imap",
    heading: "Add an IMAP mailbox",
    address_label: "Address",
    port: 993,
    security: [
        ("tls", "TLS (port 993)"),
        ("starttls", "STARTTLS (port 143)"),
        ("none", "None: a trusted network only"),
    ],
    login_required: true,
    submit: "Add mailbox",
};

fn server_form(view: &ServerFormView) -> maud::Markup {
    let id = |field: &str| format!("{}-{field}", view.id);
    html! {
        section.narrow aria-labelledby=(id("heading")) {
            h2 id=(id("heading")) { (view.heading) }
            form method="post" action="/accounts" {
                input type="hidden" name="kind" value=(view.id);
                label for=(id("name")) { "Name" }
                input id=(id("name")) name="name" required maxlength="100";
                label for=(id("address")) { (view.address_label) }
                input id=(id("address")) name="address" type="email" required;
                label for=(id("host")) { "Host" }
                input id=(id("host")) name="host" required maxlength="253";
                label for=(id("port")) { "Port" }
                input id=(id("port")) name="port" type="number" min="1" max="65535" value=(view.port) required;
                label for=(id("security")) { "Security" }
                select id=(id("security")) name="security" {
                    @for (index, (value, label)) in view.security.iter().enumerate() {
                        option value=(value) selected[index == 0] { (label) }
                    }
                }
                label for=(id("username")) { "Username" }
                input id=(id("username")) name="username" required[view.login_required] autocomplete="off";
                label for=(id("password")) { "Password" }
                input id=(id("password")) name="password" type="password" required[view.login_required] autocomplete="new-password";
                button type="submit" { (view.submit) }
            }
        }
    }
}

/// The page with what stopped a connection through Google (the callback's refusal).
pub(crate) async fn refused(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    error: DomainError,
) -> Response {
    let error = ApiError::from(error);
    render(state, nonce, principal, None, Some(&error), None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Which server a form adds.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    #[default]
    Smtp,
    Imap,
}

#[derive(Deserialize)]
pub struct ServerForm {
    #[serde(default)]
    kind: ServerKind,
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

impl ServerForm {
    /// The server's login, as the form gave it (an empty field is an absent one).
    fn login(&self) -> ServerLogin {
        ServerLogin {
            server: Server {
                host: self.host.clone(),
                port: self.port,
                security: self.security,
                username: Some(self.username.clone()).filter(|name| !name.trim().is_empty()),
            },
            password: self
                .password
                .clone()
                .filter(|password| !password.expose_secret().is_empty()),
        }
    }
}

/// `POST /accounts`: adds an SMTP relay, or an IMAP mailbox (`kind=imap`).
pub async fn create_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    trail: AuditTrail,
    principal: Principal,
    Form(form): Form<ServerForm>,
) -> Response {
    let login = Some(form.login());
    let (smtp, imap) = match form.kind {
        ServerKind::Smtp => (login, None),
        ServerKind::Imap => (None, login),
    };
    let input = NewServerAccount {
        smtp,
        imap,
        name: form.name,
        address: form.address,
        from_addresses: Vec::new(),
        limits: None,
        dkim: None,
    };
    add(state, nonce, trail, principal, input).await
}

async fn add(
    state: AppState,
    nonce: CspNonce,
    trail: AuditTrail,
    principal: Principal,
    input: NewServerAccount,
) -> Response {
    let caller = Caller::Account(principal.clone());
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
        _ => Err(DomainError::invalid(
            "confirm",
            "Tick the box to confirm: the account's credentials are deleted.",
        )),
    };
    let notice = outcome.map(|revocation| match revocation {
        Revocation::Failed(_) => Notice::AccountDisconnectedNotRevoked,
        Revocation::Revoked | Revocation::NotNeeded => Notice::AccountDisconnected,
    });
    after("/accounts", notice, async |error| {
        render(&state, &nonce, &principal, None, error, None).await
    })
    .await
}

#[derive(Deserialize)]
pub struct GoogleForm {
    #[serde(default)]
    send: Option<String>,
    #[serde(default)]
    read: Option<String>,
}

/// `POST /accounts/google`: to Google's consent for what was ticked.
pub async fn google_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Form(form): Form<GoogleForm>,
) -> Response {
    let asked: Vec<Capability> = [(form.send, Capability::Send), (form.read, Capability::Read)]
        .into_iter()
        .filter_map(|(ticked, capability)| ticked.is_some().then_some(capability))
        .collect();
    let started = google::start_connect(&state, &principal, &asked, None).await;
    to_google(&state, &nonce, &principal, started).await
}

/// `POST /accounts/{id}/reconnect`: to Google's consent again, for the account's own grant.
pub async fn reconnect_submit(
    State(state): State<AppState>,
    Extension(nonce): Extension<CspNonce>,
    principal: Principal,
    Path(id): Path<MailAccountId>,
) -> Response {
    let started = google::start_connect(&state, &principal, &[], Some(id)).await;
    to_google(&state, &nonce, &principal, started).await
}

async fn to_google(
    state: &AppState,
    nonce: &CspNonce,
    principal: &Principal,
    started: Result<Started, DomainError>,
) -> Response {
    match crate::pages::to_provider(state, StatusCode::SEE_OTHER, started) {
        Ok(response) => response,
        Err(error) => render(state, nonce, principal, None, Some(&error), None)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    }
}
