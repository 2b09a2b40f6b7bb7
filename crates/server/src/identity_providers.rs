//! The OpenID providers this installation trusts (`[oidc.<name>]`), each with its client, and
//! the key that seals their flows' cookies (docs/security.md#openid-connect).

use anyhow::Context;
use mailroom_crypto::root_key::{DerivedKey, RootKey};
use mailroom_oauth::{Provider, ProviderConfig};

use crate::config::OidcProvider;

/// One configured provider.
pub struct IdentityProvider {
    pub settings: OidcProvider,
    pub client: Provider,
}

pub struct IdentityProviders {
    providers: Vec<IdentityProvider>,
    /// Seals the flow cookie ([`crate::auth::oauth_flow`]).
    pub flow_key: DerivedKey,
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
                Ok(IdentityProvider {
                    settings: settings.clone(),
                    client,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            providers,
            flow_key: root_key.derive(b"mailroom/oauth-flow/aes-gcm/v1"),
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
