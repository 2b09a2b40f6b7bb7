//! Signing in with an OpenID provider, and the provider identities linked to an account
//! (docs/security.md#openid-connect).
//!
//! A flow starts here ([`start_sign_in`], [`start_link`], or [`google::start_connect`] to
//! connect a Gmail account) and comes back to [`finish`], which
//! checks, in this order: the flow's cookie and state (spent once), the code exchange with the
//! PKCE verifier, the ID token (signature, issuer, audience, times, nonce), and that the
//! provider vouches for the address. Then the identity, keyed by (issuer, subject), signs its
//! user in, or makes an account for an address nobody has; an address with an account is
//! never signed into by a provider's word alone: its owner links the provider first.

use mailroom_core::audit::{Action, AuditEvent, Outcome};
use mailroom_core::{EmailAddress, IdentityId, UserId};
use mailroom_oauth::{IdClaims, OauthError, TokenSet};
use mailroom_storage::identities::{Identity, Linked, ProviderIdentity, Unlinked};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::application::accounts::{self, SignIn, parse_email};
use crate::application::actor::{Caller, Principal};
use crate::application::mail_accounts::google;
use crate::application::provider_flow::{self, Started, provider, redirect_uri};
use crate::audit::{self, AuditTrail};
use crate::auth::oauth_flow::{FLOW_TTL, Flow, Purpose, local_path, state_hash};
use crate::auth::session::Presented;
use crate::error::{Conflict, DomainError, Forbidden, ProviderFailure};
use crate::state::AppState;

/// Where a flow goes when it names no page of its own.
const DEFAULT_LANDING: &str = "/security";

/// What the provider sent the browser back with.
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<SecretString>,
    pub error: Option<String>,
    /// The issuer the provider says answered (RFC 9207), when it says.
    pub issuer: Option<String>,
}

/// Where a finished flow leads.
pub enum Finished {
    SignedIn(Box<SignIn>, String),
    Linked,
    Connected,
}

/// A verified callback: the provider's word on who the user is (and on the address it
/// vouches for), the tokens it gave, and the flow it answers.
struct Vouched {
    claims: IdClaims,
    email: EmailAddress,
    tokens: TokenSet,
    flow: Flow,
}

/// Starts a sign-in (or sign-up) with `provider`, to land on `return_to` (a local path).
pub async fn start_sign_in(
    state: &AppState,
    provider: &str,
    return_to: Option<&str>,
) -> Result<Started, DomainError> {
    let landing = local_path(return_to, DEFAULT_LANDING).to_owned();
    let scopes = provider_scopes(state, provider)?;
    provider_flow::start(state, provider, Purpose::SignIn, landing, &scopes, &[]).await
}

/// Starts linking `provider` to the signed-in user: a new way into the account, so it needs
/// a recent sign-in.
pub async fn start_link(
    state: &AppState,
    principal: &Principal,
    provider: &str,
) -> Result<Started, DomainError> {
    // The callback must find this user's browser session: a token holder cannot finish it,
    // and so cannot start it.
    if principal.session_id().is_none() {
        return Err(DomainError::Forbidden(Forbidden::BrowserSessionRequired));
    }
    principal.require_recent_auth()?;
    let purpose = Purpose::Link {
        user_id: principal.user.id,
    };
    let scopes = provider_scopes(state, provider)?;
    provider_flow::start(
        state,
        provider,
        purpose,
        DEFAULT_LANDING.to_owned(),
        &scopes,
        &[],
    )
    .await
}

/// The scopes a sign-in asks of a provider: its configured ones.
fn provider_scopes(state: &AppState, name: &str) -> Result<Vec<String>, DomainError> {
    Ok(provider(state, name)?.settings.scopes.clone())
}

