//! `/v1/mail-accounts`: the mail accounts an organization connects
//! ([`crate::application::mail_accounts`]). No answer ever holds a credential.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom_core::MailAccountId;
use mailroom_core::mail_account::{Capabilities, Capability, SendLimits};
use mailroom_storage::mail_accounts::MailAccount;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::actor::{Caller, Principal};
use crate::application::mail_accounts::{
    self, AccountTest, DkimKey, NewServerAccount, Revocation, Security, Server, ServerLogin,
    Settings, google,
};
use crate::application::provider_flow::Started;
use crate::audit::AuditTrail;
use crate::auth::oauth_flow;
use crate::error::{DomainError, Forbidden};
use crate::json::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

fn when(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRequest {
    host: String,
    port: u16,
    security: Security,
    username: Option<String>,
    password: Option<SecretString>,
}

impl From<ServerRequest> for ServerLogin {
    fn from(request: ServerRequest) -> Self {
        ServerLogin {
            server: Server {
                host: request.host,
                port: request.port,
                security: request.security,
                username: request.username,
            },
            password: request.password,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountRequest {
    Smtp {
        name: String,
        address: String,
        smtp: ServerRequest,
        #[serde(default)]
        from_addresses: Vec<String>,
        limits: Option<SendLimits>,
        dkim: Option<DkimRequest>,
    },
    Imap {
        name: String,
        address: String,
        imap: ServerRequest,
        smtp: Option<ServerRequest>,
        #[serde(default)]
        from_addresses: Vec<String>,
        limits: Option<SendLimits>,
        dkim: Option<DkimRequest>,
    },
}

/// `POST /v1/mail-accounts` `{kind: "smtp", name, address, smtp: {host, port, security,
/// username, password}, from_addresses?}`, or `{kind: "imap", …, imap: {…}, smtp?: {…}}`: 201
/// with the account.
pub async fn create(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    ApiJson(body): ApiJson<AccountRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = match body {
        AccountRequest::Smtp {
            name,
            address,
            smtp,
            from_addresses,
            limits,
            dkim,
        } => NewServerAccount {
            name,
            address,
            imap: None,
            smtp: Some(smtp.into()),
            from_addresses,
            limits,
            dkim: dkim.map(DkimRequest::into_key),
        },
        AccountRequest::Imap {
            name,
            address,
            imap,
            smtp,
            from_addresses,
            limits,
            dkim,
        } => NewServerAccount {
            name,
            address,
            imap: Some(imap.into()),
            smtp: smtp.map(ServerLogin::from),
            from_addresses,
            limits,
            dkim: dkim.map(DkimRequest::into_key),
        },
    };
    let account = mail_accounts::connect_servers(&state, &trail, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(describe(&account))))
}

/// An account's DKIM key: `{domain, selector, private_key}` (PEM).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimRequest {
    domain: String,
    selector: String,
    private_key: SecretString,
}

impl DkimRequest {
    fn into_key(self) -> DkimKey {
        DkimKey {
            domain: self.domain,
            selector: self.selector,
            private_key: self.private_key,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// `null`: the defaults of the account's kind again.
    limits: Option<SendLimits>,
}

/// `PATCH /v1/mail-accounts/{id}` `{limits: {per_minute, per_day, concurrency} | null}`: the
/// account as it is now.
pub async fn update(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    Path(id): Path<MailAccountId>,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Json<Value>, ApiError> {
    let account = mail_accounts::set_limits(&state, &trail, &caller, id, body.limits).await?;
    Ok(Json(describe(&account)))
}

/// `GET /v1/mail-accounts`: the organization's accounts, oldest first.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let accounts = mail_accounts::list(&state, &caller).await?;
    Ok(Json(json!({
        "accounts": accounts.iter().map(describe).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/mail-accounts/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<MailAccountId>,
) -> Result<Json<Value>, ApiError> {
    let account = mail_accounts::get(&state, &caller, id).await?;
    Ok(Json(describe(&account)))
}

/// `POST /v1/mail-accounts/{id}/test`: connects to each of the account's servers and logs in
/// for real; what each server said at each step, and where it stopped.
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<MailAccountId>,
) -> Result<Json<Value>, ApiError> {
    let tested = mail_accounts::test(&state, &caller, id).await?;
    Ok(Json(describe_test(&tested)))
}

/// `DELETE /v1/mail-accounts/{id}`: a Google grant is revoked at Google, then the account
/// and its credentials are deleted (even when the revocation failed, which the answer says).
pub async fn disconnect(
    State(state): State<AppState>,
    trail: AuditTrail,
    caller: Caller,
    Path(id): Path<MailAccountId>,
) -> Result<Json<Value>, ApiError> {
    let revocation = mail_accounts::disconnect(&state, &trail, &caller, id).await?;
    let (revocation, error) = match revocation {
        Revocation::NotNeeded => ("not_needed", None),
        Revocation::Revoked => ("revoked", None),
        Revocation::Failed(error) => ("failed", Some(error)),
    };
    Ok(Json(json!({
        "id": id,
        "deleted": true,
        "revocation": revocation,
        "revocation_error": error,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleRequest {
    capabilities: Vec<Capability>,
}

/// `POST /v1/mail-accounts/google` `{capabilities: ["send"] | ["read"] | ["send", "read"]}`:
/// `{authorization_url}` to send the browser to, and the flow's cookie. The consent comes
/// back to this browser session, so a key cannot start it.
pub async fn connect_google(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<GoogleRequest>,
) -> Result<Response, ApiError> {
    let principal = in_a_browser(caller)?;
    let started = google::start_connect(&state, &principal, &body.capabilities, None).await?;
    authorization(&state, started)
}

/// `POST /v1/mail-accounts/{id}/reconnect`: like connecting, for the account's own grant.
pub async fn reconnect_google(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<MailAccountId>,
) -> Result<Response, ApiError> {
    let principal = in_a_browser(caller)?;
    let started = google::start_connect(&state, &principal, &[], Some(id)).await?;
    authorization(&state, started)
}

fn in_a_browser(caller: Caller) -> Result<Principal, ApiError> {
    match caller {
        Caller::Account(principal) => Ok(principal),
        Caller::Key(_) => Err(DomainError::Forbidden(Forbidden::BrowserSessionRequired).into()),
    }
}

fn authorization(state: &AppState, started: Started) -> Result<Response, ApiError> {
    let cookie = oauth_flow::cookie(&state.identity_providers.flow_key, &started.flow)?;
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(json!({"authorization_url": started.authorization_url.as_str()})),
    )
        .into_response())
}

fn describe_test(tested: &AccountTest) -> Value {
    let steps: Vec<Value> = tested
        .checks
        .iter()
        .flat_map(|(protocol, check)| {
            check.exchanges.iter().map(|exchange| {
                json!({"protocol": protocol.as_str(), "step": exchange.step, "reply": exchange.reply})
            })
        })
        .collect();
    let error = tested.error();
    json!({
        "ok": error.is_none(),
        "steps": steps,
        "error": error,
    })
}

fn describe(account: &MailAccount) -> Value {
    let settings = Settings::of(account);
    let capabilities = Capabilities {
        send: account.can_send,
        read: account.can_read,
    }
    .names();
    json!({
        "id": account.id,
        "kind": account.kind.as_str(),
        "name": account.name,
        "address": account.address,
        "from_addresses": account.from_addresses,
        "capabilities": capabilities,
        "status": account.status.as_str(),
        "smtp": settings.smtp,
        "imap": settings.imap,
        "google": settings.google.map(|google| json!({"scopes": google.scopes})),
        "limits": mail_accounts::send_limits(account),
        "dkim": settings.dkim,
        "connected_by": account.connected_by,
        "created_at": when(account.created_at),
        "last_used_at": account.last_used_at.map(when),
        "last_error": account.last_error,
    })
}
