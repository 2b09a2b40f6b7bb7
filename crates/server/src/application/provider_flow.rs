//! The start of a flow through an OAuth provider, whatever it is for (signing in, linking,
//! connecting a Gmail account): the authorization request, and the flow its cookie carries
//! to the one callback, `<public_url>/v1/auth/oidc/<name>/callback`.

use mailroom_oauth::OauthError;
use time::OffsetDateTime;
use url::Url;

use crate::auth::oauth_flow::{Flow, Purpose};
use crate::error::{DomainError, ProviderFailure};
use crate::identity_providers::IdentityProvider;
use crate::state::AppState;

/// A started flow: where to send the browser, and the flow for its cookie.
pub struct Started {
    pub authorization_url: Url,
    pub flow: Flow,
}

/// Starts a flow with `provider_name` for `purpose`, asking for `scopes` (and `openid`), with
/// `extra` parameters of the provider's.
pub async fn start(
    state: &AppState,
    provider_name: &str,
    purpose: Purpose,
    return_to: String,
    scopes: &[String],
    extra: &[(&str, &str)],
) -> Result<Started, DomainError> {
    let provider = provider(state, provider_name)?;
    let authorization = provider
        .client
        .authorize(&redirect_uri(state, provider_name)?, scopes, extra)
        .await
        .map_err(provider_unreachable)?;
    Ok(Started {
        authorization_url: authorization.url,
        flow: Flow {
            provider: provider_name.to_owned(),
            purpose,
            state: authorization.state,
            nonce: authorization.nonce,
            pkce_verifier: authorization.pkce_verifier,
            return_to,
            started_at: OffsetDateTime::now_utc().unix_timestamp(),
        },
    })
}

/// A configured provider, by its name; an unknown name is as missing as none.
pub fn provider<'s>(state: &'s AppState, name: &str) -> Result<&'s IdentityProvider, DomainError> {
    state
        .identity_providers
        .get(name)
        .ok_or(DomainError::NotFound)
}

/// The one redirect URI registered for a provider: `<public_url>/v1/auth/oidc/<name>/callback`.
pub fn redirect_uri(state: &AppState, provider: &str) -> Result<Url, DomainError> {
    state
        .public_url
        .join(&format!("/v1/auth/oidc/{provider}/callback"))
        .map_err(DomainError::internal)
}

fn provider_unreachable(error: OauthError) -> DomainError {
    tracing::warn!(%error, "an OpenID provider");
    DomainError::ProviderRefused(ProviderFailure::Exchange)
}