/// The callback of a flow: checked, then what it was for is done. A refusal is audited with
/// its reason.
pub async fn finish(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    signed_in: Option<&Principal>,
    provider_name: &str,
    callback: Callback,
    flow: Option<Flow>,
) -> Result<Finished, DomainError> {
    // A connection's refusal is its organization's to read; a sign-in's, the platform's.
    let connecting = flow.as_ref().and_then(|flow| match flow.purpose {
        Purpose::ConnectGoogle {
            user_id, org_id, ..
        } => Some((user_id, org_id)),
        _ => None,
    });
    let outcome = async {
        let vouched = vouched(state, provider_name, callback, flow).await?;
        match vouched.flow.purpose.clone() {
            Purpose::SignIn => sign_in(state, trail, presented, provider_name, vouched).await,
            Purpose::Link { user_id } => {
                let principal = started_by(signed_in, user_id)?;
                link(state, trail, principal, provider_name, vouched).await
            }
            Purpose::ConnectGoogle {
                user_id,
                org_id,
                capabilities,
                reconnect,
            } => {
                let finisher = started_by(signed_in, user_id)
                    .ok()
                    .filter(|principal| principal.user.org_id == org_id)
                    .ok_or(DomainError::ProviderRefused(ProviderFailure::WrongUser));
                let grant = google::Grant {
                    subject: vouched.claims.subject,
                    address: vouched.email,
                    refresh_token: vouched.tokens.refresh_token,
                    scopes: vouched.tokens.scopes,
                };
                let connection = google::Connection {
                    org_id,
                    capabilities,
                    reconnect,
                };
                google::finish_connect(state, trail, finisher, grant, connection).await?;
                Ok(Finished::Connected)
            }
        }
    }
    .await;
    let reason = match &outcome {
        Err(DomainError::ProviderRefused(failure)) => Some(failure.reason()),
        Err(DomainError::AccountDisabled) => Some("account_disabled"),
        Err(DomainError::InvalidEmail { .. }) => Some("email_invalid"),
        Err(DomainError::Forbidden(_)) => Some("forbidden"),
        Err(DomainError::NotFound) => Some("not_found"),
        _ => None,
    };
    if let Some(reason) = reason {
        let target = Some(format!("{provider_name}: {reason}"));
        let event = match connecting {
            Some((user_id, org_id)) => AuditEvent {
                org_id: Some(org_id),
                actor: Some(user_id),
                target,
                ..trail.event(Action::MailAccountConnectFailed, Outcome::Failure)
            },
            None => AuditEvent {
                target,
                ..trail.event(Action::ProviderSigninFailed, Outcome::Failure)
            },
        };
        audit::record(&state.database, event).await?;
        tracing::info!(provider = provider_name, reason, "provider flow refused");
    }
    outcome
}

/// The signed-in user who started a flow, in the browser session it started in.
fn started_by(signed_in: Option<&Principal>, user_id: UserId) -> Result<&Principal, DomainError> {
    signed_in
        .filter(|principal| principal.user.id == user_id && principal.session_id().is_some())
        .ok_or(DomainError::ProviderRefused(ProviderFailure::WrongUser))
}

/// Every check of a callback, in order; what the provider vouched for.
async fn vouched(
    state: &AppState,
    provider_name: &str,
    callback: Callback,
    flow: Option<Flow>,
) -> Result<Vouched, DomainError> {
    let refused = DomainError::ProviderRefused;
    let provider = provider(state, provider_name)?;
    let now = OffsetDateTime::now_utc();
    let flow = flow
        .filter(|flow| flow.provider == provider_name && !flow.expired(now))
        .ok_or(refused(ProviderFailure::FlowMissing))?;
    let state_matches = callback.state.as_ref().is_some_and(|given| {
        bool::from(
            given
                .expose_secret()
                .as_bytes()
                .ct_eq(flow.state.expose_secret().as_bytes()),
        )
    });
    if !state_matches {
        return Err(refused(ProviderFailure::StateMismatch));
    }
    let expires = OffsetDateTime::from_unix_timestamp(flow.started_at)
        .map_err(DomainError::internal)?
        + FLOW_TTL;
    if !state
        .database
        .identities()
        .spend_state(&state_hash(&flow.state), expires)
        .await?
    {
        return Err(refused(ProviderFailure::StateReused));
    }
    // A provider that names itself must be the one the flow went to (mix-up defence, RFC 9207).
    if callback
        .issuer
        .as_deref()
        .is_some_and(|issuer| issuer != provider.client.issuer())
    {
        return Err(refused(ProviderFailure::IdToken(
            mailroom_oauth::Rejection::Issuer,
        )));
    }
    let code = match (callback.error, callback.code) {
        (None, Some(code)) => code,
        _ => return Err(refused(ProviderFailure::ProviderError)),
    };
    let tokens = provider
        .client
        .exchange_code(
            &code,
            &flow.pkce_verifier,
            &redirect_uri(state, provider_name)?,
        )
        .await
        .map_err(|error| {
            tracing::warn!(provider = provider_name, %error, "code exchange failed");
            refused(ProviderFailure::Exchange)
        })?;
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or(refused(ProviderFailure::IdToken(
            mailroom_oauth::Rejection::Malformed,
        )))?;
    let claims = provider
        .client
        .verify_id_token(id_token, &flow.nonce, now)
        .await
        .map_err(|error| match error {
            OauthError::IdToken(rejection) => refused(ProviderFailure::IdToken(rejection)),
            error => {
                tracing::warn!(provider = provider_name, %error, "the provider's keys");
                refused(ProviderFailure::Exchange)
            }
        })?;
    let email = match &claims.email {
        Some(email) if claims.email_verified => parse_email(email)?,
        _ => return Err(refused(ProviderFailure::EmailUnverified)),
    };
    Ok(Vouched {
        claims,
        email,
        tokens,
        flow,
    })
}

