//! The client against the Google contract server of the test kit (Google's endpoints cannot
//! be reached from here; the server checks every request against Google's documented
//! contract): an offline authorization, its code exchanged once, the ID token verified, the
//! refresh token used, revoked, and refused after.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mailroom_oauth::{OauthError, Provider, ProviderConfig};
use mailroom_testkit::{GoogleContract, ProviderUser};
use secrecy::ExposeSecret;
use time::OffsetDateTime;
use url::Url;

const GMAIL_SEND: &str = "https://www.googleapis.com/auth/gmail.send";

#[tokio::test]
async fn a_code_gives_tokens_once_and_the_refresh_token_works_until_revoked() {
    let google = GoogleContract::start("client.apps.googleusercontent.com", "shh").await;
    let redirect = Url::parse("http://127.0.0.1:9/v1/auth/oidc/google/callback").unwrap();
    google.register_redirect_uri(redirect.as_str());
    google.sign_in_as(ProviderUser::new("108", "jane@example.test"));
    let provider = Provider::new(ProviderConfig {
        issuer: google.issuer().to_owned(),
        client_id: "client.apps.googleusercontent.com".to_owned(),
        client_secret: "shh".into(),
    })
    .unwrap();

    let scopes = ["email".to_owned(), GMAIL_SEND.to_owned()];
    let offline = [("access_type", "offline"), ("prompt", "consent")];
    let authorization = provider
        .authorize(&redirect, &scopes, &offline)
        .await
        .unwrap();
    // The browser's visit: the provider answers with a redirect carrying the code.
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(authorization.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let back = Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        back.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .unwrap()
    };
    assert_eq!(param("state"), authorization.state.expose_secret());
    let code = param("code");

    let tokens = provider
        .exchange_code(&code, &authorization.pkce_verifier, &redirect)
        .await
        .unwrap();
    let claims = provider
        .verify_id_token(
            tokens.id_token.as_deref().unwrap(),
            &authorization.nonce,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(
        (claims.subject.as_str(), claims.email_verified),
        ("108", true)
    );
    assert!(tokens.scopes.unwrap().contains(&GMAIL_SEND.to_owned()));
    // A code is good once.
    let again = provider
        .exchange_code(&code, &authorization.pkce_verifier, &redirect)
        .await;
    assert!(matches!(again, Err(OauthError::InvalidGrant)), "{again:?}");

    let refresh_token = tokens.refresh_token.unwrap();
    let refreshed = provider.refresh(&refresh_token).await.unwrap();
    assert!(refreshed.expires_in.is_some());
    provider.revoke(&refresh_token).await.unwrap();
    assert_eq!(google.revoked(), [refresh_token.expose_secret().to_owned()]);
    let after = provider.refresh(&refresh_token).await;
    assert!(matches!(after, Err(OauthError::InvalidGrant)), "{after:?}");
    assert_eq!(google.violations(), Vec::<String>::new());
}
