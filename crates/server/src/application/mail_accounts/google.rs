//! Google accounts connected through OAuth (docs/security.md#connected-google-accounts): the
//! flow that connects (or reconnects) one, through `[oidc.google]` and its one callback; the
//! access tokens its refresh token earns; its test; and the revocation of its grant when it is
//! disconnected or its organization deleted.
//!
//! The refresh token is sealed with the account's other credentials; an access token lives in
//! this node's memory only ([`crate::identity_providers::AccessTokens`]).

use std::time::{Duration, Instant};

use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::mail_account::{Capabilities, Capability};
use mailroom_core::{EmailAddress, MailAccountId, OrgId};
use mailroom_mail::probe::{ConnectionCheck, Exchange};
use mailroom_mail::queued::MailMessage;
use mailroom_oauth::OauthError;
use mailroom_storage::mail_accounts::{
    AccountKind, AccountStatus, CredentialsVersion, MailAccount, NewMailAccount,
};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{Credentials, GoogleGrant, Settings, may_manage, with_credentials};
use crate::application::actor::{Caller, Principal};
use crate::application::provider_flow::{self, Started};
use crate::application::system_mail;
use crate::audit::AuditTrail;
use crate::auth::oauth_flow::Purpose;
use crate::config::OidcProvider;
use crate::error::{Conflict, DomainError, Forbidden, ProviderFailure};
use crate::identity_providers::{AccessToken, IdentityProvider};
use crate::state::AppState;

const GOOGLE: &str = OidcProvider::GOOGLE;
/// A token this close to its expiry is refreshed before it is used.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// What an access token lives when the provider does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Where a connect flow lands.
const LANDING: &str = "/accounts";

fn google(state: &AppState) -> Result<&IdentityProvider, DomainError> {
    state
        .identity_providers
        .get(GOOGLE)
        .ok_or(DomainError::Conflict(Conflict::GoogleNotConfigured))
}

/// Starts connecting a Google account for `asked` (or reconnecting `reconnect`): the consent
/// asks for the least scopes that grant it, offline, with consent shown so that Google issues
/// a refresh token. A person consents in a browser, so the flow starts and ends in the
/// signed-in browser session of someone who may connect accounts.
pub async fn start_connect(
    state: &AppState,
    principal: &Principal,
    asked: &[Capability],
    reconnect: Option<MailAccountId>,
) -> Result<Started, DomainError> {
    if principal.session_id().is_none() {
        return Err(DomainError::Forbidden(Forbidden::BrowserSessionRequired));
    }
    let caller = Caller::Account(principal.clone());
    may_manage(state, &caller).await?;
    let org_id = principal.user.org_id;
    let (capabilities, login_hint) = match reconnect {
        Some(id) => {
            let account = state
                .database
                .mail_accounts()
                .get(org_id, id)
                .await?
                .filter(|account| account.kind == AccountKind::Google)
                .ok_or(DomainError::NotFound)?;
            let capabilities = Capabilities {
                send: account.can_send,
                read: account.can_read,
            };
            (capabilities, Some(account.address))
        }
        None => (
            Capabilities::of(asked).ok_or_else(|| {
                DomainError::invalid(
                    "capabilities",
                    "capabilities must hold \"send\", \"read\" or both",
                )
            })?,
            None,
        ),
    };
    google(state)?;
    let mut scopes = vec!["email".to_owned()];
    scopes.extend(capabilities.gmail_scopes());
    let mut extra = vec![("access_type", "offline"), ("prompt", "consent")];
    if let Some(address) = &login_hint {
        extra.push(("login_hint", address));
    }
    let purpose = Purpose::ConnectGoogle {
        user_id: principal.user.id,
        org_id,
        capabilities,
        reconnect,
    };
    provider_flow::start(state, GOOGLE, purpose, LANDING.to_owned(), &scopes, &extra).await
}

/// What Google granted at the end of a connect flow.
pub struct Grant {
    pub subject: String,
    pub address: EmailAddress,
    pub refresh_token: Option<SecretString>,
    /// The scopes granted, when the token answer says.
    pub scopes: Option<Vec<String>>,
}

/// What a connect flow was started for.
pub struct Connection {
    pub org_id: OrgId,
    pub capabilities: Capabilities,
    pub reconnect: Option<MailAccountId>,
}