fn identity_of(provider_name: &str, vouched: &Vouched) -> ProviderIdentity {
    ProviderIdentity {
        provider: provider_name.to_owned(),
        issuer: vouched.claims.issuer.clone(),
        subject: vouched.claims.subject.clone(),
        email: vouched.email.to_string(),
        display_name: vouched
            .claims
            .name
            .clone()
            .map(|name| name.chars().take(200).collect()),
        picture_url: vouched
            .claims
            .picture
            .clone()
            .filter(|url| url.starts_with("https://") && url.len() <= 2048),
    }
}

async fn sign_in(
    state: &AppState,
    trail: &AuditTrail,
    presented: Presented<'_>,
    provider_name: &str,
    vouched: Vouched,
) -> Result<Finished, DomainError> {
    let identity = identity_of(provider_name, &vouched);
    let now = OffsetDateTime::now_utc();
    let user = match state.database.identities().sign_in(&identity, now).await? {
        Some(user) => user,
        None => {
            let email = &vouched.email;
            // An account of this address is signed into only by an identity its owner linked.
            if state
                .database
                .accounts()
                .user_by_email(email)
                .await?
                .is_some()
            {
                return Err(DomainError::ProviderRefused(ProviderFailure::AccountExists));
            }
            let event = AuditEvent {
                target: Some(provider_name.to_owned()),
                subject: Some(email.to_string()),
                ..trail.event(Action::SignupByProvider, Outcome::Success)
            };
            state
                .database
                .identities()
                .create_account(
                    email,
                    &identity,
                    (trail.ip(), trail.user_agent()),
                    &event,
                    now,
                )
                .await?
                .ok_or(DomainError::ProviderRefused(ProviderFailure::AccountExists))?
        }
    };
    if user.disabled {
        return Err(DomainError::AccountDisabled);
    }
    let signed_in = accounts::sign_in_as(state, trail, presented, user).await?;
    Ok(Finished::SignedIn(
        Box::new(signed_in),
        vouched.flow.return_to,
    ))
}

async fn link(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    provider_name: &str,
    vouched: Vouched,
) -> Result<Finished, DomainError> {
    let identity = identity_of(provider_name, &vouched);
    let event = AuditEvent {
        target: Some(provider_name.to_owned()),
        ..Caller::Account(principal.clone()).event(trail, Action::IdentityLinked)
    };
    let linked = state
        .database
        .identities()
        .link(
            principal.user.id,
            &identity,
            &event,
            OffsetDateTime::now_utc(),
        )
        .await?;
    match linked {
        Linked::Linked | Linked::AlreadyTheirs => Ok(Finished::Linked),
        Linked::TakenByAnother => Err(DomainError::ProviderRefused(ProviderFailure::IdentityTaken)),
    }
}

/// The signed-in user's linked identities.
pub async fn list(state: &AppState, principal: &Principal) -> Result<Vec<Identity>, DomainError> {
    Ok(state
        .database
        .identities()
        .of_user(principal.user.id)
        .await?)
}

/// Removes one of the user's identities, unless it is their last way to sign in.
pub async fn unlink(
    state: &AppState,
    trail: &AuditTrail,
    principal: &Principal,
    id: IdentityId,
) -> Result<(), DomainError> {
    let event = Caller::Account(principal.clone()).event(trail, Action::IdentityUnlinked);
    let event = AuditEvent {
        target: Some(id.to_string()),
        ..event
    };
    match state
        .database
        .identities()
        .unlink(principal.user.id, id, &event, OffsetDateTime::now_utc())
        .await?
    {
        Unlinked::Removed => Ok(()),
        Unlinked::NotFound => Err(DomainError::NotFound),
        Unlinked::LastWayIn => Err(DomainError::Conflict(Conflict::LastWayIn)),
    }
}
