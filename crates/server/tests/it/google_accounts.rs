//! Google accounts connected through OAuth, against the Google contract server of the test kit
//! (Google's endpoints cannot be reached from here; the server checks every request against
//! Google's documented contract), on both backends: the least scopes, offline, the refresh
//! token sealed; tested for real (refresh, then the Gmail profile); one refresh at a time and
//! only near expiry; a revoked grant marked, audited and mailed; reconnected; revoked at
//! Google on disconnect and when the organization goes.

use mailroom_core::mail_account::{GMAIL_READONLY, GMAIL_SEND};
use mailroom_testkit::{GoogleContract, ProviderUser, TestDatabase, both_backends};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::accounts::*;
use crate::common::google::{Browser, app_with_google, location};
use crate::common::{TestApp, chains_verify, problem};

const SUBJECT: &str = "104432119876543210987";
const ADDRESS: &str = "sales@example.test";

/// Asks to connect a Google account for `capabilities` as the owner of `session`, consents
/// at Google as the contract's user, and comes back: the callback's answer, and the
/// authorization URL that was followed.
async fn connect(
    app: &TestApp,
    session: &str,
    capabilities: Value,
) -> (reqwest::Response, url::Url) {
    let started = send_as(
        app,
        Method::POST,
        session,
        "/v1/mail-accounts/google",
        Some(json!({"capabilities": capabilities})),
    )
    .await;
    assert_eq!(started.status(), 200, "{}", started.text().await.unwrap());
    follow(app, Browser::signed_in(session), started).await
}

/// Follows a started flow's `authorization_url` in `browser`, and back.
async fn follow(
    app: &TestApp,
    mut browser: Browser,
    started: reqwest::Response,
) -> (reqwest::Response, url::Url) {
    browser.keep_cookie(&started);
    let body: Value = started.json().await.unwrap();
    let url: url::Url = body["authorization_url"].as_str().unwrap().parse().unwrap();
    let at_google = browser.get(app, url.as_str()).await;
    assert_eq!(
        at_google.status(),
        303,
        "{}",
        at_google.text().await.unwrap()
    );
    let back = browser.get(app, &location(&at_google)).await;
    assert!(
        !browser.cookies.contains_key("__Host-mailroom_oauth"),
        "the flow's cookie is deleted"
    );
    (back, url)
}