/// Stores a connected account (or the new grant of a reconnected one, or of an account of
/// the same Google user the organization has already), for `finisher`, who must be the one
/// who started the flow: its refresh token sealed, its address the one Google vouched for,
/// its capabilities those the user granted. A grant that is not stored goes back to Google.
pub(crate) async fn finish_connect(
    state: &AppState,
    trail: &AuditTrail,
    finisher: Result<&Principal, DomainError>,
    grant: Grant,
    connection: Connection,
) -> Result<MailAccount, DomainError> {
    let Some(refresh_token) = grant.refresh_token.clone() else {
        return Err(DomainError::ProviderRefused(
            ProviderFailure::NoRefreshToken,
        ));
    };
    let stored = match finisher {
        Ok(principal) => store(state, trail, principal, &grant, &refresh_token, &connection).await,
        Err(error) => Err(error),
    };
    if stored.is_err() {
        // Google granted it, mailroom will not use it: it goes back, unless the same Google
        // account is connected here (revoking would end that account's grant too).
        let connected_here = state
            .database
            .mail_accounts()
            .list(connection.org_id)
            .await
            .map(|accounts| {
                accounts
                    .iter()
                    .any(|account| is_of(account, &grant.subject))
            })
            .unwrap_or(true);
        if !connected_here && let Err(error) = revoke(state, &refresh_token).await {
            tracing::warn!(%error, "a refused connection's grant was not revoked");
        }
    }
    stored
}

/// Whether `account` is the Google account of `subject`.
fn is_of(account: &MailAccount, subject: &str) -> bool {
    account.kind == AccountKind::Google
        && Settings::of(account)
            .google
            .is_some_and(|google| google.subject == subject)
}

async fn store(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    grant: &Grant,
    refresh_token: &SecretString,
    connection: &Connection,
) -> Result<MailAccount, DomainError> {
    let Connection {
        capabilities: asked,
        reconnect,
        ..
    } = *connection;
    let caller = Caller::Account(principal.clone());
    // The flow took minutes: whoever finishes it must still be allowed to.
    may_manage(state, &caller).await?;
    let refused = DomainError::ProviderRefused;
    let scopes = grant.scopes.clone().unwrap_or_else(|| {
        // No `scope` in the answer: it granted what was asked (RFC 6749 §5.1).
        asked.gmail_scopes()
    });
    let capabilities = asked.granted_by(&scopes);
    if !capabilities.any() {
        return Err(refused(ProviderFailure::ScopesRefused));
    }
    let org_id = principal.user.org_id;
    let accounts = state.database.mail_accounts().list(org_id).await?;
    let same_user = accounts
        .iter()
        .find(|account| is_of(account, &grant.subject));
    let existing = match reconnect {
        Some(id) => {
            let account = accounts
                .iter()
                .find(|account| account.id == id)
                .ok_or(DomainError::NotFound)?;
            if same_user.map(|found| found.id) != Some(id) {
                return Err(refused(ProviderFailure::OtherGoogleAccount));
            }
            Some(account)
        }
        None => same_user,
    };
    let settings = Settings {
        google: Some(GoogleGrant {
            subject: grant.subject.clone(),
            scopes: scopes
                .into_iter()
                .filter(|scope| scope.starts_with("https://www.googleapis.com/auth/gmail."))
                .collect(),
        }),
        // A reconnection keeps the limits someone set.
        limits: existing.and_then(|account| Settings::of(account).limits),
        ..Settings::default()
    };
    let credentials = Credentials {
        refresh_token: Some(refresh_token.expose_secret().to_owned()),
        ..Credentials::default()
    };
    let address = grant.address.to_string();
    let id = existing.map_or_else(MailAccountId::generate, |account| account.id);
    let account = NewMailAccount {
        id,
        kind: AccountKind::Google,
        name: existing.map_or_else(|| address.clone(), |account| account.name.clone()),
        address: address.clone(),
        can_send: capabilities.send,
        can_read: capabilities.read,
        settings: serde_json::to_string(&settings).map_err(DomainError::internal)?,
        credentials: Zeroizing::new(
            serde_json::to_vec(&credentials).map_err(DomainError::internal)?,
        ),
        from_addresses: existing.map_or_else(Vec::new, |account| account.from_addresses.clone()),
        connected_by: Some(principal.user.id),
    };
    let now = OffsetDateTime::now_utc();
    let mail_accounts = state.database.mail_accounts();
    if existing.is_some() {
        let event = AuditEvent {
            target: Some(format!("mail account {id} ({address}) reconnected")),
            ..caller.event(trail, Action::MailAccountConnected)
        };
        if !mail_accounts
            .reconnect(org_id, &account, &event, now)
            .await?
        {
            return Err(DomainError::NotFound);
        }
        // The old grant's access token goes with it.
        state
            .identity_providers
            .access_tokens
            .clear(org_id, id)
            .await;
        return mail_accounts
            .get(org_id, id)
            .await?
            .ok_or(DomainError::NotFound);
    }
    let event = AuditEvent {
        target: Some(format!("mail account {id} ({address})")),
        ..caller.event(trail, Action::MailAccountConnected)
    };
    Ok(mail_accounts.connect(org_id, &account, &event, now).await?)
}

