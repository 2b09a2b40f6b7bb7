//! The OpenID providers this installation trusts (`[oidc.<name>]`), each with its client, the
//! key that seals their flows' cookies (docs/security.md#openid-connect), and the access
//! tokens of the Google accounts connected through `[oidc.google]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use mailroom_core::{MailAccountId, OrgId};
use mailroom_crypto::root_key::{DerivedKey, RootKey};
use mailroom_mail::gmail::Gmail;
use mailroom_oauth::{Provider, ProviderConfig};
use secrecy::SecretString;

use crate::config::OidcProvider;

/// One configured provider.
pub struct IdentityProvider {
    pub settings: OidcProvider,
    pub client: Provider,
    /// The Gmail API, for `[oidc.google]`: it connects Gmail accounts too.
    pub gmail: Option<Gmail>,
}

pub struct IdentityProviders {
    providers: Vec<IdentityProvider>,
    /// Seals the flow cookie ([`crate::auth::oauth_flow`]).
    pub flow_key: DerivedKey,
    /// The access tokens of connected Google accounts.
    pub access_tokens: AccessTokens,
}

/// An access token, and when it stops working.
pub struct AccessToken {
    pub token: SecretString,
    pub expires_at: Instant,
}

/// The access tokens of connected accounts, in this node's memory only: never stored, so a
/// node refreshes an account's token once an hour at most. Each account has a slot, held
/// while its token is refreshed: one refresh at a time per account on a node. Across nodes
/// refreshes may race, and that is harmless: Google keeps the refresh token (it does not
/// rotate it) and every access token it issued works until its own expiry.
#[derive(Default)]
pub struct AccessTokens {
    /// By organization and account: a token is only ever handed to its own organization.
    slots: std::sync::Mutex<HashMap<(OrgId, MailAccountId), Slot>>,
}

pub type Slot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

impl AccessTokens {
    /// The account's slot: lock it to read its token, or to refresh it.
    pub fn slot(&self, org_id: OrgId, id: MailAccountId) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((org_id, id))
            .or_default()
            .clone()
    }

    /// Drops the account's token once no refresh runs (it has a new grant): the next use
    /// refreshes with the new one.
    pub async fn clear(&self, org_id: OrgId, id: MailAccountId) {
        *self.slot(org_id, id).lock().await = None;
    }

    /// Forgets a disconnected account. A refresh still running holds its slot, and what it
    /// brings back is thrown away with it.
    pub fn forget(&self, org_id: OrgId, id: MailAccountId) {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(org_id, id));
    }
}

impl IdentityProviders {
    pub fn new(configured: &[OidcProvider], root_key: &RootKey) -> anyhow::Result<Self> {
        let providers = configured
            .iter()
            .map(|settings| {
                let client = Provider::new(ProviderConfig {
                    issuer: settings.issuer.clone(),
                    client_id: settings.client_id.clone(),
                    client_secret: settings.client_secret.clone(),
                })
                .with_context(|| format!("[oidc.{}]", settings.name))?;
                let gmail = (settings.name == OidcProvider::GOOGLE)
                    .then(|| Gmail::new(settings.gmail_api_url.clone()))
                    .transpose()
                    .context("[oidc.google] gmail_api_url")?;
                Ok(IdentityProvider {
                    settings: settings.clone(),
                    client,
                    gmail,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            providers,
            flow_key: root_key.derive(b"mailroom/oauth-flow/aes-gcm/v1"),
            access_tokens: AccessTokens::default(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&IdentityProvider> {
        self.providers
            .iter()
            .find(|provider| provider.settings.name == name)
    }

    /// The providers, in the configuration's order: the sign-in page's buttons.
    pub fn all(&self) -> impl Iterator<Item = &OidcProvider> {
        self.providers.iter().map(|provider| &provider.settings)
    }
}
