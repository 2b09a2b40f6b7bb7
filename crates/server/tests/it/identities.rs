//! Signing in with an OpenID provider, against the Google contract server of the test kit
//! (Google's endpoints cannot be reached from here; the server checks every request against
//! Google's documented contract): sign-up, sign-in, linking, the second factor, and every
//! refusal a tampered or foreign callback earns, audited with its reason.

use mailroom_testkit::{Misbehaviour, ProviderUser, TestDatabase, both_backends};
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::accounts::{create_account, get_as, send_as};
use crate::common::google::{Browser, app_with_google, location};

/// Starts a sign-in and goes to the provider: the callback URL it sends the browser back to.
async fn to_provider_and_back(app: &TestApp, browser: &mut Browser) -> String {
    let start = browser
        .get(app, &app.at("/v1/auth/oidc/google/start?return_to=/verify"))
        .await;
    assert_eq!(start.status(), 302);
    let at_provider = browser.get(app, &location(&start)).await;
    assert_eq!(
        at_provider.status(),
        303,
        "{}",
        at_provider.text().await.unwrap()
    );
    location(&at_provider)
}

/// A whole sign-in with the provider: the callback's answer.
async fn sign_in_with_google(app: &TestApp, browser: &mut Browser) -> reqwest::Response {
    let callback = to_provider_and_back(app, browser).await;
    browser.get(app, &callback).await
}

async fn refusals(db: &TestDatabase, reason: &str) -> i64 {
    db.count(&format!(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'signin.provider_failed' \
         AND target = 'google: {reason}'"
    ))
    .await
}

both_backends! {
    async fn a_new_address_signs_up_with_google_and_comes_back_signed_in(db) {
        let (app, google) = app_with_google(&db).await;
        google.sign_in_as(ProviderUser::new("110169484474386276334", "jane@example.test"));
        let mut browser = Browser::default();
        let callback = sign_in_with_google(&app, &mut browser).await;
        assert_eq!(callback.status(), 303);
        assert_eq!(location(&callback), "/verify");
        assert!(!browser.cookies.contains_key("__Host-mailroom_oauth"), "the flow's cookie is deleted");
        let session = browser.session().expect("signed in");

        let me: Value = get_as(&app, &session, "/v1/me").await.json().await.unwrap();
        assert_eq!(me["email"], "jane@example.test");
        assert_eq!(me["name"], "Jane Doe");
        assert_eq!(me["has_password"], false);
        let identities: Value = get_as(&app, &session, "/v1/me/identities").await.json().await.unwrap();
        assert_eq!(identities["data"][0]["provider"], "google");
        assert_eq!(identities["data"][0]["issuer"], google.issuer());
        // The only way in cannot be removed.
        let id = identities["data"][0]["id"].as_str().unwrap();
        let unlink = send_as(&app, reqwest::Method::DELETE, &session, &format!("/v1/me/identities/{id}"), None).await;
        crate::common::problem(unlink, 409, "last_sign_in_method").await;

        // Next time the same identity signs the same account in.
        let mut another_browser = Browser::default();
        let again = sign_in_with_google(&app, &mut another_browser).await;
        assert_eq!(again.status(), 303);
        let me_again: Value = get_as(&app, &another_browser.session().unwrap(), "/v1/me").await.json().await.unwrap();
        assert_eq!(me_again["id"], me["id"]);
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'signup.provider'").await,
            1
        );
        let export: Value = get_as(&app, &session, "/v1/me/export").await.json().await.unwrap();
        assert_eq!(export["identities"][0]["provider"], "google");
        // Deleting the account takes its identities with it.
        let deleted = send_as(
            &app,
            reqwest::Method::DELETE,
            &session,
            "/v1/me",
            Some(json!({"confirm": "jane@example.test"})),
        )
        .await;
        assert_eq!(deleted.status(), 204);
        assert_eq!(db.count("SELECT COUNT(*) FROM user_identities").await, 0);
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }
}