/// Why no access token could be had.
pub enum TokenRefused {
    /// Google no longer honours the grant (`invalid_grant`): the account was marked
    /// `needs_reconnect`.
    Revoked,
    /// The account is not active, or holds no grant.
    Unusable,
    /// Google could not be asked, or answered otherwise.
    Provider(String),
}

impl TokenRefused {
    fn describe(&self) -> String {
        match self {
            TokenRefused::Revoked => {
                "Google refused the grant (invalid_grant): connect the account again".to_owned()
            }
            TokenRefused::Unusable => "the account must be connected again".to_owned(),
            TokenRefused::Provider(error) => error.clone(),
        }
    }
}

impl From<TokenRefused> for DomainError {
    fn from(refused: TokenRefused) -> Self {
        match refused {
            TokenRefused::Revoked | TokenRefused::Unusable => {
                DomainError::Conflict(Conflict::AccountNeedsReconnect)
            }
            TokenRefused::Provider(_) => DomainError::ProviderRefused(ProviderFailure::Exchange),
        }
    }
}

/// An access token in hand.
pub struct Token {
    pub secret: SecretString,
    /// Whether it was refreshed to be had.
    pub refreshed: bool,
    pub expires_at: Instant,
}

/// An access token for one of the organization's Google accounts: the one in hand, or a new
/// one when it is within a minute of expiring. What sending and reading use.
pub async fn access_token(
    state: &AppState,
    org_id: OrgId,
    id: MailAccountId,
) -> Result<Token, TokenRefused> {
    let slot = state.identity_providers.access_tokens.slot(org_id, id);
    let mut held = slot.lock().await;
    if let Some(token) = held
        .as_ref()
        .filter(|token| token.expires_at > Instant::now() + REFRESH_MARGIN)
    {
        return Ok(Token {
            secret: token.token.clone(),
            refreshed: false,
            expires_at: token.expires_at,
        });
    }
    *held = None;
    let provider = google(state)
        .map_err(|_| TokenRefused::Provider("[oidc.google] is not configured".into()))?;
    let (account, credentials, version) = with_credentials(state, org_id, id)
        .await
        .map_err(|error| {
            tracing::warn!(%error, account = %id, "an account's credentials could not be read");
            TokenRefused::Provider("the account's credentials could not be read".to_owned())
        })?
        .ok_or(TokenRefused::Unusable)?;
    let Some(refresh_token) = credentials.refresh_token.map(SecretString::from) else {
        return Err(TokenRefused::Unusable);
    };
    if account.status != AccountStatus::Active {
        return Err(TokenRefused::Unusable);
    }
    let asked_at = Instant::now();
    match provider.client.refresh(&refresh_token).await {
        Ok(tokens) => {
            let expires_at = asked_at + tokens.expires_in.unwrap_or(DEFAULT_LIFETIME);
            *held = Some(AccessToken {
                token: tokens.access_token.clone(),
                expires_at,
            });
            Ok(Token {
                secret: tokens.access_token,
                refreshed: true,
                expires_at,
            })
        }
        Err(OauthError::InvalidGrant) => {
            // Marked while the slot is held: whoever waits for it finds the account marked,
            // and asks Google nothing.
            grant_refused(state, &account, &version).await;
            drop(held);
            Err(TokenRefused::Revoked)
        }
        Err(error) => Err(TokenRefused::Provider(error.to_string())),
    }
}

/// Google refused the account's grant (the one of its credentials `refused`): it needs
/// reconnecting. Audited and mailed to whoever connected it, once (the first to notice marks
/// it; a reconnection since is not undone).
async fn grant_refused(state: &AppState, account: &MailAccount, refused: &CredentialsVersion) {
    let event = AuditEvent {
        target: Some(format!(
            "mail account {} ({}): invalid_grant",
            account.id, account.address
        )),
        ..AuditEvent::by_the_system(
            account.org_id,
            Action::MailAccountNeedsReconnect,
            Outcome::Failure,
        )
    };
    let marked = state
        .database
        .mail_accounts()
        .needs_reconnect(
            account.org_id,
            account.id,
            refused,
            &TokenRefused::Revoked.describe(),
            &event,
            OffsetDateTime::now_utc(),
        )
        .await;
    match marked {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(%error, account = %account.id, "could not mark an account for reconnecting");
            return;
        }
    }
    let Some(connector) = account.connected_by else {
        return;
    };
    match state.database.accounts().user_by_id(connector).await {
        Ok(Some(user)) if user.org_id == account.org_id => {
            let link = state
                .public_url
                .join(LANDING)
                .map(|url| url.to_string())
                .unwrap_or_default();
            let message = MailMessage::AccountNeedsReconnect {
                address: account.address.clone(),
                link,
            };
            system_mail::send(state, &user.email, message).await;
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "the connector of an account could not be read"),
    }
}

