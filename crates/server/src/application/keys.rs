//! API keys (docs/security.md#api-key-format, #api-key-scopes): created with their scopes and
//! limits and shown once, and revoked.

use mailroom_core::api_keys::{Scope, Scopes};
use mailroom_core::audit::{Action, AuditEvent};
use mailroom_core::{ApiKeyId, OrgId};
use mailroom_crypto::api_key;
use mailroom_storage::api_keys::{ApiKeyInfo, NewApiKey};
use mailroom_storage::teams::{Change, MemberPower};
use secrecy::SecretString;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::application::actor::Caller;
use crate::application::actor::Principal;
use crate::audit::AuditTrail;
use crate::error::{DomainError, Forbidden};
use crate::state::AppState;

/// A key's name, in characters.
pub const MAX_NAME: usize = 100;

/// What a new key is to be.
pub struct KeySpec<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    pub expires_at: Option<&'a str>,
    pub requests_per_minute: Option<u32>,
    pub requests_per_day: Option<u32>,
}

/// Creates a key; returns what is stored of it and the raw key, for its one showing.
pub async fn create_of(
    state: &AppState,
    trail: &AuditTrail,
    principal: Principal,
    spec: &KeySpec<'_>,
) -> Result<(NewApiKey, SecretString), DomainError> {
    principal.require_recent_auth()?;
    let user = &principal.user;
    let org_id = user.org_id;
    let manager = user.org_role.manages();
    if !manager
        && !state
            .database
            .teams()
            .members_may(user.org_id, MemberPower::CreateKeys)
            .await?
    {
        return Err(DomainError::Forbidden(Forbidden::KeysForManagersOnly));
    }
    let invalid = |field: &'static str, detail: String| DomainError::invalid(field, detail);
    let name = spec.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    let scopes = Scopes::parse(spec.scopes.iter().map(String::as_str)).map_err(|unknown| {
        let known: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
        invalid(
            "scopes",
            format!(
                "unknown or missing scope {unknown:?}; known: {}",
                known.join(", ")
            ),
        )
    })?;
    // Managing keys and webhooks and reading the audit log are a manager's powers to hand
    // out; connecting mail accounts is too, unless the organization lets its members.
    if !manager
        && [Scope::KeysManage, Scope::AuditRead, Scope::WebhooksManage]
            .into_iter()
            .any(|power| scopes.contains(power))
    {
        return Err(DomainError::Forbidden(Forbidden::KeyPowersForManagersOnly));
    }
    if !manager
        && scopes.contains(Scope::AccountsManage)
        && !state
            .database
            .teams()
            .members_may(org_id, MemberPower::ConnectAccounts)
            .await?
    {
        return Err(DomainError::Forbidden(Forbidden::KeyPowersForManagersOnly));
    }
    let now = OffsetDateTime::now_utc();
    let expires_at = spec
        .expires_at
        .map(|text| OffsetDateTime::parse(text, &Rfc3339))
        .transpose()
        .map_err(|_| invalid("expires_at", "expires_at must be an RFC 3339 time".into()))?;
    if expires_at.is_some_and(|expires_at| expires_at <= now) {
        return Err(invalid(
            "expires_at",
            "expires_at must be in the future".into(),
        ));
    }
    // A key may be held to less than its plan allows, never to more.
    let plan = state.database.teams().plan_of(org_id).await?;
    let within = |limit: Option<u32>, plan_limit: i32, field: &'static str| match limit {
        Some(0) => Err(invalid(field, format!("{field} must be at least 1"))),
        Some(limit) if i64::from(limit) > i64::from(plan_limit) => Err(invalid(
            field,
            format!("{field} may be at most the plan's {plan_limit}"),
        )),
        _ => Ok(()),
    };
    within(
        spec.requests_per_minute,
        plan.key_requests_per_minute,
        "requests_per_minute",
    )?;
    within(
        spec.requests_per_day,
        plan.key_requests_per_day,
        "requests_per_day",
    )?;
    let generated = api_key::generate();
    let key = NewApiKey {
        id: ApiKeyId::generate(),
        name: name.to_owned(),
        lookup_id: generated.id.clone(),
        key_hash: generated.hash.to_vec(),
        scopes,
        created_by: user.id,
        expires_at,
        requests_per_minute: spec.requests_per_minute,
        requests_per_day: spec.requests_per_day,
    };
    let event = AuditEvent {
        target: Some(format!("api key {} ({})", key.id, key.scopes.to_stored())),
        ..Caller::Account(principal).event(trail, Action::ApiKeyCreated)
    };
    state
        .database
        .api_keys()
        .create_api_key(org_id, &key, &event, now)
        .await?;
    Ok((key, generated.key))
}

pub async fn revoke_of(
    state: &AppState,
    trail: &AuditTrail,
    caller: &Caller,
    id: ApiKeyId,
) -> Result<(), DomainError> {
    caller.require(Scope::KeysManage, true)?;
    let event = AuditEvent {
        target: Some(format!("api key {id}")),
        ..caller.event(trail, Action::ApiKeyRevoked)
    };
    let change = state
        .database
        .api_keys()
        .revoke_api_key(caller.org_id(), id, &event, OffsetDateTime::now_utc())
        .await?;
    match change {
        Change::Done => Ok(()),
        _ => Err(DomainError::NotFound),
    }
}

/// The organization's API keys (never their secrets).
pub async fn list(state: &AppState, org_id: OrgId) -> Result<Vec<ApiKeyInfo>, DomainError> {
    Ok(state
        .database
        .api_keys()
        .api_keys(org_id, OffsetDateTime::now_utc())
        .await?)
}