fn query(url: &url::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

async fn only_account(app: &TestApp, session: &str) -> Value {
    let listed: Value = get_as(app, session, "/v1/mail-accounts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["accounts"].as_array().unwrap().len(), 1, "{listed}");
    listed["accounts"][0].clone()
}

async fn test_account(app: &TestApp, session: &str, id: &str) -> Value {
    let tested = send_as(
        app,
        Method::POST,
        session,
        &format!("/v1/mail-accounts/{id}/test"),
        None,
    )
    .await;
    assert_eq!(tested.status(), 200);
    tested.json().await.unwrap()
}

/// An owner with a connected Google account: the app, the contract, the session, the id.
async fn owner_with_google_account(
    db: &TestDatabase,
    capabilities: Value,
) -> (TestApp, GoogleContract, String, String) {
    let (app, google) = app_with_google(db).await;
    let session = create_account(&app, db, "owner@example.test").await;
    google.sign_in_as(ProviderUser::new(SUBJECT, ADDRESS));
    let (back, _) = connect(&app, &session, capabilities).await;
    assert_eq!(back.status(), 303);
    assert_eq!(location(&back), "/accounts?notice=account_connected");
    let id = only_account(&app, &session).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (app, google, session, id)
}

both_backends! {
    async fn a_google_account_connects_with_the_least_scopes_sealed_and_is_tested_for_real(db) {
        let (app, google) = app_with_google(&db).await;
        let session = create_account(&app, &db, "owner@example.test").await;
        google.sign_in_as(ProviderUser::new(SUBJECT, ADDRESS));
        let (back, asked) = connect(&app, &session, json!(["send", "read"])).await;
        assert_eq!(location(&back), "/accounts?notice=account_connected");
        let scopes = query(&asked, "scope");
        let mut scopes: Vec<&str> = scopes.split(' ').collect();
        scopes.sort_unstable();
        assert_eq!(scopes, ["email", GMAIL_READONLY, GMAIL_SEND, "openid"]);
        assert_eq!(query(&asked, "access_type"), "offline");
        assert_eq!(query(&asked, "prompt"), "consent");
        assert_eq!(query(&asked, "code_challenge_method"), "S256");

        let account = only_account(&app, &session).await;
        assert_eq!(account["kind"], "google");
        assert_eq!(account["address"], ADDRESS, "the address Google vouched for");
        assert_eq!(account["capabilities"], json!(["send", "read"]));
        assert_eq!(account["status"], "active");
        assert!(account["connected_by"].is_string());
        let id = account["id"].as_str().unwrap().to_owned();

        // The refresh token is nowhere in the clear: not in a row, not in an answer.
        let refresh_tokens = google.refresh_tokens();
        assert_eq!(refresh_tokens.len(), 1);
        let refresh_token = &refresh_tokens[0];
        assert!(db.columns_mentioning(refresh_token, uuid::Uuid::now_v7()).await.is_empty());
        assert!(!account.to_string().contains(refresh_token.as_str()));

        // The test refreshes the token, then reads the profile.
        let tested = test_account(&app, &session, &id).await;
        assert_eq!(tested["ok"], true, "{tested}");
        let steps: Vec<&str> = tested["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(steps, ["token", "profile"]);
        assert!(tested["steps"][0]["reply"].as_str().unwrap().starts_with("refreshed"));
        assert!(tested["steps"][1]["reply"].as_str().unwrap().contains(ADDRESS), "{tested}");
        assert_eq!(google.refreshes(), 1);

        // Disconnecting revokes the grant at Google, then deletes it.
        let gone = send_as(&app, Method::DELETE, &session, &format!("/v1/mail-accounts/{id}"), None).await;
        assert_eq!(gone.status(), 200);
        let gone: Value = gone.json().await.unwrap();
        assert_eq!(gone["revocation"], "revoked");
        assert_eq!(google.revoked(), std::slice::from_ref(refresh_token));
        problem(get_as(&app, &session, &format!("/v1/mail-accounts/{id}")).await, 404, "not_found").await;
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action IN ('mail_account.connected', 'mail_account.disconnected')").await, 2);
        assert!(chains_verify(&db).await);
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }

    async fn a_token_is_refreshed_one_at_a_time_and_only_within_a_minute_of_expiring(db) {
        let (app, google, session, id) = owner_with_google_account(&db, json!(["send"])).await;
        // Tokens that live 30 s are always within the minute: every use refreshes.
        google.set_access_token_lifetime(30);
        for expected in 1..=2 {
            let tested = test_account(&app, &session, &id).await;
            assert_eq!(tested["ok"], true, "{tested}");
            assert_eq!(google.refreshes(), expected);
        }
        // gmail.send alone may not read the profile: the test does not ask it.
        let tested = test_account(&app, &session, &id).await;
        assert!(tested["steps"][1]["reply"].as_str().unwrap().starts_with("not asked"), "{tested}");

        // An hour's token is refreshed once, however many use the account at the same time.
        google.set_access_token_lifetime(3599);
        let before = google.refreshes();
        let uses = (0..6).map(|_| test_account(&app, &session, &id));
        for tested in futures::future::join_all(uses).await {
            assert_eq!(tested["ok"], true, "{tested}");
        }
        assert_eq!(google.refreshes(), before + 1, "one refresh for six uses");
        let tested = test_account(&app, &session, &id).await;
        assert!(tested["steps"][0]["reply"].as_str().unwrap().starts_with("in hand"), "{tested}");
        assert_eq!(google.refreshes(), before + 1);
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }

    async fn a_revoked_grant_is_marked_audited_mailed_and_reconnected(db) {
        let (app, google, session, id) = owner_with_google_account(&db, json!(["send", "read"])).await;
        // The user removes mailroom's access at Google.
        google.remove_access_of(SUBJECT);
        let tested = test_account(&app, &session, &id).await;
        assert_eq!(tested["ok"], false);
        assert!(tested["error"].as_str().unwrap().contains("invalid_grant"), "{tested}");
        let account = only_account(&app, &session).await;
        assert_eq!(account["status"], "needs_reconnect");
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'mail_account.needs_reconnect'").await, 1);
        app.mail_settled().await;
        assert_eq!(
            mail_subjects(db.dir(), "owner@example.test").iter().filter(|s| s.contains("Reconnect")).count(),
            1,
            "the member who connected it is told"
        );
        // Noticed again, it is not marked, audited or mailed again; nothing asks Google.
        let refreshes = google.refreshes();
        let again = test_account(&app, &session, &id).await;
        assert_eq!(again["ok"], false);
        assert_eq!(google.refreshes(), refreshes);
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'mail_account.needs_reconnect'").await, 1);

        // The page offers to reconnect it; consenting as another Google account is refused.
        let page = get_as(&app, &session, "/accounts").await.text().await.unwrap();
        assert!(page.contains(&format!("/accounts/{id}/reconnect")), "{page}");
        google.sign_in_as(ProviderUser::new("another-subject", "other@example.test"));
        let started = send_as(&app, Method::POST, &session, &format!("/v1/mail-accounts/{id}/reconnect"), None).await;
        let (refused, asked) = follow(&app, Browser::signed_in(&session), started).await;
        assert_eq!(query(&asked, "login_hint"), ADDRESS);
        assert_eq!(refused.status(), 409);
        assert!(refused.text().await.unwrap().contains("another Google account"));
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'mail_account.connect_failed' AND target = 'google: other_google_account'").await,
            1
        );
        assert_eq!(google.revoked().len(), 1, "the grant it refused went back to Google");

        // Its own Google account reconnects it: the same account, active, tested fine.
        google.sign_in_as(ProviderUser::new(SUBJECT, ADDRESS));
        let started = send_as(&app, Method::POST, &session, &format!("/v1/mail-accounts/{id}/reconnect"), None).await;
        let (back, _) = follow(&app, Browser::signed_in(&session), started).await;
        assert_eq!(location(&back), "/accounts?notice=account_connected");
        let account = only_account(&app, &session).await;
        assert_eq!((account["id"].as_str().unwrap(), account["status"].as_str().unwrap()), (id.as_str(), "active"));
        assert_eq!(account["last_error"], Value::Null);
        assert_eq!(test_account(&app, &session, &id).await["ok"], true);
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }

    async fn a_failed_revocation_is_reported_and_audited_and_the_account_deleted_all_the_same(db) {
        let (app, google, session, id) = owner_with_google_account(&db, json!(["read"])).await;
        // Google no longer knows the token: its revocation endpoint refuses it.
        google.remove_access_of(SUBJECT);
        let gone = send_as(&app, Method::DELETE, &session, &format!("/v1/mail-accounts/{id}"), None).await;
        assert_eq!(gone.status(), 200);
        let gone: Value = gone.json().await.unwrap();
        assert_eq!(gone["revocation"], "failed");
        assert!(gone["revocation_error"].as_str().unwrap().contains("invalid_token"), "{gone}");
        problem(get_as(&app, &session, &format!("/v1/mail-accounts/{id}")).await, 404, "not_found").await;
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'mail_account.revocation_failed' AND outcome = 'failure'").await, 1);
        assert_eq!(db.count("SELECT COUNT(*) FROM mail_accounts").await, 0);
        assert!(chains_verify(&db).await);
        app.stop().await;
    }

    async fn deleting_the_organization_revokes_its_grants_and_the_chains_verify(db) {
        let (app, google, session, _) = owner_with_google_account(&db, json!(["send"])).await;
        let refresh_token = google.refresh_tokens().remove(0);
        let gone = send_as(&app, Method::DELETE, &session, "/v1/me", Some(json!({"confirm": "owner@example.test"}))).await;
        assert_eq!(gone.status(), 204);
        assert_eq!(google.revoked(), [refresh_token]);
        assert_eq!(db.count("SELECT COUNT(*) FROM mail_accounts").await, 0);
        assert!(chains_verify(&db).await);
        app.stop().await;
    }

    async fn joining_a_team_deletes_the_personal_organization_and_revokes_its_grants(db) {
        let (app, google, newcomer, _) = owner_with_google_account(&db, json!(["send"])).await;
        let refresh_token = google.refresh_tokens().remove(0);
        let owner = create_account(&app, &db, "team@example.test").await;
        crate::common::two_factor::enable_totp(&app, &owner).await;
        db.execute(
            "UPDATE orgs SET plan_id = 'team' WHERE id = (SELECT org_id FROM org_members m \
             JOIN users u ON u.id = m.user_id WHERE u.email = 'team@example.test')",
        )
        .await;
        let invited = send_as(&app, Method::POST, &owner, "/v1/org/invitations", Some(json!({"email": "owner@example.test", "role": "member"}))).await;
        assert_eq!(invited.status(), 201);
        let token = invitation_token(&db, "owner@example.test", 0).await;
        let accepted = send_as(&app, Method::POST, &newcomer, "/v1/invitations/accept", Some(json!({"token": token, "leave_current_org": true}))).await;
        assert_eq!(accepted.status(), 200);
        assert_eq!(google.revoked(), [refresh_token]);
        assert_eq!(db.count("SELECT COUNT(*) FROM mail_accounts").await, 0);
        assert!(chains_verify(&db).await);
        app.stop().await;
    }

    async fn a_large_message_goes_through_gmails_upload_uri_whole(db) {
        let (app, google, session, _) = owner_with_google_account(&db, json!(["send"])).await;
        // Over 5 MB once composed (base64 swells the attachment by a third).
        let attachment: Vec<u8> = (0..4_500_000_u32).map(|n| (n % 251) as u8).collect();
        use base64::Engine;
        let accepted = send_as(&app, Method::POST, &session, "/v1/emails", Some(json!({
            "from": ADDRESS,
            "to": "anna@example.test",
            "subject": "The quarterly figures",
            "text": "Attached.",
            "attachments": [{"filename": "figures.bin", "content_type": "application/octet-stream",
                             "content": base64::engine::general_purpose::STANDARD.encode(&attachment)}],
        })))
        .await;
        assert_eq!(accepted.status(), 202);
        let accepted: Value = accepted.json().await.unwrap();
        let sent = crate::emails::settled(&app, &session, accepted["id"].as_str().unwrap()).await;
        assert_eq!(sent["status"], "sent", "{sent}");
        assert_eq!(google.uploaded(), 1, "through the upload URI");
        let message = &google.sent()[0];
        assert!(message.len() > mailroom_mail::gmail::UPLOAD_OVER, "{}", message.len());
        assert!(message.contains("Subject: The quarterly figures") && message.contains("figures.bin"));
        // A small one still goes as `raw`.
        let small = send_as(&app, Method::POST, &session, "/v1/emails", Some(json!({
            "from": ADDRESS, "to": "anna@example.test", "subject": "Small", "text": "Hi.",
        })))
        .await;
        let small: Value = small.json().await.unwrap();
        assert_eq!(crate::emails::settled(&app, &session, small["id"].as_str().unwrap()).await["status"], "sent");
        assert_eq!((google.sent().len(), google.uploaded()), (2, 1));
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }

    async fn a_message_goes_out_through_gmail_and_fails_clearly_once_the_grant_is_revoked(db) {
        let (app, google, session, _) = owner_with_google_account(&db, json!(["send"])).await;
        let message = |subject: &str| json!({
            "from": format!("Sales <{ADDRESS}>"),
            "to": "anna@example.test",
            "bcc": "hidden@example.test",
            "subject": subject,
            "text": "Hello from Gmail.",
        });
        let send = |subject: &str| send_as(&app, Method::POST, &session, "/v1/emails", Some(message(subject)));
        let accepted: Value = send("First").await.json().await.unwrap();
        let first = crate::emails::settled(&app, &session, accepted["id"].as_str().unwrap()).await;
        assert_eq!(first["status"], "sent", "{first}");
        assert_eq!(first["attempts"][0]["transport"], "gmail");
        let sent = google.sent();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].contains("Subject: First") && sent[0].contains("Bcc: hidden@example.test"), "{}", sent[0]);

        // An access token Gmail no longer takes is refreshed, and the send goes through.
        google.expire_access_tokens();
        let refreshes = google.refreshes();
        let accepted: Value = send("Second").await.json().await.unwrap();
        let second = crate::emails::settled(&app, &session, accepted["id"].as_str().unwrap()).await;
        assert_eq!(second["status"], "sent", "{second}");
        assert_eq!(google.refreshes(), refreshes + 1);

        // Gmail's rate limit defers the message to the queue's retry.
        google.rate_limit_sends(1);
        let accepted: Value = send("Third").await.json().await.unwrap();
        let third = crate::emails::settled(&app, &session, accepted["id"].as_str().unwrap()).await;
        assert_eq!(third["status"], "queued", "{third}");
        assert_eq!(third["attempts"][0]["outcome"], "deferred");
        assert!(third["attempts"][0]["reply"].as_str().unwrap().contains("429"), "{third}");

        // The user removes the access: the message fails with why, the account needs
        // reconnecting, and later messages are refused until it is.
        google.remove_access_of(SUBJECT);
        let accepted: Value = send("Fourth").await.json().await.unwrap();
        let fourth = crate::emails::settled(&app, &session, accepted["id"].as_str().unwrap()).await;
        assert_eq!(fourth["status"], "failed", "{fourth}");
        assert!(fourth["last_error"].as_str().unwrap().contains("connect the account again"), "{fourth}");
        assert_eq!(only_account(&app, &session).await["status"], "needs_reconnect");
        problem(send("Fifth").await, 409, "mail_account_needs_reconnect").await;
        assert_eq!(db.count("SELECT COUNT(*) FROM suppressions").await, 0, "a refused grant suppresses no recipient");
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }

    async fn who_may_connect_a_google_account_and_with_what(db) {
        let (app, google) = app_with_google(&db).await;
        let owner = create_account(&app, &db, "owner@example.test").await;
        crate::common::two_factor::enable_totp(&app, &owner).await;
        let member = create_account(&app, &db, "member@example.test").await;
        move_into_org_of(&db, "member@example.test", "owner@example.test").await;
        let ask = json!({"capabilities": ["send"]});
        problem(send_as(&app, Method::POST, &member, "/v1/mail-accounts/google", Some(ask.clone())).await, 403, "insufficient_role").await;
        problem(send_as(&app, Method::POST, &owner, "/v1/mail-accounts/google", Some(json!({"capabilities": []}))).await, 400, "invalid_field").await;
        problem(send_as(&app, Method::POST, &owner, "/v1/mail-accounts/google", Some(json!({"capabilities": ["write"]}))).await, 400, "invalid_field").await;

        // A key, even one that manages accounts, cannot consent at Google for anyone.
        let key = key_with(&app, &owner, &["accounts:manage"]).await;
        let by_key = app.client.post(app.at("/v1/mail-accounts/google")).bearer_auth(&key).json(&ask).send().await.unwrap();
        problem(by_key, 403, "browser_session_required").await;

        // The user may untick Gmail on Google's consent screen: nothing is connected.
        google.sign_in_as(ProviderUser::new(SUBJECT, ADDRESS));
        google.decline_scopes(&[GMAIL_SEND]);
        let (refused, _) = connect(&app, &owner, json!(["send"])).await;
        assert_eq!(refused.status(), 403);
        assert!(refused.text().await.unwrap().contains("did not grant access to Gmail"));
        // Unticking one of two connects the account for the other.
        let (back, _) = connect(&app, &owner, json!(["send", "read"])).await;
        assert_eq!(back.status(), 303);
        assert_eq!(only_account(&app, &owner).await["capabilities"], json!(["read"]));
        // Connecting the same Google account again keeps one account.
        google.decline_scopes(&[]);
        connect(&app, &owner, json!(["send", "read"])).await;
        assert_eq!(only_account(&app, &owner).await["capabilities"], json!(["send", "read"]));

        // A flow comes back to the session that started it, or connects nothing.
        let started = send_as(&app, Method::POST, &owner, "/v1/mail-accounts/google", Some(ask.clone())).await;
        let (refused, _) = follow(&app, Browser::default(), started).await;
        assert_eq!(refused.status(), 403);
        let started = send_as(&app, Method::POST, &owner, "/v1/mail-accounts/google", Some(ask.clone())).await;
        let (refused, _) = follow(&app, Browser::signed_in(&member), started).await;
        assert_eq!(refused.status(), 403);
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_log WHERE action = 'mail_account.connect_failed' AND target = 'google: wrong_user'").await,
            2
        );
        assert_eq!(only_account(&app, &owner).await["capabilities"], json!(["send", "read"]));

        // The page's button goes to Google's consent with the flow's cookie.
        let started = app.client.post(app.at("/accounts/google")).header("cookie", cookie(&owner)).header("origin", &app.url)
            .form(&[("send", "yes")]).send().await.unwrap();
        assert_eq!(started.status(), 303);
        assert!(location(&started).starts_with(google.issuer()));
        assert!(started.headers()["set-cookie"].to_str().unwrap().starts_with("__Host-mailroom_oauth="));
        assert_eq!(google.violations(), Vec::<String>::new());
        app.stop().await;
    }

    async fn without_google_configured_the_page_offers_no_button_and_the_api_says_why(db) {
        let app = TestApp::spawn(&db).await;
        let owner = create_account(&app, &db, "owner@example.test").await;
        let page = get_as(&app, &owner, "/accounts").await.text().await.unwrap();
        assert!(!page.contains("Connect with Google") && page.contains("Add an IMAP mailbox"));
        problem(send_as(&app, Method::POST, &owner, "/v1/mail-accounts/google", Some(json!({"capabilities": ["send"]}))).await, 409, "google_not_configured").await;
        app.stop().await;
    }
}