/// Tests a Google account for real, the way a send or a read would use it: its access token
/// (refreshed when it nears its expiry), then its Gmail profile when its grant may read it
/// (`gmail.send` alone may not).
pub(crate) async fn test(state: &AppState, account: &MailAccount) -> ConnectionCheck {
    let mut exchanges = Vec::new();
    let token = match access_token(state, account.org_id, account.id).await {
        Ok(token) => token,
        Err(refused) => {
            return ConnectionCheck {
                exchanges,
                error: Some(format!("token refresh: {}", refused.describe())),
            };
        }
    };
    let lasts = token
        .expires_at
        .saturating_duration_since(Instant::now())
        .as_secs();
    exchanges.push(Exchange {
        step: "token",
        reply: if token.refreshed {
            format!("refreshed: valid {lasts} s")
        } else {
            format!("in hand: valid {lasts} s more")
        },
    });
    if !account.can_read {
        exchanges.push(Exchange {
            step: "profile",
            reply: "not asked: gmail.send alone may not read the profile".to_owned(),
        });
        return ConnectionCheck {
            exchanges,
            error: None,
        };
    }
    let Some(gmail) = google(state).ok().and_then(|google| google.gmail.as_ref()) else {
        return ConnectionCheck {
            exchanges,
            error: Some("[oidc.google] is not configured".to_owned()),
        };
    };
    match gmail.profile(&token.secret).await {
        Ok(profile) if !profile.email_address.eq_ignore_ascii_case(&account.address) => {
            ConnectionCheck {
                error: Some(format!(
                    "profile: the mailbox is {}, not the account's {}",
                    profile.email_address, account.address
                )),
                exchanges,
            }
        }
        Ok(profile) => {
            exchanges.push(Exchange {
                step: "profile",
                reply: format!(
                    "{}: {} messages, {} threads",
                    profile.email_address,
                    profile.messages_total.unwrap_or(0),
                    profile.threads_total.unwrap_or(0)
                ),
            });
            ConnectionCheck {
                exchanges,
                error: None,
            }
        }
        Err(error) => ConnectionCheck {
            exchanges,
            error: Some(format!("profile: {error}")),
        },
    }
}

/// Revokes a grant at Google's revocation endpoint: what went wrong, if anything.
pub(crate) async fn revoke(state: &AppState, refresh_token: &SecretString) -> Result<(), String> {
    let provider = google(state).map_err(|_| "[oidc.google] is not configured".to_owned())?;
    provider
        .client
        .revoke(refresh_token)
        .await
        .map_err(|error| error.to_string())
}

/// The refresh tokens of an organization's Google accounts: read before the organization is
/// deleted, to be revoked after ([`revoke_all`]).
pub(crate) async fn grants_of(state: &AppState, org_id: OrgId) -> Vec<SecretString> {
    let accounts = match state.database.mail_accounts().list(org_id).await {
        Ok(accounts) => accounts,
        Err(error) => {
            tracing::warn!(%error, "the accounts of an organization to delete could not be read");
            return Vec::new();
        }
    };
    let mut tokens = Vec::new();
    for account in accounts
        .iter()
        .filter(|account| account.kind == AccountKind::Google)
    {
        if let Ok(Some((_, credentials, _))) = with_credentials(state, org_id, account.id).await
            && let Some(token) = credentials.refresh_token
        {
            tokens.push(SecretString::from(token));
        }
    }
    tokens
}

/// Revokes the grants of a deleted organization's accounts. A failure is logged: the
/// organization, and its audit chain's head, are gone.
pub(crate) async fn revoke_all(state: &AppState, tokens: Vec<SecretString>) {
    let revocations = tokens.iter().map(|token| revoke(state, token));
    for outcome in futures::future::join_all(revocations).await {
        if let Err(error) = outcome {
            tracing::warn!(%error, "a deleted organization's Google grant was not revoked");
        }
    }
}