both_backends! {
    async fn an_account_with_a_password_is_not_taken_over_by_the_providers_word(db) {
        let (app, google) = app_with_google(&db).await;
        let email = "owner@example.test";
        let password_session = create_account(&app, &db, email).await;
        // Someone controls a provider account with the owner's address.
        google.sign_in_as(ProviderUser::new("attacker-subject", email));
        let mut attacker = Browser::default();
        let refused = sign_in_with_google(&app, &mut attacker).await;
        assert_eq!(refused.status(), 409);
        assert!(attacker.session().is_none());
        assert_eq!(refusals(&db, "account_exists").await, 1);

        // The owner links their own provider account from a signed-in session.
        google.sign_in_as(ProviderUser::new("owner-subject", email));
        let mut owner = Browser::signed_in(&password_session);
        let start = send_as(&app, reqwest::Method::POST, &password_session, "/v1/me/identities", Some(json!({"provider": "google"}))).await;
        assert_eq!(start.status(), 200);
        owner.keep_cookie(&start);
        let body: Value = start.json().await.unwrap();
        let at_provider = owner.get(&app, body["authorization_url"].as_str().unwrap()).await;
        let linked = owner.get(&app, &location(&at_provider)).await;
        assert_eq!(linked.status(), 303);
        assert_eq!(location(&linked), "/security?notice=identity_linked");

        // Now the provider signs the owner in; the attacker's identity still does not.
        let mut later = Browser::default();
        let signed_in = sign_in_with_google(&app, &mut later).await;
        assert_eq!(signed_in.status(), 303);
        let me: Value = get_as(&app, &later.session().unwrap(), "/v1/me").await.json().await.unwrap();
        assert_eq!(me["email"], email);
        google.sign_in_as(ProviderUser::new("attacker-subject", email));
        let mut attacker = Browser::default();
        assert_eq!(sign_in_with_google(&app, &mut attacker).await.status(), 409);

        // An access token, stolen or not, cannot link a provider: only a browser session.
        let tokens: Value = crate::common::accounts::post(
            &app,
            "/v1/auth/token",
            json!({"grant_type": "password", "email": email, "password": crate::common::accounts::PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
        let by_token = app
            .client
            .post(app.at("/v1/me/identities"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .json(&json!({"provider": "google"}))
            .send()
            .await
            .unwrap();
        crate::common::problem(by_token, 403, "browser_session_required").await;

        // With a password, the identity can go.
        let identities: Value = get_as(&app, &password_session, "/v1/me/identities").await.json().await.unwrap();
        let id = identities["data"][0]["id"].as_str().unwrap();
        let unlink = send_as(&app, reqwest::Method::DELETE, &password_session, &format!("/v1/me/identities/{id}"), None).await;
        assert_eq!(unlink.status(), 204);
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_log WHERE action IN ('identity.linked', 'identity.unlinked')").await,
            2
        );
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }
}

both_backends! {
    async fn tampered_reused_and_forged_callbacks_are_refused_and_audited(db) {
        let (app, google) = app_with_google(&db).await;
        google.sign_in_as(ProviderUser::new("subject-1", "someone@example.test"));

        // A state changed on the way back.
        let mut browser = Browser::default();
        let callback = to_provider_and_back(&app, &mut browser).await;
        let tampered = callback.replace("state=", "state=x");
        let refused = browser.get(&app, &tampered).await;
        assert_eq!(refused.status(), 400);
        assert!(browser.session().is_none());
        assert!(!browser.cookies.contains_key("__Host-mailroom_oauth"), "deleted whatever the outcome");
        assert_eq!(refusals(&db, "state_mismatch").await, 1);

        // A callback answered once, replayed with the cookie it had.
        let mut browser = Browser::default();
        let callback = to_provider_and_back(&app, &mut browser).await;
        let kept = browser.clone();
        assert_eq!(browser.get(&app, &callback).await.status(), 303);
        let mut replay = kept.clone();
        let replayed = replay.get(&app, &callback).await;
        assert_eq!(replayed.status(), 400);
        assert!(replay.session().is_none());
        assert_eq!(refusals(&db, "state_reused").await, 1);

        // A callback in a browser that did not start the flow.
        let mut other = Browser::default();
        assert_eq!(other.get(&app, &callback).await.status(), 400);
        assert_eq!(refusals(&db, "flow_missing").await, 1);

        // ID tokens that fail a check.
        for (misbehaviour, reason) in [
            (Misbehaviour::WrongNonce, "nonce"),
            (Misbehaviour::OtherKey, "signature"),
            (Misbehaviour::OtherAudience, "audience"),
        ] {
            google.misbehave(misbehaviour);
            let mut browser = Browser::default();
            let refused = sign_in_with_google(&app, &mut browser).await;
            assert_eq!(refused.status(), 401, "{reason}");
            assert!(browser.session().is_none(), "{reason}");
            assert_eq!(refusals(&db, reason).await, 1, "{reason}");
        }
        google.misbehave(Misbehaviour::None);

        // An address the provider does not vouch for.
        let mut unverified = ProviderUser::new("subject-2", "unverified@example.test");
        unverified.email_verified = false;
        google.sign_in_as(unverified);
        let mut browser = Browser::default();
        assert_eq!(sign_in_with_google(&app, &mut browser).await.status(), 403);
        assert_eq!(refusals(&db, "email_verified").await, 1);
        assert_eq!(
            db.count("SELECT COUNT(*) FROM users WHERE email = 'unverified@example.test'").await,
            0
        );

        // Another site cannot start a sign-in in this browser's name.
        let cross_site = app
            .client
            .get(app.at("/v1/auth/oidc/google/start"))
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(cross_site.status(), 403);
        assert!(cross_site.headers().get("set-cookie").is_none());

        // A start for a provider nobody configured, and a return_to on another origin.
        let mut browser = Browser::default();
        assert_eq!(browser.get(&app, &app.at("/v1/auth/oidc/nobody/start")).await.status(), 404);
        google.sign_in_as(ProviderUser::new("subject-3", "elsewhere@example.test"));
        let start = browser
            .get(&app, &app.at("/v1/auth/oidc/google/start?return_to=//evil.example/x"))
            .await;
        let at_provider = browser.get(&app, &location(&start)).await;
        let landed = browser.get(&app, &location(&at_provider)).await;
        assert_eq!(location(&landed), "/security");
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }
}

both_backends! {
    async fn two_factor_still_applies_after_the_provider(db) {
    let (app, google) = app_with_google(&db).await;
    google.sign_in_as(ProviderUser::new("subject-mfa", "mfa@example.test"));
    let mut browser = Browser::default();
    sign_in_with_google(&app, &mut browser).await;
    let session = browser.session().unwrap();
    crate::common::two_factor::enable_totp(&app, &session).await;

    let mut again = Browser::default();
    let owed = sign_in_with_google(&app, &mut again).await;
    assert_eq!(owed.status(), 200);
    assert!(again.session().is_none(), "no session before the second factor");
    let page = owed.text().await.unwrap();
    assert!(page.contains("name=\"mfa_token\""), "{page}");
    app.stop().await;
}}
